/*
 * bindings.c — the userdata helpers every binding uses (see bindings.h): one way to define a
 * class's metatable, to make a userdata of it, and to box a pointer to a C object.
 */
#include "runtime/bindings.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void tide_class_define(lua_State *L, const char *name, const luaL_Reg *methods, const luaL_Reg *metamethods) {
    luaL_newmetatable(L, name);
    if (metamethods) luaL_setfuncs(L, metamethods, 0);
    if (methods) {
        lua_newtable(L);
        luaL_setfuncs(L, methods, 0);
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);
}

void *tide_udata_new(lua_State *L, const char *name, size_t size, int nuvalue) {
    void *u = lua_newuserdatauv(L, size, nuvalue);
    if (size) memset(u, 0, size);
    luaL_setmetatable(L, name);
    return u;
}

void **tide_box_new(lua_State *L, const char *name, int nuvalue) {
    void **slot = tide_udata_new(L, name, sizeof *slot, nuvalue);
    *slot = NULL;
    return slot;
}

void **tide_box_slot(lua_State *L, int idx, const char *name) { return luaL_checkudata(L, idx, name); }

void *tide_box_check(lua_State *L, int idx, const char *name, const char *gone) {
    void **slot = luaL_checkudata(L, idx, name);
    if (!*slot) luaL_error(L, "%s", gone);
    return *slot;
}

/* A float at idx becomes its shortest text that reads back as the same double (Lua's own
 * tostring keeps 14 digits: 12345678901234567.5 would become 1.2345678901235e+16). Integers and
 * other values are left as they are. */
void tide_number_text(lua_State *L, int idx) {
    if (lua_type(L, idx) != LUA_TNUMBER || lua_isinteger(L, idx)) return;
    idx = lua_absindex(L, idx);
    double d = lua_tonumber(L, idx);
    char buf[40];
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, d);
        if (strtod(buf, NULL) == d) break;
    }
    lua_pushstring(L, buf);
    lua_replace(L, idx);
}
