#!/usr/bin/env bash
# Full-load benchmark: pgtide against `pgcopydb clone` and `pg_dump -Fd -j N` + `pg_restore -j N`,
# each from an empty target, the same job count, RUNS runs each, on two throwaway local clusters.
#
#   bash scripts/bench-full.sh [--jobs N] [--runs N] [--scale N] [--mixed-rows N] [--keep DIR]
#                              [--tools "pgtide pgcopydb pg_dump"] [--verify]
#
# Dataset (deterministic): pgbench tables at --scale (60 ≈ 900 MB), plus `mixed` (text, numeric,
# timestamptz, jsonb, bytea, uuid, int[]), `toasted` (large out-of-line text), `nokey` (no primary
# key). Prints a table of median wall time, ratio to pgcopydb, throughput (source database size /
# time) and peak RSS (GNU time's maximum resident set size of the tool's largest process).
# --verify: after the runs, time `pgtide verify` of the same playbook (RUNS times, with --jobs
# connection pairs; it must find everything matching) and print its median next to pgtide's.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=4; RUNS=3; SCALE=60; MIXED_ROWS=2500000; KEEP=""; TOOLS="pgtide pgcopydb pg_dump"; VERIFY=""
while [ $# -gt 0 ]; do
  case "$1" in
    --jobs) JOBS=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --scale) SCALE=$2; shift 2 ;;
    --mixed-rows) MIXED_ROWS=$2; shift 2 ;;
    --keep) KEEP=$2; shift 2 ;;
    --tools) TOOLS=$2; shift 2 ;;
    --verify) VERIFY=1; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
for p in pgcopydb time; do
  dpkg-query -W -f='${Status}' $p 2>/dev/null | grep -q 'install ok installed' || {
    apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $p >/dev/null; }
done
PGTIDE=$(realpath "${PGTIDE:-build/pgtide}")
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
work=${KEEP:-$(mktemp -d /tmp/pgtide-bench.XXXXXX)}
mkdir -p "$work"; chmod 755 "$work"
cleanup() { [ -n "$KEEP" ] || { bash scripts/clusters.sh stop "$work/clusters" >/dev/null 2>&1; rm -rf "$work"; }; }
trap cleanup EXIT

conf="shared_buffers = 1GB
maintenance_work_mem = 512MB
max_wal_size = 8GB
checkpoint_timeout = 30min
autovacuum = off"
if [ ! -f "$work/clusters/env" ]; then
  PGTIDE_SOURCE_CONF="$conf" PGTIDE_TARGET_CONF="$conf" bash scripts/clusters.sh start "$work/clusters" >/dev/null
fi
set -a; . "$work/clusters/env"; set +a
SRC=${SOURCE_URL%/postgres}/bench
TGT=${TARGET_URL%/postgres}/bench

if ! psql -qAt "$SOURCE_URL" -c "SELECT 1 FROM pg_database WHERE datname = 'bench'" | grep -q 1; then
  echo "== building the dataset (pgbench scale $SCALE, $MIXED_ROWS mixed rows)"
  psql -q "$SOURCE_URL" -c "CREATE DATABASE bench"
  "$PGBIN/pgbench" -i -q -s "$SCALE" "$SRC" >/dev/null 2>&1
  psql -q -v ON_ERROR_STOP=1 "$SRC" <<SQL
CREATE TABLE mixed (id bigint PRIMARY KEY, t text, n numeric, ts timestamptz, j jsonb, b bytea, u uuid, arr int[]);
INSERT INTO mixed SELECT g, 'row ' || g || ' ' || md5(g::text), g * 3.14159, timestamptz '2020-01-01' + g * interval '1 s',
  jsonb_build_object('id', g, 'tag', 't' || (g % 100), 'ok', g % 2 = 0), decode(md5(g::text), 'hex'),
  md5((g * 7)::text)::uuid, ARRAY[g, g % 1000, g % 7]
FROM generate_series(1, $MIXED_ROWS) g;
CREATE INDEX mixed_ts ON mixed (ts);
CREATE INDEX mixed_j ON mixed USING gin (j);
CREATE TABLE toasted (id int PRIMARY KEY, doc text);
ALTER TABLE toasted ALTER doc SET STORAGE EXTERNAL;
INSERT INTO toasted SELECT g, (SELECT string_agg(md5((g * 1000 + i)::text), '') FROM generate_series(1, 600) i)
FROM generate_series(1, 12000) g;
CREATE TABLE nokey (a int, b text, c timestamptz);
INSERT INTO nokey SELECT g % 1000, repeat(md5(g::text), 2), timestamptz '2021-01-01' + g * interval '1 min'
FROM generate_series(1, 1000000) g;
VACUUM ANALYZE;
SQL
fi
size=$(psql -qAt "$SRC" -c "SELECT pg_database_size('bench')")
echo "== source database: $((size / 1024 / 1024)) MB; jobs $JOBS; $RUNS runs per tool"

reset_target() {
  psql -q "$TARGET_URL" -c "DROP DATABASE IF EXISTS bench WITH (FORCE)" -c "CREATE DATABASE bench" 2>/dev/null
  # Start every run from the same state: no checkpoint debt from the previous load, and no
  # dirty page cache (pg_dump's directory, pgcopydb's work files) still being written back
  # while the next tool runs.
  psql -q "$SOURCE_URL" -c "CHECKPOINT"; psql -q "$TARGET_URL" -c "CHECKPOINT"; sync
}

