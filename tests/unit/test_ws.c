/* test_ws.c: unit tests for common/ws.h, a WebSocket endpoint over byte buffers.
 *
 * A client ws_t and a server ws_t are wired to each other in memory (one's ws_out() fed into the
 * other's ws_feed()); for the error cases frames are built by hand, masked as a client must. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/buf.h"
#include "common/ws.h"

#define MAX_MSG 1024

/* ---- a recorder for on_text ---- */

#define MAX_REC 64

typedef struct rec {
    int n;
    char *msg[MAX_REC];
    size_t len[MAX_REC];
} rec_t;

static void on_text(void *ud, const char *msg, size_t len)
{
    rec_t *r = ud;
    assert_true(r->n < MAX_REC);
    r->msg[r->n] = malloc(len + 1);
    assert_non_null(r->msg[r->n]);
    if (len) memcpy(r->msg[r->n], msg, len);
    r->msg[r->n][len] = 0;
    r->len[r->n] = len;
    r->n++;
}

static void rec_free(rec_t *r)
{
    for (int i = 0; i < r->n; i++) free(r->msg[i]);
    r->n = 0;
}

static const ws_handler handler = {.on_text = on_text};

typedef struct pair {
    ws_t *cli, *srv;
    rec_t cr, sr; /* what the client and the server received */
    buf_t in;     /* frames built by hand */
    char *tmp;    /* a scratch allocation, freed by the teardown */
} pair_t;

static int pair_setup(void **state)
{
    pair_t *p = calloc(1, sizeof *p);
    if (!p) return -1;
    buf_init(&p->in);
    p->cli = ws_new(false, MAX_MSG, &handler, &p->cr);
    p->srv = ws_new(true, MAX_MSG, &handler, &p->sr);
    if (!p->cli || !p->srv) return -1;
    *state = p;
    return 0;
}

static int pair_teardown(void **state)
{
    pair_t *p = *state;
    ws_free(p->cli);
    ws_free(p->srv);
    rec_free(&p->cr);
    rec_free(&p->sr);
    buf_free(&p->in);
    free(p->tmp);
    free(p);
    return 0;
}

/* Moves everything from's output into to; returns what ws_feed returned. */
static long pump(ws_t *from, ws_t *to)
{
    buf_t *o = ws_out(from);
    size_t n = o->len;
    long k = ws_feed(to, o->data, n);
    buf_reset(o);
    return k;
}

/* ---- frames by hand ---- */

/* Appends one frame. fin, rsv (0..7) and opcode go in the first byte; mask_key NULL sends it
 * unmasked. */
