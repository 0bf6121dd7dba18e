/* test_sync.c: an offline receiver catches up with paged syncs, then goes live with no gap;
 * messages arriving mid-sync are neither lost nor doubled; reconnecting resumes. */
#include "lib/tassert.h"

#include <stdio.h>
#include <stdlib.h>

#define N_OFFLINE 250

TSRV_FIXTURE(srv)
#define PORT (srv.port)

/* n messages sent by one device, with what the acks said. */
typedef struct sent {
    int n;
    char **cmids, **texts;
    json_t **acks;
    int64_t seq0; /* lowest seq */
} sent;

static void sent_free(sent *s)
{
    for (int i = 0; i < s->n; i++) {
        free(s->cmids[i]);
        free(s->texts[i]);
        json_decref(s->acks[i]);
    }
    free(s->cmids);
    free(s->texts);
    free(s->acks);
}

/* Sends n messages pipelined (at most window unanswered) and checks their acks: one conversation,
 * seqs exactly seq0 .. seq0+n-1, each once. */
static void send_many(tws *ws, const char *to, int n, const char *tag, sent *s, int window)
{
    s->n = n;
    s->cmids = calloc((size_t)n, sizeof(char *));
    s->texts = calloc((size_t)n, sizeof(char *));
    s->acks = calloc((size_t)n, sizeof(json_t *));
    for (int i = 0; i < n; i++) {
        char b[64];
        snprintf(b, sizeof b, "%s-%d", tag, i);
        s->cmids[i] = strdup(b);
        snprintf(b, sizeof b, "text of %s number %d", tag, i);
        s->texts[i] = strdup(b);
    }
    assert_int_equal(tws_send_batch(ws, to, n, s->cmids, s->texts, s->acks, window), 0);
    int64_t lo = INT64_MAX;
    for (int i = 0; i < n; i++) {
        assert_non_null(s->acks[i]);
        assert_string_equal(tj_str(s->acks[i], "conv"), tj_str(s->acks[0], "conv"));
        if (tj_int(s->acks[i], "seq") < lo) lo = tj_int(s->acks[i], "seq");
    }
    char *seen = calloc((size_t)n, 1);
    for (int i = 0; i < n; i++) {
        int64_t k = tj_int(s->acks[i], "seq") - lo;
        assert_in_range(k, 0, n - 1);
        assert_int_equal(seen[k], 0);
        seen[k] = 1;
    }
    free(seen);
    s->seq0 = lo;
}

/* The sent index of a seq. */
static int by_seq(const sent *s, int64_t seq)
{
    for (int i = 0; i < s->n; i++)
        if (tj_int(s->acks[i], "seq") == seq) return i;
    return -1;
}

/* msgs[from..from+count) are exactly s's messages in seq order at consecutive positions
 * starting at pos0, from sender (uid, dev). */
static void check_run(json_t *msgs, size_t from, const sent *s, int64_t pos0, const char *uid,
                      const char *dev)
{
    for (int i = 0; i < s->n; i++) {
        json_t *m = json_array_get(msgs, from + (size_t)i);
        assert_non_null(m);
        if (tj_int(m, "pos") != pos0 + i || tj_int(m, "seq") != s->seq0 + i)
            t_note("entry %d: want pos %lld seq %lld, got %s", i, (long long)(pos0 + i),
                   (long long)(s->seq0 + i), tj_dump(m));
        assert_int_equal(tj_int(m, "pos"), pos0 + i);
        assert_int_equal(tj_int(m, "seq"), s->seq0 + i);
        int k = by_seq(s, s->seq0 + i);
        assert_true(k >= 0);
        assert_string_equal(tj_str(m, "conv"), tj_str(s->acks[k], "conv"));
        assert_string_equal(tj_str(m, "cmid"), s->cmids[k]);
        assert_string_equal(tj_str(m, "body.text"), s->texts[k]);
        assert_string_equal(tj_str(m, "kind"), "text");
        assert_string_equal(tj_str(m, "from"), uid);
        assert_string_equal(tj_str(m, "dev"), dev);
        assert_int_equal(tj_int(m, "ts"), tj_int(s->acks[k], "ts"));
    }
}

