/*
 * lua_http.c — Lua binding of the HTTP responder (engine/live/http.c), for the metrics
 * endpoint (lua/tide/metrics.lua).
 *
 *   tide.core.http_listen(host, port, handler) → server | nil, message, code ("EADDRINUSE", ...)
 *     handler(path) → body [, content_type] for 200, or nil for 404; called on the loop for
 *                     each GET or HEAD, outside any coroutine: it cannot wait (a handler that
 *                     tries, or raises, answers 500 and the message goes to the log)
 *     server:port()    → the port bound
 *     server:served()  → requests answered by the handler so far
 *     server:close()   stops listening (connections being answered finish)
 *
 * Why a callback rather than a coroutine per request: the answer is made from figures already
 * in memory, so there is nothing to wait for, and the responder then needs no scheduler
 * plumbing. The handler runs on the main thread between loop callbacks, where no other Lua
 * code runs.
 */
#include "live/http.h"
#include "runtime/bindings.h"

#include <stdlib.h>
#include <string.h>

#define HTTP_SERVER_META "tide.http_server"

typedef struct lua_handler {
    lua_State *L; /* the main thread */
    int ref;      /* the handler function in the registry */
    char content_type[128];
} lua_handler;

static void call_handler(void *arg, const char *path, http_response *out) {
    lua_handler *h = arg;
    lua_State *L = h->L;
    int top = lua_gettop(L);
    if (!lua_checkstack(L, 4)) return;
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->ref);
    lua_pushstring(L, path);
    if (lua_pcall(L, 1, 2, 0) != LUA_OK) {
        const char *msg = lua_tostring(L, -1);
        char text[1024];
        snprintf(text, sizeof text, "pgtide: the metrics endpoint failed: %s", msg ? msg : "?");
        tide_log(L, "error", "metrics_failed", text + strlen("pgtide: "), text);
        lua_settop(L, top);
        out->status = 500;
        return;
    }
    size_t len;
    const char *body = lua_tolstring(L, top + 1, &len);
    if (!body) {
        out->status = 404;
    } else if ((out->body = malloc(len ? len : 1)) != NULL) {
        memcpy(out->body, body, len);
        out->length = len;
        out->status = 200;
        const char *type = lua_tostring(L, top + 2);
        if (type) {
            snprintf(h->content_type, sizeof h->content_type, "%s", type);
            out->content_type = h->content_type;
        }
    }
    lua_settop(L, top);
}

static int push_failure(lua_State *L, const char *message, int code) {
    lua_pushnil(L);
    lua_pushstring(L, message);
    lua_pushstring(L, uv_err_name(code));
    return 3;
}

static http_server *check_server(lua_State *L) {
    return tide_box_check(L, 1, HTTP_SERVER_META, "the HTTP server is closed");
}

static void release(lua_State *L, http_server *s) {
    lua_handler *h = s->arg;
    http_server_release(s); /* no more calls of the handler after this */
    if (h) {
        luaL_unref(L, LUA_REGISTRYINDEX, h->ref);
        free(h);
    }
}

static int l_http_listen(lua_State *L) {
    const char *host = luaL_checkstring(L, 1);
    lua_Integer port = luaL_checkinteger(L, 2);
    luaL_argcheck(L, port >= 0 && port <= 65535, 2, "a port from 0 to 65535");
    luaL_checktype(L, 3, LUA_TFUNCTION);
    void **box = tide_box_new(L, HTTP_SERVER_META, 0);
    lua_handler *h = calloc(1, sizeof *h);
    if (!h) return luaL_error(L, "out of memory");
    h->L = tide_rt(L)->L;
    lua_pushvalue(L, 3);
    h->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    http_server *s = http_server_new(tide_rt(L), call_handler, h);
    if (!s) {
        luaL_unref(L, LUA_REGISTRYINDEX, h->ref);
        free(h);
        return luaL_error(L, "out of memory");
    }
    char err[512];
    int rc = http_server_listen(s, host, (int) port, err, sizeof err);
    if (rc != 0) {
        release(L, s);
        return push_failure(L, err, rc);
    }
    *box = s;
    return 1;
}

static int l_server_port(lua_State *L) {
    lua_pushinteger(L, check_server(L)->port);
    return 1;
}

static int l_server_served(lua_State *L) {
    lua_pushinteger(L, (lua_Integer) check_server(L)->served);
    return 1;
}

static int l_server_close(lua_State *L) {
    void **box = tide_box_slot(L, 1, HTTP_SERVER_META);
    if (*box) release(L, *box);
    *box = NULL;
    return 0;
}

int luaopen_tide_http(lua_State *L) {
    static const luaL_Reg methods[] = {
        { "port", l_server_port },
        { "served", l_server_served },
        { "close", l_server_close },
        { NULL, NULL },
    };
    static const luaL_Reg meta[] = { { "__gc", l_server_close }, { NULL, NULL } };
    static const luaL_Reg funcs[] = { { "http_listen", l_http_listen }, { NULL, NULL } };
    tide_class_define(L, HTTP_SERVER_META, methods, meta);
    luaL_newlib(L, funcs);
    return 1;
}
