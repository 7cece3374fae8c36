-- tide.pattern: name patterns of a playbook (globs and regexes), compiled to lpeg matchers.
--
-- A pattern is either a glob string ("public.order_*") or a regex written as a table
-- { re = "^order_[0-9]+$" }. Both compile to one lpeg grammar through the same tree:
--
--   glob   `*` any run of characters, `?` one character, `[abc]` `[a-z]` `[!abc]` `[^abc]` one
--          character of (or not of) the set, `\x` the character x itself. A glob matches the
--          whole text. Every `*`, `?` and `[...]` is a numbered group for `replace` (\1, \2, ...).
--   regex  a common subset of POSIX/Perl syntax: literals, `.`, `[...]` classes with ranges and
--          negation, `\d \w \s \D \W \S`, anchors `^ $`, `* + ? {n} {n,} {n,m}` (and lazy `*?`
--          etc.), alternation `|`, groups `( )` (numbered) and `(?: )`. A regex searches: it
--          matches anywhere in the text unless anchored. Not supported: back-references,
--          look-around, `\b`, inline flags.
--
-- Characters are UTF-8: `?`, `.` and classes consume one whole character. Matching is exact
-- and case-sensitive, as PostgreSQL stores names.
--
-- lpeg is possessive, so a regex is not translated operator by operator (`.*x` would never
-- match). Each node is compiled together with its continuation, the pattern for everything
-- after it; an ordered choice that includes the continuation backtracks exactly like a regex
-- engine. Continuations used twice become grammar rules, so the grammar grows linearly.
--
-- lpeg's own `re` module is present on Debian, but its notation is a PEG (quoted literals,
-- `/` for choice, no backtracking), not the regex syntax DBAs know, so it is not used here.
local lpeg = require "lpeg"

local P, B, V, Cp, Cc, Ct, C, Cmt = lpeg.P, lpeg.B, lpeg.V, lpeg.Cp, lpeg.Cc, lpeg.Ct, lpeg.C, lpeg.Cmt

local pattern = {}

local continuation_byte = lpeg.R("\128\191")
-- One UTF-8 character; a stray byte (a name in a non-UTF-8 database) counts as one character.
local any_char = lpeg.R("\0\127")
  + lpeg.R("\194\223") * continuation_byte
  + lpeg.R("\224\239") * continuation_byte * continuation_byte
  + lpeg.R("\240\244") * continuation_byte * continuation_byte * continuation_byte
  + P(1)

local MAX_REPEAT = 100

local function codepoint(ch)
  local ok, cp = pcall(utf8.codepoint, ch)
  if ok then return cp end
  return ch:byte()
end

-- Length in bytes of the character starting at byte i of s.
local function char_length(s, i)
  local e = lpeg.match(any_char, s, i)
  return e and (e - i) or 1
end

-- Error helper: "invalid regex 'a(b': unclosed group at position 2" (position in characters).
local function fail(kind, source, byte_position, what)
  local prefix = source:sub(1, byte_position - 1)
  local position = utf8.len(prefix) or #prefix
  error(string.format("invalid %s '%s': %s at position %d", kind, source, what, position + 1), 0)
end

---------------------------------------------------------------------------------------------
-- Parsing into a small tree:
--   { t = "lit", s = "abc" }        { t = "any" }           { t = "set", test = fn(cp) }
--   { t = "bol" } { t = "eol" }     { t = "cat", ... }      { t = "alt", ... }
--   { t = "rep", node, min = n, max = m|nil, lazy = bool }  { t = "group", index = n|nil, node }
---------------------------------------------------------------------------------------------

local function class_digit(cp) return cp >= 48 and cp <= 57 end
local function class_word(cp)
  return class_digit(cp) or (cp >= 65 and cp <= 90) or (cp >= 97 and cp <= 122) or cp == 95
end
local function class_space(cp) return cp == 32 or (cp >= 9 and cp <= 13) end
local shorthand_classes = {
  d = class_digit, w = class_word, s = class_space,
  D = function(cp) return not class_digit(cp) end,
  W = function(cp) return not class_word(cp) end,
  S = function(cp) return not class_space(cp) end,
}
local simple_escapes = { t = "\t", n = "\n", r = "\r", f = "\f", v = "\v" }

