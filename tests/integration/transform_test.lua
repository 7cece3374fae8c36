-- on.row: one Lua function over a table's rows in every phase. The full load sends the table's
-- rows through it (text COPY, engine/pg/copy_rows.c); the stream sends each insert's and
-- update's new row through it (tide.cdc), so copied and streamed rows end up alike: edited
-- values, dropped rows (an update that drops a row deletes it; one that brings a dropped row
-- back inserts it whole), out-of-line values kept. Mistakes in the function stop the task
-- with a message that names the table and the fix.
local T = require "testlib"
local P = require "pg"
local H = require "tidetest"

local SETUP = [[
DROP TABLE IF EXISTS people, plain CASCADE;
CREATE TABLE people (id int PRIMARY KEY, email text NOT NULL, status text NOT NULL, note text, big text, tags text[]);
ALTER TABLE people ALTER COLUMN big SET STORAGE EXTERNAL;
INSERT INTO people
SELECT g, 'User' || g || '@Example.COM', CASE WHEN g % 7 = 0 THEN 'spam' ELSE 'ok' END,
       CASE WHEN g % 3 = 0 THEN NULL ELSE E'tab\there, line\nbreak, back\\slash, ünï ' || g END,
       CASE WHEN g IN (5, 14) THEN repeat(md5(g::text), 200) END, ARRAY['a' || g, E'q"\\x']
FROM generate_series(1, 60) g;
CREATE TABLE plain (id int PRIMARY KEY, v text);
INSERT INTO plain SELECT g, 'v' || g FROM generate_series(1, 20) g;
]]

-- What the target must hold, written in SQL by hand from the function below.
local EXPECTED = [[(SELECT id, lower(email) AS email, status, coalesce(note, '(none)') AS note, big, tags
                    FROM people WHERE status <> 'spam')]]

local FN = [[function(r)
      if r.status == "spam" then return false end
      r.email = r.email:lower()
      if r.note == tide.null then r.note = "(none)" end
    end]]

T.test("on.row edits and drops rows alike in the full load and the stream", function(ctx)
  P.clean(ctx)
  local src, tgt = P.connect_both(ctx)
  assert(src:exec(SETUP))
  local done = ctx.tmpdir .. "/transform.done"
  os.remove(done)
  local pb = H.playbook(ctx, "transform", string.format([[
  migrate = { "schema", "full", "incremental" },
  progress = "plain",
  incremental = { release = true, heartbeat_interval = 0.2 },
  stop = tide.when { lag_below = "1s", for_at_least = "0.5s", file_exists = %q },
  on = { row = { ["public.people"] = %s } },
]], done, FN))
  local proc, log = H.start(ctx, "run " .. pb, "transform")
  P.wait_for("the stream", function() return H.read(log):find("incremental: started", 1, true) or proc:exited() end, 60)
  T.ok(not proc:exited(), H.read(log))
  -- Copied rows went through the function.
  T.eq(P.fingerprint(tgt, "people"), P.fingerprint(src, EXPECTED), "the full load's rows")
  for _, stmt in ipairs({
    "INSERT INTO people VALUES (100, 'New@X.Org', 'ok', NULL, NULL, '{}'), (101, 'Bad@X.Org', 'spam', 'n', NULL, NULL)",
    "UPDATE people SET email = 'Changed@X.ORG' WHERE id = 1",          -- edited again
    "UPDATE people SET status = 'spam' WHERE id = 2",                  -- dropped now: deleted
    "UPDATE people SET status = 'ok' WHERE id = 7",                    -- kept now: inserted whole
    "UPDATE people SET note = 'x' WHERE id = 5",                       -- big unchanged, kept
    "UPDATE people SET note = NULL WHERE id = 4",
    "UPDATE people SET id = 200 WHERE id = 8",                          -- a new key, kept
    "DELETE FROM people WHERE id IN (10, 21)",                          -- one kept, one dropped
    "BEGIN; UPDATE people SET status = 'spam' WHERE id = 11; UPDATE people SET status = 'ok', email = 'A@B' WHERE id = 11; COMMIT",
    "INSERT INTO plain VALUES (21, 'streamed')",
  }) do assert(src:exec(stmt)) end
  local f = assert(io.open(done, "w")); f:close()
  T.eq(proc:wait(), 0, H.read(log))
  T.eq(P.fingerprint(tgt, "people"), P.fingerprint(src, EXPECTED), "copied and streamed rows alike")
  T.eq(assert(tgt:query("SELECT length(big) AS n FROM people WHERE id = 5"))[1].n, 6400, "big value kept")
  T.eq(P.fingerprint(tgt, "plain"), P.fingerprint(src, "plain"), "a table without on.row is untouched")
  -- verify passes the source's rows through the same function
  local code, out = H.run("verify " .. pb)
  T.eq(code, 0, out)
  assert(tgt:exec("UPDATE people SET email = 'Upper@Case' WHERE id = 1"))
  code, out = H.run("verify " .. pb)
  T.eq(code, 6, out)
  T.match(out, "public%.people")
  src:close(); tgt:close()
end)

