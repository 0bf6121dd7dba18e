/* test_store.c: unit tests of the SQLite store (src/server/store/store_sqlite.c).
 * Each test opens a fresh database in its own mkdtemp folder, removed at the end. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "server/store/store.h"

typedef struct fx {
    char dir[64];
    store_t *st;
} fx;

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    if (!f) return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/parley-store-XXXXXX");
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
    char err[256];
    if (store_open(&f->st, f->dir, err, sizeof err) != ST_OK) {
        fprintf(stderr, "store_open: %s\n", err);
        nftw(f->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    store_close(f->st);
    nftw(f->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    free(f);
    log_threshold = LOG_WARN;
    return 0;
}

/* ---- Helpers ------------------------------------------------------------------------------- */

static st_user mk_user(const char *id, const char *username, const char *display, const char *email,
                       const char *phone)
{
    st_user u;
    memset(&u, 0, sizeof u);
    snprintf(u.id, sizeof u.id, "%s", id);
    snprintf(u.username, sizeof u.username, "%s", username);
    snprintf(u.display_name, sizeof u.display_name, "%s", display ? display : username);
    snprintf(u.email, sizeof u.email, "%s", email ? email : "");
    snprintf(u.phone, sizeof u.phone, "%s", phone ? phone : "");
    snprintf(u.kind, sizeof u.kind, "user");
    snprintf(u.settings, sizeof u.settings, "{}");
    u.created_at = 1000;
    return u;
}

static void add_user(store_t *st, const char *id, const char *username, const char *display,
                     const char *email, const char *phone)
{
    st_user u = mk_user(id, username, display, email, phone);
    const char *field = "unset";
    assert_int_equal(store_user_create(st, &u, "hash-of-pw", &field), ST_OK);
    assert_null(field);
}

static st_device mk_dev(const char *id, const char *user, int64_t created)
{
    st_device d;
    memset(&d, 0, sizeof d);
    snprintf(d.id, sizeof d.id, "%s", id);
    snprintf(d.user_id, sizeof d.user_id, "%s", user);
    snprintf(d.name, sizeof d.name, "phone of %s", user);
    d.created_at = created;
    d.last_seen_at = created;
    return d;
}

static st_msg mk_msg(const char *conv, int64_t seq, const char *from, const char *dev,
                     const char *cmid, const char *body)
{
    st_msg m;
    memset(&m, 0, sizeof m);
    snprintf(m.conv, sizeof m.conv, "%s", conv);
    m.seq = seq;
    snprintf(m.from, sizeof m.from, "%s", from);
    snprintf(m.dev, sizeof m.dev, "%s", dev);
    snprintf(m.cmid, sizeof m.cmid, "%s", cmid);
    m.ts = 5000 + seq;
    snprintf(m.kind, sizeof m.kind, "text");
    m.body = (char *)body;
    return m;
}

/* What the pipeline does for one direct message: one transaction, the message in both inboxes
 * (one inbox when a user writes to themself). Returns the seq. */
static int64_t send_direct(store_t *st, const char *from, const char *dev, const char *to,
                           const char *cmid, const char *body)
{
    char conv[ID_MAX];
    conv_direct_id(conv, from, to);
    int64_t seq = 0, pos = 0;
    assert_int_equal(store_begin(st), ST_OK);
    assert_int_equal(store_conv_ensure_direct(st, conv, from, to, 1), ST_OK);
    assert_int_equal(store_conv_next_seq(st, conv, &seq), ST_OK);
    st_msg m = mk_msg(conv, seq, from, dev, cmid, body);
    assert_int_equal(store_msg_insert(st, &m), ST_OK);
    assert_int_equal(store_inbox_append(st, from, conv, seq, &pos), ST_OK);
    if (strcmp(from, to) != 0) assert_int_equal(store_inbox_append(st, to, conv, seq, &pos), ST_OK);
    assert_int_equal(store_commit(st), ST_OK);
    return seq;
}

typedef struct seen {
    int n;
    int64_t pos[64];
    int64_t seq[64];
    char body[64][64];
    char conv[64][ID_MAX];
} seen;

static void collect(void *ctx, int64_t pos, const st_msg *m)
{
    seen *s = ctx;
    if (s->n >= 64) return;
    s->pos[s->n] = pos;
    s->seq[s->n] = m->seq;
    snprintf(s->body[s->n], sizeof s->body[0], "%s", m->body);
    snprintf(s->conv[s->n], sizeof s->conv[0], "%s", m->conv);
    s->n++;
}

/* ---- Users --------------------------------------------------------------------------------- */

static void test_user_create_get_find(void **state)
{
    fx *f = *state;
    add_user(f->st, "u_alice", "alice", "Alice A.", "alice@example.com", "+15550001");
    add_user(f->st, "u_bob", "bob", NULL, NULL, NULL);

    st_user u;
    assert_int_equal(store_user_get(f->st, "u_alice", &u), ST_OK);
    assert_string_equal(u.id, "u_alice");
    assert_string_equal(u.username, "alice");
    assert_string_equal(u.display_name, "Alice A.");
    assert_string_equal(u.email, "alice@example.com");
    assert_string_equal(u.phone, "+15550001");
    assert_string_equal(u.avatar, "");
    assert_string_equal(u.kind, "user");
    assert_string_equal(u.settings, "{}");
    assert_int_equal(u.created_at, 1000);

    assert_int_equal(store_user_get(f->st, "u_bob", &u), ST_OK);
    assert_string_equal(u.email, "");
    assert_string_equal(u.phone, "");
    assert_int_equal(store_user_get(f->st, "u_nobody", &u), ST_NOTFOUND);

    char pw[256];
    const char *logins[] = {"alice", "ALICE", "aLiCe", "alice@example.com", "+15550001"};
    for (size_t i = 0; i < sizeof logins / sizeof logins[0]; i++) {
        memset(&u, 0, sizeof u);
        pw[0] = 0;
        assert_int_equal(store_user_find_login(f->st, logins[i], &u, pw), ST_OK);
        assert_string_equal(u.id, "u_alice");
        assert_string_equal(pw, "hash-of-pw");
    }
    /* Email and phone match exactly; "" never matches a user without email. */
    assert_int_equal(store_user_find_login(f->st, "ALICE@example.com", &u, pw), ST_NOTFOUND);
    assert_int_equal(store_user_find_login(f->st, "", &u, pw), ST_NOTFOUND);
    assert_int_equal(store_user_find_login(f->st, "carol", &u, pw), ST_NOTFOUND);
    assert_int_equal(store_user_find_login(f->st, "bob", &u, NULL), ST_OK);
    assert_string_equal(u.id, "u_bob");

    int64_t head = -1;
    assert_int_equal(store_user_head(f->st, "u_bob", &head), ST_OK);
    assert_int_equal(head, 0);
    assert_int_equal(store_user_head(f->st, "u_nobody", &head), ST_NOTFOUND);
}

static void test_user_conflicts(void **state)
{
    fx *f = *state;
    add_user(f->st, "u_alice", "alice", NULL, "alice@example.com", "+15550001");
    /* Users without email or phone never conflict on them. */
    add_user(f->st, "u_b1", "b1", NULL, NULL, NULL);
    add_user(f->st, "u_b2", "b2", NULL, NULL, NULL);

    const char *field = NULL;
    st_user u = mk_user("u_x", "ALICE", NULL, NULL, NULL);
    assert_int_equal(store_user_create(f->st, &u, "h", &field), ST_CONFLICT);
    assert_non_null(field);
    assert_string_equal(field, "username");

    u = mk_user("u_x", "x", NULL, "alice@example.com", NULL);
    assert_int_equal(store_user_create(f->st, &u, "h", &field), ST_CONFLICT);
    assert_string_equal(field, "email");

    u = mk_user("u_x", "x", NULL, NULL, "+15550001");
    assert_int_equal(store_user_create(f->st, &u, "h", &field), ST_CONFLICT);
    assert_string_equal(field, "phone");

    u = mk_user("u_alice", "x", NULL, NULL, NULL);
    assert_int_equal(store_user_create(f->st, &u, "h", &field), ST_CONFLICT);
    assert_string_equal(field, "id");

    /* A conflict left nothing behind: x is still free. */
    u = mk_user("u_x", "x", NULL, NULL, NULL);
    assert_int_equal(store_user_create(f->st, &u, "h", NULL), ST_OK);
}

static void test_user_update(void **state)
{
    fx *f = *state;
    add_user(f->st, "u_alice", "alice", NULL, "alice@example.com", "+15550001");
    add_user(f->st, "u_bob", "bob", NULL, "bob@example.com", NULL);

    st_user u;
    assert_int_equal(store_user_get(f->st, "u_bob", &u), ST_OK);
    snprintf(u.display_name, sizeof u.display_name, "Bobby \xc3\xa9");
    snprintf(u.phone, sizeof u.phone, "+15550002");
    snprintf(u.avatar, sizeof u.avatar, "m_avatar1");
    snprintf(u.settings, sizeof u.settings, "{\"theme\":\"dark\"}");
    const char *field = "unset";
    assert_int_equal(store_user_update(f->st, &u, &field), ST_OK);
    assert_null(field);

    st_user g;
    assert_int_equal(store_user_get(f->st, "u_bob", &g), ST_OK);
    assert_string_equal(g.display_name, "Bobby \xc3\xa9");
    assert_string_equal(g.phone, "+15550002");
    assert_string_equal(g.avatar, "m_avatar1");
    assert_string_equal(g.settings, "{\"theme\":\"dark\"}");
    assert_string_equal(g.email, "bob@example.com");

    /* Taking alice's email or phone conflicts and changes nothing. */
    st_user c = g;
    snprintf(c.email, sizeof c.email, "alice@example.com");
    snprintf(c.display_name, sizeof c.display_name, "changed");
    assert_int_equal(store_user_update(f->st, &c, &field), ST_CONFLICT);
    assert_string_equal(field, "email");
    c = g;
    snprintf(c.phone, sizeof c.phone, "+15550001");
    assert_int_equal(store_user_update(f->st, &c, &field), ST_CONFLICT);
    assert_string_equal(field, "phone");
    assert_int_equal(store_user_get(f->st, "u_bob", &c), ST_OK);
    assert_string_equal(c.display_name, "Bobby \xc3\xa9");

    /* "" clears email; the freed email can then be taken by another user. */
    c = g;
    c.email[0] = 0;
    assert_int_equal(store_user_update(f->st, &c, &field), ST_OK);
    assert_int_equal(store_user_get(f->st, "u_bob", &c), ST_OK);
    assert_string_equal(c.email, "");
    assert_int_equal(store_user_get(f->st, "u_alice", &c), ST_OK);
    snprintf(c.email, sizeof c.email, "bob@example.com");
    assert_int_equal(store_user_update(f->st, &c, &field), ST_OK);

    c = mk_user("u_nobody", "nobody", NULL, NULL, NULL);
    assert_int_equal(store_user_update(f->st, &c, &field), ST_NOTFOUND);
}

