-- tide.cdc.reverse — the reverse task of a cutover (`cutover = { reverse = true }`,
-- docs/cutover.md "Rolling back: the reverse task"):
--
--   During the cutover, after the drain, the sequences and the verification and before the
--   on.cutover hooks (which move the application), on the new primary (the forward task's
--   target): the reverse task's heartbeat table, publication(s) of the migrated tables (their
--   target names) and logical slot; on the old source (the forward task's source): the reverse
--   task's replication origin, set to the slot's consistent point. Nothing the application
--   writes on the new primary can come before that point. Then NAME-reverse.lua is written next
--   to the forward playbook: a playbook of `migrate = { "incremental" }` that finds its slot and
--   origin there and streams back from that point (tide.cdc.prepare resumes them).
--
--   All of it is recorded in the forward task's state (info -> 'reverse') before it is made: a
--   cutover that fails or dies before it is recorded as done drops what was made (discard);
--   a retried cutover makes it again from its own consistent point.
--
--   Rolling back is a cutover of the reverse task: when it is done the forward task's fence on
--   the old source is lifted (lift_forward) and the forward task's state records it.
local core = require "tide.core"
local failure = require "tide.failure"
local connect = require "tide.connect"
local log = require "tide.log"
local objects = require "tide.cdc.objects"

local M = {}

-- The reverse task's name: "<name>-reverse" (the forward name cut to 32 characters, so the
-- whole stays a task name).
function M.name(task) return task.name:sub(1, 32) .. "-reverse" end

-- The objects' names of the reverse task (tide.cdc.objects.names; the default heartbeat table).
function M.names(task) return objects.names({ name = M.name(task), incremental = {} }) end

