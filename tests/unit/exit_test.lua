-- tide.exit: the exit statuses of README.md and docs/reliability.md, defined once and used by
-- the CLI, tide.failure and the live client.
local T = require "testlib"
local exit = require "tide.exit"
local failure = require "tide.failure"

-- docs/reliability.md, "Exit status"
local DOCUMENTED = { ok = 0, failed = 1, usage = 2, playbook = 3, connection = 4, precheck = 5, mismatch = 6,
                     slot_lost = 7, interrupted = 130, internal = 70 }

T.test("the statuses are the documented ones", function()
  T.eq(exit, DOCUMENTED)
end)

T.test("the CLI's EXIT is tide.exit", function()
  T.ok(require("tide.cli").EXIT == exit)
end)

T.test("a failure exits with the status of its kind", function()
  for kind, status in pairs(DOCUMENTED) do
    if kind ~= "ok" and kind ~= "internal" then
      T.eq(failure.new(kind, "x").exit, status, kind)
    end
  end
end)

T.test("success and internal errors are not failure kinds; neither is an unknown name", function()
  T.raises(function() failure.new("ok", "x") end, "unknown failure kind")
  T.raises(function() failure.new("internal", "x") end, "unknown failure kind")
  T.raises(function() failure.new("bogus", "x") end, "unknown failure kind")
end)

local PGTIDE = os.getenv("PGTIDE") or "build/pgtide"

-- `pgtide script FILE` runs FILE as a command: what it raises ends the process as any command's
-- error does.
local function script(ctx, name, text)
  local path = string.format("%s/exit_%s.lua", ctx.tmpdir, name)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  return T.sh(PGTIDE .. " script " .. path)
end

T.test("the process exits with the status of the failure raised, 3 for a playbook error, 70 for a bug", function(ctx)
  local code, out = script(ctx, "slot", 'require("tide.failure").raise("slot_lost", "the slot is gone")')
  T.eq(code, 7, out)
  T.match(out, "the slot is gone")
  code, out = script(ctx, "mismatch", 'require("tide.failure").raise("mismatch", "3 rows differ")')
  T.eq(code, 6, out)
  code, out = script(ctx, "playbook", 'require("tide.playbook").raise("f.lua:1: wrong")')
  T.eq(code, 3, out)
  T.match(out, "f%.lua:1: wrong")
  code, out = script(ctx, "bug", 'local t = nil; return t.field')
  T.eq(code, 70, out)
  T.match(out, "internal error")
  code, out = script(ctx, "fine", "return 0")
  T.eq(code, 0, out)
end)
