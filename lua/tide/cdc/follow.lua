-- tide.cdc.follow — select.rows_follow = "foreign_keys" while streaming (docs/select-and-rename.md).
--
-- The full load copies a table that follows a filtered parent with a derived filter that reads
-- the parent on the source (tide.plan.follow). The stream cannot read the source at a change's
-- position, but the target holds exactly the parent rows the filter keeps, as of the changes
-- applied so far. So, for every table that follows or is followed (its filter applied by pgtide,
-- engine/cdc/apply_filter.c):
--   * a following table's change is kept when its own filter holds and, per foreign key to a
--     filtered parent, the reference is NULL or the parent row is on the target
--     (stream_filter: the filter the target evaluates with the change's values);
--   * a followed row that leaves its filter (an update) is deleted with every row that followed
--     it, down the chain, in the same statement (cascade: CTEs after the delete);
--   * a followed row that enters its filter (an update the target turned into an insert) brings
--     the rows that follow it: before the group commits, they are read from the source and
--     upserted in the same target transaction (handle; engine/cdc/apply_follow.c). The source
--     is read as it is now, ahead of the stream's position: what changes after that position
--     arrives later in the stream and is applied over it (inserts of those tables are upserts),
--     so the target converges on the source as the stream catches up.
-- Deletes of followed rows need nothing: the source's own foreign key made it delete (or
-- cascade to) the rows that referenced them first, and those deletes are in the stream.
local json = require "tide.json"
local log = require "tide.log"
local rows_mod = require "tide.cdc.rows"
local null = require("tide.core").null

local M = {}

local quote = require("tide.sqlident").quote_always

local function source_qualified(tbl) return quote(tbl.source.schema) .. "." .. quote(tbl.source.name) end

local function target_qualified(tbl) return quote(tbl.target.schema) .. "." .. quote(tbl.target.name) end

-- The target's name of a source column of tbl (select.columns renames).
local function target_column(tbl, name)
  for _, c in ipairs(tbl.columns or {}) do
    if c.name == name then return c.target or c.name end
  end
  return name
end

-- What a later phase would refuse, said by the plan (before anything is written).
function M.refusals(plan)
  local out = {}
  for _, tbl in ipairs(plan.tables) do
    if tbl.follows or tbl.followed_by then
      local role = tbl.follows and ("follows the filter of " .. table.concat(tbl.derived_from, ", "))
        or "has tables that follow its filter"
      local partitioned
      for _, e in ipairs(tbl.follows or {}) do if e.parent.leaves then partitioned = e.parent.key end end
      if partitioned then
        out[#out + 1] = { message = string.format("select.rows_follow: %s follows the filter of the partitioned " ..
          "table %s: the change stream cannot follow foreign keys to partitioned tables yet; migrate with " ..
          "{ \"schema\", \"full\" }, or give %s a filter of its own (select.rows) and leave rows_follow out",
          tbl.key, partitioned, tbl.key) }
      elseif tbl.routes or tbl.route_sources then
        out[#out + 1] = { message = string.format("select.rows_follow: %s %s, and %s rows (on.route): the change " ..
          "stream cannot follow a filter into routed rows yet; migrate with { \"schema\", \"full\" }, or leave " ..
          "on.route or rows_follow out for it", tbl.key, role, tbl.routes and "routes" or "receives routed") }
      elseif tbl.parent or tbl.root then
        out[#out + 1] = { message = string.format("select.rows_follow: %s %s, and is a partition: the change " ..
          "stream cannot follow foreign keys of partitions yet; migrate with { \"schema\", \"full\" }, or give the " ..
          "tables filters of their own (select.rows) and leave rows_follow out", tbl.key, role) }
      elseif not tbl.key_columns then
        out[#out + 1] = { message = string.format("select.rows_follow: %s %s, and has no primary key or replica " ..
          "identity index: the stream finds its rows by key to add or remove them as their parents come and go; " ..
          "give it a primary key, or leave rows_follow out", tbl.key, role) }
      elseif tbl.unlogged then
        out[#out + 1] = { message = string.format("select.rows_follow: %s %s, and is unlogged (its changes are " ..
          "not streamed): leave it out of the selection, or leave rows_follow out", tbl.key, role) }
      end
    end
  end
  return out
end

