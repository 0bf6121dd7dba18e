/* e2ec.c: end-to-end encryption in libparley: the keys in the device store, 1:1 sending and
 * receiving over the e2e core (e2e/e2e.h), safety numbers. Design: E2E.md §4-§7.1, §9, §12.
 *
 * Key material lives in the table e2e_keys(name, value), each value sealed with
 * crypto_secretbox under a per-device local key kept in the file store_path + ".key" (0600,
 * made on first use). Names: "aik" (pl_sign_pair), "dik" (pl_dh_pair), "dcert", "spk"
 * (pl_prekey), "opk:<id>" (pl_prekey), "s:<user>:<device>" (a serialized session),
 * "pin:<user>" (32-byte AIK || verified byte), "published" (bundle uploaded).
 * Built: one session per peer device, TOFU pinning, OPK refill, the device_list_stale rebuild of
 * a direct message. Not built: linking devices and fan-out to own devices, SPK rotation, the SPK
 * replay cache, Sesame's inactive sessions, Sender Keys.
 */
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client/e2e/e2e.h"
#include "client/internal.h"
#include "common/util.h"

#define N_OPKS 100

/* ------------------------------------------------------------------------- sealed storage */

static int local_key(const char *store_path, unsigned char key[32])
{
    char path[4096];
    snprintf(path, sizeof path, "%s.key", store_path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t k = read(fd, key, 32);
        close(fd);
        return k == 32 ? 0 : PL_ESTORE;
    }
    if (errno != ENOENT) return PL_ESTORE;
    randombytes_buf(key, 32);
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) return errno == EEXIST ? local_key(store_path, key) : PL_ESTORE;
    ssize_t k = write(fd, key, 32);
    if (fsync(fd) != 0) k = -1;
    close(fd);
    return k == 32 ? 0 : PL_ESTORE;
}

static int kput(sqlite3 *db, const char *store_path, const char *name, const void *p, size_t n)
{
    unsigned char lk[32];
    if (local_key(store_path, lk) != 0) return PL_ESTORE;
    size_t cl = crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES + n;
    unsigned char *c = malloc(cl);
    if (!c) return PL_ENOMEM;
    randombytes_buf(c, crypto_secretbox_NONCEBYTES);
    crypto_secretbox_easy(c + crypto_secretbox_NONCEBYTES, p, n, c, lk);
    sodium_memzero(lk, sizeof lk);
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO e2e_keys(name, value) VALUES(?, ?)", -1,
                                &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        sqlite3_bind_blob(st, 2, c, (int)cl, SQLITE_STATIC);
        rc = sqlite3_step(st);
    }
    sqlite3_finalize(st);
    free(c);
    return rc == SQLITE_DONE ? 0 : PL_ESTORE;
}

/* *out (malloc'd, sodium_free-safe to wipe) gets the plaintext; PL_ENOTFOUND when absent. */
static int kget(sqlite3 *db, const char *store_path, const char *name, unsigned char **out,
                size_t *n)
{
    *out = NULL;
    *n = 0;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT value FROM e2e_keys WHERE name = ?", -1, &st, NULL) !=
        SQLITE_OK)
        return PL_ESTORE;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st), err = 0;
    if (rc == SQLITE_DONE) {
        err = PL_ENOTFOUND;
    } else if (rc != SQLITE_ROW) {
        err = PL_ESTORE;
    } else {
        const unsigned char *c = sqlite3_column_blob(st, 0);
        size_t cl = (size_t)sqlite3_column_bytes(st, 0);
        unsigned char lk[32];
        if (cl < crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES ||
            local_key(store_path, lk) != 0) {
            err = PL_ESTORE;
        } else {
            *n = cl - crypto_secretbox_NONCEBYTES - crypto_secretbox_MACBYTES;
            *out = malloc(*n ? *n : 1);
            if (!*out)
                err = PL_ENOMEM;
            else if (crypto_secretbox_open_easy(*out, c + crypto_secretbox_NONCEBYTES,
                                                cl - crypto_secretbox_NONCEBYTES, c, lk) != 0)
                err = PL_ESTORE;
            sodium_memzero(lk, sizeof lk);
        }
    }
    sqlite3_finalize(st);
    if (err) {
        free(*out);
        *out = NULL;
    }
    return err;
}

static void kfree(unsigned char *p, size_t n)
{
    if (p) sodium_memzero(p, n);
    free(p);
}

/* A fixed-size value. */
static int kget_fixed(sqlite3 *db, const char *sp, const char *name, void *out, size_t size)
{
    unsigned char *p;
    size_t n;
    int err = kget(db, sp, name, &p, &n);
    if (err) return err;
    if (n != size) err = PL_ESTORE;
    if (!err) memcpy(out, p, size);
    kfree(p, n);
    return err;
}

static int kdel(sqlite3 *db, const char *name)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "DELETE FROM e2e_keys WHERE name = ?", -1, &st, NULL) != SQLITE_OK)
        return PL_ESTORE;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : PL_ESTORE;
}

