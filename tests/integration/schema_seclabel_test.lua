-- Security labels (SECURITY LABEL FOR provider ON ...) on real servers. Debian's PostgreSQL
-- ships no label provider, so the test builds its own (tests/fixtures/seclabel/, with PGXS:
-- postgresql-server-dev-15) and starts a pair of clusters of its own that load it with
-- shared_preload_libraries; the suite's shared clusters (which lack it) serve as the target
-- without the provider. Cases: the provider loads and rejects a label outside its set; labels
-- on every kind (fixture tests/fixtures/schema_seclabel.sql) migrate with pg_dump of source
-- and target equal object by object, and a second run with existing = "skip" has nothing to
-- do; renamed schemas, tables, columns, functions and types carry their labels; a target
-- without the provider is a precheck failure naming it (`pgtide check` fails, `pgtide run`
-- writes nothing) unless schema.security_labels = false.
local T = require "testlib"
local P = require "pg"
local D = require "schemadump"
local H = require "tidetest"
local precheck = require "tide.precheck"

local FIXTURE = "tests/fixtures/schema_seclabel.sql"
local PROVIDER_DIR = "tests/fixtures/seclabel"

-- The clusters of this file: dir, env (SOURCE_URL, TARGET_URL), library (the .so), skip (why
-- the cases cannot run), source/target (the URLs of the database "app" on each).
local S = {}

local function read_env(path)
  local out = {}
  for line in io.lines(path) do
    local k, v = line:match("^([%w_]+)=(.*)$")
    if k then out[k] = v end
  end
  return out
end

local function need_clusters()
  if S.skip then T.skip(S.skip) end
  if not S.source then error("the clusters with the test label provider did not start (see the first case)", 0) end
end

local loaded = false
local function load_fixture()
  if not loaded then
    D.load_sql(S.source, FIXTURE)
    loaded = true
  end
end

local make_task = D.task_maker("schema-seclabel-test")

local build = D.build

local migrate = D.migrate

local LABELS = [[
SELECT l.objtype, l.objname, l.provider, l.label FROM pg_seclabels l ORDER BY 1, 2, 3
]]

