/*
 * lua_process.c — child processes and signals on the loop.
 *
 *   tide.core.process{ "cmd", "arg", ..., stdout = "file", stderr = "file", env = {...} }
 *     → handle with :wait() → exit code, signal; :kill([signum]); :pid()
 *   tide.core.on_signal("INT" | "TERM" | "HUP", fn)   fn(name) runs as a new coroutine
 *   tide.core.cpu_count() → the CPUs this process may run on (its affinity mask, cgroup quota)
 *   tide.core.release_memory()   a full collection, and freed pages given back to the system
 *   tide.core.new_table(narr [, nrec]) → an empty table with room for narr list items and
 *     nrec fields (a list filled one item at a time grows to the next power of two)
 *   tide.core.object_index(fixed, global [, slots]) → an __index function for the plan's
 *     objects (tide.plan.objects): fixed[field], else name and oid from the object's row,
 *     schema from it too (row.schema or row.name; none when `global`), root along inline_of;
 *     with slots (field name → list item), the fields the object keeps as list items, and a
 *     __newindex function that writes them there
 *   tide.core.pack_rows(rows [, defaults]) → meta: each row of the list made a packed row, its
 *     fields the items of a list read and written by name through `meta` (a nil one answered
 *     by `defaults`, a field equal to its default left out), the fields most rows have first
 *   tide.core.slots_meta(names [, defaults]) → such a metatable for the names given
 *
 * Tests use processes to run the engine the way an operator does and to SIGKILL it mid-work;
 * the CLI uses signals for a clean stop.
 */
#include "runtime/bindings.h"

#include <fcntl.h>
#include <limits.h>
#include <mimalloc.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PROC_META "tide.process"

typedef struct proc {
    uv_process_t handle;
    bool exited, closed_by_lua;
    int64_t status;
    int term_signal;
    tide_co *waiter;
    int pid;
} proc;

static void proc_closed(uv_handle_t *h) { free(h->data); }

static void proc_exit(uv_process_t *h, int64_t status, int term_signal) {
    proc *p = h->data;
    p->exited = true;
    p->status = status;
    p->term_signal = term_signal;
    tide_co *w = p->waiter;
    p->waiter = NULL;
    if (p->closed_by_lua) uv_close((uv_handle_t *) h, proc_closed);
    if (w) sched_wake(w);
}

static proc *check_proc(lua_State *L) { return tide_box_check(L, 1, PROC_META, "process handle is closed"); }

static int proc_wait_k(lua_State *L, int status, lua_KContext ctx) {
    (void) status;
    (void) ctx;
    proc *p = check_proc(L);
    lua_pushinteger(L, p->status);
    lua_pushinteger(L, p->term_signal);
    return 2;
}

static int l_proc_wait(lua_State *L) {
    proc *p = check_proc(L);
    if (p->exited) return proc_wait_k(L, 0, 0);
    tide_co *co = sched_current(L);
    if (p->waiter) return luaL_error(L, "another coroutine already waits for this process");
    p->waiter = co;
    sched_block(co, "process");
    return lua_yieldk(L, 0, 0, proc_wait_k);
}

static int l_proc_kill(lua_State *L) {
    proc *p = check_proc(L);
    int sig = (int) luaL_optinteger(L, 2, SIGTERM);
    if (!p->exited) uv_process_kill(&p->handle, sig);
    return 0;
}

static int l_proc_pid(lua_State *L) {
    lua_pushinteger(L, check_proc(L)->pid);
    return 1;
}

static int l_proc_exited(lua_State *L) {
    lua_pushboolean(L, check_proc(L)->exited);
    return 1;
}

static int l_proc_gc(lua_State *L) {
    void **box = tide_box_slot(L, 1, PROC_META);
    proc *p = *box;
    *box = NULL;
    if (!p) return 0;
    if (p->exited)
        uv_close((uv_handle_t *) &p->handle, proc_closed);
    else
        p->closed_by_lua = true; /* closed in proc_exit; the child keeps running */
    return 0;
}

static int open_redirect(lua_State *L, int t, const char *field) {
    int fd = -1;
    if (lua_getfield(L, t, field) == LUA_TSTRING) {
        fd = open(lua_tostring(L, -1), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd < 0) luaL_error(L, "process: cannot open %s for %s", lua_tostring(L, -1), field);
    }
    lua_pop(L, 1);
    return fd;
}

