/* wire.c: the byte layouts of PREKEY_MSG and MSG (E2E.md §6) and the AEAD calls every
 * encrypted message shares.
 *
 * Parsing is strict: version and suite must be 1 (never downgraded), every length must add up
 * exactly, the ciphertext must be a positive multiple of the 160-byte padding block plus the tag,
 * and received X25519 keys must have bit 255 clear. A parse that passes still proves nothing:
 * only the AEAD tag, over the session AD and every header byte, does.
 */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "client/e2e/e2e_int.h"

#define AEAD_ABYTES crypto_aead_xchacha20poly1305_ietf_ABYTES
#define NONCE_LEN   crypto_aead_xchacha20poly1305_ietf_NPUBBYTES

static int prefix_check(const unsigned char *msg, size_t len)
{
    if (msg == NULL || len < 3) return PL_E2E_EFORMAT;
    if (msg[0] != PL_E2E_VERSION || msg[1] != PL_E2E_SUITE) return PL_E2E_EVERSION;
    if (msg[2] < PL_WIRE_PREKEY || msg[2] > PL_WIRE_SKMSG) return PL_E2E_EVERSION;
    return msg[2];
}

int pl_e2e_msg_type(const unsigned char *msg, size_t len)
{
    return prefix_check(msg, len);
}

int pl__wire_parse(pl__wire *m, const unsigned char *msg, size_t len)
{
    int type = prefix_check(msg, len);
    if (type < 0) return type;
    if (type != PL_WIRE_PREKEY && type != PL_WIRE_MSG) return PL_E2E_EVERSION;
    memset(m, 0, sizeof *m);
    m->type = (uint8_t)type;
    pl__r r = {.p = msg, .len = len, .off = 3};
    if (type == PL_WIRE_PREKEY) {
        m->pk.aik = pl__r_take(&r, 32);
        m->pk.dcert_len = pl__r_u16(&r);
        if (m->pk.dcert_len < PL_DCERT_MIN || m->pk.dcert_len > PL_DCERT_MAX) return PL_E2E_EFORMAT;
        m->pk.dcert = pl__r_take(&r, m->pk.dcert_len);
        m->pk.ek = pl__r_take(&r, 32);
        m->pk.spk_id = pl__r_u32(&r);
        m->pk.opk_id = pl__r_u32(&r);
    }
    m->dh = pl__r_take(&r, 32);
    m->pn = pl__r_u32(&r);
    m->n = pl__r_u32(&r);
    m->hlen = r.off;
    m->nonce = pl__r_take(&r, NONCE_LEN);
    if (r.err) return PL_E2E_EFORMAT;
    m->ct = msg + r.off;
    m->ctlen = len - r.off;
    if (!pl__ct_len_ok(m->ctlen)) return PL_E2E_EFORMAT;
    if (m->n == UINT32_MAX) return PL_E2E_EFORMAT; /* never sent: the counter stops before */
    if (pl_x25519_pub_check(m->dh) != 0) return PL_E2E_EKEY;
    if (type == PL_WIRE_PREKEY) {
        if (pl_x25519_pub_check(m->pk.ek) != 0) return PL_E2E_EKEY;
        if (crypto_hash_sha256(m->pk.ek_hash, m->pk.ek, 32) != 0) return PL_E2E_ECRYPTO;
    }
    return 0;
}

int pl_prekey_msg_parse(pl_prekey_msg *pm, const unsigned char *msg, size_t len)
{
    pl__wire m;
    if (pm == NULL) return PL_E2E_EINVAL;
    int rc = pl__wire_parse(&m, msg, len);
    if (rc != 0) return rc;
    if (m.type != PL_WIRE_PREKEY) return PL_E2E_EINVAL;
    *pm = m.pk;
    return 0;
}

/* ad = prefix || h, in a buffer of its own (at most 399 + 352 bytes for a PREKEY_MSG). */
static int join_ad(unsigned char *buf, size_t cap, const unsigned char *prefix, size_t prefixlen,
                   const unsigned char *h, size_t hlen)
{
    if (prefixlen + hlen > cap) return PL_E2E_EINVAL;
    memcpy(buf, prefix, prefixlen);
    memcpy(buf + prefixlen, h, hlen);
    return 0;
}

int pl__aead_open(unsigned char **padded, size_t *plen, const unsigned char *ct, size_t ctlen,
                  const unsigned char *prefix, size_t prefixlen, const unsigned char *h,
                  size_t hlen, const unsigned char nonce[24], const unsigned char key[32])
{
    unsigned char ad[1024];
    unsigned long long n;
    unsigned char *p = NULL;
    int rc = join_ad(ad, sizeof ad, prefix, prefixlen, h, hlen);
    *padded = NULL;
    if (rc != 0) return rc;
    if (ctlen < AEAD_ABYTES) return PL_E2E_EFORMAT;
    p = pl__secret_alloc(ctlen - AEAD_ABYTES);
    if (p == NULL) return PL_E2E_ENOMEM;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(p, &n, NULL, ct, ctlen, ad, prefixlen + hlen,
                                                   nonce, key) != 0) {
        pl__secret_free(p, ctlen - AEAD_ABYTES);
        return PL_E2E_EDECRYPT;
    }
    *padded = p;
    *plen = (size_t)n;
    return 0;
}

int pl__aead_seal(unsigned char *out, const unsigned char *padded, size_t plen,
                  const unsigned char *prefix, size_t prefixlen, const unsigned char *h,
                  size_t hlen, const unsigned char nonce[24], const unsigned char key[32])
{
    unsigned char ad[1024];
    int rc = join_ad(ad, sizeof ad, prefix, prefixlen, h, hlen);
    if (rc != 0) return rc;
    if (crypto_aead_xchacha20poly1305_ietf_encrypt(out, NULL, padded, plen, ad, prefixlen + hlen,
                                                   NULL, nonce, key) != 0)
        return PL_E2E_ECRYPTO;
    return 0;
}
