-- tide.progress — what a person (or a machine) sees while a task runs.
--
-- Modes (playbook `progress`, or --json on the command line):
--   bar    on a terminal: a bar for the whole load (bytes, rows, rate, ETA from the source's
--          size estimates) and one line per running part, redrawn twice a second
--   plain  when not a terminal: timestamped lines for each finished table and every 10 s
--   json   one JSON object per event on stdout ({"event": "...", "time": ..., ...})
--   none   nothing but errors
-- At the end of the load a summary table: per table rows, bytes, seconds, format, parts; and
-- per phase seconds.
local tide = require "tide.core"
local json = require "tide.json"
local units = require "tide.units"

local M = {}
local Progress = {}
Progress.__index = Progress

function M.new(task, opts)
  opts = opts or {}
  local mode = opts.json and "json" or task.progress or "auto"
  if mode == "auto" then mode = tide.isatty(1) and "bar" or "plain" end
  local p = setmetatable({ task = task, mode = mode, out = opts.output or io.stdout, phases = {},
                           started = tide.monotonic(), drawn_lines = 0 }, Progress)
  return p
end

local human_bytes, human_seconds = units.human_bytes, units.human_seconds
M.human_bytes, M.human_seconds = human_bytes, human_seconds

-- Every event goes to the run's timeline (tide.timeline) when it has one, whatever the mode.
function Progress:emit(event, fields)
  if self.timeline then self.timeline:record(event, fields) end
  if self.mode ~= "json" then return end
  local obj = { event = event, time = tide.now(), task = self.task.name }
  for k, v in pairs(fields or {}) do obj[k] = v end
  self.out:write(json.encode(obj), "\n")
  self.out:flush()
end

function Progress:line(fmt, ...)
  if self.mode == "none" or self.mode == "json" then return end
  self:clear()
  self.out:write(os.date("%H:%M:%S "), string.format(fmt, ...), "\n")
  self.out:flush()
end

function Progress:note(msg)
  self:line("note: %s", msg)
  self:emit("note", { message = msg })
end

