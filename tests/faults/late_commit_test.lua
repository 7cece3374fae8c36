-- A stream session's target transaction that commits after the session gave up on it. When a
-- stream session fails (here: its walsender on the source is terminated), pgtide closes its
-- connections and opens new ones; a target session whose COMMIT was already sent goes on
-- without its client and commits whenever the server gets to it, possibly after the next
-- session has started. Here that COMMIT is made to wait (a deferred constraint trigger on the
-- target takes an advisory lock the test holds) until the next session is retrying. The next
-- session must read where to resume (the origin, parallel apply's rows, DDL replication's
-- record) only once that transaction is over: it is neither applied again nor lost.
-- (Across processes, `pgtide run` ends an earlier run's sessions before it reads anything.)
local T = require "testlib"
local P = require "pg"
local tide = require "tide"
local H = require "tidetest"

local LOCK = 424242

local function playbook(ctx, name, stopfile, lanes)
  return H.playbook(ctx, name, string.format([[
  migrate = { "schema", "full", "incremental" }, progress = "plain",
  retry = { attempts = 60, max_delay = 0.5 },
  incremental = { heartbeat_interval = 0.2, apply_connections = %d },
]], lanes) .. H.stop_at_file(stopfile))
end

-- The task's target sessions waiting for the test's advisory lock.
local function waiting(t, name)
  return assert(t:query([[SELECT count(*) AS n FROM pg_stat_activity
    WHERE starts_with(application_name, $1) AND wait_event_type = 'Lock' AND wait_event = 'advisory']],
    "pgtide:" .. name .. ":apply"))[1].n
end

for _, lanes in ipairs({ 1, 2 }) do
  T.test(string.format("a COMMIT that lands after the stream's next session started (%d apply connection(s)): " ..
                       "applied once", lanes), function(ctx)
    local s, t = P.clean(ctx)
    assert(s:exec([[
CREATE TABLE acct (id int PRIMARY KEY, n int NOT NULL);
INSERT INTO acct SELECT g, 0 FROM generate_series(1, 100) g;
CREATE TABLE journal (id bigint, note text);
ALTER TABLE journal REPLICA IDENTITY FULL;]]))
    local name = "late" .. lanes
    local stopfile = ctx.tmpdir .. "/" .. name .. ".stop"
    os.remove(stopfile)
    local pb = playbook(ctx, name, stopfile, lanes)
    local proc, log = H.start(ctx, "run " .. pb, name .. "-1")
    T.ok(P.poll(120, function() return proc:exited() or H.read(log):find("incremental: started", 1, true) end)
         and not proc:exited(), "the first run never streamed: " .. H.read(log))
    -- The gate: every change to acct on the target waits at COMMIT for the lock.
    assert(t:exec([[
CREATE FUNCTION public.late_gate() RETURNS trigger LANGUAGE plpgsql AS
  $$BEGIN PERFORM pg_advisory_xact_lock(]] .. LOCK .. [[); RETURN NULL; END$$;
CREATE CONSTRAINT TRIGGER late_gate AFTER INSERT OR UPDATE ON public.acct
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION public.late_gate();
ALTER TABLE public.acct ENABLE ALWAYS TRIGGER late_gate;]]))
    local holder = assert(tide.connect(ctx.target_url))
    assert(holder:query("SELECT pg_advisory_lock($1)", LOCK))
    -- Before the gate: rows that commit at once. Then the one that waits at its COMMIT.
    for i = 1, 20 do assert(s:exec(string.format("INSERT INTO journal VALUES (%d, 'before')", i))) end
    T.ok(P.poll(60, function() return assert(t:query("SELECT count(*) AS n FROM journal"))[1].n == 20 end),
         "the first rows never arrived: " .. H.read(log))
    assert(s:exec([[BEGIN; INSERT INTO journal VALUES (1000, 'late');
      UPDATE acct SET n = n + 1 WHERE id = 1; COMMIT]]))
    T.ok(P.poll(60, function() return waiting(t, name) == 1 end),
         "the apply session never waited at its COMMIT: " .. H.read(log))
    -- The stream session fails: its walsender ended. The apply session stays, its COMMIT sent.
    assert(s:query([[SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
      WHERE application_name = $1]], "pgtide:" .. name .. ":stream"))
    for i = 21, 60 do
      assert(s:exec(string.format("BEGIN; INSERT INTO journal VALUES (%d, 'after'); " ..
                                  "UPDATE acct SET n = n + 1 WHERE id = %d; COMMIT", i, 2 + i % 50)))
    end
    -- The next session waits for the origin the waiting session holds (a replication origin
    -- is held by one session at a time), retrying.
    T.ok(P.poll(60, function() return proc:exited() or select(2, H.read(log):gsub("reconnecting in", "")) >= 2 end),
         "the stream did not retry: " .. H.read(log))
    T.ok(not proc:exited(), "the run ended: " .. H.read(log))
    T.eq(waiting(t, name), 1, "the first session's COMMIT still waits while the next one retries")
    T.eq(assert(t:query("SELECT count(*) AS n FROM journal"))[1].n, 20, "nothing applied meanwhile")
    -- The lock let go: the waiting transaction commits, its session ends.
    assert(holder:query("SELECT pg_advisory_unlock($1)", LOCK))
    holder:close()
    T.ok(P.poll(30, function() return waiting(t, name) == 0 end), "the waiting session never ended")
    for i = 61, 80 do
      assert(s:exec(string.format("BEGIN; INSERT INTO journal VALUES (%d, 'later'); " ..
                                  "UPDATE acct SET n = n + 1 WHERE id = 1; COMMIT", i)))
    end
    H.write_stop(s, stopfile)
    local code = proc:wait()
    local out = H.read(log)
    T.eq(code, 0, out)
    T.nomatch(out, "internal error")
    for _, rel in ipairs({ "acct", "journal" }) do T.eq(P.fingerprint(t, rel), P.fingerprint(s, rel), rel .. ": " .. out) end
    T.eq(assert(t:query("SELECT count(*) AS n FROM journal WHERE id = 1000"))[1].n, 1, "the late transaction, once")
    T.eq(assert(t:query("SELECT n FROM acct WHERE id = 1"))[1].n, 21, "acct 1: the late update and 20 later ones")
    local rc, rout = H.run("release " .. pb)
    T.eq(rc, 0, rout)
    s:close(); t:close()
  end)
end
