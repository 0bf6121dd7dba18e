/* tclient.h: a small blocking client for parleyd integration tests.
 *
 * Everything here talks to a real parleyd over loopback sockets, with its own HTTP and WebSocket
 * code, so tests can also send malformed bytes. Every call that waits has a timeout (T_TIMEOUT_MS
 * unless told), so a test can fail but never hang. Functions print a line starting with "# " to
 * stderr whenever they get something they did not expect, so a failing assertion has context.
 *
 * Parts:
 *   tsrv_*   start / stop / kill / restart a parleyd on a free port with a temp data dir
 *   thttp_*  HTTP/1.1 requests (one-shot, raw bytes, keep-alive connection)
 *   tws_*    WebSocket client (handshake, frames of any shape, JSON frames, parley helpers)
 *   tuser_*  register / log in
 *   tjwt_*   decode and sign HS256 JWTs (for forged and expired tokens)
 *   tj_*     JSON field access by dotted path, for terse assertions
 */
#ifndef T_CLIENT_H
#define T_CLIENT_H

#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/buf.h"
#include "common/util.h"

#define T_TIMEOUT_MS 5000

/* Return codes of the I/O calls (0 or a count means success). */
#define T_ERR     (-1) /* I/O error or protocol violation by the peer */
#define T_TIMEOUT (-2) /* nothing (complete) arrived in time */
#define T_CLOSED  (-3) /* the peer closed the TCP connection */

/* ---------------------------------------------------------------- diagnostics and test glue */

/* Prints "# " + message + newline to stderr. */
void t_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Set by the T_TEST wrapper when a test body returns normally. A failing cmocka assertion
 * jumps out of the body, so a teardown sees false and can dump the server logs. */
extern bool t_passed;

/* Defines a cmocka test `name` whose body follows; the body records success in t_passed. */
#define T_TEST(name)                                                                               \
    static void name##_body(void **state __attribute__((unused)));                                 \
    static void name(void **state)                                                                 \
    {                                                                                              \
        t_passed = false;                                                                          \
        name##_body(state);                                                                        \
        t_passed = true;                                                                           \
    }                                                                                              \
    static void name##_body(void **state __attribute__((unused)))

/* A unique lower-case name: prefix + "_" + a per-process counter + pid digits (<= 32 chars). */
void t_name(char *out, size_t cap, const char *prefix);
/* A unique request id / cmid: prefix + counter. */
void t_id(char *out, size_t cap, const char *prefix);

/* Milliseconds to sleep (only for pacing, e.g. obeying retry_after, never to synchronise). */
void t_sleep_ms(int ms);

/* ---------------------------------------------------------------- server harness */

#define TSRV_MAX_ARGS 16

typedef struct tsrv {
    pid_t pid; /* 0 when not running */
    int port;
    bool own_dir; /* dir was made by tsrv_start and is removed by tsrv_cleanup */
    int nargs;
    char *args[TSRV_MAX_ARGS]; /* extra arguments, kept for restarts */
    char dir[PATH_MAX];
    char log_path[PATH_MAX + 16];
    int last_status;
} tsrv;

/* Starts parleyd (env PARLEYD, default build/asan/parleyd) on a free loopback port with data in
 * data_dir (or a new temp dir when NULL) plus extra arguments, and waits until GET /v1/health
 * answers 200 (20 s). Returns 0, or T_ERR after printing the log tail.
 * Usage: tsrv_start(&s, NULL) or tsrv_start(&s, dir, "--log-level", "debug"). */
int tsrv_start_args(tsrv *s, const char *data_dir, ...);
#define tsrv_start(s, ...) tsrv_start_args((s), __VA_ARGS__, (const char *)NULL)
/* SIGTERM, wait up to 20 s (then SIGKILL). Returns the exit status: 0 clean exit, N exit code,
 * 128+signal when killed by a signal, T_TIMEOUT when it had to be killed. Prints the log tail
 * for anything but 0. */
