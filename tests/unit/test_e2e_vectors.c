/* test_e2e_vectors.c: the fixed vectors of E2E.md §16 for src/client/e2e, each run through the
 * production functions (pl_hkdf, pl_dh, pl_kdf_ck, pl_x3dh_*_secret, pl_fingerprint), plus the
 * libsodium primitives the design names (XChaCha20-Poly1305, Argon2id), and Parley v1 regression
 * vectors computed independently (Python "cryptography" and hashlib, not this code) for the
 * constructions no public vector covers: the X3DH label, KDF_RK, message keys, AD, DCERT, SPK
 * signature, safety numbers.
 *
 * Sources: RFC 7748 §5.2 and §6.1; Wycheproof testvectors_v1/x25519_test.json tcId 1; RFC 5869
 * appendix A.1-A.3; draft-irtf-cfrg-xchacha-03 §A.3.1; libsignal-protocol-c tests/test_ratchet.c
 * (chain key, test_ratcheting_session_as_bob) and tests/test_fingerprint.c; libsodium
 * test/default/pwhash_argon2id.c and .exp.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "client/e2e/e2e.h"

static void unhex(unsigned char *out, size_t n, const char *hex)
{
    size_t bin_len = 0;
    assert_int_equal(strlen(hex), 2 * n);
    assert_int_equal(sodium_hex2bin(out, n, hex, strlen(hex), NULL, &bin_len, NULL), 0);
    assert_int_equal(bin_len, n);
}

static void assert_hex(const unsigned char *got, size_t n, const char *want)
{
    char buf[1024];
    assert_true(2 * n < sizeof buf);
    sodium_bin2hex(buf, sizeof buf, got, n);
    assert_string_equal(buf, want);
}

static int setup(void **state)
{
    (void)state;
    return pl_e2e_init() == 0 ? 0 : -1;
}

/* ------------------------------------------------------------------------------------ X25519 */

