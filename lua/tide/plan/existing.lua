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

-- The name an existing object goes by on the target, as the plan says it.
local function target_text(obj)
  if obj.def.target_text then return obj.def.target_text(obj) end
  if obj.kind == "schema" or obj.kind == "extension" then return ddl.quote(obj.target.name) end
  return obj.def.global and obj.ident or ddl.target(obj)
end

local ERROR_MESSAGE = "%s %s already exists on the target (schema.existing = \"error\"): drop it there, or set " ..
  "schema.existing = \"skip\" or \"drop\""

-- plan.existing and plan.conflicts: an entry is the object it is about and one value (the
-- action; a conflict's message when it is not the one of schema.existing = "error"), and its
-- table is made when read: { kind =, key =, target =, action = } or { kind =, key =, target =,
-- message = }. A run that resumes finds every object of its plan on the target: at 100,000
-- tables an entry of each kind per object, as tables with their texts, were 230 MB. Read as a
-- list (#, [i], ipairs, pairs; tide.json writes it as one); `M.add(list, obj, value)`.
local Entries = {}
Entries.__len = function(self) return self.n end
Entries.__list = true
Entries.__index = function(self, i)
  if math.type(i) ~= "integer" or i < 1 or i > self.n then return nil end
  local obj, value = self.objects[i], self.values[i]
  local entry = { kind = obj.kind, key = obj.key, target = target_text(obj) }
  if self.conflicts then
    entry.message = value or string.format(ERROR_MESSAGE, obj.kind, entry.target)
  else
    entry.action = value
  end
  return entry
end
Entries.__pairs = require("tide.fields").list_pairs
Entries.__newindex = function() error("tide.plan.existing: a list of entries grows by M.add", 2) end

-- M.entries(conflicts) → an empty list of entries (of conflicts when `conflicts`).
function M.entries(conflicts)
  return setmetatable({ n = 0, objects = {}, values = {}, conflicts = conflicts or false }, Entries)
end

function M.add(list, obj, value)
  local i = list.n + 1
  list.objects[i], list.values[i], list.n = obj, value or false, i
end

-- M.detached(list) → the same entries as plain tables, which keep no object alive.
function M.detached(list)
  if getmetatable(list) ~= Entries then return list end
  local out = {}
  for i = 1, list.n do out[i] = list[i] end
  return out
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
-- obj.keep_existing; fills plan.conflicts, plan.existing (lists of M.entries) and plan.drops
-- (statements for policy "drop"). `creates` false: the task has no schema phase, so it
-- creates nothing and what the target has is used as it is, whatever the policy (no
-- conflict, no drop, no statement).
function M.detect(plan, model, ctx, tctx, index, policy, creates)
  local quiet = setmetatable({ warn = function() end, error = function() end }, { __index = ctx })
  for _, obj in ipairs(model.objects) do
    breathe()
    if obj.selected and obj.inline_of == nil then
      local tobj = index[M.key(obj, ctx)]
      if tobj then
        obj.existing_target = tobj
        local action
        if obj.kind == "schema" or obj.kind == "extension" then
          obj.keep_existing = true
          action = "used"
        elseif creates == false then
          obj.keep_existing = true
          action = "used as it is (the task has no schema phase)"
        elseif obj.owner and obj.owner.drop_existing then
          action = "dropped with " .. objects.describe(obj.owner)
        elseif policy == "skip" then
          local ok_source, planned = pcall(statements, obj.def, quiet, obj)
          local ok_target, present = pcall(statements, tobj.def, tctx, tobj)
          if ok_source and ok_target and planned == present then
            obj.keep_existing = true
            action = "kept (same definition)"
          else
            action = "conflict"
            M.add(plan.conflicts, obj, string.format("%s %s already exists on the target with a different definition (schema.existing = \"skip\" keeps only identical objects)\n    %s",
                obj.kind, target_text(obj), ok_source and ok_target and first_difference(planned, present) or tostring(planned) .. " / " .. tostring(present)))
          end
        elseif policy == "drop" then
          obj.drop_existing = true
          action = "dropped and created again"
          local ok, sql = pcall(tobj.def.drop, tctx, tobj)
          if ok and sql then
            plan.drops[#plan.drops + 1] = { kind = "drop", key = "drop:" .. obj.key, sql = sql, object = obj,
              rank = tobj.def.rank or 500, phase_rank = tobj.def.phase == "post" and 0 or 1 }
          end
        else
          action = "conflict"
          M.add(plan.conflicts, obj)
        end
        M.add(plan.existing, obj, action)
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
