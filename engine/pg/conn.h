/*
 * conn.h — a PostgreSQL connection on the loop: one non-blocking PGconn, one uv_poll_t on
 * its socket, and the operation in flight. The operation (connect, query, a COPY pump side,
 * the replication stream) installs its I/O handler in `on_io`; the poll callback calls it
 * with the ready events. Owners of operations re-arm the watcher with conn_watch().
 */
#ifndef TIDE_CONN_H
#define TIDE_CONN_H

#include <libpq-fe.h>
#include "runtime/runtime.h"

typedef struct tide_conn tide_conn;
typedef void (*conn_io_fn)(tide_conn *c, int events);

struct tide_conn {
    tide_runtime *rt;
    PGconn *pg;
    uv_poll_t *poll; /* malloc'd; freed in its close callback */
    int poll_fd;
    int poll_events;
    int want_events;      /* what the operation asked for last (conn_watch) */
    uv_timer_t *timer;    /* connect timeout */
    uv_timer_t *kick;     /* delivers an event when the socket is already gone */
    uv_timer_t *watchdog; /* pokes a waiting operation every second (see conn.c) */
    int open_handles;     /* poll/timer handles whose close callback has not run */
    bool userdata_alive;  /* the Lua userdata still points here */
    conn_io_fn on_io;
    void *op;           /* the current operation's own state (not owned) */
    char *settings_sql; /* extra session settings to apply once connected */
    tide_co *waiter;    /* coroutine blocked on the current operation */
    bool busy;          /* an operation is in flight */
    bool replication;   /* walsender connection: simple protocol only */
    char *display;      /* conninfo with the password masked */
    double timeout;
    /* outcome of the last query-like operation */
    PGresult *result; /* last result with tuples or a command status */
    PGresult *error;  /* first error result */
    char *failure;    /* libpq-level failure (lost connection, timeout, ...) */
    const char *failure_state;
    bool discard_copy; /* draining an unexpected COPY OUT */
    uint64_t notices;  /* notices received (the COPY pump tells them from errors) */
};

/* Arm the watcher for `events` (UV_READABLE|UV_WRITABLE, 0 = stop) on PQsocket(). */
void conn_watch(tide_conn *c, int events);
/* After libpq calls: re-arm (or kick) when libpq replaced or dropped the socket we watch. */
void conn_recheck(tide_conn *c);
/* Record a libpq-level failure (message copied) with its SQLSTATE. */
void conn_set_failure(tide_conn *c, const char *sqlstate, const char *message);
/* Forget the outcome of the previous operation. */
void conn_reset_outcome(tide_conn *c);
/* Flush pending output; re-arm for writability when libpq still holds data. -1 on failure. */
int conn_flush(tide_conn *c);
/* Start the connection; the waiter is woken when it is usable or failed. */
int conn_start(tide_conn *c, const char *const *keys, const char *const *values);
/* Start a query (simple protocol when nparams < 0); the waiter is woken when all results are in. */
int conn_send_query(tide_conn *c, const char *sql, int nparams, const char *const *values, const int *lengths,
                    const int *formats);
/* Finish the PGconn and close the handles; frees the struct once nothing refers to it. */
void conn_close(tide_conn *c);
void conn_release(tide_conn *c); /* the userdata is gone */
/* Masked rendering of a conninfo string or URI (never contains the password). */
char *conn_mask_conninfo(const char *conninfo);

#endif
