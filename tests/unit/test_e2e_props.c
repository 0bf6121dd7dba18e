/* test_e2e_props.c: the property tests of E2E.md §16 for src/client/e2e: round trips with random
 * interleaving, DH steps and out-of-order delivery; MAX_SKIP on N, on PN and on sender-key
 * jumps, and eviction of the oldest skipped key; every flipped bit of PREKEY_MSG, MSG and SKMSG
 * and every AD input; forged SKMSG signatures rejected before any KDF; replays; failed decrypts
 * leaving the serialized state byte-identical; the SKDM id binding; DCERTs not signed by the
 * pinned AIK.
 *
 * A small in-test "engine" plays the caller: it routes a PREKEY_MSG to the session its EK named
 * or to the responder, and commits what the responder returns (session, OPK deletion, replay
 * cache entry) only on success. Randomness in the schedules comes from a fixed-seed xorshift, so
 * a failure reproduces; key material comes from libsodium.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "client/e2e/e2e.h"

#define T0   1700000000000ULL
#define NOPK 4

/* ------------------------------------------------------------------------------- harness */

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;

static uint32_t rnd(uint32_t n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state % n);
}

typedef struct blob {
    unsigned char *p;
    size_t n;
} blob;

static void blob_free(blob *b)
{
    free(b->p);
    b->p = NULL;
    b->n = 0;
}

static void assert_blob_eq(blob a, blob b)
{
    assert_int_equal(a.n, b.n);
    assert_memory_equal(a.p, b.p, a.n);
}

static blob ser(const pl_e2e_session *s)
{
    blob b = {.n = pl_e2e_session_serialized_size(s)};
    size_t n = 0;
    b.p = malloc(b.n);
    assert_non_null(b.p);
    assert_int_equal(pl_e2e_session_serialize(s, b.p, b.n, &n), 0);
    assert_int_equal(n, b.n);
    return b;
}

static blob ser_peer(const pl_sk_peer *p)
{
    blob b = {.n = pl_sk_peer_serialized_size(p)};
    size_t n = 0;
    b.p = malloc(b.n);
    assert_non_null(b.p);
    assert_int_equal(pl_sk_peer_serialize(p, b.p, b.n, &n), 0);
    assert_int_equal(n, b.n);
    return b;
}

static blob ser_sender(const pl_sk_sender *st)
{
    blob b = {.n = pl_sk_sender_serialized_size(st)};
    size_t n = 0;
    b.p = malloc(b.n);
    assert_non_null(b.p);
    assert_int_equal(pl_sk_sender_serialize(st, b.p, b.n, &n), 0);
    assert_int_equal(n, b.n);
    return b;
}

static unsigned char obuf[PL_E2E_PAYLOAD_MAX];

static pl_e2e_out out(void)
{
    return (pl_e2e_out){.buf = obuf, .cap = sizeof obuf};
}

/* Deterministic payload number idx (its length varies, 0..499 bytes). */
static size_t payload(unsigned char *buf, uint32_t idx)
{
    unsigned char seed[randombytes_SEEDBYTES] = {0};
    size_t len = (idx * 37u) % 500;
    memcpy(seed, &idx, sizeof idx);
    randombytes_buf_deterministic(buf, len, seed);
    if (len >= 4) memcpy(buf, &idx, 4);
    return len;
}

static blob enc(pl_e2e_session *s, const unsigned char *p, size_t n)
{
    blob b = {.n = pl_e2e_session_encrypt_size(s, n)};
    size_t w = 0;
    b.p = malloc(b.n);
    assert_non_null(b.p);
    assert_int_equal(pl_e2e_session_encrypt(s, PL_CT_CONTENT, p, n, b.p, b.n, &w), 0);
    assert_int_equal(w, b.n);
    return b;
}

static blob enc_idx(pl_e2e_session *s, uint32_t idx)
{
    unsigned char p[500];
    return enc(s, p, payload(p, idx));
}

static void assert_payload(const pl_e2e_out *o, uint32_t idx)
{
    unsigned char p[500];
    size_t n = payload(p, idx);
    assert_int_equal(o->ctype, PL_CT_CONTENT);
    assert_int_equal(o->len, n);
    assert_memory_equal(o->buf, p, n);
}

static blob sk_enc(pl_sk_sender *st, uint32_t idx)
{
    unsigned char p[500];
    size_t n = payload(p, idx);
    blob b = {.n = pl_sk_encrypt_size(n)};
    size_t w = 0;
    b.p = malloc(b.n);
    assert_non_null(b.p);
    assert_int_equal(pl_sk_encrypt(st, p, n, b.p, b.n, &w), 0);
    assert_int_equal(w, b.n);
    return b;
}

typedef struct tuser {
    char id[24];
    pl_sign_pair aik;
} tuser;

typedef struct tdev {
    tuser *u;
    pl_e2e_self self;
    pl_prekey spk;
    pl_prekey opk[NOPK];
    bool opk_gone[NOPK];
    pl_replay_cache rc;
} tdev;

static void user_init(tuser *u, const char *id)
{
    snprintf(u->id, sizeof u->id, "%s", id);
    assert_int_equal(pl_sign_generate(&u->aik), 0);
}

static void dev_init(tdev *d, tuser *u, const char *device)
{
    memset(d, 0, sizeof *d);
    d->u = u;
    assert_int_equal(pl_e2e_self_create(&d->self, &u->aik, u->id, device, T0), 0);
    assert_int_equal(pl_prekey_generate(&d->spk, 7), 0);
    assert_int_equal(pl_opk_generate(d->opk, NOPK, 100), 0);
}

static void dev_free(tdev *d)
{
    pl_replay_cache_free(&d->rc);
    pl_e2e_self_wipe(&d->self);
}

/* The bundle a claim would return: OPK number opk, or none when opk < 0. */
static void bundle_of(const tdev *d, int opk, pl_bundle *b)
{
    memset(b, 0, sizeof *b);
    strcpy(b->user, d->u->id);
    strcpy(b->device, d->self.device);
    memcpy(b->aik, d->u->aik.pk, 32);
    memcpy(b->dcert, d->self.dcert, d->self.dcert_len);
    b->dcert_len = d->self.dcert_len;
    b->spk_id = d->spk.id;
    memcpy(b->spk_pub, d->spk.kp.pk, 32);
    assert_int_equal(
        pl_spk_sign(b->spk_sig, &d->u->aik, d->u->id, d->self.device, d->spk.id, d->spk.kp.pk), 0);
    b->opk_id = PL_OPK_NONE;
    if (opk >= 0) {
        b->opk_id = d->opk[opk].id;
        memcpy(b->opk_pub, d->opk[opk].kp.pk, 32);
    }
}

static const pl_prekey *find_opk(const tdev *d, uint32_t id)
{
    for (int i = 0; i < NOPK; i++)
        if (!d->opk_gone[i] && d->opk[i].id == id) return &d->opk[i];
    return NULL;
}

/* The caller's receive path for one peer device, *slot being the session with it. */
static int receive(tdev *me, pl_e2e_session **slot, const tdev *from, const unsigned char *m,
                   size_t n, pl_e2e_out *o)
{
    if (pl_e2e_msg_type(m, n) == PL_WIRE_PREKEY) {
        pl_prekey_msg pm;
        int rc = pl_prekey_msg_parse(&pm, m, n);
        if (rc != 0) return rc;
        if (*slot && memcmp(pl_e2e_session_ek_hash(*slot), pm.ek_hash, 32) == 0)
            return pl_e2e_session_decrypt(*slot, m, n, T0, o);
        pl_respond_keys k = {
            .pinned_aik = from->u->aik.pk,
            .from_user = from->u->id,
            .from_dev = from->self.device,
            .spk = pm.spk_id == me->spk.id ? &me->spk : NULL,
            .opk = find_opk(me, pm.opk_id),
            .replay = &me->rc,
        };
        pl_e2e_session *s = NULL;
        rc = pl_x3dh_respond(&s, &me->self, &k, m, n, T0, o);
        if (rc != 0) {
            assert_null(s);
            return rc;
        }
        /* commit: session, OPK deletion, replay-cache entry */
        for (int i = 0; i < NOPK; i++)
            if (k.opk == &me->opk[i]) me->opk_gone[i] = true;
        assert_int_equal(pl_replay_cache_add(&me->rc, pm.ek_hash), 0);
        pl_e2e_session_free(*slot);
        *slot = s;
        return 0;
    }
    if (*slot == NULL) return PL_E2E_EDECRYPT;
    return pl_e2e_session_decrypt(*slot, m, n, T0, o);
}

