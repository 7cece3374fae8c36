-- tide.verify.canonical — the SQL verify runs: the canonical text of a row, its hash, and the
-- statements over key ranges (counts and checksums, buckets, boundaries, rows).
--
-- The canonical text of a row is `ROW(c1, c2, ...)::text` over the copied columns in the
-- source's column order, each side naming its own columns (renames map the target's), so
-- names never enter it. Record output keeps NULL (nothing between the commas) apart from ''
-- (`""`), quotes delimiters inside values, and detoasts every value. The session settings that
-- change a type's text form are fixed on every verify connection (SETTINGS below, plus the
-- engine's DateStyle, IntervalStyle, extra_float_digits and bytea_output).
--
-- The row hash is a 64-bit bigint: with ctx.hash "fast" a chain of hashtextextended (the
-- server's own 64-bit string hash, the one hash partitioning relies on staying the same
-- across versions; used when both servers have it and give the same value for a probe
-- string) over the columns' texts, each seeded with the hash so far (see M.side); else the
-- first 64 bits of md5 of the canonical text (ctx.hash "md5", about twice the CPU).
-- A range's checksum is count(*) with sum(hash) as numeric (exact, never overflows), so
-- duplicate rows count and the order of rows does not matter. Rows compared one by one use
-- the whole md5.
--
-- A side is what one server needs to read one table: { conn, rel, filter, hash, md5, keys }.
-- A range is { lo =, hi = } (integers, inclusive) for a table with an integer key, or
-- { lower = {texts} | nil (inclusive), upper = {texts} | nil (exclusive) } on the key columns.
-- Key values travel as text both ways and are passed back as untyped parameters, so each
-- server parses them with its own column type.
local M = {}

-- Settings that change the text form of values, identical on both sides.
M.SETTINGS = { TimeZone = "UTC", lc_monetary = "C", statement_timeout = "0", jit = "off",
               idle_in_transaction_session_timeout = "0" }

local FLOAT_TYPES = { [700] = true, [701] = true }
local BYTEA = 17
local BPCHAR = 1042

-- Tables with more columns than this hash their record text rather than a chain of column
-- hashes (a chain is an expression nested as deep as there are columns).
M.CHAIN_COLUMNS = 200

-- How much of a differing value is shown (characters), and how much is read to show it.
M.SHOW_CHARS = 40

-- The select-list items that describe column i of a row for the report: c<i>h the md5 of the
-- column's piece of the canonical text (ROW(expr)::text: NULL is "()", '' is '("")', so the
-- piece of a changed value, NULL or not, changes), c<i>n its length (bytes; of the value for
-- bytea, else of its text), c<i>v the start of its text (not for bytea, which is shown by
-- length and hash only).
function M.column_detail(ident, expr, i, bytea)
  local items = { string.format("md5(ROW(%s)::text) AS c%dh", expr, i) }
  if bytea then
    items[2] = string.format("octet_length(%s) AS c%dn", ident, i)
  else
    items[2] = string.format("octet_length(%s::text) AS c%dn", ident, i)
    items[3] = string.format("left(%s::text, %d) AS c%dv", ident, M.SHOW_CHARS + 1, i)
  end
  return table.concat(items, ", ")
end

-- Parameters collected while a statement is written: p:add(v) → "$n".
local function params()
  local p = { n = 0 }
  function p.add(v) p.n = p.n + 1; p[p.n] = v; return "$" .. p.n end
  return p
end

-- Expression for one column inside the canonical row.
local function column_expr(q, name, col, ctx)
  local ident = q(name)
  if ctx.legacy_float and FLOAT_TYPES[col.type_oid] then
    -- Before PostgreSQL 12 a float's text depends on the version; hash its exact bits, and
    -- every NaN alike (the bits of a NaN are not preserved by a text COPY).
    return string.format("CASE WHEN %s = 'NaN' THEN 'NaN' ELSE encode(float8send(%s::float8), 'hex') END",
                         ident, ident)
  end
  return ident
end

