-- tide.cdc.figures — the delay and lag figures of a change stream, from the C stream's
-- counters (stream:stats()) and the source positions the heartbeat probe reads every second.
--
-- Delay (seconds) is the larger of two halves:
--   apply   now − commit time of the oldest source transaction received but not yet committed
--           on the target (0 when nothing waits): what the target side owes;
--   source  now − the time of the oldest probe whose WAL position the stream has not reached
--           yet: what the source side (decoding, network) owes.
-- So an idle, caught-up stream shows 0, and a stream ten minutes behind shows ten minutes,
-- whichever side is slow. Commit times are the source's clock: keep the clocks in sync (NTP).
-- Bytes behind: source WAL position (latest probe) − received (the source half), and received −
-- applied (the target half).
local M = {}

local Figures = {}
Figures.__index = Figures

function M.new(bound, now)
  return setmetatable({ bound = bound, started = now, samples = {}, probes = {}, head = 1, tail = 0 }, Figures)
end

local function lsn_number(s)
  if type(s) ~= "string" then return nil end
  local hi, lo = s:match("^(%x+)/(%x+)$")
  if not hi then return nil end
  return tonumber(hi, 16) << 32 | tonumber(lo, 16)
end
M.lsn_number = lsn_number

function M.lsn_text(n)
  return string.format("%X/%X", n >> 32, n & 0xffffffff)
end

-- A source position read at engine time `t` (seconds).
function Figures:probe(lsn_text, t)
  local lsn = lsn_number(lsn_text)
  if not lsn then return end
  self.source_lsn = lsn
  local p = self.probes
  -- An explicit tail: once the oldest probes are dropped, #p may be 0 (a border) and a new
  -- probe would land below head, out of sight.
  self.tail = self.tail + 1
  p[self.tail] = { lsn = lsn, time = t }
  if self.tail - self.head > 4000 then self.head = self.head + 1; p[self.head - 1] = nil end
end

-- The oldest probe the stream has not received yet (dropping those it has).
function Figures:oldest_unreceived(received)
  local p = self.probes
  while p[self.head] and p[self.head].lsn <= received do
    p[self.head] = nil
    self.head = self.head + 1
  end
  if self.head > 64 and not p[self.head] then self.probes, self.head, self.tail = {}, 1, 0 end
  return self.probes[self.head]
end

function Figures:rate(now, stats)
  local s = self.samples
  s[#s + 1] = { t = now, changes = stats.changes, transactions = stats.transactions }
  while #s > 2 and now - s[1].t > 5 do table.remove(s, 1) end
  local first, last = s[1], s[#s]
  local dt = last.t - first.t
  if dt <= 0 then return 0, 0 end
  return (last.changes - first.changes) / dt, (last.transactions - first.transactions) / dt
end

-- The status table the stop condition, on.progress and `pgtide status` see.
function Figures:status(stats, now, extra)
  -- Before the first message, what was received is where the stream started.
  local received = math.max(stats.received, stats.applied)
  local apply_delay = stats.pending_since and math.max(0, now - stats.pending_since) or 0
  local oldest = self:oldest_unreceived(received)
  local source_delay = oldest and math.max(0, now - oldest.time) or 0
  local delay = math.max(apply_delay, source_delay)
  local source_lsn = self.source_lsn or received
  local received_behind = math.max(0, source_lsn - received)
  if stats.idle and not oldest then received_behind = 0 end
  local applied_behind = stats.idle and 0 or math.max(0, received - stats.applied)
  local not_delayed = delay < self.bound
  if not_delayed then self.caught_up_since = self.caught_up_since or now else self.caught_up_since = nil end
  local cps, tps = self:rate(now, stats)
  local st = {
    now = now, elapsed = now - self.started, state = stats.state,
    delay = delay, apply_delay = apply_delay, source_delay = source_delay,
    not_delayed = not_delayed, delay_bound = self.bound,
    caught_up_for = self.caught_up_since and (now - self.caught_up_since) or 0,
    bytes_behind = received_behind + applied_behind,
    received_behind = received_behind, applied_behind = applied_behind,
    source_lsn = M.lsn_text(source_lsn), received_lsn = stats.received_lsn, applied_lsn = stats.applied_lsn,
    durable_lsn = stats.durable_lsn, flushed_lsn = stats.flushed_lsn,
    applied = stats.applied, received = received,
    changes = stats.changes, transactions = stats.transactions, merged_changes = stats.merged_changes,
    batched_inserts = stats.batched_inserts, batched_updates = stats.batched_updates,
    changes_per_second = cps, transactions_per_second = tps,
    skipped_transactions = stats.skipped_transactions, heartbeats = stats.heartbeats,
    conflicts = stats.conflicts, groups = stats.groups, apply_sessions = stats.apply_sessions or 0,
    last_commit_time = stats.applied_commit_time,
    streamed_transactions = stats.streamed_transactions or 0, streamed_aborts = stats.streamed_aborts or 0,
    streamed_subtransaction_aborts = stats.streamed_subtransaction_aborts or 0,
    streams_open = stats.streams_open or 0, spooled_bytes = stats.spooled_bytes or 0,
    spool_peak_bytes = stats.spool_peak_bytes or 0,
    lanes = stats.lanes,   -- parallel apply: connections, transactions per lane, serial points, waits
  }
  for k, v in pairs(extra or {}) do st[k] = v end
  return st
end

local human_bytes = require("tide.units").human_bytes
M.human_bytes = human_bytes

-- One line for a log or a terminal.
function M.line(st)
  return string.format("incremental: applied %s, delay %.3f s (%s), %s behind, %.0f tx/s, %.0f changes/s, " ..
    "%d transactions, %d changes%s", st.applied_lsn or "?", st.delay, st.not_delayed and "not delayed" or "delayed",
    human_bytes(st.bytes_behind), st.transactions_per_second, st.changes_per_second, st.transactions, st.changes,
    st.paused and " (paused)" or "")
end

return M
