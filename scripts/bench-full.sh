#!/usr/bin/env bash
# Full-load benchmark: pgtide against `pgcopydb clone` and `pg_dump -Fd -j N` + `pg_restore -j N`
# on several dataset shapes, each run from an empty target database, on two throwaway local
# clusters. A figure that holds for one shape only is not a figure about the tool, so every
# shape is measured the same way (docs/performance.md, "How the figures are measured").
#
#   PGTIDE=build/pgtide bash scripts/bench-full.sh [--shapes "current shape1 shape2"]
#       [--jobs "2 4"] [--runs 5] [--scale-down K] [--tools "pgtide pgcopydb pg_dump"]
#       [--keep DIR] [--verify]
#
# Shapes (scripts/lib/bench-datasets.sh): `current` (pgbench 60 + mixed/toasted/nokey, the
# dataset of the earlier figures), `shape1` (pgbench 60 + an application's tables, durable
# server settings), `shape2` (2,000 small tables in 10 schemas). --scale-down K divides every
# row count, the pgbench scale and the table count by K (K = 60 builds all three in seconds).
#
# Configurations, for each job count J of --jobs: pgtide with jobs = index_jobs = J, `pgcopydb
# clone --table-jobs J --index-jobs J`, `pg_dump -Fd -j J` then `pg_restore -j J`; and once
# pgtide at its defaults (no `full` settings in the playbook: full.jobs = "auto", whose
# choices — the count it started at, every change, the count it ended at — are read from the
# task's timeline after each run and printed with the summary). Round r runs every configuration
# once, the order rotated by one from round to round, so a slow moment of the machine does not
# fall on one tool's runs; each run starts from a new empty target database after a CHECKPOINT
# on both servers and a `sync`, and its copy is checked (row count of every table, the numbers of
# indexes and constraints, the sequences) before the next. Printed per shape and configuration:
# every run, the median, the min–max spread, the ratio to pgcopydb's median at the same job
# count, and pgtide's defaults against pgcopydb at its best job count; throughput (source
# database size / median) and peak RSS (GNU time's maximum resident set size of the tool's
# largest process). The summary at the end is markdown, ready for docs/performance.md.
# --keep DIR keeps the clusters and the built datasets for the next invocation (a dataset is
# rebuilt only when its shape or K differ). --verify times `pgtide verify` of pgtide's copy
# (--runs times) after each shape's rounds.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/bench-datasets.sh
. scripts/lib/bench-stats.sh
SHAPES="current shape1 shape2"; JOBS="2 4"; RUNS=5; K=1; KEEP=""; TOOLS="pgtide pgcopydb pg_dump"; VERIFY=""
command_line="bash scripts/bench-full.sh $*"
while [ $# -gt 0 ]; do
  case "$1" in
    --shapes) SHAPES=$2; shift 2 ;;
    --jobs) JOBS=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --scale-down) K=$2; shift 2 ;;
    --tools) TOOLS=$2; shift 2 ;;
    --keep) KEEP=$2; shift 2 ;;
    --verify) VERIFY=1; shift ;;
    *) echo "unknown option $1 (see the top of $0)" >&2; exit 2 ;;
  esac
done
for s in $SHAPES; do
  shape_describe "$s" 1 >/dev/null || { echo "unknown shape '$s': use current, shape1 or shape2" >&2; exit 2; }
done
for t in $TOOLS; do
  case "$t" in pgtide | pgcopydb | pg_dump) ;; *) echo "unknown tool '$t': use pgtide, pgcopydb or pg_dump" >&2; exit 2 ;; esac