T.test("on.row mistakes stop the task, naming the table and the fix", function(ctx)
  local cases = {
    { fn = [[function(r) r.id = tostring(tonumber(r.id) + 1000) end]], want = "changed key column id" },
    { fn = [[function(r) r.emial = "x" end]], want = "set emial, which is not a column of the table" },
    { fn = [[function(r) r.note = nil end]], want = "column note has no value %(nil%); set tide.null for NULL" },
    { fn = [[function(r) return 42 end]], want = "returned a number: return the row" },
    { fn = [[function(r) error("boom") end]], want = "on.row for public.people failed: .*boom" },
  }
  for i, c in ipairs(cases) do
    P.clean(ctx)
    local src = P.connect(ctx.source_url)
    assert(src:exec(SETUP))
    src:close()
    local pb = H.playbook(ctx, "tfbad" .. i, string.format([[
  migrate = { "schema", "full" },
  on = { row = { ["public.people"] = %s } },
]], c.fn))
    local code, out = H.run("run " .. pb)
    T.eq(code, 1, out)
    T.match(out, c.want)
    T.match(out, "public%.people")
    T.nomatch(out, "traceback")
  end
  local pb = H.playbook(ctx, "tfunknown", [[
  migrate = { "schema", "full" },
  on = { row = { ["public.nope"] = function(r) return r end } },
]])
  local code, out = H.run("plan " .. pb)
  T.ne(code, 0, out)
  T.match(out, 'on%.row%["public%.nope"%] names no selected table')
  -- Said by the plan, before anything is written: rows of a referencing table that a dropped
  -- row would orphan (a warning), and a table the stream could not find rows of (an error).
  local src = P.connect(ctx.source_url)
  assert(src:exec([[CREATE TABLE visits (id int PRIMARY KEY, person_id int REFERENCES people);
                    CREATE TABLE nokey (a int, b text); ALTER TABLE nokey REPLICA IDENTITY FULL]]))
  src:close()
  pb = H.playbook(ctx, "tfplan", [[
  migrate = { "schema", "full", "incremental" },
  on = { row = { ["public.people"] = function(r) return r.status ~= "spam" end,
                 ["public.nokey"] = function(r) return r end } },
]])
  code, out = H.run("plan " .. pb)
  T.ne(code, 0, out)
  T.match(out, "public%.people: rows its on%.row function drops may leave rows of public%.visits pointing nowhere")
  T.match(out, 'on%.row%["public%.nokey"%]: public%.nokey has no unique key, so the stream cannot find')
end)

T.test("on.row: a number computed in Lua keeps every digit it has (not Lua's 14-digit text)", function(ctx)
  P.clean(ctx)
  local src, tgt = P.connect_both(ctx)
  assert(src:exec([[DROP TABLE IF EXISTS prices; CREATE TABLE prices (id int PRIMARY KEY, amount numeric);
                    INSERT INTO prices VALUES (1, 123456789012345.5), (2, 0.25)]]))
  local pb = H.playbook(ctx, "tfnum", [[
  migrate = { "schema", "full" },
  on = { row = { ["public.prices"] = function(r) r.amount = tonumber(r.amount) * 2 end } },
]])
  local code, out = H.run("run " .. pb)
  T.eq(code, 0, out)
  local rows = assert(tgt:query("SELECT id, amount::text AS a FROM prices ORDER BY id"))
  T.eq({ rows[1].a, rows[2].a }, { "246913578024691", "0.5" })
  src:close(); tgt:close()
end)
