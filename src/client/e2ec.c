/* e2ec.c: end-to-end encryption in libparley: the keys in the device store, linking a new
 * device, direct and group sending and receiving over the e2e core (e2e/e2e.h), safety numbers.
 * Design: E2E.md §4-§7, §9, §10, §12; as built: docs/e2e.md and docs/client.md.
 *
 * Key material lives in the table e2e_keys(name, value), each value sealed with
 * crypto_secretbox under a per-device local key kept in the file store_path + ".key" (0600,
 * made on first use). Names: "aik" (pl_sign_pair), "dik" (pl_dh_pair), "dcert", "spk"
 * (pl_prekey), "opk:<id>" (pl_prekey), "s:<user>:<device>" (a serialized session; "si:..." the
 * inactive one a RETRY left),
 * "pin:<user>" (32-byte AIK || verified byte), "published" (bundle uploaded), "link" (link_id
 * || LK pair while this device waits to be linked), "sk:<group>" (this device's sender state),
 * "skp:<group>:<user>:<device>" (the receiving sender-key states of one device).
 * Meta keys: "e2e_unlinked" (the account has an AIK this device does not hold), "e2eg:<group>"
 * (the group is encrypted), "dmap:<conv>" (the last D(conv), for sending offline),
 * "skrot:<group>" (a member left: a new sender state before the next send).
 * Parked group messages: "park:<group>:<user>:<device>:<seq>" (JSON {seq, cmid, g, at}).
 * Signed prekeys: "spk" is the current one (made at the meta "e2e_spk_at"; "e2e_spk_unpublished"
 * while parleyd does not have it yet), "spko:<id>" a replaced one kept 30 days (replaced at the
 * meta "e2e_spko:<id>"), "spkrc:<id>" its replay cache (the ek_hash of each PREKEY_MSG without
 * an OPK that made a session, 32 bytes each), deleted with it.
 * Built: one active session per peer device (and the one inactive a RETRY leaves), TOFU pinning,
 * OPK refill, SPK rotation after 7 days and the SPK replay cache, fan-out to every device of the
 * peer and to this user's other devices, linking, Sender Keys with rotation, the device_list_stale
 * rebuild, parking of sender-key messages that arrive before their key, RETRY. Not built: Sesame's
 * inactive sessions. RETRY (E2E.md §7.3): the meta "retry:<conv>:<user>:<device>" (when the last
 * one to that device for that conversation was queued) and the sealed "rq:<conv>:<user>:<device>"
 * (one queued, not yet in the outbox); the RETRY itself is an outbox row of kind "ctl".
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

/* One REST call from the application thread (base NULL) or the I/O thread (base given). */
static int rest(pl_client *c, const char *base, const char *method, const char *path,
                const char *token, json_t *body, long *status, json_t **resp)
{
    return base ? pl__rest_at(c, base, method, path, token, body, status, resp)
                : pl__rest(c, method, path, token, body, status, resp);
}

/* The body of PUT /v1/keys/bundle: the DCERT, the SPK signed with aik, opks (n may be 0). */
static json_t *bundle_body(const pl_sign_pair *aik, const pl_e2e_self *self, const pl_prekey *spk,
                           const pl_prekey *opks, size_t n)
{
    unsigned char sig[64];
    if (pl_spk_sign(sig, aik, self->user, self->device, spk->id, spk->kp.pk) != 0) return NULL;
    char dc[PL_DCERT_MAX * 2], sp_pub[64], sp_sig[100];
    b64(dc, sizeof dc, self->dcert, self->dcert_len);
    b64(sp_pub, sizeof sp_pub, spk->kp.pk, 32);
    b64(sp_sig, sizeof sp_sig, sig, 64);
    json_t *body = json_pack("{s:s, s:{s:I, s:s, s:s}}", "dcert", dc, "spk", "id",
                             (json_int_t)spk->id, "pub", sp_pub, "sig", sp_sig);
    if (body && n > 0) json_object_set_new(body, "opks", opks_json(opks, n));
    return body;
}

/* Publishes this device's bundle (PUT /v1/keys/bundle) with opks (n may be 0) and records it. */
static int bundle_publish(pl_client *c, const pl_sign_pair *aik, const pl_e2e_self *self,
                          const pl_prekey *spk, const pl_prekey *opks, size_t n)
{
    json_t *body = bundle_body(aik, self, spk, opks, n);
    if (!body) return pl__fail(c, PL_EINVAL, "the signed prekey could not be signed");
    long status = 0;
    json_t *resp = NULL;
    int err = pl__rest(c, "PUT", "/v1/keys/bundle", c->token, body, &status, &resp);
    json_decref(body);
    json_decref(resp);
    if (err) return err;
    unsigned char one = 1;
    if (kput(c->db, c->store_path, "published", &one, 1) != 0) return pl__fail(c, PL_ESTORE, NULL);
    pl__meta_set_int(c->db, "e2e_unlinked", 0);
    c->errmsg[0] = 0;
    return 0;
}

typedef struct link_pin {
    char user[PL_E2E_ID_MAX + 1];
    pin p;
} link_pin;

/* This device's keys under aik (the account's): DIK, DCERT, SPK and 100 OPKs, stored in one
 * transaction with aik and the pins given (linking), then published. */
static int device_keys_create(pl_client *c, const pl_sign_pair *aik, const link_pin *pins,
                              size_t npins)
{
    const char *sp = c->store_path;
    pl_e2e_self self;
    pl_prekey spk, *opks = pl_e2e_secret_alloc(N_OPKS * sizeof *opks);
    if (!opks) return pl__fail(c, PL_ENOMEM, NULL);
    int err = pl_e2e_self_create(&self, aik, c->sess.user, c->sess.device, (uint64_t)now_ms()) ||
                      pl_prekey_generate(&spk, 1)
                  ? PL_ENOMEM
                  : 0;
    if (!err && pl__store_begin(c->db) != 0) err = PL_ESTORE;
    if (!err) {
        if (kput(c->db, sp, "aik", aik, sizeof *aik) ||
            kput(c->db, sp, "dik", &self.dik, sizeof self.dik) ||
            kput(c->db, sp, "dcert", self.dcert, self.dcert_len) ||
            kput(c->db, sp, "spk", &spk, sizeof spk) ||
            pl__meta_set_int(c->db, "e2e_spk_at", now_ms()) != 0 ||
            opks_make(c->db, sp, opks, N_OPKS))
            err = PL_ESTORE;
        for (size_t i = 0; !err && i < npins; i++)
            if (pin_put(c->db, sp, pins[i].user, &pins[i].p) != 0) err = PL_ESTORE;
        if (err || pl__store_commit(c->db) != 0) {
            pl__store_rollback(c->db);
            err = PL_ESTORE;
        }
    }
    if (!err)
        err = bundle_publish(c, aik, &self, &spk, opks, N_OPKS);
    else
        pl__fail(c, err, "the end-to-end keys could not be made or stored");
    pl_e2e_secret_free(opks, N_OPKS * sizeof *opks);
    sodium_memzero(&spk, sizeof spk);
    pl_e2e_self_wipe(&self);
    return err;
}

/* The account's AIK as parleyd lists it (GET /v1/users/{me}/devices); *has false for none. */
static int served_aik(pl_client *c, const char *user, unsigned char aik[32], bool *has);

static int not_linked(pl_client *c)
{
    pl__meta_set_int(c->db, "e2e_unlinked", 1);
    return pl__fail(c, PL_ENOTLINKED,
                    "this account's identity key lives on its other devices: link this device "
                    "(parley link-begin here, link-approve there, link-finish here)");
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
    if (err == PL_ENOTFOUND) {
        /* A second device of an account never makes an AIK of its own: it is linked. */
        unsigned char have[32];
        bool has = false;
        err = served_aik(c, c->sess.user, have, &has);
        if (err) return err;
        if (has) return not_linked(c);
        if (pl_sign_generate(&aik) != 0) return pl__fail(c, PL_ENOMEM, NULL);
        char a[64];
        b64(a, sizeof a, aik.pk, 32);
        json_t *body = json_pack("{s:s}", "aik", a);
        long status = 0;
        json_t *resp = NULL;
        err = pl__rest(c, "PUT", "/v1/keys/identity", c->token, body, &status, &resp);
        json_decref(body);
        json_decref(resp);
        if (err) {
            sodium_memzero(&aik, sizeof aik);
            return status == 409 ? not_linked(c) : err;
        }
        err = device_keys_create(c, &aik, NULL, 0);
        sodium_memzero(&aik, sizeof aik);
        return err;
    }
    if (err) return pl__fail(c, err, "the identity key could not be read from the store");
    pl_e2e_self self;
    pl_prekey spk;
    if (self_load(c->db, sp, &self) != 0) { /* the AIK only (an interrupted link) */
        err = device_keys_create(c, &aik, NULL, 0);
        sodium_memzero(&aik, sizeof aik);
        return err;
    }
    /* keys made, bundle not published yet: publish again with what is stored */
    err = kget_fixed(c->db, sp, "spk", &spk, sizeof spk);
    if (!err)
        err = bundle_publish(c, &aik, &self, &spk, NULL, 0);
    else
        pl__fail(c, err, "the signed prekey could not be read from the store");
    sodium_memzero(&aik, sizeof aik);
    sodium_memzero(&spk, sizeof spk);
    pl_e2e_self_wipe(&self);
    return err;
}

int pl__e2e_refill(pl_client *c, sqlite3 *db, const char *base, const char *token)
{
    pl_prekey *opks = pl_e2e_secret_alloc(N_OPKS * sizeof *opks);
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
    pl_e2e_secret_free(opks, N_OPKS * sizeof *opks);
    return err;
}

/* ------------------------------------------------------------------ signed prekey rotation */

#define SPK_ROTATE_MS (7LL * 24 * 3600 * 1000)  /* a new SPK after 7 days */
#define SPK_KEEP_MS   (30LL * 24 * 3600 * 1000) /* a replaced one is kept 30 days */

static const char SPKO_META[] = "e2e_spko:";

/* The private key of the SPK with this id: the current one, or one replaced less than
 * SPK_KEEP_MS ago. PL_ENOTFOUND otherwise. */
static int spk_find(sqlite3 *db, const char *sp, uint32_t id, pl_prekey *out)
{
    if (kget_fixed(db, sp, "spk", out, sizeof *out) == 0 && out->id == id) return 0;
    char name[32], key[32];
    snprintf(name, sizeof name, "spko:%u", (unsigned)id);
    snprintf(key, sizeof key, "%s%u", SPKO_META, (unsigned)id);
    int64_t at = pl__meta_get_int(db, key);
    int err = at > 0 && now_ms() - at < SPK_KEEP_MS ? kget_fixed(db, sp, name, out, sizeof *out)
                                                    : PL_ENOTFOUND;
    if (!err && out->id != id) err = PL_ESTORE;
    if (err) sodium_memzero(out, sizeof *out);
    return err;
}

/* The replay cache of SPK spk_id (E2E.md §5): "spkrc:<id>" holds the ek_hash values of the
 * PREKEY_MSGs without an OPK that made a session, 32 bytes each. Empty when absent. */
static int replay_load(sqlite3 *db, const char *sp, uint32_t spk_id, pl_replay_cache *rc)
{
    *rc = (pl_replay_cache){0};
    char name[32];
    snprintf(name, sizeof name, "spkrc:%u", (unsigned)spk_id);
    unsigned char *p;
    size_t n;
    int err = kget(db, sp, name, &p, &n);
    if (err == PL_ENOTFOUND) return 0;
    if (err) return err;
    if (n % 32 != 0) err = PL_ESTORE;
    for (size_t i = 0; !err && i < n; i += 32)
        if (pl_replay_cache_add(rc, p + i) != 0) err = PL_ENOMEM;
    kfree(p, n);
    if (err) pl_replay_cache_free(rc);
    return err;
}

