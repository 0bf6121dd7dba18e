/* test_social.c: receipts as markers, presence, typing, contacts, blocks, the conversation list
 * with unread counts and mute, and edit / delete / react. */
#include "lib/tassert.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static tsrv srv;
#define PORT (srv.port)

static int setup(void **state)
{
    (void)state;
    return tsrv_start(&srv, NULL, "--pwhash", "min", "--idle-timeout", "3000") == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    t_after_test();
    int rc = tsrv_stop(&srv);
    tsrv_cleanup(&srv);
    assert_int_equal(rc, 0);
    return 0;
}

/* The next frame of this type, skipping frames of the types in `skip` (comma list). */
static json_t *next_of(tws *ws, const char *type, const char *skip)
{
    for (;;) {
        json_t *m = tws_recv_json(ws, 0);
        if (!m) return NULL;
        const char *t = tj_str(m, "type");
        if (strcmp(t, type) == 0) return m;
        char pat[32];
        snprintf(pat, sizeof pat, ",%s,", t);
        char list[128];
        snprintf(list, sizeof list, ",%s,", skip);
        if (!strstr(list, pat)) {
            t_note("ws[%s]: want %s, got %s", ws->label, type, tj_dump(m));
            json_decref(m);
            return NULL;
        }
        json_decref(m);
    }
}

static json_t *req(const char *method, const char *path, const tuser *u, int *status,
                   const char *body)
{
    json_t *resp = NULL;
    assert_int_equal(thttp_req(PORT, method, path, u ? u->token : NULL, body, status, &resp), 0);
    return resp;
}

static json_t *send_text(tws *ws, const char *to, const char *text)
{
    char cmid[32];
    t_id(cmid, sizeof cmid, "s");
    json_t *ack = tws_send_msg(ws, to, cmid, text);
    assert_non_null(ack);
    return ack;
}

