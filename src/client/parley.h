/* parley.h: libparley, the Parley client library. The only public header.
 *
 * What it is: a client engine for parleyd. It keeps a device store (one SQLite file per account
 * and device, chosen by the application), talks REST over libcurl for accounts, users and
 * devices, and runs the WebSocket on its own I/O thread, which connects, authenticates, syncs the
 * inbox from the stored position, sends the outbox and reconnects (exponential backoff with
 * jitter, moving through a list of servers) until told to stop. The application learns what
 * happened from an event queue whose file descriptor it can poll.
 *
 * Conventions (in the manner of libuv):
 *   - every name is pl_<noun>_<verb>; types are pl_<noun>; constants PL_<NAME>;
 *   - every call that can fail returns 0 (or a count) on success and a negative PL_E... code on
 *     failure; pl_strerror() names it. Calls that reach the server also keep the server's own
 *     sentence, readable with pl_client_errmsg();
 *   - ownership of every pointer handed out is stated at the function. Structs filled by the
 *     library (pl_msg, pl_event, arrays) are released with the matching *_clear / *_free call;
 *     fixed-size char arrays inside them need nothing.
 *
 * Threads: one pl_client is used by one application thread (any one, but one at a time). The
 * library's I/O thread never calls back into the application: everything it has to say is an
 * event. pl_client_fd() may be polled from anywhere.
 *
 * What is implemented: accounts, sessions, users, devices, direct and group messages, sync and
 * acks, receipts (delivered / read markers), groups (create, rename, members, roles, leave),
 * contacts and invitations, blocks, typing and presence, and the server's conversation list
 * merged into the store (also after every reconnect, so markers that moved meanwhile apply).
 */
#ifndef PARLEY_H
#define PARLEY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PL_VERSION "0.1.0"

/* Size of every id buffer (ids are a prefix and at most 32 characters). */
#define PL_ID_MAX 40
/* Size of a cmid buffer (the protocol allows 1 to 64 bytes). */
#define PL_CMID_MAX 72
#define PL_NAME_MAX 72 /* username (<= 32) or display name (<= 64 characters, in bytes < 72) */

/* ------------------------------------------------------------------------------------ errors */

#define PL_ERRNO_MAP(XX)                                                                           \
    XX(EINVAL, -1, "invalid argument")                                                             \
    XX(ENOMEM, -2, "out of memory")                                                                \
    XX(ESTORE, -3, "the device store failed (disk full, file not writable or damaged)")            \
    XX(ENET, -4, "no server could be reached")                                                     \
    XX(ETIMEDOUT, -5, "the operation timed out")                                                   \
    XX(EPROTO, -6, "the server answered something this library does not understand")               \
    XX(EAUTH, -7, "wrong login or password")                                                       \
    XX(ETOKEN, -8, "the session is no longer valid (expired, logged out or device removed)")       \
    XX(ETAKEN, -9, "the username, email or phone is already taken")                                \
    XX(ENOTFOUND, -10, "no such user, device or conversation")                                     \
    XX(ERATE, -11, "rate limited by the server; try again later")                                  \
    XX(EDEVICES, -12, "too many devices: remove one first")                                        \
    XX(ETOOBIG, -13, "the message is too long")                                                    \
    XX(ESERVER, -14, "the server failed or is unavailable; try again")                             \
    XX(EAGAIN, -15, "nothing to read yet")                                                         \
    XX(ENOSESSION, -16, "not logged in: register or log in first")                                 \
    XX(EEXIST, -17, "this store already belongs to another account")                               \
    XX(EREFUSED, -18, "the server refused the request")                                            \
    XX(ESTATE, -19, "not possible in the current state")                                           \
    XX(EUNVERIFIED, -20, "the contact's identity key changed: compare safety numbers again")       \
    XX(ENOTLINKED, -21, "this device is not linked: approve it from a device of this account")

