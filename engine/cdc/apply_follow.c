/*
 * apply_follow.c — select.rows_follow while streaming: when an update moves a row of a table
 * that other tables follow into its filter (the filtered update inserted it: apply_filter.c
 * returns its key), the rows that follow it — on the source, not yet on the target — must
 * arrive in the same target transaction. The group therefore waits, once its statements have
 * all succeeded and before it commits, for Lua (tide.cdc.follow) to read them from the source
 * and queue their upserts here; then it is checked again and commits, with the origin advance.
 * A crash before that commit loses nothing: the group is replayed, the update moves the row in
 * again, and the rows are read again.
 *
 * Rows leaving the filter need no wait: the filtered update itself deletes the rows that
 * followed them (apply_target.follow_cascade).
 */
#include "cdc/apply_internal.h"

#include <stdlib.h>

struct follow_row {
    apply_target *target;
    char *key;
};

void apply__follow_add(apply_state *ap, apply_target *t, const char *key) {
    if (ap->nfollow == ap->cap_follow) {
        int cap = ap->cap_follow ? ap->cap_follow * 2 : 16;
        struct follow_row *grown = realloc(ap->follow, (size_t) cap * sizeof *grown);
        if (!grown) abort();
        ap->follow = grown;
        ap->cap_follow = cap;
    }
    ap->follow[ap->nfollow].target = t;
    ap->follow[ap->nfollow].key = apply__strdup(key);
    ap->nfollow++;
}

static void clear(apply_state *ap) {
    for (int i = 0; i < ap->nfollow; i++) free(ap->follow[i].key);
    ap->nfollow = 0;
}

void apply__follow_free(apply_state *ap) {
    clear(ap);
    free(ap->follow);
    ap->follow = NULL;
    ap->cap_follow = 0;
}

void apply__group_checked(apply_state *ap) {
    if (ap->nfollow == 0) {
        apply__group_commit(ap);
        return;
    }
    ap->group = G_WAIT_LUA;
    if (ap->cb.on_event) ap->cb.on_event(ap->cb.arg);
}

int apply_follow_row(const apply_state *ap, int i, const char **schema, const char **name, const char **key) {
    if (i < 0 || i >= ap->nfollow) return -1;
    *schema = ap->follow[i].target->source_schema;
    *name = ap->follow[i].target->source_name;
    *key = ap->follow[i].key;
    return 0;
}

void apply_follow_exec(apply_state *ap, const char *sql, int nparams, const char *const *params,
                       const char *context) {
    if (ap->failed) return;
    if (ap->group != G_WAIT_LUA || ap->nfollow == 0) {
        apply__fail(ap, "stream", "XX000", "rows that follow a filter came outside their target transaction",
                    context);
        return;
    }
    apply__ddl_push_context(ap, context ? context : sql);
    ap->group_changes++;
    apply__send_params(ap, IF_DDL, sql, nparams, params);
}

void apply_follow_done(apply_state *ap) {
    if (ap->failed || ap->group != G_WAIT_LUA || ap->nfollow == 0) return;
    clear(ap);
    /* Check the group again: the upserts' results come before this sync's. */
    ap->group = G_CHECKING;
    apply__send_sync(ap, IF_CHECK_SYNC);
}
