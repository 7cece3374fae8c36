-- tide.ddl — writing DDL with mapped names.
--
-- Every statement pgtide runs on the target is either built here from catalog rows, or is a
-- definition the source server printed (pg_get_indexdef, pg_get_constraintdef, pg_get_viewdef,
-- pg_get_functiondef, ...) with the names inside it mapped by tide.sqlident's tokenizer —
-- never by string replace, so a literal or a comment that happens to contain a name is left
-- alone. With no `rename` in the playbook (ctx.identity) definitions are used byte for byte.
--
-- The functions take a naming context `ctx` that the planner builds (tide.plan):
--   ctx.identity          true when no name changes
--   ctx.map               the tide.rename mapper
--   ctx.cat               the source catalog (tide.catalog)
--   ctx.by_name[space.."\0"..schema.."\0"..name] → object, spaces "relation", "type",
--                         "function", "collation"
--   ctx.schema_names[name] → true for the source's schemas
--   ctx.objects           every catalog object (for the list of renamed names)
--   ctx.object_at(class, oid) → the object standing for a catalog row (tide.plan.objects)
--   ctx.row_at(class, oid)    → that catalog row itself
--   ctx.map_name(kind, schema, name) → target schema, name (the mapper, or unchanged)
--   ctx.role_exists(name) → true when the role exists on the target
--   ctx.warn(obj, message), ctx.error(obj, message)   into the plan's warnings / errors
-- and objects carrying `schema`, `name` (source), `target = { schema =, name = }`, `oid`.
local sqlident = require "tide.sqlident"

local ddl = {}

local SYSTEM_SCHEMAS = { pg_catalog = true, information_schema = true, pg_toast = true }
ddl.SYSTEM_SCHEMAS = SYSTEM_SCHEMAS

ddl.quote = sqlident.quote

function ddl.qualified(schema, name)
  return sqlident.quote(schema) .. "." .. sqlident.quote(name)
end

-- The object's target name, quoted and schema-qualified.
function ddl.target(obj)
  return ddl.qualified(obj.target.schema, obj.target.name)
end

-- A string literal that reads the same whatever standard_conforming_strings is.
function ddl.literal(s)
  if s:find("\\", 1, true) then
    return "E'" .. (s:gsub("\\", "\\\\"):gsub("'", "''")) .. "'"
  end
  return "'" .. (s:gsub("'", "''")) .. "'"
end

------------------------------------------------------------------------ name lookups

