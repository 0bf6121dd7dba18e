/* ws.c: see ws.h. wslay pulls input through recv_cb and pushes output through send_cb; both work
 * on memory here, so the event loop (libuv) stays in charge of the socket. */
#include "common/ws.h"
#include "common/util.h"

#include <openssl/evp.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <wslay/wslay.h>

struct ws {
    wslay_event_context_ptr ctx;
    ws_handler h;
    void *ud;
    size_t max_msg;
    uint64_t msg_bytes; /* payload bytes of the message being received */
    const uint8_t *in;  /* input being fed */
    size_t in_len, in_off;
    bool server;
    /* scan(): our own view of the frame boundaries in the input */
    uint8_t hdr[14];
    size_t hlen;
    uint64_t skip;
    uint64_t scan_bytes;
    bool stop_reading;
    bool closing;
    buf_t out;
};

static ssize_t recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *user)
{
    (void)flags;
    ws_t *ws = user;
    size_t avail = ws->in_len - ws->in_off;
    if (ws->stop_reading || avail == 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    if (len > avail) len = avail;
    memcpy(buf, ws->in + ws->in_off, len);
    ws->in_off += len;
    return (ssize_t)len;
}

static ssize_t send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                       void *user)
{
    (void)ctx;
    (void)flags;
    ws_t *ws = user;
    buf_append(&ws->out, data, len);
    return (ssize_t)len;
}

static int genmask_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, void *user)
{
    (void)ctx;
    (void)user;
    randombytes_buf(buf, len);
    return 0;
}

static void fail(ws_t *ws, uint16_t code, const char *reason)
{
    ws->stop_reading = true;
    ws_close(ws, code, reason);
}

static void frame_start_cb(wslay_event_context_ptr ctx,
                           const struct wslay_event_on_frame_recv_start_arg *arg, void *user)
{
    (void)ctx;
    ws_t *ws = user;
    if (arg->opcode & 0x8) return; /* control frames are limited to 125 bytes by wslay */
    if (arg->opcode != WSLAY_CONTINUATION_FRAME) ws->msg_bytes = 0;
    ws->msg_bytes += arg->payload_length;
    if (ws->msg_bytes > ws->max_msg) fail(ws, WS_CLOSE_TOO_BIG, "message too big");
}

static void msg_cb(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
                   void *user)
{
    (void)ctx;
    ws_t *ws = user;
    if (ws->stop_reading) return;
    if (arg->opcode == WSLAY_TEXT_FRAME) {
        if (!utf8_valid(arg->msg, arg->msg_length)) {
            fail(ws, WS_CLOSE_BAD_DATA, "invalid UTF-8");
            return;
        }
        ws->h.on_text(ws->ud, (const char *)arg->msg, arg->msg_length);
    } else if (arg->opcode == WSLAY_BINARY_FRAME) {
        fail(ws, WS_CLOSE_UNSUPPORTED, "binary messages are not supported");
    } else if (arg->opcode == WSLAY_CONNECTION_CLOSE) {
        ws->closing = true;
    }
}

ws_t *ws_new(bool server, size_t max_msg, const ws_handler *h, void *ud)
{
    ws_t *ws = calloc(1, sizeof *ws);
    if (!ws) return NULL;
    struct wslay_event_callbacks cb = {
        .recv_callback = recv_cb,
        .send_callback = send_cb,
        .genmask_callback = genmask_cb,
        .on_frame_recv_start_callback = frame_start_cb,
        .on_msg_recv_callback = msg_cb,
    };
    int rv = server ? wslay_event_context_server_init(&ws->ctx, &cb, ws)
                    : wslay_event_context_client_init(&ws->ctx, &cb, ws);
    if (rv != 0) {
        free(ws);
        return NULL;
    }
    ws->h = *h;
    ws->ud = ud;
    ws->server = server;
    ws->max_msg = max_msg;
    /* A backstop only: scan() sees every frame header before wslay does and answers a message
     * over max_msg with 4009 (wslay would answer 1009, after allocating the declared length). */
    wslay_event_config_set_max_recv_msg_length(ws->ctx, max_msg + 1);
    buf_init(&ws->out);
    return ws;
}

void ws_free(ws_t *ws)
{
    if (!ws) return;
    wslay_event_context_free(ws->ctx);
    buf_free(&ws->out);
    free(ws);
}

static void flush(ws_t *ws)
{
    if (wslay_event_want_write(ws->ctx)) wslay_event_send(ws->ctx);
    if (wslay_event_get_close_sent(ws->ctx) || wslay_event_get_close_received(ws->ctx))
        ws->closing = true;
}

/* Writes a close frame straight into the output, bypassing wslay's queue (after a protocol error
 * wslay's own state can no longer be trusted to send one). Masked when we are a client. */
static void raw_close(ws_t *ws, uint16_t code, const char *reason)
{
    size_t rl = strlen(reason);
    uint8_t f[4 + 4 + 125];
    size_t n = 0;
    f[n++] = 0x88;
    f[n++] = (uint8_t)((ws->server ? 0 : 0x80) | (2 + rl));
    uint8_t payload[127];
    payload[0] = (uint8_t)(code >> 8);
    payload[1] = (uint8_t)code;
    memcpy(payload + 2, reason, rl);
    if (!ws->server) {
        uint8_t mask[4];
        randombytes_buf(mask, sizeof mask);
        memcpy(f + n, mask, 4);
        n += 4;
        for (size_t i = 0; i < 2 + rl; i++) payload[i] ^= mask[i % 4];
    }
    memcpy(f + n, payload, 2 + rl);
    n += 2 + rl;
    buf_append(&ws->out, f, n);
    wslay_event_shutdown_write(ws->ctx); /* nothing after this close (nor wslay's queued one) */
}

