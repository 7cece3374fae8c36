-- tide.verify.compare — one table on one pair of connections: row counts and checksums, then,
-- when they differ and the table has a key, the differing rows located by key.
--
-- Locating: the key range is cut into `fanout` buckets whose counts and checksums both servers
-- compute in one GROUP BY each (an integer key by arithmetic, any other key at boundaries
-- read from the side with more rows); each bucket that differs is cut again, until a bucket
-- holds at most `leaf_rows` rows, which are then read (key and md5 only) and matched by key:
-- missing on the target, extra on the target, or different. Matching buckets are never
-- descended into, so the work follows the differences, not the table's size.
--
-- Sampling compares a random `sample` percent of key chunks of about `chunk_rows` rows.
-- Rechecking (lag during incremental migration) reads the differing rows again after a delay.
local core = require "tide.core"
local canonical = require "tide.verify.canonical"

local M = {}

-- A failure inside a table's comparison: which side, the server's error, whether our own
-- per-table timeout fired.
local Failure = {}
Failure.__tostring = function(f) return f.message end

local function fail(job, side, err)
  local timeout = job.deadline ~= nil and err and err.sqlstate == "57014"
  error(setmetatable({ side = side and side.which, err = err, timeout = timeout or (side == nil),
    message = side and string.format("%s: %s", side.which, err and (err.message or tostring(err)) or "?")
              or "the table's time limit ran out" }, Failure), 0)
end

-- Run canonical.fn(side, ...) under the table's time limit; raises a Failure on error.
local function call(job, side, fn, ...)
  if job.deadline then
    local left = job.deadline - core.monotonic()
    if left <= 0 then fail(job, nil) end
    local ok, err = side.conn:exec(string.format("SET statement_timeout = %d", math.max(1, math.floor(left * 1000))))
    if not ok then fail(job, side, err) end
  end
  local rows, err = fn(side, ...)
  if not rows then fail(job, side, err) end
  return rows
end

-- The same statement on both servers at once → source rows, target rows.
local function both(job, fn, ...)
  local args = table.pack(...)
  local h = core.spawn(function() return pcall(call, job, job.target, fn, table.unpack(args, 1, args.n)) end)
  local ok, s = pcall(call, job, job.source, fn, ...)
  local okt, t = h:wait()       -- always waited for: the target connection must be idle again
  if not ok then error(s, 0) end
  if not okt then error(t, 0) end
  return s, t
end

local EMPTY = { rows = 0, sum = "0" }

local function same(a, b) return a.rows == b.rows and a.sum == b.sum end

local function stat(row) return { rows = row.rows, sum = row.sum } end

local function row_key(row, n)
  local key = {}
  for i = 1, n do key[i] = tostring(row["k" .. i]) end
  return key
end

local function key_id(key) return table.concat(key, "\0") end

