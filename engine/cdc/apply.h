/*
 * apply.h — applying a decoded pgoutput stream to a target connection, exactly once.
 *
 * apply.c owns the state machine: it decodes each payload the replication stream hands it,
 * keeps the relation cache, maps source relations to target tables (the map comes from Lua),
 * queues statements on the target in pipeline mode, groups several source transactions into
 * one target transaction, and advances the replication origin in that same transaction.
 * apply_sql.c builds the statement texts and their parameters (pure, unit-tested).
 *
 * A target transaction ("group") goes through:
 *   open       BEGIN sent; statements queued as changes arrive
 *   checking   closed at a source-transaction boundary: a pipeline sync was sent and the
 *              feed is paused until every statement's result has been seen, so that a
 *              conflict (a row that was not there) is known before anything commits
 *   committing pg_replication_origin_xact_setup(end_lsn, commit_ts) + COMMIT queued; the
 *              feed resumes at once and the next group may start behind it in the pipeline
 * Progress that is durable on the target is read with pg_replication_origin_session_progress
 * (true); only that position is reported to the source as flushed.
 */
#ifndef TIDE_APPLY_H
#define TIDE_APPLY_H

#include "pg/conn.h"
#include "cdc/pgoutput.h"
#include "cdc/relcache.h"

/* ---------------------------------------------------------------- growable text buffer */

typedef struct apply_buf {
    char *data;
    size_t len, cap;
} apply_buf;

