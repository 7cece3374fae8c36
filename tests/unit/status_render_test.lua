-- tide.live.status on a terminal: a full load of many tables is shown aggregated (the tables
-- being copied first, then the others, at most 20 lines, the rest counted by state); --json
-- keeps every table.
local T = require "testlib"
local status = require "tide.live.status"

local function tables(n, state_of)
  local list = {}
  for i = 1, n do
    list[i] = { table = string.format("tenant_%d.t%d", i % 10, i), rows = 10, rows_estimate = 10, bytes = 100,
                parts_done = 0, parts = 1, state = state_of(i) }
  end
  return list
end

local function status_with(list)
  return { task = "many", pid = 42, phase = "full", uptime = 5, source = "s", target = "t",
           full = { state = "copying", rows = 0, rows_estimate = 0, bytes = 0, parts_done = 0, parts_total = #list,
                    steps_done = 0, steps_total = 0, tables = list },
           sessions = 0, chunks = 0, socket = "/x" }
end

local function table_rows(text)
  local n = 0
  for line in text:gmatch("[^\n]+") do if line:match("^    tenant_") then n = n + 1 end end
  return n
end

T.test("a few tables: every one is listed", function()
  local text = status.render(status_with(tables(12, function() return "waiting" end)))
  T.eq(table_rows(text), 12)
  T.nomatch(text, "more tables")
end)

T.test("10,000 tables: 20 lines, the ones being copied first, the rest counted by state", function()
  local list = tables(10000, function(i)
    if i == 9000 or i == 9999 then return "copying" end
    return i < 6000 and "done" or "waiting"
  end)
  local text = status.render(status_with(list))
  T.eq(table_rows(text), 20)
  local first, second = text:match("\n    (tenant_%S+)[^\n]*\n    (tenant_%S+)")
  T.eq(first, "tenant_0.t9000", "the tables being copied come first")
  T.eq(second, "tenant_9.t9999")
  T.match(text, "tenant_0%.t6000 .* waiting", "then the waiting ones, in order")
  T.nomatch(text, " done\n", "done tables only when nothing else is left to show")
  T.match(text, "%.%.%. and 9,980 more tables %(5,999 done, 3,981 waiting%); `pgtide status many %-%-json` lists every one")
end)

T.test("table_lines leaves the list whole at the limit", function()
  local list = tables(20, function() return "done" end)
  local shown, left = status.table_lines(list, 20)
  T.eq(#shown, 20)
  T.eq(left, nil)
end)

T.test("the full load's line says how many copy streams run, and whether \"auto\" chose them", function()
  local st = status_with(tables(2, function() return "copying" end))
  T.nomatch(status.render(st), "copy streams", "an older status without the field")
  st.full.streams, st.full.streams_auto = 3, true
  T.match(status.render(st), "post%-data steps 0/0; copy streams 3 %(auto%)\n")
  st.full.streams_auto = false
  T.match(status.render(st), "post%-data steps 0/0; copy streams 3\n")
end)

T.test("a brief status (pgtide status without --json) carries the shown tables and the count of the rest, and renders the same", function()
  local function list()
    return tables(10000, function(i)
      if i == 9000 then return "copying" end
      return i < 6000 and "done" or "waiting"
    end)
  end
  local whole = status.render(status_with(list()))
  local st = status.brief(status_with(list()))
  T.eq(#st.full.tables, 20, "only the tables a terminal shows travel")
  T.eq(st.full.tables[1].table, "tenant_0.t9000")
  T.eq(st.full.tables_left.n, 9980)
  T.eq(st.full.tables_left.states, "5,999 done, 3,981 waiting")
  local json = require "tide.json"
  T.eq(status.render(json.decode(json.encode(st))), whole, "rendered from the brief status as from the whole")
  local few = status.brief(status_with(tables(3, function() return "waiting" end)))
  T.eq(#few.full.tables, 3)
  T.eq(few.full.tables_left, nil)
  T.eq(status.brief({ task = "t" }).task, "t", "no full load: nothing to cut")
end)

T.test("the stream: the apply sessions replaced are said once there are some", function()
  local st = status_with({})
  st.phase = "incremental"
  st.incremental = { delay = 0.2, not_delayed = true, bytes_behind = 0, applied_lsn = "0/10", apply_sessions = 0 }
  T.nomatch(status.render(st), "new session")
  st.incremental.apply_sessions = 12
  T.match(status.render(st), "apply connection replaced by a new session 12 time%(s%)")
end)
