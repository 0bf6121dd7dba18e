/* store_sqlite.c: the SQLite back end of store.h (the embedded default).
 *
 * This module owns the database file data_dir/parley.db: its schema and the migrations that build
 * it, the connection settings (WAL, synchronous=NORMAL, foreign keys, busy timeout) and every SQL
 * statement of the server. Nothing else opens the file or knows SQL.
 *
 * Thread rule: one store_t per thread. A store_t is one SQLite connection opened without its own
 * mutex (SQLITE_OPEN_NOMUTEX) and holding its own prepared statements, so two threads must never
 * use the same store_t at once; handing it from one thread to another between calls (the worker
 * pool does) is fine. Different store_t on the same file are safe together: writers
 * serialize on the database write lock, store_begin takes it at once (BEGIN IMMEDIATE), and every
 * connection waits up to BUSY_TIMEOUT_MS for it instead of failing. With WAL, readers never wait
 * for the writer.
 *
 * Statements are prepared once per connection, on first use, and reused. Text is bound with
 * SQLITE_STATIC (no copy, which matters for 64 KiB bodies): every use of a statement ends with
 * stmt_done(), which resets it and clears its bindings, so SQLite never keeps a caller's pointer
 * past the call and no statement keeps a read snapshot open between calls.
 *
 * Errors: a failure of SQLite is logged with log_error (the operation and sqlite3_errmsg) and
 * returns ST_ERR. A unique key already taken returns ST_CONFLICT; a foreign key pointing at a row
 * that does not exist (a user, a conversation, a message) returns ST_NOTFOUND, logged as a warning.
 */
#include "server/store/store.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>

#include "common/log.h"

#define BUSY_TIMEOUT_MS 10000
#ifndef PAGE_SIZE
#define PAGE_SIZE "1024"
#endif
#define DB_FILE "parley.db"
/* RETURNING appeared in SQLite 3.35.0. */
#define SQLITE_MIN_VERSION 3035000

/* ---- Schema ---------------------------------------------------------------------------------
 *
 * Migration i (counting from 1) brings the database from schema version i - 1 to i; the version
 * is kept in PRAGMA user_version, which is written in the same transaction as the steps. Steps are
 * only ever appended: a released step is never edited.
 *
 * Notes on the design:
 * - users: email and phone are NULL when not set (never ""), so their unique indexes can be
 *   partial. username compares with NOCASE everywhere (column collation), so the unique index and
 *   log-in lookups ignore case. last_pos is the newest inbox position of the user.
 * - messages: a rowid table, because bodies reach 64 KiB and WITHOUT ROWID suits small rows only.
 *   (sender_dev, cmid) is unique for resend deduplication. There is no foreign key to devices:
 *   messages outlive the device that sent them.
 * - inbox, members, devices, convs: small rows looked up by their primary key, so WITHOUT ROWID.
 *   inbox_msg serves the ON DELETE CASCADE from messages (retention).
 * - Schema 2 (groups, markers, edits, contacts, blocks): members.role is 'owner', 'admin' or
 *   'member' (checked by the store: a column added by ALTER TABLE cannot take over the old
 *   column's place, and role predates the check). contacts and blocks hold one row per side of a
 *   pair, keyed by (user_id, other_id); their other_id indexes serve the cascades from users and
 *   "who blocked me". members_user serves store_conv_list and store_presence_audience.
 * - Schema 3 (keys): key_identities holds each user's AIK; key_bundles one row per device that
 *   published a bundle (its DCERT and current SPK; opk_max_id is the highest OPK id ever stored,
 *   so a retried upload cannot bring back an OPK that was claimed meanwhile); key_opks the unused
 *   one-time prekeys. Bundles, OPKs and claims reference devices with ON DELETE CASCADE, so
 *   removing a device (or its user) drops its keys. key_claims records each OPK handed out, for
 *   the hourly limit per (claiming device, target user); rows older than an hour are pruned.
 *   target_user has no foreign key: its rows expire within the hour anyway.
 */
static const char *const migrations[] = {
    /* 1: the whole schema. */
    "CREATE TABLE users ("
    "  id           TEXT NOT NULL PRIMARY KEY,"
    "  username     TEXT NOT NULL COLLATE NOCASE,"
    "  display_name TEXT NOT NULL,"
    "  email        TEXT CHECK (email <> ''),"
    "  phone        TEXT CHECK (phone <> ''),"
    "  pw_hash      TEXT NOT NULL,"
    "  avatar       TEXT NOT NULL DEFAULT '',"
    "  kind         TEXT NOT NULL DEFAULT 'user' CHECK (kind IN ('user', 'bot')),"
    "  settings     TEXT NOT NULL DEFAULT '{}',"
    "  created_at   INTEGER NOT NULL,"
    "  last_pos     INTEGER NOT NULL DEFAULT 0"
    ");"
    "CREATE UNIQUE INDEX users_username ON users (username);"
    "CREATE UNIQUE INDEX users_email ON users (email) WHERE email IS NOT NULL;"
    "CREATE UNIQUE INDEX users_phone ON users (phone) WHERE phone IS NOT NULL;"
    "CREATE INDEX users_display_name ON users (display_name COLLATE NOCASE);"

    "CREATE TABLE devices ("
    "  id           TEXT NOT NULL PRIMARY KEY,"
    "  user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,"
    "  name         TEXT NOT NULL,"
    "  created_at   INTEGER NOT NULL,"
    "  last_seen_at INTEGER NOT NULL,"
    "  acked_pos    INTEGER NOT NULL DEFAULT 0"
    ") WITHOUT ROWID;"
    "CREATE INDEX devices_user ON devices (user_id, created_at);"

    "CREATE TABLE convs ("
    "  id         TEXT NOT NULL PRIMARY KEY,"
    "  kind       TEXT NOT NULL CHECK (kind IN ('direct', 'group')),"
    "  last_seq   INTEGER NOT NULL DEFAULT 0,"
    "  created_at INTEGER NOT NULL"
    ") WITHOUT ROWID;"

    "CREATE TABLE members ("
    "  conv_id       TEXT NOT NULL REFERENCES convs (id) ON DELETE CASCADE,"
    "  user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,"
    "  role          TEXT NOT NULL DEFAULT 'member',"
    "  joined_at     INTEGER NOT NULL,"
    "  delivered_seq INTEGER NOT NULL DEFAULT 0,"
    "  read_seq      INTEGER NOT NULL DEFAULT 0,"
    "  PRIMARY KEY (conv_id, user_id)"
    ") WITHOUT ROWID;"
    "CREATE INDEX members_user ON members (user_id);"

    "CREATE TABLE messages ("
    "  conv_id    TEXT NOT NULL REFERENCES convs (id) ON DELETE CASCADE,"
    "  seq        INTEGER NOT NULL,"
    "  sender     TEXT NOT NULL REFERENCES users (id),"
    "  sender_dev TEXT NOT NULL,"
    "  cmid       TEXT NOT NULL,"
    "  ts         INTEGER NOT NULL,"
    "  kind       TEXT NOT NULL,"
    "  body       TEXT NOT NULL,"
    "  reply_to   INTEGER," /* a seq of the same conversation; NULL for none */
    "  PRIMARY KEY (conv_id, seq),"
    "  UNIQUE (sender_dev, cmid)"
    ");"

    "CREATE TABLE inbox ("
    "  user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,"
    "  pos     INTEGER NOT NULL,"
    "  conv_id TEXT NOT NULL,"
    "  seq     INTEGER NOT NULL,"
    "  PRIMARY KEY (user_id, pos),"
    "  FOREIGN KEY (conv_id, seq) REFERENCES messages (conv_id, seq) ON DELETE CASCADE"
    ") WITHOUT ROWID;"
    "CREATE INDEX inbox_msg ON inbox (conv_id, seq);",

    /* 2: groups, member settings, edits, contacts, blocks, last seen. */
    "ALTER TABLE users ADD COLUMN last_seen_at INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE convs ADD COLUMN name TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE convs ADD COLUMN avatar TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE convs ADD COLUMN e2e INTEGER NOT NULL DEFAULT 0 CHECK (e2e IN (0, 1));"
    "ALTER TABLE members ADD COLUMN joined_seq INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE members ADD COLUMN muted_until INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE members ADD COLUMN notify TEXT NOT NULL DEFAULT 'all'"
    "  CHECK (notify IN ('all', 'mentions', 'none'));"
    "ALTER TABLE messages ADD COLUMN edited_at INTEGER NOT NULL DEFAULT 0;"

    "CREATE TABLE contacts ("
    "  user_id  TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,"
    "  other_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,"
    "  state    TEXT NOT NULL CHECK (state IN ('friend', 'outgoing', 'incoming')),"
    "  since    INTEGER NOT NULL,"
    "  PRIMARY KEY (user_id, other_id),"
    "  CHECK (user_id <> other_id)"
    ") WITHOUT ROWID;"
    "CREATE INDEX contacts_other ON contacts (other_id);"

    "CREATE TABLE blocks ("
    "  user_id  TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,"
    "  other_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,"
    "  since    INTEGER NOT NULL,"
    "  PRIMARY KEY (user_id, other_id),"
    "  CHECK (user_id <> other_id)"
    ") WITHOUT ROWID;"
    "CREATE INDEX blocks_other ON blocks (other_id);",

    /* 3: the key directory of end-to-end encryption (E2E.md §4). IF NOT EXISTS so a database
     * taken back to an older version by hand can run the step again. */
    "CREATE TABLE IF NOT EXISTS key_identities ("
    "  user_id    TEXT NOT NULL PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,"
    "  aik        BLOB NOT NULL CHECK (length(aik) = 32),"
    "  created_at INTEGER NOT NULL"
    ") WITHOUT ROWID;"

    "CREATE TABLE IF NOT EXISTS key_bundles ("
    "  device_id        TEXT NOT NULL PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,"
    "  user_id          TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,"
    "  dcert            BLOB NOT NULL,"
    "  dcert_created_at INTEGER NOT NULL,"
    "  spk_id           INTEGER NOT NULL,"
    "  spk_pub          BLOB NOT NULL CHECK (length(spk_pub) = 32),"
    "  spk_sig          BLOB NOT NULL CHECK (length(spk_sig) = 64),"
    "  spk_uploaded_at  INTEGER NOT NULL,"
    "  published_at     INTEGER NOT NULL,"
    "  opk_max_id       INTEGER NOT NULL DEFAULT -1"
    ") WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS key_bundles_user ON key_bundles (user_id);"

    "CREATE TABLE IF NOT EXISTS key_opks ("
    "  device_id TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,"
    "  id        INTEGER NOT NULL,"
    "  pub       BLOB NOT NULL CHECK (length(pub) = 32),"
    "  PRIMARY KEY (device_id, id)"
    ") WITHOUT ROWID;"

    "CREATE TABLE IF NOT EXISTS key_claims ("
    "  claimer_dev TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,"
    "  target_user TEXT NOT NULL,"
    "  at          INTEGER NOT NULL"
    ");"
    "CREATE INDEX IF NOT EXISTS key_claims_pair ON key_claims (claimer_dev, target_user, at);"
    "CREATE INDEX IF NOT EXISTS key_claims_at ON key_claims (at);",

    /* 4: device linking (E2E.md §10): one sealed envelope per link id, from an existing device
     * of the user to the new device to_dev; read once, then deleted; 10 minutes at most. */
    "CREATE TABLE IF NOT EXISTS key_links ("
    "  link_id    BLOB NOT NULL PRIMARY KEY CHECK (length(link_id) = 16),"
    "  user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,"
    "  to_dev     TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,"
    "  eph        BLOB NOT NULL CHECK (length(eph) = 32),"
    "  nonce      BLOB NOT NULL CHECK (length(nonce) = 24),"
    "  c          BLOB NOT NULL,"
    "  created_at INTEGER NOT NULL"
    ") WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS key_links_at ON key_links (created_at);",
};
#define SCHEMA_VERSION ((int)(sizeof migrations / sizeof migrations[0]))

/* ---- Statements ---------------------------------------------------------------------------- */

#define USER_COLS                                                                                  \
    "id, username, display_name, email, phone, avatar, kind, settings, created_at, last_seen_at"
#define DEV_COLS "id, user_id, name, created_at, last_seen_at, acked_pos"
/* MSG_COLS are the columns a message is inserted with; MSG_GET_COLS (read by row_msg) add
 * edited_at, which only store_msg_update writes. */
#define MSG_COLS     "conv_id, seq, sender, sender_dev, cmid, ts, kind, body, reply_to"
#define MSG_GET_COLS MSG_COLS ", edited_at"
#define CONV_COLS    "id, kind, name, avatar, e2e, last_seq, created_at"
#define MEMBER_COLS                                                                                \
    "user_id, role, joined_at, joined_seq, delivered_seq, read_seq, muted_until, notify"
#define BUNDLE_COLS                                                                                \
    "user_id, device_id, dcert, dcert_created_at, spk_id, spk_pub, spk_sig, spk_uploaded_at,"      \
    " published_at, opk_max_id"
#define BUNDLE_COLS_B                                                                              \
    "b.user_id, b.device_id, b.dcert, b.dcert_created_at, b.spk_id, b.spk_pub, b.spk_sig,"         \
    " b.spk_uploaded_at, b.published_at, b.opk_max_id"

