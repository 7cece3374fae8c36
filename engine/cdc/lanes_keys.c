/*
 * lanes_keys.c — parallel apply's keys: which keys a source transaction touches (each table's
 * rule, from its map entry), the map of keys held by transactions in flight per lane, and the
 * ring of dispatched transactions. See lanes.h.
 */
#include "cdc/lanes_internal.h"
#include "cdc/relcache.h"

#include <stdlib.h>
#include <string.h>

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 1099511628211ull;
    }
    return h;
}

/* ---------------------------------------------------------------- the key map */

kentry *lanes__kfind(lanes *l, uint64_t key, bool insert) {
    if (insert && (l->kused + 1) * 2 > l->kcap) {
        size_t ncap = l->kcap ? l->kcap * 2 : 1024;
        kentry *old = l->kmap;
        size_t ocap = l->kcap;
        /* Shrink back when most entries are unused (every count zero). */
        size_t live = 0;
        for (size_t i = 0; i < ocap; i++)
            if (old[i].key) {
                int c = 0;
                for (int j = 0; j < l->n; j++) c += old[i].cnt[j];
                if (c) live++;
            }
        while (ncap > 1024 && (live + 1) * 4 < ncap) ncap /= 2;
        l->kmap = calloc(ncap, sizeof *l->kmap);
        if (!l->kmap) abort();
        l->kcap = ncap;
        l->kused = 0;
        for (size_t i = 0; i < ocap; i++) {
            if (!old[i].key) continue;
            int c = 0;
            for (int j = 0; j < l->n; j++) c += old[i].cnt[j];
            if (!c) continue;
            size_t k = (size_t) old[i].key & (ncap - 1);
            while (l->kmap[k].key) k = (k + 1) & (ncap - 1);
            l->kmap[k] = old[i];
            l->kused++;
        }
        free(old);
    }
    if (!l->kcap) return NULL;
    size_t k = (size_t) key & (l->kcap - 1);
    while (l->kmap[k].key) {
        if (l->kmap[k].key == key) return &l->kmap[k];
        k = (k + 1) & (l->kcap - 1);
    }
    if (!insert) return NULL;
    memset(&l->kmap[k], 0, sizeof l->kmap[k]);
    l->kmap[k].key = key;
    l->kused++;
    return &l->kmap[k];
}

void lanes__tx_key_raw(lanes *l, uint64_t key, int mode) {
    for (int i = 0; i < l->nkeys; i++)
        if (l->keys[i] == key) {
            if (mode == MODE_X) l->modes[i] = MODE_X;
            return;
        }
    if (l->nkeys == l->keys_cap) {
        l->keys_cap = l->keys_cap ? l->keys_cap * 2 : 16;
        l->keys = realloc(l->keys, (size_t) l->keys_cap * sizeof *l->keys);
        l->modes = realloc(l->modes, (size_t) l->keys_cap);
        if (!l->keys || !l->modes) abort();
    }
    l->keys[l->nkeys] = key;
    l->modes[l->nkeys++] = (uint8_t) mode;
}

static void tx_key(lanes *l, uint64_t key, int mode) {
    lanes__tx_key_raw(l, key <= KEY_GLOBAL ? key + 2 : key, mode);
}

/* ---------------------------------------------------------------- key rules */

/* The rule slot of relid (open addressing by relid: a change looks it up in constant time,
 * whatever the number of tables); an unused slot when it has none yet. */
static lrel *rel_slot(lanes *l, uint32_t relid) {
    if ((l->nrels + 1) * 2 > l->rels_cap) {
        size_t ocap = l->rels_cap, ncap = ocap ? ocap * 2 : 64;
        lrel *old = l->rels;
        l->rels = calloc(ncap, sizeof *l->rels);
        if (!l->rels) abort();
        l->rels_cap = ncap;
        for (size_t i = 0; i < ocap; i++) {
            if (!old[i].used) continue;
            size_t k = (old[i].relid * 2654435761u) & (ncap - 1);
            while (l->rels[k].used) k = (k + 1) & (ncap - 1);
            l->rels[k] = old[i];
        }
        free(old);
    }
    size_t k = (relid * 2654435761u) & (l->rels_cap - 1);
    while (l->rels[k].used && l->rels[k].relid != relid) k = (k + 1) & (l->rels_cap - 1);
    return &l->rels[k];
}

