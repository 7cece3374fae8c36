#!/usr/bin/env bash
# Incremental migration benchmark: pgtide against native logical replication (CREATE
# SUBSCRIPTION), on the same throwaway clusters, same data, same backlog.
#
#   PGTIDE=build/pgtide bash scripts/bench-cdc.sh
#   (SCALE=10 TX=100000 STEADY=60 CLIENTS=4 to change the sizes; BIG_ROWS=10000000 adds a
#   single ~1 GB source transaction and reports pgtide's peak memory while applying it;
#   PERF=DIR records a perf profile of each catch-up; GROUP_CHANGES=N, BATCH_INSERTS=0 and
#   MERGE_UPDATES=0 change pgtide's settings)
#
# 1. pgbench -i on the source; the same initial data restored into two target databases
#    (bench_pgtide, bench_native). pgtide's slot and the native subscription's slot are both
#    created before any change, the subscription disabled (copy_data = false).
# 2. Backlog: TX tpcb-like transactions on the source with nobody consuming.
# 3. Catch-up: one marker row is inserted into bench_probe after the backlog. The subscription
#    is enabled and timed until its target holds the marker (looked up by key every 10 ms;
#    changes are applied in commit order); then pgtide streams the same backlog, timed until it
#    applied all 4 × TX + 1 changes.
# 4. Steady state, STEADY seconds of `pgbench -c CLIENTS` each, one consumer at a time: a probe
#    (pgbench -R 10) inserts clock_timestamp() into bench_probe on the source; on each target an
#    ENABLE ALWAYS trigger records clock_timestamp() − that value when the row is applied. Delay
#    = those samples (median, p99, max). Before the native window its subscription first
#    catches up what it missed (not measured).
set -euo pipefail
cd "$(dirname "$0")/.."
PGTIDE=$(realpath "${PGTIDE:-build/pgtide}")
SCALE=${SCALE:-10}
TX=${TX:-100000}
STEADY=${STEADY:-60}
CLIENTS=${CLIENTS:-4}

