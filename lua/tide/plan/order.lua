-- tide.plan.order — the steps of the selected objects, in an order that works.
--
-- Each selected object writes its steps (tide.kinds create()). A step waits for the step
-- before it of the same object and phase, and an object's first step in a phase waits for
-- everything of the same phase that the object depends on (pg_depend). The steps of each
-- phase are then sorted topologically; among steps free at the same time, the lower rank
-- goes first (schemas, types, functions, tables, views; indexes before constraints before
-- foreign keys), then catalog order, so the plan is the same on every run.
--
-- Dependency cycles that pg_dump has to break mostly cannot happen here: foreign keys, the
-- usual cycle, are post-data steps. A pre-data object that needs a post-data one (a view
-- grouping by a primary key) is postponed to post-data. A remaining cycle is reported as a
-- plan error naming its members.
local secret = require "tide.secret"
local kinds = require "tide.kinds"
local heap_mod = require "tide.heap"
local objects = require "tide.plan.objects"
local breathe = require("tide.wait").breathe
local new_table = require("tide.core").new_table

local M = {}

local STEP_RANK = {
  index = 10, statistics = 15, statistics_target = 16, constraint = 20, index_attach = 25,
  fkey = 40, trigger = 50, trigger_enable = 51, rule = 60, rule_enable = 61, policy = 70,
  row_security = 75, replica_identity = 80, cluster = 85, matview_refresh = 90,
  table_alter = 80, sequence_owned_by = 82,
}
M.STEP_RANK = STEP_RANK

local TRAILING = { sequence_owned_by = true, comment = true, owner = true, grant = true, revoke = true,
  replica_identity = true, cluster = true, row_security = true, trigger_enable = true, rule_enable = true }

-- Fields of a kind's step that are not copied as they are (the step's key is made of the
-- suffix; its `after` becomes after_objects; trailing is kept when true only).
local NOT_COPIED = { after = true, after_objects = true, suffix = true, trailing = true, waits = true, seq = true }

-- A working step keeps its fields as the items of a list, read and written by name through one
-- metatable (tide.core.slots_meta): 16 bytes a field, no power of two. The eight every step
-- has come first; a step is made as long as the last field it has when made (a foreign key's
-- `data`: 10 items, 216 bytes, where a table of nine fields took sixteen slots, 440 bytes).
-- After it is made only these fields change (waits, phase, rank). A field not named here is
-- the step's own; pairs() over a step sees its fields by name.
local STEP_FIELDS = { "object", "kind", "sql", "phase", "key", "rank", "seq", "waits",
                      "trailing", "data", "after_objects", "locks", "attaches", "last", "undo", "needs_data" }
local STEP_SLOT = {}
for i, name in ipairs(STEP_FIELDS) do STEP_SLOT[name] = i end
local STEP_META = require("tide.core").slots_meta(STEP_FIELDS)
STEP_META.__pairs = require("tide.fields").pairs_by(STEP_FIELDS)
M.STEP_META = STEP_META

-- An object's steps (obj.steps) are its one step, as most objects have one, or a list of them
-- (a list for each was 72 bytes more at each of 475,000 objects at 100,000 tables, alive from
-- the DDL to the writing of the steps). `for i, step in each_step(obj)` goes through either.
local NO_STEPS = {}
local function step_after(steps, i)
  i = i + 1
  local step
  if getmetatable(steps) == STEP_META then step = i == 1 and steps or nil else step = steps[i] end
  if step ~= nil then return i, step end
end
local function each_step(obj) return step_after, obj.steps or NO_STEPS, 0 end
M.each_step = each_step

local function step_rank(step, obj)
  return STEP_RANK[step.kind] or kinds.step_rank[step.kind] or obj.def.rank or 500
end

