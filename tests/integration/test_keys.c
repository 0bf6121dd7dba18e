/* test_keys.c: the key directory of end-to-end encryption (E2E.md §4) and the e2e message checks
 * (§7.1) against a real parleyd: identity and bundle publishing with every validation, the
 * device list, claims handing each OPK out exactly once under 50 concurrent claims, the hourly
 * claim limit, prekeys_low and devices_changed events, keys dropped with their device, 409
 * device_list_stale for missing, extra and vanished devices and a wrong dl, per-device bodies
 * live and through sync, and e2e-only conversations. The keys here are real Ed25519 and X25519
 * keys made with libsodium, so the server's signature checks run for real. */
#include "lib/tassert.h"

#include <sodium.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>

TSRV_FIXTURE(srv)
#define PORT (srv.port)

/* ---------------------------------------------------------------- keys and bodies */

typedef struct kacct { /* a user's account identity key */
    uint8_t pk[crypto_sign_PUBLICKEYBYTES];
    uint8_t sk[crypto_sign_SECRETKEYBYTES];
} kacct;

static void b64(char *out, const uint8_t *p, size_t n)
{
    b64url_encode(out, p, n);
}

static json_t *b64j(const uint8_t *p, size_t n)
{
    char buf[512];
    assert_true(n <= 360);
    b64(buf, p, n);
    return json_string(buf);
}

static void x25519_pub(uint8_t pk[32])
{
    uint8_t sk[32];
    crypto_box_keypair(pk, sk);
}

static size_t put_id(uint8_t *p, const char *id)
{
    size_t n = strlen(id);
    p[0] = (uint8_t)n;
    memcpy(p + 1, id, n);
    return n + 1;
}

/* A DCERT: version ‖ id(user) ‖ id(device) ‖ DIK ‖ created_at ‖ Ed25519(sk, label ‖ all before). */
static size_t make_dcert(uint8_t *out, int version, const char *user, const char *dev,
                         const uint8_t dik[32], uint64_t created_at, const uint8_t *sk)
{
    size_t n = 0;
    out[n++] = (uint8_t)version;
    n += put_id(out + n, user);
    n += put_id(out + n, dev);
    memcpy(out + n, dik, 32);
    n += 32;
    for (int i = 7; i >= 0; i--) out[n++] = (uint8_t)(created_at >> (8 * i));
    uint8_t msg[512];
    memcpy(msg, "PARLEYv1/DCERT", 14);
    memcpy(msg + 14, out, n);
    crypto_sign_detached(out + n, NULL, msg, 14 + n, sk);
    return n + 64;
}

static void spk_sign(uint8_t sig[64], const char *user, const char *dev, uint32_t id,
                     const uint8_t pub[32], const uint8_t *sk)
{
    uint8_t msg[256];
    size_t n = 0;
    memcpy(msg, "PARLEYv1/SPK", 12);
    n = 12;
    n += put_id(msg + n, user);
    n += put_id(msg + n, dev);
    for (int i = 3; i >= 0; i--) msg[n++] = (uint8_t)(id >> (8 * i));
    memcpy(msg + n, pub, 32);
    n += 32;
    crypto_sign_detached(sig, NULL, msg, n, sk);
}

/* n OPKs with ids first, first+1, ... */
static json_t *opks_json(uint32_t first, int n)
{
    json_t *a = json_array();
    for (int i = 0; i < n; i++) {
        uint8_t pk[32];
        x25519_pub(pk);
        json_array_append_new(a, json_pack("{s:I, s:o}", "id", (json_int_t)(first + (uint32_t)i),
                                           "pub", b64j(pk, 32)));
    }
    return a;
}

/* A good bundle body for device d, signed with k, with nopk OPKs from opk_first (none when
 * nopk < 0: no opks field). */
static json_t *bundle_body(const tuser *d, const kacct *k, uint32_t opk_first, int nopk)
{
    uint8_t dik[32], spk[32], sig[64], dcert[256];
    x25519_pub(dik);
    x25519_pub(spk);
    size_t n = make_dcert(dcert, 1, d->id, d->device, dik, (uint64_t)now_ms(), k->sk);
    spk_sign(sig, d->id, d->device, 7, spk, k->sk);
    json_t *b = json_pack("{s:o, s:{s:i, s:o, s:o}}", "dcert", b64j(dcert, n), "spk", "id", 7,
                          "pub", b64j(spk, 32), "sig", b64j(sig, 64));
    if (nopk >= 0) json_object_set_new(b, "opks", opks_json(opk_first, nopk));
    return b;
}

/* A request with a JSON body (stolen; NULL for none). Returns the answer (caller frees). */
static json_t *call(const char *method, const char *path, const tuser *u, json_t *body, int *status)
{
    char *s = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    json_t *resp = NULL;
    assert_int_equal(thttp_req(PORT, method, path, u ? u->token : NULL, s, status, &resp), 0);
    free(s);
    return resp;
}

static void expect(const char *method, const char *path, const tuser *u, json_t *body,
                   int want_status, const char *want_code)
{
    int st;
    json_t *r = call(method, path, u, body, &st);
    if (want_code)
        assert_http_error(st, r, want_status, want_code);
    else
        assert_http_status(st, r, want_status);
    json_decref(r);
}

static void new_acct(kacct *k)
{
    crypto_sign_keypair(k->pk, k->sk);
}

static void put_identity(const tuser *u, const kacct *k)
{
    expect("PUT", "/v1/keys/identity", u, json_pack("{s:o}", "aik", b64j(k->pk, 32)), 204, NULL);
}

/* Publishes a bundle with nopk OPKs from opk_first; checks and returns opk_count. */
static int publish(const tuser *d, const kacct *k, uint32_t opk_first, int nopk)
{
    int st;
    json_t *r = call("PUT", "/v1/keys/bundle", d, bundle_body(d, k, opk_first, nopk), &st);
    assert_http_status(st, r, 200);
    int n = (int)tj_int(r, "opk_count");
    json_decref(r);
    return n;
}

