-- Streaming (START_REPLICATION ... streaming 'on'): a transaction larger than the walsender's
-- logical_decoding_work_mem arrives in blocks while it is still running; pgtide spools it and
-- applies it whole at its commit, with what its rolled-back savepoints undid left out, while
-- ordinary transactions committed meanwhile go on being applied. An aborted streamed
-- transaction leaves no trace. With incremental.streaming = false the source spills instead.
local T = require "testlib"
local P = require "pg"
local cdc = require "tide.cdc"
local H = dofile("tests/integration/cdc_lib.lua")

local DDL = [[
DROP TABLE IF EXISTS big, small, fullid;
CREATE TABLE big (id int PRIMARY KEY, pad text);
CREATE TABLE small (id int PRIMARY KEY, v text);
CREATE TABLE fullid (a int, b text);
ALTER TABLE fullid REPLICA IDENTITY FULL;
]]

local function slot_stats(src, task)
  return assert(src:query("SELECT stream_txns, spill_txns FROM pg_stat_replication_slots WHERE slot_name = $1",
                          cdc.names(task).slot))[1] or { stream_txns = 0, spill_txns = 0 }
end

local function count(conn, sql)
  return assert(conn:query(sql))[1].n
end

T.test("a streamed transaction is applied whole at its commit; ordinary ones go on meanwhile", function(ctx)
  P.both(ctx, DDL)
  local src = P.connect(ctx.source_url)
  local tgt = P.connect(ctx.target_url)
  assert(src:exec("INSERT INTO big SELECT g, 'initial' FROM generate_series(1, 100) g"))
  assert(src:exec("INSERT INTO fullid SELECT g % 10, 'dup' FROM generate_series(1, 50) g"))
  local ref = {}
  local task = H.task(ctx, "streaming", { stop = H.stop_at(ref), incremental = { decoding_work_mem = "64kB" } })
  local plan = H.plan(src)
  H.setup(ctx, task, plan)
  local run = require("tide.taskrun").new(task)
  local h = H.stream(ctx, run, plan)
  P.wait_for("the stream to run", function() local st = run:stream_status() return st and st.state end)

  -- A long transaction, well over 64 kB before its commit, with a savepoint rolled back.
  local long = P.connect(ctx.source_url)
  assert(long:exec("BEGIN"))
  assert(long:exec("INSERT INTO big SELECT g, repeat('p', 200) FROM generate_series(1000, 6000) g"))
  assert(long:exec("SAVEPOINT s1"))
  assert(long:exec("INSERT INTO big SELECT g, repeat('r', 200) FROM generate_series(100000, 103000) g"))
  assert(long:exec("UPDATE big SET pad = 'undone' WHERE id <= 100"))
  assert(long:exec("ROLLBACK TO SAVEPOINT s1"))
  assert(long:exec("SAVEPOINT s2"))
  assert(long:exec("UPDATE big SET pad = 'kept' WHERE id % 10 = 0"))
  assert(long:exec("RELEASE SAVEPOINT s2"))
  assert(long:exec("DELETE FROM fullid WHERE a = 3"))
  assert(long:exec("INSERT INTO big SELECT g, repeat('q', 200) FROM generate_series(7000, 9000) g"))

  -- While it runs: it is being spooled, nothing of it is on the target, ordinary commits flow.
  P.wait_for("blocks of the open transaction", function()
    local st = run:stream_status()
    return st and st.streams_open >= 1 and st.spooled_bytes > 64 * 1024
  end)
  assert(src:exec("INSERT INTO small SELECT g, 'meanwhile' FROM generate_series(1, 20) g"))
  local mark = P.lsn(src, true)
  P.wait_for("the ordinary transaction", function()
    local st = run:stream_status()
    return st and st.applied >= require("tide.when").lsn_number(mark)
  end)
  T.eq(count(tgt, "SELECT count(*) AS n FROM small"), 20, "an ordinary transaction is applied while the big one runs")
  T.eq(count(tgt, "SELECT count(*) AS n FROM big WHERE id >= 1000"), 0, "nothing of the open transaction is applied")

  assert(long:exec("UPDATE small SET v = 'by the long one' WHERE id = 1"))
  assert(long:exec("COMMIT"))

  -- A second large transaction that streams, then aborts.
  assert(long:exec("BEGIN"))
  assert(long:exec("INSERT INTO big SELECT g, repeat('x', 200) FROM generate_series(200000, 205000) g"))
  assert(long:exec("DELETE FROM big WHERE id < 50"))
  P.wait_for("the second transaction to stream", function()
    local st = run:stream_status()
    return st and st.streams_open >= 1
  end)
  assert(long:exec("ROLLBACK"))
  assert(src:exec("INSERT INTO small VALUES (21, 'after')"))
  ref.lsn = P.lsn(src, true)
  local summary = assert(h:wait())
  T.eq(summary.stopped_by, "condition")
  for _, name in ipairs({ "big", "small", "fullid" }) do P.same(src, tgt, name) end
  T.eq(count(tgt, "SELECT count(*) AS n FROM big WHERE id >= 100000"), 0, "the rolled-back savepoint left nothing")
  -- ids divisible by 10 among 1..100 and 1000..6000 when the update ran
  T.eq(count(tgt, "SELECT count(*) AS n FROM big WHERE pad = 'kept'"), 10 + 501, "the released savepoint's update is there")
  local st = summary.status
  T.ok(st.streamed_transactions >= 1, "a streamed transaction was applied: " .. tostring(st.streamed_transactions))
  T.ok(st.streamed_aborts >= 1, "a streamed transaction was dropped at its abort: " .. tostring(st.streamed_aborts))
  T.ok(st.streamed_subtransaction_aborts >= 1, "a rolled-back savepoint was cut from the spool")
  T.eq(st.streams_open, 0, "nothing left open")
  T.eq(st.spooled_bytes, 0, "nothing left on disk")
  T.ok(slot_stats(src, task).stream_txns >= 2, "the source streamed both transactions")
  H.release(ctx, task)
  long:close(); src:close(); tgt:close()
end)