T_TEST(test_receipts_move_forward_and_reach_other_devices)
{
    tuser a, b1, b2;
    assert_int_equal(tuser_new(PORT, "ra", &a), 201);
    assert_int_equal(tuser_new(PORT, "rb", &b1), 201);
    assert_int_equal(tuser_login(PORT, b1.username, b1.password, &b2), 200);
    tws *wa = tws_live(PORT, &a, "a"), *wb1 = tws_live(PORT, &b1, "b1"),
        *wb2 = tws_live(PORT, &b2, "b2");
    assert_non_null(wa);
    assert_non_null(wb1);
    assert_non_null(wb2);
    int64_t last_pos = 0, conv_seq = 0;
    char conv[ID_MAX];
    for (int i = 0; i < 3; i++) {
        json_t *ack = send_text(wa, b1.id, "ticks");
        snprintf(conv, sizeof conv, "%s", tj_str(ack, "conv"));
        conv_seq = tj_int(ack, "seq");
        json_decref(ack);
        json_t *m = next_of(wb1, "msg", "presence");
        last_pos = tj_int(m, "pos");
        json_decref(m);
        m = next_of(wb2, "msg", "presence");
        json_decref(m);
    }
    /* b1 holds everything: a sees delivered up to the last seq */
    assert_int_equal(tws_sendp(wb1, "{s:s, s:I}", "type", "recv", "upto", (json_int_t)last_pos), 0);
    json_t *r = next_of(wa, "receipt", "presence");
    assert_non_null(r);
    assert_string_equal(tj_str(r, "conv"), conv);
    assert_string_equal(tj_str(r, "user"), b1.id);
    assert_int_equal(tj_int(r, "delivered"), conv_seq);
    json_decref(r);
    /* the same position again, from the other device: markers do not move, nothing is sent */
    assert_int_equal(tws_sendp(wb2, "{s:s, s:I}", "type", "recv", "upto", (json_int_t)last_pos), 0);
    /* read up to seq 2 on b1: a gets read 2, b2 (the user's other device) gets it too */
    assert_int_equal(tws_sendp(wb1, "{s:s, s:s, s:I}", "type", "read", "conv", conv, "upto",
                               (json_int_t)(conv_seq - 1)),
                     0);
    r = next_of(wa, "receipt", "presence");
    assert_int_equal(tj_int(r, "read"), conv_seq - 1);
    json_decref(r);
    r = next_of(wb2, "receipt", "presence");
    assert_non_null(r);
    assert_string_equal(tj_str(r, "user"), b1.id);
    assert_int_equal(tj_int(r, "read"), conv_seq - 1);
    json_decref(r);
    /* reading backwards does nothing */
    assert_int_equal(
        tws_sendp(wb2, "{s:s, s:s, s:I}", "type", "read", "conv", conv, "upto", (json_int_t)1), 0);
    assert_true(tws_silent(wa, 300));
    /* the markers as REST sees them */
    int st;
    char path[128];
    snprintf(path, sizeof path, "/v1/convs/%s/receipts", conv);
    json_t *rs = req("GET", path, &a, &st, NULL);
    assert_http_status(st, rs, 200);
    size_t i;
    json_t *x;
    bool found = false;
    json_array_foreach(tj_get(rs, "receipts"), i, x)
    {
        if (strcmp(tj_str(x, "user"), b1.id) != 0) continue;
        found = true;
        assert_int_equal(tj_int(x, "delivered"), conv_seq);
        assert_int_equal(tj_int(x, "read"), conv_seq - 1);
    }
    assert_true(found);
    json_decref(rs);
    /* b's conversation list: 1 unread (3 messages, read up to 2) */
    json_t *cl = req("GET", "/v1/convs", &b1, &st, NULL);
    assert_http_status(st, cl, 200);
    assert_string_equal(tj_str(cl, "convs.0.id"), conv);
    assert_int_equal(tj_int(cl, "convs.0.unread"), 1);
    assert_string_equal(tj_str(cl, "convs.0.peer"), a.id);
    assert_string_equal(tj_str(cl, "convs.0.last.body.text"), "ticks");
    json_decref(cl);
    tws_free(wa);
    tws_free(wb1);
    tws_free(wb2);
}

