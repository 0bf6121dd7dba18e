/* test_e2e_spk.c: the signed prekey of a libparley device through a real parleyd. Peers made
 * here from the e2e core (their own AIK, DCERT and SPK, their messages sent over raw sockets)
 * claim b's bundle and start sessions with it, so each test controls which SPK and whether an
 * OPK a prekey message names:
 * - rotation: a peer that claimed b's bundle before pl_e2e_rotate_spk still gets through on the
 *   old SPK; a new peer is handed the new one; after 7 days the check on connecting rotates by
 *   itself, and an SPK replaced 30 days ago is deleted with its replay cache (its peer's message
 *   then shows as "could not decrypt");
 * - replay: a prekey message without an OPK sent again (new cmid) after its session was replaced
 *   is refused by the SPK's replay cache, shown as "could not decrypt", and leaves the current
 *   session as it was. */
#include "e2ehelp.h"

#define DAY_MS (24LL * 3600 * 1000)

TSRV_FIXTURE(srv)

/* ------------------------------------------------------------------------------- helpers */

/* A user with e2e keys made here: AIK published, one device with a bundle (SPK 7, no OPKs). */
typedef struct peer {
    tuser u;
    pl_sign_pair aik;
    pl_e2e_self self;
    pl_prekey spk;
} peer;

static void peer_new(peer *p, const char *name)
{
    assert_int_equal(tuser_new(srv.port, name, &p->u), 201);
    assert_int_equal(pl_sign_generate(&p->aik), 0);
    char a[64];
    b64url(a, sizeof a, p->aik.pk, 32);
    int status;
    json_t *r = NULL;
    assert_int_equal(thttp_reqp(srv.port, "PUT", "/v1/keys/identity", p->u.token, &status, &r,
                                "{s:s}", "aik", a),
                     0);
    json_decref(r);
    assert_true(status == 200 || status == 204);
    e2e_publish_by_hand(srv.port, &p->aik, p->u.id, &p->u, &p->self, &p->spk);
}

static void peer_free(peer *p)
{
    pl_e2e_self_wipe(&p->self);
    sodium_memzero(&p->aik, sizeof p->aik);
    sodium_memzero(&p->spk, sizeof p->spk);
}

/* Claims to's bundle as p (POST /v1/keys/claim); with_opk false: the OPK handed out is not
 * used, so the prekey message names none. */
static void claim(peer *p, const tuser *to, bool with_opk, pl_bundle *b)
{
    int status;
    json_t *r = NULL;
    assert_int_equal(thttp_reqp(srv.port, "POST", "/v1/keys/claim", p->u.token, &status, &r,
                                "{s:[{s:s, s:s}]}", "devices", "user", to->id, "device",
                                to->device),
                     0);
    assert_int_equal(status, 200);
    json_t *j = json_array_get(json_object_get(r, "bundles"), 0);
    assert_non_null(j);
    memset(b, 0, sizeof *b);
    snprintf(b->user, sizeof b->user, "%s", to->id);
    snprintf(b->device, sizeof b->device, "%s", to->device);
    json_t *spk = json_object_get(j, "spk"), *opk = json_object_get(j, "opk");
    assert_int_equal(unb64url(b->aik, sizeof b->aik, json_string_value(json_object_get(j, "aik"))),
                     32);
    b->dcert_len =
        unb64url(b->dcert, sizeof b->dcert, json_string_value(json_object_get(j, "dcert")));
    b->spk_id = (uint32_t)json_integer_value(json_object_get(spk, "id"));
    assert_int_equal(
        unb64url(b->spk_pub, sizeof b->spk_pub, json_string_value(json_object_get(spk, "pub"))),
        32);
    assert_int_equal(
        unb64url(b->spk_sig, sizeof b->spk_sig, json_string_value(json_object_get(spk, "sig"))),
        64);
    b->opk_id = PL_OPK_NONE;
    if (with_opk) {
        assert_true(json_is_object(opk));
        b->opk_id = (uint32_t)json_integer_value(json_object_get(opk, "id"));
        assert_int_equal(
            unb64url(b->opk_pub, sizeof b->opk_pub, json_string_value(json_object_get(opk, "pub"))),
            32);
    }
    json_decref(r);
}

static pl_e2e_session *start(peer *p, const pl_bundle *b)
{
    pl_e2e_session *s = NULL;
    assert_int_equal(pl_x3dh_initiate(&s, &p->self, b, b->aik), 0);
    return s;
}

/* Sends ciphertext c64 from p to `to` as an e2e message with cmid. */
static void send_raw(peer *p, const tuser *to, const char *cmid, const char *c64)
{
    tws *ws = tws_live(srv.port, &p->u, "raw");
    assert_non_null(ws);
    json_t *f = json_pack("{s:s, s:s, s:s, s:s, s:s, s:{s:i, s:[{s:s, s:s, s:s}]}}", "type", "send",
                          "id", "r1", "to", to->id, "cmid", cmid, "kind", "e2e", "body", "v", 1,
                          "devs", "u", to->id, "d", to->device, "c", c64);
    assert_int_equal(tws_send_json(ws, f), 0);
    json_decref(f);
    json_t *ack = tws_expect_reply(ws, "ack", "r1", 5000);
    assert_non_null(ack);
    json_decref(ack);
    tws_free(ws);
}