static void b64(char *out, size_t cap, const unsigned char *p, size_t n)
{
    sodium_bin2base64(out, cap, p, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

static int unb64(unsigned char *out, size_t cap, size_t *n, const char *s)
{
    if (!s) return -1;
    const char *end;
    return sodium_base642bin(out, cap, s, strlen(s), NULL, n, &end,
                             sodium_base64_VARIANT_URLSAFE_NO_PADDING) == 0 &&
                   *end == 0
               ? 0
               : -1;
}

static int unb64_fixed(unsigned char *out, size_t size, const char *s)
{
    size_t n;
    return unb64(out, size, &n, s) == 0 && n == size ? 0 : -1;
}

/* ---------------------------------------------------------------------------- this device */

static int self_load(sqlite3 *db, const char *sp, pl_e2e_self *self)
{
    pl_sign_pair aik;
    pl_dh_pair dik;
    unsigned char *dc;
    size_t dn;
    int err = kget_fixed(db, sp, "aik", &aik, sizeof aik);
    if (!err) err = kget_fixed(db, sp, "dik", &dik, sizeof dik);
    if (!err) err = kget(db, sp, "dcert", &dc, &dn);
    if (err) {
        sodium_memzero(&aik, sizeof aik);
        sodium_memzero(&dik, sizeof dik);
        return err;
    }
    err = pl_e2e_self_load(self, aik.pk, &dik, dc, dn) == 0 ? 0 : PL_ESTORE;
    kfree(dc, dn);
    sodium_memzero(&aik, sizeof aik);
    sodium_memzero(&dik, sizeof dik);
    return err;
}

static json_t *opks_json(const pl_prekey *opks, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) {
        char pub[64];
        b64(pub, sizeof pub, opks[i].kp.pk, 32);
        json_array_append_new(a, json_pack("{s:I, s:s}", "id", (json_int_t)opks[i].id, "pub", pub));
    }
    return a;
}

/* n new OPKs stored (inside the caller's transaction) from the meta counter on. */
static int opks_make(sqlite3 *db, const char *sp, pl_prekey *opks, size_t n)
{
    int64_t first = pl__meta_get_int(db, "e2e_next_opk");
    if (first <= 0) first = 1;
    if (pl_opk_generate(opks, n, (uint32_t)first) != 0) return PL_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof name, "opk:%u", (unsigned)opks[i].id);
        if (kput(db, sp, name, &opks[i], sizeof opks[i]) != 0) return PL_ESTORE;
    }
    return pl__meta_set_int(db, "e2e_next_opk", first + (int64_t)n) ? PL_ESTORE : 0;
}

int pl_e2e_enable(pl_client *c)
{
    if (!c->token) return pl__fail(c, PL_ENOSESSION, NULL);
    if (pl_e2e_init() != 0) return pl__fail(c, PL_ENOMEM, "the crypto library failed");
    const char *sp = c->store_path;
    unsigned char *pub;
    size_t pn;
    if (kget(c->db, sp, "published", &pub, &pn) == 0) {
        kfree(pub, pn);
        return 0;
    }
    pl_sign_pair aik;
    int err = kget_fixed(c->db, sp, "aik", &aik, sizeof aik);
    pl_e2e_self self;
    pl_prekey spk, *opks = calloc(N_OPKS, sizeof *opks);
    if (!opks) return pl__fail(c, PL_ENOMEM, NULL);
    bool fresh = err == PL_ENOTFOUND;
    if (fresh) {
        /* The identity goes to the server first: a user whose AIK another device made cannot
         * use a new one (linking devices is not built). */
        err = pl_sign_generate(&aik) != 0 ? PL_ENOMEM : 0;
        char a[64];
        b64(a, sizeof a, aik.pk, 32);
        json_t *body = json_pack("{s:s}", "aik", a);
        long status = 0;
        json_t *resp = NULL;
        if (!err) err = pl__rest(c, "PUT", "/v1/keys/identity", c->token, body, &status, &resp);
        json_decref(body);
        json_decref(resp);
        if (err) {
            free(opks);
            sodium_memzero(&aik, sizeof aik);
            if (status == 409)
                return pl__fail(c, PL_EREFUSED,
                                "this account's identity key was made on another device; "
                                "linking devices is not built yet");
            return err;
        }
        err = pl_e2e_self_create(&self, &aik, c->sess.user, c->sess.device, (uint64_t)now_ms()) ||
                      pl_prekey_generate(&spk, 1)
                  ? PL_ENOMEM
                  : 0;
        if (!err && pl__store_begin(c->db) != 0) err = PL_ESTORE;
        if (!err) {
            if (kput(c->db, sp, "aik", &aik, sizeof aik) ||
                kput(c->db, sp, "dik", &self.dik, sizeof self.dik) ||
                kput(c->db, sp, "dcert", self.dcert, self.dcert_len) ||
                kput(c->db, sp, "spk", &spk, sizeof spk) || opks_make(c->db, sp, opks, N_OPKS))
                err = PL_ESTORE;
            if (err || pl__store_commit(c->db) != 0) {
                pl__store_rollback(c->db);
                err = PL_ESTORE;
            }
        }
    } else if (!err) {
        /* keys made, bundle not published yet: publish again with what is stored */
        err = self_load(c->db, sp, &self);
        if (!err) err = kget_fixed(c->db, sp, "spk", &spk, sizeof spk);
        fresh = false;
    }
    if (err) {
        free(opks);
        sodium_memzero(&aik, sizeof aik);
        return pl__fail(c, err, "the end-to-end keys could not be made or stored");
    }
    unsigned char sig[64];
    pl_spk_sign(sig, &aik, c->sess.user, c->sess.device, spk.id, spk.kp.pk);
    char dc[PL_DCERT_MAX * 2], sp_pub[64], sp_sig[100];
    b64(dc, sizeof dc, self.dcert, self.dcert_len);
    b64(sp_pub, sizeof sp_pub, spk.kp.pk, 32);
    b64(sp_sig, sizeof sp_sig, sig, 64);
    json_t *body = json_pack("{s:s, s:{s:I, s:s, s:s}}", "dcert", dc, "spk", "id",
                             (json_int_t)spk.id, "pub", sp_pub, "sig", sp_sig);
    if (fresh) json_object_set_new(body, "opks", opks_json(opks, N_OPKS));
    long status = 0;
    json_t *resp = NULL;
    err = pl__rest(c, "PUT", "/v1/keys/bundle", c->token, body, &status, &resp);
    json_decref(body);
    json_decref(resp);
    sodium_memzero(opks, N_OPKS * sizeof *opks);
    free(opks);
    sodium_memzero(&aik, sizeof aik);
    sodium_memzero(&spk, sizeof spk);
    pl_e2e_self_wipe(&self);
    if (err) return err;
    unsigned char one = 1;
    if (kput(c->db, sp, "published", &one, 1) != 0) return pl__fail(c, PL_ESTORE, NULL);
    c->errmsg[0] = 0;
    return 0;
}