/* A new user with an identity and one published device. */
static void keyed_user(const char *prefix, tuser *u, kacct *k, int nopk)
{
    assert_int_equal(tuser_new(PORT, prefix, u), 201);
    new_acct(k);
    put_identity(u, k);
    publish(u, k, 1, nopk);
}

/* Another device of u, published. */
static void keyed_device(const tuser *u, const kacct *k, tuser *d, int nopk)
{
    assert_int_equal(tuser_login(PORT, u->username, u->password, d), 200);
    publish(d, k, 1, nopk);
}

static json_t *claim(const tuser *by, const tuser *const *devs, int n, int *status)
{
    json_t *a = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(
            a, json_pack("{s:s, s:s}", "user", devs[i]->id, "device", devs[i]->device));
    return call("POST", "/v1/keys/claim", by, json_pack("{s:o}", "devices", a), status);
}

/* ---------------------------------------------------------------- WebSocket helpers */

/* The next frame of type `type` (and, for events, event `event`), skipping presence, typing,
 * receipt and other event frames. NULL on timeout or any other frame. */
static json_t *next_frame(tws *ws, const char *type, const char *event)
{
    for (;;) {
        json_t *m = tws_recv_json(ws, 0);
        if (!m) return NULL;
        const char *t = tj_str(m, "type");
        if (strcmp(t, type) == 0 && (!event || strcmp(tj_str(m, "event"), event) == 0)) return m;
        bool side = !strcmp(t, "presence") || !strcmp(t, "typing") || !strcmp(t, "receipt") ||
                    !strcmp(t, "event");
        if (!side) {
            t_note("ws[%s]: want %s, got %s", ws->label, type, tj_dump(m));
            json_decref(m);
            return NULL;
        }
        json_decref(m);
    }
}

/* True when no frame of this type (and event) arrives within ms. */
static bool none_of(tws *ws, const char *type, const char *event, int ms)
{
    int64_t end = mono_ms() + ms;
    while (mono_ms() < end) {
        json_t *m = tws_recv_json(ws, (int)(end - mono_ms()) + 1);
        if (!m) return true;
        bool hit = strcmp(tj_str(m, "type"), type) == 0 &&
                   (!event || strcmp(tj_str(m, "event"), event) == 0);
        if (hit) t_note("ws[%s]: unexpected %s", ws->label, tj_dump(m));
        json_decref(m);
        if (hit) return false;
    }
    return true;
}

/* Sends kind e2e (body stolen) with this cmid and returns the ack or error frame. */
static json_t *send_e2e_cmid(tws *ws, const char *to, const char *cmid, json_t *body)
{
    char id[32];
    t_id(id, sizeof id, "e");
    json_t *f = json_pack("{s:s, s:s, s:s, s:s, s:s, s:o}", "type", "send", "id", id, "to", to,
                          "cmid", cmid, "kind", "e2e", "body", body);
    assert_int_equal(tws_send_json(ws, f), 0);
    json_decref(f);
    for (;;) {
        json_t *r = tws_recv_reply(ws, 0);
        assert_non_null(r);
        const char *t = tj_str(r, "type");
        if ((!strcmp(t, "ack") || !strcmp(t, "error")) && !strcmp(tj_str(r, "id"), id)) return r;
        json_decref(r); /* msg frames of other tests' traffic: not ours */
    }
}

static json_t *send_e2e(tws *ws, const char *to, json_t *body)
{
    char cmid[32];
    t_id(cmid, sizeof cmid, "ec");
    return send_e2e_cmid(ws, to, cmid, body);
}

static json_t *send_kind_text(tws *ws, const char *to)
{
    char id[32], cmid[32];
    t_id(id, sizeof id, "t");
    t_id(cmid, sizeof cmid, "tc");
    assert_int_equal(tws_send_textmsg(ws, id, to, cmid, "plain words"), 0);
    for (;;) {
        json_t *r = tws_recv_reply(ws, 0);
        assert_non_null(r);
        if (!strcmp(tj_str(r, "id"), id)) return r;
        json_decref(r);
    }
}

/* A devs entry for device d with ciphertext text c (made base64url here). */
static json_t *entry(const tuser *d, const char *c)
{
    return json_pack("{s:s, s:s, s:o}", "u", d->id, "d", d->device, "c",
                     b64j((const uint8_t *)c, strlen(c)));
}

static json_t *direct_body(json_t *devs)
{
    return json_pack("{s:i, s:b, s:o}", "v", 1, "ctl", 0, "devs", devs);
}

/* The dl digest of the devices given (each "u:d"): 16 bytes of SHA-256 over sorted lines. */
static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static json_t *dl_of(const tuser *const *devs, int n)
{
    char *lines[16];
    assert_true(n <= 16);
    for (int i = 0; i < n; i++) {
        lines[i] = malloc(2 * ID_MAX + 3);
        snprintf(lines[i], 2 * ID_MAX + 3, "%s:%s\n", devs[i]->id, devs[i]->device);
    }
    qsort(lines, (size_t)n, sizeof *lines, cmp_str);
    crypto_hash_sha256_state h;
    uint8_t out[32];
    crypto_hash_sha256_init(&h);
    for (int i = 0; i < n; i++) {
        crypto_hash_sha256_update(&h, (const uint8_t *)lines[i], strlen(lines[i]));
        free(lines[i]);
    }
    crypto_hash_sha256_final(&h, out);
    return b64j(out, 16);
}

static json_t *group_body(json_t *devs, json_t *dl)
{
    static const uint8_t g[] = "sender-key message bytes";
    return json_pack("{s:i, s:b, s:o, s:o, s:o}", "v", 1, "ctl", 0, "devs", devs, "dl", dl, "g",
                     b64j(g, sizeof g - 1));
}

