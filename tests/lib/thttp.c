/* thttp.c: a minimal HTTP/1.1 client for tests (bodies by Content-Length, or up to EOF). */
#include "tclient.h"
#include "tnet.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

void thttp_resp_free(thttp_resp *r)
{
    if (!r) return;
    free(r->head);
    free(r->body);
    json_decref(r->json);
    memset(r, 0, sizeof *r);
}

/* Finds header `name` in a head block; returns a pointer to its trimmed value and its length. */
static const char *find_header(const char *head, const char *name, size_t *vlen)
{
    size_t nl = strlen(name);
    const char *line = strstr(head, "\r\n");
    while (line) {
        line += 2;
        const char *end = strstr(line, "\r\n");
        if (!end) end = line + strlen(line);
        if ((size_t)(end - line) > nl && line[nl] == ':' && strncasecmp(line, name, nl) == 0) {
            const char *v = line + nl + 1;
            while (v < end && (*v == ' ' || *v == '\t')) v++;
            const char *ve = end;
            while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
            *vlen = (size_t)(ve - v);
            return v;
        }
        if (!*end) break;
        line = end;
    }
    return NULL;
}

const char *thttp_header(const thttp_resp *r, const char *name, char *out, size_t cap)
{
    size_t n;
    const char *v = r->head ? find_header(r->head, name, &n) : NULL;
    if (!v || cap == 0) return NULL;
    if (n >= cap) n = cap - 1;
    memcpy(out, v, n);
    out[n] = 0;
    return out;
}

/* Takes one response out of `in`. 1 done, 0 need more bytes, T_ERR malformed. */
static int parse_resp(buf_t *in, bool eof, thttp_resp *r)
{
    const char *d = (const char *)in->data;
    size_t hlen = 0;
    for (size_t i = 0; i + 3 < in->len; i++)
        if (memcmp(d + i, "\r\n\r\n", 4) == 0) {
            hlen = i + 4;
            break;
        }
    if (!hlen) return eof && in->len ? T_ERR : 0;
    if (in->len < 12 || memcmp(d, "HTTP/1.", 7) != 0) return T_ERR;
    char *head = strndup(d, hlen - 2);
    int status = atoi(head + 9);
    if (status < 100 || status > 999) {
        free(head);
        return T_ERR;
    }
    size_t vlen, blen;
    const char *cl = find_header(head, "Content-Length", &vlen);
    if (status < 200 || status == 204 || status == 304) {
        blen = 0;
    } else if (cl) {
        char num[32] = {0};
        memcpy(num, cl, vlen < 31 ? vlen : 31);
        char *end;
        unsigned long long v = strtoull(num, &end, 10);
        if (*end || !isdigit((unsigned char)num[0])) {
            free(head);
            return T_ERR;
        }
        blen = (size_t)v;
    } else {
        if (!eof) {
            free(head);
            return 0;
        }
        blen = in->len - hlen;
    }
    if (in->len - hlen < blen) {
        free(head);
        return eof ? T_ERR : 0;
    }
    memset(r, 0, sizeof *r);
    r->status = status;
    r->head = head;
    r->body = malloc(blen + 1);
    memcpy(r->body, d + hlen, blen);
    r->body[blen] = 0;
    r->body_len = blen;
    if (blen) r->json = json_loadb(r->body, blen, 0, NULL);
    buf_consume(in, hlen + blen);
    return 1;
}

