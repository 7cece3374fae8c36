-- tide.cli — the command line: parses arguments, dispatches to the command, and maps
-- outcomes to the documented exit statuses. Runs as the engine's main coroutine.
local core = require "tide.core"
local playbook = require "tide.playbook"
local args_mod = require "tide.cmd.args"

local M = {}

M.EXIT = require "tide.exit"   -- the exit statuses by name (ok, failed, usage, playbook, ...)

local commands = {}
M.commands = commands

local function usage_error(msg)
  io.stderr:write("pgtide: ", msg, "\nRun 'pgtide help' for the commands.\n")
  return M.EXIT.usage
end

local help = {
  run = [[
pgtide run FILE [--json] [--no-precheck] [--again] [--log-format text|json]
  Run the task the playbook FILE returns: prechecks, then the phases it lists in `migrate`
  (schema, full, incremental), then its cutover hooks. Running it again after an
  interruption continues where it stopped; running a finished task again says when it
  finished and what it did, and writes nothing.
  --again starts a finished task over: it forgets the recorded progress (as `pgtide release`,
  which also drops an incremental task's slot and publication) and runs every phase again.
  It never drops or empties anything the task migrated: objects already on the target stop
  the schema phase (nothing is written then, and the recorded progress is kept), and tables
  holding rows stop the full load unless full.existing says "truncate" or "append".
  --log-format json writes each stderr line as a JSON object (docs/operating.md).]],
  new = [[
pgtide new FILE --source URL --target URL [--incremental] [--name NAME]
  Write a commented playbook to start from, made from what the source holds. It reads the
  source (read-only), lists its schemas and tables with sizes, estimated rows and keys, fills
  select and rename with what exists, and lists the prechecks that fail or warn today with
  their fix. Passwords in the URLs are never written (use ~/.pgpass or PGPASSWORD). FILE
  must not exist yet (exit status 2); the task is named after FILE unless --name says
  otherwise.]],
  check = [[
pgtide check FILE [--json]
  Run the prechecks only and print the report. Exit status 0 when nothing fails, 5 when a
  check fails.]],
  plan = [[
pgtide plan FILE [--json]
  Print what the task would do, writing nothing: the selected objects with their source and
  target names, what is left out and why, warnings, and the DDL per phase in order.]],
  verify = [[
pgtide verify FILE [--json] [--table NAME]...
  Compare every selected table on source and target (row counts and checksums computed on
  the servers), locate the differing rows and name their differing columns. --table (again
  for more) compares only the tables it names: source schema.table or a glob ("sales.*").
  Exit status 0 only when everything matches, 6 on differences.]],
  release = [[
pgtide release FILE
  Drop what the task created for incremental migration: its replication slot, publication,
  heartbeat table and replication origin, and forget its recorded progress on the target (the
  next run starts over). The migrated tables are left as they are.]],
  report = [[
pgtide report FILE [-o PATH]
  Write one self-contained HTML page (default TASK-report.html) from what the task's runs
  recorded on the target: summary, Gantt chart of the full load, throughput and delay over
  time, prechecks, verification, cutover (docs/report.md).]],
  cutover = [[
pgtide cutover FILE [--control PATH]
  Cut the running task of FILE over to the target: fence writes on the source, apply up to
  that point, bring sequences across, verify, run the cutover hooks, and print the write
  downtime. A failure lifts the fence and the task streams on. With cutover.reverse = true it
  also makes the reverse task and writes NAME-reverse.lua: `pgtide run` it to stream back,
  `pgtide cutover` it to roll back (docs/cutover.md).]],
  status = [[
pgtide status [NAME] [--json] [--control PATH]
  List running tasks, or show one task's phase, progress per table, rates, delay, bytes
  behind, the stop condition's verdict and last error (docs/live.md).]],
  attach = [[
pgtide attach NAME [-e CHUNK] [--control PATH]
  Open a Lua REPL inside the running task NAME (or run one CHUNK and exit): `task` is the
  live task (task:status(), task:pause(), task:throttle{...}, task:stop(), ...).]],
  repl = [[
pgtide repl
  A local Lua REPL with the engine loaded (tide.connect, tide.spawn, ...). Expressions print
  their values; incomplete chunks continue on the next line; Ctrl-D quits.]],
  script = [[
pgtide script FILE [ARGS...]
  Run a Lua file inside the engine (as a coroutine on its loop), with `arg` set to ARGS.]],
  help = [[
pgtide help [COMMAND]
  Show the commands, or the help of one command.]],
}
M.help = help

local order = { "new", "run", "check", "plan", "verify", "cutover", "release", "report", "status", "attach", "repl", "script", "help" }

-- The first sentence of a command's help: its description (the lines after the synopsis)
-- joined, up to the first period that ends a sentence (followed by a space or the end; not an
-- ellipsis, not a period inside a word such as docs/live.md).
function M.first_sentence(text)
  local desc = (text:match("\n(.*)$") or ""):gsub("%s+", " "):gsub("^ ", ""):gsub(" $", "")
  local pos = 1
  while true do
    local i = desc:find(".", pos, true)
    if not i then return desc end
    local after, before = desc:sub(i + 1, i + 1), desc:sub(i - 1, i - 1)
    if (after == "" or after == " ") and before ~= "." then return desc:sub(1, i) end
    pos = i + 1
  end
end

-- Wrap text into lines of at most `width` characters (a longer word stays whole on its own
-- line): the first line starts with `first` (already that many characters wide, say a
-- command's synopsis), the others with `indent` spaces (a hanging indent).
function M.wrap(text, width, indent, first)
  first = first or string.rep(" ", indent)
  local lines, line, empty = {}, first, true
  for word in text:gmatch("%S+") do
    if not empty and utf8.len(line) + 1 + utf8.len(word) > width then
      lines[#lines + 1] = line
      line, empty = string.rep(" ", indent) .. word, false
    else
      line, empty = line .. (empty and "" or " ") .. word, false
    end
  end
  lines[#lines + 1] = line
  return lines
end

-- The width to wrap help to: COLUMNS when set, else 80.
function M.width()
  local n = math.tointeger(tonumber(os.getenv("COLUMNS") or ""))
  return n and n >= 20 and n or 80
end

-- One command's line(s) in `pgtide help`: its synopsis, then its first sentence wrapped to
-- `width` with a hanging indent. A synopsis too long for its column puts the sentence on the
-- next lines; a narrow terminal indents the sentence less.
function M.command_lines(synopsis, sentence, width)
  local col = 42
  if utf8.len(synopsis) + 2 > width then
    -- a synopsis wider than the terminal: wrapped itself, the sentence below it
    -- (an option in brackets, "[--name NAME]", stays on one line)
    local glued = synopsis:gsub("%b[]", function(b) return (b:gsub(" ", "\0")) end)
    local out = M.wrap(glued, width, 4, "  ")
    for i, l in ipairs(out) do out[i] = l:gsub("%z", " ") end
    for _, l in ipairs(M.wrap(sentence, width, math.min(col, 6))) do out[#out + 1] = l end
    return out
  end
  if width - col < 30 then
    local out = { "  " .. synopsis }
    for _, l in ipairs(M.wrap(sentence, width, 6)) do out[#out + 1] = l end
    return out
  end
  local head = string.format("  %-" .. (col - 3) .. "s ", synopsis)
  if utf8.len(head) > col then
    local out = { "  " .. synopsis }
    for _, l in ipairs(M.wrap(sentence, width, col)) do out[#out + 1] = l end
    return out
  end
  return M.wrap(sentence, width, col, head)
end

local function print_help(cmd)
  if cmd then
    if not help[cmd] then return usage_error("no command '" .. cmd .. "'") end
    print(help[cmd])
    return M.EXIT.ok
  end
  print("pgtide " .. core.version .. " — move a PostgreSQL database while it keeps taking writes\n")
  print("usage: pgtide COMMAND [ARGS]\n\ncommands:")
  local width = M.width()
  for _, name in ipairs(order) do
    local synopsis = help[name]:match("^[^\n]*"):gsub("^pgtide ", "")
    for _, l in ipairs(M.command_lines(synopsis, M.first_sentence(help[name]), width)) do print(l) end
  end
  print([[

exit status: 0 ok, 1 task failed, 2 usage error, 3 playbook error,
             4 connection error, 5 precheck failed, 6 verification differences,
             7 replication slot invalidated (release, then migrate again),
             130 interrupted
Run 'pgtide help COMMAND' for one command. Documentation: docs/ and README.md.]])
  return M.EXIT.ok
end

function commands.help(args) return print_help(args[1]) end

function commands.new(args) return require("tide.cmd.new").command(args) end

function commands.repl(args)
  if #args > 0 then return usage_error("repl takes no arguments") end
  return require("tide.repl").run()
end

-- Live tasks, through their control sockets (tide.cmd.live).
function commands.status(args) return require("tide.cmd.live").status(args) end
function commands.attach(args) return require("tide.cmd.live").attach(args) end

-- The HTML report of a task's runs (tide.cmd.report parses its own -o PATH).
function commands.report(args) return require("tide.cmd.report").main(args) end

function commands.script(args)
  local file = args[1]
  if not file then return usage_error("script needs a FILE") end
  local chunk, err = loadfile(file, "t")
  if not chunk then io.stderr:write(err, "\n"); return M.EXIT.playbook end
  local script_args = { [0] = file }
  for i = 2, #args do script_args[i - 1] = args[i] end
  _G.arg = script_args
  local r = chunk(table.unpack(script_args))
  if math.type(r) == "integer" then return r end
  return M.EXIT.ok
end

-- Commands that load a playbook: each is a module of lua/tide/cmd/ whose command(task, opts)
-- returns an exit status; errors of known kinds are mapped here.
local task_commands = {
  run = "tide.cmd.run", check = "tide.cmd.check", plan = "tide.cmd.plan",
  verify = "tide.cmd.verify", release = "tide.cmd.release", cutover = "tide.cmd.cutover",
}

local function run_task_command(name, args)
  local spec = { json = "boolean", ["no-precheck"] = "boolean", control = "string" }
  if name == "verify" then spec.table = "list" end
  if name == "run" then spec["log-format"] = "string"; spec.again = "boolean" end
  local opts, positional = args_mod.parse(args, spec)
  if not opts then return usage_error(positional) end
  if opts["log-format"] then
    if not require("tide.log").FORMATS[opts["log-format"]] then
      return usage_error("--log-format must be text or json, not '" .. opts["log-format"] .. "'")
    end
    require("tide.log").configure { format = opts["log-format"] }
  end
  local file = positional[1]
  if not file or #positional > 1 then return usage_error(name .. " needs exactly one playbook FILE") end
  local mod = require(task_commands[name])
  local task = playbook.load(file)
  local status = mod.command(task, opts)
  -- plan and check close what they open and write only to stdout: at exit the engine may leave
  -- a big heap to the system instead of freeing it object by object (engine/runtime/main.c).
  if name == "plan" or name == "check" then debug.getregistry()["tide.quick_exit"] = true end
  return status
end

for name in pairs(task_commands) do
  commands[name] = function(args) return run_task_command(name, args) end
end

-- Turn an error raised by a command into a message and an exit status.
function M.report_error(e)
  local log = require "tide.log"
  if playbook.is_playbook_error(e) then
    log.error("playbook_error", e.message, { exit_status = M.EXIT.playbook }, e.message)
    return M.EXIT.playbook
  end
  if type(e) == "table" and e.exit then
    log.error(e.kind or "failed", e.message or tostring(e), { exit_status = e.exit })
    return e.exit
  end
  log.error("internal_error", tostring(e), { exit_status = M.EXIT.internal }, "pgtide: internal error: " .. tostring(e))
  return M.EXIT.internal
end

function M.main(args)
  -- Lua seeds its generator from the time in seconds and an address; a sanitizer build lays
  -- memory out the same way every run, so two runs in one second drew the same numbers.
  math.randomseed(math.floor(core.now() * 1e6), core.getpid())
  local cmd = args[1]
  if cmd == nil then return print_help() end
  if cmd == "--version" or cmd == "version" then
    print("pgtide " .. core.version)
    return M.EXIT.ok
  end
  if cmd == "--help" or cmd == "-h" then return print_help() end
  local fn = commands[cmd]
  if not fn then return usage_error("unknown command '" .. cmd .. "'") end
  local rest = {}
  for i = 2, #args do rest[#rest + 1] = args[i] end
  local ok, result = xpcall(fn, function(e)
    if playbook.is_playbook_error(e) or (type(e) == "table" and e.exit) then return e end
    return debug.traceback(tostring(e), 2)
  end, rest)
  io.stdout:flush()
  if ok then return result or M.EXIT.ok end
  return M.report_error(result)
end

return M
