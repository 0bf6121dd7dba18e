/* test_e2e_retry.c: RETRY (E2E.md §7.3) between libparley clients through a real parleyd. A
 * receiver that lost its session with the sender stores a "could not decrypt" placeholder and
 * sends exactly one RETRY ("session", over a new X3DH session); the sender drops its session,
 * so its next message is a PREKEY_MSG the receiver decrypts; a second failure within 10
 * minutes (after a restart) sends none. In a group, a member whose sender key is gone and
 * cannot park the message sends a "sender_key" RETRY and gets the key with the next message.
 * No RETRY ever shows as a message, an event, an ack or a pending row. */
#include "e2ehelp.h"

TSRV_FIXTURE(srv)

static void open_pair(tcl *a, tcl *b, tuser *ua, tuser *ub)
{
    assert_int_equal(tuser_new(srv.port, "ra", ua), 201);
    assert_int_equal(tuser_new(srv.port, "rb", ub), 201);
    tcl_open_user(a, "a", srv.port, ua);
    tcl_open_user(b, "b", srv.port, ub);
    assert_int_equal(pl_e2e_enable(a->c), 0);
    assert_int_equal(pl_e2e_enable(b->c), 0);
    assert_int_equal(pl_client_connect(a->c), 0);
    assert_int_equal(pl_client_connect(b->c), 0);
    tcl_wait_online(a, 10000);
    tcl_wait_online(b, 10000);
}

/* How many ctl messages the server stored from user in conv. */
static int64_t server_ctl(const char *conv, const char *user)
{
    char sdb[PATH_MAX + 32];
    snprintf(sdb, sizeof sdb, "%s/parley.db", srv.dir);
    return db_int(sdb,
                  "SELECT count(*) FROM messages WHERE conv_id = ? AND sender = ? AND kind = 'e2e' "
                  "AND json_extract(body, '$.ctl') = 1",
                  conv, user);
}

static bool has_key(tcl *t, const char *name)
{
    return db_int(t->store, "SELECT count(*) FROM e2e_keys WHERE name = ?", name, NULL) > 0;
}

/* Polls cond for up to ms, reading t's events meanwhile. */
static bool wait_for(tcl **ts, int n, bool (*cond)(void *), void *ud, int ms)
{
    return tcl_wait(ts, n, cond, ud, ms);
}

typedef struct {
    tcl *t;
    const char *name;
    const char *conv, *user;
} probe;

static bool key_gone(void *ud)
{
    probe *p = ud;
    return !has_key(p->t, p->name);
}

static bool one_ctl(void *ud)
{
    probe *p = ud;
    return server_ctl(p->conv, p->user) == 1;
}

/* The first pairwise entry of the e2e body of t's outbox row whose body contains text, for
 * device dev: its wire message type (PL_WIRE_PREKEY or PL_WIRE_MSG), -1 when there is none. */
static int entry_type(tcl *t, const char *text, const char *dev)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open(t->store, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    sqlite3_stmt *st;
    assert_int_equal(
        sqlite3_prepare_v2(db, "SELECT wire FROM messages WHERE body LIKE ?", -1, &st, NULL),
        SQLITE_OK);
    char like[200];
    snprintf(like, sizeof like, "%%%s%%", text);
    sqlite3_bind_text(st, 1, like, -1, SQLITE_TRANSIENT);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    json_t *w = json_loads((const char *)sqlite3_column_text(st, 0), 0, NULL);
    sqlite3_finalize(st);
    sqlite3_close(db);
    assert_non_null(w);
    int type = -1;
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(w, "devs"), i, e)
    {
        if (strcmp(json_string_value(json_object_get(e, "d")), dev) != 0) continue;
        unsigned char ct[8192];
        size_t n = unb64url(ct, sizeof ct, json_string_value(json_object_get(e, "c")));
        type = pl_e2e_msg_type(ct, n);
    }
    json_decref(w);
    return type;
}

/* No RETRY shows anywhere in t: every MESSAGE event and every history row of conv is a text
 * a placeholder or a group change, and no outbox row is left. */
