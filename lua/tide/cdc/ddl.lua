-- tide.cdc.ddl — DDL replication during incremental migration (docs/incremental.md, "DDL
-- replication").
--
-- On the source, the task's event trigger (ddl_command_end and sql_drop; tide.cdc.ddl_sql)
-- records every DDL command on a followed object as a transactional logical decoding message,
-- with the catalog description of each table the command touched taken inside the DDL's own
-- transaction. The message reaches the stream in commit order between the changes before and
-- after it; the engine holds it there (engine/cdc/apply_ddl.c) and this module decides:
--   * what the command means for the target: the target statements are generated from the
--     description, under the playbook's rename rules — never by rewriting the source text;
--     for a known table, as the difference between what the target has (`known`) and the new
--     description (the table statements: tide.cdc.ddl_table);
--   * what on.ddl says ("apply", "skip", "stop");
--   * the new map entries of the stream (a new table, a column added, a table renamed ...).
-- The statements run in the open target transaction of the group, with the record of what the
-- target now has (`<state_schema>.ddl_tables`), and commit with the origin's advance or not at
-- all: a kill before the commit finds the old record and the DDL again in the stream; a kill
-- after finds the new record and a stream that starts past the DDL.
local json = require "tide.json"
local log = require "tide.log"
local failure = require "tide.failure"
local sqlident = require "tide.sqlident"
local objects = require "tide.cdc.objects"
local ddl_sql = require "tide.cdc.ddl_sql"
local tbl_sql = require "tide.cdc.ddl_table"
local record = require "tide.cdc.ddl_record"
local known_store = require "tide.cdc.ddl_known"

local M = {}

local SYSTEM = { pg_catalog = true, information_schema = true, pg_toast = true }

local function conf(task) return task.incremental or {} end

function M.enabled(task)
  return task.phases ~= nil and task.phases.incremental == true and conf(task).ddl ~= false
end

-- names(task) → { task, prefix (of the messages), fn_schema, fn, end_trigger, drop_trigger, publication,
-- truncate_fn, truncate_trigger (a partition's TRUNCATE: tide.cdc.ddl_sql.truncate_function_sql) }
function M.names(task)
  local n = objects.names(task)
  local base = n.prefix:sub(1, 55)
  local r = { task = task.name, prefix = n.prefix .. "_ddl", fn_schema = n.heartbeat_schema, fn = base .. "_ddl",
              end_trigger = base .. "_ddl_end", drop_trigger = base .. "_ddl_drop", publication = n.publication,
              heartbeat_schema = n.heartbeat_schema, heartbeat_name = n.heartbeat_name,
              truncate_fn = base .. "_truncate", truncate_trigger = base .. "_truncate",
              inserts_publication = n.inserts_publication }
  r.truncate_fn_qualified = sqlident.quote_always(r.fn_schema) .. "." .. sqlident.quote_always(r.truncate_fn)
  return r
end

local function q(s) return sqlident.quote(s) end
local function qq(schema, name) return q(schema) .. "." .. q(name) end
local function lit(s) return "'" .. tostring(s):gsub("'", "''") .. "'" end

------------------------------------------------------------------------ the source side

-- The schemas whose objects are followed: those the plan selected (and those of selected tables).
function M.followed_schemas(task, plan)
  local set, list = {}, {}
  local state_schema = task.state_schema or "pgtide"
  local function add(s)
    if s and not set[s] and not SYSTEM[s] and s ~= state_schema then set[s] = true; list[#list + 1] = s end
  end
  local model = plan.model
  if model and model.schemas then
    for name, obj in pairs(model.schemas) do if obj.selected then add(name) end end
  end
  for _, tbl in ipairs(plan.tables or {}) do add(tbl.source.schema) end
  table.sort(list)
  return list
end

-- Whether the source role may create the event trigger: { ok = bool, why = text }.
function M.can_install(source)
  local rows = assert(source:query("SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user"))
  if rows[1] and rows[1].rolsuper then return { ok = true } end
  return { ok = false, why = "creating an event trigger needs a superuser, and the source role " ..
           "is not one" }
end

-- The truncate trigger on every partition of the publication's partitioned tables that lacks
-- it (tide.cdc.ddl_sql.truncate_triggers_sql; before the slot is made, so that no TRUNCATE of a
-- partition the stream will read goes unrecorded). CREATE TRIGGER waits for the writes in flight
-- on the partition; it gives up after TRUNCATE_LOCK_WAIT.
local TRUNCATE_LOCK_WAIT = "10s"
local function truncate_triggers(task, n, source)
  local sql = ddl_sql.truncate_triggers_sql(n.truncate_fn_qualified, n)
  local steps = { "BEGIN", "SET TRANSACTION READ WRITE", "SET LOCAL lock_timeout = " .. lit(TRUNCATE_LOCK_WAIT), sql, "COMMIT" }
  for _, st in ipairs(steps) do
    local ok, err = source:exec(st)
    if not ok then
      source:exec("ROLLBACK")
      failure.raise("failed", string.format("cannot give the partitions of task %s's partitioned tables their " ..
        "TRUNCATE trigger on the source: %s\n  hint: %s", task.name, err.message or tostring(err),
        err.sqlstate == "55P03" and ("a partition was locked by another session for " .. TRUNCATE_LOCK_WAIT ..
          " (CREATE TRIGGER waits for the writes in flight on it): run again when it is free") or
        "run the task as a superuser of the source, or set incremental.ddl = false (a TRUNCATE of a single " ..
        "partition is then not followed)"), { err = err })
    end
  end
end

-- Create (or replace) the event trigger and its function on the source.
function M.install(task, plan, source)
  local n = M.names(task)
  local fn = qq(n.fn_schema, n.fn)
  local schemas = M.followed_schemas(task, plan)
  local sql = (ddl_sql.function_sql(fn, n, schemas, { { n.heartbeat_schema, n.heartbeat_name } }))
  -- Made by an earlier run as it would be now: left alone (a resumed run may find the source
  -- fenced by a cutover that did not finish, and takes no lock it does not need).
  local body = sql:match("%$pgtide%$(.*)%$pgtide%$$")
  local have = assert(source:query([[
SELECT p.prosrc, (SELECT count(*) FROM pg_catalog.pg_event_trigger e
                  WHERE e.evtfoid = p.oid AND e.evtname = ANY ($2) AND e.evtenabled <> 'D') AS triggers
FROM pg_catalog.pg_proc p WHERE p.oid = pg_catalog.to_regprocedure($1)]], fn .. "()", { n.end_trigger, n.drop_trigger }))
  local tsql = ddl_sql.truncate_function_sql(n.truncate_fn_qualified, n)
  local tbody = tsql:match("%$pgtide%$(.*)%$pgtide%$$")
  local thave = assert(source:query("SELECT p.prosrc FROM pg_catalog.pg_proc p WHERE p.oid = pg_catalog.to_regprocedure($1)",
                                    n.truncate_fn_qualified .. "()"))
  if have[1] and have[1].prosrc == body and tonumber(have[1].triggers) == 2 and thave[1] and thave[1].prosrc == tbody then
    truncate_triggers(task, n, source)
    return schemas
  end
  local statements = {
    "BEGIN",
    "SET TRANSACTION READ WRITE",
    tsql,
    "COMMENT ON FUNCTION " .. n.truncate_fn_qualified .. "() IS " ..
      lit("pgtide: TRUNCATE of a partition, for DDL replication of task " .. task.name),
    sql,
    "COMMENT ON FUNCTION " .. fn .. "() IS " .. lit("pgtide: DDL replication of task " .. task.name),
    "DROP EVENT TRIGGER IF EXISTS " .. q(n.end_trigger),
    "DROP EVENT TRIGGER IF EXISTS " .. q(n.drop_trigger),
    "CREATE EVENT TRIGGER " .. q(n.end_trigger) .. " ON ddl_command_end EXECUTE FUNCTION " .. fn .. "()",
    "CREATE EVENT TRIGGER " .. q(n.drop_trigger) .. " ON sql_drop EXECUTE FUNCTION " .. fn .. "()",
    "COMMIT",
  }
  for _, s in ipairs(statements) do
    local ok, err = source:exec(s)
    if not ok then
      source:exec("ROLLBACK")
      failure.raise("failed", string.format("cannot create the DDL event trigger of task %s on the source: %s\n" ..
        "  hint: creating an event trigger needs a superuser; run the task as one, or set incremental.ddl = false " ..
        "(then DDL on the source stops the stream, as without DDL replication)", task.name,
        err.message or tostring(err)), { err = err })
    end
  end
  truncate_triggers(task, n, source)
  return schemas
end

-- Drop the event triggers and their function; returns what was dropped (for release).
function M.remove(task, source)
  local n = M.names(task)
  local dropped = {}
  local rows = assert(source:query("SELECT evtname FROM pg_catalog.pg_event_trigger WHERE evtname = ANY ($1) " ..
                                   "ORDER BY evtname", { n.end_trigger, n.drop_trigger }))
  for _, r in ipairs(rows) do
    assert(source:exec("DROP EVENT TRIGGER IF EXISTS " .. q(r.evtname)))
    dropped[#dropped + 1] = "event trigger " .. r.evtname
  end
  local fn = qq(n.fn_schema, n.fn)
  local f = assert(source:query("SELECT pg_catalog.to_regprocedure($1) IS NOT NULL AS present", fn .. "()"))
  if f[1].present then
    assert(source:exec("DROP FUNCTION IF EXISTS " .. fn .. "()"))
    dropped[#dropped + 1] = "function " .. n.fn_schema .. "." .. n.fn .. "()"
  end
  -- the truncate function and, with it, its triggers on the partitions (DROP TRIGGER locks each
  -- partition for a moment)
  local t = assert(source:query([[
SELECT (SELECT count(*) FROM pg_catalog.pg_trigger g WHERE g.tgfoid = p.oid) AS triggers
FROM pg_catalog.pg_proc p WHERE p.oid = pg_catalog.to_regprocedure($1)]], n.truncate_fn_qualified .. "()"))
  if t[1] then
    local ok, err = source:exec("DROP FUNCTION IF EXISTS " .. n.truncate_fn_qualified .. "() CASCADE")
    if not ok then
      failure.raise("failed", string.format("cannot drop task %s's TRUNCATE trigger function on the source: %s\n" ..
        "  hint: a partition was busy (DROP TRIGGER locks it for a moment); run the release again", task.name,
        err.message or tostring(err)), { err = err })
    end
    dropped[#dropped + 1] = string.format("function %s.%s() and its TRUNCATE trigger on %d partition(s)",
      n.fn_schema, n.truncate_fn, tonumber(t[1].triggers) or 0)
  end
  return dropped
end

------------------------------------------------------------------------ what the target has

-- The record itself (table, load, statements): tide.cdc.ddl_record.
local state_table, ensure_state, persist_sql = record.table, record.ensure, record.persist_sql
M.load, M.has_record = record.load, record.has_record

-- source column -> target column of a plan table
local function column_map(tbl)
  local cols = {}
  for _, c in ipairs(tbl.columns or {}) do cols[c.name] = c.target or c.name end
  return cols
end

-- A new slot: record what the target has of every table of the plan, from the source catalog
-- now (the schema phase made the target from the same catalog). Replaces an earlier record.
function M.record_start(task, plan, source, target)
  ensure_state(task, target)
  local oids, by_oid = {}, {}
  for _, tbl in ipairs(plan.tables or {}) do
    if tbl.oid and not tbl.parent then oids[#oids + 1] = tonumber(tbl.oid); by_oid[tostring(tbl.oid)] = tbl end
  end
  -- the partitioned tables of the plan (their rows come under their name) are recorded as tables
  local roots, root_names = {}, {}
  for _, tbl in ipairs(plan.tables or {}) do
    local root = tbl.parent and plan.by_key and plan.by_key["table:" .. tbl.parent]
    if root and not roots[tbl.parent] then
      roots[tbl.parent] = root
      root_names[#root_names + 1] = qq(root.schema, root.name)
    end
  end
  if #root_names > 0 then
    for _, r in ipairs(assert(source:query("SELECT u.name, pg_catalog.to_regclass(u.name)::oid::bigint AS oid " ..
                                           "FROM unnest($1::text[]) AS u(name)", root_names))) do
      for _, root in pairs(roots) do
        if r.oid ~= nil and r.oid ~= json.null and qq(root.schema, root.name) == r.name then
          oids[#oids + 1] = tonumber(r.oid)
          by_oid[tostring(r.oid)] = { target = root.target, columns = root.columns or {} }
        end
      end
    end
  end
  local parts = {}   -- the partitions of the plan's partitioned tables (their rows come through the root)
  for _, tbl in ipairs(plan.tables or {}) do
    if tbl.oid and tbl.parent then parts[#parts + 1] = tonumber(tbl.oid); by_oid[tostring(tbl.oid)] = tbl end
  end
  local clear = string.format("DELETE FROM %s WHERE task = %s", state_table(task), lit(task.name))
  -- A first slot: the descriptions go from the source to the target's record as printed,
  -- never all held here (ddl_record.write_described).
  if not M.has_record(task, target) then
    local list = {}
    for _, oid in ipairs(oids) do
      local tbl = by_oid[tostring(oid)]
      list[#list + 1] = { oid = oid, cols = column_map(tbl), target = tbl.target }
    end
    -- what DETACH and ATTACH PARTITION are compared with
    for _, oid in ipairs(parts) do list[#list + 1] = { oid = oid, target = by_oid[tostring(oid)].target, partition = true } end
    -- Past one chunk, a second source connection describes every other chunk while the
    -- target stores the one before (ddl_sql.describe_parallel); without it (the source refused
    -- one more connection), the one connection does it all.
    local conns = { source }
    if #list > ddl_sql.CHUNK then
      local opened, extra = pcall(require("tide.connect").open, task, "source",
                                  { application_name = "pgtide:" .. task.name .. ":describe" })
      if opened then conns[2] = extra end
    end
    local ok, err = pcall(function()
      assert(target:exec("BEGIN"))
      assert(target:exec(clear))
      record.write_described(task, source, target, list, function(_, wanted, each)
        return ddl_sql.describe_parallel(conns, wanted, each)
      end)
    end)
    if conns[2] then conns[2]:close() end
    if not ok then target:exec("ROLLBACK"); error(err, 0) end
    assert(target:exec("COMMIT"))
    return
  end
  -- A slot made again (a full load that starts over): DDL of the source since the target was
  -- last brought up to date went with the old slot. What the record says the target has is
  -- brought to what the source has now, before the copy. One target transaction; the
  -- descriptions are read and the statements run a chunk at a time, never all held.
  local old = M.load(task, target)
  local d = old and M.context(task, old)
  local function exec(sql)
    local ok, err = target:exec(sql)
    if not ok then error(err, 0) end
  end
  assert(target:exec("BEGIN"))
  local ok, err = pcall(function()
    exec(clear)
    if old then
      -- tables the target has that the source dropped meanwhile go too
      local gone = {}
      for oid in old:oids() do
        local info = not by_oid[oid] and old:get(oid)
        if info and not info.ignored and not info.sequence then gone[#gone + 1] = tonumber(oid) end
      end
      local still = ddl_sql.describe(source, gone)
      for _, oid in ipairs(gone) do
        local info = old:get(oid)
        if not still[tostring(oid)] then exec("DROP TABLE IF EXISTS " .. qq(info.target.schema, info.target.name)) end
      end
    end
    local w = record.writer(task, target)
    ddl_sql.describe_each(source, oids, function(oid, text)
      local desc = json.decode(text)
      local tbl = by_oid[oid]
      if d then
        local list, rec = tbl_sql.catch_up(d, target, oid, desc, tbl)
        if rec then
          for _, sql in ipairs(list) do exec(sql) end
          w.add(oid, json.encode(rec))
          return
        end
      end
      local cols = column_map(tbl)
      for _, c in ipairs(desc.columns or {}) do
        if not cols[c.name] and c.generated == "s" then cols[c.name] = c.name end
      end
      w.add(oid, json.encode({ desc = desc, cols = cols, target = { schema = tbl.target.schema, name = tbl.target.name } }))
    end)
    -- the partitions: what DETACH and ATTACH PARTITION are compared with
    ddl_sql.describe_each(source, parts, function(oid, text)
      local tbl = by_oid[oid]
      w.add(oid, json.encode({ desc = json.decode(text), cols = {}, partition = true,
                               target = { schema = tbl.target.schema, name = tbl.target.name } }))
    end)
    w.flush()
  end)
  if not ok then target:exec("ROLLBACK"); error(err, 0) end
  assert(target:exec("COMMIT"))
end

-- cdc.prepare's part: the event trigger made (or replaced: the selection may have changed), and
-- on a new slot (`fresh`) the record of what the target has started. With incremental.ddl =
-- false a trigger an earlier run made is dropped.
function M.prepare(task, plan, source, target, fresh)
  if not M.enabled(task) then
    M.remove(task, source)
    return
  end
  local can = M.can_install(source)
  if not can.ok then
    failure.raise("failed", "DDL replication cannot be set up on the source: " .. can.why .. "\n  hint: run the " ..
      "task as a superuser of the source (on a managed service, its equivalent role), or set incremental.ddl = " ..
      "false (DDL on the source then stops the stream with a message, as without DDL replication)")
  end
  M.install(task, plan, source)
  ensure_state(task, target)
  if fresh or not M.has_record(task, target) then M.record_start(task, plan, source, target) end
end

-- Release: forget the record on the target.
M.forget = record.forget

------------------------------------------------------------------------ the stream's view

-- The stream's DDL state: st.ddl = M.start(task, plan, target)
function M.context(task, known)
  local map = task.rename and require("tide.rename").compile(task.rename) or nil
  local selector = require("tide.select").compile(task.select, { kinds = require("tide.kinds").selectable })
  return { task = task, map = map, selector = selector, known = known or known_store.new(), base = {}, applied = 0, skipped = 0,
           recent = {}, warn = {} }
end

function M.start(task, plan, target)
  ensure_state(task, target)
  -- the record itself is read by every stream session, once it holds the task's origins
  local d = M.context(task, nil)
  d.plan = plan
  -- the target's roles: a grant to one it does not have is left out
  d.roles = {}
  for _, r in ipairs(assert(target:query("SELECT rolname FROM pg_catalog.pg_roles"))) do d.roles[r.rolname] = true end
  -- The target's enabled event triggers: quiet while pgtide's DDL runs (below)
  d.event_triggers = {}
  for _, r in ipairs(assert(target:query("SELECT evtname, evtenabled FROM pg_catalog.pg_event_trigger " ..
                                         "WHERE evtenabled <> 'D' ORDER BY evtname"))) do
    d.event_triggers[#d.event_triggers + 1] = { name = r.evtname, enabled = r.evtenabled }
  end
  return d
end

------------------------------------------------------------------------ map entries

-- The stream's map entries of recorded tables: tide.cdc.ddl_entries.
local entries = require "tide.cdc.ddl_entries"
M.entry, M.overlay = entries.entry, entries.overlay

------------------------------------------------------------------------ one DDL message

-- A statement's text with the values of password-like options and connection-string keys
-- masked, for anything pgtide prints (docs: secrets never appear in output).
local function masked(text)
  text = tostring(text)
  for _, word in ipairs({ "[Pp][Aa][Ss][Ss]", "[Pp][Ww][Dd]", "[Ss][Ee][Cc][Rr][Ee][Tt]", "[Tt][Oo][Kk][Ee][Nn]" }) do
    text = text:gsub("(%w*" .. word .. "%w*[\"]?%s*=?%s*)'[^']*'", "%1'" .. require("tide.secret").MASK .. "'")
    text = text:gsub("(%w*" .. word .. "%w*%s*=%s*)([^%s',;)]+)", "%1" .. require("tide.secret").MASK)
  end
  return text
end
M.masked = masked

-- The source statement for messages: one line, at most 200 characters, secrets masked.
local function short(statement)
  local text = masked(statement or "?"):gsub("%s+", " "):gsub("^ ", ""):gsub(" $", "")
  if #text > 200 then text = text:sub(1, 197) .. "..." end
  return text
end
M.short = short

local function summary_of(msg)
  local cmds = msg.commands or msg.dropped or {}
  local first = cmds[1] or {}
  local tag = first.tag or ("DROP " .. string.upper(first.type or "?"))
  return tag, first.identity
end

local function selected(d, desc)
  local kind = desc.kind == "S" and "sequence" or "table"
  return (d.selector:object(kind, desc.schema, desc.name))
end

-- What a message means: { tag, object, statement, mapped = { sql... }, records = { [oid] = info
-- | false }, targets = { entry... }, remove = { {schema, name} }, warnings = { text }, stop = text }
function M.plan_message(d, msg)
  local tag, identity = summary_of(msg)
  local r = { tag = tag, object = identity, statement = msg.statement, mapped = {}, records = {}, targets = {},
              remove = {}, warnings = {}, selected = false }
  local function add(list) for _, s in ipairs(list) do r.mapped[#r.mapped + 1] = s end end
  -- a partitioned table's partitions created, attached and detached (tide.cdc.ddl_table)
  local function add_partitions(desc, target)
    local more, recs, remove, warnings, stop = tbl_sql.partitions_sql(d, desc, target)
    add(more)
    for k, v in pairs(recs) do r.records[k] = v end
    for _, x in ipairs(remove) do r.remove[#r.remove + 1] = x end
    for _, w in ipairs(warnings) do r.warnings[#r.warnings + 1] = w end
    r.stop = r.stop or stop
  end
  if msg.event == "drop" then
    for _, o in ipairs(msg.dropped or {}) do
      local oid = tostring(o.oid)
      local info = d.known:get(oid)
      if o.type == "table" and info then
        r.selected = r.selected or not info.ignored
        if not info.ignored then add({ "DROP TABLE IF EXISTS " .. qq(info.target.schema, info.target.name) .. " CASCADE" }) end
        r.records[oid] = false
        r.remove[#r.remove + 1] = { info.desc.schema, info.desc.name }
      elseif o.type == "index" and o.original then
        -- an index of a table the target has: dropped there under its mapped name
        for toid, found in d.known:containing(oid) do
          -- (DROP INDEX a, b: the second starts from what the first left of the record)
          local t = r.records[toid]
          if t == nil then t = found end
          for _, i in ipairs(t and not t.ignored and t.desc.indexes or {}) do
            if tostring(i.oid) == oid then
              local xs, xn = tbl_sql.map_object(d, "index", o.schema, o.name)
              add({ "DROP INDEX IF EXISTS " .. qq(xs == o.schema and t.target.schema or xs, xn) })
              r.selected = true
              local keep = {}
              for _, other in ipairs(t.desc.indexes) do if tostring(other.oid) ~= oid then keep[#keep + 1] = other end end
              t.desc.indexes = keep
              r.records[toid] = t
            end
          end
        end
      elseif (o.type == "sequence" or o.type == "view" or o.type == "materialized view" or o.type == "function"
              or o.type == "procedure" or o.type == "type") and o.original then
        local kind = ({ ["materialized view"] = "matview" })[o.type] or o.type
        if d.selector:object(kind == "matview" and "matview" or kind, o.schema, o.name) then
          local what = ({ sequence = "SEQUENCE", view = "VIEW", ["materialized view"] = "MATERIALIZED VIEW",
                          ["function"] = "FUNCTION", procedure = "PROCEDURE", type = "TYPE" })[o.type]
          if o.type == "function" or o.type == "procedure" then
            local args = o.identity:match("(%b())$") or "()"
            local fs, fn = tbl_sql.map_object(d, kind, o.schema, o.name)
            add({ "DROP " .. what .. " IF EXISTS " .. qq(fs, fn) .. tbl_sql.type_text(d, args) })
          else
            local os_, on = tbl_sql.map_object(d, kind, o.schema, o.name)
            add({ "DROP " .. what .. " IF EXISTS " .. qq(os_, on) })
          end
          r.selected = true
        end
      end
    end
    return r
  end
  -- ddl_command_end: the tables the commands touched, in their order
  local order, seen, grant_only = {}, {}, {}
  for _, c in ipairs(msg.commands or {}) do
    local oid = tbl_sql.val(c.table) and tostring(c.table)
    if oid and not seen[oid] and msg.tables[oid] then
      seen[oid] = true; order[#order + 1] = oid; grant_only[oid] = c.grant == true
    elseif oid and c.grant ~= true then
      grant_only[oid] = false
    end
  end
  d.warn = {}
  for _, oid in ipairs(order) do
    local desc = msg.tables[oid]
    local info = d.known:get(oid)
    if grant_only[oid] then
      -- GRANT/REVOKE: every published table with privileges came; only a difference matters
      if info and not info.ignored and not info.partition and not info.sequence then
        local warned = #d.warn
        local list, new = tbl_sql.alter_table(d, info, desc)
        -- (a grant left out is recorded as made: it is not warned about again)
        if #d.warn > warned then r.records[oid] = new end
        if #list > 0 then
          r.selected = true
          add(list)
          r.records[oid] = new
          r.changed = (r.changed and (r.changed .. ", ") or "") .. desc.schema .. "." .. desc.name
        end
      end
    elseif desc.kind == "S" then
      -- a sequence of a followed schema (not an identity column's)
      if selected(d, desc) then
        r.selected = true
        local s = desc.sequence
        local ss, sn = tbl_sql.map_object(d, "sequence", desc.schema, desc.name)
        if s and s ~= json.null then
          local opts = string.format("AS %s INCREMENT BY %s MINVALUE %s MAXVALUE %s START WITH %s CACHE %s %s",
            s.type, s.increment, s.min, s.max, s.start, s.cache, s.cycle and "CYCLE" or "NO CYCLE")
          if info then
            if info.desc.name ~= desc.name then
              add({ "ALTER SEQUENCE " .. qq(info.target.schema, info.target.name) .. " RENAME TO " .. q(sn) })
            end
            add({ "ALTER SEQUENCE " .. qq(ss, sn) .. " " .. opts })
          else
            add({ "CREATE SEQUENCE IF NOT EXISTS " .. qq(ss, sn) .. " " .. opts })
          end
        end
        r.records[oid] = { desc = desc, cols = {}, target = { schema = ss, name = sn }, sequence = true }
      end
    elseif desc.partition and (desc.kind == "r" or desc.kind == "p") then
      local list, rec, warning = tbl_sql.partition_sql(d, info, desc)
      if warning then
        r.warnings[#r.warnings + 1] = warning
      else
        r.selected = true
        add(list)
        r.records[oid] = rec
      end
      if rec and desc.kind == "p" then
        add_partitions(desc, rec.target)
      end
    elseif desc.kind == "p" and not info and tbl_sql.parent_target(d, { oid = oid, schema = desc.schema, name = desc.name }) then
      -- a partitioned table the task started with: its partitions attached and detached
      r.selected = true
      add_partitions(desc, tbl_sql.parent_target(d, { oid = oid, schema = desc.schema, name = desc.name }))
    elseif desc.kind ~= "r" and desc.kind ~= "p" then
      r.warnings[#r.warnings + 1] = string.format("%s.%s is not a plain table (kind %s): its DDL is not followed",
        desc.schema, desc.name, desc.kind)
    elseif info and info.sequence then
      -- (a relation oid cannot turn from a sequence into a table)
    elseif info and not info.ignored and not info.partition then
      r.selected = true
      local list, new = tbl_sql.alter_table(d, info, desc)
      add(list)
      if desc.kind == "p" then
        add_partitions(desc, new.target)
      end
      r.records[oid] = new
      local e = M.entry(d, new, d.base[oid])
      e.replaces = { info.desc.schema, info.desc.name }
      r.targets[#r.targets + 1] = e
    elseif not selected(d, desc) then
      -- a table of a followed schema that the selection leaves out: its rows (it is in the
      -- publication) are never applied
      local rec = { desc = desc, cols = {}, target = { schema = desc.schema, name = desc.name }, ignored = true }
      r.records[oid] = rec
      local e = M.entry(d, rec)
      if info then e.replaces = { info.desc.schema, info.desc.name } end
      r.targets[#r.targets + 1] = e
    else
      r.selected = true
      if desc.had_rows then
        r.stop = string.format("table %s.%s joined the publication with rows already in it (it was created " ..
          "without a primary key or replica identity, or moved into a followed schema): those rows were never " ..
          "streamed", desc.schema, desc.name)
      elseif not desc.published then
        r.warnings[#r.warnings + 1] = string.format("new table %s.%s has no primary key or replica identity: it is " ..
          "created on the target but not streamed until it gets one (as precheck table_without_key says for " ..
          "existing tables); rows written before then are not migrated", desc.schema, desc.name)
      end
      if info and info.ignored then r.remove[#r.remove + 1] = { info.desc.schema, info.desc.name } end
      local list, new = tbl_sql.create_table(d, desc)
      add(list)
      r.records[oid] = new
      r.targets[#r.targets + 1] = M.entry(d, new)
    end
  end
  for _, w in ipairs(d.warn) do r.warnings[#r.warnings + 1] = w end
  -- (a GRANT/REVOKE: the tables whose privileges changed)
  if r.tag == "GRANT" or r.tag == "REVOKE" then r.object = r.changed or "-" end
  -- commands on followed objects other than tables and sequences: views, functions, types
  for _, c in ipairs(msg.commands or {}) do
    if not tbl_sql.val(c.table) and tbl_sql.val(c.schema) then
      r.other = r.other or {}
      r.other[#r.other + 1] = c
    end
  end
  return r
end

-- The statement of a command pgtide does not describe (a view, function, type, trigger ...),
-- applied as the source ran it when that is safe: one statement, and no name in it that the
-- rename rules map to another (a table, column or schema of the task). Returns the text, or
-- nil and why not.
function M.verbatim(d, statement)
  if type(statement) ~= "string" then return nil, "the source did not say the statement" end
  local ok, tokens = pcall(sqlident.tokens, statement)
  if not ok then return nil, "it could not be read as SQL" end
  local last
  for i, t in ipairs(tokens) do
    if t.type ~= "space" and t.type ~= "comment" then last = i end
  end
  for i, t in ipairs(tokens) do
    if t.text == ";" and i ~= last then
      return nil, "it was sent with other statements in one query string (" .. short(statement) .. ")"
    end
  end
  if d.map then
    local words = d.known:renamed_words()
    for _, t in ipairs(tokens) do
      if t.name and words[t.name] then
        return nil, "it names " .. t.name .. ", which the rename rules map to another name on the target"
      end
    end
  end
  return (statement:gsub(";%s*$", ""))
end

-- The d table on.ddl sees.
local function hook_view(r, ev)
  return { tag = r.tag, object = r.object, statement = r.statement, mapped = table.concat(r.mapped, ";\n"),
           statements = r.mapped, lsn = ev.lsn, commit_lsn = ev.commit_lsn, selected = r.selected }
end

-- A TRUNCATE of one partition (its trigger's message): the partition's target table truncated at
-- the message's place in its transaction. A TRUNCATE of the partitioned table sends one for each
-- partition after its own (the target's partitions are empty by then: no harm).
local function truncate_partition(d, s, ev, msg)
  local info = d.known:get(tostring(msg.oid))
  local reply = { applied = false, statements = {}, targets = {}, remove = {} }
  local name = tostring(msg.schema) .. "." .. tostring(msg.name)
  if info and info.partition and not info.ignored then
    local sql = "TRUNCATE TABLE ONLY " .. qq(info.target.schema, info.target.name)
    reply.applied = true
    reply.statements[1] = { sql = sql, context = string.format("applying the TRUNCATE of partition %s at LSN %s " ..
      "on the target: %s", name, ev.lsn, sql) }
  end
  s:reply(reply)
  if reply.applied then
    log.write("info", "ddl", string.format("TRUNCATE of partition %s at LSN %s applied to %s.%s", name, ev.lsn,
      info.target.schema, info.target.name), { lsn = ev.lsn, tag = "TRUNCATE" })
  else
    log.warning("ddl", string.format("TRUNCATE of %s at LSN %s: not a partition the target has of a followed table; " ..
      "not applied", name, ev.lsn), { lsn = ev.lsn })
  end
end

-- Handle one { kind = "ddl" } event: decide, then answer the stream. Raises a failure to stop.
function M.handle(d, s, ev)
  local ok, msg = pcall(json.decode, ev.content)
  if not ok or type(msg) ~= "table" then
    failure.raise("failed", string.format("a DDL message at LSN %s could not be read (%s): not written by this " ..
      "version of pgtide?", ev.lsn, tostring(msg)))
  end
  if msg.event == "truncate" then return truncate_partition(d, s, ev, msg) end
  local pok, r = pcall(M.plan_message, d, msg)
  if not pok then
    failure.raise("failed", string.format("cannot follow the DDL at LSN %s (%s): %s\n  hint: make the same change " ..
      "on the target by hand and return \"skip\" for it from on.ddl, or set incremental.ddl = false",
      ev.lsn, short(msg.statement), tostring(r)))
  end
  for _, w in ipairs(r.warnings) do log.warning("ddl", w, { lsn = ev.lsn }) end
  -- select.rows_follow: the stream's filters and the rows copied when a parent moves in are
  -- written from the tables as the task started (tide.cdc.follow)
  local followed = require("tide.cdc.follow").touched(d.plan, msg)
  if followed and not r.stop then
    r.stop = string.format("it changes %s, which select.rows_follow follows (the stream's derived filters are " ..
      "written from the table as the task started)", followed)
  end
  -- views, functions, types, triggers ...: the source's statement as it was written
  if r.other then
    local verbatim, why = M.verbatim(d, msg.statement)
    r.selected = true
    if verbatim then
      -- An object of a schema the rename rules map elsewhere: its unqualified name (a qualified
      -- one was refused above) is made in the mapped schema, found first on the search_path.
      local schema = r.other[1].schema
      local mapped_schema = d.map and d.map:schema(schema) or schema
      if mapped_schema ~= schema then
        r.mapped[#r.mapped + 1] = "SET LOCAL search_path = " .. q(mapped_schema) .. ", public"
      end
      r.mapped[#r.mapped + 1] = verbatim
      if mapped_schema ~= schema then r.mapped[#r.mapped + 1] = "RESET search_path" end
    else
      r.stop = string.format("the %s command cannot be applied as written: %s", tostring(r.other[1].type), why)
    end
  end
  local decision = (#r.mapped > 0 or r.selected) and "apply" or "skip"
  local hook = d.task.on and d.task.on.ddl
  if hook and r.selected then
    local hok, res = pcall(hook, hook_view(r, ev))
    if not hok then
      failure.raise("failed", string.format("the on.ddl hook failed at LSN %s (%s): %s", ev.lsn,
        short(msg.statement), tostring(res)))
    end
    if res ~= nil then
      if res ~= "apply" and res ~= "skip" and res ~= "stop" then
        failure.raise("failed", string.format("on.ddl returned %s for the DDL at LSN %s: expected \"apply\", " ..
          "\"skip\" or \"stop\"", tostring(res), ev.lsn))
      end
      decision = res
    end
  end
  if decision == "apply" and r.stop then decision = "stop" end
  if decision == "stop" then
    failure.raise("failed", string.format("DDL replication stopped at LSN %s: %s\n  statement: %s\n  hint: %s",
      ev.lsn, r.stop or "on.ddl returned \"stop\"", short(msg.statement),
      "make the change on the target by hand and return \"skip\" for it from on.ddl, or release the task and migrate again"))
  end
  local reply = { applied = decision == "apply", statements = {}, targets = {}, remove = r.remove }
  -- An enum value added on the target can be used only once that transaction commits: the
  -- group ends with this source transaction, before a later one writes the new value.
  for _, c in ipairs(r.other or {}) do
    if c.tag == "ALTER TYPE" and decision == "apply" then reply.commit_after = true end
  end
  local context = string.format("applying the DDL at LSN %s (%s) on the target", ev.lsn, short(msg.statement))
  local fix = "\n  hint: fix the target by hand and return \"skip\" for this DDL from on.ddl, or set incremental.ddl = false"
  if decision == "apply" then
    -- The target's event triggers stay quiet for pgtide's DDL, as the schema phase keeps them
    -- (they are enabled after it): disabled and enabled again inside the same transaction, so
    -- no other session ever sees them off.
    local quiet = #r.mapped > 0 and d.event_triggers or {}
    for _, e in ipairs(quiet) do
      reply.statements[#reply.statements + 1] = { sql = "ALTER EVENT TRIGGER " .. q(e.name) .. " DISABLE",
        context = context .. ": keeping the target's event trigger " .. e.name .. " quiet" .. fix }
    end
    for _, sql in ipairs(r.mapped) do reply.statements[#reply.statements + 1] = { sql = sql, context = context ..
      ": " .. masked(sql) .. fix } end
    for _, e in ipairs(quiet) do
      local how = ({ O = "ENABLE", R = "ENABLE REPLICA", A = "ENABLE ALWAYS" })[e.enabled] or "ENABLE"
      reply.statements[#reply.statements + 1] = { sql = "ALTER EVENT TRIGGER " .. q(e.name) .. " " .. how,
        context = context .. ": enabling the target's event trigger " .. e.name .. " again" .. fix }
    end
    for _, e in ipairs(r.targets) do reply.targets[#reply.targets + 1] = e end
  else
    -- skipped: the target keeps what it has; the stream follows the source's new columns where
    -- the target has them (a new table's rows are ignored)
    for oid, rec in pairs(r.records) do
      if rec and not rec.partition then
        local old = d.known:get(oid)
        if old and not old.ignored then
          local cols = {}
          for _, c in ipairs(rec.desc.columns) do
            for _, oc in ipairs(old.desc.columns) do
              if oc.num == c.num and old.cols[oc.name] then cols[c.name] = old.cols[oc.name] end
            end
          end
          rec.cols, rec.target = cols, old.target
        elseif not rec.sequence then
          rec.ignored = true
        end
        local e = M.entry(d, rec, d.base[oid])
        if old then e.replaces = { old.desc.schema, old.desc.name } end
        reply.targets[#reply.targets + 1] = e
      end
    end
  end
  for oid, rec in pairs(r.records) do
    reply.statements[#reply.statements + 1] = { sql = persist_sql(d.task, oid, rec or nil),
                                                context = "recording DDL replication state on the target" }
  end
  s:reply(reply)
  for oid, rec in pairs(r.records) do d.known:set(oid, rec or nil) end
  if r.selected or #r.mapped > 0 then
    if decision == "apply" then d.applied = d.applied + 1 else d.skipped = d.skipped + 1 end
    d.recent[#d.recent + 1] = { lsn = ev.lsn, tag = r.tag, object = r.object, decision = decision }
    if #d.recent > 20 then table.remove(d.recent, 1) end
    log.write("info", "ddl", string.format("DDL at LSN %s %s: %s %s", ev.lsn, decision == "apply" and "applied" or
      "skipped", r.tag, tostring(r.object)), { lsn = ev.lsn, tag = r.tag, decision = decision })
  end
end

return M
