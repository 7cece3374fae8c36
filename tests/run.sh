#!/usr/bin/env bash
# The whole test suite: C unit tests, Lua unit tests, and integration tests against throwaway
# PostgreSQL clusters started here and stopped on exit (also on failure or Ctrl-C): TEST_JOBS
# workers (2 by default) take the integration files one at a time, each on its own two clusters.
#   PGTIDE=build/pgtide UNIT_DIR=build/tests bash tests/run.sh [PATTERN]
# PATTERN limits the run to test files whose path contains it.
set -uo pipefail
cd "$(dirname "$0")/.."
PGTIDE=${PGTIDE:-build/pgtide}
UNIT_DIR=${UNIT_DIR:-build/tests}
PATTERN=${1:-}
export PGTIDE=$(realpath "$PGTIDE")

work=$(mktemp -d /tmp/pgtide-test.XXXXXX)
chmod 755 "$work"
cleanup() {
  local w
  for w in $(jobs -p); do kill "$w" 2>/dev/null || true; done
  for w in "$work"/w*/clusters; do
    [ -d "$w" ] && { bash scripts/clusters.sh stop "$w" >/dev/null 2>&1 || true; }
  done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Each file's outcome, one line each ("passed failed skipped seconds label"), appended by
# whichever worker ran it; the totals are read from it at the end.
results="$work/results"; : >"$results"

# A worker's own directory: its scratch files (PGTIDE_TEST_TMP), the control sockets of the
# tasks its tests start (XDG_RUNTIME_DIR), and its two clusters.
worker_dir() {  # worker_dir N → sets PGTIDE_TEST_TMP and XDG_RUNTIME_DIR for this shell
  local dir="$work/w$1"
  mkdir -p "$dir/run"; chmod 755 "$dir"; chmod 700 "$dir/run"
  export PGTIDE_TEST_TMP="$dir" XDG_RUNTIME_DIR="$dir/run"
}

run_one() {  # run_one LABEL CMD...
  local label=$1; shift
  local out="$PGTIDE_TEST_TMP/out.txt" rc p f s plan reported t0=$SECONDS
  # A hung test file fails after FILE_TIMEOUT seconds instead of hanging the suite
  # (timeout signals the whole process group: child pgtide processes too).
  { echo "# $label"; timeout -k 10 "${FILE_TIMEOUT:-600}" "$@" 2>&1; } >"$out"; rc=$?
  [ "$rc" = 124 ] && echo "not ok - $label timed out after ${FILE_TIMEOUT:-600}s" >>"$out"
  # TAP: "ok N", "not ok N", and "ok N ... # SKIP reason", which counts as skipped, not passed.
  s=$(grep -cE '^ok [0-9]+.*# SKIP' "$out" || true)
  p=$(grep -cE '^ok [0-9]+' "$out" || true); p=$((p - s))
  f=$(grep -cE '^not ok [0-9]+' "$out" || true)
  reported=$((p + s + f))
  if [ "$rc" != 0 ] && [ "$f" = 0 ]; then
    # A crash or an error outside any case still counts as a failure.
    echo "not ok - $label exited with status $rc" >>"$out"
    f=1
  fi
  # The plan ("1..N"): a file that stops before its last case, or (Lua) prints no plan, fails.
  plan=$(grep -m1 -oE '^1\.\.[0-9]+' "$out" | cut -d. -f3)
  if [ -n "$plan" ] && [ "$reported" -lt "$plan" ]; then
    echo "not ok - $label planned $plan cases and reported $reported" >>"$out"
    f=$((f + 1))
  elif [ -z "$plan" ] && [ "${label%.lua}" != "$label" ]; then
    echo "not ok - $label printed no TAP plan" >>"$out"
    f=$((f + 1))
  fi
  # One file's output at a time, whole, whichever worker ran it.
  {
    flock 9
    cat "$out"
    echo "$p $f $s $((SECONDS - t0)) $label" >>"$results"
  } 9>"$work/print.lock"
}

worker_dir 0
# C unit tests (no server needed)
[ -n "${NO_UNIT:-}" ] && UNIT_DIR=/nonexistent
for t in "$UNIT_DIR"/test_*; do
  [ -x "$t" ] || continue
  case "$t" in *"$PATTERN"*) ;; *) continue ;; esac
  run_one "$t" "$t"
done

# Lua unit tests (no server needed)
for t in $( [ -z "${NO_UNIT:-}" ] && ls tests/unit/*_test.lua 2>/dev/null); do
  [ -f "$t" ] || continue
  case "$t" in *"$PATTERN"*) ;; *) continue ;; esac
  run_one "$t" "$PGTIDE" script tests/lib/runner.lua "$t"
done

# Integration tests on real servers (TEST_DIRS: which directories, default tests/faults and
# tests/integration; `make test-faults` runs tests/faults)
integration=()
for t in $(for d in ${TEST_DIRS:-tests/faults tests/integration}; do ls "$d"/*_test.lua 2>/dev/null; done); do
  [ -f "$t" ] || continue
  case "$t" in *"$PATTERN"*) integration+=("$t") ;; esac
done
# TEST_JOBS workers (default 2), each with its own two clusters, take the files one at a time
# in this order (the fault suites, the longest, first).
worker() {  # worker N
  worker_dir "$1"
  local dir="$PGTIDE_TEST_TMP" i t
  if ! bash scripts/clusters.sh start "$dir/clusters" >"$dir/clusters.log" 2>&1; then
    { flock 9; cat "$dir/clusters.log"; echo "0 1 0 0 clusters of worker $1" >>"$results"; } 9>"$work/print.lock"
    return 1
  fi
  set -a; . "$dir/clusters/env"; set +a
  export PGTIDE_SOURCE_ADMIN="$SOURCE_URL" PGTIDE_TARGET_ADMIN="$TARGET_URL"
  while true; do
    i=$( { flock 9; n=$(cat "$work/next"); echo $((n + 1)) >"$work/next"; echo "$n"; } 9>"$work/next.lock")
    [ "$i" -lt ${#integration[@]} ] || break
    t=${integration[$i]}
    run_one "$t" "$PGTIDE" script tests/lib/runner.lua "$t"
  done
  bash scripts/clusters.sh stop "$dir/clusters" >/dev/null 2>&1 || true
}
if [ ${#integration[@]} -gt 0 ]; then
  echo 0 >"$work/next"
  jobs_n=${TEST_JOBS:-2}
  [[ "$jobs_n" =~ ^[1-9][0-9]*$ ]] || { echo "TEST_JOBS must be a positive integer, not '$jobs_n'" >&2; exit 2; }
  [ "$jobs_n" -gt ${#integration[@]} ] && jobs_n=${#integration[@]}
  for ((k = 1; k <= jobs_n; k++)); do worker "$k" & done
  wait
fi

passed=0; failed=0; skipped=0; failed_files=()
while read -r p f s secs label; do
  passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
  [ "$f" != 0 ] && failed_files+=("$label")
done <"$results"
# The slowest files, to keep the suite within its time budget.
if [ "$(wc -l <"$results")" -gt 1 ]; then
  echo "# slowest files (seconds): $(sort -k4,4 -rn "$results" | head -8 | awk '{printf "%s%s %s", (NR > 1 ? "; " : ""), $4, $5}')"
  echo "# whole run: $SECONDS s"
fi
if [ ${#failed_files[@]} -gt 0 ]; then
  echo "# failing: ${failed_files[*]}"
fi
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" = 0 ]
