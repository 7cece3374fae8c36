-- The full load starting over (tide.full.start_over) on a target whose post-data already ran to
-- its end: the event triggers pgtide enabled there must not fire for the drops start_over
-- makes (an event trigger that logs DDL into a table whose sequence is behind the copied rows
-- would fail the whole transaction, and every run after it), and they are enabled again when
-- the new load ends.
local T = require "testlib"
local P = require "pg"
local H = require "tidetest"
local tide = require "tide"

-- How many of the tables t<N> of public do not hold exactly `rows` rows.
local function tables_not_holding(conn, rows)
  return assert(conn:query([[
SELECT count(*) AS n FROM pg_class c
WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' AND c.relname ~ '^t[0-9]+$'
  AND (xpath('/row/n/text()', query_to_xml(format('SELECT count(*) AS n FROM %I', c.relname), false, true, '')))[1]::text <> $1]],
    tostring(rows)))[1].n
end

-- The task of playbook pb, its plan between src and tgt, its recorded state on tgt.
local function plan_and_state(pb, src, tgt)
  local task = require("tide.playbook").load(pb)
  return task, require("tide.plan").build(task, src, tgt), require("tide.state").open(task, tgt)
end

-- Runs playbook pb, which must succeed; a connection to its target.
local function run_finished(pb, tgt_url)
  local code, out = H.run("run " .. pb)
  T.eq(code, 0, out)
  return assert(tide.connect(tgt_url))
end

-- How many copied parts the target records for task `name`.
local function parts_recorded(tgt, name)
  return assert(tgt:query("SELECT count(*) AS n FROM pgtide.copy_parts WHERE task = $1", name))[1].n
end

-- A database `name` made afresh on both servers, and a playbook of task `name` (schema + full)
-- between them: src_url, tgt_url, playbook path.
local function task_databases(ctx, name, progress)
  local sa, ta = assert(tide.connect(ctx.source_admin)), assert(tide.connect(ctx.target_admin))
  for _, c in ipairs({ sa, ta }) do
    assert(c:exec("DROP DATABASE IF EXISTS " .. name .. " WITH (FORCE)"))
    assert(c:exec("CREATE DATABASE " .. name))
  end
  sa:close(); ta:close()
  local src_url, tgt_url = P.with_db(ctx.source_admin, name), P.with_db(ctx.target_admin, name)
  local pb = ctx.tmpdir .. "/" .. name .. ".lua"
  local f = assert(io.open(pb, "w"))
  f:write(string.format([[
local tide = require "tide"
return tide.task { name = %q, source = %q, target = %q, migrate = { "schema", "full" }, progress = %q }
]], name, src_url, tgt_url, progress or "none"))
  f:close()
  return src_url, tgt_url, pb
end

T.test("start_over on a finished post-data: enabled event triggers stay quiet and are enabled again later", function(ctx)
  local sa, ta = assert(tide.connect(ctx.source_admin)), assert(tide.connect(ctx.target_admin))
  for _, c in ipairs({ sa, ta }) do
    assert(c:exec("DROP DATABASE IF EXISTS so_db WITH (FORCE)"))
    assert(c:exec("CREATE DATABASE so_db"))
  end
  sa:close(); ta:close()
  local src_url, tgt_url = P.with_db(ctx.source_admin, "so_db"), P.with_db(ctx.target_admin, "so_db")
  local src = assert(tide.connect(src_url))
  assert(src:exec([[
CREATE TABLE parent (id int PRIMARY KEY);
CREATE TABLE child (id int PRIMARY KEY, parent int REFERENCES parent);
CREATE TABLE ddl_log (id bigserial PRIMARY KEY, tag text);
CREATE FUNCTION log_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO ddl_log (tag) VALUES (tg_tag); END $$;
CREATE EVENT TRIGGER so_log_ddl ON ddl_command_end EXECUTE FUNCTION log_ddl();
INSERT INTO parent SELECT generate_series(1, 10);
INSERT INTO child SELECT g, g FROM generate_series(1, 10) g;
CREATE INDEX ON child (parent);]]))
  local pb = ctx.tmpdir .. "/so.lua"
  local f = assert(io.open(pb, "w"))
  f:write(string.format([[
local tide = require "tide"
return tide.task { name = "so", source = %q, target = %q, migrate = { "schema", "full" }, progress = "none" }
]], src_url, tgt_url))
  f:close()
  local tgt = run_finished(pb, tgt_url)
  T.eq(assert(tgt:query("SELECT evtenabled FROM pg_event_trigger WHERE evtname = 'so_log_ddl'"))[1].evtenabled, "O")
  -- As after a load interrupted before the sequences were brought across.
  assert(tgt:exec("SELECT setval('ddl_log_id_seq', 1, false)"))
  local task, plan, state = plan_and_state(pb, src, tgt)
  local ok, err = pcall(require("tide.full").start_over, task, plan, tgt, state)
  T.ok(ok, "start_over: " .. tostring(type(err) == "table" and err.message or err))
  T.eq(assert(tgt:query("SELECT evtenabled FROM pg_event_trigger WHERE evtname = 'so_log_ddl'"))[1].evtenabled, "D",
       "disabled until the new load ends")
  T.eq(assert(tgt:query("SELECT count(*) AS n FROM child"))[1].n, 0, "emptied")
  -- The new load (as the run that called start_over goes on): the rows again, the foreign key
  -- and the trigger's state as on the source, and nothing logged by pgtide's own DDL.
  assert(tgt:query("UPDATE pgtide.tasks SET phase = 'schema_pre' WHERE task = 'so'"))
  local code, out = H.run("run " .. pb)
  T.eq(code, 0, out)
  T.eq(assert(tgt:query("SELECT evtenabled FROM pg_event_trigger WHERE evtname = 'so_log_ddl'"))[1].evtenabled, "O",
       "enabled again at the end of the new load")
  P.same(src, tgt, "child")
  P.same(src, tgt, "ddl_log")
  T.eq(assert(tgt:query("SELECT count(*) AS n FROM ddl_log"))[1].n, assert(src:query("SELECT count(*) AS n FROM ddl_log"))[1].n)
  src:close(); tgt:close()
end)

