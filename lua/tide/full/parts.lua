-- tide.full.parts — cutting the plan's tables into COPY parts, and the COPY statements of a part.
--
-- A table larger than full.split_larger_than is cut into parts: by ranges of its integer key
-- when it has one, else by ranges of heap blocks (ctid). "auto" (the default) splits at an
-- eighth of the data per job (see M.split_bytes). The first and last ranges are open
-- (no lower / upper bound), so rows outside the bounds seen when cutting — inserted before the
-- snapshot was taken — are still copied by exactly one part. Parts are recorded in the task's
-- state before any copy starts; a resumed run reuses the recorded ranges.
local M = {}

-- "1GB", "500MB", 1048576 → bytes (the playbook validated the form already).
function M.parse_size(v, default)
  if v == nil then v = default end
  return assert(require("tide.units").parse_size(v))
end

local MAX_PARTS = 64

-- Built-in types whose binary form is the same on any two servers of one major version.
-- Anything user-defined (enums, composites, domains) carries OIDs or may differ: text.
local function binary_safe(tbl, task, plan)
  local fmt = task.full.format or "auto"
  if fmt == "text" then return false end
  if fmt == "binary" then return true end
  -- Only for tables this task created: a pre-existing target table may declare other types
  -- (text input converts int to bigint; binary input would reject it).
  if not task.phases.schema then return false end
  if not plan.target_server_version or plan.server_version // 10000 ~= plan.target_server_version // 10000 then
    return false
  end
  for _, c in ipairs(tbl.columns) do
    if not c.type_oid or c.type_oid >= 10000 then return false end
  end
  return #tbl.columns > 0
end

-- Cut one table into part definitions (before any copy; recorded afterwards).
-- A table that is split gets at least one part per job, so all the jobs can work on it at once.
function M.part_count(bytes, split_bytes, jobs)
  if split_bytes <= 0 or bytes <= split_bytes then return 1 end
  return math.min(MAX_PARTS, math.max(jobs or 1, math.ceil(bytes / split_bytes)))
end

