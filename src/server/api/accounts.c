/* accounts.c: POST /v1/accounts, POST /v1/sessions, DELETE /v1/sessions/current.
 * Runs on worker threads: Argon2id hashing is slow on purpose. */
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "server/api/api.h"
#include "server/api/auth.h"
#include "server/api/fields.h"

/* Creates a device for the user and answers with the session (token) shape. The device cap is
 * checked inside the same write transaction, so concurrent log-ins cannot pass it. */
static void new_session(api_req *r, store_t *st, const st_user *u, const char *device_name,
                        int status, bool check_cap)
{
    st_device d = {0};
    id_new(d.id, "d_");
    snprintf(d.user_id, sizeof d.user_id, "%s", u->id);
    snprintf(d.name, sizeof d.name, "%s", device_name);
    d.created_at = d.last_seen_at = now_ms();
    if (store_begin(st) != ST_OK) return;
    if (check_cap) {
        int n = 0;
        if (store_device_count(st, u->id, &n) != ST_OK) goto fail;
        if (n >= r->s->cfg.max_devices) {
            store_rollback(st);
            api_error(r, 409, "too_many_devices",
                      "This account has the most devices it may have; remove one first.");
            json_object_set_new(json_object_get(r->out, "error"), "devices",
                                devices_json(st, u->id, NULL));
            return;
        }
    }
    if (store_device_create(st, &d) != ST_OK || store_commit(st) != ST_OK) goto fail;
    int64_t exp;
    char *token = token_issue(r->s, u->id, d.id, &exp);
    if (!token) return api_error(r, 500, "internal", "The token could not be made; retry.");
    api_ok(r, status,
           json_pack("{s:o, s:o, s:s, s:I}", "user", user_me_json(u), "device",
                     device_json(&d, d.id), "token", token, "expires_at", (json_int_t)exp));
    free(token);
    return;
fail:
    store_rollback(st);
}

void h_accounts_create(api_req *r, store_t *st)
{
    if (!r->in) return api_error(r, 400, "invalid_json", "Send the account as a JSON object.");
    st_user u = {0};
    char devname[65] = "device";
    const char *bad = field_username(json_object_get(r->in, "username"), u.username);
    if (!bad) bad = field_password(json_object_get(r->in, "password"));
    json_t *v;
    snprintf(u.display_name, sizeof u.display_name, "%s", u.username);
    if (!bad && (v = json_object_get(r->in, "display_name")))
        bad = field_display_name(v, u.display_name);
    if (!bad && (v = json_object_get(r->in, "email"))) bad = field_email(v, u.email);
    if (!bad && (v = json_object_get(r->in, "phone"))) bad = field_phone(v, u.phone);
    if (!bad && (v = json_object_get(r->in, "device_name"))) bad = field_device_name(v, devname);
    if (bad) return api_error(r, 400, "invalid_request", bad);

    char hash[128];
    if (pw_hash(r->s, json_string_value(json_object_get(r->in, "password")), hash) != 0)
        return api_error(r, 503, "unavailable", "The server is short of memory; retry.");
    id_new(u.id, "u_");
    strcpy(u.kind, "user");
    strcpy(u.settings, "{}");
    u.created_at = now_ms();
    const char *field = NULL;
    int rc = store_user_create(st, &u, hash, &field);
    if (rc == ST_CONFLICT) return field_conflict(r, field);
    if (rc != ST_OK) return;
    log_info("account %s created (%s)", u.id, u.username);
    new_session(r, st, &u, devname, 201, false);
}

void h_sessions_create(api_req *r, store_t *st)
{
    if (!r->in)
        return api_error(r, 400, "invalid_json", "Send {login, password} as a JSON object.");
    const char *login = json_string_value(json_object_get(r->in, "login"));
    const char *password = json_string_value(json_object_get(r->in, "password"));
    char devname[65] = "device";
    json_t *v = json_object_get(r->in, "device_name");
    const char *bad = v ? field_device_name(v, devname) : NULL;
    if (!login || !*login || strlen(login) > 254 || !password || strlen(password) > 1024)
        bad = "login (username, email or phone) and password are needed.";
    if (bad) return api_error(r, 400, "invalid_request", bad);

    char key[260];
    snprintf(key, sizeof key, "%s", login);
    for (char *p = key; *p; p++)
        if (*p >= 'A' && *p <= 'Z') *p = (char)(*p + 32);
    int wait = login_throttled(key, r->ip);
    if (wait > 0) {
        r->retry_after = wait;
        return api_error(r, 429, "rate_limited", "Too many failed log-ins; wait and try again.");
    }
    st_user u;
    char hash[256];
    int rc = store_user_find_login(st, login, &u, hash);
    if (rc == ST_ERR) return;
    bool ok = rc == ST_OK ? pw_verify(hash, password) : (pw_dummy_verify(password), false);
    if (!ok) {
        login_failed(key, r->ip);
        return api_error(r, 401, "invalid_credentials", "The login or the password is wrong.");
    }
    login_succeeded(key);
    new_session(r, st, &u, devname, 200, true);
}

void h_sessions_delete(api_req *r, store_t *st)
{
    int rc = store_device_delete(st, r->user, r->dev);
    if (rc == ST_ERR) return;
    snprintf(r->kick_dev, sizeof r->kick_dev, "%s", r->dev);
    r->status = 204;
}