/* The devices of user in a device_list_stale error, as a sorted, comma-joined string. */
static const char *stale_list(json_t *err, const char *user, char *out, size_t cap)
{
    json_t *arr = json_object_get(json_object_get(err, "devices"), user);
    if (!json_is_array(arr)) return "(missing)";
    char *ids[16];
    size_t n = json_array_size(arr);
    assert_true(n <= 16);
    for (size_t i = 0; i < n; i++) ids[i] = (char *)json_string_value(json_array_get(arr, i));
    qsort(ids, n, sizeof *ids, cmp_str);
    out[0] = 0;
    for (size_t i = 0; i < n; i++) {
        strncat(out, ids[i], cap - strlen(out) - 1);
        if (i + 1 < n) strncat(out, ",", cap - strlen(out) - 1);
    }
    return out;
}

static const char *joined(char *out, size_t cap, const tuser *a, const tuser *b)
{
    const char *x = a->device, *y = b ? b->device : NULL;
    if (y && strcmp(x, y) > 0) {
        const char *t = x;
        x = y;
        y = t;
    }
    snprintf(out, cap, "%s%s%s", x, y ? "," : "", y ? y : "");
    return out;
}

/* The ciphertext text of c in a msg body (decoded back from base64url). */
static const char *c_text(json_t *m, char *out, size_t cap)
{
    const char *c = tj_str(m, "body.c");
    long n = b64url_decode((uint8_t *)out, c, strlen(c));
    if (n < 0 || (size_t)n >= cap) return "";
    out[n] = 0;
    return out;
}

static int64_t db_count(const char *sql, const char *param)
{
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/parley.db", srv.dir);
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    int64_t v = -1;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK &&
        sqlite3_bind_text(s, 1, param, -1, SQLITE_STATIC) == SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return v;
}

/* ---------------------------------------------------------------- tests */

T_TEST(test_publish_and_list_devices)
{
    tuser a, a2, b;
    kacct ka;
    assert_int_equal(tuser_new(PORT, "ka", &a), 201);
    assert_int_equal(tuser_new(PORT, "kb", &b), 201);
    new_acct(&ka);
    /* nothing yet: no AIK, no devices */
    int st;
    char path[128];
    snprintf(path, sizeof path, "/v1/users/%s/devices", a.id);
    json_t *r = call("GET", path, &b, NULL, &st);
    assert_http_status(st, r, 200);
    assert_true(json_is_null(tj_get(r, "aik")));
    assert_int_equal(json_array_size(tj_get(r, "devices")), 0);
    json_decref(r);
    expect("GET", "/v1/keys/prekeys", &a, NULL, 404, "no_bundle");
    expect("PUT", "/v1/keys/bundle", &a, bundle_body(&a, &ka, 1, 3), 409, "no_identity");

    put_identity(&a, &ka);
    put_identity(&a, &ka); /* the same key again: a retry, 204 */
    kacct other;
    new_acct(&other);
    expect("PUT", "/v1/keys/identity", &a, json_pack("{s:o}", "aik", b64j(other.pk, 32)), 409,
           "identity_exists");
    expect("POST", "/v1/keys/prekeys", &a, json_pack("{s:o}", "opks", opks_json(1, 2)), 409,
           "no_bundle");

    assert_int_equal(publish(&a, &ka, 1, 10), 10);
    r = call("GET", "/v1/keys/prekeys", &a, NULL, &st);
    assert_http_status(st, r, 200);
    assert_true(tj_keys(r, "opk_count,spk_id,spk_uploaded_at"));
    assert_int_equal(tj_int(r, "opk_count"), 10);
    assert_int_equal(tj_int(r, "spk_id"), 7);
    int64_t uploaded = tj_int(r, "spk_uploaded_at");
    assert_true(uploaded > 0 && uploaded <= now_ms());
    json_decref(r);

    /* more OPKs: ids above the highest stored; a retried upload changes nothing */
    r = call("POST", "/v1/keys/prekeys", &a, json_pack("{s:o}", "opks", opks_json(11, 5)), &st);
    assert_http_status(st, r, 200);
    assert_int_equal(tj_int(r, "opk_count"), 15);
    json_decref(r);
    r = call("POST", "/v1/keys/prekeys", &a, json_pack("{s:o}", "opks", opks_json(11, 5)), &st);
    assert_http_status(st, r, 200);
    assert_int_equal(tj_int(r, "opk_count"), 15);
    json_decref(r);

    /* a second device: the first one hears devices_changed; b sees both devices */
    tws *wa = tws_live(PORT, &a, "a");
    assert_non_null(wa);
    assert_int_equal(tuser_login(PORT, a.username, a.password, &a2), 200);
    assert_int_equal(publish(&a2, &ka, 1, 0), 0);
    json_t *ev = next_frame(wa, "event", "devices_changed");
    assert_non_null(ev);
    assert_string_equal(tj_str(ev, "user"), a.id);
    json_decref(ev);

    r = call("GET", path, &b, NULL, &st);
    assert_http_status(st, r, 200);
    assert_true(tj_keys(r, "user,aik,devices"));
    assert_string_equal(tj_str(r, "user"), a.id);
    char aik[64];
    b64(aik, ka.pk, 32);
    assert_string_equal(tj_str(r, "aik"), aik);
    assert_int_equal(json_array_size(tj_get(r, "devices")), 2);
    assert_string_equal(tj_str(r, "devices.0.device"), a.device);
    assert_string_equal(tj_str(r, "devices.1.device"), a2.device);
    assert_true(tj_keys(tj_get(r, "devices.0"), "device,dcert,created_at"));
    /* the DCERT comes back as sent: check its signature the way a client would */
    uint8_t dc[300];
    const char *dcs = tj_str(r, "devices.1.dcert");
    long n = b64url_decode(dc, dcs, strlen(dcs));
    assert_true(n > 64);
    uint8_t msg[400];
    memcpy(msg, "PARLEYv1/DCERT", 14);
    memcpy(msg + 14, dc, (size_t)n - 64);
    assert_int_equal(crypto_sign_verify_detached(dc + n - 64, msg, 14 + (size_t)n - 64, ka.pk), 0);
    assert_true(tj_int(r, "devices.1.created_at") > 0);
    json_decref(r);

    snprintf(path, sizeof path, "/v1/users/%s/devices", "u_nosuchuser");
    expect("GET", path, &b, NULL, 404, "not_found");
    tws_free(wa);
}

