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

-- Open both sides at once; returns source, target.
function M.open_both(task)
  local hs = { core.spawn(M.open, task, "source"), core.spawn(M.open, task, "target") }
  local results = require("tide.wait").all(hs)
  for _, r in ipairs(results) do
    if not r.ok then
      for _, other in ipairs(results) do
        if other.ok then other.values[1]:close() end
      end
      error(r.err, 0)
    end
  end
  return results[1].values[1], results[2].values[1]
end

-- "15.18" from 150018
function M.version_string(num)
  if num >= 100000 then return string.format("%d.%d", num // 10000, num % 10000) end
  return string.format("%d.%d.%d", num // 10000, (num // 100) % 100, num % 100)
end

return M
