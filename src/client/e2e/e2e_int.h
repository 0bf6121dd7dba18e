/* e2e_int.h: what the files of src/client/e2e share and nothing else may use.
 *
 *   - a byte writer and reader (big-endian integers, id(x)) whose errors stick, so a layout is
 *     written or parsed as a straight list of fields and checked once at the end;
 *   - pl__vec, a growable array for secret entries: it never leaves a copy behind (grows by
 *     allocate, copy, wipe, free; wipes what it drops);
 *   - the receiving hash chain with its skipped keys, shared by the Double Ratchet (keyed by
 *     ratchet key and N) and Sender Keys (keyed by iteration only);
 *   - the labels of E2E.md §2.
 * Internal names start with pl__.
 */
#ifndef PL_E2E_INT_H
#define PL_E2E_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "client/e2e/e2e.h"

#define PL__L_X3DH   "PARLEYv1/X3DH"
#define PL__L_RK     "PARLEYv1/RK"
#define PL__L_MK     "PARLEYv1/MK"
#define PL__L_SKMK   "PARLEYv1/SKMK"
#define PL__L_DCERT  "PARLEYv1/DCERT"
#define PL__L_SPK    "PARLEYv1/SPK"
#define PL__L_SKSIG  "PARLEYv1/SKSIG"
#define PL__L_AD     "PARLEYv1/AD"
#define PL__L_SKMSG  "PARLEYv1/SKMSG"
#define PL__LEN(lit) (sizeof(lit) - 1)

/* ------------------------------------------------------------------------------------ writer */

/* With p == NULL the writer only counts (cap is ignored). */
typedef struct pl__w {
    unsigned char *p;
    size_t cap, len;
    bool err;
} pl__w;

static inline void pl__w_bytes(pl__w *w, const void *b, size_t n)
{
    if (w->err) return;
    if (w->p) {
        if (n > w->cap - w->len) {
            w->err = true;
            return;
        }
        if (n) memcpy(w->p + w->len, b, n);
    }
    w->len += n;
}

static inline void pl__w_u8(pl__w *w, uint8_t v)
{
    pl__w_bytes(w, &v, 1);
}

static inline void pl__w_u16(pl__w *w, uint16_t v)
{
    unsigned char b[2] = {(unsigned char)(v >> 8), (unsigned char)v};
    pl__w_bytes(w, b, 2);
}

static inline void pl__w_u32(pl__w *w, uint32_t v)
{
    unsigned char b[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 8), (unsigned char)v};
    pl__w_bytes(w, b, 4);
}

static inline void pl__w_u64(pl__w *w, uint64_t v)
{
    pl__w_u32(w, (uint32_t)(v >> 32));
    pl__w_u32(w, (uint32_t)v);
}

/* id(x); the caller has checked pl_id_valid. */
static inline void pl__w_id(pl__w *w, const char *id)
{
    size_t n = strlen(id);
    if (n < 1 || n > PL_E2E_ID_MAX) {
        w->err = true;
        return;
    }
    pl__w_u8(w, (uint8_t)n);
    pl__w_bytes(w, id, n);
}

/* ------------------------------------------------------------------------------------ reader */

typedef struct pl__r {
    const unsigned char *p;
    size_t len, off;
    bool err;
} pl__r;

static inline const unsigned char *pl__r_take(pl__r *r, size_t n)
{
    if (r->err || n > r->len - r->off) {
        r->err = true;
        return NULL;
    }
    const unsigned char *b = r->p + r->off;
    r->off += n;
    return b;
}

static inline void pl__r_copy(pl__r *r, void *out, size_t n)
{
    const unsigned char *b = pl__r_take(r, n);
    if (b)
        memcpy(out, b, n);
    else
        memset(out, 0, n);
}

static inline uint8_t pl__r_u8(pl__r *r)
{
    const unsigned char *b = pl__r_take(r, 1);
    return b ? b[0] : 0;
}

static inline uint16_t pl__r_u16(pl__r *r)
{
    const unsigned char *b = pl__r_take(r, 2);
    return b ? (uint16_t)((b[0] << 8) | b[1]) : 0;
}

static inline uint32_t pl__r_u32(pl__r *r)
{
    const unsigned char *b = pl__r_take(r, 4);
    return b ? ((uint32_t)b[0] << 24) | ((uint32_t)b[1] << 16) | ((uint32_t)b[2] << 8) | b[3] : 0;
}

static inline uint64_t pl__r_u64(pl__r *r)
{
    uint64_t hi = pl__r_u32(r);
    return (hi << 32) | pl__r_u32(r);
}

/* id(x) into out (PL_E2E_ID_MAX + 1 bytes); a bad length or character is an error. */
void pl__r_id(pl__r *r, char *out);

/* True when every byte was consumed and nothing failed. */
static inline bool pl__r_done(const pl__r *r)
{
    return !r->err && r->off == r->len;
}

/* --------------------------------------------------------------------------------------- vec */

typedef struct pl__vec {
    unsigned char *p;
    size_t n, cap, esz;
} pl__vec;

static inline void *pl__vec_at(const pl__vec *v, size_t i)
{
    return v->p + i * v->esz;
}

int pl__vec_reserve(pl__vec *v, size_t need);
/* A new zeroed entry at the end, or NULL when out of memory. */
void *pl__vec_push(pl__vec *v);
void pl__vec_remove(pl__vec *v, size_t i);
void pl__vec_drop_front(pl__vec *v, size_t k);
int pl__vec_copy(pl__vec *dst, const pl__vec *src);
void pl__vec_free(pl__vec *v);