static void no_ctl_visible(tcl *t, const char *conv)
{
    tcl_drain(t);
    int n = t->nmsgs < TCL_MAX_MSGS ? t->nmsgs : TCL_MAX_MSGS;
    for (int i = 0; i < n; i++)
        assert_true(strcmp(t->msgs[i].kind, "text") == 0 ||
                    strcmp(t->msgs[i].kind, "undecryptable") == 0 ||
                    strcmp(t->msgs[i].kind, "system") == 0);
    pl_msg *h;
    size_t hn;
    assert_int_equal(pl_msgs_history(t->c, conv, 0, 500, &h, &hn), 0);
    for (size_t i = 0; i < hn; i++)
        assert_true(strcmp(h[i].kind, "text") == 0 || strcmp(h[i].kind, "undecryptable") == 0 ||
                    strcmp(h[i].kind, "system") == 0);
    pl_msgs_free(h, hn);
    /* the last send's ack may still be on its way: wait for the outbox to empty (10 s) */
    pl_conv cv;
    int64_t t0 = mono_ms();
    for (;;) {
        assert_int_equal(pl_conv_get(t->c, conv, &cv), 0);
        int left = db_int(t->store, "SELECT count(*) FROM messages WHERE kind IN ('ctl', 'e2e')",
                          NULL, NULL);
        if ((cv.pending == 0 && left == 0) || mono_ms() - t0 > 10000) {
            if (cv.pending != 0 || left != 0)
                t_note("[%s] %d pending, %d ctl/e2e rows left", t->label, cv.pending, left);
            assert_int_equal(cv.pending, 0);
            assert_int_equal(left, 0);
            break;
        }
        t_sleep_ms(50);
        tcl_drain(t);
    }
}

static void reopen(tcl *t)
{
    char url[64];
    const char *servers[] = {tcl_url(url, sizeof url, srv.port)};
    tcl_open(t, t->label, servers, 1, true);
    assert_int_equal(pl_client_connect(t->c), 0);
    tcl_wait_online(t, 10000);
}

/* Deletes the e2e_keys rows of t's (closed) store whose name matches the LIKE pattern. */
static void forget_keys(tcl *t, const char *pattern)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open(t->store, &db), SQLITE_OK);
    sqlite3_stmt *st;
    assert_int_equal(
        sqlite3_prepare_v2(db, "DELETE FROM e2e_keys WHERE name LIKE ?", -1, &st, NULL), SQLITE_OK);
    sqlite3_bind_text(st, 1, pattern, -1, SQLITE_TRANSIENT);
    assert_int_equal(sqlite3_step(st), SQLITE_DONE);
    assert_true(sqlite3_changes(db) > 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
}

T_TEST(test_e2e_retry_session)
{
    tuser ua, ub;
    tcl a, b;
    open_pair(&a, &b, &ua, &ub);
    char conv[PL_ID_MAX], a_sess[160], b_sess[160];
    assert_int_equal(pl_conv_direct(a.c, ub.id, conv), 0);
    snprintf(a_sess, sizeof a_sess, "s:%s:%s", ub.id, ub.device); /* a's session with b */
    snprintf(b_sess, sizeof b_sess, "s:%s:%s", ua.id, ua.device); /* b's session with a */
    assert_int_equal(pl_msg_send(a.c, ub.id, "retry-one", NULL), 0);
    tcl_wait_msg(&b, "retry-one");
    assert_int_equal(server_ctl(conv, ub.id), 0);

    /* b loses its session with a's device */
    tcl_close(&b, true);
    forget_keys(&b, b_sess);
    reopen(&b);
    assert_int_equal(pl_msg_send(a.c, ub.id, "retry-two is lost", NULL), 0);
    tcl_wait_msg(&b, "could not decrypt");
    assert_string_equal(tcl_find_msg(&b, "could not decrypt")->kind, "undecryptable");
    assert_int_equal(tcl_count_msgs(&b, "retry-two"), 0);

    /* exactly one RETRY reaches the server, and a drops its session with b's device */
    tcl *both[] = {&a, &b};
    probe p = {.t = &a, .name = a_sess, .conv = conv, .user = ub.id};
    assert_true(wait_for(both, 2, one_ctl, &p, 15000));
    assert_true(wait_for(both, 2, key_gone, &p, 15000));

    /* a's next message runs X3DH: a PREKEY_MSG, which b decrypts */
    assert_int_equal(pl_msg_send(a.c, ub.id, "retry-three after the retry", NULL), 0);
    assert_int_equal(entry_type(&a, "retry-three", ub.device), PL_WIRE_PREKEY);
    tcl_wait_msg(&b, "retry-three after the retry");
    assert_int_equal(pl_msg_send(b.c, ua.id, "retry-reply", NULL), 0);
    tcl_wait_msg(&a, "retry-reply");

    /* a second failure within 10 minutes, after a restart of b: no second RETRY */
    tcl_close(&b, true);
    forget_keys(&b, b_sess);
    reopen(&b);
    int before = tcl_count_msgs(&b, "could not decrypt");
    assert_int_equal(pl_msg_send(a.c, ub.id, "retry-four is lost too", NULL), 0);
    for (int i = 0; i < 150 && tcl_count_msgs(&b, "could not decrypt") == before; i++) {
        tcl_drain(&b);
        t_sleep_ms(100);
    }
    assert_int_equal(tcl_count_msgs(&b, "could not decrypt"), before + 1);
    t_sleep_ms(1500);
    tcl_drain(&a);
    tcl_drain(&b);
    assert_int_equal(server_ctl(conv, ub.id), 1);
    assert_true(has_key(&a, a_sess)); /* a was not asked again */
    assert_int_equal(
        db_int(b.store, "SELECT count(*) FROM e2e_keys WHERE name LIKE 'rq:%'", NULL, NULL), 0);

    /* the RETRY shows nowhere: no event, no history row, no ack, no pending row */
    no_ctl_visible(&a, conv);
    no_ctl_visible(&b, conv);
    assert_true(b.nacks <= 1); /* retry-reply at most (its ack may come with the restart) */
    assert_int_equal(b.nfailed, 0);
    pl_conv cv;
    assert_int_equal(pl_conv_get(a.c, conv, &cv), 0);
    assert_true(strstr(cv.preview, "retry") != NULL);
    tcl_close(&a, false);
    tcl_close(&b, false);
}

