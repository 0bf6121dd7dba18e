/* presence.c: presence and typing on the loop (neither is ever stored), and the GroupService
 * member cache they use.
 *
 * A user's status is derived from their sockets on this node: online if any socket is not away,
 * away if all are, offline when none is left. When it changes, a worker finds the audience (friends
 * and fellow members, minus blocks both ways) and the loop sends `presence` to the audience's
 * sockets; a socket that authenticates also gets the status of every audience member who is
 * connected. On going offline the worker stores last_seen_at (shown unless the user set
 * settings.hide_last_seen). Typing frames go to the connected members of the conversation; the
 * members come from a cache filled by a worker on a miss and dropped when a pipeline result says
 * the members changed. */
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "server/pipeline/pipeline.h"
#include "server/store/pool.h"

enum { P_OFFLINE, P_AWAY, P_ONLINE };
static const char *const status_names[] = {"offline", "away", "online"};

#define CACHE_MAX 10000

#define PENDING_MAX 8

typedef struct gentry {
    int n;
    char (*users)[ID_MAX];
    bool loading;
    /* typing frames that came while the members were loading, relayed once they are known */
    struct {
        char user[ID_MAX], dev[ID_MAX];
        bool on;
    } pend[PENDING_MAX];
    int npend;
} gentry;

static void gentry_free(void *ctx, const char *key, void *v)
{
    (void)ctx;
    (void)key;
    gentry *e = v;
    free(e->users);
    free(e);
}

void groups_invalidate(server_t *s, const char *conv)
{
    gentry *e = hmap_get(&s->groups, conv);
    if (!e) return;
    if (e->loading) { /* the load in flight may be stale: let it finish, then drop it */
        e->n = -1;
        return;
    }
    hmap_del(&s->groups, conv);
    gentry_free(NULL, conv, e);
}

void groups_free(server_t *s)
{
    hmap_each(&s->groups, gentry_free, NULL);
    hmap_free(&s->groups);
    hmap_free(&s->presence);
}

static void relay_typing(server_t *s, const gentry *e, const char *conv, const char *user,
                         const char *dev, bool on)
{
    bool member = false;
    for (int i = 0; i < e->n && !member; i++) member = strcmp(e->users[i], user) == 0;
    if (!member) return;
    json_t *o =
        json_pack("{s:s, s:s, s:s, s:b}", "type", "typing", "conv", conv, "user", user, "on", on);
    char *f = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    for (int i = 0; i < e->n; i++)
        outbound_to_user(s, e->users[i], strcmp(e->users[i], user) == 0 ? dev : NULL, f);
    free(f);
}

typedef struct load_job {
    uv_work_t w;
    server_t *s;
    char conv[ID_MAX];
    char user[ID_MAX], dev[ID_MAX];
    bool on;
    int n;
    char (*users)[ID_MAX];
} load_job;

static void load_work(uv_work_t *w)
{
    load_job *j = w->data;
    store_t *st = store_pool_get(j->s->pool);
    int n = 0;
    st_member *ms = st ? store_member_all(st, j->conv, &n) : NULL;
    j->n = ms ? n : -1;
    if (ms) {
        /* a list of ids is all the cache keeps */
        j->users = calloc((size_t)n + 1, sizeof *j->users);
        if (!j->users) abort();
        for (int i = 0; i < n; i++) memcpy(j->users[i], ms[i].user, ID_MAX);
        free(ms);
    }
    store_pool_put(j->s->pool, st);
}

static void load_done(uv_work_t *w, int status)
{
    load_job *j = w->data;
    server_t *s = j->s;
    gentry *e = hmap_get(&s->groups, j->conv);
    if (status == 0 && j->n >= 0) {
        gentry tmp = {.n = j->n, .users = j->users};
        relay_typing(s, &tmp, j->conv, j->user, j->dev, j->on);
        for (int i = 0; e && i < e->npend; i++)
            relay_typing(s, &tmp, j->conv, e->pend[i].user, e->pend[i].dev, e->pend[i].on);
    }
    if (e && e->loading) {
        if (e->n == -1 || j->n < 0 || status != 0) { /* invalidated meanwhile, or failed */
            hmap_del(&s->groups, j->conv);
            free(e);
            free(j->users);
        } else {
            e->n = j->n;
            e->users = j->users;
            e->loading = false;
        }
    } else {
        free(j->users);
    }
    free(j);
}