static void frame(buf_t *b, int fin, int rsv, int opcode, const uint8_t *mask_key, const void *data,
                  size_t len)
{
    uint8_t h[14];
    size_t n = 0;
    h[n++] = (uint8_t)((fin ? 0x80 : 0) | (rsv & 7) << 4 | (opcode & 0xF));
    uint8_t m = mask_key ? 0x80 : 0;
    if (len < 126) {
        h[n++] = (uint8_t)(m | len);
    } else if (len < 65536) {
        h[n++] = m | 126;
        h[n++] = (uint8_t)(len >> 8);
        h[n++] = (uint8_t)len;
    } else {
        h[n++] = m | 127;
        for (int i = 7; i >= 0; i--) h[n++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    if (mask_key) {
        memcpy(h + n, mask_key, 4);
        n += 4;
    }
    buf_append(b, h, n);
    const uint8_t *d = data;
    for (size_t i = 0; i < len; i++) {
        uint8_t c = (uint8_t)(d[i] ^ (mask_key ? mask_key[i % 4] : 0));
        buf_append(b, &c, 1);
    }
}

static const uint8_t MASK[4] = {0x37, 0xfa, 0x21, 0x3d};

/* A frame as a client sends it: masked. */
static void cframe(buf_t *b, int fin, int opcode, const void *data, size_t len)
{
    frame(b, fin, 0, opcode, MASK, data, len);
}

typedef struct parsed {
    int fin, rsv, opcode, masked;
    uint8_t payload[70000];
    size_t len;
} parsed_t;

/* Parses the frame at data[*off] (unmasking it); false when incomplete. */
static bool parse_frame(const uint8_t *data, size_t n, size_t *off, parsed_t *f)
{
    size_t i = *off;
    if (n - i < 2) return false;
    f->fin = data[i] >> 7;
    f->rsv = (data[i] >> 4) & 7;
    f->opcode = data[i] & 0xF;
    f->masked = data[i + 1] >> 7;
    uint64_t len = data[i + 1] & 0x7F;
    i += 2;
    if (len == 126) {
        if (n - i < 2) return false;
        len = (uint64_t)data[i] << 8 | data[i + 1];
        i += 2;
    } else if (len == 127) {
        if (n - i < 8) return false;
        len = 0;
        for (int k = 0; k < 8; k++) len = len << 8 | data[i + k];
        i += 8;
    }
    uint8_t key[4] = {0, 0, 0, 0};
    if (f->masked) {
        if (n - i < 4) return false;
        memcpy(key, data + i, 4);
        i += 4;
    }
    if (n - i < len || len > sizeof f->payload) return false;
    for (size_t k = 0; k < len; k++) f->payload[k] = data[i + k] ^ key[k % 4];
    f->len = (size_t)len;
    *off = i + (size_t)len;
    return true;
}

/* Finds the close frame in an endpoint's output; returns its code (-1 if none, 1005 if empty). */
static int out_close_code(ws_t *ws, bool want_masked)
{
    buf_t *o = ws_out(ws);
    size_t off = 0;
    static parsed_t f;
    while (parse_frame(o->data, o->len, &off, &f)) {
        assert_int_equal(f.masked, want_masked);
        if (f.opcode == 0x8) return f.len >= 2 ? (f.payload[0] << 8 | f.payload[1]) : 1005;
    }
    assert_int_equal(off, o->len); /* nothing left over: whole frames only */
    return -1;
}

/* Feeds a hand-built buffer to the server and checks it answered with a close of `code`. */
static void expect_server_close(pair_t *p, buf_t *in, int code)
{
    long k = ws_feed(p->srv, in->data, in->len);
    assert_true(k >= -1);
    int got = out_close_code(p->srv, false);
    if (got != code) print_error("want a close frame with code %d, got %d\n", code, got);
    assert_int_equal(got, code);
    assert_true(ws_closing(p->srv));
    assert_int_equal(p->sr.n, 0);
    /* After the close, nothing more is delivered and sending fails. */
    assert_int_equal(ws_send_text(p->srv, "late", 4), -1);
    size_t end = in->len;
    cframe(in, 1, 0x1, "after", 5);
    assert_true(ws_feed(p->srv, in->data + end, in->len - end) < (long)(in->len - end));
    assert_int_equal(p->sr.n, 0);
    /* The client, fed the server's output, sees the close code. */
    pump(p->srv, p->cli);
    assert_int_equal(ws_peer_close_code(p->cli), code);
    assert_true(ws_closing(p->cli));
}

/* ---- tests ---- */

static void test_accept_key(void **state)
{
    (void)state;
    char out[29];
    /* RFC 6455 section 1.3. */
    const char *key = "dGhlIHNhbXBsZSBub25jZQ==";
    ws_accept_key(out, key, strlen(key));
    assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    /* Only keylen bytes are used. */
    ws_accept_key(out, "dGhlIHNhbXBsZSBub25jZQ==trailing", 24);
    assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    /* RFC 6455 section 4.2.2's example key gives a different answer of the same shape. */
    ws_accept_key(out, "x3JJHMbDL1EzLkh9GBhXDw==", 24);
    assert_string_equal(out, "HSmrc0sMlYUkAGmm5OPpG2HaGWk=");
}

static void test_text_roundtrip(void **state)
{
    pair_t *p = *state;
    assert_false(ws_closing(p->cli));
    assert_int_equal(ws_peer_close_code(p->cli), 0);
    assert_int_equal(ws_send_text(p->cli, "hello", 5), 0);
    /* The client's frame is masked. */
    buf_t *o = ws_out(p->cli);
    assert_true(o->len >= 2 + 4 + 5);
    assert_true(o->data[1] & 0x80);
    assert_int_equal(pump(p->cli, p->srv), 2 + 4 + 5);
    assert_int_equal(p->sr.n, 1);
    assert_string_equal(p->sr.msg[0], "hello");
    assert_int_equal(p->sr.len[0], 5);

    /* The server answers, unmasked; UTF-8 and an empty message survive. */
    const char *u = "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80";
    assert_int_equal(ws_send_text(p->srv, u, strlen(u)), 0);
    assert_int_equal(ws_send_text(p->srv, "", 0), 0);
    o = ws_out(p->srv);
    assert_false(o->data[1] & 0x80);
    assert_true(pump(p->srv, p->cli) > 0);
    assert_int_equal(p->cr.n, 2);
    assert_string_equal(p->cr.msg[0], u);
    assert_int_equal(p->cr.len[1], 0);

    /* Lengths on both sides of the 7-bit and 16-bit length encodings, up to max_msg. */
    size_t sizes[] = {125, 126, 127, 1000, MAX_MSG};
    char *big = malloc(MAX_MSG);
    assert_non_null(big);
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        memset(big, 'a' + (int)i, sizes[i]);
        assert_int_equal(ws_send_text(p->cli, big, sizes[i]), 0);
    }
    pump(p->cli, p->srv);
    assert_int_equal(p->sr.n, 1 + 5);
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        assert_int_equal(p->sr.len[1 + i], sizes[i]);
        memset(big, 'a' + (int)i, sizes[i]);
        assert_memory_equal(p->sr.msg[1 + i], big, sizes[i]);
    }
    free(big);
    assert_false(ws_closing(p->srv));
    assert_false(ws_closing(p->cli));
    assert_int_equal(ws_out(p->srv)->len, 0);
}

