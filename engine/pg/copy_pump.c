/*
 * copy_pump.c — streams `COPY ... TO STDOUT` on a source connection into `COPY ... FROM STDIN`
 * on a target connection, both non-blocking on the loop; no row ever reaches Lua.
 *
 * Back-pressure: rows are handed to the target with PQputCopyData, which only queues them in
 * libpq's output buffer. Every FLUSH_EVERY bytes (and whenever the source has nothing buffered)
 * the pump calls PQflush; if the target's socket cannot take everything, the pump stops
 * reading the source until the target is writable and drained again. Memory per pump is
 * therefore libpq's two buffers: about FLUSH_EVERY plus the largest row on each side.
 *
 * Failures: an error from the source ends the target's COPY with PQputCopyEnd(errormsg). An
 * error from the target is seen early: during COPY IN the server sends nothing but notices, so
 * a readable target socket that delivered no notice means an ErrorResponse is waiting (libpq
 * leaves it unparsed until the copy ends); the pump then ends the target's COPY, cancels the
 * source's statement (PQcancel on the thread pool) and drains what the source already sent.
 *
 * Pause and throttle (for the operator's task:pause / task:throttle) stop reading the source;
 * the connections stay open and idle meanwhile.
 */
#include "pg/copy_pump.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define FLUSH_EVERY (256 * 1024)

static void pump_step(copy_pump *p);
static void pump_reconcile(copy_pump *p);
static void pump_finish_if_done(copy_pump *p);

static void pending_free(copy_pump *p) {
    if (!p->pending) return;
    if (p->pending_owned)
        free(p->pending);
    else
        PQfreemem(p->pending);
    p->pending = NULL;
    p->pending_owned = false;
}

static void pump_fail(copy_pump *p, const char *side, const char *sqlstate, const char *msg) {
    if (p->fail_message) return;
    p->fail_side = side;
    p->fail_state = sqlstate;
    p->fail_message = strdup(msg && *msg ? msg : "COPY failed");
}

/* Keep the first error result of each side. */
static void pump_keep_result(copy_pump *p, bool source, PGresult *r) {
    PGresult **slot = source ? &p->src_result : &p->dst_result;
    ExecStatusType st = PQresultStatus(r);
    bool is_error = st == PGRES_FATAL_ERROR || st == PGRES_BAD_RESPONSE || st == PGRES_NONFATAL_ERROR;
    if (*slot && PQresultStatus(*slot) == PGRES_FATAL_ERROR) {
        PQclear(r);
        return;
    }
    if (*slot && !is_error) {
        PQclear(r);
        return;
    }
    if (*slot) PQclear(*slot);
    *slot = r;
    if (source && st == PGRES_COMMAND_OK) {
        const char *n = PQcmdTuples(r);
        if (n && *n) p->rows = strtoll(n, NULL, 10);
    }
}

static bool result_is_error(const PGresult *r) {
    ExecStatusType st = PQresultStatus(r);
    return st == PGRES_FATAL_ERROR || st == PGRES_BAD_RESPONSE || st == PGRES_NONFATAL_ERROR;
}

/* Read results of a side that is not streaming (starting or ending). Returns true when the
 * side reached the state it waits for: COPY OUT/IN while starting, NULL while ending. */
static bool side_collect(copy_pump *p, tide_conn *c, bool source) {
    side_state *st = source ? &p->src_state : &p->dst_state;
    while (!PQisBusy(c->pg)) {
        PGresult *r = PQgetResult(c->pg);
        if (!r) {
            *st = SIDE_DONE;
            return true;
        }
        ExecStatusType s = PQresultStatus(r);
        if (*st == SIDE_STARTING && (s == PGRES_COPY_OUT || s == PGRES_COPY_IN)) {
            PQclear(r);
            *st = SIDE_STREAMING;
            return true;
        }
        if (s == PGRES_COPY_OUT) { /* draining an aborted source */
            PQclear(r);
            *st = SIDE_DRAINING;
            return true;
        }
        if (s == PGRES_COPY_IN) { /* cannot happen after we ended it; be safe */
            PQputCopyEnd(c->pg, "pgtide: unexpected COPY IN state");
            PQclear(r);
            continue;
        }
        if (result_is_error(r) && *st == SIDE_STARTING) {
            pump_keep_result(p, source, r);
            *st = SIDE_ENDING; /* the NULL that follows ends the side */
            continue;
        }
        pump_keep_result(p, source, r);
    }
    return false;
}

