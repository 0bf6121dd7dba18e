/* auth.c: see auth.h. */
#include "server/api/auth.h"

#include <errno.h>
#include <fcntl.h>
#include <jwt.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/hmap.h"
#include "common/log.h"

static char dummy_hash[crypto_pwhash_STRBYTES]; /* set once in auth_init */

static int read_key(const char *path, uint8_t key[32])
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) return -errno;
    ssize_t n = read(fd, key, 32);
    close(fd);
    return n == 32 ? 0 : -EINVAL;
}

int auth_init(server_t *s)
{
    char path[1100];
    if (s->cfg.jwt_key_file[0])
        snprintf(path, sizeof path, "%s", s->cfg.jwt_key_file);
    else
        snprintf(path, sizeof path, "%s/jwt.key", s->cfg.data);
    int rc = read_key(path, s->jwt_key);
    if (rc == -ENOENT && !s->cfg.jwt_key_file[0]) {
        randombytes_buf(s->jwt_key, sizeof s->jwt_key);
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
        if (fd < 0 || write(fd, s->jwt_key, 32) != 32 || fsync(fd) != 0) {
            log_error("cannot write the signing key %s: %s", path, strerror(errno));
            if (fd >= 0) close(fd);
            return -1;
        }
        close(fd);
        log_info("made a new token signing key in %s", path);
    } else if (rc != 0) {
        log_error("cannot read the signing key %s: %s (it must hold 32 bytes)", path,
                  rc == -EINVAL ? "wrong size" : strerror(-rc));
        return -1;
    }
    uint8_t h[32];
    crypto_hash_sha256(h, s->jwt_key, sizeof s->jwt_key);
    b64url_encode(s->jwt_kid, h, 9); /* 12 characters */
    uint8_t pw[16];
    char pws[40];
    randombytes_buf(pw, sizeof pw);
    b64url_encode(pws, pw, sizeof pw);
    if (pw_hash(s, pws, dummy_hash) != 0) {
        log_error("password hashing does not work on this machine (out of memory?)");
        return -1;
    }
    return 0;
}

char *token_issue(server_t *s, const char *user, const char *dev, int64_t *exp_ms)
{
    jwt_t *j = NULL;
    if (jwt_new(&j) != 0) return NULL;
    int64_t now = now_ms() / 1000;
    int64_t exp = now + s->cfg.token_ttl;
    char jti[ID_MAX];
    id_new(jti, "t_");
    char *out = NULL;
    if (jwt_set_alg(j, JWT_ALG_HS256, s->jwt_key, sizeof s->jwt_key) == 0 &&
        jwt_add_header(j, "kid", s->jwt_kid) == 0 && jwt_add_grant(j, "sub", user) == 0 &&
        jwt_add_grant(j, "dev", dev) == 0 && jwt_add_grant_int(j, "iat", (long)now) == 0 &&
        jwt_add_grant_int(j, "exp", (long)exp) == 0 && jwt_add_grant(j, "jti", jti) == 0)
        out = jwt_encode_str(j);
    jwt_free(j);
    *exp_ms = exp * 1000;
    return out;
}

int token_check(server_t *s, store_t *st, const char *token, char user[ID_MAX], char dev[ID_MAX],
                const char **code, const char **msg)
{
    jwt_t *j = NULL;
    *code = "invalid_token";
    *msg = "The token is not valid here; log in again.";
    if (!token || strlen(token) > 4096 || jwt_decode(&j, token, s->jwt_key, sizeof s->jwt_key) != 0)
        return -1;
    int rc = -1;
    const char *kid = jwt_get_header(j, "kid");
    const char *sub = jwt_get_grant(j, "sub");
    const char *d = jwt_get_grant(j, "dev");
    errno = 0;
    long exp = jwt_get_grant_int(j, "exp");
    bool has_exp = errno == 0;
    if (jwt_get_alg(j) != JWT_ALG_HS256 || !kid || strcmp(kid, s->jwt_kid) != 0 ||
        !id_valid(sub, "u_") || !id_valid(d, "d_") || !has_exp)
        goto out;
    if ((int64_t)exp * 1000 <= now_ms()) {
        *code = "token_expired";
        *msg = "The token has expired; log in again.";
        goto out;
    }
    st_device dv;
    int r = store_device_get(st, d, &dv);
    if (r == ST_NOTFOUND || (r == ST_OK && strcmp(dv.user_id, sub) != 0)) {
        *code = "device_revoked";
        *msg = "This device was logged out or removed; log in again.";
        goto out;
    }
    if (r != ST_OK) {
        *code = "internal";
        *msg = "The server cannot check tokens right now; try again.";
        goto out;
    }
    snprintf(user, ID_MAX, "%s", sub);
    snprintf(dev, ID_MAX, "%s", d);
    *code = *msg = NULL;
    rc = 0;
out:
    jwt_free(j);
    return rc;
}

