-- tide.plan.existing's lists of entries (plan.existing, plan.conflicts): the object and one
-- value kept, the entry made when read.
local T = require "testlib"
local existing = require "tide.plan.existing"
local json = require "tide.json"

local function object(kind, schema, name, def)
  local obj = { kind = kind, schema = schema, name = name, def = def or {},
                ident = schema and (schema .. "." .. name) or name }
  obj.key = kind .. ":" .. obj.ident
  obj.target = obj
  return obj
end

T.test("existing: entries read as tables of kind, key, target and action", function()
  local list = existing.entries()
  T.eq(#list, 0)
  local t = object("table", "app", "Orders")
  local s = object("schema", nil, "app", { global = true })
  existing.add(list, t, "kept (same definition)")
  existing.add(list, s, "used")
  T.eq(#list, 2)
  T.eq(list[1], { kind = "table", key = "table:app.Orders", target = 'app."Orders"', action = "kept (same definition)" })
  T.eq(list[2], { kind = "schema", key = "schema:app", target = "app", action = "used" })
  T.eq({ list[0], list[3], list.x }, {}, "nothing outside 1..n")
  local seen = {}
  for i, e in ipairs(list) do seen[i] = e.kind end
  for i, e in pairs(list) do seen[#seen + 1] = i .. e.kind end
  T.eq(seen, { "table", "schema", "1table", "2schema" })
  T.eq(json.decode(json.encode(list))[2].action, "used", "written as a JSON list")
  T.eq(json.encode(existing.entries()), "[]", "an empty one too")
  T.ok(not pcall(function() list[3] = {} end), "grows by add only")
end)

T.test("conflicts: the message of schema.existing = \"error\" made when read, another kept", function()
  local list = existing.entries(true)
  existing.add(list, object("index", "app", "t_idx"))
  existing.add(list, object("view", "app", "v"), "view app.v already exists on the target with a different definition")
  T.eq(list[1].message, 'index app.t_idx already exists on the target (schema.existing = "error"): drop it there, ' ..
    'or set schema.existing = "skip" or "drop"')
  T.eq({ list[1].kind, list[1].key, list[1].target, list[1].action }, { "index", "index:app.t_idx", "app.t_idx" })
  T.eq(list[2].message, "view app.v already exists on the target with a different definition")
  local plain = existing.detached(list)
  T.eq(getmetatable(plain), nil, "detached: plain tables")
  T.eq(plain, { list[1], list[2] })
  local other = {}
  T.ok(rawequal(existing.detached(other), other), "a plain list stays as it is")
end)
