/*
 * lua_cdc.c — Lua binding of the change stream: a replication connection feeding apply on a
 * target connection, entirely in C; Lua only sees events and figures.
 *
 *   local s = tide.core.cdc_stream(repl_conn, target_conn, {
 *       start_sql = "START_REPLICATION SLOT ...",   -- built and quoted by tide.cdc
 *       start_lsn = "0/1A2B3C",                      -- the origin's position: older is skipped
 *       conflict = "error" | "skip" | "overwrite", conflict_hook = bool,
 *       group_changes = 10000, group_ms = 100, group_live_ms = 20,
 *       spool_dir = "/tmp",                          -- streamed transactions (streaming 'on')
 *       skip_origins = { "pgtide_x" },               -- transactions replayed under these: not applied
 *       tables = { { source_schema=, source_name=, target_sql=, display=,
 *                    columns = { {source=, target_sql=}, ... }, known = { names },
 *                    key = { names }, partitioned=, heartbeat=, hooked= }, ... } })
 *       ddl_prefix = "pgtide_x_ddl",                -- DDL messages to hold for Lua (or nil)
 *       session_statements = 10000,                 -- new target connection after this many
 *                                                      prepared statements (0: never), per lane
 *   s:next([timeout])  → event: {kind="tick"} | {kind="change", ...} | {kind="conflict", ...}
 *                        | {kind="ddl", content=, lsn=, commit_lsn=} | {kind="failed", err=}
 *                        | {kind="reconnect", lane=} | {kind="stopped"}
 *   s:reply(v)         → answers a change (the table, possibly edited, or false to drop), a
 *                        conflict ("skip" or "error") or a DDL message ({ applied =, statements =
 *                        { {sql=, context=} }, targets = { entry (+ replaces = {schema, name}) },
 *                        remove = { {schema, name} } }) or a reconnect (a new target
 *                        connection and the lane, s:reply(conn, lane): its origin session set
 *                        up; the old one is released and its origin session must be reset before)
 *   s:stats()          → figures (positions, counts, conflicts)
 *   s:conflicts(since) → recent skipped/overwritten conflicts numbered after `since`, total
 *   s:pause() / s:resume() / s:stop() (waits: commits, reports the flush, ends the stream; returns
 *                        false, event when the transaction it finishes holds one for Lua)
 *   s:close()          → abandons the stream (after a failure); close the connections next
 *
 * The stream holds both connections (user values) while it lives; they are busy until it
 * stopped, failed or closed.
 */
#include "cdc/apply.h"
#include "cdc/lanes.h"
#include "cdc/lua_cdc_tables.h"
#include "cdc/repl_stream.h"
#include "cdc/spool.h"
#include "runtime/bindings.h"

#include <stdlib.h>
#include <string.h>

#define CDC_META "tide.cdc_stream"

typedef enum cdc_state {
    CDC_RUNNING,
    CDC_STOPPING,
    CDC_ENDING,
    CDC_STOPPED,
    CDC_FAILED,
    CDC_CLOSED
} cdc_state;

typedef struct cdc_stream {
    tide_runtime *rt;
    repl_stream *rs;
    apply_state *ap; /* the only one, or parallel apply's lane 0 (Lua's events come from it) */
    lanes *lanes;    /* parallel apply, or NULL */
    cdc_state state;
    tide_co *waiter;
    uv_timer_t *wait_timer;
    uv_idle_t *kick;
    uv_idle_t *replay_idle; /* continues handing a streamed transaction to apply */
    tide_spool *spool;      /* NULL when the stream was started with streaming off */
    bool replay_waiting;    /* apply was full in the middle of a streamed transaction */
    bool spool_failed;
    int open_handles;
    bool box_gone;
} cdc_stream;

static cdc_stream *check_stream(lua_State *L) {
    cdc_stream *s = tide_box_check(L, 1, CDC_META, "the change stream is closed");
    if (s->state == CDC_CLOSED) luaL_error(L, "the change stream is closed");
    return s;
}

/* ---------------------------------------------------------------- loop side */

static void wake(cdc_stream *s) {
    tide_co *w = s->waiter;
    if (!w) return;
    s->waiter = NULL;
    uv_timer_stop(s->wait_timer);
    sched_ready(w);
}

