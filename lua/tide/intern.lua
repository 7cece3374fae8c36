-- tide.intern — one shared copy of equal values that many tables of a task hold alike: lists of
-- column names, the stream's column lists, catalog rows of columns. A schema-per-tenant database
-- repeats its tables in every schema, and the change stream, which may run for days, keeps a
-- map of every table (#20: at 100,000 tables each list costs 120 bytes, each column row 250).
--
--   local pool = intern.pool()
--   pool:names({ "id", "v" })  --> a list equal to it, the same table for every equal list
--   pool:value(x)              --> x, or an equal value given before (tables compared by their
--                                 fields, nested ones by identity once interned themselves)
--
-- What comes back is shared: never change it (nothing in the stream does: a table whose
-- definition changes gets new lists, tide.cdc.ddl_entries). A pool keeps a signature of
-- every value it holds (100 bytes and more a column row): make one for a pass over many
-- values and let it go after, rather than keep one; what it shared stays shared. Its cache
-- holds the values weakly.
local M = {}

local Pool = {}
Pool.__index = Pool

function M.pool()
  return setmetatable({ cache = setmetatable({}, { __mode = "v" }), ids = setmetatable({}, { __mode = "k" }),
                        next_id = 0 }, Pool)
end

-- A value's part of a signature: strings and numbers as themselves (typed), booleans, and a
-- table by the number the pool gave it (so only interned tables make equal signatures).
local function part(pool, v)
  local t = type(v)
  if t == "string" then return "s" .. #v .. ":" .. v end
  if t == "number" then
    if math.type(v) == "integer" then return "i" .. string.format("%d", v) end
    return "f" .. string.format("%a", v)
  end
  if t == "boolean" then return v and "T" or "F" end
  if t == "table" then
    local id = pool.ids[v]
    if not id then
      pool.next_id = pool.next_id + 1
      id = pool.next_id
      pool.ids[v] = id
    end
    return "t" .. id
  end
  return nil   -- functions, userdata: never shared
end

local function intern(pool, sig, v)
  local shared = pool.cache[sig]
  if shared ~= nil then return shared end
  pool.cache[sig] = v
  part(pool, v)   -- numbered, so that a list of it can be interned in turn
  return v
end

-- A list of strings (names): an equal list given before, or this one.
function Pool:names(list)
  if type(list) ~= "table" then return list end
  local parts = { "N" }
  for i = 1, #list do
    local v = list[i]
    if type(v) ~= "string" then return list end
    parts[i + 1] = "s" .. #v .. ":" .. v
  end
  local count = 0
  for _ in next, list do count = count + 1 end
  if count ~= #list then return list end   -- fields besides the list
  return intern(self, table.concat(parts, ","), list)
end

-- A table of plain fields (strings, numbers, booleans, tables interned before) or a list of
-- such, with its metatable: an equal one given before (the same fields, values and metatable),
-- or this one.
function Pool:value(v)
  if type(v) ~= "table" then return v end
  local keys, strings, integers = {}, 0, 0
  for k in next, v do
    if type(k) == "string" then strings = strings + 1
    elseif math.type(k) == "integer" then integers = integers + 1
    else return v end
    keys[#keys + 1] = k
  end
  -- (Keys of one type sort with the built-in comparison: a row of a catalog is all strings, a
  -- list all integers, and a comparison function called for each pair was most of the time.)
  if strings > 0 and integers > 0 then
    table.sort(keys, function(a, b)
      local ta, tb = type(a), type(b)
      if ta ~= tb then return ta == "number" end
      return a < b
    end)
  else
    table.sort(keys)
  end
  local mt = getmetatable(v)
  local parts = { "V", mt and part(self, mt) or "-" }
  for _, k in ipairs(keys) do
    local p = part(self, rawget(v, k))
    if p == nil then return v end
    parts[#parts + 1] = part(self, k) .. "=" .. p
  end
  return intern(self, table.concat(parts, ","), v)
end

return M
