-- A write workload on the rental shop of tests/fixtures/rental_shop.sql that uses every change
-- shape the apply must get right, for the kill-anywhere suite.
--
--   local W = require "workload"
--   local w = W.start(source_url, { seed = 7, pgbench = true })   -- begins at once
--   ... w.rounds, w.big_committed (monotonic time of the last large commit) ...
--   w:stop()          -- finishes the round in progress, stops pgbench, closes its sessions
--
-- One round:
--   a transaction over several tables; updates leaving TOASTed columns unchanged and updates of
--   TOASTed columns; primary-key updates cascading to child tables (ON UPDATE CASCADE); a row
--   moved to another partition; deletes on REPLICA IDENTITY FULL tables and on the keyless table
--   (one of identical twins); TRUNCATE of two tables refilled in the same transaction, and of
--   one partition; a
--   savepoint rolled back, a transaction rolled back; a two-phase commit and a two-phase
--   rollback; odd values (NaN, -Infinity, -0, escapes); every third round a 20,000-row
--   transaction followed by a bulk update and a bulk delete.
-- Two pgbench clients (rate-limited) add short interleaved transactions on pgbench_* tables.
-- A round fails the workload only for an error of its own making; errors are kept in w.errors.
local tide = require "tide"

local M = {}

local W = {}
W.__index = W

local BIG = "(SELECT string_agg(md5(h::text || random()::text), ' ') FROM generate_series(1, 60) h)"

local function pgbench_bin()
  for _, dir in ipairs({ "/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin", "/usr/bin" }) do
    local f = io.open(dir .. "/pgbench")
    if f then f:close(); return dir .. "/pgbench" end
  end
end

-- Create pgbench's tables (scale 1) in the database of `url`, with a key on pgbench_history so
-- it can be streamed like the rest (pgbench -i leaves it keyless).
function M.init_pgbench(url)
  local bin = assert(pgbench_bin(), "pgbench not found (postgresql-15 ships it)")
  local f = assert(io.popen(string.format("%s -i -q -s 1 %q 2>&1", bin, url)))
  local out = f:read("a")
  local ok = f:close()
  assert(ok, "pgbench -i failed: " .. out)
  local c = assert(tide.connect(url))
  assert(c:exec("ALTER TABLE pgbench_history ADD COLUMN hid bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY"))
  c:close()
end

