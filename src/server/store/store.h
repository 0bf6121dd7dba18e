/* store.h: everything durable, behind one interface.
 *
 * A store_t is one connection to the database. It is used by one thread at a time: the pipeline
 * thread owns one (it is the only writer of messages and inboxes), and each worker thread of the
 * REST pool owns one. Back ends: store_sqlite.c (embedded default); a PostgreSQL back end comes
 * with cluster mode and must keep these semantics. Nothing above this header knows SQL.
 *
 * Return codes: ST_OK, ST_NOTFOUND, ST_CONFLICT (a unique key is taken), ST_ERR (the database
 * failed; the error is logged). Strings are NUL-terminated UTF-8 in the fixed arrays below; their
 * sizes are the protocol's limits plus one. Pointers the store returns in st_msg.body are owned by
 * the caller and freed with st_msg_clear().
 */
#ifndef PL_STORE_H
#define PL_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/util.h"

enum { ST_OK = 0, ST_NOTFOUND = 1, ST_CONFLICT = 2, ST_ERR = -1 };

typedef struct store store_t;

typedef struct st_user {
    char id[ID_MAX];
    char username[33];      /* 3..32 of [a-z0-9_.], unique case-insensitively */
    char display_name[257]; /* up to 64 code points */
    char email[255];        /* "" when not set; unique when set */
    char phone[33];         /* "" when not set; unique when set */
    char avatar[ID_MAX];    /* media id or "" */
    char kind[8];           /* "user" or "bot" */
    char settings[1025];    /* a JSON object, "{}" by default */
    int64_t created_at;
    int64_t last_seen_at; /* 0 when never seen */
} st_user;

typedef struct st_device {
    char id[ID_MAX];
    char user_id[ID_MAX];
    char name[65];
    int64_t created_at;
    int64_t last_seen_at;
    int64_t acked_pos; /* highest inbox position this device confirmed with recv */
} st_device;

typedef struct st_msg {
    char conv[ID_MAX];
    int64_t seq;
    char from[ID_MAX]; /* sender user */
    char dev[ID_MAX];  /* sender device */
    char cmid[65];
    int64_t ts;
    char kind[16];
    char *body;        /* JSON text of the body object; heap, owned by the holder */
    int64_t reply_to;  /* seq in the same conversation, 0 for none */
    int64_t edited_at; /* 0 unless edited or deleted */
} st_msg;

void st_msg_clear(st_msg *m); /* frees body */

/* Durability of commits, for connections opened after the call: false (default) survives the
 * process being killed at any moment; true also survives a power loss, at a cost in speed. */
void store_set_fsync(bool on);

/* Opens (creating if needed) the database in data_dir and runs pending migrations.
 * On failure returns ST_ERR and writes a sentence into err. */
int store_open(store_t **out, const char *data_dir, char *err, size_t errlen);
void store_close(store_t *st);
/* Makes st the one connection that writes messages (the pipeline's): the housekeeping its
 * commits would otherwise do inline (SQLite's WAL checkpoints) moves to a background thread of
 * the store, stopped by store_close. */
int store_writer_start(store_t *st);

/* Transactions. begin takes the write lock at once (BEGIN IMMEDIATE). Savepoints nest inside. */
int store_begin(store_t *st);
int store_commit(store_t *st);
int store_rollback(store_t *st);
int store_savepoint(store_t *st);   /* SAVEPOINT item */
int store_release(store_t *st);     /* RELEASE item */
int store_rollback_to(store_t *st); /* ROLLBACK TO item; RELEASE item */

/* Users. create returns ST_CONFLICT with *field set to "username", "email" or "phone". */
int store_user_create(store_t *st, const st_user *u, const char *pw_hash, const char **field);
int store_user_get(store_t *st, const char *id, st_user *out);
/* login is a username (case-insensitive), an email or a phone. pw_hash gets the stored hash. */
int store_user_find_login(store_t *st, const char *login, st_user *out, char pw_hash[256]);
/* Writes display_name, email, phone, avatar and settings of u (by u->id). ST_CONFLICT as create. */
int store_user_update(store_t *st, const st_user *u, const char **field);
/* Users whose username or display name starts with query (case-insensitive), by username;
 * at most max. Returns the count or ST_ERR. */
int store_user_search(store_t *st, const char *query, st_user *out, int max);
/* The newest inbox position of the user (0 when the inbox is empty). */
int store_user_head(store_t *st, const char *user_id, int64_t *pos);

/* Devices. */
int store_device_create(store_t *st, const st_device *d);
int store_device_get(store_t *st, const char *id, st_device *out);
int store_device_count(store_t *st, const char *user_id, int *n);
/* Oldest first; at most max; returns the count or ST_ERR. */
int store_device_list(store_t *st, const char *user_id, st_device *out, int max);
/* Removes the device and everything that belongs to it. ST_NOTFOUND if it is not the user's. */
int store_device_delete(store_t *st, const char *user_id, const char *id);
/* Moves acked_pos forward to pos (never back) and sets last_seen_at. */
int store_device_ack(store_t *st, const char *id, int64_t pos, int64_t now);

