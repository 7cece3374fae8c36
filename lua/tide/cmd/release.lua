-- tide.cmd.release — `pgtide release FILE`: drops what the task's incremental migration made
-- on both sides (slot, publication, heartbeat table, replication origin: tide.cdc.objects)
-- and forgets its recorded progress (tide.state).
local connect = require "tide.connect"
local exit = require "tide.exit"

local M = {}

function M.command(task)
  local source, target = connect.open_both(task)
  local dropped = require("tide.cdc.objects").release(task, source, target)
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
