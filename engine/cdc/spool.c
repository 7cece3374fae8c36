/*
 * spool.c — streamed transactions on local disk until their Stream Commit (see spool.h).
 *
 * A file holds records `I32 len, I64 lsn, len bytes`: each change in the layout of a
 * non-streamed message (the [xid] after the tag removed). Subtransactions are remembered by
 * the file offset of their first change, in order of appearance; an abort of one cuts the
 * file there and forgets it and every subtransaction that appeared after it (its children,
 * or later ones whose changes the cut removed anyway — PostgreSQL's own apply worker does
 * the same).
 */
#include "cdc/spool.h"
#include "cdc/pgoutput.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WRITE_BUFFER (256 * 1024)
#define READ_BUFFER (256 * 1024)
#define RECORD_HEADER 12

typedef struct spool_subxact {
    uint32_t xid;
    uint64_t offset;
} spool_subxact;

/* A Relation or Type record of the file, kept in memory too: the cut of an aborted
 * subtransaction puts it back (pgoutput does not send it again in this transaction). */
typedef struct spool_schema {
    uint64_t offset;
    uint8_t *rec; /* the whole record, header included */
    size_t n;
} spool_schema;

typedef struct spool_file {
    uint32_t xid;
    int fd;
    uint64_t size; /* bytes of records, buffered ones included */
    uint8_t *wbuf; /* the last wlen bytes of the records, not yet written */
    size_t wlen;
    spool_subxact *subs;
    int nsubs, subcap;
    spool_schema *schemas;
    int nschemas, schemacap;
} spool_file;

struct tide_spool {
    char *dir;
    spool_file **files;
    int nfiles, cap;
    spool_file *current; /* inside this transaction's Stream Start ... Stream Stop */
    /* replay of a committed transaction */
    spool_file *replay;
    int phase;         /* 0 Begin, 1 changes, 2 Commit, 3 done */
    uint64_t read_off; /* file offset of rbuf[0] + rlen: the next byte to read */
    uint8_t *rbuf;
    size_t rcap, rpos, rlen;
    uint64_t remaining; /* record bytes not yet handed out */
    uint64_t commit_lsn, end_lsn;
    int64_t commit_ts;
    uint8_t frame[32]; /* a synthesised Begin or Commit */
    pgoutput_message msg;
    spool_counters n;
    char err[512];
    const char *sqlstate;
};

static void put_u32(uint8_t *p, uint32_t v) {
    for (int i = 3; i >= 0; --i, v >>= 8) p[i] = (uint8_t) v;
}
static void put_u64(uint8_t *p, uint64_t v) {
    for (int i = 7; i >= 0; --i, v >>= 8) p[i] = (uint8_t) v;
}
static uint32_t get_u32(const uint8_t *p) {
    return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 | p[3];
}
static uint64_t get_u64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = (v << 8) | p[i];
    return v;
}

static spool_result fail(tide_spool *sp, const char *what, uint32_t xid) {
    snprintf(sp->err, sizeof sp->err,
             "cannot %s the spool file of streamed transaction %u in %s: %s "
             "(set incremental.spool_dir to a file system with room for the largest transaction, "
             "or incremental.streaming = false to let the source spill it instead)",
             what, (unsigned) xid, sp->dir, strerror(errno));
    sp->sqlstate = "58030";
    return SPOOL_FAILED;
}

tide_spool *spool_create(const char *dir) {
    tide_spool *sp = calloc(1, sizeof *sp);
    if (!sp) return NULL;
    sp->dir = strdup(dir && *dir ? dir : "/tmp");
    if (!sp->dir) {
        free(sp);
        return NULL;
    }
    pgoutput_message_init(&sp->msg);
    return sp;
}

static void file_free(tide_spool *sp, spool_file *f) {
    if (!f) return;
    if (f->fd >= 0) close(f->fd);
    if (sp->n.bytes >= f->size) sp->n.bytes -= f->size;
    free(f->wbuf);
    free(f->subs);
    for (int i = 0; i < f->nschemas; i++) free(f->schemas[i].rec);
    free(f->schemas);
    free(f);
}

