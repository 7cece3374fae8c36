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

-- Rows of the record written 1,000 to a statement, inside the caller's transaction on target:
-- w = M.writer(task, target); w.add(oid, info as JSON text) ...; w.flush(). (A relation added
-- twice keeps its last info, as successive statements would.)
function M.writer(task, target)
  local sql = "INSERT INTO " .. M.table(task) .. " (task, source_oid, info) SELECT $1, u.oid, u.info::jsonb " ..
    "FROM unnest($2::bigint[], $3::text[]) AS u(oid, info) ON CONFLICT (task, source_oid) DO UPDATE SET info = EXCLUDED.info"
  local oids, infos, at = {}, {}, {}
  local w = {}
  function w.flush()
    if #oids == 0 then return end
    assert(target:query(sql, task.name, oids, infos))
    oids, infos, at = {}, {}, {}
  end
  function w.add(oid, text)
    oid = tonumber(oid)
    local i = at[oid]
    if not i then i = #oids + 1; at[oid], oids[i] = i, oid end
    infos[i] = text
    if #oids >= 1000 then w.flush() end
  end
  return w
end

-- A new record of many relations, written without holding their descriptions (tide.cdc.ddl's
-- record_start on a first slot): `list` = { { oid =, target = { schema =, name = }, cols =
-- (source column -> target column), partition = bool }, ... }. Each description goes in as the
-- source printed it, a chunk at a time; a generated column (which the load leaves out, and DDL
-- replication must know) joins cols. Inside the caller's transaction on target.
function M.write_described(task, source, target, list, describe_each)
  local by_oid, oids = {}, {}
  for _, e in ipairs(list) do
    local k = tostring(e.oid)
    if not by_oid[k] then by_oid[k], oids[#oids + 1] = e, e.oid end   -- (one row per relation)
  end
  local w = M.writer(task, target)
  describe_each(source, oids, function(oid, text)
    local e = by_oid[oid]
    local cols = {}
    for name, target_name in pairs(e.cols or {}) do cols[name] = target_name end
    if not e.partition and text:find('"generated": "s"', 1, true) then
      for _, c in ipairs(json.decode(text).columns or {}) do
        if not cols[c.name] and c.generated == "s" then cols[c.name] = c.name end
      end
    end
    w.add(oid, '{"desc": ' .. text .. ', "cols": ' .. json.encode(cols) .. ', "target": ' ..
      json.encode({ schema = e.target.schema, name = e.target.name }) .. (e.partition and ', "partition": true}' or '}'))
  end)
  w.flush()
end

-- The record of what the target has (tide.cdc.ddl_known: by source oid (text), { desc =
-- <description>, target = { schema, name }, cols = { [source column] = target column },
-- ignored = bool }), or nil when there is none. Read 2,000 rows at a time and kept as text;
-- the server lists each record's renamed words (ddl_known's renamed_words: the source names
-- whose target differs) so that no record is decoded here (100,000 of them took 8 s in Lua).
function M.load(task, target)
  local store, last, any = require("tide.cdc.ddl_known").new(), -1, false
  local sql = [[
SELECT source_oid, source_oid::text AS oid, info->'desc'->>'schema' AS schema, info->'desc'->>'name' AS name,
       info::text AS info,
       CASE WHEN COALESCE(info->'ignored' <> 'false'::jsonb, false) THEN NULL
       ELSE (SELECT pg_catalog.jsonb_agg(r.word) FROM (
               SELECT info->'desc'->>'name'
                WHERE info->'target'->>'name' IS DISTINCT FROM info->'desc'->>'name'
               UNION ALL
               SELECT info->'desc'->>'schema'
                WHERE info->'target'->>'schema' IS DISTINCT FROM info->'desc'->>'schema'
               UNION ALL
               SELECT c.key FROM pg_catalog.jsonb_each_text(CASE WHEN pg_catalog.jsonb_typeof(info->'cols') = 'object'
                                                             THEN info->'cols' END) AS c
                WHERE c.value IS DISTINCT FROM c.key) AS r(word))::text
       END AS words
FROM ]] .. M.table(task) .. [[

WHERE task = $1 AND source_oid > $2 ORDER BY source_oid LIMIT 2000]]
  repeat
    -- a failed read is raised, never taken for "no record" (the map would lose every table)
    local rows, err = target:query(sql, task.name, last)
    if not rows then error(err, 0) end
    for _, r in ipairs(rows) do
      local words = r.words
      store:add_text(r.oid, r.info, r.schema, r.name, type(words) == "string" and json.decode(words) or nil)
      last, any = r.source_oid, true
    end
  until #rows < 2000
  return any and store or nil
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
