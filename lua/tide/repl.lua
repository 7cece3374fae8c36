-- tide.repl — the read-eval-print loop: `pgtide repl` locally, and the evaluation half of
-- `pgtide attach` inside a task. Input that is not a complete chunk yet (Lua's parser stops
-- at <eof>) asks for more lines; a line is tried first as `return <line>` so expressions
-- print their values; chunks run in the calling coroutine, so they may wait on I/O.
local core = require "tide.core"
local exit = require "tide.exit"
local pretty = require "tide.pretty"

local M = {}

-- M.text(s) → a value the REPLs print as the lines it holds, not as a quoted string (help
-- texts, reports). tostring() gives the text back; `..` joins it with strings.
local Text = { __name = "tide.text" }
Text.__index = Text
Text.__tostring = function(t) return t.text end
Text.__concat = function(a, b) return tostring(a) .. tostring(b) end
Text.__len = function(t) return #t.text end

function M.text(s) return setmetatable({ text = tostring(s) }, Text) end
function M.is_text(v) return getmetatable(v) == Text end

-- compile(text, env) → fn | nil, err, incomplete
function M.compile(text, env, chunkname)
  chunkname = chunkname or "=repl"
  local fn = load("return " .. text, chunkname, "t", env)
  if fn then return fn end
  local err
  fn, err = load(text, chunkname, "t", env)
  if fn then return fn end
  if err:find("<eof>$") then return nil, err, true end
  return nil, err, false
end

-- Run fn, returning the text to show: the results (pretty-printed) or the error with traceback.
function M.evaluate(fn)
  local r = table.pack(xpcall(fn, function(e)
    local msg = type(e) == "string" and e or tostring(e)
    local tb = debug.traceback(msg, 2)
    -- Show the chunk's own frames, not the REPL machinery below it.
    return (tb:gsub("\n%s*%[C%]: in function 'xpcall'.*$", ""))
  end))
  if not r[1] then return false, r[2] end
  local parts = {}
  for i = 2, r.n do parts[#parts + 1] = M.is_text(r[i]) and r[i].text or pretty.format(r[i]) end
  return true, table.concat(parts, "\t")
end

-- Candidates for tab completion of `word` (a name, or an expression ending in . or :).
function M.complete(env, word)
  local prefix, sep, partial = word:match("^(.-)([%.:])([%w_]*)$")
  local scope = env
  if prefix then
    local fn = load("return " .. prefix, "=complete", "t", env)
    local ok, v = pcall(fn or function() end)
    if not ok or v == nil then return {} end
    scope = v
  else
    partial = word
  end
  local seen, out = {}, {}
  local function add_from(t)
    local guard = 0
    while t and guard < 8 do
      guard = guard + 1
      if type(t) == "table" then
        for k, val in pairs(t) do
          if type(k) == "string" and k:sub(1, #partial) == partial and not seen[k]
             and (sep ~= ":" or type(val) == "function") then
            seen[k] = true
            out[#out + 1] = (prefix and (prefix .. sep) or "") .. k
          end
        end
      end
      local mt = getmetatable(t)
      local idx = type(mt) == "table" and rawget(mt, "__index") or nil
      if type(idx) ~= "table" then break end
      t = idx
    end
  end
  add_from(scope)
  if not prefix then add_from(_G) end
  table.sort(out)
  return out
end

-- The local interactive loop. env falls back to the globals.
function M.run(env)
  env = env or setmetatable({ tide = require "tide" }, { __index = _G })
  local interactive = core.isatty(0)
  local history = (os.getenv("HOME") or ".") .. "/.pgtide_history"
  if interactive then
    core.load_history(history)
    core.set_completer(function(word) return M.complete(env, word) end)
    io.write("pgtide ", core.version, " (", _VERSION, ") — Lua with the engine loaded; Ctrl-D quits\n")
  end
  local buffer
  while true do
    local line = core.readline(buffer and ">> " or "> ")
    if not line then break end
    buffer = buffer and (buffer .. "\n" .. line) or line
    if buffer:match("^%s*$") then
      buffer = nil
    else
      local fn, err, incomplete = M.compile(buffer, env)
      if fn or not incomplete then
        if interactive then core.add_history(buffer) end
        if fn then
          local _, text = M.evaluate(fn)
          if text ~= "" then io.write(text, "\n") end
        else
          io.write(err, "\n")
        end
        io.flush()
        buffer = nil
      end
    end
  end
  if buffer then io.write("incomplete chunk at end of input: ", buffer, "\n") end
  if interactive then core.save_history(history); io.write("\n") end
  return exit.ok
end

return M
