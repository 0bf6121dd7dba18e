/* publisher.c: the pipeline thread (InboundMessagePublisher).
 *
 * It drains the inbound queue in batches and writes each batch in one transaction: this group
 * commit is what makes durable messaging fast, since one commit covers many messages. Each item
 * runs inside its own savepoint so one bad item does not spoil the batch. Only after COMMIT are
 * results posted to the bus: an ack means the message is durable.
 *
 * This thread is the only writer of messages, inboxes and markers, so seq (per conversation) and
 * pos (per user) are gap-free by construction. REST calls that write messages (group changes
 * become system messages) run here too, as ITEM_REST. */
#include <assert.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "common/hmap.h"
#include "common/log.h"
#include "server/api/api.h"
#include "server/pipeline/pipeline.h"
#include "server/store/store.h"

struct pipeline {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    item *head, *tail;
    int64_t queued; /* items in head..tail */
    int64_t enough; /* a batch this large commits at once: BATCH_ENOUGH or batch_max if smaller */
    bool stop;
    store_t *st;
    server_t *srv;
};

static int64_t receipt_max; /* from the config, set at start */

#define BATCH_ENOUGH 64 /* a batch this large commits without waiting for more */

/* What the pipeline thread knows never changes once true, so that a direct message does not ask
 * the store again: users that exist (users are never deleted), direct conversations that exist
 * (with their two members; they are never deleted), and direct conversations that are end-to-end
 * encrypted (the flag is never cleared). Entries learnt inside an item that is rolled back, or a
 * batch that fails, could name rows that were never committed, so then the sets are emptied.
 * Only the pipeline thread touches them. */
#define KNOWN_MAX 200000
static hmap_t known_users, known_directs, known_e2e;
static bool known_added; /* an entry was learnt inside the current item */

static void known_clear(void)
{
    hmap_free(&known_users);
    hmap_free(&known_directs);
    hmap_free(&known_e2e);
    hmap_init(&known_users);
    hmap_init(&known_directs);
    hmap_init(&known_e2e);
}

static bool known(const hmap_t *set, const char *key)
{
    return hmap_get(set, key) != NULL;
}

static void learn(hmap_t *set, const char *key)
{
    if (set->count >= KNOWN_MAX) known_clear();
    hmap_put(set, key, (void *)1);
    known_added = true;
}

static const char *const STORE_FAILED = "The message could not be stored; resend it.";

static void clear_results(item *it)
{
    for (int i = 0; i < it->nmsgs; i++) st_msg_clear(&it->msgs[i]);
    free(it->msgs);
    free(it->deliv);
    for (int i = 0; i < it->nnotes; i++) free(it->notes[i].frame);
    free(it->notes);
    it->msgs = NULL;
    it->deliv = NULL;
    it->notes = NULL;
    it->nmsgs = it->ndeliv = it->nnotes = 0;
    it->invalidate[0] = 0;
}

void item_free(item *it)
{
    free(it->body);
    free(it->err_extra);
    clear_results(it);
    free(it);
}

static int fail(item *it, const char *code, const char *msg)
{
    it->err_code = code;
    it->err_msg = msg;
    return ST_ERR;
}

static st_msg *add_msg(item *it)
{
    st_msg *m = realloc(it->msgs, sizeof *m * (size_t)(it->nmsgs + 1));
    if (!m) abort();
    it->msgs = m;
    memset(&m[it->nmsgs], 0, sizeof *m);
    return &m[it->nmsgs++];
}

static void add_delivery(item *it, const char *user, int64_t pos, int msg)
{
    delivery *d = realloc(it->deliv, sizeof *d * (size_t)(it->ndeliv + 1));
    if (!d) abort();
    it->deliv = d;
    snprintf(d[it->ndeliv].user, ID_MAX, "%s", user);
    d[it->ndeliv].pos = pos;
    d[it->ndeliv].msg = msg;
    it->ndeliv++;
}

