/*
 * sched.c — the coroutine scheduler: every unit of work is a Lua thread, and this file owns
 * every lua_resume of them (sched_resume), in the manner of HAProxy's hlua_ctx_resume.
 *
 * A coroutine is in one of these states:
 *   READY    in the ready queue, resumed on the next loop turn (new, woken by a waiter, yielded)
 *   RUNNING  inside lua_resume right now
 *   BLOCKED  yielded inside an engine call; whatever it waits for will call sched_wake
 *   DONE / FAILED  finished; results or error kept for whoever waits on the handle
 *
 * The Lua side sees a handle (userdata "tide.coroutine") with wait/done/result methods.
 * While a coroutine has not finished, the registry holds its handle and thread, so work in
 * flight is never collected; afterwards the handle lives as long as Lua references it.
 * A failure that nobody took (by wait or result) is reported when the handle is collected,
 * the way asyncio reports "exception was never retrieved".
 */
#include "runtime/bindings.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CO_META "tide.coroutine"

enum co_state { CO_READY, CO_RUNNING, CO_BLOCKED, CO_DONE, CO_FAILED };

struct tide_co {
    tide_thread_tag tag;      /* first: the thread's extra space points here */
    lua_State *T;             /* the coroutine's thread (NULL once finished) */
    int thread_ref, self_ref; /* registry anchors while unfinished */
    enum co_state state;
    int nargs;         /* values on T's stack for the next resume */
    int results_ref;   /* DONE: table of results, FAILED: the error value */
    int traceback_ref; /* FAILED: "message\nstack traceback:..." */
    bool taken;        /* someone received the outcome */
    bool queued;
    const char *blocked_on;
    tide_co **waiters;
    int nwaiters, capwaiters;
};

double tide_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

double tide_monotonic(void) { return (double) uv_hrtime() / 1e9; }

/* ---------------------------------------------------------------- the ready queue */

static void ready_run(uv_idle_t *idle);

void sched_ready(tide_co *co) {
    tide_runtime *rt = co->tag.rt;
    co->state = CO_READY;
    if (co->queued) return;
    if (rt->nready == rt->cap_ready) {
        int cap = rt->cap_ready ? rt->cap_ready * 2 : 32;
        tide_co **grown = realloc(rt->ready, (size_t) cap * sizeof *grown);
        if (!grown) abort();
        rt->ready = grown;
        rt->cap_ready = cap;
    }
    rt->ready[rt->nready++] = co;
    co->queued = true;
    if (rt->nready == 1) uv_idle_start(&rt->ready_idle, ready_run);
}

static void sched_resume(tide_co *co);

static void ready_run(uv_idle_t *idle) {
    tide_runtime *rt = idle->data;
    /* Take the current batch; coroutines readied while it runs wait for the next turn,
     * so a coroutine that keeps yielding cannot starve the loop's I/O. */
    int n = rt->nready;
    tide_co **batch = malloc((size_t) (n ? n : 1) * sizeof *batch);
    if (!batch) abort();
    memcpy(batch, rt->ready, (size_t) n * sizeof *batch);
    memmove(rt->ready, rt->ready + n, (size_t) (rt->nready - n) * sizeof *batch);
    rt->nready -= n;
    for (int i = 0; i < n; i++) batch[i]->queued = false;
    for (int i = 0; i < n; i++)
        if (batch[i]->state == CO_READY) sched_resume(batch[i]);
    free(batch);
    if (rt->nready == 0) uv_idle_stop(&rt->ready_idle);
}

void sched_init(tide_runtime *rt) {
    uv_idle_init(rt->loop, &rt->ready_idle);
    rt->ready_idle.data = rt;
}

void sched_close(tide_runtime *rt) {
    if (!uv_is_closing((uv_handle_t *) &rt->ready_idle)) uv_close((uv_handle_t *) &rt->ready_idle, NULL);
    free(rt->ready);
    rt->ready = NULL;
    rt->nready = rt->cap_ready = 0;
}

/* ---------------------------------------------------------------- resume and finish */

