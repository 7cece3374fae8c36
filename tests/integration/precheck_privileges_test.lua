-- Privilege prechecks: pgtide connecting as unprivileged roles on either side, each finding,
-- then the GRANT (or ALTER) its fix names, and the finding gone. Roles are cluster-wide, so
-- their names start with this file's name, and the last case drops them.
local T = require "testlib"
local tide = require "tide"
local precheck = require "tide.precheck"

local SRC, TGT, OWN = "precheck_privileges_test_src", "precheck_privileges_test_tgt", "precheck_privileges_test_own"

local function sql(url, text)
  local c = assert(tide.connect(url))
  local ok, err = c:exec(text)
  c:close()
  assert(ok, tostring(err))
end

local function as_role(url, role) return (url:gsub("//[^@/]+@", "//" .. role .. "@")) end

local function evaluate(def)
  def.name = def.name or "precheck-privileges"
  return (precheck.evaluate(tide.task(def)))
end

local function findings(report, id)
  local r = assert(precheck.result(report, id), "no check " .. id)
  return r.findings, r
end

local function text(list)
  local out = {}
  for _, f in ipairs(list) do out[#out + 1] = (f.object or "") .. ": " .. f.message .. " | " .. (f.fix or "") end
  return table.concat(out, "\n")
end

local DROP_ROLES = [[
DO $$
DECLARE r text;
BEGIN
  FOREACH r IN ARRAY ARRAY['%s', '%s', '%s'] LOOP
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = r) THEN
      EXECUTE format('DROP OWNED BY %%I', r);
      EXECUTE format('DROP ROLE %%I', r);
    END IF;
  END LOOP;
END $$]]
DROP_ROLES = DROP_ROLES:format(SRC, TGT, OWN)

T.test("set-up: roles without privileges on both clusters", function(ctx)
  for _, admin in ipairs({ ctx.source_admin, ctx.target_admin }) do
    sql(admin, DROP_ROLES)
    sql(admin, string.format("CREATE ROLE %s LOGIN; CREATE ROLE %s LOGIN; CREATE ROLE %s", SRC, TGT, OWN))
  end
  sql(ctx.source_url, [[
CREATE SCHEMA pv;
CREATE TABLE pv.t (id int PRIMARY KEY);
CREATE SEQUENCE pv.s;
CREATE EXTENSION pageinspect WITH SCHEMA pv]])
end)