work=$(mktemp -d /tmp/pgtide-bench-cdc.XXXXXX)
chmod 755 "$work"
cleanup() {
  jobs -p | xargs -r kill 2>/dev/null || true
  bash scripts/clusters.sh stop "$work/clusters" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

say() { printf '%s  %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

say "starting clusters in $work/clusters"
# The test clusters run with synchronous_commit = off; a walsender only sends flushed WAL, so
# that would add up to wal_writer_delay (200 ms) to every delay figure, pgtide's and native's.
PGTIDE_SOURCE_CONF=$'max_wal_size = 4GB\nsynchronous_commit = on' PGTIDE_TARGET_CONF="max_wal_size = 4GB" \
  bash scripts/clusters.sh start "$work/clusters" >"$work/clusters.log" 2>&1
. "$work/clusters/env"
base_src=${SOURCE_URL%/postgres}
base_tgt=${TARGET_URL%/postgres}
SRC="$base_src/bench"
TGT_PGTIDE="$base_tgt/bench_pgtide"
TGT_NATIVE="$base_tgt/bench_native"
export PGOPTIONS="-c client_min_messages=warning"

psql -qX "$SOURCE_URL" -c "CREATE DATABASE bench"
psql -qX "$TARGET_URL" -c "CREATE DATABASE bench_pgtide" -c "CREATE DATABASE bench_native"
say "pgbench -i -s $SCALE"
pgbench -q -i -s "$SCALE" "$SRC" >"$work/init.log" 2>&1
psql -qX "$SRC" -c "CREATE TABLE bench_probe (id bigserial PRIMARY KEY, ts timestamptz NOT NULL)"
pg_dump -Fc -f "$work/initial.dump" "$SRC"
for db in "$TGT_PGTIDE" "$TGT_NATIVE"; do
  pg_restore -d "$db" "$work/initial.dump"
  psql -qX "$db" <<'SQL'
CREATE TABLE bench_lag (at timestamptz DEFAULT clock_timestamp(), lag float8);
CREATE FUNCTION bench_record_lag() RETURNS trigger LANGUAGE plpgsql SET search_path = public AS $$
BEGIN
  INSERT INTO public.bench_lag (lag) VALUES (extract(epoch FROM clock_timestamp() - NEW.ts));
  RETURN NEW;
END $$;
CREATE TRIGGER bench_probe_lag AFTER INSERT ON bench_probe FOR EACH ROW EXECUTE FUNCTION bench_record_lag();
ALTER TABLE bench_probe ENABLE ALWAYS TRIGGER bench_probe_lag;
SQL
done

cat >"$work/driver.lua" <<'LUA'
-- pgtide side of the benchmark: prepare | catchup CHANGES | steady STOPFILE
local tide = require "tide"
local cdc = require "tide.cdc"
local mode, src, tgt = arg[1], arg[2], arg[3]
local stop
local task = tide.task { name = "bench", source = src, target = tgt, migrate = { "incremental" },
  select = { include = { "public.pgbench_*", "public.bench_probe" } },
  incremental = { heartbeat_interval = 1, group_changes = tonumber(os.getenv("GROUP_CHANGES") or ""),
                  batch_inserts = os.getenv("BATCH_INSERTS") ~= "0", merge_updates = os.getenv("MERGE_UPDATES") ~= "0" },
  stop = function(st) return stop(st) end }
local s, t = assert(tide.connect(src)), assert(tide.connect(tgt))
local plan = require("tide.plan").build(task, s, t)
if mode == "prepare" then
  cdc.copy_done(task, cdc.prepare(task, plan, s, t, { snapshot = false }), t)
elseif mode == "catchup" then
  local want, started, done_at = tonumber(arg[4]), tide.monotonic(), nil
  stop = function(st)
    if st.changes >= want then done_at = done_at or tide.monotonic() return true end
  end
  local summary = cdc.stream(task, plan, s, t, { quiet = true, tick = 0.01 })
  print(string.format("%.3f %d", done_at - started, summary.transactions))
elseif mode == "steady" then
  stop = require("tide.when") { file_exists = arg[4] }
  cdc.stream(task, plan, s, t, { tick = 0.1, progress_every = 10 })
elseif mode == "rows" then
  -- stream until the target's pgbench_history holds arg[4] rows
  local want, watch = tonumber(arg[4]), assert(tide.connect(tgt))
  stop = function()
    return assert(watch:query("SELECT count(*) AS n FROM pgbench_history"))[1].n >= want
  end
  local summary = cdc.stream(task, plan, s, t, { quiet = true, tick = 0.5 })
  print(string.format("%d transactions, %d changes", summary.transactions, summary.changes))
elseif mode == "release" then
  cdc.release(task, s, t)
end
s:close(); t:close()
LUA

cat >"$work/wait.lua" <<'LUA'
-- wait.lua URL N: seconds until pgbench_history holds N rows (polled every 10 ms)
-- wait.lua URL marker ID enable: enables the subscription, then seconds until the bench_probe
--   row ID (written after the backlog) is on the target, looked up by its key every 10 ms; a
--   count(*) of pgbench_history every 10 ms would take CPU from the apply worker it times
local tide = require "tide"
local c = assert(tide.connect(arg[1]))
local t0 = tide.monotonic()
if arg[2] == "marker" then
  if arg[4] then assert(c:exec("ALTER SUBSCRIPTION native_sub ENABLE")) end
  while #assert(c:query("SELECT 1 FROM bench_probe WHERE id = $1", arg[3])) == 0 do tide.sleep(0.01) end
else
  local want = tonumber(arg[2])
  while assert(c:query("SELECT count(*) AS n FROM pgbench_history"))[1].n < want do tide.sleep(0.01) end
end
print(string.format("%.3f", tide.monotonic() - t0))
LUA
echo 'INSERT INTO bench_probe (ts) VALUES (clock_timestamp());' >"$work/probe.sql"

say "creating pgtide's slot and publication, and the native subscription (disabled)"
"$PGTIDE" script "$work/driver.lua" prepare "$SRC" "$TGT_PGTIDE"
psql -qX "$SRC" -c "CREATE PUBLICATION native_pub FOR TABLE pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history, bench_probe"
psql -qX "$TGT_NATIVE" -c "CREATE SUBSCRIPTION native_sub CONNECTION 'host=127.0.0.1 port=$PGTIDE_SOURCE_PORT dbname=bench user=postgres' PUBLICATION native_pub WITH (copy_data = false, enabled = false)"

say "backlog: $TX transactions, $CLIENTS clients"
pgbench -n -c "$CLIENTS" -j 2 -t $((TX / CLIENTS)) "$SRC" >"$work/backlog.log" 2>&1
gen_tps=$(awk '/^tps/ {print int($3); exit}' "$work/backlog.log")
rows=$(psql -qXAt "$SRC" -c "SELECT count(*) FROM pgbench_history")
# The marker: the last change of the backlog (one insert, applied after every other change).
marker=$(psql -qXAt "$SRC" -c "INSERT INTO bench_probe (ts) VALUES (clock_timestamp()) RETURNING id" | head -1)
backlog=$(psql -qXAt "$SRC" -c "SELECT pg_size_pretty(pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)) FROM pg_replication_slots WHERE slot_name = 'pgtide_bench'")
say "backlog written at $gen_tps tps: $rows history rows, $backlog of WAL"

# PERF=DIR records a system-wide profile of each catch-up (DIR/native.data, DIR/pgtide.data).
perf_on() { [ -n "${PERF:-}" ] || return 0; mkdir -p "$PERF"; perf record -q -a -g -F 997 -o "$PERF/$1.data" 2>/dev/null & perf_pid=$!; sleep 0.5; }
perf_off() { [ -n "${PERF:-}" ] || return 0; kill -INT "$perf_pid"; wait "$perf_pid" || true; }
say "catch-up: native"
perf_on native
native_catchup=$("$PGTIDE" script "$work/wait.lua" "$TGT_NATIVE" marker "$marker" enable)
perf_off
say "catch-up: pgtide"
perf_on pgtide
read -r pgtide_catchup pgtide_tx < <("$PGTIDE" script "$work/driver.lua" catchup "$SRC" "$TGT_PGTIDE" $((rows * 4 + 1)))
perf_off
psql -qX "$TGT_NATIVE" -c "ALTER SUBSCRIPTION native_sub DISABLE"

# The WAL the source keeps for a slot: bytes between its current position and what the consumer
# confirmed durable, sampled every 0.1 s by one psql session (in the background; kill it).
slot_sampler() {  # slot_sampler SLOT FILE
  printf "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint FROM pg_replication_slots WHERE slot_name = '%s' \\watch 0.1\n" "$1" >"$work/watch.sql"
  psql -qXAt "$SRC" -f "$work/watch.sql" >"$2" 2>/dev/null &
  sampler=$!
}
mb_median_max() {  # mb_median_max FILE → "median max" in MB
  grep -E '^-?[0-9]+$' "$1" | sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) { print "- -"; exit }
    printf "%.2f %.2f\n", v[int((NR + 1) / 2)] / 1048576, v[NR] / 1048576 }'
}