static void test_user_search(void **state)
{
    fx *f = *state;
    add_user(f->st, "u_1", "a_b", "First", NULL, NULL);
    add_user(f->st, "u_2", "axb", "Second", NULL, NULL);
    add_user(f->st, "u_3", "carol", "100% Carol", NULL, NULL);
    add_user(f->st, "u_4", "dave", "100x Dave", NULL, NULL);
    add_user(f->st, "u_5", "eve", "back\\slash Eve", NULL, NULL);
    add_user(f->st, "u_6", "frank", "backXslash", NULL, NULL);
    add_user(f->st, "u_7", "zed", "Alpha", NULL, NULL);

    st_user out[10];
    /* "_" is literal: only a_b, not axb. */
    int n = store_user_search(f->st, "a_", out, 10);
    assert_int_equal(n, 1);
    assert_string_equal(out[0].username, "a_b");
    /* "%" is literal. */
    n = store_user_search(f->st, "100%", out, 10);
    assert_int_equal(n, 1);
    assert_string_equal(out[0].username, "carol");
    n = store_user_search(f->st, "%", out, 10);
    assert_int_equal(n, 0);
    /* "\" is literal. */
    n = store_user_search(f->st, "back\\", out, 10);
    assert_int_equal(n, 1);
    assert_string_equal(out[0].username, "eve");
    /* Prefix, case-insensitive, on username or display name, ordered by username. */
    n = store_user_search(f->st, "A", out, 10);
    assert_int_equal(n, 3);
    assert_string_equal(out[0].username, "a_b");
    assert_string_equal(out[1].username, "axb");
    assert_string_equal(out[2].username, "zed");
    n = store_user_search(f->st, "100", out, 10);
    assert_int_equal(n, 2);
    assert_string_equal(out[0].username, "carol");
    assert_string_equal(out[1].username, "dave");
    /* Prefix only, not substring. */
    assert_int_equal(store_user_search(f->st, "arol", out, 10), 0);
    /* At most max. */
    n = store_user_search(f->st, "a", out, 2);
    assert_int_equal(n, 2);
    assert_string_equal(out[1].username, "axb");
    assert_int_equal(store_user_search(f->st, "a", out, 0), 0);

    /* Range ends: '@' (its next byte is 'A', folded by NOCASE), non-ASCII, 0xFF. */
    add_user(f->st, "u_8", "hal", "Me@Home", NULL, NULL);
    add_user(f->st, "u_9", "ian", "MeAt", NULL, NULL);
    add_user(f->st, "u_10", "jo", "\xc3\xa9mile", NULL, NULL);
    n = store_user_search(f->st, "ME@", out, 10);
    assert_int_equal(n, 1);
    assert_string_equal(out[0].username, "hal");
    n = store_user_search(f->st, "me", out, 10);
    assert_int_equal(n, 2);
    n = store_user_search(f->st, "\xc3\xa9", out, 10);
    assert_int_equal(n, 1);
    assert_string_equal(out[0].username, "jo");
    /* LIKE compares characters: half of one matches nothing. */
    assert_int_equal(store_user_search(f->st, "\xc3", out, 10), 0);
    assert_int_equal(store_user_search(f->st, "\xff", out, 10), 0);
    assert_int_equal(store_user_search(f->st, "z\xff\xff", out, 10), 0);
    /* Everyone, by username. */
    n = store_user_search(f->st, "", out, 10);
    assert_int_equal(n, 10);
    for (int i = 1; i < n; i++) assert_true(strcmp(out[i - 1].username, out[i].username) < 0);
}

