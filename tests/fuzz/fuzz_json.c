/*
 * fuzz_json.c — libFuzzer harness for the JSON decoder (engine/runtime/json.c, included here
 * so that its reader runs over the fuzzer's bytes in a buffer of their exact size: a read one
 * byte past the end is an ASan report, which a Lua string's terminating NUL would hide). Every
 * input must give a value or a raised "json: ..." error message; a crash, a sanitizer report or
 * another error is a bug. (That the values are right is tests/unit/json_test.lua's business.)
 */
#include "runtime/json.c"

#include <lualib.h>
#include <stdlib.h>

static const uint8_t *fuzz_data;
static size_t fuzz_size;

/* json_decode over fuzz_data; upvalue 1 is the null value, as in json_decoder's closures. */
static int decode_exact(lua_State *L) { return json_decode_buffer(L, (const char *) fuzz_data, fuzz_size); }

static const char *CHECK = "local decode = ...\n"
                           "local ok, v = pcall(decode)\n"
                           "if not ok and (type(v) ~= 'string' or not v:find('^json: ')) then\n"
                           "  error('odd error: ' .. tostring(v))\n"
                           "end\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy) return 0;
    if (size) memcpy(copy, data, size);
    fuzz_data = copy;
    fuzz_size = size;
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    if (luaL_loadstring(L, CHECK) != LUA_OK) abort();
    lua_newtable(L); /* the null value */
    lua_pushcclosure(L, decode_exact, 1);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) abort();
    lua_close(L);
    free(copy);
    return 0;
}
