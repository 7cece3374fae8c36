-- tide.cmd.live — the command-line side of live tasks: `pgtide status [NAME] [--json]`
-- and `pgtide attach NAME [-e CHUNK]` (docs/live.md).
--
-- The client is blocking on purpose (engine/live/control.c says why): it has nothing to run but
-- the operator's session, and the completer is called from inside readline.
local core = require "tide.core"
local json = require "tide.json"
local repl = require "tide.repl"
local status_text = require "tide.live.status"

local M = {}

local EXIT = require "tide.exit"

local function say(...) io.stderr:write("pgtide: ", ...) io.stderr:write("\n") end

-- Where the socket of task `name` is (or the explicit --control path).
local function socket_of(name, control)
  if control then return control end
  if name:find("/") then return name end
  local dir, err = core.control_dir(false)
  if not dir then return nil, err end
  return dir .. "/" .. name .. ".sock"
end

local Conn = {}
Conn.__index = Conn

-- Connect and read the welcome; nil, message, code when that fails.
local function open(name, control)
  local path, err = socket_of(name, control)
  if not path then return nil, err end
  local client, cerr, code = core.control_connect(path)
  if not client then
    if code == "ENOENT" then
      return nil, string.format("no running task named %s (no control socket at %s); `pgtide status` lists them",
                                name, path), code
    elseif code == "ECONNREFUSED" then
      return nil, string.format("task %s is not running: %s is left over from a process that ended " ..
                                "(the next run of the task replaces it)", name, path), code
    elseif code == "EACCES" then
      return nil, string.format("permission denied on %s: the task runs as another user", path), code
    end
    return nil, cerr, code
  end
  local kind, payload = client:receive(5)
  if kind ~= "W" then
    client:close()
    if kind == nil and payload == "closed" then
      return nil, "the task refused the connection (a control socket serves its owner only)", "EACCES"
    end
    return nil, "no welcome from " .. path .. " (" .. tostring(payload) .. ")"
  end
  local ok, welcome = pcall(json.decode, payload)
  return setmetatable({ client = client, path = path, welcome = ok and welcome or {} }, Conn)
end
M.open = open

-- Send a chunk; print its output as it comes; Ctrl-C sends an interrupt and keeps waiting.
-- → true | false, error text, interrupted | nil, "closed"
function Conn:evaluate(text, out, errout)
  if not self.client:send("E", text) then return nil, "closed" end
  local interrupted = false
  while true do
    local kind, payload = self.client:receive(nil, true)
    if not kind then
      if payload ~= "interrupted" then return nil, payload end
      interrupted = true
      if not self.client:send("I", "") then return nil, "closed" end
    elseif kind == "O" then
      out:write(payload)
      out:flush()
    elseif kind == "R" then
      if payload ~= "" then out:write(payload, "\n") end
      out:flush()
      return true
    elseif kind == "X" then
      errout:write(payload, "\n")
      errout:flush()
      return false, payload, interrupted
    end
  end
end

