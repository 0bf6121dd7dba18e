/* keys.c: the key directory of end-to-end encryption (E2E.md §3, §4).
 *
 * parleyd stores public keys and hands them out; it never sees a private key or a plaintext.
 * Binary values travel as base64url without padding. What the server can check, it checks:
 * lengths, the DCERT layout and that it names the token's user and device, X25519 keys with bit
 * 255 clear, and the DCERT and SPK signatures against the AIK the user published. Clients still
 * verify everything against the AIK they pinned (a server check never replaces that).
 *
 *   PUT  /v1/keys/identity        worker    the user's AIK, once
 *   PUT  /v1/keys/bundle          pipeline  the device's DCERT, SPK and optional OPKs;
 *                                           devices_changed to the user's other devices
 *   POST /v1/keys/prekeys         worker    more OPKs (BEGIN IMMEDIATE: the cap holds)
 *   GET  /v1/keys/prekeys         worker    the device's stock
 *   GET  /v1/users/{u}/devices    worker    u's AIK and published devices
 *   POST /v1/keys/claim           pipeline  bundles, each with one OPK deleted in the same
 *                                           transaction; prekeys_low to the device
 *   DELETE /v1/devices/{d}, DELETE /v1/sessions/current
 *                                 pipeline  the users.c / accounts.c handlers (the device's keys
 *                                           go by ON DELETE CASCADE), then devices_changed
 *
 * "Devices" of a user in E2E terms (D(conv), the device list, claims) are the devices that
 * published a bundle: a device without one cannot be encrypted to. */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "server/api/api.h"
#include "server/pipeline/pipeline.h"

#define OPK_BATCH       100 /* OPKs per call */
#define OPK_CAP         200 /* OPKs stored per device */
#define OPK_LOW         20  /* prekeys_low below this */
#define OPK_ID_NONE     0xFFFFFFFFu
#define CLAIM_MAX       100 /* devices per claim */
#define CLAIMS_PER_HOUR 30  /* OPKs per (claiming device, target user) per hour */
#define HOUR_MS         3600000
#define DEVICES_MAX     64

static const char DCERT_LABEL[] = "PARLEYv1/DCERT";
static const char SPK_LABEL[] = "PARLEYv1/SPK";

/* ---- encoding ---- */

#define B64_VARIANT sodium_base64_VARIANT_URLSAFE_NO_PADDING

/* Decodes v, a base64url string without padding, of min..max bytes (canonical: libsodium rejects
 * padding, other characters and non-zero trailing bits). Returns the length or -1. */
static long b64_in(json_t *v, uint8_t *out, size_t min, size_t max)
{
    const char *s = json_string_value(v);
    if (!s) return -1;
    size_t n = json_string_length(v), got = 0;
    if (strlen(s) != n || n > sodium_base64_ENCODED_LEN(max, B64_VARIANT) - 1) return -1;
    if (sodium_base642bin(out, max, s, n, NULL, &got, NULL, B64_VARIANT) != 0 || got < min)
        return -1;
    return (long)got;
}

static json_t *b64_out(const uint8_t *p, size_t n)
{
    char buf[sodium_base64_ENCODED_LEN(ST_DCERT_MAX, B64_VARIANT)];
    if (n > ST_DCERT_MAX) return json_null();
    sodium_bin2base64(buf, sizeof buf, p, n, B64_VARIANT);
    return json_string(buf);
}

/* An X25519 public key: 32 bytes with bit 255 clear (E2E.md §2). */
static bool x25519_in(json_t *v, uint8_t out[ST_KEY_LEN])
{
    return b64_in(v, out, ST_KEY_LEN, ST_KEY_LEN) == ST_KEY_LEN && (out[31] & 0x80) == 0;
}

/* A u32 key id other than 0xFFFFFFFF (which means none). */
static bool key_id_in(json_t *v, uint32_t *out)
{
    if (!json_is_integer(v)) return false;
    json_int_t i = json_integer_value(v);
    if (i < 0 || i >= (json_int_t)OPK_ID_NONE) return false;
    *out = (uint32_t)i;
    return true;
}