static void co_finish(tide_co *co, int status, int nres) {
    lua_State *T = co->T;
    tide_runtime *rt = co->tag.rt;
    if (status == LUA_OK) {
        lua_createtable(T, nres, 1);
        lua_insert(T, -(nres + 1));
        for (int i = nres; i >= 1; i--) lua_rawseti(T, -(i + 1), i);
        lua_pushinteger(T, nres);
        lua_setfield(T, -2, "n");
        co->results_ref = luaL_ref(T, LUA_REGISTRYINDEX);
        co->state = CO_DONE;
    } else {
        const char *msg = NULL;
        bool rendered = false;
        if (lua_type(T, -1) == LUA_TSTRING)
            msg = lua_tostring(T, -1);
        else if (luaL_callmeta(T, -1, "__tostring")) {
            rendered = true;
            msg = lua_tostring(T, -1);
        }
        luaL_traceback(T, T, msg ? msg : "(error object is not a string)", 0);
        co->traceback_ref = luaL_ref(T, LUA_REGISTRYINDEX);
        if (rendered) lua_pop(T, 1);
        co->results_ref = luaL_ref(T, LUA_REGISTRYINDEX);
        co->state = CO_FAILED;
    }
    /* Close pending to-be-closed variables (a `local conn <close>` in a failed coroutine)
     * and detach the thread from this record before anyone can collect the record. */
    lua_resetthread(T);
    *(tide_thread_tag **) lua_getextraspace(T) = &rt->main_tag;
    luaL_unref(T, LUA_REGISTRYINDEX, co->thread_ref);
    co->thread_ref = LUA_NOREF;
    co->T = NULL;
    for (int i = 0; i < co->nwaiters; i++) sched_ready(co->waiters[i]);
    if (co->nwaiters) co->taken = true;
    free(co->waiters);
    co->waiters = NULL;
    co->nwaiters = co->capwaiters = 0;
    if (co == rt->main_co) uv_stop(rt->loop);
    lua_State *L = rt->L;
    luaL_unref(L, LUA_REGISTRYINDEX, co->self_ref); /* may make the handle collectable */
    co->self_ref = LUA_NOREF;
}

static void sched_resume(tide_co *co) {
    lua_State *T = co->T;
    int nres = 0, nargs = co->nargs;
    co->nargs = 0;
    co->state = CO_RUNNING;
    co->blocked_on = NULL;
    int status = lua_resume(T, NULL, nargs, &nres);
    if (status == LUA_YIELD) {
        lua_pop(T, nres);
        /* A yield that did not come from an engine call (tide.yield, a bare
         * coroutine.yield) just lets others run. */
        if (co->state == CO_RUNNING) sched_ready(co);
        return;
    }
    co_finish(co, status, nres);
}

void sched_block(tide_co *co, const char *what) {
    co->state = CO_BLOCKED;
    co->blocked_on = what;
}

void sched_wake(tide_co *co) {
    if (co->state == CO_BLOCKED) sched_resume(co);
}

bool sched_finished(const tide_co *co, bool *ok) {
    if (ok) *ok = co->state == CO_DONE;
    return co->state == CO_DONE || co->state == CO_FAILED;
}

const char *sched_blocked_on(const tide_co *co) { return co->blocked_on; }

tide_co *sched_current(lua_State *L) {
    tide_co *co = tide_tag(L)->co;
    if (!co || co->T != L)
        luaL_error(L, "this engine call waits, so it must run in an engine coroutine "
                      "(tide.spawn, the playbook or a REPL chunk), not in a plain Lua coroutine");
    return co;
}

/* ---------------------------------------------------------------- spawn and handles */

tide_co *sched_spawn(lua_State *L, int nargs) {
    tide_runtime *rt = tide_rt(L);
    luaL_checktype(L, -(nargs + 1), LUA_TFUNCTION);
    tide_co *co = tide_udata_new(L, CO_META, sizeof *co, 0);
    co->tag.rt = rt;
    co->tag.co = co;
    co->results_ref = co->traceback_ref = co->thread_ref = co->self_ref = LUA_NOREF;
    lua_pushvalue(L, -1);
    co->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_State *T = lua_newthread(L);
    co->thread_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    co->T = T;
    *(tide_thread_tag **) lua_getextraspace(T) = &co->tag;
    /* stack: fn args... handle  → move fn and args into the thread */
    lua_rotate(L, -(nargs + 2), -(nargs + 1)); /* handle fn args... */
    lua_xmove(L, T, nargs + 1);
    co->nargs = nargs;
    sched_ready(co);
    return co;
}

static tide_co *check_co(lua_State *L, int idx) { return luaL_checkudata(L, idx, CO_META); }

static int co_push_outcome(lua_State *L, tide_co *co, bool raise) {
    co->taken = true;
    if (co->state == CO_DONE) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, co->results_ref);
        lua_getfield(L, -1, "n");
        int n = (int) lua_tointeger(L, -1);
        lua_pop(L, 1);
        luaL_checkstack(L, n + 1, "too many results");
        for (int i = 1; i <= n; i++) lua_rawgeti(L, -i, i);
        lua_remove(L, -(n + 1));
        return n;
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, co->results_ref);
    if (lua_type(L, -1) == LUA_TSTRING) {
        lua_pop(L, 1);
        lua_rawgeti(L, LUA_REGISTRYINDEX, co->traceback_ref);
    }
    if (raise) return lua_error(L);
    return 1;
}

