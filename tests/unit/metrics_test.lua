-- tide.metrics without a server: the exposition text of a run (a parser here reads it back,
-- as a scraper would), escaping, the per-table limit, and metrics.listen's validation.
local T = require "testlib"
local tide = require "tide"
local taskrun = require "tide.taskrun"
local metrics = require "tide.metrics"
local playbook = require "tide.playbook"

local function task_of(extra)
  local def = { name = "unit", source = "postgresql://u:pw-Secret@127.0.0.1:1/s", target = "postgresql://u@127.0.0.1:1/t" }
  for k, v in pairs(extra or {}) do def[k] = v end
  return tide.task(def)
end

local prom = require "prom"
local parse, value_of = prom.parse, prom.value

local function fake_load(n)
  local tables = {}
  for i = 1, n do tables[i] = { table = "public.t" .. i, rows = i * 10, bytes = i * 100 } end
  return { stats = { rows = 0, bytes = 0 }, status = function()
    return { rows = n * 1000, bytes = n * 9000, rows_estimate = 5, parts_done = 2, parts_total = 3, steps_done = 1,
             steps_total = 4, tables = tables, streams = 3 }
  end }
end

T.test("phase, full-load and stream figures, each series with the task label", function()
  local run = taskrun.new(task_of())
  run:set_phase("full")
  run.load = fake_load(2)
  run.stream = { status = function()
    return { transactions = 7, changes = 70, delay = 1.5, source_delay = 1.5, apply_delay = 0.25, bytes_behind = 4096,
             spooled_bytes = 0, reconnects = 1, apply_sessions = 4, conflicts = { skipped = 2, overwritten = 0, tolerated = 1 } }
  end }
  run.retries = 3
  local text = metrics.render(run, { started = 1700000000 })
  local s, types = parse(text)
  T.eq(value_of(s, "pgtide_phase", { phase = "full" }), 1)
  T.eq(value_of(s, "pgtide_phase", { phase = "incremental" }), 0)
  T.eq(value_of(s, "pgtide_full_rows_total"), 2000)
  T.eq(value_of(s, "pgtide_full_bytes_total"), 18000)
  T.eq(value_of(s, "pgtide_table_rows_total", { table = "public.t2" }), 20)
  T.eq(value_of(s, "pgtide_table_bytes_total", { table = "public.t1" }), 100)
  T.eq(value_of(s, "pgtide_full_parts"), 3)
  T.eq(value_of(s, "pgtide_post_data_steps"), 4)
  T.eq(value_of(s, "pgtide_full_copy_streams"), 3)
  T.eq(value_of(s, "pgtide_apply_changes_total"), 70)
  T.eq(value_of(s, "pgtide_apply_delay_seconds"), 0.25)
  T.eq(value_of(s, "pgtide_conflicts_total", { kind = "skipped" }), 2)
  T.eq(value_of(s, "pgtide_reconnects_total"), 1)
  T.eq(value_of(s, "pgtide_apply_sessions_total"), 4)
  T.eq(value_of(s, "pgtide_retries_total"), 3)
  T.eq(value_of(s, "pgtide_last_error_timestamp_seconds"), 0)
  T.eq(types.pgtide_full_rows_total, "counter")
  T.eq(types.pgtide_delay_seconds, "gauge")
  for name, list in pairs(s) do
    T.match(name, "^pgtide_", name)
    for _, x in ipairs(list) do T.eq(x.labels.task, "unit", name) end
  end
  T.nomatch(text, "pw%-Secret")
  T.nomatch(text, "127%.0%.0%.1")
end)

T.test("label values are escaped; the last error's time is exported", function()
  local run = taskrun.new(task_of())
  run.load = fake_load(1)
  local odd = 'public."we\\ird\nname"'
  run.load.status = function()
    return { rows = 1, bytes = 1, tables = { { table = odd, rows = 1, bytes = 1 } } }
  end
  run.last_error = { message = "boom", time = 1700000123.5 }
  local text = metrics.render(run, {})
  T.match(text, 'table="public%.\\"we\\\\ird\\nname\\""', "escaped")
  local s = parse(text)
  T.eq(value_of(s, "pgtide_table_rows_total", { table = odd }), 1)
  T.eq(value_of(s, "pgtide_last_error_timestamp_seconds"), 1700000123.5)
end)

T.test("per-table series stop at the limit; the totals count every table", function()
  local run = taskrun.new(task_of())
  run.load = fake_load(metrics.TABLE_SERIES_LIMIT + 20)
  local s = parse(metrics.render(run, {}))
  T.eq(#s.pgtide_table_rows_total, metrics.TABLE_SERIES_LIMIT)
  T.eq(value_of(s, "pgtide_full_tables"), metrics.TABLE_SERIES_LIMIT + 20)
  T.eq(value_of(s, "pgtide_full_rows_total"), (metrics.TABLE_SERIES_LIMIT + 20) * 1000)
end)

T.test("metrics.listen: addresses and ports accepted and refused", function()
  for v, want in pairs({ ["127.0.0.1:9187"] = "127.0.0.1", ["0.0.0.0:1"] = "0.0.0.0", ["[::1]:9187"] = "::1",
                         ["localhost:65535"] = "127.0.0.1" }) do
    T.eq(playbook.listen_address(v), want, v)
  end
  for _, v in ipairs({ "127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536", "256.0.0.1:80", "example.com:80", ":9187",
                       "[::1]", "127.0.0.1:99999999", 9187 }) do
    T.eq(playbook.listen_address(v), nil, tostring(v))
  end
  T.raises(function() task_of { metrics = { listen = "127.0.0.1:70000" } } end,
           "metrics%.listen must be an address to listen on")
  T.raises(function() task_of { metrics = { port = 9187 } } end, "unknown key 'port'")
  T.raises(function() task_of { metrics = {} } end, "needs 'listen'")
  T.raises(function() task_of { log_format = "xml" } end, "log_format must be one of")
  T.ok(task_of { metrics = { listen = "127.0.0.1:9187" }, log_format = "json" })
end)
