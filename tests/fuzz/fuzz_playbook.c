/*
 * fuzz_playbook.c — libFuzzer harness for the playbook loader: arbitrary bytes are written to
 * a file and loaded by tide.playbook.load (Lua's parser, tide.task's validation, the key
 * locator, the select/rename/precheck compilers it calls). Every outcome must be a returned
 * task or a raised error; a crash, a sanitizer report or a hang is a bug. Chunks that loop
 * are cut off by an instruction-count hook.
 */
#include "runtime/runtime.h"
#include "runtime/modules.h"

#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void stop_runaway(lua_State *L, lua_Debug *ar) {
    (void) ar;
    luaL_error(L, "fuzz: instruction budget exhausted");
}

static const char *LOADER =
    "local path = ...\n"
    "local ok, err = pcall(require('tide.playbook').load, path)\n"
    "if not ok and type(err) ~= 'table' and type(err) ~= 'string' then error('odd error value') end\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char path[64];
    if (!path[0]) snprintf(path, sizeof path, "/tmp/fuzz-playbook-%d.lua", (int) getpid());
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    fwrite(data, 1, size, f);
    fclose(f);

    static tide_runtime rt;
    rt.loop = uv_default_loop();
    rt.main_tag.rt = &rt;
    lua_State *L = luaL_newstate();
    rt.L = L;
    *(tide_thread_tag **) lua_getextraspace(L) = &rt.main_tag;
    luaL_openlibs(L);
    modules_register(L, NULL);
    lua_sethook(L, stop_runaway, LUA_MASKCOUNT, 2000000);
    if (luaL_loadstring(L, LOADER) == LUA_OK) {
        lua_pushstring(L, path);
        lua_pcall(L, 1, 0, 0); /* any error here is the loader's normal answer */
    }
    lua_close(L);
    return 0;
}
