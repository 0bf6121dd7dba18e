/* ratchet.c: the Double Ratchet of E2E.md §6: encryption, decryption on a copy, skipped keys and
 * the serialized session.
 *
 * A decrypt never touches the caller's session until the tag has verified: it runs on a deep
 * copy (keys and skipped-key store) and swaps it in at the end, so a forged, replayed or
 * misrouted message leaves the state, and its serialized bytes, exactly as they were. The copy
 * costs one allocation and a memcpy of the skipped keys (at most 2000 * 80 bytes) per message;
 * an in-place journal would avoid it, at the price of a second code path to get right.
 *
 * Encryption changes the session only after every step has succeeded. The caller persists the
 * new state with the outbox row before the bytes leave (E2E.md §12): nonces are random, but a
 * rolled-back chain would still reuse message keys.
 */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "client/e2e/e2e_int.h"

#define NONCE_LEN   crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define AEAD_ABYTES crypto_aead_xchacha20poly1305_ietf_ABYTES

#define STATE_MAGIC   "PLSS"
#define STATE_VERSION 0x01
#define F_INITIATOR   0x01
#define F_PENDING     0x02
#define F_DHR         0x04
#define F_CKS         0x08
#define F_CKR         0x10

pl_e2e_session *pl__e2e_session_alloc(void)
{
    pl_e2e_session *s = pl__secret_alloc(sizeof *s);
    if (s) s->skipped.esz = sizeof(pl__skipped);
    return s;
}

void pl_e2e_session_free(pl_e2e_session *s)
{
    if (s == NULL) return;
    pl__vec_free(&s->skipped);
    pl__secret_free(s, sizeof *s);
}

int pl_e2e_session_copy(pl_e2e_session **out, const pl_e2e_session *s)
{
    if (out == NULL || s == NULL) return PL_E2E_EINVAL;
    pl_e2e_session *c = pl__secret_alloc(sizeof *c);
    if (c == NULL) return PL_E2E_ENOMEM;
    *c = *s;
    if (pl__vec_copy(&c->skipped, &s->skipped) != 0) {
        c->skipped = (pl__vec){0};
        pl_e2e_session_free(c);
        return PL_E2E_ENOMEM;
    }
    *out = c;
    return 0;
}

/* ----------------------------------------------------------------------------- accessors */

const unsigned char *pl_e2e_session_ad(const pl_e2e_session *s, size_t *len)
{
    if (len) *len = s->ad_len;
    return s->ad;
}

const unsigned char *pl_e2e_session_ek_hash(const pl_e2e_session *s)
{
    return s->ek_hash;
}

bool pl_e2e_session_is_initiator(const pl_e2e_session *s)
{
    return s->initiator;
}

bool pl_e2e_session_sends_prekey(const pl_e2e_session *s)
{
    return s->pending_prekey;
}

const char *pl_e2e_session_peer_user(const pl_e2e_session *s)
{
    return s->peer_user;
}

const char *pl_e2e_session_peer_device(const pl_e2e_session *s)
{
    return s->peer_device;
}

const unsigned char *pl_e2e_session_peer_aik(const pl_e2e_session *s)
{
    return s->peer_aik;
}

size_t pl_e2e_session_skipped_count(const pl_e2e_session *s)
{
    return s->skipped.n;
}

size_t pl_e2e_session_expire(pl_e2e_session *s, uint64_t now_ms)
{
    return pl__skipped_expire(&s->skipped, now_ms);
}

/* --------------------------------------------------------------------------------- encrypt */

static size_t header_len(const pl_e2e_session *s)
{
    size_t n = 3 + 32 + 4 + 4;
    if (s->pending_prekey) n += 32 + 2 + s->pk_dcert_len + 32 + 4 + 4;
    return n;
}

static size_t padded_len(size_t payload_len)
{
    return (1 + payload_len) / PL_E2E_PAD_BLOCK * PL_E2E_PAD_BLOCK + PL_E2E_PAD_BLOCK;
}

size_t pl_e2e_session_encrypt_size(const pl_e2e_session *s, size_t payload_len)
{
    return header_len(s) + NONCE_LEN + padded_len(payload_len) + AEAD_ABYTES;
}

