-- tide.catalog.operators — catalog statements of base-type companions: operators, operator
-- families and classes, casts, conversions (see tide.catalog for how statements are run).
return function(S)

-- Operators. Shells (no function: what a COMMUTATOR or NEGATOR naming a missing operator
-- leaves) are not listed; naming them again makes them again. identity_args: "left, right"
-- as format_type prints them, NONE for the left side of a prefix operator.
S.operators = [[
SELECT o.oid, n.nspname AS schema, o.oprname AS name, pg_get_userbyid(o.oprowner) AS owner,
       CASE WHEN o.oprleft <> 0 THEN format_type(o.oprleft, NULL) END AS left_type,
       CASE WHEN o.oprright <> 0 THEN format_type(o.oprright, NULL) END AS right_type,
       coalesce(format_type(NULLIF(o.oprleft, 0), NULL), 'NONE') || ', '
         || coalesce(format_type(NULLIF(o.oprright, 0), NULL), 'NONE') AS identity_args,
       fpn.nspname AS function_schema, fp.proname AS function_name,
       cn.nspname AS commutator_schema, co.oprname AS commutator_name,
       nn.nspname AS negator_schema, ng.oprname AS negator_name,
       rpn.nspname AS restrict_schema, rp.proname AS restrict_name,
       jpn.nspname AS join_schema, jp.proname AS join_name,
       o.oprcanmerge AS merges, o.oprcanhash AS hashes
FROM pg_operator o
JOIN pg_namespace n ON n.oid = o.oprnamespace
JOIN pg_proc fp ON fp.oid = o.oprcode
JOIN pg_namespace fpn ON fpn.oid = fp.pronamespace
LEFT JOIN pg_operator co ON co.oid = o.oprcom
LEFT JOIN pg_namespace cn ON cn.oid = co.oprnamespace
LEFT JOIN pg_operator ng ON ng.oid = o.oprnegate
LEFT JOIN pg_namespace nn ON nn.oid = ng.oprnamespace
LEFT JOIN pg_proc rp ON rp.oid = o.oprrest
LEFT JOIN pg_namespace rpn ON rpn.oid = rp.pronamespace
LEFT JOIN pg_proc jp ON jp.oid = o.oprjoin
LEFT JOIN pg_namespace jpn ON jpn.oid = jp.pronamespace
WHERE %USER_SCHEMA%
  AND NOT EXISTS (SELECT FROM pg_depend e WHERE e.classid = 'pg_operator'::regclass
                  AND e.objid = o.oid AND e.deptype = 'e')
ORDER BY n.nspname, o.oprname, identity_args
]]

-- Operator families and classes, each with its members (pg_amop, pg_amproc rows: kind
-- "operator" or "function", number, left_type, right_type, schema, name, args, sort family).
-- A class's members are tied to it in pg_depend; a family lists only its loose members, the
-- ones ALTER OPERATOR FAMILY ... ADD gave it.
S.opfamilies = [[
SELECT f.oid, n.nspname AS schema, f.opfname AS name, pg_get_userbyid(f.opfowner) AS owner,
       am.amname AS method, am.amname AS identity_args,
       (SELECT json_agg(m ORDER BY m.kind DESC, m.number, m.left_type, m.right_type)
          FROM (SELECT 'operator' AS kind, ao.oid::int8 AS oid, ao.amopstrategy AS number,
                       format_type(ao.amoplefttype, NULL) AS left_type,
                       format_type(ao.amoprighttype, NULL) AS right_type,
                       opn.nspname AS schema, op.oprname AS name, NULL::text AS args,
                       sfn.nspname AS sort_family_schema, sf.opfname AS sort_family_name
                  FROM pg_amop ao
                  JOIN pg_depend d ON d.classid = 'pg_amop'::regclass AND d.objid = ao.oid
                   AND d.refclassid = 'pg_opfamily'::regclass AND d.refobjid = f.oid
                  JOIN pg_operator op ON op.oid = ao.amopopr
                  JOIN pg_namespace opn ON opn.oid = op.oprnamespace
                  LEFT JOIN pg_opfamily sf ON sf.oid = ao.amopsortfamily
                  LEFT JOIN pg_namespace sfn ON sfn.oid = sf.opfnamespace
                 WHERE ao.amopfamily = f.oid
                UNION ALL
                SELECT 'function', ap.oid::int8, ap.amprocnum,
                       format_type(ap.amproclefttype, NULL), format_type(ap.amprocrighttype, NULL),
                       pn.nspname, p.proname, oidvectortypes(p.proargtypes), NULL, NULL
                  FROM pg_amproc ap
                  JOIN pg_depend d ON d.classid = 'pg_amproc'::regclass AND d.objid = ap.oid
                   AND d.refclassid = 'pg_opfamily'::regclass AND d.refobjid = f.oid
                  JOIN pg_proc p ON p.oid = ap.amproc
                  JOIN pg_namespace pn ON pn.oid = p.pronamespace
                 WHERE ap.amprocfamily = f.oid) m)::text AS members_json
FROM pg_opfamily f
JOIN pg_namespace n ON n.oid = f.opfnamespace
JOIN pg_am am ON am.oid = f.opfmethod
WHERE %USER_SCHEMA%
  AND NOT EXISTS (SELECT FROM pg_depend e WHERE e.classid = 'pg_opfamily'::regclass
                  AND e.objid = f.oid AND e.deptype = 'e')
ORDER BY n.nspname, f.opfname, am.amname
]]

