/* router.c: matching REST routes and running handlers off the loop. */
#include <stdlib.h>
#include <string.h>

#include "common/jsonx.h"
#include "common/log.h"
#include "server/api/api.h"
#include "server/api/auth.h"
#include "server/pipeline/pipeline.h"
#include "server/store/pool.h"

typedef struct route {
    const char *method;
    const char *pattern; /* "{}" matches one path segment */
    api_fn fn;
    bool auth;
    bool pipeline; /* writes messages or events: runs on the pipeline thread */
} route;

static const route routes[] = {
    {"POST", "/v1/accounts", h_accounts_create, false, false},
    {"POST", "/v1/sessions", h_sessions_create, false, false},
    {"DELETE", "/v1/sessions/current", h_keys_session_delete, true, true},
    {"GET", "/v1/me", h_me_get, true, false},
    {"PATCH", "/v1/me", h_me_patch, true, false},
    {"GET", "/v1/users", h_users_search, true, false},
    {"GET", "/v1/users/{}", h_user_get, true, false},
    {"GET", "/v1/devices", h_devices_list, true, false},
    {"DELETE", "/v1/devices/{}", h_keys_device_delete, true, true},
    {"POST", "/v1/groups", h_group_create, true, true},
    {"GET", "/v1/groups/{}", h_group_get, true, false},
    {"PATCH", "/v1/groups/{}", h_group_patch, true, true},
    {"POST", "/v1/groups/{}/members", h_group_add, true, true},
    {"PATCH", "/v1/groups/{}/members/{}", h_group_member_patch, true, true},
    {"DELETE", "/v1/groups/{}/members/{}", h_group_member_delete, true, true},
    {"GET", "/v1/convs", h_convs_list, true, false},
    {"GET", "/v1/convs/{}/messages", h_conv_messages, true, false},
    {"GET", "/v1/convs/{}/receipts", h_conv_receipts, true, false},
    {"PUT", "/v1/convs/{}/settings", h_conv_settings, true, false},
    {"GET", "/v1/contacts", h_contacts_list, true, false},
    {"PUT", "/v1/contacts/{}", h_contact_put, true, true},
    {"DELETE", "/v1/contacts/{}", h_contact_delete, true, true},
    {"GET", "/v1/blocks", h_blocks_list, true, false},
    {"PUT", "/v1/blocks/{}", h_block_put, true, true},
    {"DELETE", "/v1/blocks/{}", h_block_delete, true, true},
    {"PUT", "/v1/keys/identity", h_keys_identity_put, true, false},
    {"PUT", "/v1/keys/bundle", h_keys_bundle_put, true, true},
    {"POST", "/v1/keys/prekeys", h_keys_prekeys_post, true, false},
    {"GET", "/v1/keys/prekeys", h_keys_prekeys_get, true, false},
    {"POST", "/v1/keys/claim", h_keys_claim, true, true},
    {"GET", "/v1/users/{}/devices", h_user_devices, true, false},
    {"PUT", "/v1/keys/link/{}", h_keys_link_put, true, false},
    {"GET", "/v1/keys/link/{}", h_keys_link_get, true, false},
};

/* Does path match pattern? The {} segments are copied into params[0] and params[1]. */
static bool match(const char *pattern, const char *path, char params[2][ID_MAX])
{
    int k = 0;
    params[0][0] = params[1][0] = 0;
    while (*pattern && *path) {
        if (pattern[0] == '{' && pattern[1] == '}') {
            size_t n = strcspn(path, "/");
            if (n == 0 || n >= ID_MAX || k == 2) return false;
            memcpy(params[k], path, n);
            params[k++][n] = 0;
            path += n;
            pattern += 2;
            continue;
        }
        if (*pattern++ != *path++) return false;
    }
    return !*pattern && !*path;
}

static void respond_hdr(conn_t *c, int status, const char *extra, json_t *body, int retry_after,
                        bool keep_alive)
{
    char *js = body ? json_dumps(body, JSON_COMPACT) : NULL;
    size_t blen = js ? strlen(js) : 0;
    buf_t out;
    buf_init(&out);
    buf_printf(&out, "HTTP/1.1 %d %s\r\n", status, http_status_text(status));
    if (js) buf_printf(&out, "Content-Type: application/json\r\n");
    buf_printf(&out, "Content-Length: %zu\r\n", blen);
    if (retry_after > 0) buf_printf(&out, "Retry-After: %d\r\n", retry_after);
    if (!keep_alive) buf_printf(&out, "Connection: close\r\n");
    if (extra) buf_append_str(&out, extra);
    buf_append(&out, "\r\n", 2);
    buf_append(&out, js, blen);
    conn_write(c, out.data, out.len);
    buf_free(&out);
    free(js);
}

