-- tide.precheck.context — what every check receives (built-in or the playbook's own):
--
--   ctx.task, ctx.plan                 the task and its plan (tide.plan.build)
--   ctx.catalog, ctx.target_catalog    the raw catalogs the plan read (tide.catalog)
--   ctx.source, ctx.target             the connections, shared: their query/exec wait for one
--                                      another, so checks running at once can use them
--   ctx.versions = { source =, target = }   server_version_num of each side
--   ctx.phases                         task.phases (schema, full, incremental)
--   ctx.settings                       the policy's thresholds (precheck.settings)
--   ctx.resumed                        true when an earlier run of the task left progress
--   ctx.names = { slot =, publication =, heartbeat = { schema =, name = } }
--   ctx:query(side, sql, ...)          rows (NULL → nil), or raises with the server's message
--   ctx:once(key, fn)                  fn() computed once per precheck run and shared: two checks
--                                      asking at the same time wait for the same query
--   ctx:source_server(), ctx:target_server(), ctx:database(side)   shared facts (below)
--   ctx:table_object(tbl)              the plan's object behind a plan.tables entry
--
-- Checks run as coroutines at the same time; anything that waits on a server goes through
-- ctx.source / ctx.target (or ctx:query), which serialise the statements of one connection.
local tide = require "tide.core"
local sqlident = require "tide.sqlident"

local M = {}

local Context = {}
Context.__index = Context

-- A connection shared by coroutines: query and exec take turns; everything else is the
-- connection's own method.
function M.shared(conn)
  local busy, turn = false, tide.condition()
  local function serialised(method, ...)
    while busy do turn:wait() end
    busy = true
    local result = table.pack(pcall(method, conn, ...))
    busy = false
    turn:notify()
    if not result[1] then error(result[2], 0) end
    return table.unpack(result, 2, result.n)
  end
  local proxy = { raw = conn }
  function proxy.query(_, ...) return serialised(conn.query, ...) end
  function proxy.exec(_, ...) return serialised(conn.exec, ...) end
  return setmetatable(proxy, { __index = function(_, key)
    local value = conn[key]
    if type(value) == "function" then return function(_, ...) return value(conn, ...) end end
    return value
  end })
end

local function clean(rows)
  local null = tide.null
  for _, row in ipairs(rows) do
    for k, v in pairs(row) do if v == null then row[k] = nil end end
  end
  return rows
end

-- A Lua list as the text of a PostgreSQL array ("{1,2}", "{\"a b\"}"), for a $n::oid[] or
-- $n::text[] parameter. (Built here rather than by the engine's list parameters, whose C
-- side mishandles long lists: see the report to the lead.)
function M.array(list)
  local parts = {}
  for i, v in ipairs(list) do
    if math.type(v) == "integer" then
      parts[i] = tostring(v)
    else
      parts[i] = '"' .. tostring(v):gsub('[\\"]', "\\%0") .. '"'
    end
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

function Context:query(side, sql, ...)
  local conn = self[side]
  if not conn then error("precheck: no connection to the " .. side, 0) end
  local params = table.pack(...)
  for i = 1, params.n do
    if type(params[i]) == "table" and getmetatable(params[i]) == nil then params[i] = M.array(params[i]) end
  end
  local rows, err = conn:query(sql, table.unpack(params, 1, params.n))
  if not rows then
    error(string.format("query on the %s failed: %s\n  statement: %s", side, tostring(err),
      (sql:gsub("%s+", " "):sub(1, 160))), 0)
  end
  return clean(rows)
end

function Context:once(key, fn)
  local entry = self.memo[key]
  if entry then
    while not entry.done do entry.ready:wait() end
    if entry.failed then error(entry.value, 0) end
    return entry.value
  end
  entry = { ready = tide.condition() }
  self.memo[key] = entry
  local ok, value = pcall(fn)
  entry.done, entry.failed, entry.value = true, not ok, value
  entry.ready:notify()
  if not ok then error(value, 0) end
  return value
end

------------------------------------------------------------------------ shared facts

-- Settings are read from pg_settings with their units, so a value in kB or ms converts exactly.
local SOURCE_SERVER = [[
SELECT current_user AS user_name, current_database() AS database_name,
       r.rolsuper AS superuser, r.rolreplication AS replication,
       pg_has_role(current_user, 'pg_read_all_stats', 'USAGE') AS read_all_stats,
       has_database_privilege(current_database(), 'CREATE') AS database_create,
       version() AS version_text, pg_is_in_recovery() AS in_recovery,
       (SELECT count(*) FROM pg_replication_slots) AS slots_used,
       (SELECT count(*) FROM pg_stat_activity a
         WHERE a.backend_type = 'walsender' AND a.application_name IS DISTINCT FROM $1) AS wal_senders_used,
       (SELECT json_object_agg(s.name, json_build_array(s.setting, s.unit))
          FROM pg_settings s
         WHERE s.name IN ('wal_level', 'max_replication_slots', 'max_wal_senders',
                          'max_slot_wal_keep_size', 'wal_sender_timeout'))::text AS settings_json
FROM pg_roles r
WHERE r.rolname = current_user
]]

-- Replication origins and session_replication_role: PostgreSQL 15 made both grantable
-- (GRANT EXECUTE on the origin functions, GRANT SET ON PARAMETER); before, superuser only.
M.ORIGIN_FUNCTIONS = {
  "pg_replication_origin_create(text)", "pg_replication_origin_drop(text)",
  "pg_replication_origin_oid(text)", "pg_replication_origin_session_setup(text)",
  "pg_replication_origin_session_reset()", "pg_replication_origin_xact_setup(pg_lsn,timestamp with time zone)",
  "pg_replication_origin_progress(text,boolean)", "pg_replication_origin_advance(text,pg_lsn)",
}

local TARGET_SERVER_15 = [[
SELECT current_user AS user_name, current_database() AS database_name,
       r.rolsuper AS superuser, r.rolbypassrls AS bypassrls,
       has_database_privilege(current_database(), 'CREATE') AS database_create,
       version() AS version_text,
       has_parameter_privilege('session_replication_role', 'SET') AS replication_role_allowed,
       (SELECT bool_and(has_function_privilege('pg_catalog.' || f, 'EXECUTE'))
          FROM unnest($1::text[]) AS f) AS origins_allowed
FROM pg_roles r
WHERE r.rolname = current_user
]]

local TARGET_SERVER_OLD = [[
SELECT current_user AS user_name, current_database() AS database_name,
       r.rolsuper AS superuser, r.rolbypassrls AS bypassrls,
       has_database_privilege(current_database(), 'CREATE') AS database_create,
       version() AS version_text,
       r.rolsuper AS replication_role_allowed, r.rolsuper AS origins_allowed
FROM pg_roles r
WHERE r.rolname = current_user AND $1::text[] IS NOT NULL
]]

local DATABASE = [[
SELECT d.datname AS name, pg_encoding_to_char(d.encoding) AS encoding,
       d.datcollate AS lc_collate, d.datctype AS lc_ctype,
       coalesce(to_jsonb(d) ->> 'datlocprovider', 'c') AS provider,
       coalesce(to_jsonb(d) ->> 'datlocale', to_jsonb(d) ->> 'daticulocale') AS icu_locale,
       to_jsonb(d) ->> 'daticurules' AS icu_rules,
       to_jsonb(d) ->> 'datcollversion' AS collation_version
FROM pg_database d
WHERE d.datname = current_database()
]]

-- "60000" with unit "ms" → 60 (seconds); "-1" with unit "MB" → -1; "1024" "8kB" → bytes.
local UNIT = { ms = 0.001, s = 1, min = 60, h = 3600, d = 86400, B = 1, kB = 1024, MB = 1024 ^ 2,
               GB = 1024 ^ 3, TB = 1024 ^ 4 }
function M.setting_value(entry)
  if not entry then return nil end
  local value, unit = entry[1], entry[2]
  local n = tonumber(value)
  if not n then return value end
  if unit == nil or unit == require("tide.json").null then return n end
  if n < 0 then return n end
  local count, base = unit:match("^(%d*)(%a+)$")
  local factor = UNIT[base]
  if not factor then return n end
  return n * (tonumber(count) or 1) * factor
end

function Context:source_server()
  return self:once("source_server", function()
    local row = self:query("source", SOURCE_SERVER, self.replication_application_name)[1]
    local raw = require("tide.json").decode(row.settings_json or "{}")
    row.settings_json, row.settings = nil, {}
    for name, entry in pairs(raw) do row.settings[name] = M.setting_value(entry) end
    return row
  end)
end

function Context:target_server()
  return self:once("target_server", function()
    local sql = self.versions.target >= 150000 and TARGET_SERVER_15 or TARGET_SERVER_OLD
    return self:query("target", sql, M.ORIGIN_FUNCTIONS)[1]
  end)
end

function Context:database(side)
  return self:once("database:" .. side, function() return self:query(side, DATABASE)[1] end)
end

------------------------------------------------------------------------ plan helpers

-- The object of key `key`: from the plan's index of its objects (plan.by_key, what checks
-- mostly look for), else the model's of every catalog object (model.by_key: made when first
-- read, 12 MB more at 100,000 tables, and only a key the plan does not hold needs it).
function Context:object(key)
  if key == nil then return nil end
  return self.plan.by_key[key] or self.plan.model.by_key[key]
