-- tide.precheck.report — the precheck report as text for a person (grouped by grade, each
-- finding with its object and fix) or as one JSON document.
local M = {}

local HEADINGS = { fail = "FAIL", warn = "WARN", info = "INFO" }
local MAX_FINDINGS = 20   -- per check and grade in the text; --json has them all

local function version_text(v)
  if not v then return "?" end
  return require("tide.connect").version_string(v)
end

local function indent(text, prefix)
  return (text:gsub("\n", "\n" .. prefix))
end

local function finding_lines(add, f)
  local head = f.object and (f.object .. ": ") or ""
  add("    - " .. indent(head .. f.message, "      "))
  if f.fix and f.fix ~= "" then add("      fix: " .. indent(f.fix, "           ")) end
end

-- M.text(report [, opts]) → text. opts.short: one line when nothing fails or warns (the gate
-- before a run), no INFO section unless something fails.
function M.text(report, opts)
  opts = opts or {}
  local out = {}
  local function add(s) out[#out + 1] = s end
  local counts = report.counts
  local quiet = opts.short and counts.fail == 0 and counts.warn == 0
  if not quiet then
    add("Prechecks for task " .. report.task)
    add("  source: " .. (report.source or "?") .. " (PostgreSQL " .. version_text(report.versions.source) .. ")")
    add("  target: " .. (report.target or "?") .. " (PostgreSQL " .. version_text(report.versions.target) .. ")")
    if report.resumed then
      add("  resumed: objects an earlier run of this task created on the target are not conflicts")
    end
    for _, grade in ipairs({ "fail", "warn", "info" }) do
      if not (grade == "info" and opts.short and counts.fail == 0) then
        local block = {}
        for _, r in ipairs(report.checks) do
          local list = {}
          for _, f in ipairs(r.findings) do if f.grade == grade then list[#list + 1] = f end end
          if #list > 0 then block[#block + 1] = { result = r, findings = list } end
        end
        if #block > 0 then
          add("")
          add(HEADINGS[grade])
          for _, entry in ipairs(block) do
            local r, list = entry.result, entry.findings
            add(string.format("  [%s] %s (%d)", r.id, r.title, #list))
            for i = 1, math.min(#list, MAX_FINDINGS) do finding_lines(add, list[i]) end
            if #list > MAX_FINDINGS then
              add(string.format("    ... and %d more (pgtide check --json lists them all)", #list - MAX_FINDINGS))
            end
          end
        end
      end
    end
    local ignored = {}
    for _, r in ipairs(report.checks) do
      if r.ignored and #r.ignored > 0 or r.status == "ignored" then ignored[#ignored + 1] = r end
    end
    if #ignored > 0 then
      add("")
      add("IGNORED (by the playbook's precheck.ignore)")
      for _, r in ipairs(ignored) do
        local reasons, seen = {}, {}
        for _, f in ipairs(r.ignored or {}) do
          if not seen[f.ignored] then seen[f.ignored] = true; reasons[#reasons + 1] = f.ignored end
        end
        if #reasons == 0 and r.ignore_reason then reasons[1] = r.ignore_reason end
        add(string.format("  [%s] %s: %d finding(s) ignored: %s", r.id, r.title, #(r.ignored or {}),
          table.concat(reasons, "; ")))
        for i = 1, math.min(#(r.ignored or {}), 5) do
          local f = r.ignored[i]
          add("    - " .. (f.object and (f.object .. ": ") or "") .. (f.message:match("^[^\n]*")))
        end
        if #(r.ignored or {}) > 5 then add(string.format("    ... and %d more", #r.ignored - 5)) end
      end
    end
    local passed, skipped, not_run = {}, {}, {}
    for _, r in ipairs(report.checks) do
      if r.status == "pass" then passed[#passed + 1] = r.id
      elseif r.status == "skipped" then skipped[#skipped + 1] = r.id
      elseif r.status == "not_run" then not_run[#not_run + 1] = r.id end
    end
    add("")
    if #passed > 0 then add("Passed (" .. #passed .. "): " .. table.concat(passed, ", ")) end
    if #skipped > 0 then add("Not applicable to this task (" .. #skipped .. "): " .. table.concat(skipped, ", ")) end
    if #not_run > 0 then add("Not run, no connection (" .. #not_run .. "): " .. table.concat(not_run, ", ")) end
  end
  local timing = string.format("%.2f s", report.seconds or 0)
  if report.plan_seconds then
    timing = timing .. string.format(" (plan %.2f s, checks %.2f s)", report.plan_seconds, report.check_seconds or 0)
  end
  local ran = #report.checks - counts.skipped - counts.not_run
  if counts.fail > 0 then
    add(string.format("Precheck FAILED: %d of %d checks fail, %d warn; %s. Nothing was written.",
      counts.fail, ran, counts.warn, timing))
  elseif counts.warn > 0 then
    add(string.format("Precheck passed with warnings: %d of %d checks warn; %s.", counts.warn, ran, timing))
  else
    add(string.format("Precheck passed: %d checks%s; %s.", ran,
      counts.ignored > 0 and string.format(" (%d ignored)", counts.ignored) or "", timing))
  end
  return table.concat(out, "\n") .. "\n"
end

-- The report as plain data (what --json prints).
function M.data(report)
  local checks = {}
  for i, r in ipairs(report.checks) do
    local findings = {}
    for j, f in ipairs(r.findings or {}) do
      findings[j] = { object = f.object, schema = f.schema, name = f.name, message = f.message,
                      fix = f.fix, grade = f.grade }
    end
    local ignored = {}
    for j, f in ipairs(r.ignored or {}) do
      ignored[j] = { object = f.object, schema = f.schema, name = f.name, message = f.message,
                     fix = f.fix, grade = f.grade, reason = f.ignored }
    end
    checks[i] = { id = r.id, title = r.title, status = r.status, grade = r.grade or r.default_grade,
                  default_grade = r.default_grade, findings = findings, ignored = ignored,
                  ignore_reason = r.ignore_reason, reason = r.reason, error = r.error, seconds = r.seconds }
  end
  return { task = report.task, source = report.source, target = report.target, ok = report.ok,
           status = report.status, resumed = report.resumed, counts = report.counts,
           versions = report.versions, seconds = report.seconds, plan_seconds = report.plan_seconds,
           check_seconds = report.check_seconds, checks = checks }
end

function M.json(report)
  return require("tide.json").encode(M.data(report))
end

return M
