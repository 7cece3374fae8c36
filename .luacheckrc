-- luacheck configuration (Debian package lua-check): `make lint-lua`, run by `make test`.
std = "lua54"

-- The engine sets one global: `arg`, the script's arguments (`pgtide script FILE ARGS`, as
-- lua(1) does); lua/tide/cli.lua is where it is set.
read_globals = { "arg" }
files["lua/tide/cli.lua"] = { globals = { "arg" } }

codes = true
-- No line length limit: SQL statements and messages stay on one line where they read best.
max_line_length = false
-- `self` unused in a method is the method's shape, not a mistake.
self = false
-- An empty `if` branch whose comment says why nothing is done there reads best as it is
-- (lua/tide/plan/extensions.lua, lua/tide/rename.lua).
ignore = { "542" }