/* ASCII case-insensitive "a starts with q", the meaning of the search. */
static bool starts_ci(const char *a, const char *q)
{
    for (; *q; a++, q++) {
        char x = *a >= 'A' && *a <= 'Z' ? (char)(*a + 32) : *a;
        char y = *q >= 'A' && *q <= 'Z' ? (char)(*q + 32) : *q;
        if (x != y) return false;
    }
    return true;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* Random names and queries around the range ends (@ A Z [ ` a z {), the LIKE wildcards and a
 * two-byte character, checked against a plain implementation. */
static void test_user_search_random(void **state)
{
    fx *f = *state;
    static const char *const tok[] = {"a", "A", "z",  "Z",        "@",        "[", "`", "{",
                                      "%", "_", "\\", "\xc3\xa9", "\xc3\x89", "m", "."};
    enum { NT = sizeof tok / sizeof tok[0], NU = 150 };
    static char names[NU][33], displays[NU][64];
    srand(7);
    assert_int_equal(store_begin(f->st), ST_OK);
    for (int i = 0; i < NU; i++) {
        /* Usernames: distinct, lower case, from [a-z0-9_.] like the protocol's. */
        static const char uc[] = "az_.m";
        int len = 1 + rand() % 3;
        for (int k = 0; k < len; k++) names[i][k] = uc[rand() % 5];
        snprintf(names[i] + len, sizeof names[i] - (size_t)len, "%03d", i);
        displays[i][0] = 0;
        for (int k = 0, m = 1 + rand() % 5; k < m; k++) strcat(displays[i], tok[rand() % NT]);
        char id[ID_MAX];
        snprintf(id, sizeof id, "u_r%d", i);
        add_user(f->st, id, names[i], displays[i], NULL, NULL);
    }
    assert_int_equal(store_commit(f->st), ST_OK);

    st_user out[NU];
    char expect[NU][33];
    for (int t = 0; t < 400; t++) {
        char q[32] = "";
        for (int k = 0, m = 1 + rand() % 3; k < m; k++) strcat(q, tok[rand() % NT]);
        int ne = 0;
        for (int i = 0; i < NU; i++)
            if (starts_ci(names[i], q) || starts_ci(displays[i], q))
                memcpy(expect[ne++], names[i], sizeof names[i]);
        qsort(expect, (size_t)ne, sizeof expect[0], cmp_str);
        int max = t % 2 ? NU : 5;
        int n = store_user_search(f->st, q, out, max);
        int want = ne < max ? ne : max;
        if (n != want) print_error("query \"%s\": %d results, expected %d\n", q, n, want);
        assert_int_equal(n, want);
        for (int i = 0; i < n; i++) assert_string_equal(out[i].username, expect[i]);
    }
}

/* ---- Devices ------------------------------------------------------------------------------- */

static void test_devices(void **state)
{
    fx *f = *state;
    add_user(f->st, "u_alice", "alice", NULL, NULL, NULL);
    add_user(f->st, "u_bob", "bob", NULL, NULL, NULL);

    int n = -1;
    assert_int_equal(store_device_count(f->st, "u_alice", &n), ST_OK);
    assert_int_equal(n, 0);
    /* Created out of order; listed oldest first. */
    st_device d = mk_dev("d_a2", "u_alice", 200);
    assert_int_equal(store_device_create(f->st, &d), ST_OK);
    d = mk_dev("d_a1", "u_alice", 100);
    assert_int_equal(store_device_create(f->st, &d), ST_OK);
    d = mk_dev("d_a3", "u_alice", 300);
    assert_int_equal(store_device_create(f->st, &d), ST_OK);
    d = mk_dev("d_b1", "u_bob", 50);
    assert_int_equal(store_device_create(f->st, &d), ST_OK);
    assert_int_equal(store_device_create(f->st, &d), ST_CONFLICT);
    log_threshold = LOG_OFF;
    d = mk_dev("d_x", "u_nobody", 50);
    assert_int_equal(store_device_create(f->st, &d), ST_NOTFOUND);
    log_threshold = LOG_WARN;

    assert_int_equal(store_device_count(f->st, "u_alice", &n), ST_OK);
    assert_int_equal(n, 3);
    st_device list[10];
    assert_int_equal(store_device_list(f->st, "u_alice", list, 10), 3);
    assert_string_equal(list[0].id, "d_a1");
    assert_string_equal(list[1].id, "d_a2");
    assert_string_equal(list[2].id, "d_a3");
    assert_string_equal(list[0].name, "phone of u_alice");
    assert_int_equal(store_device_list(f->st, "u_alice", list, 2), 2);
    assert_int_equal(store_device_list(f->st, "u_nobody", list, 10), 0);

    st_device g;
    assert_int_equal(store_device_get(f->st, "d_b1", &g), ST_OK);
    assert_string_equal(g.user_id, "u_bob");
    assert_int_equal(g.created_at, 50);
    assert_int_equal(g.acked_pos, 0);
    assert_int_equal(store_device_get(f->st, "d_nope", &g), ST_NOTFOUND);

    /* acked_pos never goes back; last_seen_at follows. */
    assert_int_equal(store_device_ack(f->st, "d_b1", 10, 1000), ST_OK);
    assert_int_equal(store_device_ack(f->st, "d_b1", 4, 2000), ST_OK);
    assert_int_equal(store_device_get(f->st, "d_b1", &g), ST_OK);
    assert_int_equal(g.acked_pos, 10);
    assert_int_equal(g.last_seen_at, 2000);
    assert_int_equal(store_device_ack(f->st, "d_b1", 12, 3000), ST_OK);
    assert_int_equal(store_device_get(f->st, "d_b1", &g), ST_OK);
    assert_int_equal(g.acked_pos, 12);
    assert_int_equal(store_device_ack(f->st, "d_nope", 1, 1), ST_NOTFOUND);

    /* Only the owner deletes. */
    assert_int_equal(store_device_delete(f->st, "u_bob", "d_a1"), ST_NOTFOUND);
    assert_int_equal(store_device_delete(f->st, "u_alice", "d_nope"), ST_NOTFOUND);
    assert_int_equal(store_device_delete(f->st, "u_alice", "d_a1"), ST_OK);
    assert_int_equal(store_device_delete(f->st, "u_alice", "d_a1"), ST_NOTFOUND);
    assert_int_equal(store_device_count(f->st, "u_alice", &n), ST_OK);
    assert_int_equal(n, 2);
    assert_int_equal(store_device_get(f->st, "d_a1", &g), ST_NOTFOUND);
}

/* ---- Conversations, messages, inboxes ------------------------------------------------------ */

static void test_conv_direct(void **state)
{
    fx *f = *state;
    add_user(f->st, "u_alice", "alice", NULL, NULL, NULL);
    add_user(f->st, "u_bob", "bob", NULL, NULL, NULL);
    char conv[ID_MAX];
    conv_direct_id(conv, "u_alice", "u_bob");

    bool yes = true;
    assert_int_equal(store_conv_is_member(f->st, conv, "u_alice", &yes), ST_OK);
    assert_false(yes);
    /* Outside a transaction too, and twice: idempotent. */
    assert_int_equal(store_conv_ensure_direct(f->st, conv, "u_alice", "u_bob", 10), ST_OK);
    assert_int_equal(store_begin(f->st), ST_OK);
    assert_int_equal(store_conv_ensure_direct(f->st, conv, "u_bob", "u_alice", 20), ST_OK);
    assert_int_equal(store_commit(f->st), ST_OK);

    char members[4][ID_MAX];
    assert_int_equal(store_conv_members(f->st, conv, members, 4), 2);
    assert_string_equal(members[0], "u_alice");
    assert_string_equal(members[1], "u_bob");
    assert_int_equal(store_conv_members(f->st, conv, members, 1), 1);
    assert_int_equal(store_conv_is_member(f->st, conv, "u_bob", &yes), ST_OK);
    assert_true(yes);
    assert_int_equal(store_conv_is_member(f->st, conv, "u_carol", &yes), ST_OK);
    assert_false(yes);
    assert_int_equal(store_conv_members(f->st, "p_none", members, 4), 0);

    /* A conversation with oneself has one member. */
    char self[ID_MAX];
    conv_direct_id(self, "u_alice", "u_alice");
    assert_int_equal(store_conv_ensure_direct(f->st, self, "u_alice", "u_alice", 10), ST_OK);
    assert_int_equal(store_conv_members(f->st, self, members, 4), 1);

    /* An unknown user: not found, and nothing is left half made. */
    char bad[ID_MAX];
    conv_direct_id(bad, "u_alice", "u_ghost");
    log_threshold = LOG_OFF;
    assert_int_equal(store_conv_ensure_direct(f->st, bad, "u_alice", "u_ghost", 10), ST_NOTFOUND);
    log_threshold = LOG_WARN;
    assert_int_equal(store_conv_members(f->st, bad, members, 4), 0);
    int64_t seq;
    assert_int_equal(store_conv_next_seq(f->st, bad, &seq), ST_NOTFOUND);
}

static void test_next_seq(void **state)
{
    fx *f = *state;
    add_user(f->st, "u_alice", "alice", NULL, NULL, NULL);
    add_user(f->st, "u_bob", "bob", NULL, NULL, NULL);
    char c1[ID_MAX], c2[ID_MAX];
    conv_direct_id(c1, "u_alice", "u_bob");
    conv_direct_id(c2, "u_alice", "u_alice");
    assert_int_equal(store_conv_ensure_direct(f->st, c1, "u_alice", "u_bob", 1), ST_OK);
    assert_int_equal(store_conv_ensure_direct(f->st, c2, "u_alice", "u_alice", 1), ST_OK);

    int64_t seq = 0;
    assert_int_equal(store_begin(f->st), ST_OK);
    for (int64_t i = 1; i <= 50; i++) {
        assert_int_equal(store_conv_next_seq(f->st, c1, &seq), ST_OK);
        assert_int_equal(seq, i);
    }
    assert_int_equal(store_conv_next_seq(f->st, c2, &seq), ST_OK);
    assert_int_equal(seq, 1);
    assert_int_equal(store_commit(f->st), ST_OK);

    /* A rolled-back seq is taken again: no gap. */
    assert_int_equal(store_begin(f->st), ST_OK);
    assert_int_equal(store_conv_next_seq(f->st, c1, &seq), ST_OK);
    assert_int_equal(seq, 51);
    assert_int_equal(store_rollback(f->st), ST_OK);
    assert_int_equal(store_begin(f->st), ST_OK);
    assert_int_equal(store_conv_next_seq(f->st, c1, &seq), ST_OK);
    assert_int_equal(seq, 51);
    assert_int_equal(store_commit(f->st), ST_OK);
    assert_int_equal(store_conv_next_seq(f->st, "p_none", &seq), ST_NOTFOUND);
}

static void test_inbox(void **state)
{
    fx *f = *state;
    add_user(f->st, "u_alice", "alice", NULL, NULL, NULL);
    add_user(f->st, "u_bob", "bob", NULL, NULL, NULL);
    add_user(f->st, "u_carol", "carol", NULL, NULL, NULL);

    /* alice->bob 5 times, carol->carol 3 times, bob->alice once. */
    char body[64], cmid[16];
    for (int i = 1; i <= 5; i++) {
        snprintf(body, sizeof body, "{\"text\":\"ab%d\"}", i);
        snprintf(cmid, sizeof cmid, "ab%d", i);
        assert_int_equal(send_direct(f->st, "u_alice", "d_a", "u_bob", cmid, body), i);
    }
    for (int i = 1; i <= 3; i++) {
        snprintf(body, sizeof body, "{\"text\":\"cc%d\"}", i);
        snprintf(cmid, sizeof cmid, "cc%d", i);
        assert_int_equal(send_direct(f->st, "u_carol", "d_c", "u_carol", cmid, body), i);
    }
    assert_int_equal(send_direct(f->st, "u_bob", "d_b", "u_alice", "ba1", "{\"text\":\"ba1\"}"), 6);

    int64_t head;
    assert_int_equal(store_user_head(f->st, "u_alice", &head), ST_OK);
    assert_int_equal(head, 6);
    assert_int_equal(store_user_head(f->st, "u_bob", &head), ST_OK);
    assert_int_equal(head, 6);
    assert_int_equal(store_user_head(f->st, "u_carol", &head), ST_OK);
    assert_int_equal(head, 3);

    /* Everything, in pos order, with bodies. */
    seen s = {0};
    assert_int_equal(store_inbox_read(f->st, "u_bob", 0, 100, collect, &s), 6);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(s.pos[i], i + 1);
        assert_int_equal(s.seq[i], i + 1);
    }
    assert_string_equal(s.body[0], "{\"text\":\"ab1\"}");
    assert_string_equal(s.body[4], "{\"text\":\"ab5\"}");
    assert_string_equal(s.body[5], "{\"text\":\"ba1\"}");

    /* Pages of 2 after 1: 2,3 then 4,5 then 6 then nothing. */
    int64_t after = 1;
    int64_t expect = 2;
    for (int page = 0; page < 4; page++) {
        memset(&s, 0, sizeof s);
        int n = store_inbox_read(f->st, "u_alice", after, 2, collect, &s);
        assert_int_equal(n, page < 2 ? 2 : page == 2 ? 1 : 0);
        for (int i = 0; i < n; i++) assert_int_equal(s.pos[i], expect++);
        if (n) after = s.pos[n - 1];
    }
    assert_int_equal(expect, 7);

    memset(&s, 0, sizeof s);
    assert_int_equal(store_inbox_read(f->st, "u_carol", 0, 100, collect, &s), 3);
    assert_string_equal(s.body[2], "{\"text\":\"cc3\"}");
    assert_int_equal(store_inbox_read(f->st, "u_carol", 3, 100, collect, &s), 0);
    assert_int_equal(store_inbox_read(f->st, "u_nobody", 0, 100, collect, &s), 0);
    assert_int_equal(store_inbox_read(f->st, "u_carol", 0, 0, collect, &s), 0);

    /* Appending for an unknown user is not found. */
    int64_t pos;
    assert_int_equal(store_inbox_append(f->st, "u_nobody", s.conv[0], 1, &pos), ST_NOTFOUND);
}

static void test_cmid_dedup(void **state)
{
    fx *f = *state;
    add_user(f->st, "u_alice", "alice", NULL, NULL, NULL);
    add_user(f->st, "u_bob", "bob", NULL, NULL, NULL);
    char conv[ID_MAX];
    conv_direct_id(conv, "u_alice", "u_bob");
    assert_int_equal(store_conv_ensure_direct(f->st, conv, "u_alice", "u_bob", 1), ST_OK);

    st_msg m = mk_msg(conv, 1, "u_alice", "d_a", "c-1", "{\"text\":\"first\"}");
    m.reply_to = 0;
    assert_int_equal(store_msg_insert(f->st, &m), ST_OK);
    /* Same (dev, cmid), another seq. */
    st_msg m2 = mk_msg(conv, 2, "u_alice", "d_a", "c-1", "{\"text\":\"second\"}");
    assert_int_equal(store_msg_insert(f->st, &m2), ST_CONFLICT);
    /* Same seq. */
    st_msg m3 = mk_msg(conv, 1, "u_alice", "d_a", "c-2", "{}");
    assert_int_equal(store_msg_insert(f->st, &m3), ST_CONFLICT);
    /* Same cmid from another device is another message. */
    st_msg m4 = mk_msg(conv, 2, "u_alice", "d_other", "c-1", "{\"text\":\"other\"}");
    m4.reply_to = 1;
    assert_int_equal(store_msg_insert(f->st, &m4), ST_OK);

    st_msg got = {0};
    assert_int_equal(store_msg_find_cmid(f->st, "d_a", "c-1", &got), ST_OK);
    assert_string_equal(got.conv, conv);
    assert_int_equal(got.seq, 1);
    assert_string_equal(got.from, "u_alice");
    assert_string_equal(got.dev, "d_a");
    assert_string_equal(got.cmid, "c-1");
    assert_int_equal(got.ts, 5001);
    assert_string_equal(got.kind, "text");
    assert_string_equal(got.body, "{\"text\":\"first\"}");
    assert_int_equal(got.reply_to, 0);
    st_msg_clear(&got);
    assert_null(got.body);
    assert_int_equal(store_msg_find_cmid(f->st, "d_other", "c-1", &got), ST_OK);
    assert_int_equal(got.reply_to, 1);
    st_msg_clear(&got);
    assert_int_equal(store_msg_find_cmid(f->st, "d_a", "c-9", &got), ST_NOTFOUND);
    assert_null(got.body);

    /* Messages outlive the device that sent them. */
    st_device d = mk_dev("d_a", "u_alice", 1);
    assert_int_equal(store_device_create(f->st, &d), ST_OK);
    assert_int_equal(store_device_delete(f->st, "u_alice", "d_a"), ST_OK);
    assert_int_equal(store_msg_find_cmid(f->st, "d_a", "c-1", &got), ST_OK);
    st_msg_clear(&got);

    /* A message in an unknown conversation. */
    log_threshold = LOG_OFF;
    st_msg m5 = mk_msg("p_none", 1, "u_alice", "d_a", "c-5", "{}");
    assert_int_equal(store_msg_insert(f->st, &m5), ST_NOTFOUND);
}

static void test_savepoints(void **state)
{
    fx *f = *state;
    add_user(f->st, "u_alice", "alice", NULL, NULL, NULL);
    add_user(f->st, "u_bob", "bob", NULL, NULL, NULL);
    char conv[ID_MAX];
    conv_direct_id(conv, "u_alice", "u_bob");
    int64_t seq, pos;

    assert_int_equal(store_begin(f->st), ST_OK);
    assert_int_equal(store_conv_ensure_direct(f->st, conv, "u_alice", "u_bob", 1), ST_OK);
    /* Item 1 kept. */
    assert_int_equal(store_savepoint(f->st), ST_OK);
    assert_int_equal(store_conv_next_seq(f->st, conv, &seq), ST_OK);
    st_msg m = mk_msg(conv, seq, "u_alice", "d_a", "k1", "{}");
    assert_int_equal(store_msg_insert(f->st, &m), ST_OK);
    assert_int_equal(store_inbox_append(f->st, "u_bob", conv, seq, &pos), ST_OK);
    assert_int_equal(store_release(f->st), ST_OK);
    /* Item 2 undone. */
    assert_int_equal(store_savepoint(f->st), ST_OK);
    assert_int_equal(store_conv_next_seq(f->st, conv, &seq), ST_OK);
    assert_int_equal(seq, 2);
    m = mk_msg(conv, seq, "u_alice", "d_a", "k2", "{}");
    assert_int_equal(store_msg_insert(f->st, &m), ST_OK);
    assert_int_equal(store_inbox_append(f->st, "u_bob", conv, seq, &pos), ST_OK);
    assert_int_equal(pos, 2);
    assert_int_equal(store_rollback_to(f->st), ST_OK);
    /* Item 3 takes seq 2 and pos 2 again. */
    assert_int_equal(store_savepoint(f->st), ST_OK);
    assert_int_equal(store_conv_next_seq(f->st, conv, &seq), ST_OK);
    assert_int_equal(seq, 2);
    m = mk_msg(conv, seq, "u_alice", "d_a", "k3", "{}");
    assert_int_equal(store_msg_insert(f->st, &m), ST_OK);
    assert_int_equal(store_inbox_append(f->st, "u_bob", conv, seq, &pos), ST_OK);
    assert_int_equal(pos, 2);
    assert_int_equal(store_release(f->st), ST_OK);
    assert_int_equal(store_commit(f->st), ST_OK);

    st_msg got = {0};
    assert_int_equal(store_msg_find_cmid(f->st, "d_a", "k2", &got), ST_NOTFOUND);
    assert_int_equal(store_msg_find_cmid(f->st, "d_a", "k3", &got), ST_OK);
    assert_int_equal(got.seq, 2);
    st_msg_clear(&got);

    /* A rolled-back transaction leaves nothing; rollback without a transaction is harmless. */
    assert_int_equal(store_begin(f->st), ST_OK);
    add_user(f->st, "u_carol", "carol", NULL, NULL, NULL);
    assert_int_equal(store_rollback(f->st), ST_OK);
    st_user u;
    assert_int_equal(store_user_get(f->st, "u_carol", &u), ST_NOTFOUND);
    assert_int_equal(store_rollback(f->st), ST_OK);
    log_threshold = LOG_OFF;
    assert_int_equal(store_commit(f->st), ST_ERR);
    assert_int_equal(store_begin(f->st), ST_OK);
    assert_int_equal(store_begin(f->st), ST_ERR);
    assert_int_equal(store_rollback(f->st), ST_OK);
}

/* ---- Groups, members, markers, history and the conversation list (schema 2) ---------------- */

static st_conv mk_group(const char *id, const char *name, int64_t created)
{
    st_conv c;
    memset(&c, 0, sizeof c);
    snprintf(c.id, sizeof c.id, "%s", id);
    snprintf(c.kind, sizeof c.kind, "group");
    snprintf(c.name, sizeof c.name, "%s", name);
    c.created_at = created;
    return c;
}

/* What the pipeline does for one message to any conversation: the next seq, the message and an
 * inbox entry for every member. Returns the seq. */
static int64_t put_msg(store_t *st, const char *conv, const char *from, const char *kind,
                       const char *body, int64_t ts)
{
    static int n;
    char cmid[32], members[16][ID_MAX];
    snprintf(cmid, sizeof cmid, "put-%d", ++n);
    int64_t seq = 0, pos = 0;
    assert_int_equal(store_begin(st), ST_OK);
    assert_int_equal(store_conv_next_seq(st, conv, &seq), ST_OK);
    st_msg m = mk_msg(conv, seq, from, "d_put", cmid, body);
    snprintf(m.kind, sizeof m.kind, "%s", kind);
    m.ts = ts;
    assert_int_equal(store_msg_insert(st, &m), ST_OK);
    int k = store_conv_members(st, conv, members, 16);
    assert_true(k >= 0);
    for (int i = 0; i < k; i++)
        assert_int_equal(store_inbox_append(st, members[i], conv, seq, &pos), ST_OK);
    assert_int_equal(store_commit(st), ST_OK);
    return seq;
}

static void test_groups(void **state)
{
    fx *f = *state;
    st_conv c = mk_group("g_one", "Climbers", 100);
    snprintf(c.avatar, sizeof c.avatar, "m_pic");
    c.e2e = true;
    c.last_seq = 77; /* ignored: a new group starts at 0 */
    assert_int_equal(store_group_create(f->st, &c), ST_OK);
    log_threshold = LOG_OFF;
    assert_int_equal(store_group_create(f->st, &c), ST_CONFLICT);
    log_threshold = LOG_WARN;

    st_conv g;
    assert_int_equal(store_conv_get(f->st, "g_one", &g), ST_OK);
    assert_string_equal(g.id, "g_one");
    assert_string_equal(g.kind, "group");
    assert_string_equal(g.name, "Climbers");
    assert_string_equal(g.avatar, "m_pic");
    assert_true(g.e2e);
    assert_int_equal(g.last_seq, 0);
    assert_int_equal(g.created_at, 100);
    assert_int_equal(store_conv_get(f->st, "g_none", &g), ST_NOTFOUND);

    snprintf(c.name, sizeof c.name, "Climbers and friends");
    c.avatar[0] = 0;
    c.e2e = false; /* not written by update */
    assert_int_equal(store_group_update(f->st, &c), ST_OK);
    assert_int_equal(store_conv_get(f->st, "g_one", &g), ST_OK);
    assert_string_equal(g.name, "Climbers and friends");
    assert_string_equal(g.avatar, "");
    assert_true(g.e2e);
    st_conv none = mk_group("g_none", "x", 1);
    assert_int_equal(store_group_update(f->st, &none), ST_NOTFOUND);

    /* A direct conversation reads with the defaults and is no group to update. */
    add_user(f->st, "u_alice", "alice", NULL, NULL, NULL);
    add_user(f->st, "u_bob", "bob", NULL, NULL, NULL);
    char conv[ID_MAX];
    conv_direct_id(conv, "u_alice", "u_bob");
    assert_int_equal(store_conv_ensure_direct(f->st, conv, "u_alice", "u_bob", 5), ST_OK);
    assert_int_equal(store_conv_get(f->st, conv, &g), ST_OK);
    assert_string_equal(g.kind, "direct");
    assert_string_equal(g.name, "");
    assert_false(g.e2e);
    assert_int_equal(g.created_at, 5);
    st_conv d = mk_group(conv, "renamed", 1);
    assert_int_equal(store_group_update(f->st, &d), ST_NOTFOUND);
    st_member m;
    assert_int_equal(store_member_get(f->st, conv, "u_bob", &m), ST_OK);
    assert_string_equal(m.role, "member");
    assert_int_equal(m.joined_seq, 0);
    assert_int_equal(m.joined_at, 5);
    assert_string_equal(m.notify, "all");
}

static void test_members(void **state)
{
    fx *f = *state;
    add_user(f->st, "u_alice", "alice", NULL, NULL, NULL);
    add_user(f->st, "u_bob", "bob", NULL, NULL, NULL);
    add_user(f->st, "u_carol", "carol", NULL, NULL, NULL);
    st_conv c = mk_group("g_one", "G", 100);
    assert_int_equal(store_group_create(f->st, &c), ST_OK);
    int n = -1;
    assert_int_equal(store_member_count(f->st, "g_one", &n), ST_OK);
    assert_int_equal(n, 0);

    assert_int_equal(store_member_add(f->st, "g_one", "u_carol", "owner", 100, 1), ST_OK);
    assert_int_equal(store_member_add(f->st, "g_one", "u_bob", "member", 200, 5), ST_OK);
    assert_int_equal(store_member_add(f->st, "g_one", "u_alice", "admin", 200, 5), ST_OK);
    log_threshold = LOG_OFF;
    assert_int_equal(store_member_add(f->st, "g_one", "u_bob", "member", 300, 9), ST_CONFLICT);
    assert_int_equal(store_member_add(f->st, "g_one", "u_ghost", "member", 300, 9), ST_NOTFOUND);
    assert_int_equal(store_member_add(f->st, "g_none", "u_bob", "member", 300, 9), ST_NOTFOUND);
    assert_int_equal(store_member_add(f->st, "g_one", "u_bob", "king", 300, 9), ST_ERR);
    log_threshold = LOG_WARN;

    st_member m;
    assert_int_equal(store_member_get(f->st, "g_one", "u_bob", &m), ST_OK);
    assert_string_equal(m.user, "u_bob");
    assert_string_equal(m.role, "member");
    assert_int_equal(m.joined_at, 200); /* the conflicting add changed nothing */
    assert_int_equal(m.joined_seq, 5);
    assert_int_equal(m.delivered_seq, 0);
    assert_int_equal(m.read_seq, 0);
    assert_int_equal(m.muted_until, 0);
    assert_string_equal(m.notify, "all");
    assert_int_equal(store_member_get(f->st, "g_one", "u_ghost", &m), ST_NOTFOUND);

    /* By joined_at, then user. */
    st_member ms[4];
    assert_int_equal(store_member_list(f->st, "g_one", ms, 4), 3);
    assert_string_equal(ms[0].user, "u_carol");
    assert_string_equal(ms[0].role, "owner");
    assert_string_equal(ms[1].user, "u_alice");
    assert_string_equal(ms[1].role, "admin");
    assert_string_equal(ms[2].user, "u_bob");
    assert_int_equal(store_member_list(f->st, "g_one", ms, 2), 2);
    assert_int_equal(store_member_list(f->st, "g_none", ms, 4), 0);
    assert_int_equal(store_member_count(f->st, "g_one", &n), ST_OK);
    assert_int_equal(n, 3);
    bool yes = false;
    assert_int_equal(store_conv_is_member(f->st, "g_one", "u_alice", &yes), ST_OK);
    assert_true(yes);

    assert_int_equal(store_member_set_role(f->st, "g_one", "u_bob", "admin"), ST_OK);
    assert_int_equal(store_member_get(f->st, "g_one", "u_bob", &m), ST_OK);
    assert_string_equal(m.role, "admin");
    assert_int_equal(store_member_set_role(f->st, "g_one", "u_ghost", "admin"), ST_NOTFOUND);
    log_threshold = LOG_OFF;
    assert_int_equal(store_member_set_role(f->st, "g_one", "u_bob", "god"), ST_ERR);
    log_threshold = LOG_WARN;

    assert_int_equal(store_member_settings(f->st, "g_one", "u_bob", 9999, "mentions"), ST_OK);
    assert_int_equal(store_member_get(f->st, "g_one", "u_bob", &m), ST_OK);
    assert_int_equal(m.muted_until, 9999);
    assert_string_equal(m.notify, "mentions");
    assert_int_equal(store_member_settings(f->st, "g_one", "u_ghost", 0, "all"), ST_NOTFOUND);
    log_threshold = LOG_OFF;
    assert_int_equal(store_member_settings(f->st, "g_one", "u_bob", 0, "loud"), ST_ERR);
    log_threshold = LOG_WARN;
    assert_int_equal(store_member_get(f->st, "g_one", "u_bob", &m), ST_OK);
    assert_string_equal(m.notify, "mentions");

    assert_int_equal(store_member_remove(f->st, "g_one", "u_bob"), ST_OK);
    assert_int_equal(store_member_remove(f->st, "g_one", "u_bob"), ST_NOTFOUND);
    assert_int_equal(store_member_get(f->st, "g_one", "u_bob", &m), ST_NOTFOUND);
    assert_int_equal(store_member_count(f->st, "g_one", &n), ST_OK);
    assert_int_equal(n, 2);
    /* Back in, from a later seq. */
    assert_int_equal(store_member_add(f->st, "g_one", "u_bob", "member", 400, 12), ST_OK);
    assert_int_equal(store_member_get(f->st, "g_one", "u_bob", &m), ST_OK);
    assert_int_equal(m.joined_seq, 12);
    assert_string_equal(m.notify, "all");
}

static void test_markers(void **state)
{
    fx *f = *state;
    add_user(f->st, "u_alice", "alice", NULL, NULL, NULL);
    add_user(f->st, "u_bob", "bob", NULL, NULL, NULL);
    char conv[ID_MAX];
    conv_direct_id(conv, "u_alice", "u_bob");
    char cmid[16];
    for (int i = 0; i < 5; i++) {
        snprintf(cmid, sizeof cmid, "m%d", i);
        send_direct(f->st, "u_alice", "d_a", "u_bob", cmid, "{}");
    }

    bool moved = false;
    assert_int_equal(store_marker_delivered(f->st, conv, "u_bob", 3, &moved), ST_OK);
    assert_true(moved);
    assert_int_equal(store_marker_delivered(f->st, conv, "u_bob", 3, &moved), ST_OK);
    assert_false(moved);
    assert_int_equal(store_marker_delivered(f->st, conv, "u_bob", 2, &moved), ST_OK);
    assert_false(moved);
    assert_int_equal(store_marker_read(f->st, conv, "u_bob", 2, &moved), ST_OK);
    assert_true(moved);
    assert_int_equal(store_marker_read(f->st, conv, "u_bob", 1, &moved), ST_OK);
    assert_false(moved);
    assert_int_equal(store_marker_delivered(f->st, conv, "u_bob", 5, &moved), ST_OK);
    assert_true(moved);
    st_member m;
    assert_int_equal(store_member_get(f->st, conv, "u_bob", &m), ST_OK);
    assert_int_equal(m.delivered_seq, 5);
    assert_int_equal(m.read_seq, 2);
    assert_int_equal(store_member_get(f->st, conv, "u_alice", &m), ST_OK);
    assert_int_equal(m.delivered_seq, 0);
    assert_int_equal(m.read_seq, 0);

    /* Not a member: nothing moves, and that is no error. */
    moved = true;
    assert_int_equal(store_marker_read(f->st, conv, "u_ghost", 4, &moved), ST_OK);
    assert_false(moved);
    moved = true;
    assert_int_equal(store_marker_delivered(f->st, "p_none", "u_bob", 4, &moved), ST_OK);
    assert_false(moved);

    /* Inside a transaction, then rolled back. */
    assert_int_equal(store_begin(f->st), ST_OK);
    assert_int_equal(store_marker_read(f->st, conv, "u_bob", 5, &moved), ST_OK);
    assert_true(moved);
    assert_int_equal(store_rollback(f->st), ST_OK);
    assert_int_equal(store_member_get(f->st, conv, "u_bob", &m), ST_OK);
    assert_int_equal(m.read_seq, 2);
}

typedef struct spans {
    int n;
    char conv[8][ID_MAX];
    int64_t seq[8];
    store_t *st; /* when set, the callback moves the delivered marker (re-entering the store) */
    const char *user;
} spans;

static void span_cb(void *ctx, const char *conv, int64_t seq)
{
    spans *s = ctx;
    assert_true(s->n < 8);
    snprintf(s->conv[s->n], ID_MAX, "%s", conv);
    s->seq[s->n++] = seq;
    if (s->st) {
        bool moved = false;
        assert_int_equal(store_marker_delivered(s->st, conv, s->user, seq, &moved), ST_OK);
        assert_true(moved);
    }
}

static int64_t span_seq(const spans *s, const char *conv)
{
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->conv[i], conv) == 0) return s->seq[i];
    return -1;
}

