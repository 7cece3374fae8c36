/*
 * apply_filter.c — the statements for a table whose row filter pgtide applies itself, because
 * the publication cannot carry it (a filter on columns outside the replica identity, or a
 * source before PostgreSQL 15): the publication sends every change of the table, and each one
 * is applied by one statement that lets the target server evaluate the filter on the change's
 * values, passed as parameters. The filter keeps its SQL meaning; nothing here parses it.
 *
 * Each statement names the change's row after the source table (a CTE whose columns carry the
 * source's column names, cast to the target's types), so the filter reads as it does on the
 * source, and returns one row: (wanted, done, inserted, complete, decided).
 *   insert   inserted when the row matches, else nothing (wanted = 0);
 *   update   the row under the old key is deleted unless the new row matches under the same
 *            key; a matching new row is upserted under its key. A row that moves into the
 *            filter is inserted whole; a column the source sent as UNCHANGED_TOAST takes the
 *            value of the target's row under the old key, and when there is no such row the
 *            value is unknown: `complete` is false and apply_result.c stops the task rather
 *            than insert a row with a missing value. When the filter itself reads such a value
 *            (`decided` false), whether the row matches cannot be known: the task stops too,
 *            rather than keep or drop the row on a guess. (REPLICA IDENTITY FULL sends the whole
 *            old row, whose values are used first.)
 *   delete   the plain delete by key (apply_sql.c); finding no row is not a conflict, as the
 *            filter may have left the row out.
 * Such a table needs a unique key on the target (apply_rel_resolve checks it).
 */
#include "cdc/apply.h"

#include <stdio.h>
#include <string.h>

static void add_ident(apply_buf *b, const char *name) {
    apply_buf_adds(b, "\"");
    for (const char *p = name; *p; p++) {
        if (*p == '"')
            apply_buf_adds(b, "\"\"");
        else
            apply_buf_add(b, p, 1);
    }
    apply_buf_adds(b, "\"");
}

static void add_literal(apply_buf *b, const char *text) {
    apply_buf_adds(b, "'");
    for (const char *p = text; *p; p++) {
        if (*p == '\'')
            apply_buf_adds(b, "''");
        else
            apply_buf_add(b, p, 1);
    }
    apply_buf_adds(b, "'");
}

/* The SQL type of relation column i for the filter's row (text when the plan did not say). */
static const char *column_type(const apply_target *t, const char *name) {
    for (int j = 0; j < t->nknown; j++)
        if (strcmp(t->known[j], name) == 0)
            return t->known_type && t->known_type[j] ? t->known_type[j] : "text";
    return "text";
}

static const char *only(const apply_target *t) { return t->partitioned ? "" : "ONLY "; }

/* "x.k1 = $n AND x.k2 = $m": the target row under the key values of `search`. */
static void add_key_match(apply_stmt *st, const apply_rel *r, const pgoutput_tuple *search,
                          const char *alias) {
    int k = 0;
    for (int i = 0; i < r->ncols; i++) {
        if (!r->match[i]) continue;
        const char *col = r->target->columns[r->slot[i]].target_sql;
        if (k++) apply_buf_adds(&st->sql, " AND ");
        const pgoutput_value *v = &search->values[i];
        if (v->kind == PGOUTPUT_VALUE_NULL) {
            apply_buf_adds(&st->sql, alias);
            apply_buf_adds(&st->sql, col);
            apply_buf_adds(&st->sql, " IS NULL");
            continue;
        }
        int n = apply_stmt_add(st, v);
        apply_buf_adds(&st->sql, alias);
        apply_buf_adds(&st->sql, col);
        apply_buf_adds(&st->sql, r->textcmp[i] ? "::text = " : " = ");
        apply_buf_param(&st->sql, n);
    }
}

static bool in_filter(const apply_target *t, const char *name) {
    for (int j = 0; j < t->nfilter_columns; j++)
        if (strcmp(t->filter_columns[j], name) == 0) return true;
    return false;
}

/* What an UPDATE's row needs from the target: values of columns the source did not send
 * (UNCHANGED_TOAST) are taken from the old row when it is whole (REPLICA IDENTITY FULL), else
 * from the target's row under the old key; `needs_row` says the row must be there for them to
 * be known, `undecidable` that the filter reads such a value (and with NEVER, one the target
 * cannot have either: a column it does not migrate). */
typedef enum { DECIDED, DECIDED_IF_ROW, NEVER } decidable;

