/*
 * copy_rows.h — a Lua function applied to each row of a COPY (copy_rows.c).
 */
#ifndef TIDE_COPY_ROWS_H
#define TIDE_COPY_ROWS_H

#include <lua.h>
#include <stddef.h>

typedef struct copy_rows copy_rows;

/* The function at index fn over rows whose columns are named by the sequence at index names;
 * the sequence at index keys (0: none) names the key columns, which it may not change; label
 * names the table in messages. Pushes a Lua thread that the caller must keep reachable for as
 * long as the copy_rows is used. */
copy_rows *copy_rows_new(lua_State *L, int fn, int names, int keys, const char *label);
void copy_rows_free(copy_rows *r);
/* One COPY text row in; 1 with *out and *outlen (valid until the next call) to send, 0 to drop it,
 * -1 with a message in err. */
int copy_rows_call(void *arg, const char *row, int len, const char **out, int *outlen, char *err,
                   size_t errlen);

#endif
