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
local M = {}

local function quote(s) return '"' .. tostring(s):gsub('"', '""') .. '"' end

local function qualified(tbl) return quote(tbl.source.schema) .. "." .. quote(tbl.source.name) end

-- The foreign keys between two different selected tables, by child: { {parent=, columns=,
-- ref_columns=, name=} }.
local function edges_of(plan)
  local by_oid = {}
  for _, t in ipairs(plan.tables) do by_oid[t.oid] = t end
  local edges = {}
  for _, obj in ipairs(plan.objects) do
    local row = obj.row
    if obj.kind == "constraint" and row and row.type == "f" and row.columns and row.ref_columns
      and #row.columns == #row.ref_columns then
      local child, parent = by_oid[row.table_oid], by_oid[row.referenced_oid]
      if child and parent and child ~= parent then
        edges[child] = edges[child] or {}
        table.insert(edges[child], { parent = parent, columns = row.columns, ref_columns = row.ref_columns,
                                     name = row.name })
      end
    end
  end
  return edges
end

local function condition(child, e, parent_filter)
  local nulls, match = {}, {}
  local c, p = qualified(child), qualified(e.parent)
  for i, col in ipairs(e.columns) do
    nulls[i] = c .. "." .. quote(col) .. " IS NULL"
    match[i] = p .. "." .. quote(e.ref_columns[i]) .. " = " .. c .. "." .. quote(col)
  end
  return string.format("(%s OR EXISTS (SELECT FROM ONLY %s WHERE %s AND (%s)))", table.concat(nulls, " OR "), p,
    table.concat(match, " AND "), parent_filter)
end

-- Derive the filters (in place: tbl.row_filter, tbl.user_row_filter, tbl.derived_from).
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
    local conds, from = {}, {}
    for _, e in ipairs(edges[t] or {}) do
      local pf = visit(e.parent, path)
      if pf then
        conds[#conds + 1] = condition(t, e, pf)
        from[#from + 1] = e.parent.key
      end
    end
    path[#path] = nil
    state[t] = "done"
    if #conds > 0 then
      t.user_row_filter = t.row_filter
      if t.row_filter then table.insert(conds, 1, "(" .. t.row_filter .. ")") end
      t.row_filter = table.concat(conds, " AND ")
      t.derived_from = from
    end
    effective[t] = t.row_filter
    return t.row_filter
  end
  for _, t in ipairs(plan.tables) do visit(t, {}) end
  return errors
end

return M