/* One sync page that must hold `want` messages and say `more`. */
static int64_t page(tws *ws, int64_t after, int limit, json_t *msgs, size_t want, bool more)
{
    size_t before = json_array_size(msgs);
    json_t *sy = tws_sync_page(ws, after, limit, msgs);
    assert_non_null(sy);
    assert_true(tj_keys(sy, "type,id,upto,more"));
    size_t got = json_array_size(msgs) - before;
    if (got != want || tj_bool(sy, "more") != more)
        t_note("sync after %lld limit %d: want %zu msgs more=%d, got %zu and %s", (long long)after,
               limit, want, more, got, tj_dump(sy));
    assert_int_equal(got, want);
    assert_int_equal(tj_bool(sy, "more"), more);
    int64_t upto = tj_int(sy, "upto");
    assert_int_equal(upto,
                     want ? tj_int(json_array_get(msgs, json_array_size(msgs) - 1), "pos") : after);
    json_decref(sy);
    return upto;
}

T_TEST(test_offline_then_sync_then_live)
{
    tuser a, b;
    assert_int_equal(tuser_new(PORT, "sender", &a), 201);
    assert_int_equal(tuser_new(PORT, "offline", &b), 201);
    tws *wa = tws_live(PORT, &a, "a");
    assert_non_null(wa);
    sent s;
    send_many(wa, b.id, N_OFFLINE, "off", &s, 50);
    char conv[ID_MAX];
    conv_direct_id(conv, a.id, b.id);
    assert_string_equal(tj_str(s.acks[0], "conv"), conv);

    /* b comes online: ready.head is its newest position; pages of 100, 100, 50. */
    int64_t head;
    tws *wb = tws_auth(PORT, b.token, &head);
    assert_non_null(wb);
    snprintf(wb->label, sizeof wb->label, "b");
    assert_true(head >= N_OFFLINE);
    json_t *msgs = json_array();
    int64_t upto = page(wb, 0, 100, msgs, 100, true);
    upto = page(wb, upto, 100, msgs, 100, true);
    upto = page(wb, upto, 100, msgs, 50, false);
    assert_int_equal(upto, head);
    /* All 250 in order, positions consecutive and ending at head, nothing twice. */
    check_run(msgs, 0, &s, head - N_OFFLINE + 1, a.id, a.device);
    json_decref(msgs);

    /* Live now: new messages arrive at head+1, head+2, ... with no gap. */
    for (int i = 0; i < 5; i++) {
        char cmid[32], text[32];
        snprintf(cmid, sizeof cmid, "live-%d", i);
        snprintf(text, sizeof text, "live %d", i);
        json_t *ack = tws_send_msg(wa, b.id, cmid, text);
        assert_non_null(ack);
        assert_int_equal(tj_int(ack, "seq"), s.seq0 + N_OFFLINE + i);
        json_t *m = tws_expect_type(wb, "msg", 0);
        assert_non_null(m);
        assert_int_equal(tj_int(m, "pos"), head + 1 + i);
        assert_int_equal(tj_int(m, "seq"), tj_int(ack, "seq"));
        assert_string_equal(tj_str(m, "cmid"), cmid);
        assert_string_equal(tj_str(m, "body.text"), text);
        json_decref(m);
        json_decref(ack);
    }
    assert_true(tws_silent(wb, 300));

    /* The sender's inbox holds its own messages too: a new device of a syncs them all in one
     * page of up to 500. */
    tuser a2;
    assert_int_equal(tuser_login(PORT, a.username, a.password, &a2), 200);
    int64_t ahead;
    tws *wa2 = tws_auth(PORT, a2.token, &ahead);
    assert_non_null(wa2);
    msgs = json_array();
    upto = page(wa2, 0, 500, msgs, N_OFFLINE + 5, false);
    assert_int_equal(upto, ahead);
    check_run(msgs, 0, &s, ahead - N_OFFLINE - 5 + 1, a.id, a.device);
    json_decref(msgs);

    /* Without a limit a page is 100. */
    msgs = json_array();
    page(wa2, 0, 0, msgs, 100, true);
    json_decref(msgs);
    /* limit out of range (1..500) is invalid_request, and the socket stays usable. */
    assert_int_equal(tws_sendp(wa2, "{s:s, s:s, s:i, s:i}", "type", "sync", "id", "bad0", "after",
                               0, "limit", 0),
                     0);
    assert_ws_error(wa2, "bad0", "invalid_request");
    assert_int_equal(tws_sendp(wa2, "{s:s, s:s, s:i, s:i}", "type", "sync", "id", "bad501", "after",
                               0, "limit", 501),
                     0);
    assert_ws_error(wa2, "bad501", "invalid_request");
    assert_int_equal(
        tws_sendp(wa2, "{s:s, s:s, s:s}", "type", "sync", "id", "badafter", "after", "zero"), 0);
    assert_ws_error(wa2, "badafter", "invalid_request");
    assert_ws_alive(wa2);

    sent_free(&s);
    tws_free(wa);
    tws_free(wa2);
    tws_free(wb);
}

