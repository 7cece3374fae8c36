-- `pgtide plan` and the plan itself: selection, renaming, dependency order, output, scale.
-- Fixture: tests/fixtures/schema_select.sql.
local T = require "testlib"
local tide = require "tide"
local connect = require "tide.connect"
local plan_module = require "tide.plan"

local PGTIDE = os.getenv("PGTIDE") or "build/pgtide"
local PG_BIN = "/usr/lib/postgresql/15/bin/"
local FIXTURE = "tests/fixtures/schema_select.sql"

local loaded = false
local function load_fixture(ctx)
  if loaded then return end
  local code, out = T.sh(PG_BIN .. "psql -X -q -v ON_ERROR_STOP=1 -d '" .. ctx.source_url .. "' -f " .. FIXTURE)
  if code ~= 0 then error("loading the fixture failed: " .. out) end
  loaded = true
end

local function build(ctx, extra, source_url)
  local def = { name = "plan-test", source = source_url or ctx.source_url, target = ctx.target_url, migrate = { "schema" } }
  for k, v in pairs(extra or {}) do def[k] = v end
  local task = tide.task(def)
  local source, target = connect.open_both(task)
  local plan = plan_module.build(task, source, target)
  source:close()
  target:close()
  return plan
end

local function write_playbook(ctx, name, body)
  local path = ctx.tmpdir .. "/" .. name
  local f = assert(io.open(path, "w"))
  f:write('local tide = require "tide"\nreturn tide.task {\n  name = "plan-cli",\n  source = ',
    string.format("%q", ctx.source_url), ",\n  target = ", string.format("%q", ctx.target_url),
    ',\n  migrate = { "schema" },\n', body or "", "}\n")
  f:close()
  return path
end

local function skipped_reasons(plan)
  local reasons = {}
  for _, s in ipairs(plan.skipped) do reasons[s.key] = s.reason end
  return reasons
end

local function step_keys(steps)
  local keys, position = {}, {}
  for i, step in ipairs(steps) do keys[i] = step.key; position[step.key] = i end
  return keys, position
end

