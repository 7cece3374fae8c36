-- tide.json — JSON text to Lua values and back, for what the server returns as json_agg and
-- for the commands' --json output.
--   json.decode(text) → value   objects → tables, arrays → lists, null → json.null
--   json.encode(value) → text   lists → arrays, other tables → objects with sorted keys (so
--                               the output is the same on every run); nil, NaN, ±inf → null
local M = {}

-- JSON null inside decoded values (a Lua nil would end a list).
M.null = setmetatable({}, { __tostring = function() return "null" end })

-- The server's json_agg output: objects, arrays, strings, numbers, true/false/null.
function M.decode(text)
  local pos = 1
  local function fail(what) error(string.format("json: %s at byte %d", what, pos), 0) end
  local function skip() pos = text:find("[^ \t\r\n]", pos) or #text + 1 end
  local value
  local function string_value()
    local out = {}
    pos = pos + 1
    while true do
      local c = text:sub(pos, pos)
      if c == "" then fail("unterminated string") end
      if c == '"' then pos = pos + 1; break end
      if c == "\\" then
        local e = text:sub(pos + 1, pos + 1)
        local simple = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n", r = "\r", t = "\t" }
        if simple[e] then out[#out + 1] = simple[e]; pos = pos + 2
        elseif e == "u" then
          local cp = tonumber(text:match("^%x%x%x%x", pos + 2) or "", 16)
          if not cp then fail("bad \\u escape") end
          pos = pos + 6
          if cp >= 0xD800 and cp <= 0xDBFF and text:match("^\\u[dD][c-fC-F]%x%x", pos) then
            local low = tonumber(text:sub(pos + 2, pos + 5), 16)
            cp = 0x10000 + (cp - 0xD800) * 0x400 + (low - 0xDC00)
            pos = pos + 6
          end
          out[#out + 1] = utf8.char(cp)
        else fail("bad escape") end
      else
        local stop = text:find('["\\]', pos) or #text + 1
        out[#out + 1] = text:sub(pos, stop - 1)
        pos = stop
      end
    end
    return table.concat(out)
  end
  function value()
    skip()
    local c = text:sub(pos, pos)
    if c == "{" then
      local t = {}
      pos = pos + 1; skip()
      if text:sub(pos, pos) == "}" then pos = pos + 1; return t end
      repeat
        skip()
        if text:sub(pos, pos) ~= '"' then fail("expected a key") end
        local k = string_value()
        skip()
        if text:sub(pos, pos) ~= ":" then fail("expected :") end
        pos = pos + 1
        t[k] = value()
        skip()
        c = text:sub(pos, pos); pos = pos + 1
      until c ~= ","
      if c ~= "}" then fail("expected }") end
      return t
    elseif c == "[" then
      local t, n = {}, 0
      pos = pos + 1; skip()
      if text:sub(pos, pos) == "]" then pos = pos + 1; return t end
      repeat
        n = n + 1
        t[n] = value()
        skip()
        c = text:sub(pos, pos); pos = pos + 1
      until c ~= ","
      if c ~= "]" then fail("expected ]") end
      return t
    elseif c == '"' then return string_value()
    elseif text:sub(pos, pos + 3) == "null" then pos = pos + 4; return M.null
    elseif text:sub(pos, pos + 3) == "true" then pos = pos + 4; return true
    elseif text:sub(pos, pos + 4) == "false" then pos = pos + 5; return false
    else
      local num = text:match("^-?%d+%.?%d*[eE]?[-+]?%d*", pos)
      if not num or num == "" then fail("unexpected character") end
      pos = pos + #num
      return math.tointeger(tonumber(num)) or tonumber(num)
    end
  end
  local result = value()
  skip()
  if pos <= #text then fail("unexpected text after the value") end
  return result
end

local function encode_string(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    local named = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }
    return named[c] or string.format("\\u%04x", c:byte())
  end) .. '"'
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
