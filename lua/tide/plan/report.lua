-- tide.plan.report — `pgtide plan` output: a readable text, or JSON for machines.
--
-- The text lists the selected objects per kind with source → target names, what was left
-- out and why, warnings, conflicts with the target, errors, then the statements of each
-- phase in the order they run (post-data steps with the table they belong to and what they
-- wait for). The JSON carries the same, with the plan's own field names (docs/internals.md).
local connect = require "tide.connect"

local breathe = require("tide.wait").breathe

local M = {}

local WORDS = { foreign_table = "foreign tables", matview = "materialized views", index = "indexes",
  text_search_dictionary = "text_search_dictionaries",
  policy = "policies", statistics = "statistics", schema = "schemas",
  operator_family = "operator families", operator_class = "operator classes",
  access_method = "access methods",
  default_privileges = "default privileges", database_setting = "database settings" }

local function plural(kind) return WORDS[kind] or (kind .. "s") end

local function names_of(obj)
  local source = obj.ident
  local target
  if obj.def.global then
    target = source   -- no schema, the name stays
  elseif obj.def.target_text then
    target = obj.def.target_text(obj)
  elseif obj.kind == "schema" or obj.kind == "extension" then
    target = require("tide.sqlident").quote(obj.target.name)
  elseif obj.owner and obj.def.space == "table" then
    local q = require("tide.sqlident").quote
    target = q(obj.owner.target.schema) .. "." .. q(obj.owner.target.name) .. "." .. q(obj.target.name)
  else
    local q = require("tide.sqlident").quote
    target = q(obj.target.schema) .. "." .. q(obj.target.name)
    if obj.def.space == "function" then target = target .. source:match("%b()$") end
  end
  return source, target
end

