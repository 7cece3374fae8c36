-- The report's pieces without a server or a browser: escaping, the model built from timeline
-- events (a killed run and its successor, a part whose event was lost), the SVG charts and the
-- page, and the recorder's bookkeeping before anything is written.
local T = require "testlib"
local svg = require "tide.report.svg"
local model_mod = require "tide.report.model"
local html_mod = require "tide.report.html"
local timeline = require "tide.timeline"
local json_decode = require("tide.json").decode

local ODD = [[public."a<b> & 'c'"]]

local function ev(seq, at, kind, data) return { seq = seq, at = at, kind = kind, data = data or {} } end

local function count(s, pattern)
  local n = 0
  for _ in s:gmatch(pattern) do n = n + 1 end
  return n
end

-- Two runs: the first killed during the full load (no run_end), the second resuming it, then
-- streaming under a stop condition with a 2 s threshold, a verifying cutover hook, done.
local function sample_runs()
  local t = 1700000000
  local first = { id = "r1", events = {
    ev(1, t, "run_start", { source = { host = "src", port = "5432", dbname = "shop" },
                            target = { host = "tgt", port = "5433", dbname = "shop" }, threshold = 2,
                            stop = "tide.when{lag_below = 2s, for_at_least = 1s}" }),
    ev(2, t + 1, "precheck", { ok = true, checks = { { id = "odd", title = "A <check>", status = "warn",
                               findings = { { object = ODD, message = "x & y" } } } } }),
    ev(3, t + 2, "phase_start", { phase = "schema" }),
    ev(4, t + 4, "phase_end", { phase = "schema", detail = "3 pre-data statements" }),
    ev(5, t + 4, "phase_start", { phase = "full" }),
    ev(6, t + 10, "part_done", { part = "public.big#1", table = "public.big", part_no = 1, parts = 2, rows = 100,
                                 bytes = 6000, seconds = 6 }),
  } }
  local second = { id = "r2", events = {
    ev(1, t + 100, "run_start", { threshold = 2 }),
    ev(2, t + 101, "phase_start", { phase = "full" }),
    ev(3, t + 105, "part_done", { part = ODD, table = ODD, rows = 7, bytes = 70, seconds = 2 }),
    ev(4, t + 106, "step_done", { step = "index:public.big_pkey", kind = "index", seconds = 1 }),
    ev(5, t + 107, "phase_end", { phase = "full" }),
    ev(6, t + 107, "phase_start", { phase = "incremental" }),
    ev(7, t + 109, "sample", { what = "stream", delay = 5, bytes_behind = 100, transactions = 1, changes = 10 }),
    ev(8, t + 111, "sample", { what = "stream", delay = 1, bytes_behind = 0, transactions = 5, changes = 30 }),
    ev(9, t + 112, "stop_condition", { delay = 0.5 }),
    ev(10, t + 112.5, "cutover_hook_start", { hook = 1 }),
    ev(11, t + 114, "cutover_hook_end", { hook = 1, ok = true, seconds = 1.5, verify = { status = "match", ok = true,
      summary = { tables = 2 }, tables = { { table = ODD, status = "match", source_rows = 7, target_rows = 7 } } } }),
    ev(12, t + 115, "phase_end", { phase = "incremental" }),
    ev(13, t + 115, "run_end", { exit = 0 }),
  } }
  -- The state table holds a part whose event the kill lost (copied in the first run).
  local parts = {
    { part = "public.big#2", table_key = "public.big", part_no = 2, parts = 2, rows = 50, bytes = 3000, seconds = 3,
      done_epoch = t + 9 },
    { part = "public.big#1", table_key = "public.big", part_no = 1, parts = 2, rows = 100, bytes = 6000, seconds = 6,
      done_epoch = t + 10 },
  }
  return { first, second }, parts
end

