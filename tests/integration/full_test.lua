-- The full load on real servers: equality for every common type, the snapshot, table splitting,
-- SIGKILL in the middle and resume, bad row filters, existing data.
local T = require "testlib"
local P = require "pg"
local tide = require "tide"
local H = require "tidetest"

local TABLES = { "public.kinds", 'public."Mixed Case ""Table"""', "public.no_key", "public.empty_table",
                 "public.events", "public.events_2020", "public.events_2021_a", "public.events_2021_other",
                 "only public.parent_inh", "public.child_inh", "public.child_fk" }

local function load_fixture(ctx)
  local s = assert(tide.connect(ctx.source_url))
  local f = assert(io.open("tests/fixtures/full_types.sql"))
  assert(s:exec(f:read("a")))
  f:close()
  return s
end

local function reset(ctx)
  for _, url in ipairs({ ctx.source_url, ctx.target_url }) do
    local c = assert(tide.connect(url))
    assert(c:exec("DROP SCHEMA IF EXISTS public CASCADE; DROP SCHEMA IF EXISTS pgtide CASCADE; CREATE SCHEMA public;" ..
                  "DROP TYPE IF EXISTS mood; DROP EXTENSION IF EXISTS pg_trgm"))
    c:close()
  end
end

local function compare_all(s, t)
  for _, rel in ipairs(TABLES) do
    local cols = rel == "public.kinds" and "(t.id, t.i2, t.i4, t.i8, t.n, t.n2, t.f4, t.f8, t.b, t.t, t.vc, t.ch, t.by, t.d, t.ts, t.tstz, t.tm, t.tmtz, t.iv, t.u, t.js::text, t.jb, t.x::text, t.ip, t.cidr_, t.mac, t.arr_i, t.arr_t, t.arr_2d, t.rng, t.trng, t.pt, t.bx::text, t.bits, t.m, t.pos, t.big, t.gen)::text" or nil
    T.eq(P.fingerprint(t, rel, cols), P.fingerprint(s, rel, cols), "table " .. rel .. " differs")
  end
end

T.test("schema + full copies every type exactly, with generated columns recomputed", function(ctx)
  reset(ctx)
  local s = load_fixture(ctx)
  local pb = H.playbook(ctx, "full1", [[migrate = { "schema", "full" }, full = { jobs = 3 }, progress = "plain",]])
  local code, out = H.run("run " .. pb)
  T.eq(code, 0, out)
  T.match(out, "full: public.kinds copied, 3003 rows")
  local t = assert(tide.connect(ctx.target_url))
  compare_all(s, t)
  -- sequences follow the source; the target's indexes and FKs exist and work
  T.eq(assert(t:query("SELECT last_value FROM counter"))[1].last_value, 141)
  T.eq(assert(t:query("SELECT count(*) AS n FROM pg_indexes WHERE tablename = 'kinds'"))[1].n, 3)
  local _, err = t:exec("INSERT INTO child_fk VALUES (1000, 999999)")
  T.eq(err and err.sqlstate, "23503", "the foreign key must be in place")
  -- a finished task run again says so and writes nothing (tests/integration/finished_test.lua)
  code, out = H.run("run " .. pb)
  T.eq(code, 0, out)
  T.match(out, "task full1 already finished")
  compare_all(s, t)
  s:close(); t:close()
end)

