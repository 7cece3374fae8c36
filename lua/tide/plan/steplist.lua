-- tide.plan.steplist — a plan's steps (plan.pre_data, plan.post_data), held in one array per
-- field instead of one Lua table per step, from the time tide.plan.build writes them. A
-- step as a table cost about 600 bytes at 10,000 tables (its table 250-440 bytes, its lists
-- of the steps it waits for and of the tables whose rows it needs another 70); in arrays
-- about 390 (docs/performance.md, "What a run keeps: its steps in
-- arrays, written out and read back"). The list is read as a list of steps:
--
--   local list = steplist.pack(steps)   -- steps: plain step tables (tide.plan's)
--   local list = steplist.new(n); steplist.add(list, step) ...   -- the same, a step at a time
--   steplist.set(list, i, step)         -- step i replaced (read it, change it, put it back)
--   #list, list[i], ipairs(list), pairs(list)   -- list[i]: the step, a new table at each read
--   steplist.field(list, i, "sql")      -- one field (plain lists too); after and needs_data
--                                       -- as lists, which may be shared: read only
--
-- Each read of list[i] makes a new table: code that keeps a step (a running one) keeps that
-- table, and what it writes on it stays on it alone. A step with fields beyond the usual ones,
-- or with secrets in its statement (tide.secret.carry: keyed by the table), is kept as it
-- was and list[i] is that same table every time.
local core = require "tide.core"
local secret = require "tide.secret"

local M = {}

local List = {}
local FIELDS = { kind = true, key = true, sql = true, object = true, phase = true, table = true,
                 after = true, needs_data = true, undo = true }

local function as_list(v)
  if v == nil or v == false then return {} end
  if type(v) == "string" then return { v } end
  return v
end

-- A list of one name is kept as that name (a string the list shares with other steps or the
-- plan's tables); an empty one as false.
local function as_names(v)
  if type(v) ~= "table" then return v or false end
  if #v == 0 then return false end
  if #v == 1 and type(v[1]) == "string" then return v[1] end
  return v
end

local function plain(step)
  if secret.has(step) or getmetatable(step) ~= nil then return false end
  for f in next, step do if not FIELDS[f] then return false end end
  return type(step.key) == "string"
end

-- The phase of step i: one for the whole list while every step has it, else an array.
local function set_phase(self, i, phase)
  phase = phase or false
  if self.n == 0 then
    self.phase = phase
  elseif not self.phases and phase ~= self.phase then
    local phases = core.new_table(self.n + 1)
    for j = 1, self.n do phases[j] = self.phase end
    self.phases = phases
  end
  if self.phases then self.phases[i] = phase end
end

-- The fields of a plain step at place i.
local function set_fields(self, i, kind, key, sql, object, tbl, after, needs_data, undo)
  self.whole[i] = nil
  self.key[i], self.sql[i], self.kind[i], self.table[i] = key, sql or false, kind or false, tbl or false
  self.after[i], self.needs_data[i], self.undo[i] = as_names(after), as_names(needs_data), undo or false
  if object == nil then
    self.object[i] = false
  else
    self.object[i] = object == key or object   -- true: the step's key
  end
end

-- Step s at place i of a packed list (a new place, or one whose step is replaced).
local function put(self, i, s)
  set_phase(self, i, s.phase)
  if plain(s) then
    set_fields(self, i, s.kind, s.key, s.sql, s.object, s.table, s.after, s.needs_data, s.undo)
  else
    self.whole[i] = s
    self.key[i], self.sql[i], self.kind[i], self.table[i] = false, false, false, false
    self.after[i], self.needs_data[i], self.undo[i], self.object[i] = false, false, false, false
  end
end

-- M.new(n) → an empty packed list, with room for n steps; M.add(list, step) appends a step
-- (tide.plan.build packs its steps as it writes them, so that the plan never holds them as
-- tables).
function M.new(n)
  n = n or 0
  return setmetatable({ n = 0, key = core.new_table(n), sql = core.new_table(n), kind = core.new_table(n),
                        table = core.new_table(n), after = core.new_table(n), needs_data = core.new_table(n),
                        undo = core.new_table(n), object = core.new_table(n), whole = {}, phase = false,
                        phases = false }, List)
end

function M.add(self, s)
  local i = self.n + 1
  put(self, i, s)
  self.n = i
end

-- M.add_fields(list, kind, key, sql, object, phase, table, after, needs_data, undo): a plain
-- step appended from its fields, without a table made for it (after and needs_data: a list of
-- keys, one key, or false for none).
function M.add_fields(self, kind, key, sql, object, phase, tbl, after, needs_data, undo)
  local i = self.n + 1
  set_phase(self, i, phase)
  set_fields(self, i, kind, key, sql, object, tbl, after, needs_data, undo)
  self.n = i
end

function M.pack(steps)
  if getmetatable(steps) == List then return steps end
  local self = M.new(#steps)
  for i = 1, #steps do M.add(self, steps[i]) end
  return self
end

-- M.set(list, i, step): step i replaced (a step read, changed and put back; a plain list's
-- place is set as it is).
function M.set(list, i, step)
  if getmetatable(list) ~= List then list[i] = step; return end
  assert(math.type(i) == "integer" and i >= 1 and i <= list.n, "tide.plan.steplist.set: no such step")
  put(list, i, step)
end

-- M.share_lists(list, pool): every step's lists of keys (after, needs_data) made one with the
-- equal lists of the pool (tide.intern), in place.
function M.share_lists(list, pool)
  if getmetatable(list) ~= List then
    for _, step in ipairs(list) do
      step.after, step.needs_data = pool:names(step.after), pool:names(step.needs_data)
    end
    return
  end
  for i = 1, list.n do
    local w = list.whole[i]
    if w then
      w.after, w.needs_data = pool:names(w.after), pool:names(w.needs_data)
    else
      local a, d = list.after[i], list.needs_data[i]
      if type(a) == "table" then list.after[i] = pool:names(a) end
      if type(d) == "table" then list.needs_data[i] = pool:names(d) end
    end
  end
end

local function get(self, i, f)
  local w = self.whole[i]
  if w then return w[f] end
  if not FIELDS[f] then return nil end
  if f == "phase" then
    if self.phases then return self.phases[i] or nil end
    return self.phase or nil
  end
  local v = self[f][i]
  if f == "object" then return v == true and self.key[i] or (v or nil) end
  if f == "after" or f == "needs_data" then return as_list(v) end
  return v or nil
end

List.__index = function(self, i)
  if math.type(i) ~= "integer" or i < 1 or i > self.n then return nil end
  local w = self.whole[i]
  if w then return w end
  return { kind = get(self, i, "kind"), key = self.key[i], sql = get(self, i, "sql"), object = get(self, i, "object"),
           phase = get(self, i, "phase"), table = get(self, i, "table"), after = get(self, i, "after"),
           needs_data = get(self, i, "needs_data"), undo = get(self, i, "undo") }
end
List.__len = function(self) return self.n end
List.__list = true   -- (tide.json: a list, empty or not)
List.__pairs = require("tide.fields").list_pairs   -- (pairs() walks the steps as ipairs does)
List.__newindex = function() error("tide.plan.steplist: a packed list of steps is read only", 2) end

-- M.view(list, places) → the steps of `list` at those places (a list of numbers), read as a
-- list of them.
local View = {}
View.__index = function(self, i)
  local at = self.places[i]
  return at and self.list[at]
end
View.__len = function(self) return #self.places end
View.__list = true
View.__pairs = List.__pairs
View.__newindex = List.__newindex

function M.view(list, places)
  return setmetatable({ list = list, places = places }, View)
end

-- One field of step i, of a packed list, a view or a plain list.
function M.field(list, i, f)
  local mt = getmetatable(list)
  if mt == List then return get(list, i, f) end
  if mt == View then return M.field(list.list, list.places[i], f) end
  local s = list[i]
  return s and s[f]
end

function M.is_packed(list) return getmetatable(list) == List end

return M
