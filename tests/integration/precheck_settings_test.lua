-- Server settings the shared test clusters must keep (wal_level, max_replication_slots,
-- max_wal_senders, ...): a throwaway pair of clusters started here with bad values, checked,
-- fixed with ALTER SYSTEM and a restart, checked again, and stopped.
local T = require "testlib"
local P = require "pg"
local tide = require "tide"
local precheck = require "tide.precheck"

local dir, env

local function read_env(path)
  local out = {}
  for line in io.lines(path) do
    local k, v = line:match("^([%w_]+)=(.*)$")
    if k then out[k] = v end
  end
  return out
end

local function evaluate()
  local task = tide.task { name = "precheck-settings", migrate = { "schema", "full", "incremental" },
    source = P.with_db(env.SOURCE_URL, "app"), target = P.with_db(env.TARGET_URL, "app") }
  return (precheck.evaluate(task))
end

local function findings(report, id)
  local r = assert(precheck.result(report, id), "no check " .. id)
  return r.findings
end

local function text(list)
  local out = {}
  for _, f in ipairs(list) do out[#out + 1] = (f.object or "") .. ": " .. f.message .. " | " .. (f.fix or "") end
  return table.concat(out, "\n")
end

T.test("a throwaway source with wal_level = replica, one slot, one WAL sender, small WAL keep, no sender timeout", function(ctx)
  dir = ctx.tmpdir .. "/precheck-settings-clusters"
  local conf = "wal_level = replica\nmax_replication_slots = 1\nmax_wal_senders = 1\n" ..
               "max_slot_wal_keep_size = 64MB\nwal_sender_timeout = 0"
  local code, out = T.sh(string.format("PGTIDE_SOURCE_CONF='%s' bash scripts/clusters.sh start %s", conf, dir))
  T.eq(code, 0, out)
  env = read_env(dir .. "/env")
  for _, url in ipairs({ env.SOURCE_URL, env.TARGET_URL }) do
    local c = assert(tide.connect(url))
    assert(c:exec("CREATE DATABASE app"))
    c:close()
  end
  local c = assert(tide.connect(P.with_db(env.SOURCE_URL, "app")))
  assert(c:exec("CREATE TABLE items (id int PRIMARY KEY)"))
  -- Fill the only slot (a physical one: wal_level = replica allows no logical slot).
  assert(c:query("SELECT pg_create_physical_replication_slot('precheck_settings_full')"))
  c:close()
end)

T.test("wal_level, replication_slots, wal_senders, slot_wal_keep_size, wal_sender_timeout", function()
  -- Hold the only WAL sender.
  local sender = assert(tide.connect(P.with_db(env.SOURCE_URL, "app"), { replication = "database" }))
  local report = evaluate()
  sender:close()
  T.eq(report.ok, false)
  local list = findings(report, "wal_level")
  T.eq(#list, 1, text(list))
  T.match(list[1].message, "wal_level is replica")
  T.match(list[1].fix, "ALTER SYSTEM SET wal_level = logical;")
  list = findings(report, "replication_slots")
  T.eq(#list, 1, text(list))
  T.match(list[1].message, "max_replication_slots = 1 and 1 slot%(s%) exist")
  list = findings(report, "wal_senders")
  T.eq(#list, 1, text(list))
  T.match(list[1].message, "max_wal_senders = 1 and 1 WAL sender%(s%) run")
  list = findings(report, "slot_wal_keep_size")
  T.eq(#list, 1, text(list))
  T.eq(list[1].grade, "warn")
  T.match(list[1].message, "max_slot_wal_keep_size = 64%.0 MB")
  list = findings(report, "wal_sender_timeout")
  T.eq(#list, 1, text(list))
  T.match(list[1].message, "wal_sender_timeout = 0")
  -- The only WAL sender is taken: the replication connection of the check fails too.
  T.eq(#findings(report, "replication_connection"), 1)
  T.match(text(findings(report, "inactive_slots")), "slot precheck_settings_full: physical slot is inactive")
end)

T.test("fixed with ALTER SYSTEM and a restart: no findings", function()
  local c = assert(tide.connect(env.SOURCE_URL))
  for _, setting in ipairs({ "wal_level = logical", "max_replication_slots = 4", "max_wal_senders = 4",
                             "max_slot_wal_keep_size = '10GB'", "wal_sender_timeout = '60s'" }) do
    assert(c:exec("ALTER SYSTEM SET " .. setting))
  end
  c:close()
  local code, out = T.sh("bash scripts/clusters.sh restart " .. dir .. " source")
  T.eq(code, 0, out)
  local report = evaluate()
  for _, id in ipairs({ "wal_level", "replication_slots", "wal_senders", "slot_wal_keep_size",
                        "wal_sender_timeout", "replication_connection" }) do
    T.eq(#findings(report, id), 0, id .. ": " .. text(findings(report, id)))
  end
end)

T.test("the throwaway clusters are stopped", function()
  if dir then
    local code, out = T.sh("bash scripts/clusters.sh stop " .. dir)
    T.eq(code, 0, out)
  end
end)
