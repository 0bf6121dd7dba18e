/* test_slow.c: slow consumers and reconnects, over real sockets against a real parleyd.
 *
 * 1. A receiver that stops reading its socket while thousands of messages are sent to it must not
 *    make the server hold them all in memory (send_queue_max bounds each socket; the rest stays in
 *    the store), must not slow anyone else down, and must get every entry exactly once, in pos
 *    order with no gap, once it reads again (the server catches it up from the store by itself).
 * 2. A receiver that drops its connection in the middle of a burst (no close frame), reconnects
 *    with the same token and syncs from the last pos it saw ends with every message; repeats, if
 *    any, are dropped by (conv, seq) as the protocol asks of clients, and counted.
 * 3. A receiver that stopped reading must not hold up the server's clean stop (SIGTERM, exit 0,
 *    docs/operations.md), and what was acked is in the store after a restart.
 *
 * The server runs with --send-queue-max 65536 (so a stalled socket goes "not live" early) and
 * --rate-msgs 100000 (so the bursts are not throttled). The server's RSS is read from
 * /proc/PID/status. Under ASan, freed memory sits in a quarantine (256 MiB by default) before it is
 * reused, which would make RSS track the total allocated rather than what is live; setup gives the
 * server a small quarantine (see SERVER_QUARANTINE_MB) so RSS measures what the server keeps. */
#include "lib/tassert.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <unistd.h>

static tsrv srv;
#define PORT (srv.port)

#define SERVER_QUARANTINE_MB "8"

/* Slow consumer: the burst, the size of each text, the RSS bound and the latency bound.
 *
 * The sizes are chosen so that the RSS check can fail. On loopback the kernel takes about 4 MiB
 * of unread data into the server's socket send buffer (tcp_wmem max) and ~120 KiB into the
 * receiver's before anything waits in the server's own memory, so 5,000 texts of 1 KiB (5.5 MiB)
 * would leave only ~1.5 MiB for the server to hold: measured under ASan, a server run with
 * --send-queue-max 1073741824 (queueing without bound) then grew by ~5 MiB, as much as the noise,
 * and far below a 64 MiB bound. With 4 KiB texts (~21 MiB unread), the unbounded server grew by
 * ~38 MiB and parleyd with --send-queue-max 65536 by 0.3 to 2.2 MiB (after the warm-up burst
 * below; without it SQLite's caches add ~18 MiB in either case), so 16 MiB separates the two. */
#define SLOW_N         5000
#define SLOW_TEXT      4096
#define RSS_BOUND_KB   (16L * 1024)
#define LATENCY_MAX_MS 2000
/* Shutdown with a stalled reader: enough unread data to fill the kernel's buffers (~4 MiB). */
#define STOP_N    1500
#define STOP_TEXT 4096
/* Reconnect: the burst and its text size. */
#define RECON_N    2000
#define RECON_TEXT 512

static int setup(void **state)
{
    (void)state;
    /* The server inherits the environment: a small ASan quarantine for it (ignored without
     * ASan). The test process keeps its own options (ASan reads them at start only). */
    const char *old = getenv("ASAN_OPTIONS");
    char opts[1024];
    snprintf(opts, sizeof opts, "%s%squarantine_size_mb=%s", old ? old : "", old && *old ? ":" : "",
             SERVER_QUARANTINE_MB);
    setenv("ASAN_OPTIONS", opts, 1);
    int rc = tsrv_start(&srv, NULL, "--pwhash", "min", "--send-queue-max", "65536", "--rate-msgs",
                        "100000");
    if (old)
        setenv("ASAN_OPTIONS", old, 1);
    else
        unsetenv("ASAN_OPTIONS");
    return rc == 0 ? 0 : -1;
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

/* VmRSS of a process in KiB, or -1. */
static long rss_kb(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1) break;
    fclose(f);
    return kb;
}

/* n messages: cmids, texts of about len bytes each, and the acks once sent. */
typedef struct burst {
    tws *ws;
    const char *to;
    int n, window;
    char **cmids, **texts;
    json_t **acks;
    int rc;
    atomic_bool done;
    int64_t ms; /* how long the batch took */
} burst;

/* On the heap: if an assertion fails while the sending thread runs, the test body is left
 * with a longjmp, and the thread must not be left with a dangling burst. */
