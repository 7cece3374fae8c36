-- tide.log — every line pgtide writes to stderr while it works: warnings, conflicts,
-- reconnects, failed hooks, server warnings (from the engine), and the error a command ends
-- with. One place decides how a line looks:
--
--   text (default)  the line as a person reads it: "pgtide: MESSAGE"
--   json            one JSON object per line (`pgtide run --log-format json`, or the playbook's
--                   `log_format = "json"`): time (RFC 3339, UTC, microseconds), level, phase,
--                   event, message, task, and the figures or the table of the event when there
--                   are some (docs/operating.md lists them)
--
-- Progress (stdout) is tide.progress's business, not this module's.
--
-- The format and the run whose phase the lines carry belong to the process: one command runs
-- one task. configure() sets them; the engine's C side reaches M.write through the registry
-- (tide.core.set_logger), so its lines take the same form.
local core = require "tide.core"
local json = require "tide.json"

local M = {}

M.FORMATS = { text = true, json = true }

local config = { format = "text", run = nil, out = nil }

-- configure{ format = "text" | "json", run = RUN, out = FILE }: any field left out is kept.
function M.configure(opts)
  for _, k in ipairs({ "format", "run", "out" }) do
    if opts[k] ~= nil then config[k] = opts[k] end
  end
  if core.set_logger then core.set_logger(M.engine_line) end
end

function M.format() return config.format end

-- RFC 3339 in UTC with microseconds: 2026-12-04T19:16:40.123456Z.
function M.timestamp(t)
  t = t or core.now()
  local whole = math.floor(t)
  local micro = math.floor((t - whole) * 1e6 + 0.5)
  if micro >= 1000000 then whole, micro = whole + 1, micro - 1000000 end
  return os.date("!%Y-%m-%dT%H:%M:%S", whole) .. string.format(".%06dZ", micro)
end

local function run_fields()
  local run = config.run
  if not run then return nil, nil end
  local task = run.task
  return run.phase, task and task.name
end

-- The JSON object of one line (a table, for tests and for the metrics' last error).
function M.record(level, event, message, fields)
  local phase, task = run_fields()
  local obj = {}
  for k, v in pairs(fields or {}) do obj[k] = v end
  obj.time, obj.level, obj.event, obj.message = M.timestamp(), level, event, message
  obj.phase, obj.task = obj.phase or phase, obj.task or task
  return obj
end

-- write(level, event, message [, fields [, text]]): level "error", "warning", "note";
-- event a short stable word ("conflict", "reconnect", ...); text the line in text format
-- (default "pgtide: MESSAGE"; without its newline).
function M.write(level, event, message, fields, text)
  local out = config.out or io.stderr
  message = tostring(message)
  if config.format == "json" then
    local ok, line = pcall(json.encode, M.record(level, event, message, fields))
    if not ok then line = json.encode(M.record(level, event, message)) end
    out:write(line, "\n")
  else
    out:write(text or ("pgtide: " .. message), "\n")
  end
  out:flush()
  if level == "error" and config.run then config.run.last_error_logged = core.now() end
end

function M.error(event, message, fields, text) M.write("error", event, message, fields, text) end

-- A warning's text line reads "pgtide: warning: MESSAGE".
function M.warning(event, message, fields, text)
  M.write("warning", event, message, fields, text or ("pgtide: warning: " .. tostring(message)))
end

function M.note(event, message, fields, text) M.write("note", event, message, fields, text) end

-- The engine's own lines (engine/runtime/log.c): a server WARNING, a coroutine that failed
-- with nobody waiting for it. `text` is the whole line the engine would print.
function M.engine_line(level, event, message, text)
  M.write(level, event, message, nil, text)
end

return M
