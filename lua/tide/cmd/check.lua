-- tide.cmd.check — `pgtide check FILE [--json]`: the prechecks only (tide.precheck), and
-- their report; exit status 0 when nothing fails, 5 when a check fails.
local exit = require "tide.exit"
local precheck = require "tide.precheck"
local report_module = require "tide.precheck.report"

local M = {}

function M.command(task, opts)
  opts = opts or {}
  local report = precheck.evaluate(task, opts)
  if opts.json then
    io.write(report_module.json(report), "\n")
  else
    io.write(report_module.text(report))
  end
  return report.ok and exit.ok or exit.precheck
end

return M