static void test_one_byte_at_a_time(void **state)
{
    pair_t *p = *state;
    const char *msg = "{\"type\":\"send\",\"text\":\"d\xc3\xa9j\xc3\xa0 vu\"}";
    assert_int_equal(ws_send_text(p->cli, msg, strlen(msg)), 0);
    assert_int_equal(ws_send_text(p->cli, "second", 6), 0);
    buf_t *in = &p->in;
    buf_append(in, ws_out(p->cli)->data, ws_out(p->cli)->len);
    buf_reset(ws_out(p->cli));
    size_t first_len = 2 + 4 + strlen(msg);
    for (size_t i = 0; i < in->len; i++) {
        assert_int_equal(ws_feed(p->srv, in->data + i, 1), 1);
        /* Delivered exactly when its last byte arrives. */
        if (i + 1 < first_len)
            assert_int_equal(p->sr.n, 0);
        else if (i + 1 < in->len)
            assert_int_equal(p->sr.n, 1);
    }
    assert_int_equal(p->sr.n, 2);
    assert_string_equal(p->sr.msg[0], msg);
    assert_string_equal(p->sr.msg[1], "second");
    /* Feeding nothing takes nothing. */
    assert_int_equal(ws_feed(p->srv, in->data, 0), 0);
    assert_int_equal(ws_out(p->srv)->len, 0);
}

static void test_fragmented(void **state)
{
    pair_t *p = *state;
    buf_t *in = &p->in;
    cframe(in, 0, 0x1, "Hel", 3);
    cframe(in, 0, 0x0, "lo, ", 4);
    cframe(in, 1, 0x9, "mid", 3); /* a ping between fragments is allowed */
    cframe(in, 0, 0x0, "", 0);    /* an empty fragment */
    cframe(in, 1, 0x0, "world", 5);
    /* A multi-byte character split across fragments: "\xe2\x82\xac" (the euro sign). */
    cframe(in, 0, 0x1, "\xe2", 1);
    cframe(in, 0, 0x0, "\x82", 1);
    cframe(in, 1, 0x0, "\xac!", 2);
    assert_int_equal(ws_feed(p->srv, in->data, in->len), (long)in->len);
    assert_int_equal(p->sr.n, 2);
    assert_string_equal(p->sr.msg[0], "Hello, world");
    assert_string_equal(p->sr.msg[1], "\xe2\x82\xac!");
    /* The ping was answered. */
    static parsed_t f;
    size_t off = 0;
    buf_t *o = ws_out(p->srv);
    assert_true(parse_frame(o->data, o->len, &off, &f));
    assert_int_equal(f.opcode, 0xA);
    assert_int_equal(f.fin, 1);
    assert_int_equal(f.masked, 0);
    assert_int_equal(f.len, 3);
    assert_memory_equal(f.payload, "mid", 3);
    assert_int_equal(off, o->len);
    assert_false(ws_closing(p->srv));

    /* The same bytes one at a time. */
    buf_reset(o);
    rec_free(&p->sr);
    for (size_t i = 0; i < in->len; i++) assert_int_equal(ws_feed(p->srv, in->data + i, 1), 1);
    assert_int_equal(p->sr.n, 2);
    assert_string_equal(p->sr.msg[0], "Hello, world");
    assert_string_equal(p->sr.msg[1], "\xe2\x82\xac!");
}

