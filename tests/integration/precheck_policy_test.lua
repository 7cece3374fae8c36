-- Precheck policies (regrade, ignore, scope, extra checks, settings, reusable modules),
-- `pgtide check` (text, --json, exit statuses, a failed connection), the gate before a run
-- (nothing written when a check fails), and the time for a database of 10,000 tables.
local T = require "testlib"
local tide = require "tide"
local precheck = require "tide.precheck"
local report_text = require("tide.precheck.report").text

local PGTIDE = os.getenv("PGTIDE") or "build/pgtide"
local EXAMPLES = os.getenv("PWD") and (os.getenv("PWD") .. "/examples") or "examples"

local function sql(url, text)
  local c = assert(tide.connect(url))
  local ok, err = c:exec(text)
  c:close()
  assert(ok, tostring(err))
end

local function evaluate(ctx, def)
  def.name = def.name or "precheck-policy"
  def.source, def.target = def.source or ctx.source_url, def.target or ctx.target_url
  def.migrate = def.migrate or { "schema", "full", "incremental" }
  def.select = def.select or { include = { "po" } }
  return (precheck.evaluate(tide.task(def)))
end

local function result(report, id) return assert(precheck.result(report, id), "no check " .. id) end

local function playbook(ctx, name, body, target)
  local path = ctx.tmpdir .. "/" .. name .. ".lua"
  local f = assert(io.open(path, "w"))
  f:write(string.format([[
package.path = %q .. "/?.lua;" .. package.path
local tide = require "tide"
local precheck = require "tide.precheck"
return tide.task {
  name = %q, source = %q, target = %q,
  migrate = { "schema", "full", "incremental" },
  select = { include = { "po" } },
%s
}
]], EXAMPLES, name, ctx.source_url, target or ctx.target_url, body or ""))
  f:close()
  return path
end

T.test("set-up: two keyless tables and one with a key", function(ctx)
  sql(ctx.source_url, [[
CREATE SCHEMA po;
CREATE TABLE po.audit_log (at timestamptz, what text);
CREATE TABLE po.events (x int);
CREATE TABLE po.keyed (id int PRIMARY KEY)]])
end)