T_TEST(test_presence_and_typing)
{
    tuser a, b;
    assert_int_equal(tuser_new(PORT, "pa", &a), 201);
    assert_int_equal(tuser_new(PORT, "pb", &b), 201);
    int st;
    char path[128];
    /* friends: b invites, a accepts */
    snprintf(path, sizeof path, "/v1/contacts/%s", a.id);
    json_t *r = req("PUT", path, &b, &st, NULL);
    assert_http_status(st, r, 200);
    assert_string_equal(tj_str(r, "state"), "outgoing");
    json_decref(r);
    tws *wa = tws_live(PORT, &a, "a");
    assert_non_null(wa);
    snprintf(path, sizeof path, "/v1/contacts/%s", b.id);
    r = req("PUT", path, &a, &st, NULL);
    assert_http_status(st, r, 200);
    assert_string_equal(tj_str(r, "state"), "friend");
    json_decref(r);
    /* b comes online: a is told */
    tws *wb = tws_live(PORT, &b, "b");
    assert_non_null(wb);
    json_t *p = next_of(wa, "presence", "event");
    assert_non_null(p);
    assert_string_equal(tj_str(p, "user"), b.id);
    assert_string_equal(tj_str(p, "status"), "online");
    json_decref(p);
    /* b learns that a is here */
    p = next_of(wb, "presence", "event");
    assert_non_null(p);
    assert_string_equal(tj_str(p, "user"), a.id);
    json_decref(p);
    /* typing in their conversation */
    char conv[ID_MAX];
    json_t *ack = send_text(wa, b.id, "hi");
    snprintf(conv, sizeof conv, "%s", tj_str(ack, "conv"));
    json_decref(ack);
    json_decref(next_of(wb, "msg", "presence,event"));
    assert_int_equal(tws_sendp(wb, "{s:s, s:s, s:b}", "type", "typing", "conv", conv, "on", 1), 0);
    json_t *t = next_of(wa, "typing", "presence,event");
    assert_non_null(t);
    assert_string_equal(tj_str(t, "user"), b.id);
    assert_int_equal(tj_bool(t, "on"), 1);
    json_decref(t);
    /* never stored: the history has only the message */
    snprintf(path, sizeof path, "/v1/convs/%s/messages", conv);
    r = req("GET", path, &a, &st, NULL);
    assert_http_status(st, r, 200);
    assert_int_equal(json_array_size(tj_get(r, "messages")), 1);
    json_decref(r);
    /* away, then offline when the socket closes */
    assert_int_equal(tws_sendp(wb, "{s:s, s:s}", "type", "presence", "status", "away"), 0);
    p = next_of(wa, "presence", "event,typing");
    assert_string_equal(tj_str(p, "status"), "away");
    json_decref(p);
    tws_free(wb);
    p = next_of(wa, "presence", "event,typing");
    assert_non_null(p);
    assert_string_equal(tj_str(p, "status"), "offline");
    assert_true(tj_int(p, "last_seen_at") > 0);
    json_decref(p);
    /* a socket that dies silently: closed after idle_timeout (3 s here), then offline */
    wb = tws_live(PORT, &b, "b-silent");
    assert_non_null(wb);
    p = next_of(wa, "presence", "event,typing");
    assert_string_equal(tj_str(p, "status"), "online");
    json_decref(p);
    int64_t t0 = mono_ms();
    json_t *off = NULL;
    while (!off && mono_ms() - t0 < 8000) { /* a keeps pinging so only b is idle */
        assert_int_equal(tws_sendp(wa, "{s:s, s:s}", "type", "ping", "id", "keep"), 0);
        json_t *f = tws_recv_json(wa, 500);
        if (f && !strcmp(tj_str(f, "type"), "presence"))
            off = f;
        else
            json_decref(f);
        if (!off) t_sleep_ms(300);
    }
    assert_non_null(off);
    assert_string_equal(tj_str(off, "status"), "offline");
    assert_true(mono_ms() - t0 < 7000);
    json_decref(off);
    /* hide last seen */
    r = req("PATCH", "/v1/me", &b, &st, "{\"settings\":{\"hide_last_seen\":true}}");
    assert_http_status(st, r, 200);
    json_decref(r);
    tws *wb2 = tws_live(PORT, &b, "b2");
    json_decref(next_of(wa, "presence", "pong"));
    tws_free(wb2);
    p = next_of(wa, "presence", "pong");
    assert_string_equal(tj_str(p, "status"), "offline");
    assert_true(json_is_null(tj_get(p, "last_seen_at")));
    json_decref(p);
    tws_free(wb);
    tws_free(wa);
}

