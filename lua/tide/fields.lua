-- tide.fields — pairs() over a table that keeps named fields as list items (a packed catalog
-- row, a plan object, a working step: tide.core.pack_rows, object_index, slots_meta).
local M = {}

-- M.pairs_by(names) → a __pairs function: the items as names[i] = value (the ones set), then the
-- table's own fields that are not items.
function M.pairs_by(names)
  local n = #names
  return function(t)
    local i, key = 0, nil
    return function()
      while i < n do
        i = i + 1
        local v = rawget(t, i)
        if v ~= nil then return names[i], v end
      end
      local v
      repeat key, v = next(t, key) until key == nil or math.type(key) ~= "integer"
      return key, v
    end
  end
end

-- M.list_pairs: a __pairs for a list whose items __index makes when read (tide.plan.steplist,
-- tide.plan.existing's entries): pairs() walks it as ipairs does, so tide.json and the REPL's
-- printer see a list.
local function walk(list, i)
  i = i + 1
  local item = list[i]
  if item ~= nil then return i, item end
end

function M.list_pairs(list) return walk, list, 0 end

return M
