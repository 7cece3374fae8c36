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

-- The statements whose rows are packed (tide.core.pack_rows) once read and named: the many
-- rows of a database of many tables. A packed row is a list of its fields' values, read and
-- written by name through its metatable, the fields most rows have first: at 100,000 tables
-- of the scale shape, 475,000 rows of 16 fields or fewer, in 8 or 16 slots of 24 bytes, become
-- lists of 16 bytes an item. pairs() over a packed row lists its fields by name (not the ones
-- its defaults answer for); a field set later that no row had is the row's own.
M.PACKED = { "tables", "sequences", "views", "indexes", "constraints" }

-- (A field equal to its default is left out of a packed row, the metatable answers for it: a
-- table row's five flags, false in most databases, and its replica identity.)
local PACK_DEFAULTS = {
  tables = { unlogged = false, is_partition = false, row_security = false, force_row_security = false,
             pgtide_heartbeat = false, replica_identity = "d" },
}

function M.pack(cat)
  local core = require "tide.core"
  for _, name in ipairs(M.PACKED) do
    local defaults = M.defaults[name] or PACK_DEFAULTS[name]
    if cat[name] and #cat[name] > 0 then
      local meta = core.pack_rows(cat[name], defaults)
      meta.__pairs = require("tide.fields").pairs_by(meta.__packed)
    end
  end
end

-- pg_depend's rows (the depends statement: at 100,000 tables of the scale shape 725,000 of
-- them, about 200 bytes each as tables) are kept as one list per field, taken a piece at a
-- time as tide.catalog.read fetches them: 16 bytes a field. M.each_depend reads them.
local DEPEND_FIELDS = { "class", "objid", "objsubid", "refclass", "refobjid", "refobjsubid", "deptype" }

M.collect = {
  depends = {
    new = function()
      local into = { n = 0 }
      for _, f in ipairs(DEPEND_FIELDS) do into[f] = {} end
      return into
    end,
    add = function(into, piece)
      local class, objid, objsubid, refclass, refobjid, refobjsubid, deptype =
        into.class, into.objid, into.objsubid, into.refclass, into.refobjid, into.refobjsubid, into.deptype
      local n = into.n
      for i = 1, #piece do
        breathe()
        local row = piece[i]
        piece[i] = false
        n = n + 1
        class[n], objid[n], objsubid[n], refclass[n], refobjid[n], refobjsubid[n], deptype[n] =
          row.class, row.objid, row.objsubid, row.refclass, row.refobjid, row.refobjsubid, row.deptype
      end
      into.n = n
    end,
  },
}

-- for d in M.each_depend(cat.depends) do ... end: each row of pg_depend as a table of its
-- fields (one table, filled anew at each step: copy what outlives the step). A plain list
-- of rows (a catalog built otherwise) is read as it is.
function M.each_depend(deps)
  if deps.n == nil then
    local i = 0
    return function() i = i + 1; return deps[i] end
  end
  local class, objid, objsubid, refclass, refobjid, refobjsubid, deptype =
    deps.class, deps.objid, deps.objsubid, deps.refclass, deps.refobjid, deps.refobjsubid, deps.deptype
  local row, i, n = {}, 0, deps.n
  return function()
    i = i + 1
    if i > n then return nil end
    row.class, row.objid, row.objsubid, row.refclass, row.refobjid, row.refobjsubid, row.deptype =
      class[i], objid[i], objsubid[i], refclass[i], refobjid[i], refobjsubid[i], deptype[i]
    return row
  end
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
      -- (The row's own fields, in whatever order the table keeps them: rows built alike
      -- keep them alike, and a field's name goes with its value, so an order that differs
      -- only loses a sharing, never makes a false one.)
      local n = 0
      for name, v in next, c do
        parts[n + 1], parts[n + 2], parts[n + 3] = name, type(v), tostring(v)
        n = n + 3
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

-- Key columns by name: M.name_key_columns(cat, by_relid, fetch). The indexes and constraints
-- statements send an index's or a key's columns as attribute numbers (int2vector or int2[]
-- text: "1 3", "{1,3}"), named here from the columns statement's rows. On the server each
-- number was looked up in pg_attribute: at 100,000 tables, alone on one connection, the
-- constraints statement took 6.3 s with the look-ups and 5.2 s without in a fresh session
-- (2.2 and 1.1 s in a warm one). A number the rows do not know (a relation the columns
-- statement leaves out: an extension's table that a foreign key references; a system column
-- such as tableoid in a CHECK constraint) is looked up by `fetch(relids)` → rows { relid =,
-- num =, name = } (M.ATTRIBUTES, in the read's snapshot). Number 0 (an expression) has no name
-- and is left out; a list with no name left is nil, as the server's json_agg of nothing was.
M.ATTRIBUTES = [[
SELECT a.attrelid AS relid, a.attnum AS num, a.attname AS name
FROM pg_catalog.pg_attribute a
WHERE a.attrelid = ANY ($1::oid[]) AND NOT a.attisdropped
]]

local KEY_LISTS = {
  { statement = "indexes", nums = "column_nums", relid = "table_oid", names = "columns" },
  { statement = "constraints", nums = "column_nums", relid = "table_oid", names = "columns" },
  { statement = "constraints", nums = "ref_column_nums", relid = "referenced_oid", names = "ref_columns" },
}

-- The row of column `num` in `columns` (one relation's rows in attnum order), or nil.
local function column_row(columns, num)
  local c = columns[num]   -- (no dropped column before it: the list's n-th row is number n)
  if c and c.num == num then return c end
  local lo, hi = 1, #columns
  while lo <= hi do
    local mid = (lo + hi) // 2
    local m = columns[mid].num
    if m == num then return columns[mid] end
    if m < num then lo = mid + 1 else hi = mid - 1 end
  end
  return nil
end

M.column_row = column_row

function M.name_key_columns(cat, by_relid, fetch)
  local pool = require("tide.intern").pool()
  -- A key of one column (most are) is the list of its column row, shared as the rows are.
  local one = {}
  local pending, missing, extra = {}, {}, {}
  local function name(row, list, final)
    local text = row[list.nums]
    if text == nil then return true end
    local relid = row[list.relid]
    local columns, names, only = by_relid[relid], {}, nil
    for num in text:gmatch("%-?%d+") do
      num = math.tointeger(num)
      if num ~= 0 then
        local c = columns and column_row(columns, num)
        local found = c and c.name
        if not found and extra[relid] then found = extra[relid][num] end
        if not found then
          if not final then missing[relid] = true; return false end
        else
          names[#names + 1], only = found, c
        end
      end
    end
    row[list.nums] = nil
    if #names == 1 and only then
      local shared = one[only]
      if not shared then shared = pool:names(names); one[only] = shared end
      row[list.names] = shared
    else
      row[list.names] = #names > 0 and pool:names(names) or nil
    end
    return true
  end
  for _, list in ipairs(KEY_LISTS) do
    for _, row in ipairs(cat[list.statement] or {}) do
      breathe()
      if not name(row, list, false) then pending[#pending + 1] = { row, list } end
    end
  end
  if #pending == 0 then return end
  local relids = {}
  for relid in pairs(missing) do relids[#relids + 1] = relid end
  table.sort(relids)
  for _, r in ipairs(fetch(relids)) do
    extra[r.relid] = extra[r.relid] or {}
    extra[r.relid][r.num] = r.name
  end
  for _, p in ipairs(pending) do name(p[1], p[2], true) end
end

return M
