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
 * session_replication_role = replica (a partitioned target: over its whole tree), and the
 * stream runs in that role. Within that table
 * the order of each key's changes is kept: a delete, a key-changing update, a TRUNCATE, a
 * routed hook change or a new relation description sends the pending updates first.
 *
 * Inserts of a batchable table wait too, and go BATCH_ROWS at most to one INSERT of 2^n rows.
 * Any other change of the table sends them first (and its pending updates after them), so each
 * table sees its own changes in source order; only the order between tables changes, which
 * Lua allows only where nothing observes it (replica role, no trigger firing in it).
 *
 * The folded updates of a table are sent up to UPDATE_ROWS rows to a statement, one
 * `UPDATE ... FROM (rows) WHERE key = row's key RETURNING row's number` for the rows that set
 * the same columns (in any order: their keys differ, and nothing observes the order of rows
 * inside the group, as above). The target parses, plans and starts one statement for all of
 * them, not one each. The rows' values take their types from the table itself: the rows are a
 * UNION ALL behind `SELECT <its columns> FROM ONLY t WHERE false`, whose parameters the server
 * types as the table's columns, as it does those of a one-row UPDATE. A row the statement did
 * not find is the conflict of that row (apply_result.c), named by its key and LSN; so only the
 * policy that stops at one sends them together (`conflict = "error"`, no hook), and never a
 * table whose rows cannot be found by `=` on their key.
 *
 * Memory: at most MERGE_WINDOW pending rows per table and MERGE_MAX_BYTES over all tables;
 * past either, what is pending is sent. Everything pending is sent before the group's check,
 * and the windows are freed then (apply__merge_flush_all).
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
#define UPDATE_ROWS 64             /* folded updates per statement, at most */

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

/* ---------------------------------------------------------------- updates of several rows */

/* Whether `r`'s folded updates may go several rows to a statement (see the top). */
static bool updates_batchable(const apply_state *ap, const apply_rel *r) {
    const apply_target *t = r->target;
    if (!ap->opt.batch_updates || ap->opt.conflict != APPLY_CONFLICT_ERROR || ap->opt.conflict_hook)
        return false;
    /* Not a partitioned target: joined with the rows, its statement is planned and started
     * over every partition (at 500 partitions, half a second to plan 4 rows), where a one-row
     * statement's key prunes all partitions but one. */
    if (t->filter || t->partitioned || t->tolerate_lsn || !r->by_key) return false;
    for (int i = 0; i < r->ncols; i++) {
        if (r->slot[i] < 0) continue;
        /* GENERATED ALWAYS identity: compared in the WHERE, never set (apply_sql.c) */
        if (t->columns[r->slot[i]].identity_always) return false;
        if (r->match[i] && r->textcmp[i]) return false; /* no '=': compared as text */
    }
    return true;
}

/* Whether a column is set by the row (a key column never is: the window holds no key change). */
static bool sets_column(const apply_rel *r, const merge_entry *e, int i) {
    return r->slot[i] >= 0 && !r->match[i] && e->values[i].kind != PGOUTPUT_VALUE_UNCHANGED_TOAST;
}

/* Whether `e` may share a statement, and a fingerprint of the columns it sets. A NULL key value
 * is found by IS NULL, one row at a time; a row setting nothing needs no statement. */
static bool entry_shape(const apply_rel *r, const merge_entry *e, uint64_t *shape) {
    uint64_t h = 1469598103934665603ULL;
    int sets = 0;
    for (int i = 0; i < r->ncols; i++) {
        if (r->slot[i] < 0) continue;
        if (r->match[i] && e->values[i].kind == PGOUTPUT_VALUE_NULL) return false;
        if (!sets_column(r, e, i)) continue;
        sets++;
        h = (h ^ (uint64_t) i) * 1099511628211ULL;
    }
    *shape = h;
    return sets > 0;
}

static bool same_shape(const apply_rel *r, const merge_entry *a, const merge_entry *b) {
    for (int i = 0; i < r->ncols; i++)
        if (sets_column(r, a, i) != sets_column(r, b, i)) return false;
    return true;
}

