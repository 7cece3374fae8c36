-- `pgtide verify` and tide.verify on real servers: identical pairs pass; a changed value, a
-- missing row, an extra row, a changed NULL (and NULL against ''), a change inside a TOASTed
-- value and a changed sequence are each found and located by key; renames, column subsets and
-- row filters compare correctly; sampling, time limits, the consistent snapshot, the cutover
-- hook. Each case works in its own schema, created the same way on both sides.
local T = require "testlib"
local tide = require "tide"
local verify = require "tide.verify"
local json = require "tide.json"
local failure = require "tide.failure"

local PGTIDE = os.getenv("PGTIDE") or "build/pgtide"

local ALL_TYPES = [[
CREATE SCHEMA same;
CREATE TABLE same.items (id bigint PRIMARY KEY, t text, n numeric, f float8, r real, ts timestamptz,
  d date, iv interval, b bytea, j jsonb, arr text[], flag bool, m money, big text);
INSERT INTO same.items SELECT g, CASE WHEN g % 7 = 0 THEN NULL WHEN g % 11 = 0 THEN '' ELSE 'row, "' || g || E'"\n' END,
  g / 3.0, CASE WHEN g = 1 THEN 'NaN' WHEN g = 2 THEN '-Infinity' WHEN g = 3 THEN '-0' ELSE g / 7.0 END, g / 3.0,
  '2024-03-01 12:00:00+00'::timestamptz + g * interval '1 hour', date '2024-01-01' + g, g * interval '61 seconds',
  decode(md5(g::text), 'hex'), jsonb_build_object('g', g, 'nested', jsonb_build_array(g, NULL)),
  ARRAY['a' || g, NULL, ''], g % 2 = 0, g, CASE WHEN g % 500 = 0 THEN repeat(md5(g::text), 400) END
FROM generate_series(1, 3000) g;
CREATE TABLE same.pairs (region text, seq int, note text, PRIMARY KEY (region, seq));
INSERT INTO same.pairs SELECT 'Region ' || (g % 13), g, 'n' || g FROM generate_series(1, 2000) g;
CREATE TABLE same.keyless (a int, b text);
INSERT INTO same.keyless SELECT g % 10, 'dup' FROM generate_series(1, 100) g;
CREATE SEQUENCE same.counter;
SELECT setval('same.counter', 41);
]]

local CHANGES = [[
CREATE SCHEMA changes;
CREATE TABLE changes.orders (id int PRIMARY KEY, customer text, amount numeric, note text);
INSERT INTO changes.orders SELECT g, 'c' || (g % 97), g * 1.25, CASE WHEN g % 3 = 0 THEN NULL ELSE 'note ' || g END
FROM generate_series(1, 20000) g;
CREATE TABLE changes.lines (region text, line int, qty int, PRIMARY KEY (region, line));
INSERT INTO changes.lines SELECT 'R' || (g % 17), g, g FROM generate_series(1, 6000) g;
ANALYZE changes.orders, changes.lines;
]]
local CHANGED = [[
UPDATE changes.orders SET amount = amount + 0.01 WHERE id = 777;
DELETE FROM changes.orders WHERE id = 15000;
INSERT INTO changes.orders VALUES (25000, 'late', 1, NULL);
UPDATE changes.lines SET qty = -1 WHERE region = 'R3' AND line = 3046;
DELETE FROM changes.lines WHERE region = 'R0' AND line = 17;
INSERT INTO changes.lines VALUES ('R99', 1, 1)]]

local NULLS = [[
CREATE SCHEMA nulls;
CREATE TABLE nulls.t (id int PRIMARY KEY, a text, b text);
INSERT INTO nulls.t SELECT g, 'a' || g, CASE WHEN g % 2 = 0 THEN NULL ELSE '' END FROM generate_series(1, 1000) g]]
local NULLS_CHANGED = [[
UPDATE nulls.t SET a = NULL WHERE id = 10;
UPDATE nulls.t SET b = '' WHERE id = 20;      -- NULL on the source
UPDATE nulls.t SET b = NULL WHERE id = 31;    -- '' on the source
]]

