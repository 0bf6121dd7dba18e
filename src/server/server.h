/* server.h: the parts of one parleyd node and how they meet.
 *
 * Threads and what each owns:
 * - the I/O loop thread: the listener, every conn_t, the SessionService map and the outbound
 *   path. Nothing on it blocks: no disk, no password hashing.
 * - the pipeline thread (pipeline/publisher.c): the only writer of messages and inboxes.
 * - libuv's worker pool: REST handlers, token checks, sync reads; each borrows a store
 *   connection from the pool for the duration of one job.
 * They talk only through queues: inbound items to the pipeline, results back through the bus. */
#ifndef PL_SERVER_H
#define PL_SERVER_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "common/buf.h"
#include "common/hmap.h"
#include "common/util.h"
#include "common/ws.h"
#include "server/config.h"
#include "server/net/http.h"

#define PARLEY_VERSION "0.1.0"

typedef struct server server_t;
typedef struct conn conn_t;
typedef struct store_pool store_pool_t;
typedef struct pipeline pipeline_t;
typedef struct bus bus_t;

enum conn_state { CONN_HTTP, CONN_WS, CONN_CLOSING };

struct conn {
    uv_tcp_t tcp;
    uv_timer_t timer; /* auth and idle timeouts, the close linger */
    server_t *srv;
    uint64_t id;
    enum conn_state state;
    int refs;         /* jobs in flight that point at this conn (loop thread only) */
    bool handle_open; /* tcp and timer not yet closed */
    bool busy;        /* a request or the auth check is in flight: input waits */
    bool close_after_write;
    bool shut; /* FIN sent, waiting for the peer's */
    char ip[48];
    buf_t in;      /* bytes read and not yet parsed */
    buf_t early;   /* frames that arrived while the auth check ran (length-prefixed) */
    size_t queued; /* bytes queued for the socket (WebSocket output included) not yet written */
    size_t out_counted; /* bytes of ws_out() already counted in queued */
    bool dirty;       /* on srv->dirty: WebSocket output waits for the end of the loop iteration */
    bool read_paused; /* conn_read_pause() stopped reading */
    int inflight;     /* frames in the pipeline not yet answered (inbound.c back-pressure) */
    http_in http;     /* its parser and headers are freed once the conn is a WebSocket */
    ws_t *ws;
    conn_t *next_all, *prev_all;     /* every conn, for shutdown */
    conn_t *next_dirty, *prev_dirty; /* srv->dirty */

    /* WebSocket session, once authenticated */
    bool authed;
    char user[ID_MAX];
    char dev[ID_MAX];
    conn_t *next_user, *prev_user; /* other conns of the same user (SessionService) */
    /* Delivery state: see outbound.c */
    bool live;          /* new inbox entries are pushed as they are committed */
    bool syncing;       /* a sync read is in flight */
    bool lagging;       /* paused for a full send queue; catches up when it drains */
    int64_t sent_pos;   /* every inbox entry up to here was sent (or is known to the device) */
    int64_t missed_pos; /* highest entry not pushed while not live */
    bool away;          /* the client said it is in the background */
    double tokens;      /* send rate bucket */
    int64_t tokens_at;
    int64_t paused_until;  /* sends refused until then (mono ms) after a rate_limited */
    int64_t last_frame_at; /* mono ms */
};

struct server {
    config_t cfg;
    uv_loop_t *loop;
    uv_tcp_t listener;
    uv_signal_t sigint, sigterm;
    uv_async_t wake; /* the bus wakes the loop with it */
    uint8_t jwt_key[32];
    char jwt_kid[16];
    store_pool_t *pool;
    pipeline_t *pipeline;
    bus_t *bus;
    hmap_t sessions;            /* user id -> first conn_t of that user */
    hmap_t presence;            /* user id -> last status told to others (presence.c) */
    hmap_t groups;              /* conv id -> cached members (presence.c, for typing) */
    conn_t *conns;              /* every open conn */
    conn_t *dirty;              /* conns with WebSocket output to write (net/conn.c) */
    uv_prepare_t flush_prepare; /* both write the dirty conns, once per loop iteration */
    uv_check_t flush_check;
    bool flush_started;
    uint64_t next_conn_id;
    size_t nconns;
    bool stopping;
};

/* net/conn.c */
void conn_accept(server_t *srv);
/* Queues bytes to the socket (copied). */
void conn_write(conn_t *c, const void *data, size_t len);
/* Queues everything the WebSocket produced (counted in queued at once); the bytes are written
 * once per loop iteration, every frame queued for the conn in that iteration in one write. Closes
 * the conn (after the write) when the WebSocket is closing. */
void conn_flush_ws(conn_t *c);
/* Queues one text frame (see conn_flush_ws). */
void conn_ws_send(conn_t *c, const char *frame, size_t len);
void conn_ws_close(conn_t *c, uint16_t code, const char *reason);
/* Closes after the queued bytes are written. */
void conn_close(conn_t *c);
void conn_ref(conn_t *c);
/* Drops a reference; returns false when the conn is closed (the caller must not use it then). */
bool conn_unref(conn_t *c);
/* Resumes input after a request or check finished. */
void conn_resume(conn_t *c);
bool conn_alive(const conn_t *c);
/* Stop and restart reading from the socket (back-pressure). Idempotent; no-ops on a closed conn.
 * Bytes already read still wait in c->in and are parsed as before. */
void conn_read_pause(conn_t *c);
void conn_read_resume(conn_t *c);

/* more of net/conn.c */
int conn_listen(server_t *s);
void conn_close_all(server_t *s);
void conn_start_timer(conn_t *c, uint64_t first_ms);
#endif