done
for n in $JOBS "$RUNS" "$K"; do
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "--jobs, --runs and --scale-down take positive integers, not '$n'" >&2; exit 2; }
done
PGTIDE=$(realpath -m "${PGTIDE:-build/pgtide}")
[ -x "$PGTIDE" ] || { echo "no pgtide binary at $PGTIDE: build it (make) or set PGTIDE=path" >&2; exit 2; }
need="time"; [[ " $TOOLS " == *" pgcopydb "* ]] && need="$need pgcopydb"
for p in $need; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || {
    apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$p" >/dev/null; }
done
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
work=${KEEP:-$(mktemp -d /tmp/pgtide-bench.XXXXXX)}
mkdir -p "$work"; chmod 755 "$work"
cleanup() {
  rm -rf "$work/dump" "$work/pgcopydb" "$work/old"  # a copy of a whole shape each, not worth keeping
  [ -n "$KEEP" ] || { bash scripts/clusters.sh stop "$work/clusters" >/dev/null 2>&1; rm -rf "$work"; }
}
trap cleanup EXIT
say() { echo "$(date +%H:%M:%S)  $*" >&2; }

conf="shared_buffers = 1GB
maintenance_work_mem = 512MB
max_wal_size = 8GB
checkpoint_timeout = 30min
max_locks_per_transaction = 1024
autovacuum = off"
if [ ! -f "$work/clusters/env" ]; then
  PGTIDE_SOURCE_CONF="$conf" PGTIDE_TARGET_CONF="$conf" bash scripts/clusters.sh start "$work/clusters" >/dev/null
fi
set -a; . "$work/clusters/env"; set +a
export PGOPTIONS="-c client_min_messages=warning"
src_url() { echo "${SOURCE_URL%/postgres}/bench_$1"; }
tgt_url() { echo "${TARGET_URL%/postgres}/bench_$1"; }

# The configurations of one round, in their first round's order.
configs=()
[[ " $TOOLS " == *" pgtide "* ]] && configs+=(pgtide)
for j in $JOBS; do for t in $TOOLS; do configs+=("$t-j$j"); done; done
label() {
  case "$1" in
    pgtide) echo "pgtide (defaults: jobs = \"auto\")" ;;
    pgtide-j*) echo "pgtide, jobs = index_jobs = ${1#pgtide-j}" ;;
    pgcopydb-j*) echo "pgcopydb clone --table-jobs ${1#pgcopydb-j} --index-jobs ${1#pgcopydb-j}" ;;
    pg_dump-j*) echo "pg_dump -Fd -j ${1#pg_dump-j} + pg_restore -j ${1#pg_dump-j}" ;;
  esac
}

# A dataset is built once per shape and K; the database's comment says which, so --keep reuses
# it only when it is the one asked for (an interrupted build has no comment and is rebuilt).
prepare_shape() {  # prepare_shape SHAPE
  local shape=$1 want="pgtide-bench $1 scale-down $K" have
  have=$(psql -qXAt "$SOURCE_URL" -c "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = 'bench_$shape'")
  if [ "$have" != "$want" ]; then
    say "building $shape: $(shape_describe "$shape" "$K")"
    psql -qX "$SOURCE_URL" -c "DROP DATABASE IF EXISTS \"bench_$shape\"" -c "CREATE DATABASE \"bench_$shape\""
    shape_build "$shape" "$(src_url "$shape")" "$K" "$PGBIN"
    psql -qX "$SOURCE_URL" -c "COMMENT ON DATABASE \"bench_$shape\" IS '$want'"
  fi
  local url
  for url in "$SOURCE_URL" "$TARGET_URL"; do
    shape_settings "$shape" | while read -r stmt; do psql -qX "$url" -c "$stmt" </dev/null; done
    psql -qXAt "$url" -c "SELECT pg_reload_conf()" >/dev/null
  done
  database_fingerprint "$(src_url "$shape")" >"$work/$shape.fingerprint"
  size[$shape]=$(psql -qXAt "$SOURCE_URL" -c "SELECT pg_database_size('bench_$shape')")
  rows[$shape]=$(awk '/^table / { n += $4 } END { print n + 0 }' "$work/$shape.fingerprint")
  tables[$shape]=$(grep -c '^table ' "$work/$shape.fingerprint")
  settings[$shape]=$(psql -qXAt "$SOURCE_URL" -c "SELECT string_agg(name || ' = ' || current_setting(name), ', ' ORDER BY name) FROM pg_settings WHERE name IN ('fsync', 'full_page_writes', 'synchronous_commit', 'shared_buffers', 'maintenance_work_mem')")
  local j
  for j in default $JOBS; do
    local full=""; [ "$j" = default ] || full="full = { jobs = $j, index_jobs = $j },"
    cat >"$work/$shape-$j.lua" <<LUA
local tide = require "tide"
return tide.task { name = "bench", source = "$(src_url "$shape")", target = "$(tgt_url "$shape")",
                   migrate = { "schema", "full" }, progress = "none", $full }
LUA
  done
}

# Files deleted just before a run slow down the files it creates: ext4 without a journal (this
# machine's root file system) skips every inode freed in the last 60 s when it allocates one
# (find_inode_bit → recently_deleted in the kernel), and a 2,000-table copy creates about
# 10,000 files. Dropping the previous run's copy before each run made every run of shape2 but
# the first 40-70 % slower, whichever the tool (a quarter of the target's CPU in that kernel
# path). A real target has no such just-deleted files, so for a shape of many tables the
# previous copies (target databases, pg_dump's and pgcopydb's directories) are set aside and
# deleted only after the shape's last run, followed by a minute's pause before the next shape.
DEFER=""
retire_dir() {  # retire_dir DIR: out of the way, deleted now or at the shape's end
  [ -e "$1" ] || return 0
  if [ -n "$DEFER" ]; then mkdir -p "$work/old"; mv "$1" "$work/old/$(date +%s%N)"
  else rm -rf "$1"; fi
}
retire_all() {  # retire_all SHAPE MORE: delete what the shape's runs set aside
  local db
  for db in $(psql -qXAt "$TARGET_URL" -c "SELECT datname FROM pg_database WHERE datname LIKE 'bench\_$1\_old\_%'"); do
    psql -qX "$TARGET_URL" -c "DROP DATABASE \"$db\" WITH (FORCE)"
  done
  rm -rf "$work/old"; sync
  if [ -n "$DEFER" ] && [ -n "$2" ]; then say "$1: previous copies deleted; 60 s pause before the next shape"; sleep 60; fi
}