-- M.write(plan, task, emit): the text, one line at a time to emit(line) (without its newline),
-- so `pgtide plan` prints a plan of 100,000 statements without holding all of its text.
function M.write(plan, task, emit)
  local function add(...) emit(table.concat({ ... })) end
  add("plan for task ", task.name)
  add("source: ", task.source_info, " (PostgreSQL ", connect.version_string(plan.server_version), ")")
  add("target: ", task.target_info, " (PostgreSQL ", connect.version_string(plan.target_server_version), ")")
  add("")

  local by_kind, kind_order = {}, {}
  for _, obj in ipairs(plan.objects) do
    breathe()
    if not by_kind[obj.kind] then by_kind[obj.kind] = {}; kind_order[#kind_order + 1] = obj.kind end
    table.insert(by_kind[obj.kind], obj)
  end
  add("Selected objects (", #plan.objects, "), source → target:")
  for _, kind in ipairs(kind_order) do
    add("  ", plural(kind), " (", #by_kind[kind], "):")
    for _, obj in ipairs(by_kind[kind]) do
      local source, target = names_of(obj)
      local note = obj.keep_existing and "   (exists on the target: kept)" or ""
      if source == target then add("    ", source, note) else add("    ", source, " → ", target, note) end
    end
  end
  -- Extensions' configuration tables: not created (CREATE EXTENSION makes them), rows copied.
  local config = {}
  for _, t in ipairs(plan.tables) do if t.extension then config[#config + 1] = t end end
  if #config > 0 then
    add("")
    add("Rows of extensions' configuration tables (", #config, "), copied by the full load:")
    for _, t in ipairs(config) do
      add("    ", t.key, " (extension ", t.extension, ")", t.row_filter and (" WHERE " .. t.row_filter) or "")
    end
  end
  -- Row filters, renamed and left-out columns: what the full load and the stream do to rows.
  local shaped = {}
  for _, t in ipairs(plan.tables) do
    breathe()
    local obj = plan.by_key and plan.by_key["table:" .. t.key]
    local renamed, left = {}, {}
    for _, c in ipairs(t.columns) do
      if c.target and c.target ~= c.name then renamed[#renamed + 1] = c.name .. " → " .. c.target end
    end
    for _, c in pairs(obj and obj.dropped_columns or {}) do left[#left + 1] = c.name end
    table.sort(left)
    if t.row_filter or #renamed > 0 or #left > 0 or t.transform or t.route_sources then
      local parts = {}
      if t.derived_from then
        parts[#parts + 1] = "rows follow " .. table.concat(t.derived_from, ", ") .. " (select.rows_follow): WHERE " ..
          t.row_filter
      elseif t.row_filter then
        parts[#parts + 1] = "rows WHERE " .. t.row_filter
      end
      if t.transform then
        parts[#parts + 1] = "rows through on.row" .. (t.routes and (", which may route them to " ..
          table.concat(t.routes, ", ") .. " (on.route)") or "")
      end
      if t.route_sources then parts[#parts + 1] = "receives rows routed from " .. table.concat(t.route_sources, ", ") end
      if #renamed > 0 then parts[#parts + 1] = "columns renamed: " .. table.concat(renamed, ", ") end
      if #left > 0 then parts[#parts + 1] = "columns left out: " .. table.concat(left, ", ") end
      shaped[#shaped + 1] = t.key .. ": " .. table.concat(parts, "; ")
    end
  end
  if #shaped > 0 then
    add("")
    add("Rows and columns (", #shaped, " table(s)):")
    for _, line in ipairs(shaped) do add("    ", line) end
  end
  add("")
  add("Left out (", #plan.skipped, "):")
  for _, s in ipairs(plan.skipped) do
    add("  ", s.kind, " ", s.key and s.key:match("^[^:]+:(.*)$") or s.name, ": ", s.reason)
  end
  if #plan.warnings > 0 then
    add("")
    add("Warnings (", #plan.warnings, "):")
    for _, w in ipairs(plan.warnings) do add("  - ", w.message) end
  end
  if #plan.existing > 0 then
    add("")
    add("Already on the target (", #plan.existing, "):")
    for _, e in ipairs(plan.existing) do add("  ", e.kind, " ", e.target, ": ", e.action) end
  end
  if #plan.conflicts > 0 then
    add("")
    add("Conflicts with the target (", #plan.conflicts, "):")
    for _, c in ipairs(plan.conflicts) do add("  - ", c.message) end
  end
  if #plan.errors > 0 then
    add("")
    add("Errors (", #plan.errors, "):")
    for _, e in ipairs(plan.errors) do add("  - ", e.message) end
  end
  for _, phase in ipairs({ { "Pre-data", plan.pre_data }, { "Post-data", plan.post_data } }) do
    add("")
    add(phase[1], " (", #phase[2], " statements, in order):")
    for i, step in ipairs(phase[2]) do
      local info = { step.key }
      if step.table then info[#info + 1] = "table " .. step.table end
      if step.after and #step.after > 0 then
        info[#info + 1] = "after " .. table.concat(step.after, ", ", 1, math.min(#step.after, 4))
          .. (#step.after > 4 and (" and " .. (#step.after - 4) .. " more") or "")
      end
      add("-- ", i, ". ", table.concat(info, "; "))
      add(step.sql, ";")
    end
  end
  add("")
  local runnable = #plan.errors == 0 and #plan.conflicts == 0
  add(string.format("%d objects, %d pre-data and %d post-data statements, %d tables to copy; %d left out, %d warnings, %d conflicts, %d errors (%.2f s)",
    #plan.objects, #plan.pre_data, #plan.post_data, #plan.tables, #plan.skipped, #plan.warnings,
    #plan.conflicts, #plan.errors, plan.timing.total or 0))
  add(runnable and "The plan can run." or "The plan cannot run as it is: fix the conflicts and errors above.")
end

-- M.text(plan, task) → the whole text as one string.
function M.text(plan, task)
  local out = {}
  M.write(plan, task, function(line) out[#out + 1] = line end)
  return table.concat(out, "\n") .. "\n"
end

-- M.print(plan, task [, file]): the text written to a file (io.stdout), in batches of lines.
function M.print(plan, task, file)
  file = file or io.stdout
  local batch = {}
  M.write(plan, task, function(line)
    batch[#batch + 1] = line
    if #batch == 1024 then
      batch[#batch + 1] = ""
      file:write(table.concat(batch, "\n"))
      batch = {}
    end
  end)
  batch[#batch + 1] = ""
  file:write(table.concat(batch, "\n"))
end

-- The plan as plain data (no catalog rows, no links between objects).
-- A table entry as --json shows it: its columns by the fields docs/internals.md lists (the
-- entry holds the catalog's column rows themselves).
local function table_data(tbl)
  local out = {}
  for k, v in pairs(tbl) do out[k] = v end
  out.columns = {}
  for i, c in ipairs(tbl.columns or {}) do
    out.columns[i] = { name = c.name, target = c.target, type = c.type, type_oid = c.type_oid,
                       not_null = c.not_null, identity = c.identity }
  end
  return out
end

function M.data(plan)
  local tables = {}
  for i, tbl in ipairs(plan.tables) do breathe(); tables[i] = table_data(tbl) end
  local list = {}
  for i, obj in ipairs(plan.objects) do
    breathe()
    local source, target = names_of(obj)
    list[i] = { kind = obj.kind, key = obj.key, source = { schema = obj.schema, name = obj.name, text = source },
                target = { schema = obj.target.schema, name = obj.target.name, text = target },
                table = obj.owner and obj.owner.key or nil, exists = obj.keep_existing or nil }
  end
  return {
    server_version = plan.server_version, target_server_version = plan.target_server_version,
    objects = list, pre_data = plan.pre_data, post_data = plan.post_data, tables = tables,
    sequences = plan.sequences, skipped = plan.skipped, warnings = plan.warnings,
    conflicts = plan.conflicts, errors = plan.errors, missing = plan.missing, existing = plan.existing,
    runnable = #plan.errors == 0 and #plan.conflicts == 0, timing = plan.timing,
  }
end

function M.json(plan)
  return require("tide.json").encode(M.data(plan))
end

return M
