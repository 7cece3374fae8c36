-- tide.json: JSON text to Lua values and back (the server's json_agg output, the commands'
-- --json output and the live control protocol). Expected values follow RFC 8259 and the
-- module's header: objects → tables, arrays → lists, null → json.null; encode sorts object
-- keys and writes nil, NaN and ±inf as null.
local T = require "testlib"
local json = require "tide.json"

T.test("decode: scalars", function()
  T.eq(json.decode("true"), true)
  T.eq(json.decode("false"), false)
  T.ok(json.decode("null") == json.null, "null decodes to json.null")
  T.eq(tostring(json.null), "null")
  T.eq(json.decode('"hi"'), "hi")
  T.eq(json.decode("  \t\r\n 7 \n"), 7, "white space around a value")
end)

T.test("decode: numbers keep integers integral", function()
  T.eq(math.type(json.decode("42")), "integer")
  T.eq(json.decode("-17"), -17)
  T.eq(json.decode("0"), 0)
  T.eq(math.type(json.decode("2.5")), "float")
  T.eq(json.decode("2.5"), 2.5)
  T.eq(json.decode("-0.125"), -0.125)
  T.eq(json.decode("1e3"), 1000)
  T.eq(json.decode("1.5E+2"), 150)
  T.eq(json.decode("25e-1"), 2.5)
  T.eq(json.decode("9007199254740993"), 9007199254740993, "a bigint stays exact")
  T.eq(json.decode("-9223372036854775808"), math.mininteger)
end)

T.test("decode: string escapes", function()
  T.eq(json.decode([["a\"b\\c\/d"]]), 'a"b\\c/d')
  T.eq(json.decode([["\b\f\n\r\t"]]), "\b\f\n\r\t")
  T.eq(json.decode([["\u0041\u00e9\u20AC"]]), "Aé€")
  T.eq(json.decode([["\u0000"]]), "\0")
  T.eq(json.decode([["\ud83d\ude00"]]), "😀", "a surrogate pair is one code point")
  T.eq(json.decode('"raw é and ✓"'), "raw é and ✓", "UTF-8 passes through")
  T.eq(json.decode('""'), "")
end)

