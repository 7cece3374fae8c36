-- tide.plan.transforms — on.row in the plan: which tables have a function (a partitioned
-- table's applies to its partitions), and what a later phase would refuse, said before anything
-- is written: an on.row key that names no selected table, a table the stream could not find
-- rows of (no unique key, under incremental); and a warning for tables other selected tables
-- reference (rows the function drops would leave theirs pointing nowhere).
local breathe = require("tide.wait").breathe

local M = {}

-- attach(plan, task): sets tbl.transform and tbl.transform_key; adds plan errors and warnings.
function M.attach(plan, task)
  local transforms = task.on.row
  local used = {}
  local function find(schema, name, key)
    for _, k in ipairs({ schema .. "." .. name, key }) do
      if k and transforms[k] then used[k] = true; return transforms[k], k end
    end
  end
  for _, tbl in ipairs(plan.tables) do
    breathe()
    local fn, k = find(tbl.source.schema, tbl.source.name, tbl.key)
    if not fn and tbl.root then fn, k = find(tbl.root.schema, tbl.root.name, tbl.parent) end
    tbl.transform, tbl.transform_key = fn, k
  end
  -- What a later phase would refuse, said now: a table the stream must find rows of by key,
  -- and rows of other tables that may point to a row the function drops.
  local by_oid, referenced = {}, {}
  for _, tbl in ipairs(plan.tables) do breathe(); by_oid[tbl.oid] = tbl end
  for _, obj in ipairs(plan.objects) do
    breathe()
    local row = obj.row
    if obj.kind == "constraint" and row and row.type == "f" and by_oid[row.table_oid] and row.table_oid ~= row.referenced_oid then
      referenced[row.referenced_oid] = referenced[row.referenced_oid] or {}
      table.insert(referenced[row.referenced_oid], by_oid[row.table_oid].key)
    end
  end
  local keyless = require("tide.cdc.objects").keyless
  for _, tbl in ipairs(plan.tables) do
    breathe()
    if tbl.transform and task.phases and task.phases.incremental and not tbl.key_columns and not keyless(tbl) then
      plan.errors[#plan.errors + 1] = { message = string.format("on.row[%q]: %s has no unique key, so the stream " ..
        "cannot find the rows whose updates the function keeps or drops; give it a primary key, or leave " ..
        "on.row out for it", tbl.transform_key, tbl.key) }
    end
    if tbl.transform and referenced[tbl.oid] then
      plan.warnings[#plan.warnings + 1] = { kind = "table", object = "table:" .. tbl.key, message = string.format(
        "%s: rows its on.row function drops may leave rows of %s pointing nowhere, and the foreign key added " ..
        "after the copy would then fail: drop those rows too (their own on.row, or select.rows), or keep " ..
        "every row", tbl.key, table.concat(referenced[tbl.oid], ", ")) }
    end
  end
  for k in pairs(transforms) do
    if not used[k] then
      plan.errors[#plan.errors + 1] = { message = string.format("on.row[%q] names no selected table (give it as " ..
        "\"schema.table\", the source's names)", k) }
    end
  end
end

return M
