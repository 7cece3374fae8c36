-- tide.plan.routes — on.route in the plan: which selected tables each on.row function may send
-- rows to (docs/select-and-rename.md, "Routing rows: on.route"), and what a later phase would
-- refuse, said before anything is written, each with its fix:
--   * a key that names no selected table, or a table without an on.row function;
--   * a destination that is not a selected table, or is the table itself;
--   * a destination without every selected column of the routing table (by source name), or
--     whose unique key (the key the stream finds rows by) is not the routing table's;
--   * under incremental migration, a keyless or unlogged destination (the stream could not
--     write or find routed rows);
--   * a partitioned table or a partition on either side (not supported);
--   * routes in a circle (the full load copies a routing table after its destinations);
--   * an on.change hook on a routing table (the stream applies routed changes itself).
-- Sets tbl.routes (destination keys, in the order given) on each routing table and
-- tbl.route_sources (routing table keys) on each destination.
local breathe = require("tide.wait").breathe

local M = {}

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  return keys
end

local function same_set(a, b)
  if (a == nil) ~= (b == nil) then return false end
  if a == nil then return true end
  if #a ~= #b then return false end
  local seen = {}
  for _, x in ipairs(a) do seen[x] = true end
  for _, x in ipairs(b) do if not seen[x] then return false end end
  return true
end

local function list(cols) return cols and table.concat(cols, ", ") or "none" end

-- attach(plan, task): adds plan errors; sets tbl.routes and tbl.route_sources.
function M.attach(plan, task)
  local routes = task.on and task.on.route
  if not routes then return end
  local errors = plan.errors
  local function err(fmt, ...) errors[#errors + 1] = { message = string.format(fmt, ...) } end
  local by_name, partitioned = {}, {}
  for _, tbl in ipairs(plan.tables) do
    breathe()
    by_name[tbl.source.schema .. "." .. tbl.source.name] = tbl
    by_name[tbl.key] = tbl
    if tbl.parent then partitioned[tbl.parent] = true end
    if tbl.root then partitioned[tbl.root.schema .. "." .. tbl.root.name] = true end
  end
  local incremental = task.phases and task.phases.incremental
  local keyless = require("tide.cdc.objects").keyless
  local hooks = task.on.change or {}
  local function not_partitioned(what, name, tbl)
    if partitioned[name] or (tbl and tbl.parent) then
      err("on.route[%q]: %s is %s: routing rows from or to partitioned tables is not supported; route between " ..
        "plain tables", what, name, tbl and tbl.parent and ("a partition of " .. tbl.parent) or "partitioned")
      return false
    end
    return true
  end
  local edges = {}
  for _, key in ipairs(sorted_keys(routes)) do
    local src = by_name[key]
    if not not_partitioned(key, key, src) then
      -- said above
    elseif not src then
      err("on.route[%q] names no selected table (give it as \"schema.table\", the source's names)", key)
    elseif not src.transform then
      err("on.route[%q]: %s has no on.row function to route its rows: add on.row[%q] = function(r) ... " ..
        "return true, \"schema.table\" end, or leave %s out of on.route", key, src.key, key, key)
    elseif hooks[key] or hooks[src.key] then
      err("on.route[%q]: %s also has an on.change hook; the stream applies routed changes itself, so the two " ..
        "cannot be combined: do the hook's work in the on.row function", key, src.key)
    else
      local dests, seen = {}, {}
      for _, name in ipairs(routes[key]) do
        local dst = by_name[name]
        if not_partitioned(key, name, dst) and not seen[name] then
          seen[name] = true
          if not dst then
            err("on.route[%q]: %q is not a selected table: select it (routed rows are written to its target " ..
              "table), or take it out of the list (\"schema.table\", the source's names)", key, name)
          elseif dst == src then
            err("on.route[%q] lists %s itself: a row the function returns without a second value stays in its " ..
              "own table; take it out of the list", key, name)
          else
            local have, missing = {}, {}
            for _, c in ipairs(dst.columns) do have[c.name] = true end
            for _, c in ipairs(src.columns) do if not have[c.name] then missing[#missing + 1] = c.name end end
            if #missing > 0 then
              err("on.route[%q]: %s has no column %s of %s (a routed row carries every selected column of its " ..
                "table, by source name): add the column(s) to %s, or leave them out of %s with select.columns",
                key, dst.key, table.concat(missing, ", "), src.key, dst.key, src.key)
            elseif not same_set(src.key_columns, dst.key_columns) then
              err("on.route[%q]: the unique key of %s (%s) is not that of %s (%s): routed rows are found by " ..
                "their table's key, so %s needs a primary key (or replica identity index) on the same columns",
                key, dst.key, list(dst.key_columns), src.key, list(src.key_columns), dst.key)
            elseif incremental and (dst.unlogged or keyless(dst)) then
              err("on.route[%q]: %s is %s, so the stream could not write or find the rows routed to it: give it " ..
                "a primary key (and make it logged), or migrate with { \"schema\", \"full\" }", key, dst.key,
                dst.unlogged and "unlogged" or "without a replica identity")
            else
              dests[#dests + 1] = dst
            end
          end
        end
      end
      if #dests > 0 then
        src.routes = {}
        for i, dst in ipairs(dests) do
          src.routes[i] = dst.key
          dst.route_sources = dst.route_sources or {}
          dst.route_sources[#dst.route_sources + 1] = src.key
        end
        edges[src.key] = src.routes
      end
    end
  end
  -- The full load copies a routing table once its destinations are copied: no circles.
  local state = {}
  local function visit(k, path)
    if state[k] == "done" then return end
    if state[k] == "on_path" then
      local from
      for i, p in ipairs(path) do if p == k then from = i end end
      local circle = { table.unpack(path, from) }
      circle[#circle + 1] = k
      err("on.route: %s route rows in a circle; the full load copies a routing table after the tables it " ..
        "routes to, so one of these routes must go", table.concat(circle, " → "))
      return true
    end
    state[k] = "on_path"
    path[#path + 1] = k
    for _, d in ipairs(edges[k] or {}) do
      if visit(d, path) then return true end
    end
    path[#path] = nil
    state[k] = "done"
  end
  for _, k in ipairs(sorted_keys(edges)) do
    if visit(k, {}) then break end
  end
end

return M