static void release_connections(cdc_stream *s) {
    if (s->rs) repl_stream_release(s->rs);
    if (s->lanes)
        lanes_release(s->lanes);
    else if (s->ap)
        apply_release(s->ap);
}

static const apply_error *stream_apply_error(const cdc_stream *s) {
    return s->lanes ? lanes_error(s->lanes) : apply_state_error(s->ap);
}

static apply_feed_result feed(cdc_stream *s, uint64_t lsn, const uint8_t *p, size_t n) {
    return s->lanes ? lanes_feed(s->lanes, lsn, p, n) : apply_feed(s->ap, lsn, p, n);
}

/* Move the stream on after anything happened; runs from the kick handle, never nested. */
static void advance(cdc_stream *s) {
    if (s->state == CDC_STOPPED || s->state == CDC_FAILED || s->state == CDC_CLOSED) return;
    if (s->spool_failed || stream_apply_error(s) || s->rs->state == REPL_FAILED) {
        s->state = CDC_FAILED;
        repl_stream_pause(s->rs);
        release_connections(s);
        return;
    }
    if (s->state == CDC_STOPPING && (s->lanes ? lanes_stopped(s->lanes) : apply_stopped(s->ap)) &&
        s->rs->state == REPL_STREAMING) {
        repl_stream_send_status(s->rs, true);
        s->state = CDC_ENDING;
        repl_stream_end(s->rs);
    }
    if (s->state == CDC_ENDING && s->rs->state == REPL_DONE) {
        release_connections(s);
        s->state = CDC_STOPPED;
    }
}

static void kick_run(uv_idle_t *h) {
    cdc_stream *s = h->data;
    uv_idle_stop(h);
    advance(s);
    wake(s);
}

static void kick(void *arg) {
    cdc_stream *s = arg;
    if (s->state != CDC_CLOSED) uv_idle_start(s->kick, kick_run);
}

static void spool_failure(cdc_stream *s) {
    s->spool_failed = true;
    kick(s);
}

/* Hand the streamed transaction that just committed to apply, as one ordinary transaction.
 * Returns 0 when all of it went, 1 when apply is full (on_unblock continues it; the stream
 * stays paused until then), -1 on failure. */
static int replay(cdc_stream *s) {
    for (;;) {
        uint64_t lsn;
        const uint8_t *p;
        size_t n;
        int r = spool_next(s->spool, &lsn, &p, &n);
        if (r == 0) return 0;
        if (r < 0) {
            spool_failure(s);
            return -1;
        }
        apply_feed_result fr = feed(s, lsn, p, n);
        if (fr == APPLY_FAILED) return -1;
        if (fr == APPLY_BLOCKED) {
            s->replay_waiting = true;
            return 1;
        }
    }
}

static void replay_continue(uv_idle_t *h) {
    cdc_stream *s = h->data;
    uv_idle_stop(h);
    if (!s->replay_waiting || s->state == CDC_FAILED || s->state == CDC_CLOSED) return;
    s->replay_waiting = false;
    if (replay(s) == 0) repl_stream_resume(s->rs);
}

static int on_data(void *arg, uint64_t start, uint64_t end, const uint8_t *payload, size_t len) {
    (void) end;
    cdc_stream *s = arg;
    if (s->spool) {
        const uint8_t *out;
        size_t outlen;
        switch (spool_feed(s->spool, start, payload, len, &out, &outlen)) {
        case SPOOL_PASS: return (int) feed(s, start, out, outlen);
        case SPOOL_TAKEN: return 0;
        case SPOOL_REPLAY: return replay(s);
        case SPOOL_FAILED: break;
        }
        spool_failure(s);
        return -1;
    }
    return (int) feed(s, start, payload, len);
}

static int on_burst_end(void *arg) {
    cdc_stream *s = arg;
    int64_t now = s->rs->last_send_time; /* the source's clock, 0 before its first message */
    return (int) (s->lanes ? lanes_burst_end(s->lanes, now) : apply_burst_end(s->ap, now));
}

static uint64_t flush_position(void *arg, uint64_t keepalive) {
    (void) keepalive;
    cdc_stream *s = arg;
    return s->lanes ? lanes_flush_position(s->lanes) : apply_flush_position(s->ap);
}

static void on_tick(void *arg) {
    cdc_stream *s = arg;
    if (s->lanes)
        lanes_tick(s->lanes, s->rs->keepalive_lsn);
    else
        apply_tick(s->ap, s->rs->keepalive_lsn);
}

