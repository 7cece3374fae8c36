/*
 * test_apply_sql.c — the statements apply sends for each change, from a relation as the stream
 * describes it and the task's map: unchanged TOAST values left out, rows found by key or by
 * every column (NULL-safe, one row), ONLY on plain tables, upserts, GENERATED ALWAYS identity
 * columns, key text, and the resolution errors an operator sees (unknown column, dropped column,
 * unselected key column).
 * TAP output; exit status 1 on any failure.
 */
#include "cdc/apply.h"
#include "tap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- fixtures */

static pgoutput_relation_column wire_cols[8];

/* A relcache entry for relation `relid` with `n` columns named by `names`, flagged by `keys`. */
static const relcache_relation *describe(relcache *cache, uint32_t relid, char ident, int n,
                                         const char *const *names, const int *keys, const uint32_t *types) {
    pgoutput_relation rel;
    memset(&rel, 0, sizeof rel);
    rel.relid = relid;
    rel.schema.data = "public";
    rel.schema.len = 6;
    rel.name.data = "t";
    rel.name.len = 1;
    rel.replica_identity = ident;
    rel.ncols = (uint16_t) n;
    for (int i = 0; i < n; i++) {
        wire_cols[i].flags = keys[i] ? PGOUTPUT_COLUMN_FLAG_KEY : 0;
        wire_cols[i].name.data = names[i];
        wire_cols[i].name.len = strlen(names[i]);
        wire_cols[i].type_oid = types ? types[i] : 23;
    }
    rel.columns = wire_cols;
    char err[256];
    if (relcache_put(cache, &rel, err, sizeof err) != 0) abort();
    return relcache_get(cache, relid);
}

static apply_target *target(const char *const *selected, int nselected, const char *const *known, int nknown,
                            const char *const *key, int nkey, bool partitioned) {
    apply_target *t = calloc(1, sizeof *t);
    t->source_schema = strdup("public");
    t->source_name = strdup("t");
    t->target_sql = strdup("\"shop\".\"t\"");
    t->display = strdup("shop.t");
    t->columns = calloc((size_t) nselected, sizeof *t->columns);
    for (int i = 0; i < nselected; i++) {
        t->columns[i].source = strdup(selected[i]);
        char q[64];
        snprintf(q, sizeof q, "\"%s\"", strcmp(selected[i], "login") == 0 ? "username" : selected[i]);
        t->columns[i].target_sql = strdup(q);
    }
    t->ncolumns = nselected;
    t->known = calloc((size_t) (nknown ? nknown : 1), sizeof *t->known);
    for (int i = 0; i < nknown; i++) t->known[i] = strdup(known[i]);
    t->nknown = nknown;
    t->key = calloc((size_t) (nkey ? nkey : 1), sizeof *t->key);
    for (int i = 0; i < nkey; i++) t->key[i] = strdup(key[i]);
    t->nkey = nkey;
    t->partitioned = partitioned;
    return t;
}

static pgoutput_value text(const char *s) {
    pgoutput_value v = { PGOUTPUT_VALUE_TEXT, (uint32_t) strlen(s), (const uint8_t *) s };
    return v;
}
static const pgoutput_value NUL = { PGOUTPUT_VALUE_NULL, 0, NULL };
static const pgoutput_value TOAST = { PGOUTPUT_VALUE_UNCHANGED_TOAST, 0, NULL };

static char *params_text(apply_stmt *st) {
    static char buf[512];
    const char *const *p = apply_stmt_params(st);
    buf[0] = '\0';
    for (int i = 0; i < st->nparams; i++) {
        strcat(buf, i ? "|" : "");
        strcat(buf, p[i] ? p[i] : "NULL");
    }
    return buf;
}

/* ---------------------------------------------------------------- cases */

