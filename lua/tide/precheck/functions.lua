-- Prechecks about the functions the schema phase creates: a LANGUAGE c function needs its
-- shared library on the target server (CREATE FUNCTION loads it, check_function_bodies or
-- not, so a missing one fails pre-data), and a superuser to create it; a LANGUAGE internal
-- function needs its symbol in the target server's own build (another major version may lack
-- it). Base types' I/O functions, conversion functions and the like are such functions.
local context = require "tide.precheck.context"
local breathe = require("tide.wait").breathe

local M = {}

-- The target's file names for a library as CREATE FUNCTION ... AS 'lib' looks for it
-- (dfmgr.c expand_dynamic_library_name): a name with a slash as it is ($libdir expanded),
-- one without in each directory of dynamic_library_path; each also with the ".so" suffix.
local function candidates(library, libdir, path)
  local function expand(name)
    local rest = name:match("^%$libdir(.*)$")
    if rest and (rest == "" or rest:sub(1, 1) == "/") then return libdir .. rest end
    return name
  end
  local list = {}
  local names = { library, library .. ".so" }
  if library:find("/", 1, true) then
    for _, name in ipairs(names) do list[#list + 1] = expand(name) end
  else
    for dir in (path or "$libdir"):gmatch("[^:]+") do
      dir = expand(dir)
      if dir:sub(1, 1) == "/" then
        for _, name in ipairs(names) do list[#list + 1] = dir .. "/" .. name end
      end
    end
  end
  return list
end
M.candidates = candidates

local function describe_list(list)
  local names = {}
  for i, obj in ipairs(list) do
    if i > 3 then names[#names + 1] = "and " .. (#list - 3) .. " more"; break end
    names[#names + 1] = obj.ident
  end
  return table.concat(names, ", ")
end

M.checks = {
  {
    id = "function_library_missing", title = "C functions whose library the target server lacks", grade = "fail",
    applies = function(ctx) return ctx.phases.schema == true end,
    run = function(ctx)
      local by_oid, oids = {}, {}
      for _, obj in ipairs(ctx.plan.objects) do
        breathe()
        if (obj.kind == "function" or obj.kind == "procedure") and not obj.keep_existing then
          by_oid[tostring(obj.oid)] = obj
          oids[#oids + 1] = obj.oid
        end
      end
      if #oids == 0 then return {} end
      local rows = ctx:query("source", [[
SELECT p.oid, l.lanname AS language, p.probin AS library, p.prosrc AS symbol
FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
WHERE l.lanname IN ('c', 'internal') AND p.oid = ANY($1::oid[])
ORDER BY p.probin, p.oid
]], oids)
      if #rows == 0 then return {} end
      local out = {}
      local libraries, library_order, symbols = {}, {}, {}
      for _, r in ipairs(rows) do
        local obj = by_oid[tostring(r.oid)]
        if obj and r.language == "c" and r.library then
          if not libraries[r.library] then libraries[r.library] = {}; library_order[#library_order + 1] = r.library end
          table.insert(libraries[r.library], obj)
        elseif obj and r.language == "internal" then
          symbols[#symbols + 1] = { obj = obj, symbol = r.symbol }
        end
      end
      -- internal: the symbol must be one of the target build's built-in functions, which are
      -- exactly the LANGUAGE internal rows of its own pg_proc.
      if #symbols > 0 then
        local names = {}
        for i, s in ipairs(symbols) do names[i] = s.symbol end
        local present = {}
        for _, r in ipairs(ctx:query("target", [[
SELECT DISTINCT p.prosrc AS symbol FROM pg_proc p
WHERE p.prolang = (SELECT oid FROM pg_language WHERE lanname = 'internal') AND p.prosrc = ANY($1::text[])
]], names)) do present[r.symbol] = true end
        for _, s in ipairs(symbols) do
          if not present[s.symbol] then
            out[#out + 1] = context.finding(s.obj,
              string.format("%s is LANGUAGE internal with the symbol %s, which the target server's build does not have",
                s.obj.ident, context.quote(s.symbol)),
              "a target server of a version that has it, or leave the function (and what uses it) out")
          end
        end
      end
      if #library_order == 0 then return out end
      local t = ctx:target_server()
      if not t.superuser then
        for _, library in ipairs(library_order) do
          local list = libraries[library]
          out[#out + 1] = context.finding(list[1],
            string.format("LANGUAGE c function(s) %s (library %s): only a superuser can create them, and the target role %s is not one",
              describe_list(list), library, context.quote(t.user_name)),
            "create them on the target as a superuser first and set schema.existing = \"skip\", or run the schema phase as a superuser")
        end
        return out
      end
      local settings = ctx:query("target", [[
SELECT (SELECT setting FROM pg_config WHERE name = 'PKGLIBDIR') AS libdir,
       current_setting('dynamic_library_path') AS path
]])[1]
      local files, per_library = {}, {}
      for _, library in ipairs(library_order) do
        per_library[library] = candidates(library, settings.libdir or "", settings.path)
        for _, f in ipairs(per_library[library]) do files[#files + 1] = f end
      end
      local exists = {}
      for _, r in ipairs(ctx:query("target", [[
SELECT f AS file, coalesce(NOT (pg_stat_file(f, true)).isdir, false) AS present
FROM unnest($1::text[]) AS f
]], files)) do exists[r.file] = r.present end
      for _, library in ipairs(library_order) do
        local found = false
        for _, f in ipairs(per_library[library]) do found = found or exists[f] == true end
        if not found then
          local list = libraries[library]
          local f = context.finding(list[1],
            string.format("library %s of LANGUAGE c function(s) %s is not on the target server (looked for %s)",
              library, describe_list(list), table.concat(per_library[library], ", ")),
            "install the library on the target server (the package or build that provides it), or leave these functions and what uses them out")
          f.object = "library " .. library
          out[#out + 1] = f
        end
      end
      return out
    end,
  },
}

return M
