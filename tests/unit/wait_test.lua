-- tide.wait.breathe: a long loop of pure Lua lets the event loop turn (the live control socket
-- answers `pgtide status` while a plan over many tables is made).
local T = require "testlib"
local core = require "tide.core"
local wait = require "tide.wait"

-- Runs `busy` (a loop of pure Lua for `seconds`, calling `step` each time round) in one
-- coroutine while another counts the 10 ms timer ticks it gets: how many.
local function ticks_during(seconds, step, every)
  local ticks, done = 0, false
  local ticker = core.spawn(function()
    while not done do core.sleep(0.01); ticks = ticks + 1 end
  end)
  local busy = core.spawn(function()
    local stop, x = core.monotonic() + seconds, 0
    local next_step = 0
    while core.monotonic() < stop do
      for i = 1, 1000 do x = x + i end
      if core.monotonic() >= next_step then
        step()
        next_step = core.monotonic() + (every or 0)
      end
    end
    done = true
  end)
  busy:wait()
  ticker:wait()
  return ticks
end

T.test("a loop that breathes lets timers fire; one that does not, none", function()
  local quiet = ticks_during(0.4, function() end)
  local breathing = ticks_during(0.4, wait.breathe)
  T.ok(quiet <= 1, "without breathing the loop stood still: " .. quiet .. " tick(s)")
  T.ok(breathing >= 4, "breathing let the 10 ms timer fire (at most every 50 ms): " .. breathing .. " tick(s)")
end)

T.test("a caller that comes by rarely asks for the clock at once", function()
  -- one call every 60 ms: seven calls in all, too few for the count that reads the clock
  local counted = ticks_during(0.45, wait.breathe, 0.06)
  local at_once = ticks_during(0.45, function() wait.breathe(true) end, 0.06)
  T.ok(counted <= 2, "seven plain calls read the clock once at most: " .. counted .. " tick(s)")
  T.ok(at_once >= 4, "breathe(true) each time yielded: " .. at_once .. " tick(s)")
end)

T.test("outside a coroutine of the scheduler, or under a C call, it does nothing", function()
  local co = coroutine.create(function() for _ = 1, 1000 do wait.breathe() end return "done" end)
  local ok, v = coroutine.resume(co)
  T.ok(ok and v == "done", "a plain coroutine runs through: " .. tostring(v))
  local list = {}
  for i = 1, 600 do list[i] = 600 - i end
  table.sort(list, function(a, b) wait.breathe(); return a < b end)
  T.eq(list[1], 0, "a comparator of table.sort (a C function below it) is not yielded from")
end)
