/* e2ehelp.h: what the end-to-end client tests share: reading a sealed key out of a device store,
 * base64url, and publishing a bundle for a second device by hand, certified with a user's AIK. */
#ifndef PARLEY_TESTS_E2EHELP_H
#define PARLEY_TESTS_E2EHELP_H

#include "chelp.h"

#include "client/e2e/e2e.h"

#include <sodium.h>
#include <sqlite3.h>

/* The sealed value `name` of t's store (as e2ec.c seals it); *n its length; free() it. */
static inline unsigned char *e2e_unseal(tcl *t, const char *name, size_t *n)
{
    char kp[PATH_MAX + 32];
    snprintf(kp, sizeof kp, "%s.key", t->store);
    FILE *f = fopen(kp, "rb");
    assert_non_null(f);
    unsigned char lk[32];
    assert_int_equal(fread(lk, 1, 32, f), 32);
    fclose(f);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(t->store, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    sqlite3_stmt *st;
    assert_int_equal(
        sqlite3_prepare_v2(db, "SELECT value FROM e2e_keys WHERE name = ?", -1, &st, NULL),
        SQLITE_OK);
    sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    const unsigned char *c = sqlite3_column_blob(st, 0);
    size_t cl = (size_t)sqlite3_column_bytes(st, 0);
    assert_true(cl > 40);
    *n = cl - 40;
    unsigned char *out = malloc(*n);
    assert_non_null(out);
    assert_int_equal(crypto_secretbox_open_easy(out, c + 24, cl - 24, c, lk), 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return out;
}

/* The sealed value `name` of t's store into out, which must be exactly size bytes. */
static inline void e2e_unseal_to(tcl *t, const char *name, void *out, size_t size)
{
    size_t n;
    unsigned char *v = e2e_unseal(t, name, &n);
    assert_int_equal(n, size);
    memcpy(out, v, size);
    sodium_memzero(v, n);
    free(v);
}

/* Runs sql (its ? bound to the args given, NULL for none) on the database at path; the
 * integer of the first column of the first row, or -1 when there is no row. */
static inline int64_t db_int(const char *path, const char *sql, const char *a1, const char *a2)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    if (a1) sqlite3_bind_text(st, 1, a1, -1, SQLITE_TRANSIENT);
    if (a2) sqlite3_bind_text(st, 2, a2, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st);
    assert_true(rc == SQLITE_ROW || rc == SQLITE_DONE);
    int64_t v = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

/* One text column of the first row of sql (one ? bound to arg) in the database file path. */
static inline char *db_text(const char *path, const char *sql, const char *arg)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    sqlite3_bind_text(st, 1, arg, -1, SQLITE_TRANSIENT);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    char *s = strdup((const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_close(db);
    return s;
}

static inline void b64url(char *out, size_t cap, const unsigned char *p, size_t n)
{
    sodium_bin2base64(out, cap, p, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

static inline size_t unb64url(unsigned char *out, size_t cap, const char *s)
{
    size_t n = 0;
    assert_non_null(s);
    assert_int_equal(sodium_base642bin(out, cap, s, strlen(s), NULL, &n, NULL,
                                       sodium_base64_VARIANT_URLSAFE_NO_PADDING),
                     0);
    return n;
}

/* Publishes, as dev (a second device of user_id), a bundle certified by aik with signed prekey 7
 * and no one-time prekeys; asserts the server takes it. The device's keys go to *self2 and *spk
 * (a responder needs them to answer X3DH). */
static inline void e2e_publish_by_hand(int port, const pl_sign_pair *aik, const char *user_id,
                                       const tuser *dev, pl_e2e_self *self2, pl_prekey *spk)
{
    assert_int_equal(pl_e2e_self_create(self2, aik, user_id, dev->device, 1234), 0);
    assert_int_equal(pl_prekey_generate(spk, 7), 0);
    unsigned char sig[64];
    assert_int_equal(pl_spk_sign(sig, aik, user_id, dev->device, spk->id, spk->kp.pk), 0);
    char dc[400], pub[64], sg[100];
    b64url(dc, sizeof dc, self2->dcert, self2->dcert_len);
    b64url(pub, sizeof pub, spk->kp.pk, 32);
    b64url(sg, sizeof sg, sig, 64);
    int status;
    json_t *r = NULL;
    assert_int_equal(thttp_reqp(port, "PUT", "/v1/keys/bundle", dev->token, &status, &r,
                                "{s:s, s:{s:i, s:s, s:s}}", "dcert", dc, "spk", "id", 7, "pub", pub,
                                "sig", sg),
                     0);
    json_decref(r);
    assert_int_equal(status, 200);
}

#endif