static void test_inbox_span(void **state)
{
    fx *f = *state;
    add_user(f->st, "u_alice", "alice", NULL, NULL, NULL);
    add_user(f->st, "u_bob", "bob", NULL, NULL, NULL);
    add_user(f->st, "u_carol", "carol", NULL, NULL, NULL);
    char ab[ID_MAX], ac[ID_MAX];
    conv_direct_id(ab, "u_alice", "u_bob");
    conv_direct_id(ac, "u_alice", "u_carol");
    /* alice's inbox: pos 1 ab/1, 2 ac/1, 3 ab/2, 4 ab/3, 5 ac/2, 6 ab/4 */
    send_direct(f->st, "u_bob", "d_b", "u_alice", "1", "{}");
    send_direct(f->st, "u_carol", "d_c", "u_alice", "1", "{}");
    send_direct(f->st, "u_bob", "d_b", "u_alice", "2", "{}");
    send_direct(f->st, "u_alice", "d_a", "u_bob", "3", "{}");
    send_direct(f->st, "u_carol", "d_c", "u_alice", "2", "{}");
    send_direct(f->st, "u_bob", "d_b", "u_alice", "4", "{}");

    spans s = {0};
    assert_int_equal(store_inbox_span(f->st, "u_alice", 0, 6, span_cb, &s), ST_OK);
    assert_int_equal(s.n, 2);
    assert_int_equal(span_seq(&s, ab), 4);
    assert_int_equal(span_seq(&s, ac), 2);

    memset(&s, 0, sizeof s);
    assert_int_equal(store_inbox_span(f->st, "u_alice", 1, 4, span_cb, &s), ST_OK);
    assert_int_equal(s.n, 2);
    assert_int_equal(span_seq(&s, ab), 3);
    assert_int_equal(span_seq(&s, ac), 1);

    memset(&s, 0, sizeof s);
    assert_int_equal(store_inbox_span(f->st, "u_alice", 4, 5, span_cb, &s), ST_OK);
    assert_int_equal(s.n, 1);
    assert_int_equal(span_seq(&s, ac), 2);

    memset(&s, 0, sizeof s);
    assert_int_equal(store_inbox_span(f->st, "u_alice", 6, 100, span_cb, &s), ST_OK);
    assert_int_equal(s.n, 0);
    assert_int_equal(store_inbox_span(f->st, "u_ghost", 0, 100, span_cb, &s), ST_OK);
    assert_int_equal(s.n, 0);

    /* The callback may write through the same store (as do_recv does), in a transaction. */
    memset(&s, 0, sizeof s);
    s.st = f->st;
    s.user = "u_alice";
    assert_int_equal(store_begin(f->st), ST_OK);
    assert_int_equal(store_inbox_span(f->st, "u_alice", 0, 6, span_cb, &s), ST_OK);
    assert_int_equal(store_commit(f->st), ST_OK);
    assert_int_equal(s.n, 2);
    st_member m;
    assert_int_equal(store_member_get(f->st, ab, "u_alice", &m), ST_OK);
    assert_int_equal(m.delivered_seq, 4);
    assert_int_equal(store_member_get(f->st, ac, "u_alice", &m), ST_OK);
    assert_int_equal(m.delivered_seq, 2);
}

