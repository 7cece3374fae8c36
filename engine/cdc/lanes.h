/*
 * lanes.h — parallel apply: one decoded change stream applied on several target connections.
 *
 * Each lane is an apply_state with its own connection and replication origin. The dispatcher
 * keeps each source transaction whole until its Commit, works out the keys it touches (the
 * row's key on the target, a table key for tables whose rows cannot be told apart that way,
 * see apply_target.lane_mode), and hands it to a lane:
 *   - no lane has a transaction in flight that shares a key with it: the least busy lane;
 *   - exactly one lane has: that lane (it applies its transactions in source order);
 *   - more than one: the stream waits until all but one of them committed.
 * A transaction that needs Lua or the whole target (a DDL message, TRUNCATE, a hooked, routed
 * or followed table, one too large to keep) is a serial point: it waits until every lane has
 * committed everything, then goes alone to lane 0, and nothing is dispatched until it commits.
 *
 * Exactly once across a crash. Lanes commit out of source order, so no single position says
 * what is applied. With each group a lane writes one row of the state table, in the group's
 * own target transaction: the watermark W (every source transaction ending at or before it
 * had committed on some lane when the group was sent) and the commit positions (final LSN), as
 * ranges, of every transaction above W that this lane committed (this group's included), plus those a
 * restart found applied and has not passed yet. On restart the largest W of all rows is where
 * applying resumes and every listed transaction above it is skipped: a transaction above W is
 * applied exactly when the latest durable row of the lane that applied it lists it. The slot is
 * told the durable watermark: the end of the longest prefix of dispatched transactions that
 * are durable on their lanes (each lane's origin progress read back with flush).
 */
#ifndef TIDE_LANES_H
#define TIDE_LANES_H

#include "cdc/apply.h"

#define LANES_MAX 16

typedef struct lanes lanes;

typedef struct lanes_options {
    int n;                    /* lanes (1..LANES_MAX) */
    tide_conn **conns;        /* n target connections, origin session set up on each */
    apply_options *opts;      /* n option sets (each lane owns its targets) */
    uint64_t watermark;       /* restart: everything ending at or before it is applied */
    const uint64_t *applied;  /* restart: pairs [first, last] of commit positions (a Begin's
                                 final LSN) of transactions applied above it */
    int napplied;             /* number of pairs */
    const char *task;         /* the state table row's key */
    const char *progress_sql; /* INSERT ... ON CONFLICT of one lane's row: $1 task, $2 lane,
                                 $3 watermark, $4 ranges (pg_lsn[] of first, last commit
                                 positions), $5 the end of the last transaction committed */
    size_t tx_limit;          /* bytes a transaction may take in memory before it is a serial
                                 point streamed to lane 0 */
} lanes_options;

typedef struct lanes_callbacks {
    void *arg;
    void (*on_unblock)(void *arg); /* feeding may resume */
    void (*on_event)(void *arg);   /* a lane failed, has an event for Lua, or stopping ended */
} lanes_callbacks;

lanes *lanes_create(uv_loop_t *loop, const lanes_options *o, const lanes_callbacks *cb);
int lanes_start(lanes *l);
apply_feed_result lanes_feed(lanes *l, uint64_t lsn, const uint8_t *payload, size_t len);
apply_feed_result lanes_burst_end(lanes *l, int64_t source_now); /* see apply_burst_end */
void lanes_tick(lanes *l, uint64_t keepalive_lsn);
uint64_t lanes_flush_position(const lanes *l);
void lanes_set_paused(lanes *l, bool paused);
void lanes_request_stop(lanes *l);
bool lanes_stopped(const lanes *l);
void lanes_release(lanes *l);
void lanes_free(lanes *l);

/* Lane 0: the one Lua's events (hooked changes, DDL, follow) come from. */
apply_state *lanes_first(lanes *l);
int lanes_count(const lanes *l);
apply_state *lanes_lane(lanes *l, int i);
/* The first lane that failed, or NULL (dispatcher failures are reported through it too). */
const apply_error *lanes_error(const lanes *l);
/* Counters summed over the lanes; positions as watermarks. */
void lanes_counters(const lanes *l, apply_counters *out);
void lanes_positions(const lanes *l, apply_positions *out);
/* Serial points and waits, for the figures. */
void lanes_figures(const lanes *l, uint64_t *serial, uint64_t *waits, uint64_t *dispatched);

#endif
