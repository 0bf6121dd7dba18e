/* tws.c: a WebSocket client (RFC 6455) for tests: handshake, frames of any shape, reassembly. */
#include "tclient.h"
#include "tnet.h"

#include <openssl/evp.h>
#include <poll.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define WS_GUID        "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define WS_MAX_PAYLOAD (64u << 20)

static int tmo(const tws *ws, int timeout_ms)
{
    return timeout_ms > 0 ? timeout_ms : ws->timeout_ms;
}

const char *tws_default_ignore;

static bool type_in(const char *list, const char *type)
{
    size_t n = strlen(type);
    if (!n) return false;
    for (const char *p = list; p && *p;) {
        size_t k = strcspn(p, ",");
        if (k == n && strncmp(p, type, n) == 0) return true;
        p += k;
        if (*p == ',') p++;
    }
    return false;
}

void tws_ignore(tws *ws, const char *types)
{
    snprintf(ws->ignore, sizeof ws->ignore, "%s", types ? types : "");
}

static bool ignored(tws *ws, json_t *j)
{
    if (!type_in(ws->ignore, tj_str(j, "type"))) return false;
    ws->n_ignored++;
    return true;
}

bool tws_hold_side(tws *ws, json_t *j)
{
    if (!type_in("presence,typing,receipt,event", tj_str(j, "type"))) return false;
    if (ignored(ws, j))
        json_decref(j);
    else
        json_array_append_new(ws->held, j);
    return true;
}

void tws_msg_free(tws_msg *m)
{
    if (!m) return;
    free(m->data);
    memset(m, 0, sizeof *m);
}

static void b64_std(char *out, size_t cap, const uint8_t *in, size_t n)
{
    sodium_bin2base64(out, cap, in, n, sodium_base64_VARIANT_ORIGINAL);
}

tws *tws_open(int port)
{
    if (sodium_init() < 0) return NULL;
    uint8_t raw[16];
    randombytes_buf(raw, sizeof raw);
    char key[32];
    b64_std(key, sizeof key, raw, sizeof raw);

    thttp_conn c;
    if (thttp_open(&c, port) != 0) return NULL;
    char req[512];
    snprintf(req, sizeof req,
             "GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
             "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n",
             port, key);
    thttp_resp r;
    memset(&r, 0, sizeof r);
    if (thttp_write(&c, req, strlen(req)) != 0 || thttp_read(&c, &r, T_TIMEOUT_MS) != 0) {
        t_note("ws: handshake failed (no response)");
        thttp_close(&c);
        return NULL;
    }
    /* Expected accept value: base64(SHA-1(key + GUID)). */
    char cat[128];
    snprintf(cat, sizeof cat, "%s%s", key, WS_GUID);
    uint8_t sha[EVP_MAX_MD_SIZE];
    unsigned shalen = 0;
    EVP_Digest(cat, strlen(cat), sha, &shalen, EVP_sha1(), NULL);
    char want[64], got[128], up[64], conn[128];
    b64_std(want, sizeof want, sha, shalen);
    bool ok = r.status == 101 && thttp_header(&r, "Sec-WebSocket-Accept", got, sizeof got) &&
              strcmp(got, want) == 0 && thttp_header(&r, "Upgrade", up, sizeof up) &&
              strcasecmp(up, "websocket") == 0 &&
              thttp_header(&r, "Connection", conn, sizeof conn) && strcasestr(conn, "upgrade");
    if (!ok) {
        t_note("ws: bad handshake answer (want 101 with accept %s): %s", want,
               r.head ? r.head : "");
        thttp_resp_free(&r);
        thttp_close(&c);
        return NULL;
    }
    thttp_resp_free(&r);
    tws *ws = calloc(1, sizeof *ws);
    ws->fd = c.fd;
    ws->in = c.in; /* bytes after the 101 belong to the WebSocket */
    ws->eof = c.eof;
    ws->timeout_ms = T_TIMEOUT_MS;
    buf_init(&ws->out);
    buf_init(&ws->frag);
    ws->held = json_array();
    tws_ignore(ws, tws_default_ignore);
    snprintf(ws->label, sizeof ws->label, "ws%d", ws->fd);
    return ws;
}

