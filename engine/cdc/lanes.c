/*
 * lanes.c — parallel apply (see lanes.h for what it guarantees and how).
 */
#include "cdc/lanes_internal.h"
#include "cdc/relcache.h"
#include "runtime/runtime.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- small pieces */

static void fail(lanes *l, const char *sqlstate, const char *msg) {
    if (l->failed) return;
    l->failed = true;
    snprintf(l->err.sqlstate, sizeof l->err.sqlstate, "%s", sqlstate);
    l->err.message = strdup(msg);
    l->err.side = "stream";
    l->err.context = strdup("dispatching source transactions to the apply connections");
    if (l->cb.on_event) l->cb.on_event(l->cb.arg);
}

static lmsg *msg_new(uint64_t lsn, const uint8_t *p, size_t n, bool broadcast) {
    lmsg *m = malloc(sizeof *m + (n ? n : 1));
    if (!m) abort();
    m->next = NULL;
    m->lsn = lsn;
    m->len = n;
    m->broadcast = broadcast;
    if (n) memcpy(m->data, p, n);
    return m;
}

static void lane_push(lanes *l, lane *ln, lmsg *m) {
    m->next = NULL;
    if (ln->tail)
        ln->tail->next = m;
    else
        ln->head = m;
    ln->tail = m;
    l->queued_bytes += m->len;
}

static void run_advance(uv_idle_t *h);

/* A Relation/Type message for every lane but `except` (-1: all): now, or once no serial point
 * is in flight (`serial`: the transaction carrying it is one). */
static void broadcast(lanes *l, const lmsg *m, int except, bool serial) {
    if (serial || l->serial_inflight) {
        if (except != 0) lane_push(l, &l->lane[0], msg_new(m->lsn, m->data, m->len, true));
        lmsg *c = msg_new(m->lsn, m->data, m->len, true);
        if (l->held_tail)
            l->held_tail->next = c;
        else
            l->held_head = c;
        l->held_tail = c;
        return;
    }
    for (int i = 0; i < l->n; i++)
        if (i != except) lane_push(l, &l->lane[i], msg_new(m->lsn, m->data, m->len, true));
}

static void release_held(lanes *l) {
    while (l->held_head) {
        lmsg *m = l->held_head;
        l->held_head = m->next;
        for (int i = 1; i < l->n; i++) lane_push(l, &l->lane[i], msg_new(m->lsn, m->data, m->len, true));
        free(m);
    }
    l->held_tail = NULL;
}

static void schedule(lanes *l) {
    if (!uv_is_active((uv_handle_t *) l->idle)) uv_idle_start(l->idle, run_advance);
}

/* ---------------------------------------------------------------- the ring */

/* Mark what the lanes committed and made durable; move the watermarks. */
static void positions(lanes *l) {
    uint64_t applied[LANES_MAX], durable[LANES_MAX];
    for (int i = 0; i < l->n; i++) {
        apply_positions p;
        apply_get_positions(l->lane[i].ap, &p);
        applied[i] = p.applied_lsn;
        durable[i] = p.durable_lsn;
    }
    for (size_t i = 0; i < l->ring_count; i++) {
        ltx *e = lanes__ring_at(l, i);
        if (!e->committed && e->end_lsn <= applied[e->lane]) {
            e->committed = true;
            l->lane[e->lane].inflight--;
            lanes__release_keys(l, e);
            if (e->serial) {
                lanes__forget_rules(l); /* a DDL message may have changed the map */
                if (--l->serial_inflight == 0) release_held(l);
            }
        }
        if (e->committed && !e->durable && e->end_lsn <= durable[e->lane]) e->durable = true;
    }
    while (l->applied_cursor < l->ring_count && lanes__ring_at(l, l->applied_cursor)->committed) {
        ltx *e = lanes__ring_at(l, l->applied_cursor++);
        if (e->end_lsn > l->w_applied) l->w_applied = e->end_lsn;
        l->applied_commit_ts = pgoutput_timestamp_to_unix_usec(e->commit_ts);
    }
    while (l->ring_count && lanes__ring_at(l, 0)->durable) {
        ltx *e = lanes__ring_at(l, 0);
        if (e->end_lsn > l->w_durable) l->w_durable = e->end_lsn;
        l->ring_head = (l->ring_head + 1) % l->ring_cap;
        l->ring_count--;
        l->applied_cursor--;
    }
    /* An empty group lane 0 committed at a keepalive position while everything was done. */
    if (l->idle_lsn && !l->ring_count && !l->in_tx && !l->pending) {
        if (applied[0] >= l->idle_lsn && l->idle_lsn > l->w_applied) l->w_applied = l->idle_lsn;
        if (durable[0] >= l->idle_lsn && l->idle_lsn > l->w_durable) l->w_durable = l->idle_lsn;
    }
}

