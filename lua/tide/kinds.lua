-- tide.kinds — the object kinds pgtide migrates, as data.
--
-- A kind is one small table; the planner (tide.plan) knows nothing about any particular
-- kind, so adding one (a PolarDB synonym, say) is adding an entry in one of the files under
-- lua/tide/kinds/. Fields:
--
--   name       the word used in select.kinds, in rename levels, in keys and messages
--   list       the tide.catalog statement whose rows hold it (several kinds share one)
--   accept(row)          → true when a row of that list is this kind (default: all rows)
--   class      pg_depend class of its rows ("pg_class", "pg_proc", ...)
--   identities(row)      → extra { class, oid } pairs that stand for this object in pg_depend
--                          (a table's row type, a view's _RETURN rule, ...)
--   phase      "pre" (before the data) or "post" (after it)
--   rank       tie-break among steps that do not depend on each other (lower first)
--   space      name space on the target for existing-object checks: "relation" (pg_class
--              and pg_type share names), "function", "collation", "schema", "extension",
--              or "table" for names unique per table (constraints, triggers, ...)
--   part_of    "table" when it belongs to a table (row.table_oid) and follows its selection
--   skip(row)            → a reason when a row is never migrated (it stays in plan.skipped)
--   inline(row)          → true when the row is written inside its owner's DDL (a table's
--                          CHECK constraint): not an object of its own
--   target(ctx, obj)     → target schema, name (default: the rename mapper's answer)
--   create(ctx, obj)     → list of steps { sql =, kind =, suffix =, phase =, after = {obj...},
--                          data = {obj...} }; the first step is the one others wait for
--   reference(ctx, obj)  → the words naming it in COMMENT ON / ALTER ... OWNER TO
--                          ("TABLE shop.users"); nil when it has no owner or comment
--   grant_reference(ctx, obj) → the same for GRANT, when it differs
--   drop(ctx, obj)       → the DROP statement (existing = "drop")
--   owned      false when the object has no owner of its own (an index)
--   global     true for objects that live in no schema (servers, event triggers): obj.schema is
--              nil, the name stays; selected by tide.plan.database_wide, with
--   follows(row)         → class, oid of the object whose selection it follows (a user
--                          mapping its server), and
--   pulled     true when, with select.include, it is selected as soon as a selected object
--              needs it (a server a foreign table uses)
--   ident(obj)           → the identity text in keys and messages (default: the quoted name)
--   word       the kind in messages, when not its name ("user mapping")
--   wanted(task)         → true | false, reason: a kind of no schema that the playbook turns on
--              (database settings: schema.database_settings); otherwise its objects are left out
--   kind_in_keys  true when another kind may have the same ident (a text search configuration
--              app.docs and a table app.docs): its comment, owner and grant steps are keyed
--              comment:KIND:IDENT/...
--   by_name    true to be found by schema and name in definitions (ddl.lookup(ctx, kind, ...)),
--              as relations, functions and collations are
--   select(obj, model, selector) → true | false, reason: decides by other objects instead of
--                          the patterns (a cast: by its types and function)
--   relink(ctx, obj)     changes obj.deps before the steps are ordered (a base type and its
--                          I/O functions); an edge with first_step = true waits only for the
--                          first step of what it needs (the shell type)
--   space_args true when the name space key carries row.identity_args (operators: their
--              argument types; classes and families: their access method)
--   keeps_name true when the name is never mapped (an operator's symbol), only the schema
--   target_text(obj)     → the target as `pgtide plan` shows it, when not schema.name
--   A step may say `last = true`: it waits for every other step of its phase (an event
--   trigger enabled at the end of post-data), and `undo = SQL`: what a full load that starts
--   over runs to take the done step back (plan step .undo; foreign keys and triggers have theirs).
local M = {}

local groups = {
  require "tide.kinds.namespace",   -- schema, extension, collation
  require "tide.kinds.types",       -- enum, composite, domain, range, base type
  require "tide.kinds.routines",    -- function, procedure, aggregate
  require "tide.kinds.relations",   -- sequence, table, foreign table, view, materialized view
  require "tide.kinds.table_parts", -- index, constraint, trigger, rule, policy, statistics
  require "tide.kinds.polardb",     -- synonym, package (PolarDB for PostgreSQL, Oracle mode)
  require "tide.kinds.textsearch",  -- text search parser, template, dictionary, configuration
  require "tide.kinds.fdw",         -- foreign-data wrapper, server, user mapping
  require "tide.kinds.event_trigger", -- event trigger
  require "tide.kinds.database",     -- default privileges, database settings
  require "tide.kinds.operators",   -- operator, operator family and class, cast, conversion
  require "tide.kinds.languages",   -- procedural language, transform, access method
}

M.list = {}
M.by_name = {}
for _, group in ipairs(groups) do
  for _, kind in ipairs(group) do
    assert(kind.name and kind.list and kind.class and kind.phase and kind.create,
      "kind " .. tostring(kind.name) .. " lacks a required field")
    M.list[#M.list + 1] = kind
    M.by_name[kind.name] = kind
  end
end

-- Kind words the selector accepts: the kinds, plus comments, security labels and grants, which
-- are attributes of objects but can be left out as a whole (select.kinds.exclude = {"grant"}).
M.selectable = {}
for _, kind in ipairs(M.list) do M.selectable[#M.selectable + 1] = kind.name end
M.selectable[#M.selectable + 1] = "comment"
M.selectable[#M.selectable + 1] = "security_label"
M.selectable[#M.selectable + 1] = "grant"

-- The rank of step kinds that are not the first step of an object (comments, grants, ...).
M.step_rank = {
  comment = 900, security_label = 910, owner = 950, grant = 960, revoke = 960,
}

local WORDS = { foreign_table = "foreign table", matview = "materialized view" }

-- An object of a plan (tide.plan.objects) as the messages name it: "table app.users",
-- "index app.users_pkey", "function app.f(integer)".
function M.describe(obj)
  if not obj then return "?" end
  return (obj.def and obj.def.word or WORDS[obj.kind] or obj.kind) .. " " .. obj.ident
end

-- The same, from an object's key ("index:app.users_email", tide.plan.objects: its kind, a
-- colon, its ident), for a plan that kept its steps but let the objects go (tide.plan.keep_for_run).
function M.describe_key(key)
  local kind, ident = tostring(key):match("^([%w_]+):(.+)$")
  if not kind then return tostring(key) end
  local def = M.by_name[kind]
  return (def and def.word or WORDS[kind] or kind) .. " " .. ident
end

return M
