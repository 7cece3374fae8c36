-- tide.wait — waiting for several coroutines of the engine (tide.core.spawn handles) at once.
--   wait.all{h1, h2, ...} → { {ok=true, values={...}} | {ok=false, err=e}, ... }, in order;
--   every handle is waited for, whatever the others did.
-- The playbook API re-exports it as tide.wait_all.
local M = {}

function M.all(handles)
  local out = {}
  for i, h in ipairs(handles) do
    local r = table.pack(pcall(h.wait, h))
    if r[1] then
      out[i] = { ok = true, values = table.pack(table.unpack(r, 2, r.n)) }
    else
      out[i] = { ok = false, err = r[2] }
    end
  end
  return out
end

return M