/* A pair of devices and the session each holds with the other. */
typedef struct tlink {
    tdev *a, *b;
    pl_e2e_session *sa, *sb;
} tlink;

static void link_open(tlink *l, tdev *a, tdev *b, int opk)
{
    pl_bundle bu;
    l->a = a;
    l->b = b;
    l->sa = l->sb = NULL;
    bundle_of(b, opk, &bu);
    assert_int_equal(pl_x3dh_initiate(&l->sa, &a->self, &bu, b->u->aik.pk), 0);
}

static int to_b(tlink *l, blob m, pl_e2e_out *o)
{
    return receive(l->b, &l->sb, l->a, m.p, m.n, o);
}

static int to_a(tlink *l, blob m, pl_e2e_out *o)
{
    return receive(l->a, &l->sa, l->b, m.p, m.n, o);
}

static void link_close(tlink *l)
{
    pl_e2e_session_free(l->sa);
    pl_e2e_session_free(l->sb);
    l->sa = l->sb = NULL;
}

/* Everything the receive path may change on b's side. */
typedef struct snap {
    blob sess;
    bool had_session;
    bool opk_gone[NOPK];
    size_t rc_n;
} snap;

static snap snap_b(const tlink *l)
{
    snap s = {.had_session = l->sb != NULL, .rc_n = l->b->rc.n};
    if (l->sb) s.sess = ser(l->sb);
    memcpy(s.opk_gone, l->b->opk_gone, sizeof s.opk_gone);
    return s;
}

static void assert_snap_b(snap *s, const tlink *l)
{
    assert_int_equal(s->had_session, l->sb != NULL);
    if (l->sb) {
        blob now = ser(l->sb);
        assert_blob_eq(s->sess, now);
        blob_free(&now);
    }
    assert_memory_equal(s->opk_gone, l->b->opk_gone, sizeof s->opk_gone);
    assert_int_equal(s->rc_n, l->b->rc.n);
    blob_free(&s->sess);
}

/* Delivers m to b and expects a failure that changes nothing. */
static void reject_b(tlink *l, blob m)
{
    pl_e2e_out o = out();
    snap s = snap_b(l);
    int rc = to_b(l, m, &o);
    assert_true(rc < 0);
    assert_int_equal(o.len, 0);
    assert_snap_b(&s, l);
}

static void reject_session(pl_e2e_session *s, const unsigned char *m, size_t n, int want)
{
    pl_e2e_out o = out();
    blob before = ser(s);
    int rc = pl_e2e_session_decrypt(s, m, n, T0, &o);
    if (want)
        assert_int_equal(rc, want);
    else
        assert_true(rc < 0);
    blob after = ser(s);
    assert_blob_eq(before, after);
    blob_free(&before);
    blob_free(&after);
}

/* Two users with one device each, plus the link from a to b, first message delivered and
 * answered so that both sides have taken a DH step. */
typedef struct world {
    tuser ua, ub;
    tdev a, b;
    tlink l;
} world;

static world *world_new(int opk, bool answered)
{
    world *w = calloc(1, sizeof *w);
    assert_non_null(w);
    user_init(&w->ua, "u_alice");
    user_init(&w->ub, "u_bob");
    dev_init(&w->a, &w->ua, "d_alice1");
    dev_init(&w->b, &w->ub, "d_bob1");
    link_open(&w->l, &w->a, &w->b, opk);
    if (answered) {
        pl_e2e_out o = out();
        blob m = enc_idx(w->l.sa, 0);
        assert_int_equal(to_b(&w->l, m, &o), 0);
        assert_payload(&o, 0);
        blob_free(&m);
        m = enc_idx(w->l.sb, 1);
        assert_int_equal(to_a(&w->l, m, &o), 0);
        assert_payload(&o, 1);
        blob_free(&m);
        assert_false(pl_e2e_session_sends_prekey(w->l.sa));
    }
    return w;
}

static void world_free(world *w)
{
    link_close(&w->l);
    dev_free(&w->a);
    dev_free(&w->b);
    free(w);
}

static int setup(void **state)
{
    (void)state;
    return pl_e2e_init() == 0 ? 0 : -1;
}

/* Replaces *s by what its serialized bytes give back (the store's round trip). */
static void persist(pl_e2e_session **s)
{
    if (*s == NULL) return;
    blob b = ser(*s);
    pl_e2e_session *t = NULL;
    assert_int_equal(pl_e2e_session_deserialize(&t, b.p, b.n), 0);
    blob c = ser(t);
    assert_blob_eq(b, c);
    blob_free(&b);
    blob_free(&c);
    pl_e2e_session_free(*s);
    *s = t;
}

/* ----------------------------------------------------------------------------- round trips */

typedef struct queued {
    blob m;
    uint32_t idx;
} queued;

typedef struct queue {
    queued *q;
    size_t n;
} queue;

static void q_push(queue *q, blob m, uint32_t idx)
{
    q->q = realloc(q->q, (q->n + 1) * sizeof *q->q);
    assert_non_null(q->q);
    q->q[q->n++] = (queued){m, idx};
}

static queued q_take(queue *q, bool random_order)
{
    size_t i = random_order ? rnd((uint32_t)q->n) : 0;
    queued e = q->q[i];
    memmove(&q->q[i], &q->q[i + 1], (q->n - i - 1) * sizeof *q->q);
    q->n--;
    return e;
}

/* total messages in random directions; delivery in order or in random order; the sessions go
 * through their serialized form now and then. Returns the number of turns (direction changes
 * of sending, each one a DH step on both sides). Every message is kept in *all when asked. */
static int simulate(tlink *l, uint32_t total, bool random_order, queue *all)
{
    queue ab = {0}, ba = {0};
    uint32_t sent = 0, recvd = 0;
    int turns = 0, last_dir = -1;
    pl_e2e_out o = out();
    for (uint32_t step = 0; recvd < total; step++) {
        uint32_t r = rnd(4);
        if (r < 2 && sent < total && (r == 0 || l->sb != NULL)) {
            pl_e2e_session *s = r == 0 ? l->sa : l->sb;
            blob m = enc_idx(s, sent);
            if (all) {
                blob copy = {.p = malloc(m.n), .n = m.n};
                memcpy(copy.p, m.p, m.n);
                q_push(all, copy, sent | (r ? 0x80000000u : 0));
            }
            q_push(r == 0 ? &ab : &ba, m, sent++);
            if ((int)r != last_dir) turns++;
            last_dir = (int)r;
        } else if (r == 2 && ab.n > 0) {
            queued e = q_take(&ab, random_order);
            assert_int_equal(to_b(l, e.m, &o), 0);
            assert_payload(&o, e.idx);
            blob_free(&e.m);
            recvd++;
        } else if (r == 3 && ba.n > 0) {
            queued e = q_take(&ba, random_order);
            assert_int_equal(to_a(l, e.m, &o), 0);
            assert_payload(&o, e.idx);
            blob_free(&e.m);
            recvd++;
        }
        if (step % 97 == 0) {
            persist(&l->sa);
            persist(&l->sb);
        }
    }
    free(ab.q);
    free(ba.q);
    return turns;
}

