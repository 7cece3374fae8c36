-- A source database in another encoding than the target's (LATIN1 into UTF8): the full load's
-- COPY and the change stream both have the source convert its text to the target's encoding,
-- so every character arrives as itself (none stored as the bytes of another).
local T = require "testlib"
local P = require "pg"
local H = require "tidetest"
local tide = require "tide"

local WORDS = { "café", "Straße", "£ 5", "naïve", "ÆØÅ", "plain" }

T.test("a LATIN1 source into a UTF8 target: the full load and the stream convert every character", function(ctx)
  local sa, ta = assert(tide.connect(ctx.source_admin)), assert(tide.connect(ctx.target_admin))
  assert(sa:exec("DROP DATABASE IF EXISTS enc_src WITH (FORCE)"))
  assert(ta:exec("DROP DATABASE IF EXISTS enc_tgt WITH (FORCE)"))
  assert(sa:exec("CREATE DATABASE enc_src ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"))
  assert(ta:exec("CREATE DATABASE enc_tgt ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"))
  sa:close(); ta:close()
  local src_url, tgt_url = P.with_db(ctx.source_admin, "enc_src"), P.with_db(ctx.target_admin, "enc_tgt")
  local src = assert(tide.connect(src_url, { client_encoding = "UTF8" }))
  assert(src:exec("CREATE TABLE words (id int PRIMARY KEY, w text, c char(8))"))
  for i, w in ipairs(WORDS) do assert(src:query("INSERT INTO words VALUES ($1, $2, $3)", i, w, w)) end
  local done = ctx.tmpdir .. "/enc.done"
  os.remove(done)
  local pb = ctx.tmpdir .. "/enc.lua"
  local f = assert(io.open(pb, "w"))
  f:write(string.format([[
local tide = require "tide"
return tide.task {
  name = "enc", source = %q, target = %q,
  migrate = { "schema", "full", "incremental" }, progress = "plain",
  incremental = { release = true, heartbeat_interval = 0.2 },
  stop = tide.when { lag_below = "1s", for_at_least = "0.5s", file_exists = %q },
}
]], src_url, tgt_url, done))
  f:close()
  local proc, log = H.start(ctx, "run " .. pb, "enc")
  P.wait_for("the stream", function() return H.read(log):find("incremental: started", 1, true) or proc:exited() end, 60)
  T.ok(not proc:exited(), H.read(log))
  assert(src:query("INSERT INTO words VALUES (100, $1, $2)", "streamed é ß", "é ß"))
  assert(src:query("UPDATE words SET w = w || ' ü' WHERE id = 1"))
  local fd = assert(io.open(done, "w")); fd:close()
  T.eq(proc:wait(), 0, H.read(log))
  local tgt = assert(tide.connect(tgt_url, { client_encoding = "UTF8" }))
  local a = assert(src:query("SELECT id, w, c FROM words ORDER BY id"))
  local b = assert(tgt:query("SELECT id, w, c FROM words ORDER BY id"))
  T.eq(#b, #a)
  for i = 1, #a do T.eq({ b[i].id, b[i].w, b[i].c }, { a[i].id, a[i].w, a[i].c }) end
  T.eq(b[1].w, "café ü")
  T.eq(assert(tgt:query("SELECT length(w) AS n FROM words WHERE id = 2"))[1].n, 6, "Straße is 6 characters, not 7")
  src:close(); tgt:close()
end)