static void test_fragment_errors(void **state)
{
    pair_t *p = *state;
    buf_t *in = &p->in;
    /* A continuation with no message started. */
    cframe(in, 1, 0x0, "x", 1);
    expect_server_close(p, in, WS_CLOSE_PROTOCOL);
}

static void test_fragment_new_message_inside(void **state)
{
    pair_t *p = *state;
    buf_t *in = &p->in;
    /* A new text frame while a fragmented message is open. */
    cframe(in, 0, 0x1, "ab", 2);
    cframe(in, 1, 0x1, "cd", 2);
    expect_server_close(p, in, WS_CLOSE_PROTOCOL);
}

static void test_fragmented_control(void **state)
{
    pair_t *p = *state;
    buf_t *in = &p->in;
    cframe(in, 0, 0x9, "ping", 4); /* control frames must not be fragmented */
    expect_server_close(p, in, WS_CLOSE_PROTOCOL);
}

static void test_control_too_long(void **state)
{
    pair_t *p = *state;
    buf_t *in = &p->in;
    char payload[126];
    memset(payload, 'p', sizeof payload);
    cframe(in, 1, 0x9, payload, sizeof payload); /* control frames carry at most 125 bytes */
    expect_server_close(p, in, WS_CLOSE_PROTOCOL);
}

static void test_bad_utf8(void **state)
{
    pair_t *p = *state;
    buf_t *in = &p->in;
    cframe(in, 1, 0x1, "ok \xc0\x80", 5); /* an overlong NUL */
    expect_server_close(p, in, WS_CLOSE_BAD_DATA);
}

static void test_bad_utf8_fragmented(void **state)
{
    pair_t *p = *state;
    buf_t *in = &p->in;
    /* A surrogate (U+D800) split across fragments. */
    cframe(in, 0, 0x1, "a\xed", 2);
    cframe(in, 1, 0x0, "\xa0\x80", 2);
    expect_server_close(p, in, WS_CLOSE_BAD_DATA);
}

static void test_bad_utf8_truncated(void **state)
{
    pair_t *p = *state;
    buf_t *in = &p->in;
    cframe(in, 1, 0x1, "ab\xf0\x9f\x98", 5); /* a 4-byte sequence cut short at the end */
    expect_server_close(p, in, WS_CLOSE_BAD_DATA);
}

static void test_binary(void **state)
{
    pair_t *p = *state;
    buf_t *in = &p->in;
    cframe(in, 1, 0x2, "\x00\x01\x02", 3);
    expect_server_close(p, in, WS_CLOSE_UNSUPPORTED);
}

static void test_too_big_by_one(void **state)
{
    pair_t *p = *state;
    buf_t *in = &p->in;
    char *big = p->tmp = malloc(MAX_MSG + 1);
    assert_non_null(big);
    memset(big, 'x', MAX_MSG + 1);
    cframe(in, 1, 0x1, big, MAX_MSG + 1);
    expect_server_close(p, in, WS_CLOSE_TOO_BIG);
}

static void test_too_big(void **state)
{
    pair_t *p = *state;
    buf_t *in = &p->in;
    char *big = p->tmp = malloc(4 * MAX_MSG);
    assert_non_null(big);
    memset(big, 'x', 4 * MAX_MSG);
    cframe(in, 1, 0x1, big, 4 * MAX_MSG);
    expect_server_close(p, in, WS_CLOSE_TOO_BIG);
}

static void test_too_big_header_only(void **state)
{
    pair_t *p = *state;
    /* The start of a huge frame (2^40 bytes): refused without waiting for (or allocating) the
     * whole payload. */
    buf_t *in = &p->in;
    uint8_t h[14] = {0x81, 0x80 | 127, 0, 0, 1, 0, 0, 0, 0, 0};
    memcpy(h + 10, MASK, 4);
    buf_append(in, h, sizeof h);
    buf_append(in, "abcdefgh", 8);
    expect_server_close(p, in, WS_CLOSE_TOO_BIG);
}

static void test_too_big_fragmented(void **state)
{
    pair_t *p = *state;
    buf_t *in = &p->in;
    char *half = p->tmp = malloc(MAX_MSG / 2 + 1);
    assert_non_null(half);
    memset(half, 'y', MAX_MSG / 2 + 1);
    /* Each fragment is under the limit; together they are one byte over. */
    cframe(in, 0, 0x1, half, MAX_MSG / 2);
    cframe(in, 1, 0x0, half, MAX_MSG / 2 + 1);
    expect_server_close(p, in, WS_CLOSE_TOO_BIG);
}