static void test_roundtrip_1000(void **state)
{
    (void)state;
    world *w = world_new(0, false);
    int turns = simulate(&w->l, 1000, false, NULL);
    assert_true(turns > 100); /* many DH steps each way */
    assert_int_equal(pl_e2e_session_skipped_count(w->l.sa), 0);
    assert_int_equal(pl_e2e_session_skipped_count(w->l.sb), 0);
    /* a 64 KiB payload each way, and an empty one */
    static unsigned char big[PL_E2E_PAYLOAD_MAX];
    randombytes_buf(big, sizeof big);
    pl_e2e_out o = out();
    blob m = enc(w->l.sa, big, sizeof big);
    assert_int_equal(m.n, PL_MSG_OVERHEAD + PL_E2E_PADDED_MAX);
    assert_int_equal(to_b(&w->l, m, &o), 0);
    assert_int_equal(o.len, sizeof big);
    assert_memory_equal(o.buf, big, sizeof big);
    blob_free(&m);
    m = enc(w->l.sb, NULL, 0);
    assert_int_equal(to_a(&w->l, m, &o), 0);
    assert_int_equal(o.len, 0);
    blob_free(&m);
    /* over 64 KiB is refused */
    size_t wlen;
    unsigned char small[16];
    assert_int_equal(pl_e2e_session_encrypt(w->l.sa, PL_CT_CONTENT, big, sizeof big + 1 - 1 + 0,
                                            small, sizeof small, &wlen),
                     PL_E2E_ENOSPC);
    world_free(w);
}

static void test_out_of_order_across_chains(void **state)
{
    (void)state;
    world *w = world_new(1, false);
    queue all = {0};
    int turns = simulate(&w->l, 400, true, &all);
    assert_true(turns > 40);
    /* every skipped key was used exactly once */
    assert_int_equal(pl_e2e_session_skipped_count(w->l.sa), 0);
    assert_int_equal(pl_e2e_session_skipped_count(w->l.sb), 0);
    /* and none decrypts again */
    for (size_t i = 0; i < all.n; i++) {
        bool from_b = all.q[i].idx & 0x80000000u;
        if (from_b)
            reject_session(w->l.sa, all.q[i].m.p, all.q[i].m.n, 0);
        else
            reject_b(&w->l, all.q[i].m);
        blob_free(&all.q[i].m);
    }
    free(all.q);
    world_free(w);
}

/* ------------------------------------------------------------------------------- MAX_SKIP */

static void test_max_skip_n(void **state)
{
    (void)state;
    world *w = world_new(0, false);
    pl_e2e_out o = out();
    enum { N = 2005 };
    blob *m = calloc(N, sizeof *m);
    assert_non_null(m);
    for (uint32_t i = 0; i < N; i++) m[i] = enc_idx(w->l.sa, i);
    assert_int_equal(to_b(&w->l, m[0], &o), 0); /* Nr = 1 */
    /* N = Nr + 2001: too far, nothing changes */
    snap s = snap_b(&w->l);
    assert_int_equal(to_b(&w->l, m[2002], &o), PL_E2E_ETOOFAR);
    assert_snap_b(&s, &w->l);
    /* N = Nr + 2000: fine, 2000 keys stored */
    assert_int_equal(to_b(&w->l, m[2001], &o), 0);
    assert_payload(&o, 2001);
    assert_int_equal(pl_e2e_session_skipped_count(w->l.sb), 2000);
    assert_int_equal(to_b(&w->l, m[2002], &o), 0);
    /* the 2001st skipped key (N = 2003) evicts the oldest (N = 1) */
    assert_int_equal(to_b(&w->l, m[2004], &o), 0);
    assert_int_equal(pl_e2e_session_skipped_count(w->l.sb), 2000);
    reject_b(&w->l, m[1]);
    assert_int_equal(to_b(&w->l, m[2], &o), 0);
    assert_payload(&o, 2);
    assert_int_equal(to_b(&w->l, m[2003], &o), 0);
    assert_int_equal(to_b(&w->l, m[1000], &o), 0);
    assert_int_equal(pl_e2e_session_skipped_count(w->l.sb), 1997);
    /* expiry after 30 days */
    assert_int_equal(pl_e2e_session_expire(w->l.sb, T0 + PL_SKIPPED_TTL_MS - 1), 0);
    assert_int_equal(pl_e2e_session_expire(w->l.sb, T0 + PL_SKIPPED_TTL_MS), 1997);
    assert_int_equal(pl_e2e_session_skipped_count(w->l.sb), 0);
    for (uint32_t i = 0; i < N; i++) blob_free(&m[i]);
    free(m);
    world_free(w);
}

static void test_max_skip_pn(void **state)
{
    (void)state;
    world *w = world_new(0, false);
    pl_e2e_out o = out();
    enum { N = 2002 };
    blob *m = calloc(N, sizeof *m);
    assert_non_null(m);
    for (uint32_t i = 0; i < N; i++) m[i] = enc_idx(w->l.sa, i); /* chain 0: N = 0..2001 */
    assert_int_equal(to_b(&w->l, m[0], &o), 0);                  /* B: Nr = 1 */
    blob r = enc_idx(w->l.sb, 9000);
    assert_int_equal(to_a(&w->l, r, &o), 0); /* A steps: next message has PN = 2002 */
    blob x = enc_idx(w->l.sa, 9001);
    /* PN - Nr = 2001: rejected, state unchanged */
    snap s = snap_b(&w->l);
    assert_int_equal(to_b(&w->l, x, &o), PL_E2E_ETOOFAR);
    assert_snap_b(&s, &w->l);
    /* once Nr = 2, PN - Nr = 2000: accepted, the rest of chain 0 stored */
    assert_int_equal(to_b(&w->l, m[1], &o), 0);
    assert_int_equal(to_b(&w->l, x, &o), 0);
    assert_payload(&o, 9001);
    assert_int_equal(pl_e2e_session_skipped_count(w->l.sb), 2000);
    for (uint32_t i = N - 1; i >= 2; i--) {
        assert_int_equal(to_b(&w->l, m[i], &o), 0);
        assert_payload(&o, i);
    }
    assert_int_equal(pl_e2e_session_skipped_count(w->l.sb), 0);
    for (uint32_t i = 0; i < N; i++) blob_free(&m[i]);
    free(m);
    blob_free(&r);
    blob_free(&x);
    world_free(w);
}

/* ----------------------------------------------------------------------------- groups setup */

typedef struct group {
    tuser us, ur;
    tdev s, r;
    tlink l; /* s -> r, answered */
    pl_sk_sender *st;
    pl_sk_peer *peer; /* r's record for (conv, s) */
} group;

static group *group_new(void)
{
    group *g = calloc(1, sizeof *g);
    assert_non_null(g);
    user_init(&g->us, "u_sender");
    user_init(&g->ur, "u_recv");
    dev_init(&g->s, &g->us, "d_s1");
    dev_init(&g->r, &g->ur, "d_r1");
    link_open(&g->l, &g->s, &g->r, 0);
    pl_e2e_out o = out();
    blob m = enc_idx(g->l.sa, 0);
    assert_int_equal(to_b(&g->l, m, &o), 0);
    blob_free(&m);
    assert_int_equal(pl_sk_sender_new(&g->st, "g_team", "u_sender", "d_s1", T0), 0);
    assert_int_equal(pl_sk_peer_new(&g->peer, "g_team", "u_sender", "d_s1"), 0);
    /* the SKDM travels as a pairwise payload, then is installed from the session it came on */
    unsigned char skdm[PL_SKDM_MAX];
    size_t n;
    assert_int_equal(pl_sk_sender_skdm(g->st, skdm, sizeof skdm, &n), 0);
    m = (blob){.n = pl_e2e_session_encrypt_size(g->l.sa, n)};
    m.p = malloc(m.n);
    assert_int_equal(pl_e2e_session_encrypt(g->l.sa, PL_CT_SKDM, skdm, n, m.p, m.n, &m.n), 0);
    assert_int_equal(to_b(&g->l, m, &o), 0);
    assert_int_equal(o.ctype, PL_CT_SKDM);
    assert_int_equal(pl_sk_peer_install(g->peer, g->l.sb, "g_team", o.buf, o.len, T0), 0);
    assert_int_equal(pl_sk_peer_install(g->peer, g->l.sb, "g_team", o.buf, o.len, T0), 1);
    assert_int_equal(pl_sk_sender_sent_to_add(g->st, "u_recv", "d_r1"), 0);
    blob_free(&m);
    return g;
}

