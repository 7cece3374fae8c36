-- tide.catalog — what exists on a server, read with one SQL statement per object kind.
--
-- catalog.read(conn) runs every statement below once, for the whole database, inside one
-- REPEATABLE READ READ ONLY transaction (so all kinds come from one consistent view) with
-- search_path = pg_catalog: the server's pg_get_*def functions and format_type() then print
-- every user object schema-qualified, which is what lets tide.sqlident map names inside
-- definitions. No statement runs per object, so 10,000 tables cost the same ~20 round trips
-- as 10.
--
-- Statements read columns that only exist in some server versions through
-- to_jsonb(row) ->> 'column' (NULL where the column does not exist) instead of keeping one
-- statement per version. Nested lists (enum labels, inheritance parents, policy roles) come
-- back as json_agg text and are decoded here.
local breathe = require("tide.wait").breathe

local M = {}

-- Schemas the server owns; user objects never live there.
-- (A user schema cannot start with pg_: the server refuses that name.)
local USER_SCHEMA = "n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'"

M.statements = {}
local S = M.statements

S.settings = [[
SELECT current_user AS current_user, current_database() AS database,
       current_setting('server_version_num')::int AS server_version,
       pg_encoding_to_char(d.encoding) AS encoding,
       d.datcollate AS lc_collate, d.datctype AS lc_ctype,
       to_regclass('pg_catalog.pg_synonym') IS NOT NULL AS has_synonyms,
       to_regclass('pg_catalog.edb_package') IS NOT NULL AS has_packages,
       EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = 'pg_catalog.pg_attribute'::regclass
                 AND a.attname = 'attcompression' AND NOT a.attisdropped) AS has_attcompression,
       -- (tide.catalog.indexdef: the catalogs of 15 to 17, whose definitions it knows.)
       EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = 'pg_catalog.pg_index'::regclass
                 AND a.attname = 'indnullsnotdistinct' AND NOT a.attisdropped)
         AND current_setting('server_version_num')::int < 180000 AS writes_definitions,
       %BTREE_DEFAULTS%,
       (SELECT count(*) FROM pg_class) AS relations   -- (tide.catalog.fetch.pieces_from)
FROM pg_database d
WHERE d.datname = current_database()
]]

S.roles = [[
SELECT r.rolname AS name, r.rolsuper AS superuser FROM pg_roles r
]]

S.schemas = [[
SELECT n.oid, n.nspname AS name, pg_get_userbyid(n.nspowner) AS owner
FROM pg_namespace n
WHERE %USER_SCHEMA%
  AND NOT EXISTS (SELECT FROM pg_depend e WHERE e.classid = 'pg_namespace'::regclass
                  AND e.objid = n.oid AND e.deptype = 'e')
ORDER BY n.nspname
]]

S.extensions = [[
SELECT x.oid, x.extname AS name, n.nspname AS schema, x.extversion AS version,
       pg_get_userbyid(x.extowner) AS owner
FROM pg_extension x
JOIN pg_namespace n ON n.oid = x.extnamespace
ORDER BY x.extname
]]

-- Objects created by an extension: never migrated one by one, CREATE EXTENSION makes them.
-- Relations and types carry a description, for the parts (constraints, triggers, ...) of an
-- extension's table or domain, which the planner leaves out naming it. The indexes of an
-- extension's tables count as its members too (a foreign key to such a table needs one).
S.extension_members = [[
SELECT e.classid::regclass::text AS class, e.objid, e.refobjid AS extension,
       CASE WHEN e.classid IN ('pg_class'::regclass, 'pg_type'::regclass)
            THEN pg_describe_object(e.classid, e.objid, 0) END AS description
FROM pg_depend e
WHERE e.deptype = 'e' AND e.refclassid = 'pg_extension'::regclass
UNION ALL
SELECT 'pg_class', i.indexrelid, e.refobjid, pg_describe_object('pg_class'::regclass, i.indexrelid, 0)
FROM pg_index i
JOIN pg_depend e ON e.classid = 'pg_class'::regclass AND e.objid = i.indrelid
     AND e.deptype = 'e' AND e.refclassid = 'pg_extension'::regclass
WHERE NOT EXISTS (SELECT FROM pg_depend x WHERE x.classid = 'pg_class'::regclass
                  AND x.objid = i.indexrelid AND x.deptype = 'e')
]]

-- Configuration tables and sequences of extensions (pg_extension_config_dump): created by
-- CREATE EXTENSION, their rows (those matching the condition, "WHERE ..." or empty for all)
-- copied by the full load, as pg_dump does. key_columns: the primary key, else the replica
-- identity index.
S.extension_config = [[
SELECT x.oid AS extension, x.extname AS extension_name, c.oid, n.nspname AS schema, c.relname AS name,
       c.relkind, NULLIF(btrim(u.condition), '') AS condition,
       c.relreplident AS replica_identity, c.relpersistence = 'u' AS unlogged,
       c.relpages::bigint AS pages, c.reltuples::bigint AS rows_estimate,
       c.relpages::bigint * current_setting('block_size')::bigint AS bytes,
       (SELECT json_agg(json_build_object('num', a.attnum, 'name', a.attname,
                 'type', format_type(a.atttypid, a.atttypmod), 'type_oid', a.atttypid::int8,
                 'not_null', a.attnotnull, 'identity', a.attidentity, 'generated', a.attgenerated)
                 ORDER BY a.attnum)
          FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped)::text AS columns_json,
       (SELECT json_agg(a.attname ORDER BY k.ord)
          FROM unnest((SELECT i.indkey FROM pg_index i
                        WHERE i.indrelid = c.oid AND (i.indisprimary OR i.indisreplident)
                        ORDER BY i.indisprimary DESC LIMIT 1)) WITH ORDINALITY k(attnum, ord)
          JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum)::text AS key_columns_json
FROM pg_extension x
CROSS JOIN LATERAL unnest(x.extconfig, x.extcondition) AS u(reloid, condition)
JOIN pg_class c ON c.oid = u.reloid
JOIN pg_namespace n ON n.oid = c.relnamespace
ORDER BY x.extname, n.nspname, c.relname
]]

