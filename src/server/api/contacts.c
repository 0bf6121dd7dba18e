/* contacts.c: contacts, friend invitations and blocks.
 *
 * A pair of users has two rows, one per side: "outgoing" for who invited, "incoming" for who was
 * invited, both "friend" once accepted. PUT /v1/contacts/{user} invites, or accepts a pending
 * invitation; DELETE declines, cancels or removes. The other user learns of each through an
 * `event` frame. A block removes the contact and refuses the blocked user's messages and
 * invitations (they get `blocked`; the blocker hears nothing). The writes run on the pipeline
 * thread so their events leave after the commit. */
#include <stdlib.h>
#include <string.h>

#include "server/api/api.h"
#include "server/pipeline/pipeline.h"

static bool other_user(api_req *r, store_t *st, st_user *u)
{
    int rc = id_valid(r->param, "u_") ? store_user_get(st, r->param, u) : ST_NOTFOUND;
    if (rc == ST_NOTFOUND)
        api_error(r, 404, "not_found", "There is no user with that id.");
    else if (rc == ST_OK && strcmp(u->id, r->user) == 0) {
        api_error(r, 400, "invalid_request", "That is you.");
        return false;
    }
    return rc == ST_OK;
}

static void event_to(api_req *r, const char *user, const char *event)
{
    json_t *o = json_pack("{s:s, s:s, s:s}", "type", "event", "event", event, "user", r->user);
    pipeline_note(r->pitem, user, NULL, json_dumps(o, JSON_COMPACT));
    json_decref(o);
}

struct list_ctx {
    store_t *st;
    json_t *arr;
};

static void add_contact(void *ctx, const char *other, const char *state, int64_t since)
{
    struct list_ctx *lc = ctx;
    st_user u;
    if (store_user_get(lc->st, other, &u) != ST_OK) return;
    json_array_append_new(lc->arr, json_pack("{s:o, s:s, s:I}", "user", user_public_json(&u),
                                             "state", state, "since", (json_int_t)since));
}

void h_contacts_list(api_req *r, store_t *st)
{
    struct list_ctx lc = {st, json_array()};
    if (store_contact_list(st, r->user, add_contact, &lc) != ST_OK) {
        json_decref(lc.arr);
        return;
    }
    api_ok(r, 200, json_pack("{s:o}", "contacts", lc.arr));
}

void h_contact_put(api_req *r, store_t *st)
{
    st_user u;
    if (!other_user(r, st, &u)) return;
    bool they_block = false, we_block = false;
    if (store_block_check(st, u.id, r->user, &they_block, &we_block) != ST_OK) return;
    if (they_block)
        return api_error(r, 403, "blocked", "This user does not take invitations from you.");
    if (we_block) return api_error(r, 403, "blocked", "You blocked this user; unblock them first.");
    char state[12];
    int rc = store_contact_get(st, r->user, u.id, state);
    if (rc == ST_ERR) return;
    int64_t now = r->pitem->now;
    if (rc == ST_NOTFOUND) {
        if (store_contact_set(st, r->user, u.id, "outgoing", now) != ST_OK ||
            store_contact_set(st, u.id, r->user, "incoming", now) != ST_OK)
            return;
        strcpy(state, "outgoing");
        event_to(r, u.id, "contact_invited");
    } else if (strcmp(state, "incoming") == 0) {
        if (store_contact_set(st, r->user, u.id, "friend", now) != ST_OK ||
            store_contact_set(st, u.id, r->user, "friend", now) != ST_OK)
            return;
        strcpy(state, "friend");
        event_to(r, u.id, "contact_accepted");
    }
    api_ok(r, 200, json_pack("{s:o, s:s}", "user", user_public_json(&u), "state", state));
}

void h_contact_delete(api_req *r, store_t *st)
{
    st_user u;
    if (!other_user(r, st, &u)) return;
    int rc = store_contact_delete(st, r->user, u.id);
    if (rc == ST_NOTFOUND) return api_error(r, 404, "not_found", "This user is not a contact.");
    if (rc != ST_OK) return;
    event_to(r, u.id, "contact_removed");
    r->status = 204;
}

static void add_id(void *ctx, const char *user)
{
    json_array_append_new(ctx, json_string(user));
}

void h_blocks_list(api_req *r, store_t *st)
{
    json_t *arr = json_array();
    if (store_block_list(st, r->user, add_id, arr) != ST_OK) {
        json_decref(arr);
        return;
    }
    api_ok(r, 200, json_pack("{s:o}", "blocks", arr));
}

void h_block_put(api_req *r, store_t *st)
{
    st_user u;
    if (!other_user(r, st, &u)) return;
    int rc = store_contact_delete(st, r->user, u.id);
    if (rc == ST_ERR || store_block_set(st, r->user, u.id, r->pitem->now) != ST_OK) return;
    r->status = 204;
}

void h_block_delete(api_req *r, store_t *st)
{
    st_user u;
    if (!other_user(r, st, &u)) return;
    int rc = store_block_delete(st, r->user, u.id);
    if (rc == ST_NOTFOUND) return api_error(r, 404, "not_found", "You have not blocked this user.");
    if (rc == ST_OK) r->status = 204;
}
