/*
 * bindings.h — how the engine's C parts meet Lua: one header for every binding file.
 *
 * The convention:
 *   - Each area has one binding, named luaopen_tide_<area>, in a file next to what it binds
 *     (pg/lua_conn.c binds pg/conn.c). It registers the area's metatables and returns its
 *     module: a new table of functions (`connect`, `copy_pump`, ...).
 *   - lua_core.c builds `tide.core` from those modules: every function of every area in one
 *     table, which lua/tide/init.lua re-exports.
 *   - Userdata types are made with the helpers below: tide_class_define creates the metatable
 *     (methods as __index, and metamethods such as __gc, __close, __tostring); tide_udata_new
 *     makes a zeroed userdata of that class; a "box" is a userdata that holds only a pointer
 *     to a C object, for objects whose libuv handles close after Lua let go of them (as in
 *     luv): the object frees itself in its close callback, and __gc only lets go.
 *   - A failure of the work itself (a server error, a lost connection) comes back as
 *     `nil, err`, err an error table (tide_push_error, tide_fail; error.c renders it); the
 *     control socket's calls return `nil, message, code` instead. Misuse (a wrong argument,
 *     a closed handle, an engine call outside an engine coroutine) raises.
 *
 * The helpers are in bindings.c; the error values in error.c.
 */
#ifndef TIDE_BINDINGS_H
#define TIDE_BINDINGS_H

#include <stddef.h>
#include <lauxlib.h>
#include <lua.h>

#include "runtime/runtime.h"

/* ---------------------------------------------------------------- the modules */

int luaopen_tide_core(lua_State *L);    /* runtime/lua_core.c: all of the below in one table */
int luaopen_tide_sched(lua_State *L);   /* runtime/sched.c: spawn, sleep, yield, condition, ... */
int luaopen_tide_error(lua_State *L);   /* runtime/error.c: error, is_error */
int luaopen_tide_process(lua_State *L); /* runtime/lua_process.c: process, on_signal, getpid */
int luaopen_tide_conn(lua_State *L);    /* pg/lua_conn.c: connect, null, bytea, mask_conninfo */
int luaopen_tide_copy(lua_State *L);    /* pg/lua_copy.c: copy_pump */
int luaopen_tide_cdc(lua_State *L);     /* cdc/lua_cdc.c: cdc_stream */
int luaopen_tide_control(lua_State *L); /* live/lua_control.c: control_dir, control_listen, ... */
int luaopen_tide_guard(lua_State *L);   /* live/lua_guard.c: chunk_guard, chunk_guard_of */
int luaopen_tide_term(lua_State *L);    /* live/lua_term.c: readline, add_history, isatty, ... */
int luaopen_tide_log(lua_State *L);     /* runtime/log.c: set_logger */
int luaopen_tide_json(lua_State *L);    /* runtime/json.c: json_decoder */
int luaopen_tide_squeeze(lua_State *L); /* runtime/squeeze.c: deflate, inflate */
int luaopen_tide_http(lua_State *L);    /* live/lua_http.c: http_listen */
int luaopen_lpeg(lua_State *L);         /* the lpeg library, linked in */

/* ---------------------------------------------------------------- userdata */

/* Create the metatable `name` (its __name too): `methods` (may be NULL) become its __index
 * table, `metamethods` (may be NULL) its own fields. Leaves the stack as it was. */
void tide_class_define(lua_State *L, const char *name, const luaL_Reg *methods, const luaL_Reg *metamethods);
/* Push a new userdata of class `name`: `size` zeroed bytes and `nuvalue` user values. */
void *tide_udata_new(lua_State *L, const char *name, size_t size, int nuvalue);
/* Push a new box of class `name` (its pointer NULL); returns the pointer's slot. */
void **tide_box_new(lua_State *L, const char *name, int nuvalue);
/* The pointer slot of the box at idx; raises unless it is a box of class `name`. */
void **tide_box_slot(lua_State *L, int idx, const char *name);
/* The object in the box at idx; raises `gone` when the box was emptied (closed). */
void *tide_box_check(lua_State *L, int idx, const char *name, const char *gone);

/* ---------------------------------------------------------------- error values (error.c) */

/* Push an error table {sqlstate=, message=} with the tide.error metatable. */
void tide_push_error(lua_State *L, const char *sqlstate, const char *message);
/* Set field (string value, skipped when NULL) of the table at idx. */
void tide_error_set(lua_State *L, int idx, const char *field, const char *value);
/* `return tide_fail(L);` with an error table on top: returns nil, err. */
int tide_fail(lua_State *L);

/* ---------------------------------------------------------------- shared by bindings */

typedef struct tide_conn tide_conn;
struct pg_result; /* libpq's PGresult */

#define TIDE_NULL_CLASS "tide.null"

/* pg/lua_conn.c: the connection argument at idx, open and idle (raises otherwise). */
tide_conn *tide_check_conn(lua_State *L, int idx);
/* runtime/bindings.c: a float at idx replaced by its shortest round-trip text (on.row and
 * on.change values); anything else left as it is. */
void tide_number_text(lua_State *L, int idx);
/* pg/lua_conn.c: push tide.null. */
void tide_push_null(lua_State *L);
/* pg/lua_conn.c: push the error table for a server error result (sqlstate, message, detail,
 * hint, ... and the connection and query it came from, when given). */
void tide_push_result_error(lua_State *L, const struct pg_result *r, tide_conn *c, const char *query);

/* runtime/log.c: one log line through the Lua logger when set (level "error", "warning", ...;
 * event a short word; text the plain line, without its newline), else `text` on stderr. */
void tide_log(lua_State *L, const char *level, const char *event, const char *message, const char *text);

/* live/lua_term.c: free what the completer kept (at exit). */
void tide_term_close(void);

#endif
