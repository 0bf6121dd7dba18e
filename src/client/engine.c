/* engine.c: the I/O thread. One WebSocket to one server at a time, driven by poll(2).
 *
 * Why poll and not libuv: the thread watches two descriptors (the socket and a wake eventfd) and
 * a handful of timers; a plain loop says what it does in one page and keeps libparley free of a
 * second event loop inside applications that may run their own.
 *
 * The life of a connection:
 *   IDLE    waiting for next_at (backoff), state OFFLINE
 *   TCP     non-blocking connect to servers[server]              \
 *   UPGRADE HTTP upgrade sent, waiting for 101                    } state CONNECTING, one deadline
 *   AUTH    {"type":"auth"} sent, waiting for ready              /
 *   SYNC    sync pages from the stored position until more:false  state SYNCING
 *   LIVE    live msg frames; the outbox flows                     state ONLINE
 *   DEAD    the server refused the token (close 4001): no more attempts, state UNAUTHORIZED
 * A failed attempt moves to the next server at once; a full round of failures waits
 * backoff_min * 2^(rounds-1) (capped at backoff_max), jittered into [d/2, d]. A connection that
 * was up and then broke retries the same server after a short jittered delay.
 *
 * What it owns: its own SQLite connection, the socket, the ws endpoint, the cursor (pos) and the
 * outbox window. Received messages of one read are stored in one transaction, together with the
 * new cursor; only after the commit are the events queued and `recv` sent, so an event or an
 * acknowledged position always means "on disk".
 *
 * The outbox: rows in state pending, in local_id order. On each LIVE connection they are sent
 * from the first, at most WINDOW unacknowledged, paced by a token bucket kept below the server's
 * rate limit. An ack moves the row to sent; a rate_limited or internal error rewinds the window
 * to that row and pauses (the same cmid is resent, so the server makes no second message); any
 * other refusal marks the row failed. Known limit: if the server rate-limits one message and
 * accepts the next one already in flight, those two are committed out of order; the pacing makes
 * that unlikely, and WINDOW can be set to 1 where order matters more than speed.
 */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client/internal.h"
#include "common/buf.h"
#include "common/util.h"
#include "common/ws.h"

#define WINDOW       32 /* unacknowledged sends on the wire */
#define RATE_PER_S   80 /* client-side pacing, under the server's 100/s */
#define RATE_BURST   100
#define SYNC_LIMIT   500   /* the protocol's maximum page */
#define PING_IDLE_MS 20000 /* ping after this long without a byte from the server */
#define PING_WAIT_MS 10000 /* and give up on the connection if nothing comes back */
#define MAX_WS_MSG   (4 << 20)

typedef enum { IO_IDLE, IO_TCP, IO_UPGRADE, IO_AUTH, IO_SYNC, IO_LIVE, IO_DEAD } io_phase;

typedef struct io {
    pl_client *c;
    sqlite3 *db;
    char me[ID_MAX], mydev[ID_MAX];
    char *token;

    io_phase phase;
    int server;
    int failures;     /* attempts failed in a row */
    int64_t next_at;  /* IDLE: when to try */
    int64_t deadline; /* TCP..AUTH: when to give up */
    char url[512];

    int fd;
    ws_t *ws;
    buf_t in;
    buf_t hs; /* the upgrade request while it is being written */
    char key[32];

    int64_t pos;       /* the cursor in the store */
    int64_t pos_saved; /* the cursor as written to meta */
    int64_t recv_sent; /* the last recv upto sent on this connection */
    bool in_tx;
    bool tx_failed;
    pl_event *evs; /* events waiting for the commit */
    size_t nevs, capevs;
    int64_t synced_count;
    int sync_n;

    int64_t sent_upto; /* outbox rows up to here went out on this connection */
    int inflight;
    bool outbox_more;
    double tokens;
    int64_t tokens_at;
    int64_t pause_until;

    int64_t last_rx;
    bool ping_out;
    int64_t ping_sent_at;

    bool want_convs;            /* fetch GET /v1/convs once the read batch is committed */
    bool want_opks;             /* prekeys_low came: upload more OPKs after the batch */
    bool want_spk;              /* check the signed prekey's age after the batch */
    bool want_retry;            /* RETRYs are queued: build their outbox rows after the batch */
    bool want_reads;            /* read markers set while offline: send them after the batch */
    int64_t stale_id[WINDOW];   /* e2e rows refused with device_list_stale, to rebuild */
    json_t *stale_devs[WINDOW]; /* and the server's device lists */
    int nstale;
    int64_t stale_last; /* the row rebuilt last and how often in a row */
    int stale_tries;
    pl_presence presence_sent; /* on this connection (ONLINE is what the server assumes) */
} io;

void pl__engine_wake(pl_client *c)
{
    uint64_t one = 1;
    ssize_t k = write(c->wake_fd, &one, sizeof one);
    (void)k;
}

/* ------------------------------------------------------------------------------- events */

static void defer_event(io *s, pl_event *ev)
{
    if (s->nevs == s->capevs) {
        s->capevs = s->capevs ? s->capevs * 2 : 64;
        pl_event *p = realloc(s->evs, s->capevs * sizeof *p);
        if (!p) abort();
        s->evs = p;
    }
    s->evs[s->nevs++] = *ev;
    memset(ev, 0, sizeof *ev);
}

