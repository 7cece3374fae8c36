-- Kinds: operator, operator_family, operator_class, cast, conversion (see tide.kinds for the
-- fields). Written from the catalog as pg_dump writes them:
--
--   CREATE OPERATOR s.=== (FUNCTION = ..., LEFTARG = ..., RIGHTARG = ..., COMMUTATOR = ...,
--     NEGATOR = ..., MERGES, HASHES, RESTRICT = ..., JOIN = ...)
--       A commutator or negator that does not exist yet is made as a shell by the server and
--       filled in when its own CREATE OPERATOR runs, so operators that name each other need
--       no order (pg_depend has no edge for these links either).
--   CREATE OPERATOR FAMILY s.f USING btree, then ALTER OPERATOR FAMILY ... ADD its loose
--       members (those no class owns)
--   CREATE OPERATOR CLASS s.c [DEFAULT] FOR TYPE t USING btree FAMILY s.f AS
--       [STORAGE t,] OPERATOR n s.op(l, r) [FOR ORDER BY s.f], FUNCTION n (l, r) s.fn(args)
--   CREATE CAST (a AS b) WITH FUNCTION s.fn(args) | WITHOUT FUNCTION | WITH INOUT
--       [AS ASSIGNMENT | AS IMPLICIT]
--   CREATE [DEFAULT] CONVERSION s.c FOR 'LATIN1' TO 'UTF8' FROM s.fn
--
-- Operators, families, classes and conversions keep their names (an operator's name is its
-- symbol); their schema follows the schema map. A cast has no schema nor name of its own: it
-- is migrated when its source type, target type or function is a migrated object, and
-- follows the names of those. pg_amop and pg_amproc rows (the members) stand for their class,
-- or for their family when they are loose, so what they use orders the class or family.
local ddl = require "tide.ddl"
local sqlident = require "tide.sqlident"
local id_of = require("tide.plan.ids").id

local quote = sqlident.quote

-- Target schema for the kinds that keep their names.
local function schema_target(ctx, obj)
  local schema = ctx.map_name("schema", obj.schema, obj.schema)
  return schema, obj.name
end

local function function_ref(ctx, schema, name)
  return ddl.qualified(ddl.lookup(ctx, "function", schema, name))
end

-- "schema.op" as OPERATOR(...), CREATE OPERATOR and class members write it: the symbol is
-- never quoted.
local function operator_ref(ctx, schema, name)
  local s = ddl.lookup(ctx, "operator", schema, name)
  return quote(s) .. "." .. name
end

local function family_ref(ctx, schema, name)
  return ddl.qualified(ddl.lookup(ctx, "operator_family", schema, name))
end

local function type_text(ctx, text)
  return ddl.type_text(ctx, text)
end

------------------------------------------------------------------------ operators

