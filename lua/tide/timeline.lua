-- tide.timeline — what happened during each run of a task, kept on the target for `pgtide
-- report` (tide.report).
--
-- The events are those tide.progress emits (run, phases, parts, post-data steps, prechecks,
-- notes, the stop condition, cutover hooks) plus a sample every few seconds of the change
-- stream (delay, bytes behind, transactions and changes applied). They go into the table timeline of the task's state schema (created with
-- the other state tables by tide.state, forgotten with them by `pgtide release`):
--
--   timeline (task, run, seq, at, kind, data jsonb)   PRIMARY KEY (task, run, seq)
--
-- `run` is an id made when `pgtide run` starts (its start time and a random suffix), so a run
-- that follows a killed one is a new run, and nothing has to be read before writing.
--
-- Cheap and harmless by design: recording an event appends to a Lua list; a coroutine of its own
-- writes the list every few seconds in ONE statement (the events as one JSON parameter) over a
-- connection of its own, so the copy and the apply never wait for it. Each write is one
-- statement, so a SIGKILL loses at most the events not yet written, never half a batch; a
-- failed write keeps the events for the next one (ON CONFLICT DO NOTHING makes a repeat
-- harmless). Nothing is written before the prechecks pass (a failing check writes nothing to
-- the target): the recorder starts writing once the run reaches a phase.
local tide = require "tide.core"
local json = require "tide.json"

local M = {}

M.EVERY = 2            -- seconds between samples and between writes
M.MAX_PENDING = 20000  -- events kept while the target cannot be written (oldest samples go first)

local Recorder = {}
Recorder.__index = Recorder