-- Target schema and name of the object `schema.name` referenced from some definition.
-- space: "relation" (tables, views, sequences, ...), "type", "function", "collation".
-- Objects pgtide does not migrate (an extension's type, say) keep their name; their schema
-- follows the schema map, as CREATE EXTENSION puts them in the mapped schema.
function ddl.lookup(ctx, space, schema, name)
  if ctx.identity or schema == nil or SYSTEM_SCHEMAS[schema] then return schema, name end
  local obj = ctx.by_name[space .. "\0" .. schema .. "\0" .. name]
  if not obj and space == "type" then obj = ctx.by_name["relation\0" .. schema .. "\0" .. name] end
  if obj then return obj.target.schema, obj.target.name end
  -- Only names in a schema of the source are mapped: `new.total` in a trigger function is a
  -- record field, not a schema's object.
  if ctx.schema_names[schema] then return ctx.map:schema(schema), name end
  return schema, name
end

function ddl.relation_by_name(ctx, schema, name)
  return ctx.by_name["relation\0" .. schema .. "\0" .. name]
end

-- Source column names of a relation object, in order.
function ddl.column_names(ctx, rel)
  local names = {}
  for i, c in ipairs(ctx.cat.columns_by_relid[rel.oid] or {}) do names[i] = c.name end
  return names
end

-- Target name of column `column` of relation object `rel` (source names).
function ddl.column(ctx, rel, column)
  if ctx.identity or rel == nil then return column end
  return ctx.map:column(rel.schema, rel.name, column)
end

------------------------------------------------------------------------ definitions

-- Type text as format_type() prints it ("public.mood[]", "character varying(20)"):
-- schema-qualified names are mapped as types.
function ddl.type_text(ctx, text)
  if ctx.identity or not text:find(".", 1, true) then return text end
  return (sqlident.rewrite(text, function(parts)
    if #parts ~= 2 then return nil end
    local s, n = ddl.lookup(ctx, "type", parts[1].name, parts[2].name)
    if s == parts[1].name and n == parts[2].name then return nil end
    return { s, n }
  end))
end

-- A collation reference for COLLATE: schema and name as the catalog gave them.
function ddl.collation(ctx, schema, name)
  local s, n = ddl.lookup(ctx, "collation", schema, name)
  return ddl.qualified(s, n)
end

-- Operator classes (and other names right after an operand: "body app.gin_trgm_ops") are
-- not objects pgtide migrates, but when they come from an extension in a renamed schema they
-- live in the mapped schema on the target. tide.sqlident leaves these positions alone.
local function map_operand_qualifiers(ctx, sql)
  return (sqlident.rewrite(sql, function(parts, c)
    if #parts ~= 2 or (c.next and c.next.text == "(") then return nil end
    local prev = c.prev
    local after_operand = prev and (prev.type == "quoted" or prev.text == ")"
      or (prev.type == "ident" and (prev.keyword == nil or prev.keyword == "unreserved")))
    if not after_operand or not ctx.schema_names[parts[1].name] then return nil end
    local schema = ctx.map:schema(parts[1].name)
    if schema == parts[1].name then return nil end
    return { schema, parts[2].name }
  end))
end

-- OPERATOR(schema.op) in an expression: the schema of a user operator follows the schema
-- map (operators keep their names). tide.sqlident sees the schema as a one-part name before
-- a dot that no name follows.
function ddl.map_operator_schemas(ctx, sql)
  if ctx.identity or not sql:find("[Oo][Pp][Ee][Rr][Aa][Tt][Oo][Rr]%s*%(") then return sql end
  return (sqlident.rewrite(sql, function(parts, c)
    if #parts ~= 1 or not (c.next and c.next.text == ".") or not (c.prev and c.prev.text == "(") then return nil end
    local word = c.before(2)
    if not (word and word.word == "operator") or not ctx.schema_names[parts[1].name] then return nil end
    local schema = ctx.map:schema(parts[1].name)
    if schema == parts[1].name then return nil end
    return { schema }
  end))
end

-- A definition the server printed for something that belongs to relation `rel` (index,
-- constraint, trigger, policy expression, column default). opts:
--   expression  the text is an expression, not a statement
--   own_kind, own   the definition names its own object (CREATE INDEX name ...): its kind
--                   and the object whose target name goes there
--   describe    what to name in warnings
function ddl.definition(ctx, sql, rel, opts)
  opts = opts or {}
  if ctx.identity or sql == nil then return sql end
  -- A domain's CHECK or default belongs to no table: only qualified names can be in it.
  if rel == nil then return (ddl.query(ctx, sql, opts.warn_object, opts.describe or "definition")) end
  sql = ddl.map_operator_schemas(ctx, sql)
  if not opts.expression then sql = map_operand_qualifiers(ctx, sql) end
  local out, warnings = sqlident.rename_in_definition(sql, {
    schema = rel and rel.schema, table = rel and rel.name, expression = opts.expression,
    columns = function(schema, table_name)
      local other = ddl.relation_by_name(ctx, schema, table_name)
      return other and ddl.column_names(ctx, other) or {}
    end,
    relation = function(kind, schema, name)
      if opts.own and kind == opts.own_kind and name == opts.own.name then
        return opts.own.target.schema, opts.own.target.name
      end
      if kind == "function" then return ddl.lookup(ctx, "function", schema, name) end
      if kind == "type" then return ddl.lookup(ctx, "type", schema, name) end
      if kind == "collation" then return ddl.lookup(ctx, "collation", schema, name) end
      if kind == "text_search_configuration" or kind == "text_search_dictionary" then
        return ddl.lookup(ctx, kind, schema, name)
      end
      return ddl.lookup(ctx, "relation", schema, name)
    end,
    column = function(schema, table_name, column)
      if schema == nil or table_name == nil then return column end
      local other = ddl.relation_by_name(ctx, schema, table_name)
      return ddl.column(ctx, other, column)
    end,
  })
  for _, w in ipairs(warnings) do ctx.warn(opts.warn_object, (opts.describe or "definition") .. ": " .. w) end
  return out
end

-- Text search configurations and dictionaries named in '...'::regconfig / ::regdictionary
-- literals (to_tsvector('app.docs_cfg'::regconfig, ...)): value → kind, and the literal
-- mapped (sqlident's name_literal).
local TEXT_SEARCH_CASTS = { regconfig = "text_search_configuration", regdictionary = "text_search_dictionary" }

function ddl.text_search_literal(ctx, parts, c)
  local kind = TEXT_SEARCH_CASTS[c.cast]
  if not kind or #parts ~= 2 then return nil end
  local s, n = ddl.lookup(ctx, kind, parts[1].name, parts[2].name)
  if s == parts[1].name and n == parts[2].name then return nil end
  return { s, n }
end

------------------------------------------------------------------------ query bodies

-- Source names that are mapped to something else: a bare mention of one of them in a view
-- or function body cannot be placed safely, so it is reported.
local function renamed_words(ctx)
  if ctx.renamed_words then return ctx.renamed_words end
  local words = {}
  for _, obj in ipairs(ctx.objects) do
    if obj.selected and obj.target and obj.name and obj.target.name ~= obj.name then
      words[obj.name] = obj.kind .. " " .. obj.name
    end
    if obj.selected and obj.columns then
      for _, c in ipairs(obj.columns) do
        if c.target ~= c.name then words[c.name] = "column " .. obj.name .. "." .. c.name end
      end
    end
  end
  ctx.renamed_words = words
  return words
end

local function is_alias_token(token)
  return token and (token.type == "quoted"
    or (token.type == "ident" and (token.keyword == nil or token.keyword == "unreserved")))
end

-- Rewrites a query (a view's or rule's body, a function body) to the mapped names.
-- Relation, function and type names are schema-qualified in what the server prints with
-- search_path = pg_catalog, so they are found by their two parts. Column references are
-- `alias.column`: the aliases are collected first (an implicit alias is the relation's own
-- name, and follows its renaming). Returns the new text and whether anything changed;
-- bare names that match a renamed object are reported through ctx.warn. preset: aliases
-- known beforehand ({ new = rel, old = rel } in a rule).
function ddl.query(ctx, sql, obj, what, preset)
  if ctx.identity then return sql, false end
  local original = sql
  sql = ddl.map_operator_schemas(ctx, sql)
  local aliases = {}      -- alias → { rel =, implicit = } | false when ambiguous
  for alias, rel in pairs(preset or {}) do aliases[alias] = { rel = rel, implicit = false } end
  local function relation_at(parts, c)
    if #parts ~= 2 or (c.next and c.next.text == "(") or (c.prev and c.prev.text == "::") then return nil end
    return ddl.relation_by_name(ctx, parts[1].name, parts[2].name)
  end
  sqlident.rewrite(sql, function(parts, c)
    local rel = relation_at(parts, c)
    if rel then
      local nxt = c.next
      if nxt and nxt.word == "as" then nxt = c.after(2) end
      local alias, implicit = parts[2].name, true
      if is_alias_token(nxt) then alias, implicit = nxt.name, false end
      local seen = aliases[alias]
      if seen == nil then aliases[alias] = { rel = rel, implicit = implicit }
      elseif seen and (seen.rel ~= rel or seen.implicit ~= implicit) then aliases[alias] = false end
    end
    return nil
  end)
  local words = renamed_words(ctx)
  local reported = {}
  local out = sqlident.rewrite(sql, function(parts, c)
    local n = #parts
    local first, last = parts[1].name, parts[n].name
    if n == 1 then
      if words[first] and not reported[first] and not (c.prev and c.prev.word == "as") then
        reported[first] = true
        ctx.warn(obj, string.format("%s mentions %s without its table or schema, so pgtide left that name as it is: check it on the target",
          what, words[first]))
      end
      return nil
    end
    local result
    if n == 2 and aliases[first] and not (c.next and c.next.text == "(") then
      local a = aliases[first]
      local new_alias = a.implicit and a.rel.target.name or first
      result = { new_alias, ddl.column(ctx, a.rel, last) }
    elseif n == 2 and aliases[first] == false then
      ctx.warn(obj, string.format("%s uses the alias %s for two different relations, so pgtide left the columns behind it as they are: check it on the target", what, first))
      return nil
    elseif n == 2 and c.next and c.next.text == "(" then
      result = { ddl.lookup(ctx, "function", first, last) }
    elseif n == 2 and c.prev and c.prev.text == "::" then
      result = { ddl.lookup(ctx, "type", first, last) }
    elseif n == 2 and relation_at(parts, c) then
      local rel = relation_at(parts, c)
      result = { rel.target.schema, rel.target.name }
    elseif n == 2 and ctx.schema_names[first] then
      result = { ddl.lookup(ctx, "type", first, last) }
    elseif n == 2 then
      if words[last] and not reported[last] then
        reported[last] = true
        ctx.warn(obj, string.format("%s mentions %s.%s, and %s is renamed; pgtide left that name as it is: check it on the target",
          what, first, last, words[last]))
      end
      return nil
    elseif n == 3 then
      local rel = ddl.relation_by_name(ctx, parts[1].name, parts[2].name)
      if not rel then return nil end
      result = { rel.target.schema, rel.target.name, ddl.column(ctx, rel, last) }
    else
      return nil
    end
    for i, part in ipairs(parts) do
      if result[i] ~= part.name then return result end
    end
    return nil
  end, { name_literal = function(parts, c) return ddl.text_search_literal(ctx, parts, c) end })
  return out, out ~= original
end

-- pg_get_functiondef output: header names and types through ddl.query, and the body (a
-- dollar-quoted string) rewritten as a query of its own.
function ddl.routine(ctx, sql, obj)
  if ctx.identity then return sql end
  local what = obj.kind .. " " .. obj.schema .. "." .. obj.name
  local header = ddl.query(ctx, sql, obj, "the definition of " .. what)
  local out = {}
  for _, token in ipairs(sqlident.tokens(header)) do
    local text = token.text
    if token.type == "dollar" then
      local tag = text:match("^(%$[^$]*%$)")
      local body = text:sub(#tag + 1, -#tag - 1)
      local ok, new_body = pcall(ddl.query, ctx, body, obj, "the body of " .. what)
      if not ok then
        ctx.warn(obj, "the body of " .. what .. " could not be read as SQL (" .. tostring(new_body) .. "): left as it is, check it on the target")
      elseif new_body ~= body then
        while new_body:find(tag, 1, true) do tag = "$" .. tag:sub(2, -2) .. "x$" end
        text = tag .. new_body .. tag
      end
    end
    out[#out + 1] = text
  end
  return table.concat(out)
end

return ddl