-- Run `both` on source and target, then the side-specific SQL.
local function setup(ctx, both, source_only, target_only)
  local extras = { source = source_only, target = target_only }
  for _, side in ipairs({ "source", "target" }) do
    local extra = extras[side]
    local c = assert(tide.connect(ctx[side .. "_url"]))
    assert(c:exec(both))
    if extra then assert(c:exec(extra)) end
    c:close()
  end
end

-- Schemas that several cases read are made once, by whichever case runs first.
local made = {}
local function once(ctx, name, ...)
  if made[name] then return end
  setup(ctx, ...)
  made[name] = true
end

local function task(ctx, schema, extra)
  local def = { name = "verify-test", source = ctx.source_url, target = ctx.target_url,
                select = { include = { schema .. ".*" } } }
  for k, v in pairs(extra or {}) do def[k] = v end
  return tide.task(def)
end

local function run(ctx, schema, extra, opts)
  if schema == "same" then once(ctx, "same", ALL_TYPES) end
  if schema == "changes" then once(ctx, "changes", CHANGES, nil, CHANGED) end
  if schema == "nulls" then once(ctx, "nulls", NULLS, nil, NULLS_CHANGED) end
  return verify.run(task(ctx, schema, extra), opts)
end

local function result_for(report, name)
  for _, r in ipairs(report.tables) do
    if r.source.schema .. "." .. r.source.name == name then return r end
  end
  error("no result for " .. name)
end

-- { "different id=777", ... } for easy comparison
local function located(result)
  local out = {}
  for i, d in ipairs(result.differences) do
    local parts = {}
    for j, col in ipairs(d.columns) do parts[j] = col .. "=" .. d.key[col] end
    out[i] = d.kind .. " " .. table.concat(parts, ",")
  end
  return out
end

-- A playbook file selecting `schema`.* (or the Lua text `select` for the select key).
local function write_playbook(ctx, file, schema, body, select)
  local path = ctx.tmpdir .. "/" .. file
  local f = assert(io.open(path, "w"))
  f:write('local tide = require "tide"\nreturn tide.task {\n  name = "verify-cli",\n',
    "  source = ", string.format("%q", ctx.source_url), ",\n  target = ", string.format("%q", ctx.target_url), ",\n",
    "  select = ", select or ('{ include = { "' .. schema .. '.*" } }'), ",\n", body or "", "}\n")
  f:close()
  return path
end

