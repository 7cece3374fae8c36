-- Folding updates of one row inside a group (engine/cdc/apply_merge.c): more distinct rows than
-- the window holds, repeated updates of each, out-of-line (TOAST) values left unchanged by
-- some updates and changed by others, deletes and re-inserts of folded rows; and a table with
-- a second unique index, where folding could break a constraint row by row, is not folded.
local T = require "testlib"
local P = require "pg"
local tide = require "tide"
local H = dofile("tests/integration/cdc_lib.lua")

local DDL = [[
DROP TABLE IF EXISTS hot, mails;
CREATE TABLE hot (id int PRIMARY KEY, n int NOT NULL, doc text);
CREATE TABLE mails (id int PRIMARY KEY, email text NOT NULL UNIQUE, n int);
]]

-- Random-looking text that compresses badly, so it is stored out of line.
local BIG = "(SELECT string_agg(md5(g::text || random()::text), '') FROM generate_series(1, 120) g)"

-- Streams `task` while `sql` runs on the source, which must stop the task: its error as text.
local function stops(ctx, task, plan, src, ref, sql)
  local h = H.stream(ctx, task, plan)
  assert(src:exec(sql))
  ref.lsn = P.lsn(src, true)
  local ok, err = pcall(h.wait, h)
  T.ok(not ok, "the task stopped")
  return tostring(type(err) == "table" and (err.message or "") .. " " .. tostring(err.context) ..
                  " " .. tostring(err.detail) or err)
end

T.test("more rows than the merge window, each updated three times in one transaction", function(ctx)
  P.both(ctx, DDL)
  local src = P.connect(ctx.source_url)
  local tgt = P.connect(ctx.target_url)
  local ref = {}
  local task = H.task(ctx, "merge", { stop = H.stop_at(ref) })
  local plan = H.plan(src)
  H.setup(ctx, task, plan)
  -- Rows with an out-of-line doc exist on both sides before the stream starts.
  assert(src:exec("INSERT INTO hot SELECT g, 0, " .. BIG .. " FROM generate_series(1, 3000) g"))
  assert(src:exec("INSERT INTO mails SELECT g, 'm' || g, 0 FROM generate_series(1, 3) g"))
  local h = H.stream(ctx, task, plan)
  -- 3,000 keys (the window holds 1,024 per table), three updates of each in a row: the doc is
  -- left as it is (sent as "unchanged"), except that every 100th row gets a new doc in its
  -- second update, which its third update (doc unchanged again) must keep.
  assert(src:exec([[
DO $$
BEGIN
  FOR k IN 1..3000 LOOP
    UPDATE hot SET n = n + 1 WHERE id = k;
    IF k % 100 = 0 THEN
      UPDATE hot SET n = n + 10, doc = ]] .. BIG .. [[ WHERE id = k;
    ELSE
      UPDATE hot SET n = n + 10 WHERE id = k;
    END IF;
    UPDATE hot SET n = n + 100 WHERE id = k;
  END LOOP;
END $$]]))
  -- A folded row deleted and inserted again in the same transaction, then updated.
  assert(src:exec([[BEGIN;
UPDATE hot SET n = -1 WHERE id = 7;
UPDATE hot SET n = -2 WHERE id = 7;
DELETE FROM hot WHERE id = 7;
INSERT INTO hot VALUES (7, 70, 'again');
UPDATE hot SET n = 71 WHERE id = 7;
UPDATE hot SET n = 72 WHERE id = 7;
COMMIT]]))
  -- A second unique index: row by row, id 1 must give up 'm1' before id 2 takes it, and id 2
  -- gives up 'm2' before id 1 takes that; folding id 1's updates would break the constraint.
  assert(src:exec([[BEGIN;
UPDATE mails SET email = 'tmp' WHERE id = 1;
UPDATE mails SET email = 'm1' WHERE id = 2;
UPDATE mails SET email = 'm2' WHERE id = 1;
UPDATE mails SET n = n + 1 WHERE id = 1;
COMMIT]]))
  ref.lsn = P.lsn(src, true)
  local summary = assert(h:wait())
  T.eq(summary.stopped_by, "condition")
  P.same(src, tgt, "hot")
  P.same(src, tgt, "mails")
  T.eq(assert(tgt:query("SELECT count(*) AS n FROM hot WHERE n = 111"))[1].n, 2999, "every row got its three updates")
  T.eq(assert(tgt:query("SELECT n, doc FROM hot WHERE id = 7"))[1].doc, "again")
  T.eq(assert(tgt:query("SELECT email FROM mails WHERE id = 1"))[1].email, "m2")
  -- Of each hot row's three updates (9,000), the second and third fold into the first: 6,000.
  -- id 7 again: -2 folds into -1, the delete sends both, 72 folds into 71: 2 more. The mails
  -- updates are never folded.
  T.eq(summary.status.merged_changes, 6002, "folded updates")
  -- The folded rows went up to 64 to a statement (those setting the doc apart from the others).
  T.ok(summary.status.batched_updates >= 2900, "updates sent several rows to a statement: " ..
       tostring(summary.status.batched_updates))
  T.eq(summary.conflicts.update_missing + summary.conflicts.delete_missing + summary.conflicts.insert_exists, 0)
  H.release(ctx, task)
  src:close(); tgt:close()
end)

