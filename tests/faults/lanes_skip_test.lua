-- Parallel apply resuming with applied transactions above its watermark (kill-anywhere seed
-- 13106, docs/reliability.md): the stream restarts at the lanes' watermark, and the source
-- sends again the transactions between it and the end of the listed ranges, which the lanes
-- skip. Their Relation messages still reach every lane (a later transaction may need them),
-- and one of them describes a table as it was before a DDL statement that is applied already:
-- here a column `v` the task renamed to `label`. Resolving that message against the task's map
-- (which says `label`) stopped every run after that point for good, "a column the task does not
-- know". A Relation message is now resolved only when a change needs it.
--
-- The state a kill can leave is made here on purpose: the task's slot is copied before the
-- changes (the copy's confirmed position is before them), the run applies everything and is
-- stopped, the copy takes the slot's place, and the lanes' rows are set to what they would say
-- had the kill come right after the rename's group committed: a watermark before the changes
-- and one range above it that holds them all (every one of them was applied: the rows say less
-- than is true, never more).
local T = require "testlib"
local P = require "pg"
local H = require "tidetest"

T.test("parallel apply resumes below applied transactions whose Relation message predates a renamed column",
  function(ctx)
    local s, t = P.clean(ctx)
    assert(s:exec([[
CREATE TABLE x (id int PRIMARY KEY, v text NOT NULL);
INSERT INTO x SELECT g, 'row ' || g FROM generate_series(1, 10) g;]]))
    local name = "lskip"
    local slot = "pgtide_" .. name
    local stopfile = ctx.tmpdir .. "/" .. name .. ".stop"
    os.remove(stopfile)
    local pb = H.playbook(ctx, name, [[
  migrate = { "schema", "full", "incremental" }, progress = "plain",
  retry = { attempts = 3, max_delay = 0.2 },
  incremental = { heartbeat_interval = 0.2, apply_connections = 2 },
]] .. H.stop_at_file(stopfile))
    local proc, log = H.start(ctx, "run " .. pb, name .. "-1")
    T.ok(P.poll(120, function() return proc:exited() or H.read(log):find("incremental: started", 1, true) end)
         and not proc:exited(), "the first run never streamed: " .. H.read(log))
    -- The slot as it is before the changes.
    assert(s:query("SELECT pg_copy_logical_replication_slot($1, $2)", slot, slot .. "_copy"))
    local from = P.lsn(s)
    assert(s:exec("UPDATE x SET v = v || ' updated' WHERE id <= 5"))             -- its Relation says v
    assert(s:exec("ALTER TABLE x RENAME COLUMN v TO label"))                    -- DDL replication
    assert(s:exec("UPDATE x SET label = label || ' relabeled' WHERE id > 5"))   -- its Relation says label
    assert(s:exec("SET synchronous_commit = on"))
    local upto = P.lsn(s)
    T.ok(P.poll(60, function()
      local r = t:query("SELECT count(*) AS n FROM x WHERE label LIKE '%relabeled'")
      return r and r[1].n == 5
    end), "the first run never applied the changes: " .. H.read(log))
    proc:kill(15)
    proc:wait()
    -- The copy (confirmed before the changes) becomes the task's slot.
    assert(s:query("SELECT pg_drop_replication_slot($1)", slot))
    assert(s:query("SELECT pg_copy_logical_replication_slot($1, $2)", slot .. "_copy", slot))
    assert(s:query("SELECT pg_drop_replication_slot($1)", slot .. "_copy"))
    -- The lanes' rows: the watermark before the changes, one range above it holding them all.
    assert(t:query("UPDATE pgtide.apply_lanes SET watermark = $2::pg_lsn, applied = '{}', upto = $3::pg_lsn " ..
                   "WHERE task = $1", name, from, upto))
    assert(t:query([[INSERT INTO pgtide.apply_lanes (task, lane, watermark, applied, upto)
      VALUES ($1, 0, $2::pg_lsn, ARRAY[$2::pg_lsn, $3::pg_lsn], $3::pg_lsn)
      ON CONFLICT (task, lane) DO UPDATE SET applied = EXCLUDED.applied]], name, from, upto))
    -- The next run streams from there: the three transactions come again and are skipped.
    local proc2, log2 = H.start(ctx, "run " .. pb, name .. "-2")
    T.ok(P.poll(120, function() return proc2:exited() or H.read(log2):find("range(s) above it", 1, true) end),
         "the next run did not resume from the lanes' rows: " .. H.read(log2))
    assert(s:exec("UPDATE x SET label = 'after' WHERE id IN (1, 10)"))
    assert(s:exec("INSERT INTO x VALUES (11, 'new')"))
    H.write_stop(s, stopfile)
    local code = proc2:wait()
    local out = H.read(log2)
    T.eq(code, 0, out)
    T.nomatch(out, "does not know")
    T.match(out, "applying on 2 connection%(s%) from " .. from:gsub("%p", "%%%0") .. ", 1 range%(s%) above it")
    T.eq(P.fingerprint(t, "x"), P.fingerprint(s, "x"), "x: " .. out)
    T.eq(assert(t:query("SELECT count(*) AS n FROM x WHERE label LIKE '%updated' OR label LIKE '%relabeled'"))[1].n, 8,
         "each earlier change once")
    s:close(); t:close()
  end)