-- side(conn, job, which, ctx) → the side's description. `which` is "source" or "target";
-- job = { tbl = (plan.tables entry), key = {source column names} | nil, int_key = name | nil,
--         by_name = { [source column name] = column } };
-- ctx = { legacy_float =, convert_utf8 =, collatable = { [type_oid] = true } }.
function M.side(conn, job, which, ctx)
  local tbl = job.tbl
  local q = function(s) return conn:quote_ident(s) end
  local is_source = which == "source"
  local names, exprs, details = {}, {}, {}
  for i, col in ipairs(tbl.columns) do
    names[col.name] = is_source and col.name or col.target
    exprs[i] = column_expr(q, names[col.name], col, ctx)
    details[i] = M.column_detail(q(names[col.name]), exprs[i], i, col.type_oid == BYTEA)
  end
  local text = "ROW(" .. table.concat(exprs, ", ") .. ")::text"
  if ctx.convert_utf8 then text = "convert_to(" .. text .. ", 'UTF8')" end
  local side = {
    conn = conn, which = which,
    rel = "ONLY " .. q(tbl[which].schema) .. "." .. q(tbl[which].name),
    -- The target side of an extension's configuration table: only the rows of its
    -- condition (the others are the ones CREATE EXTENSION made).
    filter = is_source and tbl.row_filter or (not is_source and tbl.target_filter) or nil,
    md5 = "md5(" .. text .. ")",
    keys = {}, key_texts = {}, details = details,
  }
  if ctx.hash == "fast" and #exprs <= M.CHAIN_COLUMNS then
    -- Chained over the columns, no record text built (about 1.5× faster than hashing the
    -- record text): h0 = 0, h_i = hashtextextended(text_i, h_(i-1) XOR is_null_i), so the
    -- column's position (the seed carries everything before it), NULL against '' (the seed's
    -- low bit) and every byte of every value enter the row's 64-bit hash.
    -- char(n) hashes with its own function (trailing blanks do not count in char(n), and
    -- its cast to text, which strips them, costs more than all the other work on the row).
    local h = "0"
    for i, col in ipairs(tbl.columns) do
      local ident = q(names[col.name])
      if exprs[i] == ident and col.type_oid == BPCHAR then
        h = string.format("hashbpcharextended(coalesce(%s::bpchar, '') COLLATE \"C\", %s # (%s IS NULL)::int::int8)", ident, h, ident)
      else
        local value = exprs[i] == ident and (ident .. "::text") or exprs[i]
        h = string.format("hashtextextended(coalesce(%s, ''), %s # (%s IS NULL)::int::int8)", value, h, ident)
      end
    end
    side.hash = h
  elseif ctx.hash == "fast" then
    side.hash = "hashtextextended(" .. text .. ", 0)"
  else
    side.hash = "('x' || left(" .. side.md5 .. ", 16))::bit(64)::bigint"
  end
  for i, key in ipairs(job.key or {}) do
    local col = job.by_name[key]
    local ident = q(names[key])
    side.keys[i] = ctx.collatable[col.type_oid] and (ident .. ' COLLATE "C"') or ident
    side.key_texts[i] = ident .. "::text AS k" .. i
  end
  side.int_key = job.int_key and q(names[job.int_key]) or nil
  return side
end

local function tuple(list)
  return "(" .. table.concat(list, ", ") .. ")"
end