typedef enum pl_errno {
#define PL_ERR_ENUM_(name, val, text) PL_##name = (val),
    PL_ERRNO_MAP(PL_ERR_ENUM_)
#undef PL_ERR_ENUM_
} pl_errno;

/* A sentence for a PL_E... code (static storage). 0 gives "success". */
const char *pl_strerror(int err);
/* The symbolic name ("PL_ENET"; static storage). */
const char *pl_err_name(int err);

/* -------------------------------------------------------------------------------- the client */

typedef struct pl_client pl_client;

typedef struct pl_options {
    /* Base URLs of the servers, tried in order: "http://host:port" (a path prefix is allowed).
     * At least one. Copied. */
    const char *const *servers;
    size_t nservers;
    /* The device store: a SQLite file, created when missing. Required. Copied. */
    const char *store_path;
    /* Name given to the device at log-in or registration (NULL: "parley"). Copied. */
    const char *device_name;
    /* Reconnection backoff: first delay and cap in ms (0: 250 and 30000). Each full round
     * through the server list doubles the delay up to the cap; each delay is jittered to a
     * random value in [delay/2, delay]. */
    int backoff_min_ms;
    int backoff_max_ms;
    /* Timeout of one REST call and of one connection attempt, ms (0: 15000 and 5000). */
    int rest_timeout_ms;
    int connect_timeout_ms;
} pl_options;

/* Opens (or creates) the store and makes a client; no thread is started and no network used.
 * *out is owned by the caller and released with pl_client_free. */
int pl_client_new(pl_client **out, const pl_options *opt);
/* Stops the I/O thread if running, closes the store, frees everything. NULL is fine.
 * Events not yet read are lost; messages in the outbox stay in the store. */
void pl_client_free(pl_client *c);

/* Replaces the list of servers (copied; at least one). The engine uses the new list from its
 * next connection attempt on; a live connection is kept. */
int pl_client_set_servers(pl_client *c, const char *const *servers, size_t n);

/* The most recent error sentence of a call made on the application thread: the server's own
 * message when it gave one, else pl_strerror of the code. Owned by the client, valid until the
 * next call. "" when the last call succeeded. */
const char *pl_client_errmsg(pl_client *c);

/* ------------------------------------------------------------------- accounts and sessions */

/* The signed-in identity of the store. Fields are "" when logged out. */
typedef struct pl_session {
    char user[PL_ID_MAX];
    char device[PL_ID_MAX];
    char username[PL_NAME_MAX];
} pl_session;

/* POST /v1/accounts, then keeps the session (user, device, token) in the store. The store must
 * be empty or belong to nobody (PL_EEXIST otherwise). display_name may be NULL. */
int pl_account_register(pl_client *c, const char *username, const char *password,
                        const char *display_name);
/* POST /v1/sessions (log in: a new device), then keeps the session. login is a username,
 * email or phone. A store holding another user's messages answers PL_EEXIST. */
int pl_session_login(pl_client *c, const char *login, const char *password);
/* Adopts a session obtained elsewhere (a token from POST /v1/accounts or /v1/sessions). */
int pl_session_adopt(pl_client *c, const char *user, const char *device, const char *username,
                     const char *token);
/* DELETE /v1/sessions/current, stops the engine and forgets the token (messages stay). */
int pl_session_logout(pl_client *c);
/* Fills *s; returns 0, or PL_ENOSESSION when nobody is signed in. */
int pl_session_get(pl_client *c, pl_session *s);

/* -------------------------------------------------------------------------- users, devices */

typedef struct pl_user {
    char id[PL_ID_MAX];
    char username[PL_NAME_MAX];
    char display_name[PL_NAME_MAX * 4]; /* up to 64 characters of UTF-8 */
    char kind[8];                       /* "user" or "bot" */
    int64_t created_at;
} pl_user;

typedef struct pl_device {
    char id[PL_ID_MAX];
    char name[PL_NAME_MAX * 4];
    int64_t created_at;
    int64_t last_seen_at;
    bool current;
} pl_device;

