-- tide.full.streams: where full.jobs = "auto" starts, and the controller that moves the count
-- of COPY streams, fed with synthetic throughput (bytes/s as a function of the count).
local T = require "testlib"
local streams = require "tide.full.streams"

local MB = 1e6

-- Run a controller for `seconds` of simulated time, sampling every 0.25 s; rate_of(n, t) is
-- the load's throughput with n streams at time t. → the decisions, the controller.
local function simulate(ctl, seconds, rate_of, steady_of)
  local decisions, bytes = {}, 0
  local t = 0
  while t < seconds do
    t = t + 0.25
    bytes = bytes + rate_of(ctl.n, t) * 0.25
    local d = ctl:sample(t, bytes, steady_of == nil or steady_of(t))
    if d then decisions[#decisions + 1] = d end
  end
  return decisions, ctl
end

local function moves(decisions)
  local out = {}
  for _, d in ipairs(decisions) do out[#out + 1] = d.from .. "->" .. d.to end
  return table.concat(out, " ")
end

T.test("climbs while one more stream pays, and steps back from the one that did not", function()
  -- 10 MB/s per stream up to 5 streams, then no better.
  local d, ctl = simulate(streams.controller{ start = 2, min = 1, max = 8 }, 8,
                          function(n) return math.min(n, 5) * 10 * MB end)
  T.eq(moves(d), "2->3 3->4 4->5 5->6 6->5")
  T.eq(ctl.n, 5)
  T.match(d[#d].why, "one more stream did not pay")
  T.match(d[2].why, "^30%.0 MB/s at 3 against 20%.0 MB/s at 2 %(%+50 %%%); trying 4$")
end)

T.test("no gain: back to the start at once, and held there", function()
  local d, ctl = simulate(streams.controller{ start = 2, min = 1, max = 4, hold = 100 }, 20,
                          function() return 50 * MB end)
  T.eq(moves(d), "2->3 3->2")
  T.eq(ctl.n, 2)
end)

T.test("slower with more streams (cores oversubscribed): back off", function()
  local d, ctl = simulate(streams.controller{ start = 2, min = 1, max = 4, hold = 100 }, 20,
                          function(n) return ({ 30, 40, 36, 33 })[n] * MB end)
  T.eq(moves(d), "2->3 3->2")
  T.eq(ctl.n, 2)
  T.eq(d[1].rate_from, 40 * MB)
  T.eq(d[2].rate_from, 36 * MB, "the rate measured at 3 streams")
end)

T.test("a gain of 5 % or less does not pay; more does", function()
  local d = simulate(streams.controller{ start = 2, min = 1, max = 3, hold = 100 }, 10,
                     function(n) return (n == 3 and 104 or 100) * MB end)
  T.eq(moves(d), "2->3 3->2", "+4 %")
  d = simulate(streams.controller{ start = 2, min = 1, max = 3, hold = 100 }, 10,
               function(n) return (n == 3 and 106 or 100) * MB end)
  T.eq(moves(d), "2->3", "+6 %: kept, and 3 is the most allowed")
end)

T.test("bounds: never above max, nothing to try when start = max", function()
  local d, ctl = simulate(streams.controller{ start = 2, min = 1, max = 4, hold = 100 }, 20,
                          function(n) return n * 10 * MB end)
  T.eq(moves(d), "2->3 3->4")
  T.eq(ctl.n, 4)
  d = simulate(streams.controller{ start = 3, min = 3, max = 3 }, 30, function(n) return n * MB end)
  T.eq(#d, 0)
  T.raises(function() streams.controller{ start = 5, min = 1, max = 4 } end, "min <= start <= max")
end)

T.test("windows count only while steady: a pause, a stream still finishing its part", function()
  -- Unsteady for the first 5 s (e.g. a stream told to stop still copying): no decision yet;
  -- the first window starts once steady.
  local d = simulate(streams.controller{ start = 2, min = 1, max = 4, hold = 100 }, 5.9,
                     function(n) return n * 10 * MB end, function(t) return t > 5 end)
  T.eq(#d, 0, "0.9 s steady is less than one window")
  d = simulate(streams.controller{ start = 2, min = 1, max = 4, hold = 100 }, 6.5,
               function(n) return n * 10 * MB end, function(t) return t > 5 end)
  T.eq(moves(d), "2->3")
  -- Bytes that came while unsteady are not counted in the window after.
  local ctl = streams.controller{ start = 2, min = 1, max = 4 }
  T.eq(ctl:sample(0, 0, true), nil)
  T.eq(ctl:sample(0.5, 1000 * MB, false), nil)
  T.eq(ctl:sample(1.0, 1000 * MB, true), nil)
  local first = ctl:sample(2.0, 1010 * MB, true)
  T.eq(first.rate_from, 10 * MB)
end)

T.test("after holding: measure again, try one more, then one fewer (kept when no slower)", function()
  -- Flat: one more never pays; one fewer is as fast, so the count walks down to where it
  -- starts to cost (1 stream is half as fast).
  local d, ctl = simulate(streams.controller{ start = 3, min = 1, max = 4, hold = 4 }, 40,
                          function(n) return (n == 1 and 25 or 50) * MB end)
  local got = moves(d)
  T.eq(got:sub(1, 44), "3->4 4->3 3->4 4->3 3->2 2->3 3->2 2->1 1->2")
  T.ok(not got:find("4->5") and not got:find("1->0"), got)
  T.eq(ctl.n, 2)
  T.match(d[9].why, "one fewer stream was slower")
end)

T.test("the load changes shape: a count that paid early is revisited later", function()
  -- Large tables first (4 streams pay), then many small ones (2 is best).
  local function rate(n, t)
    if t < 12 then return math.min(n, 4) * 10 * MB end
    return ({ 20, 30, 27, 24 })[n] * MB
  end
  local d, ctl = simulate(streams.controller{ start = 2, min = 1, max = 4, hold = 4 }, 40, rate)
  T.eq(ctl.n, 2)
  T.eq(table.concat({ d[1].to, d[2].to }, " "), "3 4")
end)

T.test('starting points: a fixed count as it is; "auto" from the host and the servers', function()
  local fixed = streams.sizing({ full = { jobs = 3 } }, nil)
  T.eq({ fixed.auto, fixed.start, fixed.min, fixed.max, fixed.split }, { false, 3, 3, 3, 3 })
  local both_here = { cpus = 2, source = { on_this_host = true, max_parallel_workers = 8, max_worker_processes = 8 },
                      target = { on_this_host = true, max_parallel_workers = 8, max_worker_processes = 8 } }
  local s = streams.sizing({ full = {} }, both_here)
  T.eq({ s.auto, s.start, s.min, s.max, s.split }, { true, 2, 1, 4, 4 })
  T.match(s.why, "the source and the target on this host, 2 CPU%(s%) here")
  s = streams.sizing({ full = { jobs = "auto" } }, { cpus = 16, source = { on_this_host = true }, target = {} })
  T.eq({ s.start, s.max }, { 8, 16 })
  local remote = { cpus = 2, source = { on_this_host = false, max_parallel_workers = 12, max_worker_processes = 16 },
                   target = { on_this_host = false, max_parallel_workers = 6, max_worker_processes = 8 } }
  s = streams.sizing({ full = {} }, remote)
  T.eq({ s.start, s.max }, { 4, 6 }, "the smaller max_parallel_workers")
  remote.target.max_worker_processes = 3
  s = streams.sizing({ full = {} }, remote)
  T.eq({ s.start, s.max }, { 3, 3 }, "max_worker_processes caps")
  s = streams.sizing({ full = {} }, { cpus = 1, source = {}, target = {} })
  T.eq({ s.start, s.max }, { 4, 8 }, "nothing reported: 4, up to 8")
end)

T.test("no probe when the work left would be done before a probe could pay", function()
  local ctl = streams.controller{ start = 2, min = 1, max = 4 }
  T.eq(ctl:sample(0, 0, true, 100 * MB), nil)
  -- 20 MB/s, 60 MB left: 3 s, under 4 windows of 1 s.
  T.eq(ctl:sample(1, 20 * MB, true, 60 * MB), nil)
  T.eq(ctl.n, 2)
  -- A load with 200 MB left probes.
  ctl = streams.controller{ start = 2, min = 1, max = 4 }
  ctl:sample(0, 0, true, 220 * MB)
  local d = ctl:sample(1, 20 * MB, true, 200 * MB)
  T.eq(d and d.to, 3)
  -- A failed probe is still undone, however little is left.
  T.eq(ctl:sample(2, 40 * MB, true, 180 * MB), nil, "the window at 3 streams starts")
  d = ctl:sample(3, 60 * MB, true, 1 * MB)
  T.eq(d and d.to, 2)
end)
