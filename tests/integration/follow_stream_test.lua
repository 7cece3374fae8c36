-- select.rows_follow = "foreign_keys" with the incremental phase: the subset stays whole while
-- the source changes. Customers are filtered (country = 'DE'); their orders, the orders' lines
-- and notes follow. While streaming, customers and orders move into and out of the filter
-- (their followers must then be copied from the source, or removed), keys change under ON UPDATE
-- CASCADE, deletes cascade, rows move in and out in one transaction. The target must end as the
-- source's subset, written here by hand as joins (not with pgtide's filters), with every
-- foreign key holding; and the same after SIGKILLs of pgtide in the middle of it.
local T = require "testlib"
local P = require "pg"
local H = require "tidetest"
local tide = require "tide"

local SETUP = [[
DROP SCHEMA IF EXISTS shop CASCADE;
CREATE SCHEMA shop;
CREATE TABLE shop.customers (id int PRIMARY KEY, country text NOT NULL, "Name" text);
CREATE TABLE shop.orders (id int PRIMARY KEY,
                          customer_id int NOT NULL REFERENCES shop.customers ON UPDATE CASCADE ON DELETE CASCADE,
                          placed date NOT NULL, memo text);
ALTER TABLE shop.orders ALTER COLUMN memo SET STORAGE EXTERNAL;
CREATE TABLE shop.order_lines (order_id int REFERENCES shop.orders ON DELETE CASCADE, line int, sku text,
                               PRIMARY KEY (order_id, line));
CREATE TABLE shop.notes (id int PRIMARY KEY, customer_id int REFERENCES shop.customers ON UPDATE CASCADE, body text);
CREATE TABLE shop.plain (id int PRIMARY KEY, v text);
INSERT INTO shop.customers SELECT g, CASE WHEN g % 3 = 0 THEN 'DE' ELSE 'FR' END, 'c' || g FROM generate_series(1, 30) g;
INSERT INTO shop.orders SELECT c * 10 + n, c, date '2024-01-01' + n, CASE WHEN c = 4 THEN repeat(md5(c::text), 100) END
FROM generate_series(1, 30) c, generate_series(1, 4) n;
INSERT INTO shop.order_lines SELECT o, l, 'sku' || l FROM generate_series(1, 30) c, generate_series(1, 4) n,
  generate_series(1, 2) l, LATERAL (SELECT c * 10 + n AS o) x;
INSERT INTO shop.notes SELECT g, CASE WHEN g % 4 = 0 THEN NULL ELSE g END, 'note' FROM generate_series(1, 30) g;
INSERT INTO shop.plain SELECT g, 'p' FROM generate_series(1, 5) g;
]]