/* Messages and inboxes: written only by the pipeline thread, inside store_begin/commit. */
/* The message this device sent with this cmid, if any (body included). */
int store_msg_find_cmid(store_t *st, const char *dev, const char *cmid, st_msg *out);
/* Creates the direct conversation of a and b with both as members, if it does not exist. */
int store_conv_ensure_direct(store_t *st, const char *conv, const char *a, const char *b,
                             int64_t now);
/* Is user a current member of conv? */
int store_conv_is_member(store_t *st, const char *conv, const char *user, bool *yes);
/* Members of conv, at most max; returns the count or ST_ERR. */
int store_conv_members(store_t *st, const char *conv, char (*out)[ID_MAX], int max);
/* Takes the next seq of conv (last_seq + 1, gap-free) and stores it as the new last_seq. */
int store_conv_next_seq(store_t *st, const char *conv, int64_t *seq);
int store_msg_insert(store_t *st, const st_msg *m);
/* Appends (conv, seq) to user's inbox at the user's next position, returned in *pos. */
int store_inbox_append(store_t *st, const char *user, const char *conv, int64_t seq, int64_t *pos);
/* For the one writer that keeps the counters itself (the pipeline): an inbox entry at a position
 * it chose, and the counters written back (they only move forward). The caller must give
 * positions and seqs that follow store_user_head / last_seq without gaps. */
int store_inbox_insert(store_t *st, const char *user, int64_t pos, const char *conv, int64_t seq);
int store_user_set_head(store_t *st, const char *user, int64_t pos);
int store_conv_set_last_seq(store_t *st, const char *conv, int64_t seq);

/* Reads the user's inbox after position `after`, oldest first, at most limit entries, calling fn
 * for each with the message (fn must not keep m->body; the store frees it after the call).
 * Returns the number of entries read or ST_ERR. */
typedef void (*st_inbox_fn)(void *ctx, int64_t pos, const st_msg *m);
int store_inbox_read(store_t *st, const char *user, int64_t after, int limit, st_inbox_fn fn,
                     void *ctx);

/* ---- Conversations, groups, members and markers (schema 2) ---- */
/* The functions below that take a callback read all their rows first and call fn after, so fn
 * may call the store again (unlike store_inbox_read). Update calls return ST_NOTFOUND when no row
 * matched. */

typedef struct st_conv {
    char id[ID_MAX];
    char kind[8];        /* "direct" or "group" */
    char name[257];      /* groups: up to 64 characters */
    char avatar[ID_MAX]; /* media id or "" */
    bool e2e;
    int64_t last_seq;
    int64_t created_at;
} st_conv;

typedef struct st_member {
    char user[ID_MAX];
    char role[8]; /* "owner", "admin" or "member" (direct conversations: "member") */
    int64_t joined_at;
    int64_t joined_seq; /* the first seq this member may read */
    int64_t delivered_seq, read_seq;
    int64_t muted_until;
    char notify[10]; /* "all", "mentions" or "none" */
} st_member;

int store_conv_get(store_t *st, const char *id, st_conv *out);
/* A new group (kind "group", last_seq 0) with no members yet. ST_CONFLICT when the id is taken. */
int store_group_create(store_t *st, const st_conv *c);
/* Writes name and avatar. ST_NOTFOUND unless c->id is a group. */
int store_group_update(store_t *st, const st_conv *c);
int store_member_get(store_t *st, const char *conv, const char *user, st_member *out);
/* ST_CONFLICT when already a member; ST_NOTFOUND when conv or user does not exist; ST_ERR for a
 * role other than "owner", "admin" and "member". joined_seq is the first seq the member may
 * read. */
int store_member_add(store_t *st, const char *conv, const char *user, const char *role, int64_t now,
                     int64_t joined_seq);
int store_member_remove(store_t *st, const char *conv, const char *user);
int store_member_set_role(store_t *st, const char *conv, const char *user, const char *role);
/* By joined_at, then user; at most max; returns the count or ST_ERR. */
int store_member_list(store_t *st, const char *conv, st_member *out, int max);
int store_member_count(store_t *st, const char *conv, int *n);
/* Every member of conv in a heap array (free() it); *n gets the count. NULL on error.
 * (members.c, shared by the back ends.) */
st_member *store_member_all(store_t *st, const char *conv, int *n);
int store_member_settings(store_t *st, const char *conv, const char *user, int64_t muted_until,
                          const char *notify);
/* Markers only move forward; *moved tells whether this call moved it. A user who is not a member
 * gets ST_OK with *moved false. */