static void respond(conn_t *c, int status, json_t *body, int retry_after, bool keep_alive)
{
    respond_hdr(c, status, NULL, body, retry_after, keep_alive);
}

static json_t *error_json(const char *code, const char *msg)
{
    return json_pack("{s:{s:s, s:s}}", "error", "code", code, "message", msg);
}

void api_reply_error_close_hdr(conn_t *c, int status, const char *extra, const char *code,
                               const char *msg)
{
    json_t *e = error_json(code, msg);
    respond_hdr(c, status, extra, e, 0, false);
    json_decref(e);
    conn_close(c);
}

void api_reply_error_close(conn_t *c, int status, const char *code, const char *msg)
{
    api_reply_error_close_hdr(c, status, NULL, code, msg);
}

/* After an answer: the next pipelined request, or close. */
static void finish(conn_t *c, bool keep_alive)
{
    if (!keep_alive || c->srv->stopping) {
        conn_close(c);
        return;
    }
    http_in_next(&c->http);
    conn_resume(c);
}

static void reply_now(conn_t *c, int status, const char *code, const char *msg)
{
    bool ka = http_in_keep_alive(&c->http);
    json_t *e = error_json(code, msg);
    respond(c, status, e, 0, ka);
    json_decref(e);
    finish(c, ka);
}

void api_error(api_req *r, int status, const char *code, const char *msg)
{
    r->status = status;
    json_decref(r->out);
    r->out = error_json(code, msg);
}

