-- tide.catalog.global — catalog statements of objects that mostly live in no schema: text
-- search, foreign data, event triggers, languages, transforms, access methods, default
-- privileges, database and role settings (see tide.catalog for how statements are run).
return function(S)

-- Text search parsers and templates: their functions as { schema, name, oid } by role.
S.ts_parsers = [[
SELECT p.oid, n.nspname AS schema, p.prsname AS name,
       (SELECT json_object_agg(f.role, json_build_array(fn.nspname, fp.proname, fp.oid::int8))
          FROM (VALUES ('start', p.prsstart::oid), ('gettoken', p.prstoken::oid), ('end', p.prsend::oid),
                       ('headline', p.prsheadline::oid), ('lextypes', p.prslextype::oid)) f(role, fn_oid)
          JOIN pg_proc fp ON fp.oid = f.fn_oid
          JOIN pg_namespace fn ON fn.oid = fp.pronamespace)::text AS functions_json
FROM pg_ts_parser p
JOIN pg_namespace n ON n.oid = p.prsnamespace
WHERE %USER_SCHEMA%
  AND NOT EXISTS (SELECT FROM pg_depend e WHERE e.classid = 'pg_ts_parser'::regclass
                  AND e.objid = p.oid AND e.deptype = 'e')
ORDER BY n.nspname, p.prsname
]]

S.ts_templates = [[
SELECT t.oid, n.nspname AS schema, t.tmplname AS name,
       (SELECT json_object_agg(f.role, json_build_array(fn.nspname, fp.proname, fp.oid::int8))
          FROM (VALUES ('init', t.tmplinit::oid), ('lexize', t.tmpllexize::oid)) f(role, fn_oid)
          JOIN pg_proc fp ON fp.oid = f.fn_oid
          JOIN pg_namespace fn ON fn.oid = fp.pronamespace)::text AS functions_json
FROM pg_ts_template t
JOIN pg_namespace n ON n.oid = t.tmplnamespace
WHERE %USER_SCHEMA%
  AND NOT EXISTS (SELECT FROM pg_depend e WHERE e.classid = 'pg_ts_template'::regclass
                  AND e.objid = t.oid AND e.deptype = 'e')
ORDER BY n.nspname, t.tmplname
]]

-- Dictionaries: options as the server stored them ("stopwords = 'english', ...").
S.ts_dictionaries = [[
SELECT d.oid, n.nspname AS schema, d.dictname AS name, pg_get_userbyid(d.dictowner) AS owner,
       t.oid AS template_oid, tn.nspname AS template_schema, t.tmplname AS template_name,
       d.dictinitoption AS options
FROM pg_ts_dict d
JOIN pg_namespace n ON n.oid = d.dictnamespace
JOIN pg_ts_template t ON t.oid = d.dicttemplate
JOIN pg_namespace tn ON tn.oid = t.tmplnamespace
WHERE %USER_SCHEMA%
  AND NOT EXISTS (SELECT FROM pg_depend e WHERE e.classid = 'pg_ts_dict'::regclass
                  AND e.objid = d.oid AND e.deptype = 'e')
ORDER BY n.nspname, d.dictname
]]

-- Configurations with their mappings: [token, dictionary oid, schema, name] in token then
-- sequence order (the token's name from the parser's ts_token_type).
S.ts_configs = [[
SELECT c.oid, n.nspname AS schema, c.cfgname AS name, pg_get_userbyid(c.cfgowner) AS owner,
       p.oid AS parser_oid, pn.nspname AS parser_schema, p.prsname AS parser_name,
       (SELECT json_agg(json_build_array(t.alias, d.oid::int8, dn.nspname, d.dictname)
                        ORDER BY m.maptokentype, m.mapseqno)
          FROM pg_ts_config_map m
          JOIN pg_ts_dict d ON d.oid = m.mapdict
          JOIN pg_namespace dn ON dn.oid = d.dictnamespace
          LEFT JOIN ts_token_type(c.cfgparser) t ON t.tokid = m.maptokentype
          WHERE m.mapcfg = c.oid)::text AS mappings_json
FROM pg_ts_config c
JOIN pg_namespace n ON n.oid = c.cfgnamespace
JOIN pg_ts_parser p ON p.oid = c.cfgparser
JOIN pg_namespace pn ON pn.oid = p.prsnamespace
WHERE %USER_SCHEMA%
  AND NOT EXISTS (SELECT FROM pg_depend e WHERE e.classid = 'pg_ts_config'::regclass
                  AND e.objid = c.oid AND e.deptype = 'e')
ORDER BY n.nspname, c.cfgname
]]

