-- Reading a catalog over several connections (tide.catalog.parallel): the same catalog as one
-- connection reads, inside one snapshot, and a quiet fall back to the main connection when
-- the server refuses the helpers. Fixture: tests/fixtures/schema_all_kinds.sql (every kind).
-- The helpers only join on big catalogs: the cases lower tide.catalog.parallel.min_relations.
local T = require "testlib"
local P = require "pg"
local tide = require "tide"
local catalog = require "tide.catalog"
local parallel = require "tide.catalog.parallel"
local fetch = require "tide.catalog.fetch"
local connect = require "tide.connect"

local PGTIDE = os.getenv("PGTIDE") or "build/pgtide"
local PG_BIN = "/usr/lib/postgresql/15/bin/"
local FIXTURE = "tests/fixtures/schema_all_kinds.sql"

local loaded = false
local function load_fixture(ctx)
  if loaded then return end
  P.exec(ctx.source_admin, [[DO $$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'tide_reader') THEN CREATE ROLE tide_reader; END IF;
  END $$]])
  local code, out = T.sh(PG_BIN .. "psql -X -q -v ON_ERROR_STOP=1 -d '" .. ctx.source_url .. "' -f " .. FIXTURE)
  if code ~= 0 then error("loading the fixture failed: " .. out) end
  loaded = true
end

local function make_task(ctx, source_url)
  return tide.task { name = "catalog-parallel", source = source_url or ctx.source_url, target = ctx.target_url,
                     migrate = { "schema" } }
end

-- A catalog without what differs from one read to the next (timings, connection count), its
-- packed rows (tide.catalog.rows.pack) as tables of named fields.
local function rows_of(cat)
  local out = {}
  for k, v in pairs(cat) do
    if k ~= "timing" and k ~= "connections" then
      local mt = type(v) == "table" and type(v[1]) == "table" and getmetatable(v[1])
      if mt and mt.__packed then
        local named = {}
        for i, row in ipairs(v) do
          named[i] = {}
          for field, value in pairs(row) do named[i][field] = value end
        end
        v = named
      end
      out[k] = v
    end
  end
  return out
end

-- A connection that hands every call to `conn`, counting catalog statements in
-- counter.statements. opts.rewrite(sql, method) may swap a statement for another;
-- opts.wait_for (a counter): the first statement from the queue waits until that counter
-- counts one, so the helpers surely take some of the work however fast this connection is.
local function watched(conn, counter, opts)
  opts = opts or {}
  return setmetatable({}, { __index = function(_, method)
    return function(_, sql, ...)
      if method == "query_sparse" then
        counter.statements = counter.statements + 1
        -- (the first statement is settings, read before the helpers start)
        if opts.wait_for and counter.statements == 2 then
          local deadline = tide.monotonic() + 20
          while opts.wait_for.statements == 0 and tide.monotonic() < deadline do tide.sleep(0.01) end
        end
      end
      if opts.rewrite and type(sql) == "string" then sql = opts.rewrite(sql, method) end
      return conn[method](conn, sql, ...)
    end
  end })
end

-- Reads with helpers whatever the catalog's size; restores the threshold afterwards.
local function with_helpers(fn)
  local saved = parallel.min_relations
  parallel.min_relations = 0
  local ok, err = pcall(fn)
  parallel.min_relations = saved
  if not ok then error(err, 0) end
end

