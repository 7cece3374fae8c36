-- tide.full.streams — how many COPY streams a full load runs side by side (full.jobs), and,
-- with full.jobs = "auto" (the default), the controller that looks for the count giving the
-- most throughput while the load runs.
--
--   streams.facts(source, target) → what the servers and this host report (facts_sql below)
--   streams.sizing(task, facts)   → { auto, start, min, max, split, why }
--   streams.controller({ start, min, max [, window, gain, hold] } [, overrides]) → ctl
--     ctl:sample(now, bytes, steady [, left]) → nil, or a decision { from, to, rate_from, rate_to, why }
--   streams.run(load, ctl, on_change)  the coroutine that feeds ctl from a running load
--
-- Why measure at all: how many streams pay depends on where the cores are. On two cores with
-- both servers on the same host four streams were slower than two on every shape measured
-- (docs/performance.md); a remote target on a large machine takes many more. The servers'
-- settings say little about their cores, so the start comes from facts (this host's CPUs when
-- a server runs here) and the count then moves by one stream at a time, kept only when the
-- COPY throughput over a window grows by more than `gain` (5 %).
--
-- A job only starts or stops between parts (the copy jobs wait in Load:next_part while more
-- parts are copying than the current count): nothing about the parts, their state or resume
-- depends on the count.
local M = {}

local MAX_STREAMS = 16

------------------------------------------------------------------------ the starting point

local FACTS_SQL = [[
SELECT pg_catalog.current_setting('max_worker_processes', true)::int AS max_worker_processes,
       pg_catalog.current_setting('max_parallel_workers', true)::int AS max_parallel_workers,
       coalesce(pg_catalog.inet_server_addr() <<= '127.0.0.0/8'::inet
                OR pg_catalog.inet_server_addr() = '::1'::inet, true) AS on_this_host]]

-- A server reached over a unix socket (inet_server_addr() is NULL) or a loopback address runs
-- on this host and shares its cores with pgtide and with the other server.
function M.facts(source, target)
  local facts = { cpus = require("tide.core").cpu_count() }
  for side, conn in pairs({ source = source, target = target }) do
    local rows = conn:query(FACTS_SQL)
    facts[side] = rows and rows[1] or {}
  end
  return facts
end

local function clamp(v, lo, hi) return math.max(lo, math.min(hi, v)) end