static burst *burst_new(tws *ws, const char *to, int n, size_t len, const char *tag)
{
    burst *b = calloc(1, sizeof *b);
    assert_non_null(b);
    b->ws = ws;
    b->to = to;
    b->n = n;
    b->window = 64;
    b->cmids = calloc((size_t)n, sizeof *b->cmids);
    b->texts = calloc((size_t)n, sizeof *b->texts);
    b->acks = calloc((size_t)n, sizeof *b->acks);
    assert_non_null(b->cmids);
    assert_non_null(b->texts);
    assert_non_null(b->acks);
    for (int i = 0; i < n; i++) {
        char c[48];
        snprintf(c, sizeof c, "%s-%d", tag, i);
        b->cmids[i] = strdup(c);
        b->texts[i] = malloc(len + 1);
        int k = snprintf(b->texts[i], len + 1, "%s message %d ", tag, i);
        for (size_t j = (size_t)k; j < len; j++) b->texts[i][j] = (char)('a' + (i + (int)j) % 26);
        b->texts[i][len] = 0;
    }
    atomic_init(&b->done, false);
    return b;
}

static void burst_free(burst *b)
{
    for (int i = 0; i < b->n; i++) {
        free(b->cmids[i]);
        free(b->texts[i]);
        json_decref(b->acks[i]);
    }
    free(b->cmids);
    free(b->texts);
    free(b->acks);
    free(b);
}

/* The sending thread: no cmocka assertions here (they jump out of the test body). */
static void *burst_main(void *arg)
{
    burst *b = arg;
    int64_t t0 = mono_ms();
    b->rc = tws_send_batch(b->ws, b->to, b->n, b->cmids, b->texts, b->acks, b->window);
    b->ms = mono_ms() - t0;
    atomic_store(&b->done, true);
    return NULL;
}

/* After the batch: every ack is in conv, with seqs exactly 1..n, and acks[i] has seq i + 1 (one
 * socket, sent in order, nothing rate limited: the pipeline keeps the order). */
static void check_acks(const burst *b, const char *conv)
{
    assert_int_equal(b->rc, 0);
    for (int i = 0; i < b->n; i++) {
        assert_non_null(b->acks[i]);
        assert_string_equal(tj_str(b->acks[i], "conv"), conv);
        if (tj_int(b->acks[i], "seq") != i + 1)
            t_note("ack %d: want seq %d, got %s", i, i + 1, tj_dump(b->acks[i]));
        assert_int_equal(tj_int(b->acks[i], "seq"), i + 1);
    }
}

/* Checks one msg frame of the burst b in conv: seq in 1..n, cmid, text and sender. Returns the
 * seq. */
static int64_t check_burst_msg(json_t *m, const burst *b, const char *conv, const tuser *from)
{
    int64_t seq = tj_int(m, "seq");
    if (strcmp(tj_str(m, "conv"), conv) != 0 || seq < 1 || seq > b->n)
        t_note("unexpected entry %.300s", tj_dump(m));
    assert_string_equal(tj_str(m, "conv"), conv);
    assert_in_range(seq, 1, b->n);
    assert_string_equal(tj_str(m, "cmid"), b->cmids[seq - 1]);
    assert_string_equal(tj_str(m, "body.text"), b->texts[seq - 1]);
    assert_string_equal(tj_str(m, "from"), from->id);
    assert_string_equal(tj_str(m, "dev"), from->device);
    return seq;
}

/* One round trip of the bystanders: from sends to `to`'s user, the ack and the delivery to `to`
 * are timed. Returns the larger of the two in ms, or -1 (with a note) when the ack or the msg
 * did not come or was wrong. Asserts nothing: it runs while the sending thread does. */
static int64_t bystander_round(tws *from, tws *to, const tuser *to_user, int i)
{
    char cmid[32], text[64];
    snprintf(cmid, sizeof cmid, "by-%d", i);
    snprintf(text, sizeof text, "bystander message %d", i);
    int64_t t0 = mono_ms();
    json_t *ack = tws_send_msg(from, to_user->id, cmid, text);
    int64_t ack_ms = mono_ms() - t0;
    json_t *m = ack ? tws_expect_type(to, "msg", LATENCY_MAX_MS * 2) : NULL;
    int64_t msg_ms = mono_ms() - t0;
    bool ok = m && strcmp(tj_str(m, "cmid"), cmid) == 0 && tj_int(m, "seq") == tj_int(ack, "seq");
    if (!ok) t_note("bystander round %d: ack %s, msg %s", i, tj_dump(ack), tj_dump(m));
    json_decref(m);
    json_decref(ack);
    if (!ok) return -1;
    return ack_ms > msg_ms ? ack_ms : msg_ms;
}

