-- tide.units — the one reading of durations and sizes (playbook values, tide.when, the verify
-- and precheck settings) and the one way of printing them back for a person. The playbook's
-- validator checks a value with the same parser that reads it at run time, so a value it
-- accepts always works (docs/playbook.md, "Durations and sizes").
--
--   units.parse_duration(v) → seconds | nil, message
--       a number of seconds (0 or more), or a string: a number, then optionally a unit
--       us, ms, s (sec), min (m), h; case and spaces do not matter: "500ms", "30s", "5min",
--       "1.5 h", "30m". A string without a unit is seconds.
--   units.parse_size(v) → bytes (an integer) | nil, message
--       a whole number of bytes (0 or more), or a string: a number, then optionally a unit
--       B, kB (k), MB (M), GB (G), TB (T), powers of 1024; case and spaces do not matter:
--       "64kB", "500MB", "1.5GB". A string without a unit is bytes.
--   units.human_bytes(n) → "0 B", "523 B", "2.0 kB", "1.5 MB", ... (nil counts as 0)
--   units.human_seconds(s) → "12.3s", "2m05s", "2h01m" ("?" for nil, NaN, infinity)
local M = {}

M.DURATION_EXPECTED = 'a duration such as "30s", "500ms", "5min" or a number of seconds'
M.SIZE_EXPECTED = 'a size such as "1GB", "500MB" or a number of bytes'

local DURATION_UNITS = { [""] = 1, us = 1e-6, ms = 1e-3, s = 1, sec = 1, m = 60, min = 60, h = 3600 }
local SIZE_UNITS = { [""] = 1, b = 1, k = 1024, kb = 1024, m = 1024 ^ 2, mb = 1024 ^ 2,
                     g = 1024 ^ 3, gb = 1024 ^ 3, t = 1024 ^ 4, tb = 1024 ^ 4 }

-- "  1.5 GB " → "1.5", "GB"; nil when the text is not a number followed by letters.
local function number_and_unit(text)
  return text:match("^%s*(%d+%.?%d*)%s*(%a*)%s*$")
end

function M.parse_duration(v)
  if type(v) == "number" then
    if v >= 0 then return v end   -- (NaN is not >= 0 either)
    return nil, string.format("%s is not %s", tostring(v), M.DURATION_EXPECTED)
  end
  if type(v) ~= "string" then return nil, M.DURATION_EXPECTED end
  local num, unit = number_and_unit(v)
  if not num then return nil, string.format("%q is not %s", v, M.DURATION_EXPECTED) end
  local scale = DURATION_UNITS[unit:lower()]
  if not scale then return nil, string.format("%q is not a duration: unknown unit %q (us, ms, s, min, h)", v, unit) end
  return tonumber(num) * scale
end

function M.parse_size(v)
  if type(v) == "number" then
    local n = math.tointeger(v)
    if n and n >= 0 then return n end
    return nil, string.format("%s is not %s", tostring(v), M.SIZE_EXPECTED)
  end
  if type(v) ~= "string" then return nil, M.SIZE_EXPECTED end
  local num, unit = number_and_unit(v)
  if not num then return nil, string.format("%q is not %s", v, M.SIZE_EXPECTED) end
  local scale = SIZE_UNITS[unit:lower()]
  if not scale then return nil, string.format("%q is not a size: unknown unit %q (B, kB, MB, GB, TB)", v, unit) end
  return math.floor(tonumber(num) * scale)
end

local BYTE_UNITS = { "B", "kB", "MB", "GB", "TB" }

function M.human_bytes(n)
  n = n or 0
  local i = 1
  while n >= 1024 and i < #BYTE_UNITS do n = n / 1024; i = i + 1 end
  -- (a rate under 1 kB/s is a float: %d alone would raise)
  return i == 1 and string.format("%d %s", math.floor(n), BYTE_UNITS[i]) or string.format("%.1f %s", n, BYTE_UNITS[i])
end

function M.human_seconds(s)
  if not s or s ~= s or s == math.huge then return "?" end
  if s < 60 then return string.format("%.1fs", s) end
  if s < 3600 then return string.format("%dm%02ds", s // 60, math.floor(s % 60)) end
  return string.format("%dh%02dm", s // 3600, (s % 3600) // 60)
end

return M
