-- tide.cdc.lanes — parallel apply, the Lua side (the dispatcher is engine/cdc/lanes.c).
--
-- incremental.apply_connections = N applies the change stream on N target connections
-- ("lanes"). Each lane has its own replication origin (lane 0 the task's, lane k the task's
-- with "_lane<k>") and one row in <state_schema>.apply_lanes, written in the same target
-- transaction as each group it commits: the watermark (every source transaction ending at or
-- before it is applied), the commit positions of the transactions it applied above the
-- watermark (as ranges), and the end of the last one. Where streaming resumes comes from
-- these rows, never from an origin alone: a lane's origin only says what that lane did.
--
-- A task that applied in lanes keeps reading its rows on every later start, also with
-- apply_connections = 1 (then one lane writes them), until it is released or starts anew.
local log = require "tide.log"
local breathe = require("tide.wait").breathe

local M = {}

local TABLE = "apply_lanes"

local function conf(task) return task.incremental or {} end

function M.table_sql(conn, task)
  return conn:quote_ident(task.state_schema or "pgtide") .. "." .. conn:quote_ident(TABLE)
end

function M.origin(names, k)
  if k == 0 then return names.origin end
  return names.origin .. "_lane" .. k
end

-- What stops a task from applying on several connections: nil, or the reason.
local function ineligible(task)
  local c = conf(task)
  if (c.conflict or "error") ~= "error" then
    return "incremental.conflict = \"" .. c.conflict .. "\" decides per change what to do with a row that is " ..
           "missing or exists; parallel apply only runs with \"error\""
  end
  if task.on and task.on.conflict then return "an on.conflict hook is set" end
  if c.replica_role == false then
    return "incremental.replica_role = false: the target's triggers and foreign keys fire, and may touch " ..
           "rows no key says"
  end
  if #require("tide.cdc.reverse").skip_origins(task) > 0 then
    return "the task is one of a forward/reverse pair (its pair skips the changes of one origin)"
  end
  return nil
end

-- How many connections to apply on (1 = as before).
function M.count(task)
  local want = conf(task).apply_connections or "auto"
  if want == "auto" then
    -- PGTIDE_APPLY_CONNECTIONS: the default for tasks that do not say (the test suites run
    -- every stream test with parallel apply this way).
    want = math.tointeger(tonumber(os.getenv("PGTIDE_APPLY_CONNECTIONS") or "")) or 1
  end
  if want <= 1 then return 1 end
  local why = ineligible(task)
  if why then
    log.warning("parallel_apply_off", string.format("incremental.apply_connections = %d, but changes are " ..
      "applied on one connection: %s", want, why))
    return 1
  end
  return want
end

local function present(target, task)
  local rows = assert(target:query("SELECT pg_catalog.to_regclass($1) IS NOT NULL AS present",
                                   M.table_sql(target, task)))
  return rows[1].present
end

function M.ensure(target, task)
  local schema = target:quote_ident(task.state_schema or "pgtide")
  assert(target:exec("CREATE SCHEMA IF NOT EXISTS " .. schema .. ";\n" ..
    "CREATE TABLE IF NOT EXISTS " .. M.table_sql(target, task) .. " (\n" ..
    "  task text NOT NULL, lane integer NOT NULL, watermark pg_lsn NOT NULL,\n" ..
    "  applied pg_lsn[] NOT NULL, upto pg_lsn NOT NULL, PRIMARY KEY (task, lane))"))
end

function M.progress_sql(target, task)
  return "INSERT INTO " .. M.table_sql(target, task) .. " (task, lane, watermark, applied, upto) " ..
         "VALUES ($1, $2::integer, $3::pg_lsn, $4::pg_lsn[], $5::pg_lsn) ON CONFLICT (task, lane) DO UPDATE " ..
         "SET watermark = EXCLUDED.watermark, applied = EXCLUDED.applied, upto = EXCLUDED.upto"
end

-- The task's rows: { { lane =, watermark =, applied = { "lsn", ... }, upto = } }, or {} .
function M.rows(target, task)
  if not present(target, task) then return {} end
  local rows = assert(target:query("SELECT lane, watermark::text AS watermark, applied::text[] AS applied, " ..
    "upto::text AS upto FROM " .. M.table_sql(target, task) .. " WHERE task = $1 ORDER BY lane", task.name))
  return rows
end

local lsn_number = require("tide.cdc.figures").lsn_number