int store_marker_delivered(store_t *st, const char *conv, const char *user, int64_t seq,
                           bool *moved);
int store_marker_read(store_t *st, const char *conv, const char *user, int64_t seq, bool *moved);
/* For each conversation with entries in user's inbox at after < pos <= upto, calls fn with the
 * highest seq among them. */
typedef void (*st_conv_seq_fn)(void *ctx, const char *conv, int64_t seq);
int store_inbox_span(store_t *st, const char *user, int64_t after, int64_t upto, st_conv_seq_fn fn,
                     void *ctx);

/* One stored message (body included). */
int store_msg_get(store_t *st, const char *conv, int64_t seq, st_msg *out);
/* Replaces kind and body and sets edited_at. */
int store_msg_update(store_t *st, const char *conv, int64_t seq, const char *kind, const char *body,
                     int64_t edited_at);
/* History, newest first: min_seq <= seq < before_seq, at most limit. Returns the count or ST_ERR.
 * fn must not keep m->body. */
typedef void (*st_msg_fn)(void *ctx, const st_msg *m);
int store_msg_history(store_t *st, const char *conv, int64_t before_seq, int64_t min_seq, int limit,
                      st_msg_fn fn, void *ctx);

/* The user's conversations, the newest activity first: by the ts of `last`, or created_at when
 * there is no last message. last is the newest message with seq >= me.joined_seq; unread counts
 * only those too. Returns ST_OK or ST_ERR. */
typedef struct st_conv_row {
    st_conv conv;
    st_member me;
    char peer[ID_MAX]; /* direct: the other user ("" for notes to self) */
    int64_t unread;    /* messages of others after me.read_seq (kinds text, media, sticker, e2e,
                          game) */
    st_msg last;       /* the newest message; last.seq == 0 when none; body owned by the store */
} st_conv_row;
typedef void (*st_conv_row_fn)(void *ctx, const st_conv_row *r);
int store_conv_list(store_t *st, const char *user, st_conv_row_fn fn, void *ctx);

/* ---- Contacts and blocks ---- */
/* The state of user's side of the pair: "friend", "outgoing" (user invited other) or "incoming".
 * ST_NOTFOUND when there is none. */
int store_contact_get(store_t *st, const char *user, const char *other, char state[12]);
/* Sets user's side to state (insert or update; since changes only with the state). ST_NOTFOUND
 * when either user does not exist. */
int store_contact_set(store_t *st, const char *user, const char *other, const char *state,
                      int64_t now);
/* Removes both sides of the pair. ST_NOTFOUND when there was nothing. */
int store_contact_delete(store_t *st, const char *user, const char *other);
/* All of user's rows, by since. */
typedef void (*st_contact_fn)(void *ctx, const char *other, const char *state, int64_t since);
int store_contact_list(store_t *st, const char *user, st_contact_fn fn, void *ctx);
/* ST_OK when already blocked (since is kept); ST_NOTFOUND when either user does not exist. */
int store_block_set(store_t *st, const char *user, const char *other, int64_t now);
/* ST_NOTFOUND when user had not blocked other. */
int store_block_delete(store_t *st, const char *user, const char *other);
int store_block_check(store_t *st, const char *a, const char *b, bool *a_blocks_b,
                      bool *b_blocks_a);
/* Whom user blocked, by since. */
typedef void (*st_user_fn)(void *ctx, const char *user);
int store_block_list(store_t *st, const char *user, st_user_fn fn, void *ctx);
/* Who sees user's presence: friends and members of any conversation user is in, except user and
 * anyone who blocked user or whom user blocked; each once. */
int store_presence_audience(store_t *st, const char *user, st_user_fn fn, void *ctx);
/* Sets the user's last seen time. ST_NOTFOUND when there is no such user. */
int store_user_seen(store_t *st, const char *user, int64_t ts);

/* ---- Keys: the end-to-end encryption directory (schema 3, E2E.md §4) ---- */
/* The store keeps public keys only, as raw bytes; api/keys.c checks their layout and signatures.
 * Bundles, OPKs and claim records belong to a device and go with it (store_device_delete). */

#define ST_KEY_LEN   32  /* AIK (Ed25519), SPK and OPK (X25519) public keys */
#define ST_SIG_LEN   64  /* Ed25519 signatures */
#define ST_DCERT_MAX 235 /* 1 + (1 + 64) + (1 + 64) + 32 + 8 + 64 */

typedef struct st_bundle {
    char user[ID_MAX];
    char device[ID_MAX];
    uint8_t dcert[ST_DCERT_MAX];
    size_t dcert_len;
    int64_t dcert_created_at; /* the DCERT's created_at field */
    uint32_t spk_id;
    uint8_t spk_pub[ST_KEY_LEN];
    uint8_t spk_sig[ST_SIG_LEN];
    int64_t spk_uploaded_at; /* when this SPK (id and key) was first stored */
    int64_t published_at;    /* when this DCERT was first stored */
    int64_t opk_max_id;      /* highest OPK id ever stored for the device; -1 before the first */
} st_bundle;

