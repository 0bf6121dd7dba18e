/* senderkey.c: group encryption with signed Sender Keys (E2E.md §7.2): the sending state of this
 * device in one conversation, the SKDM that distributes it, SKMSG encryption, and the receiving
 * states of one sender device in one conversation.
 *
 * Order of checks on receive, each cheaper and less trusting than the next: layout, known
 * dist_id, then the SSK signature, and only then any key derivation (a forged SKMSG costs one
 * Ed25519 verification and derives nothing). The iteration then selects a skipped key (used
 * once), a forward step of at most PL_MAX_SKIP, or a replay. Like the ratchet, a decrypt runs on
 * a copy of the state and commits only after the tag verifies.
 *
 * Ed25519 here is plain crypto_sign_detached over one buffer: libsodium's multi-part
 * crypto_sign_init/update/final is Ed25519ph, a different signature.
 */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "client/e2e/e2e_int.h"

#define NONCE_LEN   crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define AEAD_ABYTES crypto_aead_xchacha20poly1305_ietf_ABYTES
#define SKDM_VER    0x01
#define H_LEN       23 /* version, suite, type, dist_id, iteration */
#define SIG_LEN     64

#define SENDER_MAGIC "PLSK"
#define PEER_MAGIC   "PLSP"
#define STATE_VER    0x01

typedef struct sent_entry {
    char user[PL_E2E_ID_MAX + 1];
    char device[PL_E2E_ID_MAX + 1];
} sent_entry;

struct pl_sk_sender {
    char conv[PL_E2E_ID_MAX + 1], user[PL_E2E_ID_MAX + 1], device[PL_E2E_ID_MAX + 1];
    unsigned char dist_id[16];
    unsigned char ck[32];
    uint32_t iteration;
    pl_sign_pair ssk;
    uint64_t created_at;
    uint32_t msg_count;
    pl__vec sent_to; /* of sent_entry */
};

typedef struct sk_state {
    unsigned char dist_id[16];
    unsigned char ck[32];
    uint32_t iteration; /* the next one this chain key derives */
    unsigned char ssk_pub[32];
    uint64_t installed_at;
    pl__vec skipped; /* of pl__skipped, dh unused */
} sk_state;

struct pl_sk_peer {
    char conv[PL_E2E_ID_MAX + 1], user[PL_E2E_ID_MAX + 1], device[PL_E2E_ID_MAX + 1];
    sk_state st[PL_SK_STATES_MAX]; /* oldest first */
    size_t n;
};

/* "label" || id(conv) || id(user) || id(device): the prefix of both the AEAD ad and the signed
 * bytes. */
static size_t ids_prefix(unsigned char *buf, size_t cap, const char *label, const char *conv,
                         const char *user, const char *device)
{
    pl__w w = {.p = buf, .cap = cap};
    pl__w_bytes(&w, label, strlen(label));
    pl__w_id(&w, conv);
    pl__w_id(&w, user);
    pl__w_id(&w, device);
    return w.err ? 0 : w.len;
}

/* The signed message: SKSIG prefix || every SKMSG byte before the signature. */
static int sig_message(unsigned char **out, size_t *outlen, const char *conv, const char *user,
                       const char *device, const unsigned char *msg, size_t len)
{
    unsigned char pre[256];
    size_t plen = ids_prefix(pre, sizeof pre, PL__L_SKSIG, conv, user, device);
    if (plen == 0) return PL_E2E_EINVAL;
    unsigned char *b = malloc(plen + len);
    if (b == NULL) return PL_E2E_ENOMEM;
    memcpy(b, pre, plen);
    memcpy(b + plen, msg, len);
    *out = b;
    *outlen = plen + len;
    return 0;
}

static bool ids_ok(const char *conv, const char *user, const char *device)
{
    return pl_id_valid(conv) && pl_id_valid(user) && pl_id_valid(device);
}

/* ------------------------------------------------------------------------------------ sender */

int pl_sk_sender_new(pl_sk_sender **out, const char *conv, const char *user, const char *device,
                     uint64_t now_ms)
{
    if (out == NULL || !ids_ok(conv, user, device)) return PL_E2E_EINVAL;
    *out = NULL;
    pl_sk_sender *st = pl__secret_alloc(sizeof *st);
    if (st == NULL) return PL_E2E_ENOMEM;
    st->sent_to.esz = sizeof(sent_entry);
    strcpy(st->conv, conv);
    strcpy(st->user, user);
    strcpy(st->device, device);
    randombytes_buf(st->dist_id, sizeof st->dist_id);
    randombytes_buf(st->ck, sizeof st->ck);
    st->created_at = now_ms;
    int rc = pl_sign_generate(&st->ssk);
    if (rc != 0) {
        pl_sk_sender_free(st);
        return rc;
    }
    *out = st;
    return 0;
}