/* GET /v1/me into *out. */
int pl_me_get(pl_client *c, pl_user *out);
/* GET /v1/users/{id} into *out (and remembers the user in the store's contacts). */
int pl_user_get(pl_client *c, const char *id, pl_user *out);
/* GET /v1/users?query=Q. *out (array of *n) is owned by the caller: pl_free(*out). Each user
 * found is remembered among the contacts. */
int pl_users_search(pl_client *c, const char *query, pl_user **out, size_t *n);
/* Finds a user by exact username (or takes an id "u_..." as is): the store first, then the
 * server. PL_ENOTFOUND when nobody has that name. */
int pl_user_resolve(pl_client *c, const char *name_or_id, pl_user *out);
/* Users this device has seen (senders, recipients, search results), by username; *out owned by
 * the caller: pl_free(*out). The store only, no network. */
int pl_contacts_list(pl_client *c, pl_user **out, size_t *n);
/* GET /v1/devices; *out owned by the caller: pl_free(*out). */
int pl_devices_list(pl_client *c, pl_device **out, size_t *n);
/* DELETE /v1/devices/{id}. */
int pl_device_remove(pl_client *c, const char *id);

/* Frees arrays handed out by the library. NULL is fine. */
void pl_free(void *p);

/* --------------------------------------------------------------------- the connection engine */

typedef enum pl_state {
    PL_STATE_STOPPED = 0,  /* no I/O thread (before pl_client_connect, after disconnect) */
    PL_STATE_OFFLINE,      /* waiting before the next attempt (backoff) */
    PL_STATE_CONNECTING,   /* TCP, WebSocket handshake and auth in progress */
    PL_STATE_SYNCING,      /* authenticated; catching up from the stored inbox position */
    PL_STATE_ONLINE,       /* live: messages arrive as they are sent; the outbox is flowing */
    PL_STATE_UNAUTHORIZED, /* the server refused the token: log in again (no more attempts) */
} pl_state;

const char *pl_state_name(pl_state s);

/* Starts the I/O thread, which connects (to the servers in order), authenticates with the
 * stored token, syncs and stays connected, reconnecting as needed, until pl_client_disconnect.
 * PL_ENOSESSION without a session. Calling it while running only cuts a backoff short. */
int pl_client_connect(pl_client *c);
/* Closes the connection and joins the I/O thread. Safe when not running. */
void pl_client_disconnect(pl_client *c);
/* The engine's state as last published (the same value the last PL_EV_STATE carried). */
pl_state pl_client_state(pl_client *c);
/* A push arrived for this device (payload: the push's data as JSON text, may be NULL; only its
 * presence matters today). Wakes the engine: if connected it syncs and checks the connection
 * with a ping; if waiting in backoff it tries at once; if stopped it starts. */
int pl_client_handle_push(pl_client *c, const char *payload);

/* ---------------------------------------------------------------------------------- messages */

typedef enum pl_msg_status {
    PL_MSG_FAILED = -1,   /* the server refused it for good (see the PL_EV_MSG_FAILED event) */
    PL_MSG_PENDING = 0,   /* in the outbox, not yet acknowledged by the server */
    PL_MSG_SENT = 1,      /* committed by the server (one tick) */
    PL_MSG_DELIVERED = 2, /* the peer's device holds it (receipt) */
    PL_MSG_READ = 3,      /* the peer read it (receipt) */
    PL_MSG_RECEIVED = 4,  /* a message from someone else */
} pl_msg_status;

const char *pl_msg_status_name(pl_msg_status s);