typedef struct st_opk {
    uint32_t id;
    uint8_t pub[ST_KEY_LEN];
} st_opk;

/* The user's AIK. ST_NOTFOUND when the user has none. */
int store_key_identity_get(store_t *st, const char *user, uint8_t aik[ST_KEY_LEN]);
/* Stores the user's AIK. ST_CONFLICT when the user has one already (it is never replaced here),
 * ST_NOTFOUND when there is no such user. */
int store_key_identity_set(store_t *st, const char *user, const uint8_t aik[ST_KEY_LEN],
                           int64_t now);
/* Sets e2e on every direct conversation of user in which every member has an AIK and none is a
 * bot (after user published one). */
int store_key_mark_direct(store_t *st, const char *user);
/* Is the direct conversation end-to-end encrypted? It is when its e2e flag is set, or when every
 * member has an AIK and none is a bot; then the flag is set, for good. ST_NOTFOUND when conv is
 * no direct conversation. */
int store_key_direct_e2e(store_t *st, const char *conv, bool *yes);
/* Inserts the device's bundle or replaces its DCERT and SPK (OPKs and opk_max_id stay).
 * b->opk_max_id, spk_uploaded_at and published_at are ignored: the store keeps its own (now for
 * a new SPK or DCERT). *dcert_changed tells whether the DCERT is new or differs from the stored
 * one. ST_NOTFOUND when the device does not exist, or belongs to another user than b->user. */
int store_key_bundle_put(store_t *st, const st_bundle *b, int64_t now, bool *dcert_changed);
/* ST_NOTFOUND when the device has no bundle (or does not exist). */
int store_key_bundle_get(store_t *st, const char *device, st_bundle *out);
/* The bundles of the user's devices, oldest device first; at most max. Returns the count or
 * ST_ERR. */
int store_key_bundle_list(store_t *st, const char *user, st_bundle *out, int max);
/* Adds OPKs to the device's stock (an id already stored is skipped) and raises opk_max_id to the
 * highest id given. The caller checks the cap and the ids (see keys.c). */
int store_key_opks_add(store_t *st, const char *device, const st_opk *opks, int n);
int store_key_opk_count(store_t *st, const char *device, int *n);
/* Deletes the device's OPK with the lowest id and returns it: call it inside the transaction
 * whose commit precedes the answer, so an OPK is handed out once. ST_NOTFOUND when none is left. */
int store_key_opk_take(store_t *st, const char *device, st_opk *out);
/* OPKs handed out to claimer_dev for target_user's devices at times > since. */
int store_key_claims_count(store_t *st, const char *claimer_dev, const char *target_user,
                           int64_t since, int *n);
int store_key_claim_add(store_t *st, const char *claimer_dev, const char *target_user, int64_t now);
/* Forgets claim records at or before `before`. */
int store_key_claims_prune(store_t *st, int64_t before);
/* Every current member of conv with each of their devices that has a bundle: fn gets device ""
 * for a member with none. Rows in no particular order. */
typedef void (*st_key_dev_fn)(void *ctx, const char *user, const char *device);
int store_key_conv_devices(store_t *st, const char *conv, st_key_dev_fn fn, void *ctx);
/* Are a and b both members of some group? */
int store_key_share_group(store_t *st, const char *a, const char *b, bool *yes);

/* ---- Device links and the group e2e flag (schema 4, E2E.md §10) ---- */
typedef struct st_link {
    uint8_t link_id[16];
    char user[ID_MAX];   /* the user of both devices */
    char to_dev[ID_MAX]; /* the new device, the only one that may take it */
    uint8_t eph[ST_KEY_LEN];
    uint8_t nonce[24];
    uint8_t *c; /* the sealed payload, c_len bytes; malloc'd by store_key_link_take (free it) */
    size_t c_len;
    int64_t created_at;
} st_link;
/* Stores (or, for the same user, replaces) the link envelope; first deletes every envelope
 * created at or before expired_before. ST_CONFLICT when another user holds the link id;
 * ST_NOTFOUND when the user or device does not exist. */
int store_key_link_put(store_t *st, const st_link *l, int64_t expired_before);
/* Deletes the envelope of link_id addressed to (user, device) and returns it (out->c
 * malloc'd). Expired envelopes are deleted first. ST_NOTFOUND when there is none. */
int store_key_link_take(store_t *st, const uint8_t link_id[16], const char *user,
                        const char *device, int64_t expired_before, st_link *out);
/* Sets a group's e2e flag, for good. ST_NOTFOUND unless conv is a group. */
int store_group_set_e2e(store_t *st, const char *conv);

#endif
