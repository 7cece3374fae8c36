-- tide.cdc.objects — what incremental migration creates, and drops again at release:
--   source: the heartbeat table, the publication, the logical replication slot
--   target: the replication origin
-- All named after the task with a fixed prefix (pgtide_<name>, lower case, [a-z0-9_]), so an
-- operator can tell ours from anyone else's, and release drops exactly these.
local core = require "tide.core"
local failure = require "tide.failure"
local connect = require "tide.connect"

local M = {}

local null = core.null
local function present(v) return v ~= nil and v ~= null end

-- names(task) → { task, prefix, slot, publication, inserts_publication, origin, heartbeat_schema,
-- heartbeat_name }. inserts_publication carries the tables without a replica identity (only
-- when a precheck policy let them in: see publication_entries).
function M.names(task)
  local base = ("pgtide_" .. task.name):lower():gsub("[^a-z0-9_]", "_")
  local hb_schema, hb_name = "public", base .. "_heartbeat"
  local conf = task.incremental and task.incremental.heartbeat_table
  if type(conf) == "string" then
    local s, n = conf:match("^([^.]+)%.(.+)$")
    if s then hb_schema, hb_name = s, n else hb_name = conf end
  end
  return { task = task.name, prefix = base, slot = base, publication = base, origin = base,
           inserts_publication = base:sub(1, 55) .. "_inserts",
           heartbeat_schema = hb_schema, heartbeat_name = hb_name }
end

local function qname(conn, schema, name)
  return conn:quote_ident(schema) .. "." .. conn:quote_ident(name)
end
M.qname = qname

function M.heartbeat_sql(conn, names)
  return qname(conn, names.heartbeat_schema, names.heartbeat_name)
end

------------------------------------------------------------------------ source checks

function M.check_source(source)
  local rows = assert(source:query("SELECT current_setting('wal_level') AS wal_level"))
  if rows[1].wal_level ~= "logical" then
    failure.raise("failed", "incremental migration needs wal_level = logical on the source (it is " ..
      rows[1].wal_level .. ")\n  hint: ALTER SYSTEM SET wal_level = logical, then restart the source server")
  end
end

-- The slot's row in pg_replication_slots, or nil.
function M.slot_info(conn, names)
  local rows = assert(conn:query([[
SELECT slot_name, plugin, slot_type, database, active, active_pid, wal_status,
       confirmed_flush_lsn::text AS confirmed_flush_lsn, restart_lsn::text AS restart_lsn,
       pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), restart_lsn)::bigint AS retained_bytes
FROM pg_catalog.pg_replication_slots WHERE slot_name = $1]], names.slot))
  return rows[1]
end

-- The slot can no longer give changes: the source removed WAL it had not sent yet (it fell
-- more than max_slot_wal_keep_size behind). Permanent: exit status 7, never retried.
function M.raise_lost(names, detail)
  failure.raise("slot_lost", string.format(
    "the replication slot %s was invalidated by the source%s: it fell more than max_slot_wal_keep_size " ..
    "behind and the source removed WAL the task had not received. The changes since then are lost, so the " ..
    "task stops instead of streaming with a gap; running it again will not help\n" ..
    "  hint: run `pgtide release` for this task (it drops the slot, publication, heartbeat table and origin " ..
    "and forgets the task's progress), empty the target tables, and run the task again: it migrates again " ..
    "with a full load. To keep it from happening again, raise max_slot_wal_keep_size on the source " ..
    "(-1 = no limit) or do not leave the task stopped or paused that long", names.slot, detail or ""))
end

function M.raise_if_lost(slot, names)
  if slot and slot.wal_status == "lost" then M.raise_lost(names, " (wal_status = lost)") end
end

-- True when a server error says the slot is invalidated (START_REPLICATION on a lost slot).
function M.is_lost_error(err)
  local msg = type(err) == "table" and (err.message or (err.err and err.err.message)) or tostring(err)
  return type(msg) == "string" and msg:find("can no longer get changes from replication slot", 1, true) ~= nil
