/* rest.c: parley-bench's REST side, run in the parent before the workers fork: registering the
 * users the connections log in as (POST /v1/accounts; start parleyd with --pwhash min so that this
 * is fast), and creating the groups of the fan-out scenario (POST /v1/groups).
 *
 * A small HTTP/1.1 client on libuv: `parallel` keep-alive connections take requests from one
 * list until it is done. Failed requests are retried in a later pass. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "pb.h"

typedef struct rreq {
    const char *method;
    char path[128];
    char *body;
    const char *token;
    int status; /* 0: not done, -1: transport failure */
    char *resp;
} rreq;

typedef struct rrun rrun;

typedef struct rconn {
    uv_tcp_t tcp;
    uv_connect_t creq;
    rrun *run;
    rreq *cur;
    buf_t in, out;
} rconn;

struct rrun {
    uv_loop_t loop;
    rreq **todo;
    int n, next, failures;
    struct sockaddr_in addr;
};

static void rc_start(rconn *rc);

static void on_rc_closed(uv_handle_t *h)
{
    rconn *rc = h->data;
    buf_free(&rc->in);
    buf_free(&rc->out);
    free(rc);
}

static void rc_close(rconn *rc, bool failed)
{
    rrun *run = rc->run;
    if (rc->cur) {
        rc->cur->status = -1;
        rc->cur = NULL;
    }
    if (failed) run->failures++;
    uv_close((uv_handle_t *)&rc->tcp, on_rc_closed);
    /* keep going with a fresh connection while work remains (bounded by the failure count) */
    if (run->next < run->n && run->failures < 200) {
        rconn *nc = calloc(1, sizeof *nc);
        if (!nc) abort();
        nc->run = run;
        rc_start(nc);
    }
}

/* Each request gets its own write request and bytes: an answer (and the next request) can come
 * before libuv has called back for the previous write. */
typedef struct wreq {
    uv_write_t w;
    rconn *rc;
    char data[];
} wreq;

static void on_rc_write(uv_write_t *w, int status)
{
    wreq *q = (wreq *)w;
    rconn *rc = q->rc;
    free(q);
    if (status < 0 && status != UV_ECANCELED && !uv_is_closing((uv_handle_t *)&rc->tcp))
        rc_close(rc, true);
}

static void rc_next(rconn *rc)
{
    rrun *run = rc->run;
    if (run->next >= run->n) {
        uv_close((uv_handle_t *)&rc->tcp, on_rc_closed);
        return;
    }
    rc->cur = run->todo[run->next++];
    rreq *q = rc->cur;
    rc->out.len = 0;
    size_t blen = q->body ? strlen(q->body) : 0;
    buf_printf(&rc->out, "%s %s HTTP/1.1\r\nHost: %s:%d\r\n", q->method, q->path, O.host, O.port);
    if (q->token) buf_printf(&rc->out, "Authorization: Bearer %s\r\n", q->token);
    if (q->body)
        buf_printf(&rc->out, "Content-Type: application/json\r\nContent-Length: %zu\r\n", blen);
    buf_append_str(&rc->out, "\r\n");
    if (blen) buf_append(&rc->out, q->body, blen);
    wreq *w = malloc(sizeof *w + rc->out.len);
    if (!w) abort();
    w->rc = rc;
    memcpy(w->data, rc->out.data, rc->out.len);
    uv_buf_t b = uv_buf_init(w->data, (unsigned)rc->out.len);
    if (uv_write(&w->w, (uv_stream_t *)&rc->tcp, &b, 1, on_rc_write) != 0) {
        free(w);
        rc_close(rc, true);
    }
}

static void rc_alloc(uv_handle_t *h, size_t sug, uv_buf_t *b)
{
    (void)h;
    static char mem[65536];
    (void)sug;
    *b = uv_buf_init(mem, sizeof mem);
}