/* id(x) = u8 len (1..64) ‖ ASCII. */
static size_t put_id(uint8_t *p, const char *id)
{
    size_t n = strlen(id);
    p[0] = (uint8_t)n;
    memcpy(p + 1, id, n);
    return n + 1;
}

/* ---- checks ---- */

/* Checks a DCERT: u8 1 ‖ id(user) ‖ id(device) ‖ DIK_pub ‖ created_at u64 ‖ sig(64), naming
 * this user and device, signed by aik over "PARLEYv1/DCERT" ‖ all preceding bytes. Returns NULL,
 * or the sentence for 400 invalid_request; *bad_sig is set for 400 invalid_signature. */
static const char *dcert_check(const uint8_t *d, size_t n, const char *user, const char *dev,
                               const uint8_t aik[ST_KEY_LEN], int64_t *created_at, bool *bad_sig)
{
    *bad_sig = false;
    if (n < 2 || d[0] != 1) return "dcert must start with version 1.";
    size_t ul = d[1];
    if (ul < 1 || ul > 64 || 2 + ul >= n) return "dcert has a bad user id.";
    size_t dl = d[2 + ul];
    size_t off = 3 + ul + dl;
    if (dl < 1 || dl > 64 || n != off + ST_KEY_LEN + 8 + ST_SIG_LEN)
        return "dcert must be 1 ‖ id(user) ‖ id(device) ‖ DIK (32) ‖ created_at (8) ‖ sig (64).";
    if (ul != strlen(user) || memcmp(d + 2, user, ul) != 0)
        return "dcert names another user than the token's.";
    if (dl != strlen(dev) || memcmp(d + 3 + ul, dev, dl) != 0)
        return "dcert names another device than the token's.";
    if (d[off + 31] & 0x80) return "dcert's DIK is not a valid X25519 public key.";
    uint64_t t = 0;
    for (int i = 0; i < 8; i++) t = t << 8 | d[off + ST_KEY_LEN + i];
    if (t == 0 || t > INT64_MAX) return "dcert's created_at is out of range.";
    *created_at = (int64_t)t;
    size_t signed_len = n - ST_SIG_LEN;
    uint8_t msg[sizeof DCERT_LABEL - 1 + ST_DCERT_MAX];
    memcpy(msg, DCERT_LABEL, sizeof DCERT_LABEL - 1);
    memcpy(msg + sizeof DCERT_LABEL - 1, d, signed_len);
    if (crypto_sign_verify_detached(d + signed_len, msg, sizeof DCERT_LABEL - 1 + signed_len,
                                    aik) != 0)
        *bad_sig = true;
    return NULL;
}

/* The SPK signature: Ed25519(AIK, "PARLEYv1/SPK" ‖ id(user) ‖ id(device) ‖ spk_id u32 ‖ SPK). */
static bool spk_sig_ok(const st_bundle *b, const uint8_t aik[ST_KEY_LEN])
{
    uint8_t msg[sizeof SPK_LABEL - 1 + 2 * (1 + ID_MAX) + 4 + ST_KEY_LEN];
    size_t n = sizeof SPK_LABEL - 1;
    memcpy(msg, SPK_LABEL, n);
    n += put_id(msg + n, b->user);
    n += put_id(msg + n, b->device);
    for (int i = 3; i >= 0; i--) msg[n++] = (uint8_t)(b->spk_id >> (8 * i));
    memcpy(msg + n, b->spk_pub, ST_KEY_LEN);
    n += ST_KEY_LEN;
    return crypto_sign_verify_detached(b->spk_sig, msg, n, aik) == 0;
}

/* Parses an opks array ([{id, pub}], at most OPK_BATCH, ids strictly increasing) into out.
 * Returns the count, or -1 after answering the error. */
