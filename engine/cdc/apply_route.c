/*
 * apply_route.c — a streamed change of a table whose on.row function routes rows to other tables
 * (on.route; docs/select-and-rename.md). Lua ran the function on the change's new row and says
 * where the row goes; this queues, in the open group (the same target transaction as every other
 * change of its source transaction, committed with the origin's advance), what makes the target
 * match:
 *   insert   into the table itself (as any change of it), or upserted into its destination;
 *   update   the row under its old key deleted from every table it may be in but the one it goes
 *            to, then upserted there under its new key (deleted under the old key there too when
 *            the key changed): a row moves between the tables as its updates route it;
 *   delete   by key from the table itself and from every destination.
 * A route is the source table's relation resolved against an apply_target that writes its
 * columns into the destination (built by tide.cdc.route): it applies like a table with a filter
 * pgtide applies (filter "true", apply_filter.c), so a missing row is never a conflict and an
 * upsert takes unchanged out-of-line values from the row under the old key; when that row is in
 * another table (the update moved it) the task stops, naming REPLICA IDENTITY FULL
 * (apply_result.c), rather than write a row without its value.
 */
#include "cdc/apply_internal.h"

#include <stdio.h>
#include <stdlib.h>

int apply_held_route(apply_state *ap, const pgoutput_tuple *old_tuple, const pgoutput_tuple *new_tuple,
                     int dest) {
    apply_held_change h;
    if (apply__held_rows(ap, "re-reading a change for on.row", old_tuple, new_tuple, &h) < 0) return -1;
    pgoutput_message *m = h.m;
    const relcache_relation *rel = h.rel;
    apply_rel *r = h.r;
    uint64_t lsn = h.lsn;
    const pgoutput_tuple *old = h.old, *row = h.row;
    apply_target *t = r->target;
    if (dest < -1 || dest > t->nroutes) {
        snprintf(ap->errbuf, sizeof ap->errbuf,
                 "on.row routed a row of %s.%s to route %d, which it does not have", t->source_schema,
                 t->source_name, dest);
        apply__fail(ap, "stream", "XX000", ap->errbuf, NULL);
        return -1;
    }
    apply_rel *routes = calloc((size_t) (t->nroutes ? t->nroutes : 1), sizeof *routes);
    if (!routes) abort();
    int resolved = 0;
    for (; resolved < t->nroutes; resolved++) {
        if (apply_rel_resolve(&routes[resolved], rel, t->routes[resolved], NULL, ap->errbuf,
                              sizeof ap->errbuf) < 0) {
            apply__fail(ap, "stream", "0A000", ap->errbuf, "routing a change with on.row");
            break;
        }
    }
    if (ap->failed) {
        for (int k = 0; k < resolved; k++) apply_rel_clear(&routes[k]);
        free(routes);
        return -1;
    }
    uint64_t end = ap->tx_final_lsn;
    const pgoutput_tuple *search = old && old->ncols ? old : row;
    ap->group_changes++;
    ap->n.queued_changes++;
    if (m->type == PGOUTPUT_INSERT) {
        /* An update without old row is an upsert (apply_filter.c: the row under the key is kept
         * or replaced): the destination may hold the row already. */
        if (dest == 0)
            apply__queue_change(ap, r, 'I', NULL, row, lsn, end, 0);
        else if (dest > 0)
            apply__queue_change(ap, &routes[dest - 1], 'U', NULL, row, lsn, end, 0);
    } else {
        /* Gone from every table the row is not going to (all of them for a delete). */
        if (m->type == PGOUTPUT_DELETE || dest != 0)
            apply__queue_change(ap, r, 'D', search, search, lsn, end, 0);
        for (int k = 0; k < t->nroutes && !ap->failed; k++)
            if (m->type == PGOUTPUT_DELETE || dest != k + 1)
                apply__queue_change(ap, &routes[k], 'D', search, search, lsn, end, 0);
        if (m->type == PGOUTPUT_UPDATE && dest >= 0 && !ap->failed)
            apply__queue_change(ap, dest == 0 ? r : &routes[dest - 1], 'U', old, row, lsn, end, 0);
    }
    for (int k = 0; k < resolved; k++) apply_rel_clear(&routes[k]);
    free(routes);
    apply__held_release(ap);
    return ap->failed ? -1 : 0;
}
