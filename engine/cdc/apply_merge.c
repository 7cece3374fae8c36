/*
 * apply_merge.c — what a table holds back inside one target transaction: successive updates of
 * one row folded into one, and inserts sent several rows to a statement.
 *
 * Why: OLTP workloads update a few hot rows over and over (counters, balances: pgbench's
 * branches and tellers). Applied one by one inside a group, every update of a hot row adds a
 * version the server cannot prune until the group commits, and each later update walks that
 * chain; native logical replication avoids the chain by committing every transaction, at the
 * price of a commit each. A group is atomic, so only the last state of a row matters: keeping
 * the latest update of each recently updated row in a small window, and merging the next
 * update of the same key into it, sends one UPDATE where there were many.
 *
 * When it is correct: the group is one target transaction, so no reader sees the order of
 * changes inside it; what could notice a different order is a constraint or trigger evaluated
 * row by row. Lua marks a table `mergeable` only when its target has a single unique index
 * (the key rows are found by), no exclusion constraint and no trigger that fires under
 * session_replication_role = replica, and the stream runs in that role. Within that table
 * the order of each key's changes is kept: a delete, a key-changing update, a TRUNCATE, a
 * routed hook change or a new relation description sends the pending updates first.
 *
 * Inserts of a batchable table wait too, and go BATCH_ROWS at most to one INSERT of 2^n rows.
 * Any other change of the table sends them first (and its pending updates after them), so each
 * table sees its own changes in source order; only the order between tables changes, which
 * Lua allows only where nothing observes it (replica role, no trigger firing in it).
 *
 * Memory: at most MERGE_WINDOW pending rows per table and MERGE_MAX_BYTES over all tables;
 * past either, what is pending is sent. Everything pending is sent before the group's check.
 */
#include "cdc/apply_internal.h"

#include <stdlib.h>
#include <string.h>

#define MERGE_WINDOW 1024 /* pending rows per table, at most (a power of two) */
#define MERGE_FIRST 8     /* the window a table starts with: grown as it fills */
#define MERGE_MAX_BYTES (8u * 1024 * 1024)
#define BATCH_ROWS 64              /* inserts per statement, at most */
#define BATCH_MAX_BYTES (1u << 20) /* values per insert batch, at most */
#define MAX_PARAMS 65535           /* the protocol's limit per statement */

typedef struct merge_entry {
    uint8_t *block; /* key bytes, then the value bytes */
    uint32_t keylen;
    uint32_t hash;          /* of the key bytes */
    pgoutput_value *values; /* one per relation column, data inside block */
    uint64_t lsn, commit_lsn;
    uint32_t merged; /* updates folded in after the first */
    size_t bytes;
} merge_entry;

/* Inserts waiting to be sent together: the values of each row, as statement parameters, one
 * row after the other; every row sends the same columns. */
typedef struct insert_batch {
    apply_stmt vals;
    bool *present;    /* per relation column: sent by these rows */
    int ncols, width; /* relation columns; columns sent per row */
    int rows, max_rows;
    uint64_t lsn[BATCH_ROWS], commit_lsn[BATCH_ROWS];
} insert_batch;

/* Pending rows in the order of their first update; a hash of their keys finds the one a new
 * update folds into. When the window is full, all of it is sent (in that order) and it starts
 * again empty, so entries are never removed one by one. The window starts small and doubles
 * as it fills, up to MERGE_WINDOW: a stream over 100,000 tables touches each one a little,
 * and a full window for each (some 60 kB) would cost gigabytes. */
struct apply_merge {
    merge_entry *entries; /* cap of them */
    int count, cap;
    int16_t *slot; /* 2 * cap: entry index + 1; 0 = empty */
    bool listed;   /* in ap->dirty */
    insert_batch ins;
};

static uint32_t key_hash(const uint8_t *key, size_t len) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) h = (h ^ key[i]) * 16777619u;
    return h;
}

/* The key of `row` (its match columns) as bytes; 0 when a key value is missing. */
static size_t key_bytes(const apply_rel *r, const pgoutput_tuple *row, uint8_t *out, size_t cap) {
    size_t n = 0;
    for (int i = 0; i < r->ncols; i++) {
        if (!r->match[i]) continue;
        const pgoutput_value *v = &row->values[i];
        if (v->kind == PGOUTPUT_VALUE_UNCHANGED_TOAST) return 0;
        size_t need = 1 + sizeof v->len + v->len;
        if (n + need > cap) return 0;
        out[n++] = (uint8_t) v->kind;
        memcpy(out + n, &v->len, sizeof v->len);
        n += sizeof v->len;
        if (v->len) memcpy(out + n, v->data, v->len);
        n += v->len;
    }
    return n;
}