static void group_free(group *g)
{
    pl_sk_sender_free(g->st);
    pl_sk_peer_free(g->peer);
    link_close(&g->l);
    dev_free(&g->s);
    dev_free(&g->r);
    free(g);
}

static void sk_reject(pl_sk_peer *p, blob m, int want)
{
    pl_e2e_out o = out();
    blob before = ser_peer(p);
    unsigned long kdf = pl_e2e_kdf_calls();
    int rc = pl_sk_decrypt(p, m.p, m.n, T0, &o);
    if (want)
        assert_int_equal(rc, want);
    else
        assert_true(rc < 0);
    if (rc == PL_E2E_ESIG || rc == PL_E2E_ENOKEY || rc == PL_E2E_EFORMAT || rc == PL_E2E_EVERSION)
        assert_int_equal(pl_e2e_kdf_calls(), kdf); /* nothing derived */
    blob after = ser_peer(p);
    assert_blob_eq(before, after);
    blob_free(&before);
    blob_free(&after);
}

static void test_max_skip_sender_key(void **state)
{
    (void)state;
    group *g = group_new();
    pl_e2e_out o = out();
    enum { N = 2004 };
    blob *m = calloc(N, sizeof *m);
    assert_non_null(m);
    for (uint32_t i = 0; i < N; i++) m[i] = sk_enc(g->st, i);
    /* state at iteration 0: a jump to 2001 is rejected, to 2000 accepted */
    sk_reject(g->peer, m[2001], PL_E2E_ETOOFAR);
    assert_int_equal(pl_sk_decrypt(g->peer, m[2000].p, m[2000].n, T0, &o), 0);
    assert_payload(&o, 2000);
    assert_int_equal(pl_sk_peer_skipped_count(g->peer), 2000);
    assert_int_equal(pl_sk_decrypt(g->peer, m[2001].p, m[2001].n, T0, &o), 0);
    /* the 2001st skipped key (iteration 2002) evicts the oldest (iteration 0) */
    assert_int_equal(pl_sk_decrypt(g->peer, m[2003].p, m[2003].n, T0, &o), 0);
    assert_int_equal(pl_sk_peer_skipped_count(g->peer), 2000);
    sk_reject(g->peer, m[0], PL_E2E_EREPLAY);
    assert_int_equal(pl_sk_decrypt(g->peer, m[1].p, m[1].n, T0, &o), 0);
    assert_payload(&o, 1);
    assert_int_equal(pl_sk_decrypt(g->peer, m[2002].p, m[2002].n, T0, &o), 0);
    assert_int_equal(pl_sk_peer_expire(g->peer, T0 + PL_SKIPPED_TTL_MS), 1998);
    for (uint32_t i = 0; i < N; i++) blob_free(&m[i]);
    free(m);
    group_free(g);
}

/* ---------------------------------------------------------------------------------- tamper */

static void test_tamper_prekey_msg(void **state)
{
    (void)state;
    world *w = world_new(2, false);
    blob m0 = enc_idx(w->l.sa, 10), m1 = enc_idx(w->l.sa, 11);
    pl_e2e_out o = out();
    /* no session yet: every flipped bit goes through the responder and fails */
    for (size_t i = 0; i < m0.n * 8; i++) {
        m0.p[i / 8] ^= (unsigned char)(1u << (i % 8));
        reject_b(&w->l, m0);
        m0.p[i / 8] ^= (unsigned char)(1u << (i % 8));
    }
    for (size_t n = 0; n < m0.n; n++) reject_b(&w->l, (blob){m0.p, n}); /* truncations */
    assert_null(w->l.sb);
    assert_false(w->b.opk_gone[2]);
    assert_int_equal(to_b(&w->l, m0, &o), 0);
    assert_payload(&o, 10);
    assert_true(w->b.opk_gone[2]);
    /* with the session: every flipped bit of the next PREKEY_MSG fails, state unchanged */
    for (size_t i = 0; i < m1.n * 8; i++) {
        m1.p[i / 8] ^= (unsigned char)(1u << (i % 8));
        reject_b(&w->l, m1);
        m1.p[i / 8] ^= (unsigned char)(1u << (i % 8));
    }
    assert_int_equal(to_b(&w->l, m1, &o), 0);
    assert_payload(&o, 11);
    blob_free(&m0);
    blob_free(&m1);
    world_free(w);
}

static void test_tamper_msg(void **state)
{
    (void)state;
    world *w = world_new(0, true);
    blob m = enc_idx(w->l.sa, 20);
    assert_int_equal(m.p[2], PL_WIRE_MSG);
    pl_e2e_out o = out();
    for (size_t i = 0; i < m.n * 8; i++) {
        m.p[i / 8] ^= (unsigned char)(1u << (i % 8));
        reject_session(w->l.sb, m.p, m.n, 0);
        m.p[i / 8] ^= (unsigned char)(1u << (i % 8));
    }
    for (size_t n = 0; n < m.n; n++) reject_session(w->l.sb, m.p, n, 0);
    /* one byte more, and a whole extra padding block */
    unsigned char *longer = calloc(1, m.n + 160);
    memcpy(longer, m.p, m.n);
    reject_session(w->l.sb, longer, m.n + 1, PL_E2E_EFORMAT);
    reject_session(w->l.sb, longer, m.n + 160, PL_E2E_EDECRYPT);
    free(longer);
    /* unknown version, suite, type: rejected, never downgraded */
    unsigned char v = m.p[0];
    m.p[0] = 0x02;
    reject_session(w->l.sb, m.p, m.n, PL_E2E_EVERSION);
    m.p[0] = v;
    m.p[1] = 0x02;
    reject_session(w->l.sb, m.p, m.n, PL_E2E_EVERSION);
    m.p[1] = PL_E2E_SUITE;
    m.p[2] = 0x04;
    reject_session(w->l.sb, m.p, m.n, PL_E2E_EVERSION);
    m.p[2] = PL_WIRE_SKMSG;
    reject_session(w->l.sb, m.p, m.n, PL_E2E_EVERSION);
    m.p[2] = PL_WIRE_MSG;
    assert_int_equal(to_b(&w->l, m, &o), 0);
    assert_payload(&o, 20);
    blob_free(&m);
    world_free(w);
}

/* Every byte of the session AD matters (ids, AIKs, DIKs of both sides). */
static void test_tamper_session_ad(void **state)
{
    (void)state;
    world *w = world_new(0, true);
    blob m = enc_idx(w->l.sa, 30);
    size_t adlen;
    const unsigned char *ad = pl_e2e_session_ad(w->l.sb, &adlen);
    size_t ada;
    assert_memory_equal(ad, pl_e2e_session_ad(w->l.sa, &ada), adlen); /* both sides agree */
    assert_int_equal(ada, adlen);
    blob st = ser(w->l.sb);
    unsigned char *at = memmem(st.p, st.n, ad, adlen);
    assert_non_null(at);
    size_t off = (size_t)(at - st.p);
    for (size_t i = 0; i < adlen; i++) {
        pl_e2e_session *s = NULL;
        st.p[off + i] ^= 0x01;
        assert_int_equal(pl_e2e_session_deserialize(&s, st.p, st.n), 0);
        reject_session(s, m.p, m.n, PL_E2E_EDECRYPT);
        pl_e2e_session_free(s);
        st.p[off + i] ^= 0x01;
    }
    pl_e2e_out o = out();
    assert_int_equal(to_b(&w->l, m, &o), 0);
    blob_free(&st);
    blob_free(&m);
    world_free(w);
}

