/*
 * apply_result.c — what comes back from the target: each pipelined result checked in order
 * (rows affected, RETURNING of upserts, errors), conflicts classified and handled by the
 * policy or the Lua hook, and failures recorded with the change they belong to.
 */
#include "cdc/apply_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- failure */

void apply__fail_result(apply_state *ap, const PGresult *r, const char *context) {
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    apply__fail(ap, "target", state ? state : "XX000", msg ? msg : PQresultErrorMessage(r), context);
    if (!ap->err.detail) ap->err.detail = apply__strdup(PQresultErrorField(r, PG_DIAG_MESSAGE_DETAIL));
    if (!ap->err.hint) ap->err.hint = apply__strdup(PQresultErrorField(r, PG_DIAG_MESSAGE_HINT));
}

void apply__fail(apply_state *ap, const char *side, const char *sqlstate, const char *message,
                 const char *context) {
    if (ap->failed) return;
    ap->failed = true;
    snprintf(ap->err.sqlstate, sizeof ap->err.sqlstate, "%s", sqlstate ? sqlstate : "XX000");
    ap->err.message = strdup(message && *message ? message : "apply failed");
    size_t n = strlen(ap->err.message);
    while (n && ap->err.message[n - 1] == '\n') ap->err.message[--n] = '\0';
    ap->err.context = apply__strdup(context);
    ap->err.side = side;
    if (ap->started && ap->c->pg) conn_watch(ap->c, 0); /* released: the connection is Lua's again */
    if (ap->cb.on_event) ap->cb.on_event(ap->cb.arg);
}

const apply_error *apply_state_error(const apply_state *ap) { return ap->failed ? &ap->err : NULL; }

static void describe_change(char *out, size_t len, const inflight *e) {
    char lsn[32], commit[32];
    apply_format_lsn(lsn, sizeof lsn, e->lsn);
    apply_format_lsn(commit, sizeof commit, e->commit_lsn);
    const char *op = e->op == 'I' ? "insert" : e->op == 'U' ? "update" : e->op == 'D' ? "delete" : "change";
    if (e->rows > 1) {
        char last[32];
        apply_format_lsn(last, sizeof last, e->last_lsn);
        const char *table = e->target ? e->target->display : "?";
        const char *schema = e->target ? e->target->source_schema : "?";
        const char *name = e->target ? e->target->source_name : "?";
        const char *key = e->key[0] ? e->key : "-";
        if (e->op == 'I')
            snprintf(out, len,
                     "applying one of %u inserts sent together into %s (source %s.%s, the first "
                     "with key %s) at LSN %s to %s (source transactions committing up to %s); the detail "
                     "names the row, incremental.batch_inserts = false applies them one by one",
                     (unsigned) e->rows, table, schema, name, key, lsn, last, commit);
        else
            snprintf(out, len,
                     "applying one of %u updates of %s sent together (source %s.%s, one of them with "
                     "key %s) at LSN %s to %s (source transactions committing up to %s); "
                     "incremental.batch_updates = false applies them one by one",
                     (unsigned) e->rows, table, schema, name, key, lsn, last, commit);
        return;
    }
    snprintf(out, len,
             "applying the %s into %s (source %s.%s, key %s) at LSN %s (source transaction "
             "committing at %s)",
             op, e->target ? e->target->display : "?", e->target ? e->target->source_schema : "?",
             e->target ? e->target->source_name : "?", e->key[0] ? e->key : "-", lsn, commit);
}

/* ---------------------------------------------------------------- conflicts */

static const char *conflict_kind(int op) {
    return op == 'I' ? "insert_exists" : op == 'U' ? "update_missing" : "delete_missing";
}

static void conflict_fill(apply_conflict *c, const inflight *e) {
    memset(c, 0, sizeof *c);
    c->kind = conflict_kind(e->op);
    c->table = e->target ? e->target->display : "?";
    if (e->target)
        snprintf(c->source_table, sizeof c->source_table, "%s.%s", e->target->source_schema,
                 e->target->source_name);
    snprintf(c->key, sizeof c->key, "%s", e->key);
    c->lsn = e->lsn;
    c->commit_lsn = e->commit_lsn;
    c->op = (char) e->op;
}

