/* test_failover.c: a server list whose first address is dead; reconnection after the server
 * goes away; a push wakes the engine. */
#include "chelp.h"

TSRV_FIXTURE(srv)

static bool got_one(void *ud)
{
    return ((tcl *)ud)->nmsgs >= 1;
}

T_TEST(test_dead_first_server)
{
    char dead[64], live[64];
    snprintf(dead, sizeof dead, "http://127.0.0.1:%d", tcl_dead_port());
    tcl_url(live, sizeof live, srv.port);
    const char *servers[] = {dead, live};
    tuser ua;
    assert_int_equal(tuser_new(srv.port, "rick", &ua), 201);
    tcl a;
    tcl_open(&a, "a", servers, 2, false);
    assert_int_equal(pl_session_adopt(a.c, ua.id, ua.device, ua.username, ua.token), 0);
    int64_t t0 = mono_ms();
    assert_int_equal(pl_client_connect(a.c), 0);
    tcl_wait_online(&a, 5000);
    t_note("online through the second server after %lld ms", (long long)(mono_ms() - t0));
    assert_true(a.nerrors >= 1); /* the dead one was tried and reported */
    tcl_close(&a, false);

    /* REST moves on too */
    tcl r;
    tcl_open(&r, "r", servers, 2, false);
    char name[33];
    t_name(name, sizeof name, "rita");
    assert_int_equal(pl_account_register(r.c, name, "correct horse battery", NULL), 0);
    tcl_close(&r, false);
}

T_TEST(test_all_dead_then_back)
{
    tuser ua, ub;
    assert_int_equal(tuser_new(srv.port, "sam", &ua), 201);
    assert_int_equal(tuser_new(srv.port, "sue", &ub), 201);
    char dead[64];
    snprintf(dead, sizeof dead, "http://127.0.0.1:%d", tcl_dead_port());
    const char *servers[] = {dead};
    tcl b;
    tcl_open(&b, "b", servers, 1, false);
    assert_int_equal(pl_session_adopt(b.c, ub.id, ub.device, ub.username, ub.token), 0);
    assert_int_equal(pl_client_connect(b.c), 0);
    t_sleep_ms(1000); /* several rounds of backoff against nothing */
    tcl_drain(&b);
    assert_true(b.state == PL_STATE_OFFLINE || b.state == PL_STATE_CONNECTING);
    assert_true(b.nerrors >= 2);
    assert_true(b.nerrors < 40); /* backoff, not a busy loop */

    /* a message waits for b on the server; the list gets a live server; a push wakes b */
    tws *wa = tws_live(srv.port, &ua, "a");
    assert_non_null(wa);
    json_t *ack = tws_send_msg(wa, ub.id, "wake up", "wake up");
    assert_non_null(ack);
    json_decref(ack);
    char live[64];
    const char *servers2[] = {dead, tcl_url(live, sizeof live, srv.port)};
    assert_int_equal(pl_client_set_servers(b.c, servers2, 2), 0);
    assert_int_equal(pl_client_handle_push(b.c, "{\"kind\":\"wake\"}"), 0);
    tcl *tb[] = {&b};
    assert_true(tcl_wait(tb, 1, got_one, &b, 5000));
    assert_string_equal(b.msgs[0].text, "wake up");
    tws_free(wa);
    tcl_close(&b, false);
}

static bool unauthorized(void *ud)
{
    return ((tcl *)ud)->state == PL_STATE_UNAUTHORIZED;
}

/* A device removed from another one: its socket is closed with 4001, and the engine stops
 * instead of hammering the server with a dead token. */
T_TEST(test_removed_device_stops)
{
    tuser u1, u2;
    assert_int_equal(tuser_new(srv.port, "tess", &u1), 201);
    assert_int_equal(tuser_login(srv.port, u1.username, u1.password, &u2), 200);
    tcl d1, d2;
    tcl_open_user(&d1, "d1", srv.port, &u1);
    tcl_open_user(&d2, "d2", srv.port, &u2);
    assert_int_equal(pl_client_connect(d1.c), 0);
    tcl_wait_online(&d1, 10000);
    assert_int_equal(pl_device_remove(d2.c, u1.device), 0);
    tcl *t1[] = {&d1};
    assert_true(tcl_wait(t1, 1, unauthorized, &d1, 5000));
    int errors = d1.nerrors;
    t_sleep_ms(500);
    tcl_drain(&d1);
    assert_int_equal(d1.state, PL_STATE_UNAUTHORIZED);
    assert_int_equal(d1.nerrors, errors); /* no more attempts */
    tcl_close(&d1, false);
    tcl_close(&d2, false);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dead_first_server),
        cmocka_unit_test(test_all_dead_then_back),
        cmocka_unit_test(test_removed_device_stops),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
