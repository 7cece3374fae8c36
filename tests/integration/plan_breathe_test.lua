-- The plan and the prechecks over many tables let the task's event loop turn (#20): every loop
-- over the plan's objects or tables calls tide.wait.breathe, so `pgtide status` answers while
-- they compute. Measured in Lua VM instructions, not time: with breathe's interval at 0 (a
-- turn every 64 calls), the longest stretch between two turns of a ticking coroutine must not
-- grow with the number of tables. A loop that does not breathe is as long as the plan is big:
-- four times the tables, about four times the stretch.
local T = require "testlib"
local P = require "pg"
local tide = require "tide"
local wait = require "tide.wait"
local core = require "tide.core"
local precheck = require "tide.precheck"
local json = require "tide.json"

local function build_sql(tables)
  return string.format([[
DO $$
DECLARE s int; i int; t text;
BEGIN
  FOR s IN 0..3 LOOP EXECUTE format('CREATE SCHEMA "tenant %%s"', s); END LOOP;
  FOR i IN 1..%d LOOP
    t := format('"tenant %%s".t%%s', i %% 4, i);
    EXECUTE format('CREATE TABLE %%s (id int PRIMARY KEY, parent int, v text NOT NULL CHECK (v <> ''''), n serial)', t);
    EXECUTE format('CREATE INDEX ON %%s (v)', t);
    EXECUTE format('CREATE VIEW %%s AS SELECT id, v FROM %%s', format('"tenant %%s".v%%s', i %% 4, i), t);
    IF i > 4 AND i %% 4 <> 0 THEN
      EXECUTE format('ALTER TABLE %%s ADD FOREIGN KEY (parent) REFERENCES "tenant %%s".t%%s (id)', t, i %% 4, i - 4);
    END IF;
    IF i %% 100 = 0 THEN COMMIT; END IF;
  END LOOP;
END $$]], tables)
end

-- A meter of the longest run of Lua VM instructions (in thousands) between two turns of the
-- event loop: a ticking coroutine notes each turn, m.count is the count hook's function (set
-- with debug.sethook(m.count, "", 1000) in every coroutine measured), m.finish() counts the
-- stretch after the last turn and gives the longest.
local function meter()
  local m = { thousands = 0, at_turn = 0, longest = 0, done = false }
  function m.count() m.thousands = m.thousands + 1 end
  m.ticker = tide.spawn(function()
    while not m.done do
      m.longest = math.max(m.longest, m.thousands - m.at_turn)
      m.at_turn = m.thousands
      tide.yield()
    end
  end)
  function m.restart() m.longest, m.at_turn = 0, m.thousands end
  function m.finish()
    m.longest = math.max(m.longest, m.thousands - m.at_turn)
    return m.longest
  end
  function m.stop()
    m.done = true
    m.ticker:wait()
  end
  return m
end

-- The longest run of VM instructions (in thousands) between two turns of the loop while the
-- plan over `tables` tables is made and checked.
local function longest_stretch(ctx, tables)
  local db = "breathe_" .. tables
  local source_url = P.fresh_db(ctx.source_admin, db)
  local target_url = P.fresh_db(ctx.target_admin, db)
  local c = P.connect(source_url)
  assert(c:exec(build_sql(tables)))
  c:close()
  local task = tide.task { name = "breathe", source = source_url, target = target_url, migrate = { "schema", "full" } }
  local m = meter()
  wait.interval = 0
  -- A Lua hook belongs to one coroutine (a new one gets none): the coroutines the plan and the
  -- prechecks spawn (each check runs in its own) set it first.
  local spawn = core.spawn
  core.spawn = function(fn, ...)
    return spawn(function(...) debug.sethook(m.count, "", 1000); return fn(...) end, ...)
  end
  debug.sethook(m.count, "", 1000)
  local ok, report = pcall(precheck.evaluate, task)
  debug.sethook()
  local longest = m.finish()
  core.spawn = spawn
  wait.interval = 0.05
  m.stop()
  assert(ok, report)
  T.ok(report.ok, "the prechecks failed: " .. tostring(report.status))
  return longest
end

T.test("the plan and the prechecks breathe: their longest stretch does not grow with the tables", function(ctx)
  local small = longest_stretch(ctx, 150)
  local large = longest_stretch(ctx, 600)
  io.stderr:write(string.format("# longest stretch: %d,000 instructions at 150 tables, %d,000 at 600\n", small, large))
  T.ok(large < small * 2,
    string.format("the longest stretch without a turn of the loop went from %d,000 instructions at 150 tables " ..
                  "to %d,000 at 600: a loop over the plan does not call tide.wait.breathe", small, large))
end)

-- The longest runs of VM instructions (in thousands) between two turns of the loop while a
-- stream session's table map is built (tide.cdc.tables.build, at every session's start) from a
-- plan of `tables` tables, and while DDL replication's record of them is laid over that map
-- (tide.cdc.ddl_entries.overlay, at every session's start too). The plan and the record are
-- made up here (the map reads the plan, and asks the target which of its tables exist), so that
-- thousands of tables cost no catalog.
local function map_stretch(ctx, tables)
  local plan = { tables = {}, by_key = {} }
  for i = 1, tables do
    local schema, name = "tenant " .. i % 4, "t" .. i
    local tbl = { key = schema .. "." .. name, source = { schema = schema, name = name }, oid = 100000 + i,
                  target = { schema = schema, name = name }, key_columns = { "id" },
                  columns = { { name = "id" }, { name = "parent" }, { name = "v" }, { name = "n" } } }
    plan.tables[i], plan.by_key["table:" .. tbl.key] = tbl, tbl
  end
  local task = tide.task { name = "breathe_map", source = ctx.source_url, target = ctx.target_url,
                           migrate = { "incremental" } }
  local source, target = P.connect(ctx.source_url), P.connect(ctx.target_url)
  local m = meter()
  wait.interval = 0
  -- The longest stretch of fn(...), the one after its last turn included.
  local function stretch(fn, ...)
    m.restart()
    debug.sethook(m.count, "", 1000)
    local results = table.pack(pcall(fn, ...))
    debug.sethook()
    return m.finish(), table.unpack(results, 1, results.n)
  end
  local built, ok, entries = stretch(require("tide.cdc.tables").build, task, plan, target,
                                     require("tide.cdc.objects").names(task), source)
  local ddl = require "tide.cdc.ddl"
  local d = ddl.context(task)
  for i, tbl in ipairs(plan.tables) do
    local columns = {}
    for k, c in ipairs(tbl.columns) do columns[k] = { name = c.name, num = k, type = "integer" } end
    d.known:add_text(tostring(tbl.oid), json.encode({
      desc = { oid = tbl.oid, kind = "r", schema = tbl.source.schema, name = tbl.source.name, columns = columns,
               constraints = { { type = "p", name = tbl.source.name .. "_pkey", def = "PRIMARY KEY (id)" } } },
      target = tbl.target, cols = { id = "id", parent = "parent", v = "v", n = "n" } }),
      tbl.source.schema, tbl.source.name, nil)
    if i % 1000 == 0 then tide.yield() end
  end
  local laid_stretch, laid_ok, laid = stretch(ddl.overlay, d, ok and entries or {}, plan)
  -- The tables above do not exist on the target, so the map saw no foreign key: the grouping
  -- of tables joined by them (tide.cdc.lanes.table_rules) gets a chain of them here.
  local facts, fks = {}, {}
  for i = 1, tables do
    facts[i] = { uniques = 1, triggers = 0, has_key = true }
    if i > 1 then fks[#fks + 1] = { i, i - 1 } end
  end
  local grouped, rules_ok, rules = stretch(require("tide.cdc.lanes").table_rules, facts, fks)
  wait.interval = 0.05
  m.stop()
  source:close(); target:close()
  assert(ok, entries)
  assert(laid_ok, laid)
  T.eq(#entries, tables + 1, "every table and the heartbeat in the map")
  T.eq(#laid, tables + 1, "every table and the heartbeat in the map after the record")
  assert(rules_ok, rules)
  T.eq(rules[tables].group, rules[1].group, "the chain is one group")
  return built, laid_stretch, grouped
end

T.test("a stream session's table map and the DDL record's overlay breathe: their longest stretch does not grow",
       function(ctx)
  local small, small_laid, small_rules = map_stretch(ctx, 2000)
  local large, large_laid, large_rules = map_stretch(ctx, 8000)
  io.stderr:write(string.format("# the stream's map: %d,000 instructions at 2,000 tables, %d,000 at 8,000; the " ..
                                "record's overlay %d,000 and %d,000; the lanes' grouping %d,000 and %d,000\n",
                                small, large, small_laid, large_laid, small_rules, large_rules))
  -- (four times the tables: a loop that does not breathe is about four times as long; one
  -- that does stays within a few per cent)
  T.ok(large < small * 1.5,
    string.format("building the stream's table map, the longest stretch without a turn went from %d,000 " ..
                  "instructions at 2,000 tables to %d,000 at 8,000: a loop of tide.cdc.tables does not breathe",
                  small, large))
  T.ok(large_laid < small_laid * 1.5,
    string.format("laying DDL replication's record over the map, the longest stretch without a turn went from " ..
                  "%d,000 instructions at 2,000 tables to %d,000 at 8,000: a loop of tide.cdc.ddl_entries.overlay " ..
                  "does not breathe", small_laid, large_laid))
  T.ok(large_rules < small_rules * 1.5,
    string.format("grouping tables joined by foreign keys, the longest stretch without a turn went from %d,000 " ..
                  "instructions at 2,000 tables to %d,000 at 8,000: a loop of tide.cdc.lanes.table_rules does not " ..
                  "breathe", small_rules, large_rules))
end)
