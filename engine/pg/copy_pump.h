/*
 * copy_pump.h — one COPY stream from a source connection to a target connection.
 * See copy_pump.c for the state machine; lua_copy.c for the Lua side (tide.copy_pump).
 */
#ifndef TIDE_COPY_PUMP_H
#define TIDE_COPY_PUMP_H

#include "pg/conn.h"

typedef enum side_state {
    SIDE_STARTING, /* command sent, waiting for COPY OUT / COPY IN */
    SIDE_STREAMING,
    SIDE_DRAINING, /* source only: discarding after an abort */
    SIDE_ENDING,   /* collecting the final results */
    SIDE_DONE
} side_state;

typedef struct copy_pump {
    tide_conn *src, *dst;
    tide_co *waiter;
    side_state src_state, dst_state;
    PGresult *src_result, *dst_result; /* final (or first error) results */
    char *pending;                     /* a row the target's buffer did not accept yet */
    int pending_len;
    bool pending_owned; /* pending is ours (malloc), not libpq's */
    /* Each row through this function first (copy_rows.c), or NULL: 1 send *out, 0 drop, -1 fail. */
    int (*row_fn)(void *arg, const char *row, int len, const char **out, int *outlen, char *err,
                  size_t errlen);
    void *row_arg;
    int64_t dropped; /* rows row_fn dropped */
    size_t unflushed;
    bool dst_blocked; /* target holds unsent data: source reading paused */
    bool paused, finished, target_failed_early;
    bool cancel_sent, cancel_running;
    PGcancel *cancel;
    uv_work_t cancel_req;
    uv_timer_t *throttle_timer;
    bool throttle_waiting;
    double bytes_per_second, rows_per_second;
    double window_start;
    int64_t window_bytes, window_messages;
    int64_t bytes, messages, rows; /* rows: from the source's "COPY n" at the end */
    const char *fail_side, *fail_state;
    char *fail_message;
} copy_pump;

int copy_pump_start(copy_pump *p, tide_conn *src, tide_conn *dst, const char *out_sql, const char *in_sql);
void copy_pump_set_paused(copy_pump *p, bool paused);
void copy_pump_set_throttle(copy_pump *p, double bytes_per_second, double rows_per_second);
void copy_pump_free(copy_pump *p);

#endif
