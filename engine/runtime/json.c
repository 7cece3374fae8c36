/*
 * json.c — JSON text to Lua values: the decoder behind tide.json.decode (lua/tide/json.lua,
 * which documents the mapping and keeps the encoder).
 *
 * Why in C: the catalog decodes a json_agg value per row, and DDL replication's record holds a
 * JSON description per table (1 to 2 kB each) that a stream's session decodes at its start. In
 * Lua this cost about 80 us per such description, 8 s at 100,000 tables; here it is a few.
 *
 *   decode = core.json_decoder(null)   a decoder whose JSON null is the value `null`
 *   decode(text) → value               objects → tables, arrays → lists; raises
 *                                      "json: <what> at byte <n>" on malformed text
 *
 * Numbers: an integer stays an integer, and so does a number written with a fraction or an
 * exponent whose value is a whole number that fits (1e3 → 1000), as Lua's math.tointeger would
 * make it; others are floats. Text is not checked to be UTF-8 (what the server sends is).
 */
#include "runtime/bindings.h"

#include <stdbool.h>
#include <string.h>

/* Deeper nesting than this is refused (the recursion below uses the C stack). */
#define JSON_MAX_DEPTH 512

typedef struct {
    lua_State *L;
    const char *text;
    size_t len;
    size_t pos; /* 0-based; messages say 1-based bytes */
    int depth;
} json_reader;

static int json_fail(json_reader *r, const char *what) {
    return luaL_error(r->L, "json: %s at byte %I", what, (LUAI_UACINT) (r->pos + 1));
}

static void json_skip_space(json_reader *r) {
    while (r->pos < r->len) {
        char c = r->text[r->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') return;
        r->pos++;
    }
}

static int json_peek(json_reader *r) { return r->pos < r->len ? (unsigned char) r->text[r->pos] : -1; }

static int json_hex4(const char *s) {
    int v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= c - '0';
        else if (c >= 'a' && c <= 'f')
            v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            v |= c - 'A' + 10;
        else
            return -1;
    }
    return v;
}

