/* pipeline.h: the message path of one node (ARCHITECTURE.md, "The message path").
 *
 *   inbound.c    on the loop: parses frames, authenticates the socket, validates, enqueues
 *   publisher.c  the pipeline thread: batches items into one transaction, commits, posts results
 *   bus.h        results and deliveries from the pipeline back to the loop (bus_local.c)
 *   session.c    SessionService: which devices are connected to this node
 *   outbound.c   on the loop: acks, live deliveries, sync pages, the bounded send queue
 */
#ifndef PL_PIPELINE_H
#define PL_PIPELINE_H

#include <jansson.h>

#include "server/server.h"
#include "server/store/store.h"

enum item_kind {
    ITEM_SEND,   /* a message: direct (to u_) or to a group (to g_) */
    ITEM_MODIFY, /* edit, delete or react on a stored message */
    ITEM_RECV,   /* a device holds its inbox up to a position: delivered markers */
    ITEM_READ,   /* a user read a conversation up to a seq: read markers */
    ITEM_REST,   /* a REST call that writes messages (groups): runs on the pipeline thread */
};

typedef struct delivery {
    char user[ID_MAX];
    int64_t pos;
    int msg; /* index into item.msgs */
} delivery;

/* A frame for every connected device of a user that is not stored (receipts, events). */
typedef struct note {
    char user[ID_MAX];
    char except_dev[ID_MAX]; /* "" for none */
    char only_dev[ID_MAX];   /* "" for every device of user; else that device alone */
    char *frame;
} note;

struct api_req;

/* One unit of work for the pipeline thread. Filled on the loop, completed by the pipeline,
 * returned to the loop through the bus, freed there. */
typedef struct item {
    struct item *next;
    enum item_kind kind;
    conn_t *conn; /* referenced (conn_ref) until the result is handled on the loop */
    char req_id[65];
    char user[ID_MAX], dev[ID_MAX];
    /* ITEM_SEND, ITEM_MODIFY, ITEM_READ */
    char to[ID_MAX]; /* ITEM_SEND: u_ or g_; others: the conversation */
    char cmid[65];
    char msg_kind[16]; /* ITEM_MODIFY: edit, delete or reaction */
    char *body;        /* JSON text */
    int64_t reply_to;  /* ITEM_MODIFY: the target seq */
    /* ITEM_RECV, ITEM_READ */
    int64_t upto;
    /* ITEM_REST */
    struct api_req *req;
    /* results */
    const char *err_code, *err_msg; /* NULL when it worked */
    /* with err_code: a JSON object text whose members join the error frame (device_list_stale) */
    char *err_extra;
    st_msg *msgs; /* messages written (msgs[0] is what the ack names) */
    int nmsgs;
    delivery *deliv;
    int ndeliv;
    note *notes;
    int nnotes;
    char invalidate[ID_MAX]; /* a conversation whose members changed */
    int64_t now;
} item;

/* For code running on the pipeline thread (items and ITEM_REST handlers): writes a message from
 * it->user in conv, appends it to the inbox of every member, and records the deliveries; the
 * conversation's last_seq and the inbox heads in the store are current when it returns.
 * body is JSON text (copied). Returns ST_OK or an error. */
int pipeline_write_msg(store_t *st, item *it, const char *conv, const char *kind, const char *body,
                       int64_t reply_to);
/* Queues a frame for every connected device of user (not stored). Takes ownership of frame. */
void pipeline_note(item *it, const char *user, const char *except_dev, char *frame);
/* The same for one device of user only. */
void pipeline_note_dev(item *it, const char *user, const char *dev, char *frame);
/* Queues a frame for every member of conv but skip_user, when the group has at most
 * receipt_max members. */
int pipeline_note_members(store_t *st, item *it, const char *conv, const char *skip_user,
                          json_t *frame);

void item_free(item *it);

/* publisher.c */
int pipeline_start(server_t *s);
/* Drains what is queued, then stops the thread. */
void pipeline_stop(server_t *s);
void pipeline_submit(server_t *s, item *it);

/* bus_local.c: the pipeline posts a finished batch; the loop's async handle drains it. */
int bus_init(server_t *s);
void bus_free(server_t *s);
void bus_post(server_t *s, item *batch);
void bus_drain(server_t *s);

/* inbound.c */
void inbound_upgrade(conn_t *c);
void inbound_on_text(void *ud, const char *msg, size_t len);
/* The pipeline answered one of c's frames: reading resumes once few enough wait. */
void inbound_answered(conn_t *c);

/* session.c */
void session_add(conn_t *c);
void session_remove(conn_t *c);
conn_t *session_first(server_t *s, const char *user);
/* Closes every socket of the device (or of every device of user when dev is NULL). */
void session_kick(server_t *s, const char *user, const char *dev, const char *reason);

/* presence.c: presence, typing and the members cache (loop thread) */
void presence_connected(conn_t *c);
void presence_disconnected(server_t *s, const char *user);
void presence_set(conn_t *c, bool away);
void typing_relay(conn_t *c, const char *conv, bool on);
void groups_invalidate(server_t *s, const char *conv);
void groups_free(server_t *s);

/* outbound.c */
void outbound_result(server_t *s, item *it);
/* Sends a JSON frame to every authenticated socket of user except the device except_dev. */
void outbound_to_user(server_t *s, const char *user, const char *except_dev, const char *frame);
void outbound_drained(conn_t *c);
/* Starts a sync read for c after pos: asked by the client (answered with synced, echoing req_id
 * when not NULL) or started by the server itself to catch a paused socket up. */
void outbound_sync(conn_t *c, bool client, const char *req_id, int64_t after, int limit);
void send_error(conn_t *c, const char *req_id, const char *code, const char *msg);
/* send_error plus the members of the JSON object text extra (device_list_stale's devices). */
void send_error_extra(conn_t *c, const char *req_id, const char *code, const char *msg,
                      const char *extra);
/* What one device sees of an e2e body (E2E.md §7.1): {v, ctl, c?, g?}, c being the
 * ciphertext of its own devs entry (absent when it has none). New reference. */
json_t *e2e_body_view(json_t *body, const char *user, const char *dev);
/* The msg frame of a stored message for inbox position pos (heap string). */
char *msg_frame(int64_t pos, const st_msg *m);

#endif
