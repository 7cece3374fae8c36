-- What resume guarantees: a clean stop on SIGTERM, SIGKILL in the middle of applying and a
-- rerun (no duplicate, no gap), a source restart while streaming, the heartbeat moving the
-- slot on an idle source, and release leaving nothing behind.
local T = require "testlib"
local P = require "pg"
local tide = require "tide"
local cdc = require "tide.cdc"
local H = dofile("tests/integration/cdc_lib.lua")

local DDL = [[
CREATE TABLE ledger (id int PRIMARY KEY, amount int, note text);
CREATE TABLE journal (id int, amount int);
ALTER TABLE journal REPLICA IDENTITY FULL;
CREATE TABLE counter (id int PRIMARY KEY, n int);
]]
local TABLES = { "ledger", "journal", "counter" }

-- n small transactions, from `first`, each touching all three tables.
local function write(src, first, n)
  for i = first, first + n - 1 do
    assert(src:exec(string.format([[BEGIN;
      INSERT INTO ledger VALUES (%d, %d, 'n%d');
      INSERT INTO journal VALUES (%d, %d);
      UPDATE counter SET n = %d WHERE id = 1;
      UPDATE ledger SET amount = amount + 1 WHERE id = %d;
      COMMIT]], i, i % 97, i, i, i % 89, i, math.max(1, i - 3))))
  end
end

local function count(conn, tbl)
  return assert(conn:query("SELECT count(*) AS n FROM " .. tbl))[1].n
end

local function child(ctx, name, stopfile, log)
  return assert(tide.process { os.getenv("PGTIDE"), "script", "tests/integration/cdc_child.lua",
    ctx.source_url, ctx.target_url, name, stopfile, stdout = log, stderr = log })
end

local slurp = H.slurp

T.test("SIGTERM stops cleanly; SIGKILL while applying, then a rerun: no duplicate, no gap", function(ctx)
  P.both(ctx, DDL)
  local src, tgt = P.connect(ctx.source_url), P.connect(ctx.target_url)
  assert(src:exec("INSERT INTO counter VALUES (1, 0)"))
  local name = "resume_kill"
  local task = H.task(ctx, name)
  H.setup(ctx, task, H.plan(src))
  local stopfile = ctx.tmpdir .. "/cdc_stop_" .. name
  local log = ctx.tmpdir .. "/cdc_child_" .. name .. ".log"
  os.remove(stopfile)

  -- 1. SIGTERM: a clean stop with progress saved
  local p = child(ctx, name, stopfile, log)
  write(src, 1, 200)
  P.wait_for("the first rows on the target", function() return count(tgt, "ledger") >= 100 end)
  p:kill(15)
  local code, sig = p:wait()
  T.eq(code, 0, "clean exit on SIGTERM: " .. slurp(log))
  T.eq(sig, 0)
  T.match(slurp(log), "stopped by signal")

  -- 2. SIGKILL in the middle of applying a stream of transactions
  p = child(ctx, name, stopfile, log)
  local writer = tide.spawn(function()
    local w = P.connect(ctx.source_url)
    write(w, 201, 3000)
    w:close()
  end)
  P.wait_for("the target to move", function() return count(tgt, "ledger") >= 800 end)
  p:kill(9)
  p:wait()
  writer:wait()
  T.ok(count(tgt, "ledger") < 3200, "killed before the end of the workload")

  -- 3. run again to the end
  local f = assert(io.open(stopfile, "w"))
  f:write(P.lsn(src, true), "\n")
  f:close()
  p = child(ctx, name, stopfile, log)
  code = p:wait()
  T.eq(code, 0, slurp(log))
  for _, tbl in ipairs(TABLES) do P.same(src, tgt, tbl) end
  T.eq(count(tgt, "journal"), 3200, "no duplicate in a table without a key")
  H.release(ctx, task)
  src:close(); tgt:close()
end)

