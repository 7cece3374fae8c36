-- Kind: event trigger (see tide.kinds for the fields). Needs a superuser on the target.
--
-- An event trigger lives in no schema (`global`) and follows its function's selection. It is
-- created at the end of pre-data and, unless it is disabled on the source, disabled right
-- away: otherwise it would fire on the statements pgtide runs after it (the rest of
-- pre-data, indexes, constraints, comments, grants, ...). Its state on the source (ENABLE,
-- ENABLE REPLICA, ENABLE ALWAYS) is set by the last post-data step (`last = 2`: it waits for
-- every other post-data step, the default privileges included).
local ddl = require "tide.ddl"

local ENABLE = { O = "ENABLE", R = "ENABLE REPLICA", A = "ENABLE ALWAYS" }

local event_trigger = {
  name = "event_trigger", list = "event_triggers", class = "pg_event_trigger",
  phase = "pre", rank = 990, space = "event_trigger", global = true, kind_in_keys = true,
  word = "event trigger",
  follows = function(row) return "pg_proc", row.function_oid end,
  target = function(_, obj) return nil, obj.name end,
  create = function(ctx, obj)
    local row = obj.row
    local name = ddl.quote(obj.name)
    local fn = ctx.object_at("pg_proc", row.function_oid)
    local fn_name = (fn and fn.target and fn.target.schema) and ddl.qualified(fn.target.schema, fn.target.name)
      or ddl.qualified(ddl.lookup(ctx, "function", row.function_schema, row.function_name))
    local sql = "CREATE EVENT TRIGGER " .. name .. " ON " .. ddl.quote(row.event)
    if row.tags and #row.tags > 0 then
      local tags = {}
      for i, tag in ipairs(row.tags) do tags[i] = ddl.literal(tag) end
      sql = sql .. "\n    WHEN TAG IN (" .. table.concat(tags, ", ") .. ")"
    end
    sql = sql .. "\n    EXECUTE FUNCTION " .. fn_name .. "()"
    local steps = { { sql = sql }, { kind = "event_trigger_disable", suffix = "disabled", rank = 0,
      sql = "ALTER EVENT TRIGGER " .. name .. " DISABLE" } }
    if ENABLE[row.enabled] then
      -- A full load that starts over disables it again (undo) and enables it at its end.
      steps[#steps + 1] = { kind = "event_trigger_enable", suffix = "enabled", phase = "post", last = 2,
        trailing = true, sql = "ALTER EVENT TRIGGER " .. name .. " " .. ENABLE[row.enabled],
        undo = "ALTER EVENT TRIGGER " .. name .. " DISABLE" }
    end
    return steps
  end,
  reference = function(_, obj) return "EVENT TRIGGER " .. ddl.quote(obj.name) end,
  drop = function(_, obj) return "DROP EVENT TRIGGER " .. ddl.quote(obj.name) end,
}

return { event_trigger }
