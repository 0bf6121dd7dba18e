/* conn.c: accepting TCP connections and moving bytes on the I/O loop.
 *
 * A conn starts in HTTP mode; requests go to the router (api/router.c) one at a time, and an
 * upgrade on /v1/ws turns it into a WebSocket whose frames go to the inbound handler
 * (pipeline/inbound.c). Closing is graceful: queued bytes are written, FIN is sent, and the
 * socket is closed when the peer's FIN arrives or after a short linger, so a peer that is still
 * sending does not lose our close frame to a reset. The conn's memory lives until the handles are
 * closed and no job in flight refers to it (refs). Loop thread only. */
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "server/api/api.h"
#include "server/pipeline/pipeline.h"
#include "server/server.h"

#define LINGER_MS 2000

typedef struct write_req {
    uv_write_t req;
    conn_t *c;
    size_t len;
    uint8_t *data;
} write_req;

static void start_shutdown(conn_t *c);
static void close_now(conn_t *c);
static void alloc_cb(uv_handle_t *h, size_t size, uv_buf_t *b);
static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b);
static void dirty_remove(conn_t *c);

static void maybe_free(conn_t *c)
{
    if (c->handle_open || c->refs > 0 || c->tcp.data || c->timer.data) return;
    dirty_remove(c);
    http_in_free(&c->http);
    ws_free(c->ws);
    buf_free(&c->in);
    buf_free(&c->early);
    free(c);
}

static void on_handle_closed(uv_handle_t *h)
{
    conn_t *c = h->data ? h->data : NULL;
    h->data = NULL;
    if (c) maybe_free(c);
}

bool conn_alive(const conn_t *c)
{
    return c->handle_open && c->state != CONN_CLOSING;
}

void conn_ref(conn_t *c)
{
    c->refs++;
}

bool conn_unref(conn_t *c)
{
    c->refs--;
    bool alive = conn_alive(c);
    if (!c->handle_open && c->refs == 0) {
        /* handles already closed: tcp.data and timer.data were cleared by their callbacks */
        maybe_free(c);
    }
    return alive;
}

static void unlink_conn(conn_t *c)
{
    server_t *s = c->srv;
    if (c->prev_all)
        c->prev_all->next_all = c->next_all;
    else if (s->conns == c)
        s->conns = c->next_all;
    if (c->next_all) c->next_all->prev_all = c->prev_all;
    c->next_all = c->prev_all = NULL;
    s->nconns--;
}

