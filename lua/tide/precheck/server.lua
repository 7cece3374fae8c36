-- Prechecks about the servers themselves: can we reach them (and, for incremental migration,
-- open a replication connection), their versions, and the database encodings and collations.
local context = require "tide.precheck.context"
local connect = require "tide.connect"
local breathe = require("tide.wait").breathe

local M = {}
local quote = context.quote

local function incremental(ctx) return ctx.phases.incremental == true end

-- PostgreSQL's major version: 15 for 150004, 9.6 for 90624.
local function major(v) return v >= 100000 and v // 10000 or (v // 100) / 100 end
local function major_text(v)
  if v >= 100000 then return tostring(v // 10000) end
  return string.format("%d.%d", v // 10000, (v // 100) % 100)
end

-- What to do about a failed connection, from the server's (or libpq's) words.
local function connection_fix(err, side)
  local msg = (err and err.message or ""):lower()
  if msg:find("password") then
    return "check the password in the " .. side .. " conninfo, PGPASSWORD or ~/.pgpass"
  elseif msg:find("does not exist") and msg:find("database") then
    return "create the database, or fix dbname in the " .. side .. " conninfo"
  elseif msg:find("does not exist") and msg:find("role") then
    return "create the role on the " .. side .. " server (CREATE ROLE ... LOGIN), or fix user in the conninfo"
  elseif msg:find("pg_hba") then
    return "add a line for this client, user and database to pg_hba.conf on the " .. side ..
      " server, then SELECT pg_reload_conf()"
  elseif msg:find("refused") or msg:find("could not translate") or msg:find("timeout") or msg:find("timed out") then
    return "check host and port in the " .. side .. " conninfo, that the server runs, and its listen_addresses"
  end
  return "fix the " .. side .. " conninfo (see the server's message above)"
end

M.checks = {
  {
    id = "connectivity", title = "Connections to the source and the target", grade = "fail",
    without_connections = true,
    run = function(ctx)
      local out = {}
      for _, side in ipairs({ "source", "target" }) do
        local f = ctx.connection_errors[side]
        if f then
          out[#out + 1] = { object = side, message = f.message, fix = connection_fix(f.err, side) }
        end
      end
      return out
    end,
  },
  {
    id = "replication_connection", title = "A replication connection to the source", grade = "fail",
    applies = incremental,
    run = function(ctx)
      local ok, conn = pcall(connect.open, ctx.task, "source", {
        replication = "database", application_name = ctx.replication_application_name, timeout = 15 })
      if not ok then
        local err = type(conn) == "table" and conn.err or nil
        local message = type(conn) == "table" and conn.message or tostring(conn)
        local server = ctx.source_server and ctx:source_server() or {}
        local fix
        if (err and err.message or message):find("replication") and not (server.replication or server.superuser) then
          fix = "ALTER ROLE " .. quote(server.user_name or "...") .. " REPLICATION;"
        elseif (err and err.message or message):find("pg_hba") then
          fix = "add a pg_hba.conf line for the source database itself (a replication=database connection is matched by the database name, not by the 'replication' keyword), then SELECT pg_reload_conf()"
        else
          fix = connection_fix(err, "source") .. "; max_wal_senders must leave a free sender"
        end
        return { { object = "source", message = "cannot open a replication connection: " .. message, fix = fix } }
      end
      -- IDENTIFY_SYSTEM answers only on a working walsender. (conn:query cannot return rows
      -- on a replication connection yet, so dbname is not read back.)
      local n, err = conn:exec("IDENTIFY_SYSTEM")
      conn:close()
      if not n then
        return { { object = "source", message = "IDENTIFY_SYSTEM failed on the replication connection: " .. tostring(err),
                   fix = "check that nothing between pgtide and the source (a pooler) rewrites replication connections" } }
      end
      return {}
    end,
  },
  {
    id = "server_version", title = "Server versions", grade = "fail",
    run = function(ctx)
      local s, t = ctx.versions.source, ctx.versions.target
      local out = {}
      if major(t) < major(s) then
        out[#out + 1] = { object = "target",
          message = string.format("the target runs PostgreSQL %s, older than the source's %s: types, functions and syntax of the newer version may be missing there",
            connect.version_string(t), connect.version_string(s)),
          fix = "use a target server of PostgreSQL " .. major_text(s) .. " or later" }
      end
      if ctx.phases.incremental and s < 100000 then
        out[#out + 1] = { object = "source",
          message = "incremental migration decodes WAL with pgoutput, which needs PostgreSQL 10 or later on the source (it runs " ..
            connect.version_string(s) .. ")",
          fix = "migrate with { \"schema\", \"full\" } and a write stop, or upgrade the source" }
      end
      return out
    end,
  },
  {
    id = "version_differences", title = "What differs between the two servers", grade = "info",
    run = function(ctx)
      local s, t = ctx.versions.source, ctx.versions.target
      local out = {}
      if major(t) > major(s) then
        out[#out + 1] = { object = "target",
          message = string.format("the target (PostgreSQL %s) is a newer major version than the source (%s): the DDL is written from the source's catalog; anything removed or changed in between (functions, extension versions, operators) fails in pre-data",
            connect.version_string(t), connect.version_string(s)),
          fix = "review `pgtide plan`, and run the schema migration once on a scratch target" }
      end
      local sv, tv = ctx:source_server().version_text or "", ctx:target_server().version_text or ""
      local function fork(text)
        for _, name in ipairs({ "PolarDB", "EnterpriseDB", "Greenplum", "openGauss", "Aurora", "Cloud SQL" }) do
          if text:find(name, 1, true) then return name end
        end
        return "PostgreSQL"
      end
      if fork(sv) ~= fork(tv) then
        out[#out + 1] = { object = "target",
          message = string.format("the servers are different products (source: %s; target: %s): catalog objects only one of them has (synonyms, packages, vendor extensions) are not created on the other",
            fork(sv), fork(tv)),
          fix = "review `pgtide plan` for left-out objects and warnings" }
      end
      if ctx.phases.incremental and s >= 100000 and s < 140000 then
        out[#out + 1] = { object = "source",
          message = "before PostgreSQL 14 large transactions are sent only at commit, after the server decoded them to disk: expect lag spikes after big batch jobs",
          fix = "keep logical_decoding_work_mem generous, or split batch jobs into smaller transactions" }
      end
      return out
    end,
  },
  {
    id = "encoding", title = "Database encodings", grade = "fail",
    run = function(ctx)
      local s, t = ctx:database("source"), ctx:database("target")
      if s.encoding == t.encoding then return {} end
      local object = "database " .. quote(t.name)
      local create = string.format("CREATE DATABASE %s ENCODING '%s' TEMPLATE template0", quote(t.name), s.encoding)
      if t.encoding == "SQL_ASCII" then
        return { { object = object, grade = "warn",
          message = string.format("the target database is SQL_ASCII and the source %s: text is stored as bytes without any check", s.encoding),
          fix = create } }
      elseif s.encoding == "SQL_ASCII" then
        return { { object = object,
          message = string.format("the source database is SQL_ASCII (bytes never checked) and the target %s: any byte sequence invalid in %s is rejected and stops the load",
            t.encoding, t.encoding),
          fix = string.format("CREATE DATABASE %s ENCODING 'SQL_ASCII' TEMPLATE template0, or clean the source's text first", quote(t.name)) } }
      elseif t.encoding == "UTF8" then
        return { { object = object, grade = "info",
          message = string.format("the source database is %s, the target UTF8: every character converts", s.encoding) } }
      end
      return { { object = object,
        message = string.format("the source database is %s, the target %s: characters with no equivalent in %s are rejected and stop the load",
          s.encoding, t.encoding, t.encoding),
        fix = create .. " (or ENCODING 'UTF8')" } }
    end,
  },
  {
    id = "collation", title = "Default collation and character classes", grade = "warn",
    run = function(ctx)
      local s, t = ctx:database("source"), ctx:database("target")
      local out = {}
      local function describe(d)
        if d.provider == "i" then return string.format("ICU %s (LC_CTYPE %s)", d.icu_locale or "?", d.lc_ctype) end
        if d.provider == "b" then return string.format("builtin %s", d.icu_locale or "?") end
        return string.format("libc LC_COLLATE %s, LC_CTYPE %s", d.lc_collate, d.lc_ctype)
      end
      local object = "database " .. quote(t.name)
      if s.provider ~= t.provider or s.lc_collate ~= t.lc_collate or s.lc_ctype ~= t.lc_ctype
        or (s.provider ~= "c" and s.icu_locale ~= t.icu_locale) or s.icu_rules ~= t.icu_rules then
        local fix
        if s.provider == "i" then
          fix = string.format("CREATE DATABASE %s LOCALE_PROVIDER icu ICU_LOCALE '%s' LOCALE '%s' TEMPLATE template0",
            quote(t.name), s.icu_locale or "", s.lc_collate)
        else
          fix = string.format("CREATE DATABASE %s LC_COLLATE '%s' LC_CTYPE '%s' TEMPLATE template0",
            quote(t.name), s.lc_collate, s.lc_ctype)
        end
        out[#out + 1] = { object = object,
          message = string.format("the default collation differs (source: %s; target: %s): text sorts differently (ORDER BY, indexes, range partitions and CHECK constraints on text), and upper()/lower() and regular expressions may classify characters differently",
            describe(s), describe(t)),
          fix = fix }
      elseif s.collation_version and t.collation_version and s.collation_version ~= t.collation_version then
        out[#out + 1] = { object = object, grade = "info",
          message = string.format("the collation library versions differ (source %s, target %s): the same locale may sort some strings differently; indexes are built on the target, so they agree with it, not with the source",
            s.collation_version, t.collation_version) }
      end
      return out
    end,
  },
  {
    id = "collation_missing", title = "Collations the selected columns use", grade = "fail",
    run = function(ctx)
      local plan = ctx.plan
      local users, names = {}, {}
      local function note(schema, name, obj, column)
        if schema ~= "pg_catalog" then return end
        if not users[name] then users[name] = {}; names[#names + 1] = name end
        table.insert(users[name], { obj = obj, column = column })
      end
      for _, obj in ipairs(plan.objects) do
        breathe()
        if obj.kind == "table" or obj.kind == "foreign_table" then
          for _, c in ipairs(obj.columns or {}) do
            if c.collation_name then note(c.collation_schema, c.collation_name, obj, c.name) end
          end
        elseif obj.kind == "domain" and obj.row.collation_name then
          note(obj.row.collation_schema, obj.row.collation_name, obj)
        end
      end
      local need_icu = {}
      for _, obj in ipairs(plan.objects) do
        breathe()
        if obj.kind == "collation" and obj.row.provider == "i" and not obj.keep_existing then need_icu[#need_icu + 1] = obj end
      end
      if #names == 0 and #need_icu == 0 then return {} end
      local rows = ctx:query("target", [[
SELECT c.collname AS name
FROM pg_collation c
WHERE c.collnamespace = 'pg_catalog'::regnamespace AND c.collname = ANY($1::text[])
  AND c.collencoding IN (-1, (SELECT d.encoding FROM pg_database d WHERE d.datname = current_database()))
UNION ALL
SELECT '' WHERE EXISTS (SELECT FROM pg_collation c WHERE c.collprovider = 'i')
]], names)
      local present = {}
      for _, r in ipairs(rows) do present[r.name] = true end
      local out = {}
      for _, name in ipairs(names) do
        if not present[name] then
          local list = users[name]
          local shown = {}
          for i = 1, math.min(#list, 5) do
            shown[i] = list[i].obj.ident .. (list[i].column and ("." .. quote(list[i].column)) or "")
          end
          local f = context.finding(list[1].obj,
            string.format("collation pg_catalog.%s, used by %s%s, does not exist on the target (for its encoding): creating the table fails",
              quote(name), table.concat(shown, ", "), #list > 5 and (" and " .. (#list - 5) .. " more") or ""),
            "create the collation on the target (CREATE COLLATION pg_catalog." .. quote(name) ..
              " (locale = '...')), install the locale and run pg_import_system_collations, or map the columns to an existing collation")
          f.object = "collation pg_catalog." .. quote(name)
          out[#out + 1] = f
        end
      end
      if #need_icu > 0 and not present[""] then
        for _, obj in ipairs(need_icu) do
          out[#out + 1] = context.finding(obj, "this ICU collation cannot be created: the target server has no ICU support",
            "use a target server built with ICU, or leave the collation and its users out")
        end
      end
      return out
    end,
  },
}

return M
