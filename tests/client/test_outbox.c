/* test_outbox.c: messages written while the server is down wait in the outbox (in the store,
 * across a restart of the application too) and go out once, in order, when it is back. */
#include "chelp.h"

TSRV_FIXTURE(srv)

static bool is_offline(void *ud)
{
    pl_state s = ((tcl *)ud)->state;
    return s == PL_STATE_OFFLINE || s == PL_STATE_CONNECTING;
}

typedef struct {
    tcl *a, *b;
    int want_msgs, want_acks;
} goal;

static bool got_all(void *ud)
{
    goal *g = ud;
    return g->b->nmsgs >= g->want_msgs && g->a->nacks >= g->want_acks;
}

static int outbox_count(pl_client *c)
{
    pl_msg *ob;
    size_t n;
    assert_int_equal(pl_outbox_list(c, &ob, &n), 0);
    pl_msgs_free(ob, n);
    return (int)n;
}

T_TEST(test_outbox_survives_server_restart)
{
    tuser ua, ub;
    assert_int_equal(tuser_new(srv.port, "olga", &ua), 201);
    assert_int_equal(tuser_new(srv.port, "oscar", &ub), 201);
    tcl a, b;
    tcl_open_user(&a, "a", srv.port, &ua);
    tcl_open_user(&b, "b", srv.port, &ub);
    assert_int_equal(pl_client_connect(a.c), 0);
    assert_int_equal(pl_client_connect(b.c), 0);
    tcl_wait_online(&a, 10000);
    tcl_wait_online(&b, 10000);
    /* one message while all is well, so the restart has history behind it */
    assert_int_equal(pl_msg_send(a.c, ub.id, "before", NULL), 0);
    goal g0 = {&a, &b, 1, 1};
    tcl *both[] = {&a, &b};
    assert_true(tcl_wait(both, 2, got_all, &g0, 10000));

    assert_int_equal(tsrv_stop(&srv), 0);
    tcl *ta[] = {&a};
    assert_true(tcl_wait(ta, 1, is_offline, &a, 10000));
    enum { N = 5 };
    for (int i = 0; i < N; i++) {
        char text[32];
        snprintf(text, sizeof text, "offline %d", i);
        pl_msg m;
        assert_int_equal(pl_msg_send(a.c, ub.id, text, &m), 0);
        assert_int_equal(m.status, PL_MSG_PENDING);
        assert_int_equal(m.seq, 0);
        assert_true(strlen(m.cmid) > 0);
        pl_msg_clear(&m);
    }
    t_sleep_ms(300); /* the engine keeps trying, and must not lose or send anything */
    tcl_drain(&a);
    assert_int_equal(outbox_count(a.c), N);
    assert_int_equal(a.nacks, 1);

    /* the application stops too: the outbox must be in the store, not in memory */
    tcl_close(&a, true);
    assert_int_equal(tsrv_restart(&srv), 0);
    char url[64];
    const char *servers[] = {tcl_url(url, sizeof url, srv.port)};
    tcl_open(&a, "a", servers, 1, true);
    assert_int_equal(outbox_count(a.c), N);
    a.nacks = 0;
    assert_int_equal(pl_client_set_servers(b.c, servers, 1), 0);
    assert_int_equal(pl_client_connect(a.c), 0);

    goal g = {&a, &b, 1 + N, N}; /* a's new client acks only the N of the outbox */
    bool ok = tcl_wait(both, 2, got_all, &g, 20000);
    if (!ok) t_note("b got %d messages, a got %d acks", b.nmsgs, a.nacks);
    assert_true(ok);
    t_sleep_ms(300);
    tcl_drain(&a);
    tcl_drain(&b);
    assert_int_equal(b.nmsgs, 1 + N); /* exactly once each */
    assert_int_equal(a.nacks, N);
    assert_string_equal(b.msgs[0].text, "before");
    for (int i = 0; i < N; i++) {
        char want[32];
        snprintf(want, sizeof want, "offline %d", i);
        assert_string_equal(b.msgs[1 + i].text, want);
        assert_int_equal(b.msgs[1 + i].seq, b.msgs[i].seq + 1); /* in order */
    }
    assert_int_equal(outbox_count(a.c), 0);
    tcl_close(&a, false);
    tcl_close(&b, false);
}

