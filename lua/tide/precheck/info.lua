-- Information for planning the migration window: how much data the selected tables hold and
-- a rough duration of the full load.
local M = {}

local human_bytes = require("tide.units").human_bytes

local function human_seconds(s)
  if s < 60 then return string.format("%.0f s", s) end
  if s < 3600 then return string.format("%.0f min", s / 60) end
  return string.format("%.1f h", s / 3600)
end
M.human_seconds = human_seconds

-- Sizes come from pg_class statistics (the plan has them). Tables never vacuumed or analyzed
-- have no statistics: those (only those) are measured with pg_table_size in one statement.
function M.estimate(ctx)
  return ctx:once("data_size", function()
    local tables = ctx.plan.tables
    local unknown = {}
    for _, tbl in ipairs(tables) do
      if (tbl.rows_estimate or -1) < 0 or (tbl.pages or 0) == 0 then unknown[#unknown + 1] = tbl.oid end
    end
    local measured = {}
    if #unknown > 0 then
      for _, r in ipairs(ctx:query("source", [[
SELECT u.oid, pg_table_size(u.oid) AS bytes FROM unnest($1::oid[]) AS u(oid)
]], unknown)) do measured[r.oid] = r.bytes end
    end
    local total, rows, largest, largest_key, unanalyzed = 0, 0, 0, nil, 0
    for _, tbl in ipairs(tables) do
      local bytes = measured[tbl.oid] or tbl.bytes or 0
      total = total + bytes
      if (tbl.rows_estimate or -1) >= 0 then rows = rows + tbl.rows_estimate else unanalyzed = unanalyzed + 1 end
      if bytes > largest then largest, largest_key = bytes, tbl.key end
    end
    -- full.jobs = "auto" measures the count as it goes: the estimate assumes 4 streams.
    local fixed = math.type(ctx.task.full.jobs) == "integer" and ctx.task.full.jobs
    local jobs = math.max(1, math.min(fixed or 4, #tables))
    local rate = ctx.settings.throughput
    local seconds = total / (rate * jobs)
    return { tables = #tables, bytes = total, rows = rows, largest = largest, largest_key = largest_key,
             unanalyzed = unanalyzed, jobs = jobs, rate = rate, seconds = seconds }
  end)
end

M.checks = {
  {
    id = "data_size", title = "Data size and full-load duration (estimate)", grade = "info",
    applies = function(ctx) return ctx.phases.full == true end,
    run = function(ctx)
      local e = M.estimate(ctx)
      local message = string.format(
        "%d table(s), %s, about %d rows%s; largest %s (%s). Full load: about %s at %s/s per COPY job with %d job(s) (full.jobs%s), indexes and constraints after that",
        e.tables, human_bytes(e.bytes), e.rows,
        e.unanalyzed > 0 and string.format(" (%d table(s) never analyzed: sizes measured, rows unknown)", e.unanalyzed) or "",
        e.largest_key or "-", human_bytes(e.largest), human_seconds(e.seconds), human_bytes(e.rate), e.jobs,
        math.type(ctx.task.full.jobs) == "integer" and "" or ' = "auto": pgtide adjusts it as it goes')
      return { { object = "source", message = message,
        fix = "measure the real rate with a trial run and set precheck.settings.throughput" } }
    end,
  },
}

return M
