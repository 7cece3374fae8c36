-- Databases built on extensions (orafce, pg_stat_statements): objects that belong to an
-- extension come from CREATE EXTENSION on the target, never one by one (nor their tables'
-- constraints); the rows of an extension's configuration tables are copied as pg_dump copies
-- them; privileges on extension members that differ from the extension's initial ones are
-- carried; the user's objects that use the extension's types and functions come after it.
-- The fixture is tests/fixtures/schema_extensions.sql.
local T = require "testlib"
local P = require "pg"
local D = require "schemadump"
local sh_ok, fresh_db = D.sh_ok, P.fresh_db
local function dump_differences(source_url, target_url)
  local differences, source_count, target_count, source_objects =
    D.dump_differences(source_url, target_url, { exclude_schema = "pgtide" })
  return differences, source_objects, source_count, target_count
end
local tide = require "tide"
local H = require "tidetest"
local connect = require "tide.connect"
local plan_module = require "tide.plan"

local PG_BIN = "/usr/lib/postgresql/15/bin/"
local FIXTURE = "tests/fixtures/schema_extensions.sql"

-- The fixture grants to tide_ext_reader: on both clusters (roles are per cluster).
local function ensure_roles(ctx)
  for _, url in ipairs({ ctx.source_admin, ctx.target_admin }) do
    local c = assert(tide.connect(url))
    assert(c:exec([[DO $$ BEGIN
      IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'tide_ext_reader') THEN CREATE ROLE tide_ext_reader; END IF;
    END $$]]))
    c:close()
  end
end

local function build(task)
  local source, target = connect.open_both(task)
  local plan = plan_module.build(task, source, target)
  source:close()
  target:close()
  return plan
end

