-- tide.verify.transformed — verify for a table with on.row: the source's rows pass through the
-- same function as in the migration (engine/pg/copy_rows.c, over a COPY from the source into a
-- temporary table on the target connection), and the target compares that with the table,
-- row for row as multisets (EXCEPT ALL over each column's text, so types without an equality
-- operator compare too). It reads the whole table through Lua: slower than the server-side
-- checksums of other tables, and exact.
--
-- on.route: the rows a table's function routes elsewhere are not among the rows it keeps for
-- itself; a destination's expected rows are its own source rows (through its own function, if it
-- has one) plus the rows every routing table's function sends it — each routing table read again
-- through its function, its routed rows written into the temporary table as the full load writes
-- them (tide.full.routes; a routed row replaces one with the same key). A destination's columns
-- that its routing table does not have are compared with the target's own values for routed rows
-- (they hold the destination's defaults there).
local tide = require "tide.core"
local parts = require "tide.full.parts"
local routes = require "tide.full.routes"

local M = {}

local serial = 0

-- compare(pair, tbl, result): sets result.status ("match" | "different"), source_rows,
-- target_rows, counts (missing/extra) and a few differing keys; raises { side =, message = }.
function M.compare(pair, tbl, result, opts_max, plan_tables)
  local src, tgt = pair.source, pair.target
  serial = serial + 1
  local tmp = "pgtide_verify_row_" .. serial
  local rel = parts.target_relation(tgt, tbl)
  local function must(conn, side, sql, ...)
    local rows, err = conn:query(sql, ...)
    if not rows then error({ side = side, message = tostring(err), err = err }, 0) end
    return rows
  end
  -- The temporary table is verify's own DDL: under replica role (when the role may set it)
  -- the target's event triggers do not log it as the application's.
  local replica = tgt:exec("SET session_replication_role = replica")
  local ok, err = pcall(function()
    -- Only the compared columns, without the table's constraints (a target-only NOT NULL
    -- column would refuse the rows).
    local tcols = {}
    for i, c in ipairs(tbl.columns) do tcols[i] = tgt:quote_ident(c.target or c.name) end
    must(tgt, "target", string.format("CREATE TEMPORARY TABLE %s AS SELECT %s FROM ONLY %s WITH NO DATA", tmp,
                                      table.concat(tcols, ", "), rel))
    local cols = {}
    for i, c in ipairs(tbl.columns) do cols[i] = tgt:quote_ident(c.target or c.name) .. "::text AS v" .. i end
    local by_key = {}
    for _, t in ipairs(plan_tables or { tbl }) do by_key[t.key] = t end
    local in_sql = string.format("COPY pg_temp.%s (%s) FROM STDIN", tmp, table.concat(tcols, ", "))
    local function pump_rows(from, rows)
      local out_sql = parts.copy_out_sql(src, { table = { source = from.source, columns = from.columns,
                                                          row_filter = from.row_filter } })
      local pump = tide.copy_pump(src, tgt, out_sql, in_sql, rows)
      local copied, perr = pump:wait()
      if not copied then error({ side = perr.side == "target" and "target" or "source", message = tostring(perr) }, 0) end
      return pump
    end
    pump_rows(tbl, tbl.transform and routes.pump_rows(tbl, by_key) or nil):close_routes()   -- kept rows only
    for _, from_key in ipairs(tbl.route_sources or {}) do
      local from = by_key[from_key]
      if not from then error({ side = "source", message = "the plan does not list " .. from_key }, 0) end
      local pump = pump_rows(from, routes.pump_rows(from, by_key, false))   -- only the routed rows
      for k, dest in ipairs(from.routes) do
        if dest == tbl.key then
          local ok, werr = pcall(routes.send, tgt, pump, k, routes.insert_sql(tgt, from, tbl, "pg_temp." .. tmp,
            { types = routes.column_types(tgt, "pg_temp." .. tmp), replace = true, fill_from = rel }))
          if not ok then error({ side = "target", message = "the rows " .. from_key .. " routes: " ..
                                 (type(werr) == "table" and werr.message or tostring(werr)) }, 0) end
        end
      end
      pump:close_routes()
    end
    local list = table.concat(cols, ", ")
    local r = must(tgt, "target", string.format([[
SELECT (SELECT count(*) FROM pg_temp.%s) AS source_rows, (SELECT count(*) FROM ONLY %s) AS target_rows,
       (SELECT count(*) FROM (SELECT %s FROM pg_temp.%s EXCEPT ALL SELECT %s FROM ONLY %s) m) AS missing,
       (SELECT count(*) FROM (SELECT %s FROM ONLY %s EXCEPT ALL SELECT %s FROM pg_temp.%s) e) AS extra]],
      tmp, rel, list, tmp, list, rel, list, rel, list, tmp))[1]
    result.source_rows, result.target_rows = r.source_rows, r.target_rows
    -- Name a few rows: by key, a row on one side only is missing or extra, on both different.
    local key = tbl.key_columns
    if key and (r.missing > 0 or r.extra > 0) then
      local kcols, named = {}, {}
      for i, k in ipairs(key) do
        local c
        for _, col in ipairs(tbl.columns) do if col.name == k then c = col end end
        named[i] = c and tgt:quote_ident(c.target or c.name) or nil
        kcols[i] = named[i] and (named[i] .. "::text AS k" .. i) or nil
      end
      if #kcols == #key then
        local seen, order = {}, {}
        local limit = math.max(1, opts_max or 20)
        for _, side in ipairs({ { "missing", "pg_temp." .. tmp, "ONLY " .. rel }, { "extra", "ONLY " .. rel, "pg_temp." .. tmp } }) do
          local inner = table.concat(kcols, ", ") .. ", " .. list
          local outer = {}
          for i = 1, #key do outer[i] = "k" .. i end
          local rows = must(tgt, "target", string.format(
            "SELECT %s FROM (SELECT %s FROM %s EXCEPT ALL SELECT %s FROM %s) d LIMIT %d",
            table.concat(outer, ", "), inner, side[2], inner, side[3], limit))
          for _, row in ipairs(rows) do
            local values = {}
            for i = 1, #key do values[i] = row["k" .. i] end
            local id = table.concat(values, "\0")
            if seen[id] then seen[id].kind = "different" else
              local named_key = {}
              for i, k in ipairs(key) do named_key[k] = values[i] end
              seen[id] = { kind = side[1], key = named_key, values = values, columns = key }
              order[#order + 1] = seen[id]
            end
          end
        end
        for _, d in ipairs(order) do result.differences[#result.differences + 1] = d end
      end
    end
    result.transformed = true
    result.counts_override = { missing = r.missing, extra = r.extra }
    result.status = (r.missing == 0 and r.extra == 0) and "match" or "different"
  end)
  tgt:exec("DROP TABLE IF EXISTS pg_temp." .. tmp)
  if replica then tgt:exec("RESET session_replication_role") end
  if not ok then error(err, 0) end
end

return M
