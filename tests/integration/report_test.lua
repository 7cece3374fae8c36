-- `pgtide report`: a real migration (schema, full load in parts, a short incremental phase under
-- a write workload, stopped by its stop condition, verified at cutover) records its timeline on
-- the target; the report drawn from it is opened in a real browser (headless Chromium): the
-- rendered page must hold the charts, the numbers the target holds, and odd table names shown
-- as text; its screenshot must be a real picture. Skipped when Chromium is not installed.
local T = require "testlib"
local P = require "pg"
local tide = require "tide"
local H = require "tidetest"

local ODD = [[public."we<ird> & ""q'"]]   -- a table (as pgtide names it) HTML must escape
local WORKLOAD_IDS = 1000000            -- rows the workload inserts have ids above this

local SETUP = [[
CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, price numeric);
CREATE INDEX items_name ON items (name);
CREATE TABLE big (id int PRIMARY KEY, pad text);
CREATE TABLE "we<ird> & ""q'" (id int PRIMARY KEY, v text);
CREATE TABLE orders (id int PRIMARY KEY, item int REFERENCES items, qty int CHECK (qty > 0));
INSERT INTO items SELECT g, 'item ' || g, g * 1.5 FROM generate_series(1, 3000) g;
INSERT INTO big SELECT g, repeat(md5(g::text), 8) FROM generate_series(1, 40000) g;
INSERT INTO "we<ird> & ""q'" SELECT g, 'v' || g FROM generate_series(1, 17) g;
INSERT INTO orders SELECT g, 1 + g % 3000, 1 + g % 5 FROM generate_series(1, 5000) g;
]]

local function chromium()
  for _, path in ipairs({ "/usr/bin/chromium", "/usr/bin/chromium-browser" }) do
    local f = io.open(path)
    if f then f:close(); return path end
  end
end

-- Chromium headless on `url`, its stdout into `out`; returns the exit code.
local function browse(ctx, bin, args, out)
  local argv = { bin, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                 "--user-data-dir=" .. ctx.tmpdir .. "/chromium-profile" }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  argv.stdout, argv.stderr = out, ctx.tmpdir .. "/chromium.err"
  local p = assert(tide.process(argv))
  local deadline = tide.monotonic() + 120
  while not p:exited() and tide.monotonic() < deadline do tide.sleep(0.1) end
  if not p:exited() then p:kill(9) end
  return p:wait()
end

local function count(html, pattern)
  local n = 0
  for _ in html:gmatch(pattern) do n = n + 1 end
  return n
end

-- Width and height of a PNG (its IHDR chunk), or nil when `data` is not a PNG.
local function png_size(data)
  if data:sub(1, 8) ~= "\137PNG\r\n\26\n" or data:sub(13, 16) ~= "IHDR" then return nil end
  return string.unpack(">I4I4", data, 17)
end

local function read(path) return H.read(path) end