-- (One TRUNCATE of every table ran out of the server's lock table at 100,000 tables: the tables
-- go a chunk at a time, and tables a foreign key joins must share a chunk.)
T.test("start_over of 2,000 tables: emptied a chunk at a time, tables a target's own foreign key joins together", function(ctx)
  local src_url, tgt_url, pb = task_databases(ctx, "so_many")
  local src = assert(tide.connect(src_url))
  -- (one table in ten references the one before: foreign keys pgtide makes and start_over drops)
  assert(src:exec([[
DO $$
BEGIN
  FOR i IN 1..2000 LOOP
    EXECUTE format('CREATE TABLE t%s (id int PRIMARY KEY, v text)', i);
    EXECUTE format('INSERT INTO t%s VALUES (1, ''row of %s'')', i, i);
    IF i % 10 = 0 THEN EXECUTE format('ALTER TABLE t%s ADD FOREIGN KEY (id) REFERENCES t%s (id)', i, i - 1); END IF;
    IF i % 250 = 0 THEN COMMIT; END IF;
  END LOOP;
END $$]]))
  local tgt = run_finished(pb, tgt_url)
  -- a foreign key made on the target by hand, between tables far apart in the plan's order:
  -- TRUNCATE refuses to empty t1999 unless t7 is in the same statement
  assert(tgt:exec("ALTER TABLE t7 ADD CONSTRAINT by_hand FOREIGN KEY (id) REFERENCES t1999 (id)"))
  local task, plan, state = plan_and_state(pb, src, tgt)
  T.eq(parts_recorded(tgt, "so_many"), 2000,
       "the finished load's parts are recorded")
  local ok, err = pcall(require("tide.full").start_over, task, plan, tgt, state)
  T.ok(ok, "start_over: " .. tostring(type(err) == "table" and err.message or err))
  T.eq(tables_not_holding(tgt, 0), 0, "every table emptied")
  T.eq(assert(tgt:query("SELECT string_agg(conname, ',') AS names FROM pg_constraint WHERE contype = 'f'"))[1].names, "by_hand",
       "pgtide's foreign keys dropped (made again by the next load), the target's own kept")
  T.eq(parts_recorded(tgt, "so_many"), 0,
       "the copied parts forgotten")
  src:close(); tgt:close()
end)

T.test("a start_over cut short (a chunk refused) is finished by the next run, which starts over first", function(ctx)
  local src_url, tgt_url, pb = task_databases(ctx, "so_cut", "plain")
  local src = assert(tide.connect(src_url))
  assert(src:exec([[
DO $$
BEGIN
  FOR i IN 1..450 LOOP
    EXECUTE format('CREATE TABLE t%s (id int PRIMARY KEY, v text)', i);
    EXECUTE format('INSERT INTO t%s SELECT g, ''row '' || g FROM generate_series(1, 3) g', i);
  END LOOP;
END $$]]))
  local tgt = run_finished(pb, tgt_url)
  -- a table outside the task references t440 (in the third chunk): that TRUNCATE is refused
  -- after the first two chunks were emptied and committed
  assert(tgt:exec("CREATE TABLE outsider (id int REFERENCES t440 (id)); INSERT INTO outsider VALUES (1)"))
  local task, plan, state = plan_and_state(pb, src, tgt)
  local ok, err = pcall(require("tide.full").start_over, task, plan, tgt, state)
  T.ok(not ok, "the chunk with t440 is refused")
  T.match(tostring(type(err) == "table" and err.message or err), "a foreign key of a table outside the task")
  T.eq(assert(tgt:query("SELECT count(*) AS n FROM t1"))[1].n, 0, "the first chunk was emptied")
  T.eq(parts_recorded(tgt, "so_cut"), 450,
       "the parts are still recorded")
  -- As a task stopped in its full load: the next run must not take the recorded parts as copied.
  assert(tgt:exec("DROP TABLE outsider"))
  assert(tgt:query("UPDATE pgtide.tasks SET phase = 'full' WHERE task = 'so_cut'"))
  local code, out = H.run("run " .. pb)
  T.eq(code, 0, out)
  T.match(out, "starts over again")
  for _, t in ipairs({ "t1", "t200", "t440", "t450" }) do P.same(src, tgt, t) end
  T.eq(tables_not_holding(tgt, 3), 0, "every table holds its rows again")
  src:close(); tgt:close()
end)
