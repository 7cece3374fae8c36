-- Prechecks on the test clusters: each check with the situation that triggers it, and without
-- it once fixed. Privileges: precheck_privileges_test.lua; server settings that need their own
-- cluster: precheck_settings_test.lua; policies, the CLI, the gate and scale:
-- precheck_policy_test.lua. Every case works in its own schema and selects only it.
local T = require "testlib"
local P = require "pg"
local tide = require "tide"
local precheck = require "tide.precheck"

local function sql(url, text)
  local c = assert(tide.connect(url))
  local ok, err = c:exec(text)
  c:close()
  assert(ok, tostring(err))
end

local function evaluate(ctx, def, opts)
  def.name = def.name or "precheck-test"
  def.source = def.source or ctx.source_url
  def.target = def.target or ctx.target_url
  return (precheck.evaluate(tide.task(def), opts))
end

local function findings(report, id)
  local r = assert(precheck.result(report, id), "no check " .. id)
  return r.findings, r
end

-- All findings of a check as one text: "object: message | fix" lines.
local function text(list)
  local out = {}
  for _, f in ipairs(list) do out[#out + 1] = (f.object or "") .. ": " .. f.message .. " | " .. (f.fix or "") end
  return table.concat(out, "\n")
end

local INCREMENTAL = { "schema", "full", "incremental" }

T.test("table_without_key: keyless and REPLICA IDENTITY NOTHING tables, with the ALTER to fix them", function(ctx)
  sql(ctx.source_url, [[
CREATE SCHEMA nk;
CREATE TABLE nk.plain (a int, b text);
CREATE TABLE nk.uniq (a int NOT NULL, b text);
CREATE UNIQUE INDEX uniq_a ON nk.uniq (a);
CREATE TABLE nk.keyed (id int PRIMARY KEY);
CREATE TABLE nk.nothing (id int PRIMARY KEY);
ALTER TABLE nk.nothing REPLICA IDENTITY NOTHING;
CREATE TABLE nk.whole (a int);
ALTER TABLE nk.whole REPLICA IDENTITY FULL]])
  local def = { migrate = INCREMENTAL, select = { include = { "nk" } } }
  local report = evaluate(ctx, def)
  local list, result = findings(report, "table_without_key")
  T.eq(result.status, "fail")
  T.eq(report.ok, false)
  T.eq(#list, 3, text(list))
  local all = text(list)
  T.match(all, "nk%.plain: no primary key and REPLICA IDENTITY DEFAULT")
  T.match(all, "ALTER TABLE nk%.plain REPLICA IDENTITY FULL;")
  T.match(all, "nk%.uniq: .*ALTER TABLE nk%.uniq REPLICA IDENTITY USING INDEX uniq_a;")
  T.match(all, "nk%.nothing: REPLICA IDENTITY NOTHING")
  T.nomatch(all, "nk%.keyed")
  T.nomatch(all, "nk%.whole")

  sql(ctx.source_url, [[
ALTER TABLE nk.plain REPLICA IDENTITY FULL;
ALTER TABLE nk.uniq REPLICA IDENTITY USING INDEX uniq_a;
ALTER TABLE nk.nothing REPLICA IDENTITY DEFAULT]])
  list, result = findings(evaluate(ctx, def), "table_without_key")
  T.eq(#list, 0, text(list))
  T.eq(result.status, "pass")
  -- Without incremental migration the check does not apply.
  local _, skipped = findings(evaluate(ctx, { migrate = { "schema", "full" }, select = def.select }), "table_without_key")
  T.eq(skipped.status, "skipped")
end)

T.test("foreign_key_parent_unselected and dependency_unselected follow the selection", function(ctx)
  sql(ctx.source_url, [[
CREATE SCHEMA fk;
CREATE TABLE fk.parent (id int PRIMARY KEY);
CREATE TABLE fk.child (id int PRIMARY KEY, parent_id int REFERENCES fk.parent);
CREATE VIEW fk.parent_ids AS SELECT id FROM fk.parent]])
  local partial = { "fk.child", "fk.parent_ids" }
  local report = evaluate(ctx, { migrate = { "schema" }, select = { include = partial } })
  local fkeys = findings(report, "foreign_key_parent_unselected")
  T.eq(#fkeys, 1, text(fkeys))
  T.match(text(fkeys), "child_parent_id_fkey.*needs table fk%.parent, which is not selected")
  T.eq(fkeys[1].grade, "fail")
  local deps = findings(report, "dependency_unselected")
  T.eq(#deps, 1, text(deps))
  T.match(text(deps), "view fk%.parent_ids needs table fk%.parent")
  T.nomatch(text(deps), "fkey", "foreign keys are reported by their own check")
  -- schema.dependents = "drop": the pieces are left out, reported as warnings.
  report = evaluate(ctx, { migrate = { "schema" }, select = { include = partial }, schema = { dependents = "drop" } })
  fkeys = findings(report, "foreign_key_parent_unselected")
  T.eq(fkeys[1].grade, "warn")
  T.match(fkeys[1].message, "left out, as schema%.dependents = \"drop\"")
  -- Fixed: select the parent too.
  report = evaluate(ctx, { migrate = { "schema" }, select = { include = { "fk" } } })
  T.eq(#findings(report, "foreign_key_parent_unselected"), 0)
  T.eq(#findings(report, "dependency_unselected"), 0)
end)

T.test("existing_objects: conflicts, drops, and a resumed run's own objects", function(ctx)
  sql(ctx.source_url, "CREATE SCHEMA ex; CREATE TABLE ex.t (id int PRIMARY KEY)")
  sql(ctx.target_url, "CREATE SCHEMA ex; CREATE TABLE ex.t (id int)")
  local def = { migrate = { "schema" }, select = { include = { "ex" } } }
  local list, result = findings(evaluate(ctx, def), "existing_objects")
  T.eq(result.status, "fail")
  T.eq(#list, 1, text(list))
  T.match(list[1].object, "table ex%.t")
  T.match(list[1].fix, "schema%.existing")
  -- A resumed run created it: not a conflict.
  list, result = findings(evaluate(ctx, def, { resumed = true }), "existing_objects")
  T.eq(result.status, "info")
  T.match(list[1].message, "resumed run")
  -- existing = "drop": a warning that the target's table (and its rows) goes.
  list = findings(evaluate(ctx, { migrate = { "schema" }, select = def.select, schema = { existing = "drop" } }), "existing_objects")
  T.eq(#list, 1)
  T.eq(list[1].grade, "warn")
  T.match(list[1].message, "rows on the target are lost")
  sql(ctx.target_url, "DROP TABLE ex.t")
  list = findings(evaluate(ctx, def), "existing_objects")
  T.eq(#list, 0, text(list))
end)

T.test("target_table_missing and target_not_empty when the task loads into existing tables", function(ctx)
  sql(ctx.source_url, "CREATE SCHEMA ld; CREATE TABLE ld.a (id int PRIMARY KEY); CREATE TABLE ld.b (id int PRIMARY KEY)")
  sql(ctx.target_url, "CREATE SCHEMA ld; CREATE TABLE ld.a (id int PRIMARY KEY); INSERT INTO ld.a VALUES (1)")
  local def = { migrate = { "full" }, select = { include = { "ld" } } }
  local report = evaluate(ctx, def)
  local missing = findings(report, "target_table_missing")
  T.eq(#missing, 1, text(missing))
  T.match(missing[1].object, "ld%.b")
  local nonempty = findings(report, "target_not_empty")
  T.eq(#nonempty, 1, text(nonempty))
  T.match(nonempty[1].message, "ld%.a already holds rows")
  T.eq(nonempty[1].grade, "fail")
  local _, existing = findings(report, "existing_objects")
  T.eq(existing.status, "skipped", "without \"schema\" existing tables are expected")
  nonempty = findings(evaluate(ctx, { migrate = { "full" }, select = def.select, full = { existing = "truncate" } }), "target_not_empty")
  T.eq(nonempty[1].grade, "warn")
  T.match(nonempty[1].message, "deletes them")
  sql(ctx.target_url, "CREATE TABLE ld.b (id int PRIMARY KEY); TRUNCATE ld.a")
  report = evaluate(ctx, def)
  T.eq(#findings(report, "target_table_missing"), 0)
  T.eq(#findings(report, "target_not_empty"), 0)
end)

T.test("encoding, collation and collation_missing against a LATIN1 / C target database", function(ctx)
  local admin = assert(tide.connect(ctx.target_admin))
  assert(admin:exec("DROP DATABASE IF EXISTS precheck_test_latin1"))
  assert(admin:exec("CREATE DATABASE precheck_test_latin1 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"))
  local ok, err = pcall(function()
    sql(ctx.source_url, [[CREATE SCHEMA co; CREATE TABLE co.t (id int PRIMARY KEY, name text COLLATE "C.utf8")]])
    local def = { migrate = { "schema", "full" }, select = { include = { "co" } },
                  target = P.with_db(ctx.target_url, "precheck_test_latin1") }
    local report = evaluate(ctx, def)
    local enc = findings(report, "encoding")
    T.eq(#enc, 1, text(enc))
    T.eq(enc[1].grade, "fail")
    T.match(enc[1].message, "source database is UTF8, the target LATIN1")
    local coll = findings(report, "collation")
    T.eq(#coll, 1, text(coll))
    T.match(coll[1].message, "default collation differs")
    T.match(coll[1].fix, "LC_COLLATE 'C%.UTF%-8'")
    local missing = findings(report, "collation_missing")
    T.eq(#missing, 1, text(missing))
    T.match(missing[1].message, "pg_catalog%.\"C%.utf8\", used by co%.t%.name")
    -- The same source against the UTF8 target: nothing to say.
    def.target = nil
    report = evaluate(ctx, def)
    T.eq(#findings(report, "encoding"), 0)
    T.eq(#findings(report, "collation"), 0)
    T.eq(#findings(report, "collation_missing"), 0)
  end)
  admin:exec("DROP DATABASE IF EXISTS precheck_test_latin1 WITH (FORCE)")
  admin:close()
  if not ok then error(err, 0) end
end)

T.test("extension_unavailable: an extension the target server does not have", function(ctx)
  local rows = P.query(ctx.source_admin, "SELECT setting FROM pg_config() WHERE name = $1", "SHAREDIR")
  local dir = rows[1].setting .. "/extension/"
  local control = dir .. "precheck_test_ext.control"
  local script = dir .. "precheck_test_ext--1.0.sql"
  local f = io.open(control, "w")
  if not f then print("# skipped: cannot write " .. dir .. " (run as root for this case)"); return end
  -- Both test clusters share one installation: the extension is created on the source, then
  -- its files are removed, so the target no longer lists it in pg_available_extensions.
  local ok, err = pcall(function()
    f:write("default_version = '1.0'\nrelocatable = true\ncomment = 'pgtide precheck test'\n")
    f:close()
    local s = assert(io.open(script, "w"))
    s:write("CREATE FUNCTION precheck_test_ext_f() RETURNS int LANGUAGE sql AS 'SELECT 1';\n")
    s:close()
    sql(ctx.source_url, "CREATE EXTENSION precheck_test_ext")
    os.remove(control); os.remove(script)
    local list = findings(evaluate(ctx, { migrate = { "schema" } }), "extension_unavailable")
    T.eq(#list, 1, text(list))
    T.match(list[1].message, "extension precheck_test_ext %(version 1%.0 on the source%) is not available on the target")
    sql(ctx.source_url, "DROP EXTENSION precheck_test_ext")
    list = findings(evaluate(ctx, { migrate = { "schema" } }), "extension_unavailable")
    T.eq(#list, 0, text(list))
  end)
  os.remove(control); os.remove(script)
  if not ok then error(err, 0) end
end)

T.test("target_triggers: triggers that fire while rows are loaded or changes applied", function(ctx)
  local body = [[
CREATE SCHEMA tr;
CREATE FUNCTION tr.f() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END';
CREATE TABLE tr.t (id int PRIMARY KEY);
CREATE TRIGGER t_always BEFORE INSERT ON tr.t FOR EACH ROW EXECUTE FUNCTION tr.f();
ALTER TABLE tr.t ENABLE ALWAYS TRIGGER t_always;
CREATE TRIGGER t_origin BEFORE INSERT ON tr.t FOR EACH ROW EXECUTE FUNCTION tr.f()]]
  sql(ctx.source_url, body)
  sql(ctx.target_url, body)
  -- Loading into the existing target table: the ALWAYS trigger fires (the ORIGIN one does
  -- not: the superuser target role sets session_replication_role = replica).
  local def = { migrate = { "full" }, select = { include = { "tr" } } }
  local list = findings(evaluate(ctx, def), "target_triggers")
  T.eq(#list, 1, text(list))
  T.match(list[1].message, "trigger t_always on the target table tr%.t %(ENABLE ALWAYS%) fires")
  T.match(list[1].fix, "ALTER TABLE tr%.t DISABLE TRIGGER t_always;")
  sql(ctx.target_url, "ALTER TABLE tr.t DISABLE TRIGGER t_always")
  T.eq(#findings(evaluate(ctx, def), "target_triggers"), 0)
  -- Created by the schema phase: an ALWAYS trigger also fires for applied changes.
  sql(ctx.target_url, "DROP SCHEMA tr CASCADE")
  def = { migrate = INCREMENTAL, select = { include = { "tr" } } }
  list = findings(evaluate(ctx, def), "target_triggers")
  T.eq(#list, 1, text(list))
  T.match(list[1].message, "trigger t_always %(ENABLE ALWAYS%) is created on tr%.t")
  sql(ctx.source_url, "ALTER TABLE tr.t ENABLE TRIGGER t_always")
  T.eq(#findings(evaluate(ctx, def), "target_triggers"), 0)
end)

T.test("unlogged_tables, generated_columns, temporary_tables and large_objects", function(ctx)
  sql(ctx.source_url, [[
CREATE SCHEMA mi;
CREATE UNLOGGED TABLE mi.u (id int PRIMARY KEY);
CREATE TABLE mi.g (id int PRIMARY KEY, doubled int GENERATED ALWAYS AS (id * 2) STORED)]])
  local session = assert(tide.connect(ctx.source_url))
  assert(session:exec("CREATE TEMP TABLE precheck_tmp (x int)"))
  local lo = P.query(ctx.source_url, "SELECT lo_from_bytea(0, $1) AS oid", "some bytes")[1].oid
  local def = { migrate = INCREMENTAL, select = { include = { "mi" } } }
  local report = evaluate(ctx, def)
  local unlogged = findings(report, "unlogged_tables")
  T.eq(#unlogged, 1, text(unlogged))
  T.match(unlogged[1].object, "mi%.u")
  T.match(unlogged[1].fix, "ALTER TABLE mi%.u SET LOGGED;")
  local generated = findings(report, "generated_columns")
  T.eq(#generated, 1, text(generated))
  T.match(generated[1].message, "generated column%(s%) doubled are not copied nor sent by logical replication")
  T.eq(generated[1].grade, "info")
  -- On an existing target table that has the column as a plain one, it would stay NULL: a failure.
  sql(ctx.target_url, "CREATE SCHEMA IF NOT EXISTS mi; CREATE TABLE mi.g (id int PRIMARY KEY, doubled int)")
  local stays = findings(evaluate(ctx, { migrate = { "full" }, select = { include = { "mi.g" } } }), "generated_columns")
  sql(ctx.target_url, "DROP SCHEMA mi CASCADE")
  T.eq(#stays, 1, text(stays))
  T.match(stays[1].message, "they are plain column%(s%) doubled: they stay NULL")
  T.eq(stays[1].grade, "fail")
  local temporary = findings(report, "temporary_tables")
  T.eq(#temporary, 1, text(temporary))
  T.match(temporary[1].message, "1 temporary table%(s%) in 1 session%(s%) %(precheck_tmp%)")
  local large = findings(report, "large_objects")
  T.eq(#large, 2, text(large))
  T.match(text(large), "1 large object%(s%).* are not copied: full%.large_objects is off")
  T.match(text(large), "later changes to large objects are not migrated")
  large = findings(evaluate(ctx, { migrate = INCREMENTAL, select = def.select, full = { large_objects = true } }), "large_objects")
  T.eq(#large, 1, text(large))

  sql(ctx.source_url, "ALTER TABLE mi.u SET LOGGED; ALTER TABLE mi.g DROP COLUMN doubled")
  assert(session:exec("DROP TABLE precheck_tmp"))
  P.query(ctx.source_url, "SELECT lo_unlink($1)", lo)
  report = evaluate(ctx, def)
  for _, id in ipairs({ "unlogged_tables", "generated_columns", "temporary_tables", "large_objects" }) do
    T.eq(#findings(report, id), 0, id .. ": " .. text(findings(report, id)))
  end
  session:close()
end)

T.test("open and prepared transactions, inactive slots, FOR ALL TABLES publications", function(ctx)
  sql(ctx.source_url, "CREATE SCHEMA pu; CREATE TABLE pu.nokey (x int); CREATE TABLE pu.probe (x int)")
  -- The slot first: creating it waits for the transactions opened below.
  P.query(ctx.source_url, "SELECT pg_create_logical_replication_slot('precheck_test_idle', 'pgoutput')")
  local open = assert(tide.connect(ctx.source_url))
  local prepared = assert(tide.connect(ctx.source_url))
  local ok, err = pcall(function()
    sql(ctx.source_url, "CREATE PUBLICATION precheck_test_all FOR ALL TABLES")
    assert(open:exec("BEGIN; INSERT INTO pu.probe VALUES (1)"))
    assert(prepared:exec("BEGIN; INSERT INTO pu.probe VALUES (2); PREPARE TRANSACTION 'precheck_test_gid'"))
    local def = { migrate = INCREMENTAL, select = { include = { "pu" } },
                  precheck = { settings = { long_transaction = "0s" } } }
    local report = evaluate(ctx, def)
    local txns = text(findings(report, "open_transactions"))
    T.match(txns, "pid " .. open:backend_pid() .. ": session %d+ .*idle in transaction.*slot waits until it ends")
    local prep = findings(report, "prepared_transactions")
    T.eq(#prep, 1, text(prep))
    T.match(prep[1].object, "'precheck_test_gid'")
    T.match(prep[1].fix, "ROLLBACK PREPARED 'precheck_test_gid';")
    local slots = text(findings(report, "inactive_slots"))
    T.match(slots, "slot precheck_test_idle: logical slot %(pgoutput%) of database t_precheck_test is inactive")
    T.match(slots, "pg_drop_replication_slot%('precheck_test_idle'%)")
    local pubs = findings(report, "all_tables_publication")
    T.eq(#pubs, 1, text(pubs))
    T.match(pubs[1].message, "precheck_test_all is FOR ALL TABLES.*pu%.nokey")

    assert(open:exec("COMMIT"))
    assert(prepared:exec("ROLLBACK PREPARED 'precheck_test_gid'"))
    P.query(ctx.source_url, "SELECT pg_drop_replication_slot('precheck_test_idle')")
    sql(ctx.source_url, "DROP PUBLICATION precheck_test_all")
    report = evaluate(ctx, def)
    T.nomatch(text(findings(report, "open_transactions")), "pid " .. open:backend_pid() .. ":")
    T.eq(#findings(report, "prepared_transactions"), 0)
    T.nomatch(text(findings(report, "inactive_slots")), "precheck_test_idle")
    T.eq(#findings(report, "all_tables_publication"), 0)
  end)
  if not ok then
    open:exec("ROLLBACK")
    prepared:exec("ROLLBACK PREPARED 'precheck_test_gid'")
    local admin = assert(tide.connect(ctx.source_url))
    admin:query("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = 'precheck_test_idle'")
    admin:exec("DROP PUBLICATION IF EXISTS precheck_test_all")
    admin:close()
  end
  open:close(); prepared:close()
  if not ok then error(err, 0) end
end)

T.test("data_size: size, rows and a duration estimate", function(ctx)
  sql(ctx.source_url, [[
CREATE SCHEMA ds;
CREATE TABLE ds.items (id int PRIMARY KEY, label text);
INSERT INTO ds.items SELECT g, repeat('x', 100) FROM generate_series(1, 1000) g;
ANALYZE ds.items]])
  local def = { migrate = { "schema", "full" }, select = { include = { "ds" } },
                precheck = { settings = { throughput = "1MB" } } }
  local list, result = findings(evaluate(ctx, def), "data_size")
  T.eq(result.status, "info")
  T.eq(#list, 1)
  T.match(list[1].message, "^1 table%(s%), [%d%.]+ kB, about 1000 rows; largest ds%.items")
  T.match(list[1].message, "at 1%.0 MB/s per COPY job with 1 job%(s%)")
  local _, skipped = findings(evaluate(ctx, { migrate = { "schema" }, select = def.select }), "data_size")
  T.eq(skipped.status, "skipped")
end)

T.test("server_version and version_differences: same version here; older target, older source, other product", function(ctx)
  local report = evaluate(ctx, { migrate = INCREMENTAL, select = { include = { "ds" } } })
  T.eq(#findings(report, "server_version"), 0)
  T.eq(#findings(report, "version_differences"), 0)
  -- The clusters run one version; other versions are given to the checks directly.
  local by_id = {}
  for _, c in ipairs(precheck.checks) do by_id[c.id] = c end
  local function fake(source, target, source_text, target_text)
    return { versions = { source = source, target = target }, phases = { incremental = true },
             source_server = function() return { version_text = source_text or "PostgreSQL" } end,
             target_server = function() return { version_text = target_text or "PostgreSQL" } end }
  end
  local list = by_id.server_version.run(fake(160002, 150006))
  T.eq(#list, 1)
  T.match(list[1].message, "the target runs PostgreSQL 15%.6, older than the source's 16%.2")
  T.match(list[1].fix, "PostgreSQL 16 or later")
  list = by_id.server_version.run(fake(90624, 150006))
  T.eq(#list, 1)
  T.match(list[1].message, "needs PostgreSQL 10 or later on the source")
  list = by_id.version_differences.run(fake(130004, 160002, "PostgreSQL 13.4", "PostgreSQL 16.2 (PolarDB 2.0)"))
  local all = text(list)
  T.match(all, "newer major version")
  T.match(all, "different products %(source: PostgreSQL; target: PolarDB%)")
  T.match(all, "before PostgreSQL 14 large transactions")
end)

T.test("row_filter_stream / row_filter_applied: filters pgtide applies, and the ones nothing can", function(ctx)
  sql(ctx.source_url, [[
CREATE SCHEMA rf;
CREATE TABLE rf.orders (id int PRIMARY KEY, "Order_Date" date, note text);
CREATE TABLE rf.lines (order_id int, n int, PRIMARY KEY (order_id, n));
CREATE TABLE rf.whole (id int PRIMARY KEY, kind text);
ALTER TABLE rf.whole REPLICA IDENTITY FULL;
CREATE TABLE rf.fullnokey (at date, what text);
ALTER TABLE rf.fullnokey REPLICA IDENTITY FULL;
CREATE TABLE rf.parted (id int, region text, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
CREATE TABLE rf.parted_eu PARTITION OF rf.parted FOR VALUES IN ('eu');
CREATE TABLE rf.audit (at date, what text)]])
  local def = { migrate = INCREMENTAL, select = { include = { "rf" }, rows = {
    ["rf.orders"] = [["Order_Date" >= date '1997-01-01' AND note <> 'id']],
    ["rf.lines"] = "order_id > 10",
    ["rf.whole"] = "kind = 'x'",
    ["rf.fullnokey"] = "what = 'x'",
    ["rf.audit"] = "at > date '2000-01-01'",
  } }, precheck = { warn = { "table_without_key" } } }
  -- A filter outside the replica identity is pgtide's to apply: a warning that says what it means.
  local list, result = findings(evaluate(ctx, def), "row_filter_stream")
  T.eq(result.status, "pass", text(list))
  list, result = findings(evaluate(ctx, def), "row_filter_applied")
  T.eq(result.status, "warn")
  T.eq(#list, 1, text(list))
  local all = text(list)
  T.match(all, "^rf%.orders: row filter .* reads column%(s%) note, Order_Date, outside the replica identity")
  T.match(all, "pgtide evaluates the filter on the target")
  T.match(all, "REPLICA IDENTITY FULL on the source lets the publication apply the filter")
  -- Key columns, REPLICA IDENTITY FULL, and a keyless table (inserts only): the publication filters.
  def.select.rows["rf.orders"] = "id > 100"
  list, result = findings(evaluate(ctx, def), "row_filter_applied")
  T.eq(result.status, "pass", text(list))
  -- A filter on a partition: its changes come through the partitioned table, unfiltered.
  def.select.rows["rf.parted_eu"] = "id > 5"
  list, result = findings(evaluate(ctx, def), "row_filter_stream")
  T.eq(result.status, "fail")
  T.match(text(list), "^rf%.parted_eu: row filter .* is on a partition of rf%.parted")
  T.match(text(list), "select%.rows%[\"rf%.parted\"%]")
  def.select.rows["rf.parted_eu"] = nil
  -- Without the incremental phase the checks do not apply.
  def.migrate = { "schema", "full" }
  def.select.rows["rf.orders"] = [["Order_Date" >= date '1997-01-01']]
  local _, r2 = findings(evaluate(ctx, def), "row_filter_stream")
  T.ne(r2.status, "fail")
end)

T.test("foreign_key_filtered: child rows whose parent a row filter leaves out, counted, with the filter that fixes it", function(ctx)
  sql(ctx.source_url, [[
CREATE SCHEMA fkf;
CREATE TABLE fkf.orders (id int PRIMARY KEY, order_date date NOT NULL);
CREATE TABLE fkf.order_lines (order_id int REFERENCES fkf.orders, n int, PRIMARY KEY (order_id, n));
CREATE TABLE fkf.notes (id int PRIMARY KEY, order_id int REFERENCES fkf.orders);
INSERT INTO fkf.orders SELECT g, date '1996-12-25' + g FROM generate_series(1, 20) g;
INSERT INTO fkf.order_lines SELECT o, k FROM generate_series(1, 20) o, generate_series(1, 3) k;
INSERT INTO fkf.notes VALUES (1, NULL), (2, 15)]])
  local def = { migrate = { "schema", "full" }, select = { include = { "fkf" }, rows = {
    ["fkf.orders"] = "order_date >= date '1997-01-01'",
  } } }
  local list, result = findings(evaluate(ctx, def), "foreign_key_filtered")
  T.eq(result.status, "fail")
  T.eq(#list, 1, text(list))
  -- Orders 1..6 are before 1997: their 18 lines point to left-out orders; the notes do not
  -- (a NULL reference is not checked, order 15 is kept).
  T.match(text(list), "foreign key order_lines_order_id_fkey of fkf%.order_lines references fkf%.orders, and the row " ..
    "filter%(s%) leave out the fkf%.orders row%(s%) 18 row%(s%) of fkf%.order_lines point to")
  T.match(text(list), 'select%.rows%["fkf%.order_lines"%] = "order_id IN %(SELECT id FROM fkf%.orders WHERE order_date >= date \'1997%-01%-01\'%)"')
  T.match(text(list), 'select%.rows_follow = "foreign_keys" %(derives it%)')
  -- The filter it suggests makes the subset complete; so does rows_follow.
  def.select.rows_follow = "foreign_keys"
  list, result = findings(evaluate(ctx, def), "foreign_key_filtered")
  T.eq(result.status, "pass", text(list))
  def.select.rows_follow = nil
  def.select.rows["fkf.order_lines"] = "order_id IN (SELECT id FROM fkf.orders WHERE order_date >= date '1997-01-01')"
  list, result = findings(evaluate(ctx, def), "foreign_key_filtered")
  T.eq(result.status, "pass", text(list))
end)
