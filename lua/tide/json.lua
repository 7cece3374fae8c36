-- tide.json — JSON text to Lua values and back, for what the server returns as json_agg and
-- for the commands' --json output.
--   json.decode(text) → value   objects → tables, arrays → lists, null → json.null
--   json.encode(value) → text   lists → arrays, other tables → objects with sorted keys (so
--                               the output is the same on every run); nil, NaN, ±inf → null
local M = {}

-- JSON null inside decoded values (a Lua nil would end a list).
M.null = setmetatable({}, { __tostring = function() return "null" end })

-- The decoder is C (engine/runtime/json.c): the catalog decodes a value per row, and a stream's
-- session the record of every table DDL replication follows (80 us each in Lua).
M.decode = require("tide.core").json_decoder(M.null)

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
    -- (A table whose metatable says `__list` is a list, empty or not, read by # and [i]:
    -- tide.plan.steplist's.)
    local mt = getmetatable(value)
    local list = mt ~= nil and rawget(mt, "__list") == true
    local is_array = list or n > 0 or next(value) == nil
    if is_array and not list then
      for k in pairs(value) do if math.type(k) ~= "integer" then is_array = false end end
    end
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
