/* e2e.h: the end-to-end encryption core of libparley (design: E2E.md v1; as built: docs/e2e.md).
 *
 * What it owns: the cryptographic protocol as pure code over bytes and in-memory state:
 *   - primitives: HKDF-SHA256, KDF_CK, KDF_RK, message keys, X25519 checks, id() encoding, padding;
 *   - identity: AIK (Ed25519) and DIK (X25519) pairs, DCERT, signed prekeys, one-time prekeys;
 *   - X3DH (initiator and responder) and the PREKEY_MSG / MSG wire formats;
 *   - the Double Ratchet session, its skipped keys and its serialized form;
 *   - Sender Keys: the sending state, SKDM, SKMSG, the receiving states of one sender device;
 *   - safety numbers.
 * What it must not touch: the network, the store, the clock (callers pass now_ms), the event
 * queue. It never logs. Persisting state is the caller's job: E2E.md §12 (encrypt, persist the
 * new state and the outbox row in one transaction, then send; decrypt, persist, then ack).
 *
 * Conventions: internal to libparley (not in parley.h), every name pl_..., every call that can
 * fail returns 0 (or a documented non-negative value) or a negative PL_E2E_E... code. Output
 * buffers are the caller's; state objects (pl_e2e_session, pl_sk_sender, pl_sk_peer) are allocated
 * here and released with their *_free, which wipes them. Per-operation secrets are wiped on every
 * exit path. A decrypt works on a copy and commits only after the tag verifies: a failed decrypt
 * leaves the state (and its serialized bytes) unchanged.
 *
 * Threads: no globals except the KDF call counter (atomic). One state object is used by one
 * thread at a time. Call pl_e2e_init() once before anything else.
 */
#ifndef PL_CLIENT_E2E_H
#define PL_CLIENT_E2E_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ----------------------------------------------------------------------------------- errors */

#define PL_E2E_ERRNO_MAP(XX)                                                                       \
    XX(EINVAL, -100, "invalid argument")                                                           \
    XX(ENOMEM, -101, "out of memory")                                                              \
    XX(ECRYPTO, -102, "the crypto library failed or could not be initialised")                     \
    XX(EFORMAT, -103, "malformed encrypted message, certificate or key distribution")              \
    XX(EVERSION, -104, "unknown version, suite or message type")                                   \
    XX(EKEY, -105, "a public key was rejected (bit 255 set or low order)")                         \
    XX(ESIG, -106, "a signature did not verify")                                                   \
    XX(EIDENTITY, -107, "identity mismatch (pinned key, user, device or conversation)")            \
    XX(EDECRYPT, -108, "the message could not be decrypted (bad tag or wrong session)")            \
    XX(EREPLAY, -109, "duplicate or replayed message")                                             \
    XX(ETOOFAR, -110, "the message skips more than 2000 keys of its chain")                        \
    XX(ENOKEY, -111, "unknown prekey or sender key")                                               \
    XX(ECOUNTER, -112, "the message counter is exhausted: start a new session or sender key")      \
    XX(ETOOBIG, -113, "the payload is larger than 64 KiB")                                         \
    XX(ENOSPC, -114, "the output buffer is too small")                                             \
    XX(ESTATE, -115, "the saved state is damaged or of an unknown version")

typedef enum pl_e2e_errno {
#define PL_E2E_ENUM_(name, val, text) PL_E2E_##name = (val),
    PL_E2E_ERRNO_MAP(PL_E2E_ENUM_)
#undef PL_E2E_ENUM_
} pl_e2e_errno;

/* A sentence for a PL_E2E_E... code (static storage); 0 gives "success". */
const char *pl_e2e_strerror(int err);

/* --------------------------------------------------------------------------------- constants */

