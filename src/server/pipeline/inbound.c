/* inbound.c: the WebSocket side of a conn on the loop (InboundMessageHandler).
 *
 * It performs the upgrade, authenticates the socket with its first frame (the token check reads
 * the store, so it runs on a worker; frames that arrive meanwhile wait in c->in), then parses,
 * validates and rate-limits each frame. The sender is always the authenticated device, never a
 * field of the frame. Valid sends become pipeline items; nothing here touches the disk. */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "common/log.h"
#include "server/api/api.h"
#include "common/jsonx.h"
#include "server/api/auth.h"
#include "server/net/http.h"
#include "server/pipeline/pipeline.h"
#include "server/store/pool.h"

#define MAX_BODY_JSON 65536
/* e2e bodies (E2E.md §7.1, §13): up to 2 MiB and 1000 devs entries. In practice the WebSocket
 * message limit max_frame (default 128 KiB) caps them first. */
#define MAX_E2E_BODY_JSON (2 * 1024 * 1024)
#define MAX_E2E_DEVS      1000

static const ws_handler handler = {.on_text = inbound_on_text};

void inbound_upgrade(conn_t *c)
{
    const http_in *h = &c->http;
    const char *up = http_in_header(h, "upgrade");
    const char *conn = http_in_header(h, "connection");
    const char *key = http_in_header(h, "sec-websocket-key");
    const char *ver = http_in_header(h, "sec-websocket-version");
    uint8_t raw[32];
    bool key_ok = key && strlen(key) == 24 &&
                  sodium_base642bin(raw, sizeof raw, key, 24, NULL, NULL, NULL,
                                    sodium_base64_VARIANT_ORIGINAL) == 0;
    if (strcmp(http_in_method(h), "GET") != 0 || !up || !http_token_in(up, "websocket") || !conn ||
        !http_token_in(conn, "upgrade") || !key_ok) {
        api_reply_error_close(c, 400, "bad_request",
                              "A WebSocket handshake needs GET with Upgrade: websocket, "
                              "Connection: Upgrade and a valid Sec-WebSocket-Key.");
        return;
    }
    if (!ver || strcmp(ver, "13") != 0) {
        api_reply_error_close_hdr(c, 426, "Sec-WebSocket-Version: 13\r\n", "bad_request",
                                  "This server speaks WebSocket version 13 only.");
        return;
    }
    char accept[29];
    ws_accept_key(accept, key, strlen(key));
    char resp[256];
    int n = snprintf(resp, sizeof resp,
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                     accept);
    conn_write(c, resp, (size_t)n);
    c->ws = ws_new(true, (size_t)c->srv->cfg.max_frame, &handler, c);
    if (!c->ws) {
        conn_close(c);
        return;
    }
    c->state = CONN_WS;
    c->last_frame_at = mono_ms();
    conn_start_timer(c, (uint64_t)c->srv->cfg.auth_timeout);
}

/* ---- auth ---- */

typedef struct auth_job {
    uv_work_t w;
    conn_t *c;
    char *token;
    char user[ID_MAX], dev[ID_MAX];
    int64_t head;
    const char *err_code, *err_msg;
} auth_job;

static void auth_work(uv_work_t *w)
{
    auth_job *j = w->data;
    store_t *st = store_pool_get(j->c->srv->pool);
    if (!st) {
        j->err_code = "internal";
        j->err_msg = "The server cannot check tokens right now; reconnect.";
        return;
    }
    if (token_check(j->c->srv, st, j->token, j->user, j->dev, &j->err_code, &j->err_msg) == 0 &&
        store_user_head(st, j->user, &j->head) != ST_OK) {
        j->err_code = "internal";
        j->err_msg = "The server cannot read the inbox right now; reconnect.";
    }
    store_pool_put(j->c->srv->pool, st);
}

