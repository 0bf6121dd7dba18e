/* test_e2e_multi.c: end-to-end encryption across several devices per user and in groups,
 * through a real parleyd: two users with two devices each (the second ones linked from the
 * first) exchange direct messages and every device, one of them offline for a while, holds each
 * message exactly once; a group of four with Sender Keys where every member decrypts every
 * message; a removed member whose stored sender keys cannot decrypt what is sent after the
 * removal; and the server's database, WAL and log hold none of the plaintexts. */
#include "e2ehelp.h"

TSRV_FIXTURE(srv)

/* MESSAGE events of t whose text contains s. */
typedef struct {
    tcl **ts;
    int n;
    const char *text;
} want_all;

static bool all_have(void *ud)
{
    want_all *w = ud;
    for (int i = 0; i < w->n; i++)
        if (tcl_count_msgs(w->ts[i], w->text) == 0) return false;
    return true;
}

/* Every client of ts gets a MESSAGE with text. */
static void wait_all(tcl **ts, int n, const char *text)
{
    want_all w = {ts, n, text};
    bool ok = tcl_wait(ts, n, all_have, &w, 20000);
    for (int i = 0; !ok && i < n; i++)
        if (tcl_count_msgs(ts[i], text) == 0)
            t_note("[%s] no message with \"%s\" (%d messages)", ts[i]->label, text, ts[i]->nmsgs);
    assert_true(ok);
}

/* How many messages of conv in t's store have exactly this text (and kind text). */
static int in_history(tcl *t, const char *conv, const char *text)
{
    pl_msg *h;
    size_t n;
    assert_int_equal(pl_msgs_history(t->c, conv, 0, 500, &h, &n), 0);
    int k = 0;
    for (size_t i = 0; i < n; i++)
        if (h[i].text && strcmp(h[i].text, text) == 0) {
            assert_string_equal(h[i].kind, "text");
            k++;
        }
    pl_msgs_free(h, n);
    return k;
}

/* The new device `second` of user u (logged in as u2) is linked from `first`. */
static void link_device(tcl *first, const tuser *u, tcl *second, tuser *u2, const char *label)
{
    assert_int_equal(tuser_login(srv.port, u->username, u->password, u2), 200);
    assert_string_equal(u2->id, u->id);
    tcl_open_user(second, label, srv.port, u2);
    /* the account has an identity: no second one is made, and nothing encrypted works yet */
    assert_int_equal(pl_e2e_enable(second->c), PL_ENOTLINKED);
    char *code = NULL;
    assert_int_equal(pl_link_begin(second->c, &code), 0);
    assert_int_equal(strlen(code), 64);
    assert_int_equal(pl_link_finish(second->c), PL_ENOTFOUND); /* not approved yet */
    assert_int_equal(pl_link_approve(first->c, "not a code", u2->device), PL_EINVAL);
    assert_int_equal(pl_link_approve(first->c, code, u2->device), 0);
    assert_int_equal(pl_link_finish(second->c), 0);
    assert_int_equal(pl_link_finish(second->c), PL_ESTATE); /* done: nothing left to finish */
    assert_int_equal(pl_e2e_enable(second->c), 0);
    free(code);
    /* the server lists both devices under one identity key */
    int status;
    json_t *r = NULL;
    char path[128];
    snprintf(path, sizeof path, "/v1/users/%s/devices", u->id);
    assert_int_equal(thttp_req(srv.port, "GET", path, u->token, NULL, &status, &r), 0);
    assert_int_equal(status, 200);
    assert_int_equal(json_array_size(json_object_get(r, "devices")), 2);
    json_decref(r);
}

static void connect_all(tcl **ts, int n)
{
    for (int i = 0; i < n; i++) assert_int_equal(pl_client_connect(ts[i]->c), 0);
    for (int i = 0; i < n; i++) tcl_wait_online(ts[i], 10000);
}

/* The server's database, its WAL and its log hold none of secrets (the scan looks at the right
 * files: `marker`, an id, is in the database). */
static void scan_server(const char *const *secrets, size_t n, const char *marker)
{
    char db[PATH_MAX + 32], wal[PATH_MAX + 32];
    snprintf(db, sizeof db, "%s/parley.db", srv.dir);
    snprintf(wal, sizeof wal, "%s/parley.db-wal", srv.dir);
    assert_true(t_file_has(db, marker) || t_file_has(wal, marker));
    for (size_t i = 0; i < n; i++) {
        assert_false(t_file_has(db, secrets[i]));
        assert_false(t_file_has(wal, secrets[i]));
        assert_false(t_file_has(srv.log_path, secrets[i]));
    }
}

