/*
 * lua_core.c — the `tide.core` module: everything the C engine offers to Lua, the functions
 * of every area's module (bindings.h) gathered in one table. The public `tide` module
 * (lua/tide/init.lua) re-exports these next to its Lua functions.
 */
#include "runtime/bindings.h"

/* Call an area's luaopen_* and copy its module's fields into the table below it. */
static void merge(lua_State *L, lua_CFunction open) {
    int core = lua_gettop(L);
    open(L);
    lua_pushnil(L);
    while (lua_next(L, core + 1)) {
        lua_pushvalue(L, -2);
        if (lua_rawget(L, core) != LUA_TNIL)
            luaL_error(L, "tide.core: two modules define %s", lua_tostring(L, -3));
        lua_pop(L, 1);
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, core);
    }
    lua_settop(L, core);
}

int luaopen_tide_core(lua_State *L) {
    static const lua_CFunction areas[] = { luaopen_tide_sched,   luaopen_tide_conn,
                                           luaopen_tide_copy,    luaopen_tide_cdc,
                                           luaopen_tide_error,   luaopen_tide_term,
                                           luaopen_tide_process, luaopen_tide_control,
                                           luaopen_tide_guard,   luaopen_tide_log,
                                           luaopen_tide_http,    luaopen_tide_json,
                                           luaopen_tide_squeeze, NULL };
    lua_newtable(L);
    for (int i = 0; areas[i]; i++) merge(L, areas[i]);
    lua_pushstring(L, TIDE_VERSION);
    lua_setfield(L, -2, "version");
    return 1;
}
