-- tide.plan.keep_for_run on a plan made by hand: what a run keeps says what the plan said, with
-- its tables' entries, steps and lists made anew (away from the pages of what went), links
-- between entries pointing at the new entries, shared lists shared, and a statement with
-- secrets still sent with its real values.
local T = require "testlib"
local plan_module = require "tide.plan"
local secret = require "tide.secret"
local json = require "tide.json"
local steplist = require "tide.plan.steplist"

local COLUMN_META = { __index = { identity = "", generated = "" } }

local function column(relid, name, type_oid)
  return setmetatable({ relid = relid, name = name, type = "integer", type_oid = type_oid, num = 1 }, COLUMN_META)
end

local function make_plan()
  local parent = { key = "app.parent", oid = 1, source = { schema = "app", name = "parent" },
                   target = { schema = "app", name = "parent" },
                   columns = { column(1, "id", 23), column(1, "note", 25) }, key_columns = { "id" },
                   row_filter = "id > 10", marker = json.null }
  local child = { key = "app.child", oid = 2, source = { schema = "app", name = "child" },
                  target = { schema = "app", name = "child" },
                  columns = { column(2, "id", 23), column(2, "note", 25) }, key_columns = { "id" } }
  -- select.rows_follow: the child follows its parent's filter (entries linked to each other)
  child.follows = { { parent = parent, columns = { "id" }, ref_columns = { "id" } } }
  parent.followed_by = { { child = child, columns = { "id" } } }
  local long = "CREATE USER MAPPING FOR app_user SERVER remote OPTIONS (user 'app', password '********')" ..
               string.rep(" ", 10)
  local mapping = { kind = "user_mapping", key = "user_mapping:app_user@remote", sql = long,
                    object = "user_mapping:app_user@remote", phase = "post", after = {}, needs_data = {} }
  secret.keep(mapping, long:gsub("%*%*%*%*%*%*%*%*", "s3cret"), { "s3cret" })
  local index1 = { kind = "index", key = "index:app.parent_note", object = "index:app.parent_note", phase = "post",
                   sql = "CREATE INDEX parent_note ON app.parent USING btree (note) WITH (fillfactor = 90)",
                   after = {}, needs_data = { "app.parent" }, table = "app.parent" }
  local index2 = { kind = "index", key = "index:app.parent_id2", object = "index:app.parent_id2", phase = "post",
                   sql = "CREATE UNIQUE INDEX parent_id2 ON app.parent USING btree (id) WITH (fillfactor = 90)",
                   after = { "index:app.parent_note" }, needs_data = { "app.parent" }, table = "app.parent" }
  local function object(kind, name, columns)
    return { kind = kind, def = { name = kind }, row = { oid = 1 }, schema = "app", name = name,
             target = { schema = "app", name = name }, columns = columns, deps = {} }
  end
  local plan = {
    tables = { parent, child }, sequences = { { key = "app.s", source = { schema = "app", name = "s" },
                                                target = { schema = "app", name = "s" } } },
    pre_data = { { kind = "table", key = "table:app.parent", sql = "CREATE TABLE app.parent ()", after = {},
                   object = "table:app.parent", phase = "pre" } },
    post_data = { index1, index2, mapping },
    by_key = { ["table:app.parent"] = object("table", "parent", parent.columns),
               ["table:app.child"] = object("table", "child", child.columns),
               ["index:app.parent_note"] = object("index", "parent_note") },
    model = { schemas = { app = { selected = true, row = { name = "app" }, deps = {} },
                          other = { selected = false, row = { name = "other" } } } },
    drops = { { object = object("table", "gone") } }, security_labels = { { object = {} } },
    catalog = {}, target_catalog = {}, target_model = {}, existing = {}, objects = { {}, {} },
  }
  return plan, { parent = parent, child = child, mapping = mapping, index1 = index1, index2 = index2 }
end

