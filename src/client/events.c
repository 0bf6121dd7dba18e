/* events.c: the event queue between the I/O thread and the application.
 *
 * A linked list under c->mu with an eventfd that is readable exactly while the list is not
 * empty (written when the first event goes in, drained when the last comes out), so the
 * application can poll it level-triggered alongside its own descriptors. The queue is capped
 * at PL_EVENT_QUEUE_MAX: past that, events are dropped and one PL_EV_OVERFLOW is queued, which
 * tells the application to re-read the store (everything an event reports is in the store
 * before the event is queued). */
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "client/internal.h"
#include "common/util.h"

void pl__ev_init(pl_client *c)
{
    c->ev_head = c->ev_tail = NULL;
    c->ev_count = 0;
    c->ev_overflow = false;
}

void pl__ev_destroy(pl_client *c)
{
    pl__evnode *n = c->ev_head;
    while (n) {
        pl__evnode *next = n->next;
        pl_event_clear(&n->ev);
        free(n);
        n = next;
    }
    pl__ev_init(c);
}

static void signal_fd(int fd)
{
    uint64_t one = 1;
    ssize_t k = write(fd, &one, sizeof one);
    (void)k; /* EAGAIN only when the counter is huge: it is readable anyway */
}

static void drain_fd(int fd)
{
    uint64_t v;
    ssize_t k = read(fd, &v, sizeof v);
    (void)k;
}

void pl__ev_push(pl_client *c, pl_event *ev)
{
    pl__evnode *n = calloc(1, sizeof *n);
    if (!n) abort(); /* the process is out of memory; nothing sensible is left to do */
    pthread_mutex_lock(&c->mu);
    if (c->ev_count >= PL_EVENT_QUEUE_MAX) {
        if (!c->ev_overflow) {
            c->ev_overflow = true;
            n->ev.kind = PL_EV_OVERFLOW;
        } else {
            free(n);
            n = NULL;
        }
        pl_event_clear(ev);
    } else {
        n->ev = *ev;
        memset(ev, 0, sizeof *ev);
    }
    if (n) {
        if (c->ev_tail)
            c->ev_tail->next = n;
        else
            c->ev_head = n;
        c->ev_tail = n;
        if (c->ev_count++ == 0) signal_fd(c->ev_fd);
    }
    pthread_mutex_unlock(&c->mu);
}

void pl__ev_state(pl_client *c, pl_state s)
{
    pthread_mutex_lock(&c->mu);
    bool changed = c->state != s;
    c->state = s;
    pthread_mutex_unlock(&c->mu);
    if (!changed) return;
    pl_event ev = {.kind = PL_EV_STATE, .state = s};
    pl__ev_push(c, &ev);
}

void pl__ev_error(pl_client *c, int err, const char *text)
{
    pl_event ev = {.kind = PL_EV_ERROR, .error = err};
    ev.text = strdup(text && *text ? text : pl_strerror(err));
    pl__ev_push(c, &ev);
}

int pl_client_fd(pl_client *c)
{
    return c->ev_fd;
}

int pl_client_next_event(pl_client *c, pl_event *ev)
{
    memset(ev, 0, sizeof *ev);
    pthread_mutex_lock(&c->mu);
    pl__evnode *n = c->ev_head;
    if (n) {
        c->ev_head = n->next;
        if (!c->ev_head) c->ev_tail = NULL;
        if (--c->ev_count == 0) drain_fd(c->ev_fd);
        if (n->ev.kind == PL_EV_OVERFLOW) c->ev_overflow = false;
    }
    pthread_mutex_unlock(&c->mu);
    if (!n) return PL_EAGAIN;
    *ev = n->ev;
    free(n);
    return 0;
}

int pl_client_wait_event(pl_client *c, pl_event *ev, int timeout_ms)
{
    int64_t deadline = mono_ms() + timeout_ms;
    for (;;) {
        if (pl_client_next_event(c, ev) == 0) return 0;
        int left = timeout_ms < 0 ? -1 : (int)(deadline - mono_ms());
        if (timeout_ms >= 0 && left <= 0) return PL_ETIMEDOUT;
        struct pollfd p = {.fd = c->ev_fd, .events = POLLIN};
        poll(&p, 1, left);
    }
}

void pl_event_clear(pl_event *ev)
{
    if (!ev) return;
    free(ev->text);
    pl_msg_clear(&ev->msg);
    memset(ev, 0, sizeof *ev);
}

const char *pl_event_kind_name(pl_event_kind k)
{
    static const char *const names[] = {
        "none",     "state",   "message",  "ack",    "msg_failed",   "synced", "error",
        "overflow", "receipt", "presence", "typing", "conv_changed", "contact"};
    return (unsigned)k < sizeof names / sizeof names[0] ? names[k] : "unknown";
}

const char *pl_state_name(pl_state s)
{
    static const char *const names[] = {"stopped", "offline", "connecting",
                                        "syncing", "online",  "unauthorized"};
    return (unsigned)s < sizeof names / sizeof names[0] ? names[s] : "unknown";
}
