-- tide.full — the full data migration: every selected table copied under one snapshot by
-- parallel COPY pumps (engine/pg/copy_pump.c), largest parts first, with each table's
-- post-data steps (indexes, constraints, foreign keys, triggers, ...) starting as soon as the
-- data they need is in, on connections of their own. How many pumps: full.jobs, a number, or
-- "auto" (the default: tide.full.streams measures and adjusts); how many post-data
-- connections: full.index_jobs, or as many as copy streams.
--
--   full.run(task, plan, source, target, opts) → summary
--     opts.snapshot   a snapshot name to import (exported by the replication slot's creation);
--                     without it the load exports its own from a REPEATABLE READ transaction
--     opts.on_imported()  called once every part is copied (the exporter of opts.snapshot
--                     may then let it go)
--     opts.stream     true when an incremental stream starting at the snapshot follows the load
--                     (a source table truncated after the snapshot is then brought back by it;
--                     without one such a table is copied again under a new snapshot)
--     opts.progress   a tide.progress reporter
--     opts.run        the tide.taskrun run: it sees the load (status, operator controls) once
--                     it starts
--     opts.streams    overrides for the full.jobs = "auto" controller ({ window = seconds,
--                     hold = windows, runway = windows }: tests; tide.full.streams)
--
-- Resume: a part counts as done when its COPY committed on the target, in the same
-- transaction that marks it done in the task's state; a post-data step likewise. A run of an
-- interrupted task redoes only what is not marked. Without incremental migration the parts
-- still to copy are read under a new snapshot: rows the source changed in between are copied
-- as they are now for those parts only (the summary says so).
local tide = require "tide.core"
local schedule = require "tide.full.schedule"
local parts_mod = require "tide.full.parts"
local routes = require "tide.full.routes"
local failure = require "tide.failure"
local connect = require "tide.connect"
local streams = require "tide.full.streams"
local copy = require "tide.full.copy"
local steplist = require "tide.plan.steplist"

local M = {}

local SOURCE_SETTINGS, TARGET_SETTINGS, must = copy.SOURCE_SETTINGS, copy.TARGET_SETTINGS, copy.must

-- The load's shared state: queues, counters, the condition every waiter sleeps on.
local Load = {}
Load.__index = Load

local function new_load(task, plan, state, parts, table_parts, opts)
  local load = setmetatable({
    task = task, plan = plan, state = state, opts = opts,
    queue = {}, next_index = 1, parts = parts, table_parts = table_parts,
    parts_left = {}, loaded = {}, running = {}, done_steps = {},
    changed = tide.condition(), failed = nil,
    stats = { rows = 0, bytes = 0, parts_done = 0, parts_total = #parts, steps_done = 0, tables = {} },
    paused = false, steps_running = {}, tables_by_key = {}, analyzed = {},
    copying = 0, jobs = 4, total_bytes = 0, untaken = {},
  }, Load)
  for _, tbl in ipairs(plan.tables) do
    load.tables_by_key[tbl.key] = tbl
    load.total_bytes = load.total_bytes + (tbl.bytes or 0)
  end
  for _, p in ipairs(parts) do
    if not p.done then
      load.queue[#load.queue + 1] = p
      load.parts_left[p.table.key] = (load.parts_left[p.table.key] or 0) + 1
      load.untaken[p.table.key] = (load.untaken[p.table.key] or 0) + 1
    else
      load.stats.parts_done = load.stats.parts_done + 1
    end
  end
  for key, list in pairs(table_parts) do
    if (load.parts_left[key] or 0) == 0 then load.loaded[key] = true end
    load.stats.tables[key] = { rows = 0, bytes = 0, seconds = 0, parts = #list, format = list[1] and list[1].table.binary and "binary" or "text" }
  end
  routes.prepare(load)   -- on.route: a table's data is complete once the tables routing to it are copied
  return load
end

-- A load that finished keeps what its status reports (pgtide status, task:status(), the
-- metrics: its figures per table) and lets go of its queues, parts and post-data steps, which
-- the run would otherwise carry through the whole change stream (at 10,000 tables 38 of the
-- 91 MB of live heap the stream started with).
local SETTLED_AWAY = { "queue", "parts", "table_parts", "parts_left", "loaded", "untaken", "done_steps", "steps",
                       "post_keys", "pending_steps", "critical_tables", "cost", "critical", "steps_running", "tables_by_key",
                       "analyzed", "copied", "sched", "routes_to", "routed_from", "route_cache" }

local function settle(load)
  load.steps_total = #load.steps
  for _, field in ipairs(SETTLED_AWAY) do load[field] = nil end
  load.settled = true
end

function Load:fail(err)
  if not self.failed then self.failed = err end
  self.changed:notify()
end

function Load:copy_limit() return schedule.copy_limit(self) end
function Load:table_loaded(key) return schedule.table_loaded(self, key) end

-- The next part to copy, in queue order; a part of a table that routes rows (on.route) waits
-- until its destinations are copied (tide.full.routes).
function Load:next_part()
  while true do
    while not self.failed and self.copying >= self:copy_limit() and self.queue[self.next_index] do
      self.changed:wait(1)
    end
    if self.failed or not self.queue[self.next_index] then return nil end
    for i = self.next_index, #self.queue do
      if routes.ready(self, self.queue[i]) then
        local p = table.remove(self.queue, i)
        table.insert(self.queue, self.next_index, p)
        self.next_index = self.next_index + 1
        self.untaken[p.table.key] = self.untaken[p.table.key] - 1
        return p
      end
    end
    self.changed:wait(1)
  end
end

-- The next part of the queue, without waiting, if it is ready and `want(load, part)` says
-- yes (copy_job adding small tables to a batch); else nil.
function Load:next_part_if(want)
  local p = self.queue[self.next_index]
  if self.failed or not p or not routes.ready(self, p) or not want(self, p) then return nil end
  self.next_index = self.next_index + 1
  self.untaken[p.table.key] = self.untaken[p.table.key] - 1
  return p
end

------------------------------------------------------------------------ post-data

local function step_finished(load, step, seconds)
  load.steps_running[step] = nil
  if step.table then load.pending_steps[step.table] = (load.pending_steps[step.table] or 1) - 1 end
  schedule.step_finished(load, step)
  load.stats.steps_done = load.stats.steps_done + 1
  if load.opts.progress then load.opts.progress:event("step_done", { step = step, seconds = seconds }) end
end

local function run_step(load, conn, step)
  local started = tide.monotonic()
  local ok, err = require("tide.schema").run_step(conn, step, load.state:step_done_sql(conn, step.key, 0))
  if not ok then
    local what = step.object and require("tide.kinds").describe_key(step.object) or step.key
    failure.raise("failed", string.format("post-data step %s (%s) failed: %s\n  statement: %s", step.key, what,
      tostring(err), #step.sql > 1000 and step.sql:sub(1, 1000) .. " ..." or step.sql), { err = err, step = step })
  end
  step_finished(load, step, tide.monotonic() - started)
  load.changed:notify()
end

-- Several small steps (schedule.next_small_step) in one target transaction, each with its
-- record, so they are done together or not at all. If the transaction fails (one step's
-- error, or a deadlock with another job), it is rolled back and the steps run one by one,
-- so that a failure names its own step.
local function run_batch(load, conn, batch)
  local started = tide.monotonic()
  local records = {}
  for i, step in ipairs(batch) do records[i] = load.state:step_done_sql(conn, step.key, 0) end
  if not require("tide.schema").run_steps(conn, batch, records) then
    if load.opts.progress then
      load.opts.progress:note(string.format("%d post-data steps run together failed: running them one by one", #batch))
    end
    for _, step in ipairs(batch) do run_step(load, conn, step) end
    return
  end
  local each = (tide.monotonic() - started) / #batch
  for _, step in ipairs(batch) do step_finished(load, step, each) end
  load.changed:notify()
end

-- Post-data connections: index_jobs builds already run side by side, so by default a build
-- gets no parallel workers of its own (full.index_workers), which would only oversubscribe
-- the target's cores (measured: docs/performance.md).
local function step_settings(task)
  local settings = {}
  for k, v in pairs(TARGET_SETTINGS) do settings[k] = v end
  settings.max_parallel_maintenance_workers = tostring(task.full.index_workers or 0)
  return settings
end

local function step_job(load)
  local tgt <close> = connect.open(load.task, "target", { settings = step_settings(load.task) })
  while not load.failed do
    local unit = {}
    local step = schedule.next_step(load, unit)
    local analyze = not step and schedule.next_analyze(load)
    if step then
      local batch = { step }
      if schedule.small(step, load) then
        while #batch < schedule.BATCH_STEPS do
          local more = schedule.next_small_step(load, unit)
          if not more then break end
          batch[#batch + 1] = more
        end
      end
      local ok, err
      if #batch == 1 then ok, err = pcall(run_step, load, tgt, step) else ok, err = pcall(run_batch, load, tgt, batch) end
      if not ok then load:fail(err); return end
    elseif analyze then
      tgt:exec("ANALYZE " .. parts_mod.target_relation(tgt, analyze))
    elseif schedule.all_steps_taken(load) then
      return
    elseif load.copies_finished and not load:any_step_running() then
      -- Nothing can become ready any more: a step waits for something that never comes.
      local waiting = schedule.untaken_keys(load, 10)
      load:fail(failure.new("failed", "post-data steps wait for steps or tables that are not part of this load: " ..
                                      table.concat(waiting, ", ")))
      return
    else
      load.changed:wait(1)
    end
  end
end

function Load:any_step_running()
  return next(self.steps_running) ~= nil
end

------------------------------------------------------------------------ sequences, analyze

local function sync_sequences(load, src, tgt)
  for _, seq in ipairs(load.plan.sequences or {}) do
    local sname = src:quote_ident(seq.source.schema) .. "." .. src:quote_ident(seq.source.name)
    local r = src:query("SELECT last_value, is_called FROM " .. sname)
    if r and r[1] then
      local tname = tgt:quote_ident(seq.target.schema) .. "." .. tgt:quote_ident(seq.target.name)
      local ok, err = tgt:query("SELECT pg_catalog.setval($1::regclass, $2, $3)", tname, r[1].last_value, r[1].is_called)
      if not ok then
        failure.raise("failed", string.format("setting sequence %s on the target failed: %s", tname, tostring(err)), { err = err })
      end
    end
  end
end

local function analyze_tables(load)
  if load.task.full.analyze == false then return end
  local tables = {}
  for _, t in ipairs(load.plan.tables) do
    if not load.analyzed[t.key] then tables[#tables + 1] = t end
  end
  local jobs = math.type(load.task.full.index_jobs) == "integer" and load.task.full.index_jobs or load.jobs
  local next_i = 1
  local handles = {}
  for _ = 1, math.min(jobs, #tables) do
    handles[#handles + 1] = tide.spawn(function()
      local tgt <close> = connect.open(load.task, "target", { settings = TARGET_SETTINGS })
      while next_i <= #tables do
        local t = tables[next_i]
        next_i = next_i + 1
        tgt:exec("ANALYZE " .. parts_mod.target_relation(tgt, t))
      end
    end)
  end
  for _, r in ipairs(require("tide.wait").all(handles)) do if not r.ok then error(r.err, 0) end end
end

------------------------------------------------------------------------ the load

-- Check the target tables are empty where full.existing = "error" and no part of the table
-- was copied by an earlier run of this task.
local function check_existing(load, tgt)
  local policy = load.task.full.existing or "error"
  if policy ~= "error" then return end
  local nonempty, unchecked = {}, {}
  for _, tbl in ipairs(load.plan.tables) do
    local any_done = false
    for _, p in ipairs(load.table_parts[tbl.key]) do if p.done then any_done = true end end
    if not any_done then unchecked[#unchecked + 1] = tbl end
  end
  -- A table whose storage is empty holds no row (the tables this task's schema phase just made):
  -- sizes are read for all of them at once, without a lock. The others, and extension
  -- configuration tables (whose rows outside the condition are not the load's), are looked
  -- into, a hundred to a query; it returns the positions of the tables holding rows.
  local names = {}
  for i, tbl in ipairs(unchecked) do names[i] = parts_mod.target_relation(tgt, tbl) end
  local stored = {}
  if #names > 0 then
    local rows, err = tgt:query([[
SELECT u.i FROM pg_catalog.unnest($1::text[]) WITH ORDINALITY AS u(rel, i)
WHERE pg_catalog.pg_relation_size(u.rel::regclass) > 0]], names)
    if not rows then
      failure.raise("failed", "reading the sizes of the target tables failed: " .. tostring(err), { err = err })
    end
    for _, r in ipairs(rows) do stored[r.i] = true end
  end
  local candidates = {}
  for i, tbl in ipairs(unchecked) do
    if stored[i] or tbl.target_filter then candidates[#candidates + 1] = tbl end
  end
  unchecked = candidates
  for first = 1, #unchecked, 100 do
    local arms = {}
    for i = first, math.min(#unchecked, first + 99) do
      local tbl = unchecked[i]
      arms[#arms + 1] = string.format("SELECT %d AS i WHERE EXISTS (SELECT FROM ONLY %s%s)", i,
                                      parts_mod.target_relation(tgt, tbl), parts_mod.target_rows(tgt, tbl))
    end
    local rows, err = tgt:query(table.concat(arms, "\nUNION ALL "))
    if not rows then
      failure.raise("failed", "checking that the target tables are empty failed: " .. tostring(err), { err = err })
    end
    for _, r in ipairs(rows) do
      local tbl = unchecked[r.i]
      nonempty[#nonempty + 1] = tbl.target.schema .. "." .. tbl.target.name
    end
  end
  table.sort(nonempty)
  if #nonempty > 0 then
    failure.raise("precheck", "these target tables already hold rows, and full.existing is \"error\": " ..
      table.concat(nonempty, ", ", 1, math.min(10, #nonempty)) .. (#nonempty > 10 and ", ..." or "") ..
      "\n  fix: empty them, or set full = { existing = \"truncate\" } (replace their rows) or \"append\" (keep them)")
  end
end

local function truncate_split_tables(load, tgt)
  if (load.task.full.existing or "error") ~= "truncate" then return end
  for _, tbl in ipairs(load.plan.tables) do
    local list = load.table_parts[tbl.key]
    local any_done = false
    for _, p in ipairs(list) do if p.done then any_done = true end end
    if #list > 1 and not any_done then must(tgt, select(2, parts_mod.target_rows(tgt, tbl)), "truncating " .. tbl.key) end
  end
end

-- Every row filter (select.rows) must be valid SQL for its table: checked on the source with
-- EXPLAIN before anything is written, so a typo fails the run at once, naming the table.
function M.validate_filters(task, plan, source)
  for _, tbl in ipairs(plan.tables) do
    if tbl.row_filter then
      local rel = source:quote_ident(tbl.source.schema) .. "." .. source:quote_ident(tbl.source.name)
      local ok, err = source:exec("EXPLAIN (COSTS OFF) SELECT 1 FROM ONLY " .. rel .. " WHERE (" .. tbl.row_filter .. ")")
      if not ok then
        local where = task.locate and task.locate("rows") or ""
        require("tide.playbook").raise(string.format("%sselect.rows[%q]: the row filter %q is not valid for %s: %s",
          where, tbl.key, tbl.row_filter, tbl.key, err.message or tostring(err)))
      end
    end
  end
end

function M.run(task, plan, source, target, opts)
  opts = opts or {}
  local started = tide.monotonic()
  local state = opts.state or require("tide.state").open(task, target)
  local recorded = state:parts()
  local resumed = #recorded > 0
  local sizing = streams.sizing(task, math.type(task.full.jobs) ~= "integer" and streams.facts(source, target) or nil)
  local parts, table_parts, new = parts_mod.build(task, plan, source, recorded, sizing.split)
  if #new > 0 then state:define_parts(new) end
  -- (The recorded rows, a table of a dozen fields per part, are read into the parts: at
  -- 100,000 tables about 30 MB of live heap that a resumed load kept to its end.)
  recorded, new = nil, nil   -- luacheck: ignore 311
  -- Largest first, weighted by the index work that waits for each table: a table whose
  -- indexes take long to build (a GIN index on jsonb, say) should start before a plain table
  -- of the same size, or its index builds end up alone at the end of the load.
  local weight = {}
  local post = task.phases.schema and plan.post_data or {}
  for i = 1, #post do
    local t = steplist.field(post, i, "table")
    if t and steplist.field(post, i, "kind") == "index" then
      local sql = steplist.field(post, i, "sql")
      local cost = sql:find(" USING gin ", 1, true) and 1.5 or (sql:find(" USING gist ", 1, true) and 1.5 or 0.5)
      weight[t] = (weight[t] or 1) + cost
    end
  end
  table.sort(parts, function(a, b)
    local wa = a.bytes_estimate * (weight[a.table.key] or 1)
    local wb = b.bytes_estimate * (weight[b.table.key] or 1)
    if wa ~= wb then return wa > wb end
    return a.id < b.id
  end)
  local done_steps = state:steps_done()
  local load = new_load(task, plan, state, parts, table_parts, opts)
  -- Never more streams than parts to copy.
  sizing.max = math.max(1, math.min(sizing.max, #load.queue))
  sizing.start = math.min(sizing.start, sizing.max)
  sizing.min = math.min(sizing.min, sizing.start)
  load.sizing, load.jobs, load.stats.streams = sizing, sizing.start, sizing.start
  load.done_steps = done_steps
  load.resumed = resumed
  check_existing(load, target)
  truncate_split_tables(load, target)

  -- The snapshot: imported from the caller (the replication slot) or exported here.
  local snapshot, exporter = opts.snapshot, nil
  -- The exporter (or the caller's slot connection) stays idle, keeping the snapshot alive, as
  -- long as parts are copied: each part imports it again (see begin_source). Let go once the
  -- copies end, or when the load fails before that.
  local function release_snapshot()
    if exporter then
      exporter:exec("COMMIT")
      exporter:close()
      exporter = nil
    end
    if opts.on_imported then opts.on_imported(); opts.on_imported = nil end
  end
  -- (On an error: closing the connection ends its transaction; nothing here may yield.)
  local _ <close> = setmetatable({}, { __close = function()
    if exporter then exporter:close(); exporter = nil end
    if opts.on_imported then opts.on_imported(); opts.on_imported = nil end
  end })
  if not snapshot then
    exporter = connect.open(task, "source", { settings = SOURCE_SETTINGS })
    must(exporter, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", "starting the snapshot transaction")
    snapshot = assert(exporter:query("SELECT pg_catalog.pg_export_snapshot() AS s"))[1].s
    if resumed and load.stats.parts_done > 0 then
      load.new_snapshot_note = "this run resumed an interrupted full load: the parts still to copy were read under a new snapshot, so rows changed on the source in between appear as they are now in those parts only"
      if opts.progress then opts.progress:note(load.new_snapshot_note) end
    end
  end

  -- Post-data steps not done yet, in plan order (only when this task migrates the schema:
  -- with migrate = { "full" } the target's schema is the operator's).
  -- (load.steps: the plan's packed list itself when none is done, else a view of the others:
  -- no table per step, tide.plan.steplist.)
  -- load.post_keys: of the keys the steps wait for, the ones of post-data steps (a step waits
  -- only for those of this load, tide.full.schedule).
  local pending, waited = {}, {}
  for i = 1, #post do
    for _, key in ipairs(steplist.field(post, i, "after") or {}) do waited[key] = true end
  end
  load.post_keys = {}
  for i = 1, #post do
    local key = steplist.field(post, i, "key")
    if waited[key] then load.post_keys[key] = true end
    if not done_steps[key] then pending[#pending + 1] = i end
  end
  waited = nil   -- luacheck: ignore 311
  load.steps = #pending == #post and post or steplist.view(post, pending)
  pending = nil   -- luacheck: ignore 311
  load.critical_tables = {}
  schedule.prepare(load, true)
  if opts.progress then opts.progress:start_load(load) end
  -- The run sees the load from now on; controls an operator gave before it began (pgtide
  -- attach: pause, throttle, stop) take effect here.
  if opts.run then opts.run:attach_load(load) end

  -- Copy jobs and post-data jobs are started as the count of streams grows (never stopped: a
  -- job above the count waits in next_part, or in next_step, between two pieces of work).
  -- Without full.index_jobs the post-data steps follow the copy streams' count (step_limit).
  local copy_handles, step_handles = {}, {}
  local index_jobs = math.type(task.full.index_jobs) == "integer" and task.full.index_jobs or nil
  if not index_jobs and task.full.index_jobs ~= "auto" and not sizing.auto then index_jobs = math.max(1, math.min(4, sizing.start)) end
  load.step_limit = not index_jobs and load.jobs or nil
  local function grow(n)
    while #copy_handles < n and not load.copies_finished do copy_handles[#copy_handles + 1] = tide.spawn(copy.job, load) end
    if not index_jobs then load.step_limit = n end
    while #load.steps > 0 and #step_handles < math.min(index_jobs or n, #load.steps) do
      step_handles[#step_handles + 1] = tide.spawn(step_job, load)
    end
  end
  load.snapshot = snapshot   -- imported by each part (begin_source)
  grow(load.jobs)
  if exporter then
    -- Sequence values are read as the snapshot is taken (sequences are not transactional).
    local ok, err = pcall(sync_sequences, load, exporter, target)
    if not ok then load:fail(err) end
  end
  local controller = sizing.auto and sizing.max > sizing.min and
    tide.spawn(streams.run, load, streams.controller(sizing, opts.streams), grow)
  -- (wait.all also waits for the copy jobs the controller adds meanwhile)
  for _, r in ipairs(require("tide.wait").all(copy_handles)) do if not r.ok then load:fail(r.err) end end
  if controller then
    local ok, err = pcall(controller.wait, controller)
    if not ok then load:fail(err) end
  end
  release_snapshot()
  load.copies_finished = true
  load.changed:notify()
  for _, r in ipairs(require("tide.wait").all(step_handles)) do if not r.ok then load:fail(r.err) end end
  if load.rewritten then
    -- Without a stream the copy must equal one snapshot: start again under a new one (the
    -- failure raised is retried by `pgtide run`).
    M.start_over(task, plan, target, state)
    if opts.progress then opts.progress:note("the full load starts again under a new snapshot") end
  end
  if load.failed then error(load.failed, 0) end
  if opts.snapshot then sync_sequences(load, source, target) end
  local analyze_started = tide.monotonic()
  analyze_tables(load)
  load.stats.seconds = tide.monotonic() - started
  load.stats.analyze_seconds = tide.monotonic() - analyze_started
  load.stats.note = load.new_snapshot_note
  if opts.progress then opts.progress:finish_load(load) end
  settle(load)
  return load.stats
end

-- For the unit tests of the scheduling rules (tide.full.schedule).
M.part_finished = copy.part_finished
M._copy_limit = schedule.copy_limit
M._next_small_step, M._small = schedule.next_small_step, schedule.small
M._next_step, M._step_done = schedule.next_step, function(load, step)
  load.steps_running[step] = nil
  schedule.step_finished(load, step)
end

-- M.start_over(task, plan, target, state): the full load starts again from the beginning
-- (tide.full.start_over). While it has not finished, the task's steps hold START_OVER_MARK.
M.start_over = require "tide.full.start_over"
M.START_OVER_MARK = "full:start_over"

------------------------------------------------------------------------ operator controls, figures

-- Operator controls (tide.taskrun pushes them): no new part, and parts in flight stop reading.
function Load:pause()
  self.paused = true
  for _, pump in pairs(self.running) do pump:pause() end
end

function Load:resume()
  self.paused = false
  for _, pump in pairs(self.running) do pump:resume() end
  self.changed:notify()
end

function Load:throttle(limits)
  self.pump_limits = limits
  for _, pump in pairs(self.running) do pump:throttle(limits) end
end

-- Rows and bytes moved so far: committed parts and parts in flight.
function Load:totals()
  local rows, bytes = self.stats.rows, self.stats.bytes
  for _, pump in pairs(self.running) do
    local b, messages = pump:stats()
    rows, bytes = rows + messages, bytes + b
  end
  return rows, bytes
end

-- What the load is doing, as plain data (the `full` part of `pgtide status`, docs/live.md);
-- the rates are the live control's (it samples totals over time).
function Load:status()
  local s = self.stats
  local flight_rows, flight_bytes, flight_parts = {}, {}, {}
  for part, pump in pairs(self.running) do
    local bytes, messages = pump:stats()
    local key = part.table.key
    flight_rows[key] = (flight_rows[key] or 0) + messages
    flight_bytes[key] = (flight_bytes[key] or 0) + bytes
    flight_parts[key] = (flight_parts[key] or 0) + 1
  end
  local tables, rows_estimate, bytes_estimate = {}, 0, 0
  for _, t in ipairs(self.plan.tables) do
    local ts = s.tables[t.key] or { rows = 0, bytes = 0, parts = 0 }
    local left = self.settled and 0 or self.parts_left[t.key] or 0
    local state = (self.settled or self.loaded[t.key]) and "done" or flight_parts[t.key] and "copying" or "waiting"
    if state == "copying" and self.paused then state = "paused" end
    tables[#tables + 1] = {
      table = t.key, target = t.target.schema .. "." .. t.target.name,
      rows = ts.rows + (flight_rows[t.key] or 0), bytes = ts.bytes + (flight_bytes[t.key] or 0),
      rows_estimate = t.rows_estimate, bytes_estimate = t.bytes,
      parts = ts.parts, parts_done = ts.parts - left, parts_copying = flight_parts[t.key] or 0,
      state = state,
    }
    rows_estimate = rows_estimate + math.max(0, t.rows_estimate or 0)
    bytes_estimate = bytes_estimate + math.max(0, t.bytes or 0)
  end
  local rows, bytes = self:totals()
  local state = self.failed and (self.failed.kind == "interrupted" and "stopping" or "failed")
                or s.seconds and "done" or self.paused and "paused" or "copying"
  if state == "copying" and self.copies_finished then state = "post-data" end
  return {
    state = state, rows = rows, bytes = bytes, rows_estimate = rows_estimate, bytes_estimate = bytes_estimate,
    parts_done = s.parts_done, parts_total = s.parts_total, steps_done = s.steps_done, steps_total = self.steps_total or #(self.steps or {}),
    seconds = s.seconds, tables = tables,
    streams = self.jobs, streams_auto = self.sizing and self.sizing.auto or false, streams_copying = self.copying,
  }
end

return M
