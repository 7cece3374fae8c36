-- Live tasks as an operator meets them: `pgtide status` and `pgtide attach` against running
-- `pgtide run` processes — status in the middle of a full load, pause and resume with the
-- data intact, a runaway chunk interrupted while the task goes on, private sockets, two
-- tasks at once, a stale socket replaced, secrets masked, a real terminal (tmux), and pause
-- during incremental streaming past a low wal_sender_timeout.
--
-- Tasks are held still without sleeping: a test transaction locking a source table keeps
-- a task in its planning phase (catalog functions wait for the lock) for as long as needed.
local T = require "testlib"
local P = require "pg"
local tide = require "tide"
local H = require "tidetest"
local json = require "tide.json"

local SECRET = "s3cr3t-pw-Zq9"

local function run_dir(ctx)
  local dir = ctx.tmpdir .. "/xdg"
  os.execute("mkdir -p " .. dir .. " && chmod 700 " .. dir)
  return dir
end

local function quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- pgtide with this file's private run directory (so other tests' tasks are not listed).
local function pgtide(ctx, args)
  return T.sh("XDG_RUNTIME_DIR=" .. run_dir(ctx) .. " " .. H.PGTIDE .. " " .. args)
end

local function attach(ctx, name, chunk) return pgtide(ctx, "attach " .. name .. " -e " .. quote(chunk)) end

