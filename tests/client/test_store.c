/* test_store.c: the device store on its own (no server): dedup by (conv, seq), an own pending
 * message seen through sync before its ack, acks, receipts, unread counts, and reopening. */
#include "chelp.h"

#include "client/internal.h"

static char dir[PATH_MAX], path[PATH_MAX + 16];

static int setup(void **state)
{
    (void)state;
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/plstore.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) return -1;
    snprintf(path, sizeof path, "%s/store.db", dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tcl_rmdir(dir);
    return 0;
}

static json_t *frame(int64_t pos, const char *conv, int64_t seq, const char *from, const char *dev,
                     const char *cmid, const char *text)
{
    return json_pack("{s:s, s:I, s:s, s:I, s:s, s:s, s:s, s:I, s:s, s:{s:s}}", "type", "msg", "pos",
                     (json_int_t)pos, "conv", conv, "seq", (json_int_t)seq, "from", from, "dev",
                     dev, "cmid", cmid, "ts", (json_int_t)1700000000000, "kind", "text", "body",
                     "text", text);
}

T_TEST(test_store_dedup_and_merge)
{
    sqlite3 *db;
    assert_int_equal(pl__store_open(path, &db), 0);
    const char *me = "u_me", *dev = "d_mine", *peer = "u_peer";
    char conv[ID_MAX];
    conv_direct_id(conv, me, peer);

    /* a message from the peer, then the same again: stored once */
    pl_msg m;
    json_t *f = frame(1, conv, 1, peer, "d_peer", "c1", "hi");
    assert_int_equal(pl__store_begin(db), 0);
    assert_int_equal(pl__store_incoming(db, me, dev, f, &m), PL__IN_NEW);
    assert_string_equal(m.text, "hi");
    assert_int_equal(m.status, PL_MSG_RECEIVED);
    pl_msg_clear(&m);
    assert_int_equal(pl__store_incoming(db, me, dev, f, &m), PL__IN_DUP);
    assert_int_equal(pl__store_commit(db), 0);
    json_decref(f);

    /* our own message, pending; it comes back through sync before its ack */
    pl_msg out;
    assert_int_equal(
        pl__store_outbox_add(db, me, dev, peer, conv, "text", "{\"text\":\"yo\"}", 0, &out), 0);
    assert_int_equal(out.status, PL_MSG_PENDING);
    f = frame(2, conv, 2, me, dev, out.cmid, "yo");
    assert_int_equal(pl__store_begin(db), 0);
    assert_int_equal(pl__store_incoming(db, me, dev, f, &m), PL__IN_OWN_ACKED);
    assert_int_equal(m.local_id, out.local_id);
    assert_int_equal(m.status, PL_MSG_SENT);
    pl_msg_clear(&m);
    /* then the late ack changes nothing, and a second sync copy is a repeat */
    assert_int_equal(pl__store_ack(db, out.local_id, conv, 2, 1700000000001, &m), 0);
    assert_int_equal(pl__store_incoming(db, me, dev, f, &m), PL__IN_DUP);
    assert_int_equal(pl__store_commit(db), 0);
    json_decref(f);
    pl_msg_clear(&out);

    /* our message from another device: stored as outgoing, the peer guessed from the conv */
    f = frame(3, conv, 3, me, "d_other", "x9", "from my phone");
    assert_int_equal(pl__store_begin(db), 0);
    assert_int_equal(pl__store_incoming(db, me, dev, f, &m), PL__IN_NEW);
    assert_true(m.outgoing);
    pl_msg_clear(&m);
    /* a receipt: the peer holds up to 2, read up to 1 */
    assert_int_equal(pl__store_receipt(db, me, conv, peer, 2, 1), 1);
    assert_int_equal(pl__store_receipt(db, me, conv, peer, 1, 0), 0); /* never back */
    assert_int_equal(pl__store_commit(db), 0);
    json_decref(f);

    pl_msg *h;
    size_t n;
    assert_int_equal(pl__store_history(db, conv, 0, 10, &h, &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(h[0].seq, 1);
    assert_int_equal(h[1].seq, 2);
    assert_int_equal(h[1].status, PL_MSG_DELIVERED);
    assert_int_equal(h[2].seq, 3);
    assert_int_equal(h[2].status, PL_MSG_SENT);
    pl_msgs_free(h, n);
    pl_conv *cv;
    assert_int_equal(pl__store_convs(db, NULL, &cv, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(cv[0].peer, peer);
    assert_int_equal(cv[0].unread, 1);
    assert_int_equal(cv[0].last_seq, 3);
    assert_string_equal(cv[0].preview, "from my phone");
    free(cv);
    pl__store_close(db);

    /* a second connection (as the engine has) sees the same, and the outbox is empty */
    assert_int_equal(pl__store_open(path, &db), 0);
    assert_int_equal(pl__store_outbox(db, 0, 0, false, &h, &n), 0);
    assert_int_equal(n, 0);
    pl_msgs_free(h, n);
    assert_int_equal(pl__store_mark_read(db, conv), 0);
    assert_int_equal(pl__store_convs(db, conv, &cv, &n), 0);
    assert_int_equal(cv[0].unread, 0);
    free(cv);
    pl__store_close(db);
}

T_TEST(test_errors_and_names)
{
    assert_string_equal(pl_err_name(PL_ENET), "PL_ENET");
    assert_string_equal(pl_strerror(0), "success");
    assert_true(strlen(pl_strerror(PL_ETOKEN)) > 10);
    assert_string_equal(pl_state_name(PL_STATE_ONLINE), "online");
    assert_string_equal(pl_event_kind_name(PL_EV_ACK), "ack");
    assert_string_equal(pl_msg_status_name(PL_MSG_DELIVERED), "delivered");
    pl__url u;
    assert_int_equal(pl__url_parse("http://example.org:8080/chat/", &u), 0);
    assert_string_equal(u.host, "example.org");
    assert_string_equal(u.port, "8080");
    assert_string_equal(u.prefix, "/chat");
    assert_int_equal(pl__url_parse("http://[::1]:9/", &u), 0);
    assert_string_equal(u.host, "::1");
    assert_int_equal(pl__url_parse("https://example.org", &u), PL_EINVAL);
    assert_int_equal(pl__url_parse("http://:80", &u), PL_EINVAL);
    /* a client needs a store and a server */
    pl_client *c;
    pl_options o = {0};
    assert_int_equal(pl_client_new(&c, &o), PL_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_store_dedup_and_merge),
        cmocka_unit_test(test_errors_and_names),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
