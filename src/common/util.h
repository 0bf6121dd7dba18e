/* util.h: small pure helpers shared by server and client: time, ids, base64url, UTF-8. */
#ifndef PL_UTIL_H
#define PL_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Milliseconds since the Unix epoch (wall clock). */
int64_t now_ms(void);
/* Milliseconds from a monotonic clock, for timeouts. */
int64_t mono_ms(void);

/* Ids are a type prefix ("u_", "d_", ...) and 16 base64url characters (96 random bits). */
#define ID_MAX 40
void id_new(char out[ID_MAX], const char *prefix);
/* True when s is prefix + 1..32 characters of [A-Za-z0-9_-]. */
bool id_valid(const char *s, const char *prefix);
/* The direct conversation of two users: "p_" + base64url of SHA-256(lower id, ":", higher id)
 * truncated to 18 bytes. The same for (a, b) and (b, a). */
void conv_direct_id(char out[ID_MAX], const char *user_a, const char *user_b);

/* base64url without padding. Returns the length written (out needs 4*ceil(n/3)+1 bytes). */
size_t b64url_encode(char *out, const uint8_t *in, size_t n);
/* Returns bytes written or -1 on a bad character; out needs 3*n/4+3 bytes. */
long b64url_decode(uint8_t *out, const char *in, size_t n);

/* Strict UTF-8 (no overlongs, no surrogates, nothing above U+10FFFF). */
bool utf8_valid(const uint8_t *s, size_t n);
/* Number of code points in valid UTF-8. */
size_t utf8_len(const uint8_t *s, size_t n);

/* Case-insensitive ASCII comparison of n bytes. */
bool ascii_ieq(const char *a, const char *b, size_t n);

#endif
