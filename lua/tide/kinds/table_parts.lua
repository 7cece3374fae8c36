-- Kinds that belong to a table: index, constraint, trigger, rule, policy, statistics.
-- All are post-data: created after the table's rows are in, so the load neither maintains
-- indexes row by row nor fires triggers. Their `owner(row)` names the table (or domain) they
-- belong to; they follow its selection and live in its target schema.
local ddl = require "tide.ddl"
local sqlident = require "tide.sqlident"

local function table_owner(row) return "pg_class", row.table_oid end

-- Kinds whose names are unique per table keep the table's target schema.
local function part_target(ctx, obj)
  local _, name = ctx.map_name(obj.kind, obj.schema, obj.name)
  return obj.owner.target.schema, name
end

local index = {
  name = "index", list = "indexes", class = "pg_class", phase = "post", rank = 10,
  space = "relation", owner = table_owner, owned = false,
  -- The index behind a primary key, unique or exclusion constraint is the constraint's.
  inline = function(row)
    if row.constraint_oid then return "pg_constraint", row.constraint_oid end
  end,
  skip = function(row)
    if not row.valid and not row.partitioned then
      return "invalid index (left by a failed CREATE INDEX CONCURRENTLY): rebuild it on the source"
    end
  end,
  target = part_target,
  create = function(ctx, obj)
    local steps = { {
      sql = ddl.definition(ctx, obj.row.definition, obj.owner,
        { own_kind = "index", own = obj, warn_object = obj, describe = "index " .. obj.name }),
    } }
    -- An index on a partition that belongs to the partitioned table's index is attached to
    -- it once both exist; the parent index is valid when all its partitions are attached.
    local parent = obj.row.parent_oid and ctx.object_at("pg_class", obj.row.parent_oid)
    if parent and parent.selected then
      steps[#steps + 1] = { kind = "index_attach", suffix = "attach", after = { parent }, attaches = parent,
        sql = "ALTER INDEX " .. ddl.target(parent) .. " ATTACH PARTITION " .. ddl.target(obj) }
    end
    -- Statistics targets of expression columns (ALTER INDEX ... ALTER COLUMN 1 SET STATISTICS).
    for _, st in ipairs(obj.row.statistics or {}) do
      steps[#steps + 1] = { kind = "index_statistics", suffix = "statistics/" .. tostring(st[1]),
        sql = string.format("ALTER INDEX %s ALTER COLUMN %d SET STATISTICS %d", ddl.target(obj), st[1], st[2]) }
    end
    return steps
  end,
  reference = function(_, obj) return "INDEX " .. ddl.target(obj) end,
  drop = function(_, obj) return "DROP INDEX " .. ddl.target(obj) end,
}

local CONSTRAINT_WORD = { p = "PRIMARY KEY", u = "UNIQUE" }

local function constraint_clause(ctx, obj)
  return ddl.definition(ctx, obj.row.definition, obj.owner.kind ~= "domain" and obj.owner or nil,
    { warn_object = obj, describe = "constraint " .. obj.name })
end

