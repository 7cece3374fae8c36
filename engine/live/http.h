/*
 * http.h — a small HTTP/1.1 responder on the task's loop, for the Prometheus metrics endpoint
 * (docs/operating.md). It answers GET (and HEAD) of one resource at a time and closes the
 * connection after each answer; the body comes from a handler the server is given (the Lua
 * binding, engine/live/lua_http.c, asks Lua for it). Nothing in here blocks the loop: reads
 * and writes are libuv's, each connection has a deadline, and their number is bounded.
 */
#ifndef TIDE_HTTP_H
#define TIDE_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include "runtime/runtime.h"

#define HTTP_MAX_REQUEST 8192   /* request line and headers; longer requests get 431 */
#define HTTP_MAX_CONNECTIONS 32 /* more at once are closed as they come */
#define HTTP_TIMEOUT_MS 10000   /* a client that has not sent its request by then is closed */
#define HTTP_LINGER_MS 2000     /* after the answer, how long we wait for the client to close */

typedef struct http_response {
    int status;               /* 200, 404, 500, ... */
    char *body;               /* malloc'd by the handler (may stay NULL: an empty body) */
    size_t length;            /* of body */
    const char *content_type; /* static or owned by the handler's arg; NULL: text/plain */
} http_response;

/* Fill `out` for a GET of `path` (the request target without its query string). */
typedef void (*http_handler_fn)(void *arg, const char *path, http_response *out);

typedef struct http_conn http_conn;

typedef struct http_server {
    uv_tcp_t tcp;
    http_conn *conns;        /* open connections, a doubly linked list */
    http_handler_fn handler; /* NULL once the owner let go: requests get 503 */
    void *arg;
    int connections; /* open connections (each holds the server until its close callback) */
    int port;        /* the port bound (useful with port 0) */
    unsigned long served, refused;
    bool closing, closed, orphan;
} http_server;

http_server *http_server_new(tide_runtime *rt, http_handler_fn handler, void *arg);
/* Bind host (an IPv4 or IPv6 literal) and port, and listen. 0, or a libuv error code with a
 * message in err ("address already in use" comes from here, not later). */
int http_server_listen(http_server *s, const char *host, int port, char *err, size_t errsize);
void http_server_close(http_server *s);   /* stop listening; open connections finish */
void http_server_release(http_server *s); /* the owner lets go: freed once everything closed */

/* Parse the request line of a whole request head: 0 with method and target (NUL-terminated,
 * within the sizes given), or the HTTP status to answer (400, 414, 505). Exposed for tests. */
int http_parse_request_line(const char *head, size_t length, char *method, size_t method_size, char *target,
                            size_t target_size);

#endif