/* The responder's AD inputs: its own ids and keys, and the sender it is told about. */
static void test_tamper_x3dh_inputs(void **state)
{
    (void)state;
    world *w = world_new(-1, false);
    blob m = enc_idx(w->l.sa, 40);
    pl_e2e_out o = out();
    pl_e2e_session *s = NULL;
    pl_respond_keys k = {.pinned_aik = w->ua.aik.pk,
                         .from_user = "u_alice",
                         .from_dev = "d_alice1",
                         .spk = &w->b.spk};
    pl_e2e_self self = w->b.self;
    /* the frame names another sender */
    k.from_user = "u_mallory";
    assert_int_equal(pl_x3dh_respond(&s, &self, &k, m.p, m.n, T0, &o), PL_E2E_EIDENTITY);
    k.from_user = "u_alice";
    k.from_dev = "d_alice2";
    assert_int_equal(pl_x3dh_respond(&s, &self, &k, m.p, m.n, T0, &o), PL_E2E_EIDENTITY);
    k.from_dev = "d_alice1";
    /* another pinned AIK */
    k.pinned_aik = w->ub.aik.pk;
    assert_int_equal(pl_x3dh_respond(&s, &self, &k, m.p, m.n, T0, &o), PL_E2E_EIDENTITY);
    k.pinned_aik = w->ua.aik.pk;
    /* own user id, device id, AIK, DIK changed: the AD (or SK) differs, the tag fails */
    strcpy(self.user, "u_bob2");
    assert_int_equal(pl_x3dh_respond(&s, &self, &k, m.p, m.n, T0, &o), PL_E2E_EDECRYPT);
    self = w->b.self;
    strcpy(self.device, "d_bob2");
    assert_int_equal(pl_x3dh_respond(&s, &self, &k, m.p, m.n, T0, &o), PL_E2E_EDECRYPT);
    self = w->b.self;
    self.aik_pub[5] ^= 1;
    assert_int_equal(pl_x3dh_respond(&s, &self, &k, m.p, m.n, T0, &o), PL_E2E_EDECRYPT);
    self = w->b.self;
    self.dik.pk[5] ^= 1;
    assert_int_equal(pl_x3dh_respond(&s, &self, &k, m.p, m.n, T0, &o), PL_E2E_EDECRYPT);
    self = w->b.self;
    assert_int_equal(pl_dh_generate(&self.dik), 0);
    assert_int_equal(pl_x3dh_respond(&s, &self, &k, m.p, m.n, T0, &o), PL_E2E_EDECRYPT);
    /* unknown prekeys */
    self = w->b.self;
    k.spk = NULL;
    assert_int_equal(pl_x3dh_respond(&s, &self, &k, m.p, m.n, T0, &o), PL_E2E_ENOKEY);
    k.spk = &w->b.spk;
    assert_null(s);
    assert_int_equal(pl_x3dh_respond(&s, &self, &k, m.p, m.n, T0, &o), 0);
    assert_payload(&o, 40);
    assert_string_equal(pl_e2e_session_peer_user(s), "u_alice");
    assert_string_equal(pl_e2e_session_peer_device(s), "d_alice1");
    assert_memory_equal(pl_e2e_session_peer_aik(s), w->ua.aik.pk, 32);
    pl_e2e_session_free(s);
    pl_e2e_self_wipe(&self);
    blob_free(&m);
    world_free(w);
}

static void test_tamper_skmsg(void **state)
{
    (void)state;
    group *g = group_new();
    blob m = sk_enc(g->st, 5);
    unsigned long kdf0 = pl_e2e_kdf_calls();
    for (size_t i = 0; i < m.n * 8; i++) {
        m.p[i / 8] ^= (unsigned char)(1u << (i % 8));
        sk_reject(g->peer, m, 0);
        m.p[i / 8] ^= (unsigned char)(1u << (i % 8));
    }
    for (size_t n = 0; n < m.n; n++) sk_reject(g->peer, (blob){m.p, n}, 0);
    /* no flipped bit and no truncation got as far as deriving a key */
    assert_int_equal(pl_e2e_kdf_calls(), kdf0);
    pl_e2e_out o = out();
    assert_int_equal(pl_sk_decrypt(g->peer, m.p, m.n, T0, &o), 0);
    assert_payload(&o, 5);
    blob_free(&m);
    group_free(g);
}

/* Someone who holds the chain key (a past member) but not the SSK forges an SKMSG with a valid
 * tag and its own signature: rejected, and no KDF runs. */
static void test_forged_skmsg_signature_before_kdf(void **state)
{
    (void)state;
    group *g = group_new();
    blob st = ser_sender(g->st);
    pl_sign_pair evil;
    assert_int_equal(pl_sign_generate(&evil), 0);
    /* layout: magic 4, version 1, id(conv), id(user), id(device), dist_id 16, CK 32, it 4 */
    size_t off = 5;
    for (int i = 0; i < 3; i++) off += 1 + st.p[off];
    off += 16 + 32 + 4;
    memcpy(st.p + off, evil.pk, 32);
    memcpy(st.p + off + 32, evil.sk, 64);
    pl_sk_sender *forger = NULL;
    assert_int_equal(pl_sk_sender_deserialize(&forger, st.p, st.n), 0);
    blob m = sk_enc(forger, 6);
    unsigned long kdf0 = pl_e2e_kdf_calls();
    sk_reject(g->peer, m, PL_E2E_ESIG);
    assert_int_equal(pl_e2e_kdf_calls(), kdf0);
    /* the same bytes with the real signature would have decrypted: the tag was valid */
    blob real = sk_enc(g->st, 6);
    pl_e2e_out o = out();
    unsigned long kdf1 = pl_e2e_kdf_calls();
    assert_int_equal(pl_sk_decrypt(g->peer, real.p, real.n, T0, &o), 0);
    assert_true(pl_e2e_kdf_calls() > kdf1);
    blob_free(&m);
    blob_free(&real);
    blob_free(&st);
    pl_sk_sender_free(forger);
    group_free(g);
}

/* SKMSG AD inputs: conv, sender user, sender device. */
static void test_tamper_skmsg_ad_inputs(void **state)
{
    (void)state;
    group *g = group_new();
    blob m = sk_enc(g->st, 7);
    unsigned char skdm[PL_SKDM_MAX];
    size_t n;
    /* an SKDM of the same sender state hand-built for another conversation: the conv binds */
    blob st = ser_sender(g->st);
    pl_sk_sender *st0 = NULL;
    assert_int_equal(pl_sk_sender_deserialize(&st0, st.p, st.n), 0);
    assert_int_equal(pl_sk_sender_skdm(st0, skdm, sizeof skdm, &n), 0);
    unsigned char other[PL_SKDM_MAX + 8];
    const char *conv2 = "g_other";
    other[0] = 1;
    other[1] = (unsigned char)strlen(conv2);
    memcpy(other + 2, conv2, strlen(conv2));
    size_t tail = n - 2 - strlen("g_team");
    memcpy(other + 2 + strlen(conv2), skdm + 2 + strlen("g_team"), tail);
    size_t n2 = 2 + strlen(conv2) + tail;
    pl_sk_peer *p = NULL;
    assert_int_equal(pl_sk_peer_new(&p, "g_other", "u_sender", "d_s1"), 0);
    /* the frame says g_team: refused; the frame says g_other: installed, but g_team's
     * SKMSGs do not verify there */
    assert_int_equal(pl_sk_peer_install(p, g->l.sb, "g_team", other, n2, T0), PL_E2E_EIDENTITY);
    assert_int_equal(pl_sk_peer_install(p, g->l.sb, "g_other", other, n2, T0), 0);
    sk_reject(p, m, PL_E2E_ESIG);
    pl_sk_peer_free(p);
    /* the same state under another sender user or device id: does not verify */
    const char *ids[2][2] = {{"u_other", "d_s1"}, {"u_sender", "d_s2"}};
    for (int i = 0; i < 2; i++) {
        blob pb = ser_peer(g->peer);
        /* rebuild the record with other ids around the same state bytes */
        assert_int_equal(pl_sk_peer_new(&p, "g_team", ids[i][0], ids[i][1]), 0);
        blob empty = ser_peer(p);
        pl_sk_peer_free(p);
        size_t hdr_old = 5 + 3 + strlen("g_team") + strlen("u_sender") + strlen("d_s1");
        size_t hdr_new = empty.n - 1;
        unsigned char *nb = malloc(hdr_new + pb.n - hdr_old);
        memcpy(nb, empty.p, hdr_new);
        memcpy(nb + hdr_new, pb.p + hdr_old, pb.n - hdr_old);
        assert_int_equal(pl_sk_peer_deserialize(&p, nb, hdr_new + pb.n - hdr_old), 0);
        assert_int_equal(pl_sk_peer_count(p), 1);
        sk_reject(p, m, PL_E2E_ESIG);
        pl_sk_peer_free(p);
        free(nb);
        blob_free(&pb);
        blob_free(&empty);
    }
    pl_e2e_out o = out();
    assert_int_equal(pl_sk_decrypt(g->peer, m.p, m.n, T0, &o), 0);
    pl_sk_sender_free(st0);
    blob_free(&st);
    blob_free(&m);
    group_free(g);
}

