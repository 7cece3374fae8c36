-- A tiny test library for pgtide's Lua tests (unit and integration).
--
-- A test file calls T.test(name, fn) for each case. The runner (tests/lib/runner.lua) loads
-- the file, then runs every registered case in order as its own coroutine, printing one TAP
-- line per case. `fn` receives a context table:
--   ctx.source_url, ctx.target_url  conninfo URIs of fresh databases made for this file
--                                   (integration runs only; nil in pure unit runs)
--   ctx.tmpdir                      a scratch directory for this file
-- Assertions raise; a raised error fails the case and its message (with traceback) is shown.
-- T.skip(reason) ends a case as skipped: reported as "ok N - name # SKIP reason", counted apart.
local T = { cases = {} }

local function fmt(v)
  if type(v) == "string" then return string.format("%q", v) end
  return tostring(v)
end

function T.test(name, fn)
  assert(type(name) == "string" and type(fn) == "function", "T.test(name, fn)")
  T.cases[#T.cases + 1] = { name = name, fn = fn }
end

-- A skip is raised as this marker; the runner tells it from a failure.
local Skip = { __tostring = function(s) return "skipped: " .. s.reason end }

-- T.skip(reason): end the running case here, as skipped (something it needs is missing).
function T.skip(reason)
  error(setmetatable({ reason = tostring(reason or "no reason given") }, Skip), 0)
end

-- The reason when `e` is a skip marker, else nil.
function T.skip_reason(e)
  return getmetatable(e) == Skip and e.reason or nil
end

function T.ok(cond, msg)
  if not cond then error("assertion failed: " .. (msg or "expected a true value"), 2) end
  return cond
end

local function deep_equal(a, b, seen)
  if a == b then return true end
  if type(a) ~= "table" or type(b) ~= "table" then
    -- NaN equals NaN for our purposes (round-trip tests).
    return type(a) == "number" and type(b) == "number" and a ~= a and b ~= b
  end
  seen = seen or {}
  if seen[a] == b then return true end
  seen[a] = b
  for k, v in pairs(a) do if not deep_equal(v, b[k], seen) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end
T.deep_equal = deep_equal

local function dump(v, indent)
  indent = indent or ""
  if type(v) ~= "table" then return fmt(v) end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys, function(x, y) return tostring(x) < tostring(y) end)
  local parts = {}
  for _, k in ipairs(keys) do
    parts[#parts + 1] = indent .. "  [" .. fmt(k) .. "] = " .. dump(v[k], indent .. "  ")
  end
  return "{\n" .. table.concat(parts, ",\n") .. "\n" .. indent .. "}"
end
T.dump = dump

function T.eq(got, want, msg)
  if not deep_equal(got, want) then
    error(string.format("%s\n  got:  %s\n  want: %s", msg or "values differ", dump(got), dump(want)), 2)
  end
end

function T.ne(got, notwant, msg)
  if deep_equal(got, notwant) then
    error(string.format("%s\n  got the value it must not be: %s", msg or "values equal", dump(got)), 2)
  end
end

function T.match(s, pattern, msg)
  if type(s) ~= "string" or not s:find(pattern) then
    error(string.format("%s\n  %s does not match pattern %q", msg or "no match", fmt(s), pattern), 2)
  end
end

function T.nomatch(s, pattern, msg)
  if type(s) == "string" and s:find(pattern) then
    error(string.format("%s\n  %s matches pattern %q", msg or "unexpected match", fmt(s), pattern), 2)
  end
end

-- T.raises(fn, pattern): fn must raise an error whose text matches pattern; returns the error.
function T.raises(fn, pattern, msg)
  local ok, err = pcall(fn)
  if ok then error((msg or "expected an error") .. ", but the call succeeded", 2) end
  local text = tostring(err)
  if pattern and not text:find(pattern) then
    error(string.format("%s\n  error %q does not match %q", msg or "wrong error", text, pattern), 2)
  end
  return err
end

-- Run a shell command; returns exit code, stdout+stderr text. Uses io.popen (blocking), which is
-- fine in tests: the engine's loop has nothing else to do while a test waits for a child.
function T.sh(cmd)
  local f = assert(io.popen(cmd .. " 2>&1", "r"))
  local out = f:read("a")
  local _, _, code = f:close()
  return code, out
end

return T
