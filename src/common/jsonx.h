/* jsonx.h: small jansson helpers shared by server and client. */
#ifndef PL_JSONX_H
#define PL_JSONX_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "common/buf.h"

/* True when v nests at most max levels of arrays and objects. */
bool jsonx_depth_ok(const json_t *v, int max);

/* Appends s (n bytes) to b as a JSON string, quotes included: '"', '\\' and control characters
 * escaped, valid UTF-8 kept as it is, any byte that is not part of valid UTF-8 replaced by
 * \ufffd. The result is always valid JSON, whatever s holds. */
void jsonx_append_str(buf_t *b, const char *s, size_t n);

#endif
