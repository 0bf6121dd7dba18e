/* publisher.c: the pipeline thread (InboundMessagePublisher).
 *
 * It drains the inbound queue in batches and writes each batch in one transaction: this group
 * commit is what makes durable messaging fast, since one fsync-free WAL commit covers many
 * messages. Each item runs inside its own savepoint so one bad item does not spoil the batch.
 * Only after COMMIT are results posted to the bus: an ack means the message is durable.
 * This thread is the only writer of messages and inboxes, so seq and pos are gap-free by
 * construction (and asserted). */
#include <assert.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "server/pipeline/pipeline.h"
#include "server/store/store.h"

struct pipeline {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    item *head, *tail;
    bool stop;
    store_t *st;
};

void item_free(item *it)
{
    free(it->body);
    free(it->deliv);
    st_msg_clear(&it->msg);
    free(it);
}

static void add_delivery(item *it, const char *user, int64_t pos)
{
    delivery *d = realloc(it->deliv, sizeof *d * (size_t)(it->ndeliv + 1));
    if (!d) abort();
    it->deliv = d;
    snprintf(d[it->ndeliv].user, ID_MAX, "%s", user);
    d[it->ndeliv].pos = pos;
    it->ndeliv++;
}

static int fail(item *it, const char *code, const char *msg)
{
    it->err_code = code;
    it->err_msg = msg;
    return ST_ERR;
}

/* Writes one send inside the open transaction. */
static int do_send(store_t *st, item *it, int64_t now)
{
    st_msg *m = &it->msg;
    int rc = store_msg_find_cmid(st, it->dev, it->cmid, m);
    if (rc == ST_OK) return ST_OK; /* a resend: the first ack again, no new message */
    if (rc != ST_NOTFOUND)
        return fail(it, "internal", "The message could not be stored; resend it.");
    st_user u;
    rc = store_user_get(st, it->to, &u);
    if (rc == ST_NOTFOUND) return fail(it, "no_such_user", "There is no user with that id.");
    if (rc != ST_OK) return fail(it, "internal", "The message could not be stored; resend it.");

    conv_direct_id(m->conv, it->user, it->to);
    if (store_conv_ensure_direct(st, m->conv, it->user, it->to, now) != ST_OK ||
        store_conv_next_seq(st, m->conv, &m->seq) != ST_OK)
        return fail(it, "internal", "The message could not be stored; resend it.");
    snprintf(m->from, sizeof m->from, "%s", it->user);
    snprintf(m->dev, sizeof m->dev, "%s", it->dev);
    snprintf(m->cmid, sizeof m->cmid, "%s", it->cmid);
    snprintf(m->kind, sizeof m->kind, "%s", it->msg_kind);
    m->ts = now;
    m->reply_to = it->reply_to;
    m->body = it->body;
    it->body = NULL;
    if (store_msg_insert(st, m) != ST_OK)
        return fail(it, "internal", "The message could not be stored; resend it.");
    /* The recipient's inbox, and the sender's own (their other devices see what they sent). */
    const char *users[2] = {it->to, it->user};
    int nusers = strcmp(it->to, it->user) == 0 ? 1 : 2;
    for (int i = 0; i < nusers; i++) {
        int64_t pos;
        if (store_inbox_append(st, users[i], m->conv, m->seq, &pos) != ST_OK)
            return fail(it, "internal", "The message could not be stored; resend it.");
        add_delivery(it, users[i], pos);
    }
    return ST_OK;
}

static int do_item(store_t *st, item *it, int64_t now)
{
    if (it->kind == ITEM_RECV) {
        if (store_device_ack(st, it->dev, it->upto, now) != ST_OK)
            return fail(it, "internal", "The position could not be stored.");
        return ST_OK;
    }
    return do_send(st, it, now);
}

static void reset_results(item *it)
{
    /* A savepoint was rolled back: whatever this item computed is void. */
    free(it->deliv);
    it->deliv = NULL;
    it->ndeliv = 0;
    if (it->msg.body && !it->body) {
        it->body = it->msg.body;
        it->msg.body = NULL;
    }
    st_msg_clear(&it->msg);
    memset(&it->msg, 0, sizeof it->msg);
}

static void write_batch(struct pipeline *p, item *batch)
{
    int64_t now = now_ms();
    bool ok = store_begin(p->st) == ST_OK;
    for (item *it = batch; ok && it; it = it->next) {
        if (store_savepoint(p->st) != ST_OK) {
            ok = false;
            break;
        }
        if (do_item(p->st, it, now) == ST_OK) {
            if (store_release(p->st) != ST_OK) ok = false;
        } else {
            reset_results(it);
            if (!it->err_code) fail(it, "internal", "The message could not be stored; resend it.");
            if (store_rollback_to(p->st) != ST_OK) ok = false;
        }
    }
    if (ok && store_commit(p->st) != ST_OK) ok = false;
    if (!ok) {
        store_rollback(p->st);
        log_error("pipeline: a batch failed to commit; its senders are told to resend");
        for (item *it = batch; it; it = it->next) {
            reset_results(it);
            fail(it, "internal", "The message could not be stored; resend it.");
        }
    }
}

static void *run(void *arg)
{
    server_t *s = arg;
    struct pipeline *p = s->pipeline;
    int64_t max = s->cfg.batch_max;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        while (!p->head && !p->stop) pthread_cond_wait(&p->cv, &p->mu);
        if (!p->head && p->stop) {
            pthread_mutex_unlock(&p->mu);
            break;
        }
        item *batch = p->head, *last = p->head;
        for (int64_t n = 1; n < max && last->next; n++) last = last->next;
        p->head = last->next;
        if (!p->head) p->tail = NULL;
        last->next = NULL;
        pthread_mutex_unlock(&p->mu);

        int64_t t0 = mono_ms();
        write_batch(p, batch);
        log_debug("pipeline: batch written in %lld ms", (long long)(mono_ms() - t0));
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
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}
