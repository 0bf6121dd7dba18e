/* test_errors.c: bad tokens, bad frames, bad HTTP and over-limit input, all against ONE server,
 * which must answer each with the documented code, keep serving everybody else, and still exit
 * cleanly at the end. The tests run in order; the last one proves the server is still fine. */
#include "lib/tassert.h"

#include <stdio.h>
#include <stdlib.h>

static tsrv srv;
#define PORT (srv.port)

/* A socket opened at the start and never authenticated: closed with 4008 after 10 s. */
static tws *idle_ws;
static int64_t idle_since;

/* Two users every test may use. */
static tuser ua, ub;

static int group_setup(void **state)
{
    (void)state;
    if (tsrv_start(&srv, NULL, "--pwhash", "min") != 0) return -1;
    idle_ws = tws_open(PORT);
    idle_since = mono_ms();
    if (!idle_ws) return -1;
    snprintf(idle_ws->label, sizeof idle_ws->label, "idle");
    if (tuser_new(PORT, "erra", &ua) != 201 || tuser_new(PORT, "errb", &ub) != 201) return -1;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    tws_free(idle_ws);
    tsrv_cleanup(&srv);
    return 0;
}

static int after_each(void **state)
{
    (void)state;
    t_after_test();
    return 0;
}

/* ---------------------------------------------------------------- tokens */

static uint8_t server_key[256];
static size_t server_key_len;

static void load_key(void)
{
    long n = tsrv_read_file(&srv, "jwt.key", server_key, sizeof server_key);
    assert_true(n > 0);
    server_key_len = (size_t)n;
}

/* A copy of a real token with its claims changed (exp_delta added to exp and iat, seconds), the
 * header's alg replaced (if alg), signed with key (or with the server's key when NULL). */
static char *forge(const char *real, int64_t exp_delta, const char *alg, const uint8_t *key,
                   size_t keylen)
{
    json_t *h = tjwt_part(real, 0), *c = tjwt_part(real, 1);
    assert_non_null(h);
    assert_non_null(c);
    if (exp_delta) {
        json_object_set_new(c, "exp", json_integer(tj_int(c, "exp") + exp_delta));
        json_object_set_new(c, "iat", json_integer(tj_int(c, "iat") + exp_delta));
    }
    if (alg) json_object_set_new(h, "alg", json_string(alg));
    char *t = tjwt_sign(h, c, key ? key : server_key, key ? keylen : server_key_len);
    json_decref(h);
    json_decref(c);
    return t;
}

static void assert_rest_refuses(const char *token, const char *code)
{
    int st;
    json_t *r;
    assert_int_equal(thttp_req(PORT, "GET", "/v1/me", token, NULL, &st, &r), 0);
    assert_http_error(st, r, 401, code);
    json_decref(r);
}

static void assert_ws_refuses(const char *token)
{
    tws *ws = tws_open(PORT);
    assert_non_null(ws);
    assert_int_equal(tws_sendp(ws, "{s:s, s:s}", "type", "auth", "token", token), 0);
    assert_int_equal(tws_wait_close(ws, 0), 4001);
    tws_free(ws);
}

