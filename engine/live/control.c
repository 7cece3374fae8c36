/*
 * control.c — the control socket's transport: the private run directory, the listening
 * socket on the task's loop (with stale-socket replacement), one channel per attached
 * client, and the blocking client used by `pgtide status` and `pgtide attach`.
 *
 * Only frames cross this layer; what they mean (a chunk of Lua, a completion request, a
 * status) is decided in Lua (lua/tide/live/). Access control is the file system's: the
 * directory is 0700 and the socket 0600, and the server also checks the peer's uid
 * (SO_PEERCRED) so a socket placed elsewhere with --control is still ours alone.
 */
#include "live/control.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define READ_CHUNK 65536
#define DRAIN_LOW_WATER (256u * 1024)

/* ---------------------------------------------------------------- frames */

void control_frame_header(char out[CONTROL_HEADER_SIZE], char type, size_t length) {
    out[0] = type;
    out[1] = (char) ((length >> 24) & 0xff);
    out[2] = (char) ((length >> 16) & 0xff);
    out[3] = (char) ((length >> 8) & 0xff);
    out[4] = (char) (length & 0xff);
}

int control_frame_peek(const char *buf, size_t have, char *type, size_t *length) {
    if (have < CONTROL_HEADER_SIZE) return 0;
    const unsigned char *u = (const unsigned char *) buf;
    size_t len = ((size_t) u[1] << 24) | ((size_t) u[2] << 16) | ((size_t) u[3] << 8) | u[4];
    if (len > CONTROL_MAX_PAYLOAD) return -1;
    if (have < CONTROL_HEADER_SIZE + len) return 0;
    *type = buf[0];
    *length = len;
    return 1;
}

/* ---------------------------------------------------------------- the run directory */

