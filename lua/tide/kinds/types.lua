-- Kinds: enum, composite, domain, range, and base types (reported, not created).
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

-- Base types need input/output functions written in C; they come with an extension (whose
-- members are never listed) or must be installed on the target by hand.
local base = type_kind("type", "b", 41, function() return {} end, {
  skip = function() return "a base type needs C functions: install it on the target first (usually with its extension)" end,
})

return { enum, range, base, domain, composite }
