-- The prechecks target_superuser_objects, target_object_privileges and
-- target_setting_privileges (tide.precheck.superuser) on real servers: a source with each kind
-- only a superuser (or an owner, a member, a role granted SET) may create, a target role that
-- has what pgtide otherwise asks for (CREATE on the database) and no more. `pgtide check`
-- names every object with its fix, `pgtide run` stops before writing anything, a superuser
-- target passes, and the fixes a GRANT can give make their findings go. Roles are
-- cluster-wide: their names start with this file's name, and the last case drops them.
local T = require "testlib"
local P = require "pg"
local json = require "tide.json"

local PGTIDE = os.getenv("PGTIDE") or "build/pgtide"
local TGT, OWN = "precheck_superuser_test_tgt", "precheck_superuser_test Owner"
local QOWN = '"' .. OWN .. '"'

local function as_role(url, role) return (url:gsub("//[^@/]+@", "//" .. role .. "@")) end

local DROP_ROLES = string.format([[
DO $$
DECLARE r text;
BEGIN
  FOREACH r IN ARRAY ARRAY[%s, %s] LOOP
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = r) THEN
      EXECUTE format('DROP OWNED BY %%I', r);
      EXECUTE format('DROP ROLE %%I', r);
    END IF;
  END LOOP;
END $$]], "'" .. TGT .. "'", "'" .. OWN .. "'")

