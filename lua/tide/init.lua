-- tide — the playbook API: what a playbook, a cutover hook or a REPL chunk calls
-- (docs/lua-api.md). A chosen set of the C core's calls (tide.core has more: the engine's own
-- modules use it directly), and the Lua-level helpers: tide.task, tide.when, tide.wait_all.
-- No module of the engine requires this one: it sits on top of them all.
local core = require "tide.core"

local tide = {}

-- Coroutines, time, connections, values, child processes (docs/lua-api.md).
for _, name in ipairs({ "spawn", "sleep", "yield", "running", "now", "monotonic", "condition",
                        "connect", "null", "bytea", "is_error", "process", "version" }) do
  tide[name] = assert(core[name], name)
end

-- tide.wait_all{h1, h2, ...} → { {ok=true, values={...}} | {ok=false, err=e}, ... }
tide.wait_all = require("tide.wait").all

-- tide.when{...}: ready-made stop conditions (lua/tide/when.lua).
tide.when = require "tide.when"

-- tide.task{...} validates a task definition and returns the task (see tide.playbook); the
-- precheck policy is compiled here too, so a mistake in it is a playbook error (exit 3)
-- that `pgtide plan` and `pgtide check` report as well.
function tide.task(def)
  -- Not a tail call: the playbook's frame must stay at a known level for file:line.
  local task = require("tide.playbook").task(def, 2)
  if task.precheck ~= nil then
    local precheck = require "tide.precheck"
    require("tide.precheck.policy").compile(task.precheck, precheck.checks, task.locate)
  end
  return task
end

-- tide.playbook(FILE) → the task of another playbook; tide.side(task, "source" | "target") →
-- its conninfo for this playbook's source or target, never seen as a string (docs/cutover.md).
tide.playbook = function(path) return require("tide.playbook").load_nested(path) end
tide.side = function(task, side) return require("tide.playbook").side(task, side) end

return tide
