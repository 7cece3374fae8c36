/*
 * modules.h — the Lua modules compiled into the binary (generated lua_modules.c) and their
 * registration in package.preload.
 */
#ifndef TIDE_MODULES_H
#define TIDE_MODULES_H

#include <stddef.h>
#include <lua.h>

typedef struct tide_embedded_module {
    const char *name;      /* "tide.plan" */
    const char *chunkname; /* "@tide/plan.lua" */
    const unsigned char *source;
    size_t length;
} tide_embedded_module;

extern const tide_embedded_module tide_embedded_modules[];

/* Register the embedded modules (or, when lua_dir is set, load them from that directory
 * instead) and the C modules: tide.core and lpeg. */
void modules_register(lua_State *L, const char *lua_dir);

#endif
