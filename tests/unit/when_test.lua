-- tide.when: the ready-made stop conditions of docs/incremental.md ("The stop condition").
-- A condition is called every tick with the stream's status table and says whether to stop.
local T = require "testlib"
local tide = require "tide"
local when = require "tide.when"

-- Calls `cond` with one status per tick; returns the list of its answers.
local function ticks(cond, statuses)
  local out = {}
  for i, st in ipairs(statuses) do out[i] = cond(st) end
  return out
end

T.test("tide.when and require 'tide.when' are the same, callable and with any/all", function()
  T.ok(tide.when == when, "tide.when is the module")
  local c = tide.when { at_lsn = "0/10" }
  T.eq(type(c), "table")
  T.ok(getmetatable(c).__call ~= nil, "a condition is a callable table")
  T.eq(type(when.any), "function")
  T.eq(type(when.all), "function")
end)

T.test("lag_below with for_at_least: delay under the bound for the whole span", function()
  local c = when { lag_below = "1s", for_at_least = "30s" }
  T.eq(ticks(c, {
    { now = 100, delay = 0.5 },   -- under the bound from here
    { now = 110, delay = 0.9 },
    { now = 129.9, delay = 0.2 }, -- 29.9 s: not yet
    { now = 130, delay = 0.2 },   -- 30 s: met
    { now = 131, delay = 0.3 },   -- still met
  }), { false, false, false, true, true })
end)

T.test("lag_below: a delay at or over the bound restarts the count", function()
  local c = when { lag_below = 1, for_at_least = 10 }
  T.eq(ticks(c, {
    { now = 0, delay = 0 },
    { now = 8, delay = 0 },
    { now = 9, delay = 1 },     -- exactly the bound is not "under" it
    { now = 12, delay = 0.1 },  -- the count starts again here
    { now = 18, delay = 0.1 },  -- 18 s since the first tick, 6 s since the restart
    { now = 21.9, delay = 0.1 },
    { now = 22, delay = 0.1 },
  }), { false, false, false, false, false, false, true })
end)

T.test("lag_below: an unknown delay (nil) is not under the bound and restarts the count", function()
  local c = when { lag_below = "1s", for_at_least = "5s" }
  T.eq(ticks(c, {
    { now = 0, delay = 0 },
    { now = 3 },                -- no delay known yet
    { now = 5, delay = 0 },
    { now = 9, delay = 0 },
    { now = 10, delay = 0 },
  }), { false, false, false, false, true })
end)

T.test("lag_below alone holds at the first tick under the bound", function()
  local c = when { lag_below = "500ms" }
  T.eq(ticks(c, { { now = 1, delay = 0.7 }, { now = 2, delay = 0.49 } }), { false, true })
end)

T.test("durations: numbers are seconds, strings carry a unit", function()
  -- 2 minutes as a string and as a number, and 1500 ms.
  for _, spec in ipairs({ { "2min", 1.5 }, { 120, "1500ms" } }) do
    local c = when { lag_below = spec[2], for_at_least = spec[1] }
    T.eq(ticks(c, {
      { now = 0, delay = 1.4 },
      { now = 119, delay = 1.4 },
      { now = 120, delay = 1.4 },
    }), { false, false, true }, "for_at_least = " .. tostring(spec[1]))
    T.eq(c({ now = 121, delay = 1.5 }), false, "1.5 s is not under lag_below = " .. tostring(spec[2]))
  end
  local h = when { lag_below = "1s", for_at_least = "1h" }
  T.eq(ticks(h, { { now = 0, delay = 0 }, { now = 3599, delay = 0 }, { now = 3600, delay = 0 } }),
       { false, false, true })
end)

T.test("at_lsn: applied at or past the position", function()
  local c = when { at_lsn = "5/3A000060" }
  local target = (5 << 32) | 0x3A000060
  T.eq(c({ now = 0, applied = target - 1 }), false)
  T.eq(c({ now = 0, applied = target }), true)
  T.eq(c({ now = 0, applied = target + 1 }), true)
  T.eq(c({ now = 0 }), false, "nothing applied yet")
  -- Hex digits in either case; the high part counts 4 GiB steps.
  local lower = when { at_lsn = "5/3a000060" }
  T.eq(lower({ now = 0, applied = target }), true)
  T.eq(lower({ now = 0, applied = 0x3A000060 }), false, "the high half is not ignored")
  T.eq(when.lsn_number("0/0"), 0)
  T.eq(when.lsn_number("1/0"), 1 << 32)
  T.eq(when.lsn_number("0/3000060"), 0x3000060)
end)

T.test("at_lsn must look like an LSN", function()
  for _, bad in ipairs({ "3000060", "0/", "/10", "0/xyz", "0/10/2", 42 }) do
    T.raises(function() when { at_lsn = bad } end, "at_lsn", "at_lsn = " .. tostring(bad))
  end
  T.raises(function() when.lsn_number("nope") end, "0/3000060")
end)

