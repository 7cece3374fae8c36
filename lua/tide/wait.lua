-- tide.wait — waiting for several coroutines of the engine (tide.core.spawn handles) at once.
--   wait.all{h1, h2, ...} → { {ok=true, values={...}} | {ok=false, err=e}, ... }, in order;
--   every handle is waited for, whatever the others did.
-- The playbook API re-exports it as tide.wait_all.
--   wait.breathe() in long loops of pure Lua: lets the task's event loop turn now and then.
local core = require "tide.core"

local M = {}

function M.all(handles)
  local out = {}
  for i, h in ipairs(handles) do
    local r = table.pack(pcall(h.wait, h))
    if r[1] then
      out[i] = { ok = true, values = table.pack(table.unpack(r, 2, r.n)) }
    else
      out[i] = { ok = false, err = r[2] }
    end
  end
  return out
end

-- A plan over 100,000 tables keeps the process in Lua for tens of seconds with no query to wait
-- for, and meanwhile the event loop stands still: the live control socket (`pgtide status`,
-- `pgtide attach`) does not answer. Called in such loops, this yields to the loop when 50 ms
-- went by since it last did. The clock is read every 64 calls (a read costs about 0.1 µs, as
-- much as the loop's own work in the cheapest loops), or at once with breathe(true) (a caller
-- that comes by rarely: between the plan's stages, between prechecks). Outside a coroutine of the
-- scheduler, or where a yield is not possible (a C function on the stack), it does nothing.
local calls, last = 0, 0

-- Seconds of computing between two turns of the loop (a test sets 0: a turn every 64 calls).
M.interval = 0.05

function M.breathe(now_check)
  calls = calls + 1
  if calls < 64 and not now_check then return end
  calls = 0
  local now = core.monotonic()
  if now - last < M.interval then return end
  last = now
  if core.running() and coroutine.isyieldable() then core.yield() end
end

return M
