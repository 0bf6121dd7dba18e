/* worker.c: one forked parley-bench worker. It owns the connections [lo, hi) (each worker stays
 * under the per-process open-file cap), opens them from spread source addresses, and runs what
 * the parent asks over the control socket: connect, run traffic, disconnect.
 *
 * Traffic. Every message text starts with "~pb:SENDER:N:T:" (T: the send time, CLOCK_MONOTONIC
 * ns, which all processes on the machine share) padded to the payload size. A receiver expects
 * N = 0, 1, 2... from its one sender, in order: a smaller N is a duplicate, a larger one skips
 * lost messages. Flat out, each sender keeps `window` messages in flight (counted by deliveries,
 * which works for every protocol, or by acks); at a fixed rate each sender follows a schedule and
 * latency is measured from the scheduled time, so a stalled server is not hidden (no coordinated
 * omission). Senders and their receivers are in the same worker. */
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "common/ws.h"
#include "pb.h"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

enum cstate { C_IDLE, C_CONNECTING, C_HS, C_AUTH, C_SYNC, C_REG, C_LIVE, C_DEAD };

typedef struct pconn {
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_write_t wr;
    int idx;
    uint8_t state;
    bool writing, slow, paused, open, from_zero, dirty;
    uint8_t xs; /* xmpp: the step of the log-in */
    char *jid;  /* xmpp: the full JID the server bound */
    ws_t *ws;
    buf_t in;   /* handshake bytes, then (MQTT) unparsed input */
    buf_t mout; /* MQTT output */
    buf_t wbuf; /* bytes of the write in flight */
    int64_t t_start;
    /* as a sender */
    int target; /* receiver conn (direct) or group number; -1: not a sender */
    uint64_t sent, acked, errs, delivered, phase_sent;
    double rate, phase;
    /* as a receiver */
    int from; /* its sender, -1: none */
    uint64_t next_n, unique, dups, gaps, foreign;
} pconn;

static struct {
    uv_loop_t *loop;
    int id, lo, hi, fd;
    pconn *c;
    uv_poll_t ctl;
    uv_timer_t tick;
    uv_check_t check;
    pconn **dirty;
    int ndirty;
    struct sockaddr_in srv;
    char rbuf[256 * 1024];
    /* connecting */
    bool connecting;
    int conn_target, inflight, next_conn, ok, failed, lost;
    int64_t conn_t0;
    hist_t hs;
    /* running */
    bool running, sending, ackwin, slow_mode, slow_applied, fill;
    int window;
    int64_t fill_n;
    int64_t t0, m0, m1, deadline;
    uint64_t deliv_window;
    hist_t lat, base;
    int64_t last_drain_check;
} W;

static int log_budget = 20;