static void auth_done(uv_work_t *w, int status)
{
    auth_job *j = w->data;
    conn_t *c = j->c;
    if (status == 0 && conn_alive(c)) {
        if (j->err_code) {
            char reason[120];
            snprintf(reason, sizeof reason, "%s: %s", j->err_code, j->err_msg);
            log_info("conn %llu: auth refused: %s", (unsigned long long)c->id, reason);
            conn_ws_close(c, WS_CLOSE_UNAUTH, reason);
        } else {
            c->authed = true;
            memcpy(c->user, j->user, sizeof c->user);
            memcpy(c->dev, j->dev, sizeof c->dev);
            c->tokens = (double)c->srv->cfg.rate_msgs * 2;
            c->tokens_at = mono_ms();
            session_add(c);
            presence_connected(c);
            conn_start_timer(c, (uint64_t)c->srv->cfg.idle_timeout / 4);
            json_t *o = json_pack("{s:s, s:s, s:s, s:I}", "type", "ready", "user", c->user,
                                  "device", c->dev, "head", (json_int_t)j->head);
            char *s = json_dumps(o, JSON_COMPACT);
            json_decref(o);
            conn_ws_send(c, s, strlen(s));
            free(s);
        }
    }
    free(j->token);
    free(j);
    if (!conn_unref(c)) return;
    c->busy = false;
    /* Frames that came with the auth frame, in order; then whatever waits in c->in. */
    buf_t early = c->early;
    buf_init(&c->early);
    for (size_t off = 0; off + 4 <= early.len && conn_alive(c);) {
        uint32_t n;
        memcpy(&n, early.data + off, sizeof n);
        inbound_on_text(c, (const char *)early.data + off + 4, n);
        off += 4 + n;
    }
    buf_free(&early);
    if (conn_alive(c)) conn_resume(c);
}

static void start_auth(conn_t *c, json_t *f)
{
    const char *token = json_string_value(json_object_get(f, "token"));
    if (!token) {
        conn_ws_close(c, WS_CLOSE_UNAUTH, "unauthenticated: the auth frame needs a token");
        return;
    }
    auth_job *j = calloc(1, sizeof *j);
    if (!j) abort();
    j->w.data = j;
    j->c = c;
    j->token = strdup(token);
    c->busy = true; /* later frames wait in c->in until the answer */
    conn_ref(c);
    uv_queue_work(c->srv->loop, &j->w, auth_work, auth_done);
}

/* ---- frames ---- */

/* The send rate of a socket: a token bucket of rate_msgs a second holding twice that. Once a
 * send is refused, every send is refused until the bucket has a token again (retry_after), so
 * the sends pipelined behind a refused one are refused too and the client's resends keep their
 * order. Returns 0 when the send may go, else the ms to wait. */
static int64_t rate_wait(conn_t *c)
{
    int64_t now = mono_ms();
    double rate = (double)c->srv->cfg.rate_msgs;
    if (now < c->paused_until) return c->paused_until - now;
    c->tokens += (double)(now - c->tokens_at) * rate / 1000.0;
    if (c->tokens > rate * 2) c->tokens = rate * 2;
    c->tokens_at = now;
    if (c->tokens >= 1.0) {
        c->tokens -= 1.0;
        return 0;
    }
    int64_t wait = (int64_t)((1.0 - c->tokens) * 1000.0 / rate) + 1;
    c->paused_until = now + wait;
    return wait;
}

static bool rate_ok(conn_t *c, const char *id)
{
    int64_t wait = rate_wait(c);
    if (wait == 0) return true;
    json_t *o = json_pack("{s:s, s:s?, s:s, s:s, s:I}", "type", "error", "id", id, "code",
                          "rate_limited", "message",
                          "Too many messages a second; resend from this one after retry_after ms.",
                          "retry_after", (json_int_t)wait);
    if (!id) json_object_set_new(o, "id", json_null());
    char *f = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    conn_ws_send(c, f, strlen(f));
    free(f);
    return false;
}

static bool get_str(json_t *f, const char *key, size_t max, const char **out)
{
    json_t *v = json_object_get(f, key);
    if (!json_is_string(v)) return false;
    size_t n = json_string_length(v);
    if (n < 1 || n > max) return false;
    *out = json_string_value(v);
    return true;
}

/* Frames one socket may have in the pipeline unanswered. At this many, reading from the socket
 * stops until half of them are answered: a sender faster than the disk is slowed by TCP instead
 * of growing the pipeline's queue (and the server's memory) without bound. */
#define INFLIGHT_MAX 256

static void submit(conn_t *c, item *it)
{
    conn_ref(c);
    if (++c->inflight >= INFLIGHT_MAX && !c->read_paused) {
        log_debug("conn %llu: %d frames wait in the pipeline: reading paused",
                  (unsigned long long)c->id, c->inflight);
        conn_read_pause(c);
    }
    pipeline_submit(c->srv, it);
}