void pipeline_note(item *it, const char *user, const char *except_dev, char *frame)
{
    if (!frame) return;
    note *n = realloc(it->notes, sizeof *n * (size_t)(it->nnotes + 1));
    if (!n) abort();
    it->notes = n;
    snprintf(n[it->nnotes].user, ID_MAX, "%s", user);
    snprintf(n[it->nnotes].except_dev, ID_MAX, "%s", except_dev ? except_dev : "");
    n[it->nnotes].only_dev[0] = 0;
    n[it->nnotes].frame = frame;
    it->nnotes++;
}

void pipeline_note_dev(item *it, const char *user, const char *dev, char *frame)
{
    if (!frame) return;
    pipeline_note(it, user, NULL, frame);
    snprintf(it->notes[it->nnotes - 1].only_dev, ID_MAX, "%s", dev);
}

int pipeline_note_members(store_t *st, item *it, const char *conv, const char *skip_user,
                          json_t *frame)
{
    int n = 0;
    st_member *ms = store_member_all(st, conv, &n);
    if (!ms) return ST_ERR;
    if (n > receipt_max) { /* large groups: receipts on request only (GET .../receipts) */
        free(ms);
        return ST_OK;
    }
    char *s = json_dumps(frame, JSON_COMPACT);
    for (int i = 0; s && i < n; i++)
        if (!skip_user || strcmp(ms[i].user, skip_user) != 0)
            pipeline_note(it, ms[i].user, NULL, strdup(s));
    free(s);
    free(ms);
    return ST_OK;
}

/* The counters: each conversation's last_seq and each user's last_pos, kept here and written back
 * once per batch (and before any item that reads them from the store), instead of an UPDATE for
 * every message and recipient. This thread is their only writer, so what it holds is the truth;
 * the store gets it before the COMMIT that makes the rows using it visible. Changes inside an item
 * are logged so that an item rolled back to its savepoint gives its numbers back; a failed batch
 * drops every counter (they are read again from the store). */
typedef struct counter {
    int64_t val;
    bool dirty, conv; /* conv: a conversation's last_seq; else a user's last_pos */
    char id[ID_MAX];
} counter;

typedef struct undo {
    counter *c;
    int64_t val;
} undo;

static hmap_t counters;
static counter **dirty;
static size_t ndirty, dirty_cap;
static undo *undos;
static size_t nundo, undo_cap;

static void counter_free(void *ctx, const char *key, void *value)
{
    (void)ctx;
    (void)key;
    free(value);
}

static void counters_clear(void)
{
    hmap_each(&counters, counter_free, NULL);
    hmap_free(&counters);
    ndirty = nundo = 0;
}

/* Takes the next number of conv's seq or user's pos into *out. */
static int counter_next(store_t *st, const char *id, bool conv, int64_t *out)
{
    counter *c = hmap_get(&counters, id);
    if (!c) {
        int64_t v = 0;
        st_conv cv;
        int rc = conv ? store_conv_get(st, id, &cv) : store_user_head(st, id, &v);
        if (rc != ST_OK) return rc;
        c = calloc(1, sizeof *c);
        if (!c) abort();
        c->val = conv ? cv.last_seq : v;
        c->conv = conv;
        snprintf(c->id, sizeof c->id, "%s", id);
        hmap_put(&counters, id, c);
    }
    if (nundo == undo_cap) {
        undo_cap = undo_cap ? 2 * undo_cap : 64;
        undos = realloc(undos, undo_cap * sizeof *undos);
        if (!undos) abort();
    }
    undos[nundo++] = (undo){c, c->val};
    if (!c->dirty) {
        if (ndirty == dirty_cap) {
            dirty_cap = dirty_cap ? 2 * dirty_cap : 64;
            dirty = realloc(dirty, dirty_cap * sizeof *dirty);
            if (!dirty) abort();
        }
        dirty[ndirty++] = c;
        c->dirty = true;
    }
    *out = ++c->val;
    return ST_OK;
}

