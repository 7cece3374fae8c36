-- tide.catalog.rows — what a catalog statement's rows become once read (tide.catalog.read):
-- SQL NULLs are nil (the rows are read sparse: no field, no room held for one), *_json columns
-- Lua values, and the usual values of some statements' fields come from a shared metatable.
local json = require "tide.json"
local breathe = require("tide.wait").breathe

local M = {}

-- The values most rows of a statement have: the statement sends them as NULL, so that a row
-- holds only what sets it apart, and each row's metatable answers for the rest. At 100,000
-- tables this halves the rows of columns and constraints (440 and 820 bytes to 250 and 440):
-- a Lua table's fields take the next power of two in slots. (Only for fields no reader tells
-- apart from missing; pairs() over such a row does not see them.)
M.defaults = {
  columns = { identity = "", generated = "", is_local = true, inherited_count = 0 },
  constraints = { domain_oid = 0, referenced_oid = 0, parent_oid = 0, is_local = true, inherited_count = 0,
                  validated = true, deferrable = false, deferred = false },
  -- (an index row of a plain table: seven fields or fewer, 8 slots instead of 16)
  indexes = { partitioned = false, valid = true },
}
local default_meta = {}
for name, values in pairs(M.defaults) do default_meta[name] = { __index = values } end

-- *_json columns become Lua values, so the rest of the planner tests plain `if row.x then`.
local function decode_json(rows)
  local json_columns = {}
  for _, name in ipairs(rows.columns or {}) do
    if name:sub(-5) == "_json" then json_columns[#json_columns + 1] = { name, name:sub(1, -6) } end
  end
  if #json_columns == 0 then return rows end
  -- Lists of column names (an index's, a key's, the columns a foreign key references): equal
  -- lists are one list, never changed in place (at 10,000 tables of the scale shape, 45,000
  -- lists of 72 bytes, most of them {"id"}).
  local pool = require("tide.intern").pool()
  for _, row in ipairs(rows) do
    breathe()
    for _, c in ipairs(json_columns) do
      local v = row[c[1]]
      if v then
        row[c[1]] = nil
        v = json.decode(v)
        if c[2]:sub(-7) == "columns" then v = pool:names(v) end
        row[c[2]] = v
      end
    end
  end
  return rows
end

-- M.finish(statement name, rows) → rows, ready for the planner.
function M.finish(name, rows)
  local meta = default_meta[name]
  if meta then for _, row in ipairs(rows) do breathe(); setmetatable(row, meta) end end
  return decode_json(rows)
end

return M
