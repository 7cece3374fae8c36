-- Kinds: procedural language, transform, access method (see tide.kinds for the fields).
-- Written from pg_language, pg_transform and pg_am as pg_dump writes them:
--
--   CREATE [TRUSTED] PROCEDURAL LANGUAGE name HANDLER fn [INLINE fn] [VALIDATOR fn]
--   CREATE TRANSFORM FOR type LANGUAGE lang (FROM SQL WITH FUNCTION fn(args),
--       TO SQL WITH FUNCTION fn(args))
--   CREATE ACCESS METHOD name TYPE TABLE | INDEX HANDLER fn
--
-- All three live in no schema (`global`, selected by tide.plan.database_wide) and are
-- `pulled`: with select.include, they are selected when a selected object needs them (a
-- function its language or transform, a table its access method). A language or access
-- method an extension made (plpgsql, bloom) comes with CREATE EXTENSION; so do the server's
-- own (sql, c, heap, btree). Languages need a superuser on the target; so do access methods
-- and, when its functions take `internal`, transforms.
local ddl = require "tide.ddl"

-- A function given as { schema, name, oid }: a migrated one by its target name, else the
-- server's own or an extension's (ddl.lookup).
local function function_name(ctx, fn)
  local obj = fn[3] and ctx.object_at("pg_proc", fn[3])
  if obj and obj.target and obj.target.schema then return ddl.qualified(obj.target.schema, obj.target.name) end
  return ddl.qualified(ddl.lookup(ctx, "function", fn[1], fn[2]))
end

local function global_target(_, obj) return nil, obj.name end

local language = {
  name = "language", list = "languages", class = "pg_language",
  phase = "pre", rank = 57, space = "language", global = true, pulled = true, kind_in_keys = true,
  target = global_target,
  create = function(ctx, obj)
    local row = obj.row
    local f = row.functions or {}
    local sql = "CREATE " .. (row.trusted and "TRUSTED " or "") .. "PROCEDURAL LANGUAGE " .. ddl.quote(obj.name)
    if f.handler then
      sql = sql .. " HANDLER " .. function_name(ctx, f.handler)
      if f.inline then sql = sql .. " INLINE " .. function_name(ctx, f.inline) end
      if f.validator then sql = sql .. " VALIDATOR " .. function_name(ctx, f.validator) end
    end
    return { { sql = sql } }
  end,
  reference = function(_, obj) return "LANGUAGE " .. ddl.quote(obj.name) end,
  drop = function(_, obj) return "DROP LANGUAGE " .. ddl.quote(obj.name) end,
}

local function transform_head(ctx, obj)
  return "FOR " .. ddl.type_text(ctx, obj.row.type) .. " LANGUAGE " .. ddl.quote(obj.row.language)
end

local transform = {
  name = "transform", list = "transforms", class = "pg_transform",
  phase = "pre", rank = 59, space = "transform", global = true, pulled = true, kind_in_keys = true,
  owned = false, keeps_name = true,
  ident = function(obj) return obj.row.name end,
  target = global_target,
  create = function(ctx, obj)
    local row = obj.row
    local parts = {}
    for _, f in ipairs({ { "fromsql", "FROM SQL" }, { "tosql", "TO SQL" } }) do
      local fn = row[f[1]]
      if fn then
        parts[#parts + 1] = f[2] .. " WITH FUNCTION " .. function_name(ctx, fn)
          .. "(" .. ddl.type_text(ctx, fn[4] or "") .. ")"
      end
    end
    return { { sql = "CREATE TRANSFORM " .. transform_head(ctx, obj) .. " (\n    "
      .. table.concat(parts, ",\n    ") .. "\n)" } }
  end,
  reference = function(ctx, obj) return "TRANSFORM " .. transform_head(ctx, obj) end,
  drop = function(ctx, obj) return "DROP TRANSFORM " .. transform_head(ctx, obj) end,
}

local AM_TYPE = { t = "TABLE", i = "INDEX" }

local access_method = {
  name = "access_method", list = "access_methods", class = "pg_am",
  phase = "pre", rank = 58, space = "access_method", global = true, pulled = true, kind_in_keys = true,
  owned = false, word = "access method",
  target = global_target,
  create = function(ctx, obj)
    local row = obj.row
    return { { sql = "CREATE ACCESS METHOD " .. ddl.quote(obj.name) .. " TYPE " .. AM_TYPE[row.type]
      .. " HANDLER " .. function_name(ctx, row.handler) } }
  end,
  reference = function(_, obj) return "ACCESS METHOD " .. ddl.quote(obj.name) end,
  drop = function(_, obj) return "DROP ACCESS METHOD " .. ddl.quote(obj.name) end,
}

return { language, access_method, transform }
