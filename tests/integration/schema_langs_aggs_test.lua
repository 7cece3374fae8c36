-- Procedural languages, transforms, access methods and aggregates of every form on real
-- servers (fixture tests/fixtures/schema_langs_aggs.sql): the plan shows them and warns about
-- none of them, schema + full migrates them (a table USING a hand-made access method is
-- created on it and its rows copied), pg_dump of source and target equal object by object,
-- the aggregates answer like the source's; a second run with existing = "skip" keeps
-- everything.
local T = require "testlib"
local P = require "pg"
local D = require "schemadump"
local sh_ok, dump_differences, query, fresh_db = D.sh_ok, D.dump_differences, P.query, P.fresh_db
local tide = require "tide"
local H = require "tidetest"
local schema = require "tide.schema"

local PG_BIN = "/usr/lib/postgresql/15/bin/"
local FIXTURE = "tests/fixtures/schema_langs_aggs.sql"

local loaded = {}
local function load_fixture(url)
  if not loaded[url] then
    sh_ok(PG_BIN .. "psql -X -q -v ON_ERROR_STOP=1 -d '" .. url .. "' -f " .. FIXTURE)
    loaded[url] = true
  end
end

local make_task = D.task_maker("schema-langs-aggs-test")

local build = D.build

T.test("languages, transforms, access methods, aggregates: planned, migrated with the data, pg_dump of source and target match", function(ctx)
  load_fixture(ctx.source_url)
  local task = make_task(ctx.source_url, ctx.target_url, { schema = { owners = "source" } })
  local plan, target = build(task)
  target:close()
  T.eq(plan.errors, {}, "plan errors")
  T.eq(plan.conflicts, {}, "plan conflicts")
  local seen = {}
  for _, obj in ipairs(plan.objects) do seen[obj.kind] = (seen[obj.kind] or 0) + 1 end
  T.eq({ seen.language, seen.transform, seen.access_method, seen.aggregate },
    { 2, 1, 2, 10 }, "objects per kind")
  T.eq(plan.skipped, {}, "nothing left out")
  for _, w in ipairs(plan.warnings) do
    T.nomatch(w.message, "does not migrate", "a warning about something pgtide does not migrate")
  end
  local text = require("tide.plan.report").text(plan, task)
  T.match(text, 'CREATE TRUSTED PROCEDURAL LANGUAGE "My PL" HANDLER pg_catalog%.plpgsql_call_handler INLINE pg_catalog%.plpgsql_inline_handler VALIDATOR pg_catalog%.plpgsql_validator;')
  T.match(text, "CREATE TRANSFORM FOR integer LANGUAGE sql %(\n    FROM SQL WITH FUNCTION pg_catalog%.prsd_lextype%(internal%),\n    TO SQL WITH FUNCTION pg_catalog%.int4recv%(internal%)\n%);")
  T.match(text, "CREATE ACCESS METHOD heap2 TYPE TABLE HANDLER pg_catalog%.heap_tableam_handler;")
  T.nomatch(text, "LANGUAGE plpgsql HANDLER")
  T.match(text, 'REVOKE USAGE ON LANGUAGE "My PL" FROM PUBLIC;')
  T.match(text, "COMMENT ON TRANSFORM FOR integer LANGUAGE sql IS 'a transform';")
  T.match(text, "COMMENT ON ACCESS METHOD heap2 IS 'heap again';")

  -- schema + full: the table on heap2 is created on it and copied.
  local pb = H.playbook(ctx, "langs_aggs", [[migrate = { "schema", "full" }, progress = "none",
    schema = { owners = "source" },]])
  local code, out = H.run("run " .. pb)
  T.eq(code, 0, out)
  T.eq(query(ctx.target_url, [[SELECT a.amname, (SELECT count(*) FROM "Agg Schema"."on heap2") AS n
    FROM pg_class c JOIN pg_am a ON a.oid = c.relam WHERE c.oid = '"Agg Schema"."on heap2"'::regclass]])[1],
    { amname = "heap2", n = 100 })
  -- (pg_dump gives access methods as SET default_table_access_method, which the comparison
  -- below leaves out: asked here.) The materialized view is on heap2 too, and populated.
  T.eq(query(ctx.target_url, [[SELECT a.amname, (SELECT count(*) FROM "Agg Schema".mv2) AS n
    FROM pg_class c JOIN pg_am a ON a.oid = c.relam WHERE c.oid = '"Agg Schema".mv2'::regclass]])[1],
    { amname = "heap2", n = 9 })

  local differences, source_count, target_count = dump_differences(ctx.source_url, ctx.target_url, { exclude_schema = "pgtide" })
  T.eq(differences, {}, "pg_dump differences")
  T.ok(source_count > 25, "pg_dump of the source lists only " .. source_count .. " objects")
  T.eq(source_count, target_count)

  -- The aggregates, the language and the transform answer like the source's.
  local probe = [[SELECT (SELECT row(r.*)::text FROM "Agg Schema".results r) AS r,
           (SELECT string_agg(x::text, ',' ORDER BY i) FROM (SELECT i, "Agg Schema".msum(i) OVER
              (ORDER BY i ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) AS x FROM generate_series(1, 5) i) w) AS w,
           (SELECT count(*) FROM "Agg Schema".mv2) AS mv]]
  local function probe_rows(url)
    local c = assert(tide.connect(url))
    assert(c:exec([[REFRESH MATERIALIZED VIEW "Agg Schema".mv2]]))
    local rows = assert(c:query(probe))
    c:close()
    return rows[1]
  end
  local s, t = probe_rows(ctx.source_url), probe_rows(ctx.target_url)
  T.eq(t, s, "results on the target")
  T.eq(t.mv, 9)

  -- Run again with existing = "skip": every object is found with the same definition.
  local again, again_target = build(make_task(ctx.source_url, ctx.target_url, { schema = { owners = "source", existing = "skip" } }))
  again_target:close()
  T.eq(again.conflicts, {}, "conflicts on the second run")
  local statements = {}
  for _, step in ipairs(again.pre_data) do statements[#statements + 1] = step.key end
  T.eq(statements, {}, "pre-data statements on the second run")
end)

T.test("with select.include, a language, transform and access method come with what needs them", function(ctx)
  load_fixture(ctx.source_url)
  local plan, target = build(make_task(ctx.source_url, ctx.target_url,
    { select = { include = { "Agg Schema.twice", "Agg Schema.on heap2" } } }))
  target:close()
  T.eq(plan.errors, {})
  local reasons = {}
  for _, s in ipairs(plan.skipped) do reasons[s.key] = s.reason end
  for _, key in ipairs({ 'language:"My PL"', "access_method:heap2", 'function:"Agg Schema".twice(i integer)' }) do
    T.ok(plan.by_key[key], key .. " is not selected (" .. tostring(reasons[key]) .. ")")
  end
  T.match(reasons["language:plain_pl"], "no selected object needs it")
  T.match(reasons['access_method:"Odd Index AM"'], "no selected object needs it")
  T.match(reasons["transform:FOR integer LANGUAGE sql"], "no selected object needs it")
end)

T.test("renamed schema: an aggregate's sort operator and support functions follow", function(ctx)
  load_fixture(ctx.source_url)
  local target_url = fresh_db(ctx.target_admin, "t_schema_langs_aggs_rename")
  local task = make_task(ctx.source_url, target_url, { rename = { schema = { ["Agg Schema"] = "aggs" } } })
  local plan, target = build(task)
  T.eq(plan.errors, {}, "plan errors")
  T.eq(plan.conflicts, {}, "plan conflicts")
  schema.run(task, plan, target)
  target:close()
  local text = require("tide.plan.report").text(plan, task)
  T.match(text, "SORTOP = OPERATOR%(aggs%.>>>%)")
  T.match(text, "SORTOP = OPERATOR%(pg_catalog%.>%)")
  T.eq(query(target_url, [[SELECT aggsortop::regoperator::text AS op FROM pg_aggregate
    WHERE aggfnoid = 'aggs.my_min(integer)'::regprocedure]])[1].op, "aggs.>>>(integer,integer)")
  P.exec(target_url, [[INSERT INTO aggs."on heap2" SELECT i, 'v' || i FROM generate_series(1, 100) i]])
  local probe = "SELECT row(r.*)::text AS r FROM %s.results r"
  T.eq(query(target_url, probe:format("aggs"))[1].r, query(ctx.source_url, probe:format('"Agg Schema"'))[1].r)
end)