-- The playbook's choice as numbers. A fixed full.jobs is taken as it is. With "auto":
--   * a server on this host: start at half this host's CPUs (at least 2), try up to twice
--     them (both servers and pgtide share the cores: on 2 CPUs, 2 streams);
--   * both servers elsewhere: start at 4 (the old fixed default), try up to the smaller
--     max_parallel_workers of the two (the most parallel work their operators planned for),
--     at least 4;
--   * never more than 16, nor more than the smaller max_worker_processes' worth of backends
--     would suggest the servers expect (a hint only: it caps, it never raises).
-- `split` is the count tables are cut for (tide.full.parts): the most the load may run, so
-- that a large table has a part for every stream.
function M.sizing(task, facts)
  local jobs = task.full.jobs
  if math.type(jobs) == "integer" then
    return { auto = false, start = jobs, min = jobs, max = jobs, split = jobs, why = "full.jobs = " .. jobs }
  end
  facts = facts or {}
  local src, tgt = facts.source or {}, facts.target or {}
  local function smaller(key)
    local a, b = tonumber(src[key]), tonumber(tgt[key])
    if a and b then return math.min(a, b) end
    return a or b
  end
  local cpus = math.max(1, facts.cpus or 1)
  local here = {}
  if src.on_this_host then here[#here + 1] = "the source" end
  if tgt.on_this_host then here[#here + 1] = "the target" end
  local start, max, why
  if #here > 0 then
    max = math.max(2, 2 * cpus)
    start = math.max(2, (cpus + 1) // 2)
    why = string.format("%s on this host, %d CPU(s) here", table.concat(here, " and "), cpus)
  else
    max = math.max(4, smaller("max_parallel_workers") or 8)
    start = 4
    why = "both servers elsewhere"
  end
  local workers = smaller("max_worker_processes")
  if workers and workers > 0 then max = math.min(max, math.max(2, workers)) end
  max = clamp(max, 1, MAX_STREAMS)
  start = clamp(start, 1, max)
  return { auto = true, start = start, min = 1, max = max, split = max, why = why }
end

------------------------------------------------------------------------ the controller

-- Hill climbing on the COPY throughput, one stream at a time:
--   first window at the start count → add a stream;
--   after a window at one more stream: more than `gain` faster → keep it and add another
--   (up to max); else → back to the count before, and hold;
--   after `hold` windows held: measure again where it is, try one more, and if that does not
--   pay, one fewer (kept when it is no slower: the cores it frees serve the index builds
--   that run beside the copies); then hold again;
--   no step to try while the work left would take fewer than `runway` (4) windows.
-- A window only counts while the load is steady (every stream asked for copying; not paused,
-- throttled or capped by a critical index build): otherwise it starts over, so a stream told
-- to stop is measured only once its part is done.
local Controller = {}
Controller.__index = Controller

function M.controller(o, overrides)
  if overrides then
    local merged = {}
    for k, v in pairs(o) do merged[k] = v end
    for k, v in pairs(overrides) do merged[k] = v end
    o = merged
  end
  assert(o.start and o.min and o.max and o.min <= o.start and o.start <= o.max, "streams.controller: min <= start <= max")
  return setmetatable({
    n = o.start, min = o.min, max = o.max,
    window = o.window or 1.0, gain = o.gain or 0.05, hold = o.hold or 8, runway = o.runway or 4,
    phase = "first", rates = {}, best_n = nil, best_rate = nil, held = 0, tried_down = false,
    window_start = nil, window_bytes = nil,
  }, Controller)
end

local function mbps(rate) return string.format("%.1f MB/s", rate / 1e6) end

function Controller:move(to, why)
  local from = self.n
  self.n = to
  self.window_start = nil
  return { from = from, to = to, rate_from = self.rates[from], rate_to = self.rates[to], why = why }
end

function Controller:settle()
  self.phase, self.held = "hold", 0
  return nil
end

-- Try one stream more than the best count, or, when asked, one fewer.
function Controller:probe(down)
  -- A probe costs a window at a count that may be worse, and pays only over the windows
  -- after it: not worth it when the work left would be done in fewer than `runway` windows
  -- (a small load, or the end of a large one).
  if self.left and self.best_rate > 0 and self.left / self.best_rate < self.runway * self.window then return nil end
  if not down and self.best_n < self.max then
    self.phase = "up"
    return self:move(self.best_n + 1, string.format("%s at %d; trying %d", mbps(self.best_rate), self.best_n,
                                                    self.best_n + 1))
  end
  if down and self.best_n > self.min then
    self.phase, self.tried_down = "down", true
    return self:move(self.best_n - 1, string.format("%s at %d; trying %d", mbps(self.best_rate), self.best_n,
                                                    self.best_n - 1))
  end
end

-- A window at self.n ended with `rate` bytes/s: what to do next.
function Controller:judge(rate)
  local n = self.n
  self.rates[n] = rate
  if self.phase == "first" or (self.phase == "hold" and self.held + 1 >= self.hold) then
    local again = self.phase == "hold"
    self.best_n, self.best_rate, self.tried_down = n, rate, false
    return self:probe(false) or (again and self:probe(true)) or self:settle()
  elseif self.phase == "hold" then
    self.held = self.held + 1
    return nil
  elseif self.phase == "up" then
    local gain = rate / math.max(self.best_rate, 1) - 1
    if rate > self.best_rate * (1 + self.gain) then
      local before = self.best_n
      self.best_n, self.best_rate = n, rate
      local d = self:probe(false)
      if d then
        d.why = string.format("%s at %d against %s at %d (%+.0f %%); trying %d", mbps(rate), n,
                              mbps(self.rates[before]), before, gain * 100, n + 1)
        return d
      end
      return self:settle()
    end
    local back = self:move(self.best_n, string.format("%s at %d against %s at %d (%+.0f %%): one more stream did not pay",
                                                      mbps(rate), n, mbps(self.best_rate), self.best_n, gain * 100))
    -- A re-measure that finds one more stream not paying looks at one fewer next.
    if self.revisit and not self.tried_down and self.best_n > self.min then
      self.phase = "back"
    else
      self:settle()
    end
    return back
  elseif self.phase == "back" then
    -- Back at the best count after a failed step up in a re-measure: now try one fewer.
    self.best_rate = rate
    return self:probe(true) or self:settle()
  elseif self.phase == "down" then
    local change = rate / math.max(self.best_rate, 1) - 1
    if rate >= self.best_rate then
      self.best_n, self.best_rate = n, rate
      self:settle()
      return nil
    end
    local back = self:move(self.best_n, string.format("%s at %d against %s at %d (%+.0f %%): one fewer stream was slower",
                                                      mbps(rate), n, mbps(self.best_rate), self.best_n, change * 100))
    self:settle()
    return back
  end
end

-- One sample: the load's bytes copied so far at time `now` (seconds), whether it was steady
-- since the last sample, and (when known) about how many bytes are left to copy.
function Controller:sample(now, bytes, steady, left)
  self.left = left
  if not steady then
    self.window_start = nil
    return nil
  end
  if not self.window_start then
    self.window_start, self.window_bytes = now, bytes
    return nil
  end
  local elapsed = now - self.window_start
  if elapsed < self.window then return nil end
  local rate = (bytes - self.window_bytes) / elapsed
  self.window_start, self.window_bytes = now, bytes
  if self.phase == "hold" and self.held + 1 >= self.hold then self.revisit = true end
  return self:judge(rate)
end

------------------------------------------------------------------------ on a running load

local SAMPLE_EVERY = 0.25

-- Feed the controller from the load until no part is left to start (a change then would not
-- start or stop anything); on_change(n) runs for every new count, after load.jobs is set.
function M.run(load, ctl, on_change)
  local tide = require "tide.core"
  local every = math.min(SAMPLE_EVERY, ctl.window / 4)
  while not load.failed and not load.copies_finished and load.queue[load.next_index] do
    tide.sleep(every)
    local _, bytes = load:totals()
    local steady = not load.paused and next(load.pump_limits or {}) == nil and load.copying == ctl.n
    -- What is left, from the tables' sizes (a resumed load counts only this run's bytes:
    -- then it seems less, and the controller probes less).
    local left = math.max(0, (load.total_bytes or 0) - bytes)
    local d = ctl:sample(tide.monotonic(), bytes, steady, left)
    if d and not load.failed and load.queue[load.next_index] then
      load.jobs = d.to
      load.stats.streams = d.to
      if load.opts.progress then load.opts.progress:streams(d) end
      on_change(d.to)
      load.changed:notify()
    end
  end
end

return M
