/* ws.c: see ws.h. RFC 6455 framing of our own: input is parsed as it arrives, a byte at a time
 * for the header and in runs for the payload, so the endpoint keeps only what a frame split across
 * reads needs (the header so far, a control frame's payload, the data message being assembled).
 * Between messages it holds no buffer at all. */
#include "common/ws.h"
#include "common/util.h"

#include <openssl/evp.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

enum {
    OP_CONT = 0x0,
    OP_TEXT = 0x1,
    OP_BINARY = 0x2,
    OP_CLOSE = 0x8,
    OP_PING = 0x9,
    OP_PONG = 0xA,
};

#define CTL_MAX 125 /* payload of a control frame (RFC 6455 5.5) */

struct ws {
    ws_handler h;
    void *ud;
    size_t max_msg;
    buf_t out;
    buf_t msg;        /* the data message being received, unmasked; freed once delivered */
    uint64_t remain;  /* payload bytes of the current frame still to come */
    uint64_t msg_len; /* payload bytes of the data message so far, every fragment counted */
    uint8_t hdr[14];  /* the frame header being gathered */
    uint8_t hlen;     /* its bytes so far */
    bool in_payload;  /* the header is complete: payload bytes follow */
    uint8_t op;       /* the current frame's opcode */
    bool fin;         /* the current frame ends its message */
    bool masked;      /* the current frame's payload is masked with mask */
    uint8_t mask[4];
    uint8_t mpos;   /* the mask index of the next payload byte */
    uint8_t msg_op; /* OP_TEXT while a fragmented message is open, else 0 */
    uint8_t ctl_len;
    uint8_t ctl[CTL_MAX]; /* the control frame's payload so far */
    bool server;
    bool close_sent;
    bool close_recv;
    bool stopped; /* no more input is taken: the peer's close arrived or the endpoint failed */
    uint16_t peer_code;
};

ws_t *ws_new(bool server, size_t max_msg, const ws_handler *h, void *ud)
{
    ws_t *ws = calloc(1, sizeof *ws);
    if (!ws) return NULL;
    ws->h = *h;
    ws->ud = ud;
    ws->server = server;
    ws->max_msg = max_msg;
    buf_init(&ws->out);
    buf_init(&ws->msg);
    return ws;
}

void ws_free(ws_t *ws)
{
    if (!ws) return;
    buf_free(&ws->out);
    buf_free(&ws->msg);
    free(ws);
}