-- Completion candidates from the server (never waits long: readline is waiting on us).
function Conn:complete(word)
  if not self.client:send("C", word) then return {} end
  while true do
    local kind, payload = self.client:receive(2)
    if not kind then return {} end
    if kind == "C" then
      local list = {}
      for name in payload:gmatch("[^\n]+") do list[#list + 1] = name end
      return list
    end
    -- O frames here come from coroutines a chunk left running: shown with the next answer.
    if kind == "O" then self.pending_output = (self.pending_output or "") .. payload end
  end
end

-- The task's status, decoded; `brief`: only what a terminal shows of the full load's tables
-- (tide.live.status.brief); `raw`: the JSON text as the task sent it, not decoded.
function Conn:status(brief, raw)
  if not self.client:send("S", brief and "brief" or "") then return nil, "closed" end
  while true do
    local kind, payload = self.client:receive(10)
    if not kind then return nil, payload end
    if kind == "S" then
      if raw then return payload end
      return json.decode(payload)
    end
    if kind == "X" then return nil, payload end
  end
end

function Conn:close() self.client:close() end

------------------------------------------------------------------------ pgtide status

local function list_tasks(as_json)
  local dir, exists = core.control_dir(false)
  if not dir then say(exists) return EXIT.failed end
  local names = exists and core.control_list(dir) or {}
  table.sort(names)
  local found, stale = {}, {}
  for _, file in ipairs(names) do
    local name = file:gsub("%.sock$", "")
    local conn, _, code = open(name, dir .. "/" .. file)
    if conn then
      local st = conn:status(not as_json)
      conn:close()
      if st then found[#found + 1] = st end
    elseif code == "ECONNREFUSED" then
      stale[#stale + 1] = name
    end
  end
  if as_json then
    for _, name in ipairs(stale) do found[#found + 1] = { task = name, stale = true, socket = dir .. "/" .. name .. ".sock" } end
    io.write(json.encode(found), "\n")
    return EXIT.ok
  end
  if #found == 0 then
    io.write("no running tasks (control sockets live in ", dir, ")\n")
  else
    io.write(status_text.header_line(), "\n")
    for _, st in ipairs(found) do io.write(status_text.summary_line(st), "\n") end
  end
  if #stale > 0 then
    io.write("(left over from ended processes: ", table.concat(stale, ", "), "; replaced when they run again)\n")
  end
  return EXIT.ok
end

function M.status(args)
  local opts, positional = require("tide.cmd.args").parse(args, { json = "boolean", control = "string" })
  if not opts then say(positional) return EXIT.usage end
  if #positional > 1 then say("status takes at most one task NAME") return EXIT.usage end
  local name = positional[1]
  if not name and not opts.control then return list_tasks(opts.json) end
  local conn, err, code = open(name or opts.control, opts.control)
  if not conn then say(err) return code == "ECONNREFUSED" and EXIT.failed or EXIT.connection end
  -- --json passes the task's JSON on as it came; a terminal gets the brief status.
  local st, serr = conn:status(not opts.json, opts.json)
  conn:close()
  if not st then say("status of ", name or opts.control, " failed: ", tostring(serr)) return EXIT.failed end
  if opts.json then io.write(st, "\n") else io.write(status_text.render(st), "\n") end
  return EXIT.ok
end

------------------------------------------------------------------------ pgtide attach

local function interactive(conn)
  local w = conn.welcome
  local tty = core.isatty(0)
  local history = (os.getenv("HOME") or ".") .. "/.pgtide_attach_history"
  if tty then
    core.load_history(history)
    core.set_completer(function(word) return conn:complete(word) end)
    io.write(string.format("attached to task %s (pid %s, phase %s). `task` is the running task; task:help() " ..
                           "lists what it can do. Ctrl-C interrupts a chunk, Ctrl-D detaches.\n",
                           tostring(w.task), tostring(math.tointeger(w.pid) or w.pid), tostring(w.phase)))
  end
  local prompt = tostring(w.task) .. "> "
  local buffer
  while true do
    local line = core.readline(buffer and ">> " or prompt)
    if not line then break end
    buffer = buffer and (buffer .. "\n" .. line) or line
    if buffer:match("^%s*$") then
      buffer = nil
    else
      -- Only the syntax is checked here (the chunk is compiled, not run): an incomplete
      -- chunk asks for more lines, as in lua.c.
      local _, _, incomplete = repl.compile(buffer, {})
      if not incomplete then
        if tty then core.add_history(buffer) end
        if conn.pending_output then io.write(conn.pending_output); conn.pending_output = nil end
        local ok, err = conn:evaluate(buffer, io.stdout, io.stdout)
        buffer = nil
        if ok == nil then
          io.write("the control connection closed (", tostring(err), "): the task has ended or went away\n")
          break
        end
      end
    end
  end
  if buffer then io.write("incomplete chunk at end of input: ", buffer, "\n") end
  if tty then core.save_history(history); io.write("\n") end
  return EXIT.ok
end

function M.attach(args)
  local opts, positional = require("tide.cmd.args").parse(args, { e = "string", control = "string" })
  if not opts then say(positional) return EXIT.usage end
  local name = positional[1]
  if (not name and not opts.control) or #positional > 1 then
    say("attach needs the NAME of a running task (`pgtide status` lists them)")
    return EXIT.usage
  end
  local conn, err, code = open(name or opts.control, opts.control)
  if not conn then say(err) return code == "ECONNREFUSED" and EXIT.failed or EXIT.connection end
  local status = EXIT.ok
  if opts.e then
    local ok, text, interrupted = conn:evaluate(opts.e, io.stdout, io.stderr)
    if ok == nil then say("the control connection closed: ", tostring(text)) status = EXIT.failed
    elseif not ok then status = interrupted and EXIT.interrupted or EXIT.failed end
  else
    status = interactive(conn)
  end
  conn:close()
  return status
end

-- `pgtide cutover FILE`: the running task of the playbook cuts over (task:cutover() through
-- its control socket); the outcome is printed, the exit status says it (docs/cutover.md).
function M.cutover(task, opts)
  local conn, err, code = open(task.name, opts.control)
  if not conn then
    say(err, "\n  hint: cutover works on a task that is streaming: start it with `pgtide run` and cut over once it ",
        "streams")
    return code == "ECONNREFUSED" and EXIT.failed or EXIT.connection
  end
  local ok, text = conn:evaluate("return task:cutover()", io.stdout, io.stderr)
  conn:close()
  if ok == nil then say("the control connection closed: ", tostring(text)) return EXIT.failed end
  return ok and EXIT.ok or EXIT.failed
end

return M