T.test("inserts go several rows to a statement, in order with the table's other changes", function(ctx)
  P.both(ctx, [[
DROP TABLE IF EXISTS hot, mails, logs, items;
CREATE TABLE logs (at int, what text, n numeric);
CREATE TABLE items (id int PRIMARY KEY, v text, n int);
]])
  local src = P.connect(ctx.source_url)
  local tgt = P.connect(ctx.target_url)
  local ref = {}
  local task = H.task(ctx, "batch", { stop = H.stop_at(ref) })
  local plan = H.plan(src)
  H.setup(ctx, task, plan)
  local h = H.stream(ctx, task, plan)
  -- 100 rows (statements of 64, 32 and 4), NULLs among them; inserts of items interleaved with
  -- an update and a delete of rows inserted just before, and an insert re-using a deleted key.
  assert(src:exec([[BEGIN;
INSERT INTO logs SELECT g, CASE WHEN g % 7 = 0 THEN NULL ELSE 'w' || g END, g / 3.0 FROM generate_series(1, 100) g;
INSERT INTO items SELECT g, 'v' || g, 0 FROM generate_series(1, 40) g;
UPDATE items SET n = 1 WHERE id = 5;
INSERT INTO items SELECT g, 'late' || g, 0 FROM generate_series(41, 50) g;
DELETE FROM items WHERE id = 3;
INSERT INTO items VALUES (3, 'back', 3);
INSERT INTO logs VALUES (101, 'last', NULL);
COMMIT]]))
  ref.lsn = P.lsn(src, true)
  local summary = assert(h:wait())
  P.same(src, tgt, "logs")
  P.same(src, tgt, "items")
  T.eq(assert(tgt:query("SELECT v FROM items WHERE id = 3"))[1].v, "back")
  T.ok(summary.status.batched_inserts >= 100 + 40, "rows went in statements of several: " ..
       tostring(summary.status.batched_inserts))
  H.release(ctx, task)

  -- A row that already exists on the target, among rows sent together: the task stops, naming
  -- the batch, its LSN range and (in the detail) the row; nothing of the group is applied.
  assert(tgt:exec("INSERT INTO items VALUES (520, 'only on the target', 0)"))
  local task2 = H.task(ctx, "batchdup", { stop = H.stop_at(ref) })
  H.setup(ctx, task2, plan, { snapshot = false })
  local text = stops(ctx, task2, plan, src, ref,
                     "INSERT INTO items SELECT g, 'new', 0 FROM generate_series(500, 530) g")
  T.ok(text:find("inserts sent together", 1, true) and text:find("(id)=(520)", 1, true), text)
  T.eq(assert(tgt:query("SELECT count(*) AS n FROM items WHERE id BETWEEN 500 AND 530"))[1].n, 1,
       "nothing of the failed group was applied")
  H.release(ctx, task2)
  src:close(); tgt:close()
end)

