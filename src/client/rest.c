/* rest.c: the REST half of the engine, over libcurl, on the application thread.
 *
 * Each call is one blocking request on a fresh easy handle (the calls are rare: sign-up, log-in,
 * profile and device lists), with c->rest_timeout_ms as its limit. When a server cannot be
 * reached at all (connection refused, no route, name not resolved, timeout while connecting),
 * the next one in the list is tried; an answer of any status from a server ends the search.
 * Known limit: one request at a time per client, no connection reuse between calls.
 */
#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/internal.h"
#include "common/buf.h"

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init_once(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    buf_t *b = ud;
    if (b->len + size * n > (8u << 20)) return 0; /* no REST answer is that big */
    buf_append(b, p, size * n);
    return size * n;
}

/* True when curl never got an answer from this server, so another may do better. */
static bool unreachable(CURLcode rc)
{
    return rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST ||
           rc == CURLE_COULDNT_RESOLVE_PROXY || rc == CURLE_OPERATION_TIMEDOUT ||
           rc == CURLE_SEND_ERROR || rc == CURLE_RECV_ERROR || rc == CURLE_GOT_NOTHING ||
           rc == CURLE_SSL_CONNECT_ERROR;
}

static CURLcode one(pl_client *c, const char *base, const char *method, const char *path,
                    const char *token, const char *body, long *status, buf_t *out)
{
    CURL *h = curl_easy_init();
    if (!h) return CURLE_OUT_OF_MEMORY;
    char url[2048];
    snprintf(url, sizeof url, "%s%s", base, path);
    /* a base given with a trailing slash must not make "//v1" */
    size_t bl = strlen(base);
    if (bl && base[bl - 1] == '/') snprintf(url, sizeof url, "%.*s%s", (int)(bl - 1), base, path);
    struct curl_slist *hdr = NULL;
    char auth[4096];
    if (token) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
        hdr = curl_slist_append(hdr, auth);
    }
    if (body) hdr = curl_slist_append(hdr, "Content-Type: application/json");
    hdr = curl_slist_append(hdr, "Accept: application/json");
    hdr = curl_slist_append(hdr, "Expect:");
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)c->rest_timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)c->connect_timeout_ms);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "libparley/" PL_VERSION);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, out);
    if (body) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    }
    CURLcode rc = curl_easy_perform(h);
    if (rc == CURLE_OK) curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
    curl_slist_free_all(hdr);
    curl_easy_cleanup(h);
    return rc;
}

int pl__rest(pl_client *c, const char *method, const char *path, const char *token, json_t *body,
             long *status, json_t **resp)
{
    pthread_once(&curl_once, curl_init_once);
    *status = 0;
    if (resp) *resp = NULL;
    char *btext = body ? json_dumps(body, JSON_COMPACT) : NULL;
    if (body && !btext) return pl__fail(c, PL_ENOMEM, NULL);
    buf_t out;
    buf_init(&out);
    int start = atomic_load(&c->server_idx);
    CURLcode rc = CURLE_COULDNT_CONNECT;
    char why[256] = "";
    for (size_t i = 0; i < c->nservers; i++) {
        int idx = (int)((start + (int)i) % (int)c->nservers);
        buf_reset(&out);
        rc = one(c, c->servers[idx], method, path, token, btext, status, &out);
        if (rc == CURLE_OK) {
            atomic_store(&c->server_idx, idx);
            break;
        }
        snprintf(why, sizeof why, "%s: %s", c->servers[idx], curl_easy_strerror(rc));
        if (!unreachable(rc)) break;
    }
    free(btext);
    if (rc != CURLE_OK) {
        buf_free(&out);
        char msg[400];
        snprintf(msg, sizeof msg, "no server could be reached (%s)", why);
        return pl__fail(c, rc == CURLE_OPERATION_TIMEDOUT ? PL_ETIMEDOUT : PL_ENET, msg);
    }
    json_t *j = NULL;
    if (out.len) j = json_loadb((const char *)out.data, out.len, 0, NULL);
    buf_free(&out);
    if (*status >= 200 && *status < 300) {
        c->errmsg[0] = 0;
        if (resp)
            *resp = j;
        else
            json_decref(j);
        return 0;
    }
    json_t *e = json_object_get(j, "error");
    const char *code = json_string_value(json_object_get(e, "code"));
    const char *msg = json_string_value(json_object_get(e, "message"));
    int err = pl__map_error(*status, code);
    char text[512];
    if (msg)
        snprintf(text, sizeof text, "%s", msg);
    else
        snprintf(text, sizeof text, "%s (HTTP %ld)", pl_strerror(err), *status);
    pl__fail(c, err, text);
    if (resp)
        *resp = j;
    else
        json_decref(j);
    return err;
}

