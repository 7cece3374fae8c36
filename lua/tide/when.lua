-- tide.when — ready-made stop conditions for incremental migration.
--
--   stop = tide.when { lag_below = "1s", for_at_least = "30s" }   -- delay under 1 s for 30 s
--   stop = tide.when { at_lsn = "0/3000060" }                     -- applied at or past an LSN
--   stop = tide.when { at_time = "2025-06-01 02:00:00" }          -- local time (or epoch seconds)
--   stop = tide.when { file_exists = "/run/shop-move.cutover" }   -- an operator's touch file
--   stop = tide.when.any { tide.when{ at_time = ... }, tide.when{ file_exists = ... } }
--
-- Several keys in one tide.when must all hold. A condition is a callable table: the stream
-- calls it every tick with the status table (docs/incremental.md) and stops when it returns
-- true. A playbook may also give a plain function(status) → boolean.
local units = require "tide.units"

local M = {}

-- Seconds from 12, 1.5, "30s", "500ms", "5min", "2h"; bytes from 1024, "64kB", "1GB" (nil,
-- message when it is none of those): the playbook's one reading of durations and sizes.
M.seconds, M.bytes = units.parse_duration, units.parse_size

local function must(v, what)
  local x, err = M.seconds(v)
  if not x then error("tide.when: " .. what .. ": " .. err, 3) end
  return x
end

local function lsn_number(s)
  local hi, lo = tostring(s):match("^(%x+)/(%x+)$")
  if not hi then error("tide.when: at_lsn must look like \"0/3000060\", got " .. tostring(s), 3) end
  return tonumber(hi, 16) << 32 | tonumber(lo, 16)
end
M.lsn_number = function(s) return lsn_number(s) end

local function epoch_of(v)
  if type(v) == "number" then return v end
  local y, mo, d, h, mi, sec = tostring(v):match("^(%d+)-(%d+)-(%d+)[ T](%d+):(%d+):?(%d*)$")
  if not y then error("tide.when: at_time must be epoch seconds or \"YYYY-MM-DD HH:MM[:SS]\" (local time)", 3) end
  return os.time { year = tonumber(y), month = tonumber(mo), day = tonumber(d), hour = tonumber(h),
                   min = tonumber(mi), sec = tonumber(sec) or 0 }
end

local Condition = {}
Condition.__index = Condition
Condition.__call = function(self, status) return self.test(status) end
Condition.__tostring = function(self) return "tide.when{" .. self.description .. "}" end

local function condition(test, description)
  return setmetatable({ test = test, description = description }, Condition)
end

local KEYS = { lag_below = true, for_at_least = true, at_lsn = true, at_time = true, file_exists = true }

function M.when(spec)
  if type(spec) ~= "table" then error("tide.when needs a table: tide.when{ lag_below = \"1s\", for_at_least = \"30s\" }", 2) end
  for k in pairs(spec) do
    if not KEYS[k] then error("tide.when: unknown key '" .. tostring(k) .. "' (lag_below, for_at_least, at_lsn, at_time, file_exists)", 2) end
  end
  if spec.for_at_least ~= nil and spec.lag_below == nil then
    error("tide.when: for_at_least goes with lag_below", 2)
  end
  local tests, parts = {}, {}
  if spec.lag_below ~= nil then
    local bound, hold = must(spec.lag_below, "lag_below"), must(spec.for_at_least or 0, "for_at_least")
    local since
    tests[#tests + 1] = function(st)
      if st.delay ~= nil and st.delay < bound then
        since = since or st.now
        return st.now - since >= hold
      end
      since = nil
      return false
    end
    parts[#parts + 1] = string.format("lag_below = %gs, for_at_least = %gs", bound, hold)
  end
  if spec.at_lsn ~= nil then
    local target = lsn_number(spec.at_lsn)
    tests[#tests + 1] = function(st) return (st.applied or 0) >= target end
    parts[#parts + 1] = "at_lsn = " .. spec.at_lsn
  end
  if spec.at_time ~= nil then
    local at = epoch_of(spec.at_time)
    tests[#tests + 1] = function(st) return st.now >= at end
    parts[#parts + 1] = "at_time = " .. tostring(spec.at_time)
  end
  if spec.file_exists ~= nil then
    local path = spec.file_exists
    tests[#tests + 1] = function()
      local f = io.open(path, "r")
      if f then f:close() return true end
      return false
    end
    parts[#parts + 1] = string.format("file_exists = %q", path)
  end
  if #tests == 0 then error("tide.when: give at least one of lag_below, at_lsn, at_time, file_exists", 2) end
  return condition(function(st)
    -- Evaluate every test each tick, so a duration count (for_at_least) keeps its state.
    local all = true
    for _, t in ipairs(tests) do all = t(st) and all end
    return all
  end, table.concat(parts, ", "))
end

-- Any of several conditions (each a tide.when or a function).
function M.any(list)
  return condition(function(st)
    local hit = false
    for _, c in ipairs(list) do hit = c(st) or hit end
    return hit
  end, "any")
end

-- All of several conditions.
function M.all(list)
  return condition(function(st)
    local ok = true
    for _, c in ipairs(list) do ok = c(st) and ok end
    return ok
  end, "all")
end

-- tide.when is both callable (tide.when{...}) and a table (tide.when.any{...}).
return setmetatable(M, { __call = function(_, spec) return M.when(spec) end })
