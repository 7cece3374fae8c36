-- tide.live.session — one client attached to a running task (the protocol is in docs/live.md).
--
-- The session reads frames in its own coroutine and answers each request in order: a chunk
-- of Lua (E) runs as a coroutine of its own on the task's loop, in an environment of this
-- session's that falls back to the globals, with `task` bound to the operator's view of the
-- task (tide.live.handle) and print/io.write sent back to the client (O frames). The chunk
-- ends with R (its results, pretty-printed) or X (the error with its traceback). Meanwhile the
-- reader keeps listening, so an interrupt (I) reaches the chunk: a count hook
-- (engine/live/lua_guard.c) preempts user code every few milliseconds, stops it when interrupted
-- or over its limits, and never lets it starve the migration's own coroutines.
local core = require "tide.core"
local tide = require "tide"
local json = require "tide.json"
local repl = require "tide.repl"
local connect = require "tide.connect"
local guarded_spawn = require("tide.live.guarded").spawn
local status = require "tide.live.status"
local mask = require "tide.live.mask"
local handle = require "tide.live.handle"

local M = {}

local Session = {}
Session.__index = Session

local CHUNK_NAME = "=attach"   -- error positions read "attach:1:"
local INTERRUPT_GRACE = 0.5    -- seconds a waiting chunk gets to notice an interrupt

function M.new(live, channel, id)
  local s = setmetatable({
    live = live, task_run = live.run, task = live.run.task, channel = channel, id = id,
    connections = {},                                   -- side → this session's connection
    owned = {},                                         -- every connection it opened
    abandoned = setmetatable({}, { __mode = "k" }),     -- guards of interrupted chunks left waiting
    guards = setmetatable({}, { __mode = "k" }),        -- every chunk's guard (its coroutines may outlive it)
    limits = { cpu_limit = 60, block_limit = 5 },
    filter = mask.filter(live.run.task),
  }, Session)
  s.env = s:make_env()
  return s
end

------------------------------------------------------------------------ output

function Session:send(kind, text)
  if self.closed then return end
  self.channel:send(kind, self.filter(text or ""))
end

-- Output of chunks and of the coroutines they started; an abandoned chunk's is dropped.
function Session:emit(text)
  local guard = core.chunk_guard_of()
  if guard and self.abandoned[guard] then return end
  self:send("O", text)
end

function Session:print(...)
  local parts = {}
  for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
  self:emit(table.concat(parts, "\t") .. "\n")
end

function Session:write(...)
  local parts = {}
  for i = 1, select("#", ...) do
    local v = select(i, ...)
    if type(v) ~= "string" and type(v) ~= "number" then
      error("bad argument #" .. i .. " to 'write' (string expected, got " .. type(v) .. ")", 3)
    end
    parts[i] = tostring(v)
  end
  self:emit(table.concat(parts))
end

------------------------------------------------------------------------ the environment

-- coroutine.resume for chunks: a yield the guard's hook forced on the coroutine (to keep the
-- task's loop turning) is not the coroutine's own, so let the loop turn and resume it again.
local function resume(co, ...)
  local r = table.pack(coroutine.resume(co, ...))
  local guard = core.chunk_guard_of(co)
  while guard and r[1] and r.n == 1 and guard:preempted(co) do
    if tide.running() and coroutine.isyieldable() then tide.yield() end
    r = table.pack(coroutine.resume(co))
  end
  return table.unpack(r, 1, r.n)
end

local function resume_or_raise(co, ...)
  local r = table.pack(resume(co, ...))
  if not r[1] then error(r[2], 0) end
  return table.unpack(r, 2, r.n)
end

-- tide.spawn for chunks: the new coroutine is watched by the spawning chunk's guard, and
-- someone always waits for it, so its failure shows in this session instead of counting as
-- an unreported error that would fail the task's run.
function Session:spawn(fn, ...)
  local guard = core.chunk_guard_of()
  local h = core.spawn(function(...)
    if guard then guard:watch() end
    return fn(...)
  end, ...)
  guarded_spawn("reaper", function()
    local ok, err = pcall(h.wait, h)
    if not ok then self:send("O", "a coroutine started in this session failed: " .. tostring(err) .. "\n") end
  end)
  return h
end

function Session:make_env()
  local s = self
  local env = {}
  env.task = handle.new(self)
  env.print = function(...) s:print(...) end
  env.io = setmetatable({
    write = function(...) s:write(...) return env.io end,
    read = function() error("io.read: a chunk runs inside the task and has no input", 2) end,
  }, { __index = io })
  env.tide = setmetatable({ spawn = function(fn, ...) return s:spawn(fn, ...) end,
                            when = require("tide.when") }, { __index = tide })
  -- Coroutines a chunk creates are watched by its guard too (an endless loop inside one is
  -- stopped like one in the chunk).
  env.coroutine = setmetatable({
    create = function(fn)
      local co = coroutine.create(fn)
      local guard = core.chunk_guard_of()
      if guard then guard:watch(co) end
      return co
    end,
    wrap = function(fn)
      local co = env.coroutine.create(fn)
      return function(...) return resume_or_raise(co, ...) end
    end,
    resume = resume,
  }, { __index = coroutine })
  env.session = setmetatable({}, {
    __index = function(_, k) if k == "id" then return s.id end return s.limits[k] end,
    __newindex = function(_, k, v)
      if k ~= "cpu_limit" and k ~= "block_limit" then
        error("session." .. tostring(k) .. " cannot be set (cpu_limit and block_limit can)", 2)
      end
      if type(v) ~= "number" or v < 0 then error("session." .. k .. " must be a number of seconds (0: no limit)", 2) end
      s.limits[k] = v
      local guard = core.chunk_guard_of()
      if guard then guard:set { [k] = v } end
    end,
    __tostring = function()
      return string.format("session %d (cpu_limit = %gs, block_limit = %gs)", s.id, s.limits.cpu_limit, s.limits.block_limit)
    end,
  })
  return setmetatable(env, { __index = _G })