void apply_buf_reset(apply_buf *b);
void apply_buf_add(apply_buf *b, const char *s, size_t n);
void apply_buf_adds(apply_buf *b, const char *s);
void apply_buf_addf(apply_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* "$n", a statement's parameter n (n >= 0), appended without printf (a statement is written
 * for every change: printf was a third of pgtide's CPU while catching up). */
void apply_buf_param(apply_buf *b, int n);
void apply_buf_uint(apply_buf *b, unsigned n); /* its decimal digits */
/* "pgtide_<id>" (a prepared statement's name, id >= 0) into out, which holds at least 24 bytes. */
void apply_stmt_name(char *out, int id);
void apply_buf_free(apply_buf *b);

/* ---------------------------------------------------------------- the relation map */

typedef enum apply_conflict_policy {
    APPLY_CONFLICT_ERROR,     /* stop with the change, table, key and LSN */
    APPLY_CONFLICT_SKIP,      /* leave the target as it is, count it */
    APPLY_CONFLICT_OVERWRITE, /* make the target row what the source says */
} apply_conflict_policy;

typedef struct apply_column {
    char *source;         /* source column name, as the Relation message sends it */
    char *target_sql;     /* target column name, quoted */
    bool identity_always; /* GENERATED ALWAYS AS IDENTITY on the target: inserts need OVERRIDING
                             SYSTEM VALUE, and UPDATE may only set it to DEFAULT */
} apply_column;

/* One source table of the task and where its changes go. Built from Lua (lua_cdc.c). */
typedef struct apply_target {
    char *source_schema, *source_name; /* as the Relation message names it */
    char *target_sql;                  /* "schema"."name" */
    char *display;                     /* schema.name of the target, for messages */
    apply_column *columns;             /* the selected columns */
    int ncolumns;
    char **known; /* every source column the plan knew, selected or not */
    int nknown;
    char **known_type; /* per known column: its SQL type, for a filter pgtide applies (NULL: text) */
    char **key;        /* source names of a unique key on the target (may be 0) */
    int nkey;
    char *filter;          /* a row filter pgtide applies itself (apply_filter.c), in source column names;
                              NULL when the publication filters (or nothing does) */
    char **filter_columns; /* the source columns the filter names */
    int nfilter_columns;
    bool partitioned;      /* target is partitioned: never ONLY, find rows by tableoid */
    bool heartbeat;        /* pgtide's heartbeat table: counted, never applied */
    bool ignored;          /* published but not selected (DDL replication adds every new table of
                              a followed schema to the publication): never applied */
    bool hooked;           /* on.change names this table: changes go through Lua */
    bool mergeable;        /* updates of one row in one group may be folded (Lua
                                          checked: one unique index, no replica/always triggers) */
    bool batchable;        /* inserts may be sent several rows to a statement (Lua
                                          checked: a plain table, no replica/always triggers,
                                          the stream in replica role) */
    bool unique_free;      /* the target has no unique index: no insert conflicts */
    char *follow_cascade;  /* select.rows_follow, for a table other tables follow: the CTEs
                              (", pgtide_f1 AS (DELETE ...)") that delete, on the target, the rows
                              that followed a row leaving the filter (pgtide_out); its filtered
                              updates also report a row moving in (apply_follow.c). NULL: none */
    uint64_t tolerate_lsn; /* the full load found this table truncated on the source
                                          after its snapshot (copied empty): changes in transactions
                                          committing at or before this LSN may miss their rows, so
                                          their conflicts are counted as tolerated, never fatal,
                                          until the stream's TRUNCATE of the table (which resets it
                                          and sets this back to 0); 0 = none */

    /* Parallel apply (lanes.c): 0 = transactions touching different keys of this table run on
     * different connections; 1 = every change takes the key of lane_group (the tables joined
     * by foreign keys, or with unique indexes besides the key); 2 = its transactions are serial
     * points. */
    uint8_t lane_mode;
    uint32_t lane_group;

    /* on.route: this table's relation written into each table its on.row function may route
     * rows to (apply_route.c); owned */
    struct apply_target **routes;
    int nroutes;
} apply_target;

void apply_target_free(apply_target *t);

/* A relation as the stream describes it, resolved against its apply_target. Rebuilt whenever a
 * Relation message replaces the relcache entry (version changes). */
typedef struct apply_rel {
    uint32_t relid;
    uint64_t version;
    apply_target *target;
    int ncols;
    int *slot;     /* per relation column: index in target->columns, -1 = not applied */
    bool *match;   /* per relation column: used to find the row on update/delete */
    bool *textcmp; /* per relation column: compare as text (the type has no '=') */
    bool by_key;   /* the match columns are unique: a plain WHERE; else one row by ctid */
    bool has_match;
    char identity;             /* the source's replica identity letter */
    struct apply_merge *merge; /* pending folded updates (apply_merge.c), or NULL */
} apply_rel;

/* ---------------------------------------------------------------- statement building */

typedef enum apply_form {
    APPLY_FORM_INSERT,        /* INSERT ... VALUES */
    APPLY_FORM_INSERT_IGNORE, /* ... ON CONFLICT DO NOTHING: 0 rows = the row existed */
    APPLY_FORM_UPSERT,        /* ... ON CONFLICT (key) DO UPDATE ... RETURNING (xmax = 0) */
    APPLY_FORM_UPDATE,
    APPLY_FORM_DELETE,
    APPLY_FORM_FILTERED,    /* apply_filter.c: returns (wanted, done, inserted, complete, decided) */
    APPLY_FORM_UPDATE_ROWS, /* apply_merge.c: several rows' updates, RETURNING the number of each
                               row found */
} apply_form;

/* One statement: its text and its text-format parameters (NULL = SQL NULL). */
typedef struct apply_stmt {
    apply_buf sql;
    apply_buf values;    /* parameter values, each NUL-terminated */
    size_t *offsets;     /* offset of each value in `values`, or SIZE_MAX for NULL */
    const char **params; /* filled by apply_stmt_params() */
    int nparams, cap;
} apply_stmt;

void apply_stmt_reset(apply_stmt *st);
void apply_stmt_free(apply_stmt *st);
/* Add the value of one TupleData column as the next parameter; returns its number. */
int apply_stmt_add(apply_stmt *st, const pgoutput_value *v);
/* Point st->params at the values (call after the last value was added). */
const char *const *apply_stmt_params(apply_stmt *st);

/* INSERT of `row`'s applied columns (UNCHANGED_TOAST ones left out; OVERRIDING SYSTEM VALUE
 * when one is an identity_always column). Returns the number of columns, 0 if there is nothing
 * to insert. */
int apply_sql_insert(apply_stmt *st, const apply_rel *r, const pgoutput_tuple *row, apply_form form);
/* "INSERT INTO target" and, after its ON CONFLICT (key) clause, " RETURNING <was the row new>
 * AS inserted": xmax = 0, which a partitioned table cannot return; there, whether the key had
 * no row when the statement began (the statement's snapshot does not see its own insert). */
void apply_sql_insert_into(apply_buf *b, const apply_rel *r);
void apply_sql_returning_inserted(apply_buf *b, const apply_rel *r);
/* UPDATE setting `row`'s applied columns that are not UNCHANGED_TOAST (key columns only when
 * set_keys), finding the row by `search`. An identity_always column is not set but compared
 * with its new value in the WHERE (a changed value finds no row: a conflict), unless it is a
 * key column being changed. Returns 1, 0 when nothing is to be set, -1 when a match column has
 * no value in `search` (message in err). */
int apply_sql_update(apply_stmt *st, const apply_rel *r, const pgoutput_tuple *search,
                     const pgoutput_tuple *row, bool set_keys, char *err, size_t errlen);
int apply_sql_delete(apply_stmt *st, const apply_rel *r, const pgoutput_tuple *search, char *err,
                     size_t errlen);
/* A table with a filter pgtide applies (apply_filter.c). The insert takes `form`'s conflict
 * handling (INSERT: a duplicate is an error; INSERT_IGNORE; UPSERT). The update returns 1, or -1
 * with a message when the table has no unique key or the old key has no value. */
void apply_sql_filtered_insert(apply_stmt *st, const apply_rel *r, const relcache_relation *rel,
                               const pgoutput_tuple *row, apply_form form);
int apply_sql_filtered_update(apply_stmt *st, const apply_rel *r, const relcache_relation *rel,
                              const pgoutput_tuple *old, const pgoutput_tuple *row, bool key_changed,
                              char *err, size_t errlen);
/* "id=42, region='eu'" from the match columns of `search` (shortened to len). */
void apply_sql_key_text(char *out, size_t len, const apply_rel *r, const pgoutput_tuple *search);
/* Resolve a relation against its target. Returns 0 or -1 with a message for the operator
 * (a column the task does not know, a key column that is not selected, ...). `previous`
 * is the earlier resolution of the same relid in this stream, or NULL. */
int apply_rel_resolve(apply_rel *r, const relcache_relation *rel, apply_target *t, const apply_rel *previous,
                      char *err, size_t errlen);
void apply_rel_clear(apply_rel *r);

/* ---------------------------------------------------------------- the apply state */

typedef struct apply_state apply_state;

typedef enum apply_feed_result {
    APPLY_CONTINUE = 0, /* give me the next message */
    APPLY_BLOCKED = 1,  /* processed; stop feeding until apply calls on_unblock */
    APPLY_FAILED = -1,  /* stop: apply_state_error() says why */
} apply_feed_result;

typedef enum apply_event {
    APPLY_EVENT_NONE,
    APPLY_EVENT_CHANGE,    /* a change of a hooked table waits for Lua (apply_held_*) */
    APPLY_EVENT_CONFLICT,  /* a conflict waits for the Lua hook's decision */
    APPLY_EVENT_DDL,       /* a DDL message of the task waits for Lua (apply_held_ddl, apply_ddl_*) */
    APPLY_EVENT_FOLLOW,    /* rows moved into a followed filter wait for Lua (apply_follow_*) */
    APPLY_EVENT_RECONNECT, /* the connection prepared session_statements statements and nothing is
                              in flight: it was released; Lua gives a new one (apply_reconnect) */
} apply_event;

typedef struct apply_callbacks {
    void *arg;
    void (*on_unblock)(void *arg); /* feeding may resume */
    void (*on_event)(void *arg);   /* something changed for Lua: failure, event, stop done */
    /* Parallel apply (lanes.c); both may be NULL. on_commit: the applied or durable position
     * moved (called from result processing: never feed apply from it). before_commit: a group
     * ending at end_lsn is about to commit; it may queue statements (apply_queue_setup) that
     * commit with it. */
    void (*on_commit)(void *arg);
    void (*before_commit)(void *arg, apply_state *ap, uint64_t end_lsn, uint32_t txs);
} apply_callbacks;

#define APPLY_MAX_SKIP_ORIGINS 4

typedef struct apply_options {
    apply_target **targets;
    int ntargets;
    apply_conflict_policy conflict;
    bool conflict_hook;
    int group_changes;         /* close a group after this many changes (at a tx boundary) */
    double group_seconds;      /* ... or after this long */
    double group_live_seconds; /* ... or after this long while caught up (0 = group_seconds) */
    uint64_t start_lsn;        /* origin progress: transactions ending at or before it are skipped */
    int server_version;        /* the target's: the xid function's name */
    bool batch_updates;        /* a table's folded updates may go several rows to a statement
                                  (apply_merge.c) */
    /* Transactions that the source replayed under one of these replication origins (pgtide's
     * own apply of a paired task: a reverse task's forward one) are not applied: no loop. */
    char skip_origins[APPLY_MAX_SKIP_ORIGINS][64];
    int nskip_origins;
    bool lazy_relations;    /* resolve a Relation message at the first change that needs it, not at
                               once (parallel apply's lanes: the map of lanes 1.. changes with a DDL
                               message lane 0 applies, and a Relation message may reach them before
                               that; every lane gets the Relation messages of the transactions it
                               skips, which may describe a table as it was before an applied DDL) */
    int session_statements; /* replace the target connection, between target transactions, once
                               it prepared this many statements (0: never). A backend keeps every
                               relation and plan it used; with tens of thousands of tables it
                               grows by gigabytes and PostgreSQL 15's catalog caches search their
                               lists linearly (docs/performance.md, "A fresh apply session") */
    char *ddl_prefix;       /* the prefix of the task's DDL messages (transactional logical
                               decoding messages its event trigger emits); NULL: none are
                               followed. Owned by apply (freed with it). */
} apply_options;

typedef struct apply_conflict {
    const char *kind;  /* "insert_exists", "update_missing", "delete_missing" */
    const char *table; /* target display name */
    char source_table[128];
    char key[200];
    uint64_t lsn, commit_lsn;
    char op;
} apply_conflict;

typedef struct apply_counters {
    uint64_t received_transactions, applied_transactions, skipped_transactions;
    uint64_t applied_changes, queued_changes, hooked_changes, dropped_changes, merged_changes;
    uint64_t batched_inserts; /* rows sent in INSERTs of several rows */
    uint64_t batched_updates; /* rows sent in UPDATEs of several rows */
    uint64_t groups, truncates, heartbeats;
    uint64_t insert_exists, update_missing, delete_missing;
    uint64_t conflicts_skipped, conflicts_overwritten;
    uint64_t conflicts_tolerated; /* rows missing before a table's tolerate_lsn (not counted above) */
    uint64_t prepared_statements;
    uint64_t sessions;       /* target connections replaced (session_statements) */
    uint64_t origin_skipped; /* transactions not applied: replayed under a skip_origins origin */
    uint64_t ddl_applied, ddl_skipped, ddl_statements; /* DDL messages, statements run for them */
} apply_counters;

typedef struct apply_positions {
    uint64_t queued_lsn;       /* end of the last source transaction queued */
    uint64_t applied_lsn;      /* end of the last committed group */
    uint64_t durable_lsn;      /* origin progress read back with flush = true */
    int64_t applied_commit_ts; /* unix microseconds, of the last committed transaction */
    int64_t pending_commit_ts; /* unix µs of the oldest received, uncommitted tx; 0 if none */
    bool in_transaction;
    bool idle; /* nothing received is waiting: everything queued has committed */
} apply_positions;

apply_state *apply_create(tide_conn *target, const apply_options *opts, const apply_callbacks *cb);
/* Enter pipeline mode and start watching the connection. -1 on failure (see error). */
int apply_start(apply_state *ap);
/* One pgoutput payload; `lsn` is the frame's dataStart (the change's LSN, 0 if none). */
apply_feed_result apply_feed(apply_state *ap, uint64_t lsn, const uint8_t *payload, size_t len);
/* The replication stream has nothing more buffered: close an open group at a boundary, once
 * caught up (apply_caught_up) or when `source_now` < 0 (the caller wants it closed). */
apply_feed_result apply_burst_end(apply_state *ap, int64_t source_now);
/* Whether a transaction that committed at `commit_ts` (pgoutput's epoch) is recent: under a
 * second old at `source_now` (the source's clock from the stream, unix µs; 0: ours). */
bool apply_caught_up(int64_t commit_ts, int64_t source_now);
/* The source's clock at its latest message (unix µs), for group_limit; 0 is ignored. */
void apply_source_time(apply_state *ap, int64_t source_now);
/* Housekeeping from the stream's timer: read durable progress when it lags; when idle, record
 * the latest keepalive position in the origin (an empty target transaction), so the flush
 * position moves on an idle source while never exceeding what the target has recorded. */
void apply_tick(apply_state *ap, uint64_t keepalive_lsn);
/* Pause at the next transaction boundary (feeding blocks there until resumed). */
void apply_set_paused(apply_state *ap, bool paused);
/* Finish: close the group at the next boundary, commit, read durable progress. */
void apply_request_stop(apply_state *ap);
bool apply_stopped(const apply_state *ap); /* stop requested and everything durable */
/* APPLY_EVENT_RECONNECT's answer: go on with `c`, a new target connection set up like the first
 * (settings, replication origin: the old session reset its origin before). -1 on failure (see
 * error). */
int apply_reconnect(apply_state *ap, tide_conn *c);
/* Give the connection back: leave pipeline mode when possible, stop watching. */
void apply_release(apply_state *ap);
void apply_free(apply_state *ap);

const apply_counters *apply_get_counters(const apply_state *ap);
void apply_get_positions(const apply_state *ap, apply_positions *out);
/* The position to report as flushed: the origin's durable position. */
uint64_t apply_flush_position(const apply_state *ap);
bool apply_blocked(const apply_state *ap);

/* Failure, once apply_feed returned APPLY_FAILED or on_event reported it. */
typedef struct apply_error {
    char sqlstate[6];
    char *message, *detail, *hint;
    char *context;    /* what was being applied: "update of public.t (id=3) at 0/1A2B" */
    const char *side; /* "target" or "stream" */
    apply_conflict conflict;
    bool is_conflict;
} apply_error;
const apply_error *apply_state_error(const apply_state *ap);

/* Lua events. */
apply_event apply_pending_event(const apply_state *ap);
/* The held change of a hooked table, decoded again: message, relation and its resolution. */
int apply_held_decode(apply_state *ap, pgoutput_message **msg, const relcache_relation **rel, apply_rel **r,
                      uint64_t *lsn, uint64_t *commit_lsn, int64_t *commit_ts);
/* Apply the held change with these tuples instead of the decoded ones (NULL = as decoded);
 * `target` (may be NULL) routes it to another table; `as_delete` applies an update as the delete
 * of its row (on.row dropped the new row). Then feeding resumes. */
int apply_held_apply(apply_state *ap, const pgoutput_tuple *old_tuple, const pgoutput_tuple *new_tuple,
                     apply_target *target, bool as_delete);
void apply_held_drop(apply_state *ap);
/* Apply the held change of a table with routes (apply_route.c), its new row sent by on.row to
 * `dest`: 0 the table itself, k its k-th route (target->routes[k - 1]), -1 nowhere (dropped).
 * Tuples as for apply_held_apply. Then feeding resumes. */
int apply_held_route(apply_state *ap, const pgoutput_tuple *old_tuple, const pgoutput_tuple *new_tuple,
                     int dest);
/* DDL replication (apply_ddl.c). A DDL message of the task (opts.ddl_prefix) stops the feed at
 * its position in its transaction, like a hooked change; Lua reads it, then queues the target
 * statements in the open group (apply_ddl_exec: same target transaction as the changes around
 * it, committed with the origin advance), changes the map (apply_set_target), and ends it with
 * apply_ddl_done. */
int apply_held_ddl(apply_state *ap, const char **content, size_t *len, uint64_t *lsn, uint64_t *commit_lsn,
                   int64_t *commit_ts);
/* Queue one statement in the open group; a failure stops the stream with `context` (which names
 * the source statement, its LSN and the fix). */
void apply_ddl_exec(apply_state *ap, const char *sql, const char *context);
/* Put `t` into the map (taking it), replacing the entry of source table old_schema.old_name (or of
 * t's own source name when old_schema is NULL); t = NULL removes that entry. Resolutions of the
 * replaced entry are rebuilt at their next use; the old entry is kept until apply_free (statements
 * in flight name it). */
void apply_set_target(apply_state *ap, apply_target *t, const char *old_schema, const char *old_name);
/* The held DDL message is done (applied = statements queued, or skipped); feeding resumes. */
void apply_ddl_done(apply_state *ap, bool applied);

/* select.rows_follow (apply_follow.c). A filtered update that moves a row of a table others
 * follow into its filter records the row's key; once the group's statements have all
 * succeeded, and before it commits, the group waits for Lua (APPLY_EVENT_FOLLOW), which reads
 * the rows that follow it from the source and queues their upserts in the same target
 * transaction (apply_follow_exec), then calls apply_follow_done: the group is checked again
 * and commits. apply_follow_row returns the i-th recorded row (its table's source schema and
 * name, and its key as a JSON array of text), or -1 past the last. */
int apply_follow_row(const apply_state *ap, int i, const char **schema, const char **name, const char **key);
void apply_follow_exec(apply_state *ap, const char *sql, int nparams, const char *const *params,
                       const char *context);
void apply_follow_done(apply_state *ap);
/* The open group commits at the end of the held message's source transaction (what the DDL
 * made can only be used once committed on the target: ALTER TYPE ... ADD VALUE). */
void apply_ddl_commit_after(apply_state *ap);

/* A statement queued in the open group before its COMMIT (from before_commit); its failure
 * stops the stream ("recording the replication origin position"). */
void apply_queue_setup(apply_state *ap, const char *sql, int nparams, const char *const *params);
/* The map entry of source table schema.name, or NULL. */
apply_target *apply_target_of_source(apply_state *ap, const char *schema, const char *name);
/* The map entry whose target is `display` ("schema.name"), for routing; NULL if none. */
apply_target *apply_find_target(apply_state *ap, const char *display);
/* The conflict waiting for the hook; then the decision (true = skip, false = stop). */
const apply_conflict *apply_conflict_pending(const apply_state *ap);
void apply_conflict_decide(apply_state *ap, bool skip);
/* Conflicts that were skipped or overwritten (for the log): copies those numbered after
 * `since` (at most max, the latest APPLY_RECENT kept) into out; returns how many, and the
 * total so far in *total. */
#define APPLY_RECENT 32
int apply_recent_conflicts(const apply_state *ap, uint64_t since, apply_conflict *out, int max,
                           uint64_t *total);

/* "1A/2B3C4D" */
void apply_format_lsn(char *out, size_t len, uint64_t lsn);
int apply_parse_lsn(const char *s, uint64_t *out);

#endif
