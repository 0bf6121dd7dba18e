/* groups.c: group conversations over REST. The writes run on the pipeline thread (pipeline routes):
 * every change is also a `system` message in the group, written in the same transaction, so all
 * members see changes in seq order with the messages around them.
 *
 * Who may do what:
 *   rename, avatar, add members       owner, admin
 *   remove a member                   owner, admin (an admin removes plain members only)
 *   change roles                      owner (making another member owner makes the old owner admin)
 *   leave                             anyone; an owner who leaves hands the group to the oldest
 * admin, else the oldest member */
#include <stdlib.h>
#include <string.h>

#include "server/api/api.h"
#include "server/api/fields.h"
#include "server/pipeline/pipeline.h"

static int rank(const char *role)
{
    return strcmp(role, "owner") == 0 ? 3 : strcmp(role, "admin") == 0 ? 2 : 1;
}

static json_t *group_json(store_t *st, const st_conv *c)
{
    int n = 0;
    st_member *ms = store_member_all(st, c->id, &n);
    if (!ms) return NULL;
    json_t *arr = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(arr, json_pack("{s:s, s:s, s:I}", "user", ms[i].user, "role",
                                             ms[i].role, "joined_at", (json_int_t)ms[i].joined_at));
    free(ms);
    return json_pack("{s:s, s:s, s:s, s:b, s:I, s:I, s:o}", "id", c->id, "name", c->name, "avatar",
                     c->avatar, "e2e", c->e2e, "last_seq", (json_int_t)c->last_seq, "created_at",
                     (json_int_t)c->created_at, "members", arr);
}

/* Loads the group and the caller's membership; answers the error itself when false. */
static bool load(api_req *r, store_t *st, st_conv *c, st_member *me)
{
    int rc = id_valid(r->param, "g_") ? store_conv_get(st, r->param, c) : ST_NOTFOUND;
    if (rc == ST_NOTFOUND) {
        api_error(r, 404, "not_found", "There is no group with that id.");
        return false;
    }
    if (rc != ST_OK) return false;
    rc = store_member_get(st, c->id, r->user, me);
    if (rc == ST_NOTFOUND) api_error(r, 403, "not_a_member", "You are not a member of this group.");
    return rc == ST_OK;
}

static int system_msg(api_req *r, store_t *st, const char *conv, json_t *body)
{
    json_object_set_new(body, "by", json_string(r->user));
    char *s = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    int rc = s ? pipeline_write_msg(st, r->pitem, conv, "system", s, 0) : ST_ERR;
    free(s);
    snprintf(r->pitem->invalidate, ID_MAX, "%s", conv);
    return rc;
}

/* Adds users (a JSON array of ids) to c; answers errors itself. Returns the added ids or NULL. */
static json_t *add_members(api_req *r, store_t *st, const st_conv *c, json_t *users)
{
    if (!json_is_array(users) || json_array_size(users) > (size_t)r->s->cfg.group_max) {
        api_error(r, 400, "invalid_request", "members must be an array of user ids.");
        return NULL;
    }
    int count = 0;
    if (store_member_count(st, c->id, &count) != ST_OK) return NULL;
    json_t *added = json_array();
    size_t i;
    json_t *v;
    json_array_foreach(users, i, v)
    {
        const char *u = json_string_value(v);
        st_user usr;
        bool they_block = false, we_block = false;
        int rc = u && id_valid(u, "u_") ? store_user_get(st, u, &usr) : ST_NOTFOUND;
        if (rc == ST_OK) rc = store_block_check(st, u, r->user, &they_block, &we_block);
        if (rc == ST_NOTFOUND) {
            api_error(r, 404, "no_such_user", "A member id names no user.");
            goto fail;
        }
        if (rc != ST_OK) goto fail;
        if (they_block) {
            api_error(r, 403, "blocked", "A user you added does not take invitations from you.");
            goto fail;
        }
        rc = store_member_add(st, c->id, u, "member", r->pitem->now, c->last_seq + 1);
        if (rc == ST_CONFLICT) continue; /* already a member: adding is idempotent */
        if (rc != ST_OK) goto fail;
        if (++count > r->s->cfg.group_max) {
            api_error(r, 409, "group_full", "The group has the most members it may have.");
            goto fail;
        }
        json_array_append_new(added, json_string(u));
    }
    return added;
fail:
    json_decref(added);
    return NULL;
}

