/* test_crash.c: kill -9 in the middle of a pipelined burst, twice. Every acked message must
 * survive the crash; resending the unacked ones with their cmids must make every message exist
 * exactly once, with the acks of the already-stored ones unchanged. */
#include "lib/tassert.h"

#include <stdio.h>
#include <stdlib.h>

#define N          3000
#define KILL_AFTER 300

static tsrv srv;

static int setup(void **state)
{
    (void)state;
    /* A high rate limit so the sender really pipelines the whole burst. */
    return tsrv_start(&srv, NULL, "--pwhash", "min", "--rate-msgs", "100000") == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    t_after_test();
    int rc = tsrv_stop(&srv);
    tsrv_cleanup(&srv);
    assert_int_equal(rc, 0);
    return 0;
}

typedef struct burst_t {
    char *cmids[N], *texts[N];
    json_t *acks[N]; /* the ack of each message once one arrived */
    char conv[ID_MAX];
} burst_t;

static int idx_of(const char *id)
{
    return id[0] == 'k' ? atoi(id + 1) : -1;
}

/* Pipelines a send of every message not acked yet (all queued at once), collects acks, and
 * SIGKILLs the server once kill_after new acks arrived (0: never). After a kill, reads
 * everything the server wrote before it died (those acks count: the server wrote them after
 * committing). Returns the number of new acks. */
static int burst(tws *ws, const char *to, burst_t *b, int kill_after)
{
    int queued = 0;
    for (int i = 0; i < N; i++) {
        if (b->acks[i]) continue;
        char id[16];
        snprintf(id, sizeof id, "k%d", i);
        json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:s, s:{s:s}}", "type", "send", "id", id, "to",
                              to, "cmid", b->cmids[i], "kind", "text", "body", "text", b->texts[i]);
        tws_queue_json(ws, j);
        json_decref(j);
        queued++;
    }
    int got = 0, at_kill = -1;
    long long last = mono_ms();
    while (got < queued) {
        tws_pump(&ws, 1, 100);
        tws_msg m;
        int r;
        while ((r = tws_next(ws, &m)) == 1) {
            json_t *j = m.opcode == WS_TEXT ? json_loadb((char *)m.data, m.len, 0, NULL) : NULL;
            if (j && tws_hold_side(ws, j)) {
                tws_msg_free(&m);
                continue;
            }
            int i = idx_of(tj_str(j, "id"));
            if (m.opcode == WS_CLOSE && at_kill < 0)
                t_note("burst: closed %d \"%s\" before the kill", m.close_code, (char *)m.data);
            else if (m.opcode != WS_CLOSE &&
                     (i < 0 || i >= N || strcmp(tj_str(j, "type"), "ack") != 0 || b->acks[i])) {
                t_note("burst: unexpected frame %.300s", (char *)m.data);
                fail();
            } else if (j) {
                assert_string_equal(tj_str(j, "conv"), b->conv);
                b->acks[i] = j;
                j = NULL;
                got++;
                last = mono_ms();
            }
            json_decref(j);
            tws_msg_free(&m);
        }
        assert_true(r == 0);
        if (kill_after && at_kill < 0 && got >= kill_after) {
            assert_int_equal(tsrv_kill9(&srv), 0);
            at_kill = got;
        }
        if (ws->eof) break;
        if (mono_ms() - last > 20000) {
            t_note("burst: no ack for 20 s (%d of %d)", got, queued);
            fail();
        }
    }
    if (kill_after) {
        assert_true(at_kill >= 0); /* the kill happened before the burst was through */
        t_note("crash: %d sends pipelined, %d acks before SIGKILL, %d more read after it, %d "
               "unanswered",
               queued, at_kill, got - at_kill, queued - got);
    }
    return got;
}

/* Syncs b's whole inbox from 0 (pages of 500) and returns, per message index, its msg frame
 * (borrowed from *all); checks positions are consecutive and no cmid appears twice. */
static void sync_inbox(const tuser *rcv, const burst_t *b, json_t **all, json_t **by_idx,
                       size_t *count)
{
    int64_t head;
    tws *ws = tws_auth(srv.port, rcv->token, &head);
    assert_non_null(ws);
    *all = json_array();
    int64_t upto;
    assert_int_equal(tws_sync_all(ws, 0, 500, *all, &upto, NULL), 0);
    assert_int_equal(upto, head);
    memset(by_idx, 0, sizeof(json_t *) * N);
    size_t n = json_array_size(*all);
    for (size_t k = 0; k < n; k++) {
        json_t *m = json_array_get(*all, k);
        if (k) assert_int_equal(tj_int(m, "pos"), tj_int(json_array_get(*all, k - 1), "pos") + 1);
        const char *cmid = tj_str(m, "cmid");
        int i = strncmp(cmid, "crash-", 6) == 0 ? atoi(cmid + 6) : -1;
        assert_in_range(i, 0, N - 1);
        if (by_idx[i]) t_note("cmid %s is in the inbox twice: %s", cmid, tj_dump(m));
        assert_null(by_idx[i]);
        by_idx[i] = m;
        assert_string_equal(tj_str(m, "conv"), b->conv);
        assert_string_equal(tj_str(m, "body.text"), b->texts[i]);
    }
    *count = n;
    tws_free(ws);
}