-- Foreign-data wrappers, servers and user mappings (no schema). Options as
-- [[name, value], ...] in their stored order.
S.foreign_data_wrappers = [[
SELECT w.oid, w.fdwname AS name, pg_get_userbyid(w.fdwowner) AS owner,
       CASE WHEN w.fdwhandler <> 0 THEN json_build_array(hn.nspname, h.proname, h.oid::int8)::text END AS handler_json,
       CASE WHEN w.fdwvalidator <> 0 THEN json_build_array(vn.nspname, v.proname, v.oid::int8)::text END AS validator_json,
       (SELECT json_agg(json_build_array(o.option_name, o.option_value) ORDER BY o.ord)
          FROM pg_options_to_table(w.fdwoptions) WITH ORDINALITY o(option_name, option_value, ord))::text AS options_json
FROM pg_foreign_data_wrapper w
LEFT JOIN pg_proc h ON h.oid = w.fdwhandler
LEFT JOIN pg_namespace hn ON hn.oid = h.pronamespace
LEFT JOIN pg_proc v ON v.oid = w.fdwvalidator
LEFT JOIN pg_namespace vn ON vn.oid = v.pronamespace
WHERE NOT EXISTS (SELECT FROM pg_depend e WHERE e.classid = 'pg_foreign_data_wrapper'::regclass
                  AND e.objid = w.oid AND e.deptype = 'e')
ORDER BY w.fdwname
]]

S.foreign_servers = [[
SELECT s.oid, s.srvname AS name, pg_get_userbyid(s.srvowner) AS owner,
       s.srvtype AS server_type, s.srvversion AS server_version, w.fdwname AS wrapper,
       (SELECT json_agg(json_build_array(o.option_name, o.option_value) ORDER BY o.ord)
          FROM pg_options_to_table(s.srvoptions) WITH ORDINALITY o(option_name, option_value, ord))::text AS options_json
FROM pg_foreign_server s
JOIN pg_foreign_data_wrapper w ON w.oid = s.srvfdw
WHERE NOT EXISTS (SELECT FROM pg_depend e WHERE e.classid = 'pg_foreign_server'::regclass
                  AND e.objid = s.oid AND e.deptype = 'e')
ORDER BY s.srvname
]]

