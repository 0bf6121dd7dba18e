/* x3dh.c: session setup (E2E.md §5): the X3DH secrets on both sides, the associated data, the
 * initiator that turns a verified bundle into a session, and the responder that turns a first
 * PREKEY_MSG into one, plus the per-SPK replay cache of EKs seen without an OPK.
 *
 * The responder commits nothing: it returns a new session only after the message's tag has
 * verified, and leaves OPK deletion and the replay-cache entry to the caller's transaction.
 */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "client/e2e/e2e_int.h"

/* ikm = 0xFF*32 || dh1 || dh2 || dh3 [|| dh4] (32 bytes of 0xFF: E2E.md §15 pitfall 2). */
static int x3dh_kdf(unsigned char *sk, size_t sklen, const char *label, unsigned char ikm[160],
                    size_t ndh)
{
    memset(ikm, 0xFF, 32);
    return pl_hkdf(sk, sklen, NULL, 0, ikm, 32 * (1 + ndh), label, strlen(label));
}

int pl_x3dh_initiator_secret(unsigned char *sk, size_t sklen, const char *label,
                             const unsigned char dik_a_sk[32], const unsigned char ek_sk[32],
                             const unsigned char dik_b_pub[32], const unsigned char spk_b_pub[32],
                             const unsigned char *opk_b_pub)
{
    unsigned char ikm[160];
    int rc;
    if (sk == NULL || label == NULL) return PL_E2E_EINVAL;
    if ((rc = pl_dh(ikm + 32, dik_a_sk, spk_b_pub)) != 0) goto cleanup;
    if ((rc = pl_dh(ikm + 64, ek_sk, dik_b_pub)) != 0) goto cleanup;
    if ((rc = pl_dh(ikm + 96, ek_sk, spk_b_pub)) != 0) goto cleanup;
    if (opk_b_pub && (rc = pl_dh(ikm + 128, ek_sk, opk_b_pub)) != 0) goto cleanup;
    rc = x3dh_kdf(sk, sklen, label, ikm, opk_b_pub ? 4 : 3);
cleanup:
    sodium_memzero(ikm, sizeof ikm);
    return rc;
}

int pl_x3dh_responder_secret(unsigned char *sk, size_t sklen, const char *label,
                             const unsigned char dik_b_sk[32], const unsigned char spk_b_sk[32],
                             const unsigned char *opk_b_sk, const unsigned char dik_a_pub[32],
                             const unsigned char ek_a_pub[32])
{
    unsigned char ikm[160];
    int rc;
    if (sk == NULL || label == NULL) return PL_E2E_EINVAL;
    if ((rc = pl_dh(ikm + 32, spk_b_sk, dik_a_pub)) != 0) goto cleanup;
    if ((rc = pl_dh(ikm + 64, dik_b_sk, ek_a_pub)) != 0) goto cleanup;
    if ((rc = pl_dh(ikm + 96, spk_b_sk, ek_a_pub)) != 0) goto cleanup;
    if (opk_b_sk && (rc = pl_dh(ikm + 128, opk_b_sk, ek_a_pub)) != 0) goto cleanup;
    rc = x3dh_kdf(sk, sklen, label, ikm, opk_b_sk ? 4 : 3);
cleanup:
    sodium_memzero(ikm, sizeof ikm);
    return rc;
}

int pl_x3dh_ad(unsigned char ad[PL_AD_MAX], const unsigned char aik_a[32],
               const unsigned char dik_a[32], const char *user_a, const char *dev_a,
               const unsigned char aik_b[32], const unsigned char dik_b[32], const char *user_b,
               const char *dev_b)
{
    if (ad == NULL || aik_a == NULL || dik_a == NULL || aik_b == NULL || dik_b == NULL ||
        !pl_id_valid(user_a) || !pl_id_valid(dev_a) || !pl_id_valid(user_b) || !pl_id_valid(dev_b))
        return PL_E2E_EINVAL;
    pl__w w = {.p = ad, .cap = PL_AD_MAX};
    pl__w_bytes(&w, PL__L_AD, PL__LEN(PL__L_AD));
    pl__w_bytes(&w, aik_a, 32);
    pl__w_bytes(&w, dik_a, 32);
    pl__w_id(&w, user_a);
    pl__w_id(&w, dev_a);
    pl__w_bytes(&w, aik_b, 32);
    pl__w_bytes(&w, dik_b, 32);
    pl__w_id(&w, user_b);
    pl__w_id(&w, dev_b);
    return w.err ? PL_E2E_EINVAL : (int)w.len;
}