static void flush_events(io *s)
{
    for (size_t i = 0; i < s->nevs; i++) pl__ev_push(s->c, &s->evs[i]);
    s->nevs = 0;
}

static void drop_events(io *s)
{
    for (size_t i = 0; i < s->nevs; i++) pl_event_clear(&s->evs[i]);
    s->nevs = 0;
}

static void set_state(io *s, io_phase p)
{
    s->phase = p;
    static const pl_state map[] = {
        [IO_IDLE] = PL_STATE_OFFLINE,       [IO_TCP] = PL_STATE_CONNECTING,
        [IO_UPGRADE] = PL_STATE_CONNECTING, [IO_AUTH] = PL_STATE_CONNECTING,
        [IO_SYNC] = PL_STATE_SYNCING,       [IO_LIVE] = PL_STATE_ONLINE,
        [IO_DEAD] = PL_STATE_UNAUTHORIZED};
    pl__ev_state(s->c, map[p]);
}

/* ---------------------------------------------------------------------------- the store */

static bool tx_begin(io *s)
{
    if (s->in_tx) return true;
    if (pl__store_begin(s->db) != 0) {
        s->tx_failed = true;
        return false;
    }
    s->in_tx = true;
    return true;
}

/* Ends the batch: the cursor, the commit, then the events. False when the store failed. */
static bool tx_end(io *s)
{
    if (!s->in_tx) {
        bool ok = !s->tx_failed;
        s->tx_failed = false;
        if (ok)
            flush_events(s);
        else
            drop_events(s);
        return ok;
    }
    s->in_tx = false;
    bool ok = !s->tx_failed;
    if (ok && s->pos != s->pos_saved && pl__meta_set_int(s->db, "pos", s->pos) != 0) ok = false;
    if (ok && pl__store_commit(s->db) != 0) ok = false;
    if (!ok) {
        pl__store_rollback(s->db);
        drop_events(s);
        s->pos = s->pos_saved; /* what the store really holds */
        s->tx_failed = false;
        pl__ev_error(s->c, PL_ESTORE, "the device store could not be written; reconnecting");
        return false;
    }
    s->pos_saved = s->pos;
    flush_events(s);
    return true;
}

/* ------------------------------------------------------------------------------ sending */

static void send_json(io *s, json_t *j)
{
    char *t = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!t) abort();
    if (s->ws) ws_send_text(s->ws, t, strlen(t));
    free(t);
}

static void send_sync(io *s, int64_t after)
{
    char id[32];
    snprintf(id, sizeof id, "s%d", ++s->sync_n);
    send_json(s, json_pack("{s:s, s:s, s:I, s:i}", "type", "sync", "id", id, "after",
                           (json_int_t)after, "limit", SYNC_LIMIT));
}

static void send_recv(io *s)
{
    if (s->pos <= s->recv_sent || (s->phase != IO_SYNC && s->phase != IO_LIVE)) return;
    send_json(s, json_pack("{s:s, s:I}", "type", "recv", "upto", (json_int_t)s->pos));
    s->recv_sent = s->pos;
}

static void refill(io *s, int64_t now)
{
    s->tokens += (double)(now - s->tokens_at) * RATE_PER_S / 1000.0;
    if (s->tokens > RATE_BURST) s->tokens = RATE_BURST;
    s->tokens_at = now;
}

static void send_read(void *ud, const char *conv, int64_t upto)
{
    send_json(ud,
              json_pack("{s:s, s:s, s:I}", "type", "read", "conv", conv, "upto", (json_int_t)upto));
}

/* Read markers moved by the application since they were last sent. Known limit: a marker is
 * recorded as sent when the frame is queued, so one lost with a dying connection is not sent
 * again until the marker moves once more (the server has no answer to `read`). */
static void send_reads(io *s)
{
    if (s->phase != IO_LIVE) return;
    if (pl__store_take_reads(s->db, send_read, s) != 0)
        pl__ev_error(s->c, PL_ESTORE, "the read markers could not be read from the store");
}

/* The presence the application wants, when it differs from what this connection said. */
static void send_presence(io *s)
{
    if (s->phase != IO_LIVE) return;
    pthread_mutex_lock(&s->c->mu);
    pl_presence want = s->c->presence;
    pthread_mutex_unlock(&s->c->mu);
    if (want == s->presence_sent) return;
    send_json(s, json_pack("{s:s, s:s}", "type", "presence", "status",
                           want == PL_PRESENCE_AWAY ? "away" : "online"));
    s->presence_sent = want;
}

/* Ephemeral frames from the application (typing): sent when live, dropped otherwise. */
static void send_frames(io *s)
{
    pthread_mutex_lock(&s->c->mu);
    pl__frame *f = s->c->fr_head;
    s->c->fr_head = s->c->fr_tail = NULL;
    pthread_mutex_unlock(&s->c->mu);
    while (f) {
        pl__frame *next = f->next;
        if (s->phase == IO_LIVE && s->ws) ws_send_text(s->ws, f->text, strlen(f->text));
        free(f->text);
        free(f);
        f = next;
    }
}