local function cut(tbl, conn, split_bytes, id_prefix, jobs)
  local bytes = tbl.bytes or 0
  local n = M.part_count(bytes, split_bytes, jobs)
  local parts = {}
  local function add(kind, from, to)
    parts[#parts + 1] = { range_kind = kind, from = from, to = to }
  end
  if n > 1 and tbl.int_key then
    local sql = string.format("SELECT min(%s)::int8 AS lo, max(%s)::int8 AS hi FROM ONLY %s.%s",
      conn:quote_ident(tbl.int_key), conn:quote_ident(tbl.int_key),
      conn:quote_ident(tbl.source.schema), conn:quote_ident(tbl.source.name))
    local r = assert(conn:query(sql))[1]
    local null = require("tide.core").null
    if r.lo ~= null and r.hi ~= null and r.hi > r.lo then
      local span = r.hi - r.lo + 1
      local prev = nil
      for i = 1, n - 1 do
        local bound = r.lo + (span * i) // n
        if prev == nil or bound > prev then add("key", prev, bound); prev = bound end
      end
      add("key", prev, nil)
    else
      add("whole")
    end
  elseif n > 1 then
    local pages = tbl.pages and tbl.pages > 0 and tbl.pages or math.ceil(bytes / 8192)
    local prev = nil
    for i = 1, n - 1 do
      local bound = (pages * i) // n
      if bound > (prev or 0) then add("ctid", prev, bound); prev = bound end
    end
    add("ctid", prev, nil)
  else
    add("whole")
  end
  for i, p in ipairs(parts) do
    p.id = id_prefix .. (#parts > 1 and ("#" .. i) or "")
    p.no, p.count, p.table = i, #parts, tbl
    p.bytes_estimate = bytes // #parts
  end
  return parts
end

-- M.build(task, plan, conn, recorded) → parts (largest first), table_parts (key → parts).
-- `recorded` are the state's rows for this task: when a table has recorded parts, those are used.
-- The catalog's relpages is 0 until a table is vacuumed or analyzed: read the real sizes of
-- the tables to copy, in one statement (main fork for block ranges, plus TOAST for the
-- progress estimate).
local function refresh_sizes(plan, conn)
  local oids = {}
  for i, tbl in ipairs(plan.tables) do oids[i] = tbl.oid end
  if #oids == 0 then return end
  local rows = assert(conn:query([[
SELECT c.oid::int8 AS oid, pg_catalog.pg_relation_size(c.oid) AS main,
       coalesce(pg_catalog.pg_relation_size(NULLIF(c.reltoastrelid, 0)), 0) AS toast
FROM pg_catalog.pg_class c WHERE c.oid = ANY($1::oid[])]], oids))
  local by = {}
  for _, r in ipairs(rows) do by[r.oid] = r end
  for _, tbl in ipairs(plan.tables) do
    local r = by[tbl.oid]
    if r then
      tbl.pages = r.main // 8192
      tbl.bytes = r.main + r.toast
    end
  end
end

-- "auto": a table holding more than 1/(2 × jobs) of the data to copy is cut into parts of
-- that size (at least 64 MB, at most 1 GB), so that no single table's copy — and the index
-- builds that wait for it — is left running alone at the end while the other jobs are idle.
local AUTO_MIN, AUTO_MAX = 64 * 1024 * 1024, 1024 * 1024 * 1024

-- `jobs`: the most copy streams the load may run (tide.full.streams' sizing.split); without it,
-- a fixed full.jobs, or 4.
local function split_jobs(task, jobs)
  return jobs or (math.type(task.full.jobs) == "integer" and task.full.jobs) or 4
end

function M.split_bytes(task, plan, jobs)
  local v = task.full.split_larger_than
  if v ~= nil and v ~= "auto" then return M.parse_size(v) end
  local total = 0
  for _, tbl in ipairs(plan.tables) do total = total + (tbl.bytes or 0) end
  jobs = split_jobs(task, jobs)
  if jobs <= 1 then return 0 end
  return math.max(AUTO_MIN, math.min(AUTO_MAX, total // (2 * jobs)))
end

function M.build(task, plan, conn, recorded, jobs)
  refresh_sizes(plan, conn)
  jobs = split_jobs(task, jobs)
  local split_bytes = M.split_bytes(task, plan, jobs)
  local by_table = {}
  for _, row in ipairs(recorded or {}) do
    local list = by_table[row.table_key] or {}
    by_table[row.table_key] = list
    list[#list + 1] = row
  end
  local null = require("tide.core").null
  local all, table_parts, new = {}, {}, {}
  for _, tbl in ipairs(plan.tables) do
    local parts
    if by_table[tbl.key] then
      parts = {}
      for _, row in ipairs(by_table[tbl.key]) do
        parts[#parts + 1] = {
          id = row.part, no = row.part_no, count = row.parts, table = tbl, range_kind = row.range_kind,
          from = row.range_from ~= null and row.range_from or nil,
          to = row.range_to ~= null and row.range_to or nil,
          done = row.done_at ~= null,
          bytes_estimate = (tbl.bytes or 0) // math.max(1, row.parts),
        }
      end
    else
      parts = cut(tbl, conn, split_bytes, tbl.key, jobs)
      for _, p in ipairs(parts) do new[#new + 1] = p end
    end
    tbl.binary = not tbl.transform and binary_safe(tbl, task, plan)   -- on.row reads text rows
    table_parts[tbl.key] = parts
    for _, p in ipairs(parts) do all[#all + 1] = p end
  end
  -- Large objects travel as one more part (one target transaction for all of them).
  if task.full.large_objects ~= false then
    local r = assert(conn:query([[
SELECT (SELECT count(*) FROM pg_catalog.pg_largeobject_metadata) AS n,
       pg_catalog.pg_relation_size('pg_catalog.pg_largeobject') AS bytes]]))[1]
    if r.n > 0 then
      local key = "large_objects"
      local lo_table = { key = key, source = { schema = "pg_catalog", name = "pg_largeobject" },
                         target = { schema = "pg_catalog", name = "pg_largeobject" }, columns = {},
                         bytes = r.bytes, large_objects = r.n, binary = false }
      local row = by_table[key] and by_table[key][1]
      local part = { id = key, no = 1, count = 1, table = lo_table, range_kind = "lo",
                     done = row ~= nil and row.done_at ~= null, bytes_estimate = r.bytes }
      if not row then new[#new + 1] = part end
      table_parts[key] = { part }
      all[#all + 1] = part
    end
  end
  table.sort(all, function(a, b)
    if a.bytes_estimate ~= b.bytes_estimate then return a.bytes_estimate > b.bytes_estimate end
    return a.id < b.id
  end)
  return all, table_parts, new
end

local function column_list(conn, cols, field)
  local out = {}
  for i, c in ipairs(cols) do out[i] = conn:quote_ident(c[field]) end
  return table.concat(out, ", ")
end

-- COPY ... TO STDOUT for a part on the source.
function M.copy_out_sql(conn, part)
  local t = part.table
  local rel = conn:quote_ident(t.source.schema) .. "." .. conn:quote_ident(t.source.name)
  local where = {}
  if part.range_kind == "key" then
    local k = conn:quote_ident(t.int_key)
    if part.from then where[#where + 1] = string.format("%s >= %d", k, part.from) end
    if part.to then where[#where + 1] = string.format("%s < %d", k, part.to) end
  elseif part.range_kind == "ctid" then
    if part.from then where[#where + 1] = string.format("ctid >= '(%d,0)'::tid", part.from) end
    if part.to then where[#where + 1] = string.format("ctid < '(%d,0)'::tid", part.to) end
  end
  if t.row_filter then where[#where + 1] = "(" .. t.row_filter .. ")" end
  local fmt = t.binary and " (FORMAT binary)" or ""
  local cols = column_list(conn, t.columns, "name")
  if #where == 0 then
    return string.format("COPY %s%s TO STDOUT%s", rel, #t.columns > 0 and (" (" .. cols .. ")") or "", fmt)
  end
  return string.format("COPY (SELECT %s FROM ONLY %s WHERE %s) TO STDOUT%s",
    #t.columns > 0 and cols or "", rel, table.concat(where, " AND "), fmt)
end

-- COPY ... FROM STDIN for a part on the target.
function M.copy_in_sql(conn, part, freeze)
  local t = part.table
  local rel = conn:quote_ident(t.target.schema) .. "." .. conn:quote_ident(t.target.name)
  local options = {}
  if t.binary then options[#options + 1] = "FORMAT binary" end
  if freeze then options[#options + 1] = "FREEZE" end
  return string.format("COPY %s%s FROM STDIN%s", rel,
    #t.columns > 0 and (" (" .. column_list(conn, t.columns, "target") .. ")") or "",
    #options > 0 and (" (" .. table.concat(options, ", ") .. ")") or "")
end

function M.target_relation(conn, tbl)
  return conn:quote_ident(tbl.target.schema) .. "." .. conn:quote_ident(tbl.target.name)
end

-- The target rows a table's load replaces: all of them, or for an extension's configuration
-- table with a condition (tbl.target_filter) only those matching it — the others are the
-- ones CREATE EXTENSION put there. Returns the WHERE clause ("" for all) and the statement
-- that empties them (TRUNCATE ONLY, or DELETE when there is a condition).
function M.target_rows(conn, tbl)
  local rel = M.target_relation(conn, tbl)
  if tbl.target_filter then
    local where = " WHERE (" .. tbl.target_filter .. ")"
    return where, "DELETE FROM ONLY " .. rel .. where
  end
  return "", "TRUNCATE ONLY " .. rel
end

return M