T_TEST(test_rest_auth_errors)
{
    load_key();
    int st;
    json_t *r;
    /* No header, or not Bearer. */
    assert_int_equal(thttp_req(PORT, "GET", "/v1/me", NULL, NULL, &st, &r), 0);
    assert_http_error(st, r, 401, "unauthenticated");
    json_decref(r);
    thttp_resp raw;
    const char basic[] =
        "GET /v1/me HTTP/1.1\r\nHost: x\r\nAuthorization: Basic dXNlcjpwYXNz\r\n\r\n";
    assert_int_equal(thttp_raw(PORT, basic, strlen(basic), &raw, NULL), 0);
    assert_http_error(raw.status, raw.json, 401, "unauthenticated");
    thttp_resp_free(&raw);

    /* My forging is right: the server's key with a later exp is accepted... */
    char *good = forge(ua.token, 60, NULL, NULL, 0);
    assert_int_equal(thttp_req(PORT, "GET", "/v1/me", good, NULL, &st, &r), 0);
    assert_http_status(st, r, 200);
    assert_string_equal(tj_str(r, "id"), ua.id);
    json_decref(r);
    free(good);
    /* ...and so these are refused for the reason named. */
    assert_rest_refuses("garbage", "invalid_token");
    assert_rest_refuses("a.b.c", "invalid_token");
    uint8_t wrong[32];
    memset(wrong, 7, sizeof wrong);
    char *t = forge(ua.token, 0, NULL, wrong, sizeof wrong);
    assert_rest_refuses(t, "invalid_token");
    free(t);
    t = forge(ua.token, 0, "HS384", NULL, 0); /* HS256 bytes, header claims another alg */
    assert_rest_refuses(t, "invalid_token");
    free(t);
    t = forge(ua.token, 0, "none", NULL, 0);
    *strrchr(t, '.') = 0; /* alg none: header.claims. with an empty signature */
    strcat(t, ".");
    assert_rest_refuses(t, "invalid_token");
    free(t);
    /* Claims changed under the original signature. */
    json_t *h = tjwt_part(ua.token, 0), *c = tjwt_part(ua.token, 1);
    json_object_set_new(c, "sub", json_string(ub.id));
    t = tjwt_sign(h, c, wrong, sizeof wrong);
    char *sig = strrchr(ua.token, '.');
    strcpy(strrchr(t, '.'), sig);
    assert_rest_refuses(t, "invalid_token");
    free(t);
    json_decref(h);
    json_decref(c);
    /* Expired: signed by the server's key, exp an hour ago. */
    t = forge(ua.token, -(2592000 + 3600), NULL, NULL, 0);
    assert_rest_refuses(t, "token_expired");
    free(t);
    /* Revoked: a logged-out device. */
    tuser gone;
    assert_int_equal(tuser_login(PORT, ua.username, ua.password, &gone), 200);
    assert_int_equal(thttp_req(PORT, "DELETE", "/v1/sessions/current", gone.token, NULL, &st, &r),
                     0);
    assert_http_status(st, r, 204);
    json_decref(r);
    assert_rest_refuses(gone.token, "device_revoked");
    /* The real token still works. */
    assert_int_equal(thttp_req(PORT, "GET", "/v1/me", ua.token, NULL, &st, &r), 0);
    assert_http_status(st, r, 200);
    json_decref(r);
}

T_TEST(test_ws_auth_errors)
{
    load_key();
    uint8_t wrong[32];
    memset(wrong, 9, sizeof wrong);
    char *bad[4];
    bad[0] = strdup("garbage");
    bad[1] = forge(ua.token, 0, NULL, wrong, sizeof wrong);
    bad[2] = forge(ua.token, -(2592000 + 3600), NULL, NULL, 0);
    tuser gone;
    assert_int_equal(tuser_login(PORT, ua.username, ua.password, &gone), 200);
    int st;
    json_t *r;
    assert_int_equal(thttp_req(PORT, "DELETE", "/v1/sessions/current", gone.token, NULL, &st, &r),
                     0);
    assert_http_status(st, r, 204);
    json_decref(r);
    bad[3] = strdup(gone.token);
    for (int i = 0; i < 4; i++) {
        assert_ws_refuses(bad[i]);
        free(bad[i]);
    }
    /* First frame not auth, auth without a token, not JSON: 4001. */
    const char *first[] = {"{\"type\":\"ping\",\"id\":\"p\"}", "{\"type\":\"auth\"}", "hello",
                           "{\"type\":\"send\",\"id\":\"s\",\"to\":\"u_x\",\"cmid\":\"c\"}"};
    for (int i = 0; i < 4; i++) {
        tws *ws = tws_open(PORT);
        assert_non_null(ws);
        assert_int_equal(tws_send_text(ws, first[i], strlen(first[i]), 1), 0);
        int code = tws_wait_close(ws, 0);
        if (code != 4001) t_note("first frame %s: close %d", first[i], code);
        assert_int_equal(code, 4001);
        tws_free(ws);
    }
    /* A good token still gets ready. */
    tws *ok = tws_auth(PORT, ua.token, NULL);
    assert_non_null(ok);
    assert_ws_alive(ok);
    tws_free(ok);
}

/* ---------------------------------------------------------------- frames */

static void send_raw_text(tws *ws, const char *s)
{
    assert_int_equal(tws_send_text(ws, s, strlen(s), 1), 0);
}

/* A send with a text of n bytes (the UTF-8 'é' repeated, plus 'a' when n is odd). */
static char *text_of(size_t n)
{
    char *t = malloc(n + 1);
    size_t i = 0;
    if (n % 2) t[i++] = 'a';
    while (i < n) {
        t[i++] = (char)0xc3;
        t[i++] = (char)0xa9;
    }
    t[n] = 0;
    return t;
}