-- Each kind once, and next to it what needs nothing more (an operator, a conversion, a
-- dictionary, a trusted language's function, a cast of a type the task creates, ...).
local SCHEMA = [[
SET client_min_messages = warning;
CREATE SCHEMA su;
-- a base type (PostgreSQL's regression test: LANGUAGE internal I/O functions)
CREATE TYPE su.alias8;
CREATE FUNCTION su.alias8_in(cstring) RETURNS su.alias8 STRICT IMMUTABLE LANGUAGE internal AS 'int8in';
CREATE FUNCTION su.alias8_out(su.alias8) RETURNS cstring STRICT IMMUTABLE LANGUAGE internal AS 'int8out';
CREATE TYPE su.alias8 (INPUT = su.alias8_in, OUTPUT = su.alias8_out, LIKE = int8);
-- an operator (fine) and an operator class with its family (superuser)
CREATE TYPE su.mood AS ENUM ('sad', 'happy');
CREATE FUNCTION su.mood_eq(su.mood, su.mood) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT $1::text = $2::text';
CREATE OPERATOR su.= (FUNCTION = su.mood_eq, LEFTARG = su.mood, RIGHTARG = su.mood);
CREATE OPERATOR CLASS su.mood_ops FOR TYPE su.mood USING hash AS OPERATOR 1 su.=, FUNCTION 1 hashenum(anyenum);
-- casts: WITHOUT FUNCTION (superuser), WITH FUNCTION between the server's types (their owner),
-- WITH INOUT from a type the task creates (fine)
CREATE CAST (su.alias8 AS bigint) WITHOUT FUNCTION;
CREATE FUNCTION su.date_number(date) RETURNS integer LANGUAGE sql IMMUTABLE AS 'SELECT $1 - DATE ''2000-01-01''';
CREATE CAST (date AS integer) WITH FUNCTION su.date_number(date);
CREATE CAST (su.mood AS integer) WITH INOUT;
-- a transform for the server's type with the server's functions (their owner), used by a function
CREATE TRANSFORM FOR integer LANGUAGE sql (FROM SQL WITH FUNCTION prsd_lextype(internal), TO SQL WITH FUNCTION int4recv(internal));
CREATE FUNCTION su.same(i integer) RETURNS integer LANGUAGE sql TRANSFORM FOR TYPE integer AS 'SELECT i';
-- a conversion (fine)
CREATE CONVERSION su.latin1_conv FOR 'LATIN1' TO 'UTF8' FROM iso8859_1_to_utf8;
-- text search: parser and template (superuser), dictionary and configuration (fine)
CREATE TEXT SEARCH PARSER su.parser (START = prsd_start, GETTOKEN = prsd_nexttoken, END = prsd_end, LEXTYPES = prsd_lextype);
CREATE TEXT SEARCH TEMPLATE su.template (INIT = dsimple_init, LEXIZE = dsimple_lexize);
CREATE TEXT SEARCH DICTIONARY su.dict (TEMPLATE = su.template);
CREATE TEXT SEARCH CONFIGURATION su.cfg (PARSER = su.parser);
-- a foreign-data wrapper (superuser), its server and a foreign table (fine)
CREATE FOREIGN DATA WRAPPER su_wrapper;
CREATE SERVER su_server FOREIGN DATA WRAPPER su_wrapper;
CREATE FOREIGN TABLE su.ft (a integer) SERVER su_server;
-- languages, trusted or not (superuser), and a function in each: only the untrusted one's
-- needs a superuser
CREATE LANGUAGE su_untrusted HANDLER plpgsql_call_handler;
CREATE TRUSTED LANGUAGE "SU Trusted PL" HANDLER plpgsql_call_handler;
CREATE FUNCTION su.in_untrusted() RETURNS integer LANGUAGE su_untrusted AS 'BEGIN RETURN 1; END';
CREATE FUNCTION su.in_trusted() RETURNS integer LANGUAGE "SU Trusted PL" AS 'BEGIN RETURN 1; END';
-- an access method and a table on it
CREATE ACCESS METHOD su_heap TYPE TABLE HANDLER heap_tableam_handler;
CREATE TABLE su.on_am (id integer) USING su_heap;
-- an event trigger (disabled: it must not fire on this test's statements)
CREATE FUNCTION su.on_ddl() RETURNS event_trigger LANGUAGE plpgsql AS 'BEGIN END';
CREATE EVENT TRIGGER su_watch ON ddl_command_end EXECUTE FUNCTION su.on_ddl();
ALTER EVENT TRIGGER su_watch DISABLE;
-- SET clauses: a superuser-only parameter, a custom one, and a user one (fine)
CREATE FUNCTION su.logged() RETURNS integer LANGUAGE sql
  SET log_min_duration_statement = '1s' SET work_mem = '1MB' AS 'SELECT 1';
CREATE FUNCTION su.custom() RETURNS integer LANGUAGE sql SET su.custom_setting = 'x' AS 'SELECT 1';
CREATE FUNCTION su.plain() RETURNS integer LANGUAGE sql SET work_mem = '1MB' AS 'SELECT 1';
-- default privileges of another role
ALTER DEFAULT PRIVILEGES FOR ROLE %s IN SCHEMA su GRANT SELECT ON TABLES TO PUBLIC;
]]

local function playbook(ctx, name, target)
  local path = ctx.tmpdir .. "/" .. name .. ".lua"
  local f = assert(io.open(path, "w"))
  f:write(string.format([[
local tide = require "tide"
return tide.task {
  name = %q, source = %q, target = %q,
  migrate = { "schema" },
  schema = { database_settings = true },
}
]], name, ctx.source_url, target))
  f:close()
  return path
end

-- `pgtide check --json FILE` → exit code, report, the output.
local function check(file)
  local code, out = T.sh(PGTIDE .. " check --json " .. file .. " 2>/dev/null")
  local ok, data = pcall(json.decode, out)
  T.ok(ok, "pgtide check printed no JSON: " .. out)
  return code, data, out
end

-- The findings of check `id` by object: { [object] = finding }, and the sorted objects.
local function findings(data, id)
  for _, c in ipairs(data.checks) do
    if c.id == id then
      local by_object, list = {}, {}
      for _, f in ipairs(c.findings) do
        by_object[f.object] = f
        list[#list + 1] = f.object
      end
      table.sort(list)
      return by_object, list, c
    end
  end
  error("no check " .. id)
end

local function sorted(list)
  table.sort(list)
  return list
end

T.test("set-up: the schema on the source, a target role with CREATE on the database and no more", function(ctx)
  for _, admin in ipairs({ ctx.source_admin, ctx.target_admin }) do
    P.exec(admin, DROP_ROLES)
    P.exec(admin, string.format("CREATE ROLE %s LOGIN; CREATE ROLE %s", TGT, QOWN))
  end
  P.exec(ctx.source_url, SCHEMA:format(QOWN))
  P.exec(ctx.source_url, string.format([[
ALTER DATABASE %s SET log_min_duration_statement = '2s';
ALTER DATABASE %s SET work_mem = '8MB';
ALTER ROLE %s IN DATABASE %s SET work_mem = '4MB']], ctx.dbname, ctx.dbname, QOWN, ctx.dbname))
  P.exec(ctx.target_url, string.format("GRANT CREATE ON DATABASE %s TO %s", ctx.dbname, TGT))
end)

local SUPERUSER_OBJECTS = {
  ["type su.alias8"] = "CREATE TYPE for a base type",
  ["function su.alias8_in(cstring)"] = "LANGUAGE internal, an untrusted language",
  ["function su.alias8_out(su.alias8)"] = "LANGUAGE internal, an untrusted language",
  ["operator family su.mood_ops USING hash"] = "CREATE OPERATOR FAMILY",
  ["operator class su.mood_ops USING hash"] = "CREATE OPERATOR CLASS",
  ["cast (su.alias8 AS bigint)"] = "CREATE CAST %.%.%. WITHOUT FUNCTION",
  ["text search parser su.parser"] = "CREATE TEXT SEARCH PARSER",
  ["text search template su.template"] = "CREATE TEXT SEARCH TEMPLATE",
  ["foreign-data wrapper su_wrapper"] = "CREATE FOREIGN DATA WRAPPER",
  ["language su_untrusted"] = "CREATE LANGUAGE",
  ['language "SU Trusted PL"'] = "CREATE LANGUAGE %(for a trusted language too%)",
  ["function su.in_untrusted()"] = "LANGUAGE su_untrusted, an untrusted language",
  ["access method su_heap"] = "CREATE ACCESS METHOD",
  ["event trigger su_watch"] = "CREATE EVENT TRIGGER",
}

T.test("pgtide check, a target role that is not a superuser: every such object, with its fix", function(ctx)
  local file = playbook(ctx, "superuser-check", as_role(ctx.target_url, TGT))
  local code, data, out = check(file)
  T.eq(code, 5, out)

  local by_object, list = findings(data, "target_superuser_objects")
  local want = {}
  for object in pairs(SUPERUSER_OBJECTS) do want[#want + 1] = object end
  T.eq(list, sorted(want), "target_superuser_objects")
  for object, what in pairs(SUPERUSER_OBJECTS) do
    local f = by_object[object]
    T.match(f.message, what, object)
    T.match(f.message, "only a superuser may", object)
    T.match(f.message, "the target role " .. TGT .. " is not one", object)
    T.match(f.fix, 'create it on the target as a superuser first %(its statement is in pgtide plan%) and set schema%.existing = "skip", or run the schema phase as a superuser', object)
  end

  by_object, list = findings(data, "target_object_privileges")
  T.eq(list, { "cast (date AS integer)", "default privileges FOR ROLE " .. QOWN .. " IN SCHEMA su ON TABLES",
               "transform FOR integer LANGUAGE sql" }, "target_object_privileges")
  local f = by_object["cast (date AS integer)"]
  T.match(f.message, "only the owner of its source or target type may create this cast, and the target role " .. TGT ..
    " owns neither: type date is owned by postgres; type integer is owned by postgres")
  T.match(f.fix, "run the schema phase as a superuser, or create the cast on the target first as the owner of one of the types")
  f = by_object["transform FOR integer LANGUAGE sql"]
  T.match(f.message, "type integer is owned by postgres; function pg_catalog%.prsd_lextype%(internal%) is owned by postgres; function pg_catalog%.int4recv%(internal%) is owned by postgres")
  f = by_object["default privileges FOR ROLE " .. QOWN .. " IN SCHEMA su ON TABLES"]
  T.match(f.message, "needs membership in role " .. QOWN .. ", and the target role " .. TGT .. " is not a member")
  T.match(f.fix, "^GRANT " .. QOWN .. " TO " .. TGT .. ";")

  by_object, list = findings(data, "target_setting_privileges")
  local db = ctx.dbname
  T.eq(list, { "function su.custom()", "function su.logged()", "settings of database " .. db,
               "settings of role " .. QOWN .. " in database " .. db }, "target_setting_privileges")
  f = by_object["function su.logged()"]
  T.match(f.message, "parameter log_min_duration_statement can be set only by a superuser")
  T.nomatch(f.message, "work_mem")
  T.eq(f.fix, "GRANT SET ON PARAMETER log_min_duration_statement TO " .. TGT .. ";")
  f = by_object["function su.custom()"]
  T.match(f.message, "parameter su%.custom_setting can be set only by a superuser %(the target server does not know it yet")
  T.eq(f.fix, "GRANT SET ON PARAMETER su.custom_setting TO " .. TGT .. ";")
  f = by_object["settings of database " .. db]
  T.match(f.message, "only the owner of database " .. db .. " %(postgres%) may ALTER DATABASE %.%.%. SET; parameter log_min_duration_statement")
  T.eq(f.fix, string.format("ALTER DATABASE %s OWNER TO %s;  GRANT SET ON PARAMETER log_min_duration_statement TO %s;  (or leave schema.database_settings off)",
    db, TGT, TGT))
  f = by_object["settings of role " .. QOWN .. " in database " .. db]
  T.match(f.message, "only a role with CREATEROLE may change the settings of another role")
  T.match(f.fix, "^ALTER ROLE " .. TGT .. " CREATEROLE;")

  -- Nothing else fails: the role has what pgtide otherwise asks for.
  for _, c in ipairs(data.checks) do
    if c.status == "fail" then
      T.ok(c.id == "target_superuser_objects" or c.id == "target_object_privileges" or c.id == "target_setting_privileges",
        "unexpected failure of " .. c.id .. ": " .. json.encode(c.findings))
    end
  end

  -- The text report names them with their fixes too.
  local _, text = T.sh(PGTIDE .. " check " .. file)
  T.match(text, "%[target_superuser_objects%] Objects only a superuser can create on the target %(14%)")
  T.match(text, "    %- event trigger su_watch: only a superuser may run CREATE EVENT TRIGGER, and the target role " .. TGT .. " is not one\n      fix: create it on the target as a superuser first")
end)

T.test("pgtide run, the same role: it stops at the precheck and writes nothing", function(ctx)
  local file = playbook(ctx, "superuser-run", as_role(ctx.target_url, TGT))
  local code, out = T.sh(PGTIDE .. " run " .. file)
  T.eq(code, 5, out)
  T.match(out, "%[target_superuser_objects%]")
  T.match(out, "%[target_object_privileges%]")
  T.match(out, "%[target_setting_privileges%]")
  T.match(out, "nothing was written to the target")
  local rows = P.query(ctx.target_url, [[
SELECT (SELECT count(*) FROM pg_namespace WHERE nspname IN ('su', 'pgtide')) AS schemas,
       (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')) AS relations,
       (SELECT count(*) FROM pg_language WHERE oid >= 16384 AND lanname <> 'plpgsql') AS languages,
       (SELECT count(*) FROM pg_am WHERE oid >= 16384) AS access_methods,
       (SELECT count(*) FROM pg_foreign_data_wrapper) AS wrappers,
       (SELECT count(*) FROM pg_event_trigger) AS event_triggers,
       (SELECT count(*) FROM pg_transform) AS transforms,
       (SELECT count(*) FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase
         WHERE d.datname = current_database()) AS settings,
       (SELECT count(*) FROM pg_default_acl) AS default_acls]])
  T.eq(rows[1], { schemas = 0, relations = 0, languages = 0, access_methods = 0, wrappers = 0, event_triggers = 0,
                  transforms = 0, settings = 0, default_acls = 0 }, "the target changed")
end)

T.test("a superuser target: the three checks pass, and so does the whole precheck", function(ctx)
  local code, data, out = check(playbook(ctx, "superuser-super", ctx.target_url))
  T.eq(code, 0, out)
  for _, id in ipairs({ "target_superuser_objects", "target_object_privileges", "target_setting_privileges" }) do
    local _, list, c = findings(data, id)
    T.eq(c.status, "pass", id)
    T.eq(#list, 0, id)
  end
end)

T.test("the grants the findings name: default privileges, settings, a wrapper's USAGE", function(ctx)
  -- A server on an extension's wrapper, the extension already on the target (a superuser's).
  P.exec(ctx.source_url, [[
CREATE EXTENSION postgres_fdw;
CREATE SERVER su_remote FOREIGN DATA WRAPPER postgres_fdw;
CREATE FOREIGN TABLE su.remote_t (a integer) SERVER su_remote]])
  P.exec(ctx.target_url, "CREATE EXTENSION postgres_fdw")
  local file = playbook(ctx, "superuser-grants", as_role(ctx.target_url, TGT))
  local _, data = check(file)
  local by_object = findings(data, "target_object_privileges")
  local f = by_object["server su_remote"]
  T.ok(f, "no finding for server su_remote")
  T.match(f.message, "CREATE SERVER needs USAGE on its foreign%-data wrapper postgres_fdw, which the target role " .. TGT .. " lacks")
  T.eq(f.fix, "GRANT USAGE ON FOREIGN DATA WRAPPER postgres_fdw TO " .. TGT .. ";")

  -- What the fixes said, run by a superuser on the target.
  local db = ctx.dbname
  P.exec(ctx.target_admin, string.format("GRANT %s TO %s; ALTER ROLE %s CREATEROLE; ALTER DATABASE %s OWNER TO %s",
    QOWN, TGT, TGT, db, TGT))
  P.exec(ctx.target_url, string.format([[
GRANT SET ON PARAMETER log_min_duration_statement, su.custom_setting TO %s;
GRANT USAGE ON FOREIGN DATA WRAPPER postgres_fdw TO %s]], TGT, TGT))
  local code, after, out = check(file)
  T.eq(code, 5, out)
  local _, list, c = findings(after, "target_setting_privileges")
  T.eq(c.status, "pass", json.encode(list))
  _, list = findings(after, "target_object_privileges")
  T.eq(list, { "cast (date AS integer)", "transform FOR integer LANGUAGE sql" },
    "only what needs the owner of the server's types and functions is left")
  _, list = findings(after, "target_superuser_objects")
  T.eq(#list, 14, "the superuser-only objects stay")
  P.exec(ctx.target_admin, string.format("ALTER DATABASE %s OWNER TO postgres", db))
end)

T.test("tear-down: the roles are dropped", function(ctx)
  P.exec(ctx.target_admin, string.format("ALTER DATABASE %s OWNER TO postgres", ctx.dbname))
  for _, url in ipairs({ ctx.source_url, ctx.target_url, ctx.source_admin, ctx.target_admin }) do
    P.exec(url, DROP_ROLES)
  end
end)