static int co_wait_k(lua_State *L, int status, lua_KContext ctx) {
    (void) status;
    tide_co *co = (tide_co *) ctx;
    return co_push_outcome(L, co, true);
}

static int co_wait(lua_State *L) {
    tide_co *co = check_co(L, 1);
    if (sched_finished(co, NULL)) return co_push_outcome(L, co, true);
    tide_co *me = sched_current(L);
    if (me == co) return luaL_error(L, "a coroutine cannot wait for itself");
    if (co->nwaiters == co->capwaiters) {
        int cap = co->capwaiters ? co->capwaiters * 2 : 4;
        tide_co **grown = realloc(co->waiters, (size_t) cap * sizeof *grown);
        if (!grown) return luaL_error(L, "out of memory");
        co->waiters = grown;
        co->capwaiters = cap;
    }
    co->waiters[co->nwaiters++] = me;
    sched_block(me, "wait");
    /* The handle stays on this thread's stack, so it cannot be collected while we wait. */
    return lua_yieldk(L, 0, (lua_KContext) co, co_wait_k);
}

static int co_done(lua_State *L) {
    lua_pushboolean(L, sched_finished(check_co(L, 1), NULL));
    return 1;
}

/* handle:result() → nil while running; true, results... or false, err once finished. */
static int co_result(lua_State *L) {
    tide_co *co = check_co(L, 1);
    bool ok;
    if (!sched_finished(co, &ok)) {
        lua_pushnil(L);
        return 1;
    }
    lua_pushboolean(L, ok);
    return 1 + co_push_outcome(L, co, false);
}

static int co_status(lua_State *L) {
    static const char *const names[] = { "ready", "running", "blocked", "done", "failed" };
    tide_co *co = check_co(L, 1);
    lua_pushstring(L, names[co->state]);
    if (co->state == CO_BLOCKED && co->blocked_on) {
        lua_pushstring(L, co->blocked_on);
        return 2;
    }
    return 1;
}

static int co_tostring(lua_State *L) {
    tide_co *co = check_co(L, 1);
    static const char *const names[] = { "ready", "running", "blocked", "done", "failed" };
    lua_pushfstring(L, "coroutine (%s%s%s): %p", names[co->state], co->blocked_on ? " on " : "",
                    co->blocked_on ? co->blocked_on : "", (void *) co);
    return 1;
}

static int co_gc(lua_State *L) {
    tide_co *co = check_co(L, 1);
    if (co->state == CO_FAILED && !co->taken) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, co->traceback_ref);
        const char *trace = lua_tostring(L, -1);
        luaL_Buffer b;
        luaL_buffinit(L, &b);
        luaL_addstring(&b, "pgtide: a coroutine failed and nobody waited for it:\n");
        luaL_addstring(&b, trace ? trace : "?");
        luaL_pushresult(&b);
        tide_log(L, "error", "coroutine_failed", lua_tostring(L, -1) + strlen("pgtide: "),
                 lua_tostring(L, -1));
        lua_pop(L, 2);
        co->taken = true;
        co->tag.rt->unreported_errors++;
    }
    luaL_unref(L, LUA_REGISTRYINDEX, co->results_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, co->traceback_ref);
    co->results_ref = co->traceback_ref = LUA_NOREF;
    free(co->waiters);
    co->waiters = NULL;
    return 0;
}

/* ---------------------------------------------------------------- tide.* functions */

static int l_spawn(lua_State *L) {
    luaL_checktype(L, 1, LUA_TFUNCTION);
    sched_spawn(L, lua_gettop(L) - 1);
    return 1;
}

typedef struct sleep_req {
    uv_timer_t timer;
    tide_co *co;
} sleep_req;

static void sleep_closed(uv_handle_t *h) { free(h->data); }

static void sleep_fired(uv_timer_t *t) {
    sleep_req *req = t->data;
    tide_co *co = req->co;
    uv_close((uv_handle_t *) &req->timer, sleep_closed);
    sched_wake(co);
}

static int sleep_k(lua_State *L, int status, lua_KContext ctx) {
    (void) L;
    (void) status;
    (void) ctx;
    return 0;
}

static int l_sleep(lua_State *L) {
    double secs = luaL_checknumber(L, 1);
    luaL_argcheck(L, secs >= 0, 1, "must not be negative");
    tide_co *co = sched_current(L);
    sleep_req *req = malloc(sizeof *req);
    if (!req) return luaL_error(L, "out of memory");
    req->co = co;
    uv_timer_init(tide_rt(L)->loop, &req->timer);
    req->timer.data = req;
    uv_timer_start(&req->timer, sleep_fired, (uint64_t) (secs * 1000.0 + 0.5), 0);
    sched_block(co, "sleep");
    return lua_yieldk(L, 0, 0, sleep_k);
}

static int l_yield(lua_State *L) {
    tide_co *co = sched_current(L);
    sched_ready(co);
    return lua_yieldk(L, 0, 0, sleep_k);
}