typedef struct {
    tcl *t;
    const char *group, *user, *dev;
} sentto_probe;

/* t's sender state for the group no longer lists (user, dev) in sent_to. */
static bool not_sent_to(void *ud)
{
    sentto_probe *p = ud;
    char name[128];
    snprintf(name, sizeof name, "sk:%s", p->group);
    size_t n;
    unsigned char *v = e2e_unseal(p->t, name, &n);
    pl_sk_sender *sk = NULL;
    assert_int_equal(pl_sk_sender_deserialize(&sk, v, n), 0);
    bool has = pl_sk_sender_sent_to_has(sk, p->user, p->dev);
    pl_sk_sender_free(sk);
    sodium_memzero(v, n);
    free(v);
    return !has;
}

T_TEST(test_e2e_retry_sender_key)
{
    tuser ua, ub;
    tcl a, b;
    open_pair(&a, &b, &ua, &ub);
    const char *members[] = {ub.id};
    pl_group g;
    assert_int_equal(pl_group_create(a.c, "retry group", members, 1, &g), 0);
    char gid[PL_ID_MAX];
    snprintf(gid, sizeof gid, "%s", g.id);
    pl_group_clear(&g);
    assert_int_equal(pl_group_set_encrypted(a.c, gid), 0);
    assert_int_equal(pl_msg_send(a.c, gid, "group-one", NULL), 0);
    tcl_wait_msg(&b, "group-one");
    assert_int_equal(entry_type(&a, "group-one", ub.device), PL_WIRE_PREKEY);

    /* b loses a's sender key, and its parking space is full: the key is given up on */
    tcl_close(&b, true);
    char pat[256];
    snprintf(pat, sizeof pat, "skp:%s:%s:%s", gid, ua.id, ua.device);
    forget_keys(&b, pat);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(b.store, &db), SQLITE_OK);
    for (int i = 0; i < 200; i++) {
        char name[300];
        snprintf(name, sizeof name, "park:%s:%s:%s:%020d", gid, ua.id, ua.device, i + 1);
        sqlite3_stmt *st;
        assert_int_equal(
            sqlite3_prepare_v2(db, "INSERT INTO e2e_keys(name, value) VALUES(?, ?)", -1, &st, NULL),
            SQLITE_OK);
        sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
        sqlite3_bind_blob(st, 2, "not a parked message of this test", 33, SQLITE_STATIC);
        assert_int_equal(sqlite3_step(st), SQLITE_DONE);
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
    reopen(&b);

    assert_int_equal(pl_msg_send(a.c, gid, "group-two is lost", NULL), 0);
    assert_int_equal(entry_type(&a, "group-two", ub.device), -1); /* b held the key */
    tcl_wait_msg(&b, "never reached this device");
    tcl *both[] = {&a, &b};
    probe p = {.conv = gid, .user = ub.id};
    assert_true(wait_for(both, 2, one_ctl, &p, 15000));
    sentto_probe sp = {&a, gid, ub.id, ub.device};
    assert_true(wait_for(both, 2, not_sent_to, &sp, 15000));

    /* a's next group message carries the SKDM for b again */
    assert_int_equal(pl_msg_send(a.c, gid, "group-three after the retry", NULL), 0);
    assert_true(entry_type(&a, "group-three", ub.device) >= 0);
    tcl_wait_msg(&b, "group-three after the retry");
    assert_int_equal(tcl_count_msgs(&b, "group-two"), 0);
    assert_int_equal(server_ctl(gid, ub.id), 1);

    no_ctl_visible(&a, gid);
    no_ctl_visible(&b, gid);
    assert_int_equal(b.nacks, 0);
    tcl_close(&a, false);
    tcl_close(&b, false);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_e2e_retry_session),
        cmocka_unit_test(test_e2e_retry_sender_key),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