int pl_e2e_session_encrypt(pl_e2e_session *s, uint8_t ctype, const unsigned char *payload,
                           size_t len, unsigned char *out, size_t cap, size_t *outlen)
{
    unsigned char ck[32], mk[32];
    unsigned char *padded = NULL;
    size_t plen = 0;
    int rc;

    if (s == NULL || out == NULL || outlen == NULL) return PL_E2E_EINVAL;
    if (!s->has_cks) return PL_E2E_ESTATE;
    if (s->ns == UINT32_MAX) return PL_E2E_ECOUNTER;
    if (len > PL_E2E_PAYLOAD_MAX) return PL_E2E_ETOOBIG;
    if (cap < pl_e2e_session_encrypt_size(s, len)) return PL_E2E_ENOSPC;
    rc = pl__plain_pad(&padded, &plen, ctype, payload, len);
    if (rc != 0) return rc;

    pl__w w = {.p = out, .cap = cap};
    pl__w_u8(&w, PL_E2E_VERSION);
    pl__w_u8(&w, PL_E2E_SUITE);
    pl__w_u8(&w, s->pending_prekey ? PL_WIRE_PREKEY : PL_WIRE_MSG);
    if (s->pending_prekey) {
        pl__w_bytes(&w, s->pk_aik, 32);
        pl__w_u16(&w, (uint16_t)s->pk_dcert_len);
        pl__w_bytes(&w, s->pk_dcert, s->pk_dcert_len);
        pl__w_bytes(&w, s->pk_ek, 32);
        pl__w_u32(&w, s->pk_spk_id);
        pl__w_u32(&w, s->pk_opk_id);
    }
    pl__w_bytes(&w, s->dhs.pk, 32);
    pl__w_u32(&w, s->pn);
    pl__w_u32(&w, s->ns);
    size_t hlen = w.len;
    if (w.err) {
        rc = PL_E2E_ENOSPC;
        goto cleanup;
    }
    randombytes_buf(out + hlen, NONCE_LEN);

    memcpy(ck, s->cks, 32);
    rc = pl__chain_step(ck, mk, PL__L_MK);
    if (rc != 0) goto cleanup;
    rc = pl__aead_seal(out + hlen + NONCE_LEN, padded, plen, s->ad, s->ad_len, out, hlen,
                       out + hlen, mk);
    if (rc != 0) goto cleanup;
    /* commit */
    memcpy(s->cks, ck, 32);
    s->ns++;
    *outlen = hlen + NONCE_LEN + plen + AEAD_ABYTES;
cleanup:
    sodium_memzero(ck, sizeof ck);
    sodium_memzero(mk, sizeof mk);
    pl__secret_free(padded, plen);
    return rc;
}

/* --------------------------------------------------------------------------------- decrypt */

/* PN = Ns; Ns = Nr = 0; DHr = dh; RK, CKr = KDF_RK(RK, DH(DHs, DHr)); DHs = new;
 * RK, CKs = KDF_RK(RK, DH(DHs, DHr)). */
static int dh_ratchet(pl_e2e_session *s, const unsigned char dh_pub[32])
{
    unsigned char dh[32];
    int rc;
    s->pn = s->ns;
    s->ns = s->nr = 0;
    memcpy(s->dhr, dh_pub, 32);
    s->has_dhr = true;
    if ((rc = pl_dh(dh, s->dhs.sk, s->dhr)) != 0) goto cleanup;
    if ((rc = pl_kdf_rk(s->rk, s->ckr, s->rk, dh)) != 0) goto cleanup;
    s->has_ckr = true;
    if ((rc = pl_dh_generate(&s->dhs)) != 0) goto cleanup;
    if ((rc = pl_dh(dh, s->dhs.sk, s->dhr)) != 0) goto cleanup;
    if ((rc = pl_kdf_rk(s->rk, s->cks, s->rk, dh)) != 0) goto cleanup;
    s->has_cks = true;
cleanup:
    sodium_memzero(dh, sizeof dh);
    return rc;
}

