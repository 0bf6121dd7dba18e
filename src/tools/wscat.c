/* parley-wscat: a line-based WebSocket client for trying parleyd by hand.
 *
 *   parley-wscat [ws://HOST:PORT/PATH]     (default ws://127.0.0.1:8080/v1/ws)
 *
 * Each line typed on standard input is sent as one text message; each message received is
 * printed on its own line. A close from the server is printed with its code and reason, and ends
 * the program (exit 0 for 1000/1001, 1 otherwise). Uses the same framing code as parleyd. */
#include <netdb.h>
#include <poll.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/util.h"
#include "common/ws.h"

static void on_text(void *ud, const char *msg, size_t len)
{
    (void)ud;
    fwrite(msg, 1, len, stdout);
    fputc('\n', stdout);
    fflush(stdout);
}

static int write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t k = write(fd, c, n);
        if (k <= 0) return -1;
        c += k;
        n -= (size_t)k;
    }
    return 0;
}

static int dial(const char *host, const char *port)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res, *ai;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "parley-wscat: %s: %s\n", host, gai_strerror(rc));
        return -1;
    }
    int fd = -1;
    for (ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) break;
        if (fd >= 0) close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) fprintf(stderr, "parley-wscat: cannot connect to %s:%s\n", host, port);
    return fd;
}

int main(int argc, char **argv)
{
    const char *url = argc > 1 ? argv[1] : "ws://127.0.0.1:8080/v1/ws";
    char host[256], port[16] = "80", path[512] = "/";
    if (strncmp(url, "ws://", 5) != 0 || argc > 2) {
        fprintf(stderr, "usage: parley-wscat [ws://HOST:PORT/PATH]\n");
        return 2;
    }
    const char *h = url + 5, *slash = strchr(h, '/'), *colon = strchr(h, ':');
    size_t hl = slash ? (size_t)(slash - h) : strlen(h);
    if (colon && (!slash || colon < slash)) {
        hl = (size_t)(colon - h);
        snprintf(port, sizeof port, "%.*s", (int)((slash ? slash : h + strlen(h)) - colon - 1),
                 colon + 1);
    }
    snprintf(host, sizeof host, "%.*s", (int)hl, h);
    if (slash) snprintf(path, sizeof path, "%s", slash);
    if (sodium_init() < 0) return 1;

    int fd = dial(host, port);
    if (fd < 0) return 1;
    uint8_t nonce[16];
    char key[32];
    randombytes_buf(nonce, sizeof nonce);
    sodium_bin2base64(key, sizeof key, nonce, sizeof nonce, sodium_base64_VARIANT_ORIGINAL);
    char req[1024];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: %s:%s\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n",
                     path, host, port, key);
    if (write_all(fd, req, (size_t)n) != 0) return 1;

    /* The handshake answer ends at the first blank line; what follows is already WebSocket. */
    buf_t in;
    buf_init(&in);
    char *end = NULL;
    while (!end) {
        char chunk[4096];
        ssize_t k = read(fd, chunk, sizeof chunk);
        if (k <= 0) {
            fprintf(stderr, "parley-wscat: the server closed during the handshake\n");
            return 1;
        }
        buf_append(&in, chunk, (size_t)k);
        buf_append(&in, "", 1);
        in.len--;
        end = strstr((char *)in.data, "\r\n\r\n");
    }
    char accept[29];
    ws_accept_key(accept, key, strlen(key));
    if (strncmp((char *)in.data, "HTTP/1.1 101", 12) != 0 || !strstr((char *)in.data, accept)) {
        fprintf(stderr, "parley-wscat: handshake refused:\n%s\n", (char *)in.data);
        return 1;
    }
    buf_consume(&in, (size_t)(end + 4 - (char *)in.data));

    ws_handler hd = {.on_text = on_text};
    ws_t *ws = ws_new(false, 64 << 20, &hd, NULL);
    int rc = 0;
    bool stdin_open = true;
    buf_t lines;
    buf_init(&lines);
    for (;;) {
        if (in.len) {
            long k = ws_feed(ws, in.data, in.len);
            buf_consume(&in, k > 0 ? (size_t)k : in.len);
        }
        buf_t *out = ws_out(ws);
        if (out->len) {
            if (write_all(fd, out->data, out->len) != 0) break;
            buf_reset(out);
        }
        if (ws_closing(ws) && ws_peer_close_code(ws)) {
            uint16_t code = ws_peer_close_code(ws);
            fprintf(stderr, "parley-wscat: closed by the server with %u\n", code);
            rc = code == 1000 || code == 1001 ? 0 : 1;
            break;
        }
        struct pollfd p[2] = {{.fd = fd, .events = POLLIN}, {.fd = 0, .events = POLLIN}};
        if (poll(p, stdin_open ? 2 : 1, -1) < 0) break;
        if (p[0].revents) {
            char chunk[65536];
            ssize_t k = read(fd, chunk, sizeof chunk);
            if (k <= 0) {
                fprintf(stderr, "parley-wscat: connection closed\n");
                break;
            }
            buf_append(&in, chunk, (size_t)k);
        }
        if (stdin_open && p[1].revents) {
            /* read(2), not stdio: poll must see every byte that is not yet sent */
            char chunk[65536];
            ssize_t k = read(0, chunk, sizeof chunk);
            if (k <= 0) {
                stdin_open = false;
                ws_close(ws, 1000, "bye");
                continue;
            }
            buf_append(&lines, chunk, (size_t)k);
            size_t start = 0;
            for (size_t i = 0; i < lines.len; i++) {
                if (lines.data[i] != '\n') continue;
                size_t len = i - start;
                if (len && lines.data[start + len - 1] == '\r') len--;
                if (len) ws_send_text(ws, (const char *)lines.data + start, len);
                start = i + 1;
            }
            buf_consume(&lines, start);
        }
    }
    ws_free(ws);
    buf_free(&in);
    buf_free(&lines);
    close(fd);
    return rc;
}