-- A child pgtide with argv (a list); returns the process and its log path. Children still
-- running when a test ends (it failed) are killed by `case`.
local function spawn(ctx, argv, log_name)
  local log = ctx.tmpdir .. "/" .. log_name .. ".log"
  os.remove(log)
  local full = { "/usr/bin/env", "XDG_RUNTIME_DIR=" .. run_dir(ctx), H.PGTIDE }
  for _, a in ipairs(argv) do full[#full + 1] = a end
  full.stdout, full.stderr = log, log
  local proc = assert(tide.process(full))
  ctx.children[#ctx.children + 1] = proc
  return proc, log
end

local function case(name, fn)
  T.test(name, function(ctx)
    ctx.children = {}
    local ok, err = xpcall(fn, debug.traceback, ctx)
    for _, p in ipairs(ctx.children) do if not p:exited() then p:kill(9); p:wait() end end
    if ctx.cleanup then ctx.cleanup() end
    ctx.cleanup = nil
    if not ok then error(err, 0) end
  end)
end

local function status(ctx, name)
  local code, out = pgtide(ctx, "status " .. name .. " --json")
  if code ~= 0 then return nil, out end
  return json.decode(out)
end

-- The status of a task that must be running.
local function must_status(ctx, name)
  local st, err = status(ctx, name)
  if not st then error("pgtide status " .. name .. " failed: " .. tostring(err), 2) end
  return st
end

local function must_wait(what, seconds, fn)
  local v = P.poll(seconds, fn)
  if not v then error("timed out waiting for " .. what, 2) end
  return v
end

local function reset(urls)
  for _, url in ipairs(urls) do
    local c = assert(tide.connect(url))
    assert(c:exec("DROP SCHEMA IF EXISTS public CASCADE; DROP SCHEMA IF EXISTS pgtide CASCADE; CREATE SCHEMA public"))
    c:close()
  end
end

local function playbook(ctx, name, source, target, body)
  local path = ctx.tmpdir .. "/" .. name .. ".lua"
  local f = assert(io.open(path, "w"))
  f:write(string.format('local tide = require "tide"\nreturn tide.task {\n  name = %q,\n  source = %q,\n' ..
                        '  target = %q,\n%s\n}\n', name, source, target, body))
  f:close()
  return path
end

-- A source transaction holding an exclusive lock on `tbl` (release with :exec("COMMIT")).
local function lock(url, tbl)
  local c = assert(tide.connect(url))
  assert(c:exec("BEGIN; LOCK TABLE " .. tbl .. " IN ACCESS EXCLUSIVE MODE"))
  return c
end

------------------------------------------------------------------------ the full load

case("a full load seen and steered live: status, pause, resume, a runaway chunk; data intact", function(ctx)
  reset({ ctx.source_url, ctx.target_url })
  local s = assert(tide.connect(ctx.source_url))
  assert(s:exec([[CREATE TABLE big (id int PRIMARY KEY, pad text);
    INSERT INTO big SELECT g, repeat(md5(g::text), 3) FROM generate_series(1, 200000) g;
    CREATE TABLE small (id int PRIMARY KEY, v text); INSERT INTO small SELECT g, 'v' || g FROM generate_series(1, 500) g;
    ANALYZE]]))
  local pb = H.playbook(ctx, "live_full", [[migrate = { "schema", "full" }, full = { jobs = 2 }, progress = "plain",]])
  local run = spawn(ctx, { "run", pb }, "live_full")
  -- The socket answers from the moment both sides are connected: slow the load down.
  must_wait("the control socket", 20, function()
    local code = attach(ctx, "live_full", "return task:throttle{ rows_per_second = 20000 }")
    return code == 0
  end)
  -- task:help() prints its lines as they are, not one quoted string with \n escapes.
  local hcode, help = attach(ctx, "live_full", "task:help()")
  T.eq(hcode, 0, help)
  T.match(help, "^task:status%(%) +phase")
  T.match(help, "\ntask:tables%(%) +the full load's tables")
  T.nomatch(help, "\\n")
  T.nomatch(help, '^"')
  T.ok(select(2, help:gsub("\n", "")) >= 10, help)
  local st = must_wait("rows moving", 20, function()
    local x = status(ctx, "live_full")
    return x and x.full and x.full.rows > 0 and x
  end)
  T.eq(st.phase, "full")
  T.eq(st.task, "live_full")
  T.ok(st.full.rows < 200500, "in the middle of the load")
  local big
  for _, t in ipairs(st.full.tables) do if t.table == "public.big" then big = t end end
  T.ok(big and big.rows_estimate > 150000 and big.parts == 1, T.dump(st.full.tables))

  -- Pause: the row counts stop growing.
  local code, out = attach(ctx, "live_full", "return task:pause()")
  T.eq(code, 0, out)
  T.match(out, "paused the full load")
  must_wait("the load paused", 10, function()
    local x = status(ctx, "live_full")
    return x and x.full.state == "paused" and x.paused
  end)
  local frozen = must_status(ctx, "live_full").full.rows
  for _ = 1, 3 do
    tide.sleep(0.3)   -- a measurement window, not synchronisation
    T.eq(must_status(ctx, "live_full").full.rows, frozen, "rows moved while paused")
  end

  -- A runaway chunk: the task goes on while it spins; Ctrl-C (SIGINT) stops the chunk only.
  local loop, loop_log = spawn(ctx, { "attach", "live_full", "-e", "local n = 0 while true do n = n + 1 end" }, "loop")
  must_wait("the chunk running", 10, function()
    local x = status(ctx, "live_full")
    return x and x.chunks >= 1
  end)
  code, out = attach(ctx, "live_full", "return task:resume()")
  T.eq(code, 0, out)
  must_wait("rows growing while the chunk spins", 20, function()
    return must_status(ctx, "live_full").full.rows > frozen
  end)
  out = select(2, attach(ctx, "live_full", "return 1 + 1"))
  T.eq(out, "2\n", "another session is served meanwhile")
  loop:kill(2)
  local loop_code = loop:wait()
  T.eq(loop_code, 130, H.read(loop_log))
  T.match(H.read(loop_log), "attach:1: interrupted")

  code, out = attach(ctx, "live_full", "return task:throttle(nil)")
  T.eq(code, 0, out)
  T.eq(run:wait(), 0, H.read(ctx.tmpdir .. "/live_full.log"))
  local t = assert(tide.connect(ctx.target_url))
  for _, rel in ipairs({ "big", "small" }) do T.eq(P.fingerprint(t, rel), P.fingerprint(s, rel), rel) end
  s:close(); t:close()
end)

------------------------------------------------------------------------ sockets, tasks

case("private sockets, two tasks at once, a second run refused, a stale socket replaced, secrets masked", function(ctx)
  local db_b = ctx.dbname .. "_b"
  local urls = { a = { ctx.source_url .. "?password=" .. SECRET, ctx.target_url } }
  for _, admin in ipairs({ ctx.source_admin, ctx.target_admin }) do
    local c = assert(tide.connect(admin))
    assert(c:exec("DROP DATABASE IF EXISTS " .. db_b .. " WITH (FORCE)"))
    assert(c:exec("CREATE DATABASE " .. db_b))
    c:close()
  end
  urls.b = { P.with_db(ctx.source_admin, db_b), P.with_db(ctx.target_admin, db_b) }
  reset({ ctx.source_url, ctx.target_url })
  local locks, runs = {}, {}
  ctx.cleanup = function() for _, c in pairs(locks) do c:exec("ROLLBACK"); c:close() end end
  for name, u in pairs(urls) do
    local src = u[1]:gsub("%?.*$", "")
    local c = assert(tide.connect(src))
    assert(c:exec("CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, '" .. name ..
                  "' || g FROM generate_series(1, 1000) g"))
    c:close()
    locks[name] = lock(src, "t")
    local pb = playbook(ctx, "live_" .. name, u[1], u[2], 'migrate = { "schema", "full" }, progress = "plain",')
    runs[name] = { pb = pb }
    runs[name].proc = spawn(ctx, { "run", pb }, "live_" .. name)
  end
  for name in pairs(urls) do
    must_wait("task " .. name .. " serving", 20, function() return status(ctx, "live_" .. name) end)
  end

  -- Each task answers for itself, from its own process.
  local sa, sb = status(ctx, "live_a"), status(ctx, "live_b")
  T.eq(sa.task, "live_a"); T.eq(sb.task, "live_b")
  T.eq(sa.pid, runs.a.proc:pid()); T.eq(sb.pid, runs.b.proc:pid())
  local _, out = attach(ctx, "live_b", "return task.name, task.source_info")
  T.match(out, '^"live_b"\t"[^"]*dbname=' .. db_b)
  local code, list = pgtide(ctx, "status")
  T.eq(code, 0, list)
  T.match(list, "\nlive_a%s+" .. runs.a.proc:pid())
  T.match(list, "\nlive_b%s+" .. runs.b.proc:pid())

  -- The directory is 0700, the socket 0600; another user cannot connect, not even when the
  -- file modes are opened up (the server checks the peer's uid).
  local dir, sock = run_dir(ctx) .. "/pgtide", run_dir(ctx) .. "/pgtide/live_a.sock"
  T.eq(select(2, T.sh("stat -c %a " .. dir)), "700\n")
  T.eq(select(2, T.sh("stat -c %a " .. sock)), "600\n")
  -- Another user runs a copy of the binary from the scratch directory (world-searchable),
  -- since the checkout itself may sit in a directory only root can enter.
  local copy = ctx.tmpdir .. "/pgtide-for-nobody"
  T.eq(T.sh("cp " .. H.PGTIDE .. " " .. copy .. " && chmod 755 " .. copy), 0)
  local as_nobody = "runuser -u nobody -- " .. copy .. " attach --control " .. sock .. " -e 'return 1'"
  code, out = T.sh(as_nobody)
  T.eq(code, 4, out)
  T.match(out, "[Pp]ermission denied")
  T.sh("chmod 0711 " .. run_dir(ctx) .. " " .. dir .. "; chmod 0666 " .. sock)
  code, out = T.sh(as_nobody)
  T.sh("chmod 0700 " .. run_dir(ctx) .. " " .. dir .. "; chmod 0600 " .. sock)
  T.eq(code, 4, out)
  T.match(out, "refused the connection")

  -- A second run of a running task is refused and leaves the first alone.
  local second, second_log = spawn(ctx, { "run", runs.a.pb }, "live_a_again")
  T.eq(second:wait(), 1, H.read(second_log))
  T.match(H.read(second_log), "task live_a is already running %(pid " .. runs.a.proc:pid() .. "%)")
  T.eq(must_status(ctx, "live_a").pid, runs.a.proc:pid())

  -- Secrets: not in the task's printing, its fields, the playbook text, the status.
  for _, chunk in ipairs({ "return task", "for k, v in pairs(task) do print(k, v) end",
                           "local f = io.open(task.file) local s = f:read(\"a\") f:close() print(s) return s" }) do
    out = select(2, attach(ctx, "live_a", chunk))
    T.nomatch(out, SECRET, chunk)
  end
  T.match(out, "%*%*%*%*%*%*%*%*")
  out = select(2, pgtide(ctx, "status live_a --json"))
  T.nomatch(out, SECRET)
  T.match(out, "password=%*%*%*%*%*%*%*%*")

  -- A task killed outright leaves its socket; status says so; running it again replaces it.
  runs.b.proc:kill(9)
  runs.b.proc:wait()
  list = select(2, pgtide(ctx, "status"))
  T.match(list, "left over from ended processes: live_b")
  code, out = attach(ctx, "live_b", "return 1")
  T.eq(code, 1, out)
  T.match(out, "not running")
  local again = spawn(ctx, { "run", runs.b.pb }, "live_b_again")
  must_wait("the new live_b serving", 20, function()
    local x = status(ctx, "live_b")
    return x and x.pid == again:pid()
  end)

  for _, c in pairs(locks) do c:exec("COMMIT") end
  ctx.cleanup = function()
    for _, c in pairs(locks) do c:close() end
    local c = assert(tide.connect(ctx.source_admin))
    c:exec("DROP DATABASE IF EXISTS " .. db_b .. " WITH (FORCE)")
    c:close()
    c = assert(tide.connect(ctx.target_admin))
    c:exec("DROP DATABASE IF EXISTS " .. db_b .. " WITH (FORCE)")
    c:close()
  end
  T.eq(runs.a.proc:wait(), 0, H.read(ctx.tmpdir .. "/live_a.log"))
  T.eq(again:wait(), 0, H.read(ctx.tmpdir .. "/live_b_again.log"))
  T.eq(select(2, T.sh("ls " .. dir)), "", "sockets removed when the tasks ended")
end)

------------------------------------------------------------------------ a real terminal

local function tmux(sock, args) return T.sh("tmux -S " .. sock .. " " .. args) end

case("an interactive session in a terminal: multi-line function, completion, history, Ctrl-C", function(ctx)
  reset({ ctx.source_url, ctx.target_url })
  local s = assert(tide.connect(ctx.source_url))
  assert(s:exec("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 100)"))
  local held = lock(ctx.source_url, "t")
  local pb = H.playbook(ctx, "live_tty", [[migrate = { "schema", "full" }, progress = "none",]])
  local run = spawn(ctx, { "run", pb }, "live_tty")
  must_wait("the task serving", 20, function() return status(ctx, "live_tty") end)

  local home = ctx.tmpdir .. "/home"
  os.execute("mkdir -p " .. home)
  local sock = ctx.tmpdir .. "/tmux.sock"
  ctx.cleanup = function() tmux(sock, "kill-server"); held:exec("ROLLBACK"); held:close() end
  T.eq(tmux(sock, string.format("new-session -d -x 160 -y 50 %s",
    quote(string.format("env HOME=%s XDG_RUNTIME_DIR=%s %s attach live_tty", home, run_dir(ctx), H.PGTIDE)))), 0)
  local function screen() return select(2, tmux(sock, "capture-pane -p -S -100")) end
  local function type_line(text) tmux(sock, "send-keys -l " .. quote(text)); tmux(sock, "send-keys Enter") end
  local function see(pattern, count)
    return must_wait("the terminal to show " .. pattern, 10, function()
      local n = select(2, screen():gsub(pattern, ""))
      return n >= (count or 1)
    end)
  end
  see("attached to task live_tty")
  type_line("function sq(x)")
  see("\n>>%s*\n")
  type_line("  return x * x")
  type_line("end")
  type_line("sq(12)")
  see("\n144\n")
  -- Completion asked from the server: a method of the live task.
  tmux(sock, "send-keys -l 'task:sta'")
  tmux(sock, "send-keys Tab")
  see("task:status")
  type_line("().phase")
  see('\n"starting"\n')
  -- History: the call again, from the line before last.
  tmux(sock, "send-keys Up Up Enter")
  see("\n144\n", 2)
  -- Ctrl-C interrupts the running chunk, not the session.
  type_line("while true do end")
  -- The chunk may not have reached the task yet when the key arrives (a loaded machine): a
  -- Ctrl-C at the prompt only clears the line, so press it until the chunk reports it.
  local pressed = 0
  must_wait("the terminal to show attach:1: interrupted", 10, function()
    if screen():find("attach:1: interrupted", 1, true) then return true end
    if tide.monotonic() - pressed > 0.5 then tmux(sock, "send-keys C-c"); pressed = tide.monotonic() end
  end)
  type_line("1 + 1")
  see("\n2\n")
  tmux(sock, "send-keys C-d")
  must_wait("the session to end", 10, function() return tmux(sock, "has-session") ~= 0 end)
  T.match(H.read(home .. "/.pgtide_attach_history"), "sq%(12%)")

  held:exec("COMMIT")
  ctx.cleanup = function() tmux(sock, "kill-server"); held:close() end
  T.eq(run:wait(), 0, H.read(ctx.tmpdir .. "/live_tty.log"))
  s:close()
end)

------------------------------------------------------------------------ incremental

case("pause during incremental streaming: apply stops, the stream outlives wal_sender_timeout", function(ctx)
  local ok = pcall(require, "tide.cdc")
  if not ok then error("tide.cdc is missing from this build: the incremental part cannot run") end
  reset({ ctx.source_url, ctx.target_url })
  local admin = assert(tide.connect(ctx.source_admin))
  assert(admin:exec("ALTER DATABASE " .. ctx.dbname .. " SET wal_sender_timeout = '2s'"))
  ctx.cleanup = function() admin:exec("ALTER DATABASE " .. ctx.dbname .. " RESET wal_sender_timeout") end
  local s = assert(tide.connect(ctx.source_url))
  assert(s:exec("CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'v' FROM generate_series(1, 1000) g"))
  local pb = H.playbook(ctx, "live_cdc", [[migrate = { "schema", "full", "incremental" },
    incremental = { heartbeat_interval = 0.2 }, progress = "plain",]])
  local run, log = spawn(ctx, { "run", pb }, "live_cdc")
  local t = assert(tide.connect(ctx.target_url))
  local function target_rows()
    local r = t:query("SELECT count(*) AS n FROM t")
    return r and r[1].n
  end
  local function walsender()
    local r = assert(s:query("SELECT active_pid FROM pg_replication_slots WHERE database = $1 AND active", ctx.dbname))
    return r[1] and r[1].active_pid
  end
  local st = must_wait("streaming", 30, function()
    local x = status(ctx, "live_cdc")
    return x and x.phase == "incremental" and x.incremental and x
  end)
  T.ok(st.delay and st.delay.seconds ~= nil, "status carries the delay")
  local sender = must_wait("the walsender", 10, walsender)
  local code, out = attach(ctx, "live_cdc", "return task:pause()")
  T.eq(code, 0, out)
  T.match(out, "change stream")
  must_wait("the stream paused", 10, function()
    local x = status(ctx, "live_cdc")
    return x and x.incremental and x.incremental.paused
  end)
  assert(s:exec("INSERT INTO t SELECT g, 'late' FROM generate_series(1001, 1100) g"))
  for _ = 1, 6 do
    tide.sleep(0.5)   -- past wal_sender_timeout (2 s): a measurement window
    T.eq(target_rows(), 1000, "applied while paused")
  end
  T.eq(walsender(), sender, "the replication connection was cut while paused (wal_sender_timeout)")
  T.eq(must_status(ctx, "live_cdc").incremental.reconnects or 0, 0, "the stream reconnected while paused")
  code, out = attach(ctx, "live_cdc", "return task:resume()")
  T.eq(code, 0, out)
  must_wait("the changes applied after resume", 20, function() return target_rows() == 1100 end)
  code, out = attach(ctx, "live_cdc", "return task:stop()")
  T.eq(code, 0, out)
  T.eq(run:wait(), 0, H.read(log))
  T.eq(P.fingerprint(t, "t"), P.fingerprint(s, "t"))
  s:close(); t:close()
end)
