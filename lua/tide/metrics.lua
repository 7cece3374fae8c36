-- tide.metrics — the Prometheus endpoint of a running task (playbook `metrics = { listen =
-- "127.0.0.1:9187" }`; docs/operating.md lists the series).
--
-- The HTTP side is the engine's (engine/live/http.c): it listens on the task's own loop and,
-- for each GET /metrics, calls M.render(run) to make the body, in text exposition format
-- 0.0.4. Every figure comes from the run (tide.taskrun) the way `pgtide status` reads it
-- (tide.live.status): the full load's status, the change stream's status, the run's errors.
-- Nothing is computed for the scrape that the run did not already know, so a scrape costs a
-- few table walks and never waits.
--
-- Labels are the task's name, table names, phases and conflict kinds: never a conninfo. Per
-- table series stop at TABLE_SERIES_LIMIT tables (in plan order); the totals always count all.
local core = require "tide.core"
local failure = require "tide.failure"

local M = {}

M.TABLE_SERIES_LIMIT = 100
M.CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

-- The phases a run goes through (tide.cmd.run), each with its own series of pgtide_phase.
M.PHASES = { "starting", "schema", "slot", "full", "post-data", "incremental", "done" }

------------------------------------------------------------------------ exposition format

-- Label values escape backslash, double quote and newline; HELP text backslash and newline.
local function escape_label(v)
  return (tostring(v):gsub("[\\\"\n]", { ["\\"] = "\\\\", ['"'] = '\\"', ["\n"] = "\\n" }))
end
M.escape_label = escape_label

local function escape_help(v)
  return (tostring(v):gsub("[\\\n]", { ["\\"] = "\\\\", ["\n"] = "\\n" }))
end

local function number_text(v)
  if v ~= v then return "NaN" end
  if v == math.huge then return "+Inf" end
  if v == -math.huge then return "-Inf" end
  if math.type(v) == "integer" then return tostring(v) end
  if v == math.floor(v) and math.abs(v) < 2^53 then return string.format("%d", v) end
  return string.format("%.17g", v)
end

-- A metric family being written: one HELP and TYPE, then its samples.
local Writer = {}
Writer.__index = Writer

local function writer(task_name)
  return setmetatable({ lines = {}, task = task_name, families = {} }, Writer)
end