static int l_process(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    int argc = (int) luaL_len(L, 1);
    luaL_argcheck(L, argc >= 1, 1, "needs the command as its first element");
    /* `keep` anchors every string whose pointer goes to uv_spawn. */
    lua_newtable(L);
    int keep = lua_gettop(L);
    char **argv = lua_newuserdatauv(L, sizeof(char *) * (size_t) (argc + 1), 0);
    for (int i = 0; i < argc; i++) {
        lua_geti(L, 1, i + 1);
        argv[i] = (char *) luaL_checkstring(L, -1);
        lua_rawseti(L, keep, i + 1);
    }
    argv[argc] = NULL;
    char **env = NULL;
    if (lua_getfield(L, 1, "env") == LUA_TTABLE) {
        int et = lua_gettop(L), n = 0;
        lua_pushnil(L);
        while (lua_next(L, et)) {
            n++;
            lua_pop(L, 1);
        }
        env = lua_newuserdatauv(L, sizeof(char *) * (size_t) (n + 1), 0);
        lua_rawseti(L, keep, argc + 1);
        int i = 0;
        lua_pushnil(L);
        while (lua_next(L, et)) {
            const char *v = luaL_tolstring(L, -1, NULL);
            lua_pushfstring(L, "%s=%s", lua_tostring(L, -3), v);
            env[i++] = (char *) lua_tostring(L, -1);
            lua_rawseti(L, keep, argc + 1 + i);
            lua_pop(L, 2);
        }
        env[i] = NULL;
    }
    lua_settop(L, keep + 1);
    int out = open_redirect(L, 1, "stdout"), err = open_redirect(L, 1, "stderr");
    uv_stdio_container_t stdio[3];
    stdio[0].flags = UV_IGNORE;
    stdio[1].flags = UV_INHERIT_FD;
    stdio[1].data.fd = out >= 0 ? out : STDOUT_FILENO;
    stdio[2].flags = UV_INHERIT_FD;
    stdio[2].data.fd = err >= 0 ? err : STDERR_FILENO;

    proc *p = calloc(1, sizeof *p);
    if (!p) return luaL_error(L, "out of memory");
    uv_process_options_t opts;
    memset(&opts, 0, sizeof opts);
    opts.file = argv[0];
    opts.args = argv;
    opts.env = env;
    opts.exit_cb = proc_exit;
    opts.stdio_count = 3;
    opts.stdio = stdio;
    int rc = uv_spawn(tide_rt(L)->loop, &p->handle, &opts);
    if (out >= 0) close(out);
    if (err >= 0) close(err);
    p->handle.data = p;
    if (rc != 0) {
        uv_close((uv_handle_t *) &p->handle, proc_closed);
        tide_push_error(L, "58000", uv_strerror(rc));
        tide_error_set(L, -1, "command", argv[0]);
        return tide_fail(L);
    }
    p->pid = p->handle.pid;
    *tide_box_new(L, PROC_META, 0) = p;
    return 1;
}

/* ---------------------------------------------------------------- signals */

typedef struct sig_watch {
    uv_signal_t handle;
    int fn_ref;
    lua_State *L;
    const char *name;
} sig_watch;

static void sig_closed(uv_handle_t *h) { free(h->data); }

static void sig_fired(uv_signal_t *h, int signum) {
    (void) signum;
    sig_watch *w = h->data;
    lua_State *L = w->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, w->fn_ref);
    lua_pushstring(L, w->name);
    sched_spawn(L, 1);
    lua_pop(L, 1);
}

static sig_watch *signal_watches[65];

static int l_on_signal(lua_State *L) {
    static const char *const names[] = { "INT", "TERM", "HUP", NULL };
    static const int nums[] = { SIGINT, SIGTERM, SIGHUP };
    int which = luaL_checkoption(L, 1, NULL, names);
    int signum = nums[which];
    sig_watch *old = signal_watches[signum];
    if (old) {
        luaL_unref(L, LUA_REGISTRYINDEX, old->fn_ref);
        uv_close((uv_handle_t *) &old->handle, sig_closed);
        signal_watches[signum] = NULL;
    }
    if (lua_isnoneornil(L, 2)) return 0;
    luaL_checktype(L, 2, LUA_TFUNCTION);
    sig_watch *w = calloc(1, sizeof *w);
    if (!w) return luaL_error(L, "out of memory");
    w->L = tide_rt(L)->L;
    w->name = names[which];
    lua_pushvalue(L, 2);
    w->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    uv_signal_init(tide_rt(L)->loop, &w->handle);
    w->handle.data = w;
    uv_signal_start(&w->handle, sig_fired, signum);
    uv_unref((uv_handle_t *) &w->handle); /* a signal watch alone does not keep us running */
    signal_watches[signum] = w;
    return 0;
}

