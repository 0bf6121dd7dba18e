/* tparley.c: Parley-level helpers on top of the HTTP and WebSocket clients. */
#include "tclient.h"
#include "tnet.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void fill_user(tuser *u, json_t *resp, const char *password)
{
    memset(u, 0, sizeof *u);
    snprintf(u->id, sizeof u->id, "%s", tj_str(resp, "user.id"));
    snprintf(u->device, sizeof u->device, "%s", tj_str(resp, "device.id"));
    snprintf(u->username, sizeof u->username, "%s", tj_str(resp, "user.username"));
    snprintf(u->password, sizeof u->password, "%s", password);
    snprintf(u->token, sizeof u->token, "%s", tj_str(resp, "token"));
    u->expires_at = tj_int(resp, "expires_at");
}

int tuser_register(int port, const char *username, const char *password, tuser *u)
{
    int status;
    json_t *resp;
    if (thttp_reqp(port, "POST", "/v1/accounts", NULL, &status, &resp, "{s:s, s:s}", "username",
                   username, "password", password) != 0)
        return T_ERR;
    if (status == 201)
        fill_user(u, resp, password);
    else
        t_note("register %s: %d %s", username, status, tj_dump(resp));
    json_decref(resp);
    return status;
}

int tuser_login(int port, const char *login, const char *password, tuser *u)
{
    int status;
    json_t *resp;
    if (thttp_reqp(port, "POST", "/v1/sessions", NULL, &status, &resp, "{s:s, s:s}", "login", login,
                   "password", password) != 0)
        return T_ERR;
    if (status == 200) fill_user(u, resp, password);
    json_decref(resp);
    return status;
}

int tuser_new(int port, const char *prefix, tuser *u)
{
    char name[33];
    t_name(name, sizeof name, prefix);
    return tuser_register(port, name, "correct horse battery", u);
}

tws *tws_auth(int port, const char *token, int64_t *head)
{
    tws *ws = tws_open(port);
    if (!ws) return NULL;
    if (tws_sendp(ws, "{s:s, s:s}", "type", "auth", "token", token) != 0) {
        tws_free(ws);
        return NULL;
    }
    json_t *ready = tws_recv_reply(ws, 0);
    if (ready && strcmp(tj_str(ready, "type"), "ready") != 0) {
        t_note("ws: expected ready, got %s", tj_dump(ready));
        json_decref(ready);
        ready = NULL;
    }
    if (!ready) {
        tws_free(ws);
        return NULL;
    }
    json_t *claims = tjwt_part(token, 1);
    bool ok = json_is_integer(tj_get(ready, "head")) && tj_int(ready, "head") >= 0;
    if (claims && (strcmp(tj_str(ready, "user"), tj_str(claims, "sub")) != 0 ||
                   strcmp(tj_str(ready, "device"), tj_str(claims, "dev")) != 0))
        ok = false;
    if (!ok) t_note("ws: ready does not match the token %s: %s", tj_dump(claims), tj_dump(ready));
    if (head) *head = tj_int(ready, "head");
    json_decref(claims);
    json_decref(ready);
    if (!ok) {
        tws_free(ws);
        return NULL;
    }
    return ws;
}

tws *tws_live(int port, const tuser *u, const char *label)
{
    int64_t head;
    tws *ws = tws_auth(port, u->token, &head);
    if (!ws) return NULL;
    snprintf(ws->label, sizeof ws->label, "%.31s", label ? label : u->username);
    json_t *msgs = json_array();
    int rc = tws_sync_all(ws, head, 0, msgs, NULL, NULL);
    if (rc == 0 && json_array_size(msgs) != 0) {
        t_note("ws[%s]: sync from head %lld returned %zu messages", ws->label, (long long)head,
               json_array_size(msgs));
        rc = T_ERR;
    }
    json_decref(msgs);
    if (rc != 0) {
        tws_free(ws);
        return NULL;
    }
    return ws;
}

