/*
 * http.c — the HTTP/1.1 responder of the metrics endpoint (see http.h): one uv_tcp_t
 * listening on the task's loop, one uv_tcp_t and one timer per client connection.
 *
 * A connection reads until the end of the request head (a blank line), answers once, shuts
 * its side down and closes when the client does (or after HTTP_LINGER_MS): closing at once
 * with unread bytes would reset the connection and could lose the answer. Every answer says
 * `Connection: close`, so keep-alive and pipelining never arise. A request that is not HTTP
 * gets 400 and is closed; a client that sends nothing is closed after HTTP_TIMEOUT_MS.
 */
#include "live/http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct http_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t write;
    uv_shutdown_t shutdown;
    http_server *server;
    struct http_conn *prev, *next; /* the server's open connections */
    char in[HTTP_MAX_REQUEST];
    size_t in_len;
    char *out;
    int open_handles;
    bool answered, written, peer_done, closing;
};

/* ---------------------------------------------------------------- the request line */

static bool is_token_char(char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           strchr("!#$%&'*+-.^_`|~", c);
}

int http_parse_request_line(const char *head, size_t length, char *method, size_t method_size, char *target,
                            size_t target_size) {
    const char *end = memchr(head, '\n', length);
    if (!end) return 400;
    size_t line = (size_t) (end - head);
    if (line > 0 && head[line - 1] == '\r') line--;
    /* METHOD SP TARGET SP HTTP/1.x, exactly (RFC 9112, 3) */
    const char *sp1 = memchr(head, ' ', line);
    if (!sp1 || sp1 == head) return 400;
    const char *rest = sp1 + 1;
    const char *sp2 = memchr(rest, ' ', line - (size_t) (rest - head));
    if (!sp2 || sp2 == rest) return 400;
    const char *version = sp2 + 1;
    size_t version_len = line - (size_t) (version - head);
    size_t method_len = (size_t) (sp1 - head), target_len = (size_t) (sp2 - rest);
    for (size_t i = 0; i < method_len; i++)
        if (!is_token_char(head[i])) return 400;
    for (size_t i = 0; i < target_len; i++)
        if ((unsigned char) rest[i] <= ' ' || rest[i] == 0x7f) return 400;
    if (version_len != 8 || memcmp(version, "HTTP/1.", 7) != 0) return 400;
    if (version[7] != '0' && version[7] != '1') return 505;
    if (rest[0] != '/') return 400; /* origin-form only: no proxy requests */
    if (method_len >= method_size) return 400;
    if (target_len >= target_size) return 414;
    memcpy(method, head, method_len);
    method[method_len] = '\0';
    memcpy(target, rest, target_len);
    target[target_len] = '\0';
    return 0;
}

/* The end of the head: the index after the blank line, or 0 when it has not come yet. */
static size_t head_end(const char *buf, size_t len) {
    for (size_t i = 0; i + 1 < len; i++) {
        if (buf[i] != '\n') continue;
        if (buf[i + 1] == '\n') return i + 2;
        if (buf[i + 1] == '\r' && i + 2 < len && buf[i + 2] == '\n') return i + 3;
    }
    return 0;
}

/* ---------------------------------------------------------------- server */

static void conn_close(http_conn *c);

static void server_free_if_done(http_server *s) {
    if (s->orphan && s->closed && s->connections == 0) free(s);
}

static void server_closed(uv_handle_t *h) {
    http_server *s = h->data;
    s->closed = true;
    server_free_if_done(s);
}

http_server *http_server_new(tide_runtime *rt, http_handler_fn handler, void *arg) {
    http_server *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    uv_tcp_init(rt->loop, &s->tcp);
    s->tcp.data = s;
    s->handler = handler;
    s->arg = arg;
    return s;
}

void http_server_close(http_server *s) {
    if (s->closing) return;
    s->closing = true;
    uv_close((uv_handle_t *) &s->tcp, server_closed);
}

void http_server_release(http_server *s) {
    s->handler = NULL;
    s->arg = NULL;
    s->orphan = true;
    /* Connections still open (a client that sends nothing) close now: at exit, the loop's
     * last turn then frees them, and the server after them. */
    for (http_conn *c = s->conns; c; c = c->next) conn_close(c);
    if (!s->closing)
        http_server_close(s);
    else
        server_free_if_done(s);
}

/* ---------------------------------------------------------------- connections */

static void conn_handle_closed(uv_handle_t *h) {
    http_conn *c = h->data;
    if (--c->open_handles > 0) return;
    http_server *s = c->server;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    free(c->out);
    free(c);
    s->connections--;
    server_free_if_done(s);
}

static void conn_close(http_conn *c) {
    if (c->closing) return;
    c->closing = true;
    uv_close((uv_handle_t *) &c->tcp, conn_handle_closed);
    uv_close((uv_handle_t *) &c->timer, conn_handle_closed);
}

static void conn_timeout(uv_timer_t *t) { conn_close(t->data); }

static void conn_shut(uv_shutdown_t *req, int status) {
    (void) req;
    (void) status;
    /* Wait for the client's end (read callback sees EOF), the linger timer, or an error. */
}

static void conn_written(uv_write_t *req, int status) {
    http_conn *c = req->data;
    c->written = true;
    if (c->closing) return;
    if (status < 0 || c->peer_done || uv_shutdown(&c->shutdown, (uv_stream_t *) &c->tcp, conn_shut) != 0)
        conn_close(c);
}

static const char *reason_of(int status) {
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 414: return "URI Too Long";
    case 431: return "Request Header Fields Too Large";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Internal Server Error";
    }
}

