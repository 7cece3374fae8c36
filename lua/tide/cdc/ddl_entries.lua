-- tide.cdc.ddl_entries — the stream's map entries (engine/cdc/lua_cdc_tables.c) of the tables
-- DDL replication's record describes (tide.cdc.ddl): one table's entry, and the record laid over
-- the entries tide.cdc built from the plan when a session starts.
local sqlident = require "tide.sqlident"
local tbl_sql = require "tide.cdc.ddl_table"
local breathe = require("tide.wait").breathe
local map_columns = require("tide.cdc.tables").map_columns

local M = {}

local function conf(task) return task.incremental or {} end
local function q(s) return sqlident.quote(s) end
local function qq(schema, name) return q(schema) .. "." .. q(name) end

-- The stream's map entry of a table from its record (engine/cdc/lua_cdc_tables.c).
function M.entry(d, info, base)
  local desc = info.desc
  local e = { source_schema = desc.schema, source_name = desc.name,
              target_sql = qq(info.target.schema, info.target.name),
              display = info.target.schema .. "." .. info.target.name, columns = {}, known = {} }
  if info.ignored then
    e.ignored = true
    e.target_sql, e.display = "-", "(ignored " .. desc.schema .. "." .. desc.name .. ")"
    return e
  end
  local key
  for _, k in ipairs(desc.constraints or {}) do
    if k.type == "p" then
      key = {}
      for name in (k.def:match("%((.-)%)") or ""):gmatch("[^,]+") do
        name = name:gsub("^%s+", ""):gsub("%s+$", "")
        key[#key + 1] = name:match('^"(.*)"$') and name:sub(2, -2):gsub('""', '"') or name
      end
    end
  end
  local uniques = 0
  for _, k in ipairs(desc.constraints or {}) do if k.type == "p" or k.type == "u" or k.type == "x" then uniques = uniques + 1 end end
  for _, i in ipairs(desc.indexes or {}) do if i.unique then uniques = uniques + 1 end end
  local cols = {}
  for _, c in ipairs(desc.columns) do
    e.known[#e.known + 1] = c.name
    if tbl_sql.val(c.generated) ~= "s" and info.cols[c.name] then
      cols[#cols + 1] = { source = c.name, target = info.cols[c.name], identity_always = c.identity == "a" }
    end
  end
  e.columns = map_columns(cols, q)
  e.key = key
  e.unique_free = uniques == 0
  e.partitioned = desc.kind == "p" or nil
  local started = base ~= nil
  base = base or {}
  local may = d and conf(d.task).replica_role ~= false
  e.mergeable = may and conf(d.task).merge_updates ~= false and uniques == 1 and key ~= nil and base.mergeable ~= false
  e.batchable = may and conf(d.task).batch_inserts ~= false and base.batchable ~= false
  e.hooked, e.filter, e.known_type, e.filter_columns = base.hooked, base.filter, base.known_type, base.filter_columns
  e.follow_cascade = base.follow_cascade
  e.routes = base.routes   -- on.route (tide.cdc.route): as the stream started
  if base.filter then e.mergeable, e.batchable = false, false end
  -- A partitioned table's record describes the root, not its partitions' own unique indexes
  -- and triggers: only the stream start's verdict, which counted the whole tree on the target
  -- (tide.cdc.tables), holds; a table created or a partition attached since then, none.
  local attached = d and d.attached and d.attached[tostring(desc.oid)]
  if desc.kind == "p" and (not started or attached) then e.mergeable, e.batchable = false, false end
  -- Parallel apply (tide.cdc.lanes.table_rules) for a table DDL described: the stream start's
  -- rule when it already put the table in a group (foreign keys, unique indexes) or when
  -- nothing here asks for more; a foreign key the start did not see makes its transactions
  -- serial points (which tables it joins is not known here); a unique index besides the key
  -- one key for the table.
  local fk = false
  for _, k in ipairs(desc.constraints or {}) do if k.type == "f" then fk = true end end
  if base.lane_mode == 1 or base.lane_mode == 2 then
    e.lane_mode, e.lane_group = base.lane_mode, base.lane_group or 0
  elseif fk then
    e.lane_mode = 2
  elseif uniques > (key and 1 or 0) then
    e.lane_mode, e.lane_group = 1, 1000000000 + (desc.oid or 0) % 1000000000
  else
    e.lane_mode, e.lane_group = base.lane_mode or 0, base.lane_group or 0
  end
  local hooks = d and d.task.on and d.task.on.change
  if hooks and hooks[desc.schema .. "." .. desc.name] then e.hooked = true end
  return e
end

-- An identifier as SQL, quoted or not, back to its name.
local function unquoted(sql)
  if sql:sub(1, 1) ~= '"' then return sql end
  return (sql:sub(2, -2):gsub('""', '"'))
end

-- A map entry's column (tide.cdc.tables.map_columns): source name, target name (unquoted),
-- identity_always; nil for a table with fields besides those.
local function column_fields(x)
  if type(x) == "string" then return x, x, false end
  if type(x) ~= "table" or type(x.target_sql) ~= "string" then return nil end
  for f in pairs(x) do if f ~= "source" and f ~= "identity_always" and f ~= "target_sql" then return nil end end
  return x.source, unquoted(x.target_sql), x.identity_always or false
end

-- Whether two lists hold the same values (names, or map entries' columns field by field; a
-- column's target the same name however quoted, or given by its name alone).
local function same_list(a, b)
  if a == nil or b == nil or #a ~= #b then return a == b end
  for i, x in ipairs(a) do
    local y = b[i]
    if type(x) == "table" or type(y) == "table" then
      local xs, xt, xi = column_fields(x)
      local ys, yt, yi = column_fields(y)
      if xs == nil or ys == nil or xs ~= ys or xt ~= yt or xi ~= yi then return false end
    elseif x ~= y then
      return false
    end
  end
  return true
end

-- Whether `sql` names the table schema.name, each part quoted where it must be (sqlident) or
-- always (libpq's PQescapeIdentifier, which the plan's entries use).
local function names(sql, schema, name)
  for _, a in ipairs({ q(schema), sqlident.quote_always(schema) }) do
    for _, b in ipairs({ q(name), sqlident.quote_always(name) }) do if sql == a .. "." .. b then return true end end
  end
  return false
end

-- Whether two map entries say the same: every field the same value (the lists the same
-- table), a missing field the same as false.
local function same_entry(a, b)
  for f, v in pairs(a) do if b[f] ~= v and (v or b[f]) then return false end end
  for f, v in pairs(b) do if a[f] == nil and v then return false end end
  return true
end

-- Overlay the record on the entries tide.cdc built from the plan (a restart: the source's
-- catalog may be ahead of the position the stream restarts from; the record is what the
-- target has at that position). Returns the new list.
function M.overlay(d, entries, plan)
  local oid_of = {}
  for _, tbl in ipairs(plan.tables or {}) do
    breathe()
    if tbl.oid and not tbl.parent then oid_of[tbl.source.schema .. "\0" .. tbl.source.name] = tostring(tbl.oid) end
    local root = tbl.parent and plan.by_key and plan.by_key["table:" .. tbl.parent]
    -- once per root, not once per partition (each look-up decodes the root's record, which
    -- lists every partition: at 2,000 partitions the stream's start took seconds)
    local rkey = root and root.schema .. "\0" .. root.name
    if root and oid_of[rkey] == nil then
      oid_of[rkey] = tbl_sql.known_by_name(d, root.schema, root.name) or false
    end
  end
  local out, seen = {}, {}
  for _, e in ipairs(entries) do
    breathe()
    local oid = oid_of[e.source_schema .. "\0" .. e.source_name] or nil
    local info = oid and d.known:get(oid)
    if e.heartbeat or not oid then
      out[#out + 1] = e
    elseif info and (info.partition or info.sequence) then
      -- a partition at the stream's position (detached on the source since): its rows come
      -- through its root until the DETACH's message
      seen[oid] = true
    elseif info then
      seen[oid] = true
      d.base[oid] = e
      local n = M.entry(d, info, e)
      -- what the plan knew stays known (a column added on the source ahead of the stream)
      local k = {}
      for _, name in ipairs(n.known) do k[name] = true end
      for _, name in ipairs(e.known or {}) do if not k[name] then n.known[#n.known + 1] = name end end
      n.tolerate_lsn, n.partitioned = e.tolerate_lsn, e.partitioned
      -- lists the same as the plan's entry (no DDL since): that entry's (d.base keeps it)
      n.columns = same_list(n.columns, e.columns) and e.columns or n.columns
      n.known = same_list(n.known, e.known) and e.known or n.known
      n.key = same_list(n.key, e.key) and e.key or n.key
      if n.target_sql ~= e.target_sql and names(e.target_sql, info.target.schema, info.target.name) then
        n.target_sql = e.target_sql
      end
      -- no DDL since the plan (the usual case): the plan's entry itself, so that the stream
      -- holds one entry of the table, not two (at 10,000 tables 4.2 MB)
      out[#out + 1] = same_entry(n, e) and e or n
    end
    -- a table of the plan the record does not know was created on the source after the
    -- stream's position: its DDL message will bring it
  end
  for oid in d.known:oids() do
    breathe()
    local info = not seen[oid] and d.known:get(oid)
    if info and not info.partition and not info.sequence then out[#out + 1] = M.entry(d, info) end
  end
  return out
end

return M
