/* test_e2e.c: end-to-end encrypted direct messages between two libparley clients through a real
 * parleyd: both ways, with the receiver offline and syncing later; the server's database and log
 * hold none of the plaintexts; a garbage ciphertext shows as a visible "could not decrypt"
 * message; the safety numbers agree on both sides. */
#include "e2ehelp.h"

#include <stdarg.h>
#include <sys/stat.h>
#include <sys/wait.h>

TSRV_FIXTURE(srv)

static bool acked(void *ud)
{
    tcl *t = ud;
    return t->nacks > 0;
}

#define file_has t_file_has

static void open_pair(tcl *a, tcl *b, tuser *ua, tuser *ub)
{
    assert_int_equal(tuser_new(srv.port, "ea", ua), 201);
    assert_int_equal(tuser_new(srv.port, "eb", ub), 201);
    tcl_open_user(a, "a", srv.port, ua);
    tcl_open_user(b, "b", srv.port, ub);
    assert_int_equal(pl_e2e_enable(a->c), 0);
    assert_int_equal(pl_e2e_enable(b->c), 0);
    assert_int_equal(pl_e2e_enable(a->c), 0); /* again: nothing to do */
    /* the local key file is private */
    char kp[PATH_MAX + 32];
    struct stat st;
    snprintf(kp, sizeof kp, "%s.key", a->store);
    assert_int_equal(stat(kp, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(pl_client_connect(a->c), 0);
    assert_int_equal(pl_client_connect(b->c), 0);
    tcl_wait_online(a, 10000);
    tcl_wait_online(b, 10000);
}

T_TEST(test_e2e_both_ways_offline_and_nothing_in_clear)
{
    tuser ua, ub;
    tcl a, b;
    open_pair(&a, &b, &ua, &ub);
    assert_false(pl_e2e_with(a.c, ub.id));

    const char *t1 = "secret-alpha from a to b";
    pl_msg out;
    assert_int_equal(pl_msg_send(a.c, ub.id, t1, &out), 0);
    assert_string_equal(out.kind, "text"); /* the sender's store keeps the plaintext */
    assert_string_equal(out.text, t1);
    pl_msg_clear(&out);
    assert_true(pl_e2e_with(a.c, ub.id));
    tcl_wait_msg(&b, t1);
    assert_string_equal(tcl_find_msg(&b, t1)->from, ua.id);
    assert_true(pl_e2e_with(b.c, ua.id));

    const char *t2 = "secret-bravo from b to a";
    assert_int_equal(pl_msg_send(b.c, ua.id, t2, NULL), 0);
    tcl_wait_msg(&a, t2);

    /* b goes offline; a sends two; b comes back and syncs them */
    tcl_close(&b, true);
    const char *t3 = "secret-charlie while b is away";
    const char *t4 = "secret-delta while b is away";
    assert_int_equal(pl_msg_send(a.c, ub.id, t3, NULL), 0);
    assert_int_equal(pl_msg_send(a.c, ub.id, t4, NULL), 0);
    tcl *ta[] = {&a};
    a.nacks = 0;
    assert_true(tcl_wait(ta, 1, acked, &a, 10000));
    char url[64];
    const char *servers[] = {tcl_url(url, sizeof url, srv.port)};
    tcl_open(&b, "b", servers, 1, true);
    assert_int_equal(pl_client_connect(b.c), 0);
    tcl_wait_msg(&b, t3);
    tcl_wait_msg(&b, t4);
    const char *t5 = "secret-echo b answers after sync";
    assert_int_equal(pl_msg_send(b.c, ua.id, t5, NULL), 0);
    tcl_wait_msg(&a, t5);

    /* the stores keep the plaintext history */
    pl_msg *h;
    size_t n;
    char conv[PL_ID_MAX];
    assert_int_equal(pl_conv_direct(b.c, ua.id, conv), 0);
    assert_int_equal(pl_msgs_history(b.c, conv, 0, 50, &h, &n), 0);
    assert_int_equal(n, 5);
    for (size_t i = 0; i < n; i++) assert_string_equal(h[i].kind, "text");
    pl_msgs_free(h, n);

    /* safety numbers: the same on both sides */
    char sa[PL_SAFETY_NUMBER_LEN + 1], sb[PL_SAFETY_NUMBER_LEN + 1];
    assert_int_equal(pl_safety_number_get(a.c, ub.id, sa), 0);
    assert_int_equal(pl_safety_number_get(b.c, ua.id, sb), 0);
    assert_int_equal(strlen(sa), 60);
    assert_string_equal(sa, sb);
    bool v = true;
    assert_int_equal(pl_contact_verified(a.c, ub.id, &v), 0);
    assert_false(v);
    assert_int_equal(pl_contact_set_verified(a.c, ub.id, true), 0);
    assert_int_equal(pl_contact_verified(a.c, ub.id, &v), 0);
    assert_true(v);
    assert_int_equal(pl_msg_send(a.c, ub.id, "secret-foxtrot after verifying", NULL), 0);
    tcl_wait_msg(&b, "secret-foxtrot");

    /* a is offline (no server reachable): the message is encrypted to the known session,
     * waits in the outbox and goes out when a connects again */
    tcl_close(&a, true);
    char dead[64];
    const char *dead_servers[] = {tcl_url(dead, sizeof dead, tcl_dead_port())};
    tcl_open(&a, "a", dead_servers, 1, true);
    assert_int_equal(pl_msg_send(a.c, ub.id, "secret-hotel sent offline", &out), 0);
    assert_int_equal(out.status, PL_MSG_PENDING);
    pl_msg_clear(&out);
    tcl_close(&a, true);
    tcl_open(&a, "a", servers, 1, true);
    assert_int_equal(pl_client_connect(a.c), 0);
    tcl_wait_msg(&b, "secret-hotel");

    /* the server kept none of the plaintexts, in its database or its log */
    tcl_close(&a, false);
    tcl_close(&b, false);
    const char *secrets[] = {"secret-alpha", "secret-bravo",   "secret-charlie", "secret-delta",
                             "secret-echo",  "secret-foxtrot", "secret-hotel"};
    char path[PATH_MAX + 32];
    const char *files[] = {"parley.db", "parley.db-wal"};
    for (size_t f = 0; f < 2; f++) {
        snprintf(path, sizeof path, "%s/%s", srv.dir, files[f]);
        for (size_t i = 0; i < sizeof secrets / sizeof secrets[0]; i++)
            assert_false(file_has(path, secrets[i]));
    }
    /* the check does look at the right files: the ids are there */
    char wal[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/parley.db", srv.dir);
    snprintf(wal, sizeof wal, "%s/parley.db-wal", srv.dir);
    assert_true(file_has(path, ub.id) || file_has(wal, ub.id));
    for (size_t i = 0; i < sizeof secrets / sizeof secrets[0]; i++)
        assert_false(file_has(srv.log_path, secrets[i]));
}

T_TEST(test_e2e_garbage_ciphertext_is_visible)
{
    tuser ua, ub;
    tcl a, b;
    open_pair(&a, &b, &ua, &ub);
    assert_int_equal(pl_msg_send(a.c, ub.id, "hello first", NULL), 0);
    tcl_wait_msg(&b, "hello first");

    /* a raw socket with a's token sends an e2e message whose ciphertext is garbage */
    tws *ws = tws_live(srv.port, &ua, "raw");
    assert_non_null(ws);
    unsigned char junk[120];
    for (size_t i = 0; i < sizeof junk; i++) junk[i] = (unsigned char)(i * 37 + 11);
    junk[0] = 1, junk[1] = 1, junk[2] = 2; /* looks like a MSG */
    char c64[200];
    size_t k = 0;
    static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for (size_t i = 0; i + 3 <= sizeof junk; i += 3) {
        uint32_t w = (uint32_t)junk[i] << 16 | (uint32_t)junk[i + 1] << 8 | junk[i + 2];
        for (int j = 3; j >= 0; j--) c64[k++] = al[(w >> (6 * j)) & 63];
    }
    c64[k] = 0;
    char cmid[40];
    t_id(cmid, sizeof cmid, "c_raw");
    json_t *f = json_pack("{s:s, s:s, s:s, s:s, s:s, s:{s:i, s:[{s:s, s:s, s:s}]}}", "type", "send",
                          "id", "r1", "to", ub.id, "cmid", cmid, "kind", "e2e", "body", "v", 1,
                          "devs", "u", ub.id, "d", ub.device, "c", c64);
    assert_int_equal(tws_send_json(ws, f), 0);
    json_decref(f);
    json_t *ack = tws_expect_reply(ws, "ack", "r1", 5000);
    assert_non_null(ack);
    json_decref(ack);
    tws_free(ws);

    tcl_wait_msg(&b, "could not decrypt");
    const pl_msg *m = tcl_find_msg(&b, "could not decrypt");
    assert_string_equal(m->kind, "undecryptable");
    assert_string_equal(m->from, ua.id);

    /* the session is not hurt: the next real message decrypts */
    assert_int_equal(pl_msg_send(a.c, ub.id, "hello after junk", NULL), 0);
    tcl_wait_msg(&b, "hello after junk");
    assert_int_equal(pl_msg_send(b.c, ua.id, "reply after junk", NULL), 0);
    tcl_wait_msg(&a, "reply after junk");
    tcl_close(&a, false);
    tcl_close(&b, false);
}

/* Replaces the pinned identity key of `user` in t's store (sealed as e2ec.c does it), as if the
 * key had been pinned before the server's changed. */
static void fake_pin(tcl *t, const char *user, bool verified)
{
    char kp[PATH_MAX + 32];
    snprintf(kp, sizeof kp, "%s.key", t->store);
    FILE *f = fopen(kp, "rb");
    assert_non_null(f);
    unsigned char lk[32], pin[33], box[24 + 16 + 33];
    assert_int_equal(fread(lk, 1, 32, f), 32);
    fclose(f);
    randombytes_buf(pin, 32);
    pin[32] = verified ? 1 : 0;
    randombytes_buf(box, 24);
    crypto_secretbox_easy(box + 24, pin, sizeof pin, box, lk);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(t->store, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "INSERT OR REPLACE INTO e2e_keys(name, value) VALUES(?, ?)",
                                        -1, &st, NULL),
                     SQLITE_OK);
    char name[128];
    snprintf(name, sizeof name, "pin:%s", user);
    sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_blob(st, 2, box, sizeof box, SQLITE_TRANSIENT);
    assert_int_equal(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    sqlite3_close(db);
}

static bool got_identity_event;
static const char *identity_user;

static void drain_identity(tcl *t)
{
    pl_event ev;
    while (pl_client_next_event(t->c, &ev) == 0) {
        if (ev.kind == PL_EV_IDENTITY_CHANGED && strcmp(ev.user, identity_user) == 0)
            got_identity_event = true;
        tcl_handle(t, &ev);
    }
}

/* A contact's identity key changes (simulated: the pinned one is replaced): an event; while the
 * contact was verified, sending is refused until it is verified again; then a new session. */
T_TEST(test_e2e_identity_change)
{
    tuser ua, ub;
    tcl a, b;
    open_pair(&a, &b, &ua, &ub);
    assert_int_equal(pl_msg_send(a.c, ub.id, "before the change", NULL), 0);
    tcl_wait_msg(&b, "before the change");
    char sn1[PL_SAFETY_NUMBER_LEN + 1], sn2[PL_SAFETY_NUMBER_LEN + 1];
    assert_int_equal(pl_safety_number_get(a.c, ub.id, sn1), 0);

    /* not verified: the new key is pinned, an event says so, sending goes on */
    identity_user = ub.id;
    got_identity_event = false;
    fake_pin(&a, ub.id, false);
    assert_int_equal(pl_msg_send(a.c, ub.id, "after an unverified change", NULL), 0);
    drain_identity(&a);
    assert_true(got_identity_event);
    tcl_wait_msg(&b, "after an unverified change");
    assert_int_equal(pl_safety_number_get(a.c, ub.id, sn2), 0);
    assert_string_equal(sn1, sn2); /* the real key is pinned again */

    /* verified: sending is refused until verified again */
    got_identity_event = false;
    fake_pin(&a, ub.id, true);
    assert_int_equal(pl_msg_send(a.c, ub.id, "blocked", NULL), PL_EUNVERIFIED);
    drain_identity(&a);
    assert_true(got_identity_event);
    assert_int_equal(pl_msg_send(a.c, ub.id, "still blocked", NULL), PL_EUNVERIFIED);
    bool v = true;
    assert_int_equal(pl_contact_verified(a.c, ub.id, &v), 0);
    assert_false(v);
    assert_int_equal(pl_contact_set_verified(a.c, ub.id, true), 0);
    assert_int_equal(pl_msg_send(a.c, ub.id, "after verifying again", NULL), 0);
    tcl_wait_msg(&b, "after verifying again");
    assert_int_equal(pl_msg_send(b.c, ua.id, "b answers the new session", NULL), 0);
    tcl_wait_msg(&a, "b answers the new session");
    tcl_close(&a, false);
    tcl_close(&b, false);
}

/* b gets a second device (its bundle made here with b's AIK) while a is offline: a's queued
 * message names b's first device only; the server answers device_list_stale, a claims the new
 * device's bundle, adds its entry and sends again; both of b's devices can decrypt it. */
T_TEST(test_e2e_device_list_stale)
{
    tuser ua, ub, ub2;
    tcl a, b;
    open_pair(&a, &b, &ua, &ub);
    assert_int_equal(pl_e2e_init(), 0);
    assert_int_equal(pl_msg_send(a.c, ub.id, "first, to one device", NULL), 0);
    tcl_wait_msg(&b, "first, to one device");

    /* a goes offline and queues a message for the devices it knows */
    tcl_close(&a, true);
    char dead[64], url[64];
    const char *dead_servers[] = {tcl_url(dead, sizeof dead, tcl_dead_port())};
    const char *servers[] = {tcl_url(url, sizeof url, srv.port)};
    tcl_open(&a, "a", dead_servers, 1, true);
    assert_int_equal(pl_msg_send(a.c, ub.id, "secret-india to every device", NULL), 0);
    tcl_close(&a, true);

    /* b's second device publishes a bundle certified by b's AIK */
    assert_int_equal(tuser_login(srv.port, ub.username, ub.password, &ub2), 200);
    pl_sign_pair aik;
    e2e_unseal_to(&b, "aik", &aik, sizeof aik);
    pl_e2e_self self2;
    pl_prekey spk;
    e2e_publish_by_hand(srv.port, &aik, ub.id, &ub2, &self2, &spk);

    /* a comes back: refused once as stale, rebuilt, accepted */
    tcl_open(&a, "a", servers, 1, true);
    assert_int_equal(pl_client_connect(a.c), 0);
    tcl_wait_msg(&b, "secret-india");
    tcl_drain(&a);
    assert_int_equal(a.nfailed, 0);

    /* the second device's copy decrypts with its own keys (X3DH as responder, no OPK) */
    tws *ws = tws_auth(srv.port, ub2.token, NULL);
    assert_non_null(ws);
    json_t *msgs = json_array();
    assert_int_equal(tws_sync_all(ws, 0, 0, msgs, NULL, NULL), 0);
    const char *c64 = NULL;
    for (size_t i = 0; i < json_array_size(msgs); i++) {
        json_t *m = json_array_get(msgs, i);
        if (strcmp(json_string_value(json_object_get(m, "kind")), "e2e") == 0 &&
            json_string_value(json_object_get(json_object_get(m, "body"), "c")))
            c64 = json_string_value(json_object_get(json_object_get(m, "body"), "c"));
    }
    assert_non_null(c64);
    unsigned char ct[4096], pt[PL_E2E_PAYLOAD_MAX];
    size_t ctlen;
    assert_int_equal(sodium_base642bin(ct, sizeof ct, c64, strlen(c64), NULL, &ctlen, NULL,
                                       sodium_base64_VARIANT_URLSAFE_NO_PADDING),
                     0);
    pl_prekey_msg pm;
    assert_int_equal(pl_prekey_msg_parse(&pm, ct, ctlen), 0);
    pl_respond_keys k = {
        .pinned_aik = pm.aik, .from_user = ua.id, .from_dev = ua.device, .spk = &spk};
    pl_e2e_session *sess = NULL;
    pl_e2e_out o = {.buf = pt, .cap = sizeof pt};
    assert_int_equal(pl_x3dh_respond(&sess, &self2, &k, ct, ctlen, 1, &o), 0);
    assert_int_equal(o.ctype, PL_CT_CONTENT);
    json_t *content = json_loadb((const char *)pt, o.len, 0, NULL);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(content, "body"), "text")),
        "secret-india to every device");
    json_decref(content);
    pl_e2e_session_free(sess);
    pl_e2e_self_wipe(&self2);
    json_decref(msgs);
    tws_free(ws);
    tcl_close(&a, false);
    tcl_close(&b, false);
}