-- Folded updates sent several rows to a statement (engine/cdc/apply_merge.c): the rows' values
-- take the types of the target's columns (an enum, a domain, arrays, jsonb, bytea, a padded
-- char key, numeric with a scale), names that look like the statement's own (a table and
-- columns called pgtide_v, i, c1), a two-column key, NULLs set, out-of-line values kept or
-- changed; and a row missing on the target among them stops the task naming that row.
T.test("updates go several rows to a statement, typed by the target's columns", function(ctx)
  P.both(ctx, [[
DROP TABLE IF EXISTS "pgtide_v", ident_rows;
DROP TYPE IF EXISTS mood;
DROP DOMAIN IF EXISTS posint;
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN posint AS int CHECK (VALUE > 0);
CREATE TABLE "pgtide_v" ("K 1" char(6), k2 int, i jsonb, c1 numeric(10, 2), "pgtide_v" int[], ts timestamptz,
                         b bytea, m mood, d posint, doc text, PRIMARY KEY ("K 1", k2));
CREATE TABLE ident_rows (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, n int);
INSERT INTO "pgtide_v"
SELECT 'k' || g, g, jsonb_build_object('g', g), g / 7.0, ARRAY[g, g + 1],
       '2026-01-01 10:00+00'::timestamptz + g * interval '1 min',
       '\x00ff', 'ok', g,
       CASE WHEN g % 50 = 0 THEN (SELECT string_agg(md5(g::text || x::text), '') FROM generate_series(1, 200) x)
            ELSE 'short' END
FROM generate_series(1, 400) g;
INSERT INTO ident_rows (n) SELECT g FROM generate_series(1, 100) g;
]])
  -- (both sides hold the same rows before the stream starts)
  local src = P.connect(ctx.source_url)
  local tgt = P.connect(ctx.target_url)
  local ref = {}
  local task = H.task(ctx, "batchupd", { stop = H.stop_at(ref) })
  local plan = H.plan(src)
  H.setup(ctx, task, plan, { snapshot = false })
  local h = H.stream(ctx, task, plan)
  assert(src:exec([[BEGIN;
UPDATE "pgtide_v" SET i = i || '{"u": 1}', c1 = c1 + 0.01, "pgtide_v" = "pgtide_v" || 9, ts = ts + interval '1 day',
       b = b || '\x01', m = 'happy', d = d + 1 WHERE k2 <= 300;
UPDATE "pgtide_v" SET i = NULL, m = NULL WHERE k2 % 3 = 0 AND k2 <= 300;
UPDATE "pgtide_v" SET doc = ]] .. BIG .. [[ WHERE k2 % 100 = 0;
UPDATE "pgtide_v" SET c1 = -1 WHERE k2 > 300;
UPDATE ident_rows SET n = n * 2;
COMMIT]]))
  ref.lsn = P.lsn(src, true)
  local summary = assert(h:wait())
  P.same(src, tgt, '"pgtide_v"')
  P.same(src, tgt, "ident_rows")
  T.ok(summary.status.batched_updates >= 384, "rows sent several to a statement: " ..
       tostring(summary.status.batched_updates))
  T.eq(summary.conflicts.update_missing, 0)
  H.release(ctx, task)

  -- A row missing on the target among rows sent together: the task stops naming that row.
  assert(tgt:exec([[DELETE FROM "pgtide_v" WHERE k2 = 150]]))
  local task2 = H.task(ctx, "batchupd2", { stop = H.stop_at(ref) })
  H.setup(ctx, task2, plan, { snapshot = false })
  local text = stops(ctx, task2, plan, src, ref, [[UPDATE "pgtide_v" SET d = d + 1 WHERE k2 BETWEEN 100 AND 227]])
  T.ok(text:find("update_missing", 1, true) and text:find("k2='150'", 1, true) and text:find("LSN", 1, true), text)
  T.eq(assert(tgt:query([[SELECT count(*) AS n FROM "pgtide_v" WHERE k2 BETWEEN 100 AND 227 AND d = k2 + 1]]))[1].n,
       127, "nothing of the failed group was applied")
  H.release(ctx, task2)
  src:close(); tgt:close()
end)

-- A target whose rows are not unique on the source's key (its one unique index is on a column of
-- its own): an update sent with others finds two rows for one key and none for another. The
-- row found twice must not hide the row not found.
T.test("updates sent together: a key found twice on the target does not hide a row not found", function(ctx)
  P.both(ctx, "DROP TABLE IF EXISTS twice")
  local src = P.connect(ctx.source_url)
  local tgt = P.connect(ctx.target_url)
  assert(src:exec([[CREATE TABLE twice (id int PRIMARY KEY, code text NOT NULL, n int);
INSERT INTO twice SELECT g, 'c' || g, 0 FROM generate_series(1, 8) g]]))
  assert(tgt:exec([[CREATE TABLE twice (id int NOT NULL, code text NOT NULL, n int, extra serial UNIQUE);
INSERT INTO twice SELECT g, 'c' || g, 0 FROM generate_series(1, 8) g WHERE g <> 7;
INSERT INTO twice VALUES (5, 'c5', 0)]]))
  local ref = {}
  local task = H.task(ctx, "twice", { stop = H.stop_at(ref) })
  local plan = H.plan(src)
  H.setup(ctx, task, plan, { snapshot = false })
  local text = stops(ctx, task, plan, src, ref, "BEGIN; UPDATE twice SET n = 1 WHERE id IN (5, 7); COMMIT")
  T.ok(text:find("update_missing", 1, true) and text:find("id='7'", 1, true), text)
  H.release(ctx, task)
  src:close(); tgt:close()
end)

