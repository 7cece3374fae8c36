-- Kinds: default privileges and database settings (see tide.kinds for the fields). Neither
-- lives in a schema (`global`); both are written by the last post-data steps (`last`), so
-- default privileges do not change the privileges of the objects pgtide creates, and settings
-- do not change its own sessions.
--
-- default_privileges: one pg_default_acl entry (ALTER DEFAULT PRIVILEGES FOR ROLE r [IN SCHEMA
-- s] GRANT/REVOKE ... ON TABLES|SEQUENCES|FUNCTIONS|TYPES|SCHEMAS), with its schema renamed;
-- an entry of one schema follows that schema's selection. pgtide creates no roles: an entry
-- whose role is missing on the target is left out with a warning naming it, a privilege for a
-- missing grantee likewise (as tide.plan.attributes does with grants).
--
-- database_setting: the settings of the migrated database (ALTER DATABASE <target> SET ...)
-- and of one role in it (ALTER ROLE r IN DATABASE <target> SET ...), from pg_db_role_setting;
-- only with schema.database_settings = true (`wanted`). A role missing on the target: a
-- warning, left out.
local ddl = require "tide.ddl"

local OBJTYPE = { r = "TABLES", S = "SEQUENCES", f = "FUNCTIONS", T = "TYPES", n = "SCHEMAS" }

-- Settings whose stored value is a list of already quoted items (pg_dump's
-- variable_is_guc_list_quote): written as they are, not as one literal.
local LIST_SETTINGS = { search_path = true, temp_tablespaces = true, session_preload_libraries = true,
  shared_preload_libraries = true, local_preload_libraries = true, unix_socket_directories = true }

local function acl_target_name(ctx, row)
  local schema = row.schema_name and (ctx.map_name("schema", row.schema_name, row.schema_name))
  return "FOR ROLE " .. ddl.quote(row.role) .. (schema and (" IN SCHEMA " .. ddl.quote(schema)) or "")
    .. " ON " .. (OBJTYPE[row.objtype] or row.objtype)
end

local default_privileges = {
  name = "default_privileges", list = "default_acls", class = "pg_default_acl",
  phase = "post", rank = 990, space = "default_privileges", global = true, kind_in_keys = true,
  word = "default privileges", owned = false,
  follows = function(row)
    if row.schema_oid then return "pg_namespace", row.schema_oid end
  end,
  ident = function(obj) return obj.name end,
  target = function(ctx, obj) return nil, acl_target_name(ctx, obj.row) end,
  target_text = function(obj) return obj.target and obj.target.name or obj.name end,
  create = function(ctx, obj)
    local row = obj.row
    local what = OBJTYPE[row.objtype]
    if not what then
      ctx.warn(obj, string.format("default privileges %s: unknown object type %q, left out", obj.name, row.objtype))
      return {}
    end
    if not ctx.role_exists(row.role) then
      ctx.warn(obj, string.format("default privileges for role %s (%s) are left out: the role does not exist on the target",
        row.role, obj.name))
      return {}
    end
    local head = "ALTER DEFAULT PRIVILEGES " .. acl_target_name(ctx, row):gsub(" ON %u+$", "")
    -- One statement per action, grantee and grant option.
    local groups, order_list = {}, {}
    for _, p in ipairs(row.privileges or {}) do
      local action, grantee, privilege, grantable = p[1], p[2], p[3], p[4] == true
      if grantee ~= "" and not ctx.role_exists(grantee) then
        ctx.warn(obj, string.format("default privileges %s: the privilege %s for role %s is left out: the role does not exist on the target",
          obj.name, privilege, grantee))
      else
        local id = action .. "\0" .. grantee .. "\0" .. tostring(grantable)
        if not groups[id] then
          groups[id] = { action = action, grantee = grantee, grantable = grantable, privileges = {} }
          order_list[#order_list + 1] = id
        end
        table.insert(groups[id].privileges, privilege)
      end
    end
    local steps = {}
    for _, id in ipairs(order_list) do
      local g = groups[id]
      local who = g.grantee == "" and "PUBLIC" or ddl.quote(g.grantee)
      local privileges = table.concat(g.privileges, ", ")
      local sql
      if g.action == "grant" then
        sql = head .. "\n    GRANT " .. privileges .. " ON " .. what .. " TO " .. who .. (g.grantable and " WITH GRANT OPTION" or "")
      else
        sql = head .. "\n    REVOKE " .. privileges .. " ON " .. what .. " FROM " .. who
      end
      steps[#steps + 1] = { sql = sql, suffix = g.action .. "/" .. (g.grantee == "" and "PUBLIC" or g.grantee)
        .. (g.grantable and "/grantable" or ""), last = true }
    end
    return steps
  end,
}

local function setting_sql(item)
  local name, value = item:match("^([^=]+)=(.*)$")
  if not name then return nil end
  if LIST_SETTINGS[name:lower()] then return ddl.quote(name) .. " TO " .. value end
  return ddl.quote(name) .. " TO " .. ddl.literal(value)
end

local database_setting = {
  name = "database_setting", list = "db_role_settings", class = "pg_db_role_setting",
  phase = "post", rank = 995, space = "database_setting", global = true, kind_in_keys = true,
  word = "database setting", owned = false,
  wanted = function(task)
    if (task.schema or {}).database_settings == true then return true end
    return false, "settings of the database are carried only with schema.database_settings = true"
  end,
  ident = function(obj) return obj.name end,
  target = function(_, obj) return nil, obj.name end,
  target_text = function(obj) return obj.name end,
  create = function(ctx, obj)
    local row = obj.row
    local db = ctx.target_database or ctx.cat.settings.database
    local head
    if row.role then
      if not ctx.role_exists(row.role) then
        ctx.warn(obj, string.format("the settings of role %s in the database are left out: the role does not exist on the target",
          row.role))
        return {}
      end
      head = "ALTER ROLE " .. ddl.quote(row.role) .. " IN DATABASE " .. ddl.quote(db) .. " SET "
    else
      head = "ALTER DATABASE " .. ddl.quote(db) .. " SET "
    end
    local steps = {}
    for _, item in ipairs(row.config or {}) do
      local set = setting_sql(item)
      if set then
        steps[#steps + 1] = { sql = head .. set, suffix = item:match("^[^=]+"), last = true }
      end
    end
    return steps
  end,
}

return { default_privileges, database_setting }
