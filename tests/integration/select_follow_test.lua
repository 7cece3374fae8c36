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

T.test("rows_follow is refused before anything is written: with the incremental phase, and on a cycle", function(ctx)
  local src, tgt = P.connect_both(ctx)
  assert(src:exec(SETUP))
  assert(tgt:exec("DROP SCHEMA IF EXISTS shop CASCADE"))
  local pb = playbook(ctx, "followinc", [[{ "schema", "full", "incremental" }]])
  local code, out = H.run("run " .. pb)
  T.ne(code, 0, out)
  T.ne(code, 70, out)
  T.match(out, "select%.rows_follow: shop%.orders follows the filter of shop%.customers through a subquery, which " ..
    "the change stream cannot apply")
  T.eq(#assert(tgt:query("SELECT 1 FROM pg_namespace WHERE nspname = 'shop'")), 0, "nothing written")
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
