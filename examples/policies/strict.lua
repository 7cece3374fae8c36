-- A strict precheck policy for production migrations: anything that can lose or repeat data,
-- block the slot, or surprise the source's application stops the run. Use it from a playbook:
--
--   package.path = "examples/?.lua;" .. package.path      -- where your policies live
--   local policy = require("tide.precheck").policy
--   ...
--   precheck = policy(require "policies.strict", {
--     ignore = { table_without_key = { reason = "append-only audit tables", objects = { "audit.*" } } },
--   }),
--
-- A policy is a plain table with the keys of the playbook's `precheck` (docs/prechecks.md).
return {
  fail = {
    "table_without_key", "unlogged_tables", "large_objects", "all_tables_publication",
    "open_transactions", "prepared_transactions", "inactive_slots",
    "slot_wal_keep_size", "wal_sender_timeout",
    "target_replication_role", "target_triggers", "collation",
  },
  warn = { "version_differences", "generated_columns" },
  settings = { long_transaction = "30s" },
  extra = {
    {
      id = "strict.statistics", title = "Tables without planner statistics", grade = "warn",
      applies = function(ctx) return ctx.phases.full end,
      -- The plan has pg_class statistics: a table never analyzed makes the size and duration
      -- estimates (and the full load's split decisions) guesses.
      run = function(ctx)
        local out = {}
        for _, tbl in ipairs(ctx.plan.tables) do
          if (tbl.rows_estimate or -1) < 0 then
            out[#out + 1] = { object = tbl.key, schema = tbl.source.schema, name = tbl.source.name,
                              message = "never analyzed: its size and row count are unknown to the planner",
                              fix = "ANALYZE " .. tbl.key .. ";" }
          end
        end
        return out
      end,
    },
  },
}