static lrel *rel_rule(lanes *l, uint32_t relid) {
    const relcache_relation *rel = relcache_get(l->cache, relid);
    if (!rel) return NULL;
    lrel *r = rel_slot(l, relid);
    if (r->used && r->version == rel->version) return r;
    if (!r->used) l->nrels++;
    free(r->keycol);
    memset(r, 0, sizeof *r);
    r->used = true;
    r->relid = relid;
    r->version = rel->version;
    apply_target *t = apply_target_of_source(l->lane[0].ap, rel->schema, rel->name);
    r->t = t;
    if (!t) r->version = 0;                  /* resolved again next time: a DDL message may add it */
    if (t && (t->heartbeat || t->ignored)) { /* counted or passed over by the lane: no key */
        r->none = true;
        return r;
    }
    if (!t || t->hooked || t->nroutes || t->follow_cascade || t->tolerate_lsn || t->lane_mode == 2) {
        r->serial = true;
        return r;
    }
    /* The source's relation id: the same across renames (DDL replication). */
    r->table_key = fnv(14695981039346656037ull, &relid, sizeof relid);
    if (t->lane_mode == 1) {
        uint32_t g = t->lane_group;
        r->table_key = fnv(14695981039346656037ull ^ 0x9e3779b97f4a7c15ull, &g, sizeof g);
        r->table_only = true;
        return r;
    }
    r->nkey = t->nkey;
    if (t->nkey) {
        r->keycol = malloc((size_t) t->nkey * sizeof *r->keycol);
        if (!r->keycol) abort();
        for (int k = 0; k < t->nkey; k++) {
            r->keycol[k] = -1;
            for (int c = 0; c < rel->ncols; c++)
                if (strcmp(rel->columns[c].name, t->key[k]) == 0) r->keycol[k] = c;
            if (r->keycol[k] < 0) r->table_only = true; /* the lane fails on it, if it matters */
        }
    }
    return r;
}

/* The key of a row, or 0 when the tuple does not hold every key column. */
static uint64_t row_key(const lrel *r, const pgoutput_tuple *t) {
    if (!t || !t->ncols) return 0;
    uint64_t h = r->table_key;
    for (int k = 0; k < r->nkey; k++) {
        int c = r->keycol[k];
        if (c < 0 || c >= t->ncols) return 0;
        const pgoutput_value *v = &t->values[c];
        if (v->kind == PGOUTPUT_VALUE_UNCHANGED_TOAST) return 0;
        uint8_t kind = (uint8_t) v->kind;
        uint32_t len = (uint32_t) v->len;
        h = fnv(h, &kind, 1);
        h = fnv(h, &len, sizeof len);
        if (v->len) h = fnv(h, v->data, v->len);
    }
    return h;
}

void lanes__change_keys(lanes *l, uint32_t relid, int type, const pgoutput_tuple *old,
                        const pgoutput_tuple *row) {
    lrel *r = rel_rule(l, relid);
    if (!r || r->serial) {
        l->serial = true;
        return;
    }
    if (r->none) return;
    if (r->table_only) {
        tx_key(l, r->table_key, MODE_X);
        return;
    }
    if (!r->nkey) { /* keyless: inserts commute, anything else finds rows by their values */
        tx_key(l, r->table_key, type == PGOUTPUT_INSERT ? MODE_S : MODE_X);
        return;
    }
    tx_key(l, r->table_key, MODE_S);
    bool any = false;
    const pgoutput_tuple *ts[2] = { old, row };
    for (int i = 0; i < 2; i++) {
        if (!ts[i] || !ts[i]->ncols) continue;
        uint64_t k = row_key(r, ts[i]);
        if (!k) continue;
        tx_key(l, k, MODE_X);
        any = true;
    }
    if (!any) tx_key(l, r->table_key, MODE_X);
}

void lanes__forget_rules(lanes *l) {
    for (size_t i = 0; i < l->rels_cap; i++) free(l->rels[i].keycol);
    if (l->rels_cap) memset(l->rels, 0, l->rels_cap * sizeof *l->rels);
    l->nrels = 0;
}

ltx *lanes__ring_at(lanes *l, size_t i) { return &l->ring[(l->ring_head + i) % l->ring_cap]; }

ltx *lanes__ring_push(lanes *l) {
    if (l->ring_count == l->ring_cap) {
        size_t ncap = l->ring_cap ? l->ring_cap * 2 : 256;
        ltx *nr = malloc(ncap * sizeof *nr);
        if (!nr) abort();
        for (size_t i = 0; i < l->ring_count; i++) nr[i] = *lanes__ring_at(l, i);
        free(l->ring);
        l->ring = nr;
        l->ring_cap = ncap;
        l->ring_head = 0;
    }
    ltx *e = lanes__ring_at(l, l->ring_count++);
    memset(e, 0, sizeof *e);
    return e;
}

void lanes__release_keys(lanes *l, ltx *e) {
    for (int i = 0; i < e->nkeys; i++) {
        kentry *k = lanes__kfind(l, e->keys[i], false);
        if (!k) continue;
        if (k->cnt[e->lane]) k->cnt[e->lane]--;
        if (e->modes[i] == MODE_X && k->excl) k->excl--;
    }
    free(e->keys);
    free(e->modes);
    e->keys = NULL;
    e->modes = NULL;
    e->nkeys = 0;
}

unsigned lanes__conflicts(lanes *l) {
    unsigned mask = 0;
    for (int i = 0; i < l->nkeys; i++) {
        kentry *k = lanes__kfind(l, l->keys[i], false);
        if (!k) continue;
        if (l->modes[i] != MODE_X && !k->excl) continue;
        for (int j = 0; j < l->n; j++)
            if (k->cnt[j]) mask |= 1u << j;
    }
    return mask;
}
