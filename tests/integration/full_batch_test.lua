-- Small post-data steps run several to a transaction (tide.full.schedule.next_small_step): a
-- table's primary key index, the constraint attached to it, the foreign keys that waited for
-- it, and other small ready steps, each with its record in the task's state. What must hold:
-- every step is done and recorded together (never one without the other), and a step that
-- fails inside a batch is named alone, as when it runs by itself.
local T = require "testlib"
local P = require "pg"
local H = require "tidetest"

local TABLES = 40

-- A chain of small tables, each with a key, an index and (but the first) a foreign key to the
-- one before; `people` has a unique index on email.
local function setup(src)
  local sql = { "DROP SCHEMA IF EXISTS chain CASCADE; CREATE SCHEMA chain;",
                "DROP TABLE IF EXISTS people CASCADE;",
                "CREATE TABLE people (id int PRIMARY KEY, email text NOT NULL);",
                "CREATE UNIQUE INDEX people_email ON people (email);",
                "INSERT INTO people VALUES (1, 'Ann@x'), (2, 'ann@x'), (3, 'Bob@x');" }
  for i = 1, TABLES do
    sql[#sql + 1] = string.format([[CREATE TABLE chain."T %d" (id int PRIMARY KEY, up int, v text);
CREATE INDEX "T %d_v" ON chain."T %d" (v);
INSERT INTO chain."T %d" SELECT g, g, 'v' || g FROM generate_series(1, 50) g;]], i, i, i, i)
    if i > 1 then
      sql[#sql + 1] = string.format([[ALTER TABLE chain."T %d" ADD CONSTRAINT "T %d_up" FOREIGN KEY (up) REFERENCES chain."T %d" (id);]], i, i, i - 1)
    end
  end
  assert(src:exec(table.concat(sql, "\n")))
end

-- The target's indexes and constraints (primary keys, foreign keys) of the test's tables: one
-- post-data step each (a primary key is two: its index, then the constraint).
local function objects_on(tgt)
  return assert(tgt:query([[
SELECT (SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
        WHERE c.relnamespace IN ('chain'::regnamespace, 'public'::regnamespace)) +
       (SELECT count(*) FROM pg_constraint WHERE contype IN ('p', 'f')
        AND connamespace IN ('chain'::regnamespace, 'public'::regnamespace)) AS n]]))[1].n
end

-- Both databases emptied, the source set up: connections to them.
local function fresh(ctx)
  P.clean(ctx)
  local src, tgt = P.connect_both(ctx)
  assert(tgt:exec("DROP SCHEMA IF EXISTS chain CASCADE"))
  setup(src)
  return src, tgt
end

local function steps_recorded(tgt, task)
  return assert(tgt:query([[SELECT count(*) AS n FROM pgtide.steps
    WHERE task = $1 AND (step LIKE 'index:%' OR step LIKE 'constraint:%' OR step LIKE 'fkey:%')]], task))[1].n
end

T.test("small post-data steps in batches: all done and recorded, the load alike", function(ctx)
  local src, tgt = fresh(ctx)
  assert(src:exec("DELETE FROM people WHERE id = 2"))
  local pb = H.playbook(ctx, "batch_ok", [[
  migrate = { "schema", "full" }, progress = "plain",
  full = { jobs = 2, index_jobs = 2, analyze = false },
]])
  local proc, log = H.start(ctx, "run " .. pb, "batch_ok")
  T.eq(proc:wait(), 0, H.read(log))
  -- 41 tables: 41 primary keys (index + constraint), 40 indexes, 39 foreign keys, 1 unique index.
  T.eq(objects_on(tgt), 41 * 2 + 40 + 39 + 1)
  for i = 1, TABLES do
    T.eq(P.fingerprint(tgt, string.format('chain."T %d"', i)), P.fingerprint(src, string.format('chain."T %d"', i)))
  end
  -- The state's records are forgotten after a finished run; the timeline says how steps ran:
  -- a batch's steps share one duration (the batch's, divided among them).
  local r = assert(tgt:query([[SELECT count(*) AS steps, count(DISTINCT data->>'seconds') AS units
    FROM pgtide.timeline WHERE task = 'batch_ok' AND kind = 'step_done']]))[1]
  T.eq(r.steps, 41 * 2 + 40 + 39 + 1)
  T.ok(r.units < r.steps / 2, string.format("%d steps in %d transactions: batched", r.steps, r.units))
  src:close(); tgt:close()
end)

