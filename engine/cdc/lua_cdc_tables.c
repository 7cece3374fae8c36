/*
 * lua_cdc_tables.c — the stream's table map, from the Lua table tide.cdc builds (one entry per
 * published relation: source and target names, columns, key, known columns, flags,
 * tolerate_lsn, routes) to the apply_target structures apply.c works with; and a change's row
 * as Lua answers it (s:reply) back to a tuple.
 */
#include "cdc/lua_cdc_tables.h"

#include "runtime/bindings.h"
#include "pg/conn.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

static char *field_string(lua_State *L, int t, const char *name, bool required) {
    char *out = NULL;
    if (lua_getfield(L, t, name) == LUA_TSTRING)
        out = strdup(lua_tostring(L, -1));
    else if (required)
        luaL_error(L, "cdc_stream: table entry needs %s (a string)", name);
    lua_pop(L, 1);
    return out;
}

bool cdc_field_bool(lua_State *L, int t, const char *name) {
    lua_getfield(L, t, name);
    bool v = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

/* name as a double-quoted identifier ("a""b" for a"b): what PQescapeIdentifier makes of a
 * name in a valid encoding, and the names here come from the source's catalog */
static char *quoted_ident(const char *name) {
    size_t len = strlen(name);
    char *out = malloc(2 * len + 3);
    if (!out) abort();
    char *p = out;
    *p++ = '"';
    for (const char *s = name; *s; s++) {
        if (*s == '"') *p++ = '"';
        *p++ = *s;
    }
    *p++ = '"';
    *p = 0;
    return out;
}

static char **field_names(lua_State *L, int t, const char *name, int *count) {
    *count = 0;
    if (lua_getfield(L, t, name) != LUA_TTABLE) {
        lua_pop(L, 1);
        return NULL;
    }
    int n = (int) luaL_len(L, -1);
    char **out = calloc((size_t) (n ? n : 1), sizeof *out);
    if (!out) abort();
    for (int i = 0; i < n; i++) {
        lua_geti(L, -1, i + 1);
        out[i] = strdup(luaL_checkstring(L, -1));
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    *count = n;
    return out;
}

apply_target *cdc_target_from_lua(lua_State *L, int t) {
    apply_target *tg = calloc(1, sizeof *tg);
    if (!tg) abort();
    tg->source_schema = field_string(L, t, "source_schema", true);
    tg->source_name = field_string(L, t, "source_name", true);
    tg->target_sql = field_string(L, t, "target_sql", true);
    tg->display = field_string(L, t, "display", true);
    tg->partitioned = cdc_field_bool(L, t, "partitioned");
    tg->heartbeat = cdc_field_bool(L, t, "heartbeat");
    tg->ignored = cdc_field_bool(L, t, "ignored");
    tg->hooked = cdc_field_bool(L, t, "hooked");
    tg->mergeable = cdc_field_bool(L, t, "mergeable");
    tg->batchable = cdc_field_bool(L, t, "batchable");
    tg->unique_free = cdc_field_bool(L, t, "unique_free");
    lua_getfield(L, t, "lane_mode");
    tg->lane_mode = (uint8_t) luaL_optinteger(L, -1, 2);
    lua_pop(L, 1);
    lua_getfield(L, t, "lane_group");
    tg->lane_group = (uint32_t) luaL_optinteger(L, -1, 0);
    lua_pop(L, 1);
    if (lua_getfield(L, t, "tolerate_lsn") == LUA_TSTRING &&
        apply_parse_lsn(lua_tostring(L, -1), &tg->tolerate_lsn) < 0)
        luaL_error(L, "cdc_stream: tolerate_lsn of %s must look like 0/1A2B3C",
                   tg->display ? tg->display : "?");
    lua_pop(L, 1);
    tg->known = field_names(L, t, "known", &tg->nknown);
    tg->filter = field_string(L, t, "filter", false);
    if (tg->filter) {
        /* known_type[j]: the SQL type of known[j], by name ({ [column] = "type" }) */
        tg->known_type = calloc((size_t) (tg->nknown ? tg->nknown : 1), sizeof *tg->known_type);
        if (!tg->known_type) abort();
        if (lua_getfield(L, t, "known_type") == LUA_TTABLE)
            for (int j = 0; j < tg->nknown; j++)
                tg->known_type[j] = field_string(L, lua_gettop(L), tg->known[j], false);
        lua_pop(L, 1);
        tg->filter_columns = field_names(L, t, "filter_columns", &tg->nfilter_columns);
        tg->follow_cascade = field_string(L, t, "follow_cascade", false);
        /* each change is one statement of its own (apply_filter.c): never folded or batched */
        tg->mergeable = tg->batchable = false;
    }
    tg->key = field_names(L, t, "key", &tg->nkey);
    if (lua_getfield(L, t, "columns") == LUA_TTABLE) {
        int n = (int) luaL_len(L, -1);
        tg->columns = calloc((size_t) (n ? n : 1), sizeof *tg->columns);
        if (!tg->columns) abort();
        for (int i = 0; i < n; i++) {
            /* a column written under its own name, not GENERATED ALWAYS AS IDENTITY: its name
             * alone (tide.cdc.tables: the list is then shared with `known`) */
            if (lua_geti(L, -1, i + 1) == LUA_TSTRING) {
                tg->columns[i].source = strdup(lua_tostring(L, -1));
                tg->columns[i].target_sql = quoted_ident(lua_tostring(L, -1));
            } else {
                luaL_checktype(L, -1, LUA_TTABLE);
                tg->columns[i].source = field_string(L, lua_gettop(L), "source", true);
                tg->columns[i].target_sql = field_string(L, lua_gettop(L), "target_sql", true);
                tg->columns[i].identity_always = cdc_field_bool(L, lua_gettop(L), "identity_always");
            }
            if (!tg->columns[i].source) abort();
            tg->ncolumns++;
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
    /* routes = { entry, ... }: where on.row may route the table's rows (apply_route.c) */
    if (lua_getfield(L, t, "routes") == LUA_TTABLE) {
        int n = (int) luaL_len(L, -1);
        tg->routes = calloc((size_t) (n ? n : 1), sizeof *tg->routes);
        if (!tg->routes) abort();
        for (int i = 0; i < n; i++) {
            lua_geti(L, -1, i + 1);
            luaL_checktype(L, -1, LUA_TTABLE);
            tg->routes[tg->nroutes++] = cdc_target_from_lua(L, lua_gettop(L));
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
    return tg;
}

/* Build a tuple from a Lua table of column values (nil = left out / unchanged). */
pgoutput_tuple *cdc_tuple_from_lua(lua_State *L, int tbl, int anchor, const relcache_relation *rel) {
    pgoutput_tuple *t = lua_newuserdatauv(L, sizeof *t, 0);
    lua_rawseti(L, anchor, (lua_Integer) luaL_len(L, anchor) + 1);
    pgoutput_value *v = lua_newuserdatauv(L, sizeof *v * (size_t) (rel->ncols ? rel->ncols : 1), 0);
    lua_rawseti(L, anchor, (lua_Integer) luaL_len(L, anchor) + 1);
    t->ncols = rel->ncols;
    t->values = v;
    for (int i = 0; i < rel->ncols; i++) {
        memset(&v[i], 0, sizeof v[i]);
        int ty = lua_getfield(L, tbl, rel->columns[i].name);
        if (ty == LUA_TNIL) {
            v[i].kind = PGOUTPUT_VALUE_UNCHANGED_TOAST;
        } else if (ty == LUA_TUSERDATA && luaL_testudata(L, -1, TIDE_NULL_CLASS)) {
            v[i].kind = PGOUTPUT_VALUE_NULL;
        } else if (ty == LUA_TBOOLEAN) {
            v[i].kind = PGOUTPUT_VALUE_TEXT;
            v[i].data = (const uint8_t *) (lua_toboolean(L, -1) ? "t" : "f");
            v[i].len = 1;
        } else if (ty == LUA_TSTRING || ty == LUA_TNUMBER) {
            size_t len;
            tide_number_text(L, -1);
            const char *str = luaL_tolstring(L, -1, &len);
            lua_rawseti(L, anchor, (lua_Integer) luaL_len(L, anchor) + 1); /* keep it alive */
            v[i].kind = PGOUTPUT_VALUE_TEXT;
            v[i].data = (const uint8_t *) str;
            v[i].len = (uint32_t) len;
        } else {
            luaL_error(L, "change: column %s cannot take a %s (use a string, number, boolean or tide.null)",
                       rel->columns[i].name, luaL_typename(L, -1));
        }
        lua_pop(L, 1);
    }
    return t;
}

void cdc_options_from_lua(lua_State *L, int o, apply_options *opt) {
    static const char *const policies[] = { "error", "skip", "overwrite", NULL };
    lua_getfield(L, o, "conflict");
    opt->conflict = (apply_conflict_policy) luaL_checkoption(L, -1, "error", policies);
    lua_pop(L, 1);
    opt->conflict_hook = cdc_field_bool(L, o, "conflict_hook");
    lua_getfield(L, o, "batch_updates");
    opt->batch_updates = lua_isnil(L, -1) || lua_toboolean(L, -1);
    lua_pop(L, 1);
    lua_getfield(L, o, "group_changes");
    opt->group_changes = (int) luaL_optinteger(L, -1, 10000);
    lua_pop(L, 1);
    lua_getfield(L, o, "group_ms");
    opt->group_seconds = luaL_optnumber(L, -1, 100) / 1000.0;
    lua_pop(L, 1);
    lua_getfield(L, o, "group_live_ms");
    opt->group_live_seconds = luaL_optnumber(L, -1, 20) / 1000.0;
    lua_pop(L, 1);
    lua_getfield(L, o, "session_statements");
    lua_Integer statements = luaL_optinteger(L, -1, 0);
    opt->session_statements = statements < 0 ? 0 : statements > 1000000000 ? 1000000000 : (int) statements;
    lua_pop(L, 1);
    if (lua_getfield(L, o, "skip_origins") == LUA_TTABLE) {
        lua_Integer n = luaL_len(L, -1);
        if (n > APPLY_MAX_SKIP_ORIGINS) luaL_error(L, "cdc_stream: too many skip_origins");
        for (int i = 0; i < (int) n; i++) {
            lua_geti(L, -1, i + 1);
            size_t l;
            const char *name = luaL_checklstring(L, -1, &l);
            if (l >= sizeof opt->skip_origins[0])
                luaL_error(L, "cdc_stream: skip_origins[%d] is too long", i + 1);
            memcpy(opt->skip_origins[i], name, l + 1);
            opt->nskip_origins++;
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
    if (lua_getfield(L, o, "tables") != LUA_TTABLE) luaL_error(L, "cdc_stream: opts.tables must be a list");
    lua_Integer len = luaL_len(L, -1);
    if (len < 0 || len > 1000000) luaL_error(L, "cdc_stream: too many tables");
    int tables = lua_gettop(L);
    /* Validate every entry before anything is allocated that the error would leak. */
    for (int i = 0; i < (int) len; i++) {
        lua_geti(L, tables, i + 1);
        luaL_checktype(L, -1, LUA_TTABLE);
        static const char *const required[] = { "source_schema", "source_name", "target_sql", "display",
                                                NULL };
        for (int k = 0; required[k]; k++) {
            if (lua_getfield(L, -1, required[k]) != LUA_TSTRING)
                luaL_error(L, "cdc_stream: tables[%d].%s must be a string", i + 1, required[k]);
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

void cdc_targets_from_lua(lua_State *L, int o, apply_options *opt) {
    lua_getfield(L, o, "tables");
    int tables = lua_gettop(L);
    int nt = (int) luaL_len(L, tables);
    opt->targets = calloc(nt > 0 ? (size_t) nt : 1, sizeof *opt->targets);
    if (!opt->targets) abort();
    opt->ntargets = 0;
    for (int i = 0; i < nt; i++) {
        lua_geti(L, tables, i + 1);
        opt->targets[i] = cdc_target_from_lua(L, lua_gettop(L));
        opt->ntargets++;
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

/* Parallel apply: opts.lanes = { conns = { target connections of lanes 1.. }, watermark = "0/..",
 * applied = { first, last, ... } (pairs of commit positions applied above the watermark),
 * task =, progress_sql =, tx_limit = bytes }. */
lanes *cdc_lanes_from_lua(lua_State *L, int o, uv_loop_t *loop, tide_conn *dst, const apply_options *opt,
                          int n, const lanes_callbacks *cb) {
    lua_getfield(L, o, "lanes");
    int lt = lua_gettop(L);
    tide_conn *conns[LANES_MAX];
    apply_options opts[LANES_MAX];
    conns[0] = dst;
    opts[0] = *opt;
    /* Lane 0 too resolves a Relation message only when a change needs it: the lanes receive the
     * Relation messages of the transactions they skip (applied before a restart, listed above
     * the watermark), and such a message can describe a table as it was before a DDL message
     * that is applied already (the map says what the target has now). */
    opts[0].lazy_relations = true;
    lua_getfield(L, lt, "conns");
    for (int i = 1; i < n; i++) {
        lua_geti(L, -1, i);
        conns[i] = tide_check_conn(L, -1);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    lanes_options lo = { .n = n, .conns = conns, .opts = opts };
    if (lua_getfield(L, lt, "watermark") != LUA_TSTRING ||
        apply_parse_lsn(lua_tostring(L, -1), &lo.watermark) < 0)
        luaL_error(L, "cdc_stream: lanes.watermark must look like 0/1A2B3C");
    lua_pop(L, 1);
    uint64_t *applied = NULL;
    if (lua_getfield(L, lt, "applied") == LUA_TTABLE) {
        int k = (int) luaL_len(L, -1);
        applied = calloc((size_t) k + 1, sizeof *applied);
        if (!applied) abort();
        for (int i = 0; i < k; i++) {
            lua_geti(L, -1, i + 1);
            if (!lua_isstring(L, -1) || apply_parse_lsn(lua_tostring(L, -1), &applied[i]) < 0) {
                free(applied);
                luaL_error(L, "cdc_stream: lanes.applied[%d] must look like 0/1A2B3C", i + 1);
            }
            lua_pop(L, 1);
        }
        lo.applied = applied;
        lo.napplied = k / 2;
    }
    lua_pop(L, 1);
    lua_getfield(L, lt, "task");
    lua_getfield(L, lt, "progress_sql");
    lua_getfield(L, lt, "tx_limit");
    lo.task = luaL_checkstring(L, -3);
    lo.progress_sql = luaL_checkstring(L, -2);
    lo.tx_limit = (size_t) luaL_optinteger(L, -1, 0);
    for (int i = 1; i < n; i++) {
        opts[i] = *opt;
        opts[i].ddl_prefix = NULL; /* DDL messages are serial points: lane 0 only */
        opts[i].lazy_relations = true;
        cdc_targets_from_lua(L, o, &opts[i]);
    }
    lanes *l = lanes_create(loop, &lo, cb);
    free(applied);
    lua_settop(L, lt - 1);
    return l;
}