void pl_sk_sender_free(pl_sk_sender *st)
{
    if (st == NULL) return;
    pl__vec_free(&st->sent_to);
    pl__secret_free(st, sizeof *st);
}

int pl_sk_sender_skdm(const pl_sk_sender *st, unsigned char *out, size_t cap, size_t *outlen)
{
    if (st == NULL || out == NULL || outlen == NULL) return PL_E2E_EINVAL;
    pl__w w = {.p = out, .cap = cap};
    pl__w_u8(&w, SKDM_VER);
    pl__w_id(&w, st->conv);
    pl__w_bytes(&w, st->dist_id, 16);
    pl__w_u32(&w, st->iteration);
    pl__w_bytes(&w, st->ck, 32);
    pl__w_bytes(&w, st->ssk.pk, 32);
    if (w.err) return PL_E2E_ENOSPC;
    *outlen = w.len;
    return 0;
}

size_t pl_sk_encrypt_size(size_t payload_len)
{
    size_t padded = (1 + payload_len) / PL_E2E_PAD_BLOCK * PL_E2E_PAD_BLOCK + PL_E2E_PAD_BLOCK;
    return H_LEN + NONCE_LEN + padded + AEAD_ABYTES + SIG_LEN;
}

int pl_sk_encrypt(pl_sk_sender *st, const unsigned char *payload, size_t len, unsigned char *out,
                  size_t cap, size_t *outlen)
{
    unsigned char ck[32], mk[32], pre[256];
    unsigned char *padded = NULL, *signed_msg = NULL;
    size_t plen = 0, slen = 0, prelen, total;
    int rc;

    if (st == NULL || out == NULL || outlen == NULL) return PL_E2E_EINVAL;
    if (st->iteration == UINT32_MAX) return PL_E2E_ECOUNTER;
    if (len > PL_E2E_PAYLOAD_MAX) return PL_E2E_ETOOBIG;
    if (cap < pl_sk_encrypt_size(len)) return PL_E2E_ENOSPC;
    if ((rc = pl__plain_pad(&padded, &plen, PL_CT_CONTENT, payload, len)) != 0) return rc;
    prelen = ids_prefix(pre, sizeof pre, PL__L_SKMSG, st->conv, st->user, st->device);
    if (prelen == 0) {
        rc = PL_E2E_EINVAL;
        goto cleanup;
    }

    pl__w w = {.p = out, .cap = cap};
    pl__w_u8(&w, PL_E2E_VERSION);
    pl__w_u8(&w, PL_E2E_SUITE);
    pl__w_u8(&w, PL_WIRE_SKMSG);
    pl__w_bytes(&w, st->dist_id, 16);
    pl__w_u32(&w, st->iteration);
    randombytes_buf(out + H_LEN, NONCE_LEN);
    memcpy(ck, st->ck, 32);
    if ((rc = pl__chain_step(ck, mk, PL__L_SKMK)) != 0) goto cleanup;
    rc = pl__aead_seal(out + H_LEN + NONCE_LEN, padded, plen, pre, prelen, out, H_LEN, out + H_LEN,
                       mk);
    if (rc != 0) goto cleanup;
    total = H_LEN + NONCE_LEN + plen + AEAD_ABYTES;
    if ((rc = sig_message(&signed_msg, &slen, st->conv, st->user, st->device, out, total)) != 0)
        goto cleanup;
    if (crypto_sign_detached(out + total, NULL, signed_msg, slen, st->ssk.sk) != 0) {
        rc = PL_E2E_ECRYPTO;
        goto cleanup;
    }
    /* commit */
    memcpy(st->ck, ck, 32);
    st->iteration++;
    st->msg_count++;
    *outlen = total + SIG_LEN;
cleanup:
    sodium_memzero(ck, sizeof ck);
    sodium_memzero(mk, sizeof mk);
    pl__secret_free(padded, plen);
    free(signed_msg); /* ciphertext: public */
    return rc;
}

