/* fuzz_e2e.c: libFuzzer target for the end-to-end message formats of libparley (src/client/e2e).
 *
 * Everything a peer or the server can put in front of these parsers: the message type check, the
 * strict PREKEY_MSG parse, the SKMSG peek, X3DH as the responder, Double Ratchet decryption on an
 * established session, Sender Key decryption on a record that holds the sender's key, and the
 * deserialisers of the device store's records (a damaged store file is input too). Real states are
 * made once at start-up: Bob's device, a session Alice opened with it and Bob answered, and Bob's
 * record of Alice's sender key. Every call gets a fresh copy of the state, so inputs do not
 * influence each other. Any result is acceptable except a crash, a leak or a sanitizer report; a
 * success must produce a payload within the output buffer.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "client/e2e/e2e.h"

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if (!(x)) abort();                                                                         \
    } while (0)

#define T0 1700000000000ull

static pl_sign_pair aik_a, aik_b;
static pl_e2e_self self_a, self_b;
static pl_prekey spk_b;
static pl_e2e_session *bob_with_alice; /* Bob's side, after Alice's first message */
static unsigned char *peer_blob;       /* Bob's pl_sk_peer for Alice's device, serialised */
static size_t peer_len;
static unsigned char out_buf[PL_E2E_PAYLOAD_MAX];

static pl_e2e_out out(void)
{
    pl_e2e_out o = {.buf = out_buf, .cap = sizeof out_buf};
    return o;
}

static void setup(void)
{
    CHECK(pl_e2e_init() == 0);
    CHECK(pl_sign_generate(&aik_a) == 0);
    CHECK(pl_sign_generate(&aik_b) == 0);
    CHECK(pl_e2e_self_create(&self_a, &aik_a, "u_alice", "d_alice", T0) == 0);
    CHECK(pl_e2e_self_create(&self_b, &aik_b, "u_bob", "d_bob", T0) == 0);
    CHECK(pl_prekey_generate(&spk_b, 7) == 0);

    /* Alice opens a session from Bob's bundle (no OPK) and sends a SKDM as her first message. */
    pl_bundle b;
    memset(&b, 0, sizeof b);
    strcpy(b.user, "u_bob");
    strcpy(b.device, "d_bob");
    memcpy(b.aik, aik_b.pk, 32);
    memcpy(b.dcert, self_b.dcert, self_b.dcert_len);
    b.dcert_len = self_b.dcert_len;
    b.spk_id = spk_b.id;
    memcpy(b.spk_pub, spk_b.kp.pk, 32);
    CHECK(pl_spk_sign(b.spk_sig, &aik_b, "u_bob", "d_bob", spk_b.id, spk_b.kp.pk) == 0);
    b.opk_id = PL_OPK_NONE;
    pl_e2e_session *alice = NULL;
    CHECK(pl_x3dh_initiate(&alice, &self_a, &b, aik_b.pk) == 0);

    pl_sk_sender *sk = NULL;
    CHECK(pl_sk_sender_new(&sk, "g_fuzz", "u_alice", "d_alice", T0) == 0);
    unsigned char skdm[PL_SKDM_MAX], msg[4096];
    size_t skdm_len, msg_len;
    CHECK(pl_sk_sender_skdm(sk, skdm, sizeof skdm, &skdm_len) == 0);
    CHECK(pl_e2e_session_encrypt(alice, PL_CT_SKDM, skdm, skdm_len, msg, sizeof msg, &msg_len) ==
          0);

    pl_respond_keys k = {
        .pinned_aik = aik_a.pk, .from_user = "u_alice", .from_dev = "d_alice", .spk = &spk_b};
    pl_e2e_out o = out();
    CHECK(pl_x3dh_respond(&bob_with_alice, &self_b, &k, msg, msg_len, T0, &o) == 0);
    CHECK(o.ctype == PL_CT_SKDM);

    pl_sk_peer *peer = NULL;
    CHECK(pl_sk_peer_new(&peer, "g_fuzz", "u_alice", "d_alice") == 0);
    CHECK(pl_sk_peer_install(peer, bob_with_alice, "g_fuzz", o.buf, o.len, T0) == 0);
    peer_len = pl_sk_peer_serialized_size(peer);
    peer_blob = malloc(peer_len);
    CHECK(peer_blob);
    CHECK(pl_sk_peer_serialize(peer, peer_blob, peer_len, &peer_len) == 0);

    pl_sk_peer_free(peer);
    pl_sk_sender_free(sk);
    pl_e2e_session_free(alice);
}

static void teardown(void)
{
    pl_e2e_session_free(bob_with_alice);
    free(peer_blob);
    pl_e2e_self_wipe(&self_a);
    pl_e2e_self_wipe(&self_b);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    setup();
    atexit(teardown);
    return 0;
}

static void check_out(int rc, const pl_e2e_out *o)
{
    if (rc == 0) CHECK(o->len <= o->cap);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    (void)pl_e2e_msg_type(data, size);

    pl_prekey_msg pm;
    if (pl_prekey_msg_parse(&pm, data, size) == 0) {
        CHECK(pm.aik >= data && pm.aik + 32 <= data + size);
        CHECK(pm.ek >= data && pm.ek + 32 <= data + size);
        CHECK(pm.dcert >= data && pm.dcert + pm.dcert_len <= data + size);
    }
    unsigned char dist_id[16];
    uint32_t iteration;
    (void)pl_skmsg_peek(data, size, dist_id, &iteration);

    /* As a first message to Bob from Alice. */
    pl_respond_keys k = {
        .pinned_aik = aik_a.pk, .from_user = "u_alice", .from_dev = "d_alice", .spk = &spk_b};
    pl_e2e_session *s = NULL;
    pl_e2e_out o = out();
    int rc = pl_x3dh_respond(&s, &self_b, &k, data, size, T0, &o);
    check_out(rc, &o);
    CHECK((rc == 0) == (s != NULL));
    pl_e2e_session_free(s);

    /* On the session Bob holds with Alice. */
    s = NULL;
    CHECK(pl_e2e_session_copy(&s, bob_with_alice) == 0);
    o = out();
    check_out(pl_e2e_session_decrypt(s, data, size, T0, &o), &o);
    pl_e2e_session_free(s);

    /* As a group message from Alice. */
    pl_sk_peer *peer = NULL;
    CHECK(pl_sk_peer_deserialize(&peer, peer_blob, peer_len) == 0);
    o = out();
    check_out(pl_sk_decrypt(peer, data, size, T0, &o), &o);
    pl_sk_peer_free(peer);

    /* As records of the device store. */
    if (pl_e2e_session_deserialize(&s, data, size) == 0) pl_e2e_session_free(s);
    pl_sk_sender *sender = NULL;
    if (pl_sk_sender_deserialize(&sender, data, size) == 0) pl_sk_sender_free(sender);
    peer = NULL;
    if (pl_sk_peer_deserialize(&peer, data, size) == 0) pl_sk_peer_free(peer);
    return 0;
}