static int l_now(lua_State *L) {
    lua_pushnumber(L, tide_now());
    return 1;
}
static int l_monotonic(lua_State *L) {
    lua_pushnumber(L, tide_monotonic());
    return 1;
}

static int l_running(lua_State *L) {
    tide_co *co = tide_tag(L)->co;
    if (!co || co->T != L || co->self_ref == LUA_NOREF) {
        lua_pushnil(L);
        return 1;
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, co->self_ref);
    return 1;
}

/* ---------------------------------------------------------------- conditions
 *
 * cond = tide.condition(); cond:wait([timeout]) blocks the calling coroutine until
 * cond:notify() (→ true) or the timeout (→ false). notify wakes every waiter. Schedulers in
 * Lua (the full load's post-data steps waiting for their tables) are built on it. */

#define COND_META "tide.condition"

typedef struct cond_wait {
    uv_timer_t timer; /* first: the timer's data points at this record */
    tide_co *co;
    struct cond_wait *next;
    bool notified, has_timer;
} cond_wait;

typedef struct tide_cond {
    cond_wait *waiters;
} tide_cond;

static void cond_wait_closed(uv_handle_t *h) { free(h->data); }

static void cond_remove(tide_cond *c, cond_wait *w) {
    for (cond_wait **p = &c->waiters; *p; p = &(*p)->next)
        if (*p == w) {
            *p = w->next;
            return;
        }
}

static void cond_release(cond_wait *w) {
    if (w->has_timer)
        uv_close((uv_handle_t *) &w->timer, cond_wait_closed);
    else
        free(w);
}

static int cond_wait_k(lua_State *L, int status, lua_KContext ctx) {
    (void) status;
    cond_wait *w = (cond_wait *) ctx;
    lua_pushboolean(L, w->notified);
    cond_release(w);
    return 1;
}

static void cond_timeout(uv_timer_t *t) {
    cond_wait *w = t->data;
    tide_cond *c = *(tide_cond **) ((char *) w + sizeof *w);
    cond_remove(c, w);
    sched_ready(w->co);
}

static int l_cond_wait(lua_State *L) {
    tide_cond *c = luaL_checkudata(L, 1, COND_META);
    double timeout = luaL_optnumber(L, 2, -1);
    tide_co *co = sched_current(L);
    /* the record is followed by a pointer back to the condition, for the timeout */
    cond_wait *w = calloc(1, sizeof *w + sizeof(tide_cond *));
    if (!w) return luaL_error(L, "out of memory");
    *(tide_cond **) ((char *) w + sizeof *w) = c;
    w->co = co;
    w->next = c->waiters;
    c->waiters = w;
    if (timeout >= 0) {
        uv_timer_init(tide_rt(L)->loop, &w->timer);
        w->timer.data = w;
        w->has_timer = true;
        uv_timer_start(&w->timer, cond_timeout, (uint64_t) (timeout * 1000.0 + 0.5), 0);
    }
    sched_block(co, "condition");
    /* The condition stays on this thread's stack while we wait, so it is not collected. */
    return lua_yieldk(L, 0, (lua_KContext) w, cond_wait_k);
}

static int l_cond_notify(lua_State *L) {
    tide_cond *c = luaL_checkudata(L, 1, COND_META);
    cond_wait *w = c->waiters;
    c->waiters = NULL;
    while (w) {
        cond_wait *next = w->next;
        w->notified = true;
        if (w->has_timer) uv_timer_stop(&w->timer);
        sched_ready(w->co);
        w = next;
    }
    return 0;
}

static int l_condition(lua_State *L) {
    tide_udata_new(L, COND_META, sizeof(tide_cond), 0);
    return 1;
}

int luaopen_tide_sched(lua_State *L) {
    static const luaL_Reg co_methods[] = {
        { "wait", co_wait },     { "done", co_done }, { "result", co_result },
        { "status", co_status }, { NULL, NULL },
    };
    static const luaL_Reg co_meta[] = {
        { "__gc", co_gc },
        { "__tostring", co_tostring },
        { NULL, NULL },
    };
    static const luaL_Reg funcs[] = {
        { "spawn", l_spawn },         { "sleep", l_sleep },
        { "yield", l_yield },         { "now", l_now },
        { "monotonic", l_monotonic }, { "running", l_running },
        { "condition", l_condition }, { NULL, NULL },
    };
    static const luaL_Reg cond_methods[] = {
        { "wait", l_cond_wait },
        { "notify", l_cond_notify },
        { NULL, NULL },
    };
    tide_class_define(L, COND_META, cond_methods, NULL);
    tide_class_define(L, CO_META, co_methods, co_meta);
    luaL_newlib(L, funcs);
    return 1;
}