void tws_free(tws *ws)
{
    if (!ws) return;
    if (ws->fd >= 0) close(ws->fd);
    buf_free(&ws->in);
    buf_free(&ws->out);
    buf_free(&ws->frag);
    json_decref(ws->held);
    free(ws);
}

void tws_queue_frame(tws *ws, bool fin, int rsv, int opcode, bool mask, const void *p, size_t n)
{
    uint8_t h[14];
    size_t hl = 2;
    h[0] = (uint8_t)((fin ? 0x80 : 0) | (rsv & 7) << 4 | (opcode & 15));
    uint8_t m = mask ? 0x80 : 0;
    if (n < 126) {
        h[1] = (uint8_t)(m | n);
    } else if (n <= 0xFFFF) {
        h[1] = m | 126;
        h[2] = (uint8_t)(n >> 8);
        h[3] = (uint8_t)n;
        hl = 4;
    } else {
        h[1] = m | 127;
        for (int i = 0; i < 8; i++) h[2 + i] = (uint8_t)((uint64_t)n >> (56 - 8 * i));
        hl = 10;
    }
    uint8_t key[4] = {0};
    if (mask) {
        randombytes_buf(key, 4);
        memcpy(h + hl, key, 4);
        hl += 4;
    }
    buf_append(&ws->out, h, hl);
    buf_reserve(&ws->out, n);
    uint8_t *dst = ws->out.data + ws->out.len;
    const uint8_t *src = p;
    for (size_t i = 0; i < n; i++) dst[i] = mask ? src[i] ^ key[i & 3] : src[i];
    ws->out.len += n;
    if (opcode == WS_CLOSE) ws->sent_close = true;
}

/* Writes everything queued. */
static int flush(tws *ws, int timeout_ms)
{
    if (!ws->out.len) return 0;
    int rc =
        tnet_write_all(ws->fd, ws->out.data, ws->out.len, &ws->in, &ws->eof, tmo(ws, timeout_ms));
    buf_reset(&ws->out);
    return rc;
}

int tws_send_frame(tws *ws, bool fin, int rsv, int opcode, bool mask, const void *p, size_t n)
{
    tws_queue_frame(ws, fin, rsv, opcode, mask, p, n);
    int rc = flush(ws, 0);
    if (rc != 0) t_note("ws[%s]: send failed (%d)", ws->label, rc);
    return rc;
}

int tws_send_text(tws *ws, const char *s, size_t n, int nfrag)
{
    if (nfrag < 1) nfrag = 1;
    if ((size_t)nfrag > n) nfrag = n ? (int)n : 1;
    size_t off = 0;
    for (int i = 0; i < nfrag; i++) {
        size_t part = i == nfrag - 1 ? n - off : n / (size_t)nfrag;
        tws_queue_frame(ws, i == nfrag - 1, 0, i == 0 ? WS_TEXT : WS_CONT, true, s + off, part);
        off += part;
    }
    int rc = flush(ws, 0);
    if (rc != 0) t_note("ws[%s]: send failed (%d)", ws->label, rc);
    return rc;
}

void tws_queue_json(tws *ws, json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT);
    tws_queue_frame(ws, true, 0, WS_TEXT, true, s, strlen(s));
    free(s);
}

int tws_send_json(tws *ws, json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT);
    int rc = tws_send_text(ws, s, strlen(s), 1);
    free(s);
    return rc;
}

int tws_sendp(tws *ws, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    json_error_t err;
    json_t *j = json_vpack_ex(&err, 0, fmt, ap);
    va_end(ap);
    if (!j) {
        t_note("json_pack(%s): %s", fmt, err.text);
        return T_ERR;
    }
    int rc = tws_send_json(ws, j);
    json_decref(j);
    return rc;
}