#define PL_E2E_VERSION     0x01 /* first byte of PREKEY_MSG, MSG, SKMSG */
#define PL_E2E_SUITE       0x01 /* X25519, Ed25519, HKDF-SHA256, XChaCha20-Poly1305 */
#define PL_WIRE_PREKEY     0x01 /* wire types (third byte) */
#define PL_WIRE_MSG        0x02
#define PL_WIRE_SKMSG      0x03
#define PL_CT_CONTENT      0x01 /* pairwise payload types (first plaintext byte) */
#define PL_CT_SKDM         0x02
#define PL_CT_RETRY        0x03
#define PL_E2E_ID_MAX      64    /* id(x): 1..64 ASCII bytes */
#define PL_E2E_PAYLOAD_MAX 65536 /* bytes after the ctype byte */
#define PL_E2E_PAD_BLOCK   160   /* sodium_pad block */
#define PL_E2E_PADDED_MAX  65600 /* pad(1 + PL_E2E_PAYLOAD_MAX) */
#define PL_MAX_SKIP        2000  /* largest jump in one chain */
#define PL_MAX_SKIPPED     2000  /* stored skipped keys per session / per sender-key state */
#define PL_SKIPPED_TTL_MS  (30ULL * 24 * 3600 * 1000)
#define PL_SK_STATES_MAX   5 /* receiving sender-key states per (conv, sender device) */
#define PL_SK_ROTATE_MS    (7ULL * 24 * 3600 * 1000)
#define PL_SK_ROTATE_MSGS  1000
#define PL_OPK_NONE        0xFFFFFFFFu
#define PL_DCERT_MIN       109  /* 1 + 2 + 2 + 32 + 8 + 64 */
#define PL_DCERT_MAX       235  /* 1 + 65 + 65 + 32 + 8 + 64 */
#define PL_AD_MAX          399  /* "PARLEYv1/AD" + 2 * (32 + 32 + 65 + 65) */
#define PL_MSG_OVERHEAD    83   /* MSG: 43 header + 24 nonce + 16 tag (+ padded plaintext) */
#define PL_SKMSG_OVERHEAD  127  /* SKMSG: 23 + 24 nonce + 16 tag + 64 signature */
#define PL_SKDM_MAX        150  /* 1 + 65 + 16 + 4 + 32 + 32 */
#define PL_FP_ITERATIONS   5200 /* safety numbers */

/* ----------------------------------------------------------------------------- primitives */

/* sodium_init(); PL_E2E_ECRYPTO if it fails. Safe to call more than once. */
int pl_e2e_init(void);
/* Memory for private keys and states that hold them: guarded and locked (sodium_malloc) and
 * zero-filled; pl_e2e_secret_free wipes len bytes and releases it (NULL is ignored). */
void *pl_e2e_secret_alloc(size_t len);
void pl_e2e_secret_free(void *p, size_t len);

/* HKDF-SHA256 (RFC 5869). salt == NULL means 32 zero bytes; any other salt, including an empty
 * one (saltlen 0, salt not NULL), is used as given. L <= 255 * 32. */
int pl_hkdf(unsigned char *okm, size_t L, const unsigned char *salt, size_t saltlen,
            const unsigned char *ikm, size_t ikmlen, const char *info, size_t infolen);
/* The two halves of pl_hkdf: PRK = HMAC(salt, ikm) with the same salt rules, and
 * OKM = T(1) || T(2) || ... truncated to L. */
int pl_hkdf_extract(unsigned char prk[32], const unsigned char *salt, size_t saltlen,
                    const unsigned char *ikm, size_t ikmlen);
int pl_hkdf_expand(unsigned char *okm, size_t L, const unsigned char prk[32], const char *info,
                   size_t infolen);
/* KDF_CK: seed = HMAC-SHA256(ck, 0x01), ck_next = HMAC-SHA256(ck, 0x02). ck_next may alias ck. */
int pl_kdf_ck(unsigned char seed[32], unsigned char ck_next[32], const unsigned char ck[32]);
/* KDF_RK: HKDF(salt = rk, ikm = dh, "PARLEYv1/RK", 64) = rk_next || ck. rk_next may alias rk. */
int pl_kdf_rk(unsigned char rk_next[32], unsigned char ck[32], const unsigned char rk[32],
              const unsigned char dh[32]);
/* Message key: HKDF(none, seed, label, 32), label "PARLEYv1/MK" or "PARLEYv1/SKMK". */
int pl_kdf_mk(unsigned char mk[32], const unsigned char seed[32], const char *label);

/* Test hook: how many KDF steps (HKDF extract or expand, KDF_CK) have run in this process. */
unsigned long pl_e2e_kdf_calls(void);