reset_target() {  # reset_target SHAPE
  if [ -n "$DEFER" ]; then
    # (run_config runs in a subshell: a name from the clock, not a counter)
    set_aside_database "$TARGET_URL" "bench_$1" "bench_$1_old_$(date +%s%N)" || exit 1
  else
    psql -qX "$TARGET_URL" -c "DROP DATABASE IF EXISTS \"bench_$1\" WITH (FORCE)" -c "CREATE DATABASE \"bench_$1\""
  fi
  # Start every run from the same state: no checkpoint debt from the previous load, and no
  # dirty page cache (pg_dump's directory, pgcopydb's work files) still being written back
  # while the next tool runs.
  psql -qX "$SOURCE_URL" -c "CHECKPOINT"; psql -qX "$TARGET_URL" -c "CHECKPOINT"; sync
}

run_config() {  # run_config SHAPE CONFIG → "seconds rss_kb"; the copy checked against the source
  local shape=$1 config=$2 out="$work/$1-$2.out" src tgt j
  src=$(src_url "$shape"); tgt=$(tgt_url "$shape"); j=${config##*-j}
  reset_target "$shape"
  case "$config" in
    pgtide) /usr/bin/time -f "%e %M" -o "$work/time" "$PGTIDE" run "$work/$shape-default.lua" >"$out" 2>&1 ;;
    pgtide-j*) /usr/bin/time -f "%e %M" -o "$work/time" "$PGTIDE" run "$work/$shape-$j.lua" >"$out" 2>&1 ;;
    pgcopydb-j*) retire_dir "$work/pgcopydb"
      /usr/bin/time -f "%e %M" -o "$work/time" pgcopydb clone --source "$src" --target "$tgt" \
        --table-jobs "$j" --index-jobs "$j" --dir "$work/pgcopydb" --no-owner --no-acl >"$out" 2>&1 ;;
    pg_dump-j*) retire_dir "$work/dump"
      /usr/bin/time -f "%e %M" -o "$work/time" bash -c \
        "'$PGBIN/pg_dump' -Fd -j $j -f '$work/dump' '$src' && '$PGBIN/pg_restore' -j $j -d '$tgt' '$work/dump'" >"$out" 2>&1 ;;
  esac || { echo "$config failed on $shape:" >&2; tail -20 "$out" >&2; exit 1; }
  database_fingerprint "$tgt" >"$work/target.fingerprint"
  diff "$work/$shape.fingerprint" "$work/target.fingerprint" >"$work/fingerprint.diff" || {
    echo "$config left an incomplete copy of $shape (< source, > target):" >&2
    head -20 "$work/fingerprint.diff" >&2; exit 1; }
  if [ "$config" = pgtide ]; then
    # What full.jobs = "auto" did: "2, 2->3, 3->2, ended 2" (tide.timeline's events).
    psql -qXAt "$tgt" -c "SELECT string_agg(CASE kind WHEN 'load_start' THEN data->>'streams'
        WHEN 'copy_streams' THEN (data->>'from') || '->' || (data->>'to') ELSE 'ended ' || (data->>'streams') END,
        ', ' ORDER BY seq) FROM pgtide.timeline WHERE kind IN ('load_start', 'copy_streams', 'load_done')" \
      >"$work/streams" 2>/dev/null || echo "?" >"$work/streams"
  fi
  cat "$work/time"
}

