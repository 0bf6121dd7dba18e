/* session.c: SessionService of one node: which devices are connected here, by user.
 * A map from user id to a doubly linked list of that user's authenticated conns. Loop thread
 * only. Cluster mode mirrors this into Redis so other nodes know where a device is. */
#include <string.h>

#include "server/pipeline/pipeline.h"

void session_add(conn_t *c)
{
    server_t *s = c->srv;
    conn_t *first = hmap_get(&s->sessions, c->user);
    c->prev_user = NULL;
    c->next_user = first;
    if (first) first->prev_user = c;
    hmap_put(&s->sessions, c->user, c);
}

void session_remove(conn_t *c)
{
    if (!c->authed) return;
    c->authed = false;
    server_t *s = c->srv;
    if (c->prev_user)
        c->prev_user->next_user = c->next_user;
    else if (c->next_user)
        hmap_put(&s->sessions, c->user, c->next_user);
    else
        hmap_del(&s->sessions, c->user);
    if (c->next_user) c->next_user->prev_user = c->prev_user;
    c->next_user = c->prev_user = NULL;
    presence_disconnected(s, c->user);
}

conn_t *session_first(server_t *s, const char *user)
{
    return hmap_get(&s->sessions, user);
}

void session_kick(server_t *s, const char *user, const char *dev, const char *reason)
{
    conn_t *c = session_first(s, user);
    while (c) {
        conn_t *next = c->next_user; /* closing unlinks c */
        if (!dev || strcmp(c->dev, dev) == 0) conn_ws_close(c, WS_CLOSE_UNAUTH, reason);
        c = next;
    }
}