static void test_primary_key(void) {
    relcache *cache = relcache_create();
    const char *names[] = { "id", "login", "doc" };
    const int keys[] = { 1, 0, 0 };
    const relcache_relation *rel = describe(cache, 1, 'd', 3, names, keys, NULL);
    apply_target *t = target(names, 3, names, 3, (const char *[]){ "id" }, 1, false);
    apply_rel r;
    char err[512];
    tap_check(apply_rel_resolve(&r, rel, t, NULL, err, sizeof err) == 0,
              "a table with a primary key resolves");
    tap_check(r.by_key && r.match[0] && !r.match[1], "rows are found by the key");
    apply_stmt st = { 0 };

    pgoutput_value row_v[] = { text("7"), text("ann"), text("big document") };
    pgoutput_tuple row = { 3, row_v };
    apply_sql_insert(&st, &r, &row, APPLY_FORM_INSERT);
    tap_check_str(st.sql.data,
                  "INSERT INTO \"shop\".\"t\" (\"id\", \"username\", \"doc\") VALUES ($1, $2, $3)",
                  "insert names every column, renamed ones by their target name");
    tap_check_str(params_text(&st), "7|ann|big document", "insert parameters");

    pgoutput_value upd_v[] = { text("7"), text("bob"), TOAST };
    pgoutput_tuple upd = { 3, upd_v };
    tap_check(apply_sql_update(&st, &r, &upd, &upd, false, err, sizeof err) == 1, "update builds");
    tap_check_str(st.sql.data, "UPDATE ONLY \"shop\".\"t\" SET \"username\" = $1 WHERE \"id\" = $2",
                  "an unchanged TOAST value stays out of SET, the unchanged key too");
    tap_check_str(params_text(&st), "bob|7", "update parameters: SET values, then the key");

    pgoutput_value old_v[] = { text("7"), NUL, NUL };
    pgoutput_tuple old = { 3, old_v };
    pgoutput_value moved_v[] = { text("8"), text("bob"), TOAST };
    pgoutput_tuple moved = { 3, moved_v };
    apply_sql_update(&st, &r, &old, &moved, true, err, sizeof err);
    tap_check_str(st.sql.data,
                  "UPDATE ONLY \"shop\".\"t\" SET \"id\" = $1, \"username\" = $2 WHERE \"id\" = $3",
                  "a primary-key update sets the new key and finds the row by the old one");
    tap_check_str(params_text(&st), "8|bob|7", "primary-key update parameters");

    apply_sql_delete(&st, &r, &old, err, sizeof err);
    tap_check_str(st.sql.data, "DELETE FROM ONLY \"shop\".\"t\" WHERE \"id\" = $1", "delete by key");

    apply_sql_insert(&st, &r, &row, APPLY_FORM_UPSERT);
    tap_check_str(
        st.sql.data,
        "INSERT INTO \"shop\".\"t\" (\"id\", \"username\", \"doc\") VALUES ($1, $2, $3) "
        "ON CONFLICT (\"id\") DO UPDATE SET \"username\" = EXCLUDED.\"username\", \"doc\" = EXCLUDED.\"doc\" "
        "RETURNING (xmax = 0) AS inserted",
        "overwrite: an upsert on the key that says whether it inserted");
    apply_sql_insert(&st, &r, &row, APPLY_FORM_INSERT_IGNORE);
    tap_check(strstr(st.sql.data, " ON CONFLICT DO NOTHING") != NULL, "skip: ON CONFLICT DO NOTHING");

    char key[112];
    apply_sql_key_text(key, sizeof key, &r, &old);
    tap_check_str(key, "id='7'", "the key as a message shows it");

    pgoutput_value toast_key_v[] = { TOAST, text("x"), NUL };
    pgoutput_tuple toast_key = { 3, toast_key_v };
    tap_check(apply_sql_delete(&st, &r, &toast_key, err, sizeof err) < 0 && strstr(err, "without a value"),
              "a key without a value is an error, not a wrong WHERE");

    apply_stmt_free(&st);
    apply_rel_clear(&r);
    apply_target_free(t);
    relcache_destroy(cache);
}

