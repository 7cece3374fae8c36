-- The demo playbook: moves the sample shop database from the demo's source cluster to its
-- target cluster. scripts/demo.sh sets SOURCE_URL and TARGET_URL.
local tide = require "tide"

return tide.task {
  name    = "demo",
  source  = os.getenv "SOURCE_URL",
  target  = os.getenv "TARGET_URL",
  migrate = { "schema", "full" },
}
