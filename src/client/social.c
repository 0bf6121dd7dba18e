/* social.c: groups, contacts and invitations, blocks, typing, presence and the server's
 * conversation list, on the application thread.
 *
 * The REST calls (protocol.md: Groups, Conversations, Contacts and blocks) block like the others
 * in rest.c and write what they learn into the store, so that the conversation list shows a new
 * group at once. Typing and presence are WebSocket frames: the application hands them to the
 * engine under c->mu (typing as a frame that is dropped when not online, presence as a wanted
 * state that the engine sends again after every reconnect).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/internal.h"
#include "common/util.h"

static void scopy(char *dst, size_t cap, json_t *v)
{
    snprintf(dst, cap, "%s", json_is_string(v) ? json_string_value(v) : "");
}

static int need_token(pl_client *c)
{
    return c->token ? 0 : pl__fail(c, PL_ENOSESSION, NULL);
}

static int check_id(pl_client *c, const char *id, const char *prefix, const char *what)
{
    if (!id || !id_valid(id, prefix)) {
        char msg[96];
        snprintf(msg, sizeof msg, "not a %s id", what);
        return pl__fail(c, PL_EINVAL, msg);
    }
    return 0;
}

/* ------------------------------------------------------------------------------ groups */

void pl_group_clear(pl_group *g)
{
    if (!g) return;
    free(g->members);
    memset(g, 0, sizeof *g);
}

static int group_from_json(pl_group *g, json_t *j)
{
    memset(g, 0, sizeof *g);
    scopy(g->id, sizeof g->id, json_object_get(j, "id"));
    scopy(g->name, sizeof g->name, json_object_get(j, "name"));
    g->last_seq = json_integer_value(json_object_get(j, "last_seq"));
    g->created_at = json_integer_value(json_object_get(j, "created_at"));
    json_t *ms = json_object_get(j, "members");
    size_t n = json_array_size(ms);
    if (!g->id[0]) return PL_EPROTO;
    if (n) {
        g->members = calloc(n, sizeof *g->members);
        if (!g->members) return PL_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(ms, i);
        pl_member *pm = &g->members[g->nmembers++];
        scopy(pm->user, sizeof pm->user, json_object_get(m, "user"));
        scopy(pm->role, sizeof pm->role, json_object_get(m, "role"));
        pm->joined_at = json_integer_value(json_object_get(m, "joined_at"));
    }
    return 0;
}

/* Keeps a group answer in the store and hands it out (or clears it). */
static int group_answer(pl_client *c, json_t *resp, pl_group *out)
{
    pl_group g;
    int err = group_from_json(&g, resp);
    if (err) {
        pl_group_clear(&g);
        return pl__fail(c, err, "the server's group answer is not understood");
    }
    if (pl__store_begin(c->db) == 0) {
        if (pl__store_group_put(c->db, g.id, g.name, g.members, g.nmembers) == 0)
            pl__store_commit(c->db);
        else
            pl__store_rollback(c->db);
    }
    if (out)
        *out = g;
    else
        pl_group_clear(&g);
    return 0;
}

static json_t *id_array(const char *const *ids, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(a, json_string(ids[i]));
    return a;
}

int pl_group_create(pl_client *c, const char *name, const char *const *members, size_t n,
                    pl_group *out)
{
    if (out) memset(out, 0, sizeof *out);
    int err = need_token(c);
    if (err) return err;
    if (!name || !*name) return pl__fail(c, PL_EINVAL, "a group needs a name");
    for (size_t i = 0; i < n; i++)
        if ((err = check_id(c, members[i], "u_", "user")) != 0) return err;
    json_t *body = json_pack("{s:s, s:o}", "name", name, "members", id_array(members, n));
    long status;
    json_t *resp;
    err = pl__rest(c, "POST", "/v1/groups", c->token, body, &status, &resp);
    json_decref(body);
    if (err == 0) err = group_answer(c, resp, out);
    json_decref(resp);
    return err;
}