S.opclasses = [[
SELECT c.oid, n.nspname AS schema, c.opcname AS name, pg_get_userbyid(c.opcowner) AS owner,
       am.amname AS method, am.amname AS identity_args, c.opcdefault AS is_default,
       format_type(c.opcintype, NULL) AS input_type,
       CASE WHEN c.opckeytype <> 0 THEN format_type(c.opckeytype, NULL) END AS storage_type,
       fn.nspname AS family_schema, f.opfname AS family_name,
       (SELECT json_agg(m ORDER BY m.kind DESC, m.number, m.left_type, m.right_type)
          FROM (SELECT 'operator' AS kind, ao.oid::int8 AS oid, ao.amopstrategy AS number,
                       format_type(ao.amoplefttype, NULL) AS left_type,
                       format_type(ao.amoprighttype, NULL) AS right_type,
                       opn.nspname AS schema, op.oprname AS name, NULL::text AS args,
                       sfn.nspname AS sort_family_schema, sf.opfname AS sort_family_name
                  FROM pg_amop ao
                  JOIN pg_depend d ON d.classid = 'pg_amop'::regclass AND d.objid = ao.oid
                   AND d.refclassid = 'pg_opclass'::regclass AND d.refobjid = c.oid
                  JOIN pg_operator op ON op.oid = ao.amopopr
                  JOIN pg_namespace opn ON opn.oid = op.oprnamespace
                  LEFT JOIN pg_opfamily sf ON sf.oid = ao.amopsortfamily
                  LEFT JOIN pg_namespace sfn ON sfn.oid = sf.opfnamespace
                 WHERE ao.amopfamily = c.opcfamily
                UNION ALL
                SELECT 'function', ap.oid::int8, ap.amprocnum,
                       format_type(ap.amproclefttype, NULL), format_type(ap.amprocrighttype, NULL),
                       pn.nspname, p.proname, oidvectortypes(p.proargtypes), NULL, NULL
                  FROM pg_amproc ap
                  JOIN pg_depend d ON d.classid = 'pg_amproc'::regclass AND d.objid = ap.oid
                   AND d.refclassid = 'pg_opclass'::regclass AND d.refobjid = c.oid
                  JOIN pg_proc p ON p.oid = ap.amproc
                  JOIN pg_namespace pn ON pn.oid = p.pronamespace
                 WHERE ap.amprocfamily = c.opcfamily) m)::text AS members_json
FROM pg_opclass c
JOIN pg_namespace n ON n.oid = c.opcnamespace
JOIN pg_am am ON am.oid = c.opcmethod
JOIN pg_opfamily f ON f.oid = c.opcfamily
JOIN pg_namespace fn ON fn.oid = f.opfnamespace
WHERE %USER_SCHEMA%
  AND NOT EXISTS (SELECT FROM pg_depend e WHERE e.classid = 'pg_opclass'::regclass
                  AND e.objid = c.oid AND e.deptype = 'e')
ORDER BY n.nspname, c.opcname, am.amname
]]

-- Casts made by users (the server's own have oids below 16384; those a range type makes to its
-- multirange depend on it internally, and come with it). They have no schema; name is
-- "(source AS target)". The plan keeps those that involve a migrated type or function.
S.casts = [[
SELECT c.oid, '' AS schema,
       '(' || format_type(c.castsource, NULL) || ' AS ' || format_type(c.casttarget, NULL) || ')' AS name,
       format_type(c.castsource, NULL) AS source_type, format_type(c.casttarget, NULL) AS target_type,
       c.castsource::int8 AS source_oid, c.casttarget::int8 AS target_oid,
       NULLIF(c.castfunc, 0)::int8 AS function_oid,
       pn.nspname AS function_schema, p.proname AS function_name,
       oidvectortypes(p.proargtypes) AS function_args,
       c.castcontext AS context, c.castmethod AS method
FROM pg_cast c
LEFT JOIN pg_proc p ON p.oid = c.castfunc
LEFT JOIN pg_namespace pn ON pn.oid = p.pronamespace
WHERE c.oid >= 16384
  AND NOT EXISTS (SELECT FROM pg_depend e WHERE e.classid = 'pg_cast'::regclass
                  AND e.objid = c.oid AND e.deptype IN ('e', 'i'))
ORDER BY 3
]]

S.conversions = [[
SELECT c.oid, n.nspname AS schema, c.conname AS name, pg_get_userbyid(c.conowner) AS owner,
       pg_encoding_to_char(c.conforencoding) AS for_encoding,
       pg_encoding_to_char(c.contoencoding) AS to_encoding,
       pn.nspname AS function_schema, p.proname AS function_name, c.condefault AS is_default
FROM pg_conversion c
JOIN pg_namespace n ON n.oid = c.connamespace
JOIN pg_proc p ON p.oid = c.conproc
JOIN pg_namespace pn ON pn.oid = p.pronamespace
WHERE %USER_SCHEMA%
  AND NOT EXISTS (SELECT FROM pg_depend e WHERE e.classid = 'pg_conversion'::regclass
                  AND e.objid = c.oid AND e.deptype = 'e')
ORDER BY n.nspname, c.conname
]]

end
