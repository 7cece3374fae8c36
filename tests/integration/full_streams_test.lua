-- full.jobs = "auto" (the default) on real servers: where the count of COPY streams starts,
-- that it moves one stream at a time within its bounds while the data stays exact, and that
-- the choice is reported (progress, status, metrics).
local T = require "testlib"
local P = require "pg"
local tide = require "tide"
local H = require "tidetest"

local TABLES = 24

local function reset(ctx)
  for _, url in ipairs({ ctx.source_url, ctx.target_url }) do
    local c = assert(tide.connect(url))
    assert(c:exec("DROP SCHEMA IF EXISTS public CASCADE; DROP SCHEMA IF EXISTS pgtide CASCADE; CREATE SCHEMA public"))
    c:close()
  end
end

-- TABLES tables of `rows` rows of about 100 bytes, each with a secondary index.
local function fill(ctx, rows)
  local s = assert(tide.connect(ctx.source_url))
  for i = 1, TABLES do
    assert(s:exec(string.format([[
CREATE TABLE t%d (id int PRIMARY KEY, v text, n numeric);
INSERT INTO t%d SELECT g, md5(g::text) || md5((g * 7)::text) || md5((g * 13)::text), g * 1.5
  FROM generate_series(1, %d) g;
CREATE INDEX t%d_v ON t%d (v);
ANALYZE t%d]], i, i, rows, i, i, i)))
  end
  return s
end

local function same_tables(s, t)
  for i = 1, TABLES do T.eq(P.fingerprint(t, "public.t" .. i), P.fingerprint(s, "public.t" .. i), "table t" .. i) end
end

-- What "auto" starts from on this machine: both servers of the tests run here.
local function expected_sizing(s)
  local cpus = require("tide.core").cpu_count()
  local workers = assert(s:query("SELECT current_setting('max_worker_processes')::int AS n"))[1].n
  local max = math.min(math.max(2, 2 * cpus), math.max(2, workers), 16, TABLES)
  return math.min(math.max(2, (cpus + 1) // 2), max), max, cpus
end

T.test('a full load with the default settings runs with "auto" and says where it started and ended', function(ctx)
  reset(ctx)
  local s = fill(ctx, 2000)
  local pb = H.playbook(ctx, "auto1", [[migrate = { "schema", "full" }, progress = "plain",]])
  local code, out = H.run("run " .. pb)
  T.eq(code, 0, out)
  local start, max, cpus = expected_sizing(s)
  T.match(out, string.format("copy streams: auto, starting at %d of at most %d %%(the source and the target on " ..
                             "this host, %d CPU%%(s%%) here%%)", start, max, cpus))
  local ended = tonumber(out:match("copy streams: auto ended at (%d+)"))
  T.ok(ended and ended >= 1 and ended <= max, out)
  local t = assert(tide.connect(ctx.target_url))
  same_tables(s, t)
  T.eq(assert(t:query("SELECT count(*) AS n FROM pg_indexes WHERE schemaname = 'public'"))[1].n, 2 * TABLES)
  s:close(); t:close()
end)

T.test("a fixed full.jobs is kept as it is: no controller, no change", function(ctx)
  reset(ctx)
  local s = fill(ctx, 200)
  local pb = H.playbook(ctx, "fixed3", [[migrate = { "schema", "full" }, progress = "plain", full = { jobs = 3 },]])
  local code, out = H.run("run " .. pb)
  T.eq(code, 0, out)
  T.match(out, "post%-data steps, 3 jobs")
  T.nomatch(out, "copy streams")
  local t = assert(tide.connect(ctx.target_url))
  same_tables(s, t)
  s:close(); t:close()
end)

-- A progress reporter that keeps what the load tells it.
local function recorder()
  local r = { decisions = {}, events = {} }
  function r.streams(_, d) r.decisions[#r.decisions + 1] = d end
  function r.event(_, kind) r.events[kind] = (r.events[kind] or 0) + 1 end
  return setmetatable(r, { __index = function() return function() end end })
end

T.test("the controller moves one stream at a time, within its bounds, between parts; the data is exact", function(ctx)
  reset(ctx)
  local s = fill(ctx, 12000)
  local pb = H.playbook(ctx, "auto2", [[migrate = { "schema", "full" }, progress = "none",]])
  local task = require("tide.playbook").load(pb)
  local connect = require "tide.connect"
  local source, target = connect.open_both(task)
  local plan = require("tide.plan").build(task, source, target)
  require("tide.schema").apply_pre(task, plan, target)
  local progress = recorder()
  local full = require "tide.full"
  -- Short windows (and no runway), so that a load of a second or two sees several decisions.
  local load
  local run = { attach_load = function(_, l) load = l end }
  local most, over = 0, nil
  local watching = true
  local watcher = tide.spawn(function()
    while watching do
      if load then
        most = math.max(most, load.copying)
        -- More parts copying than the count only while a stream told to stop ends its part.
        if load.copying > load.sizing.max then over = load.copying end
        local st = load:status()
        T.eq(st.streams, load.jobs)
        T.eq(st.streams_auto, true)
      end
      tide.sleep(0.01)
    end
  end)
  local stats = full.run(task, plan, source, target, { progress = progress, run = run,
                                                       streams = { window = 0.1, hold = 3, runway = 0 } })
  watching = false
  watcher:wait()
  T.eq(over, nil, "never more parts copying than the most streams allowed")
  T.ok(#progress.decisions >= 1, "at least one decision in a load of " .. string.format("%.1f s", stats.seconds))
  local n = load.sizing.start
  for _, d in ipairs(progress.decisions) do
    T.eq(d.from, n, "each decision starts from the count before")
    T.eq(math.abs(d.to - d.from), 1, "one stream at a time")
    T.ok(d.to >= load.sizing.min and d.to <= load.sizing.max, "within bounds")
    T.match(d.why, "MB/s at %d")
    n = d.to
  end
  T.eq(stats.streams, n)
  T.ok(most >= 2, "copies ran side by side")
  -- The finished load let go of its queue, parts and steps; its status still reports them.
  T.ok(load.settled and load.queue == nil and load.parts == nil and load.steps == nil and load.table_parts == nil,
       "the finished load keeps no queue, parts or steps")
  local st = load:status()
  T.eq({ st.state, st.parts_done, st.parts_total }, { "done", TABLES, TABLES })
  T.eq(#st.tables, TABLES)
  for _, tbl in ipairs(st.tables) do T.eq({ tbl.state, tbl.parts_done }, { "done", tbl.parts }, tbl.table) end
  T.eq(progress.events.part_done, TABLES)
  local t = assert(tide.connect(ctx.target_url))
  same_tables(s, t)
  T.eq(assert(t:query("SELECT count(*) FILTER (WHERE done_at IS NULL) AS left, count(*) AS n FROM pgtide.copy_parts " ..
                      "WHERE task = 'auto2'"))[1].left, 0)
  source:close(); target:close(); s:close(); t:close()
end)
