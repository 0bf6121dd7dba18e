/* fuzz_config.c: libFuzzer target for server/config.h.
 *
 * The input is written to a temporary file and read with config_load_file(); then it is split
 * into a key and a value for config_set(), and into NUL-separated words for config_from_args()
 * (without --config, which would read other files, and --help, which prints). Every error must be
 * a terminated sentence within the buffer, and a successful load must leave the settings in range.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server/config.h"

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if (!(x)) abort();                                                                         \
    } while (0)

static char path[256];

static void cleanup(void)
{
    if (path[0]) unlink(path);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *tmp = getenv("TMPDIR");
    snprintf(path, sizeof path, "%s/fuzz-config-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    int fd = mkstemp(path);
    if (fd < 0) abort();
    close(fd);
    atexit(cleanup);
    return 0;
}

static void check_err(const char *err, size_t errlen)
{
    CHECK(memchr(err, 0, errlen) != NULL);
    CHECK(err[0] != 0);
}

static void check_ranges(const config_t *c)
{
    CHECK(c->port >= 0 && c->port <= 65535);
    CHECK(c->token_ttl >= 60 && c->token_ttl <= 31536000);
    CHECK(c->max_body >= 1024 && c->max_body <= 1073741824);
    CHECK(c->max_header >= 1024 && c->max_header <= 1048576);
    CHECK(c->max_frame >= 1024 && c->max_frame <= 67108864);
    CHECK(c->max_text >= 1 && c->max_text <= 1048576);
    CHECK(c->max_devices >= 1 && c->max_devices <= 1000);
    CHECK(c->rate_msgs >= 1 && c->rate_msgs <= 1000000);
    CHECK(c->send_queue_max >= 4096 && c->send_queue_max <= 1073741824);
    CHECK(c->auth_timeout >= 100 && c->auth_timeout <= 600000);
    CHECK(c->idle_timeout >= 1000 && c->idle_timeout <= 86400000);
    CHECK(c->sync_max >= 1 && c->sync_max <= 10000);
    CHECK(c->batch_max >= 1 && c->batch_max <= 100000);
    CHECK(c->receipt_max >= 0 && c->receipt_max <= 100000);
    CHECK(c->group_max >= 2 && c->group_max <= 100000);
    CHECK(memchr(c->bind, 0, sizeof c->bind) && memchr(c->data, 0, sizeof c->data));
    CHECK(memchr(c->log_level, 0, sizeof c->log_level) && memchr(c->pwhash, 0, sizeof c->pwhash));
    CHECK(memchr(c->jwt_key_file, 0, sizeof c->jwt_key_file));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    config_t c;
    char err[512];

    /* As a file. */
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (size) CHECK(fwrite(data, 1, size, f) == size);
    CHECK(fclose(f) == 0);
    config_defaults(&c);
    memset(err, 0x55, sizeof err);
    if (config_load_file(&c, path, err, sizeof err) != 0) check_err(err, sizeof err);
    check_ranges(&c); /* lines before an error were applied, each in range */

    /* A tiny error buffer truncates safely. */
    char small[8];
    config_defaults(&c);
    if (config_load_file(&c, path, small, sizeof small) != 0) check_err(small, sizeof small);

    /* As one key and value: split at the first space, '=' or NUL. */
    char *s = malloc(size + 1);
    CHECK(s != NULL);
    memcpy(s, data, size);
    s[size] = 0;
    size_t k = strcspn(s, " =");
    const char *key = s, *value = "";
    if (k < strlen(s)) {
        s[k] = 0;
        value = s + k + 1;
    }
    config_defaults(&c);
    memset(err, 0x55, sizeof err);
    if (config_set(&c, key, value, err, sizeof err) != 0) check_err(err, sizeof err);
    check_ranges(&c);

    /* As argv: NUL-separated words (after the key/value split above, only to its first NUL). */
    memcpy(s, data, size);
    char *argv[34];
    int argc = 0;
    argv[argc++] = "parleyd";
    for (size_t i = 0; i < size && argc < 33;) {
        char *w = s + i;
        size_t n = strlen(w);
        if (strcmp(w, "--config") != 0 && strcmp(w, "--help") != 0 && strcmp(w, "-h") != 0)
            argv[argc++] = w;
        i += n + 1;
    }
    argv[argc] = NULL;
    config_defaults(&c);
    memset(err, 0x55, sizeof err);
    int rc = config_from_args(&c, argc, argv, err, sizeof err);
    CHECK(rc == 0 || rc == -1);
    if (rc != 0) check_err(err, sizeof err);
    check_ranges(&c);

    free(s);
    return 0;
}