void inbound_answered(conn_t *c)
{
    if (--c->inflight <= INFLIGHT_MAX / 2) conn_read_resume(c);
}

static item *new_item(conn_t *c, enum item_kind kind, const char *id)
{
    item *it = calloc(1, sizeof *it);
    if (!it) abort();
    it->kind = kind;
    it->conn = c;
    snprintf(it->req_id, sizeof it->req_id, "%s", id ? id : "");
    memcpy(it->user, c->user, ID_MAX);
    memcpy(it->dev, c->dev, ID_MAX);
    return it;
}

/* A non-empty string of base64url characters without padding. The bytes are opaque to the
 * server; only the shape is checked. */
static bool b64url_str(json_t *v)
{
    const char *s = json_string_value(v);
    size_t n = s ? json_string_length(v) : 0;
    if (n == 0 || n % 4 == 1) return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
              ch == '-' || ch == '_'))
            return false;
    }
    return true;
}

/* The shape of an e2e body: {"v":1, "ctl"?, "devs":[{"u","d","c"}], "dl"?, "g"?}. The device list
 * itself is checked against the conversation on the pipeline thread. NULL when good. */
static const char *e2e_body_error(json_t *body)
{
    json_t *v = json_object_get(body, "v"), *ctl = json_object_get(body, "ctl");
    json_t *devs = json_object_get(body, "devs"), *dl = json_object_get(body, "dl");
    json_t *g = json_object_get(body, "g");
    if (!json_is_integer(v) || json_integer_value(v) != 1) return "body.v must be 1.";
    if (ctl && !json_is_boolean(ctl)) return "body.ctl must be true or false.";
    if (!json_is_array(devs) || json_array_size(devs) > MAX_E2E_DEVS)
        return "body.devs must be an array of at most 1000 entries.";
    size_t i;
    json_t *en;
    json_array_foreach(devs, i, en)
    {
        const char *u = json_string_value(json_object_get(en, "u"));
        const char *d = json_string_value(json_object_get(en, "d"));
        if (!json_is_object(en) || !u || !id_valid(u, "u_") || !d || !id_valid(d, "d_") ||
            !b64url_str(json_object_get(en, "c")))
            return "Each body.devs entry needs u (a user id), d (a device id) and c (base64url).";
    }
    if (dl && (!b64url_str(dl) || json_string_length(dl) != 22))
        return "body.dl must be 16 bytes in base64url without padding.";
    if (g && !b64url_str(g)) return "body.g must be base64url without padding.";
    return NULL;
}

static void on_send(conn_t *c, json_t *f, const char *id)
{
    const char *to, *cmid, *kind;
    json_t *body = json_object_get(f, "body");
    json_t *reply = json_object_get(f, "reply_to");
    if (!get_str(f, "to", ID_MAX - 1, &to) || (!id_valid(to, "u_") && !id_valid(to, "g_")))
        return send_error(c, id, "invalid_request",
                          "to must be a user (u_...) or group (g_...) id.");
    if (!get_str(f, "cmid", 64, &cmid))
        return send_error(c, id, "invalid_request", "cmid must be a string of 1 to 64 bytes.");
    if (!get_str(f, "kind", 15, &kind) || (strcmp(kind, "text") && strcmp(kind, "media") &&
                                           strcmp(kind, "sticker") && strcmp(kind, "e2e")))
        return send_error(c, id, "invalid_request", "kind must be text, media, sticker or e2e.");
    if (!json_is_object(body))
        return send_error(c, id, "invalid_request", "body must be an object.");
    if (reply && (!json_is_integer(reply) || json_integer_value(reply) < 1))
        return send_error(c, id, "invalid_request", "reply_to must be a seq (an integer >= 1).");
    if (strcmp(kind, "text") == 0) {
        json_t *t = json_object_get(body, "text");
        if (!json_is_string(t) || json_string_length(t) == 0)
            return send_error(c, id, "invalid_request", "A text message needs body.text.");
        if (json_string_length(t) > (size_t)c->srv->cfg.max_text)
            return send_error(c, id, "text_too_long", "The text is longer than the server takes.");
    }
    bool e2e = strcmp(kind, "e2e") == 0;
    const char *bad = e2e ? e2e_body_error(body) : NULL;
    if (bad) return send_error(c, id, "invalid_request", bad);
    char *bj = json_dumps(body, JSON_COMPACT);
    if (!bj) return send_error(c, id, "invalid_request", "body cannot be encoded.");
    if (strlen(bj) > (e2e ? MAX_E2E_BODY_JSON : MAX_BODY_JSON)) {
        free(bj);
        return send_error(c, id, "body_too_large",
                          e2e ? "The e2e body is larger than 2 MiB as JSON."
                              : "The body is larger than 64 KiB as JSON.");
    }
    if (!rate_ok(c, id)) {
        free(bj);
        return;
    }
    item *it = new_item(c, ITEM_SEND, id);
    snprintf(it->to, sizeof it->to, "%s", to);
    snprintf(it->cmid, sizeof it->cmid, "%s", cmid);
    snprintf(it->msg_kind, sizeof it->msg_kind, "%s", kind);
    it->body = bj;
    it->reply_to = reply ? json_integer_value(reply) : 0;
    submit(c, it);
}

