/* store.c: the device store, one SQLite file per account and device.
 *
 * Tables (schema version in PRAGMA user_version, migrations in order below):
 *   meta      key/value: user, device, username, token, pos (the sync cursor)
 *   users     every user this device has seen: senders, recipients, search results
 *   convs     one row per conversation: peer, last seq, the local read marker, the peer's
 *             delivered / read markers (receipts), the unread count
 *   members   members of groups with their roles and delivered / read markers (from the
 *             server's group answers, system messages and receipts)
 *   messages  received and sent messages alike. Sent ones start as the outbox (state pending,
 *             seq NULL, a cmid made once) and become sent with the ack's (conv, seq).
 *             (conv, seq) is unique: a repeat from the server is dropped there. (dev, cmid) is
 *             unique too: it is how a pending message of ours that comes back through sync
 *             before its ack is recognised.
 * Two connections use the file, one per thread (see internal.h); every write transaction is
 * BEGIN IMMEDIATE so that neither has to upgrade a read lock, and a busy timeout covers the
 * short waits. Statements are prepared per call: the store is small and the cost is in the
 * network, not here.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/internal.h"
#include "common/util.h"

enum { ST_PENDING = 0, ST_SENT = 1, ST_FAILED = 2, ST_RECEIVED = 3 };

static const char *const migrations[] = {
    /* 1 */
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value);"
    "CREATE TABLE users(id TEXT PRIMARY KEY, username TEXT NOT NULL DEFAULT '',"
    "  display_name TEXT NOT NULL DEFAULT '', kind TEXT NOT NULL DEFAULT 'user',"
    "  created_at INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX users_username ON users(username);"
    "CREATE TABLE convs(id TEXT PRIMARY KEY, grp INTEGER NOT NULL DEFAULT 0,"
    "  peer TEXT NOT NULL DEFAULT '', last_seq INTEGER NOT NULL DEFAULT 0,"
    "  last_ts INTEGER NOT NULL DEFAULT 0, read_seq INTEGER NOT NULL DEFAULT 0,"
    "  peer_delivered INTEGER NOT NULL DEFAULT 0, peer_read INTEGER NOT NULL DEFAULT 0,"
    "  unread INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE members(conv TEXT NOT NULL, user TEXT NOT NULL, role TEXT NOT NULL DEFAULT '',"
    "  delivered INTEGER NOT NULL DEFAULT 0, read INTEGER NOT NULL DEFAULT 0,"
    "  PRIMARY KEY(conv, user));"
    "CREATE TABLE messages(local_id INTEGER PRIMARY KEY, conv TEXT NOT NULL, seq INTEGER,"
    "  pos INTEGER NOT NULL DEFAULT 0, sender TEXT NOT NULL, dev TEXT NOT NULL,"
    "  cmid TEXT NOT NULL, recipient TEXT NOT NULL DEFAULT '', ts INTEGER NOT NULL,"
    "  kind TEXT NOT NULL, body TEXT NOT NULL, reply_to INTEGER NOT NULL DEFAULT 0,"
    "  state INTEGER NOT NULL);"
    "CREATE UNIQUE INDEX messages_seq ON messages(conv, seq) WHERE seq IS NOT NULL;"
    "CREATE UNIQUE INDEX messages_cmid ON messages(dev, cmid);"
    "CREATE INDEX messages_conv ON messages(conv, local_id);"
    "CREATE INDEX messages_outbox ON messages(local_id) WHERE state = 0;",
    /* 2: the read marker as last sent to the server (read receipts) */
    "ALTER TABLE convs ADD COLUMN read_sent INTEGER NOT NULL DEFAULT 0;",
    /* 3: group names */
    "ALTER TABLE convs ADD COLUMN name TEXT NOT NULL DEFAULT '';",
    /* 4: end-to-end encryption: sealed key material (e2ec.c) and the ciphertext body of an
     * outbox row (sent as kind "e2e" instead of kind/body, the same bytes on every resend) */
    "CREATE TABLE e2e_keys(name TEXT PRIMARY KEY, value BLOB NOT NULL);"
    "ALTER TABLE messages ADD COLUMN wire TEXT;",
};

static bool is_group(const char *conv)
{
    return conv && strncmp(conv, "g_", 2) == 0;
}

/* Kinds the unread count covers (as the server's: protocol.md, conversation). */
static bool counts_unread(const char *kind)
{
    static const char *const k[] = {"text", "media", "sticker", "e2e", "game"};
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++)
        if (strcmp(kind, k[i]) == 0) return true;
    return false;
}

static int exec(sqlite3 *db, const char *sql)
{
    return sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : PL_ESTORE;
}

static sqlite3_stmt *prep(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) return NULL;
    return st;
}

static const char *col_text(sqlite3_stmt *st, int i)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    return t ? (const char *)t : "";
}

static void copy(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "");
}

int pl__store_open(const char *path, sqlite3 **out)
{
    sqlite3 *db = NULL;
    *out = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK) {
        sqlite3_close(db);
        return PL_ESTORE;
    }
    sqlite3_busy_timeout(db, 10000);
    if (exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON") != 0)
        goto err;
    /* Migrations run in one IMMEDIATE transaction, so two connections opening a new file at
     * once do not both create the tables. */
    if (exec(db, "BEGIN IMMEDIATE") != 0) goto err;
    sqlite3_stmt *st = prep(db, "PRAGMA user_version");
    int version = st && sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : -1;
    sqlite3_finalize(st);
    int n = (int)(sizeof migrations / sizeof migrations[0]);
    if (version < 0 || version > n) goto err_tx; /* a newer libparley made this file */
    for (int v = version; v < n; v++)
        if (exec(db, migrations[v]) != 0) goto err_tx;
    if (version < n) {
        char sql[64];
        snprintf(sql, sizeof sql, "PRAGMA user_version=%d", n);
        if (exec(db, sql) != 0) goto err_tx;
    }
    if (exec(db, "COMMIT") != 0) goto err_tx;
    *out = db;
    return 0;
err_tx:
    exec(db, "ROLLBACK");
err:
    sqlite3_close(db);
    return PL_ESTORE;
}

