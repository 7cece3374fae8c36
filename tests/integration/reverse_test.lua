-- The reverse task (cutover.reverse = true, docs/cutover.md "Rolling back"): schema + full +
-- incremental under writes, a cutover that makes the reverse task's slot and playbook, writes on
-- the new primary streamed back to the old source (names mapped back; a transaction replayed
-- under the forward task's origin is not sent back), a rollback (the reverse task's cutover)
-- after which the old source takes writes again, and nothing left after both releases. A
-- cutover killed in the middle of the reverse setup leaks nothing and works when retried.
local T = require "testlib"
local P = require "pg"
local H = require "tidetest"
local W = require "workload"
local tide = require "tide"

local SETUP = [[
DROP TABLE IF EXISTS accounts, events CASCADE;
CREATE TABLE accounts (id serial PRIMARY KEY, balance int NOT NULL);
CREATE TABLE events (id bigserial PRIMARY KEY, account int, note text);
INSERT INTO accounts (balance) SELECT g FROM generate_series(1, 100) g;
INSERT INTO events (account, note) SELECT g % 100 + 1, 'before' FROM generate_series(1, 500) g;
]]

-- Both databases take writes again and nothing of an earlier case is left.
local function reset(ctx)
  for _, url in ipairs({ ctx.source_url, ctx.target_url }) do
    local c = assert(tide.connect(url))
    local db = assert(c:query("SELECT current_database() AS d"))[1].d
    assert(c:exec("SET default_transaction_read_only = off"))
    assert(c:exec("ALTER DATABASE " .. c:quote_ident(db) .. " RESET default_transaction_read_only"))
    -- sessions a failed case left (its pgtide processes)
    assert(c:query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE 'pgtide:rev%'"))
    P.wait_for("sessions of earlier cases gone", function()
      return assert(c:query("SELECT count(*) AS n FROM pg_stat_activity WHERE application_name LIKE 'pgtide:rev%'"))[1].n == 0
    end, 10)
    for _, r in ipairs(assert(c:query("SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE 'pgtide_rev%' AND NOT active"))) do
      assert(c:query("SELECT pg_drop_replication_slot($1)", r.slot_name))
    end
    for _, r in ipairs(assert(c:query("SELECT pubname FROM pg_publication WHERE pubname LIKE 'pgtide_rev%'"))) do
      assert(c:exec("DROP PUBLICATION " .. c:quote_ident(r.pubname)))
    end
    for _, r in ipairs(assert(c:query("SELECT roname FROM pg_replication_origin WHERE roname LIKE 'pgtide_rev%'"))) do
      assert(c:query("SELECT pg_replication_origin_drop($1)", r.roname))
    end
    assert(c:exec('DROP SCHEMA IF EXISTS "Odd Schema" CASCADE'))
    c:close()
  end
  P.clean(ctx)
end

-- What pgtide leaves of tasks named rev*: slots, publications, origins, heartbeat tables,
-- recorded progress. Empty after both releases.
local function leftovers(url)
  local c = assert(tide.connect(url))
  local out = {}
  local function add(sql)
    for _, r in ipairs(assert(c:query(sql))) do out[#out + 1] = r.what end
  end
  add("SELECT 'slot ' || slot_name AS what FROM pg_replication_slots WHERE slot_name LIKE 'pgtide_rev%'")
  add("SELECT 'publication ' || pubname AS what FROM pg_publication WHERE pubname LIKE 'pgtide_rev%'")
  add("SELECT 'origin ' || roname AS what FROM pg_replication_origin WHERE roname LIKE 'pgtide_rev%'")
  add("SELECT 'table ' || oid::regclass::text AS what FROM pg_class WHERE relname LIKE 'pgtide_rev%heartbeat'")
  add("SELECT 'event trigger ' || evtname AS what FROM pg_event_trigger WHERE evtname LIKE 'pgtide%'")
  if assert(c:query("SELECT to_regclass('pgtide.tasks') IS NOT NULL AS p"))[1].p then
    add("SELECT 'state of ' || task AS what FROM pgtide.tasks WHERE task LIKE 'rev%'")
    add("SELECT 'steps of ' || task AS what FROM pgtide.steps WHERE task LIKE 'rev%'")
    add("SELECT 'parts of ' || task AS what FROM pgtide.copy_parts WHERE task LIKE 'rev%'")
  end
  add("SELECT 'read-only setting' AS what FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase " ..
      "WHERE d.datname = current_database() AND 'default_transaction_read_only=on' = ANY (s.setconfig)")
  c:close()
  return out
end

-- An application writing all along (inserts, updates, deletes) to `url`, with the table and
-- column names of that side; reconnects when its session is ended; counts what committed and
-- what was refused (read-only).
local function writer(url, events, accounts, balance)
  local w = { committed = 0, refused = 0, errors = {}, stop = false }
  w.handle = tide.spawn(function()
    local conn
    local i = 0
    while not w.stop do
      if not conn then conn = tide.connect(url) end
      if conn then
        i = i + 1
        local sql = i % 3 == 0 and string.format("UPDATE %s SET %s = %s + 1 WHERE id = %d", accounts, balance, balance, i % 100 + 1)
          or i % 7 == 0 and string.format("DELETE FROM %s WHERE id = (SELECT min(id) FROM %s WHERE note = 'before')", events, events)
          or string.format("INSERT INTO %s (account, note) VALUES (%d, 'app')", events, i % 100 + 1)
        local ok, err = conn:query(sql)
        if ok then w.committed = w.committed + 1
        else
          local state = err and err.sqlstate or ""
          if state == "25006" then w.refused = w.refused + 1
          elseif state ~= "57P01" and not state:match("^08") then w.errors[#w.errors + 1] = tostring(err) end
          conn:close(); conn = nil
        end
      end
      tide.sleep(0.01)
    end
    if conn then conn:close() end
  end)
  return w
end

local function stop_writer(w)
  -- The writer sees its session ended by the fence at its next statement and is refused once
  -- it reconnects: that may come just after the run ended.
  P.wait_for("a write refused", function() return w.refused > 0 or #w.errors > 0 end, 30)
  w.stop = true
  local ok, err = w.handle:wait()
  T.ok(ok ~= false, "the writer failed: " .. tostring(err))
  T.eq(w.errors, {}, "the application saw only read-only refusals")
end

local function forward_playbook(ctx, name, extra)
  return H.playbook(ctx, name, string.format([[
  migrate = { "schema", "full", "incremental" },
  progress = "plain",
  rename = { table = { ["public.events"] = "events_moved" }, column = { ["public.accounts.balance"] = "amount" } },
  incremental = { heartbeat_interval = 0.2 },
  cutover = { reverse = true, verify = "counts" },
  stop = tide.when { file_exists = %q },
  %s
]], ctx.tmpdir .. "/" .. name .. ".never", extra or ""))
end

local function streaming(proc, log)
  P.wait_for("the stream", function() return H.read(log):find("incremental: started", 1, true) or proc:exited() end, 90)
  T.ok(not proc:exited(), H.read(log))
end

-- The old source (events, accounts.balance) and the new primary (events_moved, accounts.amount)
-- hold the same rows.
local function same(ctx, what)
  local s = assert(tide.connect(ctx.source_url))
  local t = assert(tide.connect(ctx.target_url))
  T.eq(P.fingerprint(t, "events_moved"), P.fingerprint(s, "events"), what .. ": events")
  T.eq(P.fingerprint(t, "accounts", "t.id::text || ':' || t.amount"), P.fingerprint(s, "accounts", "t.id::text || ':' || t.balance"),
       what .. ": accounts")
  s:close(); t:close()
end

local function count(url, sql)
  local c = assert(tide.connect(url))
  local n = assert(c:query(sql))[1].n
  c:close()
  return n
end

T.test("reverse task: cut over, stream back, roll back; nothing left after releasing both", function(ctx)
  reset(ctx)
  local src = assert(tide.connect(ctx.source_url))
  assert(src:exec(SETUP))
  src:close()
  local pb = forward_playbook(ctx, "rev1")
  local rev_pb = ctx.tmpdir .. "/rev1-reverse.lua"
  os.remove(rev_pb)
  local proc, log = H.start(ctx, "run " .. pb, "rev1")
  streaming(proc, log)
  local w = writer(ctx.source_url, "events", "accounts", "balance")
  P.wait_for("writes on the source", function() return w.committed >= 30 end, 30)

  -- The cutover makes the reverse task before the hooks; the downtime is printed.
  local cut, cut_log = H.start(ctx, "cutover " .. pb, "rev1-cutover")
  T.eq(cut:wait(), 0, H.read(cut_log) .. H.read(log))
  local out = H.read(cut_log)
  T.match(out, "cutover done: write downtime [%d.]+m?s %(fence to ready: fence .*, verify .*, reverse .*, hooks ")
  T.match(out, "reverse task rev1%-reverse: slot pgtide_rev1_reverse on the target, from %x+/%x+; its playbook: " ..
          rev_pb:gsub("%p", "%%%0"))
  T.eq(proc:wait(), 0, H.read(log))
  stop_writer(w)
  T.ok(w.refused > 0, "the source refused the application's writes after the fence")
  same(ctx, "after the cutover")

  -- The generated playbook: no conninfo in it, the forward playbook's sides instead.
  local text = H.read(rev_pb)
  T.match(text, 'reverse_of = "rev1"')
  T.match(text, 'source     = tide.side%(forward, "target"%)')
  T.nomatch(text, ctx.source_url:gsub("%p", "%%%0"), "no conninfo is written")
  T.nomatch(text, "postgres", "no conninfo is written")
  T.match(text, '%["public.events_moved"%] = { schema = "public", name = "events" }')
  T.match(text, '%["public.accounts.amount"%] = "balance"')

  -- The forward task, finished, names its reverse task.
  local code, again = H.run("run " .. pb)
  T.eq(code, 0, again)
  T.match(again, "reverse:     task rev1%-reverse follows the target back")

  -- The reverse task streams the new primary's writes back to the (still fenced) old source.
  local rproc, rlog = H.start(ctx, "run " .. rev_pb, "rev1-reverse")
  streaming(rproc, rlog)
  T.nomatch(H.read(rlog), "full", "no full load: it starts from the slot made at cutover")
  local w2 = writer(ctx.target_url, "events_moved", "accounts", "amount")
  P.wait_for("writes on the new primary", function() return w2.committed >= 30 end, 30)
  -- A transaction replayed on the new primary under the forward task's origin (what its apply
  -- wrote) is not sent back; an ordinary one after it is.
  local t = assert(tide.connect(ctx.target_url))
  local marker = assert(t:query("INSERT INTO events_moved (account, note) VALUES (1, 'marker') RETURNING id"))[1].id
  P.wait_for("the marker row on the old source", function()
    return count(ctx.source_url, "SELECT count(*) AS n FROM events WHERE note = 'marker'") == 1
  end, 30)
  assert(t:query("SELECT pg_replication_origin_session_setup('pgtide_rev1')"))
  assert(t:query("UPDATE events_moved SET note = 'looped' WHERE id = $1", marker))
  assert(t:query("SELECT pg_replication_origin_session_reset()"))
  assert(t:query("INSERT INTO events_moved (account, note) VALUES (1, 'after the loop')"))
  P.wait_for("the write after the looped one, on the old source", function()
    return count(ctx.source_url, "SELECT count(*) AS n FROM events WHERE note = 'after the loop'") == 1
  end, 30)
  T.eq(count(ctx.source_url, "SELECT count(*) AS n FROM events WHERE note = 'looped'"), 0,
       "a transaction of the forward task's origin is not applied back")
  T.eq(count(ctx.source_url, "SELECT count(*) AS n FROM events WHERE note = 'marker'"), 1)
  assert(t:query("UPDATE events_moved SET note = 'marker' WHERE id = $1", marker))
  t:close()
  T.eq(count(ctx.source_url, "SELECT count(*) AS n FROM events WHERE note = 'app'") > 0, true)
  -- Its status shows its delay.
  local scode, status = H.run("status rev1-reverse")
  T.eq(scode, 0, status)
  T.match(status, "delay")

  -- Rolling back: the reverse task's cutover (row counts verified); the old source is writable.
  local rb, rb_log = H.start(ctx, "cutover " .. rev_pb, "rev1-rollback")
  T.eq(rb:wait(), 0, H.read(rb_log) .. H.read(rlog))
  T.match(H.read(rb_log), "cutover done: write downtime")
  T.eq(rproc:wait(), 0, H.read(rlog))
  T.match(H.read(rlog), "the old source takes writes again")
  stop_writer(w2)
  T.ok(w2.refused > 0, "the new primary refused writes after the rollback's fence")
  T.eq(count(ctx.source_url, "SELECT count(*) AS n FROM events WHERE note = 'looped'"), 0)
  same(ctx, "after the rollback")
  local s = assert(tide.connect(ctx.source_url))
  assert(s:query("INSERT INTO events (account, note) VALUES (5, 'after the rollback')"))
  assert(s:query("UPDATE accounts SET balance = balance + 1 WHERE id = 5"))
  s:close()
  local tt = assert(tide.connect(ctx.target_url))
  local _, err = tt:query("INSERT INTO events_moved (account, note) VALUES (1, 'late')")
  T.eq(err and err.sqlstate, "25006", "the new primary refuses writes after the rollback")
  tt:close()
  code, again = H.run("run " .. pb)
  T.eq(code, 0, again)
  T.match(again, "rolled back: by the cutover of task rev1%-reverse")

  -- Release both: nothing of either task is left on either side (the reverse task's fence on
  -- the new primary is the operator's to lift: it keeps the application off it).
  code, out = H.run("release " .. rev_pb)
  T.eq(code, 0, out)
  T.match(out, "dropped replication slot pgtide_rev1_reverse")
  T.match(out, "dropped replication origin pgtide_rev1_reverse")
  code, out = H.run("release " .. pb)
  T.eq(code, 0, out)
  T.match(out, "dropped replication slot pgtide_rev1\n")
  T.eq(leftovers(ctx.source_url), {}, "nothing left on the old source")
  T.eq(leftovers(ctx.target_url), { "read-only setting" }, "only the rollback's fence is left on the new primary")
  -- Released, the reverse task cannot start again (it would miss what was written since).
  code, out = H.run("run " .. rev_pb)
  T.eq(code, 1, out)
  T.match(out, "the reverse task rev1%-reverse has no replication slot pgtide_rev1_reverse on its source")
  T.eq(leftovers(ctx.source_url), {}, "nothing written by the refused run")
  reset(ctx)
end)

T.test("a hook that fails after the reverse setup: its objects and playbook are dropped, the retry makes them", function(ctx)
  reset(ctx)
  local src = assert(tide.connect(ctx.source_url))
  assert(src:exec(SETUP))
  src:close()
  local pb = forward_playbook(ctx, "rev4", [[
  on = { cutover = (function()
    local calls = 0
    return function() calls = calls + 1; if calls == 1 then error("not yet") end end
  end)() },
]])
  local rev_pb = ctx.tmpdir .. "/rev4-reverse.lua"
  os.remove(rev_pb)
  local proc, log = H.start(ctx, "run " .. pb, "rev4")
  streaming(proc, log)
  local cut, cut_log = H.start(ctx, "cutover " .. pb, "rev4-cutover1")
  T.eq(cut:wait(), 1, H.read(cut_log))
  T.match(H.read(cut_log), "not yet")
  P.wait_for("the reverse objects dropped", function()
    return H.read(log):find("its reverse task's objects are dropped", 1, true)
  end, 30)
  T.eq(count(ctx.target_url, "SELECT count(*) AS n FROM pg_replication_slots WHERE slot_name = 'pgtide_rev4_reverse'"), 0)
  T.eq(count(ctx.target_url, "SELECT count(*) AS n FROM pg_publication WHERE pubname LIKE 'pgtide_rev4_reverse%'"), 0)
  T.eq(count(ctx.target_url, "SELECT count(*) AS n FROM pg_class WHERE relname = 'pgtide_rev4_reverse_heartbeat'"), 0)
  T.eq(count(ctx.source_url, "SELECT count(*) AS n FROM pg_replication_origin WHERE roname = 'pgtide_rev4_reverse'"), 0)
  T.ok(not io.open(rev_pb), "the reverse playbook is removed")
  local s = assert(tide.connect(ctx.source_url))
  assert(s:query("INSERT INTO events (account, note) VALUES (4, 'between the cutovers')"))
  s:close()
  cut, cut_log = H.start(ctx, "cutover " .. pb, "rev4-cutover2")
  T.eq(cut:wait(), 0, H.read(cut_log))
  T.eq(proc:wait(), 0, H.read(log))
  T.ok(io.open(rev_pb) ~= nil, "the retried cutover wrote the reverse playbook")
  same(ctx, "after the retried cutover")
  -- The forward task released first (its fence record goes): it says the reverse task is left,
  -- and a rollback still makes the old source writable (its read-only setting is seen).
  local code, out = H.run("release " .. pb)
  T.eq(code, 0, out)
  T.match(out, "the reverse task rev4%-reverse still has its slot pgtide_rev4_reverse on the target")
  local rproc, rlog = H.start(ctx, "run " .. rev_pb, "rev4-reverse")
  streaming(rproc, rlog)
  local t = assert(tide.connect(ctx.target_url))
  assert(t:query("INSERT INTO events_moved (account, note) VALUES (4, 'on the new primary')"))
  t:close()
  local rb, rb_log = H.start(ctx, "cutover " .. rev_pb, "rev4-rollback")
  T.eq(rb:wait(), 0, H.read(rb_log) .. H.read(rlog))
  T.eq(rproc:wait(), 0, H.read(rlog))
  T.match(H.read(rlog), "the old source takes writes again: its default_transaction_read_only is reset")
  T.eq(count(ctx.source_url, "SELECT count(*) AS n FROM events WHERE note = 'on the new primary'"), 1)
  local s2 = assert(tide.connect(ctx.source_url))
  assert(s2:query("INSERT INTO events (account, note) VALUES (4, 'after the rollback')"))
  s2:close()
  code, out = H.run("release " .. rev_pb)
  T.eq(code, 0, out)
  T.eq(leftovers(ctx.source_url), {}, "nothing left on the old source")
  T.eq(leftovers(ctx.target_url), { "read-only setting" }, "only the rollback's fence is left on the new primary")
  reset(ctx)
end)

T.test("killed while making the reverse task: nothing leaks, the retried cutover makes it again", function(ctx)
  reset(ctx)
  local src = assert(tide.connect(ctx.source_url))
  assert(src:exec(SETUP))
  src:close()
  -- A transaction held open on the target keeps the reverse slot's creation waiting: the run
  -- is killed there, after the reverse setup recorded itself and made its publication.
  local pb = forward_playbook(ctx, "rev2")
  local rev_pb = ctx.tmpdir .. "/rev2-reverse.lua"
  os.remove(rev_pb)
  local proc, log = H.start(ctx, "run " .. pb, "rev2")
  streaming(proc, log)
  local blocker = assert(tide.connect(ctx.target_url))
  assert(blocker:exec("BEGIN; INSERT INTO accounts (amount) VALUES (0)"))
  local cut = H.start(ctx, "cutover " .. pb, "rev2-cutover")
  P.wait_for("the reverse publication", function()
    return count(ctx.target_url, "SELECT count(*) AS n FROM pg_publication WHERE pubname = 'pgtide_rev2_reverse'") == 1
  end, 60)
  proc:kill(9)
  proc:wait()
  cut:wait()
  blocker:exec("ROLLBACK")
  blocker:close()
  T.eq(count(ctx.target_url, "SELECT count(*) AS n FROM pgtide.tasks WHERE info ? 'reverse'"), 1,
       "the reverse setup was recorded before anything was made")
  -- Running again lifts the fence and drops the half-made reverse task.
  local proc2, log2 = H.start(ctx, "run " .. pb, "rev2-again")
  streaming(proc2, log2)
  P.wait_for("the fence lifted", function()
    return H.read(log2):find("a cutover that did not finish left the source fenced", 1, true) or proc2:exited()
  end, 30)
  T.match(H.read(log2), "its reverse task's objects are dropped")
  T.eq(count(ctx.target_url, "SELECT count(*) AS n FROM pg_publication WHERE pubname LIKE 'pgtide_rev2_reverse%'"), 0)
  T.eq(count(ctx.source_url, "SELECT count(*) AS n FROM pg_replication_origin WHERE roname = 'pgtide_rev2_reverse'"), 0)
  T.eq(count(ctx.target_url, "SELECT count(*) AS n FROM pg_replication_slots WHERE slot_name = 'pgtide_rev2_reverse'"), 0)
  T.eq(count(ctx.target_url, "SELECT count(*) AS n FROM pgtide.tasks WHERE info ? 'reverse'"), 0)
  -- Writes on the source stream on; the retried cutover makes the reverse task from its point.
  local s = assert(tide.connect(ctx.source_url))
  assert(s:query("INSERT INTO events (account, note) VALUES (2, 'after the kill')"))
  s:close()
  local c2, c2_log = H.start(ctx, "cutover " .. pb, "rev2-cutover2")
  T.eq(c2:wait(), 0, H.read(c2_log) .. H.read(log2))
  T.eq(proc2:wait(), 0, H.read(log2))
  same(ctx, "after the retried cutover")
  local rproc, rlog = H.start(ctx, "run " .. rev_pb, "rev2-reverse")
  streaming(rproc, rlog)
  local t = assert(tide.connect(ctx.target_url))
  assert(t:query("INSERT INTO events_moved (account, note) VALUES (3, 'on the new primary')"))
  t:close()
  P.wait_for("the new primary's write on the old source", function()
    return count(ctx.source_url, "SELECT count(*) AS n FROM events WHERE note = 'on the new primary'") == 1
  end, 30)
  rproc:kill(15)
  T.eq(rproc:wait(), 130, H.read(rlog))   -- stopped by a signal
  local code, out = H.run("release " .. rev_pb)
  T.eq(code, 0, out)
  code, out = H.run("release " .. pb)
  T.eq(code, 0, out)
  T.eq(leftovers(ctx.target_url), {}, "nothing left on the new primary")
  T.eq(leftovers(ctx.source_url), { "read-only setting" }, "the forward task's fence is kept on the old source")
  reset(ctx)
end)

-- Every user table, partitions through their parent.
local function tables_of(conn)
  local out = {}
  for i, r in ipairs(assert(conn:query([[
SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS rel
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgtide') AND n.nspname NOT LIKE 'pg_toast%'
  AND c.relname NOT LIKE 'pgtide%heartbeat'
ORDER BY 1]]))) do out[i] = r.rel end
  return out
end

local function differences(ctx)
  local s = assert(tide.connect(ctx.source_url))
  local t = assert(tide.connect(ctx.target_url))
  local rels, diffs = tables_of(s), {}
  for _, rel in ipairs(rels) do
    local a, b = P.fingerprint(s, rel), P.fingerprint(t, rel)
    if a ~= b then diffs[#diffs + 1] = string.format("%s: old source %s, new primary %s", rel, a, b) end
  end
  s:close(); t:close()
  return diffs, #rels
end

T.test("the rental shop under its workload: reverse task, the workload on the new primary streamed back, rolled back", function(ctx)
  reset(ctx)
  local f = assert(io.open("tests/fixtures/rental_shop.sql"))
  local fixture = f:read("a")
  f:close()
  local src = assert(tide.connect(ctx.source_url))
  assert(src:exec(fixture))
  src:close()
  local pb = H.playbook(ctx, "rev3", string.format([[
  migrate = { "schema", "full", "incremental" },
  progress = "plain",
  full = { jobs = 2 },
  incremental = { heartbeat_interval = 0.2, decoding_work_mem = "64kB" },
  cutover = { reverse = true },
  stop = tide.when { file_exists = %q },
]], ctx.tmpdir .. "/rev3.never"))
  local rev_pb = ctx.tmpdir .. "/rev3-reverse.lua"
  os.remove(rev_pb)
  local w = W.start(ctx.source_url, { seed = 31 })
  local proc, log = H.start(ctx, "run " .. pb, "rev3")
  streaming(proc, log)
  local at = w.rounds
  P.wait_for("workload rounds while streaming", function() return w.rounds >= at + 4 end, 120)
  w:stop()   -- a round may hold a prepared transaction, which the fence refuses
  T.eq(w.errors, {}, "the workload on the source")
  local cut, cut_log = H.start(ctx, "cutover " .. pb, "rev3-cutover")
  T.eq(cut:wait(), 0, H.read(cut_log) .. H.read(log))
  T.match(H.read(cut_log), "cutover done: write downtime")
  T.eq(proc:wait(), 0, H.read(log))
  local diffs, n = differences(ctx)
  T.ok(n >= 15, "tables found: " .. n)
  T.eq(diffs, {}, "after the cutover")

  local rproc, rlog = H.start(ctx, "run " .. rev_pb, "rev3-reverse")
  streaming(rproc, rlog)
  local w2 = W.start(ctx.target_url, { seed = 32 })
  P.wait_for("workload rounds on the new primary (a large one among them)", function()
    return w2.rounds >= 4 and w2.big_committed ~= nil
  end, 120)
  w2:stop()
  T.eq(w2.errors, {}, "the workload on the new primary")
  local rb, rb_log = H.start(ctx, "cutover " .. rev_pb, "rev3-rollback")
  T.eq(rb:wait(), 0, H.read(rb_log) .. H.read(rlog))
  T.match(H.read(rb_log), "cutover done: write downtime")
  T.eq(rproc:wait(), 0, H.read(rlog))
  diffs = differences(ctx)
  T.eq(diffs, {}, "after the rollback")
  -- The old source takes the workload again.
  local w3 = W.start(ctx.source_url, { seed = 33 })
  P.wait_for("a workload round on the old source", function() return w3.rounds >= 1 end, 60)
  w3:stop()
  T.eq(w3.errors, {}, "the workload on the old source after the rollback")
  local code, out = H.run("release " .. rev_pb)
  T.eq(code, 0, out)
  code, out = H.run("release " .. pb)
  T.eq(code, 0, out)
  T.eq(leftovers(ctx.source_url), {}, "nothing left on the old source")
  T.eq(leftovers(ctx.target_url), { "read-only setting" }, "only the rollback's fence is left on the new primary")
  reset(ctx)
end)