static void conflict_count(apply_state *ap, int op) {
    if (op == 'I')
        ap->n.insert_exists++;
    else if (op == 'U')
        ap->n.update_missing++;
    else
        ap->n.delete_missing++;
}

static void conflict_remember(apply_state *ap, const apply_conflict *c) {
    ap->recent[ap->recent_total++ % APPLY_RECENT] = *c;
}

int apply_recent_conflicts(const apply_state *ap, uint64_t since, apply_conflict *out, int max,
                           uint64_t *total) {
    *total = ap->recent_total;
    uint64_t first = ap->recent_total > APPLY_RECENT ? ap->recent_total - APPLY_RECENT : 0;
    if (since > first) first = since;
    int n = 0;
    for (uint64_t i = first; i < ap->recent_total && n < max; i++) out[n++] = ap->recent[i % APPLY_RECENT];
    return n;
}

/* A conflict seen in a result. `overwritten`: the statement already resolved it. */
static void conflict_seen(apply_state *ap, const inflight *e, bool overwritten) {
    if (e->tolerant) {
        /* The table was truncated on the source after the full load's snapshot: its copy was
         * empty, and the stream's TRUNCATE (at or before tolerate_lsn) resets it; the changes
         * before that one may find no row, and whatever they leave is removed by it. */
        ap->n.conflicts_tolerated++;
        return;
    }
    conflict_count(ap, e->op);
    if (overwritten) {
        apply_conflict c;
        conflict_fill(&c, e);
        c.kind = e->op == 'I' ? "insert_exists (overwritten)" : "update_missing (inserted)";
        conflict_remember(ap, &c);
        ap->n.conflicts_overwritten++;
        return;
    }
    if (ap->opt.conflict_hook && ap->opt.conflict != APPLY_CONFLICT_OVERWRITE) {
        if (ap->nconflicts == ap->cap_conflicts) {
            int cap = ap->cap_conflicts ? ap->cap_conflicts * 2 : 8;
            apply_conflict *grown = realloc(ap->conflicts, (size_t) cap * sizeof *grown);
            if (!grown) abort();
            ap->conflicts = grown;
            ap->cap_conflicts = cap;
        }
        conflict_fill(&ap->conflicts[ap->nconflicts++], e);
        if (ap->nconflicts == 1 && ap->cb.on_event) ap->cb.on_event(ap->cb.arg);
        return;
    }
    if (ap->opt.conflict == APPLY_CONFLICT_ERROR) {
        char ctx[512];
        describe_change(ctx, sizeof ctx, e);
        char msg[512];
        snprintf(msg, sizeof msg, "conflict (%s): %s", conflict_kind(e->op),
                 e->op == 'I' ? "the row already exists on the target" : "the row is not on the target");
        apply__fail(ap, "target", e->op == 'I' ? "23505" : "02000", msg, ctx);
        ap->err.is_conflict = true;
        conflict_fill(&ap->err.conflict, e);
        if (!ap->err.hint)
            ap->err.hint = strdup("the target differs from the source for this row. Set incremental.conflict "
                                  "= \"skip\" or \"overwrite\" (or an on.conflict hook) to go on, or fix the "
                                  "row on the target and run the task again");
        return;
    }
    ap->n.conflicts_skipped++; /* skip, or overwrite where there is nothing to overwrite */
    apply_conflict c;
    conflict_fill(&c, e);
    conflict_remember(ap, &c);
}

const apply_conflict *apply_conflict_pending(const apply_state *ap) {
    return ap->nconflicts ? &ap->conflicts[0] : NULL;
}

void apply_conflict_decide(apply_state *ap, bool skip) {
    if (!ap->nconflicts) return;
    if (!skip) {
        apply_conflict c = ap->conflicts[0];
        char msg[512], ctx[512], lsn[32];
        apply_format_lsn(lsn, sizeof lsn, c.lsn);
        snprintf(msg, sizeof msg, "conflict (%s) on %s, key %s: the on.conflict hook stopped the task",
                 c.kind, c.table, c.key);
        snprintf(ctx, sizeof ctx, "source table %s at LSN %s", c.source_table, lsn);
        ap->nconflicts = 0;
        apply__fail(ap, "target", "40P99", msg, ctx);
        ap->err.is_conflict = true;
        ap->err.conflict = c;
        return;
    }
    ap->n.conflicts_skipped++;
    conflict_remember(ap, &ap->conflicts[0]);
    memmove(ap->conflicts, ap->conflicts + 1, (size_t) (ap->nconflicts - 1) * sizeof *ap->conflicts);
    ap->nconflicts--;
    if (ap->nconflicts == 0 && ap->group == G_WAIT_LUA) apply__group_checked(ap);
    apply__maybe_unblock(ap);
    if (ap->nconflicts && ap->cb.on_event) ap->cb.on_event(ap->cb.arg);
}

