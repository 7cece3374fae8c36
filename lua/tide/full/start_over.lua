-- tide.full.start_over — start_over(task, plan, target, state) → n: the full load starts
-- again from the beginning under a new snapshot (its earlier snapshot died with its slot, or a table was
-- truncated on the source after it and no stream follows to bring it back).
--
-- In this order, each part in target transactions of its own, so that a kill anywhere leaves a
-- state from which the next run starts over again (the copied parts' record, which makes it do
-- so, goes last):
--   1. the foreign keys and triggers that earlier post-data steps built are dropped and those
--      steps forgotten (a foreign key would refuse rows copied before the ones they reference,
--      a trigger would change them, and with them gone the tables can be emptied a chunk at a
--      time); event triggers an earlier load enabled are disabled first;
--   2. every table of the plan is emptied, TABLES_PER_TRANSACTION to a TRUNCATE (one TRUNCATE
--      of 2,000 tables takes more locks than a default server has room for: max_locks_per_transaction
--      64 times max_connections 100);
--   3. the copied parts are forgotten.
-- Part 1 records that the load is starting over (a step row, tide.full.START_OVER_MARK) and part
-- 3 forgets it with the parts: a run that finds it (a kill in between, on the path without a
-- stream, where no new slot makes the next run start over) starts over first
-- (tide.cmd.run).
local failure = require "tide.failure"
local parts_mod = require "tide.full.parts"

local TABLES_PER_TRANSACTION = 200

-- statements in one target transaction (lock_timeout off: pgtide's own sessions of an earlier
-- run may still be ending), then more(), or a failure naming `what`
local function in_transaction(target, list, what, more)
  local sql = { "BEGIN", "SET LOCAL lock_timeout = 0" }
  for _, statement in ipairs(list) do sql[#sql + 1] = statement end
  local ok, err = target:exec(table.concat(sql, ";\n"))
  if ok and more then ok, err = more() end
  if ok then ok, err = target:exec("COMMIT") end
  if ok then return end
  target:exec("ROLLBACK")
  local hint = ""
  if type(err) == "table" and err.sqlstate == "0A000" then
    hint = "\n  hint: a foreign key of a table outside the task that references one of them stops the TRUNCATE: " ..
      "drop it on the target, or empty the tables yourself"
  end
  failure.raise("failed", what .. " failed: " .. tostring(err) .. hint, { err = err })
end

-- The tables (quoted names) in TRUNCATE lists of about TABLES_PER_TRANSACTION: tables joined
-- by a foreign key the target still has (not pgtide's: those went in 1; a target prepared by
-- hand may have its own) go in the same list, which TRUNCATE needs.
local function chunks(target, list)
  local up = {}
  local function root(i) while up[i] and up[i] ~= i do i = up[i] end return i end
  if #list > 1 then
    local rows = assert(target:query([[
SELECT a.i AS a, b.i AS b
FROM unnest($1::text[]) WITH ORDINALITY AS a(name, i)
JOIN pg_catalog.pg_constraint f ON f.contype = 'f' AND f.conrelid = pg_catalog.to_regclass(a.name)
JOIN unnest($1::text[]) WITH ORDINALITY AS b(name, i) ON f.confrelid = pg_catalog.to_regclass(b.name)]], list))
    for _, r in ipairs(rows) do
      local x, y = root(r.a), root(r.b)
      if x ~= y then up[math.max(x, y)] = math.min(x, y) end
    end
  end
  local groups, order = {}, {}
  for i, name in ipairs(list) do
    local r = root(i)
    if not groups[r] then groups[r] = {}; order[#order + 1] = r end
    table.insert(groups[r], name)
  end
  local out, current = {}, {}
  for _, r in ipairs(order) do
    if #current > 0 and #current + #groups[r] > TABLES_PER_TRANSACTION then out[#out + 1] = current; current = {} end
    for _, name in ipairs(groups[r]) do current[#current + 1] = name end
  end
  if #current > 0 then out[#out + 1] = current end
  return out
end

local function start_over(task, plan, target, state)
  local done = state:steps_done()
  local sql, dropped, steps = {}, {}, {}
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
  -- Event triggers enabled at the end are disabled first, so the drops that follow do not
  -- fire them. (By kind: the plan's steps do not keep the kinds' `last`.)
  local post = task.phases.schema and plan.post_data or {}
  for pass = 1, 2 do
    for _, step in ipairs(post) do
      if step.undo and done[step.key] and (pass == 1) == (step.kind == "event_trigger_enable") then
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
  -- 1. (The steps are forgotten in the same transaction as their undoing.)
  local mark = require("tide.full").START_OVER_MARK
  in_transaction(target, sql, "undoing the interrupted full load's foreign keys and triggers", function()
    local ok, err = target:query("DELETE FROM " .. state:tbl("steps") .. " WHERE task = $1 AND step = ANY ($2)",
                                 task.name, steps)
    if ok then
      ok, err = target:query("INSERT INTO " .. state:tbl("steps") .. " (task, step) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                             task.name, mark)
    end
    return ok, err
  end)
  -- 2.
  local list, filtered = {}, {}
  for _, tbl in ipairs(plan.tables) do
    if tbl.target_filter then filtered[#filtered + 1] = select(2, parts_mod.target_rows(target, tbl))
    else list[#list + 1] = parts_mod.target_relation(target, tbl) end
  end
  for _, chunk in ipairs(chunks(target, list)) do
    in_transaction(target, { "TRUNCATE " .. table.concat(chunk, ", ") }, "emptying the target tables for a new full load")
  end
  if #filtered > 0 then in_transaction(target, filtered, "emptying the target tables for a new full load") end
  -- 3.
  in_transaction(target, {}, "forgetting the interrupted full load", function()
    local ok, err = target:query("DELETE FROM " .. state:tbl("copy_parts") .. " WHERE task = $1", task.name)
    if ok then
      ok, err = target:query("DELETE FROM " .. state:tbl("steps") .. " WHERE task = $1 AND step = $2", task.name, mark)
    end
    return ok, err
  end)
  return n
end

return start_over
