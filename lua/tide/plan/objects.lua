-- tide.plan.objects — catalog rows turned into objects, linked to one another, selected and
-- given their target names. Used for the source (which is selected and renamed) and for the
-- target (read as it is, to find what already exists).
--
-- An object: { kind =, def = (its tide.kinds entry), row =, oid =, class =, schema =, name =,
--   key = "table:app.users", ident = "app.users", owner = (the table or domain of a part),
--   inline_of = (the object whose DDL writes it, for inline rows), selected =, reason =,
--   target = { schema =, name = }, columns = (tables, views: rows with .target), checks =,
--   parents = (tables), identity_sequences = (tables: column name → sequence object) }
local kinds = require "tide.kinds"
local sqlident = require "tide.sqlident"
local breathe = require("tide.wait").breathe
local new_table = require("tide.core").new_table
local id_of = require("tide.plan.ids").id

local M = {}

local quote = sqlident.quote

-- "table app.users", "index app.users_pkey", "function app.f(integer)"
M.describe = kinds.describe

local function ident_of(obj)
  local def, row = obj.def, obj.row
  if obj.kind == "schema" or obj.kind == "extension" then return quote(obj.name) end
  -- Objects of no schema (def.global: servers, event triggers, ...): their name, or def.ident.
  if def.global then return def.ident and def.ident(obj) or quote(obj.name) end
  if def.ident then return def.ident(obj) end
  if def.space == "table" and obj.owner then
    return quote(obj.owner.schema) .. "." .. quote(obj.owner.name) .. "." .. quote(obj.name)
  end
  if def.space == "function" then
    return quote(obj.schema) .. "." .. quote(obj.name) .. "(" .. (row.identity_args or "") .. ")"
  end
  return quote(obj.schema) .. "." .. quote(obj.name)
end

-- The source key of a table ("schema.name", quoted like SQL), as plan.tables uses it. A
-- relation's ident is that text already (ident_of): no new string for each statement.
function M.table_key(obj)
  local def = obj.def
  if obj.ident and def and def.space == "relation" and not def.ident and not def.global then return obj.ident end
  return quote(obj.schema) .. "." .. quote(obj.name)
end

