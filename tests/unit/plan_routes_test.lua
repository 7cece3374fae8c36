-- on.route in the plan (tide.plan.routes): the checks said before anything is written, each
-- naming the table and the fix, and the routes the later phases read (tbl.routes,
-- tbl.route_sources).
local T = require "testlib"
local routes = require "tide.plan.routes"

local function fn() end

local function tbl(name, columns, key, extra)
  local cols = {}
  for i, c in ipairs(columns) do cols[i] = { name = c } end
  local t = { key = "public." .. name, source = { schema = "public", name = name },
              target = { schema = "public", name = name }, columns = cols, key_columns = key,
              replica_identity = "d" }
  for k, v in pairs(extra or {}) do t[k] = v end
  return t
end

-- A plan of orders (routing, with on.row) and orders_archive, as tide.plan builds them.
local function plan_of(archive, more)
  local tables = { tbl("orders", { "id", "status", "total" }, { "id" }, { transform = fn }), archive }
  for _, t in ipairs(more or {}) do tables[#tables + 1] = t end
  return { tables = tables, errors = {}, warnings = {} }
end

local function task_of(route, phases, change)
  return { on = { row = {}, route = route, change = change }, phases = phases or { schema = true, full = true } }
end

local function messages(plan)
  local out = {}
  for i, e in ipairs(plan.errors) do out[i] = e.message end
  return table.concat(out, "\n")
end

T.test("a valid route: the routing table knows its destinations, the destination its sources", function()
  local plan = plan_of(tbl("orders_archive", { "id", "status", "total", "archived_at" }, { "id" }))
  routes.attach(plan, task_of({ ["public.orders"] = { "public.orders_archive" } }, { full = true, incremental = true }))
  T.eq(plan.errors, {})
  T.eq(plan.tables[1].routes, { "public.orders_archive" })
  T.eq(plan.tables[2].route_sources, { "public.orders" })
end)

T.test("each mistake is said by the plan, naming the table and the fix", function()
  local cases = {
    { route = { ["public.nope"] = { "public.orders_archive" } }, want = 'on%.route%["public%.nope"%] names no selected table' },
    { route = { ["public.orders"] = { "public.gone" } }, want = '"public%.gone" is not a selected table: select it' },
    { route = { ["public.orders"] = { "public.orders" } }, want = "lists public%.orders itself" },
    { archive = tbl("orders_archive", { "id", "status" }, { "id" }),
      want = "public%.orders_archive has no column total of public%.orders .*add the column" },
    { archive = tbl("orders_archive", { "id", "status", "total" }, { "id", "status" }),
      want = "the unique key of public%.orders_archive %(id, status%) is not that of public%.orders %(id%)" },
    { archive = tbl("orders_archive", { "id", "status", "total" }, nil),
      want = "the unique key of public%.orders_archive %(none%)" },
    { archive = tbl("orders_archive", { "id", "status", "total" }, { "id" }, { unlogged = true }),
      phases = { full = true, incremental = true }, want = "public%.orders_archive is unlogged, so the stream" },
    { archive = tbl("orders_archive", { "id", "status", "total" }, { "id" }, { parent = "public.archive_all" }),
      want = "is a partition of public%.archive_all: routing rows from or to partitioned tables is not supported" },
    { change = { ["public.orders"] = fn }, want = "also has an on%.change hook" },
  }
  for i, c in ipairs(cases) do
    local plan = plan_of(c.archive or tbl("orders_archive", { "id", "status", "total" }, { "id" }))
    routes.attach(plan, task_of(c.route or { ["public.orders"] = { "public.orders_archive" } }, c.phases, c.change))
    T.eq(#plan.errors, 1, "case " .. i .. ": " .. messages(plan))
    T.match(messages(plan), c.want)
    T.eq(plan.tables[1].routes, nil, "case " .. i .. ": no route kept")
  end
end)

T.test("a table without on.row cannot route; keyless is fine without incremental", function()
  local plan = plan_of(tbl("orders_archive", { "id", "status", "total" }, { "id" }))
  plan.tables[1].transform = nil
  routes.attach(plan, task_of({ ["public.orders"] = { "public.orders_archive" } }))
  T.match(messages(plan), 'on%.route%["public%.orders"%]: public%.orders has no on%.row function to route its rows: ' ..
    'add on%.row%["public%.orders"%]')
  -- Both without a key, full load only: the rows commit with the part, no key needed.
  plan = plan_of(tbl("orders_archive", { "id", "status", "total" }, nil))
  plan.tables[1].key_columns = nil
  routes.attach(plan, task_of({ ["public.orders"] = { "public.orders_archive" } }))
  T.eq(plan.errors, {})
  -- ... not under incremental: the stream could not find the rows.
  plan = plan_of(tbl("orders_archive", { "id", "status", "total" }, nil))
  plan.tables[1].key_columns = nil
  routes.attach(plan, task_of({ ["public.orders"] = { "public.orders_archive" } }, { full = true, incremental = true }))
  T.match(messages(plan), "public%.orders_archive is without a replica identity, so the stream")
end)

T.test("routes in a circle are refused: the full load copies a routing table after its destinations", function()
  local plan = plan_of(tbl("orders_archive", { "id", "status", "total" }, { "id" }, { transform = fn }))
  routes.attach(plan, task_of({ ["public.orders"] = { "public.orders_archive" },
                                ["public.orders_archive"] = { "public.orders" } }))
  T.match(messages(plan), "on%.route: public%.orders → public%.orders_archive → public%.orders route rows in a circle")
end)

T.test("the full load copies a routing table after its destinations; a destination is loaded after both", function()
  local full_routes = require "tide.full.routes"
  local orders = { key = "public.orders", routes = { "public.orders_archive" } }
  local archive = { key = "public.orders_archive" }
  local other = { key = "public.other" }
  local load = { plan = { tables = { orders, archive, other } }, loaded = {},
                 table_parts = { ["public.orders"] = { {}, {} }, ["public.orders_archive"] = { {} }, ["public.other"] = { {} } },
                 parts_left = { ["public.orders"] = 2, ["public.orders_archive"] = 1, ["public.other"] = 0 } }
  full_routes.prepare(load)
  T.eq(load.loaded, { ["public.orders"] = false, ["public.orders_archive"] = false, ["public.other"] = true })
  T.eq(full_routes.ready(load, { table = orders }), false, "orders waits for orders_archive")
  T.eq(full_routes.ready(load, { table = archive }), true)
  T.eq(full_routes.copied(load, "public.orders_archive"), {}, "orders_archive is not complete before orders is copied")
  T.eq(full_routes.ready(load, { table = orders }), true)
  T.eq(full_routes.copied(load, "public.orders"), { "public.orders", "public.orders_archive" })
  -- The names on.row may return: the table itself (0), its destinations (1, ...).
  local by_key = { ["public.orders_archive"] = { key = "public.orders_archive",
                                                 source = { schema = "public", name = "orders_archive" } } }
  orders.source = { schema = "public", name = "orders" }
  T.eq(full_routes.names(orders, by_key), { ["public.orders"] = 0, ["public.orders_archive"] = 1 })
end)
