/* internal.h: what the files of libparley share and the application must not see.
 *
 * Who owns what (one owner per piece of state, written down here and nowhere else):
 *   - the application thread owns c->db (its own SQLite connection), c->errmsg, c->sess and
 *     c->token, and makes every REST call;
 *   - the I/O thread (engine.c) owns its own SQLite connection, the socket, the WebSocket
 *     endpoint and the sync / outbox state; it never touches the application's fields;
 *   - both meet only under c->mu: the event queue (events.c), the command flags, the published
 *     state and the token handed to the engine. The store file itself is shared through SQLite
 *     (WAL mode, BEGIN IMMEDIATE for every write transaction, a busy timeout).
 * Internal names start with pl__ (two underscores) and are not part of the API.
 */
#ifndef PL_CLIENT_INTERNAL_H
#define PL_CLIENT_INTERNAL_H

#include <jansson.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>

#include "client/parley.h"

#define PL_EVENT_QUEUE_MAX 100000 /* events held for an application that does not read them */

typedef struct pl__evnode {
    struct pl__evnode *next;
    pl_event ev;
} pl__evnode;

struct pl_client {
    /* set by pl_client_new, read-only afterwards (any thread) */
    char **servers;
    size_t nservers;
    char *store_path;
    char *device_name;
    int backoff_min_ms, backoff_max_ms, rest_timeout_ms, connect_timeout_ms;

    /* the application thread */
    sqlite3 *db;
    char errmsg[512];
    pl_session sess;
    char *token;
    bool thread_started;
    pthread_t thread;

    /* shared, under mu */
    pthread_mutex_t mu;
    pl__evnode *ev_head, *ev_tail;
    size_t ev_count;
    bool ev_overflow;
    int ev_fd;             /* eventfd: readable while ev_count > 0 */
    int wake_fd;           /* eventfd: the application wakes the I/O thread */
    bool cmd_stop;         /* the I/O thread must close and return */
    bool cmd_kick;         /* the outbox has new rows */
    bool cmd_push;         /* a push arrived: sync now, retry now */
    bool cmd_servers;      /* the server list changed: start again from its first */
    pl_state state;        /* as published by the I/O thread */
    char *io_token;        /* the token the engine uses (a copy, replaced at each connect) */
    atomic_int server_idx; /* the server that worked last (REST starts there) */
    pl_presence presence;  /* as the application wants it (online or away) */
    struct pl__frame *fr_head, *fr_tail; /* ephemeral frames (typing) for the engine to send */
};

/* A frame that is sent when online and dropped otherwise (typing). */
typedef struct pl__frame {
    struct pl__frame *next;
    char *text;
} pl__frame;

/* ---- errors.c */
/* Records err and a sentence in c->errmsg (NULL: pl_strerror(err)); returns err. */
int pl__fail(pl_client *c, int err, const char *msg);
/* The PL_E... code for a server error code (HTTP status and "error.code", or a socket error). */
int pl__map_error(long status, const char *code);

/* ---- events.c (any thread) */
void pl__ev_init(pl_client *c);
void pl__ev_destroy(pl_client *c);
/* Queues a copy of *ev; ownership of what it points to moves to the queue (ev is zeroed). */
void pl__ev_push(pl_client *c, pl_event *ev);
void pl__ev_state(pl_client *c, pl_state s);
void pl__ev_error(pl_client *c, int err, const char *text);

/* ---- rest.c (application thread) */
/* One REST call: method, path (with query), token or NULL, body (not stolen) or NULL. Tries
 * the servers from the last good one on. On 0, *status and *resp (may be NULL) are the answer;
 * a non-2xx status is also mapped, recorded in errmsg and returned as a PL_E... code, *resp
 * still set (the caller json_decref()s it). */
int pl__rest(pl_client *c, const char *method, const char *path, const char *token, json_t *body,
             long *status, json_t **resp);
void pl__user_from_json(pl_user *u, json_t *j);
/* The same, to one server given by base URL, writing no client field (the I/O thread uses it);
 * errors are only returned. */
int pl__rest_at(pl_client *c, const char *base, const char *method, const char *path,
                const char *token, json_t *body, long *status, json_t **resp);

