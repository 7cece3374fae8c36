-- tide.run — `pgtide run FILE`: the whole task, phase after phase.
--
--   connect both sides → plan → prechecks (nothing written before they pass) →
--   schema pre-data → [incremental: publication + slot, its snapshot] → full load with
--   post-data overlapping it (or post-data alone) → [incremental: stream until the stop
--   condition, cutover hooks] → summary.
--
-- The phase reached is recorded on the target (tide.state), so running the same playbook
-- again after an interruption continues: pre-data is not redone, copied parts and finished
-- post-data steps are skipped.
local tide = require "tide"
local connect = require "tide.connect"
local failure = require "tide.failure"

local M = {}

local ORDER = { new = 0, schema_pre = 1, full = 2, post = 3, incremental = 4, cutover = 5, done = 6 }

local function reached(phase, name) return (ORDER[phase or "new"] or 0) >= ORDER[name] end

local function optional(name)
  local ok, mod = pcall(require, name)
  if ok then return mod end
  if type(mod) == "string" and mod:find("module '" .. name .. "' not found", 1, true) then return nil end
  error(mod, 0)
end

local function phases_need_data(task) return task.phases.full or task.phases.incremental end

-- Sessions a previous, dead run of this task left on a server: a killed engine's statements
-- go on without it (a multi-statement step with its COMMIT, a walsender holding the slot).
-- The control socket has just proved no other instance of the task runs, so they are orphans:
-- terminate them, and wait until they are gone, before reading the task's state.
local function end_orphans(task, conn, progress)
  local sql = [[
SELECT pid FROM pg_catalog.pg_stat_activity
WHERE (application_name = $1 OR starts_with(application_name, $1 || ':'))
  AND pid <> pg_catalog.pg_backend_pid()]]
  local rows = conn:query(sql, "pgtide:" .. task.name)
  if not rows or #rows == 0 then return end
  progress:note(string.format("ending %d session(s) left by an earlier run of %s", #rows, task.name))
  for _, r in ipairs(rows) do conn:query("SELECT pg_catalog.pg_terminate_backend($1)", r.pid) end
  local deadline = tide.monotonic() + 30
  repeat
    rows = conn:query(sql, "pgtide:" .. task.name)
    if not rows or #rows == 0 then return end
    tide.sleep(0.05)
  until tide.monotonic() > deadline
  failure.raise("failed", string.format("sessions of an earlier run of %s (pids %s) do not end; end them with pg_terminate_backend and run again",
    task.name, table.concat((function() local p = {} for i, r in ipairs(rows) do p[i] = r.pid end return p end)(), ", ")))
end

local function run_once(task, opts, progress)
  local source, target = connect.open_both(task)
  task.connected_once = true
  task.source, task.target = source, target
  task.phase = "starting"
  -- Live control (pgtide status / attach): a socket of this task's own, when available.
  local live = optional "tide.live"
  if live then live.serve(task, opts) end
  end_orphans(task, source, progress)
  end_orphans(task, target, progress)
  progress:line("source: %s (PostgreSQL %s)", task.source_info, connect.version_string(source:server_version()))
  progress:line("target: %s (PostgreSQL %s)", task.target_info, connect.version_string(target:server_version()))

  local state_mod = require "tide.state"
  local phase, pre_started = state_mod.peek(task, target)
  local resumed = (phase ~= nil and phase ~= "new" and phase ~= "done") or pre_started == true
  local finished = phase == "done"
  if finished then phase = nil end
  if resumed then progress:note("resuming task " .. task.name .. " from phase '" .. phase .. "'") end

  local plan = require("tide.plan").build(task, source, target)
  for _, w in ipairs(plan.warnings) do progress:line("plan: warning: %s", w.message) end
  if finished and #plan.conflicts > 0 and task.phases.schema then
    failure.raise("precheck", string.format("task %s already finished on this target: its objects are there and " ..
      "its recorded phase is \"done\"; nothing was written\n  hint: to migrate again, run `pgtide release` for " ..
      "the task (it forgets the recorded progress) and empty the target, or give the task another name", task.name))
  end
  -- Objects already on the target conflict only when this task is to create them.
  if #plan.errors > 0 or (#plan.conflicts > 0 and task.phases.schema and not resumed) then
    failure.raise("precheck", require("tide.schema").refusal(plan))
  end

  if phases_need_data(task) then require("tide.full").validate_filters(task, plan, source) end

  local precheck = optional "tide.precheck"
  if precheck and not opts["no-precheck"] then
    precheck.gate(task, plan, source, target, { resumed = resumed, progress = progress })
  end

  local state = state_mod.open(task, target)
  local schema = require "tide.schema"
  local phases = task.phases

  if phase == "cutover" then
    -- The stop condition fired, the cutover hooks ran and the stream ended; the engine stopped
    -- before the task was recorded as done (maybe while releasing). Only the release is left.
    progress:note("the cutover of task " .. task.name .. " already ran; finishing the task")
    if phases.incremental and (task.incremental or {}).release then
      for _, d in ipairs(require("tide.cdc.objects").release(task, source, target)) do
        progress:line("release: dropped %s", d)
      end
    end
    state:set_phase("done")
    task.phase = "done"
    progress:summary()
    if live then live.close(task) end
    source:close()
    target:close()
    return 0
  end

  if phases.schema and not reached(phase, "schema_pre") then
    task.phase = "schema"; progress:phase_start("schema")
    -- The phase is recorded in the transaction that creates the last objects: a kill cannot
    -- leave objects the task does not know it made.
    local n = schema.apply_pre(task, plan, target, { done = pre_started and state:steps_done() or nil,
      record = function(keys, final)
        return final and state:phase_sql(target, "schema_pre") or state:steps_done_sql(target, keys)
      end })
    progress:phase_end("schema", string.format("%d pre-data statements", n))
  end

  local cdc, info
  if phases.incremental then
    cdc = require "tide.cdc"
    if phases.full and reached(phase, "post") then
      -- The full load is done: only the slot made before it can bring the changes since. A lost
      -- slot, or none (dropped by hand), cannot: a new one would start with a gap.
      local objects = require "tide.cdc.objects"
      local names = objects.names(task)
      local slot = objects.slot_info(source, names)
      objects.raise_if_lost(slot, names)
      if not slot then
        failure.raise("slot_lost", string.format(
          "the replication slot %s of task %s is gone (dropped outside pgtide?), but the target records its " ..
          "full load as done: a new slot would start after changes that were never applied, leaving a gap\n" ..
          "  hint: run `pgtide release` for this task (it also forgets the task's progress), empty the target " ..
          "tables, and run the task again: it migrates again with a full load", names.slot, task.name))
      end
    end
    task.phase = "slot"; progress:phase_start("slot")
    info = cdc.prepare(task, plan, source, target, { snapshot = phases.full and not reached(phase, "post") })
    progress:phase_end("slot")
    if info.resumed and not reached(phase, "post") then
      -- The origin has a position: the full load committed and copy_done ran before the
      -- phase could be recorded.
      state:set_phase("post")
      phase = "post"
    elseif info.snapshot and #state:parts() > 0 then
      -- An earlier full load was interrupted, and its snapshot died with its slot. Parts
      -- copied under it cannot be mixed with parts copied under the new one (the stream
      -- starts at the new slot), so the copy starts over: its record is forgotten and the
      -- tables are emptied.
      progress:note("the interrupted full load restarts from the beginning under the new slot's snapshot")
      local undone = require("tide.full").start_over(task, plan, target, state)
      if undone > 0 then
        progress:note(string.format("dropped %d foreign key(s) and trigger(s) built by the interrupted load; " ..
                                    "they are built again after the copy", undone))
        -- The plan was made with them on the target (their comments, say, counted as there).
        plan = require("tide.plan").build(task, source, target)
      end
    end
  end

  if phases.full and not reached(phase, "post") then
    task.phase = "full"; progress:phase_start("full")
    local stats = require("tide.full").run(task, plan, source, target, {
      state = state, progress = progress, snapshot = info and info.snapshot, stream = info ~= nil,
      on_imported = function() if info and info.hold then info.hold:close(); info.hold = nil end end,
    })
    -- The origin's position is recorded before the phase: a crash in between leaves a slot
    -- whose origin has a position, which the next run recognises (info.resumed above).
    if cdc then cdc.copy_done(task, info, target) end
    state:set_phase("post")
    progress:phase_end("full", string.format("%d rows, %s", stats.rows, require("tide.progress").human_bytes(stats.bytes)))
  elseif phases.schema and not reached(phase, "post") then
    task.phase = "post-data"; progress:phase_start("post-data")
    local done = state:steps_done()
    local n = schema.apply_post(task, plan, target, {
      skip = function(step) return done[step.key] end,
      record_sql = function(step) return state:step_done_sql(target, step.key, 0) end,
    })
    state:set_phase("post")
    progress:phase_end("post-data", string.format("%d statements", n))
  end

  local summary
  if cdc then
    if not reached(phase, "incremental") then
      if not phases.full then cdc.copy_done(task, info, target) end
      state:set_phase("incremental")
    end
    task.phase = "incremental"; progress:phase_start("incremental")
    summary = cdc.stream(task, plan, source, target)
    progress:phase_end("incremental")
    if summary and summary.stopped_by ~= "condition" then
      -- Stopped by a signal or an operator before the stop condition: the task is not done;
      -- running it again goes on streaming from the recorded position.
      progress:note("stopped before the stop condition (" .. tostring(summary.stopped_by) ..
                    "); run the task again to continue streaming")
      if live then live.close(task) end
      source:close()
      target:close()
      return 130
    end
  end

  state:set_phase("done")
  task.phase = "done"
  progress:summary()
  if live then live.close(task) end
  source:close()
  target:close()
  return 0
end

------------------------------------------------------------------------ automatic resume

-- Failures worth another try: the connection dropped, the server restarted or shut down, a
-- serialization failure or deadlock, too many connections. Everything else (a constraint
-- violation, a missing privilege, a playbook mistake) stops the task at once.
local TRANSIENT_STATES = {
  ["57P01"] = "the server was shut down (admin_shutdown)", ["57P02"] = "the server crashed",
  ["57P03"] = "the server is starting up", ["40001"] = "a serialization failure",
  ["40P01"] = "a deadlock", ["53300"] = "too many connections", ["55P03"] = "a lock was not available",
}
local PERMANENT_MESSAGES = { "password authentication failed", "does not exist", "permission denied",
                             "no pg_hba.conf entry", "role .* is not permitted" }

local function sqlstate_of(e, depth)
  depth = depth or 0
  if type(e) ~= "table" or depth > 4 then return nil, nil end
  if e.sqlstate then return e.sqlstate, e.message end
  return sqlstate_of(e.err, depth + 1)
end

function M.transient(e)
  if require("tide.playbook").is_playbook_error(e) then return nil end
  if failure.is_failure(e) and (e.kind == "precheck" or e.kind == "mismatch" or e.kind == "interrupted"
                                or e.kind == "slot_lost") then return nil end
  local state, message = sqlstate_of(e)
  if not state then return nil end
  for _, pattern in ipairs(PERMANENT_MESSAGES) do
    if message and message:find(pattern) then return nil end
  end
  if TRANSIENT_STATES[state] then return TRANSIENT_STATES[state] end
  if state:sub(1, 2) == "08" then return "the connection was lost or refused" end
  return nil
end

local function parse_duration(v, default)
  if v == nil then return default end
  return assert(require("tide.when").seconds(v))
end
M.parse_duration = parse_duration

-- `pgtide run`: run_once, and after a transient failure wait (exponential backoff with
-- jitter) and run again: every phase resumes from what the target records, so a retry never
-- repeats committed work. Limits: retry.attempts (10), retry.max_delay (60 s), retry.window
-- (30 min of retrying in all).
function M.command(task, opts)
  opts = opts or {}
  local progress = require("tide.progress").new(task, opts)
  task.progress_reporter = progress
  local retry = task.retry or {}
  local attempts = retry.attempts or 10
  local max_delay = parse_duration(retry.max_delay, 60)
  local window = parse_duration(retry.window, 1800)
  local first_failure
  local attempt = 0
  while true do
    local ok, result = pcall(run_once, task, opts, progress)
    if ok then return result end
    for _, side in ipairs({ "source", "target" }) do
      local c = task[side]
      if c then pcall(c.close, c); task[side] = nil end
    end
    -- A server that was never reached is a mistake to report at once (exit status 4), not
    -- something to wait for: retrying starts once the task has connected.
    local why = task.connected_once and M.transient(result) or nil
    attempt = attempt + 1
    first_failure = first_failure or tide.monotonic()
    if not why or attempt > attempts or tide.monotonic() - first_failure > window then
      if why then
        progress:note(string.format("giving up after %d attempts (retry.attempts = %d, retry.window = %ds)",
                                    attempt, attempts, window))
      end
      error(result, 0)
    end
    task.last_error = { message = tostring(result), time = tide.now() }
    local delay = math.min(max_delay, 2 ^ (attempt - 1)) * (0.5 + math.random() / 2)
    progress:note(string.format("%s: %s; running again in %.1fs (attempt %d of %d), continuing from the recorded progress",
                                why, tostring(result):gsub("\n.*", ""), delay, attempt + 1, attempts + 1))
    tide.sleep(delay)
  end
end

return M
