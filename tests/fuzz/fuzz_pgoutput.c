/*
 * fuzz_pgoutput.c - libFuzzer entry point for the pgoutput decoder and the relation cache.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Iengine tests/fuzz/fuzz_pgoutput.c \
 *       engine/cdc/pgoutput.c engine/cdc/relcache.c -o /tmp/fuzz_pgoutput
 *   /tmp/fuzz_pgoutput -max_total_time=60 NEW_CORPUS_DIR tests/fuzz/corpus/pgoutput
 *
 * Each input is used two ways:
 *   1. as one message, decoded both outside and inside a stream block (the [xid] prefix
 *      shifts every later field, so the two modes reach different code);
 *   2. as a stream: a sequence of frames "I16 length, message", decoded in order with the
 *      stream-block state tracked as a consumer would, Relation and Type messages stored in
 *      a relcache and every change checked against its relation. The seed corpus has both
 *      single messages (<scenario>-NNN) and whole captured streams (<scenario>-sequence),
 *      all written by scripts/capture-pgoutput.sh.
 * Besides the sanitizers, it traps when a decoded pointer leaves the input or a cached
 * relation differs from the message it was copied from.
 */
#include "cdc/pgoutput.h"
#include "cdc/relcache.h"

#include <stdint.h>
#include <string.h>

#define REQUIRE(cond)                  \
    do {                               \
        if (!(cond)) __builtin_trap(); \
    } while (0)

static const uint8_t *input_start;
static const uint8_t *input_end;

static void check_inside(const void *p, size_t len) {
    const uint8_t *q = p;
    REQUIRE(q >= input_start && q <= input_end && len <= (size_t) (input_end - q));
}

static void check_string(pgoutput_string s) {
    check_inside(s.data, s.len + 1);
    REQUIRE(s.data[s.len] == '\0' && memchr(s.data, '\0', s.len) == NULL);
}

static void check_tuple(const pgoutput_tuple *t) {
    for (size_t i = 0; i < t->ncols; i++) {
        const pgoutput_value *v = &t->values[i];
        if (v->kind == PGOUTPUT_VALUE_TEXT || v->kind == PGOUTPUT_VALUE_BINARY)
            check_inside(v->data, v->len);
        else
            REQUIRE((v->kind == PGOUTPUT_VALUE_NULL || v->kind == PGOUTPUT_VALUE_UNCHANGED_TOAST) &&
                    v->data == NULL && v->len == 0);
    }
}

/* Walk every pointer of a successfully decoded message. */
static void check_message(const pgoutput_message *m) {
    switch (m->type) {
    case PGOUTPUT_ORIGIN: check_string(m->origin.name); break;
    case PGOUTPUT_LOGICAL_MESSAGE:
        check_string(m->logical_message.prefix);
        check_inside(m->logical_message.content, m->logical_message.content_len);
        break;
    case PGOUTPUT_RELATION:
        check_string(m->relation.schema);
        check_string(m->relation.name);
        for (size_t i = 0; i < m->relation.ncols; i++) check_string(m->relation.columns[i].name);
        break;
    case PGOUTPUT_TYPE:
        check_string(m->data_type.schema);
        check_string(m->data_type.name);
        break;
    case PGOUTPUT_INSERT: check_tuple(&m->insert.new_tuple); break;
    case PGOUTPUT_UPDATE:
        REQUIRE(m->update.old_kind != PGOUTPUT_OLD_TUPLE_NONE || m->update.old_tuple.ncols == 0);
        check_tuple(&m->update.old_tuple);
        check_tuple(&m->update.new_tuple);
        break;
    case PGOUTPUT_DELETE: check_tuple(&m->delete.old_tuple); break;
    case PGOUTPUT_TRUNCATE:
        for (size_t i = 0; i < m->truncate.nrels; i++)
            (void) m->truncate.relids[i]; /* ASan: the array really has nrels entries */
        break;
    case PGOUTPUT_BEGIN_PREPARE: check_string(m->begin_prepare.gid); break;
    case PGOUTPUT_PREPARE:
    case PGOUTPUT_STREAM_PREPARE: check_string(m->prepare.gid); break;
    case PGOUTPUT_COMMIT_PREPARED: check_string(m->commit_prepared.gid); break;
    case PGOUTPUT_ROLLBACK_PREPARED: check_string(m->rollback_prepared.gid); break;
    default: break;
    }
}