T.test("a migration's report renders in a browser with its charts and the target's numbers", function(ctx)
  local bin = chromium()
  if not bin then T.skip("chromium is not installed (/usr/bin/chromium)") end
  local src, tgt = P.clean(ctx)
  assert(src:exec(SETUP))
  local done = ctx.tmpdir .. "/report.done"
  os.remove(done)
  local pb = H.playbook(ctx, "report", string.format([[
  migrate = { "schema", "full", "incremental" },
  progress = "plain",
  full = { jobs = 2, split_larger_than = "1MB" },
  incremental = { release = true, heartbeat_interval = 0.2 },
  stop = tide.when { lag_below = "3s", for_at_least = "1s", file_exists = %q },
  on = { cutover = { require("tide.verify").cutover_hook { quiet = true } } },
]], done))
  local proc, log = H.start(ctx, "run " .. pb, "report-run")
  P.wait_for("the stream", function() return read(log):find("incremental: started", 1, true) or proc:exited() end, 120)
  T.ok(not proc:exited(), read(log))
  -- A workload for a few samples' time (the timeline samples every 2 s).
  local stop_at = tide.monotonic() + 7
  local n = 0
  while tide.monotonic() < stop_at do
    n = n + 1
    assert(src:exec(string.format("INSERT INTO items SELECT %d + g, 'new', 1 FROM generate_series(1, 50) g",
                                  WORKLOAD_IDS + n * 100)))
    assert(src:exec("UPDATE big SET pad = 'x' WHERE id % 97 = $1", n % 97))
    tide.sleep(0.1)
  end
  local f = assert(io.open(done, "w")); f:close()
  T.eq(proc:wait(), 0, read(log))

  local html_path = ctx.tmpdir .. "/report.html"
  os.remove(html_path)
  local code, out = H.run("report " .. pb .. " -o " .. html_path)
  T.eq(code, 0, out)
  T.match(out, "report: wrote")
  local html = read(html_path)
  T.ok(#html > 1000, "the report has content")
  T.nomatch(html, "<script", "no script needed")
  T.nomatch(html, "https?://[^\"]*%.css", "nothing fetched")
  T.nomatch(html, "<ird>", "the odd name never appears raw")

  -- What the target holds, to compare with the rendered page.
  local parts = assert(tgt:query("SELECT count(*)::int AS n FROM pgtide.copy_parts WHERE task = 'report' AND done_at IS NOT NULL"))[1].n
  local steps = assert(tgt:query("SELECT count(*)::int AS n FROM pgtide.steps WHERE task = 'report' AND seconds IS NOT NULL"))[1].n
  local big_parts = assert(tgt:query("SELECT count(*)::int AS n FROM pgtide.copy_parts WHERE task = 'report' AND table_key = 'public.big'"))[1].n
  T.ok(big_parts > 1, "the big table was copied in parts: " .. big_parts)
  T.ok(steps >= 3, "post-data steps recorded: " .. steps)
  local rows = {
    ["public.items"] = assert(tgt:query("SELECT count(*)::int AS n FROM items WHERE id < $1", WORKLOAD_IDS))[1].n,
    ["public.big"] = assert(tgt:query("SELECT count(*)::int AS n FROM big"))[1].n,
    ["public.orders"] = assert(tgt:query("SELECT count(*)::int AS n FROM orders"))[1].n,
    [ODD] = assert(tgt:query([[SELECT count(*)::int AS n FROM "we<ird> & ""q'"]]))[1].n,
  }
  T.eq(rows[ODD], 17)
  local phases = assert(tgt:query([[
SELECT s.data->>'phase' AS phase, extract(epoch FROM e.at - s.at)::float8 AS seconds
FROM pgtide.timeline s JOIN pgtide.timeline e ON e.task = s.task AND e.run = s.run AND e.kind = 'phase_end'
  AND e.data->>'phase' = s.data->>'phase'
WHERE s.task = 'report' AND s.kind = 'phase_start' ORDER BY s.seq]]))
  local names = {}
  for i, p in ipairs(phases) do names[i] = p.phase end
  T.eq(names, { "schema", "slot", "full", "incremental" }, "the phases recorded")
  local samples = assert(tgt:query("SELECT count(*)::int AS n FROM pgtide.timeline WHERE task = 'report' " ..
                                   "AND kind = 'sample' AND data->>'what' = 'stream'"))[1].n
  T.ok(samples >= 2, "stream samples recorded: " .. samples)

  -- (a) the DOM the browser built from the file
  local dom_path = ctx.tmpdir .. "/report.dom"
  T.eq(browse(ctx, bin, { "--dump-dom", "file://" .. html_path }, dom_path), 0, read(ctx.tmpdir .. "/chromium.err"))
  local dom = read(dom_path)
  T.match(dom, "<svg[^>]*class=\"chart gantt\"", "the Gantt chart is in the DOM")
  T.eq(count(dom, "<rect class=\"bar part\""), parts, "one Gantt bar per table part")
  T.eq(count(dom, "<rect class=\"bar step\""), steps, "one Gantt bar per post-data step")
  T.ok(count(dom, "<text class=\"axis%-label tick\"[^>]*>%d%d:%d%d") >= 2, "time axis labels")
  T.match(dom, "<svg[^>]*class=\"chart line%-chart delay\"", "the delay chart")
  T.match(dom, "<line class=\"threshold\"", "with the stop condition's threshold")
  T.match(dom, "stop condition: lag below 3 s")
  T.match(dom, "<svg[^>]*class=\"chart line%-chart throughput%-load\"", "the full load's throughput")
  T.match(dom, "<polyline class=\"series", "a drawn series")
  for key, n_rows in pairs(rows) do
    local shown = key:gsub("&", "&amp;"):gsub("<", "&lt;"):gsub(">", "&gt;")
    local cell = dom:match("<td class=\"name\">" .. shown:gsub("%p", "%%%0") .. "</td><td class=\"num parts\">%d+</td>" ..
                           "<td class=\"num rows\">(%d+)</td>")
    T.eq(tonumber(cell), n_rows, "rows of " .. key .. " as counted on the target")
  end
  for _, p in ipairs(phases) do
    local shown = dom:match("data%-phase=\"" .. p.phase .. "\">([%d.]+) s<")
    T.eq(shown, string.format("%.1f", p.seconds), "duration of phase " .. p.phase)
  end
  T.match(dom, "<td class=\"name\">public%.\"we&lt;ird&gt; &amp; \"\"q'\"</td>", "the odd name shown as text")
  T.nomatch(dom, "<ird", "and not as markup")
  T.match(dom, "id=\"prechecks\"")
  T.match(dom, "<table class=\"prechecks\">")
  T.match(dom, "id=\"verify\".-Status: <span class=\"match\">match</span>", "the verification at cutover")
  T.match(dom, "class=\"downtime\">[%d.]+ s<", "the cutover's duration")
  T.nomatch(dom, "password", "no password")

  -- (b) a screenshot: a real picture of the page, far from a blank one of the same size
  local shot, blank = ctx.tmpdir .. "/report.png", ctx.tmpdir .. "/blank.png"
  os.remove(shot); os.remove(blank)
  T.eq(browse(ctx, bin, { "--screenshot=" .. shot, "--window-size=1200,1600", "file://" .. html_path },
              ctx.tmpdir .. "/chromium.out"), 0, read(ctx.tmpdir .. "/chromium.err"))
  local blank_page = ctx.tmpdir .. "/blank.html"
  local bf = assert(io.open(blank_page, "w")); bf:write("<html><body></body></html>"); bf:close()
  T.eq(browse(ctx, bin, { "--screenshot=" .. blank, "--window-size=1200,1600", "file://" .. blank_page },
              ctx.tmpdir .. "/chromium.out"), 0)
  local png, blank_png = read(shot), read(blank)
  local w, h = png_size(png)
  T.eq({ w, h }, { 1200, 1600 }, "a PNG of the window's size")
  T.ok(#png > 20000 and #png > 5 * #blank_png,
       string.format("the screenshot holds a drawn page (%d bytes; a blank page: %d)", #png, #blank_png))

  -- `pgtide release` forgets the timeline with the rest.
  code, out = H.run("release " .. pb)
  T.eq(code, 0, out)
  T.eq(assert(tgt:query("SELECT count(*)::int AS n FROM pgtide.timeline WHERE task = 'report'"))[1].n, 0)
  code, out = H.run("report " .. pb .. " -o " .. html_path)
  T.eq(code, 1, out)
  T.match(out, "holds no run of task report")
  src:close(); tgt:close()
end)

T.test("a run killed during the full load and the run that resumes it are two runs of the report", function(ctx)
  local src, tgt = P.clean(ctx)
  assert(src:exec("CREATE TABLE bulk (id int PRIMARY KEY, pad text); " ..
                  "INSERT INTO bulk SELECT g, repeat('p', 300) FROM generate_series(1, 150000) g"))
  local pb = H.playbook(ctx, "killed", [[migrate = { "schema", "full" }, progress = "plain",
    full = { jobs = 1, split_larger_than = "256kB" },]])
  local proc, log = H.start(ctx, "run " .. pb, "killed")
  local mid = P.poll(60, function()
    local r = tgt:query([[SELECT (SELECT count(*) FROM pgtide.timeline WHERE task = 'killed') AS events,
      (SELECT count(*) FILTER (WHERE done_at IS NOT NULL) FROM pgtide.copy_parts WHERE task = 'killed') AS done,
      (SELECT count(*) FROM pgtide.copy_parts WHERE task = 'killed') AS total]])
    return r and r[1] and r[1].events > 0 and r[1].done >= 2 and r[1].done < r[1].total - 2 and r[1]
  end)
  T.ok(mid, "never saw the copy half done with the timeline written: " .. read(log))
  proc:kill(9)
  local _, signal = proc:wait()
  T.eq(signal, 9)
  local code, out = H.run("run " .. pb)
  T.eq(code, 0, out)
  T.match(out, "resuming task killed")
  local runs = assert(tgt:query([[SELECT run, bool_or(kind = 'run_end') AS ended,
      max((data->>'exit')::int) FILTER (WHERE kind = 'run_end') AS exit
    FROM pgtide.timeline WHERE task = 'killed' GROUP BY run ORDER BY min(at)]]))
  T.eq(#runs, 2, "two runs recorded")
  T.eq(runs[1].ended, false, "the killed run recorded no end")
  T.eq(runs[2].exit, 0)
  local html_path = ctx.tmpdir .. "/killed.html"
  code, out = H.run("report " .. pb .. " -o " .. html_path)
  T.eq(code, 0, out)
  local html = read(html_path)
  T.match(html, 'class="runs">2<', "the summary counts two runs")
  T.match(html, 'data%-run="1"><td>1</td>.-killed or lost', "the first run: killed")
  T.match(html, 'data%-run="2"><td>2</td>.-0 %(ok%)', "the second: done")
  local rows = assert(tgt:query("SELECT count(*)::int AS n FROM bulk"))[1].n
  T.eq(rows, 150000)
  T.match(html, '<td class="name">public%.bulk</td><td class="num parts">%d+</td><td class="num rows">' .. rows .. "</td>",
          "every row copied, the killed run's parts included")
  T.eq(count(html, '<rect class="bar part"'),
       assert(tgt:query("SELECT count(*)::int AS n FROM pgtide.copy_parts WHERE task = 'killed'"))[1].n)
  src:close(); tgt:close()
end)
