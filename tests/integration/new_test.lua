-- `pgtide new FILE --source URL --target URL [--incremental]`: a commented playbook written
-- from what the source holds, with the prechecks of today as comments, no password in it,
-- loadable by `pgtide plan` and `pgtide check`, and runnable as written.
local T = require "testlib"
local P = require "pg"
local H = require "tidetest"

local SECRET_S, SECRET_T = "Src-pw-93xQ", "Tgt pw 'k7"

local function quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- The source URL with a password in its user info, the target as key=value pairs with a
-- quoted password (the test clusters trust local connections: the passwords are not needed).
local function urls(ctx)
  local src = ctx.source_url:gsub("^(postgres[ql]*://)([^@/:]+)@", "%1%2:" .. SECRET_S .. "@")
  assert(src ~= ctx.source_url, "the source URL has no user to attach a password to: " .. ctx.source_url)
  local user, host, port, db = ctx.target_url:match("^postgres[ql]*://([^@:]+)@([^:/]+):(%d+)/([^?]+)")
  assert(user, ctx.target_url)
  local tgt = string.format("host=%s port=%s user=%s password='%s' dbname=%s", host, port, user,
                            SECRET_T:gsub("'", "\\'"), db)
  return src, tgt
end

local function setup(ctx)
  local s, t = P.clean(ctx)
  assert(s:exec([[DROP SCHEMA IF EXISTS "odd.schema" CASCADE; DROP SCHEMA IF EXISTS billing CASCADE;
    CREATE TABLE orders (id int PRIMARY KEY, note text);
    INSERT INTO orders SELECT g, 'order ' || g FROM generate_series(1, 4000) g;
    CREATE TABLE event_log (at timestamptz, what text);
    INSERT INTO event_log SELECT now(), 'e' FROM generate_series(1, 30) g;
    CREATE SCHEMA billing;
    CREATE TABLE billing.invoices (id int, total numeric);
    ALTER TABLE billing.invoices REPLICA IDENTITY FULL;
    CREATE SCHEMA "odd.schema";
    CREATE TABLE "odd.schema"."Mixed Case" (id int PRIMARY KEY);
    INSERT INTO "odd.schema"."Mixed Case" VALUES (1), (2);
    ANALYZE]]))
  assert(t:exec([[DROP SCHEMA IF EXISTS "odd.schema" CASCADE; DROP SCHEMA IF EXISTS billing CASCADE]]))
  return s, t
end

T.test("an incremental playbook: tables, keys, prechecks as comments, no password; plan and check load it", function(ctx)
  local s, t = setup(ctx)
  local src, tgt = urls(ctx)
  local file = ctx.tmpdir .. "/new_incr.lua"
  os.remove(file)
  local code, out = H.run("new " .. file .. " --source " .. quote(src) .. " --target " .. quote(tgt) .. " --incremental")
  T.eq(code, 0, out)
  T.match(out, "wrote .*new_incr%.lua: task new_incr, 4 table%(s%) in 3 schema%(s%)")
  T.nomatch(out, SECRET_S); T.nomatch(out, "Tgt pw")
  local text = H.read(file)
  -- no password anywhere, and the reason why
  T.nomatch(text, SECRET_S); T.nomatch(text, "Tgt pw"); T.nomatch(text, "k7")
  T.match(text, "~/%.pgpass")
  T.match(text, "PGPASSWORD")
  -- the phases, the stop condition
  T.match(text, '\n  migrate = { "schema", "full", "incremental" },')
  T.match(text, '\n  stop = tide%.when { lag_below = "1s", for_at_least = "30s" },')
  -- the tables with their sizes, estimated rows and keys
  T.match(text, "%-%- +public%.orders +[%d%.]+ [kM]B +~4000 rows +primary key\n")
  T.match(text, "%-%- +public%.event_log +[%d%.]+ [kM]?B +~30 rows +NO primary key")
  T.match(text, "%-%- +billing%.invoices .* no primary key, replica identity full\n")
  T.match(text, "%-%- +odd%.schema%.Mixed Case ")
  -- select and rename filled with the schemas found (the dot in a schema's name escaped)
  T.match(text, '\n      "public", +%-%- 2 table%(s%)')
  T.match(text, '\n      "billing", +%-%- 1 table%(s%)')
  T.match(text, '\n      "odd\\\\%.schema", +%-%- 1 table%(s%)')
  T.match(text, '\n      %-%- %["odd%.schema"%] = "odd%.schema",')
  -- the precheck that fails today, with its fix
  T.match(text, "FAIL table_without_key")
  T.match(text, "public%.event_log: no primary key")
  T.match(text, "fix: ALTER TABLE public%.event_log ADD PRIMARY KEY")
  -- The written playbook loads: plan works on it (the target is empty: runnable) and lists
  -- every table; check runs and fails on the same precheck.
  code, out = H.run("plan " .. file)
  T.eq(code, 0, out)
  for _, name in ipairs({ "public.orders", "public.event_log", "billing.invoices", '"odd.schema"."Mixed Case"' }) do
    T.match(out, name:gsub("%p", "%%%0"))
  end
  code, out = H.run("check " .. file)
  T.eq(code, 5, out)
  T.match(out, "%[table_without_key%]")
  T.match(out, "public%.event_log")
  T.nomatch(out, "internal error")
  s:close(); t:close()
end)

T.test("a schema+full playbook runs as written and the target ends equal to the source", function(ctx)
  local s, t = setup(ctx)
  local file = ctx.tmpdir .. "/new_full.lua"
  os.remove(file)
  local code, out = H.run("new " .. file .. " --source " .. quote(ctx.source_url) .. " --target " ..
                          quote(ctx.target_url) .. " --name moved")
  T.eq(code, 0, out)
  local text = H.read(file)
  T.match(text, '\n  name    = "moved",')
  T.match(text, '\n  migrate = { "schema", "full" },')
  T.nomatch(text, "\n  stop = ")
  T.match(text, "nothing fails or warns")
  code, out = H.run("run " .. file)
  T.eq(code, 0, out)
  for _, rel in ipairs({ "orders", "event_log", "billing.invoices", '"odd.schema"."Mixed Case"' }) do
    T.eq(P.fingerprint(t, rel), P.fingerprint(s, rel), rel)
  end
  s:close(); t:close()
end)

T.test("an existing FILE is never overwritten (exit 2); an unreachable source writes nothing (exit 4)", function(ctx)
  local file = ctx.tmpdir .. "/new_exists.lua"
  local f = assert(io.open(file, "w")); f:write("-- mine\n"); f:close()
  local code, out = H.run("new " .. file .. " --source " .. quote(ctx.source_url) .. " --target " .. quote(ctx.target_url))
  T.eq(code, 2, out)
  T.match(out, "already exists")
  T.eq(H.read(file), "-- mine\n")
  local missing = ctx.tmpdir .. "/new_unreachable.lua"
  os.remove(missing)
  code, out = H.run("new " .. missing .. " --source " .. quote("host=127.0.0.1 port=1 user=x password=" .. SECRET_S) ..
                    " --target " .. quote(ctx.target_url))
  T.eq(code, 4, out)
  T.match(out, "cannot connect to the source")
  T.nomatch(out, SECRET_S)
  T.eq(io.open(missing), nil, "no file written")
  code, out = H.run("new " .. missing .. " --source " .. quote(ctx.source_url))
  T.eq(code, 2, out)
  T.match(out, "%-%-target")
end)
