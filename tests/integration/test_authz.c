/* test_authz.c: every REST route and every WebSocket frame that names a conversation or a message,
 * tried by someone who may not make it, against a real parleyd over real sockets.
 *
 * For each route of src/server/api/router.c:
 *   (a) no token                        401 unauthenticated
 *   (b) a garbage token                 401 invalid_token
 *   (c) a logged-out device's token     401 device_revoked   (the device of the group's owner)
 *   plus two signed with the server's own key (read from the data folder): the owner's user id
 *   with the outsider's device (401 device_revoked) and an expired token (401 token_expired);
 *   (d) a real but wrong user: a non-member, a removed member, a plain member doing an admin's job,
 *   an admin doing the owner's, a user touching another user's device, contact or block, reading
 *   another pair's direct conversation, taking another user's name, email or phone, publishing or
 *   claiming keys for someone else's device (or a blocker's), and reading lists that must hold only
 *   the caller's own things.
 * Each refusal must carry the status and code of docs/protocol.md, and must change nothing: after
 * every case (per route for the 401 sweep) the world is read again by its rightful users (the
 * group, its history and receipts, the direct conversations, everyone's conversation list,
 * devices, profile, contacts and blocks, the OPK stocks and key directories) and compared with
 * what it was before. The WebSocket frames get the same treatment, and at the end no socket of a
 * rightful user may have heard anything (msg, typing, receipt).
 *
 * Coverage (which case covers which route) is kept in ROUTES below; test_route_table_covered fails
 * when router.c's table and ROUTES differ, and the sweeps fail when a route has no case. When a
 * route is added to router.c: add it to ROUTES, update ROUTES_IN_ROUTER_C, give it a probe in
 * probe_for() (the 401 sweep) and at least one wrong-user case in test_wrong_user_rest. */
#include "lib/tassert.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

TSRV_FIXTURE(srv)
#define PORT (srv.port)

#define SECRET "s3cr3t-setting-value" /* in the owner's settings: must never reach another user */

/* ---------------------------------------------------------------- the routes */

/* Every entry of the routes[] table in src/server/api/router.c, as "METHOD pattern", and whether
 * it needs a token. /v1/health (public, names nothing) and /v1/ws (the WebSocket, swept in
 * test_wrong_user_ws and test_unauthenticated_sweep) are dispatched before that table. */
typedef struct route_info {
    const char *route;
    bool auth;
} route_info;

static const route_info ROUTES[] = {
    {"POST /v1/accounts", false},
    {"POST /v1/sessions", false},
    {"DELETE /v1/sessions/current", true},
    {"GET /v1/me", true},
    {"PATCH /v1/me", true},
    {"GET /v1/users", true},
    {"GET /v1/users/{}", true},
    {"GET /v1/devices", true},
    {"DELETE /v1/devices/{}", true},
    {"POST /v1/groups", true},
    {"GET /v1/groups/{}", true},
    {"PATCH /v1/groups/{}", true},
    {"POST /v1/groups/{}/members", true},
    {"PATCH /v1/groups/{}/members/{}", true},
    {"DELETE /v1/groups/{}/members/{}", true},
    {"GET /v1/convs", true},
    {"GET /v1/convs/{}/messages", true},
    {"GET /v1/convs/{}/receipts", true},
    {"PUT /v1/convs/{}/settings", true},
    {"GET /v1/contacts", true},
    {"PUT /v1/contacts/{}", true},
    {"DELETE /v1/contacts/{}", true},
    {"GET /v1/blocks", true},
    {"PUT /v1/blocks/{}", true},
    {"DELETE /v1/blocks/{}", true},
    {"PUT /v1/keys/identity", true},
    {"PUT /v1/keys/bundle", true},
    {"POST /v1/keys/prekeys", true},
    {"GET /v1/keys/prekeys", true},
    {"POST /v1/keys/claim", true},
    {"GET /v1/users/{}/devices", true},
    {"PUT /v1/keys/link/{}", true},
    {"GET /v1/keys/link/{}", true},
};
#define N_ROUTES ((int)(sizeof ROUTES / sizeof ROUTES[0]))
/* Counted by hand in router.c's routes[] table. Keep in sync (see the top of this file). */
#define ROUTES_IN_ROUTER_C 33

/* WebSocket frames that name a conversation, a message or an inbox position. */
static const char *const WS_FRAMES[] = {"send",   "read",  "typing", "edit",
                                        "delete", "react", "sync",   "recv"};
#define N_WS_FRAMES ((int)(sizeof WS_FRAMES / sizeof WS_FRAMES[0]))

/* ---------------------------------------------------------------- server and small helpers */

/* Formatted strings that live until pool_free (paths, bodies, tokens of the cases). */
static char *pool[4096];
static int npool;

static const char *sf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static const char *sf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    assert_true(n >= 0);
    assert_true(npool < (int)(sizeof pool / sizeof pool[0]));
    pool[npool++] = s;
    return s;
}

static const char *keep(char *s)
{
    assert_non_null(s);
    assert_true(npool < (int)(sizeof pool / sizeof pool[0]));
    pool[npool++] = s;
    return s;
}

static void pool_free(void)
{
    for (int i = 0; i < npool; i++) free(pool[i]);
    npool = 0;
}

static json_t *req(const char *method, const char *path, const char *token, const char *body,
                   int *status)
{
    json_t *resp = NULL;
    assert_int_equal(thttp_req(PORT, method, path, token, body, status, &resp), 0);
    return resp;
}

/* A setup step that must succeed with want. */
static json_t *must(int want, const char *method, const char *path, const tuser *u,
                    const char *body)
{
    int st;
    json_t *r = req(method, path, u ? u->token : NULL, body, &st);
    if (st != want) t_note("setup: %s %s", method, path);
    assert_http_status(st, r, want);
    return r;
}

static void must0(int want, const char *method, const char *path, const tuser *u, const char *body)
{
    json_decref(must(want, method, path, u, body));
}

/* Sends one text message on a fresh socket; returns the ack. */
static json_t *say(const tuser *u, const char *to, const char *text)
{
    tws *ws = tws_auth(PORT, u->token, NULL);
    assert_non_null(ws);
    char cmid[32];
    t_id(cmid, sizeof cmid, "w");
    json_t *ack = tws_send_msg(ws, to, cmid, text);
    assert_non_null(ack);
    tws_free(ws);
    return ack;
}

/* ---------------------------------------------------------------- keys (docs/protocol.md, Keys) */

typedef struct ident {
    uint8_t pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];
} ident;