static void wlog(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void wlog(const char *fmt, ...)
{
    if (log_budget <= 0) return;
    if (--log_budget == 0) {
        fprintf(stderr, "parley-bench[w%d]: (more messages suppressed)\n", W.id);
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "parley-bench[w%d]: ", W.id);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static pconn *conn_at(int idx)
{
    return idx >= W.lo && idx < W.hi ? &W.c[idx - W.lo] : NULL;
}

static void write_all(const void *p, size_t n)
{
    const char *s = p;
    while (n > 0) {
        ssize_t k = write(W.fd, s, n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) _exit(3); /* the parent is gone */
        s += k;
        n -= (size_t)k;
    }
}

/* ---- output ---- */

static buf_t *outbuf(pconn *c)
{
    return O.proto == P_MQTT || O.proto == P_XMPP ? &c->mout : ws_out(c->ws);
}

static void conn_fail(pconn *c, const char *why);
static void conn_flush(pconn *c);

static void on_write(uv_write_t *w, int status)
{
    pconn *c = w->data;
    c->writing = false;
    c->wbuf.len = 0;
    if (status < 0) {
        conn_fail(c, uv_strerror(status));
        return;
    }
    conn_flush(c);
}

static void conn_flush(pconn *c)
{
    if (c->writing || !c->open) return;
    buf_t *o = outbuf(c);
    if (!o->len) return;
    uv_buf_t b = uv_buf_init((char *)o->data, (unsigned)o->len);
    int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (n == (int)o->len) {
        o->len = 0;
        return;
    }
    if (n < 0 && n != UV_EAGAIN) {
        conn_fail(c, uv_strerror(n));
        return;
    }
    if (n < 0) n = 0;
    buf_t t = c->wbuf;
    c->wbuf = *o;
    *o = t;
    o->len = 0;
    b = uv_buf_init((char *)c->wbuf.data + n, (unsigned)(c->wbuf.len - (size_t)n));
    c->writing = true;
    c->wr.data = c;
    if (uv_write(&c->wr, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0) {
        c->writing = false;
        conn_fail(c, "write failed");
    }
}

/* Output is written once per loop iteration (on_check), so that what several callbacks queue for
 * one connection goes out in one system call. */
static void conn_mark(pconn *c)
{
    if (c->dirty || !c->open) return;
    c->dirty = true;
    W.dirty[W.ndirty++] = c;
}

static void on_check(uv_check_t *h)
{
    (void)h;
    for (int i = 0; i < W.ndirty; i++) {
        W.dirty[i]->dirty = false;
        conn_flush(W.dirty[i]);
    }
    W.ndirty = 0;
}

/* ---- MQTT 3.1.1, just what QoS 0 publish/subscribe needs ---- */

static void mq_len(buf_t *b, size_t n)
{
    do {
        uint8_t d = n % 128;
        n /= 128;
        if (n) d |= 0x80;
        buf_append(b, &d, 1);
    } while (n);
}

static void mq_str(buf_t *b, const char *s, size_t n)
{
    uint8_t l[2] = {(uint8_t)(n >> 8), (uint8_t)n};
    buf_append(b, l, 2);
    buf_append(b, s, n);
}

static void mq_connect(pconn *c)
{
    char id[40];
    conn_name(c->idx, id);
    size_t idl = strlen(id);
    uint8_t h = 0x10;
    buf_append(&c->mout, &h, 1);
    mq_len(&c->mout, 10 + 2 + idl);
    static const uint8_t vh[] = {0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 0}; /* clean, no keepalive */
    buf_append(&c->mout, vh, sizeof vh);
    mq_str(&c->mout, id, idl);
}

static void mq_subscribe(pconn *c)
{
    char id[40], topic[48];
    conn_name(c->idx, id);
    int tl = snprintf(topic, sizeof topic, "u/%s", id);
    uint8_t h = 0x82;
    buf_append(&c->mout, &h, 1);
    mq_len(&c->mout, 2 + 2 + (size_t)tl + 1);
    uint8_t pid[2] = {0, 1}, qos = 0;
    buf_append(&c->mout, pid, 2);
    mq_str(&c->mout, topic, (size_t)tl);
    buf_append(&c->mout, &qos, 1);
}

/* ---- messages ---- */

static void go_live(pconn *c);
static void on_payload(pconn *c, const char *m, size_t len);
static void pump(pconn *s);

static size_t fill_text(char *out, size_t cap, int sender, uint64_t n, int64_t t)
{
    int k = snprintf(out, cap, "~pb:%d:%" PRIu64 ":%" PRId64 ":", sender, n, t);
    size_t len = (size_t)k;
    size_t want = (size_t)O.payload < cap - 1 ? (size_t)O.payload : cap - 1;
    while (len < want) out[len++] = 'x';
    out[len] = 0;
    return len;
}

static void send_one(pconn *s, int64_t stamp)
{
    char text[4096], frame[4608], to[40];
    uint64_t n = s->sent++;
    fill_text(text, sizeof text, s->idx, n, stamp);
    if (O.scen == S_GROUP)
        snprintf(to, sizeof to, "%s", GID[s->target]);
    else
        conn_name(s->target, to);
    int len;
    switch (O.proto) {
    case P_PARLEY:
        len = snprintf(frame, sizeof frame,
                       "{\"type\":\"send\",\"id\":\"%" PRIu64
                       "\",\"to\":\"%s\",\"cmid\":\"%08x-%" PRIu64
                       "\",\"kind\":\"text\",\"body\":{\"text\":\"%s\"}}",
                       n, to, O.run_id, n, text);
        ws_send_text(s->ws, frame, (size_t)len);
        break;
    case P_RELAY:
        len = snprintf(frame, sizeof frame, "%s %s", to, text);
        ws_send_text(s->ws, frame, (size_t)len);
        break;
    case P_XMPP: {
        pconn *r = conn_at(s->target);
        buf_printf(&s->mout, "<message to='%s' type='chat'><body>%s</body></message>",
                   r && r->jid ? r->jid : "nobody", text);
        break;
    }
    case P_MQTT: {
        char topic[48];
        int tl = snprintf(topic, sizeof topic, "u/%s", to);
        size_t pl = strlen(text);
        uint8_t h = 0x30;
        buf_append(&s->mout, &h, 1);
        mq_len(&s->mout, 2 + (size_t)tl + pl);
        mq_str(&s->mout, topic, (size_t)tl);
        buf_append(&s->mout, text, pl);
        break;
    }
    }
}

static uint64_t in_flight(const pconn *s)
{
    uint64_t done = (W.ackwin ? s->acked : s->delivered) + s->errs;
    return s->sent > done ? s->sent - done : 0;
}

static void pump(pconn *s)
{
    if (!W.sending || s->rate > 0 || s->target < 0 || s->state != C_LIVE) return;
    int k = 0;
    while (in_flight(s) < (uint64_t)W.window) {
        if (W.fill && (int64_t)s->sent >= W.fill_n) break;
        send_one(s, now_ns());
        k++;
    }
    if (k) conn_mark(s);
}

static int64_t parse_num_after(const char *m, size_t len, const char *key)
{
    const char *p = memmem(m, len, key, strlen(key));
    if (!p) return -1;
    return strtoll(p + strlen(key), NULL, 10);
}

static void send_sync(pconn *c, int64_t after)
{
    char f[128];
    int n = snprintf(f, sizeof f,
                     "{\"type\":\"sync\",\"id\":\"s\",\"after\":%" PRId64 ",\"limit\":500}", after);
    ws_send_text(c->ws, f, (size_t)n);
}

static void on_parley_text(pconn *c, const char *m, size_t len)
{
    if (len < 12 || memcmp(m, "{\"type\":\"", 9) != 0) return;
    const char *t = m + 9;
    if (memcmp(t, "msg\"", 4) == 0) {
        on_payload(c, m, len);
    } else if (memcmp(t, "ack\"", 4) == 0) {
        c->acked++;
        if (W.ackwin) pump(c);
    } else if (memcmp(t, "ready\"", 6) == 0) {
        int64_t head = parse_num_after(m, len, "\"head\":");
        c->state = C_SYNC;
        send_sync(c, c->from_zero || head < 0 ? 0 : head);
    } else if (memcmp(t, "synced\"", 7) == 0) {
        int64_t upto = parse_num_after(m, len, "\"upto\":");
        bool more = memmem(m, len, "\"more\":true", 11) != NULL;
        if (more)
            send_sync(c, upto);
        else if (c->state == C_SYNC)
            go_live(c);
    } else if (memcmp(t, "error\"", 6) == 0) {
        bool sync_err = memmem(m, len, "\"id\":\"s\"", 8) != NULL;
        if (!sync_err) c->errs++;
        wlog("conn %d: %.*s", c->idx, (int)(len > 300 ? 300 : len), m);
        if (sync_err) conn_fail(c, "sync refused");
    }
}

static void on_text(void *ud, const char *m, size_t len)
{
    pconn *c = ud;
    if (O.proto == P_PARLEY) {
        on_parley_text(c, m, len);
    } else if (c->state == C_REG) {
        if (len == 2 && memcmp(m, "ok", 2) == 0) go_live(c);
    } else {
        on_payload(c, m, len);
    }
}

static const ws_handler handler = {.on_text = on_text};

static void on_payload(pconn *c, const char *m, size_t len)
{
    const char *p = memmem(m, len, "~pb:", 4);
    if (!p) return;
    char *e;
    long sender = strtol(p + 4, &e, 10);
    uint64_t n = strtoull(e + 1, &e, 10);
    int64_t t = strtoll(e + 1, NULL, 10);
    int64_t now = now_ns();
    if (sender == c->idx) return; /* an own message, which sync returns too: the ack had it */
    if (sender != c->from) {
        c->foreign++;
        return;
    }
    if (n < c->next_n) {
        c->dups++;
        return;
    }
    if (n > c->next_n) c->gaps += n - c->next_n;
    c->next_n = n + 1;
    c->unique++;
    if (now >= W.m0 && now < W.m1) W.deliv_window++;
    if (!c->slow && W.running) {
        if (t >= W.m0 && t < W.m1)
            hist_add(&W.lat, now - t);
        else if (W.slow_mode && t >= W.t0 + (W.m0 - W.t0) / 5 && t < W.m0)
            hist_add(&W.base, now - t);
    }
    pconn *s = conn_at((int)sender);
    if (s) {
        s->delivered++;
        if (!W.ackwin) pump(s);
    }
}

/* ---- MQTT input ---- */

static void mq_input(pconn *c)
{
    size_t off = 0;
    while (c->in.len - off >= 2) {
        const uint8_t *d = c->in.data + off;
        size_t avail = c->in.len - off, rl = 0, i = 1;
        int mul = 1;
        for (;; i++) {
            if (i >= avail || i > 4) goto out;
            rl += (size_t)(d[i] & 0x7f) * (size_t)mul;
            mul *= 128;
            if (!(d[i] & 0x80)) break;
        }
        size_t hl = i + 1;
        if (avail < hl + rl) break;
        uint8_t type = d[0] >> 4;
        const uint8_t *b = d + hl;
        if (type == 2 && c->state == C_REG) { /* CONNACK */
            if (rl >= 2 && b[1] != 0) {
                conn_fail(c, "CONNACK refused");
                return;
            }
            mq_subscribe(c);
        } else if (type == 9 && c->state == C_REG) { /* SUBACK */
            go_live(c);
        } else if (type == 3 && rl >= 2) { /* PUBLISH */
            size_t tl = (size_t)b[0] << 8 | b[1];
            size_t skip = 2 + tl + ((d[0] >> 1 & 3) ? 2 : 0);
            if (skip <= rl) on_payload(c, (const char *)b + skip, rl - skip);
        }
        off += hl + rl;
    }
out:
    buf_consume(&c->in, off);
    conn_mark(c);
}

/* ---- XMPP (RFC 6120), just what SASL ANONYMOUS, resource binding and chat messages need ---- */

static void xmpp_header(pconn *c)
{
    buf_printf(&c->mout,
               "<?xml version='1.0'?><stream:stream to='%s' xmlns='jabber:client' "
               "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>",
               O.domain);
}

static void xmpp_input(pconn *c)
{
    buf_append(&c->in, "", 1);
    c->in.len--;
    char *d = (char *)c->in.data;
    size_t len = c->in.len;
    if (c->state != C_LIVE) {
        if (c->xs == 0 && strstr(d, "</stream:features>")) {
            buf_append_str(&c->mout, "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' "
                                     "mechanism='ANONYMOUS'/>");
            c->xs = 1;
            c->in.len = 0;
        } else if (c->xs == 1 && strstr(d, "<failure")) {
            conn_fail(c, "SASL ANONYMOUS refused");
            return;
        } else if (c->xs == 1 && strstr(d, "<success")) {
            xmpp_header(c); /* the stream restarts after authentication */
            c->xs = 2;
            c->in.len = 0;
        } else if (c->xs == 2 && strstr(d, "</stream:features>")) {
            buf_append_str(&c->mout, "<iq type='set' id='bind'><bind "
                                     "xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>");
            c->xs = 3;
            c->in.len = 0;
        } else if (c->xs == 3) {
            char *j = strstr(d, "<jid>"), *e = j ? strstr(j, "</jid>") : NULL;
            if (e) {
                free(c->jid);
                c->jid = strndup(j + 5, (size_t)(e - j - 5));
                c->in.len = 0;
                go_live(c);
            }
        }
        if (c->in.len > 65536) conn_fail(c, "log-in answer too long");
        conn_mark(c);
        return;
    }
    /* Live: only message bodies matter, and each holds one "~pb:S:N:T:" marker, so the stream is
     * scanned for markers instead of parsed; an incomplete one waits for more bytes. */
    size_t off = 0, keep = len > 3 ? len - 3 : 0;
    for (;;) {
        char *p = memmem(d + off, len - off, "~pb:", 4);
        if (!p) {
            off = keep > off ? keep : off;
            break;
        }
        int colons = 0;
        char *q = p + 4;
        while (q < d + len && colons < 3)
            if (*q++ == ':') colons++;
        if (colons < 3) {
            off = (size_t)(p - d);
            break;
        }
        on_payload(c, p, (size_t)(d + len - p));
        off = (size_t)(p - d) + 4;
    }
    buf_consume(&c->in, off);
}

/* ---- connection life ---- */

static void connect_more(void);

static void go_live(pconn *c)
{
    c->state = C_LIVE;
    if (W.connecting) {
        W.inflight--;
        W.ok++;
        hist_add(&W.hs, now_ns() - c->t_start);
        connect_more();
    }
}

static void on_closed(uv_handle_t *h)
{
    pconn *c = h->data;
    ws_free(c->ws);
    c->ws = NULL;
    buf_free(&c->in);
    buf_free(&c->mout);
    buf_free(&c->wbuf);
    c->writing = false;
}

static void conn_close(pconn *c)
{
    if (!c->open) return;
    c->open = false;
    uv_close((uv_handle_t *)&c->tcp, on_closed);
}

static void conn_fail(pconn *c, const char *why)
{
    if (!c->open) return;
    bool was_live = c->state == C_LIVE;
    wlog("conn %d (%s): %s", c->idx,
         was_live                   ? "live"
         : c->state == C_CONNECTING ? "connecting"
                                    : "setting up",
         why);
    if (W.connecting && !was_live) {
        W.inflight--;
        W.failed++;
    } else if (was_live) {
        W.lost++;
    }
    c->state = C_DEAD;
    conn_close(c);
    if (W.connecting) connect_more();
}

static void on_alloc(uv_handle_t *h, size_t sug, uv_buf_t *b)
{
    (void)h;
    (void)sug;
    *b = uv_buf_init(W.rbuf, sizeof W.rbuf);
}

static void feed_ws(pconn *c, const uint8_t *d, size_t n)
{
    long k = ws_feed(c->ws, d, n);
    conn_mark(c);
    if (k < 0 || ws_closing(c->ws)) {
        char why[64];
        snprintf(why, sizeof why, "closed by the server (code %u)", ws_peer_close_code(c->ws));
        conn_fail(c, why);
    }
}

static void after_handshake(pconn *c)
{
    char f[1024];
    switch (O.proto) {
    case P_PARLEY: {
        int n = snprintf(f, sizeof f, "{\"type\":\"auth\",\"token\":\"%s\"}", U[c->idx].token);
        c->state = C_AUTH;
        ws_send_text(c->ws, f, (size_t)n);
        break;
    }
    case P_RELAY: {
        char id[40];
        conn_name(c->idx, id);
        int n = snprintf(f, sizeof f, "id:%s", id);
        c->state = C_REG;
        ws_send_text(c->ws, f, (size_t)n);
        break;
    }
    case P_MQTT:
    case P_XMPP:
        break;
    }
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    pconn *c = s->data;
    if (nread < 0) {
        conn_fail(c, nread == UV_EOF ? "closed by the server" : uv_strerror((int)nread));
        return;
    }
    if (nread == 0) return;
    const uint8_t *d = (const uint8_t *)b->base;
    size_t n = (size_t)nread;
    if (O.proto == P_MQTT) {
        buf_append(&c->in, d, n);
        mq_input(c);
        return;
    }
    if (O.proto == P_XMPP) {
        buf_append(&c->in, d, n);
        xmpp_input(c);
        return;
    }
    if (c->state == C_HS) {
        buf_append(&c->in, d, n);
        buf_append(&c->in, "", 1);
        c->in.len--;
        char *end = strstr((char *)c->in.data, "\r\n\r\n");
        if (!end) {
            if (c->in.len > 8192) conn_fail(c, "handshake answer too long");
            return;
        }
        if (strncmp((char *)c->in.data, "HTTP/1.1 101", 12) != 0) {
            char why[160];
            snprintf(why, sizeof why, "handshake refused: %.120s", (char *)c->in.data);
            conn_fail(c, why);
            return;
        }
        size_t hl = (size_t)(end + 4 - (char *)c->in.data);
        buf_t rest = c->in;
        buf_init(&c->in);
        after_handshake(c);
        if (rest.len > hl)
            feed_ws(c, rest.data + hl, rest.len - hl);
        else
            conn_mark(c);
        buf_free(&rest);
        return;
    }
    feed_ws(c, d, n);
}

static void on_connect(uv_connect_t *req, int status)
{
    pconn *c = req->data;
    if (!c->open) return;
    if (status < 0) {
        conn_fail(c, uv_strerror(status));
        return;
    }
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (O.proto == P_MQTT) {
        c->state = C_REG;
        mq_connect(c);
        conn_mark(c);
        return;
    }
    if (O.proto == P_XMPP) {
        c->state = C_REG;
        c->xs = 0;
        xmpp_header(c);
        conn_mark(c);
        return;
    }
    c->state = C_HS;
    uint8_t nonce[16];
    char key[32];
    randombytes_buf(nonce, sizeof nonce);
    sodium_bin2base64(key, sizeof key, nonce, sizeof nonce, sodium_base64_VARIANT_ORIGINAL);
    buf_printf(ws_out(c->ws),
               "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n",
               O.proto == P_PARLEY ? "/v1/ws" : "/", O.host, O.port, key);
    conn_mark(c);
}

static void conn_start(pconn *c)
{
    c->t_start = now_ns();
    c->open = true;
    c->state = C_CONNECTING;
    c->paused = false;
    c->next_n = c->unique = c->dups = c->gaps = c->foreign = 0;
    buf_init(&c->in);
    buf_init(&c->mout);
    buf_init(&c->wbuf);
    if (O.proto == P_PARLEY || O.proto == P_RELAY) c->ws = ws_new(false, 64 << 20, &handler, c);
    uv_tcp_init_ex(W.loop, &c->tcp, AF_INET);
    c->tcp.data = c;
    c->creq.data = c;
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0) {
        int one = 1;
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        if (c->slow) { /* a slow phone: a small receive window, so the server's queue fills */
            int rb = 16384;
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rb, sizeof rb);
        }
    }
    struct sockaddr_in src;
    char ip[32];
    snprintf(ip, sizeof ip, "127.0.1.%d",
             1 + c->idx % (O.sources < 1     ? 1
                           : O.sources > 250 ? 250
                                             : O.sources));
    uv_ip4_addr(ip, 0, &src);
    int rc = uv_tcp_bind(&c->tcp, (struct sockaddr *)&src, 0);
    uv_tcp_nodelay(&c->tcp, 1);
    if (rc == 0) rc = uv_tcp_connect(&c->creq, &c->tcp, (struct sockaddr *)&W.srv, on_connect);
    if (rc != 0) conn_fail(c, uv_strerror(rc));
}

static void reply_connect(void);

static void connect_more(void)
{
    while (W.connecting && W.inflight < O.inflight && W.next_conn < W.conn_target) {
        pconn *c = &W.c[W.next_conn++];
        if (c->open) continue;
        W.inflight++;
        conn_start(c);
    }
    if (W.connecting && W.inflight == 0 && W.next_conn >= W.conn_target) reply_connect();
}

static void reply_connect(void)
{
    W.connecting = false;
    report_t *r = calloc(1, sizeof *r);
    if (!r) abort();
    r->op = OP_CONNECT;
    r->worker = W.id;
    r->conns_ok = W.ok;
    r->conns_failed = W.failed;
    r->elapsed_ns = now_ns() - W.conn_t0;
    for (int i = 0; i < W.conn_target; i++) {
        pconn *c = &W.c[i];
        if (c->from < 0 || c->state != C_LIVE) continue;
        pconn *s = conn_at(c->from);
        if (s) r->expected += (int64_t)(s->sent - s->errs);
        r->unique += (int64_t)c->unique;
        r->dups += (int64_t)c->dups;
        r->gaps += (int64_t)c->gaps;
        r->foreign += (int64_t)c->foreign;
    }
    r->h1 = W.hs;
    write_all(r, sizeof *r);
    free(r);
}

/* ---- running traffic ---- */

static void finish_run(void)
{
    W.running = false;
    W.sending = false;
    report_t *r = calloc(1, sizeof *r);
    if (!r) abort();
    r->op = OP_RUN;
    r->worker = W.id;
    r->elapsed_ns = now_ns() - W.t0;
    for (int i = 0; i < W.hi - W.lo; i++) {
        pconn *c = &W.c[i];
        if (c->target >= 0 && c->state != C_IDLE) {
            r->senders++;
            r->sent += (int64_t)c->sent;
            r->acked += (int64_t)c->acked;
            r->errors += (int64_t)c->errs;
        }
        if (c->from >= 0 && c->state != C_IDLE) {
            pconn *s = conn_at(c->from);
            if (s) r->expected += (int64_t)(s->sent - s->errs);
            r->unique += (int64_t)c->unique;
            r->dups += (int64_t)c->dups;
            r->gaps += (int64_t)c->gaps;
            r->foreign += (int64_t)c->foreign;
        }
    }
    r->conns_lost = W.lost;
    r->deliv_window = (int64_t)W.deliv_window;
    r->h1 = W.lat;
    r->h2 = W.base;
    write_all(r, sizeof *r);
    free(r);
}

static bool drained(void)
{
    for (int i = 0; i < W.hi - W.lo; i++) {
        pconn *c = &W.c[i];
        if (c->state != C_LIVE) continue;
        if (c->target >= 0 && O.proto == P_PARLEY && c->acked + c->errs < c->sent) return false;
        if (c->from >= 0) {
            pconn *s = conn_at(c->from);
            if (s && c->unique < s->sent - s->errs) return false;
        }
    }
    return true;
}

static void set_slow_reading(bool stop)
{
    for (int i = 0; i < W.hi - W.lo; i++) {
        pconn *c = &W.c[i];
        if (!c->slow || !c->open) continue;
        if (stop && !c->paused) {
            uv_read_stop((uv_stream_t *)&c->tcp);
            c->paused = true;
        } else if (!stop && c->paused) {
            uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
            c->paused = false;
        }
    }
}

static void on_tick(uv_timer_t *t)
{
    (void)t;
    if (!W.running) return;
    int64_t now = now_ns();
    if (W.sending) {
        for (int i = 0; i < W.hi - W.lo; i++) {
            pconn *s = &W.c[i];
            if (s->rate <= 0 || s->state != C_LIVE) continue;
            double due = ((double)(now - W.t0) / 1e9) * s->rate - s->phase;
            int k = 0;
            while ((double)s->phase_sent < due && k < 10000) {
                int64_t stamp =
                    W.t0 + (int64_t)(((double)s->phase_sent + s->phase) / s->rate * 1e9);
                /* The 1 ms timer makes every send up to 1 ms late: that is the generator's
                 * granularity, not the server's, so it is not counted. A send later than 2 ms
                 * means the generator was held up (a stalled server): then the schedule counts. */
                if (now - stamp < 2000000) stamp = now;
                send_one(s, stamp);
                s->phase_sent++;
                k++;
            }
            if (k) conn_mark(s);
        }
        if (W.slow_mode && !W.slow_applied && now >= W.m0) {
            set_slow_reading(true);
            W.slow_applied = true;
        }
        if (W.fill) {
            pconn *s = &W.c[0];
            if ((int64_t)s->sent >= W.fill_n) W.sending = false;
            if (now > W.deadline) W.sending = false;
        } else if (now >= W.m1) {
            W.sending = false;
            W.deadline = now + (int64_t)O.drain_ms * 1000000;
            if (W.slow_mode) set_slow_reading(false);
        }
        if (!W.sending && W.fill) W.deadline = now + (int64_t)O.drain_ms * 1000000;
    }
    /* timers run before the poll phase, which may block until the next tick: write now */
    on_check(NULL);
    if (!W.sending && now - W.last_drain_check > 5000000) {
        W.last_drain_check = now;
        if (drained() || now > W.deadline) finish_run();
    }
}

static void start_run(const cmd_t *cm)
{
    W.running = true;
    W.sending = true;
    W.ackwin = (cm->b & RUN_ACKWIN) != 0;
    W.slow_mode = (cm->b & RUN_SLOW) != 0;
    W.fill = (cm->b & RUN_FILL) != 0;
    W.fill_n = cm->n;
    W.slow_applied = false;
    W.window = cm->a > 0 ? cm->a : 1;
    W.deliv_window = 0;
    W.lost = 0;
    hist_reset(&W.lat);
    hist_reset(&W.base);
    W.t0 = now_ns();
    W.m0 = W.t0 + (int64_t)(cm->warmup * 1e9);
    W.m1 = W.m0 + (int64_t)(cm->duration * 1e9);
    W.deadline = W.fill ? W.t0 + (int64_t)O.timeout_s * 1000000000LL : W.m1;
    if (W.fill) { /* everything sent counts */
        W.m0 = W.t0;
        W.m1 = INT64_MAX;
    }
    for (int i = 0; i < W.hi - W.lo; i++) {
        pconn *c = &W.c[i];
        c->sent = c->acked = c->errs = c->delivered = c->phase_sent = 0;
        c->next_n = c->unique = c->dups = c->gaps = c->foreign = 0;
        c->rate = 0;
        if (c->target < 0) continue;
        if (cm->rate_per_sender > 0) {
            c->rate = cm->rate_per_sender;
            /* the senders feeding slow consumers go faster, to fill the server's queue */
            pconn *r = O.scen == S_SLOW ? conn_at(c->target) : NULL;
            if (r && r->slow && cm->slow_rate > 0) c->rate = cm->slow_rate;
            c->phase = (double)((c->idx * 2654435761u) % 1000) / 1000.0;
        }
    }
    for (int i = 0; i < W.hi - W.lo; i++) pump(&W.c[i]);
}

/* ---- control ---- */

static void on_ctl(uv_poll_t *p, int status, int events)
{
    (void)p;
    (void)events;
    if (status < 0) _exit(3);
    cmd_t cm;
    size_t got = 0;
    while (got < sizeof cm) {
        ssize_t k = read(W.fd, (char *)&cm + got, sizeof cm - got);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) _exit(3);
        got += (size_t)k;
    }
    switch (cm.op) {
    case OP_CONNECT:
        W.connecting = true;
        W.conn_target = cm.a < W.hi - W.lo ? cm.a : W.hi - W.lo;
        W.next_conn = 0;
        W.ok = W.failed = W.inflight = 0;
        hist_reset(&W.hs);
        W.conn_t0 = now_ns();
        for (int i = 0; i < W.conn_target; i++) W.c[i].from_zero = cm.b == 1;
        connect_more();
        break;
    case OP_RUN:
        start_run(&cm);
        break;
    case OP_DISCONNECT: {
        for (int i = cm.a; i < W.hi - W.lo; i++) {
            W.c[i].state = C_IDLE;
            conn_close(&W.c[i]);
        }
        report_t r0;
        memset(&r0, 0, sizeof r0);
        r0.op = OP_DISCONNECT;
        r0.worker = W.id;
        write_all(&r0, sizeof r0);
        break;
    }
    case OP_QUIT:
    default:
        for (int i = 0; i < W.hi - W.lo; i++) conn_close(&W.c[i]);
        uv_poll_stop(&W.ctl);
        uv_close((uv_handle_t *)&W.ctl, NULL);
        uv_close((uv_handle_t *)&W.tick, NULL);
        uv_close((uv_handle_t *)&W.check, NULL);
        break;
    }
}