/* ---------------------------------------------------------------- progress rows */

static void add_range(apply_buf *b, bool *first, uint64_t a, uint64_t z) {
    char x[32], y[32];
    apply_format_lsn(x, sizeof x, a);
    apply_format_lsn(y, sizeof y, z);
    apply_buf_addf(b, "%s%s,%s", *first ? "" : ",", x, y);
    *first = false;
}

/* before_commit of a lane: its row of the state table, in the group's transaction. */
static void before_commit(void *arg, apply_state *ap, uint64_t end_lsn, uint32_t txs) {
    lane *ln = arg;
    lanes *l = ln->owner;
    (void) ap;
    uint64_t w = l->w_applied;
    if (!txs && end_lsn == l->idle_lsn && !l->ring_count && end_lsn > w) w = end_lsn;
    apply_buf *b = &l->sql_ranges;
    apply_buf_reset(b);
    apply_buf_adds(b, "{");
    bool first = true;
    uint64_t run_a = 0, run_z = 0;
    for (size_t i = l->applied_cursor; i < l->ring_count; i++) {
        ltx *e = lanes__ring_at(l, i);
        if (e->lane == ln->index && e->end_lsn <= end_lsn) {
            if (!run_a) run_a = e->final_lsn;
            run_z = e->final_lsn;
            continue;
        }
        if (run_a) add_range(b, &first, run_a, run_z);
        run_a = 0;
    }
    if (run_a) add_range(b, &first, run_a, run_z);
    for (int i = 0; i < l->ncarried; i++)
        if (l->carried[2 * i + 1] > w) add_range(b, &first, l->carried[2 * i], l->carried[2 * i + 1]);
    apply_buf_adds(b, "}");
    char lane_s[16], w_s[32], upto_s[32];
    snprintf(lane_s, sizeof lane_s, "%d", ln->index);
    apply_format_lsn(w_s, sizeof w_s, w);
    apply_format_lsn(upto_s, sizeof upto_s, end_lsn > w ? end_lsn : w);
    const char *params[5] = { l->o.task, lane_s, w_s, b->data, upto_s };
    apply_queue_setup(ln->ap, l->o.progress_sql, 5, params);
}

static bool carried_applied(const lanes *l, uint64_t final_lsn) {
    for (int i = 0; i < l->ncarried; i++)
        if (final_lsn >= l->carried[2 * i] && final_lsn <= l->carried[2 * i + 1]) return true;
    return false;
}

/* ---------------------------------------------------------------- feeding the lanes */

static void pump(lanes *l, lane *ln) {
    while (ln->head && !ln->blocked && !l->failed) {
        lmsg *m = ln->head;
        ln->head = m->next;
        if (!ln->head) ln->tail = NULL;
        l->queued_bytes -= m->len;
        apply_feed_result r = apply_feed(ln->ap, m->lsn, m->data, m->len);
        free(m);
        if (r == APPLY_BLOCKED) ln->blocked = true;
        if (r == APPLY_FAILED) {
            if (l->cb.on_event) l->cb.on_event(l->cb.arg);
            return;
        }
    }
}

static void free_tx(lanes *l) {
    while (l->tx_head) {
        lmsg *m = l->tx_head;
        l->tx_head = m->next;
        free(m);
    }
    l->tx_tail = NULL;
    l->tx_bytes = 0;
    l->nkeys = 0;
}

