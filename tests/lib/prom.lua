-- A reader of the Prometheus text exposition format (0.0.4), as a scraper reads it, for the
-- tests of the metrics endpoint. Strict: a line it does not understand is an error.
local M = {}

local UNESCAPE = { n = "\n", ['"'] = '"', ["\\"] = "\\" }

-- 'a="x",b="y\"z"' → { a = "x", b = 'y"z' }
local function parse_labels(text, line)
  local labels, i = {}, 1
  while i <= #text do
    local name, after = text:match("^([%a_][%w_]*)=\"()", i)
    if not name then error("bad label at column " .. i .. ": " .. line, 0) end
    i = after
    local value = {}
    while true do
      local c = text:sub(i, i)
      if c == "" then error("unterminated label value: " .. line, 0) end
      if c == '"' then i = i + 1 break end
      if c == "\\" then
        local e = UNESCAPE[text:sub(i + 1, i + 1)]
        if not e then error("bad escape in label value: " .. line, 0) end
        value[#value + 1] = e
        i = i + 2
      else
        value[#value + 1] = c
        i = i + 1
      end
    end
    labels[name] = table.concat(value)
    if text:sub(i, i) == "," then i = i + 1 elseif i <= #text then error("bad label list: " .. line, 0) end
  end
  return labels
end

-- → series { [name] = { { labels =, value = }, ... } }, types { [name] = "counter" | ... },
--   help { [name] = text }
function M.parse(text)
  local series, types, help = {}, {}, {}
  for line in text:gmatch("[^\n]+") do
    local name, rest = line:match("^# HELP ([%a_:][%w_:]*) (.*)$")
    if name then
      help[name] = rest
    else
      local tname, kind = line:match("^# TYPE ([%a_:][%w_:]*) (%a+)$")
      if tname then
        types[tname] = kind
      else
        local metric, labels, value = line:match("^([%a_:][%w_:]*){(.*)} (%S+)$")
        if not metric then
          metric, value = line:match("^([%a_:][%w_:]*) (%S+)$")
          labels = ""
        end
        if not metric then error("a line that is not a sample: " .. line, 0) end
        local v = tonumber(value) or (value == "NaN" and 0 / 0) or (value == "+Inf" and math.huge)
        if not v then error("bad value: " .. line, 0) end
        series[metric] = series[metric] or {}
        table.insert(series[metric], { labels = parse_labels(labels, line), value = v })
      end
    end
  end
  return series, types, help
end

-- The value of the first series of `name` whose labels include `want`.
function M.value(series, name, want)
  for _, s in ipairs(series[name] or {}) do
    local match = true
    for k, v in pairs(want or {}) do if s.labels[k] ~= v then match = false end end
    if match then return s.value end
  end
end

return M