static int opks_in(api_req *r, json_t *arr, st_opk out[OPK_BATCH])
{
    if (!json_is_array(arr)) {
        api_error(r, 400, "invalid_request", "opks must be an array of {id, pub}.");
        return -1;
    }
    if (json_array_size(arr) > OPK_BATCH) {
        api_error(r, 400, "too_many_prekeys", "Upload at most 100 OPKs at a time.");
        return -1;
    }
    size_t i;
    json_t *o;
    json_array_foreach(arr, i, o)
    {
        if (!json_is_object(o) || !key_id_in(json_object_get(o, "id"), &out[i].id) ||
            !x25519_in(json_object_get(o, "pub"), out[i].pub)) {
            api_error(r, 400, "invalid_request",
                      "Each OPK needs id (0 to 4294967294) and pub (32 bytes in base64url, an "
                      "X25519 public key).");
            return -1;
        }
        if (i > 0 && out[i].id <= out[i - 1].id) {
            api_error(r, 400, "invalid_request", "OPK ids must increase.");
            return -1;
        }
    }
    return (int)i;
}

/* Stores the OPKs of opks[0..n) whose ids are above the device's highest stored id (lower ones
 * were stored before: a retried upload, or OPKs already claimed, which must not come back) and
 * answers {opk_count}. 400 too_many_prekeys when the stock would pass OPK_CAP. Inside the
 * caller's transaction. Returns false after answering an error. */
static bool opks_store(api_req *r, store_t *st, const st_bundle *b, const st_opk *opks, int n)
{
    int have = 0, skip = 0;
    while (skip < n && (int64_t)opks[skip].id <= b->opk_max_id) skip++;
    if (store_key_opk_count(st, b->device, &have) != ST_OK) return false;
    if (have + (n - skip) > OPK_CAP) {
        api_error(r, 400, "too_many_prekeys", "A device may store at most 200 OPKs.");
        return false;
    }
    if (store_key_opks_add(st, b->device, opks + skip, n - skip) != ST_OK ||
        store_key_opk_count(st, b->device, &have) != ST_OK)
        return false;
    api_ok(r, 200, json_pack("{s:i}", "opk_count", have));
    return true;
}

/* May `me` reach `other` (list their devices, claim their keys)? Anyone who may message them:
 * no block either way, or a group in common (group messages pass blocks). */
static int may_reach(store_t *st, const char *me, const char *other, bool *ok)
{
    *ok = true;
    if (strcmp(me, other) == 0) return ST_OK;
    bool a = false, b = false;
    int rc = store_block_check(st, me, other, &a, &b);
    if (rc != ST_OK || (!a && !b)) return rc;
    return store_key_share_group(st, me, other, ok);
}

/* devices_changed {user} to the user's other devices (pipeline routes only). */
static void devices_changed(api_req *r)
{
    if (!r->pitem) return;
    json_t *o =
        json_pack("{s:s, s:s, s:s}", "type", "event", "event", "devices_changed", "user", r->user);
    pipeline_note(r->pitem, r->user, r->dev, json_dumps(o, JSON_COMPACT));
    json_decref(o);
}

/* ---- handlers ---- */

void h_keys_identity_put(api_req *r, store_t *st)
{
    if (!r->in) return api_error(r, 400, "invalid_json", "Send {aik} as a JSON object.");
    uint8_t aik[ST_KEY_LEN], old[ST_KEY_LEN];
    if (b64_in(json_object_get(r->in, "aik"), aik, ST_KEY_LEN, ST_KEY_LEN) != ST_KEY_LEN ||
        !crypto_core_ed25519_is_valid_point(aik))
        return api_error(r, 400, "invalid_request",
                         "aik must be an Ed25519 public key: 32 bytes in base64url without "
                         "padding.");
    if (store_begin(st) != ST_OK) return;
    int rc = store_key_identity_get(st, r->user, old);
    if (rc == ST_NOTFOUND) {
        rc = store_key_identity_set(st, r->user, aik, now_ms());
        if (rc == ST_OK) rc = store_key_mark_direct(st, r->user);
    } else if (rc == ST_OK && sodium_memcmp(old, aik, sizeof aik) != 0) {
        store_rollback(st);
        return api_error(r, 409, "identity_exists",
                         "This account has an identity key already; reset it instead.");
    }
    if (rc != ST_OK || store_commit(st) != ST_OK) {
        store_rollback(st);
        return;
    }
    r->status = 204; /* also for the same key again: a retried upload */
}

