#!/usr/bin/env bash
# Incremental migration benchmark: pgtide against native logical replication (CREATE
# SUBSCRIPTION), on the same throwaway clusters, same data, same backlog, for several shapes,
# RUNS interleaved runs each (docs/performance.md, "How the figures are measured").
#
#   PGTIDE=build/pgtide bash scripts/bench-cdc.sh
#   (SHAPES="s10c4 s60c2" RUNS=5 TX=100000 STEADY=60 to change what is measured; a shape sNcM
#   is pgbench at scale N with M clients. BIG_ROWS=10000000 adds, per shape, a single ~1 GB
#   source transaction and reports pgtide's peak memory while applying it; PERF=DIR records a
#   perf profile of each catch-up; GROUP_CHANGES=N, BATCH_INSERTS=0, BATCH_UPDATES=0, MERGE_UPDATES=0 and
#   APPLY_CONNECTIONS=N (parallel apply) change pgtide's settings. A quick check: SHAPES="s1c4 s1c2" TX=2000 STEADY=3 RUNS=2)
#
# Per shape, on new clusters:
# 1. pgbench -i on the source; the same initial data restored into two target databases
#    (bench_pgtide, bench_native). pgtide's slot and the native subscription's slot are both
#    created before any change, the subscription disabled (copy_data = false).
# Then RUNS times (pgtide goes first in odd runs, native in even ones):
# 2. Both consumers are brought to the same point (a marker row, not timed) and stopped.
# 3. Backlog: TX tpcb-like transactions by M clients with nobody consuming, then one marker row
#    in bench_probe.
# 4. Catch-up, one consumer after the other: the subscription is enabled and timed until its
#    target holds the marker (looked up by key every 10 ms; changes are applied in commit
#    order); pgtide streams the same backlog, timed until it applied all 4 × transactions + 1
#    changes (and the marker is checked to be on its target).
# 5. Steady state, STEADY seconds of `pgbench -c M` for each consumer alone (each first catches
#    up what it missed, not measured): a probe (pgbench -R 10) inserts clock_timestamp() into
#    bench_probe on the source; on each target an ENABLE ALWAYS trigger records
#    clock_timestamp() − that value when the row is applied (delay: median, p99, max); the WAL
#    the source keeps for the consumer's slot is sampled every 0.1 s (slot behind: median, max).
# After the last run both consumers catch up and the targets' sum(abalance) and history rows
# must equal the source's. Printed per shape: every run, then medians, min–max spread and the
# ratio of catch-up times, and the slot's and delay's figures over all windows, as markdown.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/bench-stats.sh
PGTIDE=$(realpath -m "${PGTIDE:-build/pgtide}")
SHAPES=${SHAPES:-"s10c4 s60c2"}
RUNS=${RUNS:-5}
TX=${TX:-100000}
STEADY=${STEADY:-60}
# BUILTIN=simple-update: pgbench's script without tellers and branches (an account update and a
# history insert: no row every transaction touches), 2 changes a transaction instead of 4.
BUILTIN=${BUILTIN:-tpcb-like}
case "$BUILTIN" in tpcb-like) per_tx=4 ;; simple-update) per_tx=2 ;;
  *) echo "BUILTIN: '$BUILTIN' is not tpcb-like or simple-update" >&2; exit 2 ;; esac
for s in $SHAPES; do
  [[ "$s" =~ ^s[1-9][0-9]*c[1-9][0-9]*$ ]] || { echo "SHAPES: '$s' is not sNcM (pgbench scale N, M clients), e.g. s10c4" >&2; exit 2; }
