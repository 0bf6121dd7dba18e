/* hist.h: an HDR-style latency histogram with log buckets.
 *
 * Values (nanoseconds) below 128 have a bucket each; above, every power of two is split into 64
 * equal sub-buckets, so a reported percentile is within 1/64 (1.6 %) of the true value. Fixed
 * size, no allocation: histograms can be copied through a pipe and added together. */
#ifndef PB_HIST_H
#define PB_HIST_H

#include <stdint.h>

#define HIST_SUB   64
#define HIST_SLOTS (HIST_SUB * 44) /* up to 2^43 ns, about 2.4 hours */

typedef struct hist {
    uint64_t count;
    uint64_t max;
    uint64_t sum;
    uint64_t slot[HIST_SLOTS];
} hist_t;

void hist_reset(hist_t *h);
void hist_add(hist_t *h, int64_t v);
void hist_merge(hist_t *into, const hist_t *from);
/* The value at quantile q (0..1): the middle of its bucket; 0 when empty. */
uint64_t hist_quantile(const hist_t *h, double q);
double hist_mean(const hist_t *h);

#endif
