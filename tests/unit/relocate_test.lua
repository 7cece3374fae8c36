-- tide.plan.relocate: what a run keeps, written out, let go and read back as it was.
local T = require "testlib"
local relocate = require "tide.plan.relocate"
local secret = require "tide.secret"
local json = require "tide.json"
local steplist = require "tide.plan.steplist"

local function round_trip(roots, keep)
  local written = relocate.write(roots, keep)
  return relocate.read(written)
end

T.test("values of every kind come back as they were", function()
  local long = string.rep("x", 100) .. "\0y"
  local roots = { "", "short", long, 0, -1, -123456789, 42, (1 << 62), -(1 << 62), math.mininteger, 1.5, -0.25,
                  true, false, { 1, 2, { a = "b" } }, { [1] = "a", [3] = "c" }, { ["key with space"] = 7, [true] = false },
                  { [2.5] = "float key" } }
  local back = round_trip(roots)
  T.eq(back, roots)
  T.eq(math.type(back[5]), "integer")
  T.eq(math.type(back[11]), "float")
  T.eq(math.type(back[12]), "float")
  T.ok(not rawequal(back[15], roots[15]), "tables are new")
  local odd = round_trip({ 0 / 0, -0.0, 0.0, 1 << 60, 2.0 ^ 60 })
  T.ok(odd[1] ~= odd[1], "NaN")
  T.eq({ 1 / odd[2], 1 / odd[3] }, { -math.huge, math.huge }, "-0.0 and 0.0 stay apart")
  T.eq({ math.type(odd[4]), math.type(odd[5]) }, { "integer", "float" }, "2^60 as an integer and as a float")
end)

T.test("sharing, cycles, metatables and kept tables stay what they were", function()
  local mt = { __index = { default = "d" } }
  local shared = setmetatable({ name = "shared" }, mt)
  local a = { shared, shared, other = shared }
  a.self = a
  local f = function() return 1 end
  local marker = {}
  local back = round_trip({ a, { shared }, f, marker, json.null }, { [marker] = true, [json.null] = true })
  local a2 = back[1]
  T.ok(rawequal(a2[1], a2[2]) and rawequal(a2[1], a2.other) and rawequal(a2[1], back[2][1]), "one table reached thrice is one")
  T.ok(rawequal(a2.self, a2), "a cycle")
  T.ok(not rawequal(a2[1], shared))
  T.ok(rawequal(getmetatable(a2[1]), mt), "the metatable is the same table")
  T.eq(a2[1].default, "d")
  T.ok(rawequal(back[3], f), "a function is kept as it is")
  T.ok(rawequal(back[4], marker) and rawequal(back[5], json.null), "kept tables too")
end)

T.test("long strings equal in the written roots are one after; the original strings can go", function()
  local text = string.rep("statement ", 20)
  local roots = { { text, text }, { sql = text } }
  local written = relocate.write(roots)
  roots, text = nil, nil   -- luacheck: ignore 311
  collectgarbage("collect")
  local back = relocate.read(written)
  T.eq(back[1][1], string.rep("statement ", 20))
  T.eq(back[2].sql, back[1][1])
end)

T.test("a step with secrets keeps its real statement; a packed step list reads back the same", function()
  local step = { kind = "user_mapping", key = "user_mapping:x", sql = "CREATE USER MAPPING ... password '********'" }
  secret.keep(step, "CREATE USER MAPPING ... password 's3cret'", { "s3cret" })
  local steps = steplist.pack({
    step,
    { kind = "index", key = "index:a.i", object = "index:a.i", phase = "post", sql = "CREATE INDEX i ON a.t (v)",
      after = {}, needs_data = { "a.t" }, table = "a.t" },
  })
  local back = round_trip({ steps })[1]
  T.ok(steplist.is_packed(back))
  T.eq(#back, 2)
  T.match(secret.sql(back[1]), "s3cret")
  T.nomatch(back[1].sql, "s3cret")
  T.eq(back[2], steplist.pack({ { kind = "index", key = "index:a.i", object = "index:a.i", phase = "post",
    sql = "CREATE INDEX i ON a.t (v)", after = {}, needs_data = { "a.t" }, table = "a.t" } })[1])
end)

T.test("many values: the numbers span several chunks", function()
  local list = {}
  for i = 1, 100000 do list[i] = { i, "s" .. (i % 100), i % 2 == 0 } end
  local back = round_trip({ list })[1]
  T.eq(#back, 100000)
  T.eq(back[99999], { 99999, "s99", false })
  T.eq(back[1], { 1, "s1", false })
end)