typedef struct pl_msg {
    int64_t local_id; /* this device's row id: stable, grows in storage order */
    char conv[PL_ID_MAX];
    int64_t seq; /* the server's per-conversation number; 0 while pending */
    int64_t pos; /* position in this user's inbox; 0 when not (yet) seen there */
    char from[PL_ID_MAX];
    char dev[PL_ID_MAX]; /* the sending device */
    char to[PL_ID_MAX];  /* recipient of an outgoing direct message; "" when unknown */
    char cmid[PL_CMID_MAX];
    int64_t ts;       /* server time (ms); the local creation time while pending */
    int64_t reply_to; /* seq replied to, 0 for none */
    bool outgoing;    /* sent by this user (from any of its devices) */
    pl_msg_status status;
    char kind[16]; /* "text", "media", "sticker", "system" (group changes), ... */
    char *body;    /* the body as JSON text; owned by the struct */
    char *text;    /* body.text of a text message, else NULL; owned by the struct */
} pl_msg;

/* Frees body and text and zeroes *m. */
void pl_msg_clear(pl_msg *m);
/* Clears and frees an array of n messages. NULL is fine. */
void pl_msgs_free(pl_msg *msgs, size_t n);

/* Writes a text message to user `to` (an id "u_...", or a group "g_..." of which this user is a
 * member: the server hands it to every member) into the outbox and, when connected,
 * sends it; offline it waits in the outbox and goes out, in order, after the next connect. The
 * cmid is made here once and kept, so a resend can never make a second message. *out (may be
 * NULL) gets the pending message; the caller clears it. Returns 0. The server's verdict comes
 * later as PL_EV_ACK or PL_EV_MSG_FAILED. PL_ETOOBIG over 16,384 bytes; PL_EINVAL for text that
 * is empty or not UTF-8. */
int pl_msg_send(pl_client *c, const char *to, const char *text, pl_msg *out);
/* The same for any kind, body being a JSON object as text (at most 64 KiB). */
int pl_msg_send_body(pl_client *c, const char *to, const char *kind, const char *body_json,
                     int64_t reply_to, pl_msg *out);
/* Messages of a conversation from the store, oldest first: at most `limit` of those before
 * local row `before_local_id` (0: the newest). *out owned by the caller: pl_msgs_free. */
int pl_msgs_history(pl_client *c, const char *conv, int64_t before_local_id, int limit,
                    pl_msg **out, size_t *n);
/* Messages still pending in the outbox, in sending order; *out as above. */
int pl_outbox_list(pl_client *c, pl_msg **out, size_t *n);
/* A sentence for people describing a `system` message of a group ("alice added bob", "bob
 * left", "alice renamed the group to Friends"), with names from the store. Writes "" and
 * returns PL_EINVAL for other kinds. out: cap bytes (UTF-8, cut on a character boundary). */
int pl_msg_system_text(pl_client *c, const pl_msg *m, char *out, size_t cap);

/* ----------------------------------------------------------------------------- conversations */

typedef struct pl_conv {
    char id[PL_ID_MAX];
    bool group;                  /* a group ("g_..."), else a direct conversation */
    char peer[PL_ID_MAX];        /* direct: the other user ("" if not known yet) */
    char title[PL_NAME_MAX * 4]; /* group: its name; direct: the peer's display name, else
                                    username, else the id */
    int64_t last_seq;
    int64_t last_ts;
    int64_t read_seq;       /* this user has read up to here (local marker) */
    int64_t peer_delivered; /* receipts: the peer's device holds up to here (group: every
                               other member known to this device) */
    int64_t peer_read;      /* receipts: the peer read up to here (group: as above) */
    int unread;             /* messages from others after read_seq */
    int pending;            /* messages of this conversation in the outbox */
    char preview[96];       /* the start of the last message's text (UTF-8, may be cut) */
} pl_conv;

/* Conversations from the store, most recent first; *out owned by the caller: pl_free. */
int pl_convs_list(pl_client *c, pl_conv **out, size_t *n);
/* One conversation; PL_ENOTFOUND if the store has none with that id. */
int pl_conv_get(pl_client *c, const char *conv, pl_conv *out);
/* The id of the direct conversation of this user with `peer` (out: PL_ID_MAX bytes). */
int pl_conv_direct(pl_client *c, const char *peer, char out[PL_ID_MAX]);
/* Marks the conversation read up to its last message (local unread count to 0); the engine
 * sends the read marker to the server when it is online. */
