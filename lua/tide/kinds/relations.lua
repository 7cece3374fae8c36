-- Kinds: sequence, table, foreign table, view, materialized view.
local ddl = require "tide.ddl"
local table_ddl = require "tide.ddl.table"

local function relation_identities(row)
  local list = {}
  if row.type_oid and row.type_oid ~= 0 then list[#list + 1] = { "pg_type", row.type_oid } end
  if row.array_oid and row.array_oid ~= 0 then list[#list + 1] = { "pg_type", row.array_oid } end
  if row.rule_oid then list[#list + 1] = { "pg_rewrite", row.rule_oid } end
  return list
end

-- A sequence behind an identity column is part of its table (CREATE TABLE makes it); one
-- OWNED BY a column is its own object, tied to the column once the table exists.
local sequence = {
  name = "sequence", list = "sequences", class = "pg_class", phase = "pre", rank = 70,
  space = "relation",
  inline = function(row)
    if row.owned_deptype == "i" then return "pg_class", row.owned_table_oid end
  end,
  owned = function(obj) return obj.row.owned_deptype == nil end,
  create = function(ctx, obj)
    local row = obj.row
    local steps = { {
      sql = "CREATE " .. (row.unlogged and "UNLOGGED " or "") .. "SEQUENCE " .. ddl.target(obj)
        .. " AS " .. row.data_type .. " " .. table_ddl.sequence_options(row),
    } }
    if row.owned_deptype == "a" then
      local owner = ctx.object_at("pg_class", row.owned_table_oid)
      if owner and owner.selected then
        steps[#steps + 1] = {
          kind = "sequence_owned_by", suffix = "owned_by", after = { owner },
          sql = "ALTER SEQUENCE " .. ddl.target(obj) .. " OWNED BY " .. ddl.target(owner) .. "."
            .. ddl.quote(ddl.column(ctx, owner, row.owned_column)),
        }
      else
        ctx.warn(obj, string.format("sequence %s.%s is owned by a column of a table that is left out; on the target it is owned by no column",
          obj.schema, obj.name))
      end
    end
    return steps
  end,
  reference = function(_, obj) return "SEQUENCE " .. ddl.target(obj) end,
  drop = function(_, obj) return "DROP SEQUENCE " .. ddl.target(obj) end,
}

local REPLICA_IDENTITY = { f = "FULL", n = "NOTHING" }

local function table_kind(name, accept, rank, word)
  return {
    name = name, list = "tables", class = "pg_class", phase = "pre", rank = rank,
    space = "relation",
    accept = accept,
    identities = relation_identities,
    create = function(ctx, obj)
      local row = obj.row
      local steps = {}
      for i, sql in ipairs(table_ddl.create(ctx, obj)) do
        steps[#steps + 1] = { sql = sql, suffix = i > 1 and "columns" or nil, kind = i > 1 and "table_alter" or nil }
      end
      for i, sql in ipairs(table_ddl.split_parts(ctx, obj)) do
        steps[#steps + 1] = { sql = sql, suffix = "split" .. i, kind = "table_alter", after = obj.split_after,
                              trailing = true }
      end
      local target = ddl.target(obj)
      if row.replica_identity == "i" and row.replica_index_oid then
        local index = ctx.object_at("pg_class", row.replica_index_oid)
        if index and index.selected then
          steps[#steps + 1] = { phase = "post", kind = "replica_identity", suffix = "replica_identity",
            after = { index },
            sql = "ALTER TABLE ONLY " .. target .. " REPLICA IDENTITY USING INDEX " .. ddl.quote(index.target.name) }
        end
      elseif REPLICA_IDENTITY[row.replica_identity] and row.relkind ~= "f" then
        -- (a foreign table has no replica identity to set: its relreplident is always 'n')
        steps[#steps + 1] = { phase = "post", kind = "replica_identity", suffix = "replica_identity",
          sql = "ALTER TABLE ONLY " .. target .. " REPLICA IDENTITY " .. REPLICA_IDENTITY[row.replica_identity] }
      end
      if row.cluster_index_oid then
        local index = ctx.object_at("pg_class", row.cluster_index_oid)
        if index and index.selected then
          steps[#steps + 1] = { phase = "post", kind = "cluster", suffix = "cluster", after = { index },
            sql = "ALTER TABLE ONLY " .. target .. " CLUSTER ON " .. ddl.quote(index.target.name) }
        end
      end
      -- Row-level security goes on after the data: FORCE would subject the loading role to
      -- the policies.
      if row.row_security then
        steps[#steps + 1] = { phase = "post", kind = "row_security", suffix = "row_security",
          sql = "ALTER TABLE " .. target .. " ENABLE ROW LEVEL SECURITY" }
      end
      if row.force_row_security then
        steps[#steps + 1] = { phase = "post", kind = "row_security", suffix = "force_row_security",
          sql = "ALTER TABLE " .. target .. " FORCE ROW LEVEL SECURITY" }
      end
      return steps
    end,
    reference = function(_, obj) return word .. " " .. ddl.target(obj) end,
    grant_reference = function(_, obj) return "TABLE " .. ddl.target(obj) end,
    drop = function(_, obj) return "DROP " .. word .. " " .. ddl.target(obj) end,
  }
end

local table_ = table_kind("table", function(row) return row.relkind ~= "f" end, 80, "TABLE")
local foreign_table = table_kind("foreign_table", function(row) return row.relkind == "f" end, 81, "FOREIGN TABLE")

-- View bodies come from pg_get_viewdef. When renaming changed the body, the view's column
-- names are given explicitly, so they stay the (mapped) names of the source view.
local function view_body(ctx, obj)
  local body = obj.row.definition:gsub("%s*;%s*$", "")
  local new_body, changed = ddl.query(ctx, body, obj, "view " .. obj.schema .. "." .. obj.name)
  local columns = ""
  if changed then
    local names = {}
    for i, c in ipairs(ctx.cat.columns_by_relid[obj.oid] or {}) do
      names[i] = ddl.quote(ddl.column(ctx, obj, c.name))
    end
    columns = " (" .. table.concat(names, ", ") .. ")"
  end
  return new_body, columns
end

local view = {
  name = "view", list = "views", class = "pg_class", phase = "pre", rank = 90,
  space = "relation",
  accept = function(row) return row.relkind == "v" end,
  identities = relation_identities,
  create = function(ctx, obj)
    local row = obj.row
    local body, columns = view_body(ctx, obj)
    local sql = "CREATE VIEW " .. ddl.target(obj) .. columns
    if row.options then sql = sql .. " WITH (" .. row.options .. ")" end
    sql = sql .. " AS\n" .. body
    if row.check_option then sql = sql .. "\n  WITH " .. row.check_option:upper() .. " CHECK OPTION" end
    return { { sql = sql } }
  end,
  reference = function(_, obj) return "VIEW " .. ddl.target(obj) end,
  grant_reference = function(_, obj) return "TABLE " .. ddl.target(obj) end,
  drop = function(_, obj) return "DROP VIEW " .. ddl.target(obj) end,
}

-- A materialized view is created empty before the data and refreshed after it; the refresh
-- waits for the data of every table it reads (step.data = "dependencies").
local matview = {
  name = "matview", list = "views", class = "pg_class", phase = "pre", rank = 91,
  space = "relation",
  accept = function(row) return row.relkind == "m" end,
  identities = relation_identities,
  create = function(ctx, obj)
    local row = obj.row
    local body, columns = view_body(ctx, obj)
    local sql = "CREATE MATERIALIZED VIEW " .. ddl.target(obj) .. columns
    if row.access_method then sql = sql .. " USING " .. ddl.quote(row.access_method) end
    if row.options then sql = sql .. " WITH (" .. row.options .. ")" end
    sql = sql .. " AS\n" .. body .. "\n  WITH NO DATA"
    local steps = { { sql = sql } }
    if row.populated then
      steps[#steps + 1] = { phase = "post", kind = "matview_refresh", suffix = "refresh", data = "dependencies",
        sql = "REFRESH MATERIALIZED VIEW " .. ddl.target(obj) }
    end
    return steps
  end,
  reference = function(_, obj) return "MATERIALIZED VIEW " .. ddl.target(obj) end,
  grant_reference = function(_, obj) return "TABLE " .. ddl.target(obj) end,
  drop = function(_, obj) return "DROP MATERIALIZED VIEW " .. ddl.target(obj) end,
}

return { sequence, table_, foreign_table, view, matview }
