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

-- M.share_columns(rows of the columns statement) → relation oid → its column rows, in attnum
-- order (tide.catalog.read's cat.columns_by_relid). A row goes without its relation's oid
-- (relid), and equal rows of different relations are one (the same number, name, type and
-- flags: a schema-per-tenant database repeats its tables from schema to schema, and at
-- 10,000 tables of four columns 40,000 rows of 250 bytes became 4). A column
-- with a default is its own row (its pg_attrdef oid sets it apart, and the planner marks such
-- rows: drop_default, default_split). A shared row is never changed in place: a column mapped
-- to another name gets a copy (tide.plan.objects.assign_targets).
function M.share_columns(rows)
  local names, by_relid, shared = rows.columns or {}, {}, {}
  local parts, share = {}, #names > 0
  for _, name in ipairs(names) do
    if name:sub(-5) == "_json" then share = false end   -- (decoded under another name)
  end
  for _, c in ipairs(rows) do
    breathe()
    local relid, row = c.relid, c
    c.relid = nil
    if share and c.default_oid == nil then
      local n = 0
      for _, name in ipairs(names) do
        local v = rawget(c, name)
        if v ~= nil then
          parts[n + 1], parts[n + 2], parts[n + 3] = name, type(v), tostring(v)
          n = n + 3
        end
      end
      local sig = table.concat(parts, "\0", 1, n)
      row = shared[sig]
      if row == nil then shared[sig] = c; row = c end
    end
    local list = by_relid[relid]
    if not list then list = {}; by_relid[relid] = list end
    list[#list + 1] = row
  end
  return by_relid
end

return M
