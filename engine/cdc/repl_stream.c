/*
 * repl_stream.c — START_REPLICATION and the CopyBoth loop on a non-blocking walsender
 * connection (see repl_stream.h). Frame layouts: docs/engine.md, "The replication protocol", and
 * PostgreSQL's documentation, chapter "Streaming Replication Protocol".
 *
 *   XLogData   'w' I64 dataStart, I64 walEnd, I64 sendTime, payload
 *   keepalive  'k' I64 walEnd, I64 sendTime, B replyRequested
 *   status     'r' I64 write, I64 flush, I64 apply, I64 clock, B replyRequested   (ours)
 *
 * Pausing stops watching the socket altogether (libpq would otherwise buffer without bound);
 * the server then blocks on its send and keeps reading our status updates, which the timer
 * goes on sending.
 */
#include "cdc/repl_stream.h"
#include "cdc/pgoutput.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TICK_MS 100
#define STATUS_EVERY 10.0    /* seconds: at least this often */
#define STATUS_ON_CHANGE 0.1 /* seconds: at most this often when only the flush moved */

static void repl_read(repl_stream *s);

static uint64_t get_u64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = (v << 8) | p[i];
    return v;
}

static void put_u64(uint8_t *p, uint64_t v) {
    for (int i = 7; i >= 0; --i, v >>= 8) p[i] = (uint8_t) v;
}

static void notify(repl_stream *s) {
    if (s->cb.on_state) s->cb.on_state(s->cb.arg);
}

static void stream_watch(repl_stream *s) {
    if (!s->c || !s->c->pg) return;
    int ev = 0;
    bool reading = s->state == REPL_STARTING || s->state == REPL_ENDING || s->state == REPL_COLLECTING ||
                   (s->state == REPL_STREAMING && !s->paused);
    if (reading) ev |= UV_READABLE;
    if (s->want_writable) ev |= UV_WRITABLE;
    conn_watch(s->c, ev);
}

static void stream_fail(repl_stream *s, const char *sqlstate, const char *message) {
    if (s->state == REPL_FAILED) return;
    s->state = REPL_FAILED;
    if (!s->error) {
        snprintf(s->sqlstate, sizeof s->sqlstate, "%s", sqlstate ? sqlstate : "08006");
        s->error = strdup(message && *message ? message : "the replication stream failed");
        size_t n = strlen(s->error);
        while (n && s->error[n - 1] == '\n') s->error[--n] = '\0';
    }
    if (s->c && s->c->pg) conn_watch(s->c, 0);
    notify(s);
}

static void stream_fail_result(repl_stream *s, const PGresult *r) {
    if (s->error) return;
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    const char *detail = PQresultErrorField(r, PG_DIAG_MESSAGE_DETAIL);
    const char *hint = PQresultErrorField(r, PG_DIAG_MESSAGE_HINT);
    snprintf(s->sqlstate, sizeof s->sqlstate, "%s", state ? state : "XX000");
    s->error = strdup(msg ? msg : PQresultErrorMessage(r));
    if (detail) s->detail = strdup(detail);
    if (hint) s->hint = strdup(hint);
}

/* ---------------------------------------------------------------- status updates */

int repl_stream_send_status(repl_stream *s, bool force) {
    if (s->state != REPL_STREAMING || !s->c || !s->c->pg) return 0;
    double now = tide_monotonic();
    uint64_t flush = s->cb.flush_position ? s->cb.flush_position(s->cb.arg, s->keepalive_lsn) : 0;
    if (flush < s->reported_flush) flush = s->reported_flush;
    uint64_t write = s->received_lsn > flush ? s->received_lsn : flush;
    bool moved = flush != s->reported_flush || write != s->reported_write;
    /* While paused we read nothing, so the server's keepalive requests go unanswered: send
     * our status every second instead, or the walsender ends the stream at wal_sender_timeout. */
    double every = s->paused ? 1.0 : STATUS_EVERY;
    if (!force && !(now - s->last_status >= every) && !(moved && now - s->last_status >= STATUS_ON_CHANGE))
        return 0;
    uint8_t m[34] = { 'r' };
    put_u64(m + 1, write);
    put_u64(m + 9, flush);
    put_u64(m + 17, flush);
    put_u64(m + 25, (uint64_t) ((int64_t) (tide_now() * 1e6) - PGOUTPUT_EPOCH_OFFSET_USEC));
    m[33] = 0;
    int r = PQputCopyData(s->c->pg, (const char *) m, sizeof m);
    if (r < 0) {
        stream_fail(s, "08006", PQerrorMessage(s->c->pg));
        return -1;
    }
    if (r == 0) return 0; /* libpq's buffer is full: try again on the next tick */
    int f = PQflush(s->c->pg);
    if (f < 0 || PQsocket(s->c->pg) < 0) { /* libpq may drop a dead socket while flushing */
        stream_fail(s, "08006", PQerrorMessage(s->c->pg));
        return -1;
    }
    s->want_writable = f == 1;
    stream_watch(s);
    s->reported_flush = flush;
    s->reported_write = write;
    s->last_status = now;
    s->statuses++;
    return 1;
}