/* ---------------------------------------------------------------- results */

/* A statement of apply_filter.c: one row (wanted, done, inserted, complete, decided). */
static void handle_filtered_result(apply_state *ap, inflight *e, PGresult *r) {
    if (PQntuples(r) != 1 || (PQnfields(r) != 5 && PQnfields(r) != 6)) {
        apply__fail(ap, "target", "XX000", "a filtered change returned an unexpected result", NULL);
        return;
    }
    bool wanted = strcmp(PQgetvalue(r, 0, 0), "0") != 0, done = strcmp(PQgetvalue(r, 0, 1), "0") != 0;
    bool inserted = PQgetvalue(r, 0, 2)[0] == 't', complete = PQgetvalue(r, 0, 3)[0] == 't';
    bool decided = PQgetvalue(r, 0, 4)[0] == 't';
    if (!decided) {
        char ctx[512];
        describe_change(ctx, sizeof ctx, e);
        apply__fail(
            ap, "target", "55000",
            "the table's row filter reads a column whose value the source did not send (an unchanged "
            "out-of-line, TOASTed value), and the row is not on the target to take it from: whether the "
            "row matches the filter cannot be known",
            ctx);
        if (!ap->err.hint)
            ap->err.hint =
                strdup("set REPLICA IDENTITY FULL on the source table (the old row is then sent whole), "
                       "release the task and migrate the table again; or filter on other columns");
        return;
    }
    if (e->op == 'U' && inserted && !complete) {
        char ctx[512];
        describe_change(ctx, sizeof ctx, e);
        /* filter "true": no filter, on.row (tide.cdc): its function kept or routed the row here */
        bool by_row = e->target && e->target->filter && strcmp(e->target->filter, "true") == 0;
        apply__fail(
            ap, "target", "55000",
            by_row ? "an update brought a row into this table (its on.row function dropped it before, or "
                     "routed it to another table), but the source did not send the value of an unchanged "
                     "out-of-line (TOASTed) column, and the row is not on this table to take it from"
                   : "an update moved a row into the table's row filter, but the source did not send the "
                     "value of an unchanged out-of-line (TOASTed) column, and the row is not on the target "
                     "to take it from",
            ctx);
        if (!ap->err.hint)
            ap->err.hint =
                strdup("set REPLICA IDENTITY FULL on the source table (the old row is then sent whole), "
                       "release the task and migrate the table again");
        return;
    }
    if (e->op == 'U' && inserted && PQnfields(r) == 6 && !PQgetisnull(r, 0, 5))
        apply__follow_add(ap, e->target, PQgetvalue(r, 0, 5));
    if (e->op == 'I' && wanted && !done) {
        conflict_seen(ap, e, false);
        return;
    }
    if (e->op == 'I' && done && !inserted) {
        conflict_seen(ap, e, true);
        return;
    }
    ap->n.applied_changes++;
}

/* An UPDATE of several rows (apply_merge.c): it returns the number of each row it found; a row
 * it did not find is a conflict of its own, named by its key and LSN. */
static void handle_update_rows(apply_state *ap, inflight *e, PGresult *r) {
    /* A key the target holds twice returns its row's number twice: count the rows found, not
     * the target rows updated (the one-row path counts a statement once whatever it updated). */
    bool *seen = calloc(e->rows ? e->rows : 1, sizeof *seen);
    if (!seen) abort();
    uint32_t found = 0;
    for (int t = 0; t < PQntuples(r); t++) {
        long i = strtol(PQgetvalue(r, t, 0), NULL, 10);
        if (i >= 1 && i <= (long) e->rows && !seen[i - 1]) {
            seen[i - 1] = true;
            found++;
        }
    }
    ap->n.applied_changes += found;
    /* Batched only under the policy that stops at a conflict: the first one missing is named. */
    for (uint32_t i = 0; found < e->rows && e->each && i < e->rows && !ap->failed; i++) {
        if (seen[i]) continue;
        inflight one = *e;
        one.rows = 0;
        one.each = NULL;
        one.lsn = e->each[i].lsn;
        one.commit_lsn = e->each[i].commit_lsn;
        memcpy(one.key, e->each[i].key, sizeof one.key);
        conflict_seen(ap, &one, false);
    }
    free(seen);
}

