-- Server helpers shared by the integration and fault tests: connections, databases, SQL on
-- both sides, waiting for a condition, and comparing table contents.
--
--   local P = require "pg"
--   local s, t = P.connect_both(ctx)           -- ctx.source_url, ctx.target_url (tests/lib/runner.lua)
--   P.both(ctx, "CREATE TABLE t (id int PRIMARY KEY)")
--   P.wait_for("the row on the target", function() return ... end, 30)   -- raises on timeout
--   T.ok(P.poll(60, function() return proc:exited() end))                -- nil on timeout
--   P.same(s, t, "t")                          -- same rows (order-independent, duplicates count)
local tide = require "tide"
local T = require "testlib"

local P = {}

------------------------------------------------------------------------ connections

-- A connection, or an error naming the server's reason.
function P.connect(url, opts)
  local c, err = tide.connect(url, opts)
  if not c then error("cannot connect to " .. tostring(url) .. ": " .. tostring(err), 2) end
  return c
end

-- Connections to the test's source and target databases.
function P.connect_both(ctx)
  return P.connect(ctx.source_url), P.connect(ctx.target_url)
end

-- The same conninfo URI for database `db` (query string kept).
function P.with_db(url, db)
  return (url:gsub("/[^/?]*(%??[^/]*)$", "/" .. db .. "%1"))
end

-- A new empty database `name` on the server of `admin_url` (dropped first if it exists);
-- returns its URL.
function P.fresh_db(admin_url, name)
  local admin = P.connect(admin_url)
  assert(admin:exec("DROP DATABASE IF EXISTS " .. admin:quote_ident(name) .. " WITH (FORCE)"))
  assert(admin:exec("CREATE DATABASE " .. admin:quote_ident(name)))
  admin:close()
  return P.with_db(admin_url, name)
end

function P.drop_db(admin_url, name)
  local admin = P.connect(admin_url)
  admin:exec("DROP DATABASE IF EXISTS " .. admin:quote_ident(name) .. " WITH (FORCE)")
  admin:close()
end

------------------------------------------------------------------------ SQL

-- One statement (or several) on a new connection to `url`; raises on error.
function P.exec(url, sql)
  local c = P.connect(url)
  local ok, err = c:exec(sql)
  c:close()
  if not ok then error(tostring(err), 2) end
end

-- The rows of a query on a new connection to `url`; raises on error.
function P.query(url, sql, ...)
  local c = P.connect(url)
  local rows, err = c:query(sql, ...)
  c:close()
  if not rows then error(tostring(err), 2) end
  return rows
end

-- The same SQL on the source and on the target.
function P.both(ctx, sql)
  P.exec(ctx.source_url, sql)
  P.exec(ctx.target_url, sql)
end

-- An empty public schema and no pgtide state on both sides; returns connections to both.
function P.clean(ctx)
  local s, t = P.connect_both(ctx)
  for _, c in ipairs({ s, t }) do
    assert(c:exec("DROP SCHEMA IF EXISTS public CASCADE; DROP SCHEMA IF EXISTS pgtide CASCADE; CREATE SCHEMA public"))
  end
  return s, t
end

-- The server's WAL insert position now, as text ("0/3000060"). With flush = true, the
-- session's commits are made durable first (synchronous_commit = on), so a stream can reach it.
function P.lsn(conn, flush)
  if flush then assert(conn:exec("SET synchronous_commit = on")) end
  return assert(conn:query("SELECT pg_current_wal_insert_lsn()::text AS l"))[1].l
end

------------------------------------------------------------------------ waiting

-- Polls fn() every 20 ms until it returns a true value or `seconds` pass; returns the value,
-- or nil on timeout (for T.ok(P.poll(...), "why")).
function P.poll(seconds, fn)
  local deadline = tide.monotonic() + seconds
  repeat
    local v = fn()
    if v then return v end
    tide.sleep(0.02)
  until tide.monotonic() > deadline
  return nil
end

-- Polls fn() (20 ms at first, then up to 0.2 s apart) until it returns a true value; returns
-- it, or raises "timed out waiting for WHAT" after `seconds` (default 30).
function P.wait_for(what, fn, seconds)
  local deadline = tide.monotonic() + (seconds or 30)
  local step = 0.02
  while true do
    local v = fn()
    if v then return v end
    if tide.monotonic() > deadline then error("timed out waiting for " .. what, 2) end
    tide.sleep(step)
    step = math.min(step * 1.5, 0.2)
  end
end

------------------------------------------------------------------------ comparing contents

-- Row count and an order-independent checksum of a relation (or of a parenthesized query with
-- an alias-free body): "N:SUM". Each row's text (or the `columns` expression over alias t) is
-- hashed and the hashes added, so duplicates count and row order does not.
function P.fingerprint(conn, relation, columns)
  local sql = string.format(
    "SELECT count(*) AS n, coalesce(sum(('x' || substr(md5(%s), 1, 15))::bit(60)::int8), 0)::text AS h FROM %s t",
    columns or "t::text", relation)
  local r, err = conn:query(sql)
  assert(r, tostring(err))
  return r[1].n .. ":" .. r[1].h
end

-- Raises unless `relation` has the same rows on both connections.
function P.same(src, tgt, relation, columns)
  T.eq(P.fingerprint(tgt, relation, columns), P.fingerprint(src, relation, columns),
       "target differs from source for " .. relation)
end

return P
