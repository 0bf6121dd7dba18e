/* identity.c: the keys of E2E.md §3: AIK (Ed25519, per user) and DIK (X25519, per device), the
 * device certificate (DCERT) binding a DIK to (user, device) under the AIK, signed prekeys and
 * one-time prekeys, and the check of a claimed bundle against the pinned AIK.
 *
 * A device the pinned AIK did not certify is never used: pl_bundle_verify and the responder
 * (x3dh.c) both go through pl_dcert_verify with the pinned key, not with the key the server sent.
 */
#include <string.h>

#include <sodium.h>

#include "client/e2e/e2e_int.h"

#define DCERT_VERSION 0x01

int pl_dh_generate(pl_dh_pair *kp)
{
    if (kp == NULL) return PL_E2E_EINVAL;
    if (crypto_box_keypair(kp->pk, kp->sk) != 0) return PL_E2E_ECRYPTO;
    return 0;
}

int pl_sign_generate(pl_sign_pair *kp)
{
    if (kp == NULL) return PL_E2E_EINVAL;
    if (crypto_sign_keypair(kp->pk, kp->sk) != 0) return PL_E2E_ECRYPTO;
    return 0;
}

int pl_prekey_generate(pl_prekey *pk, uint32_t id)
{
    if (pk == NULL || id == PL_OPK_NONE) return PL_E2E_EINVAL;
    pk->id = id;
    return pl_dh_generate(&pk->kp);
}