/* A fresh block holding `key` and, per column, the newest value of `newer` unless that one is
 * UNCHANGED_TOAST, then the one of `older` (NULL for a first update). */
static void entry_fill(merge_entry *e, int ncols, const uint8_t *key, size_t keylen,
                       const pgoutput_value *newer, const pgoutput_value *older) {
    size_t bytes = keylen;
    for (int i = 0; i < ncols; i++) {
        const pgoutput_value *v =
            (newer[i].kind == PGOUTPUT_VALUE_UNCHANGED_TOAST && older) ? &older[i] : &newer[i];
        bytes += v->len;
    }
    uint8_t *block = malloc(bytes + 1);
    pgoutput_value *values = malloc(sizeof *values * (size_t) (ncols ? ncols : 1));
    if (!block || !values) abort();
    memcpy(block, key, keylen);
    size_t at = keylen;
    for (int i = 0; i < ncols; i++) {
        const pgoutput_value *v =
            (newer[i].kind == PGOUTPUT_VALUE_UNCHANGED_TOAST && older) ? &older[i] : &newer[i];
        values[i] = *v;
        if (v->len) {
            memcpy(block + at, v->data, v->len);
            values[i].data = block + at;
            at += v->len;
        } else {
            values[i].data = NULL;
        }
    }
    free(e->block);
    free(e->values);
    e->block = block;
    e->values = values;
    e->keylen = (uint32_t) keylen;
    e->bytes = bytes;
}

static void entry_send(apply_state *ap, apply_rel *r, merge_entry *e) {
    pgoutput_tuple row = { (uint16_t) r->ncols, e->values };
    apply__queue_change(ap, r, 'U', NULL, &row, e->lsn, e->commit_lsn, e->merged);
    ap->merge_bytes -= e->bytes;
    free(e->block);
    free(e->values);
    memset(e, 0, sizeof *e);
}

/* ---------------------------------------------------------------- inserts */

/* The row `k` of the batch as a tuple (values pointing into the batch), for its key text. */
static void batch_row(const insert_batch *b, int k, pgoutput_value *out) {
    int p = k * b->width;
    for (int i = 0; i < b->ncols; i++) {
        memset(&out[i], 0, sizeof out[i]);
        if (!b->present[i]) {
            out[i].kind = PGOUTPUT_VALUE_UNCHANGED_TOAST;
            continue;
        }
        size_t at = b->vals.offsets[p++];
        if (at == SIZE_MAX) {
            out[i].kind = PGOUTPUT_VALUE_NULL;
            continue;
        }
        out[i].kind = PGOUTPUT_VALUE_TEXT;
        out[i].data = (const uint8_t *) b->vals.values.data + at;
        out[i].len = (uint32_t) strlen(b->vals.values.data + at);
    }
}

/* Send the batch as statements of 2^n rows (largest first), so that a table needs at most one
 * prepared statement per power of two and column set. */