void pl__store_close(sqlite3 *db)
{
    sqlite3_close(db);
}

int pl__store_begin(sqlite3 *db)
{
    return exec(db, "BEGIN IMMEDIATE");
}

int pl__store_commit(sqlite3 *db)
{
    if (exec(db, "COMMIT") == 0) return 0;
    pl__store_rollback(db);
    return PL_ESTORE;
}

void pl__store_rollback(sqlite3 *db)
{
    if (!sqlite3_get_autocommit(db)) exec(db, "ROLLBACK");
}

/* ---------------------------------------------------------------------------------- meta */

int pl__meta_get(sqlite3 *db, const char *key, char *out, size_t cap)
{
    sqlite3_stmt *st = prep(db, "SELECT value FROM meta WHERE key = ?");
    if (!st) return PL_ESTORE;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    copy(out, cap, rc == SQLITE_ROW ? col_text(st, 0) : "");
    sqlite3_finalize(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : PL_ESTORE;
}

int64_t pl__meta_get_int(sqlite3 *db, const char *key)
{
    char v[32];
    if (pl__meta_get(db, key, v, sizeof v) != 0) return 0;
    return strtoll(v, NULL, 10);
}

int pl__meta_set(sqlite3 *db, const char *key, const char *value)
{
    sqlite3_stmt *st = prep(db, "INSERT INTO meta(key, value) VALUES(?, ?) "
                                "ON CONFLICT(key) DO UPDATE SET value = excluded.value");
    if (!st) return PL_ESTORE;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, value ? value : "", -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : PL_ESTORE;
}

int pl__meta_set_int(sqlite3 *db, const char *key, int64_t value)
{
    char v[32];
    snprintf(v, sizeof v, "%lld", (long long)value);
    return pl__meta_set(db, key, v);
}

bool pl__store_has_messages(sqlite3 *db)
{
    sqlite3_stmt *st = prep(db, "SELECT 1 FROM messages LIMIT 1");
    bool has = st && sqlite3_step(st) == SQLITE_ROW;
    sqlite3_finalize(st);
    return has;
}

/* ---------------------------------------------------------------------------------- users */

int pl__store_user_put(sqlite3 *db, const pl_user *u)
{
    if (!u->id[0]) return PL_EINVAL;
    sqlite3_stmt *st = prep(db, "INSERT INTO users(id, username, display_name, kind, created_at) "
                                "VALUES(?1, ?2, ?3, CASE WHEN ?4 = '' THEN 'user' ELSE ?4 END, ?5) "
                                "ON CONFLICT(id) DO UPDATE SET "
                                "username = CASE WHEN ?2 = '' THEN username ELSE ?2 END, "
                                "display_name = CASE WHEN ?3 = '' THEN display_name ELSE ?3 END, "
                                "kind = CASE WHEN ?4 = '' THEN kind ELSE ?4 END, "
                                "created_at = CASE WHEN ?5 = 0 THEN created_at ELSE ?5 END");
    if (!st) return PL_ESTORE;
    sqlite3_bind_text(st, 1, u->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, u->username, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, u->display_name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, u->kind, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, u->created_at);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : PL_ESTORE;
}

static void user_row(sqlite3_stmt *st, pl_user *u)
{
    memset(u, 0, sizeof *u);
    copy(u->id, sizeof u->id, col_text(st, 0));
    copy(u->username, sizeof u->username, col_text(st, 1));
    copy(u->display_name, sizeof u->display_name, col_text(st, 2));
    copy(u->kind, sizeof u->kind, col_text(st, 3));
    u->created_at = sqlite3_column_int64(st, 4);
}

#define USER_COLS "id, username, display_name, kind, created_at"

static int user_one(sqlite3 *db, const char *sql, const char *arg, pl_user *out)
{
    sqlite3_stmt *st = prep(db, sql);
    if (!st) return PL_ESTORE;
    sqlite3_bind_text(st, 1, arg, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) user_row(st, out);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? PL_ENOTFOUND : PL_ESTORE;
}

int pl__store_user_get(sqlite3 *db, const char *id, pl_user *out)
{
    return user_one(db, "SELECT " USER_COLS " FROM users WHERE id = ?", id, out);
}

int pl__store_user_by_name(sqlite3 *db, const char *username, pl_user *out)
{
    return user_one(db, "SELECT " USER_COLS " FROM users WHERE username = lower(?)", username, out);
}

int pl__store_contacts(sqlite3 *db, const char *me, pl_user **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    sqlite3_stmt *st = prep(db, "SELECT " USER_COLS " FROM users WHERE id != ? "
                                "ORDER BY username = '', username, id");
    if (!st) return PL_ESTORE;
    sqlite3_bind_text(st, 1, me, -1, SQLITE_STATIC);
    size_t cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            pl_user *p = realloc(*out, cap * sizeof *p);
            if (!p) {
                rc = SQLITE_NOMEM;
                break;
            }
            *out = p;
        }
        user_row(st, &(*out)[(*n)++]);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        free(*out);
        *out = NULL;
        *n = 0;
        return rc == SQLITE_NOMEM ? PL_ENOMEM : PL_ESTORE;
    }
    return 0;
}