static void test_exactly_max_fragmented(void **state)
{
    pair_t *p = *state;
    buf_t *in = &p->in;
    char *half = p->tmp = malloc(MAX_MSG / 2);
    assert_non_null(half);
    memset(half, 'y', MAX_MSG / 2);
    cframe(in, 0, 0x1, half, MAX_MSG / 2);
    cframe(in, 1, 0x0, half, MAX_MSG / 2);
    /* The next message starts counting from zero again. */
    cframe(in, 1, 0x1, half, MAX_MSG / 2);
    assert_int_equal(ws_feed(p->srv, in->data, in->len), (long)in->len);
    assert_int_equal(p->sr.n, 2);
    assert_int_equal(p->sr.len[0], MAX_MSG);
    assert_int_equal(p->sr.len[1], MAX_MSG / 2);
    assert_false(ws_closing(p->srv));
}

static void test_unmasked_client_frame(void **state)
{
    pair_t *p = *state;
    buf_t *in = &p->in;
    frame(in, 1, 0, 0x1, NULL, "hi", 2);
    expect_server_close(p, in, WS_CLOSE_PROTOCOL);
}

static void test_rsv_bits(void **state)
{
    pair_t *p = *state;
    for (int rsv = 1; rsv <= 7; rsv++) {
        /* A fresh pair for each combination of RSV1..RSV3. */
        ws_free(p->srv);
        ws_free(p->cli);
        p->srv = ws_new(true, MAX_MSG, &handler, &p->sr);
        p->cli = ws_new(false, MAX_MSG, &handler, &p->cr);
        assert_non_null(p->srv);
        assert_non_null(p->cli);
        buf_reset(&p->in);
        frame(&p->in, 1, rsv, 0x1, MASK, "hi", 2);
        expect_server_close(p, &p->in, WS_CLOSE_PROTOCOL);
    }
}

static void test_reserved_opcode(void **state)
{
    pair_t *p = *state;
    buf_t *in = &p->in;
    frame(in, 1, 0, 0x3, MASK, "hi", 2);
    expect_server_close(p, in, WS_CLOSE_PROTOCOL);
}

static void test_masked_server_frame(void **state)
{
    pair_t *p = *state;
    /* A client must refuse a masked frame from the server. */
    buf_t *in = &p->in;
    frame(in, 1, 0, 0x1, MASK, "hi", 2);
    ws_feed(p->cli, in->data, in->len);
    assert_int_equal(p->cr.n, 0);
    assert_int_equal(out_close_code(p->cli, true), WS_CLOSE_PROTOCOL);
    assert_true(ws_closing(p->cli));
}

static void test_client_errors(void **state)
{
    pair_t *p = *state;
    /* The client side applies the same rules to what the server sends. */
    buf_t *in = &p->in;
    frame(in, 1, 0, 0x1, NULL, "\xff", 1);
    ws_feed(p->cli, in->data, in->len);
    assert_int_equal(p->cr.n, 0);
    assert_int_equal(out_close_code(p->cli, true), WS_CLOSE_BAD_DATA);
}

static void test_ping_pong(void **state)
{
    pair_t *p = *state;
    buf_t *in = &p->in;
    cframe(in, 1, 0x9, "are you there?", 14);
    cframe(in, 1, 0x9, "", 0);
    cframe(in, 1, 0xA, "unsolicited", 11); /* a pong nobody asked for is ignored */
    cframe(in, 1, 0x1, "after", 5);
    assert_int_equal(ws_feed(p->srv, in->data, in->len), (long)in->len);
    assert_int_equal(p->sr.n, 1);
    assert_string_equal(p->sr.msg[0], "after");
    static parsed_t f;
    size_t off = 0;
    buf_t *o = ws_out(p->srv);
    assert_true(parse_frame(o->data, o->len, &off, &f));
    assert_int_equal(f.opcode, 0xA);
    assert_int_equal(f.masked, 0);
    assert_int_equal(f.len, 14);
    assert_memory_equal(f.payload, "are you there?", 14);
    assert_true(parse_frame(o->data, o->len, &off, &f));
    assert_int_equal(f.opcode, 0xA);
    assert_int_equal(f.len, 0);
    assert_int_equal(off, o->len);
    assert_false(ws_closing(p->srv));

    /* The client answers a server ping too, masked. */
    buf_reset(in);
    frame(in, 1, 0, 0x9, NULL, "srv", 3);
    assert_int_equal(ws_feed(p->cli, in->data, in->len), (long)in->len);
    o = ws_out(p->cli);
    off = 0;
    assert_true(parse_frame(o->data, o->len, &off, &f));
    assert_int_equal(f.opcode, 0xA);
    assert_int_equal(f.masked, 1);
    assert_memory_equal(f.payload, "srv", 3);
    /* And the server accepts that pong quietly. */
    pump(p->cli, p->srv);
    assert_false(ws_closing(p->srv));
}