T_TEST(test_blocks_and_invitations)
{
    tuser a, b, c;
    assert_int_equal(tuser_new(PORT, "ba", &a), 201);
    assert_int_equal(tuser_new(PORT, "bb", &b), 201);
    assert_int_equal(tuser_new(PORT, "bc", &c), 201);
    int st;
    char path[128];
    tws *wb = tws_live(PORT, &b, "b");
    /* invitation: b is told, sees it incoming, declines */
    snprintf(path, sizeof path, "/v1/contacts/%s", b.id);
    json_t *r = req("PUT", path, &a, &st, NULL);
    assert_http_status(st, r, 200);
    json_decref(r);
    json_t *ev = next_of(wb, "event", "presence");
    assert_string_equal(tj_str(ev, "event"), "contact_invited");
    assert_string_equal(tj_str(ev, "user"), a.id);
    json_decref(ev);
    r = req("GET", "/v1/contacts", &b, &st, NULL);
    assert_http_status(st, r, 200);
    assert_string_equal(tj_str(r, "contacts.0.state"), "incoming");
    assert_string_equal(tj_str(r, "contacts.0.user.id"), a.id);
    json_decref(r);
    snprintf(path, sizeof path, "/v1/contacts/%s", a.id);
    r = req("DELETE", path, &b, &st, NULL);
    assert_int_equal(st, 204);
    json_decref(r);
    r = req("GET", "/v1/contacts", &a, &st, NULL);
    assert_int_equal(json_array_size(tj_get(r, "contacts")), 0);
    json_decref(r);
    /* b blocks a: a's messages and invitations are refused with blocked, b hears nothing */
    snprintf(path, sizeof path, "/v1/blocks/%s", a.id);
    r = req("PUT", path, &b, &st, NULL);
    assert_int_equal(st, 204);
    json_decref(r);
    tws *wa = tws_live(PORT, &a, "a");
    assert_int_equal(tws_sendp(wa, "{s:s, s:s, s:s, s:s, s:s, s:{s:s}}", "type", "send", "id", "x1",
                               "to", b.id, "cmid", "x1", "kind", "text", "body", "text", "hey"),
                     0);
    json_t *e = tws_expect_reply(wa, "error", "x1", 0);
    assert_string_equal(tj_str(e, "code"), "blocked");
    json_decref(e);
    snprintf(path, sizeof path, "/v1/contacts/%s", b.id);
    r = req("PUT", path, &a, &st, NULL);
    assert_http_error(st, r, 403, "blocked");
    json_decref(r);
    assert_true(tws_silent(wb, 300));
    r = req("GET", "/v1/blocks", &b, &st, NULL);
    assert_string_equal(tj_str(r, "blocks.0"), a.id);
    json_decref(r);
    /* unblock: messages flow again */
    snprintf(path, sizeof path, "/v1/blocks/%s", a.id);
    r = req("DELETE", path, &b, &st, NULL);
    assert_int_equal(st, 204);
    json_decref(r);
    json_t *ack = send_text(wa, b.id, "friends again?");
    json_decref(ack);
    json_t *m = next_of(wb, "msg", "presence");
    assert_string_equal(tj_str(m, "body.text"), "friends again?");
    json_decref(m);
    /* mute and notify settings, shown in the list */
    conv_direct_id(path, a.id, b.id);
    char p2[160];
    snprintf(p2, sizeof p2, "/v1/convs/%s/settings", path);
    r = req("PUT", p2, &b, &st, "{\"muted_until\":4102444800000,\"notify\":\"mentions\"}");
    assert_http_status(st, r, 200);
    json_decref(r);
    r = req("PUT", p2, &b, &st, "{\"notify\":\"sometimes\"}");
    assert_http_error(st, r, 400, "invalid_request");
    json_decref(r);
    r = req("PUT", p2, &c, &st, "{\"notify\":\"none\"}");
    assert_http_error(st, r, 403, "not_a_member");
    json_decref(r);
    r = req("GET", "/v1/convs", &b, &st, NULL);
    assert_int_equal(tj_int(r, "convs.0.muted_until"), 4102444800000LL);
    assert_string_equal(tj_str(r, "convs.0.notify"), "mentions");
    assert_int_equal(tj_int(r, "convs.0.unread"), 1);
    json_decref(r);
    tws_free(wa);
    tws_free(wb);
}