enum stmt_id {
    S_BEGIN,
    S_COMMIT,
    S_ROLLBACK,
    S_SAVEPOINT,
    S_RELEASE,
    S_ROLLBACK_TO,
    S_USER_INSERT,
    S_USER_GET,
    S_USER_FIND_LOGIN,
    S_USER_UPDATE,
    S_USER_SEARCH,
    S_USER_HEAD,
    S_DEV_INSERT,
    S_DEV_GET,
    S_DEV_COUNT,
    S_DEV_LIST,
    S_DEV_DELETE,
    S_DEV_ACK,
    S_MSG_FIND_CMID,
    S_CONV_INSERT_DIRECT,
    S_MEMBER_INSERT,
    S_MEMBER_CHECK,
    S_MEMBERS,
    S_CONV_NEXT_SEQ,
    S_MSG_INSERT,
    S_USER_NEXT_POS,
    S_INBOX_INSERT,
    S_USER_SET_POS,
    S_CONV_SET_SEQ,
    S_INBOX_READ,
    S_CONV_GET,
    S_GROUP_INSERT,
    S_GROUP_UPDATE,
    S_MEMBER_GET,
    S_MEMBER_ADD,
    S_MEMBER_REMOVE,
    S_MEMBER_SET_ROLE,
    S_MEMBER_LIST,
    S_MEMBER_COUNT,
    S_MEMBER_SETTINGS,
    S_MARK_DELIVERED,
    S_MARK_READ,
    S_INBOX_SPAN,
    S_MSG_GET,
    S_MSG_UPDATE,
    S_MSG_HISTORY,
    S_CONV_LIST,
    S_CONTACT_GET,
    S_CONTACT_SET,
    S_CONTACT_DELETE,
    S_CONTACT_LIST,
    S_BLOCK_SET,
    S_BLOCK_DELETE,
    S_BLOCK_CHECK,
    S_BLOCK_LIST,
    S_PRESENCE_AUDIENCE,
    S_USER_SEEN,
    S_KEY_IDENTITY_GET,
    S_KEY_IDENTITY_INSERT,
    S_KEY_MARK_DIRECT,
    S_KEY_DIRECT_E2E,
    S_KEY_CONV_SET_E2E,
    S_KEY_BUNDLE_GET,
    S_KEY_BUNDLE_PUT,
    S_KEY_BUNDLE_LIST,
    S_KEY_OPK_INSERT,
    S_KEY_OPK_MAX,
    S_KEY_OPK_COUNT,
    S_KEY_OPK_TAKE,
    S_KEY_CLAIM_COUNT,
    S_KEY_CLAIM_INSERT,
    S_KEY_CLAIM_PRUNE,
    S_KEY_CONV_DEVICES,
    S_KEY_SHARE_GROUP,
    S_COUNT
};

static const char *const stmt_sql[S_COUNT] = {
    [S_BEGIN] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    [S_SAVEPOINT] = "SAVEPOINT item",
    [S_RELEASE] = "RELEASE item",
    [S_ROLLBACK_TO] = "ROLLBACK TO item",
    [S_USER_INSERT] =
        "INSERT INTO users (id, username, display_name, email, phone, pw_hash, avatar,"
        " kind, settings, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    [S_USER_GET] = "SELECT " USER_COLS " FROM users WHERE id = ?1",
    /* Username first (NOCASE from the column), then email, then phone, each by its index. */
    [S_USER_FIND_LOGIN] = "SELECT " USER_COLS ", pw_hash FROM users WHERE username = ?1"
                          " UNION ALL SELECT " USER_COLS ", pw_hash FROM users WHERE email = ?1"
                          " UNION ALL SELECT " USER_COLS ", pw_hash FROM users WHERE phone = ?1"
                          " LIMIT 1",
    [S_USER_UPDATE] = "UPDATE users SET display_name = ?2, email = ?3, phone = ?4, avatar = ?5,"
                      " settings = ?6 WHERE id = ?1",
    /* The NOCASE ranges [?1, ?2) find the prefix matches through users_username and
     * users_display_name; the escaped LIKE ?3 is the exact test. (A LIKE alone scans the table.) */
    [S_USER_SEARCH] =
        "SELECT " USER_COLS " FROM users"
        " WHERE ((username >= ?1 AND username < ?2)"
        " OR (display_name COLLATE NOCASE >= ?1 AND display_name COLLATE NOCASE < ?2))"
        " AND (username LIKE ?3 ESCAPE '\\' OR display_name LIKE ?3 ESCAPE '\\')"
        " ORDER BY username LIMIT ?4",
    [S_USER_HEAD] = "SELECT last_pos FROM users WHERE id = ?1",
    [S_DEV_INSERT] = "INSERT INTO devices (" DEV_COLS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [S_DEV_GET] = "SELECT " DEV_COLS " FROM devices WHERE id = ?1",
    [S_DEV_COUNT] = "SELECT count(*) FROM devices WHERE user_id = ?1",
    [S_DEV_LIST] = "SELECT " DEV_COLS " FROM devices WHERE user_id = ?1"
                   " ORDER BY created_at, id LIMIT ?2",
    [S_DEV_DELETE] = "DELETE FROM devices WHERE id = ?1 AND user_id = ?2",
    [S_DEV_ACK] = "UPDATE devices SET acked_pos = max(acked_pos, ?2), last_seen_at = ?3"
                  " WHERE id = ?1",
    [S_MSG_FIND_CMID] = "SELECT " MSG_GET_COLS " FROM messages WHERE sender_dev = ?1 AND cmid = ?2",
    [S_CONV_INSERT_DIRECT] = "INSERT INTO convs (id, kind, last_seq, created_at)"
                             " VALUES (?1, 'direct', 0, ?2) ON CONFLICT (id) DO NOTHING",
    [S_MEMBER_INSERT] = "INSERT INTO members (conv_id, user_id, role, joined_at)"
                        " VALUES (?1, ?2, 'member', ?3) ON CONFLICT (conv_id, user_id) DO NOTHING",
    [S_MEMBER_CHECK] = "SELECT 1 FROM members WHERE conv_id = ?1 AND user_id = ?2",
    [S_MEMBERS] = "SELECT user_id FROM members WHERE conv_id = ?1 ORDER BY user_id LIMIT ?2",
    [S_CONV_NEXT_SEQ] = "UPDATE convs SET last_seq = last_seq + 1 WHERE id = ?1 RETURNING last_seq",
    [S_MSG_INSERT] =
        "INSERT INTO messages (" MSG_COLS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    [S_USER_NEXT_POS] = "UPDATE users SET last_pos = last_pos + 1 WHERE id = ?1 RETURNING last_pos",
    [S_INBOX_INSERT] = "INSERT INTO inbox (user_id, pos, conv_id, seq) VALUES (?1, ?2, ?3, ?4)",
    [S_USER_SET_POS] = "UPDATE users SET last_pos = ?2 WHERE id = ?1 AND last_pos <= ?2",
    [S_CONV_SET_SEQ] = "UPDATE convs SET last_seq = ?2 WHERE id = ?1 AND last_seq <= ?2",
    [S_INBOX_READ] = "SELECT i.pos, m.conv_id, m.seq, m.sender, m.sender_dev, m.cmid, m.ts, m.kind,"
                     " m.body, m.reply_to, m.edited_at FROM inbox AS i JOIN messages AS m"
                     " ON m.conv_id = i.conv_id AND m.seq = i.seq"
                     " WHERE i.user_id = ?1 AND i.pos > ?2 ORDER BY i.pos LIMIT ?3",
    [S_CONV_GET] = "SELECT " CONV_COLS " FROM convs WHERE id = ?1",
    [S_GROUP_INSERT] = "INSERT INTO convs (" CONV_COLS ") VALUES (?1, 'group', ?2, ?3, ?4, 0, ?5)",
    [S_GROUP_UPDATE] = "UPDATE convs SET name = ?2, avatar = ?3 WHERE id = ?1 AND kind = 'group'",
    [S_MEMBER_GET] = "SELECT " MEMBER_COLS " FROM members WHERE conv_id = ?1 AND user_id = ?2",
    [S_MEMBER_ADD] = "INSERT INTO members (conv_id, user_id, role, joined_at, joined_seq)"
                     " VALUES (?1, ?2, ?3, ?4, ?5)",
    [S_MEMBER_REMOVE] = "DELETE FROM members WHERE conv_id = ?1 AND user_id = ?2",
    [S_MEMBER_SET_ROLE] = "UPDATE members SET role = ?3 WHERE conv_id = ?1 AND user_id = ?2",
    [S_MEMBER_LIST] = "SELECT " MEMBER_COLS " FROM members WHERE conv_id = ?1"
                      " ORDER BY joined_at, user_id LIMIT ?2",
    [S_MEMBER_COUNT] = "SELECT count(*) FROM members WHERE conv_id = ?1",
    [S_MEMBER_SETTINGS] = "UPDATE members SET muted_until = ?3, notify = ?4"
                          " WHERE conv_id = ?1 AND user_id = ?2",
    [S_MARK_DELIVERED] = "UPDATE members SET delivered_seq = ?3"
                         " WHERE conv_id = ?1 AND user_id = ?2 AND delivered_seq < ?3",
    [S_MARK_READ] = "UPDATE members SET read_seq = ?3"
                    " WHERE conv_id = ?1 AND user_id = ?2 AND read_seq < ?3",
    /* A range of the inbox primary key. */
    [S_INBOX_SPAN] = "SELECT conv_id, max(seq) FROM inbox WHERE user_id = ?1 AND pos > ?2"
                     " AND pos <= ?3 GROUP BY conv_id ORDER BY conv_id",
    [S_MSG_GET] = "SELECT " MSG_GET_COLS " FROM messages WHERE conv_id = ?1 AND seq = ?2",
    [S_MSG_UPDATE] = "UPDATE messages SET kind = ?3, body = ?4, edited_at = ?5"
                     " WHERE conv_id = ?1 AND seq = ?2",
    [S_MSG_HISTORY] = "SELECT " MSG_GET_COLS " FROM messages WHERE conv_id = ?1 AND seq < ?2"
                      " AND seq >= ?3 ORDER BY seq DESC LIMIT ?4",
    /* One row per membership of ?1 (members_user), each conversation by its primary key; the
     * peer, the unread count and the newest message the member may read come from the members
     * and messages primary keys (the count walks the unread range only). Conversations without a
     * message the member may read sort by their creation time. */
    [S_CONV_LIST] =
        "SELECT c.id, c.kind, c.name, c.avatar, c.e2e, c.last_seq, c.created_at,"
        " me.user_id, me.role, me.joined_at, me.joined_seq, me.delivered_seq, me.read_seq,"
        " me.muted_until, me.notify,"
        " CASE WHEN c.kind = 'direct' THEN (SELECT p.user_id FROM members AS p"
        "  WHERE p.conv_id = c.id AND p.user_id <> me.user_id ORDER BY p.user_id LIMIT 1) END,"
        " (SELECT count(*) FROM messages AS u WHERE u.conv_id = c.id AND u.seq > me.read_seq"
        "  AND u.seq >= me.joined_seq AND u.sender <> me.user_id"
        "  AND u.kind IN ('text', 'media', 'sticker', 'e2e', 'game')),"
        " m.conv_id, m.seq, m.sender, m.sender_dev, m.cmid, m.ts, m.kind, m.body, m.reply_to,"
        " m.edited_at"
        " FROM members AS me JOIN convs AS c ON c.id = me.conv_id"
        " LEFT JOIN messages AS m ON m.conv_id = c.id AND m.seq = (SELECT x.seq FROM messages AS x"
        "  WHERE x.conv_id = c.id AND x.seq >= me.joined_seq ORDER BY x.seq DESC LIMIT 1)"
        " WHERE me.user_id = ?1"
        " ORDER BY coalesce(m.ts, c.created_at) DESC, c.id",
    [S_CONTACT_GET] = "SELECT state FROM contacts WHERE user_id = ?1 AND other_id = ?2",
    /* since is when the side got its current state. */
    [S_CONTACT_SET] =
        "INSERT INTO contacts (user_id, other_id, state, since) VALUES (?1, ?2, ?3, ?4)"
        " ON CONFLICT (user_id, other_id) DO UPDATE SET state = excluded.state,"
        " since = CASE WHEN state = excluded.state THEN since ELSE excluded.since END",
    [S_CONTACT_DELETE] = "DELETE FROM contacts WHERE (user_id = ?1 AND other_id = ?2)"
                         " OR (user_id = ?2 AND other_id = ?1)",
    [S_CONTACT_LIST] = "SELECT other_id, state, since FROM contacts WHERE user_id = ?1"
                       " ORDER BY since, other_id",
    [S_BLOCK_SET] = "INSERT INTO blocks (user_id, other_id, since) VALUES (?1, ?2, ?3)"
                    " ON CONFLICT (user_id, other_id) DO NOTHING",
    [S_BLOCK_DELETE] = "DELETE FROM blocks WHERE user_id = ?1 AND other_id = ?2",
    [S_BLOCK_CHECK] = "SELECT EXISTS (SELECT 1 FROM blocks WHERE user_id = ?1 AND other_id = ?2),"
                      " EXISTS (SELECT 1 FROM blocks WHERE user_id = ?2 AND other_id = ?1)",
    [S_BLOCK_LIST] = "SELECT other_id FROM blocks WHERE user_id = ?1 ORDER BY since, other_id",
    /* Friends (contacts primary key) and co-members (members_user, then the members primary
     * key); UNION keeps each once; the blocks primary key tests both directions. */
    [S_PRESENCE_AUDIENCE] =
        "SELECT a.id FROM ("
        " SELECT other_id AS id FROM contacts WHERE user_id = ?1 AND state = 'friend'"
        " UNION SELECT o.user_id FROM members AS mine JOIN members AS o ON o.conv_id = mine.conv_id"
        " WHERE mine.user_id = ?1) AS a"
        " WHERE a.id <> ?1"
        " AND NOT EXISTS (SELECT 1 FROM blocks AS b WHERE b.user_id = ?1 AND b.other_id = a.id)"
        " AND NOT EXISTS (SELECT 1 FROM blocks AS b WHERE b.user_id = a.id AND b.other_id = ?1)"
        " ORDER BY a.id",
    [S_USER_SEEN] = "UPDATE users SET last_seen_at = ?2 WHERE id = ?1",
    /* ---- keys (schema 3) ---- */
    [S_KEY_IDENTITY_GET] = "SELECT aik FROM key_identities WHERE user_id = ?1",
    [S_KEY_IDENTITY_INSERT] =
        "INSERT INTO key_identities (user_id, aik, created_at) VALUES (?1, ?2, ?3)",
    /* The direct conversations of ?1 in which every member has an AIK and none is a bot. */
    [S_KEY_MARK_DIRECT] =
        "UPDATE convs SET e2e = 1 WHERE e2e = 0 AND kind = 'direct' AND id IN ("
        " SELECT me.conv_id FROM members AS me WHERE me.user_id = ?1 AND NOT EXISTS ("
        "  SELECT 1 FROM members AS p JOIN users AS u ON u.id = p.user_id"
        "  LEFT JOIN key_identities AS k ON k.user_id = p.user_id"
        "  WHERE p.conv_id = me.conv_id AND (k.user_id IS NULL OR u.kind = 'bot')))",
    [S_KEY_DIRECT_E2E] =
        "SELECT c.e2e, NOT EXISTS (SELECT 1 FROM members AS p JOIN users AS u ON u.id = p.user_id"
        "  LEFT JOIN key_identities AS k ON k.user_id = p.user_id"
        "  WHERE p.conv_id = c.id AND (k.user_id IS NULL OR u.kind = 'bot'))"
        " FROM convs AS c WHERE c.id = ?1 AND c.kind = 'direct'",
    [S_KEY_CONV_SET_E2E] = "UPDATE convs SET e2e = 1 WHERE id = ?1",
    [S_KEY_BUNDLE_GET] = "SELECT " BUNDLE_COLS " FROM key_bundles WHERE device_id = ?1",
    /* A new SPK (other id or key) gets a new spk_uploaded_at, a new DCERT a new published_at. */
    [S_KEY_BUNDLE_PUT] =
        "INSERT INTO key_bundles (device_id, user_id, dcert, dcert_created_at, spk_id, spk_pub,"
        " spk_sig, spk_uploaded_at, published_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)"
        " ON CONFLICT (device_id) DO UPDATE SET"
        " published_at = CASE WHEN dcert = excluded.dcert THEN published_at"
        "  ELSE excluded.published_at END,"
        " spk_uploaded_at = CASE WHEN spk_id = excluded.spk_id AND spk_pub = excluded.spk_pub"
        "  THEN spk_uploaded_at ELSE excluded.spk_uploaded_at END,"
        " dcert = excluded.dcert, dcert_created_at = excluded.dcert_created_at,"
        " spk_id = excluded.spk_id, spk_pub = excluded.spk_pub, spk_sig = excluded.spk_sig"
        " WHERE user_id = excluded.user_id",
    [S_KEY_BUNDLE_LIST] = "SELECT " BUNDLE_COLS_B " FROM key_bundles AS b"
                          " JOIN devices AS d ON d.id = b.device_id WHERE b.user_id = ?1"
                          " ORDER BY d.created_at, d.id LIMIT ?2",
    [S_KEY_OPK_INSERT] = "INSERT INTO key_opks (device_id, id, pub) VALUES (?1, ?2, ?3)"
                         " ON CONFLICT (device_id, id) DO NOTHING",
    [S_KEY_OPK_MAX] =
        "UPDATE key_bundles SET opk_max_id = max(opk_max_id, ?2) WHERE device_id = ?1",
    [S_KEY_OPK_COUNT] = "SELECT count(*) FROM key_opks WHERE device_id = ?1",
    [S_KEY_OPK_TAKE] =
        "DELETE FROM key_opks WHERE device_id = ?1"
        " AND id = (SELECT min(id) FROM key_opks WHERE device_id = ?1) RETURNING id, pub",
    [S_KEY_CLAIM_COUNT] = "SELECT count(*) FROM key_claims WHERE claimer_dev = ?1"
                          " AND target_user = ?2 AND at > ?3",
    [S_KEY_CLAIM_INSERT] =
        "INSERT INTO key_claims (claimer_dev, target_user, at) VALUES (?1, ?2, ?3)",
    [S_KEY_CLAIM_PRUNE] = "DELETE FROM key_claims WHERE at <= ?1",
    /* Every member, with each of their devices that has a bundle (NULL for none). */
    [S_KEY_CONV_DEVICES] = "SELECT m.user_id, b.device_id FROM members AS m"
                           " LEFT JOIN key_bundles AS b ON b.user_id = m.user_id"
                           " WHERE m.conv_id = ?1",
    [S_KEY_SHARE_GROUP] =
        "SELECT EXISTS (SELECT 1 FROM members AS a JOIN members AS o ON o.conv_id = a.conv_id"
        " JOIN convs AS c ON c.id = a.conv_id"
        " WHERE a.user_id = ?1 AND o.user_id = ?2 AND c.kind = 'group')",
};

