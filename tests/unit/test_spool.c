/*
 * test_spool.c — streamed transactions through the spool: blocks of two transactions
 * interleaved with an ordinary one, a subtransaction cut back, a nested one, a whole
 * transaction aborted, a transaction sent again from its first segment, a change larger than
 * the write buffer, Relation messages passed on at once without their xid, and what apply
 * receives at Stream Commit (Begin, the changes in order, Commit) decoded by the real decoder.
 * TAP output; exit status 1 on any failure.
 */
#include "cdc/pgoutput.h"
#include "cdc/spool.h"
#include "tap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- message builders */

/* One line per message, in the order of its fields on the wire. */
/* clang-format off */
typedef struct msg { uint8_t b[512]; size_t n; uint8_t *big; } msg;

static void u8(msg *m, uint8_t v) { m->b[m->n++] = v; }
static void u16(msg *m, uint16_t v) { u8(m, (uint8_t) (v >> 8)); u8(m, (uint8_t) v); }
static void u32(msg *m, uint32_t v) { for (int i = 3; i >= 0; i--) u8(m, (uint8_t) (v >> (i * 8))); }
static void u64(msg *m, uint64_t v) { for (int i = 7; i >= 0; i--) u8(m, (uint8_t) (v >> (i * 8))); }
static void str(msg *m, const char *s) { size_t n = strlen(s) + 1; memcpy(m->b + m->n, s, n); m->n += n; }

static msg stream_start(uint32_t xid, int first) { msg m = {0}; u8(&m, 'S'); u32(&m, xid); u8(&m, (uint8_t) first); return m; }
static msg stream_stop(void) { msg m = {0}; u8(&m, 'E'); return m; }
static msg stream_commit(uint32_t xid, uint64_t lsn, uint64_t end) {
    msg m = {0}; u8(&m, 'c'); u32(&m, xid); u8(&m, 0); u64(&m, lsn); u64(&m, end); u64(&m, 777); return m;
}
static msg stream_abort(uint32_t xid, uint32_t sub) { msg m = {0}; u8(&m, 'A'); u32(&m, xid); u32(&m, sub); return m; }
/* Insert into relation 16384 of one text column holding `v`; xid 0 = not in a stream block. */
static msg insert(uint32_t xid, const char *v) {
    msg m = {0};
    u8(&m, 'I');
    if (xid) u32(&m, xid);
    u32(&m, 16384); u8(&m, 'N'); u16(&m, 1); u8(&m, 't'); u32(&m, (uint32_t) strlen(v));
    memcpy(m.b + m.n, v, strlen(v)); m.n += strlen(v);
    return m;
}
static msg relation(uint32_t xid) {
    msg m = {0};
    u8(&m, 'R');
    if (xid) u32(&m, xid);
    u32(&m, 16384); str(&m, "public"); str(&m, "t"); u8(&m, 'd'); u16(&m, 1);
    u8(&m, 1); str(&m, "v"); u32(&m, 25); u32(&m, (uint32_t) -1);
    return m;
}

/* clang-format on */

static spool_result feed(tide_spool *sp, msg m, const uint8_t **out, size_t *outlen) {
    return spool_feed(sp, 0x100, m.big ? m.big : m.b, m.n, out, outlen);
}
static spool_result feed1(tide_spool *sp, msg m) {
    const uint8_t *o;
    size_t n;
    return feed(sp, m, &o, &n);
}

/* Replay what the spool holds; returns the inserted values joined by ',' ("" if none),
 * checking the frame around them. */
static char replayed[1 << 21];
static char replayed_origin[64];
static int replayed_relations;
static int replay(tide_spool *sp, uint64_t want_lsn, uint64_t want_end) {
    pgoutput_message m;
    pgoutput_message_init(&m);
    char err[256];
    replayed[0] = replayed_origin[0] = '\0';
    replayed_relations = 0;
    int count = 0, ok = 1, began = 0, committed = 0;
    for (;;) {
        uint64_t lsn;
        const uint8_t *p;
        size_t n;
        int r = spool_next(sp, &lsn, &p, &n);
        if (r <= 0) {
            ok = ok && r == 0;
            break;
        }
        if (pgoutput_decode(p, n, false, &m, err, sizeof err) != 0) {
            printf("# %s\n", err);
            ok = 0;
            continue;
        }
        if (m.type == PGOUTPUT_BEGIN)
            began = m.begin.final_lsn == want_lsn && m.begin.commit_ts == 777 && count == 0;
        else if (m.type == PGOUTPUT_COMMIT)
            committed = m.commit.commit_lsn == want_lsn && m.commit.end_lsn == want_end;
        else if (m.type == PGOUTPUT_INSERT) {
            const pgoutput_value *v = &m.insert.new_tuple.values[0];
            size_t at = strlen(replayed);
            if (at + v->len + 2 < sizeof replayed) {
                if (at) replayed[at++] = ',';
                memcpy(replayed + at, v->data, v->len);
                replayed[at + v->len] = '\0';
            }
        } else if (m.type == PGOUTPUT_ORIGIN && count == 1 && m.origin.name.len < sizeof replayed_origin) {
            memcpy(replayed_origin, m.origin.name.data, m.origin.name.len);
            replayed_origin[m.origin.name.len] = '\0';
        } else if (m.type == PGOUTPUT_RELATION && m.relation.relid == 16384) {
            replayed_relations++;
        } else
            ok = 0;
        count++;
    }
    pgoutput_message_free(&m);
    return ok && began && committed;
}

