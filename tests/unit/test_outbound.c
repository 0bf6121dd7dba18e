/* test_outbound.c: unit tests for the msg frames of pipeline/outbound.c (msg_frame): the body is
 * spliced in as stored, the other fields escaped, and the frame is always valid JSON with the
 * fields docs/protocol.md lists, in that order. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "server/pipeline/pipeline.h"

static st_msg sample(void)
{
    st_msg m;
    memset(&m, 0, sizeof m);
    snprintf(m.conv, sizeof m.conv, "p_abcdefghijklmnopqrstuvwx");
    m.seq = 42;
    snprintf(m.from, sizeof m.from, "u_AAAAAAAAAAAAAAAA");
    snprintf(m.dev, sizeof m.dev, "d_BBBBBBBBBBBBBBBB");
    snprintf(m.cmid, sizeof m.cmid, "c1");
    m.ts = 1767225600123;
    snprintf(m.kind, sizeof m.kind, "text");
    return m;
}

static json_t *parse(const char *f)
{
    json_error_t e;
    json_t *o = json_loads(f, JSON_REJECT_DUPLICATES, &e);
    if (!o) print_error("not JSON (%s): %s\n", e.text, f);
    assert_non_null(o);
    return o;
}

static void test_plain(void **state)
{
    (void)state;
    st_msg m = sample();
    m.body = "{\"text\":\"hi \\\"bob\\\" \\u00e9\",\"n\":[1,2.5,null,true]}";
    char *f = msg_frame(7, &m);
    assert_non_null(f);
    /* The body is the stored text, byte for byte. */
    assert_string_equal(f,
                        "{\"type\":\"msg\",\"pos\":7,\"conv\":\"p_abcdefghijklmnopqrstuvwx\","
                        "\"seq\":42,\"from\":\"u_AAAAAAAAAAAAAAAA\",\"dev\":\"d_BBBBBBBBBBBBBBBB\","
                        "\"cmid\":\"c1\",\"ts\":1767225600123,\"kind\":\"text\",\"body\":{\"text\":"
                        "\"hi \\\"bob\\\" \\u00e9\",\"n\":[1,2.5,null,true]}}");
    json_t *o = parse(f);
    assert_string_equal(json_string_value(json_object_get(json_object_get(o, "body"), "text")),
                        "hi \"bob\" \xc3\xa9");
    assert_null(json_object_get(o, "reply_to"));
    assert_null(json_object_get(o, "edited_at"));
    json_decref(o);
    free(f);
}

static void test_optional_fields(void **state)
{
    (void)state;
    st_msg m = sample();
    m.body = NULL; /* no body: {} */
    m.reply_to = 3;
    m.edited_at = 1767225600999;
    char *f = msg_frame(1, &m);
    json_t *o = parse(f);
    const char *order[] = {"type", "pos", "conv", "seq",  "from",     "dev",
                           "cmid", "ts",  "kind", "body", "reply_to", "edited_at"};
    size_t i = 0;
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v)
    {
        assert_true(i < sizeof order / sizeof order[0]);
        assert_string_equal(k, order[i]);
        i++;
    }
    assert_int_equal(i, sizeof order / sizeof order[0]);
    assert_true(json_is_object(json_object_get(o, "body")));
    assert_int_equal(json_object_size(json_object_get(o, "body")), 0);
    assert_int_equal(json_integer_value(json_object_get(o, "reply_to")), 3);
    assert_int_equal(json_integer_value(json_object_get(o, "edited_at")), 1767225600999);
    json_decref(o);
    free(f);
}

static void test_hostile_strings(void **state)
{
    (void)state;
    /* cmid comes from a client: quotes, backslashes, control characters, bytes that are not
     * UTF-8. The frame stays valid JSON and the value survives (bad bytes as U+FFFD). */
    st_msg m = sample();
    snprintf(m.cmid, sizeof m.cmid, "a\"b\\c\n\x01},\"x\":\"\xff");
    snprintf(m.kind, sizeof m.kind, "te\"xt");
    m.body = "\"just a string\"";
    char *f = msg_frame(9, &m);
    json_t *o = parse(f);
    assert_string_equal(json_string_value(json_object_get(o, "cmid")),
                        "a\"b\\c\n\x01},\"x\":\"\xef\xbf\xbd");
    assert_string_equal(json_string_value(json_object_get(o, "kind")), "te\"xt");
    assert_null(json_object_get(o, "x"));
    assert_string_equal(json_string_value(json_object_get(o, "body")), "just a string");
    json_decref(o);
    free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain),
        cmocka_unit_test(test_optional_fields),
        cmocka_unit_test(test_hostile_strings),
    };
    return cmocka_run_group_tests_name("outbound", tests, NULL, NULL);
}