int pl__e2e_refill(pl_client *c, sqlite3 *db, const char *base, const char *token)
{
    pl_prekey *opks = calloc(N_OPKS, sizeof *opks);
    if (!opks) return PL_ENOMEM;
    int err = pl__store_begin(db) ? PL_ESTORE : 0;
    if (!err) {
        err = opks_make(db, c->store_path, opks, N_OPKS);
        if (err || pl__store_commit(db) != 0) {
            pl__store_rollback(db);
            err = PL_ESTORE;
        }
    }
    if (!err) {
        json_t *body = json_pack("{s:o}", "opks", opks_json(opks, N_OPKS));
        long status = 0;
        json_t *resp = NULL;
        err = pl__rest_at(c, base, "POST", "/v1/keys/prekeys", token, body, &status, &resp);
        json_decref(body);
        json_decref(resp);
    }
    sodium_memzero(opks, N_OPKS * sizeof *opks);
    free(opks);
    return err;
}

/* ------------------------------------------------------------------------------------ pins */

typedef struct pin {
    unsigned char aik[32];
    unsigned char verified;
} pin;

static int pin_get(sqlite3 *db, const char *sp, const char *user, pin *p)
{
    char name[128];
    snprintf(name, sizeof name, "pin:%s", user);
    return kget_fixed(db, sp, name, p, sizeof *p);
}

static int pin_put(sqlite3 *db, const char *sp, const char *user, const pin *p)
{
    char name[128];
    snprintf(name, sizeof name, "pin:%s", user);
    return kput(db, sp, name, p, sizeof *p);
}

bool pl_e2e_with(pl_client *c, const char *user)
{
    pin p;
    return user && pin_get(c->db, c->store_path, user, &p) == 0;
}

int pl_safety_number_get(pl_client *c, const char *user, char out[PL_SAFETY_NUMBER_LEN + 1])
{
    out[0] = 0;
    if (!user) return pl__fail(c, PL_EINVAL, NULL);
    pin p;
    pl_sign_pair aik;
    int err = pin_get(c->db, c->store_path, user, &p);
    if (err) return pl__fail(c, err, "no identity key is known for this user yet");
    err = kget_fixed(c->db, c->store_path, "aik", &aik, sizeof aik);
    if (err) return pl__fail(c, err, "this device has no identity key");
    char a[PL_FP_DIGITS + 1], b[PL_FP_DIGITS + 1];
    err = pl_fingerprint_user(NULL, a, aik.pk, c->sess.user) ||
          pl_fingerprint_user(NULL, b, p.aik, user) || pl_safety_number(out, a, b);
    sodium_memzero(&aik, sizeof aik);
    return err ? pl__fail(c, PL_EINVAL, "the safety number could not be computed") : 0;
}

int pl_contact_verified(pl_client *c, const char *user, bool *verified)
{
    pin p;
    int err = user ? pin_get(c->db, c->store_path, user, &p) : PL_EINVAL;
    if (err) return pl__fail(c, err, NULL);
    if (verified) *verified = p.verified == 1;
    return 0;
}