static void on_unblock(void *arg) {
    cdc_stream *s = arg;
    /* Never feed apply from inside its own callback: continue on the next loop turn. */
    if (s->replay_waiting)
        uv_idle_start(s->replay_idle, replay_continue);
    else
        repl_stream_resume(s->rs);
}

static void wait_fired(uv_timer_t *t) { wake(t->data); }

/* ---------------------------------------------------------------- events */

#define push_lsn cdc_push_lsn

static void push_error(lua_State *L, cdc_stream *s) {
    if (s->spool_failed) {
        tide_push_error(L, spool_sqlstate(s->spool), spool_error(s->spool));
        tide_error_set(L, -1, "side", "engine");
        return;
    }
    const apply_error *e = stream_apply_error(s);
    if (e) {
        tide_push_error(L, e->sqlstate, e->message);
        tide_error_set(L, -1, "detail", e->detail);
        tide_error_set(L, -1, "hint", e->hint);
        tide_error_set(L, -1, "context", e->context);
        tide_error_set(L, -1, "side", e->side);
        if (e->is_conflict) {
            lua_createtable(L, 0, 8);
            lua_pushstring(L, e->conflict.kind);
            lua_setfield(L, -2, "kind");
            lua_pushstring(L, e->conflict.table);
            lua_setfield(L, -2, "table");
            lua_pushstring(L, e->conflict.source_table);
            lua_setfield(L, -2, "source");
            lua_pushstring(L, e->conflict.key);
            lua_setfield(L, -2, "key");
            push_lsn(L, e->conflict.lsn, "lsn");
            push_lsn(L, e->conflict.commit_lsn, "commit_lsn");
            lua_setfield(L, -2, "conflict");
        }
        return;
    }
    repl_stream *rs = s->rs;
    tide_push_error(L, rs->sqlstate[0] ? rs->sqlstate : "08006",
                    rs->error ? rs->error : "the replication stream failed");
    tide_error_set(L, -1, "detail", rs->detail);
    tide_error_set(L, -1, "hint", rs->hint);
    tide_error_set(L, -1, "side", "source");
    tide_error_set(L, -1, "context", "streaming changes from the source");
}

static void push_conflict(lua_State *L, const apply_conflict *c) {
    lua_createtable(L, 0, 8);
    lua_pushstring(L, c->kind);
    lua_setfield(L, -2, "conflict");
    lua_pushstring(L, c->table);
    lua_setfield(L, -2, "table");
    lua_pushstring(L, c->source_table);
    lua_setfield(L, -2, "source");
    lua_pushstring(L, c->key);
    lua_setfield(L, -2, "key");
    lua_pushstring(L, c->op == 'I' ? "insert" : c->op == 'U' ? "update" : "delete");
    lua_setfield(L, -2, "op");
    push_lsn(L, c->lsn, "lsn");
    push_lsn(L, c->commit_lsn, "commit_lsn");
}

/* The lane (0: the only apply) whose new connection Lua is to give, or -1. Lane 0's other
 * events come first (they are answered by the same s:reply). */
static int reconnect_lane(const cdc_stream *s) {
    int n = s->lanes ? lanes_count(s->lanes) : 1;
    for (int i = 0; i < n; i++)
        if (apply_pending_event(s->lanes ? lanes_lane(s->lanes, i) : s->ap) == APPLY_EVENT_RECONNECT)
            return i;
    return -1;
}

/* {kind="ddl", content=<the message's text>, lsn=, commit_lsn=, commit_time=} */
/* Push the event waiting for Lua, if any; returns 1 when one was pushed. */
static int push_event(lua_State *L, cdc_stream *s) {
    if (s->state == CDC_FAILED) {
        lua_createtable(L, 0, 2);
        lua_pushliteral(L, "failed");
        lua_setfield(L, -2, "kind");
        push_error(L, s);
        lua_setfield(L, -2, "err");
        return 1;
    }
    if (s->state == CDC_STOPPED) {
        lua_createtable(L, 0, 1);
        lua_pushliteral(L, "stopped");
        lua_setfield(L, -2, "kind");
        return 1;
    }
    switch (apply_pending_event(s->ap)) {
    case APPLY_EVENT_CHANGE: return cdc_push_change(L, s->ap);
    case APPLY_EVENT_DDL: return cdc_push_ddl(L, s->ap);
    case APPLY_EVENT_FOLLOW: return cdc_push_follow(L, s->ap);
    case APPLY_EVENT_CONFLICT:
        push_conflict(L, apply_conflict_pending(s->ap));
        lua_pushliteral(L, "conflict");
        lua_setfield(L, -2, "kind");
        return 1;
    default: break;
    }
    int lane = reconnect_lane(s);
    if (lane < 0) return 0;
    lua_createtable(L, 0, 2);
    lua_pushliteral(L, "reconnect");
    lua_setfield(L, -2, "kind");
    lua_pushinteger(L, lane);
    lua_setfield(L, -2, "lane");
    return 1;
}

