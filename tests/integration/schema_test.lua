-- Schema migration on real servers: every object kind, renaming, existing objects on the
-- target, failures. The every-kind fixture is tests/fixtures/schema_all_kinds.sql.
local T = require "testlib"
local P = require "pg"
local D = require "schemadump"
local sh_ok, fresh_db = D.sh_ok, P.fresh_db
local tide = require "tide"
local connect = require "tide.connect"
local plan_module = require "tide.plan"
local schema = require "tide.schema"

local PG_BIN = "/usr/lib/postgresql/15/bin/"
local FIXTURE = "tests/fixtures/schema_all_kinds.sql"

-- The fixture needs the role tide_reader on both clusters (roles are per cluster).
local function ensure_roles(ctx)
  for _, url in ipairs({ ctx.source_admin, ctx.target_admin }) do
    local c = assert(tide.connect(url))
    assert(c:exec([[DO $$ BEGIN
      IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'tide_reader') THEN CREATE ROLE tide_reader; END IF;
    END $$]]))
    c:close()
  end
end

local loaded = {}
local function load_fixture(ctx, url)
  ensure_roles(ctx)
  if not loaded[url] then
    sh_ok(PG_BIN .. "psql -X -q -v ON_ERROR_STOP=1 -d '" .. url .. "' -f " .. FIXTURE)
    loaded[url] = true
  end
end

local function make_task(source_url, target_url, extra)
  local def = { name = "schema-test", source = source_url, target = target_url, migrate = { "schema" } }
  for k, v in pairs(extra or {}) do def[k] = v end
  return tide.task(def)
end

local function build(task)
  local source, target = connect.open_both(task)
  local plan = plan_module.build(task, source, target)
  source:close()
  return plan, target
end

local function migrate(task)
  local plan, target = build(task)
  schema.run(task, plan, target)
  target:close()
  return plan
end

T.test("every kind migrates: pg_dump of source and target match object by object", function(ctx)
  load_fixture(ctx, ctx.source_url)
  local plan = migrate(make_task(ctx.source_url, ctx.target_url, { schema = { owners = "source" } }))
  T.eq(plan.errors, {}, "plan errors")
  local seen = {}
  for _, obj in ipairs(plan.objects) do seen[obj.kind] = true end
  for _, kind in ipairs({ "schema", "extension", "collation", "enum", "composite", "domain", "range",
    "sequence", "table", "view", "matview", "function", "procedure", "aggregate", "index",
    "constraint", "trigger", "rule", "policy", "statistics" }) do
    T.ok(seen[kind], "the fixture has no object of kind " .. kind .. " in the plan")
  end
  local differences, source_count, target_count = D.dump_differences(ctx.source_url, ctx.target_url)
  T.ok(source_count > 120, "pg_dump of the source lists only " .. source_count .. " objects")
  T.eq(differences, {}, "pg_dump differences")
  T.eq(source_count, target_count)
  -- The materialized view was refreshed after the data: it is populated.
  local rows = P.query(ctx.target_url, "SELECT relispopulated FROM pg_class WHERE oid = 'app.mood_counts'::regclass")
  T.eq(rows[1].relispopulated, true)
end)

local RENAME = {
  schema = { app = "shop", ["Mixed Case"] = "mixed" },
  table = { ['"Mixed Case"."Order Lines"'] = "order_lines", ["app.docs"] = "documents" },
  column = { ["app.customers.name"] = "full_name", ['"Mixed Case"."Order Lines".select'] = "chosen",
             ["app.docs.title"] = "heading" },
}

