/*
 * lua_cdc_events.c — the events of a change stream that Lua answers with statements for the
 * open target transaction: a DDL message (tide.cdc.ddl) and rows moved into a followed filter
 * (tide.cdc.follow). Pushed by s:next(), answered by s:reply() (lua_cdc.c).
 */
#include "cdc/apply.h"
#include "cdc/lua_cdc_tables.h"
#include "runtime/bindings.h"

#include <lauxlib.h>
#include <lua.h>
#include <stdlib.h>

void cdc_push_lsn(lua_State *L, uint64_t lsn, const char *field) {
    char buf[32];
    apply_format_lsn(buf, sizeof buf, lsn);
    lua_pushstring(L, buf);
    lua_setfield(L, -2, field);
}

int cdc_push_ddl(lua_State *L, apply_state *ap) {
    const char *content;
    size_t len;
    uint64_t lsn, commit_lsn;
    int64_t ts;
    if (apply_held_ddl(ap, &content, &len, &lsn, &commit_lsn, &ts) < 0) return 0;
    lua_createtable(L, 0, 5);
    lua_pushliteral(L, "ddl");
    lua_setfield(L, -2, "kind");
    lua_pushlstring(L, content, len);
    lua_setfield(L, -2, "content");
    cdc_push_lsn(L, lsn, "lsn");
    cdc_push_lsn(L, commit_lsn, "commit_lsn");
    lua_pushnumber(L, (double) ts / 1e6);
    lua_setfield(L, -2, "commit_time");
    return 1;
}

/* The reply's map changes (remove at 5, targets at 4, built in tg) on one apply state. */
static void set_targets(lua_State *L, apply_state *ap, apply_target **tg, int ntg) {
    if (lua_type(L, 5) == LUA_TTABLE) {
        int n = (int) luaL_len(L, 5);
        for (int i = 1; i <= n; i++) {
            lua_geti(L, 5, i);
            lua_geti(L, -1, 1);
            lua_geti(L, -2, 2);
            if (lua_type(L, -1) == LUA_TSTRING && lua_type(L, -2) == LUA_TSTRING)
                apply_set_target(ap, NULL, lua_tostring(L, -2), lua_tostring(L, -1));
            lua_pop(L, 3);
        }
    }
    for (int i = 0; i < ntg; i++) {
        lua_geti(L, 4, i + 1);
        const char *os = NULL, *on = NULL;
        if (lua_getfield(L, -1, "replaces") == LUA_TTABLE) {
            lua_geti(L, -1, 1);
            lua_geti(L, -2, 2);
            os = lua_tostring(L, -2);
            on = lua_tostring(L, -1);
            apply_set_target(ap, tg[i], os, on);
            lua_pop(L, 2);
        } else {
            apply_set_target(ap, tg[i], NULL, NULL);
        }
        lua_pop(L, 2);
    }
}

/* The answer to a DDL message: { applied = bool, statements = { {sql=, context=}, ... },
 * targets = { entry, ... } (each may name `replaces = { schema, name }`), remove = { {schema,
 * name}, ... }, commit_after = bool (the group commits at the end of this source transaction) }. Everything
 * is read and checked before anything is queued. */
int cdc_reply_ddl(lua_State *L, apply_state *ap, apply_state *const *others, int nothers) {
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    bool applied = cdc_field_bool(L, 2, "applied");
    int nstmt = 0, ntg = 0;
    if (lua_getfield(L, 2, "statements") == LUA_TTABLE) {
        nstmt = (int) luaL_len(L, 3);
        for (int i = 1; i <= nstmt; i++) {
            lua_geti(L, 3, i);
            luaL_checktype(L, -1, LUA_TTABLE);
            if (lua_getfield(L, -1, "sql") != LUA_TSTRING)
                return luaL_error(L, "ddl reply: statements[%d].sql", i);
            lua_pop(L, 2);
        }
    }
    if (lua_getfield(L, 2, "targets") == LUA_TTABLE) ntg = (int) luaL_len(L, 4); /* 4 */
    lua_getfield(L, 2, "remove");                                                /* 5 */
    apply_target **tg = calloc((size_t) (ntg ? ntg : 1), sizeof *tg);
    if (!tg) abort();
    for (int i = 0; i < ntg; i++) {
        lua_geti(L, 4, i + 1);
        luaL_checktype(L, -1, LUA_TTABLE);
        tg[i] = cdc_target_from_lua(L, lua_gettop(L));
        lua_pop(L, 1);
    }
    for (int i = 1; i <= nstmt; i++) {
        lua_geti(L, 3, i);
        lua_getfield(L, -1, "sql");
        lua_getfield(L, -2, "context");
        apply_ddl_exec(ap, lua_tostring(L, -2), lua_tostring(L, -1));
        lua_pop(L, 3);
    }
    set_targets(L, ap, tg, ntg);
    /* Parallel apply: the other lanes take the same map changes, each its own copies (a DDL
     * message is a serial point: they have nothing in flight). */
    for (int k = 0; k < nothers; k++) {
        for (int i = 0; i < ntg; i++) {
            lua_geti(L, 4, i + 1);
            tg[i] = cdc_target_from_lua(L, lua_gettop(L));
            lua_pop(L, 1);
        }
        set_targets(L, others[k], tg, ntg);
    }
    free(tg);
    if (cdc_field_bool(L, 2, "commit_after")) apply_ddl_commit_after(ap);
    apply_ddl_done(ap, applied);
    return 0;
}

/* { kind = "follow", rows = { { schema =, name =, key = "[json array of text]" }, ... } }:
 * rows of tables others follow that moved into their filter in the open group. */