-- Where the lanes resume, from their rows: the largest watermark, the ranges above it, and the
-- furthest position a row says is applied (for the slot check). Pure: unit-tested.
function M.resume_point(rows, origin_lsn)
  if #rows == 0 then return { watermark = origin_lsn, applied = {}, upto = origin_lsn } end
  local w, upto = rows[1].watermark, rows[1].upto
  for _, r in ipairs(rows) do
    if lsn_number(r.watermark) > lsn_number(w) then w = r.watermark end
    if lsn_number(r.upto) > lsn_number(upto) then upto = r.upto end
  end
  if lsn_number(w) > lsn_number(upto) then upto = w end
  local applied = {}
  for _, r in ipairs(rows) do
    local list = r.applied
    if type(list) == "string" then   -- a pg_lsn[] as text: {0/1A,0/2B}
      local items = {}
      for item in list:gmatch("[%x]+/[%x]+") do items[#items + 1] = item end
      list = items
    end
    for i = 1, #list - 1, 2 do
      if lsn_number(list[i + 1]) >= lsn_number(w) then
        applied[#applied + 1] = list[i]
        applied[#applied + 1] = list[i + 1]
      end
    end
  end
  return { watermark = w, applied = applied, upto = upto }
end

local function ensure_origin(conn, name)
  local rows = assert(conn:query("SELECT pg_catalog.pg_replication_origin_oid($1) IS NULL AS missing", name))
  if rows[1].missing then assert(conn:query("SELECT pg_catalog.pg_replication_origin_create($1)", name)) end
end

-- The task's lane origins on the target: their names.
local function lane_origins(conn, names)
  return assert(conn:query("SELECT roname FROM pg_catalog.pg_replication_origin WHERE roname LIKE $1 ORDER BY roname",
    names.origin:gsub("([%%_\\])", "\\%1") .. "\\_lane%"))
end

-- The lanes k >= n that have an origin (an earlier run applied on more connections), by their
-- origins, not their rows: a lane whose first group was committing when that run died has no
-- row yet.
function M.other_lanes(conn, names, n)
  local out = {}
  for _, r in ipairs(lane_origins(conn, names)) do
    local k = math.tointeger(tonumber(r.roname:sub(#names.origin + 1):match("^_lane(%d+)$")))
    if k and k >= n then out[#out + 1] = k end
  end
  return out
end

-- Parallel apply's part of the stream's options, or nil when the task applies on one
-- connection as before. open(origin, k) opens lane k's connection with its origin session set
-- up (the caller keeps it to close with the session); it is called for lanes 1.. only, after
-- their origins exist.
--
-- Every lane's origin is held by this session before the rows are read. A run that died may
-- leave a target session that still commits its last group (the COMMIT was sent before the
-- kill), and that session holds its lane's origin until it ends: a row read before then would
-- say less than the target has, and the stream would apply that group's transactions again.
-- The caller holds lane 0's origin (`target`) already. Lanes beyond this run's count that have
-- an origin (apply_connections lowered) are opened and closed again: the same wait.
function M.setup(task, names, target, origin_lsn, open)
  local n = M.count(task)
  local conns = {}
  if n > 1 then
    for k = 1, n - 1 do
      ensure_origin(target, M.origin(names, k))
      conns[k] = open(M.origin(names, k), k)
    end
  end
  for _, k in ipairs(M.other_lanes(target, names, n)) do open(M.origin(names, k), k):close() end
  local rows = M.rows(target, task)
  if n <= 1 and #rows == 0 then return nil end
  M.ensure(target, task)
  local at = M.resume_point(rows, origin_lsn)
  if #rows > 0 then
    log.write("info", "lanes_resume", string.format("applying on %d connection(s) from %s, %d range(s) above it " ..
      "already applied", n, at.watermark, #at.applied // 2))
  end
  return {
    resume = at,
    stream = { conns = conns, watermark = at.watermark, applied = at.applied, task = task.name,
               progress_sql = M.progress_sql(target, task),
               tx_limit = conf(task).apply_tx_limit and require("tide.units").parse_size(conf(task).apply_tx_limit) },
  }
end

-- The lanes' state, gone: the rows and the lanes' own origins (release, and a fresh start).
function M.forget(task, target, names)
  if present(target, task) then
    assert(target:query("DELETE FROM " .. M.table_sql(target, task) .. " WHERE task = $1", task.name))
  end
  local dropped = {}
  for _, r in ipairs(lane_origins(target, names)) do
    assert(target:query("SELECT pg_catalog.pg_replication_origin_drop($1)", r.roname))
    dropped[#dropped + 1] = "replication origin " .. r.roname
  end
  return dropped
end

-- The per-table rule the dispatcher uses (apply_target.lane_mode, lane_group): 0 = rows by
-- their key; 1 = one key for a whole group of tables (joined by foreign keys, or with a unique
-- index besides the key); 2 = serial points (triggers that fire on the target). `facts[i]`:
-- { uniques =, triggers =, has_key = }, `fks`: pairs { a, b } of indexes. Pure: unit-tested.
function M.table_rules(facts, fks)
  local parent, size = {}, {}
  -- Union-find with path compression and union by size: without them a chain of foreign keys
  -- (each table referencing the one made before it, as schema-per-tenant databases have) made
  -- a find walk the chain: quadratic without compression (16 s at 100,000 tables), and one
  -- walk of the whole chain without union by size (the loop held for all of it, no breathing).
  local function find(i)
    local root = i
    while parent[root] and parent[root] ~= root do root = parent[root] end
    while i ~= root do
      local up = parent[i]
      parent[i] = root
      i = up
    end
    return root
  end
  local linked = {}
  for _, p in ipairs(fks) do
    breathe()
    local a, b = find(p[1]), find(p[2])
    if a ~= b then
      if (size[a] or 1) < (size[b] or 1) then a, b = b, a end
      parent[b], size[a] = a, (size[a] or 1) + (size[b] or 1)
    end
    linked[p[1]], linked[p[2]] = true, true
  end
  local rules = {}
  for i, f in pairs(facts) do
    breathe()
    local mode = 0
    if f.triggers > 0 then
      mode = 2
    elseif linked[i] or f.uniques > (f.has_key and 1 or 0) then
      mode = 1
    end
    rules[i] = { mode = mode, group = find(i) }
  end
  return rules
end

return M
