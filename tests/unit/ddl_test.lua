-- tide.ddl and tide.ddl.table: DDL with mapped names (docs/schema.md, "Names in definitions";
-- docs/select-and-rename.md, "Inside definitions"). The naming context is made by hand in the
-- shape tide.plan gives it: source schema app is renamed to shop, table app.users to
-- shop.customers, its column login to username; type app.mood moves with its schema.
local T = require "testlib"
local ddl = require "tide.ddl"
local table_ddl = require "tide.ddl.table"
local rename = require "tide.rename"

local function rel(kind, schema, name, target_schema, target_name, oid)
  return { kind = kind, schema = schema, name = name, oid = oid, selected = true,
           target = { schema = target_schema, name = target_name } }
end

local function context()
  local map = rename.compile {
    schema = { app = "shop" },
    table = { ["app.users"] = "customers" },
    column = { ["app.users.login"] = "username" },
  }
  local users = rel("table", "app", "users", "shop", "customers", 101)
  users.columns = { { name = "id", target = "id" }, { name = "login", target = "username" } }
  local orders = rel("table", "app", "orders", "shop", "orders", 102)
  orders.columns = { { name = "id", target = "id" }, { name = "user_id", target = "user_id" } }
  local seq = rel("sequence", "app", "users_id_seq", "shop", "users_id_seq", 103)
  local mood = rel("type", "app", "mood", "shop", "mood", 104)
  local fn = rel("function", "app", "valid_login", "shop", "valid_login", 105)
  local warnings = {}
  local ctx = {
    identity = false, map = map,
    cat = { columns_by_relid = { [101] = { { name = "id" }, { name = "login" } },
                                 [102] = { { name = "id" }, { name = "user_id" } } } },
    by_name = {
      ["relation\0app\0users"] = users, ["relation\0app\0orders"] = orders,
      ["relation\0app\0users_id_seq"] = seq, ["type\0app\0mood"] = mood,
      ["function\0app\0valid_login"] = fn,
    },
    schema_names = { app = true, public = true },
    objects = { users, orders, seq, mood, fn },
    warnings = warnings,
  }
  ctx.warn = function(obj, msg) warnings[#warnings + 1] = { obj = obj, msg = msg } end
  ctx.map_name = function(_, schema, name) return map:table(schema, name) end
  return ctx, users, orders
end

local IDENTITY = { identity = true, warn = function() error("no warning expected") end }

T.test("literals read the same whatever standard_conforming_strings is", function()
  T.eq(ddl.literal("plain"), "'plain'")
  T.eq(ddl.literal("it's"), "'it''s'")
  T.eq(ddl.literal([[C:\dir]]), [[E'C:\\dir']])
  T.eq(ddl.literal([[it's C:\]]), [[E'it''s C:\\']])
  T.eq(ddl.literal(""), "''")
end)

T.test("names are quoted only where needed", function()
  T.eq(ddl.qualified("app", "users"), "app.users")
  T.eq(ddl.qualified("App", "my table"), '"App"."my table"')
  T.eq(ddl.qualified("order", "select"), '"order"."select"')
  T.eq(ddl.quote('a"b'), '"a""b"')
  T.eq(ddl.target({ target = { schema = "shop", name = "Customers" } }), 'shop."Customers"')
end)

T.test("lookup: objects of the plan by their target names, others by the schema map", function()
  local ctx = context()
  T.eq({ ddl.lookup(ctx, "relation", "app", "users") }, { "shop", "customers" })
  T.eq({ ddl.lookup(ctx, "type", "app", "mood") }, { "shop", "mood" })
  T.eq({ ddl.lookup(ctx, "type", "app", "users") }, { "shop", "customers" }, "a table's row type")
  T.eq({ ddl.lookup(ctx, "relation", "app", "ext_view") }, { "shop", "ext_view" },
       "not migrated (an extension's): name kept, schema mapped")
  T.eq({ ddl.lookup(ctx, "relation", "new", "total") }, { "new", "total" },
       "not a source schema (a record field): left alone")
  T.eq({ ddl.lookup(ctx, "type", "pg_catalog", "int4") }, { "pg_catalog", "int4" })
  T.eq({ ddl.lookup(ctx, "relation", nil, "users") }, { nil, "users" }, "unqualified: left alone")
  T.eq({ ddl.lookup(IDENTITY, "relation", "app", "users") }, { "app", "users" })
end)

T.test("columns follow the column map of their relation", function()
  local ctx, users, orders = context()
  T.eq(ddl.column(ctx, users, "login"), "username")
  T.eq(ddl.column(ctx, users, "id"), "id")
  T.eq(ddl.column(ctx, orders, "login"), "login", "the map names one table's column")
  T.eq(ddl.column(ctx, nil, "login"), "login")
  T.eq(ddl.column(IDENTITY, users, "login"), "login")
  T.eq(ddl.column_names(ctx, users), { "id", "login" })
end)

T.test("type text as format_type prints it", function()
  local ctx = context()
  T.eq(ddl.type_text(ctx, "app.mood"), "shop.mood")
  T.eq(ddl.type_text(ctx, "app.mood[]"), "shop.mood[]")
  T.eq(ddl.type_text(ctx, "character varying(20)"), "character varying(20)")
  T.eq(ddl.type_text(ctx, "numeric(10,2)"), "numeric(10,2)")
  T.eq(ddl.type_text(ctx, "pg_catalog.int4"), "pg_catalog.int4")
  T.eq(ddl.type_text(ctx, "timestamp(3) with time zone"), "timestamp(3) with time zone")
  T.eq(ddl.type_text(IDENTITY, "app.mood[]"), "app.mood[]")
end)

T.test("definitions: names mapped, literals and comments left alone", function()
  local ctx, users = context()
  T.eq(ddl.definition(ctx, "CHECK ((login <> 'login'::text))", users),
       "CHECK ((username <> 'login'::text))")
  T.eq(ddl.definition(ctx, "nextval('app.users_id_seq'::regclass)", users, { expression = true }),
       "nextval('shop.users_id_seq'::regclass)", "a regclass literal names a sequence")
  T.eq(ddl.definition(ctx, "lower(login)", users, { expression = true }), "lower(username)")
  T.eq(ddl.definition(ctx, "CHECK (app.valid_login(login))", users), "CHECK (shop.valid_login(username))")
  T.eq(#ctx.warnings, 0)
end)

T.test("an index definition names its own index and its table", function()
  local ctx, users = context()
  local idx = rel("index", "app", "users_login_idx", "shop", "customers_login_idx")
  T.eq(ddl.definition(ctx, "CREATE UNIQUE INDEX users_login_idx ON app.users USING btree (login)", users,
                      { own_kind = "index", own = idx }),
       "CREATE UNIQUE INDEX customers_login_idx ON shop.customers USING btree (username)")
end)

T.test("a foreign key names the referenced table and its columns", function()
  local ctx, _, orders = context()
  T.eq(ddl.definition(ctx, "FOREIGN KEY (user_id) REFERENCES app.users(id)", orders),
       "FOREIGN KEY (user_id) REFERENCES shop.customers(id)")
end)

T.test("without rename, definitions are used byte for byte", function()
  local sql = "CHECK ((login <> 'x'::text)) -- app.users"
  T.eq(ddl.definition(IDENTITY, sql, {}), sql)
  T.eq(ddl.query(IDENTITY, "SELECT u.login FROM app.users u"), "SELECT u.login FROM app.users u")
  T.eq(ddl.routine(IDENTITY, "CREATE FUNCTION app.f() ... $$ SELECT 1 $$", {}), "CREATE FUNCTION app.f() ... $$ SELECT 1 $$")
  T.eq(ddl.definition(context(), nil, {}), nil)
end)

T.test("view bodies: relations by their two parts, columns through the aliases", function()
  local ctx = context()
  local view = rel("view", "app", "v", "shop", "v")
  local out, changed = ddl.query(ctx, " SELECT u.id,\n    u.login\n   FROM app.users u", view, "the view app.v")
  T.eq(out, " SELECT u.id,\n    u.username\n   FROM shop.customers u")
  T.eq(changed, true)
  -- An implicit alias is the relation's own name, and follows its renaming.
  out = ddl.query(ctx, "SELECT users.login FROM app.users", view, "the view app.v")
  T.eq(out, "SELECT customers.username FROM shop.customers")
  -- A join: each alias with its own relation.
  out = ddl.query(ctx, "SELECT o.id, u.login FROM app.orders o JOIN app.users AS u ON u.id = o.user_id", view, "v")
  T.eq(out, "SELECT o.id, u.username FROM shop.orders o JOIN shop.customers AS u ON u.id = o.user_id")
  -- Nothing renamed in it: unchanged.
  out, changed = ddl.query(ctx, "SELECT o.id FROM app.orders o", view, "v")
  T.eq(out, "SELECT o.id FROM shop.orders o", "the schema still moves")
  T.eq(changed, true)
  out, changed = ddl.query(ctx, "SELECT 1 AS one", view, "v")
  T.eq({ out, changed }, { "SELECT 1 AS one", false })
  T.eq(#ctx.warnings, 0)
end)

T.test("view bodies: what cannot be placed with certainty is a warning naming the object", function()
  local ctx = context()
  local view = rel("view", "app", "v", "shop", "v")
  local out = ddl.query(ctx, "SELECT login FROM app.users", view, "the view app.v")
  T.eq(out, "SELECT login FROM shop.customers", "a bare column name is left as it is")
  T.eq(#ctx.warnings, 1)
  T.ok(ctx.warnings[1].obj == view)
  T.match(ctx.warnings[1].msg, "^the view app%.v mentions column users%.login without its table or schema")
  -- One alias for two relations (in two subqueries).
  ctx = context()
  ddl.query(ctx, "SELECT x.login FROM app.users x UNION SELECT x.id FROM app.orders x", view, "the view app.v")
  local found = false
  for _, w in ipairs(ctx.warnings) do
    if w.msg:find("uses the alias x for two different relations", 1, true) then found = true end
  end
  T.ok(found, "the ambiguous alias is reported: " .. T.dump(ctx.warnings))
end)

T.test("function definitions: header and body rewritten, the body's quoting kept", function()
  local ctx = context()
  local fn = rel("function", "app", "count_users", "shop", "count_users")
  local sql = "CREATE OR REPLACE FUNCTION app.count_users()\n RETURNS bigint\n LANGUAGE sql\nAS $function$"
    .. " SELECT count(*) FROM app.users u WHERE u.login <> '' $function$\n"
  T.eq(ddl.routine(ctx, sql, fn),
       "CREATE OR REPLACE FUNCTION shop.count_users()\n RETURNS bigint\n LANGUAGE sql\nAS $function$"
       .. " SELECT count(*) FROM shop.customers u WHERE u.username <> '' $function$\n")
  -- A body that is not SQL (plpgsql with a syntax sqlident cannot read) is left as it is.
  ctx = context()
  local bad = "CREATE FUNCTION app.f() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN 'x; END $$"
  local out = ddl.routine(ctx, bad, fn)
  T.match(out, "%$%$ BEGIN RETURN 'x; END %$%$$")
  T.match(ctx.warnings[1].msg, "could not be read as SQL")
end)

------------------------------------------------------------------------ CREATE TABLE

local function column(name, type, extra)
  local c = { name = name, target = name, type = type, is_local = true }
  for k, v in pairs(extra or {}) do c[k] = v end
  return c
end

local function table_obj(name, row, columns, extra)
  local obj = { kind = "table", schema = "app", name = name, oid = 201, row = row, columns = columns,
                target = { schema = "app", name = name } }
  for k, v in pairs(extra or {}) do obj[k] = v end
  return obj
end

local ID_CTX = { identity = true, cat = { columns_by_relid = {} } }

T.test("CREATE TABLE: columns, defaults, NOT NULL, collation, CHECK constraints", function()
  local obj = table_obj("users", { relkind = "r" }, {
    column("id", "bigint", { not_null = true }),
    column("email", "text", { collation_schema = "pg_catalog", collation_name = "C" }),
    column("created", "timestamp with time zone", { default_expr = "now()", not_null = true }),
    column("Nick Name", "character varying(20)"),
  }, { checks = { { name = "email_ok", target = { name = "email_ok" },
                    row = { definition = "CHECK ((email ~~ '%@%'::text))" } } } })
  T.eq(table_ddl.create(ID_CTX, obj), { table.concat({
    "CREATE TABLE app.users (",
    "    id bigint NOT NULL,",
    '    email text COLLATE pg_catalog."C",',
    "    created timestamp with time zone DEFAULT now() NOT NULL,",
    '    "Nick Name" character varying(20),',
    "    CONSTRAINT email_ok CHECK ((email ~~ '%@%'::text))",
    ")" }, "\n") })
end)

T.test("CREATE TABLE: identity and generated columns", function()
  local seq = { target = { schema = "app", name = "t_id_seq" },
                row = { start = 1, increment = 1, min = 1, max = 9223372036854775807, cache = 1, cycle = false } }
  local obj = table_obj("t", { relkind = "r" }, {
    column("id", "bigint", { identity = "a", not_null = true }),
    column("n", "integer", { identity = "d", not_null = true }),
    column("twice", "integer", { generated = "s", default_expr = "(n * 2)" }),
  }, { identity_sequences = { id = seq } })
  local sql = table_ddl.create(ID_CTX, obj)[1]
  T.match(sql, "\n    id bigint GENERATED ALWAYS AS IDENTITY %(SEQUENCE NAME app%.t_id_seq START WITH 1 " ..
               "INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 CACHE 1 NO CYCLE%) NOT NULL,\n", 1)
  T.match(sql, "\n    n integer GENERATED BY DEFAULT AS IDENTITY NOT NULL,\n")
  T.match(sql, "\n    twice integer GENERATED ALWAYS AS %(%(n %* 2%)%) STORED\n")
  T.nomatch(sql, "DEFAULT %(n")
  T.eq(table_ddl.sequence_options { start = 5, increment = -1, min = -100, max = 5, cache = 10, cycle = true },
       "START WITH 5 INCREMENT BY -1 MINVALUE -100 MAXVALUE 5 CACHE 10 CYCLE")
end)

T.test("CREATE TABLE: unlogged, no columns, access method, storage parameters", function()
  local obj = table_obj("log", { relkind = "r", unlogged = true, access_method = "heap",
                                 options = "fillfactor=70", toast_options = "toast.autovacuum_enabled=false" }, {})
  T.eq(table_ddl.create(ID_CTX, obj),
       { "CREATE UNLOGGED TABLE app.log ()\nUSING heap\nWITH (fillfactor=70, toast.autovacuum_enabled=false)" })
end)

T.test("CREATE TABLE: a partitioned table and a partition of it", function()
  local parent = table_obj("events", { relkind = "p", partition_key = "RANGE (at)" },
                           { column("at", "date", { not_null = true }), column("v", "text") })
  T.eq(table_ddl.create(ID_CTX, parent),
       { "CREATE TABLE app.events (\n    at date NOT NULL,\n    v text\n)\nPARTITION BY RANGE (at)" })
  local ctx = { identity = true, cat = { columns_by_relid = { [201] = { { name = "at", not_null = true }, { name = "v" } } } } }
  local part = table_obj("events_2025", { relkind = "r", is_partition = true,
                                          partition_bound = "FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')" },
                         { column("at", "date", { not_null = true, is_local = false }), column("v", "text", { is_local = false }) },
                         { oid = 202, parents = { parent } })
  T.eq(table_ddl.create(ctx, part),
       { "CREATE TABLE app.events_2025 PARTITION OF app.events\nFOR VALUES FROM ('2025-01-01') TO ('2026-01-01')" })
end)

T.test("CREATE TABLE: an inheritance child lists only its own columns", function()
  local parent = table_obj("base", { relkind = "r" }, { column("id", "integer") })
  local ctx = { identity = true, cat = { columns_by_relid = { [201] = { { name = "id" } } } } }
  local child = table_obj("child", { relkind = "r" },
                         { column("id", "integer", { is_local = false, not_null = true }), column("extra", "text") },
                         { oid = 203, parents = { parent } })
  T.eq(table_ddl.create(ctx, child), {
    "CREATE TABLE app.child (\n    extra text\n)\nINHERITS (app.base)",
    "ALTER TABLE ONLY app.child\n    ALTER COLUMN id SET NOT NULL",
  })
end)

T.test("CREATE TABLE: what it cannot say follows in one ALTER TABLE", function()
  local obj = table_obj("docs", { relkind = "r" }, {
    column("body", "text", { storage = "m", compression = "l" }),
    column("tag", "text", { statistics = 500, options = "n_distinct=100" }),
  })
  local out = table_ddl.create(ID_CTX, obj)
  T.eq(out[1], "CREATE TABLE app.docs (\n    body text COMPRESSION lz4,\n    tag text\n)")
  T.eq(out[2], "ALTER TABLE ONLY app.docs\n    ALTER COLUMN body SET STORAGE MAIN,\n"
       .. "    ALTER COLUMN tag SET STATISTICS 500,\n    ALTER COLUMN tag SET (n_distinct=100)")
end)

T.test("CREATE FOREIGN TABLE: server and options", function()
  local obj = table_obj("remote", { relkind = "f", foreign_server = "other", foreign_options = "table_name 'r'" },
                        { column("id", "integer", { foreign_options = "column_name 'rid'" }) })
  T.eq(table_ddl.create(ID_CTX, obj),
       { "CREATE FOREIGN TABLE app.remote (\n    id integer OPTIONS (column_name 'rid')\n)\nSERVER other\nOPTIONS (table_name 'r')" })
end)

T.test("CREATE TABLE with mapped names", function()
  local ctx, users = context()
  users.row = { relkind = "r" }
  users.columns = {
    column("id", "bigint", { not_null = true }),
    column("login", "text", { default_expr = "app.new_login()" }),
    column("mood", "app.mood"),
  }
  users.columns[2].target = "username"
  users.checks = { { name = "login_ok", target = { name = "login_ok" },
                     row = { definition = "CHECK ((length(login) > 2))" } } }
  T.eq(table_ddl.create(ctx, users), { table.concat({
    "CREATE TABLE shop.customers (",
    "    id bigint NOT NULL,",
    "    username text DEFAULT shop.new_login(),",
    "    mood shop.mood,",
    "    CONSTRAINT login_ok CHECK ((length(username) > 2))",
    ")" }, "\n") })
end)

T.test("split parts: a default and a CHECK added after CREATE TABLE", function()
  local obj = table_obj("t", { relkind = "r" }, {
    column("id", "integer"),
    column("v", "integer", { default_expr = "app.f(NULL::app.t)", default_split = true }),
  }, { split_checks = { { name = "t_ok", target = { name = "t_ok" }, row = { definition = "CHECK (app.ok(t.*))" } } } })
  local create = table_ddl.create(ID_CTX, obj)
  T.nomatch(create[1], "DEFAULT", "the split default is not in CREATE TABLE")
  T.eq(table_ddl.split_parts(ID_CTX, obj), {
    "ALTER TABLE ONLY app.t ALTER COLUMN v SET DEFAULT app.f(NULL::app.t)",
    "ALTER TABLE ONLY app.t ADD CONSTRAINT t_ok CHECK (app.ok(t.*))",
  })
end)
