-- tide.precheck — the checks that run before a migration writes anything, and the policy that
-- grades them. `pgtide check FILE` runs them alone (M.command); `pgtide run` runs them first
-- and stops before writing when one fails (M.gate).
--
-- A check is data: { id =, title =, grade = "fail"|"warn"|"info", applies = fn(ctx) → bool,
-- run = fn(ctx) → findings }, a finding { object =, message =, fix =, grade = (optional, to
-- report one finding lower or higher than the check's default), schema =, name = (the
-- source names, for the policy's object patterns) }. The built-ins live in
-- tide/precheck/*.lua by concern; the playbook's `precheck` table (tide.precheck.policy)
-- regrades, ignores, scopes and adds checks. Checks run as coroutines at the same time; they
-- read the plan and ask the servers one statement per concern (tide.precheck.context).
local tide = require "tide.core"
local failure = require "tide.failure"
local context = require "tide.precheck.context"
local policy_module = require "tide.precheck.policy"
local report_module = require "tide.precheck.report"

local M = {}

M.MODULES = { "tide.precheck.server", "tide.precheck.privileges", "tide.precheck.superuser",
              "tide.precheck.objects",
              "tide.precheck.tables", "tide.precheck.replication", "tide.precheck.info",
              "tide.precheck.functions", "tide.precheck.seclabels" }

-- The built-in checks, in report order.
M.checks = {}
for _, name in ipairs(M.MODULES) do
  for _, check in ipairs(require(name).checks) do
    local problem = policy_module.validate_check(check, name)
    assert(not problem, problem)
    M.checks[#M.checks + 1] = check
  end
end

-- M.policy(p1, p2, ...) → one policy table, later ones winning (see tide.precheck.policy):
--   precheck = require("tide.precheck").policy(require "policies.strict", { ignore = {...} })
M.policy = policy_module.merge

-- Compile the task's policy: a playbook error (exit status 3) when it is wrong.
function M.compile_policy(task)
  return policy_module.compile(task.precheck, M.checks, task.locate)
end

local function grade_rank(g) return policy_module.GRADES[g] or 0 end

-- Runs one check; returns its result record (without the policy applied).
local function run_check(check, ctx)
  require("tide.wait").breathe(true)   -- between checks, the task's control socket answers
  local started = tide.monotonic()
  local result = { id = check.id, title = check.title or check.id, default_grade = check.grade or "fail",
                   findings = {} }
  local ok, applies = true, true
  if check.applies then ok, applies = pcall(check.applies, ctx) end
  if ok and not applies then
    result.status = "skipped"
  else
    local run_ok, findings
    if ok then run_ok, findings = pcall(check.run, ctx) else run_ok, findings = false, applies end
    if not run_ok then
      result.error = tostring(findings)
      result.findings = { { message = "the check could not run: " .. tostring(findings),
                            fix = "fix the cause, or ignore the check with a reason (precheck.ignore)" } }
    elseif type(findings) == "table" then
      for _, f in ipairs(findings) do
        if type(f) == "string" then f = { message = f } end
        if type(f) == "table" and f.message then result.findings[#result.findings + 1] = f end
      end
    elseif findings ~= nil then
      result.error = "returned a " .. type(findings) .. " instead of a list of findings"
      result.findings = { { message = "the check " .. result.error } }
    end
  end
  result.seconds = tide.monotonic() - started
  return result
end

-- The policy's say on one result: grades, scope, ignores; sets result.status.
local function apply_policy(result, policy)
  if result.status == "skipped" or result.status == "not_run" then return result end
  local id = result.id
  result.grade = policy.grade(id, result.default_grade)
  local kept, ignored = {}, {}
  for _, f in ipairs(result.findings) do
    if result.error or policy.in_scope(id, f) then
      f.grade = policy.regrade[id] or f.grade or result.default_grade
      if not policy_module.GRADES[f.grade] then f.grade = result.default_grade end
      local reason = policy.ignored(id) or policy.ignore_finding(id, f)
      if reason then
        f.ignored = reason
        ignored[#ignored + 1] = f
      else
        kept[#kept + 1] = f
      end
    end
  end
  result.findings, result.ignored = kept, ignored
  result.ignore_reason = policy.ignored(id)
  local worst = nil
  for _, f in ipairs(kept) do
    if not worst or grade_rank(f.grade) > grade_rank(worst) then worst = f.grade end
  end
  if worst then
    result.status = worst
  elseif result.ignore_reason then
    result.status = "ignored"
  else
    result.status = "pass"
  end
  return result
end

local function summarise(report)
  local counts = { fail = 0, warn = 0, info = 0, pass = 0, ignored = 0, skipped = 0, not_run = 0 }
  for _, r in ipairs(report.checks) do counts[r.status] = (counts[r.status] or 0) + 1 end
  report.counts = counts
  report.ok = counts.fail == 0
  report.status = counts.fail > 0 and "fail" or counts.warn > 0 and "warn" or "pass"
  return report
end

-- M.run(task, plan, source, target, opts) → report; prints nothing, raises only for a
-- playbook mistake in the policy. opts:
--   resumed = true          an earlier run of this task created objects on the target
--   connection_errors = { source = failure, target = failure }   (then plan may be nil)
--   versions = { source =, target = }    when there is no plan
--   policy                  an already compiled policy
function M.run(task, plan, source, target, opts)
  opts = opts or {}
  local started = tide.monotonic()
  local policy = opts.policy or M.compile_policy(task)
  local versions = opts.versions or {}
  if plan then versions = { source = plan.server_version, target = plan.target_server_version } end
  local ctx = context.new({
    task = task, plan = plan, versions = versions, settings = policy.settings,
    source = source and context.shared(source) or nil, target = target and context.shared(target) or nil,
    resumed = opts.resumed == true, connection_errors = opts.connection_errors or {},
    options = opts,
  })
  local checks = {}
  for _, c in ipairs(M.checks) do checks[#checks + 1] = c end
  for _, c in ipairs(policy.extra) do checks[#checks + 1] = c end

  local usable = plan ~= nil and source ~= nil and target ~= nil
  local handles, results = {}, {}
  for i, check in ipairs(checks) do
    if usable or check.without_connections then
      handles[#handles + 1] = { index = i, handle = tide.spawn(run_check, check, ctx) }
    else
      results[i] = { id = check.id, title = check.title or check.id, default_grade = check.grade or "fail",
                     status = "not_run", reason = "no connection to both servers", findings = {} }
    end
  end
  for _, h in ipairs(handles) do
    local ok, result = pcall(h.handle.wait, h.handle)
    if not ok then
      local check = checks[h.index]
      result = { id = check.id, title = check.title or check.id, default_grade = check.grade or "fail",
                 error = tostring(result), findings = { { message = "the check could not run: " .. tostring(result) } } }
    end
    results[h.index] = result
  end
  local report = { task = task.name, source = task.source_info, target = task.target_info,
                   versions = versions, resumed = ctx.resumed, checks = {} }
  for i = 1, #checks do report.checks[i] = apply_policy(results[i], policy) end
  report.check_seconds = tide.monotonic() - started
  report.plan_seconds = plan and plan.timing and plan.timing.total or nil
  report.seconds = report.check_seconds + (report.plan_seconds or 0)
  return summarise(report)
end

-- The check result of `id` in a report (nil when no such check ran).
function M.result(report, id)
  for _, r in ipairs(report.checks) do if r.id == id then return r end end
end

-- True when the target holds progress of an earlier run of this task (tide.state).
function M.resumed(task, target)
  -- A target the state cannot be read from (no privilege on the state schema, say) holds no
  -- progress this run could use: the privilege checks report it.
  local peek_ok, phase = pcall(require("tide.state").peek, task, target)
  return peek_ok and phase ~= nil and phase ~= "new" and phase ~= "done"
end

-- Connects both sides (a failure is a finding of `connectivity`), builds the plan, runs the
-- checks; closes the connections. Returns the report. Used by `pgtide check` and tests.
function M.evaluate(task, opts)
  opts = opts or {}
  local started = tide.monotonic()
  local policy = M.compile_policy(task)
  local connect = require "tide.connect"
  local handles = { tide.spawn(connect.open, task, "source"), tide.spawn(connect.open, task, "target") }
  local results = require("tide.wait").all(handles)
  local conns, errors = {}, {}
  for i, side in ipairs({ "source", "target" }) do
    local r = results[i]
    if r.ok then
      conns[side] = r.values[1]
    elseif failure.is_failure(r.err) and r.err.kind == "connection" then
      errors[side] = r.err
    else
      for _, c in pairs(conns) do c:close() end
      error(r.err, 0)
    end
  end
  local plan, report
  local ok, err = pcall(function()
    local resumed = opts.resumed
    if next(errors) == nil then
      plan = require("tide.plan").build(task, conns.source, conns.target)
      if resumed == nil then resumed = M.resumed(task, conns.target) end
    end
    report = M.run(task, plan, conns.source, conns.target, {
      policy = policy, resumed = resumed, connection_errors = errors,
      versions = { source = conns.source and conns.source:server_version(),
                   target = conns.target and conns.target:server_version() } })
  end)
  for _, c in pairs(conns) do c:close() end
  if not ok then error(err, 0) end
  report.seconds = tide.monotonic() - started
  return report, plan
end

-- M.gate(task, plan, source, target, opts) → report, for `pgtide run`: the same checks;
-- prints the report (one line when everything passes), and raises failure "precheck"
-- (exit status 5) when a check fails — before anything is written. opts.resumed: see M.run;
-- opts.progress: the run's tide.progress (its mode decides text, JSON or nothing).
function M.gate(task, plan, source, target, opts)
  opts = opts or {}
  local report = M.run(task, plan, source, target, opts)
  local progress = opts.progress
  local mode = progress and progress.mode or (opts.json and "json" or "text")
  -- The run's progress prints the findings in JSON mode and keeps them in its timeline.
  if progress and progress.emit then progress:emit("precheck", report_module.data(report)) end
  if mode == "json" then
    if not progress then io.write(report_module.json(report), "\n") end
  elseif mode ~= "none" or not report.ok then
    local text = report_module.text(report, { short = true })
    if progress and progress.clear then progress:clear() end
    local out = progress and progress.out or io.stdout
    out:write(text)
    out:flush()
  end
  if not report.ok then
    local ids = {}
    for _, r in ipairs(report.checks) do if r.status == "fail" then ids[#ids + 1] = r.id end end
    failure.raise("precheck", string.format("%d precheck(s) failed (%s); nothing was written to the target",
      #ids, table.concat(ids, ", ")), { report = report })
  end
  return report
end

return M
