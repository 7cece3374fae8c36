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