static int l_getpid(lua_State *L) {
    lua_pushinteger(L, getpid());
    return 1;
}

/* What full.jobs = "auto" starts from when a server runs on this host (tide.full.streams). */
static int l_cpu_count(lua_State *L) {
    lua_pushinteger(L, (lua_Integer) uv_available_parallelism());
    return 1;
}

/* mimalloc's, when it is the process's malloc (the Makefile links it, except in the sanitizer
 * build: then these are NULL) */
#pragma weak mi_collect
#pragma weak mi_option_get
#pragma weak mi_option_set

/* A full collection of the Lua heap, the pages it empties given back to the system at once.
 * mimalloc gives an emptied page back only some time after (mi_option_decommit_delay), and
 * only when it next works on that part of its memory: a process that has just let most of its
 * heap go (the plan, when the change stream starts) and then allocates little keeps them
 * (docs/performance.md, "The stream's tables shared, and the plan's pages given back"). */
static int l_release_memory(lua_State *L) {
    if (!mi_option_get || !mi_option_set || !mi_collect) {
        lua_gc(L, LUA_GCCOLLECT);
        return 0;
    }
    long delay = mi_option_get(mi_option_decommit_delay);
    mi_option_set(mi_option_decommit_delay, 0);
    lua_gc(L, LUA_GCCOLLECT);
    mi_collect(true);
    mi_option_set(mi_option_decommit_delay, delay);
    return 0;
}

static int l_new_table(lua_State *L) {
    lua_Integer narr = luaL_checkinteger(L, 1), nrec = luaL_optinteger(L, 2, 0);
    luaL_argcheck(L, narr >= 0 && narr <= INT_MAX, 1, "out of range");
    luaL_argcheck(L, nrec >= 0 && nrec <= INT_MAX, 2, "out of range");
    lua_createtable(L, (int) narr, (int) nrec);
    return 1;
}

/* obj.row[field] (the row's own metatable answers too), or nil. */
static int row_field(lua_State *L, const char *field) {
    if (lua_getfield(L, 1, "row") != LUA_TTABLE) {
        lua_pushnil(L);
        return 1;
    }
    lua_getfield(L, -1, field);
    return 1;
}

static bool is(const char *key, size_t len, const char *name) {
    return len == strlen(name) && memcmp(key, name, len) == 0;
}

/* __index(obj, field), upvalues: fixed (a table), global (a boolean), slots (name → list
 * item, or nil). In C: an object reads a missing field through it a million times per 10,000
 * tables (a Lua function made the plan a third slower). */
static int l_object_index_call(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 2);
    if (lua_type(L, lua_upvalueindex(3)) == LUA_TTABLE) {
        lua_pushvalue(L, 2);
        if (lua_rawget(L, lua_upvalueindex(3)) == LUA_TNUMBER) {
            /* A field the objects of the kind keep as a list item: that item, nil or not. */
            lua_rawgeti(L, 1, lua_tointeger(L, -1));
            return 1;
        }
        lua_pop(L, 1);
    }
    lua_pushvalue(L, 2);
    if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL) return 1;
    lua_pop(L, 1);
    if (lua_type(L, 2) != LUA_TSTRING) {
        lua_pushnil(L);
        return 1;
    }
    size_t len;
    const char *key = lua_tolstring(L, 2, &len);
    if (is(key, len, "name") || is(key, len, "oid")) return row_field(L, key);
    if (is(key, len, "schema")) {
        if (lua_toboolean(L, lua_upvalueindex(2))) {
            lua_pushnil(L);
            return 1;
        }
        row_field(L, "schema");
        if (!lua_isnil(L, -1)) return 1;
        lua_pop(L, 2);
        return row_field(L, "name");
    }
    if (is(key, len, "root")) {
        if (lua_getfield(L, 1, "inline_of") == LUA_TNIL) return 1;
        lua_pop(L, 1);
        lua_pushvalue(L, 1); /* the root so far */
        for (int guard = 0; guard < 32; guard++) {
            if (lua_type(L, -1) != LUA_TTABLE) break;
            if (lua_getfield(L, -1, "inline_of") == LUA_TNIL || !lua_toboolean(L, -1)) {
                lua_pop(L, 1);
                break;
            }
            lua_remove(L, -2);
        }
        return 1;
    }
    lua_pushnil(L);
    return 1;
}

static int l_packed_newindex(lua_State *L);