T_TEST(test_message_during_sync)
{
    tuser a, b;
    assert_int_equal(tuser_new(PORT, "busy", &a), 201);
    assert_int_equal(tuser_new(PORT, "syncer", &b), 201);
    tws *wa = tws_live(PORT, &a, "a");
    assert_non_null(wa);
    sent s;
    send_many(wa, b.id, N_OFFLINE, "pre", &s, 50);

    int64_t head;
    tws *wb = tws_auth(PORT, b.token, &head);
    assert_non_null(wb);
    snprintf(wb->label, sizeof wb->label, "b");
    json_t *msgs = json_array();
    int64_t upto = page(wb, 0, 100, msgs, 100, true);

    /* While b is mid-sync (more was true), a message is committed. */
    json_t *mid = tws_send_msg(wa, b.id, "mid-sync", "sent while b syncs");
    assert_non_null(mid);
    assert_int_equal(tj_int(mid, "seq"), s.seq0 + N_OFFLINE);

    /* b continues until more is false; live frames are held back meanwhile, so the frames
     * it reads are only msg and synced. */
    int pages = 0;
    assert_int_equal(tws_sync_all(wb, upto, 100, msgs, &upto, &pages), 0);
    size_t n = json_array_size(msgs);
    /* The mid-sync message is in the pages or arrives live right after, exactly once. */
    int in_sync = 0;
    for (size_t i = 0; i < n; i++)
        if (strcmp(tj_str(json_array_get(msgs, i), "cmid"), "mid-sync") == 0) in_sync++;
    assert_in_range(in_sync, 0, 1);
    check_run(msgs, 0, &s, head - N_OFFLINE + 1, a.id, a.device);
    if (in_sync) {
        assert_int_equal(n, N_OFFLINE + 1);
        assert_string_equal(tj_str(msgs, "250.cmid"), "mid-sync");
        assert_int_equal(tj_int(msgs, "250.pos"), head + 1);
        assert_int_equal(upto, head + 1);
    } else {
        assert_int_equal(n, N_OFFLINE);
        assert_int_equal(upto, head);
        json_t *m = tws_expect_type(wb, "msg", 0);
        assert_non_null(m);
        assert_string_equal(tj_str(m, "cmid"), "mid-sync");
        assert_int_equal(tj_int(m, "pos"), head + 1);
        json_decref(m);
    }
    json_decref(msgs);

    /* Then the next one, live, at head + 2, and nothing else (no second copy). */
    json_t *after = tws_send_msg(wa, b.id, "after-sync", "after");
    assert_non_null(after);
    json_t *m = tws_expect_type(wb, "msg", 0);
    assert_non_null(m);
    assert_string_equal(tj_str(m, "cmid"), "after-sync");
    assert_int_equal(tj_int(m, "pos"), head + 2);
    assert_int_equal(tj_int(m, "seq"), tj_int(mid, "seq") + 1);
    json_decref(m);
    assert_true(tws_silent(wb, 300));

    json_decref(mid);
    json_decref(after);
    sent_free(&s);
    tws_free(wa);
    tws_free(wb);
}

