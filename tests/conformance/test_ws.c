/* test_ws.c: WebSocket conformance (RFC 6455 and the WebSocket section of docs/protocol.md)
 * against a real parleyd.
 *
 * Every case runs on its own socket (authenticated unless it is about the handshake or about
 * authentication), asserts the exact answer, and is followed by a check that the server still
 * serves a fresh client (register, connect, authenticate, ping). The last case stops the server
 * and asserts exit status 0 (no leak, no crash under ASan/UBSan). Nothing waits without a
 * timeout.
 *
 * Every case asserts what RFC 6455 and docs/protocol.md require; a header announcing 1 TiB must be
 * refused before anything is allocated for it (test_len_header_1tib_*).
 *
 * Helpers the shared client (tests/lib) lacks, written here as static functions:
 *   ws_adopt()      turns a connection that got 101 from a hand-written handshake into a tws
 *   ws_send_raw()   writes bytes that no well-formed frame header can express (huge lengths)
 *   tcp_ends()      waits for the TCP connection to end after the close frame, nothing after it
 */
#include "lib/tassert.h"

#include <errno.h>
#include <openssl/evp.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#define CLOSE_MS   3000 /* how long a close frame / the end of TCP may take */
#define MAX_FRAME  131072
#define WS_GUID    "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define RFC_KEY    "dGhlIHNhbXBsZSBub25jZQ=="     /* RFC 6455 section 1.3 */
#define RFC_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" /* its Sec-WebSocket-Accept */

static tsrv srv;  /* default settings, shared by the cases */
static tsrv srv2; /* a case's own server (auth timeout, huge frame headers) */
#define PORT (srv.port)

static tuser ua; /* the user whose token opens the sockets the bad cases use */

/* The buffer of ping_padded (one at a time; freed by after_each, so a failed case leaks none). */
static char *pad_buf;

/* ---------------------------------------------------------------- socket bookkeeping */

/* Sockets of the running case, freed by after_each if an assertion jumped out first. */
#define MAX_OPEN 8
static tws *opened[MAX_OPEN];

static tws *keep(tws *ws)
{
    for (int i = 0; ws && i < MAX_OPEN; i++)
        if (!opened[i]) {
            opened[i] = ws;
            break;
        }
    return ws;
}

/* Stops tracking ws (its owner frees it now). */
static void forget(tws *ws)
{
    for (int i = 0; i < MAX_OPEN; i++)
        if (opened[i] == ws) opened[i] = NULL;
}

static void drop(tws *ws)
{
    forget(ws);
    tws_free(ws);
}

static int group_setup(void **state)
{
    (void)state;
    if (sodium_init() < 0) return -1;
    if (tsrv_start(&srv, NULL, "--pwhash", "min") != 0) return -1;
    if (tuser_new(PORT, "wsconf", &ua) != 201) return -1;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    tsrv_cleanup(&srv2);
    tsrv_cleanup(&srv);
    return 0;
}

static int after_each(void **state)
{
    (void)state;
    t_after_test();
    for (int i = 0; i < MAX_OPEN; i++) {
        tws_free(opened[i]);
        opened[i] = NULL;
    }
    tsrv_cleanup(&srv2); /* kills it if a case failed while it ran; removes its dir */
    free(pad_buf);
    pad_buf = NULL;
    return 0;
}

/* ---------------------------------------------------------------- helpers */

static const char *rc_str(int rc)
{
    static char b[32];
    switch (rc) {
    case T_TIMEOUT:
        return "a timeout";
    case T_CLOSED:
        return "TCP closed without a close frame";
    case T_ERR:
        return "an error";
    default:
        snprintf(b, sizeof b, "close %d", rc);
        return b;
    }
}

/* A new authenticated socket of user ua on the shared server, tracked, labelled. */
static tws *authed(const char *label)
{
    tws *ws = keep(tws_auth(PORT, ua.token, NULL));
    assert_non_null(ws);
    snprintf(ws->label, sizeof ws->label, "%.31s", label);
    return ws;
}

/* A new socket that has done the handshake only. */
static tws *opened_on(int port, const char *label)
{
    tws *ws = keep(tws_open(port));
    assert_non_null(ws);
    snprintf(ws->label, sizeof ws->label, "%.31s", label);
    return ws;
}

/* After the close frame: the server ends the TCP connection and sends nothing more. */
static bool tcp_ends(tws *ws, int ms)
{
    tws_msg m;
    int rc = tws_recv(ws, &m, ms);
    if (rc == T_CLOSED) return true;
    if (rc == 0) {
        t_note("ws[%s]: opcode %d (%zu bytes) after the close frame", ws->label, m.opcode, m.len);
        tws_msg_free(&m);
    } else {
        t_note("ws[%s]: TCP still open %d ms after the close frame (%s)", ws->label, ms,
               rc_str(rc));
    }
    return false;
}

/* Waits for the server's close frame, which must carry one of the n codes in want, and for the
 * end of the TCP connection; frees ws. Returns the code. */
static int expect_close_in(tws *ws, const int *want, int n, const char *what)
{
    int got = tws_wait_close(ws, CLOSE_MS);
    bool ok = false;
    for (int i = 0; i < n; i++) ok = ok || got == want[i];
    bool ended = got >= 0 && tcp_ends(ws, CLOSE_MS);
    if (!ok || !ended)
        t_note("%s: want close %d%s and the TCP connection ended; got %s%s", what, want[0],
               n > 1 ? " (or another allowed code)" : "", rc_str(got),
               got >= 0 && !ended ? " but the TCP connection did not end" : "");
    else if (n > 1)
        t_note("%s: got close %d (allowed)", what, got);
    drop(ws);
    assert_true(ok);
    assert_true(ended);
    return got;
}

static void expect_close(tws *ws, int want, const char *what)
{
    int got = expect_close_in(ws, &want, 1, what);
    assert_int_equal(got, want);
}

/* Register a fresh user, connect, authenticate, ping, close 1000: the server is fine. */
static void server_fine_on(int port)
{
    tuser u;
    assert_int_equal(tuser_new(port, "fine", &u), 201);
    tws *ws = keep(tws_auth(port, u.token, NULL));
    assert_non_null(ws);
    snprintf(ws->label, sizeof ws->label, "fine");
    assert_ws_alive(ws);
    forget(ws);
    assert_int_equal(tws_close(ws, 1000, CLOSE_MS), 1000);
}
#define server_fine() server_fine_on(PORT)

/* {"type":"ping","id":id} into out; returns its length. */
static size_t ping_json(char *out, size_t cap, const char *id)
{
    int n = snprintf(out, cap, "{\"type\":\"ping\",\"id\":\"%s\"}", id);
    assert_true(n > 0 && (size_t)n < cap);
    return (size_t)n;
}

/* A ping JSON frame of exactly total bytes, padded with a string field. Valid until the next
 * call; not to be freed. */
static char *ping_padded(const char *id, size_t total)
{
    char head[128];
    int hn = snprintf(head, sizeof head, "{\"type\":\"ping\",\"id\":\"%s\",\"pad\":\"", id);
    assert_true(hn > 0 && total >= (size_t)hn + 2);
    free(pad_buf);
    char *s = pad_buf = malloc(total + 1);
    assert_non_null(s);
    memcpy(s, head, (size_t)hn);
    memset(s + hn, 'x', total - (size_t)hn - 2);
    memcpy(s + total - 2, "\"}", 2);
    s[total] = 0;
    return s;
}

