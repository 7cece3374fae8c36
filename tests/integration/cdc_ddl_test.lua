-- DDL replication during incremental migration (docs/incremental.md, "DDL replication"): the
-- task's event trigger records each DDL command on a followed object in the DDL's own
-- transaction; the stream applies it on the target at that position, with the changes around it.
local T = require "testlib"
local P = require "pg"
local H = dofile("tests/integration/cdc_lib.lua")

-- Columns of a table as (name, type, not null, default) lines, for comparing source and target.
local function columns(conn, relation)
  local out = {}
  for _, r in ipairs(assert(conn:query([[
SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS nn,
       coalesce(pg_get_expr(d.adbin, d.adrelid), '') AS def
FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum]], relation))) do
    out[#out + 1] = string.format("%s %s%s %s", r.name, r.type, r.nn and " not null" or "", r.def)
  end
  return table.concat(out, "\n")
end

local function indexes(conn, relation)
  local out = {}
  for _, r in ipairs(assert(conn:query([[
SELECT pg_get_indexdef(i.indexrelid) AS def FROM pg_index i
WHERE i.indrelid = to_regclass($1) ORDER BY 1]], relation))) do
    out[#out + 1] = r.def
  end
  return table.concat(out, "\n")
end

local function exists(conn, relation)
  return assert(conn:query("SELECT to_regclass($1) IS NOT NULL AS e", relation))[1].e
end

T.test("DDL between changes is applied at its place, in the same target transaction", function(ctx)
  local s0, t0 = P.clean(ctx)
  s0:close(); t0:close()
  P.both(ctx, [[
    CREATE TABLE items (id int PRIMARY KEY, name text);
    CREATE TABLE gone (id int PRIMARY KEY, v text);
    DROP SCHEMA IF EXISTS other CASCADE; CREATE SCHEMA other;]])
  -- an event trigger of the target that refuses drops, in every mode: quiet for pgtide's DDL
  P.exec(ctx.target_url, [[
    CREATE FUNCTION public.no_drops() RETURNS event_trigger LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION 'no drops here'; END $$;
    CREATE EVENT TRIGGER no_drops ON sql_drop EXECUTE FUNCTION public.no_drops();
    ALTER EVENT TRIGGER no_drops ENABLE ALWAYS;]])
  local src = P.connect(ctx.source_url)
  assert(src:exec("INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 20) g"))
  assert(src:exec("INSERT INTO gone VALUES (1, 'a')"))
  local ref = {}
  local seen = {}
  local task = H.task(ctx, "ddl_basic", { stop = H.stop_at(ref),
    on = { ddl = function(d) seen[#seen + 1] = d.tag .. " " .. tostring(d.object); return nil end } })
  local plan = H.plan(src)
  H.setup(ctx, task, plan)
  local function fn_xmin()
    return assert(src:query("SELECT xmin::text AS x FROM pg_proc WHERE proname = 'pgtide_ddl_basic_ddl'"))[1].x
  end
  local before = fn_xmin()
  require("tide.cdc.ddl").install(task, plan, src)
  T.eq(fn_xmin(), before, "a resumed run leaves the trigger alone when nothing changed")
  local h = H.stream(ctx, task, plan)
  assert(src:exec([[
    BEGIN;
    INSERT INTO items VALUES (21, 'before');
    CREATE TABLE fresh (id int PRIMARY KEY, v text NOT NULL DEFAULT 'x', n numeric(10,2));
    INSERT INTO fresh SELECT g, 'v' || g, g FROM generate_series(1, 50) g;
    COMMIT;
    ALTER TABLE items ADD COLUMN qty int NOT NULL DEFAULT 5;
    INSERT INTO items VALUES (22, 'with qty', 7);
    UPDATE items SET qty = id WHERE id <= 5;
    ALTER TABLE items ALTER COLUMN name TYPE varchar(40);
    CREATE INDEX items_name_idx ON items (name);
    ALTER TABLE items RENAME COLUMN name TO title;
    UPDATE items SET title = 'renamed ' || id WHERE id > 18;
    ALTER TABLE items DROP COLUMN qty;
    INSERT INTO items VALUES (23, 'after drop');
    CREATE TABLE other.ignored (id int PRIMARY KEY);
    INSERT INTO other.ignored VALUES (1);
    DROP TABLE gone;
    UPDATE fresh SET v = 'changed' WHERE id = 3;]]))
  -- a view and a function: applied as the source ran them (one statement each)
  assert(src:exec("CREATE VIEW items_v AS SELECT id, title FROM items WHERE id > 10"))
  assert(src:exec("CREATE FUNCTION twice(x int) RETURNS int LANGUAGE sql AS 'SELECT x * 2'"))
  assert(src:exec("INSERT INTO items VALUES (24, 'last')"))
  ref.lsn = P.lsn(src, true)
  local summary = h:wait()
  T.eq(summary.stopped_by, "condition")
  local tgt = P.connect(ctx.target_url)
  P.same(src, tgt, "items")
  P.same(src, tgt, "fresh")
  P.same(src, tgt, "items_v")
  T.eq(columns(tgt, "public.items"), columns(src, "public.items"), "items has the source's columns")
  T.eq(columns(tgt, "public.fresh"), columns(src, "public.fresh"), "fresh has the source's columns")
  T.eq(indexes(tgt, "public.items"), indexes(src, "public.items"), "items has the source's indexes")
  T.eq(indexes(tgt, "public.fresh"), indexes(src, "public.fresh"), "fresh has its primary key")
  T.ok(not exists(tgt, "public.gone"), "the dropped table is gone from the target")
  T.eq(assert(tgt:query("SELECT evtenabled FROM pg_event_trigger WHERE evtname = 'no_drops'"))[1].evtenabled, "A",
       "the target's event trigger is enabled as it was")
  assert(tgt:exec("DROP EVENT TRIGGER no_drops"))
  T.ok(not exists(tgt, "other.ignored"), "a table of an unselected schema is not created")
  -- CREATE TABLE fresh, ADD COLUMN, TYPE, CREATE INDEX, RENAME COLUMN, DROP COLUMN, DROP TABLE,
  -- CREATE VIEW, CREATE FUNCTION
  T.eq(summary.status.ddl.applied, 9, "DDL counted as applied")
  T.eq(assert(tgt:query("SELECT twice(21) AS v"))[1].v, 42, "the function arrived")
  T.eq(summary.status.ddl.skipped, 0, "nothing skipped")
  local tags = table.concat(seen, ", ")
  T.match(tags, "CREATE TABLE public%.fresh", "on.ddl saw the CREATE TABLE")
  T.match(tags, "ALTER TABLE public%.items", "on.ddl saw the ALTER TABLE")
  T.nomatch(tags, "other%.ignored", "on.ddl is not asked about unselected objects")
  local dropped = table.concat(H.release(ctx, task), ", ")
  T.match(dropped, "event trigger pgtide_ddl_basic_ddl_end")
  T.eq(#assert(src:query("SELECT 1 FROM pg_event_trigger WHERE evtname LIKE 'pgtide_ddl_basic%'")), 0,
       "release removes the event triggers")
  src:close(); tgt:close()
end)

T.test("rename rules map the DDL; a restart with the source ahead; on.ddl skips one", function(ctx)
  local s0, t0 = P.clean(ctx)
  s0:close(); t0:close()
  P.exec(ctx.source_url, "CREATE TABLE tbl_orders (id int PRIMARY KEY, note text, legacy int)")
  P.exec(ctx.target_url, "CREATE TABLE orders (id int PRIMARY KEY, note text, legacy int)")
  local src = P.connect(ctx.source_url)
  assert(src:exec("INSERT INTO tbl_orders SELECT g, 'n' || g, g FROM generate_series(1, 10) g"))
  local ref = {}
  local task = H.task(ctx, "ddl_rename", { stop = H.stop_at(ref),
    rename = { table = { { strip_prefix = "tbl_" } } },
    on = { ddl = function(d)
      if d.statement:find("skip_me", 1, true) then return "skip" end
      return "apply"
    end } })
  H.setup(ctx, task, H.plan(src, "public", { tbl_orders = "orders" }))
  local h = H.stream(ctx, task, H.plan(src, "public", { tbl_orders = "orders" }))
  assert(src:exec([[
    BEGIN;
    CREATE TABLE tbl_fresh (id int PRIMARY KEY, v text);
    INSERT INTO tbl_fresh SELECT g, 'f' || g FROM generate_series(1, 30) g;
    COMMIT;
    ALTER TABLE tbl_fresh ADD COLUMN w int DEFAULT 1;
    INSERT INTO tbl_fresh VALUES (31, 'w', 9);]]))
  -- (current_query() is the whole text sent: on.ddl sees this one alone)
  assert(src:exec("CREATE INDEX skip_me ON tbl_orders (note)"))
  assert(src:exec("INSERT INTO tbl_orders VALUES (11, 'eleven', 11)"))
  ref.lsn = P.lsn(src, true)
  local summary = h:wait()
  T.eq(summary.status.ddl.skipped, 1, "one DDL skipped by on.ddl")
  local tgt = P.connect(ctx.target_url)
  T.eq(P.fingerprint(tgt, "fresh"), P.fingerprint(src, "tbl_fresh"), "the new table arrived under its mapped name")
  T.eq(#assert(tgt:query("SELECT 1 FROM pg_class WHERE relname = 'fresh_pkey'")), 1, "its key under the mapped name")
  T.eq(#assert(tgt:query("SELECT 1 FROM pg_class WHERE relname IN ('skip_me', 'skip_me_idx')")), 0,
       "the skipped index is not made")
  -- Stopped. The source goes on while pgtide is down: the next run's plan is ahead of the
  -- stream's position (the table renamed, a column dropped), and what the target has is the record.
  assert(src:exec([[
    INSERT INTO tbl_orders VALUES (12, 'twelve', 12);
    ALTER TABLE tbl_orders RENAME TO tbl_purchases;
    UPDATE tbl_purchases SET note = 'after rename' WHERE id = 12;
    ALTER TABLE tbl_purchases DROP COLUMN legacy;
    INSERT INTO tbl_purchases VALUES (13, 'thirteen');
    ALTER TABLE tbl_fresh ALTER COLUMN w TYPE bigint;
    UPDATE tbl_fresh SET w = 5000000000 WHERE id = 1;]]))
  ref.lsn = P.lsn(src, true)
  summary = H.stream(ctx, task, H.plan(src, "public", { tbl_purchases = "purchases", tbl_fresh = "fresh" })):wait()
  T.eq(summary.stopped_by, "condition")
  T.ok(not exists(tgt, "public.orders"), "orders was renamed on the target")
  T.eq(P.fingerprint(tgt, "purchases"), P.fingerprint(src, "tbl_purchases"), "renamed under the rule, rows follow")
  T.eq(columns(tgt, "public.purchases"), columns(src, "public.tbl_purchases"), "the dropped column is gone")
  T.eq(P.fingerprint(tgt, "fresh"), P.fingerprint(src, "tbl_fresh"))
  T.eq(columns(tgt, "public.fresh"), columns(src, "public.tbl_fresh"), "the type change arrived")
  H.release(ctx, task)
  src:close(); tgt:close()
end)

T.test("the record of a first slot: every table, its partitions, a generated column and a mapped one", function(ctx)
  local s0, t0 = P.clean(ctx)
  s0:close(); t0:close()
  P.exec(ctx.source_url, [[
    CREATE TABLE gen (id int PRIMARY KEY, price numeric, tax numeric GENERATED ALWAYS AS (price * 0.2) STORED,
                      "Odd Col" text);
    CREATE TABLE parted (id int, at date) PARTITION BY RANGE (at);
    CREATE TABLE parted_a PARTITION OF parted FOR VALUES FROM ('2020-01-01') TO ('2021-01-01');
    CREATE TABLE parted_b PARTITION OF parted FOR VALUES FROM ('2021-01-01') TO ('2022-01-01');]])
  P.exec(ctx.target_url, [[
    CREATE TABLE gen (id int PRIMARY KEY, price numeric, tax numeric GENERATED ALWAYS AS (price * 0.2) STORED,
                      renamed text);
    CREATE TABLE parted (id int, at date) PARTITION BY RANGE (at);
    CREATE TABLE parted_a PARTITION OF parted FOR VALUES FROM ('2020-01-01') TO ('2021-01-01');
    CREATE TABLE parted_b PARTITION OF parted FOR VALUES FROM ('2021-01-01') TO ('2022-01-01');]])
  local src = P.connect(ctx.source_url)
  -- more tables than one statement of the record takes (1,000)
  local many = "DO $$ BEGIN FOR i IN 1..1100 LOOP EXECUTE format('CREATE TABLE many_%s (id int PRIMARY KEY)', i); END LOOP; END $$"
  assert(src:exec(many))
  local tgt = P.connect(ctx.target_url)
  assert(tgt:exec(many))
  local ref = {}
  local task = H.task(ctx, "ddl_record", { stop = H.stop_at(ref) })
  local plan = H.plan(src, "public", { ["gen.Odd Col"] = "renamed" })
  H.setup(ctx, task, plan)
  local rows = assert(tgt:query([[
    SELECT source_oid, info->'target'->>'name' AS name, info->'cols' AS cols, info->'desc'->>'name' AS described,
           coalesce((info->>'partition')::bool, false) AS partition
    FROM pgtide.ddl_tables WHERE task = 'ddl_record' ORDER BY 2]]))
  T.eq(#rows, 1104, "every table, the partitioned root and its two partitions recorded")
  local by = {}
  for _, r in ipairs(rows) do by[r.name] = r; T.eq(r.described, r.name, "each with its own description") end
  local json = require "tide.json"
  local cols = json.decode(by.gen.cols)
  T.eq(cols.tax, "tax", "the generated column (which the load leaves out) is in the column map")
  T.eq(cols["Odd Col"], "renamed", "a mapped column under its target name")
  T.eq(cols.price, "price")
  T.ok(by.parted_a.partition and by.parted_b.partition and not by.parted.partition, "partitions marked as such")
  -- and the stream works from that record: a column added on the source arrives
  local h = H.stream(ctx, task, plan)
  assert(src:exec([[ALTER TABLE gen ADD COLUMN note text; INSERT INTO gen (id, price, "Odd Col", note) VALUES (1, 10, 'o', 'n')]]))
  ref.lsn = P.lsn(src, true)
  local summary = h:wait()
  T.eq(summary.stopped_by, "condition")
  T.eq(assert(tgt:query("SELECT tax::text AS tax, renamed, note FROM gen WHERE id = 1"))[1].note, "n",
       "the new column and its row arrived")
  H.release(ctx, task)
  src:close(); tgt:close()
end)

T.test("the record's renamed words, listed by the server at load, are the ones the Lua rule finds", function(ctx)
  local s0, t0 = P.clean(ctx)
  s0:close(); t0:close()
  local record = require "tide.cdc.ddl_record"
  local known = require "tide.cdc.ddl_known"
  local json = require "tide.json"
  local tgt = P.connect(ctx.target_url)
  local task = { name = "words", state_schema = "pgtide_words" }
  record.ensure(task, tgt)
  local function rec(schema, name, extra)
    local r = { desc = { schema = schema, name = name, columns = {} }, target = { schema = schema, name = name },
                cols = { id = "id" } }
    for k, v in pairs(extra or {}) do r[k] = v end
    return r
  end
  local texts = {
    ["1"] = json.encode(rec("s", "same")),
    ["2"] = json.encode(rec("s", "tbl_a", { target = { schema = "s", name = "a" } })),
    ["3"] = json.encode(rec("old", "t", { target = { schema = "new", name = "t" } })),
    ["4"] = json.encode(rec("s", "c", { cols = { id = "id", ["Odd Col"] = "odd_col", x = "y" } })),
    ["5"] = json.encode(rec("s", "ign", { ignored = true, target = { schema = "z", name = "other" } })),
    ["6"] = json.encode(rec("s", "nocols", { cols = {} })),   -- (encoded as [])
    ["7"] = json.encode(rec("s", "nullcol", { cols = { a = json.null } })),
    ["8"] = json.encode(rec("s", "notign", { ignored = false, target = { schema = "s", name = "n2" } })),
    ["9"] = [[{"desc": {"schema": "s", "name": "q\"x", "columns": []}, "target": {"schema": "s", "name": "q\"x"}}]],
    ["10"] = json.encode(rec("s", "part", { partition = true, target = { schema = "s", name = "p2" } })),
  }
  assert(tgt:exec("BEGIN"))
  local w = record.writer(task, tgt)
  for oid, text in pairs(texts) do w.add(oid, text) end
  w.flush()
  assert(tgt:exec("COMMIT"))
  local k = record.load(task, tgt)
  local all = {}
  for oid, text in pairs(texts) do
    local expect = known.words_of(json.decode(text))
    local got = k.words[oid]
    local set = function(list) local t = {} for _, x in ipairs(list or {}) do t[x] = true end return t end
    T.eq(set(got), set(expect), "record " .. oid .. ": " .. text)
    for x in pairs(set(expect)) do all[x] = true end
  end
  T.eq(all, { tbl_a = true, old = true, ["Odd Col"] = true, x = true, a = true, notign = true, part = true },
       "what the rules renamed (and not what an ignored record names)")
  T.eq(k:renamed_words(), all)
  T.eq((k:by_name("s", 'q"x')), "9")
  assert(tgt:exec("DROP SCHEMA pgtide_words CASCADE"))
  tgt:close()
end)

T.test("descriptions over several connections: every relation once, in order; an error leaves them idle", function(ctx)
  local s0, t0 = P.clean(ctx)
  s0:close(); t0:close()
  P.exec(ctx.source_url, "DO $$ BEGIN FOR i IN 1..50 LOOP " ..
         "EXECUTE format('CREATE TABLE d_%s (id int PRIMARY KEY, v text)', i); END LOOP; END $$")
  local ddl_sql = require "tide.cdc.ddl_sql"
  local json = require "tide.json"
  local conns = { P.connect(ctx.source_url), P.connect(ctx.source_url), P.connect(ctx.source_url) }
  local oids = {}
  for _, r in ipairs(assert(conns[1]:query("SELECT oid::bigint AS oid FROM pg_class WHERE relname ~ '^d_[0-9]+$' " ..
                                           "ORDER BY oid"))) do oids[#oids + 1] = r.oid end
  T.eq(#oids, 50)
  oids[#oids + 1] = 4000000000   -- (no such relation: left out, as describe_each does)
  local seen = {}
  ddl_sql.describe_parallel(conns, oids, function(oid, text)
    seen[#seen + 1] = tonumber(oid)
    T.eq(json.decode(text).oid, tonumber(oid), "the description of " .. oid)
  end, 7)
  local want = table.move(oids, 1, 50, 1, {})
  T.eq(seen, want, "each relation once, in the order asked")
  -- a failure in `each` while other chunks are being described: raised, every connection idle
  local calls = 0
  local ok, err = pcall(ddl_sql.describe_parallel, conns, oids, function()
    calls = calls + 1
    if calls == 10 then error("stop here", 0) end
  end, 3)
  T.eq(ok, false)
  T.eq(err, "stop here")
  for i, c in ipairs(conns) do
    T.eq(assert(c:query("SELECT 1 AS one"))[1].one, 1, "connection " .. i .. " is idle and usable")
    T.eq(assert(c:query("SELECT pg_catalog.current_setting('search_path') AS p"))[1].p ~= "pg_catalog", true,
         "connection " .. i .. " is out of the describing transaction")
    c:close()
  end
end)

T.test("on.ddl returning stop stops the task at that DDL, naming it; nothing after it is applied", function(ctx)
  local s0, t0 = P.clean(ctx)
  s0:close(); t0:close()
  P.both(ctx, "CREATE TABLE t (id int PRIMARY KEY, v text)")
  local src = P.connect(ctx.source_url)
  local ref = {}
  local task = H.task(ctx, "ddl_stop", { stop = H.stop_at(ref),
    on = { ddl = function(d) if d.tag == "DROP TABLE" then return "stop" end end } })
  local plan = H.plan(src)
  H.setup(ctx, task, plan)
  local h = H.stream(ctx, task, plan)
  assert(src:exec("INSERT INTO t VALUES (1, 'a')"))
  assert(src:exec("BEGIN; INSERT INTO t VALUES (2, 'b'); DROP TABLE t; COMMIT"))
  ref.lsn = P.lsn(src, true)
  local ok, err = pcall(h.wait, h)
  T.eq(ok, false)
  T.match(tostring(err), "DROP TABLE t")
  T.match(tostring(err), "at LSN %x+/%x+")
  T.match(tostring(err), "hint:")
  local tgt = P.connect(ctx.target_url)
  T.eq(#assert(tgt:query("SELECT 1 FROM t WHERE id = 2")), 0, "nothing of the DDL's transaction is applied")
  -- Run again, skipping it this time: the stream restarts at the same place, the target keeps
  -- its table, and both rows arrive once.
  local again = H.task(ctx, "ddl_stop", { stop = H.stop_at(ref),
    on = { ddl = function(d) if d.tag == "DROP TABLE" then return "skip" end end } })
  local summary = H.stream(ctx, again, plan):wait()
  T.eq(summary.status.ddl.skipped, 1)
  T.eq(P.fingerprint(tgt, "t"), P.fingerprint(tgt, "(VALUES (1, 'a'), (2, 'b'))"), "both rows, once")
  H.release(ctx, task)
  src:close(); tgt:close()
end)

T.test("a slot made again (a full load starting over) first brings the target to the source's DDL", function(ctx)
  local s0, t0 = P.clean(ctx)
  s0:close(); t0:close()
  P.both(ctx, "CREATE TABLE t (id int PRIMARY KEY, v text, old int); CREATE TABLE doomed (id int PRIMARY KEY); " ..
              "CREATE TABLE reborn (id int PRIMARY KEY, a int)")
  local src = P.connect(ctx.source_url)
  local task = H.task(ctx, "ddl_again")
  H.setup(ctx, task, H.plan(src))
  -- the run dies before its full load commits; meanwhile the source changes
  assert(src:exec("ALTER TABLE t ADD COLUMN c int DEFAULT 3"))
  assert(src:exec("ALTER TABLE t DROP COLUMN old"))
  assert(src:exec("CREATE TABLE t2 (id int PRIMARY KEY, w text)"))
  assert(src:exec("DROP TABLE doomed"))
  -- dropped and made again under its name (a new oid, another shape)
  assert(src:exec("DROP TABLE reborn; CREATE TABLE reborn (id int PRIMARY KEY, b text)"))
  assert(src:exec("SELECT pg_drop_replication_slot('pgtide_ddl_again')"))
  local tgt = P.connect(ctx.target_url)
  assert(tgt:exec("SELECT pg_replication_origin_drop('pgtide_ddl_again')"))
  H.setup(ctx, task, H.plan(src))
  T.eq(columns(tgt, "public.t"), columns(src, "public.t"), "the target has the columns the copy will bring")
  T.eq(columns(tgt, "public.t2"), columns(src, "public.t2"), "and the table created meanwhile")
  T.eq(indexes(tgt, "public.t2"), "", "its key is left to the full load's post-data step")
  T.ok(not exists(tgt, "public.doomed"), "the table dropped meanwhile is gone")
  T.eq(columns(tgt, "public.reborn"), columns(src, "public.reborn"), "a table made again under its name is there, new shape")
  H.release(ctx, task)
  src:close(); tgt:close()
end)

T.test("a reconnect after DDL was applied streams on with the new shape", function(ctx)
  local s0, t0 = P.clean(ctx)
  s0:close(); t0:close()
  P.both(ctx, "CREATE TABLE t (id int PRIMARY KEY, v text)")
  local src = P.connect(ctx.source_url)
  local tgt = P.connect(ctx.target_url)
  local ref = {}
  local task = H.task(ctx, "ddl_reconnect", { stop = H.stop_at(ref), retry = { attempts = 5, max_delay = 0.2 } })
  local plan = H.plan(src)
  H.setup(ctx, task, plan)
  local h = H.stream(ctx, task, plan)
  assert(src:exec("ALTER TABLE t ADD COLUMN extra int"))
  assert(src:exec("INSERT INTO t VALUES (1, 'a', 1)"))
  P.wait_for("the new column on the target", function()
    local rows = tgt:query("SELECT 1 FROM t WHERE extra = 1")   -- an error until the column is there
    return rows and #rows == 1
  end)
  -- the apply session goes away; the stream reconnects from the origin
  assert(tgt:query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
                   "pgtide:ddl_reconnect:apply"))
  assert(src:exec("INSERT INTO t VALUES (2, 'b', 2)"))
  assert(src:exec("CREATE TABLE t2 (id int PRIMARY KEY)"))
  assert(src:exec("INSERT INTO t2 VALUES (7)"))
  ref.lsn = P.lsn(src, true)
  local summary = h:wait()
  T.eq(summary.stopped_by, "condition")
  T.ok(summary.reconnects >= 1, "reconnected: " .. tostring(summary.reconnects))
  P.same(src, tgt, "t")
  P.same(src, tgt, "t2")
  H.release(ctx, task)
  src:close(); tgt:close()
end)

T.test("DDL inside a large transaction streamed before its commit: applied in its place at the commit", function(ctx)
  local s0, t0 = P.clean(ctx)
  s0:close(); t0:close()
  P.both(ctx, "CREATE TABLE t (id int PRIMARY KEY, pad text); CREATE TABLE u (id int PRIMARY KEY)")
  local src = P.connect(ctx.source_url)
  local ref = {}
  local task = H.task(ctx, "ddl_streamed", { stop = H.stop_at(ref), incremental = { decoding_work_mem = "64kB" } })
  local plan = H.plan(src)
  H.setup(ctx, task, plan)
  local h = H.stream(ctx, task, plan)
  assert(src:exec([[
    BEGIN;
    INSERT INTO t SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, 3000) g;
    ALTER TABLE t ADD COLUMN c int DEFAULT 1;
    INSERT INTO t SELECT g, 'after', g FROM generate_series(3001, 6000) g;
    SAVEPOINT s;
    INSERT INTO u VALUES (1);
    ALTER TABLE t ADD COLUMN gone int;
    INSERT INTO t VALUES (9999, 'cut', 1, 1);
    ROLLBACK TO SAVEPOINT s;
    INSERT INTO u VALUES (2);
    UPDATE t SET c = c + 1 WHERE id % 100 = 0;
    COMMIT]]))
  ref.lsn = P.lsn(src, true)
  local summary = h:wait()
  T.eq(summary.stopped_by, "condition")
  T.ok((summary.status.streamed_transactions or 0) >= 1, "the transaction was streamed")
  local tgt = P.connect(ctx.target_url)
  P.same(src, tgt, "t")
  P.same(src, tgt, "u")
  T.eq(columns(tgt, "public.t"), columns(src, "public.t"))
  H.release(ctx, task)
  src:close(); tgt:close()
end)

T.test("a DDL statement the target refuses stops the task naming it, its LSN and the fix", function(ctx)
  local s0, t0 = P.clean(ctx)
  s0:close(); t0:close()
  P.both(ctx, "CREATE TABLE t (id int PRIMARY KEY, v text)")
  P.exec(ctx.target_url, "CREATE TABLE clash_idx (x int)")   -- the name the index wants, taken on the target
  local src = P.connect(ctx.source_url)
  local ref = {}
  local task = H.task(ctx, "ddl_refused", { stop = H.stop_at(ref) })
  local plan = H.plan(src)
  H.setup(ctx, task, plan)
  local h = H.stream(ctx, task, plan)
  assert(src:exec("BEGIN; INSERT INTO t VALUES (1, 'a'); CREATE INDEX clash_idx ON t (v); INSERT INTO t VALUES (2, 'b'); COMMIT"))
  ref.lsn = P.lsn(src, true)
  local ok, err = pcall(h.wait, h)
  T.eq(ok, false)
  local text = tostring(err)
  T.match(text, "already exists")
  T.match(text, "CREATE INDEX clash_idx ON public%.t")
  T.match(text, "at LSN %x+/%x+")
  T.match(text, "hint: fix the target by hand")
  local tgt = P.connect(ctx.target_url)
  T.eq(#assert(tgt:query("SELECT 1 FROM t")), 0, "nothing of that transaction is applied")
  H.release(ctx, task)
  src:close(); tgt:close()
end)

-- The enum labels of a type, in their order.
local function labels(conn, typ)
  return assert(conn:query("SELECT enum_range(NULL::" .. typ .. ")::text AS l"))[1].l
end

-- A composite type's attributes as "name type" lines (types printed with the schema stripped).
local function attributes(conn, schema, typ)
  local out = {}
  for _, r in ipairs(assert(conn:query([[
SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type FROM pg_type t
JOIN pg_namespace n ON n.oid = t.typnamespace JOIN pg_attribute a ON a.attrelid = t.typrelid
WHERE n.nspname = $1 AND t.typname = $2 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum]], schema, typ))) do
    out[#out + 1] = r.name .. " " .. r.type
  end
  return table.concat(out, "\n")
end

-- A sequence's options as one line.
local function sequence(conn, schema, name)
  local r = assert(conn:query([[
SELECT data_type::text || ' ' || start_value || ' ' || min_value || ' ' || max_value || ' ' || increment_by || ' ' ||
       cycle || ' ' || cache_size AS s FROM pg_sequences WHERE schemaname = $1 AND sequencename = $2]], schema, name))
  return r[1] and r[1].s
end

T.test("types and sequences while streaming, under a schema rename rule", function(ctx)
  local s0, t0 = P.clean(ctx)
  s0:close(); t0:close()
  P.exec(ctx.source_url, [[
    DROP SCHEMA IF EXISTS shop CASCADE; CREATE SCHEMA shop;
    CREATE TABLE shop.t (id int PRIMARY KEY, v text)]])
  P.exec(ctx.target_url, [[
    DROP SCHEMA IF EXISTS store CASCADE; CREATE SCHEMA store;
    CREATE TABLE store.t (id int PRIMARY KEY, v text)]])
  local src = P.connect(ctx.source_url)
  assert(src:exec("INSERT INTO shop.t SELECT g, 'v' || g FROM generate_series(1, 10) g"))
  local ref = {}
  local task = H.task(ctx, "ddl_types", { stop = H.stop_at(ref), rename = { schema = { shop = "store" } } })
  local plan = H.plan(src, "shop")
  for _, tbl in ipairs(plan.tables) do tbl.target.schema = "store" end
  H.setup(ctx, task, plan)
  local h = H.stream(ctx, task, plan)
  -- type statements are run as the source wrote them (one per query string), unqualified: the
  -- target runs them in the mapped schema
  assert(src:exec("SET search_path = shop"))
  assert(src:exec("CREATE TYPE mood AS ENUM ('sad', 'ok')"))
  assert(src:exec("ALTER TABLE t ADD COLUMN m mood"))
  assert(src:exec("INSERT INTO t VALUES (11, 'eleven', 'ok'); UPDATE t SET m = 'sad' WHERE id <= 3"))
  assert(src:exec("ALTER TYPE mood ADD VALUE 'happy'"))
  assert(src:exec("INSERT INTO t VALUES (12, 'twelve', 'happy')"))
  assert(src:exec("ALTER TYPE mood ADD VALUE 'meh' BEFORE 'ok'"))
  assert(src:exec("UPDATE t SET m = 'meh' WHERE id = 4"))
  assert(src:exec("CREATE TYPE pair AS (a int, b text)"))
  assert(src:exec([[
    BEGIN;
    CREATE TABLE pairs (id int PRIMARY KEY, p pair, m mood DEFAULT 'ok');
    INSERT INTO pairs VALUES (1, ROW(1, 'one'), 'happy'), (2, ROW(2, 'two'), DEFAULT);
    COMMIT;
    CREATE SEQUENCE counter INCREMENT BY 2 MAXVALUE 1000 CYCLE;
    CREATE SEQUENCE doomed_seq;
    ALTER SEQUENCE counter INCREMENT BY 5 CACHE 3;
    DROP SEQUENCE doomed_seq;
    INSERT INTO pairs VALUES (3, ROW(3, 'three'), 'meh');
    CREATE TABLE serials (id serial PRIMARY KEY, m mood);
    INSERT INTO serials (m) VALUES ('ok'), ('happy');]]))
  assert(src:exec("CREATE TYPE unused AS ENUM ('a')"))
  assert(src:exec("DROP TYPE unused"))
  assert(src:exec("RESET search_path"))
  ref.lsn = P.lsn(src, true)
  local summary = h:wait()
  T.eq(summary.stopped_by, "condition")
  local tgt = P.connect(ctx.target_url)
  local function unschema(text, schema) return (text:gsub(schema .. "%.", "")) end
  T.eq(unschema(columns(tgt, "store.t"), "store"), unschema(columns(src, "shop.t"), "shop"), "t has the mood column")
  T.eq(unschema(columns(tgt, "store.pairs"), "store"), unschema(columns(src, "shop.pairs"), "shop"),
       "pairs has the source's columns")
  T.eq(labels(tgt, "store.mood"), labels(src, "shop.mood"), "the enum has the source's labels, in order")
  T.eq(attributes(tgt, "store", "pair"), attributes(src, "shop", "pair"), "the composite type arrived")
  T.eq(#assert(tgt:query("SELECT 1 FROM pg_type WHERE typname IN ('mood', 'pair') AND " ..
                         "typnamespace <> 'store'::regnamespace")), 0, "types are made in the mapped schema only")
  T.eq(P.fingerprint(tgt, "store.t"), P.fingerprint(src, "shop.t"), "t's rows")
  T.eq(P.fingerprint(tgt, "store.pairs"), P.fingerprint(src, "shop.pairs"), "pairs' rows")
  T.eq(sequence(tgt, "store", "counter"), sequence(src, "shop", "counter"), "the sequence has the source's options")
  T.ok(sequence(src, "shop", "counter"):find(" 5 true 3", 1, true), "(the ALTER SEQUENCE is in the source's)")
  T.eq(sequence(tgt, "store", "doomed_seq"), nil, "the dropped sequence is gone")
  T.eq(unschema(columns(tgt, "store.serials"), "store"), unschema(columns(src, "shop.serials"), "shop"),
       "a serial column's default names the mapped sequence")
  T.eq(P.fingerprint(tgt, "store.serials"), P.fingerprint(src, "shop.serials"), "serials' rows")
  T.eq(sequence(tgt, "store", "serials_id_seq"), sequence(src, "shop", "serials_id_seq"), "the serial's sequence")
  T.eq(#assert(tgt:query("SELECT 1 FROM pg_type WHERE typname = 'unused'")), 0, "the dropped type is gone")
  T.eq(#assert(tgt:query("SELECT 1 FROM pg_class WHERE relname IN ('counter', 'pairs') AND " ..
                         "relnamespace <> 'store'::regnamespace")), 0, "nothing is made outside the mapped schema")
  H.release(ctx, task)
  src:close(); tgt:close()
end)

-- The partition tree of the tables in schema public as "partition < parent: bound" lines.
local function partition_tree(conn)
  local out = {}
  for _, r in ipairs(assert(conn:query([[
SELECT c.relname AS name, p.relname AS parent, pg_get_expr(c.relpartbound, c.oid) AS bound, c.relkind AS kind
FROM pg_class c JOIN pg_inherits i ON i.inhrelid = c.oid JOIN pg_class p ON p.oid = i.inhparent
WHERE c.relnamespace = 'public'::regnamespace AND c.relispartition ORDER BY 1]]))) do
    out[#out + 1] = string.format("%s(%s) < %s: %s", r.name, r.kind, r.parent, r.bound)
  end
  return table.concat(out, "\n")
end

T.test("partitions: created, attached and detached while streaming, rows through the root", function(ctx)
  local s0, t0 = P.clean(ctx)
  s0:close(); t0:close()
  P.both(ctx, [[
    CREATE TABLE measurements (id int, ts date, v int, PRIMARY KEY (id, ts)) PARTITION BY RANGE (ts);
    CREATE TABLE m_2026 PARTITION OF measurements FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
    CREATE TABLE m_old (id int, ts date, v int, PRIMARY KEY (id, ts))]])
  local src = P.connect(ctx.source_url)
  assert(src:exec([[
    INSERT INTO measurements SELECT g, date '2026-01-01' + g, g FROM generate_series(1, 20) g;
    INSERT INTO m_old SELECT g, date '2025-01-01' + g, g FROM generate_series(1, 10) g]]))
  local ref = {}
  local task = H.task(ctx, "ddl_parts", { stop = H.stop_at(ref) })
  local plan = H.plan(src)
  H.setup(ctx, task, plan)
  local h = H.stream(ctx, task, plan)
  assert(src:exec([[
    BEGIN;
    CREATE TABLE m_2027 PARTITION OF measurements FOR VALUES FROM ('2027-01-01') TO ('2028-01-01');
    INSERT INTO measurements SELECT g, date '2027-01-01' + g, g FROM generate_series(1, 15) g;
    COMMIT;
    INSERT INTO measurements VALUES (100, '2027-06-01', 1), (101, '2026-06-01', 1);
    ALTER TABLE measurements ATTACH PARTITION m_old FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
    INSERT INTO measurements VALUES (102, '2025-06-01', 2);
    UPDATE measurements SET v = v * 10 WHERE ts < '2025-01-05' OR id = 3;
    ALTER TABLE measurements DETACH PARTITION m_2026;
    INSERT INTO measurements VALUES (103, '2027-07-01', 3);
    DELETE FROM measurements WHERE id = 2 AND ts = '2027-01-03';
    CREATE TABLE m_2028 (LIKE measurements INCLUDING ALL);
    INSERT INTO m_2028 VALUES (200, '2028-02-01', 5);
    ALTER TABLE measurements ATTACH PARTITION m_2028 FOR VALUES FROM ('2028-01-01') TO ('2029-01-01');
    INSERT INTO measurements VALUES (201, '2028-03-01', 6);
    ALTER TABLE measurements ADD COLUMN note text DEFAULT 'x';
    INSERT INTO measurements VALUES (202, '2028-04-01', 7, 'noted');
    UPDATE measurements SET note = 'y' WHERE id = 100;]]))
  ref.lsn = P.lsn(src, true)
  local summary = h:wait()
  T.eq(summary.stopped_by, "condition")
  local tgt = P.connect(ctx.target_url)
  T.eq(partition_tree(tgt), partition_tree(src), "the target's partitions are the source's")
  T.match(partition_tree(tgt), "m_2027%(r%) < measurements", "(the new partition is in the tree)")
  T.nomatch(partition_tree(tgt), "m_2026", "(the detached partition is not)")
  T.eq(columns(tgt, "public.measurements"), columns(src, "public.measurements"), "the column added to the root")
  T.eq(columns(tgt, "public.m_2027"), columns(src, "public.m_2027"), "and to its partitions")
  for _, rel in ipairs({ "measurements", "m_2027", "m_old", "m_2028", "m_2026" }) do P.same(src, tgt, rel) end
  T.eq(P.fingerprint(tgt, "m_2026"), P.fingerprint(src, "m_2026"), "the detached table keeps its rows")
  -- Stopped; meanwhile a partition is detached, one made and filled: the next run's plan sees
  -- the source as it is now, the record what the target has at the stream's position.
  assert(src:exec([[
    INSERT INTO measurements VALUES (300, '2027-08-01', 1);
    ALTER TABLE measurements DETACH PARTITION m_2027;
    CREATE TABLE m_2029 PARTITION OF measurements FOR VALUES FROM ('2029-01-01') TO ('2030-01-01');
    INSERT INTO measurements VALUES (301, '2029-05-01', 1), (302, '2028-05-01', 2);]]))
  ref.lsn = P.lsn(src, true)
  summary = H.stream(ctx, task, H.plan(src)):wait()
  T.eq(summary.stopped_by, "condition")
  T.eq(partition_tree(tgt), partition_tree(src), "after a restart: the target's partitions are the source's")
  for _, rel in ipairs({ "measurements", "m_2027", "m_2028", "m_2029" }) do P.same(src, tgt, rel) end
  H.release(ctx, task)
  src:close(); tgt:close()
end)

-- A partitioned table one of whose partitions is partitioned further (made by the schema phase,
-- so the record knows its leaves, not it): the root's own DDL and a partition attached to it
-- while streaming are followed, the partitioned partition left as it is.
T.test("partitions: the root of a partition partitioned further altered and attached to", function(ctx)
  local s0, t0 = P.clean(ctx)
  s0:close(); t0:close()
  P.both(ctx, [[
    CREATE TABLE sp (id int, d int, v int, PRIMARY KEY (id, d)) PARTITION BY RANGE (d);
    CREATE TABLE sp_a PARTITION OF sp FOR VALUES FROM (0) TO (10);
    CREATE TABLE sp_b PARTITION OF sp FOR VALUES FROM (10) TO (20) PARTITION BY LIST (id);
    CREATE TABLE sp_b1 PARTITION OF sp_b DEFAULT;
    CREATE TABLE sp_e PARTITION OF sp FOR VALUES FROM (90) TO (100) PARTITION BY LIST (id)]])
  local src = P.connect(ctx.source_url)
  assert(src:exec("INSERT INTO sp SELECT g, g % 20, g FROM generate_series(1, 40) g"))
  local ref = {}
  local task = H.task(ctx, "ddl_subparts", { stop = H.stop_at(ref) })
  local plan = H.plan(src)
  H.setup(ctx, task, plan)
  local h = H.stream(ctx, task, plan)
  assert(src:exec([[
    ALTER TABLE sp ADD COLUMN note text;
    INSERT INTO sp VALUES (100, 5, 1, 'a'), (101, 15, 1, 'b');
    CREATE TABLE sp_c (LIKE sp INCLUDING ALL);
    INSERT INTO sp_c VALUES (200, 25, 5, 'c');
    ALTER TABLE sp ATTACH PARTITION sp_c FOR VALUES FROM (20) TO (30);
    INSERT INTO sp VALUES (201, 26, 6, 'd'), (102, 16, 2, 'e');
    UPDATE sp SET v = -v WHERE id IN (2, 12, 200);
    CREATE TABLE sp_b2 PARTITION OF sp_b FOR VALUES IN (7, 107);
    INSERT INTO sp VALUES (107, 17, 7, 'f')]]))
  ref.lsn = P.lsn(src, true)
  local summary = h:wait()
  T.eq(summary.stopped_by, "condition")
  local tgt = P.connect(ctx.target_url)
  T.eq(partition_tree(tgt), partition_tree(src), "the target's partitions are the source's")
  T.eq(columns(tgt, "public.sp_b1"), columns(src, "public.sp_b1"), "the column reached the partitions' partitions")
  for _, rel in ipairs({ "sp", "sp_a", "sp_b1", "sp_c", "sp_b2" }) do P.same(src, tgt, rel) end
  H.release(ctx, task)
  src:close(); tgt:close()
end)

-- A TRUNCATE of one partition: pgoutput leaves it out (partitions go through their root), so
-- the partitions carry a trigger that records it (tide.cdc.ddl_sql): alone, refilled in the same
-- transaction, of a partition made while streaming and of one partitioned further, the whole
-- partitioned table truncated; release drops the triggers.
T.test("partitions: TRUNCATE of a single partition is followed", function(ctx)
  local s0, t0 = P.clean(ctx)
  s0:close(); t0:close()
  P.both(ctx, [[
    CREATE TABLE tp (id int, d int, v int, PRIMARY KEY (id, d)) PARTITION BY RANGE (d);
    CREATE TABLE tp_a PARTITION OF tp FOR VALUES FROM (0) TO (10);
    CREATE TABLE tp_b PARTITION OF tp FOR VALUES FROM (10) TO (20);
    CREATE TABLE tp_c PARTITION OF tp FOR VALUES FROM (20) TO (30) PARTITION BY LIST (id);
    CREATE TABLE tp_c1 PARTITION OF tp_c DEFAULT;
    CREATE TABLE tq (id int, d int, PRIMARY KEY (id, d)) PARTITION BY RANGE (d);
    CREATE TABLE tq_a PARTITION OF tq FOR VALUES FROM (0) TO (100)]])
  local src = P.connect(ctx.source_url)
  assert(src:exec([[INSERT INTO tp SELECT g, g % 30, g FROM generate_series(1, 90) g;
                    INSERT INTO tq SELECT g, g FROM generate_series(1, 20) g]]))
  local ref = {}
  local task = H.task(ctx, "ddl_truncparts", { stop = H.stop_at(ref) })
  local plan = H.plan(src)
  -- a session writing to a partition holds it: the trigger waits 10 s for it, then the run stops
  -- before the slot is made, saying why
  local busy = P.connect(ctx.source_url)
  assert(busy:exec("BEGIN; LOCK TABLE tp_b IN ROW EXCLUSIVE MODE"))
  local ok, err = pcall(H.setup, ctx, task, plan)
  T.ok(not ok, "the run stopped")
  T.match(tostring(type(err) == "table" and err.message or err), "was locked by another session")
  assert(busy:exec("ROLLBACK")); busy:close()
  H.setup(ctx, task, plan)
  local function triggers()
    return assert(src:query([[SELECT count(*) AS n FROM pg_trigger WHERE tgname LIKE 'pgtide%truncate']]))[1].n
  end
  T.eq(triggers(), 4, "every partition (a table) has the trigger")
  local h = H.stream(ctx, task, plan)
  assert(src:exec([[
    TRUNCATE tp_a;
    BEGIN; TRUNCATE tp_b; INSERT INTO tp VALUES (1000, 15, 1), (1001, 5, 1); COMMIT;
    TRUNCATE tp_c1;
    CREATE TABLE tp_d PARTITION OF tp FOR VALUES FROM (30) TO (40);
    INSERT INTO tp SELECT g, 30 + g % 10, g FROM generate_series(2000, 2019) g;
    BEGIN; INSERT INTO tp VALUES (3000, 35, 0); TRUNCATE tp_d; INSERT INTO tp VALUES (3001, 36, 0); COMMIT;
    TRUNCATE tq;
    INSERT INTO tq VALUES (7, 7)]]))
  ref.lsn = P.lsn(src, true)
  local summary = h:wait()
  T.eq(summary.stopped_by, "condition")
  local tgt = P.connect(ctx.target_url)
  for _, rel in ipairs({ "tp", "tp_a", "tp_b", "tp_c1", "tp_d", "tq", "tq_a" }) do P.same(src, tgt, rel) end
  T.eq(assert(tgt:query("SELECT count(*) AS n FROM tp_d"))[1].n, 1, "(the partition made while streaming)")
  T.eq(triggers(), 5, "the partition made while streaming got the trigger")
  -- ... made by the event trigger, which does not send its own CREATE TRIGGER as DDL to follow
  local tags = {}
  for _, e in ipairs(summary.status.ddl.recent) do tags[#tags + 1] = e.tag end
  T.eq(table.concat(tags, ","), "CREATE TABLE", "the DDL the stream saw")
  H.release(ctx, task)
  T.eq(triggers(), 0, "release drops the triggers")
  src:close(); tgt:close()
end)

T.test("a partitioned table created with its partitions in one transaction and filled", function(ctx)
  local s0, t0 = P.clean(ctx)
  s0:close(); t0:close()
  P.both(ctx, "CREATE TABLE t (id int PRIMARY KEY)")
  local src = P.connect(ctx.source_url)
  local ref = {}
  local task = H.task(ctx, "ddl_newparts", { stop = H.stop_at(ref) })
  local plan = H.plan(src)
  H.setup(ctx, task, plan)
  local h = H.stream(ctx, task, plan)
  assert(src:exec([[
    BEGIN;
    CREATE TABLE events (id int, kind text, note text DEFAULT 'n', PRIMARY KEY (id, kind)) PARTITION BY LIST (kind);
    CREATE INDEX events_note_idx ON events (note);
    CREATE TABLE events_a PARTITION OF events FOR VALUES IN ('a');
    CREATE TABLE events_b PARTITION OF events FOR VALUES IN ('b') PARTITION BY RANGE (id);
    CREATE TABLE events_b1 PARTITION OF events_b FOR VALUES FROM (0) TO (1000);
    CREATE TABLE events_b2 PARTITION OF events_b FOR VALUES FROM (1000) TO (2000);
    INSERT INTO events SELECT g, CASE WHEN g % 2 = 0 THEN 'a' ELSE 'b' END, 'e' || g FROM generate_series(1, 1999) g;
    COMMIT;
    UPDATE events SET note = 'changed' WHERE id % 7 = 0;
    DELETE FROM events WHERE id % 11 = 0;
    INSERT INTO t VALUES (1);]]))
  ref.lsn = P.lsn(src, true)
  local summary = h:wait()
  T.eq(summary.stopped_by, "condition")
  local tgt = P.connect(ctx.target_url)
  T.eq(partition_tree(tgt), partition_tree(src), "the partition tree arrived")
  for _, rel in ipairs({ "events", "events_a", "events_b1", "events_b2", "t" }) do P.same(src, tgt, rel) end
  T.eq(indexes(tgt, "public.events_b1"), indexes(src, "public.events_b1"), "a partition has its parent's indexes")
  T.eq(columns(tgt, "public.events"), columns(src, "public.events"))
  H.release(ctx, task)
  src:close(); tgt:close()
end)

-- The comments of a table and its columns as "column: comment" lines ("-" for the table's own).
local function comments(conn, relation)
  local out = {}
  for _, r in ipairs(assert(conn:query([[
SELECT '-' AS name, 0 AS num, obj_description(to_regclass($1), 'pg_class') AS c
UNION ALL
SELECT a.attname, a.attnum, col_description(a.attrelid, a.attnum) FROM pg_attribute a
WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY 2]], relation))) do
    out[#out + 1] = r.name .. ": " .. tostring(r.c)
  end
  return table.concat(out, "\n")
end

-- The privileges of roles other than the owner on a table and its columns, as
-- "grantee privilege (column)" lines.
local function privileges(conn, relation)
  local out = {}
  for _, r in ipairs(assert(conn:query([[
SELECT coalesce(nullif(e.grantee, 0)::regrole::text, 'PUBLIC') || ' ' || e.privilege_type ||
       CASE WHEN e.is_grantable THEN ' grantable' ELSE '' END || coalesce(' (' || a.attname || ')', '') AS line
FROM pg_class c
LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attacl IS NOT NULL
CROSS JOIN LATERAL aclexplode(CASE WHEN a.attname IS NULL THEN c.relacl ELSE a.attacl END) e
WHERE c.oid = to_regclass($1) AND e.grantee <> c.relowner
UNION
SELECT coalesce(nullif(e.grantee, 0)::regrole::text, 'PUBLIC') || ' ' || e.privilege_type ||
       CASE WHEN e.is_grantable THEN ' grantable' ELSE '' END
FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) e
WHERE c.oid = to_regclass($1) AND e.grantee <> c.relowner ORDER BY 1]], relation))) do
    out[#out + 1] = r.line
  end
  return table.concat(out, "\n")
end

T.test("COMMENT ON, GRANT and REVOKE on followed tables and columns, under rename rules", function(ctx)
  local s0, t0 = P.clean(ctx)
  s0:close(); t0:close()
  local role = "DO $$ BEGIN CREATE ROLE %s; EXCEPTION WHEN duplicate_object THEN NULL; END $$"
  P.both(ctx, role:format("ddl_reader"))
  P.exec(ctx.source_url, role:format("ddl_source_only"))
  P.exec(ctx.source_url, "CREATE TABLE tbl_notes (id int PRIMARY KEY, body text, extra int)")
  P.exec(ctx.target_url, "CREATE TABLE notes (id int PRIMARY KEY, content text, extra int)")
  local src = P.connect(ctx.source_url)
  local ref = {}
  local task = H.task(ctx, "ddl_comments", { stop = H.stop_at(ref),
    rename = { table = { { strip_prefix = "tbl_" } }, column = { ["public.tbl_notes.body"] = "content" } } })
  local plan = H.plan(src, "public", { tbl_notes = "notes", ["tbl_notes.body"] = "content" })
  H.setup(ctx, task, plan)
  local h = H.stream(ctx, task, plan)
  assert(src:exec([[
    COMMENT ON TABLE tbl_notes IS 'the notes; it''s "quoted"';
    COMMENT ON COLUMN tbl_notes.body IS 'the text';
    COMMENT ON COLUMN tbl_notes.extra IS 'to be removed';
    INSERT INTO tbl_notes VALUES (1, 'a', 1);
    COMMENT ON COLUMN tbl_notes.extra IS NULL;
    BEGIN;
    CREATE TABLE tbl_tags (id int PRIMARY KEY, label text);
    COMMENT ON TABLE tbl_tags IS 'tags';
    COMMENT ON COLUMN tbl_tags.label IS 'its label';
    GRANT SELECT, INSERT ON tbl_tags TO ddl_reader;
    COMMIT;
    GRANT SELECT ON tbl_notes TO ddl_reader WITH GRANT OPTION;
    GRANT UPDATE (body) ON tbl_notes TO ddl_reader;
    GRANT SELECT ON tbl_notes TO ddl_source_only;
    GRANT SELECT, DELETE ON tbl_notes TO PUBLIC;
    REVOKE SELECT ON tbl_notes FROM PUBLIC;
    REVOKE INSERT ON tbl_tags FROM ddl_reader;]]))
  ref.lsn = P.lsn(src, true)
  local summary = h:wait()
  T.eq(summary.stopped_by, "condition")
  local tgt = P.connect(ctx.target_url)
  T.eq(comments(tgt, "public.notes"), (comments(src, "public.tbl_notes"):gsub("body:", "content:")),
       "the table's and its columns' comments, under the mapped names")
  T.match(comments(tgt, "public.notes"), "content: the text", "(the renamed column has its comment)")
  T.eq(comments(tgt, "public.tags"), comments(src, "public.tbl_tags"), "a new table's comments")
  local kept = {}
  for line in privileges(src, "public.tbl_notes"):gmatch("[^\n]+") do
    if not line:find("ddl_source_only", 1, true) then kept[#kept + 1] = (line:gsub("%(body%)", "(content)")) end
  end
  local expected = table.concat(kept, "\n")
  T.eq(privileges(tgt, "public.notes"), expected, "the grants, except to a role the target lacks")
  T.match(privileges(tgt, "public.notes"), "ddl_reader UPDATE %(content%)", "(a column grant, mapped)")
  T.match(privileges(tgt, "public.notes"), "PUBLIC DELETE", "(to PUBLIC)")
  T.nomatch(privileges(tgt, "public.notes"), "PUBLIC SELECT", "(revoked)")
  T.eq(privileges(tgt, "public.tags"), privileges(src, "public.tbl_tags"), "a new table's grants, one revoked")
  T.eq(privileges(tgt, "public.tags"), "ddl_reader SELECT", "(only SELECT is left)")
  T.eq(P.fingerprint(tgt, "notes"), P.fingerprint(src, "tbl_notes"), "the rows")
  H.release(ctx, task)
  src:close(); tgt:close()
end)