static void test_msg_get_update(void **state)
{
    fx *f = *state;
    add_user(f->st, "u_alice", "alice", NULL, NULL, NULL);
    add_user(f->st, "u_bob", "bob", NULL, NULL, NULL);
    char conv[ID_MAX];
    conv_direct_id(conv, "u_alice", "u_bob");
    send_direct(f->st, "u_alice", "d_a", "u_bob", "c1", "{\"text\":\"hi\"}");

    st_msg m;
    assert_int_equal(store_msg_get(f->st, conv, 1, &m), ST_OK);
    assert_string_equal(m.conv, conv);
    assert_int_equal(m.seq, 1);
    assert_string_equal(m.from, "u_alice");
    assert_string_equal(m.dev, "d_a");
    assert_string_equal(m.cmid, "c1");
    assert_string_equal(m.kind, "text");
    assert_string_equal(m.body, "{\"text\":\"hi\"}");
    assert_int_equal(m.edited_at, 0);
    st_msg_clear(&m);
    assert_int_equal(store_msg_get(f->st, conv, 2, &m), ST_NOTFOUND);
    assert_int_equal(store_msg_get(f->st, "p_none", 1, &m), ST_NOTFOUND);

    assert_int_equal(store_msg_update(f->st, conv, 1, "text", "{\"text\":\"hello\"}", 7000), ST_OK);
    assert_int_equal(store_msg_get(f->st, conv, 1, &m), ST_OK);
    assert_string_equal(m.kind, "text");
    assert_string_equal(m.body, "{\"text\":\"hello\"}");
    assert_int_equal(m.edited_at, 7000);
    assert_string_equal(m.cmid, "c1");
    st_msg_clear(&m);

    assert_int_equal(store_msg_update(f->st, conv, 1, "deleted", "{}", 8000), ST_OK);
    assert_int_equal(store_msg_get(f->st, conv, 1, &m), ST_OK);
    assert_string_equal(m.kind, "deleted");
    assert_string_equal(m.body, "{}");
    assert_int_equal(m.edited_at, 8000);
    st_msg_clear(&m);
    assert_int_equal(store_msg_update(f->st, conv, 9, "text", "{}", 1), ST_NOTFOUND);

    /* The other readers of messages see edited_at too. */
    assert_int_equal(store_msg_find_cmid(f->st, "d_a", "c1", &m), ST_OK);
    assert_int_equal(m.edited_at, 8000);
    assert_string_equal(m.kind, "deleted");
    st_msg_clear(&m);
    seen s = {0};
    assert_int_equal(store_inbox_read(f->st, "u_bob", 0, 10, collect, &s), 1);
    assert_string_equal(s.body[0], "{}");
}

typedef struct hist {
    int n;
    int64_t seq[32];
    char body[32][32];
} hist;

static void hist_cb(void *ctx, const st_msg *m)
{
    hist *h = ctx;
    assert_true(h->n < 32);
    h->seq[h->n] = m->seq;
    snprintf(h->body[h->n], sizeof h->body[0], "%s", m->body);
    h->n++;
}

static void test_history(void **state)
{
    fx *f = *state;
    add_user(f->st, "u_alice", "alice", NULL, NULL, NULL);
    add_user(f->st, "u_bob", "bob", NULL, NULL, NULL);
    char conv[ID_MAX], body[32], cmid[16];
    conv_direct_id(conv, "u_alice", "u_bob");
    for (int i = 1; i <= 10; i++) {
        snprintf(body, sizeof body, "{\"n\":%d}", i);
        snprintf(cmid, sizeof cmid, "h%d", i);
        send_direct(f->st, "u_alice", "d_a", "u_bob", cmid, body);
    }

    hist h = {0};
    assert_int_equal(store_msg_history(f->st, conv, INT64_MAX, 0, 4, hist_cb, &h), 4);
    assert_int_equal(h.n, 4);
    assert_int_equal(h.seq[0], 10);
    assert_int_equal(h.seq[3], 7);
    assert_string_equal(h.body[0], "{\"n\":10}");
    /* The next page. */
    memset(&h, 0, sizeof h);
    assert_int_equal(store_msg_history(f->st, conv, 7, 0, 4, hist_cb, &h), 4);
    assert_int_equal(h.seq[0], 6);
    assert_int_equal(h.seq[3], 3);
    memset(&h, 0, sizeof h);
    assert_int_equal(store_msg_history(f->st, conv, 3, 0, 4, hist_cb, &h), 2);
    assert_int_equal(h.seq[0], 2);
    assert_int_equal(h.seq[1], 1);
    assert_string_equal(h.body[1], "{\"n\":1}");
    /* min_seq is a floor, included. */
    memset(&h, 0, sizeof h);
    assert_int_equal(store_msg_history(f->st, conv, INT64_MAX, 8, 50, hist_cb, &h), 3);
    assert_int_equal(h.seq[0], 10);
    assert_int_equal(h.seq[2], 8);
    memset(&h, 0, sizeof h);
    assert_int_equal(store_msg_history(f->st, conv, 8, 8, 50, hist_cb, &h), 0);
    assert_int_equal(store_msg_history(f->st, conv, INT64_MAX, 0, 0, hist_cb, &h), 0);
    assert_int_equal(store_msg_history(f->st, "p_none", INT64_MAX, 0, 10, hist_cb, &h), 0);
    assert_int_equal(h.n, 0);
}

typedef struct convrows {
    int n;
    store_t *st;
    char id[8][ID_MAX];
    char peer[8][ID_MAX];
    int64_t unread[8], last_seq[8], joined_seq[8], peer_read[8];
    char last_body[8][64];
    char role[8][8];
} convrows;

static void conv_cb(void *ctx, const st_conv_row *r)
{
    convrows *c = ctx;
    assert_true(c->n < 8);
    int i = c->n++;
    snprintf(c->id[i], ID_MAX, "%s", r->conv.id);
    snprintf(c->peer[i], ID_MAX, "%s", r->peer);
    c->unread[i] = r->unread;
    c->last_seq[i] = r->last.seq;
    c->joined_seq[i] = r->me.joined_seq;
    snprintf(c->role[i], sizeof c->role[0], "%s", r->me.role);
    snprintf(c->last_body[i], sizeof c->last_body[0], "%s", r->last.seq ? r->last.body : "-");
    if (r->last.seq) assert_string_equal(r->last.conv, r->conv.id);
    c->peer_read[i] = -1;
    /* The callback may read through the same store (as the REST handler does). */
    st_member p;
    if (r->peer[0] && store_member_get(c->st, r->conv.id, r->peer, &p) == ST_OK)
        c->peer_read[i] = p.read_seq;
}

static void test_conv_list(void **state)
{
    fx *f = *state;
    add_user(f->st, "u_alice", "alice", NULL, NULL, NULL);
    add_user(f->st, "u_bob", "bob", NULL, NULL, NULL);
    add_user(f->st, "u_carol", "carol", NULL, NULL, NULL);
    char ab[ID_MAX], aa[ID_MAX];
    conv_direct_id(ab, "u_alice", "u_bob");
    conv_direct_id(aa, "u_alice", "u_alice");
    assert_int_equal(store_conv_ensure_direct(f->st, ab, "u_alice", "u_bob", 10), ST_OK);
    assert_int_equal(store_conv_ensure_direct(f->st, aa, "u_alice", "u_alice", 11), ST_OK);
    st_conv g = mk_group("g_one", "G", 12), e = mk_group("g_empty", "E", 50);
    assert_int_equal(store_group_create(f->st, &g), ST_OK);
    assert_int_equal(store_group_create(f->st, &e), ST_OK);
    assert_int_equal(store_member_add(f->st, "g_one", "u_bob", "owner", 12, 1), ST_OK);
    assert_int_equal(store_member_add(f->st, "g_one", "u_carol", "member", 12, 1), ST_OK);
    assert_int_equal(store_member_add(f->st, "g_empty", "u_alice", "owner", 50, 1), ST_OK);
    /* Group messages before alice joins at seq 3 are not hers. */
    put_msg(f->st, "g_one", "u_bob", "text", "{\"t\":\"g1\"}", 100);
    put_msg(f->st, "g_one", "u_carol", "text", "{\"t\":\"g2\"}", 101);
    assert_int_equal(store_member_add(f->st, "g_one", "u_alice", "member", 102, 3), ST_OK);
    put_msg(f->st, "g_one", "u_bob", "system", "{\"event\":\"added\"}", 102); /* 3: system */
    put_msg(f->st, "g_one", "u_bob", "text", "{\"t\":\"g4\"}", 103);          /* 4 */
    put_msg(f->st, "g_one", "u_alice", "text", "{\"t\":\"g5\"}", 104);        /* 5: own */
    put_msg(f->st, "g_one", "u_carol", "sticker", "{\"t\":\"g6\"}", 105);     /* 6 */
    put_msg(f->st, "g_one", "u_carol", "reaction", "{\"t\":\"g7\"}", 106);    /* 7: no count */
    /* Direct: bob 1, 2, alice 3, bob 4 (media), newest of all. */
    put_msg(f->st, ab, "u_bob", "text", "{\"t\":\"d1\"}", 200);
    put_msg(f->st, ab, "u_bob", "text", "{\"t\":\"d2\"}", 201);
    put_msg(f->st, ab, "u_alice", "text", "{\"t\":\"d3\"}", 202);
    put_msg(f->st, ab, "u_bob", "media", "{\"t\":\"d4\"}", 203);
    /* Notes to self: one message, the oldest activity. */
    put_msg(f->st, aa, "u_alice", "text", "{\"t\":\"n1\"}", 20);
    bool moved;
    assert_int_equal(store_marker_read(f->st, ab, "u_alice", 1, &moved), ST_OK);
    assert_int_equal(store_marker_read(f->st, ab, "u_bob", 3, &moved), ST_OK);

    /* Order: ab (203), g_one (106), g_empty (created 50, no message), aa (20). */
    convrows c = {.st = f->st};
    assert_int_equal(store_conv_list(f->st, "u_alice", conv_cb, &c), ST_OK);
    assert_int_equal(c.n, 4);
    assert_string_equal(c.id[0], ab);
    assert_string_equal(c.id[1], "g_one");
    assert_string_equal(c.id[2], "g_empty");
    assert_string_equal(c.id[3], aa);

    assert_string_equal(c.peer[0], "u_bob");
    assert_int_equal(c.unread[0], 2); /* seq 2 and 4: after read_seq 1, not her own seq 3 */
    assert_int_equal(c.last_seq[0], 4);
    assert_string_equal(c.last_body[0], "{\"t\":\"d4\"}");
    assert_int_equal(c.peer_read[0], 3);
    assert_string_equal(c.role[0], "member");

    assert_string_equal(c.peer[1], ""); /* groups have no peer */
    assert_int_equal(c.unread[1], 2);   /* 4 and 6 */
    assert_int_equal(c.last_seq[1], 7);
    assert_int_equal(c.joined_seq[1], 3);
    assert_int_equal(c.peer_read[1], -1);

    assert_int_equal(c.last_seq[2], 0);
    assert_string_equal(c.last_body[2], "-");
    assert_int_equal(c.unread[2], 0);
    assert_string_equal(c.role[2], "owner");

    assert_string_equal(c.peer[3], ""); /* alone */
    assert_int_equal(c.unread[3], 0);
    assert_int_equal(c.last_seq[3], 1);

    /* Reading moves unread; a new message reorders. */
    assert_int_equal(store_marker_read(f->st, "g_one", "u_alice", 6, &moved), ST_OK);
    put_msg(f->st, aa, "u_alice", "text", "{\"t\":\"n2\"}", 300);
    memset(&c, 0, sizeof c);
    c.st = f->st;
    assert_int_equal(store_conv_list(f->st, "u_alice", conv_cb, &c), ST_OK);
    assert_int_equal(c.n, 4);
    assert_string_equal(c.id[0], aa);
    assert_string_equal(c.last_body[0], "{\"t\":\"n2\"}");
    assert_string_equal(c.id[2], "g_one");
    assert_int_equal(c.unread[2], 0);

    /* bob: the group's last message from his point of view, no g_empty. carol joined at 1. */
    memset(&c, 0, sizeof c);
    c.st = f->st;
    assert_int_equal(store_conv_list(f->st, "u_bob", conv_cb, &c), ST_OK);
    assert_int_equal(c.n, 2);
    assert_string_equal(c.id[0], ab);
    assert_string_equal(c.peer[0], "u_alice");
    assert_int_equal(c.unread[0], 0); /* read up to 3; 4 is his */
    assert_string_equal(c.id[1], "g_one");
    assert_int_equal(c.unread[1], 3); /* 2, 5, 6 */
    memset(&c, 0, sizeof c);
    c.st = f->st;
    assert_int_equal(store_conv_list(f->st, "u_carol", conv_cb, &c), ST_OK);
    assert_int_equal(c.n, 1);
    assert_int_equal(c.unread[0], 3); /* 1, 4, 5 */
    assert_int_equal(store_conv_list(f->st, "u_ghost", conv_cb, &c), ST_OK);
    assert_int_equal(c.n, 1);

    /* A member who joined after every message sees no last message, sorted by created_at. */
    add_user(f->st, "u_dan", "dan", NULL, NULL, NULL);
    assert_int_equal(store_member_add(f->st, "g_one", "u_dan", "member", 400, 8), ST_OK);
    memset(&c, 0, sizeof c);
    c.st = f->st;
    assert_int_equal(store_conv_list(f->st, "u_dan", conv_cb, &c), ST_OK);
    assert_int_equal(c.n, 1);
    assert_int_equal(c.last_seq[0], 0);
    assert_int_equal(c.unread[0], 0);
}