T.test("the copy equals the snapshot: writes after it do not leak in", function(ctx)
  reset(ctx)
  local s = load_fixture(ctx)
  local pb = H.playbook(ctx, "snap", [[migrate = { "schema", "full" }, progress = "none",]])
  local task = require("tide.playbook").load(pb)
  local connect = require "tide.connect"
  local source, target = connect.open_both(task)
  local plan = require("tide.plan").build(task, source, target)
  require("tide.schema").apply_pre(task, plan, target)
  -- Export a snapshot, fingerprint the tables inside it, then change the source.
  local holder = assert(tide.connect(ctx.source_url))
  assert(holder:exec("BEGIN ISOLATION LEVEL REPEATABLE READ"))
  local snapshot = assert(holder:query("SELECT pg_export_snapshot() AS s"))[1].s
  local expected = {}
  for _, rel in ipairs(TABLES) do expected[rel] = P.fingerprint(holder, rel) end
  assert(s:exec("UPDATE kinds SET t = 'changed' WHERE id % 10 = 0; DELETE FROM no_key WHERE a = 5; " ..
                "INSERT INTO empty_table VALUES (1, 'late'); INSERT INTO events VALUES (99999, '2020-06-01', 'b')"))
  local stats = require("tide.full").run(task, plan, source, target, { snapshot = snapshot })
  holder:exec("COMMIT")
  T.ok(stats.rows > 0)
  local t = assert(tide.connect(ctx.target_url))
  for _, rel in ipairs(TABLES) do T.eq(P.fingerprint(t, rel), expected[rel], "table " .. rel) end
  source:close(); target:close(); s:close(); t:close(); holder:close()
end)

T.test("tables split by integer key and by ctid equal their source", function(ctx)
  reset(ctx)
  local s = load_fixture(ctx)
  local pb = H.playbook(ctx, "split", [[migrate = { "schema", "full" }, progress = "none",
    full = { jobs = 4, split_larger_than = "64kB" },]])
  local code, out = H.run("run " .. pb)
  T.eq(code, 0, out)
  local t = assert(tide.connect(ctx.target_url))
  local parts = assert(t:query("SELECT table_key, count(*) AS n, min(range_kind) AS kind FROM pgtide.copy_parts " ..
                               "WHERE task = 'split' GROUP BY 1 ORDER BY 1"))
  local by = {}
  for _, r in ipairs(parts) do by[r.table_key] = r end
  T.ok(by["public.kinds"].n > 1 and by["public.kinds"].kind == "key", "kinds split by key")
  T.ok(by["public.no_key"].n > 1 and by["public.no_key"].kind == "ctid", "no_key split by ctid")
  compare_all(s, t)
  s:close(); t:close()
end)

T.test("SIGKILL in the middle of the copy, then run again: identical data, no duplicates", function(ctx)
  reset(ctx)
  local s = load_fixture(ctx)
  assert(s:exec("CREATE TABLE bulk (id int PRIMARY KEY, pad text); INSERT INTO bulk SELECT g, repeat('p', 300) FROM generate_series(1, 120000) g"))
  table.insert(TABLES, "public.bulk")
  local pb = H.playbook(ctx, "killed", [[migrate = { "schema", "full" }, progress = "plain",
    full = { jobs = 1, split_larger_than = "256kB" },]])
  local proc, log = H.start(ctx, "run " .. pb, "killed")
  local t = assert(tide.connect(ctx.target_url))
  local mid = P.poll(60, function()
    local r = t:query("SELECT count(*) FILTER (WHERE done_at IS NOT NULL) AS done, count(*) AS total FROM pgtide.copy_parts WHERE task = 'killed'")
    return r and r[1] and r[1].done >= 2 and r[1].done < r[1].total - 2 and r[1]
  end)
  T.ok(mid, "never saw the copy half done: " .. H.read(log))
  proc:kill(9)
  local _, signal = proc:wait()
  T.eq(signal, 9)
  local code, out = H.run("run " .. pb)
  T.eq(code, 0, out)
  T.match(out, "resuming task killed")
  T.match(out, "new snapshot")
  compare_all(s, t)
  T.eq(P.fingerprint(t, "public.bulk"), P.fingerprint(s, "public.bulk"))
  table.remove(TABLES)
  s:close(); t:close()
end)

T.test("a row filter that is not valid SQL fails before any data moves, naming the table", function(ctx)
  reset(ctx)
  local s = load_fixture(ctx)
  local pb = H.playbook(ctx, "badfilter", [[migrate = { "schema", "full" }, progress = "none",
    select = { rows = { ["public.kinds"] = "id >>> 5" } },]])
  local code, out = H.run("run " .. pb)
  T.eq(code, 3, out)
  T.match(out, "select.rows%[\"public.kinds\"%]")
  T.match(out, "operator does not exist")
  local t = assert(tide.connect(ctx.target_url))
  T.eq(assert(t:query("SELECT to_regclass('public.kinds') IS NULL AS absent, to_regnamespace('pgtide') IS NULL AS no_state"))[1],
       { absent = true, no_state = true })
  s:close(); t:close()
end)