T_TEST(test_ws_bad_frames)
{
    tws *wa = tws_live(PORT, &ua, "a"), *wb = tws_live(PORT, &ub, "b");
    assert_non_null(wa);
    assert_non_null(wb);
    /* Not JSON objects, or no string type: invalid_frame, and the socket stays open. */
    const char *inval[] = {
        "this is not json",          "{\"type\":\"ping\"", "[1,2,3]", "\"ping\"", "42", "{}",
        "{\"type\":5,\"id\":\"x\"}", "{\"id\":\"x\"}"};
    for (size_t i = 0; i < sizeof inval / sizeof inval[0]; i++) {
        send_raw_text(wa, inval[i]);
        assert_ws_error(wa, NULL, "invalid_frame");
        assert_ws_alive(wa);
    }
    /* Fragmented, the same. */
    const char *frag = "{not json at all, in three pieces}";
    assert_int_equal(tws_send_text(wa, frag, strlen(frag), 3), 0);
    assert_ws_error(wa, NULL, "invalid_frame");
    assert_ws_alive(wa);

    send_raw_text(wa, "{\"type\":\"teleport\",\"id\":\"u1\"}");
    assert_ws_error(wa, "u1", "unknown_type");
    send_raw_text(wa, "{\"type\":\"bogus\",\"id\":\"u2\"}");
    assert_ws_error(wa, "u2", "unknown_type");
    assert_ws_alive(wa);

    /* send: no such user. */
    assert_int_equal(tws_send_textmsg(wa, "s1", "u_doesnotexist12345", "nsu-1", "hello?"), 0);
    assert_ws_error(wa, "s1", "no_such_user");

    /* send: text length limit is 16384 bytes (not characters). */
    char *t = text_of(16385);
    assert_int_equal(tws_send_textmsg(wa, "s2", ub.id, "long-1", t), 0);
    assert_ws_error(wa, "s2", "text_too_long");
    free(t);
    t = text_of(16384);
    assert_int_equal(tws_send_textmsg(wa, "s3", ub.id, "long-2", t), 0);
    json_t *ack = tws_expect_reply(wa, "ack", "s3", 0);
    assert_non_null(ack);
    json_t *m = tws_expect_type(wb, "msg", 0);
    assert_non_null(m);
    assert_string_equal(tj_str(m, "cmid"), "long-2");
    assert_string_equal(tj_str(m, "body.text"), t);
    assert_int_equal(tj_int(m, "seq"), tj_int(ack, "seq"));
    json_decref(m);
    json_decref(ack);
    free(t);

    /* Fields missing, of the wrong type or out of range: invalid_request, id echoed. */
    char cmid65[66], cmid64[65];
    memset(cmid65, 'c', 65);
    cmid65[65] = 0;
    memcpy(cmid64, cmid65, 64);
    cmid64[64] = 0;
    struct {
        const char *id;
        json_t *frame;
    } bad[] = {
        {"r1", json_pack("{s:s,s:s,s:s,s:s,s:{s:s}}", "type", "send", "id", "r1", "to", ub.id,
                         "kind", "text", "body", "text", "no cmid")},
        {"r2", json_pack("{s:s,s:s,s:s,s:s,s:s,s:{s:s}}", "type", "send", "id", "r2", "to", ub.id,
                         "cmid", "", "kind", "text", "body", "text", "empty cmid")},
        {"r3", json_pack("{s:s,s:s,s:s,s:s,s:s,s:{s:s}}", "type", "send", "id", "r3", "to", ub.id,
                         "cmid", cmid65, "kind", "text", "body", "text", "cmid 65")},
        {"r4", json_pack("{s:s,s:s,s:s,s:s,s:{s:s}}", "type", "send", "id", "r4", "cmid", "r4c",
                         "kind", "text", "body", "text", "no to")},
        {"r5", json_pack("{s:s,s:s,s:s,s:s,s:s,s:{s:s}}", "type", "send", "id", "r5", "to", ub.id,
                         "cmid", "r5c", "kind", "video", "body", "text", "bad kind")},
        {"r6", json_pack("{s:s,s:s,s:s,s:s,s:s,s:s}", "type", "send", "id", "r6", "to", ub.id,
                         "cmid", "r6c", "kind", "text", "body", "not an object")},
        {"r7", json_pack("{s:s,s:s,s:s,s:s,s:s,s:{s:i}}", "type", "send", "id", "r7", "to", ub.id,
                         "cmid", "r7c", "kind", "text", "body", "text", 7)},
        {"r8", json_pack("{s:s,s:s,s:s,s:s,s:s,s:{s:s}}", "type", "send", "id", "r8", "to", ub.id,
                         "cmid", "r8c", "kind", "text", "body", "text", "")},
        {"r9", json_pack("{s:s,s:s,s:s,s:i,s:s,s:{s:s}}", "type", "send", "id", "r9", "to", ub.id,
                         "cmid", 99, "kind", "text", "body", "text", "numeric cmid")},
        {"r10", json_pack("{s:s,s:s,s:s,s:s,s:{s:s}}", "type", "send", "id", "r10", "to", ub.id,
                          "cmid", "r10c", "body", "text", "no kind")},
        {"r11",
         json_pack("{s:s,s:s,s:s,s:s,s:s,s:{s:s},s:s}", "type", "send", "id", "r11", "to", ub.id,
                   "cmid", "r11c", "kind", "text", "body", "text", "x", "reply_to", "one")},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_non_null(bad[i].frame);
        assert_int_equal(tws_send_json(wa, bad[i].frame), 0);
        json_decref(bad[i].frame);
        assert_ws_error(wa, bad[i].id, "invalid_request");
    }
    /* A cmid of exactly 64 bytes is fine. */
    ack = tws_send_msg(wa, ub.id, cmid64, "cmid of 64");
    assert_non_null(ack);
    json_decref(ack);
    m = tws_expect_type(wb, "msg", 0);
    assert_non_null(m);
    assert_string_equal(tj_str(m, "cmid"), cmid64);
    json_decref(m);

    /* body over 64 KiB as JSON (a media body; the frame itself is under 128 KiB). */
    size_t big = 70000;
    char *blob = malloc(big + 1);
    memset(blob, 'm', big);
    blob[big] = 0;
    json_t *f = json_pack("{s:s,s:s,s:s,s:s,s:s,s:{s:s}}", "type", "send", "id", "big1", "to",
                          ub.id, "cmid", "big1c", "kind", "media", "body", "blob", blob);
    assert_int_equal(tws_send_json(wa, f), 0);
    json_decref(f);
    free(blob);
    assert_ws_error(wa, "big1", "body_too_large");

    /* None of the refused sends reached b, and everyone is still talking. */
    assert_true(tws_silent(wb, 300));
    assert_ws_alive(wa);
    assert_ws_alive(wb);
    tws_free(wa);
    tws_free(wb);
}