/* The JSON pong with this id comes next (side frames are held). */
static void expect_pong(tws *ws, const char *id)
{
    json_t *p = tws_expect_reply(ws, "pong", id, 0);
    assert_non_null(p);
    json_decref(p);
}

static bool is_side_frame(const tws_msg *m)
{
    if (m->opcode != WS_TEXT) return false;
    json_t *j = json_loadb((const char *)m->data, m->len, 0, NULL);
    const char *t = tj_str(j, "type");
    bool side = !strcmp(t, "presence") || !strcmp(t, "typing") || !strcmp(t, "receipt") ||
                !strcmp(t, "event");
    json_decref(j);
    return side;
}

/* The next message that is not a side frame; asserts one came. */
static void next_msg(tws *ws, tws_msg *m)
{
    for (;;) {
        int rc = tws_recv(ws, m, 0);
        if (rc != 0) t_note("ws[%s]: waiting for a message: %s", ws->label, rc_str(rc));
        assert_int_equal(rc, 0);
        if (!is_side_frame(m)) return;
        tws_msg_free(m);
    }
}

/* The next message is a pong control frame carrying exactly p[0..n). */
static void expect_ctl_pong(tws *ws, const void *p, size_t n)
{
    tws_msg m;
    next_msg(ws, &m);
    bool ok = m.opcode == WS_PONG && m.len == n && (n == 0 || memcmp(m.data, p, n) == 0);
    if (!ok)
        t_note("ws[%s]: want a pong frame of %zu bytes, got opcode %d of %zu bytes", ws->label, n,
               m.opcode, m.len);
    tws_msg_free(&m);
    assert_true(ok);
}

/* Writes raw bytes to the socket (frames whose header tws_queue_frame cannot make). */
static void ws_send_raw(tws *ws, const void *p, size_t n)
{
    const uint8_t *b = p;
    int64_t dl = mono_ms() + T_TIMEOUT_MS;
    while (n && mono_ms() < dl) {
        ssize_t w = send(ws->fd, b, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) {
            b += w;
            n -= (size_t)w;
        } else if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            t_note("ws[%s]: send: %s", ws->label, strerror(errno));
            break;
        }
    }
    assert_int_equal(n, 0);
}

/* base64(SHA-1(key + GUID)), computed here, independent of the server's code. */
static void accept_for(const char *key, char *out, size_t cap)
{
    char cat[256];
    snprintf(cat, sizeof cat, "%s%s", key, WS_GUID);
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    assert_int_equal(EVP_Digest(cat, strlen(cat), md, &n, EVP_sha1(), NULL), 1);
    sodium_bin2base64(out, cap, md, n, sodium_base64_VARIANT_ORIGINAL);
}

/* A fresh random Sec-WebSocket-Key (16 random bytes, base64). */
static void random_key(char *out, size_t cap)
{
    uint8_t raw[16];
    randombytes_buf(raw, sizeof raw);
    sodium_bin2base64(out, cap, raw, sizeof raw, sodium_base64_VARIANT_ORIGINAL);
}

/* True when header `name` of r holds `token` in its comma-separated list (any case). */
static bool header_has_token(const thttp_resp *r, const char *name, const char *token)
{
    char v[256];
    if (!thttp_header(r, name, v, sizeof v)) return false;
    size_t tl = strlen(token);
    for (char *p = v; *p;) {
        while (*p == ' ' || *p == '\t' || *p == ',') p++;
        size_t k = strcspn(p, ",");
        size_t e = k;
        while (e && (p[e - 1] == ' ' || p[e - 1] == '\t')) e--;
        if (e == tl && strncasecmp(p, token, tl) == 0) return true;
        p += k;
    }
    return false;
}

/* True when r is a correct 101 answer to a handshake with this key (notes what is wrong). */
static bool switching_ok(const thttp_resp *r, const char *key, const char *what)
{
    char want[64], got[128] = "";
    accept_for(key, want, sizeof want);
    thttp_header(r, "Sec-WebSocket-Accept", got, sizeof got);
    bool ok = r->status == 101 && strcmp(got, want) == 0 &&
              header_has_token(r, "Upgrade", "websocket") &&
              header_has_token(r, "Connection", "upgrade");
    if (!ok)
        t_note("%s: want 101 with Upgrade: websocket, Connection: Upgrade and "
               "Sec-WebSocket-Accept: %s; got %s",
               what, want, r->head ? r->head : "(nothing)");
    return ok;
}

/* Turns a connection that just got its 101 into a tws (bytes already read after the head
 * belong to the WebSocket). c is emptied. */
static tws *ws_adopt(thttp_conn *c, const char *label)
{
    tws *ws = calloc(1, sizeof *ws);
    assert_non_null(ws);
    ws->fd = c->fd;
    ws->in = c->in;
    ws->eof = c->eof;
    ws->timeout_ms = T_TIMEOUT_MS;
    buf_init(&ws->out);
    buf_init(&ws->frag);
    ws->held = json_array();
    tws_ignore(ws, tws_default_ignore);
    snprintf(ws->label, sizeof ws->label, "%.31s", label);
    c->fd = -1;
    buf_init(&c->in);
    return keep(ws);
}

/* Sends a hand-written handshake request, asserts 101 with the right accept for key, then
 * authenticates as ua on the socket and pings: the upgraded connection really works. */
static void handshake_works(const char *req, const char *key, const char *what)
{
    thttp_conn c;
    assert_int_equal(thttp_open(&c, PORT), 0);
    thttp_resp r;
    memset(&r, 0, sizeof r);
    int rc = thttp_write(&c, req, strlen(req));
    if (rc == 0) rc = thttp_read(&c, &r, T_TIMEOUT_MS);
    if (rc != 0) {
        t_note("%s: no answer to the handshake (%d)", what, rc);
        thttp_close(&c);
    }
    assert_int_equal(rc, 0);
    if (r.status != 101) {
        t_note("%s: want 101, got %s", what, r.head ? r.head : "(nothing)");
        thttp_resp_free(&r);
        thttp_close(&c);
        fail_msg("%s: the handshake was refused", what);
    }
    /* No extension or subprotocol was agreed on: Parley has none (RSV bits are errors). */
    char v[128];
    bool ext = thttp_header(&r, "Sec-WebSocket-Extensions", v, sizeof v) != NULL;
    bool proto = thttp_header(&r, "Sec-WebSocket-Protocol", v, sizeof v) != NULL;
    if (ext || proto) t_note("%s: the 101 selects an extension or a subprotocol: %s", what, r.head);
    bool hdrs = switching_ok(&r, key, what);
    thttp_resp_free(&r);
    tws *ws = ws_adopt(&c, what);
    assert_true(hdrs);
    assert_false(ext);
    assert_false(proto);
    assert_int_equal(tws_sendp(ws, "{s:s, s:s}", "type", "auth", "token", ua.token), 0);
    json_t *ready = tws_expect_type(ws, "ready", 0);
    assert_non_null(ready);
    bool same_user = strcmp(tj_str(ready, "user"), ua.id) == 0;
    json_decref(ready);
    assert_true(same_user);
    assert_ws_alive(ws);
    forget(ws);
    assert_int_equal(tws_close(ws, 1000, CLOSE_MS), 1000);
}

