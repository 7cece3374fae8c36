/*
 * lua_cdc_tables.c — the stream's table map, from the Lua table tide.cdc builds (one entry per
 * published relation: source and target names, columns, key, known columns, flags,
 * tolerate_lsn, routes) to the apply_target structures apply.c works with; and a change's row
 * as Lua answers it (s:reply) back to a tuple.
 */
#include "cdc/lua_cdc_tables.h"

#include "runtime/bindings.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

static char *field_string(lua_State *L, int t, const char *name, bool required) {
    char *out = NULL;
    if (lua_getfield(L, t, name) == LUA_TSTRING)
        out = strdup(lua_tostring(L, -1));
    else if (required)
        luaL_error(L, "cdc_stream: table entry needs %s (a string)", name);
    lua_pop(L, 1);
    return out;
}

bool cdc_field_bool(lua_State *L, int t, const char *name) {
    lua_getfield(L, t, name);
    bool v = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

static char **field_names(lua_State *L, int t, const char *name, int *count) {
    *count = 0;
    if (lua_getfield(L, t, name) != LUA_TTABLE) {
        lua_pop(L, 1);
        return NULL;
    }
    int n = (int) luaL_len(L, -1);
    char **out = calloc((size_t) (n ? n : 1), sizeof *out);
    if (!out) abort();
    for (int i = 0; i < n; i++) {
        lua_geti(L, -1, i + 1);
        out[i] = strdup(luaL_checkstring(L, -1));
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    *count = n;
    return out;
}

apply_target *cdc_target_from_lua(lua_State *L, int t) {
    apply_target *tg = calloc(1, sizeof *tg);
    if (!tg) abort();
    tg->source_schema = field_string(L, t, "source_schema", true);
    tg->source_name = field_string(L, t, "source_name", true);
    tg->target_sql = field_string(L, t, "target_sql", true);
    tg->display = field_string(L, t, "display", true);
    tg->partitioned = cdc_field_bool(L, t, "partitioned");
    tg->heartbeat = cdc_field_bool(L, t, "heartbeat");
    tg->ignored = cdc_field_bool(L, t, "ignored");
    tg->hooked = cdc_field_bool(L, t, "hooked");
    tg->mergeable = cdc_field_bool(L, t, "mergeable");
    tg->batchable = cdc_field_bool(L, t, "batchable");
    tg->unique_free = cdc_field_bool(L, t, "unique_free");
    if (lua_getfield(L, t, "tolerate_lsn") == LUA_TSTRING &&
        apply_parse_lsn(lua_tostring(L, -1), &tg->tolerate_lsn) < 0)
        luaL_error(L, "cdc_stream: tolerate_lsn of %s must look like 0/1A2B3C",
                   tg->display ? tg->display : "?");
    lua_pop(L, 1);
    tg->known = field_names(L, t, "known", &tg->nknown);
    tg->filter = field_string(L, t, "filter", false);
    if (tg->filter) {
        /* known_type[j]: the SQL type of known[j], by name ({ [column] = "type" }) */
        tg->known_type = calloc((size_t) (tg->nknown ? tg->nknown : 1), sizeof *tg->known_type);
        if (!tg->known_type) abort();
        if (lua_getfield(L, t, "known_type") == LUA_TTABLE)
            for (int j = 0; j < tg->nknown; j++)
                tg->known_type[j] = field_string(L, lua_gettop(L), tg->known[j], false);
        lua_pop(L, 1);
        tg->filter_columns = field_names(L, t, "filter_columns", &tg->nfilter_columns);
        tg->follow_cascade = field_string(L, t, "follow_cascade", false);
        /* each change is one statement of its own (apply_filter.c): never folded or batched */
        tg->mergeable = tg->batchable = false;
    }
    tg->key = field_names(L, t, "key", &tg->nkey);
    if (lua_getfield(L, t, "columns") == LUA_TTABLE) {
        int n = (int) luaL_len(L, -1);
        tg->columns = calloc((size_t) (n ? n : 1), sizeof *tg->columns);
        if (!tg->columns) abort();
        for (int i = 0; i < n; i++) {
            lua_geti(L, -1, i + 1);
            luaL_checktype(L, -1, LUA_TTABLE);
            tg->columns[i].source = field_string(L, lua_gettop(L), "source", true);
            tg->columns[i].target_sql = field_string(L, lua_gettop(L), "target_sql", true);
            tg->columns[i].identity_always = cdc_field_bool(L, lua_gettop(L), "identity_always");
            tg->ncolumns++;
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
    /* routes = { entry, ... }: where on.row may route the table's rows (apply_route.c) */
    if (lua_getfield(L, t, "routes") == LUA_TTABLE) {
        int n = (int) luaL_len(L, -1);
        tg->routes = calloc((size_t) (n ? n : 1), sizeof *tg->routes);
        if (!tg->routes) abort();
        for (int i = 0; i < n; i++) {
            lua_geti(L, -1, i + 1);
            luaL_checktype(L, -1, LUA_TTABLE);
            tg->routes[tg->nroutes++] = cdc_target_from_lua(L, lua_gettop(L));
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
    return tg;
}

/* Build a tuple from a Lua table of column values (nil = left out / unchanged). */
pgoutput_tuple *cdc_tuple_from_lua(lua_State *L, int tbl, int anchor, const relcache_relation *rel) {
    pgoutput_tuple *t = lua_newuserdatauv(L, sizeof *t, 0);
    lua_rawseti(L, anchor, (lua_Integer) luaL_len(L, anchor) + 1);
    pgoutput_value *v = lua_newuserdatauv(L, sizeof *v * (size_t) (rel->ncols ? rel->ncols : 1), 0);
    lua_rawseti(L, anchor, (lua_Integer) luaL_len(L, anchor) + 1);
    t->ncols = rel->ncols;
    t->values = v;
    for (int i = 0; i < rel->ncols; i++) {
        memset(&v[i], 0, sizeof v[i]);
        int ty = lua_getfield(L, tbl, rel->columns[i].name);
        if (ty == LUA_TNIL) {
            v[i].kind = PGOUTPUT_VALUE_UNCHANGED_TOAST;
        } else if (ty == LUA_TUSERDATA && luaL_testudata(L, -1, TIDE_NULL_CLASS)) {
            v[i].kind = PGOUTPUT_VALUE_NULL;
        } else if (ty == LUA_TBOOLEAN) {
            v[i].kind = PGOUTPUT_VALUE_TEXT;
            v[i].data = (const uint8_t *) (lua_toboolean(L, -1) ? "t" : "f");
            v[i].len = 1;
        } else if (ty == LUA_TSTRING || ty == LUA_TNUMBER) {
            size_t len;
            tide_number_text(L, -1);
            const char *str = luaL_tolstring(L, -1, &len);
            lua_rawseti(L, anchor, (lua_Integer) luaL_len(L, anchor) + 1); /* keep it alive */
            v[i].kind = PGOUTPUT_VALUE_TEXT;
            v[i].data = (const uint8_t *) str;
            v[i].len = (uint32_t) len;
        } else {
            luaL_error(L, "change: column %s cannot take a %s (use a string, number, boolean or tide.null)",
                       rel->columns[i].name, luaL_typename(L, -1));
        }
        lua_pop(L, 1);
    }
    return t;
}
