-- Kinds: enum, composite, domain, range, and base types.
local ddl = require "tide.ddl"

-- Every user type answers to its own oid and to its array type's oid in pg_depend: a column
-- of type mood[] depends on the array type, which comes with mood.
local function type_identities(row)
  local list = {}
  if row.array_oid and row.array_oid ~= 0 then list[#list + 1] = { "pg_type", row.array_oid } end
  if row.relid and row.relid ~= 0 then list[#list + 1] = { "pg_class", row.relid } end
  if row.multirange_oid then
    list[#list + 1] = { "pg_type", row.multirange_oid }
    list[#list + 1] = { "pg_type", row.multirange_array_oid }
  end
  return list
end

local function type_kind(name, type_kind_letter, rank, create, extra)
  local kind = {
    name = name, list = "types", class = "pg_type", phase = "pre", rank = rank,
    space = "relation",
    accept = function(row) return row.type_kind == type_kind_letter end,
    identities = type_identities,
    create = create,
    reference = function(_, obj) return (name == "domain" and "DOMAIN " or "TYPE ") .. ddl.target(obj) end,
    drop = function(_, obj) return (name == "domain" and "DROP DOMAIN " or "DROP TYPE ") .. ddl.target(obj) end,
  }
  for k, v in pairs(extra or {}) do kind[k] = v end
  return kind
end

local enum = type_kind("enum", "e", 40, function(_, obj)
  local labels = {}
  for i, label in ipairs(obj.row.labels or {}) do labels[i] = ddl.literal(label) end
  return { { sql = "CREATE TYPE " .. ddl.target(obj) .. " AS ENUM (" .. table.concat(labels, ", ") .. ")" } }
end)

-- A composite type's attributes are the columns of its pg_class row (relkind 'c').
local composite = type_kind("composite", "c", 50, function(ctx, obj)
  local attributes = {}
  for _, c in ipairs(ctx.cat.columns_by_relid[obj.row.relid] or {}) do
    local text = ddl.quote(ddl.column(ctx, obj, c.name)) .. " " .. ddl.type_text(ctx, c.type)
    if c.collation_name then text = text .. " COLLATE " .. ddl.collation(ctx, c.collation_schema, c.collation_name) end
    attributes[#attributes + 1] = text
  end
  return { { sql = "CREATE TYPE " .. ddl.target(obj) .. " AS (" .. table.concat(attributes, ", ") .. ")" } }
end)

-- Validated CHECK constraints are written inside CREATE DOMAIN (obj.checks, filled by the
-- planner); a NOT VALID one is a constraint object of its own, added after the data.
local domain = type_kind("domain", "d", 45, function(ctx, obj)
  local row = obj.row
  local sql = "CREATE DOMAIN " .. ddl.target(obj) .. " AS " .. ddl.type_text(ctx, row.base_type)
  if row.collation_name then sql = sql .. " COLLATE " .. ddl.collation(ctx, row.collation_schema, row.collation_name) end
  if row.default_expr then
    sql = sql .. " DEFAULT " .. ddl.definition(ctx, row.default_expr, nil,
      { expression = true, warn_object = obj, describe = "default of domain " .. obj.name })
  end
  if row.not_null then sql = sql .. " NOT NULL" end
  for _, con in ipairs(obj.checks or {}) do
    sql = sql .. "\n    CONSTRAINT " .. ddl.quote(con.target.name) .. " "
      .. ddl.definition(ctx, con.row.definition, nil, { warn_object = obj, describe = "constraint " .. con.name })
  end
  return { { sql = sql } }
end)

local range = type_kind("range", "r", 42, function(ctx, obj)
  local row = obj.row
  local options = { "subtype = " .. ddl.type_text(ctx, row.range_subtype) }
  if row.range_opclass_name then
    options[#options + 1] = "subtype_opclass = " .. ddl.qualified(
      ddl.lookup(ctx, "type", row.range_opclass_schema, row.range_opclass_name))
  end
  if row.range_collation_name then
    options[#options + 1] = "collation = " .. ddl.collation(ctx, row.range_collation_schema, row.range_collation_name)
  end
  if row.range_canonical_name then
    options[#options + 1] = "canonical = " .. ddl.qualified(
      ddl.lookup(ctx, "function", row.range_canonical_schema, row.range_canonical_name))
  end
  if row.range_diff_name then
    options[#options + 1] = "subtype_diff = " .. ddl.qualified(
      ddl.lookup(ctx, "function", row.range_diff_schema, row.range_diff_name))
  end
  if row.multirange_name then
    -- The multirange follows the range's schema; its name is mapped like a type's.
    local _, name = ctx.map_name("type", row.multirange_schema, row.multirange_name)
    options[#options + 1] = "multirange_type_name = " .. ddl.qualified(obj.target.schema, name)
  end
  return { { sql = "CREATE TYPE " .. ddl.target(obj) .. " AS RANGE (" .. table.concat(options, ", ") .. ")" } }
end)

-- Base types, as pg_dump writes them: the shell (CREATE TYPE name), then the functions (their
-- input function returns the type, so they need the shell), then CREATE TYPE name (INPUT =
-- ..., OUTPUT = ..., ...) with every field explicit (what LIKE copied, too); the array type
-- comes with it. The functions are LANGUAGE internal, c or sql as on the source; a C
-- function's library must be on the target (precheck function_library_missing). Base types
-- of an extension are the extension's (never listed).
local BASE_FUNCTIONS = { { "input", "INPUT" }, { "output", "OUTPUT" }, { "receive", "RECEIVE" },
  { "send", "SEND" }, { "typmod_in", "TYPMOD_IN" }, { "typmod_out", "TYPMOD_OUT" },
  { "analyze", "ANALYZE" }, { "subscript", "SUBSCRIPT" } }
local ALIGNMENT = { c = "char", s = "int2", i = "int4", d = "double" }
local STORAGE = { p = "plain", e = "external", x = "extended", m = "main" }

-- The selected user functions the type names (I/O, typmod, analyze, subscript).
local function base_functions(ctx, obj)
  local list, seen = {}, {}
  for _, role in ipairs(BASE_FUNCTIONS) do
    local f = (obj.row.base_functions or {})[role[1]]
    local fn = f and ctx.object_at("pg_proc", f[3])
    if fn and fn ~= obj and not seen[fn] then seen[fn] = true; list[#list + 1] = fn end
  end
  return list
end

local base = type_kind("type", "b", 41, function(ctx, obj)
  local row = obj.row
  local functions = row.base_functions or {}
  local options = { "INTERNALLENGTH = " .. (row.base_length == -1 and "variable" or tostring(row.base_length)) }
  local function add(text) options[#options + 1] = text end
  local function fn(role)
    local f = functions[role]
    if f then add(BASE_FUNCTIONS[role] .. " = " .. ddl.qualified(ddl.lookup(ctx, "function", f[1], f[2]))) end
  end
  for _, role in ipairs({ "input", "output", "receive", "send", "typmod_in", "typmod_out", "analyze" }) do fn(role) end
  if row.base_collatable then add("COLLATABLE = true") end
  if row.default_expr then
    add("DEFAULT = " .. ddl.definition(ctx, row.default_expr, nil,
      { expression = true, warn_object = obj, describe = "default of type " .. obj.name }))
  elseif row.base_default then
    add("DEFAULT = " .. ddl.literal(row.base_default))
  end
  fn("subscript")
  if row.base_element then add("ELEMENT = " .. ddl.type_text(ctx, row.base_element)) end
  if row.base_category and row.base_category ~= "U" then add("CATEGORY = " .. ddl.literal(row.base_category)) end
  if row.base_preferred then add("PREFERRED = true") end
  if row.base_delimiter and row.base_delimiter ~= "," then add("DELIMITER = " .. ddl.literal(row.base_delimiter)) end
  if ALIGNMENT[row.base_alignment] then add("ALIGNMENT = " .. ALIGNMENT[row.base_alignment]) end
  if STORAGE[row.base_storage] then add("STORAGE = " .. STORAGE[row.base_storage]) end
  if row.base_by_value then add("PASSEDBYVALUE") end
  return {
    { sql = "CREATE TYPE " .. ddl.target(obj), kind = "type_shell", suffix = "shell" },
    { sql = "CREATE TYPE " .. ddl.target(obj) .. " (\n    " .. table.concat(options, ",\n    ") .. "\n)",
      after = base_functions(ctx, obj) },
  }
end, {
  -- The type and its I/O functions depend on each other; the functions need only the shell,
  -- the full CREATE TYPE needs them (its second step waits for them: `after`).
  relink = function(ctx, obj)
    for _, fn in ipairs(base_functions(ctx, obj)) do
      if obj.deps then obj.deps[fn] = nil end
      if fn.deps and fn.deps[obj] then require("tide.plan.depends").own(fn, obj).first_step = true end
    end
  end,
})
for _, role in ipairs(BASE_FUNCTIONS) do BASE_FUNCTIONS[role[1]] = role[2] end

return { enum, range, base, domain, composite }
