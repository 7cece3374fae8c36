-- tide.plan.database_wide — selecting objects that live in no schema: foreign-data wrappers,
-- servers, user mappings, event triggers, default privileges, database settings (kinds with
-- `global = true`; obj.schema is nil).
--
-- select patterns name schema.name, so they never name these objects. What decides:
--   * select.kinds and select.where (which receive schema = nil), as for every object;
--   * a kind with follows(row) → class, oid is selected with the object it follows when that
--     one is in the catalog (a user mapping follows its server, an event trigger its
--     function);
--   * the others, and those whose followed object is not in the catalog (an event trigger on
--     an extension's function), are selected when select.include is not given; with
--     select.include, a `pulled` kind (wrappers, servers) is selected when a selected object
--     needs it (a foreign table its server, a server its wrapper).
local breathe = require("tide.wait").breathe
local id_of = require("tide.plan.ids").id

local M = {}

-- M.select(model, selector, list, skipped, task): decides obj.selected / obj.reason for `list`,
-- the database-wide objects in model order; left-out ones go to `skipped`. A kind with
-- wanted(task) is left out when the playbook does not turn it on.
function M.select(model, selector, list, skipped, task)
  if #list == 0 then return end
  -- The kinds and where rules alone: include patterns never match an object of no schema.
  local allowed = {}
  local includes = selector.includes
  selector.includes = nil
  local ok, err = pcall(function()
    for _, obj in ipairs(list) do
      local keep, reason = selector:object(obj.kind, nil, obj.name)
      -- A kind the playbook turns on (def.wanted: database settings).
      if keep == true and obj.def.wanted then keep, reason = obj.def.wanted(task or {}) end
      allowed[obj] = keep == true
      if not allowed[obj] then obj.reason = reason end
    end
  end)
  selector.includes = includes
  if not ok then error(err, 0) end

  -- Who needs whom, among the objects of the model (pg_depend).
  local needed_by = {}
  for d in require("tide.catalog.rows").each_depend(model.cat.depends) do
    breathe()
    local ref = model.exact[id_of(d.refclass, d.refobjid)]
    local dep = model.identity[id_of(d.class, d.objid)]
    if ref and ref.def.global and dep and dep ~= ref then
      needed_by[ref] = needed_by[ref] or {}
      table.insert(needed_by[ref], dep)
    end
  end
  local function followed(obj)
    if not obj.def.follows then return nil end
    local class, oid = obj.def.follows(obj.row)
    return oid and model.exact[id_of(class, oid)] or nil
  end
  local function wanted(obj)
    local leader = followed(obj)
    if leader then return leader.selected == true end
    if includes == nil then return true end
    if obj.def.pulled then
      for _, dep in ipairs(needed_by[obj] or {}) do
        if dep.selected then return true end
      end
    end
    return false
  end
  for _, obj in ipairs(list) do obj.selected = false end
  local changed = true
  while changed do
    changed = false
    for _, obj in ipairs(list) do
      if allowed[obj] and not obj.selected and wanted(obj) then
        obj.selected, changed = true, true
      end
    end
  end
  for _, obj in ipairs(list) do
    if not obj.selected then
      if allowed[obj] then
        local leader = followed(obj)
        if leader then
          obj.reason = "its " .. require("tide.kinds").describe(leader) .. " is left out"
        elseif obj.def.pulled then
          obj.reason = "it lives in no schema, so select.include patterns do not name it, and no selected object needs it"
        else
          obj.reason = "it lives in no schema: with select.include it is left out (select.kinds.exclude leaves it out in any case)"
        end
      end
      skipped[#skipped + 1] = { kind = obj.kind, name = obj.name, key = obj.key, reason = obj.reason }
    end
  end
end

return M