-- Privileges on extension members that differ from what CREATE EXTENSION gives them: the
-- extension's initial privileges (pg_init_privs), or the defaults (acldefault) when the
-- script granted nothing. As S.privileges, plus what names the member in GRANT: `word`
-- (TABLE, SEQUENCE, FUNCTION, PROCEDURE, SCHEMA, TYPE, DOMAIN, FOREIGN DATA WRAPPER,
-- LANGUAGE), `schema`, `name`, `args` and `arg_types` (routines: identity arguments, and the
-- argument types alone for short step keys), `column_name` (column privileges).
S.extension_privileges = [[
WITH member AS (
  SELECT e.classid, e.objid, e.refobjid AS extension
  FROM pg_depend e
  WHERE e.deptype = 'e' AND e.refclassid = 'pg_extension'::regclass
), acl AS (
  SELECT m.extension, 'pg_class' AS class, c.oid, 0 AS subid, c.relowner AS owner, c.relacl AS acl,
         acldefault(CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END::"char", c.relowner) AS defaults,
         CASE WHEN c.relkind = 'S' THEN 'SEQUENCE' ELSE 'TABLE' END AS word,
         n.nspname AS schema, c.relname AS name, NULL::text AS args, NULL::text AS arg_types,
         NULL::name AS column_name
  FROM member m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  UNION ALL
  SELECT m.extension, 'pg_class', c.oid, a.attnum, c.relowner, a.attacl, NULL::aclitem[],
         'TABLE', n.nspname, c.relname, NULL, NULL, a.attname
  FROM member m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  UNION ALL
  SELECT m.extension, 'pg_proc', p.oid, 0, p.proowner, p.proacl, acldefault('f', p.proowner),
         CASE WHEN p.prokind = 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END, n.nspname, p.proname,
         pg_get_function_identity_arguments(p.oid), oidvectortypes(p.proargtypes), NULL
  FROM member m JOIN pg_proc p ON m.classid = 'pg_proc'::regclass AND p.oid = m.objid
  JOIN pg_namespace n ON n.oid = p.pronamespace
  UNION ALL
  SELECT m.extension, 'pg_namespace', n.oid, 0, n.nspowner, n.nspacl, acldefault('n', n.nspowner),
         'SCHEMA', NULL, n.nspname, NULL, NULL, NULL
  FROM member m JOIN pg_namespace n ON m.classid = 'pg_namespace'::regclass AND n.oid = m.objid
  UNION ALL
  SELECT m.extension, 'pg_type', t.oid, 0, t.typowner, t.typacl, acldefault('T', t.typowner),
         CASE WHEN t.typtype = 'd' THEN 'DOMAIN' ELSE 'TYPE' END, n.nspname, t.typname, NULL, NULL, NULL
  FROM member m JOIN pg_type t ON m.classid = 'pg_type'::regclass AND t.oid = m.objid
  JOIN pg_namespace n ON n.oid = t.typnamespace
  UNION ALL
  SELECT m.extension, 'pg_foreign_data_wrapper', w.oid, 0, w.fdwowner, w.fdwacl, acldefault('F', w.fdwowner),
         'FOREIGN DATA WRAPPER', NULL, w.fdwname, NULL, NULL, NULL
  FROM member m JOIN pg_foreign_data_wrapper w ON m.classid = 'pg_foreign_data_wrapper'::regclass AND w.oid = m.objid
  UNION ALL
  SELECT m.extension, 'pg_language', l.oid, 0, l.lanowner, l.lanacl, acldefault('l', l.lanowner),
         'LANGUAGE', NULL, l.lanname, NULL, NULL, NULL
  FROM member m JOIN pg_language l ON m.classid = 'pg_language'::regclass AND l.oid = m.objid
), compared AS (
  SELECT acl.*, coalesce(acl.acl, acl.defaults) AS now, coalesce(ip.initprivs, acl.defaults) AS base
  FROM acl
  LEFT JOIN pg_init_privs ip ON ip.objoid = acl.oid AND ip.classoid = acl.class::regclass
        AND ip.objsubid = acl.subid
  WHERE acl.acl IS NOT NULL OR ip.initprivs IS NOT NULL
)
SELECT c.extension, c.class, c.oid AS objoid, c.subid AS objsubid, c.word, c.schema, c.name, c.args,
       c.arg_types, c.column_name,
       g.action, g.privilege, g.grantable,
       CASE WHEN g.grantee = 0 THEN NULL ELSE pg_get_userbyid(g.grantee) END AS grantee,
       g.grantee = c.owner AS to_owner
FROM compared c,
LATERAL (
  (SELECT 'grant' AS action, x.grantee, x.privilege_type AS privilege, x.is_grantable AS grantable
     FROM aclexplode(c.now) x
   EXCEPT
   SELECT 'grant', y.grantee, y.privilege_type, y.is_grantable FROM aclexplode(c.base) y)
  UNION ALL
  (SELECT 'revoke', y.grantee, y.privilege_type, false FROM aclexplode(c.base) y
   EXCEPT
   SELECT 'revoke', x.grantee, x.privilege_type, false FROM aclexplode(c.now) x)
) g
ORDER BY c.extension, c.class, c.oid, c.subid, g.action, g.grantee, g.privilege
]]

S.collations = [[
SELECT c.oid, n.nspname AS schema, c.collname AS name, pg_get_userbyid(c.collowner) AS owner,
       c.collprovider AS provider, c.collisdeterministic AS deterministic,
       c.collcollate AS lc_collate, c.collctype AS lc_ctype,
       coalesce(to_jsonb(c) ->> 'colllocale', to_jsonb(c) ->> 'colliculocale') AS locale,
       to_jsonb(c) ->> 'collicurules' AS icu_rules
FROM pg_collation c
JOIN pg_namespace n ON n.oid = c.collnamespace
WHERE %USER_SCHEMA%
  AND NOT EXISTS (SELECT FROM pg_depend e WHERE e.classid = 'pg_collation'::regclass
                  AND e.objid = c.oid AND e.deptype = 'e')
ORDER BY n.nspname, c.collname
]]

