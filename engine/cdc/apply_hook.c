/*
 * apply_hook.c — changes held for Lua: a change of a table with an on.change hook (and a
 * conflict under a Lua policy) stops the feed; Lua reads it (apply_held_decode), then drops it
 * or queues it, possibly edited or routed to another table (apply_held_apply). The rest of the
 * apply side is in apply.c; the Lua binding in lua_cdc.c.
 */
#include "cdc/apply_internal.h"

#include <stdlib.h>

apply_event apply_pending_event(const apply_state *ap) {
    if (ap->held) return ap->held_ddl ? APPLY_EVENT_DDL : APPLY_EVENT_CHANGE;
    if (ap->nconflicts) return APPLY_EVENT_CONFLICT;
    if (ap->nfollow && ap->group == G_WAIT_LUA) return APPLY_EVENT_FOLLOW;
    if (ap->reconnecting) return APPLY_EVENT_RECONNECT;
    return APPLY_EVENT_NONE;
}

int apply_held_decode(apply_state *ap, pgoutput_message **msg, const relcache_relation **rel, apply_rel **r,
                      uint64_t *lsn, uint64_t *commit_lsn, int64_t *commit_ts) {
    if (!ap->held || ap->held_ddl) return -1;
    if (pgoutput_decode(ap->held, ap->held_len, false, &ap->msg, ap->errbuf, sizeof ap->errbuf) != 0)
        return -1;
    uint32_t relid = ap->msg.type == PGOUTPUT_INSERT   ? ap->msg.insert.relid
                     : ap->msg.type == PGOUTPUT_UPDATE ? ap->msg.update.relid
                                                       : ap->msg.delete.relid;
    *r = apply__rel_get(ap, relid, rel);
    if (!*r) return -1;
    *msg = &ap->msg;
    *lsn = ap->held_lsn;
    *commit_lsn = ap->tx_final_lsn;
    *commit_ts = pgoutput_timestamp_to_unix_usec(ap->tx_commit_ts);
    return 0;
}

void apply__held_release(apply_state *ap) {
    free(ap->held);
    ap->held = NULL;
    ap->held_len = 0;
    ap->held_ddl = false;
    apply__flush(ap);
    apply__maybe_unblock(ap);
}

void apply_held_drop(apply_state *ap) {
    if (!ap->held || ap->held_ddl) return;
    ap->n.dropped_changes++;
    apply__held_release(ap);
}

int apply__held_rows(apply_state *ap, const char *what, const pgoutput_tuple *old_tuple,
                     const pgoutput_tuple *new_tuple, apply_held_change *out) {
    uint64_t commit_lsn;
    int64_t ts;
    if (apply_held_decode(ap, &out->m, &out->rel, &out->r, &out->lsn, &commit_lsn, &ts) < 0) {
        apply__fail(ap, "stream", "XX000", ap->errbuf, what);
        return -1;
    }
    pgoutput_message *m = out->m;
    out->old = out->row = NULL;
    if (m->type == PGOUTPUT_INSERT)
        out->row = &m->insert.new_tuple;
    else if (m->type == PGOUTPUT_UPDATE) {
        out->old = &m->update.old_tuple;
        out->row = &m->update.new_tuple;
    } else
        out->old = &m->delete.old_tuple;
    if (old_tuple) out->old = old_tuple;
    if (new_tuple) out->row = new_tuple;
    return 0;
}

int apply_held_apply(apply_state *ap, const pgoutput_tuple *old_tuple, const pgoutput_tuple *new_tuple,
                     apply_target *target, bool as_delete) {
    apply_held_change h;
    if (apply__held_rows(ap, "re-reading a change for the on.change hook", old_tuple, new_tuple, &h) < 0)
        return -1;
    pgoutput_message *m = h.m;
    const relcache_relation *rel = h.rel;
    apply_rel *r = h.r;
    uint64_t lsn = h.lsn;
    const pgoutput_tuple *old = h.old, *row = h.row;
    apply_rel routed;
    bool reroute = target && target != r->target;
    if (reroute) {
        if (apply_rel_resolve(&routed, rel, target, NULL, ap->errbuf, sizeof ap->errbuf) < 0) {
            apply__fail(ap, "stream", "0A000", ap->errbuf, "routing a change from the on.change hook");
            return -1;
        }
        r = &routed;
    }
    ap->group_changes++;
    ap->n.queued_changes++;
    if (as_delete && m->type == PGOUTPUT_UPDATE) {
        /* An update whose new row on.row dropped: the row goes, found by its old key (or by the
         * new row's key columns when the key did not change). */
        const pgoutput_tuple *search = old && old->ncols ? old : row;
        apply__queue_change(ap, r, 'D', search, search, lsn, ap->tx_final_lsn, 0);
    } else {
        apply__queue_change(ap, r, m->type, old, row ? row : old, lsn, ap->tx_final_lsn, 0);
    }
    if (reroute) apply_rel_clear(&routed);
    apply__held_release(ap);
    return ap->failed ? -1 : 0;
}
