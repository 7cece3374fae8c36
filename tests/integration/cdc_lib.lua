-- Helpers shared by the cdc_*_test.lua files: a minimal plan read from the source catalog
-- (the shape of docs/internals.md, so these tests do not depend on tide.plan), the initial
-- copy under the exported snapshot, and the stream's steps as tide.cmd.run takes them.
-- Connections, waiting and comparing tables: tests/lib/pg.lua.
local tide = require "tide"
local P = require "pg"
local cdc = require "tide.cdc"
local core = require "tide.core"

local H = {}

-- A task for the test databases. `extra` adds/overrides keys.
function H.task(ctx, name, extra)
  local def = {
    name = name, source = ctx.source_url, target = ctx.target_url, migrate = { "incremental" },
    incremental = { heartbeat_interval = 0.2, slot_timeout = "20s" },
  }
  for k, v in pairs(extra or {}) do
    if k == "incremental" then for ik, iv in pairs(v) do def.incremental[ik] = iv end
    else def[k] = v end
  end
  return tide.task(def)
end

local PLAN_SQL = [[
SELECT n.nspname AS schema, c.relname AS name, c.oid, c.relkind, c.relreplident AS ident,
       c.relispartition AS is_partition,
       (SELECT rn.nspname || '.' || r.relname FROM pg_class r JOIN pg_namespace rn ON rn.oid = r.relnamespace
         WHERE r.oid = pg_partition_root(c.oid) AND r.oid <> c.oid) AS root,
       ARRAY(SELECT a.attname FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0
             AND NOT a.attisdropped AND a.attgenerated = '' ORDER BY a.attnum)::text[] AS columns,
       ARRAY(SELECT a.attidentity::text FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0
             AND NOT a.attisdropped AND a.attgenerated = '' ORDER BY a.attnum)::text[] AS identities,
       ARRAY(SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid
             AND a.attnum = ANY(i.indkey)
             WHERE i.indrelid = c.oid AND (i.indisprimary OR (c.relreplident = 'i' AND i.indisreplident))
             ORDER BY array_position(i.indkey, a.attnum)
             LIMIT 32)::text[] AS keys
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')
ORDER BY c.relname]]

local function text_array(s)
  if type(s) ~= "string" or s == "{}" then return {} end
  local out = {}
  for item in s:sub(2, -2):gmatch('[^,]+') do out[#out + 1] = item:gsub('^"(.*)"$', "%1") end
  return out
end

-- A plan of every table of `schema` (default public): leaves and plain tables in plan.tables,
-- partitioned roots in by_key, every sequence of the schema. rename(name) may map targets.
function H.plan(src, schema, rename)
  schema = schema or "public"
  rename = rename or {}
  local plan = { tables = {}, by_key = {}, sequences = {} }
  for _, r in ipairs(assert(src:query(PLAN_SQL, schema))) do
    local tname = rename[r.name] or r.name
    local cols, identities = {}, text_array(r.identities)
    for i, c in ipairs(text_array(r.columns)) do
      cols[i] = { name = c, target = (rename[r.name .. "." .. c]) or c, identity = identities[i] }
    end
    local keys = text_array(r.keys)
    local entry = {
      key = r.schema .. "." .. r.name, oid = r.oid, source = { schema = r.schema, name = r.name },
      target = { schema = r.schema, name = tname }, columns = cols,
      key_columns = #keys > 0 and keys or nil, replica_identity = r.ident,
      parent = r.root ~= tide.null and r.root or nil,
    }
    if r.relkind == "p" then
      plan.by_key["table:" .. entry.key] = { schema = r.schema, name = r.name, target = entry.target, columns = cols }
    elseif not r.name:match("_heartbeat$") then
      plan.tables[#plan.tables + 1] = entry
    end
  end
  for _, r in ipairs(assert(src:query([[SELECT sequencename AS name FROM pg_sequences WHERE schemaname = $1]], schema))) do
    plan.sequences[#plan.sequences + 1] = { key = schema .. "." .. r.name, source = { schema = schema, name = r.name },
                                            target = { schema = schema, name = r.name } }
  end
  return plan
end

-- The initial copy of every plan table under the exported snapshot (one transaction each side).
function H.copy(ctx, plan, info)
  local s, t = P.connect_both(ctx)
  assert(s:exec("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"))
  assert(s:exec("SET TRANSACTION SNAPSHOT " .. s:quote_literal(info.snapshot)))
  assert(t:exec("BEGIN"))
  for _, tbl in ipairs(plan.tables) do
    local cols, tcols = {}, {}
    for i, c in ipairs(tbl.columns) do cols[i] = s:quote_ident(c.name); tcols[i] = t:quote_ident(c.target) end
    local src = s:quote_ident(tbl.source.schema) .. "." .. s:quote_ident(tbl.source.name)
    local dst = t:quote_ident(tbl.target.schema) .. "." .. t:quote_ident(tbl.target.name)
    assert(core.copy_pump(s, t, "COPY (SELECT " .. table.concat(cols, ", ") .. " FROM ONLY " .. src .. ") TO STDOUT",
                          "COPY " .. dst .. " (" .. table.concat(tcols, ", ") .. ") FROM STDIN"):wait())
  end
  assert(t:exec("COMMIT"))
  assert(s:exec("COMMIT"))
  s:close(); t:close()
end

-- Stop once the target applied everything up to `lsn` (a function usable as task.stop).
function H.stop_at(lsn_ref)
  return function(st)
    return lsn_ref.lsn ~= nil and st.applied >= require("tide.when").lsn_number(lsn_ref.lsn)
  end
end

-- prepare + copy + copy_done, as tide.cmd.run does it.
function H.setup(ctx, task, plan, opts)
  local s, t = P.connect_both(ctx)
  local info = cdc.prepare(task, plan, s, t, opts)
  if info.snapshot then H.copy(ctx, plan, info) end
  cdc.copy_done(task, info, t)
  s:close(); t:close()
  return info
end

-- cdc.stream in its own coroutine; returns the handle. `run` is a tide.taskrun run (to see
-- its stream: run:stream_status()) or a task.
function H.stream(ctx, run, plan, opts)
  return tide.spawn(function()
    local s, t = P.connect_both(ctx)
    local ok, res = pcall(cdc.stream, run, plan, s, t, opts or { quiet = true })
    s:close(); t:close()
    if not ok then error(res, 0) end
    return res
  end)
end

-- A file's text, or "" (a child process's log).
function H.slurp(path)
  local f = io.open(path, "r")
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end

function H.release(ctx, task)
  local s, t = P.connect_both(ctx)
  local dropped = cdc.release(task, s, t)
  s:close(); t:close()
  return dropped
end

return H
