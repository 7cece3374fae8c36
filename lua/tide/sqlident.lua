-- tide.sqlident: an lpeg tokenizer of PostgreSQL SQL text, for renaming identifiers safely.
--
-- The planner rewrites definitions the server returns (pg_get_indexdef, pg_get_constraintdef,
-- pg_get_triggerdef, pg_get_expr ...) to the mapped schema, table and column names. Doing that
-- with string replace would also change literals, comments and unrelated words; here every
-- byte belongs to a token, and only identifier tokens are ever re-emitted:
--
--   sqlident.tokens(sql)             -> list of tokens; concatenating their text gives sql back
--   sqlident.rewrite(sql, fn, opts)  -> new sql, number of names replaced
--   sqlident.quote(name)             -> name, double-quoted only when needed (quote_ident)
--   sqlident.rename_in_definition(sql, opts) -> new sql, warnings (see its comment)
--
-- Token types: space, comment, ident (unquoted; .name is folded to lower case as PostgreSQL
-- does, ASCII only), quoted ("..."; .name has the quotes removed and "" undone), keyword (a
-- reserved word where it cannot be a name), string ('..', E'..', B'..', X'..', N'..', U&'..'),
-- dollar ($tag$..$tag$), number, param ($1), operator, punct (`( ) [ ] , ; . : ::`).
--
-- The keyword lists are PostgreSQL 17's, by category (pg_get_keywords()). Quoting is needed
-- for every keyword that is not "unreserved", as in the server's quote_identifier().
local lpeg = require "lpeg"

local P, R, S, C, Cp, Ct, Cmt, Cc = lpeg.P, lpeg.R, lpeg.S, lpeg.C, lpeg.Cp, lpeg.Ct, lpeg.Cmt, lpeg.Cc

local sqlident = {}

local keyword_lists = {
  reserved = [[all analyse analyze and any array as asc asymmetric both case cast check collate
    column constraint create current_catalog current_date current_role current_time
    current_timestamp current_user default deferrable desc distinct do else end except false
    fetch for foreign from grant group having in initially intersect into lateral leading limit
    localtime localtimestamp not null offset on only or order placing primary references
    returning select session_user some symmetric system_user table then to trailing true union
    unique user using variadic when where window with]],
  type_func_name = [[authorization binary collation concurrently cross current_schema freeze
    full ilike inner is isnull join left like natural notnull outer overlaps right similar
    tablesample verbose]],
  col_name = [[between bigint bit boolean char character coalesce dec decimal exists extract
    float greatest grouping inout int integer interval json json_array json_arrayagg json_exists
    json_object json_objectagg json_query json_scalar json_serialize json_table json_value
    least merge_action national nchar none normalize nullif numeric out overlay position
    precision real row setof smallint substring time timestamp treat trim values varchar
    xmlattributes xmlconcat xmlelement xmlexists xmlforest xmlnamespaces xmlparse xmlpi xmlroot
    xmlserialize xmltable]],
  unreserved = [[abort absent absolute access action add admin after aggregate also alter always
    asensitive assertion assignment at atomic attach attribute backward before begin breadth by
    cache call called cascade cascaded catalog chain characteristics checkpoint class close
    cluster columns comment comments commit committed compression conditional configuration
    conflict connection constraints content continue conversion copy cost csv cube current
    cursor cycle data database day deallocate declare defaults deferred definer delete delimiter
    delimiters depends depth detach dictionary disable discard document domain double drop each
    empty enable encoding encrypted enum error escape event exclude excluding exclusive execute
    explain expression extension external family filter finalize first following force format
    forward function functions generated global granted groups handler header hold hour identity
    if immediate immutable implicit import include including increment indent index indexes
    inherit inherits inline input insensitive insert instead invoker isolation keep key keys
    label language large last leakproof level listen load local location lock locked logged
    mapping match matched materialized maxvalue merge method minute minvalue mode month move
    name names nested new next nfc nfd nfkc nfkd no normalized nothing notify nowait nulls object
    of off oids old omit operator option options ordinality others over overriding owned owner
    parallel parameter parser partial partition passing password path period plan plans policy
    preceding prepare prepared preserve prior privileges procedural procedure procedures program
    publication quote quotes range read reassign recheck recursive ref referencing refresh
    reindex relative release rename repeatable replace replica reset restart restrict return
    returns revoke role rollback rollup routine routines rows rule savepoint scalar schema
    schemas scroll search second security sequence sequences serializable server session set
    sets share show simple skip snapshot source sql stable standalone start statement statistics
    stdin stdout storage stored strict string strip subscription support sysid system tables
    tablespace target temp template temporary text ties transaction transform trigger truncate
    trusted type types uescape unbounded unconditional uncommitted unencrypted unknown unlisten
    unlogged until update vacuum valid validate validator value varying version view views
    volatile whitespace within without work wrapper write xml year yes zone]],
}

