-- tide.cmd.plan — `pgtide plan FILE [--json]`: prints the plan (tide.plan.report), writing
-- nothing; exit status 0 when it can run, 5 when it has errors or conflicts (as a failed
-- precheck: nothing was written).
local connect = require "tide.connect"
local exit = require "tide.exit"
local plan_mod = require "tide.plan"
local report = require "tide.plan.report"

local M = {}

function M.command(task, opts)
  local source, target = connect.open_both(task)
  local ok, plan = pcall(plan_mod.build, task, source, target)
  source:close()
  target:close()
  if not ok then error(plan, 0) end
  if opts and opts.json then
    io.write(report.json(plan), "\n")
  else
    report.print(plan, task)
  end
  return plan_mod.runnable(plan) and exit.ok or exit.precheck
end

return M