static void test_full_identity(void) {
    relcache *cache = relcache_create();
    const char *names[] = { "a", "b", "j" };
    const int keys[] = { 1, 1, 1 };
    const uint32_t types[] = { 23, 25, 114 };
    const relcache_relation *rel = describe(cache, 2, 'f', 3, names, keys, types);
    apply_target *t = target(names, 3, names, 3, NULL, 0, false);
    apply_rel r;
    char err[512];
    tap_check(apply_rel_resolve(&r, rel, t, NULL, err, sizeof err) == 0,
              "REPLICA IDENTITY FULL without a key resolves");
    tap_check(!r.by_key && r.has_match, "rows are found by every column");
    apply_stmt st = { 0 };
    pgoutput_value old_v[] = { text("1"), NUL, text("{\"k\": 1}") };
    pgoutput_tuple old = { 3, old_v };
    apply_sql_delete(&st, &r, &old, err, sizeof err);
    tap_check_str(st.sql.data,
                  "DELETE FROM ONLY \"shop\".\"t\" WHERE ctid = (SELECT ctid FROM ONLY \"shop\".\"t\" "
                  "WHERE \"a\" = $1 AND \"b\" IS NULL AND \"j\"::text = $2 LIMIT 1)",
                  "one row of identical duplicates, NULL matched with IS NULL, json compared as text");
    tap_check_str(params_text(&st), "1|{\"k\": 1}", "parameters leave the NULL out");
    pgoutput_value new_v[] = { text("1"), text("set"), TOAST };
    pgoutput_tuple row = { 3, new_v };
    apply_sql_update(&st, &r, &old, &row, true, err, sizeof err);
    tap_check_str(st.sql.data,
                  "UPDATE ONLY \"shop\".\"t\" SET \"a\" = $1, \"b\" = $2 WHERE ctid = (SELECT ctid FROM ONLY "
                  "\"shop\".\"t\" WHERE \"a\" = $3 AND \"b\" IS NULL AND \"j\"::text = $4 LIMIT 1)",
                  "update of one row by all old values");
    apply_rel_clear(&r);

    /* The same relation into a partitioned target with a key from the map. */
    t->partitioned = true;
    t->key = realloc(t->key, sizeof *t->key);
    t->key[0] = strdup("a");
    t->nkey = 1;
    tap_check(apply_rel_resolve(&r, rel, t, NULL, err, sizeof err) == 0, "with the target's key");
    tap_check(r.by_key && r.match[0] && !r.match[1] && !r.match[2],
              "FULL identity but a target key: find by the key");
    apply_sql_delete(&st, &r, &old, err, sizeof err);
    tap_check_str(st.sql.data, "DELETE FROM \"shop\".\"t\" WHERE \"a\" = $1",
                  "no ONLY on a partitioned target");
    apply_rel_clear(&r);
    free(t->key[0]);
    t->nkey = 0;
    tap_check(apply_rel_resolve(&r, rel, t, NULL, err, sizeof err) == 0, "partitioned without a key");
    apply_sql_delete(&st, &r, &old, err, sizeof err);
    tap_check(strstr(st.sql.data,
                     "WHERE (tableoid, ctid) = (SELECT tableoid, ctid FROM \"shop\".\"t\" WHERE") != NULL,
              "one row of a partitioned target by tableoid and ctid");
    apply_stmt_free(&st);
    apply_rel_clear(&r);
    apply_target_free(t);
    relcache_destroy(cache);
}

/* GENERATED ALWAYS identity columns on the target: inserts override, updates never SET them
 * (the server refuses) but compare the new value, unless a key is being changed. */
