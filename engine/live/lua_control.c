/*
 * lua_control.c — Lua binding of the control socket (engine/control.c). The meaning of the
 * frames is lua/tide/live*'s business; this file moves them.
 *
 *   tide.core.control_dir([create])  → path, exists | nil, message
 *   tide.core.control_list(dir)      → { "NAME.sock", ... }   the sockets in dir, unsorted
 *   tide.core.control_listen(path)   → server | nil, message, code ("EADDRINUSE", ...)
 *     server:accept([seconds])       (waits) → channel | nil, "timeout" | "closed"
 *     server:wake()                  ends a wait in accept now (as a timeout)
 *     server:close()                 stops listening, removes the socket file if still ours
 *     server:refused()               → connections from other users closed so far
 *     channel:receive()              (waits) → type, payload | nil, "closed" | message
 *     channel:send(type, payload)    → true | nil, message, code; waits only while more than
 *                                      1 MB is queued for a client that reads too slowly
 *     channel:close()
 *   tide.core.control_connect(path)  → client | nil, message, code     (blocking: the CLI)
 *     client:send(type, payload)     → true | nil, message, code
 *     client:receive([seconds [, interruptible]])
 *                                    → type, payload | nil, "timeout" | "interrupted" | "closed" | message
 *     client:close()
 *
 * Channels and servers are userdata holding a pointer, since their handles close
 * asynchronously (as in luv); __gc lets go, and the close callback frees.
 */
#include "live/control.h"
#include "runtime/bindings.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SERVER_META "tide.control_server"
#define CHANNEL_META "tide.control_channel"
#define CLIENT_META "tide.control_client"
#define DRAIN_HIGH_WATER (1u << 20)

/* nil, message, code — the code is libuv's name for the error ("ENOENT"), stable for scripts. */
static int push_failure(lua_State *L, const char *message, int code) {
    lua_pushnil(L);
    lua_pushstring(L, message);
    lua_pushstring(L, code < 0 ? uv_err_name(code) : "EIO");
    return 3;
}

/* ---------------------------------------------------------------- the run directory */

static int l_control_dir(lua_State *L) {
    char path[512], err[1024];
    int rc = control_run_dir(lua_toboolean(L, 1), path, sizeof path, err, sizeof err);
    if (rc < 0) {
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    lua_pushstring(L, path);
    lua_pushboolean(L, rc == 0);
    return 2;
}

static int l_control_list(lua_State *L) {
    const char *dir = luaL_checkstring(L, 1);
    lua_newtable(L);
    DIR *d = opendir(dir);
    if (!d) return 1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len <= 5 || strcmp(e->d_name + len - 5, ".sock") != 0) continue;
        char path[4096];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (lstat(path, &st) != 0 || !S_ISSOCK(st.st_mode)) continue;
        lua_pushstring(L, e->d_name);
        lua_rawseti(L, -2, ++n);
    }
    closedir(d);
    return 1;
}

/* ---------------------------------------------------------------- server */

static control_server *check_server(lua_State *L) {
    return tide_box_check(L, 1, SERVER_META, "control server is gone");
}

static int l_control_listen(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    void **b = tide_box_new(L, SERVER_META, 0);
    control_server *s = control_server_new(tide_rt(L));
    if (!s) return luaL_error(L, "out of memory");
    char err[1024];
    int rc = control_server_listen(s, path, err, sizeof err);
    if (rc != 0) {
        control_server_release(s);
        return push_failure(L, err, rc);
    }
    *b = s;
    return 1;
}

static int server_accept_k(lua_State *L, int status, lua_KContext ctx) {
    (void) status;
    (void) ctx;
    control_server *s = check_server(L);
    if (!s->closing) control_server_disarm(s);
    for (;;) {
        if (s->closing) {
            lua_pushnil(L);
            lua_pushliteral(L, "closed");
            return 2;
        }
        if (s->listen_status < 0) return push_failure(L, uv_strerror(s->listen_status), s->listen_status);
        if (s->pending == 0) {
            if (!s->timed_out) break;
            s->timed_out = false;
            lua_pushnil(L);
            lua_pushliteral(L, "timeout");
            return 2;
        }
        void **cb = tide_box_new(L, CHANNEL_META, 0);
        control_channel *ch = control_channel_new(tide_rt(L));
        if (!ch) return luaL_error(L, "out of memory");
        int rc = control_channel_accept(s, ch);
        if (rc == 0) {
            *cb = ch;
            return 1;
        }
        control_channel_release(ch);
        lua_pop(L, 1);
        if (rc != CONTROL_REFUSED) return push_failure(L, uv_strerror(rc), rc);
        /* Another user's connection was closed; keep waiting for ours. */
    }
    if (s->waiter) return luaL_error(L, "another coroutine already waits in accept");
    tide_co *co = sched_current(L);
    s->waiter = co;
    control_server_arm(s, (double) ctx / 1000.0);
    sched_block(co, "control accept");
    return lua_yieldk(L, 0, ctx, server_accept_k);
}

