-- The demo playbook: moves the sample shop database from the demo's source cluster to its
-- target cluster while a workload keeps writing to the source. scripts/demo.sh sets
-- SOURCE_URL, TARGET_URL and DEMO_WORKLOAD_DONE (a file it creates when the workload ends).
local tide = require "tide"

return tide.task {
  name    = "demo",
  source  = os.getenv "SOURCE_URL",
  target  = os.getenv "TARGET_URL",
  migrate = { "schema", "full", "incremental" },

  full = { jobs = 2 },
  incremental = { release = true },          -- drop slot, publication and heartbeat at the end

  -- The task streams until `pgtide cutover examples/demo.lua` (scripts/demo.sh runs it while
  -- the workload still writes): writes on the source fenced, the target caught up to that
  -- point, sequences brought across with room for values taken meanwhile, every table
  -- verified, then the write downtime printed (docs/cutover.md).
  cutover = { fence = "read_only", sequences = { offset = 1000 }, verify = "checksums" },
}