int pl__rest_at(pl_client *c, const char *base, const char *method, const char *path,
                const char *token, json_t *body, long *status, json_t **resp)
{
    pthread_once(&curl_once, curl_init_once);
    *status = 0;
    if (resp) *resp = NULL;
    char *btext = body ? json_dumps(body, JSON_COMPACT) : NULL;
    if (body && !btext) return PL_ENOMEM;
    buf_t out;
    buf_init(&out);
    CURLcode rc = one(c, base, method, path, token, btext, status, &out);
    free(btext);
    if (rc != CURLE_OK) {
        buf_free(&out);
        return rc == CURLE_OPERATION_TIMEDOUT ? PL_ETIMEDOUT : PL_ENET;
    }
    json_t *j = out.len ? json_loadb((const char *)out.data, out.len, 0, NULL) : NULL;
    buf_free(&out);
    int err = 0;
    if (*status < 200 || *status >= 300) {
        json_t *e = json_object_get(j, "error");
        err = pl__map_error(*status, json_string_value(json_object_get(e, "code")));
    }
    if (resp)
        *resp = j;
    else
        json_decref(j);
    return err;
}

static void scopy(char *dst, size_t cap, json_t *v)
{
    snprintf(dst, cap, "%s", json_is_string(v) ? json_string_value(v) : "");
}

void pl__user_from_json(pl_user *u, json_t *j)
{
    memset(u, 0, sizeof *u);
    scopy(u->id, sizeof u->id, json_object_get(j, "id"));
    scopy(u->username, sizeof u->username, json_object_get(j, "username"));
    scopy(u->display_name, sizeof u->display_name, json_object_get(j, "display_name"));
    scopy(u->kind, sizeof u->kind, json_object_get(j, "kind"));
    u->created_at = json_integer_value(json_object_get(j, "created_at"));
}

static void device_from_json(pl_device *d, json_t *j)
{
    memset(d, 0, sizeof *d);
    scopy(d->id, sizeof d->id, json_object_get(j, "id"));
    scopy(d->name, sizeof d->name, json_object_get(j, "name"));
    d->created_at = json_integer_value(json_object_get(j, "created_at"));
    d->last_seen_at = json_integer_value(json_object_get(j, "last_seen_at"));
    d->current = json_is_true(json_object_get(j, "current"));
}

/* ------------------------------------------------------------------------ sessions */

/* Keeps the session of a 200/201 answer of POST /v1/accounts or /v1/sessions. */
static int keep_session(pl_client *c, json_t *resp)
{
    const char *user = json_string_value(json_object_get(json_object_get(resp, "user"), "id"));
    const char *dev = json_string_value(json_object_get(json_object_get(resp, "device"), "id"));
    const char *uname =
        json_string_value(json_object_get(json_object_get(resp, "user"), "username"));
    const char *token = json_string_value(json_object_get(resp, "token"));
    if (!user || !dev || !token) return pl__fail(c, PL_EPROTO, "the server's answer has no token");
    pl_user u;
    pl__user_from_json(&u, json_object_get(resp, "user"));
    pl__store_user_put(c->db, &u);
    return pl_session_adopt(c, user, dev, uname, token);
}

