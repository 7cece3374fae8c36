-- Helpers shared by integration tests that drive pgtide as a user does: playbooks written to
-- the test's scratch directory, the pgtide binary run as a child process, its log read.
-- Connections, waiting and comparing tables: tests/lib/pg.lua.
local tide = require "tide"
local T = require "testlib"

local M = {}

M.PGTIDE = os.getenv("PGTIDE") or "build/pgtide"

-- Write a playbook; `body` is the Lua text inside tide.task { ... } (name/source/target added).
function M.playbook(ctx, name, body)
  local path = ctx.tmpdir .. "/" .. name .. ".lua"
  local f = assert(io.open(path, "w"))
  f:write(string.format([[
local tide = require "tide"
return tide.task {
  name = %q,
  source = %q,
  target = %q,
%s
}
]], name, ctx.source_url, ctx.target_url, body or ""))
  f:close()
  return path
end

-- A playbook's `stop` that ends streaming once the applied position reaches the LSN a test
-- writes into `stopfile` (a line like 0/1A2B3C; M.write_stop writes the source's current one).
function M.stop_at_file(stopfile)
  return string.format([[
  stop = function(st)
    local f = io.open(%q)
    if not f then return false end
    local hi, lo = (f:read("l") or ""):match("^(%%x+)/(%%x+)$")
    f:close()
    return hi ~= nil and st.applied >= tonumber(hi, 16) * 4294967296 + tonumber(lo, 16)
  end,]], stopfile)
end

-- The source's current WAL position (synchronous_commit on for `conn` from here, so what it
-- commits next is flushed before its commit returns)
-- into `stopfile`, for M.stop_at_file.
function M.write_stop(conn, stopfile)
  assert(conn:exec("SET synchronous_commit = on"))
  local lsn = assert(conn:query("SELECT pg_catalog.pg_current_wal_insert_lsn()::text AS lsn"))[1].lsn
  local f = assert(io.open(stopfile, "w"))
  f:write(lsn, "\n")
  f:close()
end

-- Run pgtide (blocking the test's loop, which has nothing else to do meanwhile).
function M.run(args)
  return T.sh(M.PGTIDE .. " " .. args)
end

-- Start pgtide as a child process on the loop; returns the process handle and its log path.
function M.start(ctx, args, log_name)
  local log = ctx.tmpdir .. "/" .. (log_name or "pgtide") .. ".log"
  os.remove(log)
  local argv = { M.PGTIDE }
  for a in args:gmatch("%S+") do argv[#argv + 1] = a end
  argv.stdout, argv.stderr = log, log
  return assert(tide.process(argv)), log
end

function M.read(path)
  local f = io.open(path)
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end

return M
