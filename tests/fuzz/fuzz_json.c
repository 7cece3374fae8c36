/*
 * fuzz_json.c — libFuzzer harness for the JSON decoder (engine/runtime/json.c): arbitrary
 * bytes are decoded; every outcome must be a value or a raised "json: ..." error message. A
 * crash, a sanitizer report or another error is a bug. (That the values are right is
 * tests/unit/json_test.lua's business.)
 */
#include "runtime/bindings.h"

#include <lualib.h>
#include <stdlib.h>
#include <string.h>

int luaopen_tide_json(lua_State *L);

static const char *CHECK =
    "local decode, text = ...\n"
    "local ok, v = pcall(decode, text)\n"
    "if not ok then\n"
    "  if type(v) ~= 'string' or not v:find('^json: ') then error('odd error: ' .. tostring(v)) end\n"
    "  return\n"
    "end\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    luaopen_tide_json(L);
    lua_getfield(L, -1, "json_decoder");
    lua_newtable(L); /* the null value */
    lua_call(L, 1, 1);
    if (luaL_loadstring(L, CHECK) != LUA_OK) abort();
    lua_insert(L, -2);
    lua_pushlstring(L, (const char *) data, size);
    if (lua_pcall(L, 2, 0, 0) != LUA_OK) abort();
    lua_close(L);
    return 0;
}