-- The WHERE clause for `range` on `side` (the row filter first, on the source).
local function where(side, range, p)
  local conds = {}
  if side.filter then conds[#conds + 1] = "(" .. side.filter .. ")" end
  if range and range.lo then
    conds[#conds + 1] = string.format("%s BETWEEN %s::bigint AND %s::bigint", side.int_key, p.add(range.lo), p.add(range.hi))
  elseif range then
    local function bound(values, op)
      local ps = {}
      for i, v in ipairs(values) do ps[i] = p.add(v) end
      conds[#conds + 1] = tuple(side.keys) .. " " .. op .. " " .. tuple(ps)
    end
    if range.lower then bound(range.lower, ">=") end
    if range.upper then bound(range.upper, "<") end
  end
  if #conds == 0 then return "" end
  return " WHERE " .. table.concat(conds, " AND ")
end

local function run(side, sql, p)
  return side.conn:query(sql, table.unpack(p, 1, p.n))
end

-- count and checksum of a range (nil: the whole table) → rows or nil, err
function M.checksum(side, range)
  local p = params()
  local sql = "SELECT count(*) AS rows, coalesce(sum(" .. side.hash .. "), 0)::text AS sum FROM " ..
              side.rel .. where(side, range, p)
  return run(side, sql, p)
end

-- smallest and largest integer key → rows ({lo, hi}, NULL when empty)
function M.int_bounds(side)
  local p = params()
  local sql = string.format("SELECT min(%s) AS lo, max(%s) AS hi FROM %s%s", side.int_key, side.int_key,
                            side.rel, where(side, nil, p))
  return run(side, sql, p)
end

-- Counts and checksums per bucket. The volatile (but parallel-safe) clock_timestamp() keeps
-- the planner from flattening the inner query: flattened, it would estimate as many buckets
-- as keys, sort every row with all its columns (spilling to disk) and hash after the sort;
-- kept apart, it hashes in the scan and groups the few buckets in a parallel hash aggregate.
function M.grouped(bucket, side, where_clause)
  return "SELECT bucket, count(*) AS rows, sum(h)::text AS sum FROM (SELECT " .. bucket .. " AS bucket, " ..
         side.hash .. " AS h, clock_timestamp() AS barrier FROM " .. side.rel .. where_clause .. ") s GROUP BY bucket"
end

-- Counts and checksums of the buckets of an integer range: bucket = (key - lo) / width, or,
-- with width nil (a range wider than a bigint), bucket 0 for negative keys and 1 for the rest.
function M.int_buckets(side, range, width)
  local p = params()
  local w = where(side, range, p)
  local bucket
  if width then
    bucket = string.format("(%s - %s::bigint) / %s::bigint", side.int_key, p.add(range.lo), p.add(width))
  else
    bucket = string.format("CASE WHEN %s < 0 THEN 0 ELSE 1 END", side.int_key)
  end
  return run(side, M.grouped(bucket, side, w), p)
end

-- Every step-th key of a range in key order (at most `limit`), as texts k1..kn.
function M.boundaries(side, range, step, limit)
  local p = params()
  local w = where(side, range, p)
  local inner_keys = {}
  for i, k in ipairs(side.keys) do inner_keys[i] = k end
  local sql = string.format([[
SELECT %s FROM (
  SELECT %s, row_number() OVER (ORDER BY %s) AS rn FROM %s%s
) s WHERE rn %% %s = 0 ORDER BY rn LIMIT %s]],
    table.concat(M.out_keys(#side.keys), ", "), table.concat(side.key_texts, ", "),
    table.concat(inner_keys, ", "), side.rel, w, p.add(step), p.add(limit))
  return run(side, sql, p)
end

-- Keys of a sample of about `percent` % of the table's pages, sorted (sampling chunks).
function M.sample_keys(side, percent)
  local p = params()
  local sql = string.format("SELECT %s FROM %s TABLESAMPLE SYSTEM (%s::float4)%s ORDER BY %s",
    table.concat(side.key_texts, ", "), side.rel, p.add(percent), where(side, nil, p),
    table.concat(side.keys, ", "))
  return run(side, sql, p)
end

-- The table's size on disk and its row estimate (pg_class.reltuples, -1 when never analyzed).
function M.size(side)
  local rel = side.rel:gsub("^ONLY ", "")
  return side.conn:query("SELECT pg_table_size($1::regclass) AS bytes, reltuples::bigint AS rows_estimate " ..
                         "FROM pg_catalog.pg_class WHERE oid = $1::regclass", rel)
end

-- k1, k2, ... (the names of key texts in result rows)
function M.out_keys(n)
  local out = {}
  for i = 1, n do out[i] = "k" .. i end
  return out
end

-- Counts and checksums per bucket of a range cut at `bounds` (a list of key tuples): bucket
-- i holds the keys from bounds[i] (inclusive) to bounds[i + 1]; bucket 0 those below bounds[1].
function M.cut_buckets(side, range, bounds)
  local p = params()
  local w = where(side, range, p)
  local whens = {}
  for i = #bounds, 1, -1 do
    local ps = {}
    for j, v in ipairs(bounds[i]) do ps[j] = p.add(v) end
    whens[#whens + 1] = string.format("WHEN %s >= %s THEN %d", tuple(side.keys), tuple(ps), i)
  end
  return run(side, M.grouped("CASE " .. table.concat(whens, " ") .. " ELSE 0 END", side, w), p)
end

-- The rows of a range one by one: key texts k1..kn and the row's md5 h, at most `limit`.
function M.rows(side, range, limit)
  local p = params()
  local w = where(side, range, p)
  local sql = string.format("SELECT %s, %s AS h FROM %s%s ORDER BY %s LIMIT %s",
    table.concat(side.key_texts, ", "), side.md5, side.rel, w, table.concat(side.keys, ", "), p.add(limit))
  return run(side, sql, p)
end

-- WHERE clause selecting the rows with the given keys (lists of key texts), filter first.
local function where_keys(side, keys, p)
  local conds = {}
  if side.filter then conds[1] = "(" .. side.filter .. ")" end
  local tuples = {}
  for i, key in ipairs(keys) do
    local ps = {}
    for j, v in ipairs(key) do ps[j] = p.add(v) end
    tuples[i] = tuple(ps)
  end
  conds[#conds + 1] = tuple(side.keys) .. " IN (" .. table.concat(tuples, ", ") .. ")"
  return " WHERE " .. table.concat(conds, " AND ")
end

-- The rows with the given keys (lists of key texts), as M.rows.
function M.rows_by_keys(side, keys)
  local p = params()
  local sql = string.format("SELECT %s, %s AS h FROM %s%s",
    table.concat(side.key_texts, ", "), side.md5, side.rel, where_keys(side, keys, p))
  return run(side, sql, p)
end

-- The rows with the given keys with each column described (M.column_detail): key texts
-- k1..kn, then c<i>h, c<i>n, c<i>v for every copied column i.
function M.column_values(side, keys)
  local p = params()
  local sql = string.format("SELECT %s, %s FROM %s%s",
    table.concat(side.key_texts, ", "), table.concat(side.details, ", "), side.rel, where_keys(side, keys, p))
  return run(side, sql, p)
end

-- A sequence's state → the value nextval would return next, the increment; or nil, nil, err.
function M.sequence(conn, schema, name)
  local rel = conn:quote_ident(schema) .. "." .. conn:quote_ident(name)
  local rows, err = conn:query("SELECT s.last_value, s.is_called, p.seqincrement AS increment FROM " .. rel ..
                               " s, pg_catalog.pg_sequence p WHERE p.seqrelid = $1::regclass", rel)
  if not rows then return nil, nil, err end
  local r = rows[1]
  if not r then return nil, nil, { message = "no pg_sequence row for " .. rel } end
  return r.is_called and (r.last_value + r.increment) or r.last_value, r.increment
end

local PROBE = "SELECT hashtextextended('pgtide verify probe: 0123456789 abcdefghijklmnopqrstuvwxyz', 0)::text AS h"

-- Facts about the servers that choose the canonical form: ctx for M.side. `hash` is the
-- hash asked for ("fast" or "md5"); ctx.hash is the one used.
function M.context(source, target, tables, hash)
  local ctx = { collatable = {}, hash = "md5" }
  local oids, seen = {}, {}
  for _, tbl in ipairs(tables) do
    for _, col in ipairs(tbl.columns) do
      if not seen[col.type_oid] then seen[col.type_oid] = true; oids[#oids + 1] = col.type_oid end
    end
  end
  local function facts(conn)
    return assert(conn:query("SELECT current_setting('server_version_num')::int AS version, " ..
                             "pg_encoding_to_char(encoding) AS encoding FROM pg_database WHERE datname = current_database()"))[1]
  end
  local s, t = facts(source), facts(target)
  ctx.legacy_float = s.version < 120000 or t.version < 120000
  ctx.convert_utf8 = s.encoding ~= t.encoding
  if hash == "fast" and not ctx.convert_utf8 and s.version >= 110000 and t.version >= 110000 then
    local a, b = source:query(PROBE), target:query(PROBE)
    if a and b and a[1].h == b[1].h then ctx.hash = "fast" end
  end
  if #oids > 0 then
    -- The key ranges compare collatable keys byte-wise (COLLATE "C") so that both servers,
    -- whatever their collations, put the same rows in a range.
    local rows = assert(source:query("SELECT oid FROM pg_catalog.pg_type WHERE oid = ANY($1) AND typcollation <> 0", oids))
    for _, r in ipairs(rows) do ctx.collatable[r.oid] = true end
  end
  return ctx
end

return M