static void cancel_done(uv_work_t *w, int status) {
    (void) status;
    copy_pump *p = w->data;
    PQfreeCancel(p->cancel);
    p->cancel = NULL;
    p->cancel_running = false;
    pump_finish_if_done(p);
}

static void cancel_work(uv_work_t *w) {
    copy_pump *p = w->data;
    char err[256];
    PQcancel(p->cancel, err, sizeof err);
}

/* The target failed: stop the source's statement and discard what it still sends. */
static void pump_abort_source(copy_pump *p) {
    if (p->src_state == SIDE_STREAMING) p->src_state = SIDE_DRAINING;
    if (p->src_state == SIDE_DRAINING && !p->cancel && !p->cancel_sent) {
        p->cancel = PQgetCancel(p->src->pg);
        if (p->cancel) {
            p->cancel_sent = true;
            p->cancel_running = true;
            p->cancel_req.data = p;
            uv_queue_work(p->src->rt->loop, &p->cancel_req, cancel_work, cancel_done);
        }
    }
}

/* End the target's COPY: cleanly (msg NULL) or with an error message that aborts it. */
static void pump_end_target(copy_pump *p, const char *msg) {
    if (p->dst_state != SIDE_STREAMING) return;
    pending_free(p);
    int r = PQputCopyEnd(p->dst->pg, msg);
    if (r < 0) {
        pump_fail(p, "target", "08006", PQerrorMessage(p->dst->pg));
        p->dst_state = SIDE_DONE;
        return;
    }
    /* r == 0 cannot happen with libpq's growing buffer; treat it like 1 and flush. */
    p->dst_state = SIDE_ENDING;
    p->dst_blocked = false;
    if (PQflush(p->dst->pg) < 0) {
        pump_fail(p, "target", "08006", PQerrorMessage(p->dst->pg));
        p->dst_state = SIDE_DONE;
        return;
    }
    conn_watch(p->dst, UV_READABLE | UV_WRITABLE);
}

static void pump_finish_if_done(copy_pump *p) {
    if (p->src_state != SIDE_DONE || p->dst_state != SIDE_DONE || p->cancel_running || p->finished) return;
    p->finished = true;
    conn_watch(p->src, 0);
    conn_watch(p->dst, 0);
    p->src->busy = p->dst->busy = false;
    p->src->on_io = p->dst->on_io = NULL;
    p->src->op = p->dst->op = NULL;
    if (p->throttle_timer) uv_timer_stop(p->throttle_timer);
    /* Resume the waiter on the next loop turn, not from inside this handler: its next
     * statement on either connection re-arms watchers that the code unwinding below us
     * would otherwise touch. */
    tide_co *w = p->waiter;
    p->waiter = NULL;
    if (w) sched_ready(w);
}

/* Source finished streaming (PQgetCopyData returned -1, after CopyDone or an ErrorResponse):
 * its final result decides how the target's COPY ends, so nothing is ended here; the
 * reconcile step ends the target once that result is known. */
static void pump_source_ended(copy_pump *p) {
    p->src_state = SIDE_ENDING;
    side_collect(p, p->src, true);
    conn_watch(p->src, p->src_state == SIDE_DONE ? 0 : UV_READABLE);
}

static bool throttled(copy_pump *p);