T.test("row filters and column lists apply", function(ctx)
  reset(ctx)
  local s = load_fixture(ctx)
  local pb = H.playbook(ctx, "filtered", [[migrate = { "schema", "full" }, progress = "none",
    select = { exclude = { "public.events*", "public.*inh", "public.child_fk", "public.empty_table", "public.Mixed*" },
               rows = { ["public.kinds"] = "id % 2 = 0" },
               columns = { ["public.no_key"] = { exclude = { "b" } } } },]])
  local code, out = H.run("run " .. pb)
  T.eq(code, 0, out)
  local t = assert(tide.connect(ctx.target_url))
  T.eq(P.fingerprint(t, "public.kinds", "t.id::text"), P.fingerprint(s, "(SELECT * FROM kinds WHERE id % 2 = 0)", "t.id::text"))
  T.eq(assert(t:query("SELECT count(*) AS n FROM information_schema.columns WHERE table_name = 'no_key'"))[1].n, 1)
  T.eq(P.fingerprint(t, "public.no_key", "t.a::text"), P.fingerprint(s, "public.no_key", "t.a::text"))
  s:close(); t:close()
end)

T.test("existing rows on the target: error by default, truncate and append on request", function(ctx)
  reset(ctx)
  local s = assert(tide.connect(ctx.source_url))
  assert(s:exec("CREATE TABLE keep (id int PRIMARY KEY, v text); INSERT INTO keep SELECT g, 's' FROM generate_series(1, 100) g"))
  local t = assert(tide.connect(ctx.target_url))
  assert(t:exec("CREATE TABLE keep (id int PRIMARY KEY, v text); INSERT INTO keep VALUES (1000, 'target row')"))
  local pb = H.playbook(ctx, "exist1", [[migrate = { "full" }, progress = "none",]])
  local code, out = H.run("run " .. pb)
  T.eq(code, 5, out)
  T.match(out, "already hold rows")
  T.eq(assert(t:query("SELECT count(*) AS n FROM keep"))[1].n, 1)
  pb = H.playbook(ctx, "exist2", [[migrate = { "full" }, progress = "none", full = { existing = "append" },]])
  code, out = H.run("run " .. pb)
  T.eq(code, 0, out)
  T.eq(assert(t:query("SELECT count(*) AS n FROM keep"))[1].n, 101)
  pb = H.playbook(ctx, "exist3", [[migrate = { "full" }, progress = "none", full = { existing = "truncate" },]])
  code, out = H.run("run " .. pb)
  T.eq(code, 0, out)
  T.eq(P.fingerprint(t, "keep"), P.fingerprint(s, "keep"))
  -- The existing table's own trigger does not fire for copied rows (session_replication_role
  -- = replica, as for applied changes); one marked ENABLE ALWAYS does, as the precheck says.
  assert(t:exec([[CREATE TABLE keep_audit (id int, via text);
CREATE FUNCTION keep_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO keep_audit VALUES (NEW.id, TG_NAME); RETURN NEW; END $$;
CREATE TRIGGER ordinary AFTER INSERT ON keep FOR EACH ROW EXECUTE FUNCTION keep_audit();
CREATE TRIGGER always AFTER INSERT ON keep FOR EACH ROW EXECUTE FUNCTION keep_audit();
ALTER TABLE keep ENABLE ALWAYS TRIGGER always;]]))
  pb = H.playbook(ctx, "exist4", [[migrate = { "full" }, progress = "none", full = { existing = "truncate" },]])
  out = select(2, H.run("check " .. pb))
  T.match(out, 'trigger "?always"? on the target table public%.keep %(ENABLE ALWAYS%) fires for every row')
  T.nomatch(out, 'trigger "?ordinary"?')
  code, out = H.run("run " .. pb)
  T.eq(code, 0, out)
  T.eq(assert(t:query("SELECT count(*) FILTER (WHERE via = 'ordinary') AS o, count(*) FILTER (WHERE via = 'always') AS a FROM keep_audit"))[1],
       { o = 0, a = 100 })
  s:close(); t:close()
