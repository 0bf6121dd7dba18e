/* test_social.c: groups, invitations, presence, typing and receipts after a reconnect, with
 * libparley clients on a real parleyd.
 *   - a group of three: every member gets every message once and in order, the system messages
 *     arrive and are stored, a removed member gets nothing after the removal;
 *   - invite, the event, accept: both are friends; presence flows between friends;
 *   - typing reaches the other member;
 *   - the peer read while we were offline: after the reconnect our store shows read. */
#include "chelp.h"

TSRV_FIXTURE(srv)

/* ------------------------------------------------------------------------- helpers */

/* Events that chelp.h does not record, kept per client. */
typedef struct soc {
    tcl t;
    int ncontact;
    pl_contact_state contact;
    char contact_user[PL_ID_MAX];
    int npresence;
    pl_presence presence_of_peer;
    char watch[PL_ID_MAX]; /* presence and typing of this user */
    int typing_on, typing_off;
    int nconv_changed;
} soc;

static void soc_drain(soc *s)
{
    pl_event ev;
    while (pl_client_next_event(s->t.c, &ev) == 0) {
        switch (ev.kind) {
        case PL_EV_CONTACT:
            s->ncontact++;
            s->contact = ev.contact;
            snprintf(s->contact_user, sizeof s->contact_user, "%s", ev.user);
            break;
        case PL_EV_PRESENCE:
            if (strcmp(ev.user, s->watch) == 0) {
                s->npresence++;
                s->presence_of_peer = ev.presence;
            }
            break;
        case PL_EV_TYPING:
            if (strcmp(ev.user, s->watch) == 0) {
                if (ev.typing)
                    s->typing_on++;
                else
                    s->typing_off++;
            }
            break;
        case PL_EV_CONV_CHANGED:
            s->nconv_changed++;
            break;
        default:
            break;
        }
        tcl_handle(&s->t, &ev);
    }
}

typedef bool (*soc_cond)(soc **ss, void *ud);

static bool soc_wait(soc **ss, int n, soc_cond cond, void *ud, int timeout_ms)
{
    int64_t deadline = mono_ms() + timeout_ms;
    for (;;) {
        for (int i = 0; i < n; i++) soc_drain(ss[i]);
        if (cond(ss, ud)) return true;
        int64_t left = deadline - mono_ms();
        if (left <= 0) return false;
        struct pollfd p[8];
        for (int i = 0; i < n && i < 8; i++)
            p[i] = (struct pollfd){.fd = pl_client_fd(ss[i]->t.c), .events = POLLIN};
        poll(p, (nfds_t)(n < 8 ? n : 8), left > 100 ? 100 : (int)left);
    }
}

static void soc_open(soc *s, const char *label, const tuser *u)
{
    memset(s, 0, sizeof *s);
    tcl_open_user(&s->t, label, srv.port, u);
    assert_int_equal(pl_client_connect(s->t.c), 0);
    tcl_wait_online(&s->t, 10000);
}

static int count_kind(const tcl *t, const char *kind)
{
    int k = 0;
    for (int i = 0; i < t->nmsgs && i < TCL_MAX_MSGS; i++)
        if (strcmp(t->msgs[i].kind, kind) == 0) k++;
    return k;
}

typedef struct {
    int want[3];
} text_goal;

static bool texts_arrived(soc **ss, void *ud)
{
    text_goal *g = ud;
    for (int i = 0; i < 3; i++)
        if (count_kind(&ss[i]->t, "text") < g->want[i]) return false;
    return true;
}

static bool acks_arrived(soc **ss, void *ud)
{
    int want = *(int *)ud;
    return ss[0]->t.nacks >= want && ss[1]->t.nacks >= want && ss[2]->t.nacks >= want;
}

/* The system messages a client received, in order, by their "event". */
static void system_events(const tcl *t, const char *conv, char *out, size_t cap)
{
    out[0] = 0;
    for (int i = 0; i < t->nmsgs && i < TCL_MAX_MSGS; i++) {
        const pl_msg *m = &t->msgs[i];
        if (strcmp(m->kind, "system") != 0 || strcmp(m->conv, conv) != 0) continue;
        json_t *b = json_loads(m->body, 0, NULL);
        size_t l = strlen(out);
        snprintf(out + l, cap - l, "%s%s", l ? "," : "", tj_str(b, "event"));
        json_decref(b);
    }
}

/* ----------------------------------------------------------------------- the tests */