-- keyword_category["select"] == "reserved", ...; nil for a word that is no keyword.
local keyword_category = {}
for category, words in pairs(keyword_lists) do
  for word in words:gmatch("%S+") do keyword_category[word] = category end
end
sqlident.keyword_category = keyword_category

local function fold(word)
  return (word:gsub("[A-Z]", function(c) return string.char(c:byte() + 32) end))
end

-- Names already quoted, and how many: a plan quotes the same schema, table and column names
-- again and again (each object's key, each statement), and a look-up costs less than the
-- pattern. Emptied when full, so a long-running process holds a bounded number.
local answers, answer_count, ANSWERS_MAX = {}, 0, 131072

-- quote_always(name): the name as SQL text, always quoted (as libpq's PQescapeIdentifier).
function sqlident.quote_always(name)
  return '"' .. tostring(name):gsub('"', '""') .. '"'
end

-- quote(name): the name as SQL text; quoted when it is not a plain lower-case identifier, or
-- is a keyword other than an unreserved one. `$` and non-ASCII letters are quoted, like the
-- server does.
function sqlident.quote(name)
  local known = answers[name]
  if known then return known end
  assert(type(name) == "string", "sqlident.quote(name): name must be a string")
  local category = keyword_category[name]
  local text = name
  if not (name:match("^[a-z_][a-z0-9_]*$") and (category == nil or category == "unreserved")) then
    text = '"' .. name:gsub('"', '""') .. '"'
  end
  if answer_count >= ANSWERS_MAX then answers, answer_count = {}, 0 end
  answers[name], answer_count = text, answer_count + 1
  return text
end

---------------------------------------------------------------------------------------------
-- The tokenizer
---------------------------------------------------------------------------------------------

-- Matches the opening of a construct that the full pattern could not close, and raises.
local function unterminated(what, opening)
  return Cmt(Cp() * opening, function(_, _, start)
    error(string.format("sqlident: unterminated %s starting at byte %d", what, start), 0)
  end)
end

local newline = S"\n\r"
local space = S" \t\n\r\f\v" ^ 1
local line_comment = P"--" * (1 - newline) ^ 0
local block_comment = P{ "/*" * ((P(1) - P"/*" - P"*/") + lpeg.V(1)) ^ 0 * "*/" }
local ident_start = R("az", "AZ") + P"_" + R("\128\255")
local ident_rest = ident_start + R"09" + P"$"
local identifier = ident_start * ident_rest ^ 0
local quoted_body = (P'""' + (1 - P'"')) ^ 0
local quoted = P'"' * quoted_body * P'"'
local unicode_quoted = S"uU" * P"&" * quoted
local plain_string_body = (P"''" + (1 - P"'")) ^ 0
local plain_string = P"'" * plain_string_body * P"'"
local escape_string = S"eE" * P"'" * (P"\\" * P(1) + P"''" + (1 - S"'\\")) ^ 0 * P"'"
local prefixed_string = (S"bBxXnN" + S"uU" * P"&") * plain_string
-- $tag$ ... $tag$: the body runs to the next occurrence of the same opening tag.
local dollar_tag = P"$" * ((ident_start - P"$") * (ident_rest - P"$") ^ 0) ^ -1 * P"$"
local dollar_string = Cmt(C(dollar_tag), function(subject, position, tag)
  local _, close_end = subject:find(tag, position, true)
  if not close_end then
    error(string.format("sqlident: unterminated dollar-quoted string %s starting at byte %d",
      tag, position - #tag), 0)
  end
  return close_end + 1
end)
local param = P"$" * R"09" ^ 1
local digits = R"09" * (P"_" ^ -1 * R"09") ^ 0
local number = (S"0" * S"xX" * (R("09", "af", "AF") + P"_") ^ 1)
  + (S"0" * S"oO" * (R"07" + P"_") ^ 1)
  + (S"0" * S"bB" * (S"01" + P"_") ^ 1)
  + ((digits * (P"." * digits ^ -1) ^ -1 + P"." * digits) * (S"eE" * S"+-" ^ -1 * digits) ^ -1)
-- An operator is a run of operator characters that stops where a comment begins.
local operator_char = S"+-*/<>=~!@#%^&|`?"
local operator = (operator_char - P"--" - P"/*") ^ 1
local punct = P"::" + S"()[],;:."

local token_types = {
  { "space", space },
  { "comment", line_comment + block_comment },
  { "comment", unterminated("/* comment", P"/*") },
  { "string", escape_string + prefixed_string + plain_string },
  { "string", unterminated("string literal", (S"eEbBxXnN" + S"uU" * P"&") ^ -1 * P"'") },
  { "quoted", quoted + unicode_quoted },
  { "quoted", unterminated("quoted identifier", (S"uU" * P"&") ^ -1 * P'"') },
  { "ident", identifier },
  { "dollar", dollar_string },
  { "param", param },
  { "number", number },
  { "operator", operator },
  { "punct", punct },
  { "other", P(1) },
}

local one_token
for _, entry in ipairs(token_types) do
  local p = Ct(Cc(entry[1]) * Cp() * C(entry[2]))
  one_token = one_token and (one_token + p) or p
end
local all_tokens = Ct(one_token ^ 0) * -P(1)

local function is_significant(token)
  return token.type ~= "space" and token.type ~= "comment"
end

-- The name an identifier token stands for.
local function decode_quoted(text)
  local prefix_unicode = text:sub(1, 1) == "U" or text:sub(1, 1) == "u"
  local body = text:match('^[uU]?&?"(.*)"$'):gsub('""', '"')
  if prefix_unicode then
    -- U&"d\0061t\+000061": \XXXX and \+XXXXXX escapes (default escape character only).
    body = body:gsub("\\(%+?)(%x+)", function(plus, hex)
      local width = plus == "+" and 6 or 4
      if #hex < width then return nil end
      return utf8.char(tonumber(hex:sub(1, width), 16)) .. hex:sub(width + 1)
    end):gsub("\\\\", "\\")
  end
  return body
end

-- sqlident.tokens(sql) -> list of { type =, text =, pos = (byte offset), name =, keyword = }
-- `name` is set for ident and quoted tokens, `word` (lower case) for ident and keyword tokens,
-- `keyword` (category) for unquoted words that are keywords.
function sqlident.tokens(sql)
  assert(type(sql) == "string", "sqlident.tokens(sql): sql must be a string")
  local raw = lpeg.match(all_tokens, sql)
  local tokens = {}
  local previous_significant
  for _, item in ipairs(raw) do
    local token = { type = item[1], pos = item[2], text = item[3] }
    -- PostgreSQL ends a multi-character operator before a trailing + or - unless it holds one
    -- of ~!@#%^&|`? ("<-1" is "<" then "-" "1"); split the same way.
    if token.type == "operator" and #token.text > 1 and not token.text:find("[~!@#%%^&|`?]") then
      local kept = token.text:match("^(.-)[+-]*$")
      if kept == "" then kept = token.text:sub(1, 1) end
      if #kept < #token.text then
        tokens[#tokens + 1] = { type = "operator", pos = token.pos, text = kept }
        token = { type = "operator", pos = token.pos + #kept, text = token.text:sub(#kept + 1) }
      end
    end
    if token.type == "ident" then
      token.word = fold(token.text)
      token.name = token.word
      token.keyword = keyword_category[token.word]
      -- A reserved word is a name only right after a dot (t.select).
      if token.keyword == "reserved" and not (previous_significant and previous_significant.text == ".") then
        token.type = "keyword"
        token.name = nil
      end
    elseif token.type == "quoted" then
      token.name = decode_quoted(token.text)
    end
    tokens[#tokens + 1] = token
    if is_significant(token) then previous_significant = token end
  end
  return tokens
end

local function is_name_token(token)
  return token and (token.type == "ident" or token.type == "quoted")
end

-- Groups the significant tokens into dotted names. Returns the significant list and, per
-- name, { first = index, last = index } into it (parts are the name tokens at odd offsets).
local function find_names(tokens)
  local significant = {}
  for _, token in ipairs(tokens) do
    if is_significant(token) then significant[#significant + 1] = token end
  end
  local names = {}
  local i = 1
  while i <= #significant do
    if is_name_token(significant[i]) then
      local first, last = i, i
      while significant[last + 1] and significant[last + 1].text == "." and is_name_token(significant[last + 2]) do
        last = last + 2
      end
      names[#names + 1] = { first = first, last = last }
      i = last + 1
    else
      i = i + 1
    end
  end
  return significant, names
end

local function parts_of(significant, name)
  local parts = {}
  for index = name.first, name.last, 2 do
    local token = significant[index]
    parts[#parts + 1] = { text = token.text, name = token.name, quoted = token.type == "quoted",
                          keyword = token.type == "ident" and token.keyword or nil }
  end
  return parts
end

local function render_name(list)
  local out = {}
  for index, name in ipairs(list) do
    if type(name) ~= "string" or name == "" then
      error("sqlident.rewrite: a replacement name must be a non-empty string", 3)
    end
    out[index] = sqlident.quote(name)
  end
  return table.concat(out, ".")
end

-- Reads a string literal's content as a dotted name ('public."My Seq"'); nil if it is not one.
local function literal_as_name(token)
  if token.text:sub(1, 1) ~= "'" then return nil end
  local value = token.text:sub(2, -2):gsub("''", "'")
  local ok, inner = pcall(sqlident.tokens, value)
  if not ok then return nil end
  local parts, expect_name = {}, true
  for _, t in ipairs(inner) do
    if expect_name and (t.type == "ident" or t.type == "quoted") then
      parts[#parts + 1] = { text = t.text, name = t.name, quoted = t.type == "quoted" }
      expect_name = false
    elseif not expect_name and t.text == "." then
      expect_name = true
    else
      return nil
    end
  end
  if expect_name or #parts == 0 then return nil end
  return parts
end

-- sqlident.rewrite(sql, fn [, opts]) -> new sql, number of replacements
--
-- fn(parts, ctx) is called for each dotted name, in order. parts: list of
-- { text = "\"My Table\"", name = "My Table", quoted = true, keyword = nil }. ctx:
--   ctx.prev, ctx.next        the significant tokens (no space or comment) around the name
--   ctx.before(n), ctx.after(n)  the n-th significant token before / after it
--   ctx.depth                 parenthesis depth at the name
--   ctx.index                 the name's first token's place among the significant tokens
-- fn returns nil to keep the name, or a list of plain names ({ "shop", "users" }): they are
-- written quoted where needed, joined by dots, in place of the whole dotted name.
--
-- opts.name_literal(parts, ctx): the same, for a string literal cast to a reg* type
-- ('public.orders_id_seq'::regclass, as in nextval() defaults). ctx.cast is the type
-- ("regclass", "regproc", ...). The replacement is written back as a string literal.
-- Only plain '...' literals holding a dotted name are offered.
local function rewrite_tokens(tokens, fn, opts)
  local significant, names = find_names(tokens)
  local replace_at = {} -- significant index of a first token -> { last =, text = }
  local depth_at, depth = {}, 0
  for index, token in ipairs(significant) do
    if token.text == "(" then depth = depth + 1 end
    depth_at[index] = depth
    if token.text == ")" then depth = depth - 1 end
  end
  local function context(first, last)
    return {
      prev = significant[first - 1], next = significant[last + 1], depth = depth_at[first],
      index = first,
      before = function(n) return significant[first - n] end,
      after = function(n) return significant[last + n] end,
    }
  end
  local count = 0
  for _, name in ipairs(names) do
    local result = fn(parts_of(significant, name), context(name.first, name.last))
    if result ~= nil then
      if type(result) ~= "table" or #result == 0 then
        error("sqlident.rewrite: fn must return nil or a non-empty list of names", 0)
      end
      replace_at[name.first] = { last = name.last, text = render_name(result) }
      count = count + 1
    end
  end
  if opts.name_literal then
    for index, token in ipairs(significant) do
      local cast, type_token = significant[index + 1], significant[index + 2]
      if token.type == "string" and cast and cast.text == "::" and type_token
        and type_token.type == "ident" and type_token.word:match("^reg%a+$") then
        local parts = literal_as_name(token)
        if parts then
          local ctx = context(index, index)
          ctx.cast = type_token.word
          local result = opts.name_literal(parts, ctx)
          if result ~= nil then
            local text = render_name(result)
            replace_at[index] = { last = index, text = "'" .. text:gsub("'", "''") .. "'" }
            count = count + 1
          end
        end
      end
    end
  end
  -- Re-emit: untouched tokens byte for byte; a replaced name from its first to last token
  -- (spaces between its parts go with it).
  local significant_index = {}
  for index, token in ipairs(significant) do significant_index[token] = index end
  local out, skip_until = {}, nil
  for _, token in ipairs(tokens) do
    local index = significant_index[token]
    if skip_until then
      if index == skip_until then skip_until = nil end
    elseif index and replace_at[index] then
      out[#out + 1] = replace_at[index].text
      if replace_at[index].last ~= index then skip_until = replace_at[index].last end
    else
      out[#out + 1] = token.text
    end
  end
  return table.concat(out), count
end

function sqlident.rewrite(sql, fn, opts)
  assert(type(fn) == "function", "sqlident.rewrite(sql, fn [, opts]): fn must be a function")
  return rewrite_tokens(sqlident.tokens(sql), fn, opts or {})
end

---------------------------------------------------------------------------------------------
-- Renaming inside server-generated definitions
---------------------------------------------------------------------------------------------

-- sqlident.rename_in_definition(sql, opts) -> new sql, warnings (list of strings)
--
-- Rewrites one definition as the server prints it with search_path = pg_catalog (so user
-- objects come schema-qualified): CREATE INDEX, CREATE TRIGGER, a constraint definition
-- (pg_get_constraintdef), or with opts.expression = true a bare expression (column default,
-- CHECK or policy expression, generated column). opts:
--   schema, table       the table the definition belongs to (source names)
--   relation(kind, schema, name) -> new schema, new name   kind: "table", "index", "trigger",
--                       "constraint", "policy", "rule", "function", "type", "collation",
--                       "sequence" (a '...'::regclass literal)
--   column(schema, table, column) -> new name
--   columns(schema, table) -> list of the table's column names (recommended: without it any
--                       name in a column position is taken for a column)
--   expression          the text is an expression, not a statement
-- A single name counts as a column only in a column position: inside parentheses (anywhere in
-- an expression), after an operator, "(", ",", or a keyword that is not unreserved; not
-- followed by "(" (a function), not after "::" (a type) nor after another operand (an opclass,
-- NULLS, ...). Column lists after REFERENCES s.t belong to s.t; NEW.x and OLD.x in a trigger's
-- WHEN belong to the table. Subqueries and qualified names it cannot place are left as they
-- are, with a warning.
local own_name_kinds = { index = "index", concurrently = "index", exists = "index",
  trigger = "trigger", constraint = "constraint", policy = "policy", rule = "rule" }
local subquery_words = { select = true, with = true, values = true }

-- Finds the dotted name ending at significant index `last`; returns its parts' names and the
-- index of its first token, or nil.
local function dotted_name_before(significant, last)
  if not is_name_token(significant[last]) then return nil end
  local names, first = { significant[last].name }, last
  while significant[first - 1] and significant[first - 1].text == "." and is_name_token(significant[first - 2]) do
    first = first - 2
    table.insert(names, 1, significant[first].name)
  end
  return names, first
end

-- The frame (statement, columns, options, subquery) and relation at each significant token.
local function find_frames(significant, opts)
  local current = { schema = opts.schema, table = opts.table }
  local frame_at = {}
  local stack = { { kind = opts.expression and "columns" or "statement", relation = current } }
  local of_list = false -- inside a trigger's "UPDATE OF a, b"
  for index, token in ipairs(significant) do
    local frame = stack[#stack]
    if token.text == "(" then
      local kind, relation = frame.kind, frame.relation
      if frame.kind == "statement" then
        local prev = significant[index - 1]
        kind, relation = "columns", current
        if prev and prev.word == "with" then kind = "options" end
        local names, first = dotted_name_before(significant, index - 1)
        if names and #names >= 2 and significant[first - 1] and significant[first - 1].word == "references" then
          relation = { schema = names[#names - 1], table = names[#names] }
        end
      end
      local next_token = significant[index + 1]
      if frame.kind == "subquery" or (next_token and subquery_words[next_token.word]) then kind = "subquery" end
      stack[#stack + 1] = { kind = kind, relation = relation }
      frame_at[index] = stack[#stack]
    elseif token.text == ")" and #stack > 1 then
      frame_at[index] = frame
      stack[#stack] = nil
    else
      if frame.kind == "statement" then
        local prev = significant[index - 1]
        if token.word == "of" and prev and prev.word == "update" then of_list = true
        elseif token.word == "on" or token.word == "or" then of_list = false end
        token.in_of_list = of_list or nil
      end
      frame_at[index] = frame
    end
  end
  return frame_at, current
end

function sqlident.rename_in_definition(sql, opts)
  assert(type(opts) == "table" and opts.relation and opts.column,
    "sqlident.rename_in_definition(sql, { relation =, column =, schema =, table = })")
  local warnings, warned = {}, {}
  local function warn(message)
    if not warned[message] then warned[message] = true; warnings[#warnings + 1] = message end
  end
  local column_sets = {}
  local function is_column(relation, name)
    if not opts.columns then return true end
    local key = relation.schema .. "\0" .. relation.table
    if not column_sets[key] then
      column_sets[key] = {}
      for _, column in ipairs(opts.columns(relation.schema, relation.table) or {}) do
        column_sets[key][column] = true
      end
    end
    return column_sets[key][name] == true
  end
  local function column(relation, name) return (opts.column(relation.schema, relation.table, name)) end

  local tokens = sqlident.tokens(sql)
  local significant = {}
  for _, token in ipairs(tokens) do
    if is_significant(token) then significant[#significant + 1] = token end
  end
  local frame_at, current = find_frames(significant, opts)

  local function map_relation(kind, parts, schema_default)
    local n = #parts
    local schema = n >= 2 and parts[n - 1].name or schema_default
    local new_schema, new_name = opts.relation(kind, schema, parts[n].name)
    if n == 1 then
      if new_schema ~= schema then
        warn(string.format("%s %s is not schema-qualified: renamed in place, but its schema maps to %s",
          kind, parts[1].text, sqlident.quote(new_schema)))
      end
      return { new_name }
    end
    return { new_schema, new_name }
  end

  local function in_statement(parts, ctx)
    local prev, n, last = ctx.prev, #parts, parts[#parts]
    local prev_word = prev and prev.word
    if prev_word == "references" or prev_word == "on" or prev_word == "only" or prev_word == "from" then
      if n == 1 and not last.quoted and (last.name == "delete" or last.name == "update") then return nil end
      return map_relation("table", parts, current.schema)
    end
    if ctx.next and ctx.next.text == "(" then
      return n >= 2 and map_relation("function", parts) or nil
    end
    if n == 1 and own_name_kinds[prev_word] then
      -- The statement's own name: it lives in the table's schema, never qualified.
      local _, new_name = opts.relation(own_name_kinds[prev_word], current.schema, last.name)
      return { new_name }
    end
    if n == 1 and prev and prev.in_of_list and (prev_word == "of" or prev.text == ",")
      and is_column(current, last.name) then
      return { column(current, last.name) }
    end
    return nil
  end

  local function in_columns(parts, ctx, relation)
    local prev, n, last = ctx.prev, #parts, parts[#parts]
    local prev_word = prev and prev.word
    if ctx.next and ctx.next.text == "(" then
      return n >= 2 and map_relation("function", parts) or nil
    end
    if prev then
      -- After an operand comes an opclass, NULLS FIRST, AT TIME ZONE ...: never a column.
      local operand_before = (prev.type == "ident" and (prev.keyword == nil or prev.keyword == "unreserved"))
        or prev.type == "quoted" or prev.type == "string" or prev.type == "number"
        or prev.type == "dollar" or prev.type == "param" or prev.text == ")" or prev.text == "]"
      if operand_before then return nil end
      if prev_word == "asc" or prev_word == "desc" or prev_word == "is" or prev_word == "as" then return nil end
      if prev_word == "not" and ctx.before(2) and ctx.before(2).word == "is" then return nil end
      if prev_word == "time" and not last.quoted and last.name == "zone" then return nil end
      if prev.text == "(" and ctx.before(2) and ctx.before(2).word == "extract" then return nil end
    end
    if n == 2 and not parts[1].quoted and (parts[1].name == "new" or parts[1].name == "old") then
      if is_column(relation, last.name) then return { parts[1].name, column(relation, last.name) } end
      return nil
    end
    if n >= 2 then
      local schema = n >= 3 and parts[n - 2].name or nil
      if n <= 3 and parts[n - 1].name == relation.table and (schema == nil or schema == relation.schema)
        and is_column(relation, last.name) then
        local new_schema, new_table = opts.relation("table", relation.schema, relation.table)
        if n == 3 then return { new_schema, new_table, column(relation, last.name) } end
        return { new_table, column(relation, last.name) }
      end
      local texts = {}
      for i, part in ipairs(parts) do texts[i] = part.text end
      warn(string.format("left %s as it is: not a column of %s.%s", table.concat(texts, "."),
        sqlident.quote(relation.schema), sqlident.quote(relation.table)))
      return nil
    end
    if not last.quoted and last.keyword and last.keyword ~= "unreserved" then return nil end
    if is_column(relation, last.name) then return { column(relation, last.name) } end
    return nil
  end

  local function rename_name(parts, ctx)
    local prev = ctx.prev
    if prev and prev.text == "::" then
      return #parts >= 2 and map_relation("type", parts) or nil
    end
    if prev and prev.word == "collate" then
      return #parts >= 2 and map_relation("collation", parts) or nil
    end
    -- OPERATOR(pg_catalog.=), t.*, (composite).field: not names this can place.
    if (ctx.next and ctx.next.text == ".") or (prev and prev.text == ".") then return nil end
    local frame = frame_at[ctx.index]
    if frame.kind == "statement" then return in_statement(parts, ctx) end
    if frame.kind == "options" then return nil end
    if frame.kind == "subquery" then
      warn("names inside a subquery were left as they are, except schema-qualified tables")
      if #parts >= 2 and prev and (prev.word == "from" or prev.word == "join") then
        return map_relation("table", parts)
      end
      return nil
    end
    return in_columns(parts, ctx, frame.relation or current)
  end

  local result = rewrite_tokens(tokens, rename_name, {
    name_literal = function(parts, ctx)
      -- A text search configuration or dictionary ('app.docs_cfg'::regconfig): only a
      -- qualified one is a user object (with search_path = pg_catalog the server prints them so).
      if (ctx.cast == "regconfig" or ctx.cast == "regdictionary") and #parts == 2 then
        return map_relation(ctx.cast == "regconfig" and "text_search_configuration" or "text_search_dictionary", parts)
      end
      if ctx.cast ~= "regclass" then return nil end
      return map_relation("sequence", parts, current.schema)
    end,
  })
  return result, warnings
end

return sqlident