int pl_conv_mark_read(pl_client *c, const char *conv);
/* GET /v1/convs, merged into the store: new conversations appear (groups with their names),
 * unread counts follow the server where its read marker is not behind this device's, the
 * peer's delivered / read markers move forward. The engine does the same after every
 * (re)connect by itself. Returns the number of conversations the server listed. */
int pl_convs_sync(pl_client *c);

/* ------------------------------------------------------------------------------------ groups */

typedef struct pl_member {
    char user[PL_ID_MAX];
    char role[16]; /* "owner", "admin" or "member" */
    int64_t joined_at;
} pl_member;

typedef struct pl_group {
    char id[PL_ID_MAX];
    char name[PL_NAME_MAX * 4];
    int64_t last_seq;
    int64_t created_at;
    pl_member *members; /* owned by the struct: pl_group_clear */
    size_t nmembers;
} pl_group;

void pl_group_clear(pl_group *g);
/* POST /v1/groups: this user is the owner, `members` (user ids, may be NULL when n is 0) are
 * members. *out (may be NULL) gets the group; the caller clears it. The conversation is in the
 * store at once. */
int pl_group_create(pl_client *c, const char *name, const char *const *members, size_t n,
                    pl_group *out);
/* GET /v1/groups/{g} (members only). */
int pl_group_get(pl_client *c, const char *group, pl_group *out);
/* PATCH /v1/groups/{g} {name} (owner, admin). */
int pl_group_rename(pl_client *c, const char *group, const char *name);
/* POST /v1/groups/{g}/members (owner, admin); returns how many were added (0 if all were
 * members already). */
int pl_group_add(pl_client *c, const char *group, const char *const *users, size_t n);
/* DELETE /v1/groups/{g}/members/{user}: the owner removes anyone, an admin plain members. */
int pl_group_remove(pl_client *c, const char *group, const char *user);
/* Leaves the group (removes oneself). */
int pl_group_leave(pl_client *c, const char *group);
/* PATCH /v1/groups/{g}/members/{user} {role}: "admin", "member" or "owner" (owner only; making
 * someone owner makes this user admin). */
int pl_group_set_role(pl_client *c, const char *group, const char *user, const char *role);

/* ---------------------------------------------------------------------- contacts and blocks */

typedef enum pl_contact_state {
    PL_CONTACT_NONE = 0,     /* no relation (an invitation declined, a contact removed) */
    PL_CONTACT_OUTGOING = 1, /* this user invited them */
    PL_CONTACT_INCOMING = 2, /* they invited this user */
    PL_CONTACT_FRIEND = 3,
} pl_contact_state;

typedef struct pl_contact {
    pl_user user;
    pl_contact_state state;
    int64_t since;
} pl_contact;

/* GET /v1/contacts: friends and invitations both ways; *out owned by the caller: pl_free. The
 * users are remembered in the store. */
int pl_contacts_fetch(pl_client *c, pl_contact **out, size_t *n);
/* PUT /v1/contacts/{user}: invites, or accepts their invitation. Returns the new state
 * (PL_CONTACT_OUTGOING or PL_CONTACT_FRIEND) or a negative code. */
int pl_contact_invite(pl_client *c, const char *user);
int pl_contact_accept(pl_client *c, const char *user);
/* DELETE /v1/contacts/{user}: declines an invitation, cancels one's own, or removes a friend. */
int pl_contact_remove(pl_client *c, const char *user);
int pl_contact_decline(pl_client *c, const char *user);
/* PUT / DELETE /v1/blocks/{user}. Blocking also removes the contact. */
int pl_user_block(pl_client *c, const char *user);
int pl_user_unblock(pl_client *c, const char *user);
/* GET /v1/blocks: the blocked users' ids (only `id` is set); *out owned by the caller: pl_free. */
int pl_blocks_list(pl_client *c, pl_user **out, size_t *n);

