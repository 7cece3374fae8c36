-- Base types, operators, operator families and classes, casts and conversions on real
-- servers (fixture tests/fixtures/schema_types_ops.sql): migrated, pg_dump of source and
-- target equal object by object, the index that uses a user operator class works, the cast
-- behind a column default and the operators of a view work; renamed schemas; a second run
-- with existing = "skip" keeps everything; a C function whose library the target lacks is a
-- precheck finding, not a plan error.
local T = require "testlib"
local P = require "pg"
local D = require "schemadump"
local sh_ok, fresh_db, dump_differences = D.sh_ok, P.fresh_db, D.dump_differences
local tide = require "tide"
local plan_module = require "tide.plan"
local precheck = require "tide.precheck"

local PG_BIN = "/usr/lib/postgresql/15/bin/"
local FIXTURE = "tests/fixtures/schema_types_ops.sql"

local loaded = {}
local function load_fixture(url)
  if not loaded[url] then
    sh_ok(PG_BIN .. "psql -X -q -v ON_ERROR_STOP=1 -d '" .. url .. "' -f " .. FIXTURE)
    loaded[url] = true
  end
end

local make_task = D.task_maker("schema-types-ops-test")

local build = D.build

local migrate = D.migrate

local function explain(url, sql)
  local c = assert(tide.connect(url))
  assert(c:exec("SET enable_seqscan = off"))
  local rows = assert(c:query("EXPLAIN (COSTS OFF) " .. sql))
  c:close()
  local lines = {}
  for _, r in ipairs(rows) do lines[#lines + 1] = r["QUERY PLAN"] end
  return table.concat(lines, "\n")
end

local function column(rows, name)
  local list = {}
  for i, r in ipairs(rows) do list[i] = r[name] end
  return list
end

T.test("base types, operators, families, classes, casts, conversions: pg_dump of source and target match object by object", function(ctx)
  load_fixture(ctx.source_url)
  local task = make_task(ctx.source_url, ctx.target_url, { schema = { owners = "source" } })
  local plan = migrate(task)
  local seen = {}
  for _, obj in ipairs(plan.objects) do seen[obj.kind] = (seen[obj.kind] or 0) + 1 end
  T.eq({ seen.type, seen.operator, seen.operator_family, seen.operator_class, seen.cast, seen.conversion },
    { 5, 10, 4, 3, 4, 2 }, "objects per kind")
  T.eq(plan.skipped, {}, "nothing left out")
  for _, w in ipairs(plan.warnings) do
    T.nomatch(w.message, "does not migrate", "a warning about something pgtide does not migrate")
  end
  -- The plan shows them with their target names.
  local text = require("tide.plan.report").text(plan, task)
  T.match(text, "operator classes %(3%):")
  T.match(text, '"Ops Schema"%.===%(public%.int8alias1, public%.int8alias1%)')
  T.match(text, "CREATE TYPE public%.int8alias1;\n")
  T.match(text, "CREATE CAST %(bigint AS public%.int8alias1%) WITH FUNCTION public%.int8alias1%(bigint%) AS ASSIGNMENT;")

  local differences, source_count, target_count = dump_differences(ctx.source_url, ctx.target_url)
  T.eq(differences, {}, "pg_dump differences")
  T.ok(source_count > 60, "pg_dump of the source lists only " .. source_count .. " objects")
  T.eq(source_count, target_count)

  -- The index that uses the user class serves the class's cross-type operator (only that
  -- family has it), and answers like the source.
  local probe = 'SELECT f1::text AS v FROM public.ec1 WHERE f1 OPERATOR("Ops Schema".<) 45::bigint ORDER BY 1'
  P.exec(ctx.target_url, [[INSERT INTO public.ec1 (f1, f4, f5, f6, f7)
    SELECT i::bigint::public.int8alias1, '9', 'x' || i, ARRAY[('(' || i || ',2)')::"Ops Schema".pair],
           ('(' || i || ',1)')::public.plain_cube
    FROM generate_series(1, 50) i]])
  T.match(explain(ctx.target_url, probe), "ec1_f1_reverse")
  T.eq(column(P.query(ctx.target_url, probe), "v"), column(P.query(ctx.source_url, probe), "v"))
  -- Column defaults through the casts; the view through the operators; the C type.
  local rows = P.query(ctx.target_url, [[SELECT f2::text AS f2, f3, f5::text AS f5, public.plain_cube_dim(f7) AS dim
    FROM public.ec1 WHERE f1 OPERATOR(public.=) '7']])
  T.eq(rows[1].f2, "42")
  T.eq(rows[1].f3, 5)
  T.eq(rows[1].f5, "x7")
  T.eq(rows[1].dim, 2)
  T.eq(P.query(ctx.target_url, 'SELECT count(*) AS n FROM "Ops Schema".same_rows')[1].n, 50)
  -- The default conversion of "Ops Schema" and its C function, found through search_path.
  local c = assert(tide.connect(ctx.target_url))
  assert(c:exec([[SET search_path = "Ops Schema", pg_catalog]]))
  T.eq(assert(c:query([[SELECT convert_to('caf' || chr(233), 'LATIN1') = '\x636166e9'::bytea AS ok]]))[1].ok, true)
  c:close()

  -- Run again with existing = "skip": every object is found with the same definition.
  local again = build(make_task(ctx.source_url, ctx.target_url, { schema = { owners = "source", existing = "skip" } }))
  T.eq(again.conflicts, {}, "conflicts on the second run")
  local statements = {}
  for _, step in ipairs(again.pre_data) do statements[#statements + 1] = step.key end
  T.eq(statements, {}, "pre-data statements on the second run")
end)

T.test("renamed schemas and type: operators, classes, casts and conversions follow", function(ctx)
  load_fixture(ctx.source_url)
  local target_url = fresh_db(ctx.target_admin, "t_schema_types_ops_rename")
  local plan = migrate(make_task(ctx.source_url, target_url, {
    rename = { schema = { ["Ops Schema"] = "ops", public = "shop" },
               type = { ["public.int8alias1"] = "bigalias" },
               ["function"] = { ["public.int8alias1eq"] = "eq_alias" } } }))
  local targets = {}
  for _, obj in ipairs(plan.objects) do
    if obj.def.target_text then targets[obj.key] = obj.def.target_text(obj) end
  end
  T.eq(targets['operator:"Ops Schema".===(public.int8alias1, public.int8alias1)'], "ops.===(shop.bigalias, shop.bigalias)")
  T.eq(targets["cast:(bigint AS public.int8alias1)"], "(bigint AS shop.bigalias)")
  T.eq(targets['operator_family:"Ops Schema"."Reverse Family" USING btree'], 'ops."Reverse Family" USING btree')
  local rows = P.query(target_url, [[
    SELECT (SELECT count(*) FROM pg_operator WHERE oprnamespace = 'shop'::regnamespace) AS shop_ops,
           (SELECT count(*) FROM pg_operator WHERE oprnamespace = 'ops'::regnamespace) AS ops_ops,
           (SELECT count(*) FROM pg_opclass WHERE opcnamespace IN ('shop'::regnamespace, 'ops'::regnamespace)) AS classes,
           (SELECT count(*) FROM pg_opfamily WHERE opfnamespace IN ('shop'::regnamespace, 'ops'::regnamespace)) AS families,
           (SELECT count(*) FROM pg_conversion WHERE connamespace IN ('shop'::regnamespace, 'ops'::regnamespace)) AS conversions,
           (SELECT count(*) FROM pg_cast WHERE oid >= 16384) AS casts,
           (SELECT oprcode::text FROM pg_operator WHERE oid = 'shop.=(shop.bigalias, shop.bigalias)'::regoperator) AS eq]])
  T.eq(rows[1], { shop_ops = 6, ops_ops = 4, classes = 3, families = 4, conversions = 2, casts = 4, eq = "shop.eq_alias" })
  P.exec(target_url, [[INSERT INTO shop.ec1 (f1) SELECT i::bigint FROM generate_series(1, 50) i]])   -- the assignment cast
  T.eq(P.query(target_url, "SELECT (3::integer)::shop.bigalias::text AS v")[1].v, "3")   -- the SQL cast function
  local probe = "SELECT f1::text AS v FROM shop.ec1 WHERE f1 OPERATOR(ops.<) 47::bigint ORDER BY 1"
  T.match(explain(target_url, probe), "ec1_f1_reverse")
  T.eq(column(P.query(target_url, probe), "v"), { "48", "49", "50" })
  T.eq(P.query(target_url, "SELECT count(*) AS n FROM ops.same_rows")[1].n, 50)
  T.eq(P.query(target_url, "SELECT f2::text AS f2, f3 FROM shop.ec1 WHERE f1 OPERATOR(shop.=) '3'")[1], { f2 = "42", f3 = 5 })
end)

T.test("function_library_missing: a C function whose library the target server lacks", function(ctx)
  local source_url = fresh_db(ctx.source_admin, "t_schema_types_ops_lib_src")
  local target_url = fresh_db(ctx.target_admin, "t_schema_types_ops_lib_tgt")
  local libdir = P.query(ctx.source_admin, "SELECT setting FROM pg_config() WHERE name = $1", "PKGLIBDIR")[1].setting
  -- Both clusters share one installation: the library is copied to a directory of its own,
  -- the function created on the source, the copy removed, so only the target misses it.
  local dir = ctx.tmpdir .. "/c_library"
  sh_ok("mkdir -p '" .. dir .. "' && chmod 755 '" .. dir .. "' && cp '" .. libdir .. "/cube.so' '" .. dir .. "/lostlib.so' && chmod 644 '" .. dir .. "/lostlib.so'")
  P.exec(source_url, "CREATE FUNCTION public.lost_dim(integer) RETURNS integer STRICT LANGUAGE c AS '"
    .. dir .. "/lostlib', 'cube_dim'")
  P.exec(source_url, "CREATE FUNCTION public.kept_dim(integer) RETURNS integer STRICT LANGUAGE c AS '$libdir/cube', 'cube_dim'")
  os.remove(dir .. "/lostlib.so")
  local task = make_task(source_url, target_url)
  local report, plan = precheck.evaluate(task)
  T.eq(plan.errors, {}, "a missing library is no plan error")
  T.ok(plan_module.runnable(plan))
  local r = assert(precheck.result(report, "function_library_missing"))
  T.eq(r.status, "fail")
  T.eq(#r.findings, 1, T.dump(r.findings))
  T.eq(r.findings[1].object, "library " .. dir .. "/lostlib")
  T.match(r.findings[1].message, "public%.lost_dim%(integer%)")
  T.match(r.findings[1].message, "is not on the target server %(looked for " .. dir:gsub("%p", "%%%0") .. "/lostlib, ")
  P.exec(source_url, "DROP FUNCTION public.lost_dim(integer)")
  report = precheck.evaluate(task)
  T.eq(precheck.result(report, "function_library_missing").status, "pass")
end)