void h_keys_bundle_put(api_req *r, store_t *st)
{
    if (!r->in) return api_error(r, 400, "invalid_json", "Send {dcert, spk, opks?}.");
    st_bundle b = {0};
    snprintf(b.user, sizeof b.user, "%s", r->user);
    snprintf(b.device, sizeof b.device, "%s", r->dev);
    long n = b64_in(json_object_get(r->in, "dcert"), b.dcert, 2, ST_DCERT_MAX);
    if (n < 0)
        return api_error(r, 400, "invalid_request",
                         "dcert must be a DCERT in base64url without padding.");
    b.dcert_len = (size_t)n;
    json_t *spk = json_object_get(r->in, "spk");
    if (!json_is_object(spk) || !key_id_in(json_object_get(spk, "id"), &b.spk_id) ||
        !x25519_in(json_object_get(spk, "pub"), b.spk_pub) ||
        b64_in(json_object_get(spk, "sig"), b.spk_sig, ST_SIG_LEN, ST_SIG_LEN) != ST_SIG_LEN)
        return api_error(r, 400, "invalid_request",
                         "spk must be {id (0 to 4294967294), pub (32 bytes, an X25519 public "
                         "key), sig (64 bytes)} in base64url without padding.");
    st_opk opks[OPK_BATCH];
    int nopk = 0;
    json_t *arr = json_object_get(r->in, "opks");
    if (arr && (nopk = opks_in(r, arr, opks)) < 0) return;
    uint8_t aik[ST_KEY_LEN];
    int rc = store_key_identity_get(st, r->user, aik);
    if (rc == ST_NOTFOUND)
        return api_error(r, 409, "no_identity",
                         "Publish the account identity key (PUT /v1/keys/identity) first.");
    if (rc != ST_OK) return;
    bool bad_sig;
    const char *bad =
        dcert_check(b.dcert, b.dcert_len, r->user, r->dev, aik, &b.dcert_created_at, &bad_sig);
    if (bad) return api_error(r, 400, "invalid_request", bad);
    if (bad_sig)
        return api_error(r, 400, "invalid_signature",
                         "The dcert signature does not verify with the account identity key.");
    if (!spk_sig_ok(&b, aik))
        return api_error(r, 400, "invalid_signature",
                         "The spk signature does not verify with the account identity key.");
    bool changed = false;
    st_bundle stored;
    if (store_key_bundle_put(st, &b, r->pitem->now, &changed) != ST_OK ||
        store_key_bundle_get(st, r->dev, &stored) != ST_OK ||
        !opks_store(r, st, &stored, opks, nopk))
        return;
    if (changed) devices_changed(r);
}

void h_keys_prekeys_post(api_req *r, store_t *st)
{
    if (!r->in) return api_error(r, 400, "invalid_json", "Send {opks: [...]}.");
    st_opk opks[OPK_BATCH];
    int nopk = opks_in(r, json_object_get(r->in, "opks"), opks);
    if (nopk < 0) return;
    if (store_begin(st) != ST_OK) return;
    st_bundle b;
    int rc = store_key_bundle_get(st, r->dev, &b);
    if (rc == ST_NOTFOUND)
        api_error(r, 409, "no_bundle", "Publish this device's bundle (PUT /v1/keys/bundle) first.");
    if (rc != ST_OK || !opks_store(r, st, &b, opks, nopk) || store_commit(st) != ST_OK) {
        store_rollback(st);
        if (r->status == 200) r->status = 0; /* the commit failed: internal */
    }
}

