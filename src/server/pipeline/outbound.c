/* outbound.c: everything the loop sends on a WebSocket after the pipeline or a read has run
 * (OutboundMessageHandler).
 *
 * Each conn keeps sent_pos, the inbox position up to which the device has everything, and is
 * either live (new entries are pushed as they commit, strictly in pos order) or not (before its
 * first complete sync, during a sync, or while its send queue is over send_queue_max). Entries
 * that arrive while it is not live are not queued: missed_pos remembers the highest, and the
 * device catches up from the store (the sync it asked for reports more=true, or the server syncs
 * by itself once a full queue drains). So memory per socket stays bounded by send_queue_max and
 * the device still sees every entry in pos order with no gap. */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "common/jsonx.h"
#include "common/log.h"
#include "server/api/api.h"
#include "server/pipeline/pipeline.h"
#include "server/store/pool.h"

static void send_json(conn_t *c, json_t *o)
{
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!s) return;
    conn_ws_send(c, s, strlen(s));
    free(s);
}

void send_error_extra(conn_t *c, const char *req_id, const char *code, const char *msg,
                      const char *extra)
{
    json_t *o = json_pack("{s:s, s:s?, s:s, s:s}", "type", "error", "id", req_id, "code", code,
                          "message", msg);
    if (!req_id || !*req_id) json_object_set_new(o, "id", json_null());
    json_error_t err;
    json_t *x = extra ? json_loads(extra, 0, &err) : NULL;
    if (json_is_object(x)) json_object_update_missing(o, x);
    json_decref(x);
    send_json(c, o);
}

void send_error(conn_t *c, const char *req_id, const char *code, const char *msg)
{
    send_error_extra(c, req_id, code, msg, NULL);
}

json_t *e2e_body_view(json_t *body, const char *user, const char *dev)
{
    json_t *v = json_object_get(body, "v");
    json_t *o = json_object();
    json_object_set_new(o, "v", v ? json_incref(v) : json_integer(1));
    json_object_set_new(o, "ctl", json_boolean(json_is_true(json_object_get(body, "ctl"))));
    size_t i;
    json_t *en;
    json_array_foreach(json_object_get(body, "devs"), i, en)
    {
        const char *u = json_string_value(json_object_get(en, "u"));
        const char *d = json_string_value(json_object_get(en, "d"));
        if (u && d && strcmp(u, user) == 0 && strcmp(d, dev) == 0) {
            json_t *c = json_object_get(en, "c");
            if (c) json_object_set(o, "c", c);
            break;
        }
    }
    json_t *g = json_object_get(body, "g");
    if (g) json_object_set(o, "g", g);
    return o;
}

/* A msg frame is '{"type":"msg","pos":N,' followed by the message's own fields, which are the
 * same for every recipient: the tail is made once per message and only the head per recipient.
 * The tail is written directly: the string fields escaped (cmid comes from a client), the body
 * spliced in as the JSON text the store holds (it was checked as JSON on the way in and stored
 * compact), so no message is parsed or re-encoded on the way out. Kind e2e is the exception:
 * each device sees its own view of the body (e2e_body_view), so its tail is made per device. */
static bool is_e2e(const st_msg *m)
{
    return strcmp(m->kind, "e2e") == 0;
}

static json_t *parse_body(const st_msg *m)
{
    json_error_t err;
    return m->body ? json_loads(m->body, JSON_DECODE_ANY, &err) : NULL;
}

static void put_str(buf_t *b, const char *key, const char *v)
{
    buf_append_str(b, key);
    jsonx_append_str(b, v, strlen(v));
}

