/* chelp.h: helpers for the libparley tests: a client wrapped with what its events said.
 *
 * Each tcl holds one pl_client (store in its own temp dir) and records every event it read:
 * the messages received (MESSAGE), how often each outbox row was acked (ACK), the last state.
 * tcl_wait() reads events until a condition holds or a deadline passes, so a test can fail but
 * never hang. Header-only (static functions): each test binary is one translation unit. */
#ifndef T_CHELP_H
#define T_CHELP_H

#include "lib/tassert.h"

#include "client/parley.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define TCL_MAX_MSGS 4096

typedef struct tcl {
    pl_client *c;
    char dir[PATH_MAX];
    char store[PATH_MAX + 16];
    char label[16];
    pl_state state;
    int nmsgs;                 /* MESSAGE events */
    pl_msg *msgs;              /* their messages, in event order (TCL_MAX_MSGS kept) */
    int nacks;                 /* ACK events */
    int acks_of[TCL_MAX_MSGS]; /* by local_id: ACK events for that row */
    int nfailed;
    int nsynced;
    int nerrors;
    int64_t delivered_upto, read_upto; /* from RECEIPT events */
} tcl;

static inline char *tcl_url(char *out, size_t cap, int port)
{
    snprintf(out, cap, "http://127.0.0.1:%d", port);
    return out;
}

/* A port on which nothing listens (bound, then released). */
static inline int tcl_dead_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    bind(fd, (struct sockaddr *)&a, sizeof a);
    getsockname(fd, (struct sockaddr *)&a, &al);
    close(fd);
    return ntohs(a.sin_port);
}

/* Opens a client on a new temp store (or reopens t->store when keep_store) with the servers
 * given. Fast backoff so that tests do not wait long. */
static inline void tcl_open(tcl *t, const char *label, const char *const *servers, size_t n,
                            bool keep_store)
{
    if (!keep_store) {
        memset(t, 0, sizeof *t);
        const char *tmp = getenv("TMPDIR");
        snprintf(t->dir, sizeof t->dir, "%s/pltest.XXXXXX", tmp && *tmp ? tmp : "/tmp");
        assert_non_null(mkdtemp(t->dir));
        snprintf(t->store, sizeof t->store, "%s/store.db", t->dir);
        snprintf(t->label, sizeof t->label, "%s", label);
        t->msgs = calloc(TCL_MAX_MSGS, sizeof *t->msgs);
        assert_non_null(t->msgs);
    }
    pl_options o = {.servers = servers,
                    .nservers = n,
                    .store_path = t->store,
                    .device_name = label,
                    .backoff_min_ms = 50,
                    .backoff_max_ms = 400,
                    .connect_timeout_ms = 3000};
    assert_int_equal(pl_client_new(&t->c, &o), 0);
}

/* A client for user u (token adopted) on the server at port. */
static inline void tcl_open_user(tcl *t, const char *label, int port, const tuser *u)
{
    char url[64];
    const char *servers[] = {tcl_url(url, sizeof url, port)};
    tcl_open(t, label, servers, 1, false);
    assert_int_equal(pl_session_adopt(t->c, u->id, u->device, u->username, u->token), 0);
}

static inline void tcl_handle(tcl *t, pl_event *ev)
{
    switch (ev->kind) {
    case PL_EV_STATE:
        t->state = ev->state;
        break;
    case PL_EV_MESSAGE:
        if (t->nmsgs < TCL_MAX_MSGS) {
            t->msgs[t->nmsgs] = ev->msg;
            memset(&ev->msg, 0, sizeof ev->msg);
        }
        t->nmsgs++;
        break;
    case PL_EV_ACK:
        t->nacks++;
        if (ev->msg.local_id > 0 && ev->msg.local_id < TCL_MAX_MSGS) t->acks_of[ev->msg.local_id]++;
        break;
    case PL_EV_MSG_FAILED:
        t->nfailed++;
        t_note("[%s] message %lld failed: %s", t->label, (long long)ev->msg.local_id,
               ev->text ? ev->text : "");
        break;
    case PL_EV_SYNCED:
        t->nsynced++;
        break;
    case PL_EV_RECEIPT:
        if (ev->status == PL_MSG_READ && ev->seq > t->read_upto) t->read_upto = ev->seq;
        if (ev->seq > t->delivered_upto) t->delivered_upto = ev->seq;
        break;
    case PL_EV_ERROR:
        t->nerrors++;
        if (getenv("T_VERBOSE"))
            t_note("[%s] error %s: %s", t->label, pl_err_name(ev->error), ev->text ? ev->text : "");
        break;
    default:
        break;
    }
    pl_event_clear(ev);
}