/* ---------------------------------------------------------------------------------- replay */

static void test_replay_msg(void **state)
{
    (void)state;
    world *w = world_new(0, true);
    pl_e2e_out o = out();
    blob m = enc_idx(w->l.sa, 50);
    assert_int_equal(to_b(&w->l, m, &o), 0);
    reject_session(w->l.sb, m.p, m.n, PL_E2E_EREPLAY);
    /* also after the receiving side moved to a new chain */
    blob r = enc_idx(w->l.sb, 51);
    assert_int_equal(to_a(&w->l, r, &o), 0);
    blob m2 = enc_idx(w->l.sa, 52);
    assert_int_equal(to_b(&w->l, m2, &o), 0);
    reject_session(w->l.sb, m.p, m.n, 0);
    reject_session(w->l.sb, m2.p, m2.n, PL_E2E_EREPLAY);
    reject_session(w->l.sa, r.p, r.n, 0);
    blob_free(&m);
    blob_free(&m2);
    blob_free(&r);
    world_free(w);
}

static void test_replay_prekey_used_opk(void **state)
{
    (void)state;
    world *w = world_new(3, false);
    pl_e2e_out o = out();
    blob m = enc_idx(w->l.sa, 60);
    assert_int_equal(to_b(&w->l, m, &o), 0);
    assert_true(w->b.opk_gone[3]);
    /* the session it made still exists: a replay on it */
    snap s = snap_b(&w->l);
    assert_int_equal(to_b(&w->l, m, &o), PL_E2E_EREPLAY);
    assert_snap_b(&s, &w->l);
    /* the session is gone: the OPK is gone too */
    pl_e2e_session_free(w->l.sb);
    w->l.sb = NULL;
    s = snap_b(&w->l);
    assert_int_equal(to_b(&w->l, m, &o), PL_E2E_ENOKEY);
    assert_snap_b(&s, &w->l);
    blob_free(&m);
    world_free(w);
}

static void test_replay_prekey_no_opk(void **state)
{
    (void)state;
    world *w = world_new(-1, false);
    pl_e2e_out o = out();
    blob m = enc_idx(w->l.sa, 70);
    assert_int_equal(to_b(&w->l, m, &o), 0);
    assert_int_equal(w->b.rc.n, 1);
    pl_e2e_session_free(w->l.sb);
    w->l.sb = NULL;
    snap s = snap_b(&w->l);
    assert_int_equal(to_b(&w->l, m, &o), PL_E2E_EREPLAY);
    assert_snap_b(&s, &w->l);
    /* the replay cache is what stops it: with an empty one the message would be accepted */
    pl_respond_keys k = {.pinned_aik = w->ua.aik.pk,
                         .from_user = "u_alice",
                         .from_dev = "d_alice1",
                         .spk = &w->b.spk};
    pl_e2e_session *x = NULL;
    assert_int_equal(pl_x3dh_respond(&x, &w->b.self, &k, m.p, m.n, T0, &o), 0);
    pl_e2e_session_free(x);
    blob_free(&m);
    world_free(w);
}

static void test_replay_skmsg(void **state)
{
    (void)state;
    group *g = group_new();
    pl_e2e_out o = out();
    blob m[6];
    for (uint32_t i = 0; i < 6; i++) m[i] = sk_enc(g->st, i);
    assert_int_equal(pl_sk_decrypt(g->peer, m[5].p, m[5].n, T0, &o), 0);
    sk_reject(g->peer, m[5], PL_E2E_EREPLAY);
    assert_int_equal(pl_sk_decrypt(g->peer, m[2].p, m[2].n, T0, &o), 0);
    assert_payload(&o, 2);
    sk_reject(g->peer, m[2], PL_E2E_EREPLAY);
    for (uint32_t i = 0; i < 5; i++) {
        if (i == 2) continue;
        assert_int_equal(pl_sk_decrypt(g->peer, m[i].p, m[i].n, T0, &o), 0);
        sk_reject(g->peer, m[i], PL_E2E_EREPLAY);
    }
    assert_int_equal(pl_sk_peer_skipped_count(g->peer), 0);
    for (int i = 0; i < 6; i++) blob_free(&m[i]);
    group_free(g);
}

/* ----------------------------------------------------------------- failures leave no trace */

static void test_wrong_session_unchanged(void **state)
{
    (void)state;
    world *w1 = world_new(0, true), *w2 = world_new(1, true);
    blob m = enc_idx(w1->l.sa, 80);
    reject_session(w2->l.sb, m.p, m.n, 0);
    reject_session(w2->l.sa, m.p, m.n, 0);
    reject_session(w1->l.sa, m.p, m.n, 0); /* its own sender */
    /* a PREKEY_MSG of another X3DH, and one offered to an initiator session */
    world *w3 = world_new(2, false);
    blob p = enc_idx(w3->l.sa, 81);
    reject_session(w1->l.sb, p.p, p.n, PL_E2E_EDECRYPT);
    reject_session(w1->l.sa, p.p, p.n, PL_E2E_EDECRYPT);
    /* garbage */
    unsigned char junk[300];
    randombytes_buf(junk, sizeof junk);
    reject_session(w1->l.sb, junk, sizeof junk, 0);
    reject_session(w1->l.sb, junk, 0, 0);
    pl_e2e_out o = out();
    assert_int_equal(to_b(&w1->l, m, &o), 0);
    blob_free(&m);
    blob_free(&p);
    world_free(w1);
    world_free(w2);
    world_free(w3);
}

/* ------------------------------------------------------------------------- identity, groups */

