-- Connections and coroutines on real servers: overlap, errors, lost backends, secrets,
-- parameter round-trips.
local T = require "testlib"
local P = require "pg"
local tide = require "tide"

T.test("two coroutines' queries run at the same time", function(ctx)
  local a, b, watch = P.connect(ctx.source_url), P.connect(ctx.source_url), P.connect(ctx.source_url)
  local pids = { a:backend_pid(), b:backend_pid() }
  local ha = tide.spawn(function() return assert(a:query("SELECT pg_sleep(1) AS s, 'a' AS who")) end)
  local hb = tide.spawn(function() return assert(b:query("SELECT pg_sleep(1) AS s, 'b' AS who")) end)
  -- Poll pg_stat_activity until both backends are active in pg_sleep at the same moment.
  local seen_both = false
  local deadline = tide.monotonic() + 5
  while not seen_both and tide.monotonic() < deadline and not (ha:done() and hb:done()) do
    local rows = assert(watch:query(
      "SELECT count(*) AS n FROM pg_stat_activity WHERE pid = ANY($1) AND state = 'active' " ..
      "AND query LIKE 'SELECT pg_sleep%'", pids))
    seen_both = rows[1].n == 2
    if not seen_both then tide.sleep(0.02) end
  end
  T.ok(seen_both, "pg_stat_activity never showed both sleeps active at once")
  T.eq(ha:wait()[1].who, "a")
  T.eq(hb:wait()[1].who, "b")
  a:close(); b:close(); watch:close()
end)

T.test("a server error returns nil and an error with SQLSTATE, message and hint", function(ctx)
  local c = P.connect(ctx.source_url)
  local rows, err = c:query("SELECT * FROM no_such_table")
  T.eq(rows, nil)
  T.eq(err.sqlstate, "42P01")
  T.match(err.message, 'relation "no_such_table" does not exist')
  T.match(tostring(err), "^ERROR 42P01: relation")
  local _, err2 = c:query("SELECT 1/0")
  T.eq(err2.sqlstate, "22012")
  -- the connection stays usable after an error
  T.eq(c:query("SELECT 41 + 1 AS x")[1].x, 42)
  c:close()
end)

T.test("a terminated backend surfaces as an error, not a hang", function(ctx)
  local victim, killer = P.connect(ctx.source_url), P.connect(ctx.source_url)
  local pid = victim:backend_pid()
  local h = tide.spawn(function() return victim:query("SELECT pg_sleep(30)") end)
  local deadline = tide.monotonic() + 5
  repeat
    local r = assert(killer:query("SELECT count(*) AS n FROM pg_stat_activity WHERE pid = $1 AND state = 'active'", pid))
    if r[1].n == 1 then break end
    tide.sleep(0.02)
  until tide.monotonic() > deadline
  assert(killer:query("SELECT pg_terminate_backend($1)", pid))
  local rows, err = h:wait()
  T.eq(rows, nil)
  T.ok(err.sqlstate == "57P01" or err.sqlstate == "08006", "unexpected sqlstate " .. tostring(err.sqlstate))
  local again, err2 = victim:query("SELECT 1")
  T.eq(again, nil, "a lost connection must keep failing")
  T.ok(err2 ~= nil)
  victim:close(); killer:close()
end)

T.test("a wrong password fails clearly and never shows the password", function(ctx)
  local admin = P.connect(ctx.source_admin)
  admin:exec("DROP ROLE IF EXISTS pw_user")
  assert(admin:exec("CREATE ROLE pw_user LOGIN PASSWORD 'right-secret'"))
  local port = ctx.source_url:match(":(%d+)/")
  local url = "postgresql://pw_user:wrong-secret-xyz@127.0.0.1:" .. port .. "/postgres"
  local c, err = tide.connect(url)
  T.eq(c, nil)
  T.match(err.message, "password authentication failed")
  T.match(err.hint, "password")
  T.nomatch(tostring(err), "wrong%-secret")
  T.nomatch(err.conninfo, "wrong%-secret")
  T.match(err.conninfo, "password=%*%*%*")
  -- and the right one works
  local ok = assert(tide.connect("postgresql://pw_user:right-secret@127.0.0.1:" .. port .. "/postgres"))
  T.nomatch(tostring(ok), "right%-secret")
  T.nomatch(ok:conninfo(), "right%-secret")
  ok:close()
  admin:exec("DROP ROLE pw_user")
  admin:close()
end)