-- Parses a bracket class starting just after `[` at byte i; returns the node and the next index.
-- `negators` is the set of characters that negate when first ("^" for regexes, "!^" for globs).
local function parse_class(kind, source, i, negators, allow_shorthand)
  local open = i - 1
  local negate = false
  local c = source:sub(i, i)
  if c ~= "" and negators:find(c, 1, true) then negate = true; i = i + 1 end
  local ranges, tests = {}, {}
  local first = true
  while true do
    c = source:sub(i, i)
    if c == "" then fail(kind, source, open, "unclosed character class") end
    if c == "]" and not first then i = i + 1; break end
    first = false
    local low
    if c == "\\" then
      local e = source:sub(i + 1, i + 1)
      if e == "" then fail(kind, source, i, "trailing backslash") end
      if allow_shorthand and shorthand_classes[e] then
        tests[#tests + 1] = shorthand_classes[e]
        i = i + 2
        goto continue
      end
      local n = char_length(source, i + 1)
      low = codepoint(simple_escapes[e] or source:sub(i + 1, i + n))
      i = i + 1 + n
    else
      local n = char_length(source, i)
      low = codepoint(source:sub(i, i + n - 1))
      i = i + n
    end
    if source:sub(i, i) == "-" and source:sub(i + 1, i + 1) ~= "]" and source:sub(i + 1, i + 1) ~= "" then
      local hi_start = i + 1
      local hs = hi_start
      if source:sub(hs, hs) == "\\" then hs = hs + 1 end
      local n = char_length(source, hs)
      local high = codepoint(source:sub(hs, hs + n - 1))
      if high < low then fail(kind, source, hi_start, "range out of order in character class") end
      ranges[#ranges + 1] = { low, high }
      i = hs + n
    else
      ranges[#ranges + 1] = { low, low }
    end
    ::continue::
  end
  local function test(cp)
    local hit = false
    for _, r in ipairs(ranges) do
      if cp >= r[1] and cp <= r[2] then hit = true; break end
    end
    if not hit then
      for _, f in ipairs(tests) do if f(cp) then hit = true; break end end
    end
    return hit ~= negate
  end
  return { t = "set", test = test }, i
end

local function nullable(node)
  local t = node.t
  if t == "lit" then return node.s == "" end
  if t == "any" or t == "set" then return false end
  if t == "bol" or t == "eol" then return true end
  if t == "group" then return nullable(node[1]) end
  if t == "rep" then return node.min == 0 or nullable(node[1]) end
  if t == "cat" then
    for _, n in ipairs(node) do if not nullable(n) then return false end end
    return true
  end
  if t == "alt" then
    for _, n in ipairs(node) do if nullable(n) then return true end end
    return false
  end
end

-- Recursive-descent regex parser. Returns the tree and the number of capturing groups.
local function parse_regex(source)
  local i = 1
  local groups = 0
  local parse_alternation

  local function parse_atom()
    local c = source:sub(i, i)
    local start = i
    if c == "(" then
      i = i + 1
      local index
      if source:sub(i, i + 1) == "?:" then
        i = i + 2
      elseif source:sub(i, i) == "?" then
        fail("regex", source, i, "look-around and inline flags are not supported")
      else
        groups = groups + 1
        index = groups
      end
      local inner = parse_alternation()
      if source:sub(i, i) ~= ")" then fail("regex", source, start, "unclosed group") end
      i = i + 1
      return { t = "group", index = index, inner }
    elseif c == ")" then
      fail("regex", source, i, "unmatched ')'")
    elseif c == "[" then
      local node
      node, i = parse_class("regex", source, i + 1, "^", true)
      return node
    elseif c == "." then
      i = i + 1; return { t = "any" }
    elseif c == "^" then
      i = i + 1; return { t = "bol" }
    elseif c == "$" then
      i = i + 1; return { t = "eol" }
    elseif c == "*" or c == "+" or c == "?" or c == "{" then
      fail("regex", source, i, "nothing to repeat")
    elseif c == "\\" then
      local e = source:sub(i + 1, i + 1)
      if e == "" then fail("regex", source, i, "trailing backslash") end
      if shorthand_classes[e] then i = i + 2; return { t = "set", test = shorthand_classes[e] } end
      if e:match("%d") then fail("regex", source, i, "back-references are not supported") end
      if e == "b" or e == "B" or e == "A" or e == "Z" or e == "z" then
        fail("regex", source, i, "'\\" .. e .. "' is not supported")
      end
      local n = char_length(source, i + 1)
      local text = simple_escapes[e] or source:sub(i + 1, i + n)
      i = i + 1 + n
      return { t = "lit", s = text }
    else
      local n = char_length(source, i)
      i = i + n
      return { t = "lit", s = source:sub(start, i - 1) }
    end
  end

  local function parse_quantified()
    local atom_start = i
    local node = parse_atom()
    while true do
      local c = source:sub(i, i)
      local min, max
      local q_start = i
      if c == "*" then min, max = 0, nil; i = i + 1
      elseif c == "+" then min, max = 1, nil; i = i + 1
      elseif c == "?" then min, max = 0, 1; i = i + 1
      elseif c == "{" then
        local a, b, close = source:match("^{(%d*)(,?%d*)}()", i)
        if not a or (a == "" and (b == "" or b == ",")) then
          fail("regex", source, i, "malformed repetition count, expected {n}, {n,} or {n,m}")
        end
        min = tonumber(a) or 0
        if b == "" then max = min
        elseif b == "," then max = nil
        else max = tonumber(b:sub(2)) end
        if max and max < min then fail("regex", source, i, "repetition range out of order") end
        if min > MAX_REPEAT or (max or 0) > MAX_REPEAT then
          fail("regex", source, i, "repetition count above " .. MAX_REPEAT)
        end
        i = close
      else
        return node
      end
      if node.t == "bol" or node.t == "eol" then fail("regex", source, q_start, "nothing to repeat") end
      if node.t == "rep" then fail("regex", source, q_start, "repeated quantifier") end
      local lazy = false
      if source:sub(i, i) == "?" then lazy = true; i = i + 1 end
      if max == nil and nullable(node) then
        fail("regex", source, atom_start, "repeated expression can match the empty string")
      end
      node = { t = "rep", node, min = min, max = max, lazy = lazy }
    end
  end

  local function parse_sequence()
    local seq = { t = "cat" }
    while i <= #source do
      local c = source:sub(i, i)
      if c == "|" or c == ")" then break end
      seq[#seq + 1] = parse_quantified()
    end
    return seq
  end

  function parse_alternation()
    local alt = { t = "alt", parse_sequence() }
    while source:sub(i, i) == "|" do
      i = i + 1
      alt[#alt + 1] = parse_sequence()
    end
    if #alt == 1 then return alt[1] end
    return alt
  end

  local tree = parse_alternation()
  if i <= #source then fail("regex", source, i, "unmatched ')'") end
  return tree, groups
end

-- Glob parser (a qualified glob is split at its dot by compile_qualified before this).
local function parse_glob(source)
  local seq = { t = "cat" }
  local groups = 0
  local i = 1
  while i <= #source do
    local c = source:sub(i, i)
    if c == "*" then
      groups = groups + 1
      seq[#seq + 1] = { t = "group", index = groups, { t = "rep", { t = "any" }, min = 0 } }
      i = i + 1
    elseif c == "?" then
      groups = groups + 1
      seq[#seq + 1] = { t = "group", index = groups, { t = "any" } }
      i = i + 1
    elseif c == "[" then
      local node
      node, i = parse_class("glob", source, i + 1, "!^", false)
      groups = groups + 1
      seq[#seq + 1] = { t = "group", index = groups, node }
    elseif c == "\\" then
      if i == #source then fail("glob", source, i, "trailing backslash") end
      local n = char_length(source, i + 1)
      seq[#seq + 1] = { t = "lit", s = source:sub(i + 1, i + n) }
      i = i + 1 + n
    else
      local n = char_length(source, i)
      seq[#seq + 1] = { t = "lit", s = source:sub(i, i + n - 1) }
      i = i + n
    end
  end
  return seq, groups
end

---------------------------------------------------------------------------------------------
-- Compiling the tree with continuations.
---------------------------------------------------------------------------------------------

local function open_marker(index) return Ct(Cc(index) * Cp()) end
local function close_marker(index) return Ct(Cc(-index) * Cp()) end

local function compile_tree()
  local rules = {}
  local count = 0
  local function new_rule()
    count = count + 1
    return "r" .. count
  end
  -- A continuation that will appear in two places becomes a rule, so it is not copied.
  local function share(k)
    local name = new_rule()
    rules[name] = k
    return V(name)
  end

  local compile
  function compile(node, k)
    local t = node.t
    if t == "lit" then return P(node.s) * k end
    if t == "any" then return any_char * k end
    if t == "set" then
      local test = node.test
      return Cmt(C(any_char), function(_, position, ch)
        return test(codepoint(ch)) and position
      end) * k
    end
    if t == "bol" then return -B(1) * k end
    if t == "eol" then return -P(1) * k end
    if t == "cat" then
      for index = #node, 1, -1 do k = compile(node[index], k) end
      return k
    end
    if t == "alt" then
      local shared = share(k)
      local choice
      for _, branch in ipairs(node) do
        local p = compile(branch, shared)
        choice = choice and (choice + p) or p
      end
      return choice
    end
    if t == "group" then
      if not node.index then return compile(node[1], k) end
      return open_marker(node.index) * compile(node[1], close_marker(node.index) * k)
    end
    if t == "rep" then
      local body = node[1]
      local tail
      if node.max == nil then
        local name = new_rule()
        local loop = V(name)
        if node.lazy then
          rules[name] = k + compile(body, loop)
        else
          rules[name] = compile(body, loop) + k
        end
        tail = loop
      else
        tail = k
        for _ = 1, node.max - node.min do
          local shared = share(tail)
          if node.lazy then
            tail = shared + compile(body, shared)
          else
            tail = compile(body, shared) + shared
          end
        end
      end
      for _ = 1, node.min do tail = compile(body, tail) end
      return tail
    end
    error("pattern: unknown node " .. tostring(t))
  end

  return compile, rules, new_rule
end

-- Builds the lpeg grammar: a glob matches the whole text, a regex searches for the leftmost
-- match. Captures: start position, group markers, end position.
local function build_grammar(tree, anchored)
  local compile, rules, new_rule = compile_tree()
  local main = new_rule()
  if anchored then
    rules[main] = Cp() * compile(tree, -P(1) * Cp())
  else
    local attempt = new_rule()
    rules[attempt] = Cp() * compile(tree, Cp())
    rules[main] = V(attempt) + any_char * V(main)
  end
  rules[1] = main
  return P(rules)
end

---------------------------------------------------------------------------------------------
-- Matcher objects
---------------------------------------------------------------------------------------------

local Matcher = {}
Matcher.__index = Matcher

function Matcher:__tostring() return self.text end

-- m:find(s) -> start, stop (inclusive), { group1, group2, ... } (false for an unset group),
-- or nil when it does not match.
function Matcher:find(s)
  local results = { lpeg.match(self.grammar, s) }
  if results[1] == nil then return nil end
  local open, close = {}, {}
  for index = 2, #results - 1 do
    local marker = results[index]
    if marker[1] > 0 then open[marker[1]] = marker[2] else close[-marker[1]] = marker[2] end
  end
  local groups = {}
  for g = 1, self.groups do
    if open[g] and close[g] then groups[g] = s:sub(open[g], close[g] - 1) else groups[g] = false end
  end
  return results[1], results[#results] - 1, groups
end

function Matcher:match(s)
  return lpeg.match(self.grammar, s) ~= nil
end

-- Checks a replacement template (\0 whole match, \1..\9 groups, \\ a backslash).
function Matcher:check_template(template)
  local i = 1
  while true do
    local at = template:find("\\", i, true)
    if not at then return true end
    local e = template:sub(at + 1, at + 1)
    if e == "\\" then
      i = at + 2
    elseif e:match("%d") then
      if tonumber(e) > self.groups then
        error(string.format("replacement '%s' refers to \\%s but %s has %d group%s",
          template, e, self.text, self.groups, self.groups == 1 and "" or "s"), 0)
      end
      i = at + 2
    else
      error(string.format("replacement '%s': a backslash must be followed by a digit or a backslash",
        template), 0)
    end
  end
end

-- m:replace(s, template) -> the text with its (first) match replaced, or nil if no match.
function Matcher:replace(s, template)
  local start, stop, groups = self:find(s)
  if not start then return nil end
  local whole = s:sub(start, stop)
  local out = template:gsub("\\(.)", function(e)
    if e == "\\" then return "\\" end
    local n = tonumber(e)
    if n == 0 then return whole end
    return groups[n] or ""
  end)
  return s:sub(1, start - 1) .. out .. s:sub(stop + 1)
end

-- Text used in messages: "public.tmp_*" for a glob, { re = "^x" } for a regex.
function pattern.describe(spec)
  if type(spec) == "table" and type(spec.re) == "string" then
    return string.format("{ re = %q }", spec.re)
  end
  return string.format("%q", tostring(spec))
end

local function check_spec(spec)
  if type(spec) == "string" then return "glob", spec end
  if type(spec) == "table" then
    for key in pairs(spec) do
      if key ~= "re" then
        error(string.format("a pattern table takes only the key 're' (got %s)", tostring(key)), 0)
      end
    end
    if type(spec.re) ~= "string" then error("a pattern table needs re = \"regex text\"", 0) end
    return "regex", spec.re
  end
  error("a pattern is a glob string or { re = \"...\" }, not a " .. type(spec), 0)
end

local function new_matcher(kind, source, text)
  local tree, groups
  if kind == "glob" then tree, groups = parse_glob(source) else tree, groups = parse_regex(source) end
  return setmetatable({
    kind = kind, source = source, text = text, groups = groups,
    grammar = build_grammar(tree, kind == "glob"),
  }, Matcher)
end

-- pattern.compile(spec) -> matcher for one name. Raises "invalid regex '...': ..." etc.
function pattern.compile(spec)
  local kind, source = check_spec(spec)
  return new_matcher(kind, source, pattern.describe(spec))
end

---------------------------------------------------------------------------------------------
-- Qualified patterns (schema.name)
---------------------------------------------------------------------------------------------

-- A glob is split at its first dot that is not escaped and not inside [...]: the left side
-- matches the schema, the right side the object's name. A glob without a dot names schemas:
-- "billing" matches every object in schema billing. A regex matches the text "schema.name"
-- (for a schema itself, just "schema").
local function split_glob(source)
  local i, in_class = 1, false
  while i <= #source do
    local c = source:sub(i, i)
    if c == "\\" then
      i = i + 2
    else
      if in_class then
        if c == "]" then in_class = false end
      elseif c == "[" then
        in_class = true
        -- a "]" right after "[" (or "[!") is a member, not the end
        if source:sub(i + 1, i + 1) == "!" or source:sub(i + 1, i + 1) == "^" then i = i + 1 end
        if source:sub(i + 1, i + 1) == "]" then i = i + 1 end
      elseif c == "." then
        return source:sub(1, i - 1), source:sub(i + 1)
      end
      i = i + 1
    end
  end
  return source, nil
end

local Qualified = {}
Qualified.__index = Qualified

function Qualified:__tostring() return self.text end

-- q:match(schema, name) -> bool. name may be nil for a schema itself.
function Qualified:match(schema, name)
  if self.regex then
    return self.regex:match(name and (schema .. "." .. name) or schema)
  end
  if not self.schema:match(schema) then return false end
  if self.name == nil then return true end
  if name == nil then return false end
  return self.name:match(name)
end

-- q:match_schema_part(schema) -> bool: could this pattern select something in the schema?
function Qualified:match_schema_part(schema)
  if self.regex then return self.regex:match(schema) end
  return self.schema:match(schema)
end

-- True for a glob without a dot (it names whole schemas).
function Qualified:names_schemas()
  return self.regex == nil and self.name == nil
end

function pattern.compile_qualified(spec)
  local kind, source = check_spec(spec)
  local text = pattern.describe(spec)
  local q = setmetatable({ text = text, kind = kind }, Qualified)
  if kind == "regex" then
    q.regex = new_matcher("regex", source, text)
    return q
  end
  -- Parse the whole glob first so an error names the glob and a position in it.
  parse_glob(source)
  local schema_part, name_part = split_glob(source)
  if schema_part == "" then
    error(string.format("invalid glob '%s': nothing before the dot (use * for any schema)", source), 0)
  end
  if name_part == "" then
    error(string.format("invalid glob '%s': nothing after the dot (use * for any name)", source), 0)
  end
  q.schema = new_matcher("glob", schema_part, text)
  if name_part then q.name = new_matcher("glob", name_part, text) end
  return q
end

return pattern
