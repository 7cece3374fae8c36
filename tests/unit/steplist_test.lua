-- tide.plan.steplist: the post-data steps a run keeps, in arrays, read back as the steps they were.
local T = require "testlib"
local steplist = require "tide.plan.steplist"
local secret = require "tide.secret"

local function steps()
  return {
    { kind = "index", key = "index:app.t_v", object = "index:app.t_v", phase = "post", sql = "CREATE INDEX t_v ON app.t (v)",
      after = {}, needs_data = { "app.t" }, table = "app.t" },
    { kind = "fkey", key = "fkey:app.t.t_fk", object = "constraint:app.t.t_fk", phase = "post",
      sql = "ALTER TABLE app.t ADD CONSTRAINT t_fk FOREIGN KEY (p) REFERENCES app.p(id)",
      after = { "constraint:app.p.p_pkey", "index:app.t_v" }, needs_data = { "app.t", "app.p" }, table = "app.t",
      undo = "ALTER TABLE app.t DROP CONSTRAINT IF EXISTS t_fk" },
    { kind = "grant", key = "grant:app.f(integer)", object = "function:app.f(integer)", phase = "post",
      sql = "GRANT EXECUTE ON FUNCTION app.f(integer) TO r", after = { "constraint:app.p.p_pkey" }, needs_data = {} },
  }
end

