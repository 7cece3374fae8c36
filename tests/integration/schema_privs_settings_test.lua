-- Default privileges (ALTER DEFAULT PRIVILEGES), database and role settings of the migrated
-- database (schema.database_settings), column storage, compression and statistics targets,
-- table, TOAST and index reloptions, on real servers (fixture
-- tests/fixtures/schema_privs_settings.sql): pg_dump of source and target equal object by
-- object; pg_db_role_setting of the database equal; renamed schemas carry the default
-- privileges of their schema; roles missing on the target are warnings naming them; the
-- playbook key is checked for typos. The roles the test makes are dropped at the end.
local T = require "testlib"
local P = require "pg"
local D = require "schemadump"
local sh_ok, fresh_db, dump_differences = D.sh_ok, P.fresh_db, D.dump_differences
local tide = require "tide"

local PG_BIN = "/usr/lib/postgresql/15/bin/"
local FIXTURE = "tests/fixtures/schema_privs_settings.sql"
local ROLES = { "pgtide_ps_owner", "pgtide_ps_reader", "pgtide_ps_writer" }
local GHOST = "pgtide_ps_ghost"   -- on the source only

local function ensure_roles(ctx)
  for _, url in ipairs({ ctx.source_admin, ctx.target_admin }) do
    for _, role in ipairs(ROLES) do
      P.exec(url, string.format([[DO $$ BEGIN
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '%s') THEN CREATE ROLE %s; END IF;
      END $$]], role, role))
    end
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

local make_task = D.task_maker("schema-privs-settings-test")

local build = D.build

local migrate = D.migrate