/* A received X25519 public key: 0 when usable, PL_E2E_EKEY when bit 255 is set. */
int pl_x25519_pub_check(const unsigned char pk[32]);
/* out = X25519(sk, pk); PL_E2E_EKEY when pk has bit 255 set or crypto_scalarmult fails (low
 * order point, all-zero output). */
int pl_dh(unsigned char out[32], const unsigned char sk[32], const unsigned char pk[32]);

/* True when id is 1..64 printable ASCII bytes (0x21..0x7e). */
bool pl_id_valid(const char *id);
/* Writes id(x) = u8 len || bytes; returns the length written (2..65) or a negative code. */
int pl_id_encode(unsigned char *out, size_t cap, const char *id);
/* Reads id(x) from in; out gets the NUL-terminated id. Returns the bytes consumed. */
int pl_id_decode(char out[PL_E2E_ID_MAX + 1], const unsigned char *in, size_t len);

/* sodium_pad to a multiple of 160 (always at least one byte of padding). buf holds len bytes
 * and has room for cap; *padded gets the new length. */
int pl_pad(unsigned char *buf, size_t len, size_t cap, size_t *padded);
/* The inverse; PL_E2E_EFORMAT on bad padding. */
int pl_unpad(const unsigned char *buf, size_t len, size_t *unpadded);

/* ----------------------------------------------------------------------------------- identity */

typedef struct pl_dh_pair { /* X25519: DIK, SPK, OPK, EK, ratchet keys */
    unsigned char pk[32];
    unsigned char sk[32];
} pl_dh_pair;

typedef struct pl_sign_pair { /* Ed25519: AIK, SSK */
    unsigned char pk[32];
    unsigned char sk[64];
} pl_sign_pair;

typedef struct pl_prekey { /* a signed prekey or one-time prekey, private side */
    uint32_t id;
    pl_dh_pair kp;
} pl_prekey;

int pl_dh_generate(pl_dh_pair *kp);     /* crypto_box_keypair */
int pl_sign_generate(pl_sign_pair *kp); /* crypto_sign_keypair */
/* A prekey with this id (an SPK, or an OPK: ids increase, never PL_OPK_NONE). */
int pl_prekey_generate(pl_prekey *pk, uint32_t id);
/* n OPKs with ids first_id, first_id + 1, ...; PL_E2E_EINVAL if that would reach PL_OPK_NONE. */
int pl_opk_generate(pl_prekey *opks, size_t n, uint32_t first_id);

/* A verified device certificate. */
typedef struct pl_dcert {
    char user[PL_E2E_ID_MAX + 1];
    char device[PL_E2E_ID_MAX + 1];
    unsigned char dik_pub[32];
    uint64_t created_at;
} pl_dcert;

/* DCERT = u8 1 || id(user) || id(device) || DIK_pub || created_at u64 || sig(64),
 * sig = Ed25519(AIK, "PARLEYv1/DCERT" || all preceding bytes). Writes at most PL_DCERT_MAX. */
int pl_dcert_build(unsigned char *out, size_t cap, size_t *outlen, const pl_sign_pair *aik,
                   const char *user, const char *device, const unsigned char dik_pub[32],
                   uint64_t created_at);
/* Parses dcert strictly and verifies it against aik_pub (the pinned AIK). out may be NULL.
 * PL_E2E_EFORMAT, PL_E2E_EVERSION, PL_E2E_EKEY or PL_E2E_ESIG on failure. */
int pl_dcert_verify(pl_dcert *out, const unsigned char *dcert, size_t len,
                    const unsigned char aik_pub[32]);

/* SPK sig = Ed25519(AIK, "PARLEYv1/SPK" || id(user) || id(device) || spk_id u32 || SPK_pub). */
int pl_spk_sign(unsigned char sig[64], const pl_sign_pair *aik, const char *user,
                const char *device, uint32_t spk_id, const unsigned char spk_pub[32]);
int pl_spk_verify(const unsigned char sig[64], const unsigned char aik_pub[32], const char *user,
                  const char *device, uint32_t spk_id, const unsigned char spk_pub[32]);