static void tick(uv_timer_t *t) {
    repl_stream *s = t->data;
    if (s->freed) return;
    if (s->cb.on_tick) s->cb.on_tick(s->cb.arg);
    if (s->state == REPL_STREAMING) repl_stream_send_status(s, false);
}

/* ---------------------------------------------------------------- reading */

/* Returns what the consumer said (0, 1 pause, -1 stop). */
static int handle_message(repl_stream *s, const uint8_t *buf, int n) {
    s->bytes += (uint64_t) n;
    s->messages++;
    if (buf[0] == 'w' && n >= 25) {
        uint64_t start = get_u64(buf + 1), end = get_u64(buf + 9);
        s->last_send_time = (int64_t) get_u64(buf + 17) + PGOUTPUT_EPOCH_OFFSET_USEC;
        if (end > s->received_lsn) s->received_lsn = end;
        if (s->state != REPL_STREAMING) return 0; /* ending: discard */
        return s->cb.on_data(s->cb.arg, start, end, buf + 25, (size_t) n - 25);
    }
    if (buf[0] == 'k' && n >= 18) {
        uint64_t end = get_u64(buf + 1);
        s->last_send_time = (int64_t) get_u64(buf + 9) + PGOUTPUT_EPOCH_OFFSET_USEC;
        s->keepalives++;
        if (end > s->keepalive_lsn) s->keepalive_lsn = end;
        if (end > s->received_lsn) s->received_lsn = end;
        if (buf[17] && s->state == REPL_STREAMING) return repl_stream_send_status(s, true) < 0 ? -1 : 0;
        return 0;
    }
    char msg[96];
    snprintf(msg, sizeof msg, "unexpected replication message type '%c' (%d bytes)", buf[0], n);
    stream_fail(s, "08P01", msg);
    return -1;
}

/* The copy is over: read the command's final results. */
static void collect_final(repl_stream *s) {
    PGconn *pg = s->c->pg;
    s->state = REPL_COLLECTING;
    while (!PQisBusy(pg)) {
        PGresult *r = PQgetResult(pg);
        if (!r) {
            if (s->error) {
                stream_fail(s, s->sqlstate, s->error);
                return;
            }
            if (s->ended_by_server) {
                stream_fail(s, "08006", "the server ended the replication stream");
                return;
            }
            s->state = REPL_DONE;
            conn_watch(s->c, 0);
            notify(s);
            return;
        }
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_COPY_IN) {
            /* The server ended its side first (shutdown): end ours. */
            s->ended_by_server = true;
            PQputCopyEnd(pg, NULL);
            PQflush(pg);
        } else if (st == PGRES_COPY_OUT) {
            /* We ended ours first; keep draining what it still sends. */
            PQclear(r);
            s->state = REPL_ENDING;
            repl_read(s);
            return;
        } else if (st == PGRES_FATAL_ERROR || st == PGRES_BAD_RESPONSE || st == PGRES_NONFATAL_ERROR) {
            stream_fail_result(s, r);
        }
        PQclear(r);
    }
    stream_watch(s);
}

static void repl_read(repl_stream *s) {
    PGconn *pg = s->c->pg;
    while (s->state == REPL_STREAMING || s->state == REPL_ENDING) {
        if (s->paused && s->state == REPL_STREAMING) break;
        char *buf;
        int n = PQgetCopyData(pg, &buf, 1);
        if (n > 0) {
            int rc = handle_message(s, (const uint8_t *) buf, n);
            PQfreemem(buf);
            if (rc < 0) {
                if (s->state != REPL_FAILED) {
                    s->paused = true; /* the consumer failed; it tells its owner */
                    stream_watch(s);
                }
                return;
            }
            if (rc > 0) s->paused = true;
            continue;
        }
        if (n == 0) {
            if (s->state == REPL_STREAMING && s->cb.on_burst_end) {
                int rc = s->cb.on_burst_end(s->cb.arg);
                if (rc != 0) s->paused = true;
            }
            break;
        }
        if (n == -1) {
            if (s->state == REPL_STREAMING) s->ended_by_server = true;
            collect_final(s);
            return;
        }
        stream_fail(s, "08006", PQerrorMessage(pg));
        return;
    }
    stream_watch(s);
}

