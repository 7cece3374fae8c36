/*
 * main.c — process entry: builds the runtime (libuv loop + Lua state), registers the
 * modules, runs the command-line driver (lua/tide/cli.lua) as the main coroutine on the
 * loop, and turns its result into the exit status. Everything a command does is in Lua;
 * this file only owns the process's lifetime.
 */
#include "runtime/bindings.h"
#include "runtime/modules.h"

#include <lualib.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define EXIT_INTERNAL 70
#define QUICK_EXIT_KB (256 * 1024) /* a Lua heap above this is left to the system (below) */
#define GC_PAUSE 120               /* percent: see main() */

static int traceback_handler(lua_State *L) {
    const char *msg = lua_tostring(L, 1);
    luaL_traceback(L, L, msg ? msg : "(error object is not a string)", 1);
    return 1;
}

static void close_walk(uv_handle_t *h, void *arg) {
    (void) arg;
    if (!uv_is_closing(h)) uv_close(h, NULL);
}

int main(int argc, char **argv) {
    signal(SIGPIPE, SIG_IGN);
    static tide_runtime rt;
    rt.loop = uv_default_loop();
    rt.main_tag.rt = &rt;
    lua_State *L = luaL_newstate();
    if (!L) {
        fprintf(stderr, "pgtide: cannot create the Lua state (out of memory)\n");
        return EXIT_INTERNAL;
    }
    rt.L = L;
    *(tide_thread_tag **) lua_getextraspace(L) = &rt.main_tag;
    luaL_openlibs(L);
    /* A collection cycle starts when the heap reaches 1.2 times what the last one left live
     * (Lua's default: 2 times). A plan of many tables keeps a large live heap for the whole
     * run, and the default let as much garbage pile on top of it. The process's malloc is
     * mimalloc (linked: the Makefile), whose speed on the Lua heap's small blocks pays for
     * the more frequent cycles: at 100,000 tables `pgtide check` went from 1.93 GB and 41-44 s
     * (the C library's malloc, 1.5 times) to 1.77 GB and 35-39 s (docs/performance.md, "The
     * process's allocator"). Lower is no good: at 1.0 the collector never rests (4 to 5 times
     * the time). */
    lua_gc(L, LUA_GCINC, GC_PAUSE, 0, 0);
    sched_init(&rt);

    /* --lua-dir DIR (first argument) or PGTIDE_LUA_DIR: load Lua modules from the tree. */
    const char *lua_dir = getenv("PGTIDE_LUA_DIR");
    int first = 1;
    if (argc > 2 && strcmp(argv[1], "--lua-dir") == 0) {
        lua_dir = argv[2];
        first = 3;
        setenv("PGTIDE_LUA_DIR", lua_dir, 1); /* child processes and Lua see the same */
    }
    modules_register(L, lua_dir);

    lua_createtable(L, argc, 1);
    lua_pushstring(L, argv[0]);
    lua_rawseti(L, -2, 0);
    for (int i = first; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i - first + 1);
    }
    lua_setglobal(L, "arg");

    int status = EXIT_INTERNAL;
    lua_pushcfunction(L, traceback_handler);
    lua_getglobal(L, "require");
    lua_pushstring(L, "tide.cli");
    if (lua_pcall(L, 1, 1, 1) != LUA_OK) {
        fprintf(stderr, "pgtide: cannot load the command-line driver: %s\n", lua_tostring(L, -1));
        lua_close(L);
        return EXIT_INTERNAL;
    }
    lua_getfield(L, -1, "main");
    lua_getglobal(L, "arg");
    rt.main_co = sched_spawn(L, 1);
    lua_setfield(L, LUA_REGISTRYINDEX, "tide.main"); /* keep the main handle */
    lua_settop(L, 0);

    uv_run(rt.loop, UV_RUN_DEFAULT);

    lua_getfield(L, LUA_REGISTRYINDEX, "tide.main");
    lua_getfield(L, -1, "result");
    lua_insert(L, -2);
    lua_call(L, 1, LUA_MULTRET);
    if (lua_isnil(L, 1)) {
        lua_getfield(L, LUA_REGISTRYINDEX, "tide.main");
        lua_getfield(L, -1, "status");
        lua_insert(L, -2);
        lua_call(L, 1, 2);
        fprintf(stderr,
                "pgtide: internal error: the main coroutine is %s on %s with nothing left "
                "to wake it\n",
                lua_tostring(L, -2), lua_tostring(L, -1) ? lua_tostring(L, -1) : "?");
    } else if (lua_toboolean(L, 1)) {
        status = lua_isinteger(L, 2) ? (int) lua_tointeger(L, 2) : 0;
    } else {
        fprintf(stderr, "pgtide: internal error: %s\n", luaL_tolstring(L, 2, NULL));
    }
    lua_settop(L, 0);
    /* A command with nothing left to finish (tide.cli marks plan and check) that built a big
     * heap ends here: the system takes the memory back at once, where freeing the plan of
     * 100,000 tables object by object took 3 s (and a run's 5 GB, 40 s). Small heaps — every
     * test — take the whole way below, so the sanitizers still see every allocation freed. */
    lua_getfield(L, LUA_REGISTRYINDEX, "tide.quick_exit");
    bool quick = lua_toboolean(L, -1) && lua_gc(L, LUA_GCCOUNT, 0) > QUICK_EXIT_KB;
    lua_pop(L, 1);
    if (quick) {
        if (rt.unreported_errors && status == 0) status = 1;
        fflush(NULL);
        _exit(status);
    }
    lua_pushnil(L);
    lua_setfield(L, LUA_REGISTRYINDEX, "tide.main");
    lua_gc(L, LUA_GCCOLLECT);
    if (rt.unreported_errors && status == 0) status = 1;
    /* From here on the engine's lines are plain text: the logger's Lua state is going away. */
    lua_pushnil(L);
    lua_setfield(L, LUA_REGISTRYINDEX, "tide.logger");
    fflush(stdout);

    lua_close(L);
    sched_close(&rt);
    tide_term_close();
    uv_walk(rt.loop, close_walk, NULL);
    uv_run(rt.loop, UV_RUN_DEFAULT);
    uv_loop_close(rt.loop);
    return status;
}
