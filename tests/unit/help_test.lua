-- `pgtide help`: each command's first sentence whole, wrapped to the terminal's width with a
-- hanging indent.
local T = require "testlib"
local cli = require "tide.cli"

local PGTIDE = os.getenv("PGTIDE") or "build/pgtide"

T.test("wrap: words fill lines up to the width, later lines get the hanging indent", function()
  T.eq(cli.wrap("aaa bbb ccc ddd eee", 12, 4, "x: "), { "x: aaa bbb", "    ccc ddd", "    eee" })
  -- exactly the width fits; one more character moves the word
  T.eq(cli.wrap("abcd efgh", 9, 0, ""), { "abcd efgh" })
  T.eq(cli.wrap("abcd efghi", 9, 0, ""), { "abcd", "efghi" })
  -- a word longer than the width stays whole on its own line
  T.eq(cli.wrap("a verylongwordindeed b", 8, 2, ""), { "a", "  verylongwordindeed", "  b" })
  -- no first prefix: the first line is indented too
  T.eq(cli.wrap("one two three", 10, 3), { "   one two", "   three" })
  -- runs of spaces and newlines are one space
  T.eq(cli.wrap("one\n  two", 40, 0, ""), { "one two" })
  -- characters, not bytes: "—" is one column
  T.eq(cli.wrap("ab — cd", 7, 0, ""), { "ab — cd" })
end)

T.test("first_sentence: the description up to the first sentence end, whole", function()
  T.eq(cli.first_sentence("x FILE\n  Do this, then\n  that. And more."), "Do this, then that.")
  T.eq(cli.first_sentence("x\n  See docs/live.md for more. Next."), "See docs/live.md for more.")
  T.eq(cli.first_sentence("x\n  Tools (a, b, ...). Next."), "Tools (a, b, ...).")
  T.eq(cli.first_sentence("x\n  No period at all"), "No period at all")
  T.eq(cli.first_sentence("x\n  Ends here."), "Ends here.")
end)

T.test("command_lines: a hanging indent; a long synopsis or a narrow terminal puts the text below", function()
  local lines = cli.command_lines("plan FILE", "one two three four five six seven eight nine ten", 80)
  T.eq(lines, { "  plan FILE" .. string.rep(" ", 31) .. "one two three four five six seven",
                string.rep(" ", 42) .. "eight nine ten" })
  lines = cli.command_lines(string.rep("s", 45), "short text", 80)
  T.eq(lines, { "  " .. string.rep("s", 45), string.rep(" ", 42) .. "short text" })
  lines = cli.command_lines("plan FILE", "one two three four five", 50)
  T.eq(lines, { "  plan FILE", "      one two three four five" })
  -- a synopsis wider than the terminal is wrapped too
  lines = cli.command_lines("new FILE --source URL --target URL", "Write it.", 24)
  T.eq(lines, { "  new FILE --source URL", "    --target URL", "      Write it." })
  lines = cli.command_lines("new FILE [--name NAME]", "Write it.", 20)
  T.eq(lines, { "  new FILE", "    [--name NAME]", "      Write it." })
end)

T.test("pgtide help: every line within COLUMNS, every command's first sentence whole", function()
  for _, cols in ipairs({ 80, 100, 60 }) do
    local code, out = T.sh("COLUMNS=" .. cols .. " " .. PGTIDE .. " help")
    T.eq(code, 0, out)
    local in_commands = false
    for line in out:gmatch("[^\n]*") do
      if line == "commands:" then in_commands = true elseif line == "" then in_commands = false end
      if in_commands then T.ok(utf8.len(line) <= cols, "longer than " .. cols .. ": " .. line) end
    end
    -- The text joined back: sentences end whole (not cut after the first line as before).
    local joined = out:gsub("\n%s+", " ")
    T.match(joined, "Run the task the playbook FILE returns: prechecks, then the phases it lists in `migrate` " ..
                    "%(schema, full, incremental%), then its cutover hooks%.")
    T.match(joined, "condition's verdict and last error %(docs/live%.md%)%.")
  end
  -- No COLUMNS: 80.
  local code, out = T.sh("env -u COLUMNS " .. PGTIDE .. " help")
  T.eq(code, 0, out)
  for line in out:gmatch("[^\n]*") do
    if line:match("^  %a") or line:match("^      ") then T.ok(utf8.len(line) <= 80, line) end
  end
end)
