-- Row filters that no publication can carry (they read columns outside the replica identity),
-- applied by pgtide itself while streaming (engine/cdc/apply_filter.c): every change of the
-- table is published, and the target server evaluates the filter on the change's values. An
-- update into the filter inserts the whole row, one out of it deletes it, under renamed
-- schemas and columns (the filter keeps the source's names). The source's own UPDATE and
-- DELETE of the table keep working.
local T = require "testlib"
local P = require "pg"
local H = require "tidetest"

local FILTER = "order_date >= date '1997-01-01' AND status <> 'void'"

local SETUP = [[
DROP TABLE IF EXISTS orders CASCADE;
CREATE TABLE orders (id int PRIMARY KEY, order_date date NOT NULL, status text NOT NULL, big text, n int);
ALTER TABLE orders ALTER COLUMN big SET STORAGE EXTERNAL;
INSERT INTO orders SELECT g, date '1996-12-25' + g, CASE WHEN g % 5 = 0 THEN 'void' ELSE 'ok' END, NULL, 0
FROM generate_series(1, 40) g;
UPDATE orders SET big = repeat(md5(id::text), 200) WHERE id IN (10, 11);
]]

-- Ids 1..6 are dated 1996 and every fifth row is void: both are left out.
local WORKLOAD = {
  "INSERT INTO orders VALUES (100, '1998-01-01', 'ok', NULL, 0), (101, '1990-01-01', 'ok', NULL, 0)",
  "UPDATE orders SET n = n + 1 WHERE id = 7",                             -- stays in
  "UPDATE orders SET order_date = '1997-06-01' WHERE id = 2",             -- moves in
  "UPDATE orders SET status = 'void' WHERE id = 8",                       -- moves out
  "UPDATE orders SET id = 200 WHERE id = 9",                              -- new key, stays in
  "UPDATE orders SET id = 201, status = 'void' WHERE id = 12",            -- new key, moves out
  "UPDATE orders SET n = 5 WHERE id = 11",                                -- big unchanged, stays in
  "UPDATE orders SET id = 211 WHERE id = 11",                             -- big unchanged, new key
  "UPDATE orders SET order_date = '1990-01-01' WHERE id = 14",            -- moves out
  "DELETE FROM orders WHERE id IN (13, 3)",                               -- one in, one out
  [[BEGIN; UPDATE orders SET status = 'ok' WHERE id = 15; SAVEPOINT a;
    UPDATE orders SET status = 'void' WHERE id = 16; ROLLBACK TO a; COMMIT]],
  "BEGIN; UPDATE orders SET status = 'void' WHERE id = 17; UPDATE orders SET status = 'ok', n = 9 WHERE id = 17; COMMIT",
  "BEGIN; UPDATE orders SET status = 'void' WHERE id = 18; DELETE FROM orders WHERE id = 18; COMMIT",
  "UPDATE orders SET status = 'done' WHERE id = 25",                      -- moves in (was void)
}

local function playbook(ctx, name, done)
  return H.playbook(ctx, name, string.format([[
  migrate = { "schema", "full", "incremental" },
  select = { include = { "public.orders" }, rows = { ["public.orders"] = %q } },
  rename = { schema = { public = "shop" }, column = { ["public.orders.status"] = "state" } },
  progress = "plain",
  incremental = { release = true, heartbeat_interval = 0.2 },
  stop = tide.when { lag_below = "1s", for_at_least = "0.5s", file_exists = %q },
]], FILTER, done))
end

local function filtered_on_source(src)
  return P.fingerprint(src, "(SELECT id, order_date, status, big, n FROM orders WHERE " .. FILTER .. ")")
end

T.test("a filter outside the replica identity: rows move in and out of it while streaming", function(ctx)
  P.clean(ctx)
  local src, tgt = P.connect_both(ctx)
  assert(src:exec(SETUP))
  assert(tgt:exec("DROP SCHEMA IF EXISTS shop CASCADE"))
  local done = ctx.tmpdir .. "/filter.done"
  os.remove(done)
  local pb = playbook(ctx, "filtered", done)
  local code, out = H.run("check " .. pb)
  T.eq(code, 0, out)
  T.match(out, "row_filter_applied")
  code, out = H.run("plan " .. pb)
  T.eq(code, 0, out)
  T.match(out, "public%.orders: rows WHERE order_date >= date '1997%-01%-01' AND status <> 'void'; columns renamed: status → state")
  T.match(out, "public%.orders: its row filter cannot go into the publication: every change is streamed and pgtide applies")

  local proc, log = H.start(ctx, "run " .. pb, "filtered")
  P.wait_for("the stream", function() return H.read(log):find("incremental: started", 1, true) or proc:exited() end, 60)
  T.ok(not proc:exited(), H.read(log))
  local pub = assert(src:query([[
SELECT r.prqual IS NULL AS unfiltered FROM pg_publication_rel r
JOIN pg_publication p ON p.oid = r.prpubid WHERE p.pubname = 'pgtide_filtered' AND r.prrelid = 'orders'::regclass]]))
  T.eq(#pub, 1, "orders is published")
  T.eq(pub[1].unfiltered, true, "without a publication filter: pgtide applies it")
  -- The application's own writes on the source keep working; each statement is a transaction.
  for _, stmt in ipairs(WORKLOAD) do assert(src:exec(stmt)) end
  local f = assert(io.open(done, "w")); f:close()
  T.eq(proc:wait(), 0, H.read(log))

  T.eq(P.fingerprint(tgt, "(SELECT id, order_date, state, big, n FROM shop.orders)"), filtered_on_source(src),
       "the target holds exactly the source's rows that match the filter")
  local rows = assert(tgt:query("SELECT id, length(big) AS big, n FROM shop.orders WHERE id IN (2, 8, 211, 17, 25) ORDER BY id"))
  T.eq(#rows, 4, "8 moved out; 2, 17, 25 moved in; 11 became 211")
  T.eq({ rows[1].id, rows[2].id, rows[3].id, rows[4].id }, { 2, 17, 25, 211 })
  T.eq(rows[4].big, 6400, "an unchanged out-of-line value survives updates and a new key")
  T.eq(rows[2].n, 9)
  code, out = H.run("verify " .. pb)
  T.eq(code, 0, out)
  -- and verify sees a row the filter should have left out
  assert(tgt:exec("INSERT INTO shop.orders VALUES (101, '1990-01-01', 'ok', NULL, 0)"))
  code, out = H.run("verify " .. pb)
  T.eq(code, 6, out)
  src:close(); tgt:close()
end)

T.test("a row moved into the filter without its unchanged out-of-line value stops the task, naming the fix", function(ctx)
  P.clean(ctx)
  local src, tgt = P.connect_both(ctx)
  assert(src:exec(SETUP))
  assert(tgt:exec("DROP SCHEMA IF EXISTS shop CASCADE"))
  local done = ctx.tmpdir .. "/toast.done"
  os.remove(done)
  local pb = playbook(ctx, "filtoast", done)
  local proc, log = H.start(ctx, "run " .. pb, "filtoast")
  P.wait_for("the stream", function() return H.read(log):find("incremental: started", 1, true) or proc:exited() end, 60)
  T.ok(not proc:exited(), H.read(log))
  -- Row 10 is void (left out) and its big value is stored out of line: the update that makes it
  -- match does not carry that value, and the target has no row to take it from.
  assert(src:exec("INSERT INTO orders VALUES (300, '1999-01-01', 'ok', NULL, 0)"))
  assert(src:exec("BEGIN; UPDATE orders SET status = 'ok' WHERE id = 10; INSERT INTO orders VALUES (301, '1999-01-01', 'ok', NULL, 0); COMMIT"))
  local rc = proc:wait()
  local text = H.read(log)
  T.ne(rc, 0, text)
  T.ne(rc, 70, text)
  T.match(text, "moved a row into the table's row filter")
  T.match(text, "REPLICA IDENTITY FULL")
  T.nomatch(text, "traceback")
  -- (The transaction before it may share its target transaction, and go back with it.)
  local got = assert(tgt:query("SELECT count(*) AS n FROM shop.orders WHERE id IN (10, 301)"))
  T.eq(got[1].n, 0, "nothing of the failed transaction is on the target")
  local code, out = H.run("release " .. pb)
  T.eq(code, 0, out)
  src:close(); tgt:close()
end)

T.test("a filter on a partitioned table: its partitions copied and streamed through it", function(ctx)
  P.clean(ctx)
  local src, tgt = P.connect_both(ctx)
  assert(src:exec([[
DROP TABLE IF EXISTS events CASCADE;
CREATE TABLE events (id int, created date NOT NULL, kind text, PRIMARY KEY (id, created)) PARTITION BY RANGE (created);
CREATE TABLE events_2024_01 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2024-02-01');
CREATE TABLE events_2024_02 PARTITION OF events FOR VALUES FROM ('2024-02-01') TO ('2024-03-01');
CREATE TABLE events_2024_03 PARTITION OF events FOR VALUES FROM ('2024-03-01') TO ('2024-04-01');
INSERT INTO events SELECT g, date '2024-01-01' + (g % 90), CASE WHEN g % 7 = 0 THEN 'noise' ELSE 'sale' END
FROM generate_series(1, 300) g;
]]))
  assert(tgt:exec("DROP TABLE IF EXISTS events CASCADE"))
  local filter = "created >= date '2024-01-20' AND kind <> 'noise'"
  local done = ctx.tmpdir .. "/part.done"
  os.remove(done)
  local pb = H.playbook(ctx, "partfilter", string.format([[
  migrate = { "schema", "full", "incremental" },
  select = { include = { "public.events*" }, rows = { ["public.events"] = %q } },
  progress = "plain",
  incremental = { release = true, heartbeat_interval = 0.2 },
  stop = tide.when { lag_below = "1s", for_at_least = "0.5s", file_exists = %q },
]], filter, done))
  local code, out = H.run("plan " .. pb)
  T.eq(code, 0, out)
  T.match(out, "public%.events_2024_01: rows WHERE created >= date '2024%-01%-20' AND kind <> 'noise'")
  T.nomatch(out, "matched nothing")
  code, out = H.run("check " .. pb)
  T.eq(code, 0, out)
  local proc, log = H.start(ctx, "run " .. pb, "partfilter")
  P.wait_for("the stream", function() return H.read(log):find("incremental: started", 1, true) or proc:exited() end, 60)
  T.ok(not proc:exited(), H.read(log))
  local subset = "(SELECT * FROM events WHERE " .. filter .. ")"
  T.eq(P.fingerprint(tgt, "events"), P.fingerprint(src, subset), "the full load copied the subset")
  for _, stmt in ipairs({
    "INSERT INTO events VALUES (1000, '2024-01-05', 'sale'), (1001, '2024-02-05', 'sale'), (1002, '2024-03-05', 'noise')",
    "UPDATE events SET created = '2024-01-25' WHERE id = 3",                 -- into the filter
    "UPDATE events SET created = '2024-01-02' WHERE id = 40",                -- out of it, other partition
    "UPDATE events SET created = '2024-03-15' WHERE id = 50",                -- across partitions, stays in
    "UPDATE events SET kind = 'noise' WHERE id = 60",                        -- out by another column
    "UPDATE events SET kind = 'sale' WHERE id = 70",                         -- in (was noise)
    "DELETE FROM events WHERE id IN (80, 81)",
    "BEGIN; UPDATE events SET created = '2024-01-01' WHERE id = 90; UPDATE events SET created = '2024-02-10' WHERE id = 90; COMMIT",
  }) do assert(src:exec(stmt)) end
  local f = assert(io.open(done, "w")); f:close()
  T.eq(proc:wait(), 0, H.read(log))
  T.eq(P.fingerprint(tgt, "events"), P.fingerprint(src, subset), "the stream kept the subset")
  T.eq(#assert(tgt:query("SELECT 1 FROM ONLY events_2024_03 WHERE id = 50")), 1, "the moved row is in its new partition")
  code, out = H.run("verify " .. pb)
  T.eq(code, 0, out)
  src:close(); tgt:close()
end)