static void inserts_send(apply_state *ap, apply_rel *r) {
    insert_batch *b = &r->merge->ins;
    if (b->rows == 0) return;
    const apply_target *t = r->target;
    const char *const *params = apply_stmt_params(&b->vals);
    pgoutput_value *first = malloc(sizeof *first * (size_t) b->ncols);
    if (!first) abort();
    apply_buf sql = { 0 };
    int done = 0;
    while (done < b->rows) {
        int k = 1;
        while (k * 2 <= b->rows - done) k *= 2;
        apply_buf_reset(&sql);
        apply_buf_adds(&sql, "INSERT INTO ");
        apply_buf_adds(&sql, t->target_sql);
        apply_buf_adds(&sql, " (");
        int c = 0;
        bool overriding = false;
        for (int i = 0; i < b->ncols; i++) {
            if (!b->present[i]) continue;
            if (c++) apply_buf_adds(&sql, ", ");
            apply_buf_adds(&sql, t->columns[r->slot[i]].target_sql);
            overriding |= t->columns[r->slot[i]].identity_always;
        }
        /* GENERATED ALWAYS identity columns take the source's values only with the clause. */
        apply_buf_adds(&sql, overriding ? ") OVERRIDING SYSTEM VALUE VALUES " : ") VALUES ");
        int n = 0;
        for (int row = 0; row < k; row++) {
            apply_buf_adds(&sql, row ? ", (" : "(");
            for (int j = 0; j < b->width; j++) {
                if (j) apply_buf_adds(&sql, ", ");
                apply_buf_param(&sql, ++n);
            }
            apply_buf_adds(&sql, ")");
        }
        batch_row(b, done, first);
        pgoutput_tuple keyed = { (uint16_t) b->ncols, first };
        apply__queue_rows(ap, r, sql.data, n, params + (size_t) done * (size_t) b->width, (uint32_t) k,
                          b->lsn[done], b->lsn[done + k - 1], b->commit_lsn[done + k - 1], &keyed);
        if (k > 1) ap->n.batched_inserts += (uint64_t) k;
        done += k;
    }
    apply_buf_free(&sql);
    free(first);
    ap->merge_bytes -= b->vals.values.len;
    apply_stmt_reset(&b->vals);
    b->rows = 0;
}

static struct apply_merge *pending_of(apply_state *ap, apply_rel *r) {
    if (!r->merge) {
        r->merge = calloc(1, sizeof *r->merge);
        if (!r->merge) abort();
    }
    struct apply_merge *m = r->merge;
    if (!m->listed) {
        if (ap->ndirty == ap->cap_dirty) {
            int cap = ap->cap_dirty ? ap->cap_dirty * 2 : 16;
            apply_rel **grown = realloc(ap->dirty, (size_t) cap * sizeof *grown);
            if (!grown) abort();
            ap->dirty = grown;
            ap->cap_dirty = cap;
        }
        ap->dirty[ap->ndirty++] = r;
        m->listed = true;
    }
    return m;
}

/* Twice the window (MERGE_FIRST at first), its entries hashed again into new slots. */
static void window_grow(struct apply_merge *m) {
    int cap = m->cap ? m->cap * 2 : MERGE_FIRST;
    merge_entry *entries = realloc(m->entries, sizeof *entries * (size_t) cap);
    int16_t *slot = calloc((size_t) cap * 2, sizeof *slot);
    if (!entries || !slot) abort();
    size_t mask = (size_t) cap * 2 - 1;
    for (int k = 0; k < m->count; k++) {
        size_t j = entries[k].hash & mask;
        while (slot[j]) j = (j + 1) & mask;
        slot[j] = (int16_t) (k + 1);
    }
    free(m->slot);
    m->entries = entries;
    m->slot = slot;
    m->cap = cap;
}

static bool column_sent(const apply_rel *r, const pgoutput_tuple *row, int i) {
    return r->slot[i] >= 0 && row->values[i].kind != PGOUTPUT_VALUE_UNCHANGED_TOAST;
}

bool apply__batch_insert(apply_state *ap, apply_rel *r, const pgoutput_tuple *row, uint64_t lsn) {
    /* With a unique index on the target, a duplicate must stop the task (no skip, no hook). */
    if (ap->failed || !r->target->batchable || ap->tx_final_lsn <= r->target->tolerate_lsn ||
        (!r->target->unique_free && (ap->opt.conflict != APPLY_CONFLICT_ERROR || ap->opt.conflict_hook)))
        return false;
    insert_batch *b = r->merge ? &r->merge->ins : NULL;
    bool same = b && b->rows && b->ncols == r->ncols;
    int width = 0;
    for (int i = 0; i < r->ncols; i++) {
        bool sent = column_sent(r, row, i);
        width += sent;
        if (same && b->present[i] != sent) same = false;
    }
    if (width == 0) return false; /* DEFAULT VALUES: one at a time */
    b = &pending_of(ap, r)->ins;
    if (b->rows && !same) inserts_send(ap, r); /* a row sending other columns starts a new batch */
    if (b->rows == 0) {
        if (b->ncols != r->ncols) {
            free(b->present);
            b->present = malloc((size_t) (r->ncols ? r->ncols : 1));
            if (!b->present) abort();
            b->ncols = r->ncols;
        }
        for (int i = 0; i < r->ncols; i++) b->present[i] = column_sent(r, row, i);
        b->width = width;
        b->max_rows = 1;
        while (b->max_rows * 2 <= BATCH_ROWS && b->max_rows * 2 * width <= MAX_PARAMS) b->max_rows *= 2;
    }
    size_t before = b->vals.values.len;
    for (int i = 0; i < r->ncols; i++)
        if (b->present[i]) apply_stmt_add(&b->vals, &row->values[i]);
    b->lsn[b->rows] = lsn;
    b->commit_lsn[b->rows] = ap->tx_final_lsn;
    b->rows++;
    ap->merge_bytes += b->vals.values.len - before;
    if (b->rows == b->max_rows || b->vals.values.len > BATCH_MAX_BYTES)
        inserts_send(ap, r);
    else if (ap->merge_bytes > MERGE_MAX_BYTES)
        apply__merge_flush_all(ap);
    return true;
}

