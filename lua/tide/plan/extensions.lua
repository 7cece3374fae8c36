-- tide.plan.extensions — what of an extension pgtide carries besides CREATE EXTENSION, as
-- pg_dump does:
--
--   * its members (pg_depend deptype 'e') are never created one by one: CREATE EXTENSION on
--     the target makes them (tide.catalog leaves them out; the parts of an extension's table
--     are left out by tide.plan.objects, naming the extension);
--   * its configuration tables (pg_extension_config_dump: pg_extension.extconfig and
--     extcondition) are data-only entries of plan.tables: the table is not created, its rows
--     matching the condition are copied by the full load (`extension`, `row_filter`,
--     `target_filter`); a configuration sequence is in plan.sequences, so its value is set;
--   * privileges on its members that differ from the extension's initial privileges
--     (pg_init_privs; the defaults when the script granted nothing) are GRANT / REVOKE steps
--     after the data, attached to the extension.
local ddl = require "tide.ddl"
local sqlident = require "tide.sqlident"
local attributes = require "tide.plan.attributes"
local objects = require "tide.plan.objects"
local order = require "tide.plan.order"
local steplist = require "tide.plan.steplist"

local breathe = require("tide.wait").breathe
local id_of = require("tide.plan.ids").id

local M = {}

local quote = sqlident.quote
local INTEGER_TYPES = { [20] = true, [21] = true, [23] = true }

-- The target schema of something an extension made in `schema`: the extension's own schema
-- follows the extension (it may be mapped); a schema its script created keeps its name.
local function member_schema(ext, schema)
  if schema and schema == ext.schema then return ext.target.schema end
  return schema
end

-- "WHERE a > 1" (as pg_extension_config_dump stores it) → "a > 1"; nil for no condition.
local function condition_filter(condition)
  if not condition then return nil end
  local rest = condition:match("^%s*[Ww][Hh][Ee][Rr][Ee]%s(.*)$")
  if not rest or rest:match("^%s*$") then return nil, false end
  return (rest:gsub("^%s+", ""):gsub("%s+$", ""))
end