void h_keys_prekeys_get(api_req *r, store_t *st)
{
    st_bundle b;
    int n = 0;
    int rc = store_key_bundle_get(st, r->dev, &b);
    if (rc == ST_NOTFOUND)
        return api_error(r, 404, "no_bundle", "This device has not published a bundle.");
    if (rc != ST_OK || store_key_opk_count(st, r->dev, &n) != ST_OK) return;
    api_ok(r, 200,
           json_pack("{s:i, s:I, s:I}", "opk_count", n, "spk_id", (json_int_t)b.spk_id,
                     "spk_uploaded_at", (json_int_t)b.spk_uploaded_at));
}

void h_user_devices(api_req *r, store_t *st)
{
    st_user u;
    int rc = id_valid(r->param, "u_") ? store_user_get(st, r->param, &u) : ST_NOTFOUND;
    if (rc == ST_NOTFOUND) return api_error(r, 404, "not_found", "There is no user with that id.");
    if (rc != ST_OK) return;
    bool ok = false;
    if (may_reach(st, r->user, u.id, &ok) != ST_OK) return;
    if (!ok) return api_error(r, 403, "blocked", "You cannot message this user.");
    uint8_t aik[ST_KEY_LEN];
    rc = store_key_identity_get(st, u.id, aik);
    if (rc == ST_ERR) return;
    st_bundle *bs = calloc(DEVICES_MAX, sizeof *bs);
    if (!bs) abort();
    int n = store_key_bundle_list(st, u.id, bs, DEVICES_MAX);
    if (n >= 0) {
        json_t *arr = json_array();
        for (int i = 0; i < n; i++)
            json_array_append_new(arr, json_pack("{s:s, s:o, s:I}", "device", bs[i].device, "dcert",
                                                 b64_out(bs[i].dcert, bs[i].dcert_len),
                                                 "created_at", (json_int_t)bs[i].dcert_created_at));
        api_ok(r, 200,
               json_pack("{s:s, s:o, s:o}", "user", u.id, "aik",
                         rc == ST_OK ? b64_out(aik, sizeof aik) : json_null(), "devices", arr));
    }
    free(bs);
}

typedef struct claim_req {
    const char *user, *device;
} claim_req;