int tsrv_stop(tsrv *s);
/* SIGKILL and reap. Returns 0. */
int tsrv_kill9(tsrv *s);
/* Starts again on the same data dir with the same arguments (on a new free port). */
int tsrv_restart(tsrv *s);
/* Kills the server if it still runs and removes a temp data dir (kept if env T_KEEP is set). */
void tsrv_cleanup(tsrv *s);
/* Prints the last `lines` lines of the server log to stderr. */
void tsrv_log_tail(const tsrv *s, int lines);
/* Prints the log tails of every running server (used after a failed test). */
void tsrv_dump_all(void);
/* Reads DIR/name into out. Returns the byte count or T_ERR. */
long tsrv_read_file(const tsrv *s, const char *name, uint8_t *out, size_t cap);

/* For teardown functions: dumps server logs if the test body failed. */
void t_after_test(void);

/* The usual per-test fixture: tsrv_up starts parleyd with fast password hashing in a temp dir;
 * tsrv_down dumps logs if the test failed, stops the server and removes the dir. Each returns 0,
 * or -1 (so cmocka fails the test) when the server would not start or did not exit cleanly on
 * SIGTERM (a leak or a sanitizer report makes the exit status non-zero). */
int tsrv_up(tsrv *s);
int tsrv_down(tsrv *s);
/* Declares `static tsrv name` and the cmocka setup and teardown functions that run tsrv_up and
 * tsrv_down on it, for a test file whose every test gets a fresh server. */
#define TSRV_FIXTURE(name)                                                                         \
    static tsrv name;                                                                              \
    static int setup(void **state)                                                                 \
    {                                                                                              \
        (void)state;                                                                               \
        return tsrv_up(&name);                                                                     \
    }                                                                                              \
    static int teardown(void **state)                                                              \
    {                                                                                              \
        (void)state;                                                                               \
        return tsrv_down(&name);                                                                   \
    }

/* ---------------------------------------------------------------- HTTP */

typedef struct thttp_resp {
    int status;
    char *head; /* status line and headers, NUL-terminated */
    char *body; /* NUL-terminated (may contain NULs; see body_len) */
    size_t body_len;
    json_t *json; /* body parsed as JSON, NULL if empty or not JSON */
} thttp_resp;

void thttp_resp_free(thttp_resp *r);
/* Copies the value of header `name` (case-insensitive) into out; returns out or NULL. */
const char *thttp_header(const thttp_resp *r, const char *name, char *out, size_t cap);

/* Builds a request: method, path, Host, optional Bearer token, and for a body
 * Content-Type: application/json and Content-Length. Caller frees. */
char *thttp_format(int port, const char *method, const char *path, const char *token,
                   const char *body);

/* One request on a new connection. body is JSON text or NULL. On 0, *status is the HTTP status
 * and *resp (if resp) the parsed JSON body or NULL; the caller json_decref()s it. */
int thttp_req(int port, const char *method, const char *path, const char *token, const char *body,
              int *status, json_t **resp);
/* Same with the body built by json_pack(fmt, ...). */
int thttp_reqp(int port, const char *method, const char *path, const char *token, int *status,
               json_t **resp, const char *fmt, ...);
/* Same as thttp_req with the whole response. */
int thttp_do(int port, const char *method, const char *path, const char *token, const char *body,
             thttp_resp *r);
/* Sends raw bytes on a new connection (reading while writing, so an early answer is not lost)
 * and reads one response. *closed (if given) tells whether the server then closed the
 * connection (waited for up to 2 s). */
int thttp_raw(int port, const void *data, size_t len, thttp_resp *r, bool *closed);

/* A keep-alive connection for pipelining. */
typedef struct thttp_conn {
    int fd;
    buf_t in;
    bool eof;
} thttp_conn;
int thttp_open(thttp_conn *c, int port);
int thttp_write(thttp_conn *c, const void *data, size_t len);
/* Reads the next response. */
int thttp_read(thttp_conn *c, thttp_resp *r, int timeout_ms);
/* 1 when the server closed the connection within timeout_ms, 0 if not, T_ERR if data came. */
int thttp_wait_eof(thttp_conn *c, int timeout_ms);
void thttp_close(thttp_conn *c);

/* The error code of an error body ("" when there is none). */
const char *t_err_code(json_t *resp);

/* ---------------------------------------------------------------- WebSocket */

enum { WS_CONT = 0, WS_TEXT = 1, WS_BIN = 2, WS_CLOSE = 8, WS_PING = 9, WS_PONG = 10 };

