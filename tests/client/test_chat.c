/* test_chat.c: two libparley clients talk through a real parleyd: every message is acked once,
 * delivered once and in order, on both sides, and the stores agree with the events. */
#include "chelp.h"

TSRV_FIXTURE(srv)

typedef struct {
    tcl *a, *b;
    int want_a_msgs, want_b_msgs, want_acks_a, want_acks_b;
} chat_goal;

static bool chat_done(void *ud)
{
    chat_goal *g = ud;
    return g->a->nmsgs >= g->want_a_msgs && g->b->nmsgs >= g->want_b_msgs &&
           g->a->nacks >= g->want_acks_a && g->b->nacks >= g->want_acks_b;
}

static bool read_all(void *ud)
{
    return ((tcl *)ud)->read_upto >= 60;
}

T_TEST(test_two_clients_chat)
{
    tuser ua, ub;
    assert_int_equal(tuser_new(srv.port, "ann", &ua), 201);
    assert_int_equal(tuser_new(srv.port, "ben", &ub), 201);
    tcl a, b;
    tcl_open_user(&a, "a", srv.port, &ua);
    tcl_open_user(&b, "b", srv.port, &ub);
    assert_int_equal(pl_client_connect(a.c), 0);
    assert_int_equal(pl_client_connect(b.c), 0);
    tcl_wait_online(&a, 10000);
    tcl_wait_online(&b, 10000);

    /* 30 each way, interleaved, without waiting for anything in between */
    enum { N = 30 };
    for (int i = 0; i < N; i++) {
        char text[64];
        snprintf(text, sizeof text, "a to b %d \xc3\xa9\xe2\x9c\x93", i);
        assert_int_equal(pl_msg_send(a.c, ub.id, text, NULL), 0);
        snprintf(text, sizeof text, "b to a %d", i);
        assert_int_equal(pl_msg_send(b.c, ua.id, text, NULL), 0);
    }
    chat_goal g = {&a, &b, N, N, N, N};
    tcl *both[] = {&a, &b};
    bool done = tcl_wait(both, 2, chat_done, &g, 20000);
    if (!done) t_note("a: %d msgs %d acks; b: %d msgs %d acks", a.nmsgs, a.nacks, b.nmsgs, b.nacks);
    assert_true(done);
    /* nothing more comes: no repeat of a message or an ack */
    t_sleep_ms(300);
    tcl_drain(&a);
    tcl_drain(&b);
    assert_int_equal(a.nmsgs, N);
    assert_int_equal(b.nmsgs, N);
    assert_int_equal(a.nacks, N);
    assert_int_equal(b.nacks, N);
    assert_int_equal(a.nfailed + b.nfailed, 0);
    /* each outbox row acked exactly once (rows are interleaved with received ones) */
    int once_a = 0, once_b = 0;
    for (int i = 1; i < TCL_MAX_MSGS; i++) {
        assert_true(a.acks_of[i] <= 1 && b.acks_of[i] <= 1);
        once_a += a.acks_of[i];
        once_b += b.acks_of[i];
    }
    assert_int_equal(once_a, N);
    assert_int_equal(once_b, N);
    /* delivered once each, in the order written, with growing seq */
    char conv[PL_ID_MAX];
    assert_int_equal(pl_conv_direct(a.c, ub.id, conv), 0);
    for (int i = 0; i < N; i++) {
        char want[64];
        snprintf(want, sizeof want, "a to b %d \xc3\xa9\xe2\x9c\x93", i);
        assert_string_equal(b.msgs[i].text, want);
        assert_string_equal(b.msgs[i].from, ua.id);
        assert_string_equal(b.msgs[i].conv, conv);
        assert_int_equal(b.msgs[i].status, PL_MSG_RECEIVED);
        snprintf(want, sizeof want, "b to a %d", i);
        assert_string_equal(a.msgs[i].text, want);
        if (i > 0) {
            assert_true(b.msgs[i].seq > b.msgs[i - 1].seq);
            assert_true(a.msgs[i].seq > a.msgs[i - 1].seq);
            assert_true(b.msgs[i].pos > b.msgs[i - 1].pos);
        }
    }

    /* the stores: one conversation, 2N messages, none pending, the same on both sides */
    pl_msg *ha, *hb;
    size_t na, nb;
    assert_int_equal(pl_msgs_history(a.c, conv, 0, 1000, &ha, &na), 0);
    assert_int_equal(pl_msgs_history(b.c, conv, 0, 1000, &hb, &nb), 0);
    assert_int_equal(na, 2 * N);
    assert_int_equal(nb, 2 * N);
    for (size_t i = 0; i < na; i++) {
        assert_int_equal(ha[i].seq, (int64_t)i + 1); /* gap-free, no repeat */
        assert_int_equal(hb[i].seq, (int64_t)i + 1);
        assert_string_equal(ha[i].cmid, hb[i].cmid);
        assert_true(ha[i].status == PL_MSG_RECEIVED || ha[i].status >= PL_MSG_SENT);
        assert_int_equal(ha[i].outgoing, strcmp(ha[i].from, ua.id) == 0);
    }
    pl_msgs_free(ha, na);
    pl_msgs_free(hb, nb);
    pl_msg *ob;
    size_t no;
    assert_int_equal(pl_outbox_list(a.c, &ob, &no), 0);
    assert_int_equal(no, 0);
    pl_free(ob);

    pl_conv *convs;
    size_t nc;
    assert_int_equal(pl_convs_list(b.c, &convs, &nc), 0);
    assert_int_equal(nc, 1);
    assert_string_equal(convs[0].id, conv);
    assert_string_equal(convs[0].peer, ua.id);
    assert_int_equal(convs[0].unread, N);
    assert_int_equal(convs[0].last_seq, 2 * N);
    pl_free(convs);
    assert_int_equal(pl_conv_mark_read(b.c, conv), 0);
    pl_conv cv;
    assert_int_equal(pl_conv_get(b.c, conv, &cv), 0);
    assert_int_equal(cv.unread, 0);
    /* receipts: b's device holds everything (delivered), and b read it all (read) */
    tcl *ta[] = {&a};
    bool read = tcl_wait(ta, 1, read_all, &a, 5000);
    if (!read) t_note("a saw read up to %lld", (long long)a.read_upto);
    assert_true(read);
    assert_int_equal(pl_msgs_history(a.c, conv, 0, 1000, &ha, &na), 0);
    for (size_t i = 0; i < na; i++)
        if (ha[i].outgoing) assert_int_equal(ha[i].status, PL_MSG_READ);
    pl_msgs_free(ha, na);
    /* the cursor: the last entry received (the sender gets its own entries only by sync) */
    assert_int_equal(pl_store_pos(b.c), b.msgs[N - 1].pos);

    tcl_close(&a, false);
    tcl_close(&b, false);
}