/* ---- Contacts, blocks, presence ------------------------------------------------------------ */

typedef struct contacts_seen {
    int n;
    char other[8][ID_MAX];
    char state[8][12];
    int64_t since[8];
} contacts_seen;

static void contact_cb(void *ctx, const char *other, const char *state, int64_t since)
{
    contacts_seen *c = ctx;
    assert_true(c->n < 8);
    snprintf(c->other[c->n], ID_MAX, "%s", other);
    snprintf(c->state[c->n], 12, "%s", state);
    c->since[c->n++] = since;
}

typedef struct ids_seen {
    int n;
    char id[16][ID_MAX];
} ids_seen;

static void id_cb(void *ctx, const char *user)
{
    ids_seen *s = ctx;
    assert_true(s->n < 16);
    snprintf(s->id[s->n++], ID_MAX, "%s", user);
}

static bool has_id(const ids_seen *s, const char *id)
{
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->id[i], id) == 0) return true;
    return false;
}

static void test_contacts(void **state)
{
    fx *f = *state;
    add_user(f->st, "u_alice", "alice", NULL, NULL, NULL);
    add_user(f->st, "u_bob", "bob", NULL, NULL, NULL);
    add_user(f->st, "u_carol", "carol", NULL, NULL, NULL);
    char st8[12];
    assert_int_equal(store_contact_get(f->st, "u_alice", "u_bob", st8), ST_NOTFOUND);

    /* alice invites bob, then carol; bob accepts. */
    assert_int_equal(store_contact_set(f->st, "u_alice", "u_bob", "outgoing", 10), ST_OK);
    assert_int_equal(store_contact_set(f->st, "u_bob", "u_alice", "incoming", 10), ST_OK);
    assert_int_equal(store_contact_set(f->st, "u_alice", "u_carol", "outgoing", 20), ST_OK);
    assert_int_equal(store_contact_set(f->st, "u_carol", "u_alice", "incoming", 20), ST_OK);
    assert_int_equal(store_contact_get(f->st, "u_alice", "u_bob", st8), ST_OK);
    assert_string_equal(st8, "outgoing");
    assert_int_equal(store_contact_get(f->st, "u_bob", "u_alice", st8), ST_OK);
    assert_string_equal(st8, "incoming");
    assert_int_equal(store_contact_set(f->st, "u_alice", "u_bob", "friend", 30), ST_OK);
    assert_int_equal(store_contact_set(f->st, "u_bob", "u_alice", "friend", 30), ST_OK);
    /* The same state again keeps since. */
    assert_int_equal(store_contact_set(f->st, "u_bob", "u_alice", "friend", 40), ST_OK);
    assert_int_equal(store_contact_get(f->st, "u_alice", "u_bob", st8), ST_OK);
    assert_string_equal(st8, "friend");

    contacts_seen c = {0};
    assert_int_equal(store_contact_list(f->st, "u_alice", contact_cb, &c), ST_OK);
    assert_int_equal(c.n, 2);
    assert_string_equal(c.other[0], "u_carol");
    assert_string_equal(c.state[0], "outgoing");
    assert_int_equal(c.since[0], 20);
    assert_string_equal(c.other[1], "u_bob");
    assert_string_equal(c.state[1], "friend");
    assert_int_equal(c.since[1], 30);
    memset(&c, 0, sizeof c);
    assert_int_equal(store_contact_list(f->st, "u_bob", contact_cb, &c), ST_OK);
    assert_int_equal(c.n, 1);
    assert_int_equal(c.since[0], 30);

    log_threshold = LOG_OFF;
    assert_int_equal(store_contact_set(f->st, "u_alice", "u_ghost", "outgoing", 1), ST_NOTFOUND);
    assert_int_equal(store_contact_set(f->st, "u_alice", "u_carol", "enemy", 1), ST_ERR);
    assert_int_equal(store_contact_set(f->st, "u_alice", "u_alice", "friend", 1), ST_ERR);
    log_threshold = LOG_WARN;

    /* Delete takes both sides, from either side. */
    assert_int_equal(store_contact_delete(f->st, "u_bob", "u_alice"), ST_OK);
    assert_int_equal(store_contact_get(f->st, "u_alice", "u_bob", st8), ST_NOTFOUND);
    assert_int_equal(store_contact_get(f->st, "u_bob", "u_alice", st8), ST_NOTFOUND);
    assert_int_equal(store_contact_delete(f->st, "u_bob", "u_alice"), ST_NOTFOUND);
    /* One side alone is deleted too. */
    assert_int_equal(store_contact_delete(f->st, "u_carol", "u_alice"), ST_OK);
    assert_int_equal(store_contact_delete(f->st, "u_alice", "u_carol"), ST_NOTFOUND);
    memset(&c, 0, sizeof c);
    assert_int_equal(store_contact_list(f->st, "u_alice", contact_cb, &c), ST_OK);
    assert_int_equal(c.n, 0);
}

static void test_blocks(void **state)
{
    fx *f = *state;
    add_user(f->st, "u_alice", "alice", NULL, NULL, NULL);
    add_user(f->st, "u_bob", "bob", NULL, NULL, NULL);
    add_user(f->st, "u_carol", "carol", NULL, NULL, NULL);
    bool ab = true, ba = true;
    assert_int_equal(store_block_check(f->st, "u_alice", "u_bob", &ab, &ba), ST_OK);
    assert_false(ab);
    assert_false(ba);

    assert_int_equal(store_block_set(f->st, "u_alice", "u_bob", 10), ST_OK);
    assert_int_equal(store_block_set(f->st, "u_alice", "u_bob", 99), ST_OK); /* idempotent */
    assert_int_equal(store_block_set(f->st, "u_alice", "u_carol", 5), ST_OK);
    assert_int_equal(store_block_check(f->st, "u_alice", "u_bob", &ab, &ba), ST_OK);
    assert_true(ab);
    assert_false(ba);
    assert_int_equal(store_block_check(f->st, "u_bob", "u_alice", &ab, &ba), ST_OK);
    assert_false(ab);
    assert_true(ba);
    assert_int_equal(store_block_set(f->st, "u_bob", "u_alice", 11), ST_OK);
    assert_int_equal(store_block_check(f->st, "u_bob", "u_alice", &ab, &ba), ST_OK);
    assert_true(ab);
    assert_true(ba);
    log_threshold = LOG_OFF;
    assert_int_equal(store_block_set(f->st, "u_alice", "u_ghost", 1), ST_NOTFOUND);
    log_threshold = LOG_WARN;

    ids_seen s = {0};
    assert_int_equal(store_block_list(f->st, "u_alice", id_cb, &s), ST_OK);
    assert_int_equal(s.n, 2);
    assert_string_equal(s.id[0], "u_carol"); /* by since */
    assert_string_equal(s.id[1], "u_bob");

    assert_int_equal(store_block_delete(f->st, "u_alice", "u_bob"), ST_OK);
    assert_int_equal(store_block_delete(f->st, "u_alice", "u_bob"), ST_NOTFOUND);
    assert_int_equal(store_block_check(f->st, "u_alice", "u_bob", &ab, &ba), ST_OK);
    assert_false(ab);
    assert_true(ba);
    memset(&s, 0, sizeof s);
    assert_int_equal(store_block_list(f->st, "u_alice", id_cb, &s), ST_OK);
    assert_int_equal(s.n, 1);
    memset(&s, 0, sizeof s);
    assert_int_equal(store_block_list(f->st, "u_carol", id_cb, &s), ST_OK);
    assert_int_equal(s.n, 0);
}

