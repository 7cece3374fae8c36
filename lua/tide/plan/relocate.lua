-- tide.plan.relocate — what a run keeps of its plan, made anew in memory of its own.
--
-- The kept parts (the tables' entries, the steps, ...) were made among everything the plan's
-- work let go, and a page of memory with one of them alive stays in the process. Copying the
-- kept tables while the originals live moves the tables and the long strings, but not the
-- short strings (keys, names, up to 40 bytes): Lua keeps one copy of each, and a copy made
-- while the original lives is the original. At 100,000 tables 256 MB of kept heap held
-- 479-541 MB of RSS that way (docs/performance.md, "What a run keeps: its steps in arrays,
-- written out and read back").
--
-- So the kept parts are written out first, into numbers and one string holding every string
-- they use, with nothing of them left in Lua's heap; everything goes; the allocator gives its
-- emptied pages back; and the parts are read back from the numbers, each string made anew:
--
--   local written = relocate.write({ a, b, ... })   -- the values and what they reach
--   a, b = nil, nil; core.release_memory()             -- (a full collection first)
--   local a2, b2 = table.unpack(relocate.read(written))
--
-- Tables keep their sharing (one table reached twice is one table after), their metatables
-- (kept as they are: they are the modules'), cycles and sizes (each made at its size); values
-- that are not tables, strings, numbers or booleans (functions, userdata, json.null) are kept
-- as they are. A step with secrets keeps them (tide.secret). Nothing outside the roots may
-- hold a table they reach: it would keep the old one.
local core = require "tide.core"
local secret = require "tide.secret"
local breathe = require("tide.wait").breathe

local M = {}

-- Each value is one number: payload * 8 + tag.
local STR, TNEW, TREF, REF, INT, MISC = 1, 2, 3, 4, 5, 6
local MISC_TRUE, MISC_FALSE, MISC_NIL = 0, 1, 2
local CHUNK = 65536   -- numbers to a list (lists of a megabyte each, let go as they are read)
local INT_LIMIT = 1 << 59

-- M.write(roots, keep) → a written form of the list `roots` and of everything it reaches;
-- tables in the set `keep` (json.null, say) and metatables are kept as they are.
function M.write(roots, keep_given)
  local keep = {}
  for v in pairs(keep_given or {}) do keep[v] = true end
  local chunks, chunk, n = {}, core.new_table(CHUNK), 0
  local strings, pieces, nstrings = {}, {}, 0
  local tables, queue, ntables = {}, {}, 0
  local refs, nrefs, ref_of = {}, 0, {}
  local secrets = {}
  local function put_ref(v)
    -- (a number each time: as a key, NaN is refused, and 0.0 is -0.0 and 2^60 is 2.0^60)
    if type(v) == "number" then nrefs = nrefs + 1; refs[nrefs] = v; return nrefs * 8 + REF end
    local id = ref_of[v]
    if not id then nrefs = nrefs + 1; id = nrefs; refs[id] = v; ref_of[v] = id end
    return id * 8 + REF
  end
  local function value(v)
    local code
    local t = type(v)
    if t == "string" then
      local id = strings[v]
      if not id then
        nstrings = nstrings + 1
        id, strings[v], pieces[nstrings] = nstrings, nstrings, v
      end
      code = id * 8 + STR
    elseif t == "table" and not keep[v] then
      local id = tables[v]
      if id then
        code = id * 8 + TREF
      else
        ntables = ntables + 1
        tables[v], queue[ntables] = ntables, v
        code = ntables * 8 + TNEW
      end
    elseif math.type(v) == "integer" and v > -INT_LIMIT and v < INT_LIMIT then
      code = v * 8 + INT
    elseif v == true then
      code = MISC_TRUE * 8 + MISC
    elseif v == false then
      code = MISC_FALSE * 8 + MISC
    elseif v == nil then
      code = MISC_NIL * 8 + MISC
    else   -- (floats, large integers, functions, userdata, kept tables: as they are)
      code = put_ref(v)
    end
    n = n + 1
    if n > CHUNK then
      chunks[#chunks + 1] = chunk
      chunk, n = core.new_table(CHUNK), 1
    end
    chunk[n] = code
  end
  -- A table's record: its list part, its fields (key, value), its metatable; its sizes apart
  -- (the reader makes each table at its size where it is first named, before its record).
  local sizes = {}
  value(roots)
  local i = 1
  while queue[i] do
    breathe()
    local t = queue[i]
    queue[i] = false
    local narr, nrec = rawlen(t), 0
    for k = 1, narr do value(rawget(t, k)) end
    for k, v in next, t do
      if not (math.type(k) == "integer" and k >= 1 and k <= narr) then value(k); value(v); nrec = nrec + 1 end
    end
    local mt = getmetatable(t)
    if mt ~= nil then keep[mt] = true end
    value(mt)
    sizes[2 * i - 1], sizes[2 * i] = narr, nrec
    if secret.has(t) then secrets[i] = secret.record(t) end
    i = i + 1
  end
  chunks[#chunks + 1] = chunk
  -- Every string in one: the strings themselves are let go with the roots.
  local offsets, at = core.new_table(nstrings), 1
  for k = 1, nstrings do offsets[k] = at; at = at + #pieces[k] end
  return { chunks = chunks, text = table.concat(pieces), offsets = offsets, refs = refs, secrets = secrets,
           ntables = ntables, sizes = sizes }
end

-- M.read(written) → the list of roots, made anew (the written form is used up).
function M.read(written)
  local chunks, text, offsets, refs = written.chunks, written.text, written.offsets, written.refs
  local nstrings = #offsets
  local made, sizes = core.new_table(written.ntables), written.sizes
  local ci, chunk, pos = 1, chunks[1], 0
  local function code()
    pos = pos + 1
    if pos > CHUNK then
      chunks[ci] = false   -- (read: it may go)
      ci, pos = ci + 1, 1
      chunk = chunks[ci]
    end
    return chunk[pos]
  end
  local long = {}   -- long strings by number: one copy each, as written (short ones are one anyway)
  local function value()
    local c = code()
    local tag, payload = c % 8, c // 8
    if tag == STR then
      local s = long[payload]
      if not s then
        s = text:sub(offsets[payload], payload < nstrings and offsets[payload + 1] - 1 or #text)
        if #s > 40 then long[payload] = s end
      end
      return s
    elseif tag == TNEW then
      local t = core.new_table(sizes[2 * payload - 1], sizes[2 * payload])
      made[payload] = t
      return t
    elseif tag == TREF then
      return made[payload]
    elseif tag == INT then
      return payload
    elseif tag == REF then
      return refs[payload]
    elseif payload == MISC_TRUE then
      return true
    elseif payload == MISC_FALSE then
      return false
    end
    return nil
  end
  local roots = value()
  for i = 1, written.ntables do
    breathe()
    local t = made[i]
    for k = 1, sizes[2 * i - 1] do t[k] = value() end
    for _ = 1, sizes[2 * i] do
      local k = value()
      t[k] = value()
    end
    local mt = value()
    if mt then setmetatable(t, mt) end
    if written.secrets[i] then secret.restore(t, written.secrets[i]) end
  end
  return roots
end

return M
