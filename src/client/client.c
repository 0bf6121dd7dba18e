/* client.c: the pl_client handle and the calls of the application thread that are not REST:
 * the session kept in the store, starting and stopping the engine, writing to the outbox and
 * reading the store. */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "client/internal.h"
#include "common/util.h"

#define MAX_TEXT 16384
#define MAX_BODY 65536

static void load_session(pl_client *c)
{
    char token[4096];
    memset(&c->sess, 0, sizeof c->sess);
    pl__meta_get(c->db, "user", c->sess.user, sizeof c->sess.user);
    pl__meta_get(c->db, "device", c->sess.device, sizeof c->sess.device);
    pl__meta_get(c->db, "username", c->sess.username, sizeof c->sess.username);
    pl__meta_get(c->db, "token", token, sizeof token);
    free(c->token);
    c->token = token[0] && c->sess.user[0] ? strdup(token) : NULL;
}

int pl_client_new(pl_client **out, const pl_options *opt)
{
    *out = NULL;
    if (!opt || !opt->store_path || !opt->servers || opt->nservers == 0) return PL_EINVAL;
    for (size_t i = 0; i < opt->nservers; i++) {
        pl__url u;
        if (!opt->servers[i] || pl__url_parse(opt->servers[i], &u) != 0) return PL_EINVAL;
    }
    if (sodium_init() < 0) return PL_ENOMEM;
    pl_client *c = calloc(1, sizeof *c);
    if (!c) return PL_ENOMEM;
    c->ev_fd = c->wake_fd = -1;
    c->servers = calloc(opt->nservers, sizeof *c->servers);
    c->store_path = strdup(opt->store_path);
    c->device_name = strdup(opt->device_name ? opt->device_name : "parley");
    if (!c->servers || !c->store_path || !c->device_name) goto nomem;
    for (size_t i = 0; i < opt->nservers; i++) {
        if (!(c->servers[i] = strdup(opt->servers[i]))) goto nomem;
        c->nservers++;
    }
    c->backoff_min_ms = opt->backoff_min_ms > 0 ? opt->backoff_min_ms : 250;
    c->backoff_max_ms = opt->backoff_max_ms > 0 ? opt->backoff_max_ms : 30000;
    if (c->backoff_max_ms < c->backoff_min_ms) c->backoff_max_ms = c->backoff_min_ms;
    c->rest_timeout_ms = opt->rest_timeout_ms > 0 ? opt->rest_timeout_ms : 15000;
    c->connect_timeout_ms = opt->connect_timeout_ms > 0 ? opt->connect_timeout_ms : 5000;
    c->presence = PL_PRESENCE_ONLINE;
    pthread_mutex_init(&c->mu, NULL);
    pl__ev_init(c);
    atomic_init(&c->server_idx, 0);
    c->ev_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    c->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (c->ev_fd < 0 || c->wake_fd < 0) {
        pl_client_free(c);
        return PL_ENOMEM;
    }
    int err = pl__store_open(c->store_path, &c->db);
    if (err) {
        pl_client_free(c);
        return err;
    }
    load_session(c);
    *out = c;
    return 0;
nomem:
    pl_client_free(c);
    return PL_ENOMEM;
}