static void test_close_handshake(void **state)
{
    pair_t *p = *state;
    ws_close(p->cli, WS_CLOSE_NORMAL, "bye");
    assert_true(ws_closing(p->cli));
    assert_int_equal(ws_send_text(p->cli, "late", 4), -1);
    pump(p->cli, p->srv);
    assert_true(ws_closing(p->srv));
    assert_int_equal(ws_peer_close_code(p->srv), WS_CLOSE_NORMAL);
    /* The server echoed the close. */
    assert_int_equal(out_close_code(p->srv, false), WS_CLOSE_NORMAL);
    pump(p->srv, p->cli);
    assert_int_equal(ws_peer_close_code(p->cli), WS_CLOSE_NORMAL);
    /* Once closed, input is not taken. */
    buf_t *in = &p->in;
    cframe(in, 1, 0x1, "x", 1);
    assert_true(ws_feed(p->srv, in->data, in->len) < (long)in->len);
    assert_int_equal(p->sr.n, 0);
}

static void test_close_by_server(void **state)
{
    pair_t *p = *state;
    ws_send_text(p->srv, "last words", 10);
    ws_close(p->srv, WS_CLOSE_POLICY, "policy");
    ws_close(p->srv, WS_CLOSE_NORMAL, "again"); /* a second close is not sent */
    static parsed_t f;
    size_t off = 0;
    buf_t *o = ws_out(p->srv);
    assert_true(parse_frame(o->data, o->len, &off, &f));
    assert_int_equal(f.opcode, 0x1);
    assert_true(parse_frame(o->data, o->len, &off, &f));
    assert_int_equal(f.opcode, 0x8);
    assert_int_equal(f.payload[0] << 8 | f.payload[1], WS_CLOSE_POLICY);
    assert_memory_equal(f.payload + 2, "policy", 6);
    assert_int_equal(off, o->len);
    pump(p->srv, p->cli);
    assert_int_equal(p->cr.n, 1);
    assert_string_equal(p->cr.msg[0], "last words");
    assert_int_equal(ws_peer_close_code(p->cli), WS_CLOSE_POLICY);
    assert_true(ws_closing(p->cli));
}

static void test_bad_close_code(void **state)
{
    pair_t *p = *state;
    buf_t *in = &p->in;
    cframe(in, 1, 0x8, "\x03\xed", 2); /* 1005 may not be sent */
    ws_feed(p->srv, in->data, in->len);
    assert_int_equal(out_close_code(p->srv, false), WS_CLOSE_PROTOCOL);
    assert_true(ws_closing(p->srv));
}

static void test_close_null_reason(void **state)
{
    pair_t *p = *state;
    ws_close(p->srv, WS_CLOSE_GOING_AWAY, NULL);
    assert_int_equal(out_close_code(p->srv, false), WS_CLOSE_GOING_AWAY);
    pump(p->srv, p->cli);
    assert_int_equal(ws_peer_close_code(p->cli), WS_CLOSE_GOING_AWAY);
}

static void test_length_top_bit(void **state)
{
    pair_t *p = *state;
    buf_t *in = &p->in;
    /* A 64-bit length must have its most significant bit clear. */
    uint8_t h[14] = {0x81, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 5};
    memcpy(h + 10, MASK, 4);
    buf_append(in, h, sizeof h);
    buf_append(in, "hello", 5);
    expect_server_close(p, in, WS_CLOSE_PROTOCOL);
}

static void test_close_one_byte(void **state)
{
    pair_t *p = *state;
    buf_t *in = &p->in;
    cframe(in, 1, 0x8, "\x03", 1); /* a close payload is empty or at least a 2-byte code */
    expect_server_close(p, in, WS_CLOSE_PROTOCOL);
}