/* Claims drain b's one-time prekeys below 20: the server sends prekeys_low and the client
 * uploads 100 more. */
T_TEST(test_e2e_prekeys_refilled)
{
    tuser ub;
    assert_int_equal(tuser_new(srv.port, "pb", &ub), 201);
    tcl b;
    tcl_open_user(&b, "b", srv.port, &ub);
    assert_int_equal(pl_e2e_enable(b.c), 0);
    assert_int_equal(pl_client_connect(b.c), 0);
    tcl_wait_online(&b, 10000);
    int status;
    json_t *r = NULL;
    assert_int_equal(thttp_req(srv.port, "GET", "/v1/keys/prekeys", ub.token, NULL, &status, &r),
                     0);
    assert_int_equal(status, 200);
    assert_int_equal(json_integer_value(json_object_get(r, "opk_count")), 100);
    json_decref(r);
    /* 81 claims by three users (the server hands one claimer 30 OPKs an hour) */
    for (int k = 0; k < 81; k++) {
        static tuser cl;
        if (k % 30 == 0) assert_int_equal(tuser_new(srv.port, "pc", &cl), 201);
        assert_int_equal(thttp_reqp(srv.port, "POST", "/v1/keys/claim", cl.token, &status, &r,
                                    "{s:[{s:s, s:s}]}", "devices", "user", ub.id, "device",
                                    ub.device),
                         0);
        assert_int_equal(status, 200);
        assert_true(json_is_object(
            json_object_get(json_array_get(json_object_get(r, "bundles"), 0), "opk")));
        json_decref(r);
    }
    json_int_t count = 0;
    for (int i = 0; i < 100 && count < 100; i++) {
        tcl_drain(&b);
        t_sleep_ms(50);
        assert_int_equal(
            thttp_req(srv.port, "GET", "/v1/keys/prekeys", ub.token, NULL, &status, &r), 0);
        count = json_integer_value(json_object_get(r, "opk_count"));
        json_decref(r);
    }
    assert_int_equal(count, 119);
    tcl_close(&b, false);
}

