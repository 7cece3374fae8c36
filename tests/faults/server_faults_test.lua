-- Fault injection, servers and sessions: for each phase of a task (schema pre-data, full load,
-- post-data, incremental) restart the source server, restart the target server, or terminate
-- the engine's sessions (pg_terminate_backend on both sides), at a seeded random moment inside
-- the phase; and SIGKILL the engine while it streams. A writer keeps changing the source all
-- along. The task must finish by itself (automatic resume) — or, after a SIGKILL, when run
-- again — with target = source per table, no duplicate, and `pgtide release` leaving no slot,
-- publication, origin or heartbeat table behind.
--   PGTIDE_FAULT_SEED=N replays a run (the seed is printed); PGTIDE_FAULT_ONLY=WORD runs the
--   cases whose name contains WORD.
local T = require "testlib"
local P = require "pg"
local tide = require "tide"
local H = require "tidetest"

local SEED = tonumber(os.getenv("PGTIDE_FAULT_SEED") or "") or os.time()
print("# fault seed " .. SEED .. " (replay with PGTIDE_FAULT_SEED=" .. SEED .. ")")
math.randomseed(SEED)

local TABLES = { "parent", "child", "ledger", "journal" }

local function setup(ctx)
  local s, t = P.clean(ctx)
  -- What an earlier failed case may have left (a failure stays that case's alone).
  assert(s:query([[SELECT count(pg_drop_replication_slot(slot_name)) FROM pg_replication_slots
    WHERE database = current_database() AND NOT active]]))
  -- Enough pre-data statements for the schema phase to last a moment (about 300 functions), a
  -- table split in parts for the load, indexes and a foreign key for post-data, and the
  -- writer's tables (one of them without a key: a change applied twice would show there).
  local funcs = {}
  for i = 1, 300 do
    funcs[i] = string.format("CREATE FUNCTION f%d(x int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT x + %d';", i, i)
  end
  assert(s:exec(table.concat(funcs, "\n") .. [[
CREATE TABLE parent (id int PRIMARY KEY, name text UNIQUE);
INSERT INTO parent SELECT g, 'p' || g FROM generate_series(1, 500) g;
CREATE TABLE child (id bigint PRIMARY KEY, parent_id int REFERENCES parent(id), pad text, n int NOT NULL DEFAULT 0);
INSERT INTO child SELECT g, 1 + g % 500, repeat(md5(g::text), 4) FROM generate_series(1, 20000) g;
CREATE INDEX child_pad ON child (pad);
CREATE INDEX child_parent ON child (parent_id, n);
CREATE TABLE ledger (id bigint PRIMARY KEY, amount int, note text);
CREATE TABLE journal (id bigint, note text);
ALTER TABLE journal REPLICA IDENTITY FULL;
]]))
  return s, t
end

-- The playbook: every phase, resumed automatically, streaming until the applied position
-- reaches the LSN the test writes into `stopfile`.
local function playbook(ctx, name, stopfile)
  return H.playbook(ctx, name, [[
  migrate = { "schema", "full", "incremental" }, progress = "plain",
  full = { jobs = 2, split_larger_than = "1MB" },
  retry = { attempts = 12, max_delay = 1 },
  incremental = { heartbeat_interval = 0.2 },
]] .. H.stop_at_file(stopfile))
end

-- Small transactions on the source until told to stop; rides out restarts and terminations
-- (a transaction that fails is simply not there, on either side).
local function writer(ctx, flag)
  return tide.spawn(function()
    local conn, id, done = nil, 0, 0
    while not flag.stop do
      if not conn then
        conn = tide.connect(ctx.source_url)
        if not conn then tide.sleep(0.1) end
      end
      if conn then
        id = id + 1
        local ok = conn:exec(string.format([[BEGIN;
          INSERT INTO ledger VALUES (%d, %d, 'n%d');
          INSERT INTO journal VALUES (%d, 'j%d');
          UPDATE ledger SET amount = amount + 1 WHERE id = %d;
          UPDATE child SET n = n + 1 WHERE id = %d;
          DELETE FROM journal WHERE id = %d;
          COMMIT]], id, id % 97, id, id, id, math.max(1, id - 2), 1 + (id * 7919) % 20000, id - 5))
        if ok then done = done + 1 else conn:close(); conn = nil; tide.sleep(0.05) end
        tide.sleep(0.005)
      end
    end
    if conn then conn:close() end
    return done
  end)
end

local function restart(side)
  local dir = assert(os.getenv("PGTIDE_CLUSTER_DIR"), "PGTIDE_CLUSTER_DIR")
  local p = assert(tide.process { "bash", "scripts/clusters.sh", "restart", dir, side })
  T.eq(p:wait(), 0, "restarting the " .. side .. " server failed")
end

-- pg_terminate_backend on every session of the task, on both servers; returns how many.
local function terminate(ctx, name)
  local n = 0
  for _, url in ipairs({ ctx.source_url, ctx.target_url }) do
    local c = assert(tide.connect(url))
    n = n + assert(c:query([[SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity
      WHERE (application_name = $1 OR starts_with(application_name, $1 || ':')) AND pid <> pg_backend_pid()]],
      "pgtide:" .. name))[1].n
    c:close()
  end
  return n
end

-- The last phase the log had started when the fault hit.
local function phase_at(text)
  local last = "?"
  for ph in text:gmatch("(%S+): started") do last = ph end
  return last
end

-- How long each phase lasts with this little data is a matter of milliseconds, so each case
-- holds the task inside its phase: pre-data and post-data wait behind a lock the test holds on
-- the target (on a random pre-data statement; on the child table's post-data steps), the full
-- load is throttled (pgtide attach: task:throttle) to last about two seconds, and streaming
-- goes on until the test ends it. The fault comes a random moment after the task is inside.
local function waiting_on_lock(t, name)
  local r = t:query([[SELECT count(*) AS n FROM pg_stat_activity
    WHERE starts_with(application_name, $1) AND wait_event_type = 'Lock']], "pgtide:" .. name)
  return r and r[1].n > 0
end

local function throttle(name, log, proc)
  -- The control socket is up once the log names the servers.
  T.ok(P.poll(60, function() return proc:exited() or H.read(log):find("target: ", 1, true) end))
  T.ok(P.poll(30, function()
    return H.run("attach " .. name .. " -e 'task:throttle{ rows_per_second = 8000 }'") == 0
  end), "could not throttle the load: " .. H.read(log))
end

local function gate(ctx, sql)
  local g = assert(tide.connect(ctx.target_url))
  assert(g:exec("BEGIN; " .. sql))
  return g
end

local PHASES = {
  { name = "schema pre-data", window = 0.1,
    before = function(ctx)
      local k = math.random(1, 300)
      return gate(ctx, string.format("CREATE FUNCTION f%d(x int) RETURNS int LANGUAGE sql AS 'SELECT x'", k))
    end,
    inside = function(t, name) return waiting_on_lock(t, name) end },
  { name = "full load", window = 1.2,
    started = function(_, name, log, proc) throttle(name, log, proc) end,
    inside = function(_, _, log) return H.read(log):find("full: started", 1, true) end },
  { name = "post-data", window = 0.1,
    started = function(ctx, name, log, proc)
      throttle(name, log, proc)
      T.ok(P.poll(60, function() return proc:exited() or H.read(log):find("schema: done", 1, true) end))
      return gate(ctx, "LOCK TABLE child IN ROW EXCLUSIVE MODE")
    end,
    inside = function(t, name) return waiting_on_lock(t, name) end },
  { name = "incremental", window = 1.0,
    inside = function(_, _, log) return H.read(log):find("incremental: applied", 1, true) end },
}
local FAULTS = {
  { name = "source restart", run = function() restart("source") end },
  { name = "target restart", run = function() restart("target") end },
  { name = "terminated sessions", run = function(ctx, name)
      T.ok(terminate(ctx, name) >= 1, "no session of the task to terminate") end },
}

local only = os.getenv("PGTIDE_FAULT_ONLY")
local n = 0
local function case(title, fn)
  if only and not title:find(only, 1, true) then
    T.test(title, function() T.skip("not selected by PGTIDE_FAULT_ONLY=" .. only) end)
  else
    T.test(title, fn)
  end
end

-- Runs one case: start the task with the writer going, wait for the phase's marker, wait a
-- random moment, inject the fault, then let the task finish (rerun = true: the fault killed
-- the engine, so run it again).
local function run_case(ctx, name, phase, inject, rerun)
  local s, t = setup(ctx)
  s:close(); t:close()
  local stopfile = ctx.tmpdir .. "/" .. name .. ".stop"
  os.remove(stopfile)
  local pb = playbook(ctx, name, stopfile)
  local flag = {}
  local w = writer(ctx, flag)
  local held = phase.before and phase.before(ctx)
  local proc, log = H.start(ctx, "run " .. pb, name)
  if phase.started then held = phase.started(ctx, name, log, proc) or held end
  local t0 = assert(tide.connect(ctx.target_url))
  local inside = P.poll(120, function() return proc:exited() or phase.inside(t0, name, log) end)
  t0:close()
  T.ok(inside and not proc:exited(), "the task never got inside " .. phase.name .. ": " .. H.read(log))
  local extra = math.random() * phase.window
  tide.sleep(extra)
  local landed = phase_at(H.read(log))
  inject(proc)
  if held then pcall(held.exec, held, "ROLLBACK"); held:close() end
  print(string.format("# %s: fault %.3fs inside %s, while the log said %q", name, extra, phase.name, landed))
  -- Keep writing until the task streams again past the fault, then fix the end point.
  T.ok(P.poll(120, function()
    return proc:exited() or select(2, H.read(log):gsub("incremental: started", "")) >= 1
  end), "never reached incremental: " .. H.read(log))
  tide.sleep(0.3)
  flag.stop = true
  local writes = w:wait()
  T.ok(writes > 0, "the writer committed nothing")
  local s2 = assert(tide.connect(ctx.source_url))
  H.write_stop(s2, stopfile)
  local code, sig = proc:wait()
  local out = H.read(log)
  if rerun then
    T.eq(sig, 9, "the engine was not killed: " .. out)
    local c2, out2 = H.run("run " .. pb)
    code, out = c2, out .. "\n--- rerun ---\n" .. out2
  end
  T.eq(code, 0, out)
  T.nomatch(out, "internal error")
  s, t = P.connect_both(ctx)
  for _, rel in ipairs(TABLES) do T.eq(P.fingerprint(t, rel), P.fingerprint(s, rel), rel .. ": " .. out) end
  T.eq(assert(t:query("SELECT count(*) AS n FROM (SELECT id FROM journal GROUP BY id HAVING count(*) > 1) d"))[1].n, 0,
       "duplicate rows in journal")
  local q = "SELECT string_agg(indexdef, '; ' ORDER BY indexname) AS d FROM pg_indexes WHERE schemaname = 'public' AND tablename NOT LIKE 'pgtide%'"
  T.eq(assert(t:query(q))[1].d, assert(s:query(q))[1].d)
  T.eq(assert(t:query("SELECT count(*) AS n FROM pg_constraint WHERE contype = 'f'"))[1].n, 1)
  T.eq(assert(t:query("SELECT count(*) AS n FROM pg_proc WHERE proname ~ '^f[0-9]+$'"))[1].n, 300)
  T.eq(assert(t:query("SELECT phase FROM pgtide.tasks WHERE task = $1", name))[1].phase, "done")
  print(string.format("# %s: %d source transactions during the run; %s", name, writes,
                      out:find("running again in", 1, true) and "resumed by the run" or
                      out:find("reconnecting in", 1, true) and "the stream reconnected" or "no retry needed"))
  -- Release leaves nothing of the task on either server.
  local rc, rout = H.run("release " .. pb)
  T.eq(rc, 0, rout)
  local prefix = "pgtide_" .. name
  T.eq(#assert(s:query("SELECT 1 FROM pg_replication_slots WHERE slot_name = $1", prefix)), 0, "slot left")
  T.eq(#assert(s:query("SELECT 1 FROM pg_publication WHERE pubname = $1", prefix)), 0, "publication left")
  T.eq(assert(s:query("SELECT to_regclass($1) IS NULL AS gone", "public." .. prefix .. "_heartbeat"))[1].gone, true,
       "heartbeat table left")
  T.eq(#assert(t:query("SELECT 1 FROM pg_replication_origin WHERE roname = $1", prefix)), 0, "origin left")
  s:close(); t:close()
end

for _, phase in ipairs(PHASES) do
  for _, fault in ipairs(FAULTS) do
    n = n + 1
    local name = "sf" .. n
    case(fault.name .. " during " .. phase.name .. " (random moment): the task resumes by itself, target = source",
      function(ctx)
        run_case(ctx, name, phase, function() fault.run(ctx, name) end)
      end)
  end
end

case("SIGKILL during incremental (random moment), then run again: target = source", function(ctx)
  run_case(ctx, "sf_kill", PHASES[4], function(proc) proc:kill(9) end, true)
end)