static void close_now(conn_t *c)
{
    if (!c->handle_open) return;
    if (c->authed) session_remove(c);
    if (c->state != CONN_CLOSING) c->state = CONN_CLOSING;
    c->handle_open = false;
    unlink_conn(c);
    if (c->dirty) { /* its output is dropped with the socket */
        dirty_remove(c);
        c->queued -= c->out_counted;
        c->out_counted = 0;
        buf_free(ws_out(c->ws));
    }
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

static void on_linger(uv_timer_t *t)
{
    close_now(t->data);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    conn_t *c = req->data;
    free(req);
    if (status < 0 && c->handle_open) close_now(c);
    conn_unref(c);
}

static void start_shutdown(conn_t *c)
{
    if (c->shut || !c->handle_open) return;
    c->shut = true;
    uv_shutdown_t *req = malloc(sizeof *req);
    if (!req) abort();
    req->data = c;
    conn_ref(c);
    if (uv_shutdown(req, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
        free(req);
        c->refs--;
        close_now(c);
        return;
    }
    uv_timer_stop(&c->timer);
    uv_timer_start(&c->timer, on_linger, LINGER_MS, 0);
}

void conn_close(conn_t *c)
{
    if (!c->handle_open) return;
    if (c->state != CONN_CLOSING) {
        if (c->authed) session_remove(c);
        c->state = CONN_CLOSING;
    }
    c->close_after_write = true;
    if (c->queued == 0) {
        start_shutdown(c);
    } else if (!c->shut) {
        /* A peer that stops reading never lets the queue drain: give it the linger time, then
         * close anyway (pending writes are cancelled). */
        uv_timer_stop(&c->timer);
        uv_timer_start(&c->timer, on_linger, LINGER_MS, 0);
    }
}

static void on_write(uv_write_t *req, int status)
{
    write_req *w = (write_req *)req;
    conn_t *c = w->c;
    c->queued -= w->len;
    free(w->data);
    free(w);
    if (status < 0)
        close_now(c);
    else if (c->close_after_write && c->queued == 0)
        start_shutdown(c);
    else if (c->lagging && c->state == CONN_WS)
        outbound_drained(c);
    conn_unref(c);
}

/* Hands len bytes at data + off to uv_write; the write owns data (a malloc'd block) from now.
 * The bytes are already counted in c->queued. */
static void write_owned(conn_t *c, uint8_t *data, size_t off, size_t len)
{
    if (!c->handle_open || c->shut || len == 0) {
        c->queued -= len;
        free(data);
        return;
    }
    write_req *w = malloc(sizeof *w);
    if (!w) abort();
    w->c = c;
    w->len = len;
    w->data = data;
    uv_buf_t b = uv_buf_init((char *)data + off, (unsigned)len);
    conn_ref(c);
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0) {
        c->queued -= len;
        c->refs--;
        free(data);
        free(w);
        close_now(c);
    }
}

static void dirty_remove(conn_t *c)
{
    if (!c->dirty) return;
    server_t *s = c->srv;
    if (c->prev_dirty)
        c->prev_dirty->next_dirty = c->next_dirty;
    else
        s->dirty = c->next_dirty;
    if (c->next_dirty) c->next_dirty->prev_dirty = c->prev_dirty;
    c->next_dirty = c->prev_dirty = NULL;
    c->dirty = false;
}

/* Writes a conn's WebSocket output: as much as the socket takes now, the rest through uv_write
 * (which also keeps it behind any write still in flight). */
static void flush_one(conn_t *c)
{
    dirty_remove(c);
    if (!c->ws) return;
    buf_t *out = ws_out(c->ws);
    size_t len = out->len;
    c->queued +=
        len - c->out_counted; /* output not counted yet (none when it went through mark_dirty) */
    c->out_counted = 0;
    if (len == 0) {
        buf_free(out);
        return;
    }
    if (!c->handle_open || c->shut) { /* nothing more reaches this socket */
        c->queued -= len;
        buf_free(out);
        return;
    }
    uv_buf_t b = uv_buf_init((char *)out->data, (unsigned)len);
    int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (n < 0 && n != UV_EAGAIN) {
        c->queued -= len;
        buf_free(out);
        close_now(c);
        return;
    }
    size_t done = n > 0 ? (size_t)n : 0;
    c->queued -= done;
    if (done == len) {
        buf_free(out); /* an idle conn keeps no output buffer */
        if (c->close_after_write && c->queued == 0)
            start_shutdown(c);
        else if (c->lagging && c->state == CONN_WS)
            outbound_drained(c);
        return;
    }
    uint8_t *data = out->data;
    buf_init(out); /* the write owns the bytes now */
    write_owned(c, data, done, len - done);
}

static void flush_dirty(server_t *s)
{
    conn_t *c;
    while ((c = s->dirty)) flush_one(c);
}

static void on_flush_prepare(uv_prepare_t *h)
{
    flush_dirty(h->data);
}

static void on_flush_check(uv_check_t *h)
{
    flush_dirty(h->data);
}

/* Counts the WebSocket output produced since the last call and schedules its write. */
static void mark_dirty(conn_t *c)
{
    size_t len = ws_out(c->ws)->len;
    if (len <= c->out_counted) return;
    c->queued += len - c->out_counted;
    c->out_counted = len;
    if (c->dirty) return;
    server_t *s = c->srv;
    if (!s->flush_started) { /* before the loop runs or after shutdown: write through */
        flush_one(c);
        return;
    }
    c->dirty = true;
    c->prev_dirty = NULL;
    c->next_dirty = s->dirty;
    if (s->dirty) s->dirty->prev_dirty = c;
    s->dirty = c;
}

void conn_write(conn_t *c, const void *data, size_t len)
{
    if (c->dirty) flush_one(c); /* keep the byte order */
    if (!c->handle_open || c->shut || len == 0) return;
    uint8_t *copy = malloc(len);
    if (!copy) abort();
    memcpy(copy, data, len);
    c->queued += len;
    write_owned(c, copy, 0, len);
}

void conn_flush_ws(conn_t *c)
{
    if (!c->ws) return;
    mark_dirty(c);
    if (ws_closing(c->ws)) conn_close(c);
}

void conn_ws_send(conn_t *c, const char *frame, size_t len)
{
    if (!conn_alive(c) || c->state != CONN_WS) return;
    if (ws_send_text(c->ws, frame, len) == 0) conn_flush_ws(c);
}

void conn_ws_close(conn_t *c, uint16_t code, const char *reason)
{
    if (!conn_alive(c) || c->state != CONN_WS) return;
    ws_close(c->ws, code, reason);
    conn_flush_ws(c);
    conn_close(c);
}

void conn_read_pause(conn_t *c)
{
    if (!c->handle_open || c->read_paused) return;
    c->read_paused = true;
    uv_read_stop((uv_stream_t *)&c->tcp);
}

void conn_read_resume(conn_t *c)
{
    if (!c->read_paused) return;
    c->read_paused = false;
    if (c->handle_open) uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, on_read);
}

