-- tide.cmd.run — `pgtide run FILE`: the whole task, phase after phase.
--
--   connect both sides → plan → prechecks (nothing written before they pass) →
--   schema pre-data → [incremental: publication + slot, its snapshot] → full load with
--   post-data overlapping it (or post-data alone) → [incremental: stream until the stop
--   condition, cutover hooks] → summary.
--
-- The phase reached is recorded on the target (tide.state), so running the same playbook
-- again after an interruption continues: pre-data is not redone, copied parts and finished
-- post-data steps are skipped.
--
-- The task is the playbook and never changes; everything that changes while it runs (the
-- connections, the phase, the load and the stream, the operator's controls) is on its run
-- (tide.taskrun), made once per `pgtide run` and kept over its automatic retries.
local tide = require "tide.core"
local connect = require "tide.connect"
local failure = require "tide.failure"
local exit = require "tide.exit"
local retry = require "tide.retry"

local M = {}

local ORDER = { new = 0, schema_pre = 1, full = 2, post = 3, incremental = 4, cutover = 5, done = 6 }

local function reached(phase, name) return (ORDER[phase or "new"] or 0) >= ORDER[name] end

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

-- The task is done: recorded on the target, then reported.
local function finish(run, state, progress)
  state:set_phase("done")
  run:set_phase("done")
  progress:summary()
  return exit.ok
end

local function run_once(run, opts, progress)
  local task = run.task
  -- However this attempt ends, its connections close (the run's live control stays up over
  -- retries: `pgtide status` shows the failure being retried).
  local _ <close> = setmetatable({}, { __close = function() run:close_connections() end })
  local source, target = connect.open_both(task)
  run:set_connections(source, target)
  run:set_phase("starting")
  -- Live control (pgtide status / attach): a socket of this task's own.
  require("tide.live").serve(run, opts)
  end_orphans(task, source, progress)
  end_orphans(task, target, progress)
  progress:line("source: %s (PostgreSQL %s)", task.source_info, connect.version_string(source:server_version()))
  progress:line("target: %s (PostgreSQL %s)", task.target_info, connect.version_string(target:server_version()))

  local state_mod = require "tide.state"
  local phase, pre_started = state_mod.peek(task, target)
  local resumed = (phase ~= nil and phase ~= "new" and phase ~= "done") or pre_started == true
  local finished = phase == "done"
  if finished and not opts.again then
    -- Done: say when and what, and how to start over (tide.cmd.finished); nothing to write.
    local rec = state_mod.record(task, target)
    if task.phases.incremental then
      local objects = require "tide.cdc.objects"
      local names = objects.names(task)
      rec.slot = objects.slot_info(source, names) and names.slot or nil
    end
    require("tide.cmd.finished").report(task, rec, opts)
    return exit.ok
  end
  if opts.again and phase ~= nil and not finished then
    failure.raise("usage", string.format("--again starts a finished task over, but task %s has not finished " ..
      "(its recorded phase is '%s'): run it without --again to continue it, or `pgtide release` it first to " ..
      "forget its progress", task.name, phase))
  end
  if finished then phase = nil end
  if task.reverse_of and not resumed then require("tide.cdc.reverse").check_slot(task, source) end
  if resumed then progress:note("resuming task " .. task.name .. " from phase '" .. phase .. "'") end

  local plan = require("tide.plan").build(task, source, target)
  for _, w in ipairs(plan.warnings) do progress:line("plan: warning: %s", w.message) end
  if finished and #plan.conflicts > 0 and task.phases.schema then
    failure.raise("precheck", require("tide.schema").refusal(plan) .. string.format("\n--again: task %s would " ..
      "start over, but the objects above are already on the target (from its finished run?); nothing was " ..
      "written and its recorded progress is kept\n  hint: to load them again in place, set schema = { existing = " ..
      "\"skip\" } and full = { existing = \"truncate\" } (replaces their rows), or drop them on the target", task.name))
  end
  -- Objects already on the target conflict only when this task is to create them.
  if #plan.errors > 0 or (#plan.conflicts > 0 and task.phases.schema and not resumed) then
    failure.raise("precheck", require("tide.schema").refusal(plan))
  end

  if phases_need_data(task) then require("tide.full").validate_filters(task, plan, source) end

  if not opts["no-precheck"] then
    require("tide.precheck").gate(task, plan, source, target, { resumed = resumed, progress = progress })
  end
  -- A resumed run's conflicts are what the earlier run made (not in the way, as checked
  -- above): nothing reads them past here (at 100,000 tables one for every object).
  if resumed then plan.conflicts = {} end
  require("tide.plan").keep_for_run(plan, task)
  -- What the prechecks, the catalogs and the objects held goes back to the system now, not
  -- when the allocator next works on those pages: the schema phase, the slot and the full
  -- load run beside what is left (docs/performance.md).
  require("tide.core").release_memory()

  if finished then
    -- --again, and nothing in the way: forget the finished run (as `pgtide release`), so every
    -- phase runs again from the beginning.
    if task.phases.incremental then
      for _, d in ipairs(require("tide.cdc.objects").release(task, source, target)) do
        progress:line("again: dropped %s", d)
      end
    end
    state_mod.forget(task, target)
    progress:note("--again: forgot the recorded progress of the finished task " .. task.name .. "; starting over")
  end
  local state = state_mod.open(task, target)
  -- The plan made again after a start over undid objects on the target; the old one goes
  -- first (at 100,000 tables both at once are gigabytes).
  local function plan_again()
    plan = nil
    collectgarbage("collect")
    local again = require("tide.plan").build(task, source, target)
    again.conflicts = {}   -- (what this run and the earlier one made, as above)
    require("tide.plan").keep_for_run(again, task)
    again.pre_data = {}   -- (made past the schema phase's pre-data part: see below)
    require("tide.core").release_memory()
    return again
  end
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
    return finish(run, state, progress)
  end

  if phases.schema and not reached(phase, "schema_pre") then
    run:set_phase("schema"); progress:phase_start("schema")
    -- The phase is recorded in the transaction that creates the last objects: a kill cannot
    -- leave objects the task does not know it made.
    local n = schema.apply_pre(task, plan, target, { done = pre_started and state:steps_done() or nil,
      record = function(keys, final)
        return final and state:phase_sql(target, "schema_pre") or state:steps_done_sql(target, keys)
      end })
    progress:phase_end("schema", string.format("%d pre-data statements", n))
  end
  -- Past here no pre-data step runs in this attempt (a start over makes its plan anew): they
  -- go, CREATE TABLE statements and all, before the slot and the load.
  plan.pre_data = {}

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
    run:set_phase("slot"); progress:phase_start("slot")
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
        progress:note(string.format("undid %d foreign key(s), trigger(s) and event trigger enabling(s) of the " ..
                                    "interrupted load; they are done again after the copy", undone))
        -- The plan was made with them on the target (their comments, say, counted as there).
        plan = plan_again()
      end
    end
  end

  if phases.full and not reached(phase, "post") and state:steps_done()[require("tide.full").START_OVER_MARK] then
    -- A start over that a kill interrupted (tide.full.start_over): it is finished first.
    progress:note("the full load was starting over when the task stopped: it starts over again")
    if require("tide.full").start_over(task, plan, target, state) > 0 then plan = plan_again() end
  end
  if phases.full and not reached(phase, "post") then
    run:set_phase("full"); progress:phase_start("full")
    local stats = require("tide.full").run(task, plan, source, target, {
      state = state, progress = progress, snapshot = info and info.snapshot, stream = info ~= nil, run = run,
      on_imported = function() if info and info.hold then info.hold:close(); info.hold = nil end end,
    })
    -- The origin's position is recorded before the phase: a crash in between leaves a slot
    -- whose origin has a position, which the next run recognises (info.resumed above).
    if cdc then cdc.copy_done(task, info, target) end
    state:set_phase("post")
    progress:phase_end("full", string.format("%d rows, %s", stats.rows, require("tide.progress").human_bytes(stats.bytes)))
  elseif phases.schema and not reached(phase, "post") then
    run:set_phase("post-data"); progress:phase_start("post-data")
    local done = state:steps_done()
    -- (A resumed run's plan conflicts with what the earlier one made: not in the way, as
    -- checked above.)
    local n = schema.apply_post(task, plan, target, { resuming = resumed,
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
    run:set_phase("incremental"); progress:phase_start("incremental")
    -- The stream, which may run for days, keeps only what it reads of the plan (with the
    -- finished load's letting go, tide.full: at 10,000 tables the live heap at the stream's
    -- start went from 91 to 32 MB).
    require("tide.plan").keep_for_stream(plan)
    require("tide.core").release_memory()
    summary = cdc.stream(run, plan, source, target)
    progress:phase_end("incremental")
    if summary and summary.stopped_by ~= "condition" and summary.stopped_by ~= "cutover" then
      -- Stopped by a signal or an operator before the stop condition: the task is not done;
      -- running it again goes on streaming from the recorded position.
      progress:note("stopped before the stop condition (" .. tostring(summary.stopped_by) ..
                    "); run the task again to continue streaming")
      return exit.interrupted
    end
  end

  return finish(run, state, progress)
end

------------------------------------------------------------------------ automatic resume

-- Failures worth another try (the connection dropped, the server restarted, a deadlock, ...)
-- and the wait before it: tide.retry, the same rule as the change stream's reconnects.
-- Everything else (a constraint violation, a missing privilege, a playbook mistake) stops the
-- task at once.
M.transient = retry.transient

-- `pgtide run`: run_once, and after a transient failure wait (exponential backoff with
-- jitter) and run again: every phase resumes from what the target records, so a retry never
-- repeats committed work. Limits: retry.attempts (10), retry.max_delay (60 s), retry.window
-- (30 min of retrying in all).
function M.command(task, opts)
  opts = opts or {}
  local progress = require("tide.progress").new(task, opts)
  local run = require("tide.taskrun").new(task, opts)
  run.progress = progress
  require("tide.log").configure { format = opts["log-format"] or task.log_format, run = run }
  -- The control socket and the metrics endpoint close when the command ends, however it ends.
  local _ <close> = setmetatable({}, { __close = function()
    require("tide.live").close(run)
    require("tide.metrics").close(run)
  end })
  -- Before anything is connected or written: a metrics port in use stops the run at once.
  require("tide.metrics").serve(run)
  -- The run's timeline on the target (`pgtide report`), ended with the exit status.
  progress.timeline = require("tide.timeline").new(run)
  -- An internal error keeps the traceback of where it happened.
  local ok, result = xpcall(M.attempts, function(e)
    if type(e) == "table" then return e end
    return debug.traceback(tostring(e), 2)
  end, run, opts, progress)
  local status = ok and result or (type(result) == "table" and result.exit) or
                 (require("tide.playbook").is_playbook_error(result) and exit.playbook) or exit.internal
  progress.timeline:finish(status, not ok and tostring(type(result) == "table" and result.message or result):gsub("\n.*", "") or nil)
  if not ok then error(result, 0) end
  return result
end

-- run_once until it succeeds, or fails in a way a retry cannot mend.
function M.attempts(run, opts, progress)
  local task = run.task
  local limits = retry.limits(task.retry)
  local attempts, max_delay, window = limits.attempts, limits.max_delay, limits.window
  local first_failure
  local attempt = 0
  while true do
    local ok, result = pcall(run_once, run, opts, progress)
    if ok then return result end
    -- A server that was never reached is a mistake to report at once (exit status 4), not
    -- something to wait for: retrying starts once the task has connected.
    local why = run.connected_once and M.transient(result) or nil
    attempt = attempt + 1
    first_failure = first_failure or tide.monotonic()
    if not why or attempt > attempts or tide.monotonic() - first_failure > window then
      if why then
        progress:note(string.format("giving up after %d attempts (retry.attempts = %d, retry.window = %gs)",
                                    attempt, attempts, window))
      end
      error(result, 0)
    end
    run.last_error = { message = tostring(result), time = tide.now() }
    run.retries = (run.retries or 0) + 1
    local delay = retry.delay(attempt, max_delay)
    progress:note(string.format("%s: %s; running again in %.1fs (attempt %d of %d), continuing from the recorded progress",
                                why, tostring(result):gsub("\n.*", ""), delay, attempt + 1, attempts + 1))
    tide.sleep(delay)
  end
end

return M
