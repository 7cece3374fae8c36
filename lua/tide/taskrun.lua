-- tide.taskrun — one run of a task: everything that changes while a task runs.
--
-- The task (tide.playbook) is the validated playbook and never changes once made. A run holds
-- the rest: the connections to both sides, the phase reached, the progress reporter, the
-- operator's controls (pause, throttle, stop, a replaced stop condition), the handles of the
-- full load and the change stream while they run, the live control socket, and the last
-- error a retry saw. `pgtide run` makes one per invocation (tide.cmd.run); the live control
-- (tide.live) and the REPL reach a running task only through the methods here.
--
-- Controls are recorded on the run, so a control given before its phase starts takes effect
-- when it does (apply_pending, called by the live control loop and by the full load as it
-- starts), and pushed to what runs now: the load (tide.full's Load: pause, resume, throttle,
-- fail) and the stream (tide.cdc's Stream: pause, resume, status).
local failure = require "tide.failure"

local M = {}

local Run = {}
Run.__index = Run
Run.__name = "tide.taskrun"

function M.new(task, opts)
  return setmetatable({
    task = task, opts = opts or {},
    phase = "starting",
    stop = task.stop,               -- the stop condition; the operator may replace it
    paused = false,                 -- the operator wants the task paused
    throttle_limits = nil,          -- { rows_per_second =, bytes_per_second = } for the whole task
    stop_requested = false,         -- task:stop() was called
    connected_once = false,
    source = nil, target = nil,     -- the run's own connections (busy with the migration)
    progress = nil,                 -- tide.progress reporter
    load = nil,                     -- tide.full's Load, from its start (kept when done)
    stream = nil,                   -- tide.cdc's Stream while it runs
    live = nil,                     -- tide.live's state while the control socket is served
    last_error = nil,               -- { message =, time = } of the failure a retry follows
  }, Run)
end

function M.is_run(v) return getmetatable(v) == Run end

-- A run for `v`: v itself when it is one, else a fresh run of the task v (library callers and
-- tests that drive one phase without `pgtide run`).
function M.of(v)
  if getmetatable(v) == Run then return v end
  return M.new(v)
end

Run.__tostring = function(r) return string.format("run of task %s (phase %s)", r.task.name, r.phase) end

function Run:set_phase(phase) self.phase = phase end

-- The operator's controls as recorded: { paused =, throttle =, stop_requested = } (a copy).
function Run:controls()
  local limits
  for k, v in pairs(self.throttle_limits or {}) do limits = limits or {}; limits[k] = v end
  return { paused = self.paused == true, throttle = limits, stop_requested = self.stop_requested == true }
end

-- What went wrong last: the failure a retry follows, else the full load's failure (nil if none).
function Run:last_failure()
  return self.last_error or (self.load and self.load.failed) or nil
end

------------------------------------------------------------------------ connections

function Run:set_connections(source, target)
  self.source, self.target = source, target
  self.connected_once = true
end

function Run:close_connections()
  for _, side in ipairs({ "source", "target" }) do
    local c = self[side]
    if c then pcall(c.close, c); self[side] = nil end
  end
end

------------------------------------------------------------------------ the load and the stream

function Run:attach_load(load)
  self.load = load
  self:apply_pending()
end

function Run:attach_stream(stream) self.stream = stream end
function Run:detach_stream(stream) if self.stream == stream then self.stream = nil end end

-- The full load while it still has work (copies or post-data steps) to do.
function Run:running_load()
  local load = self.load
  if load and not load.failed and load.stats.seconds == nil then return load end
end

-- The change stream's latest status (tide.cdc.figures), or nil when no stream runs.
function Run:stream_status()
  local st = self.stream
  return st and st:status() or nil
end

function Run:stop_condition() return self.stop end

local function valid_condition(v)
  local mt = getmetatable(v)
  return v == nil or type(v) == "function" or (type(mt) == "table" and mt.__call ~= nil)
end

function Run:set_stop_condition(c)
  if not valid_condition(c) then
    error("task.stop must be a function(status) → boolean or a tide.when{...} (or nil for none)", 3)
  end
  self.stop = c
end

------------------------------------------------------------------------ operator controls

-- Wake the live control loop: a control was just recorded.
function Run:poke()
  local live = self.live
  if live and live.wake then live.wake() end
end

function Run:pause()
  self.paused = true
  self:poke()
  local acted = {}
  local load = self:running_load()
  if load then
    load:pause()
    acted[#acted + 1] = "the full load (copy jobs take no new part; parts in flight stop reading the source)"
  end
  if self.stream and self.stream:pause() then
    acted[#acted + 1] = "the change stream (apply stops at a transaction boundary; feedback to the source goes on)"
  end
  if #acted == 0 then
    return "pause recorded: nothing that can pause runs now (phase " .. tostring(self.phase) ..
           "); the full load or the change stream starts paused"
  end
  return "paused " .. table.concat(acted, " and ")
end

function Run:resume()
  local was = self.paused
  self.paused = false
  local acted = {}
  if self.load and self.load.paused then
    self.load:resume()
    acted[#acted + 1] = "the full load"
  end
  if self.stream and self.stream:resume() then acted[#acted + 1] = "the change stream" end
  if #acted == 0 then return was and "resumed (nothing was paused yet)" or "nothing to resume" end
  return "resumed " .. table.concat(acted, " and ")
end

-- The task-wide limits spread evenly over the copy jobs (each COPY pump enforces its share);
-- with full.jobs = "auto" over the streams running now (the count holds while throttled).
function Run:per_job(limits)
  local fixed = self.task.full and math.type(self.task.full.jobs) == "integer" and self.task.full.jobs
  local jobs = math.max(1, self.load and self.load.jobs or fixed or 4)
  local share = {}
  for k, v in pairs(limits) do share[k] = v / jobs end
  return share
end

local KNOWN_LIMITS = { rows_per_second = true, bytes_per_second = true }

function Run:throttle(limits)
  if limits ~= nil and type(limits) ~= "table" then
    error("task:throttle{ rows_per_second = N } or { bytes_per_second = N } (or nil to remove the limit)", 3)
  end
  local clean
  for k, v in pairs(limits or {}) do
    if not KNOWN_LIMITS[k] then
      error("task:throttle: unknown key '" .. tostring(k) .. "' (rows_per_second, bytes_per_second)", 3)
    end
    if type(v) ~= "number" or v <= 0 then error("task:throttle: " .. k .. " must be a positive number", 3) end
    clean = clean or {}
    clean[k] = v
  end
  self.throttle_limits = clean
  self:poke()
  if self.load then
    self.load:throttle(clean and self:per_job(clean) or {})
    self.load.live_throttle = clean
  end
  if not clean then return "throttle removed" end
  local parts = {}
  for k, v in pairs(clean) do parts[#parts + 1] = string.format("%s = %g", k, v) end
  table.sort(parts)
  return "throttled to " .. table.concat(parts, ", ") ..
         (self.load and "" or " (applies when the full load starts)")
end

local STOP_MESSAGE = "stopped at the operator's request (task:stop() in pgtide attach): the parts and " ..
  "post-data steps in flight were committed first; run the task again to continue where it stopped"

local function stop_load(run)
  local load = run.load
  load:fail(failure.new("interrupted", STOP_MESSAGE))
  -- Parts in flight must finish to commit, so a paused load lets them run again.
  if load.paused then load:resume() end
end

-- A stop condition that holds at once: the change stream stops at its next tick the way it
-- does when the playbook's condition fires, cutover hooks included.
local OperatorStop = {
  __call = function() return true end,
  __tostring = function() return "stop requested from pgtide attach (task:stop())" end,
}

local function stop_now(previous) return setmetatable({ previous = previous }, OperatorStop) end

function Run:request_stop()
  self.stop_requested = true
  self:poke()
  if self:running_load() then
    stop_load(self)
    return "stopping: the full load takes no new work, commits what is in flight, and the run ends " ..
           "(exit status 130); running the task again continues"
  end
  if self.phase == "incremental" then
    self.stop = stop_now(self.stop)
    if self.paused then self:resume() end
    return "stopping: the change stream stops at its next tick, as when the stop condition holds " ..
           "(everything received is applied; cutover hooks run)"
  end
  local phases = self.task.phases or {}
  if (phases.full or phases.incremental) and self.phase ~= "done" then
    return "stop recorded: the task stops when its full load or change stream starts"
  end
  return "nothing to stop: the task runs no phase that can stop early (phase " .. tostring(self.phase) .. ")"
end

-- `pgtide cutover` / task:cutover(): a request the change stream takes at its next tick
-- (tide.cdc.switch). Returns the request (its .result is set when the cutover ended: { ok,
-- message }), or nil and why it cannot be taken now.
function Run:request_cutover()
  local phases = self.task.phases or {}
  if not phases.incremental then
    return nil, "this task has no incremental phase: there is nothing to cut over from"
  end
  if self.phase ~= "incremental" or not self.stream then
    return nil, "the change stream is not running yet (phase " .. tostring(self.phase) .. "): cut over once " ..
                "the task streams"
  end
  if self.cutover_request then return nil, "a cutover is under way already (" .. tostring(self.cutover_step) .. ")" end
  self.cutover_request = { requested = require("tide.core").now() }
  self:poke()
  return self.cutover_request
end

-- Push recorded controls to the phase running now; true while one still waits for a phase
-- that has not started (the control loop then looks again soon).
function Run:apply_pending()
  local phases = self.task.phases or {}
  local waiting = false
  local load = self:running_load()
  if load then
    if self.stop_requested then
      stop_load(self)
    else
      if self.paused and not load.paused then load:pause() end
      if load.live_throttle ~= self.throttle_limits then
        load:throttle(self.throttle_limits and self:per_job(self.throttle_limits) or {})
        load.live_throttle = self.throttle_limits
      end
    end
  elseif phases.full and not self.load and self.phase ~= "done" then
    waiting = self.paused or self.stop_requested or self.throttle_limits ~= nil
  end
  if self.phase == "incremental" then
    local st = self:stream_status()
    if self.paused and st and not st.paused and self.stream then self.stream:pause() end
    if self.stop_requested and getmetatable(self.stop) ~= OperatorStop then self.stop = stop_now(self.stop) end
    waiting = waiting or (self.paused and not st) or false
  elseif phases.incremental and self.phase ~= "done" then
    waiting = waiting or self.paused or self.stop_requested or false
  end
  return waiting
end

return M
