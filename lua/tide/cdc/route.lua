-- tide.cdc.route — on.route in the stream (docs/select-and-rename.md, "Routing rows"): for each
-- table whose on.row function may route rows, one map entry per destination that writes the
-- table's relation into the destination's target table (engine/cdc/apply_route.c): the table's
-- selected columns under the destination's column names (its renames), the table's key, and a
-- filter pgtide applies that keeps every row ("true"), so the destination applies like a filtered
-- table — upserts under the key, deletes that may find nothing.
local objects = require "tide.cdc.objects"
local breathe = require("tide.wait").breathe
local names = require("tide.full.routes").names

local M = {}

local function route_entry(target, e, dst, types_on_target)
  local by_name = {}
  for _, c in ipairs(dst.columns) do by_name[c.name] = c end
  local tname = objects.qname(target, dst.target.schema, dst.target.name)
  local on_target = types_on_target(tname)
  local columns, types = {}, {}
  for _, name in ipairs(e.known) do types[name] = e.known_type and e.known_type[name] end
  for _, c in ipairs(e.columns) do
    local d = by_name[c.source]
    local tcol = d and (d.target or d.name) or c.source   -- the plan checked every column is there
    columns[#columns + 1] = { source = c.source, target_sql = target:quote_ident(tcol),
                              identity_always = d and d.identity == "a" or false }
    types[c.source] = on_target[tcol] or types[c.source]
  end
  return { source_schema = e.source_schema, source_name = e.source_name, target_sql = tname,
           display = dst.target.schema .. "." .. dst.target.name, columns = columns, known = e.known, key = e.key,
           filter = "true", known_type = types, filter_columns = {} }
end

-- attach(plan, target, order, entries, transforms, types_on_target): order[i] is the stream's
-- table behind entries[i] (tide.cdc); transforms are on.row's, by "schema.table". Each transform
-- learns the names its function may return as second value (0: the table itself, k: its k-th
-- route) and whether it routes; each routing entry gets its routes.
function M.attach(plan, target, order, entries, transforms, types_on_target)
  local by_key = {}
  for _, tbl in ipairs(plan.tables or {}) do
    breathe()
    by_key[tbl.key] = tbl
  end
  for i, e in ipairs(order) do
    breathe()
    local tf = transforms[e.source_schema .. "." .. e.source_name]
    local tbl = e.plan_table
    if tf and tbl then
      tf.routes, tf.label = names(tbl, by_key), tbl.key
      if tbl.routes then
        local list = {}
        for k, dest in ipairs(tbl.routes) do list[k] = route_entry(target, e, by_key[dest], types_on_target) end
        entries[i].routes, tf.routed = list, true
      end
    end
  end
end

return M