-- Post-data steps that need the rows of configuration tables wait for them: a foreign key
-- referencing one, a materialized view's refresh reading one (through views too).
-- tide.plan.depends records the extension relations an object uses (obj.extension_relations).
local function wait_for_config_rows(plan, config_keys)
  if next(config_keys) == nil then return end
  local function uses(obj, out, through_views, seen)
    if not obj or seen[obj] then return end
    seen[obj] = true
    for oid in pairs(obj.extension_relations or {}) do
      if config_keys[oid] then out[config_keys[oid]] = true end
    end
    if through_views then
      for ref in pairs(obj.deps or {}) do
        if ref.selected and (ref.kind == "view" or ref.kind == "matview") then uses(ref, out, true, seen) end
      end
    end
  end
  for i = 1, #plan.post_data do
    breathe()
    local kind = steplist.field(plan.post_data, i, "kind")
    if kind == "fkey" or kind == "matview_refresh" then
      local step = plan.post_data[i]
      local found = {}
      uses(plan.by_key[step.object], found, step.kind == "matview_refresh", {})
      if next(found) then
        -- (A list of its own: the plan's lists are shared between steps, tide.plan.build.)
        local have, needs = {}, {}
        for j, key in ipairs(step.needs_data or {}) do have[key] = true; needs[j] = key end
        for key in pairs(found) do
          if not have[key] then needs[#needs + 1] = key end
        end
        table.sort(needs)
        step.needs_data = needs
        steplist.set(plan.post_data, i, step)   -- (a packed list's step is a copy: put back)
      end
    end
  end
end

-- M.config_tables(plan, model, selector): plan.tables / plan.sequences entries for the
-- configuration tables and sequences of the selected extensions.
function M.config_tables(plan, model, selector)
  local config_keys = {}
  local seen = {}
  for _, t in ipairs(plan.tables) do breathe(); seen[t.key] = true end
  for _, row in ipairs(model.cat.extension_config or {}) do
    local ext = model.exact[id_of("pg_extension", row.extension)]
    local key = quote(row.schema) .. "." .. quote(row.name)
    local word = row.relkind == "S" and "sequence" or "table"
    local what = word .. " " .. key
    local function skip(reason)
      plan.skipped[#plan.skipped + 1] = { kind = word, schema = row.schema, name = row.name,
        key = word .. ":" .. key, reason = reason }
    end
    if not ext or not ext.selected then
      skip("configuration " .. word .. " of extension " .. row.extension_name .. ", which is left out")
    elseif not seen[key] then
      seen[key] = true
      local ok, reason = selector:object(word, row.schema, row.name)
      local filter, valid = condition_filter(row.condition)
      local target = { schema = member_schema(ext, row.schema), name = row.name }
      if not ok then
        skip((reason or "left out") .. " (configuration " .. word .. " of extension " .. ext.name .. ")")
      elseif valid == false then
        plan.errors[#plan.errors + 1] = { kind = "extension", object = ext.key,
          message = string.format("the configuration condition of %s (extension %s) is %q, not \"WHERE ...\": pgtide cannot copy its rows by it; leave the table out (select.exclude = { %q }) and copy its rows yourself",
            what, ext.name, row.condition, row.schema .. "." .. row.name) }
      elseif row.relkind == "S" then
        plan.sequences[#plan.sequences + 1] = { key = key, source = { schema = row.schema, name = row.name },
          target = target, extension = ext.name }
      elseif row.relkind == "r" then
        local columns = {}
        for _, c in ipairs(row.columns or {}) do
          if c.generated ~= "s" then
            columns[#columns + 1] = { name = c.name, target = c.name, type = c.type, type_oid = c.type_oid,
                                      not_null = c.not_null, identity = c.identity }
          end
        end
        local key_columns = type(row.key_columns) == "table" and row.key_columns or nil
        local int_key
        if key_columns and #key_columns == 1 then
          for _, c in ipairs(columns) do
            if c.name == key_columns[1] and INTEGER_TYPES[c.type_oid] then int_key = c.name end
          end
        end
        local user_filter = selector:row_filter(row.schema, row.name)
        local row_filter = filter
        if user_filter then row_filter = filter and ("(" .. filter .. ") AND (" .. user_filter .. ")") or user_filter end
        config_keys[row.oid] = key
        plan.tables[#plan.tables + 1] = {
          key = key, oid = row.oid,
          source = { schema = row.schema, name = row.name }, target = target,
          columns = columns, key_columns = key_columns, int_key = int_key,
          row_filter = row_filter,
          -- The target rows this load owns: those matching the condition. Others were put
          -- there by CREATE EXTENSION and stay (no TRUNCATE of the whole table).
          target_filter = filter,
          extension = ext.name,
          bytes = row.bytes, pages = row.pages, rows_estimate = row.rows_estimate,
          replica_identity = row.replica_identity, unlogged = row.unlogged,
        }
      else
        skip("configuration relation of extension " .. ext.name .. " of a kind pgtide does not copy (relkind " .. tostring(row.relkind) .. ")")
      end
    end
  end
  wait_for_config_rows(plan, config_keys)
end

-- The words naming a member in GRANT, with the target's schema.
local function member_reference(ext, row)
  local name
  if row.schema then
    name = ddl.qualified(member_schema(ext, row.schema), row.name)
  else
    name = ddl.quote(row.name)
  end
  if row.args then name = name .. "(" .. row.args .. ")" end
  return row.word .. " " .. name
end

-- M.member_grants(plan, model, tmodel, ctx, task, selector, all): GRANT / REVOKE steps for
-- the privileges on members of the selected extensions that differ from the extension's
-- initial ones. A difference the target already has is not repeated (a second run, or an
-- extension already there with the same privileges); a role missing on the target is left
-- out with a warning, as for other objects.
function M.member_grants(_plan, model, tmodel, ctx, task, selector, all)
  local options = task.schema or {}
  if options.grants == false or not attributes.kind_allowed(selector, "grant") then return end
  local target_user = tmodel.cat.settings.current_user
  local roles = tmodel.cat.roles_set
  local function identity(ext, row, grantee)
    return table.concat({ row.word, member_schema(ext, row.schema) or "", row.name, row.args or "",
      row.column_name or "", row.action, row.privilege, tostring(row.grantable), grantee or "PUBLIC" }, "\0")
  end
  -- What the target already differs by, per extension name.
  local present = {}
  for _, row in ipairs(tmodel.cat.extension_privileges or {}) do
    local text = table.concat({ row.word, row.schema or "", row.name, row.args or "", row.column_name or "",
      row.action, row.privilege, tostring(row.grantable), row.to_owner and "\1owner" or (row.grantee or "PUBLIC") }, "\0")
    present[text] = true
  end
  local groups, list = {}, {}
  for _, row in ipairs(model.cat.extension_privileges or {}) do
    local ext = model.exact[id_of("pg_extension", row.extension)]
    if ext and ext.selected then
      local grantee = row.to_owner and target_user or row.grantee
      -- The target's identity of the same difference: the member's target schema, and the
      -- owner as such (members are owned by whoever ran CREATE EXTENSION there).
      local mirror = identity(ext, row, row.to_owner and "\1owner" or row.grantee)
      if present[mirror] then
        -- already so on the target
      elseif grantee and not roles[grantee] then
        ctx.warn(ext, string.format("%s (extension %s): the privilege %s for role %s is left out: the role does not exist on the target",
          member_reference(ext, row), ext.name, row.privilege, grantee))
      else
        local id = table.concat({ ext.key, member_reference(ext, row), row.column_name or "", row.action,
          grantee or "PUBLIC", tostring(row.grantable) }, "\0")
        local group = groups[id]
        if not group then
          group = { ext = ext, row = row, grantee = grantee, privileges = {} }
          groups[id] = group
          list[#list + 1] = id
        end
        group.privileges[#group.privileges + 1] = row.privilege
      end
    end
  end
  for _, id in ipairs(list) do
    local g = groups[id]
    local row = g.row
    local reference = member_reference(g.ext, row)
    local privileges = table.concat(g.privileges, ", ")
    if row.column_name then privileges = privileges:gsub("([%u_]+)", "%1 (" .. ddl.quote(row.column_name) .. ")") end
    local who = g.grantee and ddl.quote(g.grantee) or "PUBLIC"
    local sql
    if row.action == "grant" then
      sql = "GRANT " .. privileges .. " ON " .. reference .. " TO " .. who .. (row.grantable and " WITH GRANT OPTION" or "")
    else
      sql = "REVOKE " .. privileges .. " ON " .. reference .. " FROM " .. who
    end
    -- The step key names the member by its argument types only (keys stay short).
    local short = row.word .. " " .. (row.schema and ddl.qualified(member_schema(g.ext, row.schema), row.name) or ddl.quote(row.name))
      .. (row.arg_types and ("(" .. row.arg_types .. ")") or "")
    local parts = { row.action, short }
    if row.column_name then parts[#parts + 1] = row.column_name end
    parts[#parts + 1] = g.grantee or "PUBLIC"
    if row.grantable then parts[#parts + 1] = "grantable" end
    -- A privilege on a member table changes its catalog row, as a foreign key to it or another
    -- statement on it does: the step names the table so that the load never runs them at once
    -- (at once, one fails with "tuple concurrently updated").
    local locks = row.word == "TABLE" and row.schema and objects.table_key({ schema = row.schema, name = row.name }) or nil
    order.add_step(g.ext, { kind = row.action, suffix = table.concat(parts, "/"), phase = "post", sql = sql,
                            locks = locks }, all)
  end
end

return M
