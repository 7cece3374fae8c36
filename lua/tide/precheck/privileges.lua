-- Prechecks about what the roles pgtide connects as may do: on the source, read the selected
-- tables, replicate, create the publication and the heartbeat table; on the target, create
-- the objects, load into existing tables, set session_replication_role, use replication
-- origins. Each side's privileges are asked in one statement for all objects.
local context = require "tide.precheck.context"
local breathe = require("tide.wait").breathe

local M = {}
local quote = context.quote

local function incremental(ctx) return ctx.phases.incremental == true end
local function moves_data(ctx) return ctx.phases.full == true or ctx.phases.incremental == true end

-- Source: every selected table (and sequence, and partitioned root) the user cannot read or
-- does not own, and the schemas it cannot use. Only the problems come back.
local SOURCE_ACCESS = [[
SELECT 'relation' AS kind, c.oid,
       has_table_privilege(c.oid, 'SELECT')
         OR NOT EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0
                          AND NOT a.attisdropped AND NOT has_column_privilege(c.oid, a.attnum, 'SELECT')) AS readable,
       pg_has_role(c.relowner, 'USAGE') AS owned, pg_get_userbyid(c.relowner) AS owner
FROM unnest($1::oid[]) AS u(oid)
JOIN pg_class c ON c.oid = u.oid
WHERE (NOT has_table_privilege(c.oid, 'SELECT') OR NOT pg_has_role(c.relowner, 'USAGE'))
UNION ALL
SELECT 'schema', n.oid, has_schema_privilege(n.oid, 'USAGE'), true, pg_get_userbyid(n.nspowner)
FROM unnest($2::oid[]) AS u(oid)
JOIN pg_namespace n ON n.oid = u.oid
WHERE NOT has_schema_privilege(n.oid, 'USAGE')
]]

