/*
 * copy_routes.c — the rows an on.row function routed to other tables (on.route) during a COPY.
 * copy_rows.c encodes such a row as it encodes a kept one (a COPY text line) and hands it here
 * instead of to the target's COPY, which is busy with the table's own rows. Each destination's
 * rows go to a temporary file of its own (tmpfile(): unlinked at once, gone with the process),
 * so a table that routes most of its rows needs disk, not memory. Once the COPY ended, the full
 * load (tide.full.routes) reads them back in batches, each column of a batch as one array
 * literal ('{"v1",NULL,...}'), and inserts them into the destination in the COPY's transaction.
 */
#include "pg/copy_routes.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct route_file {
    FILE *f;
    int64_t rows;
    bool reading; /* rewound: rows are read back */
} route_file;

typedef struct column_buf {
    char *data;
    size_t len, cap;
} column_buf;

struct copy_routes {
    int nroutes, ncols;
    route_file *files;
    column_buf *cols;
    const char **out; /* per column: cols[c].data */
    char *line;       /* getline's buffer */
    size_t line_cap;
    char *field; /* a decoded field */
    size_t field_cap;
};

copy_routes *copy_routes_new(int nroutes, int ncols) {
    copy_routes *r = calloc(1, sizeof *r);
    if (!r) abort();
    r->nroutes = nroutes;
    r->ncols = ncols;
    r->files = calloc((size_t) (nroutes ? nroutes : 1), sizeof *r->files);
    r->cols = calloc((size_t) (ncols ? ncols : 1), sizeof *r->cols);
    r->out = calloc((size_t) (ncols ? ncols : 1), sizeof *r->out);
    if (!r->files || !r->cols || !r->out) abort();
    return r;
}

void copy_routes_close(copy_routes *r) {
    if (!r) return;
    for (int k = 0; k < r->nroutes; k++) {
        if (r->files[k].f) fclose(r->files[k].f);
        r->files[k].f = NULL;
    }
}

void copy_routes_free(copy_routes *r) {
    if (!r) return;
    copy_routes_close(r);
    for (int c = 0; c < r->ncols; c++) free(r->cols[c].data);
    free(r->cols);
    free(r->out);
    free(r->files);
    free(r->line);
    free(r->field);
    free(r);
}

int copy_routes_count(const copy_routes *r) { return r ? r->nroutes : 0; }
int copy_routes_columns(const copy_routes *r) { return r ? r->ncols : 0; }

int64_t copy_routes_rows(const copy_routes *r, int k) {
    return r && k >= 0 && k < r->nroutes ? r->files[k].rows : 0;
}

int copy_routes_add(copy_routes *r, int k, const char *row, size_t len, char *err, size_t errlen) {
    route_file *rf = &r->files[k];
    if (rf->reading) {
        snprintf(err, errlen, "a routed row arrived after the routed rows were read back");
        return -1;
    }
    if (!rf->f && !(rf->f = tmpfile())) {
        snprintf(err, errlen, "cannot make a temporary file for routed rows: %s (is TMPDIR writable?)",
                 strerror(errno));
        return -1;
    }
    if (fwrite(row, 1, len, rf->f) != len || fputc('\n', rf->f) == EOF) {
        snprintf(err, errlen, "cannot write routed rows to a temporary file: %s (is the disk full?)",
                 strerror(errno));
        return -1;
    }
    rf->rows++;
    return 0;
}

static void col_add(column_buf *b, const char *s, size_t n) {
    copy_buf_grow(&b->data, &b->cap, b->len + n + 1);
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

/* One element of an array literal: NULL, or the value in double quotes with " and \ escaped. */
static void col_add_element(copy_routes *r, column_buf *b, const char *field, size_t n) {
    if (b->len > 1) col_add(b, ",", 1);
    if (n == 2 && field[0] == '\\' && field[1] == 'N') {
        col_add(b, "NULL", 4);
        return;
    }
    size_t len = copy_text_decode(field, n, &r->field, &r->field_cap);
    copy_buf_grow(&b->data, &b->cap, b->len + 2 * len + 3);
    char *o = b->data + b->len;
    *o++ = '"';
    for (size_t i = 0; i < len; i++) {
        char c = r->field[i];
        if (c == '"' || c == '\\') *o++ = '\\';
        *o++ = c;
    }
    *o++ = '"';
    *o = '\0';
    b->len = (size_t) (o - b->data);
}

int copy_routes_batch(copy_routes *r, int k, int max_rows, size_t max_bytes, const char ***cols, char *err,
                      size_t errlen) {
    route_file *rf = &r->files[k];
    if (!rf->f) return 0;
    if (!rf->reading) {
        if (fflush(rf->f) != 0 || fseek(rf->f, 0, SEEK_SET) != 0) {
            snprintf(err, errlen, "cannot read routed rows back: %s", strerror(errno));
            return -1;
        }
        rf->reading = true;
    }
    for (int c = 0; c < r->ncols; c++) {
        r->cols[c].len = 0;
        col_add(&r->cols[c], "{", 1);
    }
    int rows = 0;
    size_t bytes = 0;
    while (rows < max_rows && bytes < max_bytes) {
        ssize_t n = getline(&r->line, &r->line_cap, rf->f);
        if (n < 0) break;
        if (n && r->line[n - 1] == '\n') n--;
        size_t start = 0;
        int col = 0;
        for (size_t i = 0; i <= (size_t) n; i++) {
            if (i < (size_t) n && r->line[i] != '\t') continue;
            if (col < r->ncols) col_add_element(r, &r->cols[col], r->line + start, i - start);
            col++;
            start = i + 1;
        }
        if (col != r->ncols) {
            snprintf(err, errlen, "a routed row read back has %d fields, not %d", col, r->ncols);
            return -1;
        }
        rows++;
        bytes += (size_t) n;
    }
    if (ferror(rf->f)) {
        snprintf(err, errlen, "cannot read routed rows back: %s", strerror(errno));
        return -1;
    }
    for (int c = 0; c < r->ncols; c++) {
        col_add(&r->cols[c], "}", 1);
        r->out[c] = r->cols[c].data;
    }
    *cols = r->out;
    return rows;
}
