-- tide.catalog.parallel — reading a big catalog over a few connections at once.
--
-- On a big catalog the statements of tide.catalog cost seconds each on the server, most of
-- it in pg_get_*def (the indexes statement alone: 13 s at 100,000 tables), and one
-- connection runs them one after the other: the server works while the engine waits, then
-- the engine builds rows while the server idles. Here the main read transaction exports its
-- snapshot (pg_export_snapshot) and a few helper connections import it (SET TRANSACTION
-- SNAPSHOT), so every statement still sees one consistent view; all of them, the main
-- connection first, take statements from one queue, the costliest first.
--
-- Helpers speed the read up and are never needed: a helper that cannot connect (the server's
-- max_connections, a role's CONNECTION LIMIT) or cannot import the snapshot (a fork that
-- refuses it) is closed without a word, and the others, the main connection always among
-- them, read its share. A standby (which cannot export a snapshot) and servers before
-- PostgreSQL 10 are read on the main connection alone.
local core = require "tide.core"

local M = {}

-- Below this many pg_class rows the helpers cost more than they save: each is a new backend
-- whose caches start cold. An empty database has about 420 rows; a table with a key and a
-- toast table adds four or five. Measured with the engine and the server on the same two
-- busy cores (catalog.read, fresh connections): 1,000 tables (4,400 rows) 0.34 s alone,
-- 0.41 s spread; 3,000 (12,400 rows) 0.77 and 0.82 s; 10,000 (50,000 rows) 4.3 and 3.7 s.
-- A server with cores of its own gains earlier; this is where even a shared machine gains.
M.min_relations = 20000

-- Helpers per read. The four costliest statements (the indexes statement's two halves,
-- constraints, columns: most of the server's time at 100,000 tables) then each get a
-- connection of their own, the tables statement the first one free; more connections would
-- not shorten the read much, and the engine builds every statement's rows on one thread.
M.helpers = 3

-- Connection slots left to everyone else: helpers are only opened while more than this
-- many slots stay free (beyond the helpers themselves and superuser_reserved_connections).
M.spare_slots = 5

-- Seconds a helper may take to connect before it is given up (the main connection reads on
-- meanwhile, but the read waits for every helper to end).
M.connect_timeout = 10

-- Seconds each statement took at 100,000 tables (source, one connection): the queue's order.
-- Statements not named here cost little and follow in their given order.
local COST = { indexes = 18.4, ["indexes/1"] = 9.2, ["indexes/2"] = 9.2, constraints = 10.4, columns = 4.6, tables = 4.4, depends = 1.9,
               types = 1.2, functions = 0.3, extension_members = 0.2, privileges = 0.2,
               sequences = 0.1, views = 0.1 }

-- What the read needs to know before it decides; read inside the main transaction. The
-- settings that shape the text of definitions (and search_path, jit) are copied onto the
-- helpers, so their rows come out exactly as the main connection's would.
local SIZE = [[
SELECT (SELECT count(*) FROM pg_catalog.pg_class) AS relations,
       pg_catalog.pg_is_in_recovery() AS in_recovery,
       pg_catalog.current_setting('max_connections')::int
         - pg_catalog.current_setting('superuser_reserved_connections')::int
         - (SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE backend_type = 'client backend')
         AS free_slots,
       pg_catalog.current_setting('application_name') AS application_name,
       pg_catalog.current_setting('client_encoding') AS client_encoding,
       (SELECT pg_catalog.json_object_agg(s.name, s.setting) FROM pg_catalog.pg_settings s
         WHERE s.name IN ('search_path', 'jit', 'datestyle', 'intervalstyle', 'timezone',
                          'extra_float_digits', 'bytea_output', 'quote_all_identifiers',
                          'standard_conforming_strings', 'xmloption', 'xmlbinary',
                          'lc_monetary', 'lc_numeric', 'lc_time', 'cursor_tuple_fraction'))::text AS settings_json
]]

local SET_SETTINGS = [[
SELECT pg_catalog.set_config(s.name, s.setting, true)
FROM pg_catalog.json_each_text($1::json) AS s(name, setting)
]]

local IDLE = "SET LOCAL idle_in_transaction_session_timeout = 0"

-- M.prepare(conn, open, restart) → shared or nil. Called right after the main transaction
-- began (restart() begins it again). shared = { snapshot =, helpers =, open = } when the
-- catalog is big enough and the snapshot could be exported; nil: read on conn alone.
-- open(opts) opens one more connection to the same server as conn (tide.connect.open).
function M.prepare(conn, open, restart)
  if not open or M.helpers < 1 or conn:server_version() < 100000 then return nil end
  -- A statement here that fails (a fork without pg_stat_activity's backend_type, one that
  -- refuses pg_export_snapshot) ends the transaction: it begins again and conn reads alone.
  local function alone()
    conn:exec("ROLLBACK")
    restart()
    return nil
  end
  local rows = conn:query(SIZE)
  local size = rows and rows[1]
  if not size then return alone() end
  if size.relations < M.min_relations or size.in_recovery then return nil end
  local helpers = math.min(M.helpers, size.free_slots - M.spare_slots)
  if helpers < 1 then return nil end
  local exported = conn:query("SELECT pg_catalog.pg_export_snapshot() AS id")
  if not exported then return alone() end
  -- Spread over several connections, each one sits idle in its transaction while the engine
  -- builds the others' rows (tens of seconds at 100,000 tables): a server's
  -- idle_in_transaction_session_timeout must not end the read.
  if not conn:exec(IDLE) then return alone() end
  return {
    snapshot = exported[1].id, helpers = helpers, settings = size.settings_json,
    open = function()
      return open({ application_name = size.application_name, client_encoding = size.client_encoding,
                    timeout = M.connect_timeout })
    end,
  }
end

-- Spread over helpers, the indexes statement (pg_get_indexdef: half of the read at 100,000
-- tables) goes in two halves, "indexes/1" and "indexes/2": the tables below and from the
-- median table oid of the user indexes, each half on a connection of its own. Ordered by table
-- first, the halves one after the other are the whole statement's rows.
local HALF = "\n  AND (i.indrelid < $1::oid) = $2::boolean\nORDER BY i.indrelid, ic.relname"
local MIDDLE = [[
SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY i.indrelid) AS middle
FROM pg_catalog.pg_index i WHERE i.indrelid >= 16384
]]