int control_run_dir(bool create, char *out, size_t size, char *err, size_t errsize) {
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    int n = xdg && xdg[0] == '/' ? snprintf(out, size, "%s/pgtide", xdg)
                                 : snprintf(out, size, "/tmp/pgtide-%u", (unsigned) geteuid());
    if (n < 0 || (size_t) n >= size) {
        snprintf(err, errsize, "the run directory path is too long (XDG_RUNTIME_DIR=%s)", xdg);
        return -1;
    }
    if (create && mkdir(out, 0700) != 0 && errno != EEXIST) {
        snprintf(err, errsize, "cannot create the run directory %s: %s", out, strerror(errno));
        return -1;
    }
    struct stat st;
    /* lstat, not stat: a symlink planted at /tmp/pgtide-UID by someone else is refused. */
    if (lstat(out, &st) != 0) {
        if (errno == ENOENT && !create) return 1;
        snprintf(err, errsize, "cannot inspect the run directory %s: %s", out, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        snprintf(err, errsize, "the run directory %s is not a directory; remove it", out);
        return -1;
    }
    if (st.st_uid != geteuid()) {
        snprintf(err, errsize,
                 "the run directory %s belongs to uid %u, not to us (uid %u); "
                 "remove it or set XDG_RUNTIME_DIR",
                 out, (unsigned) st.st_uid, (unsigned) geteuid());
        return -1;
    }
    if (st.st_mode & 077) {
        snprintf(err, errsize,
                 "the run directory %s can be entered by other users (mode %03o); "
                 "fix: chmod 700 %s",
                 out, (unsigned) (st.st_mode & 0777), out);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- server */

static void server_free(control_server *s) {
    free(s->path);
    free(s);
}

static void server_closed(uv_handle_t *h) {
    control_server *s = h->data;
    if (--s->open_handles == 0 && s->orphan) server_free(s);
}

control_server *control_server_new(tide_runtime *rt) {
    control_server *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    uv_pipe_init(rt->loop, &s->pipe, 0);
    s->pipe.data = s;
    uv_timer_init(rt->loop, &s->timer);
    s->timer.data = s;
    s->open_handles = 2;
    return s;
}

static void server_wake_waiter(control_server *s) {
    tide_co *w = s->waiter;
    s->waiter = NULL;
    if (w) sched_ready(w);
}

static void server_timer_fired(uv_timer_t *t) {
    control_server *s = t->data;
    s->timed_out = true;
    server_wake_waiter(s);
}

void control_server_arm(control_server *s, double seconds) {
    s->timed_out = false;
    if (seconds >= 0) uv_timer_start(&s->timer, server_timer_fired, (uint64_t) (seconds * 1000.0 + 0.5), 0);
}

void control_server_disarm(control_server *s) { uv_timer_stop(&s->timer); }

void control_server_wake(control_server *s) {
    if (!s->waiter) return;
    s->timed_out = true;
    server_wake_waiter(s);
}

static void server_connection(uv_stream_t *stream, int status) {
    control_server *s = stream->data;
    if (status < 0)
        s->listen_status = status;
    else
        s->pending++;
    server_wake_waiter(s);
}

int control_server_listen(control_server *s, const char *path, char *err, size_t errsize) {
    struct sockaddr_un sun;
    if (strlen(path) >= sizeof sun.sun_path) {
        snprintf(err, errsize,
                 "the control socket path %s is too long (%zu bytes, at most %zu); "
                 "choose a shorter one with --control",
                 path, strlen(path), sizeof sun.sun_path - 1);
        return -ENAMETOOLONG;
    }
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            snprintf(err, errsize, "%s exists and is not a socket; not touching it", path);
            return -EEXIST;
        }
        /* Someone answering means a live process serves this task; a refusal means the
         * process that made the socket is gone, so the file is only litter. */
        int fd = control_connect(path);
        if (fd >= 0) {
            close(fd);
            snprintf(err, errsize, "a running pgtide already serves %s", path);
            return -EADDRINUSE;
        }
        if (fd != -ECONNREFUSED) {
            snprintf(err, errsize, "cannot check the existing socket %s: %s", path, strerror(-fd));
            return fd;
        }
        if (unlink(path) != 0 && errno != ENOENT) {
            snprintf(err, errsize, "cannot remove the stale socket %s: %s", path, strerror(errno));
            return -errno;
        }
    }
    /* The mask makes the socket 0600 from its first instant; the chmod is belt and braces. */
    mode_t old = umask(0177);
    int rc = uv_pipe_bind(&s->pipe, path);
    umask(old);
    if (rc != 0) {
        snprintf(err, errsize, "cannot create the control socket %s: %s", path, uv_strerror(rc));
        return rc;
    }
    s->path = strdup(path);
    s->bound = true;
    if (lstat(path, &st) == 0) {
        s->dev = st.st_dev;
        s->ino = st.st_ino;
    }
    if (chmod(path, 0600) != 0 || (rc = uv_listen((uv_stream_t *) &s->pipe, 16, server_connection)) != 0) {
        snprintf(err, errsize, "cannot listen on the control socket %s: %s", path,
                 rc ? uv_strerror(rc) : strerror(errno));
        return rc ? rc : -errno;
    }
    return 0;
}

void control_server_close(control_server *s) {
    if (s->closing) return;
    s->closing = true;
    if (s->bound && s->path) {
        /* Another run may have replaced our socket (we were presumed dead): leave its file. */
        struct stat st;
        if (lstat(s->path, &st) == 0 && st.st_dev == s->dev && st.st_ino == s->ino) unlink(s->path);
    }
    server_wake_waiter(s);
    uv_close((uv_handle_t *) &s->pipe, server_closed);
    uv_close((uv_handle_t *) &s->timer, server_closed);
}

void control_server_release(control_server *s) {
    /* Called from __gc, possibly inside lua_close: coroutine records may be gone already,
     * so nobody is woken from here. */
    s->waiter = NULL;
    s->orphan = true;
    if (!s->closing)
        control_server_close(s);
    else if (s->open_handles == 0)
        server_free(s);
}

/* ---------------------------------------------------------------- channels */

static void channel_free(control_channel *ch) {
    free(ch->in);
    free(ch);
}

static void channel_closed(uv_handle_t *h) {
    control_channel *ch = h->data;
    ch->handle_closed = true;
    if (ch->orphan) channel_free(ch);
}

control_channel *control_channel_new(tide_runtime *rt) {
    control_channel *ch = calloc(1, sizeof *ch);
    if (!ch) return NULL;
    uv_pipe_init(rt->loop, &ch->pipe, 0);
    ch->pipe.data = ch;
    return ch;
}

static void wake(tide_co **slot) {
    tide_co *w = *slot;
    *slot = NULL;
    if (w) sched_ready(w);
}

static void channel_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
    (void) hint;
    control_channel *ch = h->data;
    if (ch->in_cap - ch->in_len < READ_CHUNK) {
        size_t cap = ch->in_cap * 2 > ch->in_len + READ_CHUNK ? ch->in_cap * 2 : ch->in_len + READ_CHUNK;
        char *grown = realloc(ch->in, cap);
        /* read_cb gets UV_ENOBUFS */
        if (!grown) {
            *buf = uv_buf_init(NULL, 0);
            return;
        }
        ch->in = grown;
        ch->in_cap = cap;
    }
    *buf = uv_buf_init(ch->in + ch->in_len, (unsigned) (ch->in_cap - ch->in_len));
}