-- Decide each object's phase: its kind's, or post-data when it needs a post-data object.
local function assign_phases(model, on_error)
  for _, obj in ipairs(model.objects) do
    breathe()
    if obj.phase ~= obj.def.phase then obj.phase = obj.def.phase end   -- (most have it by their kind)
  end
  local changed = true
  while changed do
    changed = false
    for _, obj in ipairs(model.objects) do
      breathe()
      if obj.selected and obj.phase == "pre" and obj.inline_of == nil then
        for ref in pairs(obj.deps or {}) do
          if ref.selected and ref.phase == "post" then
            if obj.kind == "view" or obj.kind == "matview" or obj.kind == "function"
              or obj.kind == "procedure" or obj.kind == "aggregate" then
              obj.phase = "post"
              obj.postponed_by = ref
              changed = true
              break
            else
              on_error(obj, string.format("%s needs %s, which is only created after the data; pgtide cannot order this",
                objects.describe(obj), objects.describe(ref)))
            end
          end
        end
      end
    end
  end
end

-- Tarjan's strongly connected components over the selected pre-data objects.
local function cycles(model)
  local index, low, on_stack, stack, found, counter = {}, {}, {}, {}, {}, 0
  local function edges(obj)
    local list = {}
    for ref in pairs(obj.deps or {}) do
      if ref.selected and ref.phase == "pre" and ref.inline_of == nil then list[#list + 1] = ref end
    end
    table.sort(list, function(a, b) return a.key < b.key end)
    return list
  end
  local function visit(v)
    breathe()
    counter = counter + 1
    index[v], low[v] = counter, counter
    stack[#stack + 1], on_stack[v] = v, true
    for _, w in ipairs(edges(v)) do
      if not index[w] then
        visit(w)
        if low[w] < low[v] then low[v] = low[w] end
      elseif on_stack[w] and index[w] < low[v] then
        low[v] = index[w]
      end
    end
    if low[v] == index[v] then
      local component = {}
      repeat
        local w = table.remove(stack)
        on_stack[w] = nil
        component[#component + 1] = w
      until w == v
      if #component > 1 then found[#found + 1] = component end
    end
  end
  for _, obj in ipairs(model.objects) do
    breathe()
    if obj.selected and obj.phase == "pre" and obj.inline_of == nil and not index[obj] then visit(obj) end
  end
  return found
end

-- The cycle pg_dump also meets: a table whose CHECK constraint or column default calls a
-- function that takes the table's row type. Those pieces are taken out of CREATE TABLE and
-- added right after the function exists (tide.ddl.table split_parts).
local function break_cycles(model)
  for _, component in ipairs(cycles(model)) do
    local members = {}
    for _, obj in ipairs(component) do members[obj] = true end
    for _, obj in ipairs(component) do
      if obj.kind == "table" then
        for ref, e in pairs(obj.deps or {}) do
          local splittable = members[ref] and not e.whole and #e.vias > 0
          for _, via in ipairs(e.vias) do
            if via.column then splittable = false end
            if via.default then
              for _, c in ipairs(obj.columns) do
                if c.num == via.default and c.generated == "s" then splittable = false end
              end
            end
          end
          if splittable then
            for _, via in ipairs(e.vias) do
              if via.default then
                for _, c in ipairs(obj.columns) do if c.num == via.default then c.default_split = true end end
              elseif via.check then
                for i, con in ipairs(obj.checks or {}) do
                  if con == via.check then
                    table.remove(obj.checks, i)
                    obj.split_checks = obj.split_checks or {}
                    table.insert(obj.split_checks, con)
                    break
                  end
                end
              end
            end
            obj.split_after = obj.split_after or {}
            table.insert(obj.split_after, ref)
            obj.deps[ref] = nil
          end
        end
      end
    end
  end
end

-- M.build_steps(model, ctx, on_error) → list of every step, objects' steps in obj.steps.
function M.build_steps(model, ctx, on_error)
  assign_phases(model, on_error)
  break_cycles(model)
  -- Kinds that change their dependencies before the steps are written (def.relink: a base
  -- type and its I/O functions, which depend on each other).
  for _, obj in ipairs(model.objects) do
    if obj.selected and obj.inline_of == nil and obj.def.relink then obj.def.relink(ctx, obj) end
  end
  local all = {}
  for _, obj in ipairs(model.objects) do
    breathe()
    if obj.selected and obj.inline_of == nil and not obj.keep_existing then
      local ok, steps = pcall(obj.def.create, ctx, obj)
      if not ok then
        on_error(obj, "could not write the DDL of " .. objects.describe(obj) .. ": " .. tostring(steps))
        steps = {}
      end
      for _, step in ipairs(steps) do M.add_step(obj, step, all) end
    end
  end
  return all
end

-- Adds one step to an object (also used for comments, owners and grants); returns it (a copy
-- of `given`).
function M.add_step(obj, given, all)
  -- The step holds the eight fields every step has (STEP_FIELDS: `waits` is only room until
  -- the order sets it) and what few steps have, only when they have it: the objects a step
  -- waits for (kinds name them in `after`; the plan's `after` is keys), `trailing` when true,
  -- and the kind's own fields (data, locks, attaches, last, undo).
  local kind = given.kind or obj.kind
  local trailing = given.trailing
  if trailing == nil then trailing = TRAILING[kind] end
  local width = 8
  for field in pairs(given) do
    local i = STEP_SLOT[field]
    if i and i > width and not NOT_COPIED[field] then width = i end
  end
  if given.after ~= nil then width = math.max(width, STEP_SLOT.after_objects) end
  if trailing then width = math.max(width, STEP_SLOT.trailing) end
  local step = setmetatable(new_table(width), STEP_META)
  step.object, step.kind, step.sql, step.phase, step.rank = obj, kind, given.sql, given.phase, given.rank
  for field, value in pairs(given) do
    if step[field] == nil and not NOT_COPIED[field] then step[field] = value end
  end
  if given.after ~= nil then step.after_objects = given.after end
  -- A statement with secrets keeps its real text apart, keyed by the step (tide.secret): the
  -- copy runs it too (without this the target got the masked '********' as the password).
  secret.carry(given, step)
  if step.phase == nil then
    step.phase = obj.phase
  elseif step.phase == "pre" and obj.phase == "post" then
    step.phase = "post"
  end
  -- A kind whose names another kind may share (def.kind_in_keys: a text search configuration
  -- app.docs and a table app.docs, a server and a schema) names itself in the keys of the
  -- steps other kinds also have (comment, owner, grant): comment:server:dummy/comment.
  local ident = obj.ident
  if obj.def.kind_in_keys and kinds.step_rank[step.kind] then
    ident = obj.kind .. ":" .. ident
  end
  step.key = step.kind .. ":" .. ident .. (given.suffix and ("/" .. given.suffix) or "")
  -- Steps nothing else waits for: they finish an object off (a sequence's OWNED BY, which
  -- needs the table that needs the sequence; comments, owners, privileges).
  if trailing then step.trailing = true end
  step.rank = step.rank or step_rank(step, obj)
  local have = obj.steps
  if have == nil then
    obj.steps = step
  elseif getmetatable(have) == STEP_META then
    obj.steps = { have, step }
  else
    have[#have + 1] = step
  end
  step.seq = #all + 1
  all[#all + 1] = step
  if step.attaches then
    step.attaches.attached_by = step.attaches.attached_by or {}
    table.insert(step.attaches.attached_by, step)
  end
  return step
end

-- The steps after which `obj` can be used in `phase`: all its steps of that phase, and for a
-- partitioned index the attachment of every partition's index (it is valid only then).
local function ready(obj, phase, out, seen)
  out, seen = out or {}, seen or {}
  if seen[obj] then return out end
  seen[obj] = true
  for _, step in each_step(obj) do
    if step.phase == phase and not step.trailing then out[#out + 1] = step end
  end
  for _, attach in ipairs(obj.attached_by or {}) do
    if attach.phase == phase then
      out[#out + 1] = attach
      ready(attach.object, phase, out, seen)
    end
  end
  return out
end

-- Steps come out of the heap by (rank, seq), as one number each: the rank's place among the
-- ranks in use, times a span above every seq, plus the seq. A heap of numbers compares with
-- `<` alone (a comparison function per heap step was a third of the order's time), and
-- `all[number % span]` is the step again (seq is a step's place in `all`, tide.plan.order.add_step).
local function rank_places(all)
  local places, ranks = {}, {}
  for _, step in ipairs(all) do
    breathe()
    if not places[step.rank] then places[step.rank] = true; ranks[#ranks + 1] = step.rank end
  end
  table.sort(ranks)
  for i, rank in ipairs(ranks) do places[rank] = i end
  for i, step in ipairs(all) do
    breathe()
    assert(step.seq == i, "tide.plan.order: a step's seq is not its place in the list")
  end
  return places, #all + 1
end

local NONE = {}
local function by_seq(a, b) return a.seq < b.seq end

-- M.sort(all, on_error) → pre_data, post_data: the steps of each phase in order, each step
-- with .waits (the list of steps it waits for).
function M.sort(all, on_error)
  -- What each step waits for: a list, sorted and made unique once all is known (a set per
  -- step, then a list of it, were two tables per step).
  -- (A step that waits for nothing in its phase, most post-data ones, has no list.)
  local function wait(step, other)
    if other ~= step and other.phase == step.phase then
      local waits = step.waits
      if waits then waits[#waits + 1] = other else step.waits = { other } end
    end
  end
  do   -- (the per-phase tables go before the sort)
    -- Per phase: each object's first step and its latest one so far, and the steps each object
    -- is ready after (found once per object, however many objects need it: every object needs
    -- its schema).
    local by_phase = {}
    for _, step in ipairs(all) do
      breathe()
      local obj, phase = step.object, step.phase
      local per = by_phase[phase]
      if not per then per = { first = {}, latest = {}, ready = {} }; by_phase[phase] = per end
      local previous = per.latest[obj]
      if previous then wait(step, previous) end
      if not per.first[obj] then
        per.first[obj] = step
        for ref, e in pairs(obj.deps or {}) do
          if ref.selected and e.first_step then
            -- only the first step of what it needs (a base type's I/O function: the shell type)
            for _, other in each_step(ref) do
              if other.phase == phase and not other.trailing then wait(step, other); break end
            end
          elseif ref.selected then
            local list = per.ready[ref]
            if not list then list = ready(ref, phase); per.ready[ref] = list end
            for _, other in ipairs(list) do wait(step, other) end
          end
        end
      end
      per.latest[obj] = step
      for _, ref in ipairs(step.after_objects or {}) do
        for _, other in each_step(ref) do
          if not other.trailing then wait(step, other) end
        end
      end
    end
    -- A step marked `last` waits for every step of its phase with a lower `last` (none counts as
    -- 0, true as 1): default privileges (1) come after every object is made, so they change no
    -- object pgtide creates; an event trigger is enabled (2) after everything else, so no
    -- statement of pgtide's fires it (ALTER DEFAULT PRIVILEGES would).
    local function level(step) return step.last == true and 1 or step.last or 0 end
    for _, step in ipairs(all) do
      breathe()
      local l = level(step)
      if l > 0 then
        for _, other in ipairs(all) do
          if level(other) < l then wait(step, other) end
        end
      end
    end
  end
  local places, span = rank_places(all)
  -- By seq (a step's place in `all`): how many steps each waits for, and which wait for it.
  local indegree, dependents = {}, {}
  for i, step in ipairs(all) do
    breathe()
    local waits = step.waits or NONE
    if #waits > 1 then
      table.sort(waits, by_seq)
      local kept = 1
      for j = 2, #waits do
        if waits[j] ~= waits[kept] then kept = kept + 1; waits[kept] = waits[j] end
      end
      for j = #waits, kept + 1, -1 do waits[j] = nil end
    end
    indegree[i] = #waits
    for _, other in ipairs(waits) do
      local list = dependents[other.seq]
      if list then list[#list + 1] = step else dependents[other.seq] = { step } end
    end
  end
  local result = {}
  for _, phase in ipairs({ "pre", "post" }) do
    local steps = {}
    for _, step in ipairs(all) do
      breathe()
      if step.phase == phase then steps[#steps + 1] = step end
    end
    -- The steps free from the start (most post-data ones: they wait only for pre-data) are
    -- sorted once; the ones freed later go through the heap; each turn takes the smaller head.
    local free, heap, out = {}, heap_mod.numbers(), {}
    for _, step in ipairs(steps) do
      breathe()
      if indegree[step.seq] == 0 then free[#free + 1] = places[step.rank] * span + step.seq end
    end
    table.sort(free)
    local next_free = 1
    while true do
      local number, top = free[next_free], heap:peek()
      if number and (top == nil or number < top) then
        next_free = next_free + 1
      elseif top then
        number = heap:pop()
      else
        break
      end
      breathe()
      local step = all[number % span]
      out[#out + 1] = step
      for _, next_step in ipairs(dependents[step.seq] or NONE) do
        local left = indegree[next_step.seq] - 1
        indegree[next_step.seq] = left
        if left == 0 then heap:push(places[next_step.rank] * span + next_step.seq) end
      end
    end
    if #out < #steps then
      local stuck, seen = {}, {}
      for _, step in ipairs(steps) do
        if indegree[step.seq] > 0 and not seen[step.object] then
          seen[step.object] = true
          stuck[#stuck + 1] = objects.describe(step.object)
        end
      end
      on_error(nil, "these objects depend on each other in a cycle pgtide cannot break: " .. table.concat(stuck, ", ")
        .. "; create one of them by hand on the target and leave it out of the selection")
      for _, step in ipairs(steps) do if indegree[step.seq] > 0 then out[#out + 1] = step end end
    end
    for _, step in ipairs(out) do
      breathe()
      local after = step.waits
      -- A `last` step waits for everything: the latest first, so a check of its list (the
      -- full load's, at every step) stops at once while the others still run.
      if step.last and after then
        for i = 1, #after // 2 do after[i], after[#after + 1 - i] = after[#after + 1 - i], after[i] end
      end
    end
    result[phase] = out
  end
  return result.pre, result.post
end

-- The table a step belongs to (its key, as in plan.tables), or nil.
local function owner_of(step)
  local obj = step.object
  return obj.kind == "table" and obj or obj.owner
end

function M.owner_key(step)
  local owner = owner_of(step)
  return owner and owner.kind ~= "domain" and objects.table_key(owner) or nil
end

-- Tables whose rows a post-data step must wait for (their keys, as in plan.tables, sorted):
-- the leaves of the table it belongs to; for a foreign key also the referenced table's;
-- for a materialized view's refresh every table it reads, through views. Second result:
-- M.owner_key(step).
function M.data_needs(model, ctx, step)
  local obj = step.object
  local seen, list = {}, {}
  local function add(t)
    if t and (t.kind == "table") then
      for _, leaf in ipairs(objects.leaves(model, t)) do
        if not seen[leaf] then seen[leaf] = true; list[#list + 1] = objects.table_key(leaf) end
      end
    end
  end
  local owner = owner_of(step)
  if step.kind ~= "comment" and step.kind ~= "owner" and step.kind ~= "grant" and step.kind ~= "revoke" then
    add(owner)
    if step.data == "referenced" then add(ctx.object_at("pg_class", obj.row.referenced_oid)) end
    if step.data == "dependencies" then
      local visited, stack = {}, { obj }
      while #stack > 0 do
        local current = table.remove(stack)
        for ref in pairs(current.deps or {}) do
          if not visited[ref] and ref.selected then
            visited[ref] = true
            if ref.kind == "table" then add(ref)
            elseif ref.kind == "view" or ref.kind == "matview" then stack[#stack + 1] = ref end
          end
        end
      end
    end
  end
  if #list > 1 then table.sort(list) end
  return list, M.owner_key(step)
end

return M
