/* pb.h: what the parts of parley-bench share: options, the user table, the control messages
 * between the parent and its forked workers, and the small helpers. */
#ifndef PB_H
#define PB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "hist.h"

enum proto { P_PARLEY, P_RELAY, P_MQTT, P_XMPP };
enum scen { S_IDLE, S_DIRECT, S_GROUP, S_CATCHUP, S_SLOW };

typedef struct opts {
    enum proto proto;
    enum scen scen;
    char host[64];
    int port;
    int server_pid;
    int pairs;        /* direct, slow */
    int group_size;   /* group */
    int groups;       /* group */
    double rate;      /* total offered messages a second; 0: flat out */
    int window;       /* flat out: messages in flight per sender */
    double warmup;    /* seconds before measuring */
    double duration;  /* seconds measured */
    int payload;      /* bytes of message text */
    char steps[256];  /* idle: connection counts */
    int per_worker;   /* most connections in one worker process */
    int sources;      /* source addresses 127.0.1.1 .. 127.0.1.N */
    int catchup_n;    /* catchup: waiting messages */
    int repeat;       /* catchup: timed syncs */
    double slow_frac; /* slow: share of clients that stop reading */
    double slow_rate; /* slow: messages a second sent to each slow client */
    int drain_ms;     /* after sending stops, how long deliveries may take */
    int timeout_s;    /* the whole invocation */
    int rest_parallel;
    int inflight; /* connection attempts under way at once, per worker */
    char json[512];
    char label[64];
    char users[512]; /* cache of registered users (parley): "uid token" lines */
    char domain[64]; /* xmpp: the server's host name */
    uint32_t run_id; /* random per invocation: makes cmids unique across runs */
} opts_t;

extern opts_t O;

/* One registered Parley user per connection (parley protocol only). */
typedef struct user {
    char uid[40];
    char *token;
} user_t;

extern user_t *U;       /* [nconns] */
extern char (*GID)[40]; /* group ids [groups] */
extern int NCONNS;

/* ---- parent -> worker ---- */
enum op { OP_CONNECT = 1, OP_RUN, OP_DISCONNECT, OP_QUIT };
#define RUN_ACKWIN 1 /* flat-out window counts acks instead of deliveries */
#define RUN_SLOW   2 /* slow consumers stop reading during the measured phase */
#define RUN_FILL   4 /* catchup: send exactly n messages, then report */

typedef struct cmd {
    int32_t op;
    int32_t a; /* CONNECT: connections to have open; RUN: window; DISCONNECT: keep first a */
    int32_t b; /* CONNECT: 1 = sync from 0; RUN: flags */
    int32_t pad;
    int64_t n; /* RUN_FILL: messages */
    double warmup, duration, rate_per_sender, slow_rate;
} cmd_t;

/* ---- worker -> parent ---- */
typedef struct report {
    int32_t op;
    int32_t worker;
    int64_t conns_ok, conns_failed, conns_lost;
    int64_t elapsed_ns;
    int64_t sent, acked, errors, expected, unique, dups, gaps, foreign, deliv_window;
    int64_t senders;
    hist_t h1; /* latency (RUN) or connect-to-live time (CONNECT) */
    hist_t h2; /* RUN_SLOW: baseline latency of the others before the slow phase */
} report_t;

void report_merge(report_t *into, const report_t *from);

int64_t now_ns(void);
void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Parent side: registration and groups over REST (rest.c). Returns 0 or -1. */
int rest_ensure_users(int n);
int rest_create_groups(int groups, int size, bool *unsupported, char *why, size_t whylen);

/* Worker side (worker.c): runs until OP_QUIT, then returns. */
void worker_main(int id, int lo, int hi, int ctl_fd);

/* The id a connection is known by: a user id for parley, "c<idx>" for relay and MQTT. */
void conn_name(int idx, char out[40]);

#endif