/* This device as X3DH sees it. Holds DIK_sk: keep it where long-lived secrets live. */
typedef struct pl_e2e_self {
    char user[PL_E2E_ID_MAX + 1];
    char device[PL_E2E_ID_MAX + 1];
    unsigned char aik_pub[32];
    pl_dh_pair dik;
    unsigned char dcert[PL_DCERT_MAX];
    size_t dcert_len;
} pl_e2e_self;

/* A new device: generates the DIK and builds its DCERT signed by aik. */
int pl_e2e_self_create(pl_e2e_self *self, const pl_sign_pair *aik, const char *user,
                       const char *device, uint64_t created_at);
/* A stored device: checks that dcert verifies against aik_pub and certifies dik. */
int pl_e2e_self_load(pl_e2e_self *self, const unsigned char aik_pub[32], const pl_dh_pair *dik,
                     const unsigned char *dcert, size_t dcert_len);
void pl_e2e_self_wipe(pl_e2e_self *self);

/* A claimed bundle (POST /v1/keys/claim), decoded from base64url. */
typedef struct pl_bundle {
    char user[PL_E2E_ID_MAX + 1];
    char device[PL_E2E_ID_MAX + 1];
    unsigned char aik[32];
    unsigned char dcert[PL_DCERT_MAX];
    size_t dcert_len;
    uint32_t spk_id;
    unsigned char spk_pub[32];
    unsigned char spk_sig[64];
    uint32_t opk_id; /* PL_OPK_NONE when the bundle had "opk": null */
    unsigned char opk_pub[32];
} pl_bundle;

/* Checks a bundle before use: aik equals pinned_aik (else PL_E2E_EIDENTITY), the DCERT verifies
 * against it and names (user, device), the SPK signature verifies, every X25519 key passes
 * pl_x25519_pub_check. dcert_out may be NULL. */
int pl_bundle_verify(const pl_bundle *b, const unsigned char pinned_aik[32], pl_dcert *dcert_out);

/* ------------------------------------------------------------------------------------- X3DH */

/* SK derivation with explicit label and length (production uses "PARLEYv1/X3DH", 32; the
 * libsignal vector uses "WhisperText", 64). ikm = 0xFF*32 || DH1 || DH2 || DH3 [|| DH4].
 * Initiator: DH1 = X25519(DIK_A, SPK_B), DH2 = X25519(EK, DIK_B), DH3 = X25519(EK, SPK_B),
 * DH4 = X25519(EK, OPK_B) when opk_pub != NULL. Responder mirrors them; opk_sk may be NULL. */
int pl_x3dh_initiator_secret(unsigned char *sk, size_t sklen, const char *label,
                             const unsigned char dik_a_sk[32], const unsigned char ek_sk[32],
                             const unsigned char dik_b_pub[32], const unsigned char spk_b_pub[32],
                             const unsigned char *opk_b_pub);
int pl_x3dh_responder_secret(unsigned char *sk, size_t sklen, const char *label,
                             const unsigned char dik_b_sk[32], const unsigned char spk_b_sk[32],
                             const unsigned char *opk_b_sk, const unsigned char dik_a_pub[32],
                             const unsigned char ek_a_pub[32]);
/* AD = "PARLEYv1/AD" || AIK_A || DIK_A || id(uA) || id(A) || AIK_B || DIK_B || id(uB) || id(B),
 * initiator (A) first. Returns the length (<= PL_AD_MAX) or a negative code. */
int pl_x3dh_ad(unsigned char ad[PL_AD_MAX], const unsigned char aik_a[32],
               const unsigned char dik_a[32], const char *user_a, const char *dev_a,
               const unsigned char aik_b[32], const unsigned char dik_b[32], const char *user_b,
               const char *dev_b);

typedef struct pl_e2e_session pl_e2e_session;

/* Initiator (§5): verifies the bundle (pl_bundle_verify), runs X3DH with a fresh EK and
 * initialises the ratchet. The new session sends PREKEY_MSGs until it receives a message.
 * *out is owned by the caller (pl_e2e_session_free). */
int pl_x3dh_initiate(pl_e2e_session **out, const pl_e2e_self *self, const pl_bundle *peer,
                     const unsigned char pinned_aik[32]);

