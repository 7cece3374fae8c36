/*
 * lua_core.c — the `tide.core` module: everything the C engine offers to Lua, gathered
 * from each area's registration function. The public `tide` module (lua/tide/init.lua)
 * re-exports these next to its Lua functions.
 */
#include "runtime/runtime.h"

int luaopen_tide_conn(lua_State *L);
int luaopen_tide_copy(lua_State *L);
int luaopen_tide_cdc(lua_State *L);
void tide_term_register(lua_State *L);
void tide_process_register(lua_State *L);
void tide_control_register(lua_State *L);

int luaopen_tide_core(lua_State *L) {
    lua_newtable(L);
    luaopen_tide_sched(L);
    luaopen_tide_conn(L);
    luaopen_tide_copy(L);
    luaopen_tide_cdc(L);
    tide_error_register(L);
    tide_term_register(L);
    tide_process_register(L);
    tide_control_register(L);
    lua_pushstring(L, TIDE_VERSION);
    lua_setfield(L, -2, "version");
    return 1;
}