static void test_identity_always(void) {
    relcache *cache = relcache_create();
    char err[512];
    apply_rel r;
    apply_stmt st = { 0 };

    /* (id identity always primary key, v) */
    const char *names[] = { "id", "v" };
    const relcache_relation *rel = describe(cache, 5, 'd', 2, names, (const int[]){ 1, 0 }, NULL);
    apply_target *t = target(names, 2, names, 2, (const char *[]){ "id" }, 1, false);
    t->columns[0].identity_always = true;
    tap_check(apply_rel_resolve(&r, rel, t, NULL, err, sizeof err) == 0, "identity key: resolves");
    pgoutput_value row_v[] = { text("7"), text("a") };
    pgoutput_tuple row = { 2, row_v };
    apply_sql_insert(&st, &r, &row, APPLY_FORM_INSERT);
    tap_check_str(st.sql.data,
                  "INSERT INTO \"shop\".\"t\" (\"id\", \"v\") OVERRIDING SYSTEM VALUE VALUES ($1, $2)",
                  "insert of an identity always column overrides the system value");
    apply_sql_insert(&st, &r, &row, APPLY_FORM_UPSERT);
    tap_check_str(
        st.sql.data,
        "INSERT INTO \"shop\".\"t\" (\"id\", \"v\") OVERRIDING SYSTEM VALUE VALUES ($1, $2) "
        "ON CONFLICT (\"id\") DO UPDATE SET \"v\" = EXCLUDED.\"v\" RETURNING (xmax = 0) AS inserted",
        "upsert overrides too");
    tap_check(apply_sql_update(&st, &r, &row, &row, false, err, sizeof err) == 1,
              "identity key: update builds");
    tap_check_str(st.sql.data, "UPDATE ONLY \"shop\".\"t\" SET \"v\" = $1 WHERE \"id\" = $2",
                  "update of a row with an identity key: the key only in WHERE");
    pgoutput_value old_v[] = { text("7"), text("a") };
    pgoutput_tuple old = { 2, old_v };
    apply_sql_update(&st, &r, &old, &row, true, err, sizeof err);
    tap_check_str(st.sql.data, "UPDATE ONLY \"shop\".\"t\" SET \"v\" = $1 WHERE \"id\" = $2",
                  "an old tuple with the same identity key (REPLICA IDENTITY FULL): not set");
    pgoutput_value moved_v[] = { text("8"), text("a") };
    pgoutput_tuple moved = { 2, moved_v };
    apply_sql_update(&st, &r, &old, &moved, true, err, sizeof err);
    tap_check_str(st.sql.data, "UPDATE ONLY \"shop\".\"t\" SET \"id\" = $1, \"v\" = $2 WHERE \"id\" = $3",
                  "a changed identity key stays in SET (the server says why it cannot)");
    tap_check_str(params_text(&st), "8|a|7", "key-changing update parameters");
    apply_rel_clear(&r);
    apply_target_free(t);

    /* (id primary key, hid identity always, v) */
    const char *names3[] = { "id", "hid", "v" };
    rel = describe(cache, 6, 'd', 3, names3, (const int[]){ 1, 0, 0 }, NULL);
    t = target(names3, 3, names3, 3, (const char *[]){ "id" }, 1, false);
    t->columns[1].identity_always = true;
    tap_check(apply_rel_resolve(&r, rel, t, NULL, err, sizeof err) == 0, "identity non-key: resolves");
    pgoutput_value row3_v[] = { text("1"), text("10"), text("x") };
    pgoutput_tuple row3 = { 3, row3_v };
    apply_sql_update(&st, &r, &row3, &row3, false, err, sizeof err);
    tap_check_str(st.sql.data, "UPDATE ONLY \"shop\".\"t\" SET \"v\" = $1 WHERE \"id\" = $2 AND \"hid\" = $3",
                  "an identity column left out of SET is compared with its new value");
    tap_check_str(params_text(&st), "x|1|10", "guarded update parameters");
    apply_sql_insert(&st, &r, &row3, APPLY_FORM_UPSERT);
    tap_check_str(
        st.sql.data,
        "INSERT INTO \"shop\".\"t\" (\"id\", \"hid\", \"v\") OVERRIDING SYSTEM VALUE VALUES "
        "($1, $2, $3) ON CONFLICT (\"id\") DO UPDATE SET \"v\" = EXCLUDED.\"v\" RETURNING (xmax = 0) AS inserted",
        "upsert leaves the identity column out of DO UPDATE SET");
    pgoutput_value only_v[] = { text("1"), text("11"), TOAST };
    pgoutput_tuple only = { 3, only_v };
    tap_check(apply_sql_update(&st, &r, &only, &only, false, err, sizeof err) == 1,
              "nothing else to set: still built");
    tap_check_str(st.sql.data,
                  "UPDATE ONLY \"shop\".\"t\" SET \"id\" = \"id\" WHERE \"id\" = $1 AND \"hid\" = $2",
                  "a no-op SET keeps the guard");
    apply_rel_clear(&r);
    apply_target_free(t);

    /* Keyless, REPLICA IDENTITY FULL: (hid identity always, v) */
    rel = describe(cache, 7, 'f', 2, (const char *[]){ "hid", "v" }, (const int[]){ 1, 1 }, NULL);
    t = target((const char *[]){ "hid", "v" }, 2, (const char *[]){ "hid", "v" }, 2, NULL, 0, false);
    t->columns[0].identity_always = true;
    tap_check(apply_rel_resolve(&r, rel, t, NULL, err, sizeof err) == 0 && !r.by_key,
              "identity, no key: by every column");
    pgoutput_value kold_v[] = { text("3"), text("p") };
    pgoutput_tuple kold = { 2, kold_v };
    pgoutput_value knew_v[] = { text("3"), text("q") };
    pgoutput_tuple knew = { 2, knew_v };
    apply_sql_update(&st, &r, &kold, &knew, true, err, sizeof err);
    tap_check_str(st.sql.data,
                  "UPDATE ONLY \"shop\".\"t\" SET \"v\" = $1 WHERE ctid = (SELECT ctid FROM ONLY "
                  "\"shop\".\"t\" WHERE \"hid\" = $2 AND \"v\" = $3 LIMIT 1)",
                  "an unchanged identity column: compared once, with the old values");
    pgoutput_value kmoved_v[] = { text("4"), text("q") };
    pgoutput_tuple kmoved = { 2, kmoved_v };
    apply_sql_update(&st, &r, &kold, &kmoved, true, err, sizeof err);
    tap_check_str(st.sql.data,
                  "UPDATE ONLY \"shop\".\"t\" SET \"v\" = $1 WHERE ctid = (SELECT ctid FROM ONLY "
                  "\"shop\".\"t\" WHERE \"hid\" = $2 AND \"v\" = $3 AND \"hid\" = $4 LIMIT 1)",
                  "a changed identity value guards the row inside the locator (no row: a conflict)");
    tap_check_str(params_text(&st), "q|3|p|4", "locator guard parameters");
    apply_rel_clear(&r);
    apply_target_free(t);

    /* The same shape without identity columns keeps the plain statements. */
    rel = describe(cache, 8, 'd', 2, names, (const int[]){ 1, 0 }, NULL);
    t = target(names, 2, names, 2, (const char *[]){ "id" }, 1, false);
    tap_check(apply_rel_resolve(&r, rel, t, NULL, err, sizeof err) == 0, "plain table: resolves");
    apply_sql_insert(&st, &r, &row, APPLY_FORM_INSERT);
    tap_check_str(st.sql.data, "INSERT INTO \"shop\".\"t\" (\"id\", \"v\") VALUES ($1, $2)",
                  "no OVERRIDING clause without an identity always column");
    apply_sql_update(&st, &r, &old, &moved, true, err, sizeof err);
    tap_check_str(st.sql.data, "UPDATE ONLY \"shop\".\"t\" SET \"id\" = $1, \"v\" = $2 WHERE \"id\" = $3",
                  "no guard without an identity always column");
    apply_rel_clear(&r);
    apply_target_free(t);
    apply_stmt_free(&st);
    relcache_destroy(cache);
}

