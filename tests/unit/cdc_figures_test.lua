-- tide.cdc.figures: the delay and lag figures of a change stream (docs/incremental.md, "Delay"
-- and the status table of "The stop condition"), computed from the stream's counters and the
-- source positions the heartbeat probe reads.
local T = require "testlib"
local figures = require "tide.cdc.figures"

local lsn = figures.lsn_number

-- The C stream's counters (stream:stats()), with defaults for what a case does not set.
local function stats(s)
  local out = { received = 0, applied = 0, changes = 0, transactions = 0, merged_changes = 0,
                batched_inserts = 0, skipped_transactions = 0, heartbeats = 0, groups = 0,
                state = "streaming", conflicts = {} }
  for k, v in pairs(s or {}) do out[k] = v end
  return out
end

T.test("LSN text and number convert both ways", function()
  T.eq(lsn("0/0"), 0)
  T.eq(lsn("0/3000060"), 0x3000060)
  T.eq(lsn("16/B374D848"), (0x16 << 32) | 0xB374D848)
  T.eq(lsn("16/b374d848"), lsn("16/B374D848"), "hex digits in either case")
  T.eq(figures.lsn_text((0x16 << 32) | 0xB374D848), "16/B374D848")
  T.eq(figures.lsn_text(0), "0/0")
  T.eq(figures.lsn_text(lsn("0/3000060")), "0/3000060")
  for _, bad in ipairs({ "3000060", "0/", "x/1", "", 42 }) do
    T.eq(lsn(bad), nil, "not an LSN: " .. tostring(bad))
  end
  T.eq(lsn(nil), nil)
end)

T.test("an idle, caught-up stream shows no delay and nothing behind", function()
  local f = figures.new(1, 100)
  f:probe("0/5000", 100)
  local st = f:status(stats { received = lsn("0/5000"), applied = lsn("0/5000"), idle = true }, 103)
  T.eq(st.delay, 0)
  T.eq(st.apply_delay, 0)
  T.eq(st.source_delay, 0)
  T.eq(st.bytes_behind, 0)
  T.eq(st.not_delayed, true)
  T.eq(st.elapsed, 3)
  T.eq(st.now, 103)
  T.eq(st.delay_bound, 1)
  T.eq(st.source_lsn, "0/5000")
end)

T.test("apply delay: now minus the commit time of the oldest transaction not yet applied", function()
  local f = figures.new(1, 0)
  local st = f:status(stats { received = 200, applied = 100, pending_since = 1000 }, 1600)
  T.eq(st.apply_delay, 600)
  T.eq(st.delay, 600, "ten minutes behind shows ten minutes")
  T.eq(st.not_delayed, false)
  -- A source clock ahead of ours never makes a negative delay.
  st = f:status(stats { received = 200, applied = 100, pending_since = 1700 }, 1600)
  T.eq(st.apply_delay, 0)
end)

T.test("source delay: now minus the time of the oldest probe the stream has not reached", function()
  local f = figures.new(1, 0)
  f:probe("0/1000", 100)
  f:probe("0/2000", 101)
  f:probe("0/3000", 102)
  local st = f:status(stats { received = lsn("0/800"), applied = lsn("0/800") }, 110)
  T.eq(st.source_delay, 10, "the probe at 100 is not reached")
  T.eq(st.delay, 10)
  st = f:status(stats { received = lsn("0/1000"), applied = lsn("0/1000") }, 110)
  T.eq(st.source_delay, 9, "a probe's position reached exactly counts as reached")
  st = f:status(stats { received = lsn("0/2FFF"), applied = lsn("0/2FFF") }, 110)
  T.eq(st.source_delay, 8)
  st = f:status(stats { received = lsn("0/3000"), applied = lsn("0/3000") }, 110)
  T.eq(st.source_delay, 0, "every probe reached")
  T.eq(st.delay, 0)
end)

