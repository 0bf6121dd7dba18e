/* test_http.c: unit tests for server/net/http.h, the incremental HTTP/1.1 request parser. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "server/net/http.h"

#define MAX_HEAD 1024
#define MAX_BODY 4096

/* Each test gets a parser (and a scratch allocation) that the teardown frees, so a failing
 * assertion leaks nothing. */
typedef struct fx {
    http_in h;
    char *tmp;
} fx_t;

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof *f);
    if (!f) return -1;
    http_in_init(&f->h, MAX_HEAD, MAX_BODY);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    http_in_free(&f->h);
    free(f->tmp);
    free(f);
    return 0;
}

static enum http_in_state feed_str(http_in *h, const char *s, size_t *used)
{
    return http_in_feed(h, s, strlen(s), used);
}

static const char *body_str(const http_in *h)
{
    static char b[MAX_BODY + 1];
    memcpy(b, h->body.data ? (const char *)h->body.data : "", h->body.len);
    b[h->body.len] = 0;
    return b;
}

static void expect_error(http_in *h, const char *req, size_t n, int status, const char *code)
{
    size_t used;
    enum http_in_state st = http_in_feed(h, req, n, &used);
    if (st != HTTP_IN_ERROR) print_error("want an error %d %s, got state %d\n", status, code, st);
    assert_int_equal(st, HTTP_IN_ERROR);
    assert_int_equal(h->err_status, status);
    assert_string_equal(h->err_code, code);
    assert_non_null(h->err_msg);
    assert_true(strlen(h->err_msg) > 0);
    assert_int_equal(h->err_msg[strlen(h->err_msg) - 1], '.'); /* a sentence */
    /* The error sticks: more input is not taken. */
    assert_int_equal(http_in_feed(h, "GET / HTTP/1.1\r\n\r\n", 18, &used), HTTP_IN_ERROR);
    assert_int_equal(used, 0);
}

/* ---- tests ---- */

static const char GET[] = "GET /v1/health?x=1 HTTP/1.1\r\n"
                          "Host: example.com\r\n"
                          "User-Agent: test/1.0\r\n"
                          "Accept: */*\r\n"
                          "\r\n";

static void check_get(const http_in *h)
{
    assert_string_equal(http_in_method(h), "GET");
    assert_string_equal(http_in_url(h), "/v1/health?x=1");
    assert_string_equal(http_in_header(h, "host"), "example.com");
    assert_string_equal(http_in_header(h, "user-agent"), "test/1.0");
    assert_string_equal(http_in_header(h, "accept"), "*/*");
    assert_null(http_in_header(h, "content-length"));
    assert_true(http_in_keep_alive(h));
    assert_false(http_in_upgrade(h));
    assert_int_equal(h->body.len, 0);
    assert_int_equal(h->nhdr, 3);
}

static void test_simple_get(void **state)
{
    fx_t *f = *state;
    size_t used;
    assert_int_equal(feed_str(&f->h, GET, &used), HTTP_IN_DONE);
    assert_int_equal(used, strlen(GET));
    check_get(&f->h);
    /* Feeding again before http_in_next takes nothing. */
    assert_int_equal(feed_str(&f->h, GET, &used), HTTP_IN_DONE);
    assert_int_equal(used, 0);
    check_get(&f->h);
}

static void test_split_every_position(void **state)
{
    fx_t *f = *state;
    size_t n = strlen(GET);
    for (size_t i = 1; i < n; i++) {
        http_in_free(&f->h);
        http_in_init(&f->h, MAX_HEAD, MAX_BODY);
        size_t used;
        assert_int_equal(http_in_feed(&f->h, GET, i, &used), HTTP_IN_MORE);
        assert_int_equal(used, i);
        assert_int_equal(http_in_feed(&f->h, GET + i, n - i, &used), HTTP_IN_DONE);
        assert_int_equal(used, n - i);
        check_get(&f->h);
    }
}

