-- tide.live — a running task's control socket, for `pgtide status` and `pgtide attach`
-- (docs/live.md). tide.run calls serve(task, opts) once both sides are connected and
-- close(task) when the task is done.
--
-- Everything runs as coroutines on the task's own loop, next to the migration's: the control
-- loop (accepting clients, sampling progress for the rates, applying operator controls given
-- before their phase started) and one reader per attached client (tide.live.session). Nothing
-- here may fail the migration: a bug in a session is reported on stderr and that session ends.
local core = require "tide.core"
local failure = require "tide.failure"
local json = require "tide.json"

local M = {}

M.PROTOCOL = 1
local RATE_WINDOW = 10        -- seconds of samples behind the rates in the status

local serving = setmetatable({}, { __mode = "k" })   -- task → live state

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

-- Run fn(...) as a coroutine whose error is written to stderr instead of failing the task.
local function guarded_spawn(what, fn, ...)
  return core.spawn(function(...)
    local ok, err = xpcall(fn, debug.traceback, ...)
    if not ok then io.stderr:write("pgtide: live control (", what, ") failed: ", tostring(err), "\n") end
  end, ...)
end
M.guarded_spawn = guarded_spawn

------------------------------------------------------------------------ progress samples

-- Rows and bytes the full load has moved so far, committed parts and parts in flight.
function M.load_totals(load)
  local rows, bytes = load.stats.rows, load.stats.bytes
  for _, pump in pairs(load.running) do
    local b, messages = pump:stats()
    rows, bytes = rows + messages, bytes + b
  end
  return rows, bytes
end

function M.sample(live)
  local load = live.task.load
  if not load then return end
  if live.sampled_load ~= load then live.samples, live.sampled_load = {}, load end
  local rows, bytes = M.load_totals(load)
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

------------------------------------------------------------------------ serving

-- The task's control loop: accepts clients, and between them (accept's timeout is the tick)
-- samples progress and pushes recorded controls to the phase running now. A control waiting
-- for its phase is checked often, so a load that starts after a pause was asked for copies as
-- little as possible before the pause takes effect. (Accept's timer belongs to the server, so
-- no wait record outlives the loop when the task ends while this coroutine waits.)
local function control_loop(live)
  local Session = require "tide.live.session"
  local control = require "tide.live.control"
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
    M.sample(live)
    pending = control.apply_pending(live.task)
  end
end

-- Ask the control loop to look at the task now (a control was just recorded).
function M.poke(task)
  local live = serving[task]
  if live and not live.closed then live.server:wake() end
end

function M.serve(task, opts)
  opts = opts or {}
  if serving[task] then return serving[task] end
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
    task = task, server = server, path = path, pid = core.getpid(), started = core.now(),
    sessions = {}, next_session = 0, samples = {}, closed = false,
  }
  serving[task] = live
  live.loop = guarded_spawn("control loop", control_loop, live)
  return live
end

function M.close(task)
  local live = serving[task]
  if not live then return end
  serving[task] = nil
  live.closed = true
  live.server:close()
  for session in pairs(live.sessions) do session:close() end
end

-- The live state of a served task (nil when it is not served).
function M.of(task) return serving[task] end

-- The status table of a served task (tide.live.status): plain data, JSON-encodable.
function M.status(task)
  local live = serving[task]
  if not live then return nil end
  return require("tide.live.status").collect(live)
end

return M
