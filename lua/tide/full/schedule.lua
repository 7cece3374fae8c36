-- tide.full.schedule — which work of a full load runs next (tide.full runs it):
--   * how many copies may run (a critical index build caps them),
--   * which post-data step a free job takes: among the ready ones (every step it comes after
--     done, every table whose data it needs loaded) the most expensive, not conflicting in
--     locks with the steps running,
--   * which table a job with nothing else to do analyzes.
-- The ready steps are kept as steps finish and tables load (step_finished, table_loaded), so
-- that choosing costs the same with 40 steps or 400,000.
local heap_mod = require "tide.heap"
local field = require("tide.plan.steplist").field
local new_table = require("tide.core").new_table

local M = {}

-- While a critical step runs (a GIN/GiST/SP-GiST build on a large table: one backend, the
-- longest single piece of work, nothing can split it), copies that would start now compete
-- with it for the servers' cores and stretch the end of the whole load; so at most
-- jobs // 4 (at least one) copy meanwhile, and no other post-data step beside it until the
-- copies are done (one after); the cap starts as soon as the critical table's last part is
-- under way. Measured on the 2 GB benchmark with 4 jobs (docs/performance.md): 18.7 s
-- without, 16.0 s with it and index_workers = 0. full.protect_critical = false turns it off.
-- (load.untaken: per table, how many of its parts are still in the queue; kept by next_part.)
local function all_parts_taken(load, key)
  return (load.untaken[key] or 0) == 0
end

function M.copy_limit(load)
  local jobs = load.jobs or 4
  local capped = math.max(1, jobs // 4)
  for step in pairs(load.steps_running) do
    if step.critical then return capped end
  end
  -- The cap starts once a critical step's table has all its parts under way (parts started
  -- then would still be copying when the build begins); the build itself can only start once
  -- every part is in, so a table with parts left has not started its build.
  for key in pairs(load.critical_tables or {}) do
    if (load.parts_left[key] or 0) > 0 and all_parts_taken(load, key) then return capped end
  end
  return jobs
end

-- What a step costs, roughly, for choosing among ready steps: the longest first, so that the
-- one build that would otherwise end the load alone (a GIN index on the biggest table) starts
-- as early as its data allows.
local HEAVY_METHODS = { " USING gin ", " USING gist ", " USING spgist " }

function M.step_cost(load, step)
  local tbl = load.tables_by_key and load.tables_by_key[step.table]
  local bytes = tbl and tbl.bytes or 0
  local factor, critical = 0.1, false
  if step.kind == "index" then
    factor = 1
    for _, m in ipairs(HEAVY_METHODS) do if step.sql:find(m, 1, true) then factor = 3 end end
    critical = factor == 3 and not (load.task and load.task.full.protect_critical == false) and
               bytes >= (load.total_bytes or 0) / (2 * (load.jobs or 4))
  elseif step.kind == "fkey" then
    factor = 0.5
  end
  return bytes * factor, critical
end

-- Each step's cost and whether it is critical, decided once as the load starts (load.cost,
-- load.critical: arrays by the step's place in load.steps, which may be a packed list whose
-- steps are new tables at each read, tide.plan.steplist), and the count of steps per table
-- still to run (load.pending_steps) and the tables of critical steps.
function M.prepare(load, count_pending)
  if load.cost then return end
  local steps = load.steps
  local n = #steps
  load.cost, load.critical = new_table(n), new_table(n)
  load.critical_tables = load.critical_tables or {}
  local pending = count_pending and {}
  if pending then load.pending_steps = pending end
  local view = { kind = false, sql = false, table = false }
  for i = 1, n do
    view.kind, view.sql, view.table = field(steps, i, "kind"), field(steps, i, "sql"), field(steps, i, "table")
    load.cost[i], load.critical[i] = M.step_cost(load, view)
    if view.table and pending then pending[view.table] = (pending[view.table] or 0) + 1 end
    if load.critical[i] then load.critical_tables[view.table] = true end
  end
end

-- Step i of the load, as a table the caller keeps (a running step): critical set on it.
local function step_at(load, i)
  local step = load.steps[i]
  if load.critical[i] then step.critical = true end
  return step
end

-- The tables a step locks: its own and the ones whose data it needs (a foreign key locks the
-- referenced table too). An index build takes a SHARE lock, which other index builds share;
-- every other post-data statement (ADD CONSTRAINT, foreign keys, triggers, ...) takes a
-- stronger lock, which would wait for the running builds and, waiting, block the builds
-- queued behind it. Such a step is not started while a conflicting step on one of its tables
-- runs; the job takes other work meanwhile.
local function shares(step) return step.kind == "index" end

