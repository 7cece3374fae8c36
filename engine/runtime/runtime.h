/*
 * runtime.h — the pieces every engine area shares: the runtime (one libuv loop, one Lua
 * state), the coroutine record the scheduler keeps for each unit of work, and the small
 * helpers C code uses to park a coroutine on non-blocking work and wake it when done.
 *
 * The model (docs/engine.md, "The runtime"): an engine call that waits starts its work, records the
 * calling coroutine as the work's waiter (sched_block), and yields with a continuation;
 * the loop callback that sees the work finish calls sched_wake, which resumes the
 * coroutine, whose continuation pushes the results.
 *
 * Every thread of the Lua state carries, in its extra space, a pointer to a thread tag:
 * the runtime it belongs to and, for engine coroutines, their record. Threads created by
 * plain coroutine.create copy the main thread's tag, so engine calls made from them are
 * refused with a clear message instead of yielding to the wrong resumer.
 */
#ifndef TIDE_RUNTIME_H
#define TIDE_RUNTIME_H

#include <stdbool.h>
#include <stdint.h>
#include <lua.h>
#include <lauxlib.h>
#include <uv.h>

#define TIDE_VERSION "0.1.0"

typedef struct tide_co tide_co;
typedef struct tide_runtime tide_runtime;

typedef struct tide_thread_tag {
    tide_runtime *rt;
    tide_co *co; /* NULL on the main thread and on plain Lua coroutines */
} tide_thread_tag;

struct tide_runtime {
    tide_thread_tag main_tag;
    uv_loop_t *loop;
    lua_State *L;         /* the main state; coroutines are threads of it */
    uv_idle_t ready_idle; /* runs the ready queue while it is non-empty */
    tide_co **ready;      /* coroutines to resume on the next loop turn */
    int nready, cap_ready;
    tide_co *main_co;      /* the CLI's coroutine; the loop stops when it ends */
    int unreported_errors; /* coroutines that failed and whose error nobody took */
};

static inline tide_thread_tag *tide_tag(lua_State *L) { return *(tide_thread_tag **) lua_getextraspace(L); }
static inline tide_runtime *tide_rt(lua_State *L) { return tide_tag(L)->rt; }

/* ---- scheduler (sched.c) ---- */
void sched_init(tide_runtime *rt);
void sched_close(tide_runtime *rt);
tide_co *sched_current(lua_State *L);            /* raises when L is not an engine coroutine */
void sched_block(tide_co *co, const char *what); /* co is about to yield for engine work */
void sched_wake(tide_co *co);                    /* resume a blocked coroutine now */
void sched_ready(tide_co *co);                   /* resume it on the next loop turn */
/* Start fn(args...) (function at -(nargs+1), args above it on L) as a coroutine; pushes its
 * handle on L and returns the record. */
tide_co *sched_spawn(lua_State *L, int nargs);
bool sched_finished(const tide_co *co, bool *ok);
const char *sched_blocked_on(const tide_co *co);

double tide_now(void);
double tide_monotonic(void);

#endif