/* The writer's checkpointer (store_writer_start): a thread with its own connection. */
typedef struct checkpointer {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
    sqlite3 *db;
    atomic_int frames; /* frames in the WAL after the writer's last commit */
} checkpointer;

struct store {
    sqlite3 *db;
    bool in_callback; /* inside the fn of store_inbox_read: the store must not be re-entered */
    sqlite3_stmt *stmts[S_COUNT];
    checkpointer *ckpt; /* the writer only */
};

/* ---- Helpers ------------------------------------------------------------------------------- */

static int bad_args(const char *op)
{
    log_error("store: %s: called with a missing argument", op);
    return ST_ERR;
}

static int db_fail(store_t *st, const char *op)
{
    log_error("store: %s failed: %s (code %d)", op, sqlite3_errmsg(st->db),
              sqlite3_extended_errcode(st->db));
    return ST_ERR;
}

static sqlite3_stmt *stmt_get(store_t *st, enum stmt_id id, const char *op)
{
    if (st->in_callback) {
        log_error("store: %s: called from inside a store_inbox_read callback on the same store",
                  op);
        return NULL;
    }
    if (!st->stmts[id]) {
        int rc = sqlite3_prepare_v3(st->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT,
                                    &st->stmts[id], NULL);
        if (rc != SQLITE_OK) {
            log_error("store: %s: preparing the statement failed: %s", op, sqlite3_errmsg(st->db));
            sqlite3_finalize(st->stmts[id]);
            st->stmts[id] = NULL;
        }
    }
    return st->stmts[id];
}

/* Ends every use of a statement: releases its snapshot or lock and forgets the bound pointers. */
static void stmt_done(sqlite3_stmt *s)
{
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
}

/* Binding collects the first error, so a run of binds is checked once. */
typedef struct binder {
    sqlite3_stmt *s;
    int rc;
} binder;

static void b_text(binder *b, int i, const char *v)
{
    if (b->rc != SQLITE_OK) return;
    if (!v)
        b->rc = sqlite3_bind_null(b->s, i);
    else
        b->rc = sqlite3_bind_text64(b->s, i, v, strlen(v), SQLITE_STATIC, SQLITE_UTF8);
}

/* A string in a fixed array of cap bytes. An array with no NUL inside is refused, not read past.
 * def replaces "" when set; with null_if_empty, "" is bound as NULL. */
static void b_arr(binder *b, int i, const char *v, size_t cap, const char *def, bool null_if_empty)
{
    if (b->rc != SQLITE_OK) return;
    size_t n = strnlen(v, cap);
    if (n == cap) {
        log_error("store: parameter %d is not a NUL-terminated string of at most %zu bytes", i,
                  cap - 1);
        b->rc = SQLITE_TOOBIG;
        return;
    }
    if (n == 0 && def)
        b_text(b, i, def);
    else if (n == 0 && null_if_empty)
        b->rc = sqlite3_bind_null(b->s, i);
    else
        b->rc = sqlite3_bind_text64(b->s, i, v, n, SQLITE_STATIC, SQLITE_UTF8);
}

static void b_i64(binder *b, int i, int64_t v)
{
    if (b->rc == SQLITE_OK) b->rc = sqlite3_bind_int64(b->s, i, v);
}

static int bind_fail(const char *op, int rc)
{
    log_error("store: %s: cannot bind a parameter: %s", op, sqlite3_errstr(rc));
    return ST_ERR;
}

/* Maps the result of a step that writes. */
static int write_result(store_t *st, int rc, const char *op)
{
    switch (rc) {
    case SQLITE_DONE:
    case SQLITE_ROW:
        return ST_OK;
    case SQLITE_CONSTRAINT_UNIQUE:
    case SQLITE_CONSTRAINT_PRIMARYKEY:
        log_debug("store: %s: %s", op, sqlite3_errmsg(st->db));
        return ST_CONFLICT;
    case SQLITE_CONSTRAINT_FOREIGNKEY:
        log_warn("store: %s: a row it refers to does not exist (%s)", op, sqlite3_errmsg(st->db));
        return ST_NOTFOUND;
    default:
        return db_fail(st, op);
    }
}

/* The users column a unique-constraint error names ("UNIQUE constraint failed: users.email"). */
static const char *conflict_field(store_t *st)
{
    const char *msg = sqlite3_errmsg(st->db);
    if (strstr(msg, "users.username")) return "username";
    if (strstr(msg, "users.email")) return "email";
    if (strstr(msg, "users.phone")) return "phone";
    return "id";
}

/* Copies a text column into a fixed array. A value that does not fit is cut at a character
 * boundary, with a warning: the arrays hold the protocol's limits, so this means bad data. */
static void col_copy(char *dst, size_t cap, sqlite3_stmt *s, int col)
{
    const unsigned char *t = sqlite3_column_text(s, col);
    size_t n = (size_t)sqlite3_column_bytes(s, col);
    if (!t) n = 0;
    if (n >= cap) {
        log_warn("store: column %s of %zu bytes cut to %zu", sqlite3_column_name(s, col), n,
                 cap - 1);
        n = cap - 1;
        while (n > 0 && (t[n] & 0xC0) == 0x80) n--;
    }
    if (n) memcpy(dst, t, n);
    dst[n] = 0;
}

static void row_user(sqlite3_stmt *s, st_user *u)
{
    memset(u, 0, sizeof *u);
    col_copy(u->id, sizeof u->id, s, 0);
    col_copy(u->username, sizeof u->username, s, 1);
    col_copy(u->display_name, sizeof u->display_name, s, 2);
    col_copy(u->email, sizeof u->email, s, 3);
    col_copy(u->phone, sizeof u->phone, s, 4);
    col_copy(u->avatar, sizeof u->avatar, s, 5);
    col_copy(u->kind, sizeof u->kind, s, 6);
    col_copy(u->settings, sizeof u->settings, s, 7);
    u->created_at = sqlite3_column_int64(s, 8);
    u->last_seen_at = sqlite3_column_int64(s, 9);
}

static void row_device(sqlite3_stmt *s, st_device *d)
{
    memset(d, 0, sizeof *d);
    col_copy(d->id, sizeof d->id, s, 0);
    col_copy(d->user_id, sizeof d->user_id, s, 1);
    col_copy(d->name, sizeof d->name, s, 2);
    d->created_at = sqlite3_column_int64(s, 3);
    d->last_seen_at = sqlite3_column_int64(s, 4);
    d->acked_pos = sqlite3_column_int64(s, 5);
}

/* The MSG_GET_COLS columns starting at column c. The body is a fresh heap copy. */
static int row_msg(sqlite3_stmt *s, int c, st_msg *m, const char *op)
{
    memset(m, 0, sizeof *m);
    col_copy(m->conv, sizeof m->conv, s, c + 0);
    m->seq = sqlite3_column_int64(s, c + 1);
    col_copy(m->from, sizeof m->from, s, c + 2);
    col_copy(m->dev, sizeof m->dev, s, c + 3);
    col_copy(m->cmid, sizeof m->cmid, s, c + 4);
    m->ts = sqlite3_column_int64(s, c + 5);
    col_copy(m->kind, sizeof m->kind, s, c + 6);
    m->reply_to = sqlite3_column_int64(s, c + 8); /* NULL reads as 0 */
    m->edited_at = sqlite3_column_int64(s, c + 9);
    const unsigned char *body = sqlite3_column_text(s, c + 7);
    size_t n = (size_t)sqlite3_column_bytes(s, c + 7);
    if (!body) { /* the column is NOT NULL, so only out of memory gets here */
        log_error("store: %s: cannot read a message body", op);
        return ST_ERR;
    }
    m->body = malloc(n + 1);
    if (!m->body) {
        log_error("store: %s: out of memory for a body of %zu bytes", op, n);
        return ST_ERR;
    }
    memcpy(m->body, body, n);
    m->body[n] = 0;
    return ST_OK;
}

/* The CONV_COLS columns starting at column c. */
static void row_conv(sqlite3_stmt *s, int c, st_conv *v)
{
    memset(v, 0, sizeof *v);
    col_copy(v->id, sizeof v->id, s, c + 0);
    col_copy(v->kind, sizeof v->kind, s, c + 1);
    col_copy(v->name, sizeof v->name, s, c + 2);
    col_copy(v->avatar, sizeof v->avatar, s, c + 3);
    v->e2e = sqlite3_column_int(s, c + 4) != 0;
    v->last_seq = sqlite3_column_int64(s, c + 5);
    v->created_at = sqlite3_column_int64(s, c + 6);
}

/* The MEMBER_COLS columns starting at column c. */
static void row_member(sqlite3_stmt *s, int c, st_member *m)
{
    memset(m, 0, sizeof *m);
    col_copy(m->user, sizeof m->user, s, c + 0);
    col_copy(m->role, sizeof m->role, s, c + 1);
    m->joined_at = sqlite3_column_int64(s, c + 2);
    m->joined_seq = sqlite3_column_int64(s, c + 3);
    m->delivered_seq = sqlite3_column_int64(s, c + 4);
    m->read_seq = sqlite3_column_int64(s, c + 5);
    m->muted_until = sqlite3_column_int64(s, c + 6);
    col_copy(m->notify, sizeof m->notify, s, c + 7);
}

void st_msg_clear(st_msg *m)
{
    if (!m) return;
    free(m->body);
    m->body = NULL;
}

/* ---- Running statements ----------------------------------------------------------------------
 *
 * Every use of a statement has the same shape: bind_start (or bind_keys) takes the statement and
 * starts a binder, the b_ calls bind the parameters, and one helper below checks the binds once,
 * steps the statement and maps the result. The step_ helpers leave the statement to the caller,
 * who reads what it needs from it and ends it with stmt_done; the run_ helpers end it themselves.
 */

/* Takes statement id and starts binding it; false (logged) when it cannot be prepared. */
static bool bind_start(store_t *st, enum stmt_id id, binder *b, const char *op)
{
    b->s = stmt_get(st, id, op);
    b->rc = SQLITE_OK;
    return b->s != NULL;
}

/* bind_start, then the text keys most statements start with: k1 as ?1 and, unless NULL, k2 as
 * ?2. (Callers have refused NULL arguments already, so a NULL k2 only means "no ?2 key".) */
static bool bind_keys(store_t *st, enum stmt_id id, const char *k1, const char *k2, binder *b,
                      const char *op)
{
    if (!bind_start(st, id, b, op)) return false;
    b_text(b, 1, k1);
    if (k2) b_text(b, 2, k2);
    return true;
}

/* Steps a statement expected to return one row, which stays readable until stmt_done. */
static int step_one(store_t *st, const binder *b, const char *op)
{
    if (b->rc != SQLITE_OK) return bind_fail(op, b->rc);
    int rc = sqlite3_step(b->s);
    if (rc == SQLITE_ROW) return ST_OK;
    return rc == SQLITE_DONE ? ST_NOTFOUND : db_fail(st, op);
}

/* Steps a statement that writes (see write_result). */
static int step_write(store_t *st, const binder *b, const char *op)
{
    if (b->rc != SQLITE_OK) return bind_fail(op, b->rc);
    return write_result(st, sqlite3_step(b->s), op);
}

