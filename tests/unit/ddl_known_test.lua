-- tide.cdc.ddl_known: the stream's record of what the target has, kept as JSON text.
local T = require "testlib"
local known = require "tide.cdc.ddl_known"
local json = require "tide.json"

local function info(schema, name, extra)
  local i = { desc = { oid = extra and extra.oid or 1, schema = schema, name = name, columns = { { num = 1, name = "id" } },
                       indexes = extra and extra.indexes or {} },
              cols = extra and extra.cols or { id = "id" }, target = { schema = schema, name = extra and extra.to or name } }
  if extra and extra.parent then i.partition, i.desc.parent = true, extra.parent end
  if extra and extra.ignored then i.ignored = true end
  return i
end

T.test("get gives a copy: changing it changes nothing until set", function()
  local k = known.new()
  k:set("10", info("public", "t", { oid = 10 }))
  local a = k:get("10")
  a.target.name = "other"
  T.eq(k:get(10).target.name, "t", "get takes a number too, and the record kept its name")
  k:set(10, a)
  T.eq(k:get("10").target.name, "other")
  k:set("10", nil)
  T.eq(k:get("10"), nil)
  T.eq(k:by_name("public", "t"), nil, "the name went with it")
end)

T.test("by_name follows renames, and a name two records share stays found", function()
  local k = known.new()
  k:set("1", info("s", "a", { oid = 1 }))
  T.eq((k:by_name("s", "a")), "1")
  k:set("1", info("s", "b", { oid = 1 }))
  T.eq(k:by_name("s", "a"), nil, "the old name is gone")
  T.eq((k:by_name("s", "b")), "1")
  -- a detached partition's record (ignored) and a table of the same name
  k:set("2", info("s", 'q"x', { oid = 2, ignored = true }))
  k:set("3", info("s", 'q"x', { oid = 3 }))
  T.eq((k:by_name("s", 'q"x')), "3")
  k:set("3", nil)
  T.eq((k:by_name("s", 'q"x')), "2", "the other record of the name is found again")
end)

T.test("records read as text: oids, containing, renamed words", function()
  local k = known.new()
  local renamed = info("tbl", "tbl_a", { oid = 5, to = "a", cols = { id = "id", x = "y" } })
  renamed.target.schema = "app"
  -- (the words as tide.cdc.ddl_record.load has the server list them)
  k:add_text("5", json.encode(renamed), "tbl", "tbl_a", { "tbl_a", "tbl", "x" })
  k:add_text("6", json.encode(info("tbl", "plain", { oid = 6, indexes = { { oid = 6001 } } })), "tbl", "plain", {})
  k:add_text("7", json.encode(info("tbl", "part", { oid = 7, parent = { oid = 6 } })), "tbl", "part", nil)
  local oids = {}
  for oid in k:oids() do oids[#oids + 1] = oid end
  table.sort(oids)
  T.eq(oids, { "5", "6", "7" })
  local found = {}
  for oid, i in k:containing("6001") do found[#found + 1] = oid; T.eq(i.desc.indexes[1].oid, 6001) end
  T.eq(found, { "6" })
  T.eq(k:renamed_words(), { tbl_a = true, tbl = true, x = true })
  T.eq((k:by_name("tbl", "part")), "7")
  k:set("5", info("tbl", "tbl_a", { oid = 5 }))
  T.eq(k:renamed_words(), {}, "a record set again without renames takes its words away")
end)

T.test("words_of: the source names the rename rules gave another name on the target", function()
  local function set(list) local t = {} for _, w in ipairs(list or {}) do t[w] = true end return t end
  T.eq(known.words_of(info("s", "t")), nil, "nothing renamed")
  T.eq(set(known.words_of(info("s", "tbl_a", { to = "a" }))), { tbl_a = true }, "the table")
  local moved = info("old", "t")
  moved.target.schema = "new"
  T.eq(set(known.words_of(moved)), { old = true }, "the schema")
  T.eq(set(known.words_of(info("s", "t", { cols = { id = "id", ["Odd Col"] = "odd_col", x = "y" } }))),
       { ["Odd Col"] = true, x = true }, "columns mapped to other names, not the ones kept")
  T.eq(known.words_of(info("s", "tbl_a", { to = "a", ignored = true })), nil, "an ignored record names nothing")
  T.eq(known.words_of(info("s", "t", { cols = {} })), nil, "no column map")
  T.eq(set(known.words_of(info("s", "t", { cols = { a = json.null } }))), { a = true },
       "a column mapped to JSON null is not kept under its name")
end)

T.test("a name three records share: each removal leaves the others found, none scanned for", function()
  local k = known.new()
  for _, oid in ipairs({ "21", "22", "23" }) do k:set(oid, info("s", "dup", { oid = tonumber(oid), ignored = oid ~= "23" })) end
  k:set("23", nil)
  local oid = k:by_name("s", "dup")
  T.ok(oid == "21" or oid == "22", "one of the two left: " .. tostring(oid))
  k:set(oid, nil)
  local other = oid == "21" and "22" or "21"
  T.eq((k:by_name("s", "dup")), other)
  k:set(other, info("s", "renamed", { oid = tonumber(other) }))
  T.eq(k:by_name("s", "dup"), nil)
  T.eq((k:by_name("s", "renamed")), other)
  T.eq(next(k.names["s\0dup"] and { 1 } or {}), nil, "the old name's entry went")
end)