int pl_contact_set_verified(pl_client *c, const char *user, bool verified)
{
    pin p;
    int err = user ? pin_get(c->db, c->store_path, user, &p) : PL_EINVAL;
    if (err) return pl__fail(c, err, NULL);
    p.verified = verified ? 1 : 0;
    return pin_put(c->db, c->store_path, user, &p) ? pl__fail(c, PL_ESTORE, NULL) : 0;
}

/* ----------------------------------------------------------------------------------- send */

static int bundle_from_json(pl_bundle *b, json_t *j)
{
    memset(b, 0, sizeof *b);
    const char *u = json_string_value(json_object_get(j, "user"));
    const char *d = json_string_value(json_object_get(j, "device"));
    json_t *spk = json_object_get(j, "spk"), *opk = json_object_get(j, "opk");
    if (!u || !d || strlen(u) > PL_E2E_ID_MAX || strlen(d) > PL_E2E_ID_MAX) return -1;
    snprintf(b->user, sizeof b->user, "%s", u);
    snprintf(b->device, sizeof b->device, "%s", d);
    if (unb64_fixed(b->aik, 32, json_string_value(json_object_get(j, "aik"))) ||
        unb64(b->dcert, sizeof b->dcert, &b->dcert_len,
              json_string_value(json_object_get(j, "dcert"))) ||
        unb64_fixed(b->spk_pub, 32, json_string_value(json_object_get(spk, "pub"))) ||
        unb64_fixed(b->spk_sig, 64, json_string_value(json_object_get(spk, "sig"))))
        return -1;
    b->spk_id = (uint32_t)json_integer_value(json_object_get(spk, "id"));
    b->opk_id = PL_OPK_NONE;
    if (json_is_object(opk)) {
        b->opk_id = (uint32_t)json_integer_value(json_object_get(opk, "id"));
        if (unb64_fixed(b->opk_pub, 32, json_string_value(json_object_get(opk, "pub")))) return -1;
    }
    return 0;
}

static int session_load(sqlite3 *db, const char *sp, const char *user, const char *dev,
                        pl_e2e_session **out)
{
    char name[160];
    snprintf(name, sizeof name, "s:%s:%s", user, dev);
    unsigned char *p;
    size_t n;
    int err = kget(db, sp, name, &p, &n);
    if (err) return err;
    err = pl_e2e_session_deserialize(out, p, n) == 0 ? 0 : PL_ESTORE;
    kfree(p, n);
    return err;
}

static int session_save(sqlite3 *db, const char *sp, const char *user, const char *dev,
                        const pl_e2e_session *s)
{
    char name[160];
    snprintf(name, sizeof name, "s:%s:%s", user, dev);
    size_t cap = pl_e2e_session_serialized_size(s), n;
    unsigned char *p = malloc(cap);
    if (!p) return PL_ENOMEM;
    int err = pl_e2e_session_serialize(s, p, cap, &n) == 0 ? kput(db, sp, name, p, n) : PL_ESTORE;
    kfree(p, cap);
    return err;
}

/* The peer's devices and AIK (GET /v1/users/{u}/devices). */
static int peer_devices(pl_client *c, const char *to, unsigned char aik[32], bool *has_aik,
                        char ***devs, size_t *ndevs)
{
    char path[160];
    snprintf(path, sizeof path, "/v1/users/%s/devices", to);
    long status = 0;
    json_t *resp = NULL;
    int err = pl__rest(c, "GET", path, c->token, NULL, &status, &resp);
    *has_aik = false;
    *devs = NULL;
    *ndevs = 0;
    if (err) {
        json_decref(resp);
        return err;
    }
    const char *a = json_string_value(json_object_get(resp, "aik"));
    if (a && unb64_fixed(aik, 32, a) == 0) *has_aik = true;
    json_t *ds = json_object_get(resp, "devices");
    size_t n = json_array_size(ds);
    *devs = calloc(n + 1, sizeof **devs);
    if (!*devs) err = PL_ENOMEM;
    for (size_t i = 0; !err && i < n; i++) {
        const char *d = json_string_value(json_object_get(json_array_get(ds, i), "device"));
        if (d && ((*devs)[*ndevs] = strdup(d)) != NULL) (*ndevs)++;
    }
    json_decref(resp);
    return err;
}

