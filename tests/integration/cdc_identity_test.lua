-- Tables with GENERATED ALWAYS identity columns on the target: the apply inserts the source's
-- values (OVERRIDING SYSTEM VALUE), never sets such a column in an UPDATE, and reports a
-- changed identity value as a conflict instead of losing it. And a REPLICA IDENTITY FULL table
-- without an index: its rows are found without the target compiling each statement.
local T = require "testlib"
local P = require "pg"
local cdc = require "tide.cdc"
local H = dofile("tests/integration/cdc_lib.lua")
local TT = require "tidetest"

local DDL = [[
CREATE TABLE ids (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v text);
CREATE TABLE tags (hid int GENERATED ALWAYS AS IDENTITY, label text, n int);
ALTER TABLE tags REPLICA IDENTITY FULL;
CREATE TABLE coded (code text PRIMARY KEY, seq bigint GENERATED ALWAYS AS IDENTITY, v int);
]]

local TABLES = { "ids", "tags", "coded" }

T.test("inserts, updates and deletes of identity-always tables while streaming: target = source", function(ctx)
  P.both(ctx, DDL)
  local src = P.connect(ctx.source_url)
  assert(src:exec([[
    INSERT INTO ids (v) SELECT 'v' || g FROM generate_series(1, 50) g;
    INSERT INTO tags (label, n) SELECT 'l' || g % 5, g FROM generate_series(1, 20) g;
    INSERT INTO coded (code, v) SELECT 'c' || g, g FROM generate_series(1, 10) g;]]))
  local ref = {}
  local task = H.task(ctx, "identity", { stop = H.stop_at(ref) })
  local plan = H.plan(src)
  H.setup(ctx, task, plan)
  local h = H.stream(ctx, task, plan)
  assert(src:exec([[
    INSERT INTO ids (v) SELECT 'new' || g FROM generate_series(1, 100) g;
    INSERT INTO ids (id, v) OVERRIDING SYSTEM VALUE VALUES (100000, 'explicit');
    UPDATE ids SET v = v || '!' WHERE id % 3 = 0;
    DELETE FROM ids WHERE id % 7 = 0;
    BEGIN;
    INSERT INTO tags (label, n) VALUES ('in tx', 1);
    INSERT INTO coded (code, v) VALUES ('c11', 11);
    UPDATE ids SET v = 'in tx' WHERE id = 1;
    COMMIT;
    INSERT INTO tags (hid, label, n) OVERRIDING SYSTEM VALUE VALUES (500, 'twin', 0), (500, 'twin', 0);
    UPDATE tags SET n = n + 100 WHERE label = 'l1';
    UPDATE tags SET label = 'one of twins' WHERE ctid = (SELECT ctid FROM tags WHERE hid = 500 LIMIT 1);
    DELETE FROM tags WHERE label = 'l2';
    UPDATE coded SET v = v * 10 WHERE v % 2 = 0;
    DELETE FROM coded WHERE code = 'c5';]]))
  for _ = 1, 20 do assert(src:exec("UPDATE ids SET v = v || '+' WHERE id IN (2, 4)")) end
  ref.lsn = P.lsn(src, true)
  local summary = h:wait()
  T.eq(summary.stopped_by, "condition")
  local tgt = P.connect(ctx.target_url)
  for _, name in ipairs(TABLES) do P.same(src, tgt, name) end
  T.eq(summary.conflicts.update_missing + summary.conflicts.delete_missing + summary.conflicts.insert_exists, 0)
  T.ok(summary.status.batched_inserts > 0, "inserts went several rows to a statement too")
  T.ok(summary.status.merged_changes > 0, "updates of one row were folded too")
  T.eq(assert(tgt:query("SELECT attidentity::text AS i FROM pg_attribute WHERE attrelid = 'tags'::regclass " ..
                        "AND attname = 'hid'"))[1].i, "a", "the target column is still GENERATED ALWAYS")
  H.release(ctx, task)
  src:close(); tgt:close()
end)

T.test("an identity value changed on the source (SET ... = DEFAULT) stops as a conflict", function(ctx)
  P.both(ctx, "DROP TABLE IF EXISTS ids, tags, coded;" .. DDL)
  local src = P.connect(ctx.source_url)
  assert(src:exec("INSERT INTO coded (code, v) SELECT 'c' || g, g FROM generate_series(1, 10) g"))
  local ref = {}
  local task = H.task(ctx, "identity_changed", { stop = H.stop_at(ref) })
  local plan = H.plan(src)
  H.setup(ctx, task, plan)
  local h = H.stream(ctx, task, plan)
  assert(src:exec("UPDATE coded SET seq = DEFAULT, v = -1 WHERE code = 'c3'"))
  ref.lsn = P.lsn(src, true)
  local ok, err = pcall(h.wait, h)
  T.eq(ok, false)
  T.match(tostring(err), "update_missing")
  T.match(tostring(err), "code='c3'")
  local tgt = P.connect(ctx.target_url)
  T.eq(assert(tgt:query("SELECT v FROM coded WHERE code = 'c3'"))[1].v, 3, "the row was not written with a wrong value")
  H.release(ctx, task)
  src:close(); tgt:close()
end)

