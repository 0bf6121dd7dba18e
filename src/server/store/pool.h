/* pool.h: store connections for the worker threads. A job borrows one for its duration and gives
 * it back; connections are opened on demand and kept, so there are at most as many as jobs ever
 * ran at once (libuv's pool size). Thread-safe. */
#ifndef PL_STORE_POOL_H
#define PL_STORE_POOL_H

#include "server/store/store.h"

typedef struct store_pool store_pool_t;

store_pool_t *store_pool_new(const char *data_dir);
void store_pool_free(store_pool_t *p);
/* NULL (logged) when no connection could be opened. */
store_t *store_pool_get(store_pool_t *p);
void store_pool_put(store_pool_t *p, store_t *st);

#endif