/* WITH "<source table>" AS (SELECT $1::type AS "col", ...), pgtide_keep AS (... WHERE filter). */
static void add_row_cte(apply_stmt *st, const apply_rel *r, const pgoutput_tuple *row,
                        const pgoutput_tuple *old, const pgoutput_tuple *search, const relcache_relation *rel,
                        bool *needs_row, decidable *decided) {
    const apply_target *t = r->target;
    *needs_row = false;
    *decided = DECIDED;
    apply_buf_adds(&st->sql, "WITH ");
    add_ident(&st->sql, t->source_name);
    apply_buf_adds(&st->sql, " AS (SELECT ");
    for (int i = 0; i < r->ncols; i++) {
        const char *name = rel->columns[i].name;
        const char *type = column_type(t, name);
        if (i) apply_buf_adds(&st->sql, ", ");
        const pgoutput_value *v = &row->values[i];
        if (v->kind == PGOUTPUT_VALUE_UNCHANGED_TOAST && r->identity == 'f' && old && old->ncols > i &&
            old->values[i].kind != PGOUTPUT_VALUE_UNCHANGED_TOAST)
            v = &old->values[i]; /* REPLICA IDENTITY FULL: the old row is whole, the value is there */
        if (v->kind != PGOUTPUT_VALUE_UNCHANGED_TOAST) {
            int n = apply_stmt_add(st, v);
            apply_buf_param(&st->sql, n);
            apply_buf_adds(&st->sql, "::");
            apply_buf_adds(&st->sql, type);
        } else if (r->slot[i] >= 0 && search) {
            *needs_row = true;
            if (in_filter(t, name) && *decided == DECIDED) *decided = DECIDED_IF_ROW;
            apply_buf_addf(&st->sql, "(SELECT x.%s FROM %s%s x WHERE ", t->columns[r->slot[i]].target_sql,
                           only(t), t->target_sql);
            add_key_match(st, r, search, "x.");
            apply_buf_adds(&st->sql, ")");
        } else {
            if (in_filter(t, name)) *decided = NEVER;
            apply_buf_adds(&st->sql, "NULL::");
            apply_buf_adds(&st->sql, type);
        }
        apply_buf_adds(&st->sql, " AS ");
        add_ident(&st->sql, name);
    }
    if (r->ncols == 0) apply_buf_adds(&st->sql, "1 AS pgtide_none");
    apply_buf_adds(&st->sql, "), pgtide_keep AS (SELECT * FROM ");
    add_ident(&st->sql, t->source_name);
    apply_buf_addf(&st->sql, " WHERE (%s))", t->filter);
}

static bool identity_always(const apply_rel *r, int i) {
    return r->slot[i] >= 0 && r->target->columns[r->slot[i]].identity_always;
}

/* INSERT INTO target (...) SELECT ... FROM pgtide_keep [ON CONFLICT ...] RETURNING (xmax = 0).
 * `upsert`: ON CONFLICT (key) DO UPDATE, setting the columns the change carries. */
static void add_insert(apply_stmt *st, const apply_rel *r, const pgoutput_tuple *row,
                       const relcache_relation *rel, apply_form form, bool upsert) {
    const apply_target *t = r->target;
    apply_sql_insert_into(&st->sql, r);
    int k = 0;
    bool overriding = false;
    for (int i = 0; i < r->ncols; i++) {
        if (r->slot[i] < 0) continue;
        if (k++) apply_buf_adds(&st->sql, ", ");
        apply_buf_adds(&st->sql, t->columns[r->slot[i]].target_sql);
        overriding |= identity_always(r, i);
    }
    apply_buf_adds(&st->sql, overriding ? ") OVERRIDING SYSTEM VALUE SELECT " : ") SELECT ");
    k = 0;
    for (int i = 0; i < r->ncols; i++) {
        if (r->slot[i] < 0) continue;
        if (k++) apply_buf_adds(&st->sql, ", ");
        add_ident(&st->sql, rel->columns[i].name);
    }
    apply_buf_adds(&st->sql, " FROM pgtide_keep");
    if (upsert && r->by_key) {
        apply_buf_adds(&st->sql, " ON CONFLICT (");
        k = 0;
        for (int i = 0; i < r->ncols; i++)
            if (r->match[i]) {
                if (k++) apply_buf_adds(&st->sql, ", ");
                apply_buf_adds(&st->sql, t->columns[r->slot[i]].target_sql);
            }
        apply_buf_adds(&st->sql, ")");
        k = 0;
        for (int i = 0; i < r->ncols; i++) {
            if (r->slot[i] < 0 || r->match[i] || identity_always(r, i)) continue;
            if (row->values[i].kind == PGOUTPUT_VALUE_UNCHANGED_TOAST) continue; /* the target keeps it */
            const char *col = t->columns[r->slot[i]].target_sql;
            apply_buf_adds(&st->sql, k++ ? ", " : " DO UPDATE SET ");
            apply_buf_adds(&st->sql, col);
            apply_buf_adds(&st->sql, " = EXCLUDED.");
            apply_buf_adds(&st->sql, col);
        }
        if (k == 0) apply_buf_adds(&st->sql, " DO NOTHING");
    } else if (form != APPLY_FORM_INSERT) {
        apply_buf_adds(&st->sql, " ON CONFLICT DO NOTHING");
    }
    if (upsert && r->by_key)
        apply_sql_returning_inserted(&st->sql, r);
    else
        apply_buf_adds(&st->sql,
                       t->partitioned ? " RETURNING true AS inserted" : " RETURNING (xmax = 0) AS inserted");
    if (t->follow_cascade && r->by_key) {
        /* the key of a row moving in, by source column name, for the rows that follow it
         * (apply_follow.c) */
        apply_buf_adds(&st->sql, ", pg_catalog.json_build_object(");
        k = 0;
        for (int i = 0; i < r->ncols; i++) {
            if (!r->match[i]) continue;
            if (k++) apply_buf_adds(&st->sql, ", ");
            add_literal(&st->sql, rel->columns[i].name);
            apply_buf_adds(&st->sql, ", ");
            apply_buf_adds(&st->sql, t->columns[r->slot[i]].target_sql);
            apply_buf_adds(&st->sql, "::text");
        }
        apply_buf_adds(&st->sql, ")::text AS pgtide_key");
    }
}

