-- tide.select and tide.pattern: which objects, columns and rows a playbook's `select` keeps.
local T = require "testlib"
local select_module = require "tide.select"
local pattern = require "tide.pattern"

-- Asks the selector about each { kind, schema, name [, table] } and returns the kept ones as
-- "schema.name" strings, in order.
local function kept(sel, objects)
  local out = {}
  for _, o in ipairs(objects) do
    if sel:object(o[1], o[2], o[3], o[4]) then out[#out + 1] = o[2] .. "." .. o[3] end
  end
  return out
end

local catalog = {
  { "table", "public", "orders" },
  { "table", "public", "order_items" },
  { "table", "public", "tmp_load" },
  { "view", "public", "order_totals" },
  { "table", "billing", "invoices" },
  { "table", "billing", "payments" },
  { "table", "audit", "log_2024" },
  { "table", "audit", "log_old" },
}

T.test("no select table keeps everything", function()
  local sel = select_module.compile(nil)
  T.eq(#kept(sel, catalog), 8)
  T.eq(sel:object("schema", "audit"), true)
end)

T.test("include by qualified glob and by bare schema name", function()
  local sel = select_module.compile { include = { "public.order*", "billing" } }
  T.eq(kept(sel, catalog), { "public.orders", "public.order_items", "public.order_totals",
    "billing.invoices", "billing.payments" })
  local ok, reason = sel:object("table", "audit", "log_2024")
  T.eq(ok, false)
  T.eq(reason, "not matched by any select.include pattern")
end)

T.test("exclude beats include and names the pattern", function()
  local sel = select_module.compile { include = { "public.*" }, exclude = { "public.tmp_*" } }
  T.eq(kept(sel, catalog), { "public.orders", "public.order_items", "public.order_totals" })
  local ok, reason = sel:object("table", "public", "tmp_load")
  T.eq(ok, false)
  T.eq(reason, 'excluded by "public.tmp_*"')
end)

T.test("exclude alone keeps the rest", function()
  local sel = select_module.compile { exclude = { "audit", "*.*_items" } }
  T.eq(kept(sel, catalog), { "public.orders", "public.tmp_load", "public.order_totals",
    "billing.invoices", "billing.payments" })
end)

T.test("glob wildcards: ?, classes, negation, escapes", function()
  local sel = select_module.compile { include = { "audit.log_20[0-9][0-9]" } }
  T.eq(kept(sel, catalog), { "audit.log_2024" })
  sel = select_module.compile { include = { "audit.log_[!0-9]*" } }
  T.eq(kept(sel, catalog), { "audit.log_old" })
  sel = select_module.compile { include = { "billing.??????ts" } }
  T.eq(kept(sel, catalog), { "billing.payments" })
  -- A name with a dot in it: the escaped dot is a plain character, not the separator.
  sel = select_module.compile { include = { "odd.a\\.b" } }
  T.eq(sel:object("table", "odd", "a.b"), true)
  T.eq(sel:object("table", "odd", "aXb"), false)
end)

T.test("glob ? and classes take whole UTF-8 characters; matching is case-sensitive", function()
  local sel = select_module.compile { include = { "public.?quipe", "public.caf[éè]" } }
  T.eq(sel:object("table", "public", "équipe"), true)
  T.eq(sel:object("table", "public", "café"), true)
  T.eq(sel:object("table", "public", "cafe"), false)
  sel = select_module.compile { include = { "public.Users" } }
  T.eq(sel:object("table", "public", "Users"), true)
  T.eq(sel:object("table", "public", "users"), false)
end)

T.test("regex patterns search schema.name", function()
  local sel = select_module.compile { include = { { re = [[^audit\.log_\d{4}$]] }, { re = "voice" } } }
  T.eq(kept(sel, catalog), { "billing.invoices", "audit.log_2024" })
  sel = select_module.compile { exclude = { { re = "^(public|billing)\\." } } }
  T.eq(kept(sel, catalog), { "audit.log_2024", "audit.log_old" })
end)

T.test("regex semantics: backtracking, alternation, lazy, anchors", function()
  local function find(re, s)
    local start, stop, groups = pattern.compile({ re = re }):find(s)
    return { start, stop, groups }
  end
  T.eq(find(".*_old", "tbl_old_old"), { 1, 11, {} })
  T.eq(find(".*?_old", "tbl_old_old"), { 1, 7, {} })
  T.eq(find("(a|ab)(c|bcd)(d*)", "abcd"), { 1, 4, { "a", "bcd", "" } })
  T.eq(find("^x", "ax"), { nil, nil, nil })
  T.eq(find("b+$", "abbb"), { 2, 4, {} })
  T.eq(find("[^a-z]", "abC"), { 3, 3, {} })
  T.eq(find("colou?r", "my color"), { 4, 8, {} })
  T.eq(find("(?:ab){2}", "xababx"), { 2, 5, {} })
  T.eq(pattern.compile({ re = "^a{2,3}$" }):match("aaaa"), false)
  T.eq(pattern.compile({ re = "^a{2,3}$" }):match("aaa"), true)
  T.eq(pattern.compile({ re = "^\\w+$" }):match("order_1"), true)
  T.eq(pattern.compile({ re = "^\\w+$" }):match("order-1"), false)
end)

T.test("invalid patterns raise errors that name the pattern, the problem and the key", function()
  T.raises(function() pattern.compile { re = "a(b" } end,
    "^invalid regex 'a%(b': unclosed group at position 2$")
  T.raises(function() pattern.compile { re = "*a" } end, "nothing to repeat at position 1")
  T.raises(function() pattern.compile { re = "[abc" } end, "unclosed character class at position 1")
  T.raises(function() pattern.compile { re = "a)" } end, "unmatched '%)' at position 2")
  T.raises(function() pattern.compile { re = "(a*)*" } end, "can match the empty string")
  T.raises(function() pattern.compile { re = "(a)\\1" } end, "back%-references are not supported")
  local err = T.raises(function()
    select_module.compile { include = { "public.*", { re = "a(b" } } }
  end)
  T.eq(err, "select.include[2]: invalid regex 'a(b': unclosed group at position 2")
  err = T.raises(function() select_module.compile { exclude = { "public.[ab" } } end)
  T.eq(err, "select.exclude[1]: invalid glob 'public.[ab': unclosed character class at position 8")
end)

T.test("kinds include and exclude", function()
  local sel = select_module.compile { kinds = { exclude = { "view", "trigger" } } }
  T.eq(kept(sel, catalog), { "public.orders", "public.order_items", "public.tmp_load",
    "billing.invoices", "billing.payments", "audit.log_2024", "audit.log_old" })
  local ok, reason = sel:object("trigger", "public", "orders_audit", "orders")
  T.eq({ ok, reason }, { false, 'kind "trigger" excluded by select.kinds.exclude' })
  sel = select_module.compile { kinds = { include = { "view" } } }
  T.eq(kept(sel, catalog), { "public.order_totals" })
  T.raises(function() select_module.compile { kinds = { include = { "tabel" } } } end,
    '^select.kinds.include%[1%]: unknown kind "tabel"')
  -- The planner can pass its own list of kinds.
  sel = select_module.compile({ kinds = { exclude = { "gadget" } } }, { kinds = { "table", "gadget" } })
  T.eq(sel:object("gadget", "public", "g"), false)
end)

T.test("objects of a table follow the table; an exclude may also name them", function()
  local sel = select_module.compile { include = { "public.orders" }, exclude = { "public.*_big_idx" } }
  T.eq(sel:object("index", "public", "orders_pkey", "orders"), true)
  T.eq(sel:object("trigger", "public", "audit_trg", "orders"), true)
  T.eq(sel:object("index", "public", "items_pkey", "order_items"), false)
  local ok, reason = sel:object("index", "public", "orders_big_idx", "orders")
  T.eq({ ok, reason }, { false, 'excluded by "public.*_big_idx"' })
end)

T.test("schemas: selected by a bare name or the schema half of a pattern", function()
  local sel = select_module.compile { include = { "public.order*", "billing" }, exclude = { "public.tmp_*" } }
  T.eq(sel:object("schema", "public"), true)
  T.eq(sel:object("schema", "billing"), true)
  T.eq(sel:object("schema", "audit"), false)
  sel = select_module.compile { exclude = { "audit", "public.tmp_*" } }
  T.eq(sel:object("schema", "public"), true) -- a qualified exclude drops tables, not the schema
  local ok, reason = sel:object("schema", "audit")
  T.eq({ ok, reason }, { false, 'excluded by "audit"' })
end)

T.test("where predicates see the object and can give a reason", function()
  local seen = {}
  local sel = select_module.compile {
    exclude = { "audit" },
    where = {
      function(obj) seen[#seen + 1] = obj.kind .. ":" .. obj.schema .. "." .. obj.name; return true end,
      function(obj) if obj.name:find("tmp") then return false, "scratch table" end return true end,
      function(obj) return obj.kind ~= "view" end,
    },
  }
  T.eq(kept(sel, catalog), { "public.orders", "public.order_items", "billing.invoices", "billing.payments" })
  -- Excluded objects never reach the predicates.
  T.eq(#seen, 6)
  T.eq(seen[4], "view:public.order_totals")
  T.eq({ sel:object("table", "public", "tmp_load") }, { false, "scratch table (select.where[2])" })
  T.eq({ sel:object("view", "public", "v") }, { false, "dropped by select.where[3]" })
  local failing = select_module.compile { where = function() error("boom") end }
  T.raises(function() failing:object("table", "public", "orders") end,
    "select.where%[1%] raised an error for table public.orders: .*boom")
end)

T.test("columns: include or exclude per table, order kept", function()
  local sel = select_module.compile {
    columns = {
      ["public.users"] = { exclude = { "legacy_*", "password_hash" } },
      ["public.events"] = { include = { "id", "created_at", { re = "^payload_" } } },
    },
  }
  local keep, drop = sel:columns("public", "users", { "id", "legacy_hash", "email", "password_hash", "legacy_flag", "name" })
  T.eq(keep, { "id", "email", "name" })
  T.eq(drop, { "legacy_hash", "password_hash", "legacy_flag" })
  keep, drop = sel:columns("public", "events", { "payload_a", "id", "kind", "created_at", "xpayload_" })
  T.eq(keep, { "payload_a", "id", "created_at" })
  T.eq(drop, { "kind", "xpayload_" })
  keep, drop = sel:columns("public", "other", { "b", "a" })
  T.eq(keep, { "b", "a" })
  T.eq(drop, {})
end)

T.test("columns: an exact key beats a pattern key; two pattern keys are an error", function()
  local sel = select_module.compile {
    columns = {
      ["public.*"] = { exclude = { "secret" } },
      ["*.users"] = { exclude = { "ssn" } },
      ["public.users"] = { exclude = { "pin" } },
    },
  }
  T.eq({ sel:columns("public", "users", { "secret", "ssn", "pin" }) }, { { "secret", "ssn" }, { "pin" } })
  T.eq({ sel:columns("public", "orders", { "secret", "ssn" }) }, { { "ssn" }, { "secret" } })
  T.eq({ sel:columns("crm", "users", { "secret", "ssn" }) }, { { "secret" }, { "ssn" } })
  sel = select_module.compile {
    columns = { ["public.*"] = { exclude = { "a" } }, ["*.users"] = { exclude = { "b" } } },
  }
  T.raises(function() sel:columns("public", "users", { "a" }) end,
    'select.columns: both "%*.users" and "public.%*" apply to public.users')
end)

T.test("row filters are carried as given", function()
  local sel = select_module.compile { rows = { ["public.events"] = "created_at >= date '2025-01-01'" } }
  T.eq(sel:row_filter("public", "events"), "created_at >= date '2025-01-01'")
  T.eq(sel:row_filter("public", "users"), nil)
end)

T.test("spec errors name the key path", function()
  local cases = {
    { { includes = {} }, "^select: unknown key includes" },
    { { include = 5 }, "^select.include%[1%]: a pattern is a glob string or { re = \"...\" }, not a number" },
    { { include = { { regex = "x" } } }, "^select.include%[1%]: a pattern table takes only the key 're'" },
    { { columns = { ["public.users"] = { include = { "a" }, exclude = { "b" } } } },
      '^select.columns%["public.users"%]: give include or exclude, not both$' },
    { { columns = { ["public.users"] = {} } }, '^select.columns%["public.users"%]: give include or exclude$' },
    { { columns = { ["public.users"] = { exclude = { { re = "(" } } } } },
      '^select.columns%["public.users"%].exclude%[1%]: invalid regex' },
    { { rows = { ["public.e"] = 42 } }, '^select.rows%["public.e"%]: expected a SQL condition' },
    { { where = { "not a function" } }, "^select.where%[1%]: expected a function, got a string" },
    { { kinds = { "table" } }, "^select.kinds: unknown key 1" },
    { "public.*", "^select: expected a table, got a string" },
    { { include = { "public." } }, "^select.include%[1%]: invalid glob 'public.': nothing after the dot" },
  }
  for _, case in ipairs(cases) do
    T.raises(function() select_module.compile(case[1]) end, case[2])
  end
end)

T.test("unused() reports patterns and keys that matched nothing", function()
  local sel = select_module.compile {
    include = { "public.*", "pubilc.orders" },
    exclude = { "public.tmp_*" },
    columns = { ["public.orders"] = { exclude = { "nope" } }, ["public.ghost"] = { exclude = { "x" } } },
  }
  kept(sel, catalog)
  sel:columns("public", "orders", { "id" })
  T.eq(sel:unused(), {
    'select.include[2] "pubilc.orders" matched nothing',
    'select.columns["public.ghost"] (no such table) matched nothing',
    'select.columns["public.orders"].exclude[1] "nope" matched nothing',
  })
end)
