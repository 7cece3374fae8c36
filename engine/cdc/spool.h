/*
 * spool.h — transactions that the source streams while they are still running
 * (START_REPLICATION ... streaming 'on'), kept on local disk until they end.
 *
 * With streaming on, the walsender sends a transaction larger than its
 * logical_decoding_work_mem in blocks (Stream Start ... Stream Stop), interleaved with other
 * transactions, long before it commits — and it may still abort, whole or one subtransaction
 * at a time. Apply takes whole transactions in commit order, so each streamed transaction's
 * changes are appended to a file of its own (one per top-level xid, unlinked at creation so a
 * crash leaves nothing behind) and handed to apply at its Stream Commit as one ordinary
 * transaction: a Begin, the changes, a Commit, all synthesised in the non-streamed layout.
 * A Stream Abort of a subtransaction cuts the file back to that subtransaction's first change;
 * of the top-level transaction, drops the file.
 *
 * Relation and Type messages inside a block are spooled in their place, like the changes (and
 * the task's DDL messages): a DDL inside the transaction makes pgoutput send a new Relation
 * between the changes of the old shape and those of the new one, and apply must meet them in
 * that order. pgoutput sends them once per streamed transaction, so a copy is kept in memory
 * and written again when the cut of an aborted subtransaction removes it.
 *
 * Engine memory stays bounded: one write buffer per open streamed transaction (and its
 * Relation/Type records) and one read buffer (grown only to the largest single change) while
 * replaying. Pure C, no loop.
 */
#ifndef TIDE_SPOOL_H
#define TIDE_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct tide_spool tide_spool;

typedef enum spool_result {
    SPOOL_FAILED = -1, /* spool_error() says why */
    SPOOL_PASS = 0,    /* not for the spool: give *out (len *outlen) to apply now */
    SPOOL_TAKEN = 1,   /* kept (or dropped); nothing to do */
    SPOOL_REPLAY = 2,  /* a Stream Commit: call spool_next() until it returns 0 */
} spool_result;

typedef struct spool_counters {
    uint64_t streamed_transactions;   /* committed, handed to apply */
    uint64_t aborted_transactions;    /* dropped at a top-level Stream Abort */
    uint64_t aborted_subtransactions; /* cut back at a subtransaction's Stream Abort */
    uint64_t blocks;                  /* Stream Start messages */
    uint64_t spooled_changes;
    uint64_t bytes; /* held on disk now */
    uint64_t peak_bytes;
    int open; /* streamed transactions in progress */
} spool_counters;

/* A spool writing its files in `dir` (must exist). NULL only when out of memory. */
tide_spool *spool_create(const char *dir);
void spool_free(tide_spool *sp);

/*
 * One pgoutput payload from the stream, `lsn` its frame's dataStart. Non-streaming messages
 * come back as SPOOL_PASS with *out = payload; everything inside a block is taken.
 */
spool_result spool_feed(tide_spool *sp, uint64_t lsn, const uint8_t *payload, size_t len, const uint8_t **out,
                        size_t *outlen);

/*
 * After SPOOL_REPLAY: the next message of the committed transaction (Begin, its changes,
 * Commit). Returns 1 with the message in *payload (valid until the next call), 0 when the
 * transaction has been handed over whole (its file is gone), -1 on a read error.
 */
int spool_next(tide_spool *sp, uint64_t *lsn, const uint8_t **payload, size_t *len);
bool spool_replaying(const tide_spool *sp);

const char *spool_error(const tide_spool *sp);
/* "58030" (I/O error) or "08P01" (the stream broke the protocol). */
const char *spool_sqlstate(const tide_spool *sp);
void spool_get_counters(const tide_spool *sp, spool_counters *out);

#endif
