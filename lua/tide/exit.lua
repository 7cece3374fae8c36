-- tide.exit — the exit statuses of pgtide, by name (README.md and docs/reliability.md, "Exit
-- status"). The CLI returns them, tide.failure maps each failure kind to the status of the
-- same name, and `pgtide status` / `pgtide attach` use them too.
--
-- The engine's C entry point (engine/runtime/main.c) exits with 70 on its own when the Lua
-- side cannot even start (EXIT_INTERNAL), and with 1 when an error was raised but never
-- reported: keep `internal` and `failed` equal to those.
return {
  ok = 0,            -- success
  failed = 1,        -- the task failed while running
  usage = 2,         -- bad command line
  playbook = 3,      -- the playbook has an error
  connection = 4,    -- a server could not be reached or refused us
  precheck = 5,      -- a precheck failed; nothing was written
  mismatch = 6,      -- verification found differences
  slot_lost = 7,     -- the replication slot was invalidated: changes are gone, start again
  internal = 70,     -- a bug in pgtide
  interrupted = 130, -- stopped by a signal before finishing
}
