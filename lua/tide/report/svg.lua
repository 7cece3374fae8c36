-- tide.report.svg — the charts of `pgtide report`, as inline SVG text: a Gantt chart of the full
-- load (one bar per table part and per post-data step) and line charts over time (throughput,
-- delay with the stop condition's threshold). Every text that comes from the database goes
-- through M.escape. Times are epoch seconds; the axis shows UTC clock times.
local M = {}

local ENTITIES = { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;", ["'"] = "&#39;" }

-- Text for HTML or SVG, in element content or in a quoted attribute.
function M.escape(v)
  return (tostring(v == nil and "" or v):gsub("[&<>\"']", ENTITIES))
end
local esc = M.escape

local function num(v) return string.format("%.1f", v) end

-- Tick marks for a time span: a round step giving at most `max` ticks.
local STEPS = { 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400 }

function M.time_ticks(t0, t1, max)
  max = max or 8
  local span = math.max(t1 - t0, 1)
  local step = STEPS[#STEPS]
  for _, s in ipairs(STEPS) do
    if span / s <= max then step = s break end
  end
  local ticks = {}
  local first = math.ceil(t0 / step) * step
  for t = first, t1 + 1e-9, step do ticks[#ticks + 1] = t end
  if #ticks == 0 then ticks[1] = t0 end
  return ticks, step
end

function M.clock(t, step)
  local fmt = (step and step >= 60) and "!%H:%M" or "!%H:%M:%S"
  return os.date(fmt, math.floor(t))
end

-- A "nice" upper bound for a value axis.
function M.nice_max(v)
  if not v or v <= 0 then return 1 end
  local e = 10 ^ math.floor(math.log(v, 10))
  for _, f in ipairs({ 1, 2, 2.5, 5, 10 }) do
    if v <= f * e then return f * e end
  end
  return 10 * e
end

local function time_axis(out, t0, t1, x_of, y, height_top)
  local ticks, step = M.time_ticks(t0, t1)
  for _, t in ipairs(ticks) do
    local x = x_of(t)
    out[#out + 1] = string.format('<line class="grid" x1="%s" y1="%s" x2="%s" y2="%s"/>', num(x), num(height_top),
                                  num(x), num(y))
    out[#out + 1] = string.format('<text class="axis-label tick" x="%s" y="%s" text-anchor="middle">%s</text>',
                                  num(x), num(y + 14), esc(M.clock(t, step)))
  end
end

-- M.gantt(model, opts) → svg text; opts.width (default 960).
function M.gantt(model, opts)
  opts = opts or {}
  local rows = {}
  for _, p in ipairs(model.parts) do
    rows[#rows + 1] = { label = p.count > 1 and string.format("%s (part %d/%d)", p.table, p.no, p.count) or p.table,
                        started = p.started, ended = p.ended, class = "bar part", key = p.table,
                        title = string.format("%s: %d rows, %d bytes, %.1f s", p.part, p.rows, p.bytes,
                                              p.ended - p.started) }
  end
  for _, s in ipairs(model.steps) do
    rows[#rows + 1] = { label = s.key, started = s.started, ended = s.ended, class = "bar step", key = s.key,
                        title = string.format("%s: %.1f s", s.key, s.ended - s.started) }
  end
  if #rows == 0 then return '<p class="empty">No table part or post-data step was recorded.</p>' end
  local t0, t1 = math.huge, -math.huge
  for _, r in ipairs(rows) do t0, t1 = math.min(t0, r.started), math.max(t1, r.ended) end
  if t1 - t0 < 1 then t1 = t0 + 1 end
  local width, label_w, row_h = opts.width or 960, 300, 18
  local plot_w = width - label_w - 40   -- room for the last tick's label
  local top = 10
  local height = top + #rows * row_h + 40
  local function x_of(t) return label_w + (t - t0) / (t1 - t0) * plot_w end
  local out = { string.format('<svg class="chart gantt" xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" ' ..
                              'viewBox="0 0 %d %d" role="img">', width, height, width, height) }
  out[#out + 1] = '<title>Full load: table parts and post-data steps over time</title>'
  local bottom = top + #rows * row_h
  time_axis(out, t0, t1, x_of, bottom, top)
  for i, r in ipairs(rows) do
    local y = top + (i - 1) * row_h
    local x = x_of(r.started)
    local w = math.max(1.5, x_of(r.ended) - x)
    out[#out + 1] = string.format('<text class="label" x="%d" y="%s" text-anchor="end">%s</text>', label_w - 6,
                                  num(y + row_h - 5), esc(r.label))
    out[#out + 1] = string.format('<rect class="%s" data-key="%s" x="%s" y="%s" width="%s" height="%d" rx="2">' ..
                                  '<title>%s</title></rect>', r.class, esc(r.key), num(x), num(y + 3), num(w),
                                  row_h - 6, esc(r.title))
  end
  out[#out + 1] = string.format('<line class="axis" x1="%d" y1="%d" x2="%d" y2="%d"/>', label_w, bottom,
                                label_w + plot_w, bottom)
  out[#out + 1] = string.format('<text class="axis-title" x="%s" y="%d" text-anchor="middle">time (UTC)</text>',
                                num(label_w + plot_w / 2), bottom + 32)
  out[#out + 1] = "</svg>"
  return table.concat(out, "\n")
end

-- M.line_chart{ series = { { points = { {t, v}, ... }, class =, name = }, ... }, y_title =,
--   y_format = function(v) → text, threshold = v | nil, threshold_label =, t0 =, t1 =, width = }
function M.line_chart(spec)
  local width, height = spec.width or 960, spec.height or 240
  local left, right, top, bottom_pad = 80, 40, 14, 46
  local plot_w, plot_h = width - left - right, height - top - bottom_pad
  local t0, t1, vmax = spec.t0, spec.t1, 0
  for _, s in ipairs(spec.series) do
    for _, p in ipairs(s.points) do
      t0 = math.min(t0 or p[1], p[1]); t1 = math.max(t1 or p[1], p[1]); vmax = math.max(vmax, p[2])
    end
  end
  if not t0 then return '<p class="empty">No samples were recorded.</p>' end
  if spec.threshold then vmax = math.max(vmax, spec.threshold * 1.2) end
  if t1 - t0 < 1 then t1 = t0 + 1 end
  vmax = M.nice_max(vmax)
  local fmt = spec.y_format or function(v) return string.format("%g", v) end
  local function x_of(t) return left + (t - t0) / (t1 - t0) * plot_w end
  local function y_of(v) return top + plot_h - v / vmax * plot_h end
  local bottom = top + plot_h
  local out = { string.format('<svg class="chart line-chart %s" xmlns="http://www.w3.org/2000/svg" width="%d" ' ..
                              'height="%d" viewBox="0 0 %d %d" role="img">', esc(spec.class or ""), width, height,
                              width, height) }
  out[#out + 1] = "<title>" .. esc(spec.title or "") .. "</title>"
  time_axis(out, t0, t1, x_of, bottom, top)
  for i = 0, 4 do
    local v = vmax * i / 4
    out[#out + 1] = string.format('<line class="grid" x1="%d" y1="%s" x2="%d" y2="%s"/>', left, num(y_of(v)),
                                  width - right, num(y_of(v)))
    out[#out + 1] = string.format('<text class="axis-label value" x="%d" y="%s" text-anchor="end">%s</text>',
                                  left - 6, num(y_of(v) + 4), esc(fmt(v)))
  end
  for _, s in ipairs(spec.series) do
    local pts = {}
    for _, p in ipairs(s.points) do pts[#pts + 1] = num(x_of(p[1])) .. "," .. num(y_of(p[2])) end
    if #pts == 1 then pts[2] = pts[1] end
    out[#out + 1] = string.format('<polyline class="series %s" fill="none" points="%s"><title>%s</title></polyline>',
                                  esc(s.class or ""), table.concat(pts, " "), esc(s.name or ""))
  end
  if spec.threshold then
    local y = num(y_of(spec.threshold))
    out[#out + 1] = string.format('<line class="threshold" x1="%d" y1="%s" x2="%d" y2="%s"/>', left, y,
                                  width - right, y)
    out[#out + 1] = string.format('<text class="threshold-label" x="%d" y="%s" text-anchor="end">%s</text>',
                                  width - right - 4, num(y_of(spec.threshold) - 4), esc(spec.threshold_label or ""))
  end
  out[#out + 1] = string.format('<line class="axis" x1="%d" y1="%d" x2="%d" y2="%d"/>', left, bottom, width - right,
                                bottom)
  out[#out + 1] = string.format('<line class="axis" x1="%d" y1="%d" x2="%d" y2="%d"/>', left, top, left, bottom)
  out[#out + 1] = string.format('<text class="axis-title" x="%s" y="%d" text-anchor="middle">time (UTC)</text>',
                                num(left + plot_w / 2), bottom + 34)
  out[#out + 1] = string.format('<text class="axis-title" x="14" y="%s" transform="rotate(-90 14 %s)" ' ..
                                'text-anchor="middle">%s</text>', num(top + plot_h / 2), num(top + plot_h / 2),
                                esc(spec.y_title or ""))
  out[#out + 1] = "</svg>"
  return table.concat(out, "\n")
end

return M