static void file_forget(tide_spool *sp, spool_file *f) {
    for (int i = 0; i < sp->nfiles; i++) {
        if (sp->files[i] != f) continue;
        sp->files[i] = sp->files[--sp->nfiles];
        break;
    }
    if (sp->current == f) sp->current = NULL;
    file_free(sp, f);
}

void spool_free(tide_spool *sp) {
    if (!sp) return;
    for (int i = 0; i < sp->nfiles; i++) file_free(sp, sp->files[i]);
    if (sp->replay) file_free(sp, sp->replay);
    free(sp->files);
    free(sp->rbuf);
    pgoutput_message_free(&sp->msg);
    free(sp->dir);
    free(sp);
}

static spool_file *file_find(tide_spool *sp, uint32_t xid) {
    for (int i = 0; i < sp->nfiles; i++)
        if (sp->files[i]->xid == xid) return sp->files[i];
    return NULL;
}

static spool_file *file_open(tide_spool *sp, uint32_t xid) {
    size_t n = strlen(sp->dir) + 32;
    char *path = malloc(n);
    if (!path) abort();
    snprintf(path, n, "%s/pgtide-xact-XXXXXX", sp->dir);
    int fd = mkstemp(path);
    if (fd < 0) {
        free(path);
        fail(sp, "create", xid);
        return NULL;
    }
    unlink(path); /* the file lives as long as the descriptor: a crash leaves nothing */
    free(path);
    spool_file *f = calloc(1, sizeof *f);
    if (!f) abort();
    f->xid = xid;
    f->fd = fd;
    if (sp->nfiles == sp->cap) {
        sp->cap = sp->cap ? sp->cap * 2 : 4;
        sp->files = realloc(sp->files, (size_t) sp->cap * sizeof *sp->files);
        if (!sp->files) abort();
    }
    sp->files[sp->nfiles++] = f;
    return f;
}

static int write_all(int fd, const uint8_t *p, size_t n, uint64_t off) {
    while (n) {
        ssize_t w = pwrite(fd, p, n, (off_t) off);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        n -= (size_t) w;
        off += (uint64_t) w;
    }
    return 0;
}

static int file_flush(spool_file *f) {
    if (!f->wlen) return 0;
    if (write_all(f->fd, f->wbuf, f->wlen, f->size - f->wlen) != 0) return -1;
    f->wlen = 0;
    return 0;
}

static int file_append(tide_spool *sp, spool_file *f, const uint8_t *p, size_t n) {
    if (!f->wbuf) {
        f->wbuf = malloc(WRITE_BUFFER);
        if (!f->wbuf) abort();
    }
    if (f->wlen + n > WRITE_BUFFER && file_flush(f) != 0) return -1;
    if (n > WRITE_BUFFER) { /* a large change goes straight to the file */
        if (write_all(f->fd, p, n, f->size) != 0) return -1;
    } else {
        if (n) memcpy(f->wbuf + f->wlen, p, n);
        f->wlen += n;
    }
    f->size += n;
    sp->n.bytes += n;
    if (sp->n.bytes > sp->n.peak_bytes) sp->n.peak_bytes = sp->n.bytes;
    return 0;
}

/* Cut the file back to `offset` bytes (an aborted subtransaction's first change); the Relation
 * and Type records that were after it are written again, in their order. */
static int file_truncate(tide_spool *sp, spool_file *f, uint64_t offset) {
    if (offset >= f->size) return 0;
    uint64_t cut = f->size - offset;
    if (cut <= f->wlen) {
        f->wlen -= (size_t) cut;
    } else {
        f->wlen = 0;
        if (ftruncate(f->fd, (off_t) offset) != 0) return -1;
    }
    f->size = offset;
    sp->n.bytes -= cut;
    for (int i = 0; i < f->nschemas; i++) {
        if (f->schemas[i].offset < offset) continue;
        f->schemas[i].offset = f->size;
        if (file_append(sp, f, f->schemas[i].rec, f->schemas[i].n) != 0) return -1;
    }
    return 0;
}