T.test("policy: regrade, ignore (whole check or some objects), only and exclude", function(ctx)
  local r = result(evaluate(ctx, {}), "table_without_key")
  T.eq(r.status, "fail")
  T.eq(#r.findings, 2)

  local report = evaluate(ctx, { precheck = { warn = { "table_without_key" } } })
  r = result(report, "table_without_key")
  T.eq(r.status, "warn")
  T.eq(r.findings[1].grade, "warn")
  T.eq(report.ok, true)

  report = evaluate(ctx, { precheck = { ignore = { table_without_key = "append-only tables, never updated" } } })
  r = result(report, "table_without_key")
  T.eq(r.status, "ignored")
  T.eq(#r.ignored, 2)
  T.eq(report.ok, true)
  T.match(report_text(report), "%[table_without_key%].*2 finding%(s%) ignored: append%-only tables, never updated")

  report = evaluate(ctx, { precheck = { ignore = {
    table_without_key = { reason = "the audit log is append-only", objects = { "po.audit_*" } } } } })
  r = result(report, "table_without_key")
  T.eq(r.status, "fail")
  T.eq(#r.findings, 1)
  T.eq(r.findings[1].object, "po.events")
  T.eq(r.ignored[1].object, "po.audit_log")
  T.match(report_text(report), "the audit log is append%-only")

  r = result(evaluate(ctx, { precheck = { only = { table_without_key = { "po.events" } } } }), "table_without_key")
  T.eq(#r.findings, 1)
  T.eq(r.findings[1].object, "po.events")
  r = result(evaluate(ctx, { precheck = { exclude = { table_without_key = { { re = "^po\\.ev" } } } } }), "table_without_key")
  T.eq(#r.findings, 1)
  T.eq(r.findings[1].object, "po.audit_log")
end)

T.test("policy: extra checks get the same context; a failing one is reported, not fatal", function(ctx)
  local seen = {}
  local extra = {
    id = "no_events_table", title = "No table may be called events", grade = "fail",
    applies = function(c) return c.phases.full end,
    run = function(c)
      seen.plan, seen.catalog = c.plan ~= nil, c.catalog ~= nil
      local rows = c:query("source", "SELECT n.nspname AS schema, c.relname AS name FROM pg_class c " ..
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relname = $1", "events")
      local t = assert(c.target:query("SELECT 1 AS one"))
      seen.target = t[1].one
      local out = {}
      for _, row in ipairs(rows) do
        out[#out + 1] = { object = row.schema .. "." .. row.name, schema = row.schema, name = row.name,
                          message = "a table called events", fix = "ALTER TABLE ... RENAME" }
      end
      return out
    end,
  }
  local broken = { id = "broken", grade = "warn", run = function() error("boom") end }
  local report = evaluate(ctx, { precheck = { warn = { "table_without_key" }, extra = { extra, broken } } })
  local r = result(report, "no_events_table")
  T.eq(r.status, "fail")
  T.eq(r.findings[1].object, "po.events")
  T.eq(report.ok, false)
  T.eq(seen, { plan = true, catalog = true, target = 1 })
  r = result(report, "broken")
  T.eq(r.status, "warn")
  T.match(r.findings[1].message, "the check could not run: .*boom")
  -- An extra check can be regraded and scoped like a built-in.
  report = evaluate(ctx, { precheck = { warn = { "table_without_key" }, extra = { extra },
                                        exclude = { no_events_table = { "po.*" } } } })
  T.eq(result(report, "no_events_table").status, "pass")
end)

T.test("policy mistakes are playbook errors naming the key", function(ctx)
  local function fails(spec, pattern)
    T.raises(function() evaluate(ctx, { precheck = spec }) end, pattern)
  end
  fails({ warn = { "table_without_keys" } }, "no check 'table_without_keys' %(did you mean 'table_without_key'%?%)")
  fails({ warns = { "table_without_key" } }, "unknown key 'warns' in precheck %(did you mean 'warn'%?%)")
  fails({ warn = { "wal_level" }, fail = { "wal_level" } }, "listed under both")
  fails({ ignore = { wal_level = "" } }, "needs a reason")
  fails({ only = { wal_level = { "public.[" } } }, "invalid glob")
  fails({ extra = { { id = "wal_level", run = function() end } } }, "already exists")
  fails({ extra = { { id = "x" } } }, "run must be a function")
  fails({ settings = { long_transactions = "1min" } }, "did you mean 'long_transaction'")
  fails({ settings = { throughput = "fast" } }, "throughput must be")
end)

T.test("reusable policies: examples/policies/strict.lua and staging.lua from a playbook", function(ctx)
  local strict = playbook(ctx, "strict", [[
  precheck = precheck.policy(require "policies.strict", {
    ignore = { table_without_key = { reason = "audit rows are never updated", objects = { "po.audit_*" } } },
  }),
]])
  local code, out = T.sh(PGTIDE .. " check --json " .. strict .. " 2>&1")
  T.eq(code, 5, out)
  local data = require("tide.json").decode(out)
  local by_id = {}
  for _, c in ipairs(data.checks) do by_id[c.id] = c end
  T.eq(by_id.table_without_key.status, "fail")
  T.eq(#by_id.table_without_key.findings, 1)
  T.eq(by_id.table_without_key.ignored[1].reason, "audit rows are never updated")
  T.eq(by_id.open_transactions.grade, "fail", "strict regrades it")
  T.eq(by_id["strict.statistics"].status, "warn", "the policy's own check runs")

  local staging = playbook(ctx, "staging", "  precheck = precheck.policy(require \"policies.staging\"),\n")
  code, out = T.sh(PGTIDE .. " check " .. staging .. " 2>&1")
  T.eq(code, 0, out)
  T.match(out, "WARN\n  %[table_without_key%]")
  T.match(out, "IGNORED")
  T.match(out, "Precheck passed with warnings")
end)

T.test("pgtide check: report, --json, exit 5 on a failed check or connection, 3 on a playbook error", function(ctx)
  local file = playbook(ctx, "cli", "")
  local code, out = T.sh(PGTIDE .. " check " .. file .. " 2>&1")
  T.eq(code, 5, out)
  T.match(out, "^Prechecks for task cli\n  source: ")
  T.match(out, "FAIL\n  %[table_without_key%] Tables whose updates and deletes cannot be replicated %(2%)")
  T.match(out, "    %- po%.events: no primary key.*\n      fix: ALTER TABLE po%.events ADD PRIMARY KEY")
  T.match(out, "Passed %(%d+%): connectivity, replication_connection")
  T.match(out, "Precheck FAILED: 1 of %d+ checks fail.*%d+%.%d+ s %(plan")

  local unreachable = playbook(ctx, "unreachable", "", "postgresql://postgres@127.0.0.1:1/nowhere")
  code, out = T.sh(PGTIDE .. " check " .. unreachable .. " 2>&1")
  T.eq(code, 5, out)
  T.match(out, "%[connectivity%].*target: cannot connect to the target")
  T.match(out, "fix: check host and port")
  T.match(out, "Not run, no connection %(%d+%): replication_connection")
  code, out = T.sh(PGTIDE .. " check --json " .. unreachable .. " 2>/dev/null")
  T.eq(code, 5)
  local data = require("tide.json").decode(out)
  T.eq(data.ok, false)
  T.eq(data.checks[1].id, "connectivity")
  T.eq(data.checks[1].findings[1].object, "target")

  local broken = playbook(ctx, "broken", "  precheck = { fail = { \"nope\" } },\n", "postgresql://postgres@127.0.0.1:1/nowhere")
  code, out = T.sh(PGTIDE .. " check " .. broken .. " 2>&1")
  T.eq(code, 3, out)
  T.match(out, "precheck%.fail: no check 'nope'")

  local fine = playbook(ctx, "fine", "  precheck = { ignore = { table_without_key = \"tested elsewhere\" } },\n")
  code, out = T.sh(PGTIDE .. " check " .. fine .. " 2>&1")
  T.eq(code, 0, out)
end)

local FAIL_ALWAYS = [[
  precheck = { ignore = { table_without_key = "not this test" },
    extra = { { id = "stop_here", title = "always fails", run = function()
      return { { message = "stopped by the test", fix = "none" } } end } } },
]]

local function target_is_empty(ctx)
  local c = assert(tide.connect(ctx.target_url))
  local rows = assert(c:query([[SELECT count(*) AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')]]))
  local schemas = assert(c:query("SELECT count(*) AS n FROM pg_namespace WHERE nspname IN ('po', 'pgtide')"))
  c:close()
  return rows[1].n == 0 and schemas[1].n == 0
end

T.test("the gate: a failed check raises failure \"precheck\" (exit 5) and writes nothing", function(ctx)
  local def = { name = "gate", source = ctx.source_url, target = ctx.target_url, migrate = { "schema", "full" },
                select = { include = { "po" } },
                precheck = { extra = { { id = "stop_here", run = function() return { { message = "stopped" } } end } } } }
  local task = tide.task(def)
  local source, target = require("tide.connect").open_both(task)
  local plan = require("tide.plan").build(task, source, target)
  local log_path = ctx.tmpdir .. "/gate.txt"
  local log = assert(io.open(log_path, "w"))
  local ok, err = pcall(precheck.gate, task, plan, source, target, { progress = { mode = "plain", out = log } })
  log:close()
  local printed = assert(io.open(log_path)):read("a")
  T.match(printed, "FAIL\n  %[stop_here%] stop_here %(1%)\n    %- stopped")
  T.match(printed, "Precheck FAILED")
  T.eq(ok, false)
  T.eq(err.kind, "precheck")
  T.eq(err.exit, 5)
  T.match(err.message, "1 precheck%(s%) failed %(stop_here%); nothing was written")
  T.eq(err.report.ok, false)
  def.precheck = nil
  log = assert(io.open(log_path, "w"))
  local report = precheck.gate(tide.task(def), plan, source, target, { progress = { mode = "plain", out = log } })
  log:close()
  T.eq(report.ok, true)
  printed = assert(io.open(log_path)):read("a")
  T.match(printed, "^Precheck passed: %d+ checks; [%d%.]+ s %(plan [%d%.]+ s, checks [%d%.]+ s%)%.\n$", "one line when all pass")
  source:close(); target:close()
  T.ok(target_is_empty(ctx), "the gate wrote to the target")

  -- `pgtide run` stops at the gate.
  local file = playbook(ctx, "run-gate", FAIL_ALWAYS)
  local code, out = T.sh(PGTIDE .. " run " .. file .. " 2>&1")
  T.eq(code, 5, out)
  T.match(out, "%[stop_here%] always fails")
  T.match(out, "nothing was written")
  T.ok(target_is_empty(ctx), "pgtide run wrote to the target before the gate")
end)

T.test("checks that cannot be graded down: a playbook error, and pgtide run writes nothing", function(ctx)
  local function fails(spec, pattern)
    T.raises(function() evaluate(ctx, { precheck = spec }) end, pattern)
  end
  local why = "the stream would apply changes the row filter leaves out"
  fails({ warn = { "row_filter_stream" } }, "precheck%.warn: check 'row_filter_stream' cannot be graded down.*" .. why)
  fails({ info = { "connectivity" } }, "precheck%.info: check 'connectivity' cannot be graded down")
  fails({ warn = { "encoding" } }, "precheck%.warn: check 'encoding' cannot be graded down.*: a character the target's encoding cannot hold")
  fails({ ignore = { foreign_key_filtered = "we know" } }, "precheck%.ignore: check 'foreign_key_filtered' cannot")
  fails({ ignore = { target_ownership = { reason = "x", objects = { "po.*" } } } }, "precheck%.ignore: check 'target_ownership'")
  fails({ only = { target_table_privileges = { "po.keyed" } } }, "precheck%.only: check 'target_table_privileges'")
  fails({ exclude = { source_select_privilege = { "po.*" } } }, "precheck%.exclude: check 'source_select_privilege'")
  -- The mistake in the entry itself comes first; listing a fixed check under fail is harmless.
  fails({ ignore = { foreign_key_filtered = "" } }, "needs a reason")
  local report = evaluate(ctx, { migrate = { "schema", "full" },
                                 precheck = { fail = { "row_filter_stream", "foreign_key_filtered" } } })
  T.eq(result(report, "foreign_key_filtered").status, "pass")

  -- Graded down, foreign_key_filtered let the full load copy every row and then failed adding
  -- the constraint: now the run stops on the playbook before it connects.
  sql(ctx.source_url, [[
CREATE SCHEMA pofk;
CREATE TABLE pofk.parent (id int PRIMARY KEY);
CREATE TABLE pofk.child (id int PRIMARY KEY, parent int REFERENCES pofk.parent);
INSERT INTO pofk.parent SELECT g FROM generate_series(1, 10) g;
INSERT INTO pofk.child SELECT g, g FROM generate_series(1, 10) g]])
  local function fixed_playbook(name, precheck_line)
    local path = ctx.tmpdir .. "/" .. name .. ".lua"
    local f = assert(io.open(path, "w"))
    f:write(string.format([[
local tide = require "tide"
return tide.task {
  name = %q, source = %q, target = %q,
  migrate = { "schema", "full" },
  select = { include = { "pofk" }, rows = { ["pofk.parent"] = "id <= 5" } },
  %s
}
]], name, ctx.source_url, ctx.target_url, precheck_line))
    f:close()
    return path
  end
  local path = fixed_playbook("fixed", "precheck = { warn = { \"foreign_key_filtered\" } },")
  local code, out = T.sh(PGTIDE .. " run " .. path .. " 2>&1")
  T.eq(code, 3, out)
  T.match(out, "fixed%.lua:%d+: precheck%.warn: check 'foreign_key_filtered' cannot be graded down")
  T.ok(target_is_empty(ctx), "the run wrote to the target")
  -- Without that policy the gate stops it, naming the check, before anything is written.
  code, out = T.sh(PGTIDE .. " run " .. fixed_playbook("fixed_default", "") .. " 2>&1")
  T.eq(code, 5, out)
  T.match(out, "%[foreign_key_filtered%]")
  T.ok(target_is_empty(ctx), "the run wrote to the target")
  sql(ctx.source_url, "DROP SCHEMA pofk CASCADE")
end)

T.test("10,000 tables: the whole precheck (plan included) takes well under 10 s", function(ctx)
  local admin = assert(tide.connect(ctx.source_admin))
  assert(admin:exec("DROP DATABASE IF EXISTS t_precheck_scale WITH (FORCE)"))
  assert(admin:exec("CREATE DATABASE t_precheck_scale"))
  local url = ctx.source_url:gsub("/[^/?]*(%??[^/]*)$", "/t_precheck_scale%1")
  local source = assert(tide.connect(url))
  -- Every tenth table has no key, so table_without_key has 1,000 findings to report.
  assert(source:exec([[DO $$ BEGIN
    FOR i IN 1..10000 LOOP
      IF i % 10 = 0 THEN
        EXECUTE format('CREATE TABLE t%s (id bigint, name text)', i);
      ELSE
        EXECUTE format('CREATE TABLE t%s (id bigint PRIMARY KEY, name text NOT NULL)', i);
      END IF;
      IF i % 1000 = 0 THEN COMMIT; END IF;
    END LOOP;
  END $$]]))
  source:close()
  local ok, err = pcall(function()
    local started = tide.monotonic()
    local report = precheck.evaluate(tide.task { name = "precheck-scale", source = url, target = ctx.target_url,
                                                 migrate = { "schema", "full", "incremental" } })
    local seconds = tide.monotonic() - started
    T.eq(#result(report, "table_without_key").findings, 1000)
    T.eq(result(report, "data_size").status, "info")
    print(string.format("# precheck of 10,000 tables: %.2f s (plan %.2f s, checks %.2f s)",
      seconds, report.plan_seconds, report.check_seconds))
  end)
  admin:exec("DROP DATABASE IF EXISTS t_precheck_scale WITH (FORCE)")
  admin:close()
  if not ok then error(err, 0) end
end)