bool pl_sk_sender_needs_rotation(const pl_sk_sender *st, uint64_t now_ms)
{
    return st->msg_count >= PL_SK_ROTATE_MSGS ||
           (now_ms >= st->created_at && now_ms - st->created_at >= PL_SK_ROTATE_MS);
}

const unsigned char *pl_sk_sender_dist_id(const pl_sk_sender *st)
{
    return st->dist_id;
}

uint32_t pl_sk_sender_iteration(const pl_sk_sender *st)
{
    return st->iteration;
}

static size_t sent_find(const pl_sk_sender *st, const char *user, const char *device)
{
    for (size_t i = 0; i < st->sent_to.n; i++) {
        const sent_entry *e = pl__vec_at(&st->sent_to, i);
        if (strcmp(e->user, user) == 0 && strcmp(e->device, device) == 0) return i;
    }
    return SIZE_MAX;
}

bool pl_sk_sender_sent_to_has(const pl_sk_sender *st, const char *user, const char *device)
{
    return st && user && device && sent_find(st, user, device) != SIZE_MAX;
}

int pl_sk_sender_sent_to_add(pl_sk_sender *st, const char *user, const char *device)
{
    if (st == NULL || !pl_id_valid(user) || !pl_id_valid(device)) return PL_E2E_EINVAL;
    if (sent_find(st, user, device) != SIZE_MAX) return 0;
    if (st->sent_to.n >= UINT16_MAX) return PL_E2E_EINVAL;
    sent_entry *e = pl__vec_push(&st->sent_to);
    if (e == NULL) return PL_E2E_ENOMEM;
    strcpy(e->user, user);
    strcpy(e->device, device);
    return 0;
}

size_t pl_sk_sender_sent_to_count(const pl_sk_sender *st)
{
    return st ? st->sent_to.n : 0;
}

int pl_sk_sender_sent_to_at(const pl_sk_sender *st, size_t i, const char **user,
                            const char **device)
{
    if (st == NULL || i >= st->sent_to.n || user == NULL || device == NULL) return PL_E2E_EINVAL;
    const sent_entry *e = pl__vec_at(&st->sent_to, i);
    *user = e->user;
    *device = e->device;
    return 0;
}

int pl_sk_sender_sent_to_remove(pl_sk_sender *st, const char *user, const char *device)
{
    if (st == NULL || user == NULL || device == NULL) return PL_E2E_EINVAL;
    pl__vec_remove(&st->sent_to, sent_find(st, user, device));
    return 0;
}

static void sender_write(pl__w *w, const pl_sk_sender *st)
{
    pl__w_bytes(w, SENDER_MAGIC, 4);
    pl__w_u8(w, STATE_VER);
    pl__w_id(w, st->conv);
    pl__w_id(w, st->user);
    pl__w_id(w, st->device);
    pl__w_bytes(w, st->dist_id, 16);
    pl__w_bytes(w, st->ck, 32);
    pl__w_u32(w, st->iteration);
    pl__w_bytes(w, st->ssk.pk, 32);
    pl__w_bytes(w, st->ssk.sk, 64);
    pl__w_u64(w, st->created_at);
    pl__w_u32(w, st->msg_count);
    pl__w_u16(w, (uint16_t)st->sent_to.n);
    for (size_t i = 0; i < st->sent_to.n; i++) {
        const sent_entry *e = pl__vec_at(&st->sent_to, i);
        pl__w_id(w, e->user);
        pl__w_id(w, e->device);
    }
}

size_t pl_sk_sender_serialized_size(const pl_sk_sender *st)
{
    pl__w w = {0};
    sender_write(&w, st);
    return w.len;
}

int pl_sk_sender_serialize(const pl_sk_sender *st, unsigned char *out, size_t cap, size_t *outlen)
{
    if (st == NULL || out == NULL || outlen == NULL) return PL_E2E_EINVAL;
    pl__w w = {.p = out, .cap = cap};
    sender_write(&w, st);
    if (w.err) {
        sodium_memzero(out, cap);
        return PL_E2E_ENOSPC;
    }
    *outlen = w.len;
    return 0;
}

