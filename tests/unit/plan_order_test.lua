-- tide.plan.order: the steps of the selected objects in an order that works (docs/schema.md,
-- "Order"): dependencies first, then the kinds' usual order (rank), then catalog order; a
-- pre-data object that needs a post-data one is postponed; the table/function cycle pg_dump
-- also meets is broken; any other cycle is a plan error naming its members.
-- The objects here are made by hand, in the shape tide.plan.objects gives them.
local T = require "testlib"
local order = require "tide.plan.order"

local RANK = { schema = 10, type = 20, ["function"] = 30, sequence = 40, table = 50, view = 60,
               index = 10, constraint = 20, fkey = 40 }
local PHASE = { index = "post", constraint = "post", fkey = "post" }

-- An object of kind `kind` named `ident` whose create() writes one step per entry of
-- `steps` (default: one "CREATE" step).
local function object(kind, ident, opts)
  opts = opts or {}
  local def = { phase = opts.phase or PHASE[kind] or "pre", rank = RANK[kind],
                create = opts.create or function(_, obj)
                  local out = {}
                  for i, s in ipairs(opts.steps or { {} }) do
                    local step = { sql = s.sql or ("CREATE " .. obj.ident .. (i > 1 and (" #" .. i) or "")) }
                    for k, v in pairs(s) do step[k] = v end
                    out[#out + 1] = step
                  end
                  return out
                end }
  return { kind = kind, def = def, ident = ident, key = kind .. ":" .. ident, selected = opts.selected ~= false,
           deps = {}, columns = opts.columns or {}, checks = opts.checks }
end

-- `obj` needs `ref` (a whole-object dependency, as pg_depend's edges are summed up).
local function needs(obj, ref, edge)
  obj.deps[ref] = edge or { whole = true, vias = {} }
end

-- Builds and sorts; returns pre keys, post keys, errors, and the steps.
local function plan(objects)
  local errors = {}
  local function on_error(obj, msg) errors[#errors + 1] = { obj = obj, msg = msg } end
  local all = order.build_steps({ objects = objects }, {}, on_error)
  local pre, post = order.sort(all, on_error)
  local function keys(list)
    local out = {}
    for i, s in ipairs(list) do out[i] = s.key end
    return out
  end
  return keys(pre), keys(post), errors, pre, post
end

T.test("independent objects go by kind rank, then catalog order", function()
  local pre, post, errors = plan {
    object("table", "app.b"), object("view", "app.v"), object("function", "app.f()"),
    object("table", "app.a"), object("schema", "app"),
  }
  T.eq(errors, {})
  T.eq(pre, { "schema:app", "function:app.f()", "table:app.b", "table:app.a", "view:app.v" })
  T.eq(post, {})
end)

T.test("a dependency comes first whatever its rank", function()
  -- A function whose body reads a table, and a view on the function: the table, though
  -- ranked after functions, must exist first.
  local tbl, fn, view = object("table", "app.t"), object("function", "app.f()"), object("view", "app.v")
  local other_fn = object("function", "app.g()")
  needs(fn, tbl)
  needs(view, fn)
  local pre, _, errors = plan { view, fn, other_fn, tbl }
  T.eq(errors, {})
  T.eq(pre, { "function:app.g()", "table:app.t", "function:app.f()", "view:app.v" })
end)

T.test("a chain of dependencies against catalog order", function()
  local a, b, c, d = object("view", "s.a"), object("view", "s.b"), object("view", "s.c"), object("view", "s.d")
  needs(a, b); needs(b, c); needs(c, d)
  local pre = plan { a, b, c, d }
  T.eq(pre, { "view:s.d", "view:s.c", "view:s.b", "view:s.a" })
end)

T.test("an object's steps stay in order, and each waits for the one before", function()
  local t = object("table", "app.t", { steps = { {}, { kind = "table_alter", suffix = "alter" } } })
  local pre, _, errors, steps = plan { t }
  T.eq(errors, {})
  T.eq(pre, { "table:app.t", "table_alter:app.t/alter" })
  T.eq(steps[2].waits, { steps[1] })
  T.eq(steps[1].waits, nil, "a step that waits for nothing in its phase has no list")
end)

T.test("post-data: indexes before constraints before foreign keys, dependencies first", function()
  local t = object("table", "app.t")
  local idx, con, fk = object("index", "app.t_idx"), object("constraint", "app.t.t_pkey"), object("fkey", "app.t.t_fk")
  needs(fk, con)
  local pre, post, errors = plan { fk, con, idx, t }
  T.eq(errors, {})
  T.eq(pre, { "table:app.t" })
  T.eq(post, { "index:app.t_idx", "constraint:app.t.t_pkey", "fkey:app.t.t_fk" })
end)

T.test("a view that needs a post-data object is postponed to post-data", function()
  local t, pk, view = object("table", "app.t"), object("constraint", "app.t.t_pkey"), object("view", "app.by_key")
  needs(view, pk)
  needs(view, t)
  local pre, post, errors = plan { t, pk, view }
  T.eq(errors, {})
  T.eq(pre, { "table:app.t" })
  T.eq(post, { "constraint:app.t.t_pkey", "view:app.by_key" })
  T.ok(view.postponed_by == pk, "the view names what postponed it")
end)

T.test("postponing follows a chain: a view on a postponed view moves too", function()
  local pk, v1, v2 = object("constraint", "app.t.t_pkey"), object("view", "app.v1"), object("view", "app.v2")
  needs(v1, pk)
  needs(v2, v1)
  local pre, post, errors = plan { v2, v1, pk }
  T.eq(errors, {})
  T.eq(pre, {})
  T.eq(post, { "constraint:app.t.t_pkey", "view:app.v1", "view:app.v2" })
end)

T.test("a table that needs a post-data object is a plan error naming both", function()
  local pk, t = object("constraint", "app.u.u_pkey"), object("table", "app.t")
  needs(t, pk)
  local _, _, errors = plan { pk, t }
  T.eq(#errors, 1)
  T.ok(errors[1].obj == t)
  T.match(errors[1].msg, "^table app%.t needs constraint app%.u%.u_pkey, which is only created after the data")
end)

T.test("a cycle that cannot be broken is a plan error listing its members", function()
  local a, b, c = object("view", "app.a"), object("view", "app.b"), object("view", "app.c")
  local free = object("table", "app.free")
  needs(a, b); needs(b, a); needs(c, a)
  local pre, _, errors = plan { a, b, c, free }
  T.eq(#errors, 1)
  T.ok(errors[1].obj == nil)
  T.match(errors[1].msg, "cycle pgtide cannot break")
  T.match(errors[1].msg, "view app%.a")
  T.match(errors[1].msg, "view app%.b")
  T.match(errors[1].msg, "leave it out of the selection")
  T.eq(pre[1], "table:app.free", "what is not in the cycle is ordered")
  T.eq(#pre, 4, "every step is still listed")
end)

T.test("a CHECK calling a function on the table's row type: the check is split out", function()
  -- pg_dump's cycle: the function takes the table's row type, the table's CHECK calls it.
  local check = { name = "t_ok" }
  local t = object("table", "app.t", { checks = { check } })
  local fn = object("function", "app.ok(app.t)")
  needs(fn, t)
  needs(t, fn, { whole = false, vias = { { check = check } } })
  local pre, _, errors = plan { t, fn }
  T.eq(errors, {})
  T.eq(pre, { "table:app.t", "function:app.ok(app.t)" })
  T.eq(t.checks, {}, "the CHECK is no longer part of CREATE TABLE")
  T.eq(t.split_checks, { check })
  T.ok(t.split_after[1] == fn, "and is added after the function")
end)

T.test("a column default in the same cycle is split; a generated column cannot be", function()
  local t = object("table", "app.t", { columns = { { num = 1, name = "id" }, { num = 2, name = "v" } } })
  local fn = object("function", "app.f(app.t)")
  needs(fn, t)
  needs(t, fn, { whole = false, vias = { { default = 2 } } })
  local pre, _, errors = plan { t, fn }
  T.eq(errors, {})
  T.eq(pre, { "table:app.t", "function:app.f(app.t)" })
  T.eq(t.columns[2].default_split, true)
  T.eq(t.columns[1].default_split, nil)

  local g = object("table", "app.g", { columns = { { num = 1, name = "v", generated = "s" } } })
  local gf = object("function", "app.gf(app.g)")
  needs(gf, g)
  needs(g, gf, { whole = false, vias = { { default = 1 } } })
  local _, _, errs = plan { g, gf }
  T.eq(#errs, 1, "a generated column's expression stays in CREATE TABLE: the cycle remains")
  T.match(errs[1].msg, "cycle")
end)

T.test("trailing steps (comments, owners, grants) hold nothing up", function()
  local t = object("table", "app.t", { steps = { {}, { kind = "comment", suffix = "comment" } } })
  local v = object("view", "app.v")
  needs(v, t)
  local pre, _, errors, steps = plan { t, v }
  T.eq(errors, {})
  T.eq(pre, { "table:app.t", "view:app.v", "comment:app.t/comment" })
  T.eq(steps[2].waits[1].key, "table:app.t", "the view waits for CREATE TABLE only")
  T.eq(#steps[2].waits, 1)
end)

T.test("a step's `after` objects, and a `last` step waiting for everything", function()
  local a, b = object("table", "app.a"), object("table", "app.b")
  local c = object("view", "app.c", { steps = { { after = { b } } } })
  local last = object("function", "app.enable()", { steps = { { last = true } } })
  local pre, _, errors, steps = plan { last, c, b, a }
  T.eq(errors, {})
  T.eq(pre[#pre], "function:app.enable()", "a `last` step comes last whatever its rank")
  local pos = {}
  for i, k in ipairs(pre) do pos[k] = i end
  T.ok(pos["table:app.b"] < pos["view:app.c"], "after = { b }")
  local last_step = steps[#steps]
  T.eq(#last_step.waits, 3)
  T.ok(last_step.waits[1].seq > last_step.waits[3].seq, "the latest first")
end)

T.test("`last` levels: an event trigger enabled (2) after default privileges (true, 1)", function()
  local a = object("table", "app.a")
  local enable = object("function", "app.evt()", { steps = { { last = 2 } } })
  local privs = object("schema", "app", { steps = { { last = true } } })
  local pre, _, errors, steps = plan { enable, privs, a }
  T.eq(errors, {})
  T.eq(pre, { "table:app.a", "schema:app", "function:app.evt()" })
  local by_key = {}
  for _, step in ipairs(steps) do by_key[step.object.key] = step end
  local waits = {}
  for _, other in ipairs(by_key["function:app.evt()"].waits) do waits[#waits + 1] = other.object.key end
  table.sort(waits)
  T.eq(waits, { "schema:app", "table:app.a" }, "level 2 waits for level 1 and for unmarked steps")
  T.eq(#by_key["schema:app"].waits, 1, "level 1 does not wait for level 2")
end)

T.test("objects not selected, kept as they exist, or written by another object write no step", function()
  local t = object("table", "app.t")
  local gone = object("table", "app.gone", { selected = false })
  local kept = object("table", "app.kept")
  kept.keep_existing = true
  local inline = object("constraint", "app.t.t_check")
  inline.inline_of = t
  needs(t, gone)
  local pre, post, errors = plan { t, gone, kept, inline }
  T.eq(errors, {})
  T.eq(pre, { "table:app.t" })
  T.eq(post, {})
end)

T.test("a kind that cannot write its DDL is a plan error naming the object", function()
  local bad = object("view", "app.bad", { create = function() error("no definition") end })
  local pre, _, errors = plan { object("table", "app.t"), bad }
  T.eq(#errors, 1)
  T.ok(errors[1].obj == bad)
  T.match(errors[1].msg, "could not write the DDL of view app%.bad: .*no definition")
  T.eq(pre, { "table:app.t" })
end)

T.test("step keys name the kind, the object and the step", function()
  local t = object("table", '"Odd"."T"', { steps = { {}, { kind = "table_alter", suffix = "alter" } } })
  local pre = plan { t }
  T.eq(pre, { 'table:"Odd"."T"', 'table_alter:"Odd"."T"/alter' })
end)

T.test("the order is the same on every run", function()
  local function build()
    local objs = {}
    for i = 1, 30 do objs[i] = object(i % 3 == 0 and "view" or "table", string.format("s.o%02d", i)) end
    for i = 3, 30, 3 do needs(objs[i], objs[i - 1]); needs(objs[i], objs[i - 2]) end
    needs(objs[1], objs[30])
    return objs
  end
  local first = plan(build())
  for _ = 1, 5 do T.eq(plan(build()), first) end
  local pos = {}
  for i, k in ipairs(first) do pos[k] = i end
  T.ok(pos["view:s.o30"] < pos["table:s.o01"], "o01 needs o30")
end)

T.test("a step with secrets keeps its real statement through the order (tide.secret)", function()
  local secret = require "tide.secret"
  local server = object("table", "app.s", { create = function()
    return { secret.keep({ sql = "CREATE SERVER s OPTIONS (password '********')" },
                         "CREATE SERVER s OPTIONS (password 'real')", { "real" }) }
  end })
  local pre, _, errors, steps = plan { server }
  T.eq(errors, {})
  T.eq(pre, { "table:app.s" })
  T.eq(steps[1].sql, "CREATE SERVER s OPTIONS (password '********')", "shown masked")
  T.eq(secret.sql(steps[1]), "CREATE SERVER s OPTIONS (password 'real')", "sent with the real value")
end)

T.test("a working step keeps its fields as list items, read, written and listed by name", function()
  local t = object("table", "app.t")
  t.phase = "pre"   -- (tide.plan.objects gives an object its kind's phase)
  local parent = object("table", "app.p")
  local all = {}
  local fk = order.add_step(t, { kind = "fkey", sql = "ALTER TABLE app.t ADD ...", data = "referenced", after = { parent },
                                 custom = 7 }, all)
  T.eq({ fk.kind, fk.data, fk.after_objects[1], fk.custom, fk.seq, fk.key, fk.phase, fk.trailing },
       { "fkey", "referenced", parent, 7, 1, "fkey:app.t", "pre" })
  T.eq({ rawget(fk, "kind"), rawget(fk, "data"), rawget(fk, "custom") }, { nil, nil, 7 },
       "named fields are list items; a field STEP_FIELDS does not name is the step's own")
  local names = {}
  for k in pairs(fk) do names[#names + 1] = k end
  table.sort(names)
  T.eq(names, { "after_objects", "custom", "data", "key", "kind", "object", "phase", "rank", "seq", "sql" })
  fk.waits = { fk }
  fk.phase = "post"
  T.eq({ #fk.waits, fk.phase }, { 1, "post" })
  local comment = order.add_step(t, { kind = "comment", sql = "COMMENT ON TABLE app.t IS 'x'" }, all)
  T.eq({ comment.trailing, comment.seq, comment.data }, { true, 2, nil }, "a comment finishes its object off")
end)

T.test("an object's steps: its one step, or a list once it has more, each_step goes through either", function()
  local t = object("table", "app.t")
  t.phase = "pre"
  local function keys(obj)
    local out = {}
    for i, step in order.each_step(obj) do out[i] = step.key end
    return out
  end
  T.eq(keys(t), {}, "none yet")
  local all = {}
  local first = order.add_step(t, { sql = "CREATE TABLE app.t ()" }, all)
  T.ok(rawequal(t.steps, first), "one step: the step itself")
  T.eq(keys(t), { "table:app.t" })
  order.add_step(t, { kind = "comment", sql = "COMMENT ON TABLE app.t IS 'x'" }, all)
  order.add_step(t, { kind = "owner", sql = "ALTER TABLE app.t OWNER TO app" }, all)
  T.eq(keys(t), { "table:app.t", "comment:app.t", "owner:app.t" }, "then a list, in order")
end)