/* Adds h to the cache and stores it (inside the caller's transaction). */
static int replay_add(sqlite3 *db, const char *sp, uint32_t spk_id, pl_replay_cache *rc,
                      const unsigned char h[32])
{
    char name[32];
    snprintf(name, sizeof name, "spkrc:%u", (unsigned)spk_id);
    if (pl_replay_cache_add(rc, h) != 0) return PL_ENOMEM;
    return kput(db, sp, name, rc->h, rc->n * 32);
}

/* PUT /v1/keys/bundle with the stored DCERT and SPK (no OPKs), to base (NULL: the client's
 * servers in turn); then the SPK counts as published. */
static int spk_publish(pl_client *c, sqlite3 *db, const char *base, const char *token)
{
    const char *sp = c->store_path;
    pl_sign_pair aik;
    pl_e2e_self self;
    pl_prekey spk;
    bool have_self = false;
    json_t *body = NULL;
    int err = kget_fixed(db, sp, "aik", &aik, sizeof aik);
    if (!err) err = self_load(db, sp, &self);
    if (!err) {
        have_self = true;
        err = kget_fixed(db, sp, "spk", &spk, sizeof spk);
    }
    if (!err && !(body = bundle_body(&aik, &self, &spk, NULL, 0))) err = PL_ENOMEM;
    if (!err) {
        long status = 0;
        json_t *resp = NULL;
        err = rest(c, base, "PUT", "/v1/keys/bundle", token, body, &status, &resp);
        json_decref(resp);
    }
    json_decref(body);
    if (!err && pl__meta_set_int(db, "e2e_spk_unpublished", 0) != 0) err = PL_ESTORE;
    sodium_memzero(&aik, sizeof aik);
    sodium_memzero(&spk, sizeof spk);
    if (have_self) pl_e2e_self_wipe(&self);
    return err;
}

/* Replaces the SPK: a new pair with the next id becomes "spk", the old one is kept as
 * "spko:<id>" with the time it was replaced in the meta "e2e_spko:<id>", in one transaction;
 * then the new one is published. If that fails it stays marked unpublished (the meta
 * "e2e_spk_unpublished") and goes up at the next check. */
static int spk_rotate(pl_client *c, sqlite3 *db, const char *base, const char *token)
{
    const char *sp = c->store_path;
    pl_prekey cur, next;
    int err = kget_fixed(db, sp, "spk", &cur, sizeof cur);
    if (err) return err;
    uint32_t id = cur.id + 1 >= PL_OPK_NONE ? 1 : cur.id + 1;
    int64_t now = now_ms();
    if (pl_prekey_generate(&next, id) != 0) err = PL_ENOMEM;
    if (!err && pl__store_begin(db) != 0) err = PL_ESTORE;
    if (!err) {
        char name[32], key[32];
        snprintf(name, sizeof name, "spko:%u", (unsigned)cur.id);
        snprintf(key, sizeof key, "%s%u", SPKO_META, (unsigned)cur.id);
        if (kput(db, sp, name, &cur, sizeof cur) || pl__meta_set_int(db, key, now) ||
            kput(db, sp, "spk", &next, sizeof next) || pl__meta_set_int(db, "e2e_spk_at", now) ||
            pl__meta_set_int(db, "e2e_spk_unpublished", 1))
            err = PL_ESTORE;
        if (err || pl__store_commit(db) != 0) {
            pl__store_rollback(db);
            err = PL_ESTORE;
        }
    }
    sodium_memzero(&cur, sizeof cur);
    sodium_memzero(&next, sizeof next);
    return err ? err : spk_publish(c, db, base, token);
}

/* Deletes the SPKs replaced SPK_KEEP_MS ago or more with their replay caches (up to 64 at a
 * time; the rest at the next check), in one transaction. */
static int spk_sweep(sqlite3 *db, int64_t now)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT key, value FROM meta WHERE substr(key, 1, ?) = ?", -1, &st,
                           NULL) != SQLITE_OK)
        return PL_ESTORE;
    sqlite3_bind_int(st, 1, (int)strlen(SPKO_META));
    sqlite3_bind_text(st, 2, SPKO_META, -1, SQLITE_STATIC);
    uint32_t ids[64];
    size_t n = 0;
    while (n < sizeof ids / sizeof ids[0] && sqlite3_step(st) == SQLITE_ROW) {
        const char *key = (const char *)sqlite3_column_text(st, 0);
        if (now - sqlite3_column_int64(st, 1) >= SPK_KEEP_MS)
            ids[n++] = (uint32_t)strtoul(key + strlen(SPKO_META), NULL, 10);
    }
    sqlite3_finalize(st);
    if (n == 0) return 0;
    int err = pl__store_begin(db) != 0 ? PL_ESTORE : 0;
    for (size_t i = 0; !err && i < n; i++) {
        char name[32], rc[32], key[32];
        snprintf(name, sizeof name, "spko:%u", (unsigned)ids[i]);
        snprintf(rc, sizeof rc, "spkrc:%u", (unsigned)ids[i]);
        snprintf(key, sizeof key, "%s%u", SPKO_META, (unsigned)ids[i]);
        if (kdel(db, name) || kdel(db, rc) ||
            sqlite3_prepare_v2(db, "DELETE FROM meta WHERE key = ?", -1, &st, NULL) != SQLITE_OK) {
            err = PL_ESTORE;
            break;
        }
        sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE) err = PL_ESTORE;
        sqlite3_finalize(st);
    }
    if (err || pl__store_commit(db) != 0) {
        pl__store_rollback(db);
        err = PL_ESTORE;
    }
    return err;
}

int pl__e2e_spk_check(pl_client *c, sqlite3 *db, const char *base, const char *token)
{
    const char *sp = c->store_path;
    unsigned char *pub;
    size_t pn;
    int err = kget(db, sp, "published", &pub, &pn);
    if (err) return err == PL_ENOTFOUND ? 0 : err; /* no keys here: pl_e2e_enable's part */
    kfree(pub, pn);
    int64_t now = now_ms(), at = pl__meta_get_int(db, "e2e_spk_at");
    int swept = spk_sweep(db, now);
    if (at <= 0) /* kept from before rotation was recorded: it counts from now */
        err = pl__meta_set_int(db, "e2e_spk_at", now) ? PL_ESTORE : 0;
    else if (now - at >= SPK_ROTATE_MS)
        err = spk_rotate(c, db, base, token);
    else if (pl__meta_get_int(db, "e2e_spk_unpublished") == 1)
        err = spk_publish(c, db, base, token);
    return err ? err : swept;
}

int pl_e2e_rotate_spk(pl_client *c)
{
    if (!c->token) return pl__fail(c, PL_ENOSESSION, NULL);
    if (pl_e2e_init() != 0) return pl__fail(c, PL_ENOMEM, "the crypto library failed");
    unsigned char *pub;
    size_t pn;
    int err = kget(c->db, c->store_path, "published", &pub, &pn);
    if (err == PL_ENOTFOUND)
        return pl__fail(c, PL_ESTATE, "this device has no published end-to-end keys");
    if (err) return pl__fail(c, err, NULL);
    kfree(pub, pn);
    c->errmsg[0] = 0;
    if (spk_sweep(c->db, now_ms()) != 0)
        return pl__fail(c, PL_ESTORE, "old signed prekeys could not be deleted");
    err = spk_rotate(c, c->db, NULL, c->token);
    if (err) /* a REST error is recorded already */
        return c->errmsg[0] ? err : pl__fail(c, err, "the signed prekey could not be replaced");
    c->errmsg[0] = 0;
    return 0;
}

/* ------------------------------------------------------------------------------- linking */

#define LINK_ID_LEN   16
#define LINK_CODE_LEN (LINK_ID_LEN + 32)
#define LINK_FMT      0x01  /* the payload format (docs/e2e.md, linking) */
#define LINK_PT_MAX   65520 /* payload bytes: the sealed envelope stays within 64 KiB */
#define LINK_PIN_LEN  (65 + 32 + 1)

static const char LINK_LABEL[] = "PARLEYv1/LINK";
static const char LINKAD_LABEL[] = "PARLEYv1/LINKAD";

typedef struct link_state {
    unsigned char id[LINK_ID_LEN];
    pl_dh_pair lk;
} link_state;

/* key = HKDF(salt = LK_pub || E_pub, X25519(E, LK_pub), "PARLEYv1/LINK", 32) */
static int link_key(unsigned char key[32], const unsigned char lk_pub[32],
                    const unsigned char e_pub[32], const unsigned char dh[32])
{
    unsigned char salt[64];
    memcpy(salt, lk_pub, 32);
    memcpy(salt + 32, e_pub, 32);
    return pl_hkdf(key, 32, salt, sizeof salt, dh, 32, LINK_LABEL, sizeof LINK_LABEL - 1);
}

/* ad = "PARLEYv1/LINKAD" || link_id || id(new device); returns its length, 0 on a bad id. */
static size_t link_ad(unsigned char ad[128], const unsigned char id[LINK_ID_LEN],
                      const char *device)
{
    size_t n = sizeof LINKAD_LABEL - 1;
    memcpy(ad, LINKAD_LABEL, n);
    memcpy(ad + n, id, LINK_ID_LEN);
    n += LINK_ID_LEN;
    int k = pl_id_encode(ad + n, 128 - n, device);
    return k > 0 ? n + (size_t)k : 0;
}

static void link_path(char *out, size_t cap, const unsigned char id[LINK_ID_LEN])
{
    char s[32];
    b64(s, sizeof s, id, LINK_ID_LEN);
    snprintf(out, cap, "/v1/keys/link/%s", s);
}

int pl_link_begin(pl_client *c, char **code_out)
{
    if (!code_out) return pl__fail(c, PL_EINVAL, NULL);
    *code_out = NULL;
    if (!c->token) return pl__fail(c, PL_ENOSESSION, NULL);
    if (pl_e2e_init() != 0) return pl__fail(c, PL_ENOMEM, "the crypto library failed");
    pl_sign_pair aik;
    int err = kget_fixed(c->db, c->store_path, "aik", &aik, sizeof aik);
    sodium_memzero(&aik, sizeof aik);
    if (err == 0)
        return pl__fail(c, PL_ESTATE, "this device holds the account's identity key already");
    link_state ls;
    randombytes_buf(ls.id, sizeof ls.id);
    if (pl_dh_generate(&ls.lk) != 0) return pl__fail(c, PL_ENOMEM, NULL);
    err = kput(c->db, c->store_path, "link", &ls, sizeof ls);
    unsigned char code[LINK_CODE_LEN];
    memcpy(code, ls.id, LINK_ID_LEN);
    memcpy(code + LINK_ID_LEN, ls.lk.pk, 32);
    sodium_memzero(&ls, sizeof ls);
    if (err) return pl__fail(c, err, NULL);
    *code_out = malloc(sodium_base64_ENCODED_LEN(LINK_CODE_LEN, 7));
    if (!*code_out) return pl__fail(c, PL_ENOMEM, NULL);
    b64(*code_out, sodium_base64_ENCODED_LEN(LINK_CODE_LEN, 7), code, LINK_CODE_LEN);
    c->errmsg[0] = 0;
    return 0;
}