-- host, port and database of a conninfo as tide.core.mask_conninfo prints it (key=value pairs,
-- the password masked); nothing else of it is kept.
function M.endpoint(masked)
  local fields, pos, text = {}, 1, masked or ""
  while true do
    local key, after = text:match("^%s*([%w_]+)%s*=%s*()", pos)
    if not key then break end
    local value
    if text:sub(after, after) == "'" then
      local close = after + 1
      local parts = {}
      while close <= #text do
        local ch = text:sub(close, close)
        if ch == "\\" then parts[#parts + 1] = text:sub(close + 1, close + 1); close = close + 2
        elseif ch == "'" then break
        else parts[#parts + 1] = ch; close = close + 1 end
      end
      value, pos = table.concat(parts), close + 1
    else
      value = text:match("^[^%s]*", after)
      pos = after + #value
    end
    fields[key] = value
  end
  return { host = fields.host or fields.hostaddr, port = fields.port, dbname = fields.dbname }
end

-- The lag bound of a stop condition made by tide.when{ lag_below = ... } (its description
-- says it), or nil.
function M.threshold(condition)
  local mt = getmetatable(condition)
  if type(mt) ~= "table" or type(condition.description) ~= "string" then return nil end
  return tonumber(condition.description:match("lag_below = ([%d.e+-]+)s"))
end

function M.new(run)
  local task = run.task
  local r = setmetatable({
    run = run, task = task,
    -- Unique per run: two runs may start in the same second, and a sanitizer build lays its
    -- memory out the same way every time, so Lua's random seed (time, an address) can repeat.
    id = string.format("%s.%03d.%d.%d", os.date("!%Y%m%dT%H%M%S", math.floor(tide.now())),
                       math.floor(tide.now() * 1000) % 1000, tide.getpid(), math.random(0, 999999)),
    seq = 0, pending = {}, writing = false, conn = nil, wake = tide.condition(), finished = false,
    schema = nil,
  }, Recorder)
  local stop = run:stop_condition()
  local phases = {}
  for _, p in ipairs({ "schema", "full", "incremental" }) do if task.phases[p] then phases[#phases + 1] = p end end
  r:record("run_start", {
    source = M.endpoint(task.source_info), target = M.endpoint(task.target_info), migrate = phases,
    version = tide.version, jobs = task.full and task.full.jobs or nil,
    stop = type(stop) == "function" and "a Lua function" or (stop ~= nil and tostring(stop) or nil),
    threshold = M.threshold(stop),
  })
  return r
end

function Recorder:record(kind, data)
  if self.finished then return end
  self.seq = self.seq + 1
  local pending = self.pending
  -- Encoded now: a value JSON cannot hold must not keep a whole batch from being written.
  local event = { s = self.seq, t = tide.now(), k = kind, d = data or {} }
  local ok, text = pcall(json.encode, event)
  if not ok then
    event.d = { unrecorded = tostring(text) }
    text = json.encode(event)
  end
  pending[#pending + 1] = { k = kind, s = self.seq, json = text }
  if #pending > M.MAX_PENDING then
    local dropped = false
    for i, e in ipairs(pending) do
      if e.k == "sample" then table.remove(pending, i); dropped = true; break end
    end
    if not dropped then table.remove(pending, 1) end
  end
  -- Writing starts once the run is past its prechecks (they write nothing) and its state
  -- tables exist: at its first phase (or at the end of a run that finishes a cutover).
  if not self.writing and (kind == "phase_start" or kind == "done") then
    self.writing = true
  end
  if not self.loop and self.writing then self.loop = tide.spawn(self.serve, self) end
end

-- A sample of the change stream while it runs (the full load's own events say enough).
function Recorder:sample()
  local st = self.run:stream_status()
  if st then
    self:record("sample", { what = "stream", delay = st.delay, bytes_behind = st.bytes_behind,
                            transactions = st.transactions, changes = st.changes, paused = st.paused or nil })
  end
end

local INSERT = [[
INSERT INTO %s.timeline (task, run, seq, at, kind, data)
SELECT $1, $2, (e->>'s')::int, pg_catalog.to_timestamp((e->>'t')::float8), e->>'k', e->'d'
FROM pg_catalog.jsonb_array_elements($3::jsonb) AS e
ON CONFLICT DO NOTHING]]

-- Write what is pending in one statement; false (events kept) when the target cannot be written.
function Recorder:flush()
  if not self.writing or #self.pending == 0 then return true end
  local batch = self.pending
  self.pending = {}
  local ok = pcall(function()
    if not self.conn then
      local conn = require("tide.connect").open(self.task, "target",
                                                { application_name = "pgtide-timeline:" .. self.task.name,
                                                  timeout = 5 })
      -- A write that waits long is given up (and tried again later): never something to wait for.
      assert(conn:exec("SET statement_timeout = '20s'; SET lock_timeout = '5s'; SET synchronous_commit = off"))
      self.conn = conn
      self.schema = conn:quote_ident(self.task.state_schema or "pgtide")
    end
    local texts = {}
    for i, e in ipairs(batch) do texts[i] = e.json end
    assert(self.conn:query(string.format(INSERT, self.schema), self.task.name, self.id,
                           "[" .. table.concat(texts, ",") .. "]"))
  end)
  if ok then return true end
  if self.conn then pcall(self.conn.close, self.conn); self.conn = nil end
  -- Kept for the next write, before what was recorded meanwhile.
  for _, e in ipairs(self.pending) do batch[#batch + 1] = e end
  self.pending = batch
  return false
end

function Recorder:serve()
  self:flush()   -- at once: the run shows on the target from its first phase
  while not self.finished do
    self.wake:wait(M.EVERY)
    if self.finished then break end
    pcall(self.sample, self)
    self:flush()
  end
end

-- The run ends with exit status `status`: recorded, written (a few tries at most), closed.
function Recorder:finish(status, message)
  if self.finished then return end
  self:record("run_end", { exit = status, message = message })
  self.finished = true
  self.wake:notify()
  if self.loop then pcall(self.loop.wait, self.loop) end
  -- Bounded: a target out of reach costs the exit at most two connection timeouts (5 s).
  for _ = 1, 2 do
    if self:flush() then break end
    tide.sleep(0.2)
  end
  if self.conn then pcall(self.conn.close, self.conn); self.conn = nil end
end

------------------------------------------------------------------------ reading

-- M.read(task, conn) → list of runs, oldest first: { id =, events = { { seq =, at = epoch
-- seconds, kind =, data = table }, ... } }; empty when the target holds no timeline.
function M.read(task, conn)
  local schema = conn:quote_ident(task.state_schema or "pgtide")
  local r = assert(conn:query("SELECT pg_catalog.to_regclass($1) IS NOT NULL AS present", schema .. ".timeline"))
  if not r[1].present then return {} end
  local rows = assert(conn:query(string.format([[
SELECT run, seq, extract(epoch FROM at)::float8 AS at, kind, data::text AS data
FROM %s.timeline WHERE task = $1
ORDER BY min(at) OVER (PARTITION BY run), run, seq]], schema), task.name))
  local runs, by_id = {}, {}
  for _, row in ipairs(rows) do
    local run = by_id[row.run]
    if not run then
      run = { id = row.run, events = {} }
      by_id[row.run] = run
      runs[#runs + 1] = run
    end
    local ok, data = pcall(json.decode, row.data)
    run.events[#run.events + 1] = { seq = row.seq, at = tonumber(row.at), kind = row.kind,
                                    data = ok and type(data) == "table" and data or {} }
  end
  return runs
end

return M
