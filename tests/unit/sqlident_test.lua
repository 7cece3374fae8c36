-- tide.sqlident: tokenizing SQL and renaming identifiers without touching anything else.
local T = require "testlib"
local sqlident = require "tide.sqlident"

local function types_and_texts(sql)
  local out = {}
  for _, token in ipairs(sqlident.tokens(sql)) do
    if token.type ~= "space" then out[#out + 1] = token.type .. " " .. token.text end
  end
  return out
end

T.test("tokens: every byte belongs to a token", function()
  local sql = "SELECT \"a\"\"b\", Foo.BAR, E'it\\'s \"x\"', $fn$ body \"x\" $fn$, $$ $$, $1, 1.5e-3,\n"
    .. " .5, 0x1F, 1_000 /* c /* nested */ still */ -- line \"q\"\n x<-1, a::int, U&\"d\\0061t\", b'01'"
  local texts = {}
  for _, token in ipairs(sqlident.tokens(sql)) do texts[#texts + 1] = token.text end
  T.eq(table.concat(texts), sql)
end)

T.test("tokens: literals, comments, quoted and unquoted names", function()
  T.eq(types_and_texts([[SELECT "My ""T""", Foo, t.select FROM x -- "c"]]), {
    "keyword SELECT", 'quoted "My ""T"""', "punct ,", "ident Foo", "punct ,", "ident t", "punct .",
    "ident select", "keyword FROM", "ident x", 'comment -- "c"',
  })
  T.eq(types_and_texts([[E'a\'b' 'it''s' $q$ "x" 'y' $q$ /* a /* b */ c */ $1]]), {
    [[string E'a\'b']], "string 'it''s'", [[dollar $q$ "x" 'y' $q$]], "comment /* a /* b */ c */", "param $1",
  })
  T.eq(types_and_texts("a::regclass<>-1"), { "ident a", "punct ::", "ident regclass", "operator <>", "operator -", "number 1" })
  local tokens = sqlident.tokens([[Foo "Foo" U&"d\0061t" "a""b"]])
  T.eq({ tokens[1].name, tokens[3].name, tokens[5].name, tokens[7].name }, { "foo", "Foo", "dat", 'a"b' })
end)

T.test("tokens: unterminated constructs raise with their position", function()
  T.raises(function() sqlident.tokens("select 'abc") end, "unterminated string literal starting at byte 8")
  T.raises(function() sqlident.tokens('select "abc') end, "unterminated quoted identifier starting at byte 8")
  T.raises(function() sqlident.tokens("select /* a /* b */") end, "unterminated /%* comment starting at byte 8")
  T.raises(function() sqlident.tokens("select $x$ abc $y$") end, "unterminated dollar%-quoted string %$x%$")
end)

T.test("quote: only when needed, like quote_ident", function()
  local cases = {
    { "users", "users" }, { "Users", '"Users"' }, { "my table", '"my table"' }, { 'a"b', '"a""b"' },
    { "select", '"select"' }, { "user", '"user"' }, { "int", '"int"' }, { "left", '"left"' },
    { "name", "name" }, { "key", "key" }, { "_x1", "_x1" }, { "1abc", '"1abc"' }, { "x$", '"x$"' },
    { "näme", '"näme"' }, { "system_user", '"system_user"' },
  }
  for _, case in ipairs(cases) do T.eq(sqlident.quote(case[1]), case[2], "quote " .. case[1]) end
end)

T.test("quote: asked again (it remembers answers), and after more names than it keeps", function()
  for round = 1, 2 do
    T.eq(sqlident.quote("Users"), '"Users"', "round " .. round)
    T.eq(sqlident.quote("users"), "users", "round " .. round)
  end
  for i = 1, 140000 do
    local name = (i % 2 == 0 and "t" or "T") .. i
    T.eq(sqlident.quote(name), i % 2 == 0 and name or ('"' .. name .. '"'))
  end
  T.eq(sqlident.quote("Users"), '"Users"')
  T.eq(sqlident.quote('a"b'), '"a""b"')
  T.raises(function() sqlident.quote(5) end, "name must be a string")
  T.raises(function() sqlident.quote(nil) end, "name must be a string")
end)

T.test("rewrite: only names change; literals and comments stay byte-identical", function()
  local sql = [[SELECT users.id, 'users.id' AS "users", $$users$$ -- users here
FROM public.users /* public.users */ WHERE note = E'public.users\'s' AND "Users".x = 1]]
  local seen = {}
  local out, count = sqlident.rewrite(sql, function(parts)
    local names = {}
    for i, part in ipairs(parts) do names[i] = part.name end
    seen[#seen + 1] = table.concat(names, "|")
    if parts[#parts].name == "users" then
      names[#names] = "Customer List"
      return names
    end
    if parts[1].name == "Users" then return { "people", parts[2].name } end
  end)
  T.eq(out, [[SELECT users.id, 'users.id' AS "Customer List", $$users$$ -- users here
FROM public."Customer List" /* public.users */ WHERE note = E'public.users\'s' AND people.x = 1]])
  T.eq(count, 3)
  -- Reserved words are not offered as names; "users" quoted is; users.id is one dotted name.
  T.eq(seen, { "users|id", "users", "public|users", "note", "Users|x" })
end)

T.test("rewrite: names split by spaces, reserved words after a dot, replacement lengths", function()
  local out = sqlident.rewrite('SELECT t . "select", t.from FROM s.t', function(parts)
    if #parts == 2 and parts[1].name == "t" then return { "x", parts[2].name } end
    if #parts == 2 and parts[1].name == "s" then return { "t" } end -- drop the qualifier
  end)
  T.eq(out, 'SELECT x."select", x."from" FROM t')
  T.raises(function() sqlident.rewrite("a", function() return {} end) end, "non%-empty list")
end)

T.test("rewrite: context shows the tokens around a name", function()
  local seen = {}
  sqlident.rewrite("SELECT f(a)::public.mytype FROM (b)", function(parts, ctx)
    seen[#seen + 1] = { parts[#parts].name, ctx.prev and ctx.prev.text or "", ctx.next and ctx.next.text or "", ctx.depth }
  end)
  T.eq(seen, { { "f", "SELECT", "(", 0 }, { "a", "(", ")", 1 }, { "mytype", "::", "FROM", 0 }, { "b", "(", ")", 1 } })
end)

T.test("rewrite: names inside regclass literals through the name_literal hook", function()
  local sql = [[nextval('public.orders_id_seq'::regclass), 'public.orders_id_seq'::text, 'x'::regproc]]
  local casts = {}
  local out = sqlident.rewrite(sql, function() end, {
    name_literal = function(_, ctx)
      casts[#casts + 1] = ctx.cast
      if ctx.cast == "regclass" then return { "Shop's", "Order Seq" } end
    end,
  })
  T.eq(out, [[nextval('"Shop''s"."Order Seq"'::regclass), 'public.orders_id_seq'::text, 'x'::regproc]])
  T.eq(casts, { "regclass", "regproc" })
  -- Unquoted parts inside the literal fold to lower case, as the server reads them.
  sqlident.rewrite([['Public."My Seq"'::regclass]], function() end, {
    name_literal = function(parts) casts = { parts[1].name, parts[2].name } end,
  })
  T.eq(casts, { "public", "My Seq" })
end)

-- The definitions below are what PostgreSQL 15 prints for this source (search_path =
-- pg_catalog), and the mapping a playbook could give:
--   schema "Shop Data" -> shop; tables "Order Items" -> "Line Item", orders -> "Orders";
--   columns Id -> id, select -> from, näme -> nom, key -> clé, price -> Price,
--   Quote"d -> quoted, item_id -> item; index/trigger names get a "t_" prefix;
--   sequence "Order Items_Id_seq" -> line_item_id_seq.
local tables = {
  ["Shop Data.Order Items"] = { target = { "shop", "Line Item" },
    columns = { Id = "id", select = "from", ["näme"] = "nom", key = "clé", price = "Price",
                first = "first", name = "name", ['Quote"d'] = "quoted" } },
  ["public.orders"] = { target = { "public", "Orders" }, columns = { id = "id", item_id = "item", note = "note" } },
  ["public.ex"] = { target = { "public", "ex" }, columns = { a = "A", b = "b", r = "range" } },
}

local function definition_options(schema, table_name, expression)
  return {
    schema = schema, table = table_name, expression = expression,
    columns = function(s, t)
      local list = {}
      for column in pairs(tables[s .. "." .. t].columns) do list[#list + 1] = column end
      return list
    end,
    column = function(s, t, c) return assert(tables[s .. "." .. t].columns[c], c) end,
    relation = function(kind, s, name)
      local target_schema = s == "Shop Data" and "shop" or s
      if kind == "table" then return table.unpack(assert(tables[s .. "." .. name], name).target) end
      if kind == "sequence" and name == "Order Items_Id_seq" then return target_schema, "line_item_id_seq" end
      if kind == "index" or kind == "trigger" then return target_schema, "t_" .. name end
      return target_schema, name
    end,
  }
end

local function rewrite_definition(sql, schema, table_name, expression)
  return sqlident.rename_in_definition(sql, definition_options(schema, table_name, expression))
end

T.test("definition: CREATE INDEX with quoted names, opclass, DESC NULLS LAST, INCLUDE, WHERE", function()
  local out, warnings = rewrite_definition(
    [[CREATE INDEX "Idx Näme" ON "Shop Data"."Order Items" USING btree (lower(name) text_pattern_ops DESC NULLS LAST, "select") INCLUDE (price) WHERE (("näme" IS NOT NULL) AND (key <> 'a.b'::text))]],
    "Shop Data", "Order Items")
  T.eq(out, [[CREATE INDEX "t_Idx Näme" ON shop."Line Item" USING btree (lower(name) text_pattern_ops DESC NULLS LAST, "from") INCLUDE ("Price") WHERE ((nom IS NOT NULL) AND ("clé" <> 'a.b'::text))]])
  T.eq(warnings, {})
  out = rewrite_definition([[CREATE UNIQUE INDEX "Order Items_pkey" ON ONLY "Shop Data"."Order Items" USING btree ("Id")]],
    "Shop Data", "Order Items")
  T.eq(out, [[CREATE UNIQUE INDEX "t_Order Items_pkey" ON ONLY shop."Line Item" USING btree (id)]])
  -- Storage options in WITH (...) are not columns, even when a column has the same name.
  out = rewrite_definition([[CREATE INDEX i ON "Shop Data"."Order Items" USING btree (first, key) WITH (fillfactor='70', key='x')]],
    "Shop Data", "Order Items")
  T.eq(out, [[CREATE INDEX t_i ON shop."Line Item" USING btree (first, "clé") WITH (fillfactor='70', key='x')]])
end)

T.test("definition: constraints (CHECK, FOREIGN KEY to another table, EXCLUDE)", function()
  local out = rewrite_definition(
    [[CHECK (((("select" >= 1) AND ("select" <= 100)) AND (name ~~ 'x%'::text) AND ("Quote""d" IS NOT NULL)))]],
    "Shop Data", "Order Items")
  T.eq(out, [[CHECK (((("from" >= 1) AND ("from" <= 100)) AND (name ~~ 'x%'::text) AND (quoted IS NOT NULL)))]])
  out = rewrite_definition([[CHECK ((price > (0)::numeric))]], "Shop Data", "Order Items")
  T.eq(out, [[CHECK (("Price" > (0)::numeric))]])
  -- The referenced column list belongs to the referenced table.
  out = rewrite_definition(
    [[FOREIGN KEY (item_id) REFERENCES "Shop Data"."Order Items"("Id") ON DELETE SET NULL (item_id)]],
    "public", "orders")
  T.eq(out, [[FOREIGN KEY (item) REFERENCES shop."Line Item"(id) ON DELETE SET NULL (item)]])
  out = rewrite_definition([[EXCLUDE USING gist (r WITH &&) WHERE ((a > 0))]], "public", "ex")
  T.eq(out, [[EXCLUDE USING gist (range WITH &&) WHERE (("A" > 0))]])
end)

T.test("definition: trigger with UPDATE OF, WHEN on NEW/OLD, function arguments", function()
  local out, warnings = rewrite_definition(
    [[CREATE TRIGGER "Trg 1" BEFORE UPDATE OF price, "select" ON "Shop Data"."Order Items" FOR EACH ROW WHEN (((new.price > (10)::numeric) AND (new."select" IS DISTINCT FROM old."select"))) EXECUTE FUNCTION public.trg('price', 'select')]],
    "Shop Data", "Order Items")
  T.eq(out, [[CREATE TRIGGER "t_Trg 1" BEFORE UPDATE OF "Price", "from" ON shop."Line Item" FOR EACH ROW WHEN (((new."Price" > (10)::numeric) AND (new."from" IS DISTINCT FROM old."from"))) EXECUTE FUNCTION public.trg('price', 'select')]])
  T.eq(warnings, {})
end)

T.test("definition: column default with a regclass literal, literal-only default", function()
  local out = rewrite_definition([[nextval('"Shop Data"."Order Items_Id_seq"'::regclass)]], "Shop Data", "Order Items", true)
  T.eq(out, [[nextval('shop.line_item_id_seq'::regclass)]])
  out = rewrite_definition([['it''s -- key, price'::text]], "public", "orders", true)
  T.eq(out, [['it''s -- key, price'::text]])
end)

T.test("definition: expressions with keywords that look like names", function()
  -- "first" and "key" are unreserved words the server leaves unquoted as column names.
  local out = rewrite_definition([[((key IS NOT NULL) AND (first BETWEEN 1 AND 2) AND (EXTRACT(year FROM now()) > (2000)::numeric))]],
    "Shop Data", "Order Items", true)
  T.eq(out, [[(("clé" IS NOT NULL) AND (first BETWEEN 1 AND 2) AND (EXTRACT(year FROM now()) > (2000)::numeric))]])
  -- A bare expression: depth 0 is an expression too.
  out = rewrite_definition([[price * 2]], "Shop Data", "Order Items", true)
  T.eq(out, [["Price" * 2]])
  -- A table-qualified column is renamed with its table.
  out = rewrite_definition([[("Order Items".price > 0)]], "Shop Data", "Order Items", true)
  T.eq(out, [[("Line Item"."Price" > 0)]])
end)

T.test("definition: a subquery is left alone except qualified tables, with a warning", function()
  local out, warnings = rewrite_definition([[((name = CURRENT_USER) AND (key IN ( SELECT o.note
   FROM public.orders o
  WHERE (o.id = "Order Items".first))))]], "Shop Data", "Order Items", true)
  T.eq(out, [[((name = CURRENT_USER) AND ("clé" IN ( SELECT o.note
   FROM public."Orders" o
  WHERE (o.id = "Order Items".first))))]])
  T.eq(warnings, { "names inside a subquery were left as they are, except schema-qualified tables" })
end)

T.test("definition: an unplaceable qualified name is kept and reported", function()
  local out, warnings = rewrite_definition([[(other.price > 0)]], "Shop Data", "Order Items", true)
  T.eq(out, [[(other.price > 0)]])
  T.eq(warnings, { [[left other.price as it is: not a column of "Shop Data"."Order Items"]] })
end)