T.test("renamed schemas, tables and columns: the target has exactly the mapped names and behaves", function(ctx)
  load_fixture(ctx, ctx.source_url)
  local target_url = fresh_db(ctx.target_admin, "t_schema_test_rename")
  local plan = migrate(make_task(ctx.source_url, target_url, { rename = RENAME }))
  T.eq(plan.errors, {})

  -- Exactly the mapped relation names: computed here from the source, independently.
  local expected = {}
  local source_rels = P.query(ctx.source_url, [[
    SELECT n.nspname AS schema, c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p', 'v', 'm') AND n.nspname IN ('app', 'Mixed Case', 'order', 'ünïcødé')]])
  for _, r in ipairs(source_rels) do
    local s = RENAME.schema[r.schema] or r.schema
    local n = r.name
    if r.schema == "app" and n == "docs" then n = "documents" end
    if r.schema == "Mixed Case" and n == "Order Lines" then n = "order_lines" end
    expected[#expected + 1] = s .. "." .. n
  end
  table.sort(expected)
  local target_rels = P.query(target_url, [[
    SELECT n.nspname || '.' || c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p', 'v', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
      AND n.nspname <> 'public' ORDER BY 1]])
  local got = {}
  for i, r in ipairs(target_rels) do got[i] = r.name end
  T.eq(got, expected, "relations on the target")
  T.eq(#P.query(target_url, "SELECT 1 FROM pg_namespace WHERE nspname IN ('app', 'Mixed Case')"), 0)

  -- Columns, foreign keys and indexes use the mapped names.
  local columns = P.query(target_url, [[SELECT attname FROM pg_attribute
    WHERE attrelid = 'shop.customers'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum]])
  local names = {}
  for i, r in ipairs(columns) do names[i] = r.attname end
  T.eq(names[3], "full_name")
  local fk = P.query(target_url, [[SELECT conrelid::regclass::text AS t, confrelid::regclass::text AS r,
    pg_get_constraintdef(oid) AS def FROM pg_constraint WHERE conname = 'Order Lines_customer_fkey']])
  T.eq(fk[1].t, "mixed.order_lines")
  T.eq(fk[1].r, "shop.customers")
  T.match(fk[1].def, "REFERENCES shop%.customers%(id%)")
  local index = P.query(target_url, "SELECT pg_get_indexdef('shop.docs_lower_title'::regclass) AS def")
  T.match(index[1].def, "ON shop%.documents USING btree %(lower%(heading%)%)")
  local lines_index = P.query(target_url, [[SELECT pg_get_indexdef('mixed."Order Lines select"'::regclass) AS def]])
  T.match(lines_index[1].def, "%(chosen, \"quote\"\"d\"%)")
  local stats = P.query(target_url, "SELECT pg_get_statisticsobjdef(oid) AS def FROM pg_statistic_ext WHERE stxname = 'customers_stats'")
  T.match(stats[1].def, "^CREATE STATISTICS shop%.customers_stats .* ON full_name, mood FROM shop%.customers$")

  -- Data through the mapped names: defaults, identity, generated columns, checks, domains,
  -- triggers, deferred foreign keys, views.
  local c = assert(tide.connect(target_url))
  local row = assert(c:query([[INSERT INTO shop.customers (email, full_name, price)
    VALUES ('ann@example.com', 'Ann', 5) RETURNING id, mood, ticket, price_with_tax, updated_at]]))[1]
  T.ok(row.id >= 1000, "identity starts at 1000, got " .. tostring(row.id))
  T.eq(row.mood, "ok")
  T.eq(row.ticket, 100)
  T.eq(row.price_with_tax, "6.000")
  T.eq(row.updated_at, tide.null)
  local _, err = c:query("INSERT INTO shop.customers (email, price) VALUES ('bob@example.com', -1)")
  T.eq(err.sqlstate, "23514")
  _, err = c:query("INSERT INTO shop.customers (email) VALUES ('no-at-sign')")
  T.eq(err.sqlstate, "23514")
  _, err = c:query("INSERT INTO shop.customers (id, email) VALUES (1, 'x@y')")
  T.eq(err.sqlstate, "428C9")
  local updated = assert(c:query("UPDATE shop.customers SET full_name = 'Anna' RETURNING updated_at"))
  T.ne(updated[1].updated_at, tide.null, "the touch trigger did not fire")
  _, err = c:exec("BEGIN; INSERT INTO mixed.order_lines (customer, chosen) VALUES (424242, 'x'); COMMIT")
  T.eq(err and err.sqlstate, "23503") -- the failed COMMIT ended the transaction
  assert(c:exec("INSERT INTO mixed.order_lines (customer, chosen, qty) VALUES ($1, 'first', 2)", row.id))
  local view = assert(c:query([[SELECT "select", name FROM mixed."Line View"]]))
  T.eq(view[1], { select = "first", name = "Anna" })
  -- A function body with qualified names was rewritten; one with a bare column name was
  -- left alone, with a warning naming it.
  T.eq(assert(c:query("SELECT shop.customer_names() AS n"))[1].n, "Anna")
  c:close()
  local warnings = {}
  for _, w in ipairs(plan.warnings) do warnings[#warnings + 1] = w.message end
  warnings = table.concat(warnings, "\n")
  T.match(warnings, "the body of function app%.customer_names_bare mentions column customers%.name without its table or schema")
  T.nomatch(warnings, "function app%.customer_names ")
end)

T.test("existing = \"error\": the plan lists what exists and nothing is written", function(ctx)
  load_fixture(ctx, ctx.source_url)
  local target_url = fresh_db(ctx.target_admin, "t_schema_test_error")
  local t = assert(tide.connect(target_url))
  assert(t:exec("CREATE SCHEMA app; CREATE TABLE app.customers (x integer); CREATE TYPE app.mood AS ENUM ('x')"))
  t:close()
  local task = make_task(ctx.source_url, target_url)
  local plan, target = build(task)
  local conflicts = {}
  for _, c in ipairs(plan.conflicts) do conflicts[#conflicts + 1] = c.key end
  table.sort(conflicts)
  T.eq(conflicts, { "enum:app.mood", "table:app.customers" })
  T.match(plan.conflicts[1].message, "already exists on the target")
  local err = T.raises(function() schema.run(task, plan, target) end, "nothing was written")
  T.eq(err.exit, 5)
  T.match(err.message, "table app%.customers already exists")
  target:close()
  local rels = P.query(target_url, [[SELECT count(*) AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')]])
  T.eq(rels[1].n, 1, "only the table that was there before")
  T.eq(#P.query(target_url, "SELECT 1 FROM pg_namespace WHERE nspname = 'Mixed Case'"), 0)
end)

T.test("existing = \"skip\": identical objects are kept, a different one fails the plan", function(ctx)
  load_fixture(ctx, ctx.source_url)
  local target_url = fresh_db(ctx.target_admin, "t_schema_test_skip")
  migrate(make_task(ctx.source_url, target_url))
  local task = make_task(ctx.source_url, target_url, { schema = { existing = "skip" } })
  local plan, target = build(task)
  T.eq(plan.conflicts, {})
  T.eq(plan.errors, {})
  T.eq(#plan.pre_data, 0, "everything exists already")
  for _, step in ipairs(plan.post_data) do
    T.ok(step.kind == "grant" or step.kind == "revoke", "unexpected post-data step " .. step.key)
  end
  schema.run(task, plan, target)
  -- Now make one object differ.
  assert(target:exec("CREATE OR REPLACE VIEW app.cheap AS SELECT id, price FROM app.customers WHERE price < 20"))
  target:close()
  plan, target = build(task)
  T.eq(#plan.conflicts, 1)
  T.eq(plan.conflicts[1].key, "view:app.cheap")
  T.match(plan.conflicts[1].message, "different definition")
  T.match(plan.conflicts[1].message, "20")
  T.raises(function() schema.run(task, plan, target) end, "view app%.cheap already exists on the target with a different definition")
  target:close()
end)

T.test("existing = \"drop\": drops and recreates, only when asked, never with CASCADE", function(ctx)
  load_fixture(ctx, ctx.source_url)
  local target_url = fresh_db(ctx.target_admin, "t_schema_test_drop")
  local t = assert(tide.connect(target_url))
  assert(t:exec("CREATE SCHEMA app; CREATE TABLE app.scratch (other integer); CREATE VIEW app.keep_me AS SELECT other FROM app.scratch"))
  local task = make_task(ctx.source_url, target_url, { schema = { existing = "drop" } })
  local plan, target = build(task)
  T.eq(plan.conflicts, {})
  T.eq(plan.pre_data[1].kind, "drop")
  T.eq(plan.pre_data[1].sql, "DROP TABLE app.scratch")
  -- A view the plan does not know depends on the table: the drop fails and names it.
  local err = T.raises(function() schema.run(task, plan, target) end, "keep_me")
  T.match(err.message, "DROP TABLE app%.scratch")
  T.match(err.message, "rolled back")
  T.eq(#P.query(target_url, "SELECT 1 FROM pg_class WHERE relname = 'customers'"), 0, "nothing was created")
  -- Without that view the drop goes through, and the table is the source's.
  assert(t:exec("DROP VIEW app.keep_me"))
  t:close()
  schema.run(task, plan, target)
  target:close()
  local columns = P.query(target_url, [[SELECT string_agg(attname, ',' ORDER BY attnum) AS list FROM pg_attribute
    WHERE attrelid = 'app.scratch'::regclass AND attnum > 0 AND NOT attisdropped]])
  T.eq(columns[1].list, "k,v")
end)

T.test("a failing statement names the object, the statement and the server's message", function(ctx)
  load_fixture(ctx, ctx.source_url)
  local target_url = fresh_db(ctx.target_admin, "t_schema_test_failure")
  local t = assert(tide.connect(target_url))
  assert(t:exec([[CREATE SCHEMA "order"]]))
  local task = make_task(ctx.source_url, target_url)
  local plan, target = build(task)
  -- As a run keeps it (the objects gone but the tables'): the step names its object by key.
  plan_module.keep_for_run(plan, task)
  T.eq(#plan.objects, 0)
  -- Someone creates a table between the plan and its execution.
  assert(t:exec([[CREATE TABLE "order"."table" (x integer)]]))
  t:close()
  local err = T.raises(function() schema.run(task, plan, target) end)
  T.eq(err.exit, 1)
  T.match(err.message, [[creating table "order"%."table" failed]])
  T.match(err.message, [[statement: CREATE TABLE "order"%."table"]])
  T.match(err.message, "already exists")
  target:close()
  T.eq(#P.query(target_url, "SELECT 1 FROM pg_namespace WHERE nspname = 'app'"), 0, "pre-data was rolled back")
end)

T.test("pgtide's own schema on the source is never selected", function(ctx)
  local source_url = fresh_db(ctx.source_admin, "s_schema_test_state")
  local s = assert(tide.connect(source_url))
  assert(s:exec("CREATE SCHEMA pgtide; CREATE TABLE pgtide.steps (x integer); CREATE TABLE public.keep (x integer)"))
  s:close()
  local task = make_task(source_url, ctx.target_url)
  local plan, target = build(task)
  target:close()
  local reasons = {}
  for _, s2 in ipairs(plan.skipped) do reasons[s2.key] = s2.reason end
  T.match(reasons["schema:pgtide"], "pgtide's own schema")
  T.match(reasons["table:pgtide.steps"], "pgtide's own schema")
  for _, step in ipairs(plan.pre_data) do T.nomatch(step.sql, "pgtide") end
  T.eq(#plan.tables, 1)
  T.eq(plan.tables[1].key, "public.keep")
end)