/* ---- store.c (either thread, on that thread's own connection) */
int pl__store_open(const char *path, sqlite3 **out);
void pl__store_close(sqlite3 *db);
int pl__meta_get(sqlite3 *db, const char *key, char *out, size_t cap);
int64_t pl__meta_get_int(sqlite3 *db, const char *key);
int pl__meta_set(sqlite3 *db, const char *key, const char *value);
int pl__meta_set_int(sqlite3 *db, const char *key, int64_t value);
int pl__store_begin(sqlite3 *db);
int pl__store_commit(sqlite3 *db);
void pl__store_rollback(sqlite3 *db);
/* True when the store holds messages (of whichever user it belonged to). */
bool pl__store_has_messages(sqlite3 *db);
/* Inserts or refreshes a user (empty fields do not overwrite known ones). */
int pl__store_user_put(sqlite3 *db, const pl_user *u);
int pl__store_user_get(sqlite3 *db, const char *id, pl_user *out);
int pl__store_user_by_name(sqlite3 *db, const char *username, pl_user *out);
int pl__store_contacts(sqlite3 *db, const char *me, pl_user **out, size_t *n);
/* Adds a pending message to the outbox (and its conversation); fills *out if given. */
int pl__store_outbox_add(sqlite3 *db, const char *me, const char *dev, const char *to,
                         const char *conv, const char *kind, const char *body, int64_t reply_to,
                         pl_msg *out);
/* The same inside the caller's transaction, with the caller's cmid and (e2e) the body to send
 * instead of kind/body (NULL: none); *id gets the local_id. */
int pl__store_outbox_insert(sqlite3 *db, const char *me, const char *dev, const char *to,
                            const char *conv, const char *kind, const char *body, int64_t reply_to,
                            const char *cmid, const char *wire, int64_t *id);
/* The e2e body an outbox row is sent with (malloc'd), NULL when it has none. */
char *pl__store_wire(sqlite3 *db, int64_t local_id);
int pl__store_msg_get(sqlite3 *db, int64_t local_id, pl_msg *out);
int pl__store_history(sqlite3 *db, const char *conv, int64_t before, int limit, pl_msg **out,
                      size_t *n);
/* Pending rows after after_local_id in order; control rows (RETRY) only when with_ctl: the
 * engine sends them, the application never sees them. */
int pl__store_outbox(sqlite3 *db, int64_t after_local_id, int limit, bool with_ctl, pl_msg **out,
                     size_t *n);
int pl__store_convs(sqlite3 *db, const char *conv, pl_conv **out, size_t *n);
int pl__store_mark_read(sqlite3 *db, const char *conv);

/* Results of pl__store_incoming. */
enum { PL__IN_DUP = 0, PL__IN_NEW = 1, PL__IN_OWN_ACKED = 2 };
/* Stores one msg frame (inside the caller's transaction): a new message (PL__IN_NEW, *out
 * filled), a repeat by (conv, seq) (PL__IN_DUP), or this device's own pending message seen in
 * the inbox before its ack (PL__IN_OWN_ACKED, *out filled). Negative on a store error or a
 * malformed frame (PL_EPROTO). */
int pl__store_incoming(sqlite3 *db, const char *me, const char *mydev, json_t *m, pl_msg *out);
/* The ack of outbox row local_id: 1 and *out filled when it moved from pending to sent, 0 when
 * it was not pending any more. */
int pl__store_ack(sqlite3 *db, int64_t local_id, const char *conv, int64_t seq, int64_t ts,
                  pl_msg *out);
int pl__store_fail(sqlite3 *db, int64_t local_id, pl_msg *out);
/* Control messages (kind "ctl", an e2e RETRY) are outbox rows that never show: history, the
 * conversation list and the pending count leave them out, and an ack (pl__store_ack, which
 * then answers 0) or a refusal deletes them. pl__store_ctl_drop: 1 when local_id was one and
 * is gone, 0 when it is not one. pl__store_ctl_done: deletes this device's ctl row with cmid
 * (its copy came back through the inbox). */
int pl__store_ctl_drop(sqlite3 *db, int64_t local_id);
int pl__store_ctl_done(sqlite3 *db, const char *dev, const char *cmid);
/* Moves a peer's markers forward (never back); 1 when something moved. */
int pl__store_receipt(sqlite3 *db, const char *me, const char *conv, const char *user,
                      int64_t delivered, int64_t read);

/* One conversation of GET /v1/convs merged into the store (inside the caller's transaction):
 * what moved, for the events. */