static void test_split_two_positions(void **state)
{
    fx_t *f = *state;
    static const char req[] = "PUT /a HTTP/1.1\r\nX-Ab: cd\r\nContent-Length: 3\r\n\r\nxyz";
    size_t n = strlen(req);
    for (size_t i = 1; i < n; i++) {
        for (size_t j = i + 1; j < n; j++) {
            http_in_free(&f->h);
            http_in_init(&f->h, MAX_HEAD, MAX_BODY);
            size_t used;
            assert_int_equal(http_in_feed(&f->h, req, i, &used), HTTP_IN_MORE);
            assert_int_equal(http_in_feed(&f->h, req + i, j - i, &used), HTTP_IN_MORE);
            assert_int_equal(used, j - i);
            assert_int_equal(http_in_feed(&f->h, req + j, n - j, &used), HTTP_IN_DONE);
            assert_int_equal(used, n - j);
            assert_string_equal(http_in_method(&f->h), "PUT");
            assert_string_equal(http_in_url(&f->h), "/a");
            assert_string_equal(http_in_header(&f->h, "x-ab"), "cd");
            assert_string_equal(http_in_header(&f->h, "content-length"), "3");
            assert_string_equal(body_str(&f->h), "xyz");
        }
    }
}

static void test_byte_at_a_time(void **state)
{
    fx_t *f = *state;
    size_t n = strlen(GET), used;
    for (size_t i = 0; i + 1 < n; i++) {
        assert_int_equal(http_in_feed(&f->h, GET + i, 1, &used), HTTP_IN_MORE);
        assert_int_equal(used, 1);
    }
    assert_int_equal(http_in_feed(&f->h, GET + n - 1, 1, &used), HTTP_IN_DONE);
    check_get(&f->h);
}

static void test_empty_feed(void **state)
{
    fx_t *f = *state;
    size_t used = 99;
    /* Nothing read is not the end of the stream: before and in the middle of a request. */
    assert_int_equal(http_in_feed(&f->h, GET, 0, &used), HTTP_IN_MORE);
    assert_int_equal(used, 0);
    assert_int_equal(http_in_feed(&f->h, GET, 10, &used), HTTP_IN_MORE);
    assert_int_equal(http_in_feed(&f->h, GET + 10, 0, &used), HTTP_IN_MORE);
    assert_int_equal(used, 0);
    assert_int_equal(http_in_feed(&f->h, GET + 10, strlen(GET) - 10, &used), HTTP_IN_DONE);
    check_get(&f->h);
}

static void test_header_names(void **state)
{
    fx_t *f = *state;
    static const char req[] = "GET / HTTP/1.1\r\n"
                              "Content-TYPE: Application/JSON; Charset=UTF-8\r\n"
                              "X-EMPTY:\r\n"
                              "x-Spaces:    a  b   \r\n"
                              "X-Dup: first\r\n"
                              "x-dup: second\r\n"
                              "AUTHORIZATION: Bearer AbC.dEf\r\n"
                              "\r\n";
    size_t used;
    assert_int_equal(feed_str(&f->h, req, &used), HTTP_IN_DONE);
    assert_int_equal(used, strlen(req));
    /* Names are lower-cased, values kept as sent. */
    assert_string_equal(http_in_header(&f->h, "content-type"), "Application/JSON; Charset=UTF-8");
    assert_string_equal(http_in_header(&f->h, "authorization"), "Bearer AbC.dEf");
    assert_string_equal(http_in_header(&f->h, "x-empty"), "");
    const char *sp = http_in_header(&f->h, "x-spaces");
    assert_non_null(sp);
    assert_memory_equal(sp, "a  b", 4);
    assert_string_equal(http_in_header(&f->h, "x-dup"), "first"); /* the first of duplicates */
    /* Lookups take the lower-case name; anything else is not found. */
    assert_null(http_in_header(&f->h, "Content-Type"));
    assert_null(http_in_header(&f->h, "content"));
    assert_null(http_in_header(&f->h, "content-type "));
    assert_null(http_in_header(&f->h, ""));
    assert_null(http_in_header(&f->h, "host"));
    assert_int_equal(f->h.nhdr, 6);
}

