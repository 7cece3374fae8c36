-- pgtide cutover: a streaming task under writes is switched in one step — the source fenced
-- (default_transaction_read_only, its sessions ended), the stream drained to the barrier,
-- sequences brought across, verified, hooks run, the write downtime printed — and the old
-- source refuses writes afterwards. A failing step lifts the fence and the task streams on; a
-- run killed while fenced lifts the fence when it starts again.
local T = require "testlib"
local P = require "pg"
local H = require "tidetest"
local tide = require "tide"

local SETUP = [[
DROP TABLE IF EXISTS accounts, events CASCADE;
CREATE TABLE accounts (id serial PRIMARY KEY, balance int NOT NULL);
CREATE TABLE events (id bigserial PRIMARY KEY, account int, note text);
INSERT INTO accounts (balance) SELECT g FROM generate_series(1, 100) g;
INSERT INTO events (account, note) SELECT g % 100 + 1, 'before' FROM generate_series(1, 500) g;
]]

-- The source's database goes back to taking writes, whatever a test left.
local function unfence(ctx)
  local c = assert(tide.connect(ctx.source_url))
  local db = assert(c:query("SELECT current_database() AS d"))[1].d
  assert(c:exec("SET default_transaction_read_only = off"))
  assert(c:exec("ALTER DATABASE " .. c:quote_ident(db) .. " RESET default_transaction_read_only"))
  c:close()
end

