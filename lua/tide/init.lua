-- tide — the playbook API: what a playbook, a REPL chunk or an engine module calls.
-- The C core (tide.core) provides coroutines, connections, errors and processes; this module
-- re-exports them and adds the Lua-level helpers (tide.task, tide.wait_all, ...).
local core = require "tide.core"

local tide = {}
for k, v in pairs(core) do tide[k] = v end

-- tide.wait_all{h1, h2, ...} → { {ok=true, values={...}} | {ok=false, err=e}, ... }
function tide.wait_all(handles)
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

-- tide.when{...}: ready-made stop conditions (lua/tide/when.lua), loaded on first use.
setmetatable(tide, { __index = function(t, k)
  if k == "when" then
    local when = require "tide.when"
    rawset(t, "when", when)
    return when
  end
end })

-- tide.task{...} validates a task definition and returns the task (see tide.playbook).
function tide.task(def)
  -- Not a tail call: the playbook's frame must stay at a known level for file:line.
  local task = require("tide.playbook").task(def, 2)
  return task
end

return tide