static void handle_dml_result(apply_state *ap, inflight *e, PGresult *r) {
    ExecStatusType st = PQresultStatus(r);
    ap->n.applied_changes += e->changes; /* updates folded into this statement */
    if (e->form == APPLY_FORM_UPDATE_ROWS && st == PGRES_TUPLES_OK) {
        handle_update_rows(ap, e, r);
        return;
    }
    if (e->form == APPLY_FORM_FILTERED && st == PGRES_TUPLES_OK) {
        handle_filtered_result(ap, e, r);
        return;
    }
    if (e->form == APPLY_FORM_UPSERT && st == PGRES_TUPLES_OK) {
        /* a key-only row existed */
        if (PQntuples(r) == 0) {
            conflict_seen(ap, e, true);
            return;
        }
        bool inserted = PQgetvalue(r, 0, 0)[0] == 't';
        if (e->op == 'I' && !inserted) conflict_seen(ap, e, true);
        if (e->op == 'U' && inserted) conflict_seen(ap, e, true);
        ap->n.applied_changes++;
        return;
    }
    const char *tuples = PQcmdTuples(r);
    /* On a filtered table a missing row may be one the filter left out: not a conflict. */
    if (tuples && tuples[0] == '0' && tuples[1] == '\0' && e->op && !(e->target && e->target->filter)) {
        conflict_seen(ap, e, false);
        return;
    }
    ap->n.applied_changes++;
}

static void handle_result(apply_state *ap, inflight *e, PGresult *r) {
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_PIPELINE_ABORTED) return; /* an earlier error already failed us */
    if (st == PGRES_FATAL_ERROR || st == PGRES_BAD_RESPONSE || st == PGRES_NONFATAL_ERROR) {
        char ctx[512];
        const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        if (e->kind == IF_DML) {
            describe_change(ctx, sizeof ctx, e);
            if (state && strcmp(state, "23505") == 0 && e->op == 'I' &&
                ap->opt.conflict == APPLY_CONFLICT_ERROR && !ap->opt.conflict_hook) {
                conflict_seen(ap, e, false);
                if (!ap->err.detail)
                    ap->err.detail = apply__strdup(PQresultErrorField(r, PG_DIAG_MESSAGE_DETAIL));
                return;
            }
        } else if (e->kind == IF_PREPARE) {
            snprintf(ctx, sizeof ctx,
                     "preparing a statement for the target (does the target table "
                     "still match the source's columns?)");
        } else if (e->kind == IF_TRUNCATE) {
            snprintf(ctx, sizeof ctx, "applying a TRUNCATE");
        } else if (e->kind == IF_DDL) {
            char *what = apply__ddl_context(ap, true);
            apply__fail_result(ap, r, what ? what : "applying a DDL statement");
            free(what);
            return;
        } else if (e->kind == IF_SETUP) {
            snprintf(ctx, sizeof ctx, "recording the replication origin position");
        } else if (e->kind == IF_COMMIT) {
            snprintf(ctx, sizeof ctx, "committing a group of source transactions on the target");
        } else {
            snprintf(ctx, sizeof ctx, "applying changes to the target");
        }
        apply__fail_result(ap, r, ctx);
        return;
    }
    switch (e->kind) {
    case IF_DML: handle_dml_result(ap, e, r); break;
    case IF_TRUNCATE: ap->n.truncates++; break;
    case IF_DDL: free(apply__ddl_context(ap, true)); break;
    case IF_COMMIT: {
        const char *tag = PQcmdStatus(r);
        if (!tag || strcmp(tag, "COMMIT") != 0) {
            apply__fail(ap, "target", "40000", "the target rolled the group's transaction back", "COMMIT");
            return;
        }
        ap->commits_in_flight--;
        if (e->lsn > ap->applied_lsn) ap->applied_lsn = e->lsn;
        ap->applied_commit_ts = pgoutput_timestamp_to_unix_usec(e->commit_ts);
        ap->n.applied_transactions += e->txs;
        /* At most one group commits at a time (the next one's check comes after this result),
         * so the oldest transaction still waiting is the first one of the open group. */
        ap->pending_commit_ts = ap->group != G_NONE ? ap->group_first_ts : 0;
        if (ap->cb.on_commit) ap->cb.on_commit(ap->cb.arg);
        break;
    }
    case IF_ORIGIN_CHECK: {
        /* The new session's origin must hold what the old one made durable (apply__maybe_reconnect
         * waited for that): behind it, the target lost committed transactions meanwhile, and this
         * stream, which skips what it applied, would leave them out. */
        uint64_t lsn = 0;
        if (PQntuples(r) != 1 || PQgetisnull(r, 0, 0) || apply_parse_lsn(PQgetvalue(r, 0, 0), &lsn) < 0 ||
            lsn < ap->durable_lsn) {
            char msg[320], have[32], want[32];
            apply_format_lsn(have, sizeof have, lsn);
            apply_format_lsn(want, sizeof want, ap->durable_lsn);
            snprintf(
                msg, sizeof msg,
                "the replication origin on the target is at %s, behind %s that this stream applied and "
                "made durable: the target lost committed transactions (restarted from an older state, or "
                "failed over to a standby that was behind)",
                have, want);
            apply__fail(ap, "target", "XX000", msg,
                        "taking the replication origin over in a new apply session");
        }
        break;
    }
    case IF_PROGRESS:
        ap->progress_in_flight--;
        if (st == PGRES_TUPLES_OK && PQntuples(r) == 1 && !PQgetisnull(r, 0, 0)) {
            uint64_t lsn;
            if (apply_parse_lsn(PQgetvalue(r, 0, 0), &lsn) == 0 && lsn > ap->durable_lsn) {
                ap->durable_lsn = lsn;
                if (ap->cb.on_commit) ap->cb.on_commit(ap->cb.arg);
            }
        }
        break;
    default: break;
    }
}

