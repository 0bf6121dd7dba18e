/* prim.c: the small pieces every part of the E2E core stands on (E2E.md §2): initialisation,
 * error sentences, X25519 public-key checks, id(x), padding, the secret vector and the
 * receiving hash chain with its bounded store of skipped keys.
 *
 * Skipped keys are kept in insertion order, so "evict the oldest" is dropping from the front.
 * Lookups are a linear scan of at most 2000 entries; that is a few microseconds and happens
 * once per message, so no index is kept.
 */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "client/e2e/e2e_int.h"

int pl_e2e_init(void)
{
    return sodium_init() < 0 ? PL_E2E_ECRYPTO : 0;
}

const char *pl_e2e_strerror(int err)
{
    if (err >= 0) return "success";
    switch (err) {
#define PL_E2E_STR_(name, val, text)                                                               \
    case (val):                                                                                    \
        return text;
        PL_E2E_ERRNO_MAP(PL_E2E_STR_)
#undef PL_E2E_STR_
    }
    return "unknown error";
}

/* ------------------------------------------------------------------------------------ X25519 */

int pl_x25519_pub_check(const unsigned char pk[32])
{
    return (pk[31] & 0x80) ? PL_E2E_EKEY : 0;
}

int pl_dh(unsigned char out[32], const unsigned char sk[32], const unsigned char pk[32])
{
    if (pl_x25519_pub_check(pk) != 0) return PL_E2E_EKEY;
    if (crypto_scalarmult(out, sk, pk) != 0) {
        sodium_memzero(out, 32);
        return PL_E2E_EKEY;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------- id(x) */

static bool id_bytes_ok(const unsigned char *s, size_t n)
{
    if (n < 1 || n > PL_E2E_ID_MAX) return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x21 || s[i] > 0x7e) return false;
    return true;
}

bool pl_id_valid(const char *id)
{
    return id != NULL && id_bytes_ok((const unsigned char *)id, strnlen(id, PL_E2E_ID_MAX + 1));
}

int pl_id_encode(unsigned char *out, size_t cap, const char *id)
{
    if (!pl_id_valid(id) || out == NULL) return PL_E2E_EINVAL;
    pl__w w = {.p = out, .cap = cap};
    pl__w_id(&w, id);
    return w.err ? PL_E2E_ENOSPC : (int)w.len;
}

void pl__r_id(pl__r *r, char *out)
{
    out[0] = '\0';
    uint8_t n = pl__r_u8(r);
    const unsigned char *b = pl__r_take(r, n);
    if (b == NULL || !id_bytes_ok(b, n)) {
        r->err = true;
        return;
    }
    memcpy(out, b, n);
    out[n] = '\0';
}

int pl_id_decode(char out[PL_E2E_ID_MAX + 1], const unsigned char *in, size_t len)
{
    if (out == NULL || in == NULL) return PL_E2E_EINVAL;
    pl__r r = {.p = in, .len = len};
    pl__r_id(&r, out);
    return r.err ? PL_E2E_EFORMAT : (int)r.off;
}

/* ----------------------------------------------------------------------------------- padding */

int pl_pad(unsigned char *buf, size_t len, size_t cap, size_t *padded)
{
    if (buf == NULL || padded == NULL) return PL_E2E_EINVAL;
    if (sodium_pad(padded, buf, len, PL_E2E_PAD_BLOCK, cap) != 0) return PL_E2E_ENOSPC;
    return 0;
}

int pl_unpad(const unsigned char *buf, size_t len, size_t *unpadded)
{
    if (buf == NULL || unpadded == NULL) return PL_E2E_EINVAL;
    if (sodium_unpad(unpadded, buf, len, PL_E2E_PAD_BLOCK) != 0) return PL_E2E_EFORMAT;
    return 0;
}

void pl__out_fail(pl_e2e_out *pt)
{
    if (pt->buf && pt->len > 0 && pt->len <= pt->cap) sodium_memzero(pt->buf, pt->len);
    pt->len = 0;
}

bool pl__ct_len_ok(size_t ctlen)
{
    if (ctlen < crypto_aead_xchacha20poly1305_ietf_ABYTES + PL_E2E_PAD_BLOCK) return false;
    size_t p = ctlen - crypto_aead_xchacha20poly1305_ietf_ABYTES;
    return p % PL_E2E_PAD_BLOCK == 0 && p <= PL_E2E_PADDED_MAX;
}

#if defined(__SANITIZE_ADDRESS__)
#define SECRET_HEAP 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SECRET_HEAP 1
#endif
#endif

void *pl__secret_alloc(size_t len)
{
    if (len == 0) len = 1;
#ifdef SECRET_HEAP
    return calloc(1, len);
#else
    if (sodium_init() < 0) return NULL; /* sodium_malloc needs it; a no-op after the first */
    void *p = sodium_malloc(len);
    if (p) memset(p, 0, len);
    return p;
#endif
}

void pl__secret_free(void *p, size_t len)
{
    if (p == NULL) return;
    sodium_memzero(p, len);
#ifdef SECRET_HEAP
    free(p);
#else
    sodium_free(p);
#endif
}

void *pl_e2e_secret_alloc(size_t len)
{
    return pl__secret_alloc(len);
}

void pl_e2e_secret_free(void *p, size_t len)
{
    pl__secret_free(p, len);
}

int pl__plain_pad(unsigned char **out, size_t *outlen, uint8_t ctype, const unsigned char *payload,
                  size_t len)
{
    *out = NULL;
    if (len > PL_E2E_PAYLOAD_MAX) return PL_E2E_ETOOBIG;
    if (len > 0 && payload == NULL) return PL_E2E_EINVAL;
    if (ctype < PL_CT_CONTENT || ctype > PL_CT_RETRY) return PL_E2E_EINVAL;
    size_t cap = (1 + len) / PL_E2E_PAD_BLOCK * PL_E2E_PAD_BLOCK + PL_E2E_PAD_BLOCK;
    unsigned char *b = pl__secret_alloc(cap);
    if (b == NULL) return PL_E2E_ENOMEM;
    b[0] = ctype;
    if (len) memcpy(b + 1, payload, len);
    int rc = pl_pad(b, 1 + len, cap, outlen);
    if (rc != 0) {
        pl__secret_free(b, cap);
        return rc;
    }
    *out = b;
    return 0;
}

int pl__plain_unpad(pl_e2e_out *pt, const unsigned char *padded, size_t len)
{
    size_t n;
    if (pl_unpad(padded, len, &n) != 0 || n < 1) return PL_E2E_EFORMAT;
    uint8_t ctype = padded[0];
    if (ctype < PL_CT_CONTENT || ctype > PL_CT_RETRY) return PL_E2E_EFORMAT;
    if (n - 1 > PL_E2E_PAYLOAD_MAX) return PL_E2E_ETOOBIG;
    if (n - 1 > pt->cap) return PL_E2E_ENOSPC;
    if (n > 1) memcpy(pt->buf, padded + 1, n - 1);
    pt->len = n - 1;
    pt->ctype = ctype;
    return 0;
}

/* ---------------------------------------------------------------------------------------- vec */

int pl__vec_reserve(pl__vec *v, size_t need)
{
    if (need <= v->cap) return 0;
    size_t cap = v->cap ? v->cap : 16;
    while (cap < need) cap *= 2;
    if (v->esz == 0 || cap > SIZE_MAX / v->esz) return PL_E2E_ENOMEM;
    unsigned char *p = pl__secret_alloc(cap * v->esz);
    if (p == NULL) return PL_E2E_ENOMEM;
    if (v->n) memcpy(p, v->p, v->n * v->esz);
    pl__secret_free(v->p, v->cap * v->esz); /* never realloc: it would leave a copy behind */
    v->p = p;
    v->cap = cap;
    return 0;
}

void *pl__vec_push(pl__vec *v)
{
    if (pl__vec_reserve(v, v->n + 1) != 0) return NULL;
    void *e = pl__vec_at(v, v->n++);
    memset(e, 0, v->esz);
    return e;
}

void pl__vec_remove(pl__vec *v, size_t i)
{
    if (i >= v->n) return;
    memmove(pl__vec_at(v, i), pl__vec_at(v, i + 1), (v->n - i - 1) * v->esz);
    v->n--;
    sodium_memzero(pl__vec_at(v, v->n), v->esz);
}

void pl__vec_drop_front(pl__vec *v, size_t k)
{
    if (k == 0) return;
    if (k > v->n) k = v->n;
    memmove(v->p, pl__vec_at(v, k), (v->n - k) * v->esz);
    sodium_memzero(pl__vec_at(v, v->n - k), k * v->esz);
    v->n -= k;
}

int pl__vec_copy(pl__vec *dst, const pl__vec *src)
{
    *dst = (pl__vec){.esz = src->esz};
    if (src->n == 0) return 0;
    if (pl__vec_reserve(dst, src->n) != 0) return PL_E2E_ENOMEM;
    memcpy(dst->p, src->p, src->n * src->esz);
    dst->n = src->n;
    return 0;
}

void pl__vec_free(pl__vec *v)
{
    pl__secret_free(v->p, v->cap * v->esz);
    v->p = NULL;
    v->n = v->cap = 0;
}

/* ---------------------------------------------------------------------- chain + skipped keys */

int pl__chain_skip(pl__vec *skipped, const unsigned char *dh, unsigned char ck[32], uint32_t *n,
                   uint32_t until, const char *label, uint64_t now_ms)
{
    if (until <= *n) return 0;
    size_t count = until - *n;
    if (count > PL_MAX_SKIP) return PL_E2E_ETOOFAR;
    /* Room first, in one move: evict the oldest so that the new keys fit. */
    if (skipped->n + count > PL_MAX_SKIPPED)
        pl__vec_drop_front(skipped, skipped->n + count - PL_MAX_SKIPPED);
    if (pl__vec_reserve(skipped, skipped->n + count) != 0) return PL_E2E_ENOMEM;
    for (; *n < until; (*n)++) {
        pl__skipped *e = pl__vec_push(skipped);
        if (e == NULL) return PL_E2E_ENOMEM;
        if (dh) memcpy(e->dh, dh, 32);
        e->n = *n;
        e->at = now_ms;
        int rc = pl__chain_step(ck, e->mk, label);
        if (rc != 0) return rc;
    }
    return 0;
}

bool pl__skipped_take(pl__vec *skipped, const unsigned char *dh, uint32_t n, unsigned char mk[32])
{
    static const unsigned char zeros[32];
    if (dh == NULL) dh = zeros;
    for (size_t i = 0; i < skipped->n; i++) {
        pl__skipped *e = pl__vec_at(skipped, i);
        if (e->n == n && memcmp(e->dh, dh, 32) == 0) {
            memcpy(mk, e->mk, 32);
            pl__vec_remove(skipped, i);
            return true;
        }
    }
    return false;
}

size_t pl__skipped_expire(pl__vec *skipped, uint64_t now_ms)
{
    size_t dropped = 0;
    for (size_t i = 0; i < skipped->n;) {
        pl__skipped *e = pl__vec_at(skipped, i);
        if (now_ms >= e->at && now_ms - e->at >= PL_SKIPPED_TTL_MS) {
            pl__vec_remove(skipped, i);
            dropped++;
        } else {
            i++;
        }
    }
    return dropped;
}

void pl__skipped_write(pl__w *w, const pl__vec *skipped, bool with_dh)
{
    pl__w_u16(w, (uint16_t)skipped->n);
    for (size_t i = 0; i < skipped->n; i++) {
        const pl__skipped *e = pl__vec_at(skipped, i);
        if (with_dh) pl__w_bytes(w, e->dh, 32);
        pl__w_u32(w, e->n);
        pl__w_u64(w, e->at);
        pl__w_bytes(w, e->mk, 32);
    }
}

int pl__skipped_read(pl__r *r, pl__vec *skipped, bool with_dh)
{
    uint16_t count = pl__r_u16(r);
    if (r->err || count > PL_MAX_SKIPPED) return PL_E2E_ESTATE;
    if (pl__vec_reserve(skipped, count) != 0) return PL_E2E_ENOMEM;
    for (uint16_t i = 0; i < count; i++) {
        pl__skipped *e = pl__vec_push(skipped);
        if (e == NULL) return PL_E2E_ENOMEM;
        if (with_dh) pl__r_copy(r, e->dh, 32);
        e->n = pl__r_u32(r);
        e->at = pl__r_u64(r);
        pl__r_copy(r, e->mk, 32);
    }
    return r->err ? PL_E2E_ESTATE : 0;
}
