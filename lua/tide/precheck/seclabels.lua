-- Prechecks about security labels (SECURITY LABEL FOR provider ON ...): the schema phase writes
-- each label of the source with its provider, and the target server refuses a label whose
-- provider is not loaded there ("security label provider ... is not loaded"), failing the phase.
--
-- There is no catalog of the loaded providers: they are C modules that register themselves
-- when loaded (shared_preload_libraries, usually). So the check asks the server with a
-- statement that always fails, and reads which error it got. ExecSecLabelStmt looks the
-- provider up before anything else, so
--   SECURITY LABEL FOR p ON LARGE OBJECT 0 IS NULL
-- fails with 22023 (invalid_parameter_value, "provider p is not loaded" or "no security label
-- providers have been loaded") when p is missing, and otherwise with 42704 (undefined_object,
-- "large object 0 does not exist": no large object has oid 0) before ownership is checked or
-- the provider's hook called. It changes nothing, needs no privilege, and fails the same way
-- inside a read/write transaction of its own (the precheck connection is in autocommit).
local context = require "tide.precheck.context"

local M = {}

local PROBE = "SECURITY LABEL FOR %s ON LARGE OBJECT 0 IS NULL"

-- "loaded", "missing", or raises with the server's words when the answer is neither.
function M.provider_state(conn, provider)
  local ok, err = conn:exec(string.format(PROBE, context.quote(provider)))
  if ok then return "loaded" end   -- (a large object 0 cannot exist; if it did, nothing changed)
  local sqlstate = type(err) == "table" and err.sqlstate or nil
  if sqlstate == "42704" then return "loaded" end
  if sqlstate == "22023" then return "missing" end
  error(string.format("cannot tell whether the security label provider %s is loaded on the target: %s",
    provider, type(err) == "table" and tostring(err.message or err.sqlstate) or tostring(err)), 0)
end

local function describe_list(list)
  local names = {}
  for i, label in ipairs(list) do
    if i > 3 then names[#names + 1] = "and " .. (#list - 3) .. " more"; break end
    names[#names + 1] = label.reference
  end
  return table.concat(names, ", ")
end

M.checks = {
  {
    id = "security_label_provider", title = "Security labels whose provider the target server lacks", grade = "fail",
    applies = function(ctx) return ctx.phases.schema == true end,
    run = function(ctx)
      local providers, by_provider = {}, {}
      for _, label in ipairs(ctx.plan.security_labels or {}) do
        if not by_provider[label.provider] then
          by_provider[label.provider] = {}
          providers[#providers + 1] = label.provider
        end
        table.insert(by_provider[label.provider], label)
      end
      if #providers == 0 then return {} end
      local out
      for _, provider in ipairs(providers) do
        if M.provider_state(ctx.target, provider) == "missing" then
          -- What the source loads, when its role may read the setting: most often the answer.
          local preload = ctx:once("source_shared_preload_libraries", function()
            return ctx:query("source", [[
SELECT CASE WHEN r.rolsuper OR pg_has_role(current_user, 'pg_read_all_settings', 'USAGE')
            THEN current_setting('shared_preload_libraries') END AS libraries
FROM pg_roles r WHERE r.rolname = current_user
]])[1].libraries or false
          end)
          local list = by_provider[provider]
          -- One finding per provider, about no particular object (never scoped away).
          local f = context.finding(nil,
            string.format("%d security label(s) of provider %s (%s): the provider is not loaded on the target server, so SECURITY LABEL FOR %s would fail",
              #list, context.quote(provider), describe_list(list), context.quote(provider)),
            "load the module that registers the provider " .. context.quote(provider) ..
              " on the target: add it to shared_preload_libraries in postgresql.conf and restart the server" ..
              (preload and preload ~= "" and (" (the source has shared_preload_libraries = '" .. preload .. "')") or "") ..
              "; or leave the labels out with schema.security_labels = false")
          f.object = "security label provider " .. context.quote(provider)
          out = out or {}
          out[#out + 1] = f
        end
      end
      return out or {}
    end,
  },
}

return M
