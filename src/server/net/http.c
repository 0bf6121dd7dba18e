/* http.c: see http.h. */
#include "server/net/http.h"

#include <stdlib.h>
#include <string.h>

#include "common/util.h"

static http_in *self(http_parser *p)
{
    return p->data;
}

static int fail(http_in *h, int status, const char *code, const char *msg)
{
    if (!h->err_status) {
        h->err_status = status;
        h->err_code = code;
        h->err_msg = msg;
    }
    return -1;
}

static int head_add(http_in *h, size_t n)
{
    h->head_bytes += n;
    if (h->head_bytes > h->max_head)
        return fail(h, 431, "headers_too_large", "The request line and headers are too large.");
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t n)
{
    http_in *h = self(p);
    if (head_add(h, n)) return -1;
    buf_append(&h->url, at, n);
    return 0;
}

static int on_field(http_parser *p, const char *at, size_t n)
{
    http_in *h = self(p);
    if (head_add(h, n)) return -1;
    if (h->in_value || h->nhdr == 0) {
        if (h->nhdr > 0) buf_append(&h->head, "", 1); /* ends the previous value */
        if (h->nhdr == HTTP_MAX_HEADERS)
            return fail(h, 431, "headers_too_large", "The request has too many headers.");
        if (!h->hoff && !(h->hoff = malloc(2 * HTTP_MAX_HEADERS * sizeof *h->hoff))) abort();
        h->hoff[2 * h->nhdr] = h->head.len;
        h->hoff[2 * h->nhdr + 1] = (size_t)-1;
        h->nhdr++;
        h->in_value = false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = at[i];
        if (c >= 'A' && c <= 'Z') c = (char)(c + 32);
        buf_append(&h->head, &c, 1);
    }
    return 0;
}

static int on_value(http_parser *p, const char *at, size_t n)
{
    http_in *h = self(p);
    if (head_add(h, n)) return -1;
    if (!h->in_value) {
        buf_append(&h->head, "", 1); /* ends the name */
        h->hoff[2 * h->nhdr - 1] = h->head.len;
        h->in_value = true;
    }
    buf_append(&h->head, at, n);
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    http_in *h = self(p);
    if (h->nhdr > 0) {
        if (!h->in_value) { /* a name without a value */
            buf_append(&h->head, "", 1);
            h->hoff[2 * h->nhdr - 1] = h->head.len;
        }
        buf_append(&h->head, "", 1);
    }
    buf_append(&h->url, "", 1);
    if (p->flags & F_CHUNKED)
        return fail(h, 411, "length_required", "Send the body with a Content-Length header.");
    if ((p->flags & F_CONTENTLENGTH) && p->content_length > h->max_body)
        return fail(h, 413, "body_too_large", "The request body is larger than this server takes.");
    if (p->upgrade) return 1; /* no body: the bytes after the head belong to the new protocol */
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t n)
{
    http_in *h = self(p);
    if (h->body.len + n > h->max_body)
        return fail(h, 413, "body_too_large", "The request body is larger than this server takes.");
    buf_append(&h->body, at, n);
    return 0;
}