static const char *b64(const uint8_t *p, size_t n)
{
    size_t cap = sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    char *out = malloc(cap);
    assert_non_null(out);
    sodium_bin2base64(out, cap, p, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    return keep(out);
}

/* An X25519 public key as the server checks it: 32 bytes with bit 255 clear. */
static void x25519_pub(uint8_t out[32])
{
    randombytes_buf(out, 32);
    out[31] &= 0x7f;
}

static size_t put_id(uint8_t *p, const char *id)
{
    size_t n = strlen(id);
    p[0] = (uint8_t)n;
    memcpy(p + 1, id, n);
    return n + 1;
}

/* Ed25519 over label ‖ msg. */
static void sign_labeled(uint8_t sig[64], const char *label, const uint8_t *msg, size_t n,
                         const ident *k)
{
    uint8_t buf[512];
    size_t ll = strlen(label);
    assert_true(ll + n <= sizeof buf);
    memcpy(buf, label, ll);
    memcpy(buf + ll, msg, n);
    crypto_sign_detached(sig, NULL, buf, ll + n, k->sk);
}

/* The body of PUT /v1/keys/bundle for (user, dev): a DCERT naming (cuser, cdev) signed by
 * dsigner, an SPK signed by ssigner, and nopk OPKs with ids 1..nopk. */
static const char *bundle_body(const char *user, const char *dev, const char *cuser,
                               const char *cdev, const ident *dsigner, const ident *ssigner,
                               int nopk)
{
    uint8_t d[256];
    size_t n = 0;
    d[n++] = 1;
    n += put_id(d + n, cuser);
    n += put_id(d + n, cdev);
    x25519_pub(d + n);
    n += 32;
    uint64_t t = (uint64_t)now_ms();
    for (int i = 7; i >= 0; i--) d[n++] = (uint8_t)(t >> (8 * i));
    sign_labeled(d + n, "PARLEYv1/DCERT", d, n, dsigner);
    n += 64;
    uint8_t spk[32], m[200], sig[64];
    x25519_pub(spk);
    size_t k = 0;
    k += put_id(m + k, user);
    k += put_id(m + k, dev);
    uint32_t spk_id = 1;
    for (int i = 3; i >= 0; i--) m[k++] = (uint8_t)(spk_id >> (8 * i));
    memcpy(m + k, spk, 32);
    k += 32;
    sign_labeled(sig, "PARLEYv1/SPK", m, k, ssigner);
    json_t *opks = json_array();
    for (int i = 1; i <= nopk; i++) {
        uint8_t pub[32];
        x25519_pub(pub);
        json_array_append_new(opks, json_pack("{s:i, s:s}", "id", i, "pub", b64(pub, 32)));
    }
    json_t *j =
        json_pack("{s:s, s:{s:I, s:s, s:s}, s:o}", "dcert", b64(d, n), "spk", "id",
                  (json_int_t)spk_id, "pub", b64(spk, 32), "sig", b64(sig, 64), "opks", opks);
    char *body = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    return keep(body);
}

static const char *opks_body(int first, int n)
{
    json_t *opks = json_array();
    for (int i = first; i < first + n; i++) {
        uint8_t pub[32];
        x25519_pub(pub);
        json_array_append_new(opks, json_pack("{s:i, s:s}", "id", i, "pub", b64(pub, 32)));
    }
    json_t *j = json_pack("{s:o}", "opks", opks);
    char *body = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    return keep(body);
}

static const char *aik_body(const ident *k)
{
    return sf("{\"aik\":\"%s\"}", b64(k->pk, sizeof k->pk));
}

/* ---------------------------------------------------------------- the world */

typedef struct world {
    tuser o;   /* owner of group g */
    tuser o2;  /* a second device of o, logged out: its token is revoked */
    tuser a;   /* admin of g */
    tuser a2;  /* another admin of g */
    tuser m;   /* plain member of g, friend of o */
    tuser m2;  /* another plain member of g */
    tuser rm;  /* was a member of g, removed by o */
    tuser x;   /* the outsider: in nothing, blocked by b */
    tuser xb;  /* a second device of the outsider */
    tuser p1;  /* p1 and p2: friends with a direct conversation p */
    tuser p1b; /* a second device of p1 */
    tuser p2;
    tuser b; /* blocked x */
    tuser t; /* a stranger x once wrote to; blocked by o */
    char g[ID_MAX], p[ID_MAX], op2[ID_MAX], never[ID_MAX];
    const char *email, *phone;
    int64_t seq_o, seq_m, seq_rm, seq_a, seq_p1, seq_after;
    ident k_o, k_p1, k_b, k_x, k_other; /* identity keys; k_other is nobody's */
    const char *forged;                 /* signed by the server: sub o, dev x's device */
    const char *expired;                /* signed by the server: o's claims, exp in the past */
} world;

static world W;

static const char *forge(const char *model, const char *dev, bool expired)
{
    uint8_t key[64];
    assert_int_equal(tsrv_read_file(&srv, "jwt.key", key, sizeof key), 32);
    json_t *h = tjwt_part(model, 0), *c = tjwt_part(model, 1);
    assert_non_null(h);
    assert_non_null(c);
    if (dev) json_object_set_new(c, "dev", json_string(dev));
    if (expired) {
        json_object_set_new(c, "iat", json_integer(now_ms() / 1000 - 7200));
        json_object_set_new(c, "exp", json_integer(now_ms() / 1000 - 3600));
    }
    char *tok = tjwt_sign(h, c, key, 32);
    json_decref(h);
    json_decref(c);
    return keep(tok);
}

static void build_world(void)
{
    memset(&W, 0, sizeof W);
    struct {
        tuser *u;
        const char *prefix;
    } users[] = {{&W.o, "own"},   {&W.a, "adm"},  {&W.a2, "adm2"}, {&W.m, "mem"},
                 {&W.m2, "mem2"}, {&W.rm, "rmd"}, {&W.x, "out"},   {&W.p1, "pone"},
                 {&W.p2, "ptwo"}, {&W.b, "blk"},  {&W.t, "str"}};
    for (size_t i = 0; i < sizeof users / sizeof users[0]; i++)
        assert_int_equal(tuser_new(PORT, users[i].prefix, users[i].u), 201);
    W.email = sf("%s@example.org", W.o.username);
    W.phone = sf("+1555%07d", (int)(getpid() % 10000000));
    must0(200, "PATCH", "/v1/me", &W.o,
          sf("{\"email\":\"%s\",\"phone\":\"%s\",\"settings\":{\"secret\":\"%s\"}}", W.email,
             W.phone, SECRET));

    /* o2: logged out while connected; its socket is closed with 4001 */
    assert_int_equal(tuser_login(PORT, W.o.username, W.o.password, &W.o2), 200);
    tws *w2 = tws_live(PORT, &W.o2, "o2");
    assert_non_null(w2);
    must0(204, "DELETE", "/v1/sessions/current", &W.o2, NULL);
    assert_int_equal(tws_wait_close(w2, 0), 4001);
    tws_free(w2);
    assert_int_equal(tuser_login(PORT, W.p1.username, W.p1.password, &W.p1b), 200);
    assert_int_equal(tuser_login(PORT, W.x.username, W.x.password, &W.xb), 200);

    /* group g: o owner, a and a2 admins, m, m2 and rm members */
    json_t *g = must(201, "POST", "/v1/groups", &W.o,
                     sf("{\"name\":\"Original\",\"members\":[\"%s\",\"%s\",\"%s\",\"%s\",\"%s\"]}",
                        W.a.id, W.a2.id, W.m.id, W.m2.id, W.rm.id));
    snprintf(W.g, sizeof W.g, "%s", tj_str(g, "id"));
    json_decref(g);
    must0(204, "PATCH", sf("/v1/groups/%s/members/%s", W.g, W.a.id), &W.o, "{\"role\":\"admin\"}");
    must0(204, "PATCH", sf("/v1/groups/%s/members/%s", W.g, W.a2.id), &W.o, "{\"role\":\"admin\"}");
    json_t *ack = say(&W.o, W.g, "the owner's words");
    W.seq_o = tj_int(ack, "seq");
    json_decref(ack);
    ack = say(&W.m, W.g, "the member's words");
    W.seq_m = tj_int(ack, "seq");
    json_decref(ack);
    ack = say(&W.a, W.g, "the admin's words");
    W.seq_a = tj_int(ack, "seq");
    json_decref(ack);
    ack = say(&W.rm, W.g, "words from before the removal");
    W.seq_rm = tj_int(ack, "seq");
    json_decref(ack);

    /* direct conversations: p (p1, p2), op2 (o, p2), x with t; `never` was never used */
    ack = say(&W.p1, W.p2.id, "between p1 and p2 only");
    snprintf(W.p, sizeof W.p, "%s", tj_str(ack, "conv"));
    W.seq_p1 = tj_int(ack, "seq");
    json_decref(ack);
    json_decref(say(&W.p2, W.p1.id, "indeed, only us"));
    ack = say(&W.o, W.p2.id, "hello p2, the owner here");
    snprintf(W.op2, sizeof W.op2, "%s", tj_str(ack, "conv"));
    json_decref(ack);
    json_decref(say(&W.x, W.t.id, "hi stranger"));
    conv_direct_id(W.never, W.o.id, W.p1.id);

    /* contacts: p1 and p2 friends, o and m friends; blocks: b blocked x, o blocked t */
    must0(200, "PUT", sf("/v1/contacts/%s", W.p2.id), &W.p1, NULL);
    must0(200, "PUT", sf("/v1/contacts/%s", W.p1.id), &W.p2, NULL);
    must0(200, "PUT", sf("/v1/contacts/%s", W.m.id), &W.o, NULL);
    must0(200, "PUT", sf("/v1/contacts/%s", W.o.id), &W.m, NULL);
    must0(204, "PUT", sf("/v1/blocks/%s", W.x.id), &W.b, NULL);
    must0(204, "PUT", sf("/v1/blocks/%s", W.t.id), &W.o, NULL);

    /* rm is removed from g */
    must0(204, "DELETE", sf("/v1/groups/%s/members/%s", W.g, W.rm.id), &W.o, NULL);
    ack = say(&W.o, W.g, "said after the removal");
    W.seq_after = tj_int(ack, "seq");
    json_decref(ack);

    /* keys: o, p1, b and x publish identities (p2 and t do not, so no direct conversation
     * becomes end-to-end); o, p1 and b publish bundles with OPKs, x none */
    assert_true(sodium_init() >= 0);
    ident *ks[] = {&W.k_o, &W.k_p1, &W.k_b, &W.k_x, &W.k_other};
    for (size_t i = 0; i < sizeof ks / sizeof ks[0]; i++) crypto_sign_keypair(ks[i]->pk, ks[i]->sk);
    must0(204, "PUT", "/v1/keys/identity", &W.o, aik_body(&W.k_o));
    must0(204, "PUT", "/v1/keys/identity", &W.p1, aik_body(&W.k_p1));
    must0(204, "PUT", "/v1/keys/identity", &W.b, aik_body(&W.k_b));
    must0(204, "PUT", "/v1/keys/identity", &W.x, aik_body(&W.k_x));
    must0(200, "PUT", "/v1/keys/bundle", &W.o,
          bundle_body(W.o.id, W.o.device, W.o.id, W.o.device, &W.k_o, &W.k_o, 3));
    must0(200, "PUT", "/v1/keys/bundle", &W.p1,
          bundle_body(W.p1.id, W.p1.device, W.p1.id, W.p1.device, &W.k_p1, &W.k_p1, 5));
    must0(200, "PUT", "/v1/keys/bundle", &W.b,
          bundle_body(W.b.id, W.b.device, W.b.id, W.b.device, &W.k_b, &W.k_b, 5));

    W.forged = forge(W.o.token, W.x.device, false);
    W.expired = forge(W.o.token, NULL, true);
}

/* ---------------------------------------------------------------- snapshots of the world */

typedef struct view {
    const char *name;
    const tuser *who;
    const char *path;
} view;

static view views[64];
static int nviews;

static void view_add(const char *name, const tuser *who, const char *path)
{
    assert_true(nviews < (int)(sizeof views / sizeof views[0]));
    views[nviews++] = (view){name, who, path};
}

static void build_views(void)
{
    nviews = 0;
    view_add("group g as its owner", &W.o, sf("/v1/groups/%s", W.g));
    view_add("history of g as its owner", &W.o, sf("/v1/convs/%s/messages?limit=200", W.g));
    view_add("receipts of g as its owner", &W.o, sf("/v1/convs/%s/receipts", W.g));
    view_add("history of p as p1", &W.p1, sf("/v1/convs/%s/messages?limit=200", W.p));
    view_add("receipts of p as p1", &W.p1, sf("/v1/convs/%s/receipts", W.p));
    view_add("history of op2 as p2", &W.p2, sf("/v1/convs/%s/messages?limit=200", W.op2));
    const struct {
        const char *name;
        const tuser *u;
    } who[] = {{"o", &W.o},   {"a", &W.a}, {"a2", &W.a2}, {"m", &W.m},   {"m2", &W.m2},
               {"rm", &W.rm}, {"x", &W.x}, {"p1", &W.p1}, {"p2", &W.p2}, {"b", &W.b}};
    for (size_t i = 0; i < sizeof who / sizeof who[0]; i++) {
        view_add(sf("conversations of %s", who[i].name), who[i].u, "/v1/convs");
        view_add(sf("devices of %s", who[i].name), who[i].u, "/v1/devices");
        view_add(sf("contacts of %s", who[i].name), who[i].u, "/v1/contacts");
        view_add(sf("blocks of %s", who[i].name), who[i].u, "/v1/blocks");
    }
    view_add("profile of o", &W.o, "/v1/me");
    view_add("profile of x", &W.x, "/v1/me");
    view_add("devices of p1 as p1's second device", &W.p1b, "/v1/devices");
    view_add("prekeys of o", &W.o, "/v1/keys/prekeys");
    view_add("prekeys of p1", &W.p1, "/v1/keys/prekeys");
    view_add("prekeys of b", &W.b, "/v1/keys/prekeys");
    view_add("prekeys of p1's second device", &W.p1b, "/v1/keys/prekeys");
    view_add("prekeys of x", &W.x, "/v1/keys/prekeys");
    view_add("key directory of o, as p1", &W.p1, sf("/v1/users/%s/devices", W.o.id));
    view_add("key directory of p1, as o", &W.o, sf("/v1/users/%s/devices", W.p1.id));
    view_add("key directory of b, as b", &W.b, sf("/v1/users/%s/devices", W.b.id));
    view_add("key directory of x, as p2", &W.p2, sf("/v1/users/%s/devices", W.x.id));
}

/* Drops every "last_seen_at" (it moves whenever a token is used). */
static void strip(json_t *j)
{
    if (json_is_object(j)) {
        json_object_del(j, "last_seen_at");
        const char *k;
        json_t *v;
        json_object_foreach(j, k, v) strip(v);
    } else if (json_is_array(j)) {
        size_t i;
        json_t *v;
        json_array_foreach(j, i, v) strip(v);
    }
}

static json_t *snapshot(void)
{
    json_t *s = json_object();
    for (int i = 0; i < nviews; i++) {
        int st;
        json_t *r = req("GET", views[i].path, views[i].who->token, NULL, &st);
        strip(r);
        json_object_set_new(s, views[i].name,
                            json_pack("{s:i, s:o}", "status", st, "body", r ? r : json_null()));
    }
    return s;
}

/* Reads the world again; false (with the differences) when something changed. The new state
 * becomes the baseline, so each case is judged on its own. */
static bool unchanged(json_t **base, const char *after)
{
    json_t *now = snapshot();
    bool same = json_equal(*base, now);
    if (!same) {
        const char *k;
        json_t *v;
        json_object_foreach(*base, k, v)
        {
            json_t *w = json_object_get(now, k);
            if (json_equal(v, w)) continue;
            char *b = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
            char *a = json_dumps(w, JSON_COMPACT | JSON_SORT_KEYS);
            t_note("after %s: \"%s\" changed\n#     before: %.800s\n#     after:  %.800s", after, k,
                   b, a);
            free(a);
            free(b);
        }
    }
    json_decref(*base);
    *base = now;
    return same;
}

/* The state the sweeps must leave behind, read by its rightful users. */
static void check_world_intact(void)
{
    int st;
    json_t *r = req("GET", sf("/v1/groups/%s", W.g), W.o.token, NULL, &st);
    assert_http_status(st, r, 200);
    assert_string_equal(tj_str(r, "name"), "Original");
    assert_string_equal(tj_str(r, "avatar"), "");
    assert_int_equal(json_array_size(tj_get(r, "members")), 5);
    size_t i;
    json_t *m;
    json_array_foreach(tj_get(r, "members"), i, m)
    {
        const char *u = tj_str(m, "user"), *role = tj_str(m, "role");
        const char *want = !strcmp(u, W.o.id)                          ? "owner"
                           : !strcmp(u, W.a.id) || !strcmp(u, W.a2.id) ? "admin"
                           : !strcmp(u, W.m.id) || !strcmp(u, W.m2.id) ? "member"
                                                                       : "(not a member)";
        assert_string_equal(role, want);
    }
    json_decref(r);
    /* the messages others tried to edit or delete */
    r = req("GET", sf("/v1/convs/%s/messages?limit=200", W.g), W.o.token, NULL, &st);
    assert_http_status(st, r, 200);
    int found = 0;
    json_array_foreach(tj_get(r, "messages"), i, m)
    {
        int64_t seq = tj_int(m, "seq");
        const char *text = seq == W.seq_o       ? "the owner's words"
                           : seq == W.seq_m     ? "the member's words"
                           : seq == W.seq_a     ? "the admin's words"
                           : seq == W.seq_rm    ? "words from before the removal"
                           : seq == W.seq_after ? "said after the removal"
                                                : NULL;
        if (!text) continue;
        found++;
        assert_string_equal(tj_str(m, "kind"), "text");
        assert_string_equal(tj_str(m, "body.text"), text);
        assert_null(json_object_get(m, "edited_at"));
    }
    assert_int_equal(found, 5);
    json_decref(r);
    r = req("GET", sf("/v1/convs/%s/messages", W.p), W.p2.token, NULL, &st);
    assert_http_status(st, r, 200);
    assert_int_equal(json_array_size(tj_get(r, "messages")), 2);
    assert_string_equal(tj_str(r, "messages.1.body.text"), "between p1 and p2 only");
    assert_null(tj_get(r, "messages.1.edited_at"));
    json_decref(r);
    /* every device still works; o2 still does not */
    const tuser *devs[] = {&W.o, &W.a, &W.p1, &W.p1b, &W.p2, &W.x, &W.b};
    for (size_t k = 0; k < sizeof devs / sizeof devs[0]; k++) {
        r = req("GET", "/v1/me", devs[k]->token, NULL, &st);
        assert_http_status(st, r, 200);
        assert_string_equal(tj_str(r, "id"), devs[k]->id);
        json_decref(r);
    }
    r = req("GET", "/v1/me", W.o2.token, NULL, &st);
    assert_http_error(st, r, 401, "device_revoked");
    json_decref(r);
    r = req("GET", "/v1/me", W.o.token, NULL, &st);
    assert_string_equal(tj_str(r, "email"), W.email);
    assert_string_equal(tj_str(r, "phone"), W.phone);
    assert_string_equal(tj_str(r, "settings.secret"), SECRET);
    json_decref(r);
    /* contacts and blocks */
    r = req("GET", "/v1/contacts", W.p1.token, NULL, &st);
    assert_int_equal(json_array_size(tj_get(r, "contacts")), 1);
    assert_string_equal(tj_str(r, "contacts.0.user.id"), W.p2.id);
    assert_string_equal(tj_str(r, "contacts.0.state"), "friend");
    json_decref(r);
    r = req("GET", "/v1/blocks", W.b.token, NULL, &st);
    assert_int_equal(json_array_size(tj_get(r, "blocks")), 1);
    assert_string_equal(tj_str(r, "blocks.0"), W.x.id);
    json_decref(r);
}

/* ---------------------------------------------------------------- REST cases */

typedef struct rcase {
    const char *route; /* "METHOD pattern", as in ROUTES */
    const char *what;
    const char *token;
    const char *a1, *a2; /* the {} segments */
    const char *suffix;  /* a query string */
    const char *body;
    int status;
    const char *code;      /* NULL: a success whose answer must hold none of not_in */
    const char *not_in[5]; /* strings that must not appear in the answer */
    bool raw_basic;        /* send "Authorization: Basic ..." instead of a Bearer token */
    char method[8], path[320];
} rcase;

static rcase cases[256];
static int ncases;

static const route_info *route_find(const char *route)
{
    for (int i = 0; i < N_ROUTES; i++)
        if (strcmp(ROUTES[i].route, route) == 0) return &ROUTES[i];
    return NULL;
}

/* Adds a case; its path is the route's pattern with the {} filled, so it names that route. */
static void add(rcase c)
{
    if (!route_find(c.route)) t_note("case \"%s\": no route %s in ROUTES", c.what, c.route);
    assert_non_null(route_find(c.route));
    const char *sp = strchr(c.route, ' ');
    snprintf(c.method, sizeof c.method, "%.*s", (int)(sp - c.route), c.route);
    const char *args[2] = {c.a1, c.a2};
    int k = 0;
    size_t o = 0;
    for (const char *p = sp + 1; *p;) {
        if (p[0] == '{' && p[1] == '}') {
            assert_true(k < 2 && args[k]);
            o += (size_t)snprintf(c.path + o, sizeof c.path - o, "%s", args[k++]);
            p += 2;
        } else {
            c.path[o++] = *p++;
        }
        assert_true(o < sizeof c.path - 1);
    }
    c.path[o] = 0;
    assert_true(k == 2 || !args[k]);
    if (c.suffix) snprintf(c.path + o, sizeof c.path - o, "%s", c.suffix);
    assert_true(ncases < (int)(sizeof cases / sizeof cases[0]));
    cases[ncases++] = c;
}

static const char *case_label(int i)
{
    return sf("case %d, %s %s (%s)", i, cases[i].method, cases[i].path, cases[i].what);
}

/* Runs one case; false (with a note) when the answer is not what protocol.md says. */
static bool run_case(int i)
{
    const rcase *c = &cases[i];
    int st = 0;
    json_t *resp = NULL;
    if (c->raw_basic) {
        char head[600];
        snprintf(head, sizeof head,
                 "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAuthorization: Basic b3duZXI6cHc=\r\n"
                 "Connection: close\r\n",
                 c->method, c->path, PORT);
        const char *req_text =
            c->body ? sf("%sContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s", head,
                         strlen(c->body), c->body)
                    : sf("%s\r\n", head);
        thttp_resp r;
        memset(&r, 0, sizeof r);
        if (thttp_raw(PORT, req_text, strlen(req_text), &r, NULL) != 0) {
            t_note("%s: no answer", case_label(i));
            return false;
        }
        st = r.status;
        resp = json_incref(r.json);
        thttp_resp_free(&r);
    } else if (thttp_req(PORT, c->method, c->path, c->token, c->body, &st, &resp) != 0) {
        t_note("%s: no answer", case_label(i));
        return false;
    }
    bool ok = st == c->status;
    if (c->code)
        ok = ok && strcmp(t_err_code(resp), c->code) == 0 &&
             json_is_string(tj_get(resp, "error.message"));
    char *dump = resp ? json_dumps(resp, JSON_COMPACT) : strdup("");
    for (int k = 0; k < 5 && c->not_in[k]; k++)
        if (strstr(dump, c->not_in[k])) {
            t_note("%s: the answer holds \"%s\", which is not the caller's", case_label(i),
                   c->not_in[k]);
            ok = false;
        }
    if (!ok)
        t_note("%s: want %d %s, got %d %.600s", case_label(i), c->status,
               c->code ? c->code : "(success)", st, dump);
    free(dump);
    json_decref(resp);
    return ok;
}

/* The representative request of a route in the 401 sweep: what an attacker would like to do,
 * aimed at real objects (the owner's group and devices, real contacts and blocks). */
/* A device-link id (16 zero bytes) and an envelope for device `to` (sizes as the server wants). */
#define LINK_ID "AAAAAAAAAAAAAAAAAAAAAA"
static const char *link_body(const char *to)
{
    return sf("{\"to\":\"%s\",\"eph\":\"%.43s\",\"nonce\":\"%.32s\",\"c\":\"%.23s\"}", to,
              "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
              "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
}

static rcase probe_for(const char *route)
{
    const char *rename = "{\"name\":\"pwned\"}";
    rcase c = {.route = route};
    if (!strcmp(route, "DELETE /v1/sessions/current")) {
    } else if (!strcmp(route, "GET /v1/me")) {
    } else if (!strcmp(route, "PATCH /v1/me")) {
        c.body = "{\"display_name\":\"pwned\",\"settings\":{}}";
    } else if (!strcmp(route, "GET /v1/users")) {
        c.suffix = sf("?query=%s", W.o.username);
    } else if (!strcmp(route, "GET /v1/users/{}")) {
        c.a1 = W.o.id;
    } else if (!strcmp(route, "GET /v1/devices")) {
    } else if (!strcmp(route, "DELETE /v1/devices/{}")) {
        c.a1 = W.o.device; /* the owner's live device */
    } else if (!strcmp(route, "POST /v1/groups")) {
        c.body = sf("{\"name\":\"pwned\",\"members\":[\"%s\"]}", W.p1.id);
    } else if (!strcmp(route, "GET /v1/groups/{}")) {
        c.a1 = W.g;
    } else if (!strcmp(route, "PATCH /v1/groups/{}")) {
        c.a1 = W.g;
        c.body = rename;
    } else if (!strcmp(route, "POST /v1/groups/{}/members")) {
        c.a1 = W.g;
        c.body = sf("{\"users\":[\"%s\"]}", W.x.id);
    } else if (!strcmp(route, "PATCH /v1/groups/{}/members/{}")) {
        c.a1 = W.g;
        c.a2 = W.m.id;
        c.body = "{\"role\":\"owner\"}";
    } else if (!strcmp(route, "DELETE /v1/groups/{}/members/{}")) {
        c.a1 = W.g;
        c.a2 = W.m.id;
    } else if (!strcmp(route, "GET /v1/convs")) {
    } else if (!strcmp(route, "GET /v1/convs/{}/messages")) {
        c.a1 = W.g;
    } else if (!strcmp(route, "GET /v1/convs/{}/receipts")) {
        c.a1 = W.g;
    } else if (!strcmp(route, "PUT /v1/convs/{}/settings")) {
        c.a1 = W.g;
        c.body = "{\"notify\":\"none\",\"muted_until\":1}";
    } else if (!strcmp(route, "GET /v1/contacts")) {
    } else if (!strcmp(route, "PUT /v1/contacts/{}")) {
        c.a1 = W.a.id;
    } else if (!strcmp(route, "DELETE /v1/contacts/{}")) {
        c.a1 = W.m.id; /* the owner's friend */
    } else if (!strcmp(route, "GET /v1/blocks")) {
    } else if (!strcmp(route, "PUT /v1/blocks/{}")) {
        c.a1 = W.m.id;
    } else if (!strcmp(route, "DELETE /v1/blocks/{}")) {
        c.a1 = W.t.id; /* the owner's block */
    } else if (!strcmp(route, "PUT /v1/keys/identity")) {
        c.body = aik_body(&W.k_other); /* would replace the owner's identity key */
    } else if (!strcmp(route, "PUT /v1/keys/bundle")) {
        c.body = bundle_body(W.o.id, W.o.device, W.o.id, W.o.device, &W.k_o, &W.k_o, 1);
    } else if (!strcmp(route, "POST /v1/keys/prekeys")) {
        c.body = opks_body(100, 2);
    } else if (!strcmp(route, "GET /v1/keys/prekeys")) {
    } else if (!strcmp(route, "POST /v1/keys/claim")) {
        c.body = sf("{\"devices\":[{\"user\":\"%s\",\"device\":\"%s\"}]}", W.p1.id,
                    W.p1.device); /* would take one of p1's OPKs */
    } else if (!strcmp(route, "GET /v1/users/{}/devices")) {
        c.a1 = W.o.id;
    } else if (!strcmp(route, "PUT /v1/keys/link/{}")) {
        c.a1 = LINK_ID;
        c.body = link_body(W.o.device); /* would leave an envelope for the owner's device */
    } else if (!strcmp(route, "GET /v1/keys/link/{}")) {
        c.a1 = LINK_ID;
    } else {
        t_note("no probe for %s: add one to probe_for()", route);
        fail();
    }
    return c;
}

/* ---------------------------------------------------------------- router.c's table */

/* Reads the "METHOD pattern" entries of routes[] in router.c (env T_ROUTER_C, default the path
 * from the repo root, where the tests run). Returns the count, or -1 when the file is missing. */
static int read_router(char out[][160], bool *auth, int cap)
{
    const char *path = getenv("T_ROUTER_C");
    if (!path || !*path) path = "src/server/api/router.c";
    FILE *f = fopen(path, "r");
    if (!f) {
        t_note("cannot open %s (run from the repo root or set T_ROUTER_C)", path);
        return -1;
    }
    char line[512];
    bool in = false;
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        if (!in) {
            in = strstr(line, "route routes[] = {") != NULL;
            continue;
        }
        if (line[0] == '}') break;
        char m[16], p[128], a[8];
        if (sscanf(line, " {\"%15[A-Z]\", \"%127[^\"]\", %*[^,], %7[a-z]", m, p, a) == 3 &&
            n < cap) {
            snprintf(out[n], 160, "%s %s", m, p);
            auth[n] = strcmp(a, "true") == 0;
            n++;
        }
    }
    fclose(f);
    return n;
}

T_TEST(test_route_table_covered)
{
    assert_int_equal(N_ROUTES, ROUTES_IN_ROUTER_C);
    char found[128][160];
    bool auth[128];
    int n = read_router(found, auth, 128);
    assert_true(n > 0);
    int bad = 0;
    for (int i = 0; i < n; i++) {
        const route_info *r = route_find(found[i]);
        if (!r) {
            t_note("router.c has %s, which the sweep does not cover: add it to ROUTES and give it "
                   "cases",
                   found[i]);
            bad++;
        } else if (r->auth != auth[i]) {
            t_note("router.c: %s has auth %s, ROUTES says %s", found[i], auth[i] ? "true" : "false",
                   r->auth ? "true" : "false");
            bad++;
        }
    }
    for (int k = 0; k < N_ROUTES; k++) {
        bool there = false;
        for (int i = 0; i < n; i++) there = there || strcmp(found[i], ROUTES[k].route) == 0;
        if (!there) {
            t_note("ROUTES has %s, which router.c does not", ROUTES[k].route);
            bad++;
        }
    }
    assert_int_equal(n, ROUTES_IN_ROUTER_C);
    assert_int_equal(bad, 0);
}

/* ---------------------------------------------------------------- (a), (b), (c): 401 */

static bool ws_refused_at_auth(const char *what, const char *frame)
{
    tws *ws = tws_open(PORT);
    if (!ws) return false;
    snprintf(ws->label, sizeof ws->label, "unauth");
    bool ok = tws_send_text(ws, frame, strlen(frame), 1) == 0;
    int code = ok ? tws_wait_close(ws, 0) : T_ERR;
    if (code != 4001) t_note("WebSocket, %s: want close 4001, got %d", what, code);
    tws_free(ws);
    return code == 4001;
}

T_TEST(test_unauthenticated_sweep)
{
    build_world();
    /* A device removed while connected: its socket is closed with 4001 and its token is dead. */
    tuser p1c;
    assert_int_equal(tuser_login(PORT, W.p1.username, W.p1.password, &p1c), 200);
    tws *wc = tws_live(PORT, &p1c, "p1c");
    assert_non_null(wc);
    must0(204, "DELETE", sf("/v1/devices/%s", p1c.device), &W.p1, NULL);
    assert_int_equal(tws_wait_close(wc, 0), 4001);
    tws_free(wc);
    int st;
    json_t *r = req("GET", "/v1/me", p1c.token, NULL, &st);
    assert_http_error(st, r, 401, "device_revoked");
    json_decref(r);

    build_views();
    json_t *base = snapshot();
    const struct {
        const char *what, *token;
        const char *code;
    } variants[] = {
        {"no token", NULL, "unauthenticated"},
        {"a garbage token", "garbage", "invalid_token"},
        {"the token of the owner's logged-out device", W.o2.token, "device_revoked"},
        {"a signed token: the owner's id with the outsider's device", W.forged, "device_revoked"},
        {"a signed token of the owner, expired", W.expired, "token_expired"},
    };
    const int nv = (int)(sizeof variants / sizeof variants[0]);
    int failures = 0, per_route[N_ROUTES] = {0};
    ncases = 0;
    for (int k = 0; k < N_ROUTES; k++) {
        if (!ROUTES[k].auth) continue;
        int first = ncases;
        for (int v = 0; v < nv; v++) {
            rcase c = probe_for(ROUTES[k].route);
            c.what = variants[v].what;
            c.token = variants[v].token;
            c.status = 401;
            c.code = variants[v].code;
            add(c);
        }
        rcase c = probe_for(ROUTES[k].route);
        c.what = "Authorization: Basic";
        c.raw_basic = true;
        c.status = 401;
        c.code = "unauthenticated";
        add(c);
        for (int i = first; i < ncases; i++) failures += !run_case(i);
        per_route[k] = ncases - first;
        if (!unchanged(&base, sf("the 401 cases of %s", ROUTES[k].route))) failures++;
    }
    /* the public routes need no token, and ignore a bad one */
    r = req("POST", "/v1/sessions", "garbage",
            sf("{\"login\":\"%s\",\"password\":\"%s\"}", W.t.username, W.t.password), &st);
    assert_http_status(st, r, 200);
    json_decref(r);
    if (!unchanged(&base, "a log-in of the stranger")) failures++; /* t is in no view */
    for (int k = 0; k < N_ROUTES; k++)
        if (ROUTES[k].auth && per_route[k] < nv + 1) {
            t_note("%s has no 401 cases", ROUTES[k].route);
            failures++;
        }

    /* The WebSocket: the same tokens in the auth frame, or no auth frame at all. */
    const char *send_first = sf("{\"type\":\"send\",\"id\":\"s1\",\"to\":\"%s\",\"cmid\":\"c1\","
                                "\"kind\":\"text\",\"body\":{\"text\":\"pwned\"}}",
                                W.g);
    failures += !ws_refused_at_auth("auth without a token", "{\"type\":\"auth\"}");
    for (int v = 1; v < nv; v++)
        failures += !ws_refused_at_auth(
            variants[v].what, sf("{\"type\":\"auth\",\"token\":\"%s\"}", variants[v].token));
    failures += !ws_refused_at_auth("a send as the first frame", send_first);
    if (!unchanged(&base, "the refused WebSocket handshakes")) failures++;
    json_decref(base);
    check_world_intact();
    printf("# 401 sweep: %d REST cases over %d routes, %d WebSocket auth cases; %d failed\n",
           ncases, N_ROUTES - 2, nv + 1, failures);
    fflush(stdout);
    pool_free();
    assert_int_equal(failures, 0);
}

/* ---------------------------------------------------------------- (d) wrong users, REST */

#define NOT_A_MEMBER(rt, who_, conv, label, ...)                                                   \
    add((rcase){.route = rt,                                                                       \
                .what = label,                                                                     \
                .token = (who_)->token,                                                            \
                .a1 = conv,                                                                        \
                .status = 403,                                                                     \
                .code = "not_a_member",                                                            \
                __VA_ARGS__})
#define FORBIDDEN(rt, who_, label, ...)                                                            \
    add((rcase){.route = rt,                                                                       \
                .what = label,                                                                     \
                .token = (who_)->token,                                                            \
                .a1 = W.g,                                                                         \
                .status = 403,                                                                     \
                .code = "forbidden",                                                               \
                __VA_ARGS__})

static void wrong_user_cases(void)
{
    const char *pw = "another password";
    const char *G = "GET /v1/groups/{}", *GP = "PATCH /v1/groups/{}",
               *GA = "POST /v1/groups/{}/members", *GR = "PATCH /v1/groups/{}/members/{}",
               *GD = "DELETE /v1/groups/{}/members/{}", *CM = "GET /v1/convs/{}/messages",
               *CR = "GET /v1/convs/{}/receipts", *CS = "PUT /v1/convs/{}/settings";
    const char *rename = "{\"name\":\"pwned\"}";
    char upper[40];
    snprintf(upper, sizeof upper, "%s", W.o.username);
    for (char *c = upper; *c; c++)
        if (*c >= 'a' && *c <= 'z') *c = (char)(*c - 'a' + 'A');
    char fresh[33];
    t_name(fresh, sizeof fresh, "fresh");

    /* accounts and sessions (no token: the "wrong user" is someone claiming another's name) */
    add((rcase){.route = "POST /v1/accounts",
                .what = "registers the owner's username",
                .body = sf("{\"username\":\"%s\",\"password\":\"%s\"}", W.o.username, pw),
                .status = 409,
                .code = "username_taken"});
    add((rcase){.route = "POST /v1/accounts",
                .what = "registers the owner's username in upper case",
                .body = sf("{\"username\":\"%s\",\"password\":\"%s\"}", upper, pw),
                .status = 409,
                .code = "username_taken"});
    add((rcase){.route = "POST /v1/accounts",
                .what = "registers with the owner's email",
                .body = sf("{\"username\":\"%s\",\"password\":\"%s\",\"email\":\"%s\"}", fresh, pw,
                           W.email),
                .status = 409,
                .code = "email_taken"});
    add((rcase){.route = "POST /v1/accounts",
                .what = "registers with the owner's phone",
                .body = sf("{\"username\":\"%s\",\"password\":\"%s\",\"phone\":\"%s\"}", fresh, pw,
                           W.phone),
                .status = 409,
                .code = "phone_taken"});
    add((rcase){.route = "POST /v1/sessions",
                .what = "logs in as the owner with a wrong password",
                .body = sf("{\"login\":\"%s\",\"password\":\"%s\"}", W.o.username, pw),
                .status = 401,
                .code = "invalid_credentials"});
    add((rcase){.route = "POST /v1/sessions",
                .what = "logs in by the owner's email with a wrong password",
                .body = sf("{\"login\":\"%s\",\"password\":\"%s\"}", W.email, pw),
                .status = 401,
                .code = "invalid_credentials"});
    add((rcase){.route = "DELETE /v1/sessions/current",
                .what = "the stranger logs out: that device only",
                .token = W.t.token,
                .status = 204});

    /* profiles */
    add((rcase){.route = "GET /v1/me",
                .what = "the outsider's profile holds nothing of the owner's",
                .token = W.x.token,
                .status = 200,
                .not_in = {W.email, W.phone, SECRET, W.o.id}});
    add((rcase){.route = "PATCH /v1/me",
                .what = "the outsider takes the owner's email",
                .token = W.x.token,
                .body = sf("{\"email\":\"%s\"}", W.email),
                .status = 409,
                .code = "email_taken"});
    add((rcase){.route = "PATCH /v1/me",
                .what = "the outsider takes the owner's phone",
                .token = W.x.token,
                .body = sf("{\"phone\":\"%s\"}", W.phone),
                .status = 409,
                .code = "phone_taken"});
    add((rcase){.route = "PATCH /v1/me",
                .what = "the outsider sets id to the owner's",
                .token = W.x.token,
                .body = sf("{\"id\":\"%s\",\"display_name\":\"owner\"}", W.o.id),
                .status = 400,
                .code = "invalid_request"});
    add((rcase){.route = "PATCH /v1/me",
                .what = "the outsider sets username to the owner's",
                .token = W.x.token,
                .body = sf("{\"username\":\"%s\"}", W.o.username),
                .status = 400,
                .code = "invalid_request"});
    add((rcase){.route = "GET /v1/users",
                .what = "searching the owner shows the public profile only",
                .token = W.x.token,
                .suffix = sf("?query=%s", W.o.username),
                .status = 200,
                .not_in = {W.email, W.phone, SECRET, "settings", W.o.device}});
    add((rcase){.route = "GET /v1/users/{}",
                .what = "the owner's public profile only",
                .token = W.x.token,
                .a1 = W.o.id,
                .status = 200,
                .not_in = {W.email, W.phone, SECRET, "settings", W.o.device}});

    /* devices */
    add((rcase){.route = "GET /v1/devices",
                .what = "the outsider's list holds no one else's device",
                .token = W.x.token,
                .status = 200,
                .not_in = {W.o.device, W.p1.device, W.p1b.device, W.o2.device}});
    add((rcase){.route = "DELETE /v1/devices/{}",
                .what = "the outsider removes p1's second device",
                .token = W.x.token,
                .a1 = W.p1b.device,
                .status = 404,
                .code = "not_found"});
    add((rcase){.route = "DELETE /v1/devices/{}",
                .what = "p1's friend removes p1's device",
                .token = W.p2.token,
                .a1 = W.p1.device,
                .status = 404,
                .code = "not_found"});
    add((rcase){.route = "DELETE /v1/devices/{}",
                .what = "the group's owner removes an admin's device",
                .token = W.o.token,
                .a1 = W.a.device,
                .status = 404,
                .code = "not_found"});

    /* groups */
    add((rcase){.route = "POST /v1/groups",
                .what = "the outsider makes a group with the user who blocked them",
                .token = W.x.token,
                .body = sf("{\"name\":\"trap\",\"members\":[\"%s\"]}", W.b.id),
                .status = 403,
                .code = "blocked"});
    add((rcase){.route = "POST /v1/groups",
                .what = "... with p1 and p2 first, then the blocker: nobody joins anything",
                .token = W.x.token,
                .body = sf("{\"name\":\"trap\",\"members\":[\"%s\",\"%s\",\"%s\"]}", W.p1.id,
                           W.p2.id, W.b.id),
                .status = 403,
                .code = "blocked"});
    NOT_A_MEMBER(G, &W.x, W.g, "a non-member reads the group");
    NOT_A_MEMBER(G, &W.rm, W.g, "a removed member reads the group");
    NOT_A_MEMBER(G, &W.p1, W.g, "another user reads the group");
    add((rcase){.route = G,
                .what = "a group that does not exist",
                .token = W.x.token,
                .a1 = "g_nosuchgroup",
                .status = 404,
                .code = "not_found"});
    NOT_A_MEMBER(GP, &W.x, W.g, "a non-member renames the group", .body = rename);
    NOT_A_MEMBER(GP, &W.rm, W.g, "a removed member renames the group", .body = rename);
    FORBIDDEN(GP, &W.m, "a plain member renames the group", .body = rename);
    FORBIDDEN(GP, &W.m, "a plain member sets the avatar", .body = "{\"avatar\":\"\"}");
    NOT_A_MEMBER(GA, &W.x, W.g, "a non-member adds themself",
                 .body = sf("{\"users\":[\"%s\"]}", W.x.id));
    NOT_A_MEMBER(GA, &W.rm, W.g, "a removed member adds themself back",
                 .body = sf("{\"users\":[\"%s\"]}", W.rm.id));
    FORBIDDEN(GA, &W.m, "a plain member adds the outsider",
              .body = sf("{\"users\":[\"%s\"]}", W.x.id));
    NOT_A_MEMBER(GR, &W.x, W.g, "a non-member makes a member owner", .a2 = W.m.id,
                 .body = "{\"role\":\"owner\"}");
    NOT_A_MEMBER(GR, &W.rm, W.g, "a removed member makes themself owner", .a2 = W.rm.id,
                 .body = "{\"role\":\"owner\"}");
    FORBIDDEN(GR, &W.m, "a plain member makes themself owner", .a2 = W.m.id,
              .body = "{\"role\":\"owner\"}");
    FORBIDDEN(GR, &W.m, "a plain member demotes an admin", .a2 = W.a.id,
              .body = "{\"role\":\"member\"}");
    FORBIDDEN(GR, &W.a, "an admin makes themself owner", .a2 = W.a.id,
              .body = "{\"role\":\"owner\"}");
    FORBIDDEN(GR, &W.a, "an admin promotes a member", .a2 = W.m.id, .body = "{\"role\":\"admin\"}");
    FORBIDDEN(GR, &W.a, "an admin demotes another admin", .a2 = W.a2.id,
              .body = "{\"role\":\"member\"}");
    FORBIDDEN(GR, &W.a, "an admin demotes the owner", .a2 = W.o.id,
              .body = "{\"role\":\"member\"}");
    NOT_A_MEMBER(GD, &W.x, W.g, "a non-member removes a member", .a2 = W.m.id);
    NOT_A_MEMBER(GD, &W.rm, W.g, "a removed member removes a member", .a2 = W.m.id);
    NOT_A_MEMBER(GD, &W.rm, W.g, "a removed member leaves again", .a2 = W.rm.id);
    FORBIDDEN(GD, &W.m, "a plain member removes another member", .a2 = W.m2.id);
    FORBIDDEN(GD, &W.m, "a plain member removes an admin", .a2 = W.a.id);
    FORBIDDEN(GD, &W.m, "a plain member removes the owner", .a2 = W.o.id);
    FORBIDDEN(GD, &W.a, "an admin removes another admin", .a2 = W.a2.id);
    FORBIDDEN(GD, &W.a, "an admin removes the owner", .a2 = W.o.id);

    /* conversations */
    add((rcase){.route = "GET /v1/convs",
                .what = "the outsider's list holds none of the others' conversations",
                .token = W.x.token,
                .status = 200,
                .not_in = {W.g, W.p, W.op2, "Original", "between p1"}});
    add((rcase){.route = "GET /v1/convs",
                .what = "the removed member's list holds no message of g after the removal",
                .token = W.rm.token,
                .status = 200,
                .not_in = {"said after the removal", W.p, W.op2}});
    NOT_A_MEMBER(CM, &W.x, W.g, "a non-member reads the group's history");
    NOT_A_MEMBER(CM, &W.rm, W.g, "a removed member reads the group's history");
    NOT_A_MEMBER(CM, &W.x, W.p, "the outsider reads p1 and p2's conversation");
    NOT_A_MEMBER(CM, &W.o, W.p, "the owner reads p1 and p2's conversation");
    NOT_A_MEMBER(CM, &W.p1, W.op2, "p1 reads the owner and p2's conversation");
    NOT_A_MEMBER(CM, &W.x, W.never, "a direct conversation that was never used");
    NOT_A_MEMBER(CR, &W.x, W.g, "a non-member reads the group's receipts");
    NOT_A_MEMBER(CR, &W.rm, W.g, "a removed member reads the group's receipts");
    NOT_A_MEMBER(CR, &W.x, W.p, "the outsider reads p's receipts");
    NOT_A_MEMBER(CR, &W.o, W.p, "the owner reads p's receipts");
    NOT_A_MEMBER(CS, &W.x, W.g, "a non-member mutes the group",
                 .body = "{\"notify\":\"none\",\"muted_until\":1}");
    NOT_A_MEMBER(CS, &W.rm, W.g, "a removed member mutes the group",
                 .body = "{\"notify\":\"none\"}");
    NOT_A_MEMBER(CS, &W.x, W.p, "the outsider mutes p", .body = "{\"notify\":\"none\"}");
    NOT_A_MEMBER(CS, &W.o, W.p, "the owner mutes p", .body = "{\"notify\":\"mentions\"}");

    /* contacts and blocks */
    add((rcase){.route = "GET /v1/contacts",
                .what = "the outsider's list holds no one else's contacts",
                .token = W.x.token,
                .status = 200,
                .not_in = {W.p1.id, W.p2.id, W.m.id, W.o.id}});
    add((rcase){.route = "PUT /v1/contacts/{}",
                .what = "the outsider invites the user who blocked them",
                .token = W.x.token,
                .a1 = W.b.id,
                .status = 403,
                .code = "blocked"});
    add((rcase){.route = "PUT /v1/contacts/{}",
                .what = "the outsider invites themself",
                .token = W.x.token,
                .a1 = W.x.id,
                .status = 400,
                .code = "invalid_request"});
    add((rcase){.route = "DELETE /v1/contacts/{}",
                .what = "the outsider removes p1 (p1 and p2 are friends)",
                .token = W.x.token,
                .a1 = W.p1.id,
                .status = 404,
                .code = "not_found"});
    add((rcase){.route = "DELETE /v1/contacts/{}",
                .what = "p2 removes the owner (the owner and m are friends)",
                .token = W.p2.token,
                .a1 = W.o.id,
                .status = 404,
                .code = "not_found"});
    add((rcase){.route = "GET /v1/blocks",
                .what = "the outsider does not learn who blocked them",
                .token = W.x.token,
                .status = 200,
                .not_in = {W.b.id, W.t.id}});
    add((rcase){.route = "PUT /v1/blocks/{}",
                .what = "the outsider blocks themself",
                .token = W.x.token,
                .a1 = W.x.id,
                .status = 400,
                .code = "invalid_request"});
    add((rcase){.route = "PUT /v1/blocks/{}",
                .what = "the outsider blocks a user who does not exist",
                .token = W.x.token,
                .a1 = "u_nosuchuser",
                .status = 404,
                .code = "not_found"});
    add((rcase){.route = "DELETE /v1/blocks/{}",
                .what = "the outsider lifts the block the blocker put on them",
                .token = W.x.token,
                .a1 = W.b.id,
                .status = 404,
                .code = "not_found"});
    add((rcase){.route = "DELETE /v1/blocks/{}",
                .what = "the owner's friend lifts the owner's block on the stranger",
                .token = W.m.token,
                .a1 = W.t.id,
                .status = 404,
                .code = "not_found"});

    /* keys */
    const char *claim1 = "{\"devices\":[{\"user\":\"%s\",\"device\":\"%s\"}]}";
    add((rcase){.route = "PUT /v1/keys/identity",
                .what = "the owner's identity key replaced by another",
                .token = W.o.token,
                .body = aik_body(&W.k_other),
                .status = 409,
                .code = "identity_exists"});
    add((rcase){.route = "PUT /v1/keys/bundle",
                .what = "the outsider uploads a DCERT naming the owner and the owner's device",
                .token = W.x.token,
                .body = bundle_body(W.x.id, W.x.device, W.o.id, W.o.device, &W.k_x, &W.k_x, 1),
                .status = 400,
                .code = "invalid_request"});
    add((rcase){.route = "PUT /v1/keys/bundle",
                .what = "the outsider uploads a DCERT naming itself with the owner's device",
                .token = W.x.token,
                .body = bundle_body(W.x.id, W.x.device, W.x.id, W.o.device, &W.k_x, &W.k_x, 1),
                .status = 400,
                .code = "invalid_request"});
    add((rcase){.route = "PUT /v1/keys/bundle",
                .what = "the outsider's DCERT signed by another user's identity key",
                .token = W.x.token,
                .body = bundle_body(W.x.id, W.x.device, W.x.id, W.x.device, &W.k_o, &W.k_x, 1),
                .status = 400,
                .code = "invalid_signature"});
    add((rcase){.route = "PUT /v1/keys/bundle",
                .what = "the outsider's SPK signed by another user's identity key",
                .token = W.x.token,
                .body = bundle_body(W.x.id, W.x.device, W.x.id, W.x.device, &W.k_x, &W.k_o, 1),
                .status = 400,
                .code = "invalid_signature"});
    add((rcase){.route = "PUT /v1/keys/link/{}",
                .what = "the outsider leaves a link envelope for p1's device",
                .token = W.x.token,
                .a1 = LINK_ID,
                .body = link_body(W.p1b.device),
                .status = 404,
                .code = "no_such_device"});
    add((rcase){.route = "PUT /v1/keys/link/{}",
                .what = "p1 leaves a link envelope for its second device",
                .token = W.p1.token,
                .a1 = LINK_ID,
                .body = link_body(W.p1b.device),
                .status = 204});
    add((rcase){.route = "PUT /v1/keys/link/{}",
                .what = "the outsider reuses p1's link id for its own device: refused",
                .token = W.x.token,
                .a1 = LINK_ID,
                .body = link_body(W.x.device),
                .status = 400,
                .code = "invalid_request"});
    add((rcase){.route = "PUT /v1/keys/link/{}",
                .what = "the outsider takes over p1's link id for its own second device",
                .token = W.x.token,
                .a1 = LINK_ID,
                .body = link_body(W.xb.device),
                .status = 409,
                .code = "link_exists"});
    add((rcase){.route = "GET /v1/keys/link/{}",
                .what = "the outsider reads p1's link envelope",
                .token = W.x.token,
                .a1 = LINK_ID,
                .status = 404,
                .code = "not_found"});
    add((rcase){.route = "GET /v1/keys/link/{}",
                .what = "p1's first device reads the envelope meant for its second device",
                .token = W.p1.token,
                .a1 = LINK_ID,
                .status = 404,
                .code = "not_found"});
    add((rcase){.route = "POST /v1/keys/prekeys",
                .what = "p1's second device (no bundle) uploads OPKs: not into p1's first device",
                .token = W.p1b.token,
                .body = opks_body(10, 3),
                .status = 409,
                .code = "no_bundle"});
    add((rcase){.route = "POST /v1/keys/prekeys",
                .what = "the outsider (no bundle) uploads OPKs",
                .token = W.x.token,
                .body = opks_body(10, 3),
                .status = 409,
                .code = "no_bundle"});
    add((rcase){.route = "GET /v1/keys/prekeys",
                .what = "p1's second device does not see p1's first device's stock",
                .token = W.p1b.token,
                .status = 404,
                .code = "no_bundle"});
    add((rcase){.route = "GET /v1/keys/prekeys",
                .what = "the outsider does not see anyone's stock",
                .token = W.x.token,
                .status = 404,
                .code = "no_bundle"});
    add((rcase){.route = "POST /v1/keys/claim",
                .what = "the outsider claims the keys of the user who blocked them",
                .token = W.x.token,
                .body = sf(claim1, W.b.id, W.b.device),
                .status = 403,
                .code = "blocked"});
    add((rcase){.route = "POST /v1/keys/claim",
                .what = "the user who blocked the outsider claims the outsider's keys",
                .token = W.b.token,
                .body = sf(claim1, W.x.id, W.x.device),
                .status = 403,
                .code = "blocked"});
    add((rcase){.route = "POST /v1/keys/claim",
                .what = "... p1's device, then the blocker's: nothing is taken from p1",
                .token = W.x.token,
                .body = sf("{\"devices\":[{\"user\":\"%s\",\"device\":\"%s\"},"
                           "{\"user\":\"%s\",\"device\":\"%s\"}]}",
                           W.p1.id, W.p1.device, W.b.id, W.b.device),
                .status = 403,
                .code = "blocked"});
    add((rcase){.route = "POST /v1/keys/claim",
                .what = "p1's device claimed under the owner's user id: gone, nothing taken",
                .token = W.x.token,
                .body = sf(claim1, W.o.id, W.p1.device),
                .status = 200,
                .not_in = {"\"dcert\"", "\"opk\""}});
    add((rcase){.route = "GET /v1/users/{}/devices",
                .what = "the outsider lists the devices of the user who blocked them",
                .token = W.x.token,
                .a1 = W.b.id,
                .status = 403,
                .code = "blocked"});
    add((rcase){.route = "GET /v1/users/{}/devices",
                .what = "the blocker lists the outsider's devices",
                .token = W.b.token,
                .a1 = W.x.id,
                .status = 403,
                .code = "blocked"});
    add((rcase){.route = "GET /v1/users/{}/devices",
                .what = "the owner's key directory holds no profile data",
                .token = W.x.token,
                .a1 = W.o.id,
                .status = 200,
                .not_in = {W.email, W.phone, SECRET, W.o.token}});
}

T_TEST(test_wrong_user_rest)
{
    build_world();
    build_views();
    ncases = 0;
    wrong_user_cases();
    int per_route[N_ROUTES] = {0};
    for (int i = 0; i < ncases; i++)
        for (int k = 0; k < N_ROUTES; k++)
            if (!strcmp(cases[i].route, ROUTES[k].route)) per_route[k]++;
    int failures = 0;
    for (int k = 0; k < N_ROUTES; k++)
        if (!per_route[k]) {
            t_note("%s has no wrong-user case", ROUTES[k].route);
            failures++;
        }
    json_t *base = snapshot();
    for (int i = 0; i < ncases; i++) {
        failures += !run_case(i);
        if (!unchanged(&base, case_label(i))) failures++;
    }
    json_decref(base);
    check_world_intact();
    printf("# wrong-user sweep (REST): %d cases over %d routes; %d failed\n", ncases, N_ROUTES,
           failures);
    fflush(stdout);
    pool_free();
    assert_int_equal(failures, 0);
}

/* ---------------------------------------------------------------- (d) wrong users, WebSocket */

/* Reads and drops whatever arrives until nothing has come for ms. */
static void drain(tws *ws, int ms)
{
    for (;;) {
        tws_msg m;
        int rc = tws_recv(ws, &m, ms);
        if (rc != 0) break;
        tws_msg_free(&m);
    }
    json_array_clear(ws->held);
}

typedef struct wcase {
    const char *frame; /* one of WS_FRAMES */
    const char *what;
    tws *ws;
    json_t *j;        /* the frame; its "id" (if any) names the answer */
    const char *code; /* the error it must get; NULL: no answer at all */
    const char *alt;  /* with code NULL: an error code accepted instead of silence */
} wcase;

/* Runs one frame; false (with a note) if the answer is not the one expected. */
static bool run_wcase(const wcase *c, int i)
{
    const char *id = json_string_value(json_object_get(c->j, "id"));
    if (tws_send_json(c->ws, c->j) != 0) return false;
    bool ok = true;
    if (c->code) {
        json_t *e = tws_recv_reply(c->ws, 0);
        ok = e && !strcmp(tj_str(e, "type"), "error") && !strcmp(tj_str(e, "code"), c->code) &&
             (!id || !strcmp(tj_str(e, "id"), id));
        if (!ok)
            t_note("ws case %d (%s, %s): want error %s, got %s", i, c->frame, c->what, c->code,
                   tj_dump(e));
        json_decref(e);
        return ok;
    }
    /* No answer: a ping must be answered next (the socket is still open and said nothing). */
    char pid[32];
    t_id(pid, sizeof pid, "fence");
    if (tws_sendp(c->ws, "{s:s, s:s}", "type", "ping", "id", pid) != 0) return false;
    json_t *a = tws_recv_reply(c->ws, 0);
    if (a && c->alt && !strcmp(tj_str(a, "type"), "error") && !strcmp(tj_str(a, "code"), c->alt)) {
        json_decref(a);
        a = tws_recv_reply(c->ws, 0);
    }
    ok = a && !strcmp(tj_str(a, "type"), "pong") && !strcmp(tj_str(a, "id"), pid);
    if (!ok)
        t_note("ws case %d (%s, %s): want no answer%s%s, got %s", i, c->frame, c->what,
               c->alt ? " or error " : "", c->alt ? c->alt : "", tj_dump(a));
    json_decref(a);
    return ok;
}

static json_t *f_send(const char *id, const char *to)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:{s:s}}", "type", "send", "id", id, "to", to,
                     "cmid", id, "kind", "text", "body", "text", "pwned");
}

