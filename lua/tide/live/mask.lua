-- tide.live.mask — the last line of defence for secrets on the control socket: every frame a
-- session sends (printed output, results, errors, status) goes through a filter that replaces
-- the task's passwords and raw conninfo strings, in every spelling they could take there
-- (as given, URL-decoded, escaped by %q for the pretty printer, escaped for JSON).
--
-- The task itself never holds the raw conninfo (tide.playbook keeps it private), and its
-- printing is masked; but a REPL runs any Lua, so `os.getenv "SOURCE_URL"` or a field a
-- playbook added could show one. The filter makes that safe to type on a shared screen.
local playbook = require "tide.playbook"

local M = {}

local MASK = "********"

local function url_decode(s)
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

-- Password values in a conninfo: keyword form (password=x or password='x y'), URI userinfo
-- (postgresql://user:x@host) and URI parameters (?password=x).
function M.passwords(conninfo)
  local out = {}
  if conninfo:match("^%a[%w+.-]*://") then
    local userinfo = conninfo:match("^%a[%w+.-]*://([^@/?]*)@")
    local pw = userinfo and userinfo:match(":(.*)$")
    if pw then out[#out + 1] = pw end
    for v in conninfo:gmatch("[?&]password=([^&]*)") do out[#out + 1] = v end
    return out
  end
  local pos = 1
  while true do
    local _, stop = conninfo:find("%f[%w]password%s*=%s*", pos)
    if not stop then break end
    local i = stop + 1
    if conninfo:sub(i, i) == "'" then
      local buf = {}
      i = i + 1
      while i <= #conninfo do
        local c = conninfo:sub(i, i)
        if c == "\\" then buf[#buf + 1] = conninfo:sub(i + 1, i + 1); i = i + 2
        elseif c == "'" then break
        else buf[#buf + 1] = c; i = i + 1 end
      end
      out[#out + 1] = table.concat(buf)
    else
      out[#out + 1] = conninfo:match("^%S*", i)
    end
    pos = i
  end
  return out
end

local function json_inner(s)
  return (s:gsub('[%c"\\]', function(c)
    local named = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }
    return named[c] or string.format("\\u%04x", c:byte())
  end))
end

-- Every string that must not leave the process, longest first.
function M.secrets(task)
  local set = {}
  local function add(s)
    if type(s) ~= "string" or #s == 0 then return end
    for _, base in ipairs({ s, url_decode(s) }) do
      set[base], set[string.format("%q", base):sub(2, -2)], set[json_inner(base)] = true, true, true
    end
  end
  for _, side in ipairs({ "source", "target" }) do
    local raw = playbook.conninfo(task, side)
    if raw then
      local pws = M.passwords(raw)
      if #pws > 0 then add(raw) end
      for _, pw in ipairs(pws) do add(pw) end
    end
  end
  add(os.getenv("PGPASSWORD"))
  local list = {}
  for s in pairs(set) do list[#list + 1] = s end
  table.sort(list, function(a, b) return #a > #b end)
  return list
end

-- filter(text) → text with every secret of the task replaced by ********.
function M.filter(task)
  local patterns = {}
  for i, s in ipairs(M.secrets(task)) do patterns[i] = s:gsub("[^%w]", "%%%0") end
  return function(text)
    for _, p in ipairs(patterns) do text = text:gsub(p, MASK) end
    return text
  end
end

return M