-- Enums, composites, domains, ranges and (for reporting) base types. Array types and the row
-- types of tables are left out: they come with their element type or relation.
S.types = [[
SELECT t.oid, n.nspname AS schema, t.typname AS name, pg_get_userbyid(t.typowner) AS owner,
       t.typtype AS type_kind, t.typarray AS array_oid, t.typrelid AS relid,
       (SELECT json_agg(e.enumlabel ORDER BY e.enumsortorder)
          FROM pg_enum e WHERE e.enumtypid = t.oid)::text AS labels_json,
       format_type(t.typbasetype, t.typtypmod) AS base_type,
       t.typnotnull AS not_null,
       pg_get_expr(t.typdefaultbin, 0) AS default_expr,
       CASE WHEN t.typtype = 'd' AND t.typcollation <> bt.typcollation THEN tcn.nspname END AS collation_schema,
       CASE WHEN t.typtype = 'd' AND t.typcollation <> bt.typcollation THEN tco.collname END AS collation_name,
       format_type(r.rngsubtype, NULL) AS range_subtype,
       CASE WHEN NOT opc.opcdefault THEN opcn.nspname END AS range_opclass_schema,
       CASE WHEN NOT opc.opcdefault THEN opc.opcname END AS range_opclass_name,
       CASE WHEN r.rngcollation <> st.typcollation THEN rcn.nspname END AS range_collation_schema,
       CASE WHEN r.rngcollation <> st.typcollation THEN rco.collname END AS range_collation_name,
       cpn.nspname AS range_canonical_schema, cp.proname AS range_canonical_name,
       dpn.nspname AS range_diff_schema, dp.proname AS range_diff_name,
       mtn.nspname AS multirange_schema, mt.typname AS multirange_name,
       mt.oid AS multirange_oid, mt.typarray AS multirange_array_oid,
       -- base types (typtype 'b'): the fields of CREATE TYPE name (INPUT = ..., ...), and its
       -- functions by role (input, output, ...): [schema, name, oid]
       CASE WHEN t.typtype = 'b' THEN t.typlen END AS base_length,
       CASE WHEN t.typtype = 'b' THEN t.typbyval END AS base_by_value,
       CASE WHEN t.typtype = 'b' THEN t.typalign END AS base_alignment,
       CASE WHEN t.typtype = 'b' THEN t.typstorage END AS base_storage,
       CASE WHEN t.typtype = 'b' THEN t.typcategory END AS base_category,
       CASE WHEN t.typtype = 'b' THEN t.typispreferred END AS base_preferred,
       CASE WHEN t.typtype = 'b' THEN t.typdelim END AS base_delimiter,
       CASE WHEN t.typtype = 'b' THEN t.typcollation <> 0 END AS base_collatable,
       CASE WHEN t.typtype = 'b' THEN t.typdefault END AS base_default,
       CASE WHEN t.typtype = 'b' AND t.typelem <> 0 THEN format_type(t.typelem, NULL) END AS base_element,
       CASE WHEN t.typtype = 'b' THEN
         (SELECT json_object_agg(f.role, json_build_array(fn.nspname, fp.proname, fp.oid::int8))
            FROM (VALUES ('input', t.typinput), ('output', t.typoutput), ('receive', t.typreceive),
                         ('send', t.typsend), ('typmod_in', t.typmodin), ('typmod_out', t.typmodout),
                         ('analyze', t.typanalyze),
                         -- typsubscript (PostgreSQL 14+) as regproc text; matched by name, not
                         -- cast back (an overloaded name would make ::regproc fail)
                         ('subscript', (SELECT sp.oid FROM pg_proc sp
                                          JOIN pg_namespace spn ON spn.oid = sp.pronamespace
                                         WHERE sp.pronargs = 1 AND sp.proargtypes[0] = 'internal'::regtype
                                           AND to_jsonb(t) ->> 'typsubscript' IN
                                               (quote_ident(spn.nspname) || '.' || quote_ident(sp.proname),
                                                CASE WHEN spn.nspname = 'pg_catalog' THEN quote_ident(sp.proname) END)
                                         LIMIT 1))) f(role, fn_oid)
            JOIN pg_proc fp ON fp.oid = f.fn_oid
            JOIN pg_namespace fn ON fn.oid = fp.pronamespace)::text END AS base_functions_json
FROM pg_type t
JOIN pg_namespace n ON n.oid = t.typnamespace
LEFT JOIN pg_type bt ON bt.oid = t.typbasetype
LEFT JOIN pg_collation tco ON tco.oid = t.typcollation
LEFT JOIN pg_namespace tcn ON tcn.oid = tco.collnamespace
LEFT JOIN pg_range r ON r.rngtypid = t.oid
LEFT JOIN pg_type st ON st.oid = r.rngsubtype
LEFT JOIN pg_opclass opc ON opc.oid = r.rngsubopc
LEFT JOIN pg_namespace opcn ON opcn.oid = opc.opcnamespace
LEFT JOIN pg_collation rco ON rco.oid = r.rngcollation
LEFT JOIN pg_namespace rcn ON rcn.oid = rco.collnamespace
LEFT JOIN pg_proc cp ON cp.oid = r.rngcanonical
LEFT JOIN pg_namespace cpn ON cpn.oid = cp.pronamespace
LEFT JOIN pg_proc dp ON dp.oid = r.rngsubdiff
LEFT JOIN pg_namespace dpn ON dpn.oid = dp.pronamespace
LEFT JOIN pg_type mt ON mt.oid = (to_jsonb(r) ->> 'rngmultitypid')::oid
LEFT JOIN pg_namespace mtn ON mtn.oid = mt.typnamespace
WHERE %USER_SCHEMA%
  AND t.typtype IN ('b', 'c', 'd', 'e', 'r')
  AND (t.typtype <> 'c' OR EXISTS (SELECT FROM pg_class c WHERE c.oid = t.typrelid AND c.relkind = 'c'))
  -- Array types are left out as the rows are read (a hashed NOT IN filters the scan; as an
  -- anti-join the planner sorted every table's array type through the joins above: 1 s on
  -- 10,000 tables). typarray is never NULL.
  AND t.oid NOT IN (SELECT el.typarray FROM pg_type el)
  AND NOT EXISTS (SELECT FROM pg_depend e WHERE e.classid = 'pg_type'::regclass
                  AND e.objid = t.oid AND e.deptype = 'e')
ORDER BY n.nspname, t.typname
]]

