-- tide.plan.ids — the key of a catalog row in tide.plan.objects' model.exact and
-- model.identity: its catalog (pg_class, pg_constraint, ...) and its oid in one integer, the
-- catalog's number in the high 32 bits. A string "pg_class:16384" was a string per object
-- kept (at 100,000 tables 640,000 of them, 26 MB) and one more made at each look-up.
local M = {}

local numbers, count = {}, 0

-- M.id(class, oid) → integer (oid: an integer or its text), or nil for no oid (nil, a
-- JSON null, text that is no number): a look-up with it finds nothing.
function M.id(class, oid)
  oid = math.tointeger(tonumber(oid))
  if oid == nil then return nil end
  local n = numbers[class]
  if not n then
    count = count + 1
    n = count
    numbers[class] = n
  end
  return n << 32 | oid
end

return M
