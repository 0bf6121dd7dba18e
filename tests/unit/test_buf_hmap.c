/* test_buf_hmap.c: unit tests for common/buf.h (growable byte buffer) and common/hmap.h
 * (string-keyed hash map). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/buf.h"
#include "common/hmap.h"

/* ---- buf ---- */

static void test_buf_init_free(void **state)
{
    (void)state;
    buf_t b;
    buf_init(&b);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
    buf_free(&b); /* freeing an empty buffer is fine */
    assert_null(b.data);
    buf_append(&b, "x", 1);
    buf_free(&b);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
    buf_free(&b); /* and twice */
}

static void test_buf_append(void **state)
{
    (void)state;
    buf_t b;
    buf_init(&b);
    buf_append(&b, NULL, 0); /* nothing to copy: no allocation, no read */
    assert_int_equal(b.len, 0);
    buf_append(&b, "hello", 5);
    buf_append_str(&b, ", ");
    buf_append_str(&b, "");
    buf_append(&b, "world!!", 5);
    assert_int_equal(b.len, 12);
    assert_true(b.cap >= b.len);
    assert_memory_equal(b.data, "hello, world", 12);
    /* Binary data with NULs. */
    buf_append(&b, "\0\1\0", 3);
    assert_int_equal(b.len, 15);
    assert_memory_equal(b.data + 12, "\0\1\0", 3);
    buf_free(&b);
}

static void test_buf_grow(void **state)
{
    (void)state;
    buf_t b;
    buf_init(&b);
    /* Byte by byte up to 1 MiB, then check every byte. */
    for (size_t i = 0; i < (1u << 20); i++) {
        uint8_t c = (uint8_t)(i * 7 + 3);
        buf_append(&b, &c, 1);
        assert_true(b.cap >= b.len);
    }
    assert_int_equal(b.len, 1u << 20);
    for (size_t i = 0; i < b.len; i++)
        if (b.data[i] != (uint8_t)(i * 7 + 3)) fail_msg("byte %zu", i);
    /* One large append past the current capacity. */
    size_t big = 3u << 20;
    uint8_t *blob = malloc(big);
    assert_non_null(blob);
    memset(blob, 0xab, big);
    buf_append(&b, blob, big);
    assert_int_equal(b.len, (1u << 20) + big);
    assert_memory_equal(b.data + (1u << 20), blob, big);
    free(blob);
    buf_free(&b);
}

static void test_buf_reserve(void **state)
{
    (void)state;
    buf_t b;
    buf_init(&b);
    buf_reserve(&b, 0);
    buf_reserve(&b, 10);
    assert_non_null(b.data);
    assert_true(b.cap - b.len >= 10);
    size_t cap = b.cap;
    buf_reserve(&b, 10); /* already room: unchanged */
    assert_int_equal(b.cap, cap);
    buf_append(&b, "abc", 3);
    buf_reserve(&b, 100000);
    assert_true(b.cap - b.len >= 100000);
    assert_memory_equal(b.data, "abc", 3);
    /* The reserved room is writable (ASan checks). */
    memset(b.data + b.len, 'z', 100000);
    buf_free(&b);
}

static void test_buf_printf(void **state)
{
    (void)state;
    buf_t b;
    buf_init(&b);
    buf_printf(&b, "%d-%s", 42, "x");
    assert_int_equal(b.len, 4);
    assert_memory_equal(b.data, "42-x", 4);
    buf_printf(&b, "%s", ""); /* empty output appends nothing */
    assert_int_equal(b.len, 4);
    buf_printf(&b, "|%05u|%c", 7u, 'q');
    assert_int_equal(b.len, 4 + 8);
    assert_memory_equal(b.data, "42-x|00007|q", 12);
    /* Output longer than the first allocation, appended after existing bytes. */
    char big[5000];
    memset(big, 'm', sizeof big - 1);
    big[sizeof big - 1] = 0;
    buf_printf(&b, "<%s>", big);
    assert_int_equal(b.len, 12 + 2 + 4999);
    assert_int_equal(b.data[12], '<');
    assert_int_equal(b.data[12 + 1 + 4998], 'm');
    assert_int_equal(b.data[b.len - 1], '>');
    /* Exactly filling the capacity (printf writes a NUL past len; there must be room). */
    buf_t c;
    buf_init(&c);
    buf_reserve(&c, 1);
    size_t room = c.cap;
    char *s = malloc(room + 1);
    assert_non_null(s);
    memset(s, 'a', room);
    s[room] = 0;
    buf_printf(&c, "%s", s);
    assert_int_equal(c.len, room);
    assert_memory_equal(c.data, s, room);
    free(s);
    buf_free(&c);
    buf_free(&b);
}

