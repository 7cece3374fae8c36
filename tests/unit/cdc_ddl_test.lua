-- tide.cdc.ddl: what a DDL message means for the target — the statements written from the
-- table descriptions under the rename rules, the map entries, and what is refused.
local T = require "testlib"
local ddl = require "tide.cdc.ddl"
local json = require "tide.json"

local function col(num, name, type, extra)
  local c = { num = num, name = name, type = type, not_null = false, default = json.null, identity = json.null,
              generated = json.null, collation = json.null }
  for k, v in pairs(extra or {}) do c[k] = v end
  return c
end

local function desc(name, columns, extra)
  local d = { oid = 100, schema = "public", name = name, kind = "r", persistence = "p", partition = false,
              identity = "d", identity_index = json.null, has_key = true, columns = columns,
              constraints = { { name = name .. "_pkey", type = "p", def = "PRIMARY KEY (id)" } }, indexes = {},
              published = true, had_rows = false }
  for k, v in pairs(extra or {}) do d[k] = v end
  return d
end

local function context(extra)
  local task = { name = "t", incremental = {}, on = {} }
  for k, v in pairs(extra or {}) do task[k] = v end
  return ddl.context(task)
end

local function message(tables, tag)
  local cmds, t = {}, {}
  for _, d in ipairs(tables) do
    cmds[#cmds + 1] = { tag = tag or "ALTER TABLE", type = "table", schema = d.schema, identity = d.schema .. "." .. d.name,
                        oid = d.oid, table = d.oid }
    t[tostring(d.oid)] = d
  end
  return { event = "end", statement = "-- test", commands = cmds, tables = t }
end

T.test("a new selected table: created under its mapped name with its key, and mapped in the stream", function()
  local d = context { rename = { table = { { strip_prefix = "tbl_" } }, column = { ["public.tbl_x.Old"] = "new" } } }
  local r = ddl.plan_message(d, message({ desc("tbl_x", {
    col(1, "id", "integer", { not_null = true }),
    col(2, "Old", "text", { default = "'a'::text" }),
  }) }, "CREATE TABLE"))
  T.eq(r.mapped[1], 'CREATE TABLE public.x (id integer NOT NULL, new text DEFAULT \'a\'::text)')
  T.eq(r.mapped[2], "ALTER TABLE public.x ADD CONSTRAINT x_pkey PRIMARY KEY (id)")
  T.eq(r.targets[1].target_sql, "public.x")
  T.eq(r.targets[1].columns[2].target_sql, "new")
  T.eq(r.targets[1].key, { "id" })
  T.eq(r.records["100"].target, { schema = "public", name = "x" })
end)

T.test("changes to a known table: the difference, in an order the server takes", function()
  local d = context()
  local before = desc("t", { col(1, "id", "integer", { not_null = true }), col(2, "a", "text"), col(3, "b", "integer") })
  before.indexes = { { oid = 7, name = "t_a_idx", def = "CREATE INDEX t_a_idx ON public.t USING btree (a)" } }
  d.known:set("100", { desc = before, cols = { id = "id", a = "a", b = "b" }, target = { schema = "public", name = "t" } })
  local after = desc("t2", { col(1, "id", "integer", { not_null = true }), col(2, "aa", "character varying(9)"),
                             col(4, "c", "integer", { default = "5", not_null = true }) })
  local r = ddl.plan_message(d, message({ after }))
  local text = table.concat(r.mapped, "\n")
  T.match(text, "RENAME TO t2")
  T.match(text, "DROP INDEX IF EXISTS public%.t_a_idx")
  T.match(text, "DROP COLUMN IF EXISTS b")
  T.match(text, "RENAME COLUMN a TO aa")
  T.match(text, "ALTER COLUMN aa TYPE character varying%(9%) USING aa::character varying%(9%)")
  T.match(text, "ADD COLUMN c integer DEFAULT 5 NOT NULL")
  T.ok(text:find("RENAME TO t2", 1, true) < text:find("DROP COLUMN", 1, true), "the table is renamed first")
  T.eq(r.targets[1].replaces, { "public", "t" }, "the map entry replaces the old source name")
  T.eq(r.targets[1].known, { "id", "aa", "c" })
end)

