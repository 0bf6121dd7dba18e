/* test_messages.c: live message exchange between users with several devices, acks, echoes to
 * the sender's other devices, seq numbering and cmid de-duplication. */
#include "lib/tassert.h"

#include <stdio.h>
#include <stdlib.h>

TSRV_FIXTURE(srv)
#define PORT (srv.port)

/* Checks an ack: exact keys, the id, the conversation; returns its seq. */
static int64_t check_ack(json_t *ack, const char *conv, int64_t t0)
{
    assert_non_null(ack);
    assert_true(tj_keys(ack, "type,id,conv,seq,ts"));
    assert_string_equal(tj_str(ack, "conv"), conv);
    assert_true(tj_int(ack, "seq") >= 1);
    assert_in_range(tj_int(ack, "ts"), t0 - 2000, now_ms() + 2000);
    return tj_int(ack, "seq");
}

/* Reads the next frame, which must be the msg of (conv, seq) from user/dev with cmid and a text
 * body; returns its pos. */
static int64_t expect_text_msg(tws *ws, json_t *ack, const char *from, const char *dev,
                               const char *cmid, const char *text)
{
    json_t *m = tws_expect_type(ws, "msg", 0);
    assert_non_null(m);
    if (strcmp(tj_str(m, "cmid"), cmid) != 0 || tj_int(m, "seq") != tj_int(ack, "seq"))
        t_note("ws[%s]: want msg cmid %s seq %lld, got %s", ws->label, cmid,
               (long long)tj_int(ack, "seq"), tj_dump(m));
    bool has_reply = json_object_get(m, "reply_to") != NULL;
    assert_true(tj_keys(m, has_reply ? "type,pos,conv,seq,from,dev,cmid,ts,kind,body,reply_to"
                                     : "type,pos,conv,seq,from,dev,cmid,ts,kind,body"));
    assert_false(has_reply); /* sent without reply_to */
    assert_string_equal(tj_str(m, "conv"), tj_str(ack, "conv"));
    assert_int_equal(tj_int(m, "seq"), tj_int(ack, "seq"));
    assert_int_equal(tj_int(m, "ts"), tj_int(ack, "ts"));
    assert_string_equal(tj_str(m, "from"), from);
    assert_string_equal(tj_str(m, "dev"), dev);
    assert_string_equal(tj_str(m, "cmid"), cmid);
    assert_string_equal(tj_str(m, "kind"), "text");
    assert_true(tj_keys(tj_get(m, "body"), "text"));
    assert_string_equal(tj_str(m, "body.text"), text);
    int64_t pos = tj_int(m, "pos");
    assert_true(pos >= 1);
    json_decref(m);
    return pos;
}

/* Next pos of a user's inbox as seen by one device: the first one seen, then +1 each. */
static void step_pos(int64_t *last, int64_t got)
{
    if (*last > 0) assert_int_equal(got, *last + 1);
    *last = got;
}

