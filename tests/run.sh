#!/usr/bin/env bash
# The whole test suite: C unit tests, Lua unit tests, and integration tests against two
# throwaway PostgreSQL clusters started here and stopped on exit (also on failure or Ctrl-C).
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
  bash scripts/clusters.sh stop "$work/clusters" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

passed=0; failed=0; skipped=0; failed_files=(); durations=()
export PGTIDE_TEST_TMP="$work"
# Control sockets of tasks started by tests live here, apart from any other run's.
export XDG_RUNTIME_DIR="$work/run"; mkdir -p "$XDG_RUNTIME_DIR"; chmod 700 "$XDG_RUNTIME_DIR"

run_one() {  # run_one LABEL CMD...
  local label=$1; shift
  local out="$work/out.txt" rc p f s plan reported t0=$SECONDS
  # A hung test file fails after FILE_TIMEOUT seconds instead of hanging the suite
  # (timeout signals the whole process group: child pgtide processes too).
  timeout -k 10 "${FILE_TIMEOUT:-600}" "$@" >"$out" 2>&1; rc=$?
  [ "$rc" = 124 ] && echo "not ok - $label timed out after ${FILE_TIMEOUT:-600}s" >>"$out"
  cat "$out"
  # TAP: "ok N", "not ok N", and "ok N ... # SKIP reason", which counts as skipped, not passed.
  s=$(grep -cE '^ok [0-9]+.*# SKIP' "$out" || true)
  p=$(grep -cE '^ok [0-9]+' "$out" || true); p=$((p - s))
  f=$(grep -cE '^not ok [0-9]+' "$out" || true)
  passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s)); reported=$((p + s + f))
  if [ "$rc" != 0 ] && [ "$f" = 0 ]; then
    # A crash or an error outside any case still counts as a failure.
    echo "not ok - $label exited with status $rc"
    failed=$((failed + 1)); f=1
  fi
  # The plan ("1..N"): a file that stops before its last case, or (Lua) prints no plan, fails.
  plan=$(grep -m1 -oE '^1\.\.[0-9]+' "$out" | cut -d. -f3)
  if [ -n "$plan" ] && [ "$reported" -lt "$plan" ]; then
    echo "not ok - $label planned $plan cases and reported $reported"
    failed=$((failed + 1)); f=1
  elif [ -z "$plan" ] && [ "${label%.lua}" != "$label" ]; then
    echo "not ok - $label printed no TAP plan"
    failed=$((failed + 1)); f=1
  fi
  if [ "$rc" != 0 ] || [ "$f" != 0 ]; then failed_files+=("$label"); fi
  durations+=("$((SECONDS - t0)) $label")
}

# C unit tests (no server needed)
[ -n "${NO_UNIT:-}" ] && UNIT_DIR=/nonexistent
for t in "$UNIT_DIR"/test_*; do
  [ -x "$t" ] || continue
  case "$t" in *"$PATTERN"*) ;; *) continue ;; esac
  echo "# $t"
  run_one "$t" "$t"
done

# Lua unit tests (no server needed)
for t in $( [ -z "${NO_UNIT:-}" ] && ls tests/unit/*_test.lua 2>/dev/null); do
  [ -f "$t" ] || continue
  case "$t" in *"$PATTERN"*) ;; *) continue ;; esac
  echo "# $t"
  run_one "$t" "$PGTIDE" script tests/lib/runner.lua "$t"
done

# Integration tests on real servers (TEST_DIRS: which directories, default tests/integration;
# `make test-faults` runs tests/faults)
integration=()
for t in $(for d in ${TEST_DIRS:-tests/integration tests/faults}; do ls "$d"/*_test.lua 2>/dev/null; done); do
  [ -f "$t" ] || continue
  case "$t" in *"$PATTERN"*) integration+=("$t") ;; esac
done
if [ ${#integration[@]} -gt 0 ]; then
  bash scripts/clusters.sh start "$work/clusters" >"$work/clusters.log" 2>&1 || { cat "$work/clusters.log"; exit 1; }
  set -a; . "$work/clusters/env"; set +a
  export PGTIDE_SOURCE_ADMIN="$SOURCE_URL" PGTIDE_TARGET_ADMIN="$TARGET_URL"
  for t in "${integration[@]}"; do
    echo "# $t"
    run_one "$t" "$PGTIDE" script tests/lib/runner.lua "$t"
  done
fi

# The slowest files, to keep the suite within its time budget.
if [ ${#durations[@]} -gt 1 ]; then
  echo "# slowest files (seconds): $(printf '%s\n' "${durations[@]}" | sort -rn | head -8 | tr '\n' ';' | sed 's/;$//; s/;/; /g')"
  echo "# whole run: $SECONDS s"
fi
if [ ${#failed_files[@]} -gt 0 ]; then
  echo "# failing: ${failed_files[*]}"
fi
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" = 0 ]
