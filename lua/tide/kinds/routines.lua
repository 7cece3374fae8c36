-- Kinds: function, procedure, aggregate.
--
-- Functions and procedures are written by the server (pg_get_functiondef), their names and
-- the names inside their bodies mapped by tide.ddl.routine. They are created before the
-- tables with check_function_bodies off (as pg_dump's output is restored), so a body may
-- mention a table that does not exist yet; dependencies the server records (argument types,
-- BEGIN ATOMIC bodies) still order them. There is no pg_get_aggregatedef: aggregates are
-- built from pg_aggregate.
local ddl = require "tide.ddl"

local function arguments(ctx, obj)
  return ddl.type_text(ctx, obj.row.identity_args or "")
end

local function routine_kind(name, letters, rank, word)
  return {
    name = name, list = "functions", class = "pg_proc", phase = "pre", rank = rank,
    space = "function",
    accept = function(row) return letters[row.routine_kind] == true end,
    create = function(ctx, obj)
      local sql = ddl.routine(ctx, obj.row.definition, obj):gsub("%s+$", "")
      return { { sql = sql } }
    end,
    reference = function(ctx, obj) return word .. " " .. ddl.target(obj) .. "(" .. arguments(ctx, obj) .. ")" end,
    drop = function(ctx, obj) return "DROP " .. word .. " " .. ddl.target(obj) .. "(" .. arguments(ctx, obj) .. ")" end,
  }
end

local function_kind = routine_kind("function", { f = true, w = true }, 60, "FUNCTION")
local procedure = routine_kind("procedure", { p = true }, 61, "PROCEDURE")

local MODIFY = { r = "READ_ONLY", s = "SHAREABLE", w = "READ_WRITE" }
local PARALLEL = { s = "SAFE", r = "RESTRICTED" }

local function aggregate_arguments(ctx, _obj, text)
  if text == nil or text == "" then return "*" end
  return ddl.type_text(ctx, text)
end

local aggregate = {
  name = "aggregate", list = "functions", class = "pg_proc", phase = "pre", rank = 62,
  space = "function",
  accept = function(row) return row.routine_kind == "a" end,
  create = function(ctx, obj)
    local row = obj.row
    local support = row.support or {}
    local function fn(role)
      local f = support[role]
      if not f then return nil end
      return ddl.qualified(ddl.lookup(ctx, "function", f[1], f[2]))
    end
    -- Ordered-set and hypothetical aggregates modify their state by default.
    local default_modify = row.aggkind == "n" and "r" or "w"
    local options = { "SFUNC = " .. fn("sfunc"), "STYPE = " .. ddl.type_text(ctx, row.transtype) }
    local function add(text) options[#options + 1] = text end
    if row.transspace and row.transspace ~= 0 then add("SSPACE = " .. row.transspace) end
    if fn("finalfunc") then add("FINALFUNC = " .. fn("finalfunc")) end
    if row.finalextra then add("FINALFUNC_EXTRA") end
    if row.finalmodify and row.finalmodify ~= default_modify then add("FINALFUNC_MODIFY = " .. MODIFY[row.finalmodify]) end
    if fn("combinefunc") then add("COMBINEFUNC = " .. fn("combinefunc")) end
    if fn("serialfunc") then add("SERIALFUNC = " .. fn("serialfunc")) end
    if fn("deserialfunc") then add("DESERIALFUNC = " .. fn("deserialfunc")) end
    if row.initval then add("INITCOND = " .. ddl.literal(row.initval)) end
    if fn("msfunc") then
      add("MSFUNC = " .. fn("msfunc"))
      add("MINVFUNC = " .. fn("minvfunc"))
      add("MSTYPE = " .. ddl.type_text(ctx, row.mtranstype))
      if row.mtransspace and row.mtransspace ~= 0 then add("MSSPACE = " .. row.mtransspace) end
      if fn("mfinalfunc") then add("MFINALFUNC = " .. fn("mfinalfunc")) end
      if row.mfinalextra then add("MFINALFUNC_EXTRA") end
      if row.mfinalmodify and row.mfinalmodify ~= default_modify then
        add("MFINALFUNC_MODIFY = " .. MODIFY[row.mfinalmodify])
      end
      if row.minitval then add("MINITCOND = " .. ddl.literal(row.minitval)) end
    end
    if row.sortop_ref then
      -- { schema, symbol }: the schema follows the schema map (the symbol is never quoted)
      local schema = ddl.lookup(ctx, "operator", row.sortop_ref[1], row.sortop_ref[2])
      add("SORTOP = OPERATOR(" .. ddl.quote(schema) .. "." .. row.sortop_ref[2] .. ")")
    end
    if PARALLEL[row.parallel] then add("PARALLEL = " .. PARALLEL[row.parallel]) end
    if row.aggkind == "h" then add("HYPOTHETICAL") end
    local sql = "CREATE AGGREGATE " .. ddl.target(obj) .. "(" .. aggregate_arguments(ctx, obj, row.args) .. ") (\n    "
      .. table.concat(options, ",\n    ") .. "\n)"
    return { { sql = sql } }
  end,
  reference = function(ctx, obj)
    return "AGGREGATE " .. ddl.target(obj) .. "(" .. aggregate_arguments(ctx, obj, obj.row.identity_args) .. ")"
  end,
  grant_reference = function(ctx, obj)
    return "FUNCTION " .. ddl.target(obj) .. "(" .. ddl.type_text(ctx, obj.row.identity_args or "") .. ")"
  end,
  drop = function(ctx, obj)
    return "DROP AGGREGATE " .. ddl.target(obj) .. "(" .. aggregate_arguments(ctx, obj, obj.row.identity_args) .. ")"
  end,
}

return { function_kind, procedure, aggregate }