T_TEST(test_edit_delete_react)
{
    tuser a, b;
    assert_int_equal(tuser_new(PORT, "ea", &a), 201);
    assert_int_equal(tuser_new(PORT, "eb", &b), 201);
    tws *wa = tws_live(PORT, &a, "a"), *wb = tws_live(PORT, &b, "b");
    json_t *ack = send_text(wa, b.id, "helo");
    char conv[ID_MAX];
    snprintf(conv, sizeof conv, "%s", tj_str(ack, "conv"));
    int64_t seq = tj_int(ack, "seq");
    json_decref(ack);
    json_decref(next_of(wb, "msg", "presence"));
    /* b may not edit a's message; a may */
    assert_int_equal(tws_sendp(wb, "{s:s, s:s, s:s, s:I, s:{s:s}}", "type", "edit", "id", "e1",
                               "conv", conv, "seq", (json_int_t)seq, "body", "text", "hacked"),
                     0);
    json_t *e = tws_expect_reply(wb, "error", "e1", 0);
    assert_string_equal(tj_str(e, "code"), "not_allowed");
    json_decref(e);
    assert_int_equal(tws_sendp(wa, "{s:s, s:s, s:s, s:I, s:{s:s}}", "type", "edit", "id", "e2",
                               "conv", conv, "seq", (json_int_t)seq, "body", "text", "hello"),
                     0);
    ack = next_of(wa, "ack", "presence");
    assert_int_equal(tj_int(ack, "seq"), seq + 1);
    json_decref(ack);
    json_t *m = next_of(wb, "msg", "presence");
    assert_string_equal(tj_str(m, "kind"), "edit");
    assert_int_equal(tj_int(m, "body.seq"), seq);
    assert_string_equal(tj_str(m, "body.body.text"), "hello");
    json_decref(m);
    /* b reacts */
    assert_int_equal(tws_sendp(wb, "{s:s, s:s, s:s, s:I, s:s}", "type", "react", "id", "r1", "conv",
                               conv, "seq", (json_int_t)seq, "emoji", "\xf0\x9f\x91\x8d"),
                     0);
    ack = next_of(wb, "ack", "presence");
    assert_int_equal(tj_int(ack, "seq"), seq + 2);
    json_decref(ack);
    m = next_of(wa, "msg", "presence");
    assert_string_equal(tj_str(m, "kind"), "reaction");
    assert_string_equal(tj_str(m, "body.emoji"), "\xf0\x9f\x91\x8d");
    json_decref(m);
    /* a deletes; history shows the target as deleted, the edit as edited_at before it */
    assert_int_equal(tws_sendp(wa, "{s:s, s:s, s:s, s:I}", "type", "delete", "id", "d1", "conv",
                               conv, "seq", (json_int_t)seq),
                     0);
    ack = next_of(wa, "ack", "presence");
    assert_int_equal(tj_int(ack, "seq"), seq + 3);
    json_decref(ack);
    m = next_of(wb, "msg", "presence");
    assert_string_equal(tj_str(m, "kind"), "delete");
    json_decref(m);
    int st;
    char path[128];
    snprintf(path, sizeof path, "/v1/convs/%s/messages?limit=10", conv);
    json_t *h = req("GET", path, &b, &st, NULL);
    assert_http_status(st, h, 200);
    json_t *target = json_array_get(tj_get(h, "messages"), 3);
    assert_int_equal(tj_int(target, "seq"), seq);
    assert_string_equal(tj_str(target, "kind"), "deleted");
    assert_true(tj_int(target, "edited_at") > 0);
    json_decref(h);
    /* an offline device learns all of it through sync */
    tuser b2;
    assert_int_equal(tuser_login(PORT, b.username, b.password, &b2), 200);
    tws *w2 = tws_auth(PORT, b2.token, NULL);
    json_t *msgs = json_array();
    assert_int_equal(tws_sync_all(w2, 0, 100, msgs, NULL, NULL), 0);
    assert_int_equal(json_array_size(msgs), 4);
    assert_string_equal(tj_str(json_array_get(msgs, 3), "kind"), "delete");
    json_decref(msgs);
    tws_free(w2);
    tws_free(wa);
    tws_free(wb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_receipts_move_forward_and_reach_other_devices),
        cmocka_unit_test(test_presence_and_typing),
        cmocka_unit_test(test_blocks_and_invitations),
        cmocka_unit_test(test_edit_delete_react),
    };
    return cmocka_run_group_tests_name("social", tests, setup, teardown);
}