S.sequences = [[
SELECT c.oid, n.nspname AS schema, c.relname AS name, pg_get_userbyid(c.relowner) AS owner,
       c.relpersistence = 'u' AS unlogged,
       format_type(s.seqtypid, NULL) AS data_type, s.seqstart AS start,
       s.seqincrement AS increment, s.seqmin AS min, s.seqmax AS max,
       s.seqcache AS cache, s.seqcycle AS cycle,
       d.deptype AS owned_deptype, d.refobjid AS owned_table_oid, a.attname AS owned_column
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_sequence s ON s.seqrelid = c.oid
LEFT JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid
      AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
LEFT JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
WHERE c.relkind = 'S' AND %USER_SCHEMA%
  AND NOT EXISTS (SELECT FROM pg_depend e WHERE e.classid = 'pg_class'::regclass
                  AND e.objid = c.oid AND e.deptype = 'e')
ORDER BY n.nspname, c.relname
]]

-- Tables, partitioned tables and foreign tables. Sizes come from pg_class statistics (no
-- lock, no file access per table).
-- pgtide_heartbeat: the heartbeat table of a pgtide task (any task: never migrated). Marked by
-- its comment (tide.cdc.objects.ensure_heartbeat); one made by an earlier version, without
-- the comment, by its default name pgtide_<task>_heartbeat and its exact columns (slot text,
-- beat timestamptz, lsn pg_lsn). The columns are only counted for tables with such a name.
S.tables = [[
SELECT c.oid, n.nspname AS schema, c.relname AS name, pg_get_userbyid(c.relowner) AS owner,
       c.relkind, c.relpersistence = 'u' AS unlogged, c.reltype AS type_oid,
       rt.typarray AS array_oid,
       c.relispartition AS is_partition,
       pg_get_expr(c.relpartbound, c.oid) AS partition_bound,
       CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END AS partition_key,
       inh.parents::text AS parents_json,
       CASE WHEN am.amname <> 'heap' THEN am.amname END AS access_method,
       CASE WHEN c.reloptions IS NOT NULL THEN
         (SELECT string_agg(quote_ident(o.option_name) || '=' || quote_literal(o.option_value), ', ')
            FROM pg_options_to_table(c.reloptions) o) END AS options,
       CASE WHEN tc.reloptions IS NOT NULL THEN
         (SELECT string_agg('toast.' || quote_ident(o.option_name) || '=' || quote_literal(o.option_value), ', ')
            FROM pg_options_to_table(tc.reloptions) o) END AS toast_options,
       c.relrowsecurity AS row_security, c.relforcerowsecurity AS force_row_security,
       c.relreplident AS replica_identity,
       ix.replica_index_oid, ix.cluster_index_oid,
       fs.srvname AS foreign_server,
       CASE WHEN ft.ftoptions IS NOT NULL THEN
         (SELECT string_agg(quote_ident(o.option_name) || ' ' || quote_literal(o.option_value), ', ')
            FROM pg_options_to_table(ft.ftoptions) o) END AS foreign_options,
       c.relpages::bigint AS pages, c.reltuples::bigint AS rows_estimate,
       c.relpages::bigint * current_setting('block_size')::bigint AS bytes,
       CASE WHEN c.relkind <> 'r' THEN false
            WHEN hd.description LIKE 'pgtide heartbeat table%' THEN true
            WHEN c.relname ~ '^pgtide_.*_heartbeat$' THEN
              (SELECT count(*) = 3 AND count(*) FILTER (WHERE
                        (a.attname = 'slot' AND a.atttypid = 'text'::regtype)
                     OR (a.attname = 'beat' AND a.atttypid = 'timestamptz'::regtype)
                     OR (a.attname = 'lsn' AND a.atttypid = 'pg_lsn'::regtype)) = 3
                 FROM pg_attribute a
                 WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped)
            ELSE false END AS pgtide_heartbeat
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_am am ON am.oid = c.relam
LEFT JOIN pg_description hd ON hd.objoid = c.oid AND hd.classoid = 'pg_class'::regclass AND hd.objsubid = 0
LEFT JOIN pg_foreign_table ft ON ft.ftrelid = c.oid
LEFT JOIN pg_foreign_server fs ON fs.oid = ft.ftserver
-- (Joined and aggregated once, not looked up row by row: half of the statement's time at
-- 100,000 tables. A table has at most one replica identity index and one clustered index.)
LEFT JOIN pg_type rt ON rt.oid = c.reltype
LEFT JOIN pg_class tc ON tc.oid = c.reltoastrelid
LEFT JOIN (SELECT i.inhrelid, json_agg(i.inhparent ORDER BY i.inhseqno) AS parents
             FROM pg_inherits i GROUP BY i.inhrelid) inh ON inh.inhrelid = c.oid
LEFT JOIN (SELECT i.indrelid, min(i.indexrelid) FILTER (WHERE i.indisreplident) AS replica_index_oid,
                  min(i.indexrelid) FILTER (WHERE i.indisclustered) AS cluster_index_oid
             FROM pg_index i WHERE i.indisreplident OR i.indisclustered
            GROUP BY i.indrelid) ix ON ix.indrelid = c.oid
WHERE c.relkind IN ('r', 'p', 'f') AND %USER_SCHEMA%
  AND NOT EXISTS (SELECT FROM pg_depend e WHERE e.classid = 'pg_class'::regclass
                  AND e.objid = c.oid AND e.deptype = 'e')
ORDER BY n.nspname, c.relname
]]

