-- tide.units: durations and sizes as docs/playbook.md ("Durations and sizes") defines them,
-- the playbook validator agreeing with the parser that runs, and the figures printed back.
local T = require "testlib"
local units = require "tide.units"
local playbook = require "tide.playbook"

local PGTIDE = os.getenv("PGTIDE") or "build/pgtide"

local function near(got, want, msg)
  T.ok(type(got) == "number" and math.abs(got - want) <= 1e-9 * math.max(1, math.abs(want)),
       string.format("%s: got %s, want %s", msg or "value", tostring(got), tostring(want)))
end

------------------------------------------------------------------------ durations

T.test("a duration: a number of seconds, 0 or more", function()
  T.eq(units.parse_duration(0), 0)
  T.eq(units.parse_duration(12), 12)
  T.eq(units.parse_duration(1.5), 1.5)
  T.eq(units.parse_duration(-1), nil, "negative")
  T.eq(units.parse_duration(0 / 0), nil, "NaN")
end)

T.test("a duration: a number and a unit us, ms, s (sec), min (m), h", function()
  local cases = {
    { "30s", 30 }, { "500ms", 0.5 }, { "5min", 300 }, { "2h", 7200 }, { "30m", 1800 },
    { "250us", 0.00025 }, { "10sec", 10 }, { "12", 12 }, { "1.5h", 5400 }, { "0.5s", 0.5 },
    { "0", 0 }, { "1.s", 1 },
  }
  for _, c in ipairs(cases) do near(units.parse_duration(c[1]), c[2], c[1]) end
end)

T.test("a duration: spaces and the case of the unit do not matter", function()
  for _, c in ipairs({ { " 5 min ", 300 }, { "30S", 30 }, { "5MIN", 300 }, { "1 H", 3600 }, { "500 Ms", 0.5 },
                       { "2 M", 120 } }) do
    near(units.parse_duration(c[1]), c[2], string.format("%q", c[1]))
  end
end)

T.test("not a duration: unknown units, no number, other types", function()
  for _, bad in ipairs({ "5u", "5x", "5 fortnight", "5d", "fast", "", "s", "-1s", ".5s", "1,5s", "5s5",
                         "1e3", "5 m s" }) do
    local v, err = units.parse_duration(bad)
    T.eq(v, nil, string.format("%q", bad))
    T.match(err, "duration", string.format("the message for %q says what is expected", bad))
  end
  for _, bad in ipairs({ true, {}, function() end }) do
    T.eq(units.parse_duration(bad), nil, type(bad))
  end
  local _, err = units.parse_duration("5u")
  T.match(err, 'unknown unit "u"')
end)

------------------------------------------------------------------------ sizes

T.test("a size: a whole number of bytes, 0 or more", function()
  T.eq(units.parse_size(0), 0)
  T.eq(units.parse_size(1048576), 1048576)
  T.eq(units.parse_size(1e9), 1000000000, "a whole number written as a float")
  T.eq(math.type(units.parse_size(1e9)), "integer")
  T.eq(units.parse_size(-1), nil)
  T.eq(units.parse_size(1.5), nil, "not a whole number of bytes")
  T.eq(units.parse_size(math.huge), nil)
end)

