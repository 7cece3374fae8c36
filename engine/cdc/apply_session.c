/*
 * apply_session.c — what apply keeps of its target session: the statements prepared on it (by
 * SQL text), and the switch to a new session once it prepared opt.session_statements of them
 * (APPLY_EVENT_RECONNECT; docs/incremental.md, "Many tables").
 */
#include "cdc/apply_internal.h"

#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- prepared statements */

static uint64_t hash_text(const char *s) {
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) h = (h ^ (unsigned char) *s) * 1099511628211ULL;
    return h;
}

/* The statement number for this SQL text, preparing it (queued) the first time. */
int apply__stmt_lookup(apply_state *ap, const char *sql, int nparams) {
    if (ap->stmt_count * 2 >= ap->stmt_cap) {
        size_t cap = ap->stmt_cap ? ap->stmt_cap * 2 : 64;
        char **keys = calloc(cap, sizeof *keys);
        int *ids = calloc(cap, sizeof *ids);
        if (!keys || !ids) abort();
        for (size_t i = 0; i < ap->stmt_cap; i++) {
            if (!ap->stmt_sql[i]) continue;
            size_t j = hash_text(ap->stmt_sql[i]) & (cap - 1);
            while (keys[j]) j = (j + 1) & (cap - 1);
            keys[j] = ap->stmt_sql[i];
            ids[j] = ap->stmt_id[i];
        }
        free(ap->stmt_sql);
        free(ap->stmt_id);
        ap->stmt_sql = keys;
        ap->stmt_id = ids;
        ap->stmt_cap = cap;
    }
    size_t j = hash_text(sql) & (ap->stmt_cap - 1);
    while (ap->stmt_sql[j]) {
        if (strcmp(ap->stmt_sql[j], sql) == 0) return ap->stmt_id[j];
        j = (j + 1) & (ap->stmt_cap - 1);
    }
    int id = (int) ++ap->stmt_count;
    if (ap->opt.session_statements > 0 && ap->stmt_count >= (size_t) ap->opt.session_statements)
        ap->reconnect_due = true;
    ap->stmt_sql[j] = strdup(sql);
    ap->stmt_id[j] = id;
    char name[24];
    apply_stmt_name(name, id);
    (void) nparams;
    apply__q_push(ap, IF_PREPARE);
    ap->n.prepared_statements++;
    apply__sent(ap, PQsendPrepare(ap->c->pg, name, sql, 0, NULL), "preparing a statement");
    return id;
}

/* Forget every statement: they belong to a session that ends. */
void apply__stmts_free(apply_state *ap) {
    for (size_t i = 0; i < ap->stmt_cap; i++) free(ap->stmt_sql[i]);
    free(ap->stmt_sql);
    free(ap->stmt_id);
    ap->stmt_sql = NULL;
    ap->stmt_id = NULL;
    ap->stmt_cap = ap->stmt_count = 0;
}

/* ---------------------------------------------------------------- a new session */

/* A new session, between target transactions: its statements are prepared again on the new one
 * as changes need them. The stop path comes first (a stopping stream ends on the connection it
 * has). Three conditions before the old session goes:
 * - feeding has stopped (a feed returned BLOCKED): a group closed by the tick or a pause may have
 *   set reconnect_due while the stream still feeds; nothing may reach a released connection;
 * - nothing is in flight, no group is open;
 * - what it committed is durable (commits are asynchronous): once the origin session is reset, a
 *   target crash before the new session takes the origin would otherwise lose the last groups,
 *   which this stream, skipping what it applied, would not send again. */
void apply__maybe_reconnect(apply_state *ap) {
    if (!ap->reconnect_due || ap->reconnecting || ap->failed || !ap->started || ap->stop_requested ||
        !ap->feeding_blocked)
        return;
    if (ap->in_tx || ap->group != G_NONE || ap->commits_in_flight || ap->progress_in_flight || ap->q_count ||
        ap->held || ap->nconflicts || ap->want_writable)
        return;
    if (ap->durable_lsn < ap->applied_lsn) {
        apply__progress_send(ap);
        apply__send_sync(ap, IF_SYNC);
        return;
    }
    if (!PQexitPipelineMode(ap->c->pg)) {
        apply__fail(ap, "target", "08000", PQerrorMessage(ap->c->pg),
                    "leaving pipeline mode to change sessions");
        return;
    }
    apply_release(ap);
    ap->reconnecting = true;
    if (ap->cb.on_event) ap->cb.on_event(ap->cb.arg);
}

int apply_reconnect(apply_state *ap, tide_conn *c) {
    if (!ap->reconnecting) return -1;
    apply__stmts_free(ap);
    ap->c = c;
    ap->reconnecting = ap->reconnect_due = false;
    ap->since_flush = 0;
    if (apply_start(ap) < 0) return -1;
    apply__send_plain(ap, IF_ORIGIN_CHECK, "SELECT pg_catalog.pg_replication_origin_session_progress(false)");
    apply__send_sync(ap, IF_SYNC);
    if (ap->failed) return -1;
    ap->n.sessions++;
    apply__maybe_unblock(ap);
    return 0;
}