static void test_header_names_split(void **state)
{
    fx_t *f = *state;
    /* A name and a value each split across three feeds. */
    const char *parts[] = {"GET / HTTP/1.1\r\nX-Lo", "NG-Na", "ME: va", "l-U", "E\r\nZ: 1\r\n\r\n"};
    size_t used;
    for (size_t i = 0; i < 4; i++) assert_int_equal(feed_str(&f->h, parts[i], &used), HTTP_IN_MORE);
    assert_int_equal(feed_str(&f->h, parts[4], &used), HTTP_IN_DONE);
    assert_string_equal(http_in_header(&f->h, "x-long-name"), "val-UE");
    assert_string_equal(http_in_header(&f->h, "z"), "1");
}

static void test_body(void **state)
{
    fx_t *f = *state;
    static const char body[] = "{\"name\":\"ann\",\"pw\":\"x\\u0000\"}";
    char req[256];
    snprintf(req, sizeof req,
             "POST /v1/accounts HTTP/1.1\r\n"
             "Content-Type: application/json\r\n"
             "Content-Length: %zu\r\n"
             "\r\n%s",
             strlen(body), body);
    size_t n = strlen(req), used, blen = strlen(body);
    size_t head = n - blen;
    /* Headers first, then the body in two pieces. */
    assert_int_equal(http_in_feed(&f->h, req, head, &used), HTTP_IN_MORE);
    assert_int_equal(used, head);
    assert_int_equal(http_in_feed(&f->h, req + head, 10, &used), HTTP_IN_MORE);
    assert_int_equal(http_in_feed(&f->h, req + head + 10, blen - 10, &used), HTTP_IN_DONE);
    assert_int_equal(used, blen - 10);
    assert_string_equal(http_in_method(&f->h), "POST");
    assert_string_equal(http_in_url(&f->h), "/v1/accounts");
    assert_string_equal(body_str(&f->h), body);
}

static void test_body_binary(void **state)
{
    fx_t *f = *state;
    static const char req[] = "POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\na\0b\r\n";
    size_t used;
    assert_int_equal(http_in_feed(&f->h, req, sizeof req - 1, &used), HTTP_IN_DONE);
    assert_int_equal(used, sizeof req - 1);
    assert_int_equal(f->h.body.len, 5);
    assert_memory_equal(f->h.body.data, "a\0b\r\n", 5);
}

static void test_body_exactly_max(void **state)
{
    fx_t *f = *state;
    char *req = f->tmp = malloc(MAX_BODY + 200);
    assert_non_null(req);
    int k = snprintf(req, 200, "POST /x HTTP/1.1\r\nContent-Length: %d\r\n\r\n", MAX_BODY);
    memset(req + k, 'b', MAX_BODY);
    size_t used;
    assert_int_equal(http_in_feed(&f->h, req, (size_t)k + MAX_BODY, &used), HTTP_IN_DONE);
    assert_int_equal(f->h.body.len, MAX_BODY);
}

static void test_pipelined(void **state)
{
    fx_t *f = *state;
    static const char reqs[] = "POST /one HTTP/1.1\r\nContent-Length: 3\r\nX-A: 1\r\n\r\nabc"
                               "GET /two HTTP/1.1\r\nX-B: 2\r\n\r\n"
                               "DELETE /three HTTP/1.1\r\nContent-Length: 0\r\n\r\n"
                               "GET /fou";
    size_t n = strlen(reqs), used, off = 0;
    assert_int_equal(http_in_feed(&f->h, reqs, n, &used), HTTP_IN_DONE);
    assert_int_equal(used, strlen("POST /one HTTP/1.1\r\nContent-Length: 3\r\nX-A: 1\r\n\r\nabc"));
    assert_string_equal(http_in_method(&f->h), "POST");
    assert_string_equal(http_in_url(&f->h), "/one");
    assert_string_equal(body_str(&f->h), "abc");
    assert_string_equal(http_in_header(&f->h, "x-a"), "1");
    off += used;

    http_in_next(&f->h);
    assert_int_equal(http_in_feed(&f->h, reqs + off, n - off, &used), HTTP_IN_DONE);
    assert_string_equal(http_in_method(&f->h), "GET");
    assert_string_equal(http_in_url(&f->h), "/two");
    assert_int_equal(f->h.body.len, 0);
    assert_null(http_in_header(&f->h, "x-a")); /* the first request's headers are gone */
    assert_null(http_in_header(&f->h, "content-length"));
    assert_string_equal(http_in_header(&f->h, "x-b"), "2");
    off += used;

    http_in_next(&f->h);
    assert_int_equal(http_in_feed(&f->h, reqs + off, n - off, &used), HTTP_IN_DONE);
    assert_string_equal(http_in_method(&f->h), "DELETE");
    assert_string_equal(http_in_url(&f->h), "/three");
    assert_int_equal(f->h.body.len, 0);
    off += used;

    /* The fourth is incomplete: taken, and waiting for more. */
    http_in_next(&f->h);
    assert_int_equal(http_in_feed(&f->h, reqs + off, n - off, &used), HTTP_IN_MORE);
    assert_int_equal(used, n - off);
    assert_int_equal(feed_str(&f->h, "r HTTP/1.1\r\n\r\n", &used), HTTP_IN_DONE);
    assert_string_equal(http_in_url(&f->h), "/four");
}