local function messages(list)
  local out = {}
  for _, item in ipairs(list) do out[#out + 1] = item.message end
  return table.concat(out, "\n")
end

T.test("pgtide plan prints objects with their target names, what is left out, and the DDL; it writes nothing", function(ctx)
  load_fixture(ctx)
  local file = write_playbook(ctx, "plan.lua", [[
  select = { exclude = { "public.tmp_*", "archive" } },
  rename = { schema = { public = "shop" }, table = { ["public.users"] = "members" },
             column = { ["public.users.login"] = "username" } },
]])
  local code, out = T.sh(PGTIDE .. " plan " .. file)
  T.eq(code, 0, out)
  T.match(out, "Selected objects")
  T.match(out, "public%.users → shop%.members")
  T.match(out, "public%.orders → shop%.orders")
  T.match(out, "Left out %(4%)")
  T.match(out, "table public%.tmp_a: excluded by \"public%.tmp_%*\"")
  T.match(out, "schema archive: excluded by \"archive\"")
  T.match(out, "Pre%-data %(%d+ statements")
  T.match(out, "CREATE TABLE shop%.members %(\n    id bigint NOT NULL,\n    username text NOT NULL")
  T.match(out, "Post%-data")
  T.match(out, "REFERENCES shop%.members%(id%)")
  T.match(out, "CREATE VIEW shop%.user_logins %(id, login%) AS\n SELECT members%.id,\n    members%.username")
  T.match(out, "The plan can run%.")
  -- The pre-data statements come in dependency order: the table before its view.
  T.ok(out:find("CREATE TABLE shop.members", 1, true) < out:find("CREATE VIEW shop.user_logins", 1, true))
  local target = assert(tide.connect(ctx.target_url))
  local rows = assert(target:query([[SELECT count(*) AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')]]))
  T.eq(rows[1].n, 0, "pgtide plan wrote to the target")
  T.eq(#assert(target:query("SELECT 1 FROM pg_namespace WHERE nspname = 'shop'")), 0)
  target:close()
end)

T.test("pgtide plan --json gives the plan's fields", function(ctx)
  load_fixture(ctx)
  local file = write_playbook(ctx, "json.lua", [[  select = { include = { "public.users", "public.orders", "public.audit_row" } },
]])
  local code, out = T.sh(PGTIDE .. " plan --json " .. file .. " 2>/dev/null")
  T.eq(code, 0, out)
  local data = require("tide.json").decode(out)
  T.eq(data.runnable, true)
  local tables = {}
  for _, t in ipairs(data.tables) do tables[#tables + 1] = t.key end
  table.sort(tables)
  T.eq(tables, { "public.orders", "public.users" })
  local users = data.tables[1].key == "public.users" and data.tables[1] or data.tables[2]
  T.eq(users.key_columns, { "id" })
  T.eq(users.int_key, "id")
  T.eq(users.columns[2].name, "login")
  T.eq(data.pre_data[1].key, "function:public.audit_row()")
  T.eq(data.pre_data[2].key, "table:public.orders")
  local fkey
  for _, step in ipairs(data.post_data) do if step.kind == "fkey" then fkey = step end end
  T.eq(fkey.table, "public.orders")
  T.eq(fkey.needs_data, { "public.orders", "public.users" })
  T.ok(#fkey.after > 0, "the foreign key waits for the primary key")
  T.match(data.skipped[1].reason, "not matched by any select%.include pattern")
end)

T.test("selection: include, exclude, globs, regexes, kinds, columns and predicates", function(ctx)
  load_fixture(ctx)
  local plan = build(ctx, { select = {
    include = { "public.*", "billing" },
    exclude = { "public.tmp_*", { re = "_20[0-9][0-9]$" } },
    kinds = { exclude = { "trigger" } },
    columns = { ["public.users"] = { exclude = { "password_hash" } } },
    where = function(obj) return obj.name ~= "audit", "no audit tables here" end,
  } })
  local reasons = skipped_reasons(plan)
  T.match(reasons["table:public.tmp_a"], "excluded by \"public%.tmp_%*\"")
  T.match(reasons["table:public.events_2024"], "excluded by")
  T.match(reasons["schema:archive"], "not matched by any select%.include")
  T.match(reasons["table:archive.old_orders"], "not matched")
  T.match(reasons["trigger:public.orders.orders_audit"], "kind \"trigger\" excluded")
  T.match(reasons["table:public.audit"], "no audit tables here")
  T.match(reasons["column:public.users.password_hash"], "select%.columns")
  T.ok(plan.by_key["table:billing.invoices"], "billing.invoices is selected")
  for _, step in ipairs(plan.pre_data) do
    T.nomatch(step.sql, "password_hash")
    T.nomatch(step.sql, "CREATE TRIGGER")
  end
  for _, t in ipairs(plan.tables) do
    if t.key == "public.users" then
      local names = {}
      for i, c in ipairs(t.columns) do names[i] = c.name end
      T.eq(names, { "id", "login", "created_at" })
    end
  end
  T.eq(plan.errors, {})
end)

T.test("pgtide plan lists row filters, renamed and left-out columns per table", function(ctx)
  load_fixture(ctx)
  local plan = build(ctx, {
    select = { columns = { ["public.users"] = { exclude = { "password_hash" } } },
               rows = { ["public.orders"] = "id > 1" } },
    rename = { column = { ["public.users.login"] = "username" } },
  })
  local text = require("tide.plan.report").text(plan, { name = "plan-test", source_info = "s", target_info = "t" })
  T.match(text, "Rows and columns %(2 table%(s%)%):")
  T.match(text, "\n    public%.orders: rows WHERE id > 1\n")
  T.match(text, "\n    public%.users: columns renamed: login → username; columns left out: password_hash\n")
end)

T.test("a foreign key or view on an excluded table is reported with both names; dependents = drop leaves them out", function(ctx)
  load_fixture(ctx)
  local plan = build(ctx, { select = { include = { "public.orders", "public.users", "public.user_logins" },
                                       exclude = { "public.users" } } })
  T.eq(plan_module.runnable(plan), false)
  local text = messages(plan.errors)
  T.match(text, "constraint public%.orders%.orders_user_id_fkey needs table public%.users, which is left out %(excluded by \"public%.users\"%)")
  T.match(text, "view public%.user_logins needs table public%.users")
  T.match(text, "schema%.dependents = \"drop\"")
  local file = write_playbook(ctx, "fk.lua", [[  select = { include = { "public.orders" } },
]])
  local code, out = T.sh(PGTIDE .. " plan " .. file)
  T.eq(code, 5, out)
  T.match(out, "orders_user_id_fkey needs table public%.users")

  plan = build(ctx, { select = { include = { "public.orders", "public.users", "public.user_logins" },
                                 exclude = { "public.users" } },
                      schema = { dependents = "drop" } })
  T.eq(plan.errors, {})
  T.match(messages(plan.warnings), "constraint public%.orders%.orders_user_id_fkey is left out: it needs table public%.users")
  T.match(skipped_reasons(plan)["view:public.user_logins"], "needs table public%.users")
  for _, step in ipairs(plan.post_data) do T.ok(step.kind ~= "fkey", "a foreign key is still planned: " .. step.sql) end
end)

T.test("objects are created in dependency order, not in a fixed order of kinds", function(ctx)
  load_fixture(ctx)
  local plan = build(ctx, { select = { include = { "public.*" } } })
  T.eq(plan.errors, {})
  local _, position = step_keys(plan.pre_data)
  local function before(a, b)
    T.ok(position[a] and position[b], "missing step " .. a .. " or " .. b)
    T.ok(position[a] < position[b], a .. " should come before " .. b)
  end
  before("composite:public.point2", "domain:public.positive_point")
  before("domain:public.positive_point", "composite:public.segment")
  before("composite:public.segment", "table:public.segments")
  before("function:public.double_it(integer)", "view:public.v1")
  before("view:public.v1", "view:public.v2")
  before("view:public.v2", "function:public.twos()")
  before("function:public.twos()", "view:public.v3")
  local _, post = step_keys(plan.post_data)
  T.ok(post["constraint:public.users.users_pkey"] < post["fkey:public.orders.orders_user_id_fkey"])
  T.ok(post["index:public.users.users_pkey/index"] < post["constraint:public.users.users_pkey"])
end)

-- The plan's steps (tide.plan, docs/internals.md) hold the plan's fields only, keys where the
-- order's working steps held objects and steps: what a run keeps and `--json` prints.
T.test("the written steps hold the plan's fields only, keys instead of objects", function(ctx)
  load_fixture(ctx)
  local plan = build(ctx, { select = { include = { "public.*" } } })
  T.eq(plan.errors, {})
  local FIELDS = { kind = "string", key = "string", sql = "string", object = "string", phase = "string",
                   undo = "string", after = "table", needs_data = "table", table = "string", drops = "table" }
  local n, with_after, with_undo = 0, 0, 0
  for _, list in ipairs({ plan.pre_data, plan.post_data }) do
    for _, step in ipairs(list) do
      n = n + 1
      for field, value in pairs(step) do
        T.ok(FIELDS[field] == type(value), step.key .. ": field " .. tostring(field) .. " (" .. type(value) .. ")")
      end
      for _, key in ipairs(step.after) do T.eq(type(key), "string", step.key .. " waits for a key") end
      for _, key in ipairs(step.needs_data or {}) do T.eq(type(key), "string") end
      T.ok(plan.by_key[step.object] ~= nil or step.kind == "drop", step.key .. ": its object is a plan object's key")
      if #step.after > 0 then with_after = with_after + 1 end
      if step.undo then with_undo = with_undo + 1 end
    end
  end
  T.ok(n > 20 and with_after > 10 and with_undo > 0, string.format("%d steps, %d waiting, %d with undo", n, with_after, with_undo))
end)

T.test("a CHECK and a default calling functions of the table's row type are added after those functions", function(ctx)
  load_fixture(ctx)
  local admin = assert(tide.connect(ctx.target_admin))
  assert(admin:exec("DROP DATABASE IF EXISTS t_plan_test_cycle WITH (FORCE)"))
  assert(admin:exec("CREATE DATABASE t_plan_test_cycle"))
  admin:close()
  local target_url = ctx.target_url:gsub("/[^/?]*(%??[^/]*)$", "/t_plan_test_cycle%1")
  local task = tide.task { name = "plan-cycle", source = ctx.source_url, target = target_url,
                           select = { include = { "public.gadget*" } } }
  local source, target = connect.open_both(task)
  local plan = plan_module.build(task, source, target)
  T.eq(plan.errors, {})
  local _, position = step_keys(plan.pre_data)
  T.ok(position["table:public.gadgets"] < position["function:public.gadget_ok(g public.gadgets)"])
  T.ok(position["function:public.gadget_ok(g public.gadgets)"] < position["table_alter:public.gadgets/split2"])
  T.ok(position["function:public.gadget_score(g public.gadgets)"] < position["table_alter:public.gadgets/split1"])
  require("tide.schema").run(task, plan, target)
  local _, err = target:query("INSERT INTO public.gadgets (id, price) VALUES (1, -5)")
  T.eq(err and err.sqlstate, "23514", "the CHECK constraint was added")
  local row = assert(target:query("INSERT INTO public.gadgets (id, price) VALUES (2, 5) RETURNING score"))[1]
  T.eq(row.score, 1, "the default was added")
  source:close()
  target:close()
end)

T.test("rename: two sources to one target name, and names over 63 bytes, are errors naming them", function(ctx)
  load_fixture(ctx)
  local plan = build(ctx, { rename = { table = { ["public.tmp_a"] = "tmp", ["public.tmp_b"] = "tmp" } } })
  local text = messages(plan.errors)
  T.match(text, "public%.tmp_a")
  T.match(text, "public%.tmp_b")
  T.match(text, "both map to public%.tmp")
  plan = build(ctx, { rename = { table = function(_, _, name)
    if name == "audit" then return string.rep("a", 64) end
  end } })
  T.match(messages(plan.errors), "64 bytes long; PostgreSQL names are at most 63 bytes")
  T.eq(plan_module.runnable(plan), false)
end)

T.test("heartbeat tables of other pgtide tasks are left out; a user table with a like name is not", function(ctx)
  local admin = assert(tide.connect(ctx.source_admin))
  assert(admin:exec("DROP DATABASE IF EXISTS t_plan_test_heartbeat WITH (FORCE)"))
  assert(admin:exec("CREATE DATABASE t_plan_test_heartbeat"))
  admin:close()
  local url = ctx.source_url:gsub("/[^/?]*(%??[^/]*)$", "/t_plan_test_heartbeat%1")
  local source = assert(tide.connect(url))
  local cdc_objects = require "tide.cdc.objects"
  -- Made as another task's stream makes them: the default name, and a configured one.
  local other = cdc_objects.names { name = "other-task" }
  cdc_objects.ensure_heartbeat(source, other)
  cdc_objects.ensure_heartbeat(source, other) -- again: idempotent
  local custom = cdc_objects.names { name = "custom", incremental = { heartbeat_table = "public.custom_beats" } }
  cdc_objects.ensure_heartbeat(source, custom)
  T.eq(assert(source:query("SELECT obj_description('public.pgtide_other_task_heartbeat'::regclass, 'pg_class') AS c"))[1].c,
       "pgtide heartbeat table of task other-task")
  assert(source:exec([[
    -- made by an earlier version: no comment
    CREATE TABLE public.pgtide_old_heartbeat (slot text PRIMARY KEY,
      beat timestamptz NOT NULL DEFAULT clock_timestamp(), lsn pg_lsn);
    -- user tables: a fourth column, another type
    CREATE TABLE public.pgtide_notes_heartbeat (slot text PRIMARY KEY, beat timestamptz, lsn pg_lsn, note text);
    CREATE TABLE public.pgtide_typed_heartbeat (slot text PRIMARY KEY, beat timestamp, lsn pg_lsn);
  ]]))
  source:close()

  local plan = build(ctx, nil, url)
  local reasons = skipped_reasons(plan)
  for _, name in ipairs { "pgtide_other_task_heartbeat", "custom_beats", "pgtide_old_heartbeat" } do
    T.eq(reasons["table:public." .. name], "the heartbeat table of a pgtide task", name)
  end
  local tables = {}
  for _, t in ipairs(plan.tables) do tables[#tables + 1] = t.key end
  table.sort(tables)
  T.eq(tables, { "public.pgtide_notes_heartbeat", "public.pgtide_typed_heartbeat" })
  for _, list in ipairs { plan.pre_data, plan.post_data } do
    for _, step in ipairs(list) do
      local sql = step.sql or ""
      T.nomatch(sql, "pgtide_other_task_heartbeat")
      T.nomatch(sql, "custom_beats")
      T.nomatch(sql, "pgtide_old_heartbeat")
    end
  end

  local file = ctx.tmpdir .. "/heartbeat.lua"
  local f = assert(io.open(file, "w"))
  f:write('local tide = require "tide"\nreturn tide.task { name = "plan-cli", source = ', string.format("%q", url),
    ", target = ", string.format("%q", ctx.target_url), ', migrate = { "schema" } }\n')
  f:close()
  local code, out = T.sh(PGTIDE .. " plan " .. file)
  T.eq(code, 0, out)
  T.match(out, "table public%.pgtide_other_task_heartbeat: the heartbeat table of a pgtide task")
  T.match(out, "table public%.custom_beats: the heartbeat table of a pgtide task")
  T.match(out, "table public%.pgtide_old_heartbeat: the heartbeat table of a pgtide task")
  T.nomatch(out, "CREATE TABLE public%.pgtide_other_task_heartbeat")
  T.nomatch(out, "CREATE TABLE public%.custom_beats")
  T.nomatch(out, "CREATE TABLE public%.pgtide_old_heartbeat")
  T.match(out, "CREATE TABLE public%.pgtide_notes_heartbeat")
  T.match(out, "CREATE TABLE public%.pgtide_typed_heartbeat")
end)

T.test("the plan of 10,000 tables takes well under 10 seconds", function(ctx)
  local admin = assert(tide.connect(ctx.source_admin))
  assert(admin:exec("DROP DATABASE IF EXISTS t_plan_test_scale WITH (FORCE)"))
  assert(admin:exec("CREATE DATABASE t_plan_test_scale"))
  admin:close()
  local url = ctx.source_url:gsub("/[^/?]*(%??[^/]*)$", "/t_plan_test_scale%1")
  local source = assert(tide.connect(url))
  assert(source:exec([[DO $$ BEGIN
    FOR i IN 1..10000 LOOP
      EXECUTE format('CREATE TABLE t%s (id bigint PRIMARY KEY, name text NOT NULL, at timestamptz DEFAULT now())', i);
      IF i % 1000 = 0 THEN COMMIT; END IF;
    END LOOP;
  END $$]]))
  source:close()
  local started = tide.monotonic()
  local plan = build(ctx, nil, url)
  local seconds = tide.monotonic() - started
  T.eq(#plan.tables, 10000)
  T.eq(#plan.pre_data, 10000)
  T.eq(#plan.post_data, 20000) -- index + constraint per table
  -- The bound is the optimized build's; under AddressSanitizer (make test-asan) everything
  -- runs two to three times slower, and that run is about memory errors, not speed.
  local bound = os.getenv("ASAN_OPTIONS") and 30 or 10
  T.ok(seconds < bound, string.format("planning 10,000 tables took %.1f s (bound %d s)", seconds, bound))
  print(string.format("# plan of 10,000 tables: %.2f s (catalog %.2f s)", seconds, plan.timing.catalog))
end)

T.test("dependents = drop: a column left out with its type takes the index on it along", function(ctx)
  local src = assert(tide.connect(ctx.source_url))
  assert(src:exec([[
DROP SCHEMA IF EXISTS dropcol CASCADE;
CREATE SCHEMA dropcol;
CREATE TYPE dropcol.mood AS ENUM ('calm', 'busy');
CREATE TABLE dropcol.t (id int PRIMARY KEY, m dropcol.mood, v text);
CREATE INDEX t_m_idx ON dropcol.t (m);
CREATE INDEX t_v_idx ON dropcol.t (v);]]))
  src:close()
  local plan = build(ctx, { select = { include = { "dropcol.t" } }, schema = { dependents = "drop" } })
  T.eq(plan.errors, {})
  local keys, sql = {}, {}
  for _, list in ipairs({ plan.pre_data, plan.post_data }) do
    for _, step in ipairs(list) do keys[step.key] = true; sql[#sql + 1] = step.sql end
  end
  local all = table.concat(sql, "\n")
  T.ok(keys["index:dropcol.t_v_idx"], "the index on a kept column is planned: " .. all)
  T.nomatch(all, "t_m_idx", "the index on the left-out column is left out too")
  T.nomatch(all, "mood", "nothing uses the left-out type")
end)

T.test("tables alike in two schemas share their column rows; a column renamed in one keeps its name in the other", function(ctx)
  local src = assert(tide.connect(ctx.source_url))
  assert(src:exec([[
DROP SCHEMA IF EXISTS twin_a, twin_b CASCADE;
CREATE SCHEMA twin_a;
CREATE SCHEMA twin_b;
CREATE TABLE twin_a.t (id int PRIMARY KEY, v text NOT NULL, n serial);
CREATE TABLE twin_b.t (id int PRIMARY KEY, v text NOT NULL, n serial);]]))
  src:close()
  local plan = build(ctx, { select = { include = { "twin_a", "twin_b" } },
                            rename = { column = { ["twin_a.t.v"] = "w" } } })
  T.eq(plan.errors, {})
  local sql = {}
  for _, step in ipairs(plan.pre_data) do sql[step.key] = step.sql end
  local a, b = assert(sql["table:twin_a.t"], "twin_a.t planned"), assert(sql["table:twin_b.t"], "twin_b.t planned")
  T.match(a, '"?w"? text NOT NULL', a)
  T.nomatch(a, '[ (]"?v"? text', a)
  T.match(b, '"?v"? text NOT NULL', b)
  T.nomatch(b, '[ (]"?w"? text', b)
  T.match(a, "twin_a%.t_n_seq", "each serial column keeps its own default: " .. a)
  T.match(b, "twin_b%.t_n_seq", b)
  -- The catalog holds one row for both tables' id column (no default: nothing sets them
  -- apart), and one row each for n (its default, its own sequence).
  local obj_a, obj_b = plan.by_key["table:twin_a.t"], plan.by_key["table:twin_b.t"]
  local rows_a, rows_b = plan.catalog.columns_by_relid[obj_a.oid], plan.catalog.columns_by_relid[obj_b.oid]
  T.eq(#rows_a, 3)
  T.ok(rawequal(rows_a[1], rows_b[1]), "the id columns' rows are one row")
  T.ok(not rawequal(rows_a[3], rows_b[3]), "the serial columns' rows are two")
  T.eq(rows_a[1].relid, nil, "a column row carries no relation oid")
  local targets = {}
  for _, tbl in ipairs(plan.tables) do
    local names = {}
    for i, c in ipairs(tbl.columns) do names[i] = c.target end
    targets[tbl.key] = table.concat(names, ",")
  end
  T.eq(targets["twin_a.t"], "id,w,n")
  T.eq(targets["twin_b.t"], "id,v,n")
end)

T.test("what a run keeps of the plan: no steps for a task without the schema phase, only the tables' objects", function(ctx)
  load_fixture(ctx)
  local with_schema = build(ctx, { migrate = { "schema", "full" } })
  local without = build(ctx, { migrate = { "full", "incremental" } })
  T.ok(#without.pre_data > 0 and #without.post_data > 0, "the plan itself has the steps (pgtide plan shows them)")
  local tables = #without.tables
  local pre, post = #with_schema.pre_data, #with_schema.post_data
  -- What each table's object said before (names, target, columns), and the other objects' keys.
  local table_keys, other_keys, before = {}, {}, {}
  for key, obj in pairs(with_schema.by_key) do
    if key:sub(1, 6) == "table:" then
      table_keys[#table_keys + 1] = key
      local names = {}
      for i, c in ipairs(obj.columns or {}) do names[i] = c.name .. ":" .. tostring(c.type_oid) end
      before[key] = { obj.schema, obj.name, obj.target.schema, obj.target.name, table.concat(names, ",") }
    else
      other_keys[#other_keys + 1] = key
    end
  end
  T.ok(#table_keys > 0 and #other_keys > 0, "the plan has table objects and others")
  plan_module.keep_for_run(with_schema, tide.task { name = "k", source = ctx.source_url, target = ctx.target_url,
                                                    migrate = { "schema", "full" } })
  plan_module.keep_for_run(without, tide.task { name = "k", source = ctx.source_url, target = ctx.target_url,
                                                migrate = { "full", "incremental" } })
  T.eq({ #with_schema.pre_data, #with_schema.post_data }, { pre, post }, "a run with the schema phase keeps them")
  T.eq({ #without.pre_data, #without.post_data }, { 0, 0 }, "one without it runs none of them, and keeps none")
  T.eq(#without.tables, tables, "its tables stay")
  T.eq(without.catalog, nil, "the catalogs go in both")
  T.eq(with_schema.target_catalog, nil)
  T.eq(#with_schema.objects, 0, "the list of objects goes")
  -- A step names its object by key; a failed step's message describes the object from it.
  local kinds = require "tide.kinds"
  for _, step in ipairs(with_schema.post_data) do
    T.match(kinds.describe_key(step.object), "^[a-z ]+ %S", step.key .. ": described from its key")
  end
  T.eq(kinds.describe_key("matview:app.\"Totals\""), 'materialized view app."Totals"')
  T.eq(kinds.describe_key("no key"), "no key")
  -- Of the objects, only tables' stay: where a table's entry does not say all of it (a
  -- partitioned table has no entry; generated and dropped columns are not in the entry's
  -- list); the others' entries stand for them, saying the same.
  local entry_of = {}
  for _, tbl in ipairs(with_schema.tables) do entry_of["table:" .. tbl.key] = tbl end
  local function says(o, columns)
    local names = {}
    for i, c in ipairs(columns or {}) do names[i] = c.name .. ":" .. tostring(c.type_oid) end
    return { o.schema, o.name, o.target.schema, o.target.name, table.concat(names, ",") }
  end
  local stood_for = 0
  for _, key in ipairs(table_keys) do
    local obj, tbl = with_schema.by_key[key], entry_of[key]
    if obj then
      T.eq(obj.def, nil, key .. ": what the run does not read goes")
      T.eq(says(obj, obj.columns), before[key], key .. ": the kept object says what the object said")
    else
      T.ok(tbl, key .. ": an object not kept has an entry")
      stood_for = stood_for + 1
      T.eq(says({ schema = tbl.source.schema, name = tbl.source.name, target = tbl.target }, tbl.columns), before[key],
           key .. ": its entry says what its object said")
    end
  end
  for key in pairs(with_schema.by_key) do T.ok(before[key], key .. ": only tables' objects stay") end
  T.ok(stood_for > 0, "a plain table's entry stands for its object")
  for _, tbl in ipairs(with_schema.tables) do
    for _, c in ipairs(tbl.columns) do T.eq(rawget(c, "relid"), nil, tbl.key .. ": a column row without its table's oid") end
  end
  -- The change stream keeps the tables, the sequences and those objects; no step.
  local wtables, sequences, kept_keys = #with_schema.tables, #with_schema.sequences, 0
  for _ in pairs(with_schema.by_key) do kept_keys = kept_keys + 1 end
  plan_module.keep_for_stream(with_schema)
  T.eq({ #with_schema.pre_data, #with_schema.post_data, #with_schema.objects }, { 0, 0, 0 })
  T.ok(wtables > 0, "the plan has tables")
  T.eq({ #with_schema.tables, #with_schema.sequences }, { wtables, sequences })
  local after = 0
  for _ in pairs(with_schema.by_key) do after = after + 1 end
  T.eq(after, kept_keys, "the stream keeps the tables' objects the run kept")
end)

T.test("a task without the schema phase uses what the target has: no conflicts, no statements for it", function(ctx)
  local P = require "pg"
  local source_url = P.fresh_db(ctx.source_admin, "plan_noschema")
  local target_url = P.fresh_db(ctx.target_admin, "plan_noschema")
  local ddl = [[
    CREATE TABLE orders (id bigint PRIMARY KEY, placed date NOT NULL, note text);
    CREATE INDEX orders_placed ON orders (placed);
    CREATE TABLE lines (order_id bigint REFERENCES orders, n int, PRIMARY KEY (order_id, n));
    CREATE SEQUENCE tickets;]]
  P.exec(source_url, ddl .. " CREATE TABLE only_on_source (id int PRIMARY KEY);")
  P.exec(target_url, ddl)
  local function plan_of(migrate, existing)
    local task = tide.task { name = "plan-noschema", source = source_url, target = target_url, migrate = migrate,
                             schema = existing and { existing = existing } or nil }
    local source, target = connect.open_both(task)
    local plan = plan_module.build(task, source, target)
    source:close(); target:close()
    return plan
  end
  -- With the schema phase, the objects on the target are in the way (schema.existing = "error").
  local with_schema = plan_of({ "schema", "full" })
  T.ok(#with_schema.conflicts >= 6, "the schema phase would create them: conflicts, " .. #with_schema.conflicts)
  -- Without it, nothing is created: what the target has is used, whatever schema.existing says.
  for _, existing in ipairs({ "error", "drop", "skip" }) do
    local plan = plan_of({ "full", "incremental" }, existing)
    T.eq(plan.conflicts, {}, "no conflicts (schema.existing = " .. existing .. ")")
    T.eq(plan.drops, {}, "nothing to drop")
    local keys = {}
    for _, list in ipairs({ plan.pre_data, plan.post_data }) do
      for _, step in ipairs(list) do keys[#keys + 1] = step.object end
    end
    T.ok(#keys > 0, "statements for what the target lacks (which precheck target_table_missing reports)")
    for _, key in ipairs(keys) do
      T.match(key, "only_on_source", "a statement only for what the target lacks, not for " .. key)
    end
    local actions = {}
    for _, e in ipairs(plan.existing) do actions[e.key] = e.action end
    T.eq(actions["table:public.orders"], "used as it is (the task has no schema phase)")
    T.eq(actions["index:public.orders_placed"], "used as it is (the task has no schema phase)")
    T.eq(#plan.tables, 3, "every table is still loaded")
  end
  -- and `pgtide plan` says so
  local file = ctx.tmpdir .. "/noschema.lua"
  local f = assert(io.open(file, "w"))
  f:write(string.format('return require("tide").task { name = "plan-noschema", source = %q, target = %q, ' ..
                        'migrate = { "full", "incremental" } }\n', source_url, target_url))
  f:close()
  local code, out = T.sh(PGTIDE .. " plan " .. file)
  T.eq(code, 0, out)
  T.match(out, "0 conflicts")
  T.match(out, "The plan can run%.")
  P.drop_db(ctx.source_admin, "plan_noschema")
  P.drop_db(ctx.target_admin, "plan_noschema")
end)

T.test("index rows: an invalid index is left out and says why; valid and partitioned ones are built", function(ctx)
  local P = require "pg"
  local source_url = P.fresh_db(ctx.source_admin, "plan_indexes")
  local target_url = P.fresh_db(ctx.target_admin, "plan_indexes")
  P.exec(source_url, [[
    CREATE TABLE t (id int PRIMARY KEY, v int);
    INSERT INTO t VALUES (1, 7), (2, 7);
    CREATE INDEX t_v ON t (v);
    CREATE TABLE p (id int, k int, PRIMARY KEY (id, k)) PARTITION BY RANGE (k);
    CREATE TABLE p1 PARTITION OF p FOR VALUES FROM (0) TO (10);
    CREATE INDEX p_k ON p (k);]])
  -- (CONCURRENTLY, alone: outside a transaction block; the duplicate values leave it invalid)
  T.ok(not pcall(P.exec, source_url, "CREATE UNIQUE INDEX CONCURRENTLY t_v_unique ON t (v)"), "the build fails")
  local task = tide.task { name = "plan-indexes", source = source_url, target = target_url, migrate = { "schema" } }
  local source, target = connect.open_both(task)
  local plan = plan_module.build(task, source, target)
  source:close(); target:close()
  local sql = {}
  for _, step in ipairs(plan.post_data) do sql[step.object] = (sql[step.object] or "") .. step.sql .. ";" end
  T.match(sql["index:public.t_v"] or "", "^CREATE INDEX t_v ON public%.t ", "a valid index is built")
  T.match(sql["index:public.p_k"] or "", "^CREATE INDEX p_k ON ONLY public%.p ", "a partitioned index on its table alone")
  T.match(sql["index:public.p1_k_idx"] or "", "ATTACH PARTITION", "its partition's index built and attached")
  T.eq(sql["index:public.t_v_unique"], nil, "the invalid index is not built")
  local reason
  for _, s in ipairs(plan.skipped) do if s.name == "t_v_unique" then reason = s.reason end end
  T.match(reason or "", "invalid index", "and the plan says why")
  P.drop_db(ctx.source_admin, "plan_indexes")
  P.drop_db(ctx.target_admin, "plan_indexes")
end)
