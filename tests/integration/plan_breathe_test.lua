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
  local thousands, at_turn, longest, done = 0, 0, 0, false
  local ticker = tide.spawn(function()
    while not done do
      longest = math.max(longest, thousands - at_turn)
      at_turn = thousands
      tide.yield()
    end
  end)
  wait.interval = 0
  -- A Lua hook belongs to one coroutine (a new one gets none): the coroutines the plan and the
  -- prechecks spawn (each check runs in its own) set it first.
  local function count() thousands = thousands + 1 end
  local spawn = core.spawn
  core.spawn = function(fn, ...)
    return spawn(function(...) debug.sethook(count, "", 1000); return fn(...) end, ...)
  end
  debug.sethook(count, "", 1000)
  local ok, report = pcall(precheck.evaluate, task)
  debug.sethook()
  core.spawn = spawn
  wait.interval = 0.05
  done = true
  ticker:wait()
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