done
for v in RUNS TX STEADY; do
  [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || { echo "$v must be a positive integer, not '${!v}'" >&2; exit 2; }
done
[ -x "$PGTIDE" ] || { echo "no pgtide binary at $PGTIDE: build it (make) or set PGTIDE=path" >&2; exit 2; }
if [ "${BIG_ROWS:-0}" -gt 0 ]; then
  dpkg-query -W -f='${Status}' time 2>/dev/null | grep -q 'install ok installed' || {
    apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q time >/dev/null; }
fi

work=$(mktemp -d /tmp/pgtide-bench-cdc.XXXXXX)
chmod 755 "$work"
cleanup() {
  jobs -p | xargs -r kill 2>/dev/null || true
  for d in "$work"/*/clusters; do [ -d "$d" ] && bash scripts/clusters.sh stop "$d" >/dev/null 2>&1; done
  rm -rf "$work"
}
trap cleanup EXIT
export PGOPTIONS="-c client_min_messages=warning"
say() { printf '%s  %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

cat >"$work/driver.lua" <<'LUA'
-- pgtide side of the benchmark: prepare | catchup CHANGES | steady STOPFILE | upto MARKER | release
local tide = require "tide"
local cdc = require "tide.cdc"
local mode, src, tgt = arg[1], arg[2], arg[3]
local stop
local task = tide.task { name = "bench", source = src, target = tgt, migrate = { "incremental" },
  select = { include = { "public.pgbench_*", "public.bench_probe" } },
  incremental = { heartbeat_interval = 1, group_changes = tonumber(os.getenv("GROUP_CHANGES") or ""),
                  batch_inserts = os.getenv("BATCH_INSERTS") ~= "0", batch_updates = os.getenv("BATCH_UPDATES") ~= "0",
                  merge_updates = os.getenv("MERGE_UPDATES") ~= "0",
                  apply_connections = math.tointeger(tonumber(os.getenv("APPLY_CONNECTIONS") or "")) },
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
elseif mode == "upto" then
  -- stream until the target holds the bench_probe row arg[4] (written after all there is to apply)
  local watch = assert(tide.connect(tgt))
  stop = function()
    return #assert(watch:query("SELECT 1 FROM bench_probe WHERE id = $1", arg[4])) > 0
  end
  local summary = cdc.stream(task, plan, s, t, { quiet = true, tick = 0.2 })
  print(string.format("%d transactions, %d changes", summary.transactions, summary.changes))
elseif mode == "release" then
  cdc.release(task, s, t)
end
s:close(); t:close()
LUA

cat >"$work/wait.lua" <<'LUA'
-- wait.lua URL N: seconds until pgbench_history holds N rows (polled every 10 ms)
-- wait.lua URL marker ID [enable]: (enables the subscription, then) seconds until the
--   bench_probe row ID is on the target, looked up by its key every 10 ms; a count(*) of
--   pgbench_history every 10 ms would take CPU from the apply worker it times
-- Gives up after WAIT_LIMIT seconds (default 3600): a consumer that stopped must not hang the run.
local tide = require "tide"
local c = assert(tide.connect(arg[1]))
local t0, limit = tide.monotonic(), tonumber(os.getenv("WAIT_LIMIT") or "3600")
local function waited(what)
  if tide.monotonic() - t0 > limit then error(string.format("still waiting for %s after %d s", what, limit)) end
  tide.sleep(0.01)
end
if arg[2] == "marker" then
  if arg[4] then assert(c:exec("ALTER SUBSCRIPTION native_sub ENABLE")) end
  while #assert(c:query("SELECT 1 FROM bench_probe WHERE id = $1", arg[3])) == 0 do waited("marker " .. arg[3]) end
else
  local want = tonumber(arg[2])
  while assert(c:query("SELECT count(*) AS n FROM pgbench_history"))[1].n < want do waited(want .. " history rows") end
end
print(string.format("%.3f", tide.monotonic() - t0))
LUA
echo 'INSERT INTO bench_probe (ts) VALUES (clock_timestamp());' >"$work/probe.sql"

# --- one shape -----------------------------------------------------------------------------

marker() { psql -qXAt "$SRC" -c "INSERT INTO bench_probe (ts) VALUES (clock_timestamp()) RETURNING id" | head -1; }
history_rows() { psql -qXAt "$1" -c "SELECT count(*) FROM pgbench_history"; }

wait_inactive() {  # wait_inactive SLOT: until no walsender serves it (its consumer stopped)
  local _
  for _ in $(seq 1 600); do
    [ "$(psql -qXAt "$SRC" -c "SELECT active FROM pg_replication_slots WHERE slot_name = '$1'")" = f ] && return 0
    sleep 0.1
  done
  echo "the slot $1 is still in use 60 s after its consumer stopped" >&2; exit 1
}

native_stop() {
  psql -qX "$TGT_NATIVE" -c "ALTER SUBSCRIPTION native_sub DISABLE"
  wait_inactive native_sub
}

# Both consumers applied everything up to a new marker, and neither runs.
sync_both() {
  local m; m=$(marker)
  "$PGTIDE" script "$work/driver.lua" upto "$SRC" "$TGT_PGTIDE" "$m" >"$work/sync.log" 2>&1 \
    || { echo "pgtide did not catch up:" >&2; tail -20 "$work/sync.log" >&2; exit 1; }
  "$PGTIDE" script "$work/wait.lua" "$TGT_NATIVE" marker "$m" enable >/dev/null
  native_stop
  wait_inactive pgtide_bench
}

check_equal() {  # both targets hold the source's balances and history rows
  local want got db
  want="$(psql -qXAt "$SRC" -c "SELECT sum(abalance) FROM pgbench_accounts") $(history_rows "$SRC")"
  for db in "$TGT_PGTIDE" "$TGT_NATIVE"; do
    got="$(psql -qXAt "$db" -c "SELECT sum(abalance) FROM pgbench_accounts") $(history_rows "$db")"
    [ "$got" = "$want" ] || { echo "${db##*/} differs from the source: sum(abalance), history rows = $got, source $want" >&2; exit 1; }
  done
}