/* Makes sure a user id is known, without a name yet. */
static int user_touch(sqlite3 *db, const char *id)
{
    if (!id || !*id) return 0;
    sqlite3_stmt *st = prep(db, "INSERT OR IGNORE INTO users(id) VALUES(?)");
    if (!st) return PL_ESTORE;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : PL_ESTORE;
}

/* ------------------------------------------------------------------------------- messages */

#define MSG_COLS                                                                                   \
    "m.local_id, m.conv, m.seq, m.pos, m.sender, m.dev, m.recipient, m.cmid, m.ts, m.reply_to,"    \
    " m.state, m.kind, m.body, c.peer_delivered, c.peer_read"
#define MSG_FROM " FROM messages m LEFT JOIN convs c ON c.id = m.conv "

static char *text_of(const char *body)
{
    json_t *b = json_loads(body, 0, NULL);
    const char *t = json_string_value(json_object_get(b, "text"));
    char *r = t ? strdup(t) : NULL;
    json_decref(b);
    return r;
}

static int msg_row(sqlite3_stmt *st, pl_msg *m)
{
    memset(m, 0, sizeof *m);
    m->local_id = sqlite3_column_int64(st, 0);
    copy(m->conv, sizeof m->conv, col_text(st, 1));
    m->seq = sqlite3_column_int64(st, 2);
    m->pos = sqlite3_column_int64(st, 3);
    copy(m->from, sizeof m->from, col_text(st, 4));
    copy(m->dev, sizeof m->dev, col_text(st, 5));
    copy(m->to, sizeof m->to, col_text(st, 6));
    copy(m->cmid, sizeof m->cmid, col_text(st, 7));
    m->ts = sqlite3_column_int64(st, 8);
    m->reply_to = sqlite3_column_int64(st, 9);
    int state = sqlite3_column_int(st, 10);
    copy(m->kind, sizeof m->kind, col_text(st, 11));
    m->body = strdup(col_text(st, 12));
    if (!m->body) return PL_ENOMEM;
    if (strcmp(m->kind, "text") == 0 || strcmp(m->kind, "undecryptable") == 0)
        m->text = text_of(m->body);
    int64_t delivered = sqlite3_column_int64(st, 13), read = sqlite3_column_int64(st, 14);
    m->outgoing = state != ST_RECEIVED;
    switch (state) {
    case ST_PENDING:
        m->status = PL_MSG_PENDING;
        break;
    case ST_FAILED:
        m->status = PL_MSG_FAILED;
        break;
    case ST_RECEIVED:
        m->status = PL_MSG_RECEIVED;
        break;
    default:
        m->status = m->seq <= read        ? PL_MSG_READ
                    : m->seq <= delivered ? PL_MSG_DELIVERED
                                          : PL_MSG_SENT;
    }
    return 0;
}

static int msg_list(sqlite3_stmt *st, pl_msg **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    size_t cap = 0;
    int rc, err = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? cap * 2 : 32;
            pl_msg *p = realloc(*out, cap * sizeof *p);
            if (!p) {
                err = PL_ENOMEM;
                break;
            }
            *out = p;
        }
        if ((err = msg_row(st, &(*out)[*n])) != 0) break;
        (*n)++;
    }
    sqlite3_finalize(st);
    if (!err && rc != SQLITE_DONE) err = PL_ESTORE;
    if (err) {
        pl_msgs_free(*out, *n);
        *out = NULL;
        *n = 0;
    }
    return err;
}

int pl__store_msg_get(sqlite3 *db, int64_t local_id, pl_msg *out)
{
    sqlite3_stmt *st = prep(db, "SELECT " MSG_COLS MSG_FROM "WHERE m.local_id = ?");
    if (!st) return PL_ESTORE;
    sqlite3_bind_int64(st, 1, local_id);
    int rc = sqlite3_step(st), err;
    err = rc == SQLITE_ROW ? msg_row(st, out) : rc == SQLITE_DONE ? PL_ENOTFOUND : PL_ESTORE;
    sqlite3_finalize(st);
    return err;
}

int pl__store_history(sqlite3 *db, const char *conv, int64_t before, int limit, pl_msg **out,
                      size_t *n)
{
    /* The newest `limit` rows before `before`, then reversed into reading order by the outer
     * query. Stored order (local_id) is the order this device learned of each message; sent
     * messages sort by seq, pending ones after them. */
    sqlite3_stmt *st = prep(db, "SELECT * FROM (SELECT " MSG_COLS MSG_FROM
                                "WHERE m.conv = ?1 AND (?2 = 0 OR m.local_id < ?2) "
                                "AND m.kind != 'ctl' "
                                "ORDER BY m.seq IS NULL DESC, m.seq DESC, m.local_id DESC "
                                "LIMIT ?3) ORDER BY seq IS NULL, seq, local_id");
    if (!st) return PL_ESTORE;
    sqlite3_bind_text(st, 1, conv, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, before);
    sqlite3_bind_int(st, 3, limit > 0 ? limit : 100);
    return msg_list(st, out, n);
}

