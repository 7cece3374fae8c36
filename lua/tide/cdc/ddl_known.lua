-- tide.cdc.ddl_known — the record of what the target has (tide.cdc.ddl_record) as the stream
-- holds it: per source oid (text) the record's JSON text, decoded when a DDL message asks for
-- that table. Decoded, every table's description was about 5 kB of Lua tables (400 MB at
-- 100,000 tables, read again at every session); the text is a third of that, and a DDL message
-- decodes only the tables it touches.
--
--   k = known.new()            an empty record
--   k:get(oid)                 → { desc, cols, target, ignored, partition, sequence } or nil, a
--                                fresh copy each call (changing it changes nothing here)
--   k:set(oid, info | nil)     what the target has now (after the statements committed)
--   k:by_name(schema, name)    → oid, info of the source table schema.name, or nil
--   k:oids()                   → iterator over the oids
--   k:containing(text)         → iterator over oid, info of the records whose JSON holds text
--                                (a prefilter: the caller checks what it looks for)
--   k:renamed_words()          → set of the source names the rename rules change (the check of
--                                statements applied as the source ran them)
local json = require "tide.json"

local M = {}
local K = {}
K.__index = K

local function key(schema, name) return schema .. "\0" .. name end

-- The source names of a table that the rename rules gave another name on the target (its
-- name, its schema, its columns), or nil.
local function words_of(info)
  if info.ignored then return nil end
  local list = {}
  if info.target.name ~= info.desc.name then list[#list + 1] = info.desc.name end
  if info.target.schema ~= info.desc.schema then list[#list + 1] = info.desc.schema end
  for name, target in pairs(info.cols or {}) do if target ~= name then list[#list + 1] = name end end
  return #list > 0 and list or nil
end

function M.new()
  return setmetatable({ texts = {}, names = {}, words = {} }, K)
end

-- One record as read from the target: its JSON text, the source schema and name, and (when the
-- task has rename rules) whether to look for renamed words in it.
function K:add_text(oid, text, schema, name, with_words)
  self.texts[oid] = text
  self.names[key(schema, name)] = oid
  if with_words then self.words[oid] = words_of(json.decode(text)) end
end

function K:get(oid)
  local text = self.texts[tostring(oid)]
  return text and json.decode(text) or nil
end

function K:set(oid, info)
  oid = tostring(oid)
  local old = self:get(oid)
  if info == nil then
    self.texts[oid], self.words[oid] = nil, nil
  else
    self.texts[oid] = json.encode(info)
    self.names[key(info.desc.schema, info.desc.name)] = oid
    self.words[oid] = words_of(info)
  end
  local was = old and key(old.desc.schema, old.desc.name)
  if was and self.names[was] == oid and (info == nil or was ~= key(info.desc.schema, info.desc.name)) then
    -- the name goes to another record of it, if one is left (a detached partition's, say)
    self.names[was] = nil
    for other, o in self:containing(json.encode(old.desc.name):sub(2, -2)) do
      if o.desc.schema == old.desc.schema and o.desc.name == old.desc.name then self.names[was] = other; break end
    end
  end
end

function K:by_name(schema, name)
  local oid = self.names[key(schema, name)]
  local info = oid and self:get(oid)
  if info and info.desc.schema == schema and info.desc.name == name then return oid, info end
end

function K:oids()
  local texts, oid = self.texts, nil
  return function()
    oid = next(texts, oid)
    return oid
  end
end

function K:containing(text)
  local texts, oid = self.texts, nil
  return function()
    while true do
      local t
      oid, t = next(texts, oid)
      if oid == nil then return nil end
      if t:find(text, 1, true) then return oid, json.decode(t) end
    end
  end
end

function K:renamed_words()
  local out = {}
  for _, list in pairs(self.words) do for _, w in ipairs(list) do out[w] = true end end
  return out
end

return M