static void process_input(conn_t *c)
{
    while (!c->busy && c->in.len > 0 && c->state != CONN_CLOSING && c->handle_open) {
        if (c->state == CONN_HTTP) {
            size_t used;
            enum http_in_state st =
                http_in_feed(&c->http, (const char *)c->in.data, c->in.len, &used);
            buf_consume(&c->in, used);
            if (st == HTTP_IN_MORE) break;
            if (st == HTTP_IN_ERROR) {
                api_reply_error_close(c, c->http.err_status, c->http.err_code, c->http.err_msg);
                break;
            }
            api_dispatch(c);                                 /* may set busy, upgrade or close */
            if (c->state == CONN_WS) http_in_free(&c->http); /* the handshake was its last use */
        } else {
            long k = ws_feed(c->ws, c->in.data, c->in.len);
            if (k < 0) {
                buf_reset(&c->in);
                conn_flush_ws(c);
                conn_close(c);
                break;
            }
            buf_consume(&c->in, (size_t)k);
            conn_flush_ws(c);
            if (k == 0) {
                buf_reset(&c->in); /* the endpoint stopped reading (closing) */
                break;
            }
        }
    }
}

void conn_resume(conn_t *c)
{
    c->busy = false;
    process_input(c);
    if (c->in.len == 0) buf_free(&c->in);
}

static void alloc_cb(uv_handle_t *h, size_t size, uv_buf_t *b)
{
    (void)h;
    (void)size;
    static char chunk[65536]; /* one loop thread: every read lands here, then in c->in */
    b->base = chunk;
    b->len = sizeof chunk;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    conn_t *c = s->data;
    if (n < 0) {
        close_now(c);
        return;
    }
    if (n == 0) return;
    if (c->state == CONN_CLOSING) return; /* discarding until the peer's FIN */
    c->last_frame_at = mono_ms();
    /* Bounded: HTTP stops at max_header + max_body, WebSocket input is parsed as it comes. */
    if (c->in.len + (size_t)n > (size_t)(c->srv->cfg.max_header + c->srv->cfg.max_body) * 2) {
        close_now(c);
        return;
    }
    buf_append(&c->in, b->base, (size_t)n);
    process_input(c);
    if (c->in.len == 0) buf_free(&c->in); /* an idle conn keeps no input buffer */
}

static void on_idle(uv_timer_t *t)
{
    conn_t *c = t->data;
    int64_t idle = mono_ms() - c->last_frame_at;
    if (c->state == CONN_WS && !c->authed && !c->busy) { /* a check in flight decides itself */
        conn_ws_close(c, WS_CLOSE_POLICY, "no auth frame in time");
        return;
    }
    if (idle >= c->srv->cfg.idle_timeout && !c->busy) {
        if (c->state == CONN_WS)
            conn_ws_close(c, WS_CLOSE_GOING_AWAY, "idle");
        else
            conn_close(c);
    }
}