/* Encrypts text on s as a CONTENT payload to `to` with a new cmid, sends it, and keeps the
 * ciphertext (base64url) in c64 when c64 is not NULL. */
static void send_text(peer *p, pl_e2e_session *s, const tuser *to, const char *text, char *c64,
                      size_t cap)
{
    char cmid[40];
    t_id(cmid, sizeof cmid, "c_spk");
    json_t *content = json_pack("{s:s, s:s, s:I, s:s, s:{s:s}}", "to", to->id, "cmid", cmid, "ts",
                                (json_int_t)now_ms(), "kind", "text", "body", "text", text);
    char *pt = json_dumps(content, JSON_COMPACT);
    json_decref(content);
    assert_non_null(pt);
    unsigned char ct[4096];
    size_t ctlen;
    assert_int_equal(pl_e2e_session_encrypt(s, PL_CT_CONTENT, (const unsigned char *)pt, strlen(pt),
                                            ct, sizeof ct, &ctlen),
                     0);
    free(pt);
    char buf[6000];
    b64url(buf, sizeof buf, ct, ctlen);
    if (c64) snprintf(c64, cap, "%s", buf);
    send_raw(p, to, cmid, buf);
}

/* The SPK id parleyd hands out for u's device now. */
static int64_t served_spk(const tuser *u)
{
    int status;
    json_t *r = NULL;
    assert_int_equal(thttp_req(srv.port, "GET", "/v1/keys/prekeys", u->token, NULL, &status, &r),
                     0);
    assert_int_equal(status, 200);
    int64_t id = json_integer_value(json_object_get(r, "spk_id"));
    json_decref(r);
    return id;
}

static sqlite3 *store_db(tcl *t)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open(t->store, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    return db;
}

static bool key_exists(tcl *t, const char *name)
{
    sqlite3 *db = store_db(t);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT 1 FROM e2e_keys WHERE name = ?", -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
    bool found = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_finalize(st);
    sqlite3_close(db);
    return found;
}

/* Sets a meta value of t's store (the client is closed), to age what the client recorded. */
static void meta_set(tcl *t, const char *key, int64_t value)
{
    sqlite3 *db = store_db(t);
    sqlite3_stmt *st;
    assert_int_equal(
        sqlite3_prepare_v2(db, "UPDATE meta SET value = ? WHERE key = ?", -1, &st, NULL),
        SQLITE_OK);
    char v[32];
    snprintf(v, sizeof v, "%lld", (long long)value);
    sqlite3_bind_text(st, 1, v, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, key, -1, SQLITE_TRANSIENT);
    assert_int_equal(sqlite3_step(st), SQLITE_DONE);
    assert_int_equal(sqlite3_changes(db), 1);
    sqlite3_finalize(st);
    sqlite3_close(db);
}

static void open_b(tcl *b, tuser *ub)
{
    assert_int_equal(tuser_new(srv.port, "sb", ub), 201);
    tcl_open_user(b, "b", srv.port, ub);
    assert_int_equal(pl_e2e_enable(b->c), 0);
    assert_int_equal(pl_client_connect(b->c), 0);
    tcl_wait_online(b, 10000);
}

/* --------------------------------------------------------------------------------- tests */