static void test_resolution_errors(void) {
    relcache *cache = relcache_create();
    char err[512];
    apply_rel r, before;
    const char *names[] = { "id", "v", "extra" };
    const int keys[] = { 1, 0, 0 };
    const relcache_relation *rel = describe(cache, 3, 'd', 3, names, keys, NULL);
    apply_target *t = target(names, 2, names, 2, (const char *[]){ "id" }, 1, false);
    tap_check(apply_rel_resolve(&r, rel, t, NULL, err, sizeof err) < 0 &&
                  strstr(err, "now has a column \"extra\"") && strstr(err, "run the task again"),
              "a column the plan did not know stops with how to continue");

    t->known = realloc(t->known, 3 * sizeof *t->known);
    t->known[2] = strdup("extra");
    t->nknown = 3;
    tap_check(apply_rel_resolve(&r, rel, t, NULL, err, sizeof err) == 0,
              "a column excluded by the playbook is ignored");
    tap_check(r.slot[2] == -1, "and never applied");
    before = r;

    const relcache_relation *rel2 = describe(cache, 3, 'd', 2, (const char *[]){ "id", "extra" }, keys, NULL);
    tap_check(apply_rel_resolve(&r, rel2, t, &before, err, sizeof err) < 0 && strstr(err, "\"v\"") &&
                  strstr(err, "dropped"),
              "a selected column that disappears mid-stream stops");
    apply_rel_clear(&before);

    const relcache_relation *rel3 =
        describe(cache, 4, 'd', 2, (const char *[]){ "id", "v" }, (const int[]){ 1, 0 }, NULL);
    apply_target *t2 = target((const char *[]){ "v" }, 1, (const char *[]){ "id", "v" }, 2, NULL, 0, false);
    tap_check(apply_rel_resolve(&r, rel3, t2, NULL, err, sizeof err) < 0 && strstr(err, "replica identity"),
              "a key column that is not migrated is an error");
    apply_target_free(t);
    apply_target_free(t2);
    relcache_destroy(cache);
}

