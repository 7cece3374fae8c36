-- tide.playbook — loading a playbook file and validating the task it returns.
--
-- A playbook is a Lua file that returns tide.task{...}. Every mistake in it is reported as
-- "FILE:LINE: what is wrong (and what to do)" and raised as a playbook error (exit status 3):
-- syntax errors (from Lua's own parser), unknown keys (with a "did you mean"), wrong types,
-- values out of range. Nested sections that other modules own (select, rename, precheck, ...)
-- are checked here for shape, and by their modules for content.
local suggest = require "tide.suggest"
local units = require "tide.units"

local M = {}

local PlaybookError = {}
PlaybookError.__index = PlaybookError
PlaybookError.__tostring = function(e) return e.message end
M.PlaybookError = PlaybookError

function M.is_playbook_error(e) return getmetatable(e) == PlaybookError end

local function raise(msg)
  error(setmetatable({ kind = "playbook", message = msg }, PlaybookError), 0)
end
M.raise = raise

-- Secrets (conninfo strings) live here, out of reach of printing and of the REPL's view of
-- the task; keys are task tables, weak so a dropped task frees them.
local secrets = setmetatable({}, { __mode = "k" })

function M.conninfo(task, side)
  local s = secrets[task]
  return s and s[side]
end

------------------------------------------------------------------------ locating a key

local file_lines = {}

local function lines_of(path)
  local cached = file_lines[path]
  if cached then return cached end
  local lines = {}
  local f = io.open(path, "r")
  if f then
    for line in f:lines() do lines[#lines + 1] = line end
    f:close()
  end
  file_lines[path] = lines
  return lines
end

-- The line where `key = ` (or ["key"] =) first appears at or after `from` in `path`.
local function find_key_line(path, from, key)
  local lines = lines_of(path)
  local plain = "%f[%w_]" .. key:gsub("%W", "%%%0") .. "%s*="
  local bracketed = "%[%s*[\"']" .. key:gsub("%W", "%%%0") .. "[\"']%s*%]%s*="
  for i = from or 1, #lines do
    local text = lines[i]:gsub("%-%-.*$", "")
    if text:find(plain) or text:find(bracketed) then return i end
  end
  return from
end

------------------------------------------------------------------------ the task schema

local function is_list_of(v, ty)
  if type(v) ~= "table" then return false end
  local n = 0
  for k, x in pairs(v) do
    if math.type(k) ~= "integer" or type(x) ~= ty then return false end
    n = n + 1
  end
  return n == #v
end

-- Each entry: type (a Lua type name, or a function returning ok, expected-description),
-- and for tables optionally `keys`, a nested schema of allowed keys.
local one_of = function(...)
  local set, names = {}, {}
  for _, v in ipairs({ ... }) do set[v] = true; names[#names + 1] = string.format("%q", v) end
  return function(v)
    return set[v] == true, "one of " .. table.concat(names, ", ")
  end
end

local positive_int = function(v)
  return math.type(v) == "integer" and v > 0, "a positive integer"
end

-- full.jobs, full.index_jobs: "auto" (pgtide decides and adjusts: tide.full.streams) or a count.
local jobs_value = function(v)
  return v == "auto" or (math.type(v) == "integer" and v > 0),
         '"auto" (pgtide measures and adjusts the count) or a positive integer (a fixed count)'
end

-- Sizes and durations are checked by the parsers that read them at run time (tide.units).
local size_value = function(v)
  return units.parse_size(v) ~= nil, units.SIZE_EXPECTED
end

local duration_value = function(v)
  return units.parse_duration(v) ~= nil, units.DURATION_EXPECTED
end
M.size_value, M.duration_value = size_value, duration_value

local migrate_list = function(v)
  local allowed = { schema = true, full = true, incremental = true }
  if not is_list_of(v, "string") or #v == 0 then
    return false, 'a list such as { "schema", "full", "incremental" }'
  end
  for _, x in ipairs(v) do
    if not allowed[x] then return false, 'a list of "schema", "full", "incremental" (not "' .. x .. '")' end
  end
  return true
end

local callable = function(v)
  local mt = getmetatable(v)
  return type(v) == "function" or (mt ~= nil and mt.__call ~= nil), "a function (or tide.when{...})"
end

local task_name = function(v)
  return type(v) == "string" and v:match("^[%w_%-]+$") ~= nil and #v <= 40,
         "a name of letters, digits, '_' or '-', at most 40 characters"
end

-- metrics.listen: "HOST:PORT" with HOST an IPv4 address, "localhost" or [an IPv6 address]
-- → host, port; or nil, what was expected.
local LISTEN_EXPECTED = 'an address to listen on such as "127.0.0.1:9187", "0.0.0.0:9187" or "[::1]:9187" ' ..
                        "(an IP address and a port from 1 to 65535)"
function M.listen_address(v)
  if type(v) ~= "string" then return nil, LISTEN_EXPECTED end
  local host, port = v:match("^%[([%x:%.]+)%]:(%d+)$")
  if host then
    if not host:find(":") then return nil, LISTEN_EXPECTED end
  else
    host, port = v:match("^([%w%.%-]+):(%d+)$")
    if host == "localhost" then host = "127.0.0.1" end
    local a, b, c, d = (host or ""):match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
    if not a then return nil, LISTEN_EXPECTED end
    for _, octet in ipairs({ a, b, c, d }) do
      if #octet > 3 or tonumber(octet) > 255 then return nil, LISTEN_EXPECTED end
    end
  end
  port = #port <= 5 and tonumber(port) or nil
  if not port or port < 1 or port > 65535 then return nil, LISTEN_EXPECTED end
  return host, port
end

-- tide.side(task, "source" | "target"): the conninfo of another playbook's task, passed on
-- without ever being a string the playbook can see or print (a reverse task's playbook gives
-- its sides this way: docs/cutover.md).
local SideRef = { __name = "tide.side", __tostring = function(r) return "tide.side(" .. r.side .. ")" end }
local function conninfo_value(v)
  return type(v) == "string" or getmetatable(v) == SideRef,
         "a string (a libpq conninfo or URI), or tide.side(task, \"source\" | \"target\")"
end

M.schema = {
  name     = { check = task_name, required = true },
  source   = { check = conninfo_value, required = true },
  target   = { check = conninfo_value, required = true },
  -- Generated with a reverse task (docs/cutover.md): the name of the task it follows back.
  reverse_of = { check = task_name },
  migrate  = { check = migrate_list },
  select   = { check = "table" },
  rename   = { check = "table" },
  schema   = { check = "table", keys = {
    owners     = { check = one_of("target", "source") },
    existing   = { check = one_of("error", "skip", "drop") },
    dependents = { check = one_of("error", "drop") },
    grants     = { check = "boolean" },
    comments   = { check = "boolean" },
    security_labels = { check = "boolean" },
    database_settings = { check = "boolean" },
  } },
  full     = { check = "table", keys = {
    jobs              = { check = jobs_value },
    index_jobs        = { check = jobs_value },
    protect_critical  = { check = "boolean" },
    index_workers     = { check = function(v) return math.type(v) == "integer" and v >= 0 and v <= 64,
                          "an integer from 0 to 64" end },
    split_larger_than = { check = function(v)
      if v == "auto" or v == 0 then return true end
      local ok = size_value(v)
      return ok, 'a size such as "1GB", "500MB", a number of bytes, "auto", or 0 (never split)'
    end },
    split_parts       = { check = positive_int },
    existing          = { check = one_of("error", "truncate", "append") },
    format            = { check = one_of("auto", "text", "binary") },
    large_objects     = { check = "boolean" },
    analyze           = { check = "boolean" },
  } },
  incremental = { check = "table", keys = {
    conflict         = { check = one_of("error", "skip", "overwrite") },
    group_changes    = { check = positive_int },
    group_ms         = { check = "number" },
    group_live_ms    = { check = "number" },
    release          = { check = "boolean" },
    slot_timeout     = { check = duration_value },
    heartbeat        = { check = "boolean" },
    heartbeat_table  = { check = "string" },
    delay_bound      = { check = duration_value },
    streaming        = { check = "boolean" },
    spool_dir        = { check = "string" },
    heartbeat_interval = { check = duration_value },
    decoding_work_mem  = { check = size_value },
    replica_role       = { check = "boolean" },
    merge_updates      = { check = "boolean" },
    batch_inserts      = { check = "boolean" },
    batch_updates      = { check = "boolean" },
    ddl                = { check = "boolean" },
    apply_connections  = { check = function(v)
                             if v == "auto" or (math.type(v) == "integer" and v >= 1 and v <= 16) then return true end
                             return false, 'an integer from 1 to 16, or "auto"'
                           end },
    apply_tx_limit     = { check = size_value },
    apply_session_statements = { check = function(v) return math.type(v) == "integer" and v >= 0 and v <= 1000000000,
                                   "an integer from 0 (keep one session) to 1000000000: the prepared statements " ..
                                   "after which the apply connection is replaced" end },
  } },
  precheck = { check = "table" },
  stop     = { check = callable },
  -- `pgtide cutover` (docs/cutover.md)
  cutover  = { check = function(v)
                 if type(v) ~= "table" then return false, "a table" end
                 local fence = v.fence
                 if fence ~= nil and fence ~= "read_only" and fence ~= "revoke_connect" and type(fence) ~= "function" then
                   return false, 'a table whose fence is "read_only", "revoke_connect" or a function(source)'
                 end
                 if type(fence) == "function" and type(v.unfence) ~= "function" then
                   return false, "a table with unfence = function(source) beside fence = function (a failed cutover lifts the fence)"
                 end
                 if fence == "revoke_connect" and (not is_list_of(v.roles, "string") or #v.roles == 0) then
                   return false, 'a table with roles = { "app", ... } beside fence = "revoke_connect"'
                 end
                 if v.sequences ~= nil and v.sequences ~= false and not (type(v.sequences) == "table"
                     and (v.sequences.offset == nil or math.type(v.sequences.offset) == "integer")) then
                   return false, "a table whose sequences is false or { offset = N }"
                 end
                 if v.verify ~= nil and v.verify ~= "checksums" and v.verify ~= "counts" and v.verify ~= "none" then
                   return false, 'a table whose verify is "checksums", "counts" or "none"'
                 end
                 if v.reverse ~= nil and type(v.reverse) ~= "boolean" then
                   return false, "a table whose reverse is true or false"
                 end
                 if v.timeout ~= nil and not units.parse_duration(v.timeout) then
                   return false, "a table whose timeout is " .. units.DURATION_EXPECTED
                 end
                 for k in pairs(v) do
                   local known = { fence = 1, unfence = 1, roles = 1, sequences = 1, verify = 1, timeout = 1, reverse = 1 }
                   if not known[k] then
                     return false, "a table of fence, unfence, roles, sequences, verify, timeout, reverse (not " ..
                                   tostring(k) .. ")"
                   end
                 end
                 return true
               end },
  on       = { check = "table", keys = {
    cutover  = { check = function(v) return type(v) == "function" or is_list_of(v, "function"),
                   "a function or a list of functions" end },
    change   = { check = "table" },
    row      = { check = function(v)
                   if type(v) ~= "table" then return false, "a table of \"schema.table\" = function" end
                   for k, f in pairs(v) do
                     if type(k) ~= "string" or not k:find(".", 1, true) or type(f) ~= "function" then
                       return false, "a table of \"schema.table\" = function (found " ..
                         string.format("%s = %s", type(k) == "string" and string.format("%q", k) or tostring(k), type(f)) .. ")"
                     end
                   end
                   return true
                 end },
    route    = { check = function(v)
                   local expected = "a table of \"schema.table\" = { \"schema.table\", ... }"
                   if type(v) ~= "table" then return false, expected end
                   for k, list in pairs(v) do
                     local ok = type(k) == "string" and k:find(".", 1, true) and type(list) == "table"
                     for i, name in pairs(ok and list or {}) do
                       if math.type(i) ~= "integer" or type(name) ~= "string" or not name:find(".", 1, true) then ok = false end
                     end
                     if not ok then
                       return false, expected .. " (found " .. string.format("%s = %s", type(k) == "string" and
                         string.format("%q", k) or tostring(k), type(list) == "table" and "{ ... }" or type(list)) .. ")"
                     end
                   end
                   return true
                 end },
    conflict = { check = "function" },
    ddl      = { check = "function" },
    progress = { check = "function" },
    error    = { check = "function" },
  } },
  state_schema = { check = function(v) return type(v) == "string" and #v > 0 and #v <= 63,
                     "a schema name" end },
  retry    = { check = "table", keys = {
    attempts  = { check = positive_int },
    max_delay = { check = duration_value },
    window    = { check = duration_value },
  } },
  verify   = { check = "table", keys = {
    jobs               = { check = positive_int },
    max_differences    = { check = positive_int },
    leaf_rows          = { check = positive_int },
    chunk_rows         = { check = positive_int },
    fanout             = { check = function(v) return math.type(v) == "integer" and v >= 2, "an integer of 2 or more" end },
    tables             = { check = function(v) return is_list_of(v, "string"), "a list of table names" end },
    sample             = { check = function(v) return type(v) == "number" and v > 0 and v <= 100, "a percentage in (0, 100]" end },
    sample_larger_than = { check = size_value },
    table_timeout      = { check = duration_value },
    recheck_delay      = { check = duration_value },
    recheck            = { check = function(v) return math.type(v) == "integer" and v >= 0, "an integer of 0 or more" end },
    sequences          = { check = "boolean" },
    sequence_offset    = { check = function(v) return math.type(v) == "integer" or type(v) == "function", "an integer or a function" end },
    hash               = { check = one_of("fast", "md5") },
    wait_for_lsn       = { check = "function" },
    snapshot_timeout   = { check = duration_value },
  } },
  progress = { check = one_of("auto", "bar", "plain", "json", "none") },
  metrics  = { check = "table", keys = {
    listen = { check = function(v) return M.listen_address(v) ~= nil, select(2, M.listen_address(v)) end,
               required = true },
  } },
  log_format = { check = one_of("text", "json") },
}

local function check_value(spec, v)
  if type(spec.check) == "string" then
    return type(v) == spec.check, "a " .. spec.check
  end
  return spec.check(v)
end

local function describe(v)
  if type(v) == "string" then return string.format("the string %q", v) end
  return "a " .. type(v)
end

-- Validate `tbl` against `schema`; `where` is a key path ("tide.task", "full"). Every mistake
-- found is appended to `mistakes` (messages "FILE:LINE: ..."), in the order of the file, so
-- one run reports them all; a section of the wrong type is not looked into.
local function validate(tbl, schema, where, locate, mistakes)
  local keys = {}
  for key in pairs(tbl) do keys[#keys + 1] = key end
  local line_of = {}
  for _, key in ipairs(keys) do
    line_of[key] = tonumber((locate(type(key) == "string" and key or nil):match(":(%d+): $"))) or 0
  end
  table.sort(keys, function(a, b)
    if line_of[a] ~= line_of[b] then return line_of[a] < line_of[b] end
    return tostring(a) < tostring(b)
  end)
  for _, key in ipairs(keys) do
    local value = tbl[key]
    local spec = type(key) == "string" and schema[key] or nil
    if type(key) ~= "string" then
      mistakes[#mistakes + 1] = locate(nil) .. "unexpected positional value in " .. where ..
                                " (every entry needs a key: key = value)"
    elseif not spec then
      mistakes[#mistakes + 1] = locate(key) .. "unknown key '" .. key .. "' in " .. where .. suggest.hint(key, schema)
    else
      local ok, expected = check_value(spec, value)
      if not ok then
        mistakes[#mistakes + 1] = locate(key) .. where .. "." .. key .. " must be " .. expected .. ", got " ..
                                  describe(value)
      elseif spec.keys then
        -- A section's keys are looked for from the section's line on (verify's `jobs`, not full's).
        local from = tonumber((locate(key):match(":(%d+): $")))
        validate(value, spec.keys, key, function(k) return locate(k, from) end, mistakes)
      end
    end
  end
  local missing = {}
  for key, spec in pairs(schema) do
    if spec.required and tbl[key] == nil then missing[#missing + 1] = key end
  end
  table.sort(missing)
  for _, key in ipairs(missing) do mistakes[#mistakes + 1] = locate(nil) .. where .. " needs '" .. key .. "'" end
end

-- A task is read-only once validated: its fields sit in a table of their own behind the
-- proxy the playbook gets, and writing to it is an error. What changes while a task runs is
-- on its run (tide.taskrun).
local Task = {}
M.Task = Task
local FIELDS = setmetatable({}, { __name = "tide.task fields" })   -- the proxy's private key

Task.__index = function(t, k) return rawget(t, FIELDS)[k] end
Task.__newindex = function(_, k)
  error(string.format("task.%s cannot be set: a task is its playbook and does not change once made " ..
                      "(what changes while it runs belongs to its run)", tostring(k)), 2)
end
Task.__pairs = function(t) return next, rawget(t, FIELDS), nil end

Task.__tostring = function(t)
  return string.format("task %s (%s → %s)", t.name, t.source_info or "?", t.target_info or "?")
end

-- tide.task(def, level): validate def; `level` is the stack level of the playbook's call.
function M.task(def, level)
  -- Find the playbook's frame. `return tide.task {...}` is a tail call, which removes the
  -- playbook's frame; then fall back to the file being loaded and the line of `tide.task`.
  local path, call_line
  local dev_dir = os.getenv("PGTIDE_LUA_DIR")
  local dev_prefix = dev_dir and ("@" .. dev_dir:gsub("/+$", "") .. "/tide/")
  for l = (level or 1) + 1, 12 do
    local info = debug.getinfo(l, "Sl")
    if not info then break end
    if info.source:sub(1, 1) == "@" and not info.source:find("^@tide/") and
       not (dev_prefix and info.source:sub(1, #dev_prefix) == dev_prefix) then
      path, call_line = info.source:sub(2), info.currentline
      break
    end
  end
  if not path and M.loading then
    path = M.loading
    for i, line in ipairs(lines_of(path)) do
      if line:find("tide%.task") then call_line = i; break end
    end
  end
  local function locate(key, from)
    if not path then return "" end
    local line = key and find_key_line(path, from or call_line, key) or from or call_line
    return string.format("%s:%d: ", path, line or 0)
  end
  if type(def) ~= "table" then
    raise(locate(nil) .. "tide.task needs a table: tide.task { name = ..., source = ..., target = ... }")
  end
  local mistakes = {}
  validate(def, M.schema, "tide.task", locate, mistakes)
  if #mistakes > 0 then
    local msg = table.concat(mistakes, "\n")
    if #mistakes > 1 then msg = msg .. string.format("\n%d mistakes in the playbook; fix them all and run again", #mistakes) end
    raise(msg)
  end
  local task = {}
  for k, v in pairs(def) do task[k] = v end
  task.migrate = task.migrate or { "schema", "full" }
  local set = {}
  for _, m in ipairs(task.migrate) do set[m] = true end
  task.phases = set
  task.state_schema = task.state_schema or "pgtide"
  task.full = task.full or {}
  task.schema = task.schema or {}
  task.incremental = task.incremental or {}
  task.select = task.select or {}
  task.rename = task.rename or {}
  task.on = task.on or {}
  task.file = path
  task.locate = locate
  local function resolve(v)
    if getmetatable(v) ~= SideRef then return v end
    return assert(secrets[v.task] and secrets[v.task][v.side], "tide.side: not a task")
  end
  secrets[task] = { source = resolve(def.source), target = resolve(def.target) }
  local core = require "tide.core"
  task.source_info = core.mask_conninfo(secrets[task].source)
  task.target_info = core.mask_conninfo(secrets[task].target)
  task.source, task.target = nil, nil
  local proxy = setmetatable({ [FIELDS] = task }, Task)
  secrets[proxy], secrets[task] = secrets[task], nil
  return proxy
end

-- tide.side(task, side) → a reference to that side's conninfo (see SideRef).
function M.side(task, side)
  if getmetatable(task) ~= Task then error("tide.side: the first argument must be a task (tide.playbook(FILE))", 2) end
  if side ~= "source" and side ~= "target" then error('tide.side: the side must be "source" or "target"', 2) end
  return setmetatable({ task = task, side = side }, SideRef)
end

-- tide.playbook(path) → the task of another playbook file, `path` taken from the directory of
-- the playbook being loaded (a reverse task's playbook reads its forward one).
function M.load_nested(path)
  local outer = M.loading
  if outer and path:sub(1, 1) ~= "/" then path = (outer:match("^(.*)/[^/]*$") or ".") .. "/" .. path end
  local ok, task = pcall(M.load, path)
  M.loading = outer
  if not ok then error(task, 0) end
  return task
end

-- Load and run a playbook file; returns the task. Raises PlaybookError on any mistake.
function M.load(path)
  local f = io.open(path, "r")
  if not f then raise(path .. ": cannot open the playbook (check the path)") end
  f:close()
  local chunk, err = loadfile(path, "t")
  if not chunk then raise(err) end
  M.loading = path
  -- Modules next to the playbook (shared policies, helpers) can be required by name.
  local dir = path:match("^(.*)/[^/]*$") or "."
  if not package.path:find(dir .. "/?.lua;", 1, true) then
    package.path = dir .. "/?.lua;" .. dir .. "/?/init.lua;" .. package.path
  end
  local ok, result = xpcall(chunk, function(e)
    if M.is_playbook_error(e) then return e end
    return setmetatable({ kind = "playbook", message = tostring(e),
                          traceback = debug.traceback(nil, 2) }, PlaybookError)
  end)
  M.loading = nil
  if not ok then error(result, 0) end
  if getmetatable(result) ~= Task then
    raise(path .. ": the playbook must end with `return tide.task { ... }` (it returned " ..
          type(result) .. ")")
  end
  return result
end

return M