/* A parsed PREKEY_MSG prekey block (pointers into the caller's bytes). */
typedef struct pl_prekey_msg {
    const unsigned char *aik; /* AIK_A, 32 bytes */
    const unsigned char *dcert;
    size_t dcert_len;
    const unsigned char *ek; /* EK_A, 32 bytes */
    uint32_t spk_id;
    uint32_t opk_id;
    unsigned char ek_hash[32]; /* SHA-256(EK_A): names the session and the replay-cache entry */
} pl_prekey_msg;

/* The type of a pairwise or group message (PL_WIRE_PREKEY, PL_WIRE_MSG or PL_WIRE_SKMSG) after
 * checking version and suite; a negative code otherwise. Full checks come with decryption. */
int pl_e2e_msg_type(const unsigned char *msg, size_t len);
/* Parses a whole PREKEY_MSG strictly (every length) and returns its prekey block. */
int pl_prekey_msg_parse(pl_prekey_msg *pm, const unsigned char *msg, size_t len);

/* SHA-256(EK) hashes seen by one SPK for PREKEY_MSGs without an OPK (§5). Plain memory; the
 * store keeps the rows and drops them with the SPK private key. */
typedef struct pl_replay_cache {
    unsigned char (*h)[32];
    size_t n, cap;
} pl_replay_cache;

bool pl_replay_cache_has(const pl_replay_cache *rc, const unsigned char h[32]);
int pl_replay_cache_add(pl_replay_cache *rc, const unsigned char h[32]);
void pl_replay_cache_free(pl_replay_cache *rc);

/* What the responder needs besides the message. */
typedef struct pl_respond_keys {
    const unsigned char *pinned_aik; /* the AIK pinned for from_user (first use: the message's) */
    const char *from_user;           /* the frame's "from" and "dev" */
    const char *from_dev;
    const pl_prekey *spk;          /* SPK private key with the message's spk_id; NULL: unknown */
    const pl_prekey *opk;          /* OPK with its opk_id; NULL: none or unknown */
    const pl_replay_cache *replay; /* that SPK's replay cache; NULL: empty */
} pl_respond_keys;

/* A decrypted payload in the caller's buffer (PL_E2E_PAYLOAD_MAX bytes always suffice). */
typedef struct pl_e2e_out {
    unsigned char *buf; /* in */
    size_t cap;         /* in */
    size_t len;         /* out: payload bytes */
    uint8_t ctype;      /* out: PL_CT_CONTENT, PL_CT_SKDM or PL_CT_RETRY */
} pl_e2e_out;

/* Responder (§5) for a PREKEY_MSG that matches no existing session (look sessions up by
 * pl_prekey_msg.ek_hash first and decrypt there with pl_e2e_session_decrypt). Checks the pinned
 * AIK, the DCERT (user and device must equal from_user and from_dev), the prekeys (PL_E2E_ENOKEY
 * when unknown), the replay cache (PL_E2E_EREPLAY when no OPK and the EK was seen), then derives SK
 * and decrypts. Only when the tag verifies does *out get a new session: the caller then commits
 * it, deletes the OPK private key and adds ek_hash to the SPK's replay cache, in one transaction.
 */
int pl_x3dh_respond(pl_e2e_session **out, const pl_e2e_self *self, const pl_respond_keys *keys,
                    const unsigned char *msg, size_t len, uint64_t now_ms, pl_e2e_out *pt);

/* ----------------------------------------------------------------------------- Double Ratchet */

/* Bytes pl_e2e_session_encrypt will write for a payload of payload_len bytes. */
size_t pl_e2e_session_encrypt_size(const pl_e2e_session *s, size_t payload_len);
/* Encrypts ctype || payload into a PREKEY_MSG (until the session has received a message) or a
 * MSG, and advances the sending chain. Fails (state untouched) on bad arguments, a full buffer,
 * or PL_E2E_ECOUNTER when Ns reached 2^32 - 1 (start a new session). Persist before sending. */
int pl_e2e_session_encrypt(pl_e2e_session *s, uint8_t ctype, const unsigned char *payload,
                           size_t len, unsigned char *out, size_t cap, size_t *outlen);
/* Decrypts a MSG, or a PREKEY_MSG whose EK names this (responder) session. Works on a copy and
 * commits only on success. now_ms stamps new skipped keys. PL_E2E_EREPLAY for a counter already
 * used, PL_E2E_ETOOFAR for a jump over PL_MAX_SKIP (as N or as PN), PL_E2E_EDECRYPT for a bad tag
 * or a message of another session. */