/* Appends one whole frame (FIN set) to the output, masked when we are a client. */
static void put_frame(ws_t *ws, uint8_t op, const uint8_t *p, size_t len)
{
    uint8_t h[14];
    size_t n = 0;
    h[n++] = (uint8_t)(0x80 | op);
    uint8_t m = ws->server ? 0 : 0x80;
    if (len < 126) {
        h[n++] = (uint8_t)(m | len);
    } else if (len <= 0xffff) {
        h[n++] = m | 126;
        h[n++] = (uint8_t)(len >> 8);
        h[n++] = (uint8_t)len;
    } else {
        h[n++] = m | 127;
        for (int i = 7; i >= 0; i--) h[n++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    uint8_t key[4];
    if (!ws->server) {
        randombytes_buf(key, sizeof key);
        memcpy(h + n, key, 4);
        n += 4;
    }
    buf_reserve(&ws->out, n + len);
    buf_append(&ws->out, h, n);
    if (len == 0) return;
    uint8_t *dst = ws->out.data + ws->out.len;
    if (ws->server) {
        memcpy(dst, p, len);
    } else {
        for (size_t i = 0; i < len; i++) dst[i] = p[i] ^ key[i & 3];
    }
    ws->out.len += len;
}

/* The close frame: code (none when 0) and as much of reason as fits, cut at a character. */
static void put_close(ws_t *ws, uint16_t code, const char *reason)
{
    if (ws->close_sent) return;
    ws->close_sent = true;
    uint8_t p[CTL_MAX];
    size_t n = 0;
    if (code) {
        p[n++] = (uint8_t)(code >> 8);
        p[n++] = (uint8_t)code;
        size_t rl = reason ? strlen(reason) : 0;
        if (rl > CTL_MAX - 2) {
            rl = CTL_MAX - 2;
            while (rl > 0 && ((uint8_t)reason[rl] & 0xC0) == 0x80) rl--;
        }
        if (rl) memcpy(p + n, reason, rl);
        n += rl;
    }
    put_frame(ws, OP_CLOSE, p, n);
}

/* Fails the connection: our close frame with code, and no more input. */
static void fail(ws_t *ws, uint16_t code, const char *reason)
{
    put_close(ws, code, reason);
    ws->stopped = true;
    buf_free(&ws->msg);
}

/* Status codes a peer may send (RFC 6455 7.4.1 and the IANA registry; 3000-4999 for libraries
 * and applications). 1004-1006 and 1015 must never be on the wire. */
static bool close_code_valid(uint16_t code)
{
    return (code >= 1000 && code <= 1014 && code != 1004 && code != 1005 && code != 1006) ||
           (code >= 3000 && code <= 4999);
}

enum step { STEP_OK, STEP_STOP, STEP_PROTO };

/* The header is complete: checks it and sets up the payload. */
static enum step header_done(ws_t *ws)
{
    uint8_t b0 = ws->hdr[0], b1 = ws->hdr[1];
    ws->fin = (b0 & 0x80) != 0;
    ws->op = b0 & 0x0F;
    ws->masked = (b1 & 0x80) != 0;
    uint8_t len7 = b1 & 0x7F;
    uint64_t len = len7;
    size_t i = 2;
    if (len7 == 126) {
        len = (uint64_t)ws->hdr[2] << 8 | ws->hdr[3];
        i = 4;
    } else if (len7 == 127) {
        len = 0;
        for (int k = 0; k < 8; k++) len = len << 8 | ws->hdr[2 + k];
        i = 10;
    }
    if (ws->masked) memcpy(ws->mask, ws->hdr + i, 4);
    ws->mpos = 0;
    ws->hlen = 0;
    if (b0 & 0x70) return STEP_PROTO;                          /* no extension was negotiated */
    if (ws->masked != ws->server) return STEP_PROTO;           /* clients mask, servers do not */
    if (len7 == 127 && (ws->hdr[2] & 0x80)) return STEP_PROTO; /* 64-bit length, top bit set */
    if (ws->op & 0x8) {
        if (ws->op > OP_PONG) return STEP_PROTO;
        if (!ws->fin || len > CTL_MAX) return STEP_PROTO;
        if (ws->op == OP_CLOSE && len == 1) return STEP_PROTO;
        ws->ctl_len = 0;
    } else {
        if (ws->op > OP_BINARY) return STEP_PROTO;
        if (ws->op == OP_CONT && !ws->msg_op) return STEP_PROTO; /* nothing to continue */
        if (ws->op != OP_CONT && ws->msg_op) return STEP_PROTO;  /* a message is open */
        if (ws->op == OP_BINARY) {
            fail(ws, WS_CLOSE_UNSUPPORTED, "binary messages are not supported");
            return STEP_STOP;
        }
        if (ws->op == OP_TEXT) ws->msg_len = 0;
        if (len > ws->max_msg || ws->msg_len + len > ws->max_msg) {
            fail(ws, WS_CLOSE_TOO_BIG, "message too big");
            return STEP_STOP;
        }
        ws->msg_len += len;
        ws->msg_op = OP_TEXT;
    }
    ws->remain = len;
    ws->in_payload = true;
    return STEP_OK;
}

static void unmask(ws_t *ws, uint8_t *dst, const uint8_t *src, size_t n)
{
    if (!ws->masked) {
        memcpy(dst, src, n);
        return;
    }
    for (size_t i = 0; i < n; i++) dst[i] = src[i] ^ ws->mask[(ws->mpos + i) & 3];
    ws->mpos = (uint8_t)((ws->mpos + n) & 3);
}

/* A complete text message: checked, then handed to the application. */
static void deliver(ws_t *ws, const uint8_t *msg, size_t len)
{
    if (!utf8_valid(msg, len)) {
        fail(ws, WS_CLOSE_BAD_DATA, "invalid UTF-8");
        return;
    }
    if (ws->close_sent) return; /* closing: nothing more reaches the application */
    ws->h.on_text(ws->ud, len ? (const char *)msg : "", len);
}

/* The current frame's payload is complete. */
static enum step frame_done(ws_t *ws)
{
    ws->in_payload = false;
    switch (ws->op) {
    case OP_PING:
        if (!ws->close_sent) put_frame(ws, OP_PONG, ws->ctl, ws->ctl_len);
        return STEP_OK;
    case OP_PONG:
        return STEP_OK;
    case OP_CLOSE: {
        uint16_t code = 1005; /* no status code in the frame */
        if (ws->ctl_len >= 2) {
            code = (uint16_t)(ws->ctl[0] << 8 | ws->ctl[1]);
            if (!close_code_valid(code)) return STEP_PROTO;
            if (!utf8_valid(ws->ctl + 2, ws->ctl_len - 2u)) {
                fail(ws, WS_CLOSE_BAD_DATA, "invalid UTF-8 in the close reason");
                return STEP_STOP;
            }
        }
        ws->close_recv = true;
        ws->peer_code = code;
        ws->stopped = true;
        buf_free(&ws->msg);
        put_close(ws, code == 1005 ? 0 : code, NULL); /* the echo, unless we closed first */
        return STEP_STOP;
    }
    default: /* a text frame or a continuation */
        if (!ws->fin) return STEP_OK;
        ws->msg_op = 0;
        ws->msg_len = 0;
        deliver(ws, ws->msg.data, ws->msg.len);
        buf_free(&ws->msg);
        return ws->stopped ? STEP_STOP : STEP_OK;
    }
}

long ws_feed(ws_t *ws, const uint8_t *data, size_t n)
{
    size_t i = 0;
    while (i < n && !ws->stopped) {
        enum step st = STEP_OK;
        if (!ws->in_payload) {
            ws->hdr[ws->hlen++] = data[i++];
            if (ws->hlen < 2) continue;
            uint8_t len7 = ws->hdr[1] & 0x7F;
            size_t need = 2u +
                          (len7 == 126   ? 2
                           : len7 == 127 ? 8
                                         : 0) +
                          (ws->hdr[1] & 0x80 ? 4 : 0);
            if (ws->hlen < need) continue;
            st = header_done(ws);
            if (st == STEP_OK && ws->remain == 0) st = frame_done(ws);
        } else {
            size_t k = n - i < ws->remain ? n - i : (size_t)ws->remain;
            if (ws->op & 0x8) {
                unmask(ws, ws->ctl + ws->ctl_len, data + i, k);
                ws->ctl_len = (uint8_t)(ws->ctl_len + k);
            } else if (!ws->masked && ws->fin && ws->op == OP_TEXT && k == ws->remain &&
                       ws->msg.len == 0) {
                /* a whole unfragmented message in this input: delivered from it, uncopied */
                ws->remain = 0;
                i += k;
                ws->in_payload = false;
                ws->msg_op = 0;
                ws->msg_len = 0;
                deliver(ws, data + i - k, k);
                continue;
            } else {
                if (ws->msg.len == 0) buf_reserve(&ws->msg, (size_t)ws->msg_len);
                buf_reserve(&ws->msg, k);
                unmask(ws, ws->msg.data + ws->msg.len, data + i, k);
                ws->msg.len += k;
            }
            ws->remain -= k;
            i += k;
            if (ws->remain == 0) st = frame_done(ws);
        }
        if (st == STEP_PROTO) {
            fail(ws, WS_CLOSE_PROTOCOL, "protocol error");
            return -1;
        }
    }
    return (long)i;
}

int ws_send_text(ws_t *ws, const char *msg, size_t len)
{
    if (ws->close_sent || ws->close_recv) return -1;
    put_frame(ws, OP_TEXT, (const uint8_t *)msg, len);
    return 0;
}

void ws_close(ws_t *ws, uint16_t code, const char *reason)
{
    put_close(ws, code, reason);
}

buf_t *ws_out(ws_t *ws)
{
    return &ws->out;
}

bool ws_closing(ws_t *ws)
{
    return ws->close_sent || ws->close_recv;
}

uint16_t ws_peer_close_code(ws_t *ws)
{
    return ws->close_recv ? ws->peer_code : 0;
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
