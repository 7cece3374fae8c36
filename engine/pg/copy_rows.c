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
 * A second value routes the row to another table (on.route): it must be one of the names the
 * caller declared; the row is then encoded the same way and kept by copy_routes.c instead of
 * being sent.
 */
#include "pg/copy_rows.h"
#include "pg/copy_routes.h"

#include "runtime/bindings.h"

#include <lauxlib.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The thread's stack: the function, the column names (a sequence), the label, the routes (name →
 * 0 for the table itself or k for destination k; nil: none); then per row the row and the results. */
enum { FN = 1, NAMES, LABEL, ROUTES, BASE = ROUTES, ROW, RESULT, SECOND };

struct copy_rows {
    lua_State *T;
    int ncols;
    bool keep;           /* send the rows kept for the table itself (false: only collect routed rows) */
    copy_routes *routes; /* NULL: no routes declared */
    int64_t routed;
    bool *key;     /* per column: part of the key, which the function may not change */
    size_t *in_at; /* per column: where its field starts in the row, and its length */
    size_t *in_len;
    char *out;
    size_t out_len, out_cap;
    char *field;
    size_t field_cap;
};

void copy_buf_grow(char **buf, size_t *cap, size_t need) {
    if (need <= *cap) return;
    size_t cap2 = *cap ? *cap : 256;
    while (cap2 < need) cap2 *= 2;
    char *b = realloc(*buf, cap2);
    if (!b) abort();
    *buf = b;
    *cap = cap2;
}

copy_rows *copy_rows_new(lua_State *L, int fn, int names, int keys, int routes, const char *label) {
    copy_rows *r = calloc(1, sizeof *r);
    if (!r) abort();
    r->keep = true;
    fn = lua_absindex(L, fn);
    names = lua_absindex(L, names);
    if (routes) routes = lua_absindex(L, routes);
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
    int nroutes = 0;
    if (routes && lua_istable(L, routes)) {
        lua_pushnil(L);
        while (lua_next(L, routes)) {
            if (lua_isinteger(L, -1) && lua_tointeger(L, -1) > nroutes) nroutes = (int) lua_tointeger(L, -1);
            lua_pop(L, 1);
        }
        r->routes = copy_routes_new(nroutes, r->ncols);
    }
    r->T = lua_newthread(L); /* left on L's stack: the caller anchors it */
    lua_pushvalue(L, fn);
    lua_pushvalue(L, names);
    lua_pushstring(L, label);
    if (r->routes)
        lua_pushvalue(L, routes);
    else
        lua_pushnil(L);
    lua_xmove(L, r->T, 4);
    return r;
}

void copy_rows_set_keep(copy_rows *r, bool keep) { r->keep = keep; }
copy_routes *copy_rows_routes(copy_rows *r) { return r ? r->routes : NULL; }
int64_t copy_rows_routed(const copy_rows *r) { return r ? r->routed : 0; }

void copy_rows_free(copy_rows *r) {
    if (!r) return;
    copy_routes_free(r->routes);
    free(r->out);
    free(r->field);
    free(r->key);
    free(r->in_at);
    free(r->in_len);
    free(r);
}

size_t copy_text_decode(const char *s, size_t n, char **buf, size_t *cap) {
    copy_buf_grow(buf, cap, n + 1);
    char *field = *buf;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c != '\\' || i + 1 == n) {
            field[k++] = c;
            continue;
        }
        char e = s[++i];
        switch (e) {
        case 'b': field[k++] = '\b'; break;
        case 'f': field[k++] = '\f'; break;
        case 'n': field[k++] = '\n'; break;
        case 'r': field[k++] = '\r'; break;
        case 't': field[k++] = '\t'; break;
        case 'v': field[k++] = '\v'; break;
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
            field[k++] = d ? (char) v : 'x';
            break;
        }
        default:
            if (e >= '0' && e <= '7') {
                int v = e - '0', d = 1;
                while (d < 3 && i + 1 < n && s[i + 1] >= '0' && s[i + 1] <= '7')
                    v = v * 8 + (s[++i] - '0'), d++;
                field[k++] = (char) v;
            } else {
                field[k++] = e; /* \\ and any other escaped character stand for themselves */
            }
        }
    }
    return k;
}

static void out_add(copy_rows *r, const char *s, size_t n) {
    copy_buf_grow(&r->out, &r->out_cap, r->out_len + n + 1);
    memcpy(r->out + r->out_len, s, n);
    r->out_len += n;
}

