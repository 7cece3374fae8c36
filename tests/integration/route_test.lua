-- on.route: an on.row function sends some rows to another table of the task, alike in every
-- phase. The full load writes routed rows in the routing table's copy transaction (so a SIGKILL
-- at any moment leaves each routed row written once or not at all), the stream moves rows
-- between the tables as their updates route them, and verify compares each table with the rows
-- the functions give it.
local T = require "testlib"
local P = require "pg"
local H = require "tidetest"

local SETUP = [[
DROP TABLE IF EXISTS orders, orders_archive CASCADE;
CREATE TABLE orders (id int PRIMARY KEY, status text NOT NULL, total numeric, note text, pad text);
CREATE TABLE orders_archive (id int PRIMARY KEY, status text NOT NULL, total numeric, note text, pad text);
INSERT INTO orders
SELECT g, CASE WHEN mod(g, 4) = 0 THEN 'archived' WHEN mod(g, 9) = 0 THEN 'spam' ELSE 'open' END, g * 1.5,
       CASE WHEN mod(g, 5) = 0 THEN NULL ELSE E'n\t' || g END, repeat('p', %d)
FROM generate_series(1, %d) g;
INSERT INTO orders_archive SELECT g, 'archived', g, 'old' || g, NULL FROM generate_series(1000001, 1000050) g;
]]

local FN = [[function(r)
      if r.status == "spam" then return false end
      if r.status == "archived" then r.note = "archived: " .. (r.note == tide.null and "-" or r.note); return true, "public.orders_archive" end
    end]]

-- What the target must hold, written in SQL by hand from the function above.
local KEPT = [[(SELECT * FROM orders WHERE status NOT IN ('archived', 'spam'))]]
local ARCHIVED = [[(SELECT * FROM orders_archive
                    UNION ALL
                    SELECT id, status, total, 'archived: ' || coalesce(note, '-'), pad FROM orders WHERE status = 'archived')]]

local function same_as_expected(src, tgt, what)
  T.eq(P.fingerprint(tgt, "orders"), P.fingerprint(src, KEPT), what .. ": orders")
  T.eq(P.fingerprint(tgt, "orders_archive"), P.fingerprint(src, ARCHIVED), what .. ": orders_archive")
end

T.test("on.route: rows routed in the full load and moved between tables by the stream", function(ctx)
  P.clean(ctx)
  local src, tgt = P.connect_both(ctx)
  assert(src:exec(string.format(SETUP, 0, 400)))
  local done = ctx.tmpdir .. "/route.done"
  os.remove(done)
  local pb = H.playbook(ctx, "route", string.format([[
  migrate = { "schema", "full", "incremental" },
  progress = "plain",
  incremental = { release = true, heartbeat_interval = 0.2 },
  stop = tide.when { lag_below = "1s", for_at_least = "0.5s", file_exists = %q },
  on = { row = { ["public.orders"] = %s },
         route = { ["public.orders"] = { "public.orders_archive" } } },
]], done, FN))
  local code, out = H.run("plan " .. pb)
  T.eq(code, 0, out)
  T.match(out, "public%.orders: rows through on%.row, which may route them to public%.orders_archive %(on%.route%)")
  T.match(out, "public%.orders_archive: receives rows routed from public%.orders")
  local proc, log = H.start(ctx, "run " .. pb, "route")
  P.wait_for("the stream", function() return H.read(log):find("incremental: started", 1, true) or proc:exited() end, 60)
  T.ok(not proc:exited(), H.read(log))
  same_as_expected(src, tgt, "after the full load")
  for _, stmt in ipairs({
    "INSERT INTO orders VALUES (1001, 'archived', 1, 'new'), (1002, 'open', 2, NULL), (1003, 'spam', 3, NULL)",
    "UPDATE orders SET status = 'archived' WHERE id IN (1, 2)",             -- open → archive
    "UPDATE orders SET status = 'open' WHERE id IN (4, 8)",                 -- archive → back
    "UPDATE orders SET note = 'edited' WHERE id = 12",                      -- stays in the archive
    "UPDATE orders SET id = 2012 WHERE id = 16",                            -- a new key, still archived
    "UPDATE orders SET id = 2020, status = 'open' WHERE id = 20",           -- a new key and back
    "UPDATE orders SET status = 'spam' WHERE id IN (24, 5)",                -- dropped: gone from both
    "UPDATE orders SET status = 'archived' WHERE id = 9",                   -- a dropped row comes back, archived
    "DELETE FROM orders WHERE id IN (28, 7)",                               -- one archived, one kept
    "BEGIN; UPDATE orders SET status = 'archived' WHERE id = 3; UPDATE orders SET status = 'open', note = 'back' WHERE id = 3; COMMIT",
    "BEGIN; UPDATE orders SET status = 'open' WHERE id = 32; UPDATE orders SET status = 'archived' WHERE id = 32; COMMIT",
    "INSERT INTO orders_archive VALUES (1000100, 'archived', 5, 'own')",   -- the archive's own rows stream too
    "DELETE FROM orders_archive WHERE id = 1000001",
  }) do assert(src:exec(stmt)) end
  local f = assert(io.open(done, "w")); f:close()
  T.eq(proc:wait(), 0, H.read(log))
  same_as_expected(src, tgt, "after the stream")
  T.eq(assert(tgt:query("SELECT count(*) AS n FROM orders WHERE id IN (1, 2, 16, 24, 28)"))[1].n, 0, "moved away")
  T.eq(assert(tgt:query("SELECT string_agg(id::text, ',' ORDER BY id) AS ids FROM orders_archive " ..
                        "WHERE id IN (1, 2, 4, 8, 9, 16, 2012, 2020, 24, 28, 32)"))[1].ids, "1,2,9,32,2012")
  -- verify: each table against the rows the function gives it
  code, out = H.run("verify " .. pb)
  T.eq(code, 0, out)
  assert(tgt:exec("UPDATE orders_archive SET note = 'tampered' WHERE id = 2012"))
  code, out = H.run("verify " .. pb)
  T.eq(code, 6, out)
  T.match(out, "public%.orders_archive")
  T.match(out, "2012")
  assert(tgt:exec("UPDATE orders_archive SET note = E'archived: n\\t16' WHERE id = 2012"))
  code, out = H.run("verify " .. pb)
  T.eq(code, 0, out)
  assert(tgt:exec("INSERT INTO orders SELECT * FROM orders_archive WHERE id = 2012"))   -- a routed row in both
  code, out = H.run("verify " .. pb)
  T.eq(code, 6, out)
  T.match(out, "public%.orders[^_]")
  src:close(); tgt:close()
end)