/* Steps an UPDATE or DELETE: ST_NOTFOUND when it changed no row. */
static int step_change(store_t *st, const binder *b, const char *op)
{
    int r = step_write(st, b, op);
    if (r == ST_OK && sqlite3_changes(st->db) == 0) r = ST_NOTFOUND;
    return r;
}

static int run_write(store_t *st, const binder *b, const char *op)
{
    int r = step_write(st, b, op);
    stmt_done(b->s);
    return r;
}

static int run_change(store_t *st, const binder *b, const char *op)
{
    int r = step_change(st, b, op);
    stmt_done(b->s);
    return r;
}

/* Runs an UPDATE ... RETURNING of one integer: ST_NOTFOUND when no row matched. */
static int run_returning(store_t *st, const binder *b, int64_t *v, const char *op)
{
    int r = ST_OK;
    if (b->rc != SQLITE_OK) {
        r = bind_fail(op, b->rc);
    } else {
        int rc = sqlite3_step(b->s);
        if (rc == SQLITE_DONE) {
            r = ST_NOTFOUND;
        } else if (rc != SQLITE_ROW) {
            r = write_result(st, rc, op);
        } else {
            *v = sqlite3_column_int64(b->s, 0);
            /* The update completes when the statement runs to its end. */
            rc = sqlite3_step(b->s);
            if (rc != SQLITE_DONE) r = write_result(st, rc, op);
        }
    }
    stmt_done(b->s);
    return r;
}

/* Runs a statement whose one row is one integer (a count, an EXISTS). Such a statement always
 * returns a row, so none is a failure, not ST_NOTFOUND. */
static int run_int(store_t *st, const binder *b, int64_t *out, const char *op)
{
    int r = step_one(st, b, op);
    if (r == ST_OK)
        *out = sqlite3_column_int64(b->s, 0);
    else if (r == ST_NOTFOUND)
        r = db_fail(st, op);
    stmt_done(b->s);
    return r;
}

/* Runs a count(*) statement keyed by text (see bind_keys); *n is set on ST_OK only. */
static int count_by_keys(store_t *st, enum stmt_id id, const char *k1, const char *k2, int *n,
                         const char *op)
{
    binder b;
    if (!bind_keys(st, id, k1, k2, &b, op)) return ST_ERR;
    int64_t v = 0;
    int r = run_int(st, &b, &v, op);
    if (r == ST_OK) *n = (int)v;
    return r;
}

/* Reads the current row of s into out, a row of the caller's type. ST_OK, or ST_ERR (logged) for
 * a value it cannot hold. */
typedef int (*row_reader)(sqlite3_stmt *s, void *out, const char *op);

/* Runs a statement expected to return one row and reads it into out: ST_NOTFOUND when there is
 * none. */
static int run_one(store_t *st, const binder *b, row_reader read, void *out, const char *op)
{
    int r = step_one(st, b, op);
    if (r == ST_OK) r = read(b->s, out, op);
    stmt_done(b->s);
    return r;
}

/* Runs a statement of at most max rows into the array out of max rows of `size` bytes. Returns
 * the count or ST_ERR. Stopping at max keeps out safe whatever the statement's LIMIT. */
static int run_list(store_t *st, const binder *b, void *out, size_t size, int max, row_reader read,
                    const char *op)
{
    int r;
    if (b->rc != SQLITE_OK) {
        r = bind_fail(op, b->rc);
    } else {
        int count = 0, rc = SQLITE_DONE;
        r = ST_OK;
        while (count < max && (rc = sqlite3_step(b->s)) == SQLITE_ROW)
            if ((r = read(b->s, (char *)out + (size_t)count++ * size, op)) != ST_OK) break;
        if (r == ST_OK) r = count == max || rc == SQLITE_DONE ? count : db_fail(st, op);
    }
    stmt_done(b->s);
    return r;
}

/* Functions that call back read every row into a rows array and end the statement first, then
 * call fn: so fn may use the store again (callers look users up and move markers from there). */
typedef struct rows {
    char *p;
    size_t n, cap, size;
} rows;

static void *rows_add(rows *v, const char *op)
{
    if (v->n == v->cap) {
        size_t cap = v->cap ? 2 * v->cap : 16;
        char *p = realloc(v->p, cap * v->size);
        if (!p) {
            log_error("store: %s: out of memory for %zu rows", op, cap);
            return NULL;
        }
        v->p = p;
        v->cap = cap;
    }
    void *row = v->p + v->n++ * v->size;
    memset(row, 0, v->size);
    return row;
}

static void *rows_at(const rows *v, size_t i)
{
    return v->p + i * v->size;
}

/* Runs a statement and reads all its rows into v (each zeroed first), then ends it. ST_OK or
 * ST_ERR; either way the caller frees v.p, and what the rows own (a row that failed to read is
 * counted in v.n too). */
static int run_rows(store_t *st, const binder *b, rows *v, row_reader read, const char *op)
{
    int r = ST_OK;
    if (b->rc != SQLITE_OK) {
        r = bind_fail(op, b->rc);
    } else {
        int rc;
        while ((rc = sqlite3_step(b->s)) == SQLITE_ROW) {
            void *row = rows_add(v, op);
            if (!row || read(b->s, row, op) != ST_OK) break;
        }
        if (rc != SQLITE_DONE) r = rc == SQLITE_ROW ? ST_ERR : db_fail(st, op);
    }
    stmt_done(b->s);
    return r;
}

/* Row readers of the row_ functions above, for run_one, run_list and run_rows. */
static int read_user(sqlite3_stmt *s, void *out, const char *op)
{
    (void)op;
    row_user(s, out);
    return ST_OK;
}

static int read_device(sqlite3_stmt *s, void *out, const char *op)
{
    (void)op;
    row_device(s, out);
    return ST_OK;
}

static int read_conv(sqlite3_stmt *s, void *out, const char *op)
{
    (void)op;
    row_conv(s, 0, out);
    return ST_OK;
}

static int read_member(sqlite3_stmt *s, void *out, const char *op)
{
    (void)op;
    row_member(s, 0, out);
    return ST_OK;
}

static int read_msg(sqlite3_stmt *s, void *out, const char *op)
{
    return row_msg(s, 0, out, op);
}

/* A row whose column 0 is an id, into a char[ID_MAX]. */
static int read_id(sqlite3_stmt *s, void *out, const char *op)
{
    (void)op;
    col_copy(out, ID_MAX, s, 0);
    return ST_OK;
}

/* Runs a statement without parameters that returns no rows. */
static int run_simple(store_t *st, enum stmt_id id, const char *op)
{
    if (!st) return bad_args(op);
    sqlite3_stmt *s = stmt_get(st, id, op);
    if (!s) return ST_ERR;
    int rc = sqlite3_step(s);
    int r = rc == SQLITE_DONE ? ST_OK : db_fail(st, op);
    stmt_done(s);
    return r;
}

/* Operations of several statements outside a caller's transaction run in one of their own. */
static int own_begin(store_t *st, bool *own)
{
    *own = sqlite3_get_autocommit(st->db) != 0;
    return *own ? run_simple(st, S_BEGIN, "begin") : ST_OK;
}

static int own_end(store_t *st, bool own, int r)
{
    if (!own) return r;
    if (r == ST_OK || r == ST_CONFLICT) {
        if (run_simple(st, S_COMMIT, "commit") == ST_OK) return r;
        r = ST_ERR;
    }
    if (!sqlite3_get_autocommit(st->db)) run_simple(st, S_ROLLBACK, "rollback");
    return r;
}

/* ---- Open and close ------------------------------------------------------------------------ */

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    log_error("store: %s", line);
    if (err && errlen) snprintf(err, errlen, "%s", line);
}

/* mkdir -p, new folders with mode 0700. */
static int make_dirs(const char *dir, char *err, size_t errlen)
{
    char ebuf[128];
    char *p = strdup(dir);
    if (!p) {
        set_err(err, errlen, "Out of memory.");
        return -1;
    }
    int r = 0;
    for (char *c = p + 1;; c++) {
        if (*c != '/' && *c != 0) continue;
        char saved = *c;
        *c = 0;
        if (mkdir(p, 0700) != 0 && errno != EEXIST) {
            set_err(err, errlen, "Cannot create the data folder %s: %s.", p,
                    strerror_r(errno, ebuf, sizeof ebuf));
            r = -1;
            break;
        }
        *c = saved;
        if (saved == 0) break;
    }
    struct stat sb;
    if (r == 0 && (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))) {
        set_err(err, errlen, "The data folder %s is not a folder.", dir);
        r = -1;
    }
    free(p);
    return r;
}

/* Runs one statement of SQL with no parameters, reading an integer or text from its first row
 * when asked. At open, some steps (switching a new file to WAL while other connections open it
 * too) can be busy without SQLite calling the busy handler: those are retried for as long. */
static int exec1_once(store_t *st, const char *sql, int64_t *ival, char *tval, size_t tcap)
{
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(st->db, sql, -1, &s, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(s);
        if (rc == SQLITE_ROW) {
            if (ival) *ival = sqlite3_column_int64(s, 0);
            if (tval) col_copy(tval, tcap, s, 0);
            do rc = sqlite3_step(s);
            while (rc == SQLITE_ROW);
        }
        if (rc == SQLITE_DONE) rc = SQLITE_OK;
    }
    if (rc != SQLITE_OK) rc = sqlite3_extended_errcode(st->db);
    sqlite3_finalize(s);
    return rc;
}

static int exec1(store_t *st, const char *sql, int64_t *ival, char *tval, size_t tcap)
{
    int64_t until = mono_ms() + BUSY_TIMEOUT_MS;
    int rc;
    while ((rc = exec1_once(st, sql, ival, tval, tcap)) != SQLITE_OK &&
           (rc & 0xFF) == SQLITE_BUSY && mono_ms() < until)
        sqlite3_sleep(5);
    return rc;
}

/* synchronous=NORMAL in WAL mode: a commit survives the process being killed at any moment;
 * the last commits before a power loss may roll back. FULL syncs the WAL at every commit. */
static bool sync_full;

void store_set_fsync(bool on)
{
    sync_full = on;
}

static int configure(store_t *st, const char *path, char *err, size_t errlen)
{
    char mode[16] = "";
    /* For a new database only (an existing one keeps its page size). Every commit writes each
     * page it changed into the WAL whole, and a message changes a few pages in different places
     * (its conversation's, each recipient's inbox, the indexes): smaller pages write less. */
    if (exec1(st, "PRAGMA page_size=" PAGE_SIZE, NULL, NULL, 0) != SQLITE_OK ||
        exec1(st, "PRAGMA journal_mode=WAL", NULL, mode, sizeof mode) != SQLITE_OK) {
        set_err(err, errlen, "Cannot use the database %s: %s.", path, sqlite3_errmsg(st->db));
        return -1;
    }
    if (strcmp(mode, "wal") != 0)
        log_warn("store: %s stays in journal mode %s: WAL is not available there", path, mode);
    int64_t fk = 0;
    if (exec1(st, sync_full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL", NULL, NULL,
              0) != SQLITE_OK ||
        exec1(st, "PRAGMA foreign_keys=ON", NULL, NULL, 0) != SQLITE_OK ||
        /* Savepoint journals stay in memory: one item's pages, never a temporary file. */
        exec1(st, "PRAGMA temp_store=MEMORY", NULL, NULL, 0) != SQLITE_OK ||
        /* Checkpoints belong to the writer (store_writer_start: its thread and its backstop);
         * a REST commit on another connection must not copy the WAL inline. */
        exec1(st, "PRAGMA wal_autocheckpoint=0", NULL, NULL, 0) != SQLITE_OK ||
        exec1(st, "PRAGMA foreign_keys", &fk, NULL, 0) != SQLITE_OK) {
        set_err(err, errlen, "Cannot configure the database %s: %s.", path, sqlite3_errmsg(st->db));
        return -1;
    }
    if (fk != 1) {
        set_err(err, errlen, "This SQLite library does not enforce foreign keys.");
        return -1;
    }
    return 0;
}

static int migrate(store_t *st, const char *path, char *err, size_t errlen)
{
    int64_t v = 0;
    if (exec1(st, "PRAGMA user_version", &v, NULL, 0) != SQLITE_OK) {
        set_err(err, errlen, "Cannot read the schema version of %s: %s.", path,
                sqlite3_errmsg(st->db));
        return -1;
    }
    if (v == SCHEMA_VERSION) return 0;
    if (v < 0 || v > SCHEMA_VERSION) goto too_new;
    /* Another connection may be migrating too: take the write lock, then look again. */
    if (exec1(st, "BEGIN IMMEDIATE", NULL, NULL, 0) != SQLITE_OK ||
        exec1(st, "PRAGMA user_version", &v, NULL, 0) != SQLITE_OK) {
        set_err(err, errlen, "Cannot start migrating %s: %s.", path, sqlite3_errmsg(st->db));
        goto rollback;
    }
    if (v < 0 || v > SCHEMA_VERSION) {
        exec1(st, "ROLLBACK", NULL, NULL, 0);
        goto too_new;
    }
    int64_t from = v;
    for (; v < SCHEMA_VERSION; v++) {
        char *msg = NULL;
        if (sqlite3_exec(st->db, migrations[v], NULL, NULL, &msg) != SQLITE_OK) {
            set_err(err, errlen, "Migrating %s to schema version %d failed: %s.", path, (int)v + 1,
                    msg ? msg : sqlite3_errmsg(st->db));
            sqlite3_free(msg);
            goto rollback;
        }
    }
    char sql[48];
    snprintf(sql, sizeof sql, "PRAGMA user_version = %d", SCHEMA_VERSION);
    if (exec1(st, sql, NULL, NULL, 0) != SQLITE_OK ||
        exec1(st, "COMMIT", NULL, NULL, 0) != SQLITE_OK) {
        set_err(err, errlen, "Migrating %s failed: %s.", path, sqlite3_errmsg(st->db));
        goto rollback;
    }
    if (from != SCHEMA_VERSION)
        log_info("store: %s migrated from schema version %d to %d", path, (int)from,
                 SCHEMA_VERSION);
    return 0;

rollback:
    if (!sqlite3_get_autocommit(st->db)) exec1(st, "ROLLBACK", NULL, NULL, 0);
    return -1;
too_new:
    set_err(err, errlen,
            "The database %s has schema version %lld, newer than the version %d this parleyd "
            "knows; run a newer parleyd.",
            path, (long long)v, SCHEMA_VERSION);
    return -1;
}