-- The filter the target evaluates for a change of a following table, in the names of
-- engine/cdc/apply_filter.c (the change's row is a CTE named after the source table, with the
-- source's column names); and the columns it reads.
function M.stream_filter(tbl, known)
  local conds, columns, seen = {}, {}, {}
  local function uses(c) if not seen[c] then seen[c] = true; columns[#columns + 1] = c end end
  if tbl.user_row_filter then
    conds[1] = "(" .. tbl.user_row_filter .. ")"
    for _, c in ipairs(require("tide.cdc.objects").filter_columns(tbl.user_row_filter, known)) do uses(c) end
  end
  local row = quote(tbl.source.name)
  for _, e in ipairs(tbl.follows) do
    local nulls, match = {}, {}
    for i, col in ipairs(e.columns) do
      uses(col)
      nulls[i] = row .. "." .. quote(col) .. " IS NULL"
      match[i] = "pgtide_p." .. quote(target_column(e.parent, e.ref_columns[i])) .. " = " .. row .. "." .. quote(col)
    end
    conds[#conds + 1] = string.format("(%s OR EXISTS (SELECT FROM ONLY %s pgtide_p WHERE %s))",
      table.concat(nulls, " OR "), target_qualified(e.parent), table.concat(match, " AND "))
  end
  return table.concat(conds, " AND "), columns
end

-- The CTEs that delete, on the target, the rows that followed the rows of tbl that an update
-- took out of its filter (pgtide_out, which holds the target's deleted rows), down the chain.
function M.cascade(tbl)
  local parts, n = {}, 0
  local function walk(parent, from, depth)
    if depth > 64 then error("select.rows_follow: the foreign keys from " .. parent.key .. " go more than 64 deep") end
    for _, e in ipairs(parent.followed_by or {}) do
      n = n + 1
      local name = "pgtide_f" .. n
      local mine, theirs = {}, {}
      for i, col in ipairs(e.columns) do
        mine[i] = "pgtide_x." .. quote(target_column(e.child, col))
        theirs[i] = "pgtide_y." .. quote(target_column(parent, e.ref_columns[i]))
      end
      parts[#parts + 1] = string.format(", %s AS (DELETE FROM ONLY %s pgtide_x WHERE (%s) IN (SELECT %s FROM %s " ..
        "pgtide_y) RETURNING pgtide_x.*)", name, target_qualified(e.child), table.concat(mine, ", "),
        table.concat(theirs, ", "), from)
      walk(e.child, name, depth + 1)
    end
  end
  walk(tbl, "pgtide_out", 0)
  return table.concat(parts)
end

------------------------------------------------------------------------ rows moving in

-- The condition, on the source, that a row of `tbl` descends from the row of `root` whose key
-- is $1.. (`key_sql`), through the foreign keys followed from root down to tbl.
local function rooted(tbl, root, key_sql, memo)
  if tbl == root then return key_sql end
  if memo[tbl] ~= nil then return memo[tbl] end
  memo[tbl] = false -- no cycles (tide.plan.follow refuses them), but never loop
  local alts = {}
  for _, e in ipairs(tbl.follows or {}) do
    local up = rooted(e.parent, root, key_sql, memo)
    if up then
      local match = {}
      local c, p = source_qualified(tbl), source_qualified(e.parent)
      for i, col in ipairs(e.columns) do match[i] = p .. "." .. quote(e.ref_columns[i]) .. " = " .. c .. "." .. quote(col) end
      alts[#alts + 1] = string.format("EXISTS (SELECT FROM ONLY %s WHERE %s AND %s)", p, table.concat(match, " AND "), up)
    end
  end
  memo[tbl] = #alts > 0 and ("(" .. table.concat(alts, " OR ") .. ")") or false
  return memo[tbl]
end

-- Every table below root (followed_by, transitively), parents before children.
local function descendants(root)
  local out, seen = {}, { [root] = true }
  local queue, head = { root }, 1
  while queue[head] do
    local t = queue[head]
    head = head + 1
    for _, e in ipairs(t.followed_by or {}) do
      if not seen[e.child] then
        seen[e.child] = true
        out[#out + 1] = e.child
        queue[#queue + 1] = e.child
      end
    end
  end
  return out
end

local function array_literal(values)
  local parts = {}
  for i, v in ipairs(values) do
    if v == null then parts[i] = "NULL" else parts[i] = '"' .. tostring(v):gsub('[\\"]', "\\%0") .. '"' end
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

-- The target's column types of tbl, read once per stream (a connection of its own: the apply's
-- is busy with the group).
local function target_types(st, tbl)
  st.follow_types = st.follow_types or {}
  if not st.follow_types[tbl] then
    if not st.follow_conn then
      st.follow_conn = require("tide.connect").open(st.task, "target",
        { application_name = "pgtide:" .. st.task.name .. ":follow" })
    end
    st.follow_types[tbl] = require("tide.cdc.tables").column_types(st.follow_conn, target_qualified(tbl), false)
  end
  return st.follow_types[tbl]
end

-- The upsert of `rows` (source rows, text values) into tbl's target: one statement, one text[]
-- parameter per column — the statement the full load writes routed rows with (tide.full.routes).
local function upsert(st, tbl, rows)
  local types = target_types(st, tbl)
  local params = {}
  for i, c in ipairs(tbl.columns) do
    local values = {}
    for j, r in ipairs(rows) do values[j] = r[c.name] == nil and null or r[c.name] end
    params[i] = array_literal(values)
  end
  local sql = require("tide.full.routes").insert_sql(st.follow_conn, tbl, tbl, target_qualified(tbl),
    { types = types, upsert = true })
  return sql, params
end

-- The event: rows of followed tables moved into their filter in the open group. Reads what
-- follows them from the source and answers with the upserts (s:reply).
function M.handle(st, s, ev)
  local by_source = st.follow_by_source
  if not by_source then
    by_source = {}
    for _, tbl in ipairs(st.plan.tables or {}) do
      if tbl.followed_by then by_source[tbl.source.schema .. "\0" .. tbl.source.name] = tbl end
    end
    st.follow_by_source = by_source
  end
  local statements, copied = {}, 0
  for _, moved in ipairs(ev.rows) do
    local root = by_source[moved.schema .. "\0" .. moved.name]
    local key = json.decode(moved.key)
    if not root or type(key) ~= "table" then
      error(string.format("select.rows_follow: a row of %s.%s moved into its filter, but the task does not follow it",
        moved.schema, moved.name))
    end
    local match, params = {}, {}
    for i, k in ipairs(root.key_columns) do
      match[i] = source_qualified(root) .. "." .. quote(k) .. " = $" .. i
      params[i] = key[k]
    end
    local key_sql = "(" .. table.concat(match, " AND ") .. ")"
    local memo = {}
    for _, tbl in ipairs(descendants(root)) do
      local cond = rooted(tbl, root, key_sql, memo)
      local cols = {}
      for i, c in ipairs(tbl.columns) do cols[i] = quote(c.name) end
      local sql = string.format("SELECT %s FROM ONLY %s WHERE %s AND (%s)", table.concat(cols, ", "),
        source_qualified(tbl), cond, tbl.row_filter)
      local rows = assert(st.control:query(sql, table.unpack(params)))
      local tf = st.transforms and st.transforms[tbl.source.schema .. "." .. tbl.source.name]
      if tf then
        local kept = {}
        for _, r in ipairs(rows) do
          local change = { new = r, source = tbl.key, lsn = "(rows following " .. root.key .. ")" }
          if rows_mod.transform_change(tf, change) then kept[#kept + 1] = change.new end
        end
        rows = kept
      end
      if #rows > 0 then
        local usql, uparams = upsert(st, tbl, rows)
        statements[#statements + 1] = { sql = usql, params = uparams, context = string.format(
          "copying %d row(s) of %s that follow the row of %s (key %s) which moved into its filter (select.rows_follow)",
          #rows, tbl.key, root.key, moved.key) }
        copied = copied + #rows
      end
    end
  end
  st.follow_copied = (st.follow_copied or 0) + copied
  if copied > 0 then
    log.write("info", "rows_follow", string.format("%d row(s) moved into a followed filter: %d following row(s) " ..
      "copied from the source", #ev.rows, copied), { moved = #ev.rows, copied = copied })
  end
  s:reply({ statements = statements })
end

-- The first table a DDL message (tide.cdc.ddl) changes that follows or is followed, as
-- "schema.table"; nil when none does (GRANT and REVOKE change nothing here).
function M.touched(plan, msg)
  if not plan or type(msg.tables) ~= "table" then return nil end
  local followed = {}
  for _, tbl in ipairs(plan.tables or {}) do
    if tbl.follows or tbl.followed_by then followed[tbl.source.schema .. "." .. tbl.source.name] = true end
  end
  if not next(followed) then return nil end
  local changed = {}
  for _, c in ipairs(msg.commands or {}) do
    if c.grant ~= true and c.tag ~= "COMMENT" and c.table then changed[tostring(c.table)] = true end
  end
  for oid, desc in pairs(msg.tables) do
    local name = type(desc) == "table" and desc.schema and desc.name and (desc.schema .. "." .. desc.name)
    if name and followed[name] and changed[tostring(oid)] then return name end
  end
  return nil
end

function M.close(st)
  if st.follow_conn then st.follow_conn:close(); st.follow_conn = nil end
  st.follow_types = nil
end

return M