static void test_lsn(void) {
    char buf[32];
    uint64_t v = 0;
    apply_format_lsn(buf, sizeof buf, ((uint64_t) 0x1A << 32) | 0x2B3C4D);
    tap_check_str(buf, "1A/2B3C4D", "LSN formatting");
    tap_check(apply_parse_lsn("1A/2B3C4D", &v) == 0 && v == (((uint64_t) 0x1A << 32) | 0x2B3C4D),
              "LSN parsing");
    tap_check(apply_parse_lsn("nope", &v) < 0, "a malformed LSN is refused");
}

/* The appends that replaced printf in the statements written for every change, and addf's
 * one-pass write with its second pass when the text is longer than the room it made. */
static void test_appends(void) {
    apply_buf b = { 0 };
    apply_buf_param(&b, 0);
    apply_buf_adds(&b, " ");
    apply_buf_param(&b, 1);
    apply_buf_param(&b, 65535);
    apply_buf_adds(&b, " ");
    apply_buf_param(&b, 2147483647);
    tap_check_str(b.data, "$0 $1$65535 $2147483647", "parameters");
    char name[24];
    apply_stmt_name(name, 7);
    tap_check_str(name, "pgtide_7", "a statement's name");
    apply_stmt_name(name, 2147483647);
    tap_check_str(name, "pgtide_2147483647", "the largest statement number");
    char longer[300];
    memset(longer, 'y', sizeof longer - 1);
    longer[sizeof longer - 1] = '\0';
    apply_buf_reset(&b);
    apply_buf_addf(&b, "%s=%d", "k", 5);
    apply_buf_addf(&b, "[%s]", longer);
    tap_check(b.len == 3 + 2 + 299 && strlen(b.data) == b.len && b.data[3] == '[' &&
                  b.data[b.len - 1] == ']' && b.data[b.len - 2] == 'y',
              "addf: a short text and one longer than its first room");
    apply_buf_free(&b);
}

/* An empty value may arrive without a data pointer (the kill-anywhere suite's '' and empty
 * bytea under UBSan: "null pointer passed as argument 2" to memcpy). */
static void test_empty_value(void) {
    apply_buf b = { 0 };
    apply_buf_adds(&b, "x");
    apply_buf_add(&b, NULL, 0);
    tap_check_str(b.data, "x", "appending an empty value without a pointer");
    apply_buf_free(&b);
}

/* A filter pgtide applies (apply_filter.c): the change's row is named after the source table,
 * with source column names and the target's types, and the filter is put in as it is. */
