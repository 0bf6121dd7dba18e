#include "server/store/pool.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

#define POOL_MAX 64

struct store_pool {
    pthread_mutex_t mu;
    char dir[1024];
    store_t *idle[POOL_MAX];
    int nidle;
};

store_pool_t *store_pool_new(const char *data_dir)
{
    store_pool_t *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    pthread_mutex_init(&p->mu, NULL);
    snprintf(p->dir, sizeof p->dir, "%s", data_dir);
    return p;
}

void store_pool_free(store_pool_t *p)
{
    if (!p) return;
    for (int i = 0; i < p->nidle; i++) store_close(p->idle[i]);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

store_t *store_pool_get(store_pool_t *p)
{
    store_t *st = NULL;
    pthread_mutex_lock(&p->mu);
    if (p->nidle > 0) st = p->idle[--p->nidle];
    pthread_mutex_unlock(&p->mu);
    if (st) return st;
    char err[256];
    if (store_open(&st, p->dir, err, sizeof err) != ST_OK) {
        log_error("store: %s", err);
        return NULL;
    }
    return st;
}

void store_pool_put(store_pool_t *p, store_t *st)
{
    if (!st) return;
    pthread_mutex_lock(&p->mu);
    if (p->nidle < POOL_MAX) {
        p->idle[p->nidle++] = st;
        st = NULL;
    }
    pthread_mutex_unlock(&p->mu);
    if (st) store_close(st);
}
