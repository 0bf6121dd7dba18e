/* hist.c: see hist.h. */
#include "hist.h"

#include <string.h>

void hist_reset(hist_t *h)
{
    memset(h, 0, sizeof *h);
}

static unsigned slot_of(uint64_t v)
{
    if (v < 2 * HIST_SUB) return (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    unsigned e = msb - 6; /* v >> e is in [64, 128) */
    unsigned s = e * HIST_SUB + (unsigned)(v >> e);
    return s < HIST_SLOTS ? s : HIST_SLOTS - 1;
}

static uint64_t slot_low(unsigned s)
{
    if (s < 2 * HIST_SUB) return s;
    unsigned e = s / HIST_SUB - 1;
    return (uint64_t)(s - e * HIST_SUB) << e;
}

static uint64_t slot_mid(unsigned s)
{
    if (s < 2 * HIST_SUB) return s;
    unsigned e = s / HIST_SUB - 1;
    return slot_low(s) + (((uint64_t)1 << e) >> 1);
}

void hist_add(hist_t *h, int64_t v)
{
    uint64_t u = v < 0 ? 0 : (uint64_t)v;
    h->slot[slot_of(u)]++;
    h->count++;
    h->sum += u;
    if (u > h->max) h->max = u;
}

void hist_merge(hist_t *into, const hist_t *from)
{
    into->count += from->count;
    into->sum += from->sum;
    if (from->max > into->max) into->max = from->max;
    for (unsigned i = 0; i < HIST_SLOTS; i++) into->slot[i] += from->slot[i];
}

uint64_t hist_quantile(const hist_t *h, double q)
{
    if (h->count == 0) return 0;
    uint64_t rank = (uint64_t)(q * (double)h->count);
    if (rank >= h->count) rank = h->count - 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_SLOTS; i++) {
        seen += h->slot[i];
        if (seen > rank) {
            uint64_t m = slot_mid(i);
            return m > h->max ? h->max : m;
        }
    }
    return h->max;
}

double hist_mean(const hist_t *h)
{
    return h->count ? (double)h->sum / (double)h->count : 0.0;
}
