-- tide.rename: schema, table, column and object name mapping, collisions, the 63-byte limit.
local T = require "testlib"
local rename = require "tide.rename"

T.test("no rename table keeps every name", function()
  local map = rename.compile(nil)
  T.eq(map:schema("Public"), "Public")
  T.eq({ map:table("public", "Order Items") }, { "public", "Order Items" })
  T.eq(map:column("public", "t", "Id"), "Id")
  T.eq({ map:object("index", "public", "t_pkey") }, { "public", "t_pkey" })
end)

T.test("literal maps for schema, table and column", function()
  local map = rename.compile {
    schema = { public = "shop", ["Old Data"] = "archive" },
    table = { ["public.Users"] = "customers", ["billing.inv"] = { schema = "finance", name = "invoices" } },
    column = { ["public.Users.login"] = "username" },
  }
  T.eq(map:schema("public"), "shop")
  T.eq(map:schema("Old Data"), "archive")
  T.eq(map:schema("billing"), "billing")
  T.eq({ map:table("public", "Users") }, { "shop", "customers" })
  T.eq({ map:table("public", "orders") }, { "shop", "orders" })
  T.eq({ map:table("billing", "inv") }, { "finance", "invoices" })
  T.eq(map:column("public", "Users", "login"), "username")
  T.eq(map:column("public", "Users", "email"), "email")
  T.eq(map:column("public", "orders", "login"), "login")
end)

T.test("literal keys: quoted parts hold dots and quotes, parts are not case-folded", function()
  local map = rename.compile {
    table = { ['"odd.schema"."a ""b"""'] = "ab", ["Public.T"] = "upper_t" },
    column = { ['public."x.y".c'] = "d" },
  }
  T.eq({ map:table("odd.schema", 'a "b"') }, { "odd.schema", "ab" })
  T.eq({ map:table("Public", "T") }, { "Public", "upper_t" })
  T.eq({ map:table("public", "t") }, { "public", "t" })
  T.eq(map:column("public", "x.y", "c"), "d")
end)

T.test("rules: prefix, suffix, strip_prefix, strip_suffix, in order", function()
  local map = rename.compile {
    table = { { strip_prefix = "tmp_" }, { strip_suffix = "_bak" }, { prefix = "app_" }, { suffix = "_v2" } },
    column = { { prefix = "c_" } },
  }
  T.eq({ map:table("public", "tmp_orders_bak") }, { "public", "app_orders_v2" })
  T.eq({ map:table("public", "users") }, { "public", "app_users_v2" })
  -- A prefix equal to the whole name is not stripped (that would leave no name).
  T.eq({ map:table("public", "tmp_") }, { "public", "app_tmp__v2" })
  T.eq(map:column("public", "users", "id"), "c_id")
end)

T.test("rules: match and replace with globs and regexes", function()
  local map = rename.compile {
    table = {
      { match = "legacy_*_tbl", replace = "old_\\1" },
      { match = { re = "^(\\w+)_(\\d{4})$" }, replace = "\\1_y\\2" },
    },
  }
  T.eq(select(2, map:table("public", "legacy_users_tbl")), "old_users")
  T.eq(select(2, map:table("public", "events_2024")), "events_y2024")
  T.eq(select(2, map:table("public", "events_24")), "events_24")
  T.raises(function() rename.compile { table = { { match = "a*", replace = "\\2" } } } end,
    "^rename.table%[1%].replace: replacement '\\2' refers to \\2 but \"a%*\" has 1 group")
end)

T.test("rules: only limits a rule to some tables", function()
  local map = rename.compile {
    table = { { prefix = "b_", only = "billing.*" }, { suffix = "_x", only = { { re = "^crm\\." }, "sales.lead*" } } },
    column = { { prefix = "n_", only = "public.users" } },
  }
  T.eq({ map:table("billing", "inv") }, { "billing", "b_inv" })
  T.eq({ map:table("public", "inv") }, { "public", "inv" })
  T.eq({ map:table("crm", "contacts") }, { "crm", "contacts_x" })
  T.eq({ map:table("sales", "leads") }, { "sales", "leads_x" })
  T.eq(map:column("public", "users", "name"), "n_name")
  T.eq(map:column("public", "orders", "name"), "name")
end)

