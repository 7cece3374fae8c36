/*
 * lua_term.c — the terminal side of the REPLs: line editing, history and tab completion
 * through libedit's readline interface when standard input is a terminal, plain line
 * reads otherwise (so `echo '1+1' | pgtide repl` works). Exposed as tide.core.readline,
 * add_history, load_history, save_history, set_completer, isatty.
 *
 * readline blocks; the local REPL calls it between chunks, when the loop has nothing of
 * the REPL's own to run. The completer is a Lua function called with (word, line) that
 * returns an array of candidates.
 */
#include "runtime/bindings.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <editline/readline.h>

static lua_State *completer_L; /* the state during a readline call, for the completer */
static int completer_ref = LUA_NOREF;
static char **candidates;
static int ncandidates;

static void free_candidates(void) {
    for (int i = 0; i < ncandidates; i++) free(candidates[i]);
    free(candidates);
    candidates = NULL;
    ncandidates = 0;
}

static char *candidate_generator(const char *text, int state) {
    (void) text;
    if (state >= ncandidates) return NULL;
    return strdup(candidates[state]);
}

static char **complete(const char *text, int start, int end) {
    (void) start;
    (void) end;
    lua_State *L = completer_L;
    free_candidates();
    if (!L || completer_ref == LUA_NOREF) return NULL;
    rl_attempted_completion_over = 1; /* no file-name completion fallback */
    lua_rawgeti(L, LUA_REGISTRYINDEX, completer_ref);
    lua_pushstring(L, text);
    lua_pushstring(L, rl_line_buffer ? rl_line_buffer : "");
    if (lua_pcall(L, 2, 1, 0) != LUA_OK || !lua_istable(L, -1)) {
        lua_pop(L, 1);
        return NULL;
    }
    int n = (int) luaL_len(L, -1);
    candidates = calloc((size_t) n + 1, sizeof *candidates);
    for (int i = 1; candidates && i <= n; i++) {
        lua_rawgeti(L, -1, i);
        const char *s = lua_tostring(L, -1);
        if (s) candidates[ncandidates++] = strdup(s);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    if (ncandidates == 0) return NULL;
    return rl_completion_matches(text, candidate_generator);
}

/* readline(prompt) → the line without its newline, or nil at end of input */
static int l_readline(lua_State *L) {
    const char *prompt = luaL_optstring(L, 1, "> ");
    if (isatty(STDIN_FILENO)) {
        completer_L = L;
        rl_attempted_completion_function = complete;
        rl_completion_append_character = '\0'; /* `task:sta<Tab>` must not add a space */
        char *line = readline(prompt);
        completer_L = NULL;
        if (!line) return 0;
        lua_pushstring(L, line);
        free(line);
        return 1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, stdin);
    if (n < 0) {
        free(line);
        return 0;
    }
    if (n > 0 && line[n - 1] == '\n') n--;
    lua_pushlstring(L, line, (size_t) n);
    free(line);
    return 1;
}

static int l_add_history(lua_State *L) {
    if (isatty(STDIN_FILENO)) add_history(luaL_checkstring(L, 1));
    return 0;
}

static int l_load_history(lua_State *L) {
    if (isatty(STDIN_FILENO)) read_history(luaL_checkstring(L, 1));
    return 0;
}

static int l_save_history(lua_State *L) {
    if (isatty(STDIN_FILENO)) write_history(luaL_checkstring(L, 1));
    return 0;
}

static int l_set_completer(lua_State *L) {
    luaL_checktype(L, 1, LUA_TFUNCTION);
    luaL_unref(L, LUA_REGISTRYINDEX, completer_ref);
    lua_pushvalue(L, 1);
    completer_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

static int l_isatty(lua_State *L) {
    lua_pushboolean(L, isatty((int) luaL_optinteger(L, 1, STDOUT_FILENO)));
    return 1;
}

int luaopen_tide_term(lua_State *L) {
    static const luaL_Reg funcs[] = {
        { "readline", l_readline },
        { "add_history", l_add_history },
        { "load_history", l_load_history },
        { "save_history", l_save_history },
        { "set_completer", l_set_completer },
        { "isatty", l_isatty },
        { NULL, NULL },
    };
    luaL_newlib(L, funcs);
    return 1;
}

void tide_term_close(void) { free_candidates(); }
