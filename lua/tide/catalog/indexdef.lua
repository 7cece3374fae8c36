-- tide.catalog.indexdef — the definitions of plain indexes written here, not by the server.
--
-- pg_get_indexdef opens the index's table on the server (its relation cache entry built, its
-- lock taken and let go) to print a definition: at 100,000 tables about 47 µs an index (the
-- indexes statement took 12-13 s on a fresh connection, 3-4 s without it), and the backend
-- grew by 800 MB of relation cache on the way. Most indexes are plain: btree, key columns only (no
-- expression, no WHERE), ascending, each column with its type's default operator class and
-- its own collation, no storage parameters, no NULLS NOT DISTINCT. For those the statement
-- sends what the definition is made of instead, and M.build writes the very text
-- pg_get_indexdef would:
--
--   CREATE [UNIQUE ]INDEX name ON schema.table USING btree (key, ...)[ INCLUDE (column, ...)]
--
-- every name quoted by the server's quote_ident (the index's, schema's, table's and access
-- method's in the statement, the columns' in the columns statement: `quoted`, where it
-- differs from the name; quote_all_identifiers quotes them all). What the server cannot tell
-- cheaply per index, the operator classes and the collations, is checked here against the
-- default btree operator class of each column's exact type (the settings statement's
-- btree_defaults; varchar's is text's, as the server finds it); an index that fails a check has its
-- definition asked of the server after all (fetch: pg_get_indexdef reads the catalog as it is
-- now, as the statement's call did). So the text is always the server's own, written by one
-- or the other. Only on PostgreSQL 15 to 17 (the settings statement's writes_definitions):
-- 18 prints what these catalogs do not say (a key's WITHOUT OVERLAPS, a foreign key's
-- PERIOD and NOT ENFORCED), and a later version may print more.
--
-- Key constraints too (M.constraint_statement, M.build_constraints): a primary key's, a
-- unique constraint's and a foreign key's text (pg_get_constraintdef: 1.95 and 2.5 s of
-- server time for 100,000 primary keys and 75,000 foreign keys, in a fresh session) is
-- written from the key's columns, the index's included ones and the referenced table's name
-- as the server quoted it; a foreign key with MATCH FULL or ON DELETE SET NULL (columns) is
-- the server's to write.
local breathe = require("tide.wait").breathe

local M = {}

-- What makes an index plain, decided on the server from its pg_index and pg_class rows (no
-- look-up per index: one into pg_attribute for the columns' operator class parameters cost
-- as much as the rest of the statement at 100,000 tables; a default class that could take
-- parameters is not in btree_defaults instead).
local PLAIN = [[(ic.relkind = 'i' AND ic.relam = (SELECT am.oid FROM pg_am am WHERE am.amname = 'btree')
        AND i.indexprs IS NULL AND i.indpred IS NULL AND ic.reloptions IS NULL
        AND NOT i.indnullsnotdistinct AND 0 = ALL (i.indoption::int2[]))]]

-- M.statement(indexes_sql) → the indexes statement that leaves plain indexes to M.build
-- (servers with pg_index.indnullsnotdistinct: PostgreSQL 15 on).
function M.statement(sql)
  local out, n = sql:gsub("pg_get_indexdef%(i%.indexrelid%) AS definition,",
    "CASE WHEN NOT q.plain THEN pg_get_indexdef(i.indexrelid) END AS definition,\n" ..
    -- (What M.build needs in one field, in place of the definition: a row's fields take the
    -- next power of two in slots, and a table's slots stay after its fields go.)
    "       CASE WHEN q.plain THEN CASE WHEN i.indisunique THEN 'u' ELSE '-' END || ' ' || i.indnkeyatts\n" ..
    "         || ' ' || array_to_string(i.indclass::oid[], ',') || ' ' || array_to_string(i.indcollation::oid[], ',')\n" ..
    "         || ' ' || quote_ident(ic.relname) || ' ON ' || quote_ident(n.nspname) || '.' || quote_ident(c.relname)\n" ..
    "         || ' USING ' || quote_ident('btree') END AS quick,", 1)
  assert(n == 1, "tide.catalog.indexdef: the indexes statement's definition moved")
  local m
  out = out:gsub("(         || ' USING ' || quote_ident%('btree'%) END AS quick,)",
    "%1\n       NULLIF(i.indnullsnotdistinct, false) AS quick_nulls_not_distinct,", 1)
  out, m = out:gsub("\nJOIN pg_namespace n ON n%.oid = ic%.relnamespace\n",
    "\nJOIN pg_namespace n ON n.oid = ic.relnamespace\nCROSS JOIN LATERAL (SELECT " .. PLAIN .. " AS plain) q\n", 1)
  assert(m == 1, "tide.catalog.indexdef: the indexes statement's joins moved")
  return out
end

-- The settings statement's column: type oid → { its default btree operator class, the type's
-- collation } (JSON; the keys are the type oids as text). Only types with one default class
-- (two make CREATE INDEX fail), and only classes whose family has no support function past
-- equalimage (4): from the options function (5, PostgreSQL 13) on, a class may take
-- parameters, which pg_get_indexdef prints. And varchar, which has no class of its own: the
-- server's default for it is text's (binary-coercible, text the preferred string type).
M.DEFAULTS = [[(SELECT json_object_agg(k.type_oid::text, json_build_array(d.opclass, d.collation))
          FROM (SELECT oc.opcintype AS type_oid, min(oc.oid)::int8 AS opclass, min(t.typcollation)::int8 AS collation
                  FROM pg_opclass oc JOIN pg_type t ON t.oid = oc.opcintype
                 WHERE oc.opcdefault AND oc.opcmethod = (SELECT am.oid FROM pg_am am WHERE am.amname = 'btree')
                   AND NOT EXISTS (SELECT FROM pg_amproc p WHERE p.amprocfamily = oc.opcfamily AND p.amprocnum > 4)
                 GROUP BY oc.opcintype HAVING count(*) = 1) d
           CROSS JOIN LATERAL (VALUES (d.type_oid), (CASE WHEN d.type_oid = 'text'::regtype
                   AND NOT EXISTS (SELECT FROM pg_opclass v WHERE v.opcdefault AND v.opcintype = 'varchar'::regtype
                                     AND v.opcmethod = (SELECT am.oid FROM pg_am am WHERE am.amname = 'btree'))
                 THEN 'varchar'::regtype::oid END)) AS k(type_oid)
         WHERE k.type_oid IS NOT NULL)::text AS btree_defaults_json]]

-- M.constraint_statement(constraints_sql) → the constraints statement that leaves key
-- constraints to M.build_constraints (the servers M.statement is for).
function M.constraint_statement(sql)
  local out, n = sql:gsub("pg_get_constraintdef%(co%.oid%) AS definition,",
    "CASE WHEN NOT q.quick THEN pg_get_constraintdef(co.oid) END AS definition,\n" ..
    -- (In one field, as the indexes': "k" for a key, the two actions and the referenced
    -- table for a foreign key.)
    "       CASE WHEN q.quick THEN CASE WHEN co.contype = 'f' THEN co.confupdtype::text || co.confdeltype::text || ' '\n" ..
    "         || quote_ident(rn.nspname) || '.' || quote_ident(rc.relname) ELSE 'k' END END AS quick,", 1)
  assert(n == 1, "tide.catalog.indexdef: the constraints statement's definition moved")
  local m
  out, m = out:gsub("\nJOIN pg_namespace n ON n%.oid = co%.connamespace\n",
    "\nJOIN pg_namespace n ON n.oid = co.connamespace\n" ..
    "LEFT JOIN pg_class rc ON rc.oid = co.confrelid\nLEFT JOIN pg_namespace rn ON rn.oid = rc.relnamespace\n" ..
    "CROSS JOIN LATERAL (SELECT co.contype IN ('p', 'u') OR (co.contype = 'f' AND co.confmatchtype = 's'\n" ..
    "                           AND co.confdelsetcols IS NULL) AS quick) q\n", 1)
  assert(m == 1, "tide.catalog.indexdef: the constraints statement's joins moved")
  return out
end

-- The server's definitions of the indexes M.build leaves to it ($1: their oids).
M.FETCH = [[
SELECT i.oid, pg_catalog.pg_get_indexdef(i.oid) AS definition FROM unnest($1::oid[]) AS i(oid)
]]

-- The same for constraints.
M.FETCH_CONSTRAINTS = [[
SELECT c.oid, pg_catalog.pg_get_constraintdef(c.oid) AS definition FROM unnest($1::oid[]) AS c(oid)
]]

local function numbers(text)
  local out = {}
  for n in text:gmatch("%-?%d+") do out[#out + 1] = math.tointeger(n) end
  return out
end

-- The definition of a plain index row, or nil when a column's operator class or collation
-- is not the one pg_get_indexdef leaves unsaid.
local function write(row, columns, defaults, column_row)
  if not columns or not row.column_nums then return nil end
  local unique, keys, opclass_list, collation_list, head = row.quick:match("^(%S) (%d+) (%S+) (%S+) (.+)$")
  if not head then return nil end
  keys = math.tointeger(keys)
  local nums, opclasses, collations = numbers(row.column_nums), numbers(opclass_list), numbers(collation_list)
  local names = {}
  for k, num in ipairs(nums) do
    local c = column_row(columns, num)
    if not c then return nil end
    if k <= keys then
      local d = defaults[tostring(c.type_oid)]
      if not d or d[1] ~= opclasses[k] then return nil end
      -- A column's collation is its type's unless the columns statement names another; an
      -- index on it prints a collation that is not the column's.
      local collation = collations[k]
      if collation ~= 0 and (c.collation_name ~= nil or collation ~= d[2]) then return nil end
    end
    names[k] = c.quoted or c.name
  end
  if #names == 0 then return nil end
  local text = "CREATE " .. (unique == "u" and "UNIQUE " or "") .. "INDEX " .. head
    .. " (" .. table.concat(names, ", ", 1, math.min(keys, #names))
  if #names > keys then text = text .. ") INCLUDE (" .. table.concat(names, ", ", keys + 1) end
  return text .. ")"
end

-- The quoted names of columns `nums` (from `first` to `last`) of a relation, or nil when one is
-- not in its rows.
local function quoted_names(columns, nums, first, last, column_row)
  if not columns then return nil end
  local out = {}
  for k = first, last do
    local c = column_row(columns, nums[k])
    if not c then return nil end
    out[#out + 1] = c.quoted or c.name
  end
  return table.concat(out, ", ")
end

local ACTIONS = { r = "RESTRICT", c = "CASCADE", n = "SET NULL", d = "SET DEFAULT" }

-- The definition of a key constraint row the statement left to the engine, or nil.
local function write_constraint(row, by_relid, index_of, column_row)
  if not row.column_nums then return nil end
  local nums = numbers(row.column_nums)
  local columns = by_relid[row.table_oid]
  local keys = quoted_names(columns, nums, 1, #nums, column_row)
  if not keys or #nums == 0 then return nil end
  local text
  if row.type == "f" then
    local on_update, on_delete, ref = row.quick:match("^(.)(.) (.+)$")
    local ref_nums = numbers(row.ref_column_nums or "")
    local refs = quoted_names(by_relid[row.referenced_oid], ref_nums, 1, #ref_nums, column_row)
    if not refs or #ref_nums == 0 or not ref then return nil end
    text = "FOREIGN KEY (" .. keys .. ") REFERENCES " .. ref .. "(" .. refs .. ")"
    for _, action in ipairs({ { "UPDATE", on_update }, { "DELETE", on_delete } }) do
      if action[2] ~= "a" then   -- (a: NO ACTION, not printed)
        if not ACTIONS[action[2]] then return nil end
        text = text .. " ON " .. action[1] .. " " .. ACTIONS[action[2]]
      end
    end
  elseif row.type == "p" or row.type == "u" then
    -- The index behind it: its columns past the key's are the INCLUDE list.
    local index = index_of[row.index_oid]
    if not index or not index.column_nums then return nil end
    local index_nums = numbers(index.column_nums)
    if #index_nums < #nums then return nil end
    for k = 1, #nums do if index_nums[k] ~= nums[k] then return nil end end
    -- (NULLS NOT DISTINCT is a unique constraint's only: a primary key on such an index has none.)
    text = row.type == "p" and "PRIMARY KEY " or ("UNIQUE " .. (index.quick_nulls_not_distinct and "NULLS NOT DISTINCT " or ""))
    text = text .. "(" .. keys .. ")"
    if #index_nums > #nums then
      local include = quoted_names(columns, index_nums, #nums + 1, #index_nums, column_row)
      if not include then return nil end
      text = text .. " INCLUDE (" .. include .. ")"
    end
  else
    return nil
  end
  if row.deferrable then text = text .. " DEFERRABLE" end
  if row.deferred then text = text .. " INITIALLY DEFERRED" end
  if not row.validated then text = text .. " NOT VALID" end
  return text
end

-- The server's definitions of the rows the engine could not write: fetch(oids) → rows
-- { oid =, definition = }.
local function ask(asked, fetch)
  if #asked == 0 then return end
  local oids, by_oid = {}, {}
  for i, row in ipairs(asked) do oids[i] = row.oid; by_oid[row.oid] = row end
  for _, r in ipairs(fetch(oids)) do
    local row = by_oid[r.oid]
    if row then row.definition = r.definition end
  end
end

-- M.build_constraints(cat, by_relid, column_row, fetch): the definition of every constraint row
-- the statement left to it (fetch as M.build's, for constraints). After M.build, before the
-- key columns are named.
function M.build_constraints(cat, by_relid, column_row, fetch)
  local index_of, asked = {}, {}
  for _, index in ipairs(cat.indexes or {}) do index_of[index.oid] = index end
  for _, row in ipairs(cat.constraints or {}) do
    breathe()
    if row.quick then
      local text = write_constraint(row, by_relid, index_of, column_row)
      row.quick = nil
      if text then row.definition = text else asked[#asked + 1] = row end
    end
  end
  for _, index in ipairs(cat.indexes or {}) do index.quick_nulls_not_distinct = nil end
  ask(asked, fetch)
end

-- M.build(cat, by_relid, column_row, fetch): the definition of every index row the statement
-- left to it; fetch(oids) → rows { oid =, definition = } for the ones it cannot write.
-- Before the key columns are named (it reads column_nums).
function M.build(cat, by_relid, column_row, fetch)
  local defaults = cat.settings and cat.settings.btree_defaults or {}
  local asked = {}
  for _, row in ipairs(cat.indexes or {}) do
    breathe()
    if row.quick then
      local text = write(row, by_relid[row.table_oid], defaults, column_row)
      row.quick = nil
      if text then row.definition = text else asked[#asked + 1] = row end
    end
  end
  ask(asked, fetch)
end

return M
