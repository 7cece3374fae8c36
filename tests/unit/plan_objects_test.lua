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

T.test("identity: only what differs from exact is its own, the rest read through", function()
  local cat = small_catalog {
    constraints = { { oid = 16391, schema = "app", name = "t_id_check", type = "c", table_oid = 16384, domain_oid = 0,
                      validated = true, definition = "CHECK (id > 0)" } },
  }
  cat.tables[1].type_oid = 16386   -- (the table's row type stands for the table)
  local model = objects.collect(cat)
  local t = model.exact[id_of("pg_class", 16384)]
  T.ok(rawequal(model.identity[id_of("pg_class", 16384)], t), "an object stands for itself")
  T.eq(rawget(model.identity, id_of("pg_class", 16384)), nil, "without an entry of its own")
  T.ok(rawequal(rawget(model.identity, id_of("pg_constraint", 16391)), t), "an inline row has one: its owner")
  T.ok(rawequal(model.identity[id_of("pg_type", 16386)], t), "so does a table's row type")
  T.eq(model.identity[id_of("pg_class", 99999)], nil, "an unknown id finds nothing")
end)

T.test("targets: an object its own target without rename, a table of its own with", function()
  local function targets(map)
    local model = objects.collect(small_catalog())
    local ctx = { identity = map == nil, map_name = function(_, schema, name) return (map or {})[name] or schema, name end,
                  map = { column = function(_, _, _, c) return c == "id" and map and "ident" or c end,
                          schema = function(_, name) return name end } }
    for _, obj in ipairs(model.objects) do obj.selected = true end
    objects.assign_targets(model, ctx, function(_, message) error(message) end)
    return model, model.by_key["table:app.t"]
  end
  local model, t = targets(nil)
  T.ok(rawequal(t.target, t), "the same names: the object itself")
  T.eq({ t.target.schema, t.target.name }, { "app", "t" })
  T.ok(rawequal(t.columns, model.cat.columns_by_relid[16384]), "the columns: the catalog's own list")
  T.eq(t.columns[1].target, "id")
  local _, renamed = targets({ t = "other" })
  t = renamed
  T.eq({ t.target.schema, t.target.name }, { "other", "t" }, "another schema: a table of its own")
  T.ok(not rawequal(t.target, t))
  T.eq(t.columns[1].target, "ident", "a column mapped to another name")
end)

T.test("targets: a column row two tables share, mapped otherwise in one, copied onto its own list", function()
  local cat = small_catalog()
  cat.tables[2] = { oid = 16400, schema = "app", name = "u", relkind = "r", owner = "postgres" }
  cat.columns_by_relid[16400] = { cat.columns_by_relid[16384][1] }   -- (tide.catalog.read shares equal rows)
  local model = objects.collect(cat)
  local ctx = { identity = false, map_name = function(_, schema, name) return schema, name end,
                map = { column = function(_, _, table_name, c) return table_name == "u" and "uid" or c end,
                        schema = function(_, name) return name end } }
  for _, obj in ipairs(model.objects) do obj.selected = true end
  objects.assign_targets(model, ctx, function(_, message) error(message) end)
  local t, u = model.by_key["table:app.t"], model.by_key["table:app.u"]
  T.eq({ t.columns[1].target, u.columns[1].target }, { "id", "uid" })
  T.ok(rawequal(t.columns, cat.columns_by_relid[16384]), "the first keeps the catalog's list")
  T.ok(not rawequal(u.columns, cat.columns_by_relid[16400]), "the other a list of its own")
  T.eq(cat.columns_by_relid[16400][1].target, "id", "the catalog's list keeps the shared row")
end)

T.test("own_columns: the catalog's list copied once, before the first change", function()
  local model = objects.collect(small_catalog())
  local t = model.by_key["table:app.t"]
  local catalog_list = model.cat.columns_by_relid[16384]
  local own = objects.own_columns(model, t)
  T.ok(not rawequal(own, catalog_list) and rawequal(t.columns, own), "a copy, now the object's")
  T.ok(rawequal(own[1], catalog_list[1]), "of the same rows")
  T.ok(rawequal(objects.own_columns(model, t), own), "copied once")
  table.remove(own, 1)
  T.eq({ #t.columns, #catalog_list }, { 0, 1 })
end)
