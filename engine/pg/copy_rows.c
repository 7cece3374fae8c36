/*
 * copy_rows.c — a Lua function over every row of a COPY (on.row in a playbook): the pump hands
 * each row, one COPY text line, to copy_rows_call, which decodes its fields into a Lua table
 * (column name → string, or tide.null), calls the function, and encodes what it returns back
 * into a COPY text line for the target, or drops the row.
 *
 * The function runs on a Lua thread of its own, from the pump's I/O callback: it must not
 * yield (no I/O). What it may return: nil or true (the row as it left it), false (drop the
 * row), or a table (that row). Every column must have a value — tide.null for NULL — and no
 * other key may be set, so a misspelt column is an error, not a silently unchanged value.
 */
#include "pg/copy_rows.h"

#include "runtime/bindings.h"

#include <lauxlib.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct copy_rows {
    lua_State *T; /* stack: 1 the function, 2 the column names (a sequence), 3 the label */
    int ncols;
    bool *key;     /* per column: part of the key, which the function may not change */
    size_t *in_at; /* per column: where its field starts in the row, and its length */
    size_t *in_len;
    char *out;
    size_t out_len, out_cap;
    char *field;
    size_t field_cap;
};

static void grow(char **buf, size_t *cap, size_t need) {
    if (need <= *cap) return;
    size_t cap2 = *cap ? *cap : 256;
    while (cap2 < need) cap2 *= 2;
    char *b = realloc(*buf, cap2);
    if (!b) abort();
    *buf = b;
    *cap = cap2;
}

copy_rows *copy_rows_new(lua_State *L, int fn, int names, int keys, const char *label) {
    copy_rows *r = calloc(1, sizeof *r);
    if (!r) abort();
    fn = lua_absindex(L, fn);
    names = lua_absindex(L, names);
    r->ncols = (int) luaL_len(L, names);
    size_t n = (size_t) (r->ncols ? r->ncols : 1);
    r->key = calloc(n, sizeof *r->key);
    r->in_at = calloc(n, sizeof *r->in_at);
    r->in_len = calloc(n, sizeof *r->in_len);
    if (!r->key || !r->in_at || !r->in_len) abort();
    if (keys && lua_istable(L, keys)) {
        keys = lua_absindex(L, keys);
        for (int c = 0; c < r->ncols; c++) {
            lua_rawgeti(L, names, c + 1);
            for (lua_Integer k = 1; k <= (lua_Integer) luaL_len(L, keys); k++) {
                lua_rawgeti(L, keys, k);
                if (lua_rawequal(L, -1, -2)) r->key[c] = true;
                lua_pop(L, 1);
            }
            lua_pop(L, 1);
        }
    }
    r->T = lua_newthread(L); /* left on L's stack: the caller anchors it */
    lua_pushvalue(L, fn);
    lua_pushvalue(L, names);
    lua_pushstring(L, label);
    lua_xmove(L, r->T, 3);
    return r;
}

void copy_rows_free(copy_rows *r) {
    if (!r) return;
    free(r->out);
    free(r->field);
    free(r->key);
    free(r->in_at);
    free(r->in_len);
    free(r);
}

/* Decode one COPY text field (backslash escapes) into r->field; returns its length. */
static size_t decode(copy_rows *r, const char *s, size_t n) {
    grow(&r->field, &r->field_cap, n + 1);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c != '\\' || i + 1 == n) {
            r->field[k++] = c;
            continue;
        }
        char e = s[++i];
        switch (e) {
        case 'b': r->field[k++] = '\b'; break;
        case 'f': r->field[k++] = '\f'; break;
        case 'n': r->field[k++] = '\n'; break;
        case 'r': r->field[k++] = '\r'; break;
        case 't': r->field[k++] = '\t'; break;
        case 'v': r->field[k++] = '\v'; break;
        case 'x': {
            int v = 0, d = 0;
            while (d < 2 && i + 1 < n) {
                char h = s[i + 1];
                int x = h >= '0' && h <= '9'   ? h - '0'
                        : h >= 'a' && h <= 'f' ? h - 'a' + 10
                        : h >= 'A' && h <= 'F' ? h - 'A' + 10
                                               : -1;
                if (x < 0) break;
                v = v * 16 + x;
                i++;
                d++;
            }
            r->field[k++] = d ? (char) v : 'x';
            break;
        }
        default:
            if (e >= '0' && e <= '7') {
                int v = e - '0', d = 1;
                while (d < 3 && i + 1 < n && s[i + 1] >= '0' && s[i + 1] <= '7')
                    v = v * 8 + (s[++i] - '0'), d++;
                r->field[k++] = (char) v;
            } else {
                r->field[k++] = e; /* \\ and any other escaped character stand for themselves */
            }
        }
    }
    return k;
}

static void out_add(copy_rows *r, const char *s, size_t n) {
    grow(&r->out, &r->out_cap, r->out_len + n + 1);
    memcpy(r->out + r->out_len, s, n);
    r->out_len += n;
}

static void encode(copy_rows *r, const char *s, size_t n) {
    grow(&r->out, &r->out_cap, r->out_len + 2 * n + 1);
    char *o = r->out + r->out_len;
    for (size_t i = 0; i < n; i++) {
        char c = s[i], e = 0;
        switch (c) {
        case '\\': e = '\\'; break;
        case '\b': e = 'b'; break;
        case '\f': e = 'f'; break;
        case '\n': e = 'n'; break;
        case '\r': e = 'r'; break;
        case '\t': e = 't'; break;
        case '\v': e = 'v'; break;
        default: *o++ = c; continue;
        }
        *o++ = '\\';
        *o++ = e;
    }
    r->out_len = (size_t) (o - r->out);
}