-- A connection that hands every call to `conn` and calls seen(param) for each statement with
-- `text` in it (the look-ups of a few rows after the read's statements: their $1).
local function recording(conn, text, seen)
  return setmetatable({}, { __index = function(_, method)
    return function(_, sql, ...)
      if type(sql) == "string" and sql:find(text, 1, true) then seen(...) end
      return conn[method](conn, sql, ...)
    end
  end })
end

T.test("helpers read the same catalog as one connection, in the main read's snapshot", function(ctx)
  load_fixture(ctx)
  local task = make_task(ctx)
  local source <close> = connect.open(task, "source")
  local single = catalog.read(source)
  T.eq(single.connections, 1)
  T.ok(#single.tables > 10 and #single.indexes > 10 and #single.functions > 5, "the fixture is read")

  -- Before any helper connects, a table is created and committed on another connection: it
  -- is newer than the exported snapshot, so no helper may see it.
  local helpers, counter = {}, { statements = 0 }
  local created
  local halves = 0   -- the indexes statement's halves the helpers read (the main reads none first)
  local parallel_cat
  with_helpers(function()
    local main = watched(source, { statements = 0 }, { wait_for = counter })
    parallel_cat = catalog.read(main, { open = function(opts)
      if created == nil then
        created = false
        P.exec(ctx.source_url, "CREATE TABLE public.after_snapshot (id int PRIMARY KEY)")
        created = true
      end
      while not created do tide.sleep(0.01) end
      local c = connect.open(task, "source", opts)
      helpers[#helpers + 1] = c
      return watched(c, counter, { rewrite = function(sql, method)
        -- (one query, or a cursor's DECLARE on a big catalog: tide.catalog.fetch.in_pieces)
        if (method == "query_sparse" or method == "exec") and sql:find("(i.indrelid < $1::oid)", 1, true) then
          halves = halves + 1
        end
        return sql
      end })
    end })
  end)
  T.eq(created, true)
  P.exec(ctx.source_url, "DROP TABLE public.after_snapshot")
  T.eq(#helpers, parallel.helpers, "helpers opened")
  T.eq(parallel_cat.connections, 1 + parallel.helpers)
  T.ok(counter.statements > 0, "the helpers read no statement")
  T.eq(rows_of(parallel_cat), rows_of(single), "the parallel read's catalog")
  -- The indexes statement went in two halves, each with rows of the fixture, and the halves
  -- one after the other are the one-connection statement's rows in its order.
  T.ok(halves >= 1, "no helper read a half of the indexes statement")
  local middle = source:query("SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY indrelid) AS m FROM pg_index WHERE indrelid >= 16384")[1].m
  local below, from = 0, 0
  for _, row in ipairs(single.indexes) do
    if row.table_oid < middle then below = below + 1 else from = from + 1 end
  end
  T.ok(below > 0 and from > 0, "one half is empty: " .. below .. " and " .. from)
  for _, c in ipairs(helpers) do
    T.eq(c:status(), "closed", "a helper connection")
  end
  -- The main connection is out of its transaction and reads on.
  T.eq(source:query("SELECT pg_catalog.current_setting('transaction_isolation') AS i")[1].i, "read committed")
end)

-- A connection that hands every call to `conn` and counts the cursor statements it sees
-- (counts.DECLARE, .FETCH, .CLOSE; counts.halves: the indexes statement's halves declared).
local function counting(conn, counts)
  return setmetatable({}, { __index = function(_, method)
    return function(_, sql, ...)
      if type(sql) == "string" then
        local word = sql:match("^(%u+) ")
        if counts[word] then counts[word] = counts[word] + 1 end
        if word == "DECLARE" and sql:find("(i.indrelid < $1::oid)", 1, true) then counts.halves = counts.halves + 1 end
      end
      return conn[method](conn, sql, ...)
    end
  end })
end

-- Reads with every catalog's statements in pieces of `rows` rows; restores the settings.
local function in_pieces(rows, fn)
  local saved, saved_from = fetch.piece_rows, fetch.pieces_from
  fetch.piece_rows, fetch.pieces_from = rows, 0
  local ok, err = pcall(fn)
  fetch.piece_rows, fetch.pieces_from = saved, saved_from
  if not ok then error(err, 0) end
end

T.test("statements read a few rows at a time give the catalog that whole results give", function(ctx)
  load_fixture(ctx)
  local task = make_task(ctx)
  local source <close> = connect.open(task, "source")
  local whole = catalog.read(source)   -- (a small catalog: each statement one query)
  -- With helpers: the indexes statement's halves are cursors with parameters.
  local counts, cat = { DECLARE = 0, FETCH = 0, CLOSE = 0, halves = 0 }, nil
  in_pieces(3, function()
    with_helpers(function()
      cat = catalog.read(counting(source, counts),
                         { open = function(opts) return counting(connect.open(task, "source", opts), counts) end })
    end)
  end)
  T.eq(cat.connections, 1 + parallel.helpers)
  T.eq(rows_of(cat), rows_of(whole), "the catalog read in pieces of 3 rows")
  T.ok(counts.DECLARE >= 10 and counts.FETCH > 2 * counts.DECLARE, "cursors and pieces: " .. counts.DECLARE .. ", " .. counts.FETCH)
  T.eq(counts.CLOSE, counts.DECLARE, "every cursor closed")
  T.eq(counts.halves, 2, "the indexes statement's halves, each a cursor")
  -- Every pg_depend row the statement selects, each with its fields (kept as lists of fields).
  local expected = source:query("SELECT count(*) AS n, count(*) FILTER (WHERE d.objsubid > 0) AS sub FROM (" ..
                                catalog.statements.depends .. ") d")[1]
  local n, sub, fields = 0, 0, 0
  for d in require("tide.catalog.rows").each_depend(cat.depends) do
    n = n + 1
    if d.objsubid > 0 then sub = sub + 1 end
    if d.class and d.objid and d.refclass and d.refobjid and d.refobjsubid and d.deptype then fields = fields + 1 end
  end
  T.ok(expected.n > 20 and expected.sub > 0, "the fixture has dependencies: " .. expected.n)
  T.eq({ n, sub, fields }, { expected.n, expected.sub, expected.n }, "pg_depend's rows: count, with a column, whole")
  local whole_n = 0
  for _ in require("tide.catalog.rows").each_depend(whole.depends) do whole_n = whole_n + 1 end
  T.eq(whole_n, expected.n, "pg_depend's rows read in one query")
end)

T.test("a piece that fails fails the read: no transaction and no helper left open, the next read whole", function(ctx)
  load_fixture(ctx)
  local task = make_task(ctx)
  local source <close> = connect.open(task, "source")
  local helpers, fetches = {}, 0
  local ok, err
  in_pieces(3, function()
    with_helpers(function()
      -- The main connection's second FETCH names no cursor: its statement fails between two pieces.
      local main = watched(source, { statements = 0 }, { rewrite = function(sql)
        if sql:find("^FETCH ") then
          fetches = fetches + 1
          if fetches == 2 then return "FETCH FORWARD 3 FROM no_such_cursor" end
        end
        return sql
      end })
      ok, err = pcall(catalog.read, main, { open = function(opts)
        local c = connect.open(task, "source", opts)
        helpers[#helpers + 1] = c
        return c
      end })
    end)
  end)
  T.eq(ok, false)
  T.match(tostring(err), "catalog: reading [%w_]+ failed.*no_such_cursor")
  T.ok(#helpers > 0, "no helper opened")
  for _, c in ipairs(helpers) do T.eq(c:status(), "closed", "a helper connection") end
  T.eq(source:query("SELECT pg_catalog.current_setting('transaction_isolation') AS i")[1].i, "read committed")
  local again = catalog.read(source)
  T.ok(#again.tables > 10 and again.depends.n > 20, "the next read")
end)

T.test("a server's idle_in_transaction_session_timeout does not end a spread read", function(ctx)
  load_fixture(ctx)
  local task = make_task(ctx)
  P.exec(ctx.source_admin, "ALTER DATABASE " .. ctx.dbname .. " SET idle_in_transaction_session_timeout = '300ms'")
  local ok, err = pcall(function()
    local source <close> = connect.open(task, "source")
    local single = catalog.read(source)
    -- Every connection idles in its transaction longer than the timeout before it reads.
    local function idling(conn)
      local slept = false
      return watched(conn, { statements = 0 }, { rewrite = function(sql, method)
        if method == "query_sparse" and sql ~= catalog.statements.settings and not slept then
          slept = true
          tide.sleep(1)
        end
        return sql
      end })
    end
    local cat
    with_helpers(function()
      cat = catalog.read(idling(source), { open = function(opts) return idling(connect.open(task, "source", opts)) end })
    end)
    T.eq(cat.connections, 1 + parallel.helpers)
    T.eq(rows_of(cat), rows_of(single))
  end)
  P.exec(ctx.source_admin, "ALTER DATABASE " .. ctx.dbname .. " RESET idle_in_transaction_session_timeout")
  if not ok then error(err, 0) end
end)

T.test("a failed statement on a helper fails the read and closes every helper", function(ctx)
  load_fixture(ctx)
  local task = make_task(ctx)
  local source <close> = connect.open(task, "source")
  local helpers, counter = {}, { statements = 0 }
  with_helpers(function()
    local main = watched(source, { statements = 0 }, { wait_for = counter })
    T.raises(function()
      catalog.read(main, { open = function(opts)
        local c = connect.open(task, "source", opts)
        helpers[#helpers + 1] = c
        -- Every statement a helper reads fails.
        return watched(c, counter, { rewrite = function(sql, method)
          return method == "query_sparse" and "SELECT pg_catalog.no_such_function()" or sql
        end })
      end })
    end, "catalog: reading [%w_]+ failed")
  end)
  T.ok(#helpers > 0, "no helper opened")
  for _, c in ipairs(helpers) do
    T.eq(c:status(), "closed", "a helper connection")
  end
  T.eq(source:query("SELECT 1 AS one")[1].one, 1, "the main connection reads on")
  T.eq(catalog.read(source).connections, 1)
end)

T.test("a snapshot the server will not export or import: the main connection reads alone", function(ctx)
  load_fixture(ctx)
  local task = make_task(ctx)
  local source <close> = connect.open(task, "source")
  local single = catalog.read(source)
  local cat
  -- The sizing statement or the export fails (as on a fork without pg_export_snapshot): the
  -- transaction starts over, and the main connection reads alone.
  for _, refused in ipairs({ "pg_export_snapshot", "pg_is_in_recovery" }) do
    local refusing = watched(source, { statements = 0 }, { rewrite = function(sql)
      return (sql:gsub(refused .. "%(%)", "no_such_function()"))
    end })
    local opened = 0
    with_helpers(function()
      cat = catalog.read(refusing, { open = function(opts) opened = opened + 1; return connect.open(task, "source", opts) end })
    end)
    T.eq(opened, 0, "helpers opened without a snapshot (" .. refused .. " refused)")
    T.eq(cat.connections, 1)
    T.eq(rows_of(cat), rows_of(single))
  end

  -- Helpers on another database cannot import the snapshot: closed, the main connection reads.
  local other = P.with_db(ctx.source_admin, "postgres")
  local helpers = {}
  with_helpers(function()
    cat = catalog.read(source, { open = function(opts)
      local c = assert(tide.connect(other, opts))
      helpers[#helpers + 1] = c
      return c
    end })
  end)
  T.eq(#helpers, parallel.helpers)
  T.eq(cat.connections, 1)
  T.eq(rows_of(cat), rows_of(single))
  for _, c in ipairs(helpers) do T.eq(c:status(), "closed", "a refused helper") end
end)

T.test("a role at its connection limit: plan reads on its one connection, and says nothing", function(ctx)
  load_fixture(ctx)
  local role = "pgtide_catalog_one"
  P.exec(ctx.source_admin, string.format([[DO $$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '%s') THEN CREATE ROLE %s LOGIN CONNECTION LIMIT 1; END IF;
  END $$]], role, role))
  local source_url = ctx.source_url:gsub("://[^@/]*@", "://" .. role .. "@")
  if source_url == ctx.source_url then source_url = ctx.source_url:gsub("://", "://" .. role .. "@") end
  local script = ctx.tmpdir .. "/catalog_parallel_limit.lua"
  local f = assert(io.open(script, "w"))
  f:write(string.format([[
local tide = require "tide"
local parallel = require "tide.catalog.parallel"
parallel.min_relations = 0
local task = tide.task { name = "catalog-limit", source = %q, target = %q, migrate = { "schema" } }
local connect = require "tide.connect"
local source, target = connect.open_both(task)
local plan = require("tide.plan").build(task, source, target)
print("connections " .. plan.catalog.connections .. " tables " .. #plan.catalog.tables)
]], source_url, ctx.target_url))
  f:close()
  local code, out = T.sh(PGTIDE .. " script " .. script)
  local task = make_task(ctx)
  local source <close> = connect.open(task, "source")
  T.eq(code, 0, out)
  T.eq(out, "connections 1 tables " .. #catalog.read(source).tables .. "\n",
       "the output (nothing about refused connections)")
  -- The same read as the superuser spreads over helpers.
  with_helpers(function()
    T.eq(catalog.read(source, { open = function(opts) return connect.open(task, "source", opts) end }).connections,
         1 + parallel.helpers)
  end)
  P.exec(ctx.source_admin, "DROP ROLE " .. role)
end)

-- Key columns come as attribute numbers and are named from the columns statement's rows
-- (tide.catalog.rows.name_key_columns): every index's and constraint's names are the ones the
-- server gives those numbers, in key order, expressions left out; numbers the columns
-- statement cannot name (a system column, a table of an extension) are asked for in the
-- read's snapshot.
T.test("key columns named from their numbers as the server names them", function(ctx)
  load_fixture(ctx)
  P.exec(ctx.source_url, [[
    CREATE SCHEMA keys;
    -- dropped columns before the key: the n-th column row is no longer number n; wide
    CREATE TABLE keys.gaps (a int, b int, c int, d text);
    ALTER TABLE keys.gaps DROP COLUMN a;
    ALTER TABLE keys.gaps ADD PRIMARY KEY (d, b);
    ALTER TABLE keys.gaps ADD CONSTRAINT gaps_sys CHECK (tableoid <> 0 AND c > 0);
    CREATE INDEX gaps_mixed ON keys.gaps (c, (b * 2), d);
    CREATE INDEX gaps_expr ON keys.gaps ((b + c));
    CREATE UNIQUE INDEX gaps_incl ON keys.gaps (c) INCLUDE (d, b);
    DO $$ BEGIN
      EXECUTE 'CREATE TABLE keys.wide (' || (SELECT string_agg('c' || g || ' int', ', ') FROM generate_series(1, 60) g) || ')';
    END $$;
    ALTER TABLE keys.wide DROP COLUMN c3, DROP COLUMN c17;
    ALTER TABLE keys.wide ADD CONSTRAINT wide_key UNIQUE (c58, c2, c40);
    -- a table of an extension (the columns statement leaves those out), referenced
    CREATE TABLE keys.ext_owned (code int, label text, PRIMARY KEY (label, code));
    ALTER EXTENSION plpgsql ADD TABLE keys.ext_owned;
    CREATE TABLE keys.uses_ext (id int PRIMARY KEY, l text, c int,
      FOREIGN KEY (l, c) REFERENCES keys.ext_owned (label, code));
    CREATE TABLE keys."Odd ""name""" ("Key col" int PRIMARY KEY, "x y" int REFERENCES keys.uses_ext);]])
  local ok, err = pcall(function()
    local task = make_task(ctx)
    local source <close> = connect.open(task, "source")
    -- (the look-ups the read asks for: only the relations the columns statement cannot name)
    local asked = {}
    local cat = catalog.read(recording(source, "ANY ($1::oid[])", function(param) asked[#asked + 1] = param end))
    local oids = source:query([[SELECT string_agg(oid::text, ',' ORDER BY oid) AS list FROM pg_class
                                 WHERE oid IN ('keys.gaps'::regclass, 'keys.ext_owned'::regclass)]])[1].list
    T.eq(asked, { "{" .. oids .. "}" }, "the relations looked up")
    -- What the server names each number, in key order (attnum 0, an expression, has no row).
    local function server_names(sql)
      local out = {}
      for _, r in ipairs(source:query_sparse(sql)) do out[r.oid] = r.names and require("tide.json").decode(r.names) or false end
      return out
    end
    local NAMES = [[(SELECT json_agg(a.attname ORDER BY k.ord)::text
                       FROM unnest(%s) WITH ORDINALITY k(attnum, ord)
                       JOIN pg_attribute a ON a.attrelid = %s AND a.attnum = k.attnum)]]
    local by_index = server_names("SELECT i.indexrelid AS oid, " .. NAMES:format("i.indkey::int2[]", "i.indrelid")
      .. " AS names FROM pg_index i")
    local by_key = server_names("SELECT c.oid, " .. NAMES:format("c.conkey", "c.conrelid") .. " AS names FROM pg_constraint c")
    local by_ref = server_names("SELECT c.oid, " .. NAMES:format("c.confkey", "c.confrelid") .. " AS names FROM pg_constraint c")
    local function same(label, row, field, want)
      T.eq(row[field] or false, want, label .. " " .. row.name .. "'s " .. field)
      T.eq(row.column_nums, nil, "numbers left in " .. row.name)
      T.eq(row.ref_column_nums, nil, "numbers left in " .. row.name)
    end
    for _, row in ipairs(cat.indexes) do same("index", row, "columns", by_index[row.oid]) end
    local seen = {}
    for _, row in ipairs(cat.constraints) do
      same("constraint", row, "columns", by_key[row.oid])
      same("constraint", row, "ref_columns", by_ref[row.oid])
      seen[row.name] = row
    end
    -- The cases are there, with what they should be (not only what the server says).
    T.eq(seen.gaps_pkey.columns, { "d", "b" })
    T.eq(seen.gaps_sys.columns, { "tableoid", "c" })
    T.eq(seen.wide_key.columns, { "c58", "c2", "c40" })
    T.eq(seen.uses_ext_l_c_fkey.ref_columns, { "label", "code" })
    T.eq(seen["Odd \"name\"_x y_fkey"].ref_columns, { "id" })
    local idx = {}
    for _, row in ipairs(cat.indexes) do idx[row.name] = row end
    T.eq(idx.gaps_mixed.columns, { "c", "d" })
    T.eq(idx.gaps_expr.columns, nil)
    T.eq(idx.gaps_incl.columns, { "c", "d", "b" })
  end)
  P.exec(ctx.source_url, "ALTER EXTENSION plpgsql DROP TABLE keys.ext_owned; DROP SCHEMA keys CASCADE")
  if not ok then error(err, 0) end
end)

-- Plain indexes' definitions are written by tide.catalog.indexdef, not by pg_get_indexdef:
-- every index's text must be the server's, whichever wrote it, over indexes that are plain
-- and indexes one detail away from plain (a collation, an operator class, an order, a
-- parameter, a type without an exact default class), with names that need quotes.
T.test("index definitions written as the server writes them", function(ctx)
  load_fixture(ctx)
  P.exec(ctx.source_url, [[
    CREATE SCHEMA "Idx s";
    CREATE TABLE "Idx s"."T" (id int8, "select" text, "Mixed Col" varchar(20), c "char", n name,
      u uuid, ts timestamptz, d date, b bool, nu numeric, i2 int2, by bytea, ip inet, j jsonb,
      cc text COLLATE "C", arr int[], tv tsvector, p point);
    CREATE UNIQUE INDEX "T_pk" ON "Idx s"."T" (id);
    CREATE INDEX ON "Idx s"."T" ("select", id);
    CREATE INDEX ON "Idx s"."T" ("Mixed Col");
    CREATE INDEX ON "Idx s"."T" (c, n, u, ts, d, b, nu, i2, by, ip, j);
    CREATE INDEX ON "Idx s"."T" (cc);
    CREATE INDEX t_cc_default ON "Idx s"."T" (cc COLLATE "default");
    CREATE INDEX t_text_c ON "Idx s"."T" ("select" COLLATE "C");
    CREATE INDEX t_pattern ON "Idx s"."T" ("select" text_pattern_ops);
    CREATE INDEX t_int_ops ON "Idx s"."T" (id int8_ops);
    CREATE INDEX t_desc ON "Idx s"."T" (id DESC, ts NULLS FIRST);
    CREATE INDEX t_ff ON "Idx s"."T" (d) WITH (fillfactor = 70);
    CREATE UNIQUE INDEX t_incl ON "Idx s"."T" (u) INCLUDE ("Mixed Col", arr);
    CREATE UNIQUE INDEX t_nnd ON "Idx s"."T" (i2) NULLS NOT DISTINCT;
    CREATE INDEX t_partial ON "Idx s"."T" (b) WHERE b;
    CREATE INDEX t_expr ON "Idx s"."T" (lower("select"));
    CREATE INDEX t_hash ON "Idx s"."T" USING hash (id);
    CREATE INDEX t_gin ON "Idx s"."T" USING gin (tv);
    CREATE INDEX t_gist ON "Idx s"."T" USING gist (p);
    CREATE INDEX t_arr ON "Idx s"."T" (arr);
    CREATE TABLE "Idx s".parted (k int, v text, PRIMARY KEY (k)) PARTITION BY RANGE (k);
    CREATE TABLE "Idx s".part1 PARTITION OF "Idx s".parted FOR VALUES FROM (0) TO (10);
    CREATE INDEX ON "Idx s".parted (v);
    CREATE MATERIALIZED VIEW "Idx s".mv AS SELECT id, "select" FROM "Idx s"."T";
    CREATE UNIQUE INDEX ON "Idx s".mv (id);
    CREATE TABLE "Idx s".gone (a int, b text, c int);
    ALTER TABLE "Idx s".gone DROP COLUMN a;
    CREATE INDEX ON "Idx s".gone (c, b);]])
  local ok, err = pcall(function()
    local task = make_task(ctx)
    local source <close> = connect.open(task, "source")
    local asked, fetched = 0, {}
    local cat = catalog.read(recording(source, "pg_get_indexdef(i.oid)", function(param)
      asked = asked + 1
      for oid in param:gmatch("%d+") do fetched[tonumber(oid)] = true end
    end))
    local server = {}
    assert(source:exec("SET search_path = pg_catalog"))   -- (as the read has it)
    for _, r in ipairs(source:query("SELECT indexrelid AS oid, pg_get_indexdef(indexrelid) AS def FROM pg_index")) do
      server[r.oid] = r.def
    end
    assert(source:exec("RESET search_path"))
    local by_name, written = {}, 0
    for _, row in ipairs(cat.indexes) do
      T.eq(row.definition, server[row.oid], "the definition of " .. row.name)
      T.eq(row.quick, nil, "left in " .. row.name)
      by_name[row.name] = row
    end
    -- Which ones this server's statement left to the engine: the plain ones, and those were
    -- written, not asked for (the ones one detail away were asked, in one look-up).
    local plain = assert(source:query([[SELECT ic.relname AS name FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
      JOIN pg_namespace n ON n.oid = ic.relnamespace WHERE n.nspname = 'Idx s' AND ic.relkind = 'i'
      AND ic.relam = (SELECT oid FROM pg_am WHERE amname = 'btree') AND i.indexprs IS NULL AND i.indpred IS NULL AND ic.reloptions IS NULL
      AND NOT i.indnullsnotdistinct AND 0 = ALL (i.indoption::int2[])]]))
    for _, r in ipairs(plain) do if by_name[r.name] then written = written + 1 end end
    T.ok(written >= 10, "plain indexes read: " .. written)
    local names = {}
    for n in pairs(by_name) do names[#names + 1] = n end
    table.sort(names)
    T.ok(by_name.T_pk and by_name.T_select_id_idx and by_name.t_incl and by_name.mv_id_idx, "the cases are read: " .. table.concat(names, " "))
    T.eq(by_name.T_select_id_idx.definition, 'CREATE INDEX "T_select_id_idx" ON "Idx s"."T" USING btree ("select", id)')
    T.eq(asked, 1, "look-ups of the definitions the engine did not write")
    -- quote_all_identifiers (a database's setting): the server quotes every name, the access
    -- method's too, and so must the written text.
    P.exec(ctx.source_admin, "ALTER DATABASE " .. ctx.dbname .. " SET quote_all_identifiers = on")
    local quoted_ok, quoted_err = pcall(function()
      local again <close> = connect.open(task, "source")
      local qcat = catalog.read(again)
      assert(again:exec("SET search_path = pg_catalog"))
      local n = 0
      for _, row in ipairs(qcat.indexes) do
        local want = again:query("SELECT pg_get_indexdef($1::oid) AS d", row.oid)[1].d
        T.eq(row.definition, want, "quote_all_identifiers: the definition of " .. row.name)
        if row.name == "T_pk" then n = n + 1; T.ok(want:find('USING "btree"', 1, true), want) end
      end
      T.eq(n, 1, "T_pk read")
    end)
    P.exec(ctx.source_admin, "ALTER DATABASE " .. ctx.dbname .. " RESET quote_all_identifiers")
    if not quoted_ok then error(quoted_err, 0) end
    -- Written here: plain, on columns of types with an exact default class (or varchar's,
    -- text's). Asked for: plain on the server's side, but a collation, a class or a type (an
    -- array) away; a
    -- column of a collation of its own too (the columns statement names it, not its oid).
    for _, name in ipairs({ "T_pk", "T_select_id_idx", "t_incl", "mv_id_idx", "gone_c_b_idx", "t_int_ops", "T_Mixed Col_idx" }) do
      T.eq(fetched[by_name[name].oid], nil, name .. " asked of the server")
    end
    for _, name in ipairs({ "t_text_c", "t_pattern", "t_cc_default", "T_cc_idx", "t_arr" }) do
      T.eq(fetched[by_name[name].oid], true, name .. " not asked of the server")
    end
  end)
  P.exec(ctx.source_url, 'DROP SCHEMA "Idx s" CASCADE')
  if not ok then error(err, 0) end
end)

-- Key constraints' definitions are written by tide.catalog.indexdef too: every constraint's
-- text must be pg_get_constraintdef's, over keys written here and keys left to the server.
T.test("key constraint definitions written as the server writes them", function(ctx)
  load_fixture(ctx)
  P.exec(ctx.source_url, [[
    CREATE SCHEMA "Con s";
    CREATE TABLE "Con s"."Parent" ("Id" int, "user" text, k2 int, extra text, PRIMARY KEY ("Id", k2));
    ALTER TABLE "Con s"."Parent" ADD CONSTRAINT parent_u UNIQUE ("user") INCLUDE (extra);
    ALTER TABLE "Con s"."Parent" ADD CONSTRAINT parent_nnd UNIQUE NULLS NOT DISTINCT (extra);
    ALTER TABLE "Con s"."Parent" ADD CONSTRAINT parent_def UNIQUE (k2, extra) DEFERRABLE INITIALLY DEFERRED;
    CREATE TABLE "Con s".child (a int, drop_me int, b int, c int, u text, PRIMARY KEY (b));
    ALTER TABLE "Con s".child DROP COLUMN drop_me;
    ALTER TABLE "Con s".child ADD CONSTRAINT child_fk FOREIGN KEY (a, c) REFERENCES "Con s"."Parent" ("Id", k2)
      ON DELETE CASCADE ON UPDATE SET NULL;
    ALTER TABLE "Con s".child ADD CONSTRAINT child_fk_nv FOREIGN KEY (u) REFERENCES "Con s"."Parent" ("user") NOT VALID;
    ALTER TABLE "Con s".child ADD CONSTRAINT child_fk_full FOREIGN KEY (a, c) REFERENCES "Con s"."Parent" ("Id", k2) MATCH FULL;
    ALTER TABLE "Con s".child ADD CONSTRAINT child_fk_cols FOREIGN KEY (a, c) REFERENCES "Con s"."Parent" ("Id", k2)
      ON DELETE SET NULL (a);
    ALTER TABLE "Con s".child ADD CONSTRAINT child_fk_r FOREIGN KEY (a, c) REFERENCES "Con s"."Parent" ("Id", k2)
      ON UPDATE RESTRICT ON DELETE SET DEFAULT DEFERRABLE;
    ALTER TABLE "Con s".child ADD CONSTRAINT child_check CHECK (b > 0);
    CREATE TABLE "Con s".ext_owned (code int PRIMARY KEY);
    ALTER EXTENSION plpgsql ADD TABLE "Con s".ext_owned;
    ALTER TABLE "Con s".child ADD CONSTRAINT child_fk_ext FOREIGN KEY (b) REFERENCES "Con s".ext_owned (code);
    CREATE TABLE "Con s".nnd_pk (a int NOT NULL);
    CREATE UNIQUE INDEX nnd_pk_i ON "Con s".nnd_pk (a) NULLS NOT DISTINCT;
    ALTER TABLE "Con s".nnd_pk ADD CONSTRAINT nnd_pk_key PRIMARY KEY USING INDEX nnd_pk_i;
    CREATE TABLE "Con s".parted (k int, v text, PRIMARY KEY (k)) PARTITION BY RANGE (k);
    CREATE TABLE "Con s".part1 PARTITION OF "Con s".parted FOR VALUES FROM (0) TO (10);]])
  local ok, err = pcall(function()
    local task = make_task(ctx)
    local source <close> = connect.open(task, "source")
    local fetched = {}
    local cat = catalog.read(recording(source, "pg_get_constraintdef(c.oid)", function(param)
      for oid in param:gmatch("%d+") do fetched[tonumber(oid)] = true end
    end))
    local server = {}
    assert(source:exec("SET search_path = pg_catalog"))   -- (as the read has it)
    for _, r in ipairs(source:query("SELECT oid, pg_get_constraintdef(oid) AS def FROM pg_constraint")) do server[r.oid] = r.def end
    assert(source:exec("RESET search_path"))
    local by_name = {}
    for _, row in ipairs(cat.constraints) do
      T.eq(row.definition, server[row.oid], "the definition of " .. row.name)
      T.eq(row.quick, nil, "left in " .. row.name)
      by_name[row.name] = row
    end
    for _, row in ipairs(cat.indexes) do T.eq(row.quick_nulls_not_distinct, nil, "left in " .. row.name) end
    -- Written here, or asked of the server after the statement (a key of an extension's
    -- table, or referencing one: its columns are not read). MATCH FULL and SET NULL (columns)
    -- the statement has the server write.
    for _, name in ipairs({ "Parent_pkey", "parent_u", "parent_nnd", "parent_def", "child_pkey", "child_fk",
                            "child_fk_nv", "child_fk_r", "parted_pkey", "part1_pkey", "child_fk_full", "child_fk_cols",
                            "nnd_pk_key" }) do
      T.ok(by_name[name], name .. " read")
      T.eq(fetched[by_name[name].oid], nil, name .. " asked of the server")
    end
    T.eq(fetched[by_name.child_fk_ext.oid], true, "child_fk_ext asked of the server")
    local n = 0
    for _ in pairs(fetched) do n = n + 1 end
    T.eq(n, 2, "constraints asked of the server (child_fk_ext, ext_owned_pkey)")
  end)
  P.exec(ctx.source_url, [[ALTER EXTENSION plpgsql DROP TABLE "Con s".ext_owned; DROP SCHEMA "Con s" CASCADE]])
  if not ok then error(err, 0) end
end)