# PERF=DIR records a system-wide profile of each catch-up (DIR/SHAPE-rN-native.data, ...-pgtide.data).
perf_on() { [ -n "${PERF:-}" ] || return 0; mkdir -p "$PERF"; perf record -q -a -g -F 997 -o "$PERF/$1.data" 2>/dev/null & perf_pid=$!; sleep 0.5; }
perf_off() { [ -n "${PERF:-}" ] || return 0; kill -INT "$perf_pid"; wait "$perf_pid" || true; }

catchup() {  # catchup pgtide|native RUN → seconds
  perf_on "$shape-r$2-$1"
  if [ "$1" = native ]; then
    "$PGTIDE" script "$work/wait.lua" "$TGT_NATIVE" marker "$marker_id" enable
  else
    local secs
    read -r secs _ < <("$PGTIDE" script "$work/driver.lua" catchup "$SRC" "$TGT_PGTIDE" $((backlog_tx * per_tx + 1)))
    [ -n "$(psql -qXAt "$TGT_PGTIDE" -c "SELECT 1 FROM bench_probe WHERE id = $marker_id")" ] \
      || { echo "pgtide stopped after the backlog's changes, but the marker is not on its target" >&2; exit 1; }
    echo "$secs"
  fi
  perf_off
  [ "$1" = native ] && native_stop
  return 0
}

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

# CPU seconds a process has used (user + system), from /proc: the servers run on this machine.
cpu_secs() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat" 2>/dev/null || echo 0; }
# The target's next transaction id: only the consumer writes there during a window, one id for
# each transaction it commits (read from a snapshot, which takes no id of its own).
next_xid() { psql -qXAt "$1" -c "SELECT pg_snapshot_xmax(pg_current_snapshot())"; }

# Besides the delay and the slot, the window's cost on the target: the CPU time of the backend
# that applies (pgtide's apply session, native's apply worker) and of pgtide's own process, and
# the transactions committed on the target (pgtide commits groups of source transactions).
steady_window() {  # steady_window TARGET_URL SLOT [PGTIDE_PID] → "median p99 max samples behind_median behind_max tps
                   #   backend_cpu pgtide_cpu commits"
  psql -qX "$1" -c "TRUNCATE bench_lag"
  local backend cpu0 own0=0 commits0
  backend=$(psql -qXAt "$1" -c "SELECT pid FROM pg_stat_activity WHERE datname = current_database()
    AND (backend_type = 'logical replication worker' OR application_name = 'pgtide:bench:apply') LIMIT 1")
  cpu0=$(cpu_secs "$backend"); [ -n "${3:-}" ] && own0=$(cpu_secs "$3"); commits0=$(next_xid "$1")
  slot_sampler "$2" "$work/behind.$2"
  pgbench -n -c 1 -R 10 -T "$STEADY" -f "$work/probe.sql" "$SRC" >"$work/probe.log" 2>&1 &
  local probe=$!
  pgbench -n -b "$BUILTIN" -c "$clients" -j "$threads" -T "$STEADY" "$SRC" >"$work/steady.log" 2>&1
  wait "$probe"
  kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null || true
  "$PGTIDE" script "$work/wait.lua" "$1" "$(history_rows "$SRC")" >/dev/null
  local cpu1 own="-" commits1
  cpu1=$(cpu_secs "$backend"); [ -n "${3:-}" ] && own=$(awk -v a="$own0" -v b="$(cpu_secs "$3")" 'BEGIN { printf "%.2f", b - a }')
  commits1=$(next_xid "$1")
  echo "$(psql -qXAt -F ' ' "$1" -c "SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY lag)::numeric, 4),
    round(percentile_cont(0.99) WITHIN GROUP (ORDER BY lag)::numeric, 4), round(max(lag)::numeric, 4), count(*)
    FROM bench_lag") $(mb_median_max "$work/behind.$2") $(awk '/^tps/ {print int($3); exit}' "$work/steady.log") \
    $(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN { printf "%.2f", b - a }') $own $((commits1 - commits0))"
}

