-- tide.plan.steplist — the post-data steps a run keeps, held in one array per field instead of
-- one Lua table per step. A step as a table cost about 600 bytes at 10,000 tables (its table
-- 250-440 bytes, its lists of the steps it waits for and of the tables whose rows it needs
-- another 70); in arrays about 390 (docs/performance.md, "What a run keeps: its steps in
-- arrays, written out and read back"). The list is read as a list of steps:
--
--   local list = steplist.pack(steps)   -- steps: plain step tables (tide.plan's)
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
  if v == nil or #v == 0 then return false end
  if #v == 1 and type(v[1]) == "string" then return v[1] end
  return v
end

local function plain(step)
  if secret.has(step) or getmetatable(step) ~= nil then return false end
  for f in next, step do if not FIELDS[f] then return false end end
  return type(step.key) == "string"
end

function M.pack(steps)
  if getmetatable(steps) == List then return steps end
  local n = #steps
  local self = { n = n, key = core.new_table(n), sql = core.new_table(n), kind = core.new_table(n),
                 table = core.new_table(n), after = core.new_table(n), needs_data = core.new_table(n),
                 undo = core.new_table(n), object = core.new_table(n), whole = {}, phase = steps[1] and steps[1].phase,
                 phases = false }
  for i = 1, n do
    if self.phase ~= steps[i].phase then self.phases = core.new_table(n); break end
  end
  for i = 1, n do
    local s = steps[i]
    if self.phases then self.phases[i] = s.phase or false end
    if plain(s) then
      self.key[i], self.sql[i], self.kind[i] = s.key, s.sql or false, s.kind or false
      self.table[i] = s.table or false
      self.after[i], self.needs_data[i] = as_names(s.after), as_names(s.needs_data)
      self.undo[i] = s.undo or false
      if s.object == nil then
        self.object[i] = false
      else
        self.object[i] = s.object == s.key or s.object   -- true: the step's key
      end
    else
      self.whole[i] = s
      self.key[i], self.sql[i], self.kind[i], self.table[i] = false, false, false, false
      self.after[i], self.needs_data[i], self.undo[i], self.object[i] = false, false, false, false
    end
  end
  return setmetatable(self, List)
end

local function get(self, i, f)
  local w = self.whole[i]
  if w then return w[f] end
  if not FIELDS[f] then return nil end
  if f == "phase" then return self.phases and (self.phases[i] or nil) or self.phase end
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
-- pairs() walks the steps as ipairs does (tide.json and the REPL's printer see a list).
local function walk(list, i)
  i = i + 1
  local step = list[i]
  if step ~= nil then return i, step end
end
List.__pairs = function(self) return walk, self, 0 end
List.__newindex = function() error("tide.plan.steplist: a packed list of steps is read only", 2) end

-- M.view(list, places) → the steps of `list` at those places (a list of numbers), read as a
-- list of them.
local View = {}
View.__index = function(self, i)
  local at = self.places[i]
  return at and self.list[at]
end
View.__len = function(self) return #self.places end
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
