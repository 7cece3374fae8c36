-- Parallel apply (incremental.apply_connections, engine/cdc/lanes.c): transactions spread over
-- several target connections, every change shape still ending as on the source; SIGKILL in the
-- middle and reruns with other connection counts: nothing applied twice, nothing skipped.
local T = require "testlib"
local P = require "pg"
local tide = require "tide"
local H = dofile("tests/integration/cdc_lib.lua")

local DDL = [[
CREATE TABLE accounts (id int PRIMARY KEY, bal bigint NOT NULL, note text);
CREATE TABLE branches (id int PRIMARY KEY, bal bigint NOT NULL);
CREATE TABLE history (aid int, delta int, at timestamptz DEFAULT now());
CREATE TABLE codes (id int PRIMARY KEY, code text NOT NULL UNIQUE);
CREATE TABLE parent (id int PRIMARY KEY, name text);
CREATE TABLE child (id int PRIMARY KEY, parent_id int CONSTRAINT child_parent REFERENCES parent (id) ON DELETE CASCADE, v int);
CREATE TABLE parted (id int, region int, v int, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
CREATE TABLE parted_1 PARTITION OF parted FOR VALUES IN (1);
CREATE TABLE parted_2 PARTITION OF parted FOR VALUES IN (2);
CREATE TABLE scratch (id int PRIMARY KEY, v text);
]]
local TABLES = { "accounts", "branches", "history", "codes", "parent", "child", "parted", "scratch" }

local function seed(src)
  assert(src:exec([[
INSERT INTO accounts SELECT g, 0, NULL FROM generate_series(1, 2000) g;
INSERT INTO branches SELECT g, 0 FROM generate_series(1, 5) g;
INSERT INTO codes SELECT g, 'c' || g FROM generate_series(1, 50) g;
INSERT INTO parent SELECT g, 'p' || g FROM generate_series(1, 50) g;
INSERT INTO child SELECT g, 1 + g % 50, g FROM generate_series(1, 200) g;
INSERT INTO parted SELECT g, 1 + g % 2, g FROM generate_series(1, 200) g;
INSERT INTO scratch SELECT g, 'x' FROM generate_series(1, 100) g]]))
end

-- One writer's transactions: pgbench-like ones (random account, hot branch, keyless history),
-- and every few, another shape. `seed` makes each writer's choices its own and repeatable.
local function writer(url, seed_n, n)
  local c = P.connect(url)
  local rnd = seed_n
  local function r(k)
    rnd = (rnd * 1103515245 + 12345) % 2147483648
    return rnd % k
  end
  for i = 1, n do
    local aid, bid, delta = 1 + r(2000), 1 + r(5), r(1000) - 500
    if r(5) > 0 then bid = 0 end   -- one in five touches a (hot) branch row
    local shape = i % 10
    local sql
    if shape == 1 then   -- two rows swap their unique codes through a free one, in three transactions
      local a, b = 1 + r(50), 1 + r(50)
      if a ~= b then
        sql = string.format([[BEGIN; UPDATE codes SET code = 'tmp%d_%d' WHERE id = %d; COMMIT;
          BEGIN; UPDATE codes SET code = (SELECT code FROM codes WHERE id = %d) || '' WHERE id = %d AND false; COMMIT;
          BEGIN; UPDATE codes SET code = 'c' || id || '_' || %d WHERE id = %d; COMMIT]], seed_n, i, a, b, b, i, a)
      end
    elseif shape == 2 then   -- a key changes; another row takes the old key
      local k = 100000 + seed_n * 100000 + i
      sql = string.format([[BEGIN; UPDATE accounts SET id = %d WHERE id = (SELECT min(id) FROM accounts WHERE id <= 2000 AND id %% 7 = %d); COMMIT]],
        k, seed_n % 7)
    elseif shape == 3 then   -- a parent and its children, then the parent goes (cascade on the source)
      local pid = 1000 + seed_n * 10000 + i
      sql = string.format([[BEGIN; INSERT INTO parent VALUES (%d, 'n'); INSERT INTO child VALUES (%d, %d, 1), (%d, %d, 2); COMMIT;
        BEGIN; UPDATE child SET v = v + 1 WHERE parent_id = %d; COMMIT;
        BEGIN; DELETE FROM parent WHERE id = %d; COMMIT]], pid, pid * 10, pid, pid * 10 + 1, pid, pid, pid)
    elseif shape == 4 then   -- a row moves between partitions
      sql = string.format([[UPDATE parted SET region = 3 - region, v = v + 1 WHERE id = %d]], 1 + r(200))
    elseif shape == 5 then   -- savepoints: one part rolled back
      sql = string.format([[BEGIN; UPDATE accounts SET bal = bal + 1 WHERE id = %d; SAVEPOINT s;
        UPDATE accounts SET bal = bal + 1000000 WHERE id = %d; ROLLBACK TO SAVEPOINT s;
        INSERT INTO history (aid, delta) VALUES (%d, 1); COMMIT]], aid, aid, aid)
    elseif shape == 6 then   -- delete and insert the same key in separate transactions
      local k = 1 + r(100)
      sql = string.format([[DELETE FROM scratch WHERE id = %d; INSERT INTO scratch VALUES (%d, 'w%d_%d') ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v]],
        k, k, seed_n, i)
    end
    sql = sql or string.format([[BEGIN;
      UPDATE accounts SET bal = bal + %d WHERE id = %d;
      UPDATE branches SET bal = bal + %d WHERE id = %d;
      INSERT INTO history (aid, delta) VALUES (%d, %d);
      COMMIT]], delta, aid, delta, bid, aid, delta)
    local ok, err = c:exec(sql)
    -- concurrent writers may deadlock or collide on a unique code: that transaction is simply not there
    if not ok and not (err.sqlstate == "40P01" or err.sqlstate == "23505" or err.sqlstate == "40001") then
      error(err.message, 0)
    end
  end
  c:close()
end

local function special(src)
  -- TRUNCATE and refill in one transaction: a serial point
  assert(src:exec("BEGIN; TRUNCATE scratch; INSERT INTO scratch SELECT g, 'refill' FROM generate_series(1, 150) g; COMMIT"))
  -- one transaction larger than apply_tx_limit: streamed to one connection alone
  assert(src:exec("INSERT INTO history (aid, delta) SELECT g % 2000, 1 FROM generate_series(1, 20000) g"))
end

-- The test's copy goes table by table in name order (child before parent): the target's
-- foreign key comes back after it, NOT VALID (it still joins the two tables for the lanes).
local function setup(ctx, task, plan)
  local tgt = P.connect(ctx.target_url)
  assert(tgt:exec("ALTER TABLE child DROP CONSTRAINT child_parent"))
  H.setup(ctx, task, plan)
  assert(tgt:exec("ALTER TABLE child ADD CONSTRAINT child_parent FOREIGN KEY (parent_id) REFERENCES parent (id) " ..
                  "ON DELETE CASCADE NOT VALID"))
  tgt:close()
end

local slurp = H.slurp

local function count(conn, tbl)
  return assert(conn:query("SELECT count(*) AS n FROM " .. tbl))[1].n
end

T.test("three connections: every change shape ends as on the source; the work was spread", function(ctx)
  P.both(ctx, DDL)
  local src, tgt = P.connect(ctx.source_url), P.connect(ctx.target_url)
  seed(src)
  local ref = {}
  local task = H.task(ctx, "lanes3", { stop = H.stop_at(ref),
    incremental = { apply_connections = 3, apply_tx_limit = 65536 } })
  local plan = H.plan(src)
  setup(ctx, task, plan)
  local h = H.stream(ctx, task, plan)
  local ws = {}
  for w = 1, 3 do ws[w] = tide.spawn(function() writer(ctx.source_url, w, 400) end) end
  for _, w in ipairs(ws) do w:wait() end
  special(src)
  writer(ctx.source_url, 9, 100)
  ref.lsn = P.lsn(src, true)
  local summary = h:wait()
  for _, tbl in ipairs(TABLES) do P.same(src, tgt, tbl) end
  local lanes = summary.lanes
  T.ok(lanes ~= nil, "the summary has the lanes' figures")
  T.eq(lanes.connections, 3)
  local busy = 0
  for _, n in ipairs(lanes.transactions) do if n > 50 then busy = busy + 1 end end
  T.ok(busy >= 2, "transactions on several connections: " .. table.concat(lanes.transactions, ", ") ..
    " (serial points " .. lanes.serial_points .. ", waits " .. lanes.waits .. ", dispatched " .. lanes.dispatched .. ")")
  T.ok(lanes.serial_points >= 2, "TRUNCATE and the large transaction were serial points: " .. lanes.serial_points)
  local rows = assert(tgt:query("SELECT count(*) AS n FROM pgtide.apply_lanes WHERE task = 'lanes3'"))
  T.eq(rows[1].n, 3, "one progress row per connection")
  H.release(ctx, task)
  rows = assert(tgt:query("SELECT count(*) AS n FROM pgtide.apply_lanes WHERE task = 'lanes3'"))
  T.eq(rows[1].n, 0, "release removes the rows")
  rows = assert(tgt:query("SELECT count(*) AS n FROM pg_replication_origin WHERE roname LIKE '%lanes3%'"))
  T.eq(rows[1].n, 0, "release drops every lane's origin")
  src:close(); tgt:close()
end)

local function child(ctx, name, stopfile, log, lanes)
  return assert(tide.process { os.getenv("PGTIDE"), "script", "tests/integration/cdc_child.lua",
    ctx.source_url, ctx.target_url, name, stopfile, tostring(lanes), stdout = log, stderr = log })
end

T.test("SIGKILL while applying on 3 connections, reruns on 2 then 1: no duplicate, no gap", function(ctx)
  P.both(ctx, "DROP TABLE IF EXISTS " .. table.concat(TABLES, ", ") .. " CASCADE;" .. DDL)
  local src, tgt = P.connect(ctx.source_url), P.connect(ctx.target_url)
  seed(src)
  local name = "lanes_kill"
  local task = H.task(ctx, name)
  setup(ctx, task, H.plan(src))
  local stopfile = ctx.tmpdir .. "/cdc_stop_" .. name
  local log = ctx.tmpdir .. "/cdc_child_" .. name .. ".log"
  os.remove(stopfile)

  for round, lanes in ipairs({ 3, 2 }) do
    local p = child(ctx, name, stopfile, log, lanes)
    local before = count(tgt, "history")
    local ws = {}
    for w = 1, 2 do ws[w] = tide.spawn(function() writer(ctx.source_url, round * 10 + w, 300) end) end
    local ok, err = pcall(P.wait_for, "the target to move", function() return count(tgt, "history") >= before + 150 end)
    if not ok then error(tostring(err) .. "\n" .. slurp(log), 0) end
    p:kill(9)
    p:wait()
    for _, w in ipairs(ws) do w:wait() end
  end
  local expected_history = count(src, "history")
  local f = assert(io.open(stopfile, "w"))
  f:write(P.lsn(src, true), "\n")
  f:close()
  local p = child(ctx, name, stopfile, log, 1)
  local code = p:wait()
  T.eq(code, 0, slurp(log))
  for _, tbl in ipairs(TABLES) do P.same(src, tgt, tbl) end
  T.eq(count(tgt, "history"), expected_history, "no duplicate in a table without a key")
  H.release(ctx, task)
  src:close(); tgt:close()
end)

T.test("a backlog of independent transactions: spread over 2 connections, in large groups on each", function(ctx)
  P.both(ctx, "DROP TABLE IF EXISTS " .. table.concat(TABLES, ", ") .. " CASCADE;" .. DDL)
  local src, tgt = P.connect(ctx.source_url), P.connect(ctx.target_url)
  seed(src)
  local ref = {}
  local task = H.task(ctx, "lanes_backlog", { stop = H.stop_at(ref), incremental = { apply_connections = 2 } })
  local plan = H.plan(src)
  setup(ctx, task, plan)
  -- the backlog, written before the stream starts: an account update and a history row each
  local parts = {}
  for i = 1, 3000 do
    parts[#parts + 1] = string.format("BEGIN; UPDATE accounts SET bal = bal + 1 WHERE id = %d; INSERT INTO history (aid, delta) VALUES (%d, 1); COMMIT;",
      1 + (i * 7919) % 2000, i)
  end
  assert(src:exec(table.concat(parts, "\n")))   -- 3,000 transactions
  ref.lsn = P.lsn(src, true)
  -- A backlog: committed more than a second before it is applied (younger, apply is "caught
  -- up" and closes groups after group_live_ms)
  local written = tide.now()
  P.wait_for("the backlog to be a second old", function() return tide.now() - written > 1.5 end)
  local summary = H.stream(ctx, task, plan):wait()
  for _, tbl in ipairs(TABLES) do P.same(src, tgt, tbl) end
  local lanes = summary.lanes
  T.ok(lanes.transactions[1] > 300 and lanes.transactions[2] > 300,
       "both connections applied a share: " .. table.concat(lanes.transactions, ", "))
  -- a backlog is applied in groups of many transactions on every connection (one group per
  -- transaction on a connection would mean its options were not the task's)
  T.ok(summary.status.groups < 200, "groups: " .. tostring(summary.status.groups))
  H.release(ctx, task)
  src:close(); tgt:close()
end)

T.test("three connections, each replaced every few statements: every change shape ends as on the source", function(ctx)
  P.both(ctx, "DROP TABLE IF EXISTS " .. table.concat(TABLES, ", ") .. " CASCADE;" .. DDL)
  local src, tgt = P.connect(ctx.source_url), P.connect(ctx.target_url)
  seed(src)
  local ref = {}
  local task = H.task(ctx, "lanes_sessions", { stop = H.stop_at(ref),
    incremental = { apply_connections = 3, apply_tx_limit = 65536, apply_session_statements = 4, group_changes = 40 } })
  local plan = H.plan(src)
  setup(ctx, task, plan)
  local h = H.stream(ctx, task, plan)
  local ws = {}
  for w = 1, 3 do ws[w] = tide.spawn(function() writer(ctx.source_url, w, 200) end) end
  for _, w in ipairs(ws) do w:wait() end
  special(src)
  writer(ctx.source_url, 9, 100)
  ref.lsn = P.lsn(src, true)
  local summary = h:wait()
  for _, tbl in ipairs(TABLES) do P.same(src, tgt, tbl) end
  T.eq(summary.lanes.connections, 3)
  T.ok(summary.status.apply_sessions >= 6, "the lanes' sessions were replaced: " .. tostring(summary.status.apply_sessions))
  local rows = assert(tgt:query("SELECT count(*)::int AS n FROM pg_replication_origin_status s " ..
    "JOIN pg_replication_origin o ON o.roident = s.local_id WHERE o.roname LIKE '%lanes_sessions%'"))
  T.eq(rows[1].n, 3, "one origin per lane, each with its progress")
  H.release(ctx, task)
  src:close(); tgt:close()
end)

-- Session switches while Lua is slow to answer them (an on.progress hook that sleeps) and the
-- stream is paused and resumed: a group closed by a pause or its age, not by a Commit, must not
-- let changes reach a released connection (the switch waits until feeding stopped; a change fed
-- to a released connection fails the stream instead of being lost). A backlog over a second old
-- (groups close by size and age), then single transactions; on one connection and on two.
for _, n in ipairs({ 1, 2 }) do
  T.test(string.format("sessions switched while Lua is slow and the stream pauses (%d connection(s)): no gap, no duplicate", n),
  function(ctx)
    P.both(ctx, "DROP TABLE IF EXISTS " .. table.concat(TABLES, ", ") .. " CASCADE;" .. DDL)
    local src, tgt = P.connect(ctx.source_url), P.connect(ctx.target_url)
    seed(src)
    local ref = {}
    local run = require("tide.taskrun").of(H.task(ctx, "lanes_slow" .. n, { stop = H.stop_at(ref),
      incremental = { apply_connections = n, apply_session_statements = 4, group_changes = 30 },
      on = { progress = function() tide.sleep(0.1) end } }))
    local plan = H.plan(src)
    setup(ctx, run.task, plan)
    local function backlog(c, n_tx, base)
      local parts = {}
      for i = 1, n_tx do
        parts[#parts + 1] = string.format("BEGIN; UPDATE accounts SET bal = bal + 1 WHERE id = %d; " ..
          "INSERT INTO history (aid, delta) VALUES (%d, 1); UPDATE parted SET v = v + 1 WHERE id = %d; COMMIT;",
          1 + ((i + base) * 7919) % 2000, i + base, 1 + i % 200)
      end
      assert(c:exec(table.concat(parts, "\n")))
    end
    backlog(src, 1500, 0)
    local written = tide.now()
    P.wait_for("the backlog to be a second old", function() return tide.now() - written > 1.5 end)
    local h = H.stream(ctx, run, plan)
    -- then single transactions updating 1 to 9 rows each (folded, sent at the group's close as
    -- one UPDATE of k rows: a statement new to the session, prepared as a pause closes the group)
    for i = 1, 120 do
      local k = 1 + i % 9
      assert(src:exec(string.format("UPDATE accounts SET bal = bal + 1 WHERE id BETWEEN %d AND %d; " ..
        "INSERT INTO history (aid, delta) VALUES (%d, 2)", 10 * i, 10 * i + k - 1, i)))
      if i % 2 == 0 then run:pause(); tide.sleep(0.03); run:resume() end
      tide.sleep(0.03)
    end
    ref.lsn = P.lsn(src, true)
    local summary = h:wait()
    T.eq(count(tgt, "history"), count(src, "history"), "no duplicate in a table without a key")
    for _, tbl in ipairs(TABLES) do P.same(src, tgt, tbl) end
    T.ok(summary.status.apply_sessions >= 5, "sessions were replaced: " .. tostring(summary.status.apply_sessions))
    H.release(ctx, run.task)
    src:close(); tgt:close()
  end)
end
