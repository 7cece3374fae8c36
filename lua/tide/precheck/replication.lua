-- Prechecks for incremental migration on the source: the settings logical decoding needs, room
-- for one more slot and WAL sender, settings that put the slot at risk, transactions that
-- would block creating the slot, slots left behind, and FOR ALL TABLES publications.
local context = require "tide.precheck.context"
local info = require "tide.precheck.info"
local breathe = require("tide.wait").breathe

local M = {}
local quote = context.quote
local human_bytes = require("tide.units").human_bytes

local function incremental(ctx) return ctx.phases.incremental == true end

local function literal(s) return "'" .. tostring(s):gsub("'", "''") .. "'" end

local SLOTS = [[
SELECT s.slot_name AS name, s.slot_type AS type, s.database, s.active, s.plugin,
       to_jsonb(s) ->> 'wal_status' AS wal_status,
       CASE WHEN s.restart_lsn IS NOT NULL AND NOT pg_is_in_recovery()
            THEN pg_wal_lsn_diff(pg_current_wal_lsn(), s.restart_lsn)::bigint END AS retained_bytes
FROM pg_replication_slots s
ORDER BY s.slot_name
]]

local function slots(ctx)
  return ctx:once("slots", function() return ctx:query("source", SLOTS) end)
end


-- The selected tables with a row filter (logged ones, that `keep` lets in) and every column of
-- each (generated ones too: what a filter may read), keyed "schema\0name".
local function filtered_tables(ctx, keep)
  local filtered, pairs_list = {}, {}
  for _, tbl in ipairs(ctx.plan.tables) do
    breathe()
    if tbl.row_filter and not tbl.unlogged and keep(tbl) then
      filtered[#filtered + 1] = tbl
      pairs_list[#pairs_list + 1] = { tbl.source.schema, tbl.source.name }
    end
  end
  if #filtered == 0 then return filtered, {} end
  local _, all = require("tide.cdc.objects").catalog_columns(ctx.source, pairs_list)
  return filtered, all
end

local function restart_fix(name, value)
  return string.format("ALTER SYSTEM SET %s = %s;  then restart the source server", name, tostring(value))
end

M.checks = {
  {
    id = "wal_level", title = "wal_level = logical on the source", grade = "fail",
    applies = incremental,
    run = function(ctx)
      local level = ctx:source_server().settings.wal_level
      if level == "logical" then return {} end
      return { { object = "source", message = string.format("wal_level is %s: logical decoding needs wal_level = logical", tostring(level)),
                 fix = restart_fix("wal_level", "logical") } }
    end,
  },
  {
    id = "replication_slots", title = "A free replication slot on the source", grade = "fail",
    applies = incremental,
    run = function(ctx)
      local s = ctx:source_server()
      for _, slot in ipairs(slots(ctx)) do
        if slot.name == ctx.names.slot then return {} end -- ours exists already: resumed
      end
      local max = s.settings.max_replication_slots or 0
      local free = max - s.slots_used
      if free >= 1 then return {} end
      return { { object = "source",
        message = string.format("max_replication_slots = %d and %d slot(s) exist: no slot is free for this task", max, s.slots_used),
        fix = restart_fix("max_replication_slots", s.slots_used + 1) .. "  (or drop an unused slot: see inactive_slots)" } }
    end,
  },
  {
    id = "wal_senders", title = "A free WAL sender on the source", grade = "fail",
    applies = incremental,
    run = function(ctx)
      local s = ctx:source_server()
      local max = s.settings.max_wal_senders or 0
      local free = max - s.wal_senders_used
      if free >= 1 then return {} end
      return { { object = "source",
        message = string.format("max_wal_senders = %d and %d WAL sender(s) run: the change stream cannot start", max, s.wal_senders_used),
        fix = restart_fix("max_wal_senders", s.wal_senders_used + 2) } }
    end,
  },
  {
    id = "slot_wal_keep_size", title = "max_slot_wal_keep_size leaves the slot room", grade = "warn",
    applies = incremental,
    run = function(ctx)
      local keep = ctx:source_server().settings.max_slot_wal_keep_size
      if keep == nil then return {} end -- before PostgreSQL 13: no limit exists
      if keep < 0 then
        return { { object = "source", grade = "info",
          message = "max_slot_wal_keep_size = -1 (no limit): a slot left behind keeps WAL until the disk fills; release the task's slot (pgtide release) if the task is abandoned",
          fix = "ALTER SYSTEM SET max_slot_wal_keep_size = '50GB'; SELECT pg_reload_conf();  (sized for your disk)" } }
      end
      -- The slot must hold the WAL written while the full load runs (the stream starts after
      -- it): the source's average WAL rate times the load's estimated duration, at least 1 GB.
      local needed, basis = 1024 ^ 3, "1 GB"
      if ctx.versions.source >= 140000 and ctx.phases.full then
        local r = ctx:query("source", [[
SELECT w.wal_bytes::float8 / greatest(extract(epoch FROM now() - coalesce(w.stats_reset, pg_postmaster_start_time())), 1)
       AS bytes_per_second
FROM pg_stat_wal w
]])[1]
        local e = info.estimate(ctx)
        local during = (r and r.bytes_per_second or 0) * e.seconds * 2
        if during > needed then
          needed = during
          basis = string.format("twice the WAL written during the estimated full load (%s at %s/s)",
            info.human_seconds(e.seconds), human_bytes(r.bytes_per_second))
        end
      end
      if keep >= needed then return {} end
      return { { object = "source",
        message = string.format("max_slot_wal_keep_size = %s: when the slot falls behind by more, the server invalidates it and the task must start over; less than %s",
          human_bytes(keep), basis),
        fix = string.format("ALTER SYSTEM SET max_slot_wal_keep_size = '%dMB'; SELECT pg_reload_conf();",
          math.ceil(needed / 1024 ^ 2)) } }
    end,
  },
  {
    id = "wal_sender_timeout", title = "wal_sender_timeout", grade = "warn",
    applies = incremental,
    run = function(ctx)
      local timeout = ctx:source_server().settings.wal_sender_timeout
      if timeout == nil or timeout >= 10 then return {} end
      local message = timeout == 0
        and "wal_sender_timeout = 0: a WAL sender whose client vanished (network cut) keeps the slot marked active until TCP notices, and a new stream cannot take the slot meanwhile"
        or string.format("wal_sender_timeout = %gs: a pause longer than that (a big transaction applied, a slow network) ends the stream", timeout)
      return { { object = "source", message = message,
                 fix = "ALTER SYSTEM SET wal_sender_timeout = '60s'; SELECT pg_reload_conf();" } }
    end,
  },
  {
    id = "open_transactions", title = "Long-running and idle-in-transaction sessions on the source", grade = "warn",
    applies = incremental,
    run = function(ctx)
      local rows = ctx:query("source", [[
SELECT a.pid, a.datname AS database, a.usename AS user_name, a.application_name, a.state,
       a.backend_xid IS NOT NULL AS has_xid,
       extract(epoch FROM now() - a.xact_start)::float8 AS seconds
FROM pg_stat_activity a
WHERE a.backend_type = 'client backend' AND a.pid <> pg_backend_pid() AND a.xact_start IS NOT NULL
  AND now() - a.xact_start >= $1 * interval '1 second'
ORDER BY a.xact_start
]], ctx.settings.long_transaction)
      local out = {}
      for _, r in ipairs(rows) do
        local effect = r.has_xid
          and "creating the replication slot waits until it ends"
          or "it holds back vacuum; the slot does not wait for it unless it writes"
        out[#out + 1] = { object = "pid " .. r.pid,
          message = string.format("session %d (user %s, database %s%s) has been in a transaction for %s (%s): %s",
            r.pid, r.user_name or "?", r.database or "?",
            (r.application_name or "") ~= "" and (", application " .. r.application_name) or "",
            info.human_seconds(r.seconds or 0), r.state or "?", effect),
          fix = string.format("end it in the application, or SELECT pg_terminate_backend(%d);", r.pid) }
      end
      local s = ctx:source_server()
      if not (s.superuser or s.read_all_stats) then
        out[#out + 1] = { object = "role " .. quote(s.user_name), grade = "info",
          message = "the source role sees only its own sessions' transactions",
          fix = "GRANT pg_read_all_stats TO " .. quote(s.user_name) .. ";" }
      end
      return out
    end,
  },
  {
    id = "prepared_transactions", title = "Prepared transactions on the source", grade = "warn",
    applies = incremental,
    run = function(ctx)
      local rows = ctx:query("source", [[
SELECT p.gid, p.database, p.owner, extract(epoch FROM now() - p.prepared)::float8 AS seconds
FROM pg_prepared_xacts p
ORDER BY p.prepared
]])
      local out = {}
      for _, r in ipairs(rows) do
        out[#out + 1] = { object = "prepared transaction " .. literal(r.gid),
          message = string.format("prepared %s ago by %s in database %s: creating the replication slot waits until it is committed or rolled back",
            info.human_seconds(r.seconds or 0), r.owner or "?", r.database or "?"),
          fix = string.format("COMMIT PREPARED %s;  or ROLLBACK PREPARED %s;  (in database %s, once its transaction manager agrees)",
            literal(r.gid), literal(r.gid), quote(r.database or "?")) }
      end
      return out
    end,
  },
  {
    id = "inactive_slots", title = "Inactive replication slots retaining WAL", grade = "warn",
    run = function(ctx)
      local out = {}
      for _, slot in ipairs(slots(ctx)) do
        if not slot.active and slot.name ~= ctx.names.slot then
          out[#out + 1] = { object = "slot " .. slot.name,
            message = string.format("%s slot%s%s is inactive and keeps %s of WAL on the source%s (it also takes one of max_replication_slots)",
              slot.type or "?", slot.plugin and (" (" .. slot.plugin .. ")") or "",
              slot.database and (" of database " .. quote(slot.database)) or "",
              slot.retained_bytes and human_bytes(slot.retained_bytes) or "an unknown amount",
              slot.wal_status and (", wal_status " .. slot.wal_status) or ""),
            fix = string.format("SELECT pg_drop_replication_slot(%s);  if nothing uses it any more", literal(slot.name)) }
        end
      end
      return out
    end,
  },
  {
    -- The filters a stream cannot honour: pgtide applies a filter the publication cannot carry
    -- (tide.cdc.objects.filter_mode), but it needs a unique key to find the rows, and a
    -- partition's changes are published through its root, with the root's filter.
    id = "row_filter_stream", title = "Row filters the change stream can apply", grade = "fail",
    applies = function(ctx) return incremental(ctx) and #ctx.plan.tables > 0 end,
    run = function(ctx)
      local objects = require "tide.cdc.objects"
      local filtered, all = filtered_tables(ctx, function() return true end)
      local out = {}
      for _, tbl in ipairs(filtered) do
        local root = tbl.parent and ctx.plan.by_key and ctx.plan.by_key["table:" .. tbl.parent]
        if root and not tbl.own_filter then
          -- the partitioned table's filter: the stream applies it to the root's changes
          if not tbl.key_columns and not objects.keyless(tbl) then
            out[#out + 1] = context.finding(ctx:table_object(tbl),
              string.format("row filter %q of %s: pgtide applies a partitioned table's filter to its changes by " ..
                "key, and partition %s has no unique key", tbl.root_filter, tbl.parent, tbl.key),
              string.format("give %s a primary key (on the partitioned table), or leave it out of the incremental " ..
                "phase (select)", tbl.parent))
          end
        elseif root then
          out[#out + 1] = context.finding(ctx:table_object(tbl),
            string.format("row filter %q is on a partition of %s, whose changes the stream receives through the " ..
              "partitioned table: the filter would hold for the full load only", tbl.own_filter, tbl.parent),
            string.format("put the filter on the partitioned table (select.rows[%q]), or leave the partition out",
              tbl.parent))
        elseif objects.filter_mode(tbl, all[tbl.source.schema .. "\0" .. tbl.source.name], ctx.versions.source) ==
            "pgtide" and not tbl.key_columns and not objects.keyless(tbl) then
          out[#out + 1] = context.finding(ctx:table_object(tbl),
            string.format("row filter %q: the publication cannot apply it (%s), and pgtide applies it only to tables " ..
              "with a unique key, which %s has not", tbl.row_filter, ctx.versions.source < 150000 and
              string.format("the source runs PostgreSQL %d; publications filter rows from 15 on",
                ctx.versions.source // 10000) or "it reads columns outside the replica identity", tbl.key),
            string.format("give %s a primary key, or leave it out of the incremental phase (select)", tbl.key))
        end
      end
      return out
    end,
  },
  {
    -- Filters pgtide applies itself: what that means for the stream (docs/select-and-rename.md).
    id = "row_filter_applied", title = "Row filters pgtide applies itself while streaming", grade = "warn",
    applies = function(ctx) return incremental(ctx) and #ctx.plan.tables > 0 end,
    run = function(ctx)
      local objects = require "tide.cdc.objects"
      local filtered, all = filtered_tables(ctx, function(tbl) return not tbl.parent and tbl.key_columns end)
      local out = {}
      for _, tbl in ipairs(filtered) do
        local names = all[tbl.source.schema .. "\0" .. tbl.source.name]
        if objects.filter_mode(tbl, names, ctx.versions.source) == "pgtide" then
          local bad = objects.filter_problem(tbl, names)
          out[#out + 1] = context.finding(ctx:table_object(tbl),
            string.format("row filter %q %s: the source publishes every change of %s, and pgtide evaluates the " ..
              "filter on the target for each one (an update into the filter inserts the row, one out of it deletes " ..
              "it). A row that an update moves into the filter while a large out-of-line value of it is unchanged " ..
              "cannot be completed, and stops the task", tbl.row_filter,
              #bad > 0 and ("reads column(s) " .. table.concat(bad, ", ") .. ", outside the replica identity")
                or string.format("cannot go into a publication on PostgreSQL %d", ctx.versions.source // 10000),
              tbl.key),
            string.format("nothing to do if that is acceptable; ALTER TABLE %s REPLICA IDENTITY FULL on the source " ..
              "lets the publication apply the filter instead (more WAL)", tbl.key))
        end
      end
      return out
    end,
  },
  {
    id = "all_tables_publication", title = "FOR ALL TABLES publications and tables without a replica identity", grade = "warn",
    applies = incremental,
    run = function(ctx)
      local pubs = ctx:query("source", [[
SELECT p.pubname AS name, p.pubupdate AS updates, p.pubdelete AS deletes
FROM pg_publication p
WHERE p.puballtables AND (p.pubupdate OR p.pubdelete)
ORDER BY p.pubname
]])
      if #pubs == 0 then return {} end
      local model = ctx.plan.model
      local has_pk = {}
      for _, obj in ipairs(model.objects) do
        if obj.kind == "constraint" and obj.row.type == "p" and obj.owner then has_pk[obj.owner] = true end
      end
      local keyless = {}
      for _, obj in ipairs(model.objects) do
        local row = obj.row
        if obj.kind == "table" and row.relkind == "r" and not row.unlogged
          and (row.replica_identity == "n" or (row.replica_identity == "d" and not has_pk[obj])) then
          keyless[#keyless + 1] = obj.ident
        end
      end
      if #keyless == 0 then return {} end
      local out = {}
      local shown = table.concat(keyless, ", ", 1, math.min(#keyless, 10)) ..
        (#keyless > 10 and string.format(" and %d more", #keyless - 10) or "")
      for _, p in ipairs(pubs) do
        out[#out + 1] = { object = "publication " .. quote(p.name),
          message = string.format("publication %s is FOR ALL TABLES and publishes %s: UPDATE and DELETE fail on the source for every table without a replica identity: %s",
            quote(p.name), (p.updates and p.deletes) and "updates and deletes" or (p.updates and "updates" or "deletes"), shown),
          fix = string.format("give those tables a primary key or REPLICA IDENTITY FULL, or ALTER PUBLICATION %s SET (publish = 'insert, truncate'), or drop it if nothing uses it",
            quote(p.name)) }
      end
      return out
    end,
  },
  {
    -- DDL replication (tide.cdc.ddl): the task's event trigger on the source
    id = "ddl_event_trigger", title = "The source role may create the DDL event trigger", grade = "fail",
    applies = function(ctx) return incremental(ctx) and (ctx.task.incremental or {}).ddl ~= false end,
    run = function(ctx)
      if ctx:source_server().superuser then return {} end
      return { { object = "source",
        message = "DDL replication needs an event trigger on the source, and creating one needs a superuser (on " ..
                  "a managed service, its equivalent role): the source role is not one",
        fix = "run the task as a superuser of the source, or set incremental.ddl = false (then DDL on the source " ..
              "stops the stream with a message naming the change)" } }
    end,
  },
}

return M