T_TEST(test_e2e_two_devices_each)
{
    tuser ua, ub, ua2, ub2;
    tcl a1, a2, b1, b2;
    assert_int_equal(tuser_new(srv.port, "ma", &ua), 201);
    assert_int_equal(tuser_new(srv.port, "mb", &ub), 201);
    tcl_open_user(&a1, "a1", srv.port, &ua);
    tcl_open_user(&b1, "b1", srv.port, &ub);
    assert_int_equal(pl_e2e_enable(a1.c), 0);
    assert_int_equal(pl_e2e_enable(b1.c), 0);
    link_device(&a1, &ua, &a2, &ua2, "a2");
    link_device(&b1, &ub, &b2, &ub2, "b2");
    /* the linked device carries the first one's pins: none yet; it has a's identity */
    tcl *all[] = {&a1, &a2, &b1, &b2};
    connect_all(all, 4);

    const char *m1 = "secret-m1 a1 to b", *m2 = "secret-m2 b2 to a", *m3 = "secret-m3 a2 to b",
               *m4 = "secret-m4 b1 to a";
    assert_int_equal(pl_msg_send(a1.c, ub.id, m1, NULL), 0);
    tcl *not_a1[] = {&a2, &b1, &b2};
    wait_all(not_a1, 3, m1);
    assert_int_equal(pl_msg_send(b2.c, ua.id, m2, NULL), 0);
    tcl *not_b2[] = {&a1, &a2, &b1};
    wait_all(not_b2, 3, m2);
    assert_int_equal(pl_msg_send(a2.c, ub.id, m3, NULL), 0);
    tcl *not_a2[] = {&a1, &b1, &b2};
    wait_all(not_a2, 3, m3);
    assert_int_equal(pl_msg_send(b1.c, ua.id, m4, NULL), 0);
    tcl *not_b1[] = {&a1, &a2, &b2};
    wait_all(not_b1, 3, m4);
    /* a2 shows a1's message as sent by this user */
    for (int i = 0; i < a2.nmsgs; i++)
        if (strstr(a2.msgs[i].text ? a2.msgs[i].text : "", "secret-m1"))
            assert_string_equal(a2.msgs[i].from, ua.id);

    /* b2 is offline while a1 and b1 write; it syncs later */
    tcl_close(&b2, true);
    const char *m5 = "secret-m5 while b2 is away", *m6 = "secret-m6 b1 answers";
    assert_int_equal(pl_msg_send(a1.c, ub.id, m5, NULL), 0);
    tcl *t3[] = {&a2, &b1};
    wait_all(t3, 2, m5);
    assert_int_equal(pl_msg_send(b1.c, ua.id, m6, NULL), 0);
    tcl *t4[] = {&a1, &a2};
    wait_all(t4, 2, m6);
    char url[64];
    const char *servers[] = {tcl_url(url, sizeof url, srv.port)};
    tcl_open(&b2, "b2", servers, 1, true);
    assert_int_equal(pl_client_connect(b2.c), 0);
    tcl *only_b2[] = {&b2};
    wait_all(only_b2, 1, m5);
    wait_all(only_b2, 1, m6);

    /* every device holds every message exactly once, in plaintext, with no placeholder */
    const char *texts[] = {m1, m2, m3, m4, m5, m6};
    char conv[PL_ID_MAX];
    assert_int_equal(pl_conv_direct(a1.c, ub.id, conv), 0);
    for (int d = 0; d < 4; d++) {
        tcl_drain(all[d]);
        assert_int_equal(tcl_count_msgs(all[d], "could not decrypt"), 0);
        for (size_t i = 0; i < 6; i++) {
            if (in_history(all[d], conv, texts[i]) != 1)
                t_note("[%s] \"%s\" held %d times", all[d]->label, texts[i],
                       in_history(all[d], conv, texts[i]));
            assert_int_equal(in_history(all[d], conv, texts[i]), 1);
            assert_true(tcl_count_msgs(all[d], texts[i]) <= 1);
        }
        assert_int_equal(all[d]->nfailed, 0);
    }
    for (int d = 0; d < 4; d++) tcl_close(all[d], false);
    const char *secrets[] = {"secret-m1", "secret-m2", "secret-m3",
                             "secret-m4", "secret-m5", "secret-m6"};
    scan_server(secrets, 6, ub2.device);
}