static void encode(copy_rows *r, const char *s, size_t n) {
    copy_buf_grow(&r->out, &r->out_cap, r->out_len + 2 * n + 1);
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
    snprintf(err, errlen, fmt, lua_tostring(r->T, LABEL), a, b);
    lua_settop(r->T, BASE);
    return -1;
}

int copy_rows_call(void *arg, const char *row, int len, const char **out, int *outlen, char *err,
                   size_t errlen) {
    copy_rows *r = arg;
    lua_State *T = r->T;
    size_t n = (size_t) len;
    if (n && row[n - 1] == '\n') n--;
    lua_settop(T, BASE);
    lua_createtable(T, 0, r->ncols); /* ROW */
    size_t start = 0;
    int col = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && row[i] != '\t') continue;
        if (col == r->ncols)
            return fail(r, err, errlen, "on.row for %s: a row has more fields than columns%s%s", "", "");
        r->in_at[col] = start;
        r->in_len[col] = i - start;
        lua_rawgeti(T, NAMES, col + 1);
        if (i - start == 2 && row[start] == '\\' && row[start + 1] == 'N')
            tide_push_null(T);
        else
            lua_pushlstring(T, r->field, copy_text_decode(row + start, i - start, &r->field, &r->field_cap));
        lua_rawset(T, ROW);
        col++;
        start = i + 1;
    }
    if (col != r->ncols)
        return fail(r, err, errlen, "on.row for %s: a row has fewer fields than columns%s%s", "", "");
    lua_pushvalue(T, FN);
    lua_pushvalue(T, ROW);
    if (lua_pcall(T, 1, 2, 0) != LUA_OK) {
        const char *msg = lua_tostring(T, -1);
        return fail(r, err, errlen, "on.row for %s failed: %s%s", msg ? msg : "(an error object)", "");
    }
    /* ROW: the row passed in, RESULT: the first result, SECOND: the table to route it to */
    int route = 0;
    if (!lua_isnil(T, SECOND)) {
        route = -1;
        if (lua_type(T, SECOND) == LUA_TSTRING && lua_istable(T, ROUTES)) {
            lua_pushvalue(T, SECOND);
            if (lua_rawget(T, ROUTES) == LUA_TNUMBER) route = (int) lua_tointeger(T, -1);
            lua_pop(T, 1);
        }
        if (route < 0) {
            const char *label = lua_tostring(T, LABEL);
            if (lua_type(T, SECOND) != LUA_TSTRING)
                snprintf(
                    err, errlen,
                    "on.row for %s returned a %s as its second value: give the name of the table to route "
                    "the row to (\"schema.table\", listed in on.route[\"%s\"]), or nothing to keep it in %s",
                    label, luaL_typename(T, SECOND), label, label);
            else
                snprintf(
                    err, errlen,
                    "on.row for %s returned \"%s\" as the table to route a row to, which on.route[\"%s\"] "
                    "does not list: add it there (a selected table, the source's \"schema.table\"), or "
                    "return no second value to keep the row in %s",
                    label, lua_tostring(T, SECOND), label, label);
            lua_settop(T, BASE);
            return -1;
        }
    }
    int res = ROW;
    if (lua_isboolean(T, RESULT) && !lua_toboolean(T, RESULT)) {
        lua_settop(T, BASE);
        return 0;
    }
    if (lua_istable(T, RESULT))
        res = RESULT;
    else if (!lua_isnil(T, RESULT) && !lua_isboolean(T, RESULT))
        return fail(
            r, err, errlen,
            "on.row for %s returned a %s: return the row (a table), true or nothing to keep it, false to "
            "drop it%s",
            luaL_typename(T, RESULT), "");
    r->out_len = 0;
    for (int c = 0; c < r->ncols; c++) {
        if (c) out_add(r, "\t", 1);
        size_t at = r->out_len;
        lua_rawgeti(T, NAMES, c + 1);
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
                lua_rawgeti(T, NAMES, c + 1);
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
    lua_settop(T, BASE);
    if (route > 0) {
        if (copy_routes_add(r->routes, route - 1, r->out, r->out_len, err, errlen) < 0) return -1;
        r->routed++;
        return 0;
    }
    if (!r->keep) return 0;
    out_add(r, "\n", 1);
    *out = r->out;
    *outlen = (int) r->out_len;
    return 1;
}