/* Sends a hand-written handshake request that must be refused with want_status. A 400 must be
 * the documented {"error":{"code":"bad_request"}} and close the connection; a 426 must name
 * version 13. No Sec-WebSocket-Accept either way. */
static void handshake_refused(const char *req, int want_status, const char *what)
{
    thttp_resp r;
    bool closed = false;
    int rc = thttp_raw(PORT, req, strlen(req), &r, &closed);
    if (rc != 0) t_note("%s: no HTTP answer (%d)", what, rc);
    assert_int_equal(rc, 0);
    char v[128] = "";
    bool accept = thttp_header(&r, "Sec-WebSocket-Accept", v, sizeof v) != NULL;
    bool ok = r.status == want_status && !accept;
    if (want_status == 400) ok = ok && strcmp(t_err_code(r.json), "bad_request") == 0 && closed;
    if (want_status == 426) {
        v[0] = 0;
        thttp_header(&r, "Sec-WebSocket-Version", v, sizeof v);
        ok = ok && strcmp(v, "13") == 0;
    }
    if (!ok)
        t_note("%s: want %d%s, got %s%s%s", what, want_status,
               want_status == 400   ? " bad_request and the connection closed"
               : want_status == 426 ? " with Sec-WebSocket-Version: 13"
                                    : "",
               r.head ? r.head : "(nothing)", r.body ? r.body : "",
               want_status == 400 && !closed ? " [connection left open]" : "");
    int status = r.status;
    char code[64];
    snprintf(code, sizeof code, "%s", t_err_code(r.json));
    thttp_resp_free(&r);
    assert_int_equal(status, want_status);
    assert_false(accept);
    if (want_status == 400) {
        assert_string_equal(code, "bad_request");
        assert_true(closed);
    }
    if (want_status == 426) assert_string_equal(v, "13");
}

/* A handshake request for /v1/ws with the given method and header lines (each ending in CRLF);
 * Host is added. */
static void hs_req(char *out, size_t cap, const char *method, const char *headers)
{
    int n = snprintf(out, cap, "%s /v1/ws HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n%s\r\n", method, PORT,
                     headers);
    assert_true(n > 0 && (size_t)n < cap);
}

/* ================================================================ handshake */

/* The RFC's own sample key, and random ones: 101 with the right accept, and the socket works. */
T_TEST(test_hs_valid_upgrade)
{
    char acc[64];
    accept_for(RFC_KEY, acc, sizeof acc);
    assert_string_equal(acc, RFC_ACCEPT); /* my own computation is right */

    char req[1024], key[64];
    hs_req(req, sizeof req, "GET",
           "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " RFC_KEY
           "\r\nSec-WebSocket-Version: 13\r\n");
    thttp_resp r;
    assert_int_equal(thttp_raw(PORT, req, strlen(req), &r, NULL), 0);
    int status = r.status;
    bool good = status == 101 && switching_ok(&r, RFC_KEY, "RFC sample key");
    thttp_resp_free(&r);
    assert_int_equal(status, 101);
    assert_true(good);

    for (int i = 0; i < 3; i++) {
        random_key(key, sizeof key);
        char hdrs[512];
        snprintf(hdrs, sizeof hdrs,
                 "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                 "Sec-WebSocket-Version: 13\r\n",
                 key);
        hs_req(req, sizeof req, "GET", hdrs);
        handshake_works(req, key, "random key");
    }
    /* The library's own handshake too. */
    tws *ws = authed("tws_open");
    assert_ws_alive(ws);
    forget(ws);
    assert_int_equal(tws_close(ws, 1000, CLOSE_MS), 1000);
    server_fine();
}

/* Header names, the websocket token and the upgrade token in any case, upgrade in a list. */
T_TEST(test_hs_header_case)
{
    char key[64], hdrs[512], req[1024];
    const char *forms[] = {
        "UPGRADE: WebSocket\r\nconnection: keep-alive, Upgrade\r\nSEC-WEBSOCKET-KEY: %s\r\n"
        "sec-websocket-version: 13\r\n",
        "upgrade: WEBSOCKET\r\nCONNECTION: keep-alive,upgrade\r\nSec-Websocket-Key: %s\r\n"
        "Sec-Websocket-Version: 13\r\n",
        "Connection: UPGRADE\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
        "sec-websocket-key: %s\r\n",
    };
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        random_key(key, sizeof key);
        snprintf(hdrs, sizeof hdrs, forms[i], key);
        hs_req(req, sizeof req, "GET", hdrs);
        char what[32];
        snprintf(what, sizeof what, "header case form %zu", i);
        handshake_works(req, key, what);
    }
    server_fine();
}

/* An offered extension and subprotocol the server does not have are not selected (RFC 6455
 * 4.2.2: the server answers only with values the client offered and it supports). */
T_TEST(test_hs_offers_not_selected)
{
    char key[64], hdrs[512], req[1024];
    random_key(key, sizeof key);
    snprintf(hdrs, sizeof hdrs,
             "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
             "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate; "
             "client_max_window_bits\r\nSec-WebSocket-Protocol: chat, superchat\r\n"
             "Origin: http://example.com\r\n",
             key);
    hs_req(req, sizeof req, "GET", hdrs);
    handshake_works(req, key, "offers");
    server_fine();
}

T_TEST(test_hs_missing_key_400)
{
    char req[1024];
    hs_req(req, sizeof req, "GET",
           "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n");
    handshake_refused(req, 400, "no Sec-WebSocket-Key");
    server_fine();
}

/* The key must be base64 of exactly 16 bytes. */
T_TEST(test_hs_bad_key_400)
{
    const char *keys[] = {
        "AAECAwQFBgc=",                 /* 8 bytes */
        "AAECAwQFBgcICQoLDA0ODxAREhM=", /* 20 bytes */
        "AAECAwQFBgcICQoLDA0O",         /* 15 bytes, unpadded */
        "!!!!!!!!!!!!!!!!!!!!!A==",     /* 24 characters, not base64 */
        "",                             /* empty */
    };
    char hdrs[512], req[1024], what[96];
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        snprintf(hdrs, sizeof hdrs,
                 "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                 "Sec-WebSocket-Version: 13\r\n",
                 keys[i]);
        hs_req(req, sizeof req, "GET", hdrs);
        snprintf(what, sizeof what, "Sec-WebSocket-Key \"%s\"", keys[i]);
        handshake_refused(req, 400, what);
        server_fine();
    }
}

T_TEST(test_hs_post_400)
{
    char key[64], hdrs[512], req[1024];
    random_key(key, sizeof key);
    snprintf(hdrs, sizeof hdrs,
             "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
             "Sec-WebSocket-Version: 13\r\n",
             key);
    hs_req(req, sizeof req, "POST", hdrs);
    handshake_refused(req, 400, "POST /v1/ws with upgrade headers");
    server_fine();
}