static json_t *f_edit(const char *id, const char *conv, int64_t seq)
{
    return json_pack("{s:s, s:s, s:s, s:I, s:{s:s}}", "type", "edit", "id", id, "conv", conv, "seq",
                     (json_int_t)seq, "body", "text", "pwned");
}

static json_t *f_delete(const char *id, const char *conv, int64_t seq)
{
    return json_pack("{s:s, s:s, s:s, s:I}", "type", "delete", "id", id, "conv", conv, "seq",
                     (json_int_t)seq);
}

static json_t *f_react(const char *id, const char *conv, int64_t seq)
{
    return json_pack("{s:s, s:s, s:s, s:I, s:s}", "type", "react", "id", id, "conv", conv, "seq",
                     (json_int_t)seq, "emoji", "\xf0\x9f\x92\xa9");
}

static json_t *f_read(const char *id, const char *conv, int64_t upto)
{
    return json_pack("{s:s, s:s, s:s, s:I}", "type", "read", "id", id, "conv", conv, "upto",
                     (json_int_t)upto);
}

static json_t *f_typing(const char *conv)
{
    return json_pack("{s:s, s:s, s:b}", "type", "typing", "conv", conv, "on", 1);
}

T_TEST(test_wrong_user_ws)
{
    build_world();
    /* rm2: a member whose typing has filled the server's member cache, then removed */
    tuser rm2;
    assert_int_equal(tuser_new(PORT, "rmtwo", &rm2), 201);
    json_decref(must(200, "POST", sf("/v1/groups/%s/members", W.g), &W.o,
                     sf("{\"users\":[\"%s\"]}", rm2.id)));
    json_t *ack = say(&rm2, W.g, "rm2 was here");
    int64_t seq_rm2 = tj_int(ack, "seq");
    json_decref(ack);
    int64_t ohead = 0, xhead = 0;
    tws *probe = tws_auth(PORT, W.o.token, &ohead);
    assert_non_null(probe);
    tws_free(probe);

    struct {
        const tuser *u;
        const char *label;
    } socks[] = {{&W.o, "o"}, {&W.a, "a"},   {&W.m, "m"},   {&W.rm, "rm"}, {&rm2, "rm2"},
                 {&W.x, "x"}, {&W.p1, "p1"}, {&W.p2, "p2"}, {&W.b, "b"}};
    enum { S_O, S_A, S_M, S_RM, S_RM2, S_X, S_P1, S_P2, S_B, NS };
    tws *ws[NS];
    for (int i = 0; i < NS; i++) {
        ws[i] = tws_live(PORT, socks[i].u, socks[i].label);
        assert_non_null(ws[i]);
    }
    /* rm2 types while a member: the owner sees it (the cache now holds g's members) */
    json_t *typing = f_typing(W.g);
    assert_int_equal(tws_send_json(ws[S_RM2], typing), 0);
    json_decref(typing);
    for (;;) {
        json_t *j = tws_recv_json(ws[S_O], 0);
        assert_non_null(j);
        bool got = !strcmp(tj_str(j, "type"), "typing") && !strcmp(tj_str(j, "user"), rm2.id);
        json_decref(j);
        if (got) break;
    }
    must0(204, "DELETE", sf("/v1/groups/%s/members/%s", W.g, rm2.id), &W.o, NULL);
    json_t *m = tws_expect_type(ws[S_RM2], "msg", 0);
    assert_non_null(m);
    assert_string_equal(tj_str(m, "body.event"), "removed");
    json_decref(m);
    /* x holds (recv) everything of its own before the baseline, so its markers are final */
    probe = tws_auth(PORT, W.x.token, &xhead);
    assert_non_null(probe);
    tws_free(probe);
    assert_true(ohead > xhead);
    assert_int_equal(tws_sendp(ws[S_X], "{s:s, s:I}", "type", "recv", "upto", (json_int_t)xhead),
                     0);
    json_t *fence = f_read("fence", W.g, 1); /* refused after the recv has been committed */
    assert_int_equal(tws_send_json(ws[S_X], fence), 0);
    json_decref(fence);
    json_t *e = tws_expect_reply(ws[S_X], "error", "fence", 0);
    assert_non_null(e);
    json_decref(e);
    for (int i = 0; i < NS; i++) drain(ws[i], 150);

    build_views();
    view_add("conversations of rm2", &rm2, "/v1/convs");
    json_t *base = snapshot();
    wcase wc[64];
    int n = 0;
#define W_(frame_, what_, s, j_, code_, alt_)                                                      \
    wc[n++] =                                                                                      \
        (wcase){.frame = frame_, .what = what_, .ws = ws[s], .j = j_, .code = code_, .alt = alt_}
    W_("send", "a non-member sends to the group", S_X, f_send("w1", W.g), "not_a_member", NULL);
    W_("send", "a removed member sends to the group", S_RM, f_send("w2", W.g), "not_a_member",
       NULL);
    W_("send", "a member removed while connected sends to the group", S_RM2, f_send("w3", W.g),
       "not_a_member", NULL);
    W_("send", "the outsider writes to the user who blocked them", S_X, f_send("w4", W.b.id),
       "blocked", NULL);
    W_("send", "a non-member sends an e2e message to the group", S_X,
       json_pack("{s:s, s:s, s:s, s:s, s:s, s:{s:i, s:[{s:s, s:s, s:s}], s:s, s:s}}", "type",
                 "send", "id", "w6", "to", W.g, "cmid", "w6", "kind", "e2e", "body", "v", 1, "devs",
                 "u", W.o.id, "d", W.o.device, "c", "AAAA", "dl", "AAAAAAAAAAAAAAAAAAAAAA", "g",
                 "AAAA"),
       "not_a_member", NULL);
    W_("send", "a group that does not exist", S_X, f_send("w5", "g_nosuchgroup"), "not_a_member",
       NULL);
    W_("read", "a non-member moves its read marker in the group", S_X, f_read("r1", W.g, 1),
       "not_a_member", NULL);
    W_("read", "the outsider moves its read marker in p", S_X, f_read("r2", W.p, 1), "not_a_member",
       NULL);
    W_("read", "the owner moves its read marker in p", S_O, f_read("r3", W.p, 2), "not_a_member",
       NULL);
    W_("read", "a removed member moves its read marker in the group", S_RM,
       f_read("r4", W.g, W.seq_rm), "not_a_member", NULL);
    W_("read", "a member removed while connected reads the group", S_RM2, f_read("r5", W.g, 2),
       "not_a_member", NULL);
    W_("typing", "a non-member types in the group", S_X, f_typing(W.g), NULL, "not_a_member");
    W_("typing", "a member removed while connected types in the group (cached members)", S_RM2,
       f_typing(W.g), NULL, "not_a_member");
    W_("typing", "a removed member types in the group", S_RM, f_typing(W.g), NULL, "not_a_member");
    W_("typing", "the outsider types in p", S_X, f_typing(W.p), NULL, "not_a_member");
    W_("typing", "the owner types in p", S_O, f_typing(W.p), NULL, "not_a_member");
    W_("edit", "a member edits the owner's message", S_M, f_edit("e1", W.g, W.seq_o), "not_allowed",
       NULL);
    W_("edit", "an admin edits a member's message", S_A, f_edit("e2", W.g, W.seq_m), "not_allowed",
       NULL);
    W_("edit", "the owner edits a member's message", S_O, f_edit("e3", W.g, W.seq_m), "not_allowed",
       NULL);
    W_("edit", "p2 edits p1's message", S_P2, f_edit("e4", W.p, W.seq_p1), "not_allowed", NULL);
    W_("edit", "a non-member edits the owner's message", S_X, f_edit("e5", W.g, W.seq_o),
       "not_a_member", NULL);
    W_("edit", "the outsider edits p1's message", S_X, f_edit("e6", W.p, W.seq_p1), "not_a_member",
       NULL);
    W_("edit", "a removed member edits their own old message", S_RM, f_edit("e7", W.g, W.seq_rm),
       "not_a_member", NULL);
    W_("edit", "a member removed while connected edits their own message", S_RM2,
       f_edit("e8", W.g, seq_rm2), "not_a_member", NULL);
    W_("delete", "a member deletes the owner's message", S_M, f_delete("d1", W.g, W.seq_o),
       "not_allowed", NULL);
    W_("delete", "an admin deletes a member's message", S_A, f_delete("d2", W.g, W.seq_m),
       "not_allowed", NULL);
    W_("delete", "the owner deletes an admin's message", S_O, f_delete("d3", W.g, W.seq_a),
       "not_allowed", NULL);
    W_("delete", "p2 deletes p1's message", S_P2, f_delete("d4", W.p, W.seq_p1), "not_allowed",
       NULL);
    W_("delete", "a non-member deletes the owner's message", S_X, f_delete("d5", W.g, W.seq_o),
       "not_a_member", NULL);
    W_("delete", "the owner deletes p1's message", S_O, f_delete("d6", W.p, W.seq_p1),
       "not_a_member", NULL);
    W_("delete", "a removed member deletes their own old message", S_RM,
       f_delete("d7", W.g, W.seq_rm), "not_a_member", NULL);
    W_("delete", "a member removed while connected deletes their own message", S_RM2,
       f_delete("d8", W.g, seq_rm2), "not_a_member", NULL);
    W_("react", "a non-member reacts in the group", S_X, f_react("x1", W.g, W.seq_o),
       "not_a_member", NULL);
    W_("react", "the outsider reacts in p", S_X, f_react("x2", W.p, W.seq_p1), "not_a_member",
       NULL);
    W_("react", "a removed member reacts in the group", S_RM, f_react("x3", W.g, W.seq_o),
       "not_a_member", NULL);
    W_("react", "a member removed while connected reacts in the group", S_RM2,
       f_react("x4", W.g, W.seq_o), "not_a_member", NULL);
    W_("react", "the owner reacts in p", S_O, f_react("x5", W.p, W.seq_p1), "not_a_member", NULL);
    W_("sync", "the outsider syncs after the owner's head (beyond its own inbox)", S_X,
       json_pack("{s:s, s:s, s:I}", "type", "sync", "id", "y1", "after", (json_int_t)ohead),
       "invalid_request", NULL);
    W_("recv", "the outsider acknowledges positions beyond its own inbox", S_X,
       json_pack("{s:s, s:I}", "type", "recv", "upto", (json_int_t)(ohead + 1000)), NULL,
       "invalid_request");
#undef W_
    int failures = 0;
    for (int k = 0; k < N_WS_FRAMES; k++) {
        int cnt = 0;
        for (int i = 0; i < n; i++) cnt += !strcmp(wc[i].frame, WS_FRAMES[k]);
        if (!cnt) {
            t_note("frame %s has no case", WS_FRAMES[k]);
            failures++;
        }
    }
    for (int i = 0; i < n; i++) {
        failures += !run_wcase(&wc[i], i);
        if (!unchanged(&base, sf("ws case %d (%s: %s)", i, wc[i].frame, wc[i].what))) failures++;
        json_decref(wc[i].j);
    }
    /* A sync from 0 gives the outsider its own entries only. */
    json_t *msgs = json_array();
    assert_int_equal(tws_sync_all(ws[S_X], 0, 0, msgs, NULL, NULL), 0);
    size_t i;
    json_array_foreach(msgs, i, m)
    {
        const char *conv = tj_str(m, "conv");
        if (!strcmp(conv, W.g) || !strcmp(conv, W.p) || !strcmp(conv, W.op2)) {
            t_note("the outsider's sync holds %s", tj_dump(m));
            failures++;
        }
    }
    assert_int_equal((int64_t)json_array_size(msgs), xhead);
    json_decref(msgs);
    /* Nobody heard anything: no msg, typing or receipt reached any socket. */
    for (int k = 0; k < NS; k++)
        if (!tws_silent(ws[k], k == 0 ? 500 : 50)) {
            t_note("socket %s got something (above)", socks[k].label);
            failures++;
        }
    /* The blocker still blocks, and the outsider still cannot write to them. */
    json_t *again = f_send("w9", W.b.id);
    assert_int_equal(tws_send_json(ws[S_X], again), 0);
    json_decref(again);
    e = tws_expect_reply(ws[S_X], "error", "w9", 0);
    assert_non_null(e);
    assert_string_equal(tj_str(e, "code"), "blocked");
    json_decref(e);
    if (!unchanged(&base, "the final checks")) failures++;
    json_decref(base);
    check_world_intact();
    printf("# wrong-user sweep (WebSocket): %d frames of %d types; %d failed\n", n, N_WS_FRAMES,
           failures);
    fflush(stdout);
    for (int k = 0; k < NS; k++) tws_free(ws[k]);
    pool_free();
    assert_int_equal(failures, 0);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    /* Presence is not what this file tests; typing and receipts are (they must not leak). */
    tws_default_ignore = "presence";
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_route_table_covered),
        T(test_unauthenticated_sweep),
        T(test_wrong_user_rest),
        T(test_wrong_user_ws),
    };
    return cmocka_run_group_tests_name("authz", tests, NULL, NULL);
}