/* Every acked message is in the inbox with the acked seq and ts. */
static void check_acked_present(const burst_t *b, json_t **by_idx)
{
    int acked = 0;
    for (int i = 0; i < N; i++) {
        if (!b->acks[i]) continue;
        acked++;
        if (!by_idx[i])
            t_note("acked message %s (%s) lost in the crash", b->cmids[i], tj_dump(b->acks[i]));
        assert_non_null(by_idx[i]);
        assert_int_equal(tj_int(by_idx[i], "seq"), tj_int(b->acks[i], "seq"));
        assert_int_equal(tj_int(by_idx[i], "ts"), tj_int(b->acks[i], "ts"));
    }
    t_note("crash: all %d acked messages survived", acked);
}

T_TEST(test_kill9_mid_burst)
{
    tuser a, r;
    assert_int_equal(tuser_new(srv.port, "burster", &a), 201);
    assert_int_equal(tuser_new(srv.port, "receiver", &r), 201);
    burst_t *b = calloc(1, sizeof *b);
    conv_direct_id(b->conv, a.id, r.id);
    for (int i = 0; i < N; i++) {
        char s[64];
        snprintf(s, sizeof s, "crash-%d", i);
        b->cmids[i] = strdup(s);
        snprintf(s, sizeof s, "burst message %d", i);
        b->texts[i] = strdup(s);
    }
    json_t *all, **by_idx = calloc(N, sizeof(json_t *));
    size_t count;

    /* Round 1: the whole burst pipelined, kill -9 after KILL_AFTER acks. */
    tws *ws = tws_live(srv.port, &a, "a");
    assert_non_null(ws);
    int acked1 = burst(ws, r.id, b, KILL_AFTER);
    tws_free(ws);
    assert_true(acked1 >= KILL_AFTER);
    assert_int_equal(tsrv_restart(&srv), 0);
    sync_inbox(&r, b, &all, by_idx, &count);
    assert_true(count >= (size_t)acked1);
    check_acked_present(b, by_idx);
    json_decref(all);
    json_t *first[N];
    for (int i = 0; i < N; i++) first[i] = json_incref(b->acks[i]);

    /* Round 2: resend everything unacked with the same cmids, and crash again mid-way. */
    ws = tws_live(srv.port, &a, "a2");
    assert_non_null(ws);
    burst(ws, r.id, b, KILL_AFTER);
    tws_free(ws);
    assert_int_equal(tsrv_restart(&srv), 0);
    sync_inbox(&r, b, &all, by_idx, &count);
    check_acked_present(b, by_idx);
    json_decref(all);

    /* Round 3: resend the rest, no crash; every send is answered. */
    ws = tws_live(srv.port, &a, "a3");
    assert_non_null(ws);
    burst(ws, r.id, b, 0);
    for (int i = 0; i < N; i++) assert_non_null(b->acks[i]);
    /* Resending already-acked messages returns their first acks, unchanged by the crashes. */
    for (int i = 0; i < N; i += 37) {
        json_t *again = tws_send_msg(ws, r.id, b->cmids[i], b->texts[i]);
        assert_non_null(again);
        assert_string_equal(tj_str(again, "conv"), tj_str(b->acks[i], "conv"));
        assert_int_equal(tj_int(again, "seq"), tj_int(b->acks[i], "seq"));
        assert_int_equal(tj_int(again, "ts"), tj_int(b->acks[i], "ts"));
        json_decref(again);
    }
    tws_free(ws);
    for (int i = 0; i < N; i++) {
        if (!first[i]) continue;
        assert_int_equal(tj_int(first[i], "seq"), tj_int(b->acks[i], "seq"));
        json_decref(first[i]);
    }

    /* Exactly once: N messages, seqs one run without gaps, each matching its ack. */
    sync_inbox(&r, b, &all, by_idx, &count);
    assert_int_equal(count, N);
    check_acked_present(b, by_idx);
    int64_t lo = INT64_MAX;
    for (int i = 0; i < N; i++)
        if (tj_int(b->acks[i], "seq") < lo) lo = tj_int(b->acks[i], "seq");
    for (size_t k = 0; k < count; k++)
        assert_int_equal(tj_int(json_array_get(all, k), "seq"), lo + (int64_t)k);
    json_decref(all);

    /* The sender's own inbox agrees. */
    tuser a2;
    assert_int_equal(tuser_login(srv.port, a.username, a.password, &a2), 200);
    sync_inbox(&a2, b, &all, by_idx, &count);
    assert_int_equal(count, N);
    json_decref(all);

    for (int i = 0; i < N; i++) {
        free(b->cmids[i]);
        free(b->texts[i]);
        json_decref(b->acks[i]);
    }
    free(b);
    free(by_idx);
}

int main(void)
{
    /* Presence and typing are not what this file tests; they may come any time. */
    tws_default_ignore = "presence,typing";
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_kill9_mid_burst, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