T.test("escape covers what HTML and attributes need", function()
  T.eq(svg.escape([[<a href="x">'&'</a>]]), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;")
  T.eq(svg.escape(nil), "")
  T.eq(svg.escape(42), "42")
end)

T.test("the model: runs, phases, parts (lost events taken from the state), tables, totals", function()
  local runs, parts = sample_runs()
  local m = model_mod.build(runs, { task = "shop", parts = parts })
  T.eq(#m.runs, 2)
  T.eq(m.runs[1].exit, nil, "the killed run has no exit status")
  T.eq(m.runs[2].exit, 0)
  T.eq(m.runs[1].phases[2].name, "full")
  T.eq(m.runs[1].phases[2].finished, false, "the killed run's full load did not finish")
  T.eq(m.runs[1].phases[2].seconds, 6, "an unfinished phase lasts until the run's last event")
  T.eq(m.runs[1].phases[1].seconds, 2)
  T.eq(m.totals.parts, 3)
  T.eq(m.totals.rows, 157)
  T.eq(m.totals.bytes, 9070)
  T.eq(m.totals.runs, 2)
  T.eq(m.totals.seconds, 115)
  local by_key = {}
  for _, t in ipairs(m.tables) do by_key[t.key] = t end
  T.eq({ by_key["public.big"].parts, by_key["public.big"].rows }, { 2, 150 })
  T.eq({ by_key[ODD].parts, by_key[ODD].rows }, { 1, 7 })
  T.eq(m.threshold, 2)
  T.eq(#m.stream_samples, 2)
  T.eq(m.stream_samples[2].rate, 10, "changes per second between samples")
  T.eq(m.cutover.fired, 1700000112)
  T.eq(m.cutover.ended, 1700000114)
  T.eq(m.verify.status, "match")
  T.eq(m.totals.transactions, 5)
end)

T.test("the full load's rate spreads each part's bytes over its copy time", function()
  local rate = model_mod.load_rate({ { started = 0, ended = 10, bytes = 1000 }, { started = 5, ended = 10, bytes = 500 } }, 10)
  T.eq(#rate, 10)
  local total = 0
  for _, r in ipairs(rate) do total = total + r.rate * 1 end
  T.ok(math.abs(total - 1500) < 1e-6, "the bytes add up: " .. total)
  T.eq(rate[1].rate, 100)
  T.eq(rate[10].rate, 200)
end)

T.test("the page: one Gantt bar per part and step, charts with axes and threshold, everything escaped", function()
  local runs, parts = sample_runs()
  local page = html_mod.page(model_mod.build(runs, { task = "shop<1>", parts = parts }))
  T.match(page, "^<!DOCTYPE html>")
  T.eq(count(page, '<rect class="bar part"'), 3)
  T.eq(count(page, '<rect class="bar step"'), 1)
  T.match(page, '<svg class="chart line%-chart delay"')
  T.match(page, '<line class="threshold"')
  T.match(page, "stop condition: lag below 2 s")
  T.match(page, '<svg class="chart line%-chart throughput%-load"')
  T.match(page, '<svg class="chart line%-chart throughput%-stream"')
  T.ok(count(page, '<text class="axis%-label tick"') >= 4, "time axis labels")
  T.match(page, "time %(UTC%)")
  T.match(page, "<title>pgtide report: shop&lt;1&gt;</title>")
  T.match(page, 'public%.&quot;a&lt;b&gt; &amp; &#39;c&#39;&quot;')
  T.nomatch(page, "<b>%s&", "no raw name")
  T.nomatch(page, "a<b>", "the odd name never raw")
  T.match(page, "A &lt;check&gt;")
  T.match(page, "x &amp; y")
  T.match(page, 'class="killed">interrupted<', "the killed run's phase")
  T.match(page, "killed or lost")
  T.match(page, 'data%-phase="schema">2%.0 s<')
  T.match(page, "src:5432/shop")
  T.match(page, 'class="downtime">2%.0 s<', "stop condition to the last hook")
  T.match(page, "Status: <span class=\"match\">match</span>")
  T.nomatch(page, "<script")
end)

T.test("a page without stream or samples says so instead of drawing empty charts", function()
  local m = model_mod.build({ { id = "x", events = { ev(1, 10, "run_start", {}), ev(2, 11, "phase_start", { phase = "schema" }),
                                                     ev(3, 12, "phase_end", { phase = "schema" }), ev(4, 12, "run_end", { exit = 5, message = "precheck <failed>" }) } } },
                            { task = "t" })
  local page = html_mod.page(m)
  T.match(page, "No table part or post%-data step was recorded")
  T.match(page, "The task did not stream changes")
  T.match(page, "No precheck report was recorded")
  T.match(page, "5: precheck &lt;failed&gt;")
  T.eq(count(page, "<svg"), 0)
end)

T.test("time ticks are round and within the span", function()
  local ticks, step = svg.time_ticks(1000, 1100)
  T.eq(step, 15)
  T.eq(ticks[1], 1005)
  T.ok(ticks[#ticks] <= 1100)
  T.eq(svg.nice_max(7), 10)
  T.eq(svg.nice_max(0.3), 0.5)
end)

T.test("endpoints keep host, port and database of a masked conninfo, never the password", function()
  local core = require "tide.core"
  local e = timeline.endpoint(core.mask_conninfo("postgresql://u:secret@db.example:6543/shop?sslmode=disable"))
  T.eq(e, { host = "db.example", port = "6543", dbname = "shop" })
  e = timeline.endpoint([[user=u password=******** dbname='my db' host=h]])
  T.eq(e, { host = "h", dbname = "my db" })
  T.eq(timeline.threshold(require("tide.when") { lag_below = "1.5s", for_at_least = "3s" }), 1.5)
  T.eq(timeline.threshold(function() return true end), nil)
  local run = require("tide.taskrun").new({ name = "t", phases = {}, stop = function() return true end })
  T.eq(json_decode(timeline.new(run).pending[1].json).d.stop, "a Lua function", "not a function's address")
end)

T.test("the recorder keeps events in memory until the run reaches a phase, and bounds them", function()
  local task = { name = "t", phases = { full = true }, source_info = "host=a", target_info = "host=b" }
  local run = require("tide.taskrun").new(task)
  local r = timeline.new(run)
  local json = require "tide.json"
  local function data(i) return json.decode(r.pending[i].json).d end
  T.eq(r.pending[1].k, "run_start")
  T.eq(data(1).source, { host = "a" })
  r:record("precheck", { ok = true })
  T.eq(r.writing, false, "nothing is written before a phase starts (prechecks write nothing)")
  local max = timeline.MAX_PENDING
  timeline.MAX_PENDING = 5
  for i = 1, 4 do r:record("sample", { i = i }) end
  r:record("note", {})
  T.eq(#r.pending, 5)
  T.eq({ r.pending[1].k, r.pending[2].k, data(3).i, data(4).i, r.pending[5].k },
       { "run_start", "precheck", 3, 4, "note" }, "the oldest samples went first")
  timeline.MAX_PENDING = max
  T.eq(r.pending[#r.pending].s, 7, "sequence numbers keep counting")
  local cyclic = {}
  cyclic.again = cyclic
  r:record("odd", cyclic)
  T.match(r.pending[#r.pending].json, '"unrecorded"', "a value JSON cannot hold is replaced, not kept")
end)

T.test("pgtide report: its help, and usage errors with exit status 2", function(ctx)
  local pgtide = os.getenv("PGTIDE") or "build/pgtide"
  local code, out = T.sh(pgtide .. " help report")
  T.eq(code, 0)
  T.match(out, "report FILE %[%-o PATH%]")
  code, out = T.sh(pgtide .. " help")
  T.eq(code, 0)
  T.match(out, "report FILE")
  for _, args in ipairs({ "report", "report a.lua b.lua", "report a.lua -o", "report --frob a.lua" }) do
    code, out = T.sh(pgtide .. " " .. args .. " 2>&1")
    T.eq(code, 2, args .. ": " .. out)
    T.nomatch(out, "internal error", args)
  end
  local missing = ctx.tmpdir .. "/no-such-playbook.lua"
  code = T.sh(pgtide .. " report " .. missing .. " 2>&1")
  T.eq(code, 3, "a playbook that cannot be read is a playbook error")
end)
