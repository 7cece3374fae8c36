-- tide.cdc.ddl_sql — the SQL side of DDL replication on the source: the catalog description of a
-- table (read inside the DDL's own transaction by the event trigger, and by pgtide for the
-- tables it starts with) and the event trigger function, generated for one task.
--
-- The description is a JSON object: oid, schema, name, kind (relkind), persistence, identity
-- (relreplident) and identity_index, comment, grants (privilege, column, grantee, grantable:
-- those of roles other than the owner), columns (num, name, type as format_type prints it,
-- collation, not_null, default, identity, generated, comment), constraints (name, type, def as
-- pg_get_constraintdef prints it), indexes that no constraint owns (oid, name, def), and for a
-- sequence its options. Everything is printed with search_path = pg_catalog, so names outside
-- pg_catalog are schema-qualified and can be mapped by the rename rules.
local M = {}

-- The description of relation `%s` (an expression giving its oid), as one jsonb value.
local DESCRIBE = [[
(SELECT pg_catalog.jsonb_build_object(
  'oid', c.oid::bigint, 'schema', n.nspname, 'name', c.relname, 'kind', c.relkind::text,
  'persistence', c.relpersistence::text, 'partition', c.relispartition, 'identity', c.relreplident::text,
  'identity_index', (SELECT ic.relname FROM pg_catalog.pg_index i
                     JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
                     WHERE i.indrelid = c.oid AND i.indisreplident),
  'parent', (SELECT pg_catalog.jsonb_build_object('oid', p.oid::bigint, 'schema', pn.nspname, 'name', p.relname)
             FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class p ON p.oid = i.inhparent
             JOIN pg_catalog.pg_namespace pn ON pn.oid = p.relnamespace
             WHERE i.inhrelid = c.oid AND c.relispartition),
  'bound', CASE WHEN c.relispartition THEN pg_catalog.pg_get_expr(c.relpartbound, c.oid) END,
  'partkey', CASE WHEN c.relkind = 'p' THEN pg_catalog.pg_get_partkeydef(c.oid) END,
  'partitions', CASE WHEN c.relkind = 'p' THEN COALESCE((SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
       'oid', ch.oid::bigint, 'schema', chn.nspname, 'name', ch.relname, 'kind', ch.relkind,
       'bound', pg_catalog.pg_get_expr(ch.relpartbound, ch.oid)) ORDER BY ch.oid)
     FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class ch ON ch.oid = i.inhrelid
     JOIN pg_catalog.pg_namespace chn ON chn.oid = ch.relnamespace WHERE i.inhparent = c.oid), '[]'::jsonb) END,
  'comment', pg_catalog.obj_description(c.oid, 'pg_class'),
  'grants', COALESCE((SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object('privilege', g.privilege_type,
       'column', g.col, 'grantee', g.grantee, 'grantable', g.is_grantable)
       ORDER BY g.col NULLS FIRST, g.grantee NULLS FIRST, g.privilege_type)
     FROM (SELECT e.privilege_type, NULL::name AS col, e.is_grantable,
                  CASE WHEN e.grantee <> 0 THEN pg_catalog.pg_get_userbyid(e.grantee) END AS grantee
           FROM pg_catalog.aclexplode(c.relacl) e WHERE e.grantee <> c.relowner
           UNION ALL
           SELECT e.privilege_type, a.attname, e.is_grantable,
                  CASE WHEN e.grantee <> 0 THEN pg_catalog.pg_get_userbyid(e.grantee) END
           FROM pg_catalog.pg_attribute a, pg_catalog.aclexplode(a.attacl) e
           WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND e.grantee <> c.relowner) g),
     '[]'::jsonb),
  'has_key', EXISTS (SELECT FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid AND i.indisprimary),
  'columns', COALESCE((SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
       'num', a.attnum, 'name', a.attname, 'type', pg_catalog.format_type(a.atttypid, a.atttypmod),
       'not_null', a.attnotnull, 'default', pg_catalog.pg_get_expr(d.adbin, d.adrelid),
       'identity', NULLIF(a.attidentity::text, ''), 'generated', NULLIF(a.attgenerated::text, ''),
       'comment', pg_catalog.col_description(c.oid, a.attnum),
       'collation', CASE WHEN a.attcollation <> t.typcollation AND a.attcollation <> 0 THEN
         (SELECT pg_catalog.quote_ident(cn.nspname) || '.' || pg_catalog.quote_ident(co.collname)
          FROM pg_catalog.pg_collation co JOIN pg_catalog.pg_namespace cn ON cn.oid = co.collnamespace
          WHERE co.oid = a.attcollation) END) ORDER BY a.attnum)
     FROM pg_catalog.pg_attribute a
     JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
     LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
     WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '[]'::jsonb),
  'constraints', COALESCE((SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
       'name', k.conname, 'type', k.contype::text, 'def', pg_catalog.pg_get_constraintdef(k.oid))
       ORDER BY k.conname)
     FROM pg_catalog.pg_constraint k WHERE k.conrelid = c.oid AND k.contype IN ('p', 'u', 'c', 'f', 'x')),
     '[]'::jsonb),
  'indexes', COALESCE((SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
       'oid', i.indexrelid::bigint, 'name', ic.relname, 'def', pg_catalog.pg_get_indexdef(i.indexrelid),
       'unique', i.indisunique) ORDER BY ic.relname)
     FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
     WHERE i.indrelid = c.oid
       AND NOT EXISTS (SELECT FROM pg_catalog.pg_constraint k WHERE k.conindid = i.indexrelid
                                                              AND k.conrelid = c.oid)), '[]'::jsonb),
  'sequence', (SELECT pg_catalog.jsonb_build_object('type', pg_catalog.format_type(s.seqtypid, NULL),
       'start', s.seqstart::text, 'increment', s.seqincrement::text, 'min', s.seqmin::text,
       'max', s.seqmax::text, 'cache', s.seqcache::text, 'cycle', s.seqcycle)
     FROM pg_catalog.pg_sequence s WHERE s.seqrelid = c.oid))
 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE c.oid = %s)]]