/* The pins of this store, as payload entries id(user) || AIK || verified, appended at p. */
static int pins_collect(pl_client *c, unsigned char *p, size_t cap, size_t *len, unsigned *count)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(c->db, "SELECT name FROM e2e_keys WHERE substr(name, 1, 4) = 'pin:'", -1,
                           &st, NULL) != SQLITE_OK)
        return PL_ESTORE;
    int err = 0;
    *len = 0;
    *count = 0;
    while (!err && sqlite3_step(st) == SQLITE_ROW) {
        const char *user = (const char *)sqlite3_column_text(st, 0) + 4;
        pin pn;
        if (!pl_id_valid(user) || pin_get(c->db, c->store_path, user, &pn) != 0) continue;
        if (*len + LINK_PIN_LEN > cap || *count == UINT16_MAX) {
            err = PL_ETOOBIG;
            break;
        }
        int k = pl_id_encode(p + *len, cap - *len, user);
        if (k <= 0) continue;
        *len += (size_t)k;
        memcpy(p + *len, pn.aik, 32);
        p[*len + 32] = pn.verified;
        *len += 33;
        (*count)++;
        sodium_memzero(&pn, sizeof pn);
    }
    sqlite3_finalize(st);
    return err;
}

int pl_link_approve(pl_client *c, const char *code, const char *new_device)
{
    if (!c->token) return pl__fail(c, PL_ENOSESSION, NULL);
    if (pl_e2e_init() != 0) return pl__fail(c, PL_ENOMEM, "the crypto library failed");
    if (!new_device || strncmp(new_device, "d_", 2) != 0 || !pl_id_valid(new_device))
        return pl__fail(c, PL_EINVAL, "the new device's id (d_...) is missing or malformed");
    if (strcmp(new_device, c->sess.device) == 0)
        return pl__fail(c, PL_EINVAL, "a device cannot link itself");
    unsigned char cb[LINK_CODE_LEN];
    if (!code || unb64_fixed(cb, sizeof cb, code) != 0 ||
        pl_x25519_pub_check(cb + LINK_ID_LEN) != 0)
        return pl__fail(c, PL_EINVAL,
                        "this is not a link code (64 characters shown by link-begin)");
    const unsigned char *lk_pub = cb + LINK_ID_LEN;
    pl_sign_pair aik;
    int err = kget_fixed(c->db, c->store_path, "aik", &aik, sizeof aik);
    if (err == PL_ENOTFOUND) return not_linked(c);
    if (err) return pl__fail(c, err, NULL);
    unsigned char *pt = malloc(LINK_PT_MAX), *ct = NULL;
    char *c64 = NULL;
    pl_dh_pair e;
    unsigned char dh[32], key[32], nonce[24], ad[128];
    size_t n = 0, adlen = link_ad(ad, cb, new_device);
    if (!pt || !adlen) {
        err = pl__fail(c, PL_ENOMEM, NULL);
        goto out;
    }
    /* fmt || id(user) || AIK_sk || count u16 || count x (id(contact) || AIK || verified) */
    pt[n++] = LINK_FMT;
    int k = pl_id_encode(pt + n, LINK_PT_MAX - n, c->sess.user);
    if (k <= 0) {
        err = pl__fail(c, PL_EINVAL, "the user id cannot be encoded");
        goto out;
    }
    n += (size_t)k;
    memcpy(pt + n, aik.sk, 64);
    n += 64;
    size_t plen;
    unsigned count;
    if ((err = pins_collect(c, pt + n + 2, LINK_PT_MAX - n - 2, &plen, &count)) != 0) {
        pl__fail(c, err, "too many contact keys to carry in one link");
        goto out;
    }
    pt[n] = (unsigned char)(count >> 8);
    pt[n + 1] = (unsigned char)count;
    n += 2 + plen;
    if (pl_dh_generate(&e) != 0 || pl_dh(dh, e.sk, lk_pub) != 0 ||
        link_key(key, lk_pub, e.pk, dh) != 0) {
        err = pl__fail(c, PL_EINVAL, "the link code holds an unusable key");
        goto out;
    }
    randombytes_buf(nonce, sizeof nonce);
    size_t clen = n + crypto_aead_xchacha20poly1305_ietf_ABYTES;
    ct = malloc(clen);
    c64 = ct ? malloc(sodium_base64_ENCODED_LEN(clen, 7)) : NULL;
    if (!c64) {
        err = pl__fail(c, PL_ENOMEM, NULL);
        goto out;
    }
    crypto_aead_xchacha20poly1305_ietf_encrypt(ct, NULL, pt, n, ad, adlen, NULL, nonce, key);
    b64(c64, sodium_base64_ENCODED_LEN(clen, 7), ct, clen);
    char ep[64], nn[64], path[96];
    b64(ep, sizeof ep, e.pk, 32);
    b64(nn, sizeof nn, nonce, sizeof nonce);
    link_path(path, sizeof path, cb);
    json_t *body =
        json_pack("{s:s, s:s, s:s, s:s}", "to", new_device, "eph", ep, "nonce", nn, "c", c64);
    long status = 0;
    json_t *resp = NULL;
    err = pl__rest(c, "PUT", path, c->token, body, &status, &resp);
    json_decref(body);
    json_decref(resp);
    if (!err) c->errmsg[0] = 0;
out:
    if (pt) sodium_memzero(pt, LINK_PT_MAX);
    free(pt);
    free(ct);
    free(c64);
    sodium_memzero(&aik, sizeof aik);
    sodium_memzero(&e, sizeof e);
    sodium_memzero(dh, sizeof dh);
    sodium_memzero(key, sizeof key);
    return err;
}

/* Reads the payload of a link (after the AEAD): the user, the AIK and the pins. */
static int link_parse(pl_client *c, const unsigned char *p, size_t n, pl_sign_pair *aik,
                      link_pin **pins, size_t *npins)
{
    *pins = NULL;
    *npins = 0;
    char user[PL_E2E_ID_MAX + 1];
    size_t off = 1;
    if (n < 1 || p[0] != LINK_FMT) return PL_EPROTO;
    int k = pl_id_decode(user, p + off, n - off);
    if (k <= 0) return PL_EPROTO;
    off += (size_t)k;
    if (strcmp(user, c->sess.user) != 0) return PL_EREFUSED;
    if (n - off < 64 + 2) return PL_EPROTO;
    memcpy(aik->sk, p + off, 64);
    off += 64;
    unsigned count = (unsigned)p[off] << 8 | p[off + 1];
    off += 2;
    /* the private key must be a whole Ed25519 key pair: its seed gives its public half */
    unsigned char seed[32], pk[32], sk[64];
    crypto_sign_ed25519_sk_to_seed(seed, aik->sk);
    crypto_sign_seed_keypair(pk, sk, seed);
    bool ok = sodium_memcmp(sk, aik->sk, 64) == 0;
    memcpy(aik->pk, pk, 32);
    sodium_memzero(seed, sizeof seed);
    sodium_memzero(sk, sizeof sk);
    if (!ok) return PL_EPROTO;
    link_pin *v = calloc(count + 1, sizeof *v);
    if (!v) return PL_ENOMEM;
    for (unsigned i = 0; i < count; i++) {
        k = off < n ? pl_id_decode(v[i].user, p + off, n - off) : -1;
        if (k <= 0) {
            free(v);
            return PL_EPROTO;
        }
        off += (size_t)k;
        if (n - off < 33 || p[off + 32] > 2) {
            free(v);
            return PL_EPROTO;
        }
        memcpy(v[i].p.aik, p + off, 32);
        v[i].p.verified = p[off + 32];
        off += 33;
    }
    if (off != n) {
        free(v);
        return PL_EPROTO;
    }
    *pins = v;
    *npins = count;
    return 0;
}