T_TEST(test_exchange_both_ways)
{
    tuser a1, a2, b1, b2;
    assert_int_equal(tuser_new(PORT, "alice", &a1), 201);
    assert_int_equal(tuser_login(PORT, a1.username, a1.password, &a2), 200);
    assert_int_equal(tuser_new(PORT, "bob", &b1), 201);
    assert_int_equal(tuser_login(PORT, b1.username, b1.password, &b2), 200);
    tws *wa1 = tws_live(PORT, &a1, "a1"), *wa2 = tws_live(PORT, &a2, "a2");
    tws *wb1 = tws_live(PORT, &b1, "b1"), *wb2 = tws_live(PORT, &b2, "b2");
    assert_non_null(wa1);
    assert_non_null(wa2);
    assert_non_null(wb1);
    assert_non_null(wb2);
    char conv[ID_MAX];
    conv_direct_id(conv, a1.id, b1.id);

    int64_t seq = 0, posA = 0, posB = 0;
    for (int i = 0; i < 24; i++) {
        /* A->B then B->A, from alternating devices of each. */
        bool from_a = i % 2 == 0;
        bool first_dev = (i / 2) % 2 == 0;
        tuser *su = from_a ? (first_dev ? &a1 : &a2) : (first_dev ? &b1 : &b2);
        tws *sws = from_a ? (first_dev ? wa1 : wa2) : (first_dev ? wb1 : wb2);
        tws *other = from_a ? (first_dev ? wa2 : wa1) : (first_dev ? wb2 : wb1);
        tws *r1 = from_a ? wb1 : wa1, *r2 = from_a ? wb2 : wa2;
        int64_t *spos = from_a ? &posA : &posB, *rpos = from_a ? &posB : &posA;
        const char *to = from_a ? b1.id : a1.id;
        char cmid[32], text[64];
        t_id(cmid, sizeof cmid, "x");
        snprintf(text, sizeof text, "message %d from %s \xe2\x9c\x93", i, from_a ? "A" : "B");

        int64_t t0 = now_ms();
        json_t *ack = tws_send_msg(sws, to, cmid, text);
        int64_t s = check_ack(ack, conv, t0);
        if (seq) assert_int_equal(s, seq + 1); /* +1 per message, whoever sends */
        seq = s;
        /* Both recipient devices get it once; the sender's other device gets it; positions
         * move by one in each user's inbox. */
        int64_t p1 = expect_text_msg(r1, ack, su->id, su->device, cmid, text);
        int64_t p2 = expect_text_msg(r2, ack, su->id, su->device, cmid, text);
        assert_int_equal(p1, p2);
        step_pos(rpos, p1);
        step_pos(spos, expect_text_msg(other, ack, su->id, su->device, cmid, text));
        json_decref(ack);
        /* The sending device gets nothing but the ack: the next frame it reads in the loop is
         * a msg from the other user (checked by expect_text_msg), or silence at the end. */
    }
    /* No duplicates or stray frames anywhere. */
    assert_true(tws_silent(wa1, 300));
    assert_true(tws_silent(wa2, 50));
    assert_true(tws_silent(wb1, 50));
    assert_true(tws_silent(wb2, 50));

    /* reply_to is carried; other kinds carry their body object. */
    char cmid[32];
    t_id(cmid, sizeof cmid, "r");
    assert_int_equal(tws_sendp(wa1, "{s:s, s:s, s:s, s:s, s:s, s:{s:s}, s:I}", "type", "send", "id",
                               "rep1", "to", b1.id, "cmid", cmid, "kind", "text", "body", "text",
                               "a reply", "reply_to", (json_int_t)1),
                     0);
    json_t *ack = tws_expect_reply(wa1, "ack", "rep1", 0);
    assert_non_null(ack);
    assert_int_equal(tj_int(ack, "seq"), seq + 1);
    tws *rcv[3] = {wb1, wb2, wa2};
    json_t *m;
    for (int i = 0; i < 3; i++) {
        m = tws_expect_type(rcv[i], "msg", 0);
        assert_non_null(m);
        assert_int_equal(tj_int(m, "seq"), seq + 1);
        assert_int_equal(tj_int(m, "reply_to"), 1);
        assert_string_equal(tj_str(m, "body.text"), "a reply");
        json_decref(m);
    }
    json_decref(ack);
    t_id(cmid, sizeof cmid, "st");
    assert_int_equal(tws_sendp(wb2, "{s:s, s:s, s:s, s:s, s:s, s:{s:s, s:i}}", "type", "send", "id",
                               "stk1", "to", a1.id, "cmid", cmid, "kind", "sticker", "body", "pack",
                               "cats", "n", 7),
                     0);
    ack = tws_expect_reply(wb2, "ack", "stk1", 0);
    assert_non_null(ack);
    assert_int_equal(tj_int(ack, "seq"), seq + 2);
    json_decref(ack);
    tws *rcv2[3] = {wa1, wa2, wb1};
    for (int i = 0; i < 3; i++) {
        m = tws_expect_type(rcv2[i], "msg", 0);
        assert_non_null(m);
        assert_int_equal(tj_int(m, "seq"), seq + 2);
        assert_string_equal(tj_str(m, "kind"), "sticker");
        assert_true(tj_keys(tj_get(m, "body"), "pack,n"));
        assert_string_equal(tj_str(m, "body.pack"), "cats");
        assert_int_equal(tj_int(m, "body.n"), 7);
        assert_null(json_object_get(m, "reply_to"));
        json_decref(m);
    }
    assert_true(tws_silent(wb2, 200));

    tws_free(wa1);
    tws_free(wa2);
    tws_free(wb1);
    tws_free(wb2);
}

