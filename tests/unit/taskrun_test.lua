-- The task and its run (tide.taskrun): the task is read-only once validated; the run keeps
-- what changes, records the operator's controls and pushes them to the load and the stream
-- (docs/live.md, "Pause, throttle, stop").
local T = require "testlib"
local tide = require "tide"
local taskrun = require "tide.taskrun"

local function task_of(extra)
  local def = { name = "unit", source = "postgresql://u@127.0.0.1:1/s", target = "postgresql://u@127.0.0.1:1/t" }
  for k, v in pairs(extra or {}) do def[k] = v end
  return tide.task(def)
end

-- A stand-in for tide.full's Load with the methods the run calls; it records them.
local function fake_load()
  local calls = {}
  local load = { stats = { rows = 0, bytes = 0 }, paused = false, calls = calls }
  function load:pause() calls[#calls + 1] = "pause"; self.paused = true end
  function load:resume() calls[#calls + 1] = "resume"; self.paused = false end
  function load:throttle(limits) calls[#calls + 1] = { throttle = limits } end
  function load:fail(err) calls[#calls + 1] = "fail"; self.failed = err end
  return load
end

local function fake_stream()
  local s = { calls = {}, st = { paused = false } }
  function s:status() return self.st end
  function s:pause() self.calls[#self.calls + 1] = "pause"; self.st.paused = true; return true end
  function s:resume() self.calls[#self.calls + 1] = "resume"; self.st.paused = false; return true end
  return s
end

T.test("a task cannot be changed once validated; its fields still read and iterate", function()
  local task = task_of({ migrate = { "schema", "full" }, full = { jobs = 3 } })
  T.eq(task.name, "unit")
  T.eq(task.full.jobs, 3)
  T.raises(function() task.phase = "full" end, "task%.phase cannot be set")
  T.raises(function() task.name = "other" end, "task%.name cannot be set")
  T.eq(task.phase, nil, "the refused write left nothing")
  local keys = {}
  for k in pairs(task) do keys[k] = true end
  T.ok(keys.name and keys.migrate and keys.full, "pairs lists the playbook's fields")
  T.nomatch(tostring(task), "postgresql://", "the conninfo is not shown")
end)

T.test("a run starts with the task's stop condition, which an operator may replace", function()
  local cond = function() return false end
  local task = task_of({ migrate = { "incremental" }, stop = cond })
  local run = taskrun.new(task)
  T.eq(run:stop_condition(), cond)
  T.eq(run.phase, "starting")
  local other = tide.when { lag_below = "1s" }
  run:set_stop_condition(other)
  T.eq(run:stop_condition(), other)
  T.eq(task.stop, cond, "the task keeps the playbook's")
  T.raises(function() run:set_stop_condition(42) end, "task%.stop must be a function")
  T.eq(taskrun.of(run), run, "of(run) is the run")
  T.ok(taskrun.is_run(taskrun.of(task)), "of(task) makes one")
end)

T.test("a pause given before the load waits for it, then takes effect when it starts", function()
  local run = taskrun.new(task_of({ migrate = { "schema", "full" } }))
  run:set_phase("schema")
  T.match(run:pause(), "^pause recorded")
  T.eq(run:apply_pending(), true, "the control waits for its phase")
  local load = fake_load()
  run:attach_load(load)
  T.eq(load.calls[1], "pause", "attaching the load applies the recorded pause")
  T.eq(run:apply_pending(), false, "nothing waits any more")
  T.match(run:resume(), "^resumed the full load")
  T.eq(load.calls[#load.calls], "resume")
  T.eq(run:resume(), "nothing to resume")
end)

T.test("throttle: task-wide limits are shared among the copy jobs; bad limits are errors", function()
  local run = taskrun.new(task_of({ full = { jobs = 4 } }))
  T.match(run:throttle { rows_per_second = 1000 }, "applies when the full load starts")
  local load = fake_load()
  run:attach_load(load)
  T.eq(load.calls[1], { throttle = { rows_per_second = 250 } }, "1000 rows/s over 4 jobs")
  T.eq(run:throttle(nil), "throttle removed")
  T.eq(load.calls[#load.calls], { throttle = {} })
  T.raises(function() run:throttle { rows = 5 } end, "unknown key 'rows'")
  T.raises(function() run:throttle { bytes_per_second = -1 } end, "must be a positive number")
  T.raises(function() run:throttle(5) end, "task:throttle{")
end)

T.test("stop: a running load is failed as interrupted; a stream gets a condition that holds", function()
  local run = taskrun.new(task_of({ migrate = { "full" } }))
  local load = fake_load()
  run:attach_load(load)
  T.match(run:request_stop(), "^stopping: the full load")
  T.eq(load.failed.kind, "interrupted")

  local cond = function() return false end
  local inc = taskrun.new(task_of({ migrate = { "incremental" }, stop = cond }))
  inc:set_phase("incremental")
  local stream = fake_stream()
  inc:attach_stream(stream)
  inc:pause()
  T.eq(stream.calls[1], "pause")
  T.match(inc:request_stop(), "^stopping: the change stream")
  T.eq(inc:stop_condition()(), true, "the operator's condition holds at once")
  T.eq(inc:stop_condition().previous, cond, "and remembers the playbook's")
  T.eq(stream.calls[#stream.calls], "resume", "a paused stream resumes so it can stop")
  local now = inc:stop_condition()
  inc:apply_pending()
  T.eq(inc:stop_condition(), now, "applying again does not wrap it twice")
  inc:detach_stream(stream)
  T.eq(inc:stream_status(), nil)
end)

T.test("stop before any phase that can stop is recorded; with none it says so", function()
  local run = taskrun.new(task_of({ migrate = { "schema", "full" } }))
  T.match(run:request_stop(), "^stop recorded")
  T.eq(run:apply_pending(), true)
  local schema_only = taskrun.new(task_of({ migrate = { "schema" } }))
  T.match(schema_only:request_stop(), "^nothing to stop")
end)