T.test("what a run keeps: the same plan, made anew", function()
  local plan, old = make_plan()
  plan_module.keep_for_run(plan, { phases = { schema = true, full = true } })
  local parent, child = plan.tables[1], plan.tables[2]
  T.ok(not rawequal(parent, old.parent) and not rawequal(child, old.child), "the entries are new tables")
  T.eq({ parent.key, child.key, parent.row_filter }, { "app.parent", "app.child", "id > 10" })
  T.ok(rawequal(parent.marker, json.null), "json.null stays itself")
  -- links between entries lead to the new entries
  T.ok(rawequal(child.follows[1].parent, parent), "a follow rule names the kept parent entry")
  T.ok(rawequal(parent.followed_by[1].child, child), "and the parent the kept child")
  -- columns: without the table's oid, equal rows one row, equal lists one list, metatable kept
  T.ok(rawequal(parent.columns, child.columns), "equal columns of two tables: one list")
  for _, c in ipairs(parent.columns) do
    T.eq(rawget(c, "relid"), nil)
    T.ok(rawequal(getmetatable(c), COLUMN_META), "a row keeps its metatable")
    T.eq(c.identity, "", "and what it gives")
  end
  T.eq({ parent.columns[1].name, parent.columns[2].name }, { "id", "note" })
  T.ok(rawequal(parent.target, parent.source), "a table's target is its source's names when equal")
  -- the steps: new tables saying the same, equal lists shared, secrets carried
  local index1, index2, mapping = plan.post_data[1], plan.post_data[2], plan.post_data[3]
  T.ok(not rawequal(index1, old.index1) and not rawequal(mapping, old.mapping), "the steps are new tables")
  T.eq({ index1.key, index1.sql, index2.after[1], mapping.sql }, { old.index1.key, old.index1.sql,
       "index:app.parent_note", old.mapping.sql })
  T.ok(steplist.is_packed(plan.post_data), "the post-data steps are kept in arrays")
  T.eq({ index1.needs_data, index2.needs_data, index1.after, mapping.after }, { { "app.parent" }, { "app.parent" }, {}, {} })
  T.eq(steplist.field(plan.post_data, 2, "after"), { "index:app.parent_note" })
  T.match(secret.sql(mapping), "password 's3cret'", "the copy runs with the real password")
  T.nomatch(mapping.sql, "s3cret", "and shows it masked")
  -- objects: only tables' whose entry does not say it all (here none), no list of them
  T.eq(#plan.objects, 0)
  T.eq(next(plan.by_key), nil, "plain tables' entries stand for their objects")
  T.eq(plan.model.schemas, { app = { selected = true }, other = { selected = false } })
  T.eq({ plan.catalog, plan.target_catalog, plan.target_model, plan.existing, plan.security_labels },
       { nil, nil, nil, nil, nil })
  T.eq(plan.drops, {})
  T.eq(#plan.pre_data, 1, "the pre-data steps stay for the schema phase")
  T.eq(#plan.sequences, 1)
end)

T.test("a table whose entry does not say all of it keeps a small object", function()
  local plan = make_plan()
  plan.by_key["table:app.child"].target = { schema = "app", name = "kid" }   -- another name
  plan.by_key["table:app.parent"].dropped_columns = { { name = "old" } }
  plan_module.keep_for_run(plan, { phases = { schema = true, full = true } })
  local kid, parent = plan.by_key["table:app.child"], plan.by_key["table:app.parent"]
  T.eq({ kid.schema, kid.name, kid.target.name, kid.def, kid.row }, { "app", "child", "kid", nil, nil })
  T.eq(parent.dropped_columns[1].name, "old")
  T.ok(rawequal(parent.columns, plan.tables[1].columns), "its columns are the entry's list")
end)

T.test("a task without the schema phase keeps no steps", function()
  local plan = make_plan()
  plan_module.keep_for_run(plan, { phases = { full = true } })
  T.eq({ #plan.pre_data, #plan.post_data }, { 0, 0 })
  T.eq(#plan.tables, 2)
end)