local function labels(url)
  local out = {}
  for _, r in ipairs(P.query(url, LABELS)) do
    out[#out + 1] = table.concat({ r.objtype, r.objname, r.provider, r.label }, " | ")
  end
  return out
end

T.test("the test label provider builds with PGXS and the clusters load it; it rejects a label outside its set", function(ctx)
  local function exists(path)
    local f = io.open(path)
    if f then f:close() end
    return f ~= nil
  end
  local code, pgxs = T.sh("pg_config --pgxs")
  local _, headers = T.sh("pg_config --includedir-server")
  pgxs, headers = pgxs:gsub("%s+$", ""), headers:gsub("%s+$", "") .. "/postgres.h"
  local missing = code ~= 0 and "pg_config does not run" or not exists(pgxs) and ("no " .. pgxs)
    or not exists(headers) and ("no " .. headers)
  if missing then
    S.skip = "the test label provider needs PGXS and the PostgreSQL server headers (" .. missing ..
      "): install postgresql-server-dev-15 (make deps)"
    T.skip(S.skip)
  end
  local build_dir = ctx.tmpdir .. "/seclabel-provider"
  local out
  code, out = T.sh(string.format("rm -rf '%s' && mkdir -p '%s' && chmod 755 '%s' && cp %s/pgtide_test_seclabel.c %s/Makefile '%s' && make -s -C '%s' with_llvm=no",
    build_dir, build_dir, build_dir, PROVIDER_DIR, PROVIDER_DIR, build_dir, build_dir))
  S.library = build_dir .. "/pgtide_test_seclabel.so"
  if code ~= 0 or not exists(S.library) then
    S.skip = "the test label provider did not build with PGXS (postgresql-server-dev-15): " .. out:sub(-400)
    T.skip(S.skip)
  end
  T.sh("chmod 644 '" .. S.library .. "'")
  -- A pair of clusters of this file's own: the suite's are shared with the other files and
  -- have no provider (restarting them with one would leave it behind for the others).
  S.dir = ctx.tmpdir .. "/seclabel-clusters"
  local conf = "shared_preload_libraries = '" .. S.library .. "'"
  code, out = T.sh(string.format([[PGTIDE_SOURCE_CONF="%s" PGTIDE_TARGET_CONF="%s" bash scripts/clusters.sh start '%s']],
    conf, conf, S.dir))
  T.eq(code, 0, "clusters with the provider did not start:\n" .. out)
  S.env = read_env(S.dir .. "/env")
  for _, url in ipairs({ S.env.SOURCE_URL, S.env.TARGET_URL }) do
    T.eq(P.query(url, "SHOW shared_preload_libraries")[1].shared_preload_libraries, S.library)
  end
  S.source = P.fresh_db(S.env.SOURCE_URL, "app")
  S.target = P.fresh_db(S.env.TARGET_URL, "app")
  -- The provider accepts its labels (and removing one), and rejects any other.
  P.exec(S.source, "CREATE TABLE probe (id int); SECURITY LABEL FOR pgtide_test ON TABLE probe IS 'top secret'")
  T.eq(P.query(S.source, "SELECT label FROM pg_seclabels WHERE objname = 'probe'")[1].label, "top secret")
  local err = T.raises(function()
    P.exec(S.source, "SECURITY LABEL FOR pgtide_test ON TABLE probe IS 'public'")
  end, "pgtide_test: \"public\" is not a valid security label")
  T.nomatch(tostring(err), "not loaded")
  T.raises(function()
    P.exec(S.source, "SECURITY LABEL FOR no_such_provider ON TABLE probe IS 'x'")
  end, "security label provider \"no_such_provider\" is not loaded")
  P.exec(S.source, "SECURITY LABEL FOR pgtide_test ON TABLE probe IS NULL; DROP TABLE probe")
  T.eq(P.query(S.source, "SELECT count(*) AS n FROM pg_seclabel")[1].n, 0)
end)

T.test("labels on every kind: pg_dump of source and target match object by object; again with existing = skip: nothing to do", function()
  need_clusters()
  load_fixture()
  local task = make_task(S.source, S.target, { schema = { owners = "source" } })
  local report, checked = precheck.evaluate(task)
  T.eq(precheck.result(report, "security_label_provider").status, "pass",
    T.dump(precheck.result(report, "security_label_provider").findings))
  local source_count = P.query(S.source, "SELECT count(*) AS n FROM pg_seclabel")[1].n
  T.eq(source_count, 26, "labels in the fixture")
  T.eq(#checked.security_labels, source_count, "labels in the plan")

  local plan = migrate(task)
  local steps = {}
  for _, phase in ipairs({ plan.pre_data, plan.post_data }) do
    for _, step in ipairs(phase) do
      if step.kind == "security_label" then steps[step.key] = step.sql end
    end
  end
  T.eq(steps['security_label:"Label ""Odd"" Schema"."Secret Table"/pgtide_test/2'],
    [[SECURITY LABEL FOR pgtide_test ON COLUMN "Label ""Odd"" Schema"."Secret Table"."Odd ""Column""" IS 'it''s "odd"']])
  T.eq(steps['security_label:"Label ""Odd"" Schema"."Secret Table"/pgtide_test/sequence/Secret Table_id_seq'],
    [[SECURITY LABEL FOR pgtide_test ON SEQUENCE "Label ""Odd"" Schema"."Secret Table_id_seq" IS 'classified']])
  T.eq(steps["security_label:plain_labels.total(integer)/pgtide_test"],
    "SECURITY LABEL FOR pgtide_test ON AGGREGATE plain_labels.total(integer) IS 'classified'")
  T.eq(steps['security_label:language:"Label PL"/pgtide_test'],
    [[SECURITY LABEL FOR pgtide_test ON LANGUAGE "Label PL" IS 'classified']])
  local text = require("tide.plan.report").text(plan, task)
  T.match(text, [[SECURITY LABEL FOR pgtide_test ON EVENT TRIGGER "Label Watch" IS 'unclassified']])

  local differences, dumped_count, target_count, dumped = D.dump_differences(S.source, S.target)
  T.eq(differences, {}, "pg_dump differences")
  T.eq(dumped_count, target_count)
  -- pg_dump writes a relation's column labels in the relation's SECURITY LABEL entry.
  local label_statements = 0
  for key, entry in pairs(dumped) do
    if key:find("^SECURITY LABEL |") then
      for _ in entry:gmatch("SECURITY LABEL FOR pgtide_test ON ") do label_statements = label_statements + 1 end
    end
  end
  T.eq(label_statements, source_count, "SECURITY LABEL statements in pg_dump of the source")
  T.eq(labels(S.target), labels(S.source))

  -- Every object is there with its labels: a second run keeps them all and writes nothing.
  local again = build(make_task(S.source, S.target, { schema = { owners = "source", existing = "skip" } }))
  T.eq(again.conflicts, {}, "conflicts on the second run")
  local keys = {}
  for _, step in ipairs(again.pre_data) do keys[#keys + 1] = step.key end
  T.eq(keys, {}, "pre-data statements on the second run")
end)

T.test("renamed schemas, table, column, function and type carry their labels", function()
  need_clusters()
  load_fixture()
  local target_url = P.fresh_db(S.env.TARGET_URL, "app_renamed")
  migrate(make_task(S.source, target_url, {
    rename = {
      schema = { ['Label "Odd" Schema'] = 'Labels "Renamed"', plain_labels = "Plain Labels", public = "shop" },
      table = { ['Label "Odd" Schema.Secret Table'] = "secrets" },
      column = { ['Label "Odd" Schema.Secret Table.Odd "Column"'] = "odd_column" },
      ["function"] = { ['Label "Odd" Schema.Add One'] = "add_one" },
      enum = { ['Label "Odd" Schema.Mood'] = "mood" },
    } }))
  local got = labels(target_url)
  T.eq(#got, 26, T.dump(got))
  local set = {}
  for _, line in ipairs(got) do set[line] = true end
  for _, want in ipairs({
    [[schema | "Labels ""Renamed""" | pgtide_test | it's "odd"]],
    [[schema | "Plain Labels" | pgtide_test | classified]],
    [[schema | shop | pgtide_test | unclassified]],
    [[table | "Labels ""Renamed""".secrets | pgtide_test | top secret]],
    [[column | "Labels ""Renamed""".secrets.odd_column | pgtide_test | it's "odd"]],
    [[column | "Labels ""Renamed""".secrets.amount | pgtide_test | classified]],
    [[view | "Labels ""Renamed"""."Secret View" | pgtide_test | classified]],
    [[type | "Labels ""Renamed""".mood | pgtide_test | classified]],
    [[domain | "Plain Labels".positive | pgtide_test | unclassified]],
    [[foreign table | "Plain Labels"."Remote Rows" | pgtide_test | top secret]],
    [[aggregate | "Plain Labels".total(integer) | pgtide_test | classified]],
    [[event trigger | "Label Watch" | pgtide_test | unclassified]],
  }) do
    T.ok(set[want], "no label " .. want .. " on the target:\n" .. table.concat(got, "\n"))
  end
  local functions = 0
  for _, line in ipairs(got) do
    T.nomatch(line, "Label \"\"Odd\"\" Schema", "a label under a source name")
    if line:find('^function | "Labels ""Renamed""".add_one%(') then functions = functions + 1 end
  end
  T.eq(functions, 2, "labels of both add_one functions")
end)

T.test("security_label_provider: a target without the provider fails the precheck, `pgtide run` writes nothing", function(ctx)
  need_clusters()
  load_fixture()
  -- The suite's target cluster has no label provider.
  local target_url = P.fresh_db(ctx.target_admin, "t_schema_seclabel_no_provider")
  local report, plan = precheck.evaluate(make_task(S.source, target_url))
  T.eq(plan.errors, {}, "a missing provider is no plan error")
  local r = assert(precheck.result(report, "security_label_provider"))
  T.eq(r.status, "fail")
  T.eq(#r.findings, 1, T.dump(r.findings))
  local f = r.findings[1]
  T.eq(f.object, "security label provider pgtide_test")
  T.match(f.message, "^26 security label%(s%) of provider pgtide_test %(")
  T.match(f.message, "the provider is not loaded on the target server")
  T.match(f.fix, "shared_preload_libraries")
  T.match(f.fix, "the source has shared_preload_libraries = '" .. S.library:gsub("%p", "%%%0") .. "'")
  T.match(f.fix, "schema%.security_labels = false")

  local pb = H.playbook({ tmpdir = ctx.tmpdir, source_url = S.source, target_url = target_url }, "seclabel-missing",
    [[migrate = { "schema" }, progress = "plain",]])
  local code, out = H.run("check " .. pb)
  T.eq(code, 5, out)
  T.match(out, "security_label_provider")
  T.match(out, "provider pgtide_test")
  code, out = H.run("run " .. pb)
  T.eq(code, 5, out)
  T.match(out, "security_label_provider")
  T.match(out, "nothing was written to the target")
  local written = P.query(target_url, [[
    SELECT (SELECT count(*) FROM pg_namespace WHERE nspname NOT LIKE 'pg\_%' AND nspname NOT IN ('public', 'information_schema')) AS schemas,
           (SELECT count(*) FROM pg_class WHERE oid >= 16384) AS relations,
           (SELECT count(*) FROM pg_proc WHERE oid >= 16384) AS functions]])[1]
  T.eq(written, { schemas = 0, relations = 0, functions = 0 }, "objects on the target after the refused run")

  -- Without labels the check passes, and the plan writes none.
  report, plan = precheck.evaluate(make_task(S.source, target_url, { schema = { security_labels = false } }))
  T.eq(precheck.result(report, "security_label_provider").status, "pass")
  T.eq(plan.security_labels, {})
  for _, step in ipairs(plan.pre_data) do T.ne(step.kind, "security_label", step.key) end
  P.drop_db(ctx.target_admin, "t_schema_seclabel_no_provider")
end)

T.test("the clusters with the provider are stopped", function()
  if S.dir then
    local code, out = T.sh("bash scripts/clusters.sh stop '" .. S.dir .. "'")
    T.eq(code, 0, out)
  elseif S.skip then
    T.skip(S.skip)
  end
end)
