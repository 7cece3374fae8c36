-- Conflicts (error / skip / overwrite / the on.conflict hook), the per-change hook, and a
-- column added on the source while streaming.
local T = require "testlib"
local P = require "pg"
local H = dofile("tests/integration/cdc_lib.lua")

-- A source and a target that hold the same rows of t (and of archive), streaming set up.
local function fresh(ctx, name, extra)
  P.both(ctx, [[DROP TABLE IF EXISTS t, archive;
    CREATE TABLE t (id int PRIMARY KEY, v text);
    CREATE TABLE archive (id int PRIMARY KEY, v text)]])
  local src, tgt = P.connect(ctx.source_url), P.connect(ctx.target_url)
  assert(src:exec("INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 20) g"))
  local ref = {}
  extra = extra or {}
  extra.stop = H.stop_at(ref)
  local task = H.task(ctx, name, extra)
  local plan = H.plan(src)
  H.setup(ctx, task, plan)
  return src, tgt, task, plan, ref
end

local function finish(ctx, task, src, tgt)
  H.release(ctx, task)
  src:close(); tgt:close()
end

T.test("under the default policy a missing row stops the task with change, table, key and LSN", function(ctx)
  local src, tgt, task, plan, ref = fresh(ctx, "conflict_error")
  assert(tgt:exec("DELETE FROM t WHERE id = 5"))
  local h = H.stream(ctx, task, plan)
  assert(src:exec("BEGIN; UPDATE t SET v = 'first' WHERE id = 4; UPDATE t SET v = 'gone' WHERE id = 5; COMMIT"))
  ref.lsn = P.lsn(src, true)
  local ok, err = pcall(h.wait, h)
  T.eq(ok, false)
  local msg = tostring(err)
  T.match(msg, "update_missing")
  T.match(msg, "public%.t")
  T.match(msg, "id='5'")
  T.match(msg, "LSN %x+/%x+")
  T.eq(assert(tgt:query("SELECT v FROM t WHERE id = 4"))[1].v, "v4", "nothing of the failed transaction committed")
  -- Going on with skip applies the rest of that transaction.
  task.incremental.conflict = "skip"
  local summary = H.stream(ctx, task, plan):wait()
  T.eq(summary.conflicts.update_missing, 1)
  T.eq(assert(tgt:query("SELECT v FROM t WHERE id = 4"))[1].v, "first")
  finish(ctx, task, src, tgt)
end)

T.test("skip counts conflicts and goes on; overwrite makes the target what the source says", function(ctx)
  local src, tgt, task, plan, ref = fresh(ctx, "conflict_skip", { incremental = { conflict = "skip" } })
  assert(tgt:exec("DELETE FROM t WHERE id IN (1, 2); INSERT INTO t VALUES (21, 'target only')"))
  local h = H.stream(ctx, task, plan)
  assert(src:exec("UPDATE t SET v = 'u1' WHERE id = 1; DELETE FROM t WHERE id = 2; INSERT INTO t VALUES (21, 'source')"))
  ref.lsn = P.lsn(src, true)
  local summary = h:wait()
  T.eq(summary.conflicts.update_missing, 1)
  T.eq(summary.conflicts.delete_missing, 1)
  T.eq(summary.conflicts.insert_exists, 1)
  T.eq(summary.conflicts.skipped, 3)
  T.eq(assert(tgt:query("SELECT v FROM t WHERE id = 21"))[1].v, "target only")
  -- now overwrite
  task.incremental.conflict = "overwrite"
  h = H.stream(ctx, task, plan)
  assert(src:exec("UPDATE t SET v = 'u2' WHERE id = 1; INSERT INTO t VALUES (22, 'new')"))
  assert(tgt:exec("INSERT INTO t VALUES (22, 'old')"))
  assert(src:exec("UPDATE t SET v = 'from source' WHERE id = 21"))
  ref.lsn = P.lsn(src, true)
  summary = h:wait()
  T.eq(summary.conflicts.overwritten, 2, "the missing row 1 inserted, the existing row 22 overwritten")
  P.same(src, tgt, "t")
  finish(ctx, task, src, tgt)
end)

T.test("an on.conflict hook decides per conflict", function(ctx)
  local seen = {}
  local src, tgt, task, plan, ref = fresh(ctx, "conflict_hook", { on = { conflict = function(c)
    seen[#seen + 1] = c
    return c.key:find("id='7'") and "skip" or "error"
  end } })
  assert(tgt:exec("DELETE FROM t WHERE id IN (7, 8)"))
  local h = H.stream(ctx, task, plan)
  assert(src:exec("DELETE FROM t WHERE id = 7"))
  assert(src:exec("UPDATE t SET v = 'x' WHERE id = 8"))
  ref.lsn = P.lsn(src, true)
  local ok, err = pcall(h.wait, h)
  T.eq(ok, false)
  T.match(tostring(err), "on.conflict hook stopped")
  T.eq(#seen, 2)
  T.eq(seen[1].conflict, "delete_missing")
  T.eq(seen[1].table, "public.t")
  T.eq(seen[2].conflict, "update_missing")
  finish(ctx, task, src, tgt)
end)

T.test("on.change drops, edits and routes changes of the tables it names", function(ctx)
  local calls = 0
  local src, tgt, task, plan, ref = fresh(ctx, "change_hook", { on = { change = { ["public.t"] = function(c)
    calls = calls + 1
    if c.new and c.new.v == "secret" then return false end
    if c.new and tonumber(c.new.id) > 100 then c.target = "public.archive" end
    if c.new then c.new.v = c.new.v:upper() end
    return c
  end } } })
  local h = H.stream(ctx, task, plan)
  assert(src:exec("INSERT INTO t VALUES (30, 'shout'), (31, 'secret'), (150, 'old news')"))
  assert(src:exec("INSERT INTO archive VALUES (500, 'untouched')"))
  ref.lsn = P.lsn(src, true)
  h:wait()
  T.eq(calls, 3, "only changes of public.t entered Lua")
  T.eq(assert(tgt:query("SELECT v FROM t WHERE id = 30"))[1].v, "SHOUT")
  T.eq(#assert(tgt:query("SELECT 1 FROM t WHERE id = 31")), 0, "dropped")
  T.eq(assert(tgt:query("SELECT v FROM archive WHERE id = 150"))[1].v, "OLD NEWS", "routed")
  T.eq(assert(tgt:query("SELECT v FROM archive WHERE id = 500"))[1].v, "untouched")
  finish(ctx, task, src, tgt)
end)

T.test("incremental.ddl = false: a column added on the source stops the stream, and it continues once the target has it", function(ctx)
  local src, tgt, task, plan, ref = fresh(ctx, "ddl", { incremental = { ddl = false } })
  local h = H.stream(ctx, task, plan)
  assert(src:exec("INSERT INTO t VALUES (40, 'before')"))
  assert(src:exec("ALTER TABLE t ADD COLUMN extra int"))
  assert(src:exec("INSERT INTO t VALUES (41, 'after', 7)"))
  ref.lsn = P.lsn(src, true)
  local ok, err = pcall(h.wait, h)
  T.eq(ok, false)
  T.match(tostring(err), 'now has a column "extra"')
  T.match(tostring(err), "run the task again")
  assert(tgt:exec("ALTER TABLE t ADD COLUMN extra int"))
  local summary = H.stream(ctx, task, H.plan(src)):wait()
  T.eq(summary.stopped_by, "condition")
  P.same(src, tgt, "t")
  finish(ctx, task, src, tgt)
end)
