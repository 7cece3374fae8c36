/*
 * lanes_internal.h — what lanes.c (dispatching, feeding, progress) and lanes_keys.c (keys,
 * the ring of dispatched transactions) share. Not for use outside them; the interface is lanes.h.
 */
#ifndef TIDE_LANES_INTERNAL_H
#define TIDE_LANES_INTERNAL_H

#include "cdc/lanes.h"
#include "cdc/relcache.h"

#define KEY_GLOBAL 1u           /* every transaction holds it shared; a serial point exclusive */
#define QUEUE_LIMIT (16u << 20) /* bytes queued for the lanes before the stream pauses */
#define STICKY_TXS 8            /* a lane keeps taking free transactions until this far ahead */

enum { MODE_S = 0, MODE_X = 1 };

typedef struct lmsg {
    struct lmsg *next;
    uint64_t lsn;
    size_t len;
    bool broadcast; /* Relation / Type: every lane gets a copy */
    uint8_t data[];
} lmsg;

typedef struct lane {
    lanes *owner;
    int index;
    apply_state *ap;
    lmsg *head, *tail;
    bool blocked; /* apply said so: wait for its on_unblock */
    int inflight; /* dispatched transactions not yet committed */
} lane;

typedef struct ltx {             /* a dispatched transaction, until durable */
    uint64_t final_lsn, end_lsn; /* its commit record's start (ranges name it) and end */
    int64_t commit_ts;
    int lane;
    bool committed, durable, serial;
    uint64_t *keys;
    uint8_t *modes;
    int nkeys;
} ltx;

typedef struct kentry {
    uint64_t key; /* 0 = empty */
    uint16_t excl;
    uint16_t cnt[LANES_MAX];
} kentry;

typedef struct lrel { /* a relation's key rule, resolved against lane 0's map */
    uint32_t relid;
    uint64_t version;
    bool used;
    bool serial, none;
    apply_target *t;
    uint64_t table_key;
    bool table_only; /* every change takes the table key exclusively */
    int nkey;
    int *keycol;
} lrel;

struct lanes {
    uv_loop_t *loop;
    uv_idle_t *idle;
    lanes_callbacks cb;
    lanes_options o;
    int n;
    lane lane[LANES_MAX];
    relcache *cache;
    pgoutput_message msg;
    char errbuf[512];
    apply_error err;
    bool failed;
    lrel *rels; /* by relid, open addressing (lanes_keys.c) */
    size_t nrels, rels_cap;
    /* the transaction being received */
    bool in_tx, serial, passthrough, pending, skip_tx;
    lmsg *tx_head, *tx_tail;
    /* Relation/Type messages for lanes 1.. while a serial point is in flight on lane 0: its
     * DDL message's reply changes their maps, so they read them only after it committed. */
    lmsg *held_head, *held_tail;
    int serial_inflight;
    size_t tx_bytes;
    uint64_t *keys;
    uint8_t *modes;
    int nkeys, keys_cap;
    uint64_t tx_final_lsn, tx_end_lsn;
    int64_t tx_commit_ts;
    /* dispatched transactions, in source order */
    ltx *ring;
    size_t ring_cap, ring_head, ring_count, applied_cursor; /* cursor: first not known committed */
    kentry *kmap;
    size_t kcap, kused;
    uint64_t w_applied, w_durable, queued_lsn, idle_lsn;
    int64_t applied_commit_ts;
    /* restart ranges above the watermark, pairs */
    uint64_t *carried;
    int ncarried;
    /* flow */
    bool feed_blocked, paused, stopping, stop_sent, stopped_reported;
    int last_lane;
    size_t queued_bytes;
    uint64_t serial_points, waits, dispatched, range_skipped;
    apply_buf sql_ranges;
    char *ddl_prefix; /* the task's DDL messages' prefix, or NULL */
};


kentry *lanes__kfind(lanes *l, uint64_t key, bool insert);
void lanes__tx_key_raw(lanes *l, uint64_t key, int mode);
/* The keys of one change of relation relid (sets l->serial when it is a serial point). */
void lanes__change_keys(lanes *l, uint32_t relid, int type, const pgoutput_tuple *old,
                        const pgoutput_tuple *row);
void lanes__forget_rules(lanes *l);
/* The lanes holding a key the pending transaction (l->keys) conflicts with, as a bit mask. */
unsigned lanes__conflicts(lanes *l);
void lanes__release_keys(lanes *l, ltx *e);
ltx *lanes__ring_at(lanes *l, size_t i);
ltx *lanes__ring_push(lanes *l);

#endif
