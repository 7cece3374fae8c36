-- Kinds: text search parser, template, dictionary and configuration (see tide.kinds for the
-- fields). Written from pg_ts_parser, pg_ts_template, pg_ts_dict and pg_ts_config /
-- pg_ts_config_map as pg_dump writes them: a configuration is created on its parser, then
-- one ALTER ... ADD MAPPING per token type, each with its dictionaries in order (COPY = would
-- take the mappings of the target's configuration, not the source's).
--
-- Parsers and templates need a superuser (their functions are C functions, or wrappers of
-- the server's own); dictionaries and configurations do not. Text search objects an
-- extension made (dict_int's template, say) come with CREATE EXTENSION.
local ddl = require "tide.ddl"

-- What a definition points at: an object of the plan by its oid (its target name), else
-- the server's own or an extension's, whose schema follows the schema map (ddl.lookup).
local function reference(ctx, class, oid, space, schema, name)
  local obj = oid and ctx.object_at(class, oid)
  if obj and obj.target and obj.target.schema then return ddl.qualified(obj.target.schema, obj.target.name) end
  return ddl.qualified(ddl.lookup(ctx, space, schema, name))
end

-- A function given as { schema, name, oid } (tide.catalog's *_json columns).
local function function_reference(ctx, fn)
  return reference(ctx, "pg_proc", fn[3], "function", fn[1], fn[2])
end

local function ts_kind(name, list, class, word, rank, create, extra)
  local kind = {
    name = name, list = list, class = class, phase = "pre", rank = rank, space = name,
    word = word:lower(),   -- "text search configuration app.docs" in messages
    kind_in_keys = true,   -- app.docs may also be a table, or another text search kind
    by_name = true,        -- found by name in definitions (tide.ddl.lookup: '...'::regconfig)
    create = create,
    reference = function(_, obj) return word .. " " .. ddl.target(obj) end,
    drop = function(_, obj) return "DROP " .. word .. " " .. ddl.target(obj) end,
  }
  for k, v in pairs(extra or {}) do kind[k] = v end
  return kind
end

local PARSER_FUNCTIONS = { { "start", "START" }, { "gettoken", "GETTOKEN" }, { "end", "END" },
  { "lextypes", "LEXTYPES" }, { "headline", "HEADLINE" } }

-- Parsers have no owner (pg_ts_parser has no owner column), nor have templates.
local parser = ts_kind("text_search_parser", "ts_parsers", "pg_ts_parser", "TEXT SEARCH PARSER", 63,
  function(ctx, obj)
    local functions, parts = obj.row.functions or {}, {}
    for _, f in ipairs(PARSER_FUNCTIONS) do
      if functions[f[1]] then parts[#parts + 1] = f[2] .. " = " .. function_reference(ctx, functions[f[1]]) end
    end
    return { { sql = "CREATE TEXT SEARCH PARSER " .. ddl.target(obj) .. " (\n    " .. table.concat(parts, ",\n    ") .. "\n)" } }
  end, { owned = false })

local template = ts_kind("text_search_template", "ts_templates", "pg_ts_template", "TEXT SEARCH TEMPLATE", 64,
  function(ctx, obj)
    local functions, parts = obj.row.functions or {}, {}
    for _, f in ipairs({ { "init", "INIT" }, { "lexize", "LEXIZE" } }) do
      if functions[f[1]] then parts[#parts + 1] = f[2] .. " = " .. function_reference(ctx, functions[f[1]]) end
    end
    return { { sql = "CREATE TEXT SEARCH TEMPLATE " .. ddl.target(obj) .. " (\n    " .. table.concat(parts, ",\n    ") .. "\n)" } }
  end, { owned = false })

-- The options are pg_ts_dict.dictinitoption as the server stored it ("stopwords = 'english',
-- language = 'english'"): names and literals only, used as they are.
local dictionary = ts_kind("text_search_dictionary", "ts_dictionaries", "pg_ts_dict", "TEXT SEARCH DICTIONARY", 65,
  function(ctx, obj)
    local row = obj.row
    local sql = "CREATE TEXT SEARCH DICTIONARY " .. ddl.target(obj) .. " (\n    TEMPLATE = "
      .. reference(ctx, "pg_ts_template", row.template_oid, "text_search_template", row.template_schema, row.template_name)
    if row.options and row.options ~= "" then sql = sql .. ",\n    " .. row.options end
    return { { sql = sql .. "\n)" } }
  end)

-- The mappings come as { token, dictionary oid, dictionary schema, dictionary name } in
-- token then sequence order; one ADD MAPPING per token, as pg_dump writes them.
local configuration = ts_kind("text_search_configuration", "ts_configs", "pg_ts_config", "TEXT SEARCH CONFIGURATION", 66,
  function(ctx, obj)
    local row = obj.row
    local target = ddl.target(obj)
    local steps = { { sql = "CREATE TEXT SEARCH CONFIGURATION " .. target .. " (\n    PARSER = "
      .. reference(ctx, "pg_ts_parser", row.parser_oid, "text_search_parser", row.parser_schema, row.parser_name) .. "\n)" } }
    local tokens, dictionaries = {}, {}
    for _, m in ipairs(row.mappings or {}) do
      local token = m[1]
      if not dictionaries[token] then tokens[#tokens + 1] = token; dictionaries[token] = {} end
      table.insert(dictionaries[token], reference(ctx, "pg_ts_dict", m[2], "text_search_dictionary", m[3], m[4]))
    end
    for _, token in ipairs(tokens) do
      steps[#steps + 1] = { kind = "text_search_mapping", suffix = "mapping/" .. token,
        sql = "ALTER TEXT SEARCH CONFIGURATION " .. target .. "\n    ADD MAPPING FOR " .. ddl.quote(token)
          .. " WITH " .. table.concat(dictionaries[token], ", ") }
    end
    return steps
  end)

return { parser, template, dictionary, configuration }