int pl_e2e_session_decrypt(pl_e2e_session *s, const unsigned char *msg, size_t len, uint64_t now_ms,
                           pl_e2e_out *pt);

/* The associated data of the session (PL_AD_MAX bytes at most). */
const unsigned char *pl_e2e_session_ad(const pl_e2e_session *s, size_t *len);
/* SHA-256(EK_A) of the X3DH that made the session. */
const unsigned char *pl_e2e_session_ek_hash(const pl_e2e_session *s);
bool pl_e2e_session_is_initiator(const pl_e2e_session *s);
/* True while the session's messages are PREKEY_MSGs. */
bool pl_e2e_session_sends_prekey(const pl_e2e_session *s);
/* The peer device the session is bound to (from the verified DCERT). */
const char *pl_e2e_session_peer_user(const pl_e2e_session *s);
const char *pl_e2e_session_peer_device(const pl_e2e_session *s);
const unsigned char *pl_e2e_session_peer_aik(const pl_e2e_session *s);
size_t pl_e2e_session_skipped_count(const pl_e2e_session *s);
/* Deletes skipped keys older than PL_SKIPPED_TTL_MS; returns how many. */
size_t pl_e2e_session_expire(pl_e2e_session *s, uint64_t now_ms);
/* A deep copy (for the caller's own copy-then-commit). */
int pl_e2e_session_copy(pl_e2e_session **out, const pl_e2e_session *s);
void pl_e2e_session_free(pl_e2e_session *s);

/* Serialized state (docs/e2e.md): holds every key of the session; encrypt it at rest. */
size_t pl_e2e_session_serialized_size(const pl_e2e_session *s);
int pl_e2e_session_serialize(const pl_e2e_session *s, unsigned char *out, size_t cap,
                             size_t *outlen);
int pl_e2e_session_deserialize(pl_e2e_session **out, const unsigned char *in, size_t len);

/* ------------------------------------------------------------------------------- Sender Keys */

typedef struct pl_sk_sender pl_sk_sender; /* own sending state for one (conv, own device) */
typedef struct pl_sk_peer pl_sk_peer;     /* receiving states of one (conv, sender user, device) */

/* A new sender state: random dist_id and CK, iteration 0, new SSK. */
int pl_sk_sender_new(pl_sk_sender **out, const char *conv, const char *user, const char *device,
                     uint64_t now_ms);
/* SKDM = u8 1 || id(conv) || dist_id || iteration u32 || CK || SSK_pub, with the current CK
 * and iteration (send it as a PL_CT_SKDM pairwise payload). */
int pl_sk_sender_skdm(const pl_sk_sender *st, unsigned char *out, size_t cap, size_t *outlen);
size_t pl_sk_encrypt_size(size_t payload_len);
/* An SKMSG carrying a CONTENT payload; advances CK and the iteration. PL_E2E_ECOUNTER when
 * the iteration reached 2^32 - 1. Persist before sending. */
int pl_sk_encrypt(pl_sk_sender *st, const unsigned char *payload, size_t len, unsigned char *out,
                  size_t cap, size_t *outlen);
/* 7 days or 1000 messages (§7.3); membership-driven rotation is the caller's decision. */
bool pl_sk_sender_needs_rotation(const pl_sk_sender *st, uint64_t now_ms);
const unsigned char *pl_sk_sender_dist_id(const pl_sk_sender *st);
uint32_t pl_sk_sender_iteration(const pl_sk_sender *st);
/* sent_to: the devices that hold this distribution. */
bool pl_sk_sender_sent_to_has(const pl_sk_sender *st, const char *user, const char *device);
int pl_sk_sender_sent_to_add(pl_sk_sender *st, const char *user, const char *device);
int pl_sk_sender_sent_to_remove(pl_sk_sender *st, const char *user, const char *device);
/* The i-th device of sent_to (0 <= i < count); the strings belong to st. */
size_t pl_sk_sender_sent_to_count(const pl_sk_sender *st);
int pl_sk_sender_sent_to_at(const pl_sk_sender *st, size_t i, const char **user,
                            const char **device);
