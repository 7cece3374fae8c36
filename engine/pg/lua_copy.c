/*
 * lua_copy.c — Lua side of the COPY pump.
 *
 *   local pump = tide.copy_pump(src, dst, "COPY (...) TO STDOUT", "COPY t (...) FROM STDIN"
 *                               [, { fn = f, columns = {...}, keys = {...}, label = "schema.table",
 *                                    routes = { [name] = 0 | k }, keep = bool }])
 *     (with the table, both COPYs in text format: each row goes through f, copy_rows.c; a row f
 *     routes to destination k is kept aside, copy_routes.c; keep = false sends no row at all)
 *   pump:stats()          → bytes, messages so far (any coroutine, any time)
 *   pump:pause() / pump:resume() / pump:throttle{ bytes_per_second = N, rows_per_second = N }
 *   pump:wait()           → { rows = n, bytes = n, dropped = n, routed = n } or nil, err
 *                           (err.side = "source" | "target" | "transform"; rows: sent to the target)
 *   pump:routed()         → { rows routed to destination 1, ... } (after wait)
 *   pump:route_batch(k, max_rows) → n, { array literal of column 1, ... } (n = 0: all read)
 *   pump:close_routes()   → the routed rows are let go
 *
 * The pump holds both connections (as user values) until it is collected, so neither can be
 * collected while rows are moving.
 */
#include "pg/copy_pump.h"
#include "pg/copy_rows.h"
#include "runtime/bindings.h"

#include <stdlib.h>
#include <string.h>

#define PUMP_META "tide.copy_pump"

static copy_pump *check_pump(lua_State *L) { return tide_box_check(L, 1, PUMP_META, "copy pump is gone"); }

static bool is_error(const PGresult *r) {
    return r && (PQresultStatus(r) == PGRES_FATAL_ERROR || PQresultStatus(r) == PGRES_BAD_RESPONSE);
}

static bool is_echo(const PGresult *r) {
    /* An error that only repeats our own abort (the target's "COPY from stdin failed: ...",
     * the source's "canceling statement due to user request"). */
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    return (state && strcmp(state, "57014") == 0) || (msg && strstr(msg, "COPY from stdin failed") != NULL);
}

/* Push the error that explains the failure, marked with the side it came from. */
static int push_pump_error(lua_State *L, copy_pump *p) {
    const PGresult *r = NULL;
    const char *side = NULL;
    tide_conn *c = NULL;
    if (is_error(p->dst_result) && !is_echo(p->dst_result)) {
        r = p->dst_result;
        side = "target";
        c = p->dst;
    } else if (is_error(p->src_result) && !is_echo(p->src_result)) {
        r = p->src_result;
        side = "source";
        c = p->src;
    }
    if (r) {
        tide_push_result_error(L, r, c, NULL);
    } else if (p->fail_message) {
        tide_push_error(L, p->fail_state ? p->fail_state : "08006", p->fail_message);
        side = p->fail_side;
    } else if (is_error(p->dst_result)) {
        tide_push_result_error(L, p->dst_result, p->dst, NULL);
        side = "target";
    } else {
        tide_push_result_error(L, p->src_result, p->src, NULL);
        side = "source";
    }
    tide_error_set(L, -1, "side", side);
    return tide_fail(L);
}

static int wait_k(lua_State *L, int status, lua_KContext ctx) {
    (void) status;
    (void) ctx;
    copy_pump *p = check_pump(L);
    if (p->fail_message || is_error(p->src_result) || is_error(p->dst_result)) return push_pump_error(L, p);
    lua_createtable(L, 0, 4);
    int64_t routed = copy_rows_routed(p->row_arg);
    lua_pushinteger(L, p->rows - p->dropped);
    lua_setfield(L, -2, "rows");
    lua_pushinteger(L, p->dropped - routed);
    lua_setfield(L, -2, "dropped");
    lua_pushinteger(L, routed);
    lua_setfield(L, -2, "routed");
    lua_pushinteger(L, p->bytes);
    lua_setfield(L, -2, "bytes");
    lua_pushinteger(L, p->messages);
    lua_setfield(L, -2, "messages");
    return 1;
}

static int l_wait(lua_State *L) {
    copy_pump *p = check_pump(L);
    if (p->finished) return wait_k(L, 0, 0);
    if (p->waiter) return luaL_error(L, "another coroutine already waits for this pump");
    tide_co *co = sched_current(L);
    p->waiter = co;
    sched_block(co, "copy");
    return lua_yieldk(L, 0, 0, wait_k);
}

static int l_stats(lua_State *L) {
    copy_pump *p = check_pump(L);
    lua_pushinteger(L, p->bytes);
    lua_pushinteger(L, p->messages);
    lua_pushboolean(L, p->finished);
    return 3;
}

static int l_pause(lua_State *L) {
    copy_pump_set_paused(check_pump(L), true);
    return 0;
}
static int l_resume(lua_State *L) {
    copy_pump_set_paused(check_pump(L), false);
    return 0;
}

static int l_throttle(lua_State *L) {
    copy_pump *p = check_pump(L);
    double bps = 0, rps = 0;
    if (lua_istable(L, 2)) {
        lua_getfield(L, 2, "bytes_per_second");
        bps = luaL_optnumber(L, -1, 0);
        lua_getfield(L, 2, "rows_per_second");
        rps = luaL_optnumber(L, -1, 0);
    }
    copy_pump_set_throttle(p, bps, rps);
    return 0;
}