static int on_complete(http_parser *p)
{
    http_in *h = self(p);
    h->done = true;
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings settings = {
    .on_url = on_url,
    .on_header_field = on_field,
    .on_header_value = on_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_complete,
};

void http_in_init(http_in *h, size_t max_head, size_t max_body)
{
    memset(h, 0, sizeof *h);
    http_parser_init(&h->p, HTTP_REQUEST);
    h->p.data = h;
    h->max_head = max_head;
    h->max_body = max_body;
    buf_init(&h->url);
    buf_init(&h->head);
    buf_init(&h->body);
}

void http_in_free(http_in *h)
{
    free(h->hoff);
    h->hoff = NULL;
    buf_free(&h->url);
    buf_free(&h->head);
    buf_free(&h->body);
}

/* http-parser, as Debian builds it, is lenient about the version token ("HTTX/1.1" passes), so
 * the end of the request line is checked here: it must be " HTTP/1.0" or " HTTP/1.1". */
static bool check_line(http_in *h, const char *data, size_t n)
{
    for (size_t i = 0; i < n && !h->line_ok; i++) {
        char c = data[i];
        if (c == '\n') {
            size_t k = h->line_len < sizeof h->line_end ? h->line_len : sizeof h->line_end;
            char tail[sizeof h->line_end + 1];
            memcpy(tail, h->line_end + sizeof h->line_end - k, k);
            tail[k] = 0;
            if (k && tail[k - 1] == '\r') tail[--k] = 0;
            if (h->line_len == 0 || (h->line_len == 1 && k == 0)) continue; /* leading CRLF */
            if (k < 9 || (strcmp(tail + k - 9, " HTTP/1.1") && strcmp(tail + k - 9, " HTTP/1.0")))
                return false;
            h->line_ok = true;
            return true;
        }
        memmove(h->line_end, h->line_end + 1, sizeof h->line_end - 1);
        h->line_end[sizeof h->line_end - 1] = c;
        h->line_len++;
    }
    return true;
}

enum http_in_state http_in_feed(http_in *h, const char *data, size_t n, size_t *used)
{
    *used = 0;
    if (h->err_status) return HTTP_IN_ERROR;
    if (h->done) return HTTP_IN_DONE;
    if (!h->line_ok && !check_line(h, data, n)) {
        fail(h, 400, "bad_request", "The HTTP request is malformed.");
        return HTTP_IN_ERROR;
    }
    if (n == 0) return HTTP_IN_MORE; /* http_parser_execute() would take 0 bytes as EOF */
    size_t k = http_parser_execute(&h->p, &settings, data, n);
    *used = k;
    enum http_errno e = HTTP_PARSER_ERRNO(&h->p);
    if (h->done) return HTTP_IN_DONE;
    if (h->err_status) return HTTP_IN_ERROR;
    if (e == HPE_HEADER_OVERFLOW) {
        fail(h, 431, "headers_too_large", "The request line and headers are too large.");
        return HTTP_IN_ERROR;
    }
    if (e != HPE_OK && e != HPE_PAUSED) {
        fail(h, 400, "bad_request", "The HTTP request is malformed.");
        return HTTP_IN_ERROR;
    }
    if (h->p.upgrade) { /* headers of an upgrade request are complete */
        h->done = true;
        return HTTP_IN_DONE;
    }
    return HTTP_IN_MORE;
}

void http_in_next(http_in *h)
{
    buf_reset(&h->url);
    buf_reset(&h->head);
    buf_reset(&h->body);
    h->head_bytes = 0;
    h->nhdr = 0;
    h->in_value = false;
    h->done = false;
    h->line_ok = false;
    h->line_len = 0;
    http_parser_pause(&h->p, 0);
}

const char *http_in_method(const http_in *h)
{
    return http_method_str((enum http_method)h->p.method);
}

const char *http_in_url(const http_in *h)
{
    return h->url.len ? (const char *)h->url.data : "";
}

const char *http_in_header(const http_in *h, const char *lname)
{
    for (int i = 0; i < h->nhdr; i++)
        if (strcmp((const char *)h->head.data + h->hoff[2 * i], lname) == 0)
            return (const char *)h->head.data + h->hoff[2 * i + 1];
    return NULL;
}

bool http_in_keep_alive(const http_in *h)
{
    return http_should_keep_alive(&h->p) != 0;
}

bool http_in_upgrade(const http_in *h)
{
    return h->p.upgrade != 0;
}

bool http_token_in(const char *value, const char *token)
{
    size_t tl = strlen(token);
    const char *s = value;
    while (s && *s) {
        while (*s == ' ' || *s == '\t' || *s == ',') s++;
        const char *e = s;
        while (*e && *e != ',') e++;
        const char *t = e;
        while (t > s && (t[-1] == ' ' || t[-1] == '\t')) t--;
        if ((size_t)(t - s) == tl && ascii_ieq(s, token, tl)) return true;
        s = e;
    }
    return false;
}

const char *http_status_text(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 409:
        return "Conflict";
    case 411:
        return "Length Required";
    case 413:
        return "Payload Too Large";
    case 415:
        return "Unsupported Media Type";
    case 426:
        return "Upgrade Required";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    default:
        return "Unknown";
    }
}