T.test("a source restart while streaming: the stream reconnects and finishes", function(ctx)
  P.both(ctx, "DROP TABLE IF EXISTS ledger, journal, counter;" .. DDL)
  local src, tgt = P.connect(ctx.source_url), P.connect(ctx.target_url)
  assert(src:exec("INSERT INTO counter VALUES (1, 0)"))
  local ref = {}
  local task = H.task(ctx, "restart", { stop = H.stop_at(ref) })
  local plan = H.plan(src)
  H.setup(ctx, task, plan)
  local h = H.stream(ctx, task, plan)
  write(src, 1, 300)
  P.wait_for("the first part on the target", function() return count(tgt, "ledger") == 300 end)
  src:close()
  local dir = assert(os.getenv("PGTIDE_CLUSTER_DIR"), "PGTIDE_CLUSTER_DIR")
  -- As a child process, so the engine keeps reading the stream while the server shuts down
  -- (a fast shutdown waits for its walsenders to send everything).
  local log = ctx.tmpdir .. "/cdc_restart.log"
  local rc = assert(tide.process { "bash", "scripts/clusters.sh", "restart", dir, "source", stdout = log, stderr = log }):wait()
  T.eq(rc, 0, "restart failed, see " .. log)
  src = P.connect(ctx.source_url)
  write(src, 301, 300)
  ref.lsn = P.lsn(src, true)
  local summary = h:wait()
  T.ok(summary.reconnects >= 1, "reconnected " .. tostring(summary.reconnects) .. " times")
  for _, tbl in ipairs(TABLES) do P.same(src, tgt, tbl) end
  H.release(ctx, task)
  src:close(); tgt:close()
end)

T.test("the source down for a while (connections refused) while streaming: the stream retries and finishes", function(ctx)
  P.both(ctx, "DROP TABLE IF EXISTS ledger, journal, counter;" .. DDL)
  local src, tgt = P.connect(ctx.source_url), P.connect(ctx.target_url)
  assert(src:exec("INSERT INTO counter VALUES (1, 0)"))
  local ref = {}
  local task = H.task(ctx, "outage", { stop = H.stop_at(ref), retry = { attempts = 20, max_delay = 1 } })
  local plan = H.plan(src)
  H.setup(ctx, task, plan)
  local h = H.stream(ctx, task, plan)
  write(src, 1, 100)
  P.wait_for("the first part on the target", function() return count(tgt, "ledger") == 100 end)
  src:close()
  local dir = assert(os.getenv("PGTIDE_CLUSTER_DIR"), "PGTIDE_CLUSTER_DIR")
  local log = ctx.tmpdir .. "/cdc_outage.log"
  local function cluster(cmd)
    return assert(tide.process { "bash", "scripts/clusters.sh", cmd, dir, "source", stdout = log, stderr = log }):wait()
  end
  T.eq(cluster("down"), 0, "stopping the source failed, see " .. log)
  -- The outage: long enough for several reconnect attempts to be refused.
  tide.sleep(2)
  local gave_up = h:done()
  T.eq(cluster("up"), 0, "starting the source failed, see " .. log)
  T.eq(gave_up, false, "the stream gave up while the source was down")
  src = P.connect(ctx.source_url)
  write(src, 101, 100)
  ref.lsn = P.lsn(src, true)
  local summary = h:wait()
  T.ok(summary.reconnects >= 2, "reconnected " .. tostring(summary.reconnects) .. " times")
  for _, tbl in ipairs(TABLES) do P.same(src, tgt, tbl) end
  H.release(ctx, task)
  src:close(); tgt:close()
end)

