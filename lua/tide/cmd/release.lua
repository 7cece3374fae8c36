-- tide.cmd.release — `pgtide release FILE`: drops what the task's incremental migration made
-- on both sides (slot, publication, heartbeat table, replication origin: tide.cdc.objects)
-- and forgets its recorded progress (tide.state).
local connect = require "tide.connect"
local exit = require "tide.exit"

local M = {}

function M.command(task)
  -- After a cutover (or a rollback) a side may be fenced read-only: releasing is pgtide's own
  -- cleanup, not the application writing.
  local settings = { default_transaction_read_only = "off" }
  local source = connect.open(task, "source", { settings = settings })
  local target = connect.open(task, "target", { settings = settings })
  local dropped = require("tide.cdc.objects").release(task, source, target)
  -- A reverse task made by this task's cutover is a task of its own: released with its playbook.
  local rec = require("tide.state").record(task, target)
  if rec and rec.reverse and rec.reverse.ready then
    local names = require("tide.cdc.reverse").names(task)
    if require("tide.cdc.objects").slot_info(target, names) then
      print(string.format("release: the reverse task %s still has its slot %s on the target: release it with " ..
        "`pgtide release %s`", rec.reverse.task, names.slot, rec.reverse.file or "its playbook"))
    end
  end
  -- The task's recorded progress goes too: with the slot gone, continuing from it would stream
  -- from a new slot's start and miss every change in between. Running the task again after a
  -- release starts over (schema, full load, a new slot).
  if require("tide.state").forget(task, target) then
    dropped[#dropped + 1] = "recorded progress of task " .. task.name .. " (" ..
                            (task.state_schema or "pgtide") .. ".tasks on the target)"
  end
  source:close()
  target:close()
  if #dropped == 0 then
    print("release: nothing to drop for task " .. task.name)
  else
    for _, d in ipairs(dropped) do print("release: dropped " .. d) end
  end
  return exit.ok
end

return M
