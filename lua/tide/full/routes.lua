-- tide.full.routes — on.route in the full load (docs/select-and-rename.md, "Routing rows").
--
-- A routing table's rows go through its on.row function in the COPY pump; the rows it routes to
-- another table are kept aside (engine/pg/copy_routes.c) and, once the COPY ended, written into
-- their destination by M.write in the same target transaction, before the part is marked done
-- and committed. So a part's routed rows commit exactly when its own rows do: a kill or a
-- failure at any moment rolls both back, and the part is copied again whole.
--
-- Order: a routing table's parts are copied only once every destination's own parts are done
-- (M.ready), so a destination's TRUNCATE (the first part of a whole-table copy empties its table)
-- can never erase routed rows; and a destination counts as loaded — its indexes, constraints,
-- foreign keys may be built, it may be analyzed — only once the tables routing to it are copied
-- too (M.copied). The insert is an upsert by the key (INSERT ... ON CONFLICT (key) DO UPDATE)
-- when the destination has a unique index on it then (a target whose schema was made before);
-- when the schema phase builds that index after the copy, a plain INSERT: a routed row whose key
-- the destination's own rows hold too then fails the index build, naming the key.
local failure = require "tide.failure"
local parts_mod = require "tide.full.parts"

local M = {}

local BATCH_ROWS = 5000

-- The names an on.row function may return as its second value: 0 for the table itself, k for
-- its k-th destination. Both the plain "schema.table" and the plan's key (quoted when needed).
function M.names(tbl, by_key)
  local map = { [tbl.key] = 0, [tbl.source.schema .. "." .. tbl.source.name] = 0 }
  for k, dest in ipairs(tbl.routes or {}) do
    local d = by_key[dest]
    map[dest] = k
    if d then map[d.source.schema .. "." .. d.source.name] = k end
  end
  return map
end

-- The `rows` option of tide.copy_pump for a table with on.row.
function M.pump_rows(tbl, by_key, keep)
  local names = {}
  for i, c in ipairs(tbl.columns) do names[i] = c.name end
  return { fn = tbl.transform, columns = names, keys = tbl.key_columns, label = tbl.key,
           routes = M.names(tbl, by_key), keep = keep }
end

------------------------------------------------------------------------ order

-- M.prepare(load): which tables route to which, and which are copied (their own parts done).
function M.prepare(load)
  load.routes_to, load.routed_from, load.copied = {}, {}, {}
  for _, tbl in ipairs(load.plan.tables) do
    if tbl.routes then
      load.routes_to[tbl.key] = tbl.routes
      for _, d in ipairs(tbl.routes) do
        load.routed_from[d] = load.routed_from[d] or {}
        table.insert(load.routed_from[d], tbl.key)
      end
    end
  end
  for key in pairs(load.table_parts) do
    load.copied[key] = (load.parts_left[key] or 0) == 0
  end
  for key in pairs(load.table_parts) do load.loaded[key] = M.complete(load, key) end
end

-- Every row of the table is in: its own parts, and the parts of every table routing to it.
function M.complete(load, key)
  if not load.copied[key] then return false end
  for _, s in ipairs(load.routed_from[key] or {}) do
    if load.table_parts[s] and not load.copied[s] then return false end
  end
  return true
end

-- May a part of this table be copied now: every destination of its routes copied.
function M.ready(load, part)
  for _, d in ipairs(load.routes_to and load.routes_to[part.table.key] or {}) do
    if load.table_parts[d] and not load.copied[d] then return false end
  end
  return true
end

-- The table's last part is done: the tables that are complete now (itself, destinations).
function M.copied(load, key)
  load.copied[key] = true
  local out = {}
  for _, k in ipairs({ key, table.unpack(load.routes_to[key] or {}) }) do
    if not load.loaded[k] and M.complete(load, k) then out[#out + 1] = k end
  end
  return out
end

------------------------------------------------------------------------ writing

local TYPES_SQL = [[
SELECT a.attname AS name, pg_catalog.format_type(a.atttypid, a.atttypmod) AS type
FROM pg_catalog.pg_attribute a
WHERE a.attrelid = pg_catalog.to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped]]

-- A unique index on exactly the key columns (by target name), valid, without predicate or
-- expressions: what ON CONFLICT (key) needs.
local UNIQUE_SQL = [[
SELECT EXISTS (
  SELECT FROM pg_catalog.pg_index i
  WHERE i.indrelid = pg_catalog.to_regclass($1) AND i.indisunique AND i.indisvalid AND i.indpred IS NULL
    AND i.indexprs IS NULL AND i.indnatts = pg_catalog.cardinality($2::text[])
    AND NOT EXISTS (SELECT FROM pg_catalog.unnest($2::text[]) AS k(name)
                    WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_attribute a
                                      WHERE a.attrelid = i.indrelid AND a.attname = k.name
                                        AND a.attnum = ANY (i.indkey)))) AS yes]]

local function must(conn, what, sql, ...)
  local rows, err = conn:query(sql, ...)
  if not rows then error({ message = what .. ": " .. tostring(err), err = err }, 0) end
  return rows
end

-- The target's SQL type of each column of a relation ("schema"."name", or pg_temp.x).
function M.column_types(conn, relation)
  local out = {}
  for _, r in ipairs(must(conn, "reading the columns of " .. relation, TYPES_SQL, relation)) do out[r.name] = r.type end
  return out
end

local function target_name(c) return c.target or c.name end