/* -------------------------------------------------------------------------------- initiator */

int pl_x3dh_initiate(pl_e2e_session **out, const pl_e2e_self *self, const pl_bundle *peer,
                     const unsigned char pinned_aik[32])
{
    pl_dcert d;
    pl_dh_pair ek;
    unsigned char sk[32], dh[32];
    pl_e2e_session *s = NULL;
    int rc;

    if (out == NULL || self == NULL || peer == NULL || pinned_aik == NULL) return PL_E2E_EINVAL;
    *out = NULL;
    if ((rc = pl_bundle_verify(peer, pinned_aik, &d)) != 0) return rc;
    if ((rc = pl_dh_generate(&ek)) != 0) goto cleanup;
    rc =
        pl_x3dh_initiator_secret(sk, sizeof sk, PL__L_X3DH, self->dik.sk, ek.sk, d.dik_pub,
                                 peer->spk_pub, peer->opk_id != PL_OPK_NONE ? peer->opk_pub : NULL);
    if (rc != 0) goto cleanup;
    if ((s = pl__e2e_session_alloc()) == NULL) {
        rc = PL_E2E_ENOMEM;
        goto cleanup;
    }
    rc = pl_x3dh_ad(s->ad, self->aik_pub, self->dik.pk, self->user, self->device, peer->aik,
                    d.dik_pub, peer->user, peer->device);
    if (rc < 0) goto cleanup;
    s->ad_len = (size_t)rc;
    if (crypto_hash_sha256(s->ek_hash, ek.pk, 32) != 0) {
        rc = PL_E2E_ECRYPTO;
        goto cleanup;
    }
    s->initiator = s->pending_prekey = true;
    strcpy(s->peer_user, peer->user);
    strcpy(s->peer_device, peer->device);
    memcpy(s->peer_aik, peer->aik, 32);
    memcpy(s->pk_aik, self->aik_pub, 32);
    memcpy(s->pk_dcert, self->dcert, self->dcert_len);
    s->pk_dcert_len = self->dcert_len;
    memcpy(s->pk_ek, ek.pk, 32);
    s->pk_spk_id = peer->spk_id;
    s->pk_opk_id = peer->opk_id;
    /* DHs = new pair, DHr = SPK_B, (RK, CKs) = KDF_RK(SK, X25519(DHs, SPK_B)) */
    if ((rc = pl_dh_generate(&s->dhs)) != 0) goto cleanup;
    memcpy(s->dhr, peer->spk_pub, 32);
    s->has_dhr = true;
    if ((rc = pl_dh(dh, s->dhs.sk, s->dhr)) != 0) goto cleanup;
    if ((rc = pl_kdf_rk(s->rk, s->cks, sk, dh)) != 0) goto cleanup;
    s->has_cks = true;
    *out = s;
    s = NULL;
    rc = 0;
cleanup:
    pl_e2e_session_free(s);
    sodium_memzero(&ek, sizeof ek);
    sodium_memzero(sk, sizeof sk);
    sodium_memzero(dh, sizeof dh);
    return rc;
}

/* -------------------------------------------------------------------------------- responder */

