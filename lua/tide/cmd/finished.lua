-- tide.cmd.finished — what `pgtide run` says when the target records the task as done: when
-- it finished, what it did (from tide.state.record), and how to run it again. Nothing is
-- written; the exit status is 0.
local json = require "tide.json"

local M = {}

local function phases_of(task)
  local list = {}
  for _, p in ipairs({ "schema", "full", "incremental" }) do
    if task.phases[p] then list[#list + 1] = p end
  end
  return list
end

-- M.lines(task, rec) → the report, an array of lines (no newlines).
function M.lines(task, rec)
  local out = {}
  local function add(fmt, ...) out[#out + 1] = string.format(fmt, ...) end
  add("task %s already finished on %s UTC (started %s UTC); nothing to do, nothing was written",
      task.name, rec.updated or "?", rec.started or "?")
  add("  phases:      %s", table.concat(phases_of(task), ", "))
  if rec.rows then
    add("  full load:   %d table(s), %d rows, %s in %d part(s)", rec.tables, rec.rows,
        require("tide.progress").human_bytes(rec.bytes or 0), rec.parts)
  end
  if rec.steps > 0 then add("  steps:       %d schema / post-data step(s) recorded", rec.steps) end
  if task.phases.incremental and rec.downtime then
    add("  incremental: cut over by `pgtide cutover`, write downtime %s", require("tide.units").human_seconds(rec.downtime))
    if rec.fence then
      add("  old source:  still fenced (%s on database %s): it takes no writes, and this task does not stream", rec.fence.method or "?",
          rec.fence.database or "?")
      add("               from it again; the application writes to the target now")
    end
  elseif task.phases.incremental then
    add("  incremental: the change stream reached its stop condition and the cutover hooks ran")
  end
  if rec.reverse and rec.reverse.ready then
    add("  reverse:     task %s follows the target back to the old source (slot %s on the target, from %s);",
        rec.reverse.task or "?", rec.reverse.slot or "?", rec.reverse.lsn or "?")
    add("               its playbook: %s (`pgtide status %s` shows its delay while it runs)", rec.reverse.file or "?",
        rec.reverse.task or "?")
  end
  if rec.rolled_back then
    add("  rolled back: by the cutover of task %s: the old source takes writes again", rec.rolled_back.by or "?")
  end
  if rec.slot then
    add("  slot:        the replication slot %s is still on the source and keeps WAL there: drop it with", rec.slot)
    add("               `pgtide release FILE` once you are done with the task")
  end
  add("  recorded in: %s.tasks on the target", task.state_schema or "pgtide")
  add("to migrate again:")
  add("  pgtide release FILE       forget the recorded progress%s;",
      task.phases.incremental and " (and drop the task's slot and publication)" or "")
  add("                            the next `pgtide run` starts over")
  add("  pgtide run FILE --again   the same, then run the task from the beginning; objects already on the")
  add("                            target are kept: drop or empty them first (see `pgtide help run`)")
  return out
end

function M.report(task, rec, opts)
  if opts and opts.json then
    io.write(json.encode({ event = "finished", task = task.name, finished_at = rec.updated, started_at = rec.started,
                           phases = phases_of(task), tables = rec.tables, parts = rec.parts, rows = rec.rows,
                           bytes = rec.bytes, steps = rec.steps, slot = rec.slot, downtime = rec.downtime,
                           fenced = rec.fence ~= nil, reverse = rec.reverse,
                           rolled_back = rec.rolled_back }), "\n")
    return
  end
  io.write(table.concat(M.lines(task, rec), "\n"), "\n")
end

return M