/* ------------------------------------------------------------------------- typing, presence */

typedef enum pl_presence {
    PL_PRESENCE_OFFLINE = 0,
    PL_PRESENCE_ONLINE = 1,
    PL_PRESENCE_AWAY = 2,
} pl_presence;

const char *pl_presence_name(pl_presence p);
/* Tells the members of conv that this user is typing (on) or stopped. Never stored or queued:
 * dropped when not online. Applications throttle it (the server relays every frame). */
int pl_typing_send(pl_client *c, const char *conv, bool on);
/* This device's presence: PL_PRESENCE_ONLINE or PL_PRESENCE_AWAY (the app is in the
 * background). Kept by the client and sent again after every reconnect. */
int pl_presence_set(pl_client *c, pl_presence p);

/* ------------------------------------------------------------------------------------ events */

typedef enum pl_event_kind {
    PL_EV_NONE = 0,
    PL_EV_STATE = 1,         /* the connection state changed: state */
    PL_EV_MESSAGE = 2,       /* a new message was stored (any sender, after dedup): msg */
    PL_EV_ACK = 3,           /* an outbox message was committed by the server: msg (seq set) */
    PL_EV_MSG_FAILED = 4,    /* the server refused an outbox message for good: msg, error, text */
    PL_EV_SYNCED = 5,        /* a catch-up finished: count = messages it stored, pos */
    PL_EV_ERROR = 6,         /* something went wrong: error, text (the engine keeps trying) */
    PL_EV_OVERFLOW = 7,      /* events were dropped (the queue was full): re-read the store */
    PL_EV_RECEIPT = 8,       /* a peer's delivered / read marker moved: conv, user, seq, status */
    PL_EV_PRESENCE = 9,      /* a contact or fellow member: user, presence, last_seen_at */
    PL_EV_TYPING = 10,       /* a member is typing in conv (typing true) or stopped: conv, user */
    PL_EV_CONV_CHANGED = 11, /* a conversation's name, members or list entry changed: conv */
    PL_EV_CONTACT = 12,      /* an invitation came, was accepted, or a contact went: user,
                                contact (INCOMING, FRIEND or NONE) */
    PL_EV_IDENTITY_CHANGED = 13 /* a contact's identity key (AIK) changed: user; the safety
                                   number is new and a verified contact must be verified again */
} pl_event_kind;

typedef struct pl_event {
    pl_event_kind kind;
    pl_state state;
    int error;  /* a PL_E... code */
    char *text; /* a sentence for people; owned by the event, may be NULL */
    pl_msg msg; /* owned by the event */
    char conv[PL_ID_MAX];
    char user[PL_ID_MAX];
    int64_t seq;
    pl_msg_status status; /* PL_EV_RECEIPT: PL_MSG_DELIVERED or PL_MSG_READ */
    int64_t count;
    int64_t pos;
    pl_presence presence;     /* PL_EV_PRESENCE */
    int64_t last_seen_at;     /* PL_EV_PRESENCE: 0 when hidden */
    bool typing;              /* PL_EV_TYPING */
    pl_contact_state contact; /* PL_EV_CONTACT */
} pl_event;

/* A file descriptor that is readable while events are queued (level-triggered; owned by the
 * client: do not read or close it). */
int pl_client_fd(pl_client *c);
/* Takes the next event into *ev (which the caller clears with pl_event_clear before reuse).
 * 0, or PL_EAGAIN when the queue is empty. */
int pl_client_next_event(pl_client *c, pl_event *ev);
/* The same, waiting up to timeout_ms (-1: forever) for one. PL_ETIMEDOUT if none came. */
int pl_client_wait_event(pl_client *c, pl_event *ev, int timeout_ms);
const char *pl_event_kind_name(pl_event_kind k);
/* Frees what the event owns and zeroes it. */
void pl_event_clear(pl_event *ev);

/* --------------------------------------------------------------------------------- the store */

