/*
 * pgoutput.c - decode one pgoutput message into a pgoutput_message (see pgoutput.h).
 *
 * One decode_* function per message type, all built on a bounds-checked reader: every read
 * first checks that the bytes are there, so no input can make the decoder read outside the
 * buffer (it is fuzzed with ASan/UBSan: tests/fuzz/fuzz_pgoutput.c). Counts that size an
 * allocation (TupleData columns, Relation columns, Truncate relids) are checked against the
 * bytes left before anything is allocated, so a forged count cannot ask for gigabytes.
 *
 * Errors name the message, the field, its wire type and the byte offset, e.g.
 *   "Update: new tuple column 3 of 6: truncated at offset 41 reading value length (I32):
 *    need 4 bytes, 2 left"
 * because a decoding failure in production is only debuggable from that line and a hex dump.
 */
#include "cdc/pgoutput.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct reader {
    const uint8_t *buf;
    size_t len;
    size_t pos;
    const char *message_name; /* "Update", for errors */
    const char *part_name;    /* "new tuple", "column" ... while inside a repeated part */
    size_t part_index;        /* 1-based, for errors */
    size_t part_count;
    char *errbuf;
    size_t errlen;
} reader;

/* ------------------------------------------------------------------------------------------
 * Errors
 */

static int reader_fail(reader *r, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static int reader_fail(reader *r, const char *fmt, ...) {
    if (r->errbuf == NULL || r->errlen == 0) return -1;
    int used;
    if (r->part_name != NULL)
        used = snprintf(r->errbuf, r->errlen, "%s: %s %zu of %zu: ", r->message_name, r->part_name,
                        r->part_index, r->part_count);
    else
        used = snprintf(r->errbuf, r->errlen, "%s: ", r->message_name);
    if (used < 0 || (size_t) used >= r->errlen) return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->errbuf + used, r->errlen - (size_t) used, fmt, ap);
    va_end(ap);
    return -1;
}

static size_t reader_left(const reader *r) { return r->len - r->pos; }

static int reader_need(reader *r, size_t n, const char *field, const char *wire_type) {
    if (reader_left(r) >= n) return 0;
    return reader_fail(r, "truncated at offset %zu reading %s (%s): need %zu bytes, %zu left", r->pos, field,
                       wire_type, n, reader_left(r));
}

/* ------------------------------------------------------------------------------------------
 * Big-endian reads. Signed values are converted without relying on implementation-defined
 * unsigned-to-signed conversion, so the result is the same on any C11 compiler.
 */

static uint64_t load_be(const uint8_t *p, size_t n) {
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) v = (v << 8) | p[i];
    return v;
}

static int read_u8(reader *r, const char *field, uint8_t *out) {
    if (reader_need(r, 1, field, "I8") != 0) return -1;
    *out = r->buf[r->pos++];
    return 0;
}

static int read_i16(reader *r, const char *field, int16_t *out) {
    if (reader_need(r, 2, field, "I16") != 0) return -1;
    uint16_t u = (uint16_t) load_be(r->buf + r->pos, 2);
    r->pos += 2;
    *out = u <= INT16_MAX ? (int16_t) u : (int16_t) (-(int32_t) (UINT16_MAX - u) - 1);
    return 0;
}

static int read_u32(reader *r, const char *field, uint32_t *out) {
    if (reader_need(r, 4, field, "I32") != 0) return -1;
    *out = (uint32_t) load_be(r->buf + r->pos, 4);
    r->pos += 4;
    return 0;
}

static int read_i32(reader *r, const char *field, int32_t *out) {
    uint32_t u;
    if (read_u32(r, field, &u) != 0) return -1;
    *out = u <= INT32_MAX ? (int32_t) u : -(int32_t) (UINT32_MAX - u) - 1;
    return 0;
}

