-- tide.verify — source against target: row counts and content checksums per table, computed
-- on the servers; differing rows located by key; sequences compared. docs/verify.md is the
-- reference; the pieces:
--   tide.verify.canonical  the canonical row text, its hash, the SQL over key ranges
--   tide.verify.compare    one table: checksums, locating, sampling, rechecking
--   tide.verify.pairs      the pool of connection pairs and the consistent snapshot
--   tide.verify.report     text and JSON output
--
-- Signatures:
--   verify.run(task [, opts]) → report
--       Compares every table of the plan (plan.tables) and every sequence (plan.sequences).
--       opts override the playbook's `verify = {...}` (see M.OPTIONS) and may also hold
--         plan = plan            an already built plan (else built here: tide.plan.build)
--         open = function(side [, connect_opts]) → conn   opens "source" / "target"
--                                (default: tide.connect.open with the canonical settings)
--         progress = function(result)   called as each table finishes
--       report = { task =, ok = bool, status = "match" | "different" | "incomplete",
--         tables = { result, ... },     -- plan order
--         sequences = { seq_result, ... },
--         summary = { tables =, match =, different =, incomplete =, sequences =, sequences_match = },
--         consistent = { lsn =, slot = } | nil, hash = "fast" | "md5", seconds = }
--       result = { key =, source = {schema=,name=}, target = {schema=,name=}, keyed = bool,
--         status = "match" | "different" | "missing" (no target table) | "error" | "timeout",
--         source_rows =, target_rows =, seconds =, error = message | nil, chunks =,
--         differences = { { kind = "missing" | "extra" | "different",
--                           key = { [source column] = text }, values = {texts}, columns = {names},
--                           changed = { { column = target name, source_column =, source = shown,
--                                         target = shown }, ... } (kind "different" only) }, ... },
--         detail_error = message | nil (the columns of the different rows could not be read),
--         counts = { missing =, extra =, different = }, truncated = bool,
--         sampled = { percent =, chunks =, of = } | nil, rechecks = n | nil }
--       seq_result = { key =, source =, target =, source_next =, target_next =, offset =,
--         expected =, status = "match" | "ahead" | "behind" | "missing" | "error", error = }
--         (next = the value nextval would return; expected = source_next + offset; "ahead"
--         counts as matching)
--       Raises on a connection failure or a playbook mistake; table-level failures are results.
--   verify.cutover_hook([opts]) → function(t): for `on.cutover`; runs verify.run(t, opts)
--       (with t.plan when the running task has one), prints the report unless opts.quiet,
--       returns the report when everything matches, else raises failure "mismatch" (exit 6)
--       or "failed" (exit 1), so the task does not report success.
local core = require "tide.core"
local failure = require "tide.failure"
local units = require "tide.units"
local playbook = require "tide.playbook"
local canonical = require "tide.verify.canonical"
local compare = require "tide.verify.compare"
local pairs_mod = require "tide.verify.pairs"
local report_mod = require "tide.verify.report"
local pattern = require "tide.pattern"

local M = {}

------------------------------------------------------------------------ options

local duration, size = units.parse_duration, units.parse_size

local function integer_at_least(min)
  return function(v) return math.type(v) == "integer" and v >= min and v or nil end
end

-- name → { parse(v) → value | nil, expected, default }
M.OPTIONS = {
  jobs               = { integer_at_least(1), "a positive integer", 4 },
  tables             = { function(v)
                           if type(v) ~= "table" then return nil end
                           for _, x in ipairs(v) do
                             if type(x) ~= "string" and not (type(x) == "table" and type(x.re) == "string") then return nil end
                           end
                           return v
                         end, 'a list of table names or patterns such as { "public.users", "sales.*" }' },
  max_differences    = { integer_at_least(1), "a positive integer", 100 },
  leaf_rows          = { integer_at_least(1), "a positive integer", 500 },
  fanout             = { integer_at_least(2), "an integer of at least 2", 16 },
  chunk_rows         = { integer_at_least(1), "a positive integer", 50000 },
  sample             = { function(v) return type(v) == "number" and v > 0 and v <= 100 and v or nil end,
                         "a percentage above 0 and at most 100" },
  sample_larger_than = { size, 'a size such as "10GB" or a number of bytes', 0 },
  table_timeout      = { function(v) local d = duration(v); return d and d > 0 and d or nil end,
                         'a duration such as "30min" or a number of seconds' },
  sequences          = { function(v) if type(v) == "boolean" then return v end end, "true or false", true },
  sequence_offset    = { function(v) return (math.type(v) == "integer" or type(v) == "function") and v or nil end,
                         "an integer (or a function(seq) returning one)", 0 },
  recheck            = { integer_at_least(0), "a number of attempts (0 or more)" },
  recheck_delay      = { duration, 'a duration such as "5s" or a number of seconds', 5 },
  hash               = { function(v) return (v == "fast" or v == "md5") and v or nil end, '"fast" or "md5"', "fast" },
  wait_for_lsn       = { function(v) return type(v) == "function" and v or nil end, "a function(lsn)" },
  snapshot_timeout   = { function(v) local d = duration(v); return d and d > 0 and d or nil end,
                         'a duration such as "5min" or a number of seconds', 300 },
}