int cdc_push_follow(lua_State *L, apply_state *ap) {
    const char *schema, *name, *key;
    lua_createtable(L, 0, 2);
    lua_pushliteral(L, "follow");
    lua_setfield(L, -2, "kind");
    lua_newtable(L);
    for (int i = 0; apply_follow_row(ap, i, &schema, &name, &key) == 0; i++) {
        lua_createtable(L, 0, 3);
        lua_pushstring(L, schema);
        lua_setfield(L, -2, "schema");
        lua_pushstring(L, name);
        lua_setfield(L, -2, "name");
        lua_pushstring(L, key);
        lua_setfield(L, -2, "key");
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "rows");
    return 1;
}

/* The answer: { statements = { { sql =, params = { text, ... }, context = }, ... } }, queued in
 * the open group in order, then the group is checked again. A parameter that is not a string is
 * an error of the caller (checked before anything is queued). */
int cdc_reply_follow(lua_State *L, apply_state *ap) {
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    int n = lua_getfield(L, 2, "statements") == LUA_TTABLE ? (int) luaL_len(L, 3) : 0;
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 1; i <= n; i++) {
            lua_geti(L, 3, i); /* 4 */
            luaL_checktype(L, 4, LUA_TTABLE);
            lua_getfield(L, 4, "sql");     /* 5 */
            lua_getfield(L, 4, "context"); /* 6 */
            if (lua_type(L, 5) != LUA_TSTRING) return luaL_error(L, "follow reply: statements[%d].sql", i);
            int np = lua_getfield(L, 4, "params") == LUA_TTABLE ? (int) luaL_len(L, 7) : 0; /* 7 */
            const char **params = pass ? calloc((size_t) (np ? np : 1), sizeof *params) : NULL;
            if (pass && !params) abort();
            for (int j = 1; j <= np; j++) {
                int ty = lua_geti(L, 7, j);
                if (ty != LUA_TSTRING && ty != LUA_TNIL) {
                    free(params);
                    return luaL_error(L, "follow reply: statements[%d].params[%d] must be a string", i, j);
                }
                if (pass) params[j - 1] = lua_tostring(L, -1); /* anchored in the params table */
                lua_pop(L, 1);
            }
            if (pass) {
                apply_follow_exec(ap, lua_tostring(L, 5), np, params, lua_tostring(L, 6));
                free(params);
            }
            lua_settop(L, 3);
        }
    }
    apply_follow_done(ap);
    return 0;
}

/* ---------------------------------------------------------------- hooked changes */

static void push_value(lua_State *L, const pgoutput_value *v) {
    if (v->kind == PGOUTPUT_VALUE_NULL)
        tide_push_null(L);
    else
        lua_pushlstring(L, (const char *) v->data, v->len);
}

static void push_tuple(lua_State *L, const relcache_relation *rel, const pgoutput_tuple *t,
                       bool note_unchanged) {
    lua_createtable(L, 0, rel->ncols);
    int unchanged = 0;
    for (int i = 0; i < rel->ncols && i < t->ncols; i++) {
        if (t->values[i].kind == PGOUTPUT_VALUE_UNCHANGED_TOAST) {
            unchanged++;
            continue;
        }
        push_value(L, &t->values[i]);
        lua_setfield(L, -2, rel->columns[i].name);
    }
    if (note_unchanged && unchanged) {
        lua_createtable(L, 0, unchanged);
        for (int i = 0; i < rel->ncols && i < t->ncols; i++) {
            if (t->values[i].kind != PGOUTPUT_VALUE_UNCHANGED_TOAST) continue;
            lua_pushboolean(L, 1);
            lua_setfield(L, -2, rel->columns[i].name);
        }
        lua_setfield(L, -3, "unchanged"); /* on the change table below the tuple */
    }
}

int cdc_push_change(lua_State *L, apply_state *ap) {
    pgoutput_message *m;
    const relcache_relation *rel;
    apply_rel *r;
    uint64_t lsn, commit_lsn;
    int64_t ts;
    if (apply_held_decode(ap, &m, &rel, &r, &lsn, &commit_lsn, &ts) < 0) return 0;
    lua_createtable(L, 0, 12);
    lua_pushliteral(L, "change");
    lua_setfield(L, -2, "kind");
    lua_pushstring(L, m->type == PGOUTPUT_INSERT   ? "insert"
                      : m->type == PGOUTPUT_UPDATE ? "update"
                                                   : "delete");
    lua_setfield(L, -2, "op");
    lua_pushstring(L, rel->schema);
    lua_setfield(L, -2, "schema");
    lua_pushstring(L, rel->name);
    lua_setfield(L, -2, "table");
    lua_pushfstring(L, "%s.%s", rel->schema, rel->name);
    lua_setfield(L, -2, "source");
    lua_pushstring(L, r->target->display);
    lua_setfield(L, -2, "target");
    cdc_push_lsn(L, lsn, "lsn");
    cdc_push_lsn(L, commit_lsn, "commit_lsn");
    lua_pushnumber(L, (double) ts / 1e6);
    lua_setfield(L, -2, "commit_time");
    const pgoutput_tuple *old = NULL, *row = NULL;
    if (m->type == PGOUTPUT_INSERT)
        row = &m->insert.new_tuple;
    else if (m->type == PGOUTPUT_UPDATE) {
        row = &m->update.new_tuple;
        old = &m->update.old_tuple;
    } else
        old = &m->delete.old_tuple;
    if (row) {
        push_tuple(L, rel, row, true);
        lua_setfield(L, -2, "new");
    }
    if (old && old->ncols) {
        push_tuple(L, rel, old, false);
        lua_setfield(L, -2, "old");
    }
    return 1;
}