-- (Steps of the same unit run one after the other in one transaction: they do not wait on
-- each other's locks.)
local function conflicts(load, step, unit)
  for running, of in pairs(load.steps_running) do
    if unit and of == unit then goto next end
    -- Two steps of one object (an extension's grants on its tables, say) update the same
    -- catalog row: at once, one fails with "tuple concurrently updated".
    if step.object and running.object == step.object then return true end
    if not (shares(step) and shares(running)) then
      local mine = {}
      if step.table then mine[step.table] = true end
      for _, t in ipairs(step.needs_data or {}) do mine[t] = true end
      if running.table and mine[running.table] then return true end
      for _, t in ipairs(running.needs_data or {}) do if mine[t] then return true end end
    end
    ::next::
  end
  return false
end

-- Beside a running critical step no other step while copies run (the copies are the other
-- cores' work; the builds waiting then fill the cores the copies leave when they end), and
-- one at a time after (see Load:copy_limit).
-- (load.steps_running maps each running step to its unit: a table per job's transaction, which
-- holds one step or several small ones, tide.full's batches. Limits count units.)
local function crowded(load)
  local critical, others, seen = false, 0, {}
  for running, unit in pairs(load.steps_running) do
    if running.critical then critical = true
    elseif not seen[unit] then seen[unit] = true; others = others + 1 end
  end
  local allowed = (load.copying or 0) > 0 and 0 or 1
  return critical and others >= allowed
end

-- Which steps can run: built on the first call from the load's state, then kept up to date
-- as steps finish and tables are loaded (step_finished, table_loaded), so that choosing a step
-- costs the same with 40 steps or 400,000 (a scan of every step at every wake of every job
-- made the load quadratic in its objects). A step is ready once every step it comes after
-- (among this load's) is done and every table whose data it needs is in; the ready ones wait
-- in a heap, the most expensive first, then in plan order.
local function sched_of(load)
  local sc = load.sched
  if sc then return sc end
  M.prepare(load)
  local steps, cost = load.steps, load.cost
  local n = #steps
  -- The ready steps wait in a heap of their places in load.steps, the most expensive first.
  local heap = heap_mod.new(function(a, b)
    if cost[a] ~= cost[b] then return cost[a] > cost[b] end
    return a < b
  end)
  sc = { heap = heap, waiting_step = {}, waiting_table = {}, untaken = n, unmet = new_table(n),
         taken = new_table(n), analyze = {}, analyze_i = 1 }
  load.sched = sc
  for i = 1, n do
    local unmet = 0
    for _, key in ipairs(field(steps, i, "after") or {}) do
      if load.post_keys[key] and not load.done_steps[key] then
        unmet = unmet + 1
        -- (one step waiting for a key: its place; several: a list of them)
        local list = sc.waiting_step[key]
        if not list then
          sc.waiting_step[key] = i
        elseif type(list) == "number" then
          sc.waiting_step[key] = { list, i }
        else
          list[#list + 1] = i
        end
      end
    end
    for _, t in ipairs(field(steps, i, "needs_data") or {}) do
      if load.table_parts[t] and not load.loaded[t] then
        unmet = unmet + 1
        local list = sc.waiting_table[t] or {}
        sc.waiting_table[t] = list
        list[#list + 1] = i
      end
    end
    sc.unmet[i], sc.taken[i] = unmet, false
    if unmet == 0 then heap:push(i) end
  end
  for _, tbl in ipairs(load.plan and load.plan.tables or {}) do
    if load.loaded[tbl.key] and (load.pending_steps and load.pending_steps[tbl.key] or 0) == 0 then
      sc.analyze[#sc.analyze + 1] = tbl
    end
  end
  return sc
end

-- The places waiting for a key or a table, as sched_of keeps them: one place, or a list.
local function places(v)
  if type(v) == "number" then return { v } end
  return v or {}
end

local function release(sc, list)
  for _, i in ipairs(places(list)) do
    sc.unmet[i] = sc.unmet[i] - 1
    if sc.unmet[i] == 0 and not sc.taken[i] then sc.heap:push(i) end   -- (taken: into a batch, below)
  end
end

-- A step ended well: the steps after it may be ready, its table may be analyzed.
function M.step_finished(load, step)
  local sc = load.sched
  if not sc then return end
  release(sc, sc.waiting_step[step.key])
  sc.waiting_step[step.key] = nil
  local t = step.table
  if t and load.loaded[t] and load.pending_steps and load.pending_steps[t] == 0 and load.tables_by_key[t] then
    sc.analyze[#sc.analyze + 1] = load.tables_by_key[t]
  end
end

-- Every part of a table is in: the steps that need its data may be ready.
function M.table_loaded(load, key)
  local sc = load.sched
  if not sc then return end
  release(sc, sc.waiting_table[key])
  sc.waiting_table[key] = nil
  if (load.pending_steps and load.pending_steps[key] or 0) == 0 and load.tables_by_key[key] then
    sc.analyze[#sc.analyze + 1] = load.tables_by_key[key]
  end
end

-- Without full.index_jobs, no more steps at once than copy streams (load.step_limit, which
-- tide.full.streams moves with the count of streams).
local function over_limit(load)
  local limit = load.step_limit
  if not limit then return false end
  local running, seen = 0, {}
  for _, unit in pairs(load.steps_running) do
    if not seen[unit] then seen[unit] = true; running = running + 1 end
  end
  return running >= limit
end

-- A step taken for a unit: the steps waiting for it whose every unmet prerequisite is now in
-- the same unit can follow in its transaction (a primary key's index, then the constraint
-- attached to it, then a foreign key that waited for that constraint).
local function taken(load, sc, i, step, unit)
  sc.taken[i] = true
  sc.untaken = sc.untaken - 1
  load.steps_running[step] = unit
  unit.freed = unit.freed or {}
  unit.unlocked = unit.unlocked or {}
  for _, w in ipairs(places(sc.waiting_step[step.key])) do
    unit.freed[w] = (unit.freed[w] or 0) + 1
    if unit.freed[w] == sc.unmet[w] then unit.unlocked[#unit.unlocked + 1] = w end
  end
end

-- The most expensive ready step that conflicts with no running one, taken for `unit`; with
-- `small_only`, only if that step is small (M.small), else nothing is taken.
local function take(load, unit, small_only)
  local sc = sched_of(load)
  local skipped, best, best_step = {}, nil, nil
  while not sc.heap:empty() do
    local i = sc.heap:pop()
    local step = step_at(load, i)
    if not conflicts(load, step, unit) then
      if small_only and not M.small(step, load) then skipped[#skipped + 1] = i else best, best_step = i, step end
      break
    end
    skipped[#skipped + 1] = i
  end
  for _, i in ipairs(skipped) do sc.heap:push(i) end
  if best then
    taken(load, sc, best, best_step, unit)
    return best_step, best
  end
end

function M.next_step(load, unit)
  if crowded(load) or over_limit(load) then return nil end
  return take(load, unit or {}, false)
end

-- Small steps (an index, a key or a foreign key of a table of a few hundred kB) cost less than
-- the transaction around them: a job that takes one adds the next ready small steps to it, up
-- to BATCH_STEPS, and runs them in one target transaction with their records (tide.full). The
-- heap holds the most expensive first, so a batch never holds back a larger step.
M.SMALL_COST, M.BATCH_STEPS = 1024 * 1024, 32

-- Small: every table the step touches (its own, the ones whose data it needs) is a copied
-- table of known size, together under SMALL_COST; or it touches no table at all (a grant on a
-- function, say). A step on a relation the load does not size (a materialized view, a
-- partitioned table whose constraint checks every partition) is not small, nor is a
-- materialized view's refresh (its query's cost, which no size here tells).
function M.small(step, load)
  if step.critical or step.kind == "matview_refresh" then return false end
  local by = load and load.tables_by_key or {}
  local keys = {}
  if step.table then keys[1] = step.table end
  for _, key in ipairs(step.needs_data or {}) do keys[#keys + 1] = key end
  local bytes, seen = 0, {}
  for _, key in ipairs(keys) do
    local t = by[key]
    if not t then return false end
    if not seen[key] then seen[key] = true; bytes = bytes + (t.bytes or 0) end
  end
  return bytes <= M.SMALL_COST
end

-- One more small step for the unit's batch, or nil: first one that only the batch's own
-- steps held back (the same table's chain), else the next small ready one.
function M.next_small_step(load, unit)
  local sc = sched_of(load)
  local q = unit.unlocked or {}
  while #q > 0 do
    local i = table.remove(q, 1)
    if not sc.taken[i] then
      local step = step_at(load, i)
      if M.small(step, load) and not conflicts(load, step, unit) then
        taken(load, sc, i, step, unit)
        return step
      end
    end
  end
  return (take(load, unit, true))
end

function M.all_steps_taken(load)
  return sched_of(load).untaken == 0
end

-- The keys of the steps not taken yet, up to `limit`.
function M.untaken_keys(load, limit)
  local sc, out = sched_of(load), {}
  for i = 1, #load.steps do
    if not sc.taken[i] then out[#out + 1] = field(load.steps, i, "key") end
    if #out >= limit then break end
  end
  return out
end

-- A job with no step to run analyzes a table whose data is in and whose post-data steps are
-- all done (ANALYZE waits for index builds on its table, and gathers statistics for
-- expression indexes, so it comes after them). The load's end analyzes the rest.
function M.next_analyze(load)
  if load.task.full.analyze == false or not load.pending_steps then return nil end
  local sc = sched_of(load)
  while sc.analyze[sc.analyze_i] do
    local tbl = sc.analyze[sc.analyze_i]
    sc.analyze_i = sc.analyze_i + 1
    if not load.analyzed[tbl.key] then
      load.analyzed[tbl.key] = true
      return tbl
    end
  end
end

return M