T.test("on.route: a SIGKILL during the routing table's copy, then run again: every routed row once", function(ctx)
  P.clean(ctx)
  local src, tgt = P.connect_both(ctx)
  assert(src:exec(string.format(SETUP, 200, 200000)))
  local pb = H.playbook(ctx, "routekill", string.format([[
  migrate = { "schema", "full" },
  progress = "plain",
  full = { jobs = 1, split_larger_than = "512kB" },
  on = { row = { ["public.orders"] = %s },
         route = { ["public.orders"] = { "public.orders_archive" } } },
]], FN))
  local proc, log = H.start(ctx, "run " .. pb, "routekill")
  local PARTS = [[SELECT count(*) FILTER (WHERE done_at IS NOT NULL) AS done, count(*) AS total
                  FROM pgtide.copy_parts WHERE task = 'routekill' AND table_key = 'public.orders']]
  local mid = P.poll(90, function()
    local r = tgt:query(PARTS)
    return r and r[1] and r[1].done >= 2 and r[1].done < r[1].total - 2 and r[1]
  end)
  T.ok(mid, "never saw the routing table's copy half done: " .. H.read(log))
  proc:kill(9)
  local _, signal = proc:wait()
  T.eq(signal, 9)
  -- At the kill: the archive holds its own rows (copied first) and exactly the rows the
  -- committed parts of orders routed, each once.
  local ranges = assert(tgt:query([[SELECT range_kind, range_from, range_to FROM pgtide.copy_parts
                                    WHERE task = 'routekill' AND table_key = 'public.orders' AND done_at IS NOT NULL]]))
  local null = require("tide").null
  local want = 0
  for _, r in ipairs(ranges) do
    T.eq(r.range_kind, "key")
    local lo = r.range_from ~= null and r.range_from or -(1 << 40)
    local hi = r.range_to ~= null and r.range_to or (1 << 40)
    want = want + assert(src:query("SELECT count(*) AS n FROM orders WHERE status = 'archived' AND id >= $1::int8 AND id < $2::int8",
                                   lo, hi))[1].n
  end
  local at_kill = assert(tgt:query([[SELECT count(*) FILTER (WHERE id > 1000000) AS own, count(*) FILTER (WHERE id <= 1000000) AS routed,
                                            count(DISTINCT id) AS ids, count(*) AS n FROM orders_archive]]))[1]
  local all = assert(src:query("SELECT count(*) AS n FROM orders WHERE status = 'archived'"))[1].n
  T.ok(want > 0 and want < all, string.format("killed mid-way: %d of %d archived rows committed", want, all))
  T.eq(at_kill.own, 50, "the archive's own rows, copied before orders")
  T.eq(at_kill.routed, want, "the routed rows of the committed parts, no more")
  T.eq(at_kill.ids, at_kill.n, "no row twice")
  local code, out = H.run("run " .. pb)
  T.eq(code, 0, out)
  T.match(out, "resuming task routekill")
  same_as_expected(src, tgt, "after the rerun")
  code, out = H.run("verify " .. pb)
  T.eq(code, 0, out)
  src:close(); tgt:close()
end)