end

function Context:table_object(tbl)
  return self:object("table:" .. tbl.key)
    -- An extension's configuration table: its rows are copied, but CREATE EXTENSION makes it,
    -- so it is no object of the plan. A finding still names it.
    or { kind = "table", ident = tbl.key, oid = tbl.oid, schema = tbl.source and tbl.source.schema,
         name = tbl.source and tbl.source.name }
end

-- The source schema and name of a plan object, and how a finding shows it.
function M.object_fields(obj)
  if not obj then return {} end
  return { object = obj.ident, schema = obj.owner and obj.owner.schema or obj.schema,
           name = obj.owner and obj.owner.name or obj.name }
end

function M.finding(obj, message, fix, extra)
  local f = M.object_fields(obj)
  f.message, f.fix = message, fix
  for k, v in pairs(extra or {}) do f[k] = v end
  return f
end

function M.quote(name) return sqlident.quote(name) end

-- "target.schema.name" of an object, quoted for SQL.
function M.target_ident(obj)
  return sqlident.quote(obj.target.schema) .. "." .. sqlident.quote(obj.target.name)
end

-- The names the task's incremental migration uses on the source (tide.cdc.objects owns the
-- rule): slot, publication, heartbeat_schema, heartbeat_name, and heartbeat = { schema, name }.
function M.own_names(task)
  local names = require("tide.cdc.objects").names(task)
  names.heartbeat = names.heartbeat or { schema = names.heartbeat_schema, name = names.heartbeat_name }
  return names
end

-- M.new{...} → ctx (see the top of this file).
function M.new(fields)
  local ctx = setmetatable({ memo = {} }, Context)
  for k, v in pairs(fields) do ctx[k] = v end
  ctx.phases = ctx.task.phases or {}
  ctx.catalog = ctx.plan and ctx.plan.catalog
  ctx.target_catalog = ctx.plan and ctx.plan.target_catalog
  ctx.names = M.own_names(ctx.task)
  ctx.replication_application_name = "pgtide:" .. ctx.task.name .. ":precheck"
  return ctx
end

M.Context = Context
return M