/* ----------------------------------------------------------------------------- chain + skipped */

/* A skipped message key. Sender-key states leave dh zeroed. */
typedef struct pl__skipped {
    unsigned char dh[32];
    uint32_t n;
    uint64_t at;
    unsigned char mk[32];
} pl__skipped;

/* One step of a receiving or sending chain: mk = HKDF(none, HMAC(ck, 1), label), ck advances. */
int pl__chain_step(unsigned char ck[32], unsigned char mk[32], const char *label);
/* Stores the keys of chain (dh, *n .. until - 1) in skipped, evicting the oldest beyond
 * PL_MAX_SKIPPED, and leaves ck and *n at until. PL_E2E_ETOOFAR when until - *n > PL_MAX_SKIP;
 * nothing to do when until <= *n. dh may be NULL. */
int pl__chain_skip(pl__vec *skipped, const unsigned char *dh, unsigned char ck[32], uint32_t *n,
                   uint32_t until, const char *label, uint64_t now_ms);
/* Finds the key of (dh, n), moves it to mk and deletes it; false when absent. */
bool pl__skipped_take(pl__vec *skipped, const unsigned char *dh, uint32_t n, unsigned char mk[32]);
size_t pl__skipped_expire(pl__vec *skipped, uint64_t now_ms);
/* Serialized entries: [dh 32 when with_dh] n u32, at u64, mk 32. */
void pl__skipped_write(pl__w *w, const pl__vec *skipped, bool with_dh);
int pl__skipped_read(pl__r *r, pl__vec *skipped, bool with_dh);

/* ---------------------------------------------------------------------------------- payloads */

/* Pads ctype || payload into a new heap buffer (wiped and freed by the caller with
 * pl__secret_free). */
int pl__plain_pad(unsigned char **out, size_t *outlen, uint8_t ctype, const unsigned char *payload,
                  size_t len);
/* Unpads a decrypted buffer into pt (ctype check, length check). */
int pl__plain_unpad(pl_e2e_out *pt, const unsigned char *padded, size_t len);
/* On a failed decrypt: wipes whatever plaintext reached the caller's buffer, sets len to 0. */
void pl__out_fail(pl_e2e_out *pt);
/* Length check of a ciphertext body (ct || tag): a positive multiple of 160 plus 16. */
bool pl__ct_len_ok(size_t ctlen);
/* Memory for secrets: sodium_malloc (guard pages, locked against swapping when the limit allows,
 * canary checked on free), zero-filled; NULL when out of memory. Under AddressSanitizer the
 * heap is used instead, so that leaks and overflows stay visible to it. pl__secret_free wipes
 * len bytes and releases; NULL is ignored. */
void *pl__secret_alloc(size_t len);
void pl__secret_free(void *p, size_t len);

/* ------------------------------------------------------------------------------- session */

struct pl_e2e_session {
    unsigned char rk[32];
    pl_dh_pair dhs; /* own ratchet pair (DHs) */
    unsigned char dhr[32];
    unsigned char cks[32], ckr[32];
    uint32_t ns, nr, pn;
    bool initiator, pending_prekey, has_dhr, has_cks, has_ckr;
    unsigned char ad[PL_AD_MAX];
    size_t ad_len;
    unsigned char ek_hash[32];
    char peer_user[PL_E2E_ID_MAX + 1], peer_device[PL_E2E_ID_MAX + 1];
    unsigned char peer_aik[32];
    /* the prekey block an initiator repeats until it receives a message */
    unsigned char pk_aik[32];
    unsigned char pk_dcert[PL_DCERT_MAX];
    size_t pk_dcert_len;
    unsigned char pk_ek[32];
    uint32_t pk_spk_id, pk_opk_id;
    pl__vec skipped; /* of pl__skipped */
};

/* A parsed PREKEY_MSG or MSG (pointers into the caller's bytes). */
typedef struct pl__wire {
    uint8_t type;
    pl_prekey_msg pk; /* PREKEY_MSG only */
    const unsigned char *dh;
    uint32_t pn, n;
    size_t hlen; /* H: every byte before the nonce */
    const unsigned char *nonce, *ct;
    size_t ctlen; /* ciphertext and tag */
} pl__wire;

int pl__wire_parse(pl__wire *m, const unsigned char *msg, size_t len);
/* A new, empty session (skipped keys set up), or NULL. */
pl_e2e_session *pl__e2e_session_alloc(void);
/* Ratchet decryption of a parsed message on s itself (the caller passes a copy). */
int pl__ratchet_decrypt(pl_e2e_session *s, const pl__wire *m, const unsigned char *msg,
                        uint64_t now_ms, pl_e2e_out *pt);
/* AEAD with ad = prefix || H (H = msg[0..hlen)); shared by the ratchet and Sender Keys. */
int pl__aead_open(unsigned char **padded, size_t *plen, const unsigned char *ct, size_t ctlen,
                  const unsigned char *prefix, size_t prefixlen, const unsigned char *h,
                  size_t hlen, const unsigned char nonce[24], const unsigned char key[32]);
int pl__aead_seal(unsigned char *out, const unsigned char *padded, size_t plen,
                  const unsigned char *prefix, size_t prefixlen, const unsigned char *h,
                  size_t hlen, const unsigned char nonce[24], const unsigned char key[32]);

#endif