T.test("incremental.streaming = false: the source spills the large transaction instead", function(ctx)
  P.both(ctx, DDL)
  local src = P.connect(ctx.source_url)
  local tgt = P.connect(ctx.target_url)
  local ref = {}
  local task = H.task(ctx, "nostream", { stop = H.stop_at(ref),
                                         incremental = { decoding_work_mem = "64kB", streaming = false } })
  local plan = H.plan(src)
  H.setup(ctx, task, plan)
  local h = H.stream(ctx, task, plan)
  assert(src:exec("BEGIN; INSERT INTO big SELECT g, repeat('p', 200) FROM generate_series(1, 5000) g; COMMIT"))
  ref.lsn = P.lsn(src, true)
  local summary = assert(h:wait())
  P.same(src, tgt, "big")
  local ss = slot_stats(src, task)
  T.ok(ss.spill_txns >= 1 and ss.stream_txns == 0, "spilled, not streamed: " .. ss.spill_txns .. "/" .. ss.stream_txns)
  T.eq(summary.status.streamed_transactions, 0)
  H.release(ctx, task)
  src:close(); tgt:close()
end)

T.test("a spool directory that cannot be written is refused before streaming, naming the fix", function(ctx)
  P.both(ctx, DDL)
  local src = P.connect(ctx.source_url)
  local task = H.task(ctx, "badspool", { incremental = { spool_dir = "/nonexistent/pgtide-spool" } })
  local plan = H.plan(src)
  H.setup(ctx, task, plan)
  local h = H.stream(ctx, task, plan)
  local ok, err = pcall(h.wait, h)
  T.ok(not ok, "the stream did not start")
  local msg = tostring(type(err) == "table" and (err.message or err.err and err.err.message) or err)
  T.ok(msg:find("/nonexistent/pgtide-spool", 1, true) and msg:find("streaming = false", 1, true), msg)
  H.release(ctx, task)
  src:close()
end)
