-- tide.plan.objects: an object reads its kind, definition, class and phase from its kind, and
-- its oid, name, schema and root from its row and its links (tide.core.object_index), so that
-- its own fields stay few (docs/performance.md, "The plan's objects and steps smaller while it
-- is made").
local T = require "testlib"
local core = require "tide.core"
local objects = require "tide.plan.objects"

local def = { name = "index", class = "pg_class", phase = "post" }

local function object(row, global)
  return setmetatable({ row = row }, { __index = core.object_index({ kind = def.name, def = def, class = def.class,
                                                                     phase = def.phase }, global) })
end

T.test("fixed fields from the kind, oid and name from the row, schema from it or the name", function()
  local defaults = setmetatable({ oid = 7, name = "t_pkey" }, { __index = { schema = "app" } })
  local obj = object(defaults)
  T.eq({ obj.kind, obj.def, obj.class, obj.phase }, { "index", def, "pg_class", "post" })
  T.eq({ obj.oid, obj.name, obj.schema }, { 7, "t_pkey", "app" }, "the row's metatable answers too")
  T.eq(object({ oid = 8, name = "app" }).schema, "app", "a schema is its own schema")
  T.eq(object({ oid = 9, name = "srv", schema = "x" }, true).schema, nil, "an object of no schema has none")
  T.eq({ obj.inline_of, obj.steps, obj.root, obj[1] }, {}, "anything else is missing")
  obj.phase = "pre"
  obj.name = "other"
  T.eq({ obj.phase, obj.name, obj.row.name }, { "pre", "other", "t_pkey" }, "a field set is the object's own")
  local own = {}
  for k in pairs(object({ oid = 1, name = "n" })) do own[#own + 1] = k end
  T.eq(own, { "row" }, "one field of its own")
end)

T.test("root: the end of the inline_of chain, for an inline object only", function()
  local table_obj = object({ oid = 1, name = "t" })
  local constraint = object({ oid = 2, name = "t_pkey" })
  constraint.inline_of = table_obj
  local index = object({ oid = 3, name = "t_pkey" })
  index.inline_of = constraint
  T.ok(rawequal(index.root, table_obj))
  T.ok(rawequal(constraint.root, table_obj))
  T.eq(table_obj.root, nil, "an object that is not inline has none")
  local orphan = object({ oid = 4, name = "x" })
  orphan.inline_of = false   -- (its owner is not among the objects)
  T.ok(rawequal(orphan.root, orphan), "an inline row without its owner stands for itself")
  local a, b = object({ oid = 5, name = "a" }), object({ oid = 6, name = "b" })
  a.inline_of, b.inline_of = b, a
  T.ok(a.root ~= nil, "a cycle ends (after 32 links)")
end)

T.test("collect: objects of a small catalog, with few fields of their own", function()
  local cat = {
    schemas = { { oid = 2200, name = "app", owner = "postgres" } },
    tables = { { oid = 16384, schema = "app", name = "t", relkind = "r", owner = "postgres" } },
    columns_by_relid = { [16384] = { { num = 1, name = "id", type = "integer" } } },
  }
  local model = objects.collect(cat)
  local t = model.by_key["table:app.t"]
  T.ok(t, "the table is there by its key")
  T.eq({ t.kind, t.oid, t.schema, t.name, t.class, t.phase }, { "table", 16384, "app", "t", "pg_class", "pre" })
  T.ok(rawequal(model.exact["pg_class:16384"], t))
  T.eq(t.columns[1].name, "id")
  local s = model.schemas.app
  T.eq({ s.kind, s.schema, s.name }, { "schema", "app", "app" })
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  T.ok(n <= 8, "a table object has eight fields or fewer of its own (" .. n .. ")")
end)
