-- tide.select: which source objects a task migrates (the playbook's `select` table).
--
--   select = {
--     include = { "public.*", "billing" },          -- patterns over schema.name; none = all
--     exclude = { "public.tmp_*", { re = "_old$" } }, -- exclude beats include
--     kinds   = { include = { ... }, exclude = { "trigger" } },
--     columns = { ["public.users"] = { exclude = { "legacy_hash" } } },
--     rows    = { ["public.events"] = "created_at >= date '2025-01-01'" },
--     where   = function(obj) return obj.name ~= "scratch" end,  -- or a list of functions
--   }
--
-- select.compile(spec) checks the whole table once (every error names its key path) and returns
-- a selector the planner asks about each catalog object. Patterns are tide.pattern globs or
-- { re = "..." } regexes; a glob without a dot names schemas ("billing" = everything in it).
-- Objects that belong to a table (index, constraint, trigger, rule, policy, ...) are asked with
-- that table, and follow its selection. docs/select-and-rename.md is the user's reference.
local pattern = require "tide.pattern"

local select_module = {}

-- Kinds the planner knows about; select.compile(spec, { kinds = {...} }) replaces the list.
select_module.default_kinds = {
  "schema", "extension", "type", "enum", "composite", "range", "domain", "collation",
  "sequence", "table", "foreign_table", "view", "matview", "index", "constraint", "trigger",
  "rule", "policy", "function", "procedure", "aggregate", "comment", "security_label", "grant",
  "synonym", "package",   -- PolarDB for PostgreSQL (Oracle compatible)
  "text_search_parser", "text_search_template", "text_search_dictionary", "text_search_configuration",
  "foreign_data_wrapper", "server", "user_mapping", "event_trigger",
  "operator", "operator_family", "operator_class", "cast", "conversion",
  "language", "transform", "access_method",
}

local known_keys = { include = true, exclude = true, kinds = true, columns = true, rows = true, where = true,
                     rows_follow = true }

local function fail(path, message)
  error(path .. ": " .. message, 0)
end

local function key_path(path, key)
  if type(key) == "number" then return string.format("%s[%d]", path, key) end
  if type(key) == "string" and key:match("^[%a_][%w_]*$") then return path .. "." .. key end
  return string.format("%s[%q]", path, tostring(key))
end

-- Accepts a single item or a list; returns a list. Rejects tables with non-list keys.
local function as_list(value, path, what)
  if type(value) ~= "table" or value.re ~= nil then return { value } end
  local n = #value
  for key in pairs(value) do
    if math.type(key) ~= "integer" or key < 1 or key > n then
      fail(path, "expected a list of " .. what .. ", found the key " .. tostring(key))
    end
  end
  return value
end

local function compile_patterns(value, path, qualified)
  local list = {}
  for index, spec in ipairs(as_list(value, path, "patterns")) do
    local item_path = key_path(path, index)
    local ok, matcher = pcall(qualified and pattern.compile_qualified or pattern.compile, spec)
    if not ok then fail(item_path, tostring(matcher)) end
    list[#list + 1] = { matcher = matcher, path = item_path, hits = 0 }
  end
  return list
end

local function compile_kinds(value, path, valid)
  if type(value) ~= "table" then fail(path, "expected { include = {...} } or { exclude = {...} }") end
  local result = {}
  for key, list in pairs(value) do
    if key ~= "include" and key ~= "exclude" then
      fail(path, string.format("unknown key %s (give include and/or exclude, lists of kinds)", tostring(key)))
    end
    local set = {}
    local list_path = key_path(path, key)
    for index, kind in ipairs(as_list(list, list_path, "kinds")) do
      if type(kind) ~= "string" then fail(key_path(list_path, index), "a kind is a string") end
      if not valid[kind] then
        local names = {}
        for name in pairs(valid) do names[#names + 1] = name end
        table.sort(names)
        fail(key_path(list_path, index),
          string.format("unknown kind %q (known: %s)", kind, table.concat(names, ", ")))
      end
      set[kind] = true
    end
    result[key] = set
  end
  return result
end

-- columns and rows are maps keyed by a table pattern ("public.users", "public.*").
local function compile_table_map(value, path, compile_value)
  if type(value) ~= "table" then fail(path, "expected a table keyed by \"schema.table\"") end
  local rules = {}
  for key, entry in pairs(value) do
    local entry_path = key_path(path, key)
    if type(key) ~= "string" then fail(entry_path, "keys are \"schema.table\" strings") end
    local ok, matcher = pcall(pattern.compile_qualified, key)
    if not ok then fail(entry_path, tostring(matcher)) end
    rules[#rules + 1] = { key = key, matcher = matcher, path = entry_path, hits = 0,
                          value = compile_value(entry, entry_path) }
  end
  table.sort(rules, function(a, b) return a.key < b.key end)
  return rules
end

local function compile_column_rule(entry, path)
  if type(entry) ~= "table" then fail(path, "expected { include = {...} } or { exclude = {...} }") end
  for key in pairs(entry) do
    if key ~= "include" and key ~= "exclude" then
      fail(path, "unknown key " .. tostring(key) .. " (give include or exclude)")
    end
  end
  if entry.include and entry.exclude then fail(path, "give include or exclude, not both") end
  if not entry.include and not entry.exclude then fail(path, "give include or exclude") end
  local mode = entry.include and "include" or "exclude"
  return { mode = mode, patterns = compile_patterns(entry[mode], key_path(path, mode), false) }
end

local function compile_row_filter(entry, path)
  if type(entry) ~= "string" or entry:match("^%s*$") then
    fail(path, "expected a SQL condition as a non-empty string")
  end
  return entry
end

local Selector = {}
Selector.__index = Selector

-- select.compile(spec [, opts]) -> selector. opts.kinds: list of valid kind names.
function select_module.compile(spec, opts)
  opts = opts or {}
  local path = opts.path or "select"
  spec = spec or {}
  if type(spec) ~= "table" then fail(path, "expected a table, got a " .. type(spec)) end
  for key in pairs(spec) do
    if not known_keys[key] then
      fail(path, string.format("unknown key %s (known: columns, exclude, include, kinds, rows, rows_follow, where)",
        tostring(key)))
    end
  end
  local valid = {}
  for _, kind in ipairs(opts.kinds or select_module.default_kinds) do valid[kind] = true end

  local self = setmetatable({ path = path }, Selector)
  self.includes = spec.include and compile_patterns(spec.include, path .. ".include", true)
  if self.includes and #self.includes == 0 then self.includes = nil end
  self.excludes = spec.exclude and compile_patterns(spec.exclude, path .. ".exclude", true) or {}
  self.kinds = spec.kinds and compile_kinds(spec.kinds, path .. ".kinds", valid) or {}
  self.column_rules = spec.columns and compile_table_map(spec.columns, path .. ".columns", compile_column_rule) or {}
  self.row_rules = spec.rows and compile_table_map(spec.rows, path .. ".rows", compile_row_filter) or {}
  -- rows_follow = "foreign_keys": tables referencing a filtered table keep only the rows whose
  -- parent row is kept (tide.plan.follow derives their filters).
  if spec.rows_follow ~= nil and spec.rows_follow ~= "foreign_keys" then
    fail(path .. ".rows_follow", string.format("expected \"foreign_keys\" (or no key), got %s",
      type(spec.rows_follow) == "string" and string.format("%q", spec.rows_follow) or tostring(spec.rows_follow)))
  end
  self.rows_follow = spec.rows_follow
  self.predicates = {}
  if spec.where ~= nil then
    local list = type(spec.where) == "function" and { spec.where } or spec.where
    if type(list) ~= "table" then fail(path .. ".where", "expected a function or a list of functions") end
    for index, fn in ipairs(as_list(list, path .. ".where", "functions")) do
      if type(fn) ~= "function" then
        fail(key_path(path .. ".where", index), "expected a function, got a " .. type(fn))
      end
      self.predicates[#self.predicates + 1] = { fn = fn, path = key_path(path .. ".where", index) }
    end
  end
  return self
end

-- Does a pattern from include/exclude concern this object?
-- For a schema: a regex tested on its name, a dotless glob on its name; for inclusion also the
-- schema half of a qualified glob. For other objects: schema.name, or schema.table when the
-- object belongs to a table; an exclude also drops an object by its own name.
local function concerns(item, kind, schema, name, table_name, for_exclude)
  local m = item.matcher
  local hit
  if kind == "schema" then
    if for_exclude then
      hit = (m.regex ~= nil or m:names_schemas()) and m:match(name)
    else
      hit = m:match_schema_part(name)
    end
  elseif schema == nil then
    hit = false
  elseif table_name then
    hit = m:match(schema, table_name) or (for_exclude and m:match(schema, name))
  else
    hit = m:match(schema, name)
  end
  if hit then item.hits = item.hits + 1 end
  return hit
end

local NONE = {}

local function describe_object(kind, schema, name)
  if schema and kind ~= "schema" then return string.format("%s %s.%s", kind, schema, name) end
  return string.format("%s %s", kind, name)
end

-- sel:object(kind, schema, name [, table]) -> true | false, reason
--   kind    "table", "view", "index", ... ("schema" for a schema: pass its name as both)
--   table   for objects that belong to a table (index, constraint, trigger, policy, rule,
--           comment or grant on a table): the table's name, in the same schema.
function Selector:object(kind, schema, name, table_name)
  if kind == "schema" then name = name or schema; schema = name end
  if self.kinds.exclude and self.kinds.exclude[kind] then
    return false, string.format('kind "%s" excluded by %s.kinds.exclude', kind, self.path)
  end
  if self.kinds.include and not self.kinds.include[kind] then
    return false, string.format('kind "%s" not in %s.kinds.include', kind, self.path)
  end
  -- Every pattern is tried (not only up to the first hit) so unused() is exact.
  local excluded_by
  for _, item in ipairs(self.excludes) do
    if concerns(item, kind, schema, name, table_name, true) and not excluded_by then excluded_by = item end
  end
  local included = self.includes == nil
  for _, item in ipairs(self.includes or NONE) do
    if concerns(item, kind, schema, name, table_name, false) then included = true end
  end
  if excluded_by then return false, "excluded by " .. excluded_by.matcher.text end
  if not included then return false, "not matched by any " .. self.path .. ".include pattern" end
  if #self.predicates > 0 then
    local object = { kind = kind, schema = schema, name = name, table = table_name }
    for _, predicate in ipairs(self.predicates) do
      local ok, keep, reason = pcall(predicate.fn, object)
      if not ok then
        error(string.format("%s raised an error for %s: %s", predicate.path,
          describe_object(kind, schema, name), tostring(keep)), 0)
      end
      if not keep then
        if type(reason) == "string" and reason ~= "" then
          return false, reason .. " (" .. predicate.path .. ")"
        end
        return false, "dropped by " .. predicate.path
      end
    end
  end
  return true
end

-- The rule of a table map (columns, rows) for one table: an exact key wins; otherwise the one
-- pattern key that matches. Two pattern keys for one table is an error: which should win?
local function find_rule(rules, what, schema, table_name)
  local exact = schema .. "." .. table_name
  local found
  for _, rule in ipairs(rules) do
    if rule.key == exact then rule.hits = rule.hits + 1; return rule end
  end
  for _, rule in ipairs(rules) do
    if rule.matcher:match(schema, table_name) then
      if found then
        error(string.format('%s: both %q and %q apply to %s.%s; make them disjoint or add an exact key %q',
          what, found.key, rule.key, schema, table_name, exact), 0)
      end
      found = rule
    end
  end
  if found then found.hits = found.hits + 1 end
  return found
end

-- sel:columns(schema, table, names) -> kept, dropped (both lists, in the order of names)
function Selector:columns(schema, table_name, names)
  local kept, dropped = {}, {}
  -- (No rules, the usual case: no names to build for find_rule.)
  local rule = self.column_rules[1] and find_rule(self.column_rules, self.path .. ".columns", schema, table_name)
  for _, column in ipairs(names) do
    local keep = true
    if rule then
      local hit = false
      for _, item in ipairs(rule.value.patterns) do
        if item.matcher:match(column) then item.hits = item.hits + 1; hit = true end
      end
      if rule.value.mode == "include" then keep = hit else keep = not hit end
    end
    if keep then kept[#kept + 1] = column else dropped[#dropped + 1] = column end
  end
  return kept, dropped
end

-- sel:row_filter(schema, table) -> the SQL condition string, or nil
function Selector:row_filter(schema, table_name)
  local rule = self.row_rules[1] and find_rule(self.row_rules, self.path .. ".rows", schema, table_name)
  return rule and rule.value or nil
end

-- sel:unused() -> list of messages for patterns and keys that matched nothing so far: after
-- the planner asked about every object, these are likely typos worth a warning.
function Selector:unused()
  local messages = {}
  local function check(item, text)
    if item.hits == 0 then messages[#messages + 1] = item.path .. " " .. text .. " matched nothing" end
  end
  for _, item in ipairs(self.includes or {}) do check(item, item.matcher.text) end
  for _, item in ipairs(self.excludes) do check(item, item.matcher.text) end
  for _, rule in ipairs(self.column_rules) do
    check(rule, "(no such table)")
    if rule.hits > 0 then
      for _, item in ipairs(rule.value.patterns) do check(item, item.matcher.text) end
    end
  end
  for _, rule in ipairs(self.row_rules) do check(rule, "(no such table)") end
  return messages
end

return select_module
