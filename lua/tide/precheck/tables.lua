-- Prechecks about the selected tables' contents and shape: keys that logical replication
-- needs, generated columns, unlogged and temporary tables, large objects.
local context = require "tide.precheck.context"
local privileges = require "tide.precheck.privileges"
local breathe = require("tide.wait").breathe

local M = {}
local quote = context.quote

local function incremental(ctx) return ctx.phases.incremental == true end
local function moves_data(ctx) return ctx.phases.full == true or ctx.phases.incremental == true end

local human_bytes = require("tide.units").human_bytes

-- The unique indexes that could serve as replica identity: valid, not partial, plain columns
-- only, every column NOT NULL. Returns table oid → first such index row.
local function identity_candidates(cat)
  local not_null = {}
  for relid, columns in pairs(cat.columns_by_relid) do
    for _, c in ipairs(columns) do
      if c.not_null then not_null[relid .. ":" .. c.name] = true end
    end
  end
  local out = {}
  for _, ix in ipairs(cat.indexes) do
    local def = ix.definition or ""
    if not out[ix.table_oid] and ix.valid ~= false and def:find("^CREATE UNIQUE INDEX") and not def:find(" WHERE ")
      and ix.columns and #ix.columns > 0 then
      local keys = def:match(" USING [%w_]+ (%b())")
      local n = 0
      if keys then
        n = 1
        local depth = 0
        for ch in keys:sub(2, -2):gmatch(".") do
          if ch == "(" then depth = depth + 1 elseif ch == ")" then depth = depth - 1
          elseif ch == "," and depth == 0 then n = n + 1 end
        end
      end
      local all_not_null = n == #ix.columns
      for _, name in ipairs(ix.columns) do
        if not not_null[ix.table_oid .. ":" .. name] then all_not_null = false end
      end
      if all_not_null then out[ix.table_oid] = ix end
    end
  end
  return out
end

