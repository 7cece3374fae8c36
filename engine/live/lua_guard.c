/*
 * lua_guard.c — the count hook that keeps a REPL chunk from harming the task it runs in
 * (HAProxy's hlua_hook is the model: a count hook that yields, and stops a runaway script).
 *
 *   guard = tide.core.chunk_guard{ slice = 0.005, cpu_limit = 60, block_limit = 5 }
 *   guard:watch([thread])       hook the calling thread, or a coroutine the chunk created
 *   guard:unwatch([thread])
 *   guard:interrupt([message])  Ctrl-C: the chunk stops at its next hook in user code
 *   guard:set{ cpu_limit =, block_limit = }
 *   guard:used()                → seconds of CPU its threads used so far
 *   guard:preempted(co)         → true (once) when co's last yield was the hook's
 *   tide.core.chunk_guard_of([thread]) → the guard watching that thread, or nil
 *
 * Every HOOK_EVERY instructions of a watched thread the hook decides:
 *   - user code (anything not an engine module) that has run `slice` seconds in a row yields,
 *     when it can, so the task's loop keeps turning: replication feedback, copy pumps and the
 *     session's own socket (which is how a Ctrl-C arrives) go on while `while true do end`
 *     spins. Engine code is never preempted: its coroutines assume they run undisturbed
 *     between two waits (a queue index read and then advanced).
 *   - an interrupted chunk raises "interrupted" in user code;
 *   - past cpu_limit seconds of CPU in all, or block_limit seconds without a wait (what
 *     engine code or a non-yieldable spot such as a sort comparator could do), it raises.
 * A wait is seen as a gap between two hooks: 1000 instructions take microseconds, so a gap
 * of a millisecond means the thread was suspended (or inside a long C call).
 *
 * Threads inherit their creator's hook (lua_newthread copies it); a thread that carries this
 * hook without being watched is engine work the chunk started, and the hook removes itself.
 */
#include "runtime/bindings.h"

#include <string.h>

#define GUARD_META "tide.chunk_guard"
#define GUARDED "tide.guarded" /* registry: weak thread → watch record */
#define HOOK_EVERY 1000
#define RESUMED_GAP 0.001

typedef struct chunk_guard {
    double slice, cpu_limit, block_limit;
    double used;
    bool interrupted;
    char message[160];
} chunk_guard;

typedef struct thread_watch {
    double last_hook; /* 0 after a yield: the next hook starts a new slice */
    double slice_start;
    bool preempted; /* a plain coroutine yielded by the hook, not by its code */
} thread_watch;

static bool is_engine_code(const char *source) {
    /* "@tide/full.lua" when embedded, "@lua/tide/full.lua" with PGTIDE_LUA_DIR. */
    return source[0] == '@' && (strncmp(source, "@tide/", 6) == 0 || strstr(source, "/tide/") != NULL);
}

static void stop_chunk(lua_State *L, lua_Debug *where, const char *message) {
    if (where->currentline > 0)
        lua_pushfstring(L, "%s:%d: %s", where->short_src, where->currentline, message);
    else
        lua_pushstring(L, message);
    lua_error(L);
}

static void guard_hook(lua_State *L, lua_Debug *ar) {
    (void) ar;
    lua_getfield(L, LUA_REGISTRYINDEX, GUARDED);
    lua_pushthread(L);
    lua_rawget(L, -2);
    thread_watch *w = lua_touserdata(L, -1);
    if (!w) {
        lua_pop(L, 2);
        lua_sethook(L, NULL, 0, 0);
        return;
    }
    lua_getiuservalue(L, -1, 1);
    chunk_guard *g = lua_touserdata(L, -1); /* kept alive by the watch record */
    lua_pop(L, 3);

    double now = tide_monotonic();
    if (w->last_hook == 0 || now - w->last_hook > RESUMED_GAP)
        w->slice_start = now;
    else
        g->used += now - w->last_hook;
    w->last_hook = now;

    lua_Debug info;
    memset(&info, 0, sizeof info);
    bool user = lua_getstack(L, 0, &info) && lua_getinfo(L, "Sl", &info) && !is_engine_code(info.source);
    char msg[224];
    if (g->interrupted && user) stop_chunk(L, &info, g->message);
    if (g->cpu_limit > 0 && g->used > g->cpu_limit) {
        snprintf(msg, sizeof msg, "stopped: the chunk used more than %g s of CPU (session.cpu_limit)",
                 g->cpu_limit);
        stop_chunk(L, &info, msg);
    }
    if (g->block_limit > 0 && now - w->slice_start > g->block_limit) {
        snprintf(msg, sizeof msg,
                 "stopped: the chunk kept the task's loop for more than %g s "
                 "without waiting (session.block_limit)",
                 g->block_limit);
        stop_chunk(L, &info, msg);
    }
    /* An engine coroutine's yield goes to the scheduler, which resumes it on the next loop
     * turn. A plain coroutine's goes to its resumer: the session's coroutine.resume/wrap see
     * the mark, let the loop turn, and resume it, so the user's code never sees the yield. */
    if (user && now - w->slice_start >= g->slice && lua_isyieldable(L)) {
        w->last_hook = 0;
        w->preempted = tide_tag(L)->co == NULL;
        lua_yield(L, 0); /* in a hook this returns; the VM yields once the hook is done */
    }
}