-- M.split(conn, shared, list) → the median oid, with "indexes" replaced in `list` by its
-- halves; nil (list unchanged) when the read is not spread or there is no user index.
function M.split(conn, shared, list)
  if not shared then return nil end
  local rows = conn:query(MIDDLE)
  local middle = rows and rows[1] and rows[1].middle
  if middle == nil or middle == core.null then return nil end
  for i, name in ipairs(list) do
    if name == "indexes" then list[i] = "indexes/1"; table.insert(list, i + 1, "indexes/2"); break end
  end
  return middle
end

-- M.statement(S, name, middle) → the SQL of statement `name` of S and its parameters.
function M.statement(S, name, middle)
  local half = name:match("^indexes/(%d)$")
  if not half then return S[name] end
  local sql, n = S.indexes:gsub("\nORDER BY i%.indrelid, ic%.relname", HALF, 1)
  assert(n == 1, "tide.catalog.parallel: the indexes statement's ORDER BY moved")
  return sql, middle, half == "1"
end

-- M.join(cat): the two halves' rows (and time) as cat.indexes, when the read split it.
function M.join(cat)
  local first, second = cat["indexes/1"], cat["indexes/2"]
  if not first then return end
  for _, row in ipairs(second or {}) do first[#first + 1] = row end
  cat.indexes, cat["indexes/1"], cat["indexes/2"] = first, nil, nil
  local t = cat.timing
  t.indexes, t["indexes/1"], t["indexes/2"] = math.max(t["indexes/1"] or 0, t["indexes/2"] or 0), nil, nil
end

-- The queue: names by cost (highest first), the rest in the order given.
local function by_cost(names)
  local list, position = {}, {}
  for i, name in ipairs(names) do list[i], position[name] = name, i end
  table.sort(list, function(a, b)
    local ca, cb = COST[a] or 0, COST[b] or 0
    if ca ~= cb then return ca > cb end
    return position[a] < position[b]
  end)
  return list
end

-- A helper: one more connection inside the exported snapshot, or nil (closed again) when
-- the server refuses it.
local function join(shared)
  local ok, conn = pcall(shared.open)
  if not ok or not conn then return nil end
  local ready = conn:exec("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
    and conn:exec("SET TRANSACTION SNAPSHOT " .. conn:quote_literal(shared.snapshot))
    and conn:query(SET_SETTINGS, shared.settings)
    and conn:exec(IDLE)
  if not ready then
    conn:close()
    return nil
  end
  return conn
end

-- M.read(conn, shared, names, read_one) → how many connections read. read_one(c, name)
-- reads one statement on connection c (and raises on failure). The first failure stops
-- every connection taking more work and is raised once all of them are done; the helpers
-- are closed on every path.
function M.read(conn, shared, names, read_one)
  local queue, taken = shared and by_cost(names) or names, 0
  local failed
  local function work(c)
    while not failed and taken < #queue do
      taken = taken + 1
      local ok, err = pcall(read_one, c, queue[taken])
      if not ok then failed = failed or { err = err } end
    end
  end
  local helpers, used = {}, 1
  local function helper(i)
    local c = join(shared)
    if not c then return end
    helpers[i] = c
    used = used + 1
    work(c)
  end
  local handles = {}
  for i = 1, shared and shared.helpers or 0 do handles[i] = core.spawn(helper, i) end
  work(conn)
  -- (wait.all takes every outcome; helper itself raises nothing.)
  require("tide.wait").all(handles)
  for i = 1, #handles do
    if helpers[i] then helpers[i]:close() end
  end
  if failed then error(failed.err, 0) end
  return used
end

return M
