-- tide.cdc.switch — the cutover as one step (`pgtide cutover FILE`, `task:cutover()`), run by
-- the change stream of a live task (tide.cdc):
--
--   1. fence   writes on the source stop: the playbook's `cutover.fence` — "read_only" (the
--              default: ALTER DATABASE ... SET default_transaction_read_only = on, then every
--              other client session of the database ended, since a session keeps the setting it
--              started with), "revoke_connect" (REVOKE CONNECT ... FROM cutover.roles, their
--              sessions ended) or a function(source) with its `cutover.unfence`. Recorded on the
--              target first, so a run that dies fenced lifts the fence when it starts again.
--   2. drain   the source's WAL position after the fence is the barrier; the stream applies up
--              to it.
--   3. sequences, 4. verify ("counts", "checksums" or "none"), 5. the on.cutover hooks.
--   6. the write downtime (fence to ready) and each step's time, printed and recorded.
-- Any failure before the end lifts the fence and the task streams on, with the reason.
local core = require "tide.core"
local failure = require "tide.failure"
local connect = require "tide.connect"
local units = require "tide.units"
local log = require "tide.log"
local figures = require "tide.cdc.figures"

local M = {}

local function conf(task) return task.cutover or {} end

-- The other client sessions of the database (pgtide's own stay: the stream must drain).
-- The sessions are chosen in a subquery that OFFSET 0 keeps apart before any is ended: with the
-- condition and pg_terminate_backend in one WHERE the planner orders the quals by cost, and it
-- called pg_terminate_backend before the database, backend type and own-pid tests — ending
-- client sessions of every database of the cluster, the autovacuum launcher and the logical
-- replication launcher. (No qual is pushed into a subquery with OFFSET, on every version; a
-- MATERIALIZED CTE would need PostgreSQL 12.)
local END_SESSIONS = [[
SELECT count(*) AS n, coalesce(array_agg(c.pid), '{}') AS pids
FROM (SELECT a.pid
      FROM pg_catalog.pg_stat_activity a
      WHERE a.datname = pg_catalog.current_database() AND a.pid <> pg_catalog.pg_backend_pid()
        AND a.backend_type = 'client backend'
        AND a.application_name NOT LIKE 'pgtide:%' AND a.application_name NOT LIKE 'pgtide-timeline:%'
        AND ($1::text[] IS NULL OR a.usename = ANY ($1::text[]))
        AND ($2::timestamptz IS NULL OR a.backend_start >= $2::timestamptz)
      OFFSET 0) c
WHERE pg_catalog.pg_terminate_backend(c.pid)]]


local PRIOR_READ_ONLY = [[
SELECT EXISTS (SELECT FROM pg_catalog.pg_db_role_setting s JOIN pg_catalog.pg_database d ON d.oid = s.setdatabase
               WHERE d.datname = pg_catalog.current_database() AND s.setrole = 0
                 AND 'default_transaction_read_only=on' = ANY (s.setconfig)) AS set]]

local function must(conn, what, sql, ...)
  local rows, err = conn:query(sql, ...)
  if not rows then
    failure.raise("failed", string.format("cutover: %s failed: %s", what, err.message or tostring(err)), { err = err })
  end
  return rows
end

-- The sessions ended by END_SESSIONS, gone: a backend signalled may still be committing, and
-- its commit must come before the barrier is read. Waits up to 5 s; returns how many remain.
local function wait_gone(conn, pids)
  local deadline = core.monotonic() + 5
  while true do
    local left = must(conn, "waiting for the ended sessions",
      "SELECT count(*) AS n FROM pg_catalog.pg_stat_activity WHERE pid = ANY ($1::int[])", pids)[1].n
    if left == 0 or core.monotonic() > deadline then return left end
    core.sleep(0.02)
  end
end

-- fence(task, source, record): stops writes, filling `record` (method, database, roles, at) as
-- it goes, so that what was done can be undone even when a later part of it fails.
local function fence(task, source, record)
  local c = conf(task)
  local method = c.fence or "read_only"
  local ident = source:quote_ident(record.database)
  if method == "read_only" then
    must(source, "fencing (ALTER DATABASE ... SET default_transaction_read_only)",
         "ALTER DATABASE " .. ident .. " SET default_transaction_read_only = on")
    local ended = must(source, "ending the database's other sessions", END_SESSIONS, nil, nil)[1]
    record.ended = ended.n
    local left = wait_gone(source, ended.pids)
    if left > 0 then
      failure.raise("failed", string.format("cutover: %d session(s) of the source database did not end within 5 s " ..
        "of pg_terminate_backend; try again", left))
    end
  elseif method == "revoke_connect" then
    for _, role in ipairs(record.roles or {}) do
      must(source, "REVOKE CONNECT", "REVOKE CONNECT ON DATABASE " .. ident .. " FROM " .. source:quote_ident(role))
      local still = must(source, "checking CONNECT", "SELECT pg_catalog.has_database_privilege($1, $2, 'CONNECT') AS c",
                         role, record.database)[1].c
      if still then
        failure.raise("failed", string.format("cutover: role %s can still connect to %s after REVOKE CONNECT (it " ..
          "has CONNECT through PUBLIC or another role): revoke it there too, or use cutover.fence = \"read_only\"",
          role, record.database))
      end
    end
    local ended = must(source, "ending the roles' sessions", END_SESSIONS, record.roles, nil)[1]
    record.ended = ended.n
    wait_gone(source, ended.pids)
  else
    local ok, err = pcall(method, source)
    if not ok then failure.raise("failed", "cutover: the cutover.fence function failed: " .. tostring(err)) end
  end
  -- A prepared transaction can still commit after the fence, after the barrier: refused.
  local prepared = must(source, "looking for prepared transactions",
    "SELECT count(*) AS n FROM pg_catalog.pg_prepared_xacts WHERE database = pg_catalog.current_database()")[1].n
  if prepared > 0 then
    failure.raise("failed", string.format("cutover: %d prepared transaction(s) on the source could commit after " ..
      "the fence; COMMIT PREPARED or ROLLBACK PREPARED them, then cut over again", prepared))
  end
end

-- unfence(task, source, record): what the fence did, undone; sessions that connected while the
-- fence held (and kept it) are ended so they reconnect writable.
local function unfence(task, source, record)
  local c = conf(task)
  local ident = source:quote_ident(record.database)
  if record.method == "read_only" then
    must(source, "lifting the fence (ALTER DATABASE ... RESET default_transaction_read_only)",
         "ALTER DATABASE " .. ident .. " RESET default_transaction_read_only")
    if record.at_text then must(source, "ending sessions that started fenced", END_SESSIONS, nil, record.at_text) end
  elseif record.method == "revoke_connect" then
    for _, role in ipairs(record.roles or {}) do
      must(source, "GRANT CONNECT", "GRANT CONNECT ON DATABASE " .. ident .. " TO " .. source:quote_ident(role))
    end
  elseif record.method == "function" and type(c.unfence) == "function" then
    local ok, err = pcall(c.unfence, source)
    if not ok then failure.raise("failed", "cutover: the cutover.unfence function failed: " .. tostring(err)) end
  end
end

-- pgtide's own sessions may write while the fence holds (a session sets it aside for itself).
local function open(task, side)
  return connect.open(task, side, { application_name = "pgtide:" .. task.name .. ":cutover",
                                    settings = { default_transaction_read_only = "off" } })
end

local function state_of(task, target) return require("tide.state").open(task, target) end

-- M.start(task) → cut: the fence recorded on the target, then put up; cut.barrier is the
-- source's WAL position after it. On failure the fence is lifted and the error raised.
function M.start(task, plan)
  local src <close> = open(task, "source")
  local tgt <close> = open(task, "target")
  local state = state_of(task, tgt)
  local c = conf(task)
  if c.reverse and plan then require("tide.cdc.reverse").check_file(task, plan) end
  local method = c.fence or "read_only"
  local now = must(src, "reading the source", "SELECT pg_catalog.current_database() AS d, pg_catalog.now()::text AS t")[1]
  -- Complete before it is saved: what a run that dies from here on lifts when it starts again.
  local record = { method = type(method) == "function" and "function" or method, database = now.d, at_text = now.t,
                   roles = method == "revoke_connect" and c.roles or nil }
  if method == "read_only" then
    local prior = must(src, "reading the database's settings", PRIOR_READ_ONLY)[1].set
    if prior then
      failure.raise("failed", "cutover: the source database already has default_transaction_read_only = on: " ..
        "writes are fenced already, or the setting is the application's own; lift it, or use " ..
        "cutover.fence = \"revoke_connect\" or a function")
    end
  end
  state:set_info("fence", record)
  local began = core.monotonic()
  local ok, err = pcall(fence, task, src, record)
  if not ok then
    local lok, lerr = pcall(unfence, task, src, record)
    if lok then state:set_info("fence", nil) end
    if not lok then err = tostring(err) .. "; and lifting the fence failed: " .. tostring(lerr) end
    error(err, 0)
  end
  state:set_info("fence", record)
  local lsn = must(src, "reading the barrier", "SELECT pg_catalog.pg_current_wal_insert_lsn()::text AS lsn")[1].lsn
  return { record = record, barrier = lsn, fenced_at = core.monotonic(), wall_fenced_at = core.now(),
           steps = { { "fence", core.monotonic() - began } } }
end

-- M.lift(task, cut_or_record): the fence taken down and forgotten (a failed cutover).
function M.lift(task, record)
  local src <close> = open(task, "source")
  local tgt <close> = open(task, "target")
  unfence(task, src, record)
  local state = state_of(task, tgt)
  state:set_info("fence", nil)
  -- A reverse task made before the failure would start from a point the application never
  -- reached: dropped (the next cutover makes it again).
  M.discard_reverse(task, state)
end

-- The objects of a reverse setup whose cutover did not end, dropped; a failure to drop them is
-- said, not raised (the fence is down already; the next cutover drops them before it makes its own).
function M.discard_reverse(task, state)
  local ok, err = pcall(require("tide.cdc.reverse").discard, task, state)
  if not ok then
    log.warning("cutover", "the cutover did not end, and its reverse task's objects could not be dropped: " ..
      tostring(type(err) == "table" and err.message or err) .. " (the next cutover drops them first; " ..
      "`pgtide release` of the reverse playbook drops them too)", {})
  end
end

-- M.recover(task, target) → the record of a fence a dead run left up (then lifted), or nil.
function M.recover(task, target)
  local state = state_of(task, target)
  local ok, record = pcall(state.info, state, "fence")
  if not ok or type(record) ~= "table" then return nil end
  -- A cutover whose steps all ran keeps its fence: the application may write to the target now.
  if state:info("cutover") then return nil end
  local src <close> = open(task, "source")
  unfence(task, src, record)
  state:set_info("fence", nil)
  M.discard_reverse(task, state)
  return record
end

-- M.count_rows(task, plan, source, target) → { ok, summary = { tables, different, incomplete },
-- lines }: cutover.verify = "counts", the rows of every selected table counted on the fenced
-- source (its row filter applied) and on the target. A table transformed by on.row cannot be
-- compared by count (the function may drop rows), nor one receiving rows routed from another
-- (on.route), nor an unlogged one (not streamed): they are not compared.
function M.count_rows(_task, plan, source, target)
  local out = { ok = true, summary = { tables = 0, different = 0, incomplete = 0 }, lines = {} }
  for _, tbl in ipairs(plan.tables or {}) do
    out.summary.tables = out.summary.tables + 1
    local shown = tbl.target.schema .. "." .. tbl.target.name
    if tbl.transform or tbl.route_sources or tbl.unlogged then
      out.summary.incomplete = out.summary.incomplete + 1
    else
      local from_src = "SELECT count(*) AS n FROM ONLY " .. source:quote_ident(tbl.source.schema) .. "." ..
                       source:quote_ident(tbl.source.name) .. (tbl.row_filter and (" WHERE (" .. tbl.row_filter .. ")") or "")
      local from_tgt = "SELECT count(*) AS n FROM ONLY " .. target:quote_ident(tbl.target.schema) .. "." ..
                       target:quote_ident(tbl.target.name)
      local s = must(source, "counting the rows of " .. tbl.source.schema .. "." .. tbl.source.name, from_src)[1].n
      local t = must(target, "counting the rows of " .. shown, from_tgt)[1].n
      if s ~= t then
        out.ok = false
        out.summary.different = out.summary.different + 1
        out.lines[#out.lines + 1] = string.format("%s %d vs %d", shown, s, t)
      end
    end
  end
  return out
end

-- M.complete(task, plan, cut, ctx) after the drain: sequences, verify, hooks, each timed; the
-- downtime so far in cut.downtime. Raises on the first failure (the caller lifts the fence).
function M.complete(task, plan, cut, status, progress, replan)
  local c = conf(task)
  local src <close> = open(task, "source")
  local tgt <close> = open(task, "target")
  -- DDL replication changed tables since the run's plan was made: sequences and verification
  -- work from the catalogs as they are now (the writes are fenced and the stream drained).
  if replan then plan = require("tide.plan").build(task, src, tgt) end
  local function step(name, fn)
    local began = core.monotonic()
    fn()
    cut.steps[#cut.steps + 1] = { name, core.monotonic() - began }
  end
  if c.sequences ~= false then
    step("sequences", function()
      require("tide.cdc.cutover").sync_sequences(plan, src, tgt, (type(c.sequences) == "table" and c.sequences.offset) or 0)
    end)
  end
  if c.verify == "counts" then
    step("verify", function()
      local result = M.count_rows(task, plan, src, tgt)
      cut.verify = { status = result.ok and "same" or "different", summary = result.summary }
      if not result.ok then
        failure.raise("mismatch", "cutover: the row counts differ (source vs target): " .. table.concat(result.lines, "; "))
      end
    end)
  elseif (c.verify or "checksums") ~= "none" then
    step("verify", function()
      local verify = require "tide.verify"
      local report = verify.run(task, { plan = plan, recheck = 0 })
      cut.verify = { status = report.status, summary = report.summary }
      if not report.ok then
        local sum = report.summary
        failure.raise("mismatch", string.format("cutover: the verification found %d of %d table(s) differing, %d " ..
          "not compared (pgtide verify FILE names the rows)", sum.different, sum.tables, sum.incomplete))
      end
    end)
  end
  if c.reverse then
    if cut.on_step then cut.on_step("making the reverse task") end
    step("reverse", function()
      cut.reverse = require("tide.cdc.reverse").setup(task, plan, src, tgt, state_of(task, tgt))
    end)
  end
  if cut.on_step then cut.on_step("verifying") end
  step("hooks", function()
    local cutover = require "tide.cdc.cutover"
    cut.hooks = cutover.run(task, cutover.context { task = task, plan = plan, source = src, target = tgt,
                                                    status = status }, progress)
  end)
  cut.downtime = core.monotonic() - cut.fenced_at
  local recorded = { downtime = cut.downtime, fenced_at = cut.wall_fenced_at, steps = {} }
  for i, s in ipairs(cut.steps) do recorded.steps[i] = { step = s[1], seconds = s[2] } end
  -- From here the switch is done: the figures and the phase recorded together, so a run that
  -- dies before the stream has stopped finishes the task instead of lifting the fence.
  local state = state_of(task, tgt)
  must(tgt, "recording the cutover", "BEGIN")
  state:set_info("cutover", recorded)
  state:set_phase("cutover")
  must(tgt, "recording the cutover", "COMMIT")
  if task.reverse_of then
    -- A rollback: the old source (this task's target) takes writes again. After the switch is
    -- recorded, so a failure here never lifts this task's fence as well: it is said, not raised.
    local ok, line = pcall(require("tide.cdc.reverse").lift_forward, task, src, tgt,
                           function(record, conn) unfence({ cutover = {} }, conn, record) end)
    if ok then
      log.write("info", "cutover", "rollback: " .. line, {})
    else
      cut.lift_error = tostring(type(line) == "table" and line.message or line)
      log.error("cutover_failed", "rollback: the switch is done, but lifting " .. task.reverse_of .. "'s fence on " ..
        "the old source failed: " .. cut.lift_error .. " — lift it by hand (ALTER DATABASE ... RESET " ..
        "default_transaction_read_only, or GRANT CONNECT back)")
    end
  end
end

-- The change stream's tick (tide.cdc), one step at a time: a request fences the source and
-- sets the barrier; once it is applied, sequences, verify and hooks run while the stream waits;
-- then the stream stops ("cutover"). A failure lifts the fence and streaming goes on; the
-- request gets the outcome. Returns an error only when the stream itself cannot go on.
function M.tick(task, st, stats, status)
  local run = st.run
  local req = run.cutover_request
  if req and not st.cut and st.stop_reason then
    run.cutover_request = nil
    req.result = { ok = false, message = "cutover: the change stream is stopping (" .. tostring(st.stop_reason) ..
                                         "); nothing was fenced" }
    return nil
  end
  if req and not st.cut and not st.stop_reason then
    run.cutover_step = "fencing"
    local ok, cut = pcall(M.start, task, st.plan)
    if not ok then
      run.cutover_step, run.cutover_request = nil, nil
      req.result = { ok = false, message = tostring(type(cut) == "table" and cut.message or cut) }
      log.error("cutover_failed", req.result.message .. " (still streaming; the source takes writes)")
      return nil
    end
    st.cut, st.cut_barrier = cut, figures.lsn_number(cut.barrier)
    run.cutover_step = "draining"
    log.write("info", "cutover", string.format("cutover: writes fenced on the source (%s, %d session(s) ended); " ..
      "applying up to %s", cut.record.method, cut.record.ended or 0, cut.barrier), { lsn = cut.barrier })
  end
  local cut = st.cut
  if not cut or cut.completed then return nil end
  local timeout = units.parse_duration((task.cutover or {}).timeout or "5min") or 300
  local failed
  if (stats.applied or 0) >= st.cut_barrier then
    run.cutover_step = "verifying"
    cut.on_step = function(name) run.cutover_step = name end
    local ok, err = pcall(M.complete, task, st.plan, cut, status, run.progress, st.ddl and (st.ddl.applied or 0) > 0)
    cut.on_step = nil
    if ok then
      cut.completed, st.stop_reason, run.cutover_step = true, "cutover", "cut over"
      return nil
    end
    failed = tostring(type(err) == "table" and err.message or err)
  elseif core.monotonic() - cut.fenced_at > timeout then
    failed = string.format("cutover: the stream did not reach the barrier %s within cutover.timeout (%s)",
                           cut.barrier, units.human_seconds(timeout))
  else
    return nil
  end
  local lok, lerr = pcall(M.lift, task, cut.record)
  local message = failed .. (lok and "; the fence was lifted and the task streams on" or
    ("; LIFTING THE FENCE FAILED: " .. tostring(lerr) .. " — lift it by hand (ALTER DATABASE ... RESET " ..
     "default_transaction_read_only, or GRANT CONNECT back)"))
  log.error("cutover_failed", message)
  st.cut, st.cut_barrier, run.cutover_step, run.cutover_request = nil, nil, nil, nil
  if req then req.result = { ok = false, message = message } end
  return nil
end

-- M.abandon(task, st): the stream ended (a signal, task:stop(), an error) while a cutover
-- was under way: its fence comes down, and the operator's request gets the outcome.
function M.abandon(task, st, why)
  local run = st.run
  local req = run.cutover_request
  if st.cut and not st.cut.completed then
    local ok, err = pcall(M.lift, task, st.cut.record)
    local message = "cutover: the change stream ended before the cutover did (" .. tostring(why) .. ")" ..
      (ok and "; the fence was lifted" or ("; LIFTING THE FENCE FAILED: " .. tostring(err) .. " — it is lifted " ..
       "when the task runs again, or by hand"))
    log.error("cutover_failed", message)
    st.cut, run.cutover_step = nil, nil
    if req and not req.result then req.result = { ok = false, message = message } end
  end
  if req and not req.result then
    req.result = { ok = false, message = "cutover: the change stream ended (" .. tostring(why) .. ")" }
  end
end

-- The lines printed and returned for a finished cutover.
function M.describe(cut)
  local parts = {}
  for _, s in ipairs(cut.steps) do parts[#parts + 1] = string.format("%s %s", s[1], units.human_seconds(s[2])) end
  local text = string.format("cutover done: write downtime %s (fence to ready: %s)", units.human_seconds(cut.downtime),
                             table.concat(parts, ", "))
  if cut.reverse then
    text = text .. string.format("\nreverse task %s: slot %s on the target, from %s; its playbook: %s " ..
      "(pgtide run it to stream back, pgtide cutover it to roll back)", cut.reverse.task, cut.reverse.slot,
      cut.reverse.lsn, cut.reverse.file)
  end
  if cut.lift_error then text = text .. "\nLIFTING THE OLD SOURCE'S FENCE FAILED: " .. cut.lift_error end
  return text
end

return M