T.test("on.route into tables that exist on the target: a routed row replaces one with its key", function(ctx)
  P.clean(ctx)
  local src, tgt = P.connect_both(ctx)
  assert(src:exec(string.format(SETUP, 0, 100)))
  assert(src:exec("INSERT INTO orders_archive VALUES (8, 'archived', 0, 'own eight')"))   -- orders 8 is archived too
  assert(tgt:exec([[CREATE TABLE orders (id int PRIMARY KEY, status text NOT NULL, total numeric, note text, pad text);
                    CREATE TABLE orders_archive (id int PRIMARY KEY, status text NOT NULL, total numeric,
                                                 note text, pad text, moved_at text DEFAULT 'now')]]))
  local pb = H.playbook(ctx, "routeexisting", string.format([[
  migrate = { "full" },
  progress = "plain",
  on = { row = { ["public.orders"] = %s },
         route = { ["public.orders"] = { "public.orders_archive" } } },
]], FN))
  local code, out = H.run("run " .. pb)
  T.eq(code, 0, out)
  T.eq(assert(tgt:query("SELECT note, moved_at FROM orders_archive WHERE id = 8"))[1],
       { note = "archived: n\t8", moved_at = "now" }, "the routed row won; a column orders lacks got its default")
  T.eq(assert(tgt:query("SELECT count(*) AS n FROM orders_archive"))[1].n,
       assert(src:query("SELECT count(*) AS n FROM orders_archive"))[1].n + 25 - 1)
  code, out = H.run("verify " .. pb)
  T.eq(code, 0, out)
  src:close(); tgt:close()
end)

T.test("on.route mistakes: an undeclared table stops the task, naming it and the fix", function(ctx)
  P.clean(ctx)
  local src
  for i, fn in ipairs({ [[function(r) if r.status == "archived" then return true, "public.orders_old" end end]],
                        [[function(r) return true, 42 end]] }) do
    P.clean(ctx)
    src = P.connect(ctx.source_url)
    assert(src:exec(string.format(SETUP, 0, 50)))
    src:close()
    local pb = H.playbook(ctx, "routebad" .. i, string.format([[
  migrate = { "schema", "full" },
  on = { row = { ["public.orders"] = %s }, route = { ["public.orders"] = { "public.orders_archive" } } },
]], fn))
    local code, out = H.run("run " .. pb)
    T.eq(code, 1, out)
    if i == 1 then
      T.match(out, 'on%.row for public%.orders returned "public%.orders_old" as the table to route a row to, which ' ..
        'on%.route%["public%.orders"%] does not list: add it there')
    else
      T.match(out, "on%.row for public%.orders returned a number as its second value")
    end
    T.nomatch(out, "traceback")
  end
  -- Said by the plan, before anything is written.
  local pb = H.playbook(ctx, "routeplan", [[
  migrate = { "schema", "full", "incremental" },
  on = { row = { ["public.orders"] = function(r) end }, route = { ["public.orders"] = { "public.nope" } } },
]])
  local code, out = H.run("plan " .. pb)
  T.ne(code, 0, out)
  T.match(out, 'on%.route%["public%.orders"%]: "public%.nope" is not a selected table')
  code, out = H.run("check " .. pb)
  T.ne(code, 0, out)
  T.match(out, '"public%.nope" is not a selected table')
end)

T.test("on.route: an update moving a row whose out-of-line value is unchanged stops, naming REPLICA IDENTITY FULL",
       function(ctx)
  P.clean(ctx)
  local src, tgt = P.connect_both(ctx)
  assert(src:exec(string.format(SETUP, 0, 10)))
  assert(src:exec([[ALTER TABLE orders ALTER COLUMN pad SET STORAGE EXTERNAL;
                    UPDATE orders SET pad = repeat(md5(id::text), 200) WHERE id = 1]]))
  local pb = H.playbook(ctx, "routetoast", string.format([[
  migrate = { "schema", "full", "incremental" },
  progress = "plain",
  incremental = { heartbeat_interval = 0.2 },
  on = { row = { ["public.orders"] = %s },
         route = { ["public.orders"] = { "public.orders_archive" } } },
]], FN))
  local proc, log = H.start(ctx, "run " .. pb, "routetoast")
  P.wait_for("the stream", function() return H.read(log):find("incremental: started", 1, true) or proc:exited() end, 60)
  T.ok(not proc:exited(), H.read(log))
  assert(src:exec("UPDATE orders SET status = 'archived' WHERE id = 1"))   -- pad unchanged, not sent
  T.eq(proc:wait(), 1, H.read(log))
  T.match(H.read(log), "an update brought a row into this table %(its on%.row function dropped it before, or routed " ..
    "it to another table%).*into public%.orders_archive.*set REPLICA IDENTITY FULL on the source table")
  T.eq(assert(tgt:query("SELECT count(*) AS n FROM orders WHERE id = 1"))[1].n, 1, "nothing applied: the row stayed")
  T.eq(assert(tgt:query("SELECT count(*) AS n FROM orders_archive WHERE id = 1"))[1].n, 0)
  src:close(); tgt:close()
end)