static void pump_step(copy_pump *p) {
    PGconn *src = p->src->pg, *dst = p->dst->pg;
    if (p->src_state == SIDE_DRAINING) {
        char *buf;
        int n;
        while ((n = PQgetCopyData(src, &buf, 1)) > 0) PQfreemem(buf);
        if (n == 0) {
            conn_watch(p->src, UV_READABLE);
            return;
        }
        p->src_state = SIDE_ENDING;
        side_collect(p, p->src, true);
        conn_watch(p->src, p->src_state == SIDE_DONE ? 0 : UV_READABLE);
        pump_finish_if_done(p);
        return;
    }
    if (p->src_state != SIDE_STREAMING || p->dst_state != SIDE_STREAMING) return;
    while (!p->dst_blocked) {
        if (p->paused || throttled(p)) {
            conn_watch(p->src, 0);
            return;
        }
        if (p->pending) {
            int r = PQputCopyData(dst, p->pending, p->pending_len);
            if (r == 0) {
                p->dst_blocked = true;
                break;
            }
            if (r < 0) goto target_lost;
            pending_free(p);
        }
        char *buf;
        int n = PQgetCopyData(src, &buf, 1);
        if (n > 0) {
            p->bytes += n;
            p->messages++;
            const char *data = buf;
            int len = n;
            if (p->row_fn) {
                char err[1024];
                int k = p->row_fn(p->row_arg, buf, n, &data, &len, err, sizeof err);
                if (k <= 0) {
                    PQfreemem(buf);
                    if (k == 0) {
                        p->dropped++;
                        continue;
                    }
                    pump_fail(p, "transform", "P0001", err);
                    pump_end_target(p, err);
                    pump_abort_source(p);
                    conn_watch(p->src, UV_READABLE);
                    return;
                }
            }
            int r = PQputCopyData(dst, data, len);
            if (r == 0) {
                if (data != buf) {
                    p->pending = malloc((size_t) len);
                    if (!p->pending) abort();
                    memcpy(p->pending, data, (size_t) len);
                    p->pending_owned = true;
                    PQfreemem(buf);
                } else {
                    p->pending = buf;
                }
                p->pending_len = len;
                p->dst_blocked = true;
                break;
            }
            PQfreemem(buf);
            n = len;
            if (r < 0) goto target_lost;
            p->unflushed += (size_t) n;
            if (p->unflushed >= FLUSH_EVERY) {
                p->unflushed = 0;
                int f = PQflush(dst);
                if (f < 0) goto target_lost;
                if (f == 1) p->dst_blocked = true;
            }
            continue;
        }
        if (n == 0) {
            /* Nothing buffered from the source: push out what we hold, wait for more. */
            p->unflushed = 0;
            int f = PQflush(dst);
            if (f < 0) goto target_lost;
            if (f == 1) {
                p->dst_blocked = true;
                break;
            }
            conn_watch(p->src, UV_READABLE);
            conn_watch(p->dst, UV_READABLE);
            return;
        }
        if (n == -1) {
            pump_source_ended(p);
            return;
        }
        pump_fail(p, "source", "08006", PQerrorMessage(src));
        pump_source_ended(p);
        return;
    }
    /* Target cannot take more: stop reading the source until it drains. */
    conn_watch(p->src, 0);
    conn_watch(p->dst, UV_READABLE | UV_WRITABLE);
    return;
target_lost:
    pump_fail(p, "target", "08006", PQerrorMessage(dst));
    p->dst_state = SIDE_DONE;
    conn_watch(p->dst, 0);
    pump_abort_source(p);
}

/* Either handler may drive both connections: check both watchers afterwards (conn_recheck). */
static void pump_recheck(copy_pump *p) {
    if (p->finished) return;
    tide_conn *src = p->src, *dst = p->dst;
    conn_recheck(src);
    conn_recheck(dst);
}

/* After any event: make each side follow the other's failure, and finish when both are done.
 * Kept in one place so that the order in which the two servers' answers arrive (an error
 * may come before or after the other side's COPY started) never matters. */