T_TEST(test_reconnect_resumes)
{
    tuser a, b;
    assert_int_equal(tuser_new(PORT, "talker", &a), 201);
    assert_int_equal(tuser_new(PORT, "flaky", &b), 201);
    tws *wa = tws_live(PORT, &a, "a");
    tws *wb = tws_live(PORT, &b, "b");
    assert_non_null(wa);
    assert_non_null(wb);
    sent s1;
    send_many(wa, b.id, 10, "one", &s1, 50);
    int64_t last = 0;
    for (int i = 0; i < 10; i++) {
        json_t *m = tws_expect_type(wb, "msg", 0);
        assert_non_null(m);
        assert_int_equal(tj_int(m, "seq"), s1.seq0 + i);
        if (last) assert_int_equal(tj_int(m, "pos"), last + 1);
        last = tj_int(m, "pos");
        json_decref(m);
    }
    /* recv has no answer: the next frame after recv + ping is the pong. The sender hears of
     * it: a receipt with b's delivered marker at the newest seq. */
    assert_int_equal(tws_sendp(wb, "{s:s, s:I}", "type", "recv", "upto", (json_int_t)last), 0);
    assert_ws_alive(wb);
    json_t *rc = tws_expect_type(wa, "receipt", 0);
    assert_non_null(rc);
    assert_string_equal(tj_str(rc, "conv"), tj_str(s1.acks[0], "conv"));
    assert_string_equal(tj_str(rc, "user"), b.id);
    assert_int_equal(tj_int(rc, "delivered"), s1.seq0 + 9);
    json_decref(rc);
    assert_true(tws_silent(wa, 100));
    tws_free(wb);

    /* While b is away, 10 more; on reconnect head moved by 10 and a sync from the last
     * position b held returns exactly those. */
    sent s2;
    send_many(wa, b.id, 10, "two", &s2, 50);
    assert_int_equal(s2.seq0, s1.seq0 + 10);
    int64_t head;
    wb = tws_auth(PORT, b.token, &head);
    assert_non_null(wb);
    assert_int_equal(head, last + 10);
    json_t *msgs = json_array();
    int64_t upto = page(wb, last, 0, msgs, 10, false);
    assert_int_equal(upto, head);
    check_run(msgs, 0, &s2, last + 1, a.id, a.device);
    json_decref(msgs);
    assert_true(tws_silent(wb, 200));
    sent_free(&s1);
    sent_free(&s2);
    tws_free(wa);
    tws_free(wb);
}

/* A sender far ahead of the disk: 3,000 sends written without waiting for a single ack. The
 * server stops reading the socket while 256 of its frames wait in the pipeline and reads on as
 * they are answered; every message is acked once and reaches the receiver once, in order. */
T_TEST(test_sender_ahead_of_disk)
{
    enum { N = 3000 };
    assert_int_equal(tsrv_stop(&srv), 0);
    tsrv_cleanup(&srv);
    assert_int_equal(
        tsrv_start(&srv, NULL, "--pwhash", "min", "--rate_msgs", "1000000", "--log_level", "debug"),
        0);
    tuser a, b;
    assert_int_equal(tuser_new(PORT, "fast", &a), 201);
    assert_int_equal(tuser_new(PORT, "reader", &b), 201);
    tws *wa = tws_live(PORT, &a, "a");
    assert_non_null(wa);
    sent s;
    send_many(wa, b.id, N, "ahead", &s, N);

    int64_t head;
    tws *wb = tws_auth(PORT, b.token, &head);
    assert_non_null(wb);
    assert_true(head >= N);
    json_t *msgs = json_array();
    int64_t upto;
    assert_int_equal(tws_sync_all(wb, 0, 500, msgs, &upto, NULL), 0);
    assert_int_equal(upto, head);
    assert_int_equal(json_array_size(msgs), head);
    check_run(msgs, json_array_size(msgs) - N, &s, head - N + 1, a.id, a.device);
    json_decref(msgs);

    /* The pause happened (reading stopped at 256 waiting) and reading came back. */
    FILE *f = fopen(srv.log_path, "r");
    assert_non_null(f);
    char line[512];
    int paused = 0;
    while (fgets(line, sizeof line, f))
        if (strstr(line, "frames wait in the pipeline: reading paused")) paused++;
    fclose(f);
    if (paused == 0) t_note("no pause logged in %s", srv.log_path);
    assert_true(paused > 0);
    assert_ws_alive(wa);
    sent_free(&s);
    tws_free(wa);
    tws_free(wb);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    /* Presence and typing are not what this file tests; they may come any time. */
    tws_default_ignore = "presence,typing";
    const struct CMUnitTest tests[] = {
        T(test_offline_then_sync_then_live),
        T(test_message_during_sync),
        T(test_reconnect_resumes),
        T(test_sender_ahead_of_disk),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
