/*
 * apply_rels.c — the stream's relations resolved against the task's tables: a hash of relid to
 * apply_rel (rebuilt when the relation's Relation message changes), and finding a table of
 * the task by its source name or its target's display name. The rest of the apply side is in
 * apply.c.
 */
#include "cdc/apply_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static apply_rel **rel_slot(apply_state *ap, uint32_t relid) {
    if (ap->rels_count * 2 >= ap->rels_cap) {
        size_t cap = ap->rels_cap ? ap->rels_cap * 2 : 64;
        apply_rel **grown = calloc(cap, sizeof *grown);
        if (!grown) abort();
        for (size_t i = 0; i < ap->rels_cap; i++) {
            if (!ap->rels[i]) continue;
            size_t j = (ap->rels[i]->relid * 2654435761u) & (cap - 1);
            while (grown[j]) j = (j + 1) & (cap - 1);
            grown[j] = ap->rels[i];
        }
        free(ap->rels);
        ap->rels = grown;
        ap->rels_cap = cap;
    }
    size_t j = (relid * 2654435761u) & (ap->rels_cap - 1);
    while (ap->rels[j] && ap->rels[j]->relid != relid) j = (j + 1) & (ap->rels_cap - 1);
    return &ap->rels[j];
}

apply_target *apply__find_target(apply_state *ap, const char *schema, const char *name) {
    for (int i = 0; i < ap->opt.ntargets; i++) {
        apply_target *t = ap->opt.targets[i];
        if (strcmp(t->source_schema, schema) == 0 && strcmp(t->source_name, name) == 0) return t;
    }
    return NULL;
}

apply_target *apply_find_target(apply_state *ap, const char *display) {
    for (int i = 0; i < ap->opt.ntargets; i++)
        if (strcmp(ap->opt.targets[i]->display, display) == 0) return ap->opt.targets[i];
    return NULL;
}

/* The resolution of relid, rebuilt when its Relation message changed. NULL after a failure. */
apply_rel *apply__rel_get(apply_state *ap, uint32_t relid, const relcache_relation **relp) {
    const relcache_relation *rel = relcache_get(ap->cache, relid);
    *relp = rel;
    if (!rel) {
        snprintf(ap->errbuf, sizeof ap->errbuf,
                 "a change for relation %u arrived before its "
                 "Relation message",
                 (unsigned) relid);
        apply__fail(ap, "stream", "08P01", ap->errbuf, NULL);
        return NULL;
    }
    apply_rel **slot = rel_slot(ap, relid);
    if (*slot && (*slot)->version == rel->version) return *slot;
    apply_target *t = apply__find_target(ap, rel->schema, rel->name);
    if (!t) {
        snprintf(ap->errbuf, sizeof ap->errbuf,
                 "the source sent changes of table %s.%s, which is not "
                 "part of this task (the publication holds more tables than the plan: was the playbook's "
                 "selection changed? release the task and start again, or select the table)",
                 rel->schema, rel->name);
        apply__fail(ap, "stream", "42P01", ap->errbuf, NULL);
        return NULL;
    }
    apply_rel *r = calloc(1, sizeof *r);
    if (!r) abort();
    if (apply_rel_resolve(r, rel, t, *slot, ap->errbuf, sizeof ap->errbuf) < 0) {
        free(r);
        apply__fail(ap, "stream", "0A000", ap->errbuf, NULL);
        return NULL;
    }
    if (*slot) {
        apply__merge_forget(ap, *slot);
        apply_rel_clear(*slot);
        free(*slot);
    } else {
        ap->rels_count++;
    }
    *slot = r;
    return r;
}
