-- An invalidated slot (the source removed WAL the task had not received, beyond
-- max_slot_wal_keep_size): the running task stops by itself with exit status 7 and says what
-- was lost and what to do; running it again stops the same way at once (no retry loop); and
-- `pgtide release` still drops everything, after which the task starts over.
local T = require "testlib"
local P = require "pg"
local tide = require "tide"
local H = require "tidetest"

local NAME = "slot_lost"

-- Whatever happens in fn, the source's max_slot_wal_keep_size is restored afterwards.
local function with_small_wal_keep(ctx, fn)
  local admin = assert(tide.connect(ctx.source_admin))
  assert(admin:exec("ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'"))
  assert(admin:query("SELECT pg_reload_conf()"))
  local ok, err = xpcall(fn, debug.traceback)
  assert(admin:exec("ALTER SYSTEM RESET max_slot_wal_keep_size"))
  assert(admin:query("SELECT pg_reload_conf()"))
  admin:close()
  if not ok then error(err, 0) end
end

local function slot_status(s)
  local r = assert(s:query("SELECT wal_status FROM pg_replication_slots WHERE slot_name = $1", "pgtide_" .. NAME))
  return r[1] and r[1].wal_status
end

T.test("the slot is invalidated while the task is paused: exit 7, the rerun too, release cleans up", function(ctx)
  local s, t = P.connect_both(ctx)
  assert(s:exec("CREATE TABLE items (id int PRIMARY KEY, v text); " ..
                "INSERT INTO items SELECT g, md5(g::text) FROM generate_series(1, 1000) g"))
  local pb = H.playbook(ctx, NAME, [[migrate = { "schema", "full", "incremental" }, progress = "plain",
    incremental = { heartbeat_interval = 0.2 }, retry = { attempts = 3, max_delay = 1 },
    stop = function() return false end,]])
  local proc, log = H.start(ctx, "run " .. pb, NAME)
  local streaming = P.poll(60, function()
    if proc:exited() then return "exited" end
    local r = t:query("SELECT phase FROM pgtide.tasks WHERE task = $1", NAME)
    return r and r[1] and r[1].phase == "incremental" and H.read(log):find("incremental: applied", 1, true) and "yes"
  end)
  T.eq(streaming, "yes", H.read(log))
  -- A change the paused task will not apply: the slot cannot move past it.
  assert(s:exec("INSERT INTO items VALUES (1001, 'after the pause')"))
  local code, out = H.run("attach " .. NAME .. " -e 'task:pause()'")
  T.eq(code, 0, out)
  with_small_wal_keep(ctx, function()
    local lost = P.poll(90, function()
      assert(s:exec("INSERT INTO items SELECT g, md5(g::text) FROM generate_series(2000, 2500) g " ..
                    "ON CONFLICT (id) DO UPDATE SET v = excluded.v || 'x'"))
      assert(s:query("SELECT pg_switch_wal()"))
      assert(s:exec("CHECKPOINT"))
      return slot_status(s) == "lost"
    end)
    T.ok(lost, "the slot was never invalidated (wal_status " .. tostring(slot_status(s)) .. ")")
    -- The running task notices by itself and stops: permanent, not retried forever.
    T.ok(P.poll(60, function() return proc:exited() end), "the task did not stop: " .. H.read(log))
    local rc = proc:wait()
    out = H.read(log)
    T.eq(rc, 7, out)
    T.match(out, "replication slot pgtide_slot_lost was invalidated")
    T.match(out, "changes since then are lost")
    T.match(out, "pgtide release")
    T.match(out, "full load")
    T.nomatch(out, "giving up after")
  end)

  -- Running it again: the same clear stop at once, without retrying.
  local started = tide.monotonic()
  code, out = H.run("run " .. pb)
  T.eq(code, 7, out)
  T.match(out, "invalidated")
  T.nomatch(out, "running again")
  T.ok(tide.monotonic() - started < 20, "the rerun took " .. (tide.monotonic() - started) .. " s")

  -- Release still cleans up, and forgets the task's progress.
  code, out = H.run("release " .. pb)
  T.eq(code, 0, out)
  T.match(out, "dropped replication slot pgtide_slot_lost")
  T.match(out, "recorded progress of task slot_lost")
  T.eq(#assert(s:query("SELECT 1 FROM pg_replication_slots WHERE slot_name = 'pgtide_slot_lost'")), 0)
  T.eq(#assert(s:query("SELECT 1 FROM pg_publication WHERE pubname = 'pgtide_slot_lost'")), 0)
  T.eq(assert(s:query("SELECT to_regclass('public.pgtide_slot_lost_heartbeat') IS NULL AS gone"))[1].gone, true)
  T.eq(#assert(t:query("SELECT 1 FROM pg_replication_origin WHERE roname = 'pgtide_slot_lost'")), 0)
  T.eq(#assert(t:query("SELECT 1 FROM pgtide.tasks WHERE task = $1", NAME)), 0)

  -- Starting over: with the target emptied, the task migrates again from the beginning.
  assert(t:exec("DROP TABLE items"))
  local pb2 = H.playbook(ctx, NAME, [[migrate = { "schema", "full", "incremental" }, progress = "plain",
    incremental = { heartbeat_interval = 0.2, release = true }, stop = function() return true end,]])
  code, out = H.run("run " .. pb2)
  T.eq(code, 0, out)
  T.eq(P.fingerprint(t, "items"), P.fingerprint(s, "items"))
  T.eq(#assert(s:query("SELECT 1 FROM pg_replication_slots WHERE slot_name = 'pgtide_slot_lost'")), 0)
  s:close(); t:close()
end)

T.test("a slot dropped behind the task's back after its full load: exit 7, not a silent gap", function(ctx)
  local s, t = P.connect_both(ctx)
  for _, c in ipairs({ s, t }) do
    assert(c:exec("DROP SCHEMA IF EXISTS public CASCADE; DROP SCHEMA IF EXISTS pgtide CASCADE; CREATE SCHEMA public"))
  end
  assert(s:exec("CREATE TABLE items (id int PRIMARY KEY, v text); INSERT INTO items VALUES (1, 'a')"))
  local name = "slot_dropped"
  local pb = H.playbook(ctx, name, [[migrate = { "schema", "full", "incremental" }, progress = "plain",
    incremental = { heartbeat_interval = 0.2 }, stop = function() return false end,]])
  local proc, log = H.start(ctx, "run " .. pb, name)
  -- Once the stream reports (its signal handlers are in place), a clean stop.
  T.ok(P.poll(60, function() return proc:exited() or H.read(log):find("incremental: applied", 1, true) end))
  proc:kill(15)
  T.eq(proc:wait(), 130, H.read(log))
  assert(s:query("SELECT pg_drop_replication_slot('pgtide_slot_dropped')"))
  assert(s:exec("INSERT INTO items VALUES (2, 'b')"))
  local code, out = H.run("run " .. pb)
  T.eq(code, 7, out)
  T.match(out, "replication slot pgtide_slot_dropped of task slot_dropped is gone")
  T.eq(#assert(s:query("SELECT 1 FROM pg_replication_slots WHERE slot_name = 'pgtide_slot_dropped'")), 0,
       "no new slot was made")
  code, out = H.run("release " .. pb)
  T.eq(code, 0, out)
  s:close(); t:close()
end)

T.test("the engine dies while releasing at cutover: the rerun finishes the task instead of finding its slot gone", function(ctx)
  local s, t = P.connect_both(ctx)
  for _, c in ipairs({ s, t }) do
    assert(c:exec("DROP SCHEMA IF EXISTS public CASCADE; DROP SCHEMA IF EXISTS pgtide CASCADE; CREATE SCHEMA public"))
  end
  assert(s:exec("CREATE TABLE items (id int PRIMARY KEY, v text); INSERT INTO items VALUES (1, 'a')"))
  local name = "cut_release"
  local stopfile = ctx.tmpdir .. "/stop_" .. name
  os.remove(stopfile)
  local pb = H.playbook(ctx, name, string.format([[migrate = { "schema", "full", "incremental" }, progress = "plain",
    incremental = { heartbeat_interval = 0.2, release = true },
    stop = function() local f = io.open(%q) if f then f:close() end return f ~= nil end,]], stopfile))
  local proc, log = H.start(ctx, "run " .. pb, name)
  T.ok(P.poll(60, function() return proc:exited() or H.read(log):find("incremental: applied", 1, true) end))
  T.ok(not proc:exited(), H.read(log))
  assert(s:exec("INSERT INTO items VALUES (2, 'b')"))
  -- The release at cutover drops the slot, the publication, then the heartbeat table, which
  -- this session holds: the engine is killed while it waits there.
  local locker = assert(tide.connect(ctx.source_url))
  assert(locker:exec("BEGIN; LOCK TABLE public.pgtide_cut_release_heartbeat IN ACCESS EXCLUSIVE MODE"))
  local f = assert(io.open(stopfile, "w")); f:close()
  local releasing = P.poll(60, function()
    if proc:exited() then return "exited" end
    local r = t:query("SELECT phase FROM pgtide.tasks WHERE task = $1", name)
    local slots = assert(s:query("SELECT 1 FROM pg_replication_slots WHERE slot_name = 'pgtide_cut_release'"))
    return r and r[1] and r[1].phase == "cutover" and #slots == 0 and "yes"
  end)
  T.eq(releasing, "yes", H.read(log))
  proc:kill(9)
  proc:wait()
  assert(locker:exec("ROLLBACK"))
  locker:close()
  local code, out = H.run("run " .. pb)
  T.eq(code, 0, out)
  T.match(out, "cutover of task cut_release already ran")
  T.eq(assert(t:query("SELECT phase FROM pgtide.tasks WHERE task = $1", name))[1].phase, "done")
  T.eq(P.fingerprint(t, "items"), P.fingerprint(s, "items"))
  T.eq(#assert(s:query("SELECT 1 FROM pg_publication WHERE pubname = 'pgtide_cut_release'")), 0)
  T.eq(assert(s:query("SELECT to_regclass('public.pgtide_cut_release_heartbeat') IS NULL AS gone"))[1].gone, true)
  T.eq(#assert(t:query("SELECT 1 FROM pg_replication_origin WHERE roname = 'pgtide_cut_release'")), 0)
  s:close(); t:close()
end)