/* Four users in an encrypted group. */
typedef struct grp {
    tuser u[4];
    tcl t[4];
    char id[PL_ID_MAX];
} grp;

static __attribute__((noinline)) void open_one(tcl *t, const char *label, const tuser *u)
{
    tcl_open_user(t, label, srv.port, u);
}

static void group_open(grp *g, const char *prefix)
{
    const char *labels[] = {"g0", "g1", "g2", "g3"};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(tuser_new(srv.port, prefix, &g->u[i]), 201);
        open_one(&g->t[i], labels[i], &g->u[i]);
        assert_int_equal(pl_e2e_enable(g->t[i].c), 0);
    }
    const char *members[] = {g->u[1].id, g->u[2].id, g->u[3].id};
    pl_group out;
    assert_int_equal(pl_group_create(g->t[0].c, "sealed", members, 3, &out), 0);
    snprintf(g->id, sizeof g->id, "%s", out.id);
    pl_group_clear(&out);
    assert_false(pl_group_encrypted(g->t[0].c, g->id));
    assert_int_equal(pl_group_set_encrypted(g->t[0].c, g->id), 0);
    assert_true(pl_group_encrypted(g->t[0].c, g->id));
    assert_int_equal(pl_group_set_encrypted(g->t[0].c, g->id), 0); /* again: no change */
    tcl *all[] = {&g->t[0], &g->t[1], &g->t[2], &g->t[3]};
    connect_all(all, 4);
}

static void group_say(grp *g, int who, const char *text, int nrecv, const int *recv)
{
    assert_int_equal(pl_msg_send(g->t[who].c, g->id, text, NULL), 0);
    tcl *ts[4];
    for (int i = 0; i < nrecv; i++) ts[i] = &g->t[recv[i]];
    wait_all(ts, nrecv, text);
    for (int i = 0; i < nrecv; i++) assert_int_equal(tcl_count_msgs(ts[i], text), 1);
}

T_TEST(test_e2e_group_sender_keys)
{
    static grp g;
    group_open(&g, "gk");
    /* a plaintext send is refused by the server now: the client never tries one */
    int others[4][3] = {{1, 2, 3}, {0, 2, 3}, {0, 1, 3}, {0, 1, 2}};
    char text[64];
    for (int round = 0; round < 2; round++)
        for (int i = 0; i < 4; i++) {
            snprintf(text, sizeof text, "secret-g%d-from-%d", round, i);
            group_say(&g, i, text, 3, others[i]);
        }
    for (int i = 0; i < 4; i++) {
        tcl_drain(&g.t[i]);
        assert_int_equal(tcl_count_msgs(&g.t[i], "could not decrypt"), 0);
        assert_int_equal(g.t[i].nfailed, 0);
        for (int round = 0; round < 2; round++)
            for (int k = 0; k < 4; k++) {
                snprintf(text, sizeof text, "secret-g%d-from-%d", round, k);
                assert_int_equal(in_history(&g.t[i], g.id, text), 1);
            }
    }
    /* the second message of a sender carried no pairwise entries: the key went once */
    for (int i = 0; i < 4; i++) tcl_close(&g.t[i], false);
    const char *secrets[] = {"secret-g0-from-0", "secret-g0-from-1", "secret-g0-from-2",
                             "secret-g0-from-3", "secret-g1-from-0", "secret-g1-from-3"};
    scan_server(secrets, 6, g.id);
}