/* The statement's one row: wanted, done, inserted, and whether the values taken from the
 * target were there (complete) and the filter could be decided (decided). */
static void add_result(apply_stmt *st, const apply_rel *r, const pgoutput_tuple *search, bool needs_row,
                       decidable decided) {
    const apply_target *t = r->target;
    apply_buf_adds(&st->sql,
                   ") SELECT (SELECT count(*) FROM pgtide_keep) AS wanted, (SELECT count(*) FROM pgtide_put) "
                   "AS done, coalesce((SELECT bool_or(inserted) FROM pgtide_put), false) AS inserted, ");
    for (int k = 0; k < 2; k++) {
        bool row_needed = k == 0 ? needs_row : decided == DECIDED_IF_ROW;
        if (k == 1 && decided == NEVER) {
            apply_buf_adds(&st->sql, "false");
        } else if (row_needed) {
            apply_buf_addf(&st->sql, "EXISTS (SELECT FROM %s%s x WHERE ", only(t), t->target_sql);
            add_key_match(st, r, search, "x.");
            apply_buf_adds(&st->sql, ")");
        } else {
            apply_buf_adds(&st->sql, "true");
        }
        apply_buf_adds(&st->sql, k == 0 ? " AS complete, " : " AS decided");
    }
    if (t->follow_cascade && search && r->by_key)
        apply_buf_adds(&st->sql, ", (SELECT pgtide_key FROM pgtide_put WHERE inserted LIMIT 1) AS moved_in");
}

void apply_sql_filtered_insert(apply_stmt *st, const apply_rel *r, const relcache_relation *rel,
                               const pgoutput_tuple *row, apply_form form) {
    bool needs_row;
    decidable decided;
    apply_stmt_reset(st);
    add_row_cte(st, r, row, NULL, NULL, rel, &needs_row, &decided);
    apply_buf_adds(&st->sql, ", pgtide_put AS (");
    add_insert(st, r, row, rel, form, form == APPLY_FORM_UPSERT);
    add_result(st, r, NULL, false, decided == NEVER ? NEVER : DECIDED);
}

int apply_sql_filtered_update(apply_stmt *st, const apply_rel *r, const relcache_relation *rel,
                              const pgoutput_tuple *old, const pgoutput_tuple *row, bool key_changed,
                              char *err, size_t errlen) {
    const apply_target *t = r->target;
    apply_stmt_reset(st);
    if (!r->by_key) {
        snprintf(err, errlen,
                 "table %s has a row filter (or on.row) that pgtide applies itself, and no unique key on the "
                 "target to find its rows by: give the table a primary key or a unique index on both sides",
                 t->display);
        return -1;
    }
    const pgoutput_tuple *search = old && old->ncols ? old : row;
    for (int i = 0; i < r->ncols; i++) {
        if (r->match[i] && search->values[i].kind == PGOUTPUT_VALUE_UNCHANGED_TOAST) {
            snprintf(err, errlen,
                     "key column %s of table %s arrived without a value (an unchanged out-of-line value): "
                     "the row cannot be found",
                     t->columns[r->slot[i]].target_sql, t->display);
            return -1;
        }
    }
    bool needs_row;
    decidable decided;
    add_row_cte(st, r, row, old, search, rel, &needs_row, &decided);
    /* The row under the old key goes when the key changed or the new row is filtered out. */
    apply_buf_addf(&st->sql, ", pgtide_gone AS (DELETE FROM %s%s WHERE ", only(t), t->target_sql);
    add_key_match(st, r, search, "");
    if (!key_changed) apply_buf_adds(&st->sql, " AND NOT EXISTS (SELECT FROM pgtide_keep)");
    if (t->follow_cascade) {
        /* A row leaving the filter takes the rows that followed it (select.rows_follow). */
        apply_buf_adds(&st->sql, " RETURNING *), pgtide_out AS (SELECT * FROM pgtide_gone WHERE NOT EXISTS "
                                 "(SELECT FROM pgtide_keep))");
        apply_buf_adds(&st->sql, t->follow_cascade);
        apply_buf_adds(&st->sql, ", pgtide_put AS (");
    } else {
        apply_buf_adds(&st->sql, " RETURNING 1), pgtide_put AS (");
    }
    add_insert(st, r, row, rel, APPLY_FORM_UPSERT, true);
    add_result(st, r, search, needs_row, decided);
    return 1;
}