static int l_object_index(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    bool packed = !lua_isnoneornil(L, 3);
    if (packed) luaL_checktype(L, 3, LUA_TTABLE);
    lua_settop(L, 3);
    lua_pushvalue(L, 1);
    lua_pushboolean(L, lua_toboolean(L, 2));
    lua_pushvalue(L, 3);
    lua_pushcclosure(L, l_object_index_call, 3);
    if (!packed) return 1;
    lua_pushvalue(L, 3);
    lua_pushcclosure(L, l_packed_newindex, 1);
    return 2;
}

/* Packed rows (tide.catalog.rows): a catalog row as a list of its fields' values instead of
 * a table of named fields: 16 bytes a field instead of 24, and no rounding up to a power of
 * two. The fields most rows have come first, so a row's list ends at its last field (an index
 * row of seven fields: 168 bytes instead of 248). Upvalues of both functions: slot (name →
 * item number); __index also the defaults (or nil). */
static int l_packed_index(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 2);
    lua_pushvalue(L, 2);
    if (lua_rawget(L, lua_upvalueindex(1)) == LUA_TNUMBER) {
        lua_Integer i = lua_tointeger(L, -1);
        if (lua_rawgeti(L, 1, i) != LUA_TNIL) return 1;
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    if (lua_type(L, lua_upvalueindex(2)) != LUA_TTABLE) {
        lua_pushnil(L);
        return 1;
    }
    lua_pushvalue(L, 2);
    lua_rawget(L, lua_upvalueindex(2));
    return 1;
}

static int l_packed_newindex(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 3);
    lua_pushvalue(L, 2);
    if (lua_rawget(L, lua_upvalueindex(1)) == LUA_TNUMBER) {
        lua_Integer i = lua_tointeger(L, -1);
        lua_pop(L, 1);
        lua_rawseti(L, 1, i);
        return 0;
    }
    lua_pop(L, 1);
    lua_rawset(L, 1);
    return 0;
}

/* True when the value on top of the stack (a field's, its name below it) equals the field's
 * default (the table at index d, or none when d is 0): such a field is left out of the row. */
static bool is_default(lua_State *L, int d) {
    if (d == 0 || lua_type(L, -2) != LUA_TSTRING) return false;
    lua_pushvalue(L, -2);
    lua_rawget(L, d);
    bool same = !lua_isnil(L, -1) && lua_rawequal(L, -1, -2);
    lua_pop(L, 1);
    return same;
}

/* Pushes slot (name → item number, from the list of names at index `names`) and a metatable
 * whose __index and __newindex read and write those fields as list items (__index answering
 * a nil one from the table at index `defaults`, when not 0); the names are its __packed. */
static void push_slots_meta(lua_State *L, int names, int defaults) {
    lua_Integer n = luaL_len(L, names);
    lua_createtable(L, 0, (int) n);
    int slot = lua_gettop(L);
    for (lua_Integer i = 1; i <= n; i++) {
        if (lua_rawgeti(L, names, i) != LUA_TSTRING) luaL_error(L, "names[%d] is not a string", (int) i);
        lua_pushinteger(L, i);
        lua_rawset(L, slot);
    }
    lua_createtable(L, 0, 4);
    lua_pushvalue(L, slot);
    if (defaults)
        lua_pushvalue(L, defaults);
    else
        lua_pushnil(L);
    lua_pushcclosure(L, l_packed_index, 2);
    lua_setfield(L, -2, "__index");
    lua_pushvalue(L, slot);
    lua_pushcclosure(L, l_packed_newindex, 1);
    lua_setfield(L, -2, "__newindex");
    lua_pushvalue(L, names);
    lua_setfield(L, -2, "__packed");
}

/* tide.core.slots_meta(names [, defaults]) → a metatable for tables that keep the fields named
 * in `names` as list items (names[i] is item i): tide.plan.order's working steps. */
static int l_slots_meta(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    push_slots_meta(L, 1, lua_istable(L, 2) ? 2 : 0);
    return 1;
}

typedef struct field_count {
    const char *name;
    lua_Integer count;
} field_count;