/* A serial point waits until the other lanes have nothing in flight and nothing queued: the
 * Relation messages waiting there would be read against a map a DDL message changes. */
static bool others_drained(const lanes *l) {
    for (int i = 1; i < l->n; i++)
        if (l->lane[i].inflight || l->lane[i].head) return false;
    return true;
}

static int pick_lane(lanes *l, unsigned mask) {
    if (l->serial || l->passthrough) return (mask & ~1u) || !others_drained(l) ? -1 : 0;
    if (mask & (mask - 1)) return -1;
    if (mask) return __builtin_ctz(mask);
    int best = 0;
    for (int i = 1; i < l->n; i++)
        if (l->lane[i].inflight < l->lane[best].inflight) best = i;
    if (l->lane[l->last_lane].inflight <= l->lane[best].inflight + STICKY_TXS) return l->last_lane;
    return best;
}

/* Close the open groups of the lanes in `mask` whose queues are empty: they commit sooner. */
static void nudge(lanes *l, unsigned mask) {
    for (int i = 0; i < l->n; i++)
        if ((mask & (1u << i)) && !l->lane[i].head && apply_burst_end(l->lane[i].ap, -1) == APPLY_BLOCKED)
            l->lane[i].blocked = true;
}

/* The received transaction (its positions and keys, l->keys) is now in flight on lane
 * `target`: in the ring, its keys held. */
static void record(lanes *l, int target) {
    ltx *e = lanes__ring_push(l);
    e->final_lsn = l->tx_final_lsn;
    e->end_lsn = l->tx_end_lsn;
    e->commit_ts = l->tx_commit_ts;
    e->lane = target;
    e->serial = l->serial;
    e->nkeys = l->nkeys;
    e->keys = malloc((size_t) l->nkeys * sizeof *e->keys);
    e->modes = malloc((size_t) l->nkeys);
    if (!e->keys || !e->modes) abort();
    memcpy(e->keys, l->keys, (size_t) l->nkeys * sizeof *e->keys);
    memcpy(e->modes, l->modes, (size_t) l->nkeys);
    for (int i = 0; i < l->nkeys; i++) {
        kentry *k = lanes__kfind(l, l->keys[i], true);
        k->cnt[target]++;
        if (l->modes[i] == MODE_X) k->excl++;
    }
    l->nkeys = 0;
    if (e->serial) l->serial_inflight++;
    l->lane[target].inflight++;
    l->last_lane = target;
    l->dispatched++;
    if (l->tx_end_lsn > l->queued_lsn) l->queued_lsn = l->tx_end_lsn;
}

/* Hand the complete transaction to a lane; false when it must wait. */
static bool dispatch(lanes *l) {
    if (!l->pending) return true;
    lanes__tx_key_raw(l, KEY_GLOBAL, l->serial ? MODE_X : MODE_S);
    unsigned mask = lanes__conflicts(l);
    int target = pick_lane(l, mask);
    if (target < 0) {
        l->nkeys--;
        l->waits++;
        nudge(l, mask);
        return false;
    }
    lane *ln = &l->lane[target];
    record(l, target);
    if (l->serial) l->serial_points++;
    while (l->tx_head) {
        lmsg *m = l->tx_head;
        l->tx_head = m->next;
        if (m->broadcast) broadcast(l, m, target, l->serial);
        lane_push(l, ln, m);
    }
    l->tx_tail = NULL;
    l->tx_bytes = 0;
    l->pending = false;
    pump(l, ln);
    return true;
}

/* A transaction too large to keep: once every other lane is done, it streams to lane 0. */
static bool start_passthrough(lanes *l) {
    if (!others_drained(l)) {
        nudge(l, ~0u);
        return false;
    }
    if (l->lane[0].inflight) nudge(l, 1u);
    l->passthrough = true;
    l->serial_points++;
    lane *ln = &l->lane[0];
    while (l->tx_head) {
        lmsg *m = l->tx_head;
        l->tx_head = m->next;
        if (m->broadcast) broadcast(l, m, 0, true);
        lane_push(l, ln, m);
    }
    l->tx_tail = NULL;
    l->tx_bytes = 0;
    pump(l, ln);
    return true;
}