int pl_sk_sender_deserialize(pl_sk_sender **out, const unsigned char *in, size_t len)
{
    unsigned char pk[32];
    if (out == NULL || in == NULL) return PL_E2E_EINVAL;
    *out = NULL;
    pl_sk_sender *st = pl__secret_alloc(sizeof *st);
    if (st == NULL) return PL_E2E_ENOMEM;
    st->sent_to.esz = sizeof(sent_entry);
    int rc = PL_E2E_ESTATE;
    pl__r r = {.p = in, .len = len};
    const unsigned char *magic = pl__r_take(&r, 4);
    if (magic == NULL || memcmp(magic, SENDER_MAGIC, 4) != 0) goto fail;
    if (pl__r_u8(&r) != STATE_VER) goto fail;
    pl__r_id(&r, st->conv);
    pl__r_id(&r, st->user);
    pl__r_id(&r, st->device);
    pl__r_copy(&r, st->dist_id, 16);
    pl__r_copy(&r, st->ck, 32);
    st->iteration = pl__r_u32(&r);
    pl__r_copy(&r, st->ssk.pk, 32);
    pl__r_copy(&r, st->ssk.sk, 64);
    st->created_at = pl__r_u64(&r);
    st->msg_count = pl__r_u32(&r);
    uint16_t n = pl__r_u16(&r);
    for (uint16_t i = 0; i < n && !r.err; i++) {
        sent_entry *e = pl__vec_push(&st->sent_to);
        if (e == NULL) {
            rc = PL_E2E_ENOMEM;
            goto fail;
        }
        pl__r_id(&r, e->user);
        pl__r_id(&r, e->device);
    }
    if (!pl__r_done(&r)) goto fail;
    /* the public half must match the secret key (its last 32 bytes) */
    if (crypto_sign_ed25519_sk_to_pk(pk, st->ssk.sk) != 0 || memcmp(pk, st->ssk.pk, 32) != 0)
        goto fail;
    *out = st;
    return 0;
fail:
    pl_sk_sender_free(st);
    return rc;
}

/* -------------------------------------------------------------------------------- receiving */

static void state_free(sk_state *s)
{
    pl__vec_free(&s->skipped);
    sodium_memzero(s, sizeof *s);
}

int pl_sk_peer_new(pl_sk_peer **out, const char *conv, const char *user, const char *device)
{
    if (out == NULL || !ids_ok(conv, user, device)) return PL_E2E_EINVAL;
    pl_sk_peer *p = pl__secret_alloc(sizeof *p);
    if (p == NULL) return PL_E2E_ENOMEM;
    strcpy(p->conv, conv);
    strcpy(p->user, user);
    strcpy(p->device, device);
    *out = p;
    return 0;
}

void pl_sk_peer_free(pl_sk_peer *p)
{
    if (p == NULL) return;
    for (size_t i = 0; i < p->n; i++) state_free(&p->st[i]);
    pl__secret_free(p, sizeof *p);
}

size_t pl_sk_peer_count(const pl_sk_peer *p)
{
    return p->n;
}

size_t pl_sk_peer_skipped_count(const pl_sk_peer *p)
{
    size_t n = 0;
    for (size_t i = 0; i < p->n; i++) n += p->st[i].skipped.n;
    return n;
}

size_t pl_sk_peer_expire(pl_sk_peer *p, uint64_t now_ms)
{
    size_t n = 0;
    for (size_t i = 0; i < p->n; i++) n += pl__skipped_expire(&p->st[i].skipped, now_ms);
    return n;
}

static sk_state *find_state(pl_sk_peer *p, const unsigned char dist_id[16])
{
    for (size_t i = 0; i < p->n; i++)
        if (memcmp(p->st[i].dist_id, dist_id, 16) == 0) return &p->st[i];
    return NULL;
}

