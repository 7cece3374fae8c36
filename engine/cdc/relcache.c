/*
 * relcache.c - relation and type cache for a pgoutput stream (see relcache.h).
 *
 * Two open-addressing hash tables (linear probing, power-of-two size) from OID to entry.
 * Nothing is ever removed except by replacement, so no tombstones are needed. Each entry is
 * one malloc block holding the struct, its column array and all its strings: replacing an
 * entry is one allocation plus one free, and a failed allocation leaves the old entry intact.
 */
#include "cdc/relcache.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct oid_table {
    uint32_t *keys;
    void **entries;  /* NULL marks an empty slot (OID 0 is a valid key here: it is fuzzed) */
    size_t capacity; /* 0 or a power of two */
    size_t count;
} oid_table;

struct relcache {
    oid_table relations;
    oid_table types;
    uint64_t next_version;
};

static void set_error(char *errbuf, size_t errlen, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static void set_error(char *errbuf, size_t errlen, const char *fmt, ...) {
    if (errbuf == NULL || errlen == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, errlen, fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------------------------------------
 * OID hash table
 */

static size_t oid_hash(uint32_t oid) {
    /* OIDs are mostly consecutive; multiply to spread them over the high bits. */
    return (size_t) ((oid * UINT32_C(2654435761)) ^ (oid >> 16));
}

static size_t oid_table_find_slot(const oid_table *table, uint32_t oid) {
    size_t mask = table->capacity - 1;
    size_t i = oid_hash(oid) & mask;
    while (table->entries[i] != NULL && table->keys[i] != oid) i = (i + 1) & mask;
    return i;
}

static void *oid_table_get(const oid_table *table, uint32_t oid) {
    if (table->capacity == 0) return NULL;
    return table->entries[oid_table_find_slot(table, oid)];
}

static int oid_table_grow(oid_table *table) {
    size_t capacity = table->capacity ? table->capacity * 2 : 16;
    uint32_t *keys = calloc(capacity, sizeof *keys);
    void **entries = calloc(capacity, sizeof *entries);
    if (keys == NULL || entries == NULL) {
        free(keys);
        free(entries);
        return -1;
    }
    oid_table grown = { keys, entries, capacity, table->count };
    for (size_t i = 0; i < table->capacity; i++) {
        if (table->entries[i] == NULL) continue;
        size_t slot = oid_table_find_slot(&grown, table->keys[i]);
        grown.keys[slot] = table->keys[i];
        grown.entries[slot] = table->entries[i];
    }
    free(table->keys);
    free(table->entries);
    *table = grown;
    return 0;
}

/* Store entry under oid; returns the entry it replaced (the caller frees it), or NULL.
 * Sets *failed on allocation failure, in which case nothing changed. */
static void *oid_table_put(oid_table *table, uint32_t oid, void *entry, bool *failed) {
    *failed = false;
    /* Keep the load at most 1/2 so probes stay short. */
    if ((table->count + 1) * 2 > table->capacity && oid_table_grow(table) != 0) {
        /* Growing failed, but replacing an existing key needs no room. */
        if (oid_table_get(table, oid) == NULL) {
            *failed = true;
            return NULL;
        }
    }
    size_t slot = oid_table_find_slot(table, oid);
    void *old = table->entries[slot];
    if (old == NULL) table->count++;
    table->keys[slot] = oid;
    table->entries[slot] = entry;
    return old;
}

static void oid_table_free(oid_table *table) {
    for (size_t i = 0; i < table->capacity; i++) free(table->entries[i]);
    free(table->keys);
    free(table->entries);
    memset(table, 0, sizeof *table);
}

/* ------------------------------------------------------------------------------------------
 * Entries: one block, strings packed after the struct
 */

static const pgoutput_string pg_catalog_name = { "pg_catalog", sizeof "pg_catalog" - 1 };

/* pgoutput abbreviates pg_catalog to "", which is not a schema anyone can query. */
static pgoutput_string resolve_schema(pgoutput_string schema) {
    return schema.len == 0 ? pg_catalog_name : schema;
}

static char *pack_string(char **cursor, pgoutput_string s) {
    char *out = *cursor;
    if (s.len > 0) memcpy(out, s.data, s.len);
    out[s.len] = '\0';
    *cursor += s.len + 1;
    return out;
}

relcache *relcache_create(void) {
    relcache *cache = calloc(1, sizeof *cache);
    if (cache != NULL) cache->next_version = 1;
    return cache;
}

void relcache_destroy(relcache *cache) {
    if (cache == NULL) return;
    oid_table_free(&cache->relations);
    oid_table_free(&cache->types);
    free(cache);
}

int relcache_put(relcache *cache, const pgoutput_relation *relation, char *errbuf, size_t errlen) {
    pgoutput_string schema = resolve_schema(relation->schema);
    /* Sizes come from one decoded message, so they are far from overflowing size_t. */
    size_t size = sizeof(relcache_relation) + (size_t) relation->ncols * sizeof(relcache_column) +
                  schema.len + 1 + relation->name.len + 1;
    for (size_t i = 0; i < relation->ncols; i++) size += relation->columns[i].name.len + 1;

    relcache_relation *entry = malloc(size);
    if (entry == NULL) {
        set_error(errbuf, errlen, "out of memory caching relation %.*s.%.*s (%u)", (int) schema.len,
                  schema.data, (int) relation->name.len, relation->name.data, (unsigned) relation->relid);
        return -1;
    }
    relcache_column *columns = (relcache_column *) (entry + 1);
    char *cursor = (char *) (columns + relation->ncols);
    entry->relid = relation->relid;
    entry->schema = pack_string(&cursor, schema);
    entry->name = pack_string(&cursor, relation->name);
    entry->replica_identity = relation->replica_identity;
    entry->ncols = relation->ncols;
    entry->columns = relation->ncols > 0 ? columns : NULL;
    entry->version = cache->next_version;
    for (size_t i = 0; i < relation->ncols; i++) {
        const pgoutput_relation_column *source = &relation->columns[i];
        columns[i].name = pack_string(&cursor, source->name);
        columns[i].type_oid = source->type_oid;
        columns[i].typmod = source->typmod;
        columns[i].is_key = (source->flags & PGOUTPUT_COLUMN_FLAG_KEY) != 0;
    }

    bool failed;
    void *old = oid_table_put(&cache->relations, relation->relid, entry, &failed);
    if (failed) {
        set_error(errbuf, errlen, "out of memory caching relation %s.%s (%u)", entry->schema, entry->name,
                  (unsigned) entry->relid);
        free(entry);
        return -1;
    }
    free(old);
    cache->next_version++;
    return 0;
}

const relcache_relation *relcache_get(const relcache *cache, uint32_t relid) {
    return oid_table_get(&cache->relations, relid);
}

int relcache_put_type(relcache *cache, const pgoutput_type *type, char *errbuf, size_t errlen) {
    pgoutput_string schema = resolve_schema(type->schema);
    size_t size = sizeof(relcache_type) + schema.len + 1 + type->name.len + 1;
    relcache_type *entry = malloc(size);
    if (entry == NULL) {
        set_error(errbuf, errlen, "out of memory caching type %u", (unsigned) type->oid);
        return -1;
    }
    char *cursor = (char *) (entry + 1);
    entry->oid = type->oid;
    entry->schema = pack_string(&cursor, schema);
    entry->name = pack_string(&cursor, type->name);
    entry->version = cache->next_version;

    bool failed;
    void *old = oid_table_put(&cache->types, type->oid, entry, &failed);
    if (failed) {
        set_error(errbuf, errlen, "out of memory caching type %s.%s (%u)", entry->schema, entry->name,
                  (unsigned) entry->oid);
        free(entry);
        return -1;
    }
    free(old);
    cache->next_version++;
    return 0;
}

const relcache_type *relcache_get_type(const relcache *cache, uint32_t oid) {
    return oid_table_get(&cache->types, oid);
}

size_t relcache_count(const relcache *cache) { return cache->relations.count; }

int relcache_check_tuple(const relcache_relation *relation, const pgoutput_tuple *tuple,
                         const char *tuple_name, char *errbuf, size_t errlen) {
    if (tuple->ncols == relation->ncols) return 0;
    set_error(errbuf, errlen, "relation %s.%s (%u) has %u columns but its %s has %u", relation->schema,
              relation->name, (unsigned) relation->relid, (unsigned) relation->ncols, tuple_name,
              (unsigned) tuple->ncols);
    return -1;
}