static void set_msg(tws_msg *m, int opcode, const uint8_t *p, size_t n, int nframes)
{
    memset(m, 0, sizeof *m);
    m->opcode = opcode;
    m->data = malloc(n + 1);
    if (n) memcpy(m->data, p, n);
    m->data[n] = 0;
    m->len = n;
    m->nframes = nframes;
}

static int bad_frame(tws *ws, const char *why)
{
    t_note("ws[%s]: malformed frame from the server: %s", ws->label, why);
    return T_ERR;
}

int tws_next(tws *ws, tws_msg *m)
{
    for (;;) {
        if (ws->in_off > 65536 && ws->in_off * 2 > ws->in.len) {
            buf_consume(&ws->in, ws->in_off);
            ws->in_off = 0;
        }
        const uint8_t *p = ws->in.data + ws->in_off;
        size_t avail = ws->in.len - ws->in_off;
        if (avail < 2) return 0;
        bool fin = p[0] & 0x80, masked = p[1] & 0x80;
        int rsv = (p[0] >> 4) & 7, op = p[0] & 15;
        uint64_t len = p[1] & 127;
        size_t hl = 2;
        if (len == 126) {
            if (avail < 4) return 0;
            len = (uint64_t)p[2] << 8 | p[3];
            hl = 4;
        } else if (len == 127) {
            if (avail < 10) return 0;
            len = 0;
            for (int i = 0; i < 8; i++) len = len << 8 | p[2 + i];
            hl = 10;
        }
        if (masked) return bad_frame(ws, "masked server frame");
        if (rsv) return bad_frame(ws, "RSV bits set");
        if (len > WS_MAX_PAYLOAD) return bad_frame(ws, "payload over 64 MiB");
        if (avail < hl + len) return 0;
        const uint8_t *pl = p + hl;
        size_t n = (size_t)len;
        ws->in_off += hl + n;

        if (op & 8) {
            if (!fin || n > 125) return bad_frame(ws, "bad control frame");
            if (op == WS_CLOSE) {
                if (n == 1) return bad_frame(ws, "close payload of 1 byte");
                int code = n >= 2 ? (pl[0] << 8 | pl[1]) : 1005;
                set_msg(m, WS_CLOSE, pl + (n >= 2 ? 2 : 0), n >= 2 ? n - 2 : 0, 1);
                m->close_code = code;
                ws->got_close = true;
                ws->close_code = code;
                snprintf(ws->close_reason, sizeof ws->close_reason, "%s", (char *)m->data);
                if (!ws->sent_close) {
                    uint8_t echo[2] = {(uint8_t)(code >> 8), (uint8_t)code};
                    tws_queue_frame(ws, true, 0, WS_CLOSE, true, echo, code == 1005 ? 0 : 2);
                }
                return 1;
            }
            if (op == WS_PING) {
                tws_queue_frame(ws, true, 0, WS_PONG, true, pl, n);
                continue;
            }
            if (op == WS_PONG) {
                set_msg(m, WS_PONG, pl, n, 1);
                return 1;
            }
            return bad_frame(ws, "unknown control opcode");
        }
        if (op == WS_CONT) {
            if (!ws->frag_opcode) return bad_frame(ws, "continuation without a message");
            buf_append(&ws->frag, pl, n);
            ws->frag_n++;
            if (!fin) continue;
            set_msg(m, ws->frag_opcode, ws->frag.data, ws->frag.len, ws->frag_n);
            buf_reset(&ws->frag);
            ws->frag_opcode = 0;
            ws->frag_n = 0;
            return 1;
        }
        if (op != WS_TEXT && op != WS_BIN) return bad_frame(ws, "unknown data opcode");
        if (ws->frag_opcode) return bad_frame(ws, "new message inside a fragmented one");
        if (fin) {
            set_msg(m, op, pl, n, 1);
            return 1;
        }
        ws->frag_opcode = op;
        ws->frag_n = 1;
        buf_reset(&ws->frag);
        buf_append(&ws->frag, pl, n);
    }
}

