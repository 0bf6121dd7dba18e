/* kdf.c: the key derivations of E2E.md §2 and §6: HKDF-SHA256 (RFC 5869) on libsodium 1.0.18,
 * which has no crypto_kdf_hkdf_*, and the three ratchet KDFs built on it.
 *
 * libsodium's HMAC is never given a NULL pointer (1.0.18 accepts NULL with length 0 only from
 * 1.0.21 on): an empty salt, info or ikm is passed as a valid pointer with length 0, or skipped.
 * Every call bumps a counter, the test hook that proves an SKMSG signature is checked before any
 * key is derived (E2E.md §16).
 */
#include <stdatomic.h>
#include <string.h>

#include <sodium.h>

#include "client/e2e/e2e_int.h"

static atomic_ulong kdf_calls;

unsigned long pl_e2e_kdf_calls(void)
{
    return atomic_load_explicit(&kdf_calls, memory_order_relaxed);
}

static void count_kdf(void)
{
    atomic_fetch_add_explicit(&kdf_calls, 1, memory_order_relaxed);
}

static int hmac_update(crypto_auth_hmacsha256_state *st, const void *p, size_t n)
{
    if (n == 0) return 0;
    return crypto_auth_hmacsha256_update(st, (const unsigned char *)p, n);
}

int pl_hkdf_extract(unsigned char prk[32], const unsigned char *salt, size_t saltlen,
                    const unsigned char *ikm, size_t ikmlen)
{
    static const unsigned char zeros[32];
    crypto_auth_hmacsha256_state st;
    int rc = PL_E2E_ECRYPTO;

    if (prk == NULL || (ikmlen > 0 && ikm == NULL) || (salt == NULL && saltlen > 0))
        return PL_E2E_EINVAL;
    count_kdf();
    if (salt == NULL) {
        salt = zeros;
        saltlen = sizeof zeros;
    } else if (saltlen == 0) {
        salt = zeros; /* the empty salt, never NULL */
    }
    if (crypto_auth_hmacsha256_init(&st, salt, saltlen) != 0) goto cleanup;
    if (hmac_update(&st, ikm, ikmlen) != 0) goto cleanup;
    if (crypto_auth_hmacsha256_final(&st, prk) != 0) goto cleanup;
    rc = 0;
cleanup:
    sodium_memzero(&st, sizeof st);
    return rc;
}

int pl_hkdf_expand(unsigned char *okm, size_t L, const unsigned char prk[32], const char *info,
                   size_t infolen)
{
    unsigned char t[32], ctr = 1;
    crypto_auth_hmacsha256_state st;
    size_t off = 0, tlen = 0, n;
    int rc = PL_E2E_ECRYPTO;

    if (L > 255 * 32 || (L > 0 && okm == NULL) || prk == NULL || (infolen > 0 && info == NULL))
        return PL_E2E_EINVAL;
    count_kdf();
    /* T(i) = HMAC(PRK, T(i-1) || info || i), T(0) empty */
    for (; off < L; off += n, ctr++) {
        if (crypto_auth_hmacsha256_init(&st, prk, 32) != 0) goto cleanup;
        if (hmac_update(&st, t, tlen) != 0) goto cleanup;
        if (hmac_update(&st, info, infolen) != 0) goto cleanup;
        if (hmac_update(&st, &ctr, 1) != 0) goto cleanup;
        if (crypto_auth_hmacsha256_final(&st, t) != 0) goto cleanup;
        tlen = sizeof t;
        n = (L - off < sizeof t) ? L - off : sizeof t;
        memcpy(okm + off, t, n);
    }
    rc = 0;
cleanup:
    if (rc != 0 && L > 0) sodium_memzero(okm, L);
    sodium_memzero(t, sizeof t);
    sodium_memzero(&st, sizeof st);
    return rc;
}

int pl_hkdf(unsigned char *okm, size_t L, const unsigned char *salt, size_t saltlen,
            const unsigned char *ikm, size_t ikmlen, const char *info, size_t infolen)
{
    unsigned char prk[32];
    if (L > 255 * 32 || (L > 0 && okm == NULL)) return PL_E2E_EINVAL;
    int rc = pl_hkdf_extract(prk, salt, saltlen, ikm, ikmlen);
    if (rc == 0) rc = pl_hkdf_expand(okm, L, prk, info, infolen);
    sodium_memzero(prk, sizeof prk);
    return rc;
}

int pl_kdf_ck(unsigned char seed[32], unsigned char ck_next[32], const unsigned char ck[32])
{
    static const unsigned char one = 0x01, two = 0x02;
    unsigned char s[32], c[32];
    int rc = PL_E2E_ECRYPTO;

    count_kdf();
    if (crypto_auth_hmacsha256(s, &one, 1, ck) != 0) goto cleanup;
    if (crypto_auth_hmacsha256(c, &two, 1, ck) != 0) goto cleanup;
    memcpy(seed, s, 32);
    memcpy(ck_next, c, 32); /* after both: ck_next may be ck */
    rc = 0;
cleanup:
    sodium_memzero(s, sizeof s);
    sodium_memzero(c, sizeof c);
    return rc;
}

int pl_kdf_rk(unsigned char rk_next[32], unsigned char ck[32], const unsigned char rk[32],
              const unsigned char dh[32])
{
    unsigned char okm[64];
    int rc = pl_hkdf(okm, sizeof okm, rk, 32, dh, 32, PL__L_RK, PL__LEN(PL__L_RK));
    if (rc == 0) {
        memcpy(rk_next, okm, 32);
        memcpy(ck, okm + 32, 32);
    }
    sodium_memzero(okm, sizeof okm);
    return rc;
}

int pl_kdf_mk(unsigned char mk[32], const unsigned char seed[32], const char *label)
{
    if (label == NULL) return PL_E2E_EINVAL;
    return pl_hkdf(mk, 32, NULL, 0, seed, 32, label, strlen(label));
}

int pl__chain_step(unsigned char ck[32], unsigned char mk[32], const char *label)
{
    unsigned char seed[32];
    int rc = pl_kdf_ck(seed, ck, ck);
    if (rc == 0) rc = pl_kdf_mk(mk, seed, label);
    sodium_memzero(seed, sizeof seed);
    return rc;
}