T.test("an unreachable port fails with a hint, quickly", function()
  local c, err = tide.connect("host=127.0.0.1 port=1 dbname=x user=u password=hunter2 connect_timeout=5")
  T.eq(c, nil)
  T.eq(err.sqlstate, "08001")
  T.match(err.message, "refused")
  T.match(err.hint, "host and port")
  T.nomatch(tostring(err) .. (err.conninfo or ""), "hunter2")
end)

T.test("a connection attempt that gets no answer times out", function()
  -- A loopback listener that accepts TCP but never answers the startup packet.
  local port_file = os.tmpname()
  local proc = tide.process { "python3", "-c",
    "import socket,sys,time\ns=socket.socket();s.bind(('127.0.0.1',0));s.listen(5)\n" ..
    "open(sys.argv[1],'w').write(str(s.getsockname()[1]))\nc=s.accept()\ntime.sleep(30)", port_file }
  local port
  local deadline = tide.monotonic() + 5
  repeat
    local f = io.open(port_file)
    port = f and f:read("a")
    if f then f:close() end
    if not port or port == "" then tide.sleep(0.02) end
  until (port and port ~= "") or tide.monotonic() > deadline
  local c, err = tide.connect("host=127.0.0.1 port=" .. port .. " dbname=x user=u", { timeout = 0.5 })
  proc:kill(9)
  proc:wait()
  os.remove(port_file)
  T.eq(c, nil)
  T.match(err.message, "timed out")
end)

T.test("parameters and values round-trip: NULL, quotes, unicode, bytea, numbers", function(ctx)
  local c = P.connect(ctx.source_url)
  local bytes = "\0\1\2\255\254'\"\\x" .. string.rep("\200", 10)
  local rows = assert(c:query(
    "SELECT $1::text AS t, $2::text AS q, $3::text AS u, $4::bytea AS b, $5::int8 AS big, " ..
    "$6::float8 AS f, $7::bool AS yes, $8::numeric AS num, $9::text[] AS arr, $10::int AS n",
    nil, "it's a \"quote\" \\ backslash", "ünïcødé ✓ 日本語", tide.bytea(bytes),
    9007199254740993, 0.1, true, "12345678901234567890.123456789", { "a", "b,c", 'd"e', tide.null }, tide.null))
  local r = rows[1]
  T.eq(r.t, tide.null)
  T.eq(r.q, "it's a \"quote\" \\ backslash")
  T.eq(r.u, "ünïcødé ✓ 日本語")
  T.eq(r.b, bytes)
  T.eq(r.big, 9007199254740993)
  T.eq(math.type(r.big), "integer")
  T.eq(r.f, 0.1)
  T.eq(r.yes, true)
  T.eq(r.num, "12345678901234567890.123456789")
  T.eq(r.arr, '{a,"b,c","d\\"e",NULL}')
  T.eq(r.n, tide.null)
  T.eq(rows.columns, { "t", "q", "u", "b", "big", "f", "yes", "num", "arr", "n" })
  local specials = assert(c:query("SELECT 'Infinity'::float8 AS inf, 'NaN'::float8 AS nan, " ..
                                  "'infinity'::timestamptz AS ts, '-0.0'::float8 AS negz"))[1]
  T.eq(specials.inf, math.huge)
  T.ok(specials.nan ~= specials.nan, "NaN")
  T.eq(specials.ts, "infinity")
  c:close()
end)

T.test("exec runs several statements and reports affected rows", function(ctx)
  local c = P.connect(ctx.source_url)
  assert(c:exec("CREATE TABLE ex(a int); INSERT INTO ex VALUES (1),(2),(3)"))
  local n, tag = c:exec("UPDATE ex SET a = a + 1 WHERE a > $1", 1)
  T.eq(n, 2)
  T.eq(tag, "UPDATE 2")
  c:close()
end)

T.test("a spawned coroutine's error reaches its waiter with a traceback", function()
  local h = tide.spawn(function() local x = nil; return x.field end)
  local ok, err = pcall(h.wait, h)
  T.eq(ok, false)
  T.match(err, "attempt to index a nil value")
  T.match(err, "stack traceback")
end)

T.test("an engine call from a plain Lua coroutine is refused with a clear message", function()
  local co = coroutine.wrap(function() tide.sleep(0) end)
  T.raises(co, "must run in an engine coroutine")
end)

