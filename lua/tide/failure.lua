-- tide.failure — errors that end a command with a known exit status and a message that
-- says what happened and what to do. Raised with failure.raise(kind, message); the CLI
-- prints the message (never a traceback) and exits with the status of `kind`.
local M = {}

local Failure = {}
Failure.__index = Failure
Failure.__tostring = function(f) return f.message end

-- A kind is the name of its exit status (tide.exit): failed, usage, playbook, connection,
-- precheck, mismatch, slot_lost, interrupted.
local exit = require "tide.exit"

function M.new(kind, message, fields)
  local f = setmetatable(fields or {}, Failure)
  f.kind, f.message = kind, message
  f.exit = assert(kind ~= "ok" and kind ~= "internal" and exit[kind], "unknown failure kind")
  return f
end

function M.raise(kind, message, fields)
  error(M.new(kind, message, fields), 0)
end

function M.is_failure(e) return getmetatable(e) == Failure end

return M
