-- tide.plan.existing — objects the target already has under the names the plan would use,
-- and what task.schema.existing says to do with them:
--
--   "error" (default)  each one is a conflict; the plan cannot run and nothing is written
--   "skip"             keep the target's object when its definition is the same as the one
--                      the plan would create (the same statements, written from each side's
--                      catalog); a different definition is a conflict
--   "drop"             drop it first (pre-data, before anything is created), then create it
--                      as planned. Only when the playbook says so; never with CASCADE, so
--                      anything else that depends on it makes the drop fail with the
--                      server's message naming it.
--
-- Schemas and extensions that exist are simply used (CREATE SCHEMA is skipped, the extension
-- has IF NOT EXISTS): an existing `public` is not a conflict.
local ddl = require "tide.ddl"
local objects = require "tide.plan.objects"
local breathe = require("tide.wait").breathe

local M = {}

-- The name-space key an object occupies on the target.
local function space_key(obj, schema, name, owner, args)
  local space = obj.def.space
  if space == "relation" then return "relation\0" .. schema .. "\0" .. name end
  if space == "function" then return "function\0" .. schema .. "\0" .. name .. "\0" .. (args or "") end
  if obj.def.space_args then return space .. "\0" .. schema .. "\0" .. name .. "\0" .. (args or "") end
  if space == "table" then
    return obj.kind .. "\0" .. (owner and owner.schema or "") .. "\0" .. (owner and owner.name or "") .. "\0" .. name
  end
  if space == "schema" or space == "extension" or schema == nil then return space .. "\0" .. name end
  return space .. "\0" .. schema .. "\0" .. name
end

-- M.index(tmodel) → key → target object, for every object on the target.
function M.index(tmodel)
  local index = {}
  for _, tobj in ipairs(tmodel.objects) do
    breathe()
    local key = space_key(tobj, tobj.schema, tobj.name, tobj.owner, tobj.row.identity_args)
    if not index[key] then index[key] = tobj end
  end
  return index
end

-- The key the source object `obj` would occupy on the target (its mapped names).
function M.key(obj, ctx)
  local owner = obj.owner and obj.owner.target
  local args = (obj.def.space == "function" or obj.def.space_args) and ddl.type_text(ctx, obj.row.identity_args or "") or nil
  return space_key(obj, obj.target.schema, obj.target.name, owner, args)
end

local function statements(def, ctx, obj)
  local list = {}
  for _, step in ipairs(def.create(ctx, obj)) do list[#list + 1] = step.sql end
  return table.concat(list, ";\n")
end

-- The first line where two texts differ, for the conflict message.
local function first_difference(a, b)
  local la, lb = {}, {}
  for line in (a .. "\n"):gmatch("(.-)\n") do la[#la + 1] = line end
  for line in (b .. "\n"):gmatch("(.-)\n") do lb[#lb + 1] = line end
  for i = 1, math.max(#la, #lb) do
    if la[i] ~= lb[i] then
      return string.format("planned: %s\n    target:  %s", la[i] or "(nothing)", lb[i] or "(nothing)")
    end
  end
  return ""
end

-- M.detect(plan, model, ctx, tctx, index, policy, creates): marks obj.existing_target,
-- obj.keep_existing; fills plan.conflicts, plan.existing and plan.drops (statements for policy
-- "drop"). `creates` false: the task has no schema phase, so it creates nothing and what the
-- target has is used as it is, whatever the policy (no conflict, no drop, no statement).
function M.detect(plan, model, ctx, tctx, index, policy, creates)
  local quiet = setmetatable({ warn = function() end, error = function() end }, { __index = ctx })
  for _, obj in ipairs(model.objects) do
    breathe()
    if obj.selected and obj.inline_of == nil then
      local tobj = index[M.key(obj, ctx)]
      if tobj then
        local target_text = obj.def.global and obj.ident or ddl.target(obj)
        if obj.kind == "schema" or obj.kind == "extension" then target_text = ddl.quote(obj.target.name) end
        if obj.def.target_text then target_text = obj.def.target_text(obj) end
        obj.existing_target = tobj
        local entry = { kind = obj.kind, key = obj.key, target = target_text }
        plan.existing[#plan.existing + 1] = entry
        if obj.kind == "schema" or obj.kind == "extension" then
          obj.keep_existing = true
          entry.action = "used"
        elseif creates == false then
          obj.keep_existing = true
          entry.action = "used as it is (the task has no schema phase)"
        elseif obj.owner and obj.owner.drop_existing then
          entry.action = "dropped with " .. objects.describe(obj.owner)
        elseif policy == "skip" then
          local ok_source, planned = pcall(statements, obj.def, quiet, obj)
          local ok_target, present = pcall(statements, tobj.def, tctx, tobj)
          if ok_source and ok_target and planned == present then
            obj.keep_existing = true
            entry.action = "kept (same definition)"
          else
            entry.action = "conflict"
            plan.conflicts[#plan.conflicts + 1] = { kind = obj.kind, key = obj.key, target = target_text,
              message = string.format("%s %s already exists on the target with a different definition (schema.existing = \"skip\" keeps only identical objects)\n    %s",
                obj.kind, target_text, ok_source and ok_target and first_difference(planned, present) or tostring(planned) .. " / " .. tostring(present)) }
          end
        elseif policy == "drop" then
          obj.drop_existing = true
          entry.action = "dropped and created again"
          local ok, sql = pcall(tobj.def.drop, tctx, tobj)
          if ok and sql then
            plan.drops[#plan.drops + 1] = { kind = "drop", key = "drop:" .. obj.key, sql = sql, object = obj,
              rank = tobj.def.rank or 500, phase_rank = tobj.def.phase == "post" and 0 or 1 }
          end
        else
          entry.action = "conflict"
          plan.conflicts[#plan.conflicts + 1] = { kind = obj.kind, key = obj.key, target = target_text,
            message = string.format("%s %s already exists on the target (schema.existing = \"error\"): drop it there, or set schema.existing = \"skip\" or \"drop\"",
              obj.kind, target_text) }
        end
      end
    end
  end
  -- Drops run dependents first: post-data kinds, then pre-data kinds from views down to
  -- schemas. Consecutive drops of one kind go in one statement, so tables that reference
  -- each other drop together.
  table.sort(plan.drops, function(a, b)
    if a.phase_rank ~= b.phase_rank then return a.phase_rank < b.phase_rank end
    if a.rank ~= b.rank then return a.rank > b.rank end
    return a.key < b.key
  end)
  local groupable = { ["DROP TABLE"] = true, ["DROP FOREIGN TABLE"] = true, ["DROP VIEW"] = true,
    ["DROP MATERIALIZED VIEW"] = true, ["DROP SEQUENCE"] = true, ["DROP INDEX"] = true,
    ["DROP TYPE"] = true, ["DROP DOMAIN"] = true, ["DROP FUNCTION"] = true, ["DROP PROCEDURE"] = true,
    ["DROP AGGREGATE"] = true, ["DROP COLLATION"] = true, ["DROP STATISTICS"] = true }
  local grouped = {}
  for _, drop in ipairs(plan.drops) do
    breathe()
    local word, rest = drop.sql:match("^(DROP [%u ]+) (.*)$")
    if not groupable[word] then word = nil end
    local last = grouped[#grouped]
    if word and last and last.word == word then
      last.sql = last.sql .. ", " .. rest
      last.keys[#last.keys + 1] = drop.key
    else
      drop.word = word
      drop.keys = { drop.key }
      grouped[#grouped + 1] = drop
    end
  end
  plan.drops = grouped
end

return M
