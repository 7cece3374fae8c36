-- tide.live.status — what `pgtide status` and task:status() report about a running task, as
-- plain data (strings, numbers, booleans, tables of them: it travels as JSON), and the text a
-- person reads. The fields are documented in docs/live.md.
local core = require "tide.core"
local json = require "tide.json"

local M = {}

M.PROTOCOL = 1                -- of the control socket (docs/live.md)
local RATE_WINDOW = 10        -- seconds of samples behind the rates in the status

-- A JSON-safe copy: functions and userdata become their tostring, cycles and depth are cut.
local function plain(v, depth, seen)
  local t = type(v)
  if t == "number" or t == "string" or t == "boolean" then return v end
  if t ~= "table" or (getmetatable(v) and getmetatable(v).__tostring) then return v ~= nil and tostring(v) or nil end
  depth, seen = depth or 0, seen or {}
  if seen[v] or depth > 6 then return "..." end
  seen[v] = true
  local out = {}
  for k, x in pairs(v) do
    if type(k) == "string" or math.type(k) == "integer" then out[k] = plain(x, depth + 1, seen) end
  end
  seen[v] = nil
  return out
end
M.plain = plain

------------------------------------------------------------------------ progress samples

-- Called by the control loop every tick: the full load's totals, kept for RATE_WINDOW seconds.
function M.sample(live)
  local load = live.run.load
  if not load then return end
  if live.sampled_load ~= load then live.samples, live.sampled_load = {}, load end
  local rows, bytes = load:totals()
  local now = core.monotonic()
  local s = live.samples
  s[#s + 1] = { t = now, rows = rows, bytes = bytes }
  while #s > 2 and now - s[1].t > RATE_WINDOW do table.remove(s, 1) end
end

-- Rows and bytes per second over the last RATE_WINDOW seconds (nil before two samples).
function M.rates(live)
  local s = live.samples
  local first, last = s[1], s[#s]
  if not first or last.t - first.t <= 0 then return nil, nil end
  local dt = last.t - first.t
  return (last.rows - first.rows) / dt, (last.bytes - first.bytes) / dt
end

------------------------------------------------------------------------ the full load

local function full_status(live)
  local load = live.run.load
  if not load then return nil end
  local out = load:status()
  M.sample(live)
  out.rows_per_second, out.bytes_per_second = M.rates(live)
  return out
end

------------------------------------------------------------------------ the stop condition

local function describe_condition(c)
  if c == nil then return "none" end
  if type(c) == "function" then
    local info = debug.getinfo(c, "S")
    return string.format("a function (%s:%d)", info.short_src, info.linedefined)
  end
  return tostring(c)
end

local function stop_status(run, inc)
  local c = run:stop_condition()
  local out = { condition = describe_condition(c), requested = run:controls().stop_requested }
  if c == nil then return out end
  if not inc then
    out.verdict = "not evaluated yet (the change stream evaluates it every tick)"
  elseif inc.stop_verdict ~= nil then
    out.verdict = inc.stop_verdict and "met" or "not met"        -- recorded by the stream
  elseif type(c) == "table" and (tostring(c):find("^tide%.when") or tostring(c):find("task:stop()", 1, true)) then
    -- tide.when conditions hold no state that one more look with the same status changes.
    local ok, v = pcall(c, inc)
    out.verdict = not ok and ("error: " .. tostring(v)) or (v and "met" or "not met")
  else
    out.verdict = "evaluated by the change stream every tick (a function is not called from here)"
  end
  return out
end

------------------------------------------------------------------------ all of it

local function last_error(run)
  local e = run:last_failure()
  if e == nil then return nil end
  if type(e) == "table" and not getmetatable(e) then return plain(e) end
  return { message = tostring(e) }
end

-- The status of a run whose control socket is served (nil when it is not).
function M.of_run(run)
  local live = run.live
  return live and M.collect(live) or nil
end

function M.collect(live)
  local run = live.run
  local task = run.task
  local now = core.now()
  local inc = run:stream_status()
  local controls = run:controls()
  local sessions, chunks = 0, 0
  for session in pairs(live.sessions) do
    sessions = sessions + 1
    local c = session.chunk
    if c and not c.done and not c.abandoned then chunks = chunks + 1 end
  end
  local st = {
    task = task.name, pid = live.pid, version = core.version, protocol = M.PROTOCOL,
    phase = run.cutover_step and ("cutover: " .. run.cutover_step) or run.phase or "starting",
    started = live.started, uptime = now - live.started,
    migrate = plain(task.migrate), source = task.source_info, target = task.target_info,
    socket = live.path, sessions = sessions, chunks = chunks,
    paused = controls.paused, throttle = controls.throttle, stop_requested = controls.stop_requested,
    full = full_status(live),
    incremental = inc and plain(inc),
    stop = stop_status(run, inc),
    last_error = last_error(run),
  }
  if inc then
    st.delay = { seconds = inc.delay, bytes_behind = inc.bytes_behind, not_delayed = inc.not_delayed }
  end
  return st
end

------------------------------------------------------------------------ text for a person

local human_bytes = require("tide.units").human_bytes
local human_seconds = require("tide.units").human_seconds

local function num(v) return type(v) == "number" and v or nil end

local function count(n)
  n = num(n)
  if not n then return "?" end
  local text = tostring(math.floor(n + 0.5)):reverse():gsub("(%d%d%d)", "%1,"):reverse()
  return (text:gsub("^(-?),", "%1"))
end

local function rate(n, unit) return num(n) and string.format("%s %s/s", count(n), unit) or "-" end

-- One line per task for the list.
function M.summary_line(st)
  local progress = "-"
  local f = st.full
  if type(f) == "table" then
    local est = num(f.rows_estimate)
    progress = string.format("%s rows%s %s", count(f.rows),
      est and est > 0 and string.format(" (%.0f%%)", math.min(100, 100 * (num(f.rows) or 0) / est)) or "", f.state)
  end
  local delay = type(st.delay) == "table" and num(st.delay.seconds) and string.format("%.1fs", st.delay.seconds) or "-"
  return string.format("%-24s %8s  %-12s %-34s %s%s", st.task, math.tointeger(st.pid) or st.pid, st.phase, progress,
                       delay, st.paused and "  (paused)" or "")
end

function M.header_line()
  return string.format("%-24s %8s  %-12s %-34s %s", "TASK", "PID", "PHASE", "FULL LOAD", "DELAY")
end

-- A terminal shows at most this many tables of a full load; --json has them all.
local TABLE_LINES = 20

-- The tables a terminal shows: every one when they are few; else the ones being copied, then
-- the others in their order, up to `limit` lines, and what is left counted by state.
function M.table_lines(tables, limit)
  if #tables <= limit then return tables, nil end
  local shown, picked = {}, {}
  for _, t in ipairs(tables) do
    if #shown < limit and t.state == "copying" then shown[#shown + 1] = t; picked[t] = true end
  end
  for _, t in ipairs(tables) do
    if #shown >= limit then break end
    if not picked[t] and t.state ~= "done" then shown[#shown + 1] = t; picked[t] = true end
  end
  for _, t in ipairs(tables) do
    if #shown >= limit then break end
    if not picked[t] then shown[#shown + 1] = t; picked[t] = true end
  end
  local by_state, order = {}, {}
  for _, t in ipairs(tables) do
    if not picked[t] then
      local state = tostring(t.state)
      if not by_state[state] then by_state[state] = 0; order[#order + 1] = state end
      by_state[state] = by_state[state] + 1
    end
  end
  local parts = {}
  for _, state in ipairs(order) do parts[#parts + 1] = string.format("%s %s", count(by_state[state]), state) end
  return shown, { n = #tables - #shown, states = table.concat(parts, ", ") }
end

-- The status a terminal needs: a full load's tables cut to the ones it shows, the rest
-- counted in full.tables_left = { n =, states = } (`pgtide status` without --json asks for this:
-- 100,000 tables are 17 MB of JSON to build, send and read).
function M.brief(st)
  local f = st and st.full
  if type(f) == "table" and type(f.tables) == "table" then
    f.tables, f.tables_left = M.table_lines(f.tables, TABLE_LINES)
  end
  return st
end

function M.render(st)
  local out = {}
  local function add(fmt, ...) out[#out + 1] = string.format(fmt, ...) end
  add("task %s — pid %s, phase %s, up %s%s", st.task, math.tointeger(st.pid) or st.pid, st.phase,
      human_seconds(num(st.uptime)), st.paused and ", PAUSED" or "")
  add("  source: %s", tostring(st.source))
  add("  target: %s", tostring(st.target))
  if type(st.throttle) == "table" then add("  throttle: %s", json.encode(st.throttle)) end
  local f = st.full
  if type(f) == "table" then
    add("  full load: %s — %s of ~%s rows, %s, %s, %s; parts %s/%s, post-data steps %s/%s%s",
        f.state, count(f.rows), (num(f.rows_estimate) or 0) > 0 and count(f.rows_estimate) or "?", human_bytes(num(f.bytes) or 0), rate(f.rows_per_second, "rows"),
        num(f.bytes_per_second) and (human_bytes(f.bytes_per_second) .. "/s") or "-",
        count(f.parts_done), count(f.parts_total), count(f.steps_done), count(f.steps_total),
        num(f.streams) and string.format("; copy streams %s%s", count(f.streams), f.streams_auto and " (auto)" or "") or "")
    add("    %-40s %12s %12s %10s %6s  %s", "table", "rows", "of ~rows", "bytes", "parts", "state")
    local tables = type(f.tables) == "table" and f.tables or {}
    local shown, left = M.table_lines(tables, TABLE_LINES)
    if type(f.tables_left) == "table" then left = f.tables_left end   -- (a brief status: cut already)
    for _, t in ipairs(shown) do
      add("    %-40s %12s %12s %10s %6s  %s", t.table, count(t.rows),
          (num(t.rows_estimate) or -1) >= 0 and count(t.rows_estimate) or "?",
          human_bytes(num(t.bytes) or 0), string.format("%s/%s", count(t.parts_done), count(t.parts)), t.state)
    end
    if left then add("    ... and %s more tables (%s); `pgtide status %s --json` lists every one", count(left.n), left.states, st.task) end
  end
  local inc = st.incremental
  if type(inc) == "table" then
    add("  incremental: delay %s (%s), %s behind, %s, %s, applied %s%s",
        num(inc.delay) and string.format("%.3f s", inc.delay) or "?", inc.not_delayed and "not delayed" or "delayed",
        human_bytes(num(inc.bytes_behind) or 0), rate(inc.transactions_per_second, "tx"),
        rate(inc.changes_per_second, "changes"), tostring(inc.applied_lsn), inc.paused and ", paused" or "")
    if (num(inc.apply_sessions) or 0) > 0 then
      add("    apply connection replaced by a new session %s time(s) (incremental.apply_session_statements)",
          count(inc.apply_sessions))
    end
    local d = type(inc.ddl) == "table" and inc.ddl or nil
    if d then
      -- DDL replication (tide.cdc.ddl): counts, and the latest commands with their decision
      add("    DDL: %s applied, %s skipped", count(d.applied), count(d.skipped))
      local recent = type(d.recent) == "table" and d.recent or {}
      for i = math.max(1, #recent - 4), #recent do
        local r = recent[i]
        if type(r) == "table" then
          add("      %s %s %s %s", tostring(r.lsn), r.decision == "apply" and "applied" or "skipped", tostring(r.tag),
              tostring(r.object))
        end
      end
    end
  end
  local stop = type(st.stop) == "table" and st.stop or {}
  add("  stop condition: %s%s%s", tostring(stop.condition or "none"), stop.verdict and (" — " .. stop.verdict) or "",
      stop.requested and " (stop requested)" or "")
  local e = st.last_error
  add("  last error: %s", type(e) == "table" and tostring(e.message) or "none")
  add("  attached sessions: %s (%s running a chunk); control socket %s", count(st.sessions), count(st.chunks),
      tostring(st.socket))
  return table.concat(out, "\n")
end

return M
