-- tide.catalog.fetch — how tide.catalog.read fetches one statement's rows: in one query, or
-- through a cursor a piece at a time on a big catalog; made ready for the planner
-- (tide.catalog.rows) or raised as a failure naming the statement.
local rows_mod = require "tide.catalog.rows"

local M = {}

-- On a big catalog (M.pieces_from pg_class rows or more: about 4,000 tables), the statements
-- whose rows grow with the database's tables are read through a cursor, M.piece_rows rows at a
-- time: libpq holds one piece, never a whole result beside the Lua rows made of it (at 100,000
-- tables the results and their rows side by side took the read to 683 MB with a Lua heap of
-- 474). Each costs two round trips more than one query (DECLARE, CLOSE), which a small
-- catalog far from the engine would feel and not gain from; the other statements, a few rows
-- each, are always one query. (The read's transaction sets cursor_tuple_fraction to 1: a
-- cursor's statement is planned for all its rows, as the plain statement is.)
M.pieces_from = 20000
M.piece_rows = 20000
M.in_pieces = { tables = true, sequences = true, columns = true, constraints = true, indexes = true,
                views = true, functions = true, triggers = true, comments = true, privileges = true,
                depends = true, extension_members = true }

local CURSOR = "pgtide_catalog"

-- Rows of `sql` (with its parameters) a piece at a time; each piece goes to take(piece) when
-- given (the rows are then take's to keep), else into one list. → the list (or true), or nil
-- and the error.
local function query_in_pieces(conn, take, sql, ...)
  local ok, err = conn:exec("DECLARE " .. CURSOR .. " NO SCROLL CURSOR FOR " .. sql, ...)
  if not ok then return nil, err end
  local size, rows = M.piece_rows, nil
  local fetch = string.format("FETCH FORWARD %d FROM %s", size, CURSOR)
  repeat
    local piece, e = conn:query_sparse(fetch)
    if not piece then return nil, e end
    local got = #piece
    if take then take(piece)
    elseif rows == nil then rows = piece
    else table.move(piece, 1, got, #rows + 1, rows) end
  until got < size
  ok, err = conn:exec("CLOSE " .. CURSOR)
  if not ok then return nil, err end
  return rows or true
end

-- M.run(S, conn, name, split, statements, param, big) → one statement's rows, ready for the
-- planner (S: tide.catalog's statements; statements: S or its newer forms; split:
-- tide.catalog.parallel's; big: read in pieces when M.in_pieces names it; param: a look-up's).
function M.run(S, conn, name, split, statements, param, big)
  local rows, err
  local whole = name:gsub("/%d$", "")   -- (a half of the indexes statement)
  local collect = rows_mod.collect[whole]
  local into = collect and collect.new()
  if param ~= nil then rows, err = conn:query_sparse(S[name], param)
  elseif big and M.in_pieces[whole] then
    rows, err = query_in_pieces(conn, into and function(piece) collect.add(into, piece) end,
                                require("tide.catalog.parallel").statement(statements or S, name, split))
    if rows and into then return into end
  else rows, err = conn:query_sparse(require("tide.catalog.parallel").statement(statements or S, name, split)) end
  if rows and into then collect.add(into, rows); return into end
  name = whole
  if not rows then
    -- A failure with the server's error inside (tide.retry reads its SQLSTATE: a catalog
    -- changed under the read is read again), never an internal error.
    require("tide.failure").raise("failed", string.format("catalog: reading %s failed on %s: %s", name,
      conn:conninfo(), tostring(err)), { err = type(err) == "table" and err or nil })
  end
  return rows_mod.finish(name, rows)
end

return M
