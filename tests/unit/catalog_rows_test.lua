-- tide.catalog.rows: the rows of the big catalog statements (tables, indexes, constraints,
-- ...) are packed once read (tide.core.pack_rows): lists of their fields' values, read and
-- written by name through a shared metatable, a field equal to its default left out
-- (docs/performance.md, "Catalog rows as lists").
local T = require "testlib"
local core = require "tide.core"
local rows_mod = require "tide.catalog.rows"

local function raw_items(row)
  local n = 0
  for _ in next, row do n = n + 1 end
  return n
end

T.test("a packed row reads every field it had, by name, and nothing else", function()
  local rows = {
    { oid = 1, name = "a", schema = "s", definition = "CREATE INDEX a ON s.t (x)" },
    { oid = 2, name = "b", schema = "s", constraint_oid = 9 },
    { oid = 3, name = "c", schema = "s", flag = true, columns = { "x", "y" } },
  }
  local copies = {}
  for i, r in ipairs(rows) do copies[i] = {}; for k, v in pairs(r) do copies[i][k] = v end end
  local meta = core.pack_rows(rows)
  for i, r in ipairs(rows) do
    T.ok(getmetatable(r) == meta, "row " .. i .. " packed")
    for k, v in pairs(copies[i]) do T.eq(r[k], v, "row " .. i .. " field " .. k) end
    T.eq({ r.constraint_oid ~= nil and i ~= 2, r.other }, { false }, "a field it lacks is nil")
    T.eq(rawget(r, "name"), nil, "no named field of its own")
  end
  -- The fields all rows have come first: a row's list ends at its last field.
  T.eq({ meta.__packed[1], meta.__packed[2], meta.__packed[3] }, { "name", "oid", "schema" })
  T.eq(raw_items(rows[1]), 4)
end)

T.test("writes by name: a known field in its item, a new one the row's own, nil clears", function()
  local rows = { { oid = 1, name = "a" }, { oid = 2, name = "b", columns = { "x" } } }
  core.pack_rows(rows)
  local r = rows[1]
  r.name = "renamed"
  T.eq({ r.name, rows[2].name }, { "renamed", "b" }, "one row changed, not its neighbour")
  r.columns = { "y" }
  T.eq(r.columns[1], "y", "a field other rows have, set later")
  r.target = "t"
  T.eq({ r.target, rawget(r, "target") }, { "t", "t" }, "a field no row had: the row's own")
  r.name = nil
  T.eq(r.name, nil)
  rows[2].columns = nil
  T.eq(rows[2].columns, nil)
end)

T.test("defaults: a field equal to its default is left out, and read back through the metatable", function()
  local defaults = { unlogged = false, replica_identity = "d" }
  local rows = {
    { oid = 1, unlogged = false, replica_identity = "d" },
    { oid = 2, unlogged = true, replica_identity = "f" },
    { oid = 3 },
  }
  core.pack_rows(rows, defaults)
  T.eq({ rows[1].unlogged, rows[1].replica_identity }, { false, "d" })
  T.eq(raw_items(rows[1]), 1, "only the oid is kept")
  T.eq({ rows[2].unlogged, rows[2].replica_identity }, { true, "f" })
  T.eq({ rows[3].unlogged, rows[3].replica_identity }, { false, "d" }, "a missing field reads its default")
end)

T.test("catalog rows: the packed statements pack, the others stay plain tables", function()
  local cat = {
    tables = { { oid = 1, schema = "s", name = "t", unlogged = false, is_partition = false } },
    constraints = { { oid = 2, name = "t_pkey", type = "p", validated = true } },
    roles = { { name = "app" } },
  }
  rows_mod.pack(cat)
  T.ok(getmetatable(cat.tables[1]) ~= nil and getmetatable(cat.roles[1]) == nil)
  T.eq({ cat.tables[1].name, cat.tables[1].unlogged, cat.tables[1].row_security }, { "t", false, false })
  T.eq({ cat.constraints[1].type, cat.constraints[1].validated, cat.constraints[1].deferrable }, { "p", true, false },
       "the constraints' defaults answer too")
end)

T.test("bad input is an error that names it; no rows still make a metatable", function()
  local ok, err = pcall(core.pack_rows, "rows")
  T.ok(not ok and tostring(err):find("bad argument #1", 1, true), tostring(err))
  ok, err = pcall(core.pack_rows, {}, "defaults")
  T.ok(not ok and tostring(err):find("bad argument #2", 1, true), tostring(err))
  local meta = core.pack_rows({})
  T.eq({ type(meta.__index), #meta.__packed }, { "function", 0 })
end)

T.test("pairs over a packed row lists its fields by name; packing twice, or numbered fields, is refused", function()
  local cat = { indexes = { { oid = 1, name = "i", partitioned = false, columns = { "a" } } } }
  rows_mod.pack(cat)
  local seen = {}
  for k, v in pairs(cat.indexes[1]) do seen[#seen + 1] = k .. "=" .. tostring(type(v) == "table" and v[1] or v) end
  table.sort(seen)
  T.eq(seen, { "columns=a", "name=i", "oid=1" }, "the default (partitioned = false) is not listed")
  local ok, err = pcall(core.pack_rows, cat.indexes)
  T.ok(not ok and tostring(err):find("packed already", 1, true), tostring(err))
  ok, err = pcall(core.pack_rows, { { "x", name = "n" } })
  T.ok(not ok and tostring(err):find("numbered field", 1, true), tostring(err))
  ok, err = pcall(getmetatable(cat.indexes[1]).__index, "not a row", "name")
  T.ok(not ok and tostring(err):find("table expected", 1, true), tostring(err))
end)
