#include "common/hmap.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint64_t hash(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

void hmap_init(hmap_t *m)
{
    m->slots = NULL;
    m->nslots = m->count = 0;
}

void hmap_free(hmap_t *m)
{
    for (size_t i = 0; i < m->nslots; i++) {
        hmap_entry *e = m->slots[i];
        while (e) {
            hmap_entry *n = e->next;
            free(e);
            e = n;
        }
    }
    free(m->slots);
    hmap_init(m);
}

static hmap_entry **find(const hmap_t *m, const char *key)
{
    if (!m->nslots) return NULL;
    hmap_entry **p = &m->slots[hash(key) & (m->nslots - 1)];
    while (*p && strcmp((*p)->key, key) != 0) p = &(*p)->next;
    return p;
}

void *hmap_get(const hmap_t *m, const char *key)
{
    hmap_entry **p = find(m, key);
    return p && *p ? (*p)->value : NULL;
}

static void grow(hmap_t *m)
{
    size_t n = m->nslots ? m->nslots * 2 : 64;
    hmap_entry **slots = calloc(n, sizeof *slots);
    if (!slots) abort();
    for (size_t i = 0; i < m->nslots; i++) {
        hmap_entry *e = m->slots[i];
        while (e) {
            hmap_entry *next = e->next;
            size_t k = hash(e->key) & (n - 1);
            e->next = slots[k];
            slots[k] = e;
            e = next;
        }
    }
    free(m->slots);
    m->slots = slots;
    m->nslots = n;
}

void hmap_put(hmap_t *m, const char *key, void *value)
{
    hmap_entry **p = find(m, key);
    if (p && *p) {
        (*p)->value = value;
        return;
    }
    if (m->count >= m->nslots) grow(m);
    size_t len = strlen(key);
    hmap_entry *e = malloc(sizeof *e + len + 1);
    if (!e) abort();
    memcpy(e->key, key, len + 1);
    e->value = value;
    size_t k = hash(key) & (m->nslots - 1);
    e->next = m->slots[k];
    m->slots[k] = e;
    m->count++;
}

void *hmap_del(hmap_t *m, const char *key)
{
    hmap_entry **p = find(m, key);
    if (!p || !*p) return NULL;
    hmap_entry *e = *p;
    void *v = e->value;
    *p = e->next;
    free(e);
    m->count--;
    return v;
}

void hmap_each(const hmap_t *m, void (*fn)(void *ctx, const char *key, void *value), void *ctx)
{
    for (size_t i = 0; i < m->nslots; i++)
        for (hmap_entry *e = m->slots[i]; e; e = e->next) fn(ctx, e->key, e->value);
}