-- A playbook for two databases of the clusters (H.playbook takes the file's own ones).
local function playbook(ctx, name, source_url, target_url, body)
  return H.playbook({ tmpdir = ctx.tmpdir, source_url = source_url, target_url = target_url }, name, body)
end

local TABLES = { "billing.customers", "billing.invoices", "billing.exports", "utl_file.utl_file_dir",
                 "billing.customer_totals", "billing.export_dirs" }

T.test("orafce and pg_stat_statements: plan, schema + full, pg_dump object by object, data, behaviour", function(ctx)
  ensure_roles(ctx)
  sh_ok(PG_BIN .. "psql -X -q -v ON_ERROR_STOP=1 -d '" .. ctx.source_url .. "' -f " .. FIXTURE)
  local pb = H.playbook(ctx, "extensions", [[migrate = { "schema", "full" }, progress = "plain",]])

  -- The plan: no internal error, no error at all; extension members and the constraint of
  -- orafce's table are left out naming the extension; the configuration table is a
  -- data-only entry; the user's objects come after CREATE EXTENSION.
  local plan = build(require("tide.playbook").load(pb))
  local errors = {}
  for _, e in ipairs(plan.errors) do errors[#errors + 1] = e.message end
  T.eq(errors, {}, "plan errors")
  local reasons = {}
  for _, s in ipairs(plan.skipped) do reasons[s.key] = s.reason end
  T.match(reasons["constraint:utl_file.utl_file_dir_dirname_key"] or "",
    "its table utl_file%.utl_file_dir belongs to extension orafce: CREATE EXTENSION creates it")
  for _, obj in ipairs(plan.objects) do
    T.ok(obj.kind ~= "table" or obj.schema ~= "utl_file", "the extension's table is not created: " .. obj.key)
    T.ok(obj.schema ~= "oracle" or obj.kind == "function" and obj.name == "fiscal_year", "an extension member is in the plan: " .. obj.key)
  end
  local config
  for _, t in ipairs(plan.tables) do if t.key == "utl_file.utl_file_dir" then config = t end end
  T.ok(config, "the configuration table is in plan.tables")
  T.eq(config.extension, "orafce")
  T.eq(config.row_filter, nil, "orafce's condition is empty: every row")
  T.eq(config.target, { schema = "utl_file", name = "utl_file_dir" })
  local position = {}
  for i, step in ipairs(plan.pre_data) do position[step.key] = i end
  local orafce = position["extension:orafce"]
  T.ok(orafce, "CREATE EXTENSION orafce is in pre-data")
  for _, key in ipairs({ "domain:billing.code_t", "domain:billing.when_t", "table:billing.customers",
    "table:billing.invoices", "function:pkg_billing.due_date(issued oracle.date)",
    "function:pkg_billing.format_code(code oracle.varchar2)",
    "function:pkg_billing.label_of(amount numeric, label oracle.nvarchar2)",
    "function:oracle.fiscal_year(d oracle.date)", "view:billing.invoice_report", "view:billing.today",
    "matview:billing.customer_totals" }) do
    T.ok(position[key], key .. " is in pre-data")
    T.ok((position[key] or 0) > orafce, key .. " comes after CREATE EXTENSION orafce")
  end
  local post = {}
  for _, step in ipairs(plan.post_data) do post[#post + 1] = step.sql end
  post = table.concat(post, ";\n")
  T.match(post, "REVOKE EXECUTE ON FUNCTION public%.pg_stat_statements%(showtext boolean,[^;]*%) FROM PUBLIC")
  T.match(post, "GRANT UPDATE %(dir%) ON TABLE utl_file%.utl_file_dir TO tide_ext_reader")
  -- The foreign key to the configuration table and the materialized view over it wait for
  -- its rows.
  local waits = {}
  for _, step in ipairs(plan.post_data) do
    if step.key == "fkey:billing.exports.exports_dirname_fkey" or step.key == "matview_refresh:billing.export_dirs/refresh" then
      waits[step.key] = table.concat(step.needs_data or {}, ", ")
    end
  end
  T.eq(waits, { ["fkey:billing.exports.exports_dirname_fkey"] = "billing.exports, utl_file.utl_file_dir",
                ["matview_refresh:billing.export_dirs/refresh"] = "billing.exports, utl_file.utl_file_dir" })
  -- The extension's grants on its table name that table, so that the load never runs them
  -- beside the foreign key to it (both change its catalog row: "tuple concurrently updated").
  local grant_tables = {}
  for _, step in ipairs(plan.post_data) do
    if step.sql:find("ON TABLE utl_file.utl_file_dir", 1, true) then grant_tables[#grant_tables + 1] = step.table or "none" end
  end
  T.ok(#grant_tables > 0, "the extension's grants on utl_file.utl_file_dir are post-data steps")
  for _, t in ipairs(grant_tables) do T.eq(t, "utl_file.utl_file_dir") end
  T.eq(plan.warnings, {}, "warnings")

  local code, out = H.run("plan " .. pb)
  T.eq(code, 0, out)
  T.match(out, "Rows of extensions' configuration tables %(1%), copied by the full load:\n    utl_file%.utl_file_dir %(extension orafce%)\n")

  -- Schema and data.
  code, out = H.run("run " .. pb)
  T.eq(code, 0, out)
  T.match(out, "utl_file%.utl_file_dir copied, 2 rows")

  -- pg_dump of both sides, object by object: CREATE EXTENSION, the user's objects, and the
  -- ACL entries of extension members (what differs from pg_init_privs).
  local differences, source_objects, source_count, target_count = dump_differences(ctx.source_url, ctx.target_url)
  T.eq(differences, {}, "pg_dump differences")
  T.eq(source_count, target_count)
  local acl = {}
  for key in pairs(source_objects) do if key:match("^ACL |") then acl[#acl + 1] = key end end
  table.sort(acl)
  local acl_text = table.concat(acl, "\n")
  T.match(acl_text, "ACL | public | FUNCTION pg_stat_statements%(showtext boolean")
  T.match(acl_text, "ACL | oracle | TABLE dual |")
  T.match(acl_text, "ACL | utl_file | COLUMN utl_file_dir%.dir |")
  T.match(acl_text, "ACL | %- | SCHEMA utl_file |")
  T.match(acl_text, "ACL | oracle | TYPE varchar2 |")
  T.match(acl_text, "ACL | dbms_output | FUNCTION put_line%(a text%) |")

  -- The data, by checksum.
  local s, t = P.connect_both(ctx)
  for _, rel in ipairs(TABLES) do
    T.eq(P.fingerprint(t, rel), P.fingerprint(s, rel), "table " .. rel .. " differs")
  end
  -- The privileges work as on the source.
  local can = assert(t:query([[SELECT has_function_privilege('tide_ext_reader', 'public.pg_stat_statements(boolean)', 'EXECUTE') AS reader,
    EXISTS (SELECT FROM aclexplode((SELECT proacl FROM pg_proc WHERE oid = 'public.pg_stat_statements(boolean)'::regprocedure)) a
            WHERE a.grantee = 0) AS public]]))[1]
  T.eq(can, { reader = true, public = false })
  -- The user's code calls orafce on the target: the procedure, the trigger, the views.
  assert(t:exec("CALL pkg_billing.add_invoice(7, 10.00, 'on target')"))
  local row = assert(t:query("SELECT tag::text AS tag, id > 2001 AS after_source FROM billing.invoices WHERE label::text = 'on target'"))[1]
  T.eq(row, { tag = "on t", after_source = true })
  T.eq(assert(t:query("SELECT pkg_billing.format_code('ab12')::text AS c"))[1].c, "000021BA")
  local report = assert(t:query("SELECT label FROM billing.invoice_report WHERE id = 1"))[1]
  T.eq(report.label, assert(s:query("SELECT label FROM billing.invoice_report WHERE id = 1"))[1].label)
  T.eq(#assert(t:query("SELECT * FROM billing.today")), 1)
  s:close(); t:close()
end)

T.test("a configuration table with a condition: its rows are copied, the extension's own stay", function(ctx)
  ensure_roles(ctx)
  local source_url = fresh_db(ctx.source_admin, "s_schema_ext_condition")
  local target_url = fresh_db(ctx.target_admin, "t_schema_ext_condition")
  -- pg_extension_config_dump can only be called by an extension's script: the condition is
  -- set in the catalog, as a script would have left it. Rows named SYS* stand for the ones
  -- an extension's script inserts (on the target too, with its own values).
  local condition = [[UPDATE pg_extension SET extcondition = ARRAY['WHERE dirname NOT LIKE ''SYS%''']
    WHERE extname = 'orafce']]
  P.exec(source_url, "CREATE EXTENSION orafce; " .. condition .. [[;
    INSERT INTO utl_file.utl_file_dir (dir, dirname) VALUES ('/sys', 'SYS1'), ('/data', 'DATA'), ('/logs', 'LOGS')]])
  P.exec(target_url, "CREATE EXTENSION orafce; " .. condition .. [[;
    INSERT INTO utl_file.utl_file_dir (dir, dirname) VALUES ('/target/sys', 'SYS1')]])
  local pb = playbook(ctx, "ext_condition", source_url, target_url, [[migrate = { "schema", "full" }, progress = "plain",]])
  local plan = build(require("tide.playbook").load(pb))
  T.eq(plan.errors, {})
  local config
  for _, t in ipairs(plan.tables) do if t.key == "utl_file.utl_file_dir" then config = t end end
  T.eq(config and config.row_filter, "dirname NOT LIKE 'SYS%'")
  T.eq(config and config.target_filter, "dirname NOT LIKE 'SYS%'")
  local code, out = H.run("run " .. pb)
  T.eq(code, 0, out)
  T.match(out, "utl_file%.utl_file_dir copied, 2 rows")
  local rows = P.query(target_url, "SELECT string_agg(dirname || '=' || dir, ', ' ORDER BY dirname) AS list FROM utl_file.utl_file_dir")
  T.eq(rows[1].list, "DATA=/data, LOGS=/logs, SYS1=/target/sys")
  -- verify compares the rows of the condition on both sides.
  code, out = H.run("verify " .. pb)
  T.eq(code, 0, out)
  -- Left out with the table excluded; with the extension left out too.
  plan = build(require("tide.playbook").load(playbook(ctx, "ext_condition2", source_url, target_url,
    [[migrate = { "schema", "full" }, select = { exclude = { "utl_file.*" } },]])))
  for _, t in ipairs(plan.tables) do T.ne(t.key, "utl_file.utl_file_dir") end
  local reasons = {}
  for _, s in ipairs(plan.skipped) do reasons[s.key] = s.reason end
  T.match(reasons["table:utl_file.utl_file_dir"] or "", 'excluded by "utl_file%.%*" %(configuration table of extension orafce%)')
  P.drop_db(ctx.source_admin, "s_schema_ext_condition")
  P.drop_db(ctx.target_admin, "t_schema_ext_condition")
end)