T_TEST(test_group_of_three)
{
    tuser u[3];
    const char *names[] = {"gann", "gben", "gcat"};
    for (int i = 0; i < 3; i++) assert_int_equal(tuser_new(srv.port, names[i], &u[i]), 201);
    soc s[3];
    soc *all[] = {&s[0], &s[1], &s[2]};
    for (int i = 0; i < 3; i++) soc_open(&s[i], names[i], &u[i]);

    const char *members[] = {u[1].id, u[2].id};
    pl_group g;
    assert_int_equal(pl_group_create(s[0].t.c, "Three of us", members, 2, &g), 0);
    assert_int_equal(strncmp(g.id, "g_", 2), 0);
    assert_int_equal(g.nmembers, 3);
    char gid[PL_ID_MAX];
    snprintf(gid, sizeof gid, "%s", g.id);
    pl_group_clear(&g);
    /* the creator's store has the group at once, by name */
    pl_conv cv;
    assert_int_equal(pl_conv_get(s[0].t.c, gid, &cv), 0);
    assert_true(cv.group);
    assert_string_equal(cv.title, "Three of us");

    /* 10 each, interleaved, without waiting */
    enum { N = 10 };
    for (int i = 0; i < N; i++)
        for (int k = 0; k < 3; k++) {
            char text[64];
            snprintf(text, sizeof text, "%s says %d", names[k], i);
            assert_int_equal(pl_msg_send(s[k].t.c, gid, text, NULL), 0);
        }
    text_goal tg = {{2 * N, 2 * N, 2 * N}};
    bool ok = soc_wait(all, 3, texts_arrived, &tg, 20000);
    int want_acks = N;
    ok = ok && soc_wait(all, 3, acks_arrived, &want_acks, 10000);
    for (int k = 0; k < 3; k++)
        if (!ok)
            t_note("%s: %d texts, %d acks", names[k], count_kind(&s[k].t, "text"), s[k].t.nacks);
    assert_true(ok);
    t_sleep_ms(300);
    for (int k = 0; k < 3; k++) soc_drain(&s[k]);
    for (int k = 0; k < 3; k++) {
        tcl *t = &s[k].t;
        assert_int_equal(count_kind(t, "text"), 2 * N); /* once each */
        assert_int_equal(t->nacks, N);
        assert_int_equal(t->nfailed, 0);
        /* in order: per sender, i grows; seq grows over everything received */
        int next[3] = {0, 0, 0};
        int64_t last_seq = 0;
        for (int i = 0; i < t->nmsgs; i++) {
            const pl_msg *m = &t->msgs[i];
            assert_string_equal(m->conv, gid);
            assert_true(m->seq > last_seq);
            last_seq = m->seq;
            if (strcmp(m->kind, "text") != 0) continue;
            for (int w = 0; w < 3; w++)
                if (strcmp(m->from, u[w].id) == 0) {
                    char want[64];
                    snprintf(want, sizeof want, "%s says %d", names[w], next[w]++);
                    assert_string_equal(m->text, want);
                    assert_true(w != k);
                }
        }
        /* the store: 3N texts, seq without gaps from the first one this member has */
        pl_msg *h;
        size_t n;
        assert_int_equal(pl_msgs_history(t->c, gid, 0, 1000, &h, &n), 0);
        int texts = 0;
        for (size_t i = 0; i < n; i++) {
            if (strcmp(h[i].kind, "text") == 0) texts++;
            if (i > 0) assert_int_equal(h[i].seq, h[i - 1].seq + 1);
        }
        assert_int_equal(texts, 3 * N);
        pl_msgs_free(h, n);
        assert_int_equal(pl_conv_get(t->c, gid, &cv), 0);
        assert_string_equal(cv.title, "Three of us");
        assert_true(cv.group);
    }
    /* the members got the "created" system message, readable */
    char evs[256];
    system_events(&s[1].t, gid, evs, sizeof evs);
    assert_string_equal(evs, "created");
    char line[512];
    for (int i = 0; i < s[1].t.nmsgs; i++)
        if (strcmp(s[1].t.msgs[i].kind, "system") == 0) {
            assert_int_equal(pl_msg_system_text(s[1].t.c, &s[1].t.msgs[i], line, sizeof line), 0);
            t_note("system: %s", line);
            assert_non_null(strstr(line, "created the group \"Three of us\""));
        }

    /* cat is removed: she gets the "removed" message, then nothing more */
    assert_int_equal(pl_group_remove(s[0].t.c, gid, u[2].id), 0);
    for (int i = 0; i < 3; i++) {
        char text[64];
        snprintf(text, sizeof text, "after removal %d", i);
        assert_int_equal(pl_msg_send(s[0].t.c, gid, text, NULL), 0);
        assert_int_equal(pl_msg_send(s[1].t.c, gid, text, NULL), 0);
    }
    text_goal tg2 = {{2 * N + 3, 2 * N + 3, 2 * N}};
    assert_true(soc_wait(all, 3, texts_arrived, &tg2, 10000));
    t_sleep_ms(500);
    for (int k = 0; k < 3; k++) soc_drain(&s[k]);
    assert_int_equal(count_kind(&s[2].t, "text"), 2 * N);
    system_events(&s[2].t, gid, evs, sizeof evs);
    assert_string_equal(evs, "created,removed");
    system_events(&s[1].t, gid, evs, sizeof evs);
    assert_string_equal(evs, "created,removed");
    assert_true(s[2].nconv_changed >= 2);
    const pl_msg *last = &s[2].t.msgs[s[2].t.nmsgs - 1];
    assert_string_equal(last->kind, "system");
    assert_int_equal(pl_msg_system_text(s[2].t.c, last, line, sizeof line), 0);
    t_note("system: %s", line);
    assert_non_null(strstr(line, "removed"));
    /* her sends are refused now */
    pl_msg m;
    assert_int_equal(pl_msg_send(s[2].t.c, gid, "let me in", &m), 0);
    pl_msg_clear(&m);
    int64_t t0 = mono_ms();
    while (s[2].t.nfailed == 0 && mono_ms() - t0 < 5000) {
        soc_drain(&s[2]);
        t_sleep_ms(50);
    }
    assert_int_equal(s[2].t.nfailed, 1);
    for (int k = 0; k < 3; k++) tcl_close(&s[k].t, false);
}

