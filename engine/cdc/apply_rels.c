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

/* FNV-1a over a and, when given, a NUL and b. */
static uint32_t name_hash(const char *a, const char *b) {
    uint32_t h = 2166136261u;
    for (const char *p = a; *p; p++) h = (h ^ (uint8_t) *p) * 16777619u;
    if (b) {
        h *= 16777619u;
        for (const char *p = b; *p; p++) h = (h ^ (uint8_t) *p) * 16777619u;
    }
    return h;
}

static bool source_is(const apply_target *t, const char *schema, const char *name) {
    return strcmp(t->source_schema, schema) == 0 && strcmp(t->source_name, name) == 0;
}

/* Both name tables, from opt.targets. The first entry of a name wins, as a scan in list order
 * would find it (apply_set_target keeps source names unique). A stream over 100,000 tables
 * resolves each table's first change here: a scan of the list each time was quadratic. */
static void names_build(apply_state *ap) {
    size_t cap = 16;
    while (cap < (size_t) ap->opt.ntargets * 2) cap *= 2;
    if (cap != ap->names_cap) {
        free(ap->by_source);
        free(ap->by_display);
        ap->by_source = malloc(cap * sizeof *ap->by_source);
        ap->by_display = malloc(cap * sizeof *ap->by_display);
        if (!ap->by_source || !ap->by_display) abort();
        ap->names_cap = cap;
    }
    memset(ap->by_source, 0, cap * sizeof *ap->by_source);
    memset(ap->by_display, 0, cap * sizeof *ap->by_display);
    for (int i = 0; i < ap->opt.ntargets; i++) {
        const apply_target *t = ap->opt.targets[i];
        size_t j = name_hash(t->source_schema, t->source_name) & (cap - 1);
        while (ap->by_source[j] &&
               !source_is(ap->opt.targets[ap->by_source[j] - 1], t->source_schema, t->source_name))
            j = (j + 1) & (cap - 1);
        if (!ap->by_source[j]) ap->by_source[j] = i + 1;
        j = name_hash(t->display, NULL) & (cap - 1);
        while (ap->by_display[j] && strcmp(ap->opt.targets[ap->by_display[j] - 1]->display, t->display) != 0)
            j = (j + 1) & (cap - 1);
        if (!ap->by_display[j]) ap->by_display[j] = i + 1;
    }
    ap->names_built = true;
}

void apply__names_free(apply_state *ap) {
    free(ap->by_source);
    free(ap->by_display);
    ap->by_source = ap->by_display = NULL;
    ap->names_cap = 0;
    ap->names_built = false;
}

apply_target *apply__find_target(apply_state *ap, const char *schema, const char *name) {
    if (!ap->names_built) names_build(ap);
    size_t mask = ap->names_cap - 1;
    for (size_t j = name_hash(schema, name) & mask; ap->by_source[j]; j = (j + 1) & mask) {
        apply_target *t = ap->opt.targets[ap->by_source[j] - 1];
        if (source_is(t, schema, name)) return t;
    }
    return NULL;
}

apply_target *apply_find_target(apply_state *ap, const char *display) {
    if (!ap->names_built) names_build(ap);
    size_t mask = ap->names_cap - 1;
    for (size_t j = name_hash(display, NULL) & mask; ap->by_display[j]; j = (j + 1) & mask) {
        apply_target *t = ap->opt.targets[ap->by_display[j] - 1];
        if (strcmp(t->display, display) == 0) return t;
    }
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