void h_keys_claim(api_req *r, store_t *st)
{
    if (!r->in) return api_error(r, 400, "invalid_json", "Send {devices: [{user, device}]}.");
    json_t *devs = json_object_get(r->in, "devices");
    size_t nd = json_array_size(devs);
    if (!json_is_array(devs) || nd < 1 || nd > CLAIM_MAX)
        return api_error(r, 400, "invalid_request",
                         "devices must be an array of 1 to 100 {user, device}.");
    claim_req req[CLAIM_MAX];
    for (size_t i = 0; i < nd; i++) {
        json_t *o = json_array_get(devs, i);
        req[i].user = json_string_value(json_object_get(o, "user"));
        req[i].device = json_string_value(json_object_get(o, "device"));
        if (!req[i].user || !id_valid(req[i].user, "u_") || !req[i].device ||
            !id_valid(req[i].device, "d_"))
            return api_error(r, 400, "invalid_request",
                             "Each entry of devices needs user (u_...) and device (d_...).");
        for (size_t j = 0; j < i; j++)
            if (strcmp(req[j].device, req[i].device) == 0)
                return api_error(r, 400, "invalid_request", "A device is named twice.");
    }
    for (size_t i = 0; i < nd; i++) {
        bool seen = false, ok = false;
        for (size_t j = 0; j < i && !seen; j++) seen = strcmp(req[j].user, req[i].user) == 0;
        if (seen) continue;
        if (may_reach(st, r->user, req[i].user, &ok) != ST_OK) return;
        if (!ok) return api_error(r, 403, "blocked", "You cannot message one of these users.");
    }
    int64_t now = r->pitem->now;
    if (store_key_claims_prune(st, now - HOUR_MS) != ST_OK) return;
    json_t *bundles = json_array(), *gone = json_array();
    for (size_t i = 0; i < nd; i++) {
        st_bundle b;
        uint8_t aik[ST_KEY_LEN];
        int rc = store_key_bundle_get(st, req[i].device, &b);
        if (rc == ST_OK && strcmp(b.user, req[i].user) != 0) rc = ST_NOTFOUND;
        if (rc == ST_OK) rc = store_key_identity_get(st, b.user, aik);
        if (rc == ST_NOTFOUND) {
            json_array_append_new(
                gone, json_pack("{s:s, s:s}", "user", req[i].user, "device", req[i].device));
            continue;
        }
        if (rc != ST_OK) goto fail;
        int claimed = 0;
        if (store_key_claims_count(st, r->dev, b.user, now - HOUR_MS, &claimed) != ST_OK) goto fail;
        st_opk opk;
        rc = claimed < CLAIMS_PER_HOUR ? store_key_opk_take(st, b.device, &opk) : ST_NOTFOUND;
        if (rc == ST_ERR) goto fail;
        json_t *jopk = json_null();
        if (rc == ST_OK) {
            int left = 0;
            if (store_key_claim_add(st, r->dev, b.user, now) != ST_OK ||
                store_key_opk_count(st, b.device, &left) != ST_OK)
                goto fail;
            jopk = json_pack("{s:I, s:o}", "id", (json_int_t)opk.id, "pub",
                             b64_out(opk.pub, sizeof opk.pub));
            if (left < OPK_LOW) {
                json_t *ev = json_pack("{s:s, s:s, s:i}", "type", "event", "event", "prekeys_low",
                                       "count", left);
                pipeline_note_dev(r->pitem, b.user, b.device, json_dumps(ev, JSON_COMPACT));
                json_decref(ev);
            }
        }
        json_array_append_new(
            bundles, json_pack("{s:s, s:s, s:o, s:o, s:{s:I, s:o, s:o}, s:o}", "user", b.user,
                               "device", b.device, "aik", b64_out(aik, sizeof aik), "dcert",
                               b64_out(b.dcert, b.dcert_len), "spk", "id", (json_int_t)b.spk_id,
                               "pub", b64_out(b.spk_pub, sizeof b.spk_pub), "sig",
                               b64_out(b.spk_sig, sizeof b.spk_sig), "opk", jopk));
    }
    api_ok(r, 200, json_pack("{s:o, s:o}", "bundles", bundles, "gone", gone));
    return;
fail:
    json_decref(bundles);
    json_decref(gone);
}

void h_keys_device_delete(api_req *r, store_t *st)
{
    h_device_delete(r, st);
    if (r->status == 204) devices_changed(r);
}

void h_keys_session_delete(api_req *r, store_t *st)
{
    h_sessions_delete(r, st);
    if (r->status == 204) devices_changed(r);
}

/* ---- device linking (E2E.md §10) ---- */

#define LINK_TTL_MS   (10 * 60 * 1000)
#define LINK_C_MAX    65536 /* the sealed payload */
#define LINK_C_MIN    17    /* at least one byte and the 16-byte tag */
#define LINK_ID_BYTES 16

/* The {link_id} path segment: 16 bytes in base64url without padding (22 characters). */
static bool link_id_in(const char *s, uint8_t out[LINK_ID_BYTES])
{
    size_t got = 0;
    const char *end = NULL;
    return strlen(s) == 22 &&
           sodium_base642bin(out, LINK_ID_BYTES, s, 22, NULL, &got, &end, B64_VARIANT) == 0 &&
           got == LINK_ID_BYTES && *end == 0;
}

