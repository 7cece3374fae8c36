/*
 * tap.h — the harness of the C unit tests: TAP output that tests/run.sh counts.
 *
 *   #include "tap.h"
 *
 *   int main(void) {
 *       tap_check(1 + 1 == 2, "addition");               // ok 1 - addition
 *       tap_check_str(got, "want", "rendering");         // not ok 2 - rendering
 *       tap_diag("context for the failure above");       // #   context for the ...
 *       return tap_done();                                // 1..2, exit status 1
 *   }
 *
 * Each check prints `ok N - name` or `not ok N - name` (tests/run.sh counts lines starting
 * with those); diagnostics are comment lines (`#   ...`). tap_done prints the plan `1..N` at
 * the end and returns the exit status: 1 when a check failed, and also when the file ran no
 * check at all (it then prints a `not ok` of its own), so a test whose cases were never
 * called cannot pass by printing nothing. A crash before tap_done leaves no plan and a
 * non-zero status, which tests/run.sh reports as a failure too.
 */
#ifndef TIDE_TAP_H
#define TIDE_TAP_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static int tap_count;  /* checks so far */
static int tap_failed; /* of which failed */

/* One check: prints its TAP line, returns ok. */
static inline bool tap_check(bool ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline bool tap_check(bool ok, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("%sok %d - ", ok ? "" : "not ", ++tap_count);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    if (!ok) tap_failed++;
    return ok;
}

/* A diagnostic line (a TAP comment), for what a failed check saw. */
static inline void tap_diag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline void tap_diag(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("#   ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
}

/* A check that `got` is the string `want`; shows both when it is not. */
static inline bool tap_check_str(const char *got, const char *want, const char *name) {
    bool ok = got && strcmp(got, want) == 0;
    tap_check(ok, "%s", name);
    if (!ok) {
        tap_diag("got:  %s", got ? got : "(null)");
        tap_diag("want: %s", want);
    }
    return ok;
}

/* The plan and the exit status: `return tap_done();` at the end of main. */
static inline int tap_done(void) {
    if (tap_count == 0) tap_check(false, "the file ran no test case");
    printf("1..%d\n", tap_count);
    if (tap_failed > 0) printf("# %d of %d failed\n", tap_failed, tap_count);
    fflush(stdout);
    return tap_failed > 0 ? 1 : 0;
}

#endif