static bool contact_is(soc **ss, void *ud)
{
    return ss[0]->ncontact > 0 && ss[0]->contact == *(pl_contact_state *)ud;
}

static bool presence_is(soc **ss, void *ud)
{
    return ss[0]->npresence > 0 && ss[0]->presence_of_peer == *(pl_presence *)ud;
}

T_TEST(test_invite_accept_presence)
{
    tuser ua, ub;
    assert_int_equal(tuser_new(srv.port, "iann", &ua), 201);
    assert_int_equal(tuser_new(srv.port, "iben", &ub), 201);
    soc a, b;
    soc_open(&a, "a", &ua);
    soc_open(&b, "b", &ub);
    snprintf(a.watch, sizeof a.watch, "%s", ub.id);
    snprintf(b.watch, sizeof b.watch, "%s", ua.id);
    soc *sa[] = {&a}, *sb[] = {&b};

    assert_int_equal(pl_contact_invite(a.t.c, ub.id), PL_CONTACT_OUTGOING);
    pl_contact_state want = PL_CONTACT_INCOMING;
    assert_true(soc_wait(sb, 1, contact_is, &want, 5000));
    assert_string_equal(b.contact_user, ua.id);
    pl_contact *cs;
    size_t n;
    assert_int_equal(pl_contacts_fetch(b.t.c, &cs, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(cs[0].user.id, ua.id);
    assert_string_equal(cs[0].user.username, ua.username);
    assert_int_equal(cs[0].state, PL_CONTACT_INCOMING);
    pl_free(cs);

    assert_int_equal(pl_contact_accept(b.t.c, ua.id), PL_CONTACT_FRIEND);
    want = PL_CONTACT_FRIEND;
    assert_true(soc_wait(sa, 1, contact_is, &want, 5000));
    for (int k = 0; k < 2; k++) {
        assert_int_equal(pl_contacts_fetch(k ? b.t.c : a.t.c, &cs, &n), 0);
        assert_int_equal(n, 1);
        assert_int_equal(cs[0].state, PL_CONTACT_FRIEND);
        pl_free(cs);
    }

    /* presence: b goes away, comes back, goes offline, comes back */
    assert_int_equal(pl_presence_set(b.t.c, PL_PRESENCE_AWAY), 0);
    pl_presence pw = PL_PRESENCE_AWAY;
    assert_true(soc_wait(sa, 1, presence_is, &pw, 5000));
    assert_int_equal(pl_presence_set(b.t.c, PL_PRESENCE_ONLINE), 0);
    pw = PL_PRESENCE_ONLINE;
    assert_true(soc_wait(sa, 1, presence_is, &pw, 5000));
    pl_client_disconnect(b.t.c);
    pw = PL_PRESENCE_OFFLINE;
    assert_true(soc_wait(sa, 1, presence_is, &pw, 5000));
    a.npresence = 0;
    assert_int_equal(pl_client_connect(b.t.c), 0);
    pw = PL_PRESENCE_ONLINE;
    assert_true(soc_wait(sa, 1, presence_is, &pw, 5000));
    /* and b, connecting, learnt that a is online */
    pw = PL_PRESENCE_ONLINE;
    assert_true(soc_wait(sb, 1, presence_is, &pw, 5000));

    /* decline / remove: a removes b, b hears of it */
    b.ncontact = 0;
    assert_int_equal(pl_contact_remove(a.t.c, ub.id), 0);
    want = PL_CONTACT_NONE;
    assert_true(soc_wait(sb, 1, contact_is, &want, 5000));
    /* blocks */
    assert_int_equal(pl_user_block(a.t.c, ub.id), 0);
    pl_user *bl;
    assert_int_equal(pl_blocks_list(a.t.c, &bl, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(bl[0].id, ub.id);
    pl_free(bl);
    assert_int_equal(pl_contact_invite(b.t.c, ua.id), PL_EREFUSED);
    assert_int_equal(pl_user_unblock(a.t.c, ub.id), 0);
    assert_int_equal(pl_blocks_list(a.t.c, &bl, &n), 0);
    assert_int_equal(n, 0);
    pl_free(bl);
    tcl_close(&a.t, false);
    tcl_close(&b.t, false);
}

static bool typing_seen(soc **ss, void *ud)
{
    (void)ud;
    return ss[0]->typing_on > 0 && ss[0]->typing_off > 0;
}

/* Typing as clients send it: repeated while it lasts (the server may drop one while it loads
 * the members of a conversation). True when b saw a's "on" and then "off". */
static bool typing_reaches(soc *a, soc *b, const char *conv)
{
    soc *sb[] = {b};
    b->typing_on = b->typing_off = 0;
    int64_t t0 = mono_ms();
    while (b->typing_on == 0 && mono_ms() - t0 < 5000) {
        assert_int_equal(pl_typing_send(a->t.c, conv, true), 0);
        soc_wait(sb, 1, typing_seen, NULL, 300);
    }
    while (b->typing_off == 0 && mono_ms() - t0 < 5000) {
        assert_int_equal(pl_typing_send(a->t.c, conv, false), 0);
        soc_wait(sb, 1, typing_seen, NULL, 300);
    }
    return typing_seen(sb, NULL);
}

T_TEST(test_typing)
{
    tuser ua, ub;
    assert_int_equal(tuser_new(srv.port, "tann", &ua), 201);
    assert_int_equal(tuser_new(srv.port, "tben", &ub), 201);
    soc a, b;
    soc_open(&a, "a", &ua);
    soc_open(&b, "b", &ub);
    snprintf(b.watch, sizeof b.watch, "%s", ua.id);
    const char *members[] = {ub.id};
    pl_group g;
    assert_int_equal(pl_group_create(a.t.c, "typing", members, 1, &g), 0);
    assert_true(typing_reaches(&a, &b, g.id));
    pl_group_clear(&g);
    /* and in a direct conversation */
    char conv[PL_ID_MAX];
    assert_int_equal(pl_conv_direct(a.t.c, ub.id, conv), 0);
    assert_int_equal(pl_msg_send(a.t.c, ub.id, "hello", NULL), 0);
    int64_t t0 = mono_ms();
    while (count_kind(&b.t, "text") < 1 && mono_ms() - t0 < 5000) {
        soc_drain(&b);
        t_sleep_ms(50);
    }
    assert_true(typing_reaches(&a, &b, conv));
    assert_int_equal(pl_typing_send(a.t.c, "nonsense", true), PL_EINVAL);
    tcl_close(&a.t, false);
    tcl_close(&b.t, false);
}

static bool got3(void *ud)
{
    return count_kind(ud, "text") >= 3;
}

static bool acked3(void *ud)
{
    return ((tcl *)ud)->nacks >= 3;
}

static bool all_read(void *ud)
{
    return ((tcl *)ud)->read_upto >= 3;
}

T_TEST(test_reconnect_applies_receipts)
{
    tuser ua, ub;
    assert_int_equal(tuser_new(srv.port, "rann", &ua), 201);
    assert_int_equal(tuser_new(srv.port, "rben", &ub), 201);
    tcl a, b;
    tcl_open_user(&a, "a", srv.port, &ua);
    tcl_open_user(&b, "b", srv.port, &ub);
    assert_int_equal(pl_client_connect(a.c), 0);
    for (int i = 0; i < 3; i++) assert_int_equal(pl_msg_send(a.c, ub.id, "read me", NULL), 0);
    tcl *ta[] = {&a}, *tb[] = {&b};
    assert_true(tcl_wait(ta, 1, acked3, &a, 10000));
    pl_client_disconnect(a.c);
    tcl_drain(&a);
    char conv[PL_ID_MAX];
    assert_int_equal(pl_conv_direct(a.c, ub.id, conv), 0);
    pl_msg *h;
    size_t n;
    assert_int_equal(pl_msgs_history(a.c, conv, 0, 10, &h, &n), 0);
    assert_int_equal(n, 3);
    assert_true(h[2].status < PL_MSG_READ);
    pl_msgs_free(h, n);

    /* b, while a is away: receives and reads */
    assert_int_equal(pl_client_connect(b.c), 0);
    assert_true(tcl_wait(tb, 1, got3, &b, 10000));
    assert_int_equal(pl_conv_mark_read(b.c, conv), 0);
    /* the server has b's marker (asked over REST, as a third party would see it) */
    int64_t t0 = mono_ms();
    int64_t peer_read = 0;
    while (peer_read < 3 && mono_ms() - t0 < 5000) {
        int status;
        json_t *resp = NULL;
        assert_int_equal(thttp_req(srv.port, "GET", "/v1/convs", ua.token, NULL, &status, &resp),
                         0);
        peer_read = tj_int(resp, "convs.0.peer_read_seq");
        json_decref(resp);
        if (peer_read < 3) t_sleep_ms(50);
    }
    assert_int_equal(peer_read, 3);

    /* a comes back: no receipt frame is replayed, the list brings the markers */
    assert_int_equal(pl_client_connect(a.c), 0);
    bool read = tcl_wait(ta, 1, all_read, &a, 10000);
    if (!read) t_note("a saw read up to %lld", (long long)a.read_upto);
    assert_true(read);
    assert_int_equal(pl_msgs_history(a.c, conv, 0, 10, &h, &n), 0);
    assert_int_equal(n, 3);
    for (size_t i = 0; i < n; i++) assert_int_equal(h[i].status, PL_MSG_READ);
    pl_msgs_free(h, n);
    /* and pl_convs_sync does the same on demand */
    assert_int_equal(pl_convs_sync(a.c), 1);
    tcl_close(&a, false);
    tcl_close(&b, false);
}

/* A conversation read while offline: the read marker reaches the server when the device is back
 * online, and the peer sees it. */
T_TEST(test_read_offline_sent_on_reconnect)
{
    tuser ua, ub;
    assert_int_equal(tuser_new(srv.port, "oann", &ua), 201);
    assert_int_equal(tuser_new(srv.port, "oben", &ub), 201);
    tcl a, b;
    tcl_open_user(&a, "a", srv.port, &ua);
    tcl_open_user(&b, "b", srv.port, &ub);
    assert_int_equal(pl_client_connect(a.c), 0);
    assert_int_equal(pl_client_connect(b.c), 0);
    for (int i = 0; i < 3; i++) assert_int_equal(pl_msg_send(a.c, ub.id, "read later", NULL), 0);
    tcl *ta[] = {&a}, *tb[] = {&b};
    assert_true(tcl_wait(ta, 1, acked3, &a, 10000));
    assert_true(tcl_wait(tb, 1, got3, &b, 10000));

    /* b goes offline and reads there */
    pl_client_disconnect(b.c);
    tcl_drain(&b);
    char conv[PL_ID_MAX];
    assert_int_equal(pl_conv_direct(b.c, ua.id, conv), 0);
    assert_int_equal(pl_conv_mark_read(b.c, conv), 0);
    t_sleep_ms(200);
    int status;
    json_t *resp = NULL;
    assert_int_equal(thttp_req(srv.port, "GET", "/v1/convs", ua.token, NULL, &status, &resp), 0);
    assert_true(tj_int(resp, "convs.0.peer_read_seq") < 3); /* not sent while offline */
    json_decref(resp);

    /* back online: the marker goes out after the sync and reaches a as a receipt */
    assert_int_equal(pl_client_connect(b.c), 0);
    bool read = tcl_wait(ta, 1, all_read, &a, 10000);
    if (!read) t_note("a saw read up to %lld", (long long)a.read_upto);
    assert_true(read);
    assert_int_equal(thttp_req(srv.port, "GET", "/v1/convs", ua.token, NULL, &status, &resp), 0);
    assert_int_equal(tj_int(resp, "convs.0.peer_read_seq"), 3);
    json_decref(resp);
    tcl_close(&a, false);
    tcl_close(&b, false);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_group_of_three),
        cmocka_unit_test(test_invite_accept_presence),
        cmocka_unit_test(test_typing),
        cmocka_unit_test(test_reconnect_applies_receipts),
        cmocka_unit_test(test_read_offline_sent_on_reconnect),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