/* A store that already holds another user's messages must not take a new account. */
static int check_store_free(pl_client *c, const char *login)
{
    if (c->sess.user[0] && pl__store_has_messages(c->db) &&
        (!login || strcmp(login, c->sess.username) != 0))
        return pl__fail(c, PL_EEXIST,
                        "this device store belongs to another account; "
                        "use another store (profile) for this one");
    return 0;
}

int pl_account_register(pl_client *c, const char *username, const char *password,
                        const char *display_name)
{
    if (!username || !password) return pl__fail(c, PL_EINVAL, "username and password are needed");
    int err = check_store_free(c, NULL);
    if (err) return err;
    json_t *body = json_pack("{s:s, s:s, s:s}", "username", username, "password", password,
                             "device_name", c->device_name);
    if (display_name && *display_name)
        json_object_set_new(body, "display_name", json_string(display_name));
    long status;
    json_t *resp;
    err = pl__rest(c, "POST", "/v1/accounts", NULL, body, &status, &resp);
    json_decref(body);
    if (err == 0) err = keep_session(c, resp);
    json_decref(resp);
    if (err == 0 && pl_e2e_enable(c) != 0) c->errmsg[0] = 0; /* the account works without */
    return err;
}

int pl_session_login(pl_client *c, const char *login, const char *password)
{
    if (!login || !password) return pl__fail(c, PL_EINVAL, "login and password are needed");
    int err = check_store_free(c, login);
    if (err) return err;
    json_t *body = json_pack("{s:s, s:s, s:s}", "login", login, "password", password, "device_name",
                             c->device_name);
    long status;
    json_t *resp;
    err = pl__rest(c, "POST", "/v1/sessions", NULL, body, &status, &resp);
    json_decref(body);
    if (err == 0) {
        /* logging in again as someone else on a store without messages: start clean */
        const char *uid = json_string_value(json_object_get(json_object_get(resp, "user"), "id"));
        if (uid && c->sess.user[0] && strcmp(uid, c->sess.user) != 0 &&
            pl__store_has_messages(c->db))
            err = pl__fail(c, PL_EEXIST, "this device store belongs to another account");
        else
            err = keep_session(c, resp);
    }
    json_decref(resp);
    if (err == 0 && pl_e2e_enable(c) != 0) c->errmsg[0] = 0;
    return err;
}

int pl_session_logout(pl_client *c)
{
    if (!c->token) return pl__fail(c, PL_ENOSESSION, NULL);
    long status;
    int err = pl__rest(c, "DELETE", "/v1/sessions/current", c->token, NULL, &status, NULL);
    /* Forget the token even when the server already did (ETOKEN): it is of no use either way. */
    if (err == 0 || err == PL_ETOKEN) {
        pl_client_disconnect(c);
        pl__meta_set(c->db, "token", "");
        free(c->token);
        c->token = NULL;
        err = 0;
    }
    return err;
}

/* --------------------------------------------------------------------- users, devices */

int pl_me_get(pl_client *c, pl_user *out)
{
    if (!c->token) return pl__fail(c, PL_ENOSESSION, NULL);
    long status;
    json_t *resp;
    int err = pl__rest(c, "GET", "/v1/me", c->token, NULL, &status, &resp);
    if (err == 0) {
        pl__user_from_json(out, resp);
        pl__store_user_put(c->db, out);
    }
    json_decref(resp);
    return err;
}