/* An item rolled back to its savepoint: its numbers are given back. */
static void counters_undo(void)
{
    while (nundo > 0) {
        nundo--;
        undos[nundo].c->val = undos[nundo].val;
    }
}

/* Writes every changed counter to the store (inside the batch's transaction). */
static int counters_flush(store_t *st)
{
    int rc = ST_OK;
    for (size_t i = 0; i < ndirty; i++) {
        counter *c = dirty[i];
        if (rc == ST_OK)
            rc = c->conv ? store_conv_set_last_seq(st, c->id, c->val)
                         : store_user_set_head(st, c->id, c->val);
        c->dirty = false;
    }
    ndirty = 0;
    return rc;
}

/* Writes the message and its inbox entries; members: the conversation's members when the caller
 * knows them (a direct conversation), or NULL to read them from the store. */
static int write_msg(store_t *st, item *it, const char *conv, const char *kind, const char *body,
                     int64_t reply_to, const char *const members[2])
{
    int idx = it->nmsgs;
    st_msg *m = add_msg(it);
    snprintf(m->conv, sizeof m->conv, "%s", conv);
    snprintf(m->from, sizeof m->from, "%s", it->user);
    snprintf(m->dev, sizeof m->dev, "%s", it->dev);
    if (idx == 0 && it->cmid[0])
        snprintf(m->cmid, sizeof m->cmid, "%s", it->cmid);
    else
        id_new(m->cmid, "s_"); /* server-made: unique, never resent */
    snprintf(m->kind, sizeof m->kind, "%s", kind);
    m->ts = it->now;
    m->reply_to = reply_to;
    m->body = strdup(body);
    if (!m->body) abort();
    int n = 0;
    st_member *ms = NULL;
    if (counter_next(st, conv, true, &m->seq) != ST_OK || store_msg_insert(st, m) != ST_OK)
        return fail(it, "internal", STORE_FAILED);
    if (members)
        n = 2;
    else if (!(ms = store_member_all(st, conv, &n)))
        return fail(it, "internal", STORE_FAILED);
    for (int i = 0; i < n; i++) {
        const char *user = members ? members[i] : ms[i].user;
        int64_t pos;
        if (counter_next(st, user, false, &pos) != ST_OK ||
            store_inbox_insert(st, user, pos, conv, m->seq) != ST_OK) {
            free(ms);
            return fail(it, "internal", STORE_FAILED);
        }
        add_delivery(it, user, pos, idx);
    }
    free(ms);
    return ST_OK;
}

int pipeline_write_msg(store_t *st, item *it, const char *conv, const char *kind, const char *body,
                       int64_t reply_to)
{
    int rc = write_msg(st, it, conv, kind, body, reply_to, NULL);
    /* the caller may read the conversation back (a REST reply): its counters go to the store */
    return rc == ST_OK ? counters_flush(st) : rc;
}

/* ---- e2e (E2E.md §4, §7.1) ---- */

/* Is conv end-to-end encrypted? Groups by their flag; direct conversations once every member has
 * an AIK (store_key_direct_e2e). */
static int conv_e2e(store_t *st, const char *conv, bool *yes)
{
    if (known(&known_e2e, conv)) {
        *yes = true;
        return ST_OK;
    }
    st_conv c;
    int rc = known(&known_directs, conv) ? ST_OK : store_conv_get(st, conv, &c);
    if (rc != ST_OK) return rc;
    if (known(&known_directs, conv) || strcmp(c.kind, "direct") == 0) {
        rc = store_key_direct_e2e(st, conv, yes);
        if (rc == ST_OK && *yes) learn(&known_e2e, conv);
        return rc;
    }
    *yes = c.e2e;
    return ST_OK;
}

/* D(conv): every device with a bundle of every current member, minus the sending device, as
 * lines "u:d\n"; by_user holds every member (also those without devices) for the 409 answer. */
typedef struct dconv {
    char **lines;
    size_t n, cap;
    json_t *by_user;
    const char *self_dev;
} dconv;