/* Sends what the window and the pacing allow of the outbox. */
static void pump_outbox(io *s)
{
    if (s->phase != IO_LIVE) return;
    int64_t now = mono_ms();
    if (now < s->pause_until) return;
    refill(s, now);
    s->outbox_more = false;
    while (s->inflight < WINDOW && s->tokens >= 1) {
        int want = WINDOW - s->inflight;
        if (want > (int)s->tokens) want = (int)s->tokens;
        pl_msg *rows;
        size_t n;
        if (pl__store_outbox(s->db, s->sent_upto, want, true, &rows, &n) != 0) {
            pl__ev_error(s->c, PL_ESTORE, "the outbox could not be read");
            return;
        }
        for (size_t i = 0; i < n; i++) {
            pl_msg *m = &rows[i];
            char id[32];
            snprintf(id, sizeof id, "o%lld", (long long)m->local_id);
            char *wire = pl__store_wire(s->db, m->local_id); /* e2e: the stored ciphertexts */
            json_t *body = json_loads(wire ? wire : m->body, 0, NULL);
            json_t *f = json_pack("{s:s, s:s, s:s, s:s, s:s, s:o}", "type", "send", "id", id, "to",
                                  m->to, "cmid", m->cmid, "kind", wire ? "e2e" : m->kind, "body",
                                  body ? body : json_object());
            free(wire);
            if (m->reply_to > 0) json_object_set_new(f, "reply_to", json_integer(m->reply_to));
            send_json(s, f);
            s->sent_upto = m->local_id;
            s->inflight++;
            s->tokens -= 1;
        }
        pl_msgs_free(rows, n);
        if ((int)n < want) return; /* the outbox is empty past sent_upto */
    }
    s->outbox_more = true; /* stopped by the window or the pacing, not by an empty outbox */
}

/* ------------------------------------------------------------------------ the connection */

static void close_socket(io *s)
{
    if (s->fd >= 0) close(s->fd);
    s->fd = -1;
    ws_free(s->ws);
    s->ws = NULL;
    buf_reset(&s->in);
    buf_reset(&s->hs);
}

static int64_t jitter(int64_t d)
{
    if (d <= 1) return d;
    return d / 2 + (int64_t)randombytes_uniform((uint32_t)(d / 2 + 1));
}

/* The connection ended or an attempt failed. why is for people. */
static void drop(io *s, int err, const char *why)
{
    pl_client *c = s->c;
    bool was_up = s->phase == IO_SYNC || s->phase == IO_LIVE;
    uint16_t code = s->ws ? ws_peer_close_code(s->ws) : 0;
    if (s->in_tx) tx_end(s);
    close_socket(s);
    s->inflight = 0;
    s->sent_upto = 0;
    s->ping_out = false;
    s->want_convs = false;
    s->presence_sent = PL_PRESENCE_ONLINE;
    for (int i = 0; i < s->nstale; i++) json_decref(s->stale_devs[i]);
    s->nstale = 0; /* resent as they are; refused again on the next connection if still stale */
    if (code == WS_CLOSE_UNAUTH) {
        pl__ev_error(c, PL_ETOKEN,
                     "the server refused this device's session (closed with "
                     "4001): log in again");
        set_state(s, IO_DEAD);
        return;
    }
    char text[700];
    snprintf(text, sizeof text, "%s: %s", s->url, why);
    pl__ev_error(c, err, text);
    int64_t now = mono_ms();
    pthread_mutex_lock(&c->mu);
    int n = (int)c->nservers;
    pthread_mutex_unlock(&c->mu);
    if (was_up) {
        s->failures = 0;
        s->next_at = now + jitter(c->backoff_min_ms);
    } else {
        s->failures++;
        s->server = (s->server + 1) % n;
        if (s->failures % n != 0) {
            s->next_at = now; /* another server may be fine: try it at once */
        } else {
            int rounds = s->failures / n;
            int64_t d = c->backoff_min_ms;
            for (int i = 1; i < rounds && d < c->backoff_max_ms; i++) d *= 2;
            if (d > c->backoff_max_ms) d = c->backoff_max_ms;
            s->next_at = now + jitter(d);
        }
    }
    set_state(s, IO_IDLE);
}

static void start_attempt(io *s)
{
    pl_client *c = s->c;
    pthread_mutex_lock(&c->mu);
    if (s->server >= (int)c->nservers) s->server = 0;
    snprintf(s->url, sizeof s->url, "%s", c->servers[s->server]);
    pthread_mutex_unlock(&c->mu);
    set_state(s, IO_TCP);
    s->deadline = mono_ms() + c->connect_timeout_ms;
    pl__url u;
    if (pl__url_parse(s->url, &u) != 0) {
        drop(s, PL_EINVAL, "not a server URL");
        return;
    }
    /* getaddrinfo blocks, but only this thread, and only for the time of a name look-up. */
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    int rc = getaddrinfo(u.host, u.port, &hints, &res);
    if (rc != 0) {
        drop(s, PL_ENET, gai_strerror(rc));
        return;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, res->ai_addr, res->ai_addrlen) != 0 && errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        fd = -1;
        errno = e;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        drop(s, PL_ENET, strerror(errno));
        return;
    }
    s->fd = fd;
    /* the upgrade request, written once the TCP connection is up */
    uint8_t nonce[16];
    randombytes_buf(nonce, sizeof nonce);
    sodium_bin2base64(s->key, sizeof s->key, nonce, sizeof nonce, sodium_base64_VARIANT_ORIGINAL);
    buf_reset(&s->hs);
    buf_printf(&s->hs,
               "GET %s/v1/ws HTTP/1.1\r\nHost: %s:%s\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
               "User-Agent: libparley/" PL_VERSION "\r\n\r\n",
               u.prefix, u.host, u.port, s->key);
}

