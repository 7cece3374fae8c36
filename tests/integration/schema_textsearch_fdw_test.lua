-- Schema migration of text search parsers, templates, dictionaries and configurations,
-- foreign-data wrappers, servers, user mappings, foreign tables and event triggers, on real
-- servers. Fixture: tests/fixtures/schema_textsearch_fdw.sql.
local T = require "testlib"
local P = require "pg"
local D = require "schemadump"
local sh_ok, fresh_db, dump_differences = D.sh_ok, P.fresh_db, D.dump_differences
local tide = require "tide"
local schema = require "tide.schema"

local PGTIDE = os.getenv("PGTIDE") or "build/pgtide"
local PG_BIN = "/usr/lib/postgresql/15/bin/"
local FIXTURE = "tests/fixtures/schema_textsearch_fdw.sql"

-- The secret option values of the fixture: never shown by pgtide.
local SECRETS = { "pg-secret-Xq7!", "it's-secret-2", "it''s-secret-2", "public-secret-9", "server-secret-S3" }

local function ensure_role(url, role)
  local c = assert(tide.connect(url))
  assert(c:exec(string.format([[DO $$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = %s) THEN CREATE ROLE %s; END IF;
  END $$]], c:quote_literal(role), c:quote_ident(role))))
  c:close()
end

local loaded = false
local function load_fixture(ctx)
  for _, url in ipairs({ ctx.source_admin, ctx.target_admin }) do ensure_role(url, "tide fdw user") end
  if not loaded then
    sh_ok(PG_BIN .. "psql -X -q -v ON_ERROR_STOP=1 -d '" .. ctx.source_url .. "' -f " .. FIXTURE)
    loaded = true
  end
end

local make_task = D.task_maker("schema-ts-fdw-test")

local build = D.build

local function migrate(task)
  local plan, target = build(task)
  schema.run(task, plan, target)
  target:close()
  return plan
end

local function write_playbook(ctx, name, target_url, body)
  local path = ctx.tmpdir .. "/" .. name
  local f = assert(io.open(path, "w"))
  f:write('local tide = require "tide"\nreturn tide.task {\n  name = "plan-ts-fdw",\n  source = ',
    string.format("%q", ctx.source_url), ",\n  target = ", string.format("%q", target_url),
    ',\n  migrate = { "schema" },\n', body or "", "}\n")
  f:close()
  return path
end

local function no_secret(text, what)
  for _, s in ipairs(SECRETS) do
    T.ok(not text:find(s, 1, true), what .. " shows the secret " .. s)
  end
end