T.test("source privileges: replication, SELECT, schema USAGE, publication, heartbeat", function(ctx)
  local def = { migrate = { "schema", "full", "incremental" }, select = { include = { "pv" } },
                source = as_role(ctx.source_url, SRC), target = ctx.target_url }
  local report = evaluate(def)
  T.eq(report.ok, false)
  local list = findings(report, "source_replication_privilege")
  T.eq(#list, 1, text(list))
  T.match(list[1].fix, "ALTER ROLE " .. SRC .. " REPLICATION;")
  list = findings(report, "replication_connection")
  T.eq(#list, 1, text(list))
  T.match(list[1].message, "cannot open a replication connection")
  T.match(list[1].fix, "ALTER ROLE " .. SRC .. " REPLICATION;")
  list = findings(report, "source_select_privilege")
  T.eq(#list, 2, text(list))
  T.match(text(list), "GRANT SELECT ON TABLE pv%.t TO " .. SRC)
  T.match(text(list), "GRANT SELECT ON SEQUENCE pv%.s TO " .. SRC)
  list = findings(report, "source_schema_usage")
  T.eq(#list, 1, text(list))
  T.match(list[1].fix, "GRANT USAGE ON SCHEMA pv TO " .. SRC)
  list = findings(report, "source_publication_privilege")
  T.eq(#list, 2, text(list))
  T.match(text(list), "GRANT CREATE ON DATABASE t_precheck_privileges_test TO " .. SRC)
  T.match(text(list), "pv%.t: owned by postgres: only its owner")
  list = findings(report, "source_heartbeat_privilege")
  T.eq(#list, 1, text(list))
  T.match(list[1].message, "cannot create the heartbeat table in schema public")
  list = findings(report, "open_transactions")
  T.eq(#list, 1, text(list))
  T.eq(list[1].grade, "info")
  T.match(list[1].fix, "GRANT pg_read_all_stats TO " .. SRC)

  sql(ctx.source_admin, "ALTER ROLE " .. SRC .. " REPLICATION")
  sql(ctx.source_url, string.format([[
GRANT USAGE ON SCHEMA pv TO %s;
GRANT SELECT ON ALL TABLES IN SCHEMA pv TO %s;
GRANT SELECT ON ALL SEQUENCES IN SCHEMA pv TO %s;
GRANT CREATE ON DATABASE t_precheck_privileges_test TO %s;
ALTER TABLE pv.t OWNER TO %s;
GRANT CREATE ON SCHEMA public TO %s]], SRC, SRC, SRC, SRC, SRC, SRC))
  report = evaluate(def)
  for _, id in ipairs({ "source_replication_privilege", "replication_connection", "source_select_privilege",
                        "source_schema_usage", "source_publication_privilege", "source_heartbeat_privilege" }) do
    T.eq(#findings(report, id), 0, id .. ": " .. text(findings(report, id)))
  end
end)

T.test("target privileges: CREATE, session_replication_role, replication origins, untrusted extensions", function(ctx)
  local def = { migrate = { "schema", "full", "incremental" }, select = { include = { "pv" } },
                source = ctx.source_url, target = as_role(ctx.target_url, TGT) }
  local report = evaluate(def)
  local list = findings(report, "target_create_privilege")
  T.eq(#list, 1, text(list))
  T.match(list[1].message, "no CREATE privilege on the database, and schema%(s%) pv, pgtide must be created")
  list = findings(report, "target_replication_role")
  T.eq(#list, 1, text(list))
  T.match(list[1].fix, "GRANT SET ON PARAMETER session_replication_role TO " .. TGT)
  list = findings(report, "target_replication_origin")
  T.eq(#list, 1, text(list))
  T.match(list[1].fix, "GRANT EXECUTE ON FUNCTION pg_catalog%.pg_replication_origin_create%(text%)")
  list = findings(report, "extension_unavailable")
  T.eq(#list, 1, text(list))
  T.match(list[1].message, "extension pageinspect is not trusted: only a superuser can create it")

  -- The fixes: what the findings said, run by a superuser on the target.
  local origin_fix = findings(report, "target_replication_origin")[1].fix
  sql(ctx.target_url, string.format([[
GRANT CREATE ON DATABASE t_precheck_privileges_test TO %s;
GRANT SET ON PARAMETER session_replication_role TO %s;
CREATE SCHEMA pv AUTHORIZATION %s;
CREATE EXTENSION pageinspect WITH SCHEMA pv]], TGT, TGT, TGT))
  sql(ctx.target_url, (origin_fix:gsub(";.*$", ";")))
  report = evaluate(def)
  for _, id in ipairs({ "target_create_privilege", "target_replication_role", "target_replication_origin",
                        "extension_unavailable" }) do
    T.eq(#findings(report, id), 0, id .. ": " .. text(findings(report, id)))
  end
end)

T.test("target tables: INSERT on existing tables, row-level security, and owners = \"source\"", function(ctx)
  sql(ctx.source_url, "CREATE SCHEMA rl; CREATE TABLE rl.t (id int PRIMARY KEY)")
  sql(ctx.target_url, [[
CREATE SCHEMA rl; CREATE TABLE rl.t (id int PRIMARY KEY);
ALTER TABLE rl.t ENABLE ROW LEVEL SECURITY]])
  local def = { migrate = { "full" }, select = { include = { "rl" } },
                source = ctx.source_url, target = as_role(ctx.target_url, TGT) }
  local report = evaluate(def)
  local list = findings(report, "target_table_privileges")
  T.eq(#list, 1, text(list))
  T.match(list[1].message, "lacks INSERT on the target table rl%.t")
  list = findings(report, "target_ownership")
  T.eq(#list, 1, text(list))
  T.match(list[1].message, "row%-level security is enabled on the target table rl%.t")
  T.match(list[1].fix, "ALTER ROLE " .. TGT .. " BYPASSRLS;")
  list = findings(report, "target_not_empty")
  T.eq(list[1] and list[1].grade, "warn", text(list))
  T.match(list[1].message, "whether it holds rows is unknown")
  sql(ctx.target_url, string.format("GRANT USAGE ON SCHEMA rl TO %s; GRANT SELECT, INSERT ON rl.t TO %s; ALTER ROLE %s BYPASSRLS",
    TGT, TGT, TGT))
  report = evaluate(def)
  for _, id in ipairs({ "target_table_privileges", "target_ownership", "target_not_empty" }) do
    T.eq(#findings(report, id), 0, id .. ": " .. text(findings(report, id)))
  end

  -- schema.owners = "source": the target role must be able to give objects to their owner.
  sql(ctx.source_url, string.format("CREATE SCHEMA ow AUTHORIZATION %s; CREATE TABLE ow.t (id int); ALTER TABLE ow.t OWNER TO %s", OWN, OWN))
  def = { migrate = { "schema" }, select = { include = { "ow" } }, schema = { owners = "source" },
          source = ctx.source_url, target = as_role(ctx.target_url, TGT) }
  list = findings(evaluate(def), "target_ownership")
  T.eq(#list, 1, text(list))
  T.match(list[1].message, "gives objects to role " .. OWN)
  T.match(list[1].fix, "GRANT " .. OWN .. " TO " .. TGT)
  sql(ctx.target_admin, string.format("GRANT %s TO %s", OWN, TGT))
  T.eq(#findings(evaluate(def), "target_ownership"), 0)
end)

T.test("tear-down: the roles are dropped", function(ctx)
  sql(ctx.source_url, "DROP SCHEMA pv CASCADE")
  sql(ctx.target_url, "DROP SCHEMA pv CASCADE")
  sql(ctx.source_url, DROP_ROLES)
  sql(ctx.target_url, DROP_ROLES)
  sql(ctx.source_admin, DROP_ROLES)
  sql(ctx.target_admin, DROP_ROLES)
end)
