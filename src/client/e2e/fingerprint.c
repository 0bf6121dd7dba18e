/* fingerprint.c: safety numbers (E2E.md §9), the iterated SHA-512 of libsignal's fingerprint
 * with Parley's parameters (version 0, key 0x01 || AIK_pub, 5200 iterations), the 60-digit
 * number of a pair and the QR payload checked crosswise.
 *
 * pl_fingerprint takes every parameter so that Signal's published vector (33-byte keys with a
 * 0x05 type byte, phone numbers as ids) runs through the production code.
 */
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "client/e2e/e2e_int.h"

int pl_fingerprint(unsigned char h[64], char digits[PL_FP_DIGITS + 1], unsigned version,
                   const unsigned char *key, size_t keylen, const unsigned char *uid, size_t uidlen,
                   unsigned iterations)
{
    crypto_hash_sha512_state st;
    unsigned char v[2] = {(unsigned char)(version >> 8), (unsigned char)version};
    unsigned char d[64];
    int rc = PL_E2E_ECRYPTO;

    if (key == NULL || keylen == 0 || (uid == NULL && uidlen > 0) || iterations == 0 ||
        version > 0xFFFF)
        return PL_E2E_EINVAL;
    /* round 1: SHA-512(version || key || uid || key) */
    if (crypto_hash_sha512_init(&st) != 0) goto cleanup;
    if (crypto_hash_sha512_update(&st, v, sizeof v) != 0) goto cleanup;
    if (crypto_hash_sha512_update(&st, key, keylen) != 0) goto cleanup;
    if (uidlen > 0 && crypto_hash_sha512_update(&st, uid, uidlen) != 0) goto cleanup;
    if (crypto_hash_sha512_update(&st, key, keylen) != 0) goto cleanup;
    if (crypto_hash_sha512_final(&st, d) != 0) goto cleanup;
    /* rounds 2..iterations: SHA-512(h || key) */
    for (unsigned i = 1; i < iterations; i++) {
        if (crypto_hash_sha512_init(&st) != 0) goto cleanup;
        if (crypto_hash_sha512_update(&st, d, sizeof d) != 0) goto cleanup;
        if (crypto_hash_sha512_update(&st, key, keylen) != 0) goto cleanup;
        if (crypto_hash_sha512_final(&st, d) != 0) goto cleanup;
    }
    if (digits) {
        for (int c = 0; c < 6; c++) {
            uint64_t x = 0;
            for (int i = 0; i < 5; i++) x = (x << 8) | d[c * 5 + i];
            snprintf(digits + c * 5, 6, "%05u", (unsigned)(x % 100000));
        }
    }
    if (h) memcpy(h, d, 64);
    rc = 0;
cleanup:
    sodium_memzero(&st, sizeof st);
    return rc;
}

int pl_fingerprint_user(unsigned char h[64], char digits[PL_FP_DIGITS + 1],
                        const unsigned char aik_pub[32], const char *user)
{
    unsigned char k[33];
    if (aik_pub == NULL || !pl_id_valid(user)) return PL_E2E_EINVAL;
    k[0] = 0x01;
    memcpy(k + 1, aik_pub, 32);
    return pl_fingerprint(h, digits, 0, k, sizeof k, (const unsigned char *)user, strlen(user),
                          PL_FP_ITERATIONS);
}

static bool digits_ok(const char *s)
{
    if (s == NULL || strlen(s) != PL_FP_DIGITS) return false;
    for (size_t i = 0; i < PL_FP_DIGITS; i++)
        if (s[i] < '0' || s[i] > '9') return false;
    return true;
}

int pl_safety_number(char out[PL_SN_DIGITS + 1], const char a[PL_FP_DIGITS + 1],
                     const char b[PL_FP_DIGITS + 1])
{
    if (out == NULL || !digits_ok(a) || !digits_ok(b)) return PL_E2E_EINVAL;
    const char *lo = strcmp(a, b) <= 0 ? a : b, *hi = lo == a ? b : a;
    memcpy(out, lo, PL_FP_DIGITS);
    memcpy(out + PL_FP_DIGITS, hi, PL_FP_DIGITS);
    out[PL_SN_DIGITS] = '\0';
    return 0;
}

int pl_safety_qr(unsigned char out[PL_SN_QR_LEN], const unsigned char h_self[64],
                 const unsigned char h_peer[64])
{
    if (out == NULL || h_self == NULL || h_peer == NULL) return PL_E2E_EINVAL;
    memcpy(out, "PLSN", 4);
    out[4] = 0x01;
    memcpy(out + 5, h_self, 32);
    memcpy(out + 37, h_peer, 32);
    return 0;
}

int pl_safety_qr_check(const unsigned char *qr, size_t len, const unsigned char h_self[64],
                       const unsigned char h_peer[64])
{
    if (qr == NULL || h_self == NULL || h_peer == NULL) return PL_E2E_EINVAL;
    if (len != PL_SN_QR_LEN || memcmp(qr, "PLSN", 4) != 0 || qr[4] != 0x01) return PL_E2E_EFORMAT;
    /* The scanned code is the peer's: its "self" is our peer and its "peer" is us. */
    if (sodium_memcmp(qr + 5, h_peer, 32) != 0 || sodium_memcmp(qr + 37, h_self, 32) != 0)
        return PL_E2E_EIDENTITY;
    return 0;
}