T_TEST(test_send_to_self)
{
    tuser a1, a2, b;
    assert_int_equal(tuser_new(PORT, "solo", &a1), 201);
    assert_int_equal(tuser_login(PORT, a1.username, a1.password, &a2), 200);
    assert_int_equal(tuser_new(PORT, "friend", &b), 201);
    tws *w1 = tws_live(PORT, &a1, "a1"), *w2 = tws_live(PORT, &a2, "a2");
    tws *wb = tws_live(PORT, &b, "b");
    assert_non_null(w1);
    assert_non_null(w2);
    assert_non_null(wb);
    char self_conv[ID_MAX];
    conv_direct_id(self_conv, a1.id, a1.id);
    json_t *ack = tws_send_msg(w1, a1.id, "note-1", "note to self");
    check_ack(ack, self_conv, now_ms() - 10000);
    int64_t p = expect_text_msg(w2, ack, a1.id, a1.device, "note-1", "note to self");
    json_decref(ack);
    /* One inbox entry, not two: the next thing both devices see is b's message at p + 1. */
    json_t *back = tws_send_msg(wb, a1.id, "hi-1", "hi");
    assert_non_null(back);
    assert_int_equal(expect_text_msg(w2, back, b.id, b.device, "hi-1", "hi"), p + 1);
    assert_int_equal(expect_text_msg(w1, back, b.id, b.device, "hi-1", "hi"), p + 1);
    json_decref(back);
    assert_true(tws_silent(w1, 200));
    assert_true(tws_silent(w2, 50));
    tws_free(w1);
    tws_free(w2);
    tws_free(wb);
}

static json_t *send_with_id(tws *ws, const char *id, const char *to, const char *cmid,
                            const char *text)
{
    assert_int_equal(tws_send_textmsg(ws, id, to, cmid, text), 0);
    json_t *ack = tws_expect_reply(ws, "ack", id, 0);
    assert_non_null(ack);
    return ack;
}

/* The next frame is a msg with this cmid. */
static void expect_cmid(tws *ws, const char *cmid)
{
    json_t *m = tws_expect_type(ws, "msg", 0);
    assert_non_null(m);
    assert_string_equal(tj_str(m, "cmid"), cmid);
    json_decref(m);
}

static void assert_same_ack(json_t *a, json_t *b)
{
    if (strcmp(tj_str(a, "conv"), tj_str(b, "conv")) != 0 || tj_int(a, "seq") != tj_int(b, "seq") ||
        tj_int(a, "ts") != tj_int(b, "ts"))
        t_note("acks differ: %s", tj_dump(a));
    if (strcmp(tj_str(a, "conv"), tj_str(b, "conv")) != 0 || tj_int(a, "seq") != tj_int(b, "seq") ||
        tj_int(a, "ts") != tj_int(b, "ts"))
        t_note("     versus: %s", tj_dump(b));
    assert_string_equal(tj_str(a, "conv"), tj_str(b, "conv"));
    assert_int_equal(tj_int(a, "seq"), tj_int(b, "seq"));
    assert_int_equal(tj_int(a, "ts"), tj_int(b, "ts"));
}

