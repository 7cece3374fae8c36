-- tide.heap — a binary heap of Lua values ordered by a function `before(a, b)` (true when a
-- comes out first). Used to pick the next statement of the plan's order (tide.plan.order) and
-- the next post-data step of a full load (tide.full).
--
--   local h = heap.new(function(a, b) return a.rank < b.rank end)
--   h:push(x); h:pop() --> the first value, or nil when empty; #h.items
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

return M