/* The last inbox position this device holds (the sync cursor). */
int64_t pl_store_pos(pl_client *c);

#ifdef __cplusplus
}
#endif

/* ------------------------------------------------------------- end-to-end encryption */

#define PL_SAFETY_NUMBER_LEN 60

/* Creates this user's identity (AIK), this device's keys (DIK, DCERT, SPK, 100 OPKs) when the
 * store has none, keeps the private keys in the store (sealed under a key in the 0600 file
 * store_path + ".key") and publishes them. pl_account_register and pl_session_login call it;
 * call it after pl_session_adopt. When the account already has an identity (made on another
 * of its devices) no new one is made: PL_ENOTLINKED, and this device cannot send or read
 * encrypted messages until it is linked (pl_link_begin / pl_link_approve / pl_link_finish). */
int pl_e2e_enable(pl_client *c);
/* Replaces this device's signed prekey now: a new X25519 pair with the next id, signed with the
 * identity key and published (PUT /v1/keys/bundle); new peers get it from then on. The replaced
 * private key stays in the store for 30 days, so messages from peers that fetched it before
 * still decrypt, and is deleted after that (with the record of the messages it accepted). The
 * client does this by itself when the current one is 7 days old (checked after each sync), so
 * calling it is only needed to replace the key early. PL_ESTATE when this device has no
 * published keys (pl_e2e_enable); a failed upload is retried at the next sync. */
int pl_e2e_rotate_spk(pl_client *c);

/* Linking a new device (E2E.md §10). On the new device, logged in: pl_link_begin makes a link
 * key pair and id, keeps them in the store and sets *code_out (malloc'd, the caller free()s it)
 * to the link code: 64 characters, base64url of link_id (16 bytes) || LK_pub (32 bytes), to show
 * as text or QR. PL_ESTATE when this device holds the identity key already. */
int pl_link_begin(pl_client *c, char **code_out);
/* On a linked device of the same account: seals this account's identity key and the pinned
 * contact keys (with their verified flags) to the link code's key and uploads them for
 * new_device (its d_... id, shown by `parley devices`) for 10 minutes. PL_EINVAL for a bad code
 * or id, PL_ENOTLINKED when this device holds no identity key, PL_ENOTFOUND when new_device is
 * not a device of this account. */
int pl_link_approve(pl_client *c, const char *code, const char *new_device);
/* On the new device, after the approval: fetches the envelope (once), checks that the identity
 * key received is the one parleyd lists for this account, stores it with the contacts' keys,
 * makes and publishes this device's keys. PL_ENOTFOUND while nothing was approved (try again),
 * PL_EREFUSED when the envelope does not decrypt or holds another key, PL_ESTATE when no link
 * was begun here. */
int pl_link_finish(pl_client *c);

/* Turns end-to-end encryption on for a group, for good (PATCH /v1/groups/{g} {"e2e": true};
 * owner and admins). Messages to it are then sent with Sender Keys. */
int pl_group_set_encrypted(pl_client *c, const char *group);
/* True when this device knows the group to be end-to-end encrypted. */
bool pl_group_encrypted(pl_client *c, const char *group);
/* True when direct messages to `user` are end-to-end encrypted (an identity key is pinned). */
bool pl_e2e_with(pl_client *c, const char *user);
/* The 60-digit safety number of this user and `user` (the pinned identity key); the same on
 * both sides. PL_ENOTFOUND when no key is pinned for `user` yet. */
int pl_safety_number_get(pl_client *c, const char *user, char out[PL_SAFETY_NUMBER_LEN + 1]);
/* Marks `user`'s pinned key as verified (or not). While a verified contact's key changes,
 * sending to it fails with PL_EUNVERIFIED until it is verified again. *verified (may be NULL
 * in pl_contact_verified) tells the state. */
int pl_contact_set_verified(pl_client *c, const char *user, bool verified);
int pl_contact_verified(pl_client *c, const char *user, bool *verified);

#endif
