-- tide.live.control — the operator's controls over a running task: pause, resume, throttle,
-- stop. The REPL's task object (tide.live.handle) calls these; the live control loop calls
-- apply_pending so a control given before its phase starts takes effect when it does.
--
-- The intent is recorded on the task, where any phase can read it (docs/live.md):
--   task.paused          true while the operator wants it paused
--   task.throttle_limits { rows_per_second =, bytes_per_second = } for the whole task, or nil
--   task.stop_requested  true once task:stop() was called
-- and pushed to what runs now: the full load (tide.full.pause/resume/throttle) and the change
-- stream (tide.cdc.pause/resume; it reads task.stop every tick).
local failure = require "tide.failure"

local M = {}

local function full() return require "tide.full" end

-- tide.cdc when this build has it (it is optional: a task may not migrate incrementally).
local function cdc()
  local ok, mod = pcall(require, "tide.cdc")
  if ok and type(mod) == "table" then return mod end
end

local function cdc_call(name, ...)
  local mod = cdc()
  local fn = mod and mod[name]
  if type(fn) ~= "function" then return nil end
  local ok, result = pcall(fn, ...)
  return ok and result or nil
end

function M.cdc_status(task)
  local st = cdc_call("status", task)
  return type(st) == "table" and st or nil
end

-- The full load while it still has work (copies or post-data steps) to do.
local function running_load(task)
  local load = task.load
  if load and not load.failed and load.stats.seconds == nil then return load end
end

------------------------------------------------------------------------ pause / resume

local function poke(task) require("tide.live").poke(task) end

function M.pause(task)
  task.paused = true
  poke(task)
  local acted = {}
  if running_load(task) then
    full().pause(task)
    acted[#acted + 1] = "the full load (copy jobs take no new part; parts in flight stop reading the source)"
  end
  if cdc_call("pause", task) then
    acted[#acted + 1] = "the change stream (apply stops at a transaction boundary; feedback to the source goes on)"
  end
  if #acted == 0 then
    return "pause recorded: nothing that can pause runs now (phase " .. tostring(task.phase) ..
           "); the full load or the change stream starts paused"
  end
  return "paused " .. table.concat(acted, " and ")
end

function M.resume(task)
  local was = task.paused
  task.paused = nil
  local acted = {}
  if task.load and task.load.paused then
    full().resume(task)
    acted[#acted + 1] = "the full load"
  end
  if cdc_call("resume", task) then acted[#acted + 1] = "the change stream" end
  if #acted == 0 then return was and "resumed (nothing was paused yet)" or "nothing to resume" end
  return "resumed " .. table.concat(acted, " and ")
end

------------------------------------------------------------------------ throttle

-- The task-wide limits spread evenly over the copy jobs (each COPY pump enforces its share).
local function per_job(task, limits)
  local jobs = math.max(1, task.full and task.full.jobs or 4)
  local share = {}
  for k, v in pairs(limits) do share[k] = v / jobs end
  return share
end

local KNOWN = { rows_per_second = true, bytes_per_second = true }

function M.throttle(task, limits)
  if limits ~= nil and type(limits) ~= "table" then
    error("task:throttle{ rows_per_second = N } or { bytes_per_second = N } (or nil to remove the limit)", 3)
  end
  local clean
  for k, v in pairs(limits or {}) do
    if not KNOWN[k] then error("task:throttle: unknown key '" .. tostring(k) .. "' (rows_per_second, bytes_per_second)", 3) end
    if type(v) ~= "number" or v <= 0 then error("task:throttle: " .. k .. " must be a positive number", 3) end
    clean = clean or {}
    clean[k] = v
  end
  task.throttle_limits = clean
  poke(task)
  if task.load then
    full().throttle(task, clean and per_job(task, clean) or {})
    task.load.live_throttle = clean
  end
  cdc_call("throttle", task, clean)
  if not clean then return "throttle removed" end
  local parts = {}
  for k, v in pairs(clean) do parts[#parts + 1] = string.format("%s = %g", k, v) end
  table.sort(parts)
  return "throttled to " .. table.concat(parts, ", ") ..
         (task.load and "" or " (applies when the full load starts)")
end

------------------------------------------------------------------------ stop

local STOP_MESSAGE = "stopped at the operator's request (task:stop() in pgtide attach): the parts and " ..
  "post-data steps in flight were committed first; run the task again to continue where it stopped"

local function stop_load(task)
  local load = task.load
  load:fail(failure.new("interrupted", STOP_MESSAGE))
  -- Parts in flight must finish to commit, so a paused load lets them run again.
  if load.paused then full().resume(task) end
end

-- A stop condition that holds at once: the change stream stops at its next tick the way it
-- does when the playbook's condition fires, cutover hooks included.
local operator_stops = setmetatable({}, { __mode = "k" })

local function stop_now(previous)
  local c = setmetatable({ previous = previous }, {
    __call = function() return true end,
    __tostring = function() return "stop requested from pgtide attach (task:stop())" end,
  })
  operator_stops[c] = true
  return c
end

function M.stop(task)
  task.stop_requested = true
  poke(task)
  if running_load(task) then
    stop_load(task)
    return "stopping: the full load takes no new work, commits what is in flight, and the run ends " ..
           "(exit status 130); running the task again continues"
  end
  if task.phase == "incremental" then
    task.stop = stop_now(task.stop)
    if task.paused then M.resume(task) end
    return "stopping: the change stream stops at its next tick, as when the stop condition holds " ..
           "(everything received is applied; cutover hooks run)"
  end
  if task.phases and (task.phases.full or task.phases.incremental) and task.phase ~= "done" then
    return "stop recorded: the task stops when its full load or change stream starts"
  end
  return "nothing to stop: the task runs no phase that can stop early (phase " .. tostring(task.phase) .. ")"
end

------------------------------------------------------------------------ pending controls

-- Push recorded controls to the phase running now; true while one still waits for a phase
-- that has not started (the control loop then looks again soon).
function M.apply_pending(task)
  local phases = task.phases or {}
  local waiting = false
  local load = running_load(task)
  if load then
    if task.stop_requested then
      stop_load(task)
    else
      if task.paused and not load.paused then full().pause(task) end
      if load.live_throttle ~= task.throttle_limits then
        full().throttle(task, task.throttle_limits and per_job(task, task.throttle_limits) or {})
        load.live_throttle = task.throttle_limits
      end
    end
  elseif phases.full and not task.load and task.phase ~= "done" then
    waiting = task.paused or task.stop_requested or task.throttle_limits ~= nil
  end
  if task.phase == "incremental" then
    local st = M.cdc_status(task)
    if task.paused and st and not st.paused then cdc_call("pause", task) end
    if task.stop_requested and not operator_stops[task.stop] then task.stop = stop_now(task.stop) end
    waiting = waiting or (task.paused and not st) or false
  elseif phases.incremental and task.phase ~= "done" then
    waiting = waiting or task.paused or task.stop_requested or false
  end
  return waiting
end

return M
