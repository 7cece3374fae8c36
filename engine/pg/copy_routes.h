/*
 * copy_routes.h — rows an on.row function routed to other tables during a COPY (copy_routes.c):
 * kept per destination in a temporary file while the COPY runs, read back in batches once it
 * ended, each batch as one PostgreSQL array literal per column (for INSERT ... SELECT FROM
 * unnest($1::text[], ...), in the same target transaction as the COPY).
 */
#ifndef TIDE_COPY_ROUTES_H
#define TIDE_COPY_ROUTES_H

#include <stddef.h>
#include <stdint.h>

typedef struct copy_routes copy_routes;

copy_routes *copy_routes_new(int nroutes, int ncols);
void copy_routes_free(copy_routes *r);
int copy_routes_count(const copy_routes *r);   /* destinations */
int copy_routes_columns(const copy_routes *r); /* columns of each row */
/* Keep one COPY text row (fields escaped, no newline) for destination k (0-based). 0, or -1 with a
 * message in err (the temporary file could not be written). */
int copy_routes_add(copy_routes *r, int k, const char *row, size_t len, char *err, size_t errlen);
/* Rows kept for destination k so far. */
int64_t copy_routes_rows(const copy_routes *r, int k);
/* The next rows of destination k, at most max_rows and about max_bytes: sets cols[c] (valid until
 * the next call) to the array literal of column c. Returns the number of rows (0 when all were
 * read), or -1 with a message in err. */
int copy_routes_batch(copy_routes *r, int k, int max_rows, size_t max_bytes, const char ***cols, char *err,
                      size_t errlen);
/* Close the temporary files (the rows are gone). */
void copy_routes_close(copy_routes *r);

/* Decode one COPY text field (backslash escapes) into *buf (grown as needed); returns its length
 * (copy_rows.c). */
size_t copy_text_decode(const char *s, size_t n, char **buf, size_t *cap);
/* Grow *buf (doubling, from 256 bytes) to hold at least `need` bytes (copy_rows.c). */
void copy_buf_grow(char **buf, size_t *cap, size_t need);

#endif
