-- Kinds: foreign-data wrapper, server, user mapping (see tide.kinds for the fields). Foreign
-- tables are a kind of tide.kinds.relations (created on these servers, never copied).
--
-- They live in no schema (`global`: tide.plan.database_wide selects them, their names stay
-- as they are). A wrapper that belongs to an extension (postgres_fdw, file_fdw) comes with
-- CREATE EXTENSION; one made by hand is created here, with its handler and validator
-- functions (the server's, an extension's or migrated ones). A user mapping is for a role
-- of the target: a mapping whose role is missing there is left out with a warning.
--
-- Options are written from pg_options_to_table; the value of a secret option (password, ...)
-- is masked in the statement pgtide shows, and real only in the one sent to the target
-- (tide.secret).
local ddl = require "tide.ddl"
local secret = require "tide.secret"

-- A step "head OPTIONS (...)" (no clause without options) whose secret values are masked
-- in step.sql and real in the statement sent to the target.
local function with_options(head, list)
  local secrets = {}
  local shown, run = secret.options(list, ddl.quote, ddl.literal, secrets)
  if #shown == 0 then return { sql = head } end
  local function clause(texts) return head .. " OPTIONS (\n    " .. table.concat(texts, ",\n    ") .. "\n)" end
  return secret.keep({ sql = clause(shown) }, clause(run), secrets)
end

local function function_name(ctx, fn)
  local obj = fn[3] and ctx.object_at("pg_proc", fn[3])
  if obj and obj.target and obj.target.schema then return ddl.qualified(obj.target.schema, obj.target.name) end
  return ddl.qualified(ddl.lookup(ctx, "function", fn[1], fn[2]))
end

local function global_target(_, obj) return nil, obj.name end

local wrapper = {
  name = "foreign_data_wrapper", list = "foreign_data_wrappers", class = "pg_foreign_data_wrapper",
  phase = "pre", rank = 67, space = "foreign_data_wrapper", global = true, pulled = true, kind_in_keys = true,
  word = "foreign-data wrapper",
  target = global_target,
  create = function(ctx, obj)
    local row = obj.row
    local head = "CREATE FOREIGN DATA WRAPPER " .. ddl.quote(obj.name)
    if row.handler then head = head .. " HANDLER " .. function_name(ctx, row.handler) end
    if row.validator then head = head .. " VALIDATOR " .. function_name(ctx, row.validator) end
    return { with_options(head, row.options) }
  end,
  reference = function(_, obj) return "FOREIGN DATA WRAPPER " .. ddl.quote(obj.name) end,
  drop = function(_, obj) return "DROP FOREIGN DATA WRAPPER " .. ddl.quote(obj.name) end,
}

local server = {
  name = "server", list = "foreign_servers", class = "pg_foreign_server",
  phase = "pre", rank = 68, space = "server", global = true, pulled = true, kind_in_keys = true,
  target = global_target,
  create = function(_, obj)
    local row = obj.row
    local head = "CREATE SERVER " .. ddl.quote(obj.name)
    if row.server_type then head = head .. " TYPE " .. ddl.literal(row.server_type) end
    if row.server_version then head = head .. " VERSION " .. ddl.literal(row.server_version) end
    head = head .. " FOREIGN DATA WRAPPER " .. ddl.quote(row.wrapper)
    return { with_options(head, row.options) }
  end,
  reference = function(_, obj) return "SERVER " .. ddl.quote(obj.name) end,
  grant_reference = function(_, obj) return "FOREIGN SERVER " .. ddl.quote(obj.name) end,
  drop = function(_, obj) return "DROP SERVER " .. ddl.quote(obj.name) end,
}

local function mapping_role(row) return row.role and ddl.quote(row.role) or "PUBLIC" end

-- Identified by role and server: key "user_mapping:role@server" (PUBLIC for every role).
local user_mapping = {
  name = "user_mapping", list = "user_mappings", class = "pg_user_mapping",
  phase = "pre", rank = 69, space = "user_mapping", global = true, owned = false, kind_in_keys = true,
  word = "user mapping",
  follows = function(row) return "pg_foreign_server", row.server_oid end,
  ident = function(obj) return obj.name end,
  target = global_target,
  create = function(ctx, obj)
    local row = obj.row
    if row.role and not ctx.role_exists(row.role) then
      ctx.warn(obj, string.format("user mapping for %s on server %s is left out: the role %s does not exist on the target (create it there, then run again)",
        row.role, row.server, row.role))
      return {}
    end
    if row.options_hidden then
      ctx.warn(obj, string.format("user mapping for %s on server %s: its options are only visible to a superuser or the server's owner; it is created without them",
        row.role or "PUBLIC", row.server))
    end
    return { with_options("CREATE USER MAPPING FOR " .. mapping_role(row) .. " SERVER " .. ddl.quote(row.server), row.options) }
  end,
  reference = function(_, obj)
    return "USER MAPPING FOR " .. mapping_role(obj.row) .. " SERVER " .. ddl.quote(obj.row.server)
  end,
  drop = function(_, obj)
    return "DROP USER MAPPING FOR " .. mapping_role(obj.row) .. " SERVER " .. ddl.quote(obj.row.server)
  end,
}

return { wrapper, server, user_mapping }