local constraint = {
  name = "constraint", list = "constraints", class = "pg_constraint", phase = "post", rank = 20,
  space = "table", owned = false,
  owner = function(row)
    if row.table_oid ~= 0 then return "pg_class", row.table_oid end
    return "pg_type", row.domain_oid
  end,
  -- Validated CHECK constraints are written in CREATE TABLE / CREATE DOMAIN; inherited ones
  -- come from the parent; a partition's copy of a foreign key comes from the partitioned
  -- table's foreign key.
  inline = function(row)
    if row.type == "c" and row.domain_oid ~= 0 and row.validated then return "pg_type", row.domain_oid end
    if row.type == "c" and row.table_oid ~= 0 and (row.validated or not row.is_local) then
      return "pg_class", row.table_oid
    end
    if row.type == "f" and row.parent_oid ~= 0 then return "pg_constraint", row.parent_oid end
  end,
  target = part_target,
  create = function(ctx, obj)
    local row, owner = obj.row, obj.owner
    local name = ddl.quote(obj.target.name)
    if owner.kind == "domain" then
      return { { sql = "ALTER DOMAIN " .. ddl.target(owner) .. " ADD CONSTRAINT " .. name .. " "
        .. constraint_clause(ctx, obj) } }
    end
    local partitioned = owner.row.relkind == "p"
    local steps = {}
    local index_row = row.index_oid ~= 0 and ctx.row_at("pg_class", row.index_oid)
    if CONSTRAINT_WORD[row.type] and index_row and not partitioned then
      -- Built as a plain unique index first (several can build at once), then attached as the
      -- constraint, which takes no time.
      local index_obj = { name = index_row.name, target = { schema = owner.target.schema, name = obj.target.name } }
      steps[1] = { kind = "index", suffix = "index",
        sql = ddl.definition(ctx, index_row.definition, owner,
          { own_kind = "index", own = index_obj, warn_object = obj, describe = "index of constraint " .. obj.name }) }
      local clause = CONSTRAINT_WORD[row.type] .. " USING INDEX " .. name
      if row.deferrable then clause = clause .. " DEFERRABLE" end
      if row.deferred then clause = clause .. " INITIALLY DEFERRED" end
      steps[2] = { kind = "constraint", sql = "ALTER TABLE ONLY " .. ddl.target(owner) .. " ADD CONSTRAINT " .. name .. " " .. clause }
    elseif row.type == "f" then
      -- A foreign key on a partitioned table must include its partitions: no ONLY.
      steps[1] = { kind = "fkey", data = "referenced",
        sql = "ALTER TABLE " .. (partitioned and "" or "ONLY ") .. ddl.target(owner)
          .. " ADD CONSTRAINT " .. name .. " " .. constraint_clause(ctx, obj) }
    elseif row.type == "c" then
      steps[1] = { kind = "constraint",
        sql = "ALTER TABLE " .. ddl.target(owner) .. " ADD CONSTRAINT " .. name .. " " .. constraint_clause(ctx, obj) }
    else
      -- Primary key / unique on a partitioned table (ONLY: the partitions' own constraints are
      -- attached below), exclusion constraints.
      steps[1] = { kind = "constraint",
        sql = "ALTER TABLE ONLY " .. ddl.target(owner) .. " ADD CONSTRAINT " .. name .. " " .. constraint_clause(ctx, obj) }
    end
    local parent = row.parent_oid ~= 0 and ctx.object_at("pg_constraint", row.parent_oid)
    if parent and parent.selected then
      steps[#steps + 1] = { kind = "index_attach", suffix = "attach", after = { parent }, attaches = parent,
        sql = "ALTER INDEX " .. ddl.qualified(parent.owner.target.schema, parent.target.name)
          .. " ATTACH PARTITION " .. ddl.qualified(owner.target.schema, obj.target.name) }
    end
    return steps
  end,
  reference = function(_, obj)
    if obj.owner.kind == "domain" then return "CONSTRAINT " .. ddl.quote(obj.target.name) .. " ON DOMAIN " .. ddl.target(obj.owner) end
    return "CONSTRAINT " .. ddl.quote(obj.target.name) .. " ON " .. ddl.target(obj.owner)
  end,
  drop = function(_, obj)
    if obj.owner.kind == "domain" then return "ALTER DOMAIN " .. ddl.target(obj.owner) .. " DROP CONSTRAINT " .. ddl.quote(obj.target.name) end
    return "ALTER TABLE " .. ddl.target(obj.owner) .. " DROP CONSTRAINT " .. ddl.quote(obj.target.name)
  end,
}

local ENABLE = { D = "DISABLE", R = "ENABLE REPLICA", A = "ENABLE ALWAYS" }

local trigger = {
  name = "trigger", list = "triggers", class = "pg_trigger", phase = "post", rank = 50,
  space = "table", owner = table_owner, owned = false,
  target = part_target,
  create = function(ctx, obj)
    local steps = { { sql = ddl.definition(ctx, obj.row.definition, obj.owner,
      { own_kind = "trigger", own = obj, warn_object = obj, describe = "trigger " .. obj.name }) } }
    if ENABLE[obj.row.enabled] then
      steps[2] = { kind = "trigger_enable", suffix = "enabled",
        sql = "ALTER TABLE " .. ddl.target(obj.owner) .. " " .. ENABLE[obj.row.enabled] .. " TRIGGER " .. ddl.quote(obj.target.name) }
    end
    return steps
  end,
  reference = function(_, obj) return "TRIGGER " .. ddl.quote(obj.target.name) .. " ON " .. ddl.target(obj.owner) end,
  drop = function(_, obj) return "DROP TRIGGER " .. ddl.quote(obj.target.name) .. " ON " .. ddl.target(obj.owner) end,
}

-- Rules: the server prints "CREATE RULE name AS ON event TO schema.table ... DO ...".
-- The rule's own name is mapped here; the rest is a query (tide.ddl.query), with NEW and
-- OLD standing for the rule's table.
local rule = {
  name = "rule", list = "rules", class = "pg_rewrite", phase = "post", rank = 60,
  space = "table", owner = table_owner, owned = false,
  target = part_target,
  create = function(ctx, obj)
    local sql = obj.row.definition:gsub("%s*;%s*$", "")
    if not ctx.identity then
      sql = sqlident.rewrite(sql, function(parts, c)
        if #parts == 1 and c.prev and c.prev.word == "rule" then return { obj.target.name } end
      end)
      sql = ddl.query(ctx, sql, obj, "rule " .. obj.name, { new = obj.owner, old = obj.owner })
    end
    local steps = { { sql = sql } }
    if ENABLE[obj.row.enabled] then
      steps[2] = { kind = "rule_enable", suffix = "enabled",
        sql = "ALTER TABLE " .. ddl.target(obj.owner) .. " " .. ENABLE[obj.row.enabled] .. " RULE " .. ddl.quote(obj.target.name) }
    end
    return steps
  end,
  reference = function(_, obj) return "RULE " .. ddl.quote(obj.target.name) .. " ON " .. ddl.target(obj.owner) end,
  drop = function(_, obj) return "DROP RULE " .. ddl.quote(obj.target.name) .. " ON " .. ddl.target(obj.owner) end,
}

