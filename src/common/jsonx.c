#include "common/jsonx.h"
#include "common/util.h"

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

/* The length of the UTF-8 sequence starting s[0] (n bytes available) if it is valid, else 0. */
static size_t utf8_seq(const uint8_t *s, size_t n)
{
    size_t len = (s[0] & 0xE0) == 0xC0   ? 2
                 : (s[0] & 0xF0) == 0xE0 ? 3
                 : (s[0] & 0xF8) == 0xF0 ? 4
                                         : 0;
    if (len == 0 || len > n || !utf8_valid(s, len)) return 0;
    return len;
}

void jsonx_append_str(buf_t *b, const char *str, size_t n)
{
    static const char hex[] = "0123456789ABCDEF"; /* as jansson writes them */
    const uint8_t *s = (const uint8_t *)str;
    buf_reserve(b, n + 2);
    buf_append(b, "\"", 1);
    size_t run = 0; /* start of the bytes that go out as they are */
    for (size_t i = 0; i < n;) {
        uint8_t c = s[i];
        if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
            i++;
            continue;
        }
        size_t seq = c >= 0x80 ? utf8_seq(s + i, n - i) : 0;
        if (seq) {
            i += seq;
            continue;
        }
        buf_append(b, s + run, i - run);
        char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
        switch (c) {
        case '"':
            buf_append(b, "\\\"", 2);
            break;
        case '\\':
            buf_append(b, "\\\\", 2);
            break;
        case '\b':
            buf_append(b, "\\b", 2);
            break;
        case '\f':
            buf_append(b, "\\f", 2);
            break;
        case '\n':
            buf_append(b, "\\n", 2);
            break;
        case '\r':
            buf_append(b, "\\r", 2);
            break;
        case '\t':
            buf_append(b, "\\t", 2);
            break;
        default:
            if (c < 0x20)
                buf_append(b, e, sizeof e);
            else
                buf_append(b, "\\ufffd", 6); /* not UTF-8: the replacement character */
        }
        run = ++i;
    }
    buf_append(b, s + run, n - run);
    buf_append(b, "\"", 1);
}
