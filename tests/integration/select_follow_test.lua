-- select.rows_follow = "foreign_keys": a subset of a database whose foreign keys all hold. A
-- filter on customers carries over to their orders (a two-column foreign key), the orders'
-- lines, notes that may point nowhere (NULL), and a table referencing two filtered parents;
-- the foreign keys are added after the copy and hold; verify agrees; a cycle of foreign keys and
-- the incremental phase are refused before anything is written.
local T = require "testlib"
local P = require "pg"
local H = require "tidetest"

local SETUP = [[
DROP SCHEMA IF EXISTS shop CASCADE;
CREATE SCHEMA shop;
CREATE TABLE shop.customers (id int PRIMARY KEY, country text NOT NULL, "Name" text);
CREATE TABLE shop.orders (customer_id int NOT NULL REFERENCES shop.customers, n int NOT NULL,
                          placed date NOT NULL, PRIMARY KEY (customer_id, n));
CREATE TABLE shop.order_lines (customer_id int, order_n int, line int, sku text,
                               PRIMARY KEY (customer_id, order_n, line),
                               FOREIGN KEY (customer_id, order_n) REFERENCES shop.orders);
CREATE TABLE shop.notes (id int PRIMARY KEY, customer_id int REFERENCES shop.customers, body text);
CREATE TABLE shop.warehouses (id int PRIMARY KEY, region text NOT NULL);
CREATE TABLE shop.stock (warehouse_id int REFERENCES shop.warehouses, customer_id int REFERENCES shop.customers,
                         qty int, PRIMARY KEY (warehouse_id, customer_id));
CREATE TABLE shop.plain (id int PRIMARY KEY);
INSERT INTO shop.customers SELECT g, CASE WHEN g % 3 = 0 THEN 'DE' ELSE 'FR' END, 'c' || g FROM generate_series(1, 30) g;
INSERT INTO shop.orders SELECT c, n, date '2024-01-01' + n FROM generate_series(1, 30) c, generate_series(1, 4) n;
INSERT INTO shop.order_lines SELECT c, n, l, 'sku' || l FROM generate_series(1, 30) c, generate_series(1, 4) n, generate_series(1, 2) l;
INSERT INTO shop.notes SELECT g, CASE WHEN g % 4 = 0 THEN NULL ELSE g END, 'note' FROM generate_series(1, 30) g;
INSERT INTO shop.warehouses SELECT g, CASE WHEN g % 2 = 0 THEN 'north' ELSE 'south' END FROM generate_series(1, 4) g;
INSERT INTO shop.stock SELECT w, c, w * c FROM generate_series(1, 4) w, generate_series(1, 30) c;
INSERT INTO shop.plain SELECT generate_series(1, 7);
]]