local function round(w, c, r)
  local rnd = w.rng
  local function x(sql, ...)
    local ok, err = c:exec(sql, ...)
    if not ok then error(string.format("workload round %d: %s\n  statement: %s", r, tostring(err), sql), 0) end
    return ok
  end
  local cust, film, inv = rnd(1, 2000), rnd(1, 1000), rnd(1, 4000)
  -- one transaction over several tables
  x(string.format([[BEGIN;
INSERT INTO rental (rental_date, inventory_id, customer_id, staff_id)
  VALUES (now() + %d * interval '1 us', (SELECT min(inventory_id) FROM inventory WHERE inventory_id >= %d),
          (SELECT min(customer_id) FROM customer WHERE customer_id >= %d), 1 + %d %% 4);
INSERT INTO payment (customer_id, staff_id, rental_id, amount, payment_date)
  VALUES (%d, 1, currval('rental_rental_id_seq'), %d / 100.0, timestamptz '2022-01-01' + %d * interval '37 min');
UPDATE customer SET activebool = NOT activebool, prefs = prefs || jsonb_build_object('r', %d) WHERE customer_id = %d;
UPDATE inventory SET last_update = now() WHERE inventory_id = %d;
COMMIT]], r, inv, cust, r, cust, rnd(1, 99999), rnd(1, 6000), r, cust, inv))
  -- TOAST: unchanged in one update, replaced in another
  x(string.format("UPDATE film SET rental_rate = (rental_rate + 0.01) %% 99 WHERE film_id = %d", film))
  x(string.format("UPDATE film SET description = %s WHERE film_id = %d", BIG, rnd(1, 1000)))
  x(string.format("UPDATE film_text SET description = %s WHERE film_id = %d", BIG, film))
  -- primary-key updates cascading to child tables
  x(string.format([[UPDATE actor SET actor_id = actor_id + 100000
                    WHERE actor_id = (SELECT actor_id FROM actor ORDER BY actor_id OFFSET %d LIMIT 1)]], rnd(0, 300)))
  x(string.format([[UPDATE country SET country_id = country_id + 1000
                    WHERE country_id = (SELECT country_id FROM country ORDER BY country_id OFFSET %d LIMIT 1)]], rnd(0, 50)))
  -- a row moved to another partition
  x(string.format([[UPDATE payment SET payment_date = payment_date + interval '1 month'
    WHERE (payment_date, payment_id) = (SELECT payment_date, payment_id FROM payment
                                        WHERE payment_date < '2022-06-01' ORDER BY payment_id OFFSET %d LIMIT 1)]],
    rnd(0, 5000)))
  -- TRUNCATE of one partition, refilled in the same transaction (pgoutput leaves a partition's
  -- TRUNCATE out: tide.cdc.ddl's trigger records it)
  x(string.format([[BEGIN;
TRUNCATE payment_p2022_06;
INSERT INTO payment (customer_id, staff_id, rental_id, amount, payment_date)
  SELECT customer_id, staff_id, rental_id, amount, payment_date + interval '5 months'
  FROM payment_p2022_01 ORDER BY payment_id LIMIT 20 + %d;
COMMIT]], r % 30))
  -- deletes on full-identity tables: a row, and one of identical twins
  x(string.format("DELETE FROM film_text WHERE film_id = %d", rnd(1, 1000)))
  x("DELETE FROM hidden_kit_nokey WHERE ctid = (SELECT ctid FROM hidden_kit_nokey WHERE note = 'twin' LIMIT 1)")
  -- TRUNCATE of two tables refilled in the same transaction
  x(string.format([[BEGIN;
TRUNCATE film_actor, hidden_kit_nokey;
INSERT INTO film_actor (actor_id, film_id)
  SELECT a.actor_id, f.film_id FROM actor a, film f WHERE (a.actor_id * 7 + f.film_id + %d) %% 97 = 0;
INSERT INTO hidden_kit_nokey SELECT 'kit' || (g %% 40), g %% 5, CASE WHEN g %% 3 = 0 THEN NULL ELSE 'twin' END
  FROM generate_series(1, 400 + %d) g;
COMMIT]], r, r % 100))
  -- a savepoint rolled back, and a transaction rolled back
  x(string.format([[BEGIN;
UPDATE staff SET email = 'r%d@shop.test' WHERE staff_id = 1;
SAVEPOINT s1;
DELETE FROM rental WHERE rental_id = %d;
UPDATE customer SET email = 'gone' WHERE customer_id < 100;
ROLLBACK TO SAVEPOINT s1;
UPDATE staff SET active = NOT active WHERE staff_id = 2;
SAVEPOINT s2;
INSERT INTO country (country) VALUES ('Kept %d');
RELEASE SAVEPOINT s2;
COMMIT]], r, rnd(1, 30000), r))
  x("BEGIN; DELETE FROM rental WHERE rental_id < 1000; UPDATE film SET title = 'lost'; ROLLBACK")
  -- two-phase commit and two-phase rollback
  local gid = string.format("w%d_%d_%d", w.seed, r, rnd(1, 1e9))
  x(string.format("BEGIN; UPDATE store SET last_update = now() WHERE store_id = 1; " ..
                  "INSERT INTO country (country) VALUES ('2pc %d'); PREPARE TRANSACTION '%s'", r, gid))
  x(string.format("COMMIT PREPARED '%s'", gid))
  x(string.format("BEGIN; DELETE FROM city WHERE city_id > 0 AND NOT EXISTS (SELECT FROM address a WHERE a.city_id = city.city_id); " ..
                  "UPDATE store SET last_update = now() WHERE store_id = 2; PREPARE TRANSACTION '%s_rb'", gid))
  x(string.format("ROLLBACK PREPARED '%s_rb'", gid))
  -- odd values
  local id = 100 + r
  x(string.format([[INSERT INTO "Odd Schema"."Weird ""Values"" Table" VALUES
    (%d, 'NaN', 'NaN', E'r%d\ttab\nline \\ ''q'' "dq" é ☃', ARRAY[%d, NULL], '{"k": "v\u00e9"}', '\x00ff00', '-infinity')
    ON CONFLICT ("Id") DO UPDATE SET "f 8" = '-Infinity', "n" = '-0', "t\x" = E'\\\\x\r\n']], id, r, r))
  x(string.format([[UPDATE "Odd Schema"."Weird ""Values"" Table" SET "f 8" = '-0', "arr" = "arr" || %d WHERE "Id" = %d]],
    r, 1 + r % 3))
  -- every third round: a large transaction, then a bulk update and a bulk delete
  if r % 3 == 0 then
    x(string.format("BEGIN; INSERT INTO bulk_log (round, pad) SELECT %d, repeat(md5(g::text), 3) FROM generate_series(1, 20000) g; COMMIT", r))
    w.big_committed = tide.monotonic()
    x(string.format("UPDATE bulk_log SET pad = 'u' || id WHERE round = %d AND id %% 7 = 0", r))
    x(string.format("DELETE FROM bulk_log WHERE round = %d AND id %% 5 = 0", r))
    w.bulk_done = tide.monotonic()
  end
end

local function loop(w)
  local c = assert(tide.connect(w.url, { application_name = "workload" }))
  w.conn = c
  while not w.stopping do
    w.round_no = w.round_no + 1
    local ok, err = pcall(round, w, c, w.round_no)
    if not ok then
      -- A failed statement inside an explicit transaction leaves it open: end it.
      pcall(c.exec, c, "ROLLBACK")
      w.errors[#w.errors + 1] = tostring(err)
      if #w.errors > 20 then w.stopping = true end
    else
      w.rounds = w.rounds + 1
    end
    tide.sleep(w.pause)
  end
  c:close()
end

-- W.start(url, opts) → workload. opts.seed (randomness of the rounds), opts.pause (seconds
-- between rounds, default 0.05), opts.pgbench (true: two rate-limited pgbench clients).
function M.start(url, opts)
  opts = opts or {}
  local seed = opts.seed or 1
  local state = seed * 2654435761 % 4294967296
  local function rng(a, b)
    state = (state * 1103515245 + 12345) % 2147483648
    return a + state % (b - a + 1)
  end
  local w = setmetatable({ url = url, seed = seed, rng = rng, rounds = 0, round_no = 0, errors = {},
                           pause = opts.pause or 0.05 }, W)
  if opts.pgbench then
    local bin = assert(pgbench_bin(), "pgbench not found")
    w.pgbench_log = (opts.tmpdir or "/tmp") .. "/pgbench-" .. seed .. ".log"
    w.pgbench = assert(tide.process({ bin, "-n", "-c", "2", "-j", "1", "-R", tostring(opts.pgbench_rate or 60),
                                      "-T", "3600", url, stdout = w.pgbench_log, stderr = w.pgbench_log }))
  end
  w.handle = tide.spawn(loop, w)
  return w
end

function W:stop()
  self.stopping = true
  self.handle:wait()
  if self.pgbench then
    if not self.pgbench:exited() then self.pgbench:kill(15) end
    self.pgbench:wait()
  end
  return self
end

return M
