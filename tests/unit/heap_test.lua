-- tide.heap: values come out in the order of the function given, ties as that function says.
local T = require "testlib"
local heap = require "tide.heap"

T.test("values come out smallest first, whatever order they went in", function()
  local h = heap.new(function(a, b) return a < b end)
  local input = { 9, 3, 7, 1, 8, 2, 2, 6, 5, 4, 0 }
  for _, v in ipairs(input) do h:push(v) end
  local out = {}
  while not h:empty() do out[#out + 1] = h:pop() end
  T.eq(out, { 0, 1, 2, 2, 3, 4, 5, 6, 7, 8, 9 })
  T.eq(h:pop(), nil, "an empty heap gives nil")
end)

T.test("pushes between pops; ties broken by the order function (cost, then position)", function()
  local function before(a, b)
    if a.cost ~= b.cost then return a.cost > b.cost end
    return a.i < b.i
  end
  local h = heap.new(before)
  h:push({ cost = 5, i = 3 }); h:push({ cost = 5, i = 1 }); h:push({ cost = 9, i = 7 })
  T.eq(h:pop().i, 7)
  h:push({ cost = 5, i = 2 })
  T.eq(h:pop().i, 1); T.eq(h:pop().i, 2); T.eq(h:pop().i, 3)
  T.ok(h:empty())
end)

T.test("a thousand random values in order", function()
  local h = heap.new(function(a, b) return a < b end)
  local seed = 12345
  for _ = 1, 1000 do seed = (seed * 1103515245 + 12345) % 2147483648; h:push(seed % 10000) end
  local last = -1
  for _ = 1, 1000 do local v = h:pop(); T.ok(v >= last, "in order"); last = v end
  T.ok(h:empty())
end)

T.test("a heap of numbers: interleaved pushes and pops give what a sorted list gives", function()
  local h, reference = heap.numbers(), {}
  local seed = 777
  local function random(n) seed = (seed * 1103515245 + 12345) % 2147483648; return seed % n end
  for round = 1, 3000 do
    if random(3) > 0 or #reference == 0 then
      local v = random(500) + (round % 7) / 8   -- repeats, and fractions
      h:push(v); reference[#reference + 1] = v
    else
      table.sort(reference, function(a, b) return a > b end)
      T.eq(h:peek(), reference[#reference], "peek shows the smallest, at round " .. round)
      T.eq(h:pop(), table.remove(reference), "the smallest, at round " .. round)
    end
  end
  table.sort(reference, function(a, b) return a > b end)
  while #reference > 0 do T.eq(h:pop(), table.remove(reference)) end
  T.ok(h:empty())
  T.eq(h:pop(), nil, "an empty heap gives nil")
  T.eq(h:peek(), nil, "and peeks nil")
  h:push(4); T.eq(h:pop(), 4); T.ok(h:empty())
end)