/* Messages that arrived before a bad frame are delivered, whether or not the bad frame comes in
 * the same read: the outcome must not depend on how TCP split the stream. */
static void check_delivered_then_closed(pair_t *p, int code)
{
    buf_t *in = &p->in;
    /* Once in one feed... */
    ws_feed(p->srv, in->data, in->len);
    if (p->sr.n != 1) print_error("one read: %d messages delivered before the close\n", p->sr.n);
    assert_int_equal(p->sr.n, 1);
    assert_string_equal(p->sr.msg[0], "first");
    assert_int_equal(out_close_code(p->srv, false), code);

    /* ...and once with the good frame in a read of its own. */
    ws_free(p->srv);
    rec_free(&p->sr);
    p->srv = ws_new(true, MAX_MSG, &handler, &p->sr);
    assert_non_null(p->srv);
    size_t first = 2 + 4 + 5;
    assert_int_equal(ws_feed(p->srv, in->data, first), (long)first);
    ws_feed(p->srv, in->data + first, in->len - first);
    assert_int_equal(p->sr.n, 1);
    assert_int_equal(out_close_code(p->srv, false), code);
}

static void test_message_before_too_big(void **state)
{
    pair_t *p = *state;
    char *big = p->tmp = malloc(MAX_MSG + 1);
    assert_non_null(big);
    memset(big, 'x', MAX_MSG + 1);
    cframe(&p->in, 1, 0x1, "first", 5);
    cframe(&p->in, 1, 0x1, big, MAX_MSG + 1);
    check_delivered_then_closed(p, WS_CLOSE_TOO_BIG);
}

static void test_message_before_protocol_error(void **state)
{
    pair_t *p = *state;
    cframe(&p->in, 1, 0x1, "first", 5);
    cframe(&p->in, 1, 0x8, "\x03", 1); /* a 1-byte close payload */
    check_delivered_then_closed(p, WS_CLOSE_PROTOCOL);
}

static void test_message_before_unmasked(void **state)
{
    pair_t *p = *state;
    cframe(&p->in, 1, 0x1, "first", 5);
    frame(&p->in, 1, 0, 0x1, NULL, "second", 6);
    check_delivered_then_closed(p, WS_CLOSE_PROTOCOL);
}

static void test_one_close_only(void **state)
{
    pair_t *p = *state;
    /* After a protocol error closed the endpoint, a later ws_close() sends nothing. */
    cframe(&p->in, 0, 0x9, "ping", 4); /* a fragmented control frame */
    assert_int_equal(ws_feed(p->srv, p->in.data, p->in.len), -1);
    assert_int_equal(out_close_code(p->srv, false), WS_CLOSE_PROTOCOL);
    buf_reset(ws_out(p->srv));
    ws_close(p->srv, WS_CLOSE_GOING_AWAY, "server shutting down");
    if (ws_out(p->srv)->len)
        print_error("%zu more bytes sent after the close\n", ws_out(p->srv)->len);
    assert_int_equal(ws_out(p->srv)->len, 0);
    assert_true(ws_closing(p->srv));
}

#define T(f) cmocka_unit_test_setup_teardown(f, pair_setup, pair_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accept_key),
        T(test_text_roundtrip),
        T(test_one_byte_at_a_time),
        T(test_fragmented),
        T(test_fragment_errors),
        T(test_fragment_new_message_inside),
        T(test_fragmented_control),
        T(test_control_too_long),
        T(test_bad_utf8),
        T(test_bad_utf8_fragmented),
        T(test_bad_utf8_truncated),
        T(test_binary),
        T(test_too_big_by_one),
        T(test_too_big),
        T(test_too_big_header_only),
        T(test_too_big_fragmented),
        T(test_exactly_max_fragmented),
        T(test_unmasked_client_frame),
        T(test_rsv_bits),
        T(test_reserved_opcode),
        T(test_masked_server_frame),
        T(test_client_errors),
        T(test_ping_pong),
        T(test_close_handshake),
        T(test_close_by_server),
        T(test_bad_close_code),
        T(test_close_null_reason),
        T(test_length_top_bit),
        T(test_close_one_byte),
        T(test_message_before_too_big),
        T(test_message_before_protocol_error),
        T(test_message_before_unmasked),
        T(test_one_close_only),
    };
    return cmocka_run_group_tests_name("ws", tests, NULL, NULL);
}