void h_group_create(api_req *r, store_t *st)
{
    if (!r->in) return api_error(r, 400, "invalid_json", "Send {name, members} as a JSON object.");
    st_conv c = {0};
    const char *bad = field_display_name(json_object_get(r->in, "name"), c.name);
    if (bad) return api_error(r, 400, "invalid_request", "name must be 1 to 64 characters.");
    json_t *e2e = json_object_get(r->in, "e2e");
    if (e2e && !json_is_boolean(e2e))
        return api_error(r, 400, "invalid_request", "e2e must be true or false.");
    json_t *members = json_object_get(r->in, "members");
    if (!members)
        members = json_array();
    else
        json_incref(members);
    id_new(c.id, "g_");
    strcpy(c.kind, "group");
    c.e2e = json_is_true(e2e);
    c.created_at = r->pitem->now;
    json_t *added = NULL;
    if (store_group_create(st, &c) != ST_OK ||
        store_member_add(st, c.id, r->user, "owner", c.created_at, 1) != ST_OK ||
        !(added = add_members(r, st, &c, members))) {
        json_decref(members);
        return;
    }
    json_decref(members);
    if (system_msg(r, st, c.id,
                   json_pack("{s:s, s:s, s:o}", "event", "created", "name", c.name, "users",
                             added)) != ST_OK)
        return;
    store_conv_get(st, c.id, &c);
    json_t *g = group_json(st, &c);
    if (g) api_ok(r, 201, g);
}

void h_group_get(api_req *r, store_t *st)
{
    st_conv c;
    st_member me;
    if (!load(r, st, &c, &me)) return;
    json_t *g = group_json(st, &c);
    if (g) api_ok(r, 200, g);
}

void h_group_patch(api_req *r, store_t *st)
{
    st_conv c;
    st_member me;
    if (!r->in)
        return api_error(r, 400, "invalid_json", "Send {name?, avatar?, e2e?} as a JSON object.");
    if (!load(r, st, &c, &me)) return;
    if (rank(me.role) < 2)
        return api_error(r, 403, "forbidden", "Only the owner and admins can change the group.");
    json_t *name = json_object_get(r->in, "name"), *avatar = json_object_get(r->in, "avatar");
    json_t *e2e = json_object_get(r->in, "e2e");
    if (!name && !avatar && !e2e)
        return api_error(r, 400, "invalid_request", "Send name, avatar or e2e.");
    if (e2e && !json_is_true(e2e)) {
        if (!json_is_false(e2e))
            return api_error(r, 400, "invalid_request", "e2e must be true or false.");
        if (c.e2e)
            return api_error(r, 409, "conversation_encrypted",
                             "End-to-end encryption cannot be turned off in a group.");
        e2e = NULL; /* false on a plain group: nothing to change */
        if (!name && !avatar) {
            json_t *g = group_json(st, &c);
            if (g) api_ok(r, 200, g);
            return;
        }
    }
    bool turn_on = e2e && !c.e2e;
    if (name && field_display_name(name, c.name))
        return api_error(r, 400, "invalid_request", "name must be 1 to 64 characters.");
    const char *bad = avatar ? field_avatar(avatar, c.avatar) : NULL;
    if (bad) return api_error(r, 400, "invalid_request", bad);
    if ((name || avatar) && store_group_update(st, &c) != ST_OK) return;
    if (turn_on && store_group_set_e2e(st, c.id) != ST_OK) return;
    if (!name && !avatar && !turn_on) { /* e2e again on an encrypted group: nothing changes */
        json_t *g = group_json(st, &c);
        if (g) api_ok(r, 200, g);
        return;
    }
    json_t *ev = json_pack("{s:s}", "event", "changed");
    if (name) json_object_set_new(ev, "name", json_string(c.name));
    if (avatar) json_object_set_new(ev, "avatar", json_string(c.avatar));
    if (turn_on) json_object_set_new(ev, "e2e", json_true());
    if (system_msg(r, st, c.id, ev) != ST_OK) return;
    store_conv_get(st, c.id, &c);
    json_t *g = group_json(st, &c);
    if (g) api_ok(r, 200, g);
}

