-- tide.connect — opening the task's connections to source and target, with the messages a
-- DBA needs when that fails (which side, the masked conninfo, the server's words, a hint).
local core = require "tide.core"
local playbook = require "tide.playbook"
local failure = require "tide.failure"

local M = {}

-- M.open(task, side [, opts]) → conn; raises a connection failure naming the side.
function M.open(task, side, opts)
  local conninfo = assert(playbook.conninfo(task, side), "task has no " .. side)
  opts = opts or {}
  opts.application_name = opts.application_name or ("pgtide:" .. task.name)
  if side == "target" and task.reverse_of then
    -- A reverse task writes to the old source, which its forward task's cutover fenced
    -- read-only (docs/cutover.md): pgtide's own sessions set the fence aside.
    local settings = {}
    for k, v in pairs(opts.settings or {}) do settings[k] = v end
    settings.default_transaction_read_only = "off"
    opts.settings = settings
  end
  local conn, err = core.connect(conninfo, opts)
  if not conn then
    local msg = string.format("cannot connect to the %s (%s): %s", side,
                              core.mask_conninfo(conninfo), err.message or tostring(err))
    if err.hint then msg = msg .. "\n  hint: " .. err.hint end
    failure.raise("connection", msg, { side = side, err = err })
  end
  return conn
end

-- M.together(calls) → for each call { f, args... } its values as a packed list, the calls
-- run at once (each waits for a server: a new backend takes tens of milliseconds to start).
-- When one raises, the connections the others returned (a first value with a close method)
-- are closed, and the first failure in the list's order is raised as it was raised (pcall
-- inside each coroutine: no scheduler's traceback added).
function M.together(calls)
  local function try(call) return table.pack(pcall(table.unpack(call, 1, call.n or #call))) end
  local handles = {}
  for i, call in ipairs(calls) do handles[i] = core.spawn(try, call) end
  local outcomes = {}
  for i, r in ipairs(require("tide.wait").all(handles)) do
    outcomes[i] = r.ok and r.values[1] or { n = 2, false, r.err }
  end
  for _, failed in ipairs(outcomes) do
    if not failed[1] then
      -- (A value that cannot be indexed, or a close that raises, leaves the failure as it was.)
      for _, other in ipairs(outcomes) do
        local c = other[1] and other[2]
        local kind = type(c)
        if kind == "userdata" or kind == "table" then
          local ok, close = pcall(function() return c.close end)
          if ok and type(close) == "function" then pcall(close, c) end
        end
      end
      error(failed[2], 0)
    end
  end
  local values = {}
  for i, o in ipairs(outcomes) do values[i] = table.pack(table.unpack(o, 2, o.n)) end
  return values
end

-- Open both sides at once; returns source, target.
function M.open_both(task)
  local opened = M.together({ { M.open, task, "source" }, { M.open, task, "target" } })
  return opened[1][1], opened[2][1]
end

-- "15.18" from 150018
function M.version_string(num)
  if num >= 100000 then return string.format("%d.%d", num // 10000, num % 10000) end
  return string.format("%d.%d.%d", num // 10000, (num // 100) % 100, num % 100)
end

return M
