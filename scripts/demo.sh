#!/usr/bin/env bash
# The demo: two throwaway clusters, a sample database on the source, a migration to the target
# with examples/demo.lua, then everything removed again.
set -euo pipefail
cd "$(dirname "$0")/.."
PGTIDE=$(realpath "${PGTIDE:-build/pgtide}")
work=$(mktemp -d /tmp/pgtide-demo.XXXXXX)
chmod 755 "$work"
trap 'bash scripts/clusters.sh stop "$work/clusters" >/dev/null 2>&1; rm -rf "$work"' EXIT
trap 'exit 130' INT TERM

echo "== starting two throwaway clusters in $work"
bash scripts/clusters.sh start "$work/clusters" >/dev/null
set -a; . "$work/clusters/env"; set +a
base_src=$SOURCE_URL; base_tgt=$TARGET_URL
psql -q "$base_src" -c "CREATE DATABASE shop"
psql -q "$base_tgt" -c "CREATE DATABASE shop"
export SOURCE_URL=${base_src%/postgres}/shop TARGET_URL=${base_tgt%/postgres}/shop

echo "== loading the sample database on the source"
psql -q -v ON_ERROR_STOP=1 "$SOURCE_URL" -f examples/shop.sql

echo "== pgtide run examples/demo.lua"
"$PGTIDE" run examples/demo.lua