T.test("a size: a number and a unit B, kB (k), MB (M), GB (G), TB (T), powers of 1024", function()
  local KB, MB, GB, TB = 1024, 1024 * 1024, 1024 * 1024 * 1024, 1024 * 1024 * 1024 * 1024
  local cases = {
    { "100", 100 }, { "100B", 100 }, { "64kB", 64 * KB }, { "512k", 512 * KB }, { "500MB", 500 * MB },
    { "8M", 8 * MB }, { "1GB", GB }, { "1.5GB", GB + GB // 2 }, { "2TB", 2 * TB }, { "3T", 3 * TB },
    { " 1 gb ", GB }, { "64KB", 64 * KB }, { "0", 0 }, { "1.5", 1 },
  }
  for _, c in ipairs(cases) do
    local got = units.parse_size(c[1])
    T.eq(got, c[2], string.format("%q", c[1]))
    T.eq(math.type(got), "integer", string.format("%q gives a whole number of bytes", c[1]))
  end
end)

T.test("not a size", function()
  for _, bad in ipairs({ "10PB", "5u", "ten MB", "-1MB", "1e9", "", "MB", "1 M B", "1GiB" }) do
    local v, err = units.parse_size(bad)
    T.eq(v, nil, string.format("%q", bad))
    T.match(err, "size", string.format("the message for %q says what is expected", bad))
  end
  T.eq(units.parse_size(true), nil)
  T.eq(units.parse_size({}), nil)
end)

------------------------------------------------------------------------ the validator runs the parser

local SAMPLES = { 0, 1, 1.5, -1, 1e9, "30s", "500ms", "5min", "30m", "2h", "10sec", "5MIN", "12", "5u", "5x",
                  "fast", "", "64kB", "1GB", "1.5GB", "10PB", "1e9", true, {} }

T.test("the playbook validator accepts a duration or a size exactly when the parser reads it", function()
  for _, v in ipairs(SAMPLES) do
    local label = type(v) == "string" and string.format("%q", v) or tostring(v)
    T.eq(playbook.duration_value(v) == true, units.parse_duration(v) ~= nil, "duration " .. label)
    T.eq(playbook.size_value(v) == true, units.parse_size(v) ~= nil, "size " .. label)
  end
end)

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  return path
end

-- Every duration key of the playbook with "5u": a FILE:LINE playbook error (exit status 3)
-- before anything connects, not an internal error later (exit status 70).
T.test('"5u" in any duration key is a playbook error with its line', function(ctx)
  local keys = {
    { "retry", "window" }, { "retry", "max_delay" }, { "incremental", "delay_bound" },
    { "incremental", "slot_timeout" }, { "incremental", "heartbeat_interval" },
    { "verify", "table_timeout" }, { "verify", "recheck_delay" }, { "verify", "snapshot_timeout" },
  }
  for _, k in ipairs(keys) do
    local path = write(string.format("%s/units_5u_%s_%s.lua", ctx.tmpdir, k[1], k[2]), string.format([[
local tide = require "tide"
return tide.task {
  name = "units", source = "host=/nonexistent", target = "host=/nonexistent",
  %s = { %s = "5u" },
}
]], k[1], k[2]))
    for _, cmd in ipairs({ "run", "plan" }) do
      local code, out = T.sh(PGTIDE .. " " .. cmd .. " " .. path)
      T.eq(code, 3, cmd .. " with " .. k[1] .. "." .. k[2] .. ' = "5u": ' .. out)
      T.match(out, path:gsub("%p", "%%%0") .. ":4: " .. k[1] .. "%." .. k[2] .. " must be a duration")
      T.nomatch(out, "internal")
    end
  end
end)

T.test("a size key with an unknown unit is a playbook error with its line", function(ctx)
  local path = write(ctx.tmpdir .. "/units_10pb.lua", [[
local tide = require "tide"
return tide.task {
  name = "units", source = "host=/nonexistent", target = "host=/nonexistent",
  incremental = { decoding_work_mem = "10PB" },
}
]])
  local code, out = T.sh(PGTIDE .. " plan " .. path)
  T.eq(code, 3, out)
  T.match(out, ":4: incremental%.decoding_work_mem must be a size")
end)

------------------------------------------------------------------------ printing

T.test("human_bytes: whole bytes under 1 kB, else one decimal in kB, MB, GB, TB", function()
  local KB, GB, TB = 1024, 1024 ^ 3, 1024 ^ 4
  T.eq(units.human_bytes(0), "0 B")
  T.eq(units.human_bytes(nil), "0 B")
  T.eq(units.human_bytes(1023), "1023 B")
  T.eq(units.human_bytes(523.7), "523 B", "a rate under 1 kB/s")
  T.eq(units.human_bytes(KB), "1.0 kB")
  T.eq(units.human_bytes(1536), "1.5 kB")
  T.eq(units.human_bytes(2.5 * GB), "2.5 GB")
  T.eq(units.human_bytes(5 * TB), "5.0 TB")
  T.eq(units.human_bytes(2048 * TB), "2048.0 TB", "TB is the largest unit")
end)

T.test("human_seconds: seconds with a decimal, then minutes and seconds, then hours and minutes", function()
  T.eq(units.human_seconds(nil), "?")
  T.eq(units.human_seconds(0 / 0), "?")
  T.eq(units.human_seconds(math.huge), "?")
  T.eq(units.human_seconds(0), "0.0s")
  T.eq(units.human_seconds(59.94), "59.9s")
  T.eq(units.human_seconds(60), "1m00s")
  T.eq(units.human_seconds(3599), "59m59s")
  T.eq(units.human_seconds(3600), "1h00m")
  T.eq(units.human_seconds(7300), "2h01m")
end)

T.test("every module prints sizes the same way", function()
  local n = 3 * 1024 ^ 3
  T.eq(require("tide.progress").human_bytes(n), units.human_bytes(n))
  T.eq(require("tide.cdc.figures").human_bytes(n), units.human_bytes(n))
  T.eq(require("tide.progress").human_seconds(125), units.human_seconds(125))
end)