-- w:family(name, type, help) then w:sample(value [, labels]) for each series.
function Writer:family(name, kind, help)
  self.current = name
  if self.families[name] then return end
  self.families[name] = true
  local l = self.lines
  l[#l + 1] = "# HELP " .. name .. " " .. escape_help(help)
  l[#l + 1] = "# TYPE " .. name .. " " .. kind
end

function Writer:sample(value, labels)
  if type(value) ~= "number" then return end
  local parts = { 'task="' .. escape_label(self.task) .. '"' }
  local keys = {}
  for k in pairs(labels or {}) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do parts[#parts + 1] = k .. '="' .. escape_label(labels[k]) .. '"' end
  self.lines[#self.lines + 1] = string.format("%s{%s} %s", self.current, table.concat(parts, ","), number_text(value))
end

function Writer:one(name, kind, help, value, labels)
  if type(value) ~= "number" then return end
  self:family(name, kind, help)
  self:sample(value, labels)
end

function Writer:text() return table.concat(self.lines, "\n") .. "\n" end

------------------------------------------------------------------------ the figures

local function num(v) return type(v) == "number" and v or nil end

local function phase_series(w, run)
  local current = run.phase or "starting"
  w:family("pgtide_phase", "gauge", "1 for the phase the task is in, 0 for the others")
  local listed = false
  for _, phase in ipairs(M.PHASES) do
    if phase == current then listed = true end
    w:sample(phase == current and 1 or 0, { phase = phase })
  end
  if not listed then w:sample(1, { phase = current }) end
end

local function full_series(w, run)
  local load = run.load
  if not load then return end
  local ok, st = pcall(load.status, load)
  if not ok or type(st) ~= "table" then return end
  w:one("pgtide_full_rows_total", "counter", "rows copied by the full load (this run, all tables)", num(st.rows))
  w:one("pgtide_full_bytes_total", "counter", "bytes of COPY data copied by the full load (this run, all tables)",
        num(st.bytes))
  w:one("pgtide_full_rows_estimate", "gauge", "rows the source's statistics estimate for the selected tables",
        num(st.rows_estimate))
  w:one("pgtide_full_parts_done", "gauge", "parts of tables copied", num(st.parts_done))
  w:one("pgtide_full_parts", "gauge", "parts of tables to copy in all", num(st.parts_total))
  w:one("pgtide_full_copy_streams", "gauge", "COPY streams the full load runs now (full.jobs, or the count " ..
        "\"auto\" chose)", num(st.streams))
  w:one("pgtide_post_data_steps_done", "gauge", "post-data steps (indexes, constraints, ...) done", num(st.steps_done))
  w:one("pgtide_post_data_steps", "gauge", "post-data steps in all", num(st.steps_total))
  local tables = type(st.tables) == "table" and st.tables or {}
  w:one("pgtide_full_tables", "gauge", "tables in the full load (per-table series stop at " ..
        M.TABLE_SERIES_LIMIT .. ")", #tables)
  local shown = math.min(#tables, M.TABLE_SERIES_LIMIT)
  if shown == 0 then return end
  w:family("pgtide_table_rows_total", "counter", "rows copied per table (the first " .. M.TABLE_SERIES_LIMIT ..
           " tables of the plan)")
  for i = 1, shown do w:sample(num(tables[i].rows), { table = tables[i].table }) end
  w:family("pgtide_table_bytes_total", "counter", "bytes of COPY data copied per table (the first " ..
           M.TABLE_SERIES_LIMIT .. " tables of the plan)")
  for i = 1, shown do w:sample(num(tables[i].bytes), { table = tables[i].table }) end
end

local CONFLICT_KINDS = { "skipped", "overwritten", "tolerated" }

local function stream_series(w, run)
  local ok, inc = pcall(run.stream_status, run)
  if not ok or type(inc) ~= "table" then return end
  w:one("pgtide_apply_transactions_total", "counter", "source transactions applied on the target",
        num(inc.transactions))
  w:one("pgtide_apply_changes_total", "counter", "row changes applied on the target", num(inc.changes))
  w:one("pgtide_delay_seconds", "gauge", "how far the target is behind the source (the larger half, as " ..
        "pgtide status shows)", num(inc.delay))
  w:one("pgtide_source_delay_seconds", "gauge", "the source half of the delay: decoding and network",
        num(inc.source_delay))
  w:one("pgtide_apply_delay_seconds", "gauge", "the apply half of the delay: received, not yet committed on " ..
        "the target", num(inc.apply_delay))
  w:one("pgtide_behind_bytes", "gauge", "WAL bytes the target is behind the source", num(inc.bytes_behind))
  w:one("pgtide_spool_bytes", "gauge", "bytes of streamed transactions spooled to disk now", num(inc.spooled_bytes))
  w:one("pgtide_reconnects_total", "counter", "times the change stream reconnected after a failure",
        num(inc.reconnects))
  w:one("pgtide_apply_sessions_total", "counter", "times an apply connection was replaced by a new session " ..
        "(incremental.apply_session_statements)", num(inc.apply_sessions))
  local conflicts = type(inc.conflicts) == "table" and inc.conflicts or {}
  w:family("pgtide_conflicts_total", "counter", "apply conflicts by how they were resolved")
  for _, kind in ipairs(CONFLICT_KINDS) do w:sample(num(conflicts[kind]) or 0, { kind = kind }) end
end

-- When the run last saw an error: a retry's failure, the load's failure, an error logged.
local function last_error_time(run, state)
  local times = { run.last_error_logged }
  local e = run:last_failure()
  if e ~= nil then
    if type(e) == "table" and not getmetatable(e) and num(e.time) then
      times[#times + 1] = e.time
    else
      -- A failure without a time (the load's): stamped when a scrape first sees it.
      if state.failure ~= e then state.failure, state.failure_time = e, core.now() end
      times[#times + 1] = state.failure_time
    end
  end
  local last
  for _, t in pairs(times) do if num(t) and (not last or t > last) then last = t end end
  return last
end

-- The body of GET /metrics for `run`.
function M.render(run, state)
  state = state or {}
  local w = writer(run.task.name)
  w:one("pgtide_info", "gauge", "1, with the engine's version", 1, { version = core.version })
  w:one("pgtide_start_time_seconds", "gauge", "when the task's run started (unix seconds)", state.started)
  phase_series(w, run)
  full_series(w, run)
  stream_series(w, run)
  w:one("pgtide_retries_total", "counter", "times the whole run was started again after a transient failure",
        run.retries or 0)
  w:one("pgtide_last_error_timestamp_seconds", "gauge", "when the last error happened (unix seconds; 0: none yet)",
        last_error_time(run, state) or 0)
  return w:text()
end

------------------------------------------------------------------------ serving

-- Listen when the playbook asks for it; a failure to (a port in use, an address not ours) is
-- reported before anything is written.
function M.serve(run)
  local conf = run.task.metrics
  if not conf or run.metrics then return run.metrics end
  local host, port = require("tide.playbook").listen_address(conf.listen)
  local state = { started = core.now() }
  local server, err, code = core.http_listen(host, port, function(path)
    if path ~= "/metrics" then return nil end
    return M.render(run, state), M.CONTENT_TYPE
  end)
  if not server then
    failure.raise("failed", string.format("cannot serve the metrics of task %s on %s: %s%s", run.task.name,
      conf.listen, err, code == "EADDRINUSE" and "\n  hint: another process listens there; choose another " ..
      "port in metrics.listen" or ""))
  end
  run.metrics = { server = server, listen = conf.listen, state = state }
  return run.metrics
end

function M.close(run)
  local m = run.metrics
  if not m then return end
  run.metrics = nil
  m.server:close()
end

return M