-- The settings of the connected database: "role|setting" lines, sorted (role 0: the
-- database's own).
local SETTINGS = [[
SELECT coalesce(pg_get_userbyid(NULLIF(s.setrole, 0)), '-') || '|' || array_to_string(
         ARRAY(SELECT x FROM unnest(s.setconfig) x ORDER BY x), ',') AS line
FROM pg_db_role_setting s
WHERE s.setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
ORDER BY 1]]

local function settings(url)
  local list = {}
  for _, r in ipairs(P.query(url, SETTINGS)) do list[#list + 1] = r.line end
  return list
end

local DEFAULT_ACLS = [[
SELECT pg_get_userbyid(d.defaclrole) || '|' || coalesce(n.nspname, '-') || '|' || d.defaclobjtype::text
       || '|' || d.defaclacl::text AS line
FROM pg_default_acl d LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace
ORDER BY 1]]

local function default_acls(url)
  local list = {}
  for _, r in ipairs(P.query(url, DEFAULT_ACLS)) do list[#list + 1] = r.line end
  return list
end

local function warnings_text(plan)
  local list = {}
  for _, w in ipairs(plan.warnings) do list[#list + 1] = w.message end
  return table.concat(list, "\n")
end

T.test("default privileges, database settings, storage and reloptions: pg_dump and settings of source and target match", function(ctx)
  load_fixture(ctx, ctx.source_url)
  local task = make_task(ctx.source_url, ctx.target_url,
    { schema = { owners = "source", database_settings = true } })
  local plan = migrate(task)
  T.nomatch(warnings_text(plan), "does not exist on the target")
  local text = require("tide.plan.report").text(plan, task)
  T.match(text, "default privileges %(8%):")
  T.match(text, "database settings %(3%):")
  T.match(text, 'ALTER DEFAULT PRIVILEGES FOR ROLE pgtide_ps_owner IN SCHEMA "Other App"\n%s*GRANT SELECT, USAGE ON SEQUENCES TO pgtide_ps_reader')
  T.match(text, "ALTER INDEX app%.docs_lower ALTER COLUMN 1 SET STATISTICS 300")

  local differences, source_count, target_count = dump_differences(ctx.source_url, ctx.target_url)
  T.eq(differences, {}, "pg_dump differences")
  T.ok(source_count > 15, "pg_dump of the source lists only " .. source_count .. " objects")
  T.eq(source_count, target_count)
  -- The pieces pg_dump shows in passing, named, so a failure says which one.
  T.eq(default_acls(ctx.target_url), default_acls(ctx.source_url), "pg_default_acl")
  local source_settings = settings(ctx.source_url)
  T.eq(#source_settings, 3, "the fixture's settings")
  T.eq(settings(ctx.target_url), source_settings, "pg_db_role_setting")

  -- Run again with existing = "skip": the default privileges and settings are found as they are.
  local again = build(make_task(ctx.source_url, ctx.target_url,
    { schema = { owners = "source", database_settings = true, existing = "skip" } }))
  T.eq(again.conflicts, {}, "conflicts on the second run")
  local kept = 0
  for _, e in ipairs(again.existing) do
    if e.kind == "default_privileges" or e.kind == "database_setting" then
      kept = kept + 1
      T.eq(e.action, "kept (same definition)", e.key)
    end
  end
  T.eq(kept, 8 + 3, "default privileges and settings found on the target")
end)

T.test("renamed schemas carry their default privileges; database settings stay off by default", function(ctx)
  load_fixture(ctx, ctx.source_url)
  local target_url = fresh_db(ctx.target_admin, "t_schema_privs_rename")
  migrate(make_task(ctx.source_url, target_url,
    { rename = { schema = { app = "app2", ["Other App"] = "other" } } }))
  local expected = {}
  for _, line in ipairs(default_acls(ctx.source_url)) do
    line = line:gsub("^([^|]*)|app|", "%1|app2|"):gsub("^([^|]*)|Other App|", "%1|other|")
    expected[#expected + 1] = line
  end
  table.sort(expected)
  T.eq(default_acls(target_url), expected, "pg_default_acl with renamed schemas")
  T.eq(settings(target_url), {}, "no database settings without schema.database_settings")
  -- Storage, compression and statistics targets in the renamed schema.
  local q = [[SELECT a.attname || ':' || a.attstorage::text || ':' || a.attstattarget || ':' || a.attcompression::text AS line
    FROM pg_attribute a WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum]]
  local function lines(url, rel)
    local out = {}
    for _, r in ipairs(P.query(url, string.format(q, "'" .. rel .. "'"))) do out[#out + 1] = r.line end
    return out
  end
  T.eq(lines(target_url, "app2.docs"), lines(ctx.source_url, "app.docs"))
  T.eq(lines(target_url, "app2.docs_lower"), lines(ctx.source_url, "app.docs_lower"))
  P.exec(ctx.target_admin, "DROP DATABASE t_schema_privs_rename WITH (FORCE)")
end)

T.test("roles missing on the target: default privileges and settings are warnings naming them", function(ctx)
  ensure_roles(ctx)
  P.exec(ctx.source_admin, string.format([[DO $$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '%s') THEN CREATE ROLE %s; END IF;
  END $$]], GHOST, GHOST))
  local source_url = fresh_db(ctx.source_admin, "s_schema_privs_ghost")
  local target_url = fresh_db(ctx.target_admin, "t_schema_privs_ghost")
  P.exec(source_url, [[
    CREATE SCHEMA app;
    CREATE TABLE app.t (id int);
    ALTER DEFAULT PRIVILEGES FOR ROLE pgtide_ps_ghost GRANT SELECT ON TABLES TO pgtide_ps_reader;
    ALTER DEFAULT PRIVILEGES FOR ROLE pgtide_ps_owner IN SCHEMA app GRANT SELECT ON TABLES TO pgtide_ps_ghost, pgtide_ps_reader;
    ALTER ROLE pgtide_ps_ghost IN DATABASE s_schema_privs_ghost SET work_mem = '9MB';
    ALTER DATABASE s_schema_privs_ghost SET work_mem = '7MB']])
  local plan = migrate(make_task(source_url, target_url, { schema = { database_settings = true } }))
  local warnings = warnings_text(plan)
  T.match(warnings, "default privileges for role pgtide_ps_ghost[^\n]*role does not exist on the target")
  T.match(warnings, "IN SCHEMA app ON TABLES: the privilege SELECT for role pgtide_ps_ghost is left out: the role does not exist on the target")
  T.match(warnings, "settings of role pgtide_ps_ghost[^\n]*does not exist on the target")
  T.eq(default_acls(target_url), { "pgtide_ps_owner|app|r|{pgtide_ps_reader=r/pgtide_ps_owner}" })
  T.eq(settings(target_url), { "-|work_mem=7MB" })
  P.exec(ctx.source_admin, "DROP DATABASE s_schema_privs_ghost WITH (FORCE)")
  P.exec(ctx.target_admin, "DROP DATABASE t_schema_privs_ghost WITH (FORCE)")
  P.exec(ctx.source_admin, "DROP ROLE " .. GHOST)
end)

T.test("schema.database_settings is checked like the other playbook keys", function()
  local ok, err = pcall(tide.task, { name = "x", source = "dbname=a", target = "dbname=b",
    schema = { database_setings = true } })
  T.ok(not ok, "a typo is an error")
  T.match(tostring(err), "unknown key 'database_setings' in schema %(did you mean 'database_settings'%?%)")
  T.match(tostring(err), "schema_privs_settings_test%.lua:%d+: ")
  ok, err = pcall(tide.task, { name = "x", source = "dbname=a", target = "dbname=b",
    schema = { database_settings = "yes" } })
  T.ok(not ok, "a string is an error")
  T.match(tostring(err), "schema%.database_settings must be a boolean")
end)

T.test("the test's roles are dropped", function(ctx)
  -- (One role at a time: DROP OWNED BY of several roles fails on a default ACL of one that
  -- grants to another.)
  for _, url in ipairs({ ctx.source_url, ctx.target_url, ctx.source_admin, ctx.target_admin }) do
    for _, role in ipairs(ROLES) do P.exec(url, "DROP OWNED BY " .. role) end
  end
  for _, admin in ipairs({ ctx.source_admin, ctx.target_admin }) do
    P.exec(admin, "DROP ROLE " .. table.concat(ROLES, ", "))
  end
end)