declare -A size rows tables settings times rss vtimes chose
left=$(echo $SHAPES | wc -w)
for shape in $SHAPES; do
  left=$((left - 1))
  prepare_shape "$shape"
  DEFER=""; [ "${tables[$shape]}" -ge 100 ] && DEFER=1
  say "$shape: source $((size[$shape] / 1048576)) MB, ${rows[$shape]} rows in ${tables[$shape]} tables; ${#configs[@]} configurations x $RUNS rounds"
  for config in "${configs[@]}"; do times[$shape|$config]=""; rss[$shape|$config]=0; done
  n=${#configs[@]}
  for r in $(seq 1 "$RUNS"); do
    for i in $(seq 0 $((n - 1))); do
      config=${configs[$(( (i + r - 1) % n ))]}
      read -r secs kb < <(run_config "$shape" "$config")
      say "   $shape round $r: $(label "$config"): ${secs}s, peak RSS $((kb / 1024)) MB"
      if [ "$config" = pgtide ]; then
        say "      copy streams: $(cat "$work/streams")"
        chose[$shape]="${chose[$shape]:+${chose[$shape]}; }round $r: $(cat "$work/streams")"
      fi
      times[$shape|$config]="${times[$shape|$config]} $secs"
      [ "$kb" -gt "${rss[$shape|$config]}" ] && rss[$shape|$config]=$kb
    done
  done
  if [ -n "$VERIFY" ] && [[ " $TOOLS " == *" pgtide "* ]]; then
    run_config "$shape" pgtide >/dev/null
    vtimes[$shape]=""
    for r in $(seq 1 "$RUNS"); do
      /usr/bin/time -f "%e %M" -o "$work/time" "$PGTIDE" verify "$work/$shape-default.lua" >"$work/verify.out" 2>&1 \
        || { echo "pgtide verify did not report a match on $shape:" >&2; tail -20 "$work/verify.out" >&2; exit 1; }
      read -r secs kb <"$work/time"
      say "   $shape verify round $r: ${secs}s, peak RSS $((kb / 1024)) MB"
      vtimes[$shape]="${vtimes[$shape]} $secs"
    done
  fi
  retire_all "$shape" "$([ "$left" -gt 0 ] && echo more)"
done

# The summary, one markdown table per shape.
commit=$(git describe --always --dirty 2>/dev/null || echo unknown)
echo
echo "Full load, $(date +%F), commit $commit, $(nproc) CPUs, PostgreSQL $(psql -qXAt "$SOURCE_URL" -c "SHOW server_version"), pgcopydb $(pgcopydb --version 2>/dev/null | awk '/version/ {print $NF; exit}')"
echo "\`PGTIDE=$PGTIDE $command_line\`; $RUNS interleaved rounds, the order rotated each round."
for shape in $SHAPES; do
  declare -A med=()
  best_j=""
  for config in "${configs[@]}"; do
    read -r m _ < <(stats ${times[$shape|$config]})
    med[$config]=$m
    if [[ "$config" == pgcopydb-j* ]] && { [ -z "$best_j" ] || awk -v a="$m" -v b="${med[pgcopydb-j$best_j]}" 'BEGIN { exit !(a < b) }'; }; then
      best_j=${config#pgcopydb-j}
    fi
  done
  echo
  echo "**$shape** (scale-down $K): $(shape_describe "$shape" "$K")."
  echo "Source database $((size[$shape] / 1048576)) MB, ${rows[$shape]} rows in ${tables[$shape]} tables; servers: ${settings[$shape]}."
  echo
  echo "| configuration | runs (s) | median (s) | min–max (s) | spread | vs pgcopydb, same jobs | MB/s | peak RSS (MB) |"
  echo "|---|---|---|---|---|---|---|---|"
  for config in "${configs[@]}"; do
    read -r m lo hi spread < <(stats ${times[$shape|$config]})
    vs="-"
    case "$config" in
      pgtide) [ -n "$best_j" ] && vs="$(ratio "$m" "${med[pgcopydb-j$best_j]}") (pgcopydb at $best_j jobs, its best)" ;;
      *) vs=$(ratio "$m" "${med[pgcopydb-j${config##*-j}]:-}") ;;
    esac
    echo "| $(label "$config") | $(echo ${times[$shape|$config]} | sed 's/ /, /g') | $m | $lo–$hi | $spread | $vs |" \
      "$(awk -v s="${size[$shape]}" -v t="$m" 'BEGIN { printf "%.1f", s / 1048576 / t }') | $((rss[$shape|$config] / 1024)) |"
  done
  if [ -n "${vtimes[$shape]:-}" ]; then
    read -r m lo hi spread < <(stats ${vtimes[$shape]})
    echo "| \`pgtide verify\` of pgtide's copy | $(echo ${vtimes[$shape]} | sed 's/ /, /g') | $m | $lo–$hi | $spread | $(ratio "$m" "${med[pgtide]:-}") × pgtide's copy | $(awk -v s="${size[$shape]}" -v t="$m" 'BEGIN { printf "%.1f", s / 1048576 / t }') | |"
  fi
  if [ -n "${chose[$shape]:-}" ]; then
    echo
    echo "pgtide's defaults, copy streams (start, changes, end): ${chose[$shape]}."
  fi
  unset med
done
