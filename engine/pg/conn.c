/*
 * conn.c — the non-blocking libpq state machines: connecting (PQconnectPoll, re-reading
 * PQsocket after every step because libpq may switch sockets between hosts), running a
 * query (PQsendQuery*, PQflush until 0, PQconsumeInput then PQisBusy/PQgetResult until
 * NULL), and closing. Lua bindings are in lua_conn.c, which also turns an operation's outcome
 * into Lua error values; COPY pumps and the replication stream reuse conn_watch and install
 * their own on_io.
 */
#include "pg/conn.h"
#include "runtime/bindings.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- handles */

static void conn_maybe_free(tide_conn *c) {
    if (c->open_handles == 0 && !c->userdata_alive && !c->pg) {
        free(c->display);
        free(c->failure);
        free(c);
    }
}

void conn_recheck(tide_conn *c);

static void handle_closed(uv_handle_t *h) {
    tide_conn *c = h->data;
    free(h);
    c->open_handles--;
    conn_maybe_free(c);
}

static void poll_cb(uv_poll_t *p, int status, int events) {
    tide_conn *c = p->data;
    if (!c->on_io) {
        conn_watch(c, 0);
        return;
    }
    /* An error on the socket (status < 0) is handled by libpq on the next call: report
     * the socket as readable and writable so the operation looks at it. */
    if (status < 0) events = UV_READABLE | UV_WRITABLE;
    c->on_io(c, events);
    conn_recheck(c);
}

/* libpq may close the socket inside any call that reads or writes (it drops a connection
 * the server closed, after reading the server's last message). epoll forgets a closed
 * descriptor silently, so an operation still in flight would never hear from it again:
 * after each handler, make sure what we watch is still libpq's socket. */
void conn_recheck(tide_conn *c) {
    if (!c->pg || !c->busy || !c->on_io || !c->want_events) return;
    if (c->poll && PQsocket(c->pg) == c->poll_fd) return;
    if (c->kick && uv_is_active((uv_handle_t *) c->kick)) return;
    conn_watch(c, c->want_events);
}

static void kick_fired(uv_timer_t *t) {
    tide_conn *c = t->data;
    if (c->on_io && c->pg && c->want_events) c->on_io(c, UV_READABLE | UV_WRITABLE);
    conn_recheck(c);
}

/* libpq closes the socket itself when it sees the server go away (after reading the
 * server's last words into its buffer). An operation waiting for events would then wait
 * forever: give it one event on the next loop turn, so it reads what libpq holds and fails
 * cleanly. */
static void conn_kick(tide_conn *c) {
    if (!c->kick) {
        c->kick = malloc(sizeof *c->kick);
        if (!c->kick) abort();
        uv_timer_init(c->rt->loop, c->kick);
        c->kick->data = c;
        c->open_handles++;
    }
    /* 1 ms, not 0: a timer re-armed at 0 from its own callback would keep libuv's timer
     * phase from ever returning. */
    uv_timer_start(c->kick, kick_fired, 1, 0);
}

/* The watchdog: while an operation waits for its socket, poke its handler once a second as
 * if the socket were ready. A spurious poke costs one non-blocking libpq call that finds
 * nothing; it guarantees progress if a readiness event was ever lost (we saw a terminated
 * backend's socket drop out of the epoll set while an operation still waited on it). */
static void watchdog_fired(uv_timer_t *t) {
    tide_conn *c = t->data;
    if (c->on_io && c->pg && c->want_events) {
        c->on_io(c, c->want_events);
        conn_recheck(c);
    }
}

static void watchdog_arm(tide_conn *c, bool on) {
    if (!on) {
        if (c->watchdog) uv_timer_stop(c->watchdog);
        return;
    }
    if (!c->watchdog) {
        c->watchdog = malloc(sizeof *c->watchdog);
        if (!c->watchdog) abort();
        uv_timer_init(c->rt->loop, c->watchdog);
        c->watchdog->data = c;
        c->open_handles++;
    }
    if (!uv_is_active((uv_handle_t *) c->watchdog)) uv_timer_start(c->watchdog, watchdog_fired, 1000, 1000);
}

static void connect_on_io(tide_conn *c, int events);