/* Store Relation/Type messages and check changes against them, as the apply path will. */
static void feed_relcache(relcache *cache, const pgoutput_message *m) {
    char err[256];
    const relcache_relation *rel;
    switch (m->type) {
    case PGOUTPUT_RELATION:
        if (relcache_put(cache, &m->relation, err, sizeof err) != 0) return;
        rel = relcache_get(cache, m->relation.relid);
        REQUIRE(rel != NULL && rel->ncols == m->relation.ncols && strlen(rel->name) == m->relation.name.len &&
                memcmp(rel->name, m->relation.name.data, m->relation.name.len) == 0);
        for (size_t i = 0; i < rel->ncols; i++)
            REQUIRE(strlen(rel->columns[i].name) == m->relation.columns[i].name.len &&
                    rel->columns[i].type_oid == m->relation.columns[i].type_oid);
        break;
    case PGOUTPUT_TYPE:
        if (relcache_put_type(cache, &m->data_type, err, sizeof err) == 0)
            REQUIRE(relcache_get_type(cache, m->data_type.oid) != NULL);
        break;
    case PGOUTPUT_INSERT:
        if ((rel = relcache_get(cache, m->insert.relid)) != NULL)
            (void) relcache_check_tuple(rel, &m->insert.new_tuple, "new tuple", err, sizeof err);
        break;
    case PGOUTPUT_UPDATE:
        if ((rel = relcache_get(cache, m->update.relid)) != NULL) {
            (void) relcache_check_tuple(rel, &m->update.old_tuple, "old tuple", err, sizeof err);
            (void) relcache_check_tuple(rel, &m->update.new_tuple, "new tuple", err, sizeof err);
        }
        break;
    case PGOUTPUT_DELETE:
        if ((rel = relcache_get(cache, m->delete.relid)) != NULL)
            (void) relcache_check_tuple(rel, &m->delete.old_tuple, "old tuple", err, sizeof err);
        break;
    case PGOUTPUT_TRUNCATE:
        for (size_t i = 0; i < m->truncate.nrels; i++) (void) relcache_get(cache, m->truncate.relids[i]);
        break;
    default: break;
    }
}

static bool decode_one(const uint8_t *buf, size_t len, bool in_stream_block, pgoutput_message *msg,
                       relcache *cache) {
    char err[256];
    if (pgoutput_decode(buf, len, in_stream_block, msg, err, sizeof err) != 0) {
        REQUIRE(memchr(err, '\0', sizeof err) != NULL && err[0] != '\0');
        return false;
    }
    check_message(msg);
    feed_relcache(cache, msg);
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* Kept across inputs on purpose: the decoder must cope with storage left by any earlier
     * message. Still reachable at exit, so LeakSanitizer does not report it. */
    static pgoutput_message msg;
    relcache *cache = relcache_create();
    if (cache == NULL) return 0;
    input_start = data;
    input_end = data + size;

    /* 1. The whole input as one message, in both modes. */
    decode_one(data, size, false, &msg, cache);
    decode_one(data, size, true, &msg, cache);

    /* 2. The input as a stream of length-prefixed frames. */
    bool in_stream_block = false;
    size_t pos = 0;
    while (size - pos >= 2) {
        size_t frame_len = (size_t) data[pos] << 8 | data[pos + 1];
        pos += 2;
        if (frame_len > size - pos) break;
        /* Only a message that decoded moves the stream-block state, as in a consumer. */
        if (decode_one(data + pos, frame_len, in_stream_block, &msg, cache)) {
            if (msg.type == PGOUTPUT_STREAM_START)
                in_stream_block = true;
            else if (msg.type == PGOUTPUT_STREAM_STOP)
                in_stream_block = false;
        }
        pos += frame_len;
    }
    relcache_destroy(cache);
    return 0;
}
