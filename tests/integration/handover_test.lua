-- The hand-over from the full load to streaming when the source truncates tables after the
-- load's snapshot (TRUNCATE is not MVCC-safe: the copy then reads such a table empty, while
-- the stream carries the changes made to its old rows before the TRUNCATE), and a full load
-- restarted after a kill in post-data (foreign keys and triggers already built must not stop
-- or change the new copy).
local T = require "testlib"
local P = require "pg"
local tide = require "tide"
local H = require "tidetest"
local cdc = require "tide.cdc"

local DDL = [[
DROP SCHEMA IF EXISTS public CASCADE; DROP SCHEMA IF EXISTS pgtide CASCADE; CREATE SCHEMA public;
CREATE TABLE actor (id int PRIMARY KEY, name text);
CREATE TABLE film_actor (actor_id int REFERENCES actor ON UPDATE CASCADE ON DELETE CASCADE, film_id int,
                         PRIMARY KEY (actor_id, film_id));
CREATE TABLE kit (k text, n int);
ALTER TABLE kit REPLICA IDENTITY FULL;
CREATE TABLE steady (id int PRIMARY KEY, v int);
INSERT INTO actor SELECT g, 'a' || g FROM generate_series(1, 50) g;
INSERT INTO film_actor SELECT a, f FROM generate_series(1, 50) a, generate_series(1, 20) f;
INSERT INTO kit SELECT 'k' || g % 7, g % 3 FROM generate_series(1, 100) g;
INSERT INTO steady SELECT g, g FROM generate_series(1, 1000) g;
]]

local TABLES = { "actor", "film_actor", "kit", "steady" }

local function setup(ctx)
  local s, t = P.clean(ctx)
  assert(s:exec(DDL))
  assert(s:query([[SELECT count(pg_drop_replication_slot(slot_name)) FROM pg_replication_slots
    WHERE database = current_database() AND NOT active]]))
  return s, t
end

-- After the snapshot, before any copy: changes to rows the snapshot sees, then TRUNCATE of
-- two tables refilled in the same transaction, then changes to the new rows.
local function writes_after_snapshot(s)
  assert(s:exec("UPDATE actor SET id = id + 1000 WHERE id <= 3"))          -- cascades to film_actor
  assert(s:exec("DELETE FROM film_actor WHERE film_id = 7"))
  assert(s:exec("UPDATE kit SET n = n + 10 WHERE k = 'k1'"))
  assert(s:exec("DELETE FROM kit WHERE ctid = (SELECT ctid FROM kit WHERE k = 'k2' LIMIT 1)"))
  assert(s:exec([[BEGIN;
    TRUNCATE film_actor, kit;
    INSERT INTO film_actor SELECT a.id, f FROM actor a, generate_series(1, 5) f;
    INSERT INTO kit SELECT 'r' || g % 4, g FROM generate_series(1, 30) g;
    INSERT INTO kit SELECT 'r' || g % 4, g FROM generate_series(1, 30) g;
    COMMIT]]))
  assert(s:exec("UPDATE actor SET id = id + 1000 WHERE id BETWEEN 4 AND 6"))  -- cascades to the new rows
  assert(s:exec("DELETE FROM kit WHERE ctid = (SELECT ctid FROM kit WHERE k = 'r1' LIMIT 1)"))
  assert(s:exec("UPDATE steady SET v = -v WHERE id % 10 = 0"))
end