T_TEST(test_e2e_spk_rotation)
{
    assert_int_equal(pl_e2e_init(), 0);
    tuser ub;
    tcl b;
    open_b(&b, &ub);
    assert_int_equal(served_spk(&ub), 1);

    /* p1 and p3 fetch b's bundle before the rotation; p1 will use no OPK, p3 one */
    peer p1, p2, p3;
    peer_new(&p1, "s1");
    peer_new(&p3, "s3");
    pl_bundle b1, b2, b3;
    claim(&p1, &ub, false, &b1);
    claim(&p3, &ub, true, &b3);
    assert_int_equal(b1.spk_id, 1);
    assert_int_equal(b3.spk_id, 1);

    assert_int_equal(pl_e2e_rotate_spk(b.c), 0);
    assert_int_equal(served_spk(&ub), 2);

    /* p1's prekey message names SPK 1, which b still holds */
    pl_e2e_session *s1 = start(&p1, &b1);
    send_text(&p1, s1, &ub, "spk-one on the old signed prekey", NULL, 0);
    tcl_wait_msg(&b, "spk-one");
    assert_string_equal(tcl_find_msg(&b, "spk-one")->kind, "text");
    assert_true(key_exists(&b, "spko:1"));
    assert_true(key_exists(&b, "spkrc:1"));

    /* a peer that comes now is handed SPK 2, and it works */
    peer_new(&p2, "s2");
    claim(&p2, &ub, false, &b2);
    assert_int_equal(b2.spk_id, 2);
    assert_int_equal(sodium_memcmp(b2.spk_pub, b1.spk_pub, 32) != 0, 1);
    pl_e2e_session *s2 = start(&p2, &b2);
    send_text(&p2, s2, &ub, "spk-two on the new signed prekey", NULL, 0);
    tcl_wait_msg(&b, "spk-two");
    assert_string_equal(tcl_find_msg(&b, "spk-two")->kind, "text");

    /* b is away; SPK 2 turns 8 days old and SPK 1 was replaced 31 days ago. On connecting, b
     * makes SPK 3 by itself and deletes SPK 1 with its replay cache; SPK 2 is kept. */
    tcl_close(&b, true);
    meta_set(&b, "e2e_spk_at", now_ms() - 8 * DAY_MS);
    meta_set(&b, "e2e_spko:1", now_ms() - 31 * DAY_MS);
    char url[64];
    const char *servers[] = {tcl_url(url, sizeof url, srv.port)};
    tcl_open(&b, "b", servers, 1, true);
    assert_int_equal(pl_client_connect(b.c), 0);
    tcl_wait_online(&b, 10000);
    int64_t id = 0;
    for (int i = 0; i < 200 && id != 3; i++) { /* expired SPKs go before the rotation */
        tcl_drain(&b);
        t_sleep_ms(50);
        id = served_spk(&ub);
    }
    assert_int_equal(id, 3);
    assert_false(key_exists(&b, "spko:1"));
    assert_false(key_exists(&b, "spkrc:1"));
    assert_true(key_exists(&b, "spko:2"));
    pl_prekey kept;
    e2e_unseal_to(&b, "spko:2", &kept, sizeof kept);
    assert_int_equal(kept.id, 2);
    assert_memory_equal(kept.kp.pk, b2.spk_pub, 32);
    sodium_memzero(&kept, sizeof kept);

    /* p3's message names SPK 1, which is gone: visible, not silent */
    pl_e2e_session *s3 = start(&p3, &b3);
    send_text(&p3, s3, &ub, "spk-three after the deletion", NULL, 0);
    tcl_wait_msg(&b, "could not decrypt");
    const pl_msg *m = tcl_find_msg(&b, "could not decrypt");
    assert_string_equal(m->kind, "undecryptable");
    assert_string_equal(m->from, p3.u.id);
    assert_int_equal(tcl_count_msgs(&b, "spk-three"), 0);

    pl_e2e_session_free(s1);
    pl_e2e_session_free(s2);
    pl_e2e_session_free(s3);
    peer_free(&p1);
    peer_free(&p2);
    peer_free(&p3);
    tcl_close(&b, false);
}

T_TEST(test_e2e_spk_replay)
{
    assert_int_equal(pl_e2e_init(), 0);
    tuser ub;
    tcl b;
    open_b(&b, &ub);
    peer p;
    peer_new(&p, "sr");

    /* a session on SPK 1 without an OPK: its first message is kept to be sent again */
    pl_bundle bb;
    claim(&p, &ub, false, &bb);
    pl_e2e_session *s1 = start(&p, &bb);
    char first[6000];
    send_text(&p, s1, &ub, "replay-one, the original", first, sizeof first);
    tcl_wait_msg(&b, "replay-one");
    size_t n;
    unsigned char *rc = e2e_unseal(&b, "spkrc:1", &n);
    free(rc);
    assert_int_equal(n, 32);

    /* a second session from the same device replaces the first one at b */
    claim(&p, &ub, false, &bb);
    pl_e2e_session *s2 = start(&p, &bb);
    send_text(&p, s2, &ub, "replay-two, a new session", NULL, 0);
    tcl_wait_msg(&b, "replay-two");
    rc = e2e_unseal(&b, "spkrc:1", &n);
    free(rc);
    assert_int_equal(n, 64);

    /* the first message again, with a new cmid: refused by the replay cache */
    char cmid[40];
    t_id(cmid, sizeof cmid, "c_replay");
    send_raw(&p, &ub, cmid, first);
    tcl_wait_msg(&b, "could not decrypt");
    const pl_msg *m = tcl_find_msg(&b, "could not decrypt");
    assert_string_equal(m->kind, "undecryptable");
    assert_string_equal(m->from, p.u.id);
    assert_non_null(strstr(m->text, "replayed message"));
    assert_int_equal(tcl_count_msgs(&b, "replay-one"), 1);
    rc = e2e_unseal(&b, "spkrc:1", &n);
    free(rc);
    assert_int_equal(n, 64);

    /* no session was made from it: the second one still carries p's messages */
    send_text(&p, s2, &ub, "replay-three on the second session", NULL, 0);
    tcl_wait_msg(&b, "replay-three");
    assert_string_equal(tcl_find_msg(&b, "replay-three")->kind, "text");
    assert_int_equal(tcl_count_msgs(&b, "could not decrypt"), 1);

    pl_e2e_session_free(s1);
    pl_e2e_session_free(s2);
    peer_free(&p);
    tcl_close(&b, false);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_e2e_spk_rotation),
        cmocka_unit_test(test_e2e_spk_replay),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
