/* config.c: see config.h. One table drives the file parser, the flags and the usage text. */
#include "server/config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum kind { K_INT, K_STR };

struct key {
    const char *name;
    enum kind kind;
    size_t off;
    size_t size; /* for strings: the array size */
    int64_t min, max;
    const char *help;
};

#define INT(n, lo, hi, h)                                                                          \
    {                                                                                              \
#n, K_INT, offsetof(config_t, n), 0, lo, hi, h                                             \
    }
#define STR(n, h)                                                                                  \
    {                                                                                              \
#n, K_STR, offsetof(config_t, n), sizeof(((config_t *)0)->n), 0, 0, h                      \
    }

static const struct key keys[] = {
    STR(bind, "address to listen on (default 127.0.0.1)"),
    INT(port, 0, 65535, "TCP port for REST and WebSocket (default 8080)"),
    STR(data, "data folder: database and signing key (default ./var)"),
    STR(log_level, "debug, info, warn, error or off (default info)"),
    STR(jwt_key_file,
        "file with the token signing key (default DATA/jwt.key, made on first start)"),
    STR(pwhash, "password hashing cost: interactive, moderate or min (default interactive)"),
    INT(token_ttl, 60, 31536000, "token lifetime in seconds (default 2592000)"),
    INT(max_body, 1024, 1073741824, "largest REST body in bytes (default 1048576)"),
    INT(max_header, 1024, 1048576, "largest request head in bytes (default 16384)"),
    INT(max_frame, 1024, 67108864, "largest WebSocket message in bytes (default 131072)"),
    INT(max_text, 1, 1048576, "largest text message in bytes (default 16384)"),
    INT(max_devices, 1, 1000, "devices per user (default 10)"),
    INT(rate_msgs, 1, 1000000, "sends per second per connection (default 100)"),
    INT(send_queue_max, 4096, 1073741824,
        "bytes queued to a socket before it is paused (default 1048576)"),
    INT(auth_timeout, 100, 600000, "ms allowed before the auth frame (default 10000)"),
    INT(idle_timeout, 1000, 86400000, "ms of silence before a socket is closed (default 120000)"),
    INT(sync_max, 1, 10000, "largest sync page (default 500)"),
    INT(batch_max, 1, 100000, "most messages in one pipeline transaction (default 512)"),
    INT(batch_wait_us, 0, 100000,
        "µs the pipeline waits for more messages before committing a small batch (default 1000)"),
    INT(receipt_max, 0, 100000, "largest group whose members get receipt frames (default 256)"),
    INT(group_max, 2, 100000, "most members of a group (default 10000)"),
    INT(fsync, 0, 1,
        "1: sync every commit to disk, surviving power loss (default 0: survives crashes)"),
};

void config_defaults(config_t *c)
{
    memset(c, 0, sizeof *c);
    strcpy(c->bind, "127.0.0.1");
    c->port = 8080;
    strcpy(c->data, "./var");
    strcpy(c->log_level, "info");
    strcpy(c->pwhash, "interactive");
    c->token_ttl = 2592000;
    c->max_body = 1048576;
    c->max_header = 16384;
    c->max_frame = 131072;
    c->max_text = 16384;
    c->max_devices = 10;
    c->rate_msgs = 100;
    c->send_queue_max = 1048576;
    c->auth_timeout = 10000;
    c->idle_timeout = 120000;
    c->sync_max = 500;
    c->batch_max = 512;
    c->batch_wait_us = 1000;
    c->receipt_max = 256;
    c->group_max = 10000;
}

static const struct key *find_key(const char *name)
{
    char norm[64];
    size_t n = strlen(name);
    if (n >= sizeof norm) return NULL;
    for (size_t i = 0; i <= n; i++) norm[i] = name[i] == '-' ? '_' : name[i];
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (strcmp(keys[i].name, norm) == 0) return &keys[i];
    return NULL;
}

int config_set(config_t *c, const char *name, const char *value, char *err, size_t errlen)
{
    const struct key *k = find_key(name);
    if (!k) {
        snprintf(err, errlen, "unknown setting '%s' (see parleyd --help)", name);
        return -1;
    }
    char *field = (char *)c + k->off;
    if (k->kind == K_STR) {
        if (strlen(value) >= k->size) {
            snprintf(err, errlen, "%s is too long (at most %zu bytes)", k->name, k->size - 1);
            return -1;
        }
        strcpy(field, value);
        return 0;
    }
    char *end;
    errno = 0;
    long long v = strtoll(value, &end, 10);
    if (errno || end == value || *end || v < k->min || v > k->max) {
        snprintf(err, errlen, "%s must be a whole number from %lld to %lld, not '%s'", k->name,
                 (long long)k->min, (long long)k->max, value);
        return -1;
    }
    *(int64_t *)(void *)field = v;
    return 0;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t') s++;
    char *e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n')) *--e = 0;
    return s;
}

int config_load_file(config_t *c, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "cannot read config file %s: %s", path, strerror(errno));
        return -1;
    }
    char line[2048];
    int lineno = 0, rc = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        if (!strchr(line, '\n') && !feof(f)) {
            snprintf(err, errlen, "%s:%d: line too long", path, lineno);
            rc = -1;
            break;
        }
        char *s = trim(line);
        if (!*s || *s == '#') continue;
        char *sp = s + strcspn(s, " \t=");
        if (!*sp) {
            snprintf(err, errlen, "%s:%d: '%s' has no value (write 'key value')", path, lineno, s);
            rc = -1;
            break;
        }
        *sp++ = 0;
        char *v = trim(sp);
        if (*v == '=') v = trim(v + 1);
        char sub[512];
        if (config_set(c, s, v, sub, sizeof sub) != 0) {
            snprintf(err, errlen, "%s:%d: %s", path, lineno, sub);
            rc = -1;
            break;
        }
    }
    fclose(f);
    return rc;
}

void config_usage(FILE *out)
{
    fprintf(out, "usage: parleyd [--config FILE] [--KEY VALUE ...]\n\n"
                 "Every KEY may also be written as 'KEY VALUE' in the config file.\n\n");
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        fprintf(out, "  --%-16s %s\n", keys[i].name, keys[i].help);
}

int config_from_args(config_t *c, int argc, char **argv, char *err, size_t errlen)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            config_usage(stdout);
            return 1;
        }
        if (strcmp(argv[i], "--config") == 0) {
            if (i + 1 >= argc) {
                snprintf(err, errlen, "--config needs a file name");
                return -1;
            }
            if (config_load_file(c, argv[i + 1], err, errlen) != 0) return -1;
        }
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0) {
            snprintf(err, errlen, "unexpected argument '%s' (settings are --key value)", a);
            return -1;
        }
        if (i + 1 >= argc) {
            snprintf(err, errlen, "%s needs a value", a);
            return -1;
        }
        if (strcmp(a, "--config") != 0 && config_set(c, a + 2, argv[i + 1], err, errlen) != 0)
            return -1;
        i++;
    }
    return 0;
}
