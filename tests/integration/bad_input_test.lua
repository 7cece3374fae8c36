-- Mistakes and surprises a DBA meets, through `pgtide run` as they would: a wrong database
-- name, a target user without privileges, a stop condition that raises, a table dropped on the
-- source while the task streams. Each must end in a clear message (or keep going, saying so).
-- The rest of the list lives elsewhere: unreachable host and wrong password (conn_test,
-- cli_test), wal_level (precheck_settings_test), playbook syntax error and unknown key
-- (cli_test), invalid pattern (select_test), rename collision (rename_test), invalid row filter
-- (full_test), a column added while streaming (cdc_conflict_test).
local T = require "testlib"
local P = require "pg"
local tide = require "tide"
local H = require "tidetest"

local ROLE = "bad_input_test_nocreate"

local function write_lsn(path, conn)
  local f = assert(io.open(path, "w"))
  f:write(P.lsn(conn, true), "\n")
  f:close()
end

-- A stop condition reading the LSN to reach from a file; `raise` makes it fail until then.
local function stop_code(path, raise)
  return string.format([[
  stop = function(st)
    local f = io.open(%q)
    if not f then %s end
    local hi, lo = f:read("l"):match("^(%%x+)/(%%x+)$")
    f:close()
    return st.applied >= tonumber(hi, 16) * 4294967296 + tonumber(lo, 16)
  end,]], path, raise and 'error("no stop file yet, ask again later")' or "return false")
end

T.test("a database that does not exist: exit 4, naming the database and the fix", function(ctx)
  for _, side in ipairs({ "source", "target" }) do
    local path = ctx.tmpdir .. "/wrongdb_" .. side .. ".lua"
    local f = assert(io.open(path, "w"))
    f:write(string.format([[return require("tide").task { name = "wrongdb", source = %q, target = %q }]],
      side == "source" and P.with_db(ctx.source_url, "no_such_db") or ctx.source_url,
      side == "target" and P.with_db(ctx.target_url, "no_such_db") or ctx.target_url))
    f:close()
    local code, out = H.run("run " .. path)
    T.eq(code, 4, out)
    T.match(out, "cannot connect to the " .. side)
    T.match(out, 'database "no_such_db" does not exist')
    T.match(out, "hint: check the database name")
    T.match(out, "CREATE DATABASE")
    T.nomatch(out, "running again")
    T.nomatch(out, "internal error")
  end
end)

T.test("a target user without CREATE on the database: the run stops before writing (exit 5)", function(ctx)
  local s, t = P.clean(ctx)
  assert(s:exec("CREATE TABLE items (id int PRIMARY KEY, v text); INSERT INTO items VALUES (1, 'a')"))
  local admin = assert(tide.connect(ctx.target_admin))
  assert(admin:exec(string.format([[DO $$ BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = '%s') THEN DROP OWNED BY %s; DROP ROLE %s; END IF; END $$;
    CREATE ROLE %s LOGIN]], ROLE, ROLE, ROLE, ROLE)))
  local ok, err = pcall(function()
    local path = ctx.tmpdir .. "/nocreate.lua"
    local f = assert(io.open(path, "w"))
    f:write(string.format([[return require("tide").task { name = "nocreate", source = %q, target = %q,
      migrate = { "schema", "full" } }]], ctx.source_url, (ctx.target_url:gsub("//[^@/]+@", "//" .. ROLE .. "@"))))
    f:close()
    local code, out = H.run("run " .. path)
    T.eq(code, 5, out)
    T.match(out, "target_create_privilege")
    T.match(out, "no CREATE privilege on the database")
    T.match(out, "GRANT CREATE ON DATABASE")
    -- Nothing was written: no table, no state schema.
    T.eq(assert(t:query("SELECT to_regclass('public.items') IS NULL AS none"))[1].none, true)
    T.eq(#assert(t:query("SELECT 1 FROM pg_namespace WHERE nspname = 'pgtide'")), 0)
  end)
  assert(admin:exec(string.format("DROP OWNED BY %s; DROP ROLE %s", ROLE, ROLE)))
  admin:close()
  if not ok then error(err, 0) end
  s:close(); t:close()
end)