static void channel_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
    (void) buf;
    control_channel *ch = stream->data;
    if (nread < 0) {
        ch->read_status = (int) nread;
        uv_read_stop(stream);
    } else if (nread > 0) {
        ch->in_len += (size_t) nread;
        char type;
        size_t len;
        if (control_frame_peek(ch->in, ch->in_len, &type, &len) < 0) {
            ch->read_status = UV_E2BIG; /* a peer that does not speak the protocol */
            uv_read_stop(stream);
        }
    }
    char type;
    size_t len;
    if (ch->reader && (ch->read_status != 0 || control_frame_peek(ch->in, ch->in_len, &type, &len) == 1))
        wake(&ch->reader);
}

int control_channel_accept(control_server *s, control_channel *ch) {
    s->pending--;
    int rc = uv_accept((uv_stream_t *) &s->pipe, (uv_stream_t *) &ch->pipe);
    if (rc != 0) return rc;
    uv_os_fd_t fd;
    struct ucred cred;
    socklen_t len = sizeof cred;
    if (uv_fileno((uv_handle_t *) &ch->pipe, &fd) != 0 ||
        getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || cred.uid != geteuid()) {
        s->refused++;
        return CONTROL_REFUSED;
    }
    return uv_read_start((uv_stream_t *) &ch->pipe, channel_alloc, channel_read);
}

int control_channel_peek(control_channel *ch, char *type, size_t *length) {
    return control_frame_peek(ch->in, ch->in_len, type, length) == 1;
}

void control_channel_consume(control_channel *ch, size_t n) {
    memmove(ch->in, ch->in + n, ch->in_len - n);
    ch->in_len -= n;
    if (ch->in_cap > 4 * READ_CHUNK && ch->in_len < READ_CHUNK) {
        /* Give back the memory of a big frame once it is taken. */
        char *smaller = realloc(ch->in, READ_CHUNK);
        if (smaller) {
            ch->in = smaller;
            ch->in_cap = READ_CHUNK;
        }
    }
}

typedef struct send_req {
    uv_write_t req; /* first: the callback casts back */
    control_channel *ch;
    char data[];
} send_req;

static void channel_written(uv_write_t *req, int status) {
    send_req *r = (send_req *) req;
    control_channel *ch = r->ch;
    free(r);
    /* Write callbacks run before the close callback, even for cancelled writes, so ch is
     * still there. */
    if (status < 0 && ch->write_status == 0) ch->write_status = status;
    if (ch->drainer && (status < 0 || control_channel_queued(ch) <= DRAIN_LOW_WATER)) wake(&ch->drainer);
}

int control_channel_send(control_channel *ch, char type, const char *payload, size_t length) {
    if (ch->closing) return UV_EPIPE;
    if (ch->write_status) return ch->write_status;
    if (length > CONTROL_MAX_PAYLOAD) return UV_E2BIG;
    send_req *r = malloc(sizeof *r + CONTROL_HEADER_SIZE + length);
    if (!r) return UV_ENOMEM;
    r->ch = ch;
    control_frame_header(r->data, type, length);
    if (length) memcpy(r->data + CONTROL_HEADER_SIZE, payload, length);
    uv_buf_t buf = uv_buf_init(r->data, (unsigned) (CONTROL_HEADER_SIZE + length));
    int rc = uv_write(&r->req, (uv_stream_t *) &ch->pipe, &buf, 1, channel_written);
    if (rc != 0) {
        free(r);
        ch->write_status = rc;
    }
    return rc;
}

size_t control_channel_queued(control_channel *ch) {
    return uv_stream_get_write_queue_size((uv_stream_t *) &ch->pipe);
}