/* Registration, log-in on a second device, users and devices through the library's REST. */
T_TEST(test_rest_accounts)
{
    char url[64];
    const char *servers[] = {tcl_url(url, sizeof url, srv.port)};
    tcl a, a2;
    tcl_open(&a, "a", servers, 1, false);
    char name[33];
    t_name(name, sizeof name, "carol");
    pl_session s;
    assert_int_equal(pl_session_get(a.c, &s), PL_ENOSESSION);
    assert_int_equal(pl_account_register(a.c, name, "correct horse battery", "Carol C"), 0);
    assert_int_equal(pl_session_get(a.c, &s), 0);
    assert_string_equal(s.username, name);
    assert_int_equal(pl_account_register(a.c, name, "correct horse battery", NULL), PL_ETAKEN);
    assert_true(strlen(pl_client_errmsg(a.c)) > 0);
    pl_user me;
    assert_int_equal(pl_me_get(a.c, &me), 0);
    assert_string_equal(me.id, s.user);
    assert_string_equal(me.display_name, "Carol C");

    tcl_open(&a2, "a2", servers, 1, false);
    assert_int_equal(pl_session_login(a2.c, name, "wrong password!"), PL_EAUTH);
    assert_int_equal(pl_session_login(a2.c, name, "correct horse battery"), 0);
    pl_device *devs;
    size_t nd;
    assert_int_equal(pl_devices_list(a2.c, &devs, &nd), 0);
    assert_int_equal(nd, 2);
    assert_true(devs[0].current != devs[1].current);
    pl_free(devs);
    pl_user found;
    assert_int_equal(pl_user_resolve(a2.c, name, &found), 0);
    assert_string_equal(found.id, s.user);
    assert_int_equal(pl_user_resolve(a2.c, "nobody_here_at_all", &found), PL_ENOTFOUND);

    /* the first device logs out: its token is refused from then on */
    assert_int_equal(pl_session_logout(a.c), 0);
    assert_int_equal(pl_me_get(a.c, &me), PL_ENOSESSION);
    assert_int_equal(pl_devices_list(a2.c, &devs, &nd), 0);
    assert_int_equal(nd, 1);
    pl_free(devs);
    tcl_close(&a, false);
    tcl_close(&a2, false);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_clients_chat),
        cmocka_unit_test(test_rest_accounts),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