int store_open(store_t **out, const char *data_dir, char *err, size_t errlen)
{
    if (err && errlen) err[0] = 0;
    if (!out) return bad_args("open");
    *out = NULL;
    if (!data_dir || !*data_dir) {
        set_err(err, errlen, "No data folder was given.");
        return ST_ERR;
    }
    if (sqlite3_libversion_number() < SQLITE_MIN_VERSION) {
        set_err(err, errlen, "SQLite %s is too old; Parley needs 3.35.0 or newer.",
                sqlite3_libversion());
        return ST_ERR;
    }
    if (!sqlite3_threadsafe()) {
        set_err(err, errlen, "This SQLite library was built without thread support.");
        return ST_ERR;
    }
    if (make_dirs(data_dir, err, errlen) != 0) return ST_ERR;
    char *path = NULL;
    if (asprintf(&path, "%s/%s", data_dir, DB_FILE) < 0) {
        set_err(err, errlen, "Out of memory.");
        return ST_ERR;
    }
    store_t *st = calloc(1, sizeof *st);
    if (!st) {
        free(path);
        set_err(err, errlen, "Out of memory.");
        return ST_ERR;
    }
    int rc = sqlite3_open_v2(
        path, &st->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        set_err(err, errlen, "Cannot open the database %s: %s.", path,
                st->db ? sqlite3_errmsg(st->db) : sqlite3_errstr(rc));
        goto fail;
    }
    sqlite3_extended_result_codes(st->db, 1);
    sqlite3_busy_timeout(st->db, BUSY_TIMEOUT_MS);
    /* Plans must not depend on bound values: otherwise SQLite prepares a statement again each
     * time a LIKE pattern is bound, which defeats preparing once. */
    sqlite3_db_config(st->db, SQLITE_DBCONFIG_ENABLE_QPSG, 1, (int *)NULL);
    if (configure(st, path, err, errlen) != 0 || migrate(st, path, err, errlen) != 0) goto fail;
    free(path);
    *out = st;
    return ST_OK;
fail:
    free(path);
    store_close(st);
    return ST_ERR;
}

/* ---- The writer's checkpoints ---------------------------------------------------------------- */

/* SQLite checkpoints the WAL inside the COMMIT that crosses wal_autocheckpoint pages, and the
 * writer commits far more than anyone else, so copying the WAL into the database file would land
 * on the message path. This thread copies it instead, passively (never blocking the writer or
 * readers), every CKPT_EVERY_MS once the WAL holds CKPT_START_PAGES frames: waiting for a few
 * MiB means a page that many commits rewrite is copied once, not at every pass. Under a steady
 * stream of commits the WAL only starts again from its beginning through a checkpoint on the
 * writer's connection, so the writer's WAL hook (which replaces SQLite's automatic checkpoint)
 * checkpoints past CKPT_WRITER_PAGES; it finds nearly every frame already copied and costs the
 * writer the few frames since the last pass and the syncs. */
#define CKPT_EVERY_MS     100
#define CKPT_START_PAGES  8192
#define CKPT_WRITER_PAGES 32768

/* Replaces SQLite's automatic checkpoint on the writer's connection: records the WAL's size for
 * the checkpointer and checkpoints by itself only past CKPT_WRITER_PAGES. */
static int writer_wal_hook(void *arg, sqlite3 *db, const char *name, int frames)
{
    checkpointer *k = arg;
    atomic_store_explicit(&k->frames, frames, memory_order_relaxed);
    if (frames >= CKPT_WRITER_PAGES)
        (void)sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    return SQLITE_OK;
}

static void *ckpt_run(void *arg)
{
    checkpointer *k = arg;
    pthread_mutex_lock(&k->mu);
    while (!k->stop) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += CKPT_EVERY_MS * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&k->cv, &k->mu, &until);
        if (k->stop) break;
        if (atomic_load_explicit(&k->frames, memory_order_relaxed) < CKPT_START_PAGES) continue;
        pthread_mutex_unlock(&k->mu);
        int rc = sqlite3_wal_checkpoint_v2(k->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        if (rc != SQLITE_OK && (rc & 0xFF) != SQLITE_BUSY)
            log_warn("store: checkpoint failed: %s", sqlite3_errmsg(k->db));
        pthread_mutex_lock(&k->mu);
    }
    pthread_mutex_unlock(&k->mu);
    return NULL;
}

