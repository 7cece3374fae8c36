/*
 * relcache.h - the relations and types a pgoutput stream has described, keyed by OID.
 *
 * pgoutput sends a Relation message before the first change to a table on each connection
 * and again after any change to its definition; Insert/Update/Delete carry only the relid,
 * and their TupleData columns follow the *last* Relation message for it. So the cache keeps
 * exactly one entry per relid and replaces it whole on every Relation message (a column may
 * have been added, dropped or renamed). Type messages (user-defined column types) get the
 * same treatment in a second table keyed by type OID.
 *
 * Entries are deep copies: the message buffer they came from can be released at once.
 * A pointer returned by relcache_get() stays valid until the next relcache_put() for the
 * same relid (which frees the old entry) or relcache_destroy(). Each entry carries a
 * `version` that is unique within the cache, so a consumer that keeps per-relation state
 * (prepared statements, column maps) can tell when the definition was replaced.
 *
 * Pure C with malloc; not thread-safe (one cache per stream).
 */
#ifndef PGTIDE_RELCACHE_H
#define PGTIDE_RELCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cdc/pgoutput.h"

typedef struct relcache_column {
    const char *name;
    uint32_t type_oid;
    int32_t typmod;
    bool is_key; /* part of the replica identity (every column with FULL) */
} relcache_column;

typedef struct relcache_relation {
    uint32_t relid;
    const char *schema; /* "" on the wire is stored as "pg_catalog" */
    const char *name;
    char replica_identity; /* 'd', 'n', 'f', 'i' */
    uint16_t ncols;
    const relcache_column *columns;
    uint64_t version; /* changes on every relcache_put of this relid */
} relcache_relation;

typedef struct relcache_type {
    uint32_t oid;
    const char *schema; /* "" on the wire is stored as "pg_catalog" */
    const char *name;
    uint64_t version;
} relcache_type;

typedef struct relcache relcache;

/* A new empty cache, or NULL when out of memory. */
relcache *relcache_create(void);

/* Free the cache and every entry. NULL is allowed. */
void relcache_destroy(relcache *cache);

/* Store a copy of a decoded Relation message, replacing any entry with the same relid.
 * Returns 0, or -1 with a message when out of memory (the old entry, if any, is kept). */
int relcache_put(relcache *cache, const pgoutput_relation *relation, char *errbuf, size_t errlen);

/* The entry for relid, or NULL if no Relation message described it yet. */
const relcache_relation *relcache_get(const relcache *cache, uint32_t relid);

/* Same as relcache_put / relcache_get, for Type messages. */
int relcache_put_type(relcache *cache, const pgoutput_type *type, char *errbuf, size_t errlen);
const relcache_type *relcache_get_type(const relcache *cache, uint32_t oid);

/* Number of relations (not types) in the cache. */
size_t relcache_count(const relcache *cache);

/* Check that a change's tuple fits the relation's last description: same column count.
 * `tuple_name` ("new tuple") is for the message. Returns 0 or -1 with a message, e.g.
 * "relation public.items (16394) has 6 columns but its new tuple has 5". */
int relcache_check_tuple(const relcache_relation *relation, const pgoutput_tuple *tuple,
                         const char *tuple_name, char *errbuf, size_t errlen);

#endif /* PGTIDE_RELCACHE_H */
