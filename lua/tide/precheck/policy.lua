-- tide.precheck.policy — the playbook's `precheck` table: which grade each check gets, which
-- checks (or which of their findings) are ignored and why, which objects a check looks at,
-- the checks the playbook adds, and a few thresholds.
--
--   precheck = {
--     fail = { "id", ... }, warn = { ... }, info = { ... },      -- regrade by id
--     ignore  = { id = "reason" | { reason = "...", objects = { pattern, ... } } },
--     only    = { id = { pattern, ... } },                       -- findings on these objects only
--     exclude = { id = { pattern, ... } },                       -- ... and not on these
--     extra   = { check, ... },                                   -- same shape as the built-ins
--     settings = { long_transaction = "1min", throughput = "50MB" },
--   }
--
-- Patterns are tide.pattern qualified patterns ("public.*", { re = "^audit\\." }) matched
-- against the source schema and name of a finding's object. A policy is plain data, so a
-- reusable one is a Lua module returning such a table; M.merge layers several of them.
local pattern = require "tide.pattern"
local playbook = require "tide.playbook"
local suggest = require "tide.suggest"
local units = require "tide.units"

local M = {}

M.GRADES = { fail = 3, warn = 2, info = 1 }
M.GRADE_ORDER = { "fail", "warn", "info" }

local TOP_KEYS = { fail = true, warn = true, info = true, ignore = true, only = true, exclude = true,
                   extra = true, settings = true }

-- Thresholds a policy may set: name → { default, parse }.
local parse_duration, parse_size = units.parse_duration, units.parse_size

M.SETTINGS = {
  long_transaction = { default = 60, parse = parse_duration,
                       expects = 'a duration such as "1min", "30s" or a number of seconds' },
  throughput = { default = 50 * 1024 * 1024, parse = parse_size,
                 expects = 'a size per second and per COPY job, such as "50MB"' },
}

-- Checks a policy may not grade down (warn, info), ignore, or scope away (only, exclude):
-- graded down, the task would run into what they found and change data silently, or write rows
-- to the target and only then fail. id → why, for the playbook error (docs/prechecks.md).
M.FIXED = {
  connectivity = "without both connections no other check runs, so the precheck would pass having checked nothing",
  encoding = "a character the target's encoding cannot hold stops the load after other tables were copied, and " ..
    "text from or into SQL_ASCII is stored as bytes, which the other side may read as other characters",
  row_filter_stream = "the stream would apply changes the row filter leaves out: the target would get rows the " ..
    "selection excludes",
  foreign_key_filtered = "the full load would copy every row, then adding the foreign key would fail",
  target_table_missing = "the full load would copy the other tables, then fail on the missing one",
  target_table_privileges = "the full load or the stream would write the other tables, then fail on that one",
  source_select_privilege = "the full load would copy the other tables, then fail on the unreadable one",
  source_schema_usage = "the full load would copy the other tables, then fail on those of that schema",
  target_ownership = "row-level security would refuse the load after other tables were copied, and hide rows " ..
    "from applied updates and deletes; foreign owners would fail the post-data phase after the load",
}

------------------------------------------------------------------------ helpers

local closest = suggest.closest

local function is_list(v)
  if type(v) ~= "table" then return false end
  local n = 0
  for k in pairs(v) do
    if math.type(k) ~= "integer" then return false end
    n = n + 1
  end
  return n == #v
end

------------------------------------------------------------------------ merging