size_t pl_sk_sender_serialized_size(const pl_sk_sender *st);
int pl_sk_sender_serialize(const pl_sk_sender *st, unsigned char *out, size_t cap, size_t *outlen);
int pl_sk_sender_deserialize(pl_sk_sender **out, const unsigned char *in, size_t len);
void pl_sk_sender_free(pl_sk_sender *st);

/* The receiving side of one sender device in one conversation (at most 5 dist_ids). */
int pl_sk_peer_new(pl_sk_peer **out, const char *conv, const char *user, const char *device);
/* Installs an SKDM that arrived as a PL_CT_SKDM payload on session `via` in a frame of
 * conversation frame_conv. The session's peer must be this record's (user, device) and the
 * SKDM's conv must equal frame_conv and this record's conv (PL_E2E_EIDENTITY otherwise).
 * Returns 0 when installed, 1 when the dist_id was known (ignored). The oldest of 5 is evicted. */
int pl_sk_peer_install(pl_sk_peer *p, const pl_e2e_session *via, const char *frame_conv,
                       const unsigned char *skdm, size_t len, uint64_t now_ms);
/* dist_id and iteration of an SKMSG after a strict length and version check (for parking). */
int pl_skmsg_peek(const unsigned char *msg, size_t len, unsigned char dist_id[16],
                  uint32_t *iteration);
/* Decrypts an SKMSG from this record's device: the signature is verified before any key is
 * derived; then the iteration (PL_E2E_EREPLAY for a used one, PL_E2E_ETOOFAR beyond
 * PL_MAX_SKIP), then the tag. PL_E2E_ENOKEY for an unknown dist_id (park it). On a copy. */
int pl_sk_decrypt(pl_sk_peer *p, const unsigned char *msg, size_t len, uint64_t now_ms,
                  pl_e2e_out *pt);
size_t pl_sk_peer_count(const pl_sk_peer *p);
size_t pl_sk_peer_skipped_count(const pl_sk_peer *p);
size_t pl_sk_peer_expire(pl_sk_peer *p, uint64_t now_ms);
size_t pl_sk_peer_serialized_size(const pl_sk_peer *p);
int pl_sk_peer_serialize(const pl_sk_peer *p, unsigned char *out, size_t cap, size_t *outlen);
int pl_sk_peer_deserialize(pl_sk_peer **out, const unsigned char *in, size_t len);
void pl_sk_peer_free(pl_sk_peer *p);

/* ----------------------------------------------------------------------------- safety numbers */

#define PL_FP_DIGITS 30
#define PL_SN_DIGITS 60
#define PL_SN_QR_LEN 69 /* "PLSN" || 0x01 || h_self[0..32] || h_peer[0..32] */

/* h = SHA-512(version u16 || key || uid || key), then iterations - 1 more rounds of
 * h = SHA-512(h || key); digits = six 5-byte big-endian chunks of h, each mod 100000. Either
 * output may be NULL. Signal's parameters: version 0, 33-byte keys, 5200 iterations. */
int pl_fingerprint(unsigned char h[64], char digits[PL_FP_DIGITS + 1], unsigned version,
                   const unsigned char *key, size_t keylen, const unsigned char *uid, size_t uidlen,
                   unsigned iterations);
/* Parley's per-user fingerprint: version 0, key 0x01 || AIK_pub, uid the ASCII user id. */
int pl_fingerprint_user(unsigned char h[64], char digits[PL_FP_DIGITS + 1],
                        const unsigned char aik_pub[32], const char *user);
/* The 60-digit safety number: both 30-digit strings, the smaller first. */
int pl_safety_number(char out[PL_SN_DIGITS + 1], const char a[PL_FP_DIGITS + 1],
                     const char b[PL_FP_DIGITS + 1]);
/* QR payload of this side, and the check of a scanned one (crosswise, sodium_memcmp):
 * 0 when it matches, PL_E2E_EIDENTITY when not, PL_E2E_EFORMAT when malformed. */
int pl_safety_qr(unsigned char out[PL_SN_QR_LEN], const unsigned char h_self[64],
                 const unsigned char h_peer[64]);
int pl_safety_qr_check(const unsigned char *qr, size_t len, const unsigned char h_self[64],
                       const unsigned char h_peer[64]);

#endif
