-- Running a finished task again: pgtide says it finished (when, what it did) and how to start
-- over, writes nothing and exits 0; `pgtide run --again` starts it over without dropping
-- anything on the target.
local T = require "testlib"
local P = require "pg"
local H = require "tidetest"

local function setup(ctx)
  local s, t = P.clean(ctx)
  assert(s:exec([[CREATE TABLE items (id int PRIMARY KEY, name text);
                  INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 250) g;
                  CREATE TABLE notes (body text);
                  INSERT INTO notes VALUES ('a'), ('b'), ('c');]]))
  return s, t
end

local function phase(t, task)
  local r = assert(t:query("SELECT phase FROM pgtide.tasks WHERE task = $1", task))
  return r[1] and r[1].phase
end

T.test("a finished schema+full task run again reports it finished and exits 0", function(ctx)
  local s, t = setup(ctx)
  local pb = H.playbook(ctx, "fin_full", [[migrate = { "schema", "full" }, progress = "plain",]])
  local code, out = H.run("run " .. pb)
  T.eq(code, 0, out)
  T.eq(phase(t, "fin_full"), "done")
  local before = P.fingerprint(t, "items")
  code, out = H.run("run " .. pb)
  T.eq(code, 0, out)
  T.match(out, "task fin_full already finished on %d%d%d%d%-%d%d%-%d%d %d%d:%d%d:%d%d UTC")
  T.match(out, "phases: +schema, full")
  T.match(out, "2 table%(s%), 253 rows")
  T.match(out, "pgtide release FILE")
  T.match(out, "pgtide run FILE %-%-again")
  T.nomatch(out, "already exists on the target")
  T.eq(P.fingerprint(t, "items"), before)
  -- --json: one object
  code, out = H.run("run " .. pb .. " --json")
  T.eq(code, 0, out)
  T.match(out, '"event":"finished"')
  T.match(out, '"rows":253')
  s:close(); t:close()
end)

T.test("--again refuses over the finished run's objects, keeping the record; with skip/truncate it reloads", function(ctx)
  local s, t = setup(ctx)
  local pb = H.playbook(ctx, "fin_again", [[migrate = { "schema", "full" }, progress = "plain",]])
  local code, out = H.run("run " .. pb)
  T.eq(code, 0, out)
  assert(s:exec("INSERT INTO items VALUES (1000, 'late')"))
  code, out = H.run("run " .. pb .. " --again")
  T.eq(code, 5, out)
  T.match(out, "table public.items already exists on the target")
  T.match(out, "%-%-again: task fin_again would start over")
  T.eq(phase(t, "fin_again"), "done", "the refused --again keeps the recorded progress")
  T.eq(assert(t:query("SELECT count(*) AS n FROM items"))[1].n, 250, "nothing was dropped or emptied")
  local pb2 = H.playbook(ctx, "fin_again", [[migrate = { "schema", "full" }, progress = "plain",
    schema = { existing = "skip" }, full = { existing = "truncate" },]])
  code, out = H.run("run " .. pb2 .. " --again")
  T.eq(code, 0, out)
  T.match(out, "forgot the recorded progress")
  T.eq(P.fingerprint(t, "items"), P.fingerprint(s, "items"))
  T.eq(phase(t, "fin_again"), "done")
  s:close(); t:close()
end)

T.test("--again on a task that has not finished is refused with exit 2", function(ctx)
  local s, t = setup(ctx)
  local pb = H.playbook(ctx, "fin_unfinished", [[migrate = { "schema", "full" }, progress = "plain",]])
  -- A run interrupted after its schema phase: the recorded phase says so.
  local code, out = H.run("run " .. pb)
  T.eq(code, 0, out)
  assert(t:exec("UPDATE pgtide.tasks SET phase = 'full' WHERE task = 'fin_unfinished'"))
  code, out = H.run("run " .. pb .. " --again")
  T.eq(code, 2, out)
  T.match(out, "has not finished")
  T.eq(phase(t, "fin_unfinished"), "full")
  s:close(); t:close()
end)

T.test("a finished incremental task (stopped at its stop condition) run again reports it finished", function(ctx)
  local s, t = setup(ctx)
  assert(s:exec("ALTER TABLE notes REPLICA IDENTITY FULL"))
  local pb = H.playbook(ctx, "fin_incr", [[migrate = { "schema", "full", "incremental" }, progress = "plain",
    incremental = { heartbeat_interval = 0.2, release = true },
    stop = tide.when { lag_below = "1s", for_at_least = "0.5s" },]])
  local code, out = H.run("run " .. pb)
  T.eq(code, 0, out)
  T.eq(phase(t, "fin_incr"), "done")
  code, out = H.run("run " .. pb)
  T.eq(code, 0, out)
  T.match(out, "task fin_incr already finished")
  T.match(out, "phases: +schema, full, incremental")
  T.match(out, "stop condition and the cutover hooks ran")
  T.match(out, "drop the task's slot and publication")
  -- nothing was made on the source by the second run
  T.eq(assert(s:query("SELECT count(*) AS n FROM pg_replication_slots WHERE slot_name LIKE 'pgtide_fin%'"))[1].n, 0)
  s:close(); t:close()
end)

T.test("a finished incremental task that kept its slot says so; --again releases it and migrates again", function(ctx)
  local s, t = setup(ctx)
  assert(s:exec("ALTER TABLE notes REPLICA IDENTITY FULL"))
  local body = [[migrate = { "schema", "full", "incremental" }, progress = "plain",
    incremental = { heartbeat_interval = 0.2, release = false },
    stop = tide.when { lag_below = "1s", for_at_least = "0.5s" },]]
  local pb = H.playbook(ctx, "fin_keep", body)
  local code, out = H.run("run " .. pb)
  T.eq(code, 0, out)
  local function slots()
    return assert(s:query("SELECT count(*) AS n FROM pg_replication_slots WHERE slot_name LIKE '%fin_keep%'"))[1].n
  end
  T.eq(slots(), 1, "release = false keeps the slot")
  code, out = H.run("run " .. pb)
  T.eq(code, 0, out)
  T.match(out, "task fin_keep already finished")
  T.match(out, "the replication slot [%w_]+ is still on the source")
  T.eq(slots(), 1)
  assert(s:exec("INSERT INTO items VALUES (5000, 'after the cutover')"))
  local pb2 = H.playbook(ctx, "fin_keep", body .. [[
    schema = { existing = "skip" }, full = { existing = "truncate" },]])
  code, out = H.run("run " .. pb2 .. " --again")
  T.eq(code, 0, out)
  T.match(out, "again: dropped replication slot")
  T.eq(P.fingerprint(t, "items"), P.fingerprint(s, "items"))
  T.eq(slots(), 1, "the new run made its own slot")
  T.eq(phase(t, "fin_keep"), "done")
  s:close(); t:close()
end)