void h_keys_link_put(api_req *r, store_t *st)
{
    st_link l = {0};
    if (!link_id_in(r->param, l.link_id))
        return api_error(r, 404, "not_found",
                         "A link id is 16 bytes in base64url (22 characters).");
    if (!r->in) return api_error(r, 400, "invalid_json", "Send {to, eph, nonce, c}.");
    const char *to = json_string_value(json_object_get(r->in, "to"));
    if (!to || !id_valid(to, "d_"))
        return api_error(r, 400, "invalid_request", "to must be a device id (d_...).");
    if (!x25519_in(json_object_get(r->in, "eph"), l.eph) ||
        b64_in(json_object_get(r->in, "nonce"), l.nonce, sizeof l.nonce, sizeof l.nonce) !=
            (long)sizeof l.nonce)
        return api_error(r, 400, "invalid_request",
                         "eph must be an X25519 public key (32 bytes) and nonce 24 bytes, both "
                         "in base64url without padding.");
    l.c = malloc(LINK_C_MAX);
    if (!l.c) abort();
    long n = b64_in(json_object_get(r->in, "c"), l.c, LINK_C_MIN, LINK_C_MAX);
    if (n < 0) {
        free(l.c);
        return api_error(r, 400, "invalid_request",
                         "c must be 17 to 65536 bytes in base64url without padding.");
    }
    l.c_len = (size_t)n;
    st_device d;
    int rc = store_device_get(st, to, &d);
    if (rc == ST_OK && strcmp(d.user_id, r->user) != 0) rc = ST_NOTFOUND;
    if (rc == ST_OK && strcmp(to, r->dev) == 0) {
        free(l.c);
        return api_error(r, 400, "invalid_request", "A device cannot link itself.");
    }
    if (rc == ST_NOTFOUND) {
        free(l.c);
        return api_error(r, 404, "no_such_device", "to names no device of this account.");
    }
    if (rc != ST_OK) {
        free(l.c);
        return;
    }
    snprintf(l.user, sizeof l.user, "%s", r->user);
    snprintf(l.to_dev, sizeof l.to_dev, "%s", to);
    int64_t now = now_ms();
    l.created_at = now;
    rc = store_key_link_put(st, &l, now - LINK_TTL_MS);
    free(l.c);
    if (rc == ST_CONFLICT)
        return api_error(r, 409, "link_exists", "This link id is taken: start the link again.");
    if (rc == ST_NOTFOUND)
        return api_error(r, 404, "no_such_device", "to names no device of this account.");
    if (rc != ST_OK) return;
    r->status = 204;
}

void h_keys_link_get(api_req *r, store_t *st)
{
    uint8_t id[LINK_ID_BYTES];
    if (!link_id_in(r->param, id))
        return api_error(r, 404, "not_found", "There is no link envelope for this device here.");
    st_link l;
    int rc = store_key_link_take(st, id, r->user, r->dev, now_ms() - LINK_TTL_MS, &l);
    if (rc == ST_NOTFOUND)
        return api_error(r, 404, "not_found", "There is no link envelope for this device here.");
    if (rc != ST_OK) return;
    char *c64 = malloc(sodium_base64_ENCODED_LEN(l.c_len, B64_VARIANT));
    if (!c64) abort();
    sodium_bin2base64(c64, sodium_base64_ENCODED_LEN(l.c_len, B64_VARIANT), l.c, l.c_len,
                      B64_VARIANT);
    char eph[64], nonce[64];
    sodium_bin2base64(eph, sizeof eph, l.eph, sizeof l.eph, B64_VARIANT);
    sodium_bin2base64(nonce, sizeof nonce, l.nonce, sizeof l.nonce, B64_VARIANT);
    api_ok(r, 200,
           json_pack("{s:s, s:s, s:s, s:s, s:I}", "to", l.to_dev, "eph", eph, "nonce", nonce, "c",
                     c64, "created_at", (json_int_t)l.created_at));
    free(c64);
    free(l.c);
}