T.test("a stop condition that raises: the task keeps streaming, says so once, and stops when it holds", function(ctx)
  local s, t = P.clean(ctx)
  assert(s:exec("CREATE TABLE items (id int PRIMARY KEY, v text); INSERT INTO items VALUES (1, 'a')"))
  local stopfile = ctx.tmpdir .. "/raising.stop"
  os.remove(stopfile)
  local pb = H.playbook(ctx, "raising", [[migrate = { "schema", "full", "incremental" }, progress = "plain",
    incremental = { heartbeat_interval = 0.2, release = true },]] .. stop_code(stopfile, true))
  local proc, log = H.start(ctx, "run " .. pb, "raising")
  T.ok(P.poll(60, function()
    return proc:exited() or H.read(log):find("the stop condition raised an error", 1, true)
  end), "the error was never reported: " .. H.read(log))
  T.ok(not proc:exited(), "the task ended on the stop condition's error: " .. H.read(log))
  -- Still streaming: a change made now reaches the target.
  assert(s:exec("INSERT INTO items VALUES (2, 'while the condition fails')"))
  T.ok(P.poll(30, function()
    return #assert(t:query("SELECT 1 FROM items WHERE id = 2")) == 1
  end), "a change made while the condition raised never arrived")
  write_lsn(stopfile, s)
  T.eq(proc:wait(), 0, H.read(log))
  local out = H.read(log)
  T.match(out, "the stop condition raised an error %(still streaming%): .*no stop file yet")
  local _, times = out:gsub("the stop condition raised an error", "")
  T.eq(times, 1, "reported once, not at every tick")
  T.eq(P.fingerprint(t, "items"), P.fingerprint(s, "items"))
  s:close(); t:close()
end)

-- With DDL replication off (incremental.ddl = false): with it on, the DROP is applied on the
-- target (tests/integration/cdc_ddl_test.lua).
T.test("ddl = false: a table dropped on the source while streaming: the others go on; the target keeps it and is told", function(ctx)
  local s, t = P.clean(ctx)
  assert(s:exec("CREATE TABLE kept (id int PRIMARY KEY, v text); CREATE TABLE gone (id int PRIMARY KEY, v text); " ..
                "INSERT INTO kept VALUES (1, 'a'); INSERT INTO gone VALUES (1, 'a')"))
  local stopfile = ctx.tmpdir .. "/dropped.stop"
  os.remove(stopfile)
  local pb = H.playbook(ctx, "dropped", [[migrate = { "schema", "full", "incremental" }, progress = "plain",
    incremental = { heartbeat_interval = 0.2, release = true, ddl = false },]] .. stop_code(stopfile, false))
  local proc, log = H.start(ctx, "run " .. pb, "dropped")
  T.ok(P.poll(60, function() return proc:exited() or H.read(log):find("incremental: started", 1, true) end))
  assert(s:exec("INSERT INTO gone VALUES (2, 'before the drop'); INSERT INTO kept VALUES (2, 'b')"))
  T.ok(P.poll(30, function() return #assert(t:query("SELECT 1 FROM gone WHERE id = 2")) == 1 end))
  assert(s:exec("DROP TABLE gone"))
  assert(s:exec("INSERT INTO kept VALUES (3, 'after the drop'); UPDATE kept SET v = 'z' WHERE id = 1"))
  T.ok(P.poll(30, function()
    return proc:exited() or H.read(log):find("public.gone was dropped on the source", 1, true)
  end), "the drop was never reported: " .. H.read(log))
  write_lsn(stopfile, s)
  T.eq(proc:wait(), 0, H.read(log))
  local out = H.read(log)
  T.match(out, "public%.gone was dropped on the source while streaming")
  T.eq(P.fingerprint(t, "kept"), P.fingerprint(s, "kept"))
  T.eq(#assert(t:query("SELECT 1 FROM gone")), 2, "the target keeps the rows it had at the drop")
  s:close(); t:close()
end)