T_TEST(test_slow_consumer_bounded_and_caught_up)
{
    tuser s, r, p, q;
    assert_int_equal(tuser_new(PORT, "slowsnd", &s), 201);
    assert_int_equal(tuser_new(PORT, "slowrcv", &r), 201);
    assert_int_equal(tuser_new(PORT, "byp", &p), 201);
    assert_int_equal(tuser_new(PORT, "byq", &q), 201);
    tws *ws = tws_live(PORT, &s, "sender"), *wr = tws_live(PORT, &r, "receiver");
    tws *wp = tws_live(PORT, &p, "p"), *wq = tws_live(PORT, &q, "q");
    assert_non_null(ws);
    assert_non_null(wr);
    assert_non_null(wp);
    assert_non_null(wq);
    char conv[ID_MAX];
    conv_direct_id(conv, s.id, r.id);

    /* Warm-up: the same burst to a receiver that reads it, so the server's caches (SQLite pages,
     * allocator arenas) have grown to what such a burst needs before the baseline is taken. */
    tuser w;
    assert_int_equal(tuser_new(PORT, "warmrcv", &w), 201);
    tws *ww = tws_live(PORT, &w, "warm");
    assert_non_null(ww);
    char wconv[ID_MAX];
    conv_direct_id(wconv, s.id, w.id);
    burst *warm = burst_new(ws, w.id, SLOW_N, SLOW_TEXT, "warm");
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, burst_main, warm), 0);
    for (int i = 0; i < SLOW_N; i++) {
        json_t *m = tws_expect_type(ww, "msg", 10000);
        assert_non_null(m);
        assert_int_equal(tj_int(m, "pos"), i + 1);
        json_decref(m);
    }
    assert_int_equal(pthread_join(th, NULL), 0);
    check_acks(warm, wconv);
    burst_free(warm);
    tws_free(ww);
    for (int i = 0; i < 10; i++)
        assert_true(bystander_round(i % 2 ? wq : wp, i % 2 ? wp : wq, i % 2 ? &p : &q, 1000 + i) >=
                    0);
    long rss0 = rss_kb(srv.pid);
    assert_true(rss0 > 0);

    /* From here on the receiver's socket is not read until the burst is over. */
    burst *b = burst_new(ws, r.id, SLOW_N, SLOW_TEXT, "slow");
    assert_int_equal(pthread_create(&th, NULL, burst_main, b), 0);
    long rss_max = rss0;
    int64_t worst = 0;
    int rounds = 0, failed_rounds = 0;
    while (!atomic_load(&b->done)) {
        int64_t ms = bystander_round(rounds % 2 ? wq : wp, rounds % 2 ? wp : wq,
                                     rounds % 2 ? &p : &q, rounds);
        if (ms < 0) failed_rounds++;
        if (ms > worst) worst = ms;
        long kb = rss_kb(srv.pid);
        if (kb > rss_max) rss_max = kb;
        rounds++;
        t_sleep_ms(20); /* pacing only */
    }
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(failed_rounds, 0);
    check_acks(b, conv);
    /* The last deliveries of the burst may still be on their way to the (full) socket. */
    for (int i = 0; i < 5; i++) {
        int64_t ms = bystander_round(wp, wq, &q, 100000 + i);
        assert_true(ms >= 0);
        if (ms > worst) worst = ms;
        long kb = rss_kb(srv.pid);
        if (kb > rss_max) rss_max = kb;
    }
    int unread = 0;
    ioctl(wr->fd, FIONREAD, &unread);
    printf("# slow consumer: %d messages of %d bytes in %lld ms; %d bystander rounds, worst %lld "
           "ms; server RSS %ld KiB before, %ld KiB at most (+%ld KiB); receiver's kernel buffer "
           "holds %d bytes\n",
           SLOW_N, SLOW_TEXT, (long long)b->ms, rounds, (long long)worst, rss0, rss_max,
           rss_max - rss0, unread);
    fflush(stdout);
    assert_true(rounds >= 1);
    if (worst > LATENCY_MAX_MS) t_note("a bystander round took %lld ms", (long long)worst);
    assert_true(worst <= LATENCY_MAX_MS);
    if (rss_max - rss0 >= RSS_BOUND_KB)
        t_note("server RSS grew by %ld KiB (bound %ld KiB)", rss_max - rss0, RSS_BOUND_KB);
    assert_true(rss_max - rss0 < RSS_BOUND_KB);

    /* The receiver reads again: every entry once, pos 1, 2, 3, ... (its inbox holds nothing
     * else), seq in send order, caught up by the server without a sync request. */
    int64_t t0 = mono_ms();
    for (int i = 0; i < SLOW_N; i++) {
        json_t *m = tws_expect_type(wr, "msg", 10000);
        if (!m) t_note("receiver: stopped after %d of %d entries", i, SLOW_N);
        assert_non_null(m);
        if (tj_int(m, "pos") != i + 1) t_note("entry %d: %.200s", i, tj_dump(m));
        assert_int_equal(tj_int(m, "pos"), i + 1);
        assert_int_equal(check_burst_msg(m, b, conv, &s), i + 1);
        json_decref(m);
    }
    printf("# slow consumer: caught up with %d entries in %lld ms after reading again\n", SLOW_N,
           (long long)(mono_ms() - t0));
    fflush(stdout);
    /* Nothing more (no repeats), and the receiver is live again: the next message is pushed. */
    assert_true(tws_silent(wr, 500));
    json_t *ack = tws_send_msg(ws, r.id, "after-the-burst", "are you with us again?");
    assert_non_null(ack);
    assert_int_equal(tj_int(ack, "seq"), SLOW_N + 1);
    json_t *m = tws_expect_type(wr, "msg", LATENCY_MAX_MS);
    assert_non_null(m);
    assert_int_equal(tj_int(m, "pos"), SLOW_N + 1);
    assert_string_equal(tj_str(m, "cmid"), "after-the-burst");
    json_decref(m);
    json_decref(ack);
    assert_true(tws_silent(wr, 200));

    burst_free(b);
    tws_free(ws);
    tws_free(wr);
    tws_free(wp);
    tws_free(wq);
}