T_TEST(test_validation)
{
    tuser a, b;
    kacct ka, kb;
    assert_int_equal(tuser_new(PORT, "va", &a), 201);
    assert_int_equal(tuser_new(PORT, "vb", &b), 201);
    new_acct(&ka);
    new_acct(&kb);
    /* identity: bad base64url in every way */
    char s[128];
    b64(s, ka.pk, 32);
    char padded[130];
    snprintf(padded, sizeof padded, "%s=", s);
    const char *bad_aiks[] = {padded, "", "abc", "AAAA+AAA/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                              s + 1};
    for (size_t i = 0; i < sizeof bad_aiks / sizeof *bad_aiks; i++)
        expect("PUT", "/v1/keys/identity", &a, json_pack("{s:s}", "aik", bad_aiks[i]), 400,
               "invalid_request");
    expect("PUT", "/v1/keys/identity", &a, json_pack("{s:i}", "aik", 5), 400, "invalid_request");
    expect("PUT", "/v1/keys/identity", &a, json_object(), 400, "invalid_request");
    put_identity(&a, &ka);
    put_identity(&b, &kb);

    /* DCERT: wrong user, wrong device, wrong version, truncated, signed by another key */
    uint8_t dik[32], dc[300];
    x25519_pub(dik);
    struct {
        int version;
        const char *user, *dev;
        const uint8_t *sk;
        const char *code;
    } cases[] = {
        {1, b.id, a.device, ka.sk, "invalid_request"},
        {1, a.id, b.device, ka.sk, "invalid_request"},
        {2, a.id, a.device, ka.sk, "invalid_request"},
        {1, a.id, a.device, kb.sk, "invalid_signature"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        size_t n = make_dcert(dc, cases[i].version, cases[i].user, cases[i].dev, dik,
                              (uint64_t)now_ms(), cases[i].sk);
        json_t *body = bundle_body(&a, &ka, 1, 0);
        json_object_set_new(body, "dcert", b64j(dc, n));
        expect("PUT", "/v1/keys/bundle", &a, body, 400, cases[i].code);
    }
    size_t n = make_dcert(dc, 1, a.id, a.device, dik, (uint64_t)now_ms(), ka.sk);
    json_t *body = bundle_body(&a, &ka, 1, 0);
    json_object_set_new(body, "dcert", b64j(dc, n - 1)); /* truncated */
    expect("PUT", "/v1/keys/bundle", &a, body, 400, "invalid_request");
    dc[n - 1] ^= 1; /* one flipped bit of the signature */
    body = bundle_body(&a, &ka, 1, 0);
    json_object_set_new(body, "dcert", b64j(dc, n));
    expect("PUT", "/v1/keys/bundle", &a, body, 400, "invalid_signature");
    body = bundle_body(&a, &ka, 1, 0);
    json_object_set_new(body, "dcert", json_string("not base64!"));
    expect("PUT", "/v1/keys/bundle", &a, body, 400, "invalid_request");

    /* SPK: a signature over another id, a key with bit 255 set, id 0xFFFFFFFF, short sig */
    body = bundle_body(&a, &ka, 1, 0);
    json_object_set_new(json_object_get(body, "spk"), "id", json_integer(8));
    expect("PUT", "/v1/keys/bundle", &a, body, 400, "invalid_signature");
    uint8_t high[32];
    x25519_pub(high);
    high[31] |= 0x80;
    body = bundle_body(&a, &ka, 1, 0);
    json_object_set_new(json_object_get(body, "spk"), "pub", b64j(high, 32));
    expect("PUT", "/v1/keys/bundle", &a, body, 400, "invalid_request");
    body = bundle_body(&a, &ka, 1, 0);
    json_object_set_new(json_object_get(body, "spk"), "id", json_integer(0xFFFFFFFFLL));
    expect("PUT", "/v1/keys/bundle", &a, body, 400, "invalid_request");
    body = bundle_body(&a, &ka, 1, 0);
    json_object_set_new(json_object_get(body, "spk"), "sig", b64j(high, 32));
    expect("PUT", "/v1/keys/bundle", &a, body, 400, "invalid_request");
    body = bundle_body(&a, &ka, 1, 0);
    json_object_del(body, "spk");
    expect("PUT", "/v1/keys/bundle", &a, body, 400, "invalid_request");

    /* OPKs: more than 100, ids not increasing, a bad key */
    expect("PUT", "/v1/keys/bundle", &a, bundle_body(&a, &ka, 1, 101), 400, "too_many_prekeys");
    body = bundle_body(&a, &ka, 1, 0);
    json_t *o = opks_json(5, 2);
    json_array_append_new(o, json_pack("{s:i, s:o}", "id", 5, "pub", b64j(dik, 32)));
    json_object_set_new(body, "opks", o);
    expect("PUT", "/v1/keys/bundle", &a, body, 400, "invalid_request");
    body = bundle_body(&a, &ka, 1, 0);
    json_object_set_new(body, "opks", json_pack("[{s:i, s:o}]", "id", 1, "pub", b64j(high, 32)));
    expect("PUT", "/v1/keys/bundle", &a, body, 400, "invalid_request");
    body = bundle_body(&a, &ka, 1, 0);
    json_object_set_new(body, "opks", json_pack("[{s:i, s:s}]", "id", 1, "pub", "AAAA="));
    expect("PUT", "/v1/keys/bundle", &a, body, 400, "invalid_request");
    /* nothing of the refused bundles was stored */
    expect("GET", "/v1/keys/prekeys", &a, NULL, 404, "no_bundle");

    /* the stock cap: 100 + 100 fit, one more does not */
    assert_int_equal(publish(&a, &ka, 1, 100), 100);
    int st;
    json_t *r =
        call("POST", "/v1/keys/prekeys", &a, json_pack("{s:o}", "opks", opks_json(101, 100)), &st);
    assert_http_status(st, r, 200);
    assert_int_equal(tj_int(r, "opk_count"), 200);
    json_decref(r);
    expect("POST", "/v1/keys/prekeys", &a, json_pack("{s:o}", "opks", opks_json(201, 1)), 400,
           "too_many_prekeys");
    expect("POST", "/v1/keys/prekeys", &a, json_pack("{s:o}", "opks", opks_json(301, 101)), 400,
           "too_many_prekeys");
    expect("POST", "/v1/keys/prekeys", &a, json_object(), 400, "invalid_request");

    /* claims: empty, too many, twice the same device, bad ids */
    expect("POST", "/v1/keys/claim", &b, json_pack("{s:[]}", "devices"), 400, "invalid_request");
    json_t *many = json_array();
    for (int i = 0; i < 101; i++)
        json_array_append_new(many, json_pack("{s:s, s:s}", "user", a.id, "device", a.device));
    expect("POST", "/v1/keys/claim", &b, json_pack("{s:o}", "devices", many), 400,
           "invalid_request");
    const tuser *twice[2] = {&a, &a};
    r = claim(&b, twice, 2, &st);
    assert_http_error(st, r, 400, "invalid_request");
    json_decref(r);
    expect("POST", "/v1/keys/claim", &b,
           json_pack("{s:[{s:s, s:s}]}", "devices", "user", "x_1", "device", a.device), 400,
           "invalid_request");
    /* an unknown device is gone, not an error */
    r = call("POST", "/v1/keys/claim", &b,
             json_pack("{s:[{s:s, s:s}]}", "devices", "user", a.id, "device", "d_nosuchdevice"),
             &st);
    assert_http_status(st, r, 200);
    assert_int_equal(json_array_size(tj_get(r, "bundles")), 0);
    assert_string_equal(tj_str(r, "gone.0.device"), "d_nosuchdevice");
    json_decref(r);
    /* a device of another user than named is gone too */
    r = call("POST", "/v1/keys/claim", &b,
             json_pack("{s:[{s:s, s:s}]}", "devices", "user", b.id, "device", a.device), &st);
    assert_http_status(st, r, 200);
    assert_int_equal(json_array_size(tj_get(r, "gone")), 1);
    json_decref(r);
}

T_TEST(test_claim_exactly_once_concurrent)
{
    tuser t, t2, c[5];
    kacct kt;
    keyed_user("ct", &t, &kt, 10);
    assert_int_equal(tuser_login(PORT, t.username, t.password, &t2), 200);
    for (int i = 0; i < 5; i++) assert_int_equal(tuser_new(PORT, "cc", &c[i]), 201);
    tws *wt = tws_live(PORT, &t, "t"), *wt2 = tws_live(PORT, &t2, "t2");
    assert_non_null(wt);
    assert_non_null(wt2);

    /* 50 claims at once, on 50 connections, from 5 devices */
    enum { N = 50 };
    thttp_conn conns[N];
    char body[256];
    snprintf(body, sizeof body, "{\"devices\":[{\"user\":\"%s\",\"device\":\"%s\"}]}", t.id,
             t.device);
    for (int i = 0; i < N; i++) {
        assert_int_equal(thttp_open(&conns[i], PORT), 0);
        char *req = thttp_format(PORT, "POST", "/v1/keys/claim", c[i % 5].token, body);
        assert_int_equal(thttp_write(&conns[i], req, strlen(req)), 0);
        free(req);
    }
    int with = 0, without = 0;
    bool seen[11] = {false};
    for (int i = 0; i < N; i++) {
        thttp_resp r;
        assert_int_equal(thttp_read(&conns[i], &r, 20000), 0);
        assert_http_status(r.status, r.json, 200);
        assert_int_equal(json_array_size(tj_get(r.json, "bundles")), 1);
        json_t *b = tj_get(r.json, "bundles.0");
        assert_true(tj_keys(b, "user,device,aik,dcert,spk,opk"));
        assert_string_equal(tj_str(b, "device"), t.device);
        json_t *opk = json_object_get(b, "opk");
        if (json_is_null(opk)) {
            without++;
        } else {
            int64_t id = tj_int(opk, "id");
            assert_true(id >= 1 && id <= 10);
            assert_false(seen[id]); /* never handed out twice */
            seen[id] = true;
            assert_int_equal(strlen(tj_str(opk, "pub")), 43);
            with++;
        }
        thttp_resp_free(&r);
        thttp_close(&conns[i]);
    }
    assert_int_equal(with, 10);
    assert_int_equal(without, 40);
    int st;
    json_t *r = call("GET", "/v1/keys/prekeys", &t, NULL, &st);
    assert_int_equal(tj_int(r, "opk_count"), 0);
    json_decref(r);

    /* each claim left fewer than 20: prekeys_low to that device only, counting down */
    for (int left = 9; left >= 0; left--) {
        json_t *ev = next_frame(wt, "event", "prekeys_low");
        assert_non_null(ev);
        assert_int_equal(tj_int(ev, "count"), left);
        json_decref(ev);
    }
    assert_true(none_of(wt2, "event", "prekeys_low", 300));
    tws_free(wt);
    tws_free(wt2);
}

T_TEST(test_claim_rate_limit)
{
    tuser t, t2, c, c2;
    kacct kt;
    keyed_user("rt", &t, &kt, 100);
    keyed_device(&t, &kt, &t2, 10);
    assert_int_equal(tuser_new(PORT, "rc", &c), 201);
    assert_int_equal(tuser_login(PORT, c.username, c.password, &c2), 200);
    const tuser *one[1] = {&t};
    int st;
    for (int i = 0; i < 30; i++) {
        json_t *r = claim(&c, one, 1, &st);
        assert_http_status(st, r, 200);
        assert_int_equal(tj_int(r, "bundles.0.opk.id"), i + 1); /* lowest id first */
        json_decref(r);
    }
    /* the 31st from this device for this user: a bundle without OPK, for either device */
    const tuser *both[2] = {&t, &t2};
    json_t *r = claim(&c, both, 2, &st);
    assert_http_status(st, r, 200);
    assert_int_equal(json_array_size(tj_get(r, "bundles")), 2);
    assert_true(json_is_null(tj_get(r, "bundles.0.opk")));
    assert_true(json_is_null(tj_get(r, "bundles.1.opk")));
    assert_string_equal(tj_str(r, "bundles.1.device"), t2.device);
    assert_int_equal(tj_int(r, "bundles.1.spk.id"), 7);
    json_decref(r);
    /* the same user's other device has its own allowance */
    r = claim(&c2, one, 1, &st);
    assert_http_status(st, r, 200);
    assert_int_equal(tj_int(r, "bundles.0.opk.id"), 31);
    json_decref(r);
    r = call("GET", "/v1/keys/prekeys", &t, NULL, &st);
    assert_int_equal(tj_int(r, "opk_count"), 69);
    json_decref(r);
}

T_TEST(test_device_removal_drops_keys)
{
    tuser a, a2, a3, b;
    kacct ka;
    keyed_user("da", &a, &ka, 5);
    keyed_device(&a, &ka, &a2, 5);
    keyed_device(&a, &ka, &a3, 5);
    assert_int_equal(tuser_new(PORT, "db", &b), 201);
    static const char opks_sql[] = "SELECT count(*) FROM key_opks WHERE device_id = ?1";
    static const char bundle_sql[] = "SELECT count(*) FROM key_bundles WHERE device_id = ?1";
    assert_int_equal(db_count(opks_sql, a2.device), 5);
    tws *wa = tws_live(PORT, &a, "a");
    assert_non_null(wa);

    /* a3 removes a2: the user's other devices (a here) hear devices_changed */
    char path[128];
    snprintf(path, sizeof path, "/v1/devices/%s", a2.device);
    expect("DELETE", path, &a3, NULL, 204, NULL);
    json_t *ev = next_frame(wa, "event", "devices_changed");
    assert_non_null(ev);
    assert_string_equal(tj_str(ev, "user"), a.id);
    json_decref(ev);
    assert_int_equal(db_count(opks_sql, a2.device), 0);
    assert_int_equal(db_count(bundle_sql, a2.device), 0);

    /* log-out drops keys too */
    expect("DELETE", "/v1/sessions/current", &a3, NULL, 204, NULL);
    ev = next_frame(wa, "event", "devices_changed");
    assert_non_null(ev);
    json_decref(ev);
    assert_int_equal(db_count(opks_sql, a3.device), 0);
    assert_int_equal(db_count(bundle_sql, a3.device), 0);

    int st;
    snprintf(path, sizeof path, "/v1/users/%s/devices", a.id);
    json_t *r = call("GET", path, &b, NULL, &st);
    assert_http_status(st, r, 200);
    assert_int_equal(json_array_size(tj_get(r, "devices")), 1);
    assert_string_equal(tj_str(r, "devices.0.device"), a.device);
    json_decref(r);
    const tuser *gone[3] = {&a, &a2, &a3};
    r = claim(&b, gone, 3, &st);
    assert_http_status(st, r, 200);
    assert_int_equal(json_array_size(tj_get(r, "bundles")), 1);
    assert_int_equal(json_array_size(tj_get(r, "gone")), 2);
    json_decref(r);

    /* a block hides the directory both ways (no group in common) */
    snprintf(path, sizeof path, "/v1/blocks/%s", b.id);
    expect("PUT", path, &a, NULL, 204, NULL);
    snprintf(path, sizeof path, "/v1/users/%s/devices", a.id);
    expect("GET", path, &b, NULL, 403, "blocked");
    const tuser *blocked[1] = {&a};
    r = claim(&b, blocked, 1, &st);
    assert_http_error(st, r, 403, "blocked");
    json_decref(r);
    tws_free(wa);
}

T_TEST(test_e2e_direct)
{
    tuser a1, a2, b1, b2, x;
    kacct ka, kb;
    keyed_user("ea", &a1, &ka, 3);
    keyed_device(&a1, &ka, &a2, 3);
    keyed_user("eb", &b1, &kb, 3);
    keyed_device(&b1, &kb, &b2, 3);
    assert_int_equal(tuser_new(PORT, "ex", &x), 201); /* no keys: talks in the clear */
    tws *wa1 = tws_live(PORT, &a1, "a1"), *wa2 = tws_live(PORT, &a2, "a2");
    tws *wb1 = tws_live(PORT, &b1, "b1"), *wb2 = tws_live(PORT, &b2, "b2");
    assert_non_null(wa1);
    assert_non_null(wa2);
    assert_non_null(wb1);
    assert_non_null(wb2);
    char l1[128], l2[128];

    /* both have an AIK: only e2e */
    json_t *r = send_kind_text(wa1, b1.id);
    assert_string_equal(tj_str(r, "code"), "conversation_encrypted");
    json_decref(r);
    /* with someone without keys, plain text is fine */
    r = send_kind_text(wa1, x.id);
    assert_string_equal(tj_str(r, "type"), "ack");
    json_decref(r);
    json_t *m = next_frame(wa2, "msg", NULL); /* a2 gets its own user's message */
    json_decref(m);

    /* missing device b2 */
    r = send_e2e(wa1, b1.id,
                 direct_body(json_pack("[o, o]", entry(&a2, "to a2"), entry(&b1, "x"))));
    assert_string_equal(tj_str(r, "code"), "device_list_stale");
    assert_string_equal(stale_list(r, a1.id, l1, sizeof l1), a2.device);
    assert_string_equal(stale_list(r, b1.id, l1, sizeof l1), joined(l2, sizeof l2, &b1, &b2));
    assert_int_equal(json_object_size(json_object_get(r, "devices")), 2);
    json_decref(r);
    /* an extra device nobody has */
    tuser fake = b2;
    snprintf(fake.device, sizeof fake.device, "d_notadevice");
    r = send_e2e(wa1, b1.id,
                 direct_body(json_pack("[o, o, o, o]", entry(&a2, "a"), entry(&b1, "b"),
                                       entry(&b2, "c"), entry(&fake, "d"))));
    assert_string_equal(tj_str(r, "code"), "device_list_stale");
    json_decref(r);
    /* the sending device itself is not in D(conv) */
    r = send_e2e(wa1, b1.id,
                 direct_body(json_pack("[o, o, o, o]", entry(&a1, "self"), entry(&a2, "a"),
                                       entry(&b1, "b"), entry(&b2, "c"))));
    assert_string_equal(tj_str(r, "code"), "device_list_stale");
    json_decref(r);
    /* a duplicate entry */
    r = send_e2e(wa1, b1.id,
                 direct_body(json_pack("[o, o, o, o]", entry(&a2, "a"), entry(&b1, "b"),
                                       entry(&b1, "b"), entry(&b2, "c"))));
    assert_string_equal(tj_str(r, "code"), "device_list_stale");
    json_decref(r);
    /* g has no place in a direct conversation; bad shapes */
    json_t *body =
        direct_body(json_pack("[o, o, o]", entry(&a2, "a"), entry(&b1, "b"), entry(&b2, "c")));
    json_object_set_new(body, "g", json_string("AAAA"));
    r = send_e2e(wa1, b1.id, body);
    assert_string_equal(tj_str(r, "code"), "invalid_request");
    json_decref(r);
    r = send_e2e(wa1, b1.id, json_pack("{s:i, s:[]}", "v", 2, "devs"));
    assert_string_equal(tj_str(r, "code"), "invalid_request");
    json_decref(r);
    r = send_e2e(wa1, b1.id,
                 json_pack("{s:i, s:[{s:s, s:s, s:s}]}", "v", 1, "devs", "u", b1.id, "d", b1.device,
                           "c", "not base64!"));
    assert_string_equal(tj_str(r, "code"), "invalid_request");
    json_decref(r);

    /* exactly D(conv): stored and delivered, each device with its own c */
    char cmid[32];
    t_id(cmid, sizeof cmid, "ok");
    r = send_e2e_cmid(wa1, b1.id, cmid,
                      direct_body(json_pack("[o, o, o]", entry(&b2, "for b2"), entry(&a2, "for a2"),
                                            entry(&b1, "for b1"))));
    assert_string_equal(tj_str(r, "type"), "ack");
    int64_t seq = tj_int(r, "seq");
    char conv[ID_MAX];
    snprintf(conv, sizeof conv, "%s", tj_str(r, "conv"));
    json_decref(r);
    struct {
        tws *ws;
        const char *want;
    } rx[3] = {{wb1, "for b1"}, {wb2, "for b2"}, {wa2, "for a2"}};
    for (int i = 0; i < 3; i++) {
        m = next_frame(rx[i].ws, "msg", NULL);
        assert_non_null(m);
        assert_string_equal(tj_str(m, "kind"), "e2e");
        assert_int_equal(tj_int(m, "seq"), seq);
        assert_true(tj_keys(json_object_get(m, "body"), "v,ctl,c"));
        char buf[64];
        assert_string_equal(c_text(m, buf, sizeof buf), rx[i].want);
        json_decref(m);
    }
    /* the conversation is listed as e2e */
    int st;
    json_t *convs = call("GET", "/v1/convs", &b1, NULL, &st);
    assert_http_status(st, convs, 200);
    assert_string_equal(tj_str(convs, "convs.0.id"), conv);
    assert_int_equal(tj_bool(convs, "convs.0.e2e"), 1);
    json_decref(convs);
    /* edits and reactions travel inside e2e messages */
    char id[32];
    t_id(id, sizeof id, "rx");
    assert_int_equal(tws_sendp(wb1, "{s:s, s:s, s:s, s:I, s:s}", "type", "react", "id", id, "conv",
                               conv, "seq", (json_int_t)seq, "emoji", "+"),
                     0);
    r = tws_expect_reply(wb1, "error", id, 0);
    assert_non_null(r);
    assert_string_equal(tj_str(r, "code"), "conversation_encrypted");
    json_decref(r);

    /* ctl (a RETRY to one device): entries for some devices only */
    body = direct_body(json_pack("[o]", entry(&b1, "retry")));
    json_object_set_new(body, "ctl", json_true());
    r = send_e2e(wa1, b1.id, body);
    assert_string_equal(tj_str(r, "type"), "ack");
    json_decref(r);
    m = next_frame(wb2, "msg", NULL); /* b2 gets the frame without c */
    assert_non_null(m);
    assert_int_equal(tj_bool(m, "body.ctl"), 1);
    assert_null(tj_get(m, "body.c"));
    json_decref(m);
    m = next_frame(wb1, "msg", NULL);
    json_decref(m);
    m = next_frame(wa2, "msg", NULL);
    json_decref(m);

    /* b2 vanishes: the old list is stale and the answer is the current one */
    char path[128];
    snprintf(path, sizeof path, "/v1/devices/%s", b2.device);
    expect("DELETE", path, &b1, NULL, 204, NULL);
    r = send_e2e(
        wa1, b1.id,
        direct_body(json_pack("[o, o, o]", entry(&a2, "a"), entry(&b1, "b"), entry(&b2, "c"))));
    assert_string_equal(tj_str(r, "code"), "device_list_stale");
    assert_string_equal(stale_list(r, b1.id, l1, sizeof l1), b1.device);
    assert_string_equal(stale_list(r, a1.id, l1, sizeof l1), a2.device);
    json_decref(r);
    /* a resent cmid gets the original ack, whatever the list */
    r = send_e2e_cmid(wa1, b1.id, cmid, direct_body(json_array()));
    assert_string_equal(tj_str(r, "type"), "ack");
    assert_int_equal(tj_int(r, "seq"), seq);
    json_decref(r);
    tws_free(wa1);
    tws_free(wa2);
    tws_free(wb1);
    tws_free(wb2);
}

T_TEST(test_e2e_group)
{
    tuser a, b1, b2, c;
    kacct ka, kb, kc;
    keyed_user("ga", &a, &ka, 3);
    keyed_user("gb", &b1, &kb, 3);
    keyed_device(&b1, &kb, &b2, 3);
    assert_int_equal(tuser_new(PORT, "gc", &c), 201); /* a member with no devices */
    new_acct(&kc);
    put_identity(&c, &kc);
    tws *wa = tws_live(PORT, &a, "a"), *wb1 = tws_live(PORT, &b1, "b1");
    assert_non_null(wa);
    assert_non_null(wb1);
    int st;
    json_t *g = call(
        "POST", "/v1/groups", &a,
        json_pack("{s:s, s:[s, s], s:b}", "name", "secret", "members", b1.id, c.id, "e2e", 1), &st);
    assert_http_status(st, g, 201);
    assert_int_equal(tj_bool(g, "e2e"), 1);
    char gid[ID_MAX];
    snprintf(gid, sizeof gid, "%s", tj_str(g, "id"));
    json_decref(g);
    json_t *m = next_frame(wb1, "msg", NULL); /* the created system message */
    assert_non_null(m);
    json_decref(m);

    const tuser *d[2] = {&b1, &b2};
    /* plain text is refused in an e2e group */
    json_t *r = send_kind_text(wa, gid);
    assert_string_equal(tj_str(r, "code"), "conversation_encrypted");
    json_decref(r);
    /* a wrong dl: 409 with every member, also those without devices */
    const tuser *wrong[1] = {&b1};
    r = send_e2e(wa, gid, group_body(json_pack("[o]", entry(&b1, "k")), dl_of(wrong, 1)));
    assert_string_equal(tj_str(r, "code"), "device_list_stale");
    char l1[128], l2[128];
    assert_string_equal(stale_list(r, b1.id, l1, sizeof l1), joined(l2, sizeof l2, &b1, &b2));
    assert_string_equal(stale_list(r, a.id, l1, sizeof l1), "");
    assert_string_equal(stale_list(r, c.id, l1, sizeof l1), "");
    json_decref(r);
    /* an entry for a device outside D(conv) (the sender's own) */
    r = send_e2e(wa, gid,
                 group_body(json_pack("[o, o]", entry(&b1, "k"), entry(&a, "self")), dl_of(d, 2)));
    assert_string_equal(tj_str(r, "code"), "device_list_stale");
    json_decref(r);
    /* no g */
    json_t *body = group_body(json_array(), dl_of(d, 2));
    json_object_del(body, "g");
    r = send_e2e(wa, gid, body);
    assert_string_equal(tj_str(r, "code"), "invalid_request");
    json_decref(r);

    /* right dl: stored; b1 gets its c and g, b2 (offline) syncs its own view later */
    r = send_e2e(
        wa, gid,
        group_body(json_pack("[o, o]", entry(&b1, "skdm b1"), entry(&b2, "skdm b2")), dl_of(d, 2)));
    assert_string_equal(tj_str(r, "type"), "ack");
    json_decref(r);
    r = send_e2e(wa, gid, group_body(json_array(), dl_of(d, 2))); /* subsets are fine in groups */
    assert_string_equal(tj_str(r, "type"), "ack");
    int64_t seq2 = tj_int(r, "seq");
    json_decref(r);
    m = next_frame(wb1, "msg", NULL);
    assert_non_null(m);
    char buf[64];
    assert_string_equal(c_text(m, buf, sizeof buf), "skdm b1");
    assert_true(tj_keys(json_object_get(m, "body"), "v,ctl,c,g"));
    json_decref(m);
    m = next_frame(wb1, "msg", NULL);
    assert_non_null(m);
    assert_true(tj_keys(json_object_get(m, "body"), "v,ctl,g"));
    json_decref(m);

    int64_t head;
    tws *wb2 = tws_auth(PORT, b2.token, &head);
    assert_non_null(wb2);
    json_t *msgs = json_array();
    assert_int_equal(tws_sync_all(wb2, 0, 0, msgs, NULL, NULL), 0);
    int found = 0;
    size_t i;
    json_array_foreach(msgs, i, m)
    {
        if (strcmp(tj_str(m, "kind"), "e2e") != 0) continue;
        assert_null(tj_get(m, "body.devs"));
        assert_null(tj_get(m, "body.dl"));
        if (tj_int(m, "seq") == seq2) {
            assert_null(tj_get(m, "body.c"));
        } else {
            assert_string_equal(c_text(m, buf, sizeof buf), "skdm b2");
        }
        found++;
    }
    assert_int_equal(found, 2);
    json_decref(msgs);
    /* system messages still flow: a new member, and D(conv) grows */
    tuser e;
    kacct ke;
    keyed_user("ge", &e, &ke, 1);
    char path[128];
    snprintf(path, sizeof path, "/v1/groups/%s/members", gid);
    expect("POST", path, &a, json_pack("{s:[s]}", "users", e.id), 200, NULL);
    r = send_e2e(wa, gid, group_body(json_array(), dl_of(d, 2)));
    assert_string_equal(tj_str(r, "code"), "device_list_stale");
    assert_string_equal(stale_list(r, e.id, l1, sizeof l1), e.device);
    json_decref(r);
    const tuser *d3[3] = {&b1, &b2, &e};
    r = send_e2e(wa, gid, group_body(json_pack("[o]", entry(&e, "skdm e")), dl_of(d3, 3)));
    assert_string_equal(tj_str(r, "type"), "ack");
    json_decref(r);
    tws_free(wa);
    tws_free(wb1);
    tws_free(wb2);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    if (sodium_init() < 0) return 1;
    tws_default_ignore = "presence,typing";
    const struct CMUnitTest tests[] = {
        T(test_publish_and_list_devices),
        T(test_validation),
        T(test_claim_exactly_once_concurrent),
        T(test_claim_rate_limit),
        T(test_device_removal_drops_keys),
        T(test_e2e_direct),
        T(test_e2e_group),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