steady_window() {  # steady_window TARGET_URL SLOT → "median p99 max samples behind_median behind_max"
  psql -qX "$1" -c "TRUNCATE bench_lag"
  slot_sampler "$2" "$work/behind.$2"
  pgbench -n -c 1 -R 10 -T "$STEADY" -f "$work/probe.sql" "$SRC" >"$work/probe.log" 2>&1 &
  local probe=$!
  pgbench -n -c "$CLIENTS" -j 2 -T "$STEADY" "$SRC" >"$work/steady.log" 2>&1
  wait "$probe"
  kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null || true
  "$PGTIDE" script "$work/wait.lua" "$1" "$(psql -qXAt "$SRC" -c "SELECT count(*) FROM pgbench_history")" >/dev/null
  echo "$(psql -qXAt -F ' ' "$1" -c "SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY lag)::numeric, 4),
    round(percentile_cont(0.99) WITHIN GROUP (ORDER BY lag)::numeric, 4), round(max(lag)::numeric, 4), count(*)
    FROM bench_lag") $(mb_median_max "$work/behind.$2")"
}

say "steady state: pgtide, ${STEADY}s of pgbench -c $CLIENTS"
rm -f "$work/stop"
"$PGTIDE" script "$work/driver.lua" steady "$SRC" "$TGT_PGTIDE" "$work/stop" >"$work/pgtide-steady.log" 2>&1 &
stream=$!
# The window starts once pgtide streams (its plan and connections take a moment).
until [ "$(psql -qXAt "$SRC" -c "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'pgtide:bench:stream' AND state = 'streaming'")" = 1 ]; do
  kill -0 "$stream" 2>/dev/null || { cat "$work/pgtide-steady.log" >&2; exit 1; }
  sleep 0.1
