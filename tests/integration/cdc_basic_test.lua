-- Incremental migration, the basic path: prepare (publication, slot, origin), the copy under
-- the exported snapshot, streaming inserts/updates/deletes, a clean stop, release.
local T = require "testlib"
local P = require "pg"
local H = dofile("tests/integration/cdc_lib.lua")

T.test("changes made after the snapshot reach the target, once", function(ctx)
  local ddl = [[CREATE TABLE items (id int PRIMARY KEY, name text, qty int, note text);]]
  P.both(ctx, ddl)
  local src = P.connect(ctx.source_url)
  assert(src:exec("INSERT INTO items SELECT g, 'item ' || g, g, NULL FROM generate_series(1, 100) g"))
  local ref = {}
  local task = H.task(ctx, "basic", { stop = H.stop_at(ref) })
  local plan = H.plan(src)
  local info = H.setup(ctx, task, plan)
  T.ok(info.snapshot == nil or type(info.snapshot) == "string")
  local h = H.stream(ctx, task, plan)
  assert(src:exec([[
    INSERT INTO items SELECT g, 'new ' || g, g, 'x' FROM generate_series(101, 150) g;
    UPDATE items SET qty = qty * 10 WHERE id % 3 = 0;
    DELETE FROM items WHERE id % 7 = 0;
    UPDATE items SET note = NULL WHERE id = 101;]]))
  ref.lsn = P.lsn(src, true)
  local summary = h:wait()
  T.eq(summary.stopped_by, "condition")
  local tgt = P.connect(ctx.target_url)
  P.same(src, tgt, "items")
  T.ok(summary.transactions >= 1 and summary.changes >= 50, "counted: " .. tostring(summary.transactions) .. " transactions, " .. tostring(summary.changes) .. " changes")
  local dropped = H.release(ctx, task)
  -- (with PGTIDE_APPLY_CONNECTIONS = N, each lane beyond the first has an origin of its own)
  local lanes = math.max(1, tonumber(os.getenv("PGTIDE_APPLY_CONNECTIONS") or "1"))
  T.eq(#dropped, 7 + lanes, "slot, publication, the DDL event triggers and their function, the partitions' " ..
       "TRUNCATE trigger function, heartbeat table, origin(s)")
  T.eq(#H.release(ctx, task), 0, "release is idempotent")
  src:close(); tgt:close()
end)

-- A session opens its replication connection and its apply session at once (tide.cdc,
-- open_session): when the apply session is refused (the task's origin is held by a stream
-- that runs), the replication connection that opened beside it is closed again.
T.test("a second stream of a task that streams is refused, and leaves no connection open", function(ctx)
  P.both(ctx, "DROP TABLE IF EXISTS items; CREATE TABLE items (id int PRIMARY KEY, n int);")
  local src = P.connect(ctx.source_url)
  local tgt = P.connect(ctx.target_url)
  local ref = {}
  local task = H.task(ctx, "twice", { stop = H.stop_at(ref) })
  local plan = H.plan(src)
  H.setup(ctx, task, plan)
  local first = H.stream(ctx, task, plan)
  local function sessions(conn, name)
    return assert(conn:query("SELECT count(*)::int AS n FROM pg_catalog.pg_stat_activity WHERE application_name = $1",
                             name))[1].n
  end
  P.wait_for("the first stream's apply session", function() return sessions(tgt, "pgtide:twice:apply") == 1 end)
  P.wait_for("the first stream's replication connection", function() return sessions(src, "pgtide:twice:stream") == 1 end)
  local again = H.task(ctx, "twice", { retry = { attempts = 1, max_delay = 0.1 } })
  local ok, err = pcall(function() return H.stream(ctx, again, plan):wait() end)
  T.ok(not ok, "the second stream stopped")
  T.match(tostring(type(err) == "table" and err.message or err), "another pgtide process may be applying this task")
  -- Only the first stream's connections are left (a backend leaves pg_stat_activity as it exits).
  P.wait_for("the second stream's connections to close", function()
    return sessions(src, "pgtide:twice:stream") == 1 and sessions(tgt, "pgtide:twice:apply") == 1
  end, 10)
  assert(src:exec("INSERT INTO items SELECT g, g FROM generate_series(1, 20) g"))
  ref.lsn = P.lsn(src, true)
  T.eq(first:wait().stopped_by, "condition")
  P.same(src, tgt, "items")
  H.release(ctx, task)
  src:close(); tgt:close()
end)
