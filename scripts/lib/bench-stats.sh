# shellcheck shell=bash
# Small statistics for the benchmark scripts (sourced by scripts/bench-full.sh and bench-cdc.sh).
#
#   stats V...        → "median min max spread" (spread = (max − min) / median, in %);
#                       "- - - -" without values. The median of an even count is the mean of
#                       the two middle values; figures of 0.1 or more get two decimals, smaller
#                       ones two significant digits.
#   ratio A B         → A / B with two decimals ("-" when either is missing or B is 0)
#   median V...       → the median alone
#   maximum V...      → the largest value

stats() {
  printf '%s\n' "$@" | grep -E '^-?[0-9.]+$' | sort -g | awk '
    { v[NR] = $1 }
    END {
      if (NR == 0) { print "- - - -"; exit }
      m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
      printf "%s %s %s %s\n", fmt(m), fmt(v[1]), fmt(v[NR]), (m > 0 ? sprintf("%.0f%%", 100 * (v[NR] - v[1]) / m) : "-")
    }
    function fmt(x) { return (x >= 0.1 || x <= -0.1) ? sprintf("%.2f", x) : sprintf("%.2g", x) }'
}

median() { local m; read -r m _ < <(stats "$@"); echo "$m"; }

maximum() { local _m _lo hi; read -r _m _lo hi _ < <(stats "$@"); echo "$hi"; }

ratio() {
  awk -v a="${1:--}" -v b="${2:--}" 'BEGIN {
    if (a !~ /^-?[0-9.]+$/ || b !~ /^-?[0-9.]+$/ || b + 0 == 0) { print "-"; exit }
    printf "%.2f\n", a / b }'
}
