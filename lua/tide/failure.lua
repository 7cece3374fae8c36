-- tide.failure — errors that end a command with a known exit status and a message that
-- says what happened and what to do. Raised with failure.raise(kind, message); the CLI
-- prints the message (never a traceback) and exits with the status of `kind`.
local M = {}

local Failure = {}
Failure.__index = Failure
Failure.__tostring = function(f) return f.message end

local STATUS = { failed = 1, usage = 2, playbook = 3, connection = 4, precheck = 5, mismatch = 6,
                 slot_lost = 7, interrupted = 130 }

function M.new(kind, message, fields)
  local f = setmetatable(fields or {}, Failure)
  f.kind, f.message, f.exit = kind, message, assert(STATUS[kind], "unknown failure kind")
  return f
end

function M.raise(kind, message, fields)
  error(M.new(kind, message, fields), 0)
end

function M.is_failure(e) return getmetatable(e) == Failure end

return M
