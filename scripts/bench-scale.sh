#!/usr/bin/env bash
# Many-tables benchmark (#20): a schema-per-tenant shape — N tables in 10 schemas, each with a
# primary key, a secondary index and (three tables in four) a foreign key to another table, R
# rows each — and what pgtide needs for it: `pgtide plan` and `pgtide check` (time, peak RSS),
# the full load (schema + full) against `pgcopydb clone` at the same job count (time, peak RSS),
# and, in a second pgtide run with incremental, the catch-up of a backlog spread over every
# table (an update of 5 rows and an insert in each table, 50 tables to a transaction) with
# the run's peak RSS, on two throwaway local clusters.
#
#   PGTIDE=build/pgtide bash scripts/bench-scale.sh [--tables N] [--rows R] [--jobs J] [--no-pgcopydb] [--no-stream] [--plan-only]
#
# Peak RSS is GNU time's maximum resident set size of the tool's largest process (pgtide is one
# process; pgcopydb forks workers, so its figure is the largest of them).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/bench-datasets.sh
TABLES=2000; ROWS=300; JOBS=2; PGCOPYDB=1; STREAM=1; PLAN_ONLY=""
while [ $# -gt 0 ]; do
  case "$1" in
    --tables) TABLES=$2; shift 2 ;;
    --rows) ROWS=$2; shift 2 ;;
    --jobs) JOBS=$2; shift 2 ;;
    --no-pgcopydb) PGCOPYDB=""; shift ;;
    --no-stream) STREAM=""; shift ;;
    --plan-only) PLAN_ONLY=1; PGCOPYDB=""; STREAM=""; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
