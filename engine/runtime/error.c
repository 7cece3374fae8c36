/*
 * error.c — the error value every runtime failure returns: a table with sqlstate, message,
 * detail, hint, ... and a metatable ("tide.error") whose __tostring renders one line a
 * person can act on. Lua code builds the same kind of value with tide.error{...}.
 */
#include "runtime/bindings.h"

#include <string.h>

#define ERROR_META "tide.error"

void tide_error_set(lua_State *L, int idx, const char *field, const char *value) {
    if (!value) return;
    idx = lua_absindex(L, idx);
    size_t n = strlen(value);
    while (n > 0 && (value[n - 1] == '\n' || value[n - 1] == ' ')) n--; /* libpq adds "\n" */
    lua_pushlstring(L, value, n);
    lua_setfield(L, idx, field);
}

void tide_push_error(lua_State *L, const char *sqlstate, const char *message) {
    lua_createtable(L, 0, 6);
    tide_error_set(L, -1, "sqlstate", sqlstate);
    tide_error_set(L, -1, "message", message ? message : "unknown error");
    luaL_setmetatable(L, ERROR_META);
}

int tide_fail(lua_State *L) {
    lua_pushnil(L);
    lua_insert(L, -2);
    return 2;
}

/* Append prefix, the field's value and suffix when the field is a string. A luaL_Buffer allows
 * nothing but luaL_addvalue right after a push, so the field's type is looked at first. */
static void add_field(lua_State *L, luaL_Buffer *b, int t, const char *field, const char *prefix,
                      const char *suffix) {
    bool present = lua_getfield(L, t, field) == LUA_TSTRING;
    lua_pop(L, 1);
    if (!present) return;
    luaL_addstring(b, prefix);
    lua_getfield(L, t, field);
    luaL_addvalue(b);
    luaL_addstring(b, suffix);
}

/* "ERROR 42P01: relation "x" does not exist (DETAIL: ...) (HINT: ...)" */
static int error_tostring(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    bool has_severity = lua_getfield(L, 1, "severity") == LUA_TSTRING;
    bool has_message = lua_getfield(L, 1, "message") == LUA_TSTRING;
    lua_pop(L, 2);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    if (has_severity)
        add_field(L, &b, 1, "severity", "", "");
    else
        luaL_addstring(&b, "ERROR");
    add_field(L, &b, 1, "sqlstate", " ", "");
    luaL_addstring(&b, ": ");
    if (has_message)
        add_field(L, &b, 1, "message", "", "");
    else
        luaL_addstring(&b, "unknown error");
    add_field(L, &b, 1, "detail", " (DETAIL: ", ")");
    add_field(L, &b, 1, "hint", " (HINT: ", ")");
    luaL_pushresult(&b);
    return 1;
}

/* tide.error{ message = ..., sqlstate = ..., ... } → the same table, now an error value. */
static int l_error(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    luaL_setmetatable(L, ERROR_META);
    return 1;
}

/* tide.is_error(v) */
static int l_is_error(lua_State *L) {
    int same = 0;
    if (lua_getmetatable(L, 1)) {
        luaL_getmetatable(L, ERROR_META);
        same = lua_rawequal(L, -1, -2);
    }
    lua_pushboolean(L, same);
    return 1;
}

int luaopen_tide_error(lua_State *L) {
    static const luaL_Reg meta[] = { { "__tostring", error_tostring }, { NULL, NULL } };
    static const luaL_Reg funcs[] = { { "error", l_error }, { "is_error", l_is_error }, { NULL, NULL } };
    tide_class_define(L, ERROR_META, NULL, meta);
    luaL_newlib(L, funcs);
    return 1;
}