static char *dev_line(const char *user, const char *dev)
{
    size_t n = strlen(user) + strlen(dev) + 3;
    char *l = malloc(n);
    if (!l) abort();
    snprintf(l, n, "%s:%s\n", user, dev);
    return l;
}

static void dconv_add(void *ctx, const char *user, const char *dev)
{
    dconv *d = ctx;
    if (!json_object_get(d->by_user, user)) json_object_set_new(d->by_user, user, json_array());
    if (!dev[0] || strcmp(dev, d->self_dev) == 0) return;
    if (d->n == d->cap) {
        d->cap = d->cap ? 2 * d->cap : 16;
        d->lines = realloc(d->lines, d->cap * sizeof *d->lines);
        if (!d->lines) abort();
    }
    d->lines[d->n++] = dev_line(user, dev);
}

static int cmp_line(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b); /* bytewise, as unsigned char */
}

static void free_lines(char **l, size_t n)
{
    for (size_t i = 0; i < n; i++) free(l[i]);
    free(l);
}

/* The first 16 bytes of SHA-256 over the sorted lines of D(conv). */
static void dl_digest(const dconv *d, uint8_t out[16])
{
    crypto_hash_sha256_state h;
    uint8_t full[crypto_hash_sha256_BYTES];
    crypto_hash_sha256_init(&h);
    for (size_t i = 0; i < d->n; i++)
        crypto_hash_sha256_update(&h, (const uint8_t *)d->lines[i], strlen(d->lines[i]));
    crypto_hash_sha256_final(&h, full);
    memcpy(out, full, 16);
}

/* Checks the devs of an e2e body against D(conv) (E2E.md §7.1). Direct: the (u,d) pairs equal
 * D(conv), no g or dl. Group: g required, every entry in D(conv), no duplicates, dl the digest of
 * D(conv). ctl messages (RETRY) carry entries for some devices only: every entry in D(conv), no
 * duplicates. A mismatch fails with device_list_stale and D(conv) grouped by user. */
