-- tide.suggest: the "did you mean" of playbook keys, precheck ids and settings.
local T = require "testlib"
local suggest = require "tide.suggest"

local function set(...)
  local s = {}
  for _, name in ipairs({ ... }) do s[name] = true end
  return s
end

T.test("distance counts insertions, deletions and substitutions", function()
  T.eq(suggest.distance("", ""), 0)
  T.eq(suggest.distance("abc", ""), 3)
  T.eq(suggest.distance("", "abc"), 3)
  T.eq(suggest.distance("same", "same"), 0)
  T.eq(suggest.distance("kitten", "sitting"), 3)
  T.eq(suggest.distance("flaw", "lawn"), 2)
  T.eq(suggest.distance("migrat", "migrate"), 1)
  T.eq(suggest.distance("warns", "warn"), 1)
  T.eq(suggest.distance("ab", "ba"), 2, "a swap is two edits")
  T.eq(suggest.distance("lawn", "flaw"), suggest.distance("flaw", "lawn"), "symmetric")
end)

T.test("closest: the nearest known name", function()
  local keys = set("migrate", "select", "rename", "schema", "full", "incremental")
  T.eq(suggest.closest("migrat", keys), "migrate")
  T.eq(suggest.closest("incremantal", keys), "incremental")
  T.eq(suggest.closest("selcet", keys), "select")
  T.eq(suggest.closest("database_setings", set("database_settings", "owners")), "database_settings")
end)

T.test("closest: nothing when the nearest name is too far to be a typo", function()
  -- Up to 2 edits for any word; for longer words up to a third of the word's length.
  T.eq(suggest.closest("xyz", set("migrate")), nil)
  T.eq(suggest.closest("ab", set("abcd")), "abcd", "2 edits")
  T.eq(suggest.closest("abc", set("abcdef")), nil, "3 edits on a 3-letter word")
  T.eq(suggest.closest("aaaaaaaaaaaa", set("aaaaaaaabbbb")), "aaaaaaaabbbb", "4 edits on 12 letters")
  T.eq(suggest.closest("aaaaaaaaaaaa", set("aaaaaaabbbbb")), nil, "5 edits on 12 letters")
  T.eq(suggest.closest("anything", {}), nil, "nothing known")
end)

T.test("closest: ties go to the first name in byte order, whatever the table's order", function()
  for _ = 1, 20 do
    local known = {}
    for _, name in ipairs({ "mat", "hat", "bat", "rat" }) do known[name] = true end
    T.eq(suggest.closest("cat", known), "bat")
  end
end)

T.test("closest: names that are not strings are not suggested; a word that is not a string gets none", function()
  T.eq(suggest.closest("x1", { [1] = true, [2] = true }), nil)
  T.eq(suggest.closest("fol", { [1] = "foo", foo = true }), "foo")
  T.eq(suggest.closest(42, set("a")), nil)
end)

T.test("hint: the text to append to a message", function()
  T.eq(suggest.hint("warns", set("warn", "fail", "info")), " (did you mean 'warn'?)")
  T.eq(suggest.hint("zzzzzz", set("warn", "fail", "info")), "")
end)
