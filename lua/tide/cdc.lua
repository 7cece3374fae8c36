-- tide.cdc — incremental migration: publication, slot and origin; the change stream with its
-- heartbeat, delay figures, stop condition and cutover; release. Bytes never pass through
-- here: the stream (tide.core.cdc_stream, engine/cdc/lua_cdc.c) decodes and applies in C, and
-- this module steers it. The playbook reference is docs/incremental.md.
--
-- THE CONTRACT with tide.cmd.run (the orchestration of `pgtide run`):
--
--   cdc.prepare(task, plan, source, target [, { snapshot = false }])
--     → { snapshot = "00000003-00000002-1", lsn = "0/1A2B3C", hold = <replication conn>,
--         slot =, publication = }                         a new slot (and origin reset)
--     → { resumed = true, lsn = "0/1A2B3C", slot =, publication = }
--                                                         the slot exists and the target's
--                                                         origin has a position: continue
--     Creates (in this order) the heartbeat table, the publication, the replication origin on
--     the target (reset to "no position"), then the slot, waiting at most
--     incremental.slot_timeout (default 5 min) and naming the transactions that block it.
--     `hold` keeps the exported snapshot alive: leave it idle until every copy has run
--     `SET TRANSACTION SNAPSHOT`; copy_done closes it. With { snapshot = false } there is no
--     snapshot and no hold (migrate = { "incremental" } on a target that already has the data).
--     A slot that exists while the origin has no position is left over from a run that died
--     before its full load committed: it is dropped and made again, and the full load MUST
--     run again under the new snapshot (whatever the task state says) — `resumed` is the
--     truth about that.
--   cdc.copy_done(task, info, target)
--     Once the full load committed: records info.lsn as the origin's position (durably), so
--     streaming starts there, and closes info.hold. Nothing to do for a resumed info.
--   cdc.stream(run, plan, source, target [, { tick = 0.25, quiet = false }])
--     run: the tide.taskrun run (a task is taken as a run of its own); the run holds the
--     stream's handle while it runs (run.stream: status, pause, resume, request_stop) and the
--     stop condition (run:stop_condition(), the task's `stop` unless an operator replaced it).
--     → summary { stopped_by = "condition" | "signal" | "request", transactions =, changes =,
--                 seconds =, applied_lsn =, conflicts = {...}, reconnects =, cutover_hooks =,
--                 released = bool, status = <last status> }
--     Streams from the origin's position until the stop condition returns true or SIGINT/
--     SIGTERM arrives (or run.stream:request_stop()); stops cleanly (the source transaction in
--     progress finishes, everything is committed and reported durable); runs on.cutover
--     hooks only when the stop condition fired; releases when incremental.release = true.
--     Reconnects after transient failures (lost connection, server restart) within
--     task.retry limits. Raises a tide.failure for anything else (conflict under "error",
--     a column added on the source with incremental.ddl = false, an invalidated slot, a DDL
--     the target refuses, ...), with the change named. DDL of the source is applied in its
--     place (tide.cdc.ddl), unless incremental.ddl = false.
--   run.stream:status() → the latest status table; run.stream:pause() / :resume(): apply
--     stops taking new work at the next transaction boundary; feedback to the source continues.
local core = require "tide.core"
local log = require "tide.log"
local connect = require "tide.connect"
local failure = require "tide.failure"
local retry = require "tide.retry"
local when = require "tide.when"
local taskrun = require "tide.taskrun"
local objects = require "tide.cdc.objects"
local figures = require "tide.cdc.figures"
local cutover = require "tide.cdc.cutover"
local switch = require "tide.cdc.switch"
local rows_mod = require "tide.cdc.rows"
local ddl = require "tide.cdc.ddl"
local tables = require "tide.cdc.tables"
local follow = require "tide.cdc.follow"
local lanes = require "tide.cdc.lanes"

local M = {}

M.names = objects.names
M.release = objects.release
M.sync_sequences = cutover.sync_sequences

-- A running stream as its run sees it (run.stream): status, pause, resume, request_stop.
local Stream = {}
Stream.__index = Stream

function Stream:status() return self.st.status end

function Stream:pause()
  local st = self.st
  st.paused = true
  if st.stream then st.stream:pause() end
  return true
end

function Stream:resume()
  local st = self.st
  st.paused = false
  if st.stream then st.stream:resume() end
  return true
end

-- Stop the stream as a signal would (for tests); cutover hooks do not run.
function Stream:request_stop(reason)
  local st = self.st
  st.stop_reason = st.stop_reason or reason or "request"
  return true
end

local function conf(task) return task.incremental or {} end

local function seconds(task, key, default)
  local v = conf(task)[key]
  if v == nil then return default end
  return assert(when.seconds(v))
end

------------------------------------------------------------------------ prepare / copy_done

function M.prepare(task, plan, source, target, opts)
  opts = opts or {}
  local names = objects.names(task)
  objects.check_source(source)
  local slot = objects.slot_info(source, names)
  if not slot and task.reverse_of then require("tide.cdc.reverse").check_slot(task, source) end
  if slot then
    objects.raise_if_lost(slot, names)
    local pos = objects.origin_position(target, names)
    if pos then
      ddl.prepare(task, plan, source, target, false)
      return { resumed = true, lsn = pos, slot = names.slot, publication = names.publication }
    end
    -- The earlier run died before its full load committed: its snapshot is gone.
    objects.drop_slot(source, names)
  end
  if conf(task).heartbeat ~= false then objects.ensure_heartbeat(source, names) end
  -- A fresh slot follows: the publication can be made again to match today's plan.
  objects.drop_publications(source, names)
  objects.ensure_publication(task, plan, source, names)
  objects.reset_origin(target, names, task)
  ddl.prepare(task, plan, source, target, true)
  local info = objects.create_slot(task, source, names, opts.snapshot ~= false,
                                   seconds(task, "slot_timeout", 300))
  info.publication = names.publication
  return info
end

function M.copy_done(task, info, target)
  if info.hold then info.hold:close(); info.hold = nil end
  if info.resumed then return end
  local names = objects.names(task)
  assert(info.lsn, "copy_done: info.lsn missing (pass what cdc.prepare returned)")
  local ok, err = target:query("SELECT pg_catalog.pg_replication_origin_advance($1, $2::pg_lsn)",
                               names.origin, info.lsn)
  if ok then ok, err = target:query("SELECT pg_catalog.pg_replication_origin_progress($1, true)", names.origin) end
  if not ok then
    failure.raise("failed", "cannot record the starting position in the replication origin " ..
      names.origin .. ": " .. (err.message or tostring(err)), { err = err })
  end
end

------------------------------------------------------------------------ the table map

------------------------------------------------------------------------ the stream

-- Which failures the stream reconnects after, and how long it waits: tide.retry, the same
-- rule as `pgtide run`'s retries.
local is_transient = retry.transient

local function describe(err)
  if type(err) ~= "table" then return tostring(err) end
  local s = err.message or tostring(err)
  if err.context then s = s .. "\n  while " .. err.context end
  if err.detail then s = s .. "\n  detail: " .. err.detail end
  if err.hint then s = s .. "\n  hint: " .. err.hint end
  return s
end

-- The source's decoding failing to map a relation, the same way this many times in a row:
-- the slot cannot be read past that point (retry.decoding_error).
local DECODING_REPEATS = 3

local function raise_undecodable(names, message, times)
  failure.raise("failed", string.format("incremental migration stopped: the source cannot decode the " ..
    "replication slot %s past one change (%s; %d times in a row, each reconnect decoding again from the " ..
    "slot's restart point). This is a defect of PostgreSQL's logical decoding, not of the data: a " ..
    "transaction that changed the catalog (DDL, a TRUNCATE) while the slot was being created can be left " ..
    "out of the snapshot decoding rebuilds on every restart, and later changes of that relation cannot " ..
    "be mapped. Retrying does not get past it\n  hint: run `pgtide release` for this task (it drops the " ..
    "slot and forgets the task's progress), empty the target tables, and run the task again: it migrates " ..
    "again with a full load under a new slot. Keep DDL and TRUNCATE off the source while the run's slot " ..
    "phase creates the slot", names.slot, message, times))
end

-- Streaming (PostgreSQL 14+, protocol 2+): the source sends a transaction larger than its
-- logical_decoding_work_mem while it runs; the engine spools it (engine/cdc/spool.c) and applies it
-- whole at its commit. incremental.streaming = false leaves it to the source to spill instead.
local function streams(task, repl)
  return conf(task).streaming ~= false and repl:server_version() >= 140000
end

local function spool_dir(task)
  return conf(task).spool_dir or os.getenv("TMPDIR") or "/tmp"
end

-- pgoutput's publication_names: a comma-separated list of identifiers (names.publications, set
-- by M.stream from what exists on the source; the main publication alone otherwise).
local function publication_list(repl, names)
  local list = {}
  for i, name in ipairs(names.publications or { names.publication }) do list[i] = repl:quote_ident(name) end
  return table.concat(list, ",")
