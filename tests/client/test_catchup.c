/* test_catchup.c: a client that was away while 1,000 messages came catches up through sync
 * pages, with none missing and none doubled, and acknowledges its position. */
#include "chelp.h"

TSRV_FIXTURE(srv)

enum { N = 1000 };

static bool all_acked(void *ud)
{
    return ((tcl *)ud)->nacks >= N;
}

static bool synced(void *ud)
{
    return ((tcl *)ud)->nsynced >= 1 && ((tcl *)ud)->state == PL_STATE_ONLINE;
}

T_TEST(test_offline_client_catches_up)
{
    tuser ua, ub;
    assert_int_equal(tuser_new(srv.port, "quinn", &ua), 201);
    assert_int_equal(tuser_new(srv.port, "quade", &ub), 201);
    tcl a, b;
    tcl_open_user(&a, "a", srv.port, &ua);
    tcl_open_user(&b, "b", srv.port, &ub);
    /* b is online once, then goes away */
    assert_int_equal(pl_client_connect(b.c), 0);
    tcl_wait_online(&b, 10000);
    pl_client_disconnect(b.c);

    assert_int_equal(pl_client_connect(a.c), 0);
    for (int i = 0; i < N; i++) {
        char text[32];
        snprintf(text, sizeof text, "m%04d", i);
        assert_int_equal(pl_msg_send(a.c, ub.id, text, NULL), 0);
    }
    tcl *ta[] = {&a};
    bool ok = tcl_wait(ta, 1, all_acked, &a, 60000);
    if (!ok) t_note("%d of %d acked", a.nacks, N);
    assert_true(ok);
    assert_int_equal(a.nfailed, 0);

    int64_t t0 = mono_ms();
    assert_int_equal(pl_client_connect(b.c), 0);
    tcl *tb[] = {&b};
    assert_true(tcl_wait(tb, 1, synced, &b, 30000));
    t_note("caught up with %d messages in %lld ms", b.nmsgs, (long long)(mono_ms() - t0));
    t_sleep_ms(300);
    tcl_drain(&b);
    assert_int_equal(b.nmsgs, N);
    for (int i = 0; i < N; i++) {
        char want[32];
        snprintf(want, sizeof want, "m%04d", i);
        assert_string_equal(b.msgs[i].text, want);
        assert_int_equal(b.msgs[i].seq, i + 1);
    }
    char conv[PL_ID_MAX];
    assert_int_equal(pl_conv_direct(b.c, ua.id, conv), 0);
    pl_msg *h;
    size_t n;
    assert_int_equal(pl_msgs_history(b.c, conv, 0, 5000, &h, &n), 0);
    assert_int_equal(n, N);
    for (size_t i = 0; i < n; i++) assert_int_equal(h[i].seq, (int64_t)i + 1);
    pl_msgs_free(h, n);
    pl_conv cv;
    assert_int_equal(pl_conv_get(b.c, conv, &cv), 0);
    assert_int_equal(cv.unread, N);
    int64_t pos = pl_store_pos(b.c);
    assert_true(pos >= N);

    /* again: the position was stored and acknowledged, so nothing comes twice */
    pl_client_disconnect(b.c);
    b.nsynced = 0;
    assert_int_equal(pl_client_connect(b.c), 0);
    assert_true(tcl_wait(tb, 1, synced, &b, 10000));
    t_sleep_ms(200);
    tcl_drain(&b);
    assert_int_equal(b.nmsgs, N);
    assert_int_equal(pl_store_pos(b.c), pos);

    /* a second device of b starts from 0 and gets everything too */
    tuser ub2;
    assert_int_equal(tuser_login(srv.port, ub.username, ub.password, &ub2), 200);
    tcl b2;
    tcl_open_user(&b2, "b2", srv.port, &ub2);
    assert_int_equal(pl_client_connect(b2.c), 0);
    tcl *tb2[] = {&b2};
    assert_true(tcl_wait(tb2, 1, synced, &b2, 30000));
    t_sleep_ms(200);
    tcl_drain(&b2);
    assert_int_equal(b2.nmsgs, N);

    tcl_close(&a, false);
    tcl_close(&b, false);
    tcl_close(&b2, false);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_offline_client_catches_up),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
