/* http.h: incremental parsing of HTTP/1.1 requests (over http-parser) with Parley's limits.
 *
 * Pure: bytes in, one request at a time out, no sockets. The parser pauses after each complete
 * request so the connection answers requests in order (pipelining is allowed, handled one by
 * one). Errors carry the status, code and sentence to answer with; after an error the
 * connection must be closed. Owned by one connection on the I/O loop. */
#ifndef PL_HTTP_H
#define PL_HTTP_H

#include <http_parser.h>
#include <stdbool.h>
#include <stddef.h>

#include "common/buf.h"

#define HTTP_MAX_HEADERS 64

enum http_in_state { HTTP_IN_MORE, HTTP_IN_DONE, HTTP_IN_ERROR };

typedef struct http_in {
    http_parser p;
    size_t max_head, max_body;
    buf_t url;
    buf_t head; /* header names (lower-cased) and values, each NUL-terminated */
    buf_t body;
    size_t head_bytes;
    int nhdr;
    size_t *hoff; /* offsets in head: name of header i at [2i], value at [2i+1]; heap, made at
                     the first header, freed by http_in_free (a WebSocket keeps none of this) */
    bool in_value;
    bool done;
    bool line_ok;    /* the request line ended with a valid HTTP/1.x version */
    size_t line_len; /* bytes of the request line seen so far */
    char line_end[12];
    /* set on error */
    int err_status;
    const char *err_code, *err_msg;
} http_in;

void http_in_init(http_in *h, size_t max_head, size_t max_body);
/* Frees what the parser holds; h may be freed again or dropped. */
void http_in_free(http_in *h);
/* Feeds bytes; *used gets how many were consumed (the rest belongs to the next request or, after
 * an upgrade, to the WebSocket). */
enum http_in_state http_in_feed(http_in *h, const char *data, size_t n, size_t *used);
/* Forgets the finished request and resumes parsing. */
void http_in_next(http_in *h);

/* Accessors for a finished request. */
const char *http_in_method(const http_in *h);
const char *http_in_url(const http_in *h); /* NUL-terminated */
/* Value of the header (name lower-case), or NULL. */
const char *http_in_header(const http_in *h, const char *lname);
bool http_in_keep_alive(const http_in *h);
bool http_in_upgrade(const http_in *h);

/* Does the comma-separated header value contain token (case-insensitive)? */
bool http_token_in(const char *value, const char *token);
const char *http_status_text(int status);

#endif