static void test_filtered(void) {
    relcache *cache = relcache_create();
    const char *names[] = { "id", "login", "doc" };
    const int keys[] = { 1, 0, 0 };
    const relcache_relation *rel = describe(cache, 9, 'd', 3, names, keys, NULL);
    apply_target *t = target(names, 3, names, 3, (const char *[]){ "id" }, 1, false);
    t->filter = strdup("login <> 'x' AND t.doc IS NOT NULL");
    t->known_type = calloc(3, sizeof *t->known_type);
    t->known_type[0] = strdup("integer");
    t->known_type[1] = strdup("character varying(20)");
    t->filter_columns = calloc(2, sizeof *t->filter_columns);
    t->filter_columns[0] = strdup("login");
    t->filter_columns[1] = strdup("doc");
    t->nfilter_columns = 2;
    apply_rel r;
    char err[512];
    tap_check(apply_rel_resolve(&r, rel, t, NULL, err, sizeof err) == 0, "a filtered table resolves");
    apply_stmt st = { 0 };
    pgoutput_value row_v[] = { text("7"), text("ann"), NUL };
    pgoutput_tuple row = { 3, row_v };
    apply_sql_filtered_insert(&st, &r, rel, &row, APPLY_FORM_INSERT);
    tap_check(
        strncmp(
            st.sql.data,
            "WITH \"t\" AS (SELECT $1::integer AS \"id\", $2::character varying(20) AS \"login\", "
            "$3::text AS \"doc\"), pgtide_keep AS (SELECT * FROM \"t\" WHERE (login <> 'x' AND t.doc IS "
            "NOT NULL)), pgtide_put AS (INSERT INTO \"shop\".\"t\" (\"id\", \"username\", \"doc\") "
            "SELECT \"id\", \"login\", \"doc\" FROM pgtide_keep RETURNING",
            strlen("WITH \"t\" AS (SELECT $1::integer AS \"id\", $2::character varying(20) AS \"login\", "
                   "$3::text AS \"doc\"), pgtide_keep AS (SELECT * FROM \"t\" WHERE (login <> 'x' AND "
                   "t.doc IS NOT NULL)), pgtide_put AS (INSERT INTO \"shop\".\"t\" (\"id\", "
                   "\"username\", \"doc\") SELECT \"id\", \"login\", \"doc\" FROM pgtide_keep RETURNING")) ==
            0,
        "filtered insert: typed source-named row, the filter as given, target names in the INSERT");
    tap_check(strstr(st.sql.data, "ON CONFLICT") == NULL,
              "conflict = error: a plain insert (a duplicate is an error)");
    tap_check_str(params_text(&st), "7|ann|NULL", "filtered insert parameters");
    tap_check(strstr(st.sql.data, "AS wanted") && strstr(st.sql.data, "true AS complete"),
              "the result says whether the row matched and was put");

    /* An update with an unchanged TOAST value: taken from the target row under the old key. */
    pgoutput_value upd_v[] = { text("7"), text("bob"), TOAST };
    pgoutput_tuple upd = { 3, upd_v };
    tap_check(apply_sql_filtered_update(&st, &r, rel, NULL, &upd, false, err, sizeof err) == 1,
              "filtered update");
    tap_check(strstr(st.sql.data,
                     "(SELECT x.\"doc\" FROM ONLY \"shop\".\"t\" x WHERE x.\"id\" = $3) AS \"doc\"") != NULL,
              "an unchanged TOAST value comes from the target's row");
    tap_check(strstr(st.sql.data,
                     "pgtide_gone AS (DELETE FROM ONLY \"shop\".\"t\" WHERE \"id\" = $4 AND NOT EXISTS "
                     "(SELECT FROM pgtide_keep) RETURNING 1)") != NULL,
              "same key: the row is deleted only when the new row does not match");
    tap_check(strstr(st.sql.data,
                     "ON CONFLICT (\"id\") DO UPDATE SET \"username\" = EXCLUDED.\"username\" RETURNING") !=
                  NULL,
              "the upsert leaves the unchanged value as the target has it");
    tap_check(strstr(st.sql.data,
                     "EXISTS (SELECT FROM ONLY \"shop\".\"t\" x WHERE x.\"id\" = $5) AS complete") != NULL,
              "complete only when the target had the row to take the value from");
    tap_check(strstr(st.sql.data,
                     "EXISTS (SELECT FROM ONLY \"shop\".\"t\" x WHERE x.\"id\" = $6) AS decided") != NULL,
              "the filter reads the unchanged value: decided only when the target has the row");
    tap_check(strstr(st.sql.data, "true AS decided") == NULL, "not decided blindly");

    pgoutput_value old_v[] = { text("7"), NUL, NUL };
    pgoutput_tuple old = { 3, old_v };
    pgoutput_value moved_v[] = { text("8"), text("bob"), text("d") };
    pgoutput_tuple moved = { 3, moved_v };
    apply_sql_filtered_update(&st, &r, rel, &old, &moved, true, err, sizeof err);
    tap_check(strstr(st.sql.data, "WHERE \"id\" = $4 RETURNING 1)") != NULL,
              "a new key: the old row always goes");
    tap_check_str(params_text(&st), "8|bob|d|7", "new values, then the old key");

    tap_check(strstr(st.sql.data, "pgtide_key") == NULL && strstr(st.sql.data, "moved_in") == NULL,
              "a table nobody follows reports no row moving in");

    /* select.rows_follow: a followed table's update deletes the rows that followed a row
     * leaving the filter (the cascade CTEs after pgtide_out), and reports a row moving in. */
    t->follow_cascade = strdup(", pgtide_f1 AS (DELETE FROM ONLY c x WHERE (x.p) IN (SELECT y.\"id\" FROM "
                               "pgtide_out y) RETURNING x.*)");
    apply_sql_filtered_update(&st, &r, rel, NULL, &moved, false, err, sizeof err);
    tap_check(strstr(st.sql.data,
                     "AND NOT EXISTS (SELECT FROM pgtide_keep) RETURNING *), pgtide_out AS (SELECT * "
                     "FROM pgtide_gone WHERE NOT EXISTS (SELECT FROM pgtide_keep)), pgtide_f1 AS "
                     "(DELETE FROM ONLY c x") != NULL,
              "followed: the rows a leaving row took with it are deleted in the same statement");
    tap_check(strstr(st.sql.data, "RETURNING (xmax = 0) AS inserted, pg_catalog.json_build_object('id', "
                                  "\"id\"::text)::text AS pgtide_key") != NULL,
              "followed: the upsert returns the key of a row it inserted, by source column name");
    tap_check(strstr(st.sql.data, "(SELECT pgtide_key FROM pgtide_put WHERE inserted LIMIT 1) AS moved_in") !=
                  NULL,
              "followed: the result's sixth column is the key of a row that moved in");
    apply_sql_filtered_insert(&st, &r, rel, &row, APPLY_FORM_INSERT);
    tap_check(strstr(st.sql.data, "moved_in") == NULL, "followed: a new row is not one that moved in");

    /* A partitioned target cannot return xmax: whether the key had no row when the statement
     * began tells an insert from an update. */
    t->partitioned = true;
    apply_sql_filtered_update(&st, &r, rel, NULL, &moved, false, err, sizeof err);
    tap_check(strstr(st.sql.data, "INSERT INTO \"shop\".\"t\" AS pgtide_t (") != NULL &&
                  strstr(st.sql.data, "RETURNING NOT EXISTS (SELECT FROM \"shop\".\"t\" pgtide_w WHERE "
                                      "pgtide_w.\"id\" = pgtide_t.\"id\") AS inserted") != NULL &&
                  strstr(st.sql.data, "xmax") == NULL,
              "partitioned: the upsert says whether the row is new without xmax");
    apply_sql_insert(&st, &r, &row, APPLY_FORM_UPSERT);
    tap_check(strstr(st.sql.data, "pgtide_w") != NULL && strstr(st.sql.data, "xmax") == NULL,
              "partitioned: the plain upsert too (conflict = overwrite)");
    t->partitioned = false;

    /* Without a unique key a filtered update cannot find its row. */
    const char *fnames[] = { "a", "b" };
    const int fkeys[] = { 1, 1 };
    const relcache_relation *frel = describe(cache, 10, 'f', 2, fnames, fkeys, NULL);
    apply_target *ft = target(fnames, 2, fnames, 2, NULL, 0, false);
    ft->filter = strdup("b > 1");
    apply_rel fr;
    tap_check(apply_rel_resolve(&fr, frel, ft, NULL, err, sizeof err) == 0,
              "a keyless filtered table resolves");
    pgoutput_value fv[] = { text("1"), text("2") };
    pgoutput_tuple frow = { 2, fv };
    tap_check(apply_sql_filtered_update(&st, &fr, frel, &frow, &frow, false, err, sizeof err) == -1 &&
                  strstr(err, "no unique key") != NULL,
              "a keyless filtered update is refused, naming the fix");
    apply_rel_clear(&fr);
    apply_target_free(ft);
    apply_rel_clear(&r);
    apply_target_free(t);
    apply_stmt_free(&st);
    relcache_destroy(cache);
}

int main(void) {
    test_appends();
    test_empty_value();
    test_primary_key();
    test_full_identity();
    test_identity_always();
    test_filtered();
    test_resolution_errors();
    test_lsn();
    return tap_done();
}
