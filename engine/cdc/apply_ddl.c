/*
 * apply_ddl.c — DDL replication on the apply side. The task's event trigger on the source emits
 * a transactional logical decoding message for each DDL command on a followed object; apply.c
 * holds it at its place in its transaction (the feed stops there, as for a hooked change) and Lua
 * (tide.cdc.ddl) decides what it means for the target. What Lua decides comes back here: target
 * statements queued in the open group, so they commit with the changes around them and the
 * origin advance or not at all, and map entries added, replaced or removed.
 */
#include "cdc/apply_internal.h"

#include <stdlib.h>
#include <string.h>

int apply_held_ddl(apply_state *ap, const char **content, size_t *len, uint64_t *lsn, uint64_t *commit_lsn,
                   int64_t *commit_ts) {
    if (!ap->held || !ap->held_ddl) return -1;
    if (pgoutput_decode(ap->held, ap->held_len, false, &ap->msg, ap->errbuf, sizeof ap->errbuf) != 0 ||
        ap->msg.type != PGOUTPUT_LOGICAL_MESSAGE)
        return -1;
    *content = (const char *) ap->msg.logical_message.content;
    *len = ap->msg.logical_message.content_len;
    *lsn = ap->held_lsn;
    *commit_lsn = ap->tx_final_lsn;
    *commit_ts = pgoutput_timestamp_to_unix_usec(ap->tx_commit_ts);
    return 0;
}

void apply__ddl_push_context(apply_state *ap, const char *context) {
    if (ap->ddl_ctx_count == ap->ddl_ctx_cap) {
        size_t cap = ap->ddl_ctx_cap ? ap->ddl_ctx_cap * 2 : 16;
        char **grown = malloc(cap * sizeof *grown);
        if (!grown) abort();
        for (size_t i = 0; i < ap->ddl_ctx_count; i++)
            grown[i] = ap->ddl_ctx[(ap->ddl_ctx_head + i) % ap->ddl_ctx_cap];
        free(ap->ddl_ctx);
        ap->ddl_ctx = grown;
        ap->ddl_ctx_cap = cap;
        ap->ddl_ctx_head = 0;
    }
    ap->ddl_ctx[(ap->ddl_ctx_head + ap->ddl_ctx_count) % ap->ddl_ctx_cap] = apply__strdup(context);
    ap->ddl_ctx_count++;
}

void apply_ddl_exec(apply_state *ap, const char *sql, const char *context) {
    if (ap->failed || ap->group != G_OPEN) {
        if (!ap->failed)
            apply__fail(ap, "stream", "XX000", "a DDL statement came outside a target transaction", context);
        return;
    }
    apply__ddl_push_context(ap, context ? context : sql);
    ap->n.ddl_statements++;
    ap->group_changes++;
    apply__send_plain(ap, IF_DDL, sql);
}

char *apply__ddl_context(apply_state *ap, bool pop) {
    if (!ap->ddl_ctx_count) return NULL;
    char *c = ap->ddl_ctx[ap->ddl_ctx_head];
    if (pop) {
        ap->ddl_ctx_head = (ap->ddl_ctx_head + 1) % ap->ddl_ctx_cap;
        ap->ddl_ctx_count--;
    }
    return c;
}

void apply__ddl_free(apply_state *ap) {
    while (ap->ddl_ctx_count) free(apply__ddl_context(ap, true));
    free(ap->ddl_ctx);
    ap->ddl_ctx = NULL;
    for (int i = 0; i < ap->nretired; i++) apply_target_free(ap->retired[i]);
    free(ap->retired);
    ap->retired = NULL;
    ap->nretired = 0;
    free(ap->opt.ddl_prefix);
    ap->opt.ddl_prefix = NULL;
}

static void retire(apply_state *ap, apply_target *old) {
    /* Resolutions that point at it are rebuilt at their next use. */
    for (size_t i = 0; i < ap->rels_cap; i++) {
        apply_rel *r = ap->rels ? ap->rels[i] : NULL;
        if (!r || r->target != old) continue;
        apply__merge_forget(ap, r); /* sends what it holds (nothing: flushed at the hold) */
        r->version = UINT64_MAX;
    }
    if (ap->nretired == ap->cap_retired) {
        ap->cap_retired = ap->cap_retired ? ap->cap_retired * 2 : 8;
        ap->retired = realloc(ap->retired, (size_t) ap->cap_retired * sizeof *ap->retired);
        if (!ap->retired) abort();
    }
    ap->retired[ap->nretired++] = old;
}

void apply_set_target(apply_state *ap, apply_target *t, const char *old_schema, const char *old_name) {
    ap->names_built = false; /* the name tables follow the list (apply_rels.c) */
    if (!old_schema && t) {
        old_schema = t->source_schema;
        old_name = t->source_name;
    }
    int at = -1;
    for (int i = 0; old_schema && i < ap->opt.ntargets; i++) {
        apply_target *e = ap->opt.targets[i];
        if (strcmp(e->source_schema, old_schema) == 0 && strcmp(e->source_name, old_name) == 0) at = i;
    }
    if (at >= 0) {
        retire(ap, ap->opt.targets[at]);
        if (t) {
            ap->opt.targets[at] = t;
            return;
        }
        ap->opt.targets[at] = ap->opt.targets[--ap->opt.ntargets];
        return;
    }
    if (!t) return;
    /* A new entry may take the name of one that another entry held before (a table renamed
     * away and another created under its name): the newest wins. */
    for (int i = 0; i < ap->opt.ntargets; i++) {
        apply_target *e = ap->opt.targets[i];
        if (strcmp(e->source_schema, t->source_schema) == 0 && strcmp(e->source_name, t->source_name) == 0) {
            retire(ap, e);
            ap->opt.targets[i] = t;
            return;
        }
    }
    apply_target **grown = realloc(ap->opt.targets, (size_t) (ap->opt.ntargets + 1) * sizeof *grown);
    if (!grown) abort();
    ap->opt.targets = grown;
    ap->opt.targets[ap->opt.ntargets++] = t;
}

void apply_ddl_commit_after(apply_state *ap) {
    /* The group closes at the commit of this source transaction, as if it were full. */
    if (ap->group_changes < (uint32_t) ap->opt.group_changes)
        ap->group_changes = (uint32_t) ap->opt.group_changes;
}

void apply_ddl_done(apply_state *ap, bool applied) {
    if (!ap->held || !ap->held_ddl) return;
    if (applied)
        ap->n.ddl_applied++;
    else
        ap->n.ddl_skipped++;
    apply__held_release(ap);
}
