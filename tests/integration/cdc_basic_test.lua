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
  T.eq(#dropped, 6 + lanes, "slot, publication, the DDL event triggers and their function, heartbeat table, origin(s)")
  T.eq(#H.release(ctx, task), 0, "release is idempotent")
  src:close(); tgt:close()
end)