M.DESCRIBE = DESCRIBE

-- Relations described by one statement, unless a caller says otherwise.
M.CHUNK = 1000

-- Each relation of the oid[] $1 with its description (what describe_each and describe_parallel send).
local DESCRIBE_ROWS = "SELECT u.oid::bigint AS oid, " .. DESCRIBE:format("u.oid") .. "::text AS d FROM unnest($1::oid[]) AS u(oid)"

-- The descriptions of the relations with these oids (a list of integers), read with
-- search_path = pg_catalog like the trigger does. conn must be idle.
function M.describe(conn, oids)
  local json = require "tide.json"
  local out = {}
  M.describe_each(conn, oids, function(oid, text) out[oid] = json.decode(text) end, #oids)
  return out
end

-- The same, as the server prints them (jsonb text) and `chunk` relations to a statement (1,000
-- unless given): each(oid as text, description) for every relation that still exists. A caller
-- that stores them as they are never holds more than one chunk (at 100,000 tables the
-- descriptions are 170 MB of text, 400 MB decoded). conn must be idle.
function M.describe_each(conn, oids, each, chunk)
  if #oids == 0 then return end
  chunk = math.max(1, chunk or M.CHUNK)
  assert(conn:exec("BEGIN"))
  local ok, err = pcall(function()
    assert(conn:exec("SET LOCAL search_path = pg_catalog"))
    local sql = DESCRIBE_ROWS
    for first = 1, #oids, chunk do
      local part = table.move(oids, first, math.min(first + chunk - 1, #oids), 1, {})
      for _, r in ipairs(assert(conn:query(sql, part))) do
        if type(r.d) == "string" then each(tostring(r.oid), r.d) end
      end
    end
  end)
  conn:exec(ok and "COMMIT" or "ROLLBACK")
  if not ok then error(err, 0) end
end

-- describe_each over several idle connections, for a first slot's record (at 100,000 tables
-- the source describing them was most of the slot phase): chunk k is described on connection
-- (k - 1) % #conns + 1, every connection a chunk ahead, while each(oid, description) takes the
-- rows of the chunks in order, in the calling coroutine only. Every connection is idle again
-- when this returns or raises.
function M.describe_parallel(conns, oids, each, chunk)
  if #oids == 0 then return end
  chunk = math.max(1, chunk or M.CHUNK)
  if #conns < 2 or #oids <= chunk then return M.describe_each(conns[1], oids, each, chunk) end
  local core = require "tide.core"
  local sql = DESCRIBE_ROWS
  local chunks = {}
  for first = 1, #oids, chunk do chunks[#chunks + 1] = table.move(oids, first, math.min(first + chunk - 1, #oids), 1, {}) end
  local pending, opened = {}, {}
  local function start(k)
    local conn = conns[(k - 1) % #conns + 1]
    pending[k] = core.spawn(function() return assert(conn:query(sql, chunks[k])) end)
  end
  local ok, err = pcall(function()
    for _, conn in ipairs(conns) do
      assert(conn:exec("BEGIN"))
      opened[#opened + 1] = conn
      assert(conn:exec("SET LOCAL search_path = pg_catalog"))
    end
    for k = 1, math.min(#conns, #chunks) do start(k) end
    for k = 1, #chunks do
      local rows = pending[k]:wait()
      pending[k] = nil
      if k + #conns <= #chunks then start(k + #conns) end
      for _, r in ipairs(rows) do
        if type(r.d) == "string" then each(tostring(r.oid), r.d) end
      end
    end
  end)
  -- (a chunk still being described when `each` failed: its connection is busy until it ends)
  for _, h in pairs(pending) do pcall(h.wait, h) end
  for _, conn in ipairs(opened) do conn:exec(ok and "COMMIT" or "ROLLBACK") end
  if not ok then error(err, 0) end
end

local function literal(s) return "'" .. tostring(s):gsub("'", "''") .. "'" end

local function text_array(list)
  local parts = {}
  for i, s in ipairs(list) do parts[i] = literal(s) end
  return "ARRAY[" .. table.concat(parts, ", ") .. "]::text[]"
end

-- The event trigger function for a task. n: tide.cdc.ddl names (fn, prefix, publication),
-- schemas: the followed schemas, skip: relations never followed ({ {schema, name}, ... }: the
-- heartbeat table). Quoting: every name goes in as a literal or through quote_ident.
function M.function_sql(qualified_fn, n, schemas, skip)
  local skipped = {}
  for i, s in ipairs(skip) do skipped[i] = s[1] .. "." .. s[2] end
  return ([[
CREATE OR REPLACE FUNCTION %FN%() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $pgtide$
-- pgtide: records each DDL command on the objects task %TASK% follows, as a transactional
-- logical decoding message, in the DDL's own transaction (made by pgtide; pgtide release drops it)
DECLARE
  followed text[] := %SCHEMAS%;
  skipped text[] := %SKIP%;
  pub text := %PUB%;
  r record;
  rel oid;
  cmds jsonb := '[]';
  tabs jsonb := '{}';
  drops jsonb := '[]';
  d jsonb;
  published boolean;
  had_rows boolean;
BEGIN
  IF tg_event = 'sql_drop' THEN
    FOR r IN SELECT * FROM pg_catalog.pg_event_trigger_dropped_objects() LOOP
      CONTINUE WHEN r.schema_name IS NULL OR NOT (r.schema_name = ANY (followed)) OR r.is_temporary;
      CONTINUE WHEN r.object_type NOT IN ('table', 'index', 'sequence', 'view', 'materialized view',
                                          'function', 'procedure', 'type');
      CONTINUE WHEN (r.schema_name || '.' || r.object_name) = ANY (skipped);
      drops := drops || pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object(
        'type', r.object_type, 'schema', r.schema_name, 'name', r.object_name,
        'identity', r.object_identity, 'oid', r.objid::bigint, 'original', r.original));
    END LOOP;
    IF pg_catalog.jsonb_array_length(drops) > 0 THEN
      PERFORM pg_catalog.pg_logical_emit_message(true, %PREFIX%, pg_catalog.jsonb_build_object(
        'event', 'drop', 'statement', pg_catalog.current_query(), 'dropped', drops)::text);
    END IF;
    RETURN;
  END IF;
  FOR r IN SELECT * FROM pg_catalog.pg_event_trigger_ddl_commands() LOOP
    -- GRANT and REVOKE name no object here: every table the task publishes that has privileges
    -- is described, and pgtide applies the difference
    IF r.command_tag IN ('GRANT', 'REVOKE') AND r.object_type = 'TABLE' AND NOT r.in_extension THEN
      FOR rel IN SELECT pr.prrelid FROM pg_catalog.pg_publication_rel pr
                 JOIN pg_catalog.pg_publication p ON p.oid = pr.prpubid
                 JOIN pg_catalog.pg_class c ON c.oid = pr.prrelid
                 WHERE p.pubname = pub AND c.relacl IS NOT NULL LOOP
        CONTINUE WHEN tabs ? rel::text;
        SELECT %DESCRIBE% INTO d;
        tabs := tabs || pg_catalog.jsonb_build_object(rel::text,
          d || pg_catalog.jsonb_build_object('published', true, 'had_rows', false));
        cmds := cmds || pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object(
          'tag', r.command_tag, 'type', 'table', 'schema', d->>'schema',
          'identity', pg_catalog.quote_ident(d->>'schema') || '.' || pg_catalog.quote_ident(d->>'name'),
          'oid', rel::bigint, 'table', rel::bigint, 'grant', true));
      END LOOP;
      CONTINUE;
    END IF;
    CONTINUE WHEN r.in_extension OR r.command_tag LIKE '% PUBLICATION' OR r.objid IS NULL;
    rel := NULL;
    IF r.object_type IN ('table', 'table column', 'sequence') THEN
      rel := r.objid;
    ELSIF r.object_type = 'index' THEN
      SELECT i.indrelid INTO rel FROM pg_catalog.pg_index i WHERE i.indexrelid = r.objid;
    ELSIF r.object_type = 'table constraint' THEN
      SELECT k.conrelid INTO rel FROM pg_catalog.pg_constraint k WHERE k.oid = r.objid;
    END IF;
    published := rel IS NOT NULL AND EXISTS (
      SELECT FROM pg_catalog.pg_publication_rel pr JOIN pg_catalog.pg_publication p ON p.oid = pr.prpubid
      WHERE p.pubname = pub AND pr.prrelid = rel);
    CONTINUE WHEN NOT published AND (r.schema_name IS NULL OR NOT (r.schema_name = ANY (followed)));
    CONTINUE WHEN (r.schema_name || '.' || pg_catalog.split_part(r.object_identity, '.', 2)) = ANY (skipped);
    -- a sequence an identity column owns is the column's business
    CONTINUE WHEN r.object_type = 'sequence' AND EXISTS (SELECT FROM pg_catalog.pg_depend dp
      WHERE dp.classid = 'pg_catalog.pg_class'::regclass AND dp.objid = r.objid AND dp.deptype = 'i');
    cmds := cmds || pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object(
      'tag', r.command_tag, 'type', r.object_type, 'schema', r.schema_name,
      'identity', r.object_identity, 'oid', r.objid::bigint, 'table', rel::bigint));
    IF rel IS NOT NULL AND NOT tabs ? rel::text THEN
      had_rows := false;
      -- A plain or partitioned logged table (not a partition: its root carries its rows) of a
      -- followed schema joins the publication in this transaction (so no row written to it is
      -- missed) once it has a replica identity.
      IF NOT published AND EXISTS (
          SELECT FROM pg_catalog.pg_class c WHERE c.oid = rel AND c.relkind IN ('r', 'p') AND c.relpersistence = 'p'
            AND NOT c.relispartition
            AND (c.relreplident = 'f'
                 OR (c.relreplident = 'd' AND EXISTS (SELECT FROM pg_catalog.pg_index i
                                                      WHERE i.indrelid = c.oid AND i.indisprimary))
                 OR (c.relreplident = 'i' AND EXISTS (SELECT FROM pg_catalog.pg_index i
                                                      WHERE i.indrelid = c.oid AND i.indisreplident)))) THEN
        EXECUTE pg_catalog.format('SELECT EXISTS (SELECT FROM %s)', rel::regclass) INTO had_rows;
        -- a partitioned table's rows come under its own name, whichever partition holds them
        IF EXISTS (SELECT FROM pg_catalog.pg_class c WHERE c.oid = rel AND c.relkind = 'p')
           AND NOT (SELECT p.pubviaroot FROM pg_catalog.pg_publication p WHERE p.pubname = pub) THEN
          EXECUTE pg_catalog.format('ALTER PUBLICATION %I SET (publish_via_partition_root = true)', pub);
        END IF;
        EXECUTE pg_catalog.format('ALTER PUBLICATION %I ADD TABLE %s', pub, rel::regclass);
        published := true;
      END IF;
      SELECT %DESCRIBE% INTO d;
      tabs := tabs || pg_catalog.jsonb_build_object(rel::text,
        d || pg_catalog.jsonb_build_object('published', published, 'had_rows', had_rows));
    END IF;
  END LOOP;
  IF pg_catalog.jsonb_array_length(cmds) > 0 THEN
    PERFORM pg_catalog.pg_logical_emit_message(true, %PREFIX%, pg_catalog.jsonb_build_object(
      'event', 'end', 'statement', pg_catalog.current_query(), 'commands', cmds, 'tables', tabs)::text);
  END IF;
  -- A partition made or attached by these commands, of a partitioned table the publication
  -- sends through its root: the truncate trigger (tide.cdc.ddl_sql.truncate_function_sql), in
  -- this transaction, before any TRUNCATE of it can commit. (The CREATE TRIGGER runs this
  -- function again, and is left out above: a trigger has no schema.)
  FOR rel IN SELECT DISTINCT t.relid FROM pg_catalog.jsonb_object_keys(tabs) AS k(oid)
             CROSS JOIN LATERAL pg_catalog.pg_partition_tree(pg_catalog.pg_partition_root(k.oid::oid)) t
             JOIN pg_catalog.pg_class l ON l.oid = t.relid
             WHERE l.relkind = 'r' AND l.relispartition
               AND EXISTS (SELECT FROM pg_catalog.pg_publication_rel pr
                           JOIN pg_catalog.pg_publication p ON p.oid = pr.prpubid
                           WHERE p.pubname IN (pub, %PUBINS%) AND p.pubviaroot
                             AND pr.prrelid = pg_catalog.pg_partition_root(k.oid::oid))
               AND NOT EXISTS (SELECT FROM pg_catalog.pg_trigger g WHERE g.tgrelid = t.relid AND g.tgname = %TRIGGER%)
  LOOP
    EXECUTE pg_catalog.format('CREATE TRIGGER %I AFTER TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION %s()',
                              %TRIGGER%, rel::regclass, %TFN%);
  END LOOP;
END
$pgtide$]]):gsub("%%(%u+)%%", {
    FN = qualified_fn, TASK = n.task:gsub("[^%w_]", "_"), SCHEMAS = text_array(schemas), SKIP = text_array(skipped),
    PUB = literal(n.publication), PREFIX = literal(n.prefix), DESCRIBE = DESCRIBE:format("rel"),
    TRIGGER = literal(n.truncate_trigger), TFN = literal(n.truncate_fn_qualified),
    PUBINS = literal(n.inserts_publication),
  })
end

-- A TRUNCATE of one partition: pgoutput leaves it out when the publication sends partitions
-- through their root (publish_via_partition_root), so the target's partition would keep its
-- rows. Each partition of a published partitioned table gets a statement trigger, AFTER
-- TRUNCATE, that records the truncate as a transactional message at its place (the stream
-- applies it: tide.cdc.ddl). Its function, for a task (n: tide.cdc.ddl names):
function M.truncate_function_sql(qualified_fn, n)
  return ([[
CREATE OR REPLACE FUNCTION %FN%() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $pgtide$
-- pgtide: records a TRUNCATE of a partition of a table task %TASK% follows (its publication sends
-- partitions through their root, and pgoutput leaves a partition's TRUNCATE out); made by
-- pgtide, pgtide release drops it and its triggers
BEGIN
  PERFORM pg_catalog.pg_logical_emit_message(true, %PREFIX%, pg_catalog.jsonb_build_object(
    'event', 'truncate', 'statement', pg_catalog.current_query(), 'oid', TG_RELID::bigint,
    'schema', TG_TABLE_SCHEMA, 'name', TG_TABLE_NAME)::text);
  RETURN NULL;
END
$pgtide$]]):gsub("%%(%u+)%%", { FN = qualified_fn, TASK = n.task:gsub("[^%w_]", "_"), PREFIX = literal(n.prefix) })
end

-- The statement giving every partition (a table) of the publication's partitioned tables that
-- lacks it the task's truncate trigger (CREATE TRIGGER locks the partition SHARE ROW EXCLUSIVE
-- for a moment: the caller sets a lock_timeout).
function M.truncate_triggers_sql(qualified_fn, n)
  return ([[
DO $pgtide$
DECLARE
  part regclass;
BEGIN
  FOR part IN
    SELECT DISTINCT t.relid FROM pg_catalog.pg_publication_rel pr
    JOIN pg_catalog.pg_publication p ON p.oid = pr.prpubid
    JOIN pg_catalog.pg_class c ON c.oid = pr.prrelid
    CROSS JOIN LATERAL pg_catalog.pg_partition_tree(c.oid) t
    JOIN pg_catalog.pg_class l ON l.oid = t.relid
    WHERE p.pubname IN (%PUB%, %PUBINS%) AND p.pubviaroot AND c.relkind = 'p' AND l.relkind = 'r'
      AND NOT EXISTS (SELECT FROM pg_catalog.pg_trigger g WHERE g.tgrelid = t.relid AND g.tgname = %TRIGGER%)
  LOOP
    EXECUTE pg_catalog.format('CREATE TRIGGER %I AFTER TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION %s()',
                              %TRIGGER%, part, %FNLIT%);
  END LOOP;
END
$pgtide$]]):gsub("%%(%u+)%%", { PUB = literal(n.publication), PUBINS = literal(n.inserts_publication),
                                 TRIGGER = literal(n.truncate_trigger), FNLIT = literal(qualified_fn) })
end

return M