local function source_access(ctx)
  return ctx:once("source_access", function()
    local plan, model = ctx.plan, ctx.plan.model
    local oids, seen, schema_oids, seen_schema = {}, {}, {}, {}
    local function add(obj)
      if obj and obj.oid and not seen[obj.oid] then
        seen[obj.oid] = true
        oids[#oids + 1] = obj.oid
        local schema = model.schemas[obj.schema]
        if schema and not seen_schema[schema.oid] then
          seen_schema[schema.oid] = true
          schema_oids[#schema_oids + 1] = schema.oid
        end
      end
    end
    for _, tbl in ipairs(plan.tables) do
      breathe()
      add(ctx:table_object(tbl))
      if tbl.parent then add(ctx:object("table:" .. tbl.parent)) end
    end
    for _, seq in ipairs(plan.sequences) do add(ctx:object("sequence:" .. seq.key)) end
    local by_oid = {}
    for _, row in ipairs(ctx:query("source", SOURCE_ACCESS, oids, schema_oids)) do
      by_oid[row.kind .. ":" .. row.oid] = row
    end
    return by_oid
  end)
end

-- The objects behind source_access rows, in plan order.
local function relations(ctx, want)
  local access = source_access(ctx)
  local out, seen = {}, {}
  local function visit(obj)
    if obj and not seen[obj] then
      seen[obj] = true
      local row = access["relation:" .. obj.oid]
      if row and want(row, obj) then out[#out + 1] = { obj = obj, row = row } end
    end
  end
  for _, tbl in ipairs(ctx.plan.tables) do
    breathe()
    visit(ctx:table_object(tbl))
    if tbl.parent then visit(ctx:object("table:" .. tbl.parent)) end
  end
  for _, seq in ipairs(ctx.plan.sequences) do visit(ctx:object("sequence:" .. seq.key)) end
  return out
end

M.checks = {
  {
    id = "source_replication_privilege", title = "The source role may replicate", grade = "fail",
    applies = incremental,
    run = function(ctx)
      local s = ctx:source_server()
      if s.superuser or s.replication then return {} end
      return { { object = "role " .. quote(s.user_name),
        message = "the source role has neither REPLICATION nor SUPERUSER: it cannot create the slot or stream changes",
        fix = "ALTER ROLE " .. quote(s.user_name) .. " REPLICATION;  (on a managed service: grant its replication role, e.g. rds_replication)" } }
    end,
  },
  {
    id = "source_select_privilege", title = "The source role can read every selected table", grade = "fail",
    applies = moves_data,
    run = function(ctx)
      local user = ctx:source_server().user_name
      local out = {}
      for _, item in ipairs(relations(ctx, function(row) return not row.readable end)) do
        local what = item.obj.kind == "sequence" and "sequence" or "table"
        out[#out + 1] = context.finding(item.obj,
          string.format("the source role %s may not SELECT from this %s", quote(user), what),
          string.format("GRANT SELECT ON %s %s TO %s;", what == "sequence" and "SEQUENCE" or "TABLE", item.obj.ident, quote(user)))
      end
      return out
    end,
  },
  {
    id = "source_schema_usage", title = "The source role can use the selected schemas", grade = "fail",
    applies = moves_data,
    run = function(ctx)
      local access, user = source_access(ctx), ctx:source_server().user_name
      local out = {}
      for _, obj in ipairs(ctx.plan.model.objects) do
        breathe()
        if obj.kind == "schema" and access["schema:" .. obj.oid] then
          local f = context.finding(obj, string.format("the source role %s has no USAGE on this schema: its tables cannot be read", quote(user)),
            string.format("GRANT USAGE ON SCHEMA %s TO %s;", quote(obj.name), quote(user)))
          f.name = nil
          out[#out + 1] = f
        end
      end
      return out
    end,
  },
  {
    id = "source_publication_privilege", title = "The source role can create the publication", grade = "fail",
    applies = incremental,
    run = function(ctx)
      local s = ctx:source_server()
      if s.superuser then return {} end
      local out = {}
      if not s.database_create then
        out[#out + 1] = { object = "database " .. quote(s.database_name),
          message = string.format("the source role %s has no CREATE privilege on the database: CREATE PUBLICATION needs it", quote(s.user_name)),
          fix = string.format("GRANT CREATE ON DATABASE %s TO %s;", quote(s.database_name), quote(s.user_name)) }
      end
      for _, item in ipairs(relations(ctx, function(row, obj) return not row.owned and obj.kind == "table" end)) do
        out[#out + 1] = context.finding(item.obj,
          string.format("owned by %s: only its owner (or a superuser) can add it to a publication", quote(item.row.owner)),
          string.format("GRANT %s TO %s;  (or run pgtide as a superuser or as the tables' owner)", quote(item.row.owner), quote(s.user_name)))
      end
      return out
    end,
  },
  {
    id = "source_heartbeat_privilege", title = "The source role can create and write the heartbeat table", grade = "fail",
    applies = function(ctx) return incremental(ctx) and ctx.task.incremental.heartbeat ~= false end,
    run = function(ctx)
      local hb = ctx.names.heartbeat
      local user = ctx:source_server().user_name
      local row = ctx:query("source", [[
SELECT n.oid IS NOT NULL AS schema_exists,
       CASE WHEN n.oid IS NOT NULL THEN has_schema_privilege(n.oid, 'CREATE') END AS can_create,
       CASE WHEN n.oid IS NOT NULL THEN has_schema_privilege(n.oid, 'USAGE') END AS can_use,
       c.oid IS NOT NULL AS table_exists,
       CASE WHEN c.oid IS NOT NULL THEN has_table_privilege(c.oid, 'INSERT, UPDATE') END AS can_write,
       CASE WHEN c.oid IS NOT NULL THEN pg_has_role(c.relowner, 'USAGE') END AS owned
FROM (SELECT $1::text AS schema_name, $2::text AS table_name) x
LEFT JOIN pg_namespace n ON n.nspname = x.schema_name
LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = x.table_name
]], hb.schema, hb.name)[1]
      local ident = quote(hb.schema) .. "." .. quote(hb.name)
      local base = { object = ident, schema = hb.schema, name = hb.name }
      local function finding(message, fix)
        local f = { message = message, fix = fix }
        for k, v in pairs(base) do f[k] = v end
        return { f }
      end
      if not row.schema_exists then
        return finding("the heartbeat table's schema " .. quote(hb.schema) .. " does not exist on the source",
          "CREATE SCHEMA " .. quote(hb.schema) .. ";  or set incremental.heartbeat_table")
      end
      if row.table_exists then
        if not row.can_write or not row.owned then
          return finding("the heartbeat table exists, but the source role cannot write it or does not own it (it must be added to the publication)",
            "ALTER TABLE " .. ident .. " OWNER TO " .. quote(user) .. ";")
        end
        return {}
      end
      if not (row.can_create and row.can_use) then
        return finding(string.format("the source role %s cannot create the heartbeat table in schema %s", quote(user), quote(hb.schema)),
          string.format("GRANT USAGE, CREATE ON SCHEMA %s TO %s;  (or set incremental.heartbeat_table to a schema it may write, or heartbeat = false)",
            quote(hb.schema), quote(user)))
      end
      return {}
    end,
  },
  {
    id = "target_create_privilege", title = "The target role can create the schemas, objects and pgtide's state", grade = "fail",
    run = function(ctx)
      local t = ctx:target_server()
      if t.superuser then return {} end
      local plan, out = ctx.plan, {}
      local schemas, seen = {}, {}
      local function need(name, why)
        if not seen[name] then seen[name] = why; schemas[#schemas + 1] = name end
      end
      if ctx.phases.schema then
        for _, obj in ipairs(plan.objects) do
          breathe()
          if obj.kind ~= "schema" and obj.kind ~= "extension" and obj.target and obj.target.schema
            and not obj.keep_existing and obj.inline_of == nil then
            need(obj.target.schema, obj)
          end
        end
      end
      need(ctx.task.state_schema or "pgtide", "state")
      local rows = ctx:query("target", [[
SELECT n.nspname AS name, has_schema_privilege(n.oid, 'CREATE') AS can_create,
       has_schema_privilege(n.oid, 'USAGE') AS can_use
FROM pg_namespace n
WHERE n.nspname = ANY($1::text[])
]], schemas)
      local present = {}
      for _, r in ipairs(rows) do present[r.name] = r end
      local missing_schemas = {}
      for _, name in ipairs(schemas) do
        local r = present[name]
        if not r then
          missing_schemas[#missing_schemas + 1] = name
        elseif not (r.can_create and r.can_use) then
          out[#out + 1] = { object = "schema " .. quote(name), schema = name,
            message = string.format("the target role %s cannot create objects in schema %s%s", quote(t.user_name), quote(name),
              seen[name] == "state" and " (pgtide's state schema, task.state_schema)" or ""),
            fix = string.format("GRANT USAGE, CREATE ON SCHEMA %s TO %s;", quote(name), quote(t.user_name)) }
        end
      end
      if #missing_schemas > 0 and not t.database_create then
        local shown = {}
        for i, name in ipairs(missing_schemas) do shown[i] = quote(name) end
        out[#out + 1] = { object = "database " .. quote(t.database_name),
          message = string.format("the target role %s has no CREATE privilege on the database, and schema(s) %s must be created",
            quote(t.user_name), table.concat(shown, ", ")),
          fix = string.format("GRANT CREATE ON DATABASE %s TO %s;  (or create the schemas first and grant CREATE on them)",
            quote(t.database_name), quote(t.user_name)) }
      end
      return out
    end,
  },
}

-- The target tables the load writes into that exist already (kept by schema.existing =
-- "skip", or because the task does not create the schema), with their target objects.
function M.existing_target_tables(ctx)
  local out = {}
  for _, tbl in ipairs(ctx.plan.tables) do
    breathe()
    local obj = ctx:table_object(tbl)
    local tobj = obj and obj.existing_target
    if tobj and (obj.keep_existing or not ctx.phases.schema) and not obj.drop_existing then
      out[#out + 1] = { tbl = tbl, obj = obj, tobj = tobj }
    end
  end
  return out
end

local TARGET_TABLES = [[
SELECT c.oid, pg_has_role(c.relowner, 'USAGE') AS owned, pg_get_userbyid(c.relowner) AS owner,
       has_table_privilege(c.oid, 'SELECT') AS can_select, has_table_privilege(c.oid, 'INSERT') AS can_insert, has_table_privilege(c.oid, 'TRUNCATE') AS can_truncate,
       has_table_privilege(c.oid, 'UPDATE') AS can_update, has_table_privilege(c.oid, 'DELETE') AS can_delete,
       c.relrowsecurity AS rls, c.relforcerowsecurity AS force_rls
FROM unnest($1::oid[]) AS u(oid)
JOIN pg_class c ON c.oid = u.oid
]]

function M.target_tables(ctx)
  return ctx:once("target_tables", function()
    local oids = {}
    for i, e in ipairs(M.existing_target_tables(ctx)) do oids[i] = e.tobj.oid end
    local by_oid = {}
    if #oids > 0 then
      for _, r in ipairs(ctx:query("target", TARGET_TABLES, oids)) do by_oid[r.oid] = r end
    end
    return by_oid
  end)
end

local more = {
  {
    id = "target_table_privileges", title = "The target role can write the existing target tables", grade = "fail",
    applies = moves_data,
    run = function(ctx)
      local t = ctx:target_server()
      if t.superuser then return {} end
      local access, out = M.target_tables(ctx), {}
      local truncate = (ctx.task.full.existing or "error") == "truncate" and ctx.phases.full
      for _, e in ipairs(M.existing_target_tables(ctx)) do
        local r = access[e.tobj.oid]
        if r then
          local missing = {}
          if not r.can_insert then missing[#missing + 1] = "INSERT" end
          if truncate and not r.can_truncate then missing[#missing + 1] = "TRUNCATE" end
          if ctx.phases.incremental and not r.can_update then missing[#missing + 1] = "UPDATE" end
          if ctx.phases.incremental and not r.can_delete then missing[#missing + 1] = "DELETE" end
          if #missing > 0 then
            local list = table.concat(missing, ", ")
            out[#out + 1] = context.finding(e.obj,
              string.format("the target role %s lacks %s on the target table %s", quote(t.user_name), list, context.target_ident(e.obj)),
              string.format("GRANT %s ON %s TO %s;", list, context.target_ident(e.obj), quote(t.user_name)))
          end
        end
      end
      return out
    end,
  },
  {
    id = "target_ownership", title = "Ownership where row security, triggers or owners need it", grade = "fail",
    run = function(ctx)
      local t = ctx:target_server()
      if t.superuser then return {} end
      local out = {}
      if moves_data(ctx) then
        local access = M.target_tables(ctx)
        for _, e in ipairs(M.existing_target_tables(ctx)) do
          local r = access[e.tobj.oid]
          local target_name = context.target_ident(e.obj)
          if r and r.rls and (r.force_rls or not (r.owned or t.bypassrls)) then
            out[#out + 1] = context.finding(e.obj,
              string.format("row-level security is enabled on the target table %s (owner %s)%s: rows its policies reject for %s fail or vanish during the load",
                target_name, quote(r.owner), r.force_rls and ", FORCE'd for its owner too" or "", quote(t.user_name)),
              r.force_rls and string.format("ALTER TABLE %s NO FORCE ROW LEVEL SECURITY;  (during the migration)", target_name)
                or string.format("ALTER ROLE %s BYPASSRLS;  or ALTER TABLE %s OWNER TO %s;", quote(t.user_name), target_name, quote(t.user_name)))
          end
        end
      end
      -- schema.owners = "source": ALTER ... OWNER TO needs membership in the new owner role.
      if ctx.phases.schema and (ctx.task.schema.owners or "target") == "source" then
        local owners, list = {}, {}
        for _, obj in ipairs(ctx.plan.objects) do
          breathe()
          local owner = obj.row and obj.row.owner
          if owner and obj.kind ~= "extension" and not owners[owner] and ctx.target_catalog.roles_set[owner] then
            owners[owner] = obj
            list[#list + 1] = owner
          end
        end
        if #list > 0 then
          local rows = ctx:query("target", [[
SELECT r.rolname AS name FROM pg_roles r
WHERE r.rolname = ANY($1::text[]) AND NOT pg_has_role(r.oid, 'MEMBER')
]], list)
          for _, r in ipairs(rows) do
            out[#out + 1] = { object = "role " .. quote(r.name),
              message = string.format("schema.owners = \"source\" gives objects to role %s, but the target role %s is not a member of it: ALTER ... OWNER TO fails",
                quote(r.name), quote(t.user_name)),
              fix = string.format("GRANT %s TO %s;  (or schema.owners = \"target\")", quote(r.name), quote(t.user_name)) }
          end
        end
      end
      return out
    end,
  },
  {
    id = "target_replication_role", title = "The target role can set session_replication_role", grade = "warn",
    applies = moves_data,
    run = function(ctx)
      local t = ctx:target_server()
      if t.replication_role_allowed then return {} end
      local fix = ctx.versions.target >= 150000
        and string.format("GRANT SET ON PARAMETER session_replication_role TO %s;", quote(t.user_name))
        or "run pgtide as a superuser on the target (before PostgreSQL 15 only superusers may set it)"
      -- The change stream sets it unless told not to, and stops when it cannot: that would come
      -- after the whole full load, so it fails here.
      local streams = ctx.phases.incremental and not (ctx.task.incremental and ctx.task.incremental.replica_role == false)
      return { { object = "role " .. quote(t.user_name),
        message = "the target role cannot SET session_replication_role = replica: user triggers and foreign-key checks fire for every loaded and applied row (a trigger that writes elsewhere writes again, and foreign keys must be satisfied in load order)" ..
          (streams and "; the change stream sets it (incremental.replica_role) and would stop there, after the full load" or ""),
        fix = fix .. (streams and "  or incremental = { replica_role = false } (changes applied with triggers and foreign keys firing)" or ""),
        grade = streams and "fail" or nil } }
    end,
  },
  {
    id = "target_replication_origin", title = "The target role can use replication origins", grade = "fail",
    applies = incremental,
    run = function(ctx)
      local t = ctx:target_server()
      if t.origins_allowed then return {} end
      local fix
      if ctx.versions.target >= 150000 then
        local list = {}
        for i, f in ipairs(context.ORIGIN_FUNCTIONS) do list[i] = "pg_catalog." .. f end
        fix = "GRANT EXECUTE ON FUNCTION " .. table.concat(list, ", ") .. " TO " .. quote(t.user_name) .. ";"
      else
        fix = "run pgtide as a superuser on the target (before PostgreSQL 15 replication origins are superuser-only)"
      end
      return { { object = "role " .. quote(t.user_name),
        message = "the target role cannot use replication origins: applied changes could not be recorded in the same transaction, so a crash could repeat or lose changes; pgtide refuses to stream without them",
        fix = fix } }
    end,
  },
}
for _, check in ipairs(more) do M.checks[#M.checks + 1] = check end

return M
