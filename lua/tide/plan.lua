-- tide.plan — what the schema migration will do: which objects, under which names, with
-- which statements in which order. `pgtide plan FILE` prints it; the schema phases, the full
-- load, the prechecks and verify read it (docs/internals.md describes the structure).
--
-- plan.build reads both catalogs (tide.catalog: one statement per kind), then
--   1. turns rows into linked objects                       tide.plan.objects
--   2. selects them (select) and maps their names (rename)  tide.plan.objects
--   3. resolves pg_depend into dependencies, and handles     tide.plan.depends
--      selected objects that need left-out ones
--   4. finds what already exists on the target               tide.plan.existing
--   5. writes each object's statements                       tide.kinds, tide.ddl
--   6. adds comments, owners and grants                      tide.plan.attributes
--      (and privileges on extension members, the data of      tide.plan.extensions
--      extensions' configuration tables)
--   7. orders the statements by their dependencies           tide.plan.order
-- Nothing is written to either server.
local catalog = require "tide.catalog"
local kinds = require "tide.kinds"
local objects = require "tide.plan.objects"
local depends = require "tide.plan.depends"
local existing = require "tide.plan.existing"
local breathe = require("tide.wait").breathe
local attributes = require "tide.plan.attributes"
local extensions = require "tide.plan.extensions"
local order = require "tide.plan.order"
local playbook = require "tide.playbook"
local intern = require "tide.intern"
local steplist = require "tide.plan.steplist"
local relocate = require "tide.plan.relocate"
local id_of = require("tide.plan.ids").id

local M = {}

local INTEGER_TYPES = { [20] = true, [21] = true, [23] = true }

-- The naming context tide.ddl and the kinds use (see tide.ddl).
local function make_ctx(model, map, identity, report)
  local ctx = { identity = identity, map = map, cat = model.cat, by_name = model.by_name,
                objects = model.objects, schema_names = {}, json_null = catalog.null }
  for _, s in ipairs(model.cat.schemas) do ctx.schema_names[s.name] = true end
  function ctx.object_at(class, oid) return model.identity[id_of(class, oid)] end
  function ctx.row_at(class, oid)
    local obj = model.exact[id_of(class, oid)]
    return obj and obj.row
  end
  function ctx.map_name(kind, schema, name)
    if identity then return schema, name end
    if kind == "schema" then local s = map:schema(name); return s, s end
    return map:object(kind, schema, name)
  end
  ctx.warn = report and report.warn or function() end
  ctx.error = report and report.error or function() end
  ctx.role_exists = report and report.role_exists or function() return true end
  ctx.target_database = report and report.target_database   -- (database settings)
  return ctx
end

local function compile_section(task, key, compile, opts)
  local ok, result = pcall(compile, task[key], opts)
  if not ok then playbook.raise((task.locate and task.locate(key) or "") .. tostring(result)) end
  return result
end

-- Two source objects mapped to one target name: an error naming both.
local function check_collisions(plan, model, map)
  local list = {}
  for _, obj in ipairs(model.objects) do
    breathe()
    -- (Objects of no schema keep their names: nothing to collide. Kinds that keep their
    -- names, def.keeps_name, are not rename's to check either.)
    if obj.selected and obj.kind ~= "extension" and not obj.def.global and not obj.def.keeps_name
      and (obj.inline_of == nil or obj.kind == "sequence") then
      list[#list + 1] = { kind = obj.kind, schema = obj.schema, name = obj.name,
        table = obj.owner and obj.owner.name or nil, args = obj.row.identity_args }
      if obj.kind == "table" or obj.kind == "foreign_table" or obj.kind == "view" or obj.kind == "matview" then
        for _, c in ipairs(obj.columns or {}) do
          list[#list + 1] = { kind = "column", schema = obj.schema, name = c.name, table = obj.name }
        end
      end
    end
  end
  local ok, found = pcall(map.collisions, map, list)
  if not ok then
    plan.errors[#plan.errors + 1] = { message = tostring(found) }
    return
  end
  for _, group in ipairs(found) do
    plan.errors[#plan.errors + 1] = { kind = "rename", message = group.message .. ": give one of them another name in rename" }
  end
end

-- Names of the objects behind references pgtide cannot place, asked in one statement.
local function report_external(plan, source, external)
  local classes, oids, users = {}, {}, {}
  for _, ref in ipairs(external) do
    if ref.object.selected then
      local id = ref.class .. ":" .. ref.oid
      if not users[id] then
        users[id] = {}
        classes[#classes + 1], oids[#oids + 1] = ref.class, ref.oid
      end
      table.insert(users[id], ref.object)
    end
  end
  if #classes == 0 then return end
  local rows = source:query([[
SELECT u.class, u.oid, pg_describe_object(u.class::regclass, u.oid, 0) AS description
FROM unnest($1::text[], $2::oid[]) AS u(class, oid)
]], classes, oids)
  for _, row in ipairs(rows or {}) do
    local list = users[row.class .. ":" .. row.oid] or {}
    local names = {}
    for i, obj in ipairs(list) do names[i] = objects.describe(obj) if i == 3 then break end end
    local description = row.description ~= require("tide.core").null and row.description or (row.class .. " " .. row.oid)
    plan.warnings[#plan.warnings + 1] = { kind = list[1] and list[1].kind, object = list[1] and list[1].key,
      message = string.format("%s uses %s, which pgtide does not migrate: it must exist on the target (create it there first)",
        table.concat(names, ", ") .. (#list > 3 and (" and " .. (#list - 3) .. " more") or ""), description) }
  end
end

local function table_entry(model, obj, selector, primary_keys, lists)
  local row = obj.row
  -- The columns whose rows are copied: the object's own column rows (name, target, type,
  -- type_oid, not_null, identity, ... as tide.catalog reads them), not copies of them.
  local columns = {}
  for _, c in ipairs(obj.columns) do
    if c.generated ~= "s" then columns[#columns + 1] = c end
  end
  local key_columns = primary_keys[obj]
  if not key_columns and row.replica_index_oid then
    local index = model.exact[id_of("pg_class", row.replica_index_oid)]
    key_columns = index and index.row.columns
  end
  local int_key
  if key_columns and #key_columns == 1 then
    for _, c in ipairs(obj.columns) do
      if c.name == key_columns[1] and INTEGER_TYPES[c.type_oid] then int_key = c.name end
    end
  end
  local root = obj
  while root.row.is_partition and root.parents and root.parents[1] do root = root.parents[1] end
  local copy = {}
  for i, name in ipairs(key_columns or {}) do copy[i] = name end
  -- select.rows on a partitioned table holds for each of its partitions (ANDed with the
  -- partition's own filter); the stream applies it to the changes it receives through it.
  local own_filter = selector:row_filter(obj.schema, obj.name)
  local root_filter = root ~= obj and selector:row_filter(root.schema, root.name) or nil
  local row_filter = own_filter
  if root_filter then row_filter = own_filter and ("(" .. root_filter .. ") AND (" .. own_filter .. ")") or root_filter end
  local source = { schema = obj.schema, name = obj.name }
  local entry = {
    key = objects.table_key(obj), oid = obj.oid, source = source,
    target = rawequal(obj.target, obj) and source or obj.target, columns = lists:value(columns), bytes = row.bytes, pages = row.pages, rows_estimate = row.rows_estimate,
    replica_identity = row.replica_identity, unlogged = row.unlogged,
  }
  -- The fields most tables lack are set one by one: a constructor naming all twenty sizes
  -- every entry for twenty (twice the room most use, 4 MB at 10,000 tables).
  entry.key_columns = key_columns and lists:names(copy) or nil
  entry.int_key = int_key
  entry.row_filter, entry.own_filter, entry.root_filter = row_filter, own_filter, root_filter
  if root ~= obj then
    entry.parent = objects.table_key(root)
    entry.root = { schema = root.schema, name = root.name }
  end
  return entry
end

local function sequence_entry(model, obj)
  local row = obj.row
  local owner = row.owned_table_oid and model.exact[id_of("pg_class", row.owned_table_oid)] or nil
  return {
    key = objects.table_key(obj),
    source = { schema = obj.schema, name = obj.name },
    target = { schema = obj.target.schema, name = obj.target.name },
    identity = row.owned_deptype == "i" or nil,
    owned_by = row.owned_column and { column = row.owned_column, table = owner and objects.table_key(owner) } or nil,
  }
end

-- Both catalogs, read at once: the target's in a coroutine of its own while the source's is
-- read here. Each read may spread a big catalog over a few more connections of its side
-- (tide.catalog.parallel), opened as tide.connect opens the task's connections.
local function read_catalogs(task, source, target)
  local core = require "tide.core"
  local function options(side)
    if not playbook.conninfo(task, side) then return {} end
    return { open = function(opts) return require("tide.connect").open(task, side, opts) end }
  end
  -- (pcall inside the coroutine: its error comes back as raised, without a traceback added.)
  -- The target's pg_depend is never asked (only the source's dependencies order the plan):
  -- leaving it out spares 1.7 kB a table on a target that has the objects already.
  local target_options = options("target")
  target_options.only = {}
  for _, name in ipairs(catalog.kinds_read) do
    if name ~= "depends" then target_options.only[#target_options.only + 1] = name end
  end
  local target_read = core.spawn(function() return pcall(catalog.read, target, target_options) end)
  local source_ok, cat = pcall(catalog.read, source, options("source"))
  local _, target_ok, tcat = pcall(target_read.wait, target_read)
  if not source_ok then error(cat, 0) end
  if not target_ok then error(tcat, 0) end
  return cat, tcat
end

-- plan.build(task, source, target) → plan (docs/internals.md). Both connections must be idle
-- (not inside a transaction): the catalogs are read in transactions of their own.
function M.build(task, source, target)
  local core = require "tide.core"
  local started = core.monotonic()
  local selector = compile_section(task, "select", require("tide.select").compile, { kinds = kinds.selectable })
  local map = compile_section(task, "rename", require("tide.rename").compile)
  local options = task.schema or {}
  local plan = { objects = {}, pre_data = {}, post_data = {}, tables = {}, sequences = {}, skipped = {},
                 warnings = {}, conflicts = existing.entries(true), errors = {}, missing = {}, existing = existing.entries(), drops = {},
                 by_key = {}, timing = {} }
  local cat, tcat = read_catalogs(task, source, target)
  plan.catalog, plan.target_catalog = cat, tcat
  plan.server_version, plan.target_server_version = cat.server_version, tcat.server_version
  plan.timing.catalog = core.monotonic() - started

  local seen_messages = {}
  local report = {
    warn = function(obj, message)
      if seen_messages[message] then return end
      seen_messages[message] = true
      plan.warnings[#plan.warnings + 1] = { kind = obj and obj.kind, object = obj and obj.key, message = message }
    end,
    error = function(obj, message)
      plan.errors[#plan.errors + 1] = { kind = obj and obj.kind, object = obj and obj.key, message = message }
    end,
    role_exists = function(role) return tcat.roles_set[role] ~= nil end,
    target_database = tcat.settings.database,
  }
  local identity = next(task.rename or {}) == nil
  local stage_started = core.monotonic()
  local function stage(name)
    breathe(true)
    local now = core.monotonic()
    plan.timing[name] = now - stage_started
    stage_started = now
  end
  local model, tmodel = objects.collect(cat), objects.collect(tcat)
  stage("objects")
  local ctx = make_ctx(model, map, identity, report)
  local tctx = make_ctx(tmodel, nil, true)

  local ok, err = pcall(objects.select, model, task, selector, plan.skipped)
  if not ok then playbook.raise((task.locate and task.locate("select") or "") .. tostring(err)) end
  objects.assign_targets(model, ctx, report.error)
  for _, tobj in ipairs(tmodel.objects) do tobj.selected = true end
  objects.assign_targets(tmodel, tctx, function() end)
  if not identity then
    check_collisions(plan, model, map)
    local state_schema = task.state_schema or "pgtide"
    for _, obj in ipairs(model.objects) do
      breathe()
      if obj.selected and obj.inline_of == nil and obj.target.schema == state_schema and obj.kind ~= "extension" then
        report.error(obj, string.format("%s maps into %s, pgtide's own schema on the target (task.state_schema): map it elsewhere in rename",
          objects.describe(obj), state_schema))
      end
    end
  end
  stage("select")

  local external = depends.resolve(model, { all_ref_columns = options.dependents == "drop" })
  -- pg_depend's rows live on as obj.deps: let the rows go (a quarter of the catalog's memory).
  cat.depends = {}
  local index = existing.index(tmodel)
  depends.check_missing(model, {
    policy = options.dependents or "error",
    exists_on_target = function(ref) return not ref.selected and index[existing.key(ref, ctx)] ~= nil end,
    missing = plan.missing, errors = plan.errors, warnings = plan.warnings, skipped = plan.skipped,
  })
  existing.detect(plan, model, ctx, tctx, index, options.existing or "error",
                  not (task.phases and not task.phases.schema))
  report_external(plan, source, external)
  stage("depends")

  local all = order.build_steps(model, ctx, report.error)
  attributes.add(plan, model, tmodel, ctx, task, selector, all)
  extensions.member_grants(plan, model, tmodel, ctx, task, selector, all)
  stage("ddl")
  local pre, post = order.sort(all, report.error)
  all = nil   -- luacheck: ignore 311 (the working steps go as they are written, below)
  stage("order")

  -- The plan's steps: keys instead of objects, packed in arrays as they are written
  -- (tide.plan.steplist: one array per field, about 210 bytes a step less than a table each;
  -- at 100,000 tables 475,000 steps). A list of keys (the steps a step waits for, the tables
  -- whose rows it needs) is kept as false when empty, as its key when it has one (most do),
  -- and else as one list for all equal lists (tide.intern: never changed in place).
  local secret = require "tide.secret"
  local lists = intern.pool()
  local function keys_of(list)
    local n = #list
    if n == 0 then return false end
    if n == 1 then return list[1] end
    return lists:names(list)
  end
  local function finish(step, into)
    breathe()
    local undo
    -- Post-data objects that act on rows as they are written (foreign keys check them,
    -- triggers change them): a full load that starts over first drops the ones it built.
    if (step.kind == "fkey" or step.kind == "trigger") and step.object.def.drop then
      local dropped, drop = pcall(step.object.def.drop, ctx, step.object)
      if dropped and drop then
        undo = drop:gsub("^DROP TRIGGER ", "DROP TRIGGER IF EXISTS ", 1):gsub(" DROP CONSTRAINT ", " DROP CONSTRAINT IF EXISTS ", 1)
      end
    end
    if step.undo then undo = step.undo end   -- a kind's own (an event trigger enabled: disabled)
    local after = false
    local waits = step.waits
    if waits and #waits == 1 then
      after = waits[1].key
    elseif waits and #waits > 1 then
      after = {}
      for i, other in ipairs(waits) do after[i] = other.key end
      after = lists:names(after)
    end
    local needs, tbl
    if step.phase == "post" then
      needs, tbl = order.data_needs(model, ctx, step)
      needs = keys_of(needs)
      tbl = tbl or step.locks   -- (an extension's grant on one of its tables)
    else
      needs, tbl = false, order.owner_key(step)
    end
    if secret.has(step) then
      -- A statement with secrets runs with the real values, kept by its step's table (a step
      -- kept whole: its lists as lists).
      local function as_list(keys) return type(keys) == "string" and { keys } or keys or {} end
      local out = { kind = step.kind, key = step.key, sql = step.sql, object = step.object.key, phase = step.phase,
                    table = tbl, after = as_list(after), needs_data = as_list(needs), undo = undo }
      secret.carry(step, out)
      steplist.add(into, out)
    else
      steplist.add_fields(into, step.kind, step.key, step.sql, step.object.key, step.phase, tbl, after, needs, undo)
    end
  end
  plan.pre_data, plan.post_data = steplist.new(#plan.drops + #pre), steplist.new(#post)
  for _, drop in ipairs(plan.drops) do
    breathe()
    steplist.add(plan.pre_data, { kind = "drop", key = drop.key, sql = drop.sql, object = drop.object.key,
                                  phase = "pre", after = {}, drops = drop.keys })
  end
  -- Each working step goes once written: the objects' lists of them first, then each one's
  -- place in its phase's list; what still holds it is only the lists of the steps after it
  -- that wait for it, which go in turn. So the two whole sets of steps are never alive side by
  -- side (the written ones and plan.tables are made at the plan's peak: at 10,000 tables the
  -- working steps are 27 MB of it).
  for _, obj in ipairs(model.objects) do breathe(); obj.steps, obj.attached_by = nil, nil end
  local placed = {}
  local function write_phase(list, into)
    for i = 1, #list do
      breathe()
      local step = list[i]
      list[i] = false
      finish(step, into)
      step.waits = nil
      if not placed[step.object] then placed[step.object] = true; plan.objects[#plan.objects + 1] = step.object end
    end
  end
  write_phase(pre, plan.pre_data)
  write_phase(post, plan.post_data)
  lists = nil   -- luacheck: ignore 311 (its signatures go; the lists stay shared)
  for _, obj in ipairs(model.objects) do
    breathe()
    if obj.selected and obj.inline_of == nil and not placed[obj] then plan.objects[#plan.objects + 1] = obj end
  end
  for _, obj in ipairs(plan.objects) do breathe(); plan.by_key[obj.key] = obj end
  stage("write")

  -- The objects' dependency edges have done their work once the configuration tables of the
  -- selected extensions have found what waits for their rows (extensions.config_tables, their
  -- last reader): 3.8 MB at 10,000 tables. Without such tables in the catalog they go before
  -- the tables' entries are made: at 100,000 tables the edges were 38 MB of the plan's peak.
  local function drop_edges()
    for _, obj in ipairs(model.objects) do breathe(); obj.deps = nil end
  end
  local config_rows = #(cat.extension_config or {}) > 0
  if not config_rows then drop_edges() end
  -- Equal lists of column rows and of key columns in the tables' entries are one list (shared:
  -- never changed in place; tables alike from schema to schema, 1.9 MB at 10,000 tables).
  local entry_lists = intern.pool()
  local primary_keys = {}
  for _, obj in ipairs(model.objects) do
    breathe()
    if obj.kind == "constraint" and obj.row.type == "p" and obj.owner then primary_keys[obj.owner] = obj.row.columns end
  end
  for _, obj in ipairs(model.objects) do
    breathe()
    if obj.selected and obj.kind == "table" and obj.row.relkind == "r" then
      plan.tables[#plan.tables + 1] = table_entry(model, obj, selector, primary_keys, entry_lists)
    elseif obj.kind == "sequence" and obj.selected then
      plan.sequences[#plan.sequences + 1] = sequence_entry(model, obj)
    end
  end
  entry_lists = nil   -- luacheck: ignore 311
  stage("entries")
  -- Configuration tables of the selected extensions: rows only (CREATE EXTENSION makes them).
  extensions.config_tables(plan, model, selector)
  if config_rows then drop_edges() end
  -- on.row: one Lua function over a table's rows, in every phase (tide.plan.transforms).
  if task.on and task.on.row then require("tide.plan.transforms").attach(plan, task) end
  -- on.route: the tables each on.row function may send rows to (tide.plan.routes).
  if task.on and task.on.route then require("tide.plan.routes").attach(plan, task) end
  -- select.rows_follow: tables referencing a filtered table follow its filter (tide.plan.follow).
  if selector.rows_follow == "foreign_keys" then
    for _, e in ipairs(require("tide.plan.follow").derive(plan)) do plan.errors[#plan.errors + 1] = e end
    if task.phases and task.phases.incremental then
      for _, e in ipairs(require("tide.cdc.follow").refusals(plan)) do plan.errors[#plan.errors + 1] = e end
    end
  end
  -- What incremental migration does with tables it cannot stream whole (tide.cdc.objects).
  if task.phases and task.phases.incremental then
    local cdc_objects = require "tide.cdc.objects"
    local keyless = cdc_objects.keyless
    for _, tbl in ipairs(plan.tables) do
      breathe()
      local obj = plan.by_key["table:" .. tbl.key]
      local names = {}
      for _, c in ipairs(obj and obj.columns or tbl.columns) do names[#names + 1] = c.name end
      if tbl.row_filter and not tbl.unlogged and not tbl.parent and
          cdc_objects.filter_mode(tbl, names, plan.server_version or 0) == "pgtide" then
        plan.warnings[#plan.warnings + 1] = { kind = "table", object = "table:" .. tbl.key, message = tbl.key ..
          ": its row filter cannot go into the publication: every change is streamed and pgtide applies the " ..
          "filter on the target (precheck row_filter_applied)" }
      end
      if tbl.unlogged then
        plan.warnings[#plan.warnings + 1] = { kind = "table", object = "table:" .. tbl.key, message = tbl.key ..
          ": unlogged: copied by the full load, left out of the stream (its changes are not in the WAL)" }
      elseif keyless(tbl) then
        plan.warnings[#plan.warnings + 1] = { kind = "table", object = "table:" .. tbl.key, message = tbl.key ..
          ": no replica identity: only its inserts and truncates are streamed" ..
          (tbl.parent and (", with its partitioned table " .. tbl.parent) or "") ..
          " (precheck table_without_key fails unless a policy lets it in)" }
      end
    end
  end
  for _, message in ipairs(selector:unused()) do
    plan.warnings[#plan.warnings + 1] = { kind = "select", message = message .. " (a typo?)" }
  end
  for _, u in ipairs(cat.unsupported) do
    local schema = model.schemas[u.schema]
    if schema and schema.selected then
      plan.warnings[#plan.warnings + 1] = { kind = "unsupported", object = schema.key,
        message = string.format("schema %s has %d %s object(s), which pgtide does not migrate: create them on the target if the migrated objects need them",
          schema.ident, u.count, u.kind) }
    end
  end
  plan.model, plan.target_model = model, tmodel
  stage("warnings")
  plan.timing.total = core.monotonic() - started
  return plan
end

-- A table's column rows as a run keeps them: equal columns of different tables one row, and
-- the list one list (tide.intern: a schema-per-tenant database's tables repeat from schema to
-- schema). tide.catalog.read shares equal rows already; here the copies tide.plan.objects made
-- for a column mapped to another name join their equals too (a relid, which catalog rows no
-- longer carry, is left out all the same).
local function compact_columns(pool, columns, done)
  if type(columns) ~= "table" then return columns end
  local out = {}
  for i, c in ipairs(columns) do
    local row = done[c]   -- (a table's entry and its object hold the same rows: each made once)
    if not row then
      row = {}
      for f, v in next, c do if f ~= "relid" then row[f] = v end end
      row = pool:value(setmetatable(row, getmetatable(c)))
      done[c] = row
    end
    out[i] = row
  end
  return pool:value(out)
end

-- What a run keeps of the plan once its prechecks passed: the steps, plan.tables and
-- plan.sequences, the tables' objects by key, and the source's schemas (DDL replication
-- follows the selected ones). Only the prechecks read the rest: both catalogs, the target's
-- model, of the source's model its indexes and the objects that are not tables (the steps
-- name their objects by key: a failed step's message describes it from that), and what the
-- target already had (`existing`: 45 MB at 10,000 tables a resumed run finds on the target).
-- A task without the schema phase runs none of the steps (the full load builds post-data
-- objects only after a schema phase; its plan has steps only for what the target lacks,
-- which precheck target_table_missing reports): they go too, rather than stay for as long as
-- its stream runs.
--
-- Of a table's object, what the slot's and the stream's work read (tide.cdc.objects, tables,
-- ddl, ddl_entries, reverse): five fields at most, where the object had a dozen; its list of columns
-- the table entry's when they hold the same columns (interned alike). They look objects up
-- for partitioned tables (which have no entry) and for the columns a table's entry leaves out
-- (generated ones, dropped ones): a table whose entry says all its object does keeps none (at
-- 100,000 tables 22 MB). The entries' columns, key columns and names are interned the same
-- way (a table's target the same table as its source when they are equal).
function M.keep_for_run(plan, task)
  plan.catalog, plan.target_catalog, plan.target_model, plan.existing = nil, nil, nil, nil
  -- (Its entries hold objects: as plain tables, the objects can go.)
  plan.conflicts = existing.detached(plan.conflicts)
  if task and task.phases and not task.phases.schema then plan.pre_data, plan.post_data = {}, {} end
  -- (Of the model, DDL replication reads which schemas are selected; the drops and the
  -- security labels, which hold objects, only the prechecks read.)
  if plan.model then
    local schemas = {}
    for name, obj in pairs(plan.model.schemas or {}) do schemas[name] = { selected = obj.selected } end
    plan.model = { schemas = schemas }
  end
  plan.drops, plan.security_labels = {}, nil
  -- (What went is collected before the kept parts are made compact: at 100,000 tables the
  -- catalogs and the target's model are a third of the heap.)
  collectgarbage("collect")
  local pool, done = intern.pool(), {}   -- (for this pass only: what it shares stays shared)
  local entry_of = {}
  for _, tbl in ipairs(plan.tables or {}) do
    breathe()
    tbl.columns, tbl.key_columns = compact_columns(pool, tbl.columns, done), pool:names(tbl.key_columns)
    tbl.source, tbl.target = pool:value(tbl.source), pool:value(tbl.target)
    entry_of["table:" .. tbl.key] = tbl
  end
  local tables = {}
  for key, obj in pairs(plan.by_key or {}) do
    breathe()
    if key:sub(1, 6) == "table:" then
      local target = obj.target
      if rawequal(target, obj) then target = { schema = obj.schema, name = obj.name } end
      local kept = { schema = obj.schema, name = obj.name, target = pool:value(target),
                     columns = compact_columns(pool, obj.columns, done) }
      if obj.dropped_columns then kept.dropped_columns = obj.dropped_columns end
      local tbl = entry_of[key]
      if not (tbl and not kept.dropped_columns and rawequal(kept.columns, tbl.columns) and
              rawequal(kept.target, tbl.target) and kept.schema == tbl.source.schema and kept.name == tbl.source.name) then
        tables[key] = kept
      end
    end
  end
  plan.by_key, plan.objects = tables, {}
  -- The steps' lists of keys (the steps each waits for, the tables whose rows it needs) are
  -- read, never changed, by the schema phase and the load: equal ones are one list (a table's
  -- index, key and foreign key need its rows alike; most steps wait for none).
  for _, list in ipairs({ plan.pre_data or {}, plan.post_data or {} }) do
    breathe()
    steplist.share_lists(list, pool)
  end
  pool, done, entry_of, tables = nil, nil, nil, nil   -- luacheck: ignore 311
  -- The steps in arrays (tide.plan.steplist): plan.build packs them as it writes them; a
  -- plan whose lists were made otherwise (lists of tables) is packed here.
  if plan.post_data then plan.post_data = steplist.pack(plan.post_data) end
  if plan.pre_data then plan.pre_data = steplist.pack(plan.pre_data) end
  -- What is kept, written out, let go and read back in memory of its own (tide.plan.relocate);
  -- the pre-data steps apart, after the rest: they go once the schema phase has run them.
  local keep = { [require("tide.json").null] = true, [require("tide.core").null] = true }
  local names = { "tables", "sequences", "post_data", "by_key" }
  local kept = {}
  for i, name in ipairs(names) do kept[i] = plan[name] or false; plan[name] = nil end
  -- (The collector waits while they are written and read: it would only walk the same heap
  -- again and again. What the prechecks read and the run does not keep goes first: written
  -- out beside it, the kept parts set the run's peak, at 100,000 tables 1.32 GB against the
  -- plan's own 1.17. Its pages go back to the system before the writing starts, not after:
  -- written on top of the plan's high-water mark, the written form raised the run's peak by
  -- 30-50 MB over the plan's.)
  local was_running = collectgarbage("isrunning")
  require("tide.core").release_memory()   -- (a full collection first)
  collectgarbage("stop")
  local _ <close> = setmetatable({}, { __close = function() if was_running then collectgarbage("restart") end end })
  local written, written_pre = relocate.write(kept, keep), relocate.write({ plan.pre_data or false }, keep)
  kept, plan.pre_data = nil, nil   -- luacheck: ignore 311
  require("tide.core").release_memory()   -- (a full collection first)
  kept = relocate.read(written)
  written = nil   -- luacheck: ignore 311
  for i, name in ipairs(names) do plan[name] = kept[i] or nil end
  plan.pre_data = relocate.read(written_pre)[1] or nil
end

-- What the change stream reads of a plan (tide.cdc): what keep_for_run kept, without the
-- steps: past the post-data phase no step runs again in this attempt (a retry makes its plan
-- anew), and the stream may run for days.
function M.keep_for_stream(plan)
  plan.pre_data, plan.post_data = {}, {}
  plan.for_stream = true
end

-- The plan on.cutover hooks see (docs/incremental.md: its steps, objects and by_key too): a
-- plan the stream trimmed is made whole (tide.plan.build over the hooks' connections) the
-- first time a hook reads one of those or iterates the plan with pairs, and that plan answers
-- from then on. A cutover whose hooks do not read them pays nothing in downtime.
local TRIMMED = { objects = true, by_key = true, pre_data = true, post_data = true }

function M.for_hooks(plan, task, source, target)
  if type(plan) ~= "table" or not plan.for_stream then return plan end
  local whole
  local function made_whole()
    whole = whole or M.build(task, source, target)
    return whole
  end
  return setmetatable({}, {
    __index = function(_, field)
      if TRIMMED[field] then return made_whole()[field] end
      return (whole or plan)[field]
    end,
    __pairs = function() return next, made_whole(), nil end,   -- every field: the whole plan's
  })
end

-- True when the plan can be carried out: no errors, no conflicts with the target.
function M.runnable(plan)
  return #plan.errors == 0 and #plan.conflicts == 0
end

return M