local function ceil_div(a, b) return -(-a // b) end

------------------------------------------------------------------------ differences

local function record(job, kind, key)
  if #job.diffs >= job.opts.max_differences then job.truncated = true; return end
  local named = {}
  for i, name in ipairs(job.key) do named[name] = key[i] end
  job.diffs[#job.diffs + 1] = { kind = kind, key = named, values = key, columns = job.key }
end

-- Match rows read from both sides (key texts and md5) by key, and record what differs.
-- Rows with one key several times (a target without the unique key) pair up by hash.
local function match_rows(job, source_rows, target_rows)
  local n = #job.key
  local entries, order = {}, {}
  local function add(rows, which)
    for _, r in ipairs(rows) do
      local key = row_key(r, n)
      local id = key_id(key)
      local e = entries[id]
      if not e then e = { key = key, s = {}, t = {} }; entries[id] = e; order[#order + 1] = e end
      e[which][#e[which] + 1] = r.h
    end
  end
  add(source_rows, "s")
  add(target_rows, "t")
  if job.int_key then
    table.sort(order, function(a, b) return tonumber(a.key[1]) < tonumber(b.key[1]) end)
  end
  for _, e in ipairs(order) do
    local left = {}
    for _, h in ipairs(e.s) do left[h] = (left[h] or 0) + 1 end
    local target_only = 0
    for _, h in ipairs(e.t) do
      if (left[h] or 0) > 0 then left[h] = left[h] - 1 else target_only = target_only + 1 end
    end
    local source_only = 0
    for _, c in pairs(left) do source_only = source_only + c end
    local changed = math.min(source_only, target_only)
    for _ = 1, changed do record(job, "different", e.key) end
    for _ = 1, source_only - changed do record(job, "missing", e.key) end
    for _ = 1, target_only - changed do record(job, "extra", e.key) end
  end
end

-- How a column's value is shown: NULL, a quoted start of its text (control characters
-- escaped), cut after canonical.SHOW_CHARS characters with its length and hash; bytea by
-- length and hash only.
local function show(row, i, bytea)
  local n, h, v = row["c" .. i .. "n"], row["c" .. i .. "h"], row["c" .. i .. "v"]
  if n == core.null then return "NULL" end
  local hash = string.sub(h, 1, 8)
  if bytea then return string.format("(bytea, %d bytes, hash %s)", n, hash) end
  local limit = canonical.SHOW_CHARS
  local chars = utf8.len(v)
  local cut = false
  if (chars or #v) > limit then
    v = chars and v:sub(1, utf8.offset(v, limit + 1) - 1) or v:sub(1, limit)
    cut = true
  end
  v = "'" .. v:gsub("'", "''"):gsub("[%c]", function(c)
    local named = { ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }
    return named[c] or string.format("\\x%02x", c:byte())
  end) .. "'"
  if cut then return string.format("%s… (%d bytes, hash %s)", v:sub(1, -2), n, hash) end
  return v
end

-- For each row listed as "different" (one row per side under its key), read the columns of
-- both rows by key and name the columns whose values differ: d.changed = { { column =
-- target name, source_column =, source = shown value, target = shown value }, ... }.
local function describe_columns(job)
  local keys, by_id = {}, {}
  for _, d in ipairs(job.diffs) do
    if d.kind == "different" then
      local id = key_id(d.values)
      if not by_id[id] then by_id[id] = {}; keys[#keys + 1] = d.values end
      table.insert(by_id[id], d)
    end
  end
  local n = #job.key
  local columns = job.tbl.columns
  for first = 1, #keys, 200 do
    local batch = table.move(keys, first, math.min(first + 199, #keys), 1, {})
    local source_rows, target_rows = both(job, canonical.column_values, batch)
    local found = {}
    for which, rows in pairs({ s = source_rows, t = target_rows }) do
      for _, r in ipairs(rows) do
        local id = key_id(row_key(r, n))
        found[id] = found[id] or { s = {}, t = {} }
        table.insert(found[id][which], r)
      end
    end
    for _, key in ipairs(batch) do
      local id = key_id(key)
      local f = found[id]
      if f and #f.s == 1 and #f.t == 1 and #by_id[id] == 1 then
        local changed = {}
        for i, col in ipairs(columns) do
          if f.s[1]["c" .. i .. "h"] ~= f.t[1]["c" .. i .. "h"] then
            local bytea = col.type_oid == 17
            changed[#changed + 1] = { column = col.target, source_column = col.name,
                                      source = show(f.s[1], i, bytea), target = show(f.t[1], i, bytea) }
          end
        end
        by_id[id][1].changed = changed
      end
    end
  end
end

------------------------------------------------------------------------ cutting ranges

local function child(children, index, bucket, range, which, row)
  local c = index[bucket]
  if not c then
    c = { bucket = bucket, range = range, s = EMPTY, t = EMPTY }
    index[bucket] = c
    children[#children + 1] = c
  end
  c[which] = stat(row)
end

-- An integer range [lo, hi] in buckets of equal width (two halves at 0 when wider than a bigint).
local function split_int(job, range)
  local span = range.hi - range.lo          -- negative: wrapped around, wider than a bigint
  if span == 0 then return nil end
  local width = span > 0 and (span // job.opts.fanout + 1) or nil
  local source_rows, target_rows = both(job, canonical.int_buckets, range, width)
  local children, index = {}, {}
  local function bucket_range(b)
    if not width then return b == 0 and { lo = range.lo, hi = -1 } or { lo = 0, hi = range.hi } end
    local lo = range.lo + b * width
    return { lo = lo, hi = (range.hi - lo < width) and range.hi or lo + width - 1 }
  end
  for _, r in ipairs(source_rows) do child(children, index, r.bucket, bucket_range(r.bucket), "s", r) end
  for _, r in ipairs(target_rows) do child(children, index, r.bucket, bucket_range(r.bucket), "t", r) end
  table.sort(children, function(a, b) return a.bucket < b.bucket end)
  return children
end

-- A key range cut at every (rows / fanout)-th key of the side that holds more rows.
local function split_keys(job, range, s, t)
  local from = t.rows > s.rows and job.target or job.source
  local step = math.max(1, ceil_div(math.max(s.rows, t.rows), job.opts.fanout))
  local rows = call(job, from, canonical.boundaries, range, step, job.opts.fanout - 1)
  local bounds, last = {}, range.lower and key_id(range.lower)
  for _, r in ipairs(rows) do
    local key = row_key(r, #job.key)
    local id = key_id(key)
    if id ~= last then bounds[#bounds + 1] = key; last = id end
  end
  if #bounds == 0 then return nil end
  local source_rows, target_rows = both(job, canonical.cut_buckets, range, bounds)
  local children, index = {}, {}
  local function bucket_range(b)
    return { lower = b == 0 and range.lower or bounds[b], upper = b == #bounds and range.upper or bounds[b + 1] }
  end
  for _, r in ipairs(source_rows) do child(children, index, r.bucket, bucket_range(r.bucket), "s", r) end
  for _, r in ipairs(target_rows) do child(children, index, r.bucket, bucket_range(r.bucket), "t", r) end
  table.sort(children, function(a, b) return a.bucket < b.bucket end)
  return children
end

local function leaf(job, range, s, t)
  local limit = math.max(s.rows, t.rows) + job.opts.leaf_rows
  local source_rows, target_rows = both(job, canonical.rows, range, limit)
  match_rows(job, source_rows, target_rows)
end

-- Locate the differing rows of a range whose counts/checksums are s (source) and t (target).
local function locate(job, range, s, t)
  if job.truncated then return end
  job.chunks = job.chunks + 1
  local children
  if math.max(s.rows, t.rows) > job.opts.leaf_rows then
    if range.lo then children = split_int(job, range) else children = split_keys(job, range, s, t) end
  end
  if not children then return leaf(job, range, s, t) end
  for _, c in ipairs(children) do
    if not same(c.s, c.t) then
      if job.truncated then return end
      if #job.diffs >= job.opts.max_differences then job.truncated = true; return end
      locate(job, c.range, c.s, c.t)
    end
  end
end

-- The table's whole key range: [min, max] over both sides for an integer key.
local function whole_range(job)
  if not job.int_key then return {} end
  local source_rows, target_rows = both(job, canonical.int_bounds)
  local lo, hi
  for _, r in ipairs({ source_rows[1], target_rows[1] }) do
    if r.lo ~= core.null then
      lo = lo and math.min(lo, r.lo) or r.lo
      hi = hi and math.max(hi, r.hi) or r.hi
    end
  end
  if not lo then return nil end
  return { lo = lo, hi = hi }
end

------------------------------------------------------------------------ the table

local function compare_whole(job, result)
  local source_rows, target_rows = both(job, canonical.checksum, nil)
  local s, t = stat(source_rows[1]), stat(target_rows[1])
  result.source_rows, result.target_rows = s.rows, t.rows
  if same(s, t) then result.status = "match"; return end
  result.status = "different"
  if not job.key then return end
  local range = whole_range(job)
  if range then locate(job, range, s, t) end
end

-- k distinct numbers of 1..n, sorted (Floyd's algorithm: k draws, whatever n).
local function choose(n, k)
  local set, list = {}, {}
  for j = n - k + 1, n do
    local t = math.random(j)
    if set[t] then t = j end
    set[t] = true
    list[#list + 1] = t
  end
  table.sort(list)
  return list
end

-- The sampled chunks: `sample` percent of the key chunks of about chunk_rows rows each, at
-- random; nil when the table cannot be cut (an integer key range wider than a bigint).
local function sample_chunks(job, size)
  local opts = job.opts
  local estimate = size.rows_estimate > 0 and size.rows_estimate or math.max(1, size.bytes // 100)
  local wanted = math.max(1, ceil_div(estimate, opts.chunk_rows))
  local function count(n) return math.min(n, math.max(1, math.ceil(n * opts.sample / 100))) end
  local chosen = {}
  if job.int_key then
    local range = whole_range(job)
    if not range then return { chunks = {}, of = 0 } end
    if range.hi - range.lo < 0 then return nil end
    local width = (range.hi - range.lo) // wanted + 1
    local n = (range.hi - range.lo) // width + 1
    for i, c in ipairs(choose(n, count(n))) do
      local lo = range.lo + (c - 1) * width
      chosen[i] = { lo = lo, hi = (range.hi - lo < width) and range.hi or lo + width - 1 }
    end
    return { chunks = chosen, of = n }
  end
  -- Other keys: chunk boundaries from a page sample of the source (TABLESAMPLE SYSTEM).
  local rows = call(job, job.source, canonical.sample_keys, math.min(100, 100 * wanted / estimate))
  local all, lower = {}, nil
  for _, r in ipairs(rows) do
    local key = row_key(r, #job.key)
    if not lower or key_id(key) ~= key_id(lower) then
      all[#all + 1] = { lower = lower, upper = key }
      lower = key
    end
  end
  all[#all + 1] = { lower = lower }
  for i, c in ipairs(choose(#all, count(#all))) do chosen[i] = all[c] end
  return { chunks = chosen, of = #all }
end

local function compare_sample(job, result)
  job.sample = job.sample or sample_chunks(job, job.size)
  if not job.sample then return compare_whole(job, result) end
  result.sampled = { percent = job.opts.sample, chunks = #job.sample.chunks, of = job.sample.of }
  result.source_rows, result.target_rows, result.status = 0, 0, "match"
  for _, range in ipairs(job.sample.chunks) do
    local source_rows, target_rows = both(job, canonical.checksum, range)
    local s, t = stat(source_rows[1]), stat(target_rows[1])
    result.source_rows = result.source_rows + s.rows
    result.target_rows = result.target_rows + t.rows
    if not same(s, t) then
      result.status = "different"
      locate(job, range, s, t)
    end
  end
end

-- Read the listed differing rows again; keep those that still differ.
local function recheck_rows(job)
  local keys, by_id = {}, {}
  for _, d in ipairs(job.diffs) do
    local id = key_id(d.values)
    if not by_id[id] then by_id[id] = true; keys[#keys + 1] = d.values end
  end
  job.diffs = {}
  for first = 1, #keys, 200 do
    local batch = table.move(keys, first, math.min(first + 199, #keys), 1, {})
    local source_rows, target_rows = both(job, canonical.rows_by_keys, batch)
    match_rows(job, source_rows, target_rows)
  end
end

-- During incremental migration a difference may be lag: compare again after a delay.
local function recheck(job, result)
  for attempt = 1, job.opts.recheck do
    if result.status ~= "different" then return end
    core.sleep(job.opts.recheck_delay)
    result.rechecks = attempt
    if job.key and #job.diffs > 0 and not job.truncated then
      recheck_rows(job)
      if #job.diffs > 0 then goto continue end
    end
    job.diffs, job.truncated = {}, false
    if job.size then compare_sample(job, result) else compare_whole(job, result) end
    ::continue::
  end
end

-- M.prepare(tbl) → job: the plan's table with its usable key (every key column copied).
function M.prepare(tbl)
  local by_name = {}
  for _, c in ipairs(tbl.columns) do by_name[c.name] = c end
  local key
  if tbl.key_columns and #tbl.key_columns > 0 then
    key = {}
    for i, name in ipairs(tbl.key_columns) do
      if not by_name[name] then key = nil; break end
      key[i] = name
    end
  end
  local int_key = key and #key == 1 and tbl.int_key == key[1] and tbl.int_key or nil
  return { tbl = tbl, by_name = by_name, key = key, int_key = int_key }
end

-- M.table(pair, tbl, opts, ctx) → result (see tide.verify). pair = { source =, target = }.
function M.table(pair, tbl, opts, ctx)
  local started = core.monotonic()
  if tbl.transform or tbl.route_sources then
    -- on.row: the source's rows through the same function, compared on the target (with the
    -- rows other tables' functions route to it, on.route).
    local result = { key = tbl.key, source = tbl.source, target = tbl.target, keyed = tbl.key_columns ~= nil,
                     differences = {}, truncated = false, chunks = 1 }
    local ok, err = pcall(require("tide.verify.transformed").compare, pair, tbl, result, opts.max_differences,
                          ctx and ctx.plan_tables)
    if not ok then
      result.error = type(err) == "table" and err.message or tostring(err)
      result.status = type(err) == "table" and err.side == "target" and err.err and err.err.sqlstate == "42P01"
        and "missing" or "error"
    end
    result.counts = { missing = 0, extra = 0, different = 0 }
    for _, d in ipairs(result.differences) do result.counts[d.kind] = result.counts[d.kind] + 1 end
    result.counts_override = nil
    result.seconds = core.monotonic() - started
    return result
  end
  local job = M.prepare(tbl)
  job.opts, job.diffs, job.truncated, job.chunks = opts, {}, false, 0
  job.source = canonical.side(pair.source, job, "source", ctx)
  job.target = canonical.side(pair.target, job, "target", ctx)
  if opts.table_timeout then job.deadline = started + opts.table_timeout end
  local result = { key = tbl.key, source = tbl.source, target = tbl.target, keyed = job.key ~= nil }
  local ok, err = pcall(function()
    if opts.sample and job.key then
      job.size = call(job, job.source, canonical.size)[1]
      if job.size.bytes < opts.sample_larger_than then job.size = nil end
    end
    if job.size then compare_sample(job, result) else compare_whole(job, result) end
    recheck(job, result)
  end)
  if ok and job.key and #job.diffs > 0 then
    -- The located rows are known; naming their columns is extra detail: a failure here
    -- leaves the differences as they are and says why the columns are not named.
    local dok, derr = pcall(describe_columns, job)
    if not dok then
      if getmetatable(derr) ~= Failure then error(derr, 0) end
      result.detail_error = derr.message
    end
  end
  if not ok then
    if getmetatable(err) ~= Failure then error(err, 0) end
    result.error = err.message
    if err.timeout then result.status = "timeout"
    elseif err.side == "target" and err.err and err.err.sqlstate == "42P01" then result.status = "missing"
    else result.status = "error" end
  end
  if job.deadline then
    for _, side in ipairs({ job.source, job.target }) do side.conn:exec("SET statement_timeout = 0") end
  end
  result.differences, result.truncated, result.chunks = job.diffs, job.truncated, job.chunks
  result.counts = { missing = 0, extra = 0, different = 0 }
  for _, d in ipairs(job.diffs) do result.counts[d.kind] = result.counts[d.kind] + 1 end
  if result.status == "match" and #job.diffs > 0 then result.status = "different" end
  result.seconds = core.monotonic() - started
  return result
end

return M
