-- tide.playbook: loading a playbook and validating its task (docs/playbook.md). Every mistake
-- is a playbook error "FILE:LINE: what is wrong" (exit status 3, docs/reliability.md) raised
-- before any server is touched; the playbooks here name servers that do not exist.
local T = require "testlib"
local playbook = require "tide.playbook"

local counter = 0

-- playbook.load as pgtide's commands call it: with no frame of a test file above it, which
-- tide.task would take for the playbook's (it looks for the first frame outside tide/).
local function load(path)
  return coroutine.wrap(playbook.load)(path)
end

-- Writes a playbook whose body (the lines inside tide.task { ... }) starts on line 3;
-- returns its path.
local function write(ctx, body, head)
  counter = counter + 1
  local path = string.format("%s/playbook_test_%d_%d.lua", ctx.tmpdir, math.random(1 << 30), counter)
  local f = assert(io.open(path, "w"))
  f:write(head or 'local tide = require "tide"\n', "return tide.task {\n", body, "}\n")
  f:close()
  return path
end

local BASE = '  name = "shop-move",\n  source = "host=src.invalid dbname=shop",\n  target = "host=tgt.invalid dbname=shop",\n'

-- Loads a playbook that must be rejected; returns its message, checked to start with
-- "PATH:LINE: ".
local function rejected(ctx, body, line, head)
  local path = write(ctx, body, head)
  local ok, err = pcall(load, path)
  T.ok(not ok, "the playbook was accepted:\n" .. body)
  T.ok(playbook.is_playbook_error(err), "a playbook error, not " .. tostring(err))
  local msg = tostring(err)
  local prefix = path .. ":" .. line .. ": "
  T.ok(msg:sub(1, #prefix) == prefix, string.format("%q does not start with %q", msg, prefix))
  os.remove(path)
  return msg:sub(#prefix + 1)
end

local function accepted(ctx, body, head)
  local path = write(ctx, body, head)
  local ok, task = pcall(load, path)
  T.ok(ok, "the playbook was rejected: " .. tostring(task) .. "\n" .. body)
  os.remove(path)
  return task
end

T.test("a minimal playbook gives a task with the documented defaults", function(ctx)
  local task = accepted(ctx, BASE)
  T.eq(task.name, "shop-move")
  T.eq(task.migrate, { "schema", "full" })
  T.eq(task.state_schema, "pgtide")
end)

T.test("the conninfo strings are kept out of the task's printed form", function(ctx)
  local task = accepted(ctx, '  name = "x",\n  source = "postgresql://u:hunter2@src.invalid/db",\n'
    .. '  target = "host=tgt.invalid password=hunter2 dbname=d",\n')
  T.nomatch(tostring(task), "hunter2")
  T.eq(task.source, nil)
  T.eq(task.target, nil)
  T.eq(playbook.conninfo(task, "source"), "postgresql://u:hunter2@src.invalid/db")
end)

T.test("every documented key and form is accepted", function(ctx)
  local task = accepted(ctx, BASE .. [[
  migrate = { "schema", "full", "incremental" },
  select = { include = { "public.*" } },
  rename = { schema = { public = "shop" } },
  schema = { owners = "source", existing = "skip", dependents = "drop", grants = false, comments = true,
             database_settings = true },
  full = { jobs = 4, index_jobs = 2, index_workers = 0, protect_critical = true, split_larger_than = "1GB",
           split_parts = 8, existing = "truncate", format = "binary", large_objects = false, analyze = true },
  incremental = { conflict = "skip", group_changes = 100, group_ms = 50, group_live_ms = 5, release = true,
                  slot_timeout = "5min", heartbeat = true, heartbeat_table = "public.hb", delay_bound = "500ms",
                  streaming = false, spool_dir = "/tmp", heartbeat_interval = 0.2, decoding_work_mem = "64MB",
                  replica_role = true, merge_updates = true, batch_inserts = false, batch_updates = false },
  precheck = { warn = { "table_without_key" } },
  verify = { jobs = 2, max_differences = 10, leaf_rows = 1000, chunk_rows = 10000, fanout = 16,
             tables = { "public.orders" }, sample = 2.5, sample_larger_than = 1048576, table_timeout = "2h",
             recheck_delay = "1s", recheck = 0, sequences = true, sequence_offset = 1000, hash = "md5",
             wait_for_lsn = function() end, snapshot_timeout = 30 },
  stop = tide.when { lag_below = "1s", for_at_least = "30s" },
  on = { cutover = { function() end, function() end }, change = {}, conflict = function() end,
         progress = function() end, error = function() end },
  state_schema = "pgtide_state",
  retry = { attempts = 10, max_delay = "30s", window = "10min" },
  progress = "json",
]])
  T.eq(task.migrate, { "schema", "full", "incremental" })
  T.eq(task.full.jobs, 4)
  T.eq(task.state_schema, "pgtide_state")
end)

T.test("values of each kind in their other documented forms", function(ctx)
  accepted(ctx, BASE .. '  stop = function(st) return st.delay < 1 end,\n  on = { cutover = function() end },\n')
  accepted(ctx, BASE .. '  full = { split_larger_than = "auto" },\n')
  accepted(ctx, BASE .. '  full = { jobs = "auto", index_jobs = "auto" },\n')
  accepted(ctx, BASE .. '  full = { jobs = "auto", index_jobs = 3 },\n')
  accepted(ctx, BASE .. '  full = { split_larger_than = 0 },\n')
  accepted(ctx, BASE .. '  full = { split_larger_than = 536870912 },\n')
  accepted(ctx, BASE .. '  full = { split_larger_than = "500MB" },\n')
  accepted(ctx, BASE .. '  incremental = { slot_timeout = 20, delay_bound = "2s", heartbeat_interval = "1h" },\n')
  accepted(ctx, BASE .. '  verify = { sample = 100, sequence_offset = function(v) return v + 10 end },\n')
  accepted(ctx, '  ["name"] = "bracketed", [\'source\'] = "host=a", target = "host=b",\n')
end)

T.test("an unknown key: its line, where it is, and a suggestion when one is close", function(ctx)
  T.eq(rejected(ctx, BASE .. '  migrat = { "schema" },\n', 6),
       "unknown key 'migrat' in tide.task (did you mean 'migrate'?)")
  T.eq(rejected(ctx, BASE .. "  full = {\n    jobs = 2,\n    idnex_jobs = 2,\n  },\n", 8),
       "unknown key 'idnex_jobs' in full (did you mean 'index_jobs'?)")
  T.eq(rejected(ctx, BASE .. "  frobnicate = true,\n", 6), "unknown key 'frobnicate' in tide.task")
  T.eq(rejected(ctx, BASE .. '  incremental = { conflicts = "skip" },\n', 6),
       "unknown key 'conflicts' in incremental (did you mean 'conflict'?)")
end)

T.test("a wrong type or value names the key, what it must be and what it got", function(ctx)
  local cases = {
    { '  progress = "fancy",\n', 'tide.task.progress must be one of "auto", "bar", "plain", "json", "none", got the string "fancy"' },
    { "  migrate = {},\n", "tide.task.migrate must be a list such as" },
    { '  migrate = { "schema", "fulll" },\n', 'tide.task.migrate must be a list of "schema", "full", "incremental" (not "fulll")' },
    { '  migrate = "full",\n', "tide.task.migrate must be a list such as" },
    { "  full = { jobs = 0 },\n", 'full.jobs must be "auto" (pgtide measures and adjusts the count) or a positive integer (a fixed count), got a number' },
    { "  full = { jobs = 2.5 },\n", 'full.jobs must be "auto" (pgtide measures and adjusts the count) or a positive integer (a fixed count), got a number' },
    { '  full = { jobs = "4" },\n', 'full.jobs must be "auto" (pgtide measures and adjusts the count) or a positive integer (a fixed count), got the string "4"' },
    { '  full = { jobs = "Auto" },\n', 'full.jobs must be "auto" (pgtide measures and adjusts the count) or a positive integer (a fixed count), got the string "Auto"' },
    { '  full = { jobs = true },\n', 'full.jobs must be "auto" (pgtide measures and adjusts the count) or a positive integer (a fixed count), got a boolean' },
    { "  full = { index_jobs = -1 },\n", 'full.index_jobs must be "auto" (pgtide measures and adjusts the count) or a positive integer (a fixed count), got a number' },
    { "  full = { index_workers = 65 },\n", "full.index_workers must be an integer from 0 to 64" },
    { '  full = { split_larger_than = "big" },\n', 'full.split_larger_than must be a size such as "1GB"' },
    { '  full = { existing = "replace" },\n', 'full.existing must be one of "error", "truncate", "append"' },
    { '  schema = { existing = "truncate" },\n', 'schema.existing must be one of "error", "skip", "drop"' },
    { '  schema = { grants = "yes" },\n', 'schema.grants must be a boolean, got the string "yes"' },
    { '  cutover = { fence = "lock" },\n', 'tide.task.cutover must be a table whose fence is "read_only", "revoke_connect" or a function(source)' },
    { '  cutover = { fence = function() end },\n', "tide.task.cutover must be a table with unfence = function(source) beside fence = function" },
    { '  cutover = { fence = "revoke_connect" },\n', 'tide.task.cutover must be a table with roles = { "app", ... } beside fence = "revoke_connect"' },
    { '  cutover = { sequences = { offset = 1.5 } },\n', "tide.task.cutover must be a table whose sequences is false or { offset = N }" },
    { '  cutover = { verify = "rows" },\n', 'tide.task.cutover must be a table whose verify is "checksums", "counts" or "none"' },
    { '  cutover = { reverse = "yes" },\n', 'tide.task.cutover must be a table whose reverse is true or false' },
    { '  cutover = { timeout = "soon" },\n', "tide.task.cutover must be a table whose timeout is" },
    { '  cutover = { fenc = "read_only" },\n', "tide.task.cutover must be a table of fence, unfence, roles, sequences, verify, timeout, reverse (not fenc)" },
    { '  on = { row = { people = function() end } },\n', 'on.row must be a table of "schema.table" = function (found "people" = function)' },
    { '  incremental = { slot_timeout = "soon" },\n', "incremental.slot_timeout must be a duration such as \"30s\"" },
    { '  incremental = { decoding_work_mem = "lots" },\n', "incremental.decoding_work_mem must be a size such as" },
    { '  incremental = { conflict = "ignore" },\n', 'incremental.conflict must be one of "error", "skip", "overwrite"' },
    { '  stop = "lag < 1s",\n', 'tide.task.stop must be a function (or tide.when{...}), got the string "lag < 1s"' },
    { '  on = { cutover = { function() end, "notify" } },\n', "on.cutover must be a function or a list of functions, got a table" },
    { "  on = { conflict = {} },\n", "on.conflict must be a function, got a table" },
    { "  verify = { sample = 0 },\n", "verify.sample must be a percentage in (0, 100], got a number" },
    { "  verify = { sample = 150 },\n", "verify.sample must be a percentage in (0, 100]" },
    { "  verify = { fanout = 1 },\n", "verify.fanout must be an integer of 2 or more" },
    { '  verify = { hash = "sha1" },\n', 'verify.hash must be one of "fast", "md5"' },
    { '  verify = { tables = { "a", 2 } },\n', "verify.tables must be a list of table names" },
    { "  retry = { attempts = -1 },\n", "retry.attempts must be a positive integer" },
    { '  state_schema = "",\n', 'tide.task.state_schema must be a schema name, got the string ""' },
    { '  select = "public.*",\n', 'tide.task.select must be a table, got the string "public.*"' },
  }
  for _, c in ipairs(cases) do
    local msg = rejected(ctx, BASE .. c[1], 6)
    T.ok(msg:sub(1, #c[2]) == c[2], string.format("for %s  got:  %s\n  want: %s...", c[1], msg, c[2]))
  end
end)

T.test("the task's name: letters, digits, '_' and '-', at most 40 characters", function(ctx)
  accepted(ctx, '  name = "Shop_move-2",\n  source = "a", target = "b",\n')
  accepted(ctx, '  name = "' .. string.rep("n", 40) .. '",\n  source = "a", target = "b",\n')
  for _, bad in ipairs({ "shop move", "shop.move", "", string.rep("n", 41), "ünï" }) do
    local msg = rejected(ctx, string.format('  name = %q,\n  source = "a", target = "b",\n', bad), 3)
    T.match(msg, "^tide%.task%.name must be a name of letters, digits, '_' or '%-', at most 40 characters")
  end
  T.match(rejected(ctx, '  name = 42,\n  source = "a", target = "b",\n', 3), "got a number$")
end)

T.test("a required key that is missing", function(ctx)
  T.eq(rejected(ctx, '  name = "x",\n  source = "a",\n', 2), "tide.task needs 'target'")
  T.eq(rejected(ctx, '  source = "a",\n  target = "b",\n', 2), "tide.task needs 'name'")
end)

T.test("a positional value", function(ctx)
  T.match(rejected(ctx, BASE .. '  "incremental",\n', 2), "^unexpected positional value in tide%.task")
end)

T.test("the first mistake in the file is reported first", function(ctx)
  local body = BASE .. '  progress = "fancy",\n  full = { jobs = 0 },\n  zzz = 1,\n'
  T.match(rejected(ctx, body, 6), "^tide%.task%.progress must be")
  body = BASE .. '  zzz = 1,\n  full = { jobs = 0 },\n  progress = "fancy",\n'
  T.match(rejected(ctx, body, 6), "^unknown key 'zzz'")
end)

T.test("every mistake of a playbook is reported in one pass, in the file's order", function(ctx)
  -- Four independent mistakes: a wrong value, a nested wrong value, a misspelt key, a
  -- misspelt nested key; and a missing required key.
  local body = '  name = "shop-move",\n  source = "host=src.invalid dbname=shop",\n' ..
               '  progress = "fancy",\n' ..                        -- line 5
               '  full = { jobs = 0 },\n' ..                       -- line 6
               '  selcet = { include = { "public.*" } },\n' ..     -- line 7
               '  incremental = {\n    relase = true,\n  },\n'      -- line 9
  local path = write(ctx, body)
  local ok, err = pcall(load, path)
  T.ok(not ok and playbook.is_playbook_error(err), tostring(err))
  local lines = {}
  for l in tostring(err):gmatch("[^\n]+") do lines[#lines + 1] = l end
  T.eq(#lines, 6, tostring(err))
  local p = path:gsub("%p", "%%%0")
  T.match(lines[1], "^" .. p .. ":5: tide%.task%.progress must be one of \"auto\"")
  T.match(lines[2], "^" .. p .. ":6: full%.jobs must be \"auto\" %(pgtide measures and adjusts the count%) or a positive integer %(a fixed count%), got a number")
  T.match(lines[3], "^" .. p .. ":7: unknown key 'selcet' in tide%.task.*did you mean 'select'")
  T.match(lines[4], "^" .. p .. ":9: unknown key 'relase' in incremental.*did you mean 'release'")
  T.match(lines[5], "^" .. p .. ":%d+: tide%.task needs 'target'")
  T.eq(lines[6], "5 mistakes in the playbook; fix them all and run again")
  -- A section of the wrong type is one mistake, not one per key it was meant to hold.
  path = write(ctx, BASE .. '  full = 4,\n  retry = { attempts = 0 },\n')
  ok, err = pcall(load, path)
  T.ok(not ok)
  T.match(tostring(err), ":6: tide%.task%.full must be a table, got a number\n.*:7: retry%.attempts must be")
  -- and pgtide itself: exit status 3, every mistake on stderr
  local code, out = T.sh((os.getenv("PGTIDE") or "build/pgtide") .. " check " .. write(ctx, body))
  T.eq(code, 3, out)
  T.match(out, ":5: tide%.task%.progress")
  T.match(out, ":7: unknown key 'selcet'")
  T.match(out, ":9: unknown key 'relase'")
  T.nomatch(out, "internal error")
end)

T.test("a key in a comment or a string is not taken for the key's line", function(ctx)
  local body = BASE .. '  -- full = { jobs = 4 } was too many\n  select = { include = { "full = x" } },\n'
    .. "  full = { jobs = 0 },\n"
  T.match(rejected(ctx, body, 8), "^full%.jobs must be \"auto\" %(pgtide measures and adjusts the count%) or a positive integer")
end)

T.test("a nested key is located in its own section", function(ctx)
  -- `jobs` is a key of full and of verify: the mistake in verify is on verify's line.
  local body = BASE .. "  full = { jobs = 4 },\n  verify = {\n    jobs = 0,\n  },\n"
  T.match(rejected(ctx, body, 8), "^verify%.jobs must be a positive integer")
end)

T.test("mistakes in the precheck policy are playbook errors too", function(ctx)
  T.match(rejected(ctx, BASE .. '  precheck = { warn = { "table_without_kye" } },\n', 6),
          "table_without_kye.*did you mean 'table_without_key'")
  T.match(rejected(ctx, BASE .. '  precheck = { ignore = { large_objects = true } },\n', 6), "reason")
end)

T.test("a syntax error, a runtime error, a wrong return, a missing file", function(ctx)
  local path = write(ctx, '  name = "x"\n  source = "a",\n')
  local ok, err = pcall(load, path)
  T.ok(not ok and playbook.is_playbook_error(err))
  T.match(tostring(err), "^" .. path:gsub("%p", "%%%0") .. ":4: '}' expected")

  path = write(ctx, BASE, 'local tide = require "tide"\nlocal port = os.getenv("NO_SUCH_VARIABLE_X") + 1\n')
  ok, err = pcall(load, path)
  T.ok(not ok and playbook.is_playbook_error(err))
  T.match(tostring(err), ":2: attempt to perform arithmetic on a nil value")

  path = ctx.tmpdir .. "/playbook_test_returns_nothing.lua"
  local f = assert(io.open(path, "w"))
  f:write('local tide = require "tide"\nlocal t = tide.task { name = "x", source = "a", target = "b" }\n')
  f:close()
  ok, err = pcall(load, path)
  T.ok(not ok and playbook.is_playbook_error(err))
  T.match(tostring(err), "must end with `return tide.task { ... }` %(it returned nil%)")
  os.remove(path)

  ok, err = pcall(load, ctx.tmpdir .. "/playbook_test_no_such_file.lua")
  T.ok(not ok and playbook.is_playbook_error(err))
  T.match(tostring(err), "no_such_file%.lua: cannot open the playbook")
end)

T.test("tide.task given something other than a table", function(ctx)
  local path = ctx.tmpdir .. "/playbook_test_not_a_table.lua"
  local f = assert(io.open(path, "w"))
  f:write('local tide = require "tide"\n\nreturn tide.task "shop"\n')
  f:close()
  local ok, err = pcall(load, path)
  T.ok(not ok and playbook.is_playbook_error(err))
  T.eq(tostring(err), path .. ":3: tide.task needs a table: tide.task { name = ..., source = ..., target = ... }")
  os.remove(path)
end)

T.test("pgtide plan exits with status 3 on a playbook error, before connecting", function(ctx)
  local path = write(ctx, BASE .. "  full = { jobs = 0 },\n")
  local code, out = T.sh((os.getenv("PGTIDE") or "build/pgtide") .. " plan " .. path)
  T.eq(code, 3)
  T.match(out, ":6: full%.jobs must be \"auto\" %(pgtide measures and adjusts the count%) or a positive integer")
  T.nomatch(out, "connect")
  os.remove(path)
end)

T.test("tide.playbook and tide.side: a reverse playbook takes another playbook's sides, never as strings", function(ctx)
  local fwd = write(ctx, '  name = "fwd",\n  source = "postgresql://u:hunter2@src.invalid/db",\n' ..
    '  target = "host=tgt.invalid password=hunter2 dbname=d",\n')
  local name = fwd:match("[^/]*$")
  local task = accepted(ctx, '  name = "fwd-reverse",\n  reverse_of = "fwd",\n  source = tide.side(forward, "target"),\n' ..
    '  target = tide.side(forward, "source"),\n  migrate = { "incremental" },\n',
    string.format('local tide = require "tide"\nlocal forward = tide.playbook %q\n', name))
  T.eq(playbook.conninfo(task, "source"), "host=tgt.invalid password=hunter2 dbname=d")
  T.eq(playbook.conninfo(task, "target"), "postgresql://u:hunter2@src.invalid/db")
  T.eq(task.reverse_of, "fwd")
  T.nomatch(tostring(task), "hunter2")
  T.match(rejected(ctx, '  name = "r",\n  source = tide.side(forward, "middle"),\n  target = "host=b",\n', 5,
    string.format('local tide = require "tide"\nlocal forward = tide.playbook %q\n', name)), 'the side must be "source" or "target"')
  os.remove(fwd)
end)