static bool must_wait(const lanes *l) {
    return l->failed || l->pending || l->queued_bytes >= QUEUE_LIMIT ||
           (!l->in_tx && (l->paused || l->stopping)) ||
           (l->in_tx && l->serial && !l->passthrough && l->tx_bytes >= l->o.tx_limit);
}

static void advance(lanes *l) {
    if (l->failed) return;
    positions(l);
    for (int i = 0; i < l->n; i++) pump(l, &l->lane[i]);
    if (l->pending) dispatch(l);
    if (l->in_tx && !l->passthrough && l->tx_bytes >= l->o.tx_limit) start_passthrough(l);
    for (int i = 0; i < l->n; i++) pump(l, &l->lane[i]);
    if (l->stopping && !l->stop_sent && !l->in_tx && !l->pending) {
        bool empty = true;
        for (int i = 0; i < l->n; i++) empty = empty && !l->lane[i].head;
        if (empty) {
            l->stop_sent = true;
            for (int i = 0; i < l->n; i++) apply_request_stop(l->lane[i].ap);
        }
    }
    if (l->feed_blocked && !must_wait(l)) {
        l->feed_blocked = false;
        if (l->cb.on_unblock) l->cb.on_unblock(l->cb.arg);
    }
    if (lanes_stopped(l) && !l->stopped_reported) {
        l->stopped_reported = true;
        if (l->cb.on_event) l->cb.on_event(l->cb.arg);
    }
}

static void run_advance(uv_idle_t *h) {
    uv_idle_stop(h);
    advance(h->data);
}

/* ---------------------------------------------------------------- lane callbacks */

static void lane_unblock(void *arg) {
    lane *ln = arg;
    ln->blocked = false;
    schedule(ln->owner);
}

static void lane_event(void *arg) {
    lane *ln = arg;
    schedule(ln->owner);
    if (ln->owner->cb.on_event) ln->owner->cb.on_event(ln->owner->cb.arg);
}

static void lane_commit(void *arg) { schedule(((lane *) arg)->owner); }

/* ---------------------------------------------------------------- the interface */

lanes *lanes_create(uv_loop_t *loop, const lanes_options *o, const lanes_callbacks *cb) {
    lanes *l = calloc(1, sizeof *l);
    if (!l) abort();
    l->loop = loop;
    l->o = *o;
    l->n = o->n;
    l->cb = *cb;
    l->o.task = strdup(o->task);
    l->o.progress_sql = strdup(o->progress_sql);
    if (o->opts[0].ddl_prefix) l->ddl_prefix = strdup(o->opts[0].ddl_prefix);
    if (!l->o.tx_limit) l->o.tx_limit = 4u << 20;
    l->cache = relcache_create();
    if (!l->cache) abort();
    pgoutput_message_init(&l->msg);
    l->w_applied = l->w_durable = l->queued_lsn = o->watermark;
    if (o->napplied) {
        l->carried = malloc((size_t) o->napplied * 2 * sizeof *l->carried);
        if (!l->carried) abort();
        memcpy(l->carried, o->applied, (size_t) o->napplied * 2 * sizeof *l->carried);
        l->ncarried = o->napplied;
    }
    l->idle = malloc(sizeof *l->idle);
    if (!l->idle) abort();
    uv_idle_init(loop, l->idle);
    l->idle->data = l;
    for (int i = 0; i < l->n; i++) {
        lane *ln = &l->lane[i];
        ln->owner = l;
        ln->index = i;
        apply_options opt = o->opts[i];
        opt.start_lsn = o->watermark;
        apply_callbacks acb = { .arg = ln,
                                .on_unblock = lane_unblock,
                                .on_event = lane_event,
                                .on_commit = lane_commit,
                                .before_commit = before_commit };
        ln->ap = apply_create(o->conns[i], &opt, &acb);
    }
    return l;
}

int lanes_start(lanes *l) {
    for (int i = 0; i < l->n; i++)
        if (apply_start(l->lane[i].ap) < 0) return -1;
    return 0;
}