int pw_hash(server_t *s, const char *password, char out[128]);
static void pw_cost(server_t *s, unsigned long long *ops, size_t *mem)
{
    if (strcmp(s->cfg.pwhash, "moderate") == 0) {
        *ops = crypto_pwhash_OPSLIMIT_MODERATE;
        *mem = crypto_pwhash_MEMLIMIT_MODERATE;
    } else if (strcmp(s->cfg.pwhash, "min") == 0) {
        *ops = crypto_pwhash_OPSLIMIT_MIN;
        *mem = crypto_pwhash_MEMLIMIT_MIN;
    } else {
        *ops = crypto_pwhash_OPSLIMIT_INTERACTIVE;
        *mem = crypto_pwhash_MEMLIMIT_INTERACTIVE;
    }
}

int pw_hash(server_t *s, const char *password, char out[128])
{
    unsigned long long ops;
    size_t mem;
    pw_cost(s, &ops, &mem);
    return crypto_pwhash_str(out, password, strlen(password), ops, mem);
}

bool pw_verify(const char *hash, const char *password)
{
    return crypto_pwhash_str_verify(hash, password, strlen(password)) == 0;
}

void pw_dummy_verify(const char *password)
{
    if (crypto_pwhash_str_verify(dummy_hash, password, strlen(password)) == 0) return;
}

/* ---- throttling ---- */

#define WINDOW_MS   (5 * 60 * 1000)
#define MAX_LOGIN   5
#define MAX_ADDRESS 20

typedef struct counter {
    int64_t start;
    int n;
} counter;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static hmap_t counters; /* "l:login" and "a:address" -> counter */

static counter *get(const char *kind, const char *key, bool create)
{
    char k[400];
    snprintf(k, sizeof k, "%s:%s", kind, key);
    counter *c = hmap_get(&counters, k);
    int64_t now = mono_ms();
    if (c && now - c->start > WINDOW_MS) {
        c->start = now;
        c->n = 0;
    }
    if (!c && create) {
        if (counters.count > 100000) return NULL; /* bounded; an attacker cannot grow it forever */
        c = calloc(1, sizeof *c);
        if (!c) return NULL;
        c->start = now;
        hmap_put(&counters, k, c);
    }
    return c;
}

static int wait_s(counter *c)
{
    int64_t left = WINDOW_MS - (mono_ms() - c->start);
    return left > 0 ? (int)(left / 1000) + 1 : 1;
}

int login_throttled(const char *login, const char *ip)
{
    pthread_mutex_lock(&mu);
    int wait = 0;
    counter *c = get("l", login, false);
    if (c && c->n >= MAX_LOGIN) wait = wait_s(c);
    c = get("a", ip, false);
    if (!wait && c && c->n >= MAX_ADDRESS) wait = wait_s(c);
    pthread_mutex_unlock(&mu);
    return wait;
}

void login_failed(const char *login, const char *ip)
{
    pthread_mutex_lock(&mu);
    counter *c = get("l", login, true);
    if (c) c->n++;
    c = get("a", ip, true);
    if (c) c->n++;
    pthread_mutex_unlock(&mu);
}

void login_succeeded(const char *login)
{
    pthread_mutex_lock(&mu);
    char k[400];
    snprintf(k, sizeof k, "l:%s", login);
    free(hmap_del(&counters, k));
    pthread_mutex_unlock(&mu);
}

static void free_counter(void *ctx, const char *key, void *v)
{
    (void)ctx;
    (void)key;
    free(v);
}

void auth_free(void)
{
    pthread_mutex_lock(&mu);
    hmap_each(&counters, free_counter, NULL);
    hmap_free(&counters);
    pthread_mutex_unlock(&mu);
}