static copy_routes *finished_routes(lua_State *L) {
    copy_pump *p = check_pump(L);
    if (!p->finished) luaL_error(L, "the pump's routed rows are read once it finished (pump:wait())");
    return copy_rows_routes(p->row_arg);
}

static int l_routed(lua_State *L) {
    copy_routes *r = finished_routes(L);
    int n = copy_routes_count(r);
    lua_createtable(L, n, 0);
    for (int k = 0; k < n; k++) {
        lua_pushinteger(L, copy_routes_rows(r, k));
        lua_rawseti(L, -2, k + 1);
    }
    return 1;
}

static int l_route_batch(lua_State *L) {
    copy_routes *r = finished_routes(L);
    lua_Integer k = luaL_checkinteger(L, 2);
    lua_Integer max_rows = luaL_optinteger(L, 3, 10000);
    luaL_argcheck(L, k >= 1 && k <= copy_routes_count(r), 2, "no such destination");
    luaL_argcheck(L, max_rows >= 1 && max_rows <= 1000000, 3, "between 1 and 1000000 rows");
    const char **cols;
    char err[256];
    int n = copy_routes_batch(r, (int) k - 1, (int) max_rows, 16u << 20, &cols, err, sizeof err);
    if (n < 0) {
        tide_push_error(L, "58030", err);
        return tide_fail(L);
    }
    lua_pushinteger(L, n);
    int ncols = n > 0 ? copy_routes_columns(r) : 0;
    lua_createtable(L, ncols, 0);
    for (int c = 0; c < ncols; c++) {
        lua_pushstring(L, cols[c]);
        lua_rawseti(L, -2, c + 1);
    }
    return 2;
}

static int l_close_routes(lua_State *L) {
    copy_routes_close(finished_routes(L));
    return 0;
}

static int l_gc(lua_State *L) {
    void **b = tide_box_slot(L, 1, PUMP_META);
    copy_pump *p = *b;
    /* The connections may be gone already (closed by their owners); the pump let go of
     * them when it finished, so only its own memory is freed here. */
    if (p && p->finished) {
        copy_rows_free(p->row_arg);
        copy_pump_free(p);
    }
    /* An unfinished pump cannot be collected: its waiter's stack holds it. */
    *b = NULL;
    return 0;
}

/* tide.copy_pump(src, dst, out_sql, in_sql) */
static int l_copy_pump(lua_State *L) {
    tide_conn *src = tide_check_conn(L, 1);
    tide_conn *dst = tide_check_conn(L, 2);
    const char *out_sql = luaL_checkstring(L, 3);
    const char *in_sql = luaL_checkstring(L, 4);
    if (src == dst) return luaL_error(L, "copy_pump needs two different connections");
    if (src->replication || dst->replication)
        return luaL_error(L, "copy_pump: use ordinary connections (not replication ones)");
    bool rows = !lua_isnoneornil(L, 5);
    if (rows) {
        luaL_checktype(L, 5, LUA_TTABLE);
        if (lua_getfield(L, 5, "fn") != LUA_TFUNCTION)
            return luaL_error(L, "copy_pump: rows.fn must be a function");
        if (lua_getfield(L, 5, "columns") != LUA_TTABLE)
            return luaL_error(L, "copy_pump: rows.columns must be a list of names");
        lua_getfield(L, 5, "label");
        lua_getfield(L, 5, "keys");
        lua_getfield(L, 5, "routes");
        lua_getfield(L, 5, "keep");
        lua_settop(L, 11); /* 6 fn, 7 columns, 8 label, 9 keys, 10 routes, 11 keep */
    }
    void **b = tide_box_new(L, PUMP_META, 3);
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 1);
    lua_pushvalue(L, 2);
    lua_setiuservalue(L, -2, 2);
    copy_pump *p = calloc(1, sizeof *p);
    if (!p) return luaL_error(L, "out of memory");
    *b = p;
    if (rows) {
        const char *label = lua_isstring(L, 8) ? lua_tostring(L, 8) : "the table";
        p->row_arg = copy_rows_new(L, 6, 7, lua_istable(L, 9) ? 9 : 0, lua_istable(L, 10) ? 10 : 0,
                                   label); /* pushes its thread */
        copy_rows_set_keep(p->row_arg, lua_isnil(L, 11) || lua_toboolean(L, 11));
        lua_setiuservalue(L, -2, 3);
        p->row_fn = copy_rows_call;
    }
    if (copy_pump_start(p, src, dst, out_sql, in_sql) < 0) {
        p->finished = true;
        p->src_state = p->dst_state = SIDE_DONE;
    }
    return 1;
}

int luaopen_tide_copy(lua_State *L) {
    static const luaL_Reg methods[] = {
        { "wait", l_wait },
        { "stats", l_stats },
        { "pause", l_pause },
        { "resume", l_resume },
        { "throttle", l_throttle },
        { "routed", l_routed },
        { "route_batch", l_route_batch },
        { "close_routes", l_close_routes },
        { NULL, NULL },
    };
    static const luaL_Reg meta[] = { { "__gc", l_gc }, { NULL, NULL } };
    static const luaL_Reg funcs[] = { { "copy_pump", l_copy_pump }, { NULL, NULL } };
    tide_class_define(L, PUMP_META, methods, meta);
    luaL_newlib(L, funcs);
    return 1;
}
