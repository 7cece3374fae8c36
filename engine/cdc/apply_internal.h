/*
 * apply_internal.h — what the apply files share (apply.c: feed, groups, life cycle;
 * apply_result.c: results, conflicts, failures; apply_merge.c: folding updates of hot rows and
 * sending inserts several rows to a statement).
 * Not for use outside engine/apply*.c; the interface is apply.h.
 */
#ifndef TIDE_APPLY_INTERNAL_H
#define TIDE_APPLY_INTERNAL_H

#include "cdc/apply.h"

#define MAX_INFLIGHT 8192
#define RESUME_INFLIGHT 2048
#define FLUSH_EVERY 64
#define PROGRESS_EVERY 0.1 /* seconds between durable-progress reads while busy */

enum inflight_kind {
    IF_BEGIN,
    IF_PREPARE,
    IF_DML,
    IF_TRUNCATE,
    IF_DDL,
    IF_CHECK_SYNC,
    IF_SETUP,
    IF_COMMIT,
    IF_PROGRESS,
    IF_ORIGIN_CHECK, /* a new session's origin position (apply_reconnect) */
    IF_SYNC
};

#define KEY_TEXT_LEN 112 /* a change's key as text, for messages (apply_sql_key_text) */

/* One row of an UPDATE of several rows (APPLY_FORM_UPDATE_ROWS): what the result names when
 * the statement did not find it. */
typedef struct update_row_info {
    uint64_t lsn, commit_lsn;
    char key[KEY_TEXT_LEN];
} update_row_info;

typedef struct inflight {
    uint8_t kind, op, form;
    bool got_result;
    uint32_t changes, txs; /* IF_COMMIT: what the group holds */
    apply_target *target;
    uint64_t lsn, commit_lsn; /* IF_DML: the change; IF_COMMIT: end_lsn in lsn */
    uint64_t last_lsn;        /* IF_DML of several inserts: the last one's LSN */
    uint32_t rows;            /* IF_DML: rows the statement inserts together (0 or 1: one) */
    bool tolerant;            /* IF_DML: queued before its table's tolerate_lsn was passed */
    int64_t commit_ts;
    update_row_info *each; /* IF_DML of APPLY_FORM_UPDATE_ROWS: its `rows` rows, in the order of
                              the numbers the statement returns (1..rows); owned */
    char key[KEY_TEXT_LEN];
} inflight;

typedef enum group_state { G_NONE, G_OPEN, G_CHECKING, G_WAIT_LUA } group_state;

struct apply_state {
    tide_conn *c;
    apply_options opt;
    apply_callbacks cb;
    relcache *cache;
    pgoutput_message msg;
    apply_stmt st;
    char errbuf[1024];
    /* resolved relations, by relid (open addressing) */
    apply_rel **rels;
    size_t rels_cap, rels_count;
    /* prepared statements: SQL text → number */
    char **stmt_sql;
    int *stmt_id;
    size_t stmt_cap, stmt_count;
    /* results we wait for, in order */
    inflight *q;
    size_t q_cap, q_head, q_count;
    size_t since_flush;
    bool want_writable;
    /* the target transaction being built */
    group_state group;
    uint64_t group_end_lsn;
    int64_t group_commit_ts;
    uint32_t group_changes, group_txs;
    double group_started;
    int64_t group_first_ts; /* unix µs: commit time of the group's first transaction */
    /* the source transaction being received */
    bool in_tx, skip_tx;
    bool skip_origin_tx; /* skip_tx for a transaction of a skip_origins origin (tide.cdc) */
    uint64_t tx_final_lsn;
    int64_t tx_commit_ts;
    uint64_t skip_below;
    int64_t source_now; /* the source's clock at its latest message (unix µs; 0: not known) */
    /* positions */
    uint64_t queued_lsn, applied_lsn, durable_lsn;
    int64_t applied_commit_ts, pending_commit_ts;
    int commits_in_flight, progress_in_flight;
    double last_progress, last_group;
    /* control */
    bool started, feeding_blocked, paused, stop_requested, stopped, failed;
    /* session_statements reached: stop feeding at the next boundary (reconnect_due), then,
     * nothing in flight, give the connection back and wait for Lua's new one (reconnecting) */
    bool reconnect_due, reconnecting;
    apply_error err;
    /* Lua */
    uint8_t *held;
    size_t held_len;
    uint64_t held_lsn;
    bool held_ddl; /* what is held is a DDL message (apply_ddl.c), not a change */
    /* DDL statements in flight: what to say when one fails, in queue order */
    char **ddl_ctx;
    size_t ddl_ctx_head, ddl_ctx_count, ddl_ctx_cap;
    apply_target **retired; /* map entries replaced mid-stream (apply_set_target) */
    /* opt.targets found by source name and by display (apply_rels.c): slots hold index + 1;
     * rebuilt on the next lookup after apply_set_target changed the list */
    int *by_source, *by_display;
    size_t names_cap;
    bool names_built;
    int nretired, cap_retired;
    struct follow_row *follow; /* rows moved into a followed filter in this group (apply_follow.c) */
    int nfollow, cap_follow;
    apply_conflict *conflicts; /* waiting for the hook, in order */
    int nconflicts, cap_conflicts;
    apply_rel **dirty; /* relations holding folded updates (apply_merge.c) */
    int ndirty, cap_dirty;
    size_t merge_bytes;
    apply_conflict recent[APPLY_RECENT];
    uint64_t recent_total;
    apply_counters n;
};