static void on_sync(conn_t *c, json_t *f, const char *id)
{
    json_t *after = json_object_get(f, "after");
    json_t *limit = json_object_get(f, "limit");
    if (!json_is_integer(after) || json_integer_value(after) < 0)
        return send_error(c, id, "invalid_request", "after must be an inbox position (>= 0).");
    json_int_t lim = 100;
    if (limit) {
        if (!json_is_integer(limit) || json_integer_value(limit) < 1 ||
            json_integer_value(limit) > c->srv->cfg.sync_max) {
            char msg[80];
            snprintf(msg, sizeof msg, "limit must be from 1 to %lld.",
                     (long long)c->srv->cfg.sync_max);
            return send_error(c, id, "invalid_request", msg);
        }
        lim = json_integer_value(limit);
    }
    if (c->syncing)
        return send_error(c, id, "sync_in_progress", "Wait for synced before the next sync.");
    outbound_sync(c, true, id, json_integer_value(after), (int)lim);
}

static bool get_conv(json_t *f, const char **conv)
{
    return get_str(f, "conv", ID_MAX - 1, conv) && (id_valid(*conv, "p_") || id_valid(*conv, "g_"));
}

/* edit, delete and react name a stored message by (conv, seq). */
static void on_modify(conn_t *c, json_t *f, const char *id, const char *type)
{
    const char *conv;
    json_t *seq = json_object_get(f, "seq");
    if (!get_conv(f, &conv))
        return send_error(c, id, "invalid_request", "conv must be a conversation id.");
    if (!json_is_integer(seq) || json_integer_value(seq) < 1)
        return send_error(c, id, "invalid_request", "seq must be a message seq (>= 1).");
    json_t *body = NULL;
    if (strcmp(type, "edit") == 0) {
        body = json_object_get(f, "body");
        json_t *t = json_object_get(body, "text");
        if (!json_is_object(body) || !json_is_string(t) || json_string_length(t) == 0)
            return send_error(c, id, "invalid_request", "edit needs body with a text.");
        if (json_string_length(t) > (size_t)c->srv->cfg.max_text)
            return send_error(c, id, "text_too_long", "The text is longer than the server takes.");
        json_incref(body);
    } else if (strcmp(type, "react") == 0) {
        json_t *e = json_object_get(f, "emoji");
        if (!json_is_string(e) || json_string_length(e) > 32)
            return send_error(c, id, "invalid_request",
                              "emoji must be a string of up to 32 bytes (\"\" takes it back).");
        body = json_pack("{s:O}", "emoji", e);
    } else {
        body = json_object();
    }
    if (!rate_ok(c, id)) {
        json_decref(body);
        return;
    }
    item *it = new_item(c, ITEM_MODIFY, id);
    snprintf(it->to, sizeof it->to, "%s", conv);
    snprintf(it->msg_kind, sizeof it->msg_kind, "%s",
             strcmp(type, "react") == 0 ? "reaction" : type);
    it->reply_to = json_integer_value(seq);
    it->body = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    submit(c, it);
}

static void on_read(conn_t *c, json_t *f, const char *id)
{
    const char *conv;
    json_t *upto = json_object_get(f, "upto");
    if (!get_conv(f, &conv))
        return send_error(c, id, "invalid_request", "conv must be a conversation id.");
    if (!json_is_integer(upto) || json_integer_value(upto) < 1)
        return send_error(c, id, "invalid_request", "upto must be a seq (>= 1).");
    item *it = new_item(c, ITEM_READ, id);
    snprintf(it->to, sizeof it->to, "%s", conv);
    it->upto = json_integer_value(upto);
    submit(c, it);
}