static void test_presence_audience(void **state)
{
    fx *f = *state;
    const char *names[] = {"alice", "bob", "carol", "dan", "erin", "frank", "gina", "hal"};
    char id[ID_MAX];
    for (int i = 0; i < 8; i++) {
        snprintf(id, sizeof id, "u_%s", names[i]);
        add_user(f->st, id, names[i], NULL, NULL, NULL);
    }
    /* alice: friend bob (also in a group with her), friend carol, outgoing to dan (not counted),
     * direct with erin, group with bob, frank, gina; gina blocked alice, alice blocked hal (a
     * friend). Herself in notes to self. */
    assert_int_equal(store_contact_set(f->st, "u_alice", "u_bob", "friend", 1), ST_OK);
    assert_int_equal(store_contact_set(f->st, "u_alice", "u_carol", "friend", 1), ST_OK);
    assert_int_equal(store_contact_set(f->st, "u_alice", "u_dan", "outgoing", 1), ST_OK);
    assert_int_equal(store_contact_set(f->st, "u_alice", "u_hal", "friend", 1), ST_OK);
    assert_int_equal(store_contact_set(f->st, "u_dan", "u_alice", "friend", 1), ST_OK);
    char c[ID_MAX];
    conv_direct_id(c, "u_alice", "u_erin");
    assert_int_equal(store_conv_ensure_direct(f->st, c, "u_alice", "u_erin", 1), ST_OK);
    conv_direct_id(c, "u_alice", "u_alice");
    assert_int_equal(store_conv_ensure_direct(f->st, c, "u_alice", "u_alice", 1), ST_OK);
    st_conv g = mk_group("g_one", "G", 1);
    assert_int_equal(store_group_create(f->st, &g), ST_OK);
    assert_int_equal(store_member_add(f->st, "g_one", "u_alice", "owner", 1, 1), ST_OK);
    assert_int_equal(store_member_add(f->st, "g_one", "u_bob", "member", 1, 1), ST_OK);
    assert_int_equal(store_member_add(f->st, "g_one", "u_frank", "member", 1, 1), ST_OK);
    assert_int_equal(store_member_add(f->st, "g_one", "u_gina", "member", 1, 1), ST_OK);
    /* A group alice is not in does not count. */
    st_conv g2 = mk_group("g_two", "G2", 1);
    assert_int_equal(store_group_create(f->st, &g2), ST_OK);
    assert_int_equal(store_member_add(f->st, "g_two", "u_dan", "owner", 1, 1), ST_OK);
    assert_int_equal(store_block_set(f->st, "u_gina", "u_alice", 1), ST_OK);
    assert_int_equal(store_block_set(f->st, "u_alice", "u_hal", 1), ST_OK);

    ids_seen s = {0};
    assert_int_equal(store_presence_audience(f->st, "u_alice", id_cb, &s), ST_OK);
    assert_int_equal(s.n, 4);
    assert_true(has_id(&s, "u_bob"));
    assert_true(has_id(&s, "u_carol"));
    assert_true(has_id(&s, "u_erin"));
    assert_true(has_id(&s, "u_frank"));
    assert_false(has_id(&s, "u_alice"));
    assert_false(has_id(&s, "u_gina"));
    assert_false(has_id(&s, "u_hal"));
    assert_false(has_id(&s, "u_dan"));

    /* gina: co-members bob, frank; alice blocked by her. */
    memset(&s, 0, sizeof s);
    assert_int_equal(store_presence_audience(f->st, "u_gina", id_cb, &s), ST_OK);
    assert_int_equal(s.n, 2);
    assert_true(has_id(&s, "u_bob"));
    assert_true(has_id(&s, "u_frank"));
    /* dan: friend of alice from his side. */
    memset(&s, 0, sizeof s);
    assert_int_equal(store_presence_audience(f->st, "u_dan", id_cb, &s), ST_OK);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.id[0], "u_alice");
    /* Lifting the block brings hal back. */
    assert_int_equal(store_block_delete(f->st, "u_alice", "u_hal"), ST_OK);
    memset(&s, 0, sizeof s);
    assert_int_equal(store_presence_audience(f->st, "u_alice", id_cb, &s), ST_OK);
    assert_int_equal(s.n, 5);
    assert_true(has_id(&s, "u_hal"));
    memset(&s, 0, sizeof s);
    assert_int_equal(store_presence_audience(f->st, "u_ghost", id_cb, &s), ST_OK);
    assert_int_equal(s.n, 0);
}

static void test_user_seen(void **state)
{
    fx *f = *state;
    add_user(f->st, "u_alice", "alice", NULL, "a@example.com", NULL);
    st_user u;
    assert_int_equal(store_user_get(f->st, "u_alice", &u), ST_OK);
    assert_int_equal(u.last_seen_at, 0);
    assert_int_equal(store_user_seen(f->st, "u_alice", 123456), ST_OK);
    assert_int_equal(store_user_get(f->st, "u_alice", &u), ST_OK);
    assert_int_equal(u.last_seen_at, 123456);
    assert_int_equal(u.created_at, 1000);
    char hash[256];
    assert_int_equal(store_user_find_login(f->st, "a@example.com", &u, hash), ST_OK);
    assert_int_equal(u.last_seen_at, 123456);
    assert_string_equal(hash, "hash-of-pw");
    assert_int_equal(store_user_search(f->st, "ali", &u, 1), 1);
    assert_int_equal(u.last_seen_at, 123456);
    assert_int_equal(store_user_seen(f->st, "u_ghost", 1), ST_NOTFOUND);
}

/* ---- Durability and migrations ------------------------------------------------------------- */

static int64_t user_version(const char *dir)
{
    char path[128];
    snprintf(path, sizeof path, "%s/parley.db", dir);
    sqlite3 *db = NULL;
    int64_t v = -1;
    sqlite3_stmt *s = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, NULL) == SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return v;
}