void api_ok(api_req *r, int status, json_t *out)
{
    r->status = status;
    json_decref(r->out);
    r->out = out;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

bool api_query(const api_req *r, const char *name, char *out, size_t outlen)
{
    size_t nl = strlen(name);
    for (const char *p = r->query; *p;) {
        const char *end = p + strcspn(p, "&");
        if ((size_t)(end - p) > nl && strncmp(p, name, nl) == 0 && p[nl] == '=') {
            size_t o = 0;
            for (const char *q = p + nl + 1; q < end; q++) {
                char ch = *q;
                if (ch == '+')
                    ch = ' ';
                else if (ch == '%') {
                    if (end - q < 3 || hexval(q[1]) < 0 || hexval(q[2]) < 0) return false;
                    ch = (char)(hexval(q[1]) * 16 + hexval(q[2]));
                    q += 2;
                }
                if (o + 1 >= outlen) return false;
                out[o++] = ch;
            }
            out[o] = 0;
            return true;
        }
        p = *end ? end + 1 : end;
    }
    return false;
}

/* Parses the body, checks the token and runs the handler, on whichever thread owns st. */
static void execute(api_req *r, store_t *st)
{
    if (r->has_body) {
        json_error_t err;
        r->in = json_loadb((const char *)r->body.data, r->body.len, JSON_REJECT_DUPLICATES, &err);
        if (!json_is_object(r->in) || !jsonx_depth_ok(r->in, 16)) {
            api_error(r, 400, "invalid_json",
                      "The body must be a JSON object (at most 16 levels deep).");
            return;
        }
    }
    if (r->need_auth) {
        const char *code, *msg;
        const char *a = r->authz;
        if (!a || strncasecmp(a, "Bearer ", 7) != 0) {
            api_error(r, 401, "unauthenticated", "Send Authorization: Bearer <token>.");
            return;
        }
        if (token_check(r->s, st, a + 7, r->user, r->dev, &code, &msg) != 0) {
            api_error(r, strcmp(code, "internal") == 0 ? 500 : 401, code, msg);
            return;
        }
        if (r->pitem) {
            memcpy(r->pitem->user, r->user, ID_MAX);
            memcpy(r->pitem->dev, r->dev, ID_MAX);
        }
    }
    r->fn(r, st);
    if (!r->status) api_error(r, 500, "internal", "The server failed to answer; retry.");
}

int api_run_in_pipeline(api_req *r, store_t *st, struct item *it)
{
    r->pitem = it;
    execute(r, st);
    return r->status < 400 ? ST_OK : ST_ERR;
}

static void work(uv_work_t *w)
{
    api_req *r = w->data;
    store_t *st = store_pool_get(r->s->pool);
    if (!st) {
        api_error(r, 503, "unavailable", "The database cannot be opened right now; retry.");
        return;
    }
    execute(r, st);
    store_pool_put(r->s->pool, st);
}

void api_complete(api_req *r)
{
    conn_t *c = r->c;
    server_t *s = r->s;
    if (r->kick_dev[0]) session_kick(s, r->user, r->kick_dev, "unauthenticated: device logged out");
    if (conn_unref(c)) {
        if (r->status == 429 && r->out) {
            json_t *e = json_object_get(r->out, "error");
            json_object_set_new(e, "retry_after", json_integer(r->retry_after));
        }
        respond(c, r->status, r->status == 204 ? NULL : r->out, r->retry_after, r->keep_alive);
        finish(c, r->keep_alive);
    }
    json_decref(r->in);
    json_decref(r->out);
    free(r->authz);
    buf_free(&r->body);
    free(r);
}

static void done(uv_work_t *w, int status)
{
    api_req *r = w->data;
    if (status != 0) api_error(r, 503, "unavailable", "The server is shutting down; retry.");
    api_complete(r);
}

void api_dispatch(conn_t *c)
{
    http_in *h = &c->http;
    const char *url = http_in_url(h);
    const char *method = http_in_method(h);
    char path[512];
    size_t plen = strcspn(url, "?");
    if (plen >= sizeof path) return reply_now(c, 404, "not_found", "There is no such path.");
    memcpy(path, url, plen);
    path[plen] = 0;

    if (strcmp(path, "/v1/ws") == 0) {
        if (!http_in_upgrade(h) && strcmp(method, "GET") != 0)
            return reply_now(c, 405, "method_not_allowed", "Use GET to open the WebSocket.");
        return inbound_upgrade(c);
    }
    if (http_in_upgrade(h))
        return api_reply_error_close(c, 400, "bad_request", "Only /v1/ws can be upgraded.");
    if (strcmp(path, "/v1/health") == 0) {
        if (strcmp(method, "GET") != 0) return reply_now(c, 405, "method_not_allowed", "Use GET.");
        bool ka = http_in_keep_alive(h);
        json_t *o = json_pack("{s:s, s:s}", "status", c->srv->stopping ? "stopping" : "ok",
                              "version", PARLEY_VERSION);
        respond(c, c->srv->stopping ? 503 : 200, o, 0, ka);
        json_decref(o);
        return finish(c, ka);
    }
    char params[2][ID_MAX];
    const route *found = NULL;
    bool path_known = false;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        if (!match(routes[i].pattern, path, params)) continue;
        path_known = true;
        if (strcmp(routes[i].method, method) == 0) {
            found = &routes[i];
            break;
        }
    }
    if (!found && path_known)
        return reply_now(c, 405, "method_not_allowed", "This path does not take that method.");
    if (!found) return reply_now(c, 404, "not_found", "There is no such path.");
    bool has_body = h->body.len > 0;
    if (has_body) {
        const char *ct = http_in_header(h, "content-type");
        if (!ct || strncasecmp(ct, "application/json", 16) != 0 ||
            (ct[16] && ct[16] != ';' && ct[16] != ' ' && ct[16] != '\t'))
            return reply_now(c, 415, "unsupported_media_type",
                             "Send the body as Content-Type: application/json.");
    }
    api_req *r = calloc(1, sizeof *r);
    if (!r) abort();
    r->w.data = r;
    r->c = c;
    r->s = c->srv;
    r->fn = found->fn;
    r->need_auth = found->auth;
    snprintf(r->method, sizeof r->method, "%s", method);
    snprintf(r->path, sizeof r->path, "%s", path);
    const char *q = strchr(url, '?');
    snprintf(r->query, sizeof r->query, "%s", q ? q + 1 : "");
    memcpy(r->param, params[0], ID_MAX);
    memcpy(r->param2, params[1], ID_MAX);
    const char *az = http_in_header(h, "authorization");
    r->authz = az ? strdup(az) : NULL;
    r->body = h->body; /* moved */
    buf_init(&h->body);
    r->has_body = has_body;
    snprintf(r->ip, sizeof r->ip, "%s", c->ip);
    r->keep_alive = http_in_keep_alive(h);
    c->busy = true;
    conn_ref(c);
    if (found->pipeline) {
        item *it = calloc(1, sizeof *it);
        if (!it) abort();
        it->kind = ITEM_REST;
        it->req = r; /* the request holds the conn reference, not the item */
        pipeline_submit(c->srv, it);
        return;
    }
    uv_queue_work(c->srv->loop, &r->w, work, done);
}
