-- Kinds of PolarDB for PostgreSQL (Oracle compatible): synonyms and packages.
--
-- Their catalogs exist only on such servers: tide.catalog reads `synonyms` when
-- pg_catalog.pg_synonym exists and `packages` when edb_package exists (settings.has_synonyms,
-- settings.has_packages); elsewhere the lists are empty and these kinds do nothing. They are
-- written from the catalogs' documented columns but have not been run against a PolarDB
-- server: check the statements `pgtide plan` prints before trusting them.
local ddl = require "tide.ddl"

-- CREATE SYNONYM s.name FOR objschema.objname[@dblink]. The referenced object's name is
-- mapped when it is one pgtide migrates.
local synonym = {
  name = "synonym", list = "synonyms", class = "pg_synonym", phase = "post", rank = 80,
  space = "relation",
  create = function(ctx, obj)
    local row = obj.row
    local s, n = ddl.lookup(ctx, "relation", row.object_schema, row.object_name)
    local sql = "CREATE SYNONYM " .. ddl.target(obj) .. " FOR " .. ddl.qualified(s, n)
    if row.dblink then sql = sql .. "@" .. ddl.quote(row.dblink) end
    return { { sql = sql } }
  end,
  drop = function(_, obj) return "DROP SYNONYM " .. ddl.target(obj) end,
}

-- A package is its specification then its body, as stored. The source text is used as it
-- is (names inside are not mapped; a renamed package's body gets a warning).
local package = {
  name = "package", list = "packages", class = "edb_package", phase = "pre", rank = 65,
  space = "relation",
  create = function(ctx, obj)
    local row = obj.row
    if obj.target.name ~= obj.name or obj.target.schema ~= obj.schema then
      ctx.warn(obj, "package " .. obj.name .. " is renamed, but names inside its source are not mapped; check its body")
    end
    local steps = { { sql = "CREATE OR REPLACE PACKAGE " .. ddl.target(obj) .. " AS\n" .. row.header } }
    if row.body then
      steps[2] = { kind = "package_body", suffix = "body",
        sql = "CREATE OR REPLACE PACKAGE BODY " .. ddl.target(obj) .. " AS\n" .. row.body }
    end
    return steps
  end,
  drop = function(_, obj) return "DROP PACKAGE " .. ddl.target(obj) end,
}

return { synonym, package }