local COMMANDS = { r = "SELECT", a = "INSERT", w = "UPDATE", d = "DELETE" }

local policy = {
  name = "policy", list = "policies", class = "pg_policy", phase = "post", rank = 70,
  space = "table", owner = table_owner, owned = false,
  target = part_target,
  create = function(ctx, obj)
    local row = obj.row
    local sql = "CREATE POLICY " .. ddl.quote(obj.target.name) .. " ON " .. ddl.target(obj.owner)
    if not row.permissive then sql = sql .. " AS RESTRICTIVE" end
    if COMMANDS[row.command] then sql = sql .. " FOR " .. COMMANDS[row.command] end
    local roles = {}
    for _, role in ipairs(row.roles or {}) do
      if role == nil or role == ctx.json_null then
        roles[#roles + 1] = "PUBLIC"
      elseif not ctx.role_exists(role) then
        -- Leaving a role out would change who the policy grants or restricts.
        ctx.error(obj, string.format("policy %s on %s.%s names the role %s, which does not exist on the target: create it there first (CREATE ROLE %s)",
          obj.name, obj.owner.schema, obj.owner.name, role, ddl.quote(role)))
        roles[#roles + 1] = ddl.quote(role)
      else
        roles[#roles + 1] = ddl.quote(role)
      end
    end
    if #roles > 0 and not (#roles == 1 and roles[1] == "PUBLIC") then sql = sql .. " TO " .. table.concat(roles, ", ") end
    local function expression(text)
      return ddl.definition(ctx, text, obj.owner, { expression = true, warn_object = obj, describe = "policy " .. obj.name })
    end
    if row.using_expr then sql = sql .. " USING (" .. expression(row.using_expr) .. ")" end
    if row.check_expr then sql = sql .. " WITH CHECK (" .. expression(row.check_expr) .. ")" end
    return { { sql = sql } }
  end,
  reference = function(_, obj) return "POLICY " .. ddl.quote(obj.target.name) .. " ON " .. ddl.target(obj.owner) end,
  drop = function(_, obj) return "DROP POLICY " .. ddl.quote(obj.target.name) .. " ON " .. ddl.target(obj.owner) end,
}

-- Extended statistics: "CREATE STATISTICS s.name (kinds) ON col, (expr) FROM s.table".
-- Names between ON and FROM are the table's columns.
local statistics = {
  name = "statistics", list = "statistics", class = "pg_statistic_ext", phase = "post", rank = 15,
  space = "statistics", owner = table_owner,
  create = function(ctx, obj)
    local sql = obj.row.definition
    if not ctx.identity then
      local on_index, from_index
      local significant = 0
      for _, token in ipairs(sqlident.tokens(sql)) do
        if token.type ~= "space" and token.type ~= "comment" then
          significant = significant + 1
          if token.word == "on" and not on_index then on_index = significant end
          if token.word == "from" then from_index = significant end
        end
      end
      local columns = {}
      for _, name in ipairs(ddl.column_names(ctx, obj.owner)) do columns[name] = true end
      sql = sqlident.rewrite(sql, function(parts, c)
        if c.prev and c.prev.word == "statistics" then return { obj.target.schema, obj.target.name } end
        if c.prev and c.prev.word == "from" then return { obj.owner.target.schema, obj.owner.target.name } end
        if #parts == 1 and on_index and c.index > on_index and c.index < (from_index or math.huge)
          and columns[parts[1].name] and not (c.next and c.next.text == "(") then
          return { ddl.column(ctx, obj.owner, parts[1].name) }
        end
      end)
    end
    local steps = { { sql = sql } }
    if obj.row.statistics then
      steps[2] = { kind = "statistics_target", suffix = "target",
        sql = "ALTER STATISTICS " .. ddl.target(obj) .. " SET STATISTICS " .. obj.row.statistics }
    end
    return steps
  end,
  reference = function(_, obj) return "STATISTICS " .. ddl.target(obj) end,
  drop = function(_, obj) return "DROP STATISTICS " .. ddl.target(obj) end,
}

return { index, constraint, trigger, rule, policy, statistics }
