-- tide.cdc.rows — on.row for streamed changes (docs/select-and-rename.md): the new row of an
-- insert or update goes through the table's function as the full load's rows do
-- (engine/pg/copy_rows.c), with the same checks; a table whose function routes rows to other
-- tables (on.route) has its changes applied by engine/cdc/apply_route.c.
local failure = require "tide.failure"

local M = {}

-- on.row over a streamed insert's or update's new row, as the full load applies it to copied
-- rows (engine/pg/copy_rows.c): the function sees the selected columns (an update's unchanged
-- out-of-line values are absent), may edit them, and keeps (true) or drops (false) the row.
-- Returns whether the row is kept, and where: 0 the table itself, k its k-th route (on.route);
-- raises on what the full load would refuse too.
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
  local dest = 0
  if extra ~= nil then
    local label = tf.label or ev.source
    dest = type(extra) == "string" and tf.routes and tf.routes[extra]
    if type(extra) ~= "string" then
      refuse("returned a %s as its second value: give the name of the table to route the row to (\"schema.table\", " ..
        "listed in on.route[%q]), or nothing to keep it in %s", type(extra), label, label)
    elseif not dest then
      refuse("returned %q as the table to route a row to, which on.route[%q] does not list: add it there (a " ..
        "selected table, the source's \"schema.table\"), or return no second value to keep the row in %s", extra,
        label, label)
    end
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
  return true, dest
end

-- A change of a table whose function routes rows (on.route): an insert's or update's new row
-- through the function, then the whole change to engine/cdc/apply_route.c with where the row goes
-- (-1: nowhere); a delete goes from the table and every destination.
function M.route_change(tf, s, ev)
  local dest = 0
  if ev.op ~= "delete" and ev.new then
    local keep, where = M.transform_change(tf, ev)
    dest = keep and where or -1
  end
  if ev.op == "insert" and dest < 0 then s:reply(false) return end
  s:reply({ new = ev.new, old = ev.old, route = dest })
end

-- on.row over a streamed change, before any on.change hook of the table: true when it answered
-- the change (s:reply); false leaves the change, with its row as the function edited it, to the
-- caller.
function M.handle(tf, s, ev)
  if tf.routed then M.route_change(tf, s, ev) return true end
  if ev.new and (ev.op == "insert" or ev.op == "update") and not M.transform_change(tf, ev) then
    if ev.op == "insert" then s:reply(false) return true end
    ev.op = "delete"   -- the row goes (if the target has it), found by its key
    s:reply(ev)
    return true
  end
  return false
end

return M
