-- Prechecks about the objects: what the target already has, what the selection leaves out
-- that selected objects need, extensions the target cannot install, and triggers that would
-- fire while rows are loaded or changes applied. Most read the plan alone.
local context = require "tide.precheck.context"
local privileges = require "tide.precheck.privileges"
local breathe = require("tide.wait").breathe
local id_of = require("tide.plan.ids").id

local M = {}
local quote = context.quote

local function moves_data(ctx) return ctx.phases.full == true or ctx.phases.incremental == true end

-- Target tables (existing ones the load writes into) that hold rows: one statement per 200
-- tables, each a cheap EXISTS, so no statement holds thousands of locks.
local function tables_with_rows(ctx, entries)
  local found = {}
  for first = 1, #entries, 200 do
    local parts = {}
    for i = first, math.min(#entries, first + 199) do
      local t = entries[i].tobj
      parts[#parts + 1] = string.format("SELECT %d AS i WHERE EXISTS (SELECT FROM ONLY %s.%s)", i, quote(t.schema), quote(t.name))
    end
    for _, r in ipairs(ctx:query("target", table.concat(parts, "\nUNION ALL\n"))) do found[r.i] = true end
  end
  return found
end

-- Which of the plan's missing dependencies are foreign keys.
local function is_foreign_key(ctx, entry)
  local obj = ctx:object(entry.object)
  return obj ~= nil and obj.kind == "constraint" and obj.row.type == "f", obj
end

local function missing_findings(ctx, want_fkeys)
  local out = {}
  for _, entry in ipairs(ctx.plan.missing) do
    local fkey, obj = is_foreign_key(ctx, entry)
    if fkey == want_fkeys then
      local needs = ctx:object(entry.needs)
      local what = needs and require("tide.plan.objects").describe(needs) or entry.needs
      local f = context.finding(obj, nil, nil)
      f.object = entry.piece or (obj and obj.ident) or entry.object
      if entry.action == "dropped" then
        f.grade = "warn"
        f.message = string.format("%s is left out, as schema.dependents = \"drop\": it needs %s, which is not selected (%s)%s",
          entry.piece or entry.object, what, entry.reason or "left out",
          fkey and "; the target does not enforce this relationship" or "")
        f.fix = "select " .. what .. " too, if the target needs it"
      else
        f.message = string.format("%s needs %s, which is not selected (%s)%s", entry.piece or entry.object, what,
          entry.reason or "left out", fkey and ": its rows would reference rows the target does not have" or "")
        f.fix = "select " .. what .. " too (select.include), or set schema.dependents = \"drop\" to leave out " ..
          (entry.piece or entry.object)
      end
      out[#out + 1] = f
    end
  end
  return out
end

M.checks = {
  {
    -- What the plan refuses (on.row, on.route, select.rows_follow, ...): `pgtide run` stops on
    -- these before anything else; each message names the fix.
    id = "plan_errors", title = "Errors in the plan", grade = "fail",
    applies = function(ctx) return ctx.plan ~= nil end,
    run = function(ctx)
      local out = {}
      for _, e in ipairs(ctx.plan.errors or {}) do out[#out + 1] = { message = e.message } end
      return out
    end,
  },
  {
    id = "existing_objects", title = "Objects that already exist on the target", grade = "fail",
    applies = function(ctx) return ctx.phases.schema == true end,
    run = function(ctx)
      local plan, out = ctx.plan, {}
      if ctx.resumed then
        local n = #plan.conflicts
        for _, e in ipairs(plan.existing) do if e.action ~= "conflict" and e.action ~= "used" then n = n + 1 end end
        if n > 0 then
          out[1] = { grade = "info",
            message = string.format("resumed run: %d object(s) on the target were created by an earlier run of task %s and are used as they are",
              n, ctx.task.name) }
        end
        return out
      end
      local policy = ctx.task.schema.existing or "error"
      for _, c in ipairs(plan.conflicts) do
        local f = context.finding(ctx:object(c.key), c.message)
        f.object = c.kind .. " " .. (c.target or c.key)
        f.fix = policy == "skip"
          and "drop it on the target, or make it identical, or set schema.existing = \"drop\""
          or "drop it on the target, or set schema.existing = \"skip\" (keep identical objects) or \"drop\" (replace them)"
        out[#out + 1] = f
      end
      for _, e in ipairs(plan.existing) do
        if e.action and e.action:find("^dropped") then
          local f = context.finding(ctx:object(e.key),
            string.format("exists on the target and is %s (schema.existing = \"drop\")%s", e.action,
              e.kind == "table" and ": its rows on the target are lost" or ""))
          f.object, f.grade = e.kind .. " " .. (e.target or e.key), "warn"
          f.fix = "set schema.existing = \"skip\" or \"error\" to keep it"
          out[#out + 1] = f
        end
      end
      return out
    end,
  },
  {
    id = "target_table_missing", title = "Tables the load needs on the target", grade = "fail",
    applies = function(ctx) return not ctx.phases.schema and moves_data(ctx) end,
    run = function(ctx)
      local out = {}
      for _, tbl in ipairs(ctx.plan.tables) do
        breathe()
        local obj = ctx:table_object(tbl)
        if obj and not obj.existing_target then
          out[#out + 1] = context.finding(obj,
            string.format("the target has no table %s, and \"schema\" is not in migrate", context.target_ident(obj)),
            "add \"schema\" to migrate, create the table on the target, or map it to an existing one (rename)")
        end
      end
      return out
    end,
  },
  {
    id = "target_not_empty", title = "Existing target tables that already hold rows", grade = "fail",
    applies = function(ctx) return ctx.phases.full == true end,
    run = function(ctx)
      if ctx.resumed then return {} end
      local entries = privileges.existing_target_tables(ctx)
      if #entries == 0 then return {} end
      local access = privileges.target_tables(ctx)
      local probe, out = {}, {}
      for _, e in ipairs(entries) do
        local r = access[e.tobj.oid]
        if r and r.can_select then
          probe[#probe + 1] = e
        elseif r then
          out[#out + 1] = context.finding(e.obj,
            "the target role may not SELECT from the target table " .. context.target_ident(e.obj) ..
              ": whether it holds rows is unknown", "GRANT SELECT ON " .. context.target_ident(e.obj) .. " TO ...;",
            { grade = "warn" })
        end
      end
      local found = tables_with_rows(ctx, probe)
      local policy = ctx.task.full.existing or "error"
      for i, e in ipairs(probe) do
        if found[i] then
          local name = context.target_ident(e.obj)
          local f = context.finding(e.obj, nil, nil)
          if policy == "truncate" then
            f.grade = "warn"
            f.message = "the target table " .. name .. " holds rows; full.existing = \"truncate\" deletes them before the load"
            f.fix = "nothing, if that is intended"
          elseif policy == "append" then
            f.grade = "warn"
            f.message = "the target table " .. name .. " holds rows; full.existing = \"append\" adds the source's rows to them (duplicate keys stop the load)"
            f.fix = "nothing, if that is intended"
          else
            f.message = "the target table " .. name .. " already holds rows (full.existing = \"error\")"
            f.fix = "TRUNCATE " .. name .. ";  or set full = { existing = \"truncate\" } or \"append\""
          end
          out[#out + 1] = f
        end
      end
      return out
    end,
  },
  {
    id = "foreign_key_parent_unselected", title = "Foreign keys whose referenced table is not selected", grade = "fail",
    run = function(ctx) return missing_findings(ctx, true) end,
  },
  {
    -- Row filters and foreign keys: the constraint is added after the data, so child rows whose
    -- parent row a filter left out make it fail after the whole copy. Counted on the source
    -- now, with both filters as the full load applies them (tables, not partitioned ones).
    id = "foreign_key_filtered", title = "Foreign keys between tables that row filters cut apart", grade = "fail",
    applies = function(ctx) return ctx.phases.full == true and ctx.phases.schema == true end,
    run = function(ctx)
      -- Without a row filter nothing is cut apart (and the graph of foreign keys below is not
      -- made: 33 MB at 100,000 tables).
      local filtered = false
      for _, t in ipairs(ctx.plan.tables) do
        breathe()
        if t.row_filter then filtered = true; break end
      end
      if not filtered then return {} end
      local model, by_table = ctx.plan.model, {}
      for _, t in ipairs(ctx.plan.tables) do breathe(); by_table[t.oid] = t end
      local out = {}
      for _, obj in ipairs(ctx.plan.objects) do
        breathe()
        local row = obj.row
        if obj.kind == "constraint" and row.type == "f" and not obj.keep_existing then
          local child, parent = by_table[row.table_oid], by_table[row.referenced_oid]
          local pobj = model.exact[id_of("pg_class", row.referenced_oid)]
          if child and parent and pobj and (child.row_filter or parent.row_filter) and row.columns
            and row.ref_columns and #row.columns == #row.ref_columns then
            -- No alias for the child, and none for the parent unless it is the child itself: a
            -- filter may name columns by schema and table (select.rows_follow's do).
            local match, notnull = {}, {}
            local cref = quote(child.source.schema) .. "." .. quote(child.source.name)
            local pref = child == parent and "p" or (quote(parent.source.schema) .. "." .. quote(parent.source.name))
            for i, c in ipairs(row.columns) do
              match[i] = pref .. "." .. quote(row.ref_columns[i]) .. " = " .. cref .. "." .. quote(c)
              notnull[i] = cref .. "." .. quote(c) .. " IS NOT NULL"
            end
            local sql = string.format(
              "SELECT count(*) AS n FROM ONLY %s WHERE (%s) AND %s AND NOT EXISTS " ..
              "(SELECT FROM ONLY %s.%s%s WHERE %s AND (%s))",
              cref, child.row_filter or "true", table.concat(notnull, " AND "), quote(parent.source.schema),
              quote(parent.source.name), child == parent and " p" or "", table.concat(match, " AND "),
              parent.row_filter or "true")
            local ok, rows = pcall(ctx.query, ctx, "source", sql)
            local n = ok and rows[1] and rows[1].n or 0
            if n > 0 then
              local keep = string.format("%s IN (SELECT %s FROM %s WHERE %s)",
                #row.columns == 1 and quote(row.columns[1]) or ("(" .. table.concat(row.columns, ", ") .. ")"),
                table.concat(row.ref_columns, ", "), parent.key, parent.row_filter or "true")
              out[#out + 1] = context.finding(obj,
                string.format("foreign key %s of %s references %s, and the row filter(s) leave out the %s row(s) " ..
                  "%d row(s) of %s point to (counted on the source now): adding the constraint after the copy would fail",
                  quote(row.name), child.key, parent.key, parent.key, n, child.key),
                string.format("select.rows_follow = \"foreign_keys\" (derives it), or select.rows[%q] = %q  (or " ..
                    "leave the foreign key out: select.where)", child.key,
                  child.row_filter and ("(" .. child.row_filter .. ") AND " .. keep) or keep))
            end
          end
        end
      end
      -- Foreign keys to and of partitioned tables: the referenced row is in one of the
      -- partitioned table's leaves, each with its own filter (tide.plan.follow).
      for _, r in ipairs(require("tide.plan.follow").partitioned_references(ctx.plan)) do
        local cref = quote(r.child.source.schema) .. "." .. quote(r.child.source.name)
        local ok, rows = pcall(ctx.query, ctx, "source", string.format(
          "SELECT count(*) AS n FROM ONLY %s WHERE (%s) AND NOT %s", cref, r.child.row_filter or "true", r.condition))
        local n = ok and rows[1] and rows[1].n or 0
        if n > 0 then
          out[#out + 1] = context.finding(ctx.plan.by_key["table:" .. r.child.key] or { key = "table:" .. r.child.key },
            string.format("foreign key %s of %s references the partitioned table %s, and the row filters of its " ..
              "partitions leave out the rows %d row(s) of %s point to (counted on the source now): adding the " ..
              "constraint after the copy would fail", quote(r.name), r.child.key, r.parent_key, n, r.child.key),
            string.format("select.rows_follow = \"foreign_keys\" (derives %s's filter), or leave the foreign key " ..
              "out (select.where)", r.child.key))
        end
      end
      return out
    end,
  },
  {
    id = "dependency_unselected", title = "Views, functions and other objects that need unselected objects", grade = "fail",
    run = function(ctx) return missing_findings(ctx, false) end,
  },
  {
    id = "extension_unavailable", title = "Extensions the target can install", grade = "fail",
    applies = function(ctx) return ctx.phases.schema == true end,
    run = function(ctx)
      local wanted, names = {}, {}
      for _, obj in ipairs(ctx.plan.objects) do
        breathe()
        if obj.kind == "extension" and not obj.keep_existing then
          wanted[#wanted + 1] = obj
          names[#names + 1] = obj.name
        end
      end
      if #wanted == 0 then return {} end
      local rows = ctx:query("target", [[
SELECT v.name, v.version, v.superuser, coalesce((to_jsonb(v) ->> 'trusted')::boolean, false) AS trusted,
       e.default_version
FROM pg_available_extension_versions v
JOIN pg_available_extensions e ON e.name = v.name
WHERE v.name = ANY($1::text[])
ORDER BY v.name, v.version
]], names)
      local t = ctx:target_server()
      local versions = {}
      for _, r in ipairs(rows) do
        versions[r.name] = versions[r.name] or { list = {}, by_version = {}, default = r.default_version }
        table.insert(versions[r.name].list, r.version)
        versions[r.name].by_version[r.version] = r
      end
      local out = {}
      for _, obj in ipairs(wanted) do
        local v = versions[obj.name]
        local source_version = obj.row.version
        if not v then
          local f = context.finding(obj,
            string.format("extension %s (version %s on the source) is not available on the target server (no control file in pg_available_extensions)",
              quote(obj.name), source_version or "?"),
            "install the extension's package on the target server (e.g. postgresql-<major>-" .. obj.name ..
              "), or leave the extension and what uses it out (select.kinds / exclude)")
          f.object, f.name = "extension " .. quote(obj.name), nil
          out[#out + 1] = f
        else
          local chosen = v.by_version[source_version] or v.by_version[v.default]
          if not v.by_version[source_version] then
            local f = context.finding(obj,
              string.format("extension %s: the source has version %s; the target offers %s (default %s)",
                quote(obj.name), source_version or "?", table.concat(v.list, ", "), v.default or "?"),
              "install the same version on the target, or check that the default one behaves the same")
            f.object, f.name, f.grade = "extension " .. quote(obj.name), nil, "warn"
            out[#out + 1] = f
          end
          if chosen and not t.superuser and chosen.superuser and not chosen.trusted then
            local f = context.finding(obj,
              string.format("extension %s is not trusted: only a superuser can create it on the target, and the target role %s is not one",
                quote(obj.name), quote(t.user_name)),
              "CREATE EXTENSION " .. quote(obj.name) .. ";  on the target as a superuser before the migration")
            f.object, f.name = "extension " .. quote(obj.name), nil
            out[#out + 1] = f
          end
        end
      end
      return out
    end,
  },
  {
    id = "target_triggers", title = "Triggers that fire while rows are loaded or changes applied", grade = "warn",
    applies = moves_data,
    run = function(ctx)
      local replica_ok = ctx:target_server().replication_role_allowed
      local function fires(enabled)
        return enabled == "A" or (enabled == "R" and replica_ok) or (enabled == "O" and not replica_ok)
      end
      local WORD = { O = "enabled", A = "ENABLE ALWAYS", R = "ENABLE REPLICA" }
      local out = {}
      local on_table = {}
      for _, tobj in ipairs(ctx.plan.target_model.objects) do
        if tobj.kind == "trigger" and tobj.owner then
          on_table[tobj.owner] = on_table[tobj.owner] or {}
          table.insert(on_table[tobj.owner], tobj)
        end
      end
      for _, e in ipairs(privileges.existing_target_tables(ctx)) do
        for _, trig in ipairs(on_table[e.tobj] or {}) do
          if fires(trig.row.enabled) then
            local name = context.target_ident(e.obj)
            out[#out + 1] = context.finding(e.obj,
              string.format("trigger %s on the target table %s (%s) fires for every row pgtide writes%s",
                quote(trig.name), name, WORD[trig.row.enabled] or trig.row.enabled,
                replica_ok and "" or " (the target role cannot set session_replication_role = replica)"),
              string.format("ALTER TABLE %s DISABLE TRIGGER %s;  (enable it again after the migration)", name, quote(trig.name)))
          end
        end
      end
      if ctx.phases.incremental and ctx.phases.schema then
        for _, obj in ipairs(ctx.plan.objects) do
          breathe()
          if obj.kind == "trigger" and not obj.keep_existing and obj.owner and fires(obj.row.enabled) then
            out[#out + 1] = context.finding(obj,
              string.format("trigger %s (%s) is created on %s after its data and fires for every change the incremental migration applies%s",
                quote(obj.name), WORD[obj.row.enabled] or obj.row.enabled, context.target_ident(obj.owner),
                replica_ok and "" or " (the target role cannot set session_replication_role = replica)"),
              obj.row.enabled == "A"
                and "ALTER TABLE " .. obj.owner.ident .. " ENABLE TRIGGER " .. quote(obj.name) .. ";  on the source (ALWAYS fires even for replicated changes), or accept it"
                or "grant the target role SET on session_replication_role (see target_replication_role)")
          end
        end
      end
      return out
    end,
  },
}

return M
