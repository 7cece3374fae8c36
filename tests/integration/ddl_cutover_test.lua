-- A cutover after DDL replication changed tables while the task streamed: the verification
-- and the sequences work from the catalogs as they are at the cutover (a table created, a
-- column renamed, a table dropped), not from the plan the run started with.
local T = require "testlib"
local P = require "pg"
local H = require "tidetest"
local tide = require "tide"

local function unfence(ctx)
  local c = assert(tide.connect(ctx.source_url))
  local db = assert(c:query("SELECT current_database() AS d"))[1].d
  assert(c:exec("SET default_transaction_read_only = off"))
  assert(c:exec("ALTER DATABASE " .. c:quote_ident(db) .. " RESET default_transaction_read_only"))
  c:close()
end

T.test("pgtide cutover after a table created, a column renamed and a table dropped while streaming", function(ctx)
  unfence(ctx)
  local src, tgt = P.clean(ctx)
  assert(src:exec([[CREATE TABLE items (id int PRIMARY KEY, v text);
                    INSERT INTO items SELECT g, 'v' || g FROM generate_series(1, 50) g;
                    CREATE TABLE doomed (id int PRIMARY KEY);]]))
  local pb = H.playbook(ctx, "ddlcut", string.format([[
  migrate = { "schema", "full", "incremental" }, progress = "plain",
  incremental = { release = true, heartbeat_interval = 0.2 },
  stop = tide.when { file_exists = %q },
  cutover = { verify = "checksums" },
]], ctx.tmpdir .. "/ddlcut.never"))
  local proc, log = H.start(ctx, "run " .. pb, "ddlcut")
  local ok, err = pcall(function()
    P.wait_for("the stream", function() return H.read(log):find("incremental: started", 1, true) or proc:exited() end, 60)
    T.ok(not proc:exited(), H.read(log))
    assert(src:exec([[CREATE TABLE fresh (id serial PRIMARY KEY, note text);
                      INSERT INTO fresh (note) SELECT 'n' || g FROM generate_series(1, 10) g;
                      ALTER TABLE items RENAME COLUMN v TO label;
                      INSERT INTO items VALUES (51, 'after the rename');
                      DROP TABLE doomed;]]))
    P.wait_for("the new table's rows on the target", function()
      local r = tgt:query("SELECT count(*) AS n FROM fresh")
      return r and r[1].n == 10
    end, 30)
    local code, out = H.run("cutover " .. pb)
    T.eq(code, 0, out .. H.read(log))
    T.match(out, "cutover done: write downtime")
    T.eq(proc:wait(), 0, H.read(log))
  end)
  if not proc:exited() then proc:kill(9); proc:wait() end
  unfence(ctx)
  if not ok then error(err, 0) end
  src:close()
  src = P.connect(ctx.source_url)
  P.same(src, tgt, "items")
  P.same(src, tgt, "fresh")
  local seq = assert(src:query("SELECT last_value AS v FROM fresh_id_seq"))[1].v
  T.ok(assert(tgt:query("SELECT last_value AS v FROM fresh_id_seq"))[1].v >= seq,
       "the sequence of a table created while streaming was brought across")
  T.eq(assert(tgt:query("SELECT to_regclass('public.doomed') IS NULL AS gone"))[1].gone, true)
  src:close(); tgt:close()
end)
