-- `pgtide run --log-format json`: every line on stderr is one JSON object with time, level,
-- phase, event and message — the conflict a skipped change makes, a failing on.progress hook,
-- a server WARNING (an engine line), and the error the run ends with — and the text default
-- keeps the lines a person reads. No password in either.
local T = require "testlib"
local P = require "pg"
local tide = require "tide"
local H = require "tidetest"
local json = require "tide.json"

local SECRET = "l0g-pw-Hq3"

local function reset(urls)
  for _, url in ipairs(urls) do
    local c = assert(tide.connect(url))
    assert(c:exec("DROP SCHEMA IF EXISTS public CASCADE; DROP SCHEMA IF EXISTS pgtide CASCADE; CREATE SCHEMA public"))
    c:close()
  end
end

-- The task: a conflict skipped, a progress hook that fails every tick, a stop condition that
-- holds once a conflict was skipped, and a cutover hook that warns on the server, then fails.
local function playbook(ctx, name, extra)
  local path = ctx.tmpdir .. "/" .. name .. ".lua"
  local f = assert(io.open(path, "w"))
  f:write(string.format([[
local tide = require "tide"
return tide.task {
  name = %q, source = %q, target = %q,
  migrate = { "schema", "full", "incremental" }, progress = "plain",
  incremental = { conflict = "skip", heartbeat_interval = 0.2 },
  stop = function(st) return (st.conflicts and st.conflicts.skipped or 0) >= 1 end,
  on = {
    progress = function() error("the progress hook broke") end,
    cutover = function(t)
      assert(t.target:query("DO $$BEGIN RAISE WARNING 'a warning from the cutover hook'; END$$"))
      error("the cutover hook broke")
    end,
  },
  %s
}
]], name, ctx.source_url .. "?password=" .. SECRET, ctx.target_url, extra or ""))
  f:close()
  return path
end

-- Run the task to its end, making one conflict once the full load is in: returns the exit
-- status, stdout and stderr.
local function run_with_conflict(ctx, name, args)
  reset({ ctx.source_url, ctx.target_url })
  P.exec(ctx.source_url, "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'v' FROM generate_series(1, 100) g")
  local out, err = ctx.tmpdir .. "/" .. name .. ".out", ctx.tmpdir .. "/" .. name .. ".err"
  os.remove(out); os.remove(err)
  local argv = { H.PGTIDE, "run", playbook(ctx, name, args.extra) }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  argv.stdout, argv.stderr = out, err
  local proc = assert(tide.process(argv))
  local ok, e = pcall(function()
    P.wait_for("the full load on the target", function()
      local r = P.query(ctx.target_url, "SELECT pg_catalog.to_regclass('public.t') IS NOT NULL AS there")
      if not r[1].there then return false end
      return P.query(ctx.target_url, "SELECT count(*) AS n FROM t")[1].n == 100
    end, 60)
    -- The row is on the target first: the source's insert of the same key conflicts.
    P.exec(ctx.target_url, "INSERT INTO t VALUES (101, 'target')")
    P.exec(ctx.source_url, "INSERT INTO t VALUES (101, 'source')")
  end)
  if not ok then proc:kill(9) end
  local code = proc:wait()
  if not ok then error(e, 0) end
  return code, H.read(out), H.read(err)
end

T.test("--log-format json: each stderr line is a JSON object with the fields", function(ctx)
  local code, out, err = run_with_conflict(ctx, "log_json", { "--log-format", "json" })
  T.eq(code, 1, out .. err)
  local seen, levels = {}, {}
  local n = 0
  for line in err:gmatch("[^\n]+") do
    n = n + 1
    local ok, obj = pcall(json.decode, line)
    T.ok(ok and type(obj) == "table", "not a JSON object: " .. line)
    T.match(obj.time, "^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d+Z$", line)
    T.ok(obj.level == "error" or obj.level == "warning" or obj.level == "note", line)
    T.eq(type(obj.phase), "string", line)
    T.eq(type(obj.event), "string", line)
    T.eq(type(obj.message), "string", line)
    T.eq(obj.task, "log_json", line)
    seen[obj.event] = seen[obj.event] or obj
    levels[obj.level] = true
  end
  T.ok(n >= 4, err)
  T.ok(levels.warning and levels.error, err)
  local conflict = seen.conflict
  T.ok(conflict, "a conflict line: " .. err)
  T.eq(conflict.level, "warning")
  T.eq(conflict.table, "public.t")
  T.eq(conflict.phase, "incremental")
  T.match(conflict.message, "^conflict ")
  T.ok(seen.hook_failed and seen.hook_failed.message:find("the progress hook broke", 1, true), err)
  T.eq(seen.hook_failed.level, "error")
  local warning = seen.server_warning
  T.ok(warning, "the server's WARNING, from the engine: " .. err)
  T.match(warning.message, "a warning from the cutover hook")
  T.eq(warning.level, "warning")
  -- The last line: the error the run ends with, and its exit status.
  local last = json.decode(err:match("([^\n]+)\n?$"))
  T.eq(last.level, "error")
  T.eq(last.exit_status, 1)
  T.match(last.message, "the cutover hook broke")
  T.nomatch(err, SECRET)
  T.nomatch(out, SECRET)
end)

T.test("log_format = \"json\" in the playbook does the same; text stays the default", function(ctx)
  local code, _, err = run_with_conflict(ctx, "log_text", {})
  T.eq(code, 1, err)
  T.match(err, "pgtide: conflict [%w_]+ on public%.t")
  T.match(err, "pgtide: on%.progress hook failed: ")
  T.match(err, "pgtide: server warning %(")
  T.nomatch(err, "^{")
  local pcode, _, perr = run_with_conflict(ctx, "log_pb", { extra = 'log_format = "json",' })
  T.eq(pcode, 1, perr)
  for line in perr:gmatch("[^\n]+") do
    local ok, obj = pcall(json.decode, line)
    T.ok(ok and type(obj) == "table" and obj.level and obj.event, "not a JSON log line: " .. line)
  end
  T.match(perr, '"event":%s*"conflict"')
end)

T.test("--log-format takes text or json only", function(ctx)
  local code, out = H.run("run " .. ctx.tmpdir .. "/nothing.lua --log-format yaml")
  T.eq(code, 2, out)
  T.match(out, "%-%-log%-format must be text or json")
end)