static void pump_reconcile(copy_pump *p) {
    if (p->finished) return;
    bool src_failed = (p->src_result && result_is_error(p->src_result)) ||
                      (p->fail_side && strcmp(p->fail_side, "source") == 0);
    bool dst_failed = p->target_failed_early || (p->dst_result && result_is_error(p->dst_result)) ||
                      (p->fail_side && strcmp(p->fail_side, "target") == 0);
    if (src_failed && p->dst_state == SIDE_STREAMING) {
        const char *m = p->src_result ? PQresultErrorField(p->src_result, PG_DIAG_MESSAGE_PRIMARY) : NULL;
        pump_end_target(p, m ? m : "pgtide: the source failed");
    } else if (p->src_state == SIDE_DONE && p->dst_state == SIDE_STREAMING) {
        pump_end_target(p, NULL); /* every row is in: end the target's COPY cleanly */
    }
    if (dst_failed && (p->src_state == SIDE_STREAMING || p->src_state == SIDE_DRAINING)) {
        pump_abort_source(p);
        pump_step(p);
    }
    if (p->src_state == SIDE_DONE) conn_watch(p->src, 0);
    if (p->dst_state == SIDE_DONE) conn_watch(p->dst, 0);
    pump_finish_if_done(p);
    pump_recheck(p);
}

static void src_on_io(tide_conn *c, int events) {
    (void) events;
    copy_pump *p = c->op;
    if (!PQconsumeInput(c->pg)) {
        pump_fail(p, "source", "08006", PQerrorMessage(c->pg));
        p->src_state = SIDE_DONE;
        pump_reconcile(p);
        return;
    }
    switch (p->src_state) {
    case SIDE_STARTING:
        side_collect(p, c, true);
        pump_step(p);
        break;
    case SIDE_STREAMING:
    case SIDE_DRAINING: pump_step(p); break;
    case SIDE_ENDING: side_collect(p, c, true); break;
    case SIDE_DONE: break;
    }
    pump_reconcile(p);
}