int pl_group_get(pl_client *c, const char *group, pl_group *out)
{
    memset(out, 0, sizeof *out);
    int err = need_token(c);
    if (err || (err = check_id(c, group, "g_", "group")) != 0) return err;
    char path[128];
    snprintf(path, sizeof path, "/v1/groups/%s", group);
    long status;
    json_t *resp;
    err = pl__rest(c, "GET", path, c->token, NULL, &status, &resp);
    if (err == 0) err = group_answer(c, resp, out);
    json_decref(resp);
    return err;
}

int pl_group_rename(pl_client *c, const char *group, const char *name)
{
    int err = need_token(c);
    if (err || (err = check_id(c, group, "g_", "group")) != 0) return err;
    if (!name || !*name) return pl__fail(c, PL_EINVAL, "a group needs a name");
    char path[128];
    snprintf(path, sizeof path, "/v1/groups/%s", group);
    json_t *body = json_pack("{s:s}", "name", name);
    long status;
    json_t *resp;
    err = pl__rest(c, "PATCH", path, c->token, body, &status, &resp);
    json_decref(body);
    if (err == 0) err = group_answer(c, resp, NULL);
    json_decref(resp);
    return err;
}

int pl_group_add(pl_client *c, const char *group, const char *const *users, size_t n)
{
    int err = need_token(c);
    if (err || (err = check_id(c, group, "g_", "group")) != 0) return err;
    if (n == 0) return pl__fail(c, PL_EINVAL, "nobody to add");
    for (size_t i = 0; i < n; i++)
        if ((err = check_id(c, users[i], "u_", "user")) != 0) return err;
    char path[128];
    snprintf(path, sizeof path, "/v1/groups/%s/members", group);
    json_t *body = json_pack("{s:o}", "users", id_array(users, n));
    long status;
    json_t *resp;
    err = pl__rest(c, "POST", path, c->token, body, &status, &resp);
    json_decref(body);
    int added = (int)json_array_size(json_object_get(resp, "added"));
    json_decref(resp);
    return err ? err : added;
}

int pl_group_remove(pl_client *c, const char *group, const char *user)
{
    int err = need_token(c);
    if (err || (err = check_id(c, group, "g_", "group")) != 0 ||
        (err = check_id(c, user, "u_", "user")) != 0)
        return err;
    char path[160];
    snprintf(path, sizeof path, "/v1/groups/%s/members/%s", group, user);
    long status;
    err = pl__rest(c, "DELETE", path, c->token, NULL, &status, NULL);
    if (err == 0) pl__store_conv_forget_member(c->db, group, user);
    return err;
}

int pl_group_leave(pl_client *c, const char *group)
{
    if (!c->sess.user[0]) return pl__fail(c, PL_ENOSESSION, NULL);
    return pl_group_remove(c, group, c->sess.user);
}

int pl_group_set_role(pl_client *c, const char *group, const char *user, const char *role)
{
    int err = need_token(c);
    if (err || (err = check_id(c, group, "g_", "group")) != 0 ||
        (err = check_id(c, user, "u_", "user")) != 0)
        return err;
    if (!role || (strcmp(role, "owner") && strcmp(role, "admin") && strcmp(role, "member")))
        return pl__fail(c, PL_EINVAL, "a role is owner, admin or member");
    char path[160];
    snprintf(path, sizeof path, "/v1/groups/%s/members/%s", group, user);
    json_t *body = json_pack("{s:s}", "role", role);
    long status;
    err = pl__rest(c, "PATCH", path, c->token, body, &status, NULL);
    json_decref(body);
    return err;
}

/* ---------------------------------------------------------------------- conversations */

int pl_convs_sync(pl_client *c)
{
    int err = need_token(c);
    if (err) return err;
    long status;
    json_t *resp;
    err = pl__rest(c, "GET", "/v1/convs", c->token, NULL, &status, &resp);
    json_t *arr = json_object_get(resp, "convs");
    int n = (int)json_array_size(arr);
    size_t changed;
    if (err == 0) err = pl__store_convs_merge(c->db, c->sess.user, arr, NULL, &changed);
    json_decref(resp);
    if (err) return pl__fail(c, err, NULL);
    return n;
}

/* ---------------------------------------------------------------------- contacts, blocks */