/* ---------------------------------------------------------------- sending what is pending */

void apply__merge_flush_rel(apply_state *ap, apply_rel *r) {
    struct apply_merge *m = r->merge;
    if (!m) return;
    inserts_send(ap, r);
    if (m->count == 0) return;
    for (int k = 0; k < m->count; k++) entry_send(ap, r, &m->entries[k]);
    m->count = 0;
    memset(m->slot, 0, sizeof *m->slot * (size_t) m->cap * 2);
}

void apply__merge_flush_all(apply_state *ap) {
    for (int i = 0; i < ap->ndirty; i++) {
        apply__merge_flush_rel(ap, ap->dirty[i]);
        ap->dirty[i]->merge->listed = false;
    }
    ap->ndirty = 0;
}

bool apply__merge_update(apply_state *ap, apply_rel *r, const pgoutput_tuple *row, uint64_t lsn) {
    if (!r->by_key || ap->failed) return false;
    uint8_t key[512];
    size_t keylen = key_bytes(r, row, key, sizeof key);
    if (keylen == 0) return false;
    struct apply_merge *m = pending_of(ap, r);
    uint32_t hash = key_hash(key, keylen);
    size_t mask = (size_t) m->cap * 2 - 1;
    size_t j = hash & mask;
    for (; m->cap && m->slot[j]; j = (j + 1) & mask) {
        merge_entry *e = &m->entries[m->slot[j] - 1];
        if (e->hash == hash && e->keylen == keylen && memcmp(e->block, key, keylen) == 0) {
            size_t before = e->bytes;
            entry_fill(e, r->ncols, key, keylen, row->values, e->values);
            ap->merge_bytes += e->bytes - before;
            e->merged++;
            e->lsn = lsn;
            e->commit_lsn = ap->tx_final_lsn;
            ap->n.merged_changes++;
            return true;
        }
    }
    if (m->count == MERGE_WINDOW) apply__merge_flush_rel(ap, r);
    if (m->count == m->cap) window_grow(m);
    mask = (size_t) m->cap * 2 - 1;
    j = hash & mask;
    while (m->slot[j]) j = (j + 1) & mask;
    merge_entry *e = &m->entries[m->count];
    memset(e, 0, sizeof *e);
    entry_fill(e, r->ncols, key, keylen, row->values, NULL);
    e->hash = hash;
    e->lsn = lsn;
    e->commit_lsn = ap->tx_final_lsn;
    m->slot[j] = (int16_t) (++m->count);
    ap->merge_bytes += e->bytes;
    if (ap->merge_bytes > MERGE_MAX_BYTES) apply__merge_flush_all(ap);
    return true;
}

/* Send what `r` holds and forget it (its relation is being described anew, or freed). */
void apply__merge_forget(apply_state *ap, apply_rel *r) {
    if (!r->merge) return;
    if (ap) {
        apply__merge_flush_rel(ap, r);
        for (int i = 0; i < ap->ndirty; i++) {
            if (ap->dirty[i] != r) continue;
            ap->dirty[i] = ap->dirty[--ap->ndirty];
            break;
        }
    }
    apply__merge_free(r);
}

void apply__merge_free(apply_rel *r) {
    struct apply_merge *m = r->merge;
    if (!m) return;
    for (int k = 0; k < m->count; k++) {
        free(m->entries[k].block);
        free(m->entries[k].values);
    }
    apply_stmt_free(&m->ins.vals);
    free(m->ins.present);
    free(m->entries);
    free(m->slot);
    free(m);
    r->merge = NULL;
}