static int l_server_accept(lua_State *L) {
    control_server *s = check_server(L);
    double seconds = luaL_optnumber(L, 2, -1);
    lua_settop(L, 1);
    s->timed_out = false;
    /* The timeout travels in the continuation's context, in milliseconds (-1: none). */
    return server_accept_k(L, 0, (lua_KContext) (seconds < 0 ? -1000 : (lua_KContext) (seconds * 1000.0)));
}

static int l_server_wake(lua_State *L) {
    control_server_wake(check_server(L));
    return 0;
}

static int l_server_close(lua_State *L) {
    control_server_close(check_server(L));
    return 0;
}

static int l_server_refused(lua_State *L) {
    lua_pushinteger(L, check_server(L)->refused);
    return 1;
}

static int l_server_gc(lua_State *L) {
    void **b = tide_box_slot(L, 1, SERVER_META);
    if (*b) control_server_release(*b);
    *b = NULL;
    return 0;
}

/* ---------------------------------------------------------------- channels */

static control_channel *check_channel(lua_State *L) {
    return tide_box_check(L, 1, CHANNEL_META, "control channel is gone");
}

static int channel_receive_k(lua_State *L, int status, lua_KContext ctx) {
    (void) status;
    (void) ctx;
    control_channel *ch = check_channel(L);
    char type;
    size_t len;
    if (ch->closing) {
        lua_pushnil(L);
        lua_pushliteral(L, "closed");
        return 2;
    }
    if (control_channel_peek(ch, &type, &len)) {
        lua_pushlstring(L, &type, 1);
        lua_pushlstring(L, ch->in + CONTROL_HEADER_SIZE, len);
        control_channel_consume(ch, CONTROL_HEADER_SIZE + len);
        return 2;
    }
    if (ch->read_status != 0) {
        lua_pushnil(L);
        if (ch->read_status == UV_EOF || ch->read_status == UV_ECONNRESET)
            lua_pushliteral(L, "closed");
        else if (ch->read_status == UV_E2BIG)
            lua_pushliteral(L, "the client sent a frame over the size limit");
        else
            lua_pushstring(L, uv_strerror(ch->read_status));
        return 2;
    }
    if (ch->reader) return luaL_error(L, "another coroutine already reads this channel");
    tide_co *co = sched_current(L);
    ch->reader = co;
    sched_block(co, "control receive");
    return lua_yieldk(L, 0, 0, channel_receive_k);
}

static int l_channel_receive(lua_State *L) {
    check_channel(L);
    lua_settop(L, 1);
    return channel_receive_k(L, 0, 0);
}

