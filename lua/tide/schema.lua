-- tide.schema — carrying out a plan's DDL on the target.
--
--   schema.apply_pre(task, plan, target)        pre-data, in one transaction when it fits
--   schema.apply_post(task, plan, target [, opts])  post-data, one transaction per step
--   schema.run_step(target, step)               one step (what the full load calls, on its
--                                               own connections, to build in parallel)
--   schema.run(task, plan, target)              pre then post (migrate = { "schema" })
--   schema.migrate(task, source, target [, opts])  plan, then run, with progress lines:
--                                               what `pgtide run` calls for the schema phase
--
-- A plan with errors or conflicts (see tide.plan.existing) is refused before anything is
-- written. A failing statement stops the phase with a message naming the object, the
-- statement and the server's words.
local failure = require "tide.failure"
local secret = require "tide.secret"

local M = {}

-- Why a plan cannot run, as one message; nil when it can.
function M.refusal(plan)
  if #plan.errors == 0 and #plan.conflicts == 0 then return nil end
  local lines = { "the schema plan cannot run; nothing was written to the target:" }
  for _, c in ipairs(plan.conflicts) do lines[#lines + 1] = "  - " .. c.message end
  for _, e in ipairs(plan.errors) do lines[#lines + 1] = "  - " .. e.message end
  lines[#lines + 1] = "Run 'pgtide plan FILE' to see the whole plan."
  return table.concat(lines, "\n")
end

local function describe(plan, step)
  local obj = plan.by_key[step.object]
  if obj and obj.def then return require("tide.plan.objects").describe(obj) end
  return step.object and require("tide.kinds").describe_key(step.object) or step.key
end

local function step_failure(plan, step, err)
  -- step.sql shows secrets masked (tide.secret); the server's words may quote them.
  local msg = string.format("creating %s failed (step %s): %s\n  statement: %s",
    describe(plan, step), step.key, err and (err.message or tostring(err)) or "unknown error",
    #step.sql > 2000 and (step.sql:sub(1, 2000) .. " ...") or step.sql)
  if type(err) == "table" then
    if err.detail then msg = msg .. "\n  detail: " .. err.detail end
    if err.hint then msg = msg .. "\n  hint: " .. err.hint end
    if err.sqlstate then msg = msg .. "\n  sqlstate: " .. err.sqlstate end
  end
  return secret.hide(step, msg)
end

-- Session settings for DDL: function bodies are not checked when created (they may mention
-- tables created later, as in pg_dump's output), notices stay quiet.
local SETTINGS = "SET LOCAL check_function_bodies = off; SET LOCAL client_min_messages = warning"

-- Runs one step in its own transaction, in one round trip. Returns true, or nil and the
-- server's error. (When the statement fails the rest of the string is skipped and the
-- transaction is left aborted, hence the ROLLBACK.) `record_sql`, when given, runs in the same
-- transaction: the step and the record that it is done commit together.
function M.run_step(target, step, record_sql)
  return M.run_steps(target, { step }, { record_sql })
end

-- Several steps in one transaction, each followed by its record (records[i]), in one round
-- trip. Returns true, or nil and the server's error (the transaction rolled back).
function M.run_steps(target, steps, records)
  local sql = { "BEGIN; ", SETTINGS, ";\n" }
  for i, step in ipairs(steps) do
    sql[#sql + 1] = secret.sql(step) .. ";\n"
    if records[i] then sql[#sql + 1] = records[i] .. ";\n" end
  end
  sql[#sql + 1] = "COMMIT"
  local ok, err = target:exec(table.concat(sql))
  if not ok then
    target:exec("ROLLBACK")
    return nil, err
  end
  return true
end

-- How many pre-data statements fit in one transaction. Each CREATE TABLE holds a few locks
-- until commit, and the server's lock table has room for max_locks_per_transaction *
-- (max_connections + max_prepared_transactions) locks, shared by every session: an eighth of
-- it is ours to use.
local function statements_per_transaction(target)
  local rows = target:query([[
SELECT current_setting('max_locks_per_transaction')::int
       * (current_setting('max_connections')::int + current_setting('max_prepared_transactions')::int) AS locks]])
  local locks = rows and rows[1] and rows[1].locks or 6400
  return math.max(100, locks // 8)
end

-- Pre-data: drops (schema.existing = "drop"), then every creation. In one transaction when it
-- fits (see above), so a failure leaves the target as it was; a very large schema is created
-- in several transactions, and a failure says what was committed: running the task again
-- continues from there.
-- opts.record(keys, final) → SQL run in each transaction just before its COMMIT, given the
-- keys of the steps it ran (the task's record of how far pre-data got: tide.cmd.run, so that a
-- kill between the work and the record cannot happen); opts.done = { [key] = true } leaves
-- out the steps an interrupted run committed, as recorded (by key: a plan made again on a
-- target that holds some of the objects may list other statements).
function M.apply_pre(task, plan, target, opts)
  local _ = task
  opts = opts or {}
  local done = opts.done or {}
  local resuming = next(done) ~= nil
  local refusal = not resuming and M.refusal(plan)
  if refusal then failure.raise("precheck", refusal) end
  local batch = statements_per_transaction(target)
  local function begin()
    local ok, err = target:exec("BEGIN; " .. SETTINGS)
    if not ok then failure.raise("failed", "cannot start a pre-data transaction on the target: " .. tostring(err), { err = err }) end
  end
  local keys = {}
  local function commit(final)
    local ok, err = target:exec((opts.record and (opts.record(keys, final) .. ";\n") or "") .. "COMMIT")
    keys = {}
    if not ok then
      target:exec("ROLLBACK")
      failure.raise("failed", "committing pre-data failed: " .. tostring(err), { err = err })
    end
  end
  begin()
  local committed, ran = 0, 0
  for _, step in ipairs(plan.pre_data) do
    if done[step.key] then goto continue end
    local ok, err = target:exec(secret.sql(step))
    if not ok then
      target:exec("ROLLBACK")
      local outcome = committed == 0
        and "\n  The pre-data phase was rolled back: nothing was created on the target."
        or string.format("\n  The first %d of %d pre-data statements were committed (the schema is too large for one transaction); fix the cause and run the task again: it goes on from there.",
          committed, #plan.pre_data)
      failure.raise("failed", step_failure(plan, step, err) .. outcome, { step = step, err = err })
    end
    ran = ran + 1
    keys[#keys + 1] = step.key
    if ran % batch == 0 then
      commit(false)
      committed = ran
      begin()
    end
    ::continue::
  end
  commit(true)
  return ran
end

-- Post-data, step by step in plan order. opts.skip(step) → true to leave a step out (done in
-- an earlier run, say); opts.record_sql(step) → SQL committed with the step (its "done" mark);
-- opts.on_step(step, seconds) after each step. opts.resuming: a run that goes on where an
-- earlier one stopped, whose objects on the target are the plan's conflicts (its tables, the
-- steps it recorded as done): they are not in the way.
function M.apply_post(task, plan, target, opts)
  local _ = task
  opts = opts or {}
  local refusal = not opts.resuming and M.refusal(plan)
  if refusal then failure.raise("precheck", refusal) end
  local core = require "tide.core"
  local count = 0
  for _, step in ipairs(plan.post_data) do
    if not (opts.skip and opts.skip(step)) then
      local started = core.monotonic()
      local ok, err = M.run_step(target, step, opts.record_sql and opts.record_sql(step))
      if not ok then failure.raise("failed", step_failure(plan, step, err), { step = step, err = err }) end
      count = count + 1
      if opts.on_step then opts.on_step(step, core.monotonic() - started) end
    end
  end
  return count
end

function M.run(task, plan, target)
  local pre = M.apply_pre(task, plan, target)
  local post = M.apply_post(task, plan, target)
  return pre, post
end

-- The schema phase of `pgtide run`: builds the plan (unless opts.plan is given), prints its
-- warnings, runs pre-data then post-data, and prints one line per phase. Returns the plan.
function M.migrate(task, source, target, opts)
  opts = opts or {}
  local core = require "tide.core"
  local out = opts.output or io.stdout
  local plan = opts.plan or require("tide.plan").build(task, source, target)
  for _, w in ipairs(plan.warnings) do out:write("schema: warning: ", w.message, "\n") end
  local started = core.monotonic()
  local pre = M.apply_pre(task, plan, target)
  out:write(string.format("schema: pre-data done, %d statements (%.1f s)\n", pre, core.monotonic() - started))
  started = core.monotonic()
  local post = M.apply_post(task, plan, target)
  out:write(string.format("schema: post-data done, %d statements (%.1f s)\n", post, core.monotonic() - started))
  out:flush()
  return plan
end

return M
