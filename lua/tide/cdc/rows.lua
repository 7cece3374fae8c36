-- tide.cdc.rows — on.row for streamed changes (docs/select-and-rename.md): the new row of an
-- insert or update goes through the table's function as the full load's rows do
-- (engine/pg/copy_rows.c), with the same checks.
local failure = require "tide.failure"

local M = {}

-- on.row over a streamed insert's or update's new row, as the full load applies it to copied
-- rows (engine/pg/copy_rows.c): the function sees the selected columns (an update's unchanged
-- out-of-line values are absent), may edit them, and keeps (true) or drops (false) the row.
-- Returns whether the row is kept; raises on what the full load would refuse too.
function M.transform_change(tf, ev)
  local function refuse(fmt, ...)
    failure.raise("failed", string.format("on.row for %s at LSN %s: " .. fmt, ev.source, ev.lsn, ...))
  end
  local view, before = {}, {}
  for k, v in pairs(ev.new) do
    if tf.columns[k] then view[k], before[k] = v, v end
  end
  local ok, res, extra = pcall(tf.fn, view)
  if not ok then refuse("failed: %s", tostring(res)) end
  if extra ~= nil then
    refuse("returned a second value: routing rows to another table is not supported by on.row yet (on.change " ..
      "can route streamed changes)")
  end
  if res == false then return false end
  local row = view
  if type(res) == "table" then row = res elseif res ~= nil and res ~= true then
    refuse("returned a %s: return the row (a table), true or nothing to keep it, false to drop it", type(res))
  end
  for k in pairs(before) do
    if row[k] == nil then refuse("column %s has no value (nil); set tide.null for NULL", k) end
  end
  for k, v in pairs(row) do
    if not tf.columns[k] then refuse("set %s, which is not a column of the table", tostring(k)) end
    ev.new[k] = v
  end
  for _, k in ipairs(tf.key or {}) do
    if before[k] ~= nil and tostring(row[k]) ~= tostring(before[k]) then
      refuse("changed key column %s: keys stay as the source has them (streamed updates and deletes find their " ..
        "rows by them)", k)
    end
  end
  return true
end

return M