T.test("decode: objects and arrays, nested", function()
  T.eq(json.decode("{}"), {})
  T.eq(json.decode("[]"), {})
  T.eq(json.decode(' { "a" : 1 , "b" : [ true , null , "x" ] } '),
       { a = 1, b = { true, json.null, "x" } })
  T.eq(json.decode('[{"id":1,"tags":["x","y"]},{"id":2,"tags":[]}]'),
       { { id = 1, tags = { "x", "y" } }, { id = 2, tags = {} } })
  local list = json.decode("[null, null, 3]")
  T.eq(#list, 3, "nulls keep their place in a list")
  T.ok(list[1] == json.null and list[2] == json.null)
  T.eq(json.decode('{"a":1,"a":2}').a, 2, "a repeated key: the last wins")
  T.eq(json.decode('[[[[[1]]]]]'), { { { { { 1 } } } } })
end)

T.test("decode: malformed text raises a json error with the byte position", function()
  local cases = {
    { "", "json: unexpected character at byte 1" },
    { "[1,]", "json: unexpected character at byte 4" },
    { '{"a":1,}', "json: expected a key at byte 8" },
    { '{"a" 1}', "json: expected : at byte 6" },
    { '{"a":1', "json: expected }" },
    { "[1 2]", "json: expected ]" },
    { '"abc', "json: unterminated string" },
    { '"\\x"', "json: bad escape at byte 2" },
    { '"\\u12"', "json: bad \\u escape at byte 2" },
    { '"\\uZZZZ"', "json: bad \\u escape at byte 2" },
    { "{a:1}", "json: expected a key at byte 2" },
    { "nul", "json: unexpected character at byte 1" },
    { "-", "json: unexpected character" },
    { "'x'", "json: unexpected character" },
    -- One value per text: what follows it is a mistake, not something to ignore.
    { "1 x", "json: unexpected text after the value at byte 3" },
    { "[1] ]", "json: unexpected text after the value at byte 5" },
    { '{"a":1}{"b":2}', "json: unexpected text after the value at byte 8" },
  }
  for _, c in ipairs(cases) do
    local err = T.raises(function() json.decode(c[1]) end, nil, "decoding " .. c[1])
    T.ok(string.find(tostring(err), c[2], 1, true), string.format("decoding %q: %q has no %q", c[1], tostring(err), c[2]))
  end
end)

T.test("encode: scalars", function()
  T.eq(json.encode(true), "true")
  T.eq(json.encode(false), "false")
  T.eq(json.encode(nil), "null")
  T.eq(json.encode(json.null), "null")
  T.eq(json.encode(42), "42")
  T.eq(json.encode(-7), "-7")
  T.eq(json.encode(0.5), "0.5")
  T.eq(json.encode(0 / 0), "null", "NaN is not JSON")
  T.eq(json.encode(math.huge), "null")
  T.eq(json.encode(-math.huge), "null")
  T.eq(json.encode(print), "null", "a function has no JSON form")
end)

T.test("encode: strings escape quotes, backslashes and control characters", function()
  T.eq(json.encode('say "hi"'), [["say \"hi\""]])
  T.eq(json.encode("a\\b"), [["a\\b"]])
  T.eq(json.encode("l1\nl2\r\tx"), [["l1\nl2\r\tx"]])
  T.eq(json.encode("\0\1\31"), [["\u0000\u0001\u001f"]])
  T.eq(json.encode("é €"), '"é €"', "UTF-8 is written as it is")
  T.eq(json.encode(""), '""')
end)

T.test("encode: lists are arrays, other tables objects with sorted keys", function()
  T.eq(json.encode({ 1, 2, 3 }), "[1,2,3]")
  T.eq(json.encode({}), "[]", "an empty table is an empty array")
  T.eq(json.encode({ b = 1, a = 2, c = { 3 } }), '{"a":2,"b":1,"c":[3]}')
  T.eq(json.encode({ zeta = true, alpha = false, Mid = json.null }), '{"Mid":null,"alpha":false,"zeta":true}')
  T.eq(json.encode({ 1, 2, x = 3 }), '{"1":1,"2":2,"x":3}', "a list with a named key is an object")
  T.eq(json.encode({ [2] = "b" }), '{"2":"b"}', "a list with a hole at 1 is an object")
  T.eq(json.encode({ { a = { {} } } }), '[{"a":[[]]}]')
  -- The same table gives the same text every time (keys sorted, not in hash order).
  local t = {}
  for i = 1, 50 do t["k" .. i] = i end
  local first = json.encode(t)
  for _ = 1, 5 do T.eq(json.encode(t), first) end
  T.match(first, '^{"k1":1,"k10":10,"k11":11,')
end)

T.test("encode then decode gives the value back", function()
  local values = {
    { name = "orders", rows = 12345, ratio = 0.1, ok = true, tags = { "a", "b" }, nested = { x = { y = { 1, 2 } } } },
    { "x", 1, 2.25, false, json.null },
    'quote " backslash \\ newline \n tab \t nul \0 bell \7 é',
    -1 / 3, 1e300, -2 ^ 63, math.maxinteger, math.mininteger, 1e-300,
  }
  for _, v in ipairs(values) do
    local text = json.encode(v)
    T.eq(json.decode(text), v, "round trip of " .. text)
  end
  -- Floats are written with enough digits to come back exactly.
  for _, x in ipairs({ 0.1, 1 / 3, 2 ^ -30, 123456.789 }) do
    local back = json.decode(json.encode(x))
    T.ok(back == x, string.format("%.17g came back as %.17g", x, back))
  end
end)

T.test("decode: a whole number written as a float is an integer, as math.tointeger makes it", function()
  for _, c in ipairs({ { "1e3", 1000 }, { "1.0", 1 }, { "-2.0E0", -2 }, { "1.5E+2", 150 }, { "-0.0", 0 } }) do
    local v = json.decode(c[1])
    T.eq(math.type(v), "integer", c[1])
    T.eq(v, c[2], c[1])
  end
  T.eq(math.type(json.decode("2.5")), "float")
  T.eq(math.type(json.decode("1e300")), "float", "too large for an integer")
  T.eq(math.type(json.decode("99999999999999999999")), "float", "an integer literal past 64 bits")
  T.eq(json.decode("1e999"), math.huge)
  T.eq(json.decode("[1e2,2.5,-3]"), { 100, 2.5, -3 })
end)

T.test("decode: escapes in keys, lone surrogates, long strings and numbers", function()
  T.eq(json.decode([[{"a\"b\u00e9":1}]]), { ['a"bé'] = 1 })
  T.eq(json.decode([["\ud83d"]]), utf8.char(0xD83D), "a lone high surrogate is kept as utf8.char writes it")
  T.eq(json.decode([["\ud83d\u0041"]]), utf8.char(0xD83D) .. "A", "a high surrogate before a non-surrogate")
  T.eq(json.decode([["\ude00"]]), utf8.char(0xDE00))
  local long = string.rep("x", 100000) .. "\\n" .. string.rep("y", 70000)
  T.eq(json.decode('"' .. long .. '"'), string.rep("x", 100000) .. "\n" .. string.rep("y", 70000))
  local digits = "1" .. string.rep("0", 100)
  T.eq(json.decode(digits), 1e100, "a number of 101 digits")
  T.eq(json.decode(digits .. ".5e-90"), 1e10, "101 digits, a fraction and an exponent")
  local err = T.raises(function() json.decode("1e") end)
  T.match(tostring(err), "json: bad number at byte 3")
  err = T.raises(function() json.decode("[1.5e+]") end)
  T.match(tostring(err), "json: bad number")
  err = T.raises(function() json.decode('{"a":1 "b":2}') end)
  T.match(tostring(err), "json: expected }")
end)

T.test("decode: nesting is limited to 512 levels, with an error rather than a crash", function()
  local ok = string.rep("[", 512) .. string.rep("]", 512)
  local v = json.decode(ok)
  for _ = 1, 511 do v = v[1] end
  T.eq(v, {}, "512 levels decode")
  local err = T.raises(function() json.decode(string.rep("[", 513) .. string.rep("]", 513)) end)
  T.match(tostring(err), "json: nested too deep at byte 513")
  err = T.raises(function() json.decode(string.rep('{"a":', 100000)) end)
  T.match(tostring(err), "json: nested too deep")
end)

T.test("decode: random values round-trip through encode (seeded)", function()
  math.randomseed(20261205)
  local function random_string()
    local b = {}
    for i = 1, math.random(0, 12) do
      local r = math.random()
      if r < 0.6 then b[i] = string.char(math.random(32, 126))
      elseif r < 0.8 then b[i] = string.char(math.random(0, 31))
      else b[i] = utf8.char(math.random(0x80, 0x10FFFF) & ~0x800 | 0x80) end
    end
    return table.concat(b)
  end
  local function random_value(depth)
    local r = math.random(depth > 4 and 6 or 8)
    if r == 1 then return math.random(-1000000, 1000000)
    elseif r == 2 then return math.random() * 10 ^ math.random(-20, 20)
    elseif r == 3 then return random_string()
    elseif r == 4 then return math.random(2) == 1
    elseif r == 5 then return json.null
    elseif r == 6 then return math.random(math.mininteger, math.maxinteger)
    elseif r == 7 then
      local t = {}
      for i = 1, math.random(0, 5) do t[i] = random_value(depth + 1) end
      return t
    else
      local t = {}
      for _ = 1, math.random(1, 5) do t["k" .. random_string()] = random_value(depth + 1) end
      return t
    end
  end
  -- (T.eq compares numbers with ==: an integer that came back a float would pass it)
  local function same_types(a, b)
    if type(a) ~= type(b) then return false end
    if type(a) == "number" then return math.type(a) == math.type(b) or a == math.floor(a) end
    if type(a) == "table" then
      for k, x in pairs(a) do if not same_types(x, b[k]) then return false end end
    end
    return true
  end
  for i = 1, 2000 do
    local v = random_value(0)
    local text = json.encode(v)
    local ok, back = pcall(json.decode, text)
    T.ok(ok, "decoding " .. text .. ": " .. tostring(back))
    T.eq(back, v, "round trip " .. i .. " of " .. text)
    T.ok(same_types(v, back), "integers stay integers and floats floats in " .. text)
  end
end)

T.test("a table whose metatable says __list is a list, empty or not; a length alone does not make one", function()
  local List = { __list = true, __len = function(t) return t.n end, __index = function(t, i) return t.items[i] end }
  T.eq(json.encode(setmetatable({ n = 0, items = {} }, List)), "[]")
  T.eq(json.encode(setmetatable({ n = 2, items = { "a", "b" } }, List)), '["a","b"]')
  T.eq(json.encode(setmetatable({ text = "abc" }, { __len = function(t) return #t.text end })), '{"text":"abc"}')
end)