static chunk_guard *check_guard(lua_State *L) { return luaL_checkudata(L, 1, GUARD_META); }

static void read_limits(lua_State *L, int t, chunk_guard *g) {
    if (!lua_istable(L, t)) return;
    if (lua_getfield(L, t, "slice") != LUA_TNIL) g->slice = luaL_checknumber(L, -1);
    if (lua_getfield(L, t, "cpu_limit") != LUA_TNIL) g->cpu_limit = luaL_checknumber(L, -1);
    if (lua_getfield(L, t, "block_limit") != LUA_TNIL) g->block_limit = luaL_checknumber(L, -1);
    lua_pop(L, 3);
}

static int l_chunk_guard(lua_State *L) {
    chunk_guard *g = tide_udata_new(L, GUARD_META, sizeof *g, 0);
    g->slice = 0.005;
    g->cpu_limit = 60;
    g->block_limit = 5;
    strcpy(g->message, "interrupted");
    read_limits(L, 1, g);
    return 1;
}

/* Push the thread argument at idx (or the running thread) and return it. */
static lua_State *thread_arg(lua_State *L, int idx) {
    if (lua_isnoneornil(L, idx)) {
        lua_pushthread(L);
        return L;
    }
    luaL_checktype(L, idx, LUA_TTHREAD);
    lua_pushvalue(L, idx);
    return lua_tothread(L, idx);
}

static int l_guard_watch(lua_State *L) {
    check_guard(L);
    lua_settop(L, 2);
    lua_getfield(L, LUA_REGISTRYINDEX, GUARDED);
    lua_State *T = thread_arg(L, 2);
    thread_watch *w = lua_newuserdatauv(L, sizeof *w, 1);
    memset(w, 0, sizeof *w);
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 1);
    lua_rawset(L, -3);
    lua_pop(L, 1);
    lua_sethook(T, guard_hook, LUA_MASKCOUNT, HOOK_EVERY);
    return 0;
}

static int l_guard_unwatch(lua_State *L) {
    check_guard(L);
    lua_settop(L, 2);
    lua_getfield(L, LUA_REGISTRYINDEX, GUARDED);
    lua_State *T = thread_arg(L, 2);
    lua_pushnil(L);
    lua_rawset(L, -3);
    lua_pop(L, 1);
    if (lua_gethook(T) == guard_hook) lua_sethook(T, NULL, 0, 0);
    return 0;
}

static int l_guard_interrupt(lua_State *L) {
    chunk_guard *g = check_guard(L);
    const char *msg = luaL_optstring(L, 2, "interrupted");
    g->interrupted = true;
    snprintf(g->message, sizeof g->message, "%s", msg);
    return 0;
}

static int l_guard_set(lua_State *L) {
    chunk_guard *g = check_guard(L);
    luaL_checktype(L, 2, LUA_TTABLE);
    read_limits(L, 2, g);
    return 0;
}

static int l_guard_used(lua_State *L) {
    lua_pushnumber(L, check_guard(L)->used);
    return 1;
}

static int l_guard_interrupted(lua_State *L) {
    lua_pushboolean(L, check_guard(L)->interrupted);
    return 1;
}

static int l_guard_preempted(lua_State *L) {
    check_guard(L);
    luaL_checktype(L, 2, LUA_TTHREAD);
    lua_settop(L, 2);
    lua_getfield(L, LUA_REGISTRYINDEX, GUARDED);
    lua_pushvalue(L, 2);
    thread_watch *w = lua_rawget(L, -2) == LUA_TUSERDATA ? lua_touserdata(L, -1) : NULL;
    lua_pushboolean(L, w && w->preempted);
    if (w) w->preempted = false;
    return 1;
}

static int l_chunk_guard_of(lua_State *L) {
    lua_settop(L, 1);
    lua_getfield(L, LUA_REGISTRYINDEX, GUARDED);
    thread_arg(L, 1);
    if (lua_rawget(L, -2) != LUA_TUSERDATA) {
        lua_pushnil(L);
        return 1;
    }
    lua_getiuservalue(L, -1, 1);
    return 1;
}

int luaopen_tide_guard(lua_State *L) {
    static const luaL_Reg methods[] = {
        { "watch", l_guard_watch },
        { "unwatch", l_guard_unwatch },
        { "interrupt", l_guard_interrupt },
        { "interrupted", l_guard_interrupted },
        { "set", l_guard_set },
        { "used", l_guard_used },
        { "preempted", l_guard_preempted },
        { NULL, NULL },
    };
    static const luaL_Reg funcs[] = {
        { "chunk_guard", l_chunk_guard },
        { "chunk_guard_of", l_chunk_guard_of },
        { NULL, NULL },
    };
    tide_class_define(L, GUARD_META, methods, NULL);
    lua_newtable(L);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_setfield(L, LUA_REGISTRYINDEX, GUARDED);
    luaL_newlib(L, funcs);
    return 1;
}