static void on_text(void *ud, const char *msg, size_t len);

/* The 101 answer is complete in s->in: check it and switch to WebSocket. */
static void upgrade_done(io *s, size_t head_len)
{
    char accept[29];
    ws_accept_key(accept, s->key, strlen(s->key));
    char *head = strndup((const char *)s->in.data, head_len);
    if (!head) abort();
    bool ok = strncmp(head, "HTTP/1.1 101", 12) == 0 && strstr(head, accept);
    if (!ok) {
        char why[160];
        char *eol = strstr(head, "\r\n");
        if (eol) *eol = 0;
        snprintf(why, sizeof why, "the WebSocket upgrade was refused (%.100s)", head);
        free(head);
        drop(s, PL_EPROTO, why);
        return;
    }
    free(head);
    buf_consume(&s->in, head_len);
    ws_handler h = {.on_text = on_text};
    s->ws = ws_new(false, MAX_WS_MSG, &h, s);
    if (!s->ws) abort();
    set_state(s, IO_AUTH);
    send_json(s, json_pack("{s:s, s:s}", "type", "auth", "token", s->token));
}

/* --------------------------------------------------------------------- server frames */

static int64_t id_number(const char *id, char prefix)
{
    if (!id || id[0] != prefix) return 0;
    char *end;
    long long v = strtoll(id + 1, &end, 10);
    return *end == 0 && v > 0 ? v : 0;
}

static void on_msg(io *s, json_t *f)
{
    if (!tx_begin(s)) return;
    pl_event ev = {0};
    const char *kind = json_string_value(json_object_get(f, "kind"));
    const char *from = json_string_value(json_object_get(f, "from"));
    const char *dev = json_string_value(json_object_get(f, "dev"));
    json_t *plain = NULL;
    bool e2e = kind && strcmp(kind, "e2e") == 0;
    bool own = from && dev && strcmp(from, s->me) == 0 && strcmp(dev, s->mydev) == 0;
    if (e2e && own && json_is_true(json_object_get(json_object_get(f, "body"), "ctl"))) {
        /* this device's own RETRY came back: never a message */
        const char *cmid = json_string_value(json_object_get(f, "cmid"));
        if (cmid && pl__store_ctl_done(s->db, dev, cmid) != 0) s->tx_failed = true;
        int64_t p = json_integer_value(json_object_get(f, "pos"));
        if (p > s->pos) s->pos = p;
        return;
    }
    if (e2e && from && dev && !own) {
        /* decrypted inside this transaction: the new ratchet state commits with the message */
        bool changed = false, retry = false;
        plain = pl__e2e_receive(s->c, s->db, s->me, f, &changed, &retry);
        if (retry) s->want_retry = true;
        if (changed) {
            pl_event ch = {.kind = PL_EV_IDENTITY_CHANGED};
            snprintf(ch.user, sizeof ch.user, "%s", from);
            defer_event(s, &ch);
        }
        if (!plain) { /* a control message: nothing to show */
            int64_t p = json_integer_value(json_object_get(f, "pos"));
            if (p > s->pos) s->pos = p;
            return;
        }
        f = plain;
    }
    int r = pl__store_incoming(s->db, s->me, s->mydev, f, &ev.msg);
    int64_t pos = json_integer_value(json_object_get(f, "pos"));
    json_decref(plain);
    if (r < 0) {
        pl_msg_clear(&ev.msg);
        if (r == PL_EPROTO) {
            pl__ev_error(s->c, PL_EPROTO, "the server sent a malformed msg frame");
            return;
        }
        s->tx_failed = true;
        return;
    }
    /* positions come in order with no gaps (protocol.md); a repeat is never behind */
    if (pos > s->pos) s->pos = pos;
    if (r == PL__IN_DUP) {
        pl_msg_clear(&ev.msg);
        return;
    }
    ev.kind = r == PL__IN_NEW ? PL_EV_MESSAGE : PL_EV_ACK;
    if (r == PL__IN_NEW) s->synced_count++;
    bool system = r == PL__IN_NEW && strcmp(ev.msg.kind, "system") == 0;
    char conv[PL_ID_MAX];
    snprintf(conv, sizeof conv, "%s", ev.msg.conv);
    defer_event(s, &ev);
    if (system) { /* a group's name or members changed */
        pl__e2e_on_system(s->db, conv, json_object_get(f, "body"));
        pl_event ch = {.kind = PL_EV_CONV_CHANGED};
        snprintf(ch.conv, sizeof ch.conv, "%s", conv);
        defer_event(s, &ch);
    }
}