int main(void) {
    tide_spool *sp = spool_create("/tmp");
    const uint8_t *out;
    size_t outlen;

    /* Ordinary messages pass untouched. */
    msg plain = insert(0, "x");
    tap_check(feed(sp, plain, &out, &outlen) == SPOOL_PASS && outlen == plain.n &&
                  memcmp(out, plain.b, outlen) == 0,
              "a message outside a stream block passes as it is");

    /* Transaction 500: two blocks, with transaction 600's block and an ordinary message between. */
    tap_check(feed1(sp, stream_start(500, 1)) == SPOOL_TAKEN, "Stream Start is taken");
    msg rel = relation(500);
    tap_check(feed(sp, rel, &out, &outlen) == SPOOL_TAKEN,
              "a Relation inside a block is spooled in its place");
    tap_check(feed1(sp, insert(500, "a1")) == SPOOL_TAKEN, "a change inside a block is spooled");
    tap_check(feed1(sp, insert(501, "s1")) == SPOOL_TAKEN, "a subtransaction's change is spooled");
    tap_check(feed1(sp, insert(502, "s2")) == SPOOL_TAKEN, "a nested subtransaction's change is spooled");
    tap_check(feed1(sp, stream_stop()) == SPOOL_TAKEN, "Stream Stop is taken");
    tap_check(feed1(sp, stream_start(600, 1)) == SPOOL_TAKEN && feed1(sp, insert(600, "b1")) == SPOOL_TAKEN &&
                  feed1(sp, stream_stop()) == SPOOL_TAKEN,
              "another transaction's block interleaves");
    tap_check(feed1(sp, insert(0, "ordinary")) == SPOOL_PASS,
              "an ordinary transaction between blocks passes");
    tap_check(feed1(sp, stream_abort(500, 502)) == SPOOL_TAKEN, "the nested subtransaction aborts");
    tap_check(feed1(sp, stream_start(500, 0)) == SPOOL_TAKEN &&
                  feed1(sp, insert(501, "s1b")) == SPOOL_TAKEN &&
                  feed1(sp, insert(503, "s3")) == SPOOL_TAKEN && feed1(sp, relation(503)) == SPOOL_TAKEN &&
                  feed1(sp, insert(500, "a2")) == SPOOL_TAKEN && feed1(sp, stream_stop()) == SPOOL_TAKEN,
              "a second block of the first transaction");
    tap_check(feed1(sp, stream_abort(500, 503)) == SPOOL_TAKEN, "a later subtransaction aborts");
    spool_counters c;
    spool_get_counters(sp, &c);
    tap_check(c.open == 2 && c.aborted_subtransactions == 2 && c.spooled_changes == 7,
              "two open, two subtransactions cut");
    tap_check(feed1(sp, stream_commit(500, 0x2000, 0x2040)) == SPOOL_REPLAY,
              "Stream Commit asks for a replay");
    tap_check(spool_replaying(sp), "replaying");
    /* 503's abort cut "s3" and everything after it ("a2" too, as PostgreSQL's worker does:
     * in a real stream a2 cannot follow s3 while 503 is open). */
    tap_check(replay(sp, 0x2000, 0x2040) && strcmp(replayed, "a1,s1,s1b") == 0,
              "apply gets Begin, the changes that survived in order, Commit");
    printf("#   replayed: %s\n", replayed);
    tap_check(replayed_relations == 2,
              "the Relations come back in their place, the one in the cut subtransaction written again");
    tap_check(!spool_replaying(sp), "the replay is over");

    /* Transaction 600 aborts whole. */
    tap_check(feed1(sp, stream_abort(600, 600)) == SPOOL_TAKEN, "a whole transaction aborts");
    spool_get_counters(sp, &c);
    tap_check(c.open == 0 && c.aborted_transactions == 1 && c.bytes == 0, "nothing left on disk");

    /* A transaction replayed on the source under a replication origin: its Origin message
     * (no xid) comes back right after Begin, so apply can skip it (skip_origins). */
    feed1(sp, stream_start(750, 1));
    msg origin = { 0 };
    u8(&origin, 'O');
    u64(&origin, 0x1234);
    str(&origin, "pgtide_fwd");
    tap_check(feed1(sp, origin) == SPOOL_TAKEN, "an Origin message inside a block is spooled");
    feed1(sp, insert(750, "o1"));
    feed1(sp, stream_stop());
    tap_check(feed1(sp, stream_commit(750, 0x2800, 0x2810)) == SPOOL_REPLAY && replay(sp, 0x2800, 0x2810) &&
                  strcmp(replayed, "o1") == 0 && strcmp(replayed_origin, "pgtide_fwd") == 0,
              "the replay gives Begin, the Origin, the changes, Commit");

    /* Sent again from its first segment (after a reconnect): the earlier part is dropped. */
    feed1(sp, stream_start(700, 1));
    feed1(sp, insert(700, "old"));
    feed1(sp, stream_stop());
    feed1(sp, stream_start(700, 1));
    feed1(sp, insert(700, "new"));
    feed1(sp, stream_stop());
    tap_check(feed1(sp, stream_commit(700, 0x3000, 0x3010)) == SPOOL_REPLAY && replay(sp, 0x3000, 0x3010) &&
                  strcmp(replayed, "new") == 0,
              "a transaction sent again from its start replaces what was spooled");

    /* A change larger than the write buffer and many small ones around it. */
    size_t bign = 600 * 1024;
    msg big = { 0 };
    big.big = malloc(bign + 32);
    {
        msg h = { 0 };
        u8(&h, 'I');
        u32(&h, 800);
        u32(&h, 16384);
        u8(&h, 'N');
        u16(&h, 1);
        u8(&h, 't');
        u32(&h, (uint32_t) bign);
        memcpy(big.big, h.b, h.n);
        memset(big.big + h.n, 'z', bign);
        big.n = h.n + bign;
    }
    feed1(sp, stream_start(800, 1));
    for (int i = 0; i < 3000; i++) feed1(sp, insert(800, "small"));
    tap_check(feed1(sp, big) == SPOOL_TAKEN, "a 600 kB change is spooled");
    feed1(sp, insert(800, "tail"));
    feed1(sp, stream_stop());
    spool_get_counters(sp, &c);
    tap_check(c.peak_bytes > bign, "the spool's size is counted");
    tap_check(feed1(sp, stream_commit(800, 0x4000, 0x4010)) == SPOOL_REPLAY && replay(sp, 0x4000, 0x4010),
              "the large transaction replays");
    size_t rl = strlen(replayed);
    tap_check(rl == 3000 * 6 + bign + 5 && strcmp(replayed + rl - 5, ",tail") == 0 &&
                  replayed[3000 * 6] == 'z' && replayed[3000 * 6 + bign - 1] == 'z',
              "every change in order, the large one whole");
    free(big.big);

    /* A committed transaction that spooled no change is an empty transaction. */
    feed1(sp, stream_start(900, 1));
    feed1(sp, relation(900));
    feed1(sp, stream_stop());
    tap_check(feed1(sp, stream_commit(900, 0x5000, 0x5010)) == SPOOL_REPLAY && replay(sp, 0x5000, 0x5010) &&
                  replayed[0] == '\0',
              "a streamed transaction without a change replays as Begin + Commit");

    /* Protocol errors are named. */
    feed1(sp, stream_start(1000, 1));
    tap_check(feed1(sp, stream_start(1001, 1)) == SPOOL_FAILED &&
                  strstr(spool_error(sp), "Stream Start inside") != NULL,
              "a Stream Start inside a block is an error");
    spool_free(sp);

    /* A directory that cannot hold files: the error says where and what to do. */
    sp = spool_create("/nonexistent/spool");
    tap_check(feed1(sp, stream_start(1, 1)) == SPOOL_FAILED &&
                  strstr(spool_error(sp), "/nonexistent/spool") != NULL &&
                  strstr(spool_error(sp), "incremental.spool_dir") != NULL,
              "an unusable spool directory is named with the fix");
    spool_free(sp);

    return tap_done();
}
