-- tide.full.start_over — start_over(task, plan, target, state) → n: the full load starts
-- again from the beginning under a new snapshot (its earlier snapshot died with its slot, or a table was
-- truncated on the source after it and no stream follows to bring it back). In one target
-- transaction, so a kill cannot leave half of it: the foreign keys and triggers that earlier
-- post-data steps built are dropped and those steps forgotten (a foreign key would refuse rows
-- copied before the ones they reference, a trigger would change them), the copied parts are
-- forgotten, and every table of the plan is emptied (one TRUNCATE: foreign keys among them
-- allow it).
local failure = require "tide.failure"
local parts_mod = require "tide.full.parts"

local function start_over(task, plan, target, state)
  local done = state:steps_done()
  local sql, dropped, steps = { "BEGIN", "SET LOCAL lock_timeout = 0" }, {}, {}
  local n = 0
  -- Event triggers an earlier load enabled (its recorded steps say which: a plan made while
  -- they are on the target may not list their steps) are disabled first, so the drops that
  -- follow do not fire them, and their enabling is forgotten: done again at the new load's end.
  local present = {}
  for _, r in ipairs(assert(target:query("SELECT pg_catalog.quote_ident(evtname) AS ident FROM pg_catalog.pg_event_trigger"))) do
    present[r.ident] = true
  end
  for key in pairs(done) do
    local ident = key:match("^event_trigger_enable:(.+)/enabled$")
    if ident then
      ident = ident:gsub("^event_trigger:", "")
      if present[ident] then sql[#sql + 1] = "ALTER EVENT TRIGGER " .. ident .. " DISABLE" end
      steps[#steps + 1] = key
      n = n + 1   -- the caller plans again, so the new load enables it at its end
    end
  end
  -- Event triggers enabled at the end (`last` steps) are disabled first, so the drops that
  -- follow do not fire them.
  local post = task.phases.schema and plan.post_data or {}
  for pass = 1, 2 do
    for _, step in ipairs(post) do
      if step.undo and done[step.key] and (pass == 1) == (step.last ~= nil and step.last ~= false) then
        sql[#sql + 1] = step.undo
        dropped[step.key:match("^[^:]+:(.*)$")] = true
        n = n + 1
      end
    end
  end
  -- Every done step of a dropped object is done again: its enabling (a trigger's ENABLE
  -- REPLICA / DISABLE), its comment. Step keys are kind:object[/suffix]; by key, because the
  -- plan made with the object on the target may not list them (a comment already there).
  for key in pairs(done) do
    local ident = key:match("^[^:]+:(.*)$")
    if ident and (dropped[ident] or dropped[ident:match("^(.-)/") or false]) then steps[#steps + 1] = key end
  end
  local list = {}
  for _, tbl in ipairs(plan.tables) do
    if tbl.target_filter then sql[#sql + 1] = select(2, parts_mod.target_rows(target, tbl))
    else list[#list + 1] = parts_mod.target_relation(target, tbl) end
  end
  if #list > 0 then sql[#sql + 1] = "TRUNCATE " .. table.concat(list, ", ") end
  local ok, err = target:exec(table.concat(sql, ";\n"))
  if not ok then
    target:exec("ROLLBACK")
    failure.raise("failed", "emptying the target tables for a new full load failed: " .. tostring(err) ..
      "\n  hint: a foreign key of a table outside the task that references one of them stops the TRUNCATE: " ..
      "drop it on the target, or empty the tables yourself", { err = err })
  end
  ok, err = target:query("DELETE FROM " .. state:tbl("steps") .. " WHERE task = $1 AND step = ANY ($2)",
                               task.name, steps)
  if ok then ok, err = target:query("DELETE FROM " .. state:tbl("copy_parts") .. " WHERE task = $1", task.name) end
  if not ok then
    target:exec("ROLLBACK")
    failure.raise("failed", "forgetting the interrupted full load failed: " .. tostring(err), { err = err })
  end
  local committed, cerr = target:exec("COMMIT")
  if not committed then
    failure.raise("failed", "emptying the target tables for a new full load failed: " .. tostring(cerr), { err = cerr })
  end
  return n
end

return start_over
