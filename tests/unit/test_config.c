/* test_config.c: unit tests for server/config.h: defaults, config_set, config files and argv. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "server/config.h"

/* Each test gets a config, an error buffer and a temporary file path, cleaned up after. */
typedef struct fx {
    config_t c;
    char err[1024];
    char path[256];
    char path2[300];
} fx_t;

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof *f);
    if (!f) return -1;
    config_defaults(&f->c);
    const char *tmp = getenv("TMPDIR");
    snprintf(f->path, sizeof f->path, "%s/parley-config-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    int fd = mkstemp(f->path);
    if (fd < 0) return -1;
    close(fd);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    unlink(f->path);
    if (f->path2[0]) unlink(f->path2);
    free(f);
    return 0;
}

static void write_file(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    assert_int_equal(fwrite(text, 1, strlen(text), fp), strlen(text));
    assert_int_equal(fclose(fp), 0);
}

/* Asserts err equals the printf-formatted sentence. */
static void expect_err(const char *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void expect_err(const char *err, const char *fmt, ...)
{
    char want[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(want, sizeof want, fmt, ap);
    va_end(ap);
    assert_string_equal(err, want);
}

/* ---- defaults ---- */

static void test_defaults(void **state)
{
    fx_t *f = *state;
    config_t *c = &f->c;
    memset(c, 0x5a, sizeof *c); /* defaults overwrite everything */
    config_defaults(c);
    assert_string_equal(c->bind, "127.0.0.1");
    assert_int_equal(c->port, 8080);
    assert_string_equal(c->data, "./var");
    assert_string_equal(c->log_level, "info");
    assert_string_equal(c->jwt_key_file, "");
    assert_string_equal(c->pwhash, "interactive");
    assert_int_equal(c->token_ttl, 2592000);
    assert_int_equal(c->max_body, 1048576);
    assert_int_equal(c->max_header, 16384);
    assert_int_equal(c->max_frame, 131072);
    assert_int_equal(c->max_text, 16384);
    assert_int_equal(c->max_devices, 10);
    assert_int_equal(c->rate_msgs, 100);
    assert_int_equal(c->send_queue_max, 1048576);
    assert_int_equal(c->auth_timeout, 10000);
    assert_int_equal(c->idle_timeout, 120000);
    assert_int_equal(c->sync_max, 500);
    assert_int_equal(c->batch_max, 512);
    assert_int_equal(c->receipt_max, 256);
    assert_int_equal(c->group_max, 10000);
}

/* ---- config_set ---- */

static void test_set_values(void **state)
{
    fx_t *f = *state;
    config_t *c = &f->c;
    assert_int_equal(config_set(c, "port", "9000", f->err, sizeof f->err), 0);
    assert_int_equal(c->port, 9000);
    assert_int_equal(config_set(c, "bind", "0.0.0.0", f->err, sizeof f->err), 0);
    assert_string_equal(c->bind, "0.0.0.0");
    /* '-' and '_' alike. */
    assert_int_equal(config_set(c, "max-body", "2048", f->err, sizeof f->err), 0);
    assert_int_equal(c->max_body, 2048);
    assert_int_equal(config_set(c, "max_body", "4096", f->err, sizeof f->err), 0);
    assert_int_equal(c->max_body, 4096);
    assert_int_equal(config_set(c, "log-level", "debug", f->err, sizeof f->err), 0);
    assert_string_equal(c->log_level, "debug");
    assert_int_equal(config_set(c, "jwt_key_file", "/etc/parley/jwt.key", f->err, sizeof f->err),
                     0);
    assert_string_equal(c->jwt_key_file, "/etc/parley/jwt.key");
    assert_int_equal(config_set(c, "data", "", f->err, sizeof f->err),
                     0); /* strings may be empty */
    assert_string_equal(c->data, "");
    assert_int_equal(config_set(c, "pwhash", "min", f->err, sizeof f->err), 0);
    assert_string_equal(c->pwhash, "min");

    /* Every integer key at both ends of its range. */
    struct {
        const char *key;
        int64_t *field, lo, hi;
    } ints[] = {
        {"port", &c->port, 0, 65535},
        {"token_ttl", &c->token_ttl, 60, 31536000},
        {"max_body", &c->max_body, 1024, 1073741824},
        {"max_header", &c->max_header, 1024, 1048576},
        {"max_frame", &c->max_frame, 1024, 67108864},
        {"max_text", &c->max_text, 1, 1048576},
        {"max_devices", &c->max_devices, 1, 1000},
        {"rate_msgs", &c->rate_msgs, 1, 1000000},
        {"send_queue_max", &c->send_queue_max, 4096, 1073741824},
        {"auth_timeout", &c->auth_timeout, 100, 600000},
        {"idle_timeout", &c->idle_timeout, 1000, 86400000},
        {"sync_max", &c->sync_max, 1, 10000},
        {"batch_max", &c->batch_max, 1, 100000},
        {"receipt_max", &c->receipt_max, 0, 100000},
        {"group_max", &c->group_max, 2, 100000},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        char v[32];
        snprintf(v, sizeof v, "%lld", (long long)ints[i].lo);
        assert_int_equal(config_set(c, ints[i].key, v, f->err, sizeof f->err), 0);
        assert_int_equal(*ints[i].field, ints[i].lo);
        snprintf(v, sizeof v, "%lld", (long long)ints[i].hi);
        assert_int_equal(config_set(c, ints[i].key, v, f->err, sizeof f->err), 0);
        assert_int_equal(*ints[i].field, ints[i].hi);
        /* One past either end is refused, with the range in the sentence. */
        snprintf(v, sizeof v, "%lld", (long long)ints[i].lo - 1);
        assert_int_equal(config_set(c, ints[i].key, v, f->err, sizeof f->err), -1);
        expect_err(f->err, "%s must be a whole number from %lld to %lld, not '%s'", ints[i].key,
                   (long long)ints[i].lo, (long long)ints[i].hi, v);
        snprintf(v, sizeof v, "%lld", (long long)ints[i].hi + 1);
        assert_int_equal(config_set(c, ints[i].key, v, f->err, sizeof f->err), -1);
        expect_err(f->err, "%s must be a whole number from %lld to %lld, not '%s'", ints[i].key,
                   (long long)ints[i].lo, (long long)ints[i].hi, v);
        assert_int_equal(*ints[i].field, ints[i].hi); /* unchanged by the refusals */
    }
}

static void test_set_errors(void **state)
{
    fx_t *f = *state;
    config_t *c = &f->c;
    assert_int_equal(config_set(c, "port", "70000", f->err, sizeof f->err), -1);
    assert_string_equal(f->err, "port must be a whole number from 0 to 65535, not '70000'");
    assert_int_equal(c->port, 8080);
    const char *bad[] = {"",
                         "abc",
                         "12x",
                         "12 ",
                         "1.5",
                         "0x10",
                         "-",
                         "99999999999999999999",
                         "-99999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(config_set(c, "port", bad[i], f->err, sizeof f->err), -1);
        expect_err(f->err, "port must be a whole number from 0 to 65535, not '%s'", bad[i]);
    }
    assert_int_equal(c->port, 8080);
    assert_int_equal(config_set(c, "max-body", "1023", f->err, sizeof f->err), -1);
    assert_string_equal(f->err,
                        "max_body must be a whole number from 1024 to 1073741824, not '1023'");

    assert_int_equal(config_set(c, "nope", "1", f->err, sizeof f->err), -1);
    assert_string_equal(f->err, "unknown setting 'nope' (see parleyd --help)");
    assert_int_equal(config_set(c, "", "1", f->err, sizeof f->err), -1);
    assert_string_equal(f->err, "unknown setting '' (see parleyd --help)");
    assert_int_equal(config_set(c, "PORT", "1", f->err, sizeof f->err), -1);
    assert_string_equal(f->err, "unknown setting 'PORT' (see parleyd --help)");
    char longkey[200];
    memset(longkey, 'k', sizeof longkey - 1);
    longkey[sizeof longkey - 1] = 0;
    assert_int_equal(config_set(c, longkey, "1", f->err, sizeof f->err), -1);
    expect_err(f->err, "unknown setting '%s' (see parleyd --help)", longkey);

    /* Strings: at most the field size less one. */
    char s[80];
    memset(s, 'b', 63);
    s[63] = 0;
    assert_int_equal(config_set(c, "bind", s, f->err, sizeof f->err), 0);
    assert_string_equal(c->bind, s);
    s[63] = 'b';
    s[64] = 0;
    assert_int_equal(config_set(c, "bind", s, f->err, sizeof f->err), -1);
    assert_string_equal(f->err, "bind is too long (at most 63 bytes)");
    s[63] = 0;
    assert_string_equal(c->bind, s);
    assert_int_equal(config_set(c, "log_level", "0123456789abcdef", f->err, sizeof f->err), -1);
    assert_string_equal(f->err, "log_level is too long (at most 15 bytes)");

    /* A small error buffer gets a truncated, terminated sentence. */
    char small[12];
    memset(small, 'X', sizeof small);
    assert_int_equal(config_set(c, "port", "abc", small, sizeof small), -1);
    assert_string_equal(small, "port must b");
}

/* ---- files ---- */

static void test_file(void **state)
{
    fx_t *f = *state;
    config_t *c = &f->c;
    write_file(f->path, "# Parley settings\n"
                        "\n"
                        "   # an indented comment\n"
                        "port 9001\n"
                        "bind = 0.0.0.0\n"
                        "max-body=2048\n"
                        "\tdata\t\t/srv/parley data  \n"
                        "log_level   warn\r\n"
                        "   \t  \n"
                        "rate_msgs =   7   \n"
                        "jwt_key_file = \n"
                        "sync_max 42"); /* no final newline */
    assert_int_equal(config_load_file(c, f->path, f->err, sizeof f->err), 0);
    assert_int_equal(c->port, 9001);
    assert_string_equal(c->bind, "0.0.0.0");
    assert_int_equal(c->max_body, 2048);
    assert_string_equal(c->data, "/srv/parley data"); /* inner spaces kept, ends trimmed */
    assert_string_equal(c->log_level, "warn");
    assert_int_equal(c->rate_msgs, 7);
    assert_string_equal(c->jwt_key_file, "");
    assert_int_equal(c->sync_max, 42);
    /* Untouched keys keep their defaults. */
    assert_int_equal(c->max_header, 16384);
    assert_string_equal(c->pwhash, "interactive");

    write_file(f->path, "");
    config_defaults(c);
    assert_int_equal(config_load_file(c, f->path, f->err, sizeof f->err), 0);
    assert_int_equal(c->port, 8080);
}

static void test_file_errors(void **state)
{
    fx_t *f = *state;
    config_t *c = &f->c;

    write_file(f->path, "# comment\nport 9001\n\nfrobnicate yes\nbind 1.2.3.4\n");
    assert_int_equal(config_load_file(c, f->path, f->err, sizeof f->err), -1);
    expect_err(f->err, "%s:4: unknown setting 'frobnicate' (see parleyd --help)", f->path);
    assert_int_equal(c->port, 9001);           /* lines before the error were applied */
    assert_string_equal(c->bind, "127.0.0.1"); /* and none after it */

    write_file(f->path, "bind ::1\nport eighty\n");
    assert_int_equal(config_load_file(c, f->path, f->err, sizeof f->err), -1);
    expect_err(f->err, "%s:2: port must be a whole number from 0 to 65535, not 'eighty'", f->path);

    write_file(f->path, "\n\nmax_text 0\n");
    assert_int_equal(config_load_file(c, f->path, f->err, sizeof f->err), -1);
    expect_err(f->err, "%s:3: max_text must be a whole number from 1 to 1048576, not '0'", f->path);

    write_file(f->path, "port 1\nport\n");
    assert_int_equal(config_load_file(c, f->path, f->err, sizeof f->err), -1);
    expect_err(f->err, "%s:2: 'port' has no value (write 'key value')", f->path);

    write_file(f->path, "log_level = \n");
    config_defaults(c);
    assert_int_equal(config_load_file(c, f->path, f->err, sizeof f->err), 0);
    assert_string_equal(c->log_level, ""); /* an empty string value is a value */

    write_file(f->path, "port =\n");
    assert_int_equal(config_load_file(c, f->path, f->err, sizeof f->err), -1);
    expect_err(f->err, "%s:1: port must be a whole number from 0 to 65535, not ''", f->path);

    /* A line longer than the reader's buffer. */
    char *longline = malloc(5000);
    assert_non_null(longline);
    strcpy(longline, "data ");
    memset(longline + 5, 'd', 4000);
    strcpy(longline + 4005, "\n");
    write_file(f->path, longline);
    free(longline);
    assert_int_equal(config_load_file(c, f->path, f->err, sizeof f->err), -1);
    expect_err(f->err, "%s:1: line too long", f->path);

    /* A string too long for its field. */
    char line[200];
    memset(line, 0, sizeof line);
    strcpy(line, "bind ");
    memset(line + 5, 'b', 100);
    strcat(line, "\n");
    write_file(f->path, line);
    assert_int_equal(config_load_file(c, f->path, f->err, sizeof f->err), -1);
    expect_err(f->err, "%s:1: bind is too long (at most 63 bytes)", f->path);

    /* A file that is not there. */
    char missing[320];
    snprintf(missing, sizeof missing, "%s.does-not-exist", f->path);
    assert_int_equal(config_load_file(c, missing, f->err, sizeof f->err), -1);
    expect_err(f->err, "cannot read config file %s: No such file or directory", missing);
}

/* ---- argv ---- */

static int run_args(fx_t *f, int argc, const char **argv)
{
    return config_from_args(&f->c, argc, (char **)argv, f->err, sizeof f->err);
}

static void test_args(void **state)
{
    fx_t *f = *state;
    write_file(f->path, "port 7000\nbind 10.0.0.1\nmax_devices 3\n");
    /* The file first, then flags override it, wherever --config appears. */
    const char *a1[] = {"parleyd", "--port", "9000", "--config", f->path, "--max-devices", "4"};
    assert_int_equal(run_args(f, 7, a1), 0);
    assert_int_equal(f->c.port, 9000);
    assert_string_equal(f->c.bind, "10.0.0.1");
    assert_int_equal(f->c.max_devices, 4);

    config_defaults(&f->c);
    const char *a2[] = {"parleyd", "--config", f->path};
    assert_int_equal(run_args(f, 3, a2), 0);
    assert_int_equal(f->c.port, 7000);
    assert_int_equal(f->c.max_devices, 3);

    config_defaults(&f->c);
    const char *a3[] = {"parleyd"};
    assert_int_equal(run_args(f, 1, a3), 0);
    assert_int_equal(f->c.port, 8080);

    config_defaults(&f->c);
    const char *a4[] = {"parleyd", "--log_level", "error", "--data", "/tmp/x", "--pwhash", "min"};
    assert_int_equal(run_args(f, 7, a4), 0);
    assert_string_equal(f->c.log_level, "error");
    assert_string_equal(f->c.data, "/tmp/x");
    assert_string_equal(f->c.pwhash, "min");

    /* Two config files: both read, in order. */
    snprintf(f->path2, sizeof f->path2, "%s.second", f->path);
    write_file(f->path2, "port 7001\nsync_max 9\n");
    config_defaults(&f->c);
    const char *a5[] = {"parleyd", "--config", f->path, "--config", f->path2};
    assert_int_equal(run_args(f, 5, a5), 0);
    assert_int_equal(f->c.port, 7001);
    assert_int_equal(f->c.sync_max, 9);
    assert_string_equal(f->c.bind, "10.0.0.1");
}

static void test_args_errors(void **state)
{
    fx_t *f = *state;
    const char *a1[] = {"parleyd", "--config"};
    assert_int_equal(run_args(f, 2, a1), -1);
    assert_string_equal(f->err, "--config needs a file name");

    const char *a2[] = {"parleyd", "--port"};
    assert_int_equal(run_args(f, 2, a2), -1);
    assert_string_equal(f->err, "--port needs a value");

    const char *a3[] = {"parleyd", "stray"};
    assert_int_equal(run_args(f, 2, a3), -1);
    assert_string_equal(f->err, "unexpected argument 'stray' (settings are --key value)");

    const char *a4[] = {"parleyd", "--port", "1", "-x", "2"};
    assert_int_equal(run_args(f, 5, a4), -1);
    assert_string_equal(f->err, "unexpected argument '-x' (settings are --key value)");

    const char *a5[] = {"parleyd", "--frobnicate", "1"};
    assert_int_equal(run_args(f, 3, a5), -1);
    assert_string_equal(f->err, "unknown setting 'frobnicate' (see parleyd --help)");

    const char *a6[] = {"parleyd", "--port", "http"};
    assert_int_equal(run_args(f, 3, a6), -1);
    assert_string_equal(f->err, "port must be a whole number from 0 to 65535, not 'http'");

    write_file(f->path, "port 1\nwhat 2\n");
    const char *a7[] = {"parleyd", "--port", "5", "--config", f->path};
    assert_int_equal(run_args(f, 5, a7), -1);
    expect_err(f->err, "%s:2: unknown setting 'what' (see parleyd --help)", f->path);

    char missing[320];
    snprintf(missing, sizeof missing, "%s.missing", f->path);
    const char *a8[] = {"parleyd", "--config", missing};
    assert_int_equal(run_args(f, 3, a8), -1);
    expect_err(f->err, "cannot read config file %s: No such file or directory", missing);
}

/* Runs config_from_args with stdout sent to a file; returns the result and the text printed. */
static int args_capture(fx_t *f, int argc, const char **argv, char *out, size_t outlen)
{
    snprintf(f->path2, sizeof f->path2, "%s.stdout", f->path);
    fflush(stdout);
    int saved = dup(STDOUT_FILENO);
    assert_true(saved >= 0);
    assert_non_null(freopen(f->path2, "w", stdout));
    int rc = run_args(f, argc, argv);
    fflush(stdout);
    assert_true(dup2(saved, STDOUT_FILENO) >= 0);
    close(saved);
    FILE *fp = fopen(f->path2, "r");
    assert_non_null(fp);
    size_t n = fread(out, 1, outlen - 1, fp);
    out[n] = 0;
    fclose(fp);
    return rc;
}

static void test_help(void **state)
{
    fx_t *f = *state;
    static char out[8192];
    const char *a1[] = {"parleyd", "--help"};
    assert_int_equal(args_capture(f, 2, a1, out, sizeof out), 1);
    assert_non_null(strstr(out, "usage: parleyd [--config FILE] [--KEY VALUE ...]"));
    const char *keys[] = {"bind",         "port",           "data",         "log_level",
                          "jwt_key_file", "pwhash",         "token_ttl",    "max_body",
                          "max_header",   "max_frame",      "max_text",     "max_devices",
                          "rate_msgs",    "send_queue_max", "auth_timeout", "idle_timeout",
                          "sync_max",     "batch_max",      "receipt_max",  "group_max",
                          "fsync",        "batch_wait_us"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        char flag[64];
        snprintf(flag, sizeof flag, "  --%s ", keys[i]);
        if (!strstr(out, flag)) fail_msg("usage lacks %s", keys[i]);
    }
    /* Every key the usage lists is a known setting. */
    int listed = 0;
    for (const char *l = strstr(out, "\n  --"); l; l = strstr(l + 1, "\n  --")) {
        char key[64];
        size_t n = strcspn(l + 5, " ");
        assert_true(n > 0 && n < sizeof key);
        memcpy(key, l + 5, n);
        key[n] = 0;
        if (config_set(&f->c, key, "", f->err, sizeof f->err) != 0)
            assert_null(strstr(f->err, "unknown setting"));
        listed++;
    }
    assert_int_equal(listed, (int)(sizeof keys / sizeof keys[0]));
    config_defaults(&f->c);
    /* -h too, and --help wins over errors and settings anywhere on the line. */
    const char *a2[] = {"parleyd", "-h"};
    assert_int_equal(args_capture(f, 2, a2, out, sizeof out), 1);
    const char *a3[] = {"parleyd", "--port", "99999999", "--help"};
    assert_int_equal(args_capture(f, 4, a3, out, sizeof out), 1);
    assert_int_equal(f->c.port, 8080);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_defaults),    T(test_set_values), T(test_set_errors),  T(test_file),
        T(test_file_errors), T(test_args),       T(test_args_errors), T(test_help),
    };
    return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
