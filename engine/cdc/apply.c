/*
 * apply.c — the target side of incremental migration: decoded changes become pipelined,
 * prepared statements on one target connection, grouped into target transactions that also
 * advance the replication origin (see apply.h for the group life cycle).
 *
 * Why a group is checked before it commits: an UPDATE or DELETE that finds no row is not an
 * error for the server, only "0 rows". Under the default conflict policy that must stop the
 * task before the transaction commits, so COMMIT is sent only after the results of every
 * statement of the group were seen. The price is one round trip per group, not per change;
 * while a group commits, the next one already streams behind it in the pipeline.
 *
 * Memory stays bounded whatever the size of a source transaction: changes are applied as they
 * arrive (the server spills big transactions itself; we never buffer one), and feeding stops
 * while MAX_INFLIGHT statements wait for results or the socket does not take more.
 */
#include "cdc/apply_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- small helpers */

double apply__now(void) { return tide_monotonic(); }

char *apply__strdup(const char *s) { return s ? strdup(s) : NULL; }

inflight *apply__q_push(apply_state *ap, int kind) {
    if (ap->q_count == ap->q_cap) {
        size_t cap = ap->q_cap ? ap->q_cap * 2 : 1024;
        inflight *grown = malloc(cap * sizeof *grown);
        if (!grown) abort();
        for (size_t i = 0; i < ap->q_count; i++) grown[i] = ap->q[(ap->q_head + i) % ap->q_cap];
        free(ap->q);
        ap->q = grown;
        ap->q_cap = cap;
        ap->q_head = 0;
    }
    inflight *e = &ap->q[(ap->q_head + ap->q_count) % ap->q_cap];
    memset(e, 0, offsetof(inflight, key) + 1);
    e->kind = (uint8_t) kind;
    ap->q_count++;
    return e;
}

inflight *apply__q_front(apply_state *ap) { return ap->q_count ? &ap->q[ap->q_head] : NULL; }

void apply__q_pop(apply_state *ap) {
    inflight *e = &ap->q[ap->q_head];
    free(e->each);
    e->each = NULL;
    ap->q_head = (ap->q_head + 1) % ap->q_cap;
    ap->q_count--;
}

void apply__watch(apply_state *ap) {
    if (!ap->started || !ap->c->pg || ap->failed) return;
    conn_watch(ap->c, UV_READABLE | (ap->want_writable ? UV_WRITABLE : 0));
}

void apply__flush(apply_state *ap) {
    ap->since_flush = 0;
    int r = PQflush(ap->c->pg);
    if (r < 0 || PQsocket(ap->c->pg) < 0) { /* libpq may drop a dead socket while flushing */
        apply__fail(ap, "target", "08006", PQerrorMessage(ap->c->pg), "sending statements to the target");
        return;
    }
    ap->want_writable = r == 1;
    apply__watch(ap);
}

void apply__sent(apply_state *ap, int ok, const char *what) {
    if (!ok)
        apply__fail(ap, "target", "08006", PQerrorMessage(ap->c->pg), what);
    else if (++ap->since_flush >= FLUSH_EVERY)
        apply__flush(ap);
}

/* ---------------------------------------------------------------- statements */

static void send_prepared(apply_state *ap, int id, int nparams, const char *const *params) {
    char name[24];
    apply_stmt_name(name, id);
    apply__sent(ap, PQsendQueryPrepared(ap->c->pg, name, nparams, params, NULL, NULL, 0), "sending a change");
}

static void send_plain(apply_state *ap, int kind, const char *sql) {
    apply__q_push(ap, kind);
    apply__sent(ap, PQsendQueryParams(ap->c->pg, sql, 0, NULL, NULL, NULL, NULL, 0), sql);
}

void apply__send_plain(apply_state *ap, int kind, const char *sql) { send_plain(ap, kind, sql); }

void apply__send_params(apply_state *ap, int kind, const char *sql, int nparams, const char *const *params) {
    apply__q_push(ap, kind);
    apply__sent(ap, PQsendQueryParams(ap->c->pg, sql, nparams, NULL, params, NULL, NULL, 0), sql);
}

static void send_sync(apply_state *ap, int kind) {
    apply__q_push(ap, kind);
    if (!PQpipelineSync(ap->c->pg))
        apply__fail(ap, "target", "08006", PQerrorMessage(ap->c->pg), "sync");
    else
        apply__flush(ap);
}

void apply__send_sync(apply_state *ap, int kind) { send_sync(ap, kind); }