T_TEST(test_cmid_dedup)
{
    tuser a, a2, b;
    assert_int_equal(tuser_new(PORT, "dedupa", &a), 201);
    assert_int_equal(tuser_login(PORT, a.username, a.password, &a2), 200);
    assert_int_equal(tuser_new(PORT, "dedupb", &b), 201);
    tws *wa = tws_live(PORT, &a, "a"), *wb = tws_live(PORT, &b, "b");
    tws *wa2 = tws_live(PORT, &a2, "a2");
    assert_non_null(wa);
    assert_non_null(wb);
    assert_non_null(wa2);

    /* Sent, acked, sent again with the same cmid: the same ack, one message. */
    json_t *ack1 = send_with_id(wa, "d1", b.id, "same-cmid", "first text");
    int64_t pos = expect_text_msg(wb, ack1, a.id, a.device, "same-cmid", "first text");
    expect_cmid(wa2, "same-cmid");
    json_t *ack2 = send_with_id(wa, "d2", b.id, "same-cmid", "first text");
    assert_same_ack(ack1, ack2);
    /* Even with another text: the cmid decides. */
    json_t *ack3 = send_with_id(wa, "d3", b.id, "same-cmid", "different text");
    assert_same_ack(ack1, ack3);

    /* The next new message is seq + 1 and the next frame b and a2 see. */
    json_t *m1 = send_with_id(wa, "d4", b.id, "marker-1", "marker");
    assert_int_equal(tj_int(m1, "seq"), tj_int(ack1, "seq") + 1);
    assert_int_equal(expect_text_msg(wb, m1, a.id, a.device, "marker-1", "marker"), pos + 1);
    expect_cmid(wa2, "marker-1");

    /* Two sends with one cmid pipelined without waiting: two identical acks, one message. */
    assert_int_equal(tws_send_textmsg(wa, "p1", b.id, "piped-cmid", "piped"), 0);
    assert_int_equal(tws_send_textmsg(wa, "p2", b.id, "piped-cmid", "piped"), 0);
    json_t *pa = tws_expect_reply(wa, "ack", "p1", 0);
    json_t *pb = tws_expect_reply(wa, "ack", "p2", 0);
    assert_non_null(pa);
    assert_non_null(pb);
    assert_same_ack(pa, pb);
    assert_int_equal(tj_int(pa, "seq"), tj_int(m1, "seq") + 1);
    assert_int_equal(expect_text_msg(wb, pa, a.id, a.device, "piped-cmid", "piped"), pos + 2);
    expect_cmid(wa2, "piped-cmid");

    /* After reconnecting the same device: still the first ack. */
    tws_free(wa);
    wa = tws_live(PORT, &a, "a-again");
    assert_non_null(wa);
    json_t *ack4 = send_with_id(wa, "d5", b.id, "same-cmid", "first text");
    assert_same_ack(ack1, ack4);
    json_t *ack5 = send_with_id(wa, "d6", b.id, "piped-cmid", "piped");
    assert_same_ack(pa, ack5);

    /* Another device of the same user with the same cmid is a different message (the cmid is
     * per device). */
    json_t *other = send_with_id(wa2, "d7", b.id, "same-cmid", "from a2");
    assert_int_equal(tj_int(other, "seq"), tj_int(pa, "seq") + 1);
    assert_int_equal(expect_text_msg(wb, other, a.id, a2.device, "same-cmid", "from a2"), pos + 3);
    int64_t p_a = expect_text_msg(wa, other, a.id, a2.device, "same-cmid", "from a2");
    (void)p_a;

    /* Nothing else arrived at b: no message per resend. */
    assert_true(tws_silent(wb, 300));
    assert_true(tws_silent(wa, 50));
    assert_true(tws_silent(wa2, 50));

    /* b's full inbox from 0 holds each message once. */
    json_t *msgs = json_array();
    int64_t upto;
    assert_int_equal(tws_sync_all(wb, 0, 0, msgs, &upto, NULL), 0);
    assert_int_equal(json_array_size(msgs), 4);
    assert_string_equal(tj_str(msgs, "0.cmid"), "same-cmid");
    assert_string_equal(tj_str(msgs, "0.body.text"), "first text");
    assert_string_equal(tj_str(msgs, "1.cmid"), "marker-1");
    assert_string_equal(tj_str(msgs, "2.cmid"), "piped-cmid");
    assert_string_equal(tj_str(msgs, "3.cmid"), "same-cmid");
    assert_string_equal(tj_str(msgs, "3.dev"), a2.device);
    json_decref(msgs);

    json_decref(ack1);
    json_decref(ack2);
    json_decref(ack3);
    json_decref(ack4);
    json_decref(ack5);
    json_decref(m1);
    json_decref(pa);
    json_decref(pb);
    json_decref(other);
    tws_free(wa);
    tws_free(wb);
    tws_free(wa2);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    /* Presence and typing are not what this file tests; they may come any time. */
    tws_default_ignore = "presence,typing";
    const struct CMUnitTest tests[] = {
        T(test_exchange_both_ways),
        T(test_send_to_self),
        T(test_cmid_dedup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