void pl_client_free(pl_client *c)
{
    if (!c) return;
    pl_client_disconnect(c);
    if (c->db) pl__store_close(c->db);
    for (size_t i = 0; i < c->nservers; i++) free(c->servers[i]);
    free(c->servers);
    free(c->store_path);
    free(c->device_name);
    free(c->token);
    free(c->io_token);
    pl__ev_destroy(c);
    for (pl__frame *f = c->fr_head, *next; f; f = next) {
        next = f->next;
        free(f->text);
        free(f);
    }
    if (c->ev_fd >= 0) close(c->ev_fd);
    if (c->wake_fd >= 0) close(c->wake_fd);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

int pl_client_set_servers(pl_client *c, const char *const *servers, size_t n)
{
    if (!servers || n == 0) return pl__fail(c, PL_EINVAL, "at least one server is needed");
    char **copy = calloc(n, sizeof *copy);
    if (!copy) return pl__fail(c, PL_ENOMEM, NULL);
    for (size_t i = 0; i < n; i++) {
        pl__url u;
        if (!servers[i] || pl__url_parse(servers[i], &u) != 0 || !(copy[i] = strdup(servers[i]))) {
            for (size_t j = 0; j < i; j++) free(copy[j]);
            free(copy);
            return pl__fail(c, PL_EINVAL, "not a server URL (http://host:port)");
        }
    }
    pthread_mutex_lock(&c->mu);
    char **old = c->servers;
    size_t oldn = c->nservers;
    c->servers = copy;
    c->nservers = n;
    c->cmd_servers = true;
    pthread_mutex_unlock(&c->mu);
    atomic_store(&c->server_idx, 0);
    for (size_t i = 0; i < oldn; i++) free(old[i]);
    free(old);
    if (c->thread_started) pl__engine_wake(c);
    return 0;
}

const char *pl_client_errmsg(pl_client *c)
{
    return c->errmsg;
}

void pl_free(void *p)
{
    free(p);
}

/* ---------------------------------------------------------------------------- sessions */

int pl_session_adopt(pl_client *c, const char *user, const char *device, const char *username,
                     const char *token)
{
    if (!id_valid(user ? user : "", "u_") || !id_valid(device ? device : "", "d_") || !token ||
        !*token || strlen(token) >= 4096)
        return pl__fail(c, PL_EINVAL, "not a session (user, device and token are needed)");
    if (c->sess.user[0] && strcmp(c->sess.user, user) != 0 && pl__store_has_messages(c->db))
        return pl__fail(c, PL_EEXIST, NULL);
    pl_client_disconnect(c); /* the engine must not go on with the old token */
    if (pl__store_begin(c->db) != 0) return pl__fail(c, PL_ESTORE, NULL);
    bool same_device = strcmp(c->sess.device, device) == 0;
    int err = pl__meta_set(c->db, "user", user) || pl__meta_set(c->db, "device", device) ||
              pl__meta_set(c->db, "username", username ? username : "") ||
              pl__meta_set(c->db, "token", token);
    /* A new device starts its inbox from the beginning: its cursor is its own. */
    if (!err && !same_device) err = pl__meta_set_int(c->db, "pos", 0);
    if (err || pl__store_commit(c->db) != 0) {
        pl__store_rollback(c->db);
        return pl__fail(c, PL_ESTORE, NULL);
    }
    load_session(c);
    c->errmsg[0] = 0;
    return 0;
}

int pl_session_get(pl_client *c, pl_session *s)
{
    *s = c->sess;
    return c->token ? 0 : PL_ENOSESSION;
}

/* ------------------------------------------------------------------------------ engine */

int pl_client_connect(pl_client *c)
{
    if (!c->token) return pl__fail(c, PL_ENOSESSION, NULL);
    if (c->thread_started) {
        pthread_mutex_lock(&c->mu);
        c->cmd_push = true; /* cut a backoff short */
        pthread_mutex_unlock(&c->mu);
        pl__engine_wake(c);
        return 0;
    }
    pthread_mutex_lock(&c->mu);
    free(c->io_token);
    c->io_token = strdup(c->token);
    c->cmd_stop = c->cmd_push = false;
    c->cmd_kick = true;
    pthread_mutex_unlock(&c->mu);
    if (!c->io_token) return pl__fail(c, PL_ENOMEM, NULL);
    if (pthread_create(&c->thread, NULL, pl__engine_main, c) != 0)
        return pl__fail(c, PL_ENOMEM, "could not start the I/O thread");
    c->thread_started = true;
    return 0;
}

void pl_client_disconnect(pl_client *c)
{
    if (!c->thread_started) return;
    pthread_mutex_lock(&c->mu);
    c->cmd_stop = true;
    pthread_mutex_unlock(&c->mu);
    pl__engine_wake(c);
    pthread_join(c->thread, NULL);
    c->thread_started = false;
    pl__ev_state(c, PL_STATE_STOPPED);
}

pl_state pl_client_state(pl_client *c)
{
    pthread_mutex_lock(&c->mu);
    pl_state s = c->state;
    pthread_mutex_unlock(&c->mu);
    return s;
}

int pl_client_handle_push(pl_client *c, const char *payload)
{
    (void)payload; /* today every push means "something is waiting for you" */
    if (!c->thread_started) return pl_client_connect(c);
    if (pl_client_state(c) == PL_STATE_UNAUTHORIZED) return pl__fail(c, PL_ETOKEN, NULL);
    pthread_mutex_lock(&c->mu);
    c->cmd_push = true;
    pthread_mutex_unlock(&c->mu);
    pl__engine_wake(c);
    return 0;
}

/* ---------------------------------------------------------------------------- messages */

void pl_msg_clear(pl_msg *m)
{
    if (!m) return;
    free(m->body);
    free(m->text);
    memset(m, 0, sizeof *m);
}

void pl_msgs_free(pl_msg *msgs, size_t n)
{
    if (!msgs) return;
    for (size_t i = 0; i < n; i++) pl_msg_clear(&msgs[i]);
    free(msgs);
}

const char *pl_msg_status_name(pl_msg_status s)
{
    switch (s) {
    case PL_MSG_FAILED:
        return "failed";
    case PL_MSG_PENDING:
        return "pending";
    case PL_MSG_SENT:
        return "sent";
    case PL_MSG_DELIVERED:
        return "delivered";
    case PL_MSG_READ:
        return "read";
    case PL_MSG_RECEIVED:
        return "received";
    }
    return "unknown";
}

int pl_msg_send_body(pl_client *c, const char *to, const char *kind, const char *body_json,
                     int64_t reply_to, pl_msg *out)
{
    if (out) memset(out, 0, sizeof *out);
    if (!c->token) return pl__fail(c, PL_ENOSESSION, NULL);
    if (!to || (!id_valid(to, "u_") && !id_valid(to, "g_")))
        return pl__fail(c, PL_EINVAL, "the recipient must be a user or group id");
    if (!kind || !*kind || strlen(kind) >= 16 || !body_json)
        return pl__fail(c, PL_EINVAL, "a message needs a kind and a body");
    json_t *body = json_loads(body_json, 0, NULL);
    if (!json_is_object(body)) {
        json_decref(body);
        return pl__fail(c, PL_EINVAL, "the body must be a JSON object");
    }
    char *compact = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    if (!compact) return pl__fail(c, PL_ENOMEM, NULL);
    if (strlen(compact) > MAX_BODY) {
        free(compact);
        return pl__fail(c, PL_ETOOBIG, "the message body is over 64 KiB");
    }
    char conv[ID_MAX];
    if (strncmp(to, "g_", 2) == 0)
        snprintf(conv, sizeof conv, "%s", to); /* a group is its own conversation */
    else
        conv_direct_id(conv, c->sess.user, to);
    bool e2e = false;
    int err = pl__e2e_send(c, to, conv, kind, compact, reply_to, out, &e2e);
    if (e2e) {
        free(compact);
        if (err) return err;
        pthread_mutex_lock(&c->mu);
        c->cmd_kick = true;
        pthread_mutex_unlock(&c->mu);
        if (c->thread_started) pl__engine_wake(c);
        c->errmsg[0] = 0;
        return 0;
    }
    err = pl__store_outbox_add(c->db, c->sess.user, c->sess.device, to, conv, kind, compact,
                               reply_to, out);
    free(compact);
    if (err) return pl__fail(c, err, NULL);
    pthread_mutex_lock(&c->mu);
    c->cmd_kick = true;
    pthread_mutex_unlock(&c->mu);
    if (c->thread_started) pl__engine_wake(c);
    c->errmsg[0] = 0;
    return 0;
}

int pl_msg_send(pl_client *c, const char *to, const char *text, pl_msg *out)
{
    if (out) memset(out, 0, sizeof *out);
    if (!text || !*text) return pl__fail(c, PL_EINVAL, "an empty message");
    size_t len = strlen(text);
    if (!utf8_valid((const uint8_t *)text, len))
        return pl__fail(c, PL_EINVAL, "the text is not valid UTF-8");
    if (len > MAX_TEXT) return pl__fail(c, PL_ETOOBIG, "the text is over 16,384 bytes");
    json_t *b = json_pack("{s:s}", "text", text);
    char *body = json_dumps(b, JSON_COMPACT);
    json_decref(b);
    if (!body) return pl__fail(c, PL_ENOMEM, NULL);
    int err = pl_msg_send_body(c, to, "text", body, 0, out);
    free(body);
    return err;
}

int pl_msgs_history(pl_client *c, const char *conv, int64_t before_local_id, int limit,
                    pl_msg **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (!conv) return pl__fail(c, PL_EINVAL, NULL);
    int err = pl__store_history(c->db, conv, before_local_id, limit, out, n);
    return err ? pl__fail(c, err, NULL) : 0;
}

int pl_outbox_list(pl_client *c, pl_msg **out, size_t *n)
{
    int err = pl__store_outbox(c->db, 0, 0, false, out, n);
    return err ? pl__fail(c, err, NULL) : 0;
}

/* ------------------------------------------------------------------------ conversations */

int pl_convs_list(pl_client *c, pl_conv **out, size_t *n)
{
    int err = pl__store_convs(c->db, NULL, out, n);
    return err ? pl__fail(c, err, NULL) : 0;
}

int pl_conv_get(pl_client *c, const char *conv, pl_conv *out)
{
    pl_conv *list;
    size_t n;
    if (!conv) return pl__fail(c, PL_EINVAL, NULL);
    int err = pl__store_convs(c->db, conv, &list, &n);
    if (err) return pl__fail(c, err, NULL);
    if (n == 0) err = pl__fail(c, PL_ENOTFOUND, "no such conversation on this device");
    if (n) *out = list[0];
    free(list);
    return err;
}

int pl_conv_direct(pl_client *c, const char *peer, char out[PL_ID_MAX])
{
    if (!c->sess.user[0]) return pl__fail(c, PL_ENOSESSION, NULL);
    if (!peer || !id_valid(peer, "u_")) return pl__fail(c, PL_EINVAL, "not a user id");
    conv_direct_id(out, c->sess.user, peer);
    return 0;
}

int pl_conv_mark_read(pl_client *c, const char *conv)
{
    int err = pl__store_mark_read(c->db, conv);
    if (err) return pl__fail(c, err, NULL);
    /* the engine sends the new marker (a `read` frame) when it is online */
    pthread_mutex_lock(&c->mu);
    c->cmd_kick = true;
    pthread_mutex_unlock(&c->mu);
    if (c->thread_started) pl__engine_wake(c);
    return 0;
}

int pl_contacts_list(pl_client *c, pl_user **out, size_t *n)
{
    int err = pl__store_contacts(c->db, c->sess.user, out, n);
    return err ? pl__fail(c, err, NULL) : 0;
}

int64_t pl_store_pos(pl_client *c)
{
    return pl__meta_get_int(c->db, "pos");
}
