-- tide.full.copy — copying the parts of a full load (tide.full runs the jobs):
--   copy.job(load)        one copy job: takes parts (tide.full's Load:next_part) until none
--                         is left, each in a source transaction under the load's snapshot and a
--                         target transaction that records it; small whole tables several at a
--                         time (copy.batchable)
--   copy.part_finished(load, part, result, seconds)  a part's figures into the load's
--   copy.must(conn, sql, what), copy.SOURCE_SETTINGS, copy.TARGET_SETTINGS: shared with tide.full
local tide = require "tide.core"
local parts_mod = require "tide.full.parts"
local routes = require "tide.full.routes"
local failure = require "tide.failure"
local connect = require "tide.connect"

local M = {}

M.SOURCE_SETTINGS = { statement_timeout = "0", idle_in_transaction_session_timeout = "0",
                      lock_timeout = "0" }
M.TARGET_SETTINGS = { synchronous_commit = "off", statement_timeout = "0", lock_timeout = "0",
                      idle_in_transaction_session_timeout = "0", maintenance_work_mem = "512MB" }
local SOURCE_SETTINGS, TARGET_SETTINGS = M.SOURCE_SETTINGS, M.TARGET_SETTINGS

function M.must(conn, sql, what)
  local ok, err = conn:exec(sql)
  if not ok then failure.raise("failed", string.format("%s failed: %s", what, tostring(err)), { err = err }) end
  return ok
end
local must = M.must

-- Large objects: each one created on the target with its OID, its data written in 1 MB
-- chunks read under the snapshot (lo_get reads as of the transaction's snapshot), all of them
-- in one target transaction that also marks the part done.
local LO_CHUNK = 1024 * 1024

local function copy_large_objects(load, src, tgt, part)
  local task, state = load.task, load.state
  local started = tide.monotonic()
  local existing = task.full.existing or "error"
  local objects = assert(src:query([[
SELECT l.oid::int8 AS oid, pg_catalog.pg_get_userbyid(l.lomowner) AS owner
FROM pg_catalog.pg_largeobject_metadata l ORDER BY l.oid]]))
  must(tgt, "BEGIN", "starting the target transaction for large objects")
  local count, bytes = 0, 0
  local function fail(what, err)
    tgt:exec("ROLLBACK")
    failure.raise("failed", string.format("copying large objects failed while %s: %s", what, tostring(err)), { err = err })
  end
  for _, lo in ipairs(objects) do
    local present = assert(tgt:query("SELECT EXISTS (SELECT FROM pg_catalog.pg_largeobject_metadata WHERE oid = $1::oid) AS yes", lo.oid))[1].yes
    local skip = false
    if present then
      if existing == "append" then skip = true
      elseif existing == "truncate" then
        local ok, err = tgt:query("SELECT pg_catalog.lo_unlink($1::oid)", lo.oid)
        if not ok then fail("removing large object " .. lo.oid .. " from the target", err) end
      else
        fail("creating large object " .. lo.oid, "it already exists on the target (full.existing = \"error\"; use \"truncate\" or \"append\")")
      end
    end
    if not skip then
      local ok, err = tgt:query("SELECT pg_catalog.lo_create($1::oid)", lo.oid)
      if not ok then fail("creating large object " .. lo.oid, err) end
      local offset = 0
      while true do
        local r, rerr = src:query("SELECT pg_catalog.lo_get($1::oid, $2, $3) AS data", lo.oid, offset, LO_CHUNK)
        if not r then fail("reading large object " .. lo.oid .. " from the source", rerr) end
        local data = r[1].data
        if #data == 0 then break end
        local w, werr = tgt:query("SELECT pg_catalog.lo_put($1::oid, $2, $3)", lo.oid, offset, tide.bytea(data))
        if not w then fail("writing large object " .. lo.oid, werr) end
        offset = offset + #data
        bytes = bytes + #data
        if #data < LO_CHUNK then break end
      end
      if task.schema.owners == "source" then
        local ok2, err2 = tgt:exec("ALTER LARGE OBJECT " .. lo.oid .. " OWNER TO " .. tgt:quote_ident(lo.owner))
        if not ok2 then fail("setting the owner of large object " .. lo.oid, err2) end
      end
      count = count + 1
    end
  end
  local seconds = tide.monotonic() - started
  must(tgt, state:part_done_sql(tgt, part, count, bytes, seconds, "lo") .. "; COMMIT", "committing large objects")
  return { rows = count, bytes = bytes }, seconds
end

-- TRUNCATE is not MVCC-safe: a source table truncated after the load's snapshot was taken
-- reads as the truncating transaction left it — empty of every row that snapshot can see,
-- whatever it held before. The COPY's lock keeps the table from being truncated while the
-- part's transaction lasts, so comparing the table's storage as the snapshot sees it with its
-- storage now tells whether this happened before the part was read. Returns nil, or the WAL
-- position now (the truncation committed before it). A table whose pg_class row the snapshot
-- does not see (dropped and made again since) counts as rewritten too.
local REWRITE_SQL = [[
SELECT c.relfilenode::int8 AS then_node, pg_catalog.pg_relation_filenode(c.oid)::int8 AS now_node,
       pg_catalog.pg_current_wal_insert_lsn()::text AS lsn
FROM pg_catalog.pg_class c WHERE c.oid = $1::regclass]]

local function rewritten_since_snapshot(src, tbl)
  local rel = src:quote_ident(tbl.source.schema) .. "." .. src:quote_ident(tbl.source.name)
  local rows, err = src:query(REWRITE_SQL, rel)
  if not rows then failure.raise("failed", "checking " .. tbl.key .. " on the source failed: " .. tostring(err), { err = err }) end
  local r = rows[1]
  if not r then
    return assert(src:query("SELECT pg_catalog.pg_current_wal_insert_lsn()::text AS lsn"))[1].lsn
  end
  if r.then_node ~= r.now_node then return r.lsn end
end

-- Each part reads in a source transaction of its own under the load's snapshot (imported
-- again for each part; small tables copied together share one, their locks taken at once:
-- copy_parts), so a copy job never waits for a table's lock while it holds another one: a
-- TRUNCATE of several tables on the source can wait for a copy, never deadlock with it.
local function begin_source(load, src)
  must(src, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT " ..
            src:quote_literal(load.snapshot), "starting the source transaction under the snapshot " .. load.snapshot)
end

-- TRUNCATE makes new files for the table (and its TOAST table and index) and drops the old
-- ones at commit: about 4 ms a table here, more than the COPY of a 500-row table (2.8 ms,
-- docs/performance.md). What it buys, COPY FREEZE, saves a later vacuum pass that costs
-- nothing on a table this small; so below this size a table that is known to be empty is
-- loaded without it.
local FREEZE_MIN_BYTES = 1024 * 1024

-- Copies one part through a pump (the transactions are the caller's). On failure both
-- transactions are rolled back and the failure names the part.
local function pump_part(load, src, tgt, part, freeze)
  local tbl = part.table
  local rows = tbl.transform and routes.pump_rows(tbl, load.tables_by_key) or nil
  local pump = tide.copy_pump(src, tgt, parts_mod.copy_out_sql(src, part), parts_mod.copy_in_sql(tgt, part, freeze),
                              rows)
  load.running[part] = pump
  if load.paused then pump:pause() end
  if load.pump_limits then pump:throttle(load.pump_limits) end
  local result, err = pump:wait()
  load.running[part] = nil
  if not result then
    tgt:exec("ROLLBACK")
    src:exec("ROLLBACK")
    local where = err.side == "source" and "reading it from the source"
                  or err.side == "transform" and "passing its rows through on.row" or "writing it to the target"
    local msg = string.format("copying %s (part %d of %d) failed while %s: %s", tbl.key, part.no, part.count, where,
                              tostring(err))
    if err.side == "source" and tbl.row_filter and err.sqlstate and err.sqlstate:match("^42") then
      msg = msg .. string.format("\n  hint: check the row filter select.rows[%q] = %q", tbl.key, tbl.row_filter)
    end
    failure.raise("failed", msg, { err = err, part = part.id })
  end
  return pump, result
end

-- Rows read from new storage were kept by an MVCC-safe rewrite (VACUUM FULL, CLUSTER, SET
-- TABLESPACE keep each row's visibility): the part is right. Only an empty read may be a
-- TRUNCATE's doing: the LSN to tolerate missing rows up to, or nil. (In the source
-- transaction, before its COMMIT.)
local function rewritten_part(src, part, result)
  return result.rows == 0 and rewritten_since_snapshot(src, part.table) or nil
end

-- After the source's COMMIT, with the target transaction open: a rewritten table without a
-- stream to bring it back starts the load over (M.run, M.start_over).
local function rewritten_after(load, tgt, part, rewritten)
  if not rewritten then return end
  local tbl = part.table
  if not load.opts.stream then
    tgt:exec("ROLLBACK")
    load.rewritten = load.rewritten or {}
    load.rewritten[tbl.key] = tbl
    failure.raise("failed", string.format("%s was truncated (or rewritten) on the source after the load's " ..
      "snapshot was taken, so the snapshot no longer sees its rows (TRUNCATE is not MVCC-safe)", tbl.key),
      { err = { sqlstate = "40001", message = "table rewritten after the snapshot" }, rewritten = tbl })
  end
  if load.opts.progress then
    load.opts.progress:note(string.format("%s (part %d of %d) was truncated on the source after the load's " ..
      "snapshot (TRUNCATE is not MVCC-safe); the stream's TRUNCATE brings it back, and changes before it that " ..
      "find no row on the target are tolerated up to %s", tbl.key, part.no, part.count, rewritten))
  end
end

-- A small whole table copy_part would load as it is, without TRUNCATE or anything beside the
-- COPY: these may share their transactions with others (copy_parts).
function M.batchable(load, part)
  local tbl = part.table
  local existing = load.task.full.existing or "error"
  -- (Not with a row filter: one with a subquery, or a policy, reads other tables while this one
  -- is copied, and a batch must not wait for a lock while it holds the others.)
  return part.count == 1 and part.range_kind ~= "lo" and not tbl.target_filter and not tbl.routes
     and not tbl.transform and not tbl.row_filter and (existing == "error" or existing == "append")
     and (tbl.bytes or 0) < FREEZE_MIN_BYTES
end
M.BATCH_PARTS, M.BATCH_BYTES = 32, 1024 * 1024

local function copy_part(load, src, tgt, part)
  local task, state = load.task, load.state
  local tbl = part.table
  local started = tide.monotonic()
  local existing = task.full.existing or "error"
  local whole = part.count == 1
  if part.range_kind == "lo" then
    begin_source(load, src)
    local result, seconds = copy_large_objects(load, src, tgt, part)
    src:exec("COMMIT")
    return M.part_finished(load, part, result, seconds)
  end
  begin_source(load, src)
  must(tgt, "BEGIN", "starting the target transaction")
  local freeze = false
  if whole and existing ~= "append" and tbl.target_filter then
    -- An extension's configuration table: only the rows of its condition are the load's.
    must(tgt, select(2, parts_mod.target_rows(tgt, tbl)), "emptying " .. tbl.key)
  elseif whole and (existing == "truncate" or (existing ~= "append" and (tbl.bytes or 0) >= FREEZE_MIN_BYTES)) then
    -- TRUNCATE in the loading transaction lets COPY FREEZE write frozen rows (no later
    -- vacuum pass); it fails on a table referenced by a foreign key, then load without it.
    -- A small table with existing = "error" is known to be empty (check_existing) and is
    -- loaded without it (FREEZE_MIN_BYTES).
    local ok = tgt:exec("SAVEPOINT tide_truncate; TRUNCATE ONLY " .. parts_mod.target_relation(tgt, tbl))
    if ok then
      must(tgt, "RELEASE SAVEPOINT tide_truncate", "releasing a savepoint on the target")
      freeze = true
    else
      must(tgt, "ROLLBACK TO SAVEPOINT tide_truncate", "rolling back to a savepoint on the target")
    end
  end
  local pump, result = pump_part(load, src, tgt, part, freeze)
  if tbl.routes then
    -- Rows routed to other tables (on.route): written in this transaction, before it commits.
    local ok, werr = pcall(routes.write, load, tgt, tbl, pump)
    if not ok then
      tgt:exec("ROLLBACK")
      src:exec("ROLLBACK")
      error(werr, 0)
    end
  end
  local seconds = tide.monotonic() - started
  local rewritten = rewritten_part(src, part, result)
  src:exec("COMMIT")
  rewritten_after(load, tgt, part, rewritten)
  must(tgt, state:part_done_sql(tgt, part, result.rows, result.bytes, seconds, tbl.binary and "binary" or "text",
                                rewritten) .. "; COMMIT", "committing " .. tbl.key)
  M.part_finished(load, part, result, seconds)
end

-- Small whole tables, several in one source transaction and one target transaction (each
-- with its record, committed together): a table of a few hundred rows costs less to copy
-- than the two transactions around it. The parts are ones copy_part would load without
-- TRUNCATE (M.batchable); a failure rolls back all of them, and names the part it met.
local function copy_parts(load, src, tgt, batch)
  local state = load.state
  begin_source(load, src)
  -- A job must never wait for a source table's lock while it holds another (see begin_source):
  -- the batch's tables are locked at once, without waiting; if one is not free now, they are
  -- copied one by one instead, each in a transaction of its own.
  local names = {}
  for i, part in ipairs(batch) do
    names[i] = "ONLY " .. src:quote_ident(part.table.source.schema) .. "." .. src:quote_ident(part.table.source.name)
  end
  if not src:exec("LOCK TABLE " .. table.concat(names, ", ") .. " IN ACCESS SHARE MODE NOWAIT") then
    src:exec("ROLLBACK")
    for _, part in ipairs(batch) do
      if load.failed then return end   -- stopped meanwhile: the parts left are simply not done
      copy_part(load, src, tgt, part)
    end
    return
  end
  must(tgt, "BEGIN", "starting the target transaction")
  -- A part copied but not committed yet stays among the running ones (its pump finished), so
  -- the load's totals and status do not go back while the rest of the batch is copied.
  local done = {}
  local ok, err = pcall(function()
    for i, part in ipairs(batch) do
      local part_started = tide.monotonic()
      local pump, result = pump_part(load, src, tgt, part, false)
      load.running[part] = pump
      done[i] = { result = result, seconds = tide.monotonic() - part_started,
                  rewritten = rewritten_part(src, part, result) }
    end
    src:exec("COMMIT")
    local records = {}
    for i, part in ipairs(batch) do
      local d = done[i]
      rewritten_after(load, tgt, part, d.rewritten)
      records[i] = state:part_done_sql(tgt, part, d.result.rows, d.result.bytes, d.seconds,
                                       part.table.binary and "binary" or "text", d.rewritten)
    end
    must(tgt, table.concat(records, "; ") .. "; COMMIT", "committing " .. batch[1].table.key .. " and " ..
         (#batch - 1) .. " more small tables")
  end)
  for _, part in ipairs(batch) do load.running[part] = nil end
  if not ok then error(err, 0) end
  for i, part in ipairs(batch) do M.part_finished(load, part, done[i].result, done[i].seconds) end
end

function M.part_finished(load, part, result, seconds)
  local tbl = part.table
  local ts = load.stats.tables[tbl.key]
  ts.rows, ts.bytes, ts.seconds = ts.rows + result.rows, ts.bytes + result.bytes, ts.seconds + seconds
  load.stats.rows = load.stats.rows + result.rows
  load.stats.bytes = load.stats.bytes + result.bytes
  load.stats.parts_done = load.stats.parts_done + 1
  load.parts_left[tbl.key] = load.parts_left[tbl.key] - 1
  if load.opts.progress then load.opts.progress:event("part_done", { part = part, rows = result.rows, bytes = result.bytes, seconds = seconds }) end
  if load.parts_left[tbl.key] == 0 then
    for _, key in ipairs(routes.copied(load, tbl.key)) do
      load.loaded[key] = true
      load:table_loaded(key)
    end
    if load.opts.progress then load.opts.progress:event("table_done", { table = tbl.key, stats = ts }) end
  end
  load.changed:notify()
end

function M.job(load)
  local task = load.task
  local tgt <close> = connect.open(task, "target", { settings = TARGET_SETTINGS })
  -- COPY passes bytes through: the source converts its text to the target's encoding (a
  -- LATIN1 source into a UTF8 target), as the change stream's connection does.
  load.target_encoding = load.target_encoding or assert(tgt:query("SHOW server_encoding"))[1].server_encoding
  local src <close> = connect.open(task, "source", { settings = SOURCE_SETTINGS, client_encoding = load.target_encoding })
  -- As the change stream applies: the target's ordinary triggers do not fire for copied rows
  -- (a pre-existing table's audit trigger would write every row again). A role that may not set
  -- it loads with them firing, as the precheck target_replication_role says.
  tgt:exec("SET session_replication_role = replica")
  while true do
    while load.paused and not load.failed do load.changed:wait(1) end
    local part = load:next_part()
    if not part then break end
    local batch = { part }
    if M.batchable(load, part) then
      local bytes = part.table.bytes or 0
      while #batch < M.BATCH_PARTS and bytes < M.BATCH_BYTES do
        local more = load:next_part_if(M.batchable)
        if not more then break end
        batch[#batch + 1] = more
        bytes = bytes + (more.table.bytes or 0)
      end
    end
    load.copying = load.copying + 1
    local ok, err
    if #batch == 1 then ok, err = pcall(copy_part, load, src, tgt, part) else ok, err = pcall(copy_parts, load, src, tgt, batch) end
    load.copying = load.copying - 1
    load.changed:notify()
    if not ok then load:fail(err); break end
  end
end

return M