int pl__ratchet_decrypt(pl_e2e_session *s, const pl__wire *m, const unsigned char *msg,
                        uint64_t now_ms, pl_e2e_out *pt)
{
    unsigned char mk[32];
    unsigned char *padded = NULL;
    size_t plen = 0;
    int rc = 0;

    if (!pl__skipped_take(&s->skipped, m->dh, m->n, mk)) {
        if (!s->has_dhr || memcmp(m->dh, s->dhr, 32) != 0) {
            if (s->has_ckr) {
                rc = pl__chain_skip(&s->skipped, s->dhr, s->ckr, &s->nr, m->pn, PL__L_MK, now_ms);
                if (rc != 0) goto cleanup;
            }
            if ((rc = dh_ratchet(s, m->dh)) != 0) goto cleanup;
        } else if (!s->has_ckr) {
            rc = PL_E2E_EDECRYPT; /* our own first DHr (the SPK): nobody sends on it */
            goto cleanup;
        }
        if (m->n < s->nr) {
            rc = PL_E2E_EREPLAY;
            goto cleanup;
        }
        rc = pl__chain_skip(&s->skipped, s->dhr, s->ckr, &s->nr, m->n, PL__L_MK, now_ms);
        if (rc != 0) goto cleanup;
        if ((rc = pl__chain_step(s->ckr, mk, PL__L_MK)) != 0) goto cleanup;
        s->nr = m->n + 1;
    }
    rc = pl__aead_open(&padded, &plen, m->ct, m->ctlen, s->ad, s->ad_len, msg, m->hlen, m->nonce,
                       mk);
    if (rc != 0) goto cleanup;
    rc = pl__plain_unpad(pt, padded, plen);
    if (rc != 0) goto cleanup;
    s->pending_prekey = false; /* the peer has the session: plain MSGs from now on */
cleanup:
    sodium_memzero(mk, sizeof mk);
    pl__secret_free(padded, plen);
    return rc;
}

int pl_e2e_session_decrypt(pl_e2e_session *s, const unsigned char *msg, size_t len, uint64_t now_ms,
                           pl_e2e_out *pt)
{
    pl__wire m;
    pl_e2e_session *c = NULL;
    if (s == NULL || msg == NULL || pt == NULL || (pt->buf == NULL && pt->cap > 0))
        return PL_E2E_EINVAL;
    pt->len = 0;
    int rc = pl__wire_parse(&m, msg, len);
    if (rc != 0) return rc;
    /* A PREKEY_MSG belongs to the responder session its EK made, and to no other. */
    if (m.type == PL_WIRE_PREKEY &&
        (s->initiator || sodium_memcmp(m.pk.ek_hash, s->ek_hash, 32) != 0))
        return PL_E2E_EDECRYPT;
    if ((rc = pl_e2e_session_copy(&c, s)) != 0) return rc;
    rc = pl__ratchet_decrypt(c, &m, msg, now_ms, pt);
    if (rc == 0) {
        pl_e2e_session tmp = *s;
        *s = *c;
        *c = tmp;
    }
    pl_e2e_session_free(c);
    if (rc != 0) pl__out_fail(pt);
    return rc;
}

/* --------------------------------------------------------------------------- serialization */

static void session_write(pl__w *w, const pl_e2e_session *s)
{
    uint8_t flags = (s->initiator ? F_INITIATOR : 0) | (s->pending_prekey ? F_PENDING : 0) |
                    (s->has_dhr ? F_DHR : 0) | (s->has_cks ? F_CKS : 0) | (s->has_ckr ? F_CKR : 0);
    pl__w_bytes(w, STATE_MAGIC, 4);
    pl__w_u8(w, STATE_VERSION);
    pl__w_u8(w, flags);
    pl__w_bytes(w, s->rk, 32);
    pl__w_bytes(w, s->dhs.pk, 32);
    pl__w_bytes(w, s->dhs.sk, 32);
    pl__w_bytes(w, s->dhr, 32);
    pl__w_bytes(w, s->cks, 32);
    pl__w_bytes(w, s->ckr, 32);
    pl__w_u32(w, s->ns);
    pl__w_u32(w, s->nr);
    pl__w_u32(w, s->pn);
    pl__w_bytes(w, s->ek_hash, 32);
    pl__w_u16(w, (uint16_t)s->ad_len);
    pl__w_bytes(w, s->ad, s->ad_len);
    pl__w_id(w, s->peer_user);
    pl__w_id(w, s->peer_device);
    pl__w_bytes(w, s->peer_aik, 32);
    if (s->pending_prekey) {
        pl__w_bytes(w, s->pk_aik, 32);
        pl__w_u16(w, (uint16_t)s->pk_dcert_len);
        pl__w_bytes(w, s->pk_dcert, s->pk_dcert_len);
        pl__w_bytes(w, s->pk_ek, 32);
        pl__w_u32(w, s->pk_spk_id);
        pl__w_u32(w, s->pk_opk_id);
    }
    pl__skipped_write(w, &s->skipped, true);
}