/* The answer to {kind="reconnect", lane=}: s:reply(conn, lane), the lane's new connection, set
 * up under that lane's origin. Several lanes may wait at once, and Lua yields while it opens a
 * connection: the lane is named, never guessed. The stream holds the connection from now on
 * (lane 0's as user value 2, the others' in opts.lanes.conns); the old one is Lua's to close. */
static int reply_reconnect(lua_State *L, cdc_stream *s) {
    tide_conn *c = tide_check_conn(L, 2);
    int lane = (int) luaL_checkinteger(L, 3);
    int n = s->lanes ? lanes_count(s->lanes) : 1;
    if (lane < 0 || lane >= n ||
        apply_pending_event(s->lanes ? lanes_lane(s->lanes, lane) : s->ap) != APPLY_EVENT_RECONNECT)
        return luaL_argerror(L, 3, "a lane that waits for a new connection");
    if (c->replication || c->busy || !c->pg)
        return luaL_argerror(L, 2, "an open, idle, ordinary target connection");
    lua_settop(L, 2);
    if (lane == 0) {
        lua_pushvalue(L, 2);
        lua_setiuservalue(L, 1, 2);
    } else {
        lua_getiuservalue(L, 1, 3);
        lua_getfield(L, -1, "conns");
        lua_pushvalue(L, 2);
        lua_rawseti(L, -2, lane);
        lua_settop(L, 2);
    }
    if (apply_reconnect(s->lanes ? lanes_lane(s->lanes, lane) : s->ap, c) < 0) kick(s);
    return 0;
}

static int next_k(lua_State *L, int status, lua_KContext ctx) {
    (void) status;
    (void) ctx;
    cdc_stream *s = check_stream(L);
    if (push_event(L, s)) return 1;
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "tick");
    lua_setfield(L, -2, "kind");
    return 1;
}

static void block_on(lua_State *L, cdc_stream *s, double timeout, const char *what) {
    tide_co *co = sched_current(L);
    if (s->waiter) luaL_error(L, "another coroutine already waits on this change stream");
    s->waiter = co;
    if (timeout >= 0) uv_timer_start(s->wait_timer, wait_fired, (uint64_t) (timeout * 1000.0 + 0.5), 0);
    sched_block(co, what);
}

/* s:next([timeout]) */
static int l_next(lua_State *L) {
    cdc_stream *s = check_stream(L);
    double timeout = luaL_optnumber(L, 2, 1.0);
    luaL_argcheck(L, timeout >= 0, 2, "must not be negative");
    lua_settop(L, 1);
    if (push_event(L, s)) return 1;
    block_on(L, s, timeout, "cdc stream");
    return lua_yieldk(L, 0, 0, next_k);
}