static void test_reopen(void **state)
{
    fx *f = *state;
    add_user(f->st, "u_alice", "alice", NULL, "a@example.com", NULL);
    add_user(f->st, "u_bob", "bob", NULL, NULL, NULL);
    st_device d = mk_dev("d_a", "u_alice", 1);
    assert_int_equal(store_device_create(f->st, &d), ST_OK);
    send_direct(f->st, "u_alice", "d_a", "u_bob", "c1", "{\"text\":\"kept\"}");
    store_close(f->st);
    f->st = NULL;

    struct stat sb;
    assert_int_equal(stat(f->dir, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0700);
    int64_t v = user_version(f->dir);
    assert_true(v >= 1);

    /* Reopening runs no migration (rerunning step 1 would fail: its tables exist). */
    char err[256];
    assert_int_equal(store_open(&f->st, f->dir, err, sizeof err), ST_OK);
    assert_int_equal(user_version(f->dir), v);
    st_user u;
    assert_int_equal(store_user_find_login(f->st, "a@example.com", &u, NULL), ST_OK);
    assert_string_equal(u.id, "u_alice");
    int n;
    assert_int_equal(store_device_count(f->st, "u_alice", &n), ST_OK);
    assert_int_equal(n, 1);
    seen s = {0};
    assert_int_equal(store_inbox_read(f->st, "u_bob", 0, 10, collect, &s), 1);
    assert_string_equal(s.body[0], "{\"text\":\"kept\"}");
    /* Sequences continue where they were. */
    assert_int_equal(send_direct(f->st, "u_bob", "d_b", "u_alice", "c2", "{}"), 2);
}

static void test_newer_schema_refused(void **state)
{
    fx *f = *state;
    store_close(f->st);
    f->st = NULL;
    char path[128];
    snprintf(path, sizeof path, "%s/parley.db", f->dir);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 999", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);

    log_threshold = LOG_OFF;
    char err[256] = "";
    store_t *st = NULL;
    assert_int_equal(store_open(&st, f->dir, err, sizeof err), ST_ERR);
    assert_null(st);
    assert_non_null(strstr(err, "999"));
    assert_non_null(strstr(err, "newer"));
    assert_int_equal(user_version(f->dir), 999);
}

/* A database left at schema 1 (made here by taking schema 2 apart) migrates to 2 on open and
 * keeps its rows, which get the new defaults. */
static void test_migrate_from_1(void **state)
{
    fx *f = *state;
    assert_int_equal(user_version(f->dir), 4);
    add_user(f->st, "u_alice", "alice", NULL, NULL, NULL);
    add_user(f->st, "u_bob", "bob", NULL, NULL, NULL);
    send_direct(f->st, "u_alice", "d_a", "u_bob", "c1", "{\"text\":\"old\"}");
    store_close(f->st);
    f->st = NULL;

    char path[128];
    snprintf(path, sizeof path, "%s/parley.db", f->dir);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    static const char down[] = "BEGIN;"
                               "DROP TABLE contacts;"
                               "DROP TABLE blocks;"
                               "ALTER TABLE users DROP COLUMN last_seen_at;"
                               "ALTER TABLE convs DROP COLUMN name;"
                               "ALTER TABLE convs DROP COLUMN avatar;"
                               "ALTER TABLE convs DROP COLUMN e2e;"
                               "ALTER TABLE members DROP COLUMN joined_seq;"
                               "ALTER TABLE members DROP COLUMN muted_until;"
                               "ALTER TABLE members DROP COLUMN notify;"
                               "ALTER TABLE messages DROP COLUMN edited_at;"
                               "PRAGMA user_version = 1;"
                               "COMMIT;";
    char *msg = NULL;
    int rc = sqlite3_exec(db, down, NULL, NULL, &msg);
    if (rc != SQLITE_OK) fprintf(stderr, "downgrade: %s\n", msg);
    sqlite3_free(msg);
    sqlite3_close(db);
    assert_int_equal(rc, SQLITE_OK);
    assert_int_equal(user_version(f->dir), 1);

    log_threshold = LOG_WARN;
    char err[256];
    assert_int_equal(store_open(&f->st, f->dir, err, sizeof err), ST_OK);
    assert_int_equal(user_version(f->dir), 4);
    char conv[ID_MAX];
    conv_direct_id(conv, "u_alice", "u_bob");
    st_conv c;
    assert_int_equal(store_conv_get(f->st, conv, &c), ST_OK);
    assert_string_equal(c.kind, "direct");
    assert_string_equal(c.name, "");
    assert_false(c.e2e);
    assert_int_equal(c.last_seq, 1);
    st_member m;
    assert_int_equal(store_member_get(f->st, conv, "u_bob", &m), ST_OK);
    assert_string_equal(m.role, "member");
    assert_int_equal(m.joined_seq, 0);
    assert_string_equal(m.notify, "all");
    st_msg msg1;
    assert_int_equal(store_msg_get(f->st, conv, 1, &msg1), ST_OK);
    assert_string_equal(msg1.body, "{\"text\":\"old\"}");
    assert_int_equal(msg1.edited_at, 0);
    st_msg_clear(&msg1);
    st_user u;
    assert_int_equal(store_user_get(f->st, "u_alice", &u), ST_OK);
    assert_int_equal(u.last_seen_at, 0);
    assert_int_equal(store_contact_set(f->st, "u_alice", "u_bob", "outgoing", 1), ST_OK);
    assert_int_equal(store_block_set(f->st, "u_bob", "u_alice", 1), ST_OK);
    assert_int_equal(send_direct(f->st, "u_bob", "d_b", "u_alice", "c2", "{}"), 2);
}

static void test_open_errors(void **state)
{
    fx *f = *state;
    log_threshold = LOG_OFF;
    char err[256] = "", path[128];
    store_t *st = (store_t *)1;
    assert_int_equal(store_open(&st, "", err, sizeof err), ST_ERR);
    assert_null(st);
    assert_true(strlen(err) > 0);
    assert_int_equal(store_open(&st, NULL, NULL, 0), ST_ERR);
    /* data_dir is a file. */
    snprintf(path, sizeof path, "%s/file", f->dir);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs("x", fp);
    fclose(fp);
    assert_int_equal(store_open(&st, path, err, sizeof err), ST_ERR);
    assert_non_null(strstr(err, path));
    /* parley.db is not a database. */
    snprintf(path, sizeof path, "%s/junk", f->dir);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(path, sizeof path, "%s/junk/parley.db", f->dir);
    fp = fopen(path, "w");
    assert_non_null(fp);
    for (int i = 0; i < 200; i++) fputs("not a database at all ", fp);
    fclose(fp);
    snprintf(path, sizeof path, "%s/junk", f->dir);
    assert_int_equal(store_open(&st, path, err, sizeof err), ST_ERR);
    assert_null(st);
    /* Nested folders are created. */
    snprintf(path, sizeof path, "%s/a/b/c", f->dir);
    assert_int_equal(store_open(&st, path, err, sizeof err), ST_OK);
    store_close(st);
    store_close(NULL);
}

/* ---- Concurrency --------------------------------------------------------------------------- */

#define ROUNDS 150

typedef struct writer {
    store_t *st;
    const char *dev;
    int failures;
} writer;

/* One item the way the pipeline does it: the dedup read first, then the writes. */
static int write_one(store_t *st, const char *dev, const char *conv, const char *cmid, int64_t now)
{
    st_msg m = {0};
    int r = store_msg_find_cmid(st, dev, cmid, &m);
    st_msg_clear(&m);
    if (r != ST_NOTFOUND) return -1;
    int64_t seq, pos;
    if (store_conv_ensure_direct(st, conv, "u_alice", "u_bob", now) != ST_OK) return -1;
    if (store_conv_next_seq(st, conv, &seq) != ST_OK) return -1;
    m = mk_msg(conv, seq, "u_alice", dev, cmid, "{\"text\":\"x\"}");
    if (store_msg_insert(st, &m) != ST_OK) return -1;
    if (store_inbox_append(st, "u_alice", conv, seq, &pos) != ST_OK) return -1;
    if (store_inbox_append(st, "u_bob", conv, seq, &pos) != ST_OK) return -1;
    return store_device_ack(st, dev, pos, now) == ST_OK ? 0 : -1;
}

/* cmocka asserts must stay on the main thread: a writer counts its failures. */
static void *write_loop(void *arg)
{
    writer *w = arg;
    char conv[ID_MAX], cmid[32];
    conv_direct_id(conv, "u_alice", "u_bob");
    for (int i = 0; i < ROUNDS; i++) {
        snprintf(cmid, sizeof cmid, "%s-%d", w->dev, i);
        if (store_begin(w->st) != ST_OK) {
            w->failures++;
            continue;
        }
        if (write_one(w->st, w->dev, conv, cmid, i) == 0 && store_commit(w->st) == ST_OK) continue;
        w->failures++;
        store_rollback(w->st);
    }
    return NULL;
}

static void count_seqs(void *ctx, int64_t pos, const st_msg *m)
{
    (void)pos;
    uint8_t *hit = ctx;
    if (m->seq >= 1 && m->seq <= 2 * ROUNDS) hit[m->seq]++;
}

static void test_concurrent_writers(void **state)
{
    fx *f = *state;
    add_user(f->st, "u_alice", "alice", NULL, NULL, NULL);
    add_user(f->st, "u_bob", "bob", NULL, NULL, NULL);
    st_device d = mk_dev("d_w1", "u_alice", 1);
    assert_int_equal(store_device_create(f->st, &d), ST_OK);
    d = mk_dev("d_w2", "u_alice", 2);
    assert_int_equal(store_device_create(f->st, &d), ST_OK);

    char err[256];
    store_t *st2 = NULL, *st3 = NULL;
    assert_int_equal(store_open(&st2, f->dir, err, sizeof err), ST_OK);
    assert_int_equal(store_open(&st3, f->dir, err, sizeof err), ST_OK);
    writer w[2] = {{st2, "d_w1", 0}, {st3, "d_w2", 0}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++) assert_int_equal(pthread_create(&t[i], NULL, write_loop, &w[i]), 0);
    /* Meanwhile this thread reads through its own connection. */
    for (int i = 0; i < 50; i++) {
        int64_t head;
        assert_int_equal(store_user_head(f->st, "u_bob", &head), ST_OK);
    }
    for (int i = 0; i < 2; i++) assert_int_equal(pthread_join(t[i], NULL), 0);
    assert_int_equal(w[0].failures, 0);
    assert_int_equal(w[1].failures, 0);

    /* Every seq 1..2*ROUNDS once, positions 1..2*ROUNDS, both inboxes. */
    int64_t head;
    assert_int_equal(store_user_head(f->st, "u_bob", &head), ST_OK);
    assert_int_equal(head, 2 * ROUNDS);
    assert_int_equal(store_user_head(f->st, "u_alice", &head), ST_OK);
    assert_int_equal(head, 2 * ROUNDS);
    uint8_t hit[2 * ROUNDS + 1] = {0};
    int total = 0;
    for (int64_t after = 0;;) {
        int n = store_inbox_read(f->st, "u_bob", after, 100, count_seqs, hit);
        assert_true(n >= 0);
        if (n == 0) break;
        total += n;
        after += n;
    }
    assert_int_equal(total, 2 * ROUNDS);
    for (int i = 1; i <= 2 * ROUNDS; i++) assert_int_equal(hit[i], 1);
    st_device g;
    assert_int_equal(store_device_get(f->st, "d_w1", &g), ST_OK);
    assert_true(g.acked_pos > 0);
    store_close(st2);
    store_close(st3);
}

/* Threads opening one fresh database at once: the WAL switch and the migration race. */
enum { OPENERS = 6 };
typedef struct opener {
    const char *dir;
    pthread_barrier_t *bar;
    int failures;
} opener;

static void *open_one(void *arg)
{
    opener *o = arg;
    store_t *st = NULL;
    char err[256];
    pthread_barrier_wait(o->bar);
    int64_t head;
    if (store_open(&st, o->dir, err, sizeof err) != ST_OK ||
        store_user_head(st, "u_x", &head) != ST_NOTFOUND)
        o->failures++;
    store_close(st);
    return NULL;
}

static void test_concurrent_open(void **state)
{
    fx *f = *state;
    for (int round = 0; round < 15; round++) {
        char dir[96];
        snprintf(dir, sizeof dir, "%s/fresh%d", f->dir, round);
        pthread_barrier_t bar;
        assert_int_equal(pthread_barrier_init(&bar, NULL, OPENERS), 0);
        opener o[OPENERS];
        pthread_t t[OPENERS];
        for (int i = 0; i < OPENERS; i++) {
            o[i] = (opener){dir, &bar, 0};
            assert_int_equal(pthread_create(&t[i], NULL, open_one, &o[i]), 0);
        }
        for (int i = 0; i < OPENERS; i++) {
            assert_int_equal(pthread_join(t[i], NULL), 0);
            assert_int_equal(o[i].failures, 0);
        }
        pthread_barrier_destroy(&bar);
    }
}

/* ---- Hostile input ------------------------------------------------------------------------- */

static void reenter(void *ctx, int64_t pos, const st_msg *m)
{
    (void)pos, (void)m;
    store_t *st = ctx;
    int64_t head;
    assert_int_equal(store_user_head(st, "u_alice", &head), ST_ERR);
}

static void test_bad_input(void **state)
{
    fx *f = *state;
    log_threshold = LOG_OFF;
    add_user(f->st, "u_alice", "alice", NULL, NULL, NULL);
    st_user u = mk_user("u_z", "zed", NULL, NULL, NULL);
    const char *field = "unset";

    /* Missing arguments. */
    assert_int_equal(store_user_create(NULL, &u, "h", &field), ST_ERR);
    assert_int_equal(store_user_create(f->st, NULL, "h", &field), ST_ERR);
    assert_int_equal(store_user_create(f->st, &u, NULL, &field), ST_ERR);
    assert_int_equal(store_user_get(f->st, NULL, &u), ST_ERR);
    assert_int_equal(store_user_find_login(f->st, NULL, &u, NULL), ST_ERR);
    assert_int_equal(store_user_search(f->st, NULL, &u, 1), ST_ERR);
    assert_int_equal(store_user_search(f->st, "a", NULL, 1), ST_ERR);
    assert_int_equal(store_user_search(f->st, "a", &u, -3), 0);
    assert_int_equal(store_device_list(f->st, "u_alice", NULL, 5), ST_ERR);
    assert_int_equal(store_conv_members(f->st, "p_x", NULL, 5), ST_ERR);
    assert_int_equal(store_inbox_read(f->st, "u_alice", 0, 10, NULL, NULL), ST_ERR);
    assert_int_equal(store_begin(NULL), ST_ERR);
    assert_int_equal(store_rollback(NULL), ST_ERR);
    st_msg m = mk_msg("p_x", 1, "u_alice", "d_a", "c", NULL);
    assert_int_equal(store_msg_insert(f->st, &m), ST_ERR);
    st_msg_clear(NULL);

    /* Arrays without a NUL are refused, not read past. */
    memset(u.username, 'a', sizeof u.username);
    assert_int_equal(store_user_create(f->st, &u, "h", &field), ST_ERR);
    u = mk_user("u_z", "zed", NULL, NULL, NULL);
    memset(u.settings, '{', sizeof u.settings);
    assert_int_equal(store_user_update(f->st, &u, &field), ST_ERR);
    st_device d = mk_dev("d_z", "u_alice", 1);
    memset(d.name, 'n', sizeof d.name);
    assert_int_equal(store_device_create(f->st, &d), ST_ERR);

    /* Long, odd or hostile strings are just strings. */
    char big[100000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    assert_int_equal(store_user_find_login(f->st, big, &u, NULL), ST_NOTFOUND);
    assert_int_equal(store_user_search(f->st, big, &u, 1), 0);
    assert_int_equal(store_user_get(f->st, "u_alice' OR '1'='1", &u), ST_NOTFOUND);
    assert_int_equal(store_user_search(f->st, "\\%_\\", &u, 1), 0);
    st_user many[3];
    assert_int_equal(store_user_search(f->st, "", many, 3), 1);

    /* kind and settings default when empty. */
    u = mk_user("u_k", "kay", NULL, NULL, NULL);
    u.kind[0] = 0;
    u.settings[0] = 0;
    assert_int_equal(store_user_create(f->st, &u, "h", &field), ST_OK);
    assert_int_equal(store_user_get(f->st, "u_k", &u), ST_OK);
    assert_string_equal(u.kind, "user");
    assert_string_equal(u.settings, "{}");
    /* A bad kind is refused by the schema. */
    u = mk_user("u_q", "q", NULL, NULL, NULL);
    snprintf(u.kind, sizeof u.kind, "robot");
    assert_int_equal(store_user_create(f->st, &u, "h", &field), ST_ERR);

    /* The store refuses to be re-entered from an inbox_read callback, then works again. */
    add_user(f->st, "u_bob", "bob", NULL, NULL, NULL);
    send_direct(f->st, "u_alice", "d_a", "u_bob", "c1", "{}");
    assert_int_equal(store_inbox_read(f->st, "u_alice", 0, 10, reenter, f->st), 1);
    int64_t head;
    assert_int_equal(store_user_head(f->st, "u_alice", &head), ST_OK);
    assert_int_equal(head, 1);
}

/* ---- The writer's checkpoints -------------------------------------------------------------- */

/* With store_writer_start, committed pages reach the database file by the background checkpoint
 * (once the WAL holds 8,192 frames) within a moment, long before the WAL is big enough for the
 * writer's own backstop at 32,768. */
static void test_writer_checkpoints(void **state)
{
    fx *f = *state;
    char db[128];
    snprintf(db, sizeof db, "%s/parley.db", f->dir);
    struct stat before;
    assert_int_equal(stat(db, &before), 0);
    assert_int_equal(store_writer_start(f->st), ST_OK);
    add_user(f->st, "u_ck1", "ckone", "One", "", "");
    add_user(f->st, "u_ck2", "cktwo", "Two", "", "");
    char body[1024];
    memset(body, 'x', sizeof body - 1);
    body[sizeof body - 1] = 0;
    char text[1100];
    snprintf(text, sizeof text, "{\"text\":\"%s\"}", body);
    for (int i = 0; i < 1500; i++) {
        char cmid[32];
        snprintf(cmid, sizeof cmid, "ck-%d", i);
        send_direct(f->st, "u_ck1", "d_ck1", "u_ck2", cmid, text);
    }
    /* 1,500 messages of 1 KiB (over 8,192 WAL frames): the database file grows by at least 1 MiB
     * once they are checkpointed */
    struct stat now = before;
    for (int i = 0; i < 50 && now.st_size < before.st_size + 1024 * 1024; i++) {
        usleep(100 * 1000);
        assert_int_equal(stat(db, &now), 0);
    }
    if (now.st_size < before.st_size + 1024 * 1024)
        fail_msg("database file %lld bytes, %lld before: nothing was checkpointed",
                 (long long)now.st_size, (long long)before.st_size);
}

int main(void)
{
    log_threshold = LOG_WARN;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_user_create_get_find, setup, teardown),
        cmocka_unit_test_setup_teardown(test_user_conflicts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_user_update, setup, teardown),
        cmocka_unit_test_setup_teardown(test_user_search, setup, teardown),
        cmocka_unit_test_setup_teardown(test_user_search_random, setup, teardown),
        cmocka_unit_test_setup_teardown(test_devices, setup, teardown),
        cmocka_unit_test_setup_teardown(test_conv_direct, setup, teardown),
        cmocka_unit_test_setup_teardown(test_next_seq, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inbox, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cmid_dedup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_savepoints, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_newer_schema_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_writers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_input, setup, teardown),
        cmocka_unit_test_setup_teardown(test_groups, setup, teardown),
        cmocka_unit_test_setup_teardown(test_members, setup, teardown),
        cmocka_unit_test_setup_teardown(test_markers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inbox_span, setup, teardown),
        cmocka_unit_test_setup_teardown(test_msg_get_update, setup, teardown),
        cmocka_unit_test_setup_teardown(test_history, setup, teardown),
        cmocka_unit_test_setup_teardown(test_conv_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_contacts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_blocks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_presence_audience, setup, teardown),
        cmocka_unit_test_setup_teardown(test_user_seen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migrate_from_1, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writer_checkpoints, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