-- Phase timing: phase_start("schema"), phase_end("schema").
function Progress:phase_start(name)
  self.phases[#self.phases + 1] = { name = name, started = tide.monotonic() }
  self:line("%s: started", name)
  self:emit("phase_start", { phase = name })
end

function Progress:phase_end(name, detail)
  for _, ph in ipairs(self.phases) do
    if ph.name == name and not ph.seconds then ph.seconds = tide.monotonic() - ph.started end
  end
  self:line("%s: done%s", name, detail and (", " .. detail) or "")
  self:emit("phase_end", { phase = name, detail = detail })
end

------------------------------------------------------------------------ the full load

-- What the load has moved (bytes and rows, parts in flight included) and how far it is, as a
-- fraction of the tables' size on the source: parts done count their share of their table's
-- size, parts in flight what they copied up to that share. (Copied bytes against the size on
-- disk would say 2 % of 100,000 small tables when all were done: a page holds 153 bytes of
-- COPY data there.) The totals over the plan's tables are summed once, at start_load.
local function load_totals(self, load)
  local bytes, rows = load.stats.bytes, load.stats.rows
  local done = self.done_share
  for part, pump in pairs(load.running) do
    local b = pump:stats()
    bytes = bytes + b
    done = done + math.min(b, (part.table.bytes or 0) / (part.count or 1))
  end
  local fraction = self.total_bytes > 0 and math.min(1, done / self.total_bytes)
                   or (load.stats.parts_total > 0 and load.stats.parts_done / load.stats.parts_total) or 0
  return bytes, rows, self.total_bytes, fraction
end

function Progress:start_load(load)
  self.load = load
  self.load_started = tide.monotonic()
  self.total_bytes, self.done_share = 0, 0
  for _, t in ipairs(load.plan.tables) do self.total_bytes = self.total_bytes + math.max(0, t.bytes or 0) end
  local binary, text = 0, 0
  for _, t in ipairs(load.plan.tables) do if t.binary then binary = binary + 1 else text = text + 1 end end
  local sizing = load.sizing or { start = load.jobs }
  self:line("full: %d tables in %d parts (%d binary COPY, %d text), %d post-data steps, %s",
            #load.plan.tables, #load.parts, binary, text, #load.steps,
            sizing.auto and string.format("copy streams: auto, starting at %d of at most %d (%s)", sizing.start,
                                          sizing.max, sizing.why)
            or string.format("%d jobs", sizing.start))
  self:emit("load_start", { tables = #load.plan.tables, parts = #load.parts, steps = #load.steps,
                            streams = sizing.start, streams_auto = sizing.auto or false,
                            streams_max = sizing.max })
  if self.mode == "bar" or self.mode == "plain" then
    self.ticker = tide.spawn(function()
      local every = self.mode == "bar" and 0.5 or 10
      while not self.load_finished do
        local ended = self.tick_cond or tide.condition()
        self.tick_cond = ended
        ended:wait(every)
        if not self.load_finished then self:tick() end
      end
    end)
  end
end

function Progress:event(name, data)
  if name == "table_done" then
    local s = data.stats
    if self.mode == "plain" then
      self:line("full: %s copied, %d rows, %s in %.1fs (%s)", data.table, s.rows, human_bytes(s.bytes), s.seconds, s.format)
    end
    self:emit("table_done", { table = data.table, rows = s.rows, bytes = s.bytes, seconds = s.seconds, format = s.format })
  elseif name == "part_done" then
    self.done_share = (self.done_share or 0) + (data.part.table.bytes or 0) / (data.part.count or 1)
    self:emit("part_done", { part = data.part.id, table = data.part.table.key, rows = data.rows, bytes = data.bytes,
                             seconds = data.seconds, part_no = data.part.no, parts = data.part.count })
  elseif name == "step_done" then
    if self.mode == "plain" and data.seconds >= 1 then
      self:line("post-data: %s (%.1fs)", data.step.key, data.seconds)
    end
    self:emit("step_done", { step = data.step.key, kind = data.step.kind, seconds = data.seconds })
  end
end

function Progress:clear()
  if self.mode == "bar" and self.drawn_lines > 0 then
    self.out:write(string.format("\27[%dA\27[J", self.drawn_lines))
    self.drawn_lines = 0
  end
end

-- full.jobs = "auto" changed the count of copy streams (tide.full.streams).
function Progress:streams(d)
  self:line("copy streams: %d -> %d (%s)", d.from, d.to, d.why)
  self:emit("copy_streams", { from = d.from, to = d.to, rate_from = d.rate_from, rate_to = d.rate_to, why = d.why })
end

function Progress:tick()
  local load = self.load
  if not load then return end
  local bytes, rows, total_bytes, fraction = load_totals(self, load)
  local elapsed = tide.monotonic() - self.load_started
  local rate = elapsed > 0 and bytes / elapsed or 0
  -- The rest at the pace so far (the copies only: post-data steps are not in the fraction).
  local eta = fraction > 0 and elapsed * (1 - fraction) / fraction or nil
  if self.mode == "plain" then
    self:line("full: %.0f%% of ~%s, %s copied, %d rows done, %s/s, parts %d/%d, steps %d/%d, eta %s",
      fraction * 100, human_bytes(total_bytes), human_bytes(bytes), rows, human_bytes(rate),
      load.stats.parts_done, load.stats.parts_total, load.stats.steps_done, #load.steps, human_seconds(eta))
    return
  end
  self:clear()
  local width = 30
  local filled = math.floor(fraction * width + 0.5)
  local lines = {
    string.format("[%s%s] %3.0f%% of ~%s  %s copied  %s/s  rows %d  parts %d/%d  steps %d/%d  eta %s",
      string.rep("#", filled), string.rep(".", width - filled), fraction * 100, human_bytes(total_bytes),
      human_bytes(bytes), human_bytes(rate), rows, load.stats.parts_done, load.stats.parts_total,
      load.stats.steps_done, #load.steps, human_seconds(eta)),
  }
  local running = {}
  for part, pump in pairs(load.running) do running[#running + 1] = { part = part, pump = pump } end
  table.sort(running, function(a, b) return a.part.id < b.part.id end)
  for _, r in ipairs(running) do
    local b, msgs = r.pump:stats()
    lines[#lines + 1] = string.format("  %-40s %10s %9d rows  %s", r.part.id, human_bytes(b), msgs,
                                      r.part.table.binary and "binary" or "text")
  end
  self.out:write(table.concat(lines, "\n"), "\n")
  self.out:flush()
  self.drawn_lines = #lines
end

-- The load's summary on a terminal lists every table up to this many, else the slowest ones
-- (progress = "json" reports every table).
local SUMMARY_TABLES = 20

function Progress:finish_load(load)
  self.load_finished = true
  if self.tick_cond then self.tick_cond:notify() end
  self:clear()
  local s = load.stats
  self:emit("load_done", { rows = s.rows, bytes = s.bytes, seconds = s.seconds, parts = s.parts_done,
                           steps = s.steps_done, streams = s.streams })
  if self.mode == "none" or self.mode == "json" then return end
  if load.sizing and load.sizing.auto then self:line("copy streams: auto ended at %d", s.streams) end
  local keys = {}
  for key in pairs(s.tables) do keys[#keys + 1] = key end
  -- Many tables: the ones that took longest, the rest summed in one line.
  local shown = #keys
  if #keys > SUMMARY_TABLES then
    table.sort(keys, function(a, b)
      local ta, tb = s.tables[a].seconds, s.tables[b].seconds
      if ta ~= tb then return ta > tb end
      return a < b
    end)
    shown = SUMMARY_TABLES
  else
    table.sort(keys)
  end
  local out = { "", string.format("%-40s %12s %10s %8s %6s %5s", "table", "rows", "bytes", "seconds", "format", "parts") }
  for i = 1, shown do
    local key = keys[i]
    local t = s.tables[key]
    out[#out + 1] = string.format("%-40s %12d %10s %8.1f %6s %5d", key, t.rows, human_bytes(t.bytes), t.seconds, t.format, t.parts)
  end
  if shown < #keys then
    local rows, bytes = 0, 0
    for i = shown + 1, #keys do rows, bytes = rows + s.tables[keys[i]].rows, bytes + s.tables[keys[i]].bytes end
    out[#out + 1] = string.format("%-40s %12d %10s", string.format("(%d more tables, each faster)", #keys - shown),
                                  rows, human_bytes(bytes))
  end
  out[#out + 1] = string.format("%-40s %12d %10s %8.1f", "total (this run)", s.rows, human_bytes(s.bytes), s.seconds)
  self.out:write(table.concat(out, "\n"), "\n\n")
  self.out:flush()
end

-- The closing summary of a run: seconds per phase.
function Progress:summary(extra)
  if self.mode == "json" then
    local phases = {}
    for _, ph in ipairs(self.phases) do phases[#phases + 1] = { phase = ph.name, seconds = ph.seconds } end
    self:emit("done", { phases = phases, seconds = tide.monotonic() - self.started, detail = extra })
    return
  end
  if self.mode == "none" then return end
  local parts = {}
  for _, ph in ipairs(self.phases) do parts[#parts + 1] = string.format("%s %.1fs", ph.name, ph.seconds or 0) end
  self:line("done in %.1fs (%s)%s", tide.monotonic() - self.started, table.concat(parts, ", "),
            extra and (" — " .. extra) or "")
end

return M
