-- tide.log: the same line in text and in JSON, RFC 3339 times, and the run's phase and task.
local T = require "testlib"
local tide = require "tide"
local json = require "tide.json"
local log = require "tide.log"
local taskrun = require "tide.taskrun"

-- A file-like sink.
local function sink()
  local s = { text = "" }
  function s:write(...) for _, v in ipairs({ ... }) do self.text = self.text .. v end return self end
  function s:flush() end
  return s
end

T.test("text: the line a person reads; json: one object per line with the fields", function()
  local out = sink()
  log.configure { format = "text", out = out }
  log.warning("table_dropped", "table public.x was dropped", { table = "public.x" })
  log.write("warning", "conflict", "conflict insert_exists on public.t", { table = "public.t" })
  T.eq(out.text, "pgtide: warning: table public.x was dropped\npgtide: conflict insert_exists on public.t\n")

  local run = taskrun.new(tide.task { name = "logunit", source = "host=a", target = "host=b" })
  run:set_phase("incremental")
  out = sink()
  log.configure { format = "json", out = out, run = run }
  log.warning("conflict", "two\nlines", { table = "public.t", key = "(id)=(1)" })
  log.error("failed", "it broke", { exit_status = 1 })
  local lines = {}
  for line in out.text:gmatch("([^\n]*)\n") do lines[#lines + 1] = line end
  T.eq(#lines, 2, out.text)
  local a, b = json.decode(lines[1]), json.decode(lines[2])
  T.eq(a.level, "warning"); T.eq(a.event, "conflict"); T.eq(a.message, "two\nlines"); T.eq(a.table, "public.t")
  T.eq(a.phase, "incremental"); T.eq(a.task, "logunit")
  T.eq(b.level, "error"); T.eq(b.exit_status, 1)
  T.match(a.time, "^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%d%d%d%dZ$")
  T.ok(run.last_error_logged, "an error line is remembered for the metrics")
  log.configure { format = "text", out = io.stderr }
end)

T.test("timestamps are UTC with microseconds", function()
  T.eq(log.timestamp(0), "1970-01-01T00:00:00.000000Z")
  T.eq(log.timestamp(1700000000.25), "2023-11-14T22:13:20.250000Z")
  T.eq(log.timestamp(1.9999999), "1970-01-01T00:00:02.000000Z")
end)