static spool_result spool_change(tide_spool *sp, uint64_t lsn, const uint8_t *payload, size_t len) {
    spool_file *f = sp->current;
    uint32_t xid = get_u32(payload + 1);
    if (xid != f->xid) {
        bool seen = false;
        for (int i = 0; i < f->nsubs && !seen; i++) seen = f->subs[i].xid == xid;
        if (!seen) {
            if (f->nsubs == f->subcap) {
                f->subcap = f->subcap ? f->subcap * 2 : 8;
                f->subs = realloc(f->subs, (size_t) f->subcap * sizeof *f->subs);
                if (!f->subs) abort();
            }
            f->subs[f->nsubs++] = (spool_subxact){ .xid = xid, .offset = f->size };
        }
    }
    uint8_t head[RECORD_HEADER + 1];
    if (len - 4 > UINT32_MAX) {
        snprintf(sp->err, sizeof sp->err, "a streamed change of %zu bytes is too large to spool", len);
        return SPOOL_FAILED;
    }
    put_u32(head, (uint32_t) (len - 4));
    put_u64(head + 4, lsn);
    head[RECORD_HEADER] = payload[0];
    if (file_append(sp, f, head, sizeof head) != 0 || file_append(sp, f, payload + 5, len - 5) != 0)
        return fail(sp, "write", f->xid);
    sp->n.spooled_changes++;
    return SPOOL_TAKEN;
}

/* A Relation or Type message inside a block: spooled in its place, so that apply meets it
 * at the commit between the changes it describes (a DDL in the transaction sends a new one). */
static spool_result spool_schema_record(tide_spool *sp, uint64_t lsn, const uint8_t *payload, size_t len) {
    spool_file *f = sp->current;
    size_t n = RECORD_HEADER + 1 + (len - 5);
    uint8_t *rec = malloc(n);
    if (!rec) abort();
    put_u32(rec, (uint32_t) (len - 4));
    put_u64(rec + 4, lsn);
    rec[RECORD_HEADER] = payload[0];
    memcpy(rec + RECORD_HEADER + 1, payload + 5, len - 5);
    if (f->nschemas == f->schemacap) {
        f->schemacap = f->schemacap ? f->schemacap * 2 : 8;
        f->schemas = realloc(f->schemas, (size_t) f->schemacap * sizeof *f->schemas);
        if (!f->schemas) abort();
    }
    f->schemas[f->nschemas++] = (spool_schema){ .offset = f->size, .rec = rec, .n = n };
    if (file_append(sp, f, rec, n) != 0) return fail(sp, "write", f->xid);
    return SPOOL_TAKEN;
}

static spool_result protocol(tide_spool *sp, const char *what) {
    snprintf(sp->err, sizeof sp->err, "unexpected streaming message from the source: %s", what);
    sp->sqlstate = "08P01";
    return SPOOL_FAILED;
}