T_TEST(test_e2e_group_removed_member)
{
    static grp g;
    group_open(&g, "gr");
    int to_all[3] = {1, 2, 3}, to_rest[2] = {1, 2};
    group_say(&g, 0, "secret-r1 before the removal", 3, to_all);
    group_say(&g, 3, "secret-r2 from the one leaving", 3, (int[]){0, 1, 2});
    /* g3 holds g0's sender key now */
    char rec[256];
    snprintf(rec, sizeof rec, "skp:%s:%s:%s", g.id, g.u[0].id, g.u[0].device);
    size_t rn;
    unsigned char *rb = e2e_unseal(&g.t[3], rec, &rn);
    free(rb);

    assert_int_equal(pl_group_remove(g.t[0].c, g.id, g.u[3].id), 0);
    const char *after = "secret-r3 after the removal";
    group_say(&g, 0, after, 2, to_rest);
    group_say(&g, 1, "secret-r4 also after", 2, (int[]){0, 2});
    t_sleep_ms(300);
    tcl_drain(&g.t[3]);
    assert_int_equal(tcl_count_msgs(&g.t[3], "secret-r3"), 0);
    assert_int_equal(tcl_count_msgs(&g.t[3], "secret-r4"), 0);

    /* the exact body sent after the removal (g0's outbox row, and the server's copy): no
     * pairwise entry for the removed user's device, a new distribution */
    char *cmid =
        db_text(g.t[0].store, "SELECT cmid FROM messages WHERE body LIKE ?", "%secret-r3%");
    char sdb[PATH_MAX + 32];
    snprintf(sdb, sizeof sdb, "%s/parley.db", srv.dir);
    char *sbody = db_text(sdb, "SELECT body FROM messages WHERE cmid = ?", cmid);
    char *wire = db_text(g.t[0].store, "SELECT wire FROM messages WHERE cmid = ?", cmid);
    json_t *w = json_loads(wire, 0, NULL), *sw = json_loads(sbody, 0, NULL);
    assert_non_null(w);
    assert_non_null(sw);
    assert_string_equal(json_string_value(json_object_get(w, "g")),
                        json_string_value(json_object_get(sw, "g")));
    json_t *devs = json_object_get(sw, "devs");
    assert_true(json_array_size(devs) >= 2); /* the rotation sent the new key to g1 and g2 */
    for (size_t i = 0; i < json_array_size(devs); i++)
        assert_string_not_equal(json_string_value(json_object_get(json_array_get(devs, i), "u")),
                                g.u[3].id);

    /* the removed device's stored receiving states for g0 cannot decrypt it */
    assert_int_equal(pl_e2e_init(), 0);
    const char *g64 = json_string_value(json_object_get(sw, "g"));
    unsigned char gct[8192];
    size_t glen;
    assert_int_equal(sodium_base642bin(gct, sizeof gct, g64, strlen(g64), NULL, &glen, NULL,
                                       sodium_base64_VARIANT_URLSAFE_NO_PADDING),
                     0);
    tcl_close(&g.t[3], true);
    rb = e2e_unseal(&g.t[3], rec, &rn);
    pl_sk_peer *p = NULL;
    assert_int_equal(pl_sk_peer_deserialize(&p, rb, rn), 0);
    assert_true(pl_sk_peer_count(p) >= 1);
    unsigned char pt[PL_E2E_PAYLOAD_MAX];
    pl_e2e_out o = {.buf = pt, .cap = sizeof pt};
    assert_int_equal(pl_sk_decrypt(p, gct, glen, 1, &o), PL_E2E_ENOKEY);
    pl_sk_peer_free(p);
    free(rb);
    /* nor does any state g3 stored for g1 read g1's message after the removal */
    char *cmid4 =
        db_text(g.t[1].store, "SELECT cmid FROM messages WHERE body LIKE ?", "%secret-r4%");
    char *sbody4 = db_text(sdb, "SELECT body FROM messages WHERE cmid = ?", cmid4);
    json_t *sw4 = json_loads(sbody4, 0, NULL);
    g64 = json_string_value(json_object_get(sw4, "g"));
    assert_int_equal(sodium_base642bin(gct, sizeof gct, g64, strlen(g64), NULL, &glen, NULL,
                                       sodium_base64_VARIANT_URLSAFE_NO_PADDING),
                     0);
    snprintf(rec, sizeof rec, "skp:%s:%s:%s", g.id, g.u[1].id, g.u[1].device);
    bool has_rec =
        db_int(g.t[3].store, "SELECT count(*) FROM e2e_keys WHERE name = ?", rec, NULL) == 1;
    if (has_rec) {
        rb = e2e_unseal(&g.t[3], rec, &rn);
        assert_int_equal(pl_sk_peer_deserialize(&p, rb, rn), 0);
        assert_int_equal(pl_sk_decrypt(p, gct, glen, 1, &o), PL_E2E_ENOKEY);
        pl_sk_peer_free(p);
        free(rb);
    }
    json_decref(w);
    json_decref(sw);
    json_decref(sw4);
    free(cmid);
    free(cmid4);
    free(sbody);
    free(sbody4);
    free(wire);
    for (int i = 0; i < 3; i++) {
        tcl_drain(&g.t[i]);
        assert_int_equal(tcl_count_msgs(&g.t[i], "could not decrypt"), 0);
        tcl_close(&g.t[i], false);
    }
    tcl_close(&g.t[3], false);
    const char *secrets[] = {"secret-r1", "secret-r2", "secret-r3", "secret-r4"};
    scan_server(secrets, 4, g.id);
}

