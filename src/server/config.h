/* config.h: parleyd's settings. Every key can be set in a file (`key value` lines, `#` comments)
 * and as a flag (`--key value`, with `-` or `_` alike); flags override the file. The table of
 * keys, defaults and ranges is in config.c and documented in docs/operations.md. */
#ifndef PL_CONFIG_H
#define PL_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct config {
    char bind[64];
    int64_t port;
    char data[1024];
    char log_level[16];
    char jwt_key_file[1024]; /* "" = data/jwt.key, made on first start */
    char pwhash[16];         /* interactive | moderate | min (tests only) */
    int64_t token_ttl;       /* seconds */
    int64_t max_body;        /* REST body bytes */
    int64_t max_header;      /* request line and headers, bytes */
    int64_t max_frame;       /* WebSocket message bytes */
    int64_t max_text;        /* text message bytes */
    int64_t max_devices;     /* devices per user */
    int64_t rate_msgs;       /* sends per second per connection */
    int64_t send_queue_max;  /* bytes queued to one socket before live delivery pauses */
    int64_t auth_timeout;    /* ms to send auth after the WebSocket opens */
    int64_t idle_timeout;    /* ms without any frame before a socket is closed */
    int64_t sync_max;        /* largest sync page */
    int64_t batch_max;       /* messages per pipeline transaction */
    int64_t batch_wait_us;   /* how long a small batch waits for more items */
    int64_t receipt_max;     /* largest group whose members get receipt frames */
    int64_t group_max;       /* members per group */
    int64_t fsync;           /* 1: every commit survives a power loss (slower) */
} config_t;

void config_defaults(config_t *c);
/* Each returns 0, or -1 with a sentence in err naming the file, line, key and what is wrong. */
int config_set(config_t *c, const char *key, const char *value, char *err, size_t errlen);
int config_load_file(config_t *c, const char *path, char *err, size_t errlen);
/* Parses argv: --config FILE is read first, then every other --key value overrides it.
 * Returns 0, 1 for --help (usage printed), or -1 with err. */
int config_from_args(config_t *c, int argc, char **argv, char *err, size_t errlen);
void config_usage(FILE *out);

#endif
