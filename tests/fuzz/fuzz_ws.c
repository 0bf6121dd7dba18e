/* fuzz_ws.c: libFuzzer target for common/ws.h (the WebSocket frame envelope) and, through
 * on_text, for the JSON envelope of each message (jansson + jsonx_depth_ok).
 *
 * The first byte seeds the split points and picks max_msg (16 << (byte >> 5): 16..2048 bytes, so
 * that the size limit is within the fuzzer's reach); the rest is what a peer sends. It goes to a
 * server ws_t in random-sized pieces, fed as conn.c does, with on_text parsing each message as
 * the server does (and answering from inside the callback, as the server does); then the same
 * bytes go to a client ws_t. Whatever an endpoint writes must be a well-formed frame stream that
 * the other side accepts, and feeding the stream all at once must come to the same result as
 * feeding it in pieces. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/jsonx.h"
#include "common/util.h"
#include "common/ws.h"

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if (!(x)) abort();                                                                         \
    } while (0)

typedef struct ctx {
    ws_t *ws;
    size_t max_msg;
    int texts;
    uint64_t hash; /* of every message received, in order */
} ctx_t;

static uint32_t rng_next(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

/* An independent nesting depth, to check jsonx_depth_ok against. */
static int depth(const json_t *v)
{
    int d = 0;
    if (json_is_object(v)) {
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)v, k, x)
        {
            int c = depth(x);
            if (c > d) d = c;
        }
        return d + 1;
    }
    if (json_is_array(v)) {
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x)
        {
            int c = depth(x);
            if (c > d) d = c;
        }
        return d + 1;
    }
    return 0;
}

static void on_text(void *ud, const char *msg, size_t len)
{
    ctx_t *c = ud;
    c->texts++;
    c->hash = (c->hash ^ len) * 1099511628211ull;
    for (size_t i = 0; i < len; i++) c->hash = (c->hash ^ (uint8_t)msg[i]) * 1099511628211ull;
    CHECK(len <= c->max_msg);
    CHECK(len == 0 || msg != NULL);
    CHECK(utf8_valid((const uint8_t *)msg, len));
    json_error_t err;
    json_t *f = json_loadb(len ? msg : "", len, JSON_REJECT_DUPLICATES, &err);
    if (!f) {
        /* The server answers a bad frame from inside the callback. */
        static const char e[] = "{\"type\":\"error\",\"code\":\"invalid_frame\"}";
        ws_send_text(c->ws, e, sizeof e - 1);
        return;
    }
    int d = depth(f);
    for (int max = 0; max <= 20; max++) CHECK(jsonx_depth_ok(f, max) == (d <= max));
    const char *type = json_string_value(json_object_get(f, "type"));
    if (type && strcmp(type, "close") == 0) {
        ws_close(c->ws, WS_CLOSE_UNAUTH, "unauthenticated: the first frame must be auth");
    } else if (jsonx_depth_ok(f, 16)) {
        /* Echo it back re-encoded, as an answer frame would be. */
        char *s = json_dumps(f, JSON_COMPACT);
        if (s) {
            CHECK(utf8_valid((const uint8_t *)s, strlen(s)));
            ws_send_text(c->ws, s, strlen(s));
            free(s);
        }
    }
    json_decref(f);
}

static const ws_handler handler = {.on_text = on_text};

/* Checks that out is whole frames as an endpoint of this kind must write them. */
static void check_output(const buf_t *out, bool from_server)
{
    const uint8_t *d = out->data;
    size_t n = out->len, i = 0;
    while (i < n) {
        CHECK(n - i >= 2);
        uint8_t op = d[i] & 0xF;
        CHECK((d[i] & 0x70) == 0); /* no RSV bits */
        CHECK(d[i] & 0x80);        /* never fragmented */
        CHECK(op == 0x1 || op == 0x8 || op == 0x9 || op == 0xA);
        CHECK(((d[i + 1] & 0x80) != 0) == !from_server); /* masked by clients only */
        uint64_t len = d[i + 1] & 0x7F;
        i += 2;
        if (len == 126) {
            CHECK(n - i >= 2);
            len = (uint64_t)d[i] << 8 | d[i + 1];
            i += 2;
        } else if (len == 127) {
            CHECK(n - i >= 8);
            len = 0;
            for (int k = 0; k < 8; k++) len = len << 8 | d[i + k];
            i += 8;
        }
        if (op & 0x8) CHECK(len <= 125);
        if (!from_server) i += 4;
        CHECK(i <= n && len <= n - i);
        i += (size_t)len;
    }
}