static int e2e_check(store_t *st, item *it, const char *conv, bool group)
{
    json_error_t e;
    json_t *body = json_loads(it->body, 0, &e);
    if (!json_is_object(body)) {
        json_decref(body);
        return fail(it, "internal", STORE_FAILED);
    }
    bool ctl = json_is_true(json_object_get(body, "ctl"));
    json_t *devs = json_object_get(body, "devs");
    const char *dl = json_string_value(json_object_get(body, "dl"));
    bool has_g = json_object_get(body, "g") != NULL;
    int rc = ST_OK;
    if (group && !ctl && (!has_g || !dl))
        rc = fail(it, "invalid_request", "A group e2e message needs body.g and body.dl.");
    else if (!group && (has_g || dl))
        rc = fail(it, "invalid_request", "A direct e2e message has no body.g and no body.dl.");
    if (rc != ST_OK) {
        json_decref(body);
        return rc;
    }
    dconv d = {.by_user = json_object(), .self_dev = it->dev};
    size_t ne = json_array_size(devs);
    char **got = calloc(ne + 1, sizeof *got);
    if (!got) abort();
    if (store_key_conv_devices(st, conv, dconv_add, &d) != ST_OK) {
        rc = fail(it, "internal", STORE_FAILED);
        goto out;
    }
    qsort(d.lines, d.n, sizeof *d.lines, cmp_line);
    for (size_t i = 0; i < ne; i++) {
        json_t *en = json_array_get(devs, i);
        const char *u = json_string_value(json_object_get(en, "u"));
        const char *dv = json_string_value(json_object_get(en, "d"));
        got[i] = dev_line(u ? u : "", dv ? dv : ""); /* both checked on the loop already */
    }
    qsort(got, ne, sizeof *got, cmp_line);
    bool stale = !group && !ctl && ne != d.n;
    for (size_t i = 0; !stale && i < ne; i++)
        stale = (i > 0 && strcmp(got[i], got[i - 1]) == 0) ||
                !bsearch(&got[i], d.lines, d.n, sizeof *d.lines, cmp_line);
    if (!stale && group && !ctl) {
        uint8_t want[16], have[16];
        size_t hn = 0;
        dl_digest(&d, want);
        stale = sodium_base642bin(have, sizeof have, dl, strlen(dl), NULL, &hn, NULL,
                                  sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
                hn != sizeof have || memcmp(have, want, sizeof have) != 0;
    }
    if (stale) {
        for (size_t i = 0; i < d.n; i++) { /* sorted lines: each user's devices in order */
            char *colon = strchr(d.lines[i], ':');
            *colon = 0;
            colon[strlen(colon + 1)] = 0; /* the \n */
            json_array_append_new(json_object_get(d.by_user, d.lines[i]), json_string(colon + 1));
        }
        json_t *x = json_pack("{s:O}", "devices", d.by_user);
        it->err_extra = json_dumps(x, JSON_COMPACT | JSON_SORT_KEYS);
        json_decref(x);
        rc = fail(it, "device_list_stale",
                  "The device list is out of date: encrypt for exactly the devices listed.");
    }
out:
    free_lines(got, ne);
    free_lines(d.lines, d.n);
    json_decref(d.by_user);
    json_decref(body);
    return rc;
}

/* A send: direct (the conversation is made on first use) or to a group the sender is in. */
static int do_send(store_t *st, item *it)
{
    st_msg found = {0};
    int rc = store_msg_find_cmid(st, it->dev, it->cmid, &found);
    if (rc == ST_OK) { /* a resend: the first ack again, no new message */
        *add_msg(it) = found;
        return ST_OK;
    }
    if (rc != ST_NOTFOUND) return fail(it, "internal", STORE_FAILED);
    char conv[ID_MAX];
    const char *direct[2] = {NULL, NULL};
    if (strncmp(it->to, "u_", 2) == 0) {
        if (!known(&known_users, it->to)) {
            st_user u;
            rc = store_user_get(st, it->to, &u);
            if (rc == ST_NOTFOUND)
                return fail(it, "no_such_user", "There is no user with that id.");
            if (rc != ST_OK) return fail(it, "internal", STORE_FAILED);
            learn(&known_users, it->to);
        }
        bool they_block = false, we_block = false;
        if (store_block_check(st, it->to, it->user, &they_block, &we_block) != ST_OK)
            return fail(it, "internal", STORE_FAILED);
        if (they_block) return fail(it, "blocked", "This user does not take your messages.");
        if (we_block) return fail(it, "blocked", "You blocked this user; unblock them first.");
        conv_direct_id(conv, it->user, it->to);
        if (!known(&known_directs, conv)) {
            if (store_conv_ensure_direct(st, conv, it->user, it->to, it->now) != ST_OK)
                return fail(it, "internal", STORE_FAILED);
            learn(&known_directs, conv);
        }
        direct[0] = it->user;
        direct[1] = it->to;
    } else {
        st_member me;
        rc = store_member_get(st, it->to, it->user, &me);
        if (rc == ST_NOTFOUND)
            return fail(it, "not_a_member", "You are not a member of this conversation.");
        if (rc != ST_OK) return fail(it, "internal", STORE_FAILED);
        snprintf(conv, sizeof conv, "%s", it->to);
    }
    if (it->reply_to > 0) {
        st_msg target;
        if (store_msg_get(st, conv, it->reply_to, &target) != ST_OK)
            return fail(it, "not_found", "reply_to names no message of this conversation.");
        st_msg_clear(&target);
    }
    bool e2e_only = false, is_e2e = strcmp(it->msg_kind, "e2e") == 0;
    if (conv_e2e(st, conv, &e2e_only) != ST_OK) return fail(it, "internal", STORE_FAILED);
    if (e2e_only && !is_e2e)
        return fail(it, "conversation_encrypted",
                    "This conversation is end-to-end encrypted: send kind e2e.");
    if (is_e2e && (rc = e2e_check(st, it, conv, it->to[0] == 'g')) != ST_OK) return rc;
    return write_msg(st, it, conv, it->msg_kind, it->body, it->reply_to,
                     direct[0] && strcmp(direct[0], direct[1]) != 0 ? direct : NULL);
}

/* edit, delete or react: the target is changed in place and the change becomes a new message, so
 * devices that were offline learn of it through sync. */
static int do_modify(store_t *st, item *it)
{
    st_member me;
    int rc = store_member_get(st, it->to, it->user, &me);
    if (rc == ST_NOTFOUND)
        return fail(it, "not_a_member", "You are not a member of this conversation.");
    if (rc != ST_OK) return fail(it, "internal", STORE_FAILED);
    bool e2e_only = false;
    if (strcmp(it->msg_kind, "delete") != 0 && conv_e2e(st, it->to, &e2e_only) != ST_OK)
        return fail(it, "internal", STORE_FAILED);
    if (e2e_only)
        return fail(it, "conversation_encrypted",
                    "In an end-to-end encrypted conversation edits and reactions travel inside "
                    "e2e messages.");
    st_msg target;
    rc = store_msg_get(st, it->to, it->reply_to, &target);
    if (rc == ST_NOTFOUND || (rc == ST_OK && target.seq < me.joined_seq)) {
        if (rc == ST_OK) st_msg_clear(&target);
        return fail(it, "not_found", "There is no message with that seq here.");
    }
    if (rc != ST_OK) return fail(it, "internal", STORE_FAILED);
    bool own = strcmp(target.from, it->user) == 0;
    bool content = strcmp(target.kind, "text") == 0 || strcmp(target.kind, "media") == 0 ||
                   strcmp(target.kind, "sticker") == 0 || strcmp(target.kind, "e2e") == 0;
    const char *op = it->msg_kind;
    json_t *change = json_pack("{s:I}", "seq", (json_int_t)target.seq);
    rc = ST_OK;
    if (strcmp(op, "reaction") == 0) {
        json_error_t e;
        json_t *b = json_loads(it->body, 0, &e);
        json_object_set(change, "emoji", json_object_get(b, "emoji"));
        json_decref(b);
        if (!content) rc = fail(it, "not_allowed", "Only messages can get reactions.");
    } else if (!own || !content) {
        rc = fail(it, "not_allowed", "Only your own messages can be edited or deleted.");
    } else if (strcmp(op, "edit") == 0) {
        if (strcmp(target.kind, "text") != 0)
            rc = fail(it, "not_allowed", "Only text messages can be edited.");
        else if (store_msg_update(st, it->to, target.seq, target.kind, it->body, it->now) != ST_OK)
            rc = fail(it, "internal", STORE_FAILED);
        json_error_t e;
        json_object_set_new(change, "body", json_loads(it->body, 0, &e));
    } else if (store_msg_update(st, it->to, target.seq, "deleted", "{}", it->now) != ST_OK) {
        rc = fail(it, "internal", STORE_FAILED);
    }
    st_msg_clear(&target);
    char *body = rc == ST_OK ? json_dumps(change, JSON_COMPACT) : NULL;
    json_decref(change);
    if (rc != ST_OK) return rc;
    rc = pipeline_write_msg(st, it, it->to, op, body, 0);
    free(body);
    return rc;
}

struct marker_ctx {
    store_t *st;
    item *it;
    int rc;
};

static json_t *receipt(const char *conv, const char *user, const char *what, int64_t seq)
{
    return json_pack("{s:s, s:s, s:s, s:I}", "type", "receipt", "conv", conv, "user", user, what,
                     (json_int_t)seq);
}

/* Moves the delivered marker of one conversation and tells the other members. */
static void move_delivered(void *ctx, const char *conv, int64_t seq)
{
    struct marker_ctx *mc = ctx;
    bool moved = false;
    if (mc->rc != ST_OK) return;
    if (store_marker_delivered(mc->st, conv, mc->it->user, seq, &moved) != ST_OK) {
        mc->rc = ST_ERR;
        return;
    }
    if (!moved) return;
    json_t *r = receipt(conv, mc->it->user, "delivered", seq);
    mc->rc = pipeline_note_members(mc->st, mc->it, conv, mc->it->user, r);
    json_decref(r);
}

static int do_recv(store_t *st, item *it)
{
    st_device d;
    int64_t head = 0;
    if (store_user_head(st, it->user, &head) != ST_OK)
        return fail(it, "internal", "The position could not be stored.");
    if (it->upto > head) it->upto = head; /* nothing beyond the newest entry can be held */
    if (store_device_get(st, it->dev, &d) != ST_OK ||
        store_device_ack(st, it->dev, it->upto, it->now) != ST_OK)
        return fail(it, "internal", "The position could not be stored.");
    if (it->upto <= d.acked_pos) return ST_OK;
    struct marker_ctx mc = {st, it, ST_OK};
    if (store_inbox_span(st, it->user, d.acked_pos, it->upto, move_delivered, &mc) != ST_OK ||
        mc.rc != ST_OK)
        return fail(it, "internal", "The position could not be stored.");
    return ST_OK;
}

static int do_read(store_t *st, item *it)
{
    st_member me;
    st_conv c;
    int rc = store_member_get(st, it->to, it->user, &me);
    if (rc == ST_NOTFOUND)
        return fail(it, "not_a_member", "You are not a member of this conversation.");
    if (rc != ST_OK || store_conv_get(st, it->to, &c) != ST_OK)
        return fail(it, "internal", "The read marker could not be stored.");
    int64_t upto = it->upto < c.last_seq ? it->upto : c.last_seq;
    it->upto = upto; /* named in the ack */
    bool moved = false, dmoved = false;
    if (store_marker_read(st, it->to, it->user, upto, &moved) != ST_OK ||
        store_marker_delivered(st, it->to, it->user, upto, &dmoved) != ST_OK)
        return fail(it, "internal", "The read marker could not be stored.");
    if (!moved) return ST_OK;
    json_t *r = receipt(it->to, it->user, "read", upto);
    if (dmoved) json_object_set_new(r, "delivered", json_integer(upto));
    /* the user's other devices: the conversation is read everywhere */
    pipeline_note(it, it->user, it->dev, json_dumps(r, JSON_COMPACT));
    rc = pipeline_note_members(st, it, it->to, it->user, r);
    json_decref(r);
    return rc == ST_OK ? ST_OK : fail(it, "internal", "The read marker could not be stored.");
}

static int do_item(struct pipeline *p, item *it)
{
    switch (it->kind) {
    case ITEM_SEND:
        return do_send(p->st, it);
    case ITEM_MODIFY:
        return do_modify(p->st, it);
    case ITEM_RECV:
        return do_recv(p->st, it);
    case ITEM_READ:
        return do_read(p->st, it);
    case ITEM_REST:
        return api_run_in_pipeline(it->req, p->st, it);
    }
    return ST_ERR;
}

static void fail_all(item *batch)
{
    log_error("pipeline: a batch failed to commit; its senders are told to resend");
    for (item *it = batch; it; it = it->next) {
        clear_results(it);
        free(it->err_extra);
        it->err_extra = NULL;
        fail(it, "internal", STORE_FAILED);
        if (it->kind == ITEM_REST)
            api_error(it->req, 500, "internal", "The change could not be stored; retry.");
    }
}

static void write_batch(struct pipeline *p, item *batch)
{
    int64_t now = now_ms();
    if (counters.count >= KNOWN_MAX) counters_clear(); /* nothing is dirty between batches */
    bool ok = store_begin(p->st) == ST_OK;
    for (item *it = batch; ok && it; it = it->next) {
        it->now = now;
        /* sends use the counters; everything else may read them from the store */
        if (it->kind != ITEM_SEND && counters_flush(p->st) != ST_OK) {
            ok = false;
            break;
        }
        if (store_savepoint(p->st) != ST_OK) {
            ok = false;
            break;
        }
        known_added = false;
        nundo = 0;
        if (do_item(p, it) == ST_OK) {
            if (store_release(p->st) != ST_OK) ok = false;
        } else {
            clear_results(it);
            if (!it->err_code) fail(it, "internal", STORE_FAILED);
            if (known_added) known_clear();
            counters_undo();
            if (store_rollback_to(p->st) != ST_OK) ok = false;
        }
    }
    if (ok && counters_flush(p->st) != ST_OK) ok = false;
    if (ok && store_commit(p->st) != ST_OK) ok = false;
    if (!ok) {
        store_rollback(p->st);
        known_clear();
        counters_clear();
        fail_all(batch);
    }
}

static void *run(void *arg)
{
    server_t *s = arg;
    struct pipeline *p = s->pipeline;
    int64_t max = s->cfg.batch_max, wait_us = s->cfg.batch_wait_us;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        while (!p->head && !p->stop) pthread_cond_wait(&p->cv, &p->mu);
        if (!p->head && p->stop) {
            pthread_mutex_unlock(&p->mu);
            break;
        }
        /* Group commit: a commit costs about the same for one message as for dozens (it writes
         * every page it changed), so a small batch waits up to batch_wait_us for company. */
        if (wait_us > 0 && p->queued < p->enough && !p->stop) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_nsec += wait_us * 1000;
            until.tv_sec += until.tv_nsec / 1000000000L;
            until.tv_nsec %= 1000000000L;
            while (p->queued < p->enough && !p->stop &&
                   pthread_cond_timedwait(&p->cv, &p->mu, &until) == 0) {
            }
        }
        item *batch = p->head, *last = p->head;
        int64_t n = 1;
        for (; n < max && last->next; n++) last = last->next;
        p->head = last->next;
        if (!p->head) p->tail = NULL;
        p->queued -= n;
        last->next = NULL;
        pthread_mutex_unlock(&p->mu);

        write_batch(p, batch);
        bus_post(s, batch);
    }
    return NULL;
}