void h_group_add(api_req *r, store_t *st)
{
    st_conv c;
    st_member me;
    if (!r->in) return api_error(r, 400, "invalid_json", "Send {users: [...]} as a JSON object.");
    if (!load(r, st, &c, &me)) return;
    if (rank(me.role) < 2)
        return api_error(r, 403, "forbidden", "Only the owner and admins can add members.");
    json_t *added = add_members(r, st, &c, json_object_get(r->in, "users"));
    if (!added) return;
    if (json_array_size(added) > 0 &&
        system_msg(r, st, c.id, json_pack("{s:s, s:O}", "event", "added", "users", added)) !=
            ST_OK) {
        json_decref(added);
        return;
    }
    api_ok(r, 200, json_pack("{s:o}", "added", added));
}

void h_group_member_patch(api_req *r, store_t *st)
{
    st_conv c;
    st_member me, them;
    if (!r->in) return api_error(r, 400, "invalid_json", "Send {role} as a JSON object.");
    if (!load(r, st, &c, &me)) return;
    const char *role = json_string_value(json_object_get(r->in, "role"));
    if (!role || (strcmp(role, "owner") && strcmp(role, "admin") && strcmp(role, "member")))
        return api_error(r, 400, "invalid_request", "role must be owner, admin or member.");
    if (strcmp(me.role, "owner") != 0)
        return api_error(r, 403, "forbidden", "Only the owner can change roles.");
    int rc = store_member_get(st, c.id, r->param2, &them);
    if (rc == ST_NOTFOUND) return api_error(r, 404, "not_found", "That user is not a member.");
    if (rc != ST_OK) return;
    if (strcmp(them.user, r->user) == 0)
        return api_error(r, 400, "invalid_request", "Make another member owner instead.");
    if (store_member_set_role(st, c.id, them.user, role) != ST_OK) return;
    if (strcmp(role, "owner") == 0 && store_member_set_role(st, c.id, r->user, "admin") != ST_OK)
        return;
    if (system_msg(r, st, c.id,
                   json_pack("{s:s, s:s, s:s}", "event", "role", "user", them.user, "role",
                             role)) != ST_OK)
        return;
    r->status = 204;
}

/* The oldest admin, else the oldest member, becomes owner when the owner leaves. */
static int hand_over(api_req *r, store_t *st, const char *conv)
{
    int n = 0;
    st_member *ms = store_member_all(st, conv, &n);
    if (!ms) return ST_ERR;
    const st_member *heir = NULL;
    for (int i = 0; i < n; i++) {
        if (strcmp(ms[i].user, r->user) == 0) continue;
        if (!heir || (rank(ms[i].role) > rank(heir->role))) heir = &ms[i];
    }
    int rc = ST_OK;
    if (heir) {
        char user[ID_MAX];
        snprintf(user, sizeof user, "%s", heir->user);
        rc = store_member_set_role(st, conv, user, "owner");
        if (rc == ST_OK)
            rc = system_msg(
                r, st, conv,
                json_pack("{s:s, s:s, s:s}", "event", "role", "user", user, "role", "owner"));
    }
    free(ms);
    return rc;
}

void h_group_member_delete(api_req *r, store_t *st)
{
    st_conv c;
    st_member me, them;
    if (!load(r, st, &c, &me)) return;
    bool self = strcmp(r->param2, r->user) == 0;
    int rc = store_member_get(st, c.id, r->param2, &them);
    if (rc == ST_NOTFOUND) return api_error(r, 404, "not_found", "That user is not a member.");
    if (rc != ST_OK) return;
    if (!self && (rank(me.role) < 2 || rank(them.role) >= rank(me.role)))
        return api_error(r, 403, "forbidden",
                         "Only the owner removes admins, and owner or admins remove members.");
    /* The notice goes out first, so the member who leaves sees it as the last thing. */
    json_t *ev = self ? json_pack("{s:s, s:s}", "event", "left", "user", them.user)
                      : json_pack("{s:s, s:s}", "event", "removed", "user", them.user);
    if (system_msg(r, st, c.id, ev) != ST_OK) return;
    if (self && strcmp(me.role, "owner") == 0 && hand_over(r, st, c.id) != ST_OK) return;
    if (store_member_remove(st, c.id, them.user) != ST_OK) return;
    r->status = 204;
}