/* The devices of `user` this device has a session with (names "s:<user>:<device>"). */
static int session_devices(sqlite3 *db, const char *user, char ***devs, size_t *ndevs)
{
    *devs = NULL;
    *ndevs = 0;
    char pfx[160];
    int pl = snprintf(pfx, sizeof pfx, "s:%s:", user);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT name FROM e2e_keys WHERE substr(name, 1, ?) = ?", -1, &st,
                           NULL) != SQLITE_OK)
        return PL_ESTORE;
    sqlite3_bind_int(st, 1, pl);
    sqlite3_bind_text(st, 2, pfx, -1, SQLITE_STATIC);
    size_t cap = 0;
    int err = 0;
    while (!err && sqlite3_step(st) == SQLITE_ROW) {
        if (*ndevs + 1 >= cap) {
            cap = cap ? cap * 2 : 8;
            char **v = realloc(*devs, cap * sizeof *v);
            if (!v) {
                err = PL_ENOMEM;
                break;
            }
            *devs = v;
        }
        char *d = strdup((const char *)sqlite3_column_text(st, 0) + pl);
        if (!d)
            err = PL_ENOMEM;
        else
            (*devs)[(*ndevs)++] = d;
    }
    sqlite3_finalize(st);
    return err;
}

static void strs_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++) free(v[i]);
    free(v);
}

/* One REST call from the application thread (base NULL) or the I/O thread (base given). */
static int rest(pl_client *c, const char *base, const char *method, const char *path,
                const char *token, json_t *body, long *status, json_t **resp)
{
    return base ? pl__rest_at(c, base, method, path, token, body, status, resp)
                : pl__rest(c, method, path, token, body, status, resp);
}

/* Sessions with the devices devs of `to`: stored ones, else new ones from claimed bundles
 * verified against pin_aik. ss[i] stays NULL for a device the server no longer has. */
static int sessions_get(pl_client *c, sqlite3 *db, const char *base, const char *token,
                        const pl_e2e_self *self, const unsigned char pin_aik[32], const char *to,
                        char **devs, size_t ndevs, pl_e2e_session **ss)
{
    int err = 0;
    json_t *claim = json_array();
    for (size_t i = 0; i < ndevs; i++)
        if (session_load(db, c->store_path, to, devs[i], &ss[i]) != 0)
            json_array_append_new(claim, json_pack("{s:s, s:s}", "user", to, "device", devs[i]));
    if (json_array_size(claim) > 0) {
        json_t *req = json_pack("{s:O}", "devices", claim), *resp = NULL;
        long status = 0;
        err = rest(c, base, "POST", "/v1/keys/claim", token, req, &status, &resp);
        json_decref(req);
        json_t *bs = json_object_get(resp, "bundles");
        for (size_t k = 0; !err && k < json_array_size(bs); k++) {
            pl_bundle b;
            if (bundle_from_json(&b, json_array_get(bs, k)) != 0) continue;
            for (size_t i = 0; i < ndevs; i++)
                if (!ss[i] && strcmp(devs[i], b.device) == 0 && strcmp(b.user, to) == 0 &&
                    pl_x3dh_initiate(&ss[i], self, &b, pin_aik) != 0)
                    err = base ? PL_EREFUSED
                               : pl__fail(c, PL_EREFUSED,
                                          "the peer device's keys did not verify (DCERT or SPK)");
        }
        json_decref(resp);
    }
    json_decref(claim);
    return err;
}

/* The CONTENT payload (E2E.md §6), malloc'd; NULL on failure. */
static char *content_json(const char *to, const char *cmid, int64_t ts, const char *kind,
                          const char *body)
{
    json_t *jb = json_loads(body, 0, NULL);
    json_t *content = json_pack("{s:s, s:s, s:I, s:s, s:o}", "to", to, "cmid", cmid, "ts",
                                (json_int_t)ts, "kind", kind, "body", jb);
    char *pt = content ? json_dumps(content, JSON_COMPACT) : NULL;
    json_decref(content);
    return pt;
}

/* Encrypts pt on every session of ss (advancing it) into {u, d, c} entries of out. */
static int entries_add(pl_client *c, pl_e2e_session **ss, char **devs, size_t ndevs, const char *to,
                       const char *pt, json_t *out)
{
    int err = 0;
    for (size_t i = 0; !err && i < ndevs; i++) {
        if (!ss[i]) continue; /* gone since the list: the server answers device_list_stale */
        size_t cap = pl_e2e_session_encrypt_size(ss[i], strlen(pt)), n;
        unsigned char *ct = malloc(cap);
        char *cb = ct ? malloc(sodium_base64_ENCODED_LEN(cap, 7)) : NULL;
        if (!cb || pl_e2e_session_encrypt(ss[i], PL_CT_CONTENT, (const unsigned char *)pt,
                                          strlen(pt), ct, cap, &n) != 0) {
            err = c ? pl__fail(c, PL_ENOMEM, "the message could not be encrypted") : PL_ENOMEM;
        } else {
            b64(cb, sodium_base64_ENCODED_LEN(cap, 7), ct, n);
            json_array_append_new(out,
                                  json_pack("{s:s, s:s, s:s}", "u", to, "d", devs[i], "c", cb));
        }
        free(ct);
        free(cb);
    }
    return err;
}