static void on_ack(io *s, json_t *f)
{
    int64_t id = id_number(json_string_value(json_object_get(f, "id")), 'o');
    const char *conv = json_string_value(json_object_get(f, "conv"));
    json_t *seq = json_object_get(f, "seq");
    if (!id || !conv || !json_is_integer(seq)) return;
    if (s->inflight > 0) s->inflight--;
    if (!tx_begin(s)) return;
    pl_event ev = {.kind = PL_EV_ACK};
    int r = pl__store_ack(s->db, id, conv, json_integer_value(seq),
                          json_integer_value(json_object_get(f, "ts")), &ev.msg);
    if (r < 0) s->tx_failed = true;
    if (r == 1)
        defer_event(s, &ev);
    else
        pl_msg_clear(&ev.msg);
}

static void on_error(io *s, json_t *f)
{
    const char *id = json_string_value(json_object_get(f, "id"));
    const char *code = json_string_value(json_object_get(f, "code"));
    const char *msg = json_string_value(json_object_get(f, "message"));
    int err = pl__map_error(0, code);
    int64_t local = id_number(id, 'o');
    if (!local) {
        char text[600];
        snprintf(text, sizeof text, "the server refused a request: %s (%s)",
                 msg ? msg : "no reason given", code ? code : "?");
        pl__ev_error(s->c, err, text);
        return;
    }
    if (s->inflight > 0) s->inflight--;
    if (err != PL_ERATE && err != PL_ESERVER) {
        /* a refused RETRY is dropped without a word: the next failure asks again */
        if (!tx_begin(s)) return;
        int r = pl__store_ctl_drop(s->db, local);
        if (r < 0) s->tx_failed = true;
        if (r != 0) return;
    }
    if (code && strcmp(code, "device_list_stale") == 0 && s->nstale < WINDOW) {
        /* rebuilt with the server's list once this batch is stored, then sent again */
        s->stale_id[s->nstale] = local;
        s->stale_devs[s->nstale++] = json_incref(json_object_get(f, "devices"));
        if (local - 1 < s->sent_upto) s->sent_upto = local - 1;
        return;
    }
    if (err == PL_ERATE || err == PL_ESERVER) {
        /* Not stored: resend this one and those after it, with the same cmids, later. */
        json_int_t ms = json_integer_value(json_object_get(f, "retry_after"));
        int64_t until = mono_ms() + (ms > 0 ? ms : 1000);
        if (until > s->pause_until) s->pause_until = until;
        if (local - 1 < s->sent_upto) s->sent_upto = local - 1;
        s->tokens = 0;
        return;
    }
    if (!tx_begin(s)) return;
    pl_event ev = {.kind = PL_EV_MSG_FAILED, .error = err};
    if (pl__store_fail(s->db, local, &ev.msg) != 0) {
        pl_msg_clear(&ev.msg);
        return;
    }
    char text[600];
    snprintf(text, sizeof text, "%s", msg ? msg : pl_strerror(err));
    ev.text = strdup(text);
    defer_event(s, &ev);
}

/* The rows refused with device_list_stale: new e2e bodies, or failed after 3 tries in a row. */
static void rebuild_stale(io *s)
{
    for (int i = 0; i < s->nstale; i++) {
        int64_t id = s->stale_id[i];
        s->stale_tries = id == s->stale_last ? s->stale_tries + 1 : 1;
        s->stale_last = id;
        int err = s->stale_tries > 3
                      ? PL_EREFUSED
                      : pl__e2e_rebuild(s->c, s->db, s->url, s->token, s->me, id, s->stale_devs[i]);
        json_decref(s->stale_devs[i]);
        if (err == 0) continue;
        pl_event ev = {.kind = PL_EV_MSG_FAILED, .error = err};
        if (pl__store_fail(s->db, id, &ev.msg) != 0) {
            pl_msg_clear(&ev.msg);
            continue;
        }
        ev.text = strdup("the recipient's devices changed and the message could not be "
                         "encrypted for them");
        pl__ev_push(s->c, &ev);
    }
    s->nstale = 0;
}

static void on_synced(io *s, json_t *f)
{
    int64_t upto = json_integer_value(json_object_get(f, "upto"));
    /* every entry up to upto was sent before this frame and stored above */
    if (upto > s->pos) s->pos = upto;
    if (json_is_true(json_object_get(f, "more"))) {
        send_sync(s, s->pos);
        return;
    }
    if (s->phase == IO_SYNC) {
        s->failures = 0;
        pl_event ev = {.kind = PL_EV_SYNCED, .count = s->synced_count, .pos = s->pos};
        s->synced_count = 0;
        if (tx_begin(s)) defer_event(s, &ev);
        set_state(s, IO_LIVE);
        s->pause_until = 0;
        pump_outbox(s);
        s->want_reads = true; /* own transaction: once this batch is committed */
        send_presence(s);
        s->want_convs = true; /* receipts are not replayed: read the markers from the list */
        s->want_spk = true;
        s->want_retry = true; /* RETRYs queued before this connection */
    }
}

/* GET /v1/convs from the server of this connection, merged into the store: markers of peers
 * that moved while this device was away, unread counts, new groups. It blocks this thread
 * for one REST call (rest_timeout_ms at most) after each sync that made the connection live;
 * frames that come meanwhile wait in the socket. */