T.test("a connection serves one coroutine at a time", function(ctx)
  local c = P.connect(ctx.source_url)
  local h = tide.spawn(function() return c:query("SELECT pg_sleep(0.2)") end)
  tide.yield()
  tide.yield()
  T.raises(function() c:query("SELECT 1") end, "busy")
  h:wait()
  c:close()
end)

T.test("a large result becomes rows a chunk at a time while other coroutines run", function(ctx)
  local core = require "tide.core"
  local c = P.connect(ctx.source_url)
  local sql = "SELECT g AS n, CASE WHEN g % 3 = 0 THEN NULL ELSE 'v' || g END AS t, g % 2 = 0 AS even " ..
              "FROM generate_series(1, 1000000) g"
  for _, method in ipairs { "query", "query_sparse" } do
    -- A ticker that runs whenever the event loop turns and notes whether the conversion had let
    -- the loop turn before the query returned (the counter moves only between chunks).
    local before, done, turns_between = core.rows_yields(), false, 0
    local ticker = tide.spawn(function()
      while not done do
        if core.rows_yields() > before then turns_between = turns_between + 1 end
        tide.yield()
      end
    end)
    local started = tide.monotonic()
    local rows = assert(c[method](c, sql))
    local took = tide.monotonic() - started
    local yields = core.rows_yields() - before
    done = true
    ticker:wait()
    T.eq(#rows, 1000000)
    T.eq(rows.columns, { "n", "t", "even" })
    T.eq(rows[1].n, 1); T.eq(rows[1].t, "v1"); T.eq(rows[1].even, false)
    local null = method == "query" and tide.null or nil
    T.eq(rows[3].t, null)
    T.eq(rows[2048].n, 2048); T.eq(rows[2049].n, 2049); T.eq(rows[2050].t, "v2050"); T.eq(rows[2049].t, null)
    T.eq(rows[999999].t, null); T.eq(rows[999998].t, "v999998")
    T.eq(rows[1000000].n, 1000000); T.eq(rows[1000000].even, true)
    local sum = 0
    for i = 1, #rows do sum = sum + rows[i].n end
    T.eq(sum, 1000000 * 1000001 // 2)
    T.ok(yields >= 1, method .. ": a conversion of 1,000,000 rows never let the loop turn (took " .. took .. " s)")
    T.ok(turns_between >= 1, method .. ": the other coroutine did not run while the rows were converted")
  end
  c:close()
end)

T.test("connections opened together: one refused closes the others and raises its own failure", function(ctx)
  local connect = require "tide.connect"
  local task = tide.task { name = "together", source = ctx.source_url, target = ctx.target_url, migrate = { "schema" } }
  local app = "pgtide-together-" .. tostring(tide.monotonic()):gsub("%D", "")
  local opened = {}
  local function open(side)
    local c = connect.open(task, side, { application_name = app })
    opened[#opened + 1] = c
    return c
  end
  local function count_open()
    local c = P.connect(ctx.source_url)
    local rows = assert(c:query("SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = $1", app))
    c:close()
    return rows[1].n
  end
  -- All succeed: each call's values in the calls' order.
  local got = connect.together({ { open, "source" }, { function() return "a", "b" end }, { open, "source" } })
  T.eq({ got[2][1], got[2][2], got[2].n }, { "a", "b", 2 })
  T.eq(count_open(), 2)
  got[1][1]:close(); got[3][1]:close()
  -- The second call raises (after the others opened): its failure, as raised, and nothing left open.
  local failure = { reason = "refused here" }
  opened = {}
  local ok, err = pcall(connect.together, {
    { open, "source" },
    { function() tide.sleep(0.2); error(failure, 0) end },
    { open, "source" },
    { function() return tide.null end },   -- (a value that cannot be indexed: no close to look for)
  })
  T.eq(ok, false)
  T.ok(err == failure, "the failure is raised as it was raised: " .. tostring(err))
  -- (held here, so that no collection closes them instead)
  T.eq(#opened, 2, "connections the other calls opened")
  for _, c in ipairs(opened) do T.eq(c:status(), "closed", "a connection another call opened") end
  local deadline = tide.monotonic() + 5
  while count_open() > 0 and tide.monotonic() < deadline do tide.sleep(0.02) end
  T.eq(count_open(), 0, "connections left open")
end)