char *thttp_format(int port, const char *method, const char *path, const char *token,
                   const char *body)
{
    buf_t b;
    buf_init(&b);
    buf_printf(&b, "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n", method, path, port);
    if (token) buf_printf(&b, "Authorization: Bearer %s\r\n", token);
    if (body)
        buf_printf(&b, "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                   strlen(body), body);
    else
        buf_append_str(&b, "\r\n");
    buf_append(&b, "", 1);
    return (char *)b.data;
}

int thttp_open(thttp_conn *c, int port)
{
    buf_init(&c->in);
    c->eof = false;
    c->fd = tnet_connect(port, T_TIMEOUT_MS);
    if (c->fd < 0) {
        t_note("http: cannot connect to port %d", port);
        return T_ERR;
    }
    return 0;
}

int thttp_write(thttp_conn *c, const void *data, size_t len)
{
    return tnet_write_all(c->fd, data, len, &c->in, &c->eof, T_TIMEOUT_MS);
}

int thttp_read(thttp_conn *c, thttp_resp *r, int timeout_ms)
{
    if (timeout_ms <= 0) timeout_ms = T_TIMEOUT_MS;
    long long dl = tnet_deadline(timeout_ms);
    for (;;) {
        int p = parse_resp(&c->in, c->eof, r);
        if (p == 1) return 0;
        if (p < 0) {
            t_note("http: malformed response: %.*s", (int)(c->in.len > 300 ? 300 : c->in.len),
                   (const char *)c->in.data);
            return T_ERR;
        }
        if (c->eof) {
            t_note("http: connection closed before a complete response");
            return T_CLOSED;
        }
        int n = tnet_read_some(c->fd, &c->in, tnet_left(dl));
        if (n == T_CLOSED)
            c->eof = true;
        else if (n == T_TIMEOUT) {
            t_note("http: no complete response within %d ms", timeout_ms);
            return T_TIMEOUT;
        } else if (n < 0)
            return T_ERR;
    }
}

int thttp_wait_eof(thttp_conn *c, int timeout_ms)
{
    if (c->eof) return c->in.len ? T_ERR : 1;
    long long dl = tnet_deadline(timeout_ms);
    for (;;) {
        int n = tnet_read_some(c->fd, &c->in, tnet_left(dl));
        if (n == T_CLOSED) {
            c->eof = true;
            return c->in.len ? T_ERR : 1;
        }
        if (n == T_TIMEOUT) return 0;
        if (n < 0) return T_ERR;
        if (n > 0) {
            t_note("http: unexpected bytes after the response: %.*s",
                   (int)(c->in.len > 200 ? 200 : c->in.len), (const char *)c->in.data);
            return T_ERR;
        }
    }
}

void thttp_close(thttp_conn *c)
{
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    buf_free(&c->in);
}

int thttp_raw(int port, const void *data, size_t len, thttp_resp *r, bool *closed)
{
    thttp_conn c;
    memset(r, 0, sizeof *r);
    if (thttp_open(&c, port) != 0) return T_ERR;
    /* A write error is fine here: the server may answer and close before reading it all. */
    thttp_write(&c, data, len);
    int rc = thttp_read(&c, r, T_TIMEOUT_MS);
    if (rc == 0 && closed) *closed = thttp_wait_eof(&c, 2000) == 1;
    thttp_close(&c);
    return rc;
}

int thttp_do(int port, const char *method, const char *path, const char *token, const char *body,
             thttp_resp *r)
{
    char *req = thttp_format(port, method, path, token, body);
    thttp_conn c;
    memset(r, 0, sizeof *r);
    int rc = thttp_open(&c, port);
    if (rc == 0) rc = thttp_write(&c, req, strlen(req));
    if (rc == 0) rc = thttp_read(&c, r, T_TIMEOUT_MS);
    if (rc != 0) t_note("http: %s %s failed (%d)", method, path, rc);
    if (c.fd >= 0) thttp_close(&c);
    free(req);
    return rc;
}

int thttp_req(int port, const char *method, const char *path, const char *token, const char *body,
              int *status, json_t **resp)
{
    thttp_resp r;
    if (resp) *resp = NULL;
    *status = 0;
    int rc = thttp_do(port, method, path, token, body, &r);
    if (rc != 0) return rc;
    *status = r.status;
    if (r.body_len && !r.json)
        t_note("http: %s %s: %d with a body that is not JSON: %.200s", method, path, r.status,
               r.body);
    if (resp) {
        *resp = r.json;
        r.json = NULL;
    }
    thttp_resp_free(&r);
    return 0;
}

int thttp_reqp(int port, const char *method, const char *path, const char *token, int *status,
               json_t **resp, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    json_error_t err;
    json_t *j = json_vpack_ex(&err, 0, fmt, ap);
    va_end(ap);
    if (!j) {
        t_note("json_pack(%s): %s", fmt, err.text);
        *status = 0;
        if (resp) *resp = NULL;
        return T_ERR;
    }
    char *body = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    int rc = thttp_req(port, method, path, token, body, status, resp);
    free(body);
    return rc;
}