static void on_typing(conn_t *c, json_t *f, const char *id)
{
    const char *conv;
    json_t *on = json_object_get(f, "on");
    if (!get_conv(f, &conv) || !json_is_boolean(on))
        return send_error(c, id, "invalid_request", "typing needs conv and on (true or false).");
    typing_relay(c, conv, json_is_true(on));
}

static void on_presence(conn_t *c, json_t *f, const char *id)
{
    const char *status = json_string_value(json_object_get(f, "status"));
    if (!status || (strcmp(status, "online") && strcmp(status, "away")))
        return send_error(c, id, "invalid_request", "status must be online or away.");
    presence_set(c, strcmp(status, "away") == 0);
}

static void on_recv(conn_t *c, json_t *f, const char *id)
{
    json_t *upto = json_object_get(f, "upto");
    if (!json_is_integer(upto) || json_integer_value(upto) < 0)
        return send_error(c, id, "invalid_request", "upto must be an inbox position (>= 0).");
    item *it = new_item(c, ITEM_RECV, id);
    it->upto = json_integer_value(upto);
    submit(c, it);
}

void inbound_on_text(void *ud, const char *msg, size_t len)
{
    conn_t *c = ud;
    if (!conn_alive(c)) return;
    c->last_frame_at = mono_ms();
    json_error_t err;
    json_t *f = json_loadb(msg, len, JSON_REJECT_DUPLICATES, &err);
    const char *type = f ? json_string_value(json_object_get(f, "type")) : NULL;
    if (!c->authed && c->busy) { /* the auth check is running: keep the frame for after it */
        json_decref(f);
        if (c->early.len + len > (size_t)c->srv->cfg.max_frame * 4) {
            conn_ws_close(c, WS_CLOSE_POLICY, "too many frames before ready");
            return;
        }
        uint32_t n = (uint32_t)len;
        buf_append(&c->early, &n, sizeof n);
        buf_append(&c->early, msg, len);
        return;
    }
    if (!c->authed) {
        if (!type || strcmp(type, "auth") != 0)
            conn_ws_close(c, WS_CLOSE_UNAUTH, "unauthenticated: the first frame must be auth");
        else
            start_auth(c, f);
        json_decref(f);
        return;
    }
    json_t *idv = f ? json_object_get(f, "id") : NULL;
    const char *id =
        json_is_string(idv) && json_string_length(idv) <= 64 ? json_string_value(idv) : NULL;
    if (!json_is_object(f) || !type || !jsonx_depth_ok(f, 16)) {
        send_error(c, id, "invalid_frame", "A frame is one JSON object with a string type.");
    } else if (strcmp(type, "send") == 0) {
        if (!id)
            send_error(c, NULL, "invalid_request", "send needs an id (a string of 1 to 64 bytes).");
        else
            on_send(c, f, id);
    } else if (strcmp(type, "sync") == 0) {
        on_sync(c, f, id);
    } else if (strcmp(type, "recv") == 0) {
        on_recv(c, f, id);
    } else if (strcmp(type, "read") == 0) {
        on_read(c, f, id);
    } else if (strcmp(type, "typing") == 0) {
        on_typing(c, f, id);
    } else if (strcmp(type, "presence") == 0) {
        on_presence(c, f, id);
    } else if (!strcmp(type, "edit") || !strcmp(type, "delete") || !strcmp(type, "react")) {
        if (!id)
            send_error(c, NULL, "invalid_request", "This frame needs an id.");
        else
            on_modify(c, f, id, type);
    } else if (strcmp(type, "ping") == 0) {
        json_t *o = json_pack("{s:s}", "type", "pong");
        json_object_set_new(o, "id", id ? json_string(id) : json_null());
        char *s = json_dumps(o, JSON_COMPACT);
        json_decref(o);
        conn_ws_send(c, s, strlen(s));
        free(s);
    } else if (strcmp(type, "auth") == 0) {
        send_error(c, id, "invalid_request", "This socket is already authenticated.");
    } else {
        send_error(c, id, "unknown_type", "The server does not know this frame type.");
    }
    json_decref(f);
}