/* ---------------------------------------------------------------- groups */

void apply__progress_send(apply_state *ap) {
    send_plain(ap, IF_PROGRESS, "SELECT pg_catalog.pg_replication_origin_session_progress(true)");
    ap->progress_in_flight++;
    ap->last_progress = apply__now();
}

static void group_open(apply_state *ap) {
    send_plain(ap, IF_BEGIN, "BEGIN");
    ap->group = G_OPEN;
    ap->group_started = apply__now();
    ap->group_changes = ap->group_txs = 0;
}

static void group_close(apply_state *ap) {
    if (ap->group != G_OPEN || ap->in_tx || ap->failed) return;
    apply__merge_flush_all(ap);
    ap->group = G_CHECKING;
    send_sync(ap, IF_CHECK_SYNC);
}

void apply__group_commit(apply_state *ap) {
    char lsn[32], ts[32];
    apply_format_lsn(lsn, sizeof lsn, ap->group_end_lsn);
    snprintf(ts, sizeof ts, "%lld", (long long) pgoutput_timestamp_to_unix_usec(ap->group_commit_ts));
    const char *params[2] = { lsn, ts };
    if (ap->cb.before_commit) ap->cb.before_commit(ap->cb.arg, ap, ap->group_end_lsn, ap->group_txs);
    apply__q_push(ap, IF_SETUP);
    apply__sent(ap, PQsendQueryPrepared(ap->c->pg, "pgtide_origin_setup", 2, params, NULL, NULL, 0),
                "recording the origin position");
    inflight *e = apply__q_push(ap, IF_COMMIT);
    e->lsn = ap->group_end_lsn;
    e->commit_ts = ap->group_commit_ts;
    e->changes = ap->group_changes;
    e->txs = ap->group_txs;
    apply__sent(ap, PQsendQueryParams(ap->c->pg, "COMMIT", 0, NULL, NULL, NULL, NULL, 0), "COMMIT");
    ap->commits_in_flight++;
    ap->n.groups++;
    ap->last_group = apply__now();
    if (ap->stop_requested || apply__now() - ap->last_progress >= PROGRESS_EVERY) apply__progress_send(ap);
    send_sync(ap, IF_SYNC);
    ap->group = G_NONE;
    /* A source transaction that began while this group was being checked (the group was closed
     * between transactions by its age or a burst end, and the Begin came before the feed
     * stopped): it gets the next group, opened before any of its changes is queued. */
    if (ap->in_tx && !ap->skip_tx) {
        group_open(ap);
        ap->group_first_ts = pgoutput_timestamp_to_unix_usec(ap->tx_commit_ts);
        if (!ap->pending_commit_ts) ap->pending_commit_ts = ap->group_first_ts;
    }
}

/* ---------------------------------------------------------------- flow control */

static bool should_block(const apply_state *ap) {
    return ap->failed || ap->held || ap->reconnecting || ap->group == G_CHECKING || ap->group == G_WAIT_LUA ||
           ap->q_count >= MAX_INFLIGHT || ap->want_writable ||
           ((ap->paused || ap->stop_requested || ap->reconnect_due) && !ap->in_tx);
}

bool apply_blocked(const apply_state *ap) { return should_block(ap); }

void apply__maybe_unblock(apply_state *ap) {
    if (!ap->feeding_blocked || ap->failed) return;
    if (ap->q_count >= RESUME_INFLIGHT && ap->q_count >= MAX_INFLIGHT / 2) return;
    if (should_block(ap)) return;
    ap->feeding_blocked = false;
    if (ap->cb.on_unblock) ap->cb.on_unblock(ap->cb.arg);
}

static apply_feed_result feed_result(apply_state *ap) {
    if (ap->failed) return APPLY_FAILED;
    if (should_block(ap)) {
        ap->feeding_blocked = true;
        return APPLY_BLOCKED;
    }
    return APPLY_CONTINUE;
}

void apply__check_stopped(apply_state *ap) {
    if (!ap->stop_requested || ap->stopped || ap->failed || ap->in_tx || ap->reconnecting) return;
    if (ap->group == G_OPEN) {
        group_close(ap);
        return;
    }
    if (ap->group != G_NONE || ap->commits_in_flight) return;
    if (ap->durable_lsn < ap->applied_lsn) {
        if (!ap->progress_in_flight) {
            apply__progress_send(ap);
            send_sync(ap, IF_SYNC);
        }
        return;
    }
    if (ap->q_count) return;
    ap->stopped = true;
    if (ap->cb.on_event) ap->cb.on_event(ap->cb.arg);
}

