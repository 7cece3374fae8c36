-- tide.cdc.ddl_record — what DDL replication records of the target (tide.cdc.ddl): per source
-- table, by oid, its description, target name and column map, in `<state_schema>.ddl_tables`
-- on the target, written in the same transaction as the DDL it follows.
local json = require "tide.json"
local sqlident = require "tide.sqlident"

local M = {}

local function q(s) return sqlident.quote(s) end
local function lit(s) return "'" .. tostring(s):gsub("'", "''") .. "'" end

-- The record's table, quoted.
function M.table(task)
  return q(task.state_schema or "pgtide") .. ".ddl_tables"
end

function M.ensure(task, target)
  -- Only when missing: DDL on the target fires its event triggers (once the schema phase has
  -- enabled them).
  local r = assert(target:query("SELECT pg_catalog.to_regclass($1) IS NOT NULL AS present", M.table(task)))
  if r[1].present then return end
  assert(target:exec("CREATE SCHEMA IF NOT EXISTS " .. q(task.state_schema or "pgtide") .. ";\n" ..
    "CREATE TABLE IF NOT EXISTS " .. M.table(task) .. " (\n" ..
    "  task text NOT NULL, source_oid bigint NOT NULL, info jsonb NOT NULL,\n" ..
    "  PRIMARY KEY (task, source_oid))"))
end

function M.persist_sql(task, oid, info)
  if info == nil then
    return string.format("DELETE FROM %s WHERE task = %s AND source_oid = %s", M.table(task), lit(task.name),
                         tostring(oid))
  end
  return string.format("INSERT INTO %s (task, source_oid, info) VALUES (%s, %s, %s::jsonb) ON CONFLICT (task, " ..
                       "source_oid) DO UPDATE SET info = EXCLUDED.info", M.table(task), lit(task.name),
                       tostring(oid), lit(json.encode(info)))
end

-- The record of what the target has, by source oid (text): { desc = <description>, target =
-- { schema, name }, cols = { [source column] = target column }, ignored = bool }.
function M.load(task, target)
  local rows = target:query("SELECT source_oid::text AS oid, info::text AS info FROM " .. M.table(task) ..
                            " WHERE task = $1", task.name)
  if not rows then return nil end
  local out, any = {}, false
  for _, r in ipairs(rows) do out[r.oid] = json.decode(r.info); any = true end
  return any and out or nil
end

-- Whether the target holds a record for the task (without reading it: at 100,000 tables the
-- records are 170 MB of JSON, 400 MB decoded).
function M.has_record(task, target)
  local rows = assert(target:query("SELECT EXISTS (SELECT FROM " .. M.table(task) .. " WHERE task = $1) AS any",
                                   task.name))
  return rows[1].any == true
end

-- Release: forget the task's record.
function M.forget(task, target)
  local r = assert(target:query("SELECT pg_catalog.to_regclass($1) IS NOT NULL AS present", M.table(task)))
  if r[1].present then assert(target:query("DELETE FROM " .. M.table(task) .. " WHERE task = $1", task.name)) end
end

return M