static json_t *send_frame(const char *id, const char *to, const char *cmid, const char *text)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:{s:s}}", "type", "send", "id", id, "to", to,
                     "cmid", cmid, "kind", "text", "body", "text", text);
}

int tws_send_textmsg(tws *ws, const char *id, const char *to, const char *cmid, const char *text)
{
    json_t *j = send_frame(id, to, cmid, text);
    int rc = tws_send_json(ws, j);
    json_decref(j);
    return rc;
}

/* retry_after of a rate_limited error frame in ms, clamped to something sane. */
static int retry_ms(json_t *err)
{
    int64_t r = tj_int(err, "retry_after");
    if (r == INT64_MIN) r = tj_int(err, "error.retry_after");
    if (r == INT64_MIN || r < 1) r = 50;
    if (r > 2000) r = 2000;
    return (int)r;
}

json_t *tws_send_msg(tws *ws, const char *to, const char *cmid, const char *text)
{
    char id[32];
    t_id(id, sizeof id, "m");
    for (int attempt = 0; attempt < 100; attempt++) {
        if (tws_send_textmsg(ws, id, to, cmid, text) != 0) return NULL;
        json_t *j = tws_recv_reply(ws, 0);
        if (!j) return NULL;
        const char *type = tj_str(j, "type");
        if (strcmp(type, "ack") == 0 && strcmp(tj_str(j, "id"), id) == 0) return j;
        if (strcmp(type, "error") == 0 && strcmp(tj_str(j, "code"), "rate_limited") == 0) {
            t_sleep_ms(retry_ms(j)); /* obeying the server, not synchronising */
            json_decref(j);
            continue;
        }
        t_note("ws[%s]: send %s (cmid %s): expected the ack, got %s", ws->label, id, cmid,
               tj_dump(j));
        json_decref(j);
        return NULL;
    }
    t_note("ws[%s]: send cmid %s: still rate limited after 100 tries", ws->label, cmid);
    return NULL;
}

int tws_send_batch(tws *ws, const char *to, int n, char **cmids, char **texts, json_t **acks,
                   int window)
{
    char prefix[24];
    t_id(prefix, sizeof prefix, "b");
    int *retry = malloc(sizeof(int) * (size_t)(n + 1));
    int rq_head = 0, rq_tail = 0; /* each index is queued at most once at a time */
    int next = 0, outstanding = 0, done = 0, rc = 0;
    long long pause_until = 0, last_progress = mono_ms();
    for (int i = 0; i < n; i++) acks[i] = NULL;
    while (done < n) {
        long long now = mono_ms();
        while (outstanding < window && now >= pause_until && (rq_head != rq_tail || next < n)) {
            int i = rq_head != rq_tail ? retry[rq_head++ % (n + 1)] : next++;
            char id[48];
            snprintf(id, sizeof id, "%s_%d", prefix, i);
            json_t *j = send_frame(id, to, cmids[i], texts[i]);
            tws_queue_json(ws, j);
            json_decref(j);
            outstanding++;
        }
        int wait = 50;
        if (pause_until > now && pause_until - now < wait) wait = (int)(pause_until - now);
        tws_pump(&ws, 1, wait);
        tws_msg m;
        int r;
        while ((r = tws_next(ws, &m)) == 1) {
            json_t *j = m.opcode == WS_TEXT ? json_loadb((char *)m.data, m.len, 0, NULL) : NULL;
            if (j && tws_hold_side(ws, j)) {
                tws_msg_free(&m);
                continue;
            }
            const char *id = tj_str(j, "id");
            size_t pl = strlen(prefix);
            int idx = -1;
            if (strncmp(id, prefix, pl) == 0 && id[pl] == '_') idx = atoi(id + pl + 1);
            const char *type = tj_str(j, "type");
            if (idx >= 0 && idx < n && strcmp(type, "ack") == 0 && !acks[idx]) {
                acks[idx] = j;
                j = NULL;
                done++;
                outstanding--;
                last_progress = mono_ms();
            } else if (idx >= 0 && idx < n && strcmp(type, "error") == 0 &&
                       strcmp(tj_str(j, "code"), "rate_limited") == 0 && !acks[idx]) {
                retry[rq_tail++ % (n + 1)] = idx;
                outstanding--;
                pause_until = mono_ms() + retry_ms(j);
                last_progress = mono_ms();
            } else {
                if (m.opcode == WS_CLOSE)
                    t_note("ws[%s]: batch: closed %d \"%s\"", ws->label, m.close_code,
                           (char *)m.data);
                else
                    t_note("ws[%s]: batch: unexpected frame %.300s", ws->label, (char *)m.data);
                rc = T_ERR;
            }
            json_decref(j);
            tws_msg_free(&m);
            if (rc) break;
        }
        if (r < 0) rc = T_ERR;
        if (!rc && ws->eof && done < n) {
            t_note("ws[%s]: batch: connection closed after %d of %d acks", ws->label, done, n);
            rc = T_ERR;
        }
        if (!rc && mono_ms() - last_progress > 2 * T_TIMEOUT_MS) {
            t_note("ws[%s]: batch: no progress for %d ms (%d of %d acked, %d outstanding)",
                   ws->label, 2 * T_TIMEOUT_MS, done, n, outstanding);
            rc = T_TIMEOUT;
        }
        if (rc) break;
    }
    free(retry);
    return rc;
}