void apply__process_results(apply_state *ap) {
    PGconn *pg = ap->c->pg;
    while (!ap->failed) {
        if (PQisBusy(pg)) break;
        PGresult *r = PQgetResult(pg);
        inflight *e = apply__q_front(ap);
        if (!r) {
            if (e && e->got_result && e->kind != IF_SYNC && e->kind != IF_CHECK_SYNC) {
                apply__q_pop(ap);
                continue;
            }
            break;
        }
        if (!e) { /* nothing expected: a protocol surprise */
            PQclear(r);
            apply__fail(ap, "target", "08P01", "unexpected result from the target", NULL);
            break;
        }
        if (PQresultStatus(r) == PGRES_PIPELINE_SYNC) {
            int kind = e->kind;
            PQclear(r);
            apply__q_pop(ap);
            if (kind == IF_CHECK_SYNC && !ap->failed && ap->group == G_CHECKING) {
                if (ap->nconflicts)
                    ap->group = G_WAIT_LUA;
                else
                    apply__group_checked(ap);
            }
            continue;
        }
        e->got_result = true;
        handle_result(ap, e, r);
        PQclear(r);
    }
}

void apply__on_io(tide_conn *c, int events) {
    apply_state *ap = c->op;
    if (ap->failed) {
        conn_watch(c, 0);
        return;
    }
    if (events & UV_WRITABLE) {
        int r = PQflush(c->pg);
        if (r < 0 || PQsocket(c->pg) < 0) {
            apply__fail(ap, "target", "08006", PQerrorMessage(c->pg), "sending statements to the target");
            return;
        }
        ap->want_writable = r == 1;
    }
    if (events & UV_READABLE) {
        if (!PQconsumeInput(c->pg)) {
            apply__fail(ap, "target", "08006", PQerrorMessage(c->pg), "reading results from the target");
            return;
        }
        apply__process_results(ap);
    }
    if (ap->failed) return;
    apply__watch(ap);
    apply__check_stopped(ap);
    apply__maybe_unblock(ap);
    apply__maybe_reconnect(ap);
}