T.test("tables truncated and refilled after the slot's snapshot: streaming brings them back, nothing lost", function(ctx)
  local s, t = setup(ctx)
  local pb = H.playbook(ctx, "handover", [[migrate = { "schema", "full", "incremental" }, progress = "none",
    incremental = { heartbeat_interval = 0.2 },]])
  local task = require("tide.playbook").load(pb)
  local connect = require "tide.connect"
  local source, target = connect.open_both(task)
  local plan = require("tide.plan").build(task, source, target)
  require("tide.schema").apply_pre(task, plan, target)
  local info = cdc.prepare(task, plan, source, target)
  writes_after_snapshot(s)
  local notes = {}
  local progress = setmetatable({ note = function(_, msg) notes[#notes + 1] = msg end },
                                { __index = function() return function() end end })
  local stats = require("tide.full").run(task, plan, source, target, { snapshot = info.snapshot, stream = true,
    progress = progress, on_imported = function() info.hold:close(); info.hold = nil end })
  T.eq(stats.tables["public.film_actor"].rows, 0, "the copy reads a table truncated after the snapshot as empty")
  T.match(table.concat(notes, "\n"), "public.film_actor .*truncated on the source after the load's snapshot")
  cdc.copy_done(task, info, target)
  local stop = P.lsn(s)
  local run = require("tide.taskrun").new(task)
  run:set_stop_condition(function(st) return st.applied >= require("tide.when").lsn_number(stop) end)
  local summary = cdc.stream(run, plan, source, target, { quiet = true })
  T.eq(summary.stopped_by, "condition")
  for _, rel in ipairs(TABLES) do T.eq(P.fingerprint(t, rel), P.fingerprint(s, rel), rel) end
  T.ok(summary.conflicts.tolerated > 0, "changes before the TRUNCATE found no rows and were tolerated")
  T.eq(summary.conflicts.update_missing + summary.conflicts.delete_missing + summary.conflicts.insert_exists, 0)
  cdc.release(task, source, target)
  source:close(); target:close(); s:close(); t:close()
end)

T.test("without a stream, a table truncated after the snapshot is copied again under a new one", function(ctx)
  local s, t = setup(ctx)
  local pb = H.playbook(ctx, "handover_full", [[migrate = { "schema", "full" }, progress = "none",]])
  local task = require("tide.playbook").load(pb)
  local connect = require "tide.connect"
  local source, target = connect.open_both(task)
  local plan = require("tide.plan").build(task, source, target)
  require("tide.schema").apply_pre(task, plan, target)
  local holder = assert(tide.connect(ctx.source_url))
  assert(holder:exec("BEGIN ISOLATION LEVEL REPEATABLE READ"))
  local snapshot = assert(holder:query("SELECT pg_export_snapshot() AS s"))[1].s
  writes_after_snapshot(s)
  local ok, err = pcall(require("tide.full").run, task, plan, source, target, { snapshot = snapshot })
  holder:exec("COMMIT")
  T.ok(not ok, "the load stops")
  T.match(tostring(err), "truncated %(or rewritten%) on the source after the load's snapshot")
  T.ok(require("tide.cmd.run").transient(err), "and is retried by pgtide run")
  T.eq(assert(t:query("SELECT count(*) AS n FROM film_actor"))[1].n, 0)
  -- The retry (a new snapshot for what is left) ends with every table equal to the source.
  local stats = require("tide.full").run(task, plan, source, target, {})
  T.ok(stats.rows > 0)
  for _, rel in ipairs({ "film_actor", "kit" }) do T.eq(P.fingerprint(t, rel), P.fingerprint(s, rel), rel) end
  source:close(); target:close(); s:close(); t:close(); holder:close()
end)

T.test("a full load interrupted after its post-data steps starts over without its foreign keys and triggers in the way", function(ctx)
  local s, t = setup(ctx)
  assert(s:exec([[CREATE FUNCTION bump() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN NEW.v := NEW.v + 1000000; RETURN NEW; END';
                  CREATE TRIGGER steady_bump BEFORE INSERT ON steady FOR EACH ROW EXECUTE FUNCTION bump();
                  CREATE TRIGGER steady_off BEFORE UPDATE ON steady FOR EACH ROW EXECUTE FUNCTION bump();
                  ALTER TABLE steady DISABLE TRIGGER steady_off;
                  COMMENT ON TRIGGER steady_bump ON steady IS 'bumps']]))
  local pb = H.playbook(ctx, "handover_restart", [[migrate = { "schema", "full", "incremental" }, progress = "plain",
    incremental = { heartbeat_interval = 0.2, release = true },
    stop = tide.when { lag_below = "1s", for_at_least = "0.5s" },]])
  local task = require("tide.playbook").load(pb)
  local connect = require "tide.connect"
  local source, target = connect.open_both(task)
  local plan = require("tide.plan").build(task, source, target)
  local state = require("tide.state").open(task, target)
  require("tide.schema").apply_pre(task, plan, target, {
    record = function(keys, final) return final and state:phase_sql(target, "schema_pre") or state:steps_done_sql(target, keys) end })
  -- The first run: slot, the whole load with its post-data steps, then "killed" before the
  -- load is recorded as done (the slot stays, the origin has no position).
  local info = cdc.prepare(task, plan, source, target)
  require("tide.full").run(task, plan, source, target, { snapshot = info.snapshot, stream = true, state = state,
    on_imported = function() info.hold:close(); info.hold = nil end })
  T.eq(assert(t:query("SELECT count(*) AS n FROM pg_constraint WHERE contype = 'f'"))[1].n, 1)
  T.eq(assert(t:query("SELECT count(*) AS n FROM pg_trigger WHERE tgname = 'steady_bump'"))[1].n, 1)
  source:close(); target:close()
  -- Meanwhile the source moves on: film_actor rows copied before their actors would fail the
  -- foreign key, the trigger would change steady's rows.
  writes_after_snapshot(s)
  local code, out = H.run("run " .. pb)
  T.eq(code, 0, out)
  T.match(out, "restarts from the beginning")
  T.match(out, "undid 3 foreign key%(s%), trigger%(s%) and event trigger enabling%(s%)")
  for _, rel in ipairs(TABLES) do T.eq(P.fingerprint(t, rel), P.fingerprint(s, rel), rel) end
  T.eq(assert(t:query("SELECT count(*) AS n FROM pg_constraint WHERE contype = 'f'"))[1].n, 1, "the foreign key is back")
  T.eq(assert(t:query("SELECT count(*) AS n FROM pg_trigger WHERE tgname = 'steady_bump'"))[1].n, 1, "the trigger is back")
  T.eq(assert(t:query("SELECT tgenabled FROM pg_trigger WHERE tgname = 'steady_off'"))[1].tgenabled, "D",
       "a disabled trigger comes back disabled")
  T.eq(assert(t:query("SELECT obj_description(oid, 'pg_trigger') AS c FROM pg_trigger WHERE tgname = 'steady_bump'"))[1].c,
       "bumps", "and a trigger's comment comes back")
  s:close(); t:close()
end)

T.test("pre-data and its record commit together: a task killed right after pre-data resumes", function(ctx)
  local s, t = setup(ctx)
  local pb = H.playbook(ctx, "handover_pre", [[migrate = { "schema", "full" }, progress = "plain",]])
  local task = require("tide.playbook").load(pb)
  local connect = require "tide.connect"
  local source, target = connect.open_both(task)
  local plan = require("tide.plan").build(task, source, target)
  local state = require("tide.state").open(task, target)
  require("tide.schema").apply_pre(task, plan, target, {
    record = function(keys, final) return final and state:phase_sql(target, "schema_pre") or state:steps_done_sql(target, keys) end })
  T.eq(state:phase(), "schema_pre")
  source:close(); target:close()
  local code, out = H.run("run " .. pb)
  T.eq(code, 0, out)
  T.match(out, "resuming task handover_pre from phase 'schema_pre'")
  for _, rel in ipairs(TABLES) do T.eq(P.fingerprint(t, rel), P.fingerprint(s, rel), rel) end
  s:close(); t:close()
end)

-- Each post-data step commits with its record, so a kill leaves some steps done, the rest not
-- begun. A task of the schema phase alone runs post-data itself (schema.apply_post): run again,
-- the objects of the first run are on the target and are the plan's conflicts, which must not
-- stop it (they did: "the schema plan cannot run", and the task could never finish).
T.test("a schema-only task stopped between two post-data steps resumes and finishes", function(ctx)
  local s, t = setup(ctx)
  local pb = H.playbook(ctx, "handover_post", [[migrate = { "schema" }, progress = "plain",]])
  local task = require("tide.playbook").load(pb)
  local connect = require "tide.connect"
  local source, target = connect.open_both(task)
  local plan = require("tide.plan").build(task, source, target)
  local state = require("tide.state").open(task, target)
  local schema = require "tide.schema"
  schema.apply_pre(task, plan, target, {
    record = function(keys, final) return final and state:phase_sql(target, "schema_pre") or state:steps_done_sql(target, keys) end })
  local stopped = {}
  local ok = pcall(schema.apply_post, task, plan, target, {
    record_sql = function(step) return state:step_done_sql(target, step.key, 0) end,
    on_step = function(step) stopped[#stopped + 1] = step.key; if #stopped == 2 then error("killed") end end })
  T.ok(not ok and #stopped == 2 and #plan.post_data > 3, "stopped after two of the post-data steps")
  T.eq(state:phase(), "schema_pre")
  source:close(); target:close()
  local code, out = H.run("run " .. pb)
  T.eq(code, 0, out)
  T.match(out, "resuming task handover_post from phase 'schema_pre'")
  T.ok(not out:find("cannot run", 1, true), out)
  local q = [[SELECT string_agg(conname || ' ' || pg_get_constraintdef(oid), '; ' ORDER BY conname) AS d
              FROM pg_constraint WHERE connamespace = 'public'::regnamespace]]
  T.eq(assert(t:query(q))[1].d, assert(s:query(q))[1].d, "every constraint, once")
  q = "SELECT string_agg(indexdef, '; ' ORDER BY indexname) AS d FROM pg_indexes WHERE schemaname = 'public'"
  T.eq(assert(t:query(q))[1].d, assert(s:query(q))[1].d, "every index, once")
  T.eq(assert(t:query("SELECT phase FROM pgtide.tasks WHERE task = 'handover_post'"))[1].phase, "done")
  s:close(); t:close()
end)