static void test_dcert_not_pinned_refused(void **state)
{
    (void)state;
    world *w = world_new(-1, false);
    tuser mallory;
    user_init(&mallory, "u_mallory");
    pl_bundle b;
    pl_e2e_session *s = NULL;
    /* a ghost device for u_bob certified by another AIK (the server's choice) */
    tdev ghost;
    dev_init(&ghost, &mallory, "d_ghost");
    pl_e2e_self gs;
    assert_int_equal(pl_e2e_self_create(&gs, &mallory.aik, "u_bob", "d_ghost", T0), 0);
    bundle_of(&w->b, -1, &b);
    strcpy(b.device, "d_ghost");
    memcpy(b.dcert, gs.dcert, gs.dcert_len);
    b.dcert_len = gs.dcert_len;
    assert_int_equal(pl_x3dh_initiate(&s, &w->a.self, &b, w->ub.aik.pk), PL_E2E_ESIG);
    /* the server also swapped the AIK: it is not the pinned one */
    memcpy(b.aik, mallory.aik.pk, 32);
    assert_int_equal(pl_x3dh_initiate(&s, &w->a.self, &b, w->ub.aik.pk), PL_E2E_EIDENTITY);
    /* a genuine DCERT with an SPK signed by another key */
    bundle_of(&w->b, -1, &b);
    assert_int_equal(pl_spk_sign(b.spk_sig, &mallory.aik, "u_bob", "d_bob1", b.spk_id, b.spk_pub),
                     0);
    assert_int_equal(pl_x3dh_initiate(&s, &w->a.self, &b, w->ub.aik.pk), PL_E2E_ESIG);
    /* a DCERT naming another device than the bundle */
    bundle_of(&w->b, -1, &b);
    strcpy(b.device, "d_bob9");
    assert_int_equal(pl_x3dh_initiate(&s, &w->a.self, &b, w->ub.aik.pk), PL_E2E_EIDENTITY);
    /* an SPK with bit 255 set */
    bundle_of(&w->b, -1, &b);
    b.spk_pub[31] |= 0x80;
    assert_int_equal(pl_x3dh_initiate(&s, &w->a.self, &b, w->ub.aik.pk), PL_E2E_EKEY);
    assert_null(s);
    /* responder: a PREKEY_MSG from a device certified by another AIK for u_alice */
    pl_e2e_self fake;
    assert_int_equal(pl_e2e_self_create(&fake, &mallory.aik, "u_alice", "d_alice1", T0), 0);
    memcpy(fake.aik_pub, w->ua.aik.pk, 32); /* claims the pinned AIK in the prekey block */
    bundle_of(&w->b, -1, &b);
    assert_int_equal(pl_x3dh_initiate(&s, &fake, &b, w->ub.aik.pk), 0);
    blob m = enc_idx(s, 90);
    reject_b(&w->l, m);
    pl_e2e_out o = out();
    assert_int_equal(to_b(&w->l, m, &o), PL_E2E_ESIG);
    pl_e2e_session_free(s);
    blob_free(&m);
    /* self_load refuses a DCERT under another AIK or for another DIK */
    assert_int_equal(pl_e2e_self_load(&fake, w->ua.aik.pk, &w->a.self.dik, gs.dcert, gs.dcert_len),
                     PL_E2E_ESIG);
    assert_int_equal(
        pl_e2e_self_load(&fake, w->ua.aik.pk, &w->b.self.dik, w->a.self.dcert, w->a.self.dcert_len),
        PL_E2E_EIDENTITY);
    assert_int_equal(
        pl_e2e_self_load(&fake, w->ua.aik.pk, &w->a.self.dik, w->a.self.dcert, w->a.self.dcert_len),
        0);
    assert_string_equal(fake.device, "d_alice1");
    /* DCERT layout is strict even under a valid signature: an extra byte, a version 2 */
    unsigned char dc[PL_DCERT_MAX + 1], msg[16 + PL_DCERT_MAX];
    size_t body = w->a.self.dcert_len - 64;
    for (int v = 0; v < 2; v++) {
        memcpy(dc, w->a.self.dcert, body);
        size_t bl = body;
        if (v == 0)
            dc[bl++] = 0x00;
        else
            dc[0] = 0x02;
        memcpy(msg, "PARLEYv1/DCERT", 14);
        memcpy(msg + 14, dc, bl);
        assert_int_equal(crypto_sign_detached(dc + bl, NULL, msg, 14 + bl, w->ua.aik.sk), 0);
        assert_int_equal(pl_dcert_verify(NULL, dc, bl + 64, w->ua.aik.pk),
                         v == 0 ? PL_E2E_EFORMAT : PL_E2E_EVERSION);
    }
    assert_int_equal(pl_dcert_verify(NULL, w->a.self.dcert, w->a.self.dcert_len, w->ua.aik.pk), 0);
    pl_e2e_self_wipe(&fake);
    pl_e2e_self_wipe(&gs);
    dev_free(&ghost);
    world_free(w);
}

/* X's SKDM forwarded over Y's session installs nothing for X. */
static void test_skdm_binding(void **state)
{
    (void)state;
    tuser ux, uy, ur;
    tdev x, y, r;
    user_init(&ux, "u_x");
    user_init(&uy, "u_y");
    user_init(&ur, "u_r");
    dev_init(&x, &ux, "d_x");
    dev_init(&y, &uy, "d_y");
    dev_init(&r, &ur, "d_r");
    tlink lx, ly;
    link_open(&lx, &x, &r, 0);
    link_open(&ly, &y, &r, 1); /* each OPK is handed out once */
    pl_e2e_out o = out();
    blob m = enc_idx(lx.sa, 1);
    assert_int_equal(to_b(&lx, m, &o), 0);
    blob_free(&m);
    m = enc_idx(ly.sa, 2);
    assert_int_equal(to_b(&ly, m, &o), 0);
    blob_free(&m);

    pl_sk_sender *sx = NULL;
    assert_int_equal(pl_sk_sender_new(&sx, "g_g", "u_x", "d_x", T0), 0);
    unsigned char skdm[PL_SKDM_MAX];
    size_t n;
    assert_int_equal(pl_sk_sender_skdm(sx, skdm, sizeof skdm, &n), 0);
    /* Y sends X's SKDM as its own pairwise payload */
    m = (blob){.n = pl_e2e_session_encrypt_size(ly.sa, n)};
    m.p = malloc(m.n);
    assert_int_equal(pl_e2e_session_encrypt(ly.sa, PL_CT_SKDM, skdm, n, m.p, m.n, &m.n), 0);
    assert_int_equal(to_b(&ly, m, &o), 0);
    assert_int_equal(o.ctype, PL_CT_SKDM);
    blob_free(&m);
    pl_sk_peer *px = NULL, *py = NULL;
    assert_int_equal(pl_sk_peer_new(&px, "g_g", "u_x", "d_x"), 0);
    assert_int_equal(pl_sk_peer_new(&py, "g_g", "u_y", "d_y"), 0);
    /* into X's record over Y's session: refused */
    assert_int_equal(pl_sk_peer_install(px, ly.sb, "g_g", o.buf, o.len, T0), PL_E2E_EIDENTITY);
    assert_int_equal(pl_sk_peer_count(px), 0);
    /* into Y's record: it is Y's claim now, and X's messages do not verify under Y's name */
    assert_int_equal(pl_sk_peer_install(py, ly.sb, "g_g", o.buf, o.len, T0), 0);
    blob g = sk_enc(sx, 1);
    sk_reject(px, g, PL_E2E_ENOKEY);
    sk_reject(py, g, PL_E2E_ESIG);
    /* over X's own session it installs, once, and X's messages decrypt */
    assert_int_equal(pl_sk_peer_install(px, lx.sb, "g_g", skdm, n, T0), 0);
    assert_int_equal(pl_sk_peer_install(px, lx.sb, "g_g", skdm, n, T0), 1);
    assert_int_equal(pl_sk_peer_install(px, lx.sb, "g_h", skdm, n, T0), PL_E2E_EIDENTITY);
    assert_int_equal(pl_sk_peer_install(px, lx.sb, "g_g", skdm, n - 1, T0), PL_E2E_EFORMAT);
    assert_int_equal(pl_sk_decrypt(px, g.p, g.n, T0, &o), 0);
    assert_payload(&o, 1);
    blob_free(&g);
    pl_sk_peer_free(px);
    pl_sk_peer_free(py);
    pl_sk_sender_free(sx);
    link_close(&lx);
    link_close(&ly);
    dev_free(&x);
    dev_free(&y);
    dev_free(&r);
}

/* A removed device cannot read after the rotation; a new device cannot read what came before
 * its SKDM; at most 5 states per sender device, the oldest evicted. */