spool_result spool_feed(tide_spool *sp, uint64_t lsn, const uint8_t *payload, size_t len, const uint8_t **out,
                        size_t *outlen) {
    *out = payload;
    *outlen = len;
    if (len == 0) return SPOOL_PASS;
    uint8_t tag = payload[0];
    switch (tag) {
    case PGOUTPUT_STREAM_START: {
        if (pgoutput_decode(payload, len, false, &sp->msg, sp->err, sizeof sp->err) != 0) return SPOOL_FAILED;
        if (sp->current) return protocol(sp, "Stream Start inside a stream block");
        uint32_t xid = sp->msg.stream_start.xid;
        spool_file *f = file_find(sp, xid);
        if (f && sp->msg.stream_start.first_segment) { /* sent again from its start */
            file_forget(sp, f);
            f = NULL;
        }
        if (!f && !(f = file_open(sp, xid))) return SPOOL_FAILED;
        sp->current = f;
        sp->n.blocks++;
        return SPOOL_TAKEN;
    }
    case PGOUTPUT_STREAM_STOP:
        if (!sp->current) return protocol(sp, "Stream Stop outside a stream block");
        sp->current = NULL;
        return SPOOL_TAKEN;
    case PGOUTPUT_STREAM_ABORT: {
        if (pgoutput_decode(payload, len, false, &sp->msg, sp->err, sizeof sp->err) != 0) return SPOOL_FAILED;
        if (sp->current) return protocol(sp, "Stream Abort inside a stream block");
        const pgoutput_stream_abort *a = &sp->msg.stream_abort;
        spool_file *f = file_find(sp, a->xid);
        if (!f) return SPOOL_TAKEN; /* nothing of it was spooled */
        if (a->subxid == a->xid) {
            file_forget(sp, f);
            sp->n.aborted_transactions++;
            return SPOOL_TAKEN;
        }
        for (int i = 0; i < f->nsubs; i++) {
            if (f->subs[i].xid != a->subxid) continue;
            if (file_truncate(sp, f, f->subs[i].offset) != 0) return fail(sp, "truncate", f->xid);
            f->nsubs = i;
            sp->n.aborted_subtransactions++;
            break;
        }
        return SPOOL_TAKEN;
    }
    case PGOUTPUT_STREAM_COMMIT: {
        if (pgoutput_decode(payload, len, false, &sp->msg, sp->err, sizeof sp->err) != 0) return SPOOL_FAILED;
        if (sp->current) return protocol(sp, "Stream Commit inside a stream block");
        if (sp->replay) return protocol(sp, "Stream Commit while another is being applied");
        const pgoutput_stream_commit *c = &sp->msg.stream_commit;
        spool_file *f = file_find(sp, c->xid);
        if (!f && !(f = file_open(sp, c->xid))) return SPOOL_FAILED; /* no change was published */
        if (file_flush(f) != 0) return fail(sp, "write", f->xid);
        for (int i = 0; i < sp->nfiles; i++) /* out of the open list; freed after replay */
            if (sp->files[i] == f) {
                sp->files[i] = sp->files[--sp->nfiles];
                break;
            }
        sp->replay = f;
        sp->phase = 0;
        sp->read_off = 0;
        sp->rpos = sp->rlen = 0;
        sp->remaining = f->size;
        sp->commit_lsn = c->commit_lsn;
        sp->end_lsn = c->end_lsn;
        sp->commit_ts = c->commit_ts;
        return SPOOL_REPLAY;
    }
    case PGOUTPUT_STREAM_PREPARE:
        return protocol(sp, "Stream Prepare (pgtide does not ask for two-phase decoding)");
    default: break;
    }
    if (!sp->current) return SPOOL_PASS;
    switch (tag) {
    case PGOUTPUT_INSERT:
    case PGOUTPUT_UPDATE:
    case PGOUTPUT_DELETE:
    case PGOUTPUT_TRUNCATE:
        if (len < 5) return protocol(sp, "a change shorter than its xid");
        return spool_change(sp, lsn, payload, len);
    case PGOUTPUT_RELATION:
    case PGOUTPUT_TYPE:
        if (len < 5) return protocol(sp, "a Relation or Type message shorter than its xid");
        return spool_schema_record(sp, lsn, payload, len);
    case PGOUTPUT_LOGICAL_MESSAGE:
        /* transactional messages carry the xid here; the task's DDL messages must be applied
         * at their place in the transaction */
        if (len < 5) return protocol(sp, "a Message shorter than its xid");
        return spool_change(sp, lsn, payload, len);
    case PGOUTPUT_ORIGIN: {
        /* Kept in its place (first, after Stream Start): apply skips a transaction of some
         * origins (apply_options.skip_origins). It carries no xid: the record is the message. */
        uint8_t head[RECORD_HEADER];
        if (len > UINT32_MAX) return protocol(sp, "an Origin message too large");
        put_u32(head, (uint32_t) len);
        put_u64(head + 4, lsn);
        if (file_append(sp, sp->current, head, sizeof head) != 0 ||
            file_append(sp, sp->current, payload, len) != 0)
            return fail(sp, "write", sp->current->xid);
        return SPOOL_TAKEN;
    }
    default: {
        char what[64];
        snprintf(what, sizeof what, "'%c' inside a stream block", tag);
        return protocol(sp, what);
    }
    }
}