static void tx_append(lanes *l, uint64_t lsn, const uint8_t *p, size_t n, bool is_broadcast) {
    lmsg *m = msg_new(lsn, p, n, is_broadcast);
    if (l->skip_tx) {
        if (is_broadcast) broadcast(l, m, -1, false);
        free(m);
        return;
    }
    if (l->passthrough) {
        if (is_broadcast) broadcast(l, m, 0, true);
        lane_push(l, &l->lane[0], m);
        return;
    }
    if (l->tx_tail)
        l->tx_tail->next = m;
    else
        l->tx_head = m;
    l->tx_tail = m;
    l->tx_bytes += n;
}

static apply_feed_result feed_result(lanes *l) {
    if (l->failed) return APPLY_FAILED;
    for (int i = 0; i < l->n; i++)
        if (apply_state_error(l->lane[i].ap)) return APPLY_FAILED;
    if (must_wait(l)) {
        l->feed_blocked = true;
        schedule(l);
        return APPLY_BLOCKED;
    }
    return APPLY_CONTINUE;
}

apply_feed_result lanes_feed(lanes *l, uint64_t lsn, const uint8_t *payload, size_t len) {
    if (l->failed) return APPLY_FAILED;
    pgoutput_message *m = &l->msg;
    if (pgoutput_decode(payload, len, false, m, l->errbuf, sizeof l->errbuf) != 0) {
        fail(l, "08P01", l->errbuf);
        return APPLY_FAILED;
    }
    switch (m->type) {
    case PGOUTPUT_BEGIN:
        if (l->in_tx || l->pending) {
            fail(l, "08P01", "a Begin arrived inside a transaction");
            return APPLY_FAILED;
        }
        l->in_tx = true;
        l->serial = l->passthrough = false;
        l->nkeys = 0;
        l->tx_final_lsn = m->begin.final_lsn;
        l->tx_end_lsn = 0;
        l->tx_commit_ts = m->begin.commit_ts;
        /* Applied before a restart: below the watermark, or listed above it (the lanes would
         * skip the first kind themselves, not the second). Its Relation messages still go. */
        l->skip_tx = l->tx_final_lsn < l->o.watermark || carried_applied(l, l->tx_final_lsn);
        tx_append(l, lsn, payload, len, false);
        break;
    case PGOUTPUT_COMMIT:
        if (!l->in_tx) {
            fail(l, "08P01", "a Commit arrived outside a transaction");
            return APPLY_FAILED;
        }
        l->in_tx = false;
        l->tx_end_lsn = m->commit.end_lsn;
        l->tx_commit_ts = m->commit.commit_ts;
        if (l->passthrough) {
            tx_append(l, lsn, payload, len, false);
            /* its keys: everything (a serial point) */
            l->nkeys = 0;
            lanes__tx_key_raw(l, KEY_GLOBAL, MODE_X);
            l->serial = true;
            record(l, 0);
            l->passthrough = false;
            pump(l, &l->lane[0]);
            break;
        }
        if (l->skip_tx) {
            l->skip_tx = false;
            l->range_skipped++;
            break;
        }
        tx_append(l, lsn, payload, len, false);
        l->pending = true;
        dispatch(l);
        break;
    case PGOUTPUT_RELATION:
    case PGOUTPUT_TYPE: {
        /* Every lane keeps its own relation cache: these go to all of them, in stream order. */
        int rc = m->type == PGOUTPUT_RELATION
                     ? relcache_put(l->cache, &m->relation, l->errbuf, sizeof l->errbuf)
                     : relcache_put_type(l->cache, &m->data_type, l->errbuf, sizeof l->errbuf);
        if (rc != 0) {
            fail(l, "53200", l->errbuf);
            return APPLY_FAILED;
        }
        if (!l->in_tx) {
            lmsg *c = msg_new(lsn, payload, len, true);
            broadcast(l, c, -1, false);
            free(c);
            break;
        }
        tx_append(l, lsn, payload, len, true);
        break;
    }
    case PGOUTPUT_INSERT:
    case PGOUTPUT_UPDATE:
    case PGOUTPUT_DELETE:
        if (!l->in_tx) {
            fail(l, "08P01", "a change arrived outside a transaction");
            return APPLY_FAILED;
        }
        if (!l->serial) {
            if (m->type == PGOUTPUT_INSERT)
                lanes__change_keys(l, m->insert.relid, m->type, NULL, &m->insert.new_tuple);
            else if (m->type == PGOUTPUT_UPDATE)
                lanes__change_keys(l, m->update.relid, m->type, &m->update.old_tuple, &m->update.new_tuple);
            else
                lanes__change_keys(l, m->delete.relid, m->type, &m->delete.old_tuple, NULL);
        }
        tx_append(l, lsn, payload, len, false);
        break;
    case PGOUTPUT_ORIGIN: tx_append(l, lsn, payload, len, false); break;
    case PGOUTPUT_LOGICAL_MESSAGE:
        /* The task's DDL messages wait for Lua on lane 0: a serial point. Others pass. */
        if (l->in_tx && m->logical_message.transactional && l->ddl_prefix &&
            m->logical_message.prefix.len == strlen(l->ddl_prefix) &&
            memcmp(m->logical_message.prefix.data, l->ddl_prefix, m->logical_message.prefix.len) == 0)
            l->serial = true;
        if (!l->in_tx) {
            lane_push(l, &l->lane[0], msg_new(lsn, payload, len, false));
            pump(l, &l->lane[0]);
            break;
        }
        tx_append(l, lsn, payload, len, false);
        break;
    default: /* Truncate, logical messages (DDL), anything else: lane 0, alone */
        if (!l->in_tx) {
            lane_push(l, &l->lane[0], msg_new(lsn, payload, len, false));
            pump(l, &l->lane[0]);
            break;
        }
        l->serial = true;
        tx_append(l, lsn, payload, len, false);
        break;
    }
    if (l->in_tx && !l->passthrough && l->tx_bytes >= l->o.tx_limit) {
        l->serial = true;
        start_passthrough(l);
    }
    return feed_result(l);
}