local PROGRAM_ONLY = { plan = true, open = true, progress = true, tables_from = true }

-- M.options(task [, overrides]) → options: the playbook's verify = {...}, then overrides,
-- checked and parsed (durations in seconds, sizes in bytes).
function M.options(task, overrides)
  local opts = {}
  local function take(source, where)
    for key, value in pairs(source or {}) do
      if PROGRAM_ONLY[key] and where ~= "verify" then
        opts[key] = value
      else
        local spec = M.OPTIONS[key]
        local prefix = where == "verify" and task.locate and task.locate("verify") or ""
        if not spec then playbook.raise(prefix .. "unknown key '" .. tostring(key) .. "' in " .. where) end
        local parsed = spec[1](value)
        if parsed == nil then
          playbook.raise(string.format("%s%s.%s must be %s", prefix, where, key, spec[2]))
        end
        opts[key] = parsed
      end
    end
  end
  take(task.verify, "verify")
  take(overrides, "verify options")
  for key, spec in pairs(M.OPTIONS) do
    if opts[key] == nil then opts[key] = spec[3] end
  end
  if opts.recheck == nil then
    opts.recheck = (task.phases and task.phases.incremental and not opts.wait_for_lsn) and 3 or 0
  end
  return opts
end

------------------------------------------------------------------------ running

local function table_name(tbl)
  return tbl.source.schema .. "." .. tbl.source.name
end

