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

enum item_kind { ITEM_SEND, ITEM_RECV };

typedef struct delivery {
    char user[ID_MAX];
    int64_t pos;
} delivery;

/* One unit of work for the pipeline thread. Filled on the loop, completed by the pipeline,
 * returned to the loop through the bus, freed there. */
typedef struct item {
    struct item *next;
    enum item_kind kind;
    conn_t *conn; /* referenced (conn_ref) until the result is handled on the loop */
    char req_id[65];
    char user[ID_MAX], dev[ID_MAX];
    /* ITEM_SEND */
    char to[ID_MAX];
    char cmid[65];
    char msg_kind[16];
    char *body; /* JSON text */
    int64_t reply_to;
    /* ITEM_RECV */
    int64_t upto;
    /* results */
    const char *err_code, *err_msg; /* NULL when it worked */
    st_msg msg;                     /* the stored message (conv, seq, ts ...) */
    delivery *deliv;
    int ndeliv;
} item;

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

/* session.c */
void session_add(conn_t *c);
void session_remove(conn_t *c);
conn_t *session_first(server_t *s, const char *user);
/* Closes every socket of the device (or of every device of user when dev is NULL). */
void session_kick(server_t *s, const char *user, const char *dev, const char *reason);

/* outbound.c */
void outbound_result(server_t *s, item *it);
void outbound_drained(conn_t *c);
/* Starts a sync read for c after pos: asked by the client (answered with synced, echoing req_id
 * when not NULL) or started by the server itself to catch a paused socket up. */
void outbound_sync(conn_t *c, bool client, const char *req_id, int64_t after, int limit);
void send_error(conn_t *c, const char *req_id, const char *code, const char *msg);
/* The msg frame of a stored message for inbox position pos (heap string). */
char *msg_frame(int64_t pos, const st_msg *m);

#endif
