/*
 * lua_conn.c — Lua binding of connections: tide.connect and the methods of "tide.conn"
 * userdata (query, exec, close, quote_ident, ...). The userdata holds a pointer to the C
 * struct because the poll handle closes asynchronously (as in luv).
 *
 * Values: NULL is tide.null; int2/int4/int8/oid become Lua integers, float4/float8 floats,
 * bool booleans, bytea raw strings; everything else stays the server's text. Parameters go
 * as text except tide.bytea(s) values, which go in binary format.
 *
 * Errors: what conn.c records about a failed operation (a libpq failure, the server's error
 * result) becomes a tide.error table here, with the SQLSTATE, the server's fields, the masked
 * conninfo and the start of the query.
 */
#include "pg/conn.h"
#include "runtime/bindings.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONN_META "tide.conn"
#define BYTEA_META "tide.bytea"
#define NULL_META TIDE_NULL_CLASS

static tide_conn *check_conn(lua_State *L, int idx) {
    return tide_box_check(L, idx, CONN_META, "connection is closed");
}

static tide_conn *check_open(lua_State *L, int idx) {
    tide_conn *c = check_conn(L, idx);
    if (c->busy)
        luaL_error(L,
                   "connection is busy with another operation (a connection serves one coroutine at a time)");
    return c;
}

/* ---------------------------------------------------------------- errors */

void tide_push_result_error(lua_State *L, const PGresult *r, tide_conn *c, const char *query) {
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    /* Errors libpq makes itself carry no SQLSTATE; on a dead connection they mean just that. */
    if (!state) state = (c && c->pg && PQstatus(c->pg) == CONNECTION_BAD) || !c || !c->pg ? "08006" : "XX000";
    tide_push_error(L, state, msg ? msg : PQresultErrorMessage(r));
    tide_error_set(L, -1, "severity", PQresultErrorField(r, PG_DIAG_SEVERITY_NONLOCALIZED));
    tide_error_set(L, -1, "detail", PQresultErrorField(r, PG_DIAG_MESSAGE_DETAIL));
    tide_error_set(L, -1, "hint", PQresultErrorField(r, PG_DIAG_MESSAGE_HINT));
    tide_error_set(L, -1, "context", PQresultErrorField(r, PG_DIAG_CONTEXT));
    tide_error_set(L, -1, "schema", PQresultErrorField(r, PG_DIAG_SCHEMA_NAME));
    tide_error_set(L, -1, "table", PQresultErrorField(r, PG_DIAG_TABLE_NAME));
    tide_error_set(L, -1, "column", PQresultErrorField(r, PG_DIAG_COLUMN_NAME));
    tide_error_set(L, -1, "constraint", PQresultErrorField(r, PG_DIAG_CONSTRAINT_NAME));
    tide_error_set(L, -1, "position", PQresultErrorField(r, PG_DIAG_STATEMENT_POSITION));
    if (query) {
        lua_pushlstring(L, query, strnlen(query, 200));
        lua_setfield(L, -2, "query");
    }
    if (c) tide_error_set(L, -1, "conninfo", c->display);
}

/* Push nil, err for the outcome of the last operation (a libpq-level failure or the server's
 * error result) if there was one, and return 2; else return 0. */
static int push_outcome_error(lua_State *L, tide_conn *c, const char *query) {
    if (c->failure) {
        tide_push_error(L, c->failure_state ? c->failure_state : "08006", c->failure);
        tide_error_set(L, -1, "severity", "FATAL");
        tide_error_set(L, -1, "conninfo", c->display);
        if (query) {
            lua_pushlstring(L, query, strnlen(query, 200));
            lua_setfield(L, -2, "query");
        }
        return tide_fail(L);
    }
    if (c->error) {
        tide_push_result_error(L, c->error, c, query);
        return tide_fail(L);
    }
    return 0;
}

/* ---------------------------------------------------------------- values */

void tide_push_null(lua_State *L) { lua_getfield(L, LUA_REGISTRYINDEX, NULL_META "_value"); }