-- A backlog (transactions committed more than a second before they are applied) goes in long
-- groups even though the stream's bursts end often while catching up: the hot rows of many
-- transactions fold into one update per group (engine/cdc/apply.c, apply_burst_end).
T.test("a backlog is applied in long groups, its hot rows folded across transactions", function(ctx)
  P.both(ctx, [[DROP TABLE IF EXISTS counters, ledger;
CREATE TABLE counters (id int PRIMARY KEY, n int NOT NULL);
CREATE TABLE ledger (id bigserial PRIMARY KEY, counter int, delta int);
INSERT INTO counters SELECT g, 0 FROM generate_series(1, 20) g]])
  local src, tgt = P.connect(ctx.source_url), P.connect(ctx.target_url)
  local ref = {}
  -- group_ms of a second: a slow machine (a sanitizer build) applies the backlog in more time
  -- than 12 groups of the default 100 ms would hold
  local task = H.task(ctx, "backlog", { stop = H.stop_at(ref), incremental = { group_ms = 1000 } })
  local plan = H.plan(src)
  H.setup(ctx, task, plan, { snapshot = false })
  local parts = {}
  for i = 1, 4000 do
    parts[#parts + 1] = string.format(
      "BEGIN; UPDATE counters SET n = n + 1 WHERE id = %d; INSERT INTO ledger (counter, delta) VALUES (%d, 1); COMMIT;",
      1 + i % 20, 1 + i % 20)
  end
  assert(src:exec(table.concat(parts, "\n")))
  ref.lsn = P.lsn(src, true)
  local written = tide.now()
  P.wait_for("the backlog to be a second old", function() return tide.now() - written > 1.5 end)
  local summary = assert(H.stream(ctx, task, plan):wait())
  P.same(src, tgt, "counters")
  P.same(src, tgt, "ledger")
  -- 4,000 transactions of two changes: groups of up to 10,000 changes or a second each
  T.ok(summary.status.groups <= 12, "groups: " .. tostring(summary.status.groups))
  T.ok(summary.status.merged_changes >= 4000 - 20 * 12, "folded: " .. tostring(summary.status.merged_changes))
  H.release(ctx, task)
  src:close(); tgt:close()
end)

