#include "common/jsonx.h"

bool jsonx_depth_ok(const json_t *v, int max)
{
    if (json_is_object(v)) {
        if (max <= 0) return false;
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)v, k, x) if (!jsonx_depth_ok(x, max - 1)) return false;
    } else if (json_is_array(v)) {
        if (max <= 0) return false;
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) if (!jsonx_depth_ok(x, max - 1)) return false;
    }
    return true;
}