local function messages(list)
  local out = {}
  for _, item in ipairs(list) do out[#out + 1] = item.message end
  return table.concat(out, "\n")
end

T.test("text search, foreign data and event triggers migrate: pg_dump of source and target match object by object", function(ctx)
  load_fixture(ctx)
  local plan = migrate(make_task(ctx.source_url, ctx.target_url, { schema = { owners = "source" } }))
  T.eq(plan.errors, {}, "plan errors")
  T.eq(messages(plan.warnings), "", "plan warnings")
  local seen = {}
  for _, obj in ipairs(plan.objects) do seen[obj.kind] = (seen[obj.kind] or 0) + 1 end
  T.eq({ seen.text_search_parser, seen.text_search_template, seen.text_search_dictionary,
         seen.text_search_configuration, seen.foreign_data_wrapper, seen.server, seen.user_mapping,
         seen.foreign_table, seen.event_trigger }, { 2, 2, 7, 3, 3, 4, 4, 2, 4 })
  -- The wrapper postgres_fdw comes with its extension; nothing is reported as not migrated.
  T.ok(plan.by_key["foreign_data_wrapper:postgres_fdw"] == nil, "postgres_fdw is created by its extension")
  for _, w in ipairs(plan.warnings) do T.nomatch(w.message, "does not migrate") end
  -- Foreign tables are created, never copied.
  local tables = {}
  for _, t in ipairs(plan.tables) do tables[#tables + 1] = t.key end
  table.sort(tables)
  T.eq(tables, { "app.ddl_log", "app.docs" })

  local differences, source_count, target_count = dump_differences(ctx.source_url, ctx.target_url)
  T.eq(differences, {}, "pg_dump differences")
  T.ok(source_count > 60, "pg_dump of the source lists only " .. source_count .. " objects")
  T.eq(source_count, target_count)

  -- The event triggers did not fire while pgtide worked (the source's log has the
  -- fixture's own statements), and have the source's states.
  T.ok(P.query(ctx.source_url, "SELECT count(*) AS n FROM app.ddl_log")[1].n > 0, "the source logged its DDL")
  T.eq(P.query(ctx.target_url, "SELECT count(*) AS n FROM app.ddl_log")[1].n, 0, "an event trigger fired during the migration")
  local states = "SELECT string_agg(evtname || '=' || evtenabled::text, ', ' ORDER BY evtname) AS s FROM pg_event_trigger"
  T.eq(P.query(ctx.target_url, states)[1].s, P.query(ctx.source_url, states)[1].s)
  -- The user mappings carry the real passwords.
  local options = [[SELECT string_agg(coalesce(usename, '-') || ' ' || srvname || ' ' || array_to_string(umoptions, ','), '; '
    ORDER BY srvname, usename) AS s FROM pg_user_mappings]]
  local source_options = P.query(ctx.source_url, options)[1].s
  T.match(source_options, "password=pg%-secret%-Xq7!", "the fixture's password")
  T.eq(P.query(ctx.target_url, options)[1].s, source_options)

  -- Text search behaves the same: the configurations, their parsers' headlines, the
  -- generated column and the index.
  local text = "Running foxes and jumping dogs, 12345 of them: mail me at a@b.org, see http://x.org/y"
  local checks = {
    "SELECT to_tsvector('app.docs_cfg', $1)::text AS v",
    [[SELECT to_tsvector('"Text Search"."Odd Config"', $1)::text AS v]],
    [[SELECT to_tsvector('"Text Search".unmapped', $1)::text AS v]],
    "SELECT ts_headline('app.docs_cfg', $1, to_tsquery('app.docs_cfg', 'fox')) AS v",
  }
  for _, sql in ipairs(checks) do
    T.eq(P.query(ctx.target_url, sql, text)[1].v, P.query(ctx.source_url, sql, text)[1].v, sql)
  end
  local c = assert(tide.connect(ctx.target_url))
  assert(c:exec("INSERT INTO app.docs (id, title, body) VALUES (1, 'Running foxes', 'and jumping dogs, 12345 of them')"))
  local target_search = assert(c:query("SELECT search::text AS v FROM app.docs WHERE id = 1"))[1].v
  local plan_text = assert(c:query([[EXPLAIN (COSTS OFF) SELECT id FROM app.docs
    WHERE to_tsvector('"Text Search"."Odd Config"'::regconfig, title) @@ 'fox'::tsquery]]))
  c:close()
  T.eq(target_search, P.query(ctx.source_url, "SELECT search::text AS v FROM app.docs WHERE id = 1")[1].v)
  T.ok(#plan_text > 0)

  -- Migrated again with existing = "skip": everything is there with the same definition.
  local again = build(make_task(ctx.source_url, ctx.target_url, { schema = { existing = "skip", owners = "source" } }))
  T.eq(again.conflicts, {})
  T.eq(again.errors, {})
  T.eq(#again.pre_data, 0, "everything exists already")
end)

T.test("pgtide plan, its JSON and a failing statement never show a password", function(ctx)
  load_fixture(ctx)
  local target_url = fresh_db(ctx.target_admin, "t_schema_ts_fdw_plan")
  local file = write_playbook(ctx, "ts_fdw_plan.lua", target_url)
  local code, out = T.sh(PGTIDE .. " plan " .. file .. " 2>&1")
  T.eq(code, 0, out)
  no_secret(out, "pgtide plan")
  T.match(out, "CREATE USER MAPPING FOR postgres SERVER remote_pg OPTIONS %(\n    \"user\" 'remote_user',\n    password '%*%*%*%*%*%*%*%*'\n%)")
  T.match(out, "passwd '%*%*%*%*%*%*%*%*'")
  T.match(out, "CREATE SERVER \"Odd Server\" TYPE 'odd type' VERSION '1%.0''s' FOREIGN DATA WRAPPER dummy OPTIONS %(\n    password '%*%*%*%*%*%*%*%*'")
  code, out = T.sh(PGTIDE .. " plan --json " .. file .. " 2>&1")
  T.eq(code, 0, out)
  no_secret(out, "pgtide plan --json")
  T.match(out, "password '%*%*%*%*%*%*%*%*'")
  -- `pgtide run`: its plan's steps are packed and made anew after the prechecks
  -- (tide.plan.keep_for_run); the user mappings still get the real passwords.
  code, out = T.sh(PGTIDE .. " run " .. file .. " 2>&1")
  T.eq(code, 0, out)
  no_secret(out, "pgtide run")
  local options = [[SELECT string_agg(coalesce(usename, '-') || ' ' || srvname || ' ' || array_to_string(umoptions, ','), '; '
    ORDER BY srvname, usename) AS s FROM pg_user_mappings]]
  T.match(P.query(ctx.source_url, options)[1].s, "password=pg%-secret%-Xq7!", "the fixture's password")
  T.eq(P.query(target_url, options)[1].s, P.query(ctx.source_url, options)[1].s)

  -- A user mapping whose statement fails: its role is dropped on the target after planning.
  ensure_role(ctx.source_admin, "tide gone user")
  ensure_role(ctx.target_admin, "tide gone user")
  local source_url = fresh_db(ctx.source_admin, "t_schema_ts_fdw_gone")
  local s = assert(tide.connect(source_url))
  assert(s:exec([[CREATE FOREIGN DATA WRAPPER w;
    CREATE SERVER srv FOREIGN DATA WRAPPER w;
    CREATE USER MAPPING FOR "tide gone user" SERVER srv OPTIONS (password 'gone-secret-1', "user" 'u')]]))
  s:close()
  target_url = fresh_db(ctx.target_admin, "t_schema_ts_fdw_gone")
  local task = make_task(source_url, target_url)
  local plan, target = build(task)
  T.eq(plan.errors, {})
  T.eq(#plan.pre_data, 3)
  local t = assert(tide.connect(ctx.target_admin))
  assert(t:exec([[DROP ROLE "tide gone user"]]))
  t:close()
  local err = T.raises(function() schema.run(task, plan, target) end, "creating user mapping")
  target:close()
  T.match(err.message, "role \"tide gone user\" does not exist")
  T.match(err.message, "password '%*%*%*%*%*%*%*%*'")
  T.ok(not err.message:find("gone-secret-1", 1, true), "the error shows the password: " .. err.message)
  T.eq(#P.query(target_url, "SELECT 1 FROM pg_foreign_server"), 0, "pre-data was rolled back")
  -- Planned again: the mapping of a role missing on the target is left out with a warning.
  plan, target = build(task)
  target:close()
  T.eq(plan.errors, {})
  T.match(messages(plan.warnings), "user mapping for tide gone user on server srv is left out: the role tide gone user does not exist on the target")
  T.eq(#plan.pre_data, 2)
  local admin = assert(tide.connect(ctx.source_admin))
  assert(admin:exec("DROP DATABASE t_schema_ts_fdw_gone WITH (FORCE)"))
  assert(admin:exec([[DROP ROLE "tide gone user"]]))
  admin:close()
end)

T.test("selection: objects of no schema follow what needs them, user mappings their server, event triggers their function", function(ctx)
  load_fixture(ctx)
  local target_url = fresh_db(ctx.target_admin, "t_schema_ts_fdw_select")
  local plan, target = build(make_task(ctx.source_url, target_url, {
    select = { include = { "app.*", "Text Search.*", "public.postgres_fdw", "public.dict_int" },
               exclude = { "Text Search.forbid_drop" } } }))
  target:close()
  T.eq(plan.errors, {})
  local reasons = {}
  for _, s in ipairs(plan.skipped) do reasons[s.key] = s.reason end
  for _, key in ipairs({ "server:remote_pg", 'server:"Odd Server"', "foreign_data_wrapper:dummy",
    "user_mapping:postgres@remote_pg", 'user_mapping:"tide fdw user"@remote_pg', 'user_mapping:PUBLIC@"Odd Server"',
    "event_trigger:log_ddl", 'event_trigger:"Log Indexes"', "event_trigger:rewrites",
    "text_search_configuration:app.docs_cfg", "text_search_parser:app.\"Wrapped Parser\"" }) do
    T.ok(plan.by_key[key], key .. " is not selected (" .. tostring(reasons[key]) .. ")")
  end
  T.match(reasons["server:own_pg"], "no selected object needs it")
  T.match(reasons['foreign_data_wrapper:"Own PG Wrapper"'], "no selected object needs it")
  T.match(reasons["user_mapping:PUBLIC@server_with_a_name_that_is_exactly_sixty_three_bytes_long_abcde"],
    "its server server_with_a_name_that_is_exactly_sixty_three_bytes_long_abcde is left out")
  T.match(reasons["event_trigger:event_trigger_with_a_name_that_is_exactly_sixty_three_bytes_lon"],
    "its function \"Text Search\"%.forbid_drop%(%) is left out")

  -- select.kinds leaves a kind out; user mappings follow their servers out.
  plan, target = build(make_task(ctx.source_url, target_url, {
    select = { kinds = { exclude = { "server", "event_trigger", "foreign_table" } } } }))
  target:close()
  T.eq(plan.errors, {})
  for _, obj in ipairs(plan.objects) do
    T.ok(obj.kind ~= "server" and obj.kind ~= "user_mapping" and obj.kind ~= "event_trigger", obj.key .. " is selected")
  end
  T.ok(plan.by_key["foreign_data_wrapper:dummy"], "the wrappers are kept")
end)

T.test("renamed schemas and configurations: definitions name them by their new names", function(ctx)
  load_fixture(ctx)
  local target_url = fresh_db(ctx.target_admin, "t_schema_ts_fdw_rename")
  local plan = migrate(make_task(ctx.source_url, target_url, { rename = {
    schema = { app = "shop" },
    text_search_configuration = { ['"Text Search"."Odd Config"'] = "odd_config" },
    text_search_dictionary = { ["app.synonyms"] = "syn" },
  } }))
  T.eq(plan.errors, {})
  local rows = P.query(target_url, [[SELECT pg_get_indexdef('shop.docs_title_odd'::regclass) AS i,
      pg_get_expr(d.adbin, d.adrelid) AS g
    FROM pg_attrdef d WHERE d.adrelid = 'shop.docs'::regclass]])
  T.match(rows[1].i, "to_tsvector%('\"Text Search\"%.odd_config'::regconfig, title%)")
  T.match(rows[1].g, "to_tsvector%('shop%.docs_cfg'::regconfig")
  T.match(P.query(target_url, "SELECT pg_get_viewdef('shop.doc_words'::regclass) AS v")[1].v,
    "to_tsvector%('\"Text Search\"%.odd_config'::regconfig, docs%.title%)")
  local text = "Running foxes and jumping dogs"
  T.eq(P.query(target_url, "SELECT to_tsvector('shop.docs_cfg', $1)::text AS v", text)[1].v,
    P.query(ctx.source_url, "SELECT to_tsvector('app.docs_cfg', $1)::text AS v", text)[1].v)
  local map = P.query(target_url, [[SELECT string_agg(DISTINCT m.mapdict::regdictionary::text, ', ') AS d
    FROM pg_ts_config_map m WHERE m.mapcfg = 'shop.docs_cfg'::regconfig]])
  T.match(map[1].d, "shop%.syn")
  -- The event trigger calls the function in its new schema, which logs into the new table.
  local c = assert(tide.connect(target_url))
  assert(c:exec("CREATE TABLE shop.after_migration (x integer)"))
  local logged = assert(c:query("SELECT tag FROM shop.ddl_log ORDER BY id"))
  c:close()
  T.eq(logged[1] and logged[1].tag, "CREATE TABLE")
end)