static void start_collect(repl_stream *s) {
    PGconn *pg = s->c->pg;
    while (!PQisBusy(pg)) {
        PGresult *r = PQgetResult(pg);
        if (!r) {
            stream_fail(s, s->error ? s->sqlstate : "08P01",
                        s->error ? s->error : "START_REPLICATION did not start a stream");
            return;
        }
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_COPY_BOTH) {
            PQclear(r);
            s->state = REPL_STREAMING;
            s->last_status = tide_monotonic();
            notify(s);
            repl_read(s);
            return;
        }
        if (st == PGRES_FATAL_ERROR || st == PGRES_BAD_RESPONSE || st == PGRES_NONFATAL_ERROR)
            stream_fail_result(s, r);
        PQclear(r);
    }
    stream_watch(s);
}

static void repl_on_io(tide_conn *c, int events) {
    repl_stream *s = c->op;
    if (s->state == REPL_FAILED || s->state == REPL_DONE) {
        conn_watch(c, 0);
        return;
    }
    if (events & UV_WRITABLE) {
        int f = PQflush(c->pg);
        if (f < 0 || PQsocket(c->pg) < 0) {
            stream_fail(s, "08006", PQerrorMessage(c->pg));
            return;
        }
        s->want_writable = f == 1;
    }
    if (events & UV_READABLE) {
        /* While paused the socket is not watched for reading, so this only runs when we
         * want data. */
        if (!PQconsumeInput(c->pg)) {
            stream_fail(s, "08006", PQerrorMessage(c->pg));
            return;
        }
        switch (s->state) {
        case REPL_STARTING: start_collect(s); break;
        case REPL_STREAMING:
        case REPL_ENDING: repl_read(s); break;
        case REPL_COLLECTING: collect_final(s); break;
        default: break;
        }
        return;
    }
    stream_watch(s);
}

static void resume_now(uv_idle_t *h) {
    repl_stream *s = h->data;
    uv_idle_stop(h);
    if (s->freed || s->state != REPL_STREAMING || s->paused) return;
    repl_read(s);
}

void repl_stream_pause(repl_stream *s) {
    s->paused = true;
    stream_watch(s);
}

void repl_stream_resume(repl_stream *s) {
    if (!s->paused) return;
    s->paused = false;
    stream_watch(s);
    /* Messages may already sit in libpq's buffer, where the socket will not announce them. */
    uv_idle_start(s->resume_idle, resume_now);
}

/* ---------------------------------------------------------------- life cycle */

static void handle_closed(uv_handle_t *h) {
    repl_stream *s = h->data;
    free(h);
    if (--s->open_handles == 0 && s->freed) {
        free(s->error);
        free(s->detail);
        free(s->hint);
        free(s);
    }
}

repl_stream *repl_stream_create(tide_runtime *rt, const repl_callbacks *cb) {
    repl_stream *s = calloc(1, sizeof *s);
    if (!s) abort();
    s->rt = rt;
    s->cb = *cb;
    s->timer = malloc(sizeof *s->timer);
    s->resume_idle = malloc(sizeof *s->resume_idle);
    if (!s->timer || !s->resume_idle) abort();
    uv_timer_init(rt->loop, s->timer);
    uv_idle_init(rt->loop, s->resume_idle);
    s->timer->data = s->resume_idle->data = s;
    s->open_handles = 2;
    return s;
}

int repl_stream_start(repl_stream *s, tide_conn *c, const char *sql) {
    s->c = c;
    s->state = REPL_STARTING;
    conn_reset_outcome(c);
    c->busy = true;
    c->op = s;
    c->on_io = repl_on_io;
    if (!PQsendQuery(c->pg, sql)) {
        stream_fail(s, PQstatus(c->pg) == CONNECTION_BAD ? "08006" : "08000", PQerrorMessage(c->pg));
        return -1;
    }
    int f = PQflush(c->pg);
    s->want_writable = f == 1;
    stream_watch(s);
    uv_timer_start(s->timer, tick, TICK_MS, TICK_MS);
    return 0;
}

void repl_stream_end(repl_stream *s) {
    if (s->state != REPL_STREAMING) return;
    s->paused = false;
    if (PQputCopyEnd(s->c->pg, NULL) < 0) {
        stream_fail(s, "08006", PQerrorMessage(s->c->pg));
        return;
    }
    int f = PQflush(s->c->pg);
    if (f < 0) {
        stream_fail(s, "08006", PQerrorMessage(s->c->pg));
        return;
    }
    s->want_writable = f == 1;
    s->state = REPL_ENDING;
    /* The server answers CopyDone with CopyDone, then the command's completion. */
    repl_read(s);
}

void repl_stream_release(repl_stream *s) {
    tide_conn *c = s->c;
    if (!c) return;
    if (c->pg) conn_watch(c, 0);
    c->busy = false;
    c->op = NULL;
    c->on_io = NULL;
    s->c = NULL;
}

void repl_stream_free(repl_stream *s) {
    if (!s || s->freed) return;
    repl_stream_release(s);
    s->freed = true;
    uv_close((uv_handle_t *) s->timer, handle_closed);
    uv_close((uv_handle_t *) s->resume_idle, handle_closed);
}