static void fetch_convs(io *s)
{
    s->want_convs = false;
    long status;
    json_t *resp = NULL;
    int err = pl__rest_at(s->c, s->url, "GET", "/v1/convs", s->token, NULL, &status, &resp);
    pl__merge *m = NULL;
    size_t n = 0;
    if (err == 0) err = pl__store_convs_merge(s->db, s->me, json_object_get(resp, "convs"), &m, &n);
    json_decref(resp);
    if (err) {
        pl__ev_error(s->c, err, "the conversation list could not be read from the server");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (m[i].peer && (m[i].delivered_moved || m[i].read_moved)) {
            pl_event ev = {.kind = PL_EV_RECEIPT,
                           .seq = m[i].read_moved ? m[i].read : m[i].delivered,
                           .status = m[i].read_moved ? PL_MSG_READ : PL_MSG_DELIVERED};
            snprintf(ev.conv, sizeof ev.conv, "%s", m[i].conv);
            snprintf(ev.user, sizeof ev.user, "%s", m[i].user);
            pl__ev_push(s->c, &ev);
        }
        pl_event ev = {.kind = PL_EV_CONV_CHANGED};
        snprintf(ev.conv, sizeof ev.conv, "%s", m[i].conv);
        pl__ev_push(s->c, &ev);
    }
    free(m);
}

static void on_receipt(io *s, json_t *f)
{
    const char *conv = json_string_value(json_object_get(f, "conv"));
    const char *user = json_string_value(json_object_get(f, "user"));
    int64_t delivered = json_integer_value(json_object_get(f, "delivered"));
    int64_t read = json_integer_value(json_object_get(f, "read"));
    if (!conv || !user || (!delivered && !read)) return;
    if (!tx_begin(s)) return;
    int r = pl__store_receipt(s->db, s->me, conv, user, delivered, read);
    if (r < 0) s->tx_failed = true;
    if (r != 1) return;
    pl_event ev = {.kind = PL_EV_RECEIPT,
                   .seq = read ? read : delivered,
                   .status = read ? PL_MSG_READ : PL_MSG_DELIVERED};
    snprintf(ev.conv, sizeof ev.conv, "%s", conv);
    snprintf(ev.user, sizeof ev.user, "%s", user);
    defer_event(s, &ev);
}

static void on_presence(io *s, json_t *f)
{
    const char *user = json_string_value(json_object_get(f, "user"));
    const char *st = json_string_value(json_object_get(f, "status"));
    if (!user || !st) return;
    pl_event ev = {.kind = PL_EV_PRESENCE,
                   .presence = strcmp(st, "online") == 0 ? PL_PRESENCE_ONLINE
                               : strcmp(st, "away") == 0 ? PL_PRESENCE_AWAY
                                                         : PL_PRESENCE_OFFLINE,
                   .last_seen_at = json_integer_value(json_object_get(f, "last_seen_at"))};
    snprintf(ev.user, sizeof ev.user, "%s", user);
    defer_event(s, &ev);
}

static void on_typing(io *s, json_t *f)
{
    const char *conv = json_string_value(json_object_get(f, "conv"));
    const char *user = json_string_value(json_object_get(f, "user"));
    if (!conv || !user) return;
    pl_event ev = {.kind = PL_EV_TYPING, .typing = json_is_true(json_object_get(f, "on"))};
    snprintf(ev.conv, sizeof ev.conv, "%s", conv);
    snprintf(ev.user, sizeof ev.user, "%s", user);
    defer_event(s, &ev);
}

static void on_event_frame(io *s, json_t *f)
{
    const char *e = json_string_value(json_object_get(f, "event"));
    const char *user = json_string_value(json_object_get(f, "user"));
    if (e && strcmp(e, "prekeys_low") == 0) s->want_opks = s->want_spk = true;
    if (!e || !user) return;
    pl_event ev = {.kind = PL_EV_CONTACT};
    if (strcmp(e, "contact_invited") == 0)
        ev.contact = PL_CONTACT_INCOMING;
    else if (strcmp(e, "contact_accepted") == 0)
        ev.contact = PL_CONTACT_FRIEND;
    else if (strcmp(e, "contact_removed") == 0)
        ev.contact = PL_CONTACT_NONE;
    else
        return;
    snprintf(ev.user, sizeof ev.user, "%s", user);
    defer_event(s, &ev);
}

static void on_text(void *ud, const char *msg, size_t len)
{
    io *s = ud;
    json_t *f = json_loadb(msg, len, 0, NULL);
    const char *type = json_string_value(json_object_get(f, "type"));
    if (!type) {
        pl__ev_error(s->c, PL_EPROTO, "the server sent a frame that is not a JSON object");
    } else if (strcmp(type, "msg") == 0) {
        on_msg(s, f);
    } else if (strcmp(type, "ack") == 0) {
        on_ack(s, f);
    } else if (strcmp(type, "synced") == 0) {
        on_synced(s, f);
    } else if (strcmp(type, "error") == 0) {
        on_error(s, f);
    } else if (strcmp(type, "ready") == 0 && s->phase == IO_AUTH) {
        set_state(s, IO_SYNC);
        s->synced_count = 0;
        s->recv_sent = 0;
        send_sync(s, s->pos);
    } else if (strcmp(type, "pong") == 0) {
        s->ping_out = false;
    } else if (strcmp(type, "receipt") == 0) {
        on_receipt(s, f);
    } else if (strcmp(type, "presence") == 0) {
        on_presence(s, f);
    } else if (strcmp(type, "typing") == 0) {
        on_typing(s, f);
    } else if (strcmp(type, "event") == 0) {
        on_event_frame(s, f);
    }
    /* frames of later protocol versions are ignored */
    json_decref(f);
}