void conn_watch(tide_conn *c, int events) {
    int fd = c->pg ? PQsocket(c->pg) : -1;
    c->want_events = events;
    /* Not while connecting: PQconnectPoll must only be called when the socket is ready. */
    watchdog_arm(c, events != 0 && c->on_io != NULL && c->on_io != connect_on_io);
    if (fd < 0 && events != 0 && c->on_io) conn_kick(c);
    if (c->poll && (c->poll_fd != fd || fd < 0)) {
        uv_close((uv_handle_t *) c->poll, handle_closed);
        c->poll = NULL;
        c->poll_events = 0;
    }
    if (fd < 0 || events == 0) {
        if (c->poll && c->poll_events) uv_poll_stop(c->poll);
        if (c->poll) c->poll_events = 0;
        return;
    }
    if (!c->poll) {
        c->poll = malloc(sizeof *c->poll);
        if (!c->poll) abort();
        if (uv_poll_init_socket(c->rt->loop, c->poll, fd) != 0) {
            free(c->poll);
            c->poll = NULL;
            conn_set_failure(c, "08006", "could not watch the connection's socket");
            return;
        }
        c->poll->data = c;
        c->poll_fd = fd;
        c->open_handles++;
    }
    if (c->poll_events != events) {
        uv_poll_start(c->poll, events, poll_cb);
        c->poll_events = events;
    }
}

/* ---------------------------------------------------------------- outcome */

void conn_set_failure(tide_conn *c, const char *sqlstate, const char *message) {
    if (c->failure) return; /* keep the first cause */
    c->failure = strdup(message ? message : "connection failure");
    c->failure_state = sqlstate;
}

void conn_reset_outcome(tide_conn *c) {
    if (c->result) PQclear(c->result);
    if (c->error) PQclear(c->error);
    c->result = c->error = NULL;
    free(c->failure);
    c->failure = NULL;
    c->failure_state = NULL;
    c->discard_copy = false;
}

static void op_done(tide_conn *c) {
    tide_co *w = c->waiter;
    c->busy = false;
    c->on_io = NULL;
    c->waiter = NULL;
    conn_watch(c, 0);
    if (w) sched_wake(w);
}

static void op_fail(tide_conn *c, const char *sqlstate, const char *msg) {
    conn_set_failure(c, sqlstate, msg);
    op_done(c);
}

static void op_fail_lost(tide_conn *c) {
    /* the server said why before it went away */
    if (c->error) {
        op_done(c);
        return;
    }
    const char *msg = c->pg ? PQerrorMessage(c->pg) : NULL;
    op_fail(c, "08006", msg && *msg ? msg : "the connection to the server was lost");
}

int conn_flush(tide_conn *c) {
    int r = PQflush(c->pg);
    if (r < 0) return -1;
    conn_watch(c, r == 1 ? (UV_READABLE | UV_WRITABLE) : UV_READABLE);
    return 0;
}

/* ---------------------------------------------------------------- query */

/* Read every result that is complete; true when the last one (NULL) has been seen. */
static bool query_collect(tide_conn *c) {
    for (;;) {
        if (c->discard_copy) {
            char *buf;
            int n;
            while ((n = PQgetCopyData(c->pg, &buf, 1)) > 0) PQfreemem(buf);
            if (n == 0) return false;
            c->discard_copy = false;
        }
        if (PQisBusy(c->pg)) return false;
        PGresult *r = PQgetResult(c->pg);
        if (!r) return true;
        switch (PQresultStatus(r)) {
        case PGRES_COPY_IN:
            PQputCopyEnd(c->pg, "pgtide: conn:query and conn:exec do not run COPY FROM STDIN");
            conn_flush(c);
            PQclear(r);
            break;
        case PGRES_COPY_OUT:
            conn_set_failure(c, "0A000", "conn:query and conn:exec do not run COPY TO STDOUT");
            c->discard_copy = true;
            PQclear(r);
            break;
        case PGRES_COPY_BOTH:
            conn_set_failure(c, "0A000", "conn:query cannot start a replication stream");
            PQclear(r);
            return true;
        case PGRES_FATAL_ERROR:
        case PGRES_NONFATAL_ERROR:
        case PGRES_BAD_RESPONSE:
            if (!c->error)
                c->error = r;
            else
                PQclear(r);
            break;
        default:
            if (c->result) PQclear(c->result);
            c->result = r;
        }
    }
}

