-- Helpers shared by integration tests: playbooks written to the test's scratch directory,
-- the pgtide binary run as a child process, and table comparisons computed on the servers.
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

-- Row count and an order-independent checksum of a table (or of a query's rows).
function M.fingerprint(conn, relation, columns)
  local sql = string.format(
    "SELECT count(*) AS n, coalesce(sum(('x' || substr(md5(%s), 1, 15))::bit(60)::int8), 0)::text AS h FROM %s t",
    columns or "t::text", relation)
  local r, err = conn:query(sql)
  assert(r, tostring(err))
  return r[1].n .. ":" .. r[1].h
end

-- Poll `fn` until it returns a true value or `seconds` pass; returns the value or nil.
function M.wait_for(seconds, fn)
  local deadline = tide.monotonic() + seconds
  repeat
    local v = fn()
    if v then return v end
    tide.sleep(0.02)
  until tide.monotonic() > deadline
  return nil
end

function M.connect_both(ctx)
  return assert(tide.connect(ctx.source_url)), assert(tide.connect(ctx.target_url))
end

return M
