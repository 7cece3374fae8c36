-- tide.retry: which failures `pgtide run` and the change stream try again (docs/reliability.md),
-- the limits from the playbook's `retry` table, and the wait before each try.
local T = require "testlib"
local retry = require "tide.retry"
local failure = require "tide.failure"

local function err(state, message, extra)
  local e = { sqlstate = state, message = message or "some error" }
  for k, v in pairs(extra or {}) do e[k] = v end
  return e
end

T.test("transient: the server went away, restarted, or was busy for a moment", function()
  local cases = {
    { "57P01", "terminating connection due to administrator command" },
    { "57P02", "terminating connection because of crash of another server process" },
    { "57P03", "the database system is starting up" },
    { "40001", "could not serialize access due to concurrent update" },
    { "40P01", "deadlock detected" },
    { "53300", "sorry, too many clients already" },
    { "55P03", "canceling statement due to lock timeout" },
    { "55006", 'replication slot "pgtide_x" is active for PID 4242' },
    { "55006", "replication origin with ID 1 is already active for PID 4242" },
    { "08006", "server closed the connection unexpectedly" },
    { "08001", "connection to server on socket \"/tmp/.s.PGSQL.5432\" failed: Connection refused" },
    { "08003", "the connection was closed while an operation was running" },
    { "XX000", 'could not map filenode "base/16384/16390" to relation OID' },
    { "XX000", 'could not map filenumber "base/16384/16390" to relation OID' },
    { "XX000", "cache lookup failed for index 19894" },
    { "22023", 'invalid snapshot identifier: "00000005-00000040-1"' },
  }
  for _, c in ipairs(cases) do
    local why = retry.transient(err(c[1], c[2]))
    T.ok(type(why) == "string" and #why > 0, c[1] .. " " .. c[2] .. " is transient, with a reason")
  end
end)

T.test("not transient: data, privileges, wrong credentials, other internal errors", function()
  local cases = {
    { "23505", "duplicate key value violates unique constraint" },
    { "42501", "permission denied for table t" },
    { "42P01", 'relation "t" does not exist' },
    { "22P02", "invalid input syntax for type integer" },
    { "22023", "invalid value for parameter \"work_mem\": \"-1\"" },
    { "XX000", "some other internal error" },
    { "55000", 'can no longer get changes from replication slot "s"' },
    { "08001", 'password authentication failed for user "x"' },
    { "08001", 'database "nope" does not exist' },
    { "08001", 'no pg_hba.conf entry for host "10.0.0.1"' },
    { "08001", 'role "x" is not permitted to log in' },
    { "08006", "permission denied for database d" },
  }
  for _, c in ipairs(cases) do
    T.eq(retry.transient(err(c[1], c[2])), nil, c[1] .. " " .. c[2])
  end
end)

T.test("decoding_error names the source's decoding failing to map a relation, and nothing else", function()
  local msg = 'could not map filenode "base/20157/20344" to relation OID'
  T.eq(retry.decoding_error(err("XX000", msg)), msg)
  T.eq(retry.decoding_error({ message = "wrapped", err = err("XX000", msg) }), msg, "one level down")
  T.eq(retry.decoding_error(err("XX000", 'could not map filenumber "base/1/2" to relation OID')),
       'could not map filenumber "base/1/2" to relation OID')
  T.eq(retry.decoding_error(err("XX000", "cache lookup failed for index 19894")), nil)
  T.eq(retry.decoding_error(err("08006", msg)), nil, "only the internal-error state")
  T.eq(retry.decoding_error(err("57P01", "terminating connection due to administrator command")), nil)
  T.eq(retry.decoding_error("could not map filenode"), nil, "a plain string is not a server error")
  T.eq(retry.decoding_error(nil), nil)
end)

T.test("the SQLSTATE of a wrapped error counts; a failure of a final kind never retries", function()
  T.ok(retry.transient({ err = err("08006", "server closed the connection unexpectedly") }), "one level down")
  T.ok(retry.transient({ message = "a", err = { message = "b", err = err("40P01", "deadlock detected") } }), "two down")
  -- full.lua's "table rewritten after the snapshot": a failure wrapping a serialization failure
  T.ok(retry.transient(failure.new("failed", "t was truncated", { err = err("40001", "table rewritten") })))
  T.ok(retry.transient(failure.new("connection", "cannot connect to the source", {
    err = err("08001", "Connection refused") })), "a refused connection")
  for _, kind in ipairs({ "precheck", "mismatch", "interrupted", "slot_lost", "usage" }) do
    T.eq(retry.transient(failure.new(kind, "x", { err = err("40001", "serialization") })), nil, kind)
  end
  T.eq(retry.transient({ kind = "playbook", message = "f.lua:3: ..." }), nil, "a playbook error")
  T.eq(retry.transient(failure.new("failed", "incremental migration gave up after 10 attempts")), nil,
       "no SQLSTATE anywhere")
end)

T.test("a connection failure without a SQLSTATE is transient; anything else without one is not", function()
  T.ok(retry.transient({ kind = "connection", message = "the connection was lost" }))
  T.eq(retry.transient({ message = "no state" }), nil)
  T.eq(retry.transient("a string"), nil)
  T.eq(retry.transient(nil), nil)
end)

T.test("an apply conflict is final whatever its SQLSTATE", function()
  local conflict = { kind = "insert_exists", table = "public.t", key = "(id)=(1)" }
  T.eq(retry.transient(err("23505", "duplicate key", { conflict = conflict })), nil)
  T.eq(retry.transient(err("40001", "serialization", { conflict = conflict })), nil)
  T.eq(retry.transient(failure.new("failed", "incremental migration stopped", {
    err = err("23505", "duplicate key", { conflict = conflict }) })), nil)
end)

T.test("pgtide run retries by the same rule", function()
  T.ok(require("tide.cmd.run").transient == retry.transient)
end)

T.test("limits: attempts 10, max_delay 60 s, window 30 min unless the playbook says", function()
  T.eq(retry.limits(nil), { attempts = 10, max_delay = 60, window = 1800 })
  T.eq(retry.limits({}), { attempts = 10, max_delay = 60, window = 1800 })
  T.eq(retry.limits({ attempts = 3, max_delay = "2min", window = "1h" }), { attempts = 3, max_delay = 120, window = 3600 })
  T.eq(retry.limits({ max_delay = 1, window = "30m" }), { attempts = 10, max_delay = 1, window = 1800 })
  T.eq(retry.limits({ max_delay = "500ms" }).max_delay, 0.5)
end)

local function fixed(x) return function() return x end end

T.test("delay: 0.25 s after the first failure, doubling, at most max_delay", function()
  -- random() = 0.5 is the middle of the ±25% range: the nominal wait
  local mid = fixed(0.5)
  T.eq(retry.delay(1, 60, mid), 0.25)
  T.eq(retry.delay(2, 60, mid), 0.5)
  T.eq(retry.delay(3, 60, mid), 1)
  T.eq(retry.delay(4, 60, mid), 2)
  T.eq(retry.delay(8, 60, mid), 32)
  T.eq(retry.delay(9, 60, mid), 60, "64 s capped")
  T.eq(retry.delay(30, 60, mid), 60)
  T.eq(retry.delay(3, 1, mid), 1, "max_delay = 1")
end)

T.test("delay: varied by up to 25% either way, never above max_delay", function()
  T.eq(retry.delay(1, 60, fixed(0)), 0.25 * 0.75)
  T.eq(retry.delay(1, 60, fixed(1)), 0.25 * 1.25)
  T.eq(retry.delay(3, 60, fixed(0)), 0.75)
  T.eq(retry.delay(3, 1, fixed(1)), 1, "1.25 s would pass max_delay = 1")
  T.eq(retry.delay(20, 60, fixed(0)), 45)
  for failures = 1, 12 do
    local nominal = math.min(60, 0.25 * 2 ^ (failures - 1))
    for _ = 1, 50 do
      local d = retry.delay(failures, 60)
      T.ok(d >= 0.75 * nominal and d <= math.min(60, 1.25 * nominal),
           string.format("failure %d: %.3f s within [%.3f, %.3f]", failures, d, 0.75 * nominal, math.min(60, 1.25 * nominal)))
    end
  end
end)

T.test("a catalog read that met a concurrently dropped object is read again (its failure wraps the server's error)", function()
  local f = failure.new("failed", "catalog: reading constraints failed on host=h: ERROR XX000: cache lookup failed for index 19894",
                        { err = err("XX000", "cache lookup failed for index 19894") })
  T.match(retry.transient(f), "dropped while the catalog was read")
  T.eq(retry.transient(failure.new("failed", "catalog: reading tables failed", { err = err("42501", "permission denied for table pg_authid") })), nil)
end)