/* Reads the next msg of the burst on ws: its pos must follow *pos; counts its seq in seen.
 * Returns the seq. */
static int64_t read_next(tws *ws, const burst *b, const char *conv, const tuser *from, int64_t *pos,
                         int *seen)
{
    json_t *m = tws_expect_type(ws, "msg", 10000);
    assert_non_null(m);
    if (tj_int(m, "pos") != *pos + 1)
        t_note("ws[%s]: want pos %lld, got %.200s", ws->label, (long long)(*pos + 1), tj_dump(m));
    assert_int_equal(tj_int(m, "pos"), *pos + 1);
    *pos = tj_int(m, "pos");
    int64_t seq = check_burst_msg(m, b, conv, from);
    seen[seq]++;
    json_decref(m);
    return seq;
}

T_TEST(test_reconnect_mid_burst)
{
    tuser s, r;
    assert_int_equal(tuser_new(PORT, "recsnd", &s), 201);
    assert_int_equal(tuser_new(PORT, "recrcv", &r), 201);
    tws *ws = tws_live(PORT, &s, "sender"), *wr = tws_live(PORT, &r, "receiver-1");
    assert_non_null(ws);
    assert_non_null(wr);
    char conv[ID_MAX];
    conv_direct_id(conv, s.id, r.id);

    burst *b = burst_new(ws, r.id, RECON_N, RECON_TEXT, "rec");
    int *seen = calloc(RECON_N + 1, sizeof *seen);
    assert_non_null(seen);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, burst_main, b), 0);

    /* Each connection reads live up to a drop point, then drops the TCP connection (no close
     * frame, unread bytes left behind); the same device reconnects with the same token and syncs
     * from the last pos it saw. The first drop comes while the sender is still sending (it reads
     * while the burst is under way); by the second the sender may be done. In every connection
     * the entries follow each other in pos order with no gap. */
    const int drops[] = {RECON_N / 2, RECON_N * 3 / 4};
    const int ndrops = (int)(sizeof drops / sizeof drops[0]);
    int64_t pos = 0;
    int received = 0, live = 0;
    char report[512] = "";
    size_t rl = 0;
    for (int d = 0; d < ndrops; d++) {
        while (received < drops[d]) {
            read_next(wr, b, conv, &s, &pos, seen);
            received++;
            live++;
        }
        bool sending = !atomic_load(&b->done);
        tws_free(wr);

        int64_t head = 0;
        wr = tws_auth(PORT, r.token, &head);
        assert_non_null(wr);
        snprintf(wr->label, sizeof wr->label, "receiver-%d", d + 2);
        assert_true(head >= pos);
        json_t *msgs = json_array();
        int64_t upto = 0;
        int pages = 0;
        assert_int_equal(tws_sync_all(wr, pos, 0, msgs, &upto, &pages), 0);
        size_t synced = json_array_size(msgs);
        for (size_t i = 0; i < synced; i++) {
            json_t *m = json_array_get(msgs, i);
            assert_int_equal(tj_int(m, "pos"), pos + 1);
            pos = tj_int(m, "pos");
            seen[check_burst_msg(m, b, conv, &s)]++;
            received++;
        }
        assert_int_equal(pos, upto);
        json_decref(msgs);
        rl += (size_t)snprintf(report + rl, sizeof report - rl,
                               "; dropped after %d (sender %s), synced %zu in %d pages", drops[d],
                               sending ? "still sending" : "done", synced, pages);
    }
    /* The last connection is live: the rest until every seq has been seen. */
    int missing = 0;
    for (int k = 1; k <= RECON_N; k++) missing += seen[k] == 0;
    while (missing > 0) {
        int64_t seq = read_next(wr, b, conv, &s, &pos, seen);
        if (seen[seq] == 1) missing--;
        received++;
        live++;
    }
    assert_int_equal(pthread_join(th, NULL), 0);
    check_acks(b, conv);
    assert_true(tws_silent(wr, 300));
    int repeats = 0;
    for (int k = 1; k <= RECON_N; k++) {
        assert_true(seen[k] >= 1);
        repeats += seen[k] - 1;
    }
    assert_int_equal(received, RECON_N + repeats);
    printf("# reconnect: %d messages, %d received live%s; %d repeats dropped by (conv, seq), "
           "none missing\n",
           RECON_N, live, report, repeats);
    fflush(stdout);
    free(seen);
    burst_free(b);
    tws_free(ws);
    tws_free(wr);
}