static void rc_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    rconn *rc = s->data;
    if (nread < 0) {
        rc_close(rc, rc->cur != NULL);
        return;
    }
    buf_append(&rc->in, b->base, (size_t)nread);
    while (rc->cur) {
        buf_append(&rc->in, "", 1);
        rc->in.len--;
        char *d = (char *)rc->in.data;
        char *end = d ? strstr(d, "\r\n\r\n") : NULL;
        if (!end) return;
        size_t hlen = (size_t)(end + 4 - d);
        long clen = 0;
        char *cl = strcasestr(d, "\r\ncontent-length:");
        if (cl && cl < end) clen = strtol(cl + 17, NULL, 10);
        if (rc->in.len < hlen + (size_t)clen) return;
        rreq *q = rc->cur;
        q->status = d[0] == 'H' && strlen(d) > 12 ? atoi(d + 9) : -1;
        q->resp = strndup(d + hlen, (size_t)clen);
        bool close_after =
            strcasestr(d, "\r\nconnection: close") && strcasestr(d, "\r\nconnection: close") < end;
        buf_consume(&rc->in, hlen + (size_t)clen);
        rc->cur = NULL;
        if (close_after) {
            rc_close(rc, false);
            return;
        }
        rc_next(rc);
    }
}

static void on_rc_connect(uv_connect_t *req, int status)
{
    rconn *rc = req->data;
    if (status < 0) {
        rc_close(rc, true);
        return;
    }
    uv_read_start((uv_stream_t *)&rc->tcp, rc_alloc, rc_read);
    rc_next(rc);
}

static void rc_start(rconn *rc)
{
    uv_tcp_init(&rc->run->loop, &rc->tcp);
    rc->tcp.data = rc;
    rc->creq.data = rc;
    buf_init(&rc->in);
    buf_init(&rc->out);
    if (uv_tcp_connect(&rc->creq, &rc->tcp, (struct sockaddr *)&rc->run->addr, on_rc_connect) != 0)
        rc_close(rc, true);
}

/* Runs every request in reqs; up to 4 passes for those that failed in transport. */
static void rest_run(rreq *reqs, int n)
{
    for (int pass = 0; pass < 4; pass++) {
        rrun run = {0};
        run.todo = calloc((size_t)n + 1, sizeof *run.todo);
        if (!run.todo) abort();
        for (int i = 0; i < n; i++)
            if (reqs[i].status <= 0) {
                reqs[i].status = 0;
                run.todo[run.n++] = &reqs[i];
            }
        if (run.n == 0) {
            free(run.todo);
            return;
        }
        uv_loop_init(&run.loop);
        uv_ip4_addr(O.host, O.port, &run.addr);
        int par = O.rest_parallel < run.n ? O.rest_parallel : run.n;
        for (int i = 0; i < par; i++) {
            rconn *rc = calloc(1, sizeof *rc);
            if (!rc) abort();
            rc->run = &run;
            rc_start(rc);
        }
        uv_run(&run.loop, UV_RUN_DEFAULT);
        uv_loop_close(&run.loop);
        free(run.todo);
    }
}

static int load_cache(int n)
{
    if (!O.users[0]) return 0;
    FILE *f = fopen(O.users, "r");
    if (!f) return 0;
    int have = 0;
    char line[4096];
    while (have < n && fgets(line, sizeof line, f)) {
        char uid[64], tok[4000];
        if (sscanf(line, "%63s %3999s", uid, tok) != 2 || strlen(uid) >= sizeof U[0].uid) continue;
        snprintf(U[have].uid, sizeof U[have].uid, "%s", uid);
        U[have].token = strdup(tok);
        have++;
    }
    fclose(f);
    return have;
}

