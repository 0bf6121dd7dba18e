/* tnet.h: socket plumbing shared by the test client parts (internal to tests/lib). */
#ifndef T_NET_H
#define T_NET_H

#include <stdbool.h>
#include <stddef.h>

#include "common/buf.h"

/* A non-blocking TCP socket connected to 127.0.0.1:port, or -1 (with a note). */
int tnet_connect(int port, int timeout_ms);
/* Reads everything available without waiting. Returns bytes read (maybe 0), or T_CLOSED /
 * T_ERR when the connection ended (after appending what came before). */
int tnet_read_avail(int fd, buf_t *in);
/* Waits up to timeout_ms for data and appends what is there to in.
 * Returns bytes read (> 0), T_CLOSED on EOF or reset, T_TIMEOUT, or T_ERR. */
int tnet_read_some(int fd, buf_t *in, int timeout_ms);
/* Writes all of p, reading whatever arrives meanwhile into in (so a server that answers and
 * closes early is still heard). *eof is set when the server closed. Returns 0, T_ERR (the
 * connection broke while writing), or T_TIMEOUT. */
int tnet_write_all(int fd, const void *p, size_t n, buf_t *in, bool *eof, int timeout_ms);
/* Milliseconds left until deadline (>= 0). */
int tnet_left(long long deadline);
/* The monotonic time ms milliseconds from now, for tnet_left. */
long long tnet_deadline(int ms);

#endif