done
sleep 1
read -r pg_med pg_p99 pg_max pg_n pg_behind pg_behind_max < <(steady_window "$TGT_PGTIDE" pgtide_bench)
touch "$work/stop"
wait "$stream"
pgtide_tps=$(awk '/^tps/ {print int($3); exit}' "$work/steady.log")
# The window ended caught up (steady_window waited for every history row): compare now.
sum_src=$(psql -qXAt "$SRC" -c "SELECT sum(abalance) FROM pgbench_accounts")
sum_pg=$(psql -qXAt "$TGT_PGTIDE" -c "SELECT sum(abalance) FROM pgbench_accounts")

say "steady state: native (after catching up what it missed)"
psql -qX "$TGT_NATIVE" -c "ALTER SUBSCRIPTION native_sub ENABLE"
"$PGTIDE" script "$work/wait.lua" "$TGT_NATIVE" "$(psql -qXAt "$SRC" -c "SELECT count(*) FROM pgbench_history")" >/dev/null
read -r nt_med nt_p99 nt_max nt_n nt_behind nt_behind_max < <(steady_window "$TGT_NATIVE" native_sub)
native_tps=$(awk '/^tps/ {print int($3); exit}' "$work/steady.log")

psql -qX "$TGT_NATIVE" -c "ALTER SUBSCRIPTION native_sub DISABLE" -c "ALTER SUBSCRIPTION native_sub SET (slot_name = NONE)" -c "DROP SUBSCRIPTION native_sub"
psql -qX "$SRC" -c "SELECT pg_drop_replication_slot('native_sub')" >/dev/null

big_line=""
if [ "${BIG_ROWS:-0}" -gt 0 ]; then
  say "one source transaction of $BIG_ROWS rows"
  before=$(psql -qXAt "$SRC" -c "SELECT pg_current_wal_lsn()")
  psql -qX "$SRC" -c "INSERT INTO pgbench_history SELECT 1, 1, g, 0, now(), 'big' FROM generate_series(1, $BIG_ROWS) g"
  big=$(psql -qXAt "$SRC" -c "SELECT pg_size_pretty(pg_wal_lsn_diff(pg_current_wal_lsn(), '$before'))")
  rows=$(psql -qXAt "$SRC" -c "SELECT count(*) FROM pgbench_history")
  say "applying it ($big of WAL) and what the native window left"
  /usr/bin/time -f "%M %e" -o "$work/big.time" "$PGTIDE" script "$work/driver.lua" rows "$SRC" "$TGT_PGTIDE" "$rows" >"$work/big.log" 2>&1
  read -r big_rss big_secs <"$work/big.time"
  spill=$(psql -qXAt "$SRC" -c "SELECT 'spilled by the source: ' || pg_size_pretty(spill_bytes) || ', streamed to pgtide: ' || pg_size_pretty(stream_bytes) FROM pg_stat_replication_slots WHERE slot_name = 'pgtide_bench'")
  big_line="single transaction of $BIG_ROWS rows ($big of WAL, $spill): applied in ${big_secs}s, pgtide peak RSS $((big_rss / 1024)) MB"
fi
"$PGTIDE" script "$work/driver.lua" release "$SRC" "$TGT_PGTIDE"

rate() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%.0f", n / s }'; }
cat <<EOF

pgtide incremental benchmark — scale $SCALE, $TX tpcb-like transactions of backlog ($backlog of WAL),
steady state ${STEADY}s of pgbench -c $CLIENTS; $(nproc) CPUs, PostgreSQL $(psql -qXAt "$SRC" -c "SHOW server_version")

                                   pgtide          native
catch-up time (s)                  $(printf '%-15s %s' "$pgtide_catchup" "$native_catchup")
catch-up rate (tx/s)               $(printf '%-15s %s' "$(rate "$TX" "$pgtide_catchup")" "$(rate "$TX" "$native_catchup")")
steady delay median (s)            $(printf '%-15s %s' "$pg_med" "$nt_med")
steady delay p99 (s)               $(printf '%-15s %s' "$pg_p99" "$nt_p99")
steady delay max (s)               $(printf '%-15s %s' "$pg_max" "$nt_max")
steady samples                     $(printf '%-15s %s' "$pg_n" "$nt_n")
slot behind, median (MB)           $(printf '%-15s %s' "$pg_behind" "$nt_behind")
slot behind, max (MB)              $(printf '%-15s %s' "$pg_behind_max" "$nt_behind_max")
source tps during the window       $(printf '%-15s %s' "$pgtide_tps" "$native_tps")
target = source (sum of abalance)  $( [ "$sum_src" = "$sum_pg" ] && echo yes || echo "NO ($sum_pg vs $sum_src)")
$big_line
EOF
