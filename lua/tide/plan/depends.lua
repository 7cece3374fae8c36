-- tide.plan.depends — what depends on what, from pg_depend, and what to do when a selected
-- object needs one that the selection left out.
--
-- Each pg_depend row is mapped to objects through model.identity (a column default stands
-- for its table, a view's _RETURN rule for the view, a row type for its table, an extension
-- member for its extension). An edge remembers through which part of the dependent it runs
-- (a column, a default, a CHECK constraint) and which columns of the referenced relation it
-- uses, so that schema.dependents = "drop" can leave out just that piece.
local objects = require "tide.plan.objects"
local breathe = require("tide.wait").breathe
local id_of = require("tide.plan.ids").id

local M = {}

-- Most edges run through no piece and name no column (an index needs its table): they are one
-- of two shared edges, never written, until something is added (add_via, add_ref_column,
-- M.own), which keeps a table per edge out of a plan of 100,000 tables. The shared ones, and
-- their empty lists, refuse new fields.
local function frozen(t)
  return setmetatable(t, { __newindex = function() error("tide.plan.depends: shared edge written", 2) end })
end
local NONE = frozen({})
local PART = frozen({ vias = NONE, whole = false, ref_columns = NONE })
local WHOLE = frozen({ vias = NONE, whole = true, ref_columns = NONE })

local function edge(dep, ref)
  dep.deps = dep.deps or {}
  if not dep.deps[ref] then dep.deps[ref] = PART end
end

-- The edge dep -> ref as a table of its own, to write to.
function M.own(dep, ref)
  local e = dep.deps[ref]
  if e == PART or e == WHOLE then
    e = { vias = NONE, whole = e.whole, ref_columns = NONE }
    dep.deps[ref] = e
  end
  return e
end

local function set_whole(dep, ref)
  local e = dep.deps[ref]
  if e == PART then dep.deps[ref] = WHOLE elseif e ~= WHOLE then e.whole = true end
end