end

local function start_sql(task, repl, names, lsn)
  local v = repl:server_version()
  local proto = v >= 160000 and 4 or v >= 150000 and 3 or v >= 140000 and 2 or 1
  local options = { "proto_version '" .. proto .. "'",
                    "publication_names " .. repl:quote_literal(publication_list(repl, names)) }
  if v >= 140000 then options[#options + 1] = "messages 'true'" end
  if streams(task, repl) then options[#options + 1] = "streaming 'on'" end
  return string.format("START_REPLICATION SLOT %s LOGICAL %s (%s)", repl:quote_ident(names.slot), lsn,
                       table.concat(options, ", "))
end

-- A fresh apply session after this many prepared statements (incremental.apply_session_statements;
-- docs/performance.md, "A fresh apply session").
local SESSION_STATEMENTS = 10000

-- A target connection for applying changes under replication origin `origin`.
local function apply_connection(task, origin, role)
  local a = connect.open(task, "target", { application_name = "pgtide:" .. task.name .. ":" .. role,
    -- enable_seqscan = off: every row is looked up by its key, or without one by all its
    -- values; on a small table the planner would otherwise scan the heap, which inside a
    -- group holds every version the group wrote so far.
    settings = { synchronous_commit = "off", statement_timeout = "0", lock_timeout = "0",
                 idle_in_transaction_session_timeout = "0", enable_seqscan = "off" } })
  -- jit = off: with enable_seqscan = off a row of a table without a usable index costs more
  -- than jit_above_cost, and the server compiled every such statement (40 to 65 ms each).
  -- A setting PostgreSQL 11 brought, so SET after connecting, not in the startup packet.
  if a:server_version() >= 110000 then
    local ok, err = a:exec("SET jit = off")
    if not ok then a:close(); error(err, 0) end
  end
  if conf(task).replica_role ~= false then
    local ok, err = a:exec("SET session_replication_role = replica")
    if not ok then
      a:close()
      failure.raise("failed", "cannot SET session_replication_role = replica on the target (" .. err.message ..
        "): without it target triggers and foreign keys fire a second time for replicated rows\n" ..
        "  hint: run as a superuser, GRANT SET ON PARAMETER session_replication_role TO the target user " ..
        "(PostgreSQL 15+), or set incremental.replica_role = false to accept that triggers fire", { err = err })
    end
  end
  local ok, err = a:query("SELECT pg_catalog.pg_replication_origin_session_setup($1)", origin)
  if not ok then
    a:close()
    if err.sqlstate == "55006" or (err.message or ""):find("already active") then
      err.message = err.message .. " (another pgtide process may be applying this task, or the previous one's " ..
                    "session has not ended yet)"
    end
    error(err, 0)
  end
  return a
end

-- Open the stream's connections and set up the apply session. Returns st.session or raises.
local function open_session(task, st)
  local names = st.names
  local repl_settings = {}
  if conf(task).decoding_work_mem then
    repl_settings.logical_decoding_work_mem = tostring(math.max(64, assert(when.bytes(conf(task).decoding_work_mem)) // 1024)) .. "kB"
  end
  local ses = {}
  st.session = ses
  if not st.control then
    st.control = connect.open(task, "source", { application_name = "pgtide:" .. task.name .. ":control" })
  end
  -- The replication connection, the apply session and the slot's state at once: a catch-up
  -- starts when all three are there (tide.connect.together: a connection that opened is
  -- closed if another failed).
  local opened = connect.together({
    { connect.open, task, "source", { replication = "database", settings = repl_settings,
      application_name = "pgtide:" .. task.name .. ":stream", client_encoding = st.encoding } },
    { apply_connection, task, names.origin, "apply" },
    { function() return objects.slot_info(st.control, names), objects.publications(st.control, names) end },
  })
  ses.repl, ses.apply = opened[1][1], opened[2][1]
  local slot = opened[3][1]
  names.publications = opened[3][2]
  local a = ses.apply
  local rows = assert(a:query("SELECT pg_catalog.pg_replication_origin_session_progress(false)::text AS lsn"))
  local lsn = rows[1].lsn
  if lsn == core.null or lsn == nil or lsn == "0/0" then
    failure.raise("failed", "the replication origin " .. names.origin .. " on the target has no position: the " ..
      "full load never finished (cdc.copy_done was not recorded)\n  hint: run the task again from the start " ..
      "(release it first if it keeps failing)")
  end
  -- Parallel apply (tide.cdc.lanes): where to resume comes from the lanes' rows.
  local par = lanes.setup(task, names, a, lsn, function(origin, k)
    local c = apply_connection(task, origin, "apply" .. k)
    ses.lanes = ses.lanes or {}
    ses.lanes[k] = c
    return c
  end)
  local applied_upto = lsn
  if par then lsn, applied_upto = par.resume.watermark, par.resume.upto end
  -- DDL replication's record: read now that this session holds every origin of the task (the
  -- lanes' too), so that no session of a dead run can still commit a DDL message after it. Read
  -- earlier, the record could be older than the position the stream starts from.
  if st.ddl then
    st.ddl.known = ddl.load(task, a) or require("tide.cdc.ddl_known").new()
    st.tables = ddl.overlay(st.ddl, st.plan_tables, st.plan)
  end
  ses.start_lsn = lsn
  -- The slot must not be ahead of what the target has (a restored target, say).
  if not slot then
    failure.raise("failed", "the replication slot " .. names.slot .. " does not exist on the source (released?)" ..
      "\n  hint: run the task again from the start")
  end
  objects.raise_if_lost(slot, names)
  local confirmed = figures.lsn_number(slot.confirmed_flush_lsn)
  if confirmed and confirmed > figures.lsn_number(applied_upto) then
    failure.raise("failed", string.format("the slot %s has confirmed changes up to %s but the target has only " ..
      "applied up to %s: the target lost data it had acknowledged (restored from a backup?). Streaming now " ..
      "would leave a gap\n  hint: release the task and migrate again", names.slot, slot.confirmed_flush_lsn, applied_upto))
  end
  -- The first session's start: what the stream keeps is built (the map, DDL replication's
  -- record), and what building it took is garbage. Given back to the system before the
  -- stream starts, rather than kept by the allocator for a stream that may run for days and
  -- allocate little (docs/performance.md, "The stream's tables shared").
  if not st.memory_released then
    st.memory_released = true
    core.release_memory()
  end
  ses.stream = core.cdc_stream(ses.repl, ses.apply, {
    start_sql = start_sql(task, ses.repl, names, lsn), start_lsn = lsn,
    spool_dir = streams(task, ses.repl) and spool_dir(task) or nil,
    conflict = conf(task).conflict or "error", conflict_hook = task.on and task.on.conflict ~= nil,
    batch_updates = conf(task).batch_updates ~= false,
    group_changes = conf(task).group_changes, group_ms = conf(task).group_ms,
    group_live_ms = conf(task).group_live_ms,
    skip_origins = require("tide.cdc.reverse").skip_origins(task),
    tables = st.tables, ddl_prefix = st.ddl and ddl.names(task).prefix or nil,
    lanes = par and par.stream or nil,
    session_statements = conf(task).apply_session_statements or SESSION_STATEMENTS,
  })
  return ses
end

-- The stream asked for a new apply session ({kind="reconnect", lane=}: the old one prepared
-- apply_session_statements statements, and nothing is in flight on it). The old session gives
-- the origin back first (an origin is active in one session at a time), then the new one takes
-- it. Raises when either fails: the session ends and the stream resumes from the origin (the
-- lanes' rows with parallel apply).
local function reconnect(task, st, s, ev)
  local ses, k = st.session, ev.lane or 0
  local old = k == 0 and ses.apply or ses.lanes[k]
  local ok, err = old:query("SELECT pg_catalog.pg_replication_origin_session_reset()")
  if not ok then error(err, 0) end
  local new = apply_connection(task, lanes.origin(st.names, k), k == 0 and "apply" or "apply" .. k)
  if k == 0 then ses.apply = new else ses.lanes[k] = new end
  old:close()
  s:reply(new, k)
  if not st.reconnect_noted then
    st.reconnect_noted = true
    local n = conf(task).apply_session_statements or SESSION_STATEMENTS
    log.note("apply_session", string.format("the apply session prepared %d statements (many tables): it was " ..
      "replaced by a new one between two target transactions, as it will be again each time (apply_sessions " ..
      "in the status counts them)", n), { statements = n })
  end
end

local function close_session(st)
  local ses = st.session
  if not ses then return end
  st.session = nil
  if ses.stream then ses.stream:close() end
  if ses.repl then ses.repl:close() end
  if ses.apply then ses.apply:close() end
  for _, c in pairs(ses.lanes or {}) do c:close() end
  follow.close(st)
end

-- Without DDL replication (incremental.ddl = false) a dropped table sends nothing: its changes up to the drop are
-- applied, then it falls silent. Noticed here (every DROP_CHECK_EVERY seconds) and said once
-- per table; the stream goes on for the others and the target keeps the table as it was.
local DROP_CHECK_EVERY = 2
local function check_dropped(st, conn)
  if st.ddl then return end   -- DDL replication follows a DROP TABLE itself
  local schemas, names = {}, {}
  for _, e in ipairs(st.tables or {}) do
    if not e.heartbeat and not (st.dropped and st.dropped[e.source_schema .. "." .. e.source_name]) then
      schemas[#schemas + 1], names[#names + 1] = e.source_schema, e.source_name
    end
  end
  if #schemas == 0 then return end
  local rows = conn:query([[
SELECT u.s, u.n FROM unnest($1::text[], $2::text[]) AS u(s, n)
WHERE pg_catalog.to_regclass(pg_catalog.quote_ident(u.s) || '.' || pg_catalog.quote_ident(u.n)) IS NULL]],
    schemas, names)
  for _, r in ipairs(rows or {}) do
    local name = r.s .. "." .. r.n
    st.dropped = st.dropped or {}
    if not st.dropped[name] then
      st.dropped[name] = true
      st.dropped[#st.dropped + 1] = name
      log.warning("table_dropped", string.format("table %s was dropped on the source while streaming: its " ..
        "changes up to the drop are applied and the other tables go on; the target keeps its copy as it was " ..
        "(DDL replication is off: drop it on the target yourself if it should go)", name), { table = name })
    end
  end
end

-- The heartbeat and source-position probe, every heartbeat_interval, on its own connection
-- (st.probe_conn, which the stream closes after a failure so that a fresh one is opened).
local function probe_loop(task, st)
  local hb = conf(task).heartbeat ~= false
  local interval = seconds(task, "heartbeat_interval", 1)
  local update
  while not st.finished do
    if not st.probe_conn then
      local ok, c = pcall(connect.open, task, "source", { application_name = "pgtide:" .. task.name .. ":heartbeat",
                                                          timeout = 5 })
      if ok then
        st.probe_conn = c
        update = "UPDATE " .. objects.heartbeat_sql(c, st.names) ..
          " SET beat = pg_catalog.clock_timestamp(), lsn = pg_catalog.pg_current_wal_insert_lsn() WHERE slot = $1"
      end
    end
    local conn = st.probe_conn
    if conn then
      -- pcall: the stream may close this connection under us after a failure.
      local ok, rows = pcall(function()
        if hb and not conn:query(update, st.names.slot) then return nil end
        return conn:query("SELECT pg_catalog.pg_current_wal_insert_lsn()::text AS lsn")
      end)
      if ok and rows and core.monotonic() >= (st.next_drop_check or 0) then
        st.next_drop_check = core.monotonic() + DROP_CHECK_EVERY
        ok = pcall(check_dropped, st, conn)
      end
      if ok and rows then
        st.figures:probe(rows[1].lsn, core.now())
      else
        conn:close()
        if st.probe_conn == conn then st.probe_conn = nil end
      end
    end
    local until_t = core.monotonic() + interval
    while not st.finished and core.monotonic() < until_t do core.sleep(math.min(0.05, interval)) end
  end
  if st.probe_conn then st.probe_conn:close(); st.probe_conn = nil end
end

-- After a failure, connections to a server that went away are not reused: close them (which
-- also wakes a coroutine still waiting on one) and let them be opened again.
local function reset_side_connections(task, st)
  if st.probe_conn then st.probe_conn:close(); st.probe_conn = nil end
  if st.control then st.control:close() end
  local ok, c = pcall(connect.open, task, "source", { application_name = "pgtide:" .. task.name .. ":control" })
  st.control = ok and c or nil
end

local function report(task, st, status, opts)
  local hook = task.on and task.on.progress
  if hook then
    local ok, err = pcall(hook, status)
    if not ok then log.error("hook_failed", "on.progress hook failed: " .. tostring(err), { hook = "on.progress" }) end
  end
  if opts.quiet or task.progress == "none" then return end
  if not st.last_line or status.now - st.last_line >= (opts.progress_every or 10) then
    st.last_line = status.now
    io.stdout:write(figures.line(status), "\n")
    io.stdout:flush()
  end
end

local function log_conflicts(st, s)
  local list, total = s:conflicts(st.conflicts_seen)
  st.conflicts_seen = total
  for _, c in ipairs(list) do
    log.write("warning", "conflict", string.format("conflict %s on %s (key %s) at LSN %s%s", c.conflict, c.table,
      c.key, c.lsn, c.conflict:find("%(") and "" or ": skipped"), { conflict = c.conflict, table = c.table,
      key = c.key, lsn = c.lsn })
  end
end

local function on_change(st, s, ev)
  local tf = st.transforms[ev.source]
  if tf and rows_mod.handle(tf, s, ev) then return end   -- on.row (and on.route) answered it
  local fn = st.hooks[ev.source] or st.hooks[ev.schema .. "." .. ev.table]
  if not fn then
    for k, f in pairs(st.hooks) do
      if k:gsub('"', "") == ev.source then fn = f break end
    end
  end
  if not fn then s:reply(ev) return end
  local ok, res = pcall(fn, ev)
  if not ok then
    failure.raise("failed", string.format("the on.change hook for %s failed at LSN %s: %s", ev.source, ev.lsn,
      tostring(res)))
  end
  if res == false then s:reply(false) elseif type(res) == "table" then s:reply(res) else s:reply(ev) end
end

local function on_conflict(task, _st, s, ev)
  local ok, res = pcall(task.on.conflict, ev)
  if not ok then
    log.error("hook_failed", "on.conflict hook failed (" .. tostring(res) .. "): stopping on the conflict",
              { hook = "on.conflict" })
    res = "error"
  end
  if res == nil then res = (conf(task).conflict == "skip") and "skip" or "error" end
  s:reply(res == "skip" or res == true)
end

-- One connected session: runs until stopped (returns the stop stats) or failed (returns nil, err).
local function session(task, st, opts)
  local ok, ses = pcall(open_session, task, st)
  if not ok then return nil, ses end
  local s = ses.stream
  st.stream = s
  if st.paused then s:pause() end
  local tick = opts.tick or 0.25
  local last_tick = core.monotonic()
  while true do
    local ev = s:next(tick)
    if ev.kind == "failed" then st.stream = nil return nil, ev.err end
    -- The tick's work (status, stop condition, cutover) also runs when events keep coming
    -- (hooked changes, session switches): every `tick` seconds at the latest.
    local due = core.monotonic() - last_tick >= tick
    if ev.kind == "change" then
      local hok, herr = pcall(on_change, st, s, ev)
      if not hok then st.stream = nil return nil, herr end
    elseif ev.kind == "conflict" then
      on_conflict(task, st, s, ev)
    elseif ev.kind == "ddl" then
      local dok, derr = pcall(ddl.handle, st.ddl, s, ev)
      if not dok then st.stream = nil return nil, derr end
    elseif ev.kind == "follow" then
      local fok, ferr = pcall(follow.handle, st, s, ev)
      if not fok then st.stream = nil return nil, ferr end
    elseif ev.kind == "reconnect" then
      local rok, rerr = pcall(reconnect, task, st, s, ev)
      if not rok then st.stream = nil return nil, rerr end
    else
      due = true
    end
    if due then
      last_tick = core.monotonic()
      local stats = s:stats()
      local status = st.figures:status(stats, core.now(), { paused = st.paused, reconnects = st.reconnects })
      if st.ddl then status.ddl = { applied = st.ddl.applied, skipped = st.ddl.skipped, recent = st.ddl.recent } end
      st.status = status
      log_conflicts(st, s)
      report(task, st, status, opts)
      local cut_err = switch.tick(task, st, stats, status)
      if cut_err then st.stream = nil return nil, cut_err end
      local condition = st.run:stop_condition()
      if not st.stop_reason and condition and not st.cut then
        local cok, fire = pcall(condition, status)
        if not cok then
          if st.stop_error ~= tostring(fire) then
            st.stop_error = tostring(fire)
            log.error("stop_condition_failed", "the stop condition raised an error (still streaming): " ..
                      st.stop_error)
          end
        elseif fire then
          st.stop_reason = "condition"
          if st.run.progress then
            st.run.progress:emit("stop_condition", { condition = tostring(condition), delay = status.delay,
                                                     bytes_behind = status.bytes_behind })
          end
        end
      end
      if st.stop_reason == "condition" and not st.drain_to then
        -- Cutover: everything the source committed up to this moment must be applied before
        -- the stream stops (the condition may have fired between a commit and its arrival).
        local dok, lsn = pcall(function()
          local c <close> = connect.open(task, "source", { application_name = "pgtide:" .. task.name .. ":drain" })
          return assert(c:query("SELECT pg_catalog.pg_current_wal_insert_lsn()::text AS lsn"))[1].lsn
        end)
        if not dok then st.stream = nil return nil, lsn end
        st.drain_to = figures.lsn_number(lsn)
      end
      local draining = st.stop_reason == "condition" and st.drain_to and (stats.applied or 0) < st.drain_to
      if st.stop_reason and not draining then
        local stats_or_nil, err = s:stop()
        -- the transaction being finished holds something for Lua (a DDL message, a change)
        while stats_or_nil == false do
          local held = err
          local hok, herr = pcall(function()
            if held.kind == "ddl" then ddl.handle(st.ddl, s, held)
            elseif held.kind == "change" then on_change(st, s, held)
            elseif held.kind == "conflict" then on_conflict(task, st, s, held)
            elseif held.kind == "follow" then follow.handle(st, s, held)
            elseif held.kind == "reconnect" then reconnect(task, st, s, held) end
          end)
          if not hok then st.stream = nil return nil, herr end
          stats_or_nil, err = s:stop()
        end
        st.stream = nil
        if not stats_or_nil then return nil, err end
        return stats_or_nil
      end
    end
  end
end

function M.stream(run, plan, _source, target, opts)
  opts = opts or {}
  run = taskrun.of(run)
  local task = run.task
  local names = objects.names(task)
  local now = core.now()
  local st = { names = names, figures = figures.new(seconds(task, "delay_bound", 1), now), reconnects = 0,
               conflicts_seen = 0, started = now, task = task, run = run, plan = plan }
  -- A cutover that a dead run left fenced: the source takes writes again before anything else.
  local lifted = switch.recover(task, target)
  if lifted then
    log.write("warning", "cutover", string.format("a cutover that did not finish left the source fenced (%s, " ..
      "since %s): the fence is lifted and the task streams on; run pgtide cutover again to switch", lifted.method,
      tostring(lifted.at_text)), {})
  end
  local handle = setmetatable({ st = st }, Stream)
  run:attach_stream(handle)
  -- Every way out of here (an error included) ends the run's view of the stream.
  local _ <close> = setmetatable({}, { __close = function() run:detach_stream(handle) end })
  if conf(task).streaming ~= false then
    local dir = spool_dir(task)
    local probe_path = string.format("%s/.pgtide-probe-%d", dir, math.random(1 << 30))
    local probe = io.open(probe_path, "w")
    if not probe then
      failure.raise("failed", "incremental.spool_dir " .. dir .. " is not a writable directory: streamed " ..
        "transactions are kept there until they commit\n  hint: set incremental.spool_dir to a directory " ..
        "with room for the largest source transaction, or incremental.streaming = false")
    end
    probe:close()
    os.remove(probe_path)
  end
  local enc = assert(target:query("SELECT pg_catalog.pg_encoding_to_char(encoding) AS e FROM pg_catalog.pg_database " ..
                                  "WHERE datname = pg_catalog.current_database()"))
  st.encoding = enc[1].e
  st.control = connect.open(task, "source", { application_name = "pgtide:" .. task.name .. ":control" })
  st.tables, st.hooks, st.transforms = tables.build(task, plan, target, names, st.control)
  if ddl.enabled(task) then
    -- DDL replication: the map is what the target has at the stream's position (tide.cdc.ddl),
    -- read by every session (open_session): a reconnect restarts at the origin's position, with
    -- the DDL committed until then. Until the first session the map is the plan's.
    st.ddl = ddl.start(task, plan, target)
    st.plan_tables = st.tables
  end
  local handlers = {}
  for _, sig in ipairs({ "INT", "TERM" }) do
    handlers[sig] = true
    core.on_signal(sig, function() st.stop_reason = st.stop_reason or "signal" end)
  end
  local probe = core.spawn(probe_loop, task, st)
  local limits = retry.limits(task.retry)
  local attempts, max_delay = limits.attempts, limits.max_delay
  local failures, stats = 0, nil
  local decoding, decoding_repeats = nil, 0   -- the source's decoding failing the same way (retry.decoding_error)
  local ok, err = pcall(function()
    while true do
      local began = core.monotonic()
      local applied_before = st.status and st.status.applied or 0
      local result, serr = session(task, st, opts)
      close_session(st)
      if core.monotonic() - began > 60 then failures = 0 end   -- a long healthy session resets the count
      -- (the same decoding failure counts on until a session applied something: reading up to
      -- it may take longer than a minute)
      if (st.status and st.status.applied or 0) > applied_before then decoding_repeats = 0 end
      if result then stats = result break end
      if st.stop_reason and is_transient(serr) then break end   -- stopping anyway; progress is saved
      -- A server still restarting refuses connections for a moment: a connection failure
      -- while reconnecting is retried like a lost connection; other failures are final.
      if failure.is_failure(serr) and serr.kind ~= "connection" then error(serr, 0) end
      if objects.is_lost_error(serr) then objects.raise_lost(names, " (" .. describe(serr):gsub("\n.*", "") .. ")") end
      if not is_transient(serr) then failure.raise("failed", "incremental migration stopped: " .. describe(serr), { err = serr }) end
      local mapping = retry.decoding_error(serr)
      decoding_repeats = mapping and mapping == decoding and decoding_repeats + 1 or (mapping and 1 or 0)
      decoding = mapping
      if decoding_repeats >= DECODING_REPEATS then raise_undecodable(names, mapping, decoding_repeats) end
      failures = failures + 1
      if failures > attempts then
        failure.raise("failed", string.format("incremental migration gave up after %d attempts: %s", attempts, describe(serr)))
      end
      local delay = retry.delay(failures, max_delay)
      log.write("warning", "reconnect", string.format("%s; reconnecting in %.1f s (attempt %d of %d)",
        (serr and serr.message) or tostring(serr), delay, failures, attempts),
        { delay_seconds = delay, attempt = failures, attempts = attempts, reconnects = st.reconnects })
      local wake = core.monotonic() + delay
      while core.monotonic() < wake and not st.stop_reason do core.sleep(0.05) end
      if st.stop_reason then break end
      st.reconnects = st.reconnects + 1
      reset_side_connections(task, st)
    end
  end)
  st.finished = true
  close_session(st)
  if not (ok and st.stop_reason == "cutover") then
    switch.abandon(task, st, ok and (st.stop_reason or "stopped") or (type(err) == "table" and err.message or tostring(err)))
  end
  local deadline = core.monotonic() + 2
  while not probe:done() and core.monotonic() < deadline do core.sleep(0.02) end
  if not probe:done() and st.probe_conn then st.probe_conn:close() end
  probe:wait()
  for sig in pairs(handlers) do core.on_signal(sig, nil) end
  if st.control then st.control:close() end
  if not ok then error(err, 0) end
  local summary = { stopped_by = st.stop_reason or "request", reconnects = st.reconnects, status = st.status,
                    seconds = core.now() - st.started, dropped_tables = st.dropped }
  if stats then
    summary.transactions, summary.changes, summary.applied_lsn = stats.transactions, stats.changes, stats.applied_lsn
    summary.conflicts = stats.conflicts
    summary.origin_skipped = stats.origin_skipped
    summary.lanes = stats.lanes
    if (stats.origin_skipped or 0) > 0 then
      log.write("info", "origin_skipped", string.format("%d transaction(s) that the paired task had applied on the " ..
        "source were not applied back (replication origins %s)", stats.origin_skipped,
        table.concat(require("tide.cdc.reverse").skip_origins(task), ", ")), { transactions = stats.origin_skipped })
    end
  end
  if summary.stopped_by == "cutover" then
    -- The cutover's steps ran while the stream waited (tide.cdc.switch); the fence stays up.
    local t2 <close> = connect.open(task, "target")
    require("tide.state").open(task, t2):set_phase("cutover")
    summary.cutover = st.cut
    local text = switch.describe(st.cut)
    log.write("info", "cutover", text, { downtime_seconds = st.cut.downtime })
    if run.progress then run.progress:emit("cutover_done", { downtime = st.cut.downtime }) end
    local req = run.cutover_request
    if req then req.result = { ok = true, message = text, cut = st.cut } end
    if conf(task).release then
      local s2 <close> = connect.open(task, "source")
      summary.released = objects.release(task, s2, t2)
    end
    -- The operator's `pgtide cutover` is told before this process ends (its session answers
    -- from this loop): a few seconds at most.
    local told_by = core.monotonic() + 3
    while req and not req.delivered and core.monotonic() < told_by do core.sleep(0.05) end
    if req and req.delivered then core.sleep(0.2) end
  end
  if summary.stopped_by == "condition" then
    local s2, t2 = connect.open_both(task)
    local cok, cerr = pcall(function()
      -- DDL replication changed tables since the plan was made: the hooks (sequences,
      -- verification) see the catalogs as they are now.
      local hook_plan = plan
      if st.ddl and (st.ddl.applied or 0) > 0 then hook_plan = require("tide.plan").build(task, s2, t2) end
      summary.cutover_hooks = cutover.run(task, cutover.context { task = task, plan = hook_plan, source = s2,
                                                                    target = t2, status = st.status },
                                          run.progress)
      -- Recorded before the release: an engine that dies in between finishes the task on its
      -- next run instead of finding its slot gone.
      require("tide.state").open(task, t2):set_phase("cutover")
      if conf(task).release then
        summary.released = objects.release(task, s2, t2)
      end
    end)
    s2:close(); t2:close()
    if not cok then error(cerr, 0) end
  end
  return summary
end

return M
