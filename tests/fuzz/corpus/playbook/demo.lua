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

  -- Cut over once writes on the source have stopped and the target is not delayed
  -- (delay under 1 s for 3 s in a row).
  stop = tide.when { lag_below = "1s", for_at_least = "3s",
                     file_exists = os.getenv "DEMO_WORKLOAD_DONE" or "/nonexistent" },

  on = {
    cutover = {
      function(t) t:sync_sequences { offset = 1000 } end,   -- room for values taken meanwhile
      require("tide.verify").cutover_hook {},                -- counts and checksums must match
    },
  },
}