static void dst_on_io(tide_conn *c, int events) {
    copy_pump *p = c->op;
    if ((events & UV_WRITABLE) &&
        (p->dst_state == SIDE_STREAMING || p->dst_state == SIDE_ENDING || p->dst_state == SIDE_STARTING)) {
        int f = PQflush(c->pg);
        if (f < 0) {
            pump_fail(p, "target", "08006", PQerrorMessage(c->pg));
            p->dst_state = SIDE_DONE;
            pump_reconcile(p);
            return;
        }
        if (f == 0) {
            p->dst_blocked = false;
            conn_watch(c, UV_READABLE);
        }
    }
    if (events & UV_READABLE) {
        /* Did the server really send something? (The watchdog and kicks deliver events
         * without asking the socket.) End of file counts: the server went away. */
        bool arrived = false;
        if (p->dst_state == SIDE_STREAMING && PQsocket(c->pg) >= 0) {
            char byte;
            ssize_t n = recv(PQsocket(c->pg), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
            arrived = n >= 0;
        }
        uint64_t notices = c->notices;
        if (!PQconsumeInput(c->pg)) {
            pump_fail(p, "target", "08006", PQerrorMessage(c->pg));
            p->dst_state = SIDE_DONE;
            pump_reconcile(p);
            return;
        }
        if (p->dst_state == SIDE_STREAMING && arrived && c->notices == notices) {
            /* Not a notice: the target reports an error (see the top of the file). */
            p->target_failed_early = true;
            pump_end_target(p, "pgtide: stopping the COPY after the target reported an error");
        }
    }
    switch (p->dst_state) {
    case SIDE_STARTING:
        side_collect(p, c, false);
        pump_step(p);
        break;
    case SIDE_STREAMING:
        if (!p->dst_blocked) pump_step(p);
        break;
    case SIDE_ENDING:
        if (PQflush(c->pg) == 0) conn_watch(c, UV_READABLE);
        side_collect(p, c, false);
        break;
    default: break;
    }
    pump_reconcile(p);
}

/* ---------------------------------------------------------------- throttling */

static void throttle_fired(uv_timer_t *t) {
    copy_pump *p = t->data;
    p->throttle_waiting = false;
    if (!p->finished) {
        pump_step(p);
        pump_reconcile(p);
    }
}

static bool throttled(copy_pump *p) {
    if (p->bytes_per_second <= 0 && p->rows_per_second <= 0) return false;
    double now = (double) uv_now(p->src->rt->loop) / 1000.0;
    if (p->window_start == 0 || now - p->window_start >= 1.0) {
        p->window_start = now;
        p->window_bytes = p->bytes;
        p->window_messages = p->messages;
    }
    bool over = (p->bytes_per_second > 0 && (double) (p->bytes - p->window_bytes) >= p->bytes_per_second) ||
                (p->rows_per_second > 0 && (double) (p->messages - p->window_messages) >= p->rows_per_second);
    if (!over) return false;
    if (!p->throttle_waiting) {
        if (!p->throttle_timer) {
            p->throttle_timer = malloc(sizeof *p->throttle_timer);
            if (!p->throttle_timer) abort();
            uv_timer_init(p->src->rt->loop, p->throttle_timer);
            p->throttle_timer->data = p;
        }
        uint64_t wait = (uint64_t) ((p->window_start + 1.0 - now) * 1000.0) + 1;
        uv_timer_start(p->throttle_timer, throttle_fired, wait, 0);
        p->throttle_waiting = true;
    }
    return true;
}

void copy_pump_set_paused(copy_pump *p, bool paused) {
    p->paused = paused;
    if (!paused && !p->finished && p->src_state == SIDE_STREAMING) {
        pump_step(p);
        pump_reconcile(p);
    }
}

void copy_pump_set_throttle(copy_pump *p, double bytes_per_second, double rows_per_second) {
    p->bytes_per_second = bytes_per_second;
    p->rows_per_second = rows_per_second;
    p->window_start = 0;
    if (!p->finished && !p->paused && p->src_state == SIDE_STREAMING) {
        pump_step(p);
        pump_reconcile(p);
    }
}

/* ---------------------------------------------------------------- start / free */

int copy_pump_start(copy_pump *p, tide_conn *src, tide_conn *dst, const char *out_sql, const char *in_sql) {
    p->src = src;
    p->dst = dst;
    p->src_state = p->dst_state = SIDE_STARTING;
    conn_reset_outcome(src);
    conn_reset_outcome(dst);
    if (!PQsendQuery(src->pg, out_sql)) {
        pump_fail(p, "source", "08006", PQerrorMessage(src->pg));
        return -1;
    }
    if (!PQsendQuery(dst->pg, in_sql)) {
        pump_fail(p, "target", "08006", PQerrorMessage(dst->pg));
        /* The source's COPY is on its way: cancel and drain it like any other abort. */
        p->dst_state = SIDE_DONE;
    }
    src->busy = dst->busy = true;
    src->op = dst->op = p;
    src->on_io = src_on_io;
    dst->on_io = dst_on_io;
    if (PQflush(src->pg) < 0 || PQflush(dst->pg) < 0) {
        pump_fail(p, "source", "08006", "could not send the COPY commands");
    }
    conn_watch(src, UV_READABLE);
    if (p->dst_state != SIDE_DONE) conn_watch(dst, UV_READABLE);
    return 0;
}

static void timer_closed(uv_handle_t *h) { free(h); }

void copy_pump_free(copy_pump *p) {
    pending_free(p);
    if (p->src_result) PQclear(p->src_result);
    if (p->dst_result) PQclear(p->dst_result);
    if (p->throttle_timer) uv_close((uv_handle_t *) p->throttle_timer, timer_closed);
    free(p->fail_message);
    free(p);
}