end

------------------------------------------------------------------------ heartbeat table

-- The start of the heartbeat table's comment. The plan of every task leaves a table whose
-- comment starts with it out (tide.catalog: tables.pgtide_heartbeat), so a task never
-- migrates the heartbeat table of another task on the same source.
M.HEARTBEAT_COMMENT = "pgtide heartbeat table"

function M.ensure_heartbeat(source, names)
  local hb = M.heartbeat_sql(source, names)
  local ok, err = source:exec(string.format([[
CREATE TABLE IF NOT EXISTS %s (
  slot  text PRIMARY KEY,
  beat  timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
  lsn   pg_lsn
)]], hb))
  if not ok then
    failure.raise("failed", string.format("cannot create the heartbeat table %s on the source: %s\n" ..
      "  hint: set incremental.heartbeat_table to a schema the source user may create in, or incremental.heartbeat = false",
      hb, err.message or tostring(err)), { err = err })
  end
  -- Marked as ours (also a table made by an earlier version, without the comment); only
  -- written when it differs, so a resumed run takes no lock for it.
  local comment = M.HEARTBEAT_COMMENT .. " of task " .. (names.task or names.prefix)
  local rows = assert(source:query(
    "SELECT pg_catalog.obj_description($1::pg_catalog.regclass, 'pg_class') AS comment", hb))
  if rows[1].comment ~= comment then
    ok, err = source:exec("COMMENT ON TABLE " .. hb .. " IS " .. source:quote_literal(comment))
    if not ok then
      failure.raise("failed", string.format("cannot mark the heartbeat table %s on the source with a comment: %s\n" ..
        "  hint: the source user must own the heartbeat table (it is added to the publication)",
        hb, err.message or tostring(err)), { err = err })
    end
  end
  assert(source:query("INSERT INTO " .. hb .. " (slot) VALUES ($1) ON CONFLICT (slot) DO NOTHING", names.slot))
end

------------------------------------------------------------------------ publication

