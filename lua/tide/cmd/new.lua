-- tide.cmd.new — `pgtide new FILE --source URL --target URL [--incremental] [--name NAME]`:
-- writes a commented playbook to start from. It reads the source's catalog (in a read-only
-- session): the schemas and tables with their sizes, estimated rows, primary key and replica
-- identity; runs the prechecks (tide.precheck, as `pgtide check`) against both servers; and
-- writes them all as comments around the keys a DBA edits (migrate, select, rename, stop).
--
-- Passwords never reach the file: they are taken out of both conninfo strings (URI user
-- info, `password=` keywords and query parameters) before anything is written; the servers
-- are still reached with them for the catalog and the prechecks. An existing FILE is never
-- overwritten (exit status 2).
local core = require "tide.core"
local exit = require "tide.exit"
local failure = require "tide.failure"
local units = require "tide.units"

local M = {}

local function usage(msg)
  failure.raise("usage", msg .. "\n  usage: pgtide new FILE --source URL --target URL [--incremental] [--name NAME]")
end

------------------------------------------------------------------------ passwords

local SECRET_KEYS = { password = true, sslpassword = true }

local function url_decode(s) return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end)) end

-- M.strip_password(conninfo) → conninfo without its passwords, and the list of the passwords
-- taken out (to check nothing written holds one). Both forms libpq reads: a URI
-- (postgres[ql]://user:password@host/db?password=...) and key = value pairs (password=...,
-- password='...').
function M.strip_password(conninfo)
  local found = {}
  local scheme, rest = conninfo:match("^(postgres[q]?[l]?://)(.*)$")
  if scheme then
    -- user info: everything before the last '@' of the authority (the part before / ? #)
    local authority, tail = rest:match("^([^/?#]*)(.*)$")
    local userinfo, hosts = authority:match("^(.*)@(.*)$")
    if userinfo then
      local user, pw = userinfo:match("^([^:]*):(.*)$")
      if user then
        found[#found + 1] = url_decode(pw)
        authority = user .. "@" .. hosts
      end
    end
    local path, query = tail:match("^([^?]*)%?(.*)$")
    if query then
      local kept = {}
      for param in query:gmatch("[^&]+") do
        local key, value = param:match("^([^=]*)=(.*)$")
        if key and SECRET_KEYS[url_decode(key):lower()] then
          found[#found + 1] = url_decode(value)
        else
          kept[#kept + 1] = param
        end
      end
      tail = path .. (#kept > 0 and ("?" .. table.concat(kept, "&")) or "")
    end
    return scheme .. authority .. tail, found
  end
  -- key = value pairs: values bare or single-quoted (with \' and \\ escapes)
  local out, i, n = {}, 1, #conninfo
  while i <= n do
    local s, e, key = conninfo:find("^%s*([%w_]+)%s*=%s*", i)
    if not s then
      out[#out + 1] = conninfo:sub(i)
      break
    end
    local j = e + 1
    local value
    if conninfo:sub(j, j) == "'" then
      local buf = {}
      j = j + 1
      while j <= n do
        local c = conninfo:sub(j, j)
        if c == "\\" then buf[#buf + 1] = conninfo:sub(j + 1, j + 1); j = j + 2
        elseif c == "'" then j = j + 1; break
        else buf[#buf + 1] = c; j = j + 1 end
      end
      value = table.concat(buf)
    else
      local ve = conninfo:find("%s", j) or (n + 1)
      value = conninfo:sub(j, ve - 1)
      j = ve
    end
    if SECRET_KEYS[key:lower()] then
      found[#found + 1] = value
    else
      out[#out + 1] = conninfo:sub(i, j - 1)
    end
    i = j
  end
  local text = table.concat(out):gsub("^%s+", ""):gsub("%s+$", ""):gsub("%s%s+", " ")
  return text, found
end

------------------------------------------------------------------------ the source

local TABLES_SQL = [[
SELECT n.nspname AS schema, c.relname AS name, c.relkind::text AS kind,
       pg_catalog.pg_total_relation_size(c.oid) AS bytes,
       c.reltuples::float8 AS rows_estimate,
       EXISTS (SELECT FROM pg_catalog.pg_constraint k WHERE k.conrelid = c.oid AND k.contype = 'p') AS has_pk,
       c.relreplident::text AS replident,
       c.relpersistence::text AS persistence
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_%'
  AND n.nspname <> $1
  AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_class'::regclass
                  AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY n.nspname, c.relname]]

local SCHEMAS_SQL = [[
SELECT n.nspname AS schema
FROM pg_catalog.pg_namespace n
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_%'
  AND n.nspname <> $1
  AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_namespace'::regclass
                  AND d.objid = n.oid AND d.deptype = 'e')
ORDER BY 1]]

local function read_source(conninfo, name)
  local conn, err = core.connect(conninfo, { application_name = "pgtide:" .. name .. ":new",
                                             settings = { default_transaction_read_only = "on" } })
  if not conn then
    local msg = string.format("cannot connect to the source (%s): %s", core.mask_conninfo(conninfo),
                              err.message or tostring(err))
    if err.hint then msg = msg .. "\n  hint: " .. err.hint end
    failure.raise("connection", msg)
  end
  local ok, result = pcall(function()
    local db = assert(conn:query("SELECT pg_catalog.current_database() AS db, " ..
                                 "pg_catalog.pg_database_size(pg_catalog.current_database()) AS bytes"))[1]
    return { version = conn:server_version(), database = db.db, bytes = tonumber(db.bytes),
             tables = assert(conn:query(TABLES_SQL, "pgtide")), schemas = assert(conn:query(SCHEMAS_SQL, "pgtide")) }
  end)
  conn:close()
  if not ok then
    failure.raise("failed", "reading the source's catalog failed: " .. tostring(result))
  end
  return result
end

------------------------------------------------------------------------ writing Lua

local function lua_string(s) return (string.format("%q", s):gsub("\\\n", "\\n")) end

-- A name as a Lua table key: bare when it is an identifier (not a keyword), else ["..."].
local KEYWORDS = {}
for w in ("and break do else elseif end false for function goto if in local nil not or repeat " ..
          "return then true until while"):gmatch("%a+") do KEYWORDS[w] = true end
local function lua_key(s)
  if s:match("^[%a_][%w_]*$") and not KEYWORDS[s] then return s end
  return "[" .. lua_string(s) .. "]"
end

-- A name as a glob matching itself alone (tide.pattern: \ escapes * ? [ ] . and \).
local function glob_literal(s) return (s:gsub("[%*%?%[%]%.\\]", "\\%0")) end

-- Text as comment lines: the first after `first`, the others after `rest`.
local function comment_lines(text, first, rest)
  local out = {}
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    out[#out + 1] = ((#out == 0 and first or rest) .. line:gsub("^%s+", "")):gsub("%s+$", "")
  end
  return table.concat(out, "\n")
end

local function key_text(t)
  local ident = ({ d = "default", n = "nothing", f = "full", i = "index" })[t.replident] or t.replident
  if t.has_pk then
    return ident == "default" and "primary key" or ("primary key, replica identity " .. ident)
  end
  if ident == "full" or ident == "index" then return "no primary key, replica identity " .. ident end
  return "NO primary key (replica identity " .. ident .. "): its updates and deletes cannot be streamed"
end

local function rows_text(t)
  local r = tonumber(t.rows_estimate) or -1
  if r < 0 then return "rows: not analyzed" end
  return string.format("~%.0f rows", r)
end

local function name_from_file(path)
  local base = path:match("([^/]+)$"):gsub("%.lua$", "")
  local name = base:gsub("[^%w_%-]", "-"):sub(1, 40)
  if name == "" then name = "migration" end
  return name
end

-- The prechecks that fail or warn, as comment text.
local function precheck_comments(report)
  local out = {}
  local counts = { fail = 0, warn = 0 }
  for _, r in ipairs(report.checks) do
    if r.status == "fail" or r.status == "warn" then
      counts[r.status] = counts[r.status] + 1
      out[#out + 1] = string.format("  --   %s %s: %s", r.status == "fail" and "FAIL" or "WARN", r.id, r.title)
      for i, f in ipairs(r.findings) do
        if i > 10 then
          out[#out + 1] = string.format("  --       ... and %d more (pgtide check FILE)", #r.findings - 10)
          break
        end
        if f.grade == "fail" or f.grade == "warn" then
          out[#out + 1] = comment_lines((f.object and (f.object .. ": ") or "") .. f.message, "  --     - ", "  --       ")
          if f.fix and f.fix ~= "" then out[#out + 1] = comment_lines(f.fix, "  --       fix: ", "  --            ") end
        end
      end
    end
  end
  return out, counts
end

-- M.render(info) → the playbook's text. info: { name, source, target (passwords stripped),
-- incremental, src (read_source), report (tide.precheck report or nil), precheck_error,
-- written_at }.
function M.render(info)
  local L = {}
  local function add(fmt, ...) L[#L + 1] = select("#", ...) > 0 and string.format(fmt, ...) or fmt end
  local src = info.src
  local phases = info.incremental and '{ "schema", "full", "incremental" }' or '{ "schema", "full" }'
  add("-- pgtide playbook for task %s, written by `pgtide new` on %s UTC.", info.name, info.written_at)
  add("-- Source: database %s, PostgreSQL %s, %s.", src.database,
      require("tide.connect").version_string(src.version), units.human_bytes(src.bytes or 0))
  add("-- Edit it, then: `pgtide plan FILE` (what it would do, writing nothing), `pgtide check FILE`")
  add("-- (the prechecks), `pgtide run FILE`. Every key: docs/playbook.md.")
  add("--")
  add("-- Passwords are never written here (any in the URLs given to `pgtide new` were left out).")
  add("-- libpq finds them itself: in ~/.pgpass (one line per server,")
  add("-- host:port:database:user:password, the file chmod 0600; PGPASSFILE names another), or in")
  add("-- PGPASSWORD in pgtide's environment (one password for both servers). A playbook is Lua,")
  add("-- so a conninfo may also come from the environment: source = os.getenv \"SOURCE_URL\".")
  add("local tide = require \"tide\"")
  add("")
  add("return tide.task {")
  add("  name    = %s,", lua_string(info.name))
  add("  source  = %s,", lua_string(info.source))
  add("  target  = %s,", lua_string(info.target))
  add("  -- the phases, in order: schema (tables, indexes, ...), full (a copy of the rows)%s",
      info.incremental and "," or "; add")
  add("  -- incremental (stream the changes made meanwhile until the stop condition, then cut over)")
  add("  migrate = %s,", phases)
  add("")

  -- Tables
  local by_schema, schema_bytes = {}, {}
  for _, t in ipairs(src.tables) do
    by_schema[t.schema] = by_schema[t.schema] or {}
    table.insert(by_schema[t.schema], t)
    schema_bytes[t.schema] = (schema_bytes[t.schema] or 0) + (tonumber(t.bytes) or 0)
  end
  local total = 0
  for _, b in pairs(schema_bytes) do total = total + b end
  add("  -- Tables on the source: %d in %d schema(s), %s (sizes with indexes and TOAST; rows are the",
      #src.tables, #src.schemas, units.human_bytes(total))
  add("  -- planner's estimates; key: what identifies a row for the change stream).")
  local example_table, keyless
  for _, s in ipairs(src.schemas) do
    local list = by_schema[s.schema] or {}
    add("  --   schema %s: %d table(s)", s.schema, #list)
    for _, t in ipairs(list) do
      add("  --     %-32s %10s  %-18s %s", t.schema .. "." .. t.name, units.human_bytes(tonumber(t.bytes) or 0),
          rows_text(t), key_text(t) .. (t.persistence == "u" and ", UNLOGGED" or ""))
      if not example_table or (tonumber(t.bytes) or 0) > (tonumber(example_table.bytes) or 0) then example_table = t end
      if not keyless and not t.has_pk and t.replident ~= "f" and t.replident ~= "i" then keyless = t end
    end
  end
  add("  select = {")
  add("    -- every schema found; remove one to leave it out, or name tables (\"schema.table\", globs)")
  add("    include = {")
  for _, s in ipairs(src.schemas) do
    add("      %-30s -- %d table(s), %s", lua_string(glob_literal(s.schema)) .. ",", #(by_schema[s.schema] or {}),
        units.human_bytes(schema_bytes[s.schema] or 0))
  end
  add("    },")
  local ex = example_table and (glob_literal(example_table.schema) .. "." .. glob_literal(example_table.name))
             or "public.tmp_*"
  add("    -- exclude = { %s },                      -- tables to leave out", lua_string(ex))
  add("    -- columns = { [%s] = { exclude = { \"column\" } } },", lua_string(ex))
  add("    -- rows    = { [%s] = \"created_at >= date '2025-01-01'\" },   -- a row filter", lua_string(ex))
  add("    -- kinds   = { exclude = { \"trigger\" } },   -- object kinds to leave out")
  add("  },")
  add("  -- target names: the same as on the source unless renamed here (docs/select-and-rename.md)")
  add("  rename = {")
  add("    schema = {")
  for _, s in ipairs(src.schemas) do add("      -- %s = %s,", lua_key(s.schema), lua_string(s.schema)) end
  add("    },")
  if example_table then
    add("    -- table  = { [%s] = %s },", lua_string(example_table.schema .. "." .. example_table.name),
        lua_string(example_table.name))
  end
  add("    -- case   = \"lower\",")
  add("  },")
  add("  -- full = { jobs = \"auto\", existing = \"error\" },   -- parallel COPY streams (or a count); target tables holding rows")
  add("  -- schema = { existing = \"error\" },           -- objects already on the target")
  if info.incremental then
    add("")
    add("  incremental = {")
    add("    -- release = true,    -- drop the slot and publication once cut over (else `pgtide release FILE`)")
    add("  },")
    add("  -- the stop condition, checked every tick of the change stream: here, once the target has been")
    add("  -- less than 1 s behind for 30 s in a row (docs/incremental.md). Stop the writes on the source")
    add("  -- first, or use task:stop() in `pgtide attach` to cut over by hand.")
    add("  stop = tide.when { lag_below = \"1s\", for_at_least = \"30s\" },")
    add("  -- on = { cutover = function(t) --[[ switch the application over ]] end },")
    if keyless then
      add("  -- %s.%s has no primary key: its updates and deletes cannot be streamed (see the prechecks)",
          keyless.schema, keyless.name)
    end
  end
  add("")
  if info.report then
    local lines, counts = precheck_comments(info.report)
    if #lines == 0 then
      add("  -- Prechecks (`pgtide check`, %s UTC): nothing fails or warns.", info.written_at)
    else
      add("  -- Prechecks (`pgtide check`, %s UTC): %d fail, %d warn. Fix them, or accept one on purpose", info.written_at,
          counts.fail, counts.warn)
      add("  -- with a reason: precheck = { ignore = { check_id = \"why\" } } (docs/prechecks.md).")
      for _, l in ipairs(lines) do add("%s", l) end
    end
  else
    add("  -- Prechecks: they could not run (%s); run `pgtide check FILE`.",
        (info.precheck_error or "?"):gsub("\n", " "))
  end
  add("  -- precheck = { ignore = { } },")
  add("}")
  return table.concat(L, "\n") .. "\n"
end

------------------------------------------------------------------------ the command

function M.command(args)
  local opts, positional = require("tide.cmd.args").parse(args, {
    source = "string", target = "string", incremental = "boolean", name = "string" })
  if not opts then usage(positional) end
  local file = positional[1]
  if not file or #positional > 1 then usage("new needs exactly one FILE to write") end
  if not opts.source or not opts.target then usage("new needs --source URL and --target URL") end
  local existing = io.open(file, "r")
  if existing then
    existing:close()
    usage(string.format("%s already exists; pgtide new never overwrites a file: give another FILE, " ..
                        "or move this one away first", file))
  end
  local name = opts.name or name_from_file(file)
  if not (name:match("^[%w_%-]+$") and #name <= 40) then
    usage("--name must be letters, digits, '_' or '-', at most 40 characters")
  end

  local source, source_pw = M.strip_password(opts.source)
  local target, target_pw = M.strip_password(opts.target)
  local src = read_source(opts.source, name)

  -- The prechecks, as `pgtide check` runs them, on a task made from the same keys as the file
  -- (with the conninfo as given: it may need its password to connect).
  local include = {}
  for _, s in ipairs(src.schemas) do include[#include + 1] = glob_literal(s.schema) end
  local def = { name = name, source = opts.source, target = opts.target,
                migrate = opts.incremental and { "schema", "full", "incremental" } or { "schema", "full" },
                select = { include = include } }
  if opts.incremental then def.stop = require("tide.when") { lag_below = "1s", for_at_least = "30s" } end
  local report, precheck_error
  if #include > 0 then
    local ok, r = pcall(function()
      local task = require("tide.playbook").task(def)
      return (require("tide.precheck").evaluate(task, {}))
    end)
    if ok then report = r else precheck_error = tostring(type(r) == "table" and r.message or r) end
  else
    precheck_error = "the source has no schema to migrate"
  end

  local text = M.render({ name = name, source = source, target = target, incremental = opts.incremental,
                          src = src, report = report, precheck_error = precheck_error,
                          written_at = os.date("!%Y-%m-%d %H:%M") })
  -- No password in what is written, wherever it came from (a precheck message quoting a
  -- conninfo, say); not for passwords under 4 characters, which would mangle unrelated text.
  for _, list in ipairs({ source_pw, target_pw }) do
    for _, pw in ipairs(list) do
      if #pw >= 4 then text = text:gsub(pw:gsub("%W", "%%%0"), "********") end
    end
  end
  local f, err = io.open(file, "w")
  if not f then failure.raise("usage", "cannot write " .. file .. ": " .. tostring(err)) end
  f:write(text)
  f:close()
  local counts = report and report.counts or {}
  print(string.format("wrote %s: task %s, %d table(s) in %d schema(s)%s", file, name, #src.tables, #src.schemas,
        report and string.format(", prechecks: %d fail, %d warn (listed in the file)", counts.fail or 0, counts.warn or 0)
        or (", prechecks did not run: " .. tostring(precheck_error))))
  if #source_pw + #target_pw > 0 then
    print("the password(s) in the URLs were left out of the file: use ~/.pgpass or PGPASSWORD (see its header)")
  end
  print("next: edit it, then `pgtide plan " .. file .. "` and `pgtide check " .. file .. "`")
  return exit.ok
end

return M