/* ---------------------------------------------------------------------------- socket I/O */

static buf_t *out_buf(io *s)
{
    return s->ws ? ws_out(s->ws) : &s->hs;
}

/* Writes what the socket takes. False when the connection broke. */
static bool flush_out(io *s)
{
    buf_t *b = out_buf(s);
    while (b->len > 0) {
        ssize_t k = send(s->fd, b->data, b->len, MSG_NOSIGNAL);
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return false;
        buf_consume(b, (size_t)k);
    }
    return true;
}

static void on_readable(io *s)
{
    char chunk[65536];
    for (;;) {
        ssize_t k = recv(s->fd, chunk, sizeof chunk, 0);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        if (k <= 0) {
            /* what arrived before the end is still worth storing */
            if (s->ws && s->in.len) ws_feed(s->ws, s->in.data, s->in.len);
            if (s->in_tx) tx_end(s);
            drop(s, PL_ENET, k == 0 ? "the server closed the connection" : strerror(errno));
            return;
        }
        buf_append(&s->in, chunk, (size_t)k);
        s->last_rx = mono_ms();
        s->ping_out = false;
        if ((size_t)k < sizeof chunk) break;
    }
    if (!s->ws) {
        buf_append(&s->in, "", 1);
        s->in.len--;
        char *end = strstr((char *)s->in.data, "\r\n\r\n");
        if (!end) {
            if (s->in.len > 16384) drop(s, PL_EPROTO, "the upgrade answer is too long");
            return;
        }
        upgrade_done(s, (size_t)(end + 4 - (char *)s->in.data));
        if (!s->ws) return;
    }
    if (s->in.len) {
        long k = ws_feed(s->ws, s->in.data, s->in.len);
        buf_consume(&s->in, k > 0 ? (size_t)k : s->in.len);
    }
    bool stored = tx_end(s);
    if (!stored) {
        drop(s, PL_ESTORE, "the device store failed");
        return;
    }
    send_recv(s);
    if (s->want_reads) {
        s->want_reads = false;
        send_reads(s);
    }
    if (s->nstale) rebuild_stale(s);
    if (s->want_retry && s->phase == IO_LIVE) {
        s->want_retry = false;
        pl__e2e_retries(s->c, s->db, s->url, s->token, s->me, s->mydev);
    }
    pump_outbox(s);
    if (s->want_convs && s->phase == IO_LIVE) fetch_convs(s);
    if (s->want_opks && s->phase == IO_LIVE) {
        s->want_opks = false;
        int err = pl__e2e_refill(s->c, s->db, s->url, s->token);
        if (err) pl__ev_error(s->c, err, "one-time prekeys could not be uploaded");
    }
    if (s->want_spk && s->phase == IO_LIVE) {
        s->want_spk = false;
        int err = pl__e2e_spk_check(s->c, s->db, s->url, s->token);
        if (err) pl__ev_error(s->c, err, "the signed prekey could not be replaced");
    }
}

static void on_connected(io *s)
{
    int err = 0;
    socklen_t el = sizeof err;
    getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &el);
    if (err) {
        drop(s, PL_ENET, strerror(err));
        return;
    }
    s->phase = IO_UPGRADE; /* still CONNECTING for the application */
    s->last_rx = mono_ms();
}

/* ------------------------------------------------------------------------------ the loop */

static void take_commands(io *s, bool *stop, bool *kick, bool *push)
{
    bool servers;
    uint64_t v;
    ssize_t k = read(s->c->wake_fd, &v, sizeof v);
    (void)k;
    pthread_mutex_lock(&s->c->mu);
    *stop = s->c->cmd_stop;
    *kick = s->c->cmd_kick;
    *push = s->c->cmd_push;
    servers = s->c->cmd_servers;
    s->c->cmd_kick = s->c->cmd_push = s->c->cmd_servers = false;
    pthread_mutex_unlock(&s->c->mu);
    if (servers) {
        s->server = 0;
        s->failures = 0;
        if (s->phase == IO_IDLE) s->next_at = mono_ms();
    }
}

static void on_push(io *s)
{
    if (s->phase == IO_IDLE) {
        s->next_at = mono_ms();
        s->failures = 0;
    } else if (s->phase == IO_LIVE) {
        /* maybe the connection is dead and nobody noticed: ping; and fetch what is waiting */
        send_sync(s, s->pos);
        if (!s->ping_out) {
            send_json(s, json_pack("{s:s, s:s}", "type", "ping", "id", "push"));
            s->ping_out = true;
            s->ping_sent_at = mono_ms();
        }
    }
}

static int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