need="time"; [ -n "$PGCOPYDB" ] && need="$need pgcopydb"
for p in $need; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || {
    apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$p" >/dev/null; }
done
PGTIDE=$(realpath "${PGTIDE:-build/pgtide}")
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
work=$(mktemp -d /tmp/pgtide-bench-scale.XXXXXX)
chmod 755 "$work"
cleanup() { bash scripts/clusters.sh stop "$work/clusters" >/dev/null 2>&1; rm -rf "$work"; }
trap cleanup EXIT
conf="max_locks_per_transaction = 1024
shared_buffers = 512MB
max_wal_size = 4GB
autovacuum = off"
PGTIDE_SOURCE_CONF="$conf" PGTIDE_TARGET_CONF="$conf" bash scripts/clusters.sh start "$work/clusters" >/dev/null
set -a; . "$work/clusters/env"; set +a
SRC=${SOURCE_URL%/postgres}/bench
TGT=${TARGET_URL%/postgres}/bench
say() { echo "$(date +%H:%M:%S)  $*" >&2; }

say "building $TABLES tables of $ROWS rows in 10 schemas"
psql -qX "$SOURCE_URL" -c "CREATE DATABASE bench"
dataset_many_tables "$SRC" "$TABLES" "$ROWS"
size=$(psql -qXAt "$SRC" -c "SELECT pg_size_pretty(pg_database_size(current_database()))")
say "source: $size"

cat >"$work/scale.lua" <<LUA
local tide = require "tide"
return tide.task {
  name = "scale", source = "$SRC", target = "$TGT",
  migrate = { "schema", "full" }, full = { jobs = $JOBS }, progress = "none",
}
LUA

timed() {  # timed NAME CMD... → "seconds peak_mb"
  local name=$1; shift
  /usr/bin/time -f "%e %M" -o "$work/$name.time" "$@" >"$work/$name.log" 2>&1 || {
    echo "$name failed:" >&2; tail -20 "$work/$name.log" >&2; exit 1; }
  awk '{ printf "%s %.0f\n", $1, $2 / 1024 }' "$work/$name.time"
}

# Each measured run gets a new target database; the previous one is renamed, not dropped
# (set_aside_database, scripts/lib/bench-datasets.sh); the clusters, and so the old copies, go
# at the end.
new_target() { set_aside_database "$TARGET_URL" bench "bench_old_$1" || exit 1; }
psql -qX "$TARGET_URL" -c "CREATE DATABASE bench"
say "pgtide plan"; read -r plan_s plan_mb < <(timed plan "$PGTIDE" plan "$work/scale.lua")
say "pgtide check"; read -r check_s check_mb < <(timed check "$PGTIDE" check "$work/scale.lua")
run_s="-"; run_mb="-"
if [ -z "$PLAN_ONLY" ]; then
  say "pgtide run (schema + full, $JOBS jobs)"; read -r run_s run_mb < <(timed run "$PGTIDE" run "$work/scale.lua")
fi
tables_tgt=$(psql -qXAt "$TGT" -c "SELECT count(*) FROM pg_tables WHERE schemaname LIKE 'tenant_%'")
fks_tgt=$(psql -qXAt "$TGT" -c "SELECT count(*) FROM pg_constraint WHERE contype = 'f'")
cp_s="-"; cp_mb="-"
if [ -n "$PGCOPYDB" ]; then
  new_target 1
  say "pgcopydb clone (--table-jobs $JOBS --index-jobs $JOBS)"
  read -r cp_s cp_mb < <(timed pgcopydb env PGCOPYDB_SOURCE_PGURI="$SRC" PGCOPYDB_TARGET_PGURI="$TGT" \
    pgcopydb clone --table-jobs "$JOBS" --index-jobs "$JOBS" --dir "$work/pgcopydb" --no-owner --no-acl)
fi

st_total="-"; st_backlog="-"; st_catchup="-"; st_mb="-"
if [ -n "$STREAM" ]; then
  new_target 2
  cat >"$work/stream.lua" <<LUA
local tide = require "tide"
return tide.task {
  name = "scale_stream", source = "$SRC", target = "$TGT",
  migrate = { "schema", "full", "incremental" }, full = { jobs = $JOBS }, progress = "plain",
  incremental = { release = true }, stop = tide.when { file_exists = "$work/stop" },
}
LUA
  say "pgtide run (schema + full + incremental, $JOBS jobs), then a backlog over all $TABLES tables"
  /usr/bin/time -f "%e %M" -o "$work/stream.time" "$PGTIDE" run "$work/stream.lua" >"$work/stream.log" 2>&1 &
  runpid=$!
  until grep -q "incremental: started" "$work/stream.log"; do
    kill -0 $runpid 2>/dev/null || { echo "pgtide run ended:" >&2; tail -20 "$work/stream.log" >&2; exit 1; }
    sleep 0.5
  done
  t0=$(date +%s.%N)
  psql -qX "$SRC" -v ON_ERROR_STOP=1 <<SQL
DO \$\$
DECLARE i int;
BEGIN
  FOR i IN 1..$TABLES LOOP
    EXECUTE format('UPDATE tenant_%s.t%s SET v = v || ''+'' WHERE id <= 5', i % 10, i);
    EXECUTE format('INSERT INTO tenant_%s.t%s VALUES ($ROWS + 1, 1, ''late'', now())', i % 10, i);
    IF i % 50 = 0 THEN COMMIT; END IF;
  END LOOP;
END \$\$;
SQL
  t1=$(date +%s.%N)
  end_lsn=$(psql -qXAt "$SRC" -c "SELECT pg_current_wal_lsn()")
  until [ "$(psql -qXAt "$SRC" -c "SELECT confirmed_flush_lsn >= '$end_lsn' FROM pg_replication_slots WHERE slot_name = 'pgtide_scale_stream'")" = t ]; do
    kill -0 $runpid 2>/dev/null || { echo "pgtide run ended:" >&2; tail -20 "$work/stream.log" >&2; exit 1; }
    sleep 0.1
  done
  t2=$(date +%s.%N)
  touch "$work/stop"
  wait $runpid || { echo "pgtide run failed:" >&2; tail -20 "$work/stream.log" >&2; exit 1; }
  st_backlog=$(echo "$t1 - $t0" | bc | xargs printf '%.2f')
  st_catchup=$(echo "$t2 - $t1" | bc | xargs printf '%.2f')
  read -r st_total st_mb < <(awk '{ printf "%s %.0f\n", $1, $2 / 1024 }' "$work/stream.time")
fi

cat <<EOF

pgtide many-tables benchmark — $TABLES tables x $ROWS rows in 10 schemas, $(psql -qXAt "$SRC" -c "SELECT count(*) FROM pg_constraint WHERE contype = 'f'") foreign keys, $size;
$(nproc) CPUs, PostgreSQL $(psql -qXAt "$SRC" -c "SHOW server_version"), jobs = $JOBS

                               seconds    peak RSS (MB)
pgtide plan                    $(printf '%-10s %s' "$plan_s" "$plan_mb")
pgtide check                   $(printf '%-10s %s' "$check_s" "$check_mb")
pgtide run (schema + full)     $(printf '%-10s %s' "$run_s" "$run_mb")
pgcopydb clone                 $(printf '%-10s %s' "$cp_s" "$cp_mb")
pgtide run with incremental    $(printf '%-10s %s' "$st_total" "$st_mb")   (the whole run, backlog included)
  backlog over every table: written in $st_backlog s, applied $st_catchup s after it was written
target after pgtide: $tables_tgt tables, $fks_tgt foreign keys
EOF