static int by_count(const void *a, const void *b) {
    const field_count *x = a, *y = b;
    if (x->count != y->count) return x->count > y->count ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* tide.core.pack_rows(rows [, defaults]) → meta: every table in the list `rows` made a packed
 * row (its string-named fields the list's items, any other key its own field; a field equal
 * to its default left out, the metatable answers for it). */
static int l_pack_rows(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    int d = lua_istable(L, 2) ? 2 : 0;
    lua_Integer n = luaL_len(L, 1);
    lua_newtable(L); /* 3: name → count */
    int names = 0;
    for (lua_Integer r = 1; r <= n; r++) {
        if (lua_rawgeti(L, 1, r) == LUA_TTABLE) {
            /* A row packed already, or with list items of its own, would lose its fields. */
            if (lua_getmetatable(L, -1)) {
                if (lua_getfield(L, -1, "__packed") != LUA_TNIL)
                    return luaL_error(L, "pack_rows: row %d is packed already", (int) r);
                lua_pop(L, 2);
            }
            lua_pushnil(L);
            while (lua_next(L, -2)) {
                bool skip = is_default(L, d);
                lua_pop(L, 1);
                if (lua_type(L, -1) == LUA_TNUMBER)
                    return luaL_error(L, "pack_rows: row %d has a numbered field", (int) r);
                if (skip || lua_type(L, -1) != LUA_TSTRING) continue;
                lua_pushvalue(L, -1);
                lua_Integer c = lua_rawget(L, 3) == LUA_TNUMBER ? lua_tointeger(L, -1) : 0;
                lua_pop(L, 1);
                if (c == 0) names++;
                lua_pushvalue(L, -1);
                lua_pushinteger(L, c + 1);
                lua_rawset(L, 3);
            }
        }
        lua_pop(L, 1);
    }
    field_count *fields = lua_newuserdatauv(L, sizeof(field_count) * (size_t) (names + 1), 0); /* 4 */
    int k = 0;
    lua_pushnil(L);
    while (lua_next(L, 3)) {
        if (k == names) return luaL_error(L, "pack_rows: a row changed while it was packed");
        fields[k].name = lua_tostring(L, -2); /* (the key stays alive in table 3) */
        fields[k].count = lua_tointeger(L, -1);
        k++;
        lua_pop(L, 1);
    }
    qsort(fields, (size_t) k, sizeof *fields, by_count);
    lua_createtable(L, k, 0); /* 5: the names in item order */
    for (int i = 0; i < k; i++) {
        lua_pushstring(L, fields[i].name);
        lua_rawseti(L, 5, i + 1);
    }
    push_slots_meta(L, 5, d); /* 6: slot, 7: the metatable */
    for (lua_Integer r = 1; r <= n; r++) {
        if (lua_rawgeti(L, 1, r) != LUA_TTABLE) { /* 8: the row */
            lua_pop(L, 1);
            continue;
        }
        lua_Integer last = 0;
        int extra = 0;
        lua_pushnil(L);
        while (lua_next(L, 8)) {
            bool skip = is_default(L, d);
            lua_pop(L, 1);
            if (skip) continue;
            lua_pushvalue(L, -1);
            if (lua_type(L, -1) == LUA_TSTRING && lua_rawget(L, 6) == LUA_TNUMBER) {
                lua_Integer i = lua_tointeger(L, -1);
                if (i > last) last = i;
            } else {
                extra++;
            }
            lua_pop(L, 1);
        }
        lua_createtable(L, (int) last, extra); /* 9: the packed row */
        lua_pushnil(L);
        while (lua_next(L, 8)) {
            if (is_default(L, d)) {
                lua_pop(L, 1);
                continue;
            }
            lua_pushvalue(L, -2);
            if (lua_type(L, -1) == LUA_TSTRING && lua_rawget(L, 6) == LUA_TNUMBER) {
                lua_Integer i = lua_tointeger(L, -1);
                lua_pop(L, 1);
                lua_rawseti(L, 9, i);
            } else {
                lua_pop(L, 1);
                lua_pushvalue(L, -2);
                lua_insert(L, -2);
                lua_rawset(L, 9);
            }
        }
        lua_pushvalue(L, 7);
        lua_setmetatable(L, 9);
        lua_rawseti(L, 1, r);
        lua_pop(L, 1);
    }
    lua_settop(L, 7);
    return 1;
}

int luaopen_tide_process(lua_State *L) {
    static const luaL_Reg methods[] = {
        { "wait", l_proc_wait },     { "kill", l_proc_kill }, { "pid", l_proc_pid },
        { "exited", l_proc_exited }, { NULL, NULL },
    };
    static const luaL_Reg meta[] = { { "__gc", l_proc_gc }, { NULL, NULL } };
    static const luaL_Reg funcs[] = {
        { "process", l_process },
        { "on_signal", l_on_signal },
        { "getpid", l_getpid },
        { "cpu_count", l_cpu_count },
        { "release_memory", l_release_memory },
        { "new_table", l_new_table },
        { "object_index", l_object_index },
        { "pack_rows", l_pack_rows },
        { "slots_meta", l_slots_meta },
        { NULL, NULL },
    };
    tide_class_define(L, PROC_META, methods, meta);
    luaL_newlib(L, funcs);
    return 1;
}
