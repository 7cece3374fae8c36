-- Helpers of the schema tests (schema_*_test.lua): fixtures loaded with psql, and pg_dump
-- --schema-only of source and target compared object by object. Databases made next to the
-- file's own: tests/lib/pg.lua (P.fresh_db).
local T = require "testlib"

local M = {}

M.PG_BIN = "/usr/lib/postgresql/15/bin/"

-- Run a shell command; raise with its output when it fails; return the output.
function M.sh_ok(cmd)
  local code, out = T.sh(cmd)
  if code ~= 0 then error(cmd .. "\nfailed with status " .. tostring(code) .. ":\n" .. out, 2) end
  return out
end

-- Load a SQL file with psql (stops at the first error).
function M.load_sql(url, file)
  return M.sh_ok(M.PG_BIN .. "psql -X -q -v ON_ERROR_STOP=1 -d '" .. url .. "' -f " .. file)
end

-- pg_dump --schema-only, split into objects by its "-- Name: ...; Type: ...; Schema: ..."
-- headers. Returns { [header] = text }, count; SET lines and \restrict markers are left out.
-- opts.exclude_schema: a schema pg_dump leaves out (-N).
function M.dump_objects(url, opts)
  local exclude = opts and opts.exclude_schema and (" -N '" .. opts.exclude_schema .. "'") or ""
  local out = M.sh_ok(M.PG_BIN .. "pg_dump --schema-only" .. exclude .. " -d '" .. url .. "'")
  local objects, current, count = {}, nil, 0
  for line in (out .. "\n"):gmatch("(.-)\n") do
    local name, kind, schema_name, owner = line:match("^%-%- Name: (.*); Type: (.*); Schema: (.*); Owner: (.*)$")
    if name then
      local key = kind .. " | " .. schema_name .. " | " .. name .. " | " .. owner
      local n = 1
      while objects[key .. " #" .. n] do n = n + 1 end
      current = key .. " #" .. n
      objects[current] = {}
      count = count + 1
    elseif current and line ~= "" and not line:match("^%-%-") and not line:match("^SET ")
      and not line:match("^\\u?n?restrict") then
      table.insert(objects[current], line)
    end
  end
  for key, lines in pairs(objects) do objects[key] = table.concat(lines, "\n") end
  return objects, count
end

-- The objects that differ between the dumps of two databases, sorted; then both counts and
-- the source's objects.
function M.dump_differences(source_url, target_url, opts)
  local source_objects, source_count = M.dump_objects(source_url, opts)
  local target_objects, target_count = M.dump_objects(target_url, opts)
  local differences = {}
  for key, text in pairs(source_objects) do
    if target_objects[key] == nil then
      differences[#differences + 1] = "missing on the target: " .. key
    elseif target_objects[key] ~= text then
      differences[#differences + 1] = "differs: " .. key .. "\n  source: " .. text .. "\n  target: " .. target_objects[key]
    end
  end
  for key in pairs(target_objects) do
    if source_objects[key] == nil then differences[#differences + 1] = "only on the target: " .. key end
  end
  table.sort(differences)
  return differences, source_count, target_count, source_objects
end

-- The schema tests' task: migrate = { "schema" } between two databases, `extra` keys added.
function M.task_maker(name)
  return function(source_url, target_url, extra)
    local def = { name = name, source = source_url, target = target_url, migrate = { "schema" } }
    for k, v in pairs(extra or {}) do def[k] = v end
    return require("tide").task(def)
  end
end

-- The plan of a task, and its open target connection (the source is closed).
function M.build(task)
  local source, target = require("tide.connect").open_both(task)
  local plan = require("tide.plan").build(task, source, target)
  source:close()
  return plan, target
end

-- Plan (no errors, no conflicts) and run the schema phase; returns the plan.
function M.migrate(task)
  local plan, target = M.build(task)
  T.eq(plan.errors, {}, "plan errors")
  T.eq(plan.conflicts, {}, "plan conflicts")
  require("tide.schema").run(task, plan, target)
  target:close()
  return plan
end

return M