T.test("a step failing inside a batch is named alone; what committed is recorded, nothing else", function(ctx)
  local src, tgt = fresh(ctx)
  -- 'Ann@x' and 'ann@x' are two rows on the source; lowered on the way, the unique index fails.
  local pb = H.playbook(ctx, "batch_fail", [[
  migrate = { "schema", "full" }, progress = "plain",
  full = { jobs = 1, index_jobs = 1, analyze = false },
  on = { row = { ["public.people"] = function(r) r.email = r.email:lower() end } },
]])
  local proc, log = H.start(ctx, "run " .. pb, "batch_fail")
  local code = proc:wait()
  local out = H.read(log)
  T.ok(code ~= 0, out)
  T.match(out, "post%-data steps run together failed: running them one by one")
  T.match(out, 'people_email')
  T.match(out, "%(email%)=%(ann@x%) is duplicated")
  T.ok(not out:find("stack traceback", 1, true), out)
  -- Every step recorded is on the target and every one on the target is recorded: none of a
  -- batch committed without its records, none recorded without its work.
  local on_target = objects_on(tgt)
  T.eq(steps_recorded(tgt, "batch_fail"), on_target)
  T.ok(on_target < 41 * 2 + 40 + 39 + 1, "the unique index is not there")
  src:close(); tgt:close()
end)

-- Small tables are copied several to a source transaction. A copy job must never wait for a
-- source table's lock while it holds another (a TRUNCATE of several tables on the source would
-- deadlock with it): the batch's tables are locked at once without waiting, and when one is
-- busy they are copied one by one. Here a session holds one small table while the load runs:
-- the job that waits for it must hold no lock on any other table of the test.
T.test("small tables in one source transaction: never waiting for a lock while holding another", function(ctx)
  local src, tgt = fresh(ctx)
  assert(src:exec("DELETE FROM people WHERE id = 2"))
  -- A larger table goes first (parts go largest first), so the lock below is taken before the
  -- job reaches the small ones.
  assert(src:exec([[CREATE TABLE public.big (id int PRIMARY KEY, v text);
    INSERT INTO public.big SELECT g, repeat(md5(g::text), 8) FROM generate_series(1, 300000) g]]))
  local pb = H.playbook(ctx, "batch_lock", [[
  migrate = { "schema", "full" }, progress = "plain",
  full = { jobs = 1, index_jobs = 1, analyze = false },
]])
  local proc, log = H.start(ctx, "run " .. pb, "batch_lock")
  P.wait_for("the load", function() return H.read(log):find("full: started", 1, true) or proc:exited() end, 60)
  local holder = P.connect(ctx.source_url)
  assert(holder:exec([[BEGIN; LOCK TABLE chain."T 7" IN ACCESS EXCLUSIVE MODE]]))
  T.ok(not proc:exited(), H.read(log))
  -- pgtide's source backend that waits for chain."T 7", and the other test tables it holds.
  local held
  P.wait_for("a copy waiting for the locked table", function()
    local rows = assert(src:query([[
SELECT w.pid, (SELECT count(*) FROM pg_locks h JOIN pg_class c ON c.oid = h.relation
               WHERE h.pid = w.pid AND h.granted AND c.relnamespace = 'chain'::regnamespace) AS held
FROM pg_locks w JOIN pg_stat_activity a ON a.pid = w.pid
WHERE NOT w.granted AND w.relation = 'chain."T 7"'::regclass AND a.application_name LIKE 'pgtide:%']]))
    if rows[1] then held = rows[1].held end
    return rows[1] ~= nil or proc:exited()
  end, 60)
  T.eq(held, 0, "the waiting job holds no other table's lock")
  assert(holder:exec("COMMIT"))
  holder:close()
  T.eq(proc:wait(), 0, H.read(log))
  for i = 1, TABLES do
    T.eq(P.fingerprint(tgt, string.format('chain."T %d"', i)), P.fingerprint(src, string.format('chain."T %d"', i)))
  end
  T.eq(P.fingerprint(tgt, "public.big"), P.fingerprint(src, "public.big"))
  src:close(); tgt:close()
end)
