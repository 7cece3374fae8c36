-- tide.live — a running task's control socket, for `pgtide status` and `pgtide attach`
-- (docs/live.md). tide.cmd.run calls serve(run, opts) once both sides are connected and
-- close(run) when the run ends. Everything about the task it reports or steers, it reaches
-- through the run's methods (tide.taskrun).
--
-- Everything runs as coroutines on the task's own loop, next to the migration's: the control
-- loop (accepting clients, sampling progress for the rates, applying operator controls given
-- before their phase started) and one reader per attached client (tide.live.session). Nothing
-- here may fail the migration: a bug in a session is reported on stderr and that session ends.
local core = require "tide.core"
local failure = require "tide.failure"
local json = require "tide.json"

local M = {}

local guarded_spawn = require("tide.live.guarded").spawn
local status = require "tide.live.status"

M.PROTOCOL = status.PROTOCOL

-- The socket of task `name`: --control PATH, else RUN_DIR/NAME.sock (created private).
function M.socket_path(name, control)
  if control then return control end
  local dir, err = core.control_dir(true)
  if not dir then
    failure.raise("failed", "cannot open the control socket of task " .. name .. ": " .. err ..
                            "\n  hint: --control PATH puts the socket elsewhere")
  end
  return dir .. "/" .. name .. ".sock"
end

-- Read the welcome of whoever serves `path` (a second run of the task wants to name the first).
local function peek_welcome(path)
  local client = core.control_connect(path)
  if not client then return nil end
  local kind, payload = client:receive(1)
  client:close()
  if kind ~= "W" then return nil end
  local ok, welcome = pcall(json.decode, payload)
  return ok and welcome or nil
end

------------------------------------------------------------------------ serving

-- The task's control loop: accepts clients, and between them (accept's timeout is the tick)
-- samples progress and pushes recorded controls to the phase running now. A control waiting
-- for its phase is checked often, so a load that starts after a pause was asked for copies as
-- little as possible before the pause takes effect. (Accept's timer belongs to the server, so
-- no wait record outlives the loop when the task ends while this coroutine waits.)
local function control_loop(live)
  local Session = require "tide.live.session"
  local pending = false
  while not live.closed do
    local channel, err = live.server:accept(pending and 0.05 or 1)
    if channel then
      live.next_session = live.next_session + 1
      local session = Session.new(live, channel, live.next_session)
      live.sessions[session] = true
      guarded_spawn("session " .. live.next_session, function()
        session:run()
        live.sessions[session] = nil
      end)
    elseif err ~= "timeout" then
      break
    end
    status.sample(live)
    pending = live.run:apply_pending()
  end
end

function M.serve(run, opts)
  opts = opts or {}
  if run.live then return run.live end
  local task = run.task
  local path = M.socket_path(task.name, opts.control)
  local server, err, code = core.control_listen(path)
  if not server then
    if code == "EADDRINUSE" then
      local other = peek_welcome(path)
      failure.raise("failed", string.format(
        "task %s is already running%s; its control socket is %s\n" ..
        "  hint: `pgtide status %s` shows it; two runs of one task would load the same data twice",
        task.name, other and other.pid and (" (pid " .. math.tointeger(other.pid) .. ")") or "", path, task.name))
    end
    failure.raise("failed", "cannot open the control socket of task " .. task.name .. ": " .. err)
  end
  local live = {
    run = run, task = task, server = server, path = path, pid = core.getpid(), started = core.now(),
    sessions = {}, next_session = 0, samples = {}, closed = false,
  }
  -- The run wakes the control loop when an operator records a control.
  live.wake = function() if not live.closed then server:wake() end end
  run.live = live
  live.loop = guarded_spawn("control loop", control_loop, live)
  return live
end

function M.close(run)
  local live = run.live
  if not live then return end
  run.live = nil
  live.closed = true
  live.server:close()
  for session in pairs(live.sessions) do session:close() end
end

-- The status table of a served run (tide.live.status): plain data, JSON-encodable.
M.status = status.of_run

return M