static void test_buf_consume_reset(void **state)
{
    (void)state;
    buf_t b;
    buf_init(&b);
    buf_consume(&b, 0);
    buf_consume(&b, 5); /* on an empty buffer */
    assert_int_equal(b.len, 0);
    buf_append_str(&b, "0123456789");
    buf_consume(&b, 0);
    assert_int_equal(b.len, 10);
    buf_consume(&b, 3);
    assert_int_equal(b.len, 7);
    assert_memory_equal(b.data, "3456789", 7);
    buf_consume(&b, 6);
    assert_int_equal(b.len, 1);
    assert_memory_equal(b.data, "9", 1);
    buf_append_str(&b, "ab");
    assert_memory_equal(b.data, "9ab", 3);
    buf_consume(&b, 3); /* exactly all */
    assert_int_equal(b.len, 0);
    buf_append_str(&b, "xyz");
    buf_consume(&b, 100); /* more than there is */
    assert_int_equal(b.len, 0);
    buf_append_str(&b, "keep the memory");
    size_t cap = b.cap;
    uint8_t *data = b.data;
    buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, cap);
    assert_ptr_equal(b.data, data);
    buf_append_str(&b, "again");
    assert_memory_equal(b.data, "again", 5);
    buf_free(&b);
}

/* ---- hmap ---- */

static void test_hmap_empty(void **state)
{
    (void)state;
    hmap_t m;
    hmap_init(&m);
    assert_int_equal(m.count, 0);
    assert_null(hmap_get(&m, "x"));
    assert_null(hmap_get(&m, ""));
    assert_null(hmap_del(&m, "x"));
    int calls = 0;
    hmap_each(&m, NULL, &calls); /* no entries: fn is never called */
    hmap_free(&m);
    hmap_free(&m);
}

static void test_hmap_basic(void **state)
{
    (void)state;
    hmap_t m;
    hmap_init(&m);
    int a = 1, b = 2, c = 3;
    hmap_put(&m, "alpha", &a);
    hmap_put(&m, "beta", &b);
    hmap_put(&m, "", &c); /* the empty key is a key */
    assert_int_equal(m.count, 3);
    assert_ptr_equal(hmap_get(&m, "alpha"), &a);
    assert_ptr_equal(hmap_get(&m, "beta"), &b);
    assert_ptr_equal(hmap_get(&m, ""), &c);
    assert_null(hmap_get(&m, "gamma"));
    assert_null(hmap_get(&m, "alph"));
    assert_null(hmap_get(&m, "alphaa"));
    assert_null(hmap_get(&m, "ALPHA"));

    /* Replacing keeps the count. */
    hmap_put(&m, "alpha", &c);
    assert_int_equal(m.count, 3);
    assert_ptr_equal(hmap_get(&m, "alpha"), &c);

    /* A NULL value is stored (and reads back as NULL). */
    hmap_put(&m, "nothing", NULL);
    assert_int_equal(m.count, 4);
    assert_null(hmap_get(&m, "nothing"));
    assert_null(hmap_del(&m, "nothing"));
    assert_int_equal(m.count, 3);

    assert_ptr_equal(hmap_del(&m, "beta"), &b);
    assert_int_equal(m.count, 2);
    assert_null(hmap_get(&m, "beta"));
    assert_null(hmap_del(&m, "beta"));
    assert_int_equal(m.count, 2);
    assert_ptr_equal(hmap_del(&m, ""), &c);
    assert_ptr_equal(hmap_del(&m, "alpha"), &c);
    assert_int_equal(m.count, 0);
    hmap_put(&m, "beta", &b);
    assert_ptr_equal(hmap_get(&m, "beta"), &b);
    hmap_free(&m);
    assert_int_equal(m.count, 0);
    assert_null(hmap_get(&m, "beta"));
    /* Usable again after free. */
    hmap_put(&m, "z", &a);
    assert_ptr_equal(hmap_get(&m, "z"), &a);
    hmap_free(&m);
}

static void test_hmap_key_copied(void **state)
{
    (void)state;
    hmap_t m;
    hmap_init(&m);
    char key[32];
    int v = 7;
    strcpy(key, "mutable");
    hmap_put(&m, key, &v);
    strcpy(key, "changed");
    assert_null(hmap_get(&m, "changed"));
    assert_ptr_equal(hmap_get(&m, "mutable"), &v);
    /* A long key. */
    char *long_key = malloc(10001);
    assert_non_null(long_key);
    memset(long_key, 'k', 10000);
    long_key[10000] = 0;
    hmap_put(&m, long_key, &v);
    long_key[9999] = 'j';
    assert_null(hmap_get(&m, long_key));
    long_key[9999] = 'k';
    assert_ptr_equal(hmap_get(&m, long_key), &v);
    free(long_key);
    hmap_free(&m);
}

#define NKEYS 20000

static void key_of(char *out, size_t n, int i)
{
    snprintf(out, n, "key:%d", i);
}

