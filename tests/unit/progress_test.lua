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

-- A load as tide.full keeps it, cut to what the progress line reads.
local function fake_load(tables)
  local parts = {}
  for _, t in ipairs(tables) do parts[#parts + 1] = { table = t, count = 1, id = t.key } end
  return { plan = { tables = tables }, parts = parts, steps = {}, running = {}, jobs = 2,
           stats = { bytes = 0, rows = 0, parts_done = 0, parts_total = #parts, steps_done = 0 } }
end

local function sink()
  local out = { text = "" }
  function out.write(self, ...) for _, s in ipairs({ ... }) do self.text = self.text .. s end end
  function out.flush() end
  return out
end

T.test("the load's percentage counts finished tables by their size on the source, not by the bytes COPY sent", function()
  -- 1,000 small tables of one 8 kB page each; COPY sends 153 bytes of each.
  local tables = {}
  for i = 1, 1000 do tables[i] = { key = "s.t" .. i, bytes = 8192, rows_estimate = 2 } end
  local load = fake_load(tables)
  local out = sink()
  local p = progress.new({ name = "t", progress = "plain" }, { output = out })
  p.load, p.load_started, p.total_bytes, p.done_share = load, require("tide.core").monotonic() - 10, 8192 * 1000, 0
  for i = 1, 1000 do
    if i <= 750 then
      p:event("part_done", { part = load.parts[i], rows = 2, bytes = 153, seconds = 0 })
      load.stats.bytes, load.stats.parts_done = load.stats.bytes + 153, load.stats.parts_done + 1
    end
  end
  p:tick()
  T.match(out.text, "full: 75%% of ~7%.8 MB, 112%.1 kB copied", "three quarters of the tables are done")
  T.match(out.text, "eta 3%.%ds", "the rest at the pace so far: a third of the 10 s it took")
  -- A part in flight counts what it copied, up to its table's size.
  local big = { key = "s.big", bytes = 1000, rows_estimate = 10 }
  local load2 = fake_load({ big, { key = "s.other", bytes = 1000 } })
  load2.running[load2.parts[1]] = { stats = function() return 5000 end }
  local out2 = sink()
  local p2 = progress.new({ name = "t", progress = "plain" }, { output = out2 })
  p2.load, p2.load_started, p2.total_bytes, p2.done_share = load2, require("tide.core").monotonic() - 1, 2000, 0
  p2:tick()
  T.match(out2.text, "full: 50%% of ~2%.0 kB, 4%.9 kB copied")
end)
