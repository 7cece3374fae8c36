-- tide.plan.objects: an object reads its kind, definition, class and phase from its kind, and
-- its oid, name, schema and root from its row and its links (tide.core.object_index), so that
-- its own fields stay few (docs/performance.md, "The plan's objects and steps smaller while it
-- is made").
local T = require "testlib"
local core = require "tide.core"
local objects = require "tide.plan.objects"
local id_of = require("tide.plan.ids").id

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

-- A catalog of schema app and its table app.t (id integer), with `more` statements' rows.
local function small_catalog(more)
  local cat = {
    schemas = { { oid = 2200, name = "app", owner = "postgres" } },
    tables = { { oid = 16384, schema = "app", name = "t", relkind = "r", owner = "postgres" } },
    columns_by_relid = { [16384] = { { num = 1, name = "id", type = "integer" } } },
  }
  for name, rows in pairs(more or {}) do cat[name] = rows end
  return cat
end

T.test("collect: objects of a small catalog, with few fields of their own", function()
  local cat = small_catalog()
  local model = objects.collect(cat)
  local t = model.by_key["table:app.t"]
  T.ok(t, "the table is there by its key")
  T.eq({ t.kind, t.oid, t.schema, t.name, t.class, t.phase }, { "table", 16384, "app", "t", "pg_class", "pre" })
  T.ok(rawequal(model.exact[id_of("pg_class", 16384)], t))
  T.eq(t.columns[1].name, "id")
  local s = model.schemas.app
  T.eq({ s.kind, s.schema, s.name }, { "schema", "app", "app" })
  local own = {}
  for k in pairs(t) do own[#own + 1] = k end
  table.sort(own)
  T.eq(own, { "columns", "ident", "key", "row" }, "pairs sees its own fields by name")
  local raw = 0
  for k in next, t do raw = raw + 1; T.eq(math.type(k), "integer", "kept as list items, not named fields") end
  T.eq(raw, 4)
  -- Fields every object gets, written and cleared by name; any other field its own.
  t.selected, t.deps, t.reason = true, { x = 1 }, "why"
  T.eq({ t.selected, t.deps.x, t.reason, rawget(t, "reason") }, { true, 1, "why", "why" })
  t.deps = nil
  T.eq(t.deps, nil)
  own = {}
  for k, v in pairs(t) do own[#own + 1] = k .. "=" .. type(v) end
  table.sort(own)
  T.eq(own, { "columns=table", "ident=string", "key=string", "reason=string", "row=table", "selected=boolean" })
end)

T.test("collect: a part's owner and inline_of are list items, and root follows them", function()
  local cat = small_catalog {
    constraints = { { oid = 16390, schema = "app", name = "t_pkey", type = "p", table_oid = 16384, index_oid = 16389,
                      columns = { "id" }, definition = "PRIMARY KEY (id)" },
                    { oid = 16391, schema = "app", name = "t_id_check", type = "c", table_oid = 16384, domain_oid = 0,
                      validated = true, definition = "CHECK (id > 0)" } },
    indexes = { { oid = 16389, schema = "app", name = "t_pkey", table_oid = 16384, constraint_oid = 16390,
                  columns = { "id" }, definition = "CREATE UNIQUE INDEX t_pkey ON app.t USING btree (id)" } },
  }
  local model = objects.collect(cat)
  local t, index = model.exact[id_of("pg_class", 16384)], model.exact[id_of("pg_class", 16389)]
  local pkey, check = model.exact[id_of("pg_constraint", 16390)], model.exact[id_of("pg_constraint", 16391)]
  T.ok(index and rawequal(index.owner, t), "the index's owner")
  T.ok(rawequal(index.inline_of, pkey) and rawequal(index.root, pkey), "the index stands with its constraint")
  T.ok(rawequal(check.root, t), "a CHECK constraint with its table")
  T.eq({ pkey.root, rawget(index, "owner"), rawget(index, "inline_of") }, {}, "not named fields")
  T.ok(rawequal(model.identity[id_of("pg_constraint", 16391)], t), "the CHECK constraint's identity: its table")
end)

T.test("ids: a catalog and an oid make one integer, an oid's text the same one", function()
  T.eq(math.type(id_of("pg_class", 16384)), "integer")
  T.eq(id_of("pg_class", "16384"), id_of("pg_class", 16384))
  T.ok(id_of("pg_class", 16384) ~= id_of("pg_type", 16384), "the same oid in two catalogs: two ids")
  T.ok(id_of("pg_class", 4294967295) ~= id_of("pg_class", 4294967294), "the largest oids stay apart")
  T.ok(id_of("pg_class", 4294967295) < id_of("pg_class", 0) + (1 << 32), "an oid stays below the catalog's bits")
end)

T.test("ids: no oid makes no id (a look-up finds nothing)", function()
  T.eq({ id_of("pg_class", nil), id_of("pg_class", "x"), id_of("pg_class", 1.5) }, {})
end)
