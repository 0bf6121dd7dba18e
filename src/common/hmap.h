/* hmap.h: a string-keyed hash map (open chaining, doubles when full). Keys are copied; values are
 * the caller's pointers. Not thread-safe: one owner thread. */
#ifndef PL_HMAP_H
#define PL_HMAP_H

#include <stddef.h>

typedef struct hmap_entry {
    struct hmap_entry *next;
    void *value;
    char key[];
} hmap_entry;

typedef struct hmap {
    hmap_entry **slots;
    size_t nslots;
    size_t count;
} hmap_t;

void hmap_init(hmap_t *m);
/* Frees the map's own memory (not the values). */
void hmap_free(hmap_t *m);
void *hmap_get(const hmap_t *m, const char *key);
/* Sets key to value (replacing any old value). */
void hmap_put(hmap_t *m, const char *key, void *value);
/* Removes key; returns its value or NULL. */
void *hmap_del(hmap_t *m, const char *key);
/* Calls fn for every entry; fn must not change the map. */
void hmap_each(const hmap_t *m, void (*fn)(void *ctx, const char *key, void *value), void *ctx);

#endif
