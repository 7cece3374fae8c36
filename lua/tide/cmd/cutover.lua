-- pgtide cutover FILE: tide.cmd.live.cutover, as a command that loads the playbook.
local M = {}

function M.command(task, opts) return require("tide.cmd.live").cutover(task, opts) end

return M