/* Sending works the same before the first connection: queued, then sent on connect. */
T_TEST(test_send_before_connect)
{
    tuser ua, ub;
    assert_int_equal(tuser_new(srv.port, "pia", &ua), 201);
    assert_int_equal(tuser_new(srv.port, "pete", &ub), 201);
    tcl a, b;
    tcl_open_user(&a, "a", srv.port, &ua);
    tcl_open_user(&b, "b", srv.port, &ub);
    assert_int_equal(pl_msg_send(a.c, ub.id, "queued 1", NULL), 0);
    assert_int_equal(pl_msg_send(a.c, ub.id, "queued 2", NULL), 0);
    assert_int_equal(pl_msg_send(a.c, "u_nobodyatallhere", "to nobody", NULL), 0);
    assert_int_equal(pl_msg_send(a.c, ub.id, "", NULL), PL_EINVAL);
    assert_int_equal(pl_msg_send(a.c, "bob", "not an id", NULL), PL_EINVAL);
    assert_int_equal(pl_client_connect(a.c), 0);
    assert_int_equal(pl_client_connect(b.c), 0);
    goal g = {&a, &b, 2, 2};
    tcl *both[] = {&a, &b};
    assert_true(tcl_wait(both, 2, got_all, &g, 10000));
    t_sleep_ms(300);
    tcl_drain(&a);
    assert_int_equal(a.nfailed, 1); /* no_such_user: refused for good, not retried */
    assert_string_equal(b.msgs[0].text, "queued 1");
    assert_string_equal(b.msgs[1].text, "queued 2");
    assert_int_equal(outbox_count(a.c), 0);
    tcl_close(&a, false);
    tcl_close(&b, false);
}

/* kill -9 in the middle of a stream of sends: some were committed without their ack reaching
 * the client. The resends carry the same cmids, so the peer still gets each exactly once. */
T_TEST(test_kill9_mid_stream)
{
    tuser ua, ub;
    assert_int_equal(tuser_new(srv.port, "kurt", &ua), 201);
    assert_int_equal(tuser_new(srv.port, "kim", &ub), 201);
    tcl a, b;
    tcl_open_user(&a, "a", srv.port, &ua);
    tcl_open_user(&b, "b", srv.port, &ub);
    assert_int_equal(pl_client_connect(a.c), 0);
    assert_int_equal(pl_client_connect(b.c), 0);
    tcl_wait_online(&a, 10000);
    tcl_wait_online(&b, 10000);
    enum { N = 300 };
    for (int i = 0; i < N; i++) {
        char text[32];
        snprintf(text, sizeof text, "k%03d", i);
        assert_int_equal(pl_msg_send(a.c, ub.id, text, NULL), 0);
        if (i == N / 3) t_sleep_ms(150); /* let part of it be on the wire */
    }
    tcl_drain(&a);
    assert_int_equal(tsrv_kill9(&srv), 0);
    t_note("killed with %d of %d acked", a.nacks, N);
    t_sleep_ms(200);
    assert_int_equal(tsrv_restart(&srv), 0);
    char url[64];
    const char *servers[] = {tcl_url(url, sizeof url, srv.port)};
    assert_int_equal(pl_client_set_servers(a.c, servers, 1), 0);
    assert_int_equal(pl_client_set_servers(b.c, servers, 1), 0);
    goal g = {&a, &b, N, 0};
    tcl *both[] = {&a, &b};
    bool ok = tcl_wait(both, 2, got_all, &g, 30000);
    if (!ok) t_note("b got %d of %d", b.nmsgs, N);
    assert_true(ok);
    t_sleep_ms(300);
    tcl_drain(&a);
    tcl_drain(&b);
    assert_int_equal(b.nmsgs, N);
    for (int i = 0; i < N; i++) {
        char want[32];
        snprintf(want, sizeof want, "k%03d", i);
        assert_string_equal(b.msgs[i].text, want);
        assert_int_equal(b.msgs[i].seq, i + 1);
    }
    assert_int_equal(outbox_count(a.c), 0);
    tcl_close(&a, false);
    tcl_close(&b, false);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_outbox_survives_server_restart),
        cmocka_unit_test(test_send_before_connect),
        cmocka_unit_test(test_kill9_mid_stream),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