T.test("through the real plan: the schema phase makes GENERATED ALWAYS columns, the stream fills them", function(ctx)
  local s, t = P.connect_both(ctx)
  for _, c in ipairs({ s, t }) do
    assert(c:exec("DROP SCHEMA IF EXISTS public CASCADE; DROP SCHEMA IF EXISTS pgtide CASCADE; CREATE SCHEMA public"))
  end
  assert(s:exec(DDL))
  assert(s:exec([[
    INSERT INTO ids (v) SELECT 'v' || g FROM generate_series(1, 30) g;
    INSERT INTO tags (label, n) SELECT 'l' || g % 4, g FROM generate_series(1, 12) g;
    INSERT INTO coded (code, v) SELECT 'c' || g, g FROM generate_series(1, 6) g;]]))
  local pb = TT.playbook(ctx, "identity_plan", [[migrate = { "schema", "full", "incremental" }, progress = "none",
    incremental = { heartbeat_interval = 0.2 },]])
  local task = require("tide.playbook").load(pb)
  local source, target = require("tide.connect").open_both(task)
  local plan = require("tide.plan").build(task, source, target)
  require("tide.schema").apply_pre(task, plan, target)
  local info = cdc.prepare(task, plan, source, target)
  require("tide.full").run(task, plan, source, target, { snapshot = info.snapshot, stream = true,
    on_imported = function() info.hold:close(); info.hold = nil end })
  cdc.copy_done(task, info, target)
  assert(s:exec([[
    INSERT INTO ids (v) SELECT 'new' || g FROM generate_series(1, 40) g;
    UPDATE ids SET v = 'u' WHERE id % 4 = 0;
    DELETE FROM ids WHERE id % 5 = 0;
    INSERT INTO tags (label, n) VALUES ('new', 0);
    UPDATE tags SET n = -n WHERE label = 'l1';
    DELETE FROM tags WHERE label = 'l3';
    INSERT INTO coded (code, v) VALUES ('c7', 7);
    UPDATE coded SET v = 0 WHERE code IN ('c1', 'c7');]]))
  local stop = assert(s:query("SELECT pg_current_wal_insert_lsn()::text AS l"))[1].l
  local run = require("tide.taskrun").new(task)
  run:set_stop_condition(function(st) return st.applied >= require("tide.when").lsn_number(stop) end)
  local summary = cdc.stream(run, plan, source, target, { quiet = true })
  T.eq(summary.stopped_by, "condition")
  local kinds = assert(t:query([[
SELECT string_agg(attrelid::regclass || '.' || attname, ',' ORDER BY attrelid::regclass::text, attname) AS c
FROM pg_attribute WHERE attidentity = 'a' AND attrelid IN ('ids'::regclass, 'tags'::regclass, 'coded'::regclass)]]))
  T.eq(kinds[1].c, "coded.seq,ids.id,tags.hid", "the target's identity columns are GENERATED ALWAYS")
  for _, rel in ipairs(TABLES) do T.eq(P.fingerprint(t, rel), P.fingerprint(s, rel), rel) end
  T.eq(summary.conflicts.update_missing + summary.conflicts.delete_missing + summary.conflicts.insert_exists, 0)
  cdc.release(task, source, target)
  source:close(); target:close(); s:close(); t:close()
end)

-- A table with REPLICA IDENTITY FULL and no index: the apply session plans with enable_seqscan
-- = off, which priced every statement on such a table over jit_above_cost, and the target
-- compiled each one (about 40 ms a row: a catch-up of 1,000 rows took 24 s). auto_explain,
-- loaded for the target database, logs each applied statement's plan; none may say "JIT:".
T.test("REPLICA IDENTITY FULL without an index: applied statements are not JIT-compiled on the target", function(ctx)
  local src, tgt = P.clean(ctx)
  P.both(ctx, "CREATE TABLE jlog (id int, note text); ALTER TABLE jlog REPLICA IDENTITY FULL")
  if not assert(tgt:query("SELECT pg_catalog.pg_jit_available() AS j"))[1].j then
    T.skip("the target server has no JIT")
  end
  local db = assert(tgt:query("SELECT current_database() AS d"))[1].d
  local quoted = tgt:quote_ident(db)
  assert(tgt:exec("ALTER DATABASE " .. quoted .. " SET session_preload_libraries = 'auto_explain';" ..
    "ALTER DATABASE " .. quoted .. " SET auto_explain.log_min_duration = 0"))
  local logfile = assert(os.getenv("PGTIDE_CLUSTER_DIR"), "PGTIDE_CLUSTER_DIR") .. "/target.log"
  local before = #TT.read(logfile)
  assert(src:exec("INSERT INTO jlog SELECT g, 'n' || g FROM generate_series(1, 60) g"))
  local ref = {}
  local task = H.task(ctx, "identity_full_jit", { stop = H.stop_at(ref) })
  local plan = H.plan(src)
  local ok, err = pcall(function()
    H.setup(ctx, task, plan)
    local h = H.stream(ctx, task, plan)
    for i = 1, 40 do
      assert(src:exec(string.format("UPDATE jlog SET note = note || '!' WHERE id = %d; DELETE FROM jlog WHERE id = %d",
                                    i, 60 - i)))
    end
    ref.lsn = P.lsn(src, true)
    T.eq(h:wait().stopped_by, "condition")
    P.same(src, tgt, "jlog")
  end)
  assert(tgt:exec("ALTER DATABASE " .. quoted .. " RESET ALL"))
  H.release(ctx, task)
  if not ok then error(err, 0) end
  local logged = TT.read(logfile):sub(before + 1)
  local applied, jit = 0, 0
  for entry in logged:gmatch("duration:.-\n(.-)\n[^\t ]") do
    if entry:find('"public"."jlog"', 1, true) and entry:find("DELETE FROM", 1, true) then
      applied = applied + 1
      if entry:find("JIT:", 1, true) then jit = jit + 1 end
    end
  end
  T.ok(applied >= 10, "auto_explain logged the applied deletes (" .. applied .. ")")
  T.eq(jit, 0, "applied deletes compiled by JIT")
  src:close(); tgt:close()
end)