static void test_rfc7748_x25519(void **state)
{
    (void)state;
    unsigned char a_sk[32], b_sk[32], pk[32], s1[32], s2[32], k[32], u[32], out[32];
    /* RFC 7748 §6.1 */
    unhex(a_sk, 32, "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
    unhex(b_sk, 32, "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb");
    assert_int_equal(crypto_scalarmult_base(pk, a_sk), 0);
    assert_hex(pk, 32, "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
    assert_int_equal(pl_dh(s1, b_sk, pk), 0);
    assert_int_equal(crypto_scalarmult_base(pk, b_sk), 0);
    assert_hex(pk, 32, "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
    assert_int_equal(pl_dh(s2, a_sk, pk), 0);
    assert_hex(s1, 32, "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
    assert_memory_equal(s1, s2, 32);
    /* RFC 7748 §5.2, first vector */
    unhex(k, 32, "a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4");
    unhex(u, 32, "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c");
    assert_int_equal(crypto_scalarmult(out, k, u), 0);
    assert_hex(out, 32, "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552");
    assert_int_equal(pl_dh(out, k, u), 0);
    assert_hex(out, 32, "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552");
}

static void test_x25519_low_order_and_bit255(void **state)
{
    (void)state;
    unsigned char k[32], u[32] = {0x01}, out[32];
    unhex(k, 32, "a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4");
    /* u = 1 is of low order: libsodium returns -1, and so does pl_dh */
    assert_int_equal(crypto_scalarmult(out, k, u), -1);
    assert_int_equal(pl_dh(out, k, u), PL_E2E_EKEY);
    memset(u, 0, sizeof u); /* u = 0 too */
    assert_int_equal(pl_dh(out, k, u), PL_E2E_EKEY);
    /* bit 255 set: refused before libsodium (which would mask it) */
    unhex(u, 32, "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c");
    u[31] |= 0x80;
    assert_int_equal(pl_x25519_pub_check(u), PL_E2E_EKEY);
    assert_int_equal(pl_dh(out, k, u), PL_E2E_EKEY);
    u[31] &= 0x7f;
    assert_int_equal(pl_x25519_pub_check(u), 0);
}

static void test_wycheproof_x25519_tc1(void **state)
{
    (void)state;
    unsigned char sk[32], pk[32], out[32];
    unhex(sk, 32, "c8a9d5a91091ad851c668b0736c1c9a02936c0d3ad62670858088047ba057475");
    unhex(pk, 32, "504a36999f489cd2fdbc08baff3d88fa00569ba986cba22548ffde80f9806829");
    assert_int_equal(pl_dh(out, sk, pk), 0);
    assert_hex(out, 32, "436a2c040cf45fea9b29a0cb81b1f41458f863d0d61b453d0a982720d6d61320");
}

/* -------------------------------------------------------------------------------------- HKDF */

static void test_rfc5869_a1(void **state)
{
    (void)state;
    unsigned char ikm[22], salt[13], info[10], prk[32], okm[42];
    memset(ikm, 0x0b, sizeof ikm);
    for (int i = 0; i < 13; i++) salt[i] = (unsigned char)i;
    for (int i = 0; i < 10; i++) info[i] = (unsigned char)(0xf0 + i);
    assert_int_equal(pl_hkdf_extract(prk, salt, sizeof salt, ikm, sizeof ikm), 0);
    assert_hex(prk, 32, "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5");
    assert_int_equal(
        pl_hkdf(okm, sizeof okm, salt, sizeof salt, ikm, sizeof ikm, (char *)info, sizeof info), 0);
    assert_hex(
        okm, 42,
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865");
    memset(okm, 0, sizeof okm);
    assert_int_equal(pl_hkdf_expand(okm, sizeof okm, prk, (char *)info, sizeof info), 0);
    assert_hex(
        okm, 42,
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865");
}

static void test_rfc5869_a2(void **state)
{
    (void)state;
    unsigned char ikm[80], salt[80], info[80], prk[32], okm[82];
    for (int i = 0; i < 80; i++) {
        ikm[i] = (unsigned char)i;
        salt[i] = (unsigned char)(0x60 + i);
        info[i] = (unsigned char)(0xb0 + i);
    }
    assert_int_equal(pl_hkdf_extract(prk, salt, sizeof salt, ikm, sizeof ikm), 0);
    assert_hex(prk, 32, "06a6b88c5853361a06104c9ceb35b45cef760014904671014a193f40c15fc244");
    assert_int_equal(
        pl_hkdf(okm, sizeof okm, salt, sizeof salt, ikm, sizeof ikm, (char *)info, sizeof info), 0);
    assert_hex(okm, 82,
               "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c59045a99cac78272"
               "71cb41c65e590e09da3275600c2f09b8367793a9aca3db71cc30c58179ec3e87c14c01d5c1f3434f"
               "1d87");
}

static void test_rfc5869_a3(void **state)
{
    (void)state;
    static const char *want_prk =
        "19ef24a32c717b167f33a91d6f648bdf96596776afdb6377ac434c1c293ccb04";
    static const char *want_okm =
        "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8";
    unsigned char ikm[22], prk[32], okm[42];
    const unsigned char empty[1] = {0};
    memset(ikm, 0x0b, sizeof ikm);
    /* empty salt (a valid pointer, length 0) */
    assert_int_equal(pl_hkdf_extract(prk, empty, 0, ikm, sizeof ikm), 0);
    assert_hex(prk, 32, want_prk);
    assert_int_equal(pl_hkdf(okm, sizeof okm, empty, 0, ikm, sizeof ikm, "", 0), 0);
    assert_hex(okm, 42, want_okm);
    /* NULL salt means 32 zero bytes, which HMAC treats like the empty key: same result */
    assert_int_equal(pl_hkdf_extract(prk, NULL, 0, ikm, sizeof ikm), 0);
    assert_hex(prk, 32, want_prk);
    assert_int_equal(pl_hkdf(okm, sizeof okm, NULL, 0, ikm, sizeof ikm, NULL, 0), 0);
    assert_hex(okm, 42, want_okm);
}

static void test_hkdf_limits(void **state)
{
    (void)state;
    unsigned char ikm[32] = {1}, big[255 * 32 + 1];
    assert_int_equal(pl_hkdf(big, 255 * 32, NULL, 0, ikm, 32, "x", 1), 0);
    assert_int_equal(pl_hkdf(big, 255 * 32 + 1, NULL, 0, ikm, 32, "x", 1), PL_E2E_EINVAL);
    assert_int_equal(pl_hkdf(NULL, 32, NULL, 0, ikm, 32, "x", 1), PL_E2E_EINVAL);
    assert_int_equal(pl_hkdf(big, 32, NULL, 5, ikm, 32, "x", 1), PL_E2E_EINVAL);
    /* the first 32 bytes do not depend on L */
    unsigned char a[32];
    assert_int_equal(pl_hkdf(a, 32, NULL, 0, ikm, 32, "x", 1), 0);
    assert_memory_equal(a, big, 32);
}

/* --------------------------------------------------------------------------------- XChaCha20 */

static void test_xchacha20poly1305_draft(void **state)
{
    (void)state;
    static const char pt[] = "Ladies and Gentlemen of the class of '99: If I could offer you only "
                             "one tip for the future, sunscreen would be it.";
    unsigned char key[32], nonce[24], ad[12], ct[sizeof pt - 1 + 16], back[sizeof pt];
    unsigned long long clen, plen;
    unhex(key, 32, "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f");
    unhex(nonce, 24, "404142434445464748494a4b4c4d4e4f5051525354555657");
    unhex(ad, 12, "50515253c0c1c2c3c4c5c6c7");
    assert_int_equal(
        crypto_aead_xchacha20poly1305_ietf_encrypt(ct, &clen, (const unsigned char *)pt,
                                                   sizeof pt - 1, ad, sizeof ad, NULL, nonce, key),
        0);
    assert_int_equal(clen, sizeof ct);
    assert_hex(ct, sizeof pt - 1,
               "bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb731c7f1b0b4aa644"
               "0bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b4522f8c9ba40db5d945b11b69b982c1bb9e"
               "3f3fac2bc369488f76b2383565d3fff921f9664c97637da9768812f615c68b13b52e");
    assert_hex(ct + sizeof pt - 1, 16, "c0875924c1c7987947deafd8780acf49");
    assert_int_equal(crypto_aead_xchacha20poly1305_ietf_decrypt(back, &plen, NULL, ct, clen, ad,
                                                                sizeof ad, nonce, key),
                     0);
    assert_int_equal(plen, sizeof pt - 1);
    assert_memory_equal(back, pt, plen);
    ad[0] ^= 1;
    assert_int_equal(crypto_aead_xchacha20poly1305_ietf_decrypt(back, &plen, NULL, ct, clen, ad,
                                                                sizeof ad, nonce, key),
                     -1);
}

/* --------------------------------------------------------------------------------- libsignal */

static void test_libsignal_chain_key(void **state)
{
    (void)state;
    unsigned char ck[32], seed[32], next[32], keys[80];
    unhex(ck, 32, "8ab72d6f4cc5ac0d387eaf463378ddb28edd07385b1cb01250c715982e7ad48f");
    assert_int_equal(pl_kdf_ck(seed, next, ck), 0);
    assert_hex(next, 32, "28e8f8fee54b801eef7c5cfb2f17f32c7b334485bbb70fac6ec10342a246d15d");
    assert_int_equal(pl_hkdf(keys, sizeof keys, NULL, 0, seed, 32, "WhisperMessageKeys", 18), 0);
    assert_hex(keys, 32, "bf51e9d75e0e31031051f82a2491ffc084fa298b7793bd9db620056febf45217");
    assert_hex(keys + 32, 32, "c6c77d6a73a354337a56435e34607dfe48e3ace14e77314dc6abc172e7a7030b");
    /* in place: ck_next may alias ck */
    assert_int_equal(pl_kdf_ck(seed, ck, ck), 0);
    assert_memory_equal(ck, next, 32);
}

static void test_libsignal_x3dh_bob(void **state)
{
    (void)state;
    unsigned char bob_ik[32], bob_spk[32], alice_ik_pub[32], alice_ek_pub[32], pk[32], out[64];
    unhex(bob_ik, 32, "4875cc69ddf8ea0719ec947d61081135868d5fd801f02c0225e516df2156605e");
    unhex(bob_spk, 32, "583900131fb727998b7803fe6ac22cc591f342e4e42a8c8d5d78194209b8d253");
    unhex(alice_ik_pub, 32, "b4a8455660ada65b401007f615e654041746432e3339c6875149bceefcb42b4a");
    unhex(alice_ek_pub, 32, "472d1fb1a9862c3af6beaca8920277e2b26f4a79213ec7c906aeb35e03cf8950");
    assert_int_equal(crypto_scalarmult_base(pk, bob_ik), 0);
    assert_hex(pk, 32, "f1f43874f6966956c2dd473f8fa15adeb71d1cb991b2341692324cefb1c5e626");
    assert_int_equal(crypto_scalarmult_base(pk, bob_spk), 0);
    assert_hex(pk, 32, "ac248a8f263be6863576eb0362e28c828f0107a3379d34bab1586bf8c770cd67");
    /* ikm = 0xFF*32 || DH(SPK, IK_A) || DH(IK_B, EK_A) || DH(SPK, EK_A), as the responder builds */
    assert_int_equal(pl_x3dh_responder_secret(out, 64, "WhisperText", bob_ik, bob_spk, NULL,
                                              alice_ik_pub, alice_ek_pub),
                     0);
    assert_hex(out + 32, 32, "9797caca53c989bbe229a40ca7727010eb2604fc14945d77958a0aeda088b44d");
}

/* Regression only (E2E.md §16): the published Alice EK private key is not clamped, so libsodium
 * derives another public key and another secret. */
static void test_libsignal_x3dh_alice_regression(void **state)
{
    (void)state;
    unsigned char alice_ik[32], alice_ek[32], bob_ik_pub[32], bob_spk_pub[32], pk[32], out[64];
    unhex(alice_ik, 32, "9040f0d4e09cf38f6dc7c13779c908c015a1da4fa78737a080eb0a6f4f5f8f58");
    unhex(alice_ek, 32, "11ae7c64d1e61cd596b76a0db5012673391cae66edbfcf073b4da80516a47449");
    unhex(bob_ik_pub, 32, "f1f43874f6966956c2dd473f8fa15adeb71d1cb991b2341692324cefb1c5e626");
    unhex(bob_spk_pub, 32, "ac248a8f263be6863576eb0362e28c828f0107a3379d34bab1586bf8c770cd67");
    assert_int_equal(crypto_scalarmult_base(pk, alice_ik), 0);
    assert_hex(pk, 32, "b4a8455660ada65b401007f615e654041746432e3339c6875149bceefcb42b4a");
    assert_int_equal(crypto_scalarmult_base(pk, alice_ek), 0);
    assert_hex(pk, 32, "e2c05860f2ac6b2b57ba564b421ffe71e4b128c591e46e0491cc9b33dbf22a27");
    assert_int_equal(pl_x3dh_initiator_secret(out, 64, "WhisperText", alice_ik, alice_ek,
                                              bob_ik_pub, bob_spk_pub, NULL),
                     0);
    assert_hex(out + 32, 32, "ab9be50e5cb22a925446ab90ee5670545f4fd32902459ec274b6ad0ae5d6031a");
}

static void test_signal_safety_number(void **state)
{
    (void)state;
    unsigned char k1[33], k2[33];
    char d1[PL_FP_DIGITS + 1], d2[PL_FP_DIGITS + 1], sn[PL_SN_DIGITS + 1], sn2[PL_SN_DIGITS + 1];
    unhex(k1, 33, "0506863bc66d02b40d27b8d49ca7c09e9239236f9d7d25d6fcca5ce13c7064d868");
    unhex(k2, 33, "05f781b6fb32fed9ba1cf2de978d4d5da28dc34046ae814402b5c0dbd96fda907b");
    assert_int_equal(
        pl_fingerprint(NULL, d1, 0, k1, 33, (const unsigned char *)"+14152222222", 12, 5200), 0);
    assert_int_equal(
        pl_fingerprint(NULL, d2, 0, k2, 33, (const unsigned char *)"+14153333333", 12, 5200), 0);
    assert_int_equal(pl_safety_number(sn, d1, d2), 0);
    assert_string_equal(sn, "300354477692869396892869876765458257569162576843440918079131");
    assert_int_equal(pl_safety_number(sn2, d2, d1), 0); /* the same from either side */
    assert_string_equal(sn, sn2);
}

/* ---------------------------------------------------------------------------------- Argon2id */

static void test_argon2id_vectors(void **state)
{
    (void)state;
    static const char pw1[] = "^T5H$JYt39n%K*j:W]!1s?vg!:jGi]Ax?..l7[p0v:1jHTpla9;]bUN;?bWyCbtqg ";
    /* crypto_pwhash_str_verify declares its argument as char[crypto_pwhash_STRBYTES] */
    static const char str1[crypto_pwhash_STRBYTES] =
        "$argon2id$v=19$m=4096,t=19,p=1$PkEgMTYtYnl0ZXMgc2FsdA$"
        "ltB/ue1kPtBMBGfsysMpPigE6hiNEKZ9vs8vLNVDQGA";
    unsigned char out[190], pw2[82], salt2[16];
    assert_int_equal(crypto_pwhash(out, 32, pw1, strlen(pw1),
                                   (const unsigned char *)">A 16-bytes salt", 19, 4194304,
                                   crypto_pwhash_ALG_ARGON2ID13),
                     0);
    assert_hex(out, 32, "96d07fb9ed643ed04c0467eccac3293e2804ea188d10a67dbecf2f2cd5434060");
    assert_int_equal(crypto_pwhash_str_verify(str1, pw1, strlen(pw1)), 0);

    unhex(pw2, sizeof pw2,
          "4a857e2ee8aa9b6056f2424e84d24a72473378906ee04a46cb05311502d5250b82ad86b83c8f20a23dbb"
          "74f6da60b0b6ecffd67134d45946ac8ebfb3064294bc097d43ced68642bfb8bbbdd0f50b30118f5e");
    unhex(salt2, sizeof salt2, "39d82eef32010b8b79cc5ba88ed539fb");
    assert_int_equal(crypto_pwhash(out, 190, (const char *)pw2, sizeof pw2, salt2, 3, 1432947,
                                   crypto_pwhash_ALG_ARGON2ID13),
                     0);
    assert_hex(out, 190,
               "08d8cd330c57e1b4643241d05bb468ba4ee4e932cd0858816be9ef15360b27bbd06a87130ee92222"
               "be267a29b81f5ae8fe8613324cfc4832dc49387fd0602f1c57b4d0f3855db94fb7e12eb05f9a484a"
               "ed4a4307abf586cd3d55c809bc081541e00b682772fb2066504ff935b8ebc551a2083882f874bc0f"
               "ae68e56848ae34c91097c3bf0cca8e75c0797eef3efde3f75e005815018db3cf7c109a812264c4de"
               "69dcb22322dbbcfa447f5b00ecd1b04a7be1569c8e556adb7bba48adf81d");
}

/* ------------------------------------------------------------------ Parley v1 (regression) */

/* Fixed inputs: DIK_A / DIK_B are the RFC 7748 §6.1 private keys; SPK_B = 0x11*32,
 * OPK_B = 0x22*32, EK_A = 0x33*32, Alice's first DHs = 0x44*32; AIK seeds 0xA1*32 and 0xB1*32;
 * ids u_alice / d_alice1 and u_bob / d_bob1. Expected values were computed with Python's
 * "cryptography" package and hashlib, independently of this code (see docs/e2e.md). */
static void test_parley_v1_x3dh_and_kdfs(void **state)
{
    (void)state;
    unsigned char a_dik[32], b_dik[32], spk[32], opk[32], ek[32], dhs[32];
    unsigned char a_dik_pub[32], b_dik_pub[32], spk_pub[32], opk_pub[32], ek_pub[32], dhs_pub[32];
    unsigned char sk[32], sk_b[32], dh[32], rk[32], ck[32], seed[32], mk[32];
    unhex(a_dik, 32, "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
    unhex(b_dik, 32, "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb");
    memset(spk, 0x11, 32);
    memset(opk, 0x22, 32);
    memset(ek, 0x33, 32);
    memset(dhs, 0x44, 32);
    assert_int_equal(crypto_scalarmult_base(a_dik_pub, a_dik), 0);
    assert_int_equal(crypto_scalarmult_base(b_dik_pub, b_dik), 0);
    assert_int_equal(crypto_scalarmult_base(spk_pub, spk), 0);
    assert_int_equal(crypto_scalarmult_base(opk_pub, opk), 0);
    assert_int_equal(crypto_scalarmult_base(ek_pub, ek), 0);
    assert_int_equal(crypto_scalarmult_base(dhs_pub, dhs), 0);
    assert_hex(spk_pub, 32, "7b4e909bbe7ffe44c465a220037d608ee35897d31ef972f07f74892cb0f73f13");
    assert_hex(ek_pub, 32, "7b0d47d93427f8311160781c7c733fd89f88970aef490d8aa0ee19a4cb8a1b14");

    /* SK without and with OPK, from both sides */
    assert_int_equal(
        pl_x3dh_initiator_secret(sk, 32, "PARLEYv1/X3DH", a_dik, ek, b_dik_pub, spk_pub, NULL), 0);
    assert_hex(sk, 32, "f6d518fe45097c87e0b63f9c36d542ac7d8761e13e06ac66b13a65d7f0900bd6");
    assert_int_equal(
        pl_x3dh_responder_secret(sk_b, 32, "PARLEYv1/X3DH", b_dik, spk, NULL, a_dik_pub, ek_pub),
        0);
    assert_memory_equal(sk, sk_b, 32);
    assert_int_equal(
        pl_x3dh_initiator_secret(sk, 32, "PARLEYv1/X3DH", a_dik, ek, b_dik_pub, spk_pub, opk_pub),
        0);
    assert_hex(sk, 32, "1d1c79b59317d7339b50876e7a695ed88b778b49a9e7b5b74f3601eb8811a885");
    assert_int_equal(
        pl_x3dh_responder_secret(sk_b, 32, "PARLEYv1/X3DH", b_dik, spk, opk, a_dik_pub, ek_pub), 0);
    assert_memory_equal(sk, sk_b, 32);

    /* initiator ratchet init: RK, CKs = KDF_RK(SK, X25519(DHs, SPK_B)) */
    assert_int_equal(pl_dh(dh, dhs, spk_pub), 0);
    assert_int_equal(pl_kdf_rk(rk, ck, sk, dh), 0);
    assert_hex(rk, 32, "42614e5d39774f11f4d1a4d32fec2528feb19e5af064f83a2dd49344e193a36a");
    assert_hex(ck, 32, "d1c492ebc88dcc08619ce9a09ee81fc7363152b7846f111f305a50252c6da06e");
    /* first message key, and the sender-key label on the same seed */
    assert_int_equal(pl_kdf_ck(seed, ck, ck), 0);
    assert_hex(ck, 32, "13eef9128a0f54983f001bf46dbff6a6ffc7aed48e4255090bf66503a8375b0b");
    assert_int_equal(pl_kdf_mk(mk, seed, "PARLEYv1/MK"), 0);
    assert_hex(mk, 32, "70b5a146c623374ba58ee67e893ebe8f6f2b682e6c42dffc7f81af749ed96449");
    assert_int_equal(pl_kdf_mk(mk, seed, "PARLEYv1/SKMK"), 0);
    assert_hex(mk, 32, "8bfe0fc7bfa266d106bc04826348da201030d263880ba0bc913eec25b342cbdb");
}

static void test_parley_v1_identity(void **state)
{
    (void)state;
    unsigned char seed[32], a_dik[32], b_dik[32], a_dik_pub[32], b_dik_pub[32], spk[32];
    unsigned char spk_pub[32], sig[64], dcert[PL_DCERT_MAX], ad[PL_AD_MAX];
    pl_sign_pair aik_a, aik_b;
    size_t len;
    memset(seed, 0xa1, 32);
    assert_int_equal(crypto_sign_seed_keypair(aik_a.pk, aik_a.sk, seed), 0);
    memset(seed, 0xb1, 32);
    assert_int_equal(crypto_sign_seed_keypair(aik_b.pk, aik_b.sk, seed), 0);
    assert_hex(aik_a.pk, 32, "bc7cbcb5636375fa1d82434d466724d92377f53b980695dd49d26d0ce12205a5");
    assert_hex(aik_b.pk, 32, "4721b5b632272e65a68dda7ac25b4185f8b01916db185c14287db92e2b770fae");
    unhex(a_dik, 32, "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
    unhex(b_dik, 32, "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb");
    assert_int_equal(crypto_scalarmult_base(a_dik_pub, a_dik), 0);
    assert_int_equal(crypto_scalarmult_base(b_dik_pub, b_dik), 0);

    assert_int_equal(pl_dcert_build(dcert, sizeof dcert, &len, &aik_a, "u_alice", "d_alice1",
                                    a_dik_pub, 1700000000000ULL),
                     0);
    assert_hex(dcert, len,
               "0107755f616c69636508645f616c696365318520f0098930a754748b7ddcb43ef75a0dbf3a0d2638"
               "1af4eba4a98eaa9b4e6a0000018bcfe56800524ca441545cc0e3b97da013c77257a30bc6bf39fe65"
               "d8342b9518b9796825d9a7255edb5e76d06748b7d2ce13364de6234e0aecf462f86d76152a369750"
               "2907");
    pl_dcert d;
    assert_int_equal(pl_dcert_verify(&d, dcert, len, aik_a.pk), 0);
    assert_string_equal(d.user, "u_alice");
    assert_string_equal(d.device, "d_alice1");
    assert_memory_equal(d.dik_pub, a_dik_pub, 32);
    assert_true(d.created_at == 1700000000000ULL);

    memset(spk, 0x11, 32);
    assert_int_equal(crypto_scalarmult_base(spk_pub, spk), 0);
    assert_int_equal(pl_spk_sign(sig, &aik_b, "u_bob", "d_bob1", 7, spk_pub), 0);
    assert_hex(sig, 64,
               "c3790f8453d0bad1f1be79f644bed38242b0fd9b0ff27e49fa83e752394855ee6eb864224176fc96"
               "b7686f9b505f6ee5439d9fe19c43c7d5875d08edaf87400c");
    assert_int_equal(pl_spk_verify(sig, aik_b.pk, "u_bob", "d_bob1", 7, spk_pub), 0);
    assert_int_equal(pl_spk_verify(sig, aik_b.pk, "u_bob", "d_bob1", 8, spk_pub), PL_E2E_ESIG);
    assert_int_equal(pl_spk_verify(sig, aik_a.pk, "u_bob", "d_bob1", 7, spk_pub), PL_E2E_ESIG);

    int n = pl_x3dh_ad(ad, aik_a.pk, a_dik_pub, "u_alice", "d_alice1", aik_b.pk, b_dik_pub, "u_bob",
                       "d_bob1");
    assert_true(n > 0);
    assert_hex(ad, (size_t)n,
               "5041524c455976312f4144bc7cbcb5636375fa1d82434d466724d92377f53b980695dd49d26d0ce1"
               "2205a58520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a07755f616c"
               "69636508645f616c696365314721b5b632272e65a68dda7ac25b4185f8b01916db185c14287db92e"
               "2b770faede9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f05755f62"
               "6f6206645f626f6231");

    char fa[PL_FP_DIGITS + 1], fb[PL_FP_DIGITS + 1], sn[PL_SN_DIGITS + 1];
    unsigned char ha[64], hb[64], qr[PL_SN_QR_LEN];
    assert_int_equal(pl_fingerprint_user(ha, fa, aik_a.pk, "u_alice"), 0);
    assert_int_equal(pl_fingerprint_user(hb, fb, aik_b.pk, "u_bob"), 0);
    assert_string_equal(fa, "476122330465966813027351454030");
    assert_string_equal(fb, "320154712654675606875203315876");
    assert_int_equal(pl_safety_number(sn, fa, fb), 0);
    assert_string_equal(sn, "320154712654675606875203315876476122330465966813027351454030");
    /* QR: Alice shows hers, Bob checks it crosswise; a wrong key fails */
    assert_int_equal(pl_safety_qr(qr, ha, hb), 0);
    assert_int_equal(pl_safety_qr_check(qr, sizeof qr, hb, ha), 0);
    assert_int_equal(pl_safety_qr_check(qr, sizeof qr, ha, hb), PL_E2E_EIDENTITY);
    qr[40] ^= 1;
    assert_int_equal(pl_safety_qr_check(qr, sizeof qr, hb, ha), PL_E2E_EIDENTITY);
    assert_int_equal(pl_safety_qr_check(qr, sizeof qr - 1, hb, ha), PL_E2E_EFORMAT);
}

/* ----------------------------------------------------------------------------- encodings */

static void test_id_encoding(void **state)
{
    (void)state;
    unsigned char buf[80];
    char id[PL_E2E_ID_MAX + 1], long_id[PL_E2E_ID_MAX + 2];
    assert_int_equal(pl_id_encode(buf, sizeof buf, "u_alice"), 8);
    assert_int_equal(buf[0], 7);
    assert_memory_equal(buf + 1, "u_alice", 7);
    assert_int_equal(pl_id_decode(id, buf, 8), 8);
    assert_string_equal(id, "u_alice");
    assert_int_equal(pl_id_decode(id, buf, 7), PL_E2E_EFORMAT); /* truncated */
    memset(long_id, 'a', PL_E2E_ID_MAX);
    long_id[PL_E2E_ID_MAX] = '\0';
    assert_int_equal(pl_id_encode(buf, sizeof buf, long_id), 65);
    assert_int_equal(pl_id_decode(id, buf, 65), 65);
    long_id[PL_E2E_ID_MAX] = 'a';
    long_id[PL_E2E_ID_MAX + 1] = '\0';
    assert_int_equal(pl_id_encode(buf, sizeof buf, long_id), PL_E2E_EINVAL); /* 65: too long */
    assert_int_equal(pl_id_encode(buf, sizeof buf, ""), PL_E2E_EINVAL);
    assert_int_equal(pl_id_encode(buf, sizeof buf, "u a"), PL_E2E_EINVAL);
    assert_int_equal(pl_id_encode(buf, 5, "u_alice"), PL_E2E_ENOSPC);
    buf[0] = 0; /* zero length */
    assert_int_equal(pl_id_decode(id, buf, 1), PL_E2E_EFORMAT);
    buf[0] = 65;
    memset(buf + 1, 'a', 65);
    assert_int_equal(pl_id_decode(id, buf, 66), PL_E2E_EFORMAT);
    buf[0] = 2;
    buf[1] = 'a';
    buf[2] = 0x80;
    assert_int_equal(pl_id_decode(id, buf, 3), PL_E2E_EFORMAT);
}

static void test_padding(void **state)
{
    (void)state;
    unsigned char buf[PL_E2E_PADDED_MAX];
    size_t padded, back;
    const size_t lens[] = {0, 1, 159, 160, 161, 319, 320, 65537};
    const size_t want[] = {160, 160, 160, 320, 320, 320, 480, 65600};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        memset(buf, 0x5a, sizeof buf);
        assert_int_equal(pl_pad(buf, lens[i], sizeof buf, &padded), 0);
        assert_int_equal(padded, want[i]);
        assert_int_equal(pl_unpad(buf, padded, &back), 0);
        assert_int_equal(back, lens[i]);
    }
    assert_int_equal(pl_pad(buf, 160, 319, &padded), PL_E2E_ENOSPC);
    memset(buf, 0, 160); /* no 0x80 marker */
    assert_int_equal(pl_unpad(buf, 160, &back), PL_E2E_EFORMAT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc7748_x25519),
        cmocka_unit_test(test_x25519_low_order_and_bit255),
        cmocka_unit_test(test_wycheproof_x25519_tc1),
        cmocka_unit_test(test_rfc5869_a1),
        cmocka_unit_test(test_rfc5869_a2),
        cmocka_unit_test(test_rfc5869_a3),
        cmocka_unit_test(test_hkdf_limits),
        cmocka_unit_test(test_xchacha20poly1305_draft),
        cmocka_unit_test(test_libsignal_chain_key),
        cmocka_unit_test(test_libsignal_x3dh_bob),
        cmocka_unit_test(test_libsignal_x3dh_alice_regression),
        cmocka_unit_test(test_signal_safety_number),
        cmocka_unit_test(test_argon2id_vectors),
        cmocka_unit_test(test_parley_v1_x3dh_and_kdfs),
        cmocka_unit_test(test_parley_v1_identity),
        cmocka_unit_test(test_id_encoding),
        cmocka_unit_test(test_padding),
    };
    return cmocka_run_group_tests_name("e2e_vectors", tests, setup, NULL);
}