/* The stream has nothing more buffered. With one connection that closes the open group (the
 * delay stays low once caught up). Lanes read the stream much faster than they apply it (their
 * queues take it), so while catching up a backlog bursts end all the time: closing groups then
 * would make them tiny. They close here only once caught up (the last transaction received
 * committed on the source less than a second ago, see apply_caught_up); otherwise at their size
 * or age limits. */
apply_feed_result lanes_burst_end(lanes *l, int64_t source_now) {
    if (l->failed) return APPLY_FAILED;
    bool live = apply_caught_up(l->tx_commit_ts, source_now);
    for (int i = 0; i < l->n; i++) {
        lane *ln = &l->lane[i];
        apply_source_time(ln->ap, source_now);
        pump(l, ln);
        if (live && !ln->head && !ln->blocked && apply_burst_end(ln->ap, -1) == APPLY_BLOCKED)
            ln->blocked = true;
    }
    return feed_result(l);
}

void lanes_tick(lanes *l, uint64_t keepalive_lsn) {
    positions(l);
    /* Lane 0 may record a keepalive position (an empty group) only when everything received
     * has been applied: then it is a watermark. */
    bool done = !l->in_tx && !l->pending && !l->ring_count;
    for (int i = 0; i < l->n; i++) done = done && !l->lane[i].head;
    if (done && keepalive_lsn > l->w_applied) l->idle_lsn = keepalive_lsn;
    for (int i = 0; i < l->n; i++) apply_tick(l->lane[i].ap, i == 0 && done ? keepalive_lsn : 0);
    schedule(l);
}

uint64_t lanes_flush_position(const lanes *l) { return l->w_durable; }

void lanes_set_paused(lanes *l, bool paused) {
    l->paused = paused;
    for (int i = 0; i < l->n; i++) apply_set_paused(l->lane[i].ap, paused);
    schedule(l);
}

void lanes_request_stop(lanes *l) {
    l->stopping = true;
    for (int i = 0; i < l->n; i++) apply_set_paused(l->lane[i].ap, false);
    schedule(l);
}