static void assign_roles(pconn *c)
{
    int i = c->idx;
    c->target = -1;
    c->from = -1;
    switch (O.scen) {
    case S_DIRECT:
    case S_SLOW:
        c->target = i ^ 1;
        c->from = i ^ 1;
        c->slow = O.scen == S_SLOW && O.slow_frac > 0 && (i & 1) &&
                  (i / 2) % (int)(1.0 / (2 * O.slow_frac) + 0.5) == 0;
        break;
    case S_GROUP:
        if (i % O.group_size == 0)
            c->target = i / O.group_size;
        else
            c->from = i - i % O.group_size;
        break;
    case S_CATCHUP:
        if (i == 0) c->target = 1;
        if (i == 1) c->from = 0;
        break;
    case S_IDLE:
        break;
    }
}

void worker_main(int id, int lo, int hi, int ctl_fd)
{
    W.id = id;
    W.lo = lo;
    W.hi = hi;
    W.fd = ctl_fd;
    W.loop = uv_default_loop();
    W.c = calloc((size_t)(hi - lo), sizeof *W.c);
    if (!W.c) abort();
    for (int i = 0; i < hi - lo; i++) {
        W.c[i].idx = lo + i;
        assign_roles(&W.c[i]);
    }
    uv_ip4_addr(O.host, O.port, &W.srv);
    uv_poll_init(W.loop, &W.ctl, ctl_fd);
    uv_poll_start(&W.ctl, UV_READABLE, on_ctl);
    W.dirty = calloc((size_t)(hi - lo), sizeof *W.dirty);
    if (!W.dirty) abort();
    uv_check_init(W.loop, &W.check);
    uv_check_start(&W.check, on_check);
    uv_timer_init(W.loop, &W.tick);
    uv_timer_start(&W.tick, on_tick, 1, 1);
    uv_run(W.loop, UV_RUN_DEFAULT);
}
