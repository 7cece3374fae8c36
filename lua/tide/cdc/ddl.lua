-- tide.cdc.ddl — DDL replication during incremental migration (docs/incremental.md, "DDL
-- replication").
--
-- On the source, the task's event trigger (ddl_command_end and sql_drop; tide.cdc.ddl_sql)
-- records every DDL command on a followed object as a transactional logical decoding message,
-- with the catalog description of each table the command touched taken inside the DDL's own
-- transaction. The message reaches the stream in commit order between the changes before and
-- after it; the engine holds it there (engine/cdc/apply_ddl.c) and this module decides:
--   * what the command means for the target: the target statements are generated here from
--     the description, under the playbook's rename rules — never by rewriting the source text;
--     for a known table, as the difference between what the target has (`known`) and the new
--     description;
--   * what on.ddl says ("apply", "skip", "stop");
--   * the new map entries of the stream (a new table, a column added, a table renamed ...).
-- The statements run in the open target transaction of the group, with the record of what the
-- target now has (`<state_schema>.ddl_tables`), and commit with the origin's advance or not at
-- all: a kill before the commit finds the old record and the DDL again in the stream; a kill
-- after finds the new record and a stream that starts past the DDL.
local json = require "tide.json"
local log = require "tide.log"
local failure = require "tide.failure"
local sqlident = require "tide.sqlident"
local objects = require "tide.cdc.objects"
local ddl_sql = require "tide.cdc.ddl_sql"

local M = {}

local SYSTEM = { pg_catalog = true, information_schema = true, pg_toast = true }

local function conf(task) return task.incremental or {} end

function M.enabled(task)
  return task.phases ~= nil and task.phases.incremental == true and conf(task).ddl ~= false
end

-- names(task) → { task, prefix (of the messages), fn_schema, fn, end_trigger, drop_trigger, publication }
function M.names(task)
  local n = objects.names(task)
  local base = n.prefix:sub(1, 55)
  return { task = task.name, prefix = n.prefix .. "_ddl", fn_schema = n.heartbeat_schema, fn = base .. "_ddl",
           end_trigger = base .. "_ddl_end", drop_trigger = base .. "_ddl_drop", publication = n.publication,
           heartbeat_schema = n.heartbeat_schema, heartbeat_name = n.heartbeat_name }
end

local function q(s) return sqlident.quote(s) end
local function qq(schema, name) return q(schema) .. "." .. q(name) end
local function lit(s) return "'" .. tostring(s):gsub("'", "''") .. "'" end

------------------------------------------------------------------------ the source side

-- The schemas whose objects are followed: those the plan selected (and those of selected tables).
function M.followed_schemas(task, plan)
  local set, list = {}, {}
  local state_schema = task.state_schema or "pgtide"
  local function add(s)
    if s and not set[s] and not SYSTEM[s] and s ~= state_schema then set[s] = true; list[#list + 1] = s end
  end
  local model = plan.model
  if model and model.schemas then
    for name, obj in pairs(model.schemas) do if obj.selected then add(name) end end
  end
  for _, tbl in ipairs(plan.tables or {}) do add(tbl.source.schema) end
  table.sort(list)
  return list
end

-- Whether the source role may create the event trigger: { ok = bool, why = text }.
function M.can_install(source)
  local rows = assert(source:query("SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user"))
  if rows[1] and rows[1].rolsuper then return { ok = true } end
  return { ok = false, why = "creating an event trigger needs a superuser, and the source role " ..
           "is not one" }
end

-- Create (or replace) the event trigger and its function on the source.
function M.install(task, plan, source)
  local n = M.names(task)
  local fn = qq(n.fn_schema, n.fn)
  local schemas = M.followed_schemas(task, plan)
  local sql = (ddl_sql.function_sql(fn, n, schemas, { { n.heartbeat_schema, n.heartbeat_name } }))
  -- Made by an earlier run as it would be now: left alone (a resumed run may find the source
  -- fenced by a cutover that did not finish, and takes no lock it does not need).
  local body = sql:match("%$pgtide%$(.*)%$pgtide%$$")
  local have = assert(source:query([[
SELECT p.prosrc, (SELECT count(*) FROM pg_catalog.pg_event_trigger e
                  WHERE e.evtfoid = p.oid AND e.evtname = ANY ($2) AND e.evtenabled <> 'D') AS triggers
FROM pg_catalog.pg_proc p WHERE p.oid = pg_catalog.to_regprocedure($1)]], fn .. "()", { n.end_trigger, n.drop_trigger }))
  if have[1] and have[1].prosrc == body and tonumber(have[1].triggers) == 2 then return schemas end
  local statements = {
    "BEGIN",
    "SET TRANSACTION READ WRITE",
    sql,
    "COMMENT ON FUNCTION " .. fn .. "() IS " .. lit("pgtide: DDL replication of task " .. task.name),
    "DROP EVENT TRIGGER IF EXISTS " .. q(n.end_trigger),
    "DROP EVENT TRIGGER IF EXISTS " .. q(n.drop_trigger),
    "CREATE EVENT TRIGGER " .. q(n.end_trigger) .. " ON ddl_command_end EXECUTE FUNCTION " .. fn .. "()",
    "CREATE EVENT TRIGGER " .. q(n.drop_trigger) .. " ON sql_drop EXECUTE FUNCTION " .. fn .. "()",
    "COMMIT",
  }
  for _, s in ipairs(statements) do
    local ok, err = source:exec(s)
    if not ok then
      source:exec("ROLLBACK")
      failure.raise("failed", string.format("cannot create the DDL event trigger of task %s on the source: %s\n" ..
        "  hint: creating an event trigger needs a superuser; run the task as one, or set incremental.ddl = false " ..
        "(then DDL on the source stops the stream, as without DDL replication)", task.name,
        err.message or tostring(err)), { err = err })
    end
  end
  return schemas
end

-- Drop the event triggers and their function; returns what was dropped (for release).
function M.remove(task, source)
  local n = M.names(task)
  local dropped = {}
  local rows = assert(source:query("SELECT evtname FROM pg_catalog.pg_event_trigger WHERE evtname = ANY ($1) " ..
                                   "ORDER BY evtname", { n.end_trigger, n.drop_trigger }))
  for _, r in ipairs(rows) do
    assert(source:exec("DROP EVENT TRIGGER IF EXISTS " .. q(r.evtname)))
    dropped[#dropped + 1] = "event trigger " .. r.evtname
  end
  local fn = qq(n.fn_schema, n.fn)
  local f = assert(source:query("SELECT pg_catalog.to_regprocedure($1) IS NOT NULL AS present", fn .. "()"))
  if f[1].present then
    assert(source:exec("DROP FUNCTION IF EXISTS " .. fn .. "()"))
    dropped[#dropped + 1] = "function " .. n.fn_schema .. "." .. n.fn .. "()"
  end
  return dropped
end

------------------------------------------------------------------------ what the target has

local function state_table(task)
  return q(task.state_schema or "pgtide") .. ".ddl_tables"
end

local function ensure_state(task, target)
  -- Only when missing: DDL on the target fires its event triggers (once the schema phase has
  -- enabled them).
  local r = assert(target:query("SELECT pg_catalog.to_regclass($1) IS NOT NULL AS present", state_table(task)))
  if r[1].present then return end
  assert(target:exec("CREATE SCHEMA IF NOT EXISTS " .. q(task.state_schema or "pgtide") .. ";\n" ..
    "CREATE TABLE IF NOT EXISTS " .. state_table(task) .. " (\n" ..
    "  task text NOT NULL, source_oid bigint NOT NULL, info jsonb NOT NULL,\n" ..
    "  PRIMARY KEY (task, source_oid))"))
end

local function persist_sql(task, oid, info)
  if info == nil then
    return string.format("DELETE FROM %s WHERE task = %s AND source_oid = %s", state_table(task), lit(task.name),
                         tostring(oid))
  end
  return string.format("INSERT INTO %s (task, source_oid, info) VALUES (%s, %s, %s::jsonb) ON CONFLICT (task, " ..
                       "source_oid) DO UPDATE SET info = EXCLUDED.info", state_table(task), lit(task.name),
                       tostring(oid), lit(json.encode(info)))
end

-- The record of what the target has, by source oid (text): { desc = <description>, target =
-- { schema, name }, cols = { [source column] = target column }, ignored = bool }.
function M.load(task, target)
  local rows = target:query("SELECT source_oid::text AS oid, info::text AS info FROM " .. state_table(task) ..
                            " WHERE task = $1", task.name)
  if not rows then return nil end
  local out, any = {}, false
  for _, r in ipairs(rows) do out[r.oid] = json.decode(r.info); any = true end
  return any and out or nil
end

-- A new slot: record what the target has of every table of the plan, from the source catalog
-- now (the schema phase made the target from the same catalog). Replaces an earlier record.
function M.record_start(task, plan, source, target)
  ensure_state(task, target)
  local oids, by_oid = {}, {}
  for _, tbl in ipairs(plan.tables or {}) do
    if tbl.oid and not tbl.parent then oids[#oids + 1] = tonumber(tbl.oid); by_oid[tostring(tbl.oid)] = tbl end
  end
  -- the partitioned tables of the plan (their rows come under their name) are recorded as tables
  local roots, root_names = {}, {}
  for _, tbl in ipairs(plan.tables or {}) do
    local root = tbl.parent and plan.by_key and plan.by_key["table:" .. tbl.parent]
    if root and not roots[tbl.parent] then
      roots[tbl.parent] = root
      root_names[#root_names + 1] = qq(root.schema, root.name)
    end
  end
  if #root_names > 0 then
    for _, r in ipairs(assert(source:query("SELECT u.name, pg_catalog.to_regclass(u.name)::oid::bigint AS oid " ..
                                           "FROM unnest($1::text[]) AS u(name)", root_names))) do
      for _, root in pairs(roots) do
        if r.oid ~= nil and r.oid ~= json.null and qq(root.schema, root.name) == r.name then
          oids[#oids + 1] = tonumber(r.oid)
          by_oid[tostring(r.oid)] = { target = root.target, columns = root.columns or {} }
        end
      end
    end
  end
  local descs = ddl_sql.describe(source, oids)
  local statements = { "BEGIN", string.format("DELETE FROM %s WHERE task = %s", state_table(task), lit(task.name)) }
  -- A slot made again (a full load that starts over): DDL of the source since the target was
  -- last brought up to date went with the old slot. What the record says the target has is
  -- brought to what the source has now, before the copy.
  local old = M.load(task, target)
  local d = old and M.context(task, old)
  if old then
    -- tables the target has that the source dropped meanwhile go too
    local gone = {}
    for oid, info in pairs(old) do
      if not by_oid[oid] and not info.ignored and not info.sequence then gone[#gone + 1] = tonumber(oid) end
    end
    local still = ddl_sql.describe(source, gone)
    for _, oid in ipairs(gone) do
      local info = old[tostring(oid)]
      if not still[tostring(oid)] then
        statements[#statements + 1] = "DROP TABLE IF EXISTS " .. qq(info.target.schema, info.target.name)
      end
    end
  end
  for oid, desc in pairs(descs) do
    local tbl = by_oid[oid]
    if d then
      local list, rec = M.catch_up(d, target, oid, desc, tbl)
      if rec then
        for _, sql in ipairs(list) do statements[#statements + 1] = sql end
        statements[#statements + 1] = persist_sql(task, oid, rec)
        goto next
      end
    end
    local cols = {}
    for _, c in ipairs(tbl.columns or {}) do cols[c.name] = c.target or c.name end
    for _, c in ipairs(desc.columns or {}) do
      if not cols[c.name] and c.generated == "s" then cols[c.name] = c.name end
    end
    statements[#statements + 1] = persist_sql(task, oid, { desc = desc, cols = cols,
      target = { schema = tbl.target.schema, name = tbl.target.name } })
    ::next::
  end
  -- the partitions of the plan's partitioned tables (their rows come through the root): what
  -- DETACH and ATTACH PARTITION are compared with
  local parts = {}
  for _, tbl in ipairs(plan.tables or {}) do
    if tbl.oid and tbl.parent then parts[#parts + 1] = tonumber(tbl.oid); by_oid[tostring(tbl.oid)] = tbl end
  end
  for oid, desc in pairs(ddl_sql.describe(source, parts)) do
    local tbl = by_oid[oid]
    statements[#statements + 1] = persist_sql(task, oid, { desc = desc, cols = {}, partition = true,
      target = { schema = tbl.target.schema, name = tbl.target.name } })
  end
  statements[#statements + 1] = "COMMIT"
  for _, s in ipairs(statements) do
    local ok, err = target:exec(s)
    if not ok then target:exec("ROLLBACK"); error(err, 0) end
  end
end

-- cdc.prepare's part: the event trigger made (or replaced: the selection may have changed), and
-- on a new slot (`fresh`) the record of what the target has started. With incremental.ddl =
-- false a trigger an earlier run made is dropped.
function M.prepare(task, plan, source, target, fresh)
  if not M.enabled(task) then
    M.remove(task, source)
    return
  end
  local can = M.can_install(source)
  if not can.ok then
    failure.raise("failed", "DDL replication cannot be set up on the source: " .. can.why .. "\n  hint: run the " ..
      "task as a superuser of the source (on a managed service, its equivalent role), or set incremental.ddl = " ..
      "false (DDL on the source then stops the stream with a message, as without DDL replication)")
  end
  M.install(task, plan, source)
  ensure_state(task, target)
  if fresh or not M.load(task, target) then M.record_start(task, plan, source, target) end
end

-- Release: forget the record on the target.
function M.forget(task, target)
  local r = assert(target:query("SELECT pg_catalog.to_regclass($1) IS NOT NULL AS present", state_table(task)))
  if r[1].present then assert(target:query("DELETE FROM " .. state_table(task) .. " WHERE task = $1", task.name)) end
end

------------------------------------------------------------------------ the stream's view

-- The stream's DDL state: st.ddl = M.start(task, plan, target)
function M.context(task, known)
  local map = task.rename and require("tide.rename").compile(task.rename) or nil
  local selector = require("tide.select").compile(task.select, { kinds = require("tide.kinds").selectable })
  return { task = task, map = map, selector = selector, known = known or {}, base = {}, applied = 0, skipped = 0,
           recent = {}, warn = {} }
end

function M.start(task, plan, target)
  ensure_state(task, target)
  local d = M.context(task, M.load(task, target))
  d.plan = plan
  -- the target's roles: a grant to one it does not have is left out
  d.roles = {}
  for _, r in ipairs(assert(target:query("SELECT rolname FROM pg_catalog.pg_roles"))) do d.roles[r.rolname] = true end
  -- The target's enabled event triggers: quiet while pgtide's DDL runs (below)
  d.event_triggers = {}
  for _, r in ipairs(assert(target:query("SELECT evtname, evtenabled FROM pg_catalog.pg_event_trigger " ..
                                         "WHERE evtenabled <> 'D' ORDER BY evtname"))) do
    d.event_triggers[#d.event_triggers + 1] = { name = r.evtname, enabled = r.evtenabled }
  end
  return d
end

local function map_table(d, schema, name)
  if not d.map then return schema, name end
  return d.map:table(schema, name)
end

local function map_object(d, kind, schema, name)
  if not d.map or SYSTEM[schema] then return schema, name end
  return d.map:object(kind, schema, name)
end

local function map_column(d, schema, name, column)
  if not d.map then return column end
  return d.map:column(schema, name, column)
end

-- Find the known table of source schema.name.
local function known_by_name(d, schema, name)
  for oid, info in pairs(d.known) do
    if info.desc.schema == schema and info.desc.name == name then return oid, info end
  end
end

-- A definition printed by the source (default, constraint, index) with the names mapped.
local function mapped(d, sql, desc, expression)
  if not d.map or sql == nil then return sql end
  local out = sqlident.rename_in_definition(sql, {
    schema = desc.schema, table = desc.name, expression = expression,
    columns = function(schema, name)
      local list = {}
      local other = (schema == desc.schema and name == desc.name) and desc or select(2, known_by_name(d, schema, name))
      other = other and (other.desc or other)
      for _, c in ipairs(other and other.columns or {}) do list[#list + 1] = c.name end
      return list
    end,
    relation = function(kind, schema, name) return map_object(d, kind, schema, name) end,
    column = function(schema, name, column)
      if schema == nil or name == nil then return column end
      return map_column(d, schema, name, column)
    end,
  })
  return out
end

local function type_text(d, text)
  if not d.map or not text:find(".", 1, true) then return text end
  return (sqlident.rewrite(text, function(parts)
    if #parts ~= 2 or SYSTEM[parts[1].name] then return nil end
    local s, n = d.map:object("type", parts[1].name, parts[2].name)
    if s == parts[1].name and n == parts[2].name then return nil end
    return { s, n }
  end))
end

local function column_sql(d, desc, c, tcol)
  local parts = { q(tcol), type_text(d, c.type) }
  if c.collation and c.collation ~= json.null then parts[#parts + 1] = "COLLATE " .. c.collation end
  local default = c.default ~= json.null and c.default or nil
  if c.generated == "s" and default then
    parts[#parts + 1] = "GENERATED ALWAYS AS (" .. mapped(d, default, desc, true) .. ") STORED"
  elseif default and c.identity == json.null then
    parts[#parts + 1] = "DEFAULT " .. mapped(d, default, desc, true)
  end
  if c.identity == "a" then parts[#parts + 1] = "GENERATED ALWAYS AS IDENTITY"
  elseif c.identity == "d" then parts[#parts + 1] = "GENERATED BY DEFAULT AS IDENTITY" end
  if c.not_null then parts[#parts + 1] = "NOT NULL" end
  return table.concat(parts, " ")
end

local function val(v) if v == json.null then return nil end return v end

-- The statements that make a new table on the target, and its record.
-- pre_only: leave out what the full load's post-data steps build (keys, unique, exclusion and
-- foreign key constraints, indexes), for a table made before a full load.
local POST_DATA = { p = true, u = true, x = true, f = true }

-- COMMENT ON the table and its columns where the source's differ from `old` (nil: a new table),
-- unless schema.comments = false.
local function comments_sql(d, target, desc, old, cols)
  local out = {}
  if d.task.schema and d.task.schema.comments == false then return out end
  local function text(v) return val(v) and lit(v) or "NULL" end
  if val(desc.comment) ~= (old and val(old.comment)) and (old or val(desc.comment)) then
    out[#out + 1] = "COMMENT ON TABLE " .. target .. " IS " .. text(desc.comment)
  end
  local before = {}
  for _, c in ipairs(old and old.columns or {}) do before[tostring(c.num)] = c end
  for _, c in ipairs(desc.columns or {}) do
    local o = before[tostring(c.num)]
    local was = o and val(o.comment) or nil
    if cols[c.name] and val(c.comment) ~= was then
      out[#out + 1] = "COMMENT ON COLUMN " .. target .. "." .. q(cols[c.name]) .. " IS " .. text(c.comment)
    end
  end
  return out
end

-- GRANT and REVOKE on the table where the source's privileges (of roles other than its owner)
-- differ from `old`'s (nil: a new table), unless schema.grants = false. A role the target does
-- not have (d.roles, read when the stream started) is left out with a warning.
local function grants_sql(d, target, desc, old, cols)
  local out = {}
  if (d.task.schema and d.task.schema.grants == false) or not d.roles then return out end
  local function key(g) return table.concat({ g.privilege, val(g.column) or "", val(g.grantee) or "", tostring(g.grantable) }, "\0") end
  local function list(grants)
    local set = {}
    for _, g in ipairs(val(grants) or {}) do set[key(g)] = g end
    return set
  end
  local before, now = list(old and old.grants), list(desc.grants)
  local function clause(g, to)
    local grantee = val(g.grantee)
    if grantee and not d.roles[grantee] then
      d.warn[#d.warn + 1] = string.format("role %s does not exist on the target: %s of %s on %s left out", grantee,
        to == "TO" and "GRANT" or "REVOKE", g.privilege, target)
      return nil
    end
    local what = g.privilege
    if val(g.column) then
      if not cols[g.column] then return nil end
      what = what .. " (" .. q(cols[g.column]) .. ")"
    end
    return what .. " ON TABLE " .. target .. " " .. to .. " " .. (grantee and q(grantee) or "PUBLIC")
  end
  local keys = {}
  for k in pairs(before) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do
    if not now[k] then
      local c = clause(before[k], "FROM")
      if c then out[#out + 1] = "REVOKE " .. c end
    end
  end
  keys = {}
  for k in pairs(now) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do
    if not before[k] then
      local c = clause(now[k], "TO")
      if c then out[#out + 1] = "GRANT " .. c .. (now[k].grantable and " WITH GRANT OPTION" or "") end
    end
  end
  return out
end

local function create_table(d, desc, pre_only)
  local ts, tn = map_table(d, desc.schema, desc.name)
  local target = qq(ts, tn)
  local cols, elements = {}, {}
  for _, c in ipairs(desc.columns) do
    cols[c.name] = map_column(d, desc.schema, desc.name, c.name)
    elements[#elements + 1] = column_sql(d, desc, c, cols[c.name])
  end
  local partition_by = val(desc.partkey) and (" PARTITION BY " .. desc.partkey) or ""
  local out = { "CREATE TABLE " .. target .. " (" .. table.concat(elements, ", ") .. ")" .. partition_by }
  for _, k in ipairs(desc.constraints) do
    if not (pre_only and POST_DATA[k.type]) then
      local _, cn = map_object(d, "constraint", desc.schema, k.name)
      out[#out + 1] = "ALTER TABLE " .. target .. " ADD CONSTRAINT " .. q(cn) .. " " .. mapped(d, k.def, desc, false)
    end
  end
  if not pre_only then
    for _, i in ipairs(desc.indexes) do
      -- (a partitioned table's index: made on the partitions too, as they are created)
      out[#out + 1] = (mapped(d, i.def, desc, false):gsub(" ON ONLY ", " ON ", 1))
    end
  end
  if desc.identity == "f" then out[#out + 1] = "ALTER TABLE " .. target .. " REPLICA IDENTITY FULL" end
  if desc.identity == "i" and val(desc.identity_index) and not pre_only then
    local _, xn = map_object(d, "index", desc.schema, desc.identity_index)
    out[#out + 1] = "ALTER TABLE " .. target .. " REPLICA IDENTITY USING INDEX " .. q(xn)
  end
  for _, sql in ipairs(comments_sql(d, target, desc, nil, cols)) do out[#out + 1] = sql end
  if not pre_only then
    for _, sql in ipairs(grants_sql(d, target, desc, nil, cols)) do out[#out + 1] = sql end
  end
  return out, { desc = desc, cols = cols, target = { schema = ts, name = tn } }
end

local function by(list, key)
  local out = {}
  for _, e in ipairs(list or {}) do out[tostring(e[key])] = e end
  return out
end

-- The statements that take the target from `info` (what it has) to `desc` (the source now).
local function alter_table(d, info, desc, pre_only)
  local old = info.desc
  local out = {}
  local ts, tn = info.target.schema, info.target.name
  if old.name ~= desc.name or old.schema ~= desc.schema then
    local ns, nn = map_table(d, desc.schema, desc.name)
    if nn ~= tn then out[#out + 1] = "ALTER TABLE " .. qq(ts, tn) .. " RENAME TO " .. q(nn); tn = nn end
    if ns ~= ts then out[#out + 1] = "ALTER TABLE " .. qq(ts, tn) .. " SET SCHEMA " .. q(ns); ts = ns end
  end
  local t = qq(ts, tn)
  local cols = {}
  local old_cols, new_cols = by(old.columns, "num"), by(desc.columns, "num")
  local old_cons, new_cons = by(old.constraints, "name"), by(desc.constraints, "name")
  local old_idx, new_idx = by(old.indexes, "oid"), by(desc.indexes, "oid")
  -- constraints that go or change
  for name, k in pairs(old_cons) do
    local nk = new_cons[name]
    if not nk or nk.def ~= k.def then
      local _, cn = map_object(d, "constraint", old.schema, name)
      out[#out + 1] = "ALTER TABLE " .. t .. " DROP CONSTRAINT IF EXISTS " .. q(cn)
    end
  end
  for oid, i in pairs(old_idx) do
    if not new_idx[oid] then
      local xs, xn = map_object(d, "index", old.schema, i.name)
      out[#out + 1] = "DROP INDEX IF EXISTS " .. qq(xs == old.schema and ts or xs, xn)
    end
  end
  -- columns: dropped, renamed, changed, added (matched by attnum)
  for num, c in pairs(old_cols) do
    if not new_cols[num] and info.cols[c.name] then
      out[#out + 1] = "ALTER TABLE " .. t .. " DROP COLUMN IF EXISTS " .. q(info.cols[c.name])
    end
  end
  for _, c in ipairs(desc.columns) do
    local o = old_cols[tostring(c.num)]
    local tc = o and info.cols[o.name]
    if o and tc then
      if o.name ~= c.name then
        local nc = map_column(d, desc.schema, desc.name, c.name)
        if nc ~= tc then out[#out + 1] = "ALTER TABLE " .. t .. " RENAME COLUMN " .. q(tc) .. " TO " .. q(nc) end
        tc = nc
      end
      cols[c.name] = tc
      local col = "ALTER TABLE " .. t .. " ALTER COLUMN " .. q(tc)
      if o.type ~= c.type or val(o.collation) ~= val(c.collation) then
        local ty = type_text(d, c.type)
        out[#out + 1] = col .. " TYPE " .. ty .. (val(c.collation) and (" COLLATE " .. c.collation) or "") ..
                        " USING " .. q(tc) .. "::" .. ty
      end
      if val(c.generated) == nil and val(c.identity) == nil and val(o.default) ~= val(c.default) then
        out[#out + 1] = val(c.default) and (col .. " SET DEFAULT " .. mapped(d, c.default, desc, true))
                        or (col .. " DROP DEFAULT")
      end
      if val(o.identity) ~= val(c.identity) then
        if val(o.identity) then out[#out + 1] = col .. " DROP IDENTITY IF EXISTS" end
        if val(c.identity) then
          out[#out + 1] = col .. " ADD GENERATED " .. (c.identity == "a" and "ALWAYS" or "BY DEFAULT") .. " AS IDENTITY"
        end
      end
      if o.not_null ~= c.not_null then out[#out + 1] = col .. (c.not_null and " SET NOT NULL" or " DROP NOT NULL") end
    elseif not o then
      cols[c.name] = map_column(d, desc.schema, desc.name, c.name)
      out[#out + 1] = "ALTER TABLE " .. t .. " ADD COLUMN " .. column_sql(d, desc, c, cols[c.name])
    end
  end
  for name, k in pairs(new_cons) do
    local ok = old_cons[name]
    if (not ok or ok.def ~= k.def) and not (pre_only and POST_DATA[k.type]) then
      local _, cn = map_object(d, "constraint", desc.schema, name)
      out[#out + 1] = "ALTER TABLE " .. t .. " ADD CONSTRAINT " .. q(cn) .. " " .. mapped(d, k.def, desc, false)
    end
  end
  for oid, i in pairs(new_idx) do
    local o = old_idx[oid]
    if not o and pre_only then
      -- built by the full load's post-data step
    elseif not o then
      -- (ON ONLY: an index of a partitioned table; on the target it is made for its partitions too)
      out[#out + 1] = (mapped(d, i.def, desc, false):gsub(" ON ONLY ", " ON ", 1))
    elseif o.name ~= i.name then
      local xs, xo = map_object(d, "index", old.schema, o.name)
      local _, xn = map_object(d, "index", desc.schema, i.name)
      if xo ~= xn then out[#out + 1] = "ALTER INDEX " .. qq(xs == old.schema and ts or xs, xo) .. " RENAME TO " .. q(xn) end
    end
  end
  if old.identity ~= desc.identity or val(old.identity_index) ~= val(desc.identity_index) then
    local how = ({ d = "DEFAULT", f = "FULL", n = "NOTHING" })[desc.identity]
    if desc.identity == "i" and val(desc.identity_index) then
      how = not pre_only and ("USING INDEX " .. q(select(2, map_object(d, "index", desc.schema, desc.identity_index))))
    end
    if how then out[#out + 1] = "ALTER TABLE " .. t .. " REPLICA IDENTITY " .. how end
  end
  for _, sql in ipairs(comments_sql(d, t, desc, old, cols)) do out[#out + 1] = sql end
  if not pre_only then
    for _, sql in ipairs(grants_sql(d, t, desc, old, cols)) do out[#out + 1] = sql end
  end
  return out, { desc = desc, cols = cols, target = { schema = ts, name = tn } }
end

-- The target table of a partitioned table of the source: known, or a root of the plan.
local function parent_target(d, parent)
  local info = d.known[tostring(parent.oid)]
  if info and not info.ignored and not info.partition then return info.target end
  if info and info.partition and not info.ignored then return info.target end
  local root = d.plan and d.plan.by_key and d.plan.by_key["table:" .. parent.schema .. "." .. parent.name]
  if root and root.target then return root.target end
end

-- A partition of the source (kind r, or p for one partitioned further): made on the target as
-- a partition of its parent's target table; its rows come through the root. Returns the
-- statements, its record, and a warning or nil.
local function partition_sql(d, info, desc)
  local parent = val(desc.parent)
  local pt = parent and parent_target(d, parent)
  if not pt then
    return {}, nil, string.format("%s.%s is a partition of %s, which the task does not follow: its DDL is " ..
      "not followed", desc.schema, desc.name, parent and (parent.schema .. "." .. parent.name) or "?")
  end
  if info and info.partition then
    -- a partition the target has: renamed or moved (other changes come from its parent)
    local out, ts, tn = {}, info.target.schema, info.target.name
    local ns, nn = map_table(d, desc.schema, desc.name)
    if nn ~= tn then out[#out + 1] = "ALTER TABLE " .. qq(ts, tn) .. " RENAME TO " .. q(nn); tn = nn end
    if ns ~= ts then out[#out + 1] = "ALTER TABLE " .. qq(ts, tn) .. " SET SCHEMA " .. q(ns); ts = ns end
    return out, { desc = desc, cols = {}, target = { schema = ts, name = tn }, partition = true }
  end
  local ts, tn = map_table(d, desc.schema, desc.name)
  local partition_by = val(desc.partkey) and (" PARTITION BY " .. desc.partkey) or ""
  return { "CREATE TABLE " .. qq(ts, tn) .. " PARTITION OF " .. qq(pt.schema, pt.name) .. " " .. desc.bound ..
           partition_by },
         { desc = desc, cols = {}, target = { schema = ts, name = tn }, partition = true }
end

-- The partitions attached to and detached from a partitioned table (desc.partitions against the
-- partitions the target has of it): statements, records, map entries to remove, warnings, and a
-- reason to stop or nil.
local function partitions_sql(d, desc, pt)
  local out, records, remove, warnings = {}, {}, {}, {}
  local now = {}
  for _, p in ipairs(val(desc.partitions) or {}) do now[tostring(p.oid)] = p end
  for oid, info in pairs(d.known) do
    local parent = info.partition and val(info.desc.parent)
    if parent and tostring(parent.oid) == tostring(desc.oid) and not now[oid] then
      out[#out + 1] = "ALTER TABLE " .. qq(pt.schema, pt.name) .. " DETACH PARTITION " ..
                      qq(info.target.schema, info.target.name)
      local cols = {}
      for _, c in ipairs(info.desc.columns or {}) do cols[c.name] = c.name end
      records[oid] = { desc = info.desc, cols = cols, target = info.target, ignored = true, detached = true }
      warnings[#warnings + 1] = string.format("%s.%s was detached from %s.%s: it is detached on the target too, " ..
        "and its later changes are not migrated (it is no longer published through its root)",
        info.desc.schema, info.desc.name, desc.schema, desc.name)
    end
  end
  for oid, p in pairs(now) do
    local info = d.known[oid]
    if info and info.partition then
      -- already a partition of it on the target
    elseif info and not info.ignored then
      out[#out + 1] = "ALTER TABLE " .. qq(pt.schema, pt.name) .. " ATTACH PARTITION " ..
                      qq(info.target.schema, info.target.name) .. " " .. p.bound
      local pdesc = {}
      for k, v in pairs(info.desc) do pdesc[k] = v end
      pdesc.parent = { oid = desc.oid, schema = desc.schema, name = desc.name }
      pdesc.partition, pdesc.bound = true, p.bound
      records[oid] = { desc = pdesc, cols = {}, target = info.target, partition = true }
      remove[#remove + 1] = { info.desc.schema, info.desc.name }
    else
      return out, records, remove, warnings, string.format("table %s.%s was attached as a partition of %s.%s, " ..
        "but the target does not have it with its rows (it is not a table the task follows)", p.schema, p.name,
        desc.schema, desc.name)
    end
  end
  return out, records, remove, warnings
end

-- record_start's catch-up of one table: the statements and the new record, or nil when the
-- record does not know the table and the target has it (made by the schema phase).
function M.catch_up(d, target, oid, desc, tbl)
  local info = d.known[oid]
  if info and not info.ignored then return alter_table(d, info, desc, true) end
  local r = assert(target:query("SELECT pg_catalog.to_regclass($1) IS NOT NULL AS present",
                                qq(tbl.target.schema, tbl.target.name)))
  if r[1].present then return {}, nil end
  return create_table(d, desc, true)
end

------------------------------------------------------------------------ map entries

-- The stream's map entry of a table from its record (engine/cdc/lua_cdc_tables.c).
function M.entry(d, info, base)
  local desc = info.desc
  local e = { source_schema = desc.schema, source_name = desc.name,
              target_sql = qq(info.target.schema, info.target.name),
              display = info.target.schema .. "." .. info.target.name, columns = {}, known = {} }
  if info.ignored then
    e.ignored = true
    e.target_sql, e.display = "-", "(ignored " .. desc.schema .. "." .. desc.name .. ")"
    return e
  end
  local key
  for _, k in ipairs(desc.constraints or {}) do
    if k.type == "p" then
      key = {}
      for name in (k.def:match("%((.-)%)") or ""):gmatch("[^,]+") do
        name = name:gsub("^%s+", ""):gsub("%s+$", "")
        key[#key + 1] = name:match('^"(.*)"$') and name:sub(2, -2):gsub('""', '"') or name
      end
    end
  end
  local uniques = 0
  for _, k in ipairs(desc.constraints or {}) do if k.type == "p" or k.type == "u" or k.type == "x" then uniques = uniques + 1 end end
  for _, i in ipairs(desc.indexes or {}) do if i.unique then uniques = uniques + 1 end end
  for _, c in ipairs(desc.columns) do
    e.known[#e.known + 1] = c.name
    if val(c.generated) ~= "s" and info.cols[c.name] then
      e.columns[#e.columns + 1] = { source = c.name, target_sql = q(info.cols[c.name]), identity_always = c.identity == "a" }
    end
  end
  e.key = key
  e.unique_free = uniques == 0
  e.partitioned = desc.kind == "p" or nil
  base = base or {}
  local may = d and conf(d.task).replica_role ~= false
  e.mergeable = may and conf(d.task).merge_updates ~= false and uniques == 1 and key ~= nil and base.mergeable ~= false
  e.batchable = may and conf(d.task).batch_inserts ~= false and base.batchable ~= false
  e.hooked, e.filter, e.known_type, e.filter_columns = base.hooked, base.filter, base.known_type, base.filter_columns
  if base.filter or desc.kind == "p" then e.mergeable, e.batchable = false, false end
  local hooks = d and d.task.on and d.task.on.change
  if hooks and hooks[desc.schema .. "." .. desc.name] then e.hooked = true end
  return e
end

-- Overlay the record on the entries tide.cdc built from the plan (a restart: the source's
-- catalog may be ahead of the position the stream restarts from; the record is what the
-- target has at that position). Returns the new list.
function M.overlay(d, entries, plan)
  local oid_of = {}
  for _, tbl in ipairs(plan.tables or {}) do
    if tbl.oid and not tbl.parent then oid_of[tbl.source.schema .. "\0" .. tbl.source.name] = tostring(tbl.oid) end
    local root = tbl.parent and plan.by_key and plan.by_key["table:" .. tbl.parent]
    if root then
      local oid = known_by_name(d, root.schema, root.name)
      if oid then oid_of[root.schema .. "\0" .. root.name] = oid end
    end
  end
  local out, seen = {}, {}
  for _, e in ipairs(entries) do
    local oid = oid_of[e.source_schema .. "\0" .. e.source_name]
    local info = oid and d.known[oid]
    if e.heartbeat or not oid then
      out[#out + 1] = e
    elseif info and (info.partition or info.sequence) then
      -- a partition at the stream's position (detached on the source since): its rows come
      -- through its root until the DETACH's message
      seen[oid] = true
    elseif info then
      seen[oid] = true
      d.base[oid] = e
      local n = M.entry(d, info, e)
      -- what the plan knew stays known (a column added on the source ahead of the stream)
      local k = {}
      for _, name in ipairs(n.known) do k[name] = true end
      for _, name in ipairs(e.known or {}) do if not k[name] then n.known[#n.known + 1] = name end end
      n.tolerate_lsn, n.partitioned = e.tolerate_lsn, e.partitioned
      out[#out + 1] = n
    end
    -- a table of the plan the record does not know was created on the source after the
    -- stream's position: its DDL message will bring it
  end
  for oid, info in pairs(d.known) do
    if not seen[oid] and not info.partition and not info.sequence then out[#out + 1] = M.entry(d, info) end
  end
  return out
end

------------------------------------------------------------------------ one DDL message

-- A statement's text with the values of password-like options and connection-string keys
-- masked, for anything pgtide prints (docs: secrets never appear in output).
local function masked(text)
  text = tostring(text)
  for _, word in ipairs({ "[Pp][Aa][Ss][Ss]", "[Pp][Ww][Dd]", "[Ss][Ee][Cc][Rr][Ee][Tt]", "[Tt][Oo][Kk][Ee][Nn]" }) do
    text = text:gsub("(%w*" .. word .. "%w*[\"]?%s*=?%s*)'[^']*'", "%1'" .. require("tide.secret").MASK .. "'")
    text = text:gsub("(%w*" .. word .. "%w*%s*=%s*)([^%s',;)]+)", "%1" .. require("tide.secret").MASK)
  end
  return text
end
M.masked = masked

-- The source statement for messages: one line, at most 200 characters, secrets masked.
local function short(statement)
  local text = masked(statement or "?"):gsub("%s+", " "):gsub("^ ", ""):gsub(" $", "")
  if #text > 200 then text = text:sub(1, 197) .. "..." end
  return text
end
M.short = short

local function summary_of(msg)
  local cmds = msg.commands or msg.dropped or {}
  local first = cmds[1] or {}
  local tag = first.tag or ("DROP " .. string.upper(first.type or "?"))
  return tag, first.identity
end

local function selected(d, desc)
  local kind = desc.kind == "S" and "sequence" or "table"
  return (d.selector:object(kind, desc.schema, desc.name))
end

-- What a message means: { tag, object, statement, mapped = { sql... }, records = { [oid] = info
-- | false }, targets = { entry... }, remove = { {schema, name} }, warnings = { text }, stop = text }
function M.plan_message(d, msg)
  local tag, identity = summary_of(msg)
  local r = { tag = tag, object = identity, statement = msg.statement, mapped = {}, records = {}, targets = {},
              remove = {}, warnings = {}, selected = false }
  local function add(list) for _, s in ipairs(list) do r.mapped[#r.mapped + 1] = s end end
  if msg.event == "drop" then
    for _, o in ipairs(msg.dropped or {}) do
      local oid = tostring(o.oid)
      local info = d.known[oid]
      if o.type == "table" and info then
        r.selected = r.selected or not info.ignored
        if not info.ignored then add({ "DROP TABLE IF EXISTS " .. qq(info.target.schema, info.target.name) .. " CASCADE" }) end
        r.records[oid] = false
        r.remove[#r.remove + 1] = { info.desc.schema, info.desc.name }
      elseif o.type == "index" and o.original then
        -- an index of a table the target has: dropped there under its mapped name
        for _, t in pairs(d.known) do
          for _, i in ipairs(not t.ignored and t.desc.indexes or {}) do
            if tostring(i.oid) == oid then
              local xs, xn = map_object(d, "index", o.schema, o.name)
              add({ "DROP INDEX IF EXISTS " .. qq(xs == o.schema and t.target.schema or xs, xn) })
              r.selected = true
              local keep = {}
              for _, other in ipairs(t.desc.indexes) do if tostring(other.oid) ~= oid then keep[#keep + 1] = other end end
              t.desc.indexes = keep
              r.records[(function() for k, v in pairs(d.known) do if v == t then return k end end end)()] = t
            end
          end
        end
      elseif (o.type == "sequence" or o.type == "view" or o.type == "materialized view" or o.type == "function"
              or o.type == "procedure" or o.type == "type") and o.original then
        local kind = ({ ["materialized view"] = "matview" })[o.type] or o.type
        if d.selector:object(kind == "matview" and "matview" or kind, o.schema, o.name) then
          local what = ({ sequence = "SEQUENCE", view = "VIEW", ["materialized view"] = "MATERIALIZED VIEW",
                          ["function"] = "FUNCTION", procedure = "PROCEDURE", type = "TYPE" })[o.type]
          if o.type == "function" or o.type == "procedure" then
            local args = o.identity:match("(%b())$") or "()"
            local fs, fn = map_object(d, kind, o.schema, o.name)
            add({ "DROP " .. what .. " IF EXISTS " .. qq(fs, fn) .. type_text(d, args) })
          else
            local os_, on = map_object(d, kind, o.schema, o.name)
            add({ "DROP " .. what .. " IF EXISTS " .. qq(os_, on) })
          end
          r.selected = true
        end
      end
    end
    return r
  end
  -- ddl_command_end: the tables the commands touched, in their order
  local order, seen, grant_only = {}, {}, {}
  for _, c in ipairs(msg.commands or {}) do
    local oid = val(c.table) and tostring(c.table)
    if oid and not seen[oid] and msg.tables[oid] then
      seen[oid] = true; order[#order + 1] = oid; grant_only[oid] = c.grant == true
    elseif oid and c.grant ~= true then
      grant_only[oid] = false
    end
  end
  d.warn = {}
  for _, oid in ipairs(order) do
    local desc = msg.tables[oid]
    local info = d.known[oid]
    if grant_only[oid] then
      -- GRANT/REVOKE: every published table with privileges came; only a difference matters
      if info and not info.ignored and not info.partition and not info.sequence then
        local warned = #d.warn
        local list, new = alter_table(d, info, desc)
        -- (a grant left out is recorded as made: it is not warned about again)
        if #d.warn > warned then r.records[oid] = new end
        if #list > 0 then
          r.selected = true
          add(list)
          r.records[oid] = new
          r.changed = (r.changed and (r.changed .. ", ") or "") .. desc.schema .. "." .. desc.name
        end
      end
    elseif desc.kind == "S" then
      -- a sequence of a followed schema (not an identity column's)
      if selected(d, desc) then
        r.selected = true
        local s = desc.sequence
        local ss, sn = map_object(d, "sequence", desc.schema, desc.name)
        if s and s ~= json.null then
          local opts = string.format("AS %s INCREMENT BY %s MINVALUE %s MAXVALUE %s START WITH %s CACHE %s %s",
            s.type, s.increment, s.min, s.max, s.start, s.cache, s.cycle and "CYCLE" or "NO CYCLE")
          if info then
            if info.desc.name ~= desc.name then
              add({ "ALTER SEQUENCE " .. qq(info.target.schema, info.target.name) .. " RENAME TO " .. q(sn) })
            end
            add({ "ALTER SEQUENCE " .. qq(ss, sn) .. " " .. opts })
          else
            add({ "CREATE SEQUENCE IF NOT EXISTS " .. qq(ss, sn) .. " " .. opts })
          end
        end
        r.records[oid] = { desc = desc, cols = {}, target = { schema = ss, name = sn }, sequence = true }
      end
    elseif desc.partition and (desc.kind == "r" or desc.kind == "p") then
      local list, rec, warning = partition_sql(d, info, desc)
      if warning then
        r.warnings[#r.warnings + 1] = warning
      else
        r.selected = true
        add(list)
        r.records[oid] = rec
      end
      if rec and desc.kind == "p" then
        local more, recs, remove, warnings, stop = partitions_sql(d, desc, rec.target)
        add(more)
        for k, v in pairs(recs) do r.records[k] = v end
        for _, x in ipairs(remove) do r.remove[#r.remove + 1] = x end
        for _, w in ipairs(warnings) do r.warnings[#r.warnings + 1] = w end
        r.stop = r.stop or stop
      end
    elseif desc.kind == "p" and not info and parent_target(d, { oid = oid, schema = desc.schema, name = desc.name }) then
      -- a partitioned table the task started with: its partitions attached and detached
      r.selected = true
      local more, recs, remove, warnings, stop = partitions_sql(d, desc,
        parent_target(d, { oid = oid, schema = desc.schema, name = desc.name }))
      add(more)
      for k, v in pairs(recs) do r.records[k] = v end
      for _, x in ipairs(remove) do r.remove[#r.remove + 1] = x end
      for _, w in ipairs(warnings) do r.warnings[#r.warnings + 1] = w end
      r.stop = r.stop or stop
    elseif desc.kind ~= "r" and desc.kind ~= "p" then
      r.warnings[#r.warnings + 1] = string.format("%s.%s is not a plain table (kind %s): its DDL is not followed",
        desc.schema, desc.name, desc.kind)
    elseif info and info.sequence then
      -- (a relation oid cannot turn from a sequence into a table)
    elseif info and not info.ignored and not info.partition then
      r.selected = true
      local list, new = alter_table(d, info, desc)
      add(list)
      if desc.kind == "p" then
        local more, recs, remove, warnings, stop = partitions_sql(d, desc, new.target)
        add(more)
        for k, v in pairs(recs) do r.records[k] = v end
        for _, x in ipairs(remove) do r.remove[#r.remove + 1] = x end
        for _, w in ipairs(warnings) do r.warnings[#r.warnings + 1] = w end
        r.stop = r.stop or stop
      end
      r.records[oid] = new
      local e = M.entry(d, new, d.base[oid])
      e.replaces = { info.desc.schema, info.desc.name }
      r.targets[#r.targets + 1] = e
    elseif not selected(d, desc) then
      -- a table of a followed schema that the selection leaves out: its rows (it is in the
      -- publication) are never applied
      local rec = { desc = desc, cols = {}, target = { schema = desc.schema, name = desc.name }, ignored = true }
      r.records[oid] = rec
      local e = M.entry(d, rec)
      if info then e.replaces = { info.desc.schema, info.desc.name } end
      r.targets[#r.targets + 1] = e
    else
      r.selected = true
      if desc.had_rows then
        r.stop = string.format("table %s.%s joined the publication with rows already in it (it was created " ..
          "without a primary key or replica identity, or moved into a followed schema): those rows were never " ..
          "streamed", desc.schema, desc.name)
      elseif not desc.published then
        r.warnings[#r.warnings + 1] = string.format("new table %s.%s has no primary key or replica identity: it is " ..
          "created on the target but not streamed until it gets one (as precheck table_without_key says for " ..
          "existing tables); rows written before then are not migrated", desc.schema, desc.name)
      end
      if info and info.ignored then r.remove[#r.remove + 1] = { info.desc.schema, info.desc.name } end
      local list, new = create_table(d, desc)
      add(list)
      r.records[oid] = new
      r.targets[#r.targets + 1] = M.entry(d, new)
    end
  end
  for _, w in ipairs(d.warn) do r.warnings[#r.warnings + 1] = w end
  -- (a GRANT/REVOKE: the tables whose privileges changed)
  if r.tag == "GRANT" or r.tag == "REVOKE" then r.object = r.changed or "-" end
  -- commands on followed objects other than tables and sequences: views, functions, types
  for _, c in ipairs(msg.commands or {}) do
    if not val(c.table) and val(c.schema) then
      r.other = r.other or {}
      r.other[#r.other + 1] = c
    end
  end
  return r
end

-- The statement of a command pgtide does not describe (a view, function, type, trigger ...),
-- applied as the source ran it when that is safe: one statement, and no name in it that the
-- rename rules map to another (a table, column or schema of the task). Returns the text, or
-- nil and why not.
function M.verbatim(d, statement)
  if type(statement) ~= "string" then return nil, "the source did not say the statement" end
  local ok, tokens = pcall(sqlident.tokens, statement)
  if not ok then return nil, "it could not be read as SQL" end
  local last
  for i, t in ipairs(tokens) do
    if t.type ~= "space" and t.type ~= "comment" then last = i end
  end
  for i, t in ipairs(tokens) do
    if t.text == ";" and i ~= last then
      return nil, "it was sent with other statements in one query string (" .. short(statement) .. ")"
    end
  end
  if d.map then
    local words = {}
    for _, info in pairs(d.known) do
      if not info.ignored then
        if info.target.name ~= info.desc.name then words[info.desc.name] = true end
        if info.target.schema ~= info.desc.schema then words[info.desc.schema] = true end
        for name, target in pairs(info.cols or {}) do if target ~= name then words[name] = true end end
      end
    end
    for _, t in ipairs(tokens) do
      if t.name and words[t.name] then
        return nil, "it names " .. t.name .. ", which the rename rules map to another name on the target"
      end
    end
  end
  return (statement:gsub(";%s*$", ""))
end

-- The d table on.ddl sees.
local function hook_view(r, ev)
  return { tag = r.tag, object = r.object, statement = r.statement, mapped = table.concat(r.mapped, ";\n"),
           statements = r.mapped, lsn = ev.lsn, commit_lsn = ev.commit_lsn, selected = r.selected }
end

-- Handle one { kind = "ddl" } event: decide, then answer the stream. Raises a failure to stop.
function M.handle(d, s, ev)
  local ok, msg = pcall(json.decode, ev.content)
  if not ok or type(msg) ~= "table" then
    failure.raise("failed", string.format("a DDL message at LSN %s could not be read (%s): not written by this " ..
      "version of pgtide?", ev.lsn, tostring(msg)))
  end
  local pok, r = pcall(M.plan_message, d, msg)
  if not pok then
    failure.raise("failed", string.format("cannot follow the DDL at LSN %s (%s): %s\n  hint: make the same change " ..
      "on the target by hand and return \"skip\" for it from on.ddl, or set incremental.ddl = false",
      ev.lsn, short(msg.statement), tostring(r)))
  end
  for _, w in ipairs(r.warnings) do log.warning("ddl", w, { lsn = ev.lsn }) end
  -- views, functions, types, triggers ...: the source's statement as it was written
  if r.other then
    local verbatim, why = M.verbatim(d, msg.statement)
    r.selected = true
    if verbatim then
      -- An object of a schema the rename rules map elsewhere: its unqualified name (a qualified
      -- one was refused above) is made in the mapped schema, found first on the search_path.
      local schema = r.other[1].schema
      local mapped_schema = d.map and d.map:schema(schema) or schema
      if mapped_schema ~= schema then
        r.mapped[#r.mapped + 1] = "SET LOCAL search_path = " .. q(mapped_schema) .. ", public"
      end
      r.mapped[#r.mapped + 1] = verbatim
      if mapped_schema ~= schema then r.mapped[#r.mapped + 1] = "RESET search_path" end
    else
      r.stop = string.format("the %s command cannot be applied as written: %s", tostring(r.other[1].type), why)
    end
  end
  local decision = (#r.mapped > 0 or r.selected) and "apply" or "skip"
  local hook = d.task.on and d.task.on.ddl
  if hook and r.selected then
    local hok, res = pcall(hook, hook_view(r, ev))
    if not hok then
      failure.raise("failed", string.format("the on.ddl hook failed at LSN %s (%s): %s", ev.lsn,
        short(msg.statement), tostring(res)))
    end
    if res ~= nil then
      if res ~= "apply" and res ~= "skip" and res ~= "stop" then
        failure.raise("failed", string.format("on.ddl returned %s for the DDL at LSN %s: expected \"apply\", " ..
          "\"skip\" or \"stop\"", tostring(res), ev.lsn))
      end
      decision = res
    end
  end
  if decision == "apply" and r.stop then decision = "stop" end
  if decision == "stop" then
    failure.raise("failed", string.format("DDL replication stopped at LSN %s: %s\n  statement: %s\n  hint: %s",
      ev.lsn, r.stop or "on.ddl returned \"stop\"", short(msg.statement),
      "make the change on the target by hand and return \"skip\" for it from on.ddl, or release the task and migrate again"))
  end
  local reply = { applied = decision == "apply", statements = {}, targets = {}, remove = r.remove }
  -- An enum value added on the target can be used only once that transaction commits: the
  -- group ends with this source transaction, before a later one writes the new value.
  for _, c in ipairs(r.other or {}) do
    if c.tag == "ALTER TYPE" and decision == "apply" then reply.commit_after = true end
  end
  local context = string.format("applying the DDL at LSN %s (%s) on the target", ev.lsn, short(msg.statement))
  local fix = "\n  hint: fix the target by hand and return \"skip\" for this DDL from on.ddl, or set incremental.ddl = false"
  if decision == "apply" then
    -- The target's event triggers stay quiet for pgtide's DDL, as the schema phase keeps them
    -- (they are enabled after it): disabled and enabled again inside the same transaction, so
    -- no other session ever sees them off.
    local quiet = #r.mapped > 0 and d.event_triggers or {}
    for _, e in ipairs(quiet) do
      reply.statements[#reply.statements + 1] = { sql = "ALTER EVENT TRIGGER " .. q(e.name) .. " DISABLE",
        context = context .. ": keeping the target's event trigger " .. e.name .. " quiet" .. fix }
    end
    for _, sql in ipairs(r.mapped) do reply.statements[#reply.statements + 1] = { sql = sql, context = context ..
      ": " .. masked(sql) .. fix } end
    for _, e in ipairs(quiet) do
      local how = ({ O = "ENABLE", R = "ENABLE REPLICA", A = "ENABLE ALWAYS" })[e.enabled] or "ENABLE"
      reply.statements[#reply.statements + 1] = { sql = "ALTER EVENT TRIGGER " .. q(e.name) .. " " .. how,
        context = context .. ": enabling the target's event trigger " .. e.name .. " again" .. fix }
    end
    for _, e in ipairs(r.targets) do reply.targets[#reply.targets + 1] = e end
  else
    -- skipped: the target keeps what it has; the stream follows the source's new columns where
    -- the target has them (a new table's rows are ignored)
    for oid, rec in pairs(r.records) do
      if rec and not rec.partition then
        local old = d.known[oid]
        if old and not old.ignored then
          local cols = {}
          for _, c in ipairs(rec.desc.columns) do
            for _, oc in ipairs(old.desc.columns) do
              if oc.num == c.num and old.cols[oc.name] then cols[c.name] = old.cols[oc.name] end
            end
          end
          rec.cols, rec.target = cols, old.target
        elseif not rec.sequence then
          rec.ignored = true
        end
        local e = M.entry(d, rec, d.base[oid])
        if old then e.replaces = { old.desc.schema, old.desc.name } end
        reply.targets[#reply.targets + 1] = e
      end
    end
  end
  for oid, rec in pairs(r.records) do
    reply.statements[#reply.statements + 1] = { sql = persist_sql(d.task, oid, rec or nil),
                                                context = "recording DDL replication state on the target" }
  end
  s:reply(reply)
  for oid, rec in pairs(r.records) do d.known[oid] = rec or nil end
  if r.selected or #r.mapped > 0 then
    if decision == "apply" then d.applied = d.applied + 1 else d.skipped = d.skipped + 1 end
    d.recent[#d.recent + 1] = { lsn = ev.lsn, tag = r.tag, object = r.object, decision = decision }
    if #d.recent > 20 then table.remove(d.recent, 1) end
    log.write("info", "ddl", string.format("DDL at LSN %s %s: %s %s", ev.lsn, decision == "apply" and "applied" or
      "skipped", r.tag, tostring(r.object)), { lsn = ev.lsn, tag = r.tag, decision = decision })
  end
end

return M