T.test("packed steps read back as they were, field by field and whole", function()
  local plain = steps()
  local list = steplist.pack(steps())
  T.ok(steplist.is_packed(list))
  T.eq(#list, 3)
  for i, want in ipairs(plain) do
    T.eq(list[i], want, "step " .. i)
    for f, v in pairs(want) do T.eq(steplist.field(list, i, f), v, "step " .. i .. " field " .. f) end
  end
  T.eq(list[4], nil)
  T.eq(list[0], nil)
  local n = 0
  for i, s in ipairs(list) do n = n + 1; T.eq(s.key, plain[i].key) end
  T.eq(n, 3, "ipairs reads every step")
  local keys = {}
  for i, s in pairs(list) do keys[i] = s.key end
  T.eq(keys, { plain[1].key, plain[2].key, plain[3].key }, "pairs too")
  T.eq(require("tide.json").decode(require("tide.json").encode(list))[2].undo, plain[2].undo, "JSON sees a list of steps")
  T.eq(#require("tide.json").decode(require("tide.json").encode(steplist.view(list, { 2 }))), 1)
  T.eq(require("tide.json").encode({ pre = steplist.new(0), view = steplist.view(list, {}) }), '{"pre":[],"view":[]}',
    "an empty list is an empty JSON list")
  T.eq(steplist.field(list, 3, "table"), nil, "a step of no table")
  T.eq(steplist.field(list, 1, "undo"), nil)
  T.eq(steplist.field(list, 1, "last"), nil, "a field no step has")
  local no_object = steps()[1]
  no_object.object = nil
  T.eq(steplist.pack({ no_object })[1].object, nil, "a step without an object has none")
end)

T.test("each read is a new table: what a reader writes on it stays on it", function()
  local list = steplist.pack(steps())
  local a = list[1]
  a.critical = true
  T.ok(not rawequal(a, list[1]))
  T.eq(list[1].critical, nil)
  T.raises(function() list[1] = {} end, "read only")
end)

T.test("a step with more fields or with secrets is kept whole, the same table at each read", function()
  local plain = steps()
  plain[1].drops = { "x" }
  secret.keep(plain[3], "GRANT EXECUTE ON FUNCTION app.f(integer) TO r /* s3cret */", { "s3cret" })
  local list = steplist.pack(plain)
  T.ok(rawequal(list[1], plain[1]) and rawequal(list[1], list[1]))
  T.ok(rawequal(list[3], plain[3]))
  T.match(secret.sql(list[3]), "s3cret", "its real statement is still found")
  T.eq(steplist.field(list, 1, "drops"), { "x" })
  T.eq(list[2], steps()[2], "the others packed as before")
end)

T.test("steps of several phases keep theirs", function()
  local plain = steps()
  plain[2].phase = "pre"
  local list = steplist.pack(plain)
  T.eq({ list[1].phase, list[2].phase, list[3].phase }, { "post", "pre", "post" })
  T.eq(#steplist.pack({}), 0, "an empty list")
end)

T.test("a view reads the steps at the places given; field reads plain lists too", function()
  local list = steplist.pack(steps())
  local view = steplist.view(list, { 3, 1 })
  T.eq(#view, 2)
  T.eq({ view[1].key, view[2].key, view[3] }, { "grant:app.f(integer)", "index:app.t_v", nil })
  T.eq(steplist.field(view, 2, "sql"), "CREATE INDEX t_v ON app.t (v)")
  local plain = steps()
  T.eq(steplist.field(plain, 2, "undo"), plain[2].undo)
  T.ok(rawequal(steplist.pack(list), list), "a packed list packs to itself")
end)

T.test("a list made a step at a time reads as the packed list of the same steps", function()
  local plain = steps()
  local list = steplist.new(3)
  steplist.add(list, plain[1])
  -- (from its fields: lists of keys may come as one key or false)
  local s = plain[2]
  steplist.add_fields(list, s.kind, s.key, s.sql, s.object, s.phase, s.table, s.after, s.needs_data, s.undo)
  s = plain[3]
  steplist.add_fields(list, s.kind, s.key, s.sql, s.object, s.phase, s.table, s.after[1], false, nil)
  T.eq(#list, 3)
  for i, want in ipairs(steps()) do T.eq(list[i], want, "step " .. i) end
  T.eq(steplist.field(list, 3, "needs_data"), {})
  local one = steplist.new(0)
  steplist.add_fields(one, "index", "index:app.x", "CREATE INDEX x ON app.t (v)", "index:app.x", "post", "app.t", false, "app.t")
  T.eq(one[1], { kind = "index", key = "index:app.x", object = "index:app.x", sql = "CREATE INDEX x ON app.t (v)",
                 phase = "post", table = "app.t", after = {}, needs_data = { "app.t" } })
end)

T.test("a step read, changed and put back (set) keeps the change; phases change with it", function()
  local list = steplist.pack(steps())
  local step = list[2]
  step.needs_data = { "app.t", "app.p", "app.q" }
  steplist.set(list, 2, step)
  T.eq(list[2].needs_data, { "app.t", "app.p", "app.q" })
  T.eq(list[1], steps()[1], "its neighbours unchanged")
  step = list[3]
  step.phase = "pre"
  steplist.set(list, 3, step)
  T.eq({ list[1].phase, list[2].phase, list[3].phase }, { "post", "post", "pre" })
  step = list[1]
  step.drops = { "x" }
  steplist.set(list, 1, step)
  T.ok(rawequal(list[1], step), "a step with a field of its own is kept whole")
  step = steps()[1]
  steplist.set(list, 1, step)
  T.ok(not rawequal(list[1], step), "and packed again once it is plain")
  T.eq(list[1], steps()[1])
  T.raises(function() steplist.set(list, 4, step) end, "no such step")
  local plain = steps()
  steplist.set(plain, 1, step)
  T.ok(rawequal(plain[1], step), "a plain list's place is set as it is")
end)

T.test("share_lists makes equal lists of keys one list, packed or not", function()
  local a, b = steps(), steps()
  b[2].key = "fkey:app.t.t_fk2"
  local list = steplist.pack({ a[2], b[2] })
  T.ok(not rawequal(steplist.field(list, 1, "after"), steplist.field(list, 2, "after")))
  local pool = require("tide.intern").pool()
  steplist.share_lists(list, pool)
  T.ok(rawequal(steplist.field(list, 1, "after"), steplist.field(list, 2, "after")))
  T.ok(rawequal(steplist.field(list, 1, "needs_data"), steplist.field(list, 2, "needs_data")))
  local plain = { steps()[2], steps()[2] }
  steplist.share_lists(plain, pool)
  T.ok(rawequal(plain[1].after, plain[2].after) and rawequal(plain[1].after, steplist.field(list, 1, "after")))
end)
