/* test_util.c: unit tests for common/util.h (clocks, ids, base64url, UTF-8, ASCII) and
 * common/jsonx.h (nesting depth, JSON strings). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <sodium.h>

#include "common/jsonx.h"
#include "common/util.h"

/* ---- clocks ---- */

static void test_clocks(void **state)
{
    (void)state;
    int64_t t = now_ms();
    assert_true(t > 1577836800000LL);  /* after 2020-01-01 */
    assert_true(t < 32503680000000LL); /* before 3000-01-01 */
    int64_t a = mono_ms(), b = mono_ms();
    assert_true(a >= 0);
    assert_true(b >= a);
}

/* ---- ids ---- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

static void test_id_new(void **state)
{
    (void)state;
    enum { N = 2000 };
    char(*ids)[ID_MAX] = calloc(N, ID_MAX);
    assert_non_null(ids);
    for (int i = 0; i < N; i++) {
        id_new(ids[i], "u_");
        assert_int_equal(strlen(ids[i]), 2 + 16);
        assert_memory_equal(ids[i], "u_", 2);
        assert_true(id_valid(ids[i], "u_"));
        assert_false(id_valid(ids[i], "d_"));
    }
    qsort(ids, N, ID_MAX, cmp_str);
    for (int i = 1; i < N; i++) assert_string_not_equal(ids[i - 1], ids[i]);
    free(ids);

    char d[ID_MAX];
    id_new(d, "dev_");
    assert_int_equal(strlen(d), 4 + 16);
    assert_true(id_valid(d, "dev_"));
}

static void test_id_valid(void **state)
{
    (void)state;
    assert_true(id_valid("u_a", "u_"));
    assert_true(id_valid("u_AZaz09-_", "u_"));
    assert_true(id_valid("u_0123456789abcdef0123456789ABCDEF", "u_"));   /* 32 */
    assert_false(id_valid("u_0123456789abcdef0123456789ABCDEFG", "u_")); /* 33 */
    assert_false(id_valid("u_", "u_"));
    assert_false(id_valid("", "u_"));
    assert_false(id_valid(NULL, "u_"));
    assert_false(id_valid("d_abc", "u_"));
    assert_false(id_valid("U_abc", "u_"));
    assert_false(id_valid("uabc", "u_"));
    assert_false(id_valid("u_ab+c", "u_"));
    assert_false(id_valid("u_ab/c", "u_"));
    assert_false(id_valid("u_abc=", "u_"));
    assert_false(id_valid("u_ab c", "u_"));
    assert_false(id_valid("u_ab.c", "u_"));
    assert_false(id_valid("u_\xc3\xa9", "u_"));
    assert_true(id_valid("abc", ""));
}