int pl__e2e_send(pl_client *c, const char *to, const char *conv, const char *kind, const char *body,
                 int64_t reply_to, pl_msg *out, bool *handled)
{
    *handled = false;
    const char *sp = c->store_path;
    pl_e2e_self self;
    if (strncmp(to, "u_", 2) != 0 || strcmp(kind, "e2e") == 0) return 0;
    if (self_load(c->db, sp, &self) != 0) return 0; /* no identity: not encrypted */
    unsigned char aik[32];
    bool has_aik;
    char **devs;
    size_t ndevs;
    pin p;
    bool pinned = pin_get(c->db, sp, to, &p) == 0;
    int err = peer_devices(c, to, aik, &has_aik, &devs, &ndevs);
    if ((err == PL_ENET || err == PL_ETIMEDOUT) && pinned) {
        /* offline: encrypt to the devices this device has sessions with, so that the message
         * waits in the outbox as any other; a changed list makes the server refuse it */
        strs_free(devs, ndevs);
        err = session_devices(c->db, to, &devs, &ndevs);
        if (!err && ndevs == 0) err = PL_ENET;
        if (!err) {
            memcpy(aik, p.aik, 32);
            has_aik = true;
        }
    }
    if (err || !has_aik) {
        pl_e2e_self_wipe(&self);
        strs_free(devs, ndevs);
        if (pinned) { /* encrypted for good: never fall back to plaintext */
            *handled = true;
            return err ? err : pl__fail(c, PL_EREFUSED, "the peer's identity key is gone");
        }
        if (err) c->errmsg[0] = 0;
        return 0; /* the server refuses plaintext where both have keys */
    }
    *handled = true;
    if (pinned && sodium_memcmp(p.aik, aik, 32) != 0) {
        bool was_verified = p.verified == 1;
        memcpy(p.aik, aik, 32);
        p.verified = was_verified ? 2 : 0; /* 2: verified before, changed since */
        pin_put(c->db, sp, to, &p);
        pl_event ev = {.kind = PL_EV_IDENTITY_CHANGED};
        snprintf(ev.user, sizeof ev.user, "%s", to);
        pl__ev_push(c, &ev);
        /* the sessions with the old key are useless */
        sqlite3_stmt *st = NULL;
        char pat[160];
        snprintf(pat, sizeof pat, "s:%s:%%", to);
        if (sqlite3_prepare_v2(c->db, "DELETE FROM e2e_keys WHERE name LIKE ?", -1, &st, NULL) ==
            SQLITE_OK) {
            sqlite3_bind_text(st, 1, pat, -1, SQLITE_STATIC);
            sqlite3_step(st);
        }
        sqlite3_finalize(st);
    } else if (!pinned) {
        memcpy(p.aik, aik, 32);
        p.verified = 0;
        pin_put(c->db, sp, to, &p);
    }
    if (p.verified == 2) {
        pl_e2e_self_wipe(&self);
        strs_free(devs, ndevs);
        return pl__fail(c, PL_EUNVERIFIED, NULL);
    }
    pl_e2e_session **ss = calloc(ndevs + 1, sizeof *ss);
    if (!ss) err = PL_ENOMEM;
    if (!err) err = sessions_get(c, c->db, NULL, c->token, &self, p.aik, to, devs, ndevs, ss);
    char cmid[ID_MAX];
    id_new(cmid, "c_");
    json_t *wire = json_pack("{s:i, s:b, s:[]}", "v", 1, "ctl", 0, "devs");
    char *pt = content_json(to, cmid, now_ms(), kind, body);
    if (!pt) err = PL_ENOMEM;
    if (!err) err = entries_add(c, ss, devs, ndevs, to, pt, json_object_get(wire, "devs"));
    if (pt) {
        sodium_memzero(pt, strlen(pt));
        free(pt);
    }
    char *wtext = err ? NULL : json_dumps(wire, JSON_COMPACT);
    json_decref(wire);
    if (!err && !wtext) err = PL_ENOMEM;
    /* The ratchet states and the outbox row in one transaction, before anything is sent. */
    int64_t id = 0;
    if (!err) {
        if (pl__store_begin(c->db) != 0) {
            err = PL_ESTORE;
        } else {
            for (size_t i = 0; !err && i < ndevs; i++)
                if (ss[i] && session_save(c->db, sp, to, devs[i], ss[i]) != 0) err = PL_ESTORE;
            if (!err)
                err = pl__store_outbox_insert(c->db, c->sess.user, c->sess.device, to, conv, kind,
                                              body, reply_to, cmid, wtext, &id);
            if (err || pl__store_commit(c->db) != 0) {
                pl__store_rollback(c->db);
                err = pl__fail(c, PL_ESTORE, NULL);
            }
        }
    }
    free(wtext);
    for (size_t i = 0; ss && i < ndevs; i++) pl_e2e_session_free(ss[i]);
    free(ss);
    strs_free(devs, ndevs);
    pl_e2e_self_wipe(&self);
    if (err) return err;
    return out ? pl__store_msg_get(c->db, id, out) : 0;
}

