-- tide.secret — secrets inside DDL: the password (and similar) options of user mappings,
-- servers and foreign-data wrappers.
--
-- A step's `sql` is what pgtide shows everywhere (`pgtide plan`, its JSON, progress lines,
-- error messages, the plan seen from a REPL): there the value of a secret option is written
-- as '********'. The statement with the real values is kept apart, in a table weakly keyed by
-- the step, and only tide.schema asks for it, to send it to the target. A server error about
-- such a statement is shown with the secret values masked too.
local M = {}

M.MASK = "********"

local real = setmetatable({}, { __mode = "k" })

-- Option names whose values are secrets (case-insensitive substrings): password, passwd,
-- sslpassword, passphrase, secret, api_key, token, ...
local SECRET_WORDS = { "pass", "pwd", "secret", "token", "credential", "apikey", "api_key", "private_key" }

function M.is_secret_option(name)
  local lower = name:lower()
  for _, word in ipairs(SECRET_WORDS) do
    if lower:find(word, 1, true) then return true end
  end
  return false
end

-- M.keep(step, sql, values): `sql` is the statement with the real values, `values` the
-- secret strings in it (masked in error messages).
function M.keep(step, sql, values)
  if sql == nil or sql == step.sql then return step end
  real[step] = { sql = sql, values = values or {} }
  return step
end

-- M.carry(from, to): the step `to` (the plan's copy of `from`) runs the same real statement.
function M.carry(from, to)
  if real[from] then real[to] = real[from] end
  return to
end

-- True when `step` carries a statement with secrets.
function M.has(step) return real[step] ~= nil end

-- What `step` carries, to give to another step with M.restore (tide.plan.relocate: the step is
-- made anew after the old one went).
function M.record(step) return real[step] end
function M.restore(step, record) real[step] = record; return step end

-- The statement to send to the target.
function M.sql(step)
  local r = real[step]
  return r and r.sql or step.sql
end

-- `text` with the step's secret values replaced by the mask (for messages about the step).
function M.hide(step, text)
  local r = real[step]
  if not r or type(text) ~= "string" then return text end
  local values = {}
  for _, v in ipairs(r.values) do
    if #v > 0 then values[#values + 1] = v; values[#values + 1] = (v:gsub("'", "''")) end
  end
  table.sort(values, function(a, b) return #a > #b end)
  for _, v in ipairs(values) do
    text = text:gsub(v:gsub("[^%w]", "%%%0"), M.MASK)
  end
  return text
end

-- Options from a list of { name, value } pairs, as two lists of "name 'value'" texts: to
-- show (secret values masked) and to run; the secret values are appended to `secrets`.
function M.options(list, quote, literal, secrets)
  local shown, run = {}, {}
  for _, option in ipairs(list or {}) do
    local name, value = option[1], option[2]
    if type(value) ~= "string" then value = "" end
    local text = quote(name) .. " " .. literal(value)
    run[#run + 1] = text
    if M.is_secret_option(name) and value ~= "" then
      shown[#shown + 1] = quote(name) .. " " .. literal(M.MASK)
      if secrets then secrets[#secrets + 1] = value end
    else
      shown[#shown + 1] = text
    end
  end
  return shown, run
end

return M
