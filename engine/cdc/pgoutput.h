/*
 * pgoutput.h - decoder for one pgoutput logical-replication message.
 *
 * Input: the payload of one XLogData frame (the bytes after the 25-byte 'w' header), or one
 * row of pg_logical_slot_get_binary_changes(). Output: a pgoutput_message whose variant is
 * selected by `type`. Pure C: no I/O, no libpq, no Lua. Byte layouts: PostgreSQL's
 * documentation, chapter "Logical Replication Message Formats"; what pgtide relies on is
 * summed up in docs/engine.md, "The replication protocol".
 *
 * Usage:
 *
 *     pgoutput_message msg;
 *     pgoutput_message_init(&msg);
 *     bool in_stream_block = false;
 *     for each payload:
 *         if (pgoutput_decode(buf, len, in_stream_block, &msg, err, sizeof err) != 0)
 *             fail(err);                       // "Update: new tuple column 3 of 6: ..."
 *         if (msg.type == PGOUTPUT_STREAM_START) in_stream_block = true;
 *         if (msg.type == PGOUTPUT_STREAM_STOP)  in_stream_block = false;
 *         ...
 *     pgoutput_message_free(&msg);
 *
 * Memory and lifetime (zero copy):
 *   - Strings and column values point into `buf`. They stay valid while `buf` does and until
 *     the next pgoutput_decode() on the same message. Every pgoutput_string is followed by a
 *     NUL in `buf` (the protocol terminates them), so `data` is also a usable C string.
 *   - Arrays the wire does not hold in host form (tuple values, relation columns, truncate
 *     relids) live in storage the message owns. pgoutput_decode() grows it as needed and
 *     reuses it on the next call, so a long stream allocates only while messages grow.
 *     pgoutput_message_free() releases it; the message can be re-used after init again.
 *   - On failure the message's variant is unspecified, but the storage is still owned by the
 *     message and must be freed.
 *
 * The caller tracks whether it is inside a Stream Start ... Stream Stop block, because that
 * decides whether Message, Relation, Type, Insert, Update, Delete and Truncate carry the
 * leading [xid] (see the usage loop above). The decoder does not check message order.
 *
 * Strictness: every field must be present and the message must end exactly after its last
 * field; a TupleData kind other than n/u/t/b, a negative count or length, an Update/Delete
 * marker other than K/O/N, or a string without its NUL is an error. Flags documented as 0
 * and the replica identity letter are passed through unchecked, so a newer server that sets
 * them still decodes.
 */
