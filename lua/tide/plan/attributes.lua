-- tide.plan.attributes — comments, owners and privileges of the selected objects, as steps.
--
--   schema.comments = true (default)   COMMENT ON ... for every comment of the source
--   schema.security_labels = true (default)  SECURITY LABEL FOR provider ON ... for every
--                                      label of the source (pg_seclabel), like comments;
--                                      plan.security_labels lists them for the precheck
--                                      security_label_provider
--   schema.owners = "target" (default) everything stays owned by the role pgtide connects as
--                                      on the target: what works on managed services
--                 | "source"           ALTER ... OWNER TO the source owner, when that role
--                                      exists on the target (otherwise a warning)
--   schema.grants = true (default)     GRANT / REVOKE what differs from the default
--                                      privileges; privileges of the source owner go to the
--                                      target owner; roles missing on the target are warned
--                                      about and left out
-- Comments and labels come right after their object (same phase); owners and grants come last, in
-- post-data, so the load is not affected by them.
local ddl = require "tide.ddl"
local order = require "tide.plan.order"

local breathe = require("tide.wait").breathe
local id_of = require("tide.plan.ids").id

local M = {}

local function comment_reference(ctx, obj, subid)
  if subid and subid > 0 then
    if not obj.columns then return nil end
    for _, c in ipairs(obj.columns) do
      if c.num == subid then return "COLUMN " .. ddl.target(obj) .. "." .. ddl.quote(c.target) end
    end
    return nil -- a column left out
  end
  return obj.def.reference and obj.def.reference(ctx, obj)
end

-- select.kinds include/exclude for a kind that has no objects of its own to ask about.
function M.kind_allowed(selector, kind)
  local k = selector.kinds or {}
  if k.exclude and k.exclude[kind] then return false end
  if k.include and not k.include[kind] then return false end
  return true
end

local function is_owned(obj)
  local owned = obj.def.owned
  if type(owned) == "function" then return owned(obj) end
  return owned ~= false
end

