-- Prechecks about what the target role may create in the schema phase beyond CREATE on the
-- schemas (tide.precheck.privileges): statements only a superuser may run, and those that
-- need ownership of another object, membership in another role, or the right to set a
-- parameter. Without them the schema phase stops half-way with "permission denied"; these
-- checks name every such object before anything is written. All pass for a superuser.
--
-- What PostgreSQL 15 requires (tried as a role with CREATE on the database and the schemas):
--   superuser     CREATE TEXT SEARCH PARSER / TEMPLATE, FOREIGN DATA WRAPPER, LANGUAGE (trusted
--                 or not), EVENT TRIGGER, ACCESS METHOD, OPERATOR FAMILY / CLASS, a base type
--                 (its shell CREATE TYPE name too), CREATE CAST ... WITHOUT FUNCTION, and a
--                 function in an untrusted language (internal, plperlu, ...; LANGUAGE c is
--                 function_library_missing's)
--   ownership     CREATE CAST ... WITH FUNCTION / WITH INOUT: of its source or target type;
--                 CREATE TRANSFORM: of its type and of its functions
--   membership    ALTER DEFAULT PRIVILEGES FOR ROLE r: in r
--   USAGE         CREATE SERVER: on its foreign-data wrapper
--   settings      a parameter only a superuser may set (context superuser, or one the server
--                 does not know yet: an extension's, plpgsql.* before plpgsql is loaded) in a
--                 function's SET clause, ALTER DATABASE ... SET or ALTER ROLE ... IN DATABASE
--                 ... SET, unless granted (GRANT SET ON PARAMETER, 15+); ALTER DATABASE ... SET
--                 needs the database's owner; ALTER ROLE r ... for another role needs
--                 CREATEROLE (a superuser when r is one)
-- Operators, conversions, dictionaries, configurations, user mappings, aggregates,
-- collations and casts of a type the task creates need nothing more.
local context = require "tide.precheck.context"
local ddl = require "tide.ddl"
local json = require "tide.json"
local kinds = require "tide.kinds"
local breathe = require("tide.wait").breathe
local id_of = require("tide.plan.ids").id

local M = {}
local quote = context.quote

local function schema_phase(ctx) return ctx.phases.schema == true end

local RUN_AS_SUPERUSER = "create it on the target as a superuser first (its statement is in pgtide plan) and set schema.existing = \"skip\", or run the schema phase as a superuser"

-- The objects the schema phase creates: not those the target has and keeps, nor, in a
-- resumed run, those an earlier run created.
local function created(ctx)
  return ctx:once("superuser:created", function()
    local list = {}
    for _, obj in ipairs(ctx.plan.objects) do
      breathe()
      if obj.inline_of == nil and not obj.keep_existing and not (ctx.resumed and obj.existing_target) then
        list[#list + 1] = obj
      end
    end
    return list
  end)
end

-- True when the plan creates `obj` (so the target role will own it).
local function creates(ctx, obj)
  return obj ~= nil and ctx.plan.by_key[obj.key] == obj and not obj.keep_existing
end

local function finding(obj, message, fix)
  local f = context.finding(obj, message, fix)
  f.object = kinds.describe(obj)
  return f
end

-- Language, trust and SET clauses of the functions and procedures the plan creates (from
-- the source), by oid; only those in an untrusted language or with SET clauses.
local function routines(ctx)
  return ctx:once("superuser:routines", function()
    local by_oid, oids = {}, {}
    for _, obj in ipairs(created(ctx)) do
      if obj.kind == "function" or obj.kind == "procedure" then
        by_oid[tostring(obj.oid)] = { obj = obj }
        oids[#oids + 1] = obj.oid
      end
    end
    local list = {}
    if #oids == 0 then return list end
    for _, r in ipairs(ctx:query("source", [[
SELECT p.oid, l.lanname AS language, l.lanpltrusted AS trusted, to_json(p.proconfig)::text AS config_json
FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
WHERE p.oid = ANY($1::oid[]) AND (NOT l.lanpltrusted OR p.proconfig IS NOT NULL)
]], oids)) do
      local entry = by_oid[tostring(r.oid)]
      if entry then
        entry.language, entry.trusted = r.language, r.trusted
        entry.config = r.config_json and json.decode(r.config_json) or {}
        list[#list + 1] = entry
      end
    end
    table.sort(list, function(a, b) return a.obj.key < b.obj.key end)
    return list
  end)
end

------------------------------------------------------------------------ superuser only

local SUPERUSER_ONLY = {
  text_search_parser = "CREATE TEXT SEARCH PARSER",
  text_search_template = "CREATE TEXT SEARCH TEMPLATE",
  foreign_data_wrapper = "CREATE FOREIGN DATA WRAPPER",
  language = "CREATE LANGUAGE (for a trusted language too)",
  event_trigger = "CREATE EVENT TRIGGER",
  access_method = "CREATE ACCESS METHOD",
  type = "CREATE TYPE for a base type (its shell too)",
  operator_family = "CREATE OPERATOR FAMILY",
  operator_class = "CREATE OPERATOR CLASS",
}

local function superuser_objects(ctx)
  local t = ctx:target_server()
  if t.superuser then return {} end
  local user = quote(t.user_name)
  local out = {}
  for _, obj in ipairs(created(ctx)) do
    local what = SUPERUSER_ONLY[obj.kind]
    if obj.kind == "cast" and obj.row.method == "b" then what = "CREATE CAST ... WITHOUT FUNCTION" end
    if what then
      out[#out + 1] = finding(obj, string.format("only a superuser may run %s, and the target role %s is not one", what, user),
        RUN_AS_SUPERUSER)
    end
  end
  for _, r in ipairs(routines(ctx)) do
    if not r.trusted and r.language ~= "c" then
      out[#out + 1] = finding(r.obj,
        string.format("it is LANGUAGE %s, an untrusted language: only a superuser may create functions in it, and the target role %s is not one",
          quote(r.language), user),
        RUN_AS_SUPERUSER)
    end
  end
  return out
end

------------------------------------------------------------------------ ownership, membership, USAGE

-- A naming context for tide.ddl (names as the plan maps them): what a cast or transform
-- names on the target when the plan does not create it.
local function naming(ctx)
  return ctx:once("superuser:naming", function()
    local rename = ctx.task.rename
    local n = { identity = next(rename or {}) == nil, by_name = ctx.plan.model.by_name, schema_names = {} }
    if not n.identity then n.map = require("tide.rename").compile(rename) end
    for _, s in ipairs(ctx.catalog.schemas or {}) do n.schema_names[s.name] = true end
    return n
  end)
end

-- Owners on the target of types and functions the plan does not create, by their target
-- names: items { what = "type" | "function", name = } get present, owned, owner.
local function resolve_owners(ctx, items)
  if #items == 0 then return end
  local whats, names = {}, {}
  for i, item in ipairs(items) do whats[i], names[i] = item.what, item.name end
  local rows = ctx:query("target", [[
SELECT x.i, o.owner_oid IS NOT NULL AS present, coalesce(pg_has_role(o.owner_oid, 'USAGE'), false) AS owned,
       pg_get_userbyid(o.owner_oid) AS owner
FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS x(what, name, i)
LEFT JOIN LATERAL (
  SELECT t.typowner AS owner_oid FROM pg_type t
   WHERE t.oid = CASE WHEN x.what = 'type' THEN to_regtype(x.name) END
  UNION ALL
  SELECT p.proowner FROM pg_proc p
   WHERE p.oid = CASE WHEN x.what = 'function' THEN to_regprocedure(x.name) END
) o ON true
]], whats, names)
  for _, r in ipairs(rows) do
    local item = items[math.tointeger(r.i) or tonumber(r.i)]
    if item then item.present, item.owned, item.owner = r.present, r.owned, r.owner end
  end
end

-- One side of a cast or transform: owned when the plan creates it, else asked of the target.
local function type_side(ctx, items, oid, text)
  local obj = oid and ctx.plan.model.identity[id_of("pg_type", oid)]
  if creates(ctx, obj) then return { owned = true, name = text } end
  local item = { what = "type", name = ddl.type_text(naming(ctx), text) }
  items[#items + 1] = item
  return item
end

local function function_side(ctx, items, fn)
  local obj = fn[3] and ctx.plan.model.identity[id_of("pg_proc", fn[3])]
  local n = naming(ctx)
  local name = ddl.qualified(ddl.lookup(n, "function", fn[1], fn[2])) .. "(" .. ddl.type_text(n, fn[4] or "") .. ")"
  if creates(ctx, obj) then return { owned = true, name = name } end
  local item = { what = "function", name = name }
  items[#items + 1] = item
  return item
end

local function owned_by(item)
  if item.present then return string.format("%s %s is owned by %s", item.what, item.name, quote(item.owner or "?")) end
  return string.format("%s %s is not on the target yet (one CREATE EXTENSION makes there belongs to a superuser)", item.what, item.name)
end

local function object_privileges(ctx)
  local t = ctx:target_server()
  if t.superuser then return {} end
  local user = quote(t.user_name)
  local out = {}
  local items, casts, transforms, servers, acl_roles, acls = {}, {}, {}, {}, {}, {}
  local creates_wrapper = {}
  for _, obj in ipairs(created(ctx)) do
    if obj.kind == "foreign_data_wrapper" then creates_wrapper[obj.name] = true end
  end
  for _, obj in ipairs(created(ctx)) do
    local row = obj.row
    if obj.kind == "cast" and row.method ~= "b" then
      casts[#casts + 1] = { obj = obj, type_side(ctx, items, row.source_oid, row.source_type),
                            type_side(ctx, items, row.target_oid, row.target_type) }
    elseif obj.kind == "transform" then
      local entry = { obj = obj, type_side(ctx, items, row.type_oid, row.type) }
      for _, key in ipairs({ "fromsql", "tosql" }) do
        if row[key] then entry[#entry + 1] = function_side(ctx, items, row[key]) end
      end
      transforms[#transforms + 1] = entry
    elseif obj.kind == "server" and row.wrapper and not creates_wrapper[row.wrapper] then
      servers[#servers + 1] = obj
    elseif obj.kind == "default_privileges" and row.role and row.role ~= t.user_name
      and ctx.target_catalog.roles_set[row.role] then
      if not acl_roles[row.role] then acl_roles[row.role] = true; acl_roles[#acl_roles + 1] = row.role end
      acls[#acls + 1] = obj
    end
  end
  resolve_owners(ctx, items)

  for _, c in ipairs(casts) do
    if not (c[1].owned or c[2].owned) then
      out[#out + 1] = finding(c.obj,
        string.format("only the owner of its source or target type may create this cast, and the target role %s owns neither: %s; %s",
          user, owned_by(c[1]), owned_by(c[2])),
        "run the schema phase as a superuser, or create the cast on the target first as the owner of one of the types and set schema.existing = \"skip\"")
    end
  end
  for _, tr in ipairs(transforms) do
    local missing = {}
    for _, side in ipairs(tr) do
      if not side.owned then missing[#missing + 1] = owned_by(side) end
    end
    if #missing > 0 then
      out[#out + 1] = finding(tr.obj,
        string.format("CREATE TRANSFORM needs the target role %s to own the type and the functions: %s",
          user, table.concat(missing, "; ")),
        "run the schema phase as a superuser, or create the transform on the target first as the owner of the type and functions and set schema.existing = \"skip\"")
    end
  end

  if #servers > 0 then
    local names, seen = {}, {}
    for _, obj in ipairs(servers) do
      if not seen[obj.row.wrapper] then seen[obj.row.wrapper] = true; names[#names + 1] = obj.row.wrapper end
    end
    local usable = {}
    for _, r in ipairs(ctx:query("target", [[
SELECT w.fdwname AS name, has_foreign_data_wrapper_privilege(w.oid, 'USAGE') AS usable
FROM pg_foreign_data_wrapper w WHERE w.fdwname = ANY($1::text[])
]], names)) do usable[r.name] = r.usable end
    for _, obj in ipairs(servers) do
      if usable[obj.row.wrapper] == false then
        out[#out + 1] = finding(obj,
          string.format("CREATE SERVER needs USAGE on its foreign-data wrapper %s, which the target role %s lacks",
            quote(obj.row.wrapper), user),
          string.format("GRANT USAGE ON FOREIGN DATA WRAPPER %s TO %s;", quote(obj.row.wrapper), user))
      end
    end
  end

  if #acls > 0 then
    local not_member = {}
    for _, r in ipairs(ctx:query("target", [[
SELECT r AS name FROM unnest($1::text[]) AS r WHERE NOT pg_has_role(r, 'MEMBER')
]], acl_roles)) do not_member[r.name] = true end
    for _, obj in ipairs(acls) do
      local role = obj.row.role
      if not_member[role] then
        out[#out + 1] = finding(obj,
          string.format("ALTER DEFAULT PRIVILEGES FOR ROLE %s needs membership in role %s, and the target role %s is not a member",
            quote(role), quote(role), user),
          string.format("GRANT %s TO %s;  (or run the schema phase as a superuser, or leave default_privileges out: select.kinds.exclude)",
            quote(role), user))
      end
    end
  end
  return out
end

------------------------------------------------------------------------ settings

-- The target's word on parameters: context (nil when it does not know the name: a
-- placeholder) and whether the role was granted SET on it (15+).
local function parameters(ctx, names)
  if #names == 0 then return {} end
  local sql = ctx.versions.target >= 150000 and [[
SELECT x.name, s.context,
       CASE WHEN s.name IS NOT NULL OR strpos(x.name, '.') > 0 THEN has_parameter_privilege(x.name, 'SET') END AS granted
FROM unnest($1::text[]) AS x(name)
LEFT JOIN pg_settings s ON s.name = lower(x.name)
]] or [[
SELECT x.name, s.context, false AS granted
FROM unnest($1::text[]) AS x(name)
LEFT JOIN pg_settings s ON s.name = lower(x.name)
]]
  local out = {}
  for _, r in ipairs(ctx:query("target", sql, names)) do out[r.name] = r end
  return out
end

-- True when only a superuser (or a role granted SET on it) may set the parameter: context
-- superuser, or a name the server does not know yet (an extension's, plpgsql.* before
-- plpgsql is loaded), which PostgreSQL accepts only from those. Names it cannot know at all
-- (no dot) and parameters nobody may set this way fail for a superuser too: not ours.
local function superuser_parameter(p, name)
  if not p then return false end
  if p.context == "superuser" then return not p.granted end
  if p.context == nil then return name:find(".", 1, true) ~= nil and not p.granted end
  return false
end

local function setting_name(item)
  return type(item) == "string" and item:match("^([^=]+)=") or nil
end

local function setting_privileges(ctx)
  local t = ctx:target_server()
  if t.superuser then return {} end
  local user = quote(t.user_name)
  local grant = ctx.versions.target >= 150000
  local entries, names, seen = {}, {}, {}
  local function add_names(config)
    for _, item in ipairs(config or {}) do
      local name = setting_name(item)
      if name and not seen[name] then seen[name] = true; names[#names + 1] = name end
    end
  end
  local settings = {}
  for _, obj in ipairs(created(ctx)) do
    if obj.kind == "database_setting" then
      settings[#settings + 1] = obj
      add_names(obj.row.config)
    end
  end
  for _, r in ipairs(routines(ctx)) do
    if #r.config > 0 then entries[#entries + 1] = r; add_names(r.config) end
  end
  if #names == 0 then return {} end
  local params = parameters(ctx, names)

  -- The parameters of a SET list only a superuser may set: problems and fixes.
  local function parameter_problems(config, problems, fixes)
    local listed = {}
    for _, item in ipairs(config or {}) do
      local name = setting_name(item)
      if name and not listed[name] and superuser_parameter(params[name], name) then
        listed[name] = true
        problems[#problems + 1] = string.format("parameter %s can be set only by a superuser%s", name,
          params[name].context == nil and " (the target server does not know it yet: an extension's, or one of a library it has not loaded)" or "")
        fixes[#fixes + 1] = grant and string.format("GRANT SET ON PARAMETER %s TO %s;", name, user)
          or "run the schema phase as a superuser (before PostgreSQL 15 only a superuser may set it)"
      end
    end
  end

  local out = {}
  for _, r in ipairs(entries) do
    local problems, fixes = {}, {}
    parameter_problems(r.config, problems, fixes)
    if #problems > 0 then
      out[#out + 1] = finding(r.obj, "its SET clause: " .. table.concat(problems, "; ") ..
        string.format(", and the target role %s is not one", user), table.concat(fixes, "  "))
    end
  end

  if #settings > 0 then
    local facts = ctx:query("target", [[
SELECT d.datname AS database, pg_has_role(d.datdba, 'USAGE') AS owns_database,
       pg_get_userbyid(d.datdba) AS database_owner,
       (SELECT r.rolcreaterole FROM pg_roles r WHERE r.rolname = current_user) AS createrole
FROM pg_database d WHERE d.datname = current_database()
]])[1]
    for _, obj in ipairs(settings) do
      local row, problems, fixes = obj.row, {}, {}
      local role = row.role and ctx.target_catalog.roles_set[row.role]
      if not row.role then
        if not facts.owns_database then
          problems[#problems + 1] = string.format("only the owner of database %s (%s) may ALTER DATABASE ... SET",
            quote(facts.database), quote(facts.database_owner))
          fixes[#fixes + 1] = string.format("ALTER DATABASE %s OWNER TO %s;", quote(facts.database), user)
        end
      elseif role and row.role ~= t.user_name then
        if role.superuser then
          problems[#problems + 1] = string.format("role %s is a superuser: only a superuser may change its settings", quote(row.role))
          fixes[#fixes + 1] = "run the schema phase as a superuser"
        elseif not facts.createrole then
          problems[#problems + 1] = string.format("only a role with CREATEROLE may change the settings of another role (%s)", quote(row.role))
          fixes[#fixes + 1] = string.format("ALTER ROLE %s CREATEROLE;", user)
        end
      end
      if not row.role or role then parameter_problems(row.config, problems, fixes) end
      if #problems > 0 then
        local f = finding(obj, table.concat(problems, "; ") .. string.format(" (the target role is %s)", user),
          table.concat(fixes, "  ") .. "  (or leave schema.database_settings off)")
        f.object = (row.role and ("settings of role " .. quote(row.role) .. " in database ") or "settings of database ")
          .. quote(facts.database)
        out[#out + 1] = f
      end
    end
  end
  return out
end

M.checks = {
  {
    id = "target_superuser_objects", title = "Objects only a superuser can create on the target", grade = "fail",
    applies = schema_phase, run = superuser_objects,
  },
  {
    id = "target_object_privileges", title = "Casts, transforms, servers and default privileges the target role may not create", grade = "fail",
    applies = schema_phase, run = object_privileges,
  },
  {
    id = "target_setting_privileges", title = "Settings only a superuser can give (function SET clauses, database and role settings)", grade = "fail",
    applies = schema_phase, run = setting_privileges,
  },
}

return M
