#!/usr/bin/env bash
# on.row throughput: the full load of one table with and without a one-line Lua transform,
# on throwaway clusters, medians of interleaved runs.
#
#   PGTIDE=build/pgtide bash scripts/bench-transform.sh [--rows N] [--runs N]
#
# The table: ROWS rows of (id bigint primary key, email text, name text, n int, at timestamptz),
# about 100 bytes each. Each run: `pgtide run` of { "schema", "full" } with full.jobs = 1 into
# an empty target database, once with on.row["public.people"] = function(r) r.email =
# r.email:lower() end and once without (binary COPY), in turns. Printed per setting: the table's
# copy time as pgtide reports it, rows per second of it, and pgtide's own CPU time (user +
# system) — the cost of the Lua path on one core.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=2000000; RUNS=3
while [ $# -gt 0 ]; do
  case "$1" in
    --rows) ROWS=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
PGTIDE=$(realpath "${PGTIDE:-build/pgtide}")
work=$(mktemp -d /tmp/pgtide-bench-transform.XXXXXX)
chmod 755 "$work"
cleanup() { bash scripts/clusters.sh stop "$work/clusters" >/dev/null 2>&1; rm -rf "$work"; }
trap cleanup EXIT
bash scripts/clusters.sh start "$work/clusters" >/dev/null
set -a; . "$work/clusters/env"; set +a
SRC=${SOURCE_URL%/postgres}/bench
TGT=${TARGET_URL%/postgres}/bench
psql -qX "$SOURCE_URL" -c "CREATE DATABASE bench"
psql -qX "$SRC" -c "CREATE TABLE people (id bigint PRIMARY KEY, email text, name text, n int, at timestamptz)" \
  -c "INSERT INTO people SELECT g, 'User' || g || '@Example.COM', 'name ' || md5(g::text), g % 1000,
      timestamptz '2026-01-01' + g * interval '1 second' FROM generate_series(1, $ROWS) g" -c "VACUUM ANALYZE people"

playbook() {  # playbook NAME TRANSFORM(0|1)
  local on=""
  [ "$2" = 1 ] && on='on = { row = { ["public.people"] = function(r) r.email = r.email:lower() end } },'
  cat >"$work/$1.lua" <<LUA
local tide = require "tide"
return tide.task {
  name = "$1", source = "$SRC", target = "$TGT",
  migrate = { "schema", "full" }, full = { jobs = 1 }, progress = "plain",
  $on
}
LUA
}
playbook plain 0
playbook transform 1

one_run() {  # one_run NAME → "copy_seconds cpu_seconds"
  psql -qX "$TARGET_URL" -c "DROP DATABASE IF EXISTS bench" -c "CREATE DATABASE bench" >/dev/null
  /usr/bin/time -f "%U %S" -o "$work/time" "$PGTIDE" run "$work/$1.lua" >"$work/$1.log" 2>&1 ||
    { cat "$work/$1.log" >&2; exit 1; }
  local copy cpu
  copy=$(sed -n 's/.*public\.people copied, .* in \([0-9.]*\)s.*/\1/p' "$work/$1.log" | head -1)
  cpu=$(awk '{ printf "%.2f", $1 + $2 }' "$work/time")
  echo "$copy $cpu"
}
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

for i in $(seq "$RUNS"); do
  for name in transform plain; do
    read -r copy cpu < <(one_run "$name")
    echo "$name $copy $cpu" >>"$work/results"
    echo "run $i $name: copy ${copy}s, pgtide CPU ${cpu}s" >&2
  done
done

echo
echo "on.row full load — $ROWS rows, full.jobs = 1, $RUNS interleaved runs each (medians; $(nproc) CPUs, PostgreSQL $(psql -qXAt "$SRC" -c 'SHOW server_version'))"
printf '%-10s %14s %14s %16s %18s\n' setting "copy (s)" "rows/s" "pgtide CPU (s)" "rows per CPU-s"
for name in plain transform; do
  copy=$(awk -v n="$name" '$1 == n { print $2 }' "$work/results" | median)
  cpu=$(awk -v n="$name" '$1 == n { print $3 }' "$work/results" | median)
  printf '%-10s %14s %14.0f %16s %18.0f\n' "$name" "$copy" "$(awk -v r="$ROWS" -v s="$copy" 'BEGIN { print r / s }')" \
    "$cpu" "$(awk -v r="$ROWS" -v s="$cpu" 'BEGIN { print r / s }')"
done