static void test_group_membership(void **state)
{
    (void)state;
    group *g = group_new();
    pl_e2e_out o = out();
    blob before = sk_enc(g->st, 1);
    assert_int_equal(pl_sk_decrypt(g->peer, before.p, before.n, T0, &o), 0);
    /* a new device gets the SKDM now, at iteration 1 */
    pl_sk_peer *late = NULL;
    unsigned char skdm[PL_SKDM_MAX];
    size_t n;
    assert_int_equal(pl_sk_sender_skdm(g->st, skdm, sizeof skdm, &n), 0);
    assert_int_equal(pl_sk_peer_new(&late, "g_team", "u_sender", "d_s1"), 0);
    assert_int_equal(pl_sk_peer_install(late, g->l.sb, "g_team", skdm, n, T0), 0);
    sk_reject(late, before, PL_E2E_EREPLAY);
    blob after = sk_enc(g->st, 2);
    assert_int_equal(pl_sk_decrypt(late, after.p, after.n, T0, &o), 0);
    assert_payload(&o, 2);
    /* the receiver is removed: rotate; it never gets the new SKDM */
    assert_true(pl_sk_sender_sent_to_has(g->st, "u_recv", "d_r1"));
    assert_int_equal(pl_sk_sender_sent_to_remove(g->st, "u_recv", "d_r1"), 0);
    assert_false(pl_sk_sender_sent_to_has(g->st, "u_recv", "d_r1"));
    pl_sk_sender *rot = NULL;
    assert_int_equal(pl_sk_sender_new(&rot, "g_team", "u_sender", "d_s1", T0), 0);
    assert_memory_not_equal(pl_sk_sender_dist_id(rot), pl_sk_sender_dist_id(g->st), 16);
    blob fresh = sk_enc(rot, 3);
    sk_reject(g->peer, fresh, PL_E2E_ENOKEY);
    unsigned char did[16];
    uint32_t it;
    assert_int_equal(pl_skmsg_peek(fresh.p, fresh.n, did, &it), 0);
    assert_memory_equal(did, pl_sk_sender_dist_id(rot), 16);
    assert_int_equal(it, 0);
    /* five more distributions: the first is evicted */
    for (int i = 0; i < 5; i++) {
        pl_sk_sender *t = NULL;
        assert_int_equal(pl_sk_sender_new(&t, "g_team", "u_sender", "d_s1", T0), 0);
        assert_int_equal(pl_sk_sender_skdm(t, skdm, sizeof skdm, &n), 0);
        assert_int_equal(pl_sk_peer_install(g->peer, g->l.sb, "g_team", skdm, n, T0), 0);
        pl_sk_sender_free(t);
    }
    assert_int_equal(pl_sk_peer_count(g->peer), PL_SK_STATES_MAX);
    blob old = sk_enc(g->st, 4);
    sk_reject(g->peer, old, PL_E2E_ENOKEY);
    /* rotation by count and age */
    assert_false(pl_sk_sender_needs_rotation(rot, T0));
    assert_true(pl_sk_sender_needs_rotation(rot, T0 + PL_SK_ROTATE_MS));
    for (uint32_t i = 1; i < PL_SK_ROTATE_MSGS; i++) {
        blob t = sk_enc(rot, i);
        blob_free(&t);
    }
    assert_true(pl_sk_sender_needs_rotation(rot, T0));
    assert_int_equal(pl_sk_sender_iteration(rot), PL_SK_ROTATE_MSGS);
    blob_free(&before);
    blob_free(&after);
    blob_free(&fresh);
    blob_free(&old);
    pl_sk_sender_free(rot);
    pl_sk_peer_free(late);
    group_free(g);
}

/* ------------------------------------------------------------------------- serialization */

static void test_state_serialization(void **state)
{
    (void)state;
    world *w = world_new(-1, false);
    /* an initiator still sending PREKEY_MSGs round-trips, prekey block included */
    blob m0 = enc_idx(w->l.sa, 1);
    persist(&w->l.sa);
    assert_true(pl_e2e_session_sends_prekey(w->l.sa));
    blob m1 = enc_idx(w->l.sa, 2);
    pl_e2e_out o = out();
    assert_int_equal(to_b(&w->l, m1, &o), 0); /* skips 0 */
    persist(&w->l.sb);
    assert_int_equal(pl_e2e_session_skipped_count(w->l.sb), 1);
    assert_int_equal(to_b(&w->l, m0, &o), 0);
    assert_payload(&o, 1);
    /* damaged blobs are refused */
    blob s = ser(w->l.sb);
    pl_e2e_session *t = NULL;
    for (size_t n = 0; n < s.n; n++)
        assert_int_equal(pl_e2e_session_deserialize(&t, s.p, n), PL_E2E_ESTATE);
    unsigned char *longer = calloc(1, s.n + 1);
    memcpy(longer, s.p, s.n);
    assert_int_equal(pl_e2e_session_deserialize(&t, longer, s.n + 1), PL_E2E_ESTATE);
    free(longer);
    s.p[4] = 2; /* version */
    assert_int_equal(pl_e2e_session_deserialize(&t, s.p, s.n), PL_E2E_ESTATE);
    s.p[4] = 1;
    s.p[6 + 32 + 32 + 1] ^= 1; /* DHs private key no longer matches its public key */
    assert_int_equal(pl_e2e_session_deserialize(&t, s.p, s.n), PL_E2E_ESTATE);
    s.p[6 + 32 + 32 + 1] ^= 1;
    /* a counter at 2^32 - 1 forces a new session */
    memset(s.p + 198, 0xff, 4); /* Ns, after magic, version, flags and six 32-byte keys */
    assert_int_equal(pl_e2e_session_deserialize(&t, s.p, s.n), 0);
    unsigned char buf[1024];
    size_t wl;
    assert_int_equal(pl_e2e_session_encrypt(t, PL_CT_CONTENT, buf, 10, buf, sizeof buf, &wl),
                     PL_E2E_ECOUNTER);
    pl_e2e_session_free(t);
    blob_free(&s);

    /* sender and peer records */
    group *g = group_new();
    blob x = sk_enc(g->st, 1), y = sk_enc(g->st, 2);
    assert_int_equal(pl_sk_decrypt(g->peer, y.p, y.n, T0, &o), 0);
    blob a = ser_sender(g->st), b = ser_peer(g->peer);
    pl_sk_sender *st2 = NULL;
    pl_sk_peer *p2 = NULL;
    assert_int_equal(pl_sk_sender_deserialize(&st2, a.p, a.n), 0);
    assert_int_equal(pl_sk_peer_deserialize(&p2, b.p, b.n), 0);
    blob a2 = ser_sender(st2), b2 = ser_peer(p2);
    assert_blob_eq(a, a2);
    assert_blob_eq(b, b2);
    assert_true(pl_sk_sender_sent_to_has(st2, "u_recv", "d_r1"));
    assert_int_equal(pl_sk_decrypt(p2, x.p, x.n, T0, &o), 0); /* the skipped key came along */
    assert_payload(&o, 1);
    pl_sk_sender_free(st2);
    pl_sk_peer_free(p2);
    for (size_t n = 0; n < a.n; n++) {
        assert_int_equal(pl_sk_sender_deserialize(&st2, a.p, n), PL_E2E_ESTATE);
        assert_null(st2);
    }
    for (size_t n = 0; n < b.n; n++) {
        assert_int_equal(pl_sk_peer_deserialize(&p2, b.p, n), PL_E2E_ESTATE);
        assert_null(p2);
    }
    /* an exhausted sender-key iteration: rotate */
    pl_sk_sender *st3 = NULL;
    size_t off = 5;
    for (int i = 0; i < 3; i++) off += 1 + a.p[off];
    memset(a.p + off + 16 + 32, 0xff, 4);
    assert_int_equal(pl_sk_sender_deserialize(&st3, a.p, a.n), 0);
    assert_int_equal(pl_sk_encrypt(st3, buf, 1, buf, sizeof buf, &wl), PL_E2E_ECOUNTER);
    pl_sk_sender_free(st3);
    blob_free(&a);
    blob_free(&b);
    blob_free(&a2);
    blob_free(&b2);
    blob_free(&x);
    blob_free(&y);
    group_free(g);
    blob_free(&m0);
    blob_free(&m1);
    world_free(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_1000),
        cmocka_unit_test(test_out_of_order_across_chains),
        cmocka_unit_test(test_max_skip_n),
        cmocka_unit_test(test_max_skip_pn),
        cmocka_unit_test(test_max_skip_sender_key),
        cmocka_unit_test(test_tamper_prekey_msg),
        cmocka_unit_test(test_tamper_msg),
        cmocka_unit_test(test_tamper_session_ad),
        cmocka_unit_test(test_tamper_x3dh_inputs),
        cmocka_unit_test(test_tamper_skmsg),
        cmocka_unit_test(test_forged_skmsg_signature_before_kdf),
        cmocka_unit_test(test_tamper_skmsg_ad_inputs),
        cmocka_unit_test(test_replay_msg),
        cmocka_unit_test(test_replay_prekey_used_opk),
        cmocka_unit_test(test_replay_prekey_no_opk),
        cmocka_unit_test(test_replay_skmsg),
        cmocka_unit_test(test_wrong_session_unchanged),
        cmocka_unit_test(test_dcert_not_pinned_refused),
        cmocka_unit_test(test_skdm_binding),
        cmocka_unit_test(test_group_membership),
        cmocka_unit_test(test_state_serialization),
    };
    return cmocka_run_group_tests_name("e2e_props", tests, setup, NULL);
}
