-- tide.json — JSON text to Lua values and back, for what the server returns as json_agg and
-- for the commands' --json output.
--   json.decode(text) → value   objects → tables, arrays → lists, null → json.null
--   json.encode(value) → text   lists → arrays, other tables → objects with sorted keys (so
--                               the output is the same on every run); nil, NaN, ±inf → null
local M = {}

-- JSON null inside decoded values (a Lua nil would end a list).
M.null = setmetatable({}, { __tostring = function() return "null" end })

-- The decoder's state: the text (input) and the position in it. Module-level, not closures made for
-- each call: the catalog decodes a value per row (every table's columns, every constraint's),
-- and four closures per call were a good part of that. Decoding never calls out, so one
-- decode cannot start inside another.
local input, pos = nil, 1
local byte, find, sub, match = string.byte, string.find, string.sub, string.match

local ESCAPES = { [34] = '"', [92] = "\\", [47] = "/", [98] = "\b", [102] = "\f", [110] = "\n",
                  [114] = "\r", [116] = "\t" }

local function fail(what) error(string.format("json: %s at byte %d", what, pos), 0) end

local function skip()
  local b = byte(input, pos)
  if b == 32 or b == 9 or b == 10 or b == 13 then pos = find(input, "[^ \t\r\n]", pos) or #input + 1 end
end

-- A string, from its opening quote. Most have no escape: one find and one sub.
local function string_value()
  pos = pos + 1
  local stop = find(input, '["\\]', pos)
  if stop and byte(input, stop) == 34 then
    local s = sub(input, pos, stop - 1)
    pos = stop + 1
    return s
  end
  local out = {}
  while true do
    stop = find(input, '["\\]', pos)
    if not stop then pos = #input + 1; fail("unterminated string") end
    if stop > pos then out[#out + 1] = sub(input, pos, stop - 1) end
    pos = stop
    if byte(input, pos) == 34 then pos = pos + 1; break end
    local e = byte(input, pos + 1)
    local simple = e and ESCAPES[e]
    if simple then out[#out + 1] = simple; pos = pos + 2
    elseif e == 117 then   -- \u
      local cp = tonumber(match(input, "^%x%x%x%x", pos + 2) or "", 16)
      if not cp then fail("bad \\u escape") end
      pos = pos + 6
      if cp >= 0xD800 and cp <= 0xDBFF and match(input, "^\\u[dD][c-fC-F]%x%x", pos) then
        local low = tonumber(sub(input, pos + 2, pos + 5), 16)
        cp = 0x10000 + (cp - 0xD800) * 0x400 + (low - 0xDC00)
        pos = pos + 6
      end
      out[#out + 1] = utf8.char(cp)
    else fail("bad escape") end
  end
  return table.concat(out)
end

local function read_value()
  skip()
  local c = byte(input, pos)
  if c == 123 then   -- {
    local t = {}
    pos = pos + 1; skip()
    if byte(input, pos) == 125 then pos = pos + 1; return t end
    repeat
      skip()
      if byte(input, pos) ~= 34 then fail("expected a key") end
      local k = string_value()
      skip()
      if byte(input, pos) ~= 58 then fail("expected :") end
      pos = pos + 1
      t[k] = read_value()
      skip()
      c = byte(input, pos); pos = pos + 1
    until c ~= 44
    if c ~= 125 then fail("expected }") end
    return t
  elseif c == 91 then   -- [
    local t, n = {}, 0
    pos = pos + 1; skip()
    if byte(input, pos) == 93 then pos = pos + 1; return t end
    repeat
      n = n + 1
      t[n] = read_value()
      skip()
      c = byte(input, pos); pos = pos + 1
    until c ~= 44
    if c ~= 93 then fail("expected ]") end
    return t
  elseif c == 34 then return string_value()
  elseif c == 110 and sub(input, pos, pos + 3) == "null" then pos = pos + 4; return M.null
  elseif c == 116 and sub(input, pos, pos + 3) == "true" then pos = pos + 4; return true
  elseif c == 102 and sub(input, pos, pos + 4) == "false" then pos = pos + 5; return false
  else
    local num = match(input, "^-?%d+%.?%d*[eE]?[-+]?%d*", pos)
    if not num or num == "" then fail("unexpected character") end
    pos = pos + #num
    return math.tointeger(tonumber(num)) or tonumber(num)
  end
end

-- The server's json_agg output: objects, arrays, strings, numbers, true/false/null.
function M.decode(text)
  input, pos = text, 1
  local result = read_value()
  skip()
  if pos <= #input then fail("unexpected text after the value") end
  input = nil
  return result
end

local NAMED = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }

local function escape(c) return NAMED[c] or string.format("\\u%04x", c:byte()) end

local function encode_string(s)
  return '"' .. s:gsub('[%c"\\]', escape) .. '"'
end

local function encode(value, out)
  local t = type(value)
  if t == "nil" or value == M.null then out[#out + 1] = "null"
  elseif t == "boolean" then out[#out + 1] = tostring(value)
  elseif t == "number" then
    if value ~= value or value == math.huge or value == -math.huge then out[#out + 1] = "null"
    elseif math.type(value) == "integer" then out[#out + 1] = tostring(value)
    else out[#out + 1] = string.format("%.17g", value) end
  elseif t == "string" then out[#out + 1] = encode_string(value)
  elseif t == "table" then
    local n = #value
    local is_array = n > 0 or next(value) == nil
    if is_array then for k in pairs(value) do if math.type(k) ~= "integer" then is_array = false end end end
    if is_array then
      out[#out + 1] = "["
      for i = 1, n do
        if i > 1 then out[#out + 1] = "," end
        encode(value[i], out)
      end
      out[#out + 1] = "]"
    else
      local keys, by_text = {}, {}
      for k in pairs(value) do
        local text = tostring(k)
        keys[#keys + 1], by_text[text] = text, k
      end
      table.sort(keys)
      out[#out + 1] = "{"
      for i, text in ipairs(keys) do
        if i > 1 then out[#out + 1] = "," end
        out[#out + 1] = encode_string(text) .. ":"
        encode(value[by_text[text]], out)
      end
      out[#out + 1] = "}"
    end
  else
    out[#out + 1] = "null"
  end
end

function M.encode(value)
  local out = {}
  encode(value, out)
  return table.concat(out)
end

return M