T.test("a table the selection leaves out is published but ignored; a keyless one is warned about", function()
  local d = context { select = { exclude = { "public.tmp_*" } } }
  local r = ddl.plan_message(d, message({ desc("tmp_x", { col(1, "id", "integer") }) }, "CREATE TABLE"))
  T.eq(#r.mapped, 0, "nothing made on the target")
  T.eq(r.targets[1].ignored, true)
  T.eq(r.selected, false)
  local keyless = desc("k", { col(1, "id", "integer") }, { constraints = {}, published = false })
  keyless.oid = 101
  r = ddl.plan_message(d, message({ keyless }, "CREATE TABLE"))
  T.match(r.warnings[1], "no primary key or replica identity")
  local filled = desc("f", { col(1, "id", "integer") }, { had_rows = true })
  filled.oid = 102
  r = ddl.plan_message(d, message({ filled }, "ALTER TABLE"))
  T.match(r.stop, "rows already in it")
end)

T.test("statements applied as written: one statement, no renamed name", function()
  local d = context { rename = { table = { ["public.old"] = "new" } } }
  d.known:set("1", { desc = desc("old", {}), cols = {}, target = { schema = "public", name = "new" } })
  T.eq(ddl.verbatim(d, "CREATE VIEW v AS SELECT 1;"), "CREATE VIEW v AS SELECT 1")
  local ok, why = ddl.verbatim(d, "CREATE VIEW v AS SELECT 1; CREATE VIEW w AS SELECT 2")
  T.eq(ok, nil)
  T.match(why, "other statements")
  ok, why = ddl.verbatim(d, "CREATE VIEW v AS SELECT * FROM public.old")
  T.eq(ok, nil)
  T.match(why, "names old")
end)

T.test("precheck ddl_event_trigger: a source role that is not a superuser fails it; ddl = false leaves it out", function()
  local check
  for _, c in ipairs(require("tide.precheck").checks) do if c.id == "ddl_event_trigger" then check = c end end
  T.ok(check, "the check exists")
  local function ctx(superuser, incremental)
    return { phases = { incremental = true }, task = { incremental = incremental or {} },
             source_server = function() return { superuser = superuser } end }
  end
  T.eq(check.applies(ctx(false)), true)
  T.eq(check.applies(ctx(false, { ddl = false })), false, "not with incremental.ddl = false")
  T.eq(#check.run(ctx(true)), 0, "a superuser passes")
  local findings = check.run(ctx(false))
  T.eq(#findings, 1)
  T.match(findings[1].message, "superuser")
  T.match(findings[1].fix, "incremental.ddl = false")
end)

T.test("what pgtide prints of a statement masks password-like values", function()
  local text = ddl.masked("ALTER ROLE x PASSWORD 'hunter2'; CREATE SERVER s OPTIONS (password 'p4ss', " ..
                          "sslpassword 'k'); SELECT 'host=h password=topsecret user=u'")
  T.nomatch(text, "hunter2")
  T.nomatch(text, "p4ss")
  T.nomatch(text, "topsecret")
  T.match(text, "user=u")
  T.eq(ddl.masked("ALTER TABLE t ADD COLUMN c int"), "ALTER TABLE t ADD COLUMN c int")
end)

T.test("partitions: a new one made as a partition of its parent's target; attach and detach", function()
  local d = context { rename = { table = { { strip_prefix = "tbl_" } } } }
  local root = desc("tbl_m", { col(1, "id", "integer", { not_null = true }) },
    { oid = 10, kind = "p", partkey = "RANGE (id)", partitions = {} })
  d.known:set("10", { desc = root, cols = { id = "id" }, target = { schema = "public", name = "m" } })
  d.known:set("12", { desc = desc("tbl_loose", { col(1, "id", "integer", { not_null = true }) }, { oid = 12 }),
                      cols = { id = "id" }, target = { schema = "public", name = "loose" } })
  local part = desc("tbl_m1", { col(1, "id", "integer", { not_null = true }) },
    { oid = 11, partition = true, parent = { oid = 10, schema = "public", name = "tbl_m" },
      bound = "FOR VALUES FROM (0) TO (10)" })
  local r = ddl.plan_message(d, message({ part }, "CREATE TABLE"))
  T.eq(r.mapped, { "CREATE TABLE public.m1 PARTITION OF public.m FOR VALUES FROM (0) TO (10)" })
  T.eq(#r.targets, 0, "its rows come through the root: no map entry of its own")
  T.ok(r.records["11"].partition)
  d.known:set("11", r.records["11"])
  -- ATTACH of a followed table and DETACH of the partition, seen in the parent's description
  local after = desc("tbl_m", root.columns, { oid = 10, kind = "p", partkey = "RANGE (id)", partitions = {
    { oid = 12, schema = "public", name = "tbl_loose", bound = "FOR VALUES FROM (10) TO (20)" } } })
  r = ddl.plan_message(d, message({ after }))
  T.eq(r.mapped, { "ALTER TABLE public.m DETACH PARTITION public.m1",
                   "ALTER TABLE public.m ATTACH PARTITION public.loose FOR VALUES FROM (10) TO (20)" })
  T.eq(r.remove, { { "public", "tbl_loose" } }, "the attached table's own map entry goes")
  T.ok(r.records["11"].ignored, "the detached table is no longer streamed")
  T.ok(r.records["12"].partition)
  T.match(table.concat(r.warnings, "\n"), "tbl_m1 was detached")
  -- attaching a table the task does not follow stops
  d.known:set("12", nil)
  r = ddl.plan_message(d, message({ after }))
  T.match(r.stop, "tbl_loose was attached as a partition of public%.tbl_m, but the target does not have it")
end)

T.test("grants: the difference, under mapped names; a role the target lacks is left out", function()
  local d = context { rename = { column = { ["public.t.a"] = "aa" } } }
  d.roles = { reader = true }
  local before = desc("t", { col(1, "id", "integer", { not_null = true }), col(2, "a", "text") },
    { grants = { { privilege = "SELECT", column = json.null, grantee = json.null, grantable = false } } })
  d.known:set("100", { desc = before, cols = { id = "id", a = "aa" }, target = { schema = "public", name = "t" } })
  local after = desc("t", before.columns, { grants = {
    { privilege = "UPDATE", column = "a", grantee = "reader", grantable = false },
    { privilege = "SELECT", column = json.null, grantee = "reader", grantable = true },
    { privilege = "SELECT", column = json.null, grantee = "nobody", grantable = false } } })
  local r = ddl.plan_message(d, message({ after }, "GRANT"))
  T.eq(r.mapped, { "REVOKE SELECT ON TABLE public.t FROM PUBLIC",
                   "GRANT SELECT ON TABLE public.t TO reader WITH GRANT OPTION",
                   "GRANT UPDATE (aa) ON TABLE public.t TO reader" })
  T.match(table.concat(r.warnings, "\n"), "role nobody does not exist on the target")
  d.task.schema = { grants = false }
  r = ddl.plan_message(d, message({ after }, "GRANT"))
  T.eq(r.mapped, {}, "schema.grants = false: not followed")
end)

T.test("a session's map from the record: the plan entry's lists where nothing changed, the record's otherwise", function()
  local d = context()
  local cols = { col(1, "id", "integer", { not_null = true }), col(2, "Mixed", "text") }
  d.known:set("100", { desc = desc("t", cols), cols = { id = "id", Mixed = "Mixed" }, target = { schema = "public", name = "t" } })
  d.known:set("101", { desc = desc("u", { cols[1], cols[2], col(3, "added", "int") }, { oid = 101 }),
                       cols = { id = "id", Mixed = "Mixed", added = "added" }, target = { schema = "public", name = "u" } })
  local function plan_entry(name)   -- as tide.cdc.tables built it before plain columns were names: every target quoted
    return { source_schema = "public", source_name = name, target_sql = '"public"."' .. name .. '"', key = { "id" },
             known = { "id", "Mixed" }, columns = { { source = "id", target_sql = '"id"', identity_always = false },
                                                    { source = "Mixed", target_sql = '"Mixed"', identity_always = false } } }
  end
  local t, u = plan_entry("t"), plan_entry("u")
  local plan = { tables = { { oid = 100, source = { schema = "public", name = "t" } },
                            { oid = 101, source = { schema = "public", name = "u" } } } }
  local out = ddl.overlay(d, { t, u }, plan)
  T.eq(#out, 2)
  local by = {}
  for _, e in ipairs(out) do by[e.source_name] = e end
  T.ok(rawequal(by.t.columns, t.columns) and rawequal(by.t.known, t.known) and rawequal(by.t.key, t.key),
       "an unchanged table shares the plan entry's lists")
  T.eq(#by.u.columns, 3, "a column the record has and the plan did not")
  T.eq(by.u.columns[3], "added", "a column written under its own name: its name alone (tide.cdc.tables.map_columns)")
  T.eq(by.u.known, { "id", "Mixed", "added" })
  T.ok(not rawequal(by.u.columns, u.columns))
end)

T.test("a session's map from the record: a table without DDL since keeps the plan's entry itself", function()
  local d = context()
  local cols = { col(1, "id", "integer", { not_null = true }), col(2, "Mixed", "text") }
  for oid, name in pairs({ ["100"] = "t", ["101"] = "u", ["102"] = "v", ["103"] = "w" }) do
    d.known:set(oid, { desc = desc(name, cols, { oid = tonumber(oid) }), cols = { id = "id", Mixed = "Mixed" },
                       target = { schema = "public", name = name } })
  end
  -- the plan's entries as tide.cdc.tables makes them: the target quoted by libpq (always)
  local function plan_entry(oid, target_sql)
    local e = ddl.entry(d, d.known:get(oid))
    e.target_sql = target_sql
    return e
  end
  local t = plan_entry("100", '"public"."t"')
  local u = plan_entry("101", '"public"."u"')
  u.known = { "id" }                           -- the plan knew fewer columns: the record's entry
  local v = plan_entry("102", '"public"."elsewhere"')   -- another target: the record's entry
  local w = plan_entry("103", '"public"."w"')
  w.unique_free = not w.unique_free            -- one flag the record says otherwise: the record's entry
  local plan = { tables = { { oid = 100, source = { schema = "public", name = "t" } },
                            { oid = 101, source = { schema = "public", name = "u" } },
                            { oid = 102, source = { schema = "public", name = "v" } },
                            { oid = 103, source = { schema = "public", name = "w" } } } }
  local by = {}
  for _, e in ipairs(ddl.overlay(d, { t, u, v, w }, plan)) do by[e.source_name] = e end
  T.ok(rawequal(by.t, t), "the unchanged table's entry is the plan's own")
  T.ok(not rawequal(by.u, u), "a table the record knows more of gets a new entry")
  T.eq(by.u.known, { "id", "Mixed" })
  T.ok(not rawequal(by.v, v), "a table whose target differs gets a new entry")
  T.eq(by.v.target_sql, "public.v")
  T.ok(not rawequal(by.w, w), "a table one of whose flags differs gets a new entry")
  T.eq(by.w.unique_free, not w.unique_free)
end)

T.test("a session's map from the record: a root of 300 partitions has its record read once, not once a partition", function()
  local d = context()
  local cols = { col(1, "id", "integer", { not_null = true }), col(2, "d", "integer") }
  local parts = {}
  for i = 1, 300 do parts[i] = { oid = 1000 + i, schema = "public", name = "ev_" .. i } end
  d.known:set("200", { desc = desc("ev", cols, { oid = 200, kind = "p", partitions = parts }),
                       cols = { id = "id", d = "d" }, target = { schema = "public", name = "ev" } })
  local root = { schema = "public", name = "ev", target = { schema = "public", name = "ev" } }
  local plan = { tables = {}, by_key = { ["table:public.ev"] = root } }
  for i = 1, 300 do
    plan.tables[i] = { oid = 1000 + i, parent = "public.ev", source = { schema = "public", name = "ev_" .. i } }
  end
  local entry = ddl.entry(d, d.known:get("200"))
  entry.target_sql = "public.ev"
  local reads, get = {}, d.known.get
  d.known.get = function(self, oid)
    reads[tostring(oid)] = (reads[tostring(oid)] or 0) + 1
    return get(self, oid)
  end
  local out = ddl.overlay(d, { entry }, plan)
  d.known.get = nil
  T.eq(#out, 1)
  T.eq(out[1].source_name, "ev")
  T.ok((reads["200"] or 0) <= 2, "the root's record was decoded " .. tostring(reads["200"]) .. " times")
end)

T.test("DROP INDEX of two indexes of one table: both go from its record", function()
  local d = context()
  local idx = { { oid = 501, name = "t_a_idx", unique = true, def = "CREATE UNIQUE INDEX t_a_idx ON public.t USING btree (a)" },
                { oid = 502, name = "t_b_idx", unique = false, def = "CREATE INDEX t_b_idx ON public.t USING btree (b)" },
                { oid = 503, name = "t_c_idx", unique = false, def = "CREATE INDEX t_c_idx ON public.t USING btree (c)" } }
  d.known:set("100", { desc = desc("t", { col(1, "id", "integer", { not_null = true }), col(2, "a", "int"), col(3, "b", "int"),
                                          col(4, "c", "int") }, { indexes = idx }),
                       cols = { id = "id", a = "a", b = "b", c = "c" }, target = { schema = "public", name = "t" } })
  local r = ddl.plan_message(d, { event = "drop", statement = "DROP INDEX t_a_idx, t_b_idx", dropped = {
    { type = "index", original = true, oid = 501, schema = "public", name = "t_a_idx", identity = "public.t_a_idx" },
    { type = "index", original = true, oid = 502, schema = "public", name = "t_b_idx", identity = "public.t_b_idx" } } })
  T.eq(r.mapped, { "DROP INDEX IF EXISTS public.t_a_idx", "DROP INDEX IF EXISTS public.t_b_idx" })
  local left = {}
  for _, i in ipairs(r.records["100"].desc.indexes) do left[#left + 1] = i.name end
  T.eq(left, { "t_c_idx" })
end)