/* A JSON send frame padded to exactly `size` bytes. */
static char *frame_of_size(const char *to, size_t size)
{
    char head[256];
    int n = snprintf(head, sizeof head,
                     "{\"type\":\"send\",\"id\":\"huge\",\"to\":\"%s\",\"cmid\":\"huge-c\","
                     "\"kind\":\"media\",\"body\":{\"blob\":\"",
                     to);
    const char *tail = "\"}}";
    char *s = malloc(size + 1);
    memcpy(s, head, (size_t)n);
    memset(s + n, 'z', size - (size_t)n - 3);
    memcpy(s + size - 3, tail, 4);
    return s;
}

/* Sends a message of `size` bytes in nfrag fragments on a socket (authenticated unless
 * raw) and returns the close code that follows. */
static int close_after_big(int size, int nfrag, bool auth)
{
    tws *ws = auth ? tws_live(PORT, &ua, "big") : tws_open(PORT);
    assert_non_null(ws);
    char *s = frame_of_size(ub.id, (size_t)size);
    tws_send_text(ws, s, (size_t)size, nfrag); /* the server may close before reading it all */
    free(s);
    int code = tws_wait_close(ws, 0);
    tws_free(ws);
    if (code != 4009)
        t_note("message of %d bytes in %d fragment(s)%s: want close 4009, got %d", size, nfrag,
               auth ? "" : " before auth", code);
    return code;
}