/* The tail with body (JSON text, NULL or empty for {}) spliced in. */
static char *msg_tail_json(const st_msg *m, const char *body)
{
    if (!body || !*body) body = "{}";
    size_t blen = strlen(body);
    buf_t b;
    buf_init(&b);
    buf_reserve(&b, 256 + blen);
    put_str(&b, "{\"conv\":", m->conv);
    buf_printf(&b, ",\"seq\":%lld", (long long)m->seq);
    put_str(&b, ",\"from\":", m->from);
    put_str(&b, ",\"dev\":", m->dev);
    put_str(&b, ",\"cmid\":", m->cmid);
    buf_printf(&b, ",\"ts\":%lld", (long long)m->ts);
    put_str(&b, ",\"kind\":", m->kind);
    buf_append_str(&b, ",\"body\":");
    buf_append(&b, body, blen);
    if (m->reply_to > 0) buf_printf(&b, ",\"reply_to\":%lld", (long long)m->reply_to);
    if (m->edited_at > 0) buf_printf(&b, ",\"edited_at\":%lld", (long long)m->edited_at);
    buf_append(&b, "}", 2); /* with the NUL */
    return (char *)b.data;
}

static char *msg_tail(const st_msg *m)
{
    return msg_tail_json(m, m->body);
}

/* The tail as device (user, dev) sees it; parsed is the message's parsed body (borrowed). */
static char *msg_tail_dev(const st_msg *m, json_t *parsed, const char *user, const char *dev)
{
    if (!is_e2e(m) || !json_is_object(parsed)) return msg_tail(m);
    json_t *view = e2e_body_view(parsed, user, dev);
    char *body = json_dumps(view, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(view);
    if (!body) return NULL;
    char *tail = msg_tail_json(m, body);
    free(body);
    return tail;
}

static char *frame_with_pos(int64_t pos, const char *tail)
{
    size_t tl = strlen(tail);
    buf_t b;
    buf_init(&b);
    buf_reserve(&b, tl + 48);
    buf_printf(&b, "{\"type\":\"msg\",\"pos\":%lld,", (long long)pos);
    buf_append(&b, tail + 1, tl); /* the tail without its '{', with its NUL */
    return (char *)b.data;
}

char *msg_frame(int64_t pos, const st_msg *m)
{
    char *tail = msg_tail(m);
    if (!tail) return NULL;
    char *f = frame_with_pos(pos, tail);
    free(tail);
    return f;
}

/* msg_frame as device (user, dev) sees it. */
static char *msg_frame_dev(int64_t pos, const st_msg *m, const char *user, const char *dev)
{
    if (!is_e2e(m)) return msg_frame(pos, m);
    json_t *parsed = parse_body(m);
    char *tail = msg_tail_dev(m, parsed, user, dev);
    json_decref(parsed);
    if (!tail) return NULL;
    char *f = frame_with_pos(pos, tail);
    free(tail);
    return f;
}

/* Pushes one committed inbox entry to one conn, keeping the pos-order promise. */
static void deliver(conn_t *c, int64_t pos, const char *origin_dev, const char *frame)
{
    if (!conn_alive(c)) return;
    if (!c->live) {
        if (pos > c->missed_pos) c->missed_pos = pos;
        return;
    }
    if (pos <= c->sent_pos) return; /* already sent by a sync */
    if (pos != c->sent_pos + 1) {
        /* Cannot happen while commits reach the loop in order; recover through the store. */
        log_warn("conn %llu: gap before pos %lld (sent %lld), resyncing", (unsigned long long)c->id,
                 (long long)pos, (long long)c->sent_pos);
        c->live = false;
        c->missed_pos = pos;
        outbound_sync(c, false, NULL, c->sent_pos, (int)c->srv->cfg.sync_max);
        return;
    }
    if (strcmp(c->dev, origin_dev) == 0) { /* the sender has the ack */
        c->sent_pos = pos;
        return;
    }
    if (c->queued > (size_t)c->srv->cfg.send_queue_max) {
        c->live = false;
        c->lagging = true;
        c->missed_pos = pos;
        return;
    }
    conn_ws_send(c, frame, strlen(frame));
    c->sent_pos = pos;
}

void outbound_to_user(server_t *s, const char *user, const char *except_dev, const char *frame)
{
    for (conn_t *c = session_first(s, user); c; c = c->next_user)
        if (!except_dev || strcmp(c->dev, except_dev) != 0) conn_ws_send(c, frame, strlen(frame));
}

void outbound_result(server_t *s, item *it)
{
    conn_t *origin = it->conn;
    if (it->invalidate[0]) groups_invalidate(s, it->invalidate);
    if (it->kind == ITEM_REST) {
        api_complete(it->req);
        it->req = NULL;
    } else if ((it->kind == ITEM_SEND || it->kind == ITEM_MODIFY || it->kind == ITEM_READ ||
                it->err_code) &&
               origin && conn_alive(origin)) {
        if (it->err_code) {
            send_error_extra(origin, it->req_id, it->err_code, it->err_msg, it->err_extra);
        } else if (it->kind == ITEM_READ) {
            if (it->req_id[0])
                send_json(origin, json_pack("{s:s, s:s, s:s, s:I, s:I}", "type", "ack", "id",
                                            it->req_id, "conv", it->to, "seq", (json_int_t)it->upto,
                                            "ts", (json_int_t)it->now));
        } else if (it->nmsgs > 0) {
            const st_msg *m = &it->msgs[0];
            json_t *ack =
                json_pack("{s:s, s:s, s:s, s:I, s:I}", "type", "ack", "id", it->req_id, "conv",
                          m->conv, "seq", (json_int_t)m->seq, "ts", (json_int_t)m->ts);
            send_json(origin, ack);
        }
    }
    /* The device that sent a message has it (the ack); a REST change reaches every device. */
    const char *skip_dev = it->kind == ITEM_REST ? "" : it->dev;
    char **tails = calloc((size_t)it->nmsgs + 1, sizeof *tails);
    json_t **parsed = calloc((size_t)it->nmsgs + 1, sizeof *parsed); /* e2e bodies, parsed once */
    if (!tails || !parsed) abort();
    for (int i = 0; i < it->ndeliv; i++) {
        const delivery *d = &it->deliv[i];
        conn_t *c = session_first(s, d->user);
        if (!c) continue;
        const st_msg *m = &it->msgs[d->msg];
        if (is_e2e(m)) { /* a frame per device: its own entry of devs */
            if (!parsed[d->msg] && !(parsed[d->msg] = parse_body(m))) continue;
            for (; c; c = c->next_user) {
                if (!conn_alive(c)) continue;
                char *tail = msg_tail_dev(m, parsed[d->msg], c->user, c->dev);
                char *frame = tail ? frame_with_pos(d->pos, tail) : NULL;
                if (frame) deliver(c, d->pos, skip_dev, frame);
                free(tail);
                free(frame);
            }
            continue;
        }
        if (!tails[d->msg] && !(tails[d->msg] = msg_tail(&it->msgs[d->msg]))) continue;
        char *frame = frame_with_pos(d->pos, tails[d->msg]);
        for (; c; c = c->next_user) deliver(c, d->pos, skip_dev, frame);
        free(frame);
    }
    for (int i = 0; i < it->nmsgs; i++) {
        free(tails[i]);
        json_decref(parsed[i]);
    }
    free(tails);
    free(parsed);
    for (int i = 0; i < it->nnotes; i++) {
        const note *n = &it->notes[i];
        if (n->only_dev[0]) {
            for (conn_t *c = session_first(s, n->user); c; c = c->next_user)
                if (strcmp(c->dev, n->only_dev) == 0) conn_ws_send(c, n->frame, strlen(n->frame));
            continue;
        }
        outbound_to_user(s, n->user, n->except_dev[0] ? n->except_dev : NULL, n->frame);
    }
    if (origin && it->kind != ITEM_REST) inbound_answered(origin);
    if (origin) conn_unref(origin);
    item_free(it);
}

/* ---- sync: reading the inbox on a worker thread ---- */

typedef struct sync_job {
    uv_work_t w;
    conn_t *c;
    char user[ID_MAX];
    char dev[ID_MAX]; /* e2e messages: the device's own view */
    char req_id[65];
    bool client; /* asked for by the client (answered with synced) */
    bool has_id;
    int64_t after;
    int limit;
    /* results */
    buf_t frames; /* each frame NUL-terminated, one after another */
    int n;
    int64_t upto;
    const char *err_code, *err_msg;
} sync_job;

static void add_frame(void *ctx, int64_t pos, const st_msg *m)
{
    sync_job *j = ctx;
    char *f = msg_frame_dev(pos, m, j->user, j->dev);
    if (!f) return;
    buf_append(&j->frames, f, strlen(f) + 1);
    free(f);
    assert(pos > j->upto);
    j->upto = pos;
    j->n++;
}

static void sync_work(uv_work_t *w)
{
    sync_job *j = w->data;
    store_t *st = store_pool_get(j->c->srv->pool);
    int64_t head = 0;
    if (!st || store_user_head(st, j->user, &head) != ST_OK) {
        j->err_code = "internal";
        j->err_msg = "The inbox could not be read; sync again.";
    } else if (j->after > head) {
        j->err_code = "invalid_request";
        j->err_msg = "after is beyond the newest inbox position (see head in ready).";
    } else if (store_inbox_read(st, j->user, j->after, j->limit, add_frame, j) < 0) {
        j->err_code = "internal";
        j->err_msg = "The inbox could not be read; sync again.";
    }
    store_pool_put(j->c->srv->pool, st);
}

static void sync_done(uv_work_t *w, int status)
{
    sync_job *j = w->data;
    conn_t *c = j->c;
    if (status == 0 && conn_alive(c)) {
        c->syncing = false;
        if (j->err_code) {
            if (j->client) send_error(c, j->req_id, j->err_code, j->err_msg);
        } else {
            for (size_t off = 0; off < j->frames.len;) {
                const char *f = (const char *)j->frames.data + off;
                size_t len = strlen(f);
                conn_ws_send(c, f, len);
                off += len + 1;
            }
            bool more = j->n == j->limit || c->missed_pos > j->upto;
            c->sent_pos = j->upto;
            if (!more) {
                c->live = true;
                c->missed_pos = 0;
            }
            if (j->client) {
                json_t *o = json_pack("{s:s, s:o, s:I, s:b}", "type", "synced", "id",
                                      j->has_id ? json_string(j->req_id) : json_null(), "upto",
                                      (json_int_t)j->upto, "more", more);
                send_json(c, o);
            } else if (more) {
                if (c->queued > (size_t)c->srv->cfg.send_queue_max / 2)
                    c->lagging = true;
                else
                    outbound_sync(c, false, NULL, c->sent_pos, j->limit);
            }
        }
    }
    conn_unref(c);
    buf_free(&j->frames);
    free(j);
}

void outbound_sync(conn_t *c, bool client, const char *req_id, int64_t after, int limit)
{
    sync_job *j = calloc(1, sizeof *j);
    if (!j) abort();
    j->w.data = j;
    j->c = c;
    snprintf(j->user, sizeof j->user, "%s", c->user);
    snprintf(j->dev, sizeof j->dev, "%s", c->dev);
    j->client = client;
    j->has_id = req_id != NULL;
    snprintf(j->req_id, sizeof j->req_id, "%s", req_id ? req_id : "");
    j->after = after;
    j->upto = after;
    j->limit = limit;
    buf_init(&j->frames);
    c->live = false;
    c->syncing = true;
    conn_ref(c);
    uv_queue_work(c->srv->loop, &j->w, sync_work, sync_done);
}

void outbound_drained(conn_t *c)
{
    if (!c->lagging || c->syncing || !conn_alive(c)) return;
    if (c->queued > (size_t)c->srv->cfg.send_queue_max / 2) return;
    c->lagging = false;
    outbound_sync(c, false, NULL, c->sent_pos, (int)c->srv->cfg.sync_max);
}