/* Feeds the input to ws in pieces (seed 0: all at once), as conn.c does; returns when the
 * endpoint stops reading. */
static void run(ws_t *ws, const uint8_t *data, size_t size, uint32_t seed, bool server,
                buf_t *all_out)
{
    buf_t in;
    buf_init(&in);
    size_t off = 0;
    bool stop = false;
    while (off < size && !stop) {
        uint32_t r = seed ? rng_next(&seed) : 3;
        size_t piece = (r & 3) == 0   ? 1
                       : (r & 3) == 1 ? 1 + (r >> 8) % 16
                       : (r & 3) == 2 ? 1 + (r >> 8) % 512
                                      : size - off;
        if (piece > size - off) piece = size - off;
        buf_append(&in, data + off, piece);
        off += piece;
        while (in.len > 0) {
            long k = ws_feed(ws, in.data, in.len);
            buf_t *o = ws_out(ws);
            check_output(o, server);
            buf_append(all_out, o->data, o->len);
            buf_reset(o);
            if (k < 0) {
                CHECK(ws_closing(ws));
                stop = true;
                break;
            }
            CHECK((size_t)k <= in.len);
            buf_consume(&in, (size_t)k);
            if (k == 0) { /* stopped reading (closing) */
                stop = true;
                break;
            }
        }
    }
    /* Nothing is sent after a close, whatever happens. */
    if (ws_closing(ws)) {
        CHECK(ws_send_text(ws, "x", 1) == -1);
        ws_close(ws, WS_CLOSE_GOING_AWAY, "again");
        CHECK(ws_out(ws)->len == 0);
    }
    buf_free(&in);
}

/* Whatever the server wrote, a client accepts: it never answers with a close of its own (only an
 * echo of the server's close). */
static void client_accepts(const buf_t *out)
{
    ctx_t pc = {0};
    pc.max_msg = (size_t)1 << 20;
    pc.ws = ws_new(false, pc.max_msg, &handler, &pc);
    CHECK(pc.ws != NULL);
    if (out->len) CHECK(ws_feed(pc.ws, out->data, out->len) >= 0);
    uint16_t got = ws_peer_close_code(pc.ws);
    buf_t *o = ws_out(pc.ws);
    check_output(o, false);
    size_t i = 0;
    while (i < o->len) {
        uint8_t op = o->data[i] & 0xF;
        size_t len = o->data[i + 1] & 0x7F;
        i += 2;
        if (len >= 126) { /* a long data frame: the client's own echo of a text message */
            size_t ext = len == 126 ? 2 : 8;
            len = 0;
            for (size_t k = 0; k < ext; k++) len = len << 8 | o->data[i + k];
            i += ext;
        }
        const uint8_t *mask = o->data + i;
        i += 4;
        if (op == 0x8) {
            CHECK(got != 0); /* a close only in answer to the server's */
            if (len >= 2) {
                uint16_t code =
                    (uint16_t)((o->data[i] ^ mask[0]) << 8 | (o->data[i + 1] ^ mask[1]));
                CHECK(code == got);
            } else {
                CHECK(got == 1005);
            }
        }
        i += len;
    }
    ws_free(pc.ws);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    uint32_t seed = (uint32_t)data[0] * 2654435761u | 1u;
    size_t max_msg = (size_t)16 << (data[0] >> 5);
    data++;
    size--;

    for (int side = 0; side < 2; side++) {
        bool server = side == 0;
        ctx_t c[2];
        bool closing[2];
        for (int whole = 0; whole < 2; whole++) {
            memset(&c[whole], 0, sizeof c[whole]);
            c[whole].max_msg = max_msg;
            c[whole].ws = ws_new(server, max_msg, &handler, &c[whole]);
            CHECK(c[whole].ws != NULL);
            buf_t out;
            buf_init(&out);
            run(c[whole].ws, data, size, whole ? 0 : seed, server, &out);
            if (server) client_accepts(&out);
            closing[whole] = ws_closing(c[whole].ws);
            ws_free(c[whole].ws);
            buf_free(&out);
        }
        /* How the stream was split makes no difference: the same messages are delivered and
         * the endpoint ends closed or open alike. */
        CHECK(closing[0] == closing[1]);
        CHECK(c[0].texts == c[1].texts && c[0].hash == c[1].hash);
    }
    return 0;
}
