-- tide.verify.report — `pgtide verify` output: a table of results per table and sequence,
-- then the located differences and a closing line; or one JSON document for machines.
local sqlident = require "tide.sqlident"
local json = require "tide.json"

local M = {}

local KIND_WORDS = { missing = "missing on target", extra = "extra on target", different = "different" }

-- "public.users" or "public.users → shop.users"
function M.names(item)
  local source = sqlident.quote(item.source.schema) .. "." .. sqlident.quote(item.source.name)
  local target = sqlident.quote(item.target.schema) .. "." .. sqlident.quote(item.target.name)
  return source == target and source or (source .. " → " .. target)
end

-- "id=42" or "(a, b)=(x, y)"
function M.key_text(d)
  local cols = {}
  for i, name in ipairs(d.columns) do cols[i] = sqlident.quote(name) end
  if #cols == 1 then return cols[1] .. "=" .. d.values[1] end
  return "(" .. table.concat(cols, ", ") .. ")=(" .. table.concat(d.values, ", ") .. ")"
end

-- "amount", or "full_name (source name)" when renamed
function M.column_text(c)
  local name = sqlident.quote(c.column)
  if c.source_column ~= c.column then name = name .. " (source " .. sqlident.quote(c.source_column) .. ")" end
  return name
end

local function width(s) return utf8.len(s) or #s end

local function pad(s, n, right)
  local fill = string.rep(" ", math.max(0, n - width(s)))
  return right and (fill .. s) or (s .. fill)
end

local function status_text(r)
  local s = r.status
  if r.sampled then s = s .. string.format(" (sampled %s%%)", r.sampled.percent) end
  if r.rechecks then s = s .. string.format(" (rechecked %d×)", r.rechecks) end
  return s
end

function M.text(report)
  local out = {}
  local function add(...) out[#out + 1] = table.concat({ ... }) end
  local rows = { { "table", "source rows", "target rows", "status", "time" } }
  for _, r in ipairs(report.tables) do
    rows[#rows + 1] = { M.names(r), tostring(r.source_rows or "-"), tostring(r.target_rows or "-"),
                        status_text(r), string.format("%.2fs", r.seconds or 0) }
  end
  for _, s in ipairs(report.sequences) do
    rows[#rows + 1] = { "sequence " .. M.names(s), tostring(s.source_next or "-"), tostring(s.target_next or "-"),
                        s.status, "" }
  end
  local widths = {}
  for _, row in ipairs(rows) do
    for i, cell in ipairs(row) do widths[i] = math.max(widths[i] or 0, width(cell)) end
  end
  add("verify ", report.task, ": ", #report.tables, " table(s), ", #report.sequences, " sequence(s)",
      report.consistent and (", consistent at source LSN " .. report.consistent.lsn) or "")
  for _, row in ipairs(rows) do
    add(pad(row[1], widths[1]), "  ", pad(row[2], widths[2], true), "  ", pad(row[3], widths[3], true), "  ",
        pad(row[4], widths[4]), "  ", pad(row[5], widths[5], true))
  end

  local details = {}
  for _, r in ipairs(report.tables) do
    if r.status ~= "match" then details[#details + 1] = r end
  end
  local bad_sequences = {}
  for _, s in ipairs(report.sequences) do
    if s.status ~= "match" and s.status ~= "ahead" then bad_sequences[#bad_sequences + 1] = s end
  end
  if #details > 0 or #bad_sequences > 0 then
    add("")
    add("differences:")
  end
  for _, r in ipairs(details) do
    if r.error then
      add("  ", M.names(r), ": ", r.status, ": ", r.error)
    elseif #r.differences == 0 then
      add("  ", M.names(r), ": ", r.keyed and "the counts or checksums differ, but no differing row was found (did the data change while verifying?)"
                                        or "the counts or checksums differ (no key, so the rows are not located)")
    else
      add("  ", M.names(r), string.format(": %d missing on target, %d extra on target, %d different%s",
        r.counts.missing, r.counts.extra, r.counts.different, r.truncated and " (list cut at the limit, there are more)" or ""))
      for _, d in ipairs(r.differences) do
        add("    ", pad(KIND_WORDS[d.kind], 18), M.key_text(d))
        if d.changed and #d.changed == 0 then
          add("      (no column differs when read again: the row changed while verifying)")
        end
        for _, c in ipairs(d.changed or {}) do
          add("      ", M.column_text(c), ": ", c.source, " on source, ", c.target, " on target")
        end
      end
      if r.detail_error then add("    (the differing columns could not be read: ", r.detail_error, ")") end
    end
  end
  for _, s in ipairs(bad_sequences) do
    if s.error then
      add("  sequence ", M.names(s), ": ", s.status, ": ", s.error)
    else
      add("  sequence ", M.names(s), string.format(": behind: target's next value %s, expected %s (source's %s + offset %s)",
        tostring(s.target_next), tostring(s.expected), tostring(s.source_next), tostring(s.offset)))
    end
  end
  add("")
  local sum = report.summary
  add(string.format("%s: %d of %d table(s) match, %d differ, %d could not be compared%s (%.1fs)",
    report.ok and "OK" or (report.status == "different" and "DIFFERENCES" or "INCOMPLETE"),
    sum.match, sum.tables, sum.different, sum.incomplete,
    sum.sequences > 0 and string.format("; %d of %d sequence(s) match", sum.sequences_match, sum.sequences) or "",
    report.seconds))
  return table.concat(out, "\n") .. "\n"
end

-- The report as JSON (differences with their keys as objects).
function M.json(report)
  local doc = {}
  for k, v in pairs(report) do doc[k] = v end
  doc.tables = {}
  for i, r in ipairs(report.tables) do
    local t = {}
    for k, v in pairs(r) do t[k] = v end
    t.differences = {}
    for j, d in ipairs(r.differences) do
      t.differences[j] = { kind = d.kind, key = d.key, changed = d.changed }
    end
    doc.tables[i] = t
  end
  return json.encode(doc)
end

return M