static int channel_send_k(lua_State *L, int status, lua_KContext ctx) {
    (void) status;
    (void) ctx;
    control_channel *ch = check_channel(L);
    if (ch->write_status && ch->write_status != UV_ECANCELED)
        return push_failure(L, uv_strerror(ch->write_status), ch->write_status);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_channel_send(lua_State *L) {
    control_channel *ch = check_channel(L);
    size_t tlen, plen;
    const char *type = luaL_checklstring(L, 2, &tlen);
    luaL_argcheck(L, tlen == 1, 2, "a frame type is one character");
    const char *payload = luaL_optlstring(L, 3, "", &plen);
    int rc = control_channel_send(ch, type[0], payload, plen);
    if (rc != 0) return push_failure(L, uv_strerror(rc), rc);
    /* Back-pressure: a chunk printing faster than its client reads waits here, so the task's
     * memory stays bounded. Only an engine coroutine that may yield waits; a print from a
     * place that cannot yield just queues. */
    if (control_channel_queued(ch) > DRAIN_HIGH_WATER && tide_tag(L)->co && lua_isyieldable(L) &&
        !ch->drainer) {
        tide_co *co = sched_current(L);
        ch->drainer = co;
        sched_block(co, "control send");
        lua_settop(L, 1);
        return lua_yieldk(L, 0, 0, channel_send_k);
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int l_channel_close(lua_State *L) {
    control_channel *ch = *tide_box_slot(L, 1, CHANNEL_META);
    if (ch) control_channel_close(ch);
    return 0;
}

static int l_channel_gc(lua_State *L) {
    void **b = tide_box_slot(L, 1, CHANNEL_META);
    if (*b) control_channel_release(*b);
    *b = NULL;
    return 0;
}

/* ---------------------------------------------------------------- client */

static control_client *check_client(lua_State *L) {
    control_client *c = luaL_checkudata(L, 1, CLIENT_META);
    if (c->fd < 0) luaL_error(L, "control client is closed");
    return c;
}

static int l_control_connect(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    control_client *c = tide_udata_new(L, CLIENT_META, sizeof *c, 0);
    c->fd = -1;
    int fd = control_connect(path);
    if (fd < 0) {
        char msg[1024];
        snprintf(msg, sizeof msg, "cannot connect to %s: %s", path, strerror(-fd));
        return push_failure(L, msg, fd);
    }
    c->fd = fd;
    return 1;
}

static int l_client_send(lua_State *L) {
    control_client *c = check_client(L);
    size_t tlen, plen;
    const char *type = luaL_checklstring(L, 2, &tlen);
    luaL_argcheck(L, tlen == 1, 2, "a frame type is one character");
    const char *payload = luaL_optlstring(L, 3, "", &plen);
    int rc = control_client_send(c, type[0], payload, plen);
    if (rc < 0) return push_failure(L, rc == -EPIPE ? "closed" : strerror(-rc), rc);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_client_receive(lua_State *L) {
    control_client *c = check_client(L);
    double seconds = luaL_optnumber(L, 2, -1);
    bool interruptible = lua_toboolean(L, 3);
    char type;
    size_t len;
    int rc = control_client_receive(c, seconds, interruptible, &type, &len);
    if (rc == 1) {
        lua_pushlstring(L, &type, 1);
        lua_pushlstring(L, c->in + CONTROL_HEADER_SIZE, len);
        control_client_consume(c, CONTROL_HEADER_SIZE + len);
        return 2;
    }
    lua_pushnil(L);
    switch (rc) {
    case 0: lua_pushliteral(L, "timeout"); break;
    case -EINTR: lua_pushliteral(L, "interrupted"); break;
    case -EPIPE:
    case -ECONNRESET: lua_pushliteral(L, "closed"); break;
    case -E2BIG: lua_pushliteral(L, "the server sent a frame over the size limit"); break;
    default: lua_pushstring(L, strerror(-rc));
    }
    return 2;
}

static int l_client_close(lua_State *L) {
    control_client *c = luaL_checkudata(L, 1, CLIENT_META);
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    free(c->in);
    c->in = NULL;
    c->in_len = c->in_cap = 0;
    return 0;
}

/* ---------------------------------------------------------------- registration */

int luaopen_tide_control(lua_State *L) {
    static const luaL_Reg server_methods[] = {
        { "accept", l_server_accept },
        { "wake", l_server_wake },
        { "close", l_server_close },
        { "refused", l_server_refused },
        { NULL, NULL },
    };
    static const luaL_Reg channel_methods[] = {
        { "receive", l_channel_receive },
        { "send", l_channel_send },
        { "close", l_channel_close },
        { NULL, NULL },
    };
    static const luaL_Reg client_methods[] = {
        { "receive", l_client_receive },
        { "send", l_client_send },
        { "close", l_client_close },
        { NULL, NULL },
    };
    static const luaL_Reg server_meta[] = { { "__gc", l_server_gc }, { NULL, NULL } };
    static const luaL_Reg channel_meta[] = { { "__gc", l_channel_gc }, { NULL, NULL } };
    static const luaL_Reg client_meta[] = { { "__gc", l_client_close }, { NULL, NULL } };
    static const luaL_Reg funcs[] = {
        { "control_dir", l_control_dir },
        { "control_list", l_control_list },
        { "control_listen", l_control_listen },
        { "control_connect", l_control_connect },
        { NULL, NULL },
    };
    tide_class_define(L, SERVER_META, server_methods, server_meta);
    tide_class_define(L, CHANNEL_META, channel_methods, channel_meta);
    tide_class_define(L, CLIENT_META, client_methods, client_meta);
    luaL_newlib(L, funcs);
    return 1;
}