end)

T.test("large objects are copied with their OIDs and data, under the snapshot", function(ctx)
  reset(ctx)
  local s = assert(tide.connect(ctx.source_url))
  s:exec("SELECT lo_unlink(oid) FROM pg_largeobject_metadata")
  assert(s:exec("CREATE TABLE docs (id int PRIMARY KEY, blob oid)"))
  local big = string.rep("0123456789abcdef", 200000)   -- 3.2 MB: several chunks
  assert(s:query("INSERT INTO docs VALUES (1, lo_from_bytea(424242, $1)), (2, lo_from_bytea(0, $2))",
                 tide.bytea(big), tide.bytea("\0\1\2small")))
  local t = assert(tide.connect(ctx.target_url))
  t:exec("SELECT lo_unlink(oid) FROM pg_largeobject_metadata")
  local pb = H.playbook(ctx, "lobs", [[migrate = { "schema", "full" }, progress = "plain",]])
  local code, out = H.run("run " .. pb)
  T.eq(code, 0, out)
  T.match(out, "large_objects copied, 2 rows")
  local rows = assert(t:query("SELECT d.id, md5(lo_get(d.blob)) AS h, length(lo_get(d.blob)) AS n FROM docs d ORDER BY id"))
  local want = assert(s:query("SELECT d.id, md5(lo_get(d.blob)) AS h, length(lo_get(d.blob)) AS n FROM docs d ORDER BY id"))
  T.eq(rows, want)
  T.eq(rows[1].n, #big)
  T.eq(assert(t:query("SELECT count(*) AS n FROM pg_largeobject_metadata WHERE oid = 424242"))[1].n, 1)
  s:exec("SELECT lo_unlink(oid) FROM pg_largeobject_metadata")
  t:exec("SELECT lo_unlink(oid) FROM pg_largeobject_metadata")
  s:close(); t:close()
end)

T.test("a whole table of 1 MB or more is loaded frozen (TRUNCATE + COPY FREEZE); a small empty one without TRUNCATE", function(ctx)
  reset(ctx)
  local s = assert(tide.connect(ctx.source_url))
  assert(s:exec([[
CREATE TABLE big (id int PRIMARY KEY, pad text);
INSERT INTO big SELECT g, repeat(md5(g::text), 3) FROM generate_series(1, 20000) g;
CREATE TABLE small (id int PRIMARY KEY, pad text);
INSERT INTO small SELECT g, md5(g::text) FROM generate_series(1, 100) g;
ANALYZE]]))
  T.ok(assert(s:query("SELECT pg_relation_size('big') AS b"))[1].b >= 1024 * 1024, "big is at least 1 MB")
  local pb = H.playbook(ctx, "freeze", [[migrate = { "schema", "full" }, progress = "none",]])
  local code, out = H.run("run " .. pb)
  T.eq(code, 0, out)
  local t = assert(tide.connect(ctx.target_url))
  assert(t:exec("CREATE EXTENSION IF NOT EXISTS pg_visibility"))
  local function all_frozen(rel)
    return assert(t:query("SELECT bool_and(all_frozen) AS f FROM pg_visibility_map($1::regclass)", rel))[1].f
  end
  T.eq(all_frozen("big"), true, "COPY FREEZE after TRUNCATE")
  T.eq(all_frozen("small"), false, "plain COPY: no TRUNCATE for a table this small")
  for _, rel in ipairs({ "big", "small" }) do T.eq(P.fingerprint(t, rel), P.fingerprint(s, rel), rel) end
  assert(t:exec("DROP EXTENSION pg_visibility"))
  s:close(); t:close()
end)
