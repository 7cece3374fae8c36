/*
 * repl_stream.h — the walsender side of incremental migration: START_REPLICATION on a
 * replication connection, the CopyBoth read loop, keepalives and standby status updates.
 *
 * The stream knows frames, not changes: each XLogData payload goes to the consumer's on_data
 * (apply.c through lua_cdc.c), which may ask it to pause; the consumer resumes it later. The
 * flush position it reports is whatever the consumer says is durable (flush_position); it
 * never reports a position on its own, and keeps what it reports monotonic.
 *
 * Status updates are sent from a 100 ms loop timer: at once when the server asks
 * (replyRequested), when the flush position moved (at most once a second), and at least every
 * 10 s. The timer runs even while reading is paused, so a long stall on the target (a Lua hook,
 * a slow statement) does not make the walsender time us out.
 */
#ifndef TIDE_REPL_STREAM_H
#define TIDE_REPL_STREAM_H

#include "pg/conn.h"

typedef struct repl_callbacks {
    void *arg;
    /* One XLogData payload. Return 0 to go on, 1 to pause reading, -1 to stop (failed). */
    int (*on_data)(void *arg, uint64_t data_start, uint64_t wal_end, const uint8_t *payload, size_t len);
    /* Nothing more is buffered. Same return values. */
    int (*on_burst_end)(void *arg);
    /* The position to report as flushed, given the latest keepalive walEnd. */
    uint64_t (*flush_position)(void *arg, uint64_t keepalive_lsn);
    /* Every timer tick (100 ms). */
    void (*on_tick)(void *arg);
    /* The stream started, ended or failed. */
    void (*on_state)(void *arg);
} repl_callbacks;

typedef enum repl_state {
    REPL_STARTING, /* START_REPLICATION sent */
    REPL_STREAMING,
    REPL_ENDING,     /* we sent CopyDone; discarding what still comes */
    REPL_COLLECTING, /* the copy is over; reading the command's final results */
    REPL_DONE,
    REPL_FAILED,
} repl_state;

typedef struct repl_stream {
    tide_runtime *rt;
    tide_conn *c;
    repl_callbacks cb;
    repl_state state;
    bool paused, want_writable, ended_by_server;
    uint64_t received_lsn;  /* highest walEnd seen (data or keepalive) */
    uint64_t keepalive_lsn; /* walEnd of the latest keepalive */
    uint64_t reported_write, reported_flush;
    double last_status, last_flush_change;
    int64_t last_send_time; /* server clock of the latest message, unix µs */
    uint64_t bytes, messages, keepalives, statuses;
    uv_timer_t *timer;
    uv_idle_t *resume_idle;
    int open_handles;
    bool freed;
    char sqlstate[6];
    char *error, *detail, *hint;
} repl_stream;

repl_stream *repl_stream_create(tide_runtime *rt, const repl_callbacks *cb);
/* Send START_REPLICATION (`sql`, simple protocol) on `c`; the stream takes the connection
 * over until repl_stream_release. -1 when it could not even be sent (see error). */
int repl_stream_start(repl_stream *s, tide_conn *c, const char *sql);
void repl_stream_pause(repl_stream *s);
/* Resume reading on the next loop turn (never from inside the caller's stack). */
void repl_stream_resume(repl_stream *s);
/* Send a status update now (force) or when one is due. */
int repl_stream_send_status(repl_stream *s, bool force);
/* End the stream from our side (CopyDone); on_state reports REPL_DONE. */
void repl_stream_end(repl_stream *s);
/* Give the connection back (idle) to its owner. */
void repl_stream_release(repl_stream *s);
/* Stop timers and free (asynchronously: handles close on the loop). */
void repl_stream_free(repl_stream *s);

#endif