int pl_user_get(pl_client *c, const char *id, pl_user *out)
{
    if (!c->token) return pl__fail(c, PL_ENOSESSION, NULL);
    char *esc = curl_easy_escape(NULL, id, 0);
    if (!esc) return pl__fail(c, PL_ENOMEM, NULL);
    char path[256];
    snprintf(path, sizeof path, "/v1/users/%s", esc);
    curl_free(esc);
    long status;
    json_t *resp;
    int err = pl__rest(c, "GET", path, c->token, NULL, &status, &resp);
    if (err == 0) {
        pl__user_from_json(out, resp);
        pl__store_user_put(c->db, out);
    }
    json_decref(resp);
    return err;
}

int pl_users_search(pl_client *c, const char *query, pl_user **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (!c->token) return pl__fail(c, PL_ENOSESSION, NULL);
    if (!query || !*query) return pl__fail(c, PL_EINVAL, "an empty search");
    char *esc = curl_easy_escape(NULL, query, 0);
    if (!esc) return pl__fail(c, PL_ENOMEM, NULL);
    char path[512];
    snprintf(path, sizeof path, "/v1/users?query=%s", esc);
    curl_free(esc);
    long status;
    json_t *resp;
    int err = pl__rest(c, "GET", path, c->token, NULL, &status, &resp);
    json_t *arr = json_object_get(resp, "users");
    if (err == 0 && json_array_size(arr) > 0) {
        *out = calloc(json_array_size(arr), sizeof **out);
        if (!*out) err = pl__fail(c, PL_ENOMEM, NULL);
        for (size_t i = 0; !err && i < json_array_size(arr); i++) {
            pl__user_from_json(&(*out)[i], json_array_get(arr, i));
            pl__store_user_put(c->db, &(*out)[i]);
            (*n)++;
        }
    }
    json_decref(resp);
    return err;
}

int pl_user_resolve(pl_client *c, const char *name, pl_user *out)
{
    if (!name || !*name) return pl__fail(c, PL_EINVAL, "no user named");
    memset(out, 0, sizeof *out);
    if (strncmp(name, "u_", 2) == 0) {
        if (pl__store_user_get(c->db, name, out) == 0 && out->username[0]) return 0;
        int err = pl_user_get(c, name, out);
        if (err == PL_ENET || err == PL_ETIMEDOUT) { /* offline: the id is enough to send */
            snprintf(out->id, sizeof out->id, "%s", name);
            return 0;
        }
        return err;
    }
    if (name[0] == '@') name++;
    if (pl__store_user_by_name(c->db, name, out) == 0) return 0;
    pl_user *found;
    size_t n;
    int err = pl_users_search(c, name, &found, &n);
    if (err) return err;
    err = pl__fail(c, PL_ENOTFOUND, "nobody has that username");
    for (size_t i = 0; i < n; i++)
        if (strcasecmp(found[i].username, name) == 0) {
            *out = found[i];
            err = 0;
            c->errmsg[0] = 0;
        }
    free(found);
    return err;
}

int pl_devices_list(pl_client *c, pl_device **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (!c->token) return pl__fail(c, PL_ENOSESSION, NULL);
    long status;
    json_t *resp;
    int err = pl__rest(c, "GET", "/v1/devices", c->token, NULL, &status, &resp);
    json_t *arr = json_object_get(resp, "devices");
    if (err == 0 && json_array_size(arr) > 0) {
        *out = calloc(json_array_size(arr), sizeof **out);
        if (!*out) err = pl__fail(c, PL_ENOMEM, NULL);
        for (size_t i = 0; !err && i < json_array_size(arr); i++)
            device_from_json(&(*out)[(*n)++], json_array_get(arr, i));
    }
    json_decref(resp);
    return err;
}

int pl_device_remove(pl_client *c, const char *id)
{
    if (!c->token) return pl__fail(c, PL_ENOSESSION, NULL);
    if (!id || !*id || strchr(id, '/') || strchr(id, '?'))
        return pl__fail(c, PL_EINVAL, "not a device id");
    char path[256];
    snprintf(path, sizeof path, "/v1/devices/%s", id);
    long status;
    return pl__rest(c, "DELETE", path, c->token, NULL, &status, NULL);
}
