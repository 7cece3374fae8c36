-- The COPY pump on real servers: data equality, errors from either side, pause/resume,
-- back-pressure with large rows.
local T = require "testlib"
local P = require "pg"
local tide = require "tide.core"

T.test("a table streams from source to target with identical content", function(ctx)
  local s, t = P.connect_both(ctx)
  assert(s:exec([[CREATE TABLE p1 (id int PRIMARY KEY, txt text, n numeric, ts timestamptz, j jsonb, b bytea, arr int[]);
    INSERT INTO p1 SELECT g, 'row ' || g || E'\ttab\nnewline', g * 1.5, '2020-01-01'::timestamptz + g * interval '1 min',
      jsonb_build_object('g', g), decode(md5(g::text), 'hex'), ARRAY[g, g+1]
    FROM generate_series(1, 20000) g;
    INSERT INTO p1 VALUES (0, NULL, 'NaN', 'infinity', 'null', '\x', '{}')]]))
  assert(t:exec("CREATE TABLE p1 (id int PRIMARY KEY, txt text, n numeric, ts timestamptz, j jsonb, b bytea, arr int[])"))
  assert(t:exec("BEGIN"))
  local pump = tide.copy_pump(s, t, "COPY (SELECT * FROM p1) TO STDOUT", "COPY p1 FROM STDIN")
  local stats = assert(pump:wait())
  assert(t:exec("COMMIT"))
  T.eq(stats.rows, 20001)
  T.ok(stats.bytes > 20001 * 20, "bytes counted")
  T.eq(P.fingerprint(t, "p1"), P.fingerprint(s, "p1"))
  s:close(); t:close()
end)

T.test("binary format round-trips too", function(ctx)
  local s, t = P.connect_both(ctx)
  assert(s:exec([[CREATE TABLE p2 (id bigint, f float8, u uuid, iv interval, a text[]);
    INSERT INTO p2 SELECT g, g / 7.0, md5(g::text)::uuid, g * interval '1 sec', ARRAY['x' || g, NULL] FROM generate_series(1, 5000) g]]))
  assert(t:exec("CREATE TABLE p2 (id bigint, f float8, u uuid, iv interval, a text[])"))
  local stats = assert(tide.copy_pump(s, t, "COPY (SELECT * FROM p2) TO STDOUT (FORMAT binary)",
                                      "COPY p2 FROM STDIN (FORMAT binary)"):wait())
  T.eq(stats.rows, 5000)
  T.eq(P.fingerprint(t, "p2"), P.fingerprint(s, "p2"))
  s:close(); t:close()
end)

T.test("a source error (bad filter) fails with side=source and leaves the target usable", function(ctx)
  local s, t = P.connect_both(ctx)
  assert(s:exec("CREATE TABLE p3 (id int)"))
  assert(t:exec("CREATE TABLE p3 (id int)"))
  local ok, err = tide.copy_pump(s, t, "COPY (SELECT * FROM p3 WHERE id >>> 1) TO STDOUT", "COPY p3 FROM STDIN"):wait()
  T.eq(ok, nil)
  T.eq(err.side, "source")
  T.eq(err.sqlstate, "42883")
  T.eq(assert(t:query("SELECT count(*) AS n FROM p3"))[1].n, 0)
  T.eq(assert(s:query("SELECT 1 AS one"))[1].one, 1)
  s:close(); t:close()
end)

T.test("a target error mid-stream stops early with side=target, and the source stays usable", function(ctx)
  local s, t = P.connect_both(ctx)
  assert(s:exec("CREATE TABLE p4 (id int); INSERT INTO p4 SELECT CASE WHEN g = 50 THEN 1 ELSE g END FROM generate_series(1, 300000) g"))
  assert(t:exec("CREATE TABLE p4 (id int PRIMARY KEY)"))
  assert(s:exec("BEGIN ISOLATION LEVEL REPEATABLE READ; SAVEPOINT part"))
  assert(t:exec("BEGIN"))
  local ok, err = tide.copy_pump(s, t, "COPY (SELECT * FROM p4) TO STDOUT", "COPY p4 FROM STDIN"):wait()
  T.eq(ok, nil)
  T.eq(err.side, "target")
  T.eq(err.sqlstate, "23505")
  T.match(err.message, "duplicate key")
  assert(t:exec("ROLLBACK"))
  -- the source transaction survives through its savepoint
  assert(s:exec("ROLLBACK TO SAVEPOINT part"))
  T.eq(assert(s:query("SELECT count(*) AS n FROM p4"))[1].n, 300000)
  assert(s:exec("COMMIT"))
  s:close(); t:close()
end)

