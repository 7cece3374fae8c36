-- Installing pgtide (docs/install.md): `make install` / `make uninstall` with DESTDIR and
-- PREFIX, the man page docs/pgtide.1 (renders without warnings, and names every command,
-- option, exit status and environment variable the code has), the bash completion
-- scripts/pgtide.bash-completion (driven as bash drives it), and the Debian package of
-- `make deb`, installed for real with apt-get, used for a migration, then removed again.
local T = require "testlib"
local P = require "pg"
local tide = require "tide"
local H = require "tidetest"

local function quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function have(tool) return (T.sh("command -v " .. tool)) == 0 end

-- The build folder of the binary under test (make's BUILD), so `make install` installs it
-- rather than another build.
local BUILD = H.PGTIDE:match("^(.*)/[^/]+$") or "."

-- Under `make test-asan` the binary is a sanitizer build: make is told so, or a relink (a Lua
-- file newer than the binary) would drop the sanitizer's flags and leave no binary at all.
local SAN_FLAGS = os.getenv("ASAN_OPTIONS") and " SAN=1 OPT=-O1" or ""

-- `-o BUILD/pgtide`: make installs the binary under test as it is, never relinks it (other
-- test files run it at the same time: a relink made it unexecutable for a moment).
local function make(args)
  return T.sh("make --no-print-directory BUILD=" .. quote(BUILD) .. SAN_FLAGS .. " -o " .. quote(BUILD .. "/pgtide") ..
              " " .. args)
end

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function exists(path) return os.rename(path, path) ~= nil end

local function version_line()
  local code, out = H.run("--version")
  T.eq(code, 0, out)
  T.match(out, "^pgtide %d+%.%d+")
  return out
end

-- The commands `pgtide help` lists, in its order.
local function help_commands()
  local code, out = H.run("help")
  T.eq(code, 0, out)
  local list = {}
  local text = out:match("\ncommands:\n(.-)\n\n")
  T.ok(text, "pgtide help has a commands: list\n" .. out)
  for line in text:gmatch("[^\n]+") do list[#list + 1] = line:match("^  (%S+)") end
  T.ok(#list >= 5, "pgtide help lists its commands\n" .. out)
  return list
end

-- The options in the first line of `pgtide help COMMAND` ("--json", "-e", ...).
local function help_options(command)
  local code, out = H.run("help " .. command)
  T.eq(code, 0, out)
  local list = {}
  for opt in out:match("^[^\n]*"):gmatch("%[(%-%-?[%w%-]+)") do list[#list + 1] = opt end
  return list
end

local function reset(ctx)
  local s, t = P.clean(ctx)
  assert(s:exec([[CREATE TABLE items (id int PRIMARY KEY, label text, price numeric(8,2));
    INSERT INTO items SELECT g, 'item ' || g, g * 1.25 FROM generate_series(1, 2500) g]]))
  return s, t
end

------------------------------------------------------------------------ make install

T.test("make install puts the binary, man page and completion under DESTDIR/PREFIX; uninstall removes them", function(ctx)
  local root = ctx.tmpdir .. "/install-root"
  os.execute("rm -rf " .. quote(root))
  local code, out = make("install DESTDIR=" .. quote(root) .. " PREFIX=/usr")
  T.eq(code, 0, out)
  local files = {
    bin = root .. "/usr/bin/pgtide",
    man = root .. "/usr/share/man/man1/pgtide.1",
    completion = root .. "/usr/share/bash-completion/completions/pgtide",
  }
  for what, path in pairs(files) do T.ok(exists(path), what .. " installed at " .. path .. "\n" .. out) end
  T.eq(read(files.man), read("docs/pgtide.1"), "the installed man page")
  T.eq(read(files.completion), read("scripts/pgtide.bash-completion"), "the installed completion")
  local _, mode = T.sh("stat -c %a " .. quote(files.bin) .. " " .. quote(files.man))
  T.eq(mode, "755\n644\n", "binary executable, man page not")
  -- The installed binary runs on its own: the Lua modules are inside it (no PGTIDE_LUA_DIR).
  local vcode, vout = T.sh("env -u PGTIDE_LUA_DIR " .. quote(files.bin) .. " --version")
  T.eq(vcode, 0, vout)
  T.eq(vout, version_line())
  -- Without PREFIX the files go under /usr/local (dry run: nothing is written there).
  local _, dry = make("-n install DESTDIR=" .. quote(root))
  T.match(dry, root:gsub("%p", "%%%0") .. "/usr/local/bin/pgtide", "default PREFIX")
  T.match(dry, "/usr/local/share/man/man1/pgtide%.1")

  code, out = make("uninstall DESTDIR=" .. quote(root) .. " PREFIX=/usr")
  T.eq(code, 0, out)
  for what, path in pairs(files) do T.ok(not exists(path), what .. " removed from " .. path) end
  os.execute("rm -rf " .. quote(root))
end)

------------------------------------------------------------------------ the man page

T.test("the man page renders without warnings and names every command, option, exit status and variable", function()
  if not have("groff") then T.skip("groff is not installed (groff-base)") end
  for _, device in ipairs({ "utf8", "ascii" }) do
    local code, out = T.sh("groff -man -T" .. device .. " -ww -z docs/pgtide.1")
    T.eq(code, 0, out)
    T.eq(out, "", "groff -T" .. device .. " warnings")
  end

  -- The text as a reader sees it (no overstriking for bold and underline).
  local _, text = T.sh("groff -man -Tascii -P-cbu docs/pgtide.1")
  local function section(title)
    local body = text:match("\n" .. title .. "\n(.-)\n%u[%u ]+\n")
    T.ok(body, "the man page has a section " .. title)
    return "\n" .. body
  end
  local commands = section("COMMANDS") .. "\n   "
  for _, name in ipairs(help_commands()) do
    -- Each command has its own subsection "pgtide NAME ..." holding its options.
    local sub = commands:match("\n   pgtide " .. name:gsub("%p", "%%%0") .. "([ \n].-)\n   %S")
    T.ok(sub, "the man page has a subsection for command " .. name)
    for _, opt in ipairs(help_options(name)) do
      T.ok(sub:find("\n +" .. opt:gsub("%p", "%%%0") .. "%f[^%w%-]"),
           "man page: option " .. opt .. " of " .. name .. " is described")
    end
  end
  local exit_section = section("EXIT STATUS")
  local statuses = dofile("lua/tide/exit.lua")
  T.ok(statuses.ok == 0 and statuses.internal, "lua/tide/exit.lua read")
  for name, status in pairs(statuses) do
    T.ok(exit_section:find("\n +" .. status .. "%f[%s]"), "man page: exit status " .. status .. " (" .. name .. ")")
  end
  -- Every environment variable the engine or its Lua modules read (outside comments) is described.
  local environment = section("ENVIRONMENT")
  local _, lines = T.sh([[grep -rE 'getenv *\(? *"[A-Z_]+"' engine lua]])
  local names, count = {}, 0
  for file, line in lines:gmatch("([^\n:]+):([^\n]*)") do
    local program = file:find("%.lua$") and line:gsub("%-%-.*", "") or line:gsub("/%*.*", ""):gsub("^%s*%*.*", "")
    for name in program:gmatch('getenv *%(? *"([A-Z_]+)"') do
      if not names[name] then count = count + 1 end
      names[name] = true
      T.ok(environment:find("\n +" .. name .. "%f[%s]"), "man page: environment variable " .. name .. " (" .. file .. ")")
    end
  end
  T.ok(count >= 4, "environment variables found in the sources:\n" .. lines)
end)

------------------------------------------------------------------------ bash completion

-- Completions offered for the command line `words` (the last word is the one being typed),
-- as bash's programmable completion would ask for them: the function `complete -p pgtide`
-- names, with COMP_WORDS and COMP_CWORD set. `env`: extra environment ("NAME=value ...").
local function complete(words, env)
  local script = [[
source scripts/pgtide.bash-completion || exit 1
spec=$(complete -p pgtide) || exit 1
fn=${spec#*-F }; fn=${fn%% *}
COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}; COMPREPLY=()
"$fn" pgtide "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}" || exit 1
for w in "${COMPREPLY[@]}"; do printf '%s\n' "$w"; done]]
  local args = {}
  for i, w in ipairs(words) do args[i] = quote(w) end
  local code, out = T.sh((env and ("env " .. env .. " ") or "") .. "bash --norc --noprofile -c " .. quote(script) ..
                         " _ " .. table.concat(args, " "))
  T.eq(code, 0, "completing " .. table.concat(words, " ") .. ": " .. out)
  local set = {}
  for line in out:gmatch("[^\n]+") do set[line] = true end
  return set
end

local function set_of(list)
  local set = {}
  for _, v in ipairs(list) do set[v] = true end
  return set
end

T.test("bash completion: commands, options per command, playbook files, running task names", function(ctx)
  if not have("bash") then T.skip("bash is not installed") end
  local bin = H.PGTIDE
  local commands = help_commands()

  -- The commands: every one `pgtide help` lists, nothing else but the global options.
  local got = complete({ bin, "" })
  for _, name in ipairs(commands) do T.ok(got[name], "command " .. name .. " offered:\n" .. T.dump(got)) end
  local expected = set_of(commands)
  for w in pairs(got) do T.ok(expected[w] or w:find("^%-%-"), "unexpected completion " .. w) end
  local want = {}
  for _, name in ipairs(commands) do if name:find("^s") then want[name] = true end end
  T.eq(complete({ bin, "s" }), want, "commands starting with s")
  T.eq(complete({ bin, "help", "ver" }), { verify = true }, "help COMMAND")

  -- Where a FILE is expected: *.lua files and directories, nothing else.
  local dir = ctx.tmpdir .. "/playbooks"
  os.execute("rm -rf " .. quote(dir) .. " && mkdir -p " .. quote(dir .. "/more"))
  for _, f in ipairs({ "shop.lua", "old move.lua", "notes.txt", "shop.lua.bak" }) do
    assert(io.open(dir .. "/" .. f, "w")):close()
  end
  local files = { [dir .. "/shop.lua"] = true, [dir .. "/old move.lua"] = true, [dir .. "/more"] = true }
  T.eq(complete({ bin, "run", dir .. "/" }), files, "run FILE")
  T.eq(complete({ bin, "verify", "--json", dir .. "/" }), files, "verify --json FILE")
  T.eq(complete({ bin, "plan", dir .. "/s" }), { [dir .. "/shop.lua"] = true }, "plan FILE with a prefix")

  -- Options: every option `pgtide help COMMAND` shows, after the FILE as well.
  for _, name in ipairs(commands) do
    local opts = help_options(name)
    if #opts > 0 then
      local offered = complete({ bin, name, "-" })
      for _, opt in ipairs(opts) do
        T.ok(offered[opt], "option " .. opt .. " of " .. name .. " offered:\n" .. T.dump(offered))
      end
    end
  end
  T.eq(complete({ bin, "verify", "shop.lua", "--t" }), { ["--table"] = true })
  T.eq(complete({ bin, "check", "shop.lua", "--" }), { ["--json"] = true }, "check has only --json")
  T.eq(complete({ bin, "verify", "shop.lua", "--table", "" }), {}, "a table name is not a file")
  got = complete({ bin, "run", "shop.lua", "" })
  T.ok(got["--no-precheck"] and not got["--table"], "run's options after its FILE:\n" .. T.dump(got))

  -- Running tasks for status and attach, from `pgtide status --json`: a task held in its
  -- planning phase by a lock on a source table.
  local run_dir = ctx.tmpdir .. "/xdg-completion"
  os.execute("rm -rf " .. quote(run_dir) .. " && mkdir -p " .. quote(run_dir) .. " && chmod 700 " .. quote(run_dir))
  local env = "XDG_RUNTIME_DIR=" .. quote(run_dir)
  T.eq(complete({ bin, "attach", "" }, env), {}, "no running task, no names")
  -- A socket left over from an ended process (bound, never listening): listed as stale, not offered.
  os.execute("mkdir -p -m 700 " .. quote(run_dir .. "/pgtide"))
  local code, out = T.sh("python3 -c 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' " ..
                         quote(run_dir .. "/pgtide/ended-task.sock"))
  T.eq(code, 0, out)
  reset(ctx)
  local holder = assert(tide.connect(ctx.source_url))
  assert(holder:exec("BEGIN; LOCK TABLE items IN ACCESS EXCLUSIVE MODE"))
  local pb = H.playbook(ctx, "completion-task", [[migrate = { "schema", "full" }, progress = "none",]])
  local log = ctx.tmpdir .. "/completion-task.log"
  local proc = assert(tide.process({ "/usr/bin/env", "XDG_RUNTIME_DIR=" .. run_dir, bin, "run", pb,
                                     stdout = log, stderr = log }))
  local ok, err = pcall(function()
    P.wait_for("the task's control socket", function()
      local status_code, listing = T.sh(env .. " " .. bin .. " status --json")
      return status_code == 0 and listing:find('"task":"completion-task"', 1, true)
    end)
    local _, listed = T.sh(env .. " " .. bin .. " status --json")
    T.ok(listed:find('"task":"ended-task"', 1, true), "the stale socket is listed:\n" .. listed)
    T.eq(complete({ bin, "attach", "" }, env), { ["completion-task"] = true }, "attach NAME")
    T.eq(complete({ bin, "status", "compl" }, env), { ["completion-task"] = true }, "status NAME")
    T.eq(complete({ bin, "status", "x" }, env), {}, "status with a prefix no task has")
    T.eq(complete({ bin, "attach", "completion-task", "-" }, env), { ["-e"] = true, ["--control"] = true })
  end)
  holder:exec("COMMIT")
  holder:close()
  code = P.poll(60, function() return proc:exited() end) and proc:wait()
  if not code then proc:kill(9); proc:wait() end
  if not ok then error(err, 0) end
  T.eq(code, 0, "the held task finished once released:\n" .. H.read(log))
end)

------------------------------------------------------------------------ the Debian package

-- The packages `apt-get install -s` would install, upgrade or remove besides pgtide.
local function others_in_simulation(out)
  local others = {}
  for verb, pkg in out:gmatch("\n(%u%l%l%l) (%S+)") do
    if (verb == "Inst" or verb == "Remv") and pkg ~= "pgtide" then others[#others + 1] = verb .. " " .. pkg end
  end
  return others
end

-- The Debian package of every shared library the binary needs, found by its resolved path.
local function library_packages(binary)
  local _, needed = T.sh("objdump -p " .. quote(binary) .. " | awk '$1 == \"NEEDED\" { print $2 }'")
  local _, ldd = T.sh("ldd " .. quote(binary))
  local packages = {}
  for lib in needed:gmatch("%S+") do
    local path = ldd:match("%f[%S]" .. lib:gsub("%p", "%%%0") .. " => (%S+)")
    T.ok(path, "ldd resolves " .. lib)
    local _, real = T.sh("realpath " .. quote(path))
    local _, owners = T.sh("dpkg -S " .. quote("*/" .. lib))
    local found
    for pkg, file in owners:gmatch("([^\n:]+)[^\n]-: ([^\n]+)") do
      local _, file_real = T.sh("realpath " .. quote(file))
      if file_real == real then found = pkg end
    end
    T.ok(found, "the package of " .. lib .. " (" .. path .. "):\n" .. owners)
    packages[lib] = found
  end
  return packages
end

T.test("make deb builds a package that apt installs alone and that migrates; dpkg -r removes it", function(ctx)
  local _, uid = T.sh("id -u")
  if uid ~= "0\n" then T.skip("needs root: installs the package with apt-get") end
  if os.getenv("ASAN_OPTIONS") then T.skip("a sanitizer build is not packaged (it depends on libasan)") end
  for _, tool in ipairs({ "dpkg-deb", "dpkg-shlibdeps", "apt-get", "objdump" }) do
    if not have(tool) then T.skip(tool .. " is not installed (make deps)") end
  end
  local status_code = T.sh("dpkg-query -W -f='${Status}' pgtide 2>/dev/null | grep -q 'install ok'")
  if status_code == 0 then T.skip("a pgtide package is already installed here; the test would replace it") end
  if exists("/usr/bin/pgtide") then T.skip("/usr/bin/pgtide exists (not from a package); the test would replace it") end

  local code, out = make("deb")
  T.eq(code, 0, out)
  local version = version_line():match("^pgtide (%S+)")
  local _, arch = T.sh("dpkg --print-architecture")
  arch = arch:gsub("%s+$", "")
  local deb = string.format("%s/pgtide_%s_%s.deb", BUILD, version, arch)
  T.ok(exists(deb), deb .. " built:\n" .. out)

  local function field(name)
    local _, v = T.sh("dpkg-deb -f " .. quote(deb) .. " " .. name)
    return (v:gsub("%s+$", ""))
  end
  T.eq(field("Package"), "pgtide")
  T.eq(field("Version"), version)
  T.eq(field("Architecture"), arch)
  T.match(field("Maintainer"), "%S+ <[^>]+>")
  T.ok(field("Section") ~= "" and field("Description") ~= "", "Section and Description")
  -- Depends names the package of every library the binary links, with a minimum version.
  local depends = field("Depends")
  for lib, pkg in pairs(library_packages(H.PGTIDE)) do
    local name = pkg:gsub(":.*", "")
    T.ok(depends:find("%f[%w%-%.]" .. name:gsub("%p", "%%%0") .. " %(>= [^)]+%)"),
         "Depends names " .. name .. " (for " .. lib .. ") with a version: " .. depends)
  end
  local _, listing = T.sh("dpkg-deb -c " .. quote(deb))
  for _, path in ipairs({ "./usr/bin/pgtide", "./usr/share/man/man1/pgtide.1.gz",
                          "./usr/share/bash-completion/completions/pgtide" }) do
    T.match(listing, " root/root .* " .. path:gsub("%p", "%%%0") .. "\n", "the package holds " .. path)
  end

  -- Only pgtide would be installed: nothing else installed, upgraded or removed.
  local apt = "DEBIAN_FRONTEND=noninteractive apt-get -q "
  code, out = T.sh(apt .. "install -s " .. quote(deb))
  T.eq(code, 0, out)
  T.match(out, "\nInst pgtide ", "the simulation installs pgtide")
  local others = others_in_simulation(out)
  if #others > 0 then
    error("installing the package would also change: " .. table.concat(others, ", ") .. " — not installed", 0)
  end

  reset(ctx)
  code, out = T.sh(apt .. "install -y " .. quote(deb))
  local ok, err = pcall(function()
    T.eq(code, 0, out)
    local vcode, vout = T.sh("env -u PGTIDE_LUA_DIR /usr/bin/pgtide --version")
    T.eq(vcode, 0, vout)
    T.eq(vout, version_line(), "the installed binary's version")
    T.ok(exists("/usr/share/man/man1/pgtide.1.gz") and exists("/usr/share/bash-completion/completions/pgtide"),
         "man page and completion installed")
    -- A real migration with the installed binary.
    local pb = H.playbook(ctx, "deb-move", [[migrate = { "schema", "full" }, progress = "plain",]])
    local rcode, rout = T.sh("env -u PGTIDE_LUA_DIR /usr/bin/pgtide run " .. quote(pb))
    T.eq(rcode, 0, rout)
    local s, t = P.connect_both(ctx)
    T.eq(P.query(ctx.target_url, "SELECT count(*) AS n FROM items")[1].n, 2500)
    P.same(s, t, "items")
    s:close(); t:close()
  end)
  -- Leave the machine as it was, also when a check failed.
  local rcode, rout = T.sh("dpkg -r pgtide")
  if not ok then error(err, 0) end
  T.eq(rcode, 0, rout)
  T.ok(not exists("/usr/bin/pgtide"), "dpkg -r removed /usr/bin/pgtide")
  local still = T.sh("dpkg-query -W -f='${Status}' pgtide 2>/dev/null | grep -q 'install ok'")
  T.ok(still ~= 0, "pgtide is no longer installed")
end)
