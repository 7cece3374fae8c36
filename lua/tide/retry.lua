-- tide.retry — which failures are worth another try, and how long to wait before it. One rule
-- for both places that retry: `pgtide run` (it runs the task again, every phase continuing
-- from the progress the target records) and the change stream (it reconnects and goes on from
-- the replication origin's position). docs/reliability.md describes it.
--
--   retry.transient(err) → a short reason ("a deadlock", ...) when another try may succeed,
--       else nil. Transient: a lost or refused connection (SQLSTATE class 08, or a connection
--       failure without a SQLSTATE), the server shut down, crashed or starting up (57P01,
--       57P02, 57P03), a serialization failure or deadlock (40001, 40P01), too many
--       connections (53300), a lock not available (55P03), an object in use (55006: a slot or
--       replication origin still held by a session that is ending), and the source's logical
--       decoding failing to map a relation (XX000 "could not map filenode/filenumber"; a new
--       walsender decoding again from the slot's restart point does not meet it), and an
--       object dropped while the catalog was read (XX000 "cache lookup failed for ..."), and
--       the full load's snapshot gone with the session that exported it (22023 "invalid
--       snapshot identifier"). Never
--       transient, whatever the SQLSTATE: playbook errors; failures of kind precheck,
--       mismatch, interrupted, slot_lost, usage; apply conflicts; and connection errors that
--       name a wrong password, a missing role or database, or a pg_hba.conf refusal.
--       The SQLSTATE is looked for on the error and on the errors it wraps (err.err, ...).
--   retry.limits(conf) → { attempts =, max_delay =, window = } from the playbook's `retry`
--       table (already validated): attempts (10), max_delay in seconds (60), window in
--       seconds (1800: how long `pgtide run` goes on retrying after the first failure).
--   retry.delay(failures, max_delay [, random]) → seconds to wait after `failures`
--       consecutive failures: 0.25 s, doubling with each failure, at most max_delay; each
--       wait varied by up to 25% either way (but never above max_delay), so that two
--       processes that failed together do not retry in step.
local failure = require "tide.failure"
local units = require "tide.units"

local M = {}

M.DEFAULTS = { attempts = 10, max_delay = 60, window = 1800 }
M.FIRST_DELAY = 0.25

local TRANSIENT_STATES = {
  ["57P01"] = "the server was shut down (admin_shutdown)", ["57P02"] = "the server crashed",
  ["57P03"] = "the server is starting up", ["40001"] = "a serialization failure",
  ["40P01"] = "a deadlock", ["53300"] = "too many connections", ["55P03"] = "a lock was not available",
  ["55006"] = "an object was in use (a slot or replication origin held by a session that is ending)",
}

local PERMANENT_KINDS = { precheck = true, mismatch = true, interrupted = true, slot_lost = true, usage = true }

local PERMANENT_MESSAGES = { "password authentication failed", "does not exist", "permission denied",
                             "no pg_hba.conf entry", "role .* is not permitted" }

-- Errors of the source's logical decoding that a new walsender, decoding again from the
-- slot's restart point, may not meet: retried like a lost connection, a few times (the
-- stream stops sooner when the same one repeats, see decoding_error). Nothing of the failed
-- transaction was applied. The one cause found (kill-anywhere seed 20047, docs/reliability.md)
-- is a PostgreSQL 15 defect that no retry gets past.
local DECODING_MESSAGES = { "could not map filenode", "could not map filenumber" }

-- The server's pg_get_*def functions read the catalog as it is now, not as the read's snapshot
-- saw it: an object dropped meanwhile (DDL on the source during a run) fails the catalog read
-- with "cache lookup failed for index 19894" (seen in the kill-anywhere suite). Read again.
local CONCURRENT_DDL_MESSAGES = { "cache lookup failed for " }

-- A part of the full load imports the load's snapshot (SET TRANSACTION SNAPSHOT); once the
-- session that exported it has ended (terminated, or its server restarted), the import fails
-- with "invalid snapshot identifier" (22023). Seen in server_faults_test: a copy job that
-- opened its connection after the sessions were terminated. The run starts again: a slot whose
-- full load did not finish is made anew, and the load goes on under its snapshot.
local SNAPSHOT_GONE = "invalid snapshot identifier"

function M.transient(e)
  local state, message, connection
  for _ = 0, 4 do
    if type(e) ~= "table" then break end
    if e.kind == "playbook" then return nil end
    if failure.is_failure(e) and PERMANENT_KINDS[e.kind] then return nil end
    if e.conflict then return nil end
    if e.sqlstate then state, message = e.sqlstate, e.message break end
    connection = connection or e.kind == "connection"
    e = e.err
  end
  if not state then return connection and "the connection was lost or refused" or nil end
  message = type(message) == "string" and message or ""
  for _, pattern in ipairs(PERMANENT_MESSAGES) do
    if message:find(pattern) then return nil end
  end
  if TRANSIENT_STATES[state] then return TRANSIENT_STATES[state] end
  if state == "22023" and message:find(SNAPSHOT_GONE, 1, true) then
    return "the full load's snapshot is gone (the session that exported it ended)"
  end
  if state:sub(1, 2) == "08" then return "the connection was lost or refused" end
  if state == "XX000" then
    for _, m in ipairs(DECODING_MESSAGES) do
      if message:find(m, 1, true) then return "logical decoding failed on the source (" .. m .. ")" end
    end
    for _, m in ipairs(CONCURRENT_DDL_MESSAGES) do
      if message:find(m, 1, true) then return "an object was dropped while the catalog was read (" .. message .. ")" end
    end
  end
  return nil
end

-- The server's message when e is the source's logical decoding failing to map a relation
-- (DECODING_MESSAGES), else nil. The stream stops when the same one comes back at once on
-- every reconnect (tide.cdc): a PostgreSQL defect that retrying does not get past.
function M.decoding_error(e)
  for _ = 0, 4 do
    if type(e) ~= "table" then return nil end
    if e.sqlstate then
      if e.sqlstate ~= "XX000" or type(e.message) ~= "string" then return nil end
      for _, m in ipairs(DECODING_MESSAGES) do
        if e.message:find(m, 1, true) then return e.message end
      end
      return nil
    end
    e = e.err
  end
  return nil
end

local function seconds(v, default)
  if v == nil then return default end
  return assert(units.parse_duration(v))
end

function M.limits(conf)
  conf = conf or {}
  return { attempts = conf.attempts or M.DEFAULTS.attempts,
           max_delay = seconds(conf.max_delay, M.DEFAULTS.max_delay),
           window = seconds(conf.window, M.DEFAULTS.window) }
end

function M.delay(failures, max_delay, random)
  random = random or math.random
  local nominal = math.min(max_delay, M.FIRST_DELAY * 2 ^ (failures - 1))
  return math.min(max_delay, nominal * (0.75 + random() * 0.5))
end

return M
