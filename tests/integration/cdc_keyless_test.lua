-- Tables without a replica identity under incremental migration, let in by a precheck policy
-- (docs/prechecks.md, table_without_key): their inserts and truncates stream through a
-- publication of their own that publishes nothing else, so the application's UPDATE and DELETE
-- on the source keep working (in a publication that publishes updates, PostgreSQL refuses them:
-- "cannot update table ... because it does not have a replica identity"). A partitioned
-- table with one keyless partition goes there as a whole. Unlogged tables are copied and left
-- out of every publication.
local T = require "testlib"
local P = require "pg"
local H = require "tidetest"

local SETUP = [[
DROP TABLE IF EXISTS audit, item, ev, scratch CASCADE;
CREATE TABLE audit (at timestamptz NOT NULL DEFAULT now(), who text, what text);
CREATE TABLE item (id int PRIMARY KEY, name text);
CREATE TABLE ev (id int NOT NULL, kind text NOT NULL, note text) PARTITION BY LIST (kind);
CREATE TABLE ev_a PARTITION OF ev FOR VALUES IN ('a');
CREATE TABLE ev_b PARTITION OF ev FOR VALUES IN ('b');
ALTER TABLE ev_b ADD PRIMARY KEY (id, kind);
CREATE UNLOGGED TABLE scratch (id int PRIMARY KEY, v text);
INSERT INTO audit (who, what) SELECT 'u' || g, 'before' FROM generate_series(1, 10) g;
INSERT INTO item SELECT g, 'item ' || g FROM generate_series(1, 10) g;
INSERT INTO ev SELECT g, CASE WHEN g % 2 = 0 THEN 'a' ELSE 'b' END, 'before' FROM generate_series(1, 10) g;
INSERT INTO scratch SELECT g, 'kept' FROM generate_series(1, 5) g;
]]

local function count(conn, sql)
  return assert(conn:query(sql))[1].n
end

T.test("keyless tables stream inserts only, and the source's updates and deletes of them keep working", function(ctx)
  P.clean(ctx)
  local src, tgt = P.connect_both(ctx)
  assert(src:exec(SETUP))
  local done = ctx.tmpdir .. "/keyless.done"
  os.remove(done)
  local pb = H.playbook(ctx, "keyless", string.format([[
  migrate = { "schema", "full", "incremental" },
  precheck = { warn = { "table_without_key" } },
  progress = "plain",
  incremental = { release = true, heartbeat_interval = 0.2 },
  stop = tide.when { lag_below = "1s", for_at_least = "0.5s", file_exists = %q },
]], done))
  -- The plan says what happens to them.
  local code, out = H.run("plan " .. pb)
  T.eq(code, 0, out)
  T.match(out, "public%.audit: no replica identity: only its inserts and truncates are streamed")
  T.match(out, "public%.ev_a: no replica identity: only its inserts and truncates are streamed, with its partitioned table public%.ev")
  T.nomatch(out, "public%.item: no replica identity")

  local proc, log = H.start(ctx, "run " .. pb, "keyless")
  P.wait_for("the stream", function() return H.read(log):find("incremental: started", 1, true) or proc:exited() end, 60)
  T.ok(not proc:exited(), H.read(log))
  local pubs = assert(src:query([[
SELECT p.pubname, p.pubupdate, p.pubdelete, p.pubinsert,
       array_to_string(ARRAY(SELECT c.relname FROM pg_publication_rel r JOIN pg_class c ON c.oid = r.prrelid
                              WHERE r.prpubid = p.oid ORDER BY 1), ',') AS tables
FROM pg_publication p WHERE p.pubname LIKE 'pgtide_keyless%' ORDER BY 1]]))
  T.eq(#pubs, 2, "two publications")
  T.eq({ pubs[1].pubname, pubs[1].tables }, { "pgtide_keyless", "item,pgtide_keyless_heartbeat" })
  T.eq({ pubs[2].pubname, pubs[2].tables, pubs[2].pubinsert, pubs[2].pubupdate, pubs[2].pubdelete },
       { "pgtide_keyless_inserts", "audit,ev", true, false, false })

  -- The application goes on: updates and deletes of the keyless tables must not fail.
  assert(src:exec([[
INSERT INTO audit (who, what) SELECT 'v' || g, 'during' FROM generate_series(1, 5) g;
UPDATE audit SET what = 'changed' WHERE who = 'u1';
DELETE FROM audit WHERE who = 'u2';
INSERT INTO ev VALUES (100, 'a', 'during'), (101, 'b', 'during');
UPDATE ev SET note = 'changed' WHERE id = 2;
DELETE FROM ev WHERE id = 3;
INSERT INTO item VALUES (11, 'new');
UPDATE item SET name = 'renamed' WHERE id = 1;
DELETE FROM item WHERE id = 2;
INSERT INTO scratch VALUES (6, 'not streamed');]]))
  local f = assert(io.open(done, "w")); f:close()
  local rc = proc:wait()
  T.eq(rc, 0, H.read(log))

  T.eq(P.fingerprint(tgt, "item"), P.fingerprint(src, "item"), "a table with a key streams everything")
  T.eq(count(tgt, "SELECT count(*) AS n FROM audit WHERE what = 'during'"), 5, "inserts streamed")
  T.eq(count(tgt, "SELECT count(*) AS n FROM audit"), 15, "deletes not streamed (10 before, 5 during)")
  T.eq(count(tgt, "SELECT count(*) AS n FROM audit WHERE what = 'changed'"), 0, "updates not streamed")
  T.eq(count(tgt, "SELECT count(*) AS n FROM ev WHERE note = 'during'"), 2, "inserts into both partitions streamed")
  T.eq(count(tgt, "SELECT count(*) AS n FROM scratch"), 5, "the unlogged table keeps what the full load copied")
  T.eq(#assert(src:query("SELECT 1 FROM pg_publication WHERE pubname LIKE 'pgtide_keyless%'")), 0,
       "release dropped both publications")
  src:close(); tgt:close()
end)