typedef struct tws {
    int fd;
    int timeout_ms; /* default for calls given timeout 0 */
    buf_t in;       /* received bytes; those before in_off are parsed already */
    size_t in_off;
    buf_t out;  /* bytes queued to send */
    buf_t frag; /* payload of a fragmented message being assembled */
    int frag_opcode;
    int frag_n;
    bool eof;        /* the server closed the TCP connection */
    bool got_close;  /* a close frame arrived */
    bool sent_close; /* we sent a close frame */
    int close_code;  /* of the received close frame; 1005 when it had none */
    char close_reason[128];
    char label[32]; /* name for diagnostics */
    /* Side frames: presence, typing, receipt and event frames are not answers to anything, and
     * may come between a request and its answer. Helpers that wait for an answer (tws_auth,
     * tws_expect_reply, tws_send_msg, tws_send_batch, tws_sync_page) set them aside in `held`;
     * tws_recv_json returns held frames first, so nothing is lost or reordered among them.
     * Types listed in `ignore` are dropped instead (counted in n_ignored). */
    json_t *held; /* array of JSON frames */
    char ignore[128];
    int n_ignored;
} tws;

/* Comma-separated frame types new sockets drop (copied into tws.ignore by tws_open); NULL by
 * default. A test file that is not about presence sets e.g. "presence,typing". */
extern const char *tws_default_ignore;
/* Sets the dropped types of one socket ("" for none). */
void tws_ignore(tws *ws, const char *types);
/* For loops over tws_next: if j (owned) is a side frame, holds or drops it and returns true. */
bool tws_hold_side(tws *ws, json_t *j);

typedef struct tws_msg {
    int opcode; /* WS_TEXT, WS_BIN, WS_CLOSE, WS_PONG (pings are answered and skipped) */
    uint8_t *data;
    size_t len;  /* payload, NUL-terminated; for WS_CLOSE the reason */
    int nframes; /* frames the message came in */
    int close_code;
} tws_msg;
void tws_msg_free(tws_msg *m);

/* TCP connect + upgrade handshake (random key; Sec-WebSocket-Accept checked). NULL on failure. */
tws *tws_open(int port);
/* Closes the socket and frees. NULL is fine. */
void tws_free(tws *ws);
/* Sends close(code), waits for the server's close frame and EOF (timeout 0 = default), frees. */
int tws_close(tws *ws, int code, int timeout_ms);

/* Sends one frame of any shape (rsv is the 3-bit RSV field). Flushes everything queued. */
int tws_send_frame(tws *ws, bool fin, int rsv, int opcode, bool mask, const void *p, size_t n);
/* A masked text message in nfrag fragments (1 = unfragmented). */
int tws_send_text(tws *ws, const char *s, size_t n, int nfrag);
/* Encodes j compactly and sends it as one text frame (j is not stolen). */
int tws_send_json(tws *ws, json_t *j);
/* Same with json_pack(fmt, ...). */
int tws_sendp(tws *ws, const char *fmt, ...);

/* Queues a frame / JSON without sending (for pipelining); tws_pump writes it. */
void tws_queue_frame(tws *ws, bool fin, int rsv, int opcode, bool mask, const void *p, size_t n);
void tws_queue_json(tws *ws, json_t *j);
/* One round of I/O over n sockets: writes what can be written, reads what has arrived, waiting
 * at most timeout_ms for something to happen. Returns 0 or T_ERR (poll failed). */
int tws_pump(tws **ws, int n, int timeout_ms);
/* Takes the next complete message out of the received bytes without any I/O.
 * 1: *m filled; 0: need more bytes; T_ERR: malformed frame from the server. */
int tws_next(tws *ws, tws_msg *m);

/* The next message (text, binary, close or pong). 0, T_TIMEOUT, T_CLOSED (EOF), T_ERR. */
int tws_recv(tws *ws, tws_msg *m, int timeout_ms);
/* The next message as a JSON object; NULL (with a note) if it is anything else or times out.
 * Held side frames come first; skips nothing but the types in ws->ignore. */
json_t *tws_recv_json(tws *ws, int timeout_ms);
/* The next JSON object that is not a side frame (those are held), not looking at held ones;
 * NULL (with a note) on anything that is not a JSON object, or a timeout. */
