-- tide.pretty — renders any Lua value for a person: strings quoted, tables with their keys
-- sorted (array part first), nested tables indented, cycles and depth cut short, tide.null
-- shown as NULL. The REPLs print results with it.
local M = {}

local function is_identifier(s)
  return type(s) == "string" and s:match("^[%a_][%w_]*$") ~= nil
end

local function key_order(a, b)
  local ta, tb = type(a), type(b)
  if ta ~= tb then return ta < tb end
  if ta == "number" or ta == "string" then return a < b end
  return tostring(a) < tostring(b)
end

local function render(v, indent, depth, seen, opts, out)
  local t = type(v)
  if t == "string" then
    out[#out + 1] = string.format("%q", v):gsub("\\\n", "\\n")
    return
  elseif t ~= "table" then
    out[#out + 1] = tostring(v)
    return
  end
  local mt = getmetatable(v)
  if mt and mt.__tostring then out[#out + 1] = tostring(v); return end
  if seen[v] then out[#out + 1] = "<cycle>"; return end
  if depth >= opts.depth then out[#out + 1] = "{...}"; return end
  seen[v] = true
  local n = #v
  local keys = {}
  for k in pairs(v) do
    if not (math.type(k) == "integer" and k >= 1 and k <= n) then keys[#keys + 1] = k end
  end
  table.sort(keys, key_order)
  if n == 0 and #keys == 0 then out[#out + 1] = "{}"; seen[v] = nil; return end
  local inner = indent .. "  "
  out[#out + 1] = "{\n"
  local shown = 0
  for i = 1, n do
    shown = shown + 1
    if shown > opts.items then out[#out + 1] = inner .. "... (" .. (n - i + 1 + #keys) .. " more)\n"; break end
    out[#out + 1] = inner
    render(v[i], inner, depth + 1, seen, opts, out)
    out[#out + 1] = ",\n"
  end
  if shown <= opts.items then
    for _, k in ipairs(keys) do
      shown = shown + 1
      if shown > opts.items then out[#out + 1] = inner .. "...\n"; break end
      out[#out + 1] = inner .. (is_identifier(k) and k or ("[" .. M.format(k) .. "]")) .. " = "
      render(v[k], inner, depth + 1, seen, opts, out)
      out[#out + 1] = ",\n"
    end
  end
  out[#out + 1] = indent .. "}"
  seen[v] = nil
end

-- format(v [, {depth=, items=}]) → string
function M.format(v, opts)
  opts = opts or {}
  opts.depth = opts.depth or 6
  opts.items = opts.items or 200
  local out = {}
  render(v, "", 0, {}, opts, out)
  return table.concat(out)
end

return M