void typing_relay(conn_t *c, const char *conv, bool on)
{
    server_t *s = c->srv;
    gentry *e = hmap_get(&s->groups, conv);
    if (e && !e->loading) {
        relay_typing(s, e, conv, c->user, c->dev, on);
        return;
    }
    if (e) { /* loading: relayed when the members are known (past PENDING_MAX, dropped) */
        if (e->npend < PENDING_MAX) {
            memcpy(e->pend[e->npend].user, c->user, ID_MAX);
            memcpy(e->pend[e->npend].dev, c->dev, ID_MAX);
            e->pend[e->npend++].on = on;
        }
        return;
    }
    if (s->groups.count >= CACHE_MAX) {
        hmap_each(&s->groups, gentry_free, NULL);
        hmap_free(&s->groups);
    }
    e = calloc(1, sizeof *e);
    load_job *j = calloc(1, sizeof *j);
    if (!e || !j) abort();
    e->loading = true;
    hmap_put(&s->groups, conv, e);
    j->w.data = j;
    j->s = s;
    snprintf(j->conv, sizeof j->conv, "%s", conv);
    memcpy(j->user, c->user, ID_MAX);
    memcpy(j->dev, c->dev, ID_MAX);
    j->on = on;
    uv_queue_work(s->loop, &j->w, load_work, load_done);
}

/* ---- presence ---- */

static int status_of(server_t *s, const char *user)
{
    int st = P_OFFLINE;
    for (conn_t *c = session_first(s, user); c; c = c->next_user) {
        if (!c->away) return P_ONLINE;
        st = P_AWAY;
    }
    return st;
}

typedef struct pres_job {
    uv_work_t w;
    server_t *s;
    conn_t *c; /* the socket that just authenticated, or NULL */
    char user[ID_MAX];
    int status;     /* to broadcast, or -1 for none */
    int64_t seen;   /* last seen time to store and show */
    bool hide_seen; /* from the user's settings */
    int n;
    char (*audience)[ID_MAX];
} pres_job;

static void collect(void *ctx, const char *user)
{
    pres_job *j = ctx;
    void *p = realloc(j->audience, sizeof *j->audience * (size_t)(j->n + 1));
    if (!p) abort();
    j->audience = p;
    memcpy(j->audience[j->n++], user, ID_MAX);
}

static void pres_work(uv_work_t *w)
{
    pres_job *j = w->data;
    store_t *st = store_pool_get(j->s->pool);
    if (!st) return;
    st_user u;
    if (store_user_get(st, j->user, &u) == ST_OK) {
        json_error_t err;
        json_t *settings = json_loads(u.settings, 0, &err);
        j->hide_seen = json_is_true(json_object_get(settings, "hide_last_seen"));
        json_decref(settings);
    }
    if (j->status == P_OFFLINE && store_user_seen(st, j->user, j->seen) != ST_OK)
        log_warn("presence: could not store last seen of %s", j->user);
    if (store_presence_audience(st, j->user, collect, j) != ST_OK) j->n = 0;
    store_pool_put(j->s->pool, st);
}

static char *presence_frame(const char *user, int status, int64_t seen, bool hide)
{
    json_t *o = json_pack("{s:s, s:s, s:s}", "type", "presence", "user", user, "status",
                          status_names[status]);
    json_object_set_new(o, "last_seen_at", hide ? json_null() : json_integer(seen));
    char *f = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return f;
}

static void pres_done(uv_work_t *w, int status)
{
    pres_job *j = w->data;
    server_t *s = j->s;
    if (status == 0 && j->status >= 0) {
        char *f = presence_frame(j->user, j->status, j->seen, j->hide_seen);
        for (int i = 0; i < j->n; i++) outbound_to_user(s, j->audience[i], NULL, f);
        free(f);
    }
    if (status == 0 && j->c && conn_alive(j->c)) {
        /* the new socket learns who of its audience is here */
        for (int i = 0; i < j->n; i++) {
            int st = status_of(s, j->audience[i]);
            if (st == P_OFFLINE) continue;
            char *f = presence_frame(j->audience[i], st, now_ms(), false);
            conn_ws_send(j->c, f, strlen(f));
            free(f);
        }
    }
    if (j->c) conn_unref(j->c);
    free(j->audience);
    free(j);
}

/* Recomputes the user's status; broadcasts when it changed (and answers c, if given). */
static void presence_update(server_t *s, const char *user, conn_t *c)
{
    int now_st = status_of(s, user);
    intptr_t was = (intptr_t)hmap_get(&s->presence, user);
    bool changed = (int)was != now_st;
    if (!changed && !c) return;
    if (now_st == P_OFFLINE)
        hmap_del(&s->presence, user);
    else
        hmap_put(&s->presence, user, (void *)(intptr_t)now_st);
    pres_job *j = calloc(1, sizeof *j);
    if (!j) abort();
    j->w.data = j;
    j->s = s;
    snprintf(j->user, sizeof j->user, "%s", user);
    j->status = changed ? now_st : -1;
    j->seen = now_ms();
    if (c) {
        j->c = c;
        conn_ref(c);
    }
    uv_queue_work(s->loop, &j->w, pres_work, pres_done);
}

void presence_connected(conn_t *c)
{
    presence_update(c->srv, c->user, c);
}

void presence_disconnected(server_t *s, const char *user)
{
    if (s->stopping) return;
    presence_update(s, user, NULL);
}

void presence_set(conn_t *c, bool away)
{
    if (c->away == away) return;
    c->away = away;
    presence_update(c->srv, c->user, NULL);
}
