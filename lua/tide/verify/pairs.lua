-- tide.verify.pairs — the connections verify compares with: a pool of (source, target) pairs,
-- and, when asked, one consistent moment for all of them during incremental migration.
--
-- Consistent moment (opts.wait_for_lsn given):
--   1. a temporary logical slot is created on the source over a replication connection with
--      an exported snapshot: the snapshot holds exactly the transactions that committed before
--      the slot's consistent point LSN;
--   2. every source connection starts a REPEATABLE READ READ ONLY transaction on that
--      snapshot; the replication connection is closed (the temporary slot goes with it);
--   3. wait_for_lsn(lsn) is called; it returns once the target holds every source transaction
--      that committed before lsn and none after (the apply held there), and may return a
--      function `release`;
--   4. every target connection starts a REPEATABLE READ READ ONLY transaction on one shared
--      snapshot (exported by the first), then `release()` lets the apply go on.
-- Both sides then read the state of the same instant of the source's history, however long
-- the comparison takes. Each table runs inside a savepoint, so a failed statement does not
-- end the transaction the other tables need.
local core = require "tide.core"
local connect = require "tide.connect"
local canonical = require "tide.verify.canonical"
local objects = require "tide.cdc.objects"

local M = {}

local function check(conn, what, ok, err)
  if ok then return ok end
  local where = type(conn) == "string" and conn or conn:conninfo()
  error(string.format("verify: %s (%s): %s", what, where, err and (err.message or tostring(err)) or "?"), 0)
end

-- M.opener(task) → open(side, extra_opts) with the settings of the canonical text form.
function M.opener(task)
  return function(side, extra)
    local opts = { settings = canonical.SETTINGS }
    for k, v in pairs(extra or {}) do opts[k] = v end
    return connect.open(task, side, opts)
  end
end

-- M.open(open, n) → { {source=, target=}, ... }: n pairs, all connections opened at once.
function M.open(open, n)
  local handles = {}
  for _ = 1, n do
    handles[#handles + 1] = core.spawn(open, "source")
    handles[#handles + 1] = core.spawn(open, "target")
  end
  local results = require("tide.wait").all(handles)
  local failed
  for _, r in ipairs(results) do if not r.ok then failed = failed or r.err end end
  if failed then
    for _, r in ipairs(results) do if r.ok then r.values[1]:close() end end
    error(failed, 0)
  end
  local list = {}
  for i = 1, n do list[i] = { source = results[2 * i - 1].values[1], target = results[2 * i].values[1] } end
  return list
end

function M.close(list)
  for _, pair in ipairs(list) do
    pair.source:close()
    pair.target:close()
  end
end

local function begin(conn, snapshot)
  check(conn, "starting a read-only transaction", conn:exec("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY"))
  if snapshot then
    check(conn, "importing the snapshot", conn:exec("SET TRANSACTION SNAPSHOT " .. conn:quote_literal(snapshot)))
  end
end

-- M.consistent(open, list, wait_for_lsn [, timeout]) → { lsn =, slot = }: every pair in one
-- snapshot (see the top of this file). `open` opens a connection: open(side, extra_opts).
-- Creating the slot waits for the transactions running on the source to end; after `timeout`
-- seconds (verify.snapshot_timeout) it gives up, naming those transactions.
function M.consistent(open, list, wait_for_lsn, timeout)
  local repl = open("source", { replication = "database" })
  local slot = string.format("pgtide_verify_%d_%d", repl:backend_pid(), math.random(0, 999999))
  -- The pre-15 spelling (EXPORT_SNAPSHOT) is still accepted by newer servers.
  local rows = objects.await_slot(repl, list[1].source,
    "CREATE_REPLICATION_SLOT " .. slot .. " TEMPORARY LOGICAL pgoutput EXPORT_SNAPSHOT", {
      timeout = timeout or 300, setting = "verify.snapshot_timeout",
      what = "creating the temporary slot " .. slot .. " for a consistent snapshot" })
  local lsn, snapshot = rows[1].consistent_point, rows[1].snapshot_name
  local ok, failure = pcall(function()
    for _, pair in ipairs(list) do begin(pair.source, snapshot); pair.in_snapshot = true end
  end)
  repl:close()
  if not ok then error(failure, 0) end
  local release = wait_for_lsn(lsn)
  local first = list[1].target
  begin(first)
  local exported = check(first, "exporting the target's snapshot", first:query("SELECT pg_export_snapshot() AS s"))[1].s
  for i = 2, #list do begin(list[i].target, exported) end
  if type(release) == "function" then release() end
  return { lsn = lsn, slot = slot }
end

-- Savepoints around one table in consistent mode (a failed statement aborts only the table).
function M.table_begin(pair)
  if not pair.in_snapshot then return end
  for _, conn in ipairs({ pair.source, pair.target }) do
    check(conn, "setting a savepoint", conn:exec("SAVEPOINT pgtide_verify"))
  end
end

function M.table_end(pair, failed)
  if not pair.in_snapshot then return end
  for _, conn in ipairs({ pair.source, pair.target }) do
    check(conn, "ending a savepoint", conn:exec(failed and "ROLLBACK TO SAVEPOINT pgtide_verify" or "RELEASE SAVEPOINT pgtide_verify"))
  end
end

-- Outside a snapshot a pair whose connection was lost is opened again for the next table.
function M.repair(open, pair)
  if pair.in_snapshot then return end
  for _, side in ipairs({ "source", "target" }) do
    if pair[side]:status() ~= "ok" then
      pair[side]:close()
      pair[side] = open(side)
    end
  end
end

return M