/* The next moment something must happen without I/O, as a poll timeout. */
static int poll_timeout(io *s, int64_t now)
{
    int64_t at = now + 60000;
    switch (s->phase) {
    case IO_IDLE:
        at = s->next_at;
        break;
    case IO_TCP:
    case IO_UPGRADE:
    case IO_AUTH:
        at = s->deadline;
        break;
    case IO_SYNC:
    case IO_LIVE:
        at = s->ping_out ? s->ping_sent_at + PING_WAIT_MS : s->last_rx + PING_IDLE_MS;
        if (s->phase == IO_LIVE && s->outbox_more) {
            int64_t t = s->pause_until > now ? s->pause_until : now + 1000 / RATE_PER_S + 1;
            at = min64(at, t);
        } else if (s->phase == IO_LIVE && s->pause_until > now) {
            at = min64(at, s->pause_until);
        }
        break;
    case IO_DEAD:
        break;
    }
    int64_t d = at - now;
    return d < 0 ? 0 : d > 60000 ? 60000 : (int)d;
}

static void timers(io *s)
{
    int64_t now = mono_ms();
    switch (s->phase) {
    case IO_IDLE:
        if (now >= s->next_at) start_attempt(s);
        break;
    case IO_TCP:
    case IO_UPGRADE:
    case IO_AUTH:
        if (now >= s->deadline) drop(s, PL_ETIMEDOUT, "no answer in time");
        break;
    case IO_SYNC:
    case IO_LIVE:
        if (s->ping_out && now >= s->ping_sent_at + PING_WAIT_MS) {
            drop(s, PL_ETIMEDOUT, "the server stopped answering");
        } else if (!s->ping_out && now >= s->last_rx + PING_IDLE_MS) {
            send_json(s, json_pack("{s:s, s:s}", "type", "ping", "id", "k"));
            s->ping_out = true;
            s->ping_sent_at = now;
        }
        if (s->phase == IO_LIVE && now >= s->pause_until &&
            (s->outbox_more || s->pause_until != 0)) {
            s->pause_until = 0;
            pump_outbox(s);
        }
        break;
    case IO_DEAD:
        break;
    }
}

void *pl__engine_main(void *arg)
{
    pl_client *c = arg;
    io st = {.c = c, .fd = -1}, *s = &st;
    buf_init(&s->in);
    buf_init(&s->hs);
    pthread_mutex_lock(&c->mu);
    s->token = strdup(c->io_token);
    pthread_mutex_unlock(&c->mu);
    if (!s->token || pl__store_open(c->store_path, &s->db) != 0) {
        pl__ev_error(c, PL_ESTORE, "the I/O thread could not open the device store");
        free(s->token);
        set_state(s, IO_DEAD);
        return NULL;
    }
    pl__meta_get(s->db, "user", s->me, sizeof s->me);
    pl__meta_get(s->db, "device", s->mydev, sizeof s->mydev);
    s->pos = s->pos_saved = pl__meta_get_int(s->db, "pos");
    s->server = atomic_load(&c->server_idx);
    s->tokens = RATE_BURST;
    s->tokens_at = mono_ms();
    s->presence_sent = PL_PRESENCE_ONLINE;
    s->next_at = mono_ms();
    set_state(s, IO_IDLE);

    for (;;) {
        bool stop, kick, push;
        take_commands(s, &stop, &kick, &push);
        if (stop) break;
        if (push) on_push(s);
        if (kick) {
            pump_outbox(s);
            send_reads(s);
        }
        send_frames(s);
        send_presence(s);
        timers(s);
        if (s->fd >= 0 && s->phase != IO_TCP && !flush_out(s))
            drop(s, PL_ENET, "the connection broke while writing");
        if (s->ws && ws_closing(s->ws) && out_buf(s)->len == 0) {
            char why[64];
            snprintf(why, sizeof why, "the server closed the WebSocket (%u)",
                     (unsigned)ws_peer_close_code(s->ws));
            drop(s, PL_ENET, why);
            continue;
        }

        struct pollfd p[2] = {{.fd = c->wake_fd, .events = POLLIN}, {.fd = -1}};
        int np = 1;
        if (s->fd >= 0) {
            p[1].fd = s->fd;
            p[1].events = s->phase == IO_TCP ? POLLOUT : POLLIN;
            if (s->phase != IO_TCP && out_buf(s)->len) p[1].events |= POLLOUT;
            np = 2;
        }
        int rc = poll(p, (nfds_t)np, poll_timeout(s, mono_ms()));
        if (rc < 0 && errno != EINTR) break;
        if (np == 2 && p[1].revents) {
            if (s->phase == IO_TCP) {
                on_connected(s);
            } else {
                if (p[1].revents & (POLLIN | POLLHUP | POLLERR)) on_readable(s);
            }
        }
    }

    /* Say goodbye properly when we can; the server keeps nothing of this device's socket. */
    if (s->ws && s->fd >= 0) {
        if (s->in_tx) tx_end(s);
        ws_close(s->ws, WS_CLOSE_NORMAL, "bye");
        flush_out(s);
    }
    close_socket(s);
    for (int i = 0; i < s->nstale; i++) json_decref(s->stale_devs[i]);
    drop_events(s);
    free(s->evs);
    buf_free(&s->in);
    buf_free(&s->hs);
    pl__store_close(s->db);
    free(s->token);
    return NULL;
}
