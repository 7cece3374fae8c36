-- tide.rename: source name -> target name (the playbook's `rename` table).
--
--   rename = {
--     schema = { public = "shop" },                          -- literal map
--     table  = { ["public.Users"] = "users", { strip_prefix = "tbl_" } },  -- map + rules
--     column = function(kind, schema, name, table) ... end,  -- or a function
--     index  = { { suffix = "_x" } },                        -- other kinds: own rules, else
--     case   = "lower",                                      -- the table rules apply
--   }
--
-- Each level (schema, table, column, or an object kind) is a function, or a table holding
-- literal entries (string keys) and rules (the list part). A literal entry wins; otherwise the
-- rules run in order, each on the previous one's result; then the top-level `case` policy. A
-- literal value or a function's answer is taken verbatim (no case policy).
--
-- rename.compile(spec) checks everything once, errors naming the key path. The mapper answers
-- the same way every time it is asked (answers are remembered), checks the 63-byte limit of
-- PostgreSQL names, and finds two sources mapped to one target (check_collisions).
local pattern = require "tide.pattern"
local sqlident = require "tide.sqlident"

local rename = {}

local MAX_NAME_BYTES = 63

-- Kinds that may have their own level; without one they follow the table level.
rename.object_kinds = {
  "index", "constraint", "sequence", "view", "matview", "foreign_table", "type", "enum",
  "composite", "range", "domain", "collation", "function", "procedure", "aggregate",
  "trigger", "policy", "rule", "synonym", "package",
  "text_search_parser", "text_search_template", "text_search_dictionary", "text_search_configuration",
}
local is_object_kind = {}
for _, kind in ipairs(rename.object_kinds) do is_object_kind[kind] = true end

-- Kinds sharing one name space per schema (pg_class and pg_type: a table has a row type).
local relation_namespace = {
  table = true, view = true, matview = true, sequence = true, index = true, foreign_table = true,
  type = true, enum = true, composite = true, range = true, domain = true,
}
local routine_namespace = { ["function"] = true, procedure = true, aggregate = true }
local per_table_kinds = { constraint = true, trigger = true, policy = true, rule = true }

local function fail(path, message) error(path .. ": " .. message, 0) end

local function key_path(path, key)
  if type(key) == "number" then return string.format("%s[%d]", path, key) end
  if type(key) == "string" and key:match("^[%a_][%w_]*$") then return path .. "." .. key end
  return string.format("%s[%q]", path, tostring(key))
end

local function qualified(...)
  local parts = {}
  for i = 1, select("#", ...) do
    local part = select(i, ...)
    if part ~= nil then parts[#parts + 1] = sqlident.quote(part) end
  end
  return table.concat(parts, ".")
end

-- ASCII-only case change, like PostgreSQL's folding of unquoted names.
local function change_case(name, mode)
  if mode == "lower" then return (name:gsub("[A-Z]", function(c) return string.char(c:byte() + 32) end)) end
  if mode == "upper" then return (name:gsub("[a-z]", function(c) return string.char(c:byte() - 32) end)) end
  return name
end
local case_modes = { lower = true, upper = true, keep = true }

-- Splits a literal key at dots; a part with a dot in it is written in double quotes
-- ('"odd.schema".users'), "" inside quotes is one ". Parts are not case-folded.
local function split_key(key, count, path, shape)
  local parts, i, n = {}, 1, #key
  while i <= n do
    local part
    if key:sub(i, i) == '"' then
      local buffer, j = {}, i + 1
      while true do
        if j > n then fail(path, "unclosed double quote in key") end
        local c = key:sub(j, j)
        if c == '"' then
          if key:sub(j + 1, j + 1) == '"' then buffer[#buffer + 1] = '"'; j = j + 2 else break end
        else
          buffer[#buffer + 1] = c; j = j + 1
        end
      end
      part, i = table.concat(buffer), j + 1
      if i <= n and key:sub(i, i) ~= "." then fail(path, "expected a dot after a quoted part") end
    else
      local dot = key:find(".", i, true) or (n + 1)
      part, i = key:sub(i, dot - 1), dot
    end
    if part == "" then fail(path, "empty name in key, expected " .. shape) end
    parts[#parts + 1] = part
    i = i + 1
    if i == n + 1 and key:sub(n, n) == "." then fail(path, "key ends with a dot, expected " .. shape) end
  end
  if #parts ~= count then fail(path, "expected a key of the form " .. shape) end
  return parts
end

local function check_name_value(value, path)
  if type(value) ~= "string" or value == "" then fail(path, "expected a non-empty name") end
  if #value > MAX_NAME_BYTES then
    fail(path, string.format("%q is %d bytes long; PostgreSQL names are at most %d bytes",
      value, #value, MAX_NAME_BYTES))
  end
  return value
end

local rule_actions = { "prefix", "suffix", "strip_prefix", "strip_suffix", "case", "match" }

local function compile_rule(rule, path, level)
  if type(rule) ~= "table" then fail(path, "a rule is a table such as { prefix = \"x_\" }") end
  local action
  for key in pairs(rule) do
    local known = key == "replace" or key == "only"
    for _, name in ipairs(rule_actions) do known = known or key == name end
    if not known then
      fail(path, string.format("unknown key %s (rules: %s; with match: replace; any: only)",
        tostring(key), table.concat(rule_actions, ", ")))
    end
  end
  for _, name in ipairs(rule_actions) do
    if rule[name] ~= nil then
      if action then fail(path, string.format("one action per rule (found %s and %s)", action, name)) end
      action = name
    end
  end
  if not action then fail(path, "a rule needs one of " .. table.concat(rule_actions, ", ")) end
  local compiled = { action = action, path = path }
  if action == "case" then
    if not case_modes[rule.case] then fail(key_path(path, "case"), 'expected "lower", "upper" or "keep"') end
    compiled.value = rule.case
  elseif action == "match" then
    local ok, matcher = pcall(pattern.compile, rule.match)
    if not ok then fail(key_path(path, "match"), tostring(matcher)) end
    if type(rule.replace) ~= "string" then fail(path, "a match rule needs replace = \"...\"") end
    local checked, err = pcall(matcher.check_template, matcher, rule.replace)
    if not checked then fail(key_path(path, "replace"), tostring(err)) end
    compiled.matcher, compiled.value = matcher, rule.replace
  else
    if type(rule[action]) ~= "string" or rule[action] == "" then
      fail(key_path(path, action), "expected a non-empty string")
    end
    compiled.value = rule[action]
  end
  if rule.replace ~= nil and action ~= "match" then fail(path, "replace goes with match") end
  if rule.only ~= nil then
    local list = (type(rule.only) == "table" and rule.only.re == nil) and rule.only or { rule.only }
    compiled.only = {}
    for index, spec in ipairs(list) do
      local ok, matcher = pcall(pattern.compile_qualified, spec)
      if not ok then fail(key_path(key_path(path, "only"), index), tostring(matcher)) end
      compiled.only[#compiled.only + 1] = matcher
    end
  end
  compiled.level = level
  return compiled
end

local function apply_rule(rule, name)
  local action, value = rule.action, rule.value
  if action == "prefix" then return value .. name end
  if action == "suffix" then return name .. value end
  if action == "strip_prefix" then
    if name:sub(1, #value) == value and #name > #value then return name:sub(#value + 1) end
    return name
  end
  if action == "strip_suffix" then
    if #name > #value and name:sub(-#value) == value then return name:sub(1, -#value - 1) end
    return name
  end
  if action == "case" then return change_case(name, value) end
  if action == "match" then return rule.matcher:replace(name, value) or name end
end

-- Shapes of literal keys and values per level.
local level_shapes = {
  schema = { parts = 1, shape = '"schema"' },
  table  = { parts = 2, shape = '"schema.table"' },
  column = { parts = 3, shape = '"schema.table.column"' },
}

local function compile_level(value, path, level)
  if value == nil then return nil end
  if type(value) == "function" then return { fn = value, path = path } end
  if type(value) ~= "table" then fail(path, "expected a table (names and rules) or a function") end
  local shape = level_shapes[level] or { parts = 2, shape = '"schema.name"' }
  local compiled = { literal = {}, rules = {}, path = path }
  local count = #value
  for key, entry in pairs(value) do
    local entry_path = type(key) == "string" and string.format("%s[%q]", path, key) or key_path(path, key)
    if math.type(key) == "integer" and key >= 1 and key <= count then
      -- rules, compiled below in order
    elseif type(key) == "string" then
      local parts = split_key(key, shape.parts, entry_path, shape.shape)
      local target
      if type(entry) == "table" and level ~= "schema" and level ~= "column" then
        for k in pairs(entry) do
          if k ~= "schema" and k ~= "name" then fail(entry_path, "a target is a name or { schema = , name = }") end
        end
        target = { schema = entry.schema and check_name_value(entry.schema, key_path(entry_path, "schema")),
                   name = check_name_value(entry.name, key_path(entry_path, "name")) }
      else
        target = { name = check_name_value(entry, entry_path) }
      end
      compiled.literal[table.concat(parts, "\0")] = target
    else
      fail(entry_path, "keys are names (strings); rules go in the list part")
    end
  end
  for index = 1, count do
    compiled.rules[index] = compile_rule(value[index], key_path(path, index), level)
  end
  return compiled
end

local Mapper = {}
Mapper.__index = Mapper

-- rename.compile(spec [, opts]) -> mapper. opts.path: the key path used in errors.
function rename.compile(spec, opts)
  opts = opts or {}
  local path = opts.path or "rename"
  spec = spec or {}
  if type(spec) ~= "table" then fail(path, "expected a table, got a " .. type(spec)) end
  for key in pairs(spec) do
    if not (level_shapes[key] or is_object_kind[key] or key == "case") then
      fail(path, string.format("unknown key %s (known: schema, table, column, case, %s)",
        tostring(key), table.concat(rename.object_kinds, ", ")))
    end
  end
  local self = setmetatable({ path = path, levels = {}, memo = {} }, Mapper)
  if spec.case ~= nil and not case_modes[spec.case] then
    fail(path .. ".case", 'expected "lower", "upper" or "keep"')
  end
  self.case = spec.case or "keep"
  for key, value in pairs(spec) do
    if key ~= "case" then self.levels[key] = compile_level(value, key_path(path, key), key) end
  end
  return self
end

-- Checks a computed target name. what: the source ("table public.users"); origin: the key
-- path of the level that produced it.
function Mapper:check_target(what, target, origin)
  if type(target) ~= "string" then
    error(string.format("%s returned a %s for %s; expected a name (string) or nil",
      origin, type(target), what), 0)
  end
  if target == "" then error(string.format("%s: %s maps to an empty name", origin, what), 0) end
  if #target > MAX_NAME_BYTES then
    error(string.format("%s: %s maps to %q, which is %d bytes long; PostgreSQL names are at most %d bytes",
      origin, what, target, #target, MAX_NAME_BYTES), 0)
  end
  return target
end

-- Core: the target of one name at one level. Returns new name, new schema (or nil). A rule's
-- `only` patterns are tested against the source names: the schema for schema rules,
-- schema.table for column rules, schema.name otherwise.
function Mapper:apply(level_name, kind, schema, name, table_name, what)
  local level = self.levels[level_name]
  if level and level.fn then
    local ok, new_a, new_b = pcall(level.fn, kind, schema, name, table_name)
    if not ok then error(string.format("%s raised an error for %s: %s", level.path, what, tostring(new_a)), 0) end
    if type(new_b) == "string" and (level_name == "table" or is_object_kind[level_name]) then
      -- (new schema, new name); a number here is gsub's count, not a name, and is ignored
      return self:check_target(what, new_b, level.path), self:check_target(what, new_a, level.path)
    end
    if new_a ~= nil then return self:check_target(what, new_a, level.path) end
    return self:check_target(what, change_case(name, self.case), self.path)
  end
  if level then
    local key
    if level_name == "schema" then key = name
    elseif level_name == "column" then key = schema .. "\0" .. table_name .. "\0" .. name
    else key = schema .. "\0" .. name end
    local literal = level.literal[key]
    if literal then return literal.name, literal.schema end
    local result = name
    for _, rule in ipairs(level.rules) do
      local applies = rule.only == nil
      for _, matcher in ipairs(rule.only or {}) do
        local hit
        if level_name == "schema" then hit = matcher:match_schema_part(name)
        elseif level_name == "column" then hit = matcher:match(schema, table_name)
        else hit = matcher:match(schema, name) end
        if hit then applies = true; break end
      end
      if applies then result = apply_rule(rule, result) end
    end
    return self:check_target(what, change_case(result, self.case), level.path)
  end
  return self:check_target(what, change_case(name, self.case), self.path)
end

local function memoized(self, key, compute)
  local hit = self.memo[key]
  if hit then return hit[1], hit[2] end
  local a, b = compute()
  self.memo[key] = { a, b }
  return a, b
end

-- map:schema(s) -> target schema name
function Mapper:schema(schema)
  return (memoized(self, "schema\0" .. schema, function()
    return self:apply("schema", "schema", schema, schema, nil, "schema " .. qualified(schema))
  end))
end

-- map:object(kind, s, name) -> target schema, target name. Kinds without their own level
-- follow the table level. Extensions keep their name (it identifies the extension).
function Mapper:object(kind, schema, name)
  if kind == "schema" then local s = self:schema(name or schema); return s, s end
  if kind == "column" then error("map:object: use map:column(schema, table, column) for columns", 2) end
  if kind == "extension" then return self:schema(schema), name end
  return memoized(self, kind .. "\0" .. schema .. "\0" .. name, function()
    local level_name = self.levels[kind] and kind or "table"
    local new_name, new_schema = self:apply(level_name, kind, schema, name, nil,
      kind .. " " .. qualified(schema, name))
    return new_schema or self:schema(schema), new_name
  end)
end

-- map:table(s, t) -> target schema, target table
function Mapper:table(schema, table_name)
  return self:object("table", schema, table_name)
end

-- map:column(s, t, c) -> target column name
function Mapper:column(schema, table_name, column)
  return (memoized(self, "column\0" .. schema .. "\0" .. table_name .. "\0" .. column, function()
    return self:apply("column", "column", schema, column, table_name,
      "column " .. qualified(schema, table_name, column))
  end))
end

-- One entry of a collision list: { kind, schema, name [, table] } or the same with keys
-- (kind=, schema=, name=, table=, args=). `table` is needed for columns and for constraints,
-- triggers, policies and rules (their names are unique per table); `args` tells function
-- overloads apart.
local function entry_fields(entry)
  return entry.kind or entry[1], entry.schema or entry[2], entry.name or entry[3],
    entry.table or entry[4], entry.args
end

-- Returns the name space key and a readable text of the source and of the target.
function Mapper:identify(entry)
  local kind, schema, name, table_name, args = entry_fields(entry)
  if kind == "schema" then
    local target = self:schema(name or schema)
    return "schema\0" .. target, "schema " .. qualified(name or schema), qualified(target)
  end
  if kind == "column" or (per_table_kinds[kind] and table_name) then
    local ts, tt = self:table(schema, table_name)
    local target
    if kind == "column" then target = self:column(schema, table_name, name)
    else target = select(2, self:object(kind, schema, name)) end
    local space = kind == "column" and "column" or kind
    return table.concat({ space, ts, tt, target }, "\0"),
      kind .. " " .. qualified(schema, table_name, name), qualified(ts, tt, target)
  end
  local ts, tn = self:object(kind, schema, name)
  local space = relation_namespace[kind] and "relation" or routine_namespace[kind] and "routine" or kind
  local suffix = routine_namespace[kind] and ("(" .. (args or "") .. ")") or ""
  return table.concat({ space, ts, tn, routine_namespace[kind] and (args or "") or "" }, "\0"),
    kind .. " " .. qualified(schema, name) .. suffix, qualified(ts, tn) .. suffix
end

-- map:collisions(list) -> list of { target =, sources = { text, text, ... }, message = }
function Mapper:collisions(list)
  local by_target, order, seen = {}, {}, {}
  for _, entry in ipairs(list) do
    local key, source, target = self:identify(entry)
    if not seen[key .. "\1" .. source] then
      seen[key .. "\1" .. source] = true
      local group = by_target[key]
      if not group then
        group = { target = target, sources = {} }
        by_target[key] = group
        order[#order + 1] = key
      end
      group.sources[#group.sources + 1] = source
    end
  end
  local found = {}
  for _, key in ipairs(order) do
    local group = by_target[key]
    if #group.sources > 1 then
      local sources = group.sources
      local listed = table.concat(sources, ", ", 1, #sources - 1) .. " and " .. sources[#sources]
      group.message = string.format("%s: %s %s map to %s", self.path, listed,
        #sources == 2 and "both" or "all", group.target)
      found[#found + 1] = group
    end
  end
  return found
end

-- map:check_collisions(list) -> true, or raises one error listing every collision.
function Mapper:check_collisions(list)
  local found = self:collisions(list)
  if #found == 0 then return true end
  local lines = {}
  for _, group in ipairs(found) do lines[#lines + 1] = group.message end
  error(table.concat(lines, "\n"), 0)
end

-- map:rewrite(sql, context) -> sql, warnings: tide.sqlident.rename_in_definition with this
-- mapper. context: { schema =, table =, columns = fn(schema, table) -> list, expression = bool }
function Mapper:rewrite(sql, context)
  return sqlident.rename_in_definition(sql, {
    schema = context.schema, table = context.table, expression = context.expression,
    columns = context.columns,
    relation = function(kind, schema, name) return self:object(kind, schema, name) end,
    column = function(schema, table_name, column) return self:column(schema, table_name, column) end,
  })
end

return rename
