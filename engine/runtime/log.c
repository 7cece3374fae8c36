/*
 * log.c — the engine's own log lines (a server WARNING on a connection, a coroutine that
 * failed with nobody waiting for it) go through the Lua logger (lua/tide/log.lua) when one is
 * set, so that `--log-format json` covers them too; before that, and while the state closes,
 * they are written as plain text.
 *
 *   tide.core.set_logger(fn | nil)   fn(level, event, message, text) is called for each line
 */
#include "runtime/bindings.h"

#include <stdio.h>
#include <string.h>

#define LOGGER_KEY "tide.logger"

void tide_log(lua_State *L, const char *level, const char *event, const char *message, const char *text) {
    if (L && lua_checkstack(L, 6)) {
        int top = lua_gettop(L);
        if (lua_getfield(L, LUA_REGISTRYINDEX, LOGGER_KEY) == LUA_TFUNCTION) {
            lua_pushstring(L, level);
            lua_pushstring(L, event);
            lua_pushstring(L, message);
            lua_pushstring(L, text);
            /* The logger only formats and writes; it cannot yield. A failure falls back to
             * the plain line below. */
            if (lua_pcall(L, 4, 0, 0) == LUA_OK) {
                lua_settop(L, top);
                return;
            }
        }
        lua_settop(L, top);
    }
    fprintf(stderr, "%s\n", text);
}

static int l_set_logger(lua_State *L) {
    if (!lua_isnoneornil(L, 1)) luaL_checktype(L, 1, LUA_TFUNCTION);
    lua_settop(L, 1);
    lua_setfield(L, LUA_REGISTRYINDEX, LOGGER_KEY);
    return 0;
}

int luaopen_tide_log(lua_State *L) {
    static const luaL_Reg funcs[] = { { "set_logger", l_set_logger }, { NULL, NULL } };
    luaL_newlib(L, funcs);
    return 1;
}