-- Words in a row filter that name columns other than `allowed` (a row filter on a published
-- UPDATE/DELETE may only use replica-identity columns, else the source's writes fail).
local function filter_columns_outside(filter, columns, allowed)
  local names, bad = {}, {}
  for _, c in ipairs(columns) do names[c] = true end
  local stripped = filter:gsub("'[^']*'", "''")
  -- An unquoted name is folded to lower case by the server; a quoted one is taken as it is.
  for word in stripped:gsub('"[^"]*"', " "):gmatch("[%a_][%w_$]*") do
    word = word:lower()
    if names[word] and not allowed[word] and not bad[word] then bad[word] = true; bad[#bad + 1] = word end
  end
  for quoted in stripped:gmatch('"([^"]+)"') do
    if names[quoted] and not allowed[quoted] and not bad[quoted] then bad[quoted] = true; bad[#bad + 1] = quoted end
  end
  return bad
end

-- The table's columns (names in `columns`) a row filter names.
function M.filter_columns(filter, columns) return filter_columns_outside(filter, columns, {}) end

-- A table whose UPDATE and DELETE cannot be published: no replica identity (REPLICA IDENTITY
-- NOTHING, or DEFAULT without a primary key). The precheck table_without_key fails for it;
-- a policy may let it in (append-only tables), and then it goes to a publication of inserts
-- and truncates only: in one that publishes updates, UPDATE and DELETE of the table would fail
-- on the source itself, breaking the application.
local function keyless(tbl)
  return tbl.replica_identity == "n" or (tbl.replica_identity == "d" and not tbl.key_columns)
end
M.keyless = keyless

-- The columns of tbl's row filter that the publication may not filter on (the replica
-- identity rule, for tables whose updates and deletes are published); `all` lists the table's
-- columns (catalog_columns). Empty when the filter can go into the publication.
function M.filter_problem(tbl, all)
  if not tbl.row_filter or keyless(tbl) then return {} end
  local allowed = {}
  if tbl.replica_identity == "f" then
    for _, c in ipairs(all or {}) do allowed[c] = true end
  else
    for _, c in ipairs(tbl.key_columns or {}) do allowed[c] = true end
  end
  return filter_columns_outside(tbl.row_filter, all or {}, allowed)
end

-- Where the stream applies tbl's row filter (`all`: the table's columns, catalog_columns):
--   "publication"  the source filters (PostgreSQL 15 or later, and the filter uses only replica
--                  identity columns, or the table's updates and deletes are not published);
--   "pgtide"       every change of the table is published, and the apply evaluates the filter on
--                  the target with the change's values (engine/cdc/apply_filter.c): an update
--                  whose new row matches is an upsert, one whose new row does not is a delete;
--   nil            no filter. Partitions published through their root keep their root's rule.
function M.filter_mode(tbl, all, version)
  if not tbl.row_filter then return nil end
  -- select.rows_follow: a table that follows or is followed has its filter applied by pgtide,
  -- which alone sees a row move into or out of it (tide.cdc.follow)
  if tbl.follows or tbl.followed_by then return "pgtide" end
  if version >= 150000 and (keyless(tbl) or #M.filter_problem(tbl, all) == 0) then return "publication" end
  return "pgtide"
end

-- The publication's table list: partitions are published through their root.
-- Returns entries { schema=, name=, columns = {...} | nil, filter = ... | nil, root = bool,
-- inserts_only = bool }.
function M.publication_entries(plan, catalog_columns, version, filter_columns)
  filter_columns = filter_columns or catalog_columns
  local out, seen, via_root = {}, {}, false
  for _, tbl in ipairs(plan.tables or {}) do
    local schema, name, entry_tbl = tbl.source.schema, tbl.source.name, tbl
    if tbl.parent then
      local root = plan.by_key and plan.by_key["table:" .. tbl.parent]
      if root then schema, name, entry_tbl = root.schema, root.name, nil; via_root = true end
    end
    local key = schema .. "\0" .. name
    -- An unlogged table writes no WAL, so no publication can carry it (PostgreSQL refuses to
    -- add one): the full load copies it, and the target keeps those rows (precheck
    -- unlogged_tables says so).
    if tbl.unlogged and entry_tbl then seen[key] = true end
    -- A root is published as a whole: one keyless partition takes it to the inserts-only one.
    if seen[key] and keyless(tbl) and type(seen[key]) == "table" then seen[key].inserts_only = true end
    if not seen[key] then
      local e = { schema = schema, name = name, root = entry_tbl == nil, inserts_only = keyless(tbl) }
      seen[key] = e
      local all = catalog_columns[key]
      local mode = entry_tbl and M.filter_mode(entry_tbl, filter_columns[key], version)
      -- A filter pgtide applies may read any column: the stream then carries them all.
      if version >= 150000 and entry_tbl and all and #entry_tbl.columns < #all and mode ~= "pgtide" then
        e.columns = {}
        for i, c in ipairs(entry_tbl.columns) do e.columns[i] = c.name end
      end
      if mode == "publication" then e.filter = entry_tbl.row_filter end
      out[#out + 1] = e
    end
  end
  return out, via_root
end

-- Every source column (not dropped, not generated) of the given tables, keyed "schema\0name";
-- and second, every column with the generated ones (what a row filter may read).
function M.catalog_columns(source, pairs_list)
  local schemas, names = {}, {}
  for i, p in ipairs(pairs_list) do schemas[i], names[i] = p[1], p[2] end
  local out = {}
  if #schemas == 0 then return out end
  local rows = assert(source:query([[
SELECT n.nspname AS schema, c.relname AS name, a.attname AS column, c.relkind AS kind, a.attgenerated AS generated
FROM unnest($1::text[], $2::text[]) AS u(schema, name)
JOIN pg_catalog.pg_namespace n ON n.nspname = u.schema
JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = u.name
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY 1, 2, a.attnum]], schemas, names))
  local with_generated = {}
  for _, r in ipairs(rows) do
    local key = r.schema .. "\0" .. r.name
    with_generated[key] = with_generated[key] or {}
    table.insert(with_generated[key], r.column)
    if r.generated == "" then
      out[key] = out[key] or {}
      table.insert(out[key], r.column)
    end
  end
  return out, with_generated
end

function M.ensure_publication(task, plan, source, names)
  local version = source:server_version()
  local pairs_list = {}
  for _, tbl in ipairs(plan.tables or {}) do
    pairs_list[#pairs_list + 1] = { tbl.source.schema, tbl.source.name }
  end
  local columns, with_generated = M.catalog_columns(source, pairs_list)
  local entries, via_root = M.publication_entries(plan, columns, version, with_generated)
  local rows = assert(source:query("SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = $1", names.publication))
  if rows[1] then return false end
  local parts, inserts = {}, {}
  for _, e in ipairs(entries) do
    local s = qname(source, e.schema, e.name)
    if e.columns then
      local cols = {}
      for i, c in ipairs(e.columns) do cols[i] = source:quote_ident(c) end
      s = s .. " (" .. table.concat(cols, ", ") .. ")"
    end
    if e.filter then s = s .. " WHERE (" .. e.filter .. ")" end
    local list = e.inserts_only and inserts or parts
    list[#list + 1] = s
  end
  if task.incremental.heartbeat ~= false then parts[#parts + 1] = M.heartbeat_sql(source, names) end
  if #parts + #inserts == 0 then failure.raise("failed", "incremental migration needs at least one selected table") end
  local options = {}
  if via_root and version >= 130000 then options[#options + 1] = "publish_via_partition_root = true" end
  local function create(name, list, extra)
    local with = {}
    for _, o in ipairs(options) do with[#with + 1] = o end
    if extra then with[#with + 1] = extra end
    return "CREATE PUBLICATION " .. source:quote_ident(name) .. " FOR TABLE " .. table.concat(list, ", ") ..
           (#with > 0 and (" WITH (" .. table.concat(with, ", ") .. ")") or "")
  end
  -- The main publication always exists (an empty one when every table is keyless): it is how
  -- a run finds that the publications were made. Both in one transaction.
  local sql = #parts > 0 and create(names.publication, parts)
              or ("CREATE PUBLICATION " .. source:quote_ident(names.publication))
  if #inserts > 0 then sql = sql .. ";\n" .. create(names.inserts_publication, inserts, "publish = 'insert, truncate'") end
  local ok, err = source:exec(sql)
  if not ok then
    failure.raise("failed", string.format("cannot create the publication %s on the source: %s%s",
      names.publication, err.message or tostring(err), err.hint and ("\n  hint: " .. err.hint) or ""), { err = err })
  end
  return true
end

-- The task's publications that exist on the source (the stream subscribes to them).
function M.publications(source, names)
  local rows = assert(source:query("SELECT pubname FROM pg_catalog.pg_publication WHERE pubname = ANY ($1) ORDER BY pubname",
                                   { names.publication, names.inserts_publication }))
  local out = {}
  for i, r in ipairs(rows) do out[i] = r.pubname end
  return out
end

-- Drop the task's publications; returns the names dropped.
function M.drop_publications(source, names)
  local out = {}
  for _, name in ipairs(M.publications(source, names)) do
    assert(source:exec("DROP PUBLICATION IF EXISTS " .. source:quote_ident(name)))
    out[#out + 1] = name
  end
  return out
end

------------------------------------------------------------------------ slot

local BLOCKERS_SQL = [[
SELECT a.pid, a.datname, a.usename, a.application_name, a.state,
       pg_catalog.to_char(a.xact_start, 'YYYY-MM-DD HH24:MI:SS') AS since,
       pg_catalog.left(pg_catalog.regexp_replace(a.query, '\s+', ' ', 'g'), 100) AS query
FROM pg_catalog.pg_stat_activity a
WHERE a.backend_xid IS NOT NULL AND a.pid <> pg_catalog.pg_backend_pid() AND a.pid <> $1
ORDER BY a.xact_start]]

local PREPARED_SQL = [[
SELECT gid, database, owner, pg_catalog.to_char(prepared, 'YYYY-MM-DD HH24:MI:SS') AS since
FROM pg_catalog.pg_prepared_xacts ORDER BY prepared]]

-- Transactions that keep CREATE_REPLICATION_SLOT waiting, as lines for a message.
function M.blockers(source, repl_pid)
  local lines = {}
  for _, r in ipairs(source:query(BLOCKERS_SQL, repl_pid or 0) or {}) do
    lines[#lines + 1] = string.format("  pid %d (database %s, user %s, %s, %s since %s): %s", r.pid,
      tostring(r.datname), tostring(r.usename), present(r.application_name) and r.application_name ~= "" and
      r.application_name or "no application_name", tostring(r.state), tostring(r.since), tostring(r.query))
  end
  for _, r in ipairs(source:query(PREPARED_SQL) or {}) do
    lines[#lines + 1] = string.format("  prepared transaction %q (database %s, owner %s, since %s)",
      r.gid, r.database, r.owner, r.since)
  end
  return lines
end

-- M.await_slot(repl, source, sql, how) → rows: run CREATE_REPLICATION_SLOT `sql` on the
-- replication connection `repl`, waiting at most how.timeout seconds. Creating a logical slot
-- waits for every transaction that holds an xid when it starts; on timeout the command is
-- cancelled, `repl` closed, and a failure raised that names the transactions still open
-- (read on `source`, a plain connection) and the setting to raise (how.setting). On an error
-- `repl` is closed too. how = { timeout =, setting = "incremental.slot_timeout",
-- what = "creating the replication slot x" }.
function M.await_slot(repl, source, sql, how)
  local pid = repl:backend_pid()
  local h = core.spawn(function() return repl:query(sql) end)
  local deadline = core.monotonic() + how.timeout
  local step = 0.01
  while not h:done() and core.monotonic() < deadline do
    core.sleep(step)
    step = math.min(step * 2, 0.25)
  end
  if not h:done() then
    local lines = M.blockers(source, pid)
    repl:cancel()
    h:wait()
    repl:close()
    failure.raise("failed", string.format(
      "%s did not finish within %g s: it waits for every transaction that " ..
      "was running when it started to end%s\n  hint: end or commit those, or raise %s",
      how.what, how.timeout, #lines > 0 and (", and these are still open:\n" .. table.concat(lines, "\n")) or "",
      how.setting))
  end
  local rows, err = h:wait()
  if not rows then
    repl:close()
    failure.raise("failed", string.format("%s failed: %s%s", how.what,
      err.message or tostring(err), err.hint and ("\n  hint: " .. err.hint) or ""), { err = err })
  end
  return rows
end

-- Create the slot on a fresh replication connection. With snapshot, the connection is
-- returned open and idle (the exported snapshot lives as long as it stays idle).
-- Returns { slot=, lsn=, snapshot=, hold= }.
function M.create_slot(task, source, names, want_snapshot, timeout)
  -- With a snapshot this session stays idle in its transaction until the last part of the
  -- full load is copied: no server-side idle timeout may end it.
  local repl = connect.open(task, "source", { replication = "database",
                                              application_name = "pgtide:" .. task.name .. ":slot",
                                              settings = { idle_in_transaction_session_timeout = "0" } })
  local version = repl:server_version()
  local q = repl:quote_ident(names.slot)
  local sql
  if version >= 150000 then
    sql = string.format("CREATE_REPLICATION_SLOT %s LOGICAL pgoutput (SNAPSHOT '%s')", q,
                        want_snapshot and "export" or "nothing")
  else
    sql = string.format("CREATE_REPLICATION_SLOT %s LOGICAL pgoutput %s", q,
                        want_snapshot and "EXPORT_SNAPSHOT" or "NOEXPORT_SNAPSHOT")
  end
  local rows = M.await_slot(repl, source, sql, {
    timeout = timeout, setting = "incremental.slot_timeout",
    what = "creating the replication slot " .. names.slot })
  local info = { slot = names.slot, lsn = rows[1].consistent_point,
                 snapshot = present(rows[1].snapshot_name) and rows[1].snapshot_name or nil }
  if want_snapshot then info.hold = repl else repl:close() end
  return info
end

function M.drop_slot(source, names)
  local slot = M.slot_info(source, names)
  if not slot then return false end
  if slot.active then
    failure.raise("failed", string.format("the replication slot %s is in use by process %s: is the task " ..
      "still running? Stop it first", names.slot, tostring(slot.active_pid)))
  end
  assert(source:query("SELECT pg_catalog.pg_drop_replication_slot($1)", names.slot))
  return true
end

------------------------------------------------------------------------ origin (target)

-- The origin's remote LSN (text), nil when it has none (or does not exist).
function M.origin_position(target, names)
  local rows = assert(target:query([[
SELECT pg_catalog.pg_replication_origin_oid($1) IS NOT NULL AS present,
       CASE WHEN pg_catalog.pg_replication_origin_oid($1) IS NOT NULL
            THEN pg_catalog.pg_replication_origin_progress($1, true)::text END AS lsn]], names.origin))
  local r = rows[1]
  if not r.present or not present(r.lsn) or r.lsn == "0/0" then return nil, r.present end
  return r.lsn, true
end

function M.reset_origin(target, names, task)
  -- Parallel apply's rows and lane origins belong to the slot that is being replaced.
  if task then require("tide.cdc.lanes").forget(task, target, names) end
  local _, exists = M.origin_position(target, names)
  local ok, err = true, nil
  if exists then ok, err = target:query("SELECT pg_catalog.pg_replication_origin_drop($1)", names.origin) end
  if ok then ok, err = target:query("SELECT pg_catalog.pg_replication_origin_create($1)", names.origin) end
  if not ok then
    failure.raise("failed", string.format("cannot create the replication origin %s on the target: %s\n" ..
      "  hint: replication origins need a superuser, or EXECUTE on pg_replication_origin_* granted to the target user",
      names.origin, err.message or tostring(err)), { err = err })
  end
end

------------------------------------------------------------------------ release

-- Drop what the task created; returns the list of what was dropped.
function M.release(task, source, target)
  local names = M.names(task)
  local dropped = {}
  if source then
    -- After a cutover the source database is fenced (default_transaction_read_only): pgtide's
    -- own cleanup is not the application's writing.
    assert(source:exec("SET default_transaction_read_only = off"))
    if M.drop_slot(source, names) then dropped[#dropped + 1] = "replication slot " .. names.slot end
    for _, name in ipairs(M.drop_publications(source, names)) do dropped[#dropped + 1] = "publication " .. name end
    for _, what in ipairs(require("tide.cdc.ddl").remove(task, source)) do dropped[#dropped + 1] = what end
    local hb = M.heartbeat_sql(source, names)
    local rows = assert(source:query("SELECT pg_catalog.to_regclass($1) IS NOT NULL AS present", hb))
    if rows[1].present then
      assert(source:exec("DROP TABLE IF EXISTS " .. hb))
      dropped[#dropped + 1] = "heartbeat table " .. names.heartbeat_schema .. "." .. names.heartbeat_name
    end
  end
  if target then
    local rows = assert(target:query("SELECT pg_catalog.pg_replication_origin_oid($1) IS NOT NULL AS present", names.origin))
    if rows[1].present then
      local ok, err = target:query("SELECT pg_catalog.pg_replication_origin_drop($1)", names.origin)
      if not ok then
        failure.raise("failed", string.format("cannot drop the replication origin %s on the target: %s " ..
          "(is the task still running? stop it first)", names.origin, err.message or tostring(err)), { err = err })
      end
      dropped[#dropped + 1] = "replication origin " .. names.origin
    end
    for _, what in ipairs(require("tide.cdc.lanes").forget(task, target, names)) do dropped[#dropped + 1] = what end
    require("tide.cdc.ddl").forget(task, target)
  end
  return dropped
end

return M