int store_writer_start(store_t *st)
{
    if (!st || st->ckpt) return bad_args("writer start");
    checkpointer *k = calloc(1, sizeof *k);
    if (!k) return ST_ERR;
    const char *path = sqlite3_db_filename(st->db, "main");
    if (sqlite3_open_v2(path, &k->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        log_error("store: cannot open %s for checkpoints: %s", path,
                  k->db ? sqlite3_errmsg(k->db) : "out of memory");
        sqlite3_close(k->db);
        free(k);
        return ST_ERR;
    }
    sqlite3_busy_timeout(k->db, BUSY_TIMEOUT_MS);
    /* A connection checkpoints only once it has read the database and so opened the WAL; before
     * that sqlite3_wal_checkpoint_v2 does nothing and still returns SQLITE_OK. */
    if (sqlite3_exec(k->db, "SELECT count(*) FROM sqlite_schema", NULL, NULL, NULL) != SQLITE_OK) {
        log_error("store: cannot read %s for checkpoints: %s", path, sqlite3_errmsg(k->db));
        sqlite3_close(k->db);
        free(k);
        return ST_ERR;
    }
    pthread_mutex_init(&k->mu, NULL);
    pthread_cond_init(&k->cv, NULL);
    /* 8 MiB: a batch's pages stay in memory until its COMMIT instead of spilling into the WAL
     * early (a larger cache measured no faster and only grew the RSS with the database) */
    if (exec1(st, "PRAGMA cache_size=-8192", NULL, NULL, 0) != SQLITE_OK ||
        pthread_create(&k->thread, NULL, ckpt_run, k) != 0) {
        log_error("store: cannot start the checkpoint thread");
        sqlite3_close(k->db);
        pthread_mutex_destroy(&k->mu);
        pthread_cond_destroy(&k->cv);
        free(k);
        return ST_ERR;
    }
    sqlite3_wal_hook(st->db, writer_wal_hook, k);
    st->ckpt = k;
    return ST_OK;
}

static void ckpt_stop(checkpointer *k)
{
    pthread_mutex_lock(&k->mu);
    k->stop = true;
    pthread_cond_signal(&k->cv);
    pthread_mutex_unlock(&k->mu);
    pthread_join(k->thread, NULL);
    sqlite3_close(k->db);
    pthread_mutex_destroy(&k->mu);
    pthread_cond_destroy(&k->cv);
    free(k);
}

void store_close(store_t *st)
{
    if (!st) return;
    if (st->ckpt) {
        sqlite3_wal_hook(st->db, NULL, NULL);
        ckpt_stop(st->ckpt);
        /* what is left in the WAL goes into the database file now, not at the next start */
        if (sqlite3_wal_checkpoint_v2(st->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL) !=
            SQLITE_OK)
            log_warn("store: checkpoint at close failed: %s", sqlite3_errmsg(st->db));
    }
    for (int i = 0; i < S_COUNT; i++) sqlite3_finalize(st->stmts[i]);
    if (st->db && sqlite3_close(st->db) != SQLITE_OK)
        log_error("store: close failed: %s", sqlite3_errmsg(st->db));
    free(st);
}

/* ---- Transactions -------------------------------------------------------------------------- */

int store_begin(store_t *st)
{
    return run_simple(st, S_BEGIN, "begin");
}

int store_commit(store_t *st)
{
    return run_simple(st, S_COMMIT, "commit");
}

int store_rollback(store_t *st)
{
    if (!st) return bad_args("rollback");
    /* SQLite may already have rolled back by itself (a failed COMMIT, an I/O error). */
    if (sqlite3_get_autocommit(st->db)) return ST_OK;
    return run_simple(st, S_ROLLBACK, "rollback");
}

int store_savepoint(store_t *st)
{
    return run_simple(st, S_SAVEPOINT, "savepoint");
}

int store_release(store_t *st)
{
    return run_simple(st, S_RELEASE, "release");
}

int store_rollback_to(store_t *st)
{
    int r = run_simple(st, S_ROLLBACK_TO, "rollback to savepoint");
    return r == ST_OK ? run_simple(st, S_RELEASE, "release") : r;
}

/* ---- Users --------------------------------------------------------------------------------- */

int store_user_create(store_t *st, const st_user *u, const char *pw_hash, const char **field)
{
    static const char op[] = "user create";
    if (field) *field = NULL;
    if (!st || !u || !pw_hash) return bad_args(op);
    binder b;
    if (!bind_start(st, S_USER_INSERT, &b, op)) return ST_ERR;
    b_arr(&b, 1, u->id, sizeof u->id, NULL, false);
    b_arr(&b, 2, u->username, sizeof u->username, NULL, false);
    b_arr(&b, 3, u->display_name, sizeof u->display_name, NULL, false);
    b_arr(&b, 4, u->email, sizeof u->email, NULL, true);
    b_arr(&b, 5, u->phone, sizeof u->phone, NULL, true);
    b_text(&b, 6, pw_hash);
    b_arr(&b, 7, u->avatar, sizeof u->avatar, NULL, false);
    b_arr(&b, 8, u->kind, sizeof u->kind, "user", false);
    b_arr(&b, 9, u->settings, sizeof u->settings, "{}", false);
    b_i64(&b, 10, u->created_at);
    int r = step_write(st, &b, op);
    /* The field comes from the error message, so it is read before stmt_done. */
    if (r == ST_CONFLICT && field) *field = conflict_field(st);
    stmt_done(b.s);
    return r;
}

int store_user_get(store_t *st, const char *id, st_user *out)
{
    static const char op[] = "user get";
    if (!st || !id || !out) return bad_args(op);
    binder b;
    if (!bind_keys(st, S_USER_GET, id, NULL, &b, op)) return ST_ERR;
    return run_one(st, &b, read_user, out, op);
}

int store_user_find_login(store_t *st, const char *login, st_user *out, char pw_hash[256])
{
    static const char op[] = "user find by login";
    if (!st || !login || !out) return bad_args(op);
    binder b;
    if (!bind_keys(st, S_USER_FIND_LOGIN, login, NULL, &b, op)) return ST_ERR;
    int r = step_one(st, &b, op);
    if (r == ST_OK) {
        row_user(b.s, out);
        if (pw_hash) col_copy(pw_hash, 256, b.s, 10);
    }
    stmt_done(b.s);
    return r;
}

int store_user_update(store_t *st, const st_user *u, const char **field)
{
    static const char op[] = "user update";
    if (field) *field = NULL;
    if (!st || !u) return bad_args(op);
    binder b;
    if (!bind_start(st, S_USER_UPDATE, &b, op)) return ST_ERR;
    b_arr(&b, 1, u->id, sizeof u->id, NULL, false);
    b_arr(&b, 2, u->display_name, sizeof u->display_name, NULL, false);
    b_arr(&b, 3, u->email, sizeof u->email, NULL, true);
    b_arr(&b, 4, u->phone, sizeof u->phone, NULL, true);
    b_arr(&b, 5, u->avatar, sizeof u->avatar, NULL, false);
    b_arr(&b, 6, u->settings, sizeof u->settings, "{}", false);
    int r = step_change(st, &b, op);
    if (r == ST_CONFLICT && field) *field = conflict_field(st); /* before stmt_done, as in create */
    stmt_done(b.s);
    return r;
}

/* The upper end of the NOCASE range of strings that start with q: q folded to lower case with its
 * last byte raised by one. Returns false when there is no upper end (q empty or all 0xFF). */
static bool prefix_upper(const char *q, size_t n, char *hi)
{
    for (size_t i = 0; i < n; i++) hi[i] = q[i] >= 'A' && q[i] <= 'Z' ? (char)(q[i] + 32) : q[i];
    while (n > 0 && (unsigned char)hi[n - 1] == 0xFF) n--;
    if (n == 0) return false;
    hi[n - 1] = (char)((unsigned char)hi[n - 1] + 1);
    /* '@' + 1 is 'A', which NOCASE reads as 'a'; '[' is the next byte a folded string can have. */
    if (hi[n - 1] == 'A') hi[n - 1] = '[';
    hi[n] = 0;
    return true;
}

int store_user_search(store_t *st, const char *query, st_user *out, int max)
{
    static const char op[] = "user search";
    if (!st || !query || (!out && max > 0)) return bad_args(op);
    if (max <= 0) return 0;
    /* pat: the query with % _ and \ escaped by \, then %. hi: see prefix_upper. */
    size_t qn = strlen(query);
    char *pat = malloc(3 * qn + 3);
    if (!pat) {
        log_error("store: %s: out of memory", op);
        return ST_ERR;
    }
    char *hi = pat + 2 * qn + 2;
    size_t n = 0;
    for (size_t i = 0; i < qn; i++) {
        if (query[i] == '%' || query[i] == '_' || query[i] == '\\') pat[n++] = '\\';
        pat[n++] = query[i];
    }
    pat[n++] = '%';
    pat[n] = 0;
    bool bounded = prefix_upper(query, qn, hi);
    int r = ST_ERR;
    binder b;
    if (bind_keys(st, S_USER_SEARCH, query, NULL, &b, op)) {
        /* Without an upper end, an empty blob: every text sorts before any blob. */
        if (bounded)
            b_text(&b, 2, hi);
        else if (b.rc == SQLITE_OK)
            b.rc = sqlite3_bind_zeroblob(b.s, 2, 0);
        b_text(&b, 3, pat);
        b_i64(&b, 4, max);
        r = run_list(st, &b, out, sizeof *out, max, read_user, op);
    }
    free(pat);
    return r;
}

int store_user_head(store_t *st, const char *user_id, int64_t *pos)
{
    static const char op[] = "user head";
    if (!st || !user_id || !pos) return bad_args(op);
    binder b;
    if (!bind_keys(st, S_USER_HEAD, user_id, NULL, &b, op)) return ST_ERR;
    int r = step_one(st, &b, op);
    if (r == ST_OK) *pos = sqlite3_column_int64(b.s, 0);
    stmt_done(b.s);
    return r;
}

/* ---- Devices ------------------------------------------------------------------------------- */

int store_device_create(store_t *st, const st_device *d)
{
    static const char op[] = "device create";
    if (!st || !d) return bad_args(op);
    binder b;
    if (!bind_start(st, S_DEV_INSERT, &b, op)) return ST_ERR;
    b_arr(&b, 1, d->id, sizeof d->id, NULL, false);
    b_arr(&b, 2, d->user_id, sizeof d->user_id, NULL, false);
    b_arr(&b, 3, d->name, sizeof d->name, NULL, false);
    b_i64(&b, 4, d->created_at);
    b_i64(&b, 5, d->last_seen_at);
    b_i64(&b, 6, d->acked_pos);
    return run_write(st, &b, op);
}

int store_device_get(store_t *st, const char *id, st_device *out)
{
    static const char op[] = "device get";
    if (!st || !id || !out) return bad_args(op);
    binder b;
    if (!bind_keys(st, S_DEV_GET, id, NULL, &b, op)) return ST_ERR;
    return run_one(st, &b, read_device, out, op);
}

int store_device_count(store_t *st, const char *user_id, int *n)
{
    static const char op[] = "device count";
    if (!st || !user_id || !n) return bad_args(op);
    return count_by_keys(st, S_DEV_COUNT, user_id, NULL, n, op);
}

int store_device_list(store_t *st, const char *user_id, st_device *out, int max)
{
    static const char op[] = "device list";
    if (!st || !user_id || (!out && max > 0)) return bad_args(op);
    if (max <= 0) return 0;
    binder b;
    if (!bind_keys(st, S_DEV_LIST, user_id, NULL, &b, op)) return ST_ERR;
    b_i64(&b, 2, max);
    return run_list(st, &b, out, sizeof *out, max, read_device, op);
}

int store_device_delete(store_t *st, const char *user_id, const char *id)
{
    static const char op[] = "device delete";
    if (!st || !user_id || !id) return bad_args(op);
    binder b;
    if (!bind_keys(st, S_DEV_DELETE, id, user_id, &b, op)) return ST_ERR;
    return run_change(st, &b, op);
}

int store_device_ack(store_t *st, const char *id, int64_t pos, int64_t now)
{
    static const char op[] = "device ack";
    if (!st || !id) return bad_args(op);
    binder b;
    if (!bind_keys(st, S_DEV_ACK, id, NULL, &b, op)) return ST_ERR;
    b_i64(&b, 2, pos);
    b_i64(&b, 3, now);
    return run_change(st, &b, op);
}

/* ---- Conversations, messages and inboxes --------------------------------------------------- */

int store_msg_find_cmid(store_t *st, const char *dev, const char *cmid, st_msg *out)
{
    static const char op[] = "message find by cmid";
    if (!st || !dev || !cmid || !out) return bad_args(op);
    binder b;
    if (!bind_keys(st, S_MSG_FIND_CMID, dev, cmid, &b, op)) return ST_ERR;
    return run_one(st, &b, read_msg, out, op);
}

static int member_insert(store_t *st, const char *conv, const char *user, int64_t now)
{
    static const char op[] = "member insert";
    binder b;
    if (!bind_keys(st, S_MEMBER_INSERT, conv, user, &b, op)) return ST_ERR;
    b_i64(&b, 3, now);
    return run_write(st, &b, op);
}

int store_conv_ensure_direct(store_t *st, const char *conv, const char *a, const char *b_user,
                             int64_t now)
{
    static const char op[] = "direct conversation ensure";
    if (!st || !conv || !a || !b_user) return bad_args(op);
    bool own;
    int r = own_begin(st, &own);
    if (r != ST_OK) return r;
    binder b;
    if (!bind_keys(st, S_CONV_INSERT_DIRECT, conv, NULL, &b, op)) return own_end(st, own, ST_ERR);
    b_i64(&b, 2, now);
    r = run_write(st, &b, op);
    if (r == ST_OK) r = member_insert(st, conv, a, now);
    if (r == ST_OK) r = member_insert(st, conv, b_user, now);
    return own_end(st, own, r);
}

int store_conv_is_member(store_t *st, const char *conv, const char *user, bool *yes)
{
    static const char op[] = "member check";
    if (!st || !conv || !user || !yes) return bad_args(op);
    binder b;
    if (!bind_keys(st, S_MEMBER_CHECK, conv, user, &b, op)) return ST_ERR;
    int r;
    if (b.rc != SQLITE_OK) {
        r = bind_fail(op, b.rc);
    } else {
        int rc = sqlite3_step(b.s);
        *yes = rc == SQLITE_ROW;
        r = rc == SQLITE_ROW || rc == SQLITE_DONE ? ST_OK : db_fail(st, op);
    }
    stmt_done(b.s);
    return r;
}

int store_conv_members(store_t *st, const char *conv, char (*out)[ID_MAX], int max)
{
    static const char op[] = "conversation members";
    if (!st || !conv || (!out && max > 0)) return bad_args(op);
    if (max <= 0) return 0;
    binder b;
    if (!bind_keys(st, S_MEMBERS, conv, NULL, &b, op)) return ST_ERR;
    b_i64(&b, 2, max);
    return run_list(st, &b, out, sizeof *out, max, read_id, op);
}

int store_conv_next_seq(store_t *st, const char *conv, int64_t *seq)
{
    static const char op[] = "conversation next seq";
    if (!st || !conv || !seq) return bad_args(op);
    binder b;
    if (!bind_keys(st, S_CONV_NEXT_SEQ, conv, NULL, &b, op)) return ST_ERR;
    return run_returning(st, &b, seq, op);
}

int store_msg_insert(store_t *st, const st_msg *m)
{
    static const char op[] = "message insert";
    if (!st || !m || !m->body) return bad_args(op);
    binder b;
    if (!bind_start(st, S_MSG_INSERT, &b, op)) return ST_ERR;
    b_arr(&b, 1, m->conv, sizeof m->conv, NULL, false);
    b_i64(&b, 2, m->seq);
    b_arr(&b, 3, m->from, sizeof m->from, NULL, false);
    b_arr(&b, 4, m->dev, sizeof m->dev, NULL, false);
    b_arr(&b, 5, m->cmid, sizeof m->cmid, NULL, false);
    b_i64(&b, 6, m->ts);
    b_arr(&b, 7, m->kind, sizeof m->kind, NULL, false);
    b_text(&b, 8, m->body);
    if (m->reply_to) b_i64(&b, 9, m->reply_to); /* else stays NULL */
    return run_write(st, &b, op);
}

int store_inbox_insert(store_t *st, const char *user, int64_t pos, const char *conv, int64_t seq)
{
    static const char op[] = "inbox insert";
    if (!st || !user || !conv || pos < 1) return bad_args(op);
    binder b;
    if (!bind_keys(st, S_INBOX_INSERT, user, NULL, &b, op)) return ST_ERR;
    b_i64(&b, 2, pos);
    b_text(&b, 3, conv);
    b_i64(&b, 4, seq);
    int r = run_write(st, &b, op);
    if (r == ST_CONFLICT) {
        log_error("store: %s: position %lld of %s is already taken", op, (long long)pos, user);
        r = ST_ERR;
    }
    return r;
}

static int set_counter(store_t *st, int which, const char *id, int64_t v, const char *op)
{
    if (!st || !id || v < 0) return bad_args(op);
    binder b;
    if (!bind_keys(st, which, id, NULL, &b, op)) return ST_ERR;
    b_i64(&b, 2, v);
    return run_write(st, &b, op);
}

int store_user_set_head(store_t *st, const char *user, int64_t pos)
{
    return set_counter(st, S_USER_SET_POS, user, pos, "user set head");
}

int store_conv_set_last_seq(store_t *st, const char *conv, int64_t seq)
{
    return set_counter(st, S_CONV_SET_SEQ, conv, seq, "conversation set last seq");
}

int store_inbox_append(store_t *st, const char *user, const char *conv, int64_t seq, int64_t *pos)
{
    static const char op[] = "inbox append";
    if (!st || !user || !conv || !pos) return bad_args(op);
    bool own;
    int r = own_begin(st, &own);
    if (r != ST_OK) return r;
    int64_t p = 0;
    binder b;
    if (!bind_keys(st, S_USER_NEXT_POS, user, NULL, &b, op)) return own_end(st, own, ST_ERR);
    r = run_returning(st, &b, &p, op);
    if (r == ST_OK) {
        if (!bind_keys(st, S_INBOX_INSERT, user, NULL, &b, op)) return own_end(st, own, ST_ERR);
        b_i64(&b, 2, p);
        b_text(&b, 3, conv);
        b_i64(&b, 4, seq);
        r = run_write(st, &b, op);
        /* The position comes from users.last_pos, so a taken one means a corrupt inbox. */
        if (r == ST_CONFLICT) {
            log_error("store: %s: position %lld of %s is already taken", op, (long long)p, user);
            r = ST_ERR;
        }
    }
    r = own_end(st, own, r);
    if (r == ST_OK) *pos = p;
    return r;
}

int store_inbox_read(store_t *st, const char *user, int64_t after, int limit, st_inbox_fn fn,
                     void *ctx)
{
    static const char op[] = "inbox read";
    if (!st || !user || !fn) return bad_args(op);
    if (limit <= 0) return 0;
    binder b;
    if (!bind_keys(st, S_INBOX_READ, user, NULL, &b, op)) return ST_ERR;
    b_i64(&b, 2, after);
    b_i64(&b, 3, limit);
    /* Unlike run_rows, this calls fn while the statement runs, so fn must not use the store. */
    sqlite3_stmt *s = b.s;
    int r;
    if (b.rc != SQLITE_OK) {
        r = bind_fail(op, b.rc);
    } else {
        int count = 0, rc = SQLITE_DONE;
        r = ST_OK;
        while (count < limit && (rc = sqlite3_step(s)) == SQLITE_ROW) {
            st_msg m;
            if (row_msg(s, 1, &m, op) != ST_OK) {
                st_msg_clear(&m);
                r = ST_ERR;
                break;
            }
            st->in_callback = true;
            fn(ctx, sqlite3_column_int64(s, 0), &m);
            st->in_callback = false;
            st_msg_clear(&m);
            count++;
        }
        if (r == ST_OK) r = count == limit || rc == SQLITE_DONE ? count : db_fail(st, op);
    }
    stmt_done(s);
    return r;
}

/* ---- Groups, members and markers (schema 2) ------------------------------------------------ */

static bool role_ok(const char *role, const char *op)
{
    if (strcmp(role, "owner") == 0 || strcmp(role, "admin") == 0 || strcmp(role, "member") == 0)
        return true;
    log_error("store: %s: the role \"%s\" is none of owner, admin and member", op, role);
    return false;
}

int store_conv_get(store_t *st, const char *id, st_conv *out)
{
    static const char op[] = "conversation get";
    if (!st || !id || !out) return bad_args(op);
    binder b;
    if (!bind_keys(st, S_CONV_GET, id, NULL, &b, op)) return ST_ERR;
    return run_one(st, &b, read_conv, out, op);
}

int store_group_create(store_t *st, const st_conv *c)
{
    static const char op[] = "group create";
    if (!st || !c) return bad_args(op);
    binder b;
    if (!bind_start(st, S_GROUP_INSERT, &b, op)) return ST_ERR;
    b_arr(&b, 1, c->id, sizeof c->id, NULL, false);
    b_arr(&b, 2, c->name, sizeof c->name, NULL, false);
    b_arr(&b, 3, c->avatar, sizeof c->avatar, NULL, false);
    b_i64(&b, 4, c->e2e ? 1 : 0);
    b_i64(&b, 5, c->created_at);
    return run_write(st, &b, op);
}

int store_group_update(store_t *st, const st_conv *c)
{
    static const char op[] = "group update";
    if (!st || !c) return bad_args(op);
    binder b;
    if (!bind_start(st, S_GROUP_UPDATE, &b, op)) return ST_ERR;
    b_arr(&b, 1, c->id, sizeof c->id, NULL, false);
    b_arr(&b, 2, c->name, sizeof c->name, NULL, false);
    b_arr(&b, 3, c->avatar, sizeof c->avatar, NULL, false);
    return run_change(st, &b, op);
}

int store_member_get(store_t *st, const char *conv, const char *user, st_member *out)
{
    static const char op[] = "member get";
    if (!st || !conv || !user || !out) return bad_args(op);
    binder b;
    if (!bind_keys(st, S_MEMBER_GET, conv, user, &b, op)) return ST_ERR;
    return run_one(st, &b, read_member, out, op);
}

int store_member_add(store_t *st, const char *conv, const char *user, const char *role, int64_t now,
                     int64_t joined_seq)
{
    static const char op[] = "member add";
    if (!st || !conv || !user || !role) return bad_args(op);
    if (!role_ok(role, op)) return ST_ERR;
    binder b;
    if (!bind_keys(st, S_MEMBER_ADD, conv, user, &b, op)) return ST_ERR;
    b_text(&b, 3, role);
    b_i64(&b, 4, now);
    b_i64(&b, 5, joined_seq);
    return run_write(st, &b, op);
}

int store_member_remove(store_t *st, const char *conv, const char *user)
{
    static const char op[] = "member remove";
    if (!st || !conv || !user) return bad_args(op);
    binder b;
    if (!bind_keys(st, S_MEMBER_REMOVE, conv, user, &b, op)) return ST_ERR;
    return run_change(st, &b, op);
}

int store_member_set_role(store_t *st, const char *conv, const char *user, const char *role)
{
    static const char op[] = "member set role";
    if (!st || !conv || !user || !role) return bad_args(op);
    if (!role_ok(role, op)) return ST_ERR;
    binder b;
    if (!bind_keys(st, S_MEMBER_SET_ROLE, conv, user, &b, op)) return ST_ERR;
    b_text(&b, 3, role);
    return run_change(st, &b, op);
}

int store_member_list(store_t *st, const char *conv, st_member *out, int max)
{
    static const char op[] = "member list";
    if (!st || !conv || (!out && max > 0)) return bad_args(op);
    if (max <= 0) return 0;
    binder b;
    if (!bind_keys(st, S_MEMBER_LIST, conv, NULL, &b, op)) return ST_ERR;
    b_i64(&b, 2, max);
    return run_list(st, &b, out, sizeof *out, max, read_member, op);
}

int store_member_count(store_t *st, const char *conv, int *n)
{
    static const char op[] = "member count";
    if (!st || !conv || !n) return bad_args(op);
    return count_by_keys(st, S_MEMBER_COUNT, conv, NULL, n, op);
}

int store_member_settings(store_t *st, const char *conv, const char *user, int64_t muted_until,
                          const char *notify)
{
    static const char op[] = "member settings";
    if (!st || !conv || !user || !notify) return bad_args(op);
    binder b;
    if (!bind_keys(st, S_MEMBER_SETTINGS, conv, user, &b, op)) return ST_ERR;
    b_i64(&b, 3, muted_until);
    b_text(&b, 4, notify);
    return run_change(st, &b, op);
}

/* Moves a marker forward. Not moving (the marker is there already, or user is not a member) is
 * ST_OK with *moved false. */
static int marker_move(store_t *st, enum stmt_id id, const char *conv, const char *user,
                       int64_t seq, bool *moved, const char *op)
{
    if (!st || !conv || !user || !moved) return bad_args(op);
    *moved = false;
    binder b;
    if (!bind_keys(st, id, conv, user, &b, op)) return ST_ERR;
    b_i64(&b, 3, seq);
    int r = step_write(st, &b, op);
    if (r == ST_OK) *moved = sqlite3_changes(st->db) > 0;
    stmt_done(b.s);
    return r;
}

int store_marker_delivered(store_t *st, const char *conv, const char *user, int64_t seq,
                           bool *moved)
{
    return marker_move(st, S_MARK_DELIVERED, conv, user, seq, moved, "delivered marker");
}

int store_marker_read(store_t *st, const char *conv, const char *user, int64_t seq, bool *moved)
{
    return marker_move(st, S_MARK_READ, conv, user, seq, moved, "read marker");
}

typedef struct conv_seq {
    char conv[ID_MAX];
    int64_t seq;
} conv_seq;

static int read_conv_seq(sqlite3_stmt *s, void *out, const char *op)
{
    conv_seq *cs = out;
    (void)op;
    col_copy(cs->conv, sizeof cs->conv, s, 0);
    cs->seq = sqlite3_column_int64(s, 1);
    return ST_OK;
}

int store_inbox_span(store_t *st, const char *user, int64_t after, int64_t upto, st_conv_seq_fn fn,
                     void *ctx)
{
    static const char op[] = "inbox span";
    if (!st || !user || !fn) return bad_args(op);
    binder b;
    if (!bind_keys(st, S_INBOX_SPAN, user, NULL, &b, op)) return ST_ERR;
    b_i64(&b, 2, after);
    b_i64(&b, 3, upto);
    rows v = {.size = sizeof(conv_seq)};
    int r = run_rows(st, &b, &v, read_conv_seq, op);
    for (size_t i = 0; r == ST_OK && i < v.n; i++) {
        const conv_seq *cs = rows_at(&v, i);
        fn(ctx, cs->conv, cs->seq);
    }
    free(v.p);
    return r;
}

int store_msg_get(store_t *st, const char *conv, int64_t seq, st_msg *out)
{
    static const char op[] = "message get";
    if (!st || !conv || !out) return bad_args(op);
    binder b;
    if (!bind_keys(st, S_MSG_GET, conv, NULL, &b, op)) return ST_ERR;
    b_i64(&b, 2, seq);
    int r = step_one(st, &b, op);
    if (r == ST_OK && row_msg(b.s, 0, out, op) != ST_OK) {
        st_msg_clear(out);
        r = ST_ERR;
    }
    stmt_done(b.s);
    return r;
}

int store_msg_update(store_t *st, const char *conv, int64_t seq, const char *kind, const char *body,
                     int64_t edited_at)
{
    static const char op[] = "message update";
    if (!st || !conv || !kind || !body) return bad_args(op);
    binder b;
    if (!bind_keys(st, S_MSG_UPDATE, conv, NULL, &b, op)) return ST_ERR;
    b_i64(&b, 2, seq);
    b_text(&b, 3, kind);
    b_text(&b, 4, body);
    b_i64(&b, 5, edited_at);
    return run_change(st, &b, op);
}

int store_msg_history(store_t *st, const char *conv, int64_t before_seq, int64_t min_seq, int limit,
                      st_msg_fn fn, void *ctx)
{
    static const char op[] = "message history";
    if (!st || !conv || !fn) return bad_args(op);
    if (limit <= 0) return 0;
    binder b;
    if (!bind_keys(st, S_MSG_HISTORY, conv, NULL, &b, op)) return ST_ERR;
    b_i64(&b, 2, before_seq);
    b_i64(&b, 3, min_seq);
    b_i64(&b, 4, limit);
    rows v = {.size = sizeof(st_msg)};
    int r = run_rows(st, &b, &v, read_msg, op);
    for (size_t i = 0; r == ST_OK && i < v.n; i++) fn(ctx, rows_at(&v, i));
    for (size_t i = 0; i < v.n; i++) st_msg_clear(rows_at(&v, i));
    free(v.p);
    return r == ST_OK ? (int)v.n : r;
}

/* A row of S_CONV_LIST. */
static int read_conv_row(sqlite3_stmt *s, void *out, const char *op)
{
    st_conv_row *row = out;
    row_conv(s, 0, &row->conv);
    row_member(s, 7, &row->me);
    col_copy(row->peer, sizeof row->peer, s, 15); /* NULL (groups, alone) reads as "" */
    row->unread = sqlite3_column_int64(s, 16);
    if (sqlite3_column_type(s, 18) != SQLITE_NULL) return row_msg(s, 17, &row->last, op);
    return ST_OK;
}

int store_conv_list(store_t *st, const char *user, st_conv_row_fn fn, void *ctx)
{
    static const char op[] = "conversation list";
    if (!st || !user || !fn) return bad_args(op);
    binder b;
    if (!bind_keys(st, S_CONV_LIST, user, NULL, &b, op)) return ST_ERR;
    rows v = {.size = sizeof(st_conv_row)};
    int r = run_rows(st, &b, &v, read_conv_row, op);
    for (size_t i = 0; r == ST_OK && i < v.n; i++) fn(ctx, rows_at(&v, i));
    for (size_t i = 0; i < v.n; i++) st_msg_clear(&((st_conv_row *)rows_at(&v, i))->last);
    free(v.p);
    return r;
}

/* ---- Contacts and blocks ------------------------------------------------------------------- */

int store_contact_get(store_t *st, const char *user, const char *other, char state[12])
{
    static const char op[] = "contact get";
    if (!st || !user || !other || !state) return bad_args(op);
    binder b;
    if (!bind_keys(st, S_CONTACT_GET, user, other, &b, op)) return ST_ERR;
    int r = step_one(st, &b, op);
    if (r == ST_OK) col_copy(state, 12, b.s, 0);
    stmt_done(b.s);
    return r;
}

int store_contact_set(store_t *st, const char *user, const char *other, const char *state,
                      int64_t now)
{
    static const char op[] = "contact set";
    if (!st || !user || !other || !state) return bad_args(op);
    binder b;
    if (!bind_keys(st, S_CONTACT_SET, user, other, &b, op)) return ST_ERR;
    b_text(&b, 3, state);
    b_i64(&b, 4, now);
    return run_write(st, &b, op);
}

int store_contact_delete(store_t *st, const char *user, const char *other)
{
    static const char op[] = "contact delete";
    if (!st || !user || !other) return bad_args(op);
    binder b;
    if (!bind_keys(st, S_CONTACT_DELETE, user, other, &b, op)) return ST_ERR;
    return run_change(st, &b, op);
}

typedef struct contact_row {
    char other[ID_MAX];
    char state[12];
    int64_t since;
} contact_row;

static int read_contact(sqlite3_stmt *s, void *out, const char *op)
{
    contact_row *c = out;
    (void)op;
    col_copy(c->other, sizeof c->other, s, 0);
    col_copy(c->state, sizeof c->state, s, 1);
    c->since = sqlite3_column_int64(s, 2);
    return ST_OK;
}

int store_contact_list(store_t *st, const char *user, st_contact_fn fn, void *ctx)
{
    static const char op[] = "contact list";
    if (!st || !user || !fn) return bad_args(op);
    binder b;
    if (!bind_keys(st, S_CONTACT_LIST, user, NULL, &b, op)) return ST_ERR;
    rows v = {.size = sizeof(contact_row)};
    int r = run_rows(st, &b, &v, read_contact, op);
    for (size_t i = 0; r == ST_OK && i < v.n; i++) {
        const contact_row *c = rows_at(&v, i);
        fn(ctx, c->other, c->state, c->since);
    }
    free(v.p);
    return r;
}

int store_block_set(store_t *st, const char *user, const char *other, int64_t now)
{
    static const char op[] = "block set";
    if (!st || !user || !other) return bad_args(op);
    binder b;
    if (!bind_keys(st, S_BLOCK_SET, user, other, &b, op)) return ST_ERR;
    b_i64(&b, 3, now);
    return run_write(st, &b, op);
}

int store_block_delete(store_t *st, const char *user, const char *other)
{
    static const char op[] = "block delete";
    if (!st || !user || !other) return bad_args(op);
    binder b;
    if (!bind_keys(st, S_BLOCK_DELETE, user, other, &b, op)) return ST_ERR;
    return run_change(st, &b, op);
}

int store_block_check(store_t *st, const char *a, const char *b_user, bool *a_blocks_b,
                      bool *b_blocks_a)
{
    static const char op[] = "block check";
    if (!st || !a || !b_user || !a_blocks_b || !b_blocks_a) return bad_args(op);
    binder b;
    if (!bind_keys(st, S_BLOCK_CHECK, a, b_user, &b, op)) return ST_ERR;
    int r = step_one(st, &b, op);
    if (r == ST_OK) {
        *a_blocks_b = sqlite3_column_int(b.s, 0) != 0;
        *b_blocks_a = sqlite3_column_int(b.s, 1) != 0;
    } else if (r == ST_NOTFOUND) { /* the statement always returns a row */
        r = db_fail(st, op);
    }
    stmt_done(b.s);
    return r;
}

/* Runs a statement of one user parameter whose rows are user ids, then calls fn with each. */
static int user_ids(store_t *st, enum stmt_id id, const char *user, st_user_fn fn, void *ctx,
                    const char *op)
{
    if (!st || !user || !fn) return bad_args(op);
    binder b;
    if (!bind_keys(st, id, user, NULL, &b, op)) return ST_ERR;
    rows v = {.size = ID_MAX};
    int r = run_rows(st, &b, &v, read_id, op);
    for (size_t i = 0; r == ST_OK && i < v.n; i++) fn(ctx, rows_at(&v, i));
    free(v.p);
    return r;
}

int store_block_list(store_t *st, const char *user, st_user_fn fn, void *ctx)
{
    return user_ids(st, S_BLOCK_LIST, user, fn, ctx, "block list");
}

int store_presence_audience(store_t *st, const char *user, st_user_fn fn, void *ctx)
{
    return user_ids(st, S_PRESENCE_AUDIENCE, user, fn, ctx, "presence audience");
}

int store_user_seen(store_t *st, const char *user, int64_t ts)
{
    static const char op[] = "user seen";
    if (!st || !user) return bad_args(op);
    binder b;
    if (!bind_keys(st, S_USER_SEEN, user, NULL, &b, op)) return ST_ERR;
    b_i64(&b, 2, ts);
    return run_change(st, &b, op);
}

/* ---- Keys (schema 3) ----------------------------------------------------------------------- */

static void b_blob(binder *b, int i, const void *v, size_t n)
{
    if (b->rc == SQLITE_OK) b->rc = sqlite3_bind_blob64(b->s, i, v, n, SQLITE_STATIC);
}

/* Copies a blob column of exactly n bytes; false (logged) for any other length. */
static bool col_blob(void *dst, size_t n, sqlite3_stmt *s, int col, const char *op)
{
    const void *p = sqlite3_column_blob(s, col);
    size_t len = (size_t)sqlite3_column_bytes(s, col);
    if (!p || len != n) {
        log_error("store: %s: column %s holds %zu bytes, not %zu", op, sqlite3_column_name(s, col),
                  len, n);
        return false;
    }
    memcpy(dst, p, n);
    return true;
}

/* The BUNDLE_COLS columns. */
static int row_bundle(sqlite3_stmt *s, st_bundle *b, const char *op)
{
    memset(b, 0, sizeof *b);
    col_copy(b->user, sizeof b->user, s, 0);
    col_copy(b->device, sizeof b->device, s, 1);
    const void *dc = sqlite3_column_blob(s, 2);
    size_t n = (size_t)sqlite3_column_bytes(s, 2);
    if (!dc || n > sizeof b->dcert) {
        log_error("store: %s: a stored DCERT of %zu bytes", op, n);
        return ST_ERR;
    }
    memcpy(b->dcert, dc, n);
    b->dcert_len = n;
    b->dcert_created_at = sqlite3_column_int64(s, 3);
    b->spk_id = (uint32_t)sqlite3_column_int64(s, 4);
    if (!col_blob(b->spk_pub, sizeof b->spk_pub, s, 5, op) ||
        !col_blob(b->spk_sig, sizeof b->spk_sig, s, 6, op))
        return ST_ERR;
    b->spk_uploaded_at = sqlite3_column_int64(s, 7);
    b->published_at = sqlite3_column_int64(s, 8);
    b->opk_max_id = sqlite3_column_int64(s, 9);
    return ST_OK;
}

static int read_bundle(sqlite3_stmt *s, void *out, const char *op)
{
    return row_bundle(s, out, op);
}

int store_key_identity_get(store_t *st, const char *user, uint8_t aik[ST_KEY_LEN])
{
    static const char op[] = "key identity get";
    if (!st || !user || !aik) return bad_args(op);
    binder b;
    if (!bind_keys(st, S_KEY_IDENTITY_GET, user, NULL, &b, op)) return ST_ERR;
    int r = step_one(st, &b, op);
    if (r == ST_OK && !col_blob(aik, ST_KEY_LEN, b.s, 0, op)) r = ST_ERR;
    stmt_done(b.s);
    return r;
}

int store_key_identity_set(store_t *st, const char *user, const uint8_t aik[ST_KEY_LEN],
                           int64_t now)
{
    static const char op[] = "key identity set";
    if (!st || !user || !aik) return bad_args(op);
    binder b;
    if (!bind_keys(st, S_KEY_IDENTITY_INSERT, user, NULL, &b, op)) return ST_ERR;
    b_blob(&b, 2, aik, ST_KEY_LEN);
    b_i64(&b, 3, now);
    return run_write(st, &b, op);
}

int store_key_mark_direct(store_t *st, const char *user)
{
    static const char op[] = "key mark direct conversations";
    if (!st || !user) return bad_args(op);
    binder b;
    if (!bind_keys(st, S_KEY_MARK_DIRECT, user, NULL, &b, op)) return ST_ERR;
    return run_write(st, &b, op);
}

int store_key_direct_e2e(store_t *st, const char *conv, bool *yes)
{
    static const char op[] = "key direct e2e";
    if (!st || !conv || !yes) return bad_args(op);
    *yes = false;
    binder b;
    if (!bind_keys(st, S_KEY_DIRECT_E2E, conv, NULL, &b, op)) return ST_ERR;
    int r = step_one(st, &b, op);
    bool flag = false, all = false;
    if (r == ST_OK) {
        flag = sqlite3_column_int(b.s, 0) != 0;
        all = sqlite3_column_int(b.s, 1) != 0;
    }
    stmt_done(b.s);
    if (r != ST_OK) return r;
    *yes = flag || all;
    if (flag || !all) return ST_OK;
    if (!bind_keys(st, S_KEY_CONV_SET_E2E, conv, NULL, &b, op)) return ST_ERR;
    return run_write(st, &b, op);
}

int store_key_bundle_get(store_t *st, const char *device, st_bundle *out)
{
    static const char op[] = "key bundle get";
    if (!st || !device || !out) return bad_args(op);
    binder b;
    if (!bind_keys(st, S_KEY_BUNDLE_GET, device, NULL, &b, op)) return ST_ERR;
    return run_one(st, &b, read_bundle, out, op);
}

int store_key_bundle_put(store_t *st, const st_bundle *bu, int64_t now, bool *dcert_changed)
{
    static const char op[] = "key bundle put";
    if (!st || !bu || !dcert_changed || bu->dcert_len > sizeof bu->dcert) return bad_args(op);
    *dcert_changed = false;
    bool own;
    int r = own_begin(st, &own);
    if (r != ST_OK) return r;
    st_device d;
    r = store_device_get(st, bu->device, &d);
    if (r == ST_OK && strcmp(d.user_id, bu->user) != 0) r = ST_NOTFOUND;
    st_bundle old = {0};
    int had = r == ST_OK ? store_key_bundle_get(st, bu->device, &old) : ST_OK;
    if (r == ST_OK && had == ST_ERR) r = ST_ERR;
    if (r == ST_OK) {
        *dcert_changed = had == ST_NOTFOUND || old.dcert_len != bu->dcert_len ||
                         memcmp(old.dcert, bu->dcert, bu->dcert_len) != 0;
        binder b;
        if (!bind_start(st, S_KEY_BUNDLE_PUT, &b, op)) return own_end(st, own, ST_ERR);
        b_arr(&b, 1, bu->device, sizeof bu->device, NULL, false);
        b_arr(&b, 2, bu->user, sizeof bu->user, NULL, false);
        b_blob(&b, 3, bu->dcert, bu->dcert_len);
        b_i64(&b, 4, bu->dcert_created_at);
        b_i64(&b, 5, bu->spk_id);
        b_blob(&b, 6, bu->spk_pub, sizeof bu->spk_pub);
        b_blob(&b, 7, bu->spk_sig, sizeof bu->spk_sig);
        b_i64(&b, 8, now);
        r = run_change(st, &b, op);
    }
    return own_end(st, own, r);
}

int store_key_bundle_list(store_t *st, const char *user, st_bundle *out, int max)
{
    static const char op[] = "key bundle list";
    if (!st || !user || (!out && max > 0)) return bad_args(op);
    if (max <= 0) return 0;
    binder b;
    if (!bind_keys(st, S_KEY_BUNDLE_LIST, user, NULL, &b, op)) return ST_ERR;
    b_i64(&b, 2, max);
    return run_list(st, &b, out, sizeof *out, max, read_bundle, op);
}

int store_key_opks_add(store_t *st, const char *device, const st_opk *opks, int n)
{
    static const char op[] = "key OPKs add";
    if (!st || !device || (!opks && n > 0)) return bad_args(op);
    if (n <= 0) return ST_OK;
    bool own;
    int r = own_begin(st, &own);
    if (r != ST_OK) return r;
    int64_t max = -1;
    binder b;
    for (int i = 0; r == ST_OK && i < n; i++) {
        if (!bind_keys(st, S_KEY_OPK_INSERT, device, NULL, &b, op)) return own_end(st, own, ST_ERR);
        b_i64(&b, 2, opks[i].id);
        b_blob(&b, 3, opks[i].pub, sizeof opks[i].pub);
        r = run_write(st, &b, op);
        if ((int64_t)opks[i].id > max) max = opks[i].id;
    }
    if (r == ST_OK) {
        if (!bind_keys(st, S_KEY_OPK_MAX, device, NULL, &b, op)) return own_end(st, own, ST_ERR);
        b_i64(&b, 2, max);
        r = run_write(st, &b, op);
    }
    return own_end(st, own, r);
}

int store_key_opk_count(store_t *st, const char *device, int *n)
{
    static const char op[] = "key OPK count";
    if (!st || !device || !n) return bad_args(op);
    return count_by_keys(st, S_KEY_OPK_COUNT, device, NULL, n, op);
}

int store_key_opk_take(store_t *st, const char *device, st_opk *out)
{
    static const char op[] = "key OPK take";
    if (!st || !device || !out) return bad_args(op);
    binder b;
    if (!bind_keys(st, S_KEY_OPK_TAKE, device, NULL, &b, op)) return ST_ERR;
    sqlite3_stmt *s = b.s;
    int r;
    if (b.rc != SQLITE_OK) {
        r = bind_fail(op, b.rc);
    } else {
        int rc = sqlite3_step(s);
        if (rc == SQLITE_ROW) {
            out->id = (uint32_t)sqlite3_column_int64(s, 0);
            r = col_blob(out->pub, sizeof out->pub, s, 1, op) ? ST_OK : ST_ERR;
            /* RETURNING: the delete completes when the statement runs to its end. */
            rc = sqlite3_step(s);
            if (r == ST_OK && rc != SQLITE_DONE) r = write_result(st, rc, op);
        } else {
            r = rc == SQLITE_DONE ? ST_NOTFOUND : write_result(st, rc, op);
        }
    }
    stmt_done(s);
    return r;
}

int store_key_claims_count(store_t *st, const char *claimer_dev, const char *target_user,
                           int64_t since, int *n)
{
    static const char op[] = "key claims count";
    if (!st || !claimer_dev || !target_user || !n) return bad_args(op);
    binder b;
    if (!bind_keys(st, S_KEY_CLAIM_COUNT, claimer_dev, target_user, &b, op)) return ST_ERR;
    b_i64(&b, 3, since < 0 ? 0 : since);
    int64_t v = 0;
    int r = run_int(st, &b, &v, op);
    if (r == ST_OK) *n = (int)v;
    return r;
}

int store_key_claim_add(store_t *st, const char *claimer_dev, const char *target_user, int64_t now)
{
    static const char op[] = "key claim add";
    if (!st || !claimer_dev || !target_user) return bad_args(op);
    binder b;
    if (!bind_keys(st, S_KEY_CLAIM_INSERT, claimer_dev, target_user, &b, op)) return ST_ERR;
    b_i64(&b, 3, now);
    return run_write(st, &b, op);
}

int store_key_claims_prune(store_t *st, int64_t before)
{
    static const char op[] = "key claims prune";
    if (!st) return bad_args(op);
    binder b;
    if (!bind_start(st, S_KEY_CLAIM_PRUNE, &b, op)) return ST_ERR;
    b_i64(&b, 1, before);
    return run_write(st, &b, op);
}

typedef struct key_dev_row {
    char user[ID_MAX];
    char device[ID_MAX];
} key_dev_row;

static int read_key_dev(sqlite3_stmt *s, void *out, const char *op)
{
    key_dev_row *kd = out;
    (void)op;
    col_copy(kd->user, sizeof kd->user, s, 0);
    col_copy(kd->device, sizeof kd->device, s, 1); /* NULL reads as "" */
    return ST_OK;
}

int store_key_conv_devices(store_t *st, const char *conv, st_key_dev_fn fn, void *ctx)
{
    static const char op[] = "key conversation devices";
    if (!st || !conv || !fn) return bad_args(op);
    binder b;
    if (!bind_keys(st, S_KEY_CONV_DEVICES, conv, NULL, &b, op)) return ST_ERR;
    rows v = {.size = sizeof(key_dev_row)};
    int r = run_rows(st, &b, &v, read_key_dev, op);
    for (size_t i = 0; r == ST_OK && i < v.n; i++) {
        const key_dev_row *kd = rows_at(&v, i);
        fn(ctx, kd->user, kd->device);
    }
    free(v.p);
    return r;
}

int store_key_share_group(store_t *st, const char *a, const char *b_user, bool *yes)
{
    static const char op[] = "key share group";
    if (!st || !a || !b_user || !yes) return bad_args(op);
    binder b;
    int64_t v = 0;
    int r = bind_keys(st, S_KEY_SHARE_GROUP, a, b_user, &b, op) ? run_int(st, &b, &v, op) : ST_ERR;
    *yes = r == ST_OK && v != 0; /* false on every failure too */
    return r;
}

/* ---- Device links and group flags (schema 4) ----------------------------------------------
 * Rare calls: their statements are prepared per call rather than kept in stmt_sql. */

static sqlite3_stmt *prep_once(store_t *st, const char *sql, const char *op)
{
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK) {
        log_error("store: %s: %s", op, sqlite3_errmsg(st->db));
        sqlite3_finalize(s);
        return NULL;
    }
    return s;
}