/* Replaces the e2e body of a pending outbox row. */
static int wire_set(sqlite3 *db, int64_t local_id, const char *wire)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "UPDATE messages SET wire = ? WHERE local_id = ? AND state = 0", -1,
                           &st, NULL) != SQLITE_OK)
        return PL_ESTORE;
    sqlite3_bind_text(st, 1, wire, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, local_id);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE && sqlite3_changes(db) == 1 ? 0 : PL_ESTORE;
}

int pl__e2e_rebuild(pl_client *c, sqlite3 *db, const char *base, const char *token, const char *me,
                    int64_t local_id, json_t *devices)
{
    const char *sp = c->store_path;
    pl_msg m;
    if (pl__store_msg_get(db, local_id, &m) != 0) return PL_ESTORE;
    char *wtext = pl__store_wire(db, local_id);
    json_t *wire = wtext ? json_loads(wtext, 0, NULL) : NULL;
    free(wtext);
    wtext = NULL;
    pl_e2e_self self;
    bool have_self = false;
    pin p;
    int err = 0;
    json_t *mine = json_object_get(devices, me), *theirs = json_object_get(devices, m.to);
    if (!wire || !json_is_array(theirs) || json_object_size(devices) != 2 ||
        json_array_size(mine) != 0)
        err = PL_EREFUSED; /* only a direct conversation with no other own device is built */
    else if (pin_get(db, sp, m.to, &p) != 0)
        err = PL_EREFUSED;
    else if (self_load(db, sp, &self) != 0)
        err = PL_ESTORE;
    else
        have_self = true;
    /* entries of devices still listed stay as they are (their ratchet step is committed) */
    json_t *kept = json_array(), *old = json_object_get(wire, "devs");
    size_t n = json_array_size(theirs), nnew = 0;
    char **devs = calloc(n + 1, sizeof *devs);
    if (!devs) err = PL_ENOMEM;
    for (size_t i = 0; !err && i < n; i++) {
        const char *d = json_string_value(json_array_get(theirs, i));
        bool found = false;
        for (size_t k = 0; d && k < json_array_size(old); k++) {
            json_t *e = json_array_get(old, k);
            if (strcmp(json_string_value(json_object_get(e, "u")), m.to) == 0 &&
                strcmp(json_string_value(json_object_get(e, "d")), d) == 0) {
                json_array_append(kept, e);
                found = true;
            }
        }
        if (d && !found && (devs[nnew] = strdup(d)) != NULL) nnew++;
    }
    pl_e2e_session **ss = calloc(nnew + 1, sizeof *ss);
    if (!err && !ss) err = PL_ENOMEM;
    if (!err) err = sessions_get(c, db, base, token, &self, p.aik, m.to, devs, nnew, ss);
    char *pt = err ? NULL : content_json(m.to, m.cmid, m.ts, m.kind, m.body);
    if (!err && !pt) err = PL_ENOMEM;
    if (!err) err = entries_add(NULL, ss, devs, nnew, m.to, pt, kept);
    if (pt) {
        sodium_memzero(pt, strlen(pt));
        free(pt);
    }
    if (!err) {
        json_object_set(wire, "devs", kept);
        wtext = json_dumps(wire, JSON_COMPACT);
        if (!wtext) err = PL_ENOMEM;
    }
    if (!err) {
        if (pl__store_begin(db) != 0) {
            err = PL_ESTORE;
        } else {
            for (size_t i = 0; !err && i < nnew; i++)
                if (ss[i] && session_save(db, sp, m.to, devs[i], ss[i]) != 0) err = PL_ESTORE;
            if (!err) err = wire_set(db, local_id, wtext);
            if (err || pl__store_commit(db) != 0) {
                pl__store_rollback(db);
                err = PL_ESTORE;
            }
        }
    }
    free(wtext);
    for (size_t i = 0; ss && i < nnew; i++) pl_e2e_session_free(ss[i]);
    free(ss);
    strs_free(devs, nnew);
    json_decref(kept);
    json_decref(wire);
    if (have_self) pl_e2e_self_wipe(&self);
    pl_msg_clear(&m);
    return err;
}

/* -------------------------------------------------------------------------------- receive */

static json_t *undecryptable(json_t *f, const char *why)
{
    json_t *g = json_deep_copy(f);
    char text[256];
    snprintf(text, sizeof text, "could not decrypt this message (%s)", why);
    json_object_set_new(g, "kind", json_string("undecryptable"));
    json_object_set_new(g, "body", json_pack("{s:s}", "text", text));
    return g;
}

