-- tide.cdc.cutover — what runs once the stop condition fired and the stream stopped: the
-- playbook's on.cutover hooks, each called with a context object `t`:
--
--   t.task, t.plan, t.source, t.target   the task, its plan, open connections to both sides
--   t.status                              the last status table (delay, positions, counts)
--   t:sync_sequences{ offset = N }        every target sequence := source value + N
--
-- Sequences are not replicated by logical decoding, so before writers move to the target
-- each target sequence must be set past the source's values; the offset leaves room for
-- values the source hands out between this moment and the switch.
local M = {}

local Context = {}
Context.__index = Context

-- t:sync_sequences{ offset = N } → number of sequences set.
function Context:sync_sequences(opts)
  opts = opts or {}
  local offset = opts.offset or 0
  if math.type(offset) ~= "integer" then error("sync_sequences: offset must be an integer", 2) end
  return M.sync_sequences(self.plan, self.source, self.target, offset)
end

function M.sync_sequences(plan, source, target, offset)
  local seqs = plan.sequences or {}
  if #seqs == 0 then return 0 end
  local schemas, names = {}, {}
  for i, s in ipairs(seqs) do schemas[i], names[i] = s.source.schema, s.source.name end
  -- pg_sequences reads every sequence in one statement (NULL last_value: never used).
  local rows = assert(source:query([[
SELECT u.i, s.last_value::text AS last_value, s.start_value::text AS start_value
FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS u(schema, name, i)
JOIN pg_catalog.pg_sequences s ON s.schemaname = u.schema AND s.sequencename = u.name]], schemas, names))
  local targets, values = {}, {}
  for _, r in ipairs(rows) do
    local seq = seqs[r.i]
    local base = r.last_value ~= require("tide.core").null and r.last_value or nil
    if base or offset ~= 0 then
      base = math.tointeger(tonumber(base or r.start_value))
      targets[#targets + 1] = target:quote_ident(seq.target.schema) .. "." .. target:quote_ident(seq.target.name)
      values[#values + 1] = tostring(base + offset)
    end
  end
  if #targets == 0 then return 0 end
  local ok, err = target:query([[
SELECT pg_catalog.setval(u.seq::regclass, u.v, true)
FROM unnest($1::text[], $2::bigint[]) AS u(seq, v)]], targets, values)
  if not ok then
    require("tide.failure").raise("failed", "sync_sequences: cannot set the target sequences: " ..
      (err.message or tostring(err)))
  end
  return #targets
end

function M.context(fields)
  fields.plan = require("tide.plan").for_hooks(fields.plan, fields.task, fields.source, fields.target)
  return setmetatable(fields, Context)
end

-- A verification report a hook returned (tide.verify.cutover_hook) or failed with, cut to
-- what the run's timeline keeps: per table the status and row counts.
local function verify_summary(v)
  if type(v) ~= "table" or type(v.tables) ~= "table" or type(v.summary) ~= "table" then return nil end
  local tables = {}
  for i, r in ipairs(v.tables) do
    tables[i] = { table = r.key, status = r.status, source_rows = r.source_rows, target_rows = r.target_rows,
                  error = r.error }
  end
  return { status = v.status, ok = v.ok, summary = v.summary, seconds = v.seconds, tables = tables }
end

-- Run the playbook's on.cutover hooks (a function or a list of them) in order; `progress`
-- (optional, the run's tide.progress) sees each hook start and end.
function M.run(task, ctx, progress)
  local hooks = task.on and task.on.cutover
  if not hooks then return 0 end
  if type(hooks) == "function" then hooks = { hooks } end
  local core = require "tide.core"
  for i, fn in ipairs(hooks) do
    if progress then progress:emit("cutover_hook_start", { hook = i, hooks = #hooks }) end
    local started = core.monotonic()
    local ok, err = pcall(fn, ctx)
    if progress then
      progress:emit("cutover_hook_end", { hook = i, hooks = #hooks, ok = ok, seconds = core.monotonic() - started,
                                          verify = verify_summary(ok and err or (type(err) == "table" and err.report)),
                                          error = not ok and tostring(type(err) == "table" and err.message or err) or nil })
    end
    if not ok then
      require("tide.failure").raise("failed", string.format("on.cutover hook %d failed: %s\n  the stream " ..
        "has stopped and its progress is saved; fix the hook and run the task again to retry the cutover",
        i, tostring(err)))
    end
  end
  return #hooks
end

return M
