-- tide.plan.follow — select.rows_follow = "foreign_keys": a table that references a filtered
-- table (through a foreign key between two selected tables) keeps only the rows whose parent
-- row is kept, so the subset is whole and every foreign key can be added after the copy.
--
-- The derived filter of a child is, per foreign key to a parent that keeps a subset:
--   (fk IS NULL OR EXISTS (SELECT FROM ONLY parent WHERE parent.key = child.fk AND (parent's filter)))
-- ANDed with the child's own filter. Parents come first, so a grandchild follows its parent's
-- derived filter too. Column references are qualified by schema and table (never an alias), so
-- the filter means the same in the full load's COPY, the prechecks and verify. Self-references
-- are not followed (precheck foreign_key_filtered counts what they leave out); a cycle of
-- foreign keys between filtered tables is an error of the plan.
local breathe = require("tide.wait").breathe

local M = {}

local function objects_key(obj) return require("tide.plan.objects").table_key(obj) end

local quote = require("tide.sqlident").quote_always

local function qualified(tbl) return quote(tbl.source.schema) .. "." .. quote(tbl.source.name) end

-- The foreign keys between two different selected tables, by child: { {parent=, columns=,
-- ref_columns=, name=} }.
local function edges_of(plan)
  local by_oid = {}
  for _, t in ipairs(plan.tables) do breathe(); by_oid[t.oid] = t end
  -- A partitioned table holds no rows: a foreign key to it reads its leaf partitions, each with
  -- its own filter. It stands in the graph as { leaves = {...} }.
  for _, t in ipairs(plan.tables) do
    breathe()
    local obj = plan.by_key and plan.by_key["table:" .. t.key]
    local up = obj and obj.parents and obj.parents[1]
    while up and up.row and up.row.relkind == "p" do
      local node = by_oid[up.oid]
      if not node then
        node = { oid = up.oid, key = objects_key(up), leaves = {} }
        by_oid[up.oid] = node
      end
      node.leaves[#node.leaves + 1] = t
      up = up.parents and up.parents[1]
    end
  end
  local edges = {}
  -- A foreign key to a partitioned table has a clone per partition of that table (same
  -- referencing table, referencing the partition; parent_oid: the original). Those are not
  -- edges of their own: a row references the partitioned table as a whole.
  local fk_by_oid = {}
  for _, obj in ipairs(plan.objects) do
    breathe()
    if obj.kind == "constraint" and obj.row and obj.row.type == "f" then fk_by_oid[obj.row.oid] = obj.row end
  end
  for _, obj in ipairs(plan.objects) do
    breathe()
    local row = obj.row
    local up = row and row.parent_oid and fk_by_oid[row.parent_oid]
    local clone = up and up.table_oid == row.table_oid
    if obj.kind == "constraint" and row and row.type == "f" and row.columns and row.ref_columns
      and #row.columns == #row.ref_columns and not clone then
      local child, parent = by_oid[row.table_oid], by_oid[row.referenced_oid]
      -- a foreign key of a partitioned table is its leaves' (their columns have its names)
      for _, c in ipairs(child and (child.leaves or { child }) or {}) do
        if parent and c ~= parent and not (parent.leaves and child == parent) then
          edges[c] = edges[c] or {}
          table.insert(edges[c], { parent = parent, columns = row.columns, ref_columns = row.ref_columns,
                                   name = row.name })
        end
      end
    end
  end
  return edges
end

local function exists(child, e, parent, parent_filter)
  local match = {}
  local c, p = qualified(child), qualified(parent)
  for i, col in ipairs(e.columns) do
    match[i] = p .. "." .. quote(e.ref_columns[i]) .. " = " .. c .. "." .. quote(col)
  end
  return string.format("EXISTS (SELECT FROM ONLY %s WHERE %s AND (%s))", p, table.concat(match, " AND "), parent_filter)
end

-- parent_filter: the parent's filter, or for a partitioned parent the list of its leaves'
-- ({ {leaf, filter or nil}, ... }): the referenced row is in one of them.
local function condition(child, e, parent_filter)
  local nulls = {}
  for i, col in ipairs(e.columns) do nulls[i] = qualified(child) .. "." .. quote(col) .. " IS NULL" end
  local found
  if e.parent.leaves then
    local alts = {}
    for i, lf in ipairs(parent_filter) do alts[i] = exists(child, e, lf[1], lf[2] or "true") end
    found = "(" .. table.concat(alts, " OR ") .. ")"
  else
    found = exists(child, e, e.parent, parent_filter)
  end
  return string.format("(%s OR %s)", table.concat(nulls, " OR "), found)
end

-- Derive the filters (in place: tbl.row_filter, tbl.user_row_filter, tbl.derived_from; and the
-- edges the stream follows: tbl.follows = { {parent=, columns=, ref_columns=} } and, on each
-- parent, followed_by = { {child=, columns=, ref_columns=} }).
-- Returns a list of errors ({ message = }) — empty when all went well.
function M.derive(plan)
  local edges = edges_of(plan)
  local state, errors = {}, {}
  local effective = {}
  -- Depth-first over parents: a table's filter is known once its parents' are.
  local function visit(t, path)
    if state[t] == "done" then return effective[t] end
    if state[t] == "busy" then
      local names = {}
      for i = #path, 1, -1 do
        names[#names + 1] = path[i].key
        if path[i] == t then break end
      end
      errors[#errors + 1] = { message = string.format("select.rows_follow: the foreign keys of %s form a cycle, " ..
        "so the filters cannot follow them; give the tables of the cycle their own filters (select.rows) and leave " ..
        "rows_follow out", table.concat(names, " → ")) }
      return t.row_filter
    end
    state[t] = "busy"
    path[#path + 1] = t
    local conds, from, follows = {}, {}, {}
    for _, e in ipairs(edges[t] or {}) do
      local pf
      if e.parent.leaves then
        -- a partitioned parent: followed when one of its leaves keeps a subset
        local leaves, any = {}, false
        for i, leaf in ipairs(e.parent.leaves) do
          local f = visit(leaf, path)
          leaves[i] = { leaf, f }
          any = any or f ~= nil
        end
        pf = any and leaves or nil
      else
        pf = visit(e.parent, path)
      end
      if pf then
        conds[#conds + 1] = condition(t, e, pf)
        from[#from + 1] = e.parent.key
        -- the stream follows the same edges (tide.cdc.follow)
        follows[#follows + 1] = e
        e.parent.followed_by = e.parent.followed_by or {}
        table.insert(e.parent.followed_by, { child = t, columns = e.columns, ref_columns = e.ref_columns,
                                             name = e.name })
      end
    end
    path[#path] = nil
    state[t] = "done"
    if #conds > 0 then
      t.user_row_filter = t.row_filter
      if t.row_filter then table.insert(conds, 1, "(" .. t.row_filter .. ")") end
      t.row_filter = table.concat(conds, " AND ")
      t.derived_from = from
      t.follows = follows
    end
    effective[t] = t.row_filter
    return t.row_filter
  end
  for _, t in ipairs(plan.tables) do breathe(); visit(t, {}) end
  return errors
end

-- The foreign keys to or of partitioned tables whose referenced rows a filter may leave out,
-- for the precheck foreign_key_filtered: { { name =, child = leaf table, parent_key =,
-- condition = SQL "the reference is NULL or its row is kept" (over the leaves' filters) } }.
function M.partitioned_references(plan)
  local out = {}
  for child, list in pairs(edges_of(plan)) do
    for _, e in ipairs(list) do
      local leaves = e.parent.leaves
      local pf, any
      if leaves then
        pf = {}
        for i, leaf in ipairs(leaves) do
          pf[i] = { leaf, leaf.row_filter }
          any = any or leaf.row_filter ~= nil
        end
      else
        pf, any = e.parent.row_filter, e.parent.row_filter ~= nil
      end
      if any and (leaves or child.parent) then
        out[#out + 1] = { name = e.name, child = child, parent_key = e.parent.key, condition = condition(child, e, pf) }
      end
    end
  end
  table.sort(out, function(a, b) return a.child.key .. a.name < b.child.key .. b.name end)
  return out
end

return M