/* s:reply(value) */
static int l_reply(lua_State *L) {
    cdc_stream *s = check_stream(L);
    if (s->state == CDC_FAILED) return 0;
    /* A connection answers a reconnect, whatever lane 0 holds meanwhile (a DDL message may reach
     * it while Lua opens lane k's connection). */
    if (luaL_testudata(L, 2, "tide.conn") && reconnect_lane(s) >= 0) return reply_reconnect(L, s);
    switch (apply_pending_event(s->ap)) {
    case APPLY_EVENT_CHANGE: {
        if (lua_isnoneornil(L, 2) || (lua_isboolean(L, 2) && !lua_toboolean(L, 2))) {
            apply_held_drop(s->ap);
            return 0;
        }
        luaL_checktype(L, 2, LUA_TTABLE);
        pgoutput_message *m;
        const relcache_relation *rel;
        apply_rel *r;
        uint64_t lsn, commit_lsn;
        int64_t ts;
        if (apply_held_decode(s->ap, &m, &rel, &r, &lsn, &commit_lsn, &ts) < 0)
            return luaL_error(L, "the held change cannot be read again");
        lua_settop(L, 2);
        lua_newtable(L); /* 3: anchors for strings and scratch */
        pgoutput_tuple *old = NULL, *row = NULL;
        bool had_old =
            (m->type == PGOUTPUT_UPDATE && m->update.old_tuple.ncols) || m->type == PGOUTPUT_DELETE;
        if (m->type != PGOUTPUT_DELETE && lua_getfield(L, 2, "new") == LUA_TTABLE)
            row = cdc_tuple_from_lua(L, 4, 3, rel);
        lua_settop(L, 3);
        if (had_old && lua_getfield(L, 2, "old") == LUA_TTABLE) old = cdc_tuple_from_lua(L, 4, 3, rel);
        lua_settop(L, 3);
        if (lua_getfield(L, 2, "route") == LUA_TNUMBER) /* on.route: apply_route.c */
            return apply_held_route(s->ap, old, row, (int) lua_tointeger(L, -1)), 0;
        apply_target *target = NULL;
        if (lua_getfield(L, 2, "target") == LUA_TSTRING) {
            const char *name = lua_tostring(L, -1);
            target = apply_find_target(s->ap, name);
            if (!target) return luaL_error(L, "change.target: %s is not a table of this task", name);
        }
        bool as_delete =
            lua_getfield(L, 2, "op") == LUA_TSTRING && strcmp(lua_tostring(L, -1), "delete") == 0;
        lua_pop(L, 1);
        /* Nothing may change between the decode above and this call: both run here. */
        apply_held_apply(s->ap, old, row, target, as_delete);
        return 0;
    }
    case APPLY_EVENT_CONFLICT: {
        bool skip;
        if (lua_isboolean(L, 2))
            skip = lua_toboolean(L, 2);
        else {
            const char *d = luaL_checkstring(L, 2);
            if (strcmp(d, "skip") == 0)
                skip = true;
            else if (strcmp(d, "error") == 0)
                skip = false;
            else
                return luaL_error(L, "a conflict takes \"skip\" or \"error\", not \"%s\"", d);
        }
        apply_conflict_decide(s->ap, skip);
        return 0;
    }
    case APPLY_EVENT_DDL: {
        apply_state *others[LANES_MAX];
        int n = s->lanes ? lanes_count(s->lanes) - 1 : 0;
        for (int i = 0; i < n; i++) others[i] = lanes_lane(s->lanes, i + 1);
        return cdc_reply_ddl(L, s->ap, others, n);
    }
    case APPLY_EVENT_FOLLOW: return cdc_reply_follow(L, s->ap);
    default:
        if (reconnect_lane(s) >= 0) return reply_reconnect(L, s);
        return luaL_error(L, "no change or conflict waits for a reply");
    }
}

/* ---------------------------------------------------------------- figures */

#define SET_INT(name, v) (lua_pushinteger(L, (lua_Integer) (v)), lua_setfield(L, -2, name))