enum scan_result { SCAN_OK, SCAN_TOO_BIG, SCAN_PROTO };

/* Walks the frame headers in data (carrying partial headers and payloads across calls) and
 * adds up the payload of the message being received, so that a message over max_msg is answered
 * with 4009 before wslay sees (and allocates) it. Header errors that RFC 6455 makes protocol
 * errors and wslay lets pass are caught here too: a 64-bit length with its top bit set and a
 * close frame whose payload is one byte. */
static enum scan_result scan(ws_t *ws, const uint8_t *data, size_t n, size_t *bad)
{
    size_t i = 0;
    *bad = 0; /* where the bad frame's header starts in data (0 if it began earlier) */
    while (i < n) {
        if (ws->skip > 0) {
            uint64_t k = n - i < ws->skip ? n - i : ws->skip;
            ws->skip -= k;
            i += (size_t)k;
            continue;
        }
        if (ws->hlen == 0) *bad = i;
        ws->hdr[ws->hlen++] = data[i++];
        if (ws->hlen < 2) continue;
        uint8_t len7 = ws->hdr[1] & 0x7f;
        size_t need = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + ((ws->hdr[1] & 0x80) ? 4 : 0);
        if (ws->hlen < need) continue;
        uint64_t len = len7;
        if (len7 == 126) len = (uint64_t)ws->hdr[2] << 8 | ws->hdr[3];
        if (len7 == 127) {
            if (ws->hdr[2] & 0x80) return SCAN_PROTO;
            len = 0;
            for (int k = 0; k < 8; k++) len = len << 8 | ws->hdr[2 + k];
        }
        uint8_t opcode = ws->hdr[0] & 0x0f;
        if (opcode == 0x8 && len == 1) return SCAN_PROTO;
        if (!(opcode & 0x8)) { /* data frames: continuation adds to the message */
            if (opcode != 0) ws->scan_bytes = 0;
            if (len > ws->max_msg || ws->scan_bytes + len > ws->max_msg) return SCAN_TOO_BIG;
            ws->scan_bytes += len;
        }
        ws->skip = len;
        ws->hlen = 0;
    }
    return SCAN_OK;
}

/* Hands n bytes to wslay; 0 or wslay's error. *taken gets how many it read. */
static int wslay_feed(ws_t *ws, const uint8_t *data, size_t n, size_t *taken)
{
    ws->in = data;
    ws->in_len = n;
    ws->in_off = 0;
    int rv = 0;
    if (!ws->stop_reading && wslay_event_want_read(ws->ctx)) rv = wslay_event_recv(ws->ctx);
    *taken = ws->in_off;
    ws->in = NULL;
    ws->in_len = ws->in_off = 0;
    return rv;
}

static void protocol_error(ws_t *ws)
{
    /* wslay stops reading and may queue a close without a status code: we answer with our own
     * 1002 frame and make nothing more of this endpoint. */
    ws->stop_reading = true;
    if (!wslay_event_get_close_sent(ws->ctx)) raw_close(ws, WS_CLOSE_PROTOCOL, "protocol error");
    ws->closing = true;
}

long ws_feed(ws_t *ws, const uint8_t *data, size_t n)
{
    size_t bad = 0, taken = 0;
    enum scan_result sr = ws->stop_reading ? SCAN_OK : scan(ws, data, n, &bad);
    /* The frames before a bad one are good: they reach wslay (and the application) first. */
    int rv = wslay_feed(ws, data, sr == SCAN_OK ? n : bad, &taken);
    if (rv != 0) {
        protocol_error(ws);
        return -1;
    }
    if (sr == SCAN_TOO_BIG && !ws->stop_reading) {
        ws->stop_reading = true;
        ws_close(ws, WS_CLOSE_TOO_BIG, "message too big");
        return (long)n;
    }
    if (sr == SCAN_PROTO && !ws->stop_reading) {
        protocol_error(ws);
        return -1;
    }
    if (sr != SCAN_OK) return (long)n; /* the endpoint had stopped reading anyway */
    if (!wslay_event_want_read(ws->ctx)) ws->stop_reading = true;
    flush(ws);
    return (long)taken;
}

int ws_send_text(ws_t *ws, const char *msg, size_t len)
{
    if (ws->closing) return -1;
    struct wslay_event_msg m = {
        .opcode = WSLAY_TEXT_FRAME, .msg = (const uint8_t *)msg, .msg_length = len};
    if (wslay_event_queue_msg(ws->ctx, &m) != 0) return -1;
    flush(ws);
    return 0;
}

void ws_close(ws_t *ws, uint16_t code, const char *reason)
{
    if (!wslay_event_get_close_sent(ws->ctx))
        wslay_event_queue_close(ws->ctx, code, (const uint8_t *)reason,
                                reason ? strlen(reason) : 0);
    ws->closing = true;
    flush(ws);
}

buf_t *ws_out(ws_t *ws)
{
    return &ws->out;
}

bool ws_closing(ws_t *ws)
{
    return ws->closing;
}

uint16_t ws_peer_close_code(ws_t *ws)
{
    return wslay_event_get_close_received(ws->ctx) ? wslay_event_get_status_code_received(ws->ctx)
                                                   : 0;
}

void ws_accept_key(char out[29], const char *key, size_t keylen)
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    uint8_t sha[20];
    unsigned int shalen = 0;
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    if (!c) abort();
    EVP_DigestInit_ex(c, EVP_sha1(), NULL);
    EVP_DigestUpdate(c, key, keylen);
    EVP_DigestUpdate(c, guid, sizeof guid - 1);
    EVP_DigestFinal_ex(c, sha, &shalen);
    EVP_MD_CTX_free(c);
    sodium_bin2base64(out, 29, sha, sizeof sha, sodium_base64_VARIANT_ORIGINAL);
}