int pl__store_outbox(sqlite3 *db, int64_t after_local_id, int limit, bool with_ctl, pl_msg **out,
                     size_t *n)
{
    sqlite3_stmt *st = prep(db, "SELECT " MSG_COLS MSG_FROM "WHERE m.state = 0 AND m.local_id > ?"
                                " AND (? OR m.kind != 'ctl') ORDER BY m.local_id LIMIT ?");
    if (!st) return PL_ESTORE;
    sqlite3_bind_int64(st, 1, after_local_id);
    sqlite3_bind_int(st, 2, with_ctl);
    sqlite3_bind_int(st, 3, limit > 0 ? limit : 1000000);
    return msg_list(st, out, n);
}

/* Creates the conversation row if needed; peer may be "" (unknown). */
static int conv_touch(sqlite3 *db, const char *conv, const char *peer)
{
    bool grp = is_group(conv);
    sqlite3_stmt *st =
        prep(db, "INSERT INTO convs(id, peer, grp) VALUES(?1, ?2, ?3) ON CONFLICT(id) "
                 "DO UPDATE SET peer = CASE WHEN peer = '' THEN ?2 ELSE peer END");
    if (!st) return PL_ESTORE;
    sqlite3_bind_text(st, 1, conv, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, peer && !grp ? peer : "", -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 3, grp);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : PL_ESTORE;
}

