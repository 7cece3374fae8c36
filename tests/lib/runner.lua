-- Runs one test file inside the engine: `pgtide script tests/lib/runner.lua FILE`.
-- For integration tests (PGTIDE_SOURCE_ADMIN / PGTIDE_TARGET_ADMIN set, pointing at the
-- clusters' postgres database) it creates fresh databases on both sides named after the file,
-- hands their URLs to every case, and drops them at the end. Prints one TAP line per case and
-- a closing "# passed N failed M" line that tests/run.sh adds up.
local tide = require "tide"
package.path = "tests/lib/?.lua;" .. package.path

local file = assert(arg[1], "usage: runner.lua TESTFILE")
local T = require "testlib"
local name = file:match("([^/]+)%.lua$"):gsub("[^%w]", "_"):lower()

local ctx = { file = file }
ctx.tmpdir = os.getenv("PGTIDE_TEST_TMP") or "/tmp"
local admin_src, admin_tgt = os.getenv("PGTIDE_SOURCE_ADMIN"), os.getenv("PGTIDE_TARGET_ADMIN")
local dbname = "t_" .. name
local admins = {}

local function with_db(url, db)
  return (url:gsub("/[^/?]*(%??[^/]*)$", "/" .. db .. "%1"))
end

local function setup()
  if not admin_src then return end
  for side, url in pairs({ source = admin_src, target = admin_tgt }) do
    local c = assert(tide.connect(url))
    assert(c:exec("DROP DATABASE IF EXISTS " .. c:quote_ident(dbname) .. " WITH (FORCE)"))
    assert(c:exec("CREATE DATABASE " .. c:quote_ident(dbname)))
    admins[side] = c
    ctx[side .. "_url"] = with_db(url, dbname)
    ctx[side .. "_admin"] = url
  end
  ctx.dbname = dbname
end

local function teardown()
  for side, c in pairs(admins) do
    c:close()
    -- A fresh connection: a test may have restarted the server under the old one.
    local fresh = tide.connect(side == "source" and admin_src or admin_tgt)
    if fresh and os.getenv("PGTIDE_KEEP_DBS") ~= "1" then
      fresh:exec("DROP DATABASE IF EXISTS " .. fresh:quote_ident(dbname) .. " WITH (FORCE)")
    end
    if fresh then fresh:close() end
  end
end

local chunk = assert(loadfile(file, "t"))
chunk()
setup()
local passed, failed = 0, 0
local only = os.getenv("PGTIDE_TEST_ONLY")
for i, case in ipairs(T.cases) do
  if not only or case.name:find(only, 1, true) then
    local started = tide.monotonic()
    local ok, err = xpcall(case.fn, function(e)
      return debug.traceback(type(e) == "string" and e or tostring(e), 2)
    end, ctx)
    local secs = tide.monotonic() - started
    if ok then
      passed = passed + 1
      print(string.format("ok %d - %s: %s (%.1fs)", i, name, case.name, secs))
    else
      failed = failed + 1
      print(string.format("not ok %d - %s: %s", i, name, case.name))
      for line in tostring(err):gmatch("[^\n]+") do print("#   " .. line) end
    end
    io.stdout:flush()
  end
end
teardown()
print(string.format("# passed %d failed %d", passed, failed))
return failed == 0 and 0 or 1