bool lanes_stopped(const lanes *l) {
    if (!l->stop_sent || l->ring_count) return false;
    for (int i = 0; i < l->n; i++)
        if (!apply_stopped(l->lane[i].ap)) return false;
    return true;
}

void lanes_release(lanes *l) {
    for (int i = 0; i < l->n; i++) apply_release(l->lane[i].ap);
    uv_idle_stop(l->idle);
}

static void idle_closed(uv_handle_t *h) { free(h); }

void lanes_free(lanes *l) {
    if (!l) return;
    uv_idle_stop(l->idle);
    uv_close((uv_handle_t *) l->idle, idle_closed);
    for (int i = 0; i < l->n; i++) {
        lane *ln = &l->lane[i];
        while (ln->head) {
            lmsg *m = ln->head;
            ln->head = m->next;
            free(m);
        }
        apply_free(ln->ap);
    }
    free_tx(l);
    for (size_t i = 0; i < l->ring_count; i++) {
        ltx *e = lanes__ring_at(l, i);
        free(e->keys);
        free(e->modes);
    }
    while (l->held_head) {
        lmsg *m = l->held_head;
        l->held_head = m->next;
        free(m);
    }
    free(l->ring);
    free(l->kmap);
    lanes__forget_rules(l);
    free(l->rels);
    free(l->keys);
    free(l->modes);
    free(l->carried);
    relcache_destroy(l->cache);
    pgoutput_message_free(&l->msg);
    apply_buf_free(&l->sql_ranges);
    free(l->err.message);
    free(l->err.context);
    free((char *) l->o.task);
    free((char *) l->o.progress_sql);
    free(l->ddl_prefix);
    free(l);
}

apply_state *lanes_first(lanes *l) { return l->lane[0].ap; }
int lanes_count(const lanes *l) { return l->n; }
apply_state *lanes_lane(lanes *l, int i) { return i >= 0 && i < l->n ? l->lane[i].ap : NULL; }

const apply_error *lanes_error(const lanes *l) {
    if (l->failed) return &l->err;
    for (int i = 0; i < l->n; i++) {
        const apply_error *e = apply_state_error(l->lane[i].ap);
        if (e) return e;
    }
    return NULL;
}

void lanes_counters(const lanes *l, apply_counters *out) {
    memset(out, 0, sizeof *out);
    for (int i = 0; i < l->n; i++) {
        const apply_counters *c = apply_get_counters(l->lane[i].ap);
        const uint64_t *src = (const uint64_t *) c;
        uint64_t *dst = (uint64_t *) out;
        for (size_t k = 0; k < sizeof *out / sizeof(uint64_t); k++) dst[k] += src[k];
    }
    out->skipped_transactions += l->range_skipped;
    out->received_transactions += l->range_skipped;
}

void lanes_positions(const lanes *l, apply_positions *out) {
    memset(out, 0, sizeof *out);
    out->queued_lsn = l->queued_lsn;
    out->applied_lsn = l->w_applied;
    out->durable_lsn = l->w_durable;
    out->applied_commit_ts = l->applied_commit_ts;
    out->in_transaction = l->in_tx;
    if (l->applied_cursor < l->ring_count)
        out->pending_commit_ts =
            pgoutput_timestamp_to_unix_usec(lanes__ring_at((lanes *) l, l->applied_cursor)->commit_ts);
    else if (l->pending)
        out->pending_commit_ts = pgoutput_timestamp_to_unix_usec(l->tx_commit_ts);
    bool idle = !l->in_tx && !l->pending && !l->ring_count;
    for (int i = 0; i < l->n; i++) {
        apply_positions p;
        apply_get_positions(l->lane[i].ap, &p);
        idle = idle && p.idle && !l->lane[i].head;
    }
    out->idle = idle;
}

void lanes_figures(const lanes *l, uint64_t *serial, uint64_t *waits, uint64_t *dispatched) {
    *serial = l->serial_points;
    *waits = l->waits;
    *dispatched = l->dispatched;
}
