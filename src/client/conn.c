/* conn.c: server URLs. A server is named by its base URL, "http://host:port[/prefix]"; REST
 * calls go to base + "/v1/...", the WebSocket to ws://host:port/prefix/v1/ws. Only plain
 * http is spoken by the engine today (libcurl would do https for REST, but the WebSocket has no
 * TLS yet), so https URLs are refused rather than half-working. IPv6 literals go in brackets. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/internal.h"

int pl__url_parse(const char *url, pl__url *out)
{
    memset(out, 0, sizeof *out);
    const char *p = url;
    if (strncmp(p, "http://", 7) == 0)
        p += 7;
    else if (strncmp(p, "ws://", 5) == 0)
        p += 5;
    else if (strstr(p, "://"))
        return PL_EINVAL; /* https, wss: not yet */
    const char *end = p + strcspn(p, "/");
    const char *host = p, *hend, *port = NULL;
    if (*p == '[') {
        host = p + 1;
        hend = memchr(p, ']', (size_t)(end - p));
        if (!hend) return PL_EINVAL;
        if (hend[1] == ':') port = hend + 2;
    } else {
        hend = memchr(p, ':', (size_t)(end - p));
        if (hend)
            port = hend + 1;
        else
            hend = end;
    }
    size_t hl = (size_t)(hend - host);
    if (hl == 0 || hl >= sizeof out->host) return PL_EINVAL;
    memcpy(out->host, host, hl);
    if (port) {
        size_t pl = (size_t)(end - port);
        if (pl == 0 || pl >= sizeof out->port) return PL_EINVAL;
        for (size_t i = 0; i < pl; i++)
            if (port[i] < '0' || port[i] > '9') return PL_EINVAL;
        memcpy(out->port, port, pl);
    } else {
        strcpy(out->port, "80");
    }
    size_t rest = strlen(end);
    while (rest > 0 && end[rest - 1] == '/') rest--;
    if (rest >= sizeof out->prefix) return PL_EINVAL;
    memcpy(out->prefix, end, rest);
    return 0;
}
