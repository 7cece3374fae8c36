/*
 * control.h — the control socket of a live task (docs/live.md): a Unix socket per running
 * task in a private per-user directory, carrying length-prefixed frames.
 *
 * The server side lives on the task's loop (a uv_pipe_t listening, one uv_pipe_t per attached
 * client) and never blocks it. The client side (`pgtide status`, `pgtide attach`) is plain
 * blocking socket I/O: the attach client asks the server for completions from inside
 * libedit's readline, where no loop turn can happen, and it has nothing else to do anyway.
 *
 * A frame is 1 byte of type, 4 bytes of payload length (big-endian), then the payload.
 */
#ifndef TIDE_CONTROL_H
#define TIDE_CONTROL_H

#include <stddef.h>
#include <sys/types.h>
#include "runtime/runtime.h"

#define CONTROL_HEADER_SIZE 5
#define CONTROL_MAX_PAYLOAD (64u * 1024 * 1024)
#define CONTROL_REFUSED 1 /* control_channel_accept: the peer is another user */

/* Write the header of a frame of `length` payload bytes. */
void control_frame_header(char out[CONTROL_HEADER_SIZE], char type, size_t length);
/* 1 when buf starts with a whole frame (type and payload length set), 0 when more bytes are
 * needed, -1 when the announced length is over CONTROL_MAX_PAYLOAD. */
int control_frame_peek(const char *buf, size_t have, char *type, size_t *length);

/* The per-user run directory: $XDG_RUNTIME_DIR/pgtide, else /tmp/pgtide-UID. Created 0700
 * when `create`; either way it must be a directory of ours that nobody else can enter.
 * Returns 0, 1 when it does not exist (and !create), -1 with a message in err. */
int control_run_dir(bool create, char *out, size_t size, char *err, size_t errsize);

/* ---------------------------------------------------------------- server, on the loop */

typedef struct control_server {
    uv_pipe_t pipe;
    uv_timer_t timer; /* accept's timeout: the live loop's tick, without a wait record
                       * that would outlive the process's last loop turn */
    char *path;
    dev_t dev;
    ino_t ino; /* the socket file we bound: unlinked on close only if still ours */
    bool bound;
    tide_co *waiter;   /* coroutine blocked in accept */
    int pending;       /* connections libuv announced and we have not accepted */
    int listen_status; /* < 0 once listening failed */
    int refused;       /* connections from other users, closed at once */
    bool timed_out;    /* accept's timer fired, or control_server_wake was called */
    int open_handles;  /* pipe and timer until their close callbacks ran */
    bool closing, orphan;
} control_server;

typedef struct control_channel {
    uv_pipe_t pipe;
    char *in; /* bytes received and not taken yet */
    size_t in_len, in_cap;
    tide_co *reader;  /* coroutine waiting for a whole frame */
    tide_co *drainer; /* coroutine waiting for the write queue to shrink */
    int read_status;  /* 0 while reading; UV_EOF or an error once it ended */
    int write_status; /* 0, or the first write error */
    bool closing, handle_closed, orphan;
} control_channel;

control_server *control_server_new(tide_runtime *rt);
/* Bind and listen. A socket file left at `path` by a dead process is replaced; a live one is
 * refused with -EADDRINUSE. Returns 0 or a negative errno with a message in err. */
int control_server_listen(control_server *s, const char *path, char *err, size_t errsize);
/* Wait for a connection at most `seconds` (< 0: no limit): arms the timer. */
void control_server_arm(control_server *s, double seconds);
void control_server_disarm(control_server *s);
void control_server_wake(control_server *s);    /* end the current wait now, as a timeout */
void control_server_close(control_server *s);   /* stop, unlink our socket, wake the waiter */
void control_server_release(control_server *s); /* the Lua side lets go (frees when closed) */

control_channel *control_channel_new(tide_runtime *rt);
/* Accept one pending connection into ch and start reading. 0, CONTROL_REFUSED, or a libuv
 * error code. */
int control_channel_accept(control_server *s, control_channel *ch);
/* 1 with a whole frame at ch->in (type, length), 0 when none is complete yet. */
int control_channel_peek(control_channel *ch, char *type, size_t *length);
void control_channel_consume(control_channel *ch, size_t n);
/* Queue a frame; returns 0 or a libuv error code. Never blocks. */
int control_channel_send(control_channel *ch, char type, const char *payload, size_t length);
size_t control_channel_queued(control_channel *ch);
void control_channel_close(control_channel *ch);
void control_channel_release(control_channel *ch);

/* ---------------------------------------------------------------- client, blocking */

typedef struct control_client {
    int fd;
    char *in;
    size_t in_len, in_cap;
} control_client;

/* A connected socket, or a negative errno (-ENOENT: no socket, -ECONNREFUSED: stale). */
int control_connect(const char *path);
int control_client_send(control_client *c, char type, const char *payload, size_t length);
/* Wait for a whole frame: 1 (type, length; payload at c->in + CONTROL_HEADER_SIZE), 0 on
 * timeout (seconds < 0: none), -EINTR when `interruptible` and SIGINT arrived, -EPIPE when
 * the server closed the connection, another negative errno on failure. */
int control_client_receive(control_client *c, double seconds, bool interruptible, char *type, size_t *length);
void control_client_consume(control_client *c, size_t n);

#endif