int pl_link_finish(pl_client *c)
{
    if (!c->token) return pl__fail(c, PL_ENOSESSION, NULL);
    if (pl_e2e_init() != 0) return pl__fail(c, PL_ENOMEM, "the crypto library failed");
    link_state ls;
    int err = kget_fixed(c->db, c->store_path, "link", &ls, sizeof ls);
    if (err == PL_ENOTFOUND) return pl__fail(c, PL_ESTATE, "no link was begun on this device");
    if (err) return pl__fail(c, err, NULL);
    char path[96];
    link_path(path, sizeof path, ls.id);
    long status = 0;
    json_t *resp = NULL;
    err = pl__rest(c, "GET", path, c->token, NULL, &status, &resp);
    if (err) {
        json_decref(resp);
        sodium_memzero(&ls, sizeof ls);
        if (status == 404)
            return pl__fail(c, PL_ENOTFOUND,
                            "the link is not approved yet (or expired after 10 minutes): approve "
                            "it on a linked device, then finish again");
        return err;
    }
    unsigned char eph[32], nonce[24], dh[32], key[32], ad[128];
    const char *cs = json_string_value(json_object_get(resp, "c"));
    size_t cap = cs ? strlen(cs) : 0, clen = 0, npins = 0;
    unsigned long long ptlen = 0;
    unsigned char *ct = malloc(cap + 1), *pt = malloc(cap + 1);
    pl_sign_pair aik;
    link_pin *pins = NULL;
    size_t adlen = link_ad(ad, ls.id, c->sess.device);
    const char *why = NULL;
    if (!ct || !pt || !adlen) {
        err = PL_ENOMEM;
    } else if (unb64_fixed(eph, 32, json_string_value(json_object_get(resp, "eph"))) ||
               unb64_fixed(nonce, 24, json_string_value(json_object_get(resp, "nonce"))) ||
               unb64(ct, cap + 1, &clen, cs) || clen < crypto_aead_xchacha20poly1305_ietf_ABYTES) {
        err = PL_EPROTO;
        why = "the server sent a malformed link envelope";
    } else if (pl_dh(dh, ls.lk.sk, eph) != 0 || link_key(key, ls.lk.pk, eph, dh) != 0 ||
               crypto_aead_xchacha20poly1305_ietf_decrypt(pt, &ptlen, NULL, ct, clen, ad, adlen,
                                                          nonce, key) != 0) {
        err = PL_EREFUSED;
        why = "the link envelope did not decrypt: begin the link again";
    } else if ((err = link_parse(c, pt, (size_t)ptlen, &aik, &pins, &npins)) != 0) {
        why = err == PL_EREFUSED ? "the link envelope was made for another account"
                                 : "the link envelope is malformed";
    }
    json_decref(resp);
    if (!err) {
        /* the key must be the one the server lists for this account */
        unsigned char have[32];
        bool has = false;
        err = served_aik(c, c->sess.user, have, &has);
        if (!err && (!has || sodium_memcmp(have, aik.pk, 32) != 0)) {
            err = PL_EREFUSED;
            why = "the identity key received does not match the account's";
        }
    }
    if (!err) {
        err = device_keys_create(c, &aik, pins, npins);
        if (!err) kdel(c->db, "link");
    } else if (why) {
        pl__fail(c, err, why);
    }
    if (pt) sodium_memzero(pt, cap + 1);
    free(pt);
    free(ct);
    if (pins) sodium_memzero(pins, npins * sizeof *pins);
    free(pins);
    sodium_memzero(&aik, sizeof aik);
    sodium_memzero(&ls, sizeof ls);
    sodium_memzero(dh, sizeof dh);
    sodium_memzero(key, sizeof key);
    return err;
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

/* The active session with (user, dev) ("s:"), or its inactive one ("si:", the session a RETRY
 * took out of use: it still decrypts what the peer sent on it, never encrypts). */
static int session_load_as(sqlite3 *db, const char *sp, const char *prefix, const char *user,
                           const char *dev, pl_e2e_session **out)
{
    char name[160];
    snprintf(name, sizeof name, "%s:%s:%s", prefix, user, dev);
    unsigned char *p;
    size_t n;
    int err = kget(db, sp, name, &p, &n);
    if (err) return err;
    err = pl_e2e_session_deserialize(out, p, n) == 0 ? 0 : PL_ESTORE;
    kfree(p, n);
    return err;
}

static int session_load(sqlite3 *db, const char *sp, const char *user, const char *dev,
                        pl_e2e_session **out)
{
    return session_load_as(db, sp, "s", user, dev, out);
}

static int session_save_as(sqlite3 *db, const char *sp, const char *prefix, const char *user,
                           const char *dev, const pl_e2e_session *s)
{
    char name[160];
    snprintf(name, sizeof name, "%s:%s:%s", prefix, user, dev);
    size_t cap = pl_e2e_session_serialized_size(s), n;
    unsigned char *p = malloc(cap);
    if (!p) return PL_ENOMEM;
    int err = pl_e2e_session_serialize(s, p, cap, &n) == 0 ? kput(db, sp, name, p, n) : PL_ESTORE;
    kfree(p, cap);
    return err;
}

static int session_save(sqlite3 *db, const char *sp, const char *user, const char *dev,
                        const pl_e2e_session *s)
{
    return session_save_as(db, sp, "s", user, dev, s);
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

static int served_aik(pl_client *c, const char *user, unsigned char aik[32], bool *has)
{
    char **devs;
    size_t n;
    int err = peer_devices(c, user, aik, has, &devs, &n);
    strs_free(devs, n);
    return err;
}

/* ------------------------------------------------------------------- D(conv) and pinning */

typedef struct dpeer {
    char user[PL_ID_MAX];
    unsigned char aik[32]; /* own AIK for this user, else the pinned one */
    char **devs;           /* this device left out */
    size_t ndevs;
} dpeer;

typedef struct dlist {
    dpeer *p;
    size_t n;
    bool aik_changed; /* a member's AIK changed since it was pinned */
} dlist;

static void dlist_free(dlist *d)
{
    for (size_t i = 0; i < d->n; i++) strs_free(d->p[i].devs, d->p[i].ndevs);
    free(d->p);
    memset(d, 0, sizeof *d);
}

static dpeer *dlist_push(dlist *d, const char *user)
{
    dpeer *v = realloc(d->p, (d->n + 1) * sizeof *v);
    if (!v) return NULL;
    d->p = v;
    dpeer *p = &v[d->n++];
    memset(p, 0, sizeof *p);
    snprintf(p->user, sizeof p->user, "%s", user);
    return p;
}

/* The AIK that `user`'s devices are checked against, given the one parleyd serves. This
 * account: its own AIK, which the served one must equal. Others: pinned on first use; a change
 * re-pins (a verified contact becomes "changed": PL_EUNVERIFIED until verified again), drops
 * the sessions made under the old key, sets *changed and queues PL_EV_IDENTITY_CHANGED. */
static int pin_resolve(pl_client *c, sqlite3 *db, const pl_e2e_self *self, const char *user,
                       const unsigned char served[32], unsigned char out[32], bool *changed)
{
    const char *sp = c->store_path;
    if (strcmp(user, self->user) == 0) {
        if (sodium_memcmp(served, self->aik_pub, 32) != 0) return PL_EREFUSED;
        memcpy(out, self->aik_pub, 32);
        return 0;
    }
    pin p;
    bool pinned = pin_get(db, sp, user, &p) == 0;
    if (pinned && sodium_memcmp(p.aik, served, 32) != 0) {
        p.verified = p.verified == 1 ? 2 : 0; /* 2: verified before, changed since */
        memcpy(p.aik, served, 32);
        if (pin_put(db, sp, user, &p) != 0) return PL_ESTORE;
        pl_event ev = {.kind = PL_EV_IDENTITY_CHANGED};
        snprintf(ev.user, sizeof ev.user, "%s", user);
        pl__ev_push(c, &ev);
        for (int k = 0; k < 2; k++) { /* the active and the inactive sessions */
            sqlite3_stmt *st = NULL;
            char pat[160];
            int pl = snprintf(pat, sizeof pat, "%s:%s:", k ? "si" : "s", user);
            if (sqlite3_prepare_v2(db, "DELETE FROM e2e_keys WHERE substr(name, 1, ?) = ?", -1, &st,
                                   NULL) == SQLITE_OK) {
                sqlite3_bind_int(st, 1, pl);
                sqlite3_bind_text(st, 2, pat, -1, SQLITE_STATIC);
                sqlite3_step(st);
            }
            sqlite3_finalize(st);
        }
        *changed = true;
    } else if (!pinned) {
        memcpy(p.aik, served, 32);
        p.verified = 0;
        if (pin_put(db, sp, user, &p) != 0) return PL_ESTORE;
    }
    if (p.verified == 2) return PL_EUNVERIFIED;
    memcpy(out, p.aik, 32);
    return 0;
}

/* Adds `user` with the devices parleyd lists and a checked AIK. *has_aik false: the user has
 * no identity key (nothing added). */
static int dlist_add(pl_client *c, sqlite3 *db, const char *base, const char *token,
                     const pl_e2e_self *self, dlist *d, const char *user, bool *has_aik)
{
    char path[160];
    snprintf(path, sizeof path, "/v1/users/%s/devices", user);
    long status = 0;
    json_t *resp = NULL;
    int err = rest(c, base, "GET", path, token, NULL, &status, &resp);
    unsigned char aik[32];
    *has_aik = false;
    if (!err) {
        const char *a = json_string_value(json_object_get(resp, "aik"));
        *has_aik = a && unb64_fixed(aik, 32, a) == 0;
    }
    dpeer *p = NULL;
    if (!err && *has_aik) {
        p = dlist_push(d, user);
        if (!p) err = PL_ENOMEM;
    }
    if (p) err = pin_resolve(c, db, self, user, aik, p->aik, &d->aik_changed);
    json_t *ds = json_object_get(resp, "devices");
    size_t n = json_array_size(ds);
    if (p && !err && !(p->devs = calloc(n + 1, sizeof *p->devs))) err = PL_ENOMEM;
    for (size_t i = 0; p && !err && i < n; i++) {
        const char *dv = json_string_value(json_object_get(json_array_get(ds, i), "device"));
        if (!dv || !pl_id_valid(dv) || strcmp(dv, self->device) == 0) continue;
        if (!(p->devs[p->ndevs] = strdup(dv)))
            err = PL_ENOMEM;
        else
            p->ndevs++;
    }
    json_decref(resp);
    return err;
}

/* D(conv) as last sent (meta "dmap:<conv>"), with the stored AIKs: for sending offline. */
static int dlist_cached(pl_client *c, sqlite3 *db, const pl_e2e_self *self, const char *conv,
                        dlist *d)
{
    char key[96], *text = malloc(65536);
    snprintf(key, sizeof key, "dmap:%s", conv);
    if (!text) return PL_ENOMEM;
    int err = pl__meta_get(db, key, text, 65536) == 0 ? 0 : PL_ENOTFOUND;
    json_t *m = err ? NULL : json_loads(text, 0, NULL);
    free(text);
    if (!err && !json_is_object(m)) err = PL_ENOTFOUND;
    const char *user;
    json_t *devs;
    json_object_foreach(m, user, devs)
    {
        if (err) break;
        pin p;
        dpeer *dp = NULL;
        if (strcmp(user, self->user) != 0 && pin_get(db, c->store_path, user, &p) != 0) continue;
        if (!(dp = dlist_push(d, user)) ||
            !(dp->devs = calloc(json_array_size(devs) + 1, sizeof *dp->devs))) {
            err = PL_ENOMEM;
            break;
        }
        memcpy(dp->aik, strcmp(user, self->user) == 0 ? self->aik_pub : p.aik, 32);
        if (strcmp(user, self->user) != 0 && p.verified == 2) err = PL_EUNVERIFIED;
        for (size_t i = 0; !err && i < json_array_size(devs); i++) {
            const char *dv = json_string_value(json_array_get(devs, i));
            if (dv && pl_id_valid(dv) && strcmp(dv, self->device) != 0 &&
                (dp->devs[dp->ndevs] = strdup(dv)) != NULL)
                dp->ndevs++;
        }
    }
    json_decref(m);
    return err;
}

static int dlist_cache(sqlite3 *db, const char *conv, const dlist *d)
{
    json_t *m = json_object();
    for (size_t i = 0; i < d->n; i++) {
        json_t *a = json_array();
        for (size_t k = 0; k < d->p[i].ndevs; k++)
            json_array_append_new(a, json_string(d->p[i].devs[k]));
        json_object_set_new(m, d->p[i].user, a);
    }
    char *text = json_dumps(m, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(m);
    char key[96];
    snprintf(key, sizeof key, "dmap:%s", conv);
    int err = text && strlen(text) < 65536 ? pl__meta_set(db, key, text) : 0;
    free(text);
    return err ? PL_ESTORE : 0;
}

static bool dlist_has(const dlist *d, const char *user, const char *dev)
{
    for (size_t i = 0; i < d->n; i++)
        if (strcmp(d->p[i].user, user) == 0)
            for (size_t k = 0; k < d->p[i].ndevs; k++)
                if (strcmp(d->p[i].devs[k], dev) == 0) return true;
    return false;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* dl: the first 16 bytes of SHA-256 over the sorted lines "u:d\n" of D(conv), base64url. */
static int dl_digest(const dlist *d, char out[32])
{
    size_t n = 0, k = 0;
    for (size_t i = 0; i < d->n; i++) n += d->p[i].ndevs;
    char **lines = calloc(n + 1, sizeof *lines);
    if (!lines) return PL_ENOMEM;
    int err = 0;
    for (size_t i = 0; i < d->n; i++)
        for (size_t j = 0; j < d->p[i].ndevs; j++) {
            size_t len = strlen(d->p[i].user) + strlen(d->p[i].devs[j]) + 3;
            if (!(lines[k] = malloc(len)))
                err = PL_ENOMEM;
            else
                snprintf(lines[k++], len, "%s:%s\n", d->p[i].user, d->p[i].devs[j]);
        }
    qsort(lines, k, sizeof *lines, cmp_str);
    crypto_hash_sha256_state h;
    unsigned char full[32];
    crypto_hash_sha256_init(&h);
    for (size_t i = 0; i < k; i++)
        crypto_hash_sha256_update(&h, (const unsigned char *)lines[i], strlen(lines[i]));
    crypto_hash_sha256_final(&h, full);
    b64(out, 32, full, 16);
    strs_free(lines, k);
    return err;
}

/* -------------------------------------------------------------------------- the e2e body */

typedef struct pend {
    char user[PL_ID_MAX];
    char dev[PL_ID_MAX];
    pl_e2e_session *s;
} pend;

typedef struct build {
    /* in */
    const char *conv, *to, *cmid, *kind, *body;
    int64_t ts;
    bool group;
    bool rotate;  /* group: a new sender state first */
    json_t *keep; /* devs entries of an earlier attempt (a rebuild), or NULL */
    /* out */
    json_t *wire;
    pend *ss;
    size_t nss;
    pl_sk_sender *sk;
    bool rotated;
} build;

static void build_free(build *b)
{
    json_decref(b->wire);
    for (size_t i = 0; i < b->nss; i++) pl_e2e_session_free(b->ss[i].s);
    free(b->ss);
    pl_sk_sender_free(b->sk);
}

static json_t *keep_find(json_t *keep, const char *user, const char *dev)
{
    size_t i;
    json_t *e;
    json_array_foreach(keep, i, e)
    {
        const char *u = json_string_value(json_object_get(e, "u"));
        const char *d = json_string_value(json_object_get(e, "d"));
        if (u && d && strcmp(u, user) == 0 && strcmp(d, dev) == 0) return e;
    }
    return NULL;
}

static int sender_load(sqlite3 *db, const char *sp, const char *conv, pl_sk_sender **out)
{
    char name[96];
    snprintf(name, sizeof name, "sk:%s", conv);
    unsigned char *p;
    size_t n;
    *out = NULL;
    int err = kget(db, sp, name, &p, &n);
    if (err) return err;
    err = pl_sk_sender_deserialize(out, p, n) == 0 ? 0 : PL_ESTORE;
    kfree(p, n);
    return err;
}

static int sender_save(sqlite3 *db, const char *sp, const char *conv, const pl_sk_sender *sk)
{
    char name[96];
    snprintf(name, sizeof name, "sk:%s", conv);
    size_t cap = pl_sk_sender_serialized_size(sk), n;
    unsigned char *p = malloc(cap);
    if (!p) return PL_ENOMEM;
    int err = pl_sk_sender_serialize(sk, p, cap, &n) == 0 ? kput(db, sp, name, p, n) : PL_ESTORE;
    kfree(p, cap);
    return err;
}

/* Encrypts payload (ctype) for the devices devs of `user` on their sessions (stored, else X3DH
 * from claimed bundles checked against aik), appending {u, d, c} to out and the advanced
 * sessions to b->ss. A device parleyd no longer has is skipped (*skipped counts them). */
static int entries_for(pl_client *c, sqlite3 *db, const char *base, const char *token,
                       const pl_e2e_self *self, build *b, const dpeer *p, char **devs, size_t n,
                       uint8_t ctype, const unsigned char *payload, size_t plen, json_t *out)
{
    if (n == 0) return 0;
    pl_e2e_session **ss = calloc(n, sizeof *ss);
    if (!ss) return PL_ENOMEM;
    int err = sessions_get(c, db, base, token, self, p->aik, p->user, devs, n, ss);
    pend *v = err ? NULL : realloc(b->ss, (b->nss + n) * sizeof *v);
    if (!err && !v) err = PL_ENOMEM;
    if (v) b->ss = v;
    for (size_t i = 0; !err && i < n; i++) {
        if (!ss[i]) continue; /* gone since the list: the server answers device_list_stale */
        size_t cap = pl_e2e_session_encrypt_size(ss[i], plen), len;
        unsigned char *ct = malloc(cap);
        char *cb = ct ? malloc(sodium_base64_ENCODED_LEN(cap, 7)) : NULL;
        if (!cb || pl_e2e_session_encrypt(ss[i], ctype, payload, plen, ct, cap, &len) != 0) {
            err = PL_ENOMEM;
        } else {
            b64(cb, sodium_base64_ENCODED_LEN(cap, 7), ct, len);
            json_array_append_new(
                out, json_pack("{s:s, s:s, s:s}", "u", p->user, "d", devs[i], "c", cb));
            if (b->group && pl_sk_sender_sent_to_add(b->sk, p->user, devs[i]) != 0) err = PL_ENOMEM;
            pend *e = &b->ss[b->nss++];
            snprintf(e->user, sizeof e->user, "%s", p->user);
            snprintf(e->dev, sizeof e->dev, "%s", devs[i]);
            e->s = ss[i];
            ss[i] = NULL;
        }
        free(ct);
        free(cb);
    }
    for (size_t i = 0; i < n; i++) pl_e2e_session_free(ss[i]);
    free(ss);
    return err;
}

/* The e2e body (E2E.md §7.1) for D(conv) = d: direct, a CONTENT entry per device (entries of
 * devices in b->keep reused); group, an SKDM entry per device not in sent_to, then g (the
 * SKMSG) and dl. The advanced states are in b until build_save. */
static int build_body(pl_client *c, sqlite3 *db, const char *base, const char *token,
                      const pl_e2e_self *self, const dlist *d, build *b)
{
    const char *sp = c->store_path;
    int err = 0;
    b->wire = json_pack("{s:i, s:b, s:[]}", "v", 1, "ctl", 0, "devs");
    json_t *out = json_object_get(b->wire, "devs");
    char *pt = content_json(b->to, b->cmid, b->ts, b->kind, b->body);
    if (!pt) return PL_ENOMEM;
    size_t ptlen = strlen(pt);
    unsigned char skdm[PL_SKDM_MAX];
    size_t skdm_len = 0;
    if (b->group) {
        int r = sender_load(db, sp, b->conv, &b->sk);
        if (r != 0 && r != PL_ENOTFOUND) err = r;
        bool rotate = !b->sk || b->rotate || d->aik_changed ||
                      pl_sk_sender_needs_rotation(b->sk, (uint64_t)now_ms());
        for (size_t i = 0; !rotate && i < pl_sk_sender_sent_to_count(b->sk); i++) {
            const char *u, *dv;
            rotate = pl_sk_sender_sent_to_at(b->sk, i, &u, &dv) != 0 || !dlist_has(d, u, dv);
        }
        if (!err && rotate) {
            pl_sk_sender_free(b->sk);
            b->sk = NULL;
            b->keep = NULL; /* the old entries carry the old sender key */
            b->rotated = true;
            if (pl_sk_sender_new(&b->sk, b->conv, self->user, self->device, (uint64_t)now_ms()))
                err = PL_ENOMEM;
        }
        if (!err && pl_sk_sender_skdm(b->sk, skdm, sizeof skdm, &skdm_len) != 0) err = PL_ENOMEM;
    }
    for (size_t i = 0; !err && i < d->n; i++) {
        const dpeer *p = &d->p[i];
        char **need = calloc(p->ndevs + 1, sizeof *need);
        size_t nn = 0;
        if (!need) err = PL_ENOMEM;
        for (size_t k = 0; !err && k < p->ndevs; k++) {
            json_t *e = keep_find(b->keep, p->user, p->devs[k]);
            bool has = b->group && pl_sk_sender_sent_to_has(b->sk, p->user, p->devs[k]);
            if (e && (!b->group || has))
                json_array_append(out, e); /* its ratchet step is committed already */
            else if (!has)
                need[nn++] = p->devs[k];
        }
        if (!err)
            err = b->group ? entries_for(c, db, base, token, self, b, p, need, nn, PL_CT_SKDM, skdm,
                                         skdm_len, out)
                           : entries_for(c, db, base, token, self, b, p, need, nn, PL_CT_CONTENT,
                                         (const unsigned char *)pt, ptlen, out);
        free(need);
    }
    if (!err && b->group) {
        size_t cap = pl_sk_encrypt_size(ptlen), len;
        unsigned char *g = malloc(cap);
        char *gb = g ? malloc(sodium_base64_ENCODED_LEN(cap, 7)) : NULL;
        char dl[32];
        if (!gb || pl_sk_encrypt(b->sk, (const unsigned char *)pt, ptlen, g, cap, &len) != 0 ||
            dl_digest(d, dl) != 0) {
            err = PL_ENOMEM;
        } else {
            b64(gb, sodium_base64_ENCODED_LEN(cap, 7), g, len);
            json_object_set_new(b->wire, "g", json_string(gb));
            json_object_set_new(b->wire, "dl", json_string(dl));
        }
        free(g);
        free(gb);
    }
    sodium_memzero(pt, ptlen);
    free(pt);
    sodium_memzero(skdm, sizeof skdm);
    return err;
}

/* The states of build_body, inside the caller's transaction. */
static int build_save(sqlite3 *db, const char *sp, const build *b, const dlist *d)
{
    for (size_t i = 0; i < b->nss; i++)
        if (session_save(db, sp, b->ss[i].user, b->ss[i].dev, b->ss[i].s) != 0) return PL_ESTORE;
    if (b->group) {
        if (sender_save(db, sp, b->conv, b->sk) != 0) return PL_ESTORE;
        char key[96];
        snprintf(key, sizeof key, "skrot:%s", b->conv);
        if (b->rotated && pl__meta_set_int(db, key, 0) != 0) return PL_ESTORE;
    }
    return dlist_cache(db, b->conv, d);
}

static bool meta_flag(sqlite3 *db, const char *prefix, const char *id)
{
    char key[96];
    snprintf(key, sizeof key, "%s%s", prefix, id);
    return pl__meta_get_int(db, key) == 1;
}

/* Group: is it encrypted (GET /v1/groups/{g}, remembered for good), and its members. */
static int group_info(pl_client *c, const char *group, bool *e2e, json_t **members)
{
    *members = NULL;
    *e2e = meta_flag(c->db, "e2eg:", group);
    char path[128];
    snprintf(path, sizeof path, "/v1/groups/%s", group);
    long status = 0;
    json_t *resp = NULL;
    int err = pl__rest(c, "GET", path, c->token, NULL, &status, &resp);
    if (!err && json_is_true(json_object_get(resp, "e2e")) && !*e2e) {
        char key[96];
        snprintf(key, sizeof key, "e2eg:%s", group);
        pl__meta_set_int(c->db, key, 1);
        *e2e = true;
    }
    if (!err) *members = json_incref(json_object_get(resp, "members"));
    json_decref(resp);
    return err;
}

int pl__e2e_send(pl_client *c, const char *to, const char *conv, const char *kind, const char *body,
                 int64_t reply_to, pl_msg *out, bool *handled)
{
    *handled = false;
    bool group = strncmp(to, "g_", 2) == 0;
    if ((!group && strncmp(to, "u_", 2) != 0) || strcmp(kind, "e2e") == 0) return 0;
    const char *sp = c->store_path;
    pl_e2e_self self;
    bool have_self = self_load(c->db, sp, &self) == 0;
    bool unlinked = pl__meta_get_int(c->db, "e2e_unlinked") == 1;
    dlist d = {0};
    int err = 0;
    bool offline = false;
    if (group) {
        bool e2e;
        json_t *members;
        err = group_info(c, to, &e2e, &members);
        offline = err == PL_ENET || err == PL_ETIMEDOUT;
        if (!e2e) {
            json_decref(members);
            if (have_self) pl_e2e_self_wipe(&self);
            if (err) c->errmsg[0] = 0;
            return 0; /* a plain group */
        }
        *handled = true;
        if (!have_self) {
            json_decref(members);
            return unlinked ? not_linked(c)
                            : pl__fail(c, PL_ESTATE,
                                       "this group is end-to-end encrypted and this device has no "
                                       "keys yet (pl_e2e_enable)");
        }
        if (err && !offline) {
            json_decref(members);
            pl_e2e_self_wipe(&self);
            return err;
        }
        for (size_t i = 0; !err && i < json_array_size(members); i++) {
            const char *u = json_string_value(json_object_get(json_array_get(members, i), "user"));
            bool has;
            if (u && pl_id_valid(u)) err = dlist_add(c, c->db, NULL, c->token, &self, &d, u, &has);
            if (err == PL_ENET || err == PL_ETIMEDOUT) offline = true;
        }
        json_decref(members);
    } else {
        if (!have_self) {
            if (!unlinked) return 0; /* no keys here: not encrypted */
            *handled = true;
            return not_linked(c);
        }
        pin p;
        bool pinned = pin_get(c->db, sp, to, &p) == 0, has = false;
        err = dlist_add(c, c->db, NULL, c->token, &self, &d, to, &has);
        offline = err == PL_ENET || err == PL_ETIMEDOUT;
        if (!offline && (err == PL_EUNVERIFIED || (!err && has))) {
            *handled = true;
        } else if (!offline || !pinned) {
            dlist_free(&d);
            pl_e2e_self_wipe(&self);
            if (pinned) { /* encrypted for good: never fall back to plaintext */
                *handled = true;
                return err ? err : pl__fail(c, PL_EREFUSED, "the peer's identity key is gone");
            }
            if (err) c->errmsg[0] = 0;
            return 0; /* the server refuses plaintext where both have keys */
        }
        *handled = true;
        if (!err) err = dlist_add(c, c->db, NULL, c->token, &self, &d, self.user, &has);
        if (err == PL_ENET || err == PL_ETIMEDOUT) offline = true;
    }
    if (offline) {
        /* encrypt to D(conv) as last sent, so that the message waits in the outbox as any
         * other; a changed list makes the server refuse it and the engine rebuild it */
        dlist_free(&d);
        err = dlist_cached(c, c->db, &self, conv, &d);
        if (err == PL_ENOTFOUND && !group) {
            pin p;
            dpeer *dp = pin_get(c->db, sp, to, &p) == 0 ? dlist_push(&d, to) : NULL;
            err = dp ? session_devices(c->db, to, &dp->devs, &dp->ndevs) : PL_ENET;
            if (dp) memcpy(dp->aik, p.aik, 32);
            if (!err && dp->ndevs == 0) err = PL_ENET;
        } else if (err == PL_ENOTFOUND) {
            err = PL_ENET;
        }
        if (err == PL_ENET) pl__fail(c, err, "no server could be reached to learn the devices");
    }
    if (err) {
        dlist_free(&d);
        pl_e2e_self_wipe(&self);
        return err == PL_EUNVERIFIED ? pl__fail(c, err, NULL) : err;
    }
    char cmid[ID_MAX];
    id_new(cmid, "c_");
    char rot[96];
    snprintf(rot, sizeof rot, "skrot:%s", conv);
    build b = {.conv = conv,
               .to = to,
               .cmid = cmid,
               .kind = kind,
               .body = body,
               .ts = now_ms(),
               .group = group,
               .rotate = group && pl__meta_get_int(c->db, rot) == 1};
    err = build_body(c, c->db, NULL, c->token, &self, &d, &b);
    char *wtext = err ? NULL : json_dumps(b.wire, JSON_COMPACT);
    if (!err && !wtext) err = PL_ENOMEM;
    /* The ratchet states and the outbox row in one transaction, before anything is sent. */
    int64_t id = 0;
    if (!err) {
        if (pl__store_begin(c->db) != 0) {
            err = PL_ESTORE;
        } else {
            err = build_save(c->db, sp, &b, &d);
            if (!err)
                err = pl__store_outbox_insert(c->db, c->sess.user, c->sess.device, to, conv, kind,
                                              body, reply_to, cmid, wtext, &id);
            if (err || pl__store_commit(c->db) != 0) {
                pl__store_rollback(c->db);
                err = PL_ESTORE;
            }
        }
    }
    if (err && !c->errmsg[0]) pl__fail(c, err, "the message could not be encrypted or stored");
    free(wtext);
    build_free(&b);
    dlist_free(&d);
    pl_e2e_self_wipe(&self);
    if (err) return err;
    return out ? pl__store_msg_get(c->db, id, out) : 0;
}

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
    (void)me;
    const char *sp = c->store_path;
    pl_msg m;
    if (pl__store_msg_get(db, local_id, &m) != 0) return PL_ESTORE;
    char *wtext = pl__store_wire(db, local_id);
    json_t *wire = wtext ? json_loads(wtext, 0, NULL) : NULL;
    free(wtext);
    wtext = NULL;
    pl_e2e_self self;
    bool have_self = false;
    int err = 0;
    if (!wire || !json_is_object(devices) || json_object_size(devices) == 0)
        err = PL_EREFUSED;
    else if (self_load(db, sp, &self) != 0)
        err = PL_ESTORE;
    else
        have_self = true;
    /* D(conv) of the answer's users, each with the devices and AIK parleyd lists now */
    dlist d = {0};
    const char *user;
    json_t *v;
    json_object_foreach(devices, user, v)
    {
        bool has;
        if (err) break;
        if (!pl_id_valid(user) || strncmp(user, "u_", 2) != 0)
            err = PL_EPROTO;
        else
            err = dlist_add(c, db, base, token, &self, &d, user, &has);
    }
    bool group = strncmp(m.to, "g_", 2) == 0;
    char rot[96];
    snprintf(rot, sizeof rot, "skrot:%s", m.conv);
    build b = {.conv = m.conv,
               .to = m.to,
               .cmid = m.cmid,
               .kind = m.kind,
               .body = m.body,
               .ts = m.ts,
               .group = group,
               .rotate = group && pl__meta_get_int(db, rot) == 1,
               .keep = json_object_get(wire, "devs")};
    if (!err) err = build_body(c, db, base, token, &self, &d, &b);
    if (!err && !(wtext = json_dumps(b.wire, JSON_COMPACT))) err = PL_ENOMEM;
    if (!err) {
        if (pl__store_begin(db) != 0) {
            err = PL_ESTORE;
        } else {
            err = build_save(db, sp, &b, &d);
            if (!err) err = wire_set(db, local_id, wtext);
            if (err || pl__store_commit(db) != 0) {
                pl__store_rollback(db);
                err = PL_ESTORE;
            }
        }
    }
    free(wtext);
    build_free(&b);
    dlist_free(&d);
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

static void peer_name(char *out, size_t cap, const char *conv, const char *user, const char *dev)
{
    snprintf(out, cap, "skp:%s:%s:%s", conv, user, dev);
}

/* The receiving sender-key states of (conv, user, dev); a new record when there is none and
 * create is set, else PL_ENOTFOUND. */
static int peer_rec_load(sqlite3 *db, const char *sp, const char *conv, const char *user,
                         const char *dev, bool create, pl_sk_peer **out)
{
    char name[256];
    peer_name(name, sizeof name, conv, user, dev);
    unsigned char *p;
    size_t n;
    *out = NULL;
    int err = kget(db, sp, name, &p, &n);
    if (err == PL_ENOTFOUND && create)
        return pl_sk_peer_new(out, conv, user, dev) == 0 ? 0 : PL_ENOMEM;
    if (err) return err;
    err = pl_sk_peer_deserialize(out, p, n) == 0 ? 0 : PL_ESTORE;
    kfree(p, n);
    return err;
}

static int peer_rec_save(sqlite3 *db, const char *sp, const char *conv, const char *user,
                         const char *dev, const pl_sk_peer *rec)
{
    char name[256];
    peer_name(name, sizeof name, conv, user, dev);
    size_t cap = pl_sk_peer_serialized_size(rec), n;
    unsigned char *p = malloc(cap);
    if (!p) return PL_ENOMEM;
    int err = pl_sk_peer_serialize(rec, p, cap, &n) == 0 ? kput(db, sp, name, p, n) : PL_ESTORE;
    kfree(p, cap);
    return err;
}

/* Decrypts a pairwise message from (from, dev) on its session, or as X3DH responder for a new
 * PREKEY_MSG (pinning or re-pinning the sender's AIK; this account's own devices must carry
 * this device's AIK). *s gets the advanced session (not saved yet). An e2e core error code. */
static int pairwise_decrypt(pl_client *c, sqlite3 *db, const pl_e2e_self *self, const char *from,
                            const char *dev, const unsigned char *ct, size_t len,
                            pl_e2e_session **s, pl_e2e_out *o, bool *changed_aik)
{
    const char *sp = c->store_path;
    int type = pl_e2e_msg_type(ct, len), r = 0;
    bool have = session_load(db, sp, from, dev, s) == 0;
    bool own = strcmp(from, self->user) == 0;
    pl_prekey_msg pm;
    if (type == PL_WIRE_PREKEY && (r = pl_prekey_msg_parse(&pm, ct, len)) == 0 &&
        !(have && sodium_memcmp(pm.ek_hash, pl_e2e_session_ek_hash(*s), 32) == 0)) {
        pin p;
        if (own) {
            memcpy(p.aik, self->aik_pub, 32); /* never re-pinned: a mismatch fails below */
            p.verified = 1;
        } else {
            bool pinned = pin_get(db, sp, from, &p) == 0;
            if (pinned && sodium_memcmp(p.aik, pm.aik, 32) != 0) {
                /* a new identity key: re-pin (a verified contact must be verified again) */
                *changed_aik = true;
                p.verified = p.verified == 1 ? 2 : 0;
            } else if (!pinned) {
                p.verified = 0;
            }
            memcpy(p.aik, pm.aik, 32);
        }
        pl_prekey spk, opk;
        bool have_spk = spk_find(db, sp, pm.spk_id, &spk) == 0;
        char oname[32];
        snprintf(oname, sizeof oname, "opk:%u", (unsigned)pm.opk_id);
        bool no_opk = pm.opk_id == PL_OPK_NONE;
        bool have_opk = !no_opk && kget_fixed(db, sp, oname, &opk, sizeof opk) == 0;
        /* without an OPK the message could be replayed: that SPK's replay cache decides */
        pl_replay_cache rc = {0};
        if (have_spk && no_opk && replay_load(db, sp, pm.spk_id, &rc) != 0) r = PL_E2E_ESTATE;
        pl_respond_keys k = {.pinned_aik = p.aik,
                             .from_user = from,
                             .from_dev = dev,
                             .spk = have_spk ? &spk : NULL,
                             .opk = have_opk ? &opk : NULL,
                             .replay = &rc};
        pl_e2e_session *ns = NULL;
        if (r == 0) r = pl_x3dh_respond(&ns, self, &k, ct, len, (uint64_t)now_ms(), o);
        sodium_memzero(&spk, sizeof spk);
        sodium_memzero(&opk, sizeof opk);
        if (r == 0) {
            pl_e2e_session_free(*s);
            *s = ns;
            if (no_opk && replay_add(db, sp, pm.spk_id, &rc, pm.ek_hash) != 0) r = PL_E2E_ENOMEM;
            if (have_opk) kdel(db, oname);
            if (!own && pin_put(db, sp, from, &p) != 0) r = PL_E2E_ENOMEM;
        } else {
            *changed_aik = false;
        }
        pl_replay_cache_free(&rc);
    } else if (r == 0 && (type == PL_WIRE_PREKEY || type == PL_WIRE_MSG)) {
        r = have ? pl_e2e_session_decrypt(*s, ct, len, (uint64_t)now_ms(), o) : PL_E2E_ENOKEY;
        pl_e2e_session *in = NULL;
        if (r != 0 && session_load_as(db, sp, "si", from, dev, &in) == 0 &&
            pl_e2e_session_decrypt(in, ct, len, (uint64_t)now_ms(), o) == 0) {
            /* the inactive session opened it: it becomes the active one, and the other one
             * (unchanged by its failure) the inactive one */
            char name[160];
            snprintf(name, sizeof name, "si:%s:%s", from, dev);
            r = have ? session_save_as(db, sp, "si", from, dev, *s) : kdel(db, name);
            r = r == 0 ? 0 : PL_E2E_ENOMEM;
            pl_e2e_session_free(*s);
            *s = in;
            in = NULL;
        }
        pl_e2e_session_free(in);
    } else if (r == 0) {
        r = type < 0 ? type : PL_E2E_EVERSION;
    }
    return r;
}

/* The CONTENT payload checked against the frame (E2E.md §7.1): a copy of f with its kind and
 * body, or a placeholder. In a group `to` must be the conversation; in a direct one the
 * conversation of the sender and `to`. */
static json_t *content_frame(json_t *f, const unsigned char *pt, size_t len, const char *from,
                             const char *cmid, const char *conv)
{
    json_t *content = json_loadb((const char *)pt, len, 0, NULL), *g;
    const char *cto = json_string_value(json_object_get(content, "to"));
    const char *ccmid = json_string_value(json_object_get(content, "cmid"));
    const char *kind = json_string_value(json_object_get(content, "kind"));
    json_t *cbody = json_object_get(content, "body");
    char direct[ID_MAX] = "";
    if (cto && strncmp(cto, "u_", 2) == 0) conv_direct_id(direct, from, cto);
    if (!cto || !ccmid || !kind || !json_is_object(cbody) || strcmp(kind, "e2e") == 0) {
        g = undecryptable(f, "malformed content");
    } else if (strcmp(ccmid, cmid) != 0 || (strcmp(cto, conv) != 0 && strcmp(direct, conv) != 0)) {
        g = undecryptable(f, "the message was replayed from another conversation");
    } else {
        g = json_deep_copy(f);
        json_object_set_new(g, "kind", json_string(kind));
        json_object_set(g, "body", cbody);
    }
    json_decref(content);
    return g;
}

/* ------------------------------------------------------------------- parked group messages */

#define PARK_MAX    200 /* per (conv, sender device) */
#define PARK_TTL_MS (7LL * 24 * 3600 * 1000)

static int park_prefix(char *out, size_t cap, const char *conv, const char *user, const char *dev)
{
    return snprintf(out, cap, "park:%s:%s:%s:", conv, user, dev);
}

/* The names of the parked messages of one sender device, oldest seq first. */
static int park_names(sqlite3 *db, const char *pfx, char ***names, size_t *n)
{
    *names = NULL;
    *n = 0;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "SELECT name FROM e2e_keys WHERE substr(name, 1, ?) = ? ORDER BY name",
                           -1, &st, NULL) != SQLITE_OK)
        return PL_ESTORE;
    sqlite3_bind_int(st, 1, (int)strlen(pfx));
    sqlite3_bind_text(st, 2, pfx, -1, SQLITE_STATIC);
    int err = 0;
    while (!err && sqlite3_step(st) == SQLITE_ROW) {
        char **v = realloc(*names, (*n + 1) * sizeof *v);
        if (!v) {
            err = PL_ENOMEM;
            break;
        }
        *names = v;
        if (!(v[*n] = strdup((const char *)sqlite3_column_text(st, 0))))
            err = PL_ENOMEM;
        else
            (*n)++;
    }
    sqlite3_finalize(st);
    return err;
}

/* Keeps an SKMSG whose sender key has not arrived (E2E.md §7.2): at most PARK_MAX per sender
 * device, for PARK_TTL_MS. True when it was parked. */
static bool park(pl_client *c, sqlite3 *db, const char *conv, const char *from, const char *dev,
                 json_t *f, const char *gs, bool *expired)
{
    char pfx[256], name[300];
    int pl = park_prefix(pfx, sizeof pfx, conv, from, dev);
    char **names;
    size_t n, k = 0;
    if (pl <= 0 || (size_t)pl >= sizeof pfx || park_names(db, pfx, &names, &n) != 0) return false;
    /* the oldest first: those parked PARK_TTL_MS ago never got their key and are dropped */
    for (; k < n; k++) {
        unsigned char *v;
        size_t vn;
        if (kget(db, c->store_path, names[k], &v, &vn) != 0) break;
        json_t *j = json_loadb((const char *)v, vn, 0, NULL);
        kfree(v, vn);
        json_int_t at = json_integer_value(json_object_get(j, "at"));
        json_decref(j);
        if (now_ms() - at < PARK_TTL_MS || kdel(db, names[k]) != 0) break;
        *expired = true;
    }
    strs_free(names, n);
    n -= k;
    json_t *seq = json_object_get(f, "seq");
    if (n >= PARK_MAX || !json_is_integer(seq)) return false;
    snprintf(name, sizeof name, "%s%020lld", pfx, (long long)json_integer_value(seq));
    json_t *j = json_pack("{s:O, s:O, s:s, s:I}", "seq", seq, "cmid", json_object_get(f, "cmid"),
                          "g", gs, "at", (json_int_t)now_ms());
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    bool ok = text && kput(db, c->store_path, name, text, strlen(text)) == 0;
    free(text);
    return ok;
}

/* After an SKDM from (from, dev) was installed in rec: decrypts the parked SKMSGs it opens,
 * replaces their "could not decrypt" rows with the content and reports each as a
 * PL_EV_MESSAGE again (same local_id and seq). Those that can never open are dropped. */
static void unpark(pl_client *c, sqlite3 *db, const char *conv, const char *from, const char *dev,
                   pl_sk_peer *rec)
{
    char pfx[256];
    char **names;
    size_t n;
    park_prefix(pfx, sizeof pfx, conv, from, dev);
    if (park_names(db, pfx, &names, &n) != 0) return;
    unsigned char *pt = malloc(PL_E2E_PAYLOAD_MAX + 1);
    bool changed = false;
    for (size_t i = 0; pt && i < n; i++) {
        unsigned char *v;
        size_t vn;
        if (kget(db, c->store_path, names[i], &v, &vn) != 0) continue;
        json_t *j = json_loadb((const char *)v, vn, 0, NULL);
        kfree(v, vn);
        const char *gs = json_string_value(json_object_get(j, "g"));
        const char *cmid = json_string_value(json_object_get(j, "cmid"));
        json_int_t seq = json_integer_value(json_object_get(j, "seq"));
        json_int_t at = json_integer_value(json_object_get(j, "at"));
        size_t cap = gs ? strlen(gs) + 1 : 1, len;
        unsigned char *ct = malloc(cap);
        pl_e2e_out o = {.buf = pt, .cap = PL_E2E_PAYLOAD_MAX};
        int r = !gs || !cmid || !ct || unb64(ct, cap, &len, gs) != 0
                    ? PL_E2E_EFORMAT
                    : pl_sk_decrypt(rec, ct, len, (uint64_t)now_ms(), &o);
        free(ct);
        if (r == PL_E2E_ENOKEY && now_ms() - at < PARK_TTL_MS) { /* another key's: wait on */
            json_decref(j);
            continue;
        }
        kdel(db, names[i]);
        if (r == 0) {
            changed = true;
            json_t *f = json_pack("{s:s, s:s, s:s, s:s, s:s}", "from", from, "dev", dev, "cmid",
                                  cmid, "conv", conv, "kind", "e2e");
            json_t *g = content_frame(f, pt, o.len, from, cmid, conv);
            const char *kind = json_string_value(json_object_get(g, "kind"));
            char *body = json_dumps(json_object_get(g, "body"), JSON_COMPACT);
            sqlite3_stmt *st = NULL;
            int64_t local_id = 0;
            if (kind && body &&
                sqlite3_prepare_v2(db,
                                   "UPDATE messages SET kind = ?, body = ? WHERE conv = ? AND "
                                   "seq = ? AND kind = 'undecryptable' RETURNING local_id",
                                   -1, &st, NULL) == SQLITE_OK) {
                sqlite3_bind_text(st, 1, kind, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 2, body, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 3, conv, -1, SQLITE_STATIC);
                sqlite3_bind_int64(st, 4, seq);
                if (sqlite3_step(st) == SQLITE_ROW) local_id = sqlite3_column_int64(st, 0);
                sqlite3_step(st);
            }
            sqlite3_finalize(st);
            pl_event ev = {.kind = PL_EV_MESSAGE};
            if (local_id && pl__store_msg_get(db, local_id, &ev.msg) == 0) pl__ev_push(c, &ev);
            if (body) sodium_memzero(body, strlen(body));
            free(body);
            json_decref(g);
            json_decref(f);
        }
        json_decref(j);
    }
    if (pt) sodium_memzero(pt, PL_E2E_PAYLOAD_MAX + 1);
    free(pt);
    strs_free(names, n);
    if (changed) peer_rec_save(db, c->store_path, conv, from, dev, rec);
}

/* ----------------------------------------------------------------------------------- RETRY */

#define RETRY_EVERY_MS (10LL * 60 * 1000) /* at most one per (peer device, conv) */

static void retry_name(char *out, size_t cap, const char *conv, const char *user, const char *dev)
{
    snprintf(out, cap, "rq:%s:%s:%s", conv, user, dev);
}

/* Queues a RETRY (E2E.md §7.3) for the message f of (from, dev) that could not be decrypted,
 * unless one went to that device for this conversation less than RETRY_EVERY_MS ago (meta
 * "retry:<conv>:<user>:<device>", the time it was queued). The request is the sealed
 * "rq:<conv>:<user>:<device>" ({conv, to, user, dev, seq, why}), which pl__e2e_retries turns
 * into an outbox row. Inside the caller's transaction; true when queued. */
static bool retry_queue(pl_client *c, sqlite3 *db, const pl_e2e_self *self, json_t *f,
                        const char *from, const char *dev, const char *conv, const char *why)
{
    char key[320], name[320], to[PL_ID_MAX] = "";
    snprintf(key, sizeof key, "retry:%s:%s:%s", conv, from, dev);
    int64_t last = pl__meta_get_int(db, key), now = now_ms();
    json_t *seq = json_object_get(f, "seq");
    if ((last > 0 && now - last < RETRY_EVERY_MS) || !json_is_integer(seq)) return false;
    if (strncmp(conv, "g_", 2) == 0 || strcmp(from, self->user) != 0) {
        snprintf(to, sizeof to, "%s", strncmp(conv, "g_", 2) == 0 ? conv : from);
    } else { /* a copy from another device of this account: the conversation's peer */
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(db, "SELECT peer FROM convs WHERE id = ?", -1, &st, NULL) ==
            SQLITE_OK) {
            sqlite3_bind_text(st, 1, conv, -1, SQLITE_STATIC);
            if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
                snprintf(to, sizeof to, "%s", (const char *)sqlite3_column_text(st, 0));
        }
        sqlite3_finalize(st);
    }
    if (!pl_id_valid(to)) return false;
    json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:O, s:s}", "conv", conv, "to", to, "user", from,
                          "dev", dev, "seq", seq, "why", why);
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    retry_name(name, sizeof name, conv, from, dev);
    bool ok = text && kput(db, c->store_path, name, text, strlen(text)) == 0 &&
              pl__meta_set_int(db, key, now) == 0;
    free(text);
    return ok;
}