static pl_contact_state contact_state(const char *s)
{
    if (!s) return PL_CONTACT_NONE;
    if (strcmp(s, "friend") == 0) return PL_CONTACT_FRIEND;
    if (strcmp(s, "incoming") == 0) return PL_CONTACT_INCOMING;
    if (strcmp(s, "outgoing") == 0) return PL_CONTACT_OUTGOING;
    return PL_CONTACT_NONE;
}

int pl_contacts_fetch(pl_client *c, pl_contact **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    int err = need_token(c);
    if (err) return err;
    long status;
    json_t *resp;
    err = pl__rest(c, "GET", "/v1/contacts", c->token, NULL, &status, &resp);
    json_t *arr = json_object_get(resp, "contacts");
    if (err == 0 && json_array_size(arr) > 0) {
        *out = calloc(json_array_size(arr), sizeof **out);
        if (!*out) err = pl__fail(c, PL_ENOMEM, NULL);
        for (size_t i = 0; !err && i < json_array_size(arr); i++) {
            json_t *e = json_array_get(arr, i);
            pl_contact *pc = &(*out)[(*n)++];
            pl__user_from_json(&pc->user, json_object_get(e, "user"));
            pc->state = contact_state(json_string_value(json_object_get(e, "state")));
            pc->since = json_integer_value(json_object_get(e, "since"));
            if (pc->user.id[0]) pl__store_user_put(c->db, &pc->user);
        }
    }
    json_decref(resp);
    return err;
}

static int user_call(pl_client *c, const char *method, const char *what, const char *user,
                     json_t **resp)
{
    int err = need_token(c);
    if (err || (err = check_id(c, user, "u_", "user")) != 0) return err;
    char path[128];
    snprintf(path, sizeof path, "/v1/%s/%s", what, user);
    long status;
    json_t *body = strcmp(method, "PUT") == 0 ? json_object() : NULL;
    err = pl__rest(c, method, path, c->token, body, &status, resp);
    json_decref(body);
    return err;
}

int pl_contact_invite(pl_client *c, const char *user)
{
    json_t *resp = NULL;
    int err = user_call(c, "PUT", "contacts", user, &resp);
    pl_contact_state st = contact_state(json_string_value(json_object_get(resp, "state")));
    json_decref(resp);
    return err ? err : (int)st;
}

int pl_contact_accept(pl_client *c, const char *user)
{
    return pl_contact_invite(c, user);
}

int pl_contact_remove(pl_client *c, const char *user)
{
    return user_call(c, "DELETE", "contacts", user, NULL);
}

int pl_contact_decline(pl_client *c, const char *user)
{
    return pl_contact_remove(c, user);
}

int pl_user_block(pl_client *c, const char *user)
{
    return user_call(c, "PUT", "blocks", user, NULL);
}

int pl_user_unblock(pl_client *c, const char *user)
{
    return user_call(c, "DELETE", "blocks", user, NULL);
}

int pl_blocks_list(pl_client *c, pl_user **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    int err = need_token(c);
    if (err) return err;
    long status;
    json_t *resp;
    err = pl__rest(c, "GET", "/v1/blocks", c->token, NULL, &status, &resp);
    json_t *arr = json_object_get(resp, "blocks");
    if (err == 0 && json_array_size(arr) > 0) {
        *out = calloc(json_array_size(arr), sizeof **out);
        if (!*out) err = pl__fail(c, PL_ENOMEM, NULL);
        for (size_t i = 0; !err && i < json_array_size(arr); i++) {
            pl_user *u = &(*out)[(*n)++];
            scopy(u->id, sizeof u->id, json_array_get(arr, i));
            pl__store_user_get(c->db, u->id, u); /* names when the store knows them */
        }
    }
    json_decref(resp);
    return err;
}

/* ---------------------------------------------------------------------- typing, presence */

const char *pl_presence_name(pl_presence p)
{
    switch (p) {
    case PL_PRESENCE_ONLINE:
        return "online";
    case PL_PRESENCE_AWAY:
        return "away";
    case PL_PRESENCE_OFFLINE:
        return "offline";
    }
    return "unknown";
}

