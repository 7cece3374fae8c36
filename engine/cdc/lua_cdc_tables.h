/*
 * lua_cdc_tables.h — reading the stream's options and table map from Lua (lua_cdc_tables.c).
 */
#ifndef TIDE_LUA_CDC_TABLES_H
#define TIDE_LUA_CDC_TABLES_H

#include "cdc/apply.h"
#include "cdc/lanes.h"

#include <lua.h>
#include <stdbool.h>

/* The boolean field `name` of the table at index t (false when absent). */
bool cdc_field_bool(lua_State *L, int t, const char *name);

/* One entry of the table map (the table at index t) as a new apply_target; raises a Lua error
 * naming the missing field. */
apply_target *cdc_target_from_lua(lua_State *L, int t);

/* The stream's options (the table at index o) but its table map; every map entry is checked
 * for its required fields. Raises on bad input, before allocating anything. */
void cdc_options_from_lua(lua_State *L, int o, apply_options *opt);
/* The table map (opts.tables) as new apply_targets in opt->targets (called once per lane). */
void cdc_targets_from_lua(lua_State *L, int o, apply_options *opt);

/* Parallel apply's lanes from opts.lanes (see lua_cdc_tables.c), lane 0 on dst with *opt. */
lanes *cdc_lanes_from_lua(lua_State *L, int o, uv_loop_t *loop, tide_conn *dst, const apply_options *opt,
                          int n, const lanes_callbacks *cb);

/* lua_cdc_events.c: the events Lua answers with statements (see there). */
void cdc_push_lsn(lua_State *L, uint64_t lsn, const char *field);
int cdc_push_ddl(lua_State *L, apply_state *ap);
/* others: further apply states (parallel apply's lanes) that take the same map changes. */
int cdc_reply_ddl(lua_State *L, apply_state *ap, apply_state *const *others, int nothers);
int cdc_push_follow(lua_State *L, apply_state *ap);
/* {kind="change", ...}: the held change of a hooked table. */
int cdc_push_change(lua_State *L, apply_state *ap);
int cdc_reply_follow(lua_State *L, apply_state *ap);
/* A tuple of relation `rel` from the Lua table at index tbl (column name → value; nil = left out,
 * as an unchanged out-of-line value); its memory and strings are anchored in the table at index
 * anchor. Raises on a value of another type. */
pgoutput_tuple *cdc_tuple_from_lua(lua_State *L, int tbl, int anchor, const relcache_relation *rel);

#endif
