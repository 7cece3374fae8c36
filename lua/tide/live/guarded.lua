-- tide.live.guarded — coroutines of the live control that may fail without failing the task:
-- spawn(what, fn, ...) runs fn(...) as a coroutine whose error is written to stderr (naming
-- `what`) instead of reaching the migration. The control loop, each attached session and the
-- chunks they run are started this way.
local core = require "tide.core"

local M = {}

function M.spawn(what, fn, ...)
  return core.spawn(function(...)
    local ok, err = xpcall(fn, debug.traceback, ...)
    if not ok then require("tide.log").error("live_failed", "live control (" .. what .. ") failed: " .. tostring(err)) end
  end, ...)
end

return M