static void query_on_io(tide_conn *c, int events) {
    if (events & UV_WRITABLE) {
        if (conn_flush(c) < 0) {
            op_fail_lost(c);
            return;
        }
    }
    if (events & UV_READABLE) {
        if (!PQconsumeInput(c->pg)) {
            /* The server's last message (a FATAL error, say) may be parsed already. */
            query_collect(c);
            op_fail_lost(c);
            return;
        }
        if (query_collect(c)) {
            if (PQstatus(c->pg) == CONNECTION_BAD && !c->error)
                conn_set_failure(c, "08006", PQerrorMessage(c->pg));
            op_done(c);
        }
    }
}

int conn_send_query(tide_conn *c, const char *sql, int nparams, const char *const *values, const int *lengths,
                    const int *formats) {
    conn_reset_outcome(c);
    int ok;
    if (nparams < 0)
        ok = PQsendQuery(c->pg, sql);
    else
        ok = PQsendQueryParams(c->pg, sql, nparams, NULL, values, lengths, formats, 0);
    if (!ok) {
        conn_set_failure(c, PQstatus(c->pg) == CONNECTION_BAD ? "08006" : "08000", PQerrorMessage(c->pg));
        return -1;
    }
    c->busy = true;
    c->on_io = query_on_io;
    if (conn_flush(c) < 0) {
        c->busy = false;
        c->on_io = NULL;
        const char *m = PQerrorMessage(c->pg);
        conn_set_failure(c, "08006", m && *m ? m : "the connection to the server was lost");
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- connect */

static void connect_settings_on_io(tide_conn *c, int events) { query_on_io(c, events); }

static void connect_timer_fired(uv_timer_t *t) {
    tide_conn *c = t->data;
    if (!c->busy) return;
    char msg[256];
    snprintf(msg, sizeof msg, "timed out after %.0f s waiting for the server to accept the connection",
             c->timeout);
    op_fail(c, "08001", msg);
}

static void stop_timer(tide_conn *c) {
    if (c->timer) {
        uv_close((uv_handle_t *) c->timer, handle_closed);
        c->timer = NULL;
    }
}

/* The server accepted us: rebuild the display string from what libpq really used. */
static void connect_update_display(tide_conn *c) {
    char buf[1024];
    const char *host = PQhost(c->pg), *port = PQport(c->pg), *db = PQdb(c->pg), *user = PQuser(c->pg);
    snprintf(buf, sizeof buf, "host=%s port=%s dbname=%s user=%s", host ? host : "", port ? port : "",
             db ? db : "", user ? user : "");
    free(c->display);
    c->display = strdup(buf);
}

static void connect_on_io(tide_conn *c, int events) {
    (void) events;
    switch (PQconnectPoll(c->pg)) {
    case PGRES_POLLING_READING: conn_watch(c, UV_READABLE); return;
    case PGRES_POLLING_WRITING: conn_watch(c, UV_WRITABLE); return;
    case PGRES_POLLING_FAILED:
        stop_timer(c);
        op_fail(c, "08001", PQerrorMessage(c->pg));
        return;
    case PGRES_POLLING_OK: break;
    default: return;
    }
    stop_timer(c);
    connect_update_display(c);
    PQsetnonblocking(c->pg, 1);
    /* Session settings that make text round-trips exact, sent as one simple query. */
    const char *settings = c->settings_sql ? c->settings_sql : "";
    char *sql = malloc(strlen(settings) + 256);
    if (!sql) abort();
    sprintf(sql,
            "SET DateStyle = ISO; SET IntervalStyle = postgres; SET extra_float_digits = 3; "
            "SET bytea_output = hex;%s",
            settings);
    free(c->settings_sql);
    c->settings_sql = NULL;
    tide_co *w = c->waiter;
    int rc = conn_send_query(c, sql, -1, NULL, NULL, NULL);
    free(sql);
    c->waiter = w;
    if (rc < 0) {
        op_done(c);
        return;
    }
    c->on_io = connect_settings_on_io;
}

/* Server notices: NOTICE and below are routine (DROP ... IF EXISTS); a WARNING is worth
 * showing, with the connection it came from. */
static void notice_receiver(void *arg, const PGresult *r) {
    tide_conn *c = arg;
    c->notices++;
    const char *sev = PQresultErrorField(r, PG_DIAG_SEVERITY_NONLOCALIZED);
    if (!sev || strcmp(sev, "WARNING") != 0) return;
    const char *what = PQresultErrorMessage(r);
    size_t n = strlen(what);
    while (n > 0 && what[n - 1] == '\n') n--; /* libpq ends it with a newline */
    char message[2048], text[2200];
    snprintf(message, sizeof message, "server warning (%s): %.*s", c->display, (int) n, what);
    snprintf(text, sizeof text, "pgtide: %s", message);
    /* Called from inside libpq, on the loop (the main thread is idle) or under a binding call. */
    tide_log(c->rt ? c->rt->L : NULL, "warning", "server_warning", message, text);
}

int conn_start(tide_conn *c, const char *const *keys, const char *const *values) {
    c->pg = PQconnectStartParams(keys, values, 1);
    if (c->pg) PQsetNoticeReceiver(c->pg, notice_receiver, c);
    if (!c->pg) {
        conn_set_failure(c, "08001", "out of memory starting a connection");
        return -1;
    }
    if (PQstatus(c->pg) == CONNECTION_BAD) {
        conn_set_failure(c, "08001", PQerrorMessage(c->pg));
        return -1;
    }
    c->busy = true;
    c->on_io = connect_on_io;
    c->timer = malloc(sizeof *c->timer);
    if (!c->timer) abort();
    uv_timer_init(c->rt->loop, c->timer);
    c->timer->data = c;
    c->open_handles++;
    /* The loop's clock may be stale after a long blocking call (io.popen in a script). */
    uv_update_time(c->rt->loop);
    uv_timer_start(c->timer, connect_timer_fired, (uint64_t) (c->timeout * 1000), 0);
    conn_watch(c, UV_WRITABLE);
    return 0;
}

/* ---------------------------------------------------------------- close */

void conn_close(tide_conn *c) {
    if (c->busy && c->waiter) {
        conn_set_failure(c, "08003", "the connection was closed while an operation was running");
        tide_co *w = c->waiter;
        c->waiter = NULL;
        c->busy = false;
        c->on_io = NULL;
        sched_ready(w); /* resumes on the next turn, after we are out of here */
    }
    stop_timer(c);
    if (c->kick) {
        uv_close((uv_handle_t *) c->kick, handle_closed);
        c->kick = NULL;
    }
    if (c->watchdog) {
        uv_close((uv_handle_t *) c->watchdog, handle_closed);
        c->watchdog = NULL;
    }
    if (c->poll) {
        uv_close((uv_handle_t *) c->poll, handle_closed);
        c->poll = NULL;
        c->poll_events = 0;
    }
    if (c->pg) {
        PQfinish(c->pg);
        c->pg = NULL;
    }
    if (c->result) PQclear(c->result);
    if (c->error) PQclear(c->error);
    c->result = c->error = NULL;
    free(c->settings_sql);
    c->settings_sql = NULL;
    conn_maybe_free(c);
}

void conn_release(tide_conn *c) {
    c->userdata_alive = false;
    conn_close(c);
}

/* ---------------------------------------------------------------- masking */

char *conn_mask_conninfo(const char *conninfo) {
    char *err = NULL;
    PQconninfoOption *opts = PQconninfoParse(conninfo, &err);
    if (!opts) {
        PQfreemem(err);
        return strdup("(unparsable conninfo)");
    }
    size_t cap = 512, len = 0;
    char *out = malloc(cap);
    if (!out) abort();
    out[0] = '\0';
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (!o->val || !*o->val) continue;
        const char *v = o->val;
        bool secret = strcmp(o->keyword, "password") == 0 || strcmp(o->keyword, "sslpassword") == 0;
        if (secret) v = "********";
        size_t need = len + strlen(o->keyword) + 2 * strlen(v) + 8;
        if (need > cap) {
            while (need > cap) cap *= 2;
            char *grown = realloc(out, cap);
            if (!grown) abort();
            out = grown;
        }
        len += (size_t) sprintf(out + len, "%s%s=", len ? " " : "", o->keyword);
        bool quote = !*v || strpbrk(v, " '\\") != NULL;
        if (quote) out[len++] = '\'';
        for (const char *p = v; *p; p++) {
            if (*p == '\'' || *p == '\\') out[len++] = '\\';
            out[len++] = *p;
        }
        if (quote) out[len++] = '\'';
        out[len] = '\0';
    }
    PQconninfoFree(opts);
    return out;
}