-- Columns of every relation that has them (tables, views, composite types, ...).
S.columns = [[
SELECT a.attrelid AS relid, a.attnum AS num, a.attname AS name,
       NULLIF(quote_ident(a.attname), a.attname) AS quoted,
       format_type(a.atttypid, a.atttypmod) AS type, a.atttypid AS type_oid,
       a.attnotnull AS not_null,
       -- (The usual values come as NULL: absent from the row, given by M.defaults.)
       NULLIF(a.attidentity, '') AS identity, NULLIF(a.attgenerated, '') AS generated,
       NULLIF(a.attislocal, true) AS is_local, NULLIF(a.attinhcount, 0) AS inherited_count,
       CASE WHEN a.attcollation <> t.typcollation THEN cn.nspname END AS collation_schema,
       CASE WHEN a.attcollation <> t.typcollation THEN co.collname END AS collation_name,
       pg_get_expr(ad.adbin, ad.adrelid) AS default_expr, ad.oid AS default_oid,
       CASE WHEN a.attstorage <> t.typstorage THEN a.attstorage END AS storage,
       -- (attstattarget is in every version; to_jsonb of the row, for attcompression (14+),
       -- was half of this statement's time: only where a compression can be set; from 14 on,
       -- the column itself, NEWER below.)
       NULLIF(a.attstattarget::int, -1) AS statistics,
       CASE WHEN t.typstorage <> 'p' THEN NULLIF(to_jsonb(a) ->> 'attcompression', '') END AS compression,
       CASE WHEN a.attoptions IS NOT NULL THEN
         (SELECT string_agg(quote_ident(o.option_name) || '=' || quote_literal(o.option_value), ', ')
            FROM pg_options_to_table(a.attoptions) o
           -- pg_-prefixed options are the server's own (some builds stamp every column with one)
           WHERE o.option_name NOT LIKE 'pg\_%') END AS options,
       CASE WHEN a.attfdwoptions IS NOT NULL THEN
         (SELECT string_agg(quote_ident(o.option_name) || ' ' || quote_literal(o.option_value), ', ')
            FROM pg_options_to_table(a.attfdwoptions) o) END AS foreign_options
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_collation co ON co.oid = a.attcollation
LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace
LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
WHERE a.attnum > 0 AND NOT a.attisdropped
  AND c.relkind IN ('r', 'p', 'f', 'c', 'v', 'm') AND %USER_SCHEMA%
  AND NOT EXISTS (SELECT FROM pg_depend e WHERE e.classid = 'pg_class'::regclass
                  AND e.objid = c.oid AND e.deptype = 'e')
ORDER BY a.attrelid, a.attnum
]]

-- Table and domain constraints. NOT NULL rows (contype 'n', PostgreSQL 18) are covered by
-- the columns' not_null. The definition of a constraint's index is in `indexes`.
S.constraints = [[
SELECT co.oid, n.nspname AS schema, co.conname AS name, co.contype AS type,
       co.conrelid AS table_oid, co.conindid AS index_oid,
       -- (The usual values come as NULL: absent from the row, given by M.defaults.)
       NULLIF(co.contypid, 0) AS domain_oid, NULLIF(co.confrelid, 0) AS referenced_oid,
       NULLIF(co.conparentid, 0) AS parent_oid, NULLIF(co.conislocal, true) AS is_local,
       NULLIF(co.coninhcount, 0) AS inherited_count, NULLIF(co.convalidated, true) AS validated,
       NULLIF(co.condeferrable, false) AS deferrable, NULLIF(co.condeferred, false) AS deferred,
       pg_get_constraintdef(co.oid) AS definition,
       -- (Key columns as numbers, named by tide.catalog.rows.name_key_columns.)
       co.conkey::text AS column_nums, co.confkey::text AS ref_column_nums
FROM pg_constraint co
JOIN pg_namespace n ON n.oid = co.connamespace
WHERE %USER_SCHEMA% AND co.contype IN ('c', 'f', 'p', 'u', 'x')
  AND (co.conrelid <> 0 OR co.contypid <> 0)
ORDER BY co.conrelid, co.contypid, co.conname
]]