static void push_stats(lua_State *L, cdc_stream *s) {
    apply_counters lc;
    const apply_counters *n = apply_get_counters(s->ap);
    apply_positions p;
    if (s->lanes) {
        lanes_counters(s->lanes, &lc);
        n = &lc;
        lanes_positions(s->lanes, &p);
    } else {
        apply_get_positions(s->ap, &p);
    }
    repl_stream *rs = s->rs;
    static const char *const states[] = { "running", "stopping", "ending", "stopped", "failed", "closed" };
    lua_createtable(L, 0, 40);
    lua_pushstring(L, states[s->state]);
    lua_setfield(L, -2, "state");
    SET_INT("received", rs->received_lsn);
    push_lsn(L, rs->received_lsn, "received_lsn");
    SET_INT("applied", p.applied_lsn);
    push_lsn(L, p.applied_lsn, "applied_lsn");
    SET_INT("durable", p.durable_lsn);
    push_lsn(L, p.durable_lsn, "durable_lsn");
    SET_INT("flushed", rs->reported_flush);
    push_lsn(L, rs->reported_flush, "flushed_lsn");
    SET_INT("keepalive", rs->keepalive_lsn);
    SET_INT("queued", p.queued_lsn);
    if (p.applied_commit_ts) {
        lua_pushnumber(L, (double) p.applied_commit_ts / 1e6);
        lua_setfield(L, -2, "applied_commit_time");
    }
    if (p.pending_commit_ts) {
        lua_pushnumber(L, (double) p.pending_commit_ts / 1e6);
        lua_setfield(L, -2, "pending_since");
    }
    if (rs->last_send_time) {
        lua_pushnumber(L, (double) rs->last_send_time / 1e6);
        lua_setfield(L, -2, "server_time");
    }
    lua_pushboolean(L, p.in_transaction);
    lua_setfield(L, -2, "in_transaction");
    lua_pushboolean(L, p.idle);
    lua_setfield(L, -2, "idle");
    lua_pushboolean(L, rs->state == REPL_STREAMING);
    lua_setfield(L, -2, "streaming");
    SET_INT("transactions", n->applied_transactions);
    SET_INT("changes", n->applied_changes);
    SET_INT("received_transactions", n->received_transactions);
    SET_INT("skipped_transactions", n->skipped_transactions);
    SET_INT("origin_skipped", n->origin_skipped);
    SET_INT("queued_changes", n->queued_changes);
    SET_INT("hooked_changes", n->hooked_changes);
    SET_INT("dropped_changes", n->dropped_changes);
    SET_INT("merged_changes", n->merged_changes);
    SET_INT("batched_inserts", n->batched_inserts);
    SET_INT("batched_updates", n->batched_updates);
    SET_INT("groups", n->groups);
    SET_INT("truncates", n->truncates);
    SET_INT("heartbeats", n->heartbeats);
    SET_INT("prepared_statements", n->prepared_statements);
    SET_INT("apply_sessions", n->sessions);
    SET_INT("ddl_applied", n->ddl_applied);
    SET_INT("ddl_skipped", n->ddl_skipped);
    SET_INT("ddl_statements", n->ddl_statements);
    SET_INT("bytes", rs->bytes);
    SET_INT("messages", rs->messages);
    SET_INT("keepalives", rs->keepalives);
    SET_INT("status_updates", rs->statuses);
    if (s->spool) {
        spool_counters sc;
        spool_get_counters(s->spool, &sc);
        SET_INT("streamed_transactions", sc.streamed_transactions);
        SET_INT("streamed_aborts", sc.aborted_transactions);
        SET_INT("streamed_subtransaction_aborts", sc.aborted_subtransactions);
        SET_INT("stream_blocks", sc.blocks);
        SET_INT("spooled_changes", sc.spooled_changes);
        SET_INT("spooled_bytes", sc.bytes);
        SET_INT("spool_peak_bytes", sc.peak_bytes);
        SET_INT("streams_open", sc.open);
    }
    if (s->lanes) {
        uint64_t serial, waits, dispatched;
        lanes_figures(s->lanes, &serial, &waits, &dispatched);
        lua_createtable(L, 0, 5);
        int nl = lanes_count(s->lanes);
        lua_createtable(L, nl, 0);
        for (int i = 0; i < nl; i++) {
            lua_pushinteger(L,
                            (lua_Integer) apply_get_counters(lanes_lane(s->lanes, i))->applied_transactions);
            lua_rawseti(L, -2, i + 1);
        }
        lua_setfield(L, -2, "transactions");
        SET_INT("connections", nl);
        SET_INT("serial_points", serial);
        SET_INT("waits", waits);
        SET_INT("dispatched", dispatched);
        lua_setfield(L, -2, "lanes");
    }
    lua_createtable(L, 0, 6);
    SET_INT("insert_exists", n->insert_exists);
    SET_INT("update_missing", n->update_missing);
    SET_INT("delete_missing", n->delete_missing);
    SET_INT("skipped", n->conflicts_skipped);
    SET_INT("overwritten", n->conflicts_overwritten);
    SET_INT("tolerated", n->conflicts_tolerated);
    lua_setfield(L, -2, "conflicts");
}

static int l_stats(lua_State *L) {
    push_stats(L, check_stream(L));
    return 1;
}