-- What an object has by its kind and its row: kind, def, class and phase (the kind's, until
-- the order postpones it), oid, schema and name (the row's), and for an inline row its root
-- (the object it stands with: its owner, or its owner's). They are read through the object's
-- metatable, one per kind, instead of being fields of its own. The fields every object of the
-- kind gets (its row, ident, key, target, selected, deps and steps; a table's columns; a
-- part's owner and inline_of) are the items of a list, read and written by name through the
-- metatable too: a table of 16 bytes a field instead of slots of 24 in a power of two (at
-- 100,000 tables 475,000 objects of eight or nine fields while the plan is made, 440 bytes
-- in 16 slots, become 184 or 200). Any other field set on the object is its own, and pairs()
-- over an object sees its fields by name.
local metas = setmetatable({}, { __mode = "k" })
local function object_meta(def)
  local meta = metas[def]
  if meta then return meta end
  -- (deps and steps: every object's while the plan is made, nil once it is; as fields of
  -- its own they would give each object a hash part that stays after they go.)
  local names = { "row", "ident", "key", "target", "selected", "deps", "steps" }
  if def.list == "tables" or def.list == "views" then names[#names + 1] = "columns" end
  if def.owner then names[#names + 1] = "owner" end
  if def.inline then names[#names + 1] = "inline_of" end
  local slots = {}
  for i, name in ipairs(names) do slots[name] = i end
  local index, newindex = require("tide.core").object_index(
    { kind = def.name, def = def, class = def.class, phase = def.phase }, def.global, slots)
  meta = { __index = index, __newindex = newindex, width = #names,
           __pairs = require("tide.fields").pairs_by(names) }
  metas[def] = meta
  return meta
end

-- A map of the model made the first time it is read: `fill(map)` sets its entries (rawset),
-- then the metatable goes. (No breathe in fill: a look-up may come from a C call, lpeg's,
-- that cannot yield.)
local function made_when_read(map, fill)
  return setmetatable(map, { __index = function(t, wanted)
    fill(t)
    setmetatable(t, nil)
    return rawget(t, wanted)
  end })
end

-- M.collect(cat) → model: every catalog row of every kind as an object, linked.
--   model.objects          in kind order, then catalog order
--   model.exact[id]        → the object of that row (id: tide.plan.ids.id(class, oid))
--   model.identity[id]     → the object that stands for it in dependencies (an inline
--                          row answers with its owner: a CHECK constraint with its table);
--                          it holds only what differs from model.exact and reads that for the
--                          rest (at 100,000 tables 12 MB less: half as many entries)
--   model.by_name["space\0schema\0name"] → object, for tide.ddl.lookup (made when first read)
--   model.by_key[key]      → object (made when first read)
function M.collect(cat)
  local exact = {}
  local model = { cat = cat, objects = {}, exact = exact, identity = setmetatable({}, { __index = exact }),
                  by_name = {}, by_key = {}, schemas = {}, children = {} }
  local identity = model.identity
  local function stands(id, obj)
    if exact[id] == obj then rawset(identity, id, nil) else identity[id] = obj end
  end
  for _, def in ipairs(kinds.list) do
    for _, row in ipairs(cat[def.list] or {}) do
      breathe()
      if not def.accept or def.accept(row) then
        local meta = object_meta(def)
        local obj = setmetatable(new_table(meta.width), meta)
        obj.row = row
        local n = #model.objects + 1
        model.objects[n] = obj
        model.exact[id_of(def.class, row.oid)] = obj
        if def.name == "schema" then model.schemas[row.name] = obj end
      end
    end
  end
  -- Owners and inline rows, now that every object exists.
  for _, obj in ipairs(model.objects) do
    breathe()
    if obj.def.owner then
      local class, oid = obj.def.owner(obj.row)
      obj.owner = model.exact[id_of(class, oid)]
      -- A part of a table (or domain) the catalog does not list: one an extension created
      -- (tide.plan.select leaves the part out with its extension's name).
      if not obj.owner then obj.owner_missing = class .. ":" .. tostring(oid) end
    end
    if obj.def.inline then
      local class, oid = obj.def.inline(obj.row)
      if class then obj.inline_of = model.exact[id_of(class, oid)] or false end
    end
  end
  local function root(obj)
    local guard = 0
    while obj and obj.inline_of and guard < 32 do obj, guard = obj.inline_of, guard + 1 end
    return obj
  end
  for _, obj in ipairs(model.objects) do
    breathe()
    local stands_for = root(obj)
    stands(id_of(obj.class, obj.oid), stands_for)
    for _, extra in ipairs(obj.def.identities and obj.def.identities(obj.row) or {}) do
      stands(id_of(extra[1], extra[2]), stands_for)
    end
  end
  -- Column defaults (pg_attrdef) stand for their table in pg_depend.
  for relid, columns in pairs(cat.columns_by_relid) do
    local rel = model.identity[id_of("pg_class", relid)]
    for _, column in ipairs(columns) do
      breathe()
      if rel and column.default_oid then stands(id_of("pg_attrdef", column.default_oid), rel) end
    end
  end
  for _, obj in ipairs(model.objects) do
    breathe()
    obj.ident = ident_of(obj)
    obj.key = obj.kind .. ":" .. obj.ident
  end
  -- model.by_key is made the first time it is read (by the prechecks: the plan itself goes by
  -- the objects' links), so it is not alive at the plan's peak (12.6 MB at 100,000 tables).
  made_when_read(model.by_key, function(by_key)
    for _, obj in ipairs(model.objects) do rawset(by_key, obj.key, obj) end
  end)
  -- model.by_name too: only a task that renames reads it (tide.ddl.lookup maps the names in
  -- definitions; without a rename they stay as they are), and its keys were a string per
  -- relation and function (22 MB at 100,000 tables).
  made_when_read(model.by_name, function(by_name)
    for _, obj in ipairs(model.objects) do
      local space = obj.def.space
      if space == "relation" or space == "function" or space == "collation" or obj.def.by_name then
        local name_key = space .. "\0" .. obj.schema .. "\0" .. obj.name
        if rawget(by_name, name_key) == nil then rawset(by_name, name_key, obj) end
        if obj.def.list == "types" then rawset(by_name, "type\0" .. obj.schema .. "\0" .. obj.name, obj) end
      end
    end
  end)
  -- Table structure: columns, parents, CHECK constraints and identity sequences.
  for _, obj in ipairs(model.objects) do
    breathe()
    local row = obj.row
    if obj.def.list == "tables" or obj.def.list == "views" then
      -- The catalog's own list until something changes it in place (M.own_columns): at
      -- 100,000 tables a copy each was 11 MB.
      obj.columns = cat.columns_by_relid[obj.oid] or {}
    end
    if row.parents then
      obj.parents = {}
      for _, oid in ipairs(row.parents) do
        local parent = model.exact[id_of("pg_class", oid)]
        if parent then
          obj.parents[#obj.parents + 1] = parent
          if row.is_partition then
            model.children[parent] = model.children[parent] or {}
            table.insert(model.children[parent], obj)
          end
        end
      end
    end
    local owner = obj.inline_of
    if owner and obj.kind == "constraint" and row.type == "c" and row.is_local ~= false and row.validated then
      owner.checks = owner.checks or {}
      owner.checks[#owner.checks + 1] = obj
    elseif owner and obj.kind == "sequence" then
      owner.identity_sequences = owner.identity_sequences or {}
      owner.identity_sequences[row.owned_column] = obj
    end
  end
  return model
end

-- The task's heartbeat table on the source (incremental.heartbeat_table, by default
-- public.pgtide_<task>_heartbeat): never migrated, also when a run resumes after the stream
-- created it (it would otherwise become a table to copy and to apply changes to).
local function heartbeat_names(task)
  local n = require("tide.cdc.objects").names(task)
  return n.heartbeat_schema, n.heartbeat_name
end

-- The leaf tables (those holding rows) under a table: itself, or its partitions' leaves.
function M.leaves(model, obj, out)
  out = out or {}
  if obj.row.relkind == "p" then
    for _, child in ipairs(model.children[obj] or {}) do M.leaves(model, child, out) end
  elseif obj.row.relkind == "r" and obj.selected then
    out[#out + 1] = obj
  end
  return out
end

-- Why a part whose table (or domain) is not among the objects is left out: the table
-- belongs to an extension, so CREATE EXTENSION makes it with what its script adds to it.
local function missing_owner_reason(model, obj)
  local cat = model.cat
  local ext_oid = cat.extension_of and cat.extension_of[obj.owner_missing]
  local ext = ext_oid and model.exact[id_of("pg_extension", ext_oid)]
  local what = cat.extension_description and cat.extension_description[obj.owner_missing]
  if ext_oid then
    return string.format("its %s belongs to extension %s: CREATE EXTENSION creates it",
      what or "table", ext and ext.name or tostring(ext_oid))
  end
  return string.format("its table (%s) is not a user object pgtide reads", obj.owner_missing)
end

-- M.select(model, task, selector, skipped): decides obj.selected / obj.reason for every
-- object, in an order where owners are decided before their parts, and sets the columns a
-- table keeps. Left-out objects are added to `skipped`.
function M.select(model, task, selector, skipped)
  local state_schema = task.state_schema or "pgtide"
  local hb_schema, hb_table = heartbeat_names(task)
  local function decide(obj)
    local row, def = obj.row, obj.def
    if obj.schema == state_schema then return false, "pgtide's own schema (task.state_schema)" end
    if hb_table and obj.name == hb_table and (hb_schema == nil or hb_schema == obj.schema)
      and obj.kind == "table" then
      return false, "pgtide's heartbeat table (incremental.heartbeat_table)"
    end
    -- Another task's heartbeat table (tide.catalog marks it by its comment, or by its name and
    -- columns), and a sequence OWNED BY one of its columns. Its indexes, constraints,
    -- comments and grants follow it as parts of a left-out table.
    -- The DDL event triggers of pgtide tasks and their function, and the partitions' TRUNCATE
    -- triggers and theirs (tide.cdc.ddl).
    if (obj.kind == "event_trigger" and (obj.name or ""):match("^pgtide_[%w_]+_ddl_[ed][nr][do]p?$"))
      or (obj.kind == "function" and (obj.name or ""):match("^pgtide_[%w_]+_ddl$")) then
      return false, "pgtide's DDL event trigger (incremental.ddl)"
    end
    if (obj.kind == "trigger" or obj.kind == "function") and (obj.name or ""):match("^pgtide_[%w_]+_truncate$") then
      return false, "pgtide's TRUNCATE trigger of a partition (incremental.ddl)"
    end
    if obj.kind == "table" and row.pgtide_heartbeat then
      return false, "the heartbeat table of a pgtide task"
    end
    if obj.kind == "sequence" and row.owned_table_oid then
      local owner = model.exact[id_of("pg_class", row.owned_table_oid)]
      if owner and owner.row.pgtide_heartbeat then
        return false, "owned by " .. M.describe(owner) .. ", the heartbeat table of a pgtide task"
      end
    end
    if def.skip then
      local reason = def.skip(row)
      if reason then return false, reason end
    end
    if obj.owner_missing then return false, missing_owner_reason(model, obj) end
    -- A kind that decides by other objects (a cast follows its types and function).
    if def.select then return def.select(obj, model, selector) end
    if obj.owner then
      if not obj.owner.selected then return false, "its " .. M.describe(obj.owner) .. " is left out" end
      if obj.owner.kind == "domain" then return selector:object(obj.kind, obj.schema, obj.name) end
      return selector:object(obj.kind, obj.owner.schema, obj.name, obj.owner.name)
    end
    if obj.kind == "schema" then return selector:object("schema", obj.name) end
    -- plpgsql and other extensions in pg_catalog are on every server: not worth a line in
    -- "left out" when the patterns do not name them.
    if obj.kind == "extension" and obj.schema == "pg_catalog" then
      local sel = selector.kinds or {}
      return not (sel.exclude and sel.exclude.extension) and not (sel.include and not sel.include.extension),
        "kind \"extension\" not selected"
    end
    return selector:object(obj.kind, obj.schema, obj.name)
  end
  local passes = { {}, {}, {}, {} }
  for _, obj in ipairs(model.objects) do
    breathe()
    local pass = obj.def.global and 4 or obj.inline_of ~= nil and 3 or (obj.owner and 2 or 1)
    table.insert(passes[pass], obj)
  end
  for pass = 1, 3 do
    for _, obj in ipairs(passes[pass]) do
      breathe()
      if pass == 3 then
        local root = obj.root
        obj.selected = root ~= nil and root ~= false and root.selected == true
        if not obj.selected then obj.reason = "belongs to " .. M.describe(root or nil) .. ", which is left out" end
      else
        local ok, reason = decide(obj)
        obj.selected = ok == true
        if not obj.selected then
          obj.reason = reason or "left out"
          skipped[#skipped + 1] = { kind = obj.kind, schema = obj.schema, name = obj.name, key = obj.key,
                                    table = obj.owner and obj.owner.name or nil, reason = obj.reason }
        end
      end
    end
  end
  -- Objects of no schema, once what they follow or what needs them is decided.
  require("tide.plan.database_wide").select(model, selector, passes[4], skipped, task)
  -- With include patterns, a schema is created only when it holds a selected object
  -- ("*.audit_log" matches every schema's name half, not every schema).
  if selector.includes then
    local used = {}
    for _, obj in ipairs(model.objects) do
      breathe()
      if obj.selected and obj.kind ~= "schema" and obj.schema then used[obj.schema] = true end
    end
    for _, obj in ipairs(model.objects) do
      breathe()
      if obj.kind == "schema" and obj.selected and not used[obj.name] then
        obj.selected, obj.reason = false, "holds no selected object"
        skipped[#skipped + 1] = { kind = "schema", schema = obj.name, name = obj.name, key = obj.key, reason = obj.reason }
      end
    end
  end
  -- Columns of the selected tables.
  for _, obj in ipairs(model.objects) do
    breathe()
    if obj.selected and (obj.kind == "table" or obj.kind == "foreign_table") and #obj.columns > 0 then
      local names = {}
      for i, c in ipairs(obj.columns) do names[i] = c.name end
      local kept = selector:columns(obj.schema, obj.name, names)
      -- (All kept, the usual case: the list stays as it is.)
      if #kept < #names then
        local keep = {}
        for _, name in ipairs(kept) do keep[name] = true end
        local columns = {}
        for _, c in ipairs(obj.columns) do
          if keep[c.name] then
            columns[#columns + 1] = c
          else
            obj.dropped_columns = obj.dropped_columns or {}
            obj.dropped_columns[c.num] = c
            skipped[#skipped + 1] = { kind = "column", schema = obj.schema, name = obj.name .. "." .. c.name,
              key = "column:" .. obj.ident .. "." .. quote(c.name), table = obj.name,
              reason = "excluded by " .. (selector.path or "select") .. ".columns" }
          end
        end
        obj.columns = columns
      end
    end
  end
end

-- M.own_columns(model, obj) → obj.columns, a list of the object's own: the catalog's list
-- (cat.columns_by_relid, which others read as the relation's whole list) is copied before
-- the first change in place.
function M.own_columns(model, obj)
  local columns = obj.columns
  if rawequal(columns, model.cat.columns_by_relid[obj.oid]) then
    local copy = {}
    for i, c in ipairs(columns) do copy[i] = c end
    obj.columns = copy
    return copy
  end
  return columns
end

-- M.assign_targets(model, ctx, on_error): obj.target for every object (owners first) and
-- .target on the columns of tables, views and composite types.
function M.assign_targets(model, ctx, on_error)
  local ordered = {}
  for _, obj in ipairs(model.objects) do breathe(); if not obj.owner then ordered[#ordered + 1] = obj end end
  for _, obj in ipairs(model.objects) do breathe(); if obj.owner then ordered[#ordered + 1] = obj end end
  for _, obj in ipairs(ordered) do
    breathe()
    local ok, schema, name = pcall(function()
      if obj.def.target then return obj.def.target(ctx, obj) end
      return ctx.map_name(obj.kind, obj.schema, obj.name)
    end)
    if not ok then
      if obj.selected then on_error(obj, tostring(schema)) end
      schema, name = obj.schema, obj.name
    end
    -- An object whose target names are its own (every object of a task without `rename`) is
    -- its own target: obj.target.schema and .name read its own (at 100,000 tables 47 MB of
    -- {schema, name} tables less). Read obj.target for those two fields only.
    if schema == obj.schema and name == obj.name then
      obj.target = obj
    else
      obj.target = { schema = schema, name = name }
    end
    if obj.columns then
      for i, c in ipairs(obj.columns) do
        local cok, target = pcall(function()
          if ctx.identity then return c.name end
          return ctx.map:column(obj.schema, obj.name, c.name)
        end)
        if not cok then
          if obj.selected then on_error(obj, tostring(target)) end
          target = c.name
        end
        if c.target ~= target then
          -- A row another relation's column shares, mapped otherwise there: a copy of its own
          -- (tide.catalog.read shares equal column rows).
          if c.target ~= nil then
            local copy = {}
            for f, v in next, c do copy[f] = v end
            c = setmetatable(copy, getmetatable(c))
            M.own_columns(model, obj)[i] = c
          end
          c.target = target
        end
      end
    end
  end
end

return M