steady() {  # steady pgtide|native → steady_window's figures
  if [ "$1" = native ]; then
    psql -qX "$TGT_NATIVE" -c "ALTER SUBSCRIPTION native_sub ENABLE"
    "$PGTIDE" script "$work/wait.lua" "$TGT_NATIVE" marker "$(marker)" >/dev/null
    steady_window "$TGT_NATIVE" native_sub
    native_stop
    return 0
  fi
  rm -f "$work/stop"
  "$PGTIDE" script "$work/driver.lua" steady "$SRC" "$TGT_PGTIDE" "$work/stop" >"$work/pgtide-steady.log" 2>&1 &
  local stream=$!
  until [ "$(psql -qXAt "$SRC" -c "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'pgtide:bench:stream' AND state = 'streaming'")" = 1 ]; do
    kill -0 "$stream" 2>/dev/null || { cat "$work/pgtide-steady.log" >&2; exit 1; }
    sleep 0.1
  done
  # The window starts once pgtide applied what it missed (the other consumer's window).
  "$PGTIDE" script "$work/wait.lua" "$TGT_PGTIDE" marker "$(marker)" >/dev/null
  steady_window "$TGT_PGTIDE" pgtide_bench "$stream"
  touch "$work/stop"
  wait "$stream" || { echo "pgtide's steady stream failed:" >&2; tail -20 "$work/pgtide-steady.log" >&2; exit 1; }
  wait_inactive pgtide_bench
}