-- An application writing to the source all along: reconnects when its session is ended,
-- counts what committed and what was refused.
local function writer(url)
  local w = { committed = 0, refused = 0, errors = {}, stop = false }
  w.handle = tide.spawn(function()
    local conn
    while not w.stop do
      if not conn then
        local cerr
        conn, cerr = tide.connect(url)
        if not conn then w.connect_errors = (w.connect_errors or 0) + 1; w.last_connect_error = tostring(cerr) end
      end
      if conn then
        local ok, err = conn:query("INSERT INTO events (account, note) VALUES (1, 'app') RETURNING id")
        if ok then w.committed = w.committed + 1
        else
          -- refused (read-only), or the session ended by the fence (57P01, a lost connection)
          local state = err and err.sqlstate or ""
          if state == "25006" then w.refused = w.refused + 1
          elseif state ~= "57P01" and not state:match("^08") then w.errors[#w.errors + 1] = tostring(err) end
          conn:close(); conn = nil
        end
      end
      tide.sleep(0.02)
    end
    if conn then conn:close() end
  end)
  return w
end

local function playbook(ctx, name, extra)
  return H.playbook(ctx, name, string.format([[
  migrate = { "schema", "full", "incremental" },
  progress = "plain",
  incremental = { release = true, heartbeat_interval = 0.2 },
  stop = tide.when { file_exists = %q },
  %s
]], ctx.tmpdir .. "/" .. name .. ".never", extra or ""))
end

local function streaming(proc, log)
  P.wait_for("the stream", function() return H.read(log):find("incremental: started", 1, true) or proc:exited() end, 60)
  T.ok(not proc:exited(), H.read(log))
end

T.test("cutover under writes: fenced, drained, sequences, verified, downtime printed; the old source refuses writes", function(ctx)
  unfence(ctx)
  P.clean(ctx)
  local src, tgt = P.connect_both(ctx)
  assert(src:exec(SETUP))
  local pb = playbook(ctx, "cut1")
  local proc, log = H.start(ctx, "run " .. pb, "cut1")
  streaming(proc, log)
  local w = writer(ctx.source_url)
  P.wait_for("writes", function() return w.committed >= 20 end, 30)
  -- A session of another database of the source's cluster: the fence is not its business.
  local bystander = assert(tide.connect(ctx.source_admin, { application_name = "bystander" }))
  local cut, cut_log = H.start(ctx, "cutover " .. pb, "cut1-cutover")
  T.eq(cut:wait(), 0, H.read(cut_log) .. H.read(log))
  local alive, gone = bystander:query("SELECT 1 AS one")
  T.ok(alive, "a session of another database survives the fence: " .. tostring(gone and gone.message or gone))
  bystander:close()
  local out = H.read(cut_log)
  T.match(out, "cutover done: write downtime [%d.]+m?s")
  T.match(out, "fence .*, sequences .*, verify .*, hooks ")
  T.eq(proc:wait(), 0, H.read(log))
  -- The writer notices its ended session at its next statement, then reconnects read-only.
  P.wait_for("a write refused", function() return w.refused > 0 or #w.errors > 0 end, 30)
  w.stop = true
  local wok, werr = w.handle:wait()
  T.ok(wok ~= false, "the writer failed: " .. tostring(werr))
  T.eq(w.errors, {}, "the application saw only read-only refusals")
  T.ok(w.refused > 0, "the application's writes were refused after the fence: " .. w.committed .. " committed, " .. w.refused .. " refused, errors " .. table.concat(w.errors, "; ") .. "; connect errors " .. tostring(w.connect_errors) .. " " .. tostring(w.last_connect_error) ..
       "\n" .. (H.read(log):match("[^\n]*fenced on the source[^\n]*") or "?"))
  -- The old source refuses writes; the target holds every row that committed there.
  local fresh = assert(tide.connect(ctx.source_url))
  local _, err = fresh:query("INSERT INTO events (account, note) VALUES (1, 'late')")
  T.eq(err and err.sqlstate, "25006", "a new session on the old source is read-only")
  fresh:close()
  src:close()   -- the fence ended every other session of the source, this one too
  src = assert(tide.connect(ctx.source_url))
  P.same(src, tgt, "events")
  P.same(src, tgt, "accounts")
  local seq = assert(src:query("SELECT last_value AS v FROM events_id_seq"))[1].v
  T.ok(assert(tgt:query("SELECT last_value AS v FROM events_id_seq"))[1].v >= seq, "the target's sequence is past the source's")
  local state = assert(tgt:query("SELECT phase, (info -> 'cutover' ->> 'downtime')::float8 AS downtime FROM pgtide.tasks WHERE task = 'cut1'"))[1]
  T.eq(state.phase, "done")
  T.ok(state.downtime > 0 and state.downtime < 60, "the downtime is recorded: " .. tostring(state.downtime))
  -- Run again: the task is finished, it does not stream from the old source.
  local code, again = H.run("run " .. pb)
  T.eq(code, 0, again)
  T.match(again, "finished")
  T.match(again, "cut over by `pgtide cutover`, write downtime")
  T.match(again, "old source:  still fenced %(read_only on database")
  src:close(); tgt:close()
  unfence(ctx)
end)

T.test("a failing cutover step lifts the fence and the task streams on; the next cutover succeeds", function(ctx)
  unfence(ctx)
  P.clean(ctx)
  local src, tgt = P.connect_both(ctx)
  assert(src:exec(SETUP))
  local pb = playbook(ctx, "cut2", [[
  on = { cutover = (function()
    local calls = 0
    return function(t)
      calls = calls + 1
      if calls == 1 then error("not yet: the application team asked to wait") end
      -- the plan a hook sees is whole (docs/incremental.md), though the stream let most of it go
      local others = 0
      for key in pairs(t.plan.by_key) do if key:sub(1, 6) ~= "table:" then others = others + 1 end end
      local listed = 0
      for field, v in pairs(t.plan) do if field == "objects" then listed = #v end end
      if #t.plan.objects < 4 or others == 0 or #t.plan.post_data == 0 or #t.plan.tables ~= 2 or
         listed ~= #t.plan.objects then
        error(string.format("the hook's plan is not whole: %d objects (%d by pairs), %d not tables, %d post-data " ..
                            "steps, %d tables", #t.plan.objects, listed, others, #t.plan.post_data, #t.plan.tables))
      end
    end
  end)() },
]])
  local proc, log = H.start(ctx, "run " .. pb, "cut2")
  streaming(proc, log)
  local cut, cut_log = H.start(ctx, "cutover " .. pb, "cut2-cutover1")
  T.eq(cut:wait(), 1, H.read(cut_log))
  T.match(H.read(cut_log), "not yet: the application team asked to wait")
  T.match(H.read(cut_log), "the fence was lifted and the task streams on")
  -- The source takes writes again, and they stream.
  local fresh = assert(tide.connect(ctx.source_url))
  assert(fresh:query("INSERT INTO events (account, note) VALUES (7, 'after a failed cutover')"))
  fresh:close()
  P.wait_for("the write after the failed cutover", function()
    return assert(tgt:query("SELECT count(*) AS n FROM events WHERE note = 'after a failed cutover'"))[1].n == 1
  end, 30)
  T.ok(not proc:exited(), "still streaming")
  cut, cut_log = H.start(ctx, "cutover " .. pb, "cut2-cutover2")
  T.eq(cut:wait(), 0, H.read(cut_log))
  T.eq(proc:wait(), 0, H.read(log))
  src:close()   -- ended by the fence
  src = assert(tide.connect(ctx.source_url))
  P.same(src, tgt, "events")
  src:close(); tgt:close()
  unfence(ctx)
end)

T.test("killed while fenced: the next run lifts the fence and streams on", function(ctx)
  unfence(ctx)
  P.clean(ctx)
  local src, tgt = P.connect_both(ctx)
  assert(src:exec(SETUP))
  local slow = ctx.tmpdir .. "/cut3.slow"
  local f = assert(io.open(slow, "w")); f:close()
  local pb = playbook(ctx, "cut3", string.format([[
  on = { cutover = function() while io.open(%q) do tide.sleep(0.1) end end },
]], slow))
  local proc, log = H.start(ctx, "run " .. pb, "cut3")
  streaming(proc, log)
  local cut = H.start(ctx, "cutover " .. pb, "cut3-cutover")
  P.wait_for("the fence", function() return H.read(log):find("writes fenced on the source", 1, true) end, 30)
  proc:kill(9)
  proc:wait()
  cut:wait()
  local fresh = assert(tide.connect(ctx.source_url))
  local _, err = fresh:query("INSERT INTO events (account, note) VALUES (1, 'while fenced')")
  T.eq(err and err.sqlstate, "25006", "the source stays fenced while nothing runs")
  fresh:close()
  os.remove(slow)
  local proc2, log2 = H.start(ctx, "run " .. pb, "cut3-again")
  streaming(proc2, log2)
  -- The stream lifts the fence as it starts (the line may come just after "started").
  P.wait_for("the fence lifted", function()
    return H.read(log2):find("a cutover that did not finish left the source fenced", 1, true) or proc2:exited()
  end, 30)
  T.match(H.read(log2), "a cutover that did not finish left the source fenced")
  fresh = assert(tide.connect(ctx.source_url))
  assert(fresh:query("INSERT INTO events (account, note) VALUES (1, 'lifted')"))
  fresh:close()
  P.wait_for("the write after the lifted fence", function()
    return assert(tgt:query("SELECT count(*) AS n FROM events WHERE note = 'lifted'"))[1].n == 1
  end, 30)
  local c2, c2_log = H.start(ctx, "cutover " .. pb, "cut3-cutover2")
  T.eq(c2:wait(), 0, H.read(c2_log))
  T.eq(proc2:wait(), 0, H.read(log2))
  src:close()   -- ended by the fence
  src = assert(tide.connect(ctx.source_url))
  P.same(src, tgt, "events")
  src:close(); tgt:close()
  unfence(ctx)
end)

T.test("cutover.verify = \"counts\": a row missing on the target stops the cutover and lifts the fence", function(ctx)
  unfence(ctx)
  P.clean(ctx)
  local src, tgt = P.connect_both(ctx)
  assert(src:exec(SETUP))
  local pb = playbook(ctx, "cut4", [[cutover = { verify = "counts" },]])
  local proc, log = H.start(ctx, "run " .. pb, "cut4")
  streaming(proc, log)
  local gone = assert(tgt:query("DELETE FROM events WHERE id = 7 RETURNING account, note"))[1]
  local cut, cut_log = H.start(ctx, "cutover " .. pb, "cut4-cutover1")
  T.eq(cut:wait(), 1, H.read(cut_log))
  T.match(H.read(cut_log), "the row counts differ %(source vs target%): public.events 500 vs 499")
  T.match(H.read(cut_log), "the fence was lifted and the task streams on")
  local fresh = assert(tide.connect(ctx.source_url))
  assert(fresh:query("INSERT INTO events (account, note) VALUES (8, 'after the failed count')"))
  fresh:close()
  P.wait_for("the write after the failed cutover", function()
    return assert(tgt:query("SELECT count(*) AS n FROM events WHERE note = 'after the failed count'"))[1].n == 1
  end, 30)
  assert(tgt:query("INSERT INTO events (id, account, note) VALUES (7, $1, $2)", gone.account, gone.note))
  cut, cut_log = H.start(ctx, "cutover " .. pb, "cut4-cutover2")
  T.eq(cut:wait(), 0, H.read(cut_log))
  T.match(H.read(cut_log), "verify [%d.]+m?s")
  T.eq(proc:wait(), 0, H.read(log))
  src:close()   -- ended by the fence
  src = assert(tide.connect(ctx.source_url))
  P.same(src, tgt, "events")
  src:close(); tgt:close()
  unfence(ctx)
end)