int pl_sk_peer_install(pl_sk_peer *p, const pl_e2e_session *via, const char *frame_conv,
                       const unsigned char *skdm, size_t len, uint64_t now_ms)
{
    char conv[PL_E2E_ID_MAX + 1];
    sk_state ns = {.skipped.esz = sizeof(pl__skipped)};
    if (p == NULL || via == NULL || frame_conv == NULL || skdm == NULL) return PL_E2E_EINVAL;
    /* The SKDM speaks for the device at the other end of the session it came over, only. */
    if (strcmp(pl_e2e_session_peer_user(via), p->user) != 0 ||
        strcmp(pl_e2e_session_peer_device(via), p->device) != 0)
        return PL_E2E_EIDENTITY;
    pl__r r = {.p = skdm, .len = len};
    if (len < 1) return PL_E2E_EFORMAT;
    if (pl__r_u8(&r) != SKDM_VER) return PL_E2E_EVERSION;
    pl__r_id(&r, conv);
    pl__r_copy(&r, ns.dist_id, 16);
    ns.iteration = pl__r_u32(&r);
    pl__r_copy(&r, ns.ck, 32);
    pl__r_copy(&r, ns.ssk_pub, 32);
    int rc = 0;
    if (!pl__r_done(&r))
        rc = PL_E2E_EFORMAT;
    else if (strcmp(conv, frame_conv) != 0 || strcmp(conv, p->conv) != 0)
        rc = PL_E2E_EIDENTITY;
    else if (crypto_core_ed25519_is_valid_point(ns.ssk_pub) != 1)
        rc = PL_E2E_EKEY;
    else if (find_state(p, ns.dist_id) != NULL)
        rc = 1; /* known: ignored */
    if (rc != 0) {
        sodium_memzero(&ns, sizeof ns);
        return rc;
    }
    if (p->n == PL_SK_STATES_MAX) { /* evict the oldest */
        state_free(&p->st[0]);
        memmove(&p->st[0], &p->st[1], (PL_SK_STATES_MAX - 1) * sizeof p->st[0]);
        p->n--;
        sodium_memzero(&p->st[p->n], sizeof p->st[0]);
    }
    ns.installed_at = now_ms;
    p->st[p->n++] = ns;
    sodium_memzero(&ns, sizeof ns);
    return 0;
}

typedef struct skmsg {
    const unsigned char *dist_id;
    uint32_t iteration;
    const unsigned char *nonce, *ct, *sig;
    size_t ctlen;
} skmsg;

static int skmsg_parse(skmsg *m, const unsigned char *msg, size_t len)
{
    int type = pl_e2e_msg_type(msg, len);
    if (type < 0) return type;
    if (type != PL_WIRE_SKMSG) return PL_E2E_EVERSION;
    if (len < H_LEN + NONCE_LEN + AEAD_ABYTES + SIG_LEN) return PL_E2E_EFORMAT;
    pl__r r = {.p = msg, .len = len, .off = 3};
    m->dist_id = pl__r_take(&r, 16);
    m->iteration = pl__r_u32(&r);
    m->nonce = pl__r_take(&r, NONCE_LEN);
    m->ctlen = len - r.off - SIG_LEN;
    m->ct = pl__r_take(&r, m->ctlen);
    m->sig = pl__r_take(&r, SIG_LEN);
    if (!pl__r_done(&r) || !pl__ct_len_ok(m->ctlen)) return PL_E2E_EFORMAT;
    if (m->iteration == UINT32_MAX) return PL_E2E_EFORMAT; /* never sent */
    return 0;
}

int pl_skmsg_peek(const unsigned char *msg, size_t len, unsigned char dist_id[16],
                  uint32_t *iteration)
{
    skmsg m;
    int rc = skmsg_parse(&m, msg, len);
    if (rc != 0) return rc;
    if (dist_id) memcpy(dist_id, m.dist_id, 16);
    if (iteration) *iteration = m.iteration;
    return 0;
}

int pl_sk_decrypt(pl_sk_peer *p, const unsigned char *msg, size_t len, uint64_t now_ms,
                  pl_e2e_out *pt)
{
    skmsg m;
    sk_state c = {.skipped.esz = sizeof(pl__skipped)};
    unsigned char mk[32], pre[256];
    unsigned char *signed_msg = NULL, *padded = NULL;
    size_t slen = 0, plen = 0, prelen;
    int rc;

    if (p == NULL || msg == NULL || pt == NULL) return PL_E2E_EINVAL;
    pt->len = 0;
    if ((rc = skmsg_parse(&m, msg, len)) != 0) return rc;
    sk_state *st = find_state(p, m.dist_id);
    if (st == NULL) return PL_E2E_ENOKEY;
    /* 1. the signature, before any key is derived */
    if ((rc = sig_message(&signed_msg, &slen, p->conv, p->user, p->device, msg, len - SIG_LEN)))
        return rc;
    rc = crypto_sign_verify_detached(m.sig, signed_msg, slen, st->ssk_pub) == 0 ? 0 : PL_E2E_ESIG;
    free(signed_msg);
    if (rc != 0) return rc;
    /* 2. the iteration, on a copy */
    c = *st;
    if ((rc = pl__vec_copy(&c.skipped, &st->skipped)) != 0) {
        c.skipped = (pl__vec){0};
        goto cleanup;
    }
    if (m.iteration < c.iteration) {
        if (!pl__skipped_take(&c.skipped, NULL, m.iteration, mk)) {
            rc = PL_E2E_EREPLAY;
            goto cleanup;
        }
    } else {
        rc = pl__chain_skip(&c.skipped, NULL, c.ck, &c.iteration, m.iteration, PL__L_SKMK, now_ms);
        if (rc != 0) goto cleanup;
        if ((rc = pl__chain_step(c.ck, mk, PL__L_SKMK)) != 0) goto cleanup;
        c.iteration = m.iteration + 1;
    }
    /* 3. the tag */
    prelen = ids_prefix(pre, sizeof pre, PL__L_SKMSG, p->conv, p->user, p->device);
    rc = pl__aead_open(&padded, &plen, m.ct, m.ctlen, pre, prelen, msg, H_LEN, m.nonce, mk);
    if (rc != 0) goto cleanup;
    if ((rc = pl__plain_unpad(pt, padded, plen)) != 0) goto cleanup;
    if (pt->ctype != PL_CT_CONTENT) {
        rc = PL_E2E_EFORMAT;
        goto cleanup;
    }
    /* commit: the copy becomes the state, the old one is wiped through c */
    {
        sk_state old = *st;
        *st = c;
        c = old;
    }
cleanup:
    if (rc != 0) pl__out_fail(pt);
    state_free(&c);
    sodium_memzero(mk, sizeof mk);
    pl__secret_free(padded, plen);
    return rc;
}