json_t *tws_recv_reply(tws *ws, int timeout_ms);
/* The next message, which must be a JSON object with "type": type; NULL (with a note) else. */
json_t *tws_expect_type(tws *ws, const char *type, int timeout_ms);
/* The answer with "type": type and "id": id; side frames before it are held (see tws). */
json_t *tws_expect_reply(tws *ws, const char *type, const char *id, int timeout_ms);
/* Waits for the server's close frame, skipping (and printing) text messages before it.
 * Returns the close code, T_CLOSED (EOF without close frame), T_TIMEOUT or T_ERR. */
int tws_wait_close(tws *ws, int timeout_ms);
/* True when nothing arrives within ms and nothing is held (a negative check; prints what came
 * otherwise). Ignored types do not count. */
bool tws_silent(tws *ws, int ms);

/* ---------------------------------------------------------------- Parley helpers */

typedef struct tuser {
    char id[ID_MAX];
    char device[ID_MAX];
    char username[40];
    char password[80];
    char token[2048];
    int64_t expires_at;
} tuser;

/* POST /v1/accounts. Returns the HTTP status (T_ERR on I/O failure); fills u on 201. */
int tuser_register(int port, const char *username, const char *password, tuser *u);
/* POST /v1/sessions. Returns the HTTP status; fills u on 200. */
int tuser_login(int port, const char *login, const char *password, tuser *u);
/* Registers a fresh user with a unique name from prefix; asserts nothing, returns status. */
int tuser_new(int port, const char *prefix, tuser *u);

/* Connects and authenticates; returns the socket after `ready` (user and device checked
 * against the token's claims) and the head, or NULL. */
tws *tws_auth(int port, const char *token, int64_t *head);
/* tws_auth + a sync from head until `more` is false, so the connection is live. Fails (NULL)
 * if that sync returns messages, since callers use it when nothing is in flight. label names
 * the socket in notes. */
tws *tws_live(int port, const tuser *u, const char *label);

/* Sends {"type":"send","id","to","cmid","kind":"text","body":{"text"}}. */
int tws_send_textmsg(tws *ws, const char *id, const char *to, const char *cmid, const char *text);
/* Sends a text message and waits for its ack, waiting retry_after and resending on
 * rate_limited. Returns the ack (new reference) or NULL (with a note). */
json_t *tws_send_msg(tws *ws, const char *to, const char *cmid, const char *text);

/* Pipelined bulk send of n text messages to `to`, at most `window` outstanding, resending
 * rate-limited ones after retry_after. acks[i] gets the ack of cmids[i] (new references).
 * Anything but ack / rate_limited fails. Returns 0 or T_ERR. */
int tws_send_batch(tws *ws, const char *to, int n, char **cmids, char **texts, json_t **acks,
                   int window);

/* One sync page: sends sync{id, after, limit (omitted when <= 0)}, appends the msg frames to
 * msgs and returns the synced frame (id checked), or NULL. */
json_t *tws_sync_page(tws *ws, int64_t after, int limit, json_t *msgs);
/* Pages until more is false. *upto gets the last upto, *pages the page count (both optional).
 * Checks that each page's upto is the pos of its last msg (or its after when empty). */
int tws_sync_all(tws *ws, int64_t after, int limit, json_t *msgs, int64_t *upto, int *pages);

/* ---------------------------------------------------------------- JWT */

/* Part 0 (header) or 1 (claims) of a JWT, decoded. NULL when malformed. */
json_t *tjwt_part(const char *token, int part);
/* header.claims.signature with HMAC-SHA256 over the given key. Caller frees. */
char *tjwt_sign(json_t *header, json_t *claims, const uint8_t *key, size_t keylen);

/* ---------------------------------------------------------------- JSON access */

/* Value at a dotted path ("error.code", "user.id", "devices.0.id"), or NULL. */
json_t *tj_get(json_t *j, const char *path);
/* String at path, or "" (never NULL, so assert_string_equal reports the mismatch). */
const char *tj_str(json_t *j, const char *path);
/* Integer at path, or INT64_MIN when missing or not an integer. */
int64_t tj_int(json_t *j, const char *path);
/* 1 true, 0 false, -1 missing or not a boolean. */
int tj_bool(json_t *j, const char *path);
/* True when j is an object whose keys are exactly the comma-separated list (notes otherwise). */
bool tj_keys(json_t *j, const char *keys);
/* Compact JSON text of j in a static buffer (for notes). */
const char *tj_dump(json_t *j);

#endif
