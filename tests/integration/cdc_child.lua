-- Runs one streaming session as its own engine process, the way `pgtide run` will, so tests
-- can SIGTERM or SIGKILL it:
--   pgtide script tests/integration/cdc_child.lua SOURCE_URL TARGET_URL TASK STOPFILE [CONNECTIONS]
-- The stream stops once the target applied the LSN written in STOPFILE. CONNECTIONS:
-- incremental.apply_connections (parallel apply).
package.path = "tests/lib/?.lua;" .. package.path
local H = dofile("tests/integration/cdc_lib.lua")
local P = require "pg"
local cdc = require "tide.cdc"
local when = require "tide.when"

local source_url, target_url, name, stopfile = arg[1], arg[2], arg[3], arg[4]
local connections = math.tointeger(tonumber(arg[5] or ""))
local ctx = { source_url = source_url, target_url = target_url }
local task = H.task(ctx, name, { incremental = { apply_connections = connections }, stop = function(st)
  local f = io.open(stopfile, "r")
  if not f then return false end
  local lsn = f:read("l")
  f:close()
  return lsn ~= nil and st.applied >= when.lsn_number(lsn)
end })
local src, tgt = P.connect(source_url), P.connect(target_url)
local summary = cdc.stream(task, H.plan(src), src, tgt, { quiet = true })
print(string.format("stopped by %s after %d transactions", summary.stopped_by, summary.transactions or 0))
src:close(); tgt:close()
return 0