void control_channel_close(control_channel *ch) {
    if (ch->closing) return;
    ch->closing = true;
    wake(&ch->reader);
    wake(&ch->drainer);
    uv_close((uv_handle_t *) &ch->pipe, channel_closed);
}

void control_channel_release(control_channel *ch) {
    ch->reader = ch->drainer = NULL; /* see control_server_release */
    ch->orphan = true;
    if (!ch->closing)
        control_channel_close(ch);
    else if (ch->handle_closed)
        channel_free(ch);
}

/* ---------------------------------------------------------------- blocking client */

/* Set by the SIGINT handler the client installs while it waits for an answer. */
static volatile sig_atomic_t interrupt_seen;
static void on_interrupt(int sig) {
    (void) sig;
    interrupt_seen = 1;
}

int control_connect(const char *path) {
    struct sockaddr_un sun;
    memset(&sun, 0, sizeof sun);
    sun.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof sun.sun_path) return -ENAMETOOLONG;
    strcpy(sun.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    if (connect(fd, (struct sockaddr *) &sun, sizeof sun) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

static int write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        p += w;
        n -= (size_t) w;
    }
    return 0;
}

int control_client_send(control_client *c, char type, const char *payload, size_t length) {
    if (length > CONTROL_MAX_PAYLOAD) return -E2BIG;
    /* A Ctrl-C caught while the previous request ended belongs to that request. */
    interrupt_seen = 0;
    char header[CONTROL_HEADER_SIZE];
    control_frame_header(header, type, length);
    int rc = write_all(c->fd, header, sizeof header);
    return rc ? rc : write_all(c->fd, payload, length);
}

int control_client_receive(control_client *c, double seconds, bool interruptible, char *type,
                           size_t *length) {
    /* SIGINT is blocked except inside ppoll, so a Ctrl-C cannot slip in between the flag
     * test and the wait (the race a plain poll would have). */
    struct sigaction old_action, action;
    sigset_t blocked, old_mask;
    if (interruptible) {
        memset(&action, 0, sizeof action);
        action.sa_handler = on_interrupt;
        sigemptyset(&action.sa_mask);
        sigaction(SIGINT, &action, &old_action);
        sigemptyset(&blocked);
        sigaddset(&blocked, SIGINT);
        sigprocmask(SIG_BLOCK, &blocked, &old_mask);
    }
    double deadline = seconds >= 0 ? tide_monotonic() + seconds : 0;
    int rc;
    for (;;) {
        int frame = control_frame_peek(c->in, c->in_len, type, length);
        if (frame != 0) {
            rc = frame > 0 ? 1 : -E2BIG;
            break;
        }
        if (interruptible && interrupt_seen) {
            interrupt_seen = 0;
            rc = -EINTR;
            break;
        }
        struct timespec ts, *tsp = NULL;
        if (seconds >= 0) {
            double left = deadline - tide_monotonic();
            if (left <= 0) {
                rc = 0;
                break;
            }
            ts.tv_sec = (time_t) left;
            ts.tv_nsec = (long) ((left - (double) ts.tv_sec) * 1e9);
            tsp = &ts;
        }
        struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
        int n = ppoll(&pfd, 1, tsp, interruptible ? &old_mask : NULL);
        if (n < 0) {
            if (errno == EINTR) continue;
            rc = -errno;
            break;
        }
        if (n == 0) continue;
        if (c->in_cap - c->in_len < READ_CHUNK) {
            size_t cap = c->in_len + READ_CHUNK * 2;
            char *grown = realloc(c->in, cap);
            if (!grown) {
                rc = -ENOMEM;
                break;
            }
            c->in = grown;
            c->in_cap = cap;
        }
        ssize_t got = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
        if (got < 0) {
            if (errno == EINTR || errno == EAGAIN) continue;
            rc = -errno;
            break;
        }
        if (got == 0) {
            rc = -EPIPE;
            break;
        }
        c->in_len += (size_t) got;
    }
    if (interruptible) {
        sigprocmask(SIG_SETMASK, &old_mask, NULL);
        sigaction(SIGINT, &old_action, NULL);
    }
    return rc;
}

void control_client_consume(control_client *c, size_t n) {
    memmove(c->in, c->in + n, c->in_len - n);
    c->in_len -= n;
}