/* The queued RETRY `name` as an outbox row of kind "ctl" (body {}, never shown): the payload
 * {conv, seq, why} as a PL_CT_RETRY pairwise message on the session with that device (X3DH
 * from a claimed bundle when there is none), in the e2e body {v, ctl: true, devs: [that one
 * entry]}. New session, row and the end of the request in one transaction. PL_ENOTFOUND: it
 * can never go (no pinned key, the device is gone). */
static int retry_build(pl_client *c, sqlite3 *db, const char *base, const char *token,
                       const pl_e2e_self *self, const char *me, const char *mydev, const char *name)
{
    const char *sp = c->store_path;
    unsigned char *v;
    size_t vn;
    int err = kget(db, sp, name, &v, &vn);
    if (err) return err;
    json_t *j = json_loadb((const char *)v, vn, 0, NULL);
    kfree(v, vn);
    const char *conv = json_string_value(json_object_get(j, "conv"));
    const char *to = json_string_value(json_object_get(j, "to"));
    const char *user = json_string_value(json_object_get(j, "user"));
    const char *dev = json_string_value(json_object_get(j, "dev"));
    const char *why = json_string_value(json_object_get(j, "why"));
    json_t *seq = json_object_get(j, "seq");
    dpeer p = {0};
    pin pn;
    if (!conv || !to || !user || !dev || !why || !json_is_integer(seq) ||
        strlen(user) >= sizeof p.user) {
        err = PL_ENOTFOUND;
    } else if (strcmp(user, self->user) == 0) {
        memcpy(p.aik, self->aik_pub, 32);
    } else if (pin_get(db, sp, user, &pn) == 0) {
        memcpy(p.aik, pn.aik, 32);
    } else {
        err = PL_ENOTFOUND; /* no key to check its devices against */
    }
    json_t *payload =
        err ? NULL : json_pack("{s:s, s:O, s:s}", "conv", conv, "seq", seq, "why", why);
    char *pt = payload ? json_dumps(payload, JSON_COMPACT) : NULL;
    json_decref(payload);
    if (!err && !pt) err = PL_ENOMEM;
    build b = {.conv = conv};
    json_t *out = json_array();
    if (!err) {
        snprintf(p.user, sizeof p.user, "%s", user);
        char *devs[] = {(char *)dev};
        err = entries_for(c, db, base, token, self, &b, &p, devs, 1, PL_CT_RETRY,
                          (const unsigned char *)pt, strlen(pt), out);
        if (!err && json_array_size(out) != 1) err = PL_ENOTFOUND; /* gone from the server */
    }
    json_t *wire = err ? NULL : json_pack("{s:i, s:b, s:O}", "v", 1, "ctl", 1, "devs", out);
    char *wtext = wire ? json_dumps(wire, JSON_COMPACT) : NULL;
    if (!err && !wtext) err = PL_ENOMEM;
    if (!err) {
        char cmid[ID_MAX];
        id_new(cmid, "c_");
        int64_t id;
        if (pl__store_begin(db) != 0) {
            err = PL_ESTORE;
        } else {
            for (size_t i = 0; !err && i < b.nss; i++)
                if (session_save(db, sp, b.ss[i].user, b.ss[i].dev, b.ss[i].s) != 0)
                    err = PL_ESTORE;
            if (!err)
                err = pl__store_outbox_insert(db, me, mydev, to, conv, "ctl", "{}", 0, cmid, wtext,
                                              &id);
            if (!err) err = kdel(db, name);
            if (err || pl__store_commit(db) != 0) {
                pl__store_rollback(db);
                err = PL_ESTORE;
            }
        }
    }
    free(wtext);
    json_decref(wire);
    json_decref(out);
    build_free(&b);
    if (pt) sodium_memzero(pt, strlen(pt));
    free(pt);
    json_decref(j);
    return err;
}