static void test_keep_alive(void **state)
{
    fx_t *f = *state;
    size_t used;
    assert_int_equal(feed_str(&f->h, "GET / HTTP/1.1\r\nConnection: close\r\n\r\n", &used),
                     HTTP_IN_DONE);
    assert_false(http_in_keep_alive(&f->h));
    http_in_free(&f->h);
    http_in_init(&f->h, MAX_HEAD, MAX_BODY);
    assert_int_equal(feed_str(&f->h, "GET / HTTP/1.0\r\n\r\n", &used), HTTP_IN_DONE);
    assert_false(http_in_keep_alive(&f->h));
    http_in_free(&f->h);
    http_in_init(&f->h, MAX_HEAD, MAX_BODY);
    assert_int_equal(feed_str(&f->h, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", &used),
                     HTTP_IN_DONE);
    assert_true(http_in_keep_alive(&f->h));
}

static void test_head_too_large(void **state)
{
    fx_t *f = *state;
    /* One long header value. */
    char *req = f->tmp = malloc(MAX_HEAD * 2 + 100);
    assert_non_null(req);
    strcpy(req, "GET / HTTP/1.1\r\nX-Big: ");
    size_t k = strlen(req);
    memset(req + k, 'v', MAX_HEAD * 2);
    strcpy(req + k + MAX_HEAD * 2, "\r\n\r\n");
    expect_error(&f->h, req, strlen(req), 431, "headers_too_large");
}

static void test_head_too_large_split(void **state)
{
    fx_t *f = *state;
    /* Many small headers arriving one feed at a time; the head just over the limit. */
    size_t used, total = 0;
    assert_int_equal(feed_str(&f->h, "GET / HTTP/1.1\r\n", &used), HTTP_IN_MORE);
    for (int i = 0;; i++) {
        char line[64];
        snprintf(line, sizeof line, "X-H%02d: %040d\r\n", i, i);
        enum http_in_state st = feed_str(&f->h, line, &used);
        total += strlen(line);
        if (st == HTTP_IN_ERROR) {
            assert_int_equal(f->h.err_status, 431);
            assert_string_equal(f->h.err_code, "headers_too_large");
            break;
        }
        assert_int_equal(st, HTTP_IN_MORE);
        assert_true(total < MAX_HEAD + 64);
    }
}

static void test_url_too_large(void **state)
{
    fx_t *f = *state;
    char *req = f->tmp = malloc(MAX_HEAD + 100);
    assert_non_null(req);
    strcpy(req, "GET /");
    memset(req + 5, 'u', MAX_HEAD);
    strcpy(req + 5 + MAX_HEAD, " HTTP/1.1\r\n\r\n");
    expect_error(&f->h, req, strlen(req), 431, "headers_too_large");
}

static void test_too_many_headers(void **state)
{
    fx_t *f = *state;
    http_in_free(&f->h);
    http_in_init(&f->h, 1 << 20, MAX_BODY);
    char *req = f->tmp = malloc(16 * (HTTP_MAX_HEADERS + 2) + 100);
    assert_non_null(req);
    strcpy(req, "GET / HTTP/1.1\r\n");
    for (int i = 0; i <= HTTP_MAX_HEADERS; i++) sprintf(req + strlen(req), "h%d: v\r\n", i);
    strcat(req, "\r\n");
    expect_error(&f->h, req, strlen(req), 431, "headers_too_large");

    /* Exactly HTTP_MAX_HEADERS is fine. */
    http_in_free(&f->h);
    http_in_init(&f->h, 1 << 20, MAX_BODY);
    strcpy(req, "GET / HTTP/1.1\r\n");
    for (int i = 0; i < HTTP_MAX_HEADERS; i++) sprintf(req + strlen(req), "h%d: v%d\r\n", i, i);
    strcat(req, "\r\n");
    size_t used;
    assert_int_equal(feed_str(&f->h, req, &used), HTTP_IN_DONE);
    assert_int_equal(f->h.nhdr, HTTP_MAX_HEADERS);
    assert_string_equal(http_in_header(&f->h, "h63"), "v63");
}

static void test_parser_header_overflow(void **state)
{
    fx_t *f = *state;
    /* With a large max_head, http-parser's own limit (80 KiB) also answers 431. */
    http_in_free(&f->h);
    http_in_init(&f->h, 1 << 20, MAX_BODY);
    size_t big = 100 * 1024;
    char *req = f->tmp = malloc(big + 100);
    assert_non_null(req);
    strcpy(req, "GET / HTTP/1.1\r\nX-Big: ");
    size_t k = strlen(req);
    memset(req + k, 'v', big);
    strcpy(req + k + big, "\r\n\r\n");
    expect_error(&f->h, req, strlen(req), 431, "headers_too_large");
}

static void test_body_too_large_declared(void **state)
{
    fx_t *f = *state;
    char req[200];
    snprintf(req, sizeof req, "POST /x HTTP/1.1\r\nContent-Length: %d\r\n\r\n", MAX_BODY + 1);
    /* Refused as soon as the headers are complete, before any body byte. */
    expect_error(&f->h, req, strlen(req), 413, "body_too_large");
}

static void test_body_too_large_actual(void **state)
{
    fx_t *f = *state;
    char *req = f->tmp = malloc(2 * MAX_BODY + 200);
    assert_non_null(req);
    int k = snprintf(req, 200, "POST /x HTTP/1.1\r\nContent-Length: %d\r\n\r\n", 2 * MAX_BODY);
    memset(req + k, 'b', 2 * MAX_BODY);
    expect_error(&f->h, req, (size_t)k + 2 * MAX_BODY, 413, "body_too_large");
    assert_true(f->h.body.len <= MAX_BODY);
}

static void test_body_too_large_huge(void **state)
{
    fx_t *f = *state;
    static const char req[] = "POST /x HTTP/1.1\r\nContent-Length: 1000000000000\r\n\r\n";
    expect_error(&f->h, req, strlen(req), 413, "body_too_large");
}

static void test_chunked(void **state)
{
    fx_t *f = *state;
    static const char req[] = "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                              "5\r\nhello\r\n0\r\n\r\n";
    expect_error(&f->h, req, strlen(req), 411, "length_required");
}

static void test_garbage(void **state)
{
    fx_t *f = *state;
    const char *bad[] = {
        "\x01\x02\x03garbage\r\n\r\n",
        "HELLO\r\n\r\n",
        "GET / HTTP/1.1\r\nNo colon here\r\n\r\n",
        "GET / HTTP/1.1\r\nX: a\r\n\x7f\r\n\r\n",
        "GET /\x01 HTTP/1.1\r\n\r\n",
        "GET  HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
        "GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "GET / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        "GET / HTTP/1.1\r\nX\x01Y: a\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        http_in_free(&f->h);
        http_in_init(&f->h, MAX_HEAD, MAX_BODY);
        expect_error(&f->h, bad[i], strlen(bad[i]), 400, "bad_request");
    }
    /* A bad request after a good one, on the same connection. */
    http_in_free(&f->h);
    http_in_init(&f->h, MAX_HEAD, MAX_BODY);
    size_t used;
    assert_int_equal(feed_str(&f->h, GET, &used), HTTP_IN_DONE);
    http_in_next(&f->h);
    expect_error(&f->h, "\x16\x03\x01\x02\x00", 5, 400, "bad_request"); /* a TLS hello */
}

static const char UPGRADE[] = "GET /v1/ws HTTP/1.1\r\n"
                              "Host: localhost:8080\r\n"
                              "Upgrade: websocket\r\n"
                              "Connection: keep-alive, Upgrade\r\n"
                              "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                              "Sec-WebSocket-Version: 13\r\n"
                              "\r\n";

static void check_upgrade(const http_in *h)
{
    assert_true(http_in_upgrade(h));
    assert_string_equal(http_in_method(h), "GET");
    assert_string_equal(http_in_url(h), "/v1/ws");
    assert_true(http_token_in(http_in_header(h, "upgrade"), "websocket"));
    assert_true(http_token_in(http_in_header(h, "connection"), "upgrade"));
    assert_string_equal(http_in_header(h, "sec-websocket-key"), "dGhlIHNhbXBsZSBub25jZQ==");
    assert_string_equal(http_in_header(h, "sec-websocket-version"), "13");
}

static void test_upgrade(void **state)
{
    fx_t *f = *state;
    /* The request, then the first WebSocket frame in the same read. */
    static const char frame[] = "\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58";
    size_t head = strlen(UPGRADE);
    char *buf = f->tmp = malloc(head + sizeof frame);
    assert_non_null(buf);
    memcpy(buf, UPGRADE, head);
    memcpy(buf + head, frame, sizeof frame - 1);
    size_t n = head + sizeof frame - 1, used;
    assert_int_equal(http_in_feed(&f->h, buf, n, &used), HTTP_IN_DONE);
    assert_int_equal(used, head); /* the frame is left for the WebSocket */
    check_upgrade(&f->h);
}

static void test_upgrade_split(void **state)
{
    fx_t *f = *state;
    size_t n = strlen(UPGRADE);
    char *buf = f->tmp = malloc(n + 4);
    assert_non_null(buf);
    memcpy(buf, UPGRADE, n);
    memcpy(buf + n, "\x81\x80\x00\x00", 4);
    for (size_t i = 1; i < n; i++) {
        http_in_free(&f->h);
        http_in_init(&f->h, MAX_HEAD, MAX_BODY);
        size_t used;
        assert_int_equal(http_in_feed(&f->h, buf, i, &used), HTTP_IN_MORE);
        assert_int_equal(used, i);
        assert_int_equal(http_in_feed(&f->h, buf + i, n + 4 - i, &used), HTTP_IN_DONE);
        assert_int_equal(used, n - i);
        check_upgrade(&f->h);
    }
}

static void test_upgrade_with_content_length(void **state)
{
    fx_t *f = *state;
    /* An upgrade request declaring a body: the bytes after the head still go to the WebSocket,
     * however the stream is split (they are not read as a body). */
    static const char req[] = "GET /v1/ws HTTP/1.1\r\n"
                              "Upgrade: websocket\r\n"
                              "Connection: Upgrade\r\n"
                              "Content-Length: 13\r\n"
                              "\r\n";
    static const char frame[] = "\x81\x85\x00\x00\x00\x00hello";
    size_t head = strlen(req), n = head + sizeof frame - 1;
    char *buf = f->tmp = malloc(n);
    assert_non_null(buf);
    memcpy(buf, req, head);
    memcpy(buf + head, frame, sizeof frame - 1);
    for (size_t split = 1; split <= n; split++) {
        http_in_free(&f->h);
        http_in_init(&f->h, MAX_HEAD, MAX_BODY);
        size_t used, total = 0;
        enum http_in_state st = http_in_feed(&f->h, buf, split, &used);
        total += used;
        if (st == HTTP_IN_MORE && split < n) {
            st = http_in_feed(&f->h, buf + split, n - split, &used);
            total += used;
        }
        assert_int_equal(st, HTTP_IN_DONE);
        assert_true(http_in_upgrade(&f->h));
        assert_int_equal(total, head);
        assert_int_equal(f->h.body.len, 0);
    }
}

static void test_version(void **state)
{
    fx_t *f = *state;
    const char *bad[] = {"GET / HTTX/1.1\r\n\r\n", "GET / HTTP/2.0\r\n\r\n",
                         "GET / HTTP/1.1x\r\n\r\n", "GET /\r\n\r\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        http_in_free(&f->h);
        http_in_init(&f->h, MAX_HEAD, MAX_BODY);
        expect_error(&f->h, bad[i], strlen(bad[i]), 400, "bad_request");
    }
    /* HTTP/1.0 is fine, and so is a CRLF before the request line; both split byte by byte. */
    const char *good[] = {"GET / HTTP/1.0\r\n\r\n", "\r\nGET / HTTP/1.1\r\n\r\n"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        http_in_free(&f->h);
        http_in_init(&f->h, MAX_HEAD, MAX_BODY);
        size_t used, n = strlen(good[i]);
        for (size_t k = 0; k + 1 < n; k++)
            assert_int_equal(http_in_feed(&f->h, good[i] + k, 1, &used), HTTP_IN_MORE);
        assert_int_equal(http_in_feed(&f->h, good[i] + n - 1, 1, &used), HTTP_IN_DONE);
        assert_string_equal(http_in_url(&f->h), "/");
    }
}

static void test_not_upgrade(void **state)
{
    fx_t *f = *state;
    /* Upgrade without "Connection: upgrade" is only informational. */
    static const char req[] = "GET /v1/ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\n";
    size_t used;
    assert_int_equal(feed_str(&f->h, req, &used), HTTP_IN_DONE);
    assert_false(http_in_upgrade(&f->h));
}

static void test_token_in(void **state)
{
    (void)state;
    assert_true(http_token_in("Upgrade", "upgrade"));
    assert_true(http_token_in("upgrade", "Upgrade"));
    assert_true(http_token_in("keep-alive, Upgrade", "upgrade"));
    assert_true(http_token_in("keep-alive,Upgrade", "upgrade"));
    assert_true(http_token_in(" \tkeep-alive ,\tUpgrade\t ", "upgrade"));
    assert_true(http_token_in("Upgrade, keep-alive", "keep-alive"));
    assert_true(http_token_in("a,,b", "b"));
    assert_true(http_token_in(",websocket,", "WebSocket"));
    assert_false(http_token_in("Upgrades", "upgrade"));
    assert_false(http_token_in("x-upgrade", "upgrade"));
    assert_false(http_token_in("upgrade-x", "upgrade"));
    assert_false(http_token_in("up grade", "upgrade"));
    assert_false(http_token_in("keep-alive", "upgrade"));
    assert_false(http_token_in("", "upgrade"));
    assert_false(http_token_in(" , ,", "upgrade"));
    assert_false(http_token_in(NULL, "upgrade"));
    assert_false(http_token_in("upgrad", "upgrade"));
    assert_false(http_token_in("pgrade", "upgrade"));
}

static void test_status_text(void **state)
{
    (void)state;
    assert_string_equal(http_status_text(200), "OK");
    assert_string_equal(http_status_text(400), "Bad Request");
    assert_string_equal(http_status_text(411), "Length Required");
    assert_string_equal(http_status_text(413), "Payload Too Large");
    assert_string_equal(http_status_text(431), "Request Header Fields Too Large");
    assert_string_equal(http_status_text(999), "Unknown");
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_simple_get),
        T(test_split_every_position),
        T(test_split_two_positions),
        T(test_byte_at_a_time),
        T(test_empty_feed),
        T(test_header_names),
        T(test_header_names_split),
        T(test_body),
        T(test_body_binary),
        T(test_body_exactly_max),
        T(test_pipelined),
        T(test_keep_alive),
        T(test_head_too_large),
        T(test_head_too_large_split),
        T(test_url_too_large),
        T(test_too_many_headers),
        T(test_parser_header_overflow),
        T(test_body_too_large_declared),
        T(test_body_too_large_actual),
        T(test_body_too_large_huge),
        T(test_chunked),
        T(test_garbage),
        T(test_upgrade),
        T(test_upgrade_split),
        T(test_upgrade_with_content_length),
        T(test_not_upgrade),
        T(test_version),
        T(test_token_in),
        T(test_status_text),
    };
    return cmocka_run_group_tests_name("http", tests, NULL, NULL);
}
