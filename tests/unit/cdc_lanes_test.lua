-- tide.cdc.lanes: where parallel apply resumes from the lanes' rows, and each table's rule.
local T = require "testlib"
local lanes = require "tide.cdc.lanes"

T.test("no rows: the origin's position, nothing listed", function()
  local at = lanes.resume_point({}, "0/1000")
  T.eq(at, { watermark = "0/1000", applied = {}, upto = "0/1000" })
end)

T.test("the largest watermark wins; ranges at or above it are kept from every row, older ones dropped", function()
  local at = lanes.resume_point({
    { lane = 0, watermark = "0/2000", applied = { "0/1500", "0/1800", "0/2100", "0/2300" }, upto = "0/2400" },
    { lane = 1, watermark = "0/2200", applied = { "0/2250", "0/2250", "0/2500", "0/2600" }, upto = "0/2700" },
    { lane = 2, watermark = "0/1F00", applied = {}, upto = "0/1F00" },
  }, "0/1000")
  T.eq(at.watermark, "0/2200")
  -- 0/2100–0/2300 straddles the watermark: kept (the lanes skip only what a range names)
  T.eq(at.applied, { "0/2100", "0/2300", "0/2250", "0/2250", "0/2500", "0/2600" })
  T.eq(at.upto, "0/2700")
end)

T.test("positions compare as numbers, not as text", function()
  local at = lanes.resume_point({
    { lane = 0, watermark = "0/FFFFFF", applied = {}, upto = "0/FFFFFF" },
    { lane = 1, watermark = "1/0", applied = { "1/10", "1/20" }, upto = "1/30" },
  }, "0/1")
  T.eq(at.watermark, "1/0")
  T.eq(at.upto, "1/30")
end)

T.test("table rules: keys, extra unique indexes, foreign-key groups, triggers", function()
  local facts = {
    [1] = { uniques = 1, triggers = 0, has_key = true },   -- plain keyed table
    [2] = { uniques = 0, triggers = 0, has_key = false },  -- keyless
    [3] = { uniques = 2, triggers = 0, has_key = true },   -- a unique index besides the key
    [4] = { uniques = 1, triggers = 0, has_key = true },   -- parent
    [5] = { uniques = 1, triggers = 0, has_key = true },   -- child of 4
    [6] = { uniques = 1, triggers = 0, has_key = true },   -- grandchild of 4, through 5
    [7] = { uniques = 1, triggers = 1, has_key = true },   -- a trigger fires in replica mode
    [8] = { uniques = 1, triggers = 0, has_key = false },  -- a unique index that is not a usable key
  }
  local r = lanes.table_rules(facts, { { 5, 4 }, { 6, 5 } })
  T.eq(r[1].mode, 0)
  T.eq(r[2].mode, 0)
  T.eq(r[3].mode, 1)
  T.eq(r[4].mode, 1)
  T.eq(r[5].mode, 1)
  T.eq(r[6].mode, 1)
  T.eq(r[4].group, r[5].group)
  T.eq(r[5].group, r[6].group)
  T.ne(r[3].group, r[4].group)
  T.eq(r[7].mode, 2)
  T.eq(r[8].mode, 1)
end)

T.test("table rules over a long chain of foreign keys take linear time", function()
  -- Each table references the one before it (a schema-per-tenant database's shape): without
  -- path compression every find walked the chain, quadratic in the tables.
  local n = 40000
  local facts, fks = {}, {}
  for i = 1, n do
    facts[i] = { uniques = 1, triggers = 0, has_key = true }
    if i > 1 then fks[#fks + 1] = { i, i - 1 } end
  end
  local started = os.clock()
  local r = lanes.table_rules(facts, fks)
  local took = os.clock() - started
  T.eq(r[1].group, r[n].group)
  T.eq(r[n // 2].group, r[1].group)
  T.eq(r[n].mode, 1)
  T.ok(took < 2, string.format("table rules for a chain of %d tables took %.2f s of CPU", n, took))
end)

T.test("ranges read as the text of a pg_lsn[] too", function()
  local at = lanes.resume_point({ { lane = 0, watermark = "0/10", applied = "{0/20,0/30,0/5,0/8}", upto = "0/40" } }, "0/1")
  T.eq(at.applied, { "0/20", "0/30" })
end)
