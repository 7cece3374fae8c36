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
  return setmetatable(fields, Context)
end

-- Run the playbook's on.cutover hooks (a function or a list of them) in order.
function M.run(task, ctx)
  local hooks = task.on and task.on.cutover
  if not hooks then return 0 end
  if type(hooks) == "function" then hooks = { hooks } end
  for i, fn in ipairs(hooks) do
    local ok, err = pcall(fn, ctx)
    if not ok then
      require("tide.failure").raise("failed", string.format("on.cutover hook %d failed: %s\n  the stream " ..
        "has stopped and its progress is saved; fix the hook and run the task again to retry the cutover",
        i, tostring(err)))
    end
  end
  return #hooks
end

return M