T.test("the heartbeat moves confirmed_flush_lsn on an idle source; release leaves nothing", function(ctx)
  P.both(ctx, "DROP TABLE IF EXISTS ledger, journal, counter;" .. DDL)
  local src, tgt = P.connect(ctx.source_url), P.connect(ctx.target_url)
  assert(src:exec("CREATE SCHEMA IF NOT EXISTS elsewhere; CREATE TABLE IF NOT EXISTS elsewhere.noise (x int)"))
  local task = H.task(ctx, "heartbeat")
  local plan = H.plan(src)
  H.setup(ctx, task, plan)
  local run = require("tide.taskrun").new(task)
  local h = H.stream(ctx, run, plan)
  P.wait_for("the stream to report", function() return run:stream_status() end)
  -- WAL moves on, but nothing the publication carries: only the heartbeat can advance the slot.
  assert(src:exec("INSERT INTO elsewhere.noise SELECT g FROM generate_series(1, 1000) g"))
  local lsn = P.lsn(src, true)
  local slot = cdc.names(task).slot
  P.wait_for("confirmed_flush_lsn to pass " .. lsn, function()
    local r = assert(src:query("SELECT confirmed_flush_lsn >= $1::pg_lsn AS ok FROM pg_replication_slots " ..
                               "WHERE slot_name = $2", lsn, slot))[1]
    return r and r.ok
  end, 15)
  local st = P.wait_for("a caught-up status", function()
    local s = run:stream_status()
    return s and s.not_delayed and s.bytes_behind == 0 and s
  end, 10)
  T.ok(st.delay < 1, "delay " .. st.delay)
  T.ok(st.heartbeats >= 1, "heartbeats seen")
  run.stream:request_stop()
  T.eq(h:wait().stopped_by, "request")
  H.release(ctx, task)
  local names = cdc.names(task)
  T.eq(#assert(src:query("SELECT 1 FROM pg_replication_slots WHERE slot_name = $1", names.slot)), 0)
  T.eq(#assert(src:query("SELECT 1 FROM pg_publication WHERE pubname = $1", names.publication)), 0)
  T.eq(assert(src:query("SELECT to_regclass($1) IS NULL AS gone", names.heartbeat_schema .. "." ..
                        names.heartbeat_name))[1].gone, true)
  T.eq(#assert(tgt:query("SELECT 1 FROM pg_replication_origin WHERE roname = $1", names.origin)), 0)
  src:close(); tgt:close()
end)

-- Between two apply sessions the task's origin is held by none: a target that lost transactions
-- then (here the origin moved back by hand in that moment, as a crash of an asynchronous commit
-- or a failover to a standby behind would leave it) must stop the stream, not let it go on
-- past what the origin no longer holds.
T.test("the origin found behind when a new apply session takes it over: the stream stops and says why", function(ctx)
  P.both(ctx, "DROP TABLE IF EXISTS " .. table.concat(TABLES, ", ") .. " CASCADE;" .. DDL)
  local src, tgt = P.connect(ctx.source_url), P.connect(ctx.target_url)
  assert(src:exec("INSERT INTO counter VALUES (1, 0)"))
  local ref = {}   -- a stream that did not notice would stop here, once everything is applied
  local run = require("tide.taskrun").of(H.task(ctx, "origin_back",
    { stop = H.stop_at(ref), incremental = { apply_session_statements = 2, group_changes = 4 } }))
  local task = run.task
  local plan = H.plan(src)
  H.setup(ctx, task, plan)
  local h = H.stream(ctx, run, plan)
  local origin = cdc.names(task).origin
  local moved = false
  local writer = tide.spawn(function()
    local i = 1
    while not moved and i < 5000 do write(src, i, 5); i = i + 5 end
  end)
  P.wait_for("a first switch of apply sessions", function()
    local status = run:stream_status()
    return status and (status.apply_sessions or 0) >= 1
  end)
  -- the origin can only be moved while no session holds it: between two sessions
  P.wait_for("a moment between two apply sessions", function()
    local ok = tgt:query("SELECT pg_catalog.pg_replication_origin_advance($1, '0/1')", origin)
    moved = ok ~= nil
    return moved
  end, 60)
  writer:wait()
  ref.lsn = P.lsn(src, true)
  local ok, err = pcall(h.wait, h)
  T.ok(not ok, "the stream stopped")
  T.ok(tostring(err):find("behind", 1, true) and tostring(err):find("lost", 1, true),
       "the error says the target's origin is behind: " .. tostring(err))
  H.release(ctx, task)
  src:close(); tgt:close()
end)