run_shape() {  # run_shape sNcM → appends the shape's markdown to $work/report.md
  shape=$1; scale=${shape#s}; scale=${scale%c*}; clients=${shape#*c}
  threads=$(( clients < 2 ? clients : 2 ))
  local dir="$work/$shape"
  mkdir -p "$dir"
  say "$shape: starting clusters in $dir/clusters"
  # The test clusters run with synchronous_commit = off; a walsender only sends flushed WAL, so
  # that would add up to wal_writer_delay (200 ms) to every delay figure, pgtide's and native's.
  # The subscription's launcher starts a worker at most once per wal_retrieve_retry_interval
  # (5 s by default): enabled again within 5 s of the sync's start, native's catch-up would
  # time that wait, not the apply.
  PGTIDE_SOURCE_CONF=$'max_wal_size = 4GB\nsynchronous_commit = on' \
  PGTIDE_TARGET_CONF=$'max_wal_size = 4GB\nwal_retrieve_retry_interval = 100ms' \
    bash scripts/clusters.sh start "$dir/clusters" >"$dir/clusters.log" 2>&1
  . "$dir/clusters/env"
  server_version=$(psql -qXAt "$SOURCE_URL" -c "SHOW server_version")
  SRC="${SOURCE_URL%/postgres}/bench"
  TGT_PGTIDE="${TARGET_URL%/postgres}/bench_pgtide"
  TGT_NATIVE="${TARGET_URL%/postgres}/bench_native"

  psql -qX "$SOURCE_URL" -c "CREATE DATABASE bench"
  psql -qX "$TARGET_URL" -c "CREATE DATABASE bench_pgtide" -c "CREATE DATABASE bench_native"
  say "$shape: pgbench -i -s $scale"
  pgbench -q -i -s "$scale" "$SRC" >"$dir/init.log" 2>&1
  psql -qX "$SRC" -c "CREATE TABLE bench_probe (id bigserial PRIMARY KEY, ts timestamptz NOT NULL)"
  pg_dump -Fc -f "$dir/initial.dump" "$SRC"
  for db in "$TGT_PGTIDE" "$TGT_NATIVE"; do
    pg_restore -d "$db" "$dir/initial.dump"
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
  rm -f "$dir/initial.dump"
  say "$shape: pgtide's slot and publication, and the native subscription (disabled)"
  "$PGTIDE" script "$work/driver.lua" prepare "$SRC" "$TGT_PGTIDE"
  psql -qX "$SRC" -c "CREATE PUBLICATION native_pub FOR TABLE pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history, bench_probe"
  psql -qX "$TGT_NATIVE" -c "CREATE SUBSCRIPTION native_sub CONNECTION 'host=127.0.0.1 port=$PGTIDE_SOURCE_PORT dbname=bench user=postgres' PUBLICATION native_pub WITH (copy_data = false, enabled = false)"

  local r order c pg_c nt_c wal rows_md="" all_pg="" all_nt="" all_ratio="" all_wal=""
  local pg_beh="" pg_behmax="" nt_beh="" nt_behmax="" pg_d="" pg_p99="" pg_dmax="" nt_d="" nt_p99="" nt_dmax=""
  declare -A fig
  for r in $(seq 1 "$RUNS"); do
    order="pgtide native"; [ $((r % 2)) = 0 ] && order="native pgtide"
    sync_both
    [ "$r" = 1 ] || check_equal
    local before_rows before_lsn
    before_rows=$(history_rows "$SRC"); before_lsn=$(psql -qXAt "$SRC" -c "SELECT pg_current_wal_lsn()")
    say "$shape run $r: backlog of $TX transactions by $clients clients"
    pgbench -n -b "$BUILTIN" -c "$clients" -j "$threads" -t $(( TX > clients ? TX / clients : 1 )) "$SRC" >"$work/backlog.log" 2>&1
    backlog_tx=$(( $(history_rows "$SRC") - before_rows ))
    marker_id=$(marker)
    wal=$(psql -qXAt "$SRC" -c "SELECT round(pg_wal_lsn_diff(pg_current_wal_lsn(), '$before_lsn') / 1048576.0, 1)")
    for c in $order; do
      say "$shape run $r: catch-up, $c"
      fig[$c.catchup]=$(catchup "$c" "$r")
    done
    for c in $order; do
      say "$shape run $r: steady state, $c, ${STEADY}s of pgbench -c $clients"
      fig[$c.steady]=$(steady "$c")
    done
    pg_c=${fig[pgtide.catchup]}; nt_c=${fig[native.catchup]}
    local p n
    read -r -a p <<<"${fig[pgtide.steady]}"; read -r -a n <<<"${fig[native.steady]}"
    say "$shape run $r: catch-up pgtide ${pg_c}s, native ${nt_c}s; slot behind median pgtide ${p[4]} MB, native ${n[4]} MB"
    all_pg="$all_pg $pg_c"; all_nt="$all_nt $nt_c"; all_ratio="$all_ratio $(ratio "$nt_c" "$pg_c")"; all_wal="$all_wal $wal"
    pg_d="$pg_d ${p[0]}"; pg_p99="$pg_p99 ${p[1]}"; pg_dmax="$pg_dmax ${p[2]}"; pg_beh="$pg_beh ${p[4]}"; pg_behmax="$pg_behmax ${p[5]}"
    nt_d="$nt_d ${n[0]}"; nt_p99="$nt_p99 ${n[1]}"; nt_dmax="$nt_dmax ${n[2]}"; nt_beh="$nt_beh ${n[4]}"; nt_behmax="$nt_behmax ${n[5]}"
    rows_md="$rows_md| $r | ${order%% *} | $pg_c / $nt_c | $(ratio "$nt_c" "$pg_c") | ${p[4]} / ${p[5]} | ${n[4]} / ${n[5]} | ${p[0]} / ${p[1]} / ${p[2]} | ${n[0]} / ${n[1]} / ${n[2]} | ${p[3]} / ${n[3]} | ${p[6]} / ${n[6]} | ${p[7]} + ${p[8]} / ${n[7]} | ${p[9]} / ${n[9]} |
"
  done
  sync_both
  check_equal

  local big_line=""
  if [ "${BIG_ROWS:-0}" -gt 0 ]; then
    say "$shape: one source transaction of $BIG_ROWS rows"
    local before big big_rss big_secs spill
    before=$(psql -qXAt "$SRC" -c "SELECT pg_current_wal_lsn()")
    psql -qX "$SRC" -c "INSERT INTO pgbench_history SELECT 1, 1, g, 0, now(), 'big' FROM generate_series(1, $BIG_ROWS) g"
    big=$(psql -qXAt "$SRC" -c "SELECT pg_size_pretty(pg_wal_lsn_diff(pg_current_wal_lsn(), '$before'))")
    say "$shape: pgtide applies it ($big of WAL)"
    /usr/bin/time -f "%M %e" -o "$work/big.time" "$PGTIDE" script "$work/driver.lua" upto "$SRC" "$TGT_PGTIDE" "$(marker)" >"$work/big.log" 2>&1
    read -r big_rss big_secs <"$work/big.time"
    spill=$(psql -qXAt "$SRC" -c "SELECT 'spilled by the source: ' || pg_size_pretty(spill_bytes) || ', streamed to pgtide: ' || pg_size_pretty(stream_bytes) FROM pg_stat_replication_slots WHERE slot_name = 'pgtide_bench'")
    big_line="Single transaction of $BIG_ROWS rows ($big of WAL, $spill): applied in ${big_secs}s, pgtide peak RSS $((big_rss / 1024)) MB."
  fi
  "$PGTIDE" script "$work/driver.lua" release "$SRC" "$TGT_PGTIDE"
  psql -qX "$TGT_NATIVE" -c "ALTER SUBSCRIPTION native_sub SET (slot_name = NONE)" -c "DROP SUBSCRIPTION native_sub"
  psql -qX "$SRC" -c "SELECT pg_drop_replication_slot('native_sub')" >/dev/null

  local pgm pglo pghi pgsp ntm ntlo nthi ntsp rm rlo rhi
  read -r pgm pglo pghi pgsp < <(stats $all_pg)
  read -r ntm ntlo nthi ntsp < <(stats $all_nt)
  read -r rm rlo rhi _ < <(stats $all_ratio)
  cat >>"$work/report.md" <<EOF

**$shape**: pgbench scale $scale; backlog of $backlog_tx tpcb-like transactions by $clients clients ($(median $all_wal) MB of WAL);
steady state ${STEADY} s of \`pgbench -c $clients\` per consumer, probe at 10 rows/s; $RUNS runs, pgtide first in odd runs.

| run | first | catch-up pgtide / native (s) | native ÷ pgtide | slot behind pgtide median / max (MB) | native (MB) | delay pgtide median / p99 / max (s) | native (s) | probe samples | source tps | steady CPU: pgtide's apply backend + pgtide / native's worker (s) | target commits pgtide / native |
|---|---|---|---|---|---|---|---|---|---|---|---|
$rows_md
| figure | pgtide | native | native ÷ pgtide |
|---|---|---|---|
| catch-up, median (s) | **$pgm** | $ntm | **$(ratio "$ntm" "$pgm")** (runs' ratios: median $rm, $rlo–$rhi) |
| catch-up, min–max (s), spread | $pglo–$pghi ($pgsp) | $ntlo–$nthi ($ntsp) | |
| catch-up rate at the median (tx/s) | $(awk -v n="$backlog_tx" -v s="$pgm" 'BEGIN { printf "%.0f", n / s }') | $(awk -v n="$backlog_tx" -v s="$ntm" 'BEGIN { printf "%.0f", n / s }') | |
| slot behind, median of the windows' medians (MB) | $(median $pg_beh) | $(median $nt_beh) | |
| slot behind, largest of the windows' max (MB) | $(maximum $pg_behmax) | $(maximum $nt_behmax) | |
| steady delay, median of the windows' medians (s) | $(median $pg_d) | $(median $nt_d) | |
| steady delay p99, median of the windows' (s) | $(median $pg_p99) | $(median $nt_p99) | |
| steady delay, largest max (s) | $(maximum $pg_dmax) | $(maximum $nt_dmax) | |

Both targets equal the source after the last run (sum of abalance, history rows). $big_line
EOF
  bash scripts/clusters.sh stop "$dir/clusters" >/dev/null 2>&1
}

for shape in $SHAPES; do run_shape "$shape"; done
echo
echo "Incremental, $(date +%F), commit $(git describe --always --dirty 2>/dev/null || echo unknown), $(nproc) CPUs, PostgreSQL $server_version"
echo "\`SHAPES=\"$SHAPES\" RUNS=$RUNS TX=$TX STEADY=$STEADY PGTIDE=$PGTIDE bash scripts/bench-cdc.sh\`"
cat "$work/report.md"