end

------------------------------------------------------------------------ connections

function Session:open_connection(side)
  local c = connect.open(self.task, side, { application_name = "pgtide:" .. self.task.name .. ":attach" })
  self.owned[#self.owned + 1] = c
  return c
end

-- task.source / task.target in the REPL: this session's own, opened on first use.
function Session:connection(side)
  local c = self.connections[side]
  if c and c:status() ~= "closed" and c:status() ~= "bad" then return c end
  c = self:open_connection(side)
  self.connections[side] = c
  return c
end

local function cancel_busy(conn)
  if conn:status() == "busy" then guarded_spawn("cancel", function() pcall(conn.cancel, conn) end) end
end

function Session:close_connections()
  for _, c in ipairs(self.owned) do
    if c:status() == "busy" then
      -- Closing under a waiting chunk would leave it waiting forever: cancel, let it see the
      -- error, then close.
      guarded_spawn("closer", function()
        pcall(c.cancel, c)
        local deadline = core.monotonic() + 10
        while c:status() == "busy" and core.monotonic() < deadline do core.sleep(0.1) end
        c:close()
      end)
    else
      c:close()
    end
  end
  self.owned, self.connections = {}, {}
end

------------------------------------------------------------------------ requests

function Session:evaluate(text)
  local current = self.chunk
  if current and not current.done and not current.abandoned then
    return self:send("X", "a chunk is still running in this session (interrupt it first)")
  end
  local fn, err = repl.compile(text, self.env, CHUNK_NAME)
  if not fn then return self:send("X", err) end
  local guard = core.chunk_guard(self.limits)
  self.guards[guard] = true
  local chunk = { guard = guard, done = false, ended = core.condition() }
  self.chunk = chunk
  chunk.handle = guarded_spawn("chunk", function()
    local function run()
      -- Unwatch on every way out, inside the protected call.
      local _ <close> = setmetatable({}, { __close = function() guard:unwatch() end })
      guard:watch()
      return repl.evaluate(fn)
    end
    local pok, ok, out = pcall(run)
    guard:unwatch()
    if not pok then ok, out = false, tostring(ok) end
    chunk.done = true
    chunk.ended:notify()
    if not chunk.abandoned then self:send(ok and "R" or "X", out) end
  end)
end

function Session:interrupt()
  local chunk = self.chunk
  if not chunk or chunk.done or chunk.abandoned then return end
  chunk.guard:interrupt("interrupted")
  -- A chunk waiting on a statement of this session's connections gets it cancelled.
  for _, c in ipairs(self.owned) do cancel_busy(c) end
  chunk.ended:wait(INTERRUPT_GRACE)
  if chunk.done then return end   -- it answered for itself, with the traceback
  chunk.abandoned = true
  self.abandoned[chunk.guard] = true
  local _, on = chunk.handle:status()
  self:send("X", "interrupted; the chunk was waiting (" .. tostring(on or "?") .. "): it is left to end in " ..
                 "the background, stops at its next step in your code, and its output is dropped")
end

function Session:complete(word)
  -- Only names and field/method chains: completing must never call anything.
  if word ~= "" and not word:match("^[%a_][%w_]*[%w_%.:]*$") then return {} end
  if word:find("[%.:][%.:]") or word:find(":.*[%.:]") then return {} end
  local ok, list = pcall(repl.complete, self.env, word)
  return ok and type(list) == "table" and list or {}
end

function Session:status_json(brief)
  local ok, st = pcall(status.of_run, self.task_run)
  if not ok then return nil, tostring(st) end
  if brief then st = status.brief(st) end
  return json.encode(st or {})
end

function Session:run()
  local task = self.task
  self:send("W", json.encode({ protocol = status.PROTOCOL, task = task.name, pid = self.live.pid,
                               version = core.version, phase = self.task_run.phase, session = self.id }))
  while not self.closed do
    local kind, payload = self.channel:receive()
    if not kind then break end
    if kind == "E" then
      self:evaluate(payload)
    elseif kind == "I" then
      self:interrupt()
    elseif kind == "C" then
      self:send("C", table.concat(self:complete(payload), "\n"))
    elseif kind == "S" then
      local text, err = self:status_json(payload == "brief")
      if text then self:send("S", text) else self:send("X", "status failed: " .. err) end
    else
      self:send("X", string.format("unknown request %q (this task speaks protocol %d)", kind, status.PROTOCOL))
    end
  end
  self:close()
end

function Session:close()
  if self.closed then return end
  self.closed = true
  local chunk = self.chunk
  if chunk and not chunk.done then chunk.abandoned = true end
  -- Coroutines the session's chunks started end with it (at their next step in user code).
  for guard in pairs(self.guards) do
    guard:interrupt("the attached client went away")
    self.abandoned[guard] = true
  end
  self.channel:close()
  self:close_connections()
end

return M