/* Not an upgrade: no Upgrade header, or Connection without the upgrade token. */
T_TEST(test_hs_not_upgrade_400)
{
    char key[64], hdrs[512], req[1024];
    random_key(key, sizeof key);
    snprintf(hdrs, sizeof hdrs,
             "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n", key);
    hs_req(req, sizeof req, "GET", hdrs);
    handshake_refused(req, 400, "no Upgrade header");
    server_fine();
    snprintf(hdrs, sizeof hdrs,
             "Upgrade: websocket\r\nConnection: keep-alive\r\nSec-WebSocket-Key: %s\r\n"
             "Sec-WebSocket-Version: 13\r\n",
             key);
    hs_req(req, sizeof req, "GET", hdrs);
    handshake_refused(req, 400, "Connection without upgrade");
    server_fine();
}

T_TEST(test_hs_version_426)
{
    const char *versions[] = {"8", "12", "14"};
    char key[64], hdrs[512], req[1024], what[64];
    for (size_t i = 0; i < sizeof versions / sizeof versions[0]; i++) {
        random_key(key, sizeof key);
        snprintf(hdrs, sizeof hdrs,
                 "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                 "Sec-WebSocket-Version: %s\r\n",
                 key, versions[i]);
        hs_req(req, sizeof req, "GET", hdrs);
        snprintf(what, sizeof what, "Sec-WebSocket-Version: %s", versions[i]);
        handshake_refused(req, 426, what);
        server_fine();
    }
}

/* ================================================================ framing */

/* A ping JSON frame in 1, 2, 3 and 50 fragments is answered. */
T_TEST(test_frag_text_answered)
{
    tws *ws = authed("frag");
    const int parts[] = {1, 2, 3, 50};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        char id[64], msg[128];
        snprintf(id, sizeof id, "fragmented-into-%02d-pieces-0123456789abcdef", parts[i]);
        size_t n = ping_json(msg, sizeof msg, id);
        assert_true(n >= 50);
        assert_int_equal(tws_send_text(ws, msg, n, parts[i]), 0);
        expect_pong(ws, id);
    }
    /* Empty continuation frames are legal too: "", then the text, then "" with FIN. */
    char msg[128];
    size_t n = ping_json(msg, sizeof msg, "empty-fragments");
    assert_int_equal(tws_send_frame(ws, false, 0, WS_TEXT, true, "", 0), 0);
    assert_int_equal(tws_send_frame(ws, false, 0, WS_CONT, true, msg, n), 0);
    assert_int_equal(tws_send_frame(ws, true, 0, WS_CONT, true, "", 0), 0);
    expect_pong(ws, "empty-fragments");
    drop(ws);
    server_fine();
}

/* Ping control frames between fragments are answered at once with the same payload, and the
 * fragmented message is still answered. */
T_TEST(test_frag_ping_between)
{
    tws *ws = authed("frag-ping");
    char msg[128];
    size_t n = ping_json(msg, sizeof msg, "around-pings");
    size_t a = n / 3, b = 2 * n / 3;
    const char p1[] = "between-1", p2[] = "between-2";
    assert_int_equal(tws_send_frame(ws, false, 0, WS_TEXT, true, msg, a), 0);
    assert_int_equal(tws_send_frame(ws, true, 0, WS_PING, true, p1, strlen(p1)), 0);
    expect_ctl_pong(ws, p1, strlen(p1)); /* answered before the message is complete */
    assert_int_equal(tws_send_frame(ws, false, 0, WS_CONT, true, msg + a, b - a), 0);
    assert_int_equal(tws_send_frame(ws, true, 0, WS_PING, true, p2, strlen(p2)), 0);
    expect_ctl_pong(ws, p2, strlen(p2));
    assert_int_equal(tws_send_frame(ws, true, 0, WS_CONT, true, msg + b, n - b), 0);
    expect_pong(ws, "around-pings");
    assert_ws_alive(ws);
    drop(ws);
    server_fine();
}

/* Pings of 0 and 125 bytes (binary payload) get pongs with the same payload; an unsolicited pong
 * gets no answer and harms nothing. */
T_TEST(test_ping_payloads)
{
    tws *ws = authed("pings");
    uint8_t p[125];
    for (size_t i = 0; i < sizeof p; i++) p[i] = (uint8_t)(i * 7 + 1);
    assert_int_equal(tws_send_frame(ws, true, 0, WS_PING, true, p, 0), 0);
    expect_ctl_pong(ws, p, 0);
    assert_int_equal(tws_send_frame(ws, true, 0, WS_PING, true, p, sizeof p), 0);
    expect_ctl_pong(ws, p, sizeof p);
    assert_int_equal(tws_send_frame(ws, true, 0, WS_PONG, true, "unsolicited", 11), 0);
    assert_true(tws_silent(ws, 300));
    assert_ws_alive(ws);
    drop(ws);
    server_fine();
}

/* Control frames carry at most 125 bytes (RFC 6455 5.5). */
T_TEST(test_control_too_long_1002)
{
    const int ops[] = {WS_PING, WS_PONG, WS_CLOSE};
    uint8_t p[126];
    memset(p, 'a', sizeof p);
    p[0] = 0x03; /* as a close payload: code 1000 ... */
    p[1] = 0xE8; /* ... and 124 bytes of reason */
    for (size_t i = 0; i < 3; i++) {
        tws *ws = authed("ctl-126");
        assert_int_equal(tws_send_frame(ws, true, 0, ops[i], true, p, sizeof p), 0);
        char what[64];
        snprintf(what, sizeof what, "control opcode %d with 126 bytes", ops[i]);
        expect_close(ws, 1002, what);
        server_fine();
    }
}

/* Control frames must not be fragmented (FIN=0). */
T_TEST(test_control_fragmented_1002)
{
    const int ops[] = {WS_PING, WS_PONG, WS_CLOSE};
    const uint8_t close_payload[] = {0x03, 0xE8};
    for (size_t i = 0; i < 3; i++) {
        tws *ws = authed("ctl-nofin");
        const void *p = ops[i] == WS_CLOSE ? (const void *)close_payload : "part";
        size_t n = ops[i] == WS_CLOSE ? 2 : 4;
        assert_int_equal(tws_send_frame(ws, false, 0, ops[i], true, p, n), 0);
        char what[64];
        snprintf(what, sizeof what, "control opcode %d with FIN=0", ops[i]);
        expect_close(ws, 1002, what);
        server_fine();
    }
}

T_TEST(test_cont_without_start_1002)
{
    for (int fin = 1; fin >= 0; fin--) {
        tws *ws = authed("cont-alone");
        char msg[64];
        size_t n = ping_json(msg, sizeof msg, "orphan");
        assert_int_equal(tws_send_frame(ws, fin, 0, WS_CONT, true, msg, n), 0);
        expect_close(ws, 1002,
                     fin ? "continuation (FIN) without a start"
                         : "continuation (no FIN) without a start");
        server_fine();
    }
    /* Also right after a complete message: that message is over. */
    tws *ws = authed("cont-after");
    char msg[64];
    size_t n = ping_json(msg, sizeof msg, "complete");
    assert_int_equal(tws_send_text(ws, msg, n, 2), 0);
    expect_pong(ws, "complete");
    assert_int_equal(tws_send_frame(ws, true, 0, WS_CONT, true, "x", 1), 0);
    expect_close(ws, 1002, "continuation after a finished message");
    server_fine();
}