typedef struct pl__merge {
    char conv[PL_ID_MAX];
    char user[PL_ID_MAX]; /* direct: the peer */
    bool peer;
    bool changed, delivered_moved, read_moved;
    int64_t delivered, read;
} pl__merge;
int pl__store_conv_merge(sqlite3 *db, const char *me, json_t *cv, pl__merge *out);
/* Merges the answer of GET /v1/convs (its "convs" array) in one transaction; *moved (may be
 * NULL) gets the merges, *n their count; caller frees *moved. */
int pl__store_convs_merge(sqlite3 *db, const char *me, json_t *convs, pl__merge **moved, size_t *n);
/* A group as the server described it: the conversation, its name and (m not NULL) members. */
int pl__store_group_put(sqlite3 *db, const char *id, const char *name, const pl_member *m,
                        size_t n);
int pl__store_conv_forget_member(sqlite3 *db, const char *conv, const char *user);
/* A user's name for sentences: username, else display name, else the id. */
void pl__store_user_label(sqlite3 *db, const char *me, const char *id, char *out, size_t cap);

/* Calls fn for every conversation whose read marker moved since it was last sent, and records
 * it as sent (own transaction: not inside the engine's batch). */
int pl__store_take_reads(sqlite3 *db, void (*fn)(void *ud, const char *conv, int64_t upto),
                         void *ud);

/* ---- e2ec.c: end-to-end encryption glue (keys in the store, sending, receiving) */
/* Direct message to `to` (a user): when both have an identity key, encrypts and queues it
 * (*handled true, errors recorded); otherwise *handled false and nothing happened. */
int pl__e2e_send(pl_client *c, const char *to, const char *conv, const char *kind, const char *body,
                 int64_t reply_to, pl_msg *out, bool *handled);
/* An e2e msg frame (I/O thread, inside its transaction): a new frame (caller json_decref()s)
 * with the decrypted kind and body, or kind "undecryptable" and a visible text; NULL for a
 * control message (a RETRY is applied here) or a payload with nothing to show. *changed_aik
 * is set when the sender's identity key differs from the pinned one. A failure that calls for
 * a RETRY (E2E.md §7.3) queues one in the store, at most one per (peer device, conv) per 10
 * minutes, and sets *retry. */
json_t *pl__e2e_receive(pl_client *c, sqlite3 *db, const char *me, json_t *f, bool *changed_aik,
                        bool *retry);
/* The queued RETRYs (I/O thread, REST to base for a bundle when there is no session, own
 * transaction each): each becomes an outbox row of kind "ctl" whose wire is the e2e body with
 * ctl true and one devs entry. A queued RETRY that cannot be built for good is dropped; one
 * that needs the network stays queued. */
void pl__e2e_retries(pl_client *c, sqlite3 *db, const char *base, const char *token, const char *me,
                     const char *mydev);
/* device_list_stale for outbox row local_id (I/O thread, REST to base, own transaction):
 * keeps the entries of devices still listed, adds entries for new ones (claim, X3DH, the same
 * CONTENT and cmid) and replaces the row's e2e body. 0: send it again; negative: give up. */
int pl__e2e_rebuild(pl_client *c, sqlite3 *db, const char *base, const char *token, const char *me,
                    int64_t local_id, json_t *devices);
/* A group's system message (I/O thread, inside its transaction): a member who left or was
 * removed makes this device start a new sender key before its next send; "e2e" turned on is
 * remembered. */
void pl__e2e_on_system(sqlite3 *db, const char *conv, json_t *body);
/* prekeys_low: generates and uploads 100 more OPKs (I/O thread, REST to base). */
int pl__e2e_refill(pl_client *c, sqlite3 *db, const char *base, const char *token);
/* The signed prekey check (I/O thread, after a sync and with each refill, outside its
 * transaction; REST to base): a new SPK when the current one is 7 days old, an upload of one
 * not published yet, and the deletion of SPKs replaced 30 days ago with their replay caches. */
int pl__e2e_spk_check(pl_client *c, sqlite3 *db, const char *base, const char *token);

/* ---- engine.c */
void *pl__engine_main(void *arg);
/* Wakes the I/O thread (any thread). */
void pl__engine_wake(pl_client *c);

/* ---- conn.c: URL parsing and the WebSocket upgrade, used by the engine */
typedef struct pl__url {
    char host[256];
    char port[8];
    char prefix[256]; /* path prefix without the trailing slash, "" for none */
} pl__url;
int pl__url_parse(const char *url, pl__url *out);

#endif