/* docs/operations.md: SIGTERM stops the server cleanly (WebSockets closed with 1001, the
 * pipeline drained) and it exits 0. A client that stopped reading must not be able to hold that
 * up: its socket cannot take the close frame, so the server has to give up on it after a bounded
 * linger. Acked messages are in the store whatever happens to the socket: after a restart the
 * receiver syncs every one of them. */
T_TEST(test_shutdown_with_stalled_reader)
{
    tuser s, r;
    assert_int_equal(tuser_new(PORT, "stopsnd", &s), 201);
    assert_int_equal(tuser_new(PORT, "stoprcv", &r), 201);
    tws *ws = tws_live(PORT, &s, "sender"), *wr = tws_live(PORT, &r, "receiver");
    assert_non_null(ws);
    assert_non_null(wr);
    char conv[ID_MAX];
    conv_direct_id(conv, s.id, r.id);
    burst *b = burst_new(ws, r.id, STOP_N, STOP_TEXT, "stop");
    burst_main(b); /* on this thread: the receiver is not read meanwhile either */
    check_acks(b, conv);

    /* The receiver is still connected and still not reading. */
    int64_t t0 = mono_ms();
    int rc = tsrv_stop(&srv);
    int64_t stop_ms = mono_ms() - t0;
    printf("# shutdown with a stalled reader (%d unread messages of %d bytes): exit status %d "
           "after %lld ms\n",
           STOP_N, STOP_TEXT, rc, (long long)stop_ms);
    fflush(stdout);
    tws_free(wr);
    tws_free(ws);

    /* Nothing acked is lost: the receiver's inbox holds the burst, once, in order. */
    assert_int_equal(tsrv_restart(&srv), 0);
    int64_t head = 0;
    wr = tws_auth(PORT, r.token, &head);
    assert_non_null(wr);
    assert_int_equal(head, STOP_N);
    json_t *msgs = json_array();
    assert_int_equal(tws_sync_all(wr, 0, 0, msgs, NULL, NULL), 0);
    assert_int_equal(json_array_size(msgs), STOP_N);
    for (int i = 0; i < STOP_N; i++) {
        json_t *m = json_array_get(msgs, (size_t)i);
        assert_int_equal(tj_int(m, "pos"), i + 1);
        assert_int_equal(check_burst_msg(m, b, conv, &s), i + 1);
    }
    json_decref(msgs);
    tws_free(wr);
    burst_free(b);

    if (rc != 0)
        t_note("SIGTERM with a connected client that does not read: want exit 0, got %d after "
               "%lld ms (tsrv kills the server after 20 s)",
               rc, (long long)stop_ms);
    assert_int_equal(rc, 0);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    /* Presence and typing are not what this file tests; they may come any time. */
    tws_default_ignore = "presence,typing";
    const struct CMUnitTest tests[] = {
        T(test_slow_consumer_bounded_and_caught_up),
        T(test_reconnect_mid_burst),
        T(test_shutdown_with_stalled_reader),
    };
    return cmocka_run_group_tests_name("slow", tests, NULL, NULL);
}
