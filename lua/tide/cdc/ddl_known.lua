-- tide.cdc.ddl_known — the record of what the target has (tide.cdc.ddl_record) as the stream
-- holds it: per source oid (text) the record's JSON text, deflated (below), decoded when a DDL message asks for
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
--                                (a prefilter: the caller checks what it looks for); an oid
--                                (digits only) finds the records that name it under an "oid"
--                                key (a table, its indexes, a partition's parent, partitions)
--   k:renamed_words()          → set of the source names the rename rules change (the check of
--                                statements applied as the source ran them)
local json = require "tide.json"
local core = require "tide.core"

local M = {}

-- Each record's text is kept deflated (engine/runtime/squeeze.c) with a dictionary of what
-- records have in common: about a tenth of the text where 1.4 kB a table were kept as they
-- are (at 10,000 tables 13.5 MB of JSON, a quarter of the stream's heap). Records read from
-- the target come as jsonb's text, those set here as tide.json writes them; the dictionary
-- holds a record in each form, the commoner (jsonb's) last, where zlib looks first.
local SAMPLE = [[{"cols": {"id": "id", "name": "name", "created_at": "created_at"}, "desc": ]] ..
  [[{"oid": 16384, "kind": "r", "name": "items", "bound": null, "grants": [], "parent": null, "schema": "public", ]] ..
  [["columns": [{"num": 1, "name": "id", "type": "bigint", "comment": null, "default": null, "identity": null, ]] ..
  [["not_null": true, "collation": null, "generated": null}, {"num": 2, "name": "name", "type": "text", ]] ..
  [["comment": null, "default": null, "identity": null, "not_null": false, "collation": null, "generated": null}, ]] ..
  [[{"num": 3, "name": "created_at", "type": "timestamp with time zone", "comment": null, "default": null, ]] ..
  [["identity": null, "not_null": true, "collation": null, "generated": null}, {"num": 4, "name": "amount", ]] ..
  [["type": "numeric", "comment": null, "default": null, "identity": null, "not_null": false, "collation": null, ]] ..
  [["generated": null}, {"num": 5, "name": "active", "type": "boolean", "comment": null, "default": null, ]] ..
  [["identity": null, "not_null": false, "collation": null, "generated": null}, {"num": 6, "name": "code", ]] ..
  [["type": "character varying(64)", "comment": null, "default": null, "identity": null, "not_null": false, ]] ..
  [["collation": null, "generated": null}, {"num": 7, "name": "count", "type": "integer", "comment": null, ]] ..
  [["default": null, "identity": null, "not_null": true, "collation": null, "generated": null}], "comment": null, ]] ..
  [["has_key": true, "indexes": [{"def": "CREATE INDEX items_name_idx ON public.items USING btree (name)", ]] ..
  [["oid": 16390, "name": "items_name_idx", "unique": false}, {"def": "CREATE UNIQUE INDEX items_code_key ON ]] ..
  [[public.items USING btree (code)", "oid": 16392, "name": "items_code_key", "unique": true}], "partkey": null, ]] ..
  [["identity": "d", "sequence": null, "partition": false, "partitions": null, "constraints": [{"def": ]] ..
  [["PRIMARY KEY (id)", "name": "items_pkey", "type": "p"}, {"def": "FOREIGN KEY (parent) REFERENCES ]] ..
  [[public.items(id)", "name": "items_parent_fkey", "type": "f"}], "persistence": "p", "identity_index": null}, ]] ..
  [["target": {"name": "items", "schema": "public"}}]]
local DICT = json.encode(json.decode(SAMPLE)) .. SAMPLE

local function pack(text) return core.deflate(text, DICT) end
local function unpack_text(packed) return packed and core.inflate(packed, DICT) or nil end
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

M.words_of = words_of   -- (for tests: the server's list in ddl_record.load must agree)

function M.new()
  return setmetatable({ texts = {}, names = {}, name_of = {}, words = {}, mentions = {} }, K)
end

-- The oids a record's text names ("oid": n: the table's, its indexes', its parent's and
-- partitions'): mentions[n] is the record's oid, or the set of them, so that k:containing(n)
-- inflates those records, not every one. A record replaced or removed takes back what its
-- text named.
local OID = '"oid": ?"?(%d+)'

local function mention(self, oid, text)
  local m = self.mentions
  for n in text:gmatch(OID) do
    local at = m[n]
    if at == nil or at == oid then
      m[n] = oid
    elseif type(at) == "table" then
      at[oid] = true
    else
      m[n] = { [at] = true, [oid] = true }
    end
  end
end

local function unmention(self, oid)
  local text = unpack_text(self.texts[oid])
  if not text then return end
  local m = self.mentions
  for n in text:gmatch(OID) do
    local at = m[n]
    if at == oid then
      m[n] = nil
    elseif type(at) == "table" then
      at[oid] = nil
      local first = next(at)
      if first and next(at, first) == nil then m[n] = first elseif not first then m[n] = nil end
    end
  end
end

-- The name index: names[schema\0name] is the oid of the record of that name, or the set of
-- them when several have it (a detached partition's record and a new table); name_of[oid] its key.
local function unname(self, oid)
  local k = self.name_of[oid]
  if not k then return end
  self.name_of[oid] = nil
  local at = self.names[k]
  if at == oid then
    self.names[k] = nil
  elseif type(at) == "table" then
    at[oid] = nil
    local first = next(at)
    if first and next(at, first) == nil then self.names[k] = first end
  end
end

local function name(self, oid, schema, table_name)
  unname(self, oid)
  local k = key(schema, table_name)
  self.name_of[oid] = k
  local at = self.names[k]
  if at == nil or at == oid then
    self.names[k] = oid
  elseif type(at) == "table" then
    at[oid] = true
  else
    self.names[k] = { [at] = true, [oid] = true }
  end
end

-- One record as read from the target: its JSON text, the source schema and name, and its
-- renamed words (a list, or nil: as words_of would find them; tide.cdc.ddl_record.load has the
-- server list them, so that loading decodes nothing).
function K:add_text(oid, text, schema, table_name, words)
  unmention(self, oid)
  self.texts[oid] = pack(text)
  mention(self, oid, text)
  name(self, oid, schema, table_name)
  self.words[oid] = words and #words > 0 and words or nil
end

function K:get(oid)
  local text = unpack_text(self.texts[tostring(oid)])
  return text and json.decode(text) or nil
end

function K:set(oid, info)
  oid = tostring(oid)
  unmention(self, oid)
  if info == nil then
    self.texts[oid], self.words[oid] = nil, nil
    unname(self, oid)
  else
    local text = json.encode(info)
    self.texts[oid] = pack(text)
    mention(self, oid, text)
    self.words[oid] = words_of(info)
    name(self, oid, info.desc.schema, info.desc.name)
  end
end

-- (Of several records of the name, a followed table's before an ignored one's, then the
-- newest: the largest oid.)
function K:by_name(schema, table_name)
  local at = self.names[key(schema, table_name)]
  if type(at) ~= "table" then
    if at then return at, self:get(at) end
    return nil
  end
  local best, best_info
  for oid in pairs(at) do
    local info = self:get(oid)
    local better = not best or (not info.ignored and best_info.ignored) or
      (not info.ignored == not best_info.ignored and tonumber(oid) > tonumber(best))
    if better then best, best_info = oid, info end
  end
  return best, best_info
end

function K:oids()
  local texts, oid = self.texts, nil
  return function()
    oid = next(texts, oid)
    return oid
  end
end

function K:containing(text)
  local texts = self.texts
  -- an oid: the records that named it; anything else: every record
  local candidates
  if text:match("^%d+$") then
    local at = self.mentions[text]
    candidates = type(at) == "table" and at or (at and { [at] = true }) or {}
  else
    candidates = texts
  end
  local oid = nil
  return function()
    while true do
      oid = next(candidates, oid)
      if oid == nil then return nil end
      local t = unpack_text(texts[oid])
      if t and t:find(text, 1, true) then return oid, json.decode(t) end
    end
  end
end

function K:renamed_words()
  local out = {}
  for _, list in pairs(self.words) do for _, w in ipairs(list) do out[w] = true end end
  return out
end

return M