int pipeline_start(server_t *s)
{
    struct pipeline *p = calloc(1, sizeof *p);
    if (!p) return -1;
    char err[256];
    if (store_open(&p->st, s->cfg.data, err, sizeof err) != ST_OK) {
        log_error("pipeline: %s", err);
        free(p);
        return -1;
    }
    if (store_writer_start(p->st) != ST_OK) {
        store_close(p->st);
        free(p);
        return -1;
    }
    p->srv = s;
    p->enough = s->cfg.batch_max < BATCH_ENOUGH ? s->cfg.batch_max : BATCH_ENOUGH;
    receipt_max = s->cfg.receipt_max;
    known_clear();
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    s->pipeline = p;
    if (pthread_create(&p->thread, NULL, run, s) != 0) {
        store_close(p->st);
        free(p);
        s->pipeline = NULL;
        return -1;
    }
    return 0;
}

void pipeline_stop(server_t *s)
{
    struct pipeline *p = s->pipeline;
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->thread, NULL);
    store_close(p->st);
    hmap_free(&known_users);
    hmap_free(&known_directs);
    hmap_free(&known_e2e);
    counters_clear();
    free(dirty);
    free(undos);
    dirty = NULL;
    undos = NULL;
    dirty_cap = undo_cap = 0;
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p);
    s->pipeline = NULL;
}

void pipeline_submit(server_t *s, item *it)
{
    struct pipeline *p = s->pipeline;
    it->next = NULL;
    pthread_mutex_lock(&p->mu);
    if (p->tail)
        p->tail->next = it;
    else
        p->head = it;
    p->tail = it;
    /* wake the thread for the first item and when a waiting batch has enough */
    if (++p->queued == 1 || p->queued == p->enough) pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}