int pl_x3dh_respond(pl_e2e_session **out, const pl_e2e_self *self, const pl_respond_keys *keys,
                    const unsigned char *msg, size_t len, uint64_t now_ms, pl_e2e_out *pt)
{
    pl__wire m;
    pl_dcert d;
    unsigned char sk[32];
    pl_e2e_session *s = NULL;
    int rc;

    if (out == NULL || self == NULL || keys == NULL || keys->pinned_aik == NULL ||
        keys->from_user == NULL || keys->from_dev == NULL || msg == NULL || pt == NULL)
        return PL_E2E_EINVAL;
    *out = NULL;
    pt->len = 0;
    if ((rc = pl__wire_parse(&m, msg, len)) != 0) return rc;
    if (m.type != PL_WIRE_PREKEY) return PL_E2E_EINVAL;
    /* who: the pinned AIK, and a DCERT under it naming the frame's sender */
    if (sodium_memcmp(m.pk.aik, keys->pinned_aik, 32) != 0) return PL_E2E_EIDENTITY;
    if ((rc = pl_dcert_verify(&d, m.pk.dcert, m.pk.dcert_len, keys->pinned_aik)) != 0) return rc;
    if (strcmp(d.user, keys->from_user) != 0 || strcmp(d.device, keys->from_dev) != 0)
        return PL_E2E_EIDENTITY;
    /* which prekeys */
    if (keys->spk == NULL || keys->spk->id != m.pk.spk_id) return PL_E2E_ENOKEY;
    const pl_prekey *opk = NULL;
    if (m.pk.opk_id != PL_OPK_NONE) {
        if (keys->opk == NULL || keys->opk->id != m.pk.opk_id) return PL_E2E_ENOKEY;
        opk = keys->opk;
    } else if (keys->replay && pl_replay_cache_has(keys->replay, m.pk.ek_hash)) {
        return PL_E2E_EREPLAY;
    }

    rc = pl_x3dh_responder_secret(sk, sizeof sk, PL__L_X3DH, self->dik.sk, keys->spk->kp.sk,
                                  opk ? opk->kp.sk : NULL, d.dik_pub, m.pk.ek);
    if (rc != 0) goto cleanup;
    if ((s = pl__e2e_session_alloc()) == NULL) {
        rc = PL_E2E_ENOMEM;
        goto cleanup;
    }
    rc = pl_x3dh_ad(s->ad, m.pk.aik, d.dik_pub, d.user, d.device, self->aik_pub, self->dik.pk,
                    self->user, self->device);
    if (rc < 0) goto cleanup;
    s->ad_len = (size_t)rc;
    memcpy(s->ek_hash, m.pk.ek_hash, 32);
    strcpy(s->peer_user, d.user);
    strcpy(s->peer_device, d.device);
    memcpy(s->peer_aik, m.pk.aik, 32);
    /* DHs = SPK_B pair, DHr = none, RK = SK; the first message's DH step does the rest */
    s->dhs = keys->spk->kp;
    memcpy(s->rk, sk, 32);
    rc = pl__ratchet_decrypt(s, &m, msg, now_ms, pt);
    if (rc != 0) goto cleanup;
    *out = s;
    s = NULL;
cleanup:
    if (rc != 0) pl__out_fail(pt);
    pl_e2e_session_free(s);
    sodium_memzero(sk, sizeof sk);
    return rc;
}

/* ----------------------------------------------------------------------------- replay cache */

bool pl_replay_cache_has(const pl_replay_cache *rc, const unsigned char h[32])
{
    if (rc == NULL || h == NULL) return false;
    for (size_t i = 0; i < rc->n; i++)
        if (memcmp(rc->h[i], h, 32) == 0) return true;
    return false;
}

int pl_replay_cache_add(pl_replay_cache *rc, const unsigned char h[32])
{
    if (rc == NULL || h == NULL) return PL_E2E_EINVAL;
    if (pl_replay_cache_has(rc, h)) return 0;
    if (rc->n == rc->cap) {
        size_t cap = rc->cap ? rc->cap * 2 : 16;
        void *p = realloc(rc->h, cap * sizeof *rc->h); /* public hashes: realloc is fine */
        if (p == NULL) return PL_E2E_ENOMEM;
        rc->h = p;
        rc->cap = cap;
    }
    memcpy(rc->h[rc->n++], h, 32);
    return 0;
}

void pl_replay_cache_free(pl_replay_cache *rc)
{
    if (rc == NULL) return;
    free(rc->h);
    *rc = (pl_replay_cache){0};
}