int pl_opk_generate(pl_prekey *opks, size_t n, uint32_t first_id)
{
    if (opks == NULL || n == 0 || n > (size_t)(PL_OPK_NONE - first_id)) return PL_E2E_EINVAL;
    for (size_t i = 0; i < n; i++) {
        int rc = pl_prekey_generate(&opks[i], first_id + (uint32_t)i);
        if (rc != 0) {
            sodium_memzero(opks, n * sizeof *opks);
            return rc;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------------------------- DCERT */

/* Signs "label || msg" with an Ed25519 secret key. */
static int sign_prefixed(unsigned char sig[64], const unsigned char sk[64], const char *label,
                         size_t labellen, const unsigned char *msg, size_t len)
{
    unsigned char buf[512];
    if (labellen + len > sizeof buf) return PL_E2E_EINVAL;
    memcpy(buf, label, labellen);
    memcpy(buf + labellen, msg, len);
    int rc = crypto_sign_detached(sig, NULL, buf, labellen + len, sk) == 0 ? 0 : PL_E2E_ECRYPTO;
    sodium_memzero(buf, sizeof buf);
    return rc;
}

static int verify_prefixed(const unsigned char sig[64], const unsigned char pk[32],
                           const char *label, size_t labellen, const unsigned char *msg, size_t len)
{
    unsigned char buf[512];
    if (labellen + len > sizeof buf) return PL_E2E_EINVAL;
    memcpy(buf, label, labellen);
    memcpy(buf + labellen, msg, len);
    return crypto_sign_verify_detached(sig, buf, labellen + len, pk) == 0 ? 0 : PL_E2E_ESIG;
}

int pl_dcert_build(unsigned char *out, size_t cap, size_t *outlen, const pl_sign_pair *aik,
                   const char *user, const char *device, const unsigned char dik_pub[32],
                   uint64_t created_at)
{
    if (out == NULL || outlen == NULL || aik == NULL || dik_pub == NULL || !pl_id_valid(user) ||
        !pl_id_valid(device) || pl_x25519_pub_check(dik_pub) != 0)
        return PL_E2E_EINVAL;
    pl__w w = {.p = out, .cap = cap};
    pl__w_u8(&w, DCERT_VERSION);
    pl__w_id(&w, user);
    pl__w_id(&w, device);
    pl__w_bytes(&w, dik_pub, 32);
    pl__w_u64(&w, created_at);
    if (w.err || cap - w.len < 64) return PL_E2E_ENOSPC;
    int rc = sign_prefixed(out + w.len, aik->sk, PL__L_DCERT, PL__LEN(PL__L_DCERT), out, w.len);
    if (rc != 0) return rc;
    *outlen = w.len + 64;
    return 0;
}

int pl_dcert_verify(pl_dcert *out, const unsigned char *dcert, size_t len,
                    const unsigned char aik_pub[32])
{
    pl_dcert d;
    if (dcert == NULL || aik_pub == NULL) return PL_E2E_EINVAL;
    if (len < PL_DCERT_MIN || len > PL_DCERT_MAX) return PL_E2E_EFORMAT;
    pl__r r = {.p = dcert, .len = len - 64};
    if (pl__r_u8(&r) != DCERT_VERSION) return PL_E2E_EVERSION;
    pl__r_id(&r, d.user);
    pl__r_id(&r, d.device);
    pl__r_copy(&r, d.dik_pub, 32);
    d.created_at = pl__r_u64(&r);
    if (!pl__r_done(&r)) return PL_E2E_EFORMAT;
    if (pl_x25519_pub_check(d.dik_pub) != 0) return PL_E2E_EKEY;
    int rc = verify_prefixed(dcert + len - 64, aik_pub, PL__L_DCERT, PL__LEN(PL__L_DCERT), dcert,
                             len - 64);
    if (rc != 0) return rc;
    if (out) *out = d;
    return 0;
}

/* ------------------------------------------------------------------------------------ SPK */

static int spk_message(unsigned char *buf, size_t cap, size_t *len, const char *user,
                       const char *device, uint32_t spk_id, const unsigned char spk_pub[32])
{
    if (!pl_id_valid(user) || !pl_id_valid(device) || spk_pub == NULL) return PL_E2E_EINVAL;
    pl__w w = {.p = buf, .cap = cap};
    pl__w_id(&w, user);
    pl__w_id(&w, device);
    pl__w_u32(&w, spk_id);
    pl__w_bytes(&w, spk_pub, 32);
    if (w.err) return PL_E2E_EINVAL;
    *len = w.len;
    return 0;
}

int pl_spk_sign(unsigned char sig[64], const pl_sign_pair *aik, const char *user,
                const char *device, uint32_t spk_id, const unsigned char spk_pub[32])
{
    unsigned char m[256];
    size_t mlen;
    if (sig == NULL || aik == NULL) return PL_E2E_EINVAL;
    int rc = spk_message(m, sizeof m, &mlen, user, device, spk_id, spk_pub);
    if (rc == 0) rc = sign_prefixed(sig, aik->sk, PL__L_SPK, PL__LEN(PL__L_SPK), m, mlen);
    return rc;
}

int pl_spk_verify(const unsigned char sig[64], const unsigned char aik_pub[32], const char *user,
                  const char *device, uint32_t spk_id, const unsigned char spk_pub[32])
{
    unsigned char m[256];
    size_t mlen;
    if (sig == NULL || aik_pub == NULL) return PL_E2E_EINVAL;
    int rc = spk_message(m, sizeof m, &mlen, user, device, spk_id, spk_pub);
    if (rc == 0) rc = verify_prefixed(sig, aik_pub, PL__L_SPK, PL__LEN(PL__L_SPK), m, mlen);
    return rc;
}

/* ------------------------------------------------------------------------------ this device */

int pl_e2e_self_create(pl_e2e_self *self, const pl_sign_pair *aik, const char *user,
                       const char *device, uint64_t created_at)
{
    if (self == NULL || aik == NULL || !pl_id_valid(user) || !pl_id_valid(device))
        return PL_E2E_EINVAL;
    memset(self, 0, sizeof *self);
    int rc = pl_dh_generate(&self->dik);
    if (rc == 0)
        rc = pl_dcert_build(self->dcert, sizeof self->dcert, &self->dcert_len, aik, user, device,
                            self->dik.pk, created_at);
    if (rc != 0) {
        pl_e2e_self_wipe(self);
        return rc;
    }
    memcpy(self->aik_pub, aik->pk, 32);
    strcpy(self->user, user);
    strcpy(self->device, device);
    return 0;
}

int pl_e2e_self_load(pl_e2e_self *self, const unsigned char aik_pub[32], const pl_dh_pair *dik,
                     const unsigned char *dcert, size_t dcert_len)
{
    pl_dcert d;
    unsigned char pk[32];
    if (self == NULL || aik_pub == NULL || dik == NULL) return PL_E2E_EINVAL;
    int rc = pl_dcert_verify(&d, dcert, dcert_len, aik_pub);
    if (rc != 0) return rc;
    if (crypto_scalarmult_base(pk, dik->sk) != 0) return PL_E2E_ECRYPTO;
    if (sodium_memcmp(pk, dik->pk, 32) != 0 || sodium_memcmp(d.dik_pub, dik->pk, 32) != 0)
        return PL_E2E_EIDENTITY;
    memset(self, 0, sizeof *self);
    strcpy(self->user, d.user);
    strcpy(self->device, d.device);
    memcpy(self->aik_pub, aik_pub, 32);
    self->dik = *dik;
    memcpy(self->dcert, dcert, dcert_len);
    self->dcert_len = dcert_len;
    return 0;
}

void pl_e2e_self_wipe(pl_e2e_self *self)
{
    if (self) sodium_memzero(self, sizeof *self);
}

/* ----------------------------------------------------------------------------------- bundle */

int pl_bundle_verify(const pl_bundle *b, const unsigned char pinned_aik[32], pl_dcert *dcert_out)
{
    pl_dcert d;
    if (b == NULL || pinned_aik == NULL || !pl_id_valid(b->user) || !pl_id_valid(b->device))
        return PL_E2E_EINVAL;
    if (sodium_memcmp(b->aik, pinned_aik, 32) != 0) return PL_E2E_EIDENTITY;
    int rc = pl_dcert_verify(&d, b->dcert, b->dcert_len, pinned_aik);
    if (rc != 0) return rc;
    if (strcmp(d.user, b->user) != 0 || strcmp(d.device, b->device) != 0) return PL_E2E_EIDENTITY;
    if (pl_x25519_pub_check(b->spk_pub) != 0) return PL_E2E_EKEY;
    if (b->opk_id != PL_OPK_NONE && pl_x25519_pub_check(b->opk_pub) != 0) return PL_E2E_EKEY;
    rc = pl_spk_verify(b->spk_sig, pinned_aik, b->user, b->device, b->spk_id, b->spk_pub);
    if (rc != 0) return rc;
    if (dcert_out) *dcert_out = d;
    return 0;
}