local operator = {
  name = "operator", list = "operators", class = "pg_operator", phase = "pre", rank = 63,
  space = "operator", space_args = true, keeps_name = true,
  ident = function(obj) return quote(obj.schema) .. "." .. obj.name .. "(" .. obj.row.identity_args .. ")" end,
  target = function(ctx, obj)
    obj.target_args = type_text(ctx, obj.row.identity_args)
    return schema_target(ctx, obj)
  end,
  target_text = function(obj)
    return quote(obj.target.schema) .. "." .. obj.target.name .. "(" .. (obj.target_args or obj.row.identity_args) .. ")"
  end,
  create = function(ctx, obj)
    local row = obj.row
    local options = { "FUNCTION = " .. function_ref(ctx, row.function_schema, row.function_name) }
    local function add(text) options[#options + 1] = text end
    if row.left_type then add("LEFTARG = " .. type_text(ctx, row.left_type)) end
    if row.right_type then add("RIGHTARG = " .. type_text(ctx, row.right_type)) end
    if row.commutator_name then
      add("COMMUTATOR = OPERATOR(" .. operator_ref(ctx, row.commutator_schema, row.commutator_name) .. ")")
    end
    if row.negator_name then
      add("NEGATOR = OPERATOR(" .. operator_ref(ctx, row.negator_schema, row.negator_name) .. ")")
    end
    if row.merges then add("MERGES") end
    if row.hashes then add("HASHES") end
    if row.restrict_name then add("RESTRICT = " .. function_ref(ctx, row.restrict_schema, row.restrict_name)) end
    if row.join_name then add("JOIN = " .. function_ref(ctx, row.join_schema, row.join_name)) end
    return { { sql = "CREATE OPERATOR " .. quote(obj.target.schema) .. "." .. obj.target.name .. " (\n    "
      .. table.concat(options, ",\n    ") .. "\n)" } }
  end,
  reference = function(ctx, obj)
    return "OPERATOR " .. quote(obj.target.schema) .. "." .. obj.target.name .. " ("
      .. type_text(ctx, obj.row.identity_args) .. ")"
  end,
  drop = function(ctx, obj)
    return "DROP OPERATOR " .. quote(obj.target.schema) .. "." .. obj.target.name .. " ("
      .. type_text(ctx, obj.row.identity_args) .. ")"
  end,
}

------------------------------------------------------------------------ families and classes

-- The members of a class or family (pg_amop, pg_amproc) stand for it in pg_depend.
local function member_identities(row)
  local list = {}
  for _, m in ipairs(row.members or {}) do
    list[#list + 1] = { m.kind == "operator" and "pg_amop" or "pg_amproc", m.oid }
  end
  return list
end

-- One member as ALTER OPERATOR FAMILY ... ADD and CREATE OPERATOR CLASS write it.
local function member_text(ctx, m)
  for k, v in pairs(m) do if v == ctx.json_null then m[k] = nil end end   -- JSON null
  local types = type_text(ctx, m.left_type) .. ", " .. type_text(ctx, m.right_type)
  if m.kind == "operator" then
    local text = "OPERATOR " .. m.number .. " " .. operator_ref(ctx, m.schema, m.name) .. " (" .. types .. ")"
    if m.sort_family_name then
      text = text .. " FOR ORDER BY " .. family_ref(ctx, m.sort_family_schema, m.sort_family_name)
    end
    return text
  end
  return "FUNCTION " .. m.number .. " (" .. types .. ") " .. function_ref(ctx, m.schema, m.name)
    .. "(" .. type_text(ctx, m.args or "") .. ")"
end

local function using_kind(name, list, class, rank, word, create)
  return {
    name = name, list = list, class = class, phase = "pre", rank = rank, word = word:lower(),
    space = name, space_args = true, keeps_name = true,
    kind_in_keys = true,   -- a class and its family often share the name: comment, owner keys
    identities = member_identities,
    ident = function(obj) return quote(obj.schema) .. "." .. quote(obj.name) .. " USING " .. obj.row.method end,
    target = schema_target,
    target_text = function(obj) return ddl.target(obj) .. " USING " .. obj.row.method end,
    create = create,
    reference = function(_, obj) return word .. " " .. ddl.target(obj) .. " USING " .. quote(obj.row.method) end,
    drop = function(_, obj) return "DROP " .. word .. " " .. ddl.target(obj) .. " USING " .. quote(obj.row.method) end,
  }
end

local operator_family = using_kind("operator_family", "opfamilies", "pg_opfamily", 64, "OPERATOR FAMILY",
  function(ctx, obj)
    local head = ddl.target(obj) .. " USING " .. quote(obj.row.method)
    local steps = { { sql = "CREATE OPERATOR FAMILY " .. head } }
    local members = {}
    for i, m in ipairs(obj.row.members or {}) do members[i] = member_text(ctx, m) end
    if #members > 0 then
      steps[2] = { kind = "operator_family_add", suffix = "members",
                   sql = "ALTER OPERATOR FAMILY " .. head .. " ADD\n    " .. table.concat(members, ",\n    ") }
    end
    return steps
  end)

local operator_class = using_kind("operator_class", "opclasses", "pg_opclass", 65, "OPERATOR CLASS",
  function(ctx, obj)
    local row = obj.row
    local items = {}
    if row.storage_type then items[1] = "STORAGE " .. type_text(ctx, row.storage_type) end
    for _, m in ipairs(row.members or {}) do items[#items + 1] = member_text(ctx, m) end
    -- A class without members or storage: the server takes a STORAGE of its own type as
    -- nothing (pg_dump writes the same).
    if #items == 0 then items[1] = "STORAGE " .. type_text(ctx, row.input_type) end
    return { { sql = "CREATE OPERATOR CLASS " .. ddl.target(obj) .. "\n    "
      .. (row.is_default and "DEFAULT " or "") .. "FOR TYPE " .. type_text(ctx, row.input_type)
      .. " USING " .. quote(row.method) .. " FAMILY " .. family_ref(ctx, row.family_schema, row.family_name)
      .. " AS\n    " .. table.concat(items, ",\n    ") } }
  end)

------------------------------------------------------------------------ casts

local CAST_CONTEXT = { a = " AS ASSIGNMENT", i = " AS IMPLICIT" }

local function cast_types(ctx, obj)
  return "(" .. type_text(ctx, obj.row.source_type) .. " AS " .. type_text(ctx, obj.row.target_type) .. ")"
end

local cast = {
  name = "cast", list = "casts", class = "pg_cast", phase = "pre", rank = 66,
  space = "cast", keeps_name = true, owned = false,
  ident = function(obj) return obj.row.name end,
  -- Migrated with what it converts: a cast between types pgtide does not create, with a
  -- function it does not create either, is the database's, not the selection's.
  select = function(obj, model, selector)
    local kinds = selector.kinds or {}
    if kinds.exclude and kinds.exclude.cast then return false, 'kind "cast" excluded by select.kinds.exclude' end
    if kinds.include and not kinds.include.cast then return false, 'kind "cast" not in select.kinds.include' end
    local row = obj.row
    local found
    for _, ref in ipairs({ { "pg_type", row.source_oid }, { "pg_type", row.target_oid }, { "pg_proc", row.function_oid } }) do
      -- a user object, or an extension's (which CREATE EXTENSION makes)
      local other = ref[2] and model.identity[id_of(ref[1], ref[2])]
      local extension = ref[2] and model.cat.extension_of[ref[1] .. ":" .. ref[2]]
      if not other and extension then other = model.exact[id_of("pg_extension", extension)] end
      if other and other.selected then return true end
      found = found or other
    end
    if found then
      return false, "what it converts is left out (" .. found.kind .. " " .. found.ident .. ": " .. tostring(found.reason) .. ")"
    end
    return false, "it converts between the server's own types with the server's own function: not an object of the selection"
  end,
  target = function(ctx, obj) return "", cast_types(ctx, obj) end,
  target_text = function(obj) return obj.target.name end,
  create = function(ctx, obj)
    local row = obj.row
    local how
    if row.method == "b" then how = "WITHOUT FUNCTION"
    elseif row.method == "i" then how = "WITH INOUT"
    else how = "WITH FUNCTION " .. function_ref(ctx, row.function_schema, row.function_name)
      .. "(" .. type_text(ctx, row.function_args or "") .. ")" end
    return { { sql = "CREATE CAST " .. cast_types(ctx, obj) .. " " .. how .. (CAST_CONTEXT[row.context] or "") } }
  end,
  reference = function(ctx, obj) return "CAST " .. cast_types(ctx, obj) end,
  drop = function(ctx, obj) return "DROP CAST " .. cast_types(ctx, obj) end,
}

------------------------------------------------------------------------ conversions

local conversion = {
  name = "conversion", list = "conversions", class = "pg_conversion", phase = "pre", rank = 67,
  space = "conversion", keeps_name = true, kind_in_keys = true,   -- a table may share its name
  target = schema_target,
  create = function(ctx, obj)
    local row = obj.row
    return { { sql = "CREATE " .. (row.is_default and "DEFAULT " or "") .. "CONVERSION " .. ddl.target(obj)
      .. " FOR " .. ddl.literal(row.for_encoding) .. " TO " .. ddl.literal(row.to_encoding)
      .. " FROM " .. function_ref(ctx, row.function_schema, row.function_name) } }
  end,
  reference = function(_, obj) return "CONVERSION " .. ddl.target(obj) end,
  drop = function(_, obj) return "DROP CONVERSION " .. ddl.target(obj) end,
}

return { operator, operator_family, operator_class, cast, conversion }