json_t *pl__e2e_receive(pl_client *c, sqlite3 *db, const char *me, json_t *f, bool *changed_aik)
{
    *changed_aik = false;
    const char *sp = c->store_path;
    const char *from = json_string_value(json_object_get(f, "from"));
    const char *dev = json_string_value(json_object_get(f, "dev"));
    const char *cmid = json_string_value(json_object_get(f, "cmid"));
    const char *conv = json_string_value(json_object_get(f, "conv"));
    json_t *body = json_object_get(f, "body");
    if (!from || !dev || !cmid || !conv) return NULL;
    if (json_is_true(json_object_get(body, "ctl"))) return NULL; /* controls: not shown */
    const char *cs = json_string_value(json_object_get(body, "c"));
    if (!cs) return undecryptable(f, "it was not encrypted for this device");
    size_t cap = strlen(cs), len;
    unsigned char *ct = malloc(cap + 1);
    unsigned char *pt = malloc(PL_E2E_PAYLOAD_MAX + 1);
    pl_e2e_self self;
    bool have_self = false;
    pl_e2e_session *s = NULL;
    const char *why = NULL;
    pl_e2e_out o = {.buf = pt, .cap = PL_E2E_PAYLOAD_MAX};
    int r = 0;
    if (!ct || !pt) {
        why = "out of memory";
    } else if (unb64(ct, cap + 1, &len, cs) != 0) {
        why = "malformed ciphertext";
    } else if (self_load(db, sp, &self) != 0) {
        why = "this device has no keys";
    } else {
        have_self = true;
        int type = pl_e2e_msg_type(ct, len);
        bool have = session_load(db, sp, from, dev, &s) == 0;
        pl_prekey_msg pm;
        if (type == PL_WIRE_PREKEY && (r = pl_prekey_msg_parse(&pm, ct, len)) == 0 &&
            !(have && sodium_memcmp(pm.ek_hash, pl_e2e_session_ek_hash(s), 32) == 0)) {
            pin p;
            bool pinned = pin_get(db, sp, from, &p) == 0;
            if (pinned && sodium_memcmp(p.aik, pm.aik, 32) != 0) {
                /* a new identity key: re-pin (a verified contact must be verified again) */
                *changed_aik = true;
                p.verified = p.verified == 1 ? 2 : 0;
            } else if (!pinned) {
                p.verified = 0;
            }
            memcpy(p.aik, pm.aik, 32);
            pl_prekey spk, opk;
            bool have_spk = kget_fixed(db, sp, "spk", &spk, sizeof spk) == 0 && spk.id == pm.spk_id;
            char oname[32];
            snprintf(oname, sizeof oname, "opk:%u", (unsigned)pm.opk_id);
            bool have_opk =
                pm.opk_id != PL_OPK_NONE && kget_fixed(db, sp, oname, &opk, sizeof opk) == 0;
            pl_respond_keys k = {.pinned_aik = p.aik,
                                 .from_user = from,
                                 .from_dev = dev,
                                 .spk = have_spk ? &spk : NULL,
                                 .opk = have_opk ? &opk : NULL};
            pl_e2e_session *ns = NULL;
            r = pl_x3dh_respond(&ns, &self, &k, ct, len, (uint64_t)now_ms(), &o);
            sodium_memzero(&spk, sizeof spk);
            sodium_memzero(&opk, sizeof opk);
            if (r == 0) {
                pl_e2e_session_free(s);
                s = ns;
                if (have_opk) kdel(db, oname);
                if (pin_put(db, sp, from, &p) != 0) r = PL_E2E_ENOMEM;
            } else {
                *changed_aik = false;
            }
        } else if (r == 0 && (type == PL_WIRE_PREKEY || type == PL_WIRE_MSG)) {
            r = have ? pl_e2e_session_decrypt(s, ct, len, (uint64_t)now_ms(), &o) : PL_E2E_ENOKEY;
        } else if (r == 0) {
            r = type < 0 ? type : PL_E2E_EVERSION;
        }
        if (r == 0 && session_save(db, sp, from, dev, s) != 0) r = PL_E2E_ENOMEM;
        if (r != 0) why = pl_e2e_strerror(r);
    }
    json_t *g = NULL;
    if (!why && o.ctype != PL_CT_CONTENT) {
        g = NULL; /* SKDM / RETRY: not built; the session advanced, nothing to show */
    } else if (!why) {
        json_t *content = json_loadb((const char *)pt, o.len, 0, NULL);
        const char *cto = json_string_value(json_object_get(content, "to"));
        const char *ccmid = json_string_value(json_object_get(content, "cmid"));
        const char *kind = json_string_value(json_object_get(content, "kind"));
        json_t *cbody = json_object_get(content, "body");
        if (!cto || !ccmid || !kind || !json_is_object(cbody) || strcmp(kind, "e2e") == 0) {
            g = undecryptable(f, "malformed content");
        } else if (strcmp(ccmid, cmid) != 0 ||
                   (strcmp(cto, conv) != 0 && strcmp(cto, me) != 0 && strcmp(cto, from) != 0)) {
            g = undecryptable(f, "the message was replayed from another conversation");
        } else {
            g = json_deep_copy(f);
            json_object_set_new(g, "kind", json_string(kind));
            json_object_set(g, "body", cbody);
        }
        json_decref(content);
    } else {
        g = undecryptable(f, why);
    }
    pl_e2e_session_free(s);
    if (have_self) pl_e2e_self_wipe(&self);
    if (pt) sodium_memzero(pt, PL_E2E_PAYLOAD_MAX + 1);
    free(pt);
    free(ct);
    return g;
}