/* The expected value computed independently with libsodium's own SHA-256 and base64. */
static void expect_direct(char out[ID_MAX], const char *lo, const char *hi)
{
    uint8_t h[crypto_hash_sha256_BYTES];
    size_t n = strlen(lo) + 1 + strlen(hi);
    char *cat = malloc(n + 1);
    assert_non_null(cat);
    strcpy(cat, lo);
    strcat(cat, ":");
    strcat(cat, hi);
    crypto_hash_sha256(h, (const uint8_t *)cat, n);
    free(cat);
    out[0] = 'p';
    out[1] = '_';
    sodium_bin2base64(out + 2, ID_MAX - 2, h, 18, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

static void test_conv_direct_id(void **state)
{
    (void)state;
    char ab[ID_MAX], ba[ID_MAX], want[ID_MAX], ac[ID_MAX], aa[ID_MAX];
    conv_direct_id(ab, "u_alice", "u_bob");
    conv_direct_id(ba, "u_bob", "u_alice");
    assert_string_equal(ab, ba);
    assert_int_equal(strlen(ab), 2 + 24);
    assert_true(id_valid(ab, "p_"));
    expect_direct(want, "u_alice", "u_bob");
    assert_string_equal(ab, want);

    conv_direct_id(ac, "u_alice", "u_carol");
    assert_string_not_equal(ab, ac);
    conv_direct_id(aa, "u_alice", "u_alice");
    assert_true(id_valid(aa, "p_"));
    assert_string_not_equal(aa, ab);

    /* Symmetric and deterministic for many random pairs. */
    for (int i = 0; i < 200; i++) {
        char a[ID_MAX], b[ID_MAX], x[ID_MAX], y[ID_MAX], z[ID_MAX];
        id_new(a, "u_");
        id_new(b, "u_");
        conv_direct_id(x, a, b);
        conv_direct_id(y, b, a);
        conv_direct_id(z, a, b);
        assert_string_equal(x, y);
        assert_string_equal(x, z);
        if (strcmp(a, b) < 0)
            expect_direct(z, a, b);
        else
            expect_direct(z, b, a);
        assert_string_equal(x, z);
    }
}

/* ---- base64url ---- */

static void check_encode(const char *in, const char *want)
{
    size_t n = strlen(in);
    size_t outsz = 4 * ((n + 2) / 3) + 1;
    char *out = malloc(outsz); /* exact size: ASan catches any overrun */
    assert_non_null(out);
    size_t k = b64url_encode(out, (const uint8_t *)in, n);
    assert_int_equal(k, strlen(want));
    assert_string_equal(out, want);
    free(out);

    size_t m = strlen(want);
    uint8_t *dec = malloc(3 * m / 4 + 3);
    assert_non_null(dec);
    long d = b64url_decode(dec, want, m);
    assert_int_equal(d, (long)n);
    if (n) assert_memory_equal(dec, in, n);
    free(dec);
}

static void test_b64url_vectors(void **state)
{
    (void)state;
    /* RFC 4648 section 10, without padding. */
    check_encode("", "");
    check_encode("f", "Zg");
    check_encode("fo", "Zm8");
    check_encode("foo", "Zm9v");
    check_encode("foob", "Zm9vYg");
    check_encode("fooba", "Zm9vYmE");
    check_encode("foobar", "Zm9vYmFy");
    /* The URL-safe alphabet: 62 is '-', 63 is '_'. */
    check_encode("\xfb\xff", "-_8");
    check_encode("\xff\xff\xff", "____");
    check_encode("\xfb\xef\xbe", "----");
}

static void test_b64url_roundtrip(void **state)
{
    (void)state;
    for (size_t n = 0; n <= 200; n++) {
        for (int rep = 0; rep < 5; rep++) {
            uint8_t *in = malloc(n ? n : 1);
            assert_non_null(in);
            randombytes_buf(in, n);
            size_t outsz = 4 * ((n + 2) / 3) + 1;
            char *enc = malloc(outsz);
            assert_non_null(enc);
            size_t k = b64url_encode(enc, in, n);
            assert_int_equal(k, (n * 4 + 2) / 3);
            assert_int_equal(strlen(enc), k);
            /* Same as libsodium's URL-safe variant without padding. */
            char ref[300];
            sodium_bin2base64(ref, sizeof ref, in, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
            assert_string_equal(enc, ref);
            uint8_t *dec = malloc(3 * k / 4 + 3);
            assert_non_null(dec);
            long d = b64url_decode(dec, enc, k);
            assert_int_equal(d, (long)n);
            if (n) assert_memory_equal(dec, in, n);
            free(dec);
            free(enc);
            free(in);
        }
    }
}

static void test_b64url_bad(void **state)
{
    (void)state;
    uint8_t out[64];
    const char *bad[] = {"Zm9v+A", "Zm9v/A",     "Zm9v=", "Zm8=",  "Zm 9v", "Zm9v\n",
                         "Zm9v.",  "\xc3\xa9Zm", "Z",     "Zm9vY", "AAAAA"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(b64url_decode(out, bad[i], strlen(bad[i])), -1);
    /* A NUL inside the given length is a bad character too. */
    assert_int_equal(b64url_decode(out, "Zm\0v", 4), -1);
    /* Only n bytes are read. */
    assert_int_equal(b64url_decode(out, "Zm9v!!!!", 4), 3);
    assert_memory_equal(out, "foo", 3);
    assert_int_equal(b64url_decode(out, "", 0), 0);
}

/* ---- UTF-8 ---- */

#define U(s) ((const uint8_t *)(s)), (sizeof(s) - 1)

static void test_utf8_valid_good(void **state)
{
    (void)state;
    assert_true(utf8_valid(U("")));
    assert_true(utf8_valid(U("hello, world")));
    assert_true(utf8_valid(U("a\0b"))); /* NUL is a valid code point */
    assert_true(utf8_valid(U("\x7f")));
    assert_true(utf8_valid(U("\xc2\x80")));         /* U+0080, smallest 2-byte */
    assert_true(utf8_valid(U("\xc3\xa9")));         /* U+00E9 */
    assert_true(utf8_valid(U("\xdf\xbf")));         /* U+07FF */
    assert_true(utf8_valid(U("\xe0\xa0\x80")));     /* U+0800, smallest 3-byte */
    assert_true(utf8_valid(U("\xe2\x82\xac")));     /* U+20AC */
    assert_true(utf8_valid(U("\xed\x9f\xbf")));     /* U+D7FF, below the surrogates */
    assert_true(utf8_valid(U("\xee\x80\x80")));     /* U+E000, above the surrogates */
    assert_true(utf8_valid(U("\xef\xbf\xbf")));     /* U+FFFF */
    assert_true(utf8_valid(U("\xf0\x90\x80\x80"))); /* U+10000, smallest 4-byte */
    assert_true(utf8_valid(U("\xf0\x9d\x84\x9e"))); /* U+1D11E */
    assert_true(utf8_valid(U("\xf4\x8f\xbf\xbf"))); /* U+10FFFF, the largest */
    assert_true(utf8_valid(U("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80!")));
}

static void test_utf8_valid_bad(void **state)
{
    (void)state;
    /* Overlongs. */
    assert_false(utf8_valid(U("\xc0\x80")));
    assert_false(utf8_valid(U("\xc0\xaf")));
    assert_false(utf8_valid(U("\xc1\xbf")));
    assert_false(utf8_valid(U("\xe0\x80\x80")));
    assert_false(utf8_valid(U("\xe0\x80\xaf")));
    assert_false(utf8_valid(U("\xe0\x9f\xbf")));
    assert_false(utf8_valid(U("\xf0\x80\x80\x80")));
    assert_false(utf8_valid(U("\xf0\x80\x80\xaf")));
    assert_false(utf8_valid(U("\xf0\x8f\xbf\xbf")));
    /* Surrogates, paired or not. */
    assert_false(utf8_valid(U("\xed\xa0\x80")));
    assert_false(utf8_valid(U("\xed\xad\xbf")));
    assert_false(utf8_valid(U("\xed\xb0\x80")));
    assert_false(utf8_valid(U("\xed\xbf\xbf")));
    assert_false(utf8_valid(U("\xed\xa0\xbd\xed\xb8\x80")));
    /* Above U+10FFFF. */
    assert_false(utf8_valid(U("\xf4\x90\x80\x80")));
    assert_false(utf8_valid(U("\xf5\x80\x80\x80")));
    assert_false(utf8_valid(U("\xf7\xbf\xbf\xbf")));
    assert_false(utf8_valid(U("\xf8\x88\x80\x80\x80")));
    assert_false(utf8_valid(U("\xfc\x84\x80\x80\x80\x80")));
    assert_false(utf8_valid(U("\xfe")));
    assert_false(utf8_valid(U("\xff")));
    /* Truncated sequences, at the end and before other characters. */
    assert_false(utf8_valid(U("\xc3")));
    assert_false(utf8_valid(U("\xe2\x82")));
    assert_false(utf8_valid(U("\xe2")));
    assert_false(utf8_valid(U("\xf0\x9f\x98")));
    assert_false(utf8_valid(U("\xf0\x9f")));
    assert_false(utf8_valid(U("\xf0")));
    assert_false(utf8_valid(U("abc\xc3")));
    assert_false(utf8_valid(U("\xc3"
                              "a")));
    assert_false(utf8_valid(U("\xe2\x82"
                              "a")));
    assert_false(utf8_valid(U("\xf0\x9f\x98"
                              "a")));
    /* Stray continuation bytes and bad continuations. */
    assert_false(utf8_valid(U("\x80")));
    assert_false(utf8_valid(U("\xbf")));
    assert_false(utf8_valid(U("a\x80"
                              "b")));
    assert_false(utf8_valid(U("\xc3\xa9\xa9")));
    assert_false(utf8_valid(U("\xc3\x28")));
    assert_false(utf8_valid(U("\xe2\x28\xa1")));
    assert_false(utf8_valid(U("\xe2\x82\x28")));
    assert_false(utf8_valid(U("\xf0\x28\x8c\xbc")));
    assert_false(utf8_valid(U("\xf0\x90\x28\xbc")));
    assert_false(utf8_valid(U("\xf0\x90\x8c\x28")));
    assert_false(utf8_valid(U("\xc3\xc3\xa9")));
    /* The length given is honoured: a valid prefix of a longer buffer. */
    assert_true(utf8_valid((const uint8_t *)"ab\xc3", 2));
    assert_false(utf8_valid((const uint8_t *)"\xe2\x82\xac", 2));
}

/* An independent reference: the well-formed byte sequences of Unicode Table 3-7. */
static bool ref_valid(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        uint8_t lo = 0x80, hi = 0xBF;
        size_t len;
        if (c <= 0x7F) {
            i++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            len = 2;
        } else if (c == 0xE0) {
            len = 3, lo = 0xA0;
        } else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) {
            len = 3;
        } else if (c == 0xED) {
            len = 3, hi = 0x9F;
        } else if (c == 0xF0) {
            len = 4, lo = 0x90;
        } else if (c >= 0xF1 && c <= 0xF3) {
            len = 4;
        } else if (c == 0xF4) {
            len = 4, hi = 0x8F;
        } else {
            return false;
        }
        if (n - i < len) return false;
        if (s[i + 1] < lo || s[i + 1] > hi) return false;
        for (size_t k = 2; k < len; k++)
            if (s[i + k] < 0x80 || s[i + k] > 0xBF) return false;
        i += len;
    }
    return true;
}

static void test_utf8_exhaustive(void **state)
{
    (void)state;
    uint8_t s[4];
    /* Every 1-, 2- and 3-byte string, and every 4-byte string with a lead of F0..F7 and any
     * second byte (the rest continuation bytes or not). */
    for (unsigned a = 0; a < 256; a++) {
        s[0] = (uint8_t)a;
        assert_int_equal(utf8_valid(s, 1), ref_valid(s, 1));
        for (unsigned b = 0; b < 256; b++) {
            s[1] = (uint8_t)b;
            assert_int_equal(utf8_valid(s, 2), ref_valid(s, 2));
            if (a < 0xC0) continue; /* invalid or ASCII leads: the 2-byte check covers them */
            for (unsigned c = 0; c < 256; c++) {
                s[2] = (uint8_t)c;
                if (utf8_valid(s, 3) != ref_valid(s, 3)) fail_msg("%02x %02x %02x", a, b, c);
            }
        }
    }
    const uint8_t tails[] = {0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xFF};
    for (unsigned a = 0xF0; a < 0xF8; a++)
        for (unsigned b = 0; b < 256; b++)
            for (size_t c = 0; c < sizeof tails; c++)
                for (size_t d = 0; d < sizeof tails; d++) {
                    s[0] = (uint8_t)a, s[1] = (uint8_t)b, s[2] = tails[c], s[3] = tails[d];
                    if (utf8_valid(s, 4) != ref_valid(s, 4))
                        fail_msg("%02x %02x %02x %02x", s[0], s[1], s[2], s[3]);
                }
}

static void test_utf8_len(void **state)
{
    (void)state;
    assert_int_equal(utf8_len(U("")), 0);
    assert_int_equal(utf8_len(U("abc")), 3);
    assert_int_equal(utf8_len(U("\xc3\xa9")), 1);
    assert_int_equal(utf8_len(U("\xe2\x82\xac")), 1);
    assert_int_equal(utf8_len(U("\xf0\x9d\x84\x9e")), 1);
    assert_int_equal(utf8_len(U("a\xc3\xa9\xe2\x82\xac\xf0\x9d\x84\x9e"
                                "z")),
                     5);
    assert_int_equal(utf8_len(U("a\0b")), 3);
    assert_int_equal(utf8_len((const uint8_t *)"\xc3\xa9\xc3\xa9", 2), 1);
}

static void test_ascii_ieq(void **state)
{
    (void)state;
    assert_true(ascii_ieq("HeLLo", "hello", 5));
    assert_true(ascii_ieq("WEBSOCKET", "websocket", 9));
    assert_true(ascii_ieq("abc", "abd", 2));
    assert_true(ascii_ieq("x", "y", 0));
    assert_false(ascii_ieq("abc", "abd", 3));
    /* Only letters fold: '@' is not '`', '[' is not '{'. */
    assert_false(ascii_ieq("@", "`", 1));
    assert_false(ascii_ieq("[", "{", 1));
    assert_false(ascii_ieq("\xc3\x89", "\xc3\xa9", 2));
    assert_true(ascii_ieq("Content-Length", "content-length", 14));
}

/* ---- jsonx ---- */

static json_t *nest(int levels, bool objects)
{
    json_t *v = json_integer(1);
    for (int i = 0; i < levels; i++) {
        json_t *c = objects ? json_object() : json_array();
        if (objects)
            json_object_set_new(c, "k", v);
        else
            json_array_append_new(c, v);
        v = c;
    }
    return v;
}

static void test_jsonx_depth(void **state)
{
    (void)state;
    json_t *scalar = json_string("x");
    assert_true(jsonx_depth_ok(scalar, 0));
    assert_true(jsonx_depth_ok(scalar, 1));
    json_decref(scalar);
    assert_true(jsonx_depth_ok(json_null(), 0));

    json_t *empty = json_array();
    assert_false(jsonx_depth_ok(empty, 0));
    assert_true(jsonx_depth_ok(empty, 1));
    json_decref(empty);

    for (int d = 1; d <= 40; d++) {
        for (int o = 0; o < 2; o++) {
            json_t *v = nest(d, o);
            assert_true(jsonx_depth_ok(v, d));
            assert_true(jsonx_depth_ok(v, d + 5));
            assert_false(jsonx_depth_ok(v, d - 1));
            assert_false(jsonx_depth_ok(v, 0));
            json_decref(v);
        }
    }

    /* Mixed nesting, the deepest branch not first. */
    json_error_t e;
    json_t *m = json_loads("{\"a\":1,\"b\":[1,2,{\"c\":[]}],\"d\":{}}", 0, &e);
    assert_non_null(m);
    assert_true(jsonx_depth_ok(m, 4));
    assert_false(jsonx_depth_ok(m, 3));
    json_decref(m);
    m = json_loads("[[], [[[]]], {}]", 0, &e);
    assert_non_null(m);
    assert_true(jsonx_depth_ok(m, 4));
    assert_false(jsonx_depth_ok(m, 3));
    json_decref(m);

    /* Very deep values (built by hand, past the parser's own limit) are refused, not crashed. */
    json_t *deep = nest(5000, false);
    assert_false(jsonx_depth_ok(deep, 32));
    assert_true(jsonx_depth_ok(deep, 5000));
    json_decref(deep);
}

/* ---- jsonx_append_str ---- */

static char *quoted(const char *s, size_t n)
{
    buf_t b;
    buf_init(&b);
    jsonx_append_str(&b, s, n);
    buf_append(&b, "", 1);
    return (char *)b.data;
}

static void test_jsonx_append_str(void **state)
{
    (void)state;
    /* Valid UTF-8 comes out exactly as jansson writes it. */
    const char *cases[] = {"",
                           "abc",
                           "a\"b",
                           "back\\slash",
                           "tab\there\nline\r\b\f",
                           "\x01\x1f\x7f",
                           "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
                           "</script>",
                           "\xe2\x80\xa8"};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *mine = quoted(cases[i], strlen(cases[i]));
        json_t *str = json_string(cases[i]);
        char *theirs = json_dumps(str, JSON_ENCODE_ANY | JSON_COMPACT);
        assert_string_equal(mine, theirs);
        free(mine);
        free(theirs);
        json_decref(str);
    }
    /* A NUL inside the bytes is escaped, not a terminator. */
    char *q = quoted("a\0b", 3);
    assert_string_equal(q, "\"a\\u0000b\"");
    free(q);
    /* Bytes that are not UTF-8 become U+FFFD, one per byte, and the rest survives. */
    q = quoted("x\xff\xc3y\xed\xa0\x80z\xf0\x9f", 10);
    json_error_t e;
    json_t *v = json_loads(q, JSON_DECODE_ANY, &e);
    assert_non_null(v);
    assert_string_equal(json_string_value(v),
                        "x\xef\xbf\xbd\xef\xbf\xbdy\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbdz"
                        "\xef\xbf\xbd\xef\xbf\xbd");
    json_decref(v);
    free(q);
    /* Whatever the bytes, the result is one valid JSON string. */
    uint8_t raw[64];
    for (int round = 0; round < 2000; round++) {
        size_t n = (size_t)(round % 64);
        randombytes_buf(raw, n);
        q = quoted((const char *)raw, n);
        v = json_loads(q, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
        if (!v) print_error("not JSON: %s (%s)\n", q, e.text);
        assert_true(json_is_string(v));
        json_decref(v);
        free(q);
    }
}

int main(void)
{
    if (sodium_init() < 0) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clocks),         cmocka_unit_test(test_id_new),
        cmocka_unit_test(test_id_valid),       cmocka_unit_test(test_conv_direct_id),
        cmocka_unit_test(test_b64url_vectors), cmocka_unit_test(test_b64url_roundtrip),
        cmocka_unit_test(test_b64url_bad),     cmocka_unit_test(test_utf8_valid_good),
        cmocka_unit_test(test_utf8_valid_bad), cmocka_unit_test(test_utf8_exhaustive),
        cmocka_unit_test(test_utf8_len),       cmocka_unit_test(test_ascii_ieq),
        cmocka_unit_test(test_jsonx_depth),    cmocka_unit_test(test_jsonx_append_str),
    };
    return cmocka_run_group_tests_name("util", tests, NULL, NULL);
}
