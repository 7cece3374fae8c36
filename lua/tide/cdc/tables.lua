-- tide.cdc.tables — the change stream's table map (engine/cdc/lua_cdc_tables.c reads it): every
-- published relation (partitions through their root) with its target, columns, known columns,
-- key, the row filter pgtide applies itself, and whether a hook or the heartbeat owns it.
local objects = require "tide.cdc.objects"
local follow = require "tide.cdc.follow"
local route = require "tide.cdc.route"
local breathe = require("tide.wait").breathe
local intern = require "tide.intern"

local M = {}

local function conf(task) return task.incremental or {} end

-- Every source column the plan knew for a table, selected or not: its columns (generated
-- ones included) and the ones select.columns excluded. A column outside this set that shows up
-- in the stream was added on the source after planning, and stops the stream.
local function known_columns(plan, key, columns)
  local out, seen = {}, {}
  local function add(name) if name and not seen[name] then seen[name] = true; out[#out + 1] = name end end
  for _, c in ipairs(columns or {}) do add(c.name) end
  local obj = plan.by_key and plan.by_key["table:" .. key]
  if obj then
    for _, c in ipairs(obj.columns or {}) do add(c.name) end
    for _, c in pairs(obj.dropped_columns or {}) do add(c.name) end
  end
  return out
end

-- The C stream's tables: every published relation (partitions through their root) with its
-- target, columns, known columns, key, and whether a hook or the heartbeat owns it.
local function lsn_value(s)
  local hi, lo = tostring(s):match("^(%x+)/(%x+)$")
  return hi and (tonumber(hi, 16) << 32 | tonumber(lo, 16)) or 0
end

-- "name" -> { [column] = SQL type } of a table, written so that it means the same under any
-- search_path (types outside pg_catalog qualified by their schema); `builtin_only`: a type of
-- another schema is given as text (a source type the target may not have under that name).
function M.column_types(conn, qualified, builtin_only)
  local out = {}
  for _, r in ipairs(assert(conn:query([[
SELECT a.attname AS name,
       CASE WHEN t.typnamespace = 'pg_catalog'::pg_catalog.regnamespace
            THEN pg_catalog.format_type(a.atttypid, a.atttypmod)
            WHEN $2 THEN 'text'
            ELSE pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(t.typname) END AS type
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
WHERE a.attrelid = pg_catalog.to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped]], qualified,
      builtin_only and true or false))) do
    out[r.name] = r.type
  end
  return out
end

-- For a table with a row filter that the task's publications do not carry (tide.cdc.objects.
-- filter_mode chose so when it made them; what they hold is what counts, so a publication made
-- by an earlier run is never trusted to filter): the filter, and the type of every column the
-- filter may read, for engine/cdc/apply_filter.c.
local function applied_filters(source, target, order, tnames, names)
  local wanted = {}
  for i, e in ipairs(order) do
    breathe()
    if (e.plan_table and e.plan_table.row_filter and not e.plan_table.unlogged) or e.root_filter or e.transform then
      wanted[#wanted + 1] = i
    end
  end
  if #wanted == 0 then return end
  local carried = {}
  if source:server_version() >= 150000 then
    for _, r in ipairs(assert(source:query([[
SELECT n.nspname AS schema, c.relname AS name
FROM pg_catalog.pg_publication p
JOIN pg_catalog.pg_publication_rel r ON r.prpubid = p.oid
JOIN pg_catalog.pg_class c ON c.oid = r.prrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE p.pubname IN ($1, $2) AND r.prqual IS NOT NULL]], names.publication, names.inserts_publication))) do
      carried[r.schema .. "\0" .. r.name] = true
    end
  end
  for _, i in ipairs(wanted) do
    local e = order[i]
    local tbl = e.plan_table
    -- A table with on.row applies like a filtered one (filter "true"): a row the function
    -- dropped may come back with an update (an upsert then), or go with one (a delete).
    local own = tbl and tbl.row_filter and not tbl.unlogged and not carried[e.source_schema .. "\0" .. e.source_name]
    -- a partitioned table's filter: its partitions' changes arrive through it, all published
    -- (its publication entry never carries a filter), and pgtide applies it
    local filter = own and tbl.row_filter or e.root_filter
    own = own or e.root_filter ~= nil
    if own or e.transform then
      local on_target = M.column_types(target, tnames[i], false)
      local on_source = M.column_types(source, objects.qname(source, e.source_schema, e.source_name), true)
      local types = {}
      for _, name in ipairs(e.known) do types[name] = on_source[name] end
      for _, c in ipairs(e.columns) do types[c.source] = on_target[c.target] or types[c.source] end
      e.filter, e.known_type = own and filter or "true", types
      -- The columns the filter reads: one the source did not send (an unchanged out-of-line
      -- value) and the target cannot supply leaves the filter undecided (apply_filter.c).
      e.filter_columns = own and objects.filter_columns(filter, e.known) or {}
      -- select.rows_follow: the filter reads the parents' rows on the target; a followed
      -- table's update that leaves its filter deletes the rows that followed it.
      if own and tbl and tbl.follows then e.filter, e.filter_columns = follow.stream_filter(tbl, e.known) end
      if own and tbl and tbl.followed_by then e.follow_cascade = follow.cascade(tbl) end
    end
  end
end

local RARE_FIELDS = { "tolerate_lsn", "filter", "known_type", "filter_columns", "follow_cascade" }

-- A map entry holds only the flags where its table is unusual: the usual values, and `known`
-- when it is the list of columns itself (all written under their own names), come from its
-- metatable; lua_cdc_tables.c reads them through it (lua_getfield), Lua alike. Eight fields
-- or fewer take 8 slots of a table, nine 16 (the map at 10,000 tables: 4.8 -> 2.9 MB).
local USUAL = { partitioned = false, mergeable = true, batchable = true, unique_free = false, hooked = false,
                lane_mode = 0, lane_group = 0 }
local ENTRY = { __index = function(t, k)
  if k == "known" then return rawget(t, "columns") end
  return USUAL[k]
end }

-- The map's list of a table's columns (engine/cdc/lua_cdc_tables.c): a column written under its
-- own name and not GENERATED ALWAYS AS IDENTITY is its name alone, others { source =,
-- target_sql = quote(target name), identity_always = }. `columns`: { source =, target =,
-- identity_always = } each. With a `pool` (tide.intern) a list of names only is interned:
-- usually the same list as the entry's `known`, and in a schema-per-tenant database the same
-- list as other tables' (docs/performance.md, "The stream's tables shared").
function M.map_columns(columns, quote, pool)
  local cols, plain = {}, true
  for j, c in ipairs(columns) do
    if c.target == c.source and not c.identity_always then
      cols[j] = c.source
    else
      cols[j] = { source = c.source, target_sql = quote(c.target), identity_always = c.identity_always }
      plain = false
    end
  end
  return plain and pool and pool:names(cols) or cols
end

function M.build(task, plan, target, names, source)
  local hooks = (task.on and task.on.change) or {}
  local by_source, order = {}, {}
  -- Tables the full load found truncated on the source after its snapshot (tide.state): up to
  -- the recorded position, their changes may miss rows (engine/cdc/apply.h, tolerate_lsn).
  local rewritten = require("tide.state").rewritten(task, target)
  local function add(schema, name, key, tgt, columns, key_columns, leaf_key)
    local k = schema .. "\0" .. name
    local lsn = rewritten[leaf_key or key]
    if by_source[k] then
      if lsn and lsn_value(lsn) > lsn_value(by_source[k].tolerate_lsn) then by_source[k].tolerate_lsn = lsn end
      return
    end
    local e = { source_schema = schema, source_name = name, target_schema = tgt.schema,
                target_name = tgt.name, columns = {}, key = key_columns,
                known = known_columns(plan, key, columns), tolerate_lsn = lsn }
    for _, c in ipairs(columns) do
      -- The schema phase creates the target column with the source's identity kind: an ALWAYS
      -- one needs OVERRIDING SYSTEM VALUE and is never SET (engine/cdc/apply_sql.c).
      if c.generated ~= "s" then
        e.columns[#e.columns + 1] = { source = c.name, target = c.target or c.name,
                                      identity_always = c.identity == "a" }
      end
    end
    by_source[k] = e
    order[#order + 1] = e
  end
  for _, tbl in ipairs(plan.tables or {}) do
    breathe()
    local root = tbl.parent and plan.by_key and plan.by_key["table:" .. tbl.parent]
    if root then
      add(root.schema, root.name, tbl.parent, root.target, root.columns or tbl.columns, tbl.key_columns, tbl.key)
      local e = by_source[root.schema .. "\0" .. root.name]
      e.transform = e.transform or tbl.transform
      e.root_filter = e.root_filter or tbl.root_filter
    else
      add(tbl.source.schema, tbl.source.name, tbl.key, tbl.target, tbl.columns, tbl.key_columns)
      local e = by_source[tbl.source.schema .. "\0" .. tbl.source.name]
      e.plan_table, e.transform = tbl, tbl.transform
    end
  end
  -- Which targets are partitioned (never TRUNCATE ONLY, find rows through the root), and
  -- which may have successive updates of a row folded into one (engine/cdc/apply_merge.c): one
  -- unique index (the key), no exclusion constraint, no trigger firing in replica mode. A
  -- partitioned target's rows live in its partitions, which may have unique indexes and
  -- triggers of their own: its whole tree is counted (an index attached to one of the tree's
  -- partitioned indexes once, as that index), and a tree with a partition other than a table
  -- (a foreign table) is neither folded nor batched.
  local tnames = {}
  for i, e in ipairs(order) do
    breathe()
    tnames[i] = objects.qname(target, e.target_schema, e.target_name)
  end
  applied_filters(source, target, order, tnames, names)
  local kinds, mergeable, batchable, unique_free, facts, fks = {}, {}, {}, {}, {}, {}
  local may_merge = conf(task).merge_updates ~= false and conf(task).replica_role ~= false
  -- Inserts into a table may be sent several rows to a statement (engine/cdc/apply_merge.c) when
  -- nothing could notice that they reach the target later than changes of other tables in the
  -- same group: foreign keys and triggers do not fire (replica role, no trigger enabled in it).
  local may_batch = conf(task).batch_inserts ~= false and conf(task).replica_role ~= false
  if #tnames > 0 then
    for _, r in ipairs(assert(target:query([[
SELECT u.i, c.relkind, s.uniques, s.replica_triggers, s.others
FROM unnest($1::text[]) WITH ORDINALITY AS u(name, i)
LEFT JOIN pg_catalog.pg_class c ON c.oid = pg_catalog.to_regclass(u.name)
LEFT JOIN LATERAL (
  WITH RECURSIVE tree(oid) AS (
    SELECT c.oid
    UNION ALL
    SELECT h.inhrelid FROM pg_catalog.pg_inherits h JOIN tree ON h.inhparent = tree.oid
    WHERE c.relkind = 'p')
  SELECT (SELECT count(*) FROM pg_catalog.pg_index x
           WHERE x.indrelid IN (SELECT oid FROM tree) AND (x.indisunique OR x.indisexclusion)
             AND NOT EXISTS (SELECT FROM pg_catalog.pg_inherits h
                             JOIN pg_catalog.pg_index px ON px.indexrelid = h.inhparent
                             WHERE h.inhrelid = x.indexrelid AND px.indrelid IN (SELECT oid FROM tree))) AS uniques,
         (SELECT count(*) FROM pg_catalog.pg_trigger g
           WHERE g.tgrelid IN (SELECT oid FROM tree) AND NOT g.tgisinternal
             AND g.tgenabled IN ('A', 'R')) AS replica_triggers,
         (SELECT count(*) FROM pg_catalog.pg_class k
           WHERE k.oid IN (SELECT oid FROM tree) AND k.relkind NOT IN ('r', 'p')) AS others) s ON true]], tnames))) do
      breathe()
      kinds[r.i] = r.relkind
      local table_tree = (r.relkind == "r" or r.relkind == "p") and r.others == 0
      mergeable[r.i] = may_merge and table_tree and r.uniques == 1 and r.replica_triggers == 0
      batchable[r.i] = may_batch and table_tree and r.replica_triggers == 0
      unique_free[r.i] = r.uniques == 0
      facts[r.i] = { uniques = r.uniques or 0, triggers = r.replica_triggers or 0, has_key = order[r.i].key ~= nil }
    end
    -- Foreign keys between the task's tables: parallel apply keeps the tables they join in one
    -- group (tide.cdc.lanes.table_rules).
    for _, r in ipairs(assert(target:query([[
SELECT a.i AS a, b.i AS b
FROM unnest($1::text[]) WITH ORDINALITY AS a(name, i)
JOIN pg_catalog.pg_constraint f ON f.contype = 'f' AND f.conrelid = pg_catalog.to_regclass(a.name)
JOIN unnest($1::text[]) WITH ORDINALITY AS b(name, i) ON f.confrelid = pg_catalog.to_regclass(b.name)]], tnames))) do
      fks[#fks + 1] = { r.a, r.b }
    end
  end
  local rules = require("tide.cdc.lanes").table_rules(facts, fks)
  local entries, transforms = {}, {}
  local pool = intern.pool()   -- (for this pass only: what it shares stays shared)
  for i, e in ipairs(order) do
    breathe()
    local cols = M.map_columns(e.columns, function(name) return target:quote_ident(name) end, pool)
    local source_name = e.source_schema .. "." .. e.source_name
    local entry = setmetatable({
      source_schema = e.source_schema, source_name = e.source_name, target_sql = tnames[i],
      display = e.target_schema .. "." .. e.target_name, columns = cols, key = pool:names(e.key),
    }, ENTRY)
    local known = pool:names(e.known)
    if not rawequal(known, cols) then entry.known = known end
    local flags = {
      partitioned = kinds[i] == "p", mergeable = mergeable[i] and e.key ~= nil,
      batchable = batchable[i] or false, unique_free = unique_free[i] or false,
      lane_mode = rules[i] and rules[i].mode or 2, lane_group = rules[i] and rules[i].group or 0,
      hooked = e.transform ~= nil or hooks[source_name] ~= nil
        or hooks[objects.qname(target, e.source_schema, e.source_name)] ~= nil,
    }
    for field, v in pairs(flags) do
      if v ~= USUAL[field] then entry[field] = v end
    end
    -- The fields most tables lack are set apart: a constructor sizes its table for every field
    -- it lists, nil or not (19 listed: 845 bytes an entry; 14: 461).
    for _, field in ipairs(RARE_FIELDS) do
      if e[field] ~= nil then entry[field] = e[field] end
    end
    entries[#entries + 1] = entry
    if e.transform then
      local selected = {}
      for _, c in ipairs(e.columns) do selected[c.source] = true end
      transforms[source_name] = { fn = e.transform, key = e.key, columns = selected }
    end
  end
  route.attach(plan, target, order, entries, transforms, function(q) return M.column_types(target, q, false) end)
  if conf(task).heartbeat ~= false then
    entries[#entries + 1] = { source_schema = names.heartbeat_schema, source_name = names.heartbeat_name,
                              target_sql = "-", display = "(heartbeat)", heartbeat = true }
  end
  return entries, hooks, transforms
end

return M