-- The step list grows; `all` is every step so far (tide.plan.order).
function M.add(plan, model, tmodel, ctx, task, selector, all)
  local options = task.schema or {}
  local owners = options.owners or "target"
  local want_comments = options.comments ~= false and M.kind_allowed(selector, "comment")
  local want_labels = options.security_labels ~= false and M.kind_allowed(selector, "security_label")
  local want_grants = options.grants ~= false and M.kind_allowed(selector, "grant")
  local target_user = tmodel.cat.settings.current_user
  local roles = tmodel.cat.roles_set

  local function usable(obj)
    local root = obj.inline_of ~= nil and obj.root or obj
    return root and obj.selected and not (root.keep_existing and root.kind ~= "schema")
  end

  if want_comments then
    -- The target's comments, to leave alone what an existing schema already says.
    local target_comments = {}
    for _, row in ipairs(tmodel.cat.comments) do
      target_comments[row.class .. ":" .. row.objoid .. ":" .. row.objsubid] = row.description
    end
    for _, row in ipairs(model.cat.comments) do
      breathe()
      local obj = model.exact[id_of(row.class, row.objoid)]
      if obj and usable(obj) and obj.kind ~= "extension" and not (obj.kind == "index" and obj.inline_of) then
        local existing = obj.existing_target
        local same = existing and target_comments[existing.class .. ":" .. existing.oid .. ":" .. row.objsubid] == row.description
        local reference = not same and comment_reference(ctx, obj, row.objsubid)
        if reference then
          local owner = obj.inline_of ~= nil and obj.root or obj
          order.add_step(owner, {
            kind = "comment", suffix = "comment" .. (obj ~= owner and ("/" .. obj.kind .. "/" .. obj.name) or "")
              .. (row.objsubid > 0 and ("/" .. row.objsubid) or ""),
            sql = "COMMENT ON " .. reference .. " IS " .. ddl.literal(row.description),
          }, all)
        end
      end
    end
  end

  -- Security labels, as comments: one step per object, column and provider, after the
  -- object; a label an existing object (a schema) already has on the target is left alone.
  -- Large objects, publications, subscriptions and extension members are not migrated one
  -- by one, nor are their labels.
  plan.security_labels = plan.security_labels or {}
  if want_labels then
    local function label_id(class, oid, subid, provider)
      return table.concat({ class, tostring(oid), tostring(subid), provider }, ":")
    end
    local target_labels = {}
    for _, row in ipairs(tmodel.cat.security_labels or {}) do
      target_labels[label_id(row.class, row.objoid, row.objsubid, row.provider)] = row.label
    end
    for _, row in ipairs(model.cat.security_labels or {}) do
      local obj = model.exact[id_of(row.class, row.objoid)]
      if obj and usable(obj) and obj.kind ~= "extension" then
        local existing = obj.existing_target
        local same = existing and target_labels[label_id(existing.class, existing.oid, row.objsubid, row.provider)] == row.label
        local reference = not same and comment_reference(ctx, obj, row.objsubid)
        if reference then
          local owner = obj.inline_of ~= nil and obj.root or obj
          local step = order.add_step(owner, {
            kind = "security_label", trailing = true,
            suffix = row.provider .. (obj ~= owner and ("/" .. obj.kind .. "/" .. obj.name) or "")
              .. (row.objsubid > 0 and ("/" .. row.objsubid) or ""),
            sql = "SECURITY LABEL FOR " .. ddl.quote(row.provider) .. " ON " .. reference .. " IS " .. ddl.literal(row.label),
          }, all)
          plan.security_labels[#plan.security_labels + 1] = { provider = row.provider, object = obj,
            reference = reference, step = step.key }
        end
      end
    end
  end

  -- The role that gets what the source owner had.
  local function owner_role(obj)
    local source_owner = obj.row.owner
    if owners == "source" and source_owner and roles[source_owner] then return source_owner end
    return target_user
  end

  if owners == "source" then
    for _, obj in ipairs(model.objects) do
      breathe()
      if obj.selected and obj.inline_of == nil and is_owned(obj) and obj.row.owner and obj.def.reference
        and not obj.keep_existing then
        if not roles[obj.row.owner] then
          ctx.warn(obj, string.format("the role %s that owns %s %s on the source does not exist on the target; it will be owned by %s",
            obj.row.owner, obj.kind, obj.ident, target_user))
        elseif obj.row.owner ~= target_user then
          order.add_step(obj, { kind = "owner", suffix = "owner", phase = "post",
            sql = "ALTER " .. obj.def.reference(ctx, obj) .. " OWNER TO " .. ddl.quote(obj.row.owner) }, all)
        end
      end
    end
  end

  if want_grants then
    -- An object that already exists on the target (a schema) with the same privileges needs
    -- no GRANT again.
    local function privilege_sets(rows)
      local sets = {}
      for _, row in ipairs(rows) do
        local id = row.class .. ":" .. row.objoid
        sets[id] = sets[id] or {}
        table.insert(sets[id], table.concat({ row.objsubid, row.action, row.privilege, row.grantee or "",
          tostring(row.grantable), tostring(row.to_owner) }, "|"))
      end
      for _, list in pairs(sets) do table.sort(list) end
      return sets
    end
    local source_sets, target_sets = privilege_sets(model.cat.privileges), privilege_sets(tmodel.cat.privileges)
    local function same_privileges(obj)
      local t = obj.existing_target
      if not t then return false end
      local a, b = source_sets[obj.class .. ":" .. obj.oid], target_sets[t.class .. ":" .. t.oid]
      return a ~= nil and b ~= nil and table.concat(a, "\n") == table.concat(b, "\n")
    end
    -- One statement per object, column, action, grantee and grant option.
    local groups, order_list = {}, {}
    for _, row in ipairs(model.cat.privileges) do
      breathe()
      local obj = model.exact[id_of(row.class, row.objoid)]
      if obj and usable(obj) and not same_privileges(obj) then
        local grantee
        if row.to_owner then grantee = owner_role(obj)
        elseif row.grantee then grantee = row.grantee end
        if grantee and not roles[grantee] then
          ctx.warn(obj, string.format("%s %s: the privilege %s for role %s is left out: the role does not exist on the target",
            obj.kind, obj.ident, row.privilege, grantee))
        else
          local column
          if row.objsubid > 0 then
            for _, c in ipairs(obj.columns or {}) do if c.num == row.objsubid then column = c.target end end
          end
          if row.objsubid == 0 or column then
            local id = table.concat({ obj.key, column or "", row.action, grantee or "PUBLIC", tostring(row.grantable) }, "\0")
            local group = groups[id]
            if not group then
              group = { obj = obj, column = column, action = row.action, grantee = grantee,
                        grantable = row.grantable, privileges = {} }
              groups[id] = group
              order_list[#order_list + 1] = id
            end
            group.privileges[#group.privileges + 1] = row.privilege
          end
        end
      end
    end
    for _, id in ipairs(order_list) do
      local g = groups[id]
      local owner = g.obj.inline_of ~= nil and g.obj.root or g.obj
      local def = g.obj.def
      local reference = (def.grant_reference or def.reference)(ctx, g.obj)
      local privileges = table.concat(g.privileges, ", ")
      if g.column then privileges = privileges:gsub("([%u_]+)", "%1 (" .. ddl.quote(g.column) .. ")") end
      local who = g.grantee and ddl.quote(g.grantee) or "PUBLIC"
      local sql
      if g.action == "grant" then
        sql = "GRANT " .. privileges .. " ON " .. reference .. " TO " .. who .. (g.grantable and " WITH GRANT OPTION" or "")
      else
        sql = "REVOKE " .. privileges .. " ON " .. reference .. " FROM " .. who
      end
      local parts = { g.action }
      if g.obj ~= owner then parts[#parts + 1] = g.obj.name end
      if g.column then parts[#parts + 1] = g.column end
      parts[#parts + 1] = g.grantee or "PUBLIC"
      if g.grantable then parts[#parts + 1] = "grantable" end
      local suffix = table.concat(parts, "/")
      order.add_step(owner, { kind = g.action, suffix = suffix, phase = "post", sql = sql }, all)
    end
  end
end

return M
