/* tclient.c: socket plumbing, diagnostics, names, JSON access and JWT helpers of the test client.
 */
#include "tclient.h"
#include "tnet.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

bool t_passed;

void t_note(const char *fmt, ...)
{
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "# %s\n", line);
    fflush(stderr);
}

void t_name(char *out, size_t cap, const char *prefix)
{
    static unsigned counter;
    snprintf(out, cap, "%.16s_%u_%u", prefix, ++counter, (unsigned)getpid() % 100000u);
}

void t_id(char *out, size_t cap, const char *prefix)
{
    static unsigned long counter;
    snprintf(out, cap, "%s%lu", prefix, ++counter);
}

void t_sleep_ms(int ms)
{
    if (ms <= 0) return;
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

void t_after_test(void)
{
    if (!t_passed) tsrv_dump_all();
}

/* ---------------------------------------------------------------- sockets */

long long tnet_deadline(int ms)
{
    return (long long)mono_ms() + ms;
}

int tnet_left(long long deadline)
{
    long long left = deadline - (long long)mono_ms();
    return left > 0 ? (int)left : 0;
}

int tnet_connect(int port, int timeout_ms)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        t_note("socket: %s", strerror(errno));
        return -1;
    }
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        if (errno != EINPROGRESS) {
            close(fd);
            return -1;
        }
        struct pollfd p = {fd, POLLOUT, 0};
        int r = poll(&p, 1, timeout_ms);
        int err = 0;
        socklen_t el = sizeof err;
        if (r <= 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0 || err != 0) {
            close(fd);
            return -1;
        }
    }
    return fd;
}

int tnet_read_avail(int fd, buf_t *in)
{
    int total = 0;
    for (;;) {
        buf_reserve(in, 65536);
        ssize_t r = recv(fd, in->data + in->len, in->cap - in->len, 0);
        if (r > 0) {
            in->len += (size_t)r;
            total += (int)r;
            continue;
        }
        if (r == 0) return total > 0 ? total : T_CLOSED;
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return total;
        if (errno == ECONNRESET || errno == EPIPE) return total > 0 ? total : T_CLOSED;
        return T_ERR;
    }
}

int tnet_read_some(int fd, buf_t *in, int timeout_ms)
{
    long long dl = tnet_deadline(timeout_ms);
    for (;;) {
        struct pollfd p = {fd, POLLIN, 0};
        int r = poll(&p, 1, tnet_left(dl));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return T_ERR;
        if (r == 0) return T_TIMEOUT;
        int n = tnet_read_avail(fd, in);
        if (n != 0) return n;
        if (tnet_left(dl) == 0) return T_TIMEOUT;
    }
}

int tnet_write_all(int fd, const void *p, size_t n, buf_t *in, bool *eof, int timeout_ms)
{
    const uint8_t *s = p;
    size_t off = 0;
    long long dl = tnet_deadline(timeout_ms);
    while (off < n) {
        ssize_t w = send(fd, s + off, n - off, MSG_NOSIGNAL);
        if (w > 0) {
            off += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            /* Broken: keep whatever the server said before it closed. */
            if (in) tnet_read_avail(fd, in);
            if (eof) *eof = true;
            return T_ERR;
        }
        struct pollfd pf = {fd, POLLOUT | (in ? POLLIN : 0), 0};
        int r = poll(&pf, 1, tnet_left(dl));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return r == 0 ? T_TIMEOUT : T_ERR;
        if (in && (pf.revents & (POLLIN | POLLHUP | POLLERR))) {
            int rr = tnet_read_avail(fd, in);
            if (rr == T_CLOSED || rr == T_ERR) {
                if (eof) *eof = true;
                return T_ERR;
            }
        }
    }
    return 0;
}

/* ---------------------------------------------------------------- JSON access */

json_t *tj_get(json_t *j, const char *path)
{
    char part[128];
    const char *p = path;
    while (j && *p) {
        size_t n = strcspn(p, ".");
        if (n >= sizeof part) return NULL;
        memcpy(part, p, n);
        part[n] = 0;
        p += n;
        if (*p == '.') p++;
        if (json_is_array(j)) {
            char *end;
            long i = strtol(part, &end, 10);
            if (*end || i < 0) return NULL;
            j = json_array_get(j, (size_t)i);
        } else {
            j = json_object_get(j, part);
        }
    }
    return j;
}

const char *tj_str(json_t *j, const char *path)
{
    const char *s = json_string_value(tj_get(j, path));
    return s ? s : "";
}

int64_t tj_int(json_t *j, const char *path)
{
    json_t *v = tj_get(j, path);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : INT64_MIN;
}

int tj_bool(json_t *j, const char *path)
{
    json_t *v = tj_get(j, path);
    return json_is_boolean(v) ? json_is_true(v) : -1;
}

bool tj_keys(json_t *j, const char *keys)
{
    if (!json_is_object(j)) {
        t_note("expected an object with keys %s, got %s", keys, tj_dump(j));
        return false;
    }
    size_t want = 0;
    bool ok = true;
    for (const char *p = keys; *p;) {
        size_t n = strcspn(p, ",");
        char k[64];
        snprintf(k, sizeof k, "%.*s", (int)n, p);
        want++;
        if (!json_object_get(j, k)) {
            t_note("key \"%s\" missing in %s", k, tj_dump(j));
            ok = false;
        }
        p += n;
        if (*p == ',') p++;
    }
    if (ok && json_object_size(j) != want) {
        t_note("expected exactly the keys %s, got %s", keys, tj_dump(j));
        ok = false;
    }
    return ok;
}

const char *tj_dump(json_t *j)
{
    static char out[4096];
    if (!j) return "(null)";
    char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER);
    snprintf(out, sizeof out, "%s", s ? s : "(unprintable)");
    if (s && strlen(s) >= sizeof out) memcpy(out + sizeof out - 5, "...", 4);
    free(s);
    return out;
}

const char *t_err_code(json_t *resp)
{
    return tj_str(resp, "error.code");
}

/* ---------------------------------------------------------------- JWT */

json_t *tjwt_part(const char *token, int part)
{
    const char *p = token;
    for (int i = 0; i < part; i++) {
        p = strchr(p, '.');
        if (!p) return NULL;
        p++;
    }
    size_t n = strcspn(p, ".");
    uint8_t *raw = malloc(n + 4);
    long len = b64url_decode(raw, p, n);
    json_t *j = NULL;
    if (len >= 0) j = json_loadb((const char *)raw, (size_t)len, 0, NULL);
    free(raw);
    return j;
}

static char *b64_json(json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    size_t n = strlen(s);
    char *out = malloc(4 * (n / 3 + 1) + 1);
    b64url_encode(out, (const uint8_t *)s, n);
    free(s);
    return out;
}

char *tjwt_sign(json_t *header, json_t *claims, const uint8_t *key, size_t keylen)
{
    char *h = b64_json(header), *c = b64_json(claims);
    buf_t b;
    buf_init(&b);
    buf_printf(&b, "%s.%s", h, c);
    free(h);
    free(c);
    uint8_t mac[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, key, keylen);
    crypto_auth_hmacsha256_update(&st, b.data, b.len);
    crypto_auth_hmacsha256_final(&st, mac);
    char sig[64];
    b64url_encode(sig, mac, sizeof mac);
    buf_printf(&b, ".%s", sig);
    buf_append(&b, "", 1);
    return (char *)b.data;
}