struct each_ctx {
    int calls;
    unsigned char *seen;
    int *vals;
};

static void each_fn(void *ctx, const char *key, void *value)
{
    struct each_ctx *e = ctx;
    int i;
    assert_int_equal(sscanf(key, "key:%d", &i), 1);
    assert_true(i >= 0 && i < NKEYS);
    assert_ptr_equal(value, &e->vals[i]);
    assert_int_equal(e->seen[i], 0);
    e->seen[i] = 1;
    e->calls++;
}

static void test_hmap_many(void **state)
{
    (void)state;
    hmap_t m;
    hmap_init(&m);
    int *vals = calloc(NKEYS, sizeof *vals);
    unsigned char *seen = calloc(NKEYS, 1);
    assert_non_null(vals);
    assert_non_null(seen);
    char k[32];
    for (int i = 0; i < NKEYS; i++) {
        vals[i] = i;
        key_of(k, sizeof k, i);
        hmap_put(&m, k, &vals[i]);
        assert_int_equal(m.count, (size_t)i + 1);
    }
    /* It grew: a power of two at least as large as the count. */
    assert_true(m.nslots >= m.count);
    assert_int_equal(m.nslots & (m.nslots - 1), 0);
    for (int i = 0; i < NKEYS; i++) {
        key_of(k, sizeof k, i);
        int *p = hmap_get(&m, k);
        assert_non_null(p);
        assert_int_equal(*p, i);
    }
    key_of(k, sizeof k, NKEYS);
    assert_null(hmap_get(&m, k));

    struct each_ctx e = {0, seen, vals};
    hmap_each(&m, each_fn, &e);
    assert_int_equal(e.calls, NKEYS);

    /* Delete the even keys; the odd ones stay. */
    for (int i = 0; i < NKEYS; i += 2) {
        key_of(k, sizeof k, i);
        assert_ptr_equal(hmap_del(&m, k), &vals[i]);
    }
    assert_int_equal(m.count, NKEYS / 2);
    for (int i = 0; i < NKEYS; i++) {
        key_of(k, sizeof k, i);
        if (i % 2)
            assert_ptr_equal(hmap_get(&m, k), &vals[i]);
        else
            assert_null(hmap_get(&m, k));
    }
    memset(seen, 0, NKEYS);
    e.calls = 0;
    hmap_each(&m, each_fn, &e);
    assert_int_equal(e.calls, NKEYS / 2);
    for (int i = 0; i < NKEYS; i++) assert_int_equal(seen[i], i % 2);

    /* Put them back, and replace the odd ones with other values. */
    for (int i = 0; i < NKEYS; i++) {
        key_of(k, sizeof k, i);
        hmap_put(&m, k, i % 2 ? &vals[NKEYS - 1 - i] : &vals[i]);
    }
    assert_int_equal(m.count, NKEYS);
    for (int i = 0; i < NKEYS; i++) {
        key_of(k, sizeof k, i);
        assert_ptr_equal(hmap_get(&m, k), i % 2 ? &vals[NKEYS - 1 - i] : &vals[i]);
    }
    /* Delete everything. */
    for (int i = NKEYS - 1; i >= 0; i--) {
        key_of(k, sizeof k, i);
        assert_non_null(hmap_del(&m, k));
    }
    assert_int_equal(m.count, 0);
    e.calls = 0;
    hmap_each(&m, each_fn, &e);
    assert_int_equal(e.calls, 0);
    hmap_free(&m);
    free(vals);
    free(seen);
}

/* Keys that share prefixes and differ in one byte, including bytes above 0x7f. */
static void test_hmap_similar_keys(void **state)
{
    (void)state;
    hmap_t m;
    hmap_init(&m);
    static int v[256];
    char k[4] = {'a', 0, 'z', 0};
    for (int c = 1; c < 256; c++) {
        k[1] = (char)c;
        hmap_put(&m, k, &v[c]);
    }
    assert_int_equal(m.count, 255);
    for (int c = 1; c < 256; c++) {
        k[1] = (char)c;
        assert_ptr_equal(hmap_get(&m, k), &v[c]);
    }
    assert_null(hmap_get(&m, "a"));
    hmap_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buf_init_free),     cmocka_unit_test(test_buf_append),
        cmocka_unit_test(test_buf_grow),          cmocka_unit_test(test_buf_reserve),
        cmocka_unit_test(test_buf_printf),        cmocka_unit_test(test_buf_consume_reset),
        cmocka_unit_test(test_hmap_empty),        cmocka_unit_test(test_hmap_basic),
        cmocka_unit_test(test_hmap_key_copied),   cmocka_unit_test(test_hmap_many),
        cmocka_unit_test(test_hmap_similar_keys),
    };
    return cmocka_run_group_tests_name("buf_hmap", tests, NULL, NULL);
}