/* A code point as UTF-8 (a lone surrogate too, as Lua's utf8.char writes it). */
static void json_add_utf8(luaL_Buffer *b, unsigned cp) {
    char out[4];
    int n;
    if (cp < 0x80) {
        out[0] = (char) cp;
        n = 1;
    } else if (cp < 0x800) {
        out[0] = (char) (0xC0 | (cp >> 6));
        out[1] = (char) (0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        out[0] = (char) (0xE0 | (cp >> 12));
        out[1] = (char) (0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char) (0x80 | (cp & 0x3F));
        n = 3;
    } else {
        out[0] = (char) (0xF0 | (cp >> 18));
        out[1] = (char) (0x80 | ((cp >> 12) & 0x3F));
        out[2] = (char) (0x80 | ((cp >> 6) & 0x3F));
        out[3] = (char) (0x80 | (cp & 0x3F));
        n = 4;
    }
    luaL_addlstring(b, out, (size_t) n);
}

/* The position of the first '"' or '\\' at or after `from`, or len. */
static size_t json_string_stop(const json_reader *r, size_t from) {
    const char *p = r->text + from, *end = r->text + r->len;
    while (p < end && *p != '"' && *p != '\\') p++;
    return (size_t) (p - r->text);
}

/* Push the string whose opening quote is at pos; pos after its closing quote. Most strings
 * have no escape: one scan and one push. */
static void json_read_string(json_reader *r) {
    lua_State *L = r->L;
    size_t start = r->pos + 1;
    size_t stop = json_string_stop(r, start);
    if (stop < r->len && r->text[stop] == '"') {
        lua_pushlstring(L, r->text + start, stop - start);
        r->pos = stop + 1;
        return;
    }
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    r->pos = start;
    for (;;) {
        stop = json_string_stop(r, r->pos);
        if (stop >= r->len) {
            r->pos = r->len;
            json_fail(r, "unterminated string");
        }
        luaL_addlstring(&b, r->text + r->pos, stop - r->pos);
        r->pos = stop;
        if (r->text[stop] == '"') {
            r->pos++;
            break;
        }
        char e = stop + 1 < r->len ? r->text[stop + 1] : '\0';
        char simple = 0;
        switch (e) {
        case '"': simple = '"'; break;
        case '\\': simple = '\\'; break;
        case '/': simple = '/'; break;
        case 'b': simple = '\b'; break;
        case 'f': simple = '\f'; break;
        case 'n': simple = '\n'; break;
        case 'r': simple = '\r'; break;
        case 't': simple = '\t'; break;
        default: break;
        }
        if (simple) {
            luaL_addchar(&b, simple);
            r->pos += 2;
        } else if (e == 'u') {
            int cp = r->pos + 6 <= r->len ? json_hex4(r->text + r->pos + 2) : -1;
            if (cp < 0) json_fail(r, "bad \\u escape");
            r->pos += 6;
            /* a high surrogate and the low one after it are one code point */
            if (cp >= 0xD800 && cp <= 0xDBFF && r->pos + 6 <= r->len && r->text[r->pos] == '\\' &&
                r->text[r->pos + 1] == 'u') {
                int low = json_hex4(r->text + r->pos + 2);
                if (low >= 0xDC00 && low <= 0xDFFF) {
                    cp = 0x10000 + (cp - 0xD800) * 0x400 + (low - 0xDC00);
                    r->pos += 6;
                }
            }
            json_add_utf8(&b, (unsigned) cp);
        } else {
            json_fail(r, "bad escape");
        }
    }
    luaL_pushresult(&b);
}

/* Push the number at pos: -?digits(.digits*)?([eE][+-]?digits)? */
static void json_read_number(json_reader *r) {
    lua_State *L = r->L;
    const char *s = r->text;
    size_t p = r->pos;
    if (p < r->len && s[p] == '-') p++;
    size_t digits = p;
    while (p < r->len && s[p] >= '0' && s[p] <= '9') p++;
    if (p == digits) json_fail(r, "unexpected character");
    if (p < r->len && s[p] == '.') {
        p++;
        while (p < r->len && s[p] >= '0' && s[p] <= '9') p++;
    }
    if (p < r->len && (s[p] == 'e' || s[p] == 'E')) {
        size_t e = p + 1;
        if (e < r->len && (s[e] == '+' || s[e] == '-')) e++;
        size_t exp_digits = e;
        while (e < r->len && s[e] >= '0' && s[e] <= '9') e++;
        if (e == exp_digits) {
            r->pos = e;
            json_fail(r, "bad number");
        }
        p = e;
    }
    /* Lua's own conversion (it knows integers from floats and the locale's decimal point). */
    char small[64];
    size_t n = p - r->pos;
    const char *z;
    if (n < sizeof small) {
        memcpy(small, s + r->pos, n);
        small[n] = '\0';
        z = small;
    } else {
        z = lua_pushlstring(L, s + r->pos, n);
    }
    size_t used = lua_stringtonumber(L, z);
    if (used != n + 1) json_fail(r, "bad number");
    if (n >= sizeof small) lua_remove(L, -2);
    if (!lua_isinteger(L, -1)) {
        lua_Integer i;
        if (lua_numbertointeger(lua_tonumber(L, -1), &i)) {
            lua_Number d = lua_tonumber(L, -1);
            if ((lua_Number) i == d) {
                lua_pop(L, 1);
                lua_pushinteger(L, i);
            }
        }
    }
    r->pos = p;
}

static bool json_word(json_reader *r, const char *word, size_t n) {
    return r->pos + n <= r->len && memcmp(r->text + r->pos, word, n) == 0;
}

/* Push the value at pos (after white space); pos after it. Upvalue 1 of the running C
 * closure (json_decode's) is what JSON null decodes to. */
static void json_read_value(json_reader *r) {
    lua_State *L = r->L;
    json_skip_space(r);
    int c = json_peek(r);
    if (c == '{' || c == '[') {
        if (++r->depth > JSON_MAX_DEPTH) json_fail(r, "nested too deep");
        luaL_checkstack(L, 8, "json: nested too deep");
    }
    if (c == '{') {
        lua_newtable(L);
        r->pos++;
        json_skip_space(r);
        if (json_peek(r) == '}') {
            r->pos++;
            r->depth--;
            return;
        }
        for (;;) {
            json_skip_space(r);
            if (json_peek(r) != '"') json_fail(r, "expected a key");
            json_read_string(r);
            json_skip_space(r);
            if (json_peek(r) != ':') json_fail(r, "expected :");
            r->pos++;
            json_read_value(r);
            lua_rawset(L, -3);
            json_skip_space(r);
            c = json_peek(r);
            r->pos++;
            if (c != ',') break;
        }
        if (c != '}') json_fail(r, "expected }");
        r->depth--;
    } else if (c == '[') {
        lua_newtable(L);
        r->pos++;
        json_skip_space(r);
        if (json_peek(r) == ']') {
            r->pos++;
            r->depth--;
            return;
        }
        for (lua_Integer n = 1;; n++) {
            json_read_value(r);
            lua_rawseti(L, -2, n);
            json_skip_space(r);
            c = json_peek(r);
            r->pos++;
            if (c != ',') break;
        }
        if (c != ']') json_fail(r, "expected ]");
        r->depth--;
    } else if (c == '"') {
        json_read_string(r);
    } else if (c == 'n' && json_word(r, "null", 4)) {
        lua_pushvalue(L, lua_upvalueindex(1));
        r->pos += 4;
    } else if (c == 't' && json_word(r, "true", 4)) {
        lua_pushboolean(L, 1);
        r->pos += 4;
    } else if (c == 'f' && json_word(r, "false", 5)) {
        lua_pushboolean(L, 0);
        r->pos += 5;
    } else if (c == '-' || (c >= '0' && c <= '9')) {
        json_read_number(r);
    } else {
        json_fail(r, "unexpected character");
    }
}

/* Push the one value `len` bytes of text hold (raises on anything else). Called from a C
 * closure whose upvalue 1 is the value JSON null decodes to. */
static int json_decode_buffer(lua_State *L, const char *text, size_t len) {
    json_reader r = { .L = L, .text = text, .len = len, .pos = 0, .depth = 0 };
    json_read_value(&r);
    json_skip_space(&r);
    if (r.pos < r.len) json_fail(&r, "unexpected text after the value");
    return 1;
}

/* decode(text) → value. Upvalue 1: the value JSON null decodes to. */
static int json_decode(lua_State *L) {
    size_t len;
    const char *text = luaL_checklstring(L, 1, &len);
    lua_settop(L, 1);
    return json_decode_buffer(L, text, len);
}

/* json_decoder(null) → decode */
static int json_decoder(lua_State *L) {
    luaL_checkany(L, 1);
    lua_settop(L, 1);
    lua_pushcclosure(L, json_decode, 1);
    return 1;
}

int luaopen_tide_json(lua_State *L) {
    static const luaL_Reg functions[] = { { "json_decoder", json_decoder }, { NULL, NULL } };
    luaL_newlib(L, functions);
    return 1;
}
