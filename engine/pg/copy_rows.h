/*
 * copy_rows.h — a Lua function applied to each row of a COPY (copy_rows.c).
 */
#ifndef TIDE_COPY_ROWS_H
#define TIDE_COPY_ROWS_H

#include "pg/copy_routes.h"

#include <lua.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct copy_rows copy_rows;

/* The function at index fn over rows whose columns are named by the sequence at index names;
 * the sequence at index keys (0: none) names the key columns, which it may not change; the table
 * at index routes (0: none) maps each name the function may return as its second value to 0 (the
 * table itself) or k (the k-th destination of on.route: the row is kept by copy_routes.c, not
 * sent); label names the table in messages. Pushes a Lua thread that the caller must keep
 * reachable for as long as the copy_rows is used. */
copy_rows *copy_rows_new(lua_State *L, int fn, int names, int keys, int routes, const char *label);
void copy_rows_free(copy_rows *r);
/* keep = false: rows kept for the table itself are not sent either (only routed rows are wanted). */
void copy_rows_set_keep(copy_rows *r, bool keep);
/* The routed rows (NULL when no routes were given), and how many rows were routed. */
copy_routes *copy_rows_routes(copy_rows *r);
int64_t copy_rows_routed(const copy_rows *r);
/* One COPY text row in; 1 with *out and *outlen (valid until the next call) to send, 0 when it is
 * not sent (dropped, or routed: copy_rows_routed counts those), -1 with a message in err. */
int copy_rows_call(void *arg, const char *row, int len, const char **out, int *outlen, char *err,
                   size_t errlen);

#endif
