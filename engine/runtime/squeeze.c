/*
 * squeeze.c — text kept in memory deflated (zlib), for what the engine holds per table for
 * the life of a stream: DDL replication's record of every table (tide.cdc.ddl_known) is a JSON
 * text of about 1.4 kB a table, and these texts are alike, so a dictionary of their common
 * words makes each one a tenth of its size.
 *
 *   tide.core.deflate(text [, dictionary]) -> packed string
 *   tide.core.inflate(packed [, dictionary]) -> text (raises on a string deflate did not
 *                                               make, or one it packed with another dictionary)
 *
 * A packed string is the text's length (4 bytes, little-endian) and its zlib stream, whose
 * checksums (of the dictionary and of the text) inflate checks.
 */
#include "runtime/bindings.h"

#include <limits.h>
#include <stdint.h>
#include <string.h>
#include <zlib.h>

#define HEADER 4
#define WINDOW 15

static int l_deflate(lua_State *L) {
    size_t len, dict_len = 0;
    const char *text = luaL_checklstring(L, 1, &len);
    const char *dict = luaL_optlstring(L, 2, NULL, &dict_len);
    if (len > UINT32_MAX / 2 || dict_len > UINT_MAX) return luaL_error(L, "deflate: text too long");
    /* room for the worst case (compressBound) and the dictionary's checksum, taken before
     * zlib's state exists: nothing raises while that is held */
    size_t bound = (size_t) compressBound((uLong) len) + 16;
    luaL_Buffer b;
    unsigned char *out = (unsigned char *) luaL_buffinitsize(L, &b, HEADER + bound);
    for (int i = 0; i < HEADER; i++) out[i] = (unsigned char) (((uint64_t) len >> (8 * i)) & 0xff);
    z_stream z;
    memset(&z, 0, sizeof z);
    if (deflateInit2(&z, Z_BEST_SPEED, Z_DEFLATED, WINDOW, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return luaL_error(L, "deflate: zlib refused to start (out of memory?)");
    int rc = Z_OK;
    if (dict && dict_len > 0) rc = deflateSetDictionary(&z, (const Bytef *) dict, (uInt) dict_len);
    if (rc == Z_OK) {
        z.next_in = (Bytef *) text;
        z.avail_in = (uInt) len;
        z.next_out = out + HEADER;
        z.avail_out = (uInt) bound;
        rc = deflate(&z, Z_FINISH);
    }
    size_t packed = HEADER + (size_t) z.total_out;
    deflateEnd(&z);
    if (rc != Z_STREAM_END) return luaL_error(L, "deflate: failed (%d)", rc);
    luaL_pushresultsize(&b, packed);
    return 1;
}

static int l_inflate(lua_State *L) {
    size_t len, dict_len = 0;
    const unsigned char *in = (const unsigned char *) luaL_checklstring(L, 1, &len);
    const char *dict = luaL_optlstring(L, 2, NULL, &dict_len);
    if (len < HEADER || len - HEADER > UINT_MAX || dict_len > UINT_MAX)
        return luaL_error(L, "inflate: not a packed text");
    size_t size = 0;
    for (int i = 0; i < HEADER; i++) size |= (size_t) in[i] << (8 * i);
    /* deflate never packs more than 1032 bytes into one: a larger claim is not ours */
    if (size >= UINT_MAX || size > (len - HEADER) * 1032 + 1024)
        return luaL_error(L, "inflate: not a packed text");
    luaL_Buffer b;
    /* one byte more than the text, so that a stream that would write past it is caught; taken
     * before zlib's state exists, as in deflate */
    char *out = luaL_buffinitsize(L, &b, size + 1);
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, WINDOW) != Z_OK)
        return luaL_error(L, "inflate: zlib refused to start (out of memory?)");
    z.next_in = (Bytef *) (in + HEADER);
    z.avail_in = (uInt) (len - HEADER);
    z.next_out = (Bytef *) out;
    z.avail_out = (uInt) (size + 1);
    int rc = inflate(&z, Z_FINISH);
    /* the stream names the dictionary it needs (by checksum): a different one is refused */
    if (rc == Z_NEED_DICT) {
        int set = dict && dict_len > 0 ? inflateSetDictionary(&z, (const Bytef *) dict, (uInt) dict_len)
                                       : Z_DATA_ERROR;
        if (set != Z_OK) {
            inflateEnd(&z);
            return luaL_error(L, set == Z_MEM_ERROR ? "inflate: out of memory"
                                                    : "inflate: packed with another dictionary");
        }
        rc = inflate(&z, Z_FINISH);
    }
    size_t got = (size_t) z.total_out;
    uInt left = z.avail_in; /* the whole string must be the stream: nothing after it */
    inflateEnd(&z);
    if (rc != Z_STREAM_END || got != size || left != 0) return luaL_error(L, "inflate: not a packed text");
    luaL_pushresultsize(&b, got);
    return 1;
}

int luaopen_tide_squeeze(lua_State *L) {
    static const luaL_Reg funcs[] = { { "deflate", l_deflate }, { "inflate", l_inflate }, { NULL, NULL } };
    luaL_newlib(L, funcs);
    return 1;
}
