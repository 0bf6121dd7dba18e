/* members.c: helpers over store.h that every back end shares. */
#include <stdlib.h>

#include "server/store/store.h"

st_member *store_member_all(store_t *st, const char *conv, int *n)
{
    int count = 0;
    *n = 0;
    if (store_member_count(st, conv, &count) != ST_OK) return NULL;
    st_member *ms = calloc((size_t)count + 1, sizeof *ms);
    if (!ms) abort();
    int got = store_member_list(st, conv, ms, count);
    if (got < 0) {
        free(ms);
        return NULL;
    }
    *n = got;
    return ms;
}
