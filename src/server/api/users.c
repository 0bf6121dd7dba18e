/* users.c: profiles, search and devices (GET/PATCH /v1/me, /v1/users, /v1/devices). */
#include <string.h>

#include "server/api/api.h"
#include "server/api/fields.h"

json_t *user_public_json(const st_user *u)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:I}", "id", u->id, "username", u->username,
                     "display_name", u->display_name, "avatar", u->avatar, "kind", u->kind,
                     "created_at", (json_int_t)u->created_at);
}

json_t *user_me_json(const st_user *u)
{
    json_t *o = user_public_json(u);
    json_error_t err;
    json_t *settings = json_loads(u->settings, 0, &err);
    json_object_set_new(o, "email", json_string(u->email));
    json_object_set_new(o, "phone", json_string(u->phone));
    json_object_set_new(o, "settings", settings ? settings : json_object());
    return o;
}

json_t *device_json(const st_device *d, const char *current)
{
    return json_pack("{s:s, s:s, s:I, s:I, s:b}", "id", d->id, "name", d->name, "created_at",
                     (json_int_t)d->created_at, "last_seen_at", (json_int_t)d->last_seen_at,
                     "current", current && strcmp(d->id, current) == 0);
}

void h_me_get(api_req *r, store_t *st)
{
    st_user u;
    int rc = store_user_get(st, r->user, &u);
    if (rc == ST_OK)
        api_ok(r, 200, user_me_json(&u));
    else if (rc == ST_NOTFOUND)
        api_error(r, 401, "device_revoked", "This account no longer exists.");
}

void h_me_patch(api_req *r, store_t *st)
{
    if (!r->in)
        return api_error(r, 400, "invalid_json", "Send the fields to change as a JSON object.");
    st_user u;
    if (store_user_get(st, r->user, &u) != ST_OK) return;
    const char *key;
    json_t *v;
    json_object_foreach(r->in, key, v)
    {
        const char *bad = NULL;
        if (strcmp(key, "display_name") == 0)
            bad = field_display_name(v, u.display_name);
        else if (strcmp(key, "email") == 0)
            bad = field_email(v, u.email);
        else if (strcmp(key, "phone") == 0)
            bad = field_phone(v, u.phone);
        else if (strcmp(key, "avatar") == 0)
            bad = field_avatar(v, u.avatar);
        else if (strcmp(key, "settings") == 0)
            bad = field_settings(v, u.settings);
        else
            bad = "Only display_name, email, phone, avatar and settings can be changed.";
        if (bad) return api_error(r, 400, "invalid_request", bad);
    }
    const char *field = NULL;
    int rc = store_user_update(st, &u, &field);
    if (rc == ST_CONFLICT) return field_conflict(r, field);
    if (rc == ST_OK) api_ok(r, 200, user_me_json(&u));
}

void h_user_get(api_req *r, store_t *st)
{
    st_user u;
    int rc = id_valid(r->param, "u_") ? store_user_get(st, r->param, &u) : ST_NOTFOUND;
    if (rc == ST_OK)
        api_ok(r, 200, user_public_json(&u));
    else if (rc == ST_NOTFOUND)
        api_error(r, 404, "not_found", "There is no user with that id.");
}

void h_users_search(api_req *r, store_t *st)
{
    char q[65];
    if (!api_query(r, "query", q, sizeof q) || !q[0])
        return api_error(r, 400, "invalid_request", "query must be 1 to 64 bytes.");
    st_user found[20];
    int n = store_user_search(st, q, found, 20);
    if (n < 0) return;
    json_t *arr = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(arr, user_public_json(&found[i]));
    api_ok(r, 200, json_pack("{s:o}", "users", arr));
}

json_t *devices_json(store_t *st, const char *user, const char *current)
{
    st_device ds[64];
    int n = store_device_list(st, user, ds, 64);
    if (n < 0) return NULL;
    json_t *arr = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(arr, device_json(&ds[i], current));
    return arr;
}

void h_devices_list(api_req *r, store_t *st)
{
    json_t *arr = devices_json(st, r->user, r->dev);
    if (arr) api_ok(r, 200, json_pack("{s:o}", "devices", arr));
}

void h_device_delete(api_req *r, store_t *st)
{
    int rc = id_valid(r->param, "d_") ? store_device_delete(st, r->user, r->param) : ST_NOTFOUND;
    if (rc == ST_NOTFOUND)
        return api_error(r, 404, "not_found", "You have no device with that id.");
    if (rc != ST_OK) return;
    snprintf(r->kick_dev, sizeof r->kick_dev, "%s", r->param);
    r->status = 204;
}
