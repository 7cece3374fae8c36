-- The command line as a user meets it: help, version, playbook mistakes, the REPL.
local T = require "testlib"

local PGTIDE = os.getenv("PGTIDE") or "build/pgtide"

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  return path
end

local function tmpfile(ctx, name, text)
  return write(ctx.tmpdir .. "/" .. name, text)
end

local function run(args)
  return T.sh(PGTIDE .. " " .. args)
end

T.test("--version and help", function()
  local code, out = run("--version")
  T.eq(code, 0)
  T.match(out, "^pgtide %d+%.%d+%.%d+")
  code, out = run("help")
  T.eq(code, 0)
  T.match(out, "run FILE")
  T.match(out, "exit status")
  code, out = run("help plan")
  T.eq(code, 0)
  T.match(out, "writing nothing")
  code = run("help nosuch")
  T.eq(code, 2)
  code, out = run("frobnicate")
  T.eq(code, 2)
  T.match(out, "unknown command 'frobnicate'")
end)

T.test("a playbook syntax error prints FILE:LINE: message and nothing alarming", function(ctx)
  local f = tmpfile(ctx, "syntax.lua", 'local tide = require "tide"\nreturn tide.task {\n  name = "x"\n  source = "a",\n}\n')
  local code, out = run("run " .. f)
  T.eq(code, 3)
  T.match(out, "^" .. f:gsub("%p", "%%%0") .. ":4: '}' expected %(to close '{' at line 2%) near 'source'\n$")
  T.nomatch(out, "traceback")
  T.nomatch(out, "internal")
end)

T.test("an unknown key names the key, its line and a suggestion", function(ctx)
  local f = tmpfile(ctx, "unknown.lua", [[
local tide = require "tide"
return tide.task {
  name = "demo",
  source = "host=a", target = "host=b",
  migrat = { "schema" },
}
]])
  local code, out = run("run " .. f)
  T.eq(code, 3)
  T.match(out, "unknown%.lua:5: unknown key 'migrat' in tide.task %(did you mean 'migrate'%?%)")
  T.nomatch(out, "traceback")
end)

T.test("a wrong type names the key, the expected type and the line", function(ctx)
  local f = tmpfile(ctx, "wrongtype.lua", [[
local tide = require "tide"
return tide.task {
  name = "demo",
  source = "host=a",
  target = "host=b",
  migrate = "schema",
  full = {
    jobs = "four",
  },
}
]])
  local code, out = run("run " .. f)
  T.eq(code, 3)
  T.match(out, "wrongtype%.lua:6: tide.task.migrate must be a list such as")
  write(f, (io.open(f):read("a"):gsub('migrate = "schema",', 'migrate = { "schema" },')))
  code, out = run("run " .. f)
  T.eq(code, 3)
  T.match(out, "wrongtype%.lua:8: full.jobs must be \"auto\" %(pgtide measures and adjusts the count%) or a positive integer %(a fixed count%), got the string \"four\"")
end)

T.test("a missing key, a runtime error and a playbook that returns nothing", function(ctx)
  local f = tmpfile(ctx, "missing.lua", 'local tide = require "tide"\nreturn tide.task { name = "x", source = "a" }\n')
  local code, out = run("run " .. f)
  T.eq(code, 3)
  T.match(out, "missing%.lua:2: tide.task needs 'target'")
  f = tmpfile(ctx, "boom.lua", 'local x = nil\nlocal y = x.field\n')
  code, out = run("run " .. f)
  T.eq(code, 3)
  T.match(out, "boom%.lua:2: attempt to index a nil value")
  f = tmpfile(ctx, "nothing.lua", 'local tide = require "tide"\n')
  code, out = run("run " .. f)
  T.eq(code, 3)
  T.match(out, "must end with `return tide.task")
  code, out = run("run " .. ctx.tmpdir .. "/does-not-exist.lua")
  T.eq(code, 3)
  T.match(out, "cannot open the playbook")
end)

T.test("an unreachable server is a connection error (4) without the password", function(ctx)
  local f = tmpfile(ctx, "unreachable.lua", [[
local tide = require "tide"
return tide.task { name = "x", source = "postgresql://u:topsecret@127.0.0.1:1/db",
                   target = "postgresql://u:topsecret@127.0.0.1:1/db2" }
]])
  local code, out = run("run " .. f)
  T.eq(code, 4)
  T.match(out, "cannot connect to the source")
  T.match(out, "hint: check host and port")
  T.nomatch(out, "topsecret")
end)

T.test("the REPL prints expressions and accepts multi-line chunks from a pipe", function(ctx)
  local input = tmpfile(ctx, "repl-in.txt", table.concat({
    "1+1",
    "function twice(x)",
    "  return 2 * x",
    "end",
    "twice(21)",
    "{ answer = twice(21), list = {1, 2} }",
    "error('oops')",
    "'still alive'",
  }, "\n") .. "\n")
  local code, out = T.sh(PGTIDE .. " repl < " .. input)
  T.eq(code, 0)
  local lines = {}
  for line in out:gmatch("[^\n]+") do lines[#lines + 1] = line end
  T.eq(lines[1], "2")
  T.eq(lines[2], "42")
  T.match(out, "answer = 42")
  T.match(out, "repl:1: oops")
  T.match(out, '"still alive"\n$')
end)

T.test("the REPL can wait on the engine (tide.sleep, spawn)", function(ctx)
  local input = tmpfile(ctx, "repl-in2.txt",
    "h = tide.spawn(function(a, b) tide.sleep(0.01) return a + b end, 2, 3)\nh:wait()\n")
  local code, out = T.sh(PGTIDE .. " repl < " .. input)
  T.eq(code, 0)
  T.match(out, "^5\n$")
end)

T.test("pgtide script runs a file with arguments and returns its status", function(ctx)
  local f = tmpfile(ctx, "script.lua", "print(select('#', ...), arg[1], arg[2]) return 7\n")
  local code, out = T.sh(PGTIDE .. " script " .. f .. " a b")
  T.eq(code, 7)
  T.eq(out, "2\ta\tb\n")
end)