-- The subset, as joins on the source (independent of pgtide's derived filters).
local SUBSET = {
  ["shop.customers"] = "SELECT * FROM shop.customers WHERE country = 'DE'",
  ["shop.orders"] = "SELECT o.* FROM shop.orders o JOIN shop.customers c ON c.id = o.customer_id WHERE c.country = 'DE'",
  ["shop.order_lines"] = [[SELECT l.* FROM shop.order_lines l JOIN shop.orders o ON o.id = l.order_id
                           JOIN shop.customers c ON c.id = o.customer_id WHERE c.country = 'DE']],
  ["shop.notes"] = [[SELECT n.* FROM shop.notes n LEFT JOIN shop.customers c ON c.id = n.customer_id
                     WHERE n.customer_id IS NULL OR c.country = 'DE']],
  ["shop.plain"] = "SELECT * FROM shop.plain",
}

local WORKLOAD = {
  -- a new kept customer with orders and lines, and a left-out one
  [[BEGIN; INSERT INTO shop.customers VALUES (100, 'DE', 'new'), (101, 'FR', 'other');
    INSERT INTO shop.orders VALUES (1000, 100, '2024-02-01', 'x'), (1010, 101, '2024-02-01', 'y');
    INSERT INTO shop.order_lines VALUES (1000, 1, 'a'), (1010, 1, 'b'); COMMIT]],
  "UPDATE shop.customers SET country = 'DE' WHERE id = 1",           -- moves in: 4 orders, 8 lines, a note
  "UPDATE shop.customers SET country = 'FR' WHERE id = 3",           -- moves out: its orders, lines go
  "UPDATE shop.customers SET country = 'DE' WHERE id = 4",           -- moves in, orders with out-of-line memos
  "UPDATE shop.orders SET customer_id = 6 WHERE id = 21",            -- an order moves in (customer 2 is FR)
  "UPDATE shop.orders SET customer_id = 2 WHERE id = 61",            -- an order moves out
  "UPDATE shop.order_lines SET order_id = 62, line = 9 WHERE order_id = 22 AND line = 1", -- a line moves in
  "UPDATE shop.notes SET customer_id = NULL WHERE id = 5",            -- kept: NULL reference
  "UPDATE shop.notes SET customer_id = 7 WHERE id = 9",               -- leaves (7 is FR)
  "UPDATE shop.customers SET id = 600 WHERE id = 6",                 -- key change, ON UPDATE CASCADE
  "DELETE FROM shop.customers WHERE id = 9",                         -- ON DELETE CASCADE on the source
  -- in and out in one transaction; out and in again in another
  "BEGIN; UPDATE shop.customers SET country = 'DE' WHERE id = 5; UPDATE shop.customers SET country = 'FR' WHERE id = 5; COMMIT",
  [[BEGIN; UPDATE shop.customers SET country = 'FR' WHERE id = 12; INSERT INTO shop.orders VALUES (1200, 12, '2024-03-01', 'z');
    UPDATE shop.customers SET country = 'DE' WHERE id = 12; COMMIT]],
  -- a follower changes while its parent is out, then the parent comes in
  "UPDATE shop.orders SET memo = 'changed while out' WHERE id = 81",
  [[BEGIN; SAVEPOINT s; UPDATE shop.customers SET country = 'DE' WHERE id = 11; ROLLBACK TO s;
    UPDATE shop.customers SET country = 'DE' WHERE id = 8; COMMIT]],
  "UPDATE shop.plain SET v = 'q' WHERE id = 1",
  -- many followers at once
  [[BEGIN; INSERT INTO shop.customers VALUES (200, 'FR', 'bulk');
    INSERT INTO shop.orders SELECT 5000 + g, 200, '2024-04-01', NULL FROM generate_series(1, 300) g;
    INSERT INTO shop.order_lines SELECT 5000 + g, 1, 'bulk' FROM generate_series(1, 300) g; COMMIT]],
  "UPDATE shop.customers SET country = 'DE' WHERE id = 200",
}

local function playbook(ctx, name, done, extra)
  return H.playbook(ctx, name, string.format([[
  migrate = { "schema", "full", "incremental" },
  select = { include = { "shop" }, rows_follow = "foreign_keys", rows = { ["shop.customers"] = "country = 'DE'" } },
  progress = "plain", %s
  incremental = { release = true, heartbeat_interval = 0.2 },
  stop = tide.when { lag_below = "1s", for_at_least = "0.5s", file_exists = %q },
]], extra or "", done))
end

-- schema, cust, cid: the target's names of schema shop, orders.customer_id, customers.id (renames)
local function check_subset(src, tgt, schema, cust, cid)
  schema, cust, cid = schema or "shop", cust or "customer_id", cid or "id"
  for rel, query in pairs(SUBSET) do
    local trel = rel:gsub("^shop%.", schema .. ".")
    T.eq(P.fingerprint(tgt, trel), P.fingerprint(src, "(" .. query .. ")"), rel .. " is the source's subset")
  end
  local orphans = assert(tgt:query((string.gsub([[
SELECT (SELECT count(*) FROM S.orders o WHERE NOT EXISTS (SELECT FROM S.customers c WHERE c.CID = o.CUST))
     + (SELECT count(*) FROM S.order_lines l WHERE NOT EXISTS (SELECT FROM S.orders o WHERE o.id = l.order_id))
     + (SELECT count(*) FROM S.notes n WHERE n.customer_id IS NOT NULL
          AND NOT EXISTS (SELECT FROM S.customers c WHERE c.CID = n.customer_id)) AS n]], "%u+", { S = schema, CUST = cust, CID = cid }))))
  T.eq(orphans[1].n, 0, "every foreign key holds on the target")
end

T.test("rows_follow while streaming: rows follow their parents into and out of the filter", function(ctx)
  P.clean(ctx)
  local src, tgt = P.connect_both(ctx)
  assert(src:exec(SETUP))
  assert(tgt:exec("DROP SCHEMA IF EXISTS shop CASCADE"))
  local done = ctx.tmpdir .. "/follow.done"
  os.remove(done)
  local pb = playbook(ctx, "followinc", done)
  local code, out = H.run("plan " .. pb)
  T.eq(code, 0, out)
  T.match(out, "shop%.order_lines: rows follow shop%.orders %(select%.rows_follow%)")
  local proc, log = H.start(ctx, "run " .. pb, "followinc")
  P.wait_for("the stream", function() return H.read(log):find("incremental: started", 1, true) or proc:exited() end, 90)
  T.ok(not proc:exited(), H.read(log))
  check_subset(src, tgt)
  for _, stmt in ipairs(WORKLOAD) do assert(src:exec(stmt)) end
  local f = assert(io.open(done, "w")); f:close()
  local rc = proc:wait()
  local text = H.read(log)
  T.eq(rc, 0, text)
  check_subset(src, tgt)
  T.match(text, "following row%(s%) copied from the source")
  T.eq(assert(tgt:query("SELECT count(*) AS n FROM shop.order_lines WHERE order_id > 5000"))[1].n, 300,
    "the bulk customer's 300 orders' lines came with it")
  T.eq(assert(tgt:query("SELECT memo FROM shop.orders WHERE id = 81"))[1].memo, "changed while out")
  src:close(); tgt:close()
end)

T.test("rows_follow while streaming, renamed: SIGKILLs while rows move in and out, then reruns", function(ctx)
  P.clean(ctx)
  local src, tgt = P.connect_both(ctx)
  assert(src:exec(SETUP))
  assert(tgt:exec("DROP SCHEMA IF EXISTS shop CASCADE; DROP SCHEMA IF EXISTS store CASCADE"))
  local done = ctx.tmpdir .. "/followkill.done"
  os.remove(done)
  local pb = playbook(ctx, "followkill", done, [[
  rename = { schema = { shop = "store" }, column = { ["shop.orders.customer_id"] = "cust", ["shop.customers.id"] = "cid" } },]])
  local seed = tonumber(os.getenv("PGTIDE_TEST_SEED") or "") or os.time()
  math.randomseed(seed)
  local next_stmt = 1
  for round = 1, 3 do
    local proc, log = H.start(ctx, "run " .. pb, "followkill" .. round)
    P.wait_for("the stream", function()
      return H.read(log):find("incremental: started", 1, true) or proc:exited() end, 90)
    T.ok(not proc:exited(), H.read(log))
    local last = round == 3 and #WORKLOAD or math.min(#WORKLOAD, next_stmt + math.random(3, 7))
    for i = next_stmt, last do assert(src:exec(WORKLOAD[i])) end
    next_stmt = last + 1
    if round < 3 then
      -- kill while it applies (somewhere between nothing and everything of what was just written)
      tide.sleep(math.random() * 0.3)
      proc:kill(9)
      proc:wait()
    else
      local f = assert(io.open(done, "w")); f:close()
      T.eq(proc:wait(), 0, H.read(log) .. "\nseed " .. seed)
    end
  end
  check_subset(src, tgt, "store", "cust", "cid")
  local code, out = H.run("verify " .. pb)
  T.eq(code, 0, out)
  src:close(); tgt:close()
end)

T.test("rows_follow while streaming: DDL on a followed table stops the task, naming it", function(ctx)
  P.clean(ctx)
  local src, tgt = P.connect_both(ctx)
  assert(src:exec(SETUP))
  assert(tgt:exec("DROP SCHEMA IF EXISTS shop CASCADE"))
  local done = ctx.tmpdir .. "/followddl.done"
  os.remove(done)
  local pb = playbook(ctx, "followddl", done)
  local proc, log = H.start(ctx, "run " .. pb, "followddl")
  P.wait_for("the stream", function() return H.read(log):find("incremental: started", 1, true) or proc:exited() end, 90)
  T.ok(not proc:exited(), H.read(log))
  -- DDL on a table outside the follow chain is followed as usual
  assert(src:exec("ALTER TABLE shop.plain ADD COLUMN extra int DEFAULT 7"))
  local function has_extra(rel)
    return #assert(tgt:query("SELECT 1 FROM information_schema.columns WHERE table_schema = 'shop' AND " ..
      "table_name = $1 AND column_name = 'extra'", rel)) == 1
  end
  P.wait_for("the DDL of shop.plain on the target", function() return has_extra("plain") or proc:exited() end, 60)
  assert(src:exec("ALTER TABLE shop.orders ADD COLUMN extra int"))
  local rc = proc:wait()
  local text = H.read(log)
  T.ne(rc, 0, text)
  T.ne(rc, 70, text)
  T.match(text, "it changes shop%.orders, which select%.rows_follow follows")
  T.nomatch(text, "traceback")
  T.ok(has_extra("plain"), "the DDL before it was applied")
  T.ok(not has_extra("orders"), "the followed table's DDL was not")
  local code, out = H.run("release " .. pb)
  T.eq(code, 0, out)
  src:close(); tgt:close()
end)