static int fail(copy_rows *r, char *err, size_t errlen, const char *fmt, const char *a, const char *b) {
    snprintf(err, errlen, fmt, lua_tostring(r->T, 3), a, b);
    lua_settop(r->T, 3);
    return -1;
}

int copy_rows_call(void *arg, const char *row, int len, const char **out, int *outlen, char *err,
                   size_t errlen) {
    copy_rows *r = arg;
    lua_State *T = r->T;
    size_t n = (size_t) len;
    if (n && row[n - 1] == '\n') n--;
    lua_settop(T, 3);
    lua_createtable(T, 0, r->ncols); /* 4: the row */
    size_t start = 0;
    int col = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && row[i] != '\t') continue;
        if (col == r->ncols)
            return fail(r, err, errlen, "on.row for %s: a row has more fields than columns%s%s", "", "");
        r->in_at[col] = start;
        r->in_len[col] = i - start;
        lua_rawgeti(T, 2, col + 1);
        if (i - start == 2 && row[start] == '\\' && row[start + 1] == 'N')
            tide_push_null(T);
        else
            lua_pushlstring(T, r->field, decode(r, row + start, i - start));
        lua_rawset(T, 4);
        col++;
        start = i + 1;
    }
    if (col != r->ncols)
        return fail(r, err, errlen, "on.row for %s: a row has fewer fields than columns%s%s", "", "");
    lua_pushvalue(T, 1);
    lua_pushvalue(T, 4);
    if (lua_pcall(T, 1, 2, 0) != LUA_OK) {
        const char *msg = lua_tostring(T, -1);
        return fail(r, err, errlen, "on.row for %s failed: %s%s", msg ? msg : "(an error object)", "");
    }
    /* 4: the row passed in, 5: the first result, 6: the second */
    if (!lua_isnil(T, 6))
        return fail(r, err, errlen,
                    "on.row for %s returned a second value: routing rows to another table is not supported "
                    "by on.row yet (on.change can route streamed changes)%s%s",
                    "", "");
    int res = 4;
    if (lua_isboolean(T, 5) && !lua_toboolean(T, 5)) {
        lua_settop(T, 3);
        return 0;
    }
    if (lua_istable(T, 5))
        res = 5;
    else if (!lua_isnil(T, 5) && !lua_isboolean(T, 5))
        return fail(
            r, err, errlen,
            "on.row for %s returned a %s: return the row (a table), true or nothing to keep it, false to "
            "drop it%s",
            luaL_typename(T, 5), "");
    r->out_len = 0;
    for (int c = 0; c < r->ncols; c++) {
        if (c) out_add(r, "\t", 1);
        size_t at = r->out_len;
        lua_rawgeti(T, 2, c + 1);
        const char *name = lua_tostring(T, -1);
        int ty = lua_rawget(T, res);
        if (ty == LUA_TSTRING || ty == LUA_TNUMBER) {
            size_t vl;
            tide_number_text(T, -1);
            const char *v = lua_tolstring(T, -1, &vl);
            encode(r, v, vl);
        } else if (ty == LUA_TBOOLEAN) {
            out_add(r, lua_toboolean(T, -1) ? "t" : "f", 1);
        } else if (ty == LUA_TUSERDATA && luaL_testudata(T, -1, TIDE_NULL_CLASS)) {
            out_add(r, "\\N", 2);
        } else if (ty == LUA_TNIL) {
            return fail(r, err, errlen,
                        "on.row for %s: column %s has no value (nil); set tide.null for NULL%s", name, "");
        } else {
            return fail(
                r, err, errlen,
                "on.row for %s: column %s cannot take a %s (use a string, number, boolean or tide.null)",
                name, luaL_typename(T, -1));
        }
        if (r->key[c] &&
            (r->out_len - at != r->in_len[c] || memcmp(r->out + at, row + r->in_at[c], r->in_len[c]) != 0))
            return fail(
                r, err, errlen,
                "on.row for %s changed key column %s: keys stay as the source has them (streamed updates "
                "and deletes find their rows by them)%s",
                name, "");
        lua_pop(T, 1);
    }
    /* No key but the columns (each has a value, checked above): a misspelt name must not pass
     * unnoticed. Counted on every row; looked for only when there is one too many. */
    int keys = 0;
    lua_pushnil(T);
    while (lua_next(T, res)) {
        lua_pop(T, 1);
        keys++;
    }
    if (keys > r->ncols) {
        lua_pushnil(T);
        while (lua_next(T, res)) {
            lua_pop(T, 1);
            bool known = false;
            for (int c = 0; c < r->ncols && !known; c++) {
                lua_rawgeti(T, 2, c + 1);
                known = lua_rawequal(T, -1, -2);
                lua_pop(T, 1);
            }
            if (!known) {
                const char *k = lua_type(T, -1) == LUA_TSTRING ? lua_tostring(T, -1) : luaL_typename(T, -1);
                return fail(r, err, errlen, "on.row for %s set %s, which is not a column of the table%s", k,
                            "");
            }
        }
    }
    out_add(r, "\n", 1);
    lua_settop(T, 3);
    *out = r->out;
    *outlen = (int) r->out_len;
    return 1;
}
