/* bare-relay: the ceiling reference. A libuv WebSocket relay built from Parley's own framing code
 * (src/common/ws.c), with no authentication, no storage and no JSON: what this machine's loopback
 * and kernel allow a Parley-shaped server to do.
 *
 *   bare-relay [--port N] [--bind ADDR]
 *
 * Protocol (also spoken by bench/harness/ws-relay.js): after the WebSocket handshake the client
 * sends "id:NAME" and gets "ok"; then every text message "TO TEXT" is forwarded unchanged to the
 * connection that registered TO (dropped, and counted, when there is none). Stops on SIGINT or
 * SIGTERM, printing what it relayed. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "common/hmap.h"
#include "common/ws.h"

typedef struct rconn {
    uv_tcp_t tcp;
    uv_write_t wr;
    ws_t *ws;
    buf_t in;   /* handshake */
    buf_t wbuf; /* the write in flight */
    bool upgraded, writing, closed;
    char *name;
} rconn;

static uv_loop_t *loop;
static uv_tcp_t server;
static uv_signal_t sigint_h, sigterm_h;
static hmap_t names;
static char rbuf[256 * 1024];
static unsigned long long relayed, dropped;

static void flush(rconn *c);

static void on_closed(uv_handle_t *h)
{
    rconn *c = h->data;
    ws_free(c->ws);
    buf_free(&c->in);
    buf_free(&c->wbuf);
    free(c->name);
    free(c);
}

static void drop(rconn *c)
{
    if (c->closed) return;
    c->closed = true;
    if (c->name && hmap_get(&names, c->name) == c) hmap_del(&names, c->name);
    uv_close((uv_handle_t *)&c->tcp, on_closed);
}

static void on_write(uv_write_t *w, int status)
{
    rconn *c = w->data;
    c->writing = false;
    c->wbuf.len = 0;
    if (status < 0) {
        drop(c);
        return;
    }
    flush(c);
}

static void flush(rconn *c)
{
    if (c->writing || c->closed || !c->ws) return;
    buf_t *o = ws_out(c->ws);
    if (!o->len) return;
    uv_buf_t b = uv_buf_init((char *)o->data, (unsigned)o->len);
    int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (n == (int)o->len) {
        o->len = 0;
        return;
    }
    if (n < 0 && n != UV_EAGAIN) {
        drop(c);
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
        drop(c);
    }
}

static void on_text(void *ud, const char *m, size_t len)
{
    rconn *c = ud;
    if (!c->name) {
        if (len < 4 || memcmp(m, "id:", 3) != 0 || len > 200) {
            ws_close(c->ws, 1002, "register first with id:NAME");
            return;
        }
        c->name = strndup(m + 3, len - 3);
        hmap_put(&names, c->name, c);
        ws_send_text(c->ws, "ok", 2);
        return;
    }
    const char *sp = memchr(m, ' ', len);
    char to[128];
    size_t tl = sp ? (size_t)(sp - m) : 0;
    if (!sp || tl == 0 || tl >= sizeof to) {
        dropped++;
        return;
    }
    memcpy(to, m, tl);
    to[tl] = 0;
    rconn *d = hmap_get(&names, to);
    if (!d || d->closed) {
        dropped++;
        return;
    }
    ws_send_text(d->ws, m, len);
    flush(d);
    relayed++;
}

static const ws_handler handler = {.on_text = on_text};

static void on_alloc(uv_handle_t *h, size_t sug, uv_buf_t *b)
{
    (void)h;
    (void)sug;
    *b = uv_buf_init(rbuf, sizeof rbuf);
}

static void upgrade(rconn *c)
{
    buf_append(&c->in, "", 1);
    c->in.len--;
    char *d = (char *)c->in.data;
    char *end = strstr(d, "\r\n\r\n");
    if (!end) {
        if (c->in.len > 16384) drop(c);
        return;
    }
    char *k = strcasestr(d, "\r\nsec-websocket-key:");
    if (!k || k > end) {
        drop(c);
        return;
    }
    k += 20;
    while (*k == ' ') k++;
    size_t kl = strcspn(k, "\r\n ");
    char accept[29];
    ws_accept_key(accept, k, kl);
    size_t hl = (size_t)(end + 4 - d);
    c->ws = ws_new(true, 1 << 20, &handler, c);
    if (!c->ws) {
        drop(c);
        return;
    }
    buf_printf(ws_out(c->ws),
               "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
               accept);
    c->upgraded = true;
    if (c->in.len > hl) ws_feed(c->ws, c->in.data + hl, c->in.len - hl);
    buf_free(&c->in);
    flush(c);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    rconn *c = s->data;
    if (nread < 0) {
        drop(c);
        return;
    }
    if (!c->upgraded) {
        buf_append(&c->in, b->base, (size_t)nread);
        upgrade(c);
        return;
    }
    long k = ws_feed(c->ws, (const uint8_t *)b->base, (size_t)nread);
    flush(c);
    if (k < 0 || ws_closing(c->ws)) drop(c);
}

static void on_conn(uv_stream_t *srv, int status)
{
    if (status < 0) return;
    rconn *c = calloc(1, sizeof *c);
    if (!c) abort();
    uv_tcp_init(loop, &c->tcp);
    c->tcp.data = c;
    if (uv_accept(srv, (uv_stream_t *)&c->tcp) != 0) {
        uv_close((uv_handle_t *)&c->tcp, on_closed);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static void close_each(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, h->type == UV_TCP && h != (uv_handle_t *)&server ? on_closed : NULL);
}

static void on_signal(uv_signal_t *s, int sig)
{
    (void)s;
    (void)sig;
    fprintf(stderr, "bare-relay: relayed %llu, dropped %llu\n", relayed, dropped);
    uv_walk(loop, close_each, NULL);
}

int main(int argc, char **argv)
{
    int port = 9001;
    const char *bind_addr = "127.0.0.1";
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--port"))
            port = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--bind"))
            bind_addr = argv[i + 1];
        else {
            fprintf(stderr, "usage: bare-relay [--port N] [--bind ADDR]\n");
            return 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    loop = uv_default_loop();
    hmap_init(&names);
    struct sockaddr_in a;
    uv_ip4_addr(bind_addr, port, &a);
    uv_tcp_init(loop, &server);
    int rc = uv_tcp_bind(&server, (struct sockaddr *)&a, 0);
    if (rc == 0) rc = uv_listen((uv_stream_t *)&server, 4096, on_conn);
    if (rc != 0) {
        fprintf(stderr, "bare-relay: cannot listen on %s:%d: %s\n", bind_addr, port,
                uv_strerror(rc));
        return 1;
    }
    uv_signal_init(loop, &sigint_h);
    uv_signal_init(loop, &sigterm_h);
    uv_signal_start(&sigint_h, on_signal, SIGINT);
    uv_signal_start(&sigterm_h, on_signal, SIGTERM);
    fprintf(stderr, "bare-relay: listening on ws://%s:%d/\n", bind_addr, port);
    uv_run(loop, UV_RUN_DEFAULT);
    hmap_free(&names);
    return 0;
}
