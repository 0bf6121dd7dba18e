/* fuzz_http.c: libFuzzer target for server/net/http.h.
 *
 * The first two bytes choose the limits and seed the split points; the rest is the byte stream of
 * a connection. It arrives in random-sized pieces and is handled as conn.c does: unconsumed bytes
 * stay in the input buffer, each finished request is inspected through every accessor and then
 * http_in_next() resumes; an upgrade hands the rest to the WebSocket (so parsing stops there), and
 * an error closes the connection. The same bytes fed all at once must give the same requests and
 * the same error. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "server/net/http.h"

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if (!(x)) abort();                                                                         \
    } while (0)

static uint32_t rng_next(uint32_t *s)
{
    /* xorshift32; the state is never 0 */
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

static volatile size_t sink; /* keeps the accessor calls from being optimised away */

static void inspect(const http_in *h)
{
    const char *m = http_in_method(h);
    CHECK(m != NULL);
    sink += strlen(m);
    const char *url = http_in_url(h);
    CHECK(url != NULL);
    size_t ul = strlen(url);
    CHECK(h->url.len == 0 || ul < h->url.len);
    sink += ul;
    CHECK(h->body.len <= h->max_body);
    CHECK(h->nhdr >= 0 && h->nhdr <= HTTP_MAX_HEADERS);
    sink += http_in_keep_alive(h) + http_in_upgrade(h);

    /* Every header: names lower-case, each name and value NUL-terminated inside head. */
    for (int i = 0; i < h->nhdr; i++) {
        CHECK(h->hoff[2 * i] < h->head.len && h->hoff[2 * i + 1] < h->head.len);
        const char *name = (const char *)h->head.data + h->hoff[2 * i];
        const char *val = (const char *)h->head.data + h->hoff[2 * i + 1];
        size_t nl = strlen(name);
        CHECK(h->hoff[2 * i] + nl < h->head.len);
        CHECK(h->hoff[2 * i + 1] + strlen(val) < h->head.len);
        for (size_t k = 0; k < nl; k++) CHECK(!(name[k] >= 'A' && name[k] <= 'Z'));
        /* The lookup finds this header or an earlier one of the same name. */
        const char *found = http_in_header(h, name);
        CHECK(found != NULL && found <= val);
        sink += http_token_in(val, "upgrade") + http_token_in(val, "websocket") +
                http_token_in(val, name);
    }
    const char *names[] = {"host",
                           "upgrade",
                           "connection",
                           "content-length",
                           "content-type",
                           "authorization",
                           "sec-websocket-key",
                           "sec-websocket-version",
                           ""};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *v = http_in_header(h, names[i]);
        if (v) sink += strlen(v) + http_token_in(v, "upgrade") + http_token_in(v, "keep-alive");
    }
}

static uint64_t mix(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    h = (h ^ n) * 1099511628211ull;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

/* A digest of a finished request: method, URL, headers, body, flags. */
static uint64_t digest(const http_in *h)
{
    uint64_t d = 1469598103934665603ull;
    const char *m = http_in_method(h), *url = http_in_url(h);
    d = mix(d, m, strlen(m));
    d = mix(d, url, strlen(url));
    for (int i = 0; i < h->nhdr; i++) {
        const char *name = (const char *)h->head.data + h->hoff[2 * i];
        const char *val = (const char *)h->head.data + h->hoff[2 * i + 1];
        d = mix(d, name, strlen(name));
        d = mix(d, val, strlen(val));
    }
    d = mix(d, h->body.data, h->body.len);
    uint8_t flags = (uint8_t)(http_in_keep_alive(h) | http_in_upgrade(h) << 1);
    return mix(d, &flags, 1);
}

typedef struct result {
    int requests;
    uint64_t digest;
    int err_status;
    size_t left; /* input bytes not consumed */
} result_t;

/* Feeds the input in pieces (seed 0: all at once) as conn.c does. */
static result_t run(const uint8_t *data, size_t size, uint32_t seed, size_t max_head,
                    size_t max_body)
{
    result_t res = {0, 0, 0, 0};
    http_in h;
    http_in_init(&h, max_head, max_body);
    buf_t in;
    buf_init(&in);

    size_t off = 0;
    bool stop = false;
    while (off < size && !stop) {
        /* Mostly small pieces, sometimes one byte, sometimes everything left. */
        uint32_t r = seed ? rng_next(&seed) : 3;
        size_t piece;
        switch (r & 3) {
        case 0:
            piece = 1;
            break;
        case 1:
            piece = 1 + (r >> 8) % 16;
            break;
        case 2:
            piece = 1 + (r >> 8) % 256;
            break;
        default:
            piece = size - off;
            break;
        }
        if (piece > size - off) piece = size - off;
        buf_append(&in, data + off, piece);
        off += piece;

        while (in.len > 0) {
            size_t used = (size_t)-1;
            enum http_in_state st = http_in_feed(&h, (const char *)in.data, in.len, &used);
            CHECK(used <= in.len);
            buf_consume(&in, used);
            if (st == HTTP_IN_MORE) {
                CHECK(in.len == 0); /* everything offered was taken */
                break;
            }
            if (st == HTTP_IN_ERROR) {
                CHECK(h.err_status >= 400 && h.err_status < 500);
                CHECK(h.err_code != NULL && h.err_msg != NULL);
                CHECK(strcmp(http_status_text(h.err_status), "Unknown") != 0);
                res.err_status = h.err_status;
                stop = true;
                break;
            }
            CHECK(st == HTTP_IN_DONE);
            inspect(&h);
            res.requests++;
            res.digest = mix(res.digest, &(uint64_t){digest(&h)}, sizeof(uint64_t));
            if (http_in_upgrade(&h)) { /* the rest belongs to the WebSocket */
                stop = true;
                break;
            }
            http_in_next(&h);
        }
    }
    res.left = in.len + (size - off);
    buf_free(&in);
    http_in_free(&h);
    return res;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    uint8_t lim = data[0];
    uint32_t seed = (uint32_t)data[1] * 2654435761u | 1u;
    data += 2;
    size -= 2;

    /* Limits small enough for the fuzzer to cross: head 64..4096, body 0..4092 bytes. */
    size_t max_head = (size_t)64 << (lim & 7) > 4096 ? 4096 : (size_t)64 << (lim & 7);
    size_t max_body = (lim >> 3) * (size_t)132;
    result_t split = run(data, size, seed, max_head, max_body);
    result_t whole = run(data, size, 0, max_head, max_body);
    /* How the bytes were split makes no difference to the requests, nor to whether it ends in an
     * error. (Which error can differ: a head both too large and malformed is refused with 431 or
     * 400 depending on whether the bad byte or the limit comes first in a piece.) */
    CHECK(split.requests == whole.requests && split.digest == whole.digest);
    CHECK((split.err_status != 0) == (whole.err_status != 0));
    if (!split.err_status) CHECK(split.left == whole.left);

    /* http_token_in on a header-like value made of the raw input, against a few tokens. */
    if (size > 0) {
        size_t n = size > 256 ? 256 : size;
        char *v = malloc(n + 1);
        CHECK(v != NULL);
        memcpy(v, data, n);
        v[n] = 0;
        size_t tl = (size_t)(lim % 8);
        char tok[8];
        memcpy(tok, v, tl < n ? tl : n);
        tok[tl < n ? tl : n] = 0;
        sink += http_token_in(v, "upgrade") + http_token_in(v, "") + http_token_in(v, tok);
        free(v);
    }

    return 0;
}
