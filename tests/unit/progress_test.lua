-- tide.progress's figures: sizes and durations as a person reads them.
local T = require "testlib"
local progress = require "tide.progress"

T.test("human_bytes takes fractional byte counts (a rate under 1 kB/s) and whole ones", function()
  T.eq(progress.human_bytes(523.7), "523 B")
  T.eq(progress.human_bytes(0), "0 B")
  T.eq(progress.human_bytes(nil), "0 B")
  T.eq(progress.human_bytes(2048), "2.0 kB")
  T.eq(progress.human_bytes(1.5 * 1024 * 1024), "1.5 MB")
end)

T.test("human_seconds: unknown, seconds, minutes, hours", function()
  T.eq(progress.human_seconds(nil), "?")
  T.eq(progress.human_seconds(0 / 0), "?")
  T.eq(progress.human_seconds(12.34), "12.3s")
  T.eq(progress.human_seconds(125), "2m05s")
  T.eq(progress.human_seconds(7300), "2h01m")
end)
