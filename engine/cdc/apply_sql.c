/*
 * apply_sql.c — the statements apply.c sends for each change: their text, their parameters,
 * and how a source relation maps onto its target table. Pure functions over the relcache
 * entry and the map (no I/O), unit-tested in tests/unit/test_apply_sql.c.
 *
 * Decisions that matter for correctness:
 *   - A column the source sent as UNCHANGED_TOAST ('u') is left out of SET (and out of an
 *     INSERT), so the target keeps its value.
 *   - Rows are found by a unique key when there is one (the target's key from the map when
 *     the source flags those columns, else the source's replica identity), with plain '='.
 *     Without one (REPLICA IDENTITY FULL, no key) every applied column is compared, NULL
 *     with IS NULL, and exactly one row is touched (by ctid, or tableoid+ctid on a
 *     partitioned target), so identical duplicate rows stay duplicates.
 *   - Types without an equality operator (json, xml, geometric types) compare as text.
 *   - ONLY on every statement of a plain table (its inheritance children are separate
 *     relations in the stream), never on a partitioned one (rows live in the partitions).
 *   - A GENERATED ALWAYS identity column on the target takes the source's value only with
 *     OVERRIDING SYSTEM VALUE, and UPDATE cannot set it: it is compared with its new value in
 *     the WHERE instead, so a changed value finds no row (a conflict), never a wrong row.
 */
#include "cdc/apply.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- buffers */

static void buf_grow(apply_buf *b, size_t extra) {
    if (b->len + extra + 1 <= b->cap) return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1) cap *= 2;
    char *grown = realloc(b->data, cap);
    if (!grown) abort();
    b->data = grown;
    b->cap = cap;
}

void apply_buf_reset(apply_buf *b) {
    b->len = 0;
    if (b->data) b->data[0] = '\0';
}

void apply_buf_add(apply_buf *b, const char *s, size_t n) {
    buf_grow(b, n);
    if (n) memcpy(b->data + b->len, s, n); /* an empty value may come with no pointer at all */
    b->len += n;
    b->data[b->len] = '\0';
}

void apply_buf_adds(apply_buf *b, const char *s) { apply_buf_add(b, s, strlen(s)); }

void apply_buf_addf(apply_buf *b, const char *fmt, ...) {
    buf_grow(b, 64); /* most fit: one pass; a longer one is written again once there is room */
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->data[b->len] = '\0';
        return;
    }
    if ((size_t) n >= b->cap - b->len) {
        buf_grow(b, (size_t) n);
        va_start(ap, fmt);
        vsnprintf(b->data + b->len, (size_t) n + 1, fmt, ap);
        va_end(ap);
    }
    b->len += (size_t) n;
}

/* The decimal digits of u, written backwards from the end of `end`; returns where they start. */
static char *digits(char *end, unsigned u) {
    char *p = end;
    do {
        *--p = (char) ('0' + u % 10);
        u /= 10;
    } while (u);
    return p;
}

void apply_buf_param(apply_buf *b, int n) {
    char tmp[24];
    char *start = digits(tmp + sizeof tmp, (unsigned) n);
    *--start = '$';
    apply_buf_add(b, start, (size_t) (tmp + sizeof tmp - start));
}

void apply_buf_uint(apply_buf *b, unsigned n) {
    char tmp[24];
    char *start = digits(tmp + sizeof tmp, n);
    apply_buf_add(b, start, (size_t) (tmp + sizeof tmp - start));
}

void apply_stmt_name(char *out, int id) {
    char tmp[24];
    char *start = digits(tmp + sizeof tmp, (unsigned) id);
    size_t n = (size_t) (tmp + sizeof tmp - start);
    memcpy(out, "pgtide_", 7);
    memcpy(out + 7, start, n);
    out[7 + n] = '\0';
}