-- Indexes, including the ones behind constraints (marked by constraint_oid) and the
-- partition children of partitioned indexes (parent_oid).
S.indexes = [[
SELECT i.indexrelid AS oid, n.nspname AS schema, ic.relname AS name, i.indrelid AS table_oid,
       NULLIF(ic.relkind = 'I', false) AS partitioned, NULLIF(i.indisvalid, true) AS valid,
       pg_get_indexdef(i.indexrelid) AS definition,
       i.indkey::text AS column_nums,   -- (named as the constraints' are)
       h.inhparent AS parent_oid,
       -- ALTER INDEX ... ALTER COLUMN n SET STATISTICS (expression columns): [[n, target], ...]
       CASE WHEN i.indexprs IS NOT NULL THEN
         (SELECT json_agg(json_build_array(a.attnum, a.attstattarget::int) ORDER BY a.attnum)
            FROM pg_attribute a WHERE a.attrelid = i.indexrelid AND a.attnum > 0
             AND coalesce(a.attstattarget::int, -1) >= 0)::text END AS statistics_json,
       co.oid AS constraint_oid
FROM pg_index i
JOIN pg_class ic ON ic.oid = i.indexrelid
JOIN pg_class c ON c.oid = i.indrelid
JOIN pg_namespace n ON n.oid = ic.relnamespace
-- (Joined, not looked up row by row: an index has at most one parent and backs at most one
-- constraint.)
LEFT JOIN pg_inherits h ON h.inhrelid = i.indexrelid
LEFT JOIN pg_constraint co ON co.conindid = i.indexrelid AND co.conrelid = i.indrelid
      AND co.contype IN ('p', 'u', 'x')
WHERE c.relkind IN ('r', 'p', 'm', 'f') AND %USER_SCHEMA%
  AND NOT EXISTS (SELECT FROM pg_depend e WHERE e.classid = 'pg_class'::regclass
                  AND e.objid = c.oid AND e.deptype = 'e')
ORDER BY i.indrelid, ic.relname
]]

S.views = [[
SELECT c.oid, n.nspname AS schema, c.relname AS name, pg_get_userbyid(c.relowner) AS owner,
       c.relkind, c.relispopulated AS populated, c.reltype AS type_oid,
       (SELECT t.typarray FROM pg_type t WHERE t.oid = c.reltype) AS array_oid,
       pg_get_viewdef(c.oid) AS definition,
       (SELECT r.oid FROM pg_rewrite r WHERE r.ev_class = c.oid AND r.rulename = '_RETURN') AS rule_oid,
       (SELECT string_agg(quote_ident(o.option_name) || '=' || quote_literal(o.option_value), ', ')
          FROM pg_options_to_table(c.reloptions) o WHERE o.option_name <> 'check_option') AS options,
       (SELECT o.option_value FROM pg_options_to_table(c.reloptions) o
          WHERE o.option_name = 'check_option') AS check_option,
       CASE WHEN c.relkind = 'm' AND am.amname <> 'heap' THEN am.amname END AS access_method
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_am am ON am.oid = c.relam
WHERE c.relkind IN ('v', 'm') AND %USER_SCHEMA%
  AND NOT EXISTS (SELECT FROM pg_depend e WHERE e.classid = 'pg_class'::regclass
                  AND e.objid = c.oid AND e.deptype = 'e')
ORDER BY n.nspname, c.relname
]]

-- Functions, procedures and aggregates (with their pg_aggregate row). Functions a type made
-- for itself (a range's constructors: internal dependency) come with the type.
S.functions = [[
SELECT p.oid, n.nspname AS schema, p.proname AS name, pg_get_userbyid(p.proowner) AS owner,
       p.prokind AS routine_kind,
       pg_get_function_identity_arguments(p.oid) AS identity_args,
       pg_get_function_arguments(p.oid) AS args,
       CASE WHEN p.prokind <> 'a' THEN pg_get_functiondef(p.oid) END AS definition,
       a.aggkind, a.aggtransfn::oid AS transfn_oid,
       format_type(a.aggtranstype, NULL) AS transtype, a.aggtransspace AS transspace,
       a.agginitval AS initval, a.aggfinalextra AS finalextra,
       to_jsonb(a) ->> 'aggfinalmodify' AS finalmodify,
       format_type(NULLIF(a.aggmtranstype, 0), NULL) AS mtranstype, a.aggmtransspace AS mtransspace,
       a.aggminitval AS minitval, a.aggmfinalextra AS mfinalextra,
       to_jsonb(a) ->> 'aggmfinalmodify' AS mfinalmodify,
       NULLIF(a.aggsortop, 0)::regoperator::text AS sortop,
       (SELECT json_build_array(son.nspname, so.oprname) FROM pg_operator so
          JOIN pg_namespace son ON son.oid = so.oprnamespace WHERE so.oid = a.aggsortop)::text AS sortop_ref_json,
       p.proparallel AS parallel,
       (SELECT json_object_agg(f.role, json_build_array(fn.nspname, fp.proname))
          FROM (VALUES ('sfunc', a.aggtransfn), ('finalfunc', a.aggfinalfn),
                       ('combinefunc', a.aggcombinefn), ('serialfunc', a.aggserialfn),
                       ('deserialfunc', a.aggdeserialfn), ('msfunc', a.aggmtransfn),
                       ('minvfunc', a.aggminvtransfn), ('mfinalfunc', a.aggmfinalfn)) f(role, fn_oid)
          JOIN pg_proc fp ON fp.oid = f.fn_oid
          JOIN pg_namespace fn ON fn.oid = fp.pronamespace)::text AS support_json
FROM pg_proc p
JOIN pg_namespace n ON n.oid = p.pronamespace
LEFT JOIN pg_aggregate a ON a.aggfnoid = p.oid
WHERE %USER_SCHEMA%
  AND NOT EXISTS (SELECT FROM pg_depend e WHERE e.classid = 'pg_proc'::regclass
                  AND e.objid = p.oid AND e.deptype IN ('e', 'i'))
ORDER BY n.nspname, p.proname, pg_get_function_identity_arguments(p.oid)
]]

-- Triggers the user wrote: not the internal ones behind foreign keys, not the clones a
-- partitioned table's trigger makes on its partitions.
S.triggers = [[
SELECT t.oid, n.nspname AS schema, t.tgname AS name, t.tgrelid AS table_oid,
       pg_get_triggerdef(t.oid) AS definition, t.tgenabled AS enabled,
       t.tgconstraint AS constraint_oid
FROM pg_trigger t
JOIN pg_class c ON c.oid = t.tgrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE NOT t.tgisinternal AND %USER_SCHEMA%
  AND coalesce((to_jsonb(t) ->> 'tgparentid')::oid, 0) = 0
ORDER BY t.tgrelid, t.tgname
]]

S.rules = [[
SELECT r.oid, n.nspname AS schema, r.rulename AS name, r.ev_class AS table_oid,
       pg_get_ruledef(r.oid) AS definition, r.ev_enabled AS enabled
FROM pg_rewrite r
JOIN pg_class c ON c.oid = r.ev_class
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE r.rulename <> '_RETURN' AND %USER_SCHEMA%
ORDER BY r.ev_class, r.rulename
]]

S.policies = [[
SELECT p.oid, n.nspname AS schema, p.polname AS name, p.polrelid AS table_oid,
       p.polcmd AS command, p.polpermissive AS permissive,
       (SELECT json_agg(CASE WHEN r = 0 THEN NULL ELSE pg_get_userbyid(r) END)
          FROM unnest(p.polroles) r)::text AS roles_json,
       pg_get_expr(p.polqual, p.polrelid) AS using_expr,
       pg_get_expr(p.polwithcheck, p.polrelid) AS check_expr
FROM pg_policy p
JOIN pg_class c ON c.oid = p.polrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE %USER_SCHEMA%
ORDER BY p.polrelid, p.polname
]]

S.statistics = [[
SELECT s.oid, n.nspname AS schema, s.stxname AS name, s.stxrelid AS table_oid,
       pg_get_userbyid(s.stxowner) AS owner, pg_get_statisticsobjdef(s.oid) AS definition,
       NULLIF((to_jsonb(s) ->> 'stxstattarget')::int, -1) AS statistics
FROM pg_statistic_ext s
JOIN pg_namespace n ON n.oid = s.stxnamespace
WHERE %USER_SCHEMA%
ORDER BY n.nspname, s.stxname
]]

-- Comments. System objects (oid < 16384) are skipped, except schemas: `public` has a low oid.
S.comments = [[
SELECT d.classoid::regclass::text AS class, d.objoid, d.objsubid, d.description
FROM pg_description d
WHERE d.objoid >= 16384 OR d.classoid = 'pg_namespace'::regclass
]]

-- Security labels (SECURITY LABEL FOR provider ON ...), selected like comments. Labels of
-- shared objects (pg_shseclabel: roles, tablespaces, databases) are not read: pgtide
-- migrates none of those.
S.security_labels = [[
SELECT l.classoid::regclass::text AS class, l.objoid, l.objsubid, l.provider, l.label
FROM pg_seclabel l
WHERE l.objoid >= 16384 OR l.classoid = 'pg_namespace'::regclass
ORDER BY 1, 2, 3, 4
]]

-- Privileges that differ from the defaults the server would give the owner: what was
-- granted on top of acldefault(), and what was revoked from it. grantee NULL = PUBLIC.
S.privileges = [[
WITH acl AS (
  SELECT 'pg_class' AS class, c.oid, 0 AS subid, c.relowner AS owner, c.relacl AS acl,
         acldefault(CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END::"char", c.relowner) AS defaults
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relacl IS NOT NULL AND %USER_SCHEMA%
  UNION ALL
  SELECT 'pg_class', c.oid, a.attnum, c.relowner, a.attacl, NULL::aclitem[]
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE a.attacl IS NOT NULL AND a.attnum > 0 AND NOT a.attisdropped AND %USER_SCHEMA%
  UNION ALL
  SELECT 'pg_namespace', n.oid, 0, n.nspowner, n.nspacl, acldefault('n', n.nspowner)
  FROM pg_namespace n WHERE n.nspacl IS NOT NULL AND %USER_SCHEMA%
  UNION ALL
  SELECT 'pg_proc', p.oid, 0, p.proowner, p.proacl, acldefault('f', p.proowner)
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
  WHERE p.proacl IS NOT NULL AND %USER_SCHEMA%
  UNION ALL
  SELECT 'pg_type', t.oid, 0, t.typowner, t.typacl, acldefault('T', t.typowner)
  FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
  WHERE t.typacl IS NOT NULL AND %USER_SCHEMA%
  UNION ALL
  SELECT 'pg_foreign_data_wrapper', w.oid, 0, w.fdwowner, w.fdwacl, acldefault('F', w.fdwowner)
  FROM pg_foreign_data_wrapper w WHERE w.fdwacl IS NOT NULL
  UNION ALL
  SELECT 'pg_foreign_server', s.oid, 0, s.srvowner, s.srvacl, acldefault('S', s.srvowner)
  FROM pg_foreign_server s WHERE s.srvacl IS NOT NULL
  UNION ALL
  SELECT 'pg_language', l.oid, 0, l.lanowner, l.lanacl, acldefault('l', l.lanowner)
  FROM pg_language l WHERE l.lanacl IS NOT NULL AND l.oid >= 16384
)
SELECT acl.class, acl.oid AS objoid, acl.subid AS objsubid, g.action, g.privilege,
       g.grantable, CASE WHEN g.grantee = 0 THEN NULL ELSE pg_get_userbyid(g.grantee) END AS grantee,
       g.grantee = acl.owner AS to_owner
FROM acl,
LATERAL (
  (SELECT 'grant' AS action, x.grantee, x.privilege_type AS privilege, x.is_grantable AS grantable
     FROM aclexplode(acl.acl) x
   EXCEPT
   SELECT 'grant', y.grantee, y.privilege_type, y.is_grantable FROM aclexplode(acl.defaults) y)
  UNION ALL
  (SELECT 'revoke', y.grantee, y.privilege_type, false FROM aclexplode(acl.defaults) y
   EXCEPT
   SELECT 'revoke', x.grantee, x.privilege_type, false FROM aclexplode(acl.acl) x)
) g
ORDER BY acl.class, acl.oid, acl.subid, g.action, g.grantee, g.privilege
]]

-- What depends on what among user objects (oids below 16384 are the server's own).
-- 'n' normal and 'a' automatic dependencies are the ones that order creation.
S.depends = [[
SELECT d.classid::regclass::text AS class, d.objid, d.objsubid,
       d.refclassid::regclass::text AS refclass, d.refobjid, d.refobjsubid, d.deptype
FROM pg_depend d
WHERE d.deptype IN ('n', 'a') AND d.objid >= 16384 AND d.refobjid >= 16384
]]

-- Objects of kinds pgtide does not create, per schema, so the plan can say so. (The first
-- row names the columns and is never true: a kind's line can go when pgtide creates it.)
S.unsupported = [[
SELECT n.nspname AS schema, k.kind, count(*) AS count
FROM (
  SELECT NULL::text AS kind, NULL::oid AS nsp, NULL::oid AS oid, NULL::regclass AS cls WHERE false
) k
JOIN pg_namespace n ON n.oid = k.nsp
WHERE %USER_SCHEMA%
  AND NOT EXISTS (SELECT FROM pg_depend e WHERE e.classid = k.cls AND e.objid = k.oid AND e.deptype = 'e')
GROUP BY n.nspname, k.kind
ORDER BY 1, 2
]]

-- PolarDB for PostgreSQL (Oracle compatible): synonyms, read only when pg_synonym exists.
-- Untested here (no such server on the build machine).
S.synonyms = [[
SELECT s.oid, n.nspname AS schema, s.synname AS name, pg_get_userbyid(s.synowner) AS owner,
       s.synobjschema AS object_schema, s.synobjname AS object_name,
       NULLIF(s.synlink, '') AS dblink
FROM pg_synonym s
JOIN pg_namespace n ON n.oid = s.synnamespace
WHERE %USER_SCHEMA%
ORDER BY n.nspname, s.synname
]]

-- Packages (specification and body), read only when edb_package exists. Untested here.
S.packages = [[
SELECT p.oid, n.nspname AS schema, p.pkgname AS name, pg_get_userbyid(p.pkgowner) AS owner,
       p.pkgheadsrc AS header, p.pkgbodysrc AS body
FROM edb_package p
JOIN pg_namespace n ON n.oid = p.pkgnamespace
WHERE %USER_SCHEMA%
ORDER BY n.nspname, p.pkgname
]]

-- The statements of the less common kinds live beside this file.
require("tide.catalog.operators")(S)
require("tide.catalog.global")(S)

local indexdef = require "tide.catalog.indexdef"
S.settings = S.settings:gsub("%%BTREE_DEFAULTS%%", function() return indexdef.DEFAULTS end)
-- Look-ups of a few rows, not in kinds_read: key columns tide.catalog.rows cannot name, the
-- definitions tide.catalog.indexdef cannot write.
S.attributes, S.index_definitions, S.constraint_definitions =
  require("tide.catalog.rows").ATTRIBUTES, indexdef.FETCH, indexdef.FETCH_CONSTRAINTS
for name, sql in pairs(S) do S[name] = sql:gsub("%%USER_SCHEMA%%", USER_SCHEMA) end

-- Statements with a cheaper form where the server's catalog allows it, the same rows (the
-- settings statement says which: a fork may number itself otherwise). From PostgreSQL 14 on,
-- attcompression read as it is, not out of to_jsonb of the row (0.5 to 0.4 s at 10,000
-- tables); from 15 to 17, plain indexes' and keys' definitions written by tide.catalog.indexdef.
local NEWER = {
  { setting = "has_attcompression",
    columns = (S.columns:gsub("CASE WHEN t%.typstorage <> 'p' THEN NULLIF%(to_jsonb%(a%) %->> 'attcompression', ''%) END",
                              "NULLIF(a.attcompression, '')")) },
  { setting = "writes_definitions", indexes = indexdef.statement(S.indexes),
    constraints = indexdef.constraint_statement(S.constraints) },
}
assert(NEWER[1].columns ~= S.columns, "tide.catalog: the columns statement's compression moved")

------------------------------------------------------------------------ reading

local json = require "tide.json"

-- JSON null inside decoded lists (a Lua nil would end the list).
M.null = json.null

local rows_mod = require "tide.catalog.rows"
M.defaults = rows_mod.defaults

local fetch = require "tide.catalog.fetch"
local function run(conn, name, split, statements, param, big)
  return fetch.run(S, conn, name, split, statements, param, big)
end

-- The statements every read runs, in order; synonyms and packages join when their catalogs
-- exist (settings.has_synonyms / has_packages).
M.kinds_read = { "roles", "schemas", "extensions", "extension_members", "extension_config",
  "extension_privileges", "collations", "types",
  "sequences", "tables", "columns", "constraints", "indexes", "views", "functions", "triggers",
  "rules", "policies", "statistics", "comments", "security_labels", "privileges", "depends", "unsupported",
  "operators", "opfamilies", "opclasses", "casts", "conversions",
  "ts_parsers", "ts_templates", "ts_dictionaries", "ts_configs",
  "foreign_data_wrappers", "foreign_servers", "user_mappings", "event_triggers",
  "default_acls", "db_role_settings",
  "languages", "transforms", "access_methods" }

-- catalog.read(conn [, opts]) → cat: cat[statement name] = rows, plus
--   cat.settings (current_user, server_version, ...), cat.roles_set (name → row),
--   cat.columns_by_relid (oid → rows in attnum order), cat.extension_of ("class:oid" → ext oid),
--   cat.extension_description ("class:oid" → "table s.t" for relations and types of extensions),
--   cat.timing (statement → seconds), cat.connections (how many connections read).
-- opts.only = { names... } reads a subset (the target side needs fewer).
-- opts.open(connect_opts) → one more connection to conn's server and database (as
-- tide.connect.open opens them): on a big catalog the statements are then spread over a few
-- such connections inside the main transaction's snapshot (tide.catalog.parallel).
function M.read(conn, opts)
  opts = opts or {}
  local core = require "tide.core"
  local parallel = require "tide.catalog.parallel"
  local function begin()
    local ok, err = conn:exec("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
    if not ok then error("catalog: cannot start a read transaction: " .. tostring(err), 0) end
  end
  begin()
  local result = table.pack(pcall(function()
    local function set_local()
      assert(conn:exec("SET LOCAL search_path = pg_catalog"))
      -- The large catalog statements cross jit_above_cost on a big catalog, and compiling them
      -- took 1.7 s of the 2 s the types statement needed on 10,000 tables: no JIT here.
      if conn:server_version() >= 110000 then assert(conn:exec("SET LOCAL jit = off")) end
      assert(conn:exec("SET LOCAL cursor_tuple_fraction = 1"))   -- (tide.catalog.fetch)
    end
    set_local()
    local shared = parallel.prepare(conn, opts.open, function() begin(); set_local() end)
    local cat = { timing = {} }
    cat.settings = run(conn, "settings")[1]
    local statements = S
    for _, newer in ipairs(NEWER) do
      if cat.settings[newer.setting] then
        local over = {}
        for name, sql in pairs(newer) do if name ~= "setting" then over[name] = sql end end
        statements = setmetatable(over, { __index = statements })
      end
    end
    local names = opts.only or M.kinds_read
    local list = {}
    for _, name in ipairs(names) do list[#list + 1] = name end
    if cat.settings.has_synonyms then list[#list + 1] = "synonyms" end
    if cat.settings.has_packages then list[#list + 1] = "packages" end
    local split = parallel.split(conn, shared, list)
    cat.connections = parallel.read(conn, shared, list, function(c, name)
      local started = core.monotonic()
      cat[name] = run(c, name, split, statements, nil, cat.settings.relations >= fetch.pieces_from)
      cat.timing[name] = core.monotonic() - started
    end)
    parallel.join(cat)
    -- Inside the snapshot still: the key columns' names may need a look at pg_attribute.
    cat.columns_by_relid = rows_mod.share_columns(cat.columns or {})
    cat.columns = nil   -- (its rows lost their relid: read them by relation)
    local function lookup(name) return function(oids) return run(conn, name, nil, nil, "{" .. table.concat(oids, ",") .. "}") end end
    indexdef.build(cat, cat.columns_by_relid, rows_mod.column_row, lookup("index_definitions"))
    indexdef.build_constraints(cat, cat.columns_by_relid, rows_mod.column_row, lookup("constraint_definitions"))
    rows_mod.name_key_columns(cat, cat.columns_by_relid, lookup("attributes"))
    return cat
  end))
  conn:exec(result[1] and "COMMIT" or "ROLLBACK")
  if not result[1] then error(result[2], 0) end
  local cat = result[2]
  rows_mod.pack(cat)
  -- (Not columns: read by relation, cat.columns_by_relid.)
  for _, name in ipairs(M.kinds_read) do if name ~= "columns" then cat[name] = cat[name] or {} end end
  cat.synonyms, cat.packages = cat.synonyms or {}, cat.packages or {}
  cat.server_version = cat.settings.server_version
  cat.roles_set = {}
  for _, r in ipairs(cat.roles) do cat.roles_set[r.name] = r end
  cat.extension_of, cat.extension_description = {}, {}
  for _, m in ipairs(cat.extension_members) do
    breathe()
    cat.extension_of[m.class .. ":" .. m.objid] = m.extension
    cat.extension_description[m.class .. ":" .. m.objid] = m.description
  end
  return cat
end

return M