/* Queue the whole answer in one write; the connection closes after it. */
static void conn_answer(http_conn *c, int status, const char *content_type, const char *body, size_t length,
                        bool head_only) {
    c->answered = true;
    char head[512];
    int n =
        snprintf(head, sizeof head,
                 "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%sConnection: close\r\n\r\n",
                 status, reason_of(status), content_type ? content_type : "text/plain; charset=utf-8", length,
                 status == 405 ? "Allow: GET, HEAD\r\n" : "");
    size_t body_len = head_only ? 0 : length;
    c->out = malloc((size_t) n + body_len);
    if (!c->out) {
        conn_close(c);
        return;
    }
    memcpy(c->out, head, (size_t) n);
    if (body_len) memcpy(c->out + n, body, body_len);
    uv_buf_t buf = uv_buf_init(c->out, (unsigned) ((size_t) n + body_len));
    c->write.data = c;
    uv_timer_start(&c->timer, conn_timeout, HTTP_TIMEOUT_MS + HTTP_LINGER_MS, 0);
    if (uv_write(&c->write, (uv_stream_t *) &c->tcp, &buf, 1, conn_written) != 0) conn_close(c);
}

static void conn_answer_text(http_conn *c, int status, bool head_only) {
    char body[128];
    int n = snprintf(body, sizeof body, "%d %s\n", status, reason_of(status));
    conn_answer(c, status, NULL, body, (size_t) n, head_only);
}

static void conn_request(http_conn *c) {
    char method[16], target[2048];
    int bad = http_parse_request_line(c->in, c->in_len, method, sizeof method, target, sizeof target);
    if (bad) return conn_answer_text(c, bad, false);
    bool head_only = strcmp(method, "HEAD") == 0;
    if (!head_only && strcmp(method, "GET") != 0) return conn_answer_text(c, 405, false);
    char *query = strchr(target, '?');
    if (query) *query = '\0';
    http_server *s = c->server;
    if (!s->handler || s->closing) return conn_answer_text(c, 503, head_only);
    http_response r = { .status = 500 };
    s->handler(s->arg, target, &r);
    s->served++;
    if (r.status == 200)
        conn_answer(c, 200, r.content_type, r.body, r.length, head_only);
    else
        conn_answer_text(c, r.status, head_only);
    free(r.body);
}

static void conn_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
    (void) hint;
    http_conn *c = h->data;
    /* After the answer, whatever else comes is read into the same buffer and dropped. */
    if (c->answered) c->in_len = 0;
    *buf = uv_buf_init(c->in + c->in_len, (unsigned) (sizeof c->in - c->in_len));
}

static void conn_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
    (void) buf;
    http_conn *c = stream->data;
    if (nread < 0) {
        /* EOF or an error: before an answer the client gave up; after it, we are done once
         * the answer is written (a client may half-close right after its request). */
        uv_read_stop(stream);
        c->peer_done = true;
        if (!c->answered || c->written) conn_close(c);
        return;
    }
    if (nread == 0 || c->answered) return;
    c->in_len += (size_t) nread;
    if (head_end(c->in, c->in_len)) {
        uv_read_stop(stream);
        conn_request(c);
        if (!c->closing) uv_read_start(stream, conn_alloc, conn_read);
    } else if (c->in_len == sizeof c->in) {
        uv_read_stop(stream);
        conn_answer_text(c, 431, false);
        if (!c->closing) uv_read_start(stream, conn_alloc, conn_read);
    }
}

static void server_connection(uv_stream_t *stream, int status) {
    http_server *s = stream->data;
    if (status < 0) return;
    http_conn *c = calloc(1, sizeof *c);
    if (!c) return;
    c->server = s;
    c->next = s->conns;
    if (s->conns) s->conns->prev = c;
    s->conns = c;
    s->connections++;
    uv_tcp_init(stream->loop, &c->tcp);
    uv_timer_init(stream->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->open_handles = 2;
    if (uv_accept(stream, (uv_stream_t *) &c->tcp) != 0 || s->connections > HTTP_MAX_CONNECTIONS ||
        !s->handler) {
        s->refused++;
        conn_close(c);
        return;
    }
    uv_timer_start(&c->timer, conn_timeout, HTTP_TIMEOUT_MS, 0);
    if (uv_read_start((uv_stream_t *) &c->tcp, conn_alloc, conn_read) != 0) conn_close(c);
}

int http_server_listen(http_server *s, const char *host, int port, char *err, size_t errsize) {
    struct sockaddr_storage addr;
    int rc = strchr(host, ':') ? uv_ip6_addr(host, port, (struct sockaddr_in6 *) &addr)
                               : uv_ip4_addr(host, port, (struct sockaddr_in *) &addr);
    if (rc != 0) {
        snprintf(err, errsize, "%s is not an IP address: %s", host, uv_strerror(rc));
        return rc;
    }
    /* libuv may report a port in use at bind or only at listen: both read the same. */
    rc = uv_tcp_bind(&s->tcp, (const struct sockaddr *) &addr, 0);
    if (rc == 0) rc = uv_listen((uv_stream_t *) &s->tcp, 64, server_connection);
    if (rc != 0) {
        snprintf(err, errsize, "cannot listen on %s%s%s:%d: %s", strchr(host, ':') ? "[" : "", host,
                 strchr(host, ':') ? "]" : "", port, uv_strerror(rc));
        return rc;
    }
    struct sockaddr_storage bound;
    int len = sizeof bound;
    if (uv_tcp_getsockname(&s->tcp, (struct sockaddr *) &bound, &len) == 0)
        s->port = bound.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *) &bound)->sin6_port)
                                              : ntohs(((struct sockaddr_in *) &bound)->sin_port);
    return 0;
}