/* The output of a shell command (at most cap - 1 bytes) and its exit status. */
static int run_out(char *out, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int run_out(char *out, size_t cap, const char *fmt, ...)
{
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* parley on the command line: register (keys made and published), send (encrypted), sync,
 * history (plaintext), convs (the lock), verify (the same safety number on both sides), and
 * linking a second device (link-begin, link-approve, link-finish) that then reads what is sent. */
T_TEST(test_e2e_parley_cli)
{
    char parley[PATH_MAX + 16], exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    assert_true(n > 0);
    exe[n] = 0;
    for (int i = 0; i < 3; i++) *strrchr(exe, '/') = 0; /* BUILD/tests/client/x -> BUILD */
    snprintf(parley, sizeof parley, "%s/parley", exe);
    assert_int_equal(access(parley, X_OK), 0);
    const char *tmp = getenv("TMPDIR");
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/ple2e.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    assert_non_null(mkdtemp(dir));
    char na[40], nb[40], out[8192], out2[8192], pfx[PATH_MAX * 2];
    t_name(na, sizeof na, "cla");
    t_name(nb, sizeof nb, "clb");
    snprintf(pfx, sizeof pfx,
             "ASAN_OPTIONS=detect_leaks=1 PARLEY_PASSWORD='correct horse battery' %s "
             "--server http://127.0.0.1:%d --timeout 10",
             parley, srv.port);
    assert_int_equal(run_out(out, sizeof out, "%s --profile %s/a register %s 2>&1", pfx, dir, na),
                     0);
    assert_int_equal(run_out(out, sizeof out, "%s --profile %s/b register %s 2>&1", pfx, dir, nb),
                     0);
    int rc = run_out(out, sizeof out, "%s --profile %s/a send %s 'secret-golf over the cli' 2>&1",
                     pfx, dir, nb);
    if (rc != 0) t_note("send: %s", out);
    assert_int_equal(rc, 0);
    assert_int_equal(run_out(out, sizeof out, "%s --profile %s/b sync 2>&1", pfx, dir), 0);
    rc = run_out(out, sizeof out, "%s --profile %s/b history %s 2>&1", pfx, dir, na);
    if (!strstr(out, "secret-golf over the cli")) t_note("history: %s", out);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "secret-golf over the cli"));
    assert_int_equal(run_out(out, sizeof out, "%s --offline --profile %s/b convs 2>&1", pfx, dir),
                     0);
    assert_non_null(strstr(out, "\xf0\x9f\x94\x92"));
    assert_int_equal(run_out(out, sizeof out, "%s -q --profile %s/a verify %s 2>&1", pfx, dir, nb),
                     0);
    assert_int_equal(
        run_out(out2, sizeof out2, "%s -q --profile %s/b verify %s 2>&1", pfx, dir, na), 0);
    assert_int_equal(strlen(out), 72); /* 12 groups of 5 digits in two lines */
    assert_string_equal(out, out2);
    assert_int_equal(
        run_out(out2, sizeof out2, "%s --profile %s/b verify %s confirm 2>&1", pfx, dir, na), 0);
    assert_int_equal(run_out(out2, sizeof out2, "%s --profile %s/b verify %s 2>&1", pfx, dir, na),
                     0);
    assert_non_null(strstr(out2, ": verified"));

    /* a second device of a, linked on the command line, reads what b sends afterwards */
    assert_int_equal(run_out(out, sizeof out, "%s --profile %s/a2 login %s 2>&1", pfx, dir, na), 0);
    rc = run_out(out, sizeof out, "%s --profile %s/a2 link-finish 2>&1", pfx, dir);
    if (rc == 0) t_note("link-finish before link-begin: %s", out);
    assert_true(rc != 0); /* nothing to finish yet: an error, not a half-linked device */
    char code[128], dev[64];
    assert_int_equal(run_out(out, sizeof out, "%s -q --profile %s/a2 link-begin", pfx, dir), 0);
    assert_int_equal(sscanf(out, "%127s", code), 1);
    assert_int_equal(strlen(code), 64); /* link_id and LK_pub, 48 bytes in base64url */
    assert_int_equal(run_out(out, sizeof out, "%s --offline --profile %s/a2 whoami", pfx, dir), 0);
    assert_int_equal(sscanf(out, "%*s %*s %63s", dev), 1);
    rc = run_out(out, sizeof out, "%s --profile %s/a2 link-finish 2>&1", pfx, dir);
    assert_true(rc != 0); /* not approved yet */
    rc = run_out(out, sizeof out, "%s --profile %s/a link-approve %s %s 2>&1", pfx, dir, code, dev);
    if (rc != 0) t_note("link-approve: %s", out);
    assert_int_equal(rc, 0);
    rc = run_out(out, sizeof out, "%s --profile %s/a2 link-finish 2>&1", pfx, dir);
    if (rc != 0) t_note("link-finish: %s", out);
    assert_int_equal(rc, 0);
    rc = run_out(out, sizeof out, "%s --profile %s/b send %s 'secret-india to both of a' 2>&1", pfx,
                 dir, na);
    if (rc != 0) t_note("send to a: %s", out);
    assert_int_equal(rc, 0);
    assert_int_equal(run_out(out, sizeof out, "%s --profile %s/a2 sync 2>&1", pfx, dir), 0);
    rc = run_out(out, sizeof out, "%s --profile %s/a2 history %s 2>&1", pfx, dir, nb);
    if (!strstr(out, "secret-india to both of a")) t_note("a2 history: %s", out);
    assert_non_null(strstr(out, "secret-india to both of a"));
    assert_int_equal(run_out(out, sizeof out, "%s --profile %s/a sync 2>&1", pfx, dir), 0);
    rc = run_out(out, sizeof out, "%s --profile %s/a history %s 2>&1", pfx, dir, nb);
    assert_non_null(strstr(out, "secret-india to both of a"));

    char kp[PATH_MAX + 32];
    struct stat st;
    snprintf(kp, sizeof kp, "%s/a/store.db.key", dir);
    assert_int_equal(stat(kp, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    if (!getenv("T_KEEP")) {
        char cmd[PATH_MAX + 16];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        assert_int_equal(system(cmd), 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_e2e_both_ways_offline_and_nothing_in_clear),
        cmocka_unit_test(test_e2e_garbage_ciphertext_is_visible),
        cmocka_unit_test(test_e2e_parley_cli),
        cmocka_unit_test(test_e2e_prekeys_refilled),
        cmocka_unit_test(test_e2e_identity_change),
        cmocka_unit_test(test_e2e_device_list_stale),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
