-- The Prometheus endpoint of a running task, scraped with curl as Prometheus would: during a
-- (throttled) full load the figures move, in the incremental phase they match the source's
-- rows and `pgtide status --json`, another path is 404, a malformed request is answered 400
-- and closed, several scrapers at once are all served, and the password of the conninfo is in
-- no answer. A port already in use stops the run before anything is written.
local T = require "testlib"
local P = require "pg"
local tide = require "tide"
local core = require "tide.core"
local H = require "tidetest"
local json = require "tide.json"
local prom = require "prom"

local SECRET = "m3trics-pw-Kx7"

local function case(name, fn)
  T.test(name, function(ctx)
    ctx.children = {}
    local ok, err = xpcall(fn, debug.traceback, ctx)
    for _, p in ipairs(ctx.children) do if not p:exited() then p:kill(9); p:wait() end end
    if not ok then error(err, 0) end
  end)
end

local function reset(urls)
  for _, url in ipairs(urls) do
    local c = assert(tide.connect(url))
    assert(c:exec("DROP SCHEMA IF EXISTS public CASCADE; DROP SCHEMA IF EXISTS pgtide CASCADE; CREATE SCHEMA public"))
    c:close()
  end
end

-- A port nobody listens on now: the kernel picks one, we let it go.
local function free_port()
  local s = assert(core.http_listen("127.0.0.1", 0, function() end))
  local port = s:port()
  s:close()
  tide.sleep(0.05)   -- the close completes on the loop
  return port
end

local function playbook(ctx, name, source, body)
  local path = ctx.tmpdir .. "/" .. name .. ".lua"
  local f = assert(io.open(path, "w"))
  f:write(string.format('local tide = require "tide"\nreturn tide.task {\n  name = %q,\n  source = %q,\n' ..
                        '  target = %q,\n%s\n}\n', name, source, ctx.target_url, body))
  f:close()
  return path
end