void pl__e2e_retries(pl_client *c, sqlite3 *db, const char *base, const char *token, const char *me,
                     const char *mydev)
{
    char **names;
    size_t n;
    pl_e2e_self self;
    if (park_names(db, "rq:", &names, &n) != 0) return;
    if (n > 0 && self_load(db, c->store_path, &self) == 0) {
        for (size_t i = 0; i < n; i++) {
            int err = retry_build(c, db, base, token, &self, me, mydev, names[i]);
            if (err == PL_ENET || err == PL_ETIMEDOUT) break; /* stays queued for later */
            if (err) kdel(db, names[i]);                      /* it can never go */
        }
        pl_e2e_self_wipe(&self);
    }
    strs_free(names, n);
}

/* A RETRY from (from, dev) in conv (E2E.md §7.3): "session" makes the session with that device
 * inactive ("si:", replacing an older inactive one), so the next send to it runs X3DH; "sender_key"
 * removes it from this device's sent_to for the group, so the next group message carries an SKDM
 * for it. In a group every pairwise entry is an SKDM, so "session" there does both. The lost
 * content is not sent again. */
static void retry_apply(pl_client *c, sqlite3 *db, const char *conv, const char *from,
                        const char *dev, const unsigned char *pt, size_t len)
{
    json_t *j = json_loadb((const char *)pt, len, 0, NULL);
    const char *rconv = json_string_value(json_object_get(j, "conv"));
    const char *why = json_string_value(json_object_get(j, "why"));
    bool session = why && strcmp(why, "session") == 0;
    bool skey = why && strcmp(why, "sender_key") == 0;
    if (rconv && strcmp(rconv, conv) == 0 && (session || skey)) {
        pl_e2e_session *s = NULL;
        if (session && session_load(db, c->store_path, from, dev, &s) == 0 &&
            session_save_as(db, c->store_path, "si", from, dev, s) == 0) {
            char name[160];
            snprintf(name, sizeof name, "s:%s:%s", from, dev);
            kdel(db, name);
        }
        pl_e2e_session_free(s);
        pl_sk_sender *sk = NULL;
        if (strncmp(conv, "g_", 2) == 0 && sender_load(db, c->store_path, conv, &sk) == 0 &&
            pl_sk_sender_sent_to_has(sk, from, dev) &&
            pl_sk_sender_sent_to_remove(sk, from, dev) == 0)
            sender_save(db, c->store_path, conv, sk);
        pl_sk_sender_free(sk);
    }
    json_decref(j);
}

