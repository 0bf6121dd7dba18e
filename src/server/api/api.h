/* api.h: the REST side. The router (router.c) runs on the loop: it matches the route, then hands
 * the request to a worker thread, where the token is checked and the handler runs with a store
 * connection from the pool; the answer is written back on the loop. Handlers fill status and out
 * and never touch the conn. */
#ifndef PL_API_H
#define PL_API_H

#include <jansson.h>

#include "server/server.h"
#include "server/store/store.h"

typedef struct api_req api_req;
typedef void (*api_fn)(api_req *r, store_t *st);

struct api_req {
    uv_work_t w;
    conn_t *c;
    server_t *s;
    api_fn fn;
    bool need_auth;
    char method[12];
    char path[512];
    char query[1024];
    char param[ID_MAX];  /* the first {} segment of the route, if any */
    char param2[ID_MAX]; /* the second */
    char *authz;         /* Authorization header */
    buf_t body;
    bool has_body;
    char ip[48];
    bool keep_alive;
    /* set on the worker */
    json_t *in; /* the parsed body */
    char user[ID_MAX], dev[ID_MAX];
    int status;
    json_t *out;
    int retry_after;
    char kick_dev[ID_MAX];
    struct item *pitem; /* set when the handler runs on the pipeline thread */
};

void api_dispatch(conn_t *c);
/* Pipeline routes: runs the request inside the pipeline's transaction (pipeline thread).
 * Returns ST_OK when the handler succeeded, else an error so its savepoint is rolled back. */
int api_run_in_pipeline(api_req *r, store_t *st, struct item *it);
/* Answers the request on the loop and frees it. */
void api_complete(api_req *r);
/* Answers an HTTP error and closes the connection (malformed requests). */
void api_reply_error_close(conn_t *c, int status, const char *code, const char *msg);
/* The same with extra header lines ("Name: value\r\n"). */
void api_reply_error_close_hdr(conn_t *c, int status, const char *extra, const char *code,
                               const char *msg);

/* For handlers: set r->status and an error body. Returns nothing useful; handlers return after. */
void api_error(api_req *r, int status, const char *code, const char *msg);
void api_ok(api_req *r, int status, json_t *out);
/* The value of a query parameter, URL-decoded, into out; false when absent or too long. */
bool api_query(const api_req *r, const char *name, char *out, size_t outlen);

/* accounts.c */
void h_accounts_create(api_req *r, store_t *st);
void h_sessions_create(api_req *r, store_t *st);
void h_sessions_delete(api_req *r, store_t *st);
/* users.c */
void h_me_get(api_req *r, store_t *st);
void h_me_patch(api_req *r, store_t *st);
void h_user_get(api_req *r, store_t *st);
void h_users_search(api_req *r, store_t *st);
void h_devices_list(api_req *r, store_t *st);
void h_device_delete(api_req *r, store_t *st);
/* groups.c (pipeline routes) */
void h_group_create(api_req *r, store_t *st);
void h_group_patch(api_req *r, store_t *st);
void h_group_add(api_req *r, store_t *st);
void h_group_member_patch(api_req *r, store_t *st);
void h_group_member_delete(api_req *r, store_t *st);
void h_group_get(api_req *r, store_t *st);
/* convs.c */
void h_convs_list(api_req *r, store_t *st);
void h_conv_messages(api_req *r, store_t *st);
void h_conv_settings(api_req *r, store_t *st);
void h_conv_receipts(api_req *r, store_t *st);
/* contacts.c (the writes are pipeline routes: they send events) */
void h_contacts_list(api_req *r, store_t *st);
void h_contact_put(api_req *r, store_t *st);
void h_contact_delete(api_req *r, store_t *st);
void h_blocks_list(api_req *r, store_t *st);
void h_block_put(api_req *r, store_t *st);
void h_block_delete(api_req *r, store_t *st);
/* keys.c: the key directory of end-to-end encryption (E2E.md §4). Bundle and claim are
 * pipeline routes (they send events); so are device removal and log-out, which wrap
 * h_device_delete and h_sessions_delete to tell the user's other devices (devices_changed). */
void h_keys_identity_put(api_req *r, store_t *st);
void h_keys_bundle_put(api_req *r, store_t *st);
void h_keys_prekeys_post(api_req *r, store_t *st);
void h_keys_prekeys_get(api_req *r, store_t *st);
void h_keys_claim(api_req *r, store_t *st);
void h_keys_link_put(api_req *r, store_t *st);
void h_keys_link_get(api_req *r, store_t *st);
void h_user_devices(api_req *r, store_t *st);
void h_keys_device_delete(api_req *r, store_t *st);
void h_keys_session_delete(api_req *r, store_t *st);
json_t *user_public_json(const st_user *u);
json_t *user_me_json(const st_user *u);
json_t *device_json(const st_device *d, const char *current);

#endif