-- The statement that writes a batch of rows routed from `src` (the arrays of pump:route_batch,
-- one parameter per column of src, in order) into `into`, a relation with dst's columns.
-- opts.types: { [target column] = SQL type }; opts.upsert: ON CONFLICT (key) DO UPDATE;
-- opts.replace: delete the rows with the same key first (a table without unique index: verify);
-- opts.fill_from: a relation to take dst's other columns from, by key (verify: the target's
-- values, which routed rows get from the destination's defaults).
function M.insert_sql(conn, src, dst, into, opts)
  local by_name = {}
  for _, c in ipairs(dst.columns) do by_name[c.name] = c end
  local q = function(s) return conn:quote_ident(s) end
  local params, typed, tcols, overriding = {}, {}, {}, false
  local carried, key_alias = {}, {}
  for i, c in ipairs(src.columns) do
    local d = by_name[c.name]
    local name = target_name(d)
    carried[c.name] = true
    params[i] = string.format("pg_catalog.unnest($%d::text[])", i)
    typed[i] = string.format("u.c%d::%s AS c%d", i, opts.types[name] or "text", i)
    tcols[i] = q(name)
    overriding = overriding or d.identity == "a"
  end
  for _, k in ipairs(dst.key_columns or {}) do
    for i, c in ipairs(src.columns) do if c.name == k then key_alias[k] = "r.c" .. i end end
  end
  local aliases = {}
  for i = 1, #src.columns do aliases[i] = "c" .. i end
  local values = {}
  for i = 1, #src.columns do values[i] = "r.c" .. i end
  local function key_match(alias)
    local m = {}
    for _, k in ipairs(dst.key_columns or {}) do m[#m + 1] = string.format("%s.%s = %s", alias, q(target_name(by_name[k])), key_alias[k]) end
    return table.concat(m, " AND ")
  end
  if opts.fill_from and dst.key_columns then
    for _, c in ipairs(dst.columns) do
      if not carried[c.name] then
        tcols[#tcols + 1] = q(target_name(c))
        values[#values + 1] = string.format("(SELECT f.%s FROM ONLY %s f WHERE %s)", q(target_name(c)), opts.fill_from,
                                            key_match("f"))
      end
    end
  end
  local sql = { string.format("WITH r AS (SELECT %s FROM ROWS FROM (%s) AS u(%s))", table.concat(typed, ", "),
                              table.concat(params, ", "), table.concat(aliases, ", ")) }
  if opts.replace and dst.key_columns then
    sql[#sql + 1] = string.format(", gone AS (DELETE FROM %s x USING r WHERE %s)", into, key_match("x"))
  end
  sql[#sql + 1] = string.format(" INSERT INTO %s (%s)%s SELECT %s FROM r", into, table.concat(tcols, ", "),
                                overriding and " OVERRIDING SYSTEM VALUE" or "", table.concat(values, ", "))
  if opts.upsert and dst.key_columns then
    local keys, sets, is_key = {}, {}, {}
    for _, k in ipairs(dst.key_columns) do keys[#keys + 1] = q(target_name(by_name[k])); is_key[k] = true end
    for _, c in ipairs(src.columns) do
      local d = by_name[c.name]
      if not is_key[c.name] and d.identity ~= "a" then
        sets[#sets + 1] = string.format("%s = EXCLUDED.%s", q(target_name(d)), q(target_name(d)))
      end
    end
    sql[#sql + 1] = string.format(" ON CONFLICT (%s) %s", table.concat(keys, ", "),
                                  #sets > 0 and ("DO UPDATE SET " .. table.concat(sets, ", ")) or "DO NOTHING")
  end
  return table.concat(sql)
end

-- Send every batch of destination k's routed rows through `sql`.
function M.send(conn, pump, k, sql)
  local total = 0
  while true do
    local n, arrays = pump:route_batch(k, BATCH_ROWS)
    if not n then error({ message = "reading routed rows back: " .. tostring(arrays), err = arrays }, 0) end
    if n == 0 then return total end
    local ok, err = conn:query(sql, table.unpack(arrays))
    if not ok then error({ message = tostring(err), err = err }, 0) end
    total = total + n
  end
end

-- M.write(load, tgt, tbl, pump): after the routing table's COPY ended, in its transaction.
-- Returns { [destination key] = rows }; raises a failure naming the tables.
function M.write(load, tgt, tbl, pump)
  local counts, written = pump:routed(), {}
  load.route_cache = load.route_cache or {}
  for k, dest_key in ipairs(tbl.routes) do
    if (counts[k] or 0) > 0 then
      local dst = load.tables_by_key[dest_key]
      local rel = parts_mod.target_relation(tgt, dst)
      local ok, err = pcall(function()
        local types = load.route_cache[rel] or M.column_types(tgt, rel)
        load.route_cache[rel] = types
        local keys = {}
        for i, kc in ipairs(dst.key_columns or {}) do
          for _, c in ipairs(dst.columns) do if c.name == kc then keys[i] = target_name(c) end end
        end
        local upsert = #keys > 0 and must(tgt, "looking for the key of " .. rel, UNIQUE_SQL, rel, keys)[1].yes
        written[dest_key] = M.send(tgt, pump, k, M.insert_sql(tgt, tbl, dst, rel, { types = types, upsert = upsert }))
      end)
      if not ok then
        pump:close_routes()
        failure.raise("failed", string.format("copying %s failed while writing the rows its on.row function " ..
          "routed to %s: %s", tbl.key, dest_key, type(err) == "table" and err.message or tostring(err)),
          { err = type(err) == "table" and err.err or nil })
      end
    end
  end
  pump:close_routes()
  return written
end

return M