T.test("at_time: epoch seconds, or local time with or without seconds", function()
  local c = when { at_time = 1000 }
  T.eq(ticks(c, { { now = 999.5 }, { now = 1000 }, { now = 5000 } }), { false, true, true })
  local at = os.time { year = 2025, month = 6, day = 1, hour = 2, min = 0, sec = 0 }
  for _, text in ipairs({ "2025-06-01 02:00", "2025-06-01 02:00:00", "2025-06-01T02:00" }) do
    local w = when { at_time = text }
    T.eq(w({ now = at - 1 }), false, text .. ": a second before")
    T.eq(w({ now = at }), true, text .. ": at the time")
  end
  local s = when { at_time = "2025-06-01 02:00:30" }
  T.eq(s({ now = at + 29 }), false)
  T.eq(s({ now = at + 30 }), true)
end)

T.test("at_time must be epoch seconds or a date and time", function()
  for _, bad in ipairs({ "tomorrow", "2025-06-01", "02:00", "2025/06/01 02:00", true }) do
    T.raises(function() when { at_time = bad } end, "at_time", "at_time = " .. tostring(bad))
  end
end)

T.test("file_exists: an operator's touch file", function(ctx)
  local path = string.format("%s/when_test_%d.cutover", ctx.tmpdir, math.random(1 << 30))
  os.remove(path)
  local c = when { file_exists = path }
  T.eq(c({ now = 0 }), false)
  local f = assert(io.open(path, "w"))
  f:close()
  T.eq(c({ now = 1 }), true)
  os.remove(path)
  T.eq(c({ now = 2 }), false, "checked again at every tick")
end)

T.test("several keys in one tide.when must all hold", function()
  local c = when { at_lsn = "0/100", at_time = 50 }
  T.eq(c({ now = 60, applied = 0x10 }), false, "time reached, LSN not")
  T.eq(c({ now = 40, applied = 0x100 }), false, "LSN reached, time not")
  T.eq(c({ now = 60, applied = 0x100 }), true)
end)

T.test("a duration count keeps running while another key does not hold yet", function()
  -- Every key is evaluated at every tick: the 10 s under the bound are counted before the
  -- LSN is reached, so the condition holds as soon as it is.
  local c = when { lag_below = "1s", for_at_least = "10s", at_lsn = "0/100" }
  T.eq(ticks(c, {
    { now = 0, delay = 0, applied = 0 },
    { now = 10, delay = 0, applied = 0 },
    { now = 11, delay = 0, applied = 0x100 },
  }), { false, false, true })
end)

T.test("tide.when.any: one of several; tide.when.all: every one", function()
  local calls = 0
  local fn = function(st) calls = calls + 1 return st.now >= 10 end
  local any = when.any { when { at_lsn = "0/100" }, fn }
  T.eq(any({ now = 0, applied = 0 }), false)
  T.eq(any({ now = 0, applied = 0x100 }), true, "the first holds")
  T.eq(any({ now = 10, applied = 0 }), true, "a plain function holds")
  T.eq(calls, 3, "every member is asked at every tick")
  local all = when.all { when { at_lsn = "0/100" }, fn }
  T.eq(all({ now = 10, applied = 0 }), false)
  T.eq(all({ now = 0, applied = 0x100 }), false)
  T.eq(all({ now = 10, applied = 0x100 }), true)
  T.eq(when.any {}({ now = 0 }), false, "any of nothing never holds")
end)

T.test("tide.when.any keeps the duration count of its members", function()
  local any = when.any { when { lag_below = "1s", for_at_least = "5s" }, when { at_lsn = "0/100" } }
  T.eq(ticks(any, {
    { now = 0, delay = 0, applied = 0x100 },   -- held by at_lsn, while lag_below starts counting
    { now = 5, delay = 0, applied = 0 },        -- and lag_below has counted its 5 s meanwhile
  }), { true, true })
end)

T.test("a condition describes itself", function()
  T.match(tostring(when { lag_below = "1s", for_at_least = "30s" }),
          "^tide%.when{lag_below = 1s, for_at_least = 30s}$")
  T.match(tostring(when { at_lsn = "0/3000060" }), "^tide%.when{at_lsn = 0/3000060}$")
  T.match(tostring(when { file_exists = "/run/go" }), '^tide%.when{file_exists = "/run/go"}$')
end)

T.test("mistakes in the spec are errors that name them", function()
  T.raises(function() when "1s" end, "needs a table")
  T.raises(function() when {} end, "at least one of")
  T.raises(function() when { lag_bellow = "1s" } end, "unknown key 'lag_bellow'")
  T.raises(function() when { for_at_least = "30s" } end, "for_at_least goes with lag_below")
  T.raises(function() when { lag_below = "fast" } end, "lag_below")
  T.raises(function() when { lag_below = "1s", for_at_least = "a while" } end, "for_at_least")
  T.raises(function() when { lag_below = "1 fortnight" } end, "lag_below")
  T.raises(function() when { lag_below = {} } end, "lag_below")
end)
