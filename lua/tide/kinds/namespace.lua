-- Kinds: schema, extension, collation (see tide.kinds for the fields).
local ddl = require "tide.ddl"

local schema = {
  name = "schema", list = "schemas", class = "pg_namespace", phase = "pre", rank = 10,
  space = "schema",
  target = function(ctx, obj) local s = ctx.map:schema(obj.name); return s, s end,
  create = function(_, obj)
    return { { sql = "CREATE SCHEMA " .. ddl.quote(obj.target.name) } }
  end,
  reference = function(_, obj) return "SCHEMA " .. ddl.quote(obj.target.name) end,
  drop = function(_, obj) return "DROP SCHEMA " .. ddl.quote(obj.target.name) end,
}

-- An extension keeps its name; it goes to the mapped schema it lived in. It is created with
-- IF NOT EXISTS and never counts as a conflict: an installed extension is what we want.
local extension = {
  name = "extension", list = "extensions", class = "pg_extension", phase = "pre", rank = 20,
  space = "extension", owned = false,
  target = function(ctx, obj)
    if ddl.SYSTEM_SCHEMAS[obj.schema] then return obj.schema, obj.name end
    return ctx.map:schema(obj.schema), obj.name
  end,
  create = function(_, obj)
    return { { sql = "CREATE EXTENSION IF NOT EXISTS " .. ddl.quote(obj.name)
      .. " WITH SCHEMA " .. ddl.quote(obj.target.schema) } }
  end,
  reference = function(_, obj) return "EXTENSION " .. ddl.quote(obj.name) end,
  drop = function(_, obj) return "DROP EXTENSION " .. ddl.quote(obj.name) end,
}

local PROVIDERS = { c = "libc", i = "icu", b = "builtin" }

local collation = {
  name = "collation", list = "collations", class = "pg_collation", phase = "pre", rank = 30,
  space = "collation",
  skip = function(row)
    if not PROVIDERS[row.provider] then return "a collation with the default provider cannot be created" end
  end,
  create = function(_, obj)
    local row = obj.row
    local options = { "provider = " .. PROVIDERS[row.provider] }
    if row.provider == "c" then
      if row.lc_collate == row.lc_ctype then
        options[#options + 1] = "locale = " .. ddl.literal(row.lc_collate)
      else
        options[#options + 1] = "lc_collate = " .. ddl.literal(row.lc_collate)
        options[#options + 1] = "lc_ctype = " .. ddl.literal(row.lc_ctype)
      end
    else
      -- Before PostgreSQL 15 an ICU locale was stored in collcollate.
      options[#options + 1] = "locale = " .. ddl.literal(row.locale or row.lc_collate)
    end
    if row.icu_rules then options[#options + 1] = "rules = " .. ddl.literal(row.icu_rules) end
    if not row.deterministic then options[#options + 1] = "deterministic = false" end
    return { { sql = "CREATE COLLATION " .. ddl.target(obj) .. " (" .. table.concat(options, ", ") .. ")" } }
  end,
  reference = function(_, obj) return "COLLATION " .. ddl.target(obj) end,
  drop = function(_, obj) return "DROP COLLATION " .. ddl.target(obj) end,
}

return { schema, extension, collation }