T.test("an identical pair passes, whatever the target's session defaults", function(ctx)
  once(ctx, "same", ALL_TYPES, nil, "ALTER DATABASE " .. ctx.dbname .. " SET TimeZone = 'Asia/Tokyo'; " ..
                             "ALTER DATABASE " .. ctx.dbname .. " SET lc_monetary = 'C.utf8'")
  local report = run(ctx, "same")
  T.ok(report.ok, "identical pair must match")
  T.eq(report.status, "match")
  T.eq(#report.tables, 3)
  T.eq(result_for(report, "same.items").source_rows, 3000)
  T.eq(result_for(report, "same.items").target_rows, 3000)
  T.eq(result_for(report, "same.keyless").status, "match")
  T.eq(#report.sequences, 1)
  T.eq(report.sequences[1].status, "match")
  T.eq(report.sequences[1].source_next, 42)

  local code, out = T.sh(PGTIDE .. " verify " .. write_playbook(ctx, "same.lua", "same"))
  T.eq(code, 0, out)
  T.match(out, "same%.items%s+3000%s+3000%s+match")
  T.match(out, "OK: 3 of 3 table")
end)

T.test("a changed value, a missing row and an extra row are located by key", function(ctx)
  once(ctx, "changes", CHANGES, nil, CHANGED)
  local report = run(ctx, "changes")
  T.eq(report.ok, false)
  T.eq(report.status, "different")
  local orders = result_for(report, "changes.orders")
  T.eq(orders.status, "different")
  T.eq(orders.source_rows, 20000)
  T.eq(orders.target_rows, 20000)
  T.eq(located(orders), { "different id=777", "missing id=15000", "extra id=25000" })
  T.ok(orders.chunks > 3, "the differences were found by descending into chunks, not by reading the table")
  local lines = result_for(report, "changes.lines")
  local found = located(lines)
  table.sort(found)
  T.eq(found, { "different region=R3,line=3046", "extra region=R99,line=1", "missing region=R0,line=17" })

  local path = write_playbook(ctx, "changes.lua", "changes")
  local code, out = T.sh(PGTIDE .. " verify " .. path)
  T.eq(code, 6, out)
  T.match(out, "different%s+id=777\n%s+amount: '971.25' on source, '971.26' on target\n")
  T.match(out, "missing on target%s+id=15000")
  T.match(out, "extra on target%s+id=25000")
  T.match(out, "DIFFERENCES")
  code, out = T.sh(PGTIDE .. " verify " .. path .. " --json 2>/dev/null")
  T.eq(code, 6)
  local doc = json.decode(out)
  T.eq(doc.status, "different")
  for _, t in ipairs(doc.tables) do
    if t.source.name == "orders" then
      T.eq(t.differences[1], { kind = "different", key = { id = "777" },
        changed = { { column = "amount", source_column = "amount", source = "'971.25'", target = "'971.26'" } } })
      T.eq(t.differences[2], { kind = "missing", key = { id = "15000" } })
      T.eq(t.counts, { missing = 1, extra = 1, different = 1 })
    end
  end
end)

T.test("integer keys spread over the whole bigint range are cut without overflow", function(ctx)
  setup(ctx, [[
    CREATE SCHEMA wide;
    CREATE TABLE wide.t (id bigint PRIMARY KEY, v text);
    INSERT INTO wide.t SELECT g * 9000000000000000, 'v' || g FROM generate_series(-1024, 1024) g;
    INSERT INTO wide.t VALUES (-9223372036854775808, 'min'), (9223372036854775807, 'max')]],
    nil, "UPDATE wide.t SET v = 'changed' WHERE id IN (4500000000000000000, 9223372036854775807)")
  local report = run(ctx, "wide")
  T.eq(located(report.tables[1]), { "different id=4500000000000000000", "different id=9223372036854775807" })
end)

T.test("a limit on listed differences, and the list says it was cut", function(ctx)
  local report = run(ctx, "changes", nil, { max_differences = 2, tables = { "changes.orders" } })
  local orders = result_for(report, "changes.orders")
  T.eq(#orders.differences, 2)
  T.eq(orders.truncated, true)
end)

T.test("NULL against a value, and NULL against an empty string, are different rows", function(ctx)
  local report = run(ctx, "nulls")
  T.eq(located(result_for(report, "nulls.t")), { "different id=10", "different id=20", "different id=31" })
end)

T.test("a change inside a TOASTed value is located", function(ctx)
  setup(ctx, [[
    CREATE SCHEMA toast;
    CREATE TABLE toast.docs (id int PRIMARY KEY, body text);
    ALTER TABLE toast.docs ALTER body SET STORAGE EXTERNAL;
    INSERT INTO toast.docs SELECT g, string_agg(md5(g::text || i::text), '') FROM generate_series(1, 50) g,
      generate_series(1, 3000) i GROUP BY g]],
    nil, "UPDATE toast.docs SET body = overlay(body placing 'Z' from 50000 for 1) WHERE id = 42")
  local c = assert(tide.connect(ctx.target_url))
  local toasted = assert(c:query([[SELECT pg_relation_size(reltoastrelid) AS toast FROM pg_class WHERE oid = 'toast.docs'::regclass]]))
  T.ok(toasted[1].toast > 50 * 90000, "the bodies live in the TOAST table")
  c:close()
  local report = run(ctx, "toast")
  T.eq(located(result_for(report, "toast.docs")), { "different id=42" })
end)

T.test("a changed sequence is found, and sequence_offset is the cutover's offset", function(ctx)
  setup(ctx, "CREATE SCHEMA seqs; CREATE SEQUENCE seqs.ids; CREATE TABLE seqs.t (id int PRIMARY KEY)",
        "SELECT setval('seqs.ids', 500)", "SELECT setval('seqs.ids', 400)")
  local report = run(ctx, "seqs")
  T.eq(report.status, "different")
  local s = report.sequences[1]
  T.eq({ s.source.name, s.status, s.source_next, s.target_next }, { "ids", "behind", 501, 401 })
  local code, out = T.sh(PGTIDE .. " verify " .. write_playbook(ctx, "seqs.lua", "seqs"))
  T.eq(code, 6, out)
  T.match(out, "sequence seqs%.ids: behind: target's next value 401, expected 501")
  -- After a cutover that set the target 1000 ahead of the source:
  local t = assert(tide.connect(ctx.target_url))
  assert(t:exec("SELECT setval('seqs.ids', 1500)"))
  t:close()
  report = run(ctx, "seqs", { verify = { sequence_offset = 1000 } })
  T.eq({ report.status, report.sequences[1].status }, { "match", "match" })
  -- Ahead of the source is safe (no value handed out twice), and says so.
  report = run(ctx, "seqs")
  T.eq({ report.status, report.sequences[1].status }, { "match", "ahead" })
  T.eq(run(ctx, "seqs", { verify = { sequence_offset = 2000 } }).sequences[1].status, "behind")
end)

T.test("a table or sequence missing on the target is a difference", function(ctx)
  setup(ctx, "CREATE SCHEMA gone", "CREATE TABLE gone.t (id int PRIMARY KEY); CREATE SEQUENCE gone.s")
  local report = run(ctx, "gone")
  T.eq(report.status, "different")
  T.eq(report.tables[1].status, "missing")
  T.match(report.tables[1].error, "does not exist")
  T.eq(report.sequences[1].status, "missing")
  local code, out = T.sh(PGTIDE .. " verify " .. write_playbook(ctx, "gone.lua", "gone"))
  T.eq(code, 6, out)
  T.match(out, "gone%.t: missing: target: ")
end)

T.test("the md5 row hash finds the same differences as the fast one", function(ctx)
  local report = run(ctx, "changes", nil, { hash = "md5" })
  T.eq(report.hash, "md5")
  T.eq(located(result_for(report, "changes.orders")), { "different id=777", "missing id=15000", "extra id=25000" })
  T.eq(run(ctx, "same", nil, { hash = "md5" }).status, "match")
  T.eq(run(ctx, "same").hash, "fast", "both servers agree on hashtextextended")
end)

T.test("renamed schema, table and columns and a column subset compare by position in the source", function(ctx)
  setup(ctx, "SELECT 1", [[
    CREATE SCHEMA crm;
    CREATE TABLE crm.customers (id int PRIMARY KEY, name text, secret text, email text);
    INSERT INTO crm.customers SELECT g, 'name ' || g, 'secret ' || g, g || '@example.com' FROM generate_series(1, 2000) g]],
    [[
    CREATE SCHEMA shop;
    CREATE TABLE shop.clients (email text, full_name text, client_id int PRIMARY KEY);
    INSERT INTO shop.clients SELECT g || '@example.com', 'name ' || g, g FROM generate_series(1, 2000) g]])
  local extra = {
    select = { include = { "crm.*" }, columns = { ["crm.customers"] = { exclude = { "secret" } } } },
    rename = { schema = { crm = "shop" }, table = { ["crm.customers"] = "clients" },
               column = { ["crm.customers.name"] = "full_name", ["crm.customers.id"] = "client_id" } },
  }
  local report = verify.run(tide.task { name = "verify-rename", source = ctx.source_url, target = ctx.target_url,
                                        select = extra.select, rename = extra.rename })
  T.ok(report.ok, "renamed pair must match")
  local r = report.tables[1]
  T.eq({ r.target.schema, r.target.name }, { "shop", "clients" })
  local t = assert(tide.connect(ctx.target_url))
  assert(t:exec("UPDATE shop.clients SET full_name = 'someone else' WHERE client_id = 1234"))
  t:close()
  report = verify.run(tide.task { name = "verify-rename", source = ctx.source_url, target = ctx.target_url,
                                  select = extra.select, rename = extra.rename })
  T.eq(located(report.tables[1]), { "different id=1234" })
  T.eq(report.tables[1].differences[1].changed,
       { { column = "full_name", source_column = "name", source = "'name 1234'", target = "'someone else'" } })
end)

T.test("row filters: the source is filtered, the target holds only the filtered rows", function(ctx)
  setup(ctx, [[
    CREATE SCHEMA filtered;
    CREATE TABLE filtered.events (id int PRIMARY KEY, kind text);]],
    "INSERT INTO filtered.events SELECT g, CASE WHEN g % 2 = 0 THEN 'keep' ELSE 'drop' END FROM generate_series(1, 4000) g",
    "INSERT INTO filtered.events SELECT g, 'keep' FROM generate_series(2, 4000, 2) g")
  local rows = { ["filtered.events"] = "kind = 'keep'" }
  local report = run(ctx, "filtered", { select = { include = { "filtered.*" }, rows = rows } })
  T.ok(report.ok, "filtered pair must match")
  T.eq(report.tables[1].source_rows, 2000)
  local t = assert(tide.connect(ctx.target_url))
  assert(t:exec("INSERT INTO filtered.events VALUES (3001, 'drop')"))
  t:close()
  report = run(ctx, "filtered", { select = { include = { "filtered.*" }, rows = rows } })
  T.eq(located(report.tables[1]), { "extra id=3001" })
end)

T.test("sampling compares a share of the key chunks", function(ctx)
  local report = run(ctx, "changes", nil, { sample = 100, chunk_rows = 1000, tables = { "changes.orders" } })
  local orders = report.tables[1]
  T.eq(orders.sampled.of, 20, "20000 rows (pg_class.reltuples) in chunks of 1000")
  T.eq(orders.sampled.chunks, 20)
  T.eq(located(orders), { "different id=777", "missing id=15000", "extra id=25000" })
  report = run(ctx, "same", nil, { sample = 10, chunk_rows = 100, tables = { "same.items", "same.pairs" } })
  T.ok(report.ok, "a sampled identical pair matches")
  local items = result_for(report, "same.items")
  T.eq(items.sampled.chunks, math.ceil(items.sampled.of / 10))
  T.ok(items.source_rows < 3000, "only the sampled chunks were counted")
  T.ok(result_for(report, "same.pairs").sampled ~= nil, "a composite key is sampled too")
end)

T.test("a table that takes longer than table_timeout is reported, and the others still compared", function(ctx)
  setup(ctx, "CREATE SCHEMA slow; CREATE TABLE slow.t (id int PRIMARY KEY); INSERT INTO slow.t SELECT generate_series(1, 100)")
  local report = run(ctx, "slow", { select = { include = { "slow.*", "same.keyless" },
                                               rows = { ["slow.t"] = "pg_sleep(0.05) IS NOT NULL" } } },
                     { table_timeout = 0.3 })
  T.eq(result_for(report, "slow.t").status, "timeout")
  T.eq(result_for(report, "same.keyless").status, "match")
  T.eq(report.status, "incomplete")
  local code, out = T.sh(PGTIDE .. " verify " .. write_playbook(ctx, "slow.lua", "slow",
    '  verify = { table_timeout = "300ms" },\n',
    '{ include = { "slow.*" }, rows = { ["slow.t"] = "pg_sleep(0.05) IS NOT NULL" } }'))
  T.eq(code, 1, out)
  T.match(out, "timeout")
end)

T.test("with wait_for_lsn, the source is read at a snapshot and the target once it reached it", function(ctx)
  local calls = {}
  local report = run(ctx, "changes", nil, {
    tables = { "changes.lines" },
    wait_for_lsn = function(lsn)
      calls[#calls + 1] = lsn
      -- Writes after the snapshot: the source's verify transactions must not see them.
      local s = assert(tide.connect(ctx.source_url))
      assert(s:exec("INSERT INTO changes.lines VALUES ('after', 1, 1)"))
      s:close()
      return function() calls.released = true end
    end,
  })
  T.eq(#calls, 1)
  T.match(calls[1], "^%x+/%x+$")
  T.ok(calls.released, "release was called")
  T.eq(report.consistent.lsn, calls[1])
  local found = located(report.tables[1])
  table.sort(found)
  T.eq(found, { "different region=R3,line=3046", "extra region=R99,line=1", "missing region=R0,line=17" })
  local s = assert(tide.connect(ctx.source_url))
  assert(s:exec("DELETE FROM changes.lines WHERE region = 'after'"))
  T.eq(assert(s:query("SELECT count(*) AS n FROM pg_replication_slots WHERE slot_name LIKE 'pgtide_verify%'"))[1].n, 0)
  s:close()
end)

T.test("rechecks: a difference that stays is reported after the attempts", function(ctx)
  local report = run(ctx, "nulls", nil, { recheck = 2, recheck_delay = 0 })
  local r = report.tables[1]
  T.eq(r.rechecks, 2)
  T.eq(located(r), { "different id=10", "different id=20", "different id=31" })
  report = run(ctx, "same", nil, { recheck = 2, recheck_delay = 0, tables = { "same.keyless" } })
  T.eq(report.tables[1].rechecks, nil, "a matching table is not rechecked")
end)

T.test("the cutover hook makes the task fail on differences, and passes a matching pair", function(ctx)
  local hook = verify.cutover_hook { quiet = true }
  local ok_task = task(ctx, "same", { on = { cutover = hook } })
  local report = ok_task.on.cutover(ok_task)
  T.eq(report.status, "match")
  local bad_task = task(ctx, "changes", { on = { cutover = hook } })
  local err = T.raises(function() bad_task.on.cutover(bad_task) end, "verification at cutover found differences")
  T.ok(failure.is_failure(err))
  T.eq(err.exit, 6)
  T.eq(err.report.status, "different")
  -- as tide.cdc.cutover calls it: a context holding the task and its plan
  T.raises(function() hook { task = bad_task } end, "verification at cutover found differences")
  T.raises(function() verify.cutover_hook { jobs = 0 } end, "jobs must be a positive integer")
end)

T.test("playbook mistakes in verify = {...} are reported with the file and line", function(ctx)
  local path = write_playbook(ctx, "bad.lua", "same", '  verify = {\n    sample = 200,\n  },\n')
  local code, out = T.sh(PGTIDE .. " verify " .. path)
  T.eq(code, 3, out)
  T.match(out, "bad%.lua:%d+: .*verify%.sample must be a percentage")
end)

T.test("a different row names its differing columns, with both values (NULL, TOAST, bytea)", function(ctx)
  setup(ctx, [[
    CREATE SCHEMA cols;
    CREATE TABLE cols.t (id int PRIMARY KEY, n int, note text, blob bytea, body text, "Mixed Case" text);
    ALTER TABLE cols.t ALTER body SET STORAGE EXTERNAL;
    INSERT INTO cols.t SELECT g, g, 'note ' || g, decode(md5(g::text), 'hex'),
      (SELECT string_agg(md5(g::text || i::text), '') FROM generate_series(1, 1000) i), 'm' || g
    FROM generate_series(1, 600) g;
    UPDATE cols.t SET note = NULL WHERE id = 2]], nil, [[
    UPDATE cols.t SET n = -1 WHERE id = 1;
    UPDATE cols.t SET note = '' WHERE id = 2;                 -- NULL on the source
    UPDATE cols.t SET note = NULL WHERE id = 3;               -- a value on the source
    UPDATE cols.t SET body = overlay(body placing 'Z' from 20000 for 1) WHERE id = 4;
    UPDATE cols.t SET blob = '\x00' WHERE id = 5;
    UPDATE cols.t SET n = 0, "Mixed Case" = E'it''s\nnew' WHERE id = 6]])
  local report = run(ctx, "cols")
  local r = result_for(report, "cols.t")
  T.eq(located(r), { "different id=1", "different id=2", "different id=3", "different id=4",
                     "different id=5", "different id=6" })
  local changed = {}
  for _, d in ipairs(r.differences) do
    local cols = {}
    for i, c in ipairs(d.changed) do
      T.eq(c.column, c.source_column)
      cols[i] = c.column .. ": " .. c.source .. " | " .. c.target
    end
    changed[tonumber(d.key.id)] = cols
  end
  T.eq(changed[1], { "n: '1' | '-1'" })
  T.eq(changed[2], { "note: NULL | ''" })
  T.eq(changed[3], { "note: 'note 3' | NULL" })
  T.eq(#changed[4], 1)
  -- A long value: its start, its length and a hash that tells the two apart.
  local body_s = changed[4][1]:match("^body: '(%x+)… %(32000 bytes, hash (%x+)%) | '%1… %(32000 bytes, hash (%x+)%)$")
  T.ok(body_s, "the TOASTed body is shown cut, with length and hash: " .. changed[4][1])
  T.eq(#body_s, 40)
  T.ne(select(2, changed[4][1]:match("hash (%x+).*hash (%x+)")), select(1, changed[4][1]:match("hash (%x+)")))
  T.match(changed[5][1], "^blob: %(bytea, 16 bytes, hash %x+%) | %(bytea, 1 bytes, hash %x+%)$")
  T.eq(changed[6], { "n: '6' | '0'", "Mixed Case: 'm6' | 'it''s\\nnew'" })

  local path = write_playbook(ctx, "cols.lua", "cols")
  local code, out = T.sh(PGTIDE .. " verify " .. path)
  T.eq(code, 6, out)
  T.match(out, "different%s+id=2\n%s+note: NULL on source, '' on target\n")
  T.match(out, "different%s+id=6\n%s+n: '6' on source, '0' on target\n%s+\"Mixed Case\": 'm6' on source, 'it''s\\nnew' on target\n")
  code, out = T.sh(PGTIDE .. " verify " .. path .. " --json")
  T.eq(code, 6, out)
  local doc = json.decode(out)
  T.eq(doc.tables[1].differences[3].changed,
       { { column = "note", source_column = "note", source = "'note 3'", target = "NULL" } })
end)

T.test("--table verifies only the tables it names: exact names, globs, a partitioned parent", function(ctx)
  once(ctx, "changes", CHANGES, nil, CHANGED)
  setup(ctx, [[
    CREATE SCHEMA parted;
    CREATE TABLE parted.m (id int PRIMARY KEY, v text) PARTITION BY RANGE (id);
    CREATE TABLE parted.m1 PARTITION OF parted.m FOR VALUES FROM (0) TO (100);
    CREATE TABLE parted.m2 PARTITION OF parted.m FOR VALUES FROM (100) TO (200);
    CREATE TABLE parted.other (id int PRIMARY KEY);
    INSERT INTO parted.m SELECT g, 'v' || g FROM generate_series(0, 199) g]])
  local path = write_playbook(ctx, "subset.lua", nil, nil, '{ include = { "changes.*", "parted.*" } }')
  local function tables_of(args)
    local code, out = T.sh(PGTIDE .. " verify " .. path .. " " .. args .. " --json 2>&1")
    local ok, doc = pcall(json.decode, out)
    T.ok(ok, out)
    local names = {}
    for i, t in ipairs(doc.tables) do names[i] = t.source.schema .. "." .. t.source.name end
    table.sort(names)
    return names, code, doc
  end
  local names, code, doc = tables_of("--table changes.orders")
  T.eq(names, { "changes.orders" })
  T.eq(code, 6)
  T.eq(#doc.sequences, 0, "sequences are skipped when tables are named")
  T.eq((tables_of("--table 'changes.*'")), { "changes.lines", "changes.orders" })
  T.eq((tables_of("--table=changes.lines --table 'parted.oth?r'")), { "changes.lines", "parted.other" })
  names, code = tables_of("--table parted.m")
  T.eq(names, { "parted.m1", "parted.m2" })
  T.eq(code, 0)
  T.eq((tables_of("--table parted.m1")), { "parted.m1" })
  local out
  code, out = T.sh(PGTIDE .. " verify " .. path .. " --table changes.nope 2>&1")
  T.eq(code, 2, out)
  T.match(out, '%-%-table "changes%.nope" selects none of the task\'s tables %(changes%.')
  T.match(out, "hint: give source names as schema%.table or a glob")
  code, out = T.sh(PGTIDE .. " verify " .. path .. " --table 'changes.[' 2>&1")
  T.eq(code, 2, out)
  T.match(out, "invalid glob")
  code, out = T.sh(PGTIDE .. " verify " .. path .. " --table 2>&1")
  T.eq(code, 2, out)
  T.match(out, "option %-%-table needs a value")
  T.raises(function() run(ctx, "changes", nil, { tables = { "changes.missing" } }) end,
           'verify.tables "changes.missing" selects none')
end)

T.test("the consistent snapshot gives up after snapshot_timeout, naming the open transaction", function(ctx)
  once(ctx, "changes", CHANGES, nil, CHANGED)
  local holder = assert(tide.connect(ctx.source_url .. "?application_name=verify-blocker"))
  assert(holder:exec("BEGIN"))
  assert(holder:query("SELECT txid_current()"))
  local pid = holder:backend_pid()
  local started = tide.monotonic()
  local called = false
  local err = T.raises(function()
    run(ctx, "changes", nil, { tables = { "changes.lines" }, snapshot_timeout = 1,
                               wait_for_lsn = function() called = true end })
  end, "creating the temporary slot pgtide_verify_%d+_%d+ for a consistent snapshot did not finish within 1 s")
  local waited = tide.monotonic() - started
  T.ok(waited >= 1 and waited < 10, "gave up after the timeout, not before or much later: " .. waited)
  T.ok(not called, "wait_for_lsn is not called without a snapshot")
  T.ok(failure.is_failure(err))
  T.match(err.message, "pid " .. pid .. " %(database [^,]+, user [^,]+, verify%-blocker, idle in transaction since %d%d%d%d%-")
  T.match(err.message, "hint: end or commit those, or raise verify%.snapshot_timeout")
  assert(holder:exec("ROLLBACK"))
  local report = run(ctx, "changes", nil, { tables = { "changes.lines" }, snapshot_timeout = "30s",
                                            wait_for_lsn = function() end })
  T.ok(report.consistent ~= nil, "without the open transaction the snapshot is taken")
  T.eq(assert(holder:query("SELECT count(*) AS n FROM pg_replication_slots WHERE slot_name LIKE 'pgtide_verify%'"))[1].n, 0)
  holder:close()
  T.raises(function() verify.options({ verify = { snapshot_timeout = "soon" } }) end,
           "verify.snapshot_timeout must be a duration")
end)

T.test("the row hash sees values swapped between columns or rows, and char(n) changes", function(ctx)
  setup(ctx, [[
    CREATE SCHEMA swaps;
    CREATE TABLE swaps.t (id int PRIMARY KEY, a text, b text, c char(5), d int);
    INSERT INTO swaps.t SELECT g, 'a' || g, 'b' || g, 'c' || (g % 100), g FROM generate_series(1, 5000) g]], nil, [[
    UPDATE swaps.t SET a = b, b = a WHERE id = 1;
    UPDATE swaps.t SET a = CASE id WHEN 2 THEN 'a3' ELSE 'a2' END WHERE id IN (2, 3);
    UPDATE swaps.t SET c = 'c4x' WHERE id = 4;
    UPDATE swaps.t SET a = NULL, b = 'a5b5' WHERE id = 5;   -- the same bytes moved across a NULL
    UPDATE swaps.t SET d = NULL, c = NULL WHERE id = 6]])
  for _, hash in ipairs({ "fast", "md5" }) do
    local report = run(ctx, "swaps", nil, { hash = hash })
    T.eq(report.hash, hash)
    T.eq(located(report.tables[1]), { "different id=1", "different id=2", "different id=3", "different id=4",
                                      "different id=5", "different id=6" }, hash)
  end
end)