T.test("case policy: top level and as a rule; literal values stay verbatim", function()
  local map = rename.compile {
    case = "lower",
    table = { ["public.KeepMe"] = "KeepMe" },
  }
  T.eq(map:schema("Sales"), "sales")
  T.eq({ map:table("Sales", "OrderItems") }, { "sales", "orderitems" })
  T.eq({ map:table("public", "KeepMe") }, { "public", "KeepMe" })
  T.eq(map:column("Sales", "OrderItems", "ItemID"), "itemid")
  -- Only ASCII letters change case, as PostgreSQL folds unquoted names.
  T.eq(map:column("s", "t", "ÉtatX"), "Étatx")
  map = rename.compile { table = { { case = "upper" } } }
  T.eq({ map:table("public", "orders") }, { "public", "ORDERS" })
  T.eq(map:column("public", "orders", "id"), "id")
end)

T.test("functions get (kind, schema, name[, table]) and nil keeps the name", function()
  local calls = {}
  local map = rename.compile {
    schema = function(kind, schema, name) calls[#calls + 1] = kind .. ":" .. schema .. ":" .. name; return "s_" .. name end,
    table = function(kind, schema, name)
      calls[#calls + 1] = kind .. ":" .. schema .. "." .. name
      if kind == "table" and name == "users" then return "crm", "people" end -- schema move
      if kind == "table" then return name:upper() end
    end,
    column = function(kind, schema, name, table_name)
      calls[#calls + 1] = kind .. ":" .. schema .. "." .. table_name .. "." .. name
      return name .. "_c"
    end,
  }
  T.eq(map:schema("public"), "s_public")
  T.eq({ map:table("public", "orders") }, { "s_public", "ORDERS" })
  T.eq({ map:table("public", "users") }, { "crm", "people" })
  T.eq({ map:object("sequence", "public", "orders_id_seq") }, { "s_public", "orders_id_seq" })
  T.eq(map:column("public", "orders", "id"), "id_c")
  -- Answers are remembered: asking again does not call the functions again.
  map:table("public", "orders")
  map:column("public", "orders", "id")
  T.eq(calls, { "schema:public:public", "table:public.orders", "table:public.users",
    "sequence:public.orders_id_seq", "column:public.orders.id" })
end)

T.test("function errors and wrong results name the level and the object", function()
  local map = rename.compile { table = function() error("nope") end }
  T.raises(function() map:table("public", "t") end, "^rename.table raised an error for table public.t: .*nope")
  map = rename.compile { column = function() return 42 end }
  T.raises(function() map:column("public", "t", "c") end,
    "^rename.column returned a number for column public.t.c; expected a name")
end)

T.test("other kinds follow the table level unless they have their own", function()
  local map = rename.compile {
    schema = { public = "shop" },
    table = { { prefix = "t_" } },
    index = { { suffix = "_idx" } },
    ["function"] = {},
  }
  T.eq({ map:object("view", "public", "v") }, { "shop", "t_v" })
  T.eq({ map:object("sequence", "public", "s") }, { "shop", "t_s" })
  T.eq({ map:object("constraint", "public", "c") }, { "shop", "t_c" })
  T.eq({ map:object("index", "public", "i") }, { "shop", "i_idx" })
  T.eq({ map:object("function", "public", "f") }, { "shop", "f" })
  T.eq({ map:object("extension", "public", "pgcrypto") }, { "shop", "pgcrypto" })
  T.eq({ map:object("schema", "public", "public") }, { "shop", "shop" })
end)

T.test("collisions name both sources", function()
  local map = rename.compile { case = "lower", schema = { staging = "public" } }
  local err = T.raises(function()
    map:check_collisions {
      { "table", "public", "Users" },
      { "table", "public", "users" },
      { "table", "public", "orders" },
    }
  end)
  T.eq(err, 'rename: table public."Users" and table public.users both map to public.users')
  -- A view and a table share one name space; schemas merged by the map collide too.
  err = T.raises(function()
    map:check_collisions {
      { kind = "view", schema = "staging", name = "orders" },
      { kind = "table", schema = "public", name = "orders" },
    }
  end)
  T.eq(err, "rename: view staging.orders and table public.orders both map to public.orders")
  -- Columns collide within a table only; function overloads are told apart by args.
  local found = map:collisions {
    { "column", "public", "Email", "users" }, { "column", "public", "email", "users" },
    { "column", "public", "email", "orders" },
    { kind = "function", schema = "public", name = "F", args = "integer" },
    { kind = "function", schema = "public", name = "f", args = "text" },
    { "table", "public", "users" }, { "table", "public", "users" }, -- the same source twice
  }
  T.eq(#found, 1)
  T.eq(found[1].sources, { 'column public.users."Email"', "column public.users.email" })
  T.eq(found[1].target, "public.users.email")
  T.eq(map:check_collisions { { "table", "public", "a" }, { "table", "public", "b" } }, true)
end)

T.test("three sources on one target are all listed", function()
  local map = rename.compile { table = { { strip_prefix = "a_" }, { strip_prefix = "b_" } } }
  local err = T.raises(function()
    map:check_collisions { { "table", "s", "x" }, { "table", "s", "a_x" }, { "table", "s", "b_x" } }
  end)
  T.eq(err, "rename: table s.x, table s.a_x and table s.b_x all map to s.x")
end)

T.test("names longer than 63 bytes after mapping are an error; bytes, not characters", function()
  local name60 = string.rep("a", 60)
  local map = rename.compile { table = { { suffix = "_old" } } }
  T.eq(#select(2, map:table("public", string.rep("a", 59))), 63)
  T.raises(function() map:table("public", name60) end,
    "^rename.table: table public." .. name60 .. " maps to \"" .. name60 .. "_old\", which is 64 bytes long; PostgreSQL names are at most 63 bytes$")
  -- 31 two-byte characters and a 1-byte suffix: 32 characters, 63 bytes: fine; one more: not.
  local e31 = string.rep("é", 31)
  map = rename.compile { column = { { suffix = "x" } } }
  T.eq(map:column("s", "t", e31), e31 .. "x")
  map = rename.compile { column = { { suffix = "xy" } } }
  T.raises(function() map:column("s", "t", e31) end, "64 bytes long")
  T.raises(function() rename.compile { schema = { a = string.rep("b", 64) } } end,
    '^rename.schema%["a"%]: "b+" is 64 bytes long')
end)

T.test("spec errors name the key path", function()
  local cases = {
    { { tables = {} }, "^rename: unknown key tables" },
    { { table = "lower" }, "^rename.table: expected a table %(names and rules%) or a function" },
    { { table = { users = "x" } }, '^rename.table%["users"%]: expected a key of the form "schema.table"' },
    { { column = { ["public.users"] = "x" } }, 'expected a key of the form "schema.table.column"' },
    { { table = { { prefix = "x_", suffix = "_y" } } }, "^rename.table%[1%]: one action per rule %(found prefix and suffix%)" },
    { { table = { { prefx = "x_" } } }, "^rename.table%[1%]: unknown key prefx" },
    { { table = { { case = "title" } } }, '^rename.table%[1%].case: expected "lower", "upper" or "keep"' },
    { { case = "Lower" }, '^rename.case: expected "lower", "upper" or "keep"' },
    { { table = { { match = { re = "a(b" }, replace = "x" } } },
      "^rename.table%[1%].match: invalid regex 'a%(b': unclosed group at position 2$" },
    { { table = { { match = "a*" } } }, "^rename.table%[1%]: a match rule needs replace" },
    { { table = { { prefix = "" } } }, "^rename.table%[1%].prefix: expected a non%-empty string" },
    { { table = { ["public.t"] = { schema = "x" } } }, '^rename.table%["public.t"%].name: expected a non%-empty name' },
    { { extension = {} }, "^rename: unknown key extension" },
  }
  for _, case in ipairs(cases) do
    T.raises(function() rename.compile(case[1]) end, case[2])
  end
end)

T.test("map:rewrite renames inside a definition with the mapper's answers", function()
  local map = rename.compile {
    schema = { public = "shop" },
    table = { ["public.orders"] = "Orders" },
    column = { ["public.orders.id"] = "order id" },
    index = { { prefix = "ix_" } },
  }
  local sql, warnings = map:rewrite("CREATE UNIQUE INDEX orders_pkey ON public.orders USING btree (id)", {
    schema = "public", table = "orders",
    columns = function() return { "id", "total" } end,
  })
  T.eq(sql, 'CREATE UNIQUE INDEX ix_orders_pkey ON shop."Orders" USING btree ("order id")')
  T.eq(warnings, {})
end)

T.test("a table function may return gsub's two results; only a string second value moves schemas", function()
  local map = rename.compile { table = function(_, _, name) return name:gsub("^tbl_", "") end }
  T.eq({ map:table("public", "tbl_orders") }, { "public", "orders" })
  map = rename.compile { table = function(_, _, name) return "archive", name end }
  T.eq({ map:table("public", "orders") }, { "archive", "orders" })
end)