int pl_typing_send(pl_client *c, const char *conv, bool on)
{
    if (!conv || (!id_valid(conv, "p_") && !id_valid(conv, "g_")))
        return pl__fail(c, PL_EINVAL, "not a conversation id");
    if (pl_client_state(c) != PL_STATE_ONLINE) return pl__fail(c, PL_ESTATE, "not online");
    json_t *f = json_pack("{s:s, s:s, s:b}", "type", "typing", "conv", conv, "on", on);
    char *text = json_dumps(f, JSON_COMPACT);
    json_decref(f);
    pl__frame *fr = calloc(1, sizeof *fr);
    if (!text || !fr) {
        free(text);
        free(fr);
        return pl__fail(c, PL_ENOMEM, NULL);
    }
    fr->text = text;
    pthread_mutex_lock(&c->mu);
    if (c->fr_tail)
        c->fr_tail->next = fr;
    else
        c->fr_head = fr;
    c->fr_tail = fr;
    pthread_mutex_unlock(&c->mu);
    pl__engine_wake(c);
    return 0;
}

int pl_presence_set(pl_client *c, pl_presence p)
{
    if (p != PL_PRESENCE_ONLINE && p != PL_PRESENCE_AWAY)
        return pl__fail(c, PL_EINVAL, "presence is online or away");
    pthread_mutex_lock(&c->mu);
    c->presence = p;
    pthread_mutex_unlock(&c->mu);
    if (c->thread_started) pl__engine_wake(c);
    return 0;
}

/* ------------------------------------------------------------------- system messages */

int pl_msg_system_text(pl_client *c, const pl_msg *m, char *out, size_t cap)
{
    if (cap) out[0] = 0;
    if (!m || strcmp(m->kind, "system") != 0 || !m->body || cap == 0) return PL_EINVAL;
    json_t *b = json_loads(m->body, 0, NULL);
    const char *ev = json_string_value(json_object_get(b, "event"));
    char by[PL_NAME_MAX * 4], who[PL_NAME_MAX * 4];
    pl__store_user_label(c->db, c->sess.user, json_string_value(json_object_get(b, "by")), by,
                         sizeof by);
    pl__store_user_label(c->db, c->sess.user, json_string_value(json_object_get(b, "user")), who,
                         sizeof who);
    const char *name = json_string_value(json_object_get(b, "name"));
    char list[1024] = "";
    json_t *users = json_object_get(b, "users");
    for (size_t i = 0; i < json_array_size(users); i++) {
        char one[PL_NAME_MAX * 4];
        pl__store_user_label(c->db, c->sess.user, json_string_value(json_array_get(users, i)), one,
                             sizeof one);
        size_t l = strlen(list);
        snprintf(list + l, sizeof list - l, "%s%s", i ? ", " : "", one);
    }
    if (!ev)
        snprintf(out, cap, "(a change to the group)");
    else if (strcmp(ev, "created") == 0 && list[0])
        snprintf(out, cap, "%s created the group \"%s\" with %s", by, name ? name : "", list);
    else if (strcmp(ev, "created") == 0)
        snprintf(out, cap, "%s created the group \"%s\"", by, name ? name : "");
    else if (strcmp(ev, "changed") == 0 && name)
        snprintf(out, cap, "%s renamed the group to \"%s\"", by, name);
    else if (strcmp(ev, "changed") == 0)
        snprintf(out, cap, "%s changed the group's picture", by);
    else if (strcmp(ev, "added") == 0)
        snprintf(out, cap, "%s added %s", by, list);
    else if (strcmp(ev, "removed") == 0)
        snprintf(out, cap, "%s removed %s", by, who);
    else if (strcmp(ev, "left") == 0)
        snprintf(out, cap, "%s left", who);
    else if (strcmp(ev, "role") == 0)
        snprintf(out, cap, "%s is now %s", who,
                 json_string_value(json_object_get(b, "role"))
                     ? json_string_value(json_object_get(b, "role"))
                     : "?");
    else
        snprintf(out, cap, "%s: %s", by, ev);
    json_decref(b);
    /* snprintf may have cut a character in two: drop the broken end */
    size_t len = strlen(out);
    while (len > 0 && !utf8_valid((const uint8_t *)out, len)) out[--len] = 0;
    return 0;
}