/* ---------------------------------------------------------------- changes */

static bool same_value(const pgoutput_value *a, const pgoutput_value *b) {
    return a->kind == b->kind && a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

static bool key_changed(const apply_rel *r, const pgoutput_tuple *old, const pgoutput_tuple *row) {
    for (int i = 0; i < r->ncols; i++)
        if (r->match[i] && old->values[i].kind != PGOUTPUT_VALUE_UNCHANGED_TOAST &&
            row->values[i].kind != PGOUTPUT_VALUE_UNCHANGED_TOAST &&
            !same_value(&old->values[i], &row->values[i]))
            return true;
    return false;
}

/* Queue one change's statement (`sql`, prepared the first time) and what its result needs. */
static inflight *queue_stmt(apply_state *ap, apply_rel *r, int op, apply_form form, uint64_t lsn,
                            uint64_t commit_lsn, const pgoutput_tuple *keyed, uint32_t merged,
                            const char *sql, int nparams, const char *const *params) {
    int id = apply__stmt_lookup(ap, sql, nparams);
    inflight *e = apply__q_push(ap, IF_DML);
    e->op = (uint8_t) op;
    e->form = (uint8_t) form;
    e->target = r->target;
    e->lsn = lsn;
    e->commit_lsn = commit_lsn;
    e->tolerant = commit_lsn && commit_lsn <= r->target->tolerate_lsn;
    e->changes = merged;
    apply_sql_key_text(e->key, sizeof e->key, r, keyed);
    send_prepared(ap, id, nparams, params);
    return e;
}

static inflight *queue_dml(apply_state *ap, apply_rel *r, int op, apply_form form, uint64_t lsn,
                           uint64_t commit_lsn, const pgoutput_tuple *keyed, uint32_t merged) {
    return queue_stmt(ap, r, op, form, lsn, commit_lsn, keyed, merged, ap->st.sql.data, ap->st.nparams,
                      apply_stmt_params(&ap->st));
}

void apply__queue_rows(apply_state *ap, apply_rel *r, const char *sql, int nparams, const char *const *params,
                       uint32_t rows, uint64_t lsn, uint64_t last_lsn, uint64_t commit_lsn,
                       const pgoutput_tuple *keyed) {
    /* the rows after the first count as applied with the statement, like folded updates */
    inflight *e =
        queue_stmt(ap, r, 'I', APPLY_FORM_INSERT, lsn, commit_lsn, keyed, rows - 1, sql, nparams, params);
    e->last_lsn = last_lsn;
    e->rows = rows;
}

void apply__queue_update_rows(apply_state *ap, apply_rel *r, const char *sql, int nparams,
                              const char *const *params, uint32_t rows, uint32_t merged,
                              update_row_info *each, const pgoutput_tuple *keyed) {
    uint64_t first = each[0].lsn, last = each[0].lsn, commit = each[0].commit_lsn;
    for (uint32_t i = 1; i < rows; i++) {
        if (each[i].lsn < first) first = each[i].lsn;
        if (each[i].lsn > last) last = each[i].lsn;
        if (each[i].commit_lsn > commit) commit = each[i].commit_lsn;
    }
    inflight *e =
        queue_stmt(ap, r, 'U', APPLY_FORM_UPDATE_ROWS, first, commit, keyed, merged, sql, nparams, params);
    e->last_lsn = last;
    e->rows = rows;
    e->each = each;
}

/* A change of a table whose row filter pgtide applies (apply_filter.c); deletes take the plain
 * path. Updates are never conflicts here: the row may be one the filter left out. */
static void queue_filtered(apply_state *ap, apply_rel *r, int op, const pgoutput_tuple *old,
                           const pgoutput_tuple *row, uint64_t lsn, uint64_t commit_lsn, uint32_t merged,
                           bool hookish, bool overwrite, bool tolerant) {
    const relcache_relation *rel = relcache_get(ap->cache, r->relid);
    if (!rel || rel->ncols != r->ncols) {
        apply__fail(ap, "stream", "08P01", "a change arrived without its Relation message", NULL);
        return;
    }
    if (op == 'I') {
        apply_form form = overwrite || (tolerant && r->by_key)                     ? APPLY_FORM_UPSERT
                          : (ap->opt.conflict == APPLY_CONFLICT_ERROR && !hookish) ? APPLY_FORM_INSERT
                                                                                   : APPLY_FORM_INSERT_IGNORE;
        apply_sql_filtered_insert(&ap->st, r, rel, row, form);
    } else {
        char err[512];
        bool changed = old && old->ncols && key_changed(r, old, row);
        if (apply_sql_filtered_update(&ap->st, r, rel, old, row, changed, err, sizeof err) < 0) {
            char ctx[256];
            snprintf(ctx, sizeof ctx, "applying a change of %s.%s", r->target->source_schema,
                     r->target->source_name);
            apply__fail(ap, "stream", "0A000", err, ctx);
            return;
        }
    }
    queue_dml(ap, r, op, APPLY_FORM_FILTERED, lsn, commit_lsn, old && old->ncols ? old : row, merged);
}

void apply__queue_change(apply_state *ap, apply_rel *r, int op, const pgoutput_tuple *old,
                         const pgoutput_tuple *row, uint64_t lsn, uint64_t commit_lsn, uint32_t merged) {
    char err[512];
    bool hookish = ap->opt.conflict_hook && ap->opt.conflict != APPLY_CONFLICT_OVERWRITE;
    bool overwrite = ap->opt.conflict == APPLY_CONFLICT_OVERWRITE && r->by_key;
    /* Before a table's tolerated position (see apply_target.tolerate_lsn) an insert may meet a
     * row the stream's later TRUNCATE removes anyway: never a failed statement. */
    bool tolerant = commit_lsn && commit_lsn <= r->target->tolerate_lsn;
    if (r->target->filter && op != 'D') {
        queue_filtered(ap, r, op, old, row, lsn, commit_lsn, merged, hookish, overwrite, tolerant);
        return;
    }
    if (op == 'I') {
        apply_form form = overwrite || (tolerant && r->by_key)                     ? APPLY_FORM_UPSERT
                          : tolerant                                               ? APPLY_FORM_INSERT_IGNORE
                          : (ap->opt.conflict == APPLY_CONFLICT_ERROR && !hookish) ? APPLY_FORM_INSERT
                                                                                   : APPLY_FORM_INSERT_IGNORE;
        apply_sql_insert(&ap->st, r, row, form);
        queue_dml(ap, r, op, form, lsn, commit_lsn, row, merged);
        return;
    }
    const pgoutput_tuple *search = old && old->ncols ? old : row;
    if (op == 'U' && overwrite) {
        /* Upsert the new row; when the key changed, first remove the row under the old key. */
        if (old && old->ncols && key_changed(r, old, row)) {
            if (apply_sql_delete(&ap->st, r, old, err, sizeof err) < 0) {
                apply__fail(ap, "stream", "0A000", err, NULL);
                return;
            }
            inflight *e = queue_dml(ap, r, 'D', APPLY_FORM_DELETE, lsn, commit_lsn, old, 0);
            e->op = 0; /* a missing old row is fine here */
        }
        if (apply_sql_insert(&ap->st, r, row, APPLY_FORM_UPSERT) > 0) {
            queue_dml(ap, r, 'U', APPLY_FORM_UPSERT, lsn, commit_lsn, row, merged);
            return;
        }
    }
    int rc = op == 'U' ? apply_sql_update(&ap->st, r, search, row, old && old->ncols, err, sizeof err)
                       : apply_sql_delete(&ap->st, r, search, err, sizeof err);
    if (rc < 0) {
        char ctx[256];
        snprintf(ctx, sizeof ctx, "applying a change of %s.%s", r->target->source_schema,
                 r->target->source_name);
        apply__fail(ap, "stream", "0A000", err, ctx);
        return;
    }
    /* only unchanged values */
    if (rc == 0) {
        ap->n.applied_changes += 1 + merged;
        return;
    }
    queue_dml(ap, r, op, op == 'U' ? APPLY_FORM_UPDATE : APPLY_FORM_DELETE, lsn, commit_lsn, search, merged);
}

static void queue_truncate(apply_state *ap, const pgoutput_truncate *t) {
    apply_buf sql = { 0 };
    apply__merge_flush_all(ap);
    int k = 0;
    for (uint32_t i = 0; i < t->nrels; i++) {
        const relcache_relation *rel;
        apply_rel *r = apply__rel_get(ap, t->relids[i], &rel);
        if (!r) {
            apply_buf_free(&sql);
            return;
        }
        if (r->target->heartbeat || r->target->ignored) continue;
        /* The table was truncated after the full load's snapshot: from this TRUNCATE on the
         * target holds what the source holds, and missing rows are conflicts again. */
        r->target->tolerate_lsn = 0;
        apply_buf_adds(&sql, k++ ? ", " : "TRUNCATE TABLE ");
        if (!r->target->partitioned) apply_buf_adds(&sql, "ONLY ");
        apply_buf_adds(&sql, r->target->target_sql);
    }
    if (k) {
        /* CASCADE is not followed: the source sent every table it truncated. */
        if (t->options & PGOUTPUT_TRUNCATE_RESTART_IDENTITY) apply_buf_adds(&sql, " RESTART IDENTITY");
        ap->group_changes++;
        send_plain(ap, IF_TRUNCATE, sql.data);
    }
    apply_buf_free(&sql);
}

/* How long a group may stay open. Catching up a backlog, long groups are what make apply fast
 * (fewer commits, hot rows folded); once caught up — the last transaction committed on the
 * source less than a second ago — every millisecond a group stays open is delay, so it closes
 * after group_live_seconds. Measured on the source's clock (apply_caught_up). */
static double group_limit(const apply_state *ap) {
    double limit = ap->opt.group_seconds;
    if (ap->opt.group_live_seconds <= 0 || ap->opt.group_live_seconds >= limit || !ap->group_commit_ts)
        return limit;
    return apply_caught_up(ap->group_commit_ts, ap->source_now) ? ap->opt.group_live_seconds : limit;
}

static void hold_change(apply_state *ap, uint64_t lsn, const uint8_t *payload, size_t len) {
    apply__merge_flush_all(ap); /* the hook may route the change to any table */
    ap->held = malloc(len ? len : 1);
    if (!ap->held) abort();
    memcpy(ap->held, payload, len);
    ap->held_len = len;
    ap->held_lsn = lsn;
    ap->n.hooked_changes++;
    if (ap->cb.on_event) ap->cb.on_event(ap->cb.arg);
}

apply_feed_result apply_feed(apply_state *ap, uint64_t lsn, const uint8_t *payload, size_t len) {
    if (ap->failed) return APPLY_FAILED;
    if (!ap->started) { /* released (apply__maybe_reconnect waits for a blocked feed): a bug */
        apply__fail(ap, "stream", "XX000", "a change reached apply while its target connection was released",
                    NULL);
        return APPLY_FAILED;
    }
    pgoutput_message *m = &ap->msg;
    if (pgoutput_decode(payload, len, false, m, ap->errbuf, sizeof ap->errbuf) != 0) {
        apply__fail(ap, "stream", "08P01", ap->errbuf, "decoding a pgoutput message");
        return APPLY_FAILED;
    }
    switch (m->type) {
    case PGOUTPUT_BEGIN:
        ap->in_tx = true;
        ap->tx_final_lsn = m->begin.final_lsn;
        ap->tx_commit_ts = m->begin.commit_ts;
        ap->n.received_transactions++;
        ap->skip_tx = m->begin.final_lsn < ap->skip_below;
        if (ap->skip_tx) {
            ap->n.skipped_transactions++;
            break;
        }
        if (ap->group == G_NONE) {
            group_open(ap);
            ap->group_first_ts = pgoutput_timestamp_to_unix_usec(m->begin.commit_ts);
        }
        if (!ap->pending_commit_ts) ap->pending_commit_ts = ap->group_first_ts;
        break;
    case PGOUTPUT_COMMIT:
        if (!ap->in_tx) {
            apply__fail(ap, "stream", "08P01", "a Commit arrived outside a transaction", NULL);
            break;
        }
        ap->in_tx = false;
        if (ap->skip_tx) {
            ap->skip_tx = false;
            if (ap->skip_origin_tx) {
                /* Not applied on purpose, but passed: the group's origin position moves past it. */
                ap->skip_origin_tx = false;
                ap->group_end_lsn = m->commit.end_lsn;
                ap->group_commit_ts = m->commit.commit_ts;
                ap->queued_lsn = ap->skip_below = m->commit.end_lsn;
            }
            break;
        }
        ap->group_end_lsn = m->commit.end_lsn;
        ap->group_commit_ts = m->commit.commit_ts;
        ap->group_txs++;
        ap->queued_lsn = ap->skip_below = m->commit.end_lsn;
        if (ap->group_changes >= (uint32_t) ap->opt.group_changes || ap->paused || ap->stop_requested ||
            ap->reconnect_due || apply__now() - ap->group_started >= group_limit(ap))
            group_close(ap);
        break;
    case PGOUTPUT_RELATION:
        if (relcache_put(ap->cache, &m->relation, ap->errbuf, sizeof ap->errbuf) != 0) {
            apply__fail(ap, "stream", "53200", ap->errbuf, NULL);
            break;
        }
        {
            /* Resolve now, so a column change stops the stream at its Relation message. With
             * publish_via_partition_root the leaves are described too, though their changes
             * come under the root: a relation outside the map only fails when a change needs it. */
            const relcache_relation *rel = relcache_get(ap->cache, m->relation.relid);
            if (rel && !ap->opt.lazy_relations && apply__find_target(ap, rel->schema, rel->name))
                apply__rel_get(ap, m->relation.relid, &rel);
        }
        break;
    case PGOUTPUT_TYPE:
        if (relcache_put_type(ap->cache, &m->data_type, ap->errbuf, sizeof ap->errbuf) != 0)
            apply__fail(ap, "stream", "53200", ap->errbuf, NULL);
        break;
    case PGOUTPUT_ORIGIN:
        /* Sent after Begin when the source replayed the transaction under an origin. */
        if (ap->in_tx && !ap->skip_tx) {
            for (int i = 0; i < ap->opt.nskip_origins; i++) {
                const char *want = ap->opt.skip_origins[i];
                if (m->origin.name.len == strlen(want) &&
                    memcmp(m->origin.name.data, want, m->origin.name.len) == 0) {
                    ap->skip_tx = ap->skip_origin_tx = true;
                    ap->n.origin_skipped++;
                    break;
                }
            }
        }
        break;
    case PGOUTPUT_LOGICAL_MESSAGE:
        /* The task's DDL messages (its event trigger's), transactional: applied at their place. */
        if (ap->opt.ddl_prefix && ap->in_tx && !ap->skip_tx && m->logical_message.transactional &&
            m->logical_message.prefix.len == strlen(ap->opt.ddl_prefix) &&
            memcmp(m->logical_message.prefix.data, ap->opt.ddl_prefix, m->logical_message.prefix.len) == 0) {
            ap->held_ddl = true;
            hold_change(ap, lsn, payload, len);
            ap->n.hooked_changes--;
        }
        break;
    case PGOUTPUT_INSERT:
    case PGOUTPUT_UPDATE:
    case PGOUTPUT_DELETE: {
        if (!ap->in_tx) {
            apply__fail(ap, "stream", "08P01", "a change arrived outside a transaction", NULL);
            break;
        }
        if (ap->skip_tx) break;
        uint32_t relid = m->type == PGOUTPUT_INSERT   ? m->insert.relid
                         : m->type == PGOUTPUT_UPDATE ? m->update.relid
                                                      : m->delete.relid;
        const relcache_relation *rel;
        apply_rel *r = apply__rel_get(ap, relid, &rel);
        if (!r) break;
        if (r->target->heartbeat) {
            ap->n.heartbeats++;
            break;
        }
        if (r->target->ignored) break;
        if (r->target->hooked) {
            hold_change(ap, lsn, payload, len);
            break;
        }
        const pgoutput_tuple *old = NULL, *row = NULL;
        if (m->type == PGOUTPUT_INSERT)
            row = &m->insert.new_tuple;
        else if (m->type == PGOUTPUT_UPDATE) {
            old = &m->update.old_tuple;
            row = &m->update.new_tuple;
        } else
            old = &m->delete.old_tuple;
        if ((row && relcache_check_tuple(rel, row, "new tuple", ap->errbuf, sizeof ap->errbuf) != 0) ||
            (old && old->ncols &&
             relcache_check_tuple(rel, old, "old tuple", ap->errbuf, sizeof ap->errbuf) != 0)) {
            apply__fail(ap, "stream", "08P01", ap->errbuf, NULL);
            break;
        }
        ap->group_changes++;
        ap->n.queued_changes++;
        if (m->type == PGOUTPUT_UPDATE && r->target->mergeable &&
            (!old->ncols || !key_changed(r, old, row)) && apply__merge_update(ap, r, row, lsn))
            break;
        if (m->type == PGOUTPUT_INSERT && apply__batch_insert(ap, r, row, lsn)) break;
        if (r->merge) apply__merge_flush_rel(ap, r); /* what the table holds goes first */
        apply__queue_change(ap, r, m->type, old, row ? row : old, lsn, ap->tx_final_lsn, 0);
        break;
    }
    case PGOUTPUT_TRUNCATE:
        if (ap->skip_tx) break;
        queue_truncate(ap, &m->truncate);
        break;
    default:
        snprintf(ap->errbuf, sizeof ap->errbuf,
                 "unexpected %s message: pgtide does not ask for "
                 "streamed or two-phase transactions",
                 pgoutput_message_type_name(m->type));
        apply__fail(ap, "stream", "08P01", ap->errbuf, NULL);
        break;
    }
    return feed_result(ap);
}

bool apply_caught_up(int64_t commit_ts, int64_t source_now) {
    int64_t now = source_now > 0 ? source_now : (int64_t) (tide_now() * 1e6);
    return commit_ts && now - pgoutput_timestamp_to_unix_usec(commit_ts) < 1000000;
}

void apply_source_time(apply_state *ap, int64_t source_now) {
    if (source_now > 0) ap->source_now = source_now;
}

/* Catching up a backlog, the stream's bursts end whenever the walsender falls behind for a
 * moment (it decodes slower than a target applies folded changes in bursts): closing the group
 * then would make groups of a few hundred transactions, with fewer updates folded and a check
 * and commit each. Behind, a group closes at its size or age (group_limit, the tick); caught
 * up, at once, so that the delay stays low. The age is read on the source's clock when the
 * stream gives it, so that a source clock behind ours does not hold every group. */
apply_feed_result apply_burst_end(apply_state *ap, int64_t source_now) {
    if (ap->failed) return APPLY_FAILED;
    apply_source_time(ap, source_now);
    if (ap->group == G_OPEN && !ap->in_tx &&
        (source_now < 0 || apply_caught_up(ap->group_commit_ts, source_now)))
        group_close(ap);
    if (ap->since_flush) apply__flush(ap);
    return feed_result(ap);
}

/* ---------------------------------------------------------------- life cycle */

apply_state *apply_create(tide_conn *target, const apply_options *opts, const apply_callbacks *cb) {
    apply_state *ap = calloc(1, sizeof *ap);
    if (!ap) abort();
    ap->c = target;
    ap->opt = *opts;
    ap->cb = *cb;
    if (ap->opt.group_changes <= 0) ap->opt.group_changes = 10000;
    if (ap->opt.group_seconds <= 0) ap->opt.group_seconds = 0.1;
    ap->cache = relcache_create();
    if (!ap->cache) abort();
    pgoutput_message_init(&ap->msg);
    ap->skip_below = ap->opt.start_lsn;
    ap->queued_lsn = ap->applied_lsn = ap->durable_lsn = ap->opt.start_lsn;
    return ap;
}

int apply_start(apply_state *ap) {
    tide_conn *c = ap->c;
    conn_reset_outcome(c);
    if (!PQenterPipelineMode(c->pg)) {
        apply__fail(ap, "target", "08000", PQerrorMessage(c->pg), "entering pipeline mode on the target");
        return -1;
    }
    c->busy = true;
    c->op = ap;
    c->on_io = apply__on_io;
    ap->started = true;
    /* The statement that records each group's origin position and makes sure the group's
     * transaction has an xid (without one, COMMIT writes no record and the origin would not
     * move for a group that only carried heartbeats). */
    const char *xid =
        ap->opt.server_version >= 130000 ? "pg_catalog.pg_current_xact_id()" : "pg_catalog.txid_current()";
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT pg_catalog.pg_replication_origin_xact_setup($1::pg_lsn, "
             "pg_catalog.to_timestamp($2::float8 / 1000000)), %s",
             xid);
    apply__q_push(ap, IF_PREPARE);
    apply__sent(ap, PQsendPrepare(c->pg, "pgtide_origin_setup", sql, 0, NULL),
                "preparing the origin statement");
    send_sync(ap, IF_SYNC);
    return ap->failed ? -1 : 0;
}

void apply_tick(apply_state *ap, uint64_t keepalive_lsn) {
    if (ap->failed || !ap->started) return;
    /* Idle for a while and the server has decoded past our last transaction (WAL of other
     * tables or databases): record that position, so the slot can release that WAL. Safe
     * because everything received before the keepalive has been applied. */
    bool idle = !ap->in_tx && ap->group == G_NONE && ap->commits_in_flight == 0 && !ap->held &&
                !ap->nconflicts && !ap->stop_requested;
    if (idle && keepalive_lsn > ap->applied_lsn && keepalive_lsn > ap->queued_lsn &&
        apply__now() - ap->last_group >= 1.0) {
        group_open(ap);
        ap->group_end_lsn = ap->queued_lsn = keepalive_lsn;
        if (keepalive_lsn > ap->skip_below) ap->skip_below = keepalive_lsn;
        ap->group_commit_ts = (int64_t) (tide_now() * 1e6) - PGOUTPUT_EPOCH_OFFSET_USEC;
        apply__group_commit(ap);
    }
    if (!ap->progress_in_flight && ap->durable_lsn < ap->applied_lsn && ap->group != G_CHECKING &&
        apply__now() - ap->last_progress >= PROGRESS_EVERY) {
        apply__progress_send(ap);
        send_sync(ap, IF_SYNC);
    }
    /* A group whose source transaction boundary came while no data followed. */
    if (ap->group == G_OPEN && !ap->in_tx &&
        (ap->reconnect_due || apply__now() - ap->group_started >= group_limit(ap)))
        group_close(ap);
    apply__check_stopped(ap);
    apply__maybe_reconnect(ap);
}

void apply_set_paused(apply_state *ap, bool paused) {
    ap->paused = paused;
    if (paused) {
        if (ap->group == G_OPEN && !ap->in_tx) group_close(ap);
    } else {
        apply__maybe_unblock(ap);
    }
}

void apply_request_stop(apply_state *ap) {
    ap->stop_requested = true;
    apply__check_stopped(ap);
}

bool apply_stopped(const apply_state *ap) { return ap->stopped; }

void apply_release(apply_state *ap) {
    tide_conn *c = ap->c;
    if (!ap->started || !c) return;
    ap->started = false;
    if (c->pg && PQpipelineStatus(c->pg) != PQ_PIPELINE_OFF && ap->q_count == 0) PQexitPipelineMode(c->pg);
    if (c->pg) conn_watch(c, 0);
    c->busy = false;
    c->op = NULL;
    c->on_io = NULL;
}

void apply_free(apply_state *ap) {
    if (!ap) return;
    apply_release(ap);
    relcache_destroy(ap->cache);
    pgoutput_message_free(&ap->msg);
    apply_stmt_free(&ap->st);
    for (size_t i = 0; i < ap->rels_cap; i++)
        if (ap->rels[i]) {
            apply__merge_free(ap->rels[i]);
            apply_rel_clear(ap->rels[i]);
            free(ap->rels[i]);
        }
    free(ap->dirty);
    free(ap->rels);
    apply__stmts_free(ap);
    for (size_t i = 0; i < ap->q_count; i++) free(ap->q[(ap->q_head + i) % ap->q_cap].each);
    free(ap->q);
    free(ap->held);
    free(ap->conflicts);
    free(ap->err.message);
    free(ap->err.detail);
    free(ap->err.hint);
    free(ap->err.context);
    apply__ddl_free(ap);
    apply__follow_free(ap);
    for (int i = 0; i < ap->opt.ntargets; i++) apply_target_free(ap->opt.targets[i]);
    free(ap->opt.targets);
    apply__names_free(ap);
    free(ap);
}

/* ---------------------------------------------------------------- figures */

const apply_counters *apply_get_counters(const apply_state *ap) { return &ap->n; }

void apply_get_positions(const apply_state *ap, apply_positions *out) {
    out->queued_lsn = ap->queued_lsn;
    out->applied_lsn = ap->applied_lsn;
    out->durable_lsn = ap->durable_lsn;
    out->applied_commit_ts = ap->applied_commit_ts;
    out->pending_commit_ts = ap->pending_commit_ts;
    out->in_transaction = ap->in_tx;
    out->idle = !ap->in_tx && ap->group == G_NONE && ap->commits_in_flight == 0 && !ap->held;
}

void apply_queue_setup(apply_state *ap, const char *sql, int nparams, const char *const *params) {
    apply__send_params(ap, IF_SETUP, sql, nparams, params);
}

apply_target *apply_target_of_source(apply_state *ap, const char *schema, const char *name) {
    return apply__find_target(ap, schema, name);
}

uint64_t apply_flush_position(const apply_state *ap) {
    /* Never more than the origin holds durably: on restart the origin is where streaming
     * resumes, and a slot confirmed past it would mean lost changes (see apply_tick for how an
     * idle stream still moves forward). */
    return ap->durable_lsn;
}