void conn_start_timer(conn_t *c, uint64_t first_ms)
{
    uint64_t period = (uint64_t)c->srv->cfg.idle_timeout / 4;
    uv_timer_stop(&c->timer);
    uv_timer_start(&c->timer, on_idle, first_ms, period);
}

static void on_connection(uv_stream_t *l, int status)
{
    server_t *s = l->data;
    if (status < 0) {
        log_warn("accept failed: %s", uv_strerror(status));
        return;
    }
    conn_t *c = calloc(1, sizeof *c);
    if (!c) abort();
    c->srv = s;
    c->id = ++s->next_conn_id;
    uv_tcp_init(s->loop, &c->tcp);
    uv_timer_init(s->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->handle_open = true;
    if (uv_accept(l, (uv_stream_t *)&c->tcp) != 0) {
        c->handle_open = false;
        uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
        uv_close((uv_handle_t *)&c->timer, on_handle_closed);
        return;
    }
    c->next_all = s->conns;
    if (s->conns) s->conns->prev_all = c;
    s->conns = c;
    s->nconns++;
    if (s->stopping) {
        close_now(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET6)
            uv_ip6_name((struct sockaddr_in6 *)&ss, c->ip, sizeof c->ip);
        else
            uv_ip4_name((struct sockaddr_in *)&ss, c->ip, sizeof c->ip);
    }
    http_in_init(&c->http, (size_t)s->cfg.max_header, (size_t)s->cfg.max_body);
    buf_init(&c->in);
    c->last_frame_at = mono_ms();
    conn_start_timer(c, (uint64_t)s->cfg.idle_timeout / 4);
    uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, on_read);
}

int conn_listen(server_t *s)
{
    struct sockaddr_storage addr;
    int rc;
    if (strchr(s->cfg.bind, ':'))
        rc = uv_ip6_addr(s->cfg.bind, (int)s->cfg.port, (struct sockaddr_in6 *)&addr);
    else
        rc = uv_ip4_addr(s->cfg.bind, (int)s->cfg.port, (struct sockaddr_in *)&addr);
    if (rc != 0) {
        log_error("bind address '%s' is not an IP address", s->cfg.bind);
        return -1;
    }
    uv_tcp_init(s->loop, &s->listener);
    s->listener.data = s;
    if ((rc = uv_tcp_bind(&s->listener, (struct sockaddr *)&addr, 0)) != 0 ||
        (rc = uv_listen((uv_stream_t *)&s->listener, 4096, on_connection)) != 0) {
        log_error("cannot listen on %s:%lld: %s", s->cfg.bind, (long long)s->cfg.port,
                  uv_strerror(rc));
        return -1;
    }
    /* WebSocket output is written once per loop iteration: after the I/O callbacks (check) and
     * after the timers and deferred write callbacks (prepare, before the loop waits). Neither
     * handle keeps the loop alive. */
    uv_prepare_init(s->loop, &s->flush_prepare);
    uv_check_init(s->loop, &s->flush_check);
    s->flush_prepare.data = s->flush_check.data = s;
    uv_prepare_start(&s->flush_prepare, on_flush_prepare);
    uv_check_start(&s->flush_check, on_flush_check);
    uv_unref((uv_handle_t *)&s->flush_prepare);
    uv_unref((uv_handle_t *)&s->flush_check);
    s->flush_started = true;
    return 0;
}

void conn_close_all(server_t *s)
{
    for (conn_t *c = s->conns, *n; c; c = n) {
        n = c->next_all;
        if (c->state == CONN_WS)
            conn_ws_close(c, WS_CLOSE_GOING_AWAY, "server shutting down");
        else if (!c->busy)
            conn_close(c);
    }
    /* The close frames go out now; from here on WebSocket output is written at once. */
    flush_dirty(s);
    if (s->flush_started) {
        s->flush_started = false;
        uv_close((uv_handle_t *)&s->flush_prepare, NULL);
        uv_close((uv_handle_t *)&s->flush_check, NULL);
    }
}