#ifndef PGTIDE_PGOUTPUT_H
#define PGTIDE_PGOUTPUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The message type is the tag byte on the wire. K and r are also used elsewhere in the
 * protocol (the Update/Delete old-key marker, the client's status update); as a message's
 * first byte they always mean Commit Prepared and Rollback Prepared. */
typedef enum pgoutput_message_type {
    PGOUTPUT_BEGIN = 'B',
    PGOUTPUT_COMMIT = 'C',
    PGOUTPUT_ORIGIN = 'O',
    PGOUTPUT_LOGICAL_MESSAGE = 'M',
    PGOUTPUT_RELATION = 'R',
    PGOUTPUT_TYPE = 'Y',
    PGOUTPUT_INSERT = 'I',
    PGOUTPUT_UPDATE = 'U',
    PGOUTPUT_DELETE = 'D',
    PGOUTPUT_TRUNCATE = 'T',
    PGOUTPUT_STREAM_START = 'S',
    PGOUTPUT_STREAM_STOP = 'E',
    PGOUTPUT_STREAM_COMMIT = 'c',
    PGOUTPUT_STREAM_ABORT = 'A',
    PGOUTPUT_BEGIN_PREPARE = 'b',
    PGOUTPUT_PREPARE = 'P',
    PGOUTPUT_COMMIT_PREPARED = 'K',
    PGOUTPUT_ROLLBACK_PREPARED = 'r',
    PGOUTPUT_STREAM_PREPARE = 'p',
} pgoutput_message_type;

/* TupleData column kinds, the byte values on the wire. */
typedef enum pgoutput_value_kind {
    PGOUTPUT_VALUE_NULL = 'n',
    PGOUTPUT_VALUE_UNCHANGED_TOAST = 'u', /* not sent: keep the target's current value */
    PGOUTPUT_VALUE_TEXT = 't',            /* the type's output function, no terminator */
    PGOUTPUT_VALUE_BINARY = 'b',          /* the type's send function */
} pgoutput_value_kind;

/* Which old row an Update or Delete carries. */
typedef enum pgoutput_old_tuple_kind {
    PGOUTPUT_OLD_TUPLE_NONE = 0,   /* Update only: no old row; find the row by the new one */
    PGOUTPUT_OLD_TUPLE_KEY = 'K',  /* replica-identity columns filled, the others NULL */
    PGOUTPUT_OLD_TUPLE_FULL = 'O', /* REPLICA IDENTITY FULL: the whole old row */
} pgoutput_old_tuple_kind;

#define PGOUTPUT_COLUMN_FLAG_KEY 1            /* Relation column flag: part of the key */
#define PGOUTPUT_MESSAGE_FLAG_TRANSACTIONAL 1 /* logical Message flag */
#define PGOUTPUT_TRUNCATE_CASCADE 1           /* Truncate options bits */
#define PGOUTPUT_TRUNCATE_RESTART_IDENTITY 2

/* Microseconds between the Unix epoch and the PostgreSQL epoch (2000-01-01 00:00:00 UTC). */
#define PGOUTPUT_EPOCH_OFFSET_USEC INT64_C(946684800000000)

/* A string inside the message buffer: `len` bytes, then a NUL at data[len]. */
typedef struct pgoutput_string {
    const char *data;
    size_t len;
} pgoutput_string;

/* One TupleData column. `data`/`len` are set for TEXT and BINARY only (NULL/0 otherwise). */
typedef struct pgoutput_value {
    pgoutput_value_kind kind;
    uint32_t len;
    const uint8_t *data;
} pgoutput_value;

/* One TupleData: `ncols` values, in the column order of the relation's last Relation
 * message. The values array is message storage (see the top of this file). */
typedef struct pgoutput_tuple {
    uint16_t ncols;
    const pgoutput_value *values;
} pgoutput_tuple;

typedef struct pgoutput_begin {
    uint64_t final_lsn; /* start of the commit record */
    int64_t commit_ts;  /* microseconds since 2000-01-01 UTC */
    uint32_t xid;
} pgoutput_begin;

typedef struct pgoutput_commit {
    uint8_t flags;
    uint64_t commit_lsn; /* equals the Begin's final_lsn */
    uint64_t end_lsn;    /* end of the commit record: the progress position */
    int64_t commit_ts;
} pgoutput_commit;

typedef struct pgoutput_origin {
    uint64_t commit_lsn; /* the commit LSN on the origin server */
    pgoutput_string name;
} pgoutput_origin;

typedef struct pgoutput_logical_message {
    uint8_t flags;
    bool transactional; /* flags & PGOUTPUT_MESSAGE_FLAG_TRANSACTIONAL */
    uint64_t lsn;
    pgoutput_string prefix;
    uint32_t content_len;
    const uint8_t *content; /* points into buf; not NUL-terminated */
} pgoutput_logical_message;

typedef struct pgoutput_relation_column {
    uint8_t flags; /* PGOUTPUT_COLUMN_FLAG_KEY */
    pgoutput_string name;
    uint32_t type_oid;
    int32_t typmod;
} pgoutput_relation_column;

typedef struct pgoutput_relation {
    uint32_t relid;
    pgoutput_string schema; /* namespace as sent: "" means pg_catalog */
    pgoutput_string name;
    char replica_identity; /* 'd' default, 'n' nothing, 'f' full, 'i' index */
    uint16_t ncols;
    const pgoutput_relation_column *columns; /* message storage */
} pgoutput_relation;

typedef struct pgoutput_type {
    uint32_t oid;
    pgoutput_string schema; /* "" means pg_catalog */
    pgoutput_string name;
} pgoutput_type;

typedef struct pgoutput_insert {
    uint32_t relid;
    pgoutput_tuple new_tuple;
} pgoutput_insert;

typedef struct pgoutput_update {
    uint32_t relid;
    pgoutput_old_tuple_kind old_kind;
    pgoutput_tuple old_tuple; /* ncols 0 when old_kind is NONE */
    pgoutput_tuple new_tuple; /* may hold UNCHANGED_TOAST values, even with FULL */
} pgoutput_update;

typedef struct pgoutput_delete {
    uint32_t relid;
    pgoutput_old_tuple_kind old_kind; /* KEY or FULL */
    pgoutput_tuple old_tuple;
} pgoutput_delete;

typedef struct pgoutput_truncate {
    uint32_t nrels;
    uint8_t options;        /* PGOUTPUT_TRUNCATE_CASCADE | PGOUTPUT_TRUNCATE_RESTART_IDENTITY */
    const uint32_t *relids; /* message storage, host byte order */
} pgoutput_truncate;

typedef struct pgoutput_stream_start {
    uint32_t xid; /* the top-level transaction */
    bool first_segment;
} pgoutput_stream_start;

typedef struct pgoutput_stream_commit {
    uint32_t xid;
    uint8_t flags;
    uint64_t commit_lsn;
    uint64_t end_lsn;
    int64_t commit_ts;
} pgoutput_stream_commit;

typedef struct pgoutput_stream_abort {
    uint32_t xid;
    uint32_t subxid;     /* == xid when the whole transaction aborted */
    bool has_abort_info; /* abort_lsn/abort_ts present (streaming 'parallel', proto 4) */
    uint64_t abort_lsn;
    int64_t abort_ts;
} pgoutput_stream_abort;

typedef struct pgoutput_begin_prepare {
    uint64_t prepare_lsn;
    uint64_t end_lsn;
    int64_t prepare_ts;
    uint32_t xid;
    pgoutput_string gid;
} pgoutput_begin_prepare;

/* Prepare and Stream Prepare share this layout. */
typedef struct pgoutput_prepare {
    uint8_t flags;
    uint64_t prepare_lsn;
    uint64_t end_lsn;
    int64_t prepare_ts;
    uint32_t xid;
    pgoutput_string gid;
} pgoutput_prepare;

typedef struct pgoutput_commit_prepared {
    uint8_t flags;
    uint64_t commit_lsn;
    uint64_t end_lsn;
    int64_t commit_ts;
    uint32_t xid;
    pgoutput_string gid;
} pgoutput_commit_prepared;

typedef struct pgoutput_rollback_prepared {
    uint8_t flags;
    uint64_t prepare_end_lsn;
    uint64_t rollback_end_lsn;
    int64_t prepare_ts;
    int64_t rollback_ts;
    uint32_t xid;
    pgoutput_string gid;
} pgoutput_rollback_prepared;

/* Storage owned by a message; internal to the decoder (see pgoutput_message_free). */
typedef struct pgoutput_storage {
    pgoutput_value *values;
    size_t values_capacity;
    pgoutput_relation_column *columns;
    size_t columns_capacity;
    uint32_t *relids;
    size_t relids_capacity;
} pgoutput_storage;

typedef struct pgoutput_message {
    pgoutput_message_type type;
    /* The [xid] prefix of Message/Relation/Type/Insert/Update/Delete/Truncate inside a
     * stream block: the top-level or a subtransaction xid. */
    bool has_stream_xid;
    uint32_t stream_xid;
    union {
        pgoutput_begin begin;
        pgoutput_commit commit;
        pgoutput_origin origin;
        pgoutput_logical_message logical_message;
        pgoutput_relation relation;
        pgoutput_type data_type;
        pgoutput_insert insert;
        pgoutput_update update;
        pgoutput_delete delete;
        pgoutput_truncate truncate;
        pgoutput_stream_start stream_start;
        pgoutput_stream_commit stream_commit;
        pgoutput_stream_abort stream_abort;
        pgoutput_begin_prepare begin_prepare;
        pgoutput_prepare prepare; /* PGOUTPUT_PREPARE and PGOUTPUT_STREAM_PREPARE */
        pgoutput_commit_prepared commit_prepared;
        pgoutput_rollback_prepared rollback_prepared;
    };
    pgoutput_storage storage;
} pgoutput_message;

/* Prepare an empty message (no storage yet). Zero-initialising it is equivalent. */
void pgoutput_message_init(pgoutput_message *msg);

/* Release the message's storage; the message is empty again afterwards. */
void pgoutput_message_free(pgoutput_message *msg);

/*
 * Decode one pgoutput message from buf[0..len). `in_stream_block` says whether the message
 * arrived between a Stream Start and its Stream Stop. Returns 0 on success, -1 on malformed
 * input (or out of memory) with a one-line message in errbuf naming the message, the field
 * and the byte offset. errbuf may be NULL when errlen is 0. Never reads outside buf.
 */
int pgoutput_decode(const uint8_t *buf, size_t len, bool in_stream_block, pgoutput_message *msg, char *errbuf,
                    size_t errlen);

/* "Begin", "Stream Abort", ... for a tag byte; "unknown" for anything else. */
const char *pgoutput_message_type_name(int type);

/* A pgoutput timestamp (microseconds since 2000-01-01 UTC) as microseconds since 1970.
 * Saturates instead of overflowing, because the value comes off the wire. */
static inline int64_t pgoutput_timestamp_to_unix_usec(int64_t pg_timestamp) {
    if (pg_timestamp > INT64_MAX - PGOUTPUT_EPOCH_OFFSET_USEC) return INT64_MAX;
    return pg_timestamp + PGOUTPUT_EPOCH_OFFSET_USEC;
}

#endif /* PGTIDE_PGOUTPUT_H */
