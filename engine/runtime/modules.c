/*
 * modules.c — makes `require` find the engine's modules: the Lua ones compiled into the
 * binary (package.preload, with real chunk names), the C core (`tide.core`) and lpeg.
 * With a development directory (PGTIDE_LUA_DIR or --lua-dir) the Lua modules are read
 * from that directory instead, so an edit takes effect without rebuilding.
 */
#include "runtime/modules.h"
#include "runtime/bindings.h"

#include <lauxlib.h>
#include <lualib.h>
#include <string.h>

static int embedded_loader(lua_State *L) {
    const tide_embedded_module *m = lua_touserdata(L, lua_upvalueindex(1));
    if (luaL_loadbufferx(L, (const char *) m->source, m->length, m->chunkname, "t") != LUA_OK)
        return lua_error(L);
    lua_pushstring(L, m->name);
    lua_call(L, 1, 1);
    return 1;
}

void modules_register(lua_State *L, const char *lua_dir) {
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    lua_pushcfunction(L, luaopen_lpeg);
    lua_setfield(L, -2, "lpeg");
    lua_pushcfunction(L, luaopen_tide_core);
    lua_setfield(L, -2, "tide.core");
    if (!lua_dir || !*lua_dir) {
        for (const tide_embedded_module *m = tide_embedded_modules; m->name; m++) {
            lua_pushlightuserdata(L, (void *) m);
            lua_pushcclosure(L, embedded_loader, 1);
            lua_setfield(L, -2, m->name);
        }
    }
    lua_pop(L, 1);
    if (lua_dir && *lua_dir) {
        lua_getglobal(L, "package");
        lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;", lua_dir, lua_dir);
        lua_getfield(L, -2, "path");
        lua_concat(L, 2);
        lua_setfield(L, -2, "path");
        lua_pop(L, 1);
    }
}
