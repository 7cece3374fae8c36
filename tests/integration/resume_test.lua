-- Automatic resume: transient failures during a run (backends terminated, a server restarted)
-- are retried with backoff, continuing from the recorded progress; permanent ones stop at once.
local T = require "testlib"
local P = require "pg"
local tide = require "tide"
local H = require "tidetest"

local function setup(ctx, name)
  local s, t = P.clean(ctx)
  assert(s:exec("CREATE TABLE bulk (id int PRIMARY KEY, pad text); " ..
                "INSERT INTO bulk SELECT g, repeat(md5(g::text), 8) FROM generate_series(1, 150000) g; " ..
                "CREATE INDEX bulk_pad ON bulk (pad)"))
  local pb = H.playbook(ctx, name, [[migrate = { "schema", "full" }, progress = "plain",
    full = { jobs = 1, split_larger_than = "512kB" }, retry = { attempts = 5, max_delay = 1 },]])
  return s, t, pb
end

local function wait_some_parts(t, task)
  return P.poll(60, function()
    local r = t:query("SELECT count(*) FILTER (WHERE done_at IS NOT NULL) AS done, count(*) AS total " ..
                      "FROM pgtide.copy_parts WHERE task = $1", task)
    return r and r[1] and r[1].done >= 2 and r[1].done < r[1].total - 3
  end)
end

T.test("terminated backends during the load: the run retries and ends identical", function(ctx)
  local s, t, pb = setup(ctx, "terminated")
  local proc, log = H.start(ctx, "run " .. pb, "terminated")
  T.ok(wait_some_parts(t, "terminated"), "the load never got going: " .. H.read(log))
  local killed = assert(t:query("SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity " ..
                                "WHERE application_name = 'pgtide:terminated' AND pid <> pg_backend_pid()"))[1].n
  T.ok(killed >= 1, "no pgtide backend found to terminate")
  local code = proc:wait()
  local out = H.read(log)
  T.eq(code, 0, out)
  T.match(out, "running again in")
  T.eq(P.fingerprint(t, "bulk"), P.fingerprint(s, "bulk"))
  T.eq(assert(t:query("SELECT count(*) AS n FROM pg_indexes WHERE tablename = 'bulk'"))[1].n, 2)
  s:close(); t:close()
end)

T.test("the source server restarts during the load: the run waits, retries and ends identical", function(ctx)
  local s, t, pb = setup(ctx, "restarted")
  s:close()
  local proc, log = H.start(ctx, "run " .. pb, "restarted")
  T.ok(wait_some_parts(t, "restarted"), "the load never got going: " .. H.read(log))
  local code = T.sh("bash scripts/clusters.sh restart " .. os.getenv("PGTIDE_CLUSTER_DIR") .. " source")
  T.eq(code, 0)
  code = proc:wait()
  local out = H.read(log)
  T.eq(code, 0, out)
  T.match(out, "running again in")
  s = assert(tide.connect(ctx.source_url))
  T.eq(P.fingerprint(t, "bulk"), P.fingerprint(s, "bulk"))
  s:close(); t:close()
end)

T.test("a permanent failure stops at once without retrying", function(ctx)
  local s, t, pb = setup(ctx, "permanent")
  -- a target table with a different column type: the COPY fails the same way every time
  assert(t:exec("CREATE TABLE bulk (id int PRIMARY KEY, pad int)"))
  local pb2 = H.playbook(ctx, "permanent2", [[migrate = { "full" }, progress = "plain", retry = { attempts = 5 },]])
  local code, out = H.run("run " .. pb2)
  T.eq(code, 1, out)
  T.match(out, "copying public.bulk")
  T.match(out, "invalid input syntax for type integer")
  T.nomatch(out, "running again")
  local _ = pb
  s:close(); t:close()
end)

T.test("transient and permanent errors are told apart", function()
  local run = require "tide.cmd.run"
  T.ok(run.transient({ sqlstate = "57P01", message = "terminating connection due to administrator command" }))
  T.ok(run.transient({ err = { sqlstate = "08006", message = "server closed the connection unexpectedly" } }))
  T.ok(run.transient({ sqlstate = "40P01", message = "deadlock detected" }))
  T.eq(run.transient({ sqlstate = "08001", message = "password authentication failed for user \"x\"" }), nil)
  T.eq(run.transient({ sqlstate = "23505", message = "duplicate key value" }), nil)
  T.eq(run.transient({ sqlstate = "42501", message = "permission denied for table t" }), nil)
end)