cat >"$work/bench.lua" <<LUA
local tide = require "tide"
return tide.task { name = "bench", source = "$SRC", target = "$TGT", migrate = { "schema", "full" },
                   progress = "none", full = { jobs = $JOBS, index_jobs = $JOBS },
                   verify = { jobs = $JOBS } }
LUA

run_tool() {  # run_tool NAME → prints "seconds rss_kb"
  local tool=$1 out="$work/$1.out"
  reset_target
  case "$tool" in
    pgtide) /usr/bin/time -f "%e %M" -o "$work/time" "$PGTIDE" run "$work/bench.lua" >"$out" 2>&1 ;;
    pgcopydb) rm -rf "$work/pgcopydb"
      /usr/bin/time -f "%e %M" -o "$work/time" pgcopydb clone --source "$SRC" --target "$TGT" \
        --table-jobs "$JOBS" --index-jobs "$JOBS" --dir "$work/pgcopydb" --no-owner --no-acl >"$out" 2>&1 ;;
    pg_dump) rm -rf "$work/dump"
      /usr/bin/time -f "%e %M" -o "$work/time" bash -c \
        "'$PGBIN/pg_dump' -Fd -j $JOBS -f '$work/dump' '$SRC' && '$PGBIN/pg_restore' -j $JOBS -d '$TGT' '$work/dump'" >"$out" 2>&1 ;;
  esac || { echo "$tool failed:" >&2; tail -20 "$out" >&2; exit 1; }
  cat "$work/time"
}

# Rounds, each running every tool once (interleaved, so a slow moment of the machine does not
# fall on one tool's runs only); the median of each tool's runs is reported.
declare -A med rss times
for tool in $TOOLS; do times[$tool]=""; rss[$tool]=0; done
for r in $(seq 1 "$RUNS"); do
  for tool in $TOOLS; do
    read -r secs kb < <(run_tool "$tool")
    echo "   round $r: $tool ${secs}s, peak RSS $((kb / 1024)) MB"
    times[$tool]="${times[$tool]} $secs"
    [ "$kb" -gt "${rss[$tool]}" ] && rss[$tool]=$kb
  done
done
for tool in $TOOLS; do
  med[$tool]=$(printf '%s\n' ${times[$tool]} | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
done

# Check pgtide's copy is complete (row counts per table equal).
reset_target; "$PGTIDE" run "$work/bench.lua" >/dev/null 2>&1
for t in pgbench_accounts pgbench_history mixed toasted nokey; do
  a=$(psql -qAt "$SRC" -c "SELECT count(*) FROM $t"); b=$(psql -qAt "$TGT" -c "SELECT count(*) FROM $t")
  [ "$a" = "$b" ] || { echo "MISMATCH in $t: $a vs $b" >&2; exit 1; }
done

echo
printf '%-10s %12s %12s %14s %12s\n' tool "median (s)" "vs pgcopydb" "MB/s" "peak RSS MB"
base=pgcopydb; [ -n "${med[pgcopydb]:-}" ] || base=${TOOLS%% *}
for tool in $TOOLS; do
  printf '%-10s %12s %12s %14s %12s\n' "$tool" "${med[$tool]}" \
    "$(awk -v a="${med[$tool]}" -v b="${med[$base]}" 'BEGIN {printf "%.2f", a / b}')" \
    "$(awk -v s="$size" -v t="${med[$tool]}" 'BEGIN {printf "%.1f", s / 1048576 / t}')" \
    "$((rss[$tool] / 1024))"
done

if [ -n "$VERIFY" ]; then
  # The target holds pgtide's copy from the completeness check above.
  vtimes=""
  for r in $(seq 1 "$RUNS"); do
    /usr/bin/time -f "%e %M" -o "$work/time" "$PGTIDE" verify "$work/bench.lua" >"$work/verify.out" 2>&1 \
      || { echo "pgtide verify did not report a match:" >&2; tail -20 "$work/verify.out" >&2; exit 1; }
    read -r secs kb <"$work/time"
    echo "   verify round $r: ${secs}s, peak RSS $((kb / 1024)) MB"
    vtimes="$vtimes $secs"
  done
  vmed=$(printf '%s\n' $vtimes | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  echo
  printf '%-16s %12s %14s\n' "" "median (s)" "MB/s"
  printf '%-16s %12s %14s\n' "pgtide run" "${med[pgtide]}" "$(awk -v s="$size" -v t="${med[pgtide]}" 'BEGIN {printf "%.1f", s / 1048576 / t}')"
  printf '%-16s %12s %14s\n' "pgtide verify" "$vmed" "$(awk -v s="$size" -v t="$vmed" 'BEGIN {printf "%.1f", s / 1048576 / t}')"
  echo "verify / run: $(awk -v a="$vmed" -v b="${med[pgtide]}" 'BEGIN {printf "%.2f", a / b}')"
  grep -E "^(public\.|OK|DIFF|INCOMPLETE)" "$work/verify.out" | sed 's/^/   /'
fi
