-- tide.live.handle — `task` as an attached REPL sees it: a view of the running task with the
-- operator's methods (docs/live.md). Reads fall through to the task's own fields, and for what
-- changes while it runs (phase, stop, paused, ...) to its run (tide.taskrun); writes are
-- limited to what may change live (the stop condition); printing shows no secret.
--
-- `task.source` and `task.target` are NOT the run's connections here: those serve the
-- migration's own coroutines and may be busy at any instant (a connection serves one
-- coroutine at a time). The view opens a connection of the session's own to that side on first
-- use, closed when the session ends; task:connect(side) opens more.
local M = {}

local Methods = {}
local sessions = setmetatable({}, { __mode = "k" })   -- view → session

local function session_of(view)
  local s = sessions[view]
  if not s then error("call the task's methods with a colon: task:status()", 3) end
  return s
end

function Methods.status(view)
  return require("tide.live.status").of_run(session_of(view).task_run)
end

function Methods.tables(view)
  local st = Methods.status(view)
  return st and st.full and st.full.tables or {}
end

function Methods.lag(view)
  local run = session_of(view).task_run
  local inc = run:stream_status()
  if not inc then return nil, "no change stream runs now (phase " .. tostring(run.phase) .. ")" end
  return { delay = inc.delay, apply_delay = inc.apply_delay, source_delay = inc.source_delay,
           bytes_behind = inc.bytes_behind, not_delayed = inc.not_delayed, applied_lsn = inc.applied_lsn,
           source_lsn = inc.source_lsn }
end

function Methods.pause(view) return session_of(view).task_run:pause() end
function Methods.resume(view) return session_of(view).task_run:resume() end
function Methods.throttle(view, limits) return session_of(view).task_run:throttle(limits) end
function Methods.stop(view) return session_of(view).task_run:request_stop() end

-- task:cutover(): fence, drain, sequences, verify, hooks (tide.cdc.switch); waits for the
-- outcome and returns its lines, or raises with the reason (the fence is lifted then).
function Methods.cutover(view)
  local run = session_of(view).task_run
  local req, why = run:request_cutover()
  if not req then error("cutover: " .. why, 0) end
  local core = require "tide.core"
  while not req.result do
    if not run.stream and run.phase ~= "incremental" then error("cutover: the change stream ended", 0) end
    core.sleep(0.05)
  end
  req.delivered = true
  if not req.result.ok then error(req.result.message, 0) end
  return require("tide.repl").text(req.result.message)
end

function Methods.connect(view, side)
  if side ~= "source" and side ~= "target" then error('task:connect("source") or task:connect("target")', 2) end
  return session_of(view):open_connection(side)
end

function Methods.help()
  return require("tide.repl").text [[
task:status()            phase, progress per table, rates, delay, stop condition, last error
task:tables()            the full load's tables: rows, bytes, parts, state
task:lag()               delay and bytes behind of the change stream
task:pause()             copy jobs and the change apply stop taking new work
task:resume()
task:throttle{ rows_per_second = N }   or bytes_per_second; task:throttle(nil) removes it
task:cutover()           fence writes on the source, apply up to that point, sync sequences,
                         verify, run the cutover hooks, print the write downtime (docs/cutover.md)
task:stop()              the clean stop (full load: commit what is in flight and end;
                         change stream: stop as when the stop condition holds, cutover hooks run)
task.stop = tide.when{ lag_below = "1s", for_at_least = "30s" }   replace the stop condition
task.source, task.target this session's own connections (opened on first use)
task:connect("source")   one more connection of this session
session.cpu_limit, session.block_limit   limits of a chunk (seconds)]]
end

-- What the REPL's task.KEY reads from the run rather than the task: it changes as it runs.
local RUN_FIELDS = { phase = "phase", stop = "stop", paused = "paused", throttle_limits = "throttle_limits",
                     stop_requested = "stop_requested", last_error = "last_error", load = "load" }

local function field(s, key)
  local rk = RUN_FIELDS[key]
  if rk then return s.task_run[rk] end
  return s.task[key]
end

local View = {
  __name = "tide.live.task",
  __index = function(view, key)
    local m = Methods[key]
    if m then return m end
    local s = session_of(view)
    if key == "source" or key == "target" then return s:connection(key) end
    return field(s, key)
  end,
  __newindex = function(view, key, value)
    local run = session_of(view).task_run
    if key == "stop" then
      run:set_stop_condition(value)
      return
    end
    error("task." .. tostring(key) .. " cannot be changed from the REPL (task.stop can; the methods " ..
          "pause, resume, throttle and stop steer the task)", 2)
  end,
  __tostring = function(view)
    local s = session_of(view)
    local task = s.task
    return string.format("task %s (phase %s): %s → %s — task:help() lists what you can do",
                         task.name, tostring(s.task_run.phase), task.source_info or "?", task.target_info or "?")
  end,
  -- pairs(task): the methods, then the task's fields (source/target: this session's view).
  __pairs = function(view)
    local s = session_of(view)
    local keys, values = {}, {}
    for k, v in pairs(Methods) do keys[#keys + 1] = k; values[k] = v end
    for k in pairs(s.task) do
      if values[k] == nil then keys[#keys + 1] = k; values[k] = field(s, k) end
    end
    for k in pairs(RUN_FIELDS) do
      if values[k] == nil and field(s, k) ~= nil then keys[#keys + 1] = k; values[k] = field(s, k) end
    end
    for _, side in ipairs({ "source", "target" }) do
      if values[side] == nil then keys[#keys + 1] = side end
      values[side] = s.connections[side] or "(this session's connection, opened on first use)"
    end
    local i = 0
    return function()
      i = i + 1
      local k = keys[i]
      if k ~= nil then return k, values[k] end
    end, view, nil
  end,
}

function M.new(session)
  local view = setmetatable({}, View)
  sessions[view] = session
  return view
end

return M
