-- tide.report.model — the runs of a task as `pgtide report` shows them, built from the
-- timeline events (tide.timeline.read) and the task's state on the target.
--
-- M.build(runs, extra) → model
--   runs   tide.timeline.read's list (oldest run first)
--   extra  { task =, parts = copy_parts rows, steps = steps rows } (optional): the state
--          tables are written in the same transactions as the work, so a part whose event a
--          kill lost is still shown, with its real rows, bytes and times
-- model = {
--   task =, source = { host =, port =, dbname = }, target = {...}, threshold = seconds | nil,
--   stop = text | nil, started =, ended =,          -- epoch seconds
--   runs = { { no =, id =, started =, ended =, exit = status | nil (killed), message =,
--              phases = { { name =, started =, ended =, seconds =, finished = bool } } } },
--   parts = { { table =, part =, no =, count =, started =, ended =, rows =, bytes =, run = } },
--   steps = { { key =, kind =, started =, ended =, run = } },
--   tables = { { key =, parts =, rows =, bytes =, seconds = } },   -- sorted by key
--   load_rate = { { t =, rate = bytes/s } } (from the parts, each spread evenly over its time),
--   stream_samples = { { t =, delay =,
--   bytes_behind =, transactions =, changes =, rate = changes/s, run = } },
--   precheck = data | nil (the latest run's), verify = summary | nil,
--   cutover = { fired =, hooks = { { hook =, started =, ended =, ok =, error = } }, ended = } | nil,
--   notes = { { t =, run =, message = } },
--   totals = { rows =, bytes =, parts =, tables =, steps =, runs =, seconds =, transactions =, changes = },
-- }
local M = {}

local function add(list, v) list[#list + 1] = v end

local function run_model(no, run)
  local r = { no = no, id = run.id, phases = {}, started = run.events[1] and run.events[1].at }
  local open = {}
  for _, e in ipairs(run.events) do
    r.ended = e.at
    if e.kind == "phase_start" then
      local ph = { name = e.data.phase, started = e.at, finished = false }
      add(r.phases, ph)
      open[ph.name] = ph
    elseif e.kind == "phase_end" and open[e.data.phase] then
      local ph = open[e.data.phase]
      ph.ended, ph.finished, ph.detail = e.at, true, e.data.detail
      open[e.data.phase] = nil
    elseif e.kind == "run_end" then
      r.exit, r.message = e.data.exit, e.data.message
    end
  end
  for _, ph in ipairs(r.phases) do
    ph.ended = ph.ended or r.ended
    ph.seconds = ph.ended - ph.started
  end
  return r
end

local function number(v) return tonumber(v) end

-- Bytes per second of the full load over time: each part's bytes spread evenly over its
-- copy time, summed in up to `bins` time slices of at least a second.
function M.load_rate(parts, bins)
  bins = bins or 120
  local t0, t1 = math.huge, -math.huge
  for _, p in ipairs(parts) do t0, t1 = math.min(t0, p.started), math.max(t1, p.ended) end
  if t0 > t1 then return {} end
  local width = math.max(1, (t1 - t0) / bins)
  local n = math.max(1, math.ceil((t1 - t0) / width))
  local sums = {}
  for i = 1, n do sums[i] = 0 end
  for _, p in ipairs(parts) do
    local span = math.max(p.ended - p.started, 1e-3)
    for i = 1, n do
      local a, b = t0 + (i - 1) * width, t0 + i * width
      local overlap = math.min(b, p.started + span) - math.max(a, p.started)
      if overlap > 0 then sums[i] = sums[i] + p.bytes * overlap / span end
    end
  end
  local out = {}
  for i = 1, n do out[i] = { t = t0 + (i - 0.5) * width, rate = sums[i] / width } end
  return out
end

function M.build(runs, extra)
  extra = extra or {}
  local m = { task = extra.task, runs = {}, parts = {}, steps = {}, tables = {},
              stream_samples = {}, notes = {}, totals = {} }
  local seen_parts, seen_steps = {}, {}
  for no, run in ipairs(runs) do
    local r = run_model(no, run)
    add(m.runs, r)
    local last_stream
    for _, e in ipairs(run.events) do
      local d = e.data
      if e.kind == "run_start" then
        m.source, m.target = d.source or m.source, d.target or m.target
        if d.threshold then m.threshold = d.threshold end
        if d.stop then m.stop = d.stop end
      elseif e.kind == "part_done" and d.part and not seen_parts[d.part] then
        seen_parts[d.part] = true
        add(m.parts, { table = d.table, part = d.part, no = d.part_no or 1, count = d.parts or 1,
                       started = e.at - (d.seconds or 0), ended = e.at, rows = d.rows or 0, bytes = d.bytes or 0,
                       run = no })
      elseif e.kind == "step_done" and d.step and not seen_steps[d.step] then
        seen_steps[d.step] = true
        add(m.steps, { key = d.step, kind = d.kind, started = e.at - (d.seconds or 0), ended = e.at, run = no })
      elseif e.kind == "sample" and d.what == "stream" then
        local rate
        if last_stream and e.at > last_stream.t then
          rate = math.max(0, ((d.changes or 0) - last_stream.changes) / (e.at - last_stream.t))
        end
        add(m.stream_samples, { t = e.at, delay = d.delay or 0, bytes_behind = d.bytes_behind or 0,
                                transactions = d.transactions or 0, changes = d.changes or 0, rate = rate, run = no })
        last_stream = { t = e.at, changes = d.changes or 0, transactions = d.transactions or 0 }
      elseif e.kind == "precheck" then
        m.precheck = d
        m.precheck_run = no
      elseif e.kind == "stop_condition" then
        m.cutover = { fired = e.at, condition = d.condition, delay = d.delay, hooks = {}, run = no }
      elseif e.kind == "cutover_hook_start" then
        m.cutover = m.cutover or { hooks = {}, run = no }
        add(m.cutover.hooks, { hook = d.hook, started = e.at })
      elseif e.kind == "cutover_hook_end" then
        m.cutover = m.cutover or { hooks = {}, run = no }
        local h = m.cutover.hooks[#m.cutover.hooks]
        if not h or h.hook ~= d.hook then
          h = { hook = d.hook, started = e.at - (d.seconds or 0) }
          add(m.cutover.hooks, h)
        end
        h.ended, h.ok, h.error = e.at, d.ok, d.error
        m.cutover.ended = e.at
        if d.verify then m.verify = d.verify end
      elseif e.kind == "note" then
        add(m.notes, { t = e.at, run = no, message = d.message })
      end
    end
    if last_stream then
      m.totals.transactions = (m.totals.transactions or 0) + last_stream.transactions
      m.totals.changes = (m.totals.changes or 0) + last_stream.changes
    end
  end
  -- Parts committed whose events were lost (a kill before the timeline was written).
  for _, p in ipairs(extra.parts or {}) do
    local ended, seconds = number(p.done_epoch), number(p.seconds)
    if ended and not seen_parts[p.part] then
      seen_parts[p.part] = true
      add(m.parts, { table = p.table_key, part = p.part, no = number(p.part_no) or 1, count = number(p.parts) or 1,
                     started = ended - (seconds or 0), ended = ended, rows = number(p.rows) or 0,
                     bytes = number(p.bytes) or 0 })
    elseif ended then
      -- The state table is what the target holds: its counts win.
      for _, mp in ipairs(m.parts) do
        if mp.part == p.part then mp.rows, mp.bytes = number(p.rows) or mp.rows, number(p.bytes) or mp.bytes end
      end
    end
  end
  for _, s in ipairs(extra.steps or {}) do
    local ended = number(s.done_epoch)
    if ended and not seen_steps[s.step] then
      seen_steps[s.step] = true
      add(m.steps, { key = s.step, kind = s.step:match("^([%w_]+)"), started = ended - (number(s.seconds) or 0),
                     ended = ended })
    end
  end
  table.sort(m.parts, function(a, b)
    if a.table ~= b.table then return a.table < b.table end
    return a.no < b.no
  end)
  table.sort(m.steps, function(a, b) return a.started < b.started end)
  local by_table = {}
  for _, p in ipairs(m.parts) do
    local t = by_table[p.table]
    if not t then
      t = { key = p.table, parts = 0, rows = 0, bytes = 0, started = p.started, ended = p.ended }
      by_table[p.table] = t
      add(m.tables, t)
    end
    t.parts, t.rows, t.bytes = t.parts + 1, t.rows + p.rows, t.bytes + p.bytes
    t.started, t.ended = math.min(t.started, p.started), math.max(t.ended, p.ended)
  end
  local tot = m.totals
  tot.rows, tot.bytes, tot.parts, tot.tables, tot.steps, tot.runs = 0, 0, #m.parts, #m.tables, #m.steps, #m.runs
  for _, t in ipairs(m.tables) do
    t.seconds = t.ended - t.started
    tot.rows, tot.bytes = tot.rows + t.rows, tot.bytes + t.bytes
  end
  for _, r in ipairs(m.runs) do
    m.started = m.started and math.min(m.started, r.started) or r.started
    m.ended = m.ended and math.max(m.ended, r.ended) or r.ended
  end
  tot.seconds = m.started and (m.ended - m.started) or 0
  m.load_rate = M.load_rate(m.parts)
  return m
end

return M
