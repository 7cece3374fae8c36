-- A lenient precheck policy for staging and rehearsal migrations: only what makes the run
-- itself fail stays a failure; risks to a production source are reported, not enforced.
-- Use it like examples/policies/strict.lua:
--
--   precheck = require("tide.precheck").policy(require "policies.staging"),
return {
  warn = { "table_without_key" },
  info = {
    "open_transactions", "prepared_transactions", "inactive_slots", "slot_wal_keep_size",
    "wal_sender_timeout", "target_triggers", "target_replication_role", "collation",
    "unlogged_tables", "large_objects", "all_tables_publication",
  },
  ignore = {
    temporary_tables = "staging sessions come and go",
    version_differences = "rehearsals run on whatever target is at hand",
  },
  settings = { long_transaction = "10min" },
}