/* Inserts an outbox row inside the caller's transaction; *id gets its local_id. */
int pl__store_outbox_insert(sqlite3 *db, const char *me, const char *dev, const char *to,
                            const char *conv, const char *kind, const char *body, int64_t reply_to,
                            const char *cmid, const char *wire, int64_t *id)
{
    if (conv_touch(db, conv, to) != 0 || (!is_group(to) && user_touch(db, to) != 0))
        return PL_ESTORE;
    sqlite3_stmt *st =
        prep(db, "INSERT INTO messages(conv, sender, dev, cmid, recipient, ts, kind, body, "
                 "reply_to, state, wire) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?)");
    if (!st) return PL_ESTORE;
    sqlite3_bind_text(st, 1, conv, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, me, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, dev, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, cmid, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, to, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, now_ms());
    sqlite3_bind_text(st, 7, kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 8, body, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 9, reply_to);
    if (wire)
        sqlite3_bind_text(st, 10, wire, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 10);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return PL_ESTORE;
    *id = sqlite3_last_insert_rowid(db);
    if (strcmp(kind, "ctl") == 0) return 0; /* a control message moves nothing */
    st = prep(db, "UPDATE convs SET last_ts = max(last_ts, ?) WHERE id = ?");
    if (!st) return PL_ESTORE;
    sqlite3_bind_int64(st, 1, now_ms());
    sqlite3_bind_text(st, 2, conv, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : PL_ESTORE;
}

int pl__store_outbox_add(sqlite3 *db, const char *me, const char *dev, const char *to,
                         const char *conv, const char *kind, const char *body, int64_t reply_to,
                         pl_msg *out)
{
    char cmid[ID_MAX];
    id_new(cmid, "c_"); /* made once, here; every resend uses it */
    if (pl__store_begin(db) != 0) return PL_ESTORE;
    int64_t id;
    if (pl__store_outbox_insert(db, me, dev, to, conv, kind, body, reply_to, cmid, NULL, &id) !=
        0) {
        pl__store_rollback(db);
        return PL_ESTORE;
    }
    if (pl__store_commit(db) != 0) return PL_ESTORE;
    return out ? pl__store_msg_get(db, id, out) : 0;
}

char *pl__store_wire(sqlite3 *db, int64_t local_id)
{
    sqlite3_stmt *st = prep(db, "SELECT wire FROM messages WHERE local_id = ?");
    if (!st) return NULL;
    sqlite3_bind_int64(st, 1, local_id);
    char *r = NULL;
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) == SQLITE_TEXT)
        r = strdup((const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    return r;
}

/* Moves the conversation's last message forward and counts unread ones from others. */
static int conv_advance(sqlite3 *db, const char *conv, int64_t seq, int64_t ts, bool from_other)
{
    sqlite3_stmt *st =
        prep(db, "UPDATE convs SET last_seq = max(last_seq, ?2), last_ts = max(last_ts, ?3), "
                 "unread = unread + (CASE WHEN ?4 AND ?2 > read_seq THEN 1 ELSE 0 END) "
                 "WHERE id = ?1");
    if (!st) return PL_ESTORE;
    sqlite3_bind_text(st, 1, conv, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, seq);
    sqlite3_bind_int64(st, 3, ts);
    sqlite3_bind_int(st, 4, from_other);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : PL_ESTORE;
}

/* The peer of a direct conversation seen only through our own message (the msg frame has no
 * recipient): the known user whose direct conversation with us has this id. */
static void guess_peer(sqlite3 *db, const char *me, const char *conv, char *peer, size_t cap)
{
    peer[0] = 0;
    char id[ID_MAX];
    conv_direct_id(id, me, me);
    if (strcmp(id, conv) == 0) {
        copy(peer, cap, me);
        return;
    }
    sqlite3_stmt *st = prep(db, "SELECT id FROM users");
    while (st && sqlite3_step(st) == SQLITE_ROW) {
        conv_direct_id(id, me, col_text(st, 0));
        if (strcmp(id, conv) == 0) {
            copy(peer, cap, col_text(st, 0));
            break;
        }
    }
    sqlite3_finalize(st);
}

static int run1(sqlite3 *db, const char *sql, const char *a, const char *b, const char *c3)
{
    sqlite3_stmt *st = prep(db, sql);
    if (!st) return PL_ESTORE;
    if (a) sqlite3_bind_text(st, 1, a, -1, SQLITE_STATIC);
    if (b) sqlite3_bind_text(st, 2, b, -1, SQLITE_STATIC);
    if (c3) sqlite3_bind_text(st, 3, c3, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : PL_ESTORE;
}

static int member_put(sqlite3 *db, const char *conv, const char *user, const char *role)
{
    if (!user || !*user) return 0;
    if (user_touch(db, user) != 0) return PL_ESTORE;
    return run1(db,
                "INSERT INTO members(conv, user, role) VALUES(?1, ?2, ?3) ON CONFLICT(conv, user) "
                "DO UPDATE SET role = CASE WHEN ?3 = '' THEN role ELSE ?3 END",
                conv, user, role ? role : "");
}

static int member_del(sqlite3 *db, const char *conv, const char *user)
{
    if (!user) return 0;
    return run1(db, "DELETE FROM members WHERE conv = ?1 AND user = ?2", conv, user, NULL);
}

static int conv_set_name(sqlite3 *db, const char *conv, const char *name)
{
    if (!name) return 0;
    return run1(db, "UPDATE convs SET name = ?2 WHERE id = ?1", conv, name, NULL);
}

/* A group's system message: its name and its members as the store knows them. */
static int group_system(sqlite3 *db, const char *me, const char *conv, json_t *b)
{
    const char *ev = json_string_value(json_object_get(b, "event"));
    const char *by = json_string_value(json_object_get(b, "by"));
    const char *user = json_string_value(json_object_get(b, "user"));
    json_t *users = json_object_get(b, "users");
    int err = 0;
    if (!ev) return 0;
    if (strcmp(ev, "created") == 0) {
        err = conv_set_name(db, conv, json_string_value(json_object_get(b, "name")));
        if (!err) err = member_put(db, conv, by, "owner");
    } else if (strcmp(ev, "changed") == 0) {
        err = conv_set_name(db, conv, json_string_value(json_object_get(b, "name")));
    } else if (strcmp(ev, "removed") == 0 || strcmp(ev, "left") == 0) {
        err = member_del(db, conv, user);
    } else if (strcmp(ev, "role") == 0) {
        err = member_put(db, conv, user, json_string_value(json_object_get(b, "role")));
    }
    if (strcmp(ev, "created") == 0 || strcmp(ev, "added") == 0) {
        size_t i;
        json_t *u;
        json_array_foreach(users, i, u)
        {
            if (!err) err = member_put(db, conv, json_string_value(u), "member");
        }
    }
    (void)me;
    return err;
}

int pl__store_group_put(sqlite3 *db, const char *id, const char *name, const pl_member *m, size_t n)
{
    if (!is_group(id)) return PL_EINVAL;
    int err = conv_touch(db, id, "");
    if (!err && name && *name) err = conv_set_name(db, id, name);
    if (!err && m) err = run1(db, "DELETE FROM members WHERE conv = ?1", id, NULL, NULL);
    for (size_t i = 0; !err && m && i < n; i++) err = member_put(db, id, m[i].user, m[i].role);
    return err;
}

int pl__store_conv_forget_member(sqlite3 *db, const char *conv, const char *user)
{
    return member_del(db, conv, user);
}

int pl__store_incoming(sqlite3 *db, const char *me, const char *mydev, json_t *m, pl_msg *out)
{
    const char *conv = json_string_value(json_object_get(m, "conv"));
    const char *from = json_string_value(json_object_get(m, "from"));
    const char *dev = json_string_value(json_object_get(m, "dev"));
    const char *cmid = json_string_value(json_object_get(m, "cmid"));
    const char *kind = json_string_value(json_object_get(m, "kind"));
    json_t *jseq = json_object_get(m, "seq"), *jpos = json_object_get(m, "pos");
    json_t *body = json_object_get(m, "body");
    if (!conv || !from || !dev || !cmid || !kind || !json_is_integer(jseq) ||
        !json_is_integer(jpos) || !body)
        return PL_EPROTO;
    int64_t seq = json_integer_value(jseq), pos = json_integer_value(jpos);
    int64_t ts = json_integer_value(json_object_get(m, "ts"));
    int64_t reply_to = json_integer_value(json_object_get(m, "reply_to"));
    bool mine = strcmp(from, me) == 0;

    /* One of ours still pending (its ack was lost with the connection): it is sent now. */
    if (mine && strcmp(dev, mydev) == 0) {
        sqlite3_stmt *st = prep(db, "SELECT local_id FROM messages WHERE dev = ? AND cmid = ?");
        if (!st) return PL_ESTORE;
        sqlite3_bind_text(st, 1, dev, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, cmid, -1, SQLITE_STATIC);
        int64_t id = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
        sqlite3_finalize(st);
        if (id) {
            int r = pl__store_ack(db, id, conv, seq, ts, out);
            if (r < 0) return r;
            /* remember where it sits in the inbox */
            st = prep(db, "UPDATE messages SET pos = ? WHERE local_id = ?");
            if (!st) return PL_ESTORE;
            sqlite3_bind_int64(st, 1, pos);
            sqlite3_bind_int64(st, 2, id);
            sqlite3_step(st);
            sqlite3_finalize(st);
            if (r == 1) out->pos = pos;
            return r == 1 ? PL__IN_OWN_ACKED : PL__IN_DUP;
        }
    }

    char *btext = json_dumps(body, JSON_COMPACT);
    if (!btext) return PL_ENOMEM;
    sqlite3_stmt *st = prep(db, "INSERT OR IGNORE INTO messages(conv, seq, pos, sender, dev, "
                                "cmid, ts, kind, body, reply_to, state) "
                                "VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    if (!st) {
        free(btext);
        return PL_ESTORE;
    }
    sqlite3_bind_text(st, 1, conv, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, seq);
    sqlite3_bind_int64(st, 3, pos);
    sqlite3_bind_text(st, 4, from, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, dev, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, cmid, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 7, ts);
    sqlite3_bind_text(st, 8, kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 9, btext, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 10, reply_to);
    sqlite3_bind_int(st, 11, mine ? ST_SENT : ST_RECEIVED);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    free(btext);
    if (rc != SQLITE_DONE) return PL_ESTORE;
    if (sqlite3_changes(db) == 0) return PL__IN_DUP;
    int64_t id = sqlite3_last_insert_rowid(db);

    char peer[ID_MAX] = "";
    if (is_group(conv))
        peer[0] = 0;
    else if (mine)
        guess_peer(db, me, conv, peer, sizeof peer);
    else
        copy(peer, sizeof peer, from);
    if (user_touch(db, from) != 0 || conv_touch(db, conv, peer) != 0 ||
        conv_advance(db, conv, seq, ts, !mine && counts_unread(kind)) != 0)
        return PL_ESTORE;
    if (strcmp(kind, "system") == 0 && is_group(conv) && group_system(db, me, conv, body) != 0)
        return PL_ESTORE;
    int err = pl__store_msg_get(db, id, out);
    return err ? err : PL__IN_NEW;
}

int pl__store_ctl_drop(sqlite3 *db, int64_t local_id)
{
    sqlite3_stmt *st = prep(db, "DELETE FROM messages WHERE local_id = ? AND kind = 'ctl'");
    if (!st) return PL_ESTORE;
    sqlite3_bind_int64(st, 1, local_id);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return PL_ESTORE;
    return sqlite3_changes(db) > 0 ? 1 : 0;
}

int pl__store_ctl_done(sqlite3 *db, const char *dev, const char *cmid)
{
    sqlite3_stmt *st = prep(db, "DELETE FROM messages WHERE dev = ? AND cmid = ? AND kind = 'ctl'");
    if (!st) return PL_ESTORE;
    sqlite3_bind_text(st, 1, dev, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, cmid, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : PL_ESTORE;
}

int pl__store_ack(sqlite3 *db, int64_t local_id, const char *conv, int64_t seq, int64_t ts,
                  pl_msg *out)
{
    int dropped = pl__store_ctl_drop(db, local_id); /* a control message: done, not kept */
    if (dropped != 0) return dropped < 0 ? dropped : 0;
    /* A copy of the same message stored apart (it cannot happen through the (dev, cmid) check,
     * but a store must not end up with two rows for one (conv, seq)). */
    sqlite3_stmt *st =
        prep(db, "DELETE FROM messages WHERE conv = ? AND seq = ? AND local_id != ?");
    if (!st) return PL_ESTORE;
    sqlite3_bind_text(st, 1, conv, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, seq);
    sqlite3_bind_int64(st, 3, local_id);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return PL_ESTORE;
    st = prep(db, "UPDATE messages SET seq = ?, ts = ?, state = 1 "
                  "WHERE local_id = ? AND state IN (0, 2) AND conv = ?");
    if (!st) return PL_ESTORE;
    sqlite3_bind_int64(st, 1, seq);
    sqlite3_bind_int64(st, 2, ts);
    sqlite3_bind_int64(st, 3, local_id);
    sqlite3_bind_text(st, 4, conv, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return PL_ESTORE;
    if (sqlite3_changes(db) == 0) return 0;
    if (conv_advance(db, conv, seq, ts, false) != 0) return PL_ESTORE;
    int err = pl__store_msg_get(db, local_id, out);
    return err ? err : 1;
}

int pl__store_fail(sqlite3 *db, int64_t local_id, pl_msg *out)
{
    sqlite3_stmt *st = prep(db, "UPDATE messages SET state = 2 WHERE local_id = ? AND state = 0");
    if (!st) return PL_ESTORE;
    sqlite3_bind_int64(st, 1, local_id);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return PL_ESTORE;
    return pl__store_msg_get(db, local_id, out);
}

int pl__store_receipt(sqlite3 *db, const char *me, const char *conv, const char *user,
                      int64_t delivered, int64_t read)
{
    bool self = strcmp(user, me) == 0;
    if (conv_touch(db, conv, self ? "" : user) != 0) return PL_ESTORE;
    if (is_group(conv) && !self) {
        /* one member's markers; the conversation's are the lowest of the other members known */
        sqlite3_stmt *st = prep(
            db, "INSERT INTO members(conv, user, delivered, read) VALUES(?1, ?2, max(?3, ?4), ?4) "
                "ON CONFLICT(conv, user) DO UPDATE SET delivered = max(delivered, ?3, ?4), "
                "read = max(read, ?4)");
        if (!st) return PL_ESTORE;
        sqlite3_bind_text(st, 1, conv, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, user, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, delivered);
        sqlite3_bind_int64(st, 4, read);
        int rc = sqlite3_step(st);
        sqlite3_finalize(st);
        if (rc != SQLITE_DONE) return PL_ESTORE;
        st = prep(db, "UPDATE convs SET "
                      "peer_delivered = coalesce((SELECT min(delivered) FROM members "
                      "  WHERE conv = ?1 AND user != ?2), 0), "
                      "peer_read = coalesce((SELECT min(read) FROM members "
                      "  WHERE conv = ?1 AND user != ?2), 0) WHERE id = ?1");
        if (!st) return PL_ESTORE;
        sqlite3_bind_text(st, 1, conv, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, me, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
        sqlite3_finalize(st);
        if (rc != SQLITE_DONE) return PL_ESTORE;
        return 1;
    }
    /* Our own read marker moved on another device: nothing is unread here either. */
    const char *sql = self ? "UPDATE convs SET read_seq = max(read_seq, ?3), "
                             "read_sent = max(read_sent, ?3), "
                             "unread = CASE WHEN ?3 >= last_seq THEN 0 ELSE unread END "
                             "WHERE id = ?1 AND ?3 > read_seq"
                           : "UPDATE convs SET peer_delivered = max(peer_delivered, ?2, ?3), "
                             "peer_read = max(peer_read, ?3) "
                             "WHERE id = ?1 AND (?2 > peer_delivered OR ?3 > peer_read)";
    sqlite3_stmt *st = prep(db, sql);
    if (!st) return PL_ESTORE;
    sqlite3_bind_text(st, 1, conv, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, delivered);
    sqlite3_bind_int64(st, 3, read);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return PL_ESTORE;
    return sqlite3_changes(db) > 0;
}

/* -------------------------------------------------------------------------- conversations */

int pl__store_convs(sqlite3 *db, const char *conv, pl_conv **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    sqlite3_stmt *st =
        prep(db, "SELECT c.id, c.grp, c.peer, coalesce(nullif(c.name, ''), "
                 "nullif(u.display_name, ''), "
                 "nullif(u.username, ''), nullif(c.peer, ''), c.id), c.last_seq, c.last_ts, "
                 "c.read_seq, c.peer_delivered, c.peer_read, c.unread, "
                 "(SELECT count(*) FROM messages p WHERE p.conv = c.id AND p.state = 0 "
                 "  AND p.kind != 'ctl'), "
                 "(SELECT CASE WHEN l.kind = 'text' THEN json_extract(l.body, '$.text') "
                 "  ELSE '[' || l.kind || ']' END FROM messages l WHERE l.conv = c.id "
                 "  AND l.kind != 'ctl' "
                 "  ORDER BY l.local_id DESC LIMIT 1) "
                 "FROM convs c LEFT JOIN users u ON u.id = c.peer "
                 "WHERE ?1 IS NULL OR c.id = ?1 ORDER BY c.last_ts DESC, c.id");
    if (!st) return PL_ESTORE;
    if (conv) sqlite3_bind_text(st, 1, conv, -1, SQLITE_STATIC);
    size_t cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            pl_conv *p = realloc(*out, cap * sizeof *p);
            if (!p) {
                rc = SQLITE_NOMEM;
                break;
            }
            *out = p;
        }
        pl_conv *c = &(*out)[(*n)++];
        memset(c, 0, sizeof *c);
        copy(c->id, sizeof c->id, col_text(st, 0));
        c->group = sqlite3_column_int(st, 1) != 0;
        copy(c->peer, sizeof c->peer, col_text(st, 2));
        copy(c->title, sizeof c->title, col_text(st, 3));
        c->last_seq = sqlite3_column_int64(st, 4);
        c->last_ts = sqlite3_column_int64(st, 5);
        c->read_seq = sqlite3_column_int64(st, 6);
        c->peer_delivered = sqlite3_column_int64(st, 7);
        c->peer_read = sqlite3_column_int64(st, 8);
        c->unread = sqlite3_column_int(st, 9);
        c->pending = sqlite3_column_int(st, 10);
        /* cut the preview on a character boundary */
        const char *p = col_text(st, 11);
        size_t len = strlen(p);
        if (len >= sizeof c->preview) {
            len = sizeof c->preview - 1;
            while (len > 0 && ((unsigned char)p[len] & 0xC0) == 0x80) len--;
        }
        memcpy(c->preview, p, len);
        c->preview[len] = 0;
        for (char *q = c->preview; *q; q++)
            if (*q == '\n' || *q == '\t' || *q == '\r') *q = ' ';
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        free(*out);
        *out = NULL;
        *n = 0;
        return rc == SQLITE_NOMEM ? PL_ENOMEM : PL_ESTORE;
    }
    return 0;
}

int pl__store_mark_read(sqlite3 *db, const char *conv)
{
    sqlite3_stmt *st = prep(db, "UPDATE convs SET read_seq = last_seq, unread = 0 WHERE id = ?");
    if (!st) return PL_ESTORE;
    sqlite3_bind_text(st, 1, conv, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return PL_ESTORE;
    return sqlite3_changes(db) ? 0 : PL_ENOTFOUND;
}

int pl__store_take_reads(sqlite3 *db, void (*fn)(void *ud, const char *conv, int64_t upto),
                         void *ud)
{
    if (pl__store_begin(db) != 0) return PL_ESTORE;
    sqlite3_stmt *st = prep(db, "SELECT id, read_seq FROM convs WHERE read_seq > read_sent");
    int rc = SQLITE_ERROR;
    while (st && (rc = sqlite3_step(st)) == SQLITE_ROW)
        fn(ud, col_text(st, 0), sqlite3_column_int64(st, 1));
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE || exec(db, "UPDATE convs SET read_sent = read_seq "
                                      "WHERE read_seq > read_sent") != 0) {
        pl__store_rollback(db);
        return PL_ESTORE;
    }
    return pl__store_commit(db);
}

/* The markers and counts of one conversation, to tell what a merge changed. */
typedef struct conv_state {
    bool found;
    int64_t peer_delivered, peer_read, read_seq;
    int unread;
    char name[PL_NAME_MAX * 4];
} conv_state;

static int conv_state_get(sqlite3 *db, const char *conv, conv_state *cs)
{
    memset(cs, 0, sizeof *cs);
    sqlite3_stmt *st = prep(
        db, "SELECT peer_delivered, peer_read, read_seq, unread, name FROM convs WHERE id = ?");
    if (!st) return PL_ESTORE;
    sqlite3_bind_text(st, 1, conv, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        cs->found = true;
        cs->peer_delivered = sqlite3_column_int64(st, 0);
        cs->peer_read = sqlite3_column_int64(st, 1);
        cs->read_seq = sqlite3_column_int64(st, 2);
        cs->unread = sqlite3_column_int(st, 3);
        copy(cs->name, sizeof cs->name, col_text(st, 4));
    }
    sqlite3_finalize(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : PL_ESTORE;
}

int pl__store_conv_merge(sqlite3 *db, const char *me, json_t *cv, pl__merge *out)
{
    memset(out, 0, sizeof *out);
    const char *id = json_string_value(json_object_get(cv, "id"));
    if (!id || !*id) return PL_EPROTO;
    snprintf(out->conv, sizeof out->conv, "%s", id);
    const char *peer = json_string_value(json_object_get(cv, "peer"));
    const char *name = json_string_value(json_object_get(cv, "name"));
    int64_t read = json_integer_value(json_object_get(cv, "read_seq"));
    int64_t unread = json_integer_value(json_object_get(cv, "unread"));
    int64_t pdel = json_integer_value(json_object_get(cv, "peer_delivered_seq"));
    int64_t pread = json_integer_value(json_object_get(cv, "peer_read_seq"));
    int64_t last_ts = json_integer_value(json_object_get(json_object_get(cv, "last"), "ts"));
    conv_state before, after;
    if (conv_state_get(db, id, &before) != 0) return PL_ESTORE;
    if (peer && *peer && user_touch(db, peer) != 0) return PL_ESTORE;
    if (conv_touch(db, id, peer) != 0) return PL_ESTORE;
    if (is_group(id) && name && *name && conv_set_name(db, id, name) != 0) return PL_ESTORE;
    /* SQLite evaluates every expression against the row as it was before the UPDATE. The
     * unread count follows the server unless this device's read marker is ahead (not sent yet)
     * or the server counted messages this store does not hold yet (they arrive after this
     * answer and count themselves as they are stored: taking the server's count then would
     * count them twice). */
    int64_t srv_last = json_integer_value(json_object_get(cv, "last_seq"));
    sqlite3_stmt *st = prep(db, "UPDATE convs SET last_ts = max(last_ts, ?2), "
                                "read_seq = max(read_seq, ?3), read_sent = max(read_sent, ?3), "
                                "unread = CASE WHEN ?3 >= read_seq AND ?7 <= last_seq THEN ?4 "
                                "ELSE unread END, "
                                "peer_delivered = max(peer_delivered, ?5, ?6), "
                                "peer_read = max(peer_read, ?6) WHERE id = ?1");
    if (!st) return PL_ESTORE;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, last_ts);
    sqlite3_bind_int64(st, 3, read);
    sqlite3_bind_int64(st, 4, unread);
    sqlite3_bind_int64(st, 5, is_group(id) ? 0 : pdel);
    sqlite3_bind_int64(st, 6, is_group(id) ? 0 : pread);
    sqlite3_bind_int64(st, 7, srv_last);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE || conv_state_get(db, id, &after) != 0) return PL_ESTORE;
    (void)me;
    out->peer = peer && *peer ? true : false;
    if (out->peer) snprintf(out->user, sizeof out->user, "%s", peer);
    out->delivered_moved = after.peer_delivered > before.peer_delivered;
    out->read_moved = after.peer_read > before.peer_read;
    out->delivered = after.peer_delivered;
    out->read = after.peer_read;
    out->changed = !before.found || out->delivered_moved || out->read_moved ||
                   after.unread != before.unread || after.read_seq != before.read_seq ||
                   strcmp(after.name, before.name) != 0;
    return 0;
}

int pl__store_convs_merge(sqlite3 *db, const char *me, json_t *convs, pl__merge **moved, size_t *n)
{
    *n = 0;
    if (moved) *moved = NULL;
    if (!json_is_array(convs)) return PL_EPROTO;
    size_t cnt = json_array_size(convs);
    pl__merge *m = calloc(cnt ? cnt : 1, sizeof *m);
    if (!m) return PL_ENOMEM;
    if (pl__store_begin(db) != 0) {
        free(m);
        return PL_ESTORE;
    }
    int err = 0;
    for (size_t i = 0; !err && i < cnt; i++) {
        err = pl__store_conv_merge(db, me, json_array_get(convs, i), &m[*n]);
        if (err == PL_EPROTO) {
            err = 0;
            continue;
        }
        if (!err && m[*n].changed) (*n)++;
    }
    if (err || pl__store_commit(db) != 0) {
        pl__store_rollback(db);
        free(m);
        *n = 0;
        return err ? err : PL_ESTORE;
    }
    if (moved)
        *moved = m;
    else
        free(m);
    return 0;
}

void pl__store_user_label(sqlite3 *db, const char *me, const char *id, char *out, size_t cap)
{
    pl_user u;
    copy(out, cap, id);
    if (!id) return;
    if (me && strcmp(me, id) == 0) {
        char name[PL_NAME_MAX];
        if (pl__meta_get(db, "username", name, sizeof name) == 0 && name[0]) copy(out, cap, name);
        return;
    }
    if (pl__store_user_get(db, id, &u) != 0) return;
    if (u.username[0])
        copy(out, cap, u.username);
    else if (u.display_name[0])
        copy(out, cap, u.display_name);
}