/* s:conflicts(since) → list, total */
static int l_conflicts(lua_State *L) {
    cdc_stream *s = check_stream(L);
    uint64_t since = (uint64_t) luaL_optinteger(L, 2, 0);
    apply_conflict list[APPLY_RECENT];
    uint64_t total;
    int n = apply_recent_conflicts(s->ap, since, list, APPLY_RECENT, &total);
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        push_conflict(L, &list[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_pushinteger(L, (lua_Integer) total);
    return 2;
}

static void set_paused(cdc_stream *s, bool paused) {
    if (s->lanes)
        lanes_set_paused(s->lanes, paused);
    else
        apply_set_paused(s->ap, paused);
}
static int l_pause(lua_State *L) {
    set_paused(check_stream(L), true);
    return 0;
}
static int l_resume(lua_State *L) {
    set_paused(check_stream(L), false);
    return 0;
}

static int stop_k(lua_State *L, int status, lua_KContext ctx) {
    (void) status;
    (void) ctx;
    cdc_stream *s = check_stream(L);
    if (s->state == CDC_FAILED) {
        push_error(L, s);
        return tide_fail(L);
    }
    if (s->state == CDC_STOPPED) {
        push_stats(L, s);
        return 1;
    }
    /* The transaction being finished holds something for Lua: false, event (answer it with
     * s:reply, then call s:stop() again). */
    if (apply_pending_event(s->ap) != APPLY_EVENT_NONE || reconnect_lane(s) >= 0) {
        lua_pushboolean(L, 0);
        if (push_event(L, s)) return 2;
        lua_pop(L, 1);
    }
    block_on(L, s, -1, "cdc stop");
    return lua_yieldk(L, 0, 0, stop_k);
}

/* s:stop(): finish the transaction in progress, commit, report the durable position, end. */
static int l_stop(lua_State *L) {
    cdc_stream *s = check_stream(L);
    lua_settop(L, 1);
    if (s->state == CDC_RUNNING) {
        s->state = CDC_STOPPING;
        if (s->lanes) {
            lanes_request_stop(s->lanes); /* unpauses too */
        } else {
            apply_request_stop(s->ap);
            apply_set_paused(s->ap, false); /* a paused stream must still finish its transaction */
        }
        kick(s);
    }
    return stop_k(L, 0, 0);
}

/* ---------------------------------------------------------------- life cycle */

static void handle_closed(uv_handle_t *h) {
    cdc_stream *s = h->data;
    free(h);
    if (--s->open_handles == 0 && s->box_gone) free(s);
}

static void stream_close(cdc_stream *s) {
    if (s->state == CDC_CLOSED) return;
    s->state = CDC_CLOSED;
    release_connections(s);
    repl_stream_free(s->rs);
    if (s->lanes)
        lanes_free(s->lanes);
    else
        apply_free(s->ap);
    s->lanes = NULL;
    spool_free(s->spool);
    s->rs = NULL;
    s->ap = NULL;
    s->spool = NULL;
    uv_close((uv_handle_t *) s->wait_timer, handle_closed);
    uv_close((uv_handle_t *) s->kick, handle_closed);
    uv_close((uv_handle_t *) s->replay_idle, handle_closed);
}

static int l_close(lua_State *L) {
    void **b = tide_box_slot(L, 1, CDC_META);
    cdc_stream *s = *b;
    if (s && s->waiter) return luaL_error(L, "a coroutine waits on this change stream");
    if (s) {
        stream_close(s);
        s->box_gone = true;
        if (s->open_handles == 0) free(s);
        *b = NULL;
    }
    return 0;
}

static int l_tostring(lua_State *L) {
    cdc_stream *s = *tide_box_slot(L, 1, CDC_META);
    lua_pushfstring(L, "cdc stream (%s): %p", s ? "open" : "closed", (void *) s);
    return 1;
}

/* tide.core.cdc_stream(repl_conn, target_conn, opts) → stream, or nil, err */
static int l_cdc_stream(lua_State *L) {
    tide_conn *src = tide_check_conn(L, 1);
    tide_conn *dst = tide_check_conn(L, 2);
    luaL_checktype(L, 3, LUA_TTABLE);
    if (!src->replication)
        return luaL_error(L, "cdc_stream: the first connection must be a replication connection");
    if (dst->replication) return luaL_error(L, "cdc_stream: the target connection must be an ordinary one");
    lua_settop(L, 3);
    apply_options opt;
    memset(&opt, 0, sizeof opt);
    lua_getfield(L, 3, "start_sql");
    const char *start_sql = luaL_checkstring(L, -1); /* stays alive in opts */
    lua_pop(L, 1);
    if (lua_getfield(L, 3, "start_lsn") == LUA_TSTRING &&
        apply_parse_lsn(lua_tostring(L, -1), &opt.start_lsn) < 0)
        return luaL_error(L, "cdc_stream: start_lsn must look like 0/1A2B3C");
    lua_pop(L, 1);
    cdc_options_from_lua(L, 3, &opt);
    opt.server_version = PQserverVersion(dst->pg);
    lua_getfield(L, 3, "spool_dir");
    const char *spool_dir = luaL_optstring(L, -1, NULL); /* stays alive in opts */
    lua_pop(L, 1);
    int nlanes = 0; /* 0: no parallel apply; a task that used it keeps its lanes, even just one */
    if (lua_getfield(L, 3, "lanes") == LUA_TTABLE) {
        lua_getfield(L, -1, "conns");
        nlanes = 1 + (int) luaL_len(L, -1);
        if (nlanes > LANES_MAX) return luaL_error(L, "cdc_stream: at most %d lanes", LANES_MAX);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    cdc_targets_from_lua(L, 3, &opt);
    if (lua_getfield(L, 3, "ddl_prefix") == LUA_TSTRING) opt.ddl_prefix = strdup(lua_tostring(L, -1));
    lua_settop(L, 3);
    lua_settop(L, 3);

    void **b = tide_box_new(L, CDC_META, 3);
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 1);
    lua_pushvalue(L, 2);
    lua_setiuservalue(L, -2, 2);
    lua_getfield(L, 3, "lanes"); /* keeps the lanes' connections alive with the stream */
    lua_setiuservalue(L, -2, 3);
    cdc_stream *s = calloc(1, sizeof *s);
    if (!s) abort();
    *b = s;
    s->rt = tide_rt(L);
    s->wait_timer = malloc(sizeof *s->wait_timer);
    s->kick = malloc(sizeof *s->kick);
    s->replay_idle = malloc(sizeof *s->replay_idle);
    if (!s->wait_timer || !s->kick || !s->replay_idle) abort();
    uv_timer_init(s->rt->loop, s->wait_timer);
    uv_idle_init(s->rt->loop, s->kick);
    uv_idle_init(s->rt->loop, s->replay_idle);
    s->wait_timer->data = s->kick->data = s->replay_idle->data = s;
    s->open_handles = 3;
    if (spool_dir && !(s->spool = spool_create(spool_dir))) abort();
    if (nlanes) {
        lanes_callbacks cb = { .arg = s, .on_unblock = on_unblock, .on_event = kick };
        s->lanes = cdc_lanes_from_lua(L, 3, s->rt->loop, dst, &opt, nlanes, &cb);
        s->ap = lanes_first(s->lanes);
    }
    if (!s->lanes) {
        apply_callbacks acb = { .arg = s, .on_unblock = on_unblock, .on_event = kick };
        s->ap = apply_create(dst, &opt, &acb);
    }
    repl_callbacks rcb = { .arg = s,
                           .on_data = on_data,
                           .on_burst_end = on_burst_end,
                           .flush_position = flush_position,
                           .on_tick = on_tick,
                           .on_state = kick };
    s->rs = repl_stream_create(s->rt, &rcb);
    if ((s->lanes ? lanes_start(s->lanes) : apply_start(s->ap)) < 0 ||
        repl_stream_start(s->rs, src, start_sql) < 0) {
        advance(s); /* → failed; next() reports it */
    }
    return 1;
}

int luaopen_tide_cdc(lua_State *L) {
    static const luaL_Reg methods[] = {
        { "next", l_next },           { "reply", l_reply }, { "stats", l_stats },
        { "conflicts", l_conflicts }, { "pause", l_pause }, { "resume", l_resume },
        { "stop", l_stop },           { "close", l_close }, { NULL, NULL },
    };
    static const luaL_Reg meta[] = {
        { "__gc", l_close },
        { "__close", l_close },
        { "__tostring", l_tostring },
        { NULL, NULL },
    };
    static const luaL_Reg funcs[] = { { "cdc_stream", l_cdc_stream }, { NULL, NULL } };
    tide_class_define(L, CDC_META, methods, meta);
    luaL_newlib(L, funcs);
    return 1;
}
