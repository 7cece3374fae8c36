-- tide.run — `pgtide run FILE`: the whole task, phase after phase.
local connect = require "tide.connect"

local M = {}

function M.command(task, opts)
  local _ = opts
  local source, target = connect.open_both(task)
  task.source, task.target = source, target
  local sv, tv = source:server_version(), target:server_version()
  print(string.format("source: %s (PostgreSQL %s)", task.source_info, connect.version_string(sv)))
  print(string.format("target: %s (PostgreSQL %s)", task.target_info, connect.version_string(tv)))
  source:close()
  target:close()
  return 0
end

return M