static int step_done(store_t *st, sqlite3_stmt *s, const char *op)
{
    int rc = sqlite3_step(s);
    int r = rc == SQLITE_DONE ? ST_OK : write_result(st, rc, op);
    sqlite3_finalize(s);
    return r;
}

/* Drops link payloads created at or before expired_before. */
static int links_expire(store_t *st, int64_t expired_before, const char *op)
{
    sqlite3_stmt *s = prep_once(st, "DELETE FROM key_links WHERE created_at <= ?1", op);
    if (!s) return ST_ERR;
    sqlite3_bind_int64(s, 1, expired_before);
    return step_done(st, s, op);
}

int store_key_link_put(store_t *st, const st_link *l, int64_t expired_before)
{
    static const char op[] = "key link put";
    if (!st || !l || !l->c || l->c_len == 0) return bad_args(op);
    bool own;
    int r = own_begin(st, &own);
    if (r != ST_OK) return r;
    r = links_expire(st, expired_before, op);
    sqlite3_stmt *s;
    char owner[ID_MAX] = "";
    if (r == ST_OK) {
        s = prep_once(st, "SELECT user_id FROM key_links WHERE link_id = ?1", op);
        if (!s) return own_end(st, own, ST_ERR);
        sqlite3_bind_blob(s, 1, l->link_id, sizeof l->link_id, SQLITE_STATIC);
        int rc = sqlite3_step(s);
        if (rc == SQLITE_ROW)
            col_copy(owner, sizeof owner, s, 0);
        else if (rc != SQLITE_DONE)
            r = db_fail(st, op);
        sqlite3_finalize(s);
    }
    if (r == ST_OK && owner[0] && strcmp(owner, l->user) != 0) r = ST_CONFLICT;
    if (r == ST_OK) {
        s = prep_once(st,
                      "INSERT OR REPLACE INTO key_links (link_id, user_id, to_dev, eph, nonce, c,"
                      " created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                      op);
        if (!s) return own_end(st, own, ST_ERR);
        sqlite3_bind_blob(s, 1, l->link_id, sizeof l->link_id, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, l->user, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 3, l->to_dev, -1, SQLITE_STATIC);
        sqlite3_bind_blob(s, 4, l->eph, sizeof l->eph, SQLITE_STATIC);
        sqlite3_bind_blob(s, 5, l->nonce, sizeof l->nonce, SQLITE_STATIC);
        sqlite3_bind_blob64(s, 6, l->c, l->c_len, SQLITE_STATIC);
        sqlite3_bind_int64(s, 7, l->created_at);
        r = step_done(st, s, op);
    }
    return own_end(st, own, r);
}

int store_key_link_take(store_t *st, const uint8_t link_id[16], const char *user,
                        const char *device, int64_t expired_before, st_link *out)
{
    static const char op[] = "key link take";
    if (!st || !link_id || !user || !device || !out) return bad_args(op);
    memset(out, 0, sizeof *out);
    bool own;
    int r = own_begin(st, &own);
    if (r != ST_OK) return r;
    r = links_expire(st, expired_before, op);
    if (r != ST_OK) return own_end(st, own, r);
    sqlite3_stmt *s =
        prep_once(st,
                  "DELETE FROM key_links WHERE link_id = ?1 AND user_id = ?2 AND to_dev = ?3"
                  " RETURNING eph, nonce, c, created_at",
                  op);
    if (!s) return own_end(st, own, ST_ERR);
    sqlite3_bind_blob(s, 1, link_id, 16, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, user, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, device, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        memcpy(out->link_id, link_id, 16);
        snprintf(out->user, sizeof out->user, "%s", user);
        snprintf(out->to_dev, sizeof out->to_dev, "%s", device);
        const void *c = sqlite3_column_blob(s, 2);
        size_t n = (size_t)sqlite3_column_bytes(s, 2);
        out->created_at = sqlite3_column_int64(s, 3);
        if (!col_blob(out->eph, sizeof out->eph, s, 0, op) ||
            !col_blob(out->nonce, sizeof out->nonce, s, 1, op) || !c || n == 0) {
            r = ST_ERR;
        } else if (!(out->c = malloc(n))) {
            r = ST_ERR;
        } else {
            memcpy(out->c, c, n);
            out->c_len = n;
        }
        rc = sqlite3_step(s); /* RETURNING: the delete completes at the statement's end */
        if (r == ST_OK && rc != SQLITE_DONE) r = write_result(st, rc, op);
    } else {
        r = rc == SQLITE_DONE ? ST_NOTFOUND : write_result(st, rc, op);
    }
    sqlite3_finalize(s);
    if (r != ST_OK) {
        free(out->c);
        out->c = NULL;
    }
    return own_end(st, own, r);
}

int store_group_set_e2e(store_t *st, const char *conv)
{
    static const char op[] = "group set e2e";
    if (!st || !conv) return bad_args(op);
    sqlite3_stmt *s =
        prep_once(st, "UPDATE convs SET e2e = 1 WHERE id = ?1 AND kind = 'group'", op);
    if (!s) return ST_ERR;
    sqlite3_bind_text(s, 1, conv, -1, SQLITE_STATIC);
    int r = step_done(st, s, op);
    if (r == ST_OK && sqlite3_changes(st->db) == 0) r = ST_NOTFOUND;
    return r;
}