/* apply.c */
double apply__now(void);
char *apply__strdup(const char *s);
inflight *apply__q_push(apply_state *ap, int kind);
inflight *apply__q_front(apply_state *ap);
void apply__q_pop(apply_state *ap);
void apply__watch(apply_state *ap);
void apply__flush(apply_state *ap);
void apply__group_commit(apply_state *ap);
void apply__maybe_unblock(apply_state *ap);
/* apply_rels.c: the task's table of that source name, or NULL. */
apply_target *apply__find_target(apply_state *ap, const char *schema, const char *name);
void apply__names_free(apply_state *ap);
/* The stream's relation `relid` resolved to its target (NULL when the task has none). */
apply_rel *apply__rel_get(apply_state *ap, uint32_t relid, const relcache_relation **relp);
void apply__check_stopped(apply_state *ap);
/* apply_session.c: the statement number for this SQL text, preparing it (queued) the first
 * time; forgetting them all (a session ends); and, nothing in flight and a new session due,
 * releasing this one and telling Lua. */
int apply__stmt_lookup(apply_state *ap, const char *sql, int nparams);
void apply__stmts_free(apply_state *ap);
void apply__maybe_reconnect(apply_state *ap);
/* apply.c: after a send — a failure, or a flush every FLUSH_EVERY statements; the durable-progress
 * read of the origin. */
void apply__sent(apply_state *ap, int ok, const char *what);
void apply__progress_send(apply_state *ap);
/* Queue the statement(s) for one change; `merged` earlier changes were folded into it. */
void apply__queue_change(apply_state *ap, apply_rel *r, int op, const pgoutput_tuple *old,
                         const pgoutput_tuple *row, uint64_t lsn, uint64_t commit_lsn, uint32_t merged);

/* Queue one INSERT of `rows` rows (sql with nparams parameters); `keyed` is the first row. */
void apply__queue_rows(apply_state *ap, apply_rel *r, const char *sql, int nparams, const char *const *params,
                       uint32_t rows, uint64_t lsn, uint64_t last_lsn, uint64_t commit_lsn,
                       const pgoutput_tuple *keyed);

/* Queue one UPDATE of `rows` rows (apply_merge.c): `each` (owned from here on) describes them,
 * `merged` earlier changes were folded into them; `keyed` is the first row. */
void apply__queue_update_rows(apply_state *ap, apply_rel *r, const char *sql, int nparams,
                              const char *const *params, uint32_t rows, uint32_t merged,
                              update_row_info *each, const pgoutput_tuple *keyed);

/* apply_hook.c */
void apply__held_release(apply_state *ap);
/* The held change decoded again, with its rows: Lua's replacements where given. */
typedef struct apply_held_change {
    pgoutput_message *m;
    const relcache_relation *rel;
    apply_rel *r;
    uint64_t lsn;
    const pgoutput_tuple *old, *row;
} apply_held_change;
int apply__held_rows(apply_state *ap, const char *what, const pgoutput_tuple *old_tuple,
                     const pgoutput_tuple *new_tuple, apply_held_change *out);

/* apply_follow.c */
/* Record that the filtered update `e` moved a row into its table's filter (key: JSON array). */
void apply__follow_add(apply_state *ap, apply_target *t, const char *key);
/* The group's statements all succeeded (and every conflict was decided): wait for Lua if rows
 * moved into a followed filter, else commit. */
void apply__group_checked(apply_state *ap);
void apply__follow_free(apply_state *ap);

/* apply_ddl.c */
/* Remember what to say if the next DDL-kind statement queued fails. */
void apply__ddl_push_context(apply_state *ap, const char *context);
/* Send a statement with text parameters and queue its record. */
void apply__send_params(apply_state *ap, int kind, const char *sql, int nparams, const char *const *params);
/* Queue a sync point of the given kind (IF_CHECK_SYNC, IF_SYNC). */
void apply__send_sync(apply_state *ap, int kind);
/* The context of the oldest DDL statement in flight (NULL if none), popped when `pop`. */
char *apply__ddl_context(apply_state *ap, bool pop);
void apply__ddl_free(apply_state *ap);
/* Send a plain statement (no parameters) and queue its record. */
void apply__send_plain(apply_state *ap, int kind, const char *sql);

/* apply_result.c */
void apply__fail(apply_state *ap, const char *side, const char *sqlstate, const char *message,
                 const char *context);
void apply__fail_result(apply_state *ap, const PGresult *r, const char *context);
void apply__process_results(apply_state *ap);
void apply__on_io(tide_conn *c, int events);

/* apply_merge.c */
/* Fold an UPDATE (key unchanged) of a mergeable table into its window; false = not taken. */
bool apply__merge_update(apply_state *ap, apply_rel *r, const pgoutput_tuple *row, uint64_t lsn);
/* Keep an INSERT of a batchable table to send with the next ones; false = not taken. */
bool apply__batch_insert(apply_state *ap, apply_rel *r, const pgoutput_tuple *row, uint64_t lsn);
/* Send what `r` holds: its inserts, then its folded updates. */
void apply__merge_flush_rel(apply_state *ap, apply_rel *r);
void apply__merge_flush_all(apply_state *ap);
void apply__merge_forget(apply_state *ap, apply_rel *r); /* send what it holds, then free */
void apply__merge_free(apply_rel *r);                    /* free without sending */

#endif
