-- tide.cmd.report — `pgtide report FILE [-o PATH]`: reads the timeline the task's runs recorded
-- on the target (tide.timeline) and its state tables (tide.state), and writes one
-- self-contained HTML page (tide.report.html): summary, Gantt chart of the full load,
-- throughput and delay over time, prechecks, verification, cutover. Only the target is read.
local exit = require "tide.exit"
local failure = require "tide.failure"

local M = {}

local USAGE = "report needs a playbook FILE and at most -o PATH"

-- The task's copy_parts and steps rows with their times as epoch seconds (empty lists when the
-- target holds no state for the task).
local function state_rows(task, conn)
  local schema = conn:quote_ident(task.state_schema or "pgtide")
  local r = assert(conn:query("SELECT pg_catalog.to_regclass($1) IS NOT NULL AS parts, " ..
                              "pg_catalog.to_regclass($2) IS NOT NULL AS steps", schema .. ".copy_parts",
                              schema .. ".steps"))[1]
  local parts, steps = {}, {}
  if r.parts then
    parts = assert(conn:query("SELECT part, table_key, part_no, parts, rows, bytes, seconds, " ..
                              "extract(epoch FROM done_at)::float8 AS done_epoch FROM " .. schema ..
                              ".copy_parts WHERE task = $1 AND done_at IS NOT NULL", task.name))
  end
  if r.steps then
    steps = assert(conn:query("SELECT step, seconds, extract(epoch FROM done_at)::float8 AS done_epoch FROM " ..
                              schema .. ".steps WHERE task = $1 AND seconds IS NOT NULL", task.name))
  end
  return parts, steps
end

-- M.model(task, conn) → tide.report.model of what the target holds for the task.
function M.model(task, conn)
  local runs = require("tide.timeline").read(task, conn)
  local parts, steps = state_rows(task, conn)
  return require("tide.report.model").build(runs, { task = task.name, parts = parts, steps = steps })
end

local function default_path(task)
  return (task.name:gsub("[^%w%._%-]", "_")) .. "-report.html"
end

function M.main(args)
  local file, output
  local i = 1
  while i <= #args do
    local a = args[i]
    if a == "-o" or a == "--output" then
      i = i + 1
      output = args[i]
      if not output or output == "" then failure.raise("usage", USAGE) end
    elseif a:match("^%-%-output=") then
      output = a:match("^%-%-output=(.*)$")
    elseif a:match("^%-") then
      failure.raise("usage", "unknown option " .. a .. " (report takes -o PATH)")
    elseif file then
      failure.raise("usage", USAGE)
    else
      file = a
    end
    i = i + 1
  end
  if not file then failure.raise("usage", USAGE) end
  local task = require("tide.playbook").load(file)
  local conn = require("tide.connect").open(task, "target", { application_name = "pgtide-report:" .. task.name })
  local ok, model = pcall(M.model, task, conn)
  conn:close()
  if not ok then error(model, 0) end
  if #model.runs == 0 then
    failure.raise("failed", string.format("the target (%s) holds no run of task %s: its timeline is written by " ..
      "`pgtide run` (and forgotten by `pgtide release`)", task.target_info, task.name))
  end
  local html = require("tide.report.html").page(model)
  output = output or default_path(task)
  -- Written beside the final name and renamed: a reader never sees half a page.
  local tmp = output .. ".tmp"
  local f, err = io.open(tmp, "w")
  if not f then failure.raise("failed", "cannot write the report: " .. tostring(err)) end
  f:write(html)
  f:close()
  local rok, rerr = os.rename(tmp, output)
  if not rok then
    os.remove(tmp)
    failure.raise("failed", "cannot write the report " .. output .. ": " .. tostring(rerr))
  end
  print(string.format("report: wrote %s (%d run%s, %d tables, %d parts, %d post-data steps)", output, #model.runs,
                      #model.runs == 1 and "" or "s", model.totals.tables, model.totals.parts, model.totals.steps))
  return exit.ok
end

return M