-- What the subset must hold, written by hand from the data above (not from pgtide's filters).
local EXPECTED = {
  ["shop.customers"] = 10,            -- ids 3, 6, ..., 30
  ["shop.orders"] = 40,               -- 4 per kept customer
  ["shop.order_lines"] = 80,
  ["shop.notes"] = 7 + 8,             -- 7 NULL references (ids 4, 8, ..., 28) and 8 of kept customers
                                      -- (3, 6, 9, 15, 18, 21, 27, 30)
  ["shop.stock"] = 2 * 10,            -- north warehouses (2, 4) × kept customers
  ["shop.warehouses"] = 2,
  ["shop.plain"] = 7,
}

local function playbook(ctx, name, migrate, extra)
  return H.playbook(ctx, name, string.format([[
  migrate = %s,
  select = { include = { "shop" }, rows_follow = "foreign_keys",
             rows = { ["shop.customers"] = "country = 'DE'", ["shop.warehouses"] = "region = 'north'" } },
  progress = "plain",
  %s
]], migrate, extra or ""))
end

T.test("rows_follow: the filters of referencing tables are derived, and every foreign key holds", function(ctx)
  local src, tgt = P.connect_both(ctx)
  assert(src:exec(SETUP))
  assert(tgt:exec("DROP SCHEMA IF EXISTS shop CASCADE"))
  local pb = playbook(ctx, "follow", [[{ "schema", "full" }]])
  local code, out = H.run("plan " .. pb)
  T.eq(code, 0, out)
  T.match(out, "shop%.orders: rows follow shop%.customers %(select%.rows_follow%): WHERE")
  T.match(out, "shop%.order_lines: rows follow shop%.orders %(select%.rows_follow%)")
  local stock = out:match("shop%.stock: rows follow ([^\n]*)") or ""
  T.match(stock, "^[%w%., ]*shop%.warehouses[%w%., ]* %(select%.rows_follow%)", "stock follows both parents")
  T.match(stock, "^[%w%., ]*shop%.customers[%w%., ]* %(select%.rows_follow%)", "stock follows both parents")
  T.nomatch(out, "shop%.plain: rows")
  code, out = H.run("check " .. pb)
  T.eq(code, 0, out)
  code, out = H.run("run " .. pb)
  T.eq(code, 0, out)
  for rel, n in pairs(EXPECTED) do
    T.eq(assert(tgt:query("SELECT count(*) AS n FROM " .. rel))[1].n, n, rel)
  end
  -- The foreign keys were added after the copy (they would have failed on an orphan) and hold.
  local fks = assert(tgt:query([[SELECT count(*) AS n FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
                                 WHERE n.nspname = 'shop' AND c.contype = 'f' AND c.convalidated]]))
  T.eq(fks[1].n, 5, "every foreign key is on the target, validated")
  -- The same rows as the source's subset, row for row.
  T.eq(P.fingerprint(tgt, "shop.order_lines"), P.fingerprint(src,
    "(SELECT l.* FROM shop.order_lines l JOIN shop.customers c ON c.id = l.customer_id WHERE c.country = 'DE')"))
  code, out = H.run("verify " .. pb)
  T.eq(code, 0, out)
  src:close(); tgt:close()
end)

T.test("rows_follow is refused before anything is written: a keyless follower to stream, and a cycle", function(ctx)
  local src, tgt = P.connect_both(ctx)
  assert(src:exec(SETUP))
  assert(tgt:exec("DROP SCHEMA IF EXISTS shop CASCADE"))
  -- The stream adds and removes a follower's rows by key as their parents come and go.
  assert(src:exec("CREATE TABLE shop.audit (customer_id int REFERENCES shop.customers, msg text)"))
  local pb = playbook(ctx, "followinc", [[{ "schema", "full", "incremental" }]])
  local code, out = H.run("run " .. pb)
  T.ne(code, 0, out)
  T.ne(code, 70, out)
  T.match(out, "select%.rows_follow: shop%.audit follows the filter of shop%.customers, and has no primary key")
  T.nomatch(out, "shop%.orders follows")
  T.eq(#assert(tgt:query("SELECT 1 FROM pg_namespace WHERE nspname = 'shop'")), 0, "nothing written")
  assert(src:exec("DROP TABLE shop.audit"))
  -- A cycle: customers reference their first order.
  assert(src:exec("ALTER TABLE shop.customers ADD COLUMN first_n int, ADD FOREIGN KEY (id, first_n) REFERENCES shop.orders"))
  pb = playbook(ctx, "followcycle", [[{ "schema", "full" }]])
  code, out = H.run("plan " .. pb)
  T.ne(code, 0, out)
  T.match(out, "select%.rows_follow: the foreign keys of .*shop%.customers.* form a cycle")
  code, out = H.run("run " .. pb)
  T.ne(code, 0, out)
  T.ne(code, 70, out)
  T.eq(#assert(tgt:query("SELECT 1 FROM pg_namespace WHERE nspname = 'shop'")), 0, "nothing written")
  -- A wrong value of the key is a playbook error that names it.
  local bad = H.playbook(ctx, "followbad", [[migrate = { "schema", "full" }, select = { rows_follow = "fk" },]])
  code, out = H.run("plan " .. bad)
  T.eq(code, 3, out)
  T.match(out, 'select%.rows_follow: expected "foreign_keys" %(or no key%), got "fk"')
  src:close(); tgt:close()
end)

T.test("rows_follow through partitioned tables: a reference to a partitioned parent reads its leaves", function(ctx)
  local src, tgt = P.connect_both(ctx)
  assert(src:exec([[
DROP SCHEMA IF EXISTS ship CASCADE;
CREATE SCHEMA ship;
CREATE TABLE ship.shipments (id int, region text, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
CREATE TABLE ship.shipments_eu PARTITION OF ship.shipments FOR VALUES IN ('eu');
CREATE TABLE ship.shipments_us PARTITION OF ship.shipments FOR VALUES IN ('us');
CREATE TABLE ship.tracking (id int PRIMARY KEY, shipment_id int, region text,
                            FOREIGN KEY (shipment_id, region) REFERENCES ship.shipments);
CREATE TABLE ship.events (id int, shipment_id int, region text, PRIMARY KEY (id, region),
                          FOREIGN KEY (shipment_id, region) REFERENCES ship.shipments) PARTITION BY LIST (region);
CREATE TABLE ship.events_eu PARTITION OF ship.events FOR VALUES IN ('eu');
CREATE TABLE ship.events_us PARTITION OF ship.events FOR VALUES IN ('us');
INSERT INTO ship.shipments SELECT g, r FROM generate_series(1, 10) g, unnest(ARRAY['eu', 'us']) r;
INSERT INTO ship.tracking SELECT g, g, CASE WHEN g % 2 = 0 THEN 'eu' ELSE 'us' END FROM generate_series(1, 10) g;
INSERT INTO ship.tracking VALUES (11, NULL, NULL);
INSERT INTO ship.events SELECT g, g, 'eu' FROM generate_series(1, 10) g;
INSERT INTO ship.events SELECT 100 + g, g, 'us' FROM generate_series(1, 10) g;
]]))
  assert(tgt:exec("DROP SCHEMA IF EXISTS ship CASCADE"))
  local function pb(name, follow)
    return H.playbook(ctx, name, string.format([[
  migrate = { "schema", "full" },
  select = { include = { "ship" }, rows = { ["ship.shipments_eu"] = "id > 5" }%s },
  progress = "plain",
]], follow and ', rows_follow = "foreign_keys"' or ""))
  end
  -- Without rows_follow the precheck counts what the foreign keys would refuse.
  local code, out = H.run("check " .. pb("partplain", false))
  T.ne(code, 0, out)
  T.match(out, "foreign key tracking_shipment_id_region_fkey of ship%.tracking references the partitioned table " ..
    "ship%.shipments, and the row filters of its partitions leave out the rows 2 row%(s%)")
  T.match(out, "ship%.events_eu: foreign key events_shipment_id_region_fkey of ship%.events_eu references the " ..
    "partitioned table ship%.shipments, and the row filters of its partitions leave out the rows 5 row%(s%)")
  local follow = pb("partfollow", true)
  code, out = H.run("plan " .. follow)
  T.eq(code, 0, out)
  T.match(out, "ship%.tracking: rows follow ship%.shipments %(select%.rows_follow%)")
  T.match(out, "ship%.events_eu: rows follow ship%.shipments %(select%.rows_follow%)")
  code, out = H.run("run " .. follow)
  T.eq(code, 0, out)
  -- By hand: eu shipments 6..10 and every us one are kept; tracking of even ids is eu (2, 4 go),
  -- odd ids are us (kept), and the NULL reference stays; eu events 1..5 go, us events stay.
  local function ids(q) local r = {} for _, row in ipairs(assert(tgt:query(q))) do r[#r + 1] = row.id end return r end
  T.eq(ids("SELECT id FROM ship.tracking ORDER BY id"), { 1, 3, 5, 6, 7, 8, 9, 10, 11 })
  T.eq(#ids("SELECT id FROM ship.events WHERE region = 'eu'"), 5)
  T.eq(#ids("SELECT id FROM ship.events WHERE region = 'us'"), 10)
  T.eq(#assert(tgt:query([[SELECT 1 FROM pg_constraint WHERE conname = 'tracking_shipment_id_region_fkey']])), 1,
    "the foreign key was added after the copy")
  -- Streaming such a subset is refused before anything is written.
  local inc = H.playbook(ctx, "partinc", [[
  migrate = { "schema", "full", "incremental" },
  select = { include = { "ship" }, rows = { ["ship.shipments_eu"] = "id > 5" }, rows_follow = "foreign_keys" },
]])
  code, out = H.run("plan " .. inc)
  T.ne(code, 0, out)
  T.match(out, "select%.rows_follow: ship%.tracking follows the filter of the partitioned table ship%.shipments: " ..
    "the change stream cannot follow foreign keys to partitioned tables yet")
  src:close(); tgt:close()
end)