static int read_u64(reader *r, const char *field, uint64_t *out) {
    if (reader_need(r, 8, field, "I64") != 0) return -1;
    *out = load_be(r->buf + r->pos, 8);
    r->pos += 8;
    return 0;
}

static int read_i64(reader *r, const char *field, int64_t *out) {
    uint64_t u;
    if (read_u64(r, field, &u) != 0) return -1;
    *out = u <= INT64_MAX ? (int64_t) u : -(int64_t) (UINT64_MAX - u) - 1;
    return 0;
}

/* A NUL-terminated string; the result points into the buffer. */
static int read_string(reader *r, const char *field, pgoutput_string *out) {
    const uint8_t *start = r->buf + r->pos;
    const uint8_t *nul = reader_left(r) > 0 ? memchr(start, '\0', reader_left(r)) : NULL;
    if (nul == NULL)
        return reader_fail(r,
                           "%s (S) starting at offset %zu has no terminating NUL before "
                           "the end of the message (%zu bytes)",
                           field, r->pos, r->len);
    out->data = (const char *) start;
    out->len = (size_t) (nul - start);
    r->pos += out->len + 1;
    return 0;
}

/* A signed 32-bit byte count followed by that many bytes. */
static int read_counted_bytes(reader *r, const char *field, uint32_t *len_out, const uint8_t **data_out) {
    size_t at = r->pos;
    int32_t len;
    if (read_i32(r, field, &len) != 0) return -1;
    if (len < 0) return reader_fail(r, "%s (I32) at offset %zu is negative (%d)", field, at, (int) len);
    if ((size_t) len > reader_left(r))
        return reader_fail(r, "%s (I32) at offset %zu says %d bytes but only %zu are left", field, at,
                           (int) len, reader_left(r));
    *len_out = (uint32_t) len;
    *data_out = r->buf + r->pos;
    r->pos += (size_t) len;
    return 0;
}

/* The [xid] that prefixes some messages only inside a Stream Start ... Stop block. */
static int read_stream_xid(reader *r, bool in_stream_block, pgoutput_message *msg) {
    if (!in_stream_block) return 0;
    msg->has_stream_xid = true;
    return read_u32(r, "transaction id [xid] (present inside a stream block)", &msg->stream_xid);
}

/* A count read from the wire, checked against the bytes left: each item takes at least
 * `min_item_size` bytes, so a larger count cannot be honest and must not size an allocation. */