/* A group message that arrives before its sender key is parked ("has not arrived yet") and
 * shown when the key comes. The sending device X2 is played here with the e2e core: a second
 * device of x certified by x's AIK, whose first SKMSG carries no SKDM and whose second does. */
T_TEST(test_e2e_group_parked_until_key)
{
    tuser ux, ub, ux2;
    tcl x, b;
    assert_int_equal(tuser_new(srv.port, "px", &ux), 201);
    assert_int_equal(tuser_new(srv.port, "pb", &ub), 201);
    tcl_open_user(&x, "x", srv.port, &ux);
    tcl_open_user(&b, "b", srv.port, &ub);
    assert_int_equal(pl_e2e_enable(x.c), 0);
    assert_int_equal(pl_e2e_enable(b.c), 0);
    const char *members[] = {ub.id};
    pl_group grp_out;
    assert_int_equal(pl_group_create(x.c, "parked", members, 1, &grp_out), 0);
    char gid[PL_ID_MAX];
    snprintf(gid, sizeof gid, "%s", grp_out.id);
    pl_group_clear(&grp_out);
    assert_int_equal(pl_group_set_encrypted(x.c, gid), 0);
    tcl *both[] = {&x, &b};
    connect_all(both, 2);
    tcl *only_b[] = {&b};
    assert_int_equal(pl_msg_send(x.c, gid, "secret-p0 first", NULL), 0);
    wait_all(only_b, 1, "secret-p0");

    /* x's second device X2, its bundle certified by x's AIK */
    assert_int_equal(pl_e2e_init(), 0);
    assert_int_equal(tuser_login(srv.port, ux.username, ux.password, &ux2), 200);
    pl_sign_pair aik;
    e2e_unseal_to(&x, "aik", &aik, sizeof aik);
    pl_e2e_self self2;
    pl_prekey spk;
    e2e_publish_by_hand(srv.port, &aik, ux.id, &ux2, &self2, &spk);

    /* X2's sender key; its SKDM taken now, at iteration 0, and held back */
    pl_sk_sender *sk = NULL;
    assert_int_equal(pl_sk_sender_new(&sk, gid, ux.id, ux2.device, 1), 0);
    unsigned char skdm[PL_SKDM_MAX];
    size_t skdm_len;
    assert_int_equal(pl_sk_sender_skdm(sk, skdm, sizeof skdm, &skdm_len), 0);
    /* dl over D(conv) seen from X2: x's first device and b's device */
    char l1[128], l2[128];
    snprintf(l1, sizeof l1, "%s:%s\n", ux.id, ux.device);
    snprintf(l2, sizeof l2, "%s:%s\n", ub.id, ub.device);
    const char *lo = strcmp(l1, l2) < 0 ? l1 : l2, *hi = lo == l1 ? l2 : l1;
    crypto_hash_sha256_state hs;
    unsigned char full[32];
    crypto_hash_sha256_init(&hs);
    crypto_hash_sha256_update(&hs, (const unsigned char *)lo, strlen(lo));
    crypto_hash_sha256_update(&hs, (const unsigned char *)hi, strlen(hi));
    crypto_hash_sha256_final(&hs, full);
    char dl[32];
    b64url(dl, sizeof dl, full, 16);

    tws *ws = tws_live(srv.port, &ux2, "x2");
    assert_non_null(ws);
    unsigned char g[4096];
    char g64[6000], cmid1[40], cmid2[40];
    size_t glen;
    t_id(cmid1, sizeof cmid1, "c_p1");
    t_id(cmid2, sizeof cmid2, "c_p2");
    char content[512];
    snprintf(content, sizeof content,
             "{\"to\":\"%s\",\"cmid\":\"%s\",\"ts\":1,\"kind\":\"text\",\"body\":{\"text\":"
             "\"secret-p1 parked\"}}",
             gid, cmid1);
    assert_int_equal(
        pl_sk_encrypt(sk, (const unsigned char *)content, strlen(content), g, sizeof g, &glen), 0);
    b64url(g64, sizeof g64, g, glen);
    json_t *f = json_pack("{s:s, s:s, s:s, s:s, s:s, s:{s:i, s:b, s:[], s:s, s:s}}", "type", "send",
                          "id", "p1", "to", gid, "cmid", cmid1, "kind", "e2e", "body", "v", 1,
                          "ctl", 0, "devs", "g", g64, "dl", dl);
    assert_int_equal(tws_send_json(ws, f), 0);
    json_decref(f);
    json_t *ack = tws_expect_reply(ws, "ack", "p1", 5000);
    assert_non_null(ack);
    json_decref(ack);
    wait_all(only_b, 1, "has not arrived yet");

    /* the key comes with the next message, over a new pairwise session with b's device */
    int status;
    json_t *r = NULL;
    assert_int_equal(thttp_reqp(srv.port, "POST", "/v1/keys/claim", ux2.token, &status, &r,
                                "{s:[{s:s, s:s}]}", "devices", "user", ub.id, "device", ub.device),
                     0);
    assert_int_equal(status, 200);
    json_t *jb = json_array_get(json_object_get(r, "bundles"), 0);
    pl_bundle bb;
    memset(&bb, 0, sizeof bb);
    snprintf(bb.user, sizeof bb.user, "%s", ub.id);
    snprintf(bb.device, sizeof bb.device, "%s", ub.device);
    assert_int_equal(unb64url(bb.aik, 32, json_string_value(json_object_get(jb, "aik"))), 32);
    bb.dcert_len =
        unb64url(bb.dcert, sizeof bb.dcert, json_string_value(json_object_get(jb, "dcert")));
    json_t *jspk = json_object_get(jb, "spk"), *jopk = json_object_get(jb, "opk");
    bb.spk_id = (uint32_t)json_integer_value(json_object_get(jspk, "id"));
    unb64url(bb.spk_pub, 32, json_string_value(json_object_get(jspk, "pub")));
    unb64url(bb.spk_sig, 64, json_string_value(json_object_get(jspk, "sig")));
    bb.opk_id = PL_OPK_NONE;
    if (json_is_object(jopk)) {
        bb.opk_id = (uint32_t)json_integer_value(json_object_get(jopk, "id"));
        unb64url(bb.opk_pub, 32, json_string_value(json_object_get(jopk, "pub")));
    }
    json_decref(r);
    pl_e2e_session *sess = NULL;
    assert_int_equal(pl_x3dh_initiate(&sess, &self2, &bb, bb.aik), 0);
    unsigned char ct[2048];
    size_t ctlen;
    assert_int_equal(
        pl_e2e_session_encrypt(sess, PL_CT_SKDM, skdm, skdm_len, ct, sizeof ct, &ctlen), 0);
    char c64[3000];
    b64url(c64, sizeof c64, ct, ctlen);
    snprintf(content, sizeof content,
             "{\"to\":\"%s\",\"cmid\":\"%s\",\"ts\":2,\"kind\":\"text\",\"body\":{\"text\":"
             "\"secret-p2 with the key\"}}",
             gid, cmid2);
    assert_int_equal(
        pl_sk_encrypt(sk, (const unsigned char *)content, strlen(content), g, sizeof g, &glen), 0);
    b64url(g64, sizeof g64, g, glen);
    f = json_pack("{s:s, s:s, s:s, s:s, s:s, s:{s:i, s:b, s:[{s:s, s:s, s:s}], s:s, s:s}}", "type",
                  "send", "id", "p2", "to", gid, "cmid", cmid2, "kind", "e2e", "body", "v", 1,
                  "ctl", 0, "devs", "u", ub.id, "d", ub.device, "c", c64, "g", g64, "dl", dl);
    assert_int_equal(tws_send_json(ws, f), 0);
    json_decref(f);
    ack = tws_expect_reply(ws, "ack", "p2", 5000);
    assert_non_null(ack);
    json_decref(ack);
    wait_all(only_b, 1, "secret-p2 with the key");
    wait_all(only_b, 1, "secret-p1 parked"); /* the parked one, shown now */
    tcl_drain(&b);
    assert_int_equal(in_history(&b, gid, "secret-p1 parked"), 1);
    assert_int_equal(in_history(&b, gid, "secret-p2 with the key"), 1);
    pl_e2e_session_free(sess);
    pl_sk_sender_free(sk);
    pl_e2e_self_wipe(&self2);
    sodium_memzero(&aik, sizeof aik);
    tws_free(ws);
    tcl_close(&x, false);
    tcl_close(&b, false);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_e2e_two_devices_each),
        cmocka_unit_test(test_e2e_group_sender_keys),
        cmocka_unit_test(test_e2e_group_removed_member),
        cmocka_unit_test(test_e2e_group_parked_until_key),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
