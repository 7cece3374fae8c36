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

T.test("records are kept deflated: what goes in comes out, whichever form the JSON came in", function()
  local k = known.new()
  -- as ddl_record.load gives them: jsonb's text, with its spaces
  local text = '{"cols": {"id": "id"}, "desc": {"oid": 21, "kind": "r", "name": "t", "schema": "s", ' ..
               '"columns": [{"num": 1, "name": "id", "type": "bigint", "comment": null}], "indexes": ' ..
               '[{"def": "CREATE INDEX t_i ON s.t USING btree (id)", "oid": 22, "name": "t_i", "unique": false}]}, ' ..
               '"target": {"name": "t", "schema": "s"}}'
  k:add_text("21", text, "s", "t")
  T.eq(k:get("21"), json.decode(text))
  T.ok(#k.texts["21"] < #text, "kept in fewer bytes than the text: " .. #k.texts["21"] .. " of " .. #text)
  local big = info("s", "wide", { oid = 30, indexes = { { oid = 987654, name = "w_i", def = "CREATE INDEX w_i ON s.wide (id)" } } })
  for i = 2, 1600 do big.desc.columns[i] = { num = i, name = "c" .. i, type = "text" } end
  k:set("30", big)
  T.eq(k:get("30"), big)
  -- containing: an oid finds the records that name it (a table's index, a partition's parent)
  local found = {}
  for oid, rec in k:containing("22") do found[#found + 1] = oid .. ":" .. rec.desc.name end
  T.eq(found, { "21:t" })
  found = {}
  for oid in k:containing("987654") do found[#found + 1] = oid end
  T.eq(found, { "30" })
  for oid in k:containing("99") do T.ok(false, "no record names 99, yet " .. oid .. " was found") end
  -- the index dropped from the record: its oid no longer finds the table
  big.desc.indexes = {}
  k:set("30", big)
  for oid in k:containing("987654") do T.ok(false, "the record no longer names 987654, yet " .. oid .. " was found") end
  found = {}
  for oid in k:containing('"name":"wide"') do found[#found + 1] = oid end
  T.eq(found, { "30" }, "any other text: every record is looked through")
  -- a partition names its parent: the parent's oid finds it (and the parent's own record)
  k:set("40", info("s", "p1", { oid = 40, parent = { oid = 876543, schema = "s", name = "parted" } }))
  k:set("876543", info("s", "parted", { oid = 876543 }))
  found = {}
  for oid in k:containing("876543") do found[#found + 1] = oid end
  table.sort(found)
  T.eq(found, { "40", "876543" })
  -- a removed record takes back what it named
  k:set("40", nil)
  k:set("876543", nil)
  T.eq(k.mentions["876543"], nil, "nothing names 876543 any more")
  T.eq(k.mentions["987654"], nil, "nor the dropped index's oid")
  T.eq(k.mentions["30"], "30", "the wide table still names itself")
end)

T.test("tide.core.deflate and inflate: round trips, and what they refuse", function()
  local core = require "tide.core"
  for _, text in ipairs({ "", "x", string.rep("abc", 100000), "\0\1\2\255" }) do
    T.eq(core.inflate(core.deflate(text)), text)
    T.eq(core.inflate(core.deflate(text, "a dictionary"), "a dictionary"), text)
  end
  local packed = core.deflate("some text that a dictionary helps", "some text")
  local ok, err = pcall(core.inflate, packed, "another")
  T.ok(not ok and tostring(err):find("another dictionary", 1, true), tostring(err))
  ok, err = pcall(core.inflate, packed)
  T.ok(not ok and tostring(err):find("another dictionary", 1, true), tostring(err))
  ok, err = pcall(core.inflate, "xy")
  T.ok(not ok and tostring(err):find("not a packed text", 1, true), tostring(err))
  local cut = core.deflate(string.rep("abc", 1000))
  ok, err = pcall(core.inflate, cut:sub(1, #cut - 3))
  T.ok(not ok and tostring(err):find("not a packed text", 1, true), "a cut stream: " .. tostring(err))
  ok, err = pcall(core.inflate, "\255\255\255\255" .. cut:sub(5))
  T.ok(not ok and tostring(err):find("not a packed text", 1, true), "a length it cannot have: " .. tostring(err))
  ok, err = pcall(core.inflate, cut .. "more")
  T.ok(not ok and tostring(err):find("not a packed text", 1, true), "bytes after the stream: " .. tostring(err))
end)