-- The replication origins whose transactions a task's stream must not apply (engine/cdc/apply.c
-- skip_origins): those of its pair, which applied them (a reverse task and its forward task).
function M.skip_origins(task)
  local list = {}
  if task.reverse_of then list[#list + 1] = objects.names({ name = task.reverse_of, incremental = {} }).origin end
  if task.cutover and task.cutover.reverse then list[#list + 1] = M.names(task).origin end
  return list
end

-- A reverse task starts only from the slot its forward task's cutover made: raises when it
-- is not on `source` (before anything is written; `pgtide run` and tide.cdc.prepare).
function M.check_slot(task, source)
  local names = objects.names(task)
  if objects.slot_info(source, names) then return end
  failure.raise("failed", string.format("the reverse task %s has no replication slot %s on its source: it is made " ..
    "by the cutover of task %s (cutover.reverse = true), and is gone once released; without it this task " ..
    "cannot start (it would miss what was written since the cutover)", task.name, names.slot, task.reverse_of))
end

-- The generated playbook's path: next to the forward playbook, NAME-reverse.lua.
function M.path(task)
  local file = task.file or (task.name .. ".lua")
  local dir = file:match("^(.*)/[^/]*$")
  return (dir and (dir .. "/") or "") .. M.name(task) .. ".lua"
end

-------------------------------------------------------------------------- the playbook

-- A name as a glob pattern part (select.include) and as a literal key part (rename keys).
local function glob_part(s) return (s:gsub("[%*%?%[%]%.\\]", "\\%0")) end
local function key_part(s)
  if s:find('[%."]') then return '"' .. s:gsub('"', '""') .. '"' end
  return s
end

-- The tables the reverse task follows: each published table of the forward task (partitions
-- through their root), by its target name, with the source name it goes back to.
local function reverse_tables(plan)
  local out, seen = {}, {}
  for _, tbl in ipairs(plan.tables or {}) do
    local entry = tbl
    if tbl.parent then
      local root = plan.by_key and plan.by_key["table:" .. tbl.parent]
      if root then entry = { source = { schema = root.schema, name = root.name }, target = root.target,
                             root = true } end
    end
    local k = entry.target.schema .. "\0" .. entry.target.name
    if not seen[k] and not tbl.unlogged then
      seen[k] = true
      out[#out + 1] = { source = entry.source, target = entry.target, root = entry.root,
                        columns = not entry.root and tbl.columns }
    end
  end
  return out
end

local function lua_string(s) return string.format("%q", s) end

-- Every table the reverse task selects and renames back: the followed tables (roots
-- included) and each partition, by target name.
local function selected_tables(plan)
  local out, seen = {}, {}
  local function add(t)
    local k = t.target.schema .. "\0" .. t.target.name
    if not seen[k] then seen[k] = true; out[#out + 1] = t end
  end
  for _, t in ipairs(reverse_tables(plan)) do add(t) end
  for _, tbl in ipairs(plan.tables or {}) do
    if not tbl.unlogged then add({ source = tbl.source, target = tbl.target, columns = tbl.columns }) end
  end
  return out
end

-- The text of the reverse task's playbook (deterministic: a retried cutover writes the same).
function M.render(task, plan)
  local file = task.file or (task.name .. ".lua")
  local forward_file = file:match("[^/]*$")
  local L = {}
  local function add(fmt, ...) L[#L + 1] = select("#", ...) > 0 and string.format(fmt, ...) or fmt end
  add("-- Generated by `pgtide cutover` of task %s (cutover.reverse = true): the reverse task, which", task.name)
  add("-- follows the new primary (%s's target) back to the old source (its source) from the moment", task.name)
  add("-- of the cutover. Review it; `pgtide run` it to stream back; `pgtide cutover` it to roll back")
  add("-- (that lifts %s's fence on the old source). docs/cutover.md, \"Rolling back\".", task.name)
  add("-- Its slot and publication on the new primary, and its origin on the old source, were made")
  add("-- by the cutover: it starts from them (no schema, no full load). `pgtide release` it when done.")
  add("local tide = require \"tide\"")
  add("-- The forward playbook gives both connections, as it gets them (no password is written here).")
  add("local forward = tide.playbook %s", lua_string(forward_file))
  add("")
  add("return tide.task {")
  add("  name       = %s,", lua_string(M.name(task)))
  add("  reverse_of = %s,", lua_string(task.name))
  add("  source     = tide.side(forward, \"target\"),   -- the new primary")
  add("  target     = tide.side(forward, \"source\"),   -- the old source")
  add("  migrate    = { \"incremental\" },")
  -- DDL replication as the forward task had it: followed from when `pgtide run` of this file
  -- installs its event trigger on the new primary (docs/incremental.md, "DDL replication").
  add("  incremental = { ddl = %s },   -- DDL on the new primary, followed once this task runs",
      tostring((task.incremental or {}).ddl ~= false))
  if task.state_schema and task.state_schema ~= "pgtide" then add("  state_schema = %s,", lua_string(task.state_schema)) end
  local tables = selected_tables(plan)
  add("  select     = { include = {")
  for _, t in ipairs(tables) do add("    %s,", lua_string(glob_part(t.target.schema) .. "." .. glob_part(t.target.name))) end
  for _, s in ipairs(plan.sequences or {}) do
    add("    %s,", lua_string(glob_part(s.target.schema) .. "." .. glob_part(s.target.name)))
  end
  add("  } },")
  add("  -- The names back: each table, column and sequence to its name on the old source.")
  add("  rename     = {")
  add("    table = {")
  for _, t in ipairs(tables) do
    add("      [%s] = { schema = %s, name = %s },", lua_string(key_part(t.target.schema) .. "." .. key_part(t.target.name)),
        lua_string(t.source.schema), lua_string(t.source.name))
  end
  add("    },")
  local cols = {}
  for _, t in ipairs(tables) do
    for _, c in ipairs(t.columns or {}) do
      if c.target and c.target ~= c.name then
        cols[#cols + 1] = string.format("      [%s] = %s,", lua_string(key_part(t.target.schema) .. "." ..
          key_part(t.target.name) .. "." .. key_part(c.target)), lua_string(c.name))
      end
    end
  end
  if #cols > 0 then
    add("    column = {")
    for _, c in ipairs(cols) do add(c) end
    add("    },")
  end
  if #(plan.sequences or {}) > 0 then
    add("    sequence = {")
    for _, s in ipairs(plan.sequences) do
      add("      [%s] = { schema = %s, name = %s },", lua_string(key_part(s.target.schema) .. "." .. key_part(s.target.name)),
          lua_string(s.source.schema), lua_string(s.source.name))
    end
    add("    },")
  end
  add("  },")
  local c = task.cutover or {}
  add("  -- Rolling back: writes on the new primary fenced (read-only), drained, sequences set on the")
  add("  -- old source, verified; then the old source takes writes again.")
  add("  cutover    = { fence = \"read_only\", verify = %s },", lua_string(c.verify or "checksums"))
  if type(c.fence) == "function" then
    add("  -- %s fenced the old source with its own cutover.fence function: pgtide cannot lift that", task.name)
    add("  -- one. Lift it in a hook, for instance:")
    add("  -- on = { cutover = function(t) forward.cutover.unfence(t.target) end },")
  end
  add("}")
  return table.concat(L, "\n") .. "\n"
end

local function read_file(path)
  local f = io.open(path, "r")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

-- M.check_file(task, plan): raises when a different file is in the way (before the fence).
function M.check_file(task, plan)
  local path = M.path(task)
  local have = read_file(path)
  if have and have ~= M.render(task, plan) then
    failure.raise("failed", string.format("cutover: %s exists and is not the reverse playbook this cutover " ..
      "would write: move it away (it is never overwritten), then cut over again", path))
  end
end

local function write_file(task, plan)
  local path = M.path(task)
  local text = M.render(task, plan)
  local have = read_file(path)
  if have == text then return path end
  if have then M.check_file(task, plan) end
  local tmp = path .. ".tmp"
  local f, err = io.open(tmp, "w")
  if not f then failure.raise("failed", "cutover: cannot write the reverse playbook " .. path .. ": " .. tostring(err)) end
  f:write(text)
  f:close()
  local ok, rerr = os.rename(tmp, path)
  if not ok then failure.raise("failed", "cutover: cannot write the reverse playbook " .. path .. ": " .. tostring(rerr)) end
  return path
end

-------------------------------------------------------------------------- setup / discard

local function must(conn, what, sql, ...)
  local rows, err = conn:query(sql, ...)
  if not rows then
    failure.raise("failed", string.format("cutover: the reverse task: %s failed: %s", what, err.message or tostring(err)),
                  { err = err })
  end
  return rows
end

-- Drop what a reverse setup made: on `primary` (the forward target) the slot, publications and
-- heartbeat table; on `old` (the forward source) the origin. Returns the list of what went.
function M.drop(task, primary, old)
  local names = M.names(task)
  local dropped = {}
  if objects.drop_slot(primary, names) then dropped[#dropped + 1] = "replication slot " .. names.slot end
  for _, name in ipairs(objects.drop_publications(primary, names)) do dropped[#dropped + 1] = "publication " .. name end
  local hb = objects.heartbeat_sql(primary, names)
  if must(primary, "looking for the heartbeat table", "SELECT pg_catalog.to_regclass($1) IS NOT NULL AS present", hb)[1].present then
    must(primary, "dropping the heartbeat table", "DROP TABLE IF EXISTS " .. hb)
    dropped[#dropped + 1] = "heartbeat table " .. names.heartbeat_schema .. "." .. names.heartbeat_name
  end
  if old then
    local _, exists = objects.origin_position(old, names)
    if exists then
      must(old, "dropping the reverse origin", "SELECT pg_catalog.pg_replication_origin_drop($1)", names.origin)
      dropped[#dropped + 1] = "replication origin " .. names.origin
    end
  end
  return dropped
end

-- The publications of the reverse task on the new primary: every followed table by its target
-- name, and the heartbeat table; tables without a replica identity in an inserts-only one (in
-- the main one the application's UPDATE and DELETE of them would fail on the new primary).
-- Which of `names` (qualified, quoted) cannot publish UPDATE and DELETE on the target as it
-- is: REPLICA IDENTITY NOTHING, DEFAULT without a primary key, or USING an index that is gone;
-- a partitioned table when one of its partitions cannot.
local KEYLESS_SQL = [[
WITH RECURSIVE u AS (SELECT u.i, pg_catalog.to_regclass(u.name) AS oid FROM unnest($1::text[]) WITH ORDINALITY AS u(name, i)),
tree AS (SELECT u.i, u.oid FROM u
         UNION ALL SELECT tree.i, h.inhrelid FROM tree JOIN pg_catalog.pg_inherits h ON h.inhparent = tree.oid)
SELECT DISTINCT tree.i FROM tree JOIN pg_catalog.pg_class c ON c.oid = tree.oid
WHERE c.relkind = 'r' AND (c.relreplident = 'n'
   OR (c.relreplident = 'd' AND NOT EXISTS (SELECT FROM pg_catalog.pg_index x WHERE x.indrelid = c.oid AND x.indisprimary))
   OR (c.relreplident = 'i' AND NOT EXISTS (SELECT FROM pg_catalog.pg_index x WHERE x.indrelid = c.oid AND x.indisreplident)))]]

local function create_publications(plan, primary, names)
  local parts, inserts, via_root = {}, {}, false
  local list, quoted = reverse_tables(plan), {}
  for i, t in ipairs(list) do quoted[i] = objects.qname(primary, t.target.schema, t.target.name) end
  local keyless = {}
  for _, r in ipairs(must(primary, "reading the target tables' replica identity", KEYLESS_SQL, quoted)) do
    keyless[r.i] = true
  end
  for i, t in ipairs(list) do
    if t.root then via_root = true end
    if keyless[i] then inserts[#inserts + 1] = quoted[i] else parts[#parts + 1] = quoted[i] end
  end
  parts[#parts + 1] = objects.heartbeat_sql(primary, names)
  local with = via_root and " WITH (publish_via_partition_root = true)" or ""
  local sql = "CREATE PUBLICATION " .. primary:quote_ident(names.publication) .. " FOR TABLE " ..
              table.concat(parts, ", ") .. with
  if #inserts > 0 then
    sql = sql .. ";\nCREATE PUBLICATION " .. primary:quote_ident(names.inserts_publication) .. " FOR TABLE " ..
          table.concat(inserts, ", ") .. " WITH (publish = 'insert, truncate'" ..
          (via_root and ", publish_via_partition_root = true" or "") .. ")"
  end
  local ok, err = primary:exec(sql)
  if not ok then
    failure.raise("failed", "cutover: the reverse task: cannot create its publication on the target: " ..
      (err.message or tostring(err)), { err = err })
  end
end

-- M.setup(task, plan, old, primary, state) → record: the reverse task's objects (the forward
-- task's cutover, fenced and drained; `old` and `primary` are its source and target
-- connections, both writable by pgtide's sessions).
function M.setup(task, plan, old, primary, state)
  local names = M.names(task)
  M.check_file(task, plan)
  local record = { task = M.name(task), slot = names.slot, publication = names.publication, origin = names.origin,
                   heartbeat = names.heartbeat_schema .. "." .. names.heartbeat_name, file = M.path(task) }
  -- Recorded before anything is made: whatever exists of it is dropped if the cutover does not end.
  state:set_info("reverse", record)
  M.drop(task, primary, old)   -- left by an earlier attempt: made again from this point
  objects.ensure_heartbeat(primary, names)
  create_publications(plan, primary, names)
  objects.reset_origin(old, names)
  local repl = connect.open(task, "target", { replication = "database",
                                              application_name = "pgtide:" .. task.name .. ":reverse-slot" })
  local q = repl:quote_ident(names.slot)
  local sql = repl:server_version() >= 150000 and
              string.format("CREATE_REPLICATION_SLOT %s LOGICAL pgoutput (SNAPSHOT 'nothing')", q) or
              string.format("CREATE_REPLICATION_SLOT %s LOGICAL pgoutput NOEXPORT_SNAPSHOT", q)
  local timeout = require("tide.when").seconds((task.incremental or {}).slot_timeout or 300) or 300
  local rows = objects.await_slot(repl, primary, sql, { timeout = timeout, setting = "incremental.slot_timeout",
    what = "creating the reverse task's replication slot " .. names.slot .. " on the target" })
  repl:close()
  record.lsn = rows[1].consistent_point
  -- The reverse task streams from the slot's consistent point: nothing on the new primary
  -- before it is the application's (it has not been moved yet).
  must(old, "setting the reverse origin's position", "SELECT pg_catalog.pg_replication_origin_advance($1, $2::pg_lsn)",
       names.origin, record.lsn)
  record.file = write_file(task, plan)
  record.ready = true
  state:set_info("reverse", record)
  return record
end

-- M.discard(task, state): the cutover did not end — what its reverse setup made is dropped
-- and its record forgotten. Quiet when there is none.
function M.discard(task, state)
  local ok, record = pcall(state.info, state, "reverse")
  if not ok or type(record) ~= "table" then return nil end
  local primary <close> = connect.open(task, "target", { application_name = "pgtide:" .. task.name .. ":cutover",
                                                         settings = { default_transaction_read_only = "off" } })
  local old <close> = connect.open(task, "source", { application_name = "pgtide:" .. task.name .. ":cutover",
                                                     settings = { default_transaction_read_only = "off" } })
  local dropped = M.drop(task, primary, old)
  -- The playbook written for it would follow a slot that is gone: removed too.
  if record.ready and record.file and os.remove(record.file) then dropped[#dropped + 1] = "playbook " .. record.file end
  state:set_info("reverse", nil)
  if #dropped > 0 then
    log.write("info", "cutover", "the cutover did not end: its reverse task's objects are dropped (" ..
              table.concat(dropped, ", ") .. ")", {})
  end
  return dropped
end

-------------------------------------------------------------------------- rolling back

-- M.lift_forward(task, source, target, unfence) after a reverse task's cutover was recorded:
-- the forward task's fence on the old source (`target` here) lifted, as recorded in the
-- forward task's state on the new primary (`source` here); `unfence(record, conn)` lifts a
-- read_only or revoke_connect fence. Returns a line for the log.
function M.lift_forward(task, source, target, unfence)
  local state = require "tide.state"
  local forward = { name = task.reverse_of, state_schema = task.state_schema }
  if not state.peek(forward, source) then
    -- Released before the rollback: its record is gone. A read-only fence is still seen on the
    -- database (the forward cutover refused to start on a database that had it already).
    local db = must(target, "reading the old source's settings", [[
SELECT pg_catalog.current_database() AS d,
       EXISTS (SELECT FROM pg_catalog.pg_db_role_setting s JOIN pg_catalog.pg_database d ON d.oid = s.setdatabase
               WHERE d.datname = pg_catalog.current_database() AND s.setrole = 0
                 AND 'default_transaction_read_only=on' = ANY (s.setconfig)) AS fenced]])[1]
    if db.fenced then
      unfence({ method = "read_only", database = db.d }, target)
      return string.format("the old source takes writes again: its default_transaction_read_only is reset (task %s, " ..
                           "released, no longer records its fence)", task.reverse_of)
    end
    return "the forward task " .. task.reverse_of .. " records nothing on the new primary (released?) and the old " ..
           "source is not read-only: a revoke_connect or function fence is not lifted (GRANT CONNECT back yourself)"
  end
  local fwd = state.open(forward, source)
  local record = fwd:info("fence")
  if type(record) ~= "table" then
    return "the forward task " .. task.reverse_of .. " records no fence on the old source: nothing to lift"
  end
  if record.method == "function" then
    return "the forward task " .. task.reverse_of .. " fenced the old source with its own function: lift it " ..
           "yourself (its cutover.unfence), pgtide cannot"
  end
  unfence(record, target)
  fwd:set_info("fence", nil)
  fwd:set_info("rolled_back", { by = task.name, at = core.now() })
  return string.format("the old source takes writes again: %s's fence (%s) is lifted", task.reverse_of, record.method)
end

return M