M.checks = {
  {
    id = "table_without_key", title = "Tables whose updates and deletes cannot be replicated", grade = "fail",
    applies = incremental,
    run = function(ctx)
      local candidates
      local out = {}
      for _, tbl in ipairs(ctx.plan.tables) do
        breathe()
        local ri = tbl.replica_identity
        local why
        if ri == "n" then
          why = "REPLICA IDENTITY NOTHING"
        elseif ri == "d" and not tbl.key_columns then
          why = "no primary key and REPLICA IDENTITY DEFAULT"
        end
        if why and not tbl.unlogged then
          candidates = candidates or identity_candidates(ctx.catalog)
          local obj = ctx:table_object(tbl)
          local index = candidates[tbl.oid]
          local fix
          if index then
            fix = string.format("ALTER TABLE %s REPLICA IDENTITY USING INDEX %s;  (unique, NOT NULL columns %s)\n" ..
              "or ALTER TABLE %s REPLICA IDENTITY FULL;  (every column is the key: more WAL, slower apply)",
              tbl.key, quote(index.name), table.concat(index.columns, ", "), tbl.key)
          else
            fix = string.format("ALTER TABLE %s ADD PRIMARY KEY (...);\nor ALTER TABLE %s REPLICA IDENTITY FULL;  (every column is the key: more WAL, slower apply)",
              tbl.key, tbl.key)
          end
          out[#out + 1] = context.finding(obj,
            string.format("%s: its UPDATEs and DELETEs cannot be replicated, and once pgtide's publication includes it they fail on the source itself (\"does not have a replica identity\")", why),
            fix)
        end
      end
      return out
    end,
  },
  {
    id = "generated_columns", title = "Generated columns", grade = "info",
    applies = moves_data,
    run = function(ctx)
      local out = {}
      local existing = {}
      for _, e in ipairs(privileges.existing_target_tables(ctx)) do existing[e.obj] = e.tobj end
      for _, tbl in ipairs(ctx.plan.tables) do
        breathe()
        local obj = ctx:table_object(tbl)
        local generated = {}
        for _, c in ipairs(obj and obj.columns or {}) do
          if c.generated == "s" then generated[#generated + 1] = c end
        end
        if #generated > 0 then
          local names = {}
          for i, c in ipairs(generated) do names[i] = quote(c.name) end
          local tobj = existing[obj]
          local plain = {}
          if tobj then
            local target_columns = {}
            for _, c in ipairs(ctx.target_catalog.columns_by_relid[tobj.oid] or {}) do target_columns[c.name] = c end
            for _, c in ipairs(generated) do
              local tc = target_columns[c.target or c.name]
              if tc and tc.generated ~= "s" then plain[#plain + 1] = quote(tc.name) end
            end
          end
          if #plain > 0 then
            out[#out + 1] = context.finding(obj,
              string.format("generated column(s) %s are not copied, but on the existing target table they are plain column(s) %s: they stay NULL",
                table.concat(names, ", "), table.concat(plain, ", ")),
              "make them GENERATED ALWAYS AS (...) STORED on the target too", { grade = "fail" })
          else
            out[#out + 1] = context.finding(obj,
              string.format("generated column(s) %s are not copied%s: the target computes them from its own definition, so the expressions must give the same results there",
                table.concat(names, ", "), ctx.phases.incremental and ctx.versions.source < 180000
                  and " nor sent by logical replication" or ""))
          end
        end
      end
      return out
    end,
  },
  {
    id = "unlogged_tables", title = "Unlogged tables (not replicated)", grade = "warn",
    applies = incremental,
    run = function(ctx)
      local out = {}
      for _, tbl in ipairs(ctx.plan.tables) do
        breathe()
        if tbl.unlogged then
          out[#out + 1] = context.finding(ctx:table_object(tbl),
            "unlogged: its changes are not written to WAL, so the incremental migration never sees them; the target keeps the rows of the full load",
            "ALTER TABLE " .. tbl.key .. " SET LOGGED;  or leave it out (select.exclude)")
        end
      end
      return out
    end,
  },
  {
    id = "temporary_tables", title = "Temporary tables (never migrated)", grade = "info",
    run = function(ctx)
      local rows = ctx:query("source", [[
SELECT count(*) AS tables, count(DISTINCT c.relnamespace) AS sessions,
       string_agg(c.relname, ', ' ORDER BY c.relname) FILTER (WHERE c.relname IS NOT NULL) AS names
FROM pg_class c
WHERE c.relpersistence = 't' AND c.relkind IN ('r', 'p')
]])
      local r = rows[1]
      if r.tables == 0 then return {} end
      local names = r.names or ""
      if #names > 120 then names = names:sub(1, 117) .. "..." end
      return { { object = "source",
        message = string.format("%d temporary table(s) in %d session(s) (%s) live only in their sessions and are not migrated",
          r.tables, r.sessions, names),
        fix = "nothing, unless the application relies on them: make them regular tables" } }
    end,
  },
  {
    id = "large_objects", title = "Large objects", grade = "warn",
    applies = moves_data,
    run = function(ctx)
      local r = ctx:query("source", [[
SELECT count(*) AS objects, pg_relation_size('pg_catalog.pg_largeobject') AS bytes
FROM pg_largeobject_metadata
]])[1]
      if r.objects == 0 then return {} end
      local out = {}
      local size = string.format("%d large object(s) (%s)", r.objects, human_bytes(r.bytes))
      if ctx.phases.full and not ctx.task.full.large_objects then
        out[#out + 1] = { object = "large objects", message = size .. " are not copied: full.large_objects is off",
          fix = "full = { large_objects = true }" }
      end
      if ctx.phases.incremental then
        out[#out + 1] = { object = "large objects",
          message = size .. ": logical replication does not carry them, so later changes to large objects are not migrated",
          fix = "stop writing large objects before the load, or copy them again at cutover" }
      end
      return out
    end,
  },
}

return M