size_t pl_e2e_session_serialized_size(const pl_e2e_session *s)
{
    pl__w w = {0};
    session_write(&w, s);
    return w.len;
}

int pl_e2e_session_serialize(const pl_e2e_session *s, unsigned char *out, size_t cap,
                             size_t *outlen)
{
    if (s == NULL || out == NULL || outlen == NULL) return PL_E2E_EINVAL;
    pl__w w = {.p = out, .cap = cap};
    session_write(&w, s);
    if (w.err) {
        sodium_memzero(out, cap);
        return PL_E2E_ENOSPC;
    }
    *outlen = w.len;
    return 0;
}

int pl_e2e_session_deserialize(pl_e2e_session **out, const unsigned char *in, size_t len)
{
    if (out == NULL || in == NULL) return PL_E2E_EINVAL;
    *out = NULL;
    pl_e2e_session *s = pl__e2e_session_alloc();
    if (s == NULL) return PL_E2E_ENOMEM;
    int rc = PL_E2E_ESTATE;
    unsigned char pk[32];
    pl__r r = {.p = in, .len = len};
    const unsigned char *magic = pl__r_take(&r, 4);
    if (magic == NULL || memcmp(magic, STATE_MAGIC, 4) != 0) goto fail;
    if (pl__r_u8(&r) != STATE_VERSION) goto fail;
    uint8_t flags = pl__r_u8(&r);
    if (flags & ~(F_INITIATOR | F_PENDING | F_DHR | F_CKS | F_CKR)) goto fail;
    s->initiator = flags & F_INITIATOR;
    s->pending_prekey = flags & F_PENDING;
    s->has_dhr = flags & F_DHR;
    s->has_cks = flags & F_CKS;
    s->has_ckr = flags & F_CKR;
    pl__r_copy(&r, s->rk, 32);
    pl__r_copy(&r, s->dhs.pk, 32);
    pl__r_copy(&r, s->dhs.sk, 32);
    pl__r_copy(&r, s->dhr, 32);
    pl__r_copy(&r, s->cks, 32);
    pl__r_copy(&r, s->ckr, 32);
    s->ns = pl__r_u32(&r);
    s->nr = pl__r_u32(&r);
    s->pn = pl__r_u32(&r);
    pl__r_copy(&r, s->ek_hash, 32);
    s->ad_len = pl__r_u16(&r);
    if (s->ad_len > PL_AD_MAX) goto fail;
    pl__r_copy(&r, s->ad, s->ad_len);
    pl__r_id(&r, s->peer_user);
    pl__r_id(&r, s->peer_device);
    pl__r_copy(&r, s->peer_aik, 32);
    if (s->pending_prekey) {
        pl__r_copy(&r, s->pk_aik, 32);
        s->pk_dcert_len = pl__r_u16(&r);
        if (s->pk_dcert_len < PL_DCERT_MIN || s->pk_dcert_len > PL_DCERT_MAX) goto fail;
        pl__r_copy(&r, s->pk_dcert, s->pk_dcert_len);
        pl__r_copy(&r, s->pk_ek, 32);
        s->pk_spk_id = pl__r_u32(&r);
        s->pk_opk_id = pl__r_u32(&r);
    }
    if ((rc = pl__skipped_read(&r, &s->skipped, true)) != 0) goto fail;
    rc = PL_E2E_ESTATE;
    if (!pl__r_done(&r)) goto fail;
    /* Invariants: a sending chain always (a session exists only once it can send), a
     * receiving chain only with its ratchet key, the prekey block only on the initiator. */
    if (!s->has_cks || (s->has_ckr && !s->has_dhr) || (s->pending_prekey && !s->initiator))
        goto fail;
    if (crypto_scalarmult_base(pk, s->dhs.sk) != 0 || sodium_memcmp(pk, s->dhs.pk, 32) != 0)
        goto fail;
    *out = s;
    return 0;
fail:
    pl_e2e_session_free(s);
    return rc == 0 ? PL_E2E_ESTATE : rc;
}