-- A partitioned target (its rows in its partitions): updates folded and inserts batched when no
-- partition has a unique index or a trigger of its own that could see the order; a partition
-- with a second unique index (folding would break it row by row, as with mails above) or an
-- ALWAYS trigger (it would see inserts late) keeps its root out; and a table attached as a
-- partition during the stream, with a unique index of its own, takes its root out from then on.
T.test("partitioned targets: folded and batched unless a partition's index or trigger forbids it", function(ctx)
  local s0, t0 = P.clean(ctx)
  s0:close(); t0:close()
  P.both(ctx, [[
CREATE TABLE pev (id int, d int, n int NOT NULL, PRIMARY KEY (id, d)) PARTITION BY RANGE (d);
CREATE TABLE pev_0 PARTITION OF pev FOR VALUES FROM (0) TO (10);
CREATE TABLE pev_1 PARTITION OF pev FOR VALUES FROM (10) TO (20);
CREATE TABLE pev_2 PARTITION OF pev FOR VALUES FROM (20) TO (30);
CREATE TABLE puq (id int, d int, email text NOT NULL, PRIMARY KEY (id, d)) PARTITION BY LIST (d);
CREATE TABLE puq_1 PARTITION OF puq FOR VALUES IN (1);
CREATE UNIQUE INDEX puq_1_email ON puq_1 (email);
CREATE TABLE ptrg (id int, v text, PRIMARY KEY (id, v)) PARTITION BY RANGE (id);
CREATE TABLE ptrg_0 PARTITION OF ptrg FOR VALUES FROM (0) TO (1000) PARTITION BY LIST (v);
CREATE TABLE ptrg_0a PARTITION OF ptrg_0 DEFAULT;
]])
  local src, tgt = P.connect(ctx.source_url), P.connect(ctx.target_url)
  assert(src:exec([[INSERT INTO pev SELECT g, g % 30, 0 FROM generate_series(1, 60) g;
INSERT INTO puq SELECT g, 1, 'm' || g FROM generate_series(1, 3) g]]))
  -- on the target only: a trigger that fires in the apply session's replica role, on a
  -- partition of a partition
  assert(tgt:exec([[
CREATE FUNCTION ptrg_seen() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
CREATE TRIGGER ptrg_seen BEFORE INSERT ON ptrg_0a FOR EACH ROW EXECUTE FUNCTION ptrg_seen();
ALTER TABLE ptrg_0a ENABLE ALWAYS TRIGGER ptrg_seen;
]]))
  local ref = {}
  local task = H.task(ctx, "parts", { stop = H.stop_at(ref) })
  local plan = H.plan(src)
  H.setup(ctx, task, plan)
  local h = H.stream(ctx, task, plan)
  -- pev: 200 inserts (batched: 64 + 64 + 64 + 8), ten rows updated five times each (40
  -- folded), one of them then moved to another partition (its key changes: sent apart) and
  -- updated there. puq: the swap of unique values of mails above, in its one partition.
  -- ptrg: 30 inserts, one at a time.
  assert(src:exec([[BEGIN;
INSERT INTO pev SELECT g, g % 30, 1 FROM generate_series(100, 299) g;
UPDATE pev SET n = n + 1 WHERE id BETWEEN 1 AND 10;
UPDATE pev SET n = n + 1 WHERE id BETWEEN 1 AND 10;
UPDATE pev SET n = n + 1 WHERE id BETWEEN 1 AND 10;
UPDATE pev SET n = n + 1 WHERE id BETWEEN 1 AND 10;
UPDATE pev SET n = n + 1 WHERE id BETWEEN 1 AND 10;
UPDATE pev SET d = 25 WHERE id = 3;
UPDATE pev SET n = 33 WHERE id = 3;
UPDATE puq SET email = 'tmp' WHERE id = 1;
UPDATE puq SET email = 'm1' WHERE id = 2;
UPDATE puq SET email = 'm2' WHERE id = 1;
UPDATE puq SET email = 'x' || email WHERE id = 3;
INSERT INTO ptrg SELECT g, 'v' || g FROM generate_series(1, 30) g;
COMMIT]]))
  ref.lsn = P.lsn(src, true)
  local summary = assert(h:wait())
  T.eq(summary.stopped_by, "condition")
  for _, t in ipairs({ "pev", "puq", "ptrg" }) do P.same(src, tgt, t) end
  T.eq(assert(tgt:query("SELECT d, n FROM pev WHERE id = 3"))[1].d, 25, "the moved row is in its new partition")
  T.eq(summary.status.merged_changes, 40, "pev's updates folded, puq's not")
  T.eq(summary.status.batched_inserts, 200, "pev's inserts sent together, ptrg's not")
  H.release(ctx, task)

  -- A table with a unique index of its own, attached to pev while the stream runs: pev's
  -- updates are no longer folded (the swap below would break that index if they were).
  local task2 = H.task(ctx, "parts2", { stop = H.stop_at(ref) })
  H.setup(ctx, task2, plan, { snapshot = false })
  local h2 = H.stream(ctx, task2, plan)
  assert(src:exec([[
CREATE TABLE pev_late (id int, d int, n int NOT NULL UNIQUE, PRIMARY KEY (id, d));
INSERT INTO pev_late VALUES (1000, 35, 1000), (1001, 35, 1001);
ALTER TABLE pev ATTACH PARTITION pev_late FOR VALUES FROM (30) TO (40);
BEGIN;
UPDATE pev SET n = -1 WHERE id = 1000;
UPDATE pev SET n = 1000 WHERE id = 1001;
UPDATE pev SET n = 1001 WHERE id = 1000;
UPDATE pev SET n = n + 1 WHERE id BETWEEN 1 AND 10;
UPDATE pev SET n = n + 1 WHERE id BETWEEN 1 AND 10;
COMMIT]]))
  ref.lsn = P.lsn(src, true)
  local summary2 = assert(h2:wait())
  T.eq(summary2.stopped_by, "condition")
  P.same(src, tgt, "pev")
  T.eq(summary2.status.merged_changes, 0, "after the attach, pev's updates are not folded")
  H.release(ctx, task2)
  src:close(); tgt:close()
end)