static int hexval(int ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

static void push_bytea(lua_State *L, const char *v, int len) {
    if (len >= 2 && v[0] == '\\' && v[1] == 'x') {
        luaL_Buffer b;
        char *out = luaL_buffinitsize(L, &b, (size_t) (len - 2) / 2);
        size_t n = 0;
        for (int i = 2; i + 1 < len; i += 2) {
            int hi = hexval((unsigned char) v[i]), lo = hexval((unsigned char) v[i + 1]);
            if (hi < 0 || lo < 0) break;
            out[n++] = (char) (hi * 16 + lo);
        }
        luaL_pushresultsize(&b, n);
    } else {
        lua_pushlstring(L, v, (size_t) len); /* escape format: leave as the server sent it */
    }
}

static void push_value(lua_State *L, const PGresult *r, int row, int col, Oid type) {
    const char *v = PQgetvalue(r, row, col);
    int len = PQgetlength(r, row, col);
    /* clang-format off */
    switch (type) {
    case 16: lua_pushboolean(L, v[0] == 't'); return;                 /* bool */
    case 17: push_bytea(L, v, len); return;                           /* bytea */
    case 20: case 21: case 23: case 26: case 28:                      /* int8 int2 int4 oid xid */
        lua_pushinteger(L, (lua_Integer) strtoll(v, NULL, 10));
        return;
    case 700: case 701: lua_pushnumber(L, strtod(v, NULL)); return;  /* float4 float8 */
    default: lua_pushlstring(L, v, (size_t) len);
    }
    /* clang-format on */
}

/* rows = { {col = value, ...}, ..., columns = {names...} }. Sparse rows leave NULL columns
 * out (nil instead of tide.null) and get a table sized for what they hold: a catalog read of
 * 100,000 tables keeps a few hundred thousand rows whose columns are mostly NULL. */
static void push_rows_table(lua_State *L, const PGresult *r) {
    int nrows = PQntuples(r), ncols = PQnfields(r);
    lua_createtable(L, nrows, 1);
    lua_createtable(L, ncols, 0);
    for (int j = 0; j < ncols; j++) {
        lua_pushstring(L, PQfname(r, j));
        lua_rawseti(L, -2, j + 1);
    }
    lua_setfield(L, -2, "columns");
}

/* Fill rows[from + 1 .. to] of the rows table at index `rows` from r. */
static void fill_rows(lua_State *L, const PGresult *r, bool sparse, int rows, int from, int to) {
    int ncols = PQnfields(r);
    luaL_checkstack(L, ncols + 8, "too many columns");
    int top = lua_gettop(L);
    int names = top + 1;
    for (int j = 0; j < ncols; j++) lua_pushstring(L, PQfname(r, j));
    tide_push_null(L);
    int null = lua_gettop(L);
    for (int i = from; i < to; i++) {
        int filled = ncols;
        if (sparse)
            for (int j = 0; j < ncols; j++) filled -= PQgetisnull(r, i, j);
        lua_createtable(L, 0, filled);
        for (int j = 0; j < ncols; j++) {
            if (sparse && PQgetisnull(r, i, j)) continue;
            lua_pushvalue(L, names + j);
            if (PQgetisnull(r, i, j))
                lua_pushvalue(L, null);
            else
                push_value(L, r, i, j, PQftype(r, j));
            lua_rawset(L, -3);
        }
        lua_rawseti(L, rows, i + 1);
    }
    lua_settop(L, top);
}

/* A large result (a catalog read of 100,000 tables returns a few hundred thousand rows) takes
 * about a second to become Lua rows, and while C converts, the task's event loop stands still:
 * `pgtide status` waits. Such a result is converted ROWS_CHUNK rows at a time, and the
 * coroutine lets the loop turn (as tide.wait.breathe does in Lua) when ROWS_STRETCH seconds
 * went by. The result leaves the connection for a box on the coroutine's stack meanwhile, so
 * that an error or a closed connection frees it once. */
#define ROWS_CHUNK 2048
#define ROWS_STRETCH 0.05
#define RESULT_META "tide.pgresult"

static void free_result(lua_State *L, int idx) {
    void **slot = tide_box_slot(L, idx, RESULT_META);
    if (*slot) PQclear(*slot);
    *slot = NULL;
}

static int result_gc(lua_State *L) {
    free_result(L, 1);
    return 0;
}

static unsigned long rows_yields; /* how many times a conversion let the loop turn (tests) */

/* Stack: 1 conn, 2 sql, 3 the result's box, 4 the rows table. ctx: next row << 1 | sparse. */
static int rows_k(lua_State *L, int status, lua_KContext ctx) {
    (void) status;
    lua_settop(L, 4);
    PGresult *r = *tide_box_slot(L, 3, RESULT_META);
    bool sparse = ctx & 1;
    int next = (int) (ctx >> 1), nrows = PQntuples(r);
    double started = tide_monotonic();
    while (next < nrows) {
        int to = nrows - next > ROWS_CHUNK ? next + ROWS_CHUNK : nrows;
        fill_rows(L, r, sparse, 4, next, to);
        next = to;
        if (next < nrows && tide_monotonic() - started >= ROWS_STRETCH && lua_isyieldable(L)) {
            rows_yields++;
            sched_ready(sched_current(L));
            return lua_yieldk(L, 0, ((lua_KContext) next << 1) | sparse, rows_k);
        }
    }
    free_result(L, 3); /* the result is no longer needed */
    return 1;
}

static int l_rows_yields(lua_State *L) {
    lua_pushinteger(L, (lua_Integer) rows_yields);
    return 1;
}

/* A growable C string for array literals. (A luaL_Buffer cannot be used here: rendering the
 * elements pushes and pops values, and a buffer needs a balanced stack between its calls.) */
typedef struct strbuf {
    char *data;
    size_t len, cap;
} strbuf;

static void sb_add(lua_State *L, strbuf *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (b->len + n + 1 > cap) cap *= 2;
        char *grown = realloc(b->data, cap);
        if (!grown) {
            free(b->data);
            b->data = NULL;
            luaL_error(L, "out of memory");
        }
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

/* Render the Lua array at idx as a PostgreSQL array literal ({a,"b c",NULL,{1,2}}). */
static void add_array_literal(lua_State *L, strbuf *b, int idx, int depth) {
    if (depth > 6) luaL_error(L, "array parameter nested too deeply");
    idx = lua_absindex(L, idx);
    lua_Integer n = luaL_len(L, idx);
    sb_add(L, b, "{", 1);
    for (lua_Integer i = 1; i <= n; i++) {
        if (i > 1) sb_add(L, b, ",", 1);
        lua_geti(L, idx, i);
        int t = lua_type(L, -1);
        if (t == LUA_TTABLE) {
            add_array_literal(L, b, -1, depth + 1);
        } else if (t == LUA_TBOOLEAN) {
            sb_add(L, b, lua_toboolean(L, -1) ? "t" : "f", 1);
        } else if (t == LUA_TNUMBER || t == LUA_TSTRING) {
            size_t len;
            const char *v = lua_tolstring(L, -1, &len);
            sb_add(L, b, "\"", 1);
            for (size_t k = 0; k < len; k++) {
                if (v[k] == '"' || v[k] == '\\') sb_add(L, b, "\\", 1);
                sb_add(L, b, v + k, 1);
            }
            sb_add(L, b, "\"", 1);
        } else if (luaL_testudata(L, -1, NULL_META)) {
            sb_add(L, b, "NULL", 4);
        } else {
            free(b->data);
            b->data = NULL;
            luaL_error(L, "cannot send a %s inside an array parameter", luaL_typename(L, -1));
        }
        lua_pop(L, 1);
    }
    sb_add(L, b, "}", 1);
}

/* Convert argument `arg` to a parameter; pushes the value's string onto L (keeping it alive). */
static void param_convert(lua_State *L, int arg, int pos, const char **value, int *length, int *format) {
    *format = 0;
    *length = 0;
    switch (lua_type(L, arg)) {
    case LUA_TNIL:
    case LUA_TNONE:
        *value = NULL;
        lua_pushnil(L);
        return;
    case LUA_TBOOLEAN: lua_pushstring(L, lua_toboolean(L, arg) ? "t" : "f"); break;
    case LUA_TNUMBER:
        if (lua_isinteger(L, arg)) {
            lua_pushfstring(L, "%I", (LUAI_UACINT) lua_tointeger(L, arg));
        } else {
            double d = lua_tonumber(L, arg);
            char buf[64];
            if (isnan(d))
                strcpy(buf, "NaN");
            else if (isinf(d))
                strcpy(buf, d > 0 ? "Infinity" : "-Infinity");
            else
                snprintf(buf, sizeof buf, "%.17g", d);
            lua_pushstring(L, buf);
        }
        break;
    case LUA_TSTRING: lua_pushvalue(L, arg); break;
    case LUA_TUSERDATA:
        if (luaL_testudata(L, arg, NULL_META)) {
            *value = NULL;
            lua_pushnil(L);
            return;
        }
        luaL_error(L, "parameter $%d: cannot send a userdata", pos);
        return;
    case LUA_TTABLE:
        if (lua_getmetatable(L, arg)) {
            luaL_getmetatable(L, BYTEA_META);
            bool is_bytea = lua_rawequal(L, -1, -2);
            lua_pop(L, 2);
            if (is_bytea) {
                lua_rawgeti(L, arg, 1);
                size_t len;
                *value = lua_tolstring(L, -1, &len);
                *length = (int) len;
                *format = 1;
                return;
            }
        }
        {
            strbuf b = { NULL, 0, 0 };
            add_array_literal(L, &b, arg, 0);
            lua_pushlstring(L, b.data ? b.data : "{}", b.len ? b.len : 2);
            free(b.data);
        }
        break;
    default:
        luaL_error(L, "parameter $%d: cannot send a %s (convert it to a string)", pos, luaL_typename(L, arg));
    }
    *value = lua_tostring(L, -1);
}

/* ---------------------------------------------------------------- query / exec */

static int query_k(lua_State *L, int status, lua_KContext ctx) {
    (void) status;
    tide_conn *c = check_conn(L, 1);
    bool want_rows = ctx & 1, sparse = ctx & 2;
    const char *sql = lua_tostring(L, 2);
    int n = push_outcome_error(L, c, sql);
    if (n) return n;
    if (want_rows) {
        if (!c->result || PQresultStatus(c->result) != PGRES_TUPLES_OK) {
            lua_createtable(L, 0, 1);
            return 1;
        }
        if (PQntuples(c->result) <= ROWS_CHUNK) {
            push_rows_table(L, c->result);
            fill_rows(L, c->result, sparse, lua_gettop(L), 0, PQntuples(c->result));
            return 1;
        }
        lua_settop(L, 2);
        void **slot = tide_box_new(L, RESULT_META, 0);
        *slot = c->result;
        c->result = NULL;
        push_rows_table(L, *slot);
        return rows_k(L, LUA_OK, sparse ? 1 : 0);
    }
    const char *tuples = c->result ? PQcmdTuples(c->result) : "";
    lua_pushinteger(L, *tuples ? strtoll(tuples, NULL, 10) : 0);
    lua_pushstring(L, c->result ? PQcmdStatus(c->result) : "");
    conn_reset_outcome(c);
    return 2;
}

/* mode: 0 exec, 1 query, 3 query with sparse rows (the continuation's context bits) */
static int run_query(lua_State *L, int mode) {
    bool want_rows = mode & 1;
    tide_conn *c = check_open(L, 1);
    const char *sql = luaL_checkstring(L, 2);
    tide_co *co = sched_current(L);
    int nparams = lua_gettop(L) - 2;
    int rc;
    if (nparams == 0 && !want_rows) {
        rc = conn_send_query(c, sql, -1, NULL, NULL, NULL);
    } else {
        if (c->replication && nparams > 0)
            return luaL_error(L, "a replication connection runs the simple protocol only: "
                                 "no parameters (use conn:exec without $n)");
        luaL_checkstack(L, nparams + 4, "too many parameters");
        const char **values = lua_newuserdatauv(L, sizeof(char *) * (size_t) (nparams + 1), 0);
        int *lengths = lua_newuserdatauv(L, sizeof(int) * (size_t) (nparams + 1), 0);
        int *formats = lua_newuserdatauv(L, sizeof(int) * (size_t) (nparams + 1), 0);
        for (int i = 0; i < nparams; i++)
            param_convert(L, 3 + i, i + 1, &values[i], &lengths[i], &formats[i]);
        if (c->replication)
            rc = conn_send_query(c, sql, -1, NULL, NULL, NULL);
        else
            rc = conn_send_query(c, sql, nparams, values, lengths, formats);
        lua_settop(L, 2);
    }
    if (rc < 0) return push_outcome_error(L, c, sql);
    c->waiter = co;
    sched_block(co, "query");
    return lua_yieldk(L, 0, mode, query_k);
}

static int l_query(lua_State *L) { return run_query(L, 1); }
static int l_query_sparse(lua_State *L) { return run_query(L, 3); }
static int l_exec(lua_State *L) { return run_query(L, 0); }

/* ---------------------------------------------------------------- connect */

static int connect_k(lua_State *L, int status, lua_KContext ctx) {
    (void) status;
    (void) ctx;
    tide_conn *c = *tide_box_slot(L, -1, CONN_META);
    if (c->failure || c->error) {
        int n = push_outcome_error(L, c, NULL);
        /* Add a hint for the usual causes. */
        lua_getfield(L, -1, "message");
        const char *m = lua_tostring(L, -1);
        const char *hint = NULL;
        if (m && strstr(m, "password authentication failed"))
            hint = "check the password given in the conninfo, PGPASSWORD or ~/.pgpass";
        else if (m && strstr(m, "does not exist") && strstr(m, "database"))
            hint = "check the database name (dbname= or the path of the URI); pgtide does not create "
                   "databases: create it first (CREATE DATABASE) if it is new";
        else if (m && (strstr(m, "Connection refused") || strstr(m, "could not translate host")))
            hint = "check host and port, and that the server is running and accepts TCP/IP connections";
        lua_pop(L, 1);
        if (hint) tide_error_set(L, -1, "hint", hint);
        conn_close(c);
        return n;
    }
    conn_reset_outcome(c);
    return 1;
}

/* Append "SELECT pg_catalog.set_config('name', 'value', false);" to *sql (malloc'd). */
static void append_setting(char **sql, const char *name, const char *value) {
    size_t old = *sql ? strlen(*sql) : 0;
    size_t need = old + 2 * (strlen(name) + strlen(value)) + 64;
    char *out = realloc(*sql, need);
    if (!out) abort();
    char *p = out + old;
    p += sprintf(p, " SELECT pg_catalog.set_config('");
    for (const char *q = name; *q; q++) {
        if (*q == '\'') *p++ = '\'';
        *p++ = *q;
    }
    p += sprintf(p, "', '");
    for (const char *q = value; *q; q++) {
        if (*q == '\'') *p++ = '\'';
        *p++ = *q;
    }
    sprintf(p, "', false);");
    *sql = out;
}

/* tide.connect(conninfo [, opts]) */
static int l_connect(lua_State *L) {
    const char *conninfo = luaL_checkstring(L, 1);
    bool has_opts = !lua_isnoneornil(L, 2);
    if (has_opts) luaL_checktype(L, 2, LUA_TTABLE);
    tide_co *co = sched_current(L);
    tide_runtime *rt = tide_rt(L);

    const char *keys[8], *values[8];
    int n = 0;
    keys[n] = "dbname";
    values[n++] = conninfo;
    keys[n] = "fallback_application_name";
    values[n++] = "pgtide";
    double timeout = 30;
    const char *replication = NULL;
    lua_settop(L, 2);
    if (has_opts) {
        if (lua_getfield(L, 2, "timeout") != LUA_TNIL) timeout = luaL_checknumber(L, -1);
        lua_pop(L, 1);
        if (lua_getfield(L, 2, "replication") == LUA_TSTRING) replication = lua_tostring(L, -1);
        lua_pop(L, 1); /* the string stays alive in the opts table */
        if (lua_getfield(L, 2, "application_name") == LUA_TSTRING) {
            keys[n] = "application_name";
            values[n++] = lua_tostring(L, -1);
        }
        lua_pop(L, 1);
        if (lua_getfield(L, 2, "client_encoding") == LUA_TSTRING) {
            keys[n] = "client_encoding";
            values[n++] = lua_tostring(L, -1);
        }
        lua_pop(L, 1);
    }
    if (replication) {
        keys[n] = "replication";
        values[n++] = replication;
    }
    keys[n] = NULL;
    values[n] = NULL;

    void **b = tide_box_new(L, CONN_META, 1);
    int box = lua_gettop(L);
    tide_conn *c = calloc(1, sizeof *c);
    if (!c) return luaL_error(L, "out of memory");
    c->rt = rt;
    c->userdata_alive = true;
    c->timeout = timeout;
    c->replication = replication != NULL;
    c->display = conn_mask_conninfo(conninfo);
    *b = c;
    /* Extra session settings, applied with the fixed ones right after connecting. */
    if (has_opts && lua_getfield(L, 2, "settings") == LUA_TTABLE) {
        int t = lua_gettop(L);
        char *sql = NULL;
        lua_pushnil(L);
        while (lua_next(L, t)) {
            if (lua_type(L, -2) != LUA_TSTRING) {
                free(sql);
                return luaL_error(L, "connect: settings keys must be setting names");
            }
            const char *v = luaL_tolstring(L, -1, NULL);
            append_setting(&sql, lua_tostring(L, -3), v);
            lua_pop(L, 2);
        }
        c->settings_sql = sql;
    }
    lua_settop(L, box);

    if (conn_start(c, keys, values) < 0) {
        lua_pushvalue(L, box);
        return connect_k(L, LUA_OK, 0);
    }
    c->waiter = co;
    sched_block(co, "connect");
    return lua_yieldk(L, 0, 0, connect_k);
}

/* ---------------------------------------------------------------- other methods */

static int l_close(lua_State *L) {
    void **b = tide_box_slot(L, 1, CONN_META);
    tide_conn *c = *b;
    if (c && c->busy && !c->waiter && c->op)
        return luaL_error(L, "connection is busy with a COPY; wait for the pump first");
    if (c) {
        conn_release(c);
        *b = NULL;
    }
    return 0;
}

static int l_server_version(lua_State *L) {
    lua_pushinteger(L, PQserverVersion(check_conn(L, 1)->pg));
    return 1;
}

static int l_backend_pid(lua_State *L) {
    lua_pushinteger(L, PQbackendPID(check_conn(L, 1)->pg));
    return 1;
}

static int l_quote_ident(lua_State *L) {
    tide_conn *c = check_conn(L, 1);
    size_t len;
    const char *s = luaL_checklstring(L, 2, &len);
    char *q = PQescapeIdentifier(c->pg, s, len);
    if (!q) return luaL_error(L, "quote_ident: %s", PQerrorMessage(c->pg));
    lua_pushstring(L, q);
    PQfreemem(q);
    return 1;
}

static int l_quote_literal(lua_State *L) {
    tide_conn *c = check_conn(L, 1);
    size_t len;
    const char *s = luaL_checklstring(L, 2, &len);
    char *q = PQescapeLiteral(c->pg, s, len);
    if (!q) return luaL_error(L, "quote_literal: %s", PQerrorMessage(c->pg));
    lua_pushstring(L, q);
    PQfreemem(q);
    return 1;
}

static int l_conninfo(lua_State *L) {
    lua_pushstring(L, check_conn(L, 1)->display);
    return 1;
}

static int l_status(lua_State *L) {
    tide_conn *c = *tide_box_slot(L, 1, CONN_META);
    if (!c || !c->pg)
        lua_pushstring(L, "closed");
    else if (PQstatus(c->pg) == CONNECTION_OK)
        lua_pushstring(L, c->busy ? "busy" : "ok");
    else
        lua_pushstring(L, "bad");
    return 1;
}

/* conn:cancel(): ask the server to cancel the running statement. PQcancel blocks on a
 * short network exchange, so it runs on libuv's thread pool. */
typedef struct cancel_req {
    uv_work_t work;
    PGcancel *cancel;
    tide_co *co;
    char err[256];
    int ok;
} cancel_req;

static void cancel_work(uv_work_t *w) {
    cancel_req *r = w->data;
    r->ok = PQcancel(r->cancel, r->err, sizeof r->err);
}

static void cancel_after(uv_work_t *w, int status) {
    (void) status;
    cancel_req *r = w->data;
    sched_wake(r->co);
}

static int cancel_k(lua_State *L, int status, lua_KContext ctx) {
    (void) status;
    cancel_req *r = (cancel_req *) ctx;
    int ok = r->ok;
    PQfreeCancel(r->cancel);
    if (!ok) {
        tide_push_error(L, "08006", r->err);
        free(r);
        return tide_fail(L);
    }
    free(r);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_cancel(lua_State *L) {
    tide_conn *c = check_conn(L, 1);
    tide_co *co = sched_current(L);
    cancel_req *r = calloc(1, sizeof *r);
    if (!r) return luaL_error(L, "out of memory");
    r->cancel = PQgetCancel(c->pg);
    r->co = co;
    r->work.data = r;
    if (!r->cancel) {
        free(r);
        lua_pushboolean(L, 0);
        return 1;
    }
    uv_queue_work(tide_rt(L)->loop, &r->work, cancel_work, cancel_after);
    sched_block(co, "cancel");
    return lua_yieldk(L, 0, (lua_KContext) r, cancel_k);
}

static int l_tostring(lua_State *L) {
    tide_conn *c = *tide_box_slot(L, 1, CONN_META);
    if (c)
        lua_pushfstring(L, "connection (%s)", c->display);
    else
        lua_pushliteral(L, "connection (closed)");
    return 1;
}

/* ---------------------------------------------------------------- tide.bytea, tide.null */

static int l_bytea(lua_State *L) {
    luaL_checkstring(L, 1);
    lua_createtable(L, 1, 0);
    lua_pushvalue(L, 1);
    lua_rawseti(L, -2, 1);
    luaL_setmetatable(L, BYTEA_META);
    return 1;
}

static int null_tostring(lua_State *L) {
    lua_pushliteral(L, "NULL");
    return 1;
}

static int l_mask_conninfo(lua_State *L) {
    char *m = conn_mask_conninfo(luaL_checkstring(L, 1));
    lua_pushstring(L, m);
    free(m);
    return 1;
}

tide_conn *tide_check_conn(lua_State *L, int idx) { return check_open(L, idx); }

int luaopen_tide_conn(lua_State *L) {
    static const luaL_Reg methods[] = {
        { "query", l_query },
        { "query_sparse", l_query_sparse },
        { "exec", l_exec },
        { "close", l_close },
        { "server_version", l_server_version },
        { "backend_pid", l_backend_pid },
        { "quote_ident", l_quote_ident },
        { "quote_literal", l_quote_literal },
        { "conninfo", l_conninfo },
        { "status", l_status },
        { "cancel", l_cancel },
        { NULL, NULL },
    };
    static const luaL_Reg meta[] = {
        { "__gc", l_close },
        { "__close", l_close },
        { "__tostring", l_tostring },
        { NULL, NULL },
    };
    static const luaL_Reg null_meta[] = { { "__tostring", null_tostring }, { NULL, NULL } };
    static const luaL_Reg funcs[] = {
        { "connect", l_connect },         { "bytea", l_bytea }, { "mask_conninfo", l_mask_conninfo },
        { "rows_yields", l_rows_yields }, { NULL, NULL },
    };
    tide_class_define(L, CONN_META, methods, meta);
    tide_class_define(L, BYTEA_META, NULL, NULL);
    static const luaL_Reg result_meta[] = { { "__gc", result_gc }, { NULL, NULL } };
    tide_class_define(L, RESULT_META, NULL, result_meta);
    tide_class_define(L, NULL_META, NULL, null_meta);
    luaL_newlib(L, funcs);
    tide_udata_new(L, NULL_META, 0, 0); /* the one tide.null */
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, NULL_META "_value");
    lua_setfield(L, -2, "null");
    return 1;
}