-- M.merge(p1, p2, ...) → one policy table: later policies win for the same check id (a
-- regrade, an ignore, a scope, a setting); extra checks are concatenated, a later one with
-- the same id replacing the earlier. Used by `require("tide.precheck").policy(...)`.
function M.merge(...)
  local out = { ignore = {}, only = {}, exclude = {}, settings = {}, extra = {} }
  local grade_of = {}
  for i = 1, select("#", ...) do
    local p = select(i, ...)
    -- `policy(require "policies.x")` also passes require's second result, the file's path.
    local loader_data = type(p) == "string" and i > 1 and type((select(i - 1, ...))) == "table"
    if p ~= nil and not loader_data then
      if type(p) ~= "table" then error("a precheck policy is a table, got " .. type(p), 2) end
      for _, grade in ipairs(M.GRADE_ORDER) do
        for _, id in ipairs(type(p[grade]) == "table" and p[grade] or {}) do grade_of[id] = grade end
      end
      for _, key in ipairs({ "ignore", "only", "exclude", "settings" }) do
        for k, v in pairs(type(p[key]) == "table" and p[key] or {}) do out[key][k] = v end
      end
      for _, check in ipairs(type(p.extra) == "table" and p.extra or {}) do
        local replaced = false
        for j, old in ipairs(out.extra) do
          if type(old) == "table" and type(check) == "table" and old.id == check.id then
            out.extra[j], replaced = check, true
          end
        end
        if not replaced then out.extra[#out.extra + 1] = check end
      end
      -- Keep anything unknown so that compile() reports it with a "did you mean".
      for k, v in pairs(p) do if not TOP_KEYS[k] then out[k] = v end end
    end
  end
  for _, grade in ipairs(M.GRADE_ORDER) do out[grade] = {} end
  local ids = {}
  for id in pairs(grade_of) do ids[#ids + 1] = id end
  table.sort(ids)
  for _, id in ipairs(ids) do table.insert(out[grade_of[id]], id) end
  return out
end

------------------------------------------------------------------------ compiling

-- A check's shape (built-in or extra): { id =, title =, grade =, applies =, run = }.
function M.validate_check(check, where)
  if type(check) ~= "table" then return where .. " must be a table { id =, title =, grade =, run = }" end
  if type(check.id) ~= "string" or not check.id:match("^[%w_%-%.]+$") then
    return where .. ".id must be a name of letters, digits, '_', '-' or '.'"
  end
  if type(check.run) ~= "function" then return where .. " (" .. check.id .. ").run must be a function(ctx) returning findings" end
  if check.applies ~= nil and type(check.applies) ~= "function" then
    return where .. " (" .. check.id .. ").applies must be a function(ctx) returning true or false"
  end
  if check.grade ~= nil and not M.GRADES[check.grade] then
    return where .. " (" .. check.id .. ").grade must be \"fail\", \"warn\" or \"info\""
  end
  if check.title ~= nil and type(check.title) ~= "string" then return where .. " (" .. check.id .. ").title must be a string" end
end

local function compile_patterns(list, where)
  if type(list) == "string" or (type(list) == "table" and list.re) then list = { list } end
  if not is_list(list) or #list == 0 then
    error(where .. " must be a list of patterns such as { \"public.*\" }", 0)
  end
  local out = {}
  for i, spec in ipairs(list) do
    local ok, q = pcall(pattern.compile_qualified, spec)
    if not ok then error(where .. "[" .. i .. "]: " .. tostring(q), 0) end
    out[i] = q
  end
  return out
end

local function matches(list, finding)
  local schema, name = finding.schema, finding.name
  if not schema then return false end
  for _, q in ipairs(list) do
    if q:match(schema, name) then return true end
  end
  return false
end

-- M.compile(spec, builtins, locate) → policy, or raises a playbook error naming the key.
--   policy.grade(id, default) → the grade a check's findings get
--   policy.ignored(id) → reason | nil;  policy.ignore_finding(id, finding) → reason | nil
--   policy.in_scope(id, finding) → bool;  policy.extra = { check, ... };  policy.settings
function M.compile(spec, builtins, locate)
  spec = spec or {}
  locate = locate or function() return "" end
  local function fail(msg) playbook.raise(locate("precheck") .. msg) end
  if type(spec) ~= "table" then fail("precheck must be a table (see docs/prechecks.md)") end
  local known = {}
  for _, check in ipairs(builtins) do known[check.id] = true end

  for key in pairs(spec) do
    if type(key) ~= "string" or not TOP_KEYS[key] then
      local hint = type(key) == "string" and closest(key, TOP_KEYS)
      fail("unknown key '" .. tostring(key) .. "' in precheck" .. (hint and (" (did you mean '" .. hint .. "'?)") or ""))
    end
  end

  local extra = {}
  if spec.extra ~= nil then
    if not is_list(spec.extra) then fail("precheck.extra must be a list of checks { id =, title =, grade =, run = }") end
    for i, check in ipairs(spec.extra) do
      local problem = M.validate_check(check, "precheck.extra[" .. i .. "]")
      if problem then fail(problem) end
      if known[check.id] then fail("precheck.extra[" .. i .. "]: a check with id '" .. check.id .. "' already exists; give yours another id") end
      known[check.id] = true
      extra[#extra + 1] = check
    end
  end

  local function check_id(id, where)
    if type(id) ~= "string" then fail(where .. " must name a check id (a string), got " .. type(id)) end
    if not known[id] then
      local hint = closest(id, known)
      fail(where .. ": no check '" .. id .. "'" .. (hint and (" (did you mean '" .. hint .. "'?)") or " (docs/prechecks.md lists them)"))
    end
  end

  local regrade = {}
  for _, grade in ipairs(M.GRADE_ORDER) do
    local list = spec[grade]
    if list ~= nil then
      if not is_list(list) then fail("precheck." .. grade .. " must be a list of check ids, such as { \"table_without_key\" }") end
      for _, id in ipairs(list) do
        check_id(id, "precheck." .. grade)
        if regrade[id] and regrade[id] ~= grade then
          fail("precheck: check '" .. id .. "' is listed under both " .. regrade[id] .. " and " .. grade)
        end
        regrade[id] = grade
      end
    end
  end

  local ignored, ignored_objects = {}, {}
  if spec.ignore ~= nil then
    if type(spec.ignore) ~= "table" or is_list(spec.ignore) and next(spec.ignore) ~= nil then
      fail("precheck.ignore must map check ids to a reason: { table_without_key = \"append-only tables\" }")
    end
    for id, value in pairs(spec.ignore) do
      check_id(id, "precheck.ignore")
      if type(value) == "string" and value:match("%S") then
        ignored[id] = value
      elseif type(value) == "table" and type(value.reason) == "string" and value.reason:match("%S") then
        for k in pairs(value) do
          if k ~= "reason" and k ~= "objects" then fail("precheck.ignore." .. id .. ": unknown key '" .. tostring(k) .. "' (reason, objects)") end
        end
        if value.objects == nil then
          ignored[id] = value.reason
        else
          local ok, list = pcall(compile_patterns, value.objects, "precheck.ignore." .. id .. ".objects")
          if not ok then fail(list) end
          ignored_objects[id] = { reason = value.reason, patterns = list }
        end
      else
        fail("precheck.ignore." .. id .. " needs a reason: a non-empty string, or { reason = \"...\", objects = { ... } }")
      end
    end
  end

  local scopes = { only = {}, exclude = {} }
  for _, key in ipairs({ "only", "exclude" }) do
    if spec[key] ~= nil then
      if type(spec[key]) ~= "table" or is_list(spec[key]) and next(spec[key]) ~= nil then
        fail("precheck." .. key .. " must map check ids to lists of patterns: { table_without_key = { \"public.*\" } }")
      end
      for id, list in pairs(spec[key]) do
        check_id(id, "precheck." .. key)
        local ok, compiled = pcall(compile_patterns, list, "precheck." .. key .. "." .. id)
        if not ok then fail(compiled) end
        scopes[key][id] = compiled
      end
    end
  end

  local settings = {}
  for name, setting in pairs(M.SETTINGS) do settings[name] = setting.default end
  if spec.settings ~= nil then
    if type(spec.settings) ~= "table" then fail("precheck.settings must be a table") end
    for name, value in pairs(spec.settings) do
      local setting = M.SETTINGS[name]
      if not setting then
        local hint = type(name) == "string" and closest(name, M.SETTINGS)
        fail("unknown setting '" .. tostring(name) .. "' in precheck.settings" .. (hint and (" (did you mean '" .. hint .. "'?)") or ""))
      end
      local parsed = setting.parse(value)
      if parsed == nil then fail("precheck.settings." .. name .. " must be " .. setting.expects) end
      settings[name] = parsed
    end
  end

  -- Last, so that a mistake in the same entry (no reason, a bad pattern) is reported as such.
  local function refuse_lowering(id, where)
    if M.FIXED[id] then
      fail(where .. ": check '" .. id .. "' cannot be graded down, ignored or scoped: " .. M.FIXED[id] ..
        "; fix what it finds instead (docs/prechecks.md)")
    end
  end
  for _, grade in ipairs({ "warn", "info" }) do
    for _, id in ipairs(spec[grade] or {}) do refuse_lowering(id, "precheck." .. grade) end
  end
  for _, key in ipairs({ "ignore", "only", "exclude" }) do
    local ids = {}
    for id in pairs(spec[key] or {}) do ids[#ids + 1] = id end
    table.sort(ids)
    for _, id in ipairs(ids) do refuse_lowering(id, "precheck." .. key) end
  end

  local policy = { extra = extra, settings = settings, regrade = regrade }
  function policy.grade(id, default) return regrade[id] or default end
  function policy.ignored(id) return ignored[id] end
  function policy.ignore_finding(id, finding)
    local rule = ignored_objects[id]
    if rule and matches(rule.patterns, finding) then return rule.reason end
  end
  function policy.in_scope(id, finding)
    local only, exclude = scopes.only[id], scopes.exclude[id]
    -- A finding about no particular object (a server setting) is never scoped away.
    if finding.schema == nil then return true end
    if only and not matches(only, finding) then return false end
    if exclude and matches(exclude, finding) then return false end
    return true
  end
  return policy
end

return M