/* Reads every event already queued. */
static inline void tcl_drain(tcl *t)
{
    pl_event ev;
    while (pl_client_next_event(t->c, &ev) == 0) tcl_handle(t, &ev);
}

/* Reads events of all clients until cond(ud) is true or timeout_ms passes. */
static inline bool tcl_wait(tcl **ts, int n, bool (*cond)(void *), void *ud, int timeout_ms)
{
    int64_t deadline = mono_ms() + timeout_ms;
    for (;;) {
        for (int i = 0; i < n; i++) tcl_drain(ts[i]);
        if (cond(ud)) return true;
        int64_t left = deadline - mono_ms();
        if (left <= 0) return false;
        struct pollfd p[8];
        for (int i = 0; i < n && i < 8; i++)
            p[i] = (struct pollfd){.fd = pl_client_fd(ts[i]->c), .events = POLLIN};
        poll(p, (nfds_t)(n < 8 ? n : 8), left > 100 ? 100 : (int)left);
    }
}

static inline bool tcl_is_online(void *ud)
{
    return ((tcl *)ud)->state == PL_STATE_ONLINE;
}

static inline void tcl_wait_online(tcl *t, int timeout_ms)
{
    tcl *ts[] = {t};
    if (!tcl_wait(ts, 1, tcl_is_online, t, timeout_ms))
        t_note("[%s] not online after %d ms (state %s)", t->label, timeout_ms,
               pl_state_name(t->state));
    assert_int_equal(t->state, PL_STATE_ONLINE);
}

static inline void tcl_rmdir(const char *dir)
{
    if (getenv("T_KEEP")) return;
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[PATH_MAX + 300];
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

/* Frees the client and (unless keep_store) everything else of t. */
/* True when the file holds the bytes of s (the scans for plaintexts in the server's files). */
static inline bool t_file_has(const char *path, const char *s)
{
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    size_t cap = 1 << 20, n = 0, k;
    char *b = malloc(cap);
    assert_non_null(b);
    while ((k = fread(b + n, 1, cap - n, f)) > 0) {
        n += k;
        if (n == cap) {
            b = realloc(b, cap *= 2);
            assert_non_null(b);
        }
    }
    fclose(f);
    bool found = false;
    size_t sl = strlen(s);
    for (size_t i = 0; !found && i + sl <= n; i++) found = memcmp(b + i, s, sl) == 0;
    free(b);
    return found;
}

static inline void tcl_close(tcl *t, bool keep_store)
{
    if (t->c) {
        pl_client_free(t->c);
        t->c = NULL;
    }
    if (keep_store) return;
    int n = t->nmsgs < TCL_MAX_MSGS ? t->nmsgs : TCL_MAX_MSGS;
    for (int i = 0; i < n; i++) pl_msg_clear(&t->msgs[i]);
    free(t->msgs);
    t->msgs = NULL;
    tcl_rmdir(t->dir);
}

/* ---------------------------------------------------------------- messages a client holds */

/* How many of t's messages contain text. */
static inline int tcl_count_msgs(tcl *t, const char *text)
{
    int n = t->nmsgs < TCL_MAX_MSGS ? t->nmsgs : TCL_MAX_MSGS, k = 0;
    for (int i = 0; i < n; i++)
        if (t->msgs[i].text && strstr(t->msgs[i].text, text)) k++;
    return k;
}

/* The first of t's messages that contains text, or NULL. */
static inline const pl_msg *tcl_find_msg(tcl *t, const char *text)
{
    int n = t->nmsgs < TCL_MAX_MSGS ? t->nmsgs : TCL_MAX_MSGS;
    for (int i = 0; i < n; i++)
        if (t->msgs[i].text && strstr(t->msgs[i].text, text)) return &t->msgs[i];
    return NULL;
}

typedef struct {
    tcl *t;
    const char *text;
} tcl_want_msg;

static inline bool tcl_has_msg(void *ud)
{
    tcl_want_msg *w = ud;
    return tcl_find_msg(w->t, w->text) != NULL;
}

/* Waits up to 15 s for a message of t that contains text. */
static inline void tcl_wait_msg(tcl *t, const char *text)
{
    tcl_want_msg w = {t, text};
    tcl *ts[] = {t};
    bool ok = tcl_wait(ts, 1, tcl_has_msg, &w, 15000);
    if (!ok) t_note("[%s] no message with \"%s\" (%d messages)", t->label, text, t->nmsgs);
    assert_true(ok);
}

#endif