json_t *pl__e2e_receive(pl_client *c, sqlite3 *db, const char *me, json_t *f, bool *changed_aik,
                        bool *retry)
{
    (void)me;
    *changed_aik = false;
    *retry = false;
    const char *sp = c->store_path;
    const char *from = json_string_value(json_object_get(f, "from"));
    const char *dev = json_string_value(json_object_get(f, "dev"));
    const char *cmid = json_string_value(json_object_get(f, "cmid"));
    const char *conv = json_string_value(json_object_get(f, "conv"));
    json_t *body = json_object_get(f, "body");
    if (!from || !dev || !cmid || !conv) return NULL;
    bool ctl = json_is_true(json_object_get(body, "ctl")); /* a control message: never shown */
    bool group = strncmp(conv, "g_", 2) == 0;
    const char *cs = json_string_value(json_object_get(body, "c"));
    const char *gs = json_string_value(json_object_get(body, "g"));
    if (ctl && !cs) return NULL; /* one for another device */
    if (!cs && !(group && gs)) return undecryptable(f, "it was not encrypted for this device");
    size_t cap = (cs ? strlen(cs) : 0) + (gs ? strlen(gs) : 0), len;
    unsigned char *ct = malloc(cap + 1);
    unsigned char *pt = malloc(PL_E2E_PAYLOAD_MAX + 1);
    pl_e2e_self self;
    bool have_self = false;
    pl_e2e_session *s = NULL;
    pl_sk_peer *rec = NULL;
    const char *why = NULL, *retry_why = NULL;
    pl_e2e_out o = {.buf = pt, .cap = PL_E2E_PAYLOAD_MAX};
    bool content = false;
    if (!ct || !pt) {
        why = "out of memory";
    } else if (self_load(db, sp, &self) != 0) {
        why = "this device has no keys";
    } else {
        have_self = true;
    }
    /* c first: it may hold the sender key the group ciphertext needs */
    if (!why && cs) {
        int r = unb64(ct, cap + 1, &len, cs) != 0
                    ? PL_E2E_EFORMAT
                    : pairwise_decrypt(c, db, &self, from, dev, ct, len, &s, &o, changed_aik);
        if (r == 0 && session_save(db, sp, from, dev, s) != 0) r = PL_E2E_ENOMEM;
        if (r != 0) {
            why = pl_e2e_strerror(r);
            if (r != PL_E2E_EREPLAY) retry_why = "session";
        } else if (ctl) {
            if (o.ctype == PL_CT_RETRY) retry_apply(c, db, conv, from, dev, pt, o.len);
        } else if (o.ctype == PL_CT_SKDM) {
            /* installed only from the session with the sending device, for this conv */
            if (!group) {
                why = "a group key arrived in a direct conversation";
            } else if ((r = peer_rec_load(db, sp, conv, from, dev, true, &rec)) != 0 ||
                       pl_sk_peer_install(rec, s, conv, pt, o.len, (uint64_t)now_ms()) < 0 ||
                       peer_rec_save(db, sp, conv, from, dev, rec) != 0) {
                why = "the sender's group key was refused";
            } else {
                unpark(c, db, conv, from, dev, rec);
            }
        } else if (o.ctype == PL_CT_CONTENT) {
            if (group)
                why = "a pairwise message in a group";
            else
                content = true;
        }
    }
    if (group && gs && !content && !ctl) {
        /* a failed c does not hide a g this device can read with a key it holds */
        int r = unb64(ct, cap + 1, &len, gs) != 0 ? PL_E2E_EFORMAT : 0;
        if (!r && !rec) r = peer_rec_load(db, sp, conv, from, dev, false, &rec);
        if (r == PL_ENOTFOUND) r = PL_E2E_ENOKEY;
        if (!r && have_self)
            r = pl_sk_decrypt(rec, ct, len, (uint64_t)now_ms(), &o);
        else if (!r)
            r = PL_E2E_ENOKEY;
        if (!r && peer_rec_save(db, sp, conv, from, dev, rec) != 0) r = PL_E2E_ENOMEM;
        if (r == 0) {
            content = true;
            why = NULL;
        } else if (!why) {
            /* the key is given up on when it cannot be parked, or when a parked message of
             * that device waited PARK_TTL_MS for it: then a RETRY asks for it again */
            bool expired = false,
                 parked = r == PL_E2E_ENOKEY && park(c, db, conv, from, dev, f, gs, &expired);
            why = r != PL_E2E_ENOKEY ? pl_e2e_strerror(r)
                  : parked ? "the sender's group key has not arrived yet; it shows when it does"
                           : "the sender's group key never reached this device";
            if (r == PL_E2E_ENOKEY && have_self && (!parked || expired)) retry_why = "sender_key";
        }
    }
    json_t *g = NULL;
    if (ctl)
        g = NULL; /* applied above, or refused: nothing to show either way */
    else if (content)
        g = content_frame(f, pt, o.len, from, cmid, conv);
    else if (why)
        g = undecryptable(f, why);
    /* else: an SKDM alone: the session advanced, nothing to show */
    if (!ctl && retry_why && have_self && retry_queue(c, db, &self, f, from, dev, conv, retry_why))
        *retry = true;
    pl_e2e_session_free(s);
    pl_sk_peer_free(rec);
    if (have_self) pl_e2e_self_wipe(&self);
    if (pt) sodium_memzero(pt, PL_E2E_PAYLOAD_MAX + 1);
    free(pt);
    free(ct);
    return g;
}