T_TEST(test_ws_message_size_limit)
{
    /* Exactly 128 KiB: accepted as a message (refused for its body size, socket open). */
    tws *ws = tws_live(PORT, &ua, "a");
    assert_non_null(ws);
    char *s = frame_of_size(ub.id, 131072);
    assert_int_equal(tws_send_text(ws, s, 131072, 1), 0);
    free(s);
    assert_ws_error(ws, "huge", "body_too_large");
    assert_ws_alive(ws);
    tws_free(ws);
    /* Over it: close 4009, in one frame, in fragments, before auth. All checked, then
     * asserted, so one run reports every case. */
    int codes[4] = {close_after_big(131073, 1, true), close_after_big(160000, 4, true),
                    close_after_big(140000, 20, true), close_after_big(200000, 1, false)};
    for (int i = 0; i < 4; i++) assert_int_equal(codes[i], 4009);
}

/* Opens an authenticated socket, sends one raw frame, returns 1 when the close code is the
 * wanted one (notes it otherwise). */
static int protocol_close(bool fin, int rsv, int opcode, bool mask, const void *p, size_t n,
                          int want, const char *what)
{
    tws *ws = tws_live(PORT, &ua, "proto");
    assert_non_null(ws);
    tws_send_frame(ws, fin, rsv, opcode, mask, p, n);
    int code = tws_wait_close(ws, 0);
    tws_free(ws);
    if (code != want) t_note("%s: want close %d, got %d", what, want, code);
    return code == want;
}

T_TEST(test_ws_protocol_errors)
{
    const char *ping = "{\"type\":\"ping\",\"id\":\"p\"}";
    const char bad_utf8[] = "{\"type\":\"ping\",\"id\":\"\xc3\x28\"}";
    const char surrogate[] = "{\"type\":\"ping\",\"id\":\"\xed\xa0\x80\"}";
    char big[126];
    memset(big, 'p', sizeof big);
    size_t pl = strlen(ping);
    int ok = 0, total = 0;
    ok += protocol_close(true, 0, WS_BIN, true, ping, pl, 1003, "binary message"), total++;
    ok += protocol_close(true, 0, WS_TEXT, true, bad_utf8, strlen(bad_utf8), 1007, "bad UTF-8"),
        total++;
    ok += protocol_close(true, 0, WS_TEXT, true, surrogate, strlen(surrogate), 1007,
                         "UTF-8 surrogate"),
        total++;
    ok += protocol_close(true, 0, WS_TEXT, false, ping, pl, 1002, "unmasked frame"), total++;
    ok += protocol_close(true, 4, WS_TEXT, true, ping, pl, 1002, "RSV1 set"), total++;
    ok += protocol_close(true, 0, 3, true, ping, pl, 1002, "reserved data opcode 3"), total++;
    ok += protocol_close(true, 0, 0xB, true, "", 0, 1002, "reserved control opcode 11"), total++;
    ok += protocol_close(true, 0, WS_CONT, true, ping, pl, 1002, "continuation first"), total++;
    ok += protocol_close(false, 0, WS_PING, true, "x", 1, 1002, "fragmented ping"), total++;
    ok += protocol_close(true, 0, WS_PING, true, big, sizeof big, 1002, "ping of 126 bytes"),
        total++;
    assert_int_equal(ok, total);

    /* A WebSocket ping is answered with a pong carrying the same payload, and a text message
     * split around a ping still arrives whole. */
    tws *ws = tws_live(PORT, &ua, "ping");
    assert_non_null(ws);
    assert_int_equal(tws_send_frame(ws, true, 0, WS_PING, true, "hello", 5), 0);
    tws_msg m;
    assert_int_equal(tws_recv(ws, &m, 0), 0);
    assert_int_equal(m.opcode, WS_PONG);
    assert_int_equal(m.len, 5);
    assert_memory_equal(m.data, "hello", 5);
    tws_msg_free(&m);
    assert_int_equal(tws_send_frame(ws, false, 0, WS_TEXT, true, ping, 10), 0);
    assert_int_equal(tws_send_frame(ws, true, 0, WS_PING, true, "mid", 3), 0);
    assert_int_equal(tws_send_frame(ws, true, 0, WS_CONT, true, ping + 10, strlen(ping) - 10), 0);
    assert_int_equal(tws_recv(ws, &m, 0), 0);
    assert_int_equal(m.opcode, WS_PONG);
    tws_msg_free(&m);
    json_t *pong = tws_expect_reply(ws, "pong", "p", 0);
    assert_non_null(pong);
    json_decref(pong);
    /* A clean close is answered with 1000. */
    assert_int_equal(tws_close(ws, 1000, 0), 1000);
}