local function add_via(dep, ref, via)
  local e = M.own(dep, ref)
  if e.vias == NONE then e.vias = {} end
  e.vias[#e.vias + 1] = via
end

local function add_ref_column(dep, ref, num)
  local e = M.own(dep, ref)
  if e.ref_columns == NONE then e.ref_columns = {} end
  e.ref_columns[num] = true
end

-- M.resolve(model [, { all_ref_columns = bool }]): fills obj.deps = { [ref] = edge } for every
-- object (each edge's ref_columns where some of ref's columns are left out, or everywhere with
-- all_ref_columns: schema.dependents = "drop" may leave more out later), and returns the
-- references pgtide cannot place (operators, text search configurations, foreign servers,
-- ...) as a list of { object =, class =, oid = }.
function M.resolve(model, opts)
  opts = opts or {}
  local cat = model.cat
  local default_column = {}
  for _, columns in pairs(cat.columns_by_relid) do
    for _, c in ipairs(columns) do
      breathe()
      if c.default_oid then default_column[c.default_oid] = c.num end
    end
  end
  local external = {}
  for d in require("tide.catalog.rows").each_depend(cat.depends) do
    breathe()
    local dep_id = id_of(d.class, d.objid)
    local dep = model.identity[dep_id]
    -- A sequence OWNED BY a column points at its table, but is created before it (the
    -- column's default uses it); the ownership is a step after the table instead.
    local owned_by = dep and d.deptype == "a" and dep.kind == "sequence" and d.refclass == "pg_class"
    if dep and not owned_by then
      local ref_id = id_of(d.refclass, d.refobjid)
      local ref = model.identity[ref_id]
      -- An extension's member stands for its extension; so does a part of an extension's
      -- table (its unique constraint, referenced by a foreign key): CREATE EXTENSION makes it.
      local part = model.exact[ref_id]
      local extension = cat.extension_of[d.refclass .. ":" .. d.refobjid]
        or (part and part.owner_missing and cat.extension_of[part.owner_missing])
      if extension and (not ref or ref.owner_missing) then
        ref = model.exact[id_of("pg_extension", extension)]
        -- The extension's relations it uses (a configuration table, whose rows the full load
        -- copies: a foreign key to it, a materialized view on it wait for them).
        if ref and d.refclass == "pg_class" then
          dep.extension_relations = dep.extension_relations or {}
          dep.extension_relations[d.refobjid] = true
        end
      end
      if not ref then
        external[#external + 1] = { object = dep, class = d.refclass, oid = d.refobjid }
      elseif ref ~= dep then
        edge(dep, ref)
        local exact = model.exact[dep_id]
        if d.class == "pg_class" and d.objsubid > 0 and dep.columns then
          add_via(dep, ref, { column = d.objsubid })
        elseif d.class == "pg_attrdef" then
          add_via(dep, ref, { default = default_column[d.objid] })
        elseif exact and exact ~= dep and exact.kind == "constraint" and exact.inline_of == dep then
          add_via(dep, ref, { check = exact })
        else
          set_whole(dep, ref)
        end
        -- The referenced columns matter only where some of ref's are left out (missing_part):
        -- by select.columns (objects.select ran before), or, with schema.dependents = "drop",
        -- by check_missing later (a column whose type is left out).
        if d.refclass == "pg_class" and d.refobjsubid > 0 and (ref.dropped_columns or opts.all_ref_columns) then
          add_ref_column(dep, ref, d.refobjsubid)
        end
      end
    end
  end
  -- Every object needs its schema (pg_depend has no row for `public`, whose oid is low).
  for _, obj in ipairs(model.objects) do
    breathe()
    local schema = obj.kind ~= "schema" and obj.kind ~= "extension" and model.schemas[obj.schema]
    if schema and obj.inline_of == nil then edge(obj, schema); set_whole(obj, schema) end
  end
  return external
end

local function column_name(obj, num)
  for _, c in ipairs(obj.columns or {}) do if c.num == num then return c.name end end
  local dropped = obj.dropped_columns and obj.dropped_columns[num]
  return dropped and dropped.name or tostring(num)
end

-- Describes what of `ref` is missing for edge e: the object itself, or some of its columns
-- that the selection dropped. Returns nil when nothing is missing.
local function missing_part(ref, e)
  if not ref.selected then return objects.describe(ref), ref.reason end
  if ref.dropped_columns then
    for num in pairs(e.ref_columns) do
      if ref.dropped_columns[num] then
        return "column " .. ref.ident .. "." .. ref.dropped_columns[num].name,
          "excluded by select.columns"
      end
    end
  end
  return nil
end

-- The piece of `obj` that an edge runs through, as words: "column x of table t".
local function piece(obj, e)
  if e.whole or #e.vias == 0 then return objects.describe(obj) end
  local via = e.vias[1]
  if via.column then return "column " .. column_name(obj, via.column) .. " of " .. objects.describe(obj) end
  if via.default then return "the default of column " .. column_name(obj, via.default) .. " of " .. objects.describe(obj) end
  if via.check then return "constraint " .. via.check.name .. " of " .. objects.describe(obj) end
  return objects.describe(obj)
end

-- Leaves out the pieces an edge runs through (columns, defaults, CHECK constraints), when
-- the edge runs only through such pieces. Returns true when it could.
local function drop_pieces(model, obj, e, skipped)
  if e.whole or #e.vias == 0 then return false end
  for _, via in ipairs(e.vias) do
    if via.column then
      for i, c in ipairs(obj.columns or {}) do
        if c.num == via.column then
          table.remove(objects.own_columns(model, obj), i)
          obj.dropped_columns = obj.dropped_columns or {}
          obj.dropped_columns[c.num] = c
          skipped[#skipped + 1] = { kind = "column", schema = obj.schema, name = obj.name .. "." .. c.name,
            key = "column:" .. obj.ident .. "." .. c.name, table = obj.name,
            reason = "its type is left out (schema.dependents = \"drop\")" }
          break
        end
      end
    elseif via.default then
      for _, c in ipairs(obj.columns or {}) do
        if c.num == via.default then c.drop_default = true end
      end
    elseif via.check then
      for i, con in ipairs(obj.checks or {}) do
        if con == via.check then table.remove(obj.checks, i); break end
      end
    end
  end
  return true
end

-- Does any reference of `obj` lack something (check_missing's test of each reference, without
-- its reports)? Most objects need nothing left out: they skip the sorting and the reports.
local NO_COLUMNS = { ref_columns = NONE }
local function lacks_any(obj)
  for ref, e in pairs(obj.deps or NONE) do
    local shown = ref
    while shown.owner and not shown.owner.selected do shown = shown.owner end
    if missing_part(shown, shown == ref and e or NO_COLUMNS) then return true end
  end
  return false
end

-- M.check_missing(model, opts): for every selected object that needs a left-out one (or a
-- dropped column), either reports an error (opts.policy == "error") or leaves out the
-- dependent piece with a warning (policy "drop"), transitively.
--   opts.exists_on_target(ref) → true when the target already has what is missing
--   opts.missing, opts.errors, opts.warnings, opts.skipped: the plan's lists to fill
function M.check_missing(model, opts)
  -- Who depends on each object: needed only when the policy leaves out a dependent whole.
  local dependents
  local function dependents_of(ref)
    if not dependents then
      dependents = {}
      for _, obj in ipairs(model.objects) do
        breathe()
        for other in pairs(obj.deps or {}) do
          dependents[other] = dependents[other] or {}
          table.insert(dependents[other], obj)
        end
      end
    end
    return dependents[ref] or {}
  end
  local queue, queued = {}, {}
  for _, obj in ipairs(model.objects) do
    breathe()
    if obj.selected and obj.inline_of == nil then queue[#queue + 1] = obj; queued[obj] = true end
  end
  local reported = {}
  local i = 1
  while i <= #queue do
    breathe()
    local obj = queue[i]
    i = i + 1
    queued[obj] = nil
    if obj.selected and lacks_any(obj) then
      -- Visit references in a stable order (pairs order is not).
      local refs = {}
      for ref in pairs(obj.deps or {}) do refs[#refs + 1] = ref end
      table.sort(refs, function(a, b) return a.key < b.key end)
      local told = {}
      for _, ref in ipairs(refs) do
        local e = obj.deps[ref]
        -- A part of a left-out table (its primary key, say) is reported as the table.
        local shown = ref
        while shown.owner and not shown.owner.selected do shown = shown.owner end
        local what, why = missing_part(shown, shown == ref and e or NO_COLUMNS)
        if what and told[shown] then what = nil end
        if what then told[shown] = true end
        if what and obj.selected and not opts.exists_on_target(ref) then
          local dependent = piece(obj, e)
          local entry = { object = obj.key, kind = obj.kind, needs = shown.key, needs_kind = shown.kind,
                          piece = dependent, reason = why }
          opts.missing[#opts.missing + 1] = entry
          if opts.policy == "drop" then
            entry.action = "dropped"
            opts.warnings[#opts.warnings + 1] = { kind = obj.kind, object = obj.key,
              message = string.format("%s is left out: it needs %s, which is left out (%s)", dependent, what, why) }
            if not drop_pieces(model, obj, e, opts.skipped) then
              obj.selected = false
              obj.reason = "needs " .. what .. ", which is left out"
              opts.skipped[#opts.skipped + 1] = { kind = obj.kind, schema = obj.schema, name = obj.name,
                key = obj.key, reason = obj.reason }
              for _, other in ipairs(dependents_of(obj)) do
                if other.selected and not queued[other] then queue[#queue + 1] = other; queued[other] = true end
              end
            end
          else
            entry.action = "error"
            local text = string.format("%s needs %s, which is left out (%s): select it too, or set schema.dependents = \"drop\" to leave out %s",
              dependent, what, why, dependent)
            if not reported[text] then
              reported[text] = true
              opts.errors[#opts.errors + 1] = { kind = obj.kind, object = obj.key, message = text }
            end
          end
        end
      end
    end
  end
end

return M