int tws_pump(tws **wss, int n, int timeout_ms)
{
    struct pollfd pf[64];
    if (n > 64) return T_ERR;
    int live = 0;
    for (int i = 0; i < n; i++) {
        pf[i].fd = wss[i]->eof ? -1 : wss[i]->fd;
        pf[i].events = (short)(POLLIN | (wss[i]->out.len ? POLLOUT : 0));
        pf[i].revents = 0;
        if (!wss[i]->eof) live++;
    }
    if (!live) return 0;
    int r = poll(pf, (nfds_t)n, timeout_ms);
    if (r < 0) return T_ERR;
    for (int i = 0; i < n && r > 0; i++) {
        tws *ws = wss[i];
        if (pf[i].revents & POLLOUT) {
            ssize_t w = send(ws->fd, ws->out.data, ws->out.len, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (w > 0) buf_consume(&ws->out, (size_t)w);
        }
        if (pf[i].revents & (POLLIN | POLLHUP | POLLERR)) {
            int rr = tnet_read_avail(ws->fd, &ws->in);
            if (rr == T_CLOSED || rr == T_ERR) ws->eof = true;
        }
    }
    return 0;
}

int tws_recv(tws *ws, tws_msg *m, int timeout_ms)
{
    long long dl = tnet_deadline(tmo(ws, timeout_ms));
    for (;;) {
        int r = tws_next(ws, m);
        if (ws->out.len && !ws->eof) flush(ws, 1000); /* pong / close replies */
        if (r == 1) return 0;
        if (r < 0) return T_ERR;
        if (ws->eof) return T_CLOSED;
        int n = tnet_read_some(ws->fd, &ws->in, tnet_left(dl));
        if (n == T_CLOSED)
            ws->eof = true;
        else if (n == T_TIMEOUT)
            return T_TIMEOUT;
        else if (n < 0)
            return T_ERR;
    }
}

static void note_msg(tws *ws, const char *what, const tws_msg *m)
{
    if (m->opcode == WS_CLOSE)
        t_note("ws[%s]: %s: got close %d \"%s\"", ws->label, what, m->close_code, (char *)m->data);
    else
        t_note("ws[%s]: %s: got opcode %d (%zu bytes): %.300s", ws->label, what, m->opcode, m->len,
               (char *)m->data);
}

static const char *rc_name(int rc)
{
    return rc == T_TIMEOUT ? "timed out" : rc == T_CLOSED ? "connection closed" : "error";
}

/* The next JSON object from the socket (not the held ones), dropping ignored types; with
 * hold_side, side frames are held and skipped too. */
static json_t *recv_json(tws *ws, int timeout_ms, bool hold_side)
{
    long long dl = tnet_deadline(tmo(ws, timeout_ms));
    for (;;) {
        tws_msg m;
        int rc = tws_recv(ws, &m, tnet_left(dl) > 0 ? tnet_left(dl) : 1);
        if (rc != 0) {
            t_note("ws[%s]: waiting for a frame: %s after %d ms", ws->label, rc_name(rc),
                   tmo(ws, timeout_ms));
            return NULL;
        }
        json_t *j = NULL;
        if (m.opcode == WS_TEXT) j = json_loadb((char *)m.data, m.len, 0, NULL);
        if (!json_is_object(j)) {
            note_msg(ws, "expected a JSON object", &m);
            json_decref(j);
            tws_msg_free(&m);
            return NULL;
        }
        tws_msg_free(&m);
        if (ignored(ws, j)) {
            json_decref(j);
            continue;
        }
        if (hold_side && tws_hold_side(ws, j)) continue;
        return j;
    }
}

json_t *tws_recv_json(tws *ws, int timeout_ms)
{
    if (json_array_size(ws->held)) {
        json_t *j = json_incref(json_array_get(ws->held, 0));
        json_array_remove(ws->held, 0);
        return j;
    }
    return recv_json(ws, timeout_ms, false);
}

json_t *tws_recv_reply(tws *ws, int timeout_ms)
{
    return recv_json(ws, timeout_ms, true);
}

json_t *tws_expect_type(tws *ws, const char *type, int timeout_ms)
{
    json_t *j = tws_recv_json(ws, timeout_ms);
    if (!j) {
        t_note("ws[%s]: (was waiting for \"%s\")", ws->label, type);
        return NULL;
    }
    if (strcmp(tj_str(j, "type"), type) != 0) {
        t_note("ws[%s]: expected \"%s\", got %s", ws->label, type, tj_dump(j));
        json_decref(j);
        return NULL;
    }
    return j;
}

json_t *tws_expect_reply(tws *ws, const char *type, const char *id, int timeout_ms)
{
    json_t *j = tws_recv_reply(ws, timeout_ms);
    if (!j) {
        t_note("ws[%s]: (was waiting for \"%s\" id \"%s\")", ws->label, type, id);
        return NULL;
    }
    if (strcmp(tj_str(j, "type"), type) != 0 || strcmp(tj_str(j, "id"), id) != 0) {
        t_note("ws[%s]: expected \"%s\" with id \"%s\", got %s", ws->label, type, id, tj_dump(j));
        json_decref(j);
        return NULL;
    }
    return j;
}

int tws_wait_close(tws *ws, int timeout_ms)
{
    for (size_t i = 0; i < json_array_size(ws->held); i++)
        t_note("ws[%s]: before the close frame: %s", ws->label,
               tj_dump(json_array_get(ws->held, i)));
    json_array_clear(ws->held);
    long long dl = tnet_deadline(tmo(ws, timeout_ms));
    for (;;) {
        tws_msg m;
        int rc = tws_recv(ws, &m, tnet_left(dl) > 0 ? tnet_left(dl) : 1);
        if (rc != 0) {
            t_note("ws[%s]: waiting for a close frame: %s", ws->label, rc_name(rc));
            return rc;
        }
        if (m.opcode == WS_CLOSE) {
            int code = m.close_code;
            tws_msg_free(&m);
            return code;
        }
        note_msg(ws, "before the close frame", &m);
        tws_msg_free(&m);
    }
}

bool tws_silent(tws *ws, int ms)
{
    if (json_array_size(ws->held)) {
        t_note("ws[%s]: expected silence, but holds %s", ws->label, tj_dump(ws->held));
        return false;
    }
    long long dl = tnet_deadline(ms);
    for (;;) {
        int left = tnet_left(dl);
        if (left == 0) return true;
        tws_msg m;
        int rc = tws_recv(ws, &m, left);
        if (rc == T_TIMEOUT) return true;
        if (rc != 0) {
            t_note("ws[%s]: expected silence: %s", ws->label, rc_name(rc));
            return false;
        }
        json_t *j = m.opcode == WS_TEXT ? json_loadb((char *)m.data, m.len, 0, NULL) : NULL;
        bool skip = j && ignored(ws, j);
        json_decref(j);
        if (!skip) {
            note_msg(ws, "expected silence", &m);
            tws_msg_free(&m);
            return false;
        }
        tws_msg_free(&m);
    }
}

int tws_close(tws *ws, int code, int timeout_ms)
{
    if (!ws) return T_ERR;
    int got = T_ERR;
    if (!ws->sent_close && !ws->eof) {
        uint8_t c[2] = {(uint8_t)(code >> 8), (uint8_t)code};
        tws_send_frame(ws, true, 0, WS_CLOSE, true, c, 2);
    }
    if (ws->got_close)
        got = ws->close_code;
    else
        got = tws_wait_close(ws, timeout_ms);
    /* The server closes TCP after the close handshake. */
    long long dl = tnet_deadline(tmo(ws, timeout_ms));
    while (!ws->eof && tnet_left(dl) > 0) {
        int n = tnet_read_some(ws->fd, &ws->in, tnet_left(dl));
        if (n == T_CLOSED || n == T_TIMEOUT || n == T_ERR) break;
    }
    tws_free(ws);
    return got;
}