bool spool_replaying(const tide_spool *sp) { return sp->replay != NULL; }

/* Make rbuf[rpos..rpos+n) hold the next n bytes of the file. */
static int read_ahead(tide_spool *sp, size_t n) {
    if (sp->rlen - sp->rpos >= n) return 0;
    size_t have = sp->rlen - sp->rpos;
    if (have) memmove(sp->rbuf, sp->rbuf + sp->rpos, have);
    sp->rpos = 0;
    sp->rlen = have;
    size_t want = n > READ_BUFFER ? n : READ_BUFFER;
    if (sp->rcap < want) {
        sp->rbuf = realloc(sp->rbuf, want);
        if (!sp->rbuf) abort();
        sp->rcap = want;
    }
    while (sp->rlen < n) {
        ssize_t r = pread(sp->replay->fd, sp->rbuf + sp->rlen, sp->rcap - sp->rlen, (off_t) sp->read_off);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            if (r == 0) errno = EIO;
            return -1;
        }
        sp->rlen += (size_t) r;
        sp->read_off += (uint64_t) r;
    }
    return 0;
}

int spool_next(tide_spool *sp, uint64_t *lsn, const uint8_t **payload, size_t *len) {
    spool_file *f = sp->replay;
    if (!f) return 0;
    *lsn = 0;
    switch (sp->phase) {
    case 0: /* Begin: final_lsn, commit_ts, xid */
        sp->frame[0] = PGOUTPUT_BEGIN;
        put_u64(sp->frame + 1, sp->commit_lsn);
        put_u64(sp->frame + 9, (uint64_t) sp->commit_ts);
        put_u32(sp->frame + 17, f->xid);
        *payload = sp->frame;
        *len = 21;
        sp->phase = 1;
        return 1;
    case 1:
        if (sp->remaining > 0) {
            if (sp->remaining < RECORD_HEADER || read_ahead(sp, RECORD_HEADER) != 0) {
                fail(sp, "read", f->xid);
                return -1;
            }
            uint32_t n = get_u32(sp->rbuf + sp->rpos);
            *lsn = get_u64(sp->rbuf + sp->rpos + 4);
            if (RECORD_HEADER + (uint64_t) n > sp->remaining || read_ahead(sp, RECORD_HEADER + n) != 0) {
                fail(sp, "read", f->xid);
                return -1;
            }
            *payload = sp->rbuf + sp->rpos + RECORD_HEADER;
            *len = n;
            sp->rpos += RECORD_HEADER + n;
            sp->remaining -= RECORD_HEADER + n;
            return 1;
        }
        sp->phase = 2;
        /* fall through */
    case 2: /* Commit: flags, commit_lsn, end_lsn, commit_ts */
        sp->frame[0] = PGOUTPUT_COMMIT;
        sp->frame[1] = 0;
        put_u64(sp->frame + 2, sp->commit_lsn);
        put_u64(sp->frame + 10, sp->end_lsn);
        put_u64(sp->frame + 18, (uint64_t) sp->commit_ts);
        *payload = sp->frame;
        *len = 26;
        *lsn = sp->end_lsn;
        sp->phase = 3;
        return 1;
    default:
        sp->replay = NULL;
        file_free(sp, f);
        sp->n.streamed_transactions++;
        if (sp->rcap > READ_BUFFER) { /* give back what one large change needed */
            free(sp->rbuf);
            sp->rbuf = NULL;
            sp->rcap = 0;
        }
        sp->rpos = sp->rlen = 0;
        return 0;
    }
}

const char *spool_error(const tide_spool *sp) { return sp->err[0] ? sp->err : "spool failure"; }

const char *spool_sqlstate(const tide_spool *sp) { return sp->sqlstate ? sp->sqlstate : "08P01"; }

void spool_get_counters(const tide_spool *sp, spool_counters *out) {
    *out = sp->n;
    out->open = sp->nfiles;
}
