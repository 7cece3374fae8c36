-- tide.report.html — the page of `pgtide report`: one self-contained HTML file (inline CSS and
-- inline SVG, no script, nothing fetched) from a tide.report.model. Every text that comes from
-- the database or the playbook is escaped (svg.escape).
local svg = require "tide.report.svg"
local units = require "tide.units"

local M = {}

local esc = svg.escape

local CSS = [[
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #1d2430; background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 1px solid #dde; }
table { border-collapse: collapse; margin: 6px 0; } th, td { padding: 3px 10px; text-align: left; border-bottom: 1px solid #eef; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.ok, .pass, .match { color: #17803d; } .fail, .different, .missing, .error, .killed { color: #b42318; }
.warn, .incomplete, .timeout { color: #b54708; }
.chart { display: block; max-width: 100%; height: auto; background: #fbfcfe; border: 1px solid #e4e7ec; }
.chart text { font: 11px system-ui, sans-serif; fill: #344054; }
.chart .axis { stroke: #667085; } .chart .grid { stroke: #eaecf0; }
.chart .bar.part { fill: #2e90fa; } .chart .bar.step { fill: #f79009; }
.chart .series { stroke: #2e90fa; stroke-width: 2; } .chart .series.stream { stroke: #7a5af8; }
.chart .threshold { stroke: #d92d20; stroke-dasharray: 6 4; } .chart .threshold-label { fill: #d92d20; }
.empty { color: #667085; font-style: italic; } .muted { color: #667085; }
ul.findings { margin: 2px 0 8px 18px; padding: 0; }
]]

local function seconds_text(s) return s and string.format("%.1f s", s) or "" end
local function clock(t) return t and os.date("!%Y-%m-%d %H:%M:%S UTC", math.floor(t)) or "" end

local function endpoint_text(e)
  if type(e) ~= "table" then return "?" end
  return string.format("%s:%s/%s", e.host or "(default host)", e.port or "(default port)", e.dbname or "(default db)")
end

local function exit_text(r)
  if r.exit == nil then return "killed or lost (no end recorded)", "killed" end
  if r.exit == 0 then return "0 (ok)", "ok" end
  return tostring(r.exit) .. (r.message and (": " .. r.message) or ""), "fail"
end

local function summary(m, out)
  out[#out + 1] = '<section id="summary"><h2>Summary</h2><table class="summary">'
  local function row(k, v, class)
    out[#out + 1] = string.format('<tr><th>%s</th><td class="%s">%s</td></tr>', esc(k), class or "", v)
  end
  row("task", esc(m.task))
  row("source", esc(endpoint_text(m.source)), "source")
  row("target", esc(endpoint_text(m.target)), "target")
  row("runs", esc(#m.runs), "runs")
  row("from", esc(clock(m.started)))
  row("to", esc(clock(m.ended)))
  row("elapsed", esc(seconds_text(m.totals.seconds)), "elapsed")
  row("tables copied", esc(m.totals.tables), "total-tables")
  row("rows copied", esc(m.totals.rows), "total-rows")
  row("bytes copied", esc(units.human_bytes(m.totals.bytes)), "total-bytes")
  row("table parts", esc(m.totals.parts), "total-parts")
  row("post-data steps", esc(m.totals.steps), "total-steps")
  if m.totals.transactions then
    row("streamed", esc(string.format("%d transactions, %d changes", m.totals.transactions, m.totals.changes or 0)),
        "streamed")
  end
  if m.stop then row("stop condition", esc(m.stop), "stop") end
  out[#out + 1] = "</table>"
  out[#out + 1] = '<h3>Runs and phases</h3><table class="phases"><tr><th>run</th><th>phase</th><th>started</th>' ..
                  '<th class="num">duration</th><th>result</th></tr>'
  for _, r in ipairs(m.runs) do
    local text, class = exit_text(r)
    out[#out + 1] = string.format('<tr class="run" data-run="%d"><td>%d</td><td><b>run</b></td><td>%s</td>' ..
                                  '<td class="num duration" data-run="%d" data-phase="run">%s</td><td class="%s">%s</td></tr>',
                                  r.no, r.no, esc(clock(r.started)), r.no, esc(seconds_text(r.ended - r.started)), class,
                                  esc(text))
    for _, ph in ipairs(r.phases) do
      out[#out + 1] = string.format('<tr class="phase"><td>%d</td><td>%s</td><td>%s</td>' ..
                                    '<td class="num duration" data-run="%d" data-phase="%s">%s</td><td class="%s">%s</td></tr>',
                                    r.no, esc(ph.name), esc(clock(ph.started)), r.no, esc(ph.name), esc(seconds_text(ph.seconds)),
                                    ph.finished and "ok" or "killed",
                                    esc(ph.finished and (ph.detail or "done") or "interrupted"))
    end
  end
  out[#out + 1] = "</table></section>"
end

local function tables_section(m, out)
  out[#out + 1] = '<section id="tables"><h2>Tables</h2>'
  if #m.tables == 0 then
    out[#out + 1] = '<p class="empty">No table was copied.</p></section>'
    return
  end
  out[#out + 1] = '<table class="tables"><tr><th>table</th><th class="num">parts</th><th class="num">rows</th>' ..
                  '<th class="num">bytes</th><th class="num">copy time</th></tr>'
  for _, t in ipairs(m.tables) do
    out[#out + 1] = string.format('<tr class="table" data-table="%s"><td class="name">%s</td><td class="num parts">%d</td>' ..
                                  '<td class="num rows">%d</td><td class="num bytes">%s</td><td class="num">%s</td></tr>',
                                  esc(t.key), esc(t.key), t.parts, t.rows, esc(units.human_bytes(t.bytes)),
                                  esc(seconds_text(t.seconds)))
  end
  out[#out + 1] = "</table></section>"
end

local function charts(m, out)
  out[#out + 1] = '<section id="gantt"><h2>Full load over time</h2>' ..
                  '<p class="muted">One bar per table part (blue) and per post-data step (orange).</p>'
  out[#out + 1] = svg.gantt(m)
  out[#out + 1] = "</section>"
  out[#out + 1] = '<section id="throughput"><h2>Throughput over time</h2>'
  local load_pts, stream_pts = {}, {}
  for _, s in ipairs(m.load_rate) do load_pts[#load_pts + 1] = { s.t, s.rate } end
  for _, s in ipairs(m.stream_samples) do if s.rate then stream_pts[#stream_pts + 1] = { s.t, s.rate } end end
  if #load_pts > 0 then
    out[#out + 1] = "<h3>Full load (bytes per second)</h3>"
    out[#out + 1] = svg.line_chart { class = "throughput-load", title = "Full load throughput", y_title = "bytes/s",
      series = { { points = load_pts, class = "load", name = "bytes per second" } },
      y_format = function(v) return units.human_bytes(v) end }
  end
  if #stream_pts > 0 then
    out[#out + 1] = "<h3>Change stream (changes applied per second)</h3>"
    out[#out + 1] = svg.line_chart { class = "throughput-stream", title = "Changes applied per second",
      y_title = "changes/s", series = { { points = stream_pts, class = "stream", name = "changes per second" } } }
  end
  if #load_pts == 0 and #stream_pts == 0 then out[#out + 1] = '<p class="empty">No samples were recorded.</p>' end
  out[#out + 1] = "</section>"
  out[#out + 1] = '<section id="delay"><h2>Delay over time</h2>'
  local delay_pts = {}
  for _, s in ipairs(m.stream_samples) do delay_pts[#delay_pts + 1] = { s.t, s.delay } end
  if #delay_pts > 0 then
    out[#out + 1] = svg.line_chart { class = "delay", title = "Delay of the target behind the source",
      y_title = "delay (s)", series = { { points = delay_pts, class = "stream", name = "delay (seconds)" } },
      threshold = m.threshold,
      threshold_label = m.threshold and string.format("stop condition: lag below %g s", m.threshold) or nil,
      y_format = function(v) return string.format("%g s", v) end }
  else
    out[#out + 1] = '<p class="empty">The task did not stream changes.</p>'
  end
  out[#out + 1] = "</section>"
end

local function prechecks(m, out)
  out[#out + 1] = '<section id="prechecks"><h2>Prechecks</h2>'
  local p = m.precheck
  if not p then
    out[#out + 1] = '<p class="empty">No precheck report was recorded.</p></section>'
    return
  end
  out[#out + 1] = string.format('<p>Run %d: <span class="%s">%s</span></p>', m.precheck_run or 0,
                                p.ok and "ok" or "fail", esc(p.ok and "passed" or "failed"))
  out[#out + 1] = '<table class="prechecks"><tr><th>check</th><th>status</th><th>findings</th></tr>'
  for _, c in ipairs(p.checks or {}) do
    local findings = {}
    for _, f in ipairs(c.findings or {}) do
      findings[#findings + 1] = "<li>" .. esc((f.object and (f.object .. ": ") or "") .. (f.message or "")) ..
                                (f.fix and (' <span class="muted">' .. esc(f.fix) .. "</span>") or "") .. "</li>"
    end
    out[#out + 1] = string.format('<tr class="check" data-check="%s"><td>%s</td><td class="%s">%s</td><td>%s</td></tr>',
                                  esc(c.id), esc(c.title or c.id), esc(c.status), esc(c.status),
                                  #findings > 0 and ('<ul class="findings">' .. table.concat(findings) .. "</ul>") or "")
  end
  out[#out + 1] = "</table></section>"
end

local function verification(m, out)
  out[#out + 1] = '<section id="verify"><h2>Verification</h2>'
  local v = m.verify
  if not v then
    out[#out + 1] = '<p class="empty">The task did not verify its tables (no verification hook ran).</p></section>'
    return
  end
  out[#out + 1] = string.format('<p>Status: <span class="%s">%s</span>%s</p>', esc(v.status), esc(v.status),
                                v.seconds and (" in " .. esc(seconds_text(v.seconds))) or "")
  out[#out + 1] = '<table class="verify"><tr><th>table</th><th>status</th><th class="num">source rows</th>' ..
                  '<th class="num">target rows</th></tr>'
  for _, t in ipairs(v.tables or {}) do
    out[#out + 1] = string.format('<tr data-table="%s"><td>%s</td><td class="%s">%s</td><td class="num">%s</td>' ..
                                  '<td class="num">%s</td></tr>', esc(t.table), esc(t.table), esc(t.status),
                                  esc(t.status .. (t.error and (": " .. t.error) or "")),
                                  esc(t.source_rows or ""), esc(t.target_rows or ""))
  end
  out[#out + 1] = "</table></section>"
end

local function cutover(m, out)
  out[#out + 1] = '<section id="cutover"><h2>Cutover</h2>'
  local c = m.cutover
  if not c then
    out[#out + 1] = '<p class="empty">No cutover was recorded.</p></section>'
    return
  end
  out[#out + 1] = '<table class="cutover">'
  if c.fired then
    out[#out + 1] = string.format('<tr><th>stop condition held</th><td>%s%s</td></tr>', esc(clock(c.fired)),
                                  c.delay and esc(string.format(" (delay %.3f s)", c.delay)) or "")
  end
  for _, h in ipairs(c.hooks) do
    out[#out + 1] = string.format('<tr><th>cutover hook %s</th><td class="%s">%s, %s%s</td></tr>', esc(h.hook),
                                  h.ok == false and "fail" or "ok", esc(clock(h.started)),
                                  esc(seconds_text(h.ended and (h.ended - h.started))),
                                  h.error and esc(": " .. h.error) or "")
  end
  if c.fired and c.ended then
    out[#out + 1] = string.format('<tr><th>cutover (stop condition to last hook done)</th><td class="downtime">%s</td></tr>',
                                  esc(seconds_text(c.ended - c.fired)))
  end
  out[#out + 1] = "</table></section>"
end

local function notes(m, out)
  if #m.notes == 0 then return end
  out[#out + 1] = '<section id="notes"><h2>Notes</h2><ul>'
  for _, n in ipairs(m.notes) do
    out[#out + 1] = string.format("<li>run %d, %s: %s</li>", n.run, esc(clock(n.t)), esc(n.message))
  end
  out[#out + 1] = "</ul></section>"
end

-- M.page(model) → the HTML text.
function M.page(m)
  local out = {
    "<!DOCTYPE html>",
    '<html lang="en"><head><meta charset="utf-8">',
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    "<title>pgtide report: " .. esc(m.task) .. "</title>",
    "<style>" .. CSS .. "</style></head><body>",
    '<h1>pgtide report: <span class="task">' .. esc(m.task) .. "</span></h1>",
    '<p class="muted">Written ' .. esc(clock(os.time())) .. " from the timeline the task's runs recorded on the target.</p>",
  }
  if #m.runs == 0 then
    out[#out + 1] = '<p class="empty">The target holds no run of this task.</p>'
  end
  summary(m, out)
  tables_section(m, out)
  charts(m, out)
  prechecks(m, out)
  verification(m, out)
  cutover(m, out)
  notes(m, out)
  out[#out + 1] = "</body></html>\n"
  return table.concat(out, "\n")
end

return M
