-- tide.heap — a binary heap of Lua values ordered by a function `before(a, b)` (true when a
-- comes out first). Used to pick the next statement of the plan's order (tide.plan.order) and
-- the next post-data step of a full load (tide.full).
--
--   local h = heap.new(function(a, b) return a.rank < b.rank end)
--   h:push(x); h:pop() --> the first value, or nil when empty; #h.items
--
--   local h = heap.numbers()   -- numbers, smallest first: the comparison is `<` itself, no
--   h:push(3); h:pop() --> 3   -- call per step (the plan's order sorts 100,000s of steps)
--   h:peek() --> the smallest, left in place
local Heap = {}
Heap.__index = Heap

local M = {}

function M.new(before)
  return setmetatable({ items = {}, before = before }, Heap)
end

function Heap:push(v)
  local items, before = self.items, self.before
  local i = #items + 1
  items[i] = v
  while i > 1 do
    local up = i // 2
    if not before(items[i], items[up]) then break end
    items[i], items[up] = items[up], items[i]
    i = up
  end
end

function Heap:pop()
  local items, before = self.items, self.before
  local n = #items
  if n == 0 then return nil end
  local top = items[1]
  items[1] = items[n]
  items[n] = nil
  n = n - 1
  local i = 1
  while true do
    local l, r, m = 2 * i, 2 * i + 1, i
    if l <= n and before(items[l], items[m]) then m = l end
    if r <= n and before(items[r], items[m]) then m = r end
    if m == i then break end
    items[i], items[m] = items[m], items[i]
    i = m
  end
  return top
end

function Heap:empty() return self.items[1] == nil end

local Numbers = {}
Numbers.__index = Numbers

function M.numbers()
  return setmetatable({ items = {} }, Numbers)
end

function Numbers:push(v)
  local items = self.items
  local i = #items + 1
  while i > 1 do
    local up = i // 2
    local above = items[up]
    if v >= above then break end
    items[i] = above
    i = up
  end
  items[i] = v
end

function Numbers:pop()
  local items = self.items
  local n = #items
  if n == 0 then return nil end
  local top, last = items[1], items[n]
  items[n] = nil
  n = n - 1
  -- The last value sinks from the root: each level moves the smaller child up.
  local i = 1
  while true do
    local child = 2 * i
    if child > n then break end
    local value = items[child]
    if child < n then
      local right = items[child + 1]
      if right < value then child, value = child + 1, right end
    end
    if last <= value then break end
    items[i] = value
    i = child
  end
  if n > 0 then items[i] = last end
  return top
end

function Numbers:empty() return self.items[1] == nil end

-- The smallest number, left in the heap; nil when empty.
function Numbers:peek() return self.items[1] end

return M