static int check_count(reader *r, const char *field, size_t at, long count, size_t min_item_size) {
    if (count < 0) return reader_fail(r, "%s at offset %zu is negative (%ld)", field, at, count);
    if ((size_t) count > reader_left(r) / min_item_size)
        return reader_fail(r, "%s at offset %zu is %ld, but the %zu bytes left hold at most %zu", field, at,
                           count, reader_left(r), reader_left(r) / min_item_size);
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * Storage owned by the message, reused between calls
 */

static int storage_reserve(reader *r, void **array, size_t *capacity, size_t needed, size_t item_size,
                           const char *what) {
    if (needed <= *capacity) return 0;
    size_t new_capacity = *capacity * 2;
    if (new_capacity < needed) new_capacity = needed;
    if (new_capacity < 16) new_capacity = 16;
    if (new_capacity > SIZE_MAX / item_size) return reader_fail(r, "cannot allocate %zu %s", needed, what);
    void *grown = realloc(*array, new_capacity * item_size);
    if (grown == NULL) return reader_fail(r, "out of memory allocating %zu %s", needed, what);
    *array = grown;
    *capacity = new_capacity;
    return 0;
}

void pgoutput_message_init(pgoutput_message *msg) { memset(msg, 0, sizeof *msg); }

void pgoutput_message_free(pgoutput_message *msg) {
    free(msg->storage.values);
    free(msg->storage.columns);
    free(msg->storage.relids);
    memset(msg, 0, sizeof *msg);
}

/* ------------------------------------------------------------------------------------------
 * TupleData
 *
 * Values are appended to the message's value storage from index *used on; the caller turns
 * the (first index, count) pair into a pointer only after the last tuple is decoded, because
 * decoding the second tuple of an Update may move the storage.
 */

typedef struct tuple_span {
    size_t first;
    uint16_t ncols;
} tuple_span;

/* Names for errors; constants, so the hot path formats nothing. */
typedef struct tuple_labels {
    const char *count_field;
    const char *column_part;
} tuple_labels;

static const tuple_labels new_tuple_labels = { "new tuple column count", "new tuple column" };
static const tuple_labels old_key_tuple_labels = { "old key tuple column count", "old key tuple column" };
static const tuple_labels old_tuple_labels = { "old tuple column count", "old tuple column" };

static int decode_tuple(reader *r, pgoutput_message *msg, const tuple_labels *labels, size_t *used,
                        tuple_span *span) {
    size_t at = r->pos;
    int16_t ncols;
    if (read_i16(r, labels->count_field, &ncols) != 0) return -1;
    /* Every column takes at least its kind byte. */
    if (check_count(r, labels->count_field, at, ncols, 1) != 0) return -1;
    pgoutput_storage *st = &msg->storage;
    if (storage_reserve(r, (void **) &st->values, &st->values_capacity, *used + (size_t) ncols,
                        sizeof *st->values, "tuple values") != 0)
        return -1;

    span->first = *used;
    span->ncols = (uint16_t) ncols;
    r->part_name = labels->column_part;
    r->part_count = (size_t) ncols;
    for (size_t i = 0; i < (size_t) ncols; i++) {
        pgoutput_value *value = &st->values[*used + i];
        r->part_index = i + 1;
        size_t kind_at = r->pos;
        uint8_t kind;
        if (read_u8(r, "column kind", &kind) != 0) return -1;
        value->kind = (pgoutput_value_kind) kind;
        value->len = 0;
        value->data = NULL;
        switch (kind) {
        case PGOUTPUT_VALUE_NULL:
        case PGOUTPUT_VALUE_UNCHANGED_TOAST: break;
        case PGOUTPUT_VALUE_TEXT:
        case PGOUTPUT_VALUE_BINARY:
            if (read_counted_bytes(r, "value length", &value->len, &value->data) != 0) return -1;
            break;
        default:
            return reader_fail(r,
                               "unknown column kind 0x%02x at offset %zu (expected n, u, t "
                               "or b)",
                               kind, kind_at);
        }
    }
    r->part_name = NULL;
    *used += (size_t) ncols;
    return 0;
}

static pgoutput_tuple tuple_from_span(const pgoutput_message *msg, tuple_span span) {
    pgoutput_tuple tuple = { span.ncols, NULL };
    /* No pointer arithmetic on a storage pointer that may still be NULL. */
    if (span.ncols > 0) tuple.values = msg->storage.values + span.first;
    return tuple;
}

/* ------------------------------------------------------------------------------------------
 * One function per message type. Each starts after the tag byte (and the [xid], if any).
 */

static int decode_begin(reader *r, pgoutput_message *msg) {
    pgoutput_begin *m = &msg->begin;
    if (read_u64(r, "final_lsn", &m->final_lsn) != 0 || read_i64(r, "commit timestamp", &m->commit_ts) != 0 ||
        read_u32(r, "xid", &m->xid) != 0)
        return -1;
    return 0;
}

static int decode_commit(reader *r, pgoutput_message *msg) {
    pgoutput_commit *m = &msg->commit;
    if (read_u8(r, "flags", &m->flags) != 0 || read_u64(r, "commit_lsn", &m->commit_lsn) != 0 ||
        read_u64(r, "end_lsn", &m->end_lsn) != 0 || read_i64(r, "commit timestamp", &m->commit_ts) != 0)
        return -1;
    return 0;
}

static int decode_origin(reader *r, pgoutput_message *msg) {
    pgoutput_origin *m = &msg->origin;
    if (read_u64(r, "origin commit LSN", &m->commit_lsn) != 0 || read_string(r, "origin name", &m->name) != 0)
        return -1;
    return 0;
}

static int decode_logical_message(reader *r, pgoutput_message *msg) {
    pgoutput_logical_message *m = &msg->logical_message;
    if (read_u8(r, "flags", &m->flags) != 0) return -1;
    m->transactional = (m->flags & PGOUTPUT_MESSAGE_FLAG_TRANSACTIONAL) != 0;
    if (read_u64(r, "lsn", &m->lsn) != 0 || read_string(r, "prefix", &m->prefix) != 0 ||
        read_counted_bytes(r, "content length", &m->content_len, &m->content) != 0)
        return -1;
    return 0;
}

static int decode_relation(reader *r, pgoutput_message *msg) {
    pgoutput_relation *m = &msg->relation;
    uint8_t replica_identity;
    if (read_u32(r, "relid", &m->relid) != 0 || read_string(r, "namespace", &m->schema) != 0 ||
        read_string(r, "relation name", &m->name) != 0 ||
        read_u8(r, "replica identity", &replica_identity) != 0)
        return -1;
    m->replica_identity = (char) replica_identity;

    size_t at = r->pos;
    int16_t ncols;
    if (read_i16(r, "column count", &ncols) != 0) return -1;
    /* flags, an empty name's NUL, type OID and typmod: at least 10 bytes per column. */
    if (check_count(r, "column count", at, ncols, 10) != 0) return -1;
    pgoutput_storage *st = &msg->storage;
    if (storage_reserve(r, (void **) &st->columns, &st->columns_capacity, (size_t) ncols, sizeof *st->columns,
                        "relation columns") != 0)
        return -1;

    r->part_name = "column";
    r->part_count = (size_t) ncols;
    for (size_t i = 0; i < (size_t) ncols; i++) {
        pgoutput_relation_column *column = &st->columns[i];
        r->part_index = i + 1;
        int32_t typmod;
        if (read_u8(r, "flags", &column->flags) != 0 || read_string(r, "name", &column->name) != 0 ||
            read_u32(r, "type OID", &column->type_oid) != 0 || read_i32(r, "typmod", &typmod) != 0)
            return -1;
        column->typmod = typmod;
    }
    r->part_name = NULL;
    m->ncols = (uint16_t) ncols;
    m->columns = ncols > 0 ? st->columns : NULL;
    return 0;
}

static int decode_type(reader *r, pgoutput_message *msg) {
    pgoutput_type *m = &msg->data_type;
    if (read_u32(r, "type OID", &m->oid) != 0 || read_string(r, "namespace", &m->schema) != 0 ||
        read_string(r, "type name", &m->name) != 0)
        return -1;
    return 0;
}

/* The one-byte marker before a TupleData ('N', 'K' or 'O'); `expected` lists what is valid
 * here, for the error message. */
static int read_marker(reader *r, const char *expected, uint8_t *marker) {
    size_t at = r->pos;
    if (read_u8(r, "tuple marker", marker) != 0) return -1;
    if (*marker == 0 || strchr(expected, *marker) == NULL)
        return reader_fail(r, "unexpected tuple marker 0x%02x at offset %zu (expected %s)", *marker, at,
                           expected);
    return 0;
}

static int decode_insert(reader *r, pgoutput_message *msg) {
    pgoutput_insert *m = &msg->insert;
    uint8_t marker;
    size_t used = 0;
    tuple_span new_span;
    if (read_u32(r, "relid", &m->relid) != 0 || read_marker(r, "N", &marker) != 0 ||
        decode_tuple(r, msg, &new_tuple_labels, &used, &new_span) != 0)
        return -1;
    m->new_tuple = tuple_from_span(msg, new_span);
    return 0;
}

static int decode_update(reader *r, pgoutput_message *msg) {
    pgoutput_update *m = &msg->update;
    uint8_t marker;
    size_t used = 0;
    tuple_span old_span = { 0, 0 }, new_span;
    if (read_u32(r, "relid", &m->relid) != 0 || read_marker(r, "KON", &marker) != 0) return -1;
    m->old_kind = PGOUTPUT_OLD_TUPLE_NONE;
    if (marker != 'N') {
        /* 'K' here is the old-key marker, not Commit Prepared: letters depend on context. */
        m->old_kind = (pgoutput_old_tuple_kind) marker;
        const tuple_labels *labels = marker == 'K' ? &old_key_tuple_labels : &old_tuple_labels;
        if (decode_tuple(r, msg, labels, &used, &old_span) != 0 || read_marker(r, "N", &marker) != 0)
            return -1;
    }
    if (decode_tuple(r, msg, &new_tuple_labels, &used, &new_span) != 0) return -1;
    m->old_tuple = tuple_from_span(msg, old_span);
    m->new_tuple = tuple_from_span(msg, new_span);
    return 0;
}

static int decode_delete(reader *r, pgoutput_message *msg) {
    pgoutput_delete *m = &msg->delete;
    uint8_t marker;
    size_t used = 0;
    tuple_span old_span;
    if (read_u32(r, "relid", &m->relid) != 0 || read_marker(r, "KO", &marker) != 0) return -1;
    m->old_kind = (pgoutput_old_tuple_kind) marker;
    if (decode_tuple(r, msg, marker == 'K' ? &old_key_tuple_labels : &old_tuple_labels, &used, &old_span) !=
        0)
        return -1;
    m->old_tuple = tuple_from_span(msg, old_span);
    return 0;
}

static int decode_truncate(reader *r, pgoutput_message *msg) {
    pgoutput_truncate *m = &msg->truncate;
    size_t at = r->pos;
    int32_t nrels;
    if (read_i32(r, "relation count", &nrels) != 0 || read_u8(r, "options", &m->options) != 0) return -1;
    if (check_count(r, "relation count", at, nrels, 4) != 0) return -1;
    pgoutput_storage *st = &msg->storage;
    if (storage_reserve(r, (void **) &st->relids, &st->relids_capacity, (size_t) nrels, sizeof *st->relids,
                        "truncated relids") != 0)
        return -1;
    for (size_t i = 0; i < (size_t) nrels; i++)
        if (read_u32(r, "relid", &st->relids[i]) != 0) return -1;
    m->nrels = (uint32_t) nrels;
    m->relids = nrels > 0 ? st->relids : NULL;
    return 0;
}

static int decode_stream_start(reader *r, pgoutput_message *msg) {
    pgoutput_stream_start *m = &msg->stream_start;
    uint8_t first_segment;
    if (read_u32(r, "xid", &m->xid) != 0 || read_u8(r, "first_segment", &first_segment) != 0) return -1;
    m->first_segment = first_segment != 0;
    return 0;
}

static int decode_stream_commit(reader *r, pgoutput_message *msg) {
    pgoutput_stream_commit *m = &msg->stream_commit;
    if (read_u32(r, "xid", &m->xid) != 0 || read_u8(r, "flags", &m->flags) != 0 ||
        read_u64(r, "commit_lsn", &m->commit_lsn) != 0 || read_u64(r, "end_lsn", &m->end_lsn) != 0 ||
        read_i64(r, "commit timestamp", &m->commit_ts) != 0)
        return -1;
    return 0;
}

static int decode_stream_abort(reader *r, pgoutput_message *msg) {
    pgoutput_stream_abort *m = &msg->stream_abort;
    if (read_u32(r, "xid", &m->xid) != 0 || read_u32(r, "subxid", &m->subxid) != 0) return -1;
    /* abort_lsn and abort_ts exist only with streaming 'parallel' (proto 4), and the message
     * does not say which: its length does. Anything left means they must both be there. */
    if (reader_left(r) == 0) return 0;
    m->has_abort_info = true;
    if (read_u64(r, "abort_lsn", &m->abort_lsn) != 0 || read_i64(r, "abort timestamp", &m->abort_ts) != 0)
        return -1;
    return 0;
}

static int decode_begin_prepare(reader *r, pgoutput_message *msg) {
    pgoutput_begin_prepare *m = &msg->begin_prepare;
    if (read_u64(r, "prepare_lsn", &m->prepare_lsn) != 0 || read_u64(r, "end_lsn", &m->end_lsn) != 0 ||
        read_i64(r, "prepare timestamp", &m->prepare_ts) != 0 || read_u32(r, "xid", &m->xid) != 0 ||
        read_string(r, "gid", &m->gid) != 0)
        return -1;
    return 0;
}

static int decode_prepare(reader *r, pgoutput_message *msg) {
    pgoutput_prepare *m = &msg->prepare;
    if (read_u8(r, "flags", &m->flags) != 0 || read_u64(r, "prepare_lsn", &m->prepare_lsn) != 0 ||
        read_u64(r, "end_lsn", &m->end_lsn) != 0 || read_i64(r, "prepare timestamp", &m->prepare_ts) != 0 ||
        read_u32(r, "xid", &m->xid) != 0 || read_string(r, "gid", &m->gid) != 0)
        return -1;
    return 0;
}

static int decode_commit_prepared(reader *r, pgoutput_message *msg) {
    pgoutput_commit_prepared *m = &msg->commit_prepared;
    if (read_u8(r, "flags", &m->flags) != 0 || read_u64(r, "commit_lsn", &m->commit_lsn) != 0 ||
        read_u64(r, "end_lsn", &m->end_lsn) != 0 || read_i64(r, "commit timestamp", &m->commit_ts) != 0 ||
        read_u32(r, "xid", &m->xid) != 0 || read_string(r, "gid", &m->gid) != 0)
        return -1;
    return 0;
}

static int decode_rollback_prepared(reader *r, pgoutput_message *msg) {
    pgoutput_rollback_prepared *m = &msg->rollback_prepared;
    if (read_u8(r, "flags", &m->flags) != 0 || read_u64(r, "prepare_end_lsn", &m->prepare_end_lsn) != 0 ||
        read_u64(r, "rollback_end_lsn", &m->rollback_end_lsn) != 0 ||
        read_i64(r, "prepare timestamp", &m->prepare_ts) != 0 ||
        read_i64(r, "rollback timestamp", &m->rollback_ts) != 0 || read_u32(r, "xid", &m->xid) != 0 ||
        read_string(r, "gid", &m->gid) != 0)
        return -1;
    return 0;
}

/* ------------------------------------------------------------------------------------------
 * Entry points
 */

const char *pgoutput_message_type_name(int type) {
    switch (type) {
    case PGOUTPUT_BEGIN: return "Begin";
    case PGOUTPUT_COMMIT: return "Commit";
    case PGOUTPUT_ORIGIN: return "Origin";
    case PGOUTPUT_LOGICAL_MESSAGE: return "Message";
    case PGOUTPUT_RELATION: return "Relation";
    case PGOUTPUT_TYPE: return "Type";
    case PGOUTPUT_INSERT: return "Insert";
    case PGOUTPUT_UPDATE: return "Update";
    case PGOUTPUT_DELETE: return "Delete";
    case PGOUTPUT_TRUNCATE: return "Truncate";
    case PGOUTPUT_STREAM_START: return "Stream Start";
    case PGOUTPUT_STREAM_STOP: return "Stream Stop";
    case PGOUTPUT_STREAM_COMMIT: return "Stream Commit";
    case PGOUTPUT_STREAM_ABORT: return "Stream Abort";
    case PGOUTPUT_BEGIN_PREPARE: return "Begin Prepare";
    case PGOUTPUT_PREPARE: return "Prepare";
    case PGOUTPUT_COMMIT_PREPARED: return "Commit Prepared";
    case PGOUTPUT_ROLLBACK_PREPARED: return "Rollback Prepared";
    case PGOUTPUT_STREAM_PREPARE: return "Stream Prepare";
    default: return "unknown";
    }
}

int pgoutput_decode(const uint8_t *buf, size_t len, bool in_stream_block, pgoutput_message *msg, char *errbuf,
                    size_t errlen) {
    reader r = { .buf = buf,
                 .len = len,
                 .message_name = "pgoutput message",
                 .errbuf = errbuf,
                 .errlen = errlen };
    if (errbuf != NULL && errlen > 0) errbuf[0] = '\0';

    /* Reset everything but the storage, so no field survives from the previous message. */
    pgoutput_storage storage = msg->storage;
    memset(msg, 0, sizeof *msg);
    msg->storage = storage;

    if (len == 0 || buf == NULL) return reader_fail(&r, "empty message: no type byte at offset 0");
    uint8_t tag = buf[0];
    r.pos = 1;
    r.message_name = pgoutput_message_type_name(tag);
    msg->type = (pgoutput_message_type) tag;

    int rc;
    switch (tag) {
    case PGOUTPUT_BEGIN: rc = decode_begin(&r, msg); break;
    case PGOUTPUT_COMMIT: rc = decode_commit(&r, msg); break;
    case PGOUTPUT_ORIGIN: rc = decode_origin(&r, msg); break;
    case PGOUTPUT_STREAM_START: rc = decode_stream_start(&r, msg); break;
    case PGOUTPUT_STREAM_STOP: rc = 0; break;
    case PGOUTPUT_STREAM_COMMIT: rc = decode_stream_commit(&r, msg); break;
    case PGOUTPUT_STREAM_ABORT: rc = decode_stream_abort(&r, msg); break;
    case PGOUTPUT_BEGIN_PREPARE: rc = decode_begin_prepare(&r, msg); break;
    case PGOUTPUT_PREPARE:
    case PGOUTPUT_STREAM_PREPARE: rc = decode_prepare(&r, msg); break;
    case PGOUTPUT_COMMIT_PREPARED: rc = decode_commit_prepared(&r, msg); break;
    case PGOUTPUT_ROLLBACK_PREPARED: rc = decode_rollback_prepared(&r, msg); break;
    /* These carry the [xid] inside a stream block. */
    case PGOUTPUT_LOGICAL_MESSAGE:
    case PGOUTPUT_RELATION:
    case PGOUTPUT_TYPE:
    case PGOUTPUT_INSERT:
    case PGOUTPUT_UPDATE:
    case PGOUTPUT_DELETE:
    case PGOUTPUT_TRUNCATE:
        if (read_stream_xid(&r, in_stream_block, msg) != 0) return -1;
        switch (tag) {
        case PGOUTPUT_LOGICAL_MESSAGE: rc = decode_logical_message(&r, msg); break;
        case PGOUTPUT_RELATION: rc = decode_relation(&r, msg); break;
        case PGOUTPUT_TYPE: rc = decode_type(&r, msg); break;
        case PGOUTPUT_INSERT: rc = decode_insert(&r, msg); break;
        case PGOUTPUT_UPDATE: rc = decode_update(&r, msg); break;
        case PGOUTPUT_DELETE: rc = decode_delete(&r, msg); break;
        default: rc = decode_truncate(&r, msg); break;
        }
        break;
    default:
        r.message_name = "pgoutput message";
        return reader_fail(&r, "unknown message type 0x%02x at offset 0", tag);
    }
    if (rc != 0) return -1;
    /* A message longer than its fields means we and the server disagree on the layout;
     * better to stop than to apply a misread change. */
    if (r.pos != len)
        return reader_fail(&r,
                           "%zu unexpected bytes after the last field, at offset %zu "
                           "(message is %zu bytes)",
                           len - r.pos, r.pos, len);
    return 0;
}
