-- The control socket's secrets filter (tide.live.mask), without a server: every spelling of a
-- task's passwords that a REPL session could print is replaced.
local T = require "testlib"
local tide = require "tide"
local mask = require "tide.live.mask"

T.test("passwords are found in keyword and URI conninfo strings", function()
  T.eq(mask.passwords("host=a password=pw1 dbname=x"), { "pw1" })
  T.eq(mask.passwords("host=a password = 'two words\\'q' user=u"), { "two words'q" })
  T.eq(mask.passwords("postgresql://user:p%40ss@host:5432/db"), { "p%40ss" })
  T.eq(mask.passwords("postgres://u@h/db?sslmode=require&password=qq"), { "qq" })
  T.eq(mask.passwords("host=a dbname=x"), {})
  T.eq(mask.passwords("postgresql://u@h/db"), {})
end)

T.test("the filter replaces every spelling of the task's secrets and nothing else", function()
  local task = tide.task {
    name = "mask-test",
    source = "postgresql://app:p%40ss\"w@src.example/shop",
    target = "host=tgt.example password='t\\'op' dbname=shop",
  }
  local filter = mask.filter(task)
  local lines = {
    "postgresql://app:p%40ss\"w@src.example/shop",   -- the raw conninfo
    "p@ss\"w",                                        -- URL-decoded
    string.format("%q", "p@ss\"w"),                   -- as the pretty printer shows it
    '{"pw":"p@ss\\"w"}',                              -- as JSON carries it
    "t'op and t\\'op",
  }
  for _, line in ipairs(lines) do
    local out = filter(line)
    T.nomatch(out, "p@ss", line)
    T.nomatch(out, "p%%40ss", line)
    T.nomatch(out, "t'op", line)
    T.match(out, "%*%*%*%*%*%*%*%*", line)
  end
  T.eq(filter("host=src.example dbname=shop rows=42"), "host=src.example dbname=shop rows=42")
  T.nomatch(tostring(task), "p@ss")
end)
