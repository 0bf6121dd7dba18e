/* convs.c: the conversation list, history, per-conversation settings and receipts (REST, read
 * on worker threads). A removed member is no member: every call here refuses them. */
#include <stdlib.h>
#include <string.h>

#include "server/api/api.h"
#include "server/pipeline/pipeline.h"

/* A stored message as the caller's device sees it: an e2e body shows only that device's own
 * ciphertext (E2E.md 7.1). */
static json_t *msg_json(const st_msg *m, const char *user, const char *dev)
{
    json_error_t err;
    json_t *body = json_loads(m->body ? m->body : "{}", JSON_DECODE_ANY, &err);
    if (body && strcmp(m->kind, "e2e") == 0) {
        json_t *view = e2e_body_view(body, user, dev);
        json_decref(body);
        body = view;
    }
    json_t *o = json_pack("{s:s, s:I, s:s, s:s, s:s, s:I, s:s, s:o}", "conv", m->conv, "seq",
                          (json_int_t)m->seq, "from", m->from, "dev", m->dev, "cmid", m->cmid, "ts",
                          (json_int_t)m->ts, "kind", m->kind, "body", body ? body : json_object());
    if (m->reply_to > 0) json_object_set_new(o, "reply_to", json_integer(m->reply_to));
    if (m->edited_at > 0) json_object_set_new(o, "edited_at", json_integer(m->edited_at));
    return o;
}

struct list_ctx {
    store_t *st;
    json_t *arr;
    const char *user, *dev;
};

static void add_row(void *ctx, const st_conv_row *r)
{
    struct list_ctx *lc = ctx;
    json_t *o = json_pack(
        "{s:s, s:s, s:s, s:s, s:b, s:I, s:I, s:I, s:I, s:I, s:s}", "id", r->conv.id, "kind",
        r->conv.kind, "name", r->conv.name, "avatar", r->conv.avatar, "e2e", r->conv.e2e,
        "last_seq", (json_int_t)r->conv.last_seq, "unread", (json_int_t)r->unread, "delivered_seq",
        (json_int_t)r->me.delivered_seq, "read_seq", (json_int_t)r->me.read_seq, "muted_until",
        (json_int_t)r->me.muted_until, "notify", r->me.notify);
    json_object_set_new(o, "last",
                        r->last.seq > 0 ? msg_json(&r->last, lc->user, lc->dev) : json_null());
    if (strcmp(r->conv.kind, "direct") == 0) {
        json_object_set_new(o, "peer", json_string(r->peer));
        st_member p;
        if (r->peer[0] && store_member_get(lc->st, r->conv.id, r->peer, &p) == ST_OK) {
            json_object_set_new(o, "peer_delivered_seq", json_integer(p.delivered_seq));
            json_object_set_new(o, "peer_read_seq", json_integer(p.read_seq));
        }
    }
    json_array_append_new(lc->arr, o);
}

void h_convs_list(api_req *r, store_t *st)
{
    struct list_ctx lc = {st, json_array(), r->user, r->dev};
    if (store_conv_list(st, r->user, add_row, &lc) != ST_OK) {
        json_decref(lc.arr);
        return;
    }
    api_ok(r, 200, json_pack("{s:o}", "convs", lc.arr));
}

/* The caller's membership of r->param; answers the error itself when false. */
static bool member(api_req *r, store_t *st, st_member *me)
{
    int rc = (id_valid(r->param, "g_") || id_valid(r->param, "p_"))
                 ? store_member_get(st, r->param, r->user, me)
                 : ST_NOTFOUND;
    if (rc == ST_NOTFOUND)
        api_error(r, 403, "not_a_member", "You are not a member of this conversation.");
    return rc == ST_OK;
}

static bool query_int(api_req *r, const char *name, int64_t lo, int64_t hi, int64_t *out)
{
    char v[32];
    if (!api_query(r, name, v, sizeof v)) return true; /* absent: keep the default */
    char *end;
    long long x = strtoll(v, &end, 10);
    if (!*v || *end || x < lo || x > hi) {
        char msg[128];
        snprintf(msg, sizeof msg, "%s must be a whole number from %lld to %lld.", name,
                 (long long)lo, (long long)hi);
        api_error(r, 400, "invalid_request", msg);
        return false;
    }
    *out = x;
    return true;
}

static void add_msg(void *ctx, const st_msg *m)
{
    struct list_ctx *lc = ctx;
    json_array_append_new(lc->arr, msg_json(m, lc->user, lc->dev));
}

void h_conv_messages(api_req *r, store_t *st)
{
    st_member me;
    if (!member(r, st, &me)) return;
    int64_t before = INT64_MAX, limit = 50;
    if (!query_int(r, "before_seq", 1, INT64_MAX, &before) ||
        !query_int(r, "limit", 1, 200, &limit))
        return;
    json_t *arr = json_array();
    struct list_ctx lc = {st, arr, r->user, r->dev};
    int n = store_msg_history(st, r->param, before, me.joined_seq, (int)limit + 1, add_msg, &lc);
    if (n < 0) {
        json_decref(arr);
        return;
    }
    bool more = n > limit;
    if (more) json_array_remove(arr, json_array_size(arr) - 1);
    api_ok(r, 200, json_pack("{s:o, s:b}", "messages", arr, "more", more));
}

void h_conv_settings(api_req *r, store_t *st)
{
    st_member me;
    if (!r->in) return api_error(r, 400, "invalid_json", "Send {muted_until, notify}.");
    if (!member(r, st, &me)) return;
    json_t *mu = json_object_get(r->in, "muted_until"), *nt = json_object_get(r->in, "notify");
    if (mu && (!json_is_integer(mu) || json_integer_value(mu) < 0))
        return api_error(r, 400, "invalid_request",
                         "muted_until must be a time in ms (0: not muted).");
    const char *notify = nt ? json_string_value(nt) : me.notify;
    if (!notify || (strcmp(notify, "all") && strcmp(notify, "mentions") && strcmp(notify, "none")))
        return api_error(r, 400, "invalid_request", "notify must be all, mentions or none.");
    int64_t until = mu ? json_integer_value(mu) : me.muted_until;
    if (store_member_settings(st, r->param, r->user, until, notify) != ST_OK) return;
    api_ok(r, 200, json_pack("{s:I, s:s}", "muted_until", (json_int_t)until, "notify", notify));
}

void h_conv_receipts(api_req *r, store_t *st)
{
    st_member me;
    if (!member(r, st, &me)) return;
    int n = 0;
    st_member *ms = store_member_all(st, r->param, &n);
    if (!ms) return;
    json_t *arr = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(arr, json_pack("{s:s, s:I, s:I}", "user", ms[i].user, "delivered",
                                             (json_int_t)ms[i].delivered_seq, "read",
                                             (json_int_t)ms[i].read_seq));
    free(ms);
    api_ok(r, 200, json_pack("{s:o}", "receipts", arr));
}
