-- tide.state — the task's progress, kept on the target so it survives the engine's machine.
--
-- Schema task.state_schema (default "pgtide") on the target database:
--   tasks       one row per task: phase reached, when, the snapshot mode of the full load
--   copy_parts  the full load's table parts: their definition (so a resumed run copies the
--               same ranges) and, once its COPY committed, when and how much
--   steps       schema/post-data steps done (index built, constraint added, ...)
--   timeline    what happened during each run, for `pgtide report` (tide.timeline writes it)
-- A part or step is marked done in the same target transaction as its work, so a crash can
-- neither lose one nor count one twice.
local M = {}

local State = {}
State.__index = State

local DDL = [[
CREATE SCHEMA IF NOT EXISTS %s;
CREATE TABLE IF NOT EXISTS %s.tasks (
  task        text PRIMARY KEY,
  phase       text NOT NULL DEFAULT 'new',
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now(),
  info        jsonb NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS %s.copy_parts (
  task        text NOT NULL,
  part        text NOT NULL,
  table_key   text NOT NULL,
  part_no     int NOT NULL,
  parts       int NOT NULL,
  range_kind  text NOT NULL,          -- 'whole', 'key' or 'ctid'
  range_from  bigint,
  range_to    bigint,                 -- exclusive; NULL = unbounded
  done_at     timestamptz,
  rows        bigint,
  bytes       bigint,
  seconds     float8,
  format      text,
  PRIMARY KEY (task, part)
);
-- Set when the source table had been truncated (or rewritten) after the load's snapshot by the
-- time this part was read: the WAL position then (the stream tolerates missing rows up to it).
ALTER TABLE %s.copy_parts ADD COLUMN IF NOT EXISTS rewritten_lsn pg_lsn;
CREATE TABLE IF NOT EXISTS %s.steps (
  task        text NOT NULL,
  step        text NOT NULL,
  done_at     timestamptz NOT NULL DEFAULT now(),
  seconds     float8,
  PRIMARY KEY (task, step)
);
CREATE TABLE IF NOT EXISTS %s.timeline (
  task        text NOT NULL,
  run         text NOT NULL,
  seq         int NOT NULL,
  at          timestamptz NOT NULL,
  kind        text NOT NULL,
  data        jsonb NOT NULL DEFAULT '{}',
  PRIMARY KEY (task, run, seq)
)]]

-- M.peek(task, target) → the recorded phase of the task, or nil when the target holds no state
-- for it, and true when an interrupted schema phase committed part of pre-data (a schema too
-- large for one transaction: its steps are recorded); writes nothing (prechecks run before
-- anything is written).
function M.peek(task, target)
  local schema = target:quote_ident(task.state_schema or "pgtide")
  local r = assert(target:query("SELECT pg_catalog.to_regclass($1) IS NOT NULL AS present", schema .. ".tasks"))
  if not r[1].present then return nil end
  local rows = assert(target:query("SELECT phase, EXISTS (SELECT FROM " .. schema .. ".steps s WHERE s.task = t.task) " ..
                                   "AS steps FROM " .. schema .. ".tasks t WHERE task = $1", task.name))
  if not rows[1] then return nil end
  return rows[1].phase, rows[1].phase == "new" and rows[1].steps or nil
end

-- M.record(task, target) → what the target records of the task, or nil when nothing: { phase,
-- started, updated (timestamps as text, UTC), tables, parts, rows, bytes (of the full load's
-- copied parts; rows and bytes nil when none), steps (schema and post-data steps done) }.
-- Writes nothing.
function M.record(task, target)
  local schema = target:quote_ident(task.state_schema or "pgtide")
  local r = assert(target:query("SELECT pg_catalog.to_regclass($1) IS NOT NULL AS present", schema .. ".tasks"))
  if not r[1].present then return nil end
  local rows = assert(target:query(
    "SELECT phase, pg_catalog.to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') AS started, " ..
    "pg_catalog.to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') AS updated, " ..
    "(SELECT count(DISTINCT table_key) FROM " .. schema .. ".copy_parts p WHERE p.task = t.task) AS tables, " ..
    "(SELECT count(*) FROM " .. schema .. ".copy_parts p WHERE p.task = t.task AND done_at IS NOT NULL) AS parts, " ..
    "(SELECT sum(p.rows) FROM " .. schema .. ".copy_parts p WHERE p.task = t.task) AS rows, " ..
    "(SELECT sum(p.bytes) FROM " .. schema .. ".copy_parts p WHERE p.task = t.task) AS bytes, " ..
    "(SELECT count(*) FROM " .. schema .. ".steps s WHERE s.task = t.task) AS steps, " ..
    "(t.info -> 'cutover' ->> 'downtime')::float8 AS downtime, t.info ->> 'fence' AS fence, " ..
    "t.info ->> 'reverse' AS reverse, t.info ->> 'rolled_back' AS rolled_back " ..
    "FROM " .. schema .. ".tasks t WHERE task = $1", task.name))
  local row = rows[1]
  if not row then return nil end
  local function decoded(v)
    local t = type(v) == "string" and require("tide.json").decode(v) or nil
    return type(t) == "table" and t or nil
  end
  local fence = decoded(row.fence)
  return { reverse = decoded(row.reverse), rolled_back = decoded(row.rolled_back), phase = row.phase, started = row.started, updated = row.updated, tables = tonumber(row.tables) or 0,
           parts = tonumber(row.parts) or 0, rows = tonumber(row.rows), bytes = tonumber(row.bytes),
           steps = tonumber(row.steps) or 0, downtime = tonumber(row.downtime),
           fence = type(fence) == "table" and fence or nil }
end

-- M.forget(task, target) → true when the target held progress for the task, which is now
-- deleted (`pgtide release`: after it, running the task again starts from the beginning).
function M.forget(task, target)
  local schema = target:quote_ident(task.state_schema or "pgtide")
  local r = assert(target:query("SELECT pg_catalog.to_regclass($1) IS NOT NULL AS present", schema .. ".tasks"))
  if not r[1].present then return false end
  local st = setmetatable({ task = task, target = target, schema = schema }, State)
  local had = #assert(target:query("SELECT 1 FROM " .. st:tbl("tasks") .. " WHERE task = $1", task.name)) > 0
  st:forget()
  return had
end

-- True when the state schema has all it needs (the newest column included).
local function complete(target, schema)
  local r = assert(target:query([[
SELECT pg_catalog.to_regclass($1) IS NOT NULL AND pg_catalog.to_regclass($2) IS NOT NULL
       AND pg_catalog.to_regclass($4) IS NOT NULL
       AND EXISTS (SELECT FROM pg_catalog.pg_attribute
                   WHERE attrelid = pg_catalog.to_regclass($3) AND attname = 'rewritten_lsn' AND NOT attisdropped)
       AS present]], schema .. ".tasks", schema .. ".steps", schema .. ".copy_parts", schema .. ".timeline"))
  return r[1].present
end

-- M.open(task, target) → state; creates the schema and tables when missing. Only then: any
-- DDL fires the target's event triggers, which are enabled once the schema phase is over, and
-- one that logs DDL into a table would change the migrated data on every later run.
function M.open(task, target)
  local schema = target:quote_ident(task.state_schema or "pgtide")
  local ok, err = true, nil
  if not complete(target, schema) then ok, err = target:exec((DDL:gsub("%%s", function() return schema end))) end
  if not ok then
    require("tide.failure").raise("failed", string.format(
      "cannot create pgtide's state schema %s on the target: %s\n  hint: the target user needs CREATE on the database, or set state_schema to a schema it may write",
      schema, err.message or tostring(err)))
  end
  assert(target:query("INSERT INTO " .. schema .. ".tasks (task) VALUES ($1) ON CONFLICT (task) DO NOTHING", task.name))
  return setmetatable({ task = task, target = target, schema = schema }, State)
end

function State:tbl(name) return self.schema .. "." .. name end

-- phase(): the phase recorded for the task; set_phase(p [, info]) records one.
function State:phase()
  local rows = assert(self.target:query("SELECT phase, info::text AS info FROM " .. self:tbl("tasks") ..
                                        " WHERE task = $1", self.task.name))
  return rows[1] and rows[1].phase or "new", rows[1] and rows[1].info
end

-- SQL (literals quoted) that records a phase, for the transaction whose work reaches it: the
-- work and its record commit together.
function State:phase_sql(conn, phase)
  return string.format("UPDATE %s SET phase = %s, updated_at = now() WHERE task = %s", self:tbl("tasks"),
                       conn:quote_literal(phase), conn:quote_literal(self.task.name))
end

-- SQL that records steps (their keys) as done, for the transaction that does them.
function State:steps_done_sql(conn, keys)
  if #keys == 0 then return "SELECT 1" end
  local values = {}
  for i, k in ipairs(keys) do
    values[i] = "(" .. conn:quote_literal(self.task.name) .. ", " .. conn:quote_literal(k) .. ")"
  end
  return "INSERT INTO " .. self:tbl("steps") .. " (task, step) VALUES " .. table.concat(values, ", ") ..
         " ON CONFLICT DO NOTHING"
end

-- info(key) / set_info(key, value): what the task records beside its phase (tasks.info, a
-- jsonb object; value nil removes the key) — the cutover's fence while it holds, its figures.
function State:info(key)
  local rows = assert(self.target:query("SELECT (info -> $2)::text AS v FROM " .. self:tbl("tasks") ..
                                        " WHERE task = $1", self.task.name, key))
  local v = rows[1] and rows[1].v
  if type(v) ~= "string" then return nil end
  return require("tide.json").decode(v)
end

function State:set_info(key, value)
  if value == nil then
    assert(self.target:query("UPDATE " .. self:tbl("tasks") .. " SET info = info - $2 WHERE task = $1",
                             self.task.name, key))
  else
    assert(self.target:query("UPDATE " .. self:tbl("tasks") ..
                             " SET info = pg_catalog.jsonb_set(info, ARRAY[$2], $3::jsonb) WHERE task = $1",
                             self.task.name, key, require("tide.json").encode(value)))
  end
end

function State:set_phase(phase)
  assert(self.target:query("UPDATE " .. self:tbl("tasks") .. " SET phase = $2, updated_at = now() WHERE task = $1",
                           self.task.name, phase))
end

-- Parts recorded for the task: array of rows (table_key, part, part_no, parts, range_*, done_at...).
function State:parts()
  return assert(self.target:query("SELECT * FROM " .. self:tbl("copy_parts") .. " WHERE task = $1 ORDER BY table_key, part_no",
                                  self.task.name))
end

-- Record the part definitions of a load (once, before any copy starts).
-- The parts are written as arrays, a few thousand to a statement (one round trip each
-- instead of one per part: 2,000 small tables are 2,000 parts).
local PARTS_PER_STATEMENT = 5000

function State:define_parts(parts)
  local sql = "INSERT INTO " .. self:tbl("copy_parts") ..
              " (task, part, table_key, part_no, parts, range_kind, range_from, range_to) " ..
              "SELECT $1, * FROM ROWS FROM (pg_catalog.unnest($2::text[]), pg_catalog.unnest($3::text[]), " ..
              "pg_catalog.unnest($4::int[]), pg_catalog.unnest($5::int[]), pg_catalog.unnest($6::text[]), " ..
              "pg_catalog.unnest($7::int8[]), pg_catalog.unnest($8::int8[])) ON CONFLICT (task, part) DO NOTHING"
  local null = require("tide.core").null
  assert(self.target:exec("BEGIN"))
  for first = 1, #parts, PARTS_PER_STATEMENT do
    local cols = { {}, {}, {}, {}, {}, {}, {} }
    for i = first, math.min(#parts, first + PARTS_PER_STATEMENT - 1) do
      local p = parts[i]
      local values = { p.id, p.table.key, p.no, p.count, p.range_kind, p.from == nil and null or p.from,
                       p.to == nil and null or p.to }
      for c = 1, 7 do cols[c][#cols[c] + 1] = values[c] end
    end
    assert(self.target:query(sql, self.task.name, table.unpack(cols)))
  end
  assert(self.target:exec("COMMIT"))
end

-- SQL (simple protocol, literals quoted) that marks a part done; run inside the part's
-- transaction. `rewritten_lsn`: see copy_parts.rewritten_lsn.
function State:part_done_sql(conn, part, rows, bytes, seconds, format, rewritten_lsn)
  return string.format("UPDATE %s SET done_at = now(), rows = %d, bytes = %d, seconds = %.3f, format = %s, " ..
                       "rewritten_lsn = %s WHERE task = %s AND part = %s", self:tbl("copy_parts"), rows, bytes,
                       seconds, conn:quote_literal(format),
                       rewritten_lsn and (conn:quote_literal(rewritten_lsn) .. "::pg_lsn") or "NULL",
                       conn:quote_literal(self.task.name), conn:quote_literal(part.id))
end

-- M.rewritten(task, target) → { [table_key] = "LSN" }: the tables the full load found truncated
-- on the source after its snapshot, with the latest position recorded for each (see
-- copy_parts.rewritten_lsn); empty when the target holds no state.
function M.rewritten(task, target)
  local schema = target:quote_ident(task.state_schema or "pgtide")
  local r = assert(target:query("SELECT pg_catalog.to_regclass($1) IS NOT NULL AS present", schema .. ".copy_parts"))
  if not r[1].present then return {} end
  local has = assert(target:query([[SELECT EXISTS (SELECT FROM pg_catalog.pg_attribute
    WHERE attrelid = pg_catalog.to_regclass($1) AND attname = 'rewritten_lsn' AND NOT attisdropped) AS yes]],
    schema .. ".copy_parts"))
  if not has[1].yes then return {} end
  local out = {}
  for _, row in ipairs(assert(target:query("SELECT table_key, max(rewritten_lsn)::text AS lsn FROM " .. schema ..
      ".copy_parts WHERE task = $1 AND rewritten_lsn IS NOT NULL GROUP BY table_key", task.name))) do
    out[row.table_key] = row.lsn
  end
  return out
end

-- Steps done: a set of step keys.
function State:steps_done()
  local done = {}
  for _, r in ipairs(assert(self.target:query("SELECT step FROM " .. self:tbl("steps") .. " WHERE task = $1",
                                              self.task.name))) do
    done[r.step] = true
  end
  return done
end

function State:step_done_sql(conn, key, seconds)
  return string.format("INSERT INTO %s (task, step, seconds) VALUES (%s, %s, %.3f) ON CONFLICT DO NOTHING",
                       self:tbl("steps"), conn:quote_literal(self.task.name), conn:quote_literal(key), seconds or 0)
end

-- Forget the task's progress (after a successful run, or `pgtide release`), its timeline
-- included (a state schema made before the timeline existed has none).
function State:forget()
  local r = assert(self.target:query("SELECT pg_catalog.to_regclass($1) IS NOT NULL AS present", self:tbl("timeline")))
  for _, t in ipairs({ "steps", "copy_parts", "tasks", r[1].present and "timeline" or nil }) do
    assert(self.target:query("DELETE FROM " .. self:tbl(t) .. " WHERE task = $1", self.task.name))
  end
end

return M