/* -------------------------------------------------------------------------------- groups */

int pl_group_set_encrypted(pl_client *c, const char *group)
{
    if (!c->token) return pl__fail(c, PL_ENOSESSION, NULL);
    if (!group || strncmp(group, "g_", 2) != 0 || !pl_id_valid(group))
        return pl__fail(c, PL_EINVAL, "a group id (g_...) is needed");
    char path[128];
    snprintf(path, sizeof path, "/v1/groups/%s", group);
    json_t *body = json_pack("{s:b}", "e2e", 1), *resp = NULL;
    long status = 0;
    int err = pl__rest(c, "PATCH", path, c->token, body, &status, &resp);
    json_decref(body);
    json_decref(resp);
    if (err) return err;
    char key[96];
    snprintf(key, sizeof key, "e2eg:%s", group);
    if (pl__meta_set_int(c->db, key, 1) != 0) return pl__fail(c, PL_ESTORE, NULL);
    c->errmsg[0] = 0;
    return 0;
}

bool pl_group_encrypted(pl_client *c, const char *group)
{
    return group && meta_flag(c->db, "e2eg:", group);
}

void pl__e2e_on_system(sqlite3 *db, const char *conv, json_t *body)
{
    const char *ev = json_string_value(json_object_get(body, "event"));
    if (!ev || strncmp(conv, "g_", 2) != 0) return;
    char key[96];
    if (strcmp(ev, "removed") == 0 || strcmp(ev, "left") == 0) {
        /* a member left D(conv): a new sender state before the next send (E2E.md §7.3) */
        snprintf(key, sizeof key, "skrot:%s", conv);
        pl__meta_set_int(db, key, 1);
    } else if (strcmp(ev, "changed") == 0 && json_is_true(json_object_get(body, "e2e"))) {
        snprintf(key, sizeof key, "e2eg:%s", conv);
        pl__meta_set_int(db, key, 1);
    }
}