T.test("a target table that does not exist fails at once with side=target", function(ctx)
  local s, t = P.connect_both(ctx)
  assert(s:exec("CREATE TABLE p5 (id int); INSERT INTO p5 SELECT generate_series(1, 1000)"))
  local ok, err = tide.copy_pump(s, t, "COPY (SELECT * FROM p5) TO STDOUT", "COPY nosuch FROM STDIN"):wait()
  T.eq(ok, nil)
  T.eq(err.side, "target")
  T.eq(err.sqlstate, "42P01")
  T.eq(assert(s:query("SELECT 1 AS x"))[1].x, 1)
  s:close(); t:close()
end)

T.test("pause holds the stream, resume finishes it", function(ctx)
  local s, t = P.connect_both(ctx)
  assert(s:exec("CREATE TABLE p6 (id int, pad text); INSERT INTO p6 SELECT g, repeat('x', 200) FROM generate_series(1, 200000) g"))
  assert(t:exec("CREATE TABLE p6 (id int, pad text)"))
  local pump = tide.copy_pump(s, t, "COPY (SELECT * FROM p6) TO STDOUT", "COPY p6 FROM STDIN")
  -- wait until rows flow, then pause
  local deadline = tide.monotonic() + 10
  while select(2, pump:stats()) == 0 and tide.monotonic() < deadline do tide.sleep(0.001) end
  pump:pause()
  local _, before = pump:stats()
  tide.sleep(0.3)
  local _, after, finished = pump:stats()
  T.eq(after, before, "no rows may move while paused")
  T.eq(finished, false)
  pump:resume()
  local stats = assert(pump:wait())
  T.eq(stats.rows, 200000)
  T.eq(P.fingerprint(t, "p6"), P.fingerprint(s, "p6"))
  s:close(); t:close()
end)

T.test("a 100 MB value is copied intact", function(ctx)
  local s, t = P.connect_both(ctx)
  assert(s:exec("CREATE TABLE big (id int, v text); ALTER TABLE big ALTER v SET STORAGE EXTERNAL; " ..
                "INSERT INTO big SELECT 1, repeat(md5('x'), 100 * 1024 * 1024 / 32)"))
  assert(t:exec("CREATE TABLE big (id int, v text)"))
  local stats = assert(tide.copy_pump(s, t, "COPY (SELECT * FROM big) TO STDOUT", "COPY big FROM STDIN"):wait())
  T.eq(stats.rows, 1)
  local a = assert(s:query("SELECT length(v) AS l, md5(v) AS m FROM big"))[1]
  local b = assert(t:query("SELECT length(v) AS l, md5(v) AS m FROM big"))[1]
  T.eq(b, a)
  T.eq(a.l, 100 * 1024 * 1024)
  s:close(); t:close()
end)

T.test("a source error mid-stream aborts the target's COPY: no partial table", function(ctx)
  local s, t = P.connect_both(ctx)
  assert(s:exec("CREATE TABLE p7 (id int); INSERT INTO p7 SELECT generate_series(1, 200000)"))
  assert(t:exec("CREATE TABLE p7 (id int)"))
  assert(t:exec("BEGIN"))
  local ok, err = tide.copy_pump(s, t, "COPY (SELECT 1000000 / (150000 - id) FROM p7) TO STDOUT",
                                 "COPY p7 FROM STDIN"):wait()
  T.eq(ok, nil)
  T.eq(err.side, "source")
  T.eq(err.sqlstate, "22012")
  -- the target's transaction is aborted: COMMIT turns into ROLLBACK
  local _, tag = t:exec("COMMIT")
  T.eq(tag, "ROLLBACK")
  T.eq(assert(t:query("SELECT count(*) AS n FROM p7"))[1].n, 0)
  s:close(); t:close()
end)