static void peer_write(pl__w *w, const pl_sk_peer *p)
{
    pl__w_bytes(w, PEER_MAGIC, 4);
    pl__w_u8(w, STATE_VER);
    pl__w_id(w, p->conv);
    pl__w_id(w, p->user);
    pl__w_id(w, p->device);
    pl__w_u8(w, (uint8_t)p->n);
    for (size_t i = 0; i < p->n; i++) {
        const sk_state *s = &p->st[i];
        pl__w_bytes(w, s->dist_id, 16);
        pl__w_bytes(w, s->ck, 32);
        pl__w_u32(w, s->iteration);
        pl__w_bytes(w, s->ssk_pub, 32);
        pl__w_u64(w, s->installed_at);
        pl__skipped_write(w, &s->skipped, false);
    }
}

size_t pl_sk_peer_serialized_size(const pl_sk_peer *p)
{
    pl__w w = {0};
    peer_write(&w, p);
    return w.len;
}

int pl_sk_peer_serialize(const pl_sk_peer *p, unsigned char *out, size_t cap, size_t *outlen)
{
    if (p == NULL || out == NULL || outlen == NULL) return PL_E2E_EINVAL;
    pl__w w = {.p = out, .cap = cap};
    peer_write(&w, p);
    if (w.err) {
        sodium_memzero(out, cap);
        return PL_E2E_ENOSPC;
    }
    *outlen = w.len;
    return 0;
}

int pl_sk_peer_deserialize(pl_sk_peer **out, const unsigned char *in, size_t len)
{
    if (out == NULL || in == NULL) return PL_E2E_EINVAL;
    *out = NULL;
    pl_sk_peer *p = pl__secret_alloc(sizeof *p);
    if (p == NULL) return PL_E2E_ENOMEM;
    int rc = PL_E2E_ESTATE;
    pl__r r = {.p = in, .len = len};
    const unsigned char *magic = pl__r_take(&r, 4);
    if (magic == NULL || memcmp(magic, PEER_MAGIC, 4) != 0) goto fail;
    if (pl__r_u8(&r) != STATE_VER) goto fail;
    pl__r_id(&r, p->conv);
    pl__r_id(&r, p->user);
    pl__r_id(&r, p->device);
    uint8_t n = pl__r_u8(&r);
    if (n > PL_SK_STATES_MAX) goto fail;
    for (uint8_t i = 0; i < n && !r.err; i++) {
        sk_state *s = &p->st[p->n++];
        s->skipped.esz = sizeof(pl__skipped);
        pl__r_copy(&r, s->dist_id, 16);
        pl__r_copy(&r, s->ck, 32);
        s->iteration = pl__r_u32(&r);
        pl__r_copy(&r, s->ssk_pub, 32);
        s->installed_at = pl__r_u64(&r);
        if ((rc = pl__skipped_read(&r, &s->skipped, false)) != 0) goto fail;
        rc = PL_E2E_ESTATE;
    }
    if (!pl__r_done(&r)) goto fail;
    *out = p;
    return 0;
fail:
    pl_sk_peer_free(p);
    return rc;
}