local function spawn(ctx, argv, log_name)
  local log = ctx.tmpdir .. "/" .. log_name .. ".log"
  os.remove(log)
  local full = { H.PGTIDE }
  for _, a in ipairs(argv) do full[#full + 1] = a end
  full.stdout, full.stderr = log, log
  local proc = assert(tide.process(full))
  ctx.children[#ctx.children + 1] = proc
  return proc, log
end

local function must_wait(what, seconds, fn)
  local v = P.poll(seconds, fn)
  if not v then error("timed out waiting for " .. what, 2) end
  return v
end

-- GET url with curl: the HTTP status and the body.
local function get(url)
  local code, out = T.sh("curl -s --max-time 10 -w '\\n%{http_code}' " .. url)
  if code ~= 0 then return nil, out end
  local body, status = out:match("^(.*)\n(%d+)$")
  return tonumber(status), body
end

local function scrape(port)
  local status, body = get("http://127.0.0.1:" .. port .. "/metrics")
  if status ~= 200 then return nil, body end
  return prom.parse(body), body
end

local function status_json(name)
  local code, out = H.run("status " .. name .. " --json")
  if code ~= 0 then return nil end
  return json.decode(out)
end

local function attach(name, chunk) return H.run("attach " .. name .. " -e '" .. chunk .. "'") end

case("a run scraped while it loads and streams: figures move and match the run's", function(ctx)
  reset({ ctx.source_url, ctx.target_url })
  local s = assert(tide.connect(ctx.source_url))
  assert(s:exec([[CREATE TABLE big (id int PRIMARY KEY, pad text);
    INSERT INTO big SELECT g, repeat(md5(g::text), 3) FROM generate_series(1, 200000) g;
    CREATE TABLE small (id int PRIMARY KEY, v text); INSERT INTO small SELECT g, 'v' || g FROM generate_series(1, 500) g;
    ANALYZE]]))
  local port = free_port()
  local pb = playbook(ctx, "metrics_run", ctx.source_url .. "?password=" .. SECRET, string.format([[
  migrate = { "schema", "full", "incremental" }, full = { jobs = 2 }, progress = "plain",
  incremental = { heartbeat_interval = 0.2 },
  metrics = { listen = "127.0.0.1:%d" },]], port))
  local run, log = spawn(ctx, { "run", pb }, "metrics_run")
  local bodies = {}
  must_wait("the load throttled", 20, function()
    return attach("metrics_run", "return task:throttle{ rows_per_second = 20000 }") == 0
  end)

  -- During the load: rows and bytes move, the phase says full.
  local first = must_wait("rows copied", 30, function()
    local m, body = scrape(port)
    if m and (prom.value(m, "pgtide_full_rows_total") or 0) > 0 then bodies[#bodies + 1] = body return m end
  end)
  T.eq(prom.value(first, "pgtide_phase", { phase = "full", task = "metrics_run" }), 1)
  T.eq(prom.value(first, "pgtide_phase", { phase = "incremental" }), 0)
  local rows1 = prom.value(first, "pgtide_full_rows_total")
  T.ok(rows1 < 200500, "in the middle of the load")
  T.ok(prom.value(first, "pgtide_full_bytes_total") > 0)
  local second = must_wait("rows moving", 30, function()
    local m, body = scrape(port)
    if m and prom.value(m, "pgtide_full_rows_total") > rows1 then bodies[#bodies + 1] = body return m end
  end)
  T.ok(prom.value(second, "pgtide_table_rows_total", { table = "public.big" }) > 0, "per-table rows")
  local st = assert(status_json("metrics_run"))
  T.eq(prom.value(second, "pgtide_full_parts"), st.full.parts_total)
  T.eq(prom.value(second, "pgtide_post_data_steps"), st.full.steps_total)
  T.eq(prom.value(second, "pgtide_full_tables"), 2)
  T.eq(prom.value(second, "pgtide_full_copy_streams"), 2, "full.jobs = 2")
  T.eq(st.full.streams, 2)
  T.eq(st.full.streams_auto, false)

  -- Another path, another method, a request that is not HTTP.
  T.eq((get("http://127.0.0.1:" .. port .. "/other")), 404)
  T.eq((get("http://127.0.0.1:" .. port .. "/")), 404)
  local code, out = T.sh("curl -s -o /dev/null -w '%{http_code}' -X POST http://127.0.0.1:" .. port .. "/metrics")
  T.eq(out, "405", code)
  code, out = T.sh("timeout 5 bash -c 'exec 3<>/dev/tcp/127.0.0.1/" .. port ..
                   "; printf \"garbage\\r\\n\\r\\n\" >&3; cat <&3'")
  T.eq(code, 0, "the malformed request's connection was closed: " .. out)
  T.match(out, "^HTTP/1%.1 400 ")
  -- A client that never finishes its request does not hold up the others.
  local idle = assert(tide.process { "timeout", "30", "bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/" .. port ..
                                     "; printf 'GET /metrics HTTP/1.1\\r\\n' >&3; sleep 29" })
  ctx.children[#ctx.children + 1] = idle

  -- Eight scrapers at once: each gets a whole answer.
  local dir = ctx.tmpdir .. "/scrapes"
  T.sh("rm -rf " .. dir .. " && mkdir -p " .. dir)
  code, out = T.sh("for i in 1 2 3 4 5 6 7 8; do curl -s --max-time 10 -o " .. dir .. "/$i http://127.0.0.1:" .. port ..
                   "/metrics & done; wait")
  T.eq(code, 0, out)
  for i = 1, 8 do
    local body = H.read(dir .. "/" .. i)
    local m = prom.parse(body)
    T.eq(prom.value(m, "pgtide_info"), 1, "scrape " .. i)
    bodies[#bodies + 1] = body
  end

  -- The incremental phase: the full load's figures are final and match the source.
  T.eq(attach("metrics_run", "return task:throttle(nil)"), 0)
  local inc = must_wait("the incremental phase", 60, function()
    local m = scrape(port)
    return m and prom.value(m, "pgtide_phase", { phase = "incremental" }) == 1 and
           prom.value(m, "pgtide_apply_changes_total") ~= nil and m
  end)
  T.eq(prom.value(inc, "pgtide_full_rows_total"), 200500)
  T.eq(prom.value(inc, "pgtide_table_rows_total", { table = "public.big" }), 200000)
  T.eq(prom.value(inc, "pgtide_table_rows_total", { table = "public.small" }), 500)
  T.eq(prom.value(inc, "pgtide_full_parts_done"), prom.value(inc, "pgtide_full_parts"))
  T.eq(prom.value(inc, "pgtide_conflicts_total", { kind = "skipped" }), 0)
  st = assert(status_json("metrics_run"))
  T.eq(prom.value(inc, "pgtide_full_rows_total"), st.full.rows)
  -- The finished load let go of its queues and steps (tide.full's settle): its status still
  -- counts them, and every table reads as done.
  T.ok(st.full.steps_total > 0, "the post-data steps are counted: " .. tostring(st.full.steps_total))
  T.eq(st.full.steps_done, st.full.steps_total)
  T.eq(prom.value(inc, "pgtide_post_data_steps"), st.full.steps_total)
  T.eq(st.full.state, "done")
  T.eq(#st.full.tables, 2)
  for _, t in ipairs(st.full.tables) do
    T.eq(t.state, "done", t.table)
    T.eq(t.parts_done, t.parts, t.table)
  end
  T.eq(prom.value(inc, "pgtide_full_bytes_total"), st.full.bytes)

  -- Changes on the source: the apply counters count them, as status does.
  local changes0 = prom.value(inc, "pgtide_apply_changes_total")
  local tx0 = prom.value(inc, "pgtide_apply_transactions_total")
  for i = 0, 2 do
    assert(s:exec(string.format("INSERT INTO small SELECT g, 'late' FROM generate_series(%d, %d) g",
                                1001 + i * 100, 1100 + i * 100)))
  end
  local final = must_wait("the changes counted, the same in status", 30, function()
    local m, body = scrape(port)
    local x = status_json("metrics_run")
    local m2 = scrape(port)
    if not (m and x and m2 and x.incremental) then return nil end
    local c = prom.value(m, "pgtide_apply_changes_total")
    if c < changes0 + 300 or c ~= prom.value(m2, "pgtide_apply_changes_total") then return nil end
    bodies[#bodies + 1] = body
    return c == x.incremental.changes and prom.value(m, "pgtide_apply_transactions_total") ==
           x.incremental.transactions and m
  end)
  T.ok(prom.value(final, "pgtide_apply_transactions_total") >= tx0 + 3)
  T.ok(prom.value(final, "pgtide_delay_seconds") >= 0)
  T.ok(prom.value(final, "pgtide_behind_bytes") >= 0)
  T.eq(prom.value(final, "pgtide_reconnects_total"), 0)

  for _, body in ipairs(bodies) do T.nomatch(body, SECRET, "the password in a scrape") end
  T.eq(attach("metrics_run", "return task:stop()"), 0)
  T.eq(run:wait(), 0, H.read(log))
  T.nomatch(H.read(log), SECRET)
  -- The endpoint goes with the task.
  T.eq((get("http://127.0.0.1:" .. port .. "/metrics")), nil)
  s:close()
end)

case("a metrics port already in use stops the run before anything is written", function(ctx)
  reset({ ctx.source_url, ctx.target_url })
  P.exec(ctx.source_url, "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)")
  local holder = assert(core.http_listen("127.0.0.1", 0, function() return "taken\n" end))
  local pb = playbook(ctx, "metrics_busy", ctx.source_url, string.format([[
  migrate = { "schema", "full" }, metrics = { listen = "127.0.0.1:%d" },]], holder:port()))
  local code, out = H.run("run " .. pb)
  holder:close()
  T.eq(code, 1, out)
  T.match(out, "cannot serve the metrics of task metrics_busy on 127%.0%.0%.1:%d+: .*address already in use")
  T.match(out, "hint: another process listens there")
  local rows = assert(P.query(ctx.target_url, "SELECT count(*) AS n FROM pg_catalog.pg_namespace WHERE nspname = 'pgtide'"))
  T.eq(rows[1].n, 0, "pgtide's state schema on the target")
  rows = assert(P.query(ctx.target_url, "SELECT pg_catalog.to_regclass('public.t') IS NULL AS gone"))
  T.eq(rows[1].gone, true, "the table on the target")
end)

case("a metrics.listen that is not an address is a playbook error", function(ctx)
  local pb = playbook(ctx, "metrics_bad", ctx.source_url, [[  metrics = { listen = "127.0.0.1:99999" },]])
  local code, out = H.run("run " .. pb)
  T.eq(code, 3, out)
  T.match(out, "metrics_bad%.lua:%d+: metrics%.listen must be an address to listen on")
end)