T_TEST(test_new_message_inside_fragmented_1002)
{
    tws *ws = authed("text-in-frag");
    char msg[64];
    size_t n = ping_json(msg, sizeof msg, "interrupted");
    assert_int_equal(tws_send_frame(ws, false, 0, WS_TEXT, true, msg, n / 2), 0);
    assert_int_equal(tws_send_frame(ws, true, 0, WS_TEXT, true, msg, n), 0);
    expect_close(ws, 1002, "a new text frame while a fragmented message is open");
    server_fine();
}

/* No extension was negotiated, so every RSV bit is an error, on any frame. */
T_TEST(test_rsv_bits_1002)
{
    struct {
        int rsv, opcode;
        const char *what;
    } cases[] = {
        {4, WS_TEXT, "RSV1 on a text frame"}, {2, WS_TEXT, "RSV2 on a text frame"},
        {1, WS_TEXT, "RSV3 on a text frame"}, {7, WS_TEXT, "RSV1-3 on a text frame"},
        {2, WS_PING, "RSV2 on a ping"},       {4, WS_CONT, "RSV1 on a continuation"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tws *ws = authed("rsv");
        char msg[64];
        size_t n = ping_json(msg, sizeof msg, "rsv");
        if (cases[i].opcode == WS_CONT) {
            assert_int_equal(tws_send_frame(ws, false, 0, WS_TEXT, true, msg, n / 2), 0);
            assert_int_equal(
                tws_send_frame(ws, true, cases[i].rsv, WS_CONT, true, msg + n / 2, n - n / 2), 0);
        } else {
            assert_int_equal(tws_send_frame(ws, true, cases[i].rsv, cases[i].opcode, true, msg,
                                            cases[i].opcode == WS_PING ? 4 : n),
                             0);
        }
        expect_close(ws, 1002, cases[i].what);
        server_fine();
    }
}

T_TEST(test_reserved_opcodes_1002)
{
    const int ops[] = {3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        tws *ws = authed("opcode");
        assert_int_equal(tws_send_frame(ws, true, 0, ops[i], true, "{}", 2), 0);
        char what[48];
        snprintf(what, sizeof what, "reserved opcode 0x%X", ops[i]);
        expect_close(ws, 1002, what);
        server_fine();
    }
}

/* Every client frame must be masked (RFC 6455 5.1). */
T_TEST(test_unmasked_1002)
{
    char msg[64];
    size_t n = ping_json(msg, sizeof msg, "unmasked");
    tws *ws = authed("unmasked-text");
    assert_int_equal(tws_send_frame(ws, true, 0, WS_TEXT, false, msg, n), 0);
    expect_close(ws, 1002, "an unmasked text frame");
    server_fine();
    ws = authed("unmasked-ping");
    assert_int_equal(tws_send_frame(ws, true, 0, WS_PING, false, "hi", 2), 0);
    expect_close(ws, 1002, "an unmasked ping");
    server_fine();
    /* Unmasked in the middle of a fragmented message. */
    ws = authed("unmasked-cont");
    assert_int_equal(tws_send_frame(ws, false, 0, WS_TEXT, true, msg, n / 2), 0);
    assert_int_equal(tws_send_frame(ws, true, 0, WS_CONT, false, msg + n / 2, n - n / 2), 0);
    expect_close(ws, 1002, "an unmasked continuation frame");
    server_fine();
}

/* ================================================================ payloads */

/* Text that is not UTF-8 closes with 1007 (RFC 6455 8.1). */
T_TEST(test_utf8_invalid_1007)
{
    struct {
        const char *bytes, *what;
    } bad[] = {
        {"\xC3\x28", "a bad continuation byte"},
        {"\xC0\xAF", "an overlong 2-byte /"},
        {"\xE0\x80\xAF", "an overlong 3-byte /"},
        {"\xED\xA0\x80", "a surrogate (U+D800)"},
        {"\xF4\x90\x80\x80", "a code point above U+10FFFF"},
        {"\xF8\x88\x80\x80\x80", "a 5-byte sequence"},
        {"\xFF", "the byte 0xFF"},
        {"\x80", "a lone continuation byte"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tws *ws = authed("utf8");
        char msg[128];
        int n =
            snprintf(msg, sizeof msg, "{\"type\":\"ping\",\"id\":\"bad-%s-utf8\"}", bad[i].bytes);
        assert_int_equal(tws_send_text(ws, msg, (size_t)n, 1), 0);
        char what[96];
        snprintf(what, sizeof what, "a text message with %s", bad[i].what);
        expect_close(ws, 1007, what);
        server_fine();
    }
    /* A message that ends inside a multi-byte sequence. */
    tws *ws = authed("utf8-trunc");
    const char trunc[] = "{\"type\":\"ping\",\"id\":\"t\"}\xE2\x82";
    assert_int_equal(tws_send_text(ws, trunc, sizeof trunc - 1, 1), 0);
    expect_close(ws, 1007, "a text message ending inside a UTF-8 sequence");
    server_fine();
}

/* A fragment boundary inside a multi-byte character is fine: UTF-8 is checked over the whole
 * message. */
T_TEST(test_utf8_split_valid)
{
    tws *ws = authed("utf8-split");
    const char id[] = "u-\xE2\x82\xAC-\xF0\x9F\x98\x80-\xC3\xA9"; /* u-€-😀-é */
    char msg[128];
    size_t n = ping_json(msg, sizeof msg, id);
    const char *euro = strstr(msg, "\xE2"), *smile = strstr(msg, "\xF0");
    assert_non_null(euro);
    assert_non_null(smile);
    /* Two fragments split after the first byte of the euro sign. */
    size_t a = (size_t)(euro - msg) + 1;
    assert_int_equal(tws_send_frame(ws, false, 0, WS_TEXT, true, msg, a), 0);
    assert_int_equal(tws_send_frame(ws, true, 0, WS_CONT, true, msg + a, n - a), 0);
    expect_pong(ws, id);
    /* Three fragments: inside the euro sign (after 2 bytes) and inside the emoji (after 3). */
    a = (size_t)(euro - msg) + 2;
    size_t b = (size_t)(smile - msg) + 3;
    assert_int_equal(tws_send_frame(ws, false, 0, WS_TEXT, true, msg, a), 0);
    assert_int_equal(tws_send_frame(ws, false, 0, WS_CONT, true, msg + a, b - a), 0);
    assert_int_equal(tws_send_frame(ws, true, 0, WS_CONT, true, msg + b, n - b), 0);
    expect_pong(ws, id);
    /* One byte per fragment: every character split at every position. */
    assert_int_equal(tws_send_text(ws, msg, n, (int)n), 0);
    expect_pong(ws, id);
    drop(ws);
    server_fine();
}

/* An invalid sequence across a fragment boundary closes with 1007. */
T_TEST(test_utf8_split_invalid_1007)
{
    struct {
        const char *first, *second, *what;
    } cases[] = {
        {"{\"type\":\"ping\",\"id\":\"\xE2\x82", "A\"}", "E2 82 | 41 (ASCII inside a 3-byte char)"},
        {"{\"type\":\"ping\",\"id\":\"\xF4", "\x90\x80\x80\"}", "F4 | 90 80 80 (above U+10FFFF)"},
        {"{\"type\":\"ping\",\"id\":\"\xED", "\xA0\x80\"}", "ED | A0 80 (a surrogate)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tws *ws = authed("utf8-split-bad");
        assert_int_equal(
            tws_send_frame(ws, false, 0, WS_TEXT, true, cases[i].first, strlen(cases[i].first)), 0);
        assert_int_equal(
            tws_send_frame(ws, true, 0, WS_CONT, true, cases[i].second, strlen(cases[i].second)),
            0);
        char what[96];
        snprintf(what, sizeof what, "fragments %s", cases[i].what);
        expect_close(ws, 1007, what);
        server_fine();
    }
}

/* Parley speaks text only: a binary message closes with 1003. */
T_TEST(test_binary_1003)
{
    char msg[64];
    size_t n = ping_json(msg, sizeof msg, "binary");
    tws *ws = authed("binary");
    assert_int_equal(tws_send_frame(ws, true, 0, WS_BIN, true, msg, n), 0);
    expect_close(ws, 1003, "a binary message");
    server_fine();
    ws = authed("binary-empty");
    assert_int_equal(tws_send_frame(ws, true, 0, WS_BIN, true, "", 0), 0);
    expect_close(ws, 1003, "an empty binary message");
    server_fine();
    ws = authed("binary-frag");
    assert_int_equal(tws_send_frame(ws, false, 0, WS_BIN, true, msg, n / 2), 0);
    assert_int_equal(tws_send_frame(ws, true, 0, WS_CONT, true, msg + n / 2, n - n / 2), 0);
    expect_close(ws, 1003, "a fragmented binary message");
    server_fine();
}

/* Messages over max_frame (128 KiB) close with 4009, whole or in fragments. */
T_TEST(test_too_big_4009)
{
    size_t big = 200 * 1024;
    char *msg = ping_padded("too-big", big);
    /* One 200 KiB frame (the server may stop reading early: the send result is not checked). */
    tws *ws = authed("big-1");
    tws_send_frame(ws, true, 0, WS_TEXT, true, msg, big);
    expect_close(ws, 4009, "a 200 KiB text message in one frame");
    server_fine();
    /* Four fragments of 50 KiB, each under the limit, 200 KiB in all. */
    ws = authed("big-4");
    size_t q = big / 4;
    for (int i = 0; i < 4 && !ws->eof; i++)
        tws_send_frame(ws, i == 3, 0, i ? WS_CONT : WS_TEXT, true, msg + (size_t)i * q, q);
    expect_close(ws, 4009, "a 200 KiB text message in 4 fragments of 50 KiB");
    server_fine();
    /* 1 KiB fragments. */
    ws = authed("big-200");
    for (int i = 0; i < 200 && !ws->eof; i++)
        tws_send_frame(ws, i == 199, 0, i ? WS_CONT : WS_TEXT, true, msg + (size_t)i * 1024, 1024);
    expect_close(ws, 4009, "a 200 KiB text message in 200 fragments of 1 KiB");
    server_fine();
    /* One byte over the limit. */
    msg = ping_padded("one-over", MAX_FRAME + 1);
    ws = authed("big-+1");
    tws_send_frame(ws, true, 0, WS_TEXT, true, msg, MAX_FRAME + 1);
    expect_close(ws, 4009, "a text message of max_frame + 1 bytes");
    server_fine();
}

/* A frame header announcing a payload over max_frame is refused on sight with 4009, without
 * waiting for (or buffering) the payload; a 64-bit length with its most significant bit set is
 * malformed (RFC 6455 5.2): 1002. Each case runs on a server of its own (srv2), so that a crash
 * there is reported by that case alone and cannot take the shared server down. */
static void huge_header_case(bool auth, uint64_t len, const int *want, int nwant, const char *what)
{
    assert_int_equal(tsrv_start(&srv2, NULL, "--pwhash", "min"), 0);
    int port = srv2.port;
    tws *ws;
    if (auth) {
        tuser u;
        assert_int_equal(tuser_new(port, "huge", &u), 201);
        ws = keep(tws_auth(port, u.token, NULL));
        assert_non_null(ws);
        snprintf(ws->label, sizeof ws->label, "%.31s", what);
    } else {
        ws = opened_on(port, what);
    }
    /* FIN + text, masked, 64-bit length, mask key, then only 4 payload bytes. */
    uint8_t h[18] = {0x81, 0x80 | 127};
    for (int i = 0; i < 8; i++) h[2 + i] = (uint8_t)(len >> (56 - 8 * i));
    memcpy(h + 10,
           "\x01\x02\x03\x04"
           "abcd",
           8);
    ws_send_raw(ws, h, sizeof h);
    expect_close_in(ws, want, nwant, what);
    server_fine_on(port);
    assert_int_equal(tsrv_stop(&srv2), 0);
    tsrv_cleanup(&srv2);
}

T_TEST(test_len_header_over_limit_4009)
{
    const int want[] = {4009};
    huge_header_case(true, MAX_FRAME + 1, want, 1, "header announcing max_frame + 1");
}

/* A header announcing 1 TiB: refused with 4009 before anything is allocated for it. */
T_TEST(test_len_header_1tib_4009)
{
    const int want[] = {4009};
    huge_header_case(true, (uint64_t)1 << 40, want, 1, "header announcing 1 TiB");
}

/* Before auth both 4009 (too big) and 4001 (not auth) are documented answers; the frame header
 * is all there is to judge, so 4009 is expected, but 4001 is accepted. Unauthenticated clients
 * must not be able to crash the server either (see above). */
T_TEST(test_len_header_1tib_unauth)
{
    const int want[] = {4009, 4001};
    huge_header_case(false, (uint64_t)1 << 40, want, 2, "header announcing 1 TiB before auth");
}

/* A 64-bit length with its top bit set is a malformed frame (RFC 6455 5.2): 1002, not the
 * 4009 of a frame over max_frame. */
T_TEST(test_len_header_msb_1002)
{
    const int want[] = {1002};
    huge_header_case(true, ((uint64_t)1 << 63) | 4, want, 1, "64-bit length with the top bit set");
}

/* 7-bit, 16-bit (126..65535) and 64-bit (65536..) length encodings of valid messages up to the
 * limit: each padded ping is answered. */
T_TEST(test_length_encodings)
{
    const size_t sizes[] = {125, 126, 1000, 65535, 65536, 70000, MAX_FRAME};
    tws *ws = authed("lengths");
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        char id[32];
        snprintf(id, sizeof id, "len-%zu", sizes[i]);
        char *msg = ping_padded(id, sizes[i]);
        int rc = tws_send_text(ws, msg, sizes[i], 1);
        if (rc != 0) t_note("sending a %zu-byte message failed", sizes[i]);
        assert_int_equal(rc, 0);
        json_t *p = tws_expect_reply(ws, "pong", id, 0);
        if (!p) t_note("no pong for a valid %zu-byte message", sizes[i]);
        assert_non_null(p);
        json_decref(p);
    }
    /* 70,000 bytes in fragments whose lengths use each encoding. */
    char *msg = ping_padded("len-mixed", 70000);
    assert_int_equal(tws_send_frame(ws, false, 0, WS_TEXT, true, msg, 100), 0);
    assert_int_equal(tws_send_frame(ws, false, 0, WS_CONT, true, msg + 100, 1000), 0);
    assert_int_equal(tws_send_frame(ws, true, 0, WS_CONT, true, msg + 1100, 70000 - 1100), 0);
    expect_pong(ws, "len-mixed");
    drop(ws);
    server_fine();
}

/* ================================================================ close */

static void send_close(tws *ws, int code, const char *reason, size_t rlen)
{
    uint8_t p[130];
    assert_true(rlen <= 123);
    p[0] = (uint8_t)(code >> 8);
    p[1] = (uint8_t)code;
    if (rlen) memcpy(p + 2, reason, rlen);
    assert_int_equal(tws_send_frame(ws, true, 0, WS_CLOSE, true, p, 2 + rlen), 0);
}

/* The client closes with 1000: the server answers with a close echoing 1000, then ends TCP. */
T_TEST(test_close_1000_echoed)
{
    tws *ws = authed("close-1000");
    send_close(ws, 1000, "bye", 3);
    expect_close(ws, 1000, "close 1000 \"bye\"");
    server_fine();
    /* Without a reason. */
    ws = authed("close-1000-bare");
    send_close(ws, 1000, NULL, 0);
    expect_close(ws, 1000, "close 1000");
    server_fine();
    /* The largest close frame: code and a 123-byte UTF-8 reason. */
    char reason[124];
    memset(reason, 'r', 123);
    memcpy(reason + 100, "\xE2\x82\xAC", 3); /* a multi-byte character inside */
    ws = authed("close-1000-125");
    send_close(ws, 1000, reason, 123);
    expect_close(ws, 1000, "close 1000 with a 123-byte reason");
    server_fine();
    /* An empty close (no code): the answer has no code (1005 here) or 1000. */
    ws = authed("close-empty");
    assert_int_equal(tws_send_frame(ws, true, 0, WS_CLOSE, true, "", 0), 0);
    const int empty_ok[] = {1005, 1000};
    expect_close_in(ws, empty_ok, 2, "an empty close frame");
    server_fine();
    /* Close in the middle of a fragmented message: control frames may come between fragments. */
    ws = authed("close-mid-frag");
    assert_int_equal(tws_send_frame(ws, false, 0, WS_TEXT, true, "{\"type\"", 7), 0);
    send_close(ws, 1000, NULL, 0);
    expect_close(ws, 1000, "close 1000 inside a fragmented message");
    server_fine();
}

/* Other valid codes are answered with a close (the code echoed, or 1000), never 1002. */
T_TEST(test_close_valid_codes)
{
    const int codes[] = {1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        tws *ws = authed("close-valid");
        send_close(ws, codes[i], "", 0);
        const int ok[] = {codes[i], 1000};
        char what[48];
        snprintf(what, sizeof what, "close %d", codes[i]);
        expect_close_in(ws, ok, 2, what);
        server_fine();
    }
}

/* Codes that must never be sent, or are reserved / unassigned (RFC 6455 7.4): 1002. */
T_TEST(test_close_invalid_codes_1002)
{
    const int codes[] = {0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        tws *ws = authed("close-invalid");
        send_close(ws, codes[i], "", 0);
        char what[48];
        snprintf(what, sizeof what, "close with invalid code %d", codes[i]);
        expect_close(ws, 1002, what);
        server_fine();
    }
}

/* A close payload is empty or starts with a 2-byte code (RFC 6455 5.5.1): 1 byte is a protocol
 * error, 1002. */
T_TEST(test_close_one_byte_1002)
{
    tws *ws = authed("close-1byte");
    assert_int_equal(tws_send_frame(ws, true, 0, WS_CLOSE, true, "\x03", 1), 0);
    expect_close(ws, 1002, "a close frame with a 1-byte payload");
    server_fine();
}

/* A close reason that is not UTF-8 fails the connection: 1002 or 1007 (RFC 6455 8.1 does not
 * name the code), and the socket ends. */
T_TEST(test_close_bad_utf8_reason)
{
    const char *reasons[] = {"\xC3\x28", "ok\xFF", "\xED\xA0\x80", "\xE2\x82"};
    for (size_t i = 0; i < sizeof reasons / sizeof reasons[0]; i++) {
        tws *ws = authed("close-bad-reason");
        send_close(ws, 1000, reasons[i], strlen(reasons[i]));
        const int ok[] = {1002, 1007};
        expect_close_in(ws, ok, 2, "close 1000 with a reason that is not UTF-8");
        server_fine();
    }
}

/* After the client's close, its further frames are not processed: no pong, no answer, just the
 * close. */
T_TEST(test_frames_after_close_ignored)
{
    tws *ws = authed("after-close");
    char msg[64];
    size_t n = ping_json(msg, sizeof msg, "after-close");
    uint8_t c[2] = {0x03, 0xE8};
    /* One write: close 1000, a ping JSON message, a ping control frame. */
    tws_queue_frame(ws, true, 0, WS_CLOSE, true, c, 2);
    tws_queue_frame(ws, true, 0, WS_TEXT, true, msg, n);
    tws_send_frame(ws, true, 0, WS_PING, true, "late", 4); /* may fail if the server is gone */
    tws_msg m;
    int rc = tws_recv(ws, &m, CLOSE_MS);
    if (rc != 0) t_note("after-close: want the close frame, got %s", rc_str(rc));
    assert_int_equal(rc, 0);
    int op = m.opcode, code = m.close_code;
    if (op != WS_CLOSE)
        t_note("after-close: want only a close frame, first got opcode %d: %.100s", op,
               (char *)m.data);
    tws_msg_free(&m);
    assert_int_equal(op, WS_CLOSE);
    assert_int_equal(code, 1000);
    bool ended = tcp_ends(ws, CLOSE_MS);
    drop(ws);
    assert_true(ended);
    server_fine();
}

/* ================================================================ authentication */

/* The first frame must be auth: anything else closes with 4001. */
T_TEST(test_first_frame_not_auth_4001)
{
    char frames[3][256];
    snprintf(frames[0], sizeof frames[0], "{\"type\":\"ping\",\"id\":\"early\"}");
    snprintf(frames[1], sizeof frames[1], "{\"type\":\"sync\",\"id\":\"s\",\"after\":0}");
    snprintf(frames[2], sizeof frames[2], "{\"typ\":\"auth\",\"id\":\"no-type\"}");
    for (int i = 0; i < 3; i++) {
        tws *ws = opened_on(PORT, "unauth");
        assert_int_equal(tws_send_text(ws, frames[i], strlen(frames[i]), 1), 0);
        char what[300];
        snprintf(what, sizeof what, "first frame %s", frames[i]);
        expect_close(ws, 4001, what);
        server_fine();
    }
    /* A real token under a field name other than "type":"auth". */
    json_t *j = json_pack("{s:s, s:s}", "type", "Auth", "token", ua.token);
    tws *ws = opened_on(PORT, "unauth-case");
    int rc = tws_send_json(ws, j);
    json_decref(j);
    assert_int_equal(rc, 0);
    expect_close(ws, 4001, "first frame type \"Auth\" (types are case-sensitive)");
    server_fine();
}

/* A first text message that is not a JSON object closes with 4001. */
T_TEST(test_not_json_before_auth_4001)
{
    const char *frames[] = {"hello", "", "[1,2]", "{\"type\":\"auth\"", "null", "\"auth\""};
    for (size_t i = 0; i < sizeof frames / sizeof frames[0]; i++) {
        tws *ws = opened_on(PORT, "not-json");
        assert_int_equal(tws_send_text(ws, frames[i], strlen(frames[i]), 1), 0);
        char what[64];
        snprintf(what, sizeof what, "first frame '%s'", frames[i]);
        expect_close(ws, 4001, what);
        server_fine();
    }
}

/* auth with a bad or missing token: 4001; a fragmented auth is fine. */
T_TEST(test_auth_token_checks)
{
    char tampered[sizeof ua.token];
    snprintf(tampered, sizeof tampered, "%s", ua.token);
    size_t tl = strlen(tampered);
    tampered[tl - 2] = tampered[tl - 2] == 'A' ? 'B' : 'A'; /* breaks the signature */
    const char *tokens[] = {"garbage", "a.b.c", tampered, ""};
    for (size_t i = 0; i < sizeof tokens / sizeof tokens[0]; i++) {
        tws *ws = opened_on(PORT, "bad-token");
        assert_int_equal(tws_sendp(ws, "{s:s, s:s}", "type", "auth", "token", tokens[i]), 0);
        char what[64];
        snprintf(what, sizeof what, "auth with token #%zu (bad)", i);
        expect_close(ws, 4001, what);
        server_fine();
    }
    const char *shapes[] = {"{\"type\":\"auth\"}", "{\"type\":\"auth\",\"token\":42}"};
    for (size_t i = 0; i < 2; i++) {
        tws *ws = opened_on(PORT, "auth-shape");
        assert_int_equal(tws_send_text(ws, shapes[i], strlen(shapes[i]), 1), 0);
        expect_close(ws, 4001, shapes[i]);
        server_fine();
    }
    /* The auth frame in 5 fragments. */
    json_t *j = json_pack("{s:s, s:s}", "type", "auth", "token", ua.token);
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    tws *ws = opened_on(PORT, "auth-frag");
    int rc = tws_send_text(ws, s, strlen(s), 5);
    free(s);
    assert_int_equal(rc, 0);
    json_t *ready = tws_expect_type(ws, "ready", 0);
    assert_non_null(ready);
    bool same_user = strcmp(tj_str(ready, "user"), ua.id) == 0;
    json_decref(ready);
    assert_true(same_user);
    assert_ws_alive(ws);
    forget(ws);
    assert_int_equal(tws_close(ws, 1000, CLOSE_MS), 1000);
    server_fine();
}

/* Waits for the 4008 of a socket opened at `since` on the --auth-timeout 500 server. */
static void expect_auth_timeout(tws *ws, int64_t since, const char *what)
{
    int code = tws_wait_close(ws, CLOSE_MS);
    int64_t took = mono_ms() - since;
    bool ended = code >= 0 && tcp_ends(ws, CLOSE_MS);
    if (code != 4008 || took < 400 || !ended)
        t_note("%s: want close 4008 about 500 ms after the handshake; got %s after %lld ms%s", what,
               rc_str(code), (long long)took, code >= 0 && !ended ? ", TCP left open" : "");
    drop(ws);
    assert_int_equal(code, 4008);
    assert_true(took >= 400);
    assert_true(ended);
}

/* No auth within the auth timeout: 4008. Its own server, started with --auth-timeout 500. */
T_TEST(test_auth_timeout_4008)
{
    assert_int_equal(tsrv_start(&srv2, NULL, "--pwhash", "min", "--auth-timeout", "500"), 0);
    int port = srv2.port;
    /* Nothing at all. */
    int64_t t0 = mono_ms();
    tws *ws = opened_on(port, "silent");
    expect_auth_timeout(ws, t0, "no frame at all");
    server_fine_on(port);
    /* A WebSocket ping is answered, but it is no auth. */
    t0 = mono_ms();
    ws = opened_on(port, "ping-only");
    assert_int_equal(tws_send_frame(ws, true, 0, WS_PING, true, "pre-auth", 8), 0);
    expect_ctl_pong(ws, "pre-auth", 8);
    expect_auth_timeout(ws, t0, "only a ping frame");
    server_fine_on(port);
    /* Half an auth frame (a first fragment that never ends). */
    t0 = mono_ms();
    ws = opened_on(port, "half-auth");
    assert_int_equal(tws_send_frame(ws, false, 0, WS_TEXT, true, "{\"type\":\"auth\",", 15), 0);
    expect_auth_timeout(ws, t0, "a first fragment of auth only");
    server_fine_on(port);
    /* Authenticated in time: still open well after the timeout. */
    tuser u;
    assert_int_equal(tuser_new(port, "tmo", &u), 201);
    ws = keep(tws_auth(port, u.token, NULL));
    assert_non_null(ws);
    assert_true(tws_silent(ws, 1000));
    assert_ws_alive(ws);
    forget(ws);
    assert_int_equal(tws_close(ws, 1000, CLOSE_MS), 1000);
    server_fine_on(port);
    assert_int_equal(tsrv_stop(&srv2), 0);
    tsrv_cleanup(&srv2);
}

/* ================================================================ the end */

/* After all of the above the server still serves, and exits cleanly (ASan: no leak). */
T_TEST(test_zz_server_exits_cleanly)
{
    server_fine();
    assert_int_equal(tsrv_stop(&srv), 0);
}

#define T(f) cmocka_unit_test_teardown(f, after_each)

int main(void)
{
    tws_default_ignore = "presence,typing";
    const struct CMUnitTest tests[] = {
        T(test_hs_valid_upgrade),
        T(test_hs_header_case),
        T(test_hs_offers_not_selected),
        T(test_hs_missing_key_400),
        T(test_hs_bad_key_400),
        T(test_hs_post_400),
        T(test_hs_not_upgrade_400),
        T(test_hs_version_426),
        T(test_frag_text_answered),
        T(test_frag_ping_between),
        T(test_ping_payloads),
        T(test_control_too_long_1002),
        T(test_control_fragmented_1002),
        T(test_cont_without_start_1002),
        T(test_new_message_inside_fragmented_1002),
        T(test_rsv_bits_1002),
        T(test_reserved_opcodes_1002),
        T(test_unmasked_1002),
        T(test_utf8_invalid_1007),
        T(test_utf8_split_valid),
        T(test_utf8_split_invalid_1007),
        T(test_binary_1003),
        T(test_too_big_4009),
        T(test_len_header_over_limit_4009),
        T(test_len_header_1tib_4009),
        T(test_len_header_1tib_unauth),
        T(test_len_header_msb_1002),
        T(test_length_encodings),
        T(test_close_1000_echoed),
        T(test_close_valid_codes),
        T(test_close_invalid_codes_1002),
        T(test_close_one_byte_1002),
        T(test_close_bad_utf8_reason),
        T(test_frames_after_close_ignored),
        T(test_first_frame_not_auth_4001),
        T(test_not_json_before_auth_4001),
        T(test_auth_token_checks),
        T(test_auth_timeout_4008),
        T(test_zz_server_exits_cleanly),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