-- User mappings through pg_user_mappings (pg_user_mapping is a superuser's): their options
-- are shown to a superuser, the server's owner, or the mapped role with USAGE on the server;
-- options_hidden when they exist but this role cannot see them. name: role@server, quoted,
-- PUBLIC for the mapping of every role.
S.user_mappings = [[
SELECT u.umid AS oid,
       CASE WHEN u.umuser = 0 THEN 'PUBLIC' ELSE quote_ident(u.usename) END || '@' || quote_ident(u.srvname) AS name,
       CASE WHEN u.umuser <> 0 THEN u.usename END AS role, u.srvname AS server, u.srvid AS server_oid,
       (SELECT json_agg(json_build_array(o.option_name, o.option_value) ORDER BY o.ord)
          FROM pg_options_to_table(u.umoptions) WITH ORDINALITY o(option_name, option_value, ord))::text AS options_json,
       u.umoptions IS NULL AND NOT (
         coalesce((SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = current_user), false)
         OR pg_has_role(s.srvowner, 'USAGE')
         OR (u.umuser <> 0 AND u.usename = current_user AND has_server_privilege(s.oid, 'USAGE'))
       ) AS options_hidden
FROM pg_user_mappings u
JOIN pg_foreign_server s ON s.oid = u.srvid
ORDER BY u.srvname, u.usename
]]

-- Event triggers (no schema): tags as a list, the function by oid and name.
S.event_triggers = [[
SELECT t.oid, t.evtname AS name, pg_get_userbyid(t.evtowner) AS owner, t.evtevent AS event,
       t.evtenabled AS enabled, to_json(t.evttags)::text AS tags_json,
       p.oid AS function_oid, pn.nspname AS function_schema, p.proname AS function_name
FROM pg_event_trigger t
JOIN pg_proc p ON p.oid = t.evtfoid
JOIN pg_namespace pn ON pn.oid = p.pronamespace
WHERE NOT EXISTS (SELECT FROM pg_depend e WHERE e.classid = 'pg_event_trigger'::regclass
                  AND e.objid = t.oid AND e.deptype = 'e')
ORDER BY t.evtname
]]

-- Procedural languages, transforms and access methods made by hand (not the server's own,
-- not an extension's): their functions as { schema, name, oid [, identity args] }.
S.languages = [[
SELECT l.oid, l.lanname AS name, pg_get_userbyid(l.lanowner) AS owner, l.lanpltrusted AS trusted,
       (SELECT json_object_agg(f.role, json_build_array(fn.nspname, fp.proname, fp.oid::int8))
          FROM (VALUES ('handler', l.lanplcallfoid), ('inline', l.laninline),
                       ('validator', l.lanvalidator)) f(role, fn_oid)
          JOIN pg_proc fp ON fp.oid = f.fn_oid
          JOIN pg_namespace fn ON fn.oid = fp.pronamespace)::text AS functions_json
FROM pg_language l
WHERE l.lanispl AND l.oid >= 16384
  AND NOT EXISTS (SELECT FROM pg_depend e WHERE e.classid = 'pg_language'::regclass
                  AND e.objid = l.oid AND e.deptype = 'e')
ORDER BY l.lanname
]]

S.transforms = [[
SELECT t.oid, 'FOR ' || format_type(t.trftype, NULL) || ' LANGUAGE ' || quote_ident(l.lanname) AS name,
       t.trftype AS type_oid, format_type(t.trftype, NULL) AS type, t.trflang AS language_oid,
       l.lanname AS language,
       (SELECT json_build_array(fn.nspname, fp.proname, fp.oid::int8, pg_get_function_identity_arguments(fp.oid))
          FROM pg_proc fp JOIN pg_namespace fn ON fn.oid = fp.pronamespace
          WHERE fp.oid = t.trffromsql)::text AS fromsql_json,
       (SELECT json_build_array(fn.nspname, fp.proname, fp.oid::int8, pg_get_function_identity_arguments(fp.oid))
          FROM pg_proc fp JOIN pg_namespace fn ON fn.oid = fp.pronamespace
          WHERE fp.oid = t.trftosql)::text AS tosql_json
FROM pg_transform t
JOIN pg_language l ON l.oid = t.trflang
WHERE t.oid >= 16384
  AND NOT EXISTS (SELECT FROM pg_depend e WHERE e.classid = 'pg_transform'::regclass
                  AND e.objid = t.oid AND e.deptype = 'e')
ORDER BY 2
]]

S.access_methods = [[
SELECT a.oid, a.amname AS name, a.amtype AS type,
       json_build_array(n.nspname, p.proname, p.oid::int8)::text AS handler_json
FROM pg_am a
JOIN pg_proc p ON p.oid = a.amhandler
JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE a.oid >= 16384
  AND NOT EXISTS (SELECT FROM pg_depend e WHERE e.classid = 'pg_am'::regclass
                  AND e.objid = a.oid AND e.deptype = 'e')
ORDER BY a.amname
]]

-- Default privileges (ALTER DEFAULT PRIVILEGES, no schema of their own): one row per
-- pg_default_acl entry of this database, with what it grants and revokes compared with what
-- objects get without it, as pg_dump does: the built-in defaults (acldefault) for an entry of
-- every schema, nothing for an entry of one schema (those only add). privileges_json:
-- [[action, grantee ("" for PUBLIC), privilege, grantable], ...].
S.default_acls = [[
SELECT d.oid, pg_get_userbyid(d.defaclrole) AS role, d.defaclobjtype AS objtype,
       n.oid AS schema_oid, n.nspname AS schema_name,
       'FOR ROLE ' || quote_ident(pg_get_userbyid(d.defaclrole))
         || coalesce(' IN SCHEMA ' || quote_ident(n.nspname), '') || ' ON '
         || CASE d.defaclobjtype WHEN 'r' THEN 'TABLES' WHEN 'S' THEN 'SEQUENCES' WHEN 'f' THEN 'FUNCTIONS'
                                 WHEN 'T' THEN 'TYPES' WHEN 'n' THEN 'SCHEMAS' ELSE d.defaclobjtype::text END AS name,
       (SELECT json_agg(json_build_array(g.action, CASE WHEN g.grantee = 0 THEN '' ELSE pg_get_userbyid(g.grantee) END,
                                         g.privilege, g.grantable) ORDER BY g.action, g.grantee, g.privilege)
          FROM ((SELECT 'grant' AS action, x.grantee, x.privilege_type AS privilege, x.is_grantable AS grantable
                   FROM aclexplode(b.acl) x
                 EXCEPT
                 SELECT 'grant', y.grantee, y.privilege_type, y.is_grantable FROM aclexplode(b.base) y)
                UNION ALL
                (SELECT 'revoke', y.grantee, y.privilege_type, false FROM aclexplode(b.base) y
                 EXCEPT
                 SELECT 'revoke', x.grantee, x.privilege_type, false FROM aclexplode(b.acl) x)) g
       )::text AS privileges_json
FROM pg_default_acl d
LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace
CROSS JOIN LATERAL (SELECT CASE WHEN d.defaclnamespace = 0
    THEN acldefault(CASE WHEN d.defaclobjtype = 'S' THEN 's'::"char" ELSE d.defaclobjtype END, d.defaclrole)
    END AS base,
    -- (An empty array has no dimension, which aclexplode refuses: NULL explodes to nothing.)
    CASE WHEN cardinality(d.defaclacl) > 0 THEN d.defaclacl END AS acl) b
WHERE d.defaclnamespace = 0 OR %USER_SCHEMA%
ORDER BY 6
]]

-- Settings of this database (ALTER DATABASE ... SET: role NULL) and of roles in it (ALTER
-- ROLE ... IN DATABASE ... SET); config_json: ["name=value", ...] as stored. oid: the role's
-- (0 for the database's own).
S.db_role_settings = [[
SELECT s.setrole AS oid, CASE WHEN s.setrole <> 0 THEN pg_get_userbyid(s.setrole) END AS role,
       CASE WHEN s.setrole = 0 THEN 'DATABASE' ELSE 'ROLE ' || quote_ident(pg_get_userbyid(s.setrole)) END AS name,
       to_json(s.setconfig)::text AS config_json
FROM pg_db_role_setting s
WHERE s.setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
ORDER BY s.setrole <> 0, 2
]]

end
