-- tide.cmd.verify — `pgtide verify FILE [--json] [--table NAME ...]`: compares the task's
-- tables and sequences on both sides (tide.verify) and prints the report; exit status 0 when
-- everything matches, 6 when something differs, 1 when not everything could be compared.
-- --json prints one JSON document instead of the text; --table compares only those tables.
local exit = require "tide.exit"
local verify = require "tide.verify"
local report_mod = require "tide.verify.report"

local M = {}

local function exit_status(report)
  if report.ok then return exit.ok end
  return report.status == "different" and exit.mismatch or exit.failed
end

function M.command(task, cli_opts)
  local overrides
  if cli_opts and cli_opts.table then overrides = { tables = cli_opts.table, tables_from = "--table" } end
  local report = verify.run(task, overrides)
  if cli_opts and cli_opts.json then
    io.write(report_mod.json(report), "\n")
  else
    io.write(report_mod.text(report))
  end
  return exit_status(report)
end

return M