/* One UPDATE of the k rows `rows` (alike in shape): key columns, then the columns they set. */
static void update_rows_send(apply_state *ap, apply_rel *r, merge_entry **rows, int k, apply_stmt *vals) {
    const apply_target *t = r->target;
    const merge_entry *lead = rows[0];
    apply_buf *sql = &vals->sql;
    apply_stmt_reset(vals);
    apply_buf_adds(sql, "UPDATE ONLY ");
    apply_buf_adds(sql, t->target_sql);
    apply_buf_adds(sql, " AS pgtide_t SET ");
    int c = 0, width = 0;
    for (int i = 0; i < r->ncols; i++) width += r->slot[i] >= 0 && (r->match[i] || sets_column(r, lead, i));
    for (int pass = 0, col = 0; pass < 2; pass++) { /* the keys are pgtide_v.c1.., then the set columns */
        for (int i = 0; i < r->ncols; i++) {
            if (r->slot[i] < 0 || !(pass ? sets_column(r, lead, i) : r->match[i])) continue;
            col++;
            if (!pass) continue;
            if (c++) apply_buf_adds(sql, ", ");
            apply_buf_adds(sql, t->columns[r->slot[i]].target_sql);
            apply_buf_adds(sql, " = pgtide_v.c");
            apply_buf_uint(sql, (unsigned) col);
        }
    }
    apply_buf_adds(sql, " FROM (SELECT 0");
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < r->ncols; i++) {
            if (r->slot[i] < 0 || !(pass ? sets_column(r, lead, i) : r->match[i])) continue;
            apply_buf_adds(sql, ", ");
            apply_buf_adds(sql, t->columns[r->slot[i]].target_sql);
        }
    apply_buf_adds(sql, " FROM ONLY ");
    apply_buf_adds(sql, t->target_sql);
    apply_buf_adds(sql, " WHERE false");
    update_row_info *each = malloc(sizeof *each * (size_t) k);
    if (!each) abort();
    uint32_t merged = 0;
    for (int row = 0; row < k; row++) {
        merge_entry *e = rows[row];
        apply_buf_adds(sql, " UNION ALL SELECT ");
        apply_buf_uint(sql, (unsigned) row + 1);
        for (int pass = 0; pass < 2; pass++)
            for (int i = 0; i < r->ncols; i++) {
                if (r->slot[i] < 0 || !(pass ? sets_column(r, e, i) : r->match[i])) continue;
                apply_buf_adds(sql, ", ");
                apply_buf_param(sql, apply_stmt_add(vals, &e->values[i]));
            }
        pgoutput_tuple tuple = { (uint16_t) r->ncols, e->values };
        apply_sql_key_text(each[row].key, sizeof each[row].key, r, &tuple);
        each[row].lsn = e->lsn;
        each[row].commit_lsn = e->commit_lsn;
        merged += e->merged;
    }
    apply_buf_adds(sql, ") AS pgtide_v (i");
    for (int j = 1; j <= width; j++) {
        apply_buf_adds(sql, ", c");
        apply_buf_uint(sql, (unsigned) j);
    }
    apply_buf_adds(sql, ")");
    c = 0;
    for (int i = 0, col = 0; i < r->ncols; i++) {
        if (r->slot[i] < 0 || !r->match[i]) continue;
        apply_buf_adds(sql, c++ ? " AND pgtide_t." : " WHERE pgtide_t.");
        apply_buf_adds(sql, t->columns[r->slot[i]].target_sql);
        apply_buf_adds(sql, " = pgtide_v.c");
        apply_buf_uint(sql, (unsigned) ++col);
    }
    apply_buf_adds(sql, " RETURNING pgtide_v.i");
    pgoutput_tuple keyed = { (uint16_t) r->ncols, lead->values };
    apply__queue_update_rows(ap, r, sql->data, vals->nparams, apply_stmt_params(vals), (uint32_t) k, merged,
                             each, &keyed);
    ap->n.batched_updates += (uint64_t) k;
    for (int row = 0; row < k; row++) {
        merge_entry *e = rows[row];
        ap->merge_bytes -= e->bytes;
        free(e->block);
        free(e->values);
        memset(e, 0, sizeof *e);
    }
}

static void entry_send(apply_state *ap, apply_rel *r, merge_entry *e);

/* Send the window's rows: those alike in shape in statements of 2^n rows (largest first, so
 * that a table needs few prepared statements), the rest one by one. */
static void updates_send(apply_state *ap, apply_rel *r, struct apply_merge *m) {
    int n = m->count;
    uint64_t *shape = malloc(sizeof *shape * (size_t) n);
    merge_entry **group = malloc(sizeof *group * (size_t) n);
    if (!shape || !group) abort();
    for (int a = 0; a < n; a++)
        if (!entry_shape(r, &m->entries[a], &shape[a])) entry_send(ap, r, &m->entries[a]);
    int width = 0;
    for (int i = 0; i < r->ncols; i++) width += r->slot[i] >= 0;
    int most = UPDATE_ROWS;
    while (most > 1 && most * width > MAX_PARAMS) most /= 2;
    apply_stmt vals = { 0 };
    for (int a = 0; a < n; a++) {
        if (!m->entries[a].block) continue; /* sent */
        int g = 0;
        for (int b = a; b < n; b++) {
            merge_entry *e = &m->entries[b];
            if (e->block && shape[b] == shape[a] && same_shape(r, &m->entries[a], e)) group[g++] = e;
        }
        for (int done = 0; done < g;) {
            int k = 1;
            while (k * 2 <= g - done && k * 2 <= most) k *= 2;
            if (k == 1)
                entry_send(ap, r, group[done]);
            else
                update_rows_send(ap, r, group + done, k, &vals);
            done += k;
        }
    }
    apply_stmt_free(&vals);
    free(group);
    free(shape);
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
    if (m->count > 1 && !ap->failed && updates_batchable(ap, r))
        updates_send(ap, r, m);
    else
        for (int k = 0; k < m->count; k++) entry_send(ap, r, &m->entries[k]);
    m->count = 0;
    memset(m->slot, 0, sizeof *m->slot * (size_t) m->cap * 2);
}

/* Everything pending is sent, and each table's window freed with it: a stream over 100,000
 * tables would otherwise keep one (some 2 kB, the insert batch's positions most of it) for every
 * table it ever touched; a table written again gets a new one, a few allocations per group. */
void apply__merge_flush_all(apply_state *ap) {
    for (int i = 0; i < ap->ndirty; i++) {
        apply__merge_flush_rel(ap, ap->dirty[i]);
        apply__merge_free(ap->dirty[i]);
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
