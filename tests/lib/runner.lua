-- Runs one test file inside the engine: `pgtide script tests/lib/runner.lua FILE`.
-- For integration tests (PGTIDE_SOURCE_ADMIN / PGTIDE_TARGET_ADMIN set, pointing at the
-- clusters' postgres database) it creates fresh databases on both sides named after the file,
-- hands their URLs to every case, and drops them at the end.
-- Output is TAP: the plan "1..N", then one line per case ("ok", "not ok", or
-- "ok N - name # SKIP reason" for a case that called T.skip or that PGTIDE_TEST_ONLY leaves
-- out), and a closing "# passed N failed M skipped K". A file that registers no case fails.
local tide = require "tide"
package.path = "tests/lib/?.lua;" .. package.path

local file = assert(arg[1], "usage: runner.lua TESTFILE")
local T = require "testlib"
local P = require "pg"
local name = file:match("([^/]+)%.lua$"):gsub("[^%w]", "_"):lower()

local ctx = { file = file }
ctx.tmpdir = os.getenv("PGTIDE_TEST_TMP") or "/tmp"
local admin_src, admin_tgt = os.getenv("PGTIDE_SOURCE_ADMIN"), os.getenv("PGTIDE_TARGET_ADMIN")
local dbname = "t_" .. name
local admins = {}

local function setup()
  if not admin_src then return end
  for side, url in pairs({ source = admin_src, target = admin_tgt }) do
    ctx[side .. "_url"] = P.fresh_db(url, dbname)
    ctx[side .. "_admin"] = url
    admins[side] = url
  end
  ctx.dbname = dbname
end

local function teardown()
  if os.getenv("PGTIDE_KEEP_DBS") == "1" then return end
  -- A fresh connection: a test may have restarted the server meanwhile.
  for _, url in pairs(admins) do pcall(P.drop_db, url, dbname) end
end

local chunk = assert(loadfile(file, "t"))
chunk()

local only = os.getenv("PGTIDE_TEST_ONLY")
local passed, failed, skipped = 0, 0, 0
if #T.cases == 0 then
  -- A file whose cases never registered (a typo, an early return) must not pass silently.
  print("1..1")
  print(string.format("not ok 1 - %s: the file registers no test case (T.test)", name))
  print("# passed 0 failed 1 skipped 0")
  return 1
end
print("1.." .. #T.cases)
setup()
for i, case in ipairs(T.cases) do
  local label = string.format("%d - %s: %s", i, name, case.name)
  if only and not case.name:find(only, 1, true) then
    skipped = skipped + 1
    print(string.format("ok %s # SKIP not selected by PGTIDE_TEST_ONLY=%s", label, only))
  else
    local started = tide.monotonic()
    local ok, err = xpcall(case.fn, function(e)
      if T.skip_reason(e) then return e end
      return debug.traceback(type(e) == "string" and e or tostring(e), 2)
    end, ctx)
    local secs = tide.monotonic() - started
    if ok then
      passed = passed + 1
      print(string.format("ok %s (%.1fs)", label, secs))
    elseif T.skip_reason(err) then
      skipped = skipped + 1
      print(string.format("ok %s # SKIP %s", label, T.skip_reason(err):gsub("\n", " ")))
    else
      failed = failed + 1
      print(string.format("not ok %s", label))
      for line in tostring(err):gmatch("[^\n]+") do print("#   " .. line) end
    end
  end
  io.stdout:flush()
end
teardown()
print(string.format("# passed %d failed %d skipped %d", passed, failed, skipped))
return failed == 0 and 0 or 1
