/* bus_local.c: the bus of a single node. The pipeline thread appends finished batches to a
 * mutex-protected list and wakes the loop with uv_async_send; the loop takes the whole list at
 * once and hands each item to the outbound path in commit order, which is what keeps every
 * user's deliveries in pos order. Cluster mode replaces this with Redis pub/sub (bus_redis.c). */
#include <pthread.h>
#include <stdlib.h>

#include "server/pipeline/pipeline.h"

struct bus {
    pthread_mutex_t mu;
    item *head, *tail;
};

static void on_wake(uv_async_t *a)
{
    bus_drain(a->data);
}

int bus_init(server_t *s)
{
    struct bus *b = calloc(1, sizeof *b);
    if (!b) return -1;
    pthread_mutex_init(&b->mu, NULL);
    s->bus = b;
    s->wake.data = s;
    return uv_async_init(s->loop, &s->wake, on_wake);
}

void bus_free(server_t *s)
{
    if (!s->bus) return;
    bus_drain(s);
    pthread_mutex_destroy(&s->bus->mu);
    free(s->bus);
    s->bus = NULL;
}

void bus_post(server_t *s, item *batch)
{
    struct bus *b = s->bus;
    item *last = batch;
    while (last->next) last = last->next;
    pthread_mutex_lock(&b->mu);
    if (b->tail)
        b->tail->next = batch;
    else
        b->head = batch;
    b->tail = last;
    pthread_mutex_unlock(&b->mu);
    uv_async_send(&s->wake);
}

void bus_drain(server_t *s)
{
    struct bus *b = s->bus;
    pthread_mutex_lock(&b->mu);
    item *it = b->head;
    b->head = b->tail = NULL;
    pthread_mutex_unlock(&b->mu);
    while (it) {
        item *next = it->next;
        outbound_result(s, it);
        it = next;
    }
}