int rest_ensure_users(int n)
{
    int have = load_cache(n);
    if (have >= n) {
        say("users: %d taken from %s", n, O.users);
        return 0;
    }
    int need = n - have;
    rreq *reqs = calloc((size_t)need, sizeof *reqs);
    if (!reqs) abort();
    uint32_t tag = O.run_id;
    for (int i = 0; i < need; i++) {
        char body[256];
        snprintf(body, sizeof body,
                 "{\"username\":\"pb%08x_%d\",\"password\":\"bench-password\","
                 "\"device_name\":\"parley-bench\"}",
                 tag, have + i);
        reqs[i].method = "POST";
        snprintf(reqs[i].path, sizeof reqs[i].path, "/v1/accounts");
        reqs[i].body = strdup(body);
    }
    int64_t t0 = now_ns();
    rest_run(reqs, need);
    double secs = (double)(now_ns() - t0) / 1e9;
    int bad = 0;
    FILE *cache = O.users[0] ? fopen(O.users, "a") : NULL;
    for (int i = 0; i < need; i++) {
        rreq *q = &reqs[i];
        json_error_t err;
        json_t *o = q->status == 201 && q->resp ? json_loads(q->resp, 0, &err) : NULL;
        const char *uid = json_string_value(json_object_get(json_object_get(o, "user"), "id"));
        const char *tok = json_string_value(json_object_get(o, "token"));
        if (!uid || !tok) {
            if (bad++ < 3)
                fprintf(stderr, "parley-bench: registration failed: %d %s\n", q->status,
                        q->resp ? q->resp : "(no answer)");
        } else {
            int k = have + i;
            snprintf(U[k].uid, sizeof U[k].uid, "%s", uid);
            U[k].token = strdup(tok);
            if (cache) fprintf(cache, "%s %s\n", uid, tok);
        }
        json_decref(o);
        free(q->body);
        free(q->resp);
    }
    if (cache) fclose(cache);
    free(reqs);
    say("users: registered %d in %.1f s (%.0f/s)%s", need - bad, secs, (need - bad) / secs,
        have ? " (the rest from the cache)" : "");
    return bad ? -1 : 0;
}

int rest_create_groups(int groups, int size, bool *unsupported, char *why, size_t whylen)
{
    *unsupported = false;
    rreq *reqs = calloc((size_t)groups, sizeof *reqs);
    if (!reqs) abort();
    for (int g = 0; g < groups; g++) {
        buf_t b;
        buf_init(&b);
        buf_printf(&b, "{\"name\":\"bench %d\",\"members\":[", g);
        for (int m = 1; m < size; m++)
            buf_printf(&b, "%s\"%s\"", m > 1 ? "," : "", U[g * size + m].uid);
        buf_append(&b, "]}", 3);
        reqs[g].method = "POST";
        snprintf(reqs[g].path, sizeof reqs[g].path, "/v1/groups");
        reqs[g].body = (char *)b.data;
        reqs[g].token = U[g * size].token;
    }
    rest_run(reqs, groups);
    int bad = 0;
    for (int g = 0; g < groups; g++) {
        rreq *q = &reqs[g];
        json_error_t err;
        json_t *o = q->status == 201 && q->resp ? json_loads(q->resp, 0, &err) : NULL;
        const char *gid = json_string_value(json_object_get(o, "id"));
        if (q->status == 404 || q->status == 405) {
            *unsupported = true;
            snprintf(why, whylen, "POST /v1/groups answered %d: %s", q->status,
                     q->resp ? q->resp : "");
            bad++;
        } else if (!gid) {
            if (bad++ < 3)
                fprintf(stderr, "parley-bench: group creation failed: %d %s\n", q->status,
                        q->resp ? q->resp : "(no answer)");
            snprintf(why, whylen, "POST /v1/groups answered %d: %s", q->status,
                     q->resp ? q->resp : "(no answer)");
        } else {
            snprintf(GID[g], sizeof GID[g], "%s", gid);
        }
        json_decref(o);
        free(q->body);
        free(q->resp);
    }
    free(reqs);
    return bad ? -1 : 0;
}