-- The plan's tables that `names` select: each an exact source name (schema.table, quoted as
-- tbl.key or not) or a pattern of the playbook's selection syntax (tide.pattern: a glob such
-- as "public.order_*", "*.users", or a schema alone "billing"; a { re = ... } regex from Lua).
-- A partitioned table's name selects its leaf partitions. A name that selects nothing is an
-- error; `where` says where the names came from ("--table", "verify.tables").
local function select_tables(plan, names, where)
  if not names then return plan.tables end
  local chosen, out = {}, {}
  local function fail(msg)
    if where == "--table" then failure.raise("usage", msg) end
    playbook.raise(msg)
  end
  for _, name in ipairs(names) do
    local ok, q = pcall(pattern.compile_qualified, name)
    if not ok then fail(string.format("%s %s: %s", where, pattern.describe(name), tostring(q))) end
    local hit = false
    for i, tbl in ipairs(plan.tables) do
      local root = tbl.root
      if tbl.key == name or table_name(tbl) == name or tbl.parent == name
         or q:match(tbl.source.schema, tbl.source.name) or (root and q:match(root.schema, root.name)) then
        chosen[i], hit = true, true
      end
    end
    if not hit then
      local known = {}
      for i, tbl in ipairs(plan.tables) do
        if i > 8 then known[#known + 1] = string.format("and %d more", #plan.tables - 8); break end
        known[i] = table_name(tbl)
      end
      fail(string.format("%s %s selects none of the task's tables (%s)\n  hint: give source names as " ..
        "schema.table or a glob (\"public.order_*\"); `pgtide plan FILE` lists the selected tables",
        where, pattern.describe(name), #known > 0 and table.concat(known, ", ") or "it selects no table"))
    end
  end
  for i, tbl in ipairs(plan.tables) do
    if chosen[i] then out[#out + 1] = tbl end
  end
  return out
end

local function compare_tables(list, tables, opts, ctx, open)
  local order = {}
  for i = 1, #tables do order[i] = i end
  -- Largest first, so the long ones start early and the pool ends together.
  table.sort(order, function(a, b) return (tables[a].bytes or 0) > (tables[b].bytes or 0) end)
  local results, taken = {}, 0
  local function worker(pair)
    while true do
      taken = taken + 1
      local i = order[taken]
      if not i then return end
      pairs_mod.repair(open, pair)
      pairs_mod.table_begin(pair)
      local result = compare.table(pair, tables[i], opts, ctx)
      pairs_mod.table_end(pair, result.error ~= nil or result.detail_error ~= nil)
      results[i] = result
      if opts.progress then opts.progress(result) end
    end
  end
  local handles = {}
  for _, pair in ipairs(list) do handles[#handles + 1] = core.spawn(worker, pair) end
  for _, r in ipairs(require("tide.wait").all(handles)) do
    if not r.ok then error(r.err, 0) end
  end
  return results
end

local function compare_sequence(pair, seq, opts)
  local offset = opts.sequence_offset
  if type(offset) == "function" then offset = offset(seq) or 0 end
  local result = { key = seq.key, source = seq.source, target = seq.target, offset = offset }
  pairs_mod.table_begin(pair)
  local source_next, increment, err = canonical.sequence(pair.source, seq.source.schema, seq.source.name)
  local target_next, terr
  if source_next then
    local _
    target_next, _, terr = canonical.sequence(pair.target, seq.target.schema, seq.target.name)
  end
  pairs_mod.table_end(pair, not (source_next and target_next))
  result.source_next, result.target_next = source_next, target_next
  if not source_next then
    result.status, result.error = "error", "source: " .. (err.message or tostring(err))
  elseif not target_next then
    result.status = terr.sqlstate == "42P01" and "missing" or "error"
    result.error = "target: " .. (terr.message or tostring(terr))
  else
    -- Ahead of the source (in the sequence's direction) is safe: the target will not hand
    -- out a value the source already has. Behind is a difference.
    result.expected = source_next + offset
    local ahead = increment > 0 and target_next > result.expected or increment < 0 and target_next < result.expected
    result.status = target_next == result.expected and "match" or (ahead and "ahead" or "behind")
  end
  return result
end

local function summarize(task, results, sequences, started, consistent)
  local sum = { tables = #results, match = 0, different = 0, incomplete = 0,
                sequences = #sequences, sequences_match = 0 }
  local differs = false
  for _, r in ipairs(results) do
    if r.status == "match" then sum.match = sum.match + 1
    elseif r.status == "different" or r.status == "missing" then sum.different = sum.different + 1; differs = true
    else sum.incomplete = sum.incomplete + 1 end
  end
  local sequences_incomplete = false
  for _, s in ipairs(sequences) do
    if s.status == "match" or s.status == "ahead" then sum.sequences_match = sum.sequences_match + 1
    elseif s.status == "error" then sequences_incomplete = true
    else differs = true end
  end
  local ok = not differs and sum.incomplete == 0 and not sequences_incomplete
  return { task = task.name, ok = ok, status = ok and "match" or (differs and "different" or "incomplete"),
           tables = results, sequences = sequences, summary = sum, consistent = consistent,
           seconds = core.monotonic() - started }
end

function M.run(task, overrides)
  local started = core.monotonic()
  local opts = M.options(task, overrides)
  local open = opts.open or pairs_mod.opener(task)
  local list = pairs_mod.open(open, 1)
  local ok, report = pcall(function()
    local first = list[1]
    local plan = opts.plan or require("tide.plan").build(task, first.source, first.target)
    local tables = select_tables(plan, opts.tables, opts.tables_from or "verify.tables")
    local n = math.max(1, math.min(opts.jobs, #tables))
    if n > 1 then
      for _, pair in ipairs(pairs_mod.open(open, n - 1)) do list[#list + 1] = pair end
    end
    local ctx = canonical.context(first.source, first.target, tables, opts.hash)
    ctx.plan_tables = plan.tables   -- on.route: a destination's expected rows come from its routing tables too
    local consistent
    if opts.wait_for_lsn then consistent = pairs_mod.consistent(open, list, opts.wait_for_lsn, opts.snapshot_timeout) end
    local results = compare_tables(list, tables, opts, ctx, open)
    local sequences = {}
    if opts.sequences and not opts.tables then
      for i, seq in ipairs(plan.sequences) do sequences[i] = compare_sequence(first, seq, opts) end
    end
    local report = summarize(task, results, sequences, started, consistent)
    report.hash = ctx.hash
    return report
  end)
  pairs_mod.close(list)
  if not ok then error(report, 0) end
  return report
end

------------------------------------------------------------------------ command and hook

function M.cutover_hook(hook_opts)
  local overrides, quiet = {}, false
  for k, v in pairs(hook_opts or {}) do
    if k == "quiet" then quiet = v else overrides[k] = v end
  end
  M.options({ verify = {} }, overrides)    -- a mistake in the options shows when the playbook loads
  return function(t)
    local task = getmetatable(t) == playbook.Task and t or (t.task or t)
    local run_opts = {}
    for k, v in pairs(overrides) do run_opts[k] = v end
    run_opts.plan = run_opts.plan or t.plan or task.plan
    local report = M.run(task, run_opts)
    if not quiet then io.write(report_mod.text(report)) end
    if report.ok then return report end
    local sum = report.summary
    local message = string.format("verification at cutover found %s: %d of %d table(s) differ, %d could not be compared, %d of %d sequence(s) differ",
      report.status == "different" and "differences" or "tables it could not compare",
      sum.different, sum.tables, sum.incomplete, sum.sequences - sum.sequences_match, sum.sequences)
    failure.raise(report.status == "different" and "mismatch" or "failed", message, { report = report })
  end
end

return M
