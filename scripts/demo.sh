#!/usr/bin/env bash
# The demo: two throwaway clusters, a sample database on the source, a write workload on it,
# and a migration with examples/demo.lua: schema, full load, incremental while the workload
# writes, then `pgtide cutover` (fence, drain, sequences, verification) printing the write
# downtime. Everything is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
PGTIDE=$(realpath "${PGTIDE:-build/pgtide}")
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
WORKLOAD_SECONDS=${WORKLOAD_SECONDS:-20}
work=$(mktemp -d /tmp/pgtide-demo.XXXXXX)
chmod 755 "$work"
cleanup() {
  local pids; pids=$(jobs -p); [ -n "$pids" ] && { kill $pids 2>/dev/null || true; }
  bash scripts/clusters.sh stop "$work/clusters" >/dev/null 2>&1; rm -rf "$work"; return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== starting two throwaway PostgreSQL clusters in $work"
bash scripts/clusters.sh start "$work/clusters" >/dev/null
set -a; . "$work/clusters/env"; set +a
base_src=$SOURCE_URL; base_tgt=$TARGET_URL
psql -q "$base_src" -c "CREATE DATABASE shop"
psql -q "$base_tgt" -c "CREATE DATABASE shop"
export SOURCE_URL=${base_src%/postgres}/shop TARGET_URL=${base_tgt%/postgres}/shop
export DEMO_WORKLOAD_DONE="$work/workload.done"

echo "== loading the sample shop database on the source"
psql -q -v ON_ERROR_STOP=1 "$SOURCE_URL" -f examples/shop.sql

echo "== starting a write workload on the source for ${WORKLOAD_SECONDS}s (new orders, status changes)"
cat >"$work/workload.sql" <<'SQL'
\set c random(1, 2000)
\set p random(1, 500)
BEGIN;
INSERT INTO orders (customer_id, meta) VALUES (:c, '{"channel": "demo"}') RETURNING id \gset
INSERT INTO order_lines (order_id, line_no, product_id, quantity) VALUES (:id, 1, :p, 1 + :c % 3);
UPDATE orders SET status = 'shipped' WHERE id = (SELECT max(id) - 50 FROM orders);
COMMIT;
SQL
( "$PGBIN/pgbench" -n -c 2 -T "$WORKLOAD_SECONDS" -R 200 -f "$work/workload.sql" "$SOURCE_URL" >"$work/workload.log" 2>&1 \
    || echo "== the workload stopped: the source refuses writes once the cutover fenced it (expected)"
  touch "$DEMO_WORKLOAD_DONE"
  echo "== workload: $(grep -Eo 'number of transactions actually processed: [0-9/]+' "$work/workload.log")" ) &

echo "== pgtide run examples/demo.lua (in the background; it streams until the cutover)"
"$PGTIDE" run examples/demo.lua &
run=$!
until "$PGTIDE" status demo 2>/dev/null | grep -q "phase incremental"; do
  kill -0 "$run" 2>/dev/null || { wait "$run" || true; echo "== pgtide run ended before streaming"; exit 1; }
  sleep 0.5
done
sleep $(( WORKLOAD_SECONDS / 2 ))
echo "== pgtide cutover examples/demo.lua (the workload is still writing)"
status=0
"$PGTIDE" cutover examples/demo.lua || status=$?
wait "$run" || status=$?
wait || true
echo "== pgtide exit status: $status"
echo "== source and target now hold:"
for t in customers products orders order_lines; do
  printf '   %-12s source %8s   target %8s\n' "$t" "$(psql -qAt "$SOURCE_URL" -c "SELECT count(*) FROM $t")" \
    "$(psql -qAt "$TARGET_URL" -c "SELECT count(*) FROM $t")"
done
exit $status