T.test("delay is the larger of the two halves", function()
  local f = figures.new(1, 0)
  f:probe("0/1000", 50)
  local st = f:status(stats { received = lsn("0/800"), applied = lsn("0/700"), pending_since = 40 }, 60)
  T.eq(st.apply_delay, 20)
  T.eq(st.source_delay, 10)
  T.eq(st.delay, 20)
  f = figures.new(1, 0)
  f:probe("0/1000", 30)
  st = f:status(stats { received = lsn("0/800"), applied = lsn("0/700"), pending_since = 55 }, 60)
  T.eq(st.apply_delay, 5)
  T.eq(st.source_delay, 30)
  T.eq(st.delay, 30)
end)

T.test("bytes behind: source position - received, plus received - applied", function()
  local f = figures.new(1, 0)
  f:probe("0/3000", 10)
  local st = f:status(stats { received = lsn("0/2000"), applied = lsn("0/1800") }, 11)
  T.eq(st.received_behind, 0x1000)
  T.eq(st.applied_behind, 0x800)
  T.eq(st.bytes_behind, 0x1800)
  T.eq(st.source_lsn, "0/3000", "the latest probe")
  f:probe("0/4000", 12)
  st = f:status(stats { received = lsn("0/2000"), applied = lsn("0/1800") }, 12)
  T.eq(st.source_lsn, "0/4000")
  T.eq(st.received_behind, 0x2000)
end)

T.test("before any probe the source position is what was received", function()
  local f = figures.new(1, 0)
  local st = f:status(stats { received = lsn("0/2000"), applied = lsn("0/1000") }, 1)
  T.eq(st.source_lsn, "0/2000")
  T.eq(st.received_behind, 0)
  T.eq(st.applied_behind, 0x1000)
end)

T.test("before the first message, received is where the stream started (applied)", function()
  local f = figures.new(1, 0)
  f:probe("0/5000", 1)
  local st = f:status(stats { received = 0, applied = lsn("0/5000") }, 2)
  T.eq(st.received, lsn("0/5000"))
  T.eq(st.applied_behind, 0)
  T.eq(st.received_behind, 0)
  T.eq(st.source_delay, 0, "the probe is at the start position: reached")
end)