void apply_buf_free(apply_buf *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* ---------------------------------------------------------------- statements */

void apply_stmt_reset(apply_stmt *st) {
    apply_buf_reset(&st->sql);
    apply_buf_reset(&st->values);
    st->nparams = 0;
}

void apply_stmt_free(apply_stmt *st) {
    apply_buf_free(&st->sql);
    apply_buf_free(&st->values);
    free(st->offsets);
    free(st->params);
    memset(st, 0, sizeof *st);
}

/* Add parameter $n (returns n) with the value of one TupleData column. */
int apply_stmt_add(apply_stmt *st, const pgoutput_value *v) {
    if (st->nparams == st->cap) {
        int cap = st->cap ? st->cap * 2 : 16;
        size_t *o = realloc(st->offsets, (size_t) cap * sizeof *o);
        if (!o) abort();
        st->offsets = o;
        const char **p = realloc(st->params, (size_t) cap * sizeof *p);
        if (!p) abort();
        st->params = p;
        st->cap = cap;
    }
    if (v->kind == PGOUTPUT_VALUE_NULL) {
        st->offsets[st->nparams] = SIZE_MAX;
    } else {
        st->offsets[st->nparams] = st->values.len;
        apply_buf_add(&st->values, (const char *) v->data, v->len);
        apply_buf_add(&st->values, "", 1); /* the terminator libpq needs for text values */
    }
    return ++st->nparams;
}

const char *const *apply_stmt_params(apply_stmt *st) {
    for (int i = 0; i < st->nparams; i++)
        st->params[i] = st->offsets[i] == SIZE_MAX ? NULL : st->values.data + st->offsets[i];
    return st->params;
}

/* ---------------------------------------------------------------- resolving a relation */

void apply_rel_clear(apply_rel *r) {
    free(r->slot);
    free(r->match);
    free(r->textcmp);
    memset(r, 0, sizeof *r);
}

/* Types whose values cannot be compared with '=' (no default btree/hash opclass). */
static bool type_needs_textcmp(uint32_t oid) {
    /* clang-format off */
    switch (oid) {
    case 114: case 199:           /* json, json[] */
    case 142: case 143:           /* xml, xml[] */
    case 600: case 1017:          /* point */
    case 601: case 1018:          /* lseg */
    case 602: case 1019:          /* path */
    case 603: case 1020:          /* box */
    case 604: case 1027:          /* polygon */
    case 628: case 629:           /* line */
    case 718: case 719:           /* circle */
        return true;
    default:
        return false;
    }
    /* clang-format on */
}

static int find_column(const apply_target *t, const char *name) {
    for (int j = 0; j < t->ncolumns; j++)
        if (strcmp(t->columns[j].source, name) == 0) return j;
    return -1;
}

static bool is_known(const apply_target *t, const char *name) {
    for (int j = 0; j < t->nknown; j++)
        if (strcmp(t->known[j], name) == 0) return true;
    return false;
}

int apply_rel_resolve(apply_rel *r, const relcache_relation *rel, apply_target *t, const apply_rel *previous,
                      char *err, size_t errlen) {
    int n = rel->ncols;
    memset(r, 0, sizeof *r);
    r->relid = rel->relid;
    r->version = rel->version;
    r->target = t;
    r->ncols = n;
    r->identity = rel->replica_identity;
    r->slot = calloc((size_t) (n ? n : 1), sizeof *r->slot);
    r->match = calloc((size_t) (n ? n : 1), sizeof *r->match);
    r->textcmp = calloc((size_t) (n ? n : 1), sizeof *r->textcmp);
    if (!r->slot || !r->match || !r->textcmp) abort();
    for (int i = 0; i < n; i++) {
        const relcache_column *c = &rel->columns[i];
        r->slot[i] = find_column(t, c->name);
        r->textcmp[i] = type_needs_textcmp(c->type_oid);
        if (r->slot[i] < 0 && !is_known(t, c->name) && !t->heartbeat && !t->ignored) {
            snprintf(
                err, errlen,
                "source table %s.%s now has a column \"%s\" that the task does not know: it was "
                "added (or renamed) on the source after the task was planned, and DDL replication "
                "did not bring it (incremental.ddl = false?). To continue: add the column to the target table %s (ALTER TABLE ... "
                "ADD COLUMN, same name and type) and run the task again, or exclude it in the "
                "playbook (select.columns) and run again",
                rel->schema, rel->name, c->name, t->display);
            apply_rel_clear(r);
            return -1;
        }
    }
    if (t->heartbeat || t->ignored) return 0; /* never applied */
    /* A selected column that this stream saw before and that is gone now was dropped. */
    if (previous && previous->target == t) {
        for (int j = 0; j < t->ncolumns; j++) {
            bool before = false, now = false;
            for (int i = 0; i < previous->ncols; i++) before |= previous->slot[i] == j;
            for (int i = 0; i < n; i++) now |= r->slot[i] == j;
            if (before && !now) {
                snprintf(err, errlen,
                         "column \"%s\" of source table %s.%s was dropped (or renamed) on the source "
                         "while the task was streaming, and DDL replication did not bring it "
                         "(incremental.ddl = false?). "
                         "To continue: make "
                         "the same change on the target table %s (or make the column nullable there), "
                         "then run the task again",
                         t->columns[j].source, rel->schema, rel->name, t->display);
                apply_rel_clear(r);
                return -1;
            }
        }
    }
    /* How rows are found: the target's key when the source flags those columns (so the
     * old-key tuple carries them), else the source's replica identity. */
    bool map_key = t->nkey > 0;
    for (int k = 0; k < t->nkey && map_key; k++) {
        bool found = false;
        for (int i = 0; i < n; i++)
            if (strcmp(rel->columns[i].name, t->key[k]) == 0 && rel->columns[i].is_key && r->slot[i] >= 0)
                found = true;
        map_key = found;
    }
    if (map_key) {
        for (int k = 0; k < t->nkey; k++)
            for (int i = 0; i < n; i++)
                if (strcmp(rel->columns[i].name, t->key[k]) == 0) r->match[i] = true;
        r->by_key = true;
        r->has_match = true;
        return 0;
    }
    bool any_key = false;
    for (int i = 0; i < n; i++) any_key |= rel->columns[i].is_key;
    if (!any_key) return 0; /* inserts only: the source cannot update or delete such rows */
    if (rel->replica_identity == 'f') {
        for (int i = 0; i < n; i++) r->match[i] = r->slot[i] >= 0;
        r->by_key = false;
        r->has_match = true;
        return 0;
    }
    for (int i = 0; i < n; i++) {
        if (!rel->columns[i].is_key) continue;
        if (r->slot[i] < 0) {
            snprintf(err, errlen,
                     "column \"%s\" of source table %s.%s is part of its replica identity but is not "
                     "migrated, so updates and deletes cannot find their rows on the target: select the "
                     "column in the playbook",
                     rel->columns[i].name, rel->schema, rel->name);
            apply_rel_clear(r);
            return -1;
        }
        r->match[i] = true;
    }
    r->by_key = true;
    r->has_match = true;
    return 0;
}

/* ---------------------------------------------------------------- statement texts */

static bool identity_always(const apply_rel *r, int i) {
    return r->slot[i] >= 0 && r->target->columns[r->slot[i]].identity_always;
}

static bool same_value(const pgoutput_value *a, const pgoutput_value *b) {
    return a->kind == b->kind && a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

/* What an UPDATE does with relation column i. */
typedef enum update_role { UPD_SKIP, UPD_SET, UPD_GUARD } update_role;

static update_role update_role_of(const apply_rel *r, const pgoutput_tuple *search, const pgoutput_tuple *row,
                                  bool set_keys, int i) {
    if (r->slot[i] < 0 || row->values[i].kind == PGOUTPUT_VALUE_UNCHANGED_TOAST) return UPD_SKIP;
    bool key = r->match[i] && r->by_key;
    if (key && !set_keys) return UPD_SKIP;
    if (!identity_always(r, i)) return UPD_SET;
    /* GENERATED ALWAYS identity: SET accepts only DEFAULT. Unchanged, the WHERE compares it. */
    if (r->match[i] && same_value(&search->values[i], &row->values[i])) return UPD_SKIP;
    /* A changed key stays in SET: the server's refusal says what happened. */
    if (key) return UPD_SET;
    return UPD_GUARD;
}

static void add_cond(apply_stmt *st, const apply_rel *r, int i, const pgoutput_value *v, bool *first) {
    apply_buf_adds(&st->sql, *first ? " WHERE " : " AND ");
    *first = false;
    const char *col = r->target->columns[r->slot[i]].target_sql;
    apply_buf_adds(&st->sql, col);
    if (v->kind == PGOUTPUT_VALUE_NULL) {
        apply_buf_adds(&st->sql, " IS NULL");
    } else {
        int n = apply_stmt_add(st, v);
        apply_buf_adds(&st->sql, r->textcmp[i] ? "::text = " : " = ");
        apply_buf_param(&st->sql, n);
    }
}

/* The match columns' values in `search`; for an UPDATE (`row` not NULL) also the new values of
 * its guarded columns (see update_role_of). */
static void add_where(apply_stmt *st, const apply_rel *r, const pgoutput_tuple *search,
                      const pgoutput_tuple *row, bool set_keys) {
    bool first = true;
    for (int i = 0; i < r->ncols; i++) {
        if (!r->match[i]) continue;
        const pgoutput_value *v = &search->values[i];
        if (v->kind == PGOUTPUT_VALUE_UNCHANGED_TOAST) continue; /* checked by the caller */
        add_cond(st, r, i, v, &first);
    }
    for (int i = 0; row && i < r->ncols; i++)
        if (update_role_of(r, search, row, set_keys, i) == UPD_GUARD)
            add_cond(st, r, i, &row->values[i], &first);
    if (first) apply_buf_adds(&st->sql, " WHERE true");
}

/* Check that every match column has a value in `search`. */
static int check_search(const apply_rel *r, const pgoutput_tuple *search, char *err, size_t errlen) {
    if (!r->has_match) {
        snprintf(err, errlen,
                 "table %s has no key and no replica identity FULL on the source, so its "
                 "rows cannot be found on the target",
                 r->target->display);
        return -1;
    }
    if (r->by_key) {
        for (int i = 0; i < r->ncols; i++) {
            if (r->match[i] && search->values[i].kind == PGOUTPUT_VALUE_UNCHANGED_TOAST) {
                snprintf(err, errlen,
                         "key column %s of table %s arrived without a value (an unchanged "
                         "out-of-line value): the row cannot be found",
                         r->target->columns[r->slot[i]].target_sql, r->target->display);
                return -1;
            }
        }
    }
    return 0;
}

/* The statement's head and, without a unique key, the one-row locator around the WHERE. */
static void add_locator(apply_stmt *st, const apply_rel *r, const pgoutput_tuple *search,
                        const pgoutput_tuple *row, bool set_keys) {
    const apply_target *t = r->target;
    if (r->by_key) {
        add_where(st, r, search, row, set_keys);
        return;
    }
    if (t->partitioned) {
        apply_buf_adds(&st->sql, " WHERE (tableoid, ctid) = (SELECT tableoid, ctid FROM ");
        apply_buf_adds(&st->sql, t->target_sql);
    } else {
        apply_buf_adds(&st->sql, " WHERE ctid = (SELECT ctid FROM ONLY ");
        apply_buf_adds(&st->sql, t->target_sql);
    }
    add_where(st, r, search, row, set_keys);
    apply_buf_adds(&st->sql, " LIMIT 1)");
}

void apply_sql_insert_into(apply_buf *b, const apply_rel *r) {
    apply_buf_adds(b, "INSERT INTO ");
    apply_buf_adds(b, r->target->target_sql);
    apply_buf_adds(b, r->target->partitioned ? " AS pgtide_t (" : " (");
}

void apply_sql_returning_inserted(apply_buf *b, const apply_rel *r) {
    const apply_target *t = r->target;
    if (!t->partitioned) {
        apply_buf_adds(b, " RETURNING (xmax = 0) AS inserted");
        return;
    }
    apply_buf_addf(b, " RETURNING NOT EXISTS (SELECT FROM %s pgtide_w WHERE ", t->target_sql);
    int k = 0;
    for (int i = 0; i < r->ncols; i++) {
        if (!r->match[i]) continue;
        const char *col = t->columns[r->slot[i]].target_sql;
        apply_buf_addf(b, "%spgtide_w.%s = pgtide_t.%s", k++ ? " AND " : "", col, col);
    }
    apply_buf_adds(b, ") AS inserted");
}

int apply_sql_insert(apply_stmt *st, const apply_rel *r, const pgoutput_tuple *row, apply_form form) {
    const apply_target *t = r->target;
    apply_stmt_reset(st);
    apply_sql_insert_into(&st->sql, r);
    int ncols = 0;
    bool overriding = false;
    for (int i = 0; i < r->ncols; i++) {
        if (r->slot[i] < 0 || row->values[i].kind == PGOUTPUT_VALUE_UNCHANGED_TOAST) continue;
        if (ncols++) apply_buf_adds(&st->sql, ", ");
        apply_buf_adds(&st->sql, t->columns[r->slot[i]].target_sql);
        overriding |= identity_always(r, i);
    }
    if (ncols == 0) {
        apply_stmt_reset(st);
        apply_buf_addf(&st->sql, "INSERT INTO %s DEFAULT VALUES", t->target_sql);
    } else {
        /* The source's identity values, not the target sequence's (other tables keep the
         * plain form, though the server would accept the clause there too). */
        apply_buf_adds(&st->sql, overriding ? ") OVERRIDING SYSTEM VALUE VALUES (" : ") VALUES (");
        int k = 0;
        for (int i = 0; i < r->ncols; i++) {
            if (r->slot[i] < 0 || row->values[i].kind == PGOUTPUT_VALUE_UNCHANGED_TOAST) continue;
            int n = apply_stmt_add(st, &row->values[i]);
            if (k++) apply_buf_adds(&st->sql, ", ");
            apply_buf_param(&st->sql, n);
        }
        apply_buf_adds(&st->sql, ")");
    }
    if (form == APPLY_FORM_UPSERT && r->by_key && ncols > 0) {
        apply_buf_adds(&st->sql, " ON CONFLICT (");
        int k = 0;
        for (int i = 0; i < r->ncols; i++) {
            if (!r->match[i]) continue;
            if (k++) apply_buf_adds(&st->sql, ", ");
            apply_buf_adds(&st->sql, t->columns[r->slot[i]].target_sql);
        }
        apply_buf_adds(&st->sql, ") DO UPDATE SET ");
        k = 0;
        for (int i = 0; i < r->ncols; i++) {
            if (r->slot[i] < 0 || r->match[i] || row->values[i].kind == PGOUTPUT_VALUE_UNCHANGED_TOAST)
                continue;
            if (identity_always(r, i)) continue; /* SET accepts only DEFAULT for it */
            const char *col = t->columns[r->slot[i]].target_sql;
            if (k++) apply_buf_adds(&st->sql, ", ");
            apply_buf_adds(&st->sql, col);
            apply_buf_adds(&st->sql, " = EXCLUDED.");
            apply_buf_adds(&st->sql, col);
        }
        if (k == 0) {
            /* Only key columns: the existing row already is the new one. */
            size_t at = st->sql.len - strlen(" DO UPDATE SET ");
            st->sql.len = at;
            st->sql.data[at] = '\0';
            apply_buf_adds(&st->sql, " DO NOTHING");
        }
        apply_sql_returning_inserted(&st->sql, r);
    } else if (form == APPLY_FORM_UPSERT || form == APPLY_FORM_INSERT_IGNORE) {
        apply_buf_adds(&st->sql, " ON CONFLICT DO NOTHING");
    }
    return ncols;
}

int apply_sql_update(apply_stmt *st, const apply_rel *r, const pgoutput_tuple *search,
                     const pgoutput_tuple *row, bool set_keys, char *err, size_t errlen) {
    const apply_target *t = r->target;
    apply_stmt_reset(st);
    if (check_search(r, search, err, errlen) < 0) return -1;
    apply_buf_adds(&st->sql, t->partitioned ? "UPDATE " : "UPDATE ONLY ");
    apply_buf_adds(&st->sql, t->target_sql);
    apply_buf_adds(&st->sql, " SET ");
    int k = 0, guards = 0;
    for (int i = 0; i < r->ncols; i++) {
        update_role role = update_role_of(r, search, row, set_keys, i);
        guards += role == UPD_GUARD;
        if (role != UPD_SET) continue;
        int n = apply_stmt_add(st, &row->values[i]);
        if (k++) apply_buf_adds(&st->sql, ", ");
        apply_buf_adds(&st->sql, t->columns[r->slot[i]].target_sql);
        apply_buf_adds(&st->sql, " = ");
        apply_buf_param(&st->sql, n);
    }
    /* Only guarded columns: a no-op assignment, so that the guard still checks the row. */
    for (int i = 0; k == 0 && guards && i < r->ncols; i++) {
        if (r->slot[i] < 0 || identity_always(r, i)) continue;
        const char *col = t->columns[r->slot[i]].target_sql;
        apply_buf_addf(&st->sql, "%s = %s", col, col);
        k++;
    }
    if (k == 0) {
        apply_stmt_reset(st);
        return 0;
    }
    add_locator(st, r, search, row, set_keys);
    return 1;
}

int apply_sql_delete(apply_stmt *st, const apply_rel *r, const pgoutput_tuple *search, char *err,
                     size_t errlen) {
    const apply_target *t = r->target;
    apply_stmt_reset(st);
    if (check_search(r, search, err, errlen) < 0) return -1;
    apply_buf_adds(&st->sql, t->partitioned ? "DELETE FROM " : "DELETE FROM ONLY ");
    apply_buf_adds(&st->sql, t->target_sql);
    add_locator(st, r, search, NULL, false);
    return 1;
}

/* Append to a fixed buffer, truncating; returns false once it is full. */
static bool text_add(char *out, size_t len, size_t *pos, const char *s, size_t n) {
    if (*pos + 1 >= len) return false;
    size_t room = len - 1 - *pos;
    if (n > room) n = room;
    if (n) memcpy(out + *pos, s, n);
    *pos += n;
    out[*pos] = '\0';
    return *pos + 1 < len;
}

void apply_sql_key_text(char *out, size_t len, const apply_rel *r, const pgoutput_tuple *search) {
    size_t pos = 0;
    int k = 0;
    if (!len) return;
    out[0] = '\0';
    for (int i = 0; i < r->ncols && i < search->ncols; i++) {
        bool show = r->slot[i] >= 0 && (r->has_match ? r->match[i] : true);
        if (!show) continue;
        const pgoutput_value *v = &search->values[i];
        const char *name = r->target->columns[r->slot[i]].source;
        if (k++ && !text_add(out, len, &pos, ", ", 2)) return;
        if (!text_add(out, len, &pos, name, strlen(name))) return;
        if (!text_add(out, len, &pos, "=", 1)) return;
        if (v->kind == PGOUTPUT_VALUE_NULL) {
            if (!text_add(out, len, &pos, "NULL", 4)) return;
        } else if (v->kind == PGOUTPUT_VALUE_UNCHANGED_TOAST) {
            if (!text_add(out, len, &pos, "(unchanged)", 11)) return;
        } else {
            bool cut = v->len > 60;
            if (!text_add(out, len, &pos, "'", 1)) return;
            if (!text_add(out, len, &pos, (const char *) v->data, cut ? 60 : v->len)) return;
            if (!text_add(out, len, &pos, cut ? "...'" : "'", cut ? 4 : 1)) return;
        }
    }
}

void apply_format_lsn(char *out, size_t len, uint64_t lsn) {
    snprintf(out, len, "%X/%X", (unsigned) (lsn >> 32), (unsigned) (lsn & 0xffffffffu));
}

int apply_parse_lsn(const char *s, uint64_t *out) {
    unsigned hi, lo;
    if (!s || sscanf(s, "%X/%X", &hi, &lo) != 2) return -1;
    *out = ((uint64_t) hi << 32) | lo;
    return 0;
}

void apply_target_free(apply_target *t) {
    if (!t) return;
    free(t->source_schema);
    free(t->source_name);
    free(t->target_sql);
    free(t->display);
    for (int j = 0; j < t->ncolumns; j++) {
        free(t->columns[j].source);
        free(t->columns[j].target_sql);
    }
    free(t->columns);
    for (int j = 0; j < t->nknown; j++) {
        free(t->known[j]);
        if (t->known_type) free(t->known_type[j]);
    }
    free(t->known);
    free(t->known_type);
    free(t->filter);
    free(t->follow_cascade);
    for (int j = 0; j < t->nfilter_columns; j++) free(t->filter_columns[j]);
    free(t->filter_columns);
    for (int j = 0; j < t->nkey; j++) free(t->key[j]);
    free(t->key);
    for (int j = 0; j < t->nroutes; j++) apply_target_free(t->routes[j]);
    free(t->routes);
    free(t);
}
