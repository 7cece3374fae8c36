-- tide.intern: equal values come back as one shared table, different ones never do.
local T = require "testlib"
local intern = require "tide.intern"

T.test("lists of names: equal lists are one table, different ones stay apart", function()
  local pool = intern.pool()
  local a = pool:names({ "id", "v" })
  T.ok(rawequal(pool:names({ "id", "v" }), a), "an equal list: the first one")
  T.ok(not rawequal(pool:names({ "v", "id" }), a), "another order: another list")
  T.ok(not rawequal(pool:names({ "id" }), a), "a shorter list")
  T.ok(not rawequal(pool:names({ "id", "v", "w" }), a), "a longer list")
  -- names that would run together if joined without their lengths
  T.ok(not rawequal(pool:names({ "a,b" }), pool:names({ "a", "b" })))
  T.ok(not rawequal(pool:names({ "ab", "c" }), pool:names({ "a", "bc" })))
  local odd = { "id", "v", extra = true }
  T.ok(rawequal(pool:names(odd), odd), "a list with other fields is left alone")
  local mixed = { "id", 1 }
  T.ok(rawequal(pool:names(mixed), mixed), "a list of more than strings is left alone")
  T.eq(pool:names(nil), nil)
end)

T.test("tables of fields: equal fields and metatable make one table", function()
  local pool = intern.pool()
  local meta = { __index = { generated = "" } }
  local function col(name, type_oid, not_null, m)
    return setmetatable({ name = name, type_oid = type_oid, not_null = not_null }, m)
  end
  local a = pool:value(col("id", 23, true, meta))
  T.ok(rawequal(pool:value(col("id", 23, true, meta)), a))
  T.ok(not rawequal(pool:value(col("id", 23, false, meta)), a), "a boolean apart")
  T.ok(not rawequal(pool:value(col("id", 20, true, meta)), a), "a number apart")
  T.ok(not rawequal(pool:value(col("id", 23.0, true, meta)), a), "a float is not the integer")
  T.ok(not rawequal(pool:value(col("id", "23", true, meta)), a), "a string is not the number")
  local big = pool:value({ n = (1 << 53) })
  T.ok(not rawequal(pool:value({ n = (1 << 53) + 1 }), big), "integers past a double's precision stay apart")
  T.ok(not rawequal(pool:value(col("id", 23, true, nil)), a), "another metatable")
  T.eq(pool:value(col("id", 23, true, meta)).generated, "", "the metatable still answers")
  -- lists of interned tables: equal when their elements are the same tables
  local b = pool:value(col("v", 25, true, meta))
  local l1 = pool:value({ a, b })
  T.ok(rawequal(pool:value({ pool:value(col("id", 23, true, meta)), pool:value(col("v", 25, true, meta)) }), l1))
  T.ok(not rawequal(pool:value({ b, a }), l1), "another order")
  -- a table holding a table not interned: equal only with that same table
  local inner = { 1 }
  local x = pool:value({ f = inner })
  T.ok(rawequal(pool:value({ f = inner }), x))
  T.ok(not rawequal(pool:value({ f = { 1 } }), x))
  local fn = { f = print }
  T.ok(rawequal(pool:value(fn), fn), "a function inside: never shared")
end)

T.test("a pool holds its values weakly", function()
  local pool = intern.pool()
  pool:names({ "gone" })
  collectgarbage("collect")
  T.eq(next(pool.cache), nil, "nothing holds the list: the pool lets it go")
end)
