/* jsonx.h: small jansson helpers shared by server and client. */
#ifndef PL_JSONX_H
#define PL_JSONX_H

#include <jansson.h>
#include <stdbool.h>

/* True when v nests at most max levels of arrays and objects. */
bool jsonx_depth_ok(const json_t *v, int max);

#endif