T_TEST(test_ws_handshake_errors)
{
    thttp_resp r;
    bool closed;
    char req[512];
    /* No key. */
    snprintf(req, sizeof req,
             "GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             "Sec-WebSocket-Version: 13\r\n\r\n");
    assert_int_equal(thttp_raw(PORT, req, strlen(req), &r, NULL), 0);
    assert_http_error(r.status, r.json, 400, "bad_request");
    thttp_resp_free(&r);
    /* Another version: 426 with Sec-WebSocket-Version: 13. */
    snprintf(req, sizeof req,
             "GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n");
    assert_int_equal(thttp_raw(PORT, req, strlen(req), &r, NULL), 0);
    assert_int_equal(r.status, 426);
    char v[16];
    assert_non_null(thttp_header(&r, "Sec-WebSocket-Version", v, sizeof v));
    assert_string_equal(v, "13");
    thttp_resp_free(&r);
    /* Header names and tokens in any case, Connection with several tokens: 101 with the
     * RFC 6455 example accept value. */
    snprintf(req, sizeof req,
             "GET /v1/ws HTTP/1.1\r\nhost: x\r\nUPGRADE: WebSocket\r\n"
             "connection: keep-alive, UPGRADE\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
             "SEC-WEBSOCKET-VERSION: 13\r\n\r\n");
    assert_int_equal(thttp_raw(PORT, req, strlen(req), &r, &closed), 0);
    assert_int_equal(r.status, 101);
    char acc[64];
    assert_non_null(thttp_header(&r, "Sec-WebSocket-Accept", acc, sizeof acc));
    assert_string_equal(acc, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    thttp_resp_free(&r);
}

/* ---------------------------------------------------------------- HTTP */

/* Sends raw bytes; 1 when the answer is status + code (and the connection was then closed, if
 * must_close), else 0 with a note. */
static int raw_expect(const char *req, size_t len, int status, const char *code, bool must_close)
{
    thttp_resp r;
    bool closed = false;
    int ok = thttp_raw(PORT, req, len, &r, &closed) == 0 && r.status == status &&
             strcmp(t_err_code(r.json), code) == 0 && (closed || !must_close);
    if (!ok)
        t_note("request \"%.*s\": want %d %s%s, got %d %s%s", (int)strcspn(req, "\r\n"), req,
               status, code, must_close ? " and close" : "", r.status, r.body ? r.body : "",
               must_close && !closed ? " (connection left open)" : "");
    thttp_resp_free(&r);
    return ok;
}

T_TEST(test_http_errors)
{
    int st;
    json_t *r;
    assert_int_equal(thttp_req(PORT, "GET", "/v1/nothing-here", ua.token, NULL, &st, &r), 0);
    assert_http_error(st, r, 404, "not_found");
    json_decref(r);
    assert_int_equal(thttp_req(PORT, "GET", "/", NULL, NULL, &st, &r), 0);
    assert_http_error(st, r, 404, "not_found");
    json_decref(r);
    /* Routes that exist, methods that do not. */
    assert_int_equal(thttp_req(PORT, "PUT", "/v1/me", ua.token, "{}", &st, &r), 0);
    assert_http_error(st, r, 405, "method_not_allowed");
    json_decref(r);
    assert_int_equal(thttp_req(PORT, "DELETE", "/v1/health", NULL, NULL, &st, &r), 0);
    assert_http_error(st, r, 405, "method_not_allowed");
    json_decref(r);
    assert_int_equal(thttp_req(PORT, "GET", "/v1/accounts", NULL, NULL, &st, &r), 0);
    assert_http_error(st, r, 405, "method_not_allowed");
    json_decref(r);

    /* Bodies: not JSON, not an object, too deep; the wrong type; no length. */
    assert_int_equal(thttp_req(PORT, "POST", "/v1/sessions", NULL, "{nope", &st, &r), 0);
    assert_http_error(st, r, 400, "invalid_json");
    json_decref(r);
    assert_int_equal(thttp_req(PORT, "POST", "/v1/sessions", NULL, "[]", &st, &r), 0);
    assert_http_error(st, r, 400, "invalid_json");
    json_decref(r);
    char deep[256] = "", deep_ok[256] = "";
    for (int i = 0; i < 20; i++) strcat(deep, "{\"a\":");
    strcat(deep, "1");
    for (int i = 0; i < 20; i++) strcat(deep, "}");
    assert_int_equal(thttp_req(PORT, "POST", "/v1/sessions", NULL, deep, &st, &r), 0);
    assert_http_error(st, r, 400, "invalid_json");
    json_decref(r);
    /* 10 levels are fine as JSON (then refused for the missing fields). */
    for (int i = 0; i < 10; i++) strcat(deep_ok, "{\"a\":");
    strcat(deep_ok, "1");
    for (int i = 0; i < 10; i++) strcat(deep_ok, "}");
    assert_int_equal(thttp_req(PORT, "POST", "/v1/sessions", NULL, deep_ok, &st, &r), 0);
    assert_http_error(st, r, 400, "invalid_request");
    json_decref(r);
    const char text_plain[] = "POST /v1/sessions HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain"
                              "\r\nContent-Length: 2\r\n\r\n{}";
    assert_true(raw_expect(text_plain, strlen(text_plain), 415, "unsupported_media_type", false));
    const char chunked[] =
        "POST /v1/sessions HTTP/1.1\r\nHost: x\r\nContent-Type: "
        "application/json\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n";
    assert_true(raw_expect(chunked, strlen(chunked), 411, "length_required", false));

    /* Body limit 1 MiB: one byte over is 413; exactly 1 MiB is read (and refused as a
     * request). */
    size_t max = 1048576;
    char *body = malloc(max + 2);
    const char *pre = "{\"login\":\"x\",\"password\":\"";
    size_t pl = strlen(pre);
    memcpy(body, pre, pl);
    memset(body + pl, 'p', max + 1 - pl - 2);
    memcpy(body + max + 1 - 2, "\"}", 3); /* max + 1 bytes */
    buf_t req;
    buf_init(&req);
    buf_printf(&req,
               "POST /v1/sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               "Content-Length: %zu\r\n\r\n",
               max + 1);
    buf_append(&req, body, max + 1);
    thttp_resp resp;
    assert_int_equal(thttp_raw(PORT, req.data, req.len, &resp, NULL), 0);
    assert_http_error(resp.status, resp.json, 413, "body_too_large");
    thttp_resp_free(&resp);
    buf_reset(&req);
    memcpy(body + max - 2, "\"}", 3); /* max bytes */
    buf_printf(&req,
               "POST /v1/sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               "Content-Length: %zu\r\n\r\n",
               max);
    buf_append(&req, body, max);
    assert_int_equal(thttp_raw(PORT, req.data, req.len, &resp, NULL), 0);
    assert_int_not_equal(resp.status, 413);
    assert_true(resp.status == 400 || resp.status == 401);
    thttp_resp_free(&resp);
    buf_free(&req);
    free(body);

    /* Malformed requests: 400 bad_request and the connection is closed. */
    const char *garbage[] = {
        "GARBAGE\r\n\r\n",
        "GET /v1/health HTTP/1.1\r\nThis is not a header\r\n\r\n",
        "GET /v1/health HTTX/1.1\r\n\r\n",
        "GET /v1/health HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
        "\x01\x02\x03\x04\r\n\r\n",
    };
    size_t ok = 0, n = sizeof garbage / sizeof garbage[0];
    for (size_t i = 0; i < n; i++)
        ok += (size_t)raw_expect(garbage[i], strlen(garbage[i]), 400, "bad_request", true);
    /* Headers over 16 KiB: 431 and closed. */
    buf_init(&req);
    buf_append_str(&req, "GET /v1/health HTTP/1.1\r\nHost: x\r\n");
    for (int i = 0; i < 40; i++) {
        buf_printf(&req, "X-Filler-%d: ", i);
        for (int k = 0; k < 50; k++) buf_append_str(&req, "0123456789");
        buf_append_str(&req, "\r\n");
    }
    buf_append_str(&req, "\r\n");
    ok += (size_t)raw_expect((char *)req.data, req.len, 431, "headers_too_large", true);
    buf_free(&req);
    assert_int_equal(ok, n + 1);
}

T_TEST(test_http_keepalive_pipelining)
{
    thttp_conn c;
    assert_int_equal(thttp_open(&c, PORT), 0);
    char *r1 = thttp_format(PORT, "GET", "/v1/health", NULL, NULL);
    char *r2 = thttp_format(PORT, "GET", "/v1/me", ua.token, NULL);
    char *r3 = thttp_format(PORT, "GET", "/v1/no-such-route", NULL, NULL);
    char *r4 = thttp_format(PORT, "POST", "/v1/sessions", NULL,
                            "{\"login\":\"nobody-at-all\",\"password\":\"wrong wrong\"}");
    buf_t all;
    buf_init(&all);
    buf_append_str(&all, r1);
    buf_append_str(&all, r2);
    buf_append_str(&all, r3);
    buf_append_str(&all, r4);
    /* Four requests in one write: four answers, in order. */
    assert_int_equal(thttp_write(&c, all.data, all.len), 0);
    int want[4] = {200, 200, 404, 401};
    for (int i = 0; i < 4; i++) {
        thttp_resp r;
        assert_int_equal(thttp_read(&c, &r, 0), 0);
        if (r.status != want[i]) t_note("pipelined answer %d: %d %s", i, r.status, r.body);
        assert_int_equal(r.status, want[i]);
        if (i == 1) assert_string_equal(tj_str(r.json, "id"), ua.id);
        thttp_resp_free(&r);
    }
    /* The connection stays open for more, split at odd places. */
    size_t n = strlen(r2);
    for (size_t k = 0; k < n; k += 7)
        assert_int_equal(thttp_write(&c, r2 + k, n - k < 7 ? n - k : 7), 0);
    thttp_resp r;
    assert_int_equal(thttp_read(&c, &r, 0), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(tj_str(r.json, "id"), ua.id);
    thttp_resp_free(&r);
    assert_int_equal(thttp_wait_eof(&c, 100), 0); /* still open, nothing extra */
    thttp_close(&c);
    free(r1);
    free(r2);
    free(r3);
    free(r4);
    buf_free(&all);
}

/* ---------------------------------------------------------------- after all that */

T_TEST(test_auth_timeout)
{
    /* Opened in the group setup, never authenticated: closed with 4008 at 10 s. */
    int code = tws_wait_close(idle_ws, 15000);
    int64_t waited = mono_ms() - idle_since;
    t_note("idle socket closed with %d after %lld ms", code, (long long)waited);
    assert_int_equal(code, 4008);
    assert_in_range(waited, 9500, 13000);
}

T_TEST(test_zz_server_still_fine)
{
    tuser c, d;
    assert_int_equal(tuser_new(PORT, "afterc", &c), 201);
    assert_int_equal(tuser_new(PORT, "afterd", &d), 201);
    tws *wc = tws_live(PORT, &c, "c"), *wd = tws_live(PORT, &d, "d");
    assert_non_null(wc);
    assert_non_null(wd);
    char conv[ID_MAX];
    conv_direct_id(conv, c.id, d.id);
    int64_t seq = 0;
    for (int i = 0; i < 10; i++) {
        tws *from = i % 2 ? wd : wc, *to = i % 2 ? wc : wd;
        tuser *fu = i % 2 ? &d : &c, *tu = i % 2 ? &c : &d;
        char cmid[32];
        snprintf(cmid, sizeof cmid, "fine-%d", i);
        json_t *ack = tws_send_msg(from, tu->id, cmid, "still fine");
        assert_non_null(ack);
        assert_string_equal(tj_str(ack, "conv"), conv);
        if (seq) assert_int_equal(tj_int(ack, "seq"), seq + 1);
        seq = tj_int(ack, "seq");
        json_t *m = tws_expect_type(to, "msg", 0);
        assert_non_null(m);
        assert_string_equal(tj_str(m, "cmid"), cmid);
        assert_string_equal(tj_str(m, "from"), fu->id);
        assert_int_equal(tj_int(m, "seq"), seq);
        json_decref(m);
        json_decref(ack);
    }
    assert_true(tws_silent(wc, 200));
    assert_true(tws_silent(wd, 50));
    tws_free(wc);
    tws_free(wd);
    /* And it shuts down cleanly after all of it: exit 0, no leaks. */
    assert_int_equal(tsrv_stop(&srv), 0);
}

#define T(f) cmocka_unit_test_teardown(f, after_each)

int main(void)
{
    /* Presence and typing are not what this file tests; they may come any time. */
    tws_default_ignore = "presence,typing";
    const struct CMUnitTest tests[] = {
        T(test_rest_auth_errors),   T(test_ws_auth_errors),
        T(test_ws_bad_frames),      T(test_ws_message_size_limit),
        T(test_ws_protocol_errors), T(test_ws_handshake_errors),
        T(test_http_errors),        T(test_http_keepalive_pipelining),
        T(test_auth_timeout),       T(test_zz_server_still_fine),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