T.test("an idle stream owes nothing on either side", function()
  -- Idle: nothing waits to be applied, and the source has nothing newer than the last probe
  -- reached (WAL written by others, the probe's own heartbeat).
  local f = figures.new(1, 0)
  f:probe("0/2000", 5)
  local st = f:status(stats { received = lsn("0/2000"), applied = lsn("0/1000"), idle = true }, 6)
  T.eq(st.applied_behind, 0)
  T.eq(st.received_behind, 0)
  T.eq(st.bytes_behind, 0)
  -- Idle, but a probe ahead of what was received: the source half still counts.
  f:probe("0/3000", 7)
  st = f:status(stats { received = lsn("0/2000"), applied = lsn("0/2000"), idle = true }, 9)
  T.eq(st.received_behind, 0x1000)
  T.eq(st.source_delay, 2)
end)

T.test("not delayed means delay under delay_bound; caught_up_for counts how long", function()
  local f = figures.new(2, 0)
  local function at(now, pending_since)
    return f:status(stats { received = 10, applied = 5, pending_since = pending_since }, now)
  end
  local st = at(10, 9)        -- delay 1
  T.eq(st.not_delayed, true)
  T.eq(st.caught_up_for, 0)
  st = at(13, 12)
  T.eq(st.caught_up_for, 3)
  st = at(14, 12)             -- delay exactly 2: not under the bound
  T.eq(st.not_delayed, false)
  T.eq(st.caught_up_for, 0)
  st = at(15, 14.5)
  T.eq(st.not_delayed, true)
  T.eq(st.caught_up_for, 0, "counting starts again")
  st = at(20, 19)
  T.eq(st.caught_up_for, 5)
end)

T.test("rates are over the last 5 seconds", function()
  local f = figures.new(1, 0)
  local function at(now, changes, transactions)
    return f:status(stats { changes = changes, transactions = transactions }, now)
  end
  local st = at(0, 0, 0)
  T.eq(st.changes_per_second, 0, "one sample: no rate yet")
  T.eq(st.transactions_per_second, 0)
  at(1, 100, 10)
  st = at(2, 300, 20)
  T.eq(st.changes_per_second, 150)
  T.eq(st.transactions_per_second, 10)
  at(3, 400, 30)
  at(4, 500, 40)
  -- Nothing more for 16 s: the rate falls to 0 instead of averaging over all 20 s.
  st = at(20, 500, 40)
  T.eq(st.changes_per_second, 0)
  T.eq(st.transactions_per_second, 0)
end)

T.test("the status carries the stream's counters and the caller's extra fields", function()
  local f = figures.new(1, 0)
  local st = f:status(stats {
    received = 0x20, applied = 0x10, received_lsn = "0/20", applied_lsn = "0/10", durable_lsn = "0/8",
    flushed_lsn = "0/10", changes = 7, transactions = 3, merged_changes = 2, batched_inserts = 1,
    skipped_transactions = 4, heartbeats = 5, groups = 6, applied_commit_time = 1234.5,
    streamed_transactions = 8, spooled_bytes = 4096, state = "streaming",
  }, 1, { paused = true, reconnects = 2 })
  T.eq(st.applied_lsn, "0/10")
  T.eq(st.received_lsn, "0/20")
  T.eq(st.durable_lsn, "0/8")
  T.eq(st.flushed_lsn, "0/10")
  T.eq(st.applied, 0x10)
  T.eq(st.changes, 7)
  T.eq(st.transactions, 3)
  T.eq(st.merged_changes, 2)
  T.eq(st.batched_inserts, 1)
  T.eq(st.skipped_transactions, 4)
  T.eq(st.heartbeats, 5)
  T.eq(st.groups, 6)
  T.eq(st.last_commit_time, 1234.5)
  T.eq(st.streamed_transactions, 8)
  T.eq(st.streamed_aborts, 0, "counters an older stream lacks read 0")
  T.eq(st.streams_open, 0)
  T.eq(st.spooled_bytes, 4096)
  T.eq(st.spool_peak_bytes, 0)
  T.eq(st.state, "streaming")
  T.eq(st.paused, true)
  T.eq(st.reconnects, 2)
end)

T.test("falling behind again after catching up shows at the first probe not reached", function()
  local f = figures.new(1, 0)
  -- 30 s of probes, every one reached: the queue of waiting probes empties.
  for i = 1, 30 do
    f:probe(figures.lsn_text(i * 0x100), i)
    f:status(stats { received = i * 0x100, applied = i * 0x100 }, i)
  end
  -- Then the stream stalls: the probes from 31 on are not reached.
  for i = 31, 40 do f:probe(figures.lsn_text(i * 0x100), i) end
  local st = f:status(stats { received = 30 * 0x100, applied = 30 * 0x100 }, 41)
  T.eq(st.source_delay, 10, "the oldest probe not reached is the one at 31 s")
  T.eq(st.received_behind, 10 * 0x100)
end)

T.test("a probe that is not an LSN is ignored", function()
  local f = figures.new(1, 0)
  f:probe("0/1000", 1)
  f:probe(nil, 2)
  f:probe("garbage", 3)
  local st = f:status(stats { received = lsn("0/800"), applied = lsn("0/800") }, 10)
  T.eq(st.source_lsn, "0/1000")
  T.eq(st.source_delay, 9)
end)

T.test("the progress line", function()
  local f = figures.new(1, 0)
  f:probe("0/3000", 0)
  local st = f:status(stats { received = lsn("0/3000"), applied = lsn("0/3000"), applied_lsn = "0/3000",
                              transactions = 12, changes = 345 }, 1)
  local line = figures.line(st)
  T.match(line, "^incremental: applied 0/3000, delay 0%.000 s %(not delayed%), ")
  T.match(line, "12 transactions, 345 changes$")
  st.paused, st.delay, st.not_delayed = true, 12.5, false
  line = figures.line(st)
  T.match(line, "delay 12%.500 s %(delayed%)")
  T.match(line, " %(paused%)$")
end)