json_t *tws_sync_page(tws *ws, int64_t after, int limit, json_t *msgs)
{
    char id[32];
    t_id(id, sizeof id, "sync");
    int rc = limit > 0 ? tws_sendp(ws, "{s:s, s:s, s:I, s:i}", "type", "sync", "id", id, "after",
                                   (json_int_t)after, "limit", limit)
                       : tws_sendp(ws, "{s:s, s:s, s:I}", "type", "sync", "id", id, "after",
                                   (json_int_t)after);
    if (rc != 0) return NULL;
    for (;;) {
        json_t *j = tws_recv_reply(ws, 0);
        if (!j) return NULL;
        const char *type = tj_str(j, "type");
        if (strcmp(type, "msg") == 0) {
            json_array_append_new(msgs, j);
            continue;
        }
        if (strcmp(type, "synced") == 0 && strcmp(tj_str(j, "id"), id) == 0) return j;
        /* Frames that are not answers (presence, typing, receipts, events) may come at any
         * time; a client reads past them. */
        if (!strcmp(type, "presence") || !strcmp(type, "typing") || !strcmp(type, "receipt") ||
            !strcmp(type, "event")) {
            json_decref(j);
            continue;
        }
        t_note("ws[%s]: sync %s: expected msg or synced, got %s", ws->label, id, tj_dump(j));
        json_decref(j);
        return NULL;
    }
}

int tws_sync_all(tws *ws, int64_t after, int limit, json_t *msgs, int64_t *upto, int *pages)
{
    int np = 0;
    for (;;) {
        size_t before = json_array_size(msgs);
        json_t *s = tws_sync_page(ws, after, limit, msgs);
        if (!s) return T_ERR;
        np++;
        size_t got = json_array_size(msgs) - before;
        int64_t want = got ? tj_int(json_array_get(msgs, json_array_size(msgs) - 1), "pos") : after;
        int64_t u = tj_int(s, "upto");
        int more = tj_bool(s, "more");
        if (u != want || more < 0) {
            t_note("ws[%s]: sync after %lld: synced %s, want upto %lld (%zu msgs) and a boolean "
                   "more",
                   ws->label, (long long)after, tj_dump(s), (long long)want, got);
            json_decref(s);
            return T_ERR;
        }
        json_decref(s);
        after = u;
        if (!more) break;
        if (np > 100000) return T_ERR;
    }
    if (upto) *upto = after;
    if (pages) *pages = np;
    return 0;
}
