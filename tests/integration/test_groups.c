/* test_groups.c: groups over REST and WebSocket: fan-out to every device of every member in one
 * seq order (offline devices included), removal, roles, and every group and conversation call
 * tried by someone who may not make it. */
#include "lib/tassert.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>

TSRV_FIXTURE(srv)
#define PORT (srv.port)

/* The next frame of the given type, skipping presence, typing, receipt and event frames (they
 * arrive whenever fellow members come and go). NULL on timeout. */
static json_t *next_of(tws *ws, const char *type)
{
    for (;;) {
        json_t *m = tws_recv_json(ws, 0);
        if (!m) return NULL;
        const char *t = tj_str(m, "type");
        if (strcmp(t, type) == 0) return m;
        bool async = !strcmp(t, "presence") || !strcmp(t, "typing") || !strcmp(t, "receipt") ||
                     !strcmp(t, "event");
        if (!async) {
            t_note("ws[%s]: want %s, got %s", ws->label, type, tj_dump(m));
            json_decref(m);
            return NULL;
        }
        json_decref(m);
    }
}

/* No msg frame arrives within ms (other frames are skipped). */
static bool no_msg(tws *ws, int ms)
{
    int64_t end = mono_ms() + ms;
    while (mono_ms() < end) {
        tws_msg m;
        int rc = tws_recv(ws, &m, (int)(end - mono_ms()) + 1);
        if (rc == T_TIMEOUT) return true;
        if (rc != 0) return false;
        bool is_msg = m.opcode == WS_TEXT && strstr((char *)m.data, "\"type\":\"msg\"");
        if (is_msg) t_note("ws[%s]: unexpected %s", ws->label, (char *)m.data);
        tws_msg_free(&m);
        if (is_msg) return false;
    }
    return true;
}

static json_t *req(const char *method, const char *path, const tuser *u, int *status,
                   const char *body)
{
    json_t *resp = NULL;
    assert_int_equal(thttp_req(PORT, method, path, u ? u->token : NULL, body, status, &resp), 0);
    return resp;
}

/* Creates a group owned by owner with the given members; returns its id in gid. */
static void make_group(const tuser *owner, const tuser **members, int n, char gid[ID_MAX])
{
    json_t *ids = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(ids, json_string(members[i]->id));
    json_t *b = json_pack("{s:s, s:o}", "name", "Team \xe2\x98\x85", "members", ids);
    char *body = json_dumps(b, JSON_COMPACT);
    json_decref(b);
    int st;
    json_t *g = req("POST", "/v1/groups", owner, &st, body);
    free(body);
    assert_http_status(st, g, 201);
    assert_string_equal(tj_str(g, "name"), "Team \xe2\x98\x85");
    assert_int_equal(tj_int(g, "last_seq"), 1); /* the "created" system message */
    assert_int_equal(json_array_size(tj_get(g, "members")), (size_t)n + 1);
    size_t i;
    json_t *m;
    int owners = 0;
    json_array_foreach(tj_get(g, "members"), i, m)
    {
        bool is_owner = strcmp(tj_str(m, "user"), owner->id) == 0;
        assert_string_equal(tj_str(m, "role"), is_owner ? "owner" : "member");
        owners += is_owner;
    }
    assert_int_equal(owners, 1);
    snprintf(gid, ID_MAX, "%s", tj_str(g, "id"));
    assert_true(id_valid(gid, "g_"));
    json_decref(g);
}

static json_t *send_to(tws *ws, const char *to, const char *text)
{
    char cmid[32];
    t_id(cmid, sizeof cmid, "g");
    json_t *ack = tws_send_msg(ws, to, cmid, text);
    assert_non_null(ack);
    return ack;
}

/* Reads msg frames until one with this seq; checks the system event on the way. */
static json_t *expect_seq(tws *ws, int64_t seq)
{
    json_t *m = next_of(ws, "msg");
    assert_non_null(m);
    if (tj_int(m, "seq") != seq)
        t_note("ws[%s]: want seq %lld, got %s", ws->label, (long long)seq, tj_dump(m));
    assert_int_equal(tj_int(m, "seq"), seq);
    return m;
}

T_TEST(test_group_fanout_every_device)
{
    tuser u[3][2];
    tws *ws[3][2];
    for (int i = 0; i < 3; i++) {
        assert_int_equal(tuser_new(PORT, "gm", &u[i][0]), 201);
        assert_int_equal(tuser_login(PORT, u[i][0].username, u[i][0].password, &u[i][1]), 200);
    }
    /* device 1 of user 2 stays offline until the end */
    for (int i = 0; i < 3; i++)
        for (int d = 0; d < 2; d++) {
            ws[i][d] = NULL;
            if (i == 2 && d == 1) continue;
            char label[32];
            snprintf(label, sizeof label, "u%dd%d", i, d);
            ws[i][d] = tws_live(PORT, &u[i][d], label);
            assert_non_null(ws[i][d]);
        }
    const tuser *members[2] = {&u[1][0], &u[2][0]};
    char gid[ID_MAX];
    make_group(&u[0][0], members, 2, gid);
    /* seq 1 is the "created" system message: every connected device gets it */
    for (int i = 0; i < 3; i++)
        for (int d = 0; d < 2; d++) {
            if (!ws[i][d]) continue;
            json_t *m = expect_seq(ws[i][d], 1);
            assert_string_equal(tj_str(m, "kind"), "system");
            assert_string_equal(tj_str(m, "body.event"), "created");
            assert_string_equal(tj_str(m, "body.by"), u[0][0].id);
            json_decref(m);
        }
    /* 12 messages from every member and device, interleaved */
    int64_t seq = 1;
    for (int k = 0; k < 12; k++) {
        int i = k % 3, d = (k / 3) % 2;
        if (!ws[i][d]) d = 0;
        char text[32];
        snprintf(text, sizeof text, "group message %d", k);
        json_t *ack = send_to(ws[i][d], gid, text);
        assert_string_equal(tj_str(ack, "conv"), gid);
        assert_int_equal(tj_int(ack, "seq"), ++seq);
        json_decref(ack);
        for (int j = 0; j < 3; j++)
            for (int e = 0; e < 2; e++) {
                if (!ws[j][e] || (j == i && e == d)) continue; /* the sender has the ack */
                json_t *m = expect_seq(ws[j][e], seq);
                assert_string_equal(tj_str(m, "conv"), gid);
                assert_string_equal(tj_str(m, "from"), u[i][0].id);
                assert_string_equal(tj_str(m, "body.text"), text);
                json_decref(m);
            }
    }
    for (int i = 0; i < 3; i++)
        for (int d = 0; d < 2; d++)
            if (ws[i][d]) assert_true(no_msg(ws[i][d], i == 0 && d == 0 ? 300 : 30));
    /* the offline device syncs: the same 13 messages, in seq order, once each */
    int64_t head;
    tws *late = tws_auth(PORT, u[2][1].token, &head);
    assert_non_null(late);
    json_t *msgs = json_array();
    assert_int_equal(tws_sync_all(late, 0, 5, msgs, NULL, NULL), 0);
    size_t n = 0, i;
    json_t *m;
    json_array_foreach(msgs, i, m)
    {
        if (strcmp(tj_str(m, "conv"), gid) != 0) continue;
        assert_int_equal(tj_int(m, "seq"), (int64_t)++n);
    }
    assert_int_equal(n, 13);
    json_decref(msgs);
    tws_free(late);
    for (int x = 0; x < 3; x++)
        for (int d = 0; d < 2; d++) tws_free(ws[x][d]);
}

T_TEST(test_group_removal_and_roles)
{
    tuser owner, admin, member, outsider;
    assert_int_equal(tuser_new(PORT, "own", &owner), 201);
    assert_int_equal(tuser_new(PORT, "adm", &admin), 201);
    assert_int_equal(tuser_new(PORT, "mem", &member), 201);
    assert_int_equal(tuser_new(PORT, "out", &outsider), 201);
    const tuser *ms[2] = {&admin, &member};
    char gid[ID_MAX], path[128], body[256];
    make_group(&owner, ms, 2, gid);
    int st;
    json_t *r;
    /* a plain member doing an admin's job */
    snprintf(path, sizeof path, "/v1/groups/%s", gid);
    r = req("PATCH", path, &member, &st, "{\"name\":\"mine\"}");
    assert_http_error(st, r, 403, "forbidden");
    json_decref(r);
    snprintf(path, sizeof path, "/v1/groups/%s/members", gid);
    snprintf(body, sizeof body, "{\"users\":[\"%s\"]}", outsider.id);
    r = req("POST", path, &member, &st, body);
    assert_http_error(st, r, 403, "forbidden");
    json_decref(r);
    snprintf(path, sizeof path, "/v1/groups/%s/members/%s", gid, admin.id);
    r = req("PATCH", path, &member, &st, "{\"role\":\"member\"}");
    assert_http_error(st, r, 403, "forbidden");
    json_decref(r);
    r = req("DELETE", path, &member, &st, NULL);
    assert_http_error(st, r, 403, "forbidden");
    json_decref(r);
    /* the owner makes admin an admin; the admin may then rename, but not remove the owner */
    r = req("PATCH", path, &owner, &st, "{\"role\":\"admin\"}");
    assert_int_equal(st, 204);
    json_decref(r);
    snprintf(path, sizeof path, "/v1/groups/%s", gid);
    snprintf(path, sizeof path, "/v1/groups/%s", gid);
    json_t *before = req("GET", path, &admin, &st, NULL);
    assert_http_status(st, before, 200);
    r = req("PATCH", path, &admin, &st, "{\"name\":\"Renamed\"}");
    assert_http_status(st, r, 200);
    assert_string_equal(tj_str(r, "name"), "Renamed");
    /* the reply counts the "renamed" system message it wrote */
    assert_int_equal(tj_int(r, "last_seq"), tj_int(before, "last_seq") + 1);
    json_decref(before);
    json_decref(r);
    snprintf(path, sizeof path, "/v1/groups/%s/members/%s", gid, owner.id);
    r = req("DELETE", path, &admin, &st, NULL);
    assert_http_error(st, r, 403, "forbidden");
    json_decref(r);
    /* an outsider: every group and conversation call is refused */
    const char *calls[][3] = {{"GET", "/v1/groups/%s", NULL},
                              {"PATCH", "/v1/groups/%s", "{\"name\":\"x\"}"},
                              {"POST", "/v1/groups/%s/members", "{\"users\":[]}"},
                              {"GET", "/v1/convs/%s/messages", NULL},
                              {"GET", "/v1/convs/%s/receipts", NULL},
                              {"PUT", "/v1/convs/%s/settings", "{\"notify\":\"none\"}"}};
    for (size_t k = 0; k < sizeof calls / sizeof calls[0]; k++) {
        snprintf(path, sizeof path, calls[k][1], gid);
        r = req(calls[k][0], path, &outsider, &st, calls[k][2]);
        assert_http_error(st, r, 403, "not_a_member");
        json_decref(r);
    }
    snprintf(path, sizeof path, "/v1/groups/%s/members/%s", gid, member.id);
    r = req("DELETE", path, &outsider, &st, NULL);
    assert_http_error(st, r, 403, "not_a_member");
    json_decref(r);
    tws *wo = tws_live(PORT, &outsider, "out");
    assert_non_null(wo);
    assert_int_equal(tws_sendp(wo, "{s:s, s:s, s:s, s:s, s:s, s:{s:s}}", "type", "send", "id", "o1",
                               "to", gid, "cmid", "o1", "kind", "text", "body", "text",
                               "let me in"),
                     0);
    json_t *e = tws_expect_reply(wo, "error", "o1", 0);
    assert_string_equal(tj_str(e, "code"), "not_a_member");
    json_decref(e);

    /* removal: the member sees the notice, then nothing; send and history are refused */
    tws *wm = tws_live(PORT, &member, "mem"), *wa = tws_live(PORT, &admin, "adm");
    assert_non_null(wm);
    assert_non_null(wa);
    snprintf(path, sizeof path, "/v1/groups/%s/members/%s", gid, member.id);
    r = req("DELETE", path, &admin, &st, NULL);
    assert_int_equal(st, 204);
    json_decref(r);
    json_t *m = next_of(wm, "msg");
    assert_non_null(m);
    assert_string_equal(tj_str(m, "body.event"), "removed");
    assert_string_equal(tj_str(m, "body.user"), member.id);
    json_decref(m);
    m = next_of(wa, "msg");
    assert_string_equal(tj_str(m, "body.event"), "removed");
    json_decref(m);
    json_t *ack = send_to(wa, gid, "after the removal");
    json_decref(ack);
    assert_true(no_msg(wm, 300));
    assert_int_equal(tws_sendp(wm, "{s:s, s:s, s:s, s:s, s:s, s:{s:s}}", "type", "send", "id", "m1",
                               "to", gid, "cmid", "m1", "kind", "text", "body", "text",
                               "still here?"),
                     0);
    e = tws_expect_reply(wm, "error", "m1", 0);
    assert_string_equal(tj_str(e, "code"), "not_a_member");
    json_decref(e);
    snprintf(path, sizeof path, "/v1/convs/%s/messages", gid);
    r = req("GET", path, &member, &st, NULL);
    assert_http_error(st, r, 403, "not_a_member");
    json_decref(r);
    /* the owner's history has everything, newest first */
    r = req("GET", path, &owner, &st, NULL);
    assert_http_status(st, r, 200);
    json_t *arr = tj_get(r, "messages");
    assert_true(json_array_size(arr) >= 4);
    assert_string_equal(tj_str(json_array_get(arr, 0), "body.text"), "after the removal");
    assert_string_equal(tj_str(json_array_get(arr, json_array_size(arr) - 1), "body.event"),
                        "created");
    json_decref(r);
    /* the owner leaves: the admin becomes owner */
    snprintf(path, sizeof path, "/v1/groups/%s/members/%s", gid, owner.id);
    r = req("DELETE", path, &owner, &st, NULL);
    assert_int_equal(st, 204);
    json_decref(r);
    snprintf(path, sizeof path, "/v1/groups/%s", gid);
    r = req("GET", path, &admin, &st, NULL);
    assert_http_status(st, r, 200);
    assert_int_equal(json_array_size(tj_get(r, "members")), 1);
    assert_string_equal(tj_str(r, "members.0.role"), "owner");
    json_decref(r);
    tws_free(wo);
    tws_free(wm);
    tws_free(wa);
}

static int count_inbox(const char *conv, int64_t seq)
{
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/parley.db", srv.dir);
    sqlite3 *db;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *s;
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT count(*) FROM inbox WHERE conv_id=?1 AND seq=?2",
                                        -1, &s, NULL),
                     SQLITE_OK);
    sqlite3_bind_text(s, 1, conv, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 2, seq);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    int n = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return n;
}

T_TEST(test_group_of_1000)
{
    enum { N = 1000 };
    tuser *u = calloc(N, sizeof *u);
    tws **ws = calloc(N, sizeof *ws);
    assert_non_null(u);
    for (int i = 0; i < N; i++) assert_int_equal(tuser_new(PORT, "k", &u[i]), 201);
    /* create with 499, add the other 500 */
    json_t *ids = json_array(), *more = json_array();
    for (int i = 1; i < N; i++) json_array_append_new(i < 500 ? ids : more, json_string(u[i].id));
    json_t *b = json_pack("{s:s, s:o}", "name", "big", "members", ids);
    char *body = json_dumps(b, JSON_COMPACT);
    json_decref(b);
    int st;
    json_t *g = req("POST", "/v1/groups", &u[0], &st, body);
    free(body);
    assert_http_status(st, g, 201);
    char gid[ID_MAX], path[128];
    snprintf(gid, sizeof gid, "%s", tj_str(g, "id"));
    json_decref(g);
    b = json_pack("{s:o}", "users", more);
    body = json_dumps(b, JSON_COMPACT);
    json_decref(b);
    snprintf(path, sizeof path, "/v1/groups/%s/members", gid);
    g = req("POST", path, &u[0], &st, body);
    free(body);
    assert_http_status(st, g, 200);
    assert_int_equal(json_array_size(tj_get(g, "added")), 500);
    json_decref(g);
    for (int i = 0; i < N; i++) {
        ws[i] = tws_live(PORT, &u[i], "k");
        if (!ws[i]) {
            /* the two system messages may arrive during the sync: accept them there */
            ws[i] = tws_auth(PORT, u[i].token, NULL);
            assert_non_null(ws[i]);
            json_t *msgs = json_array();
            assert_int_equal(tws_sync_all(ws[i], 0, 100, msgs, NULL, NULL), 0);
            json_decref(msgs);
        }
    }
    json_t *ack = send_to(ws[0], gid, "hello, everyone");
    int64_t seq = tj_int(ack, "seq");
    json_decref(ack);
    assert_int_equal(count_inbox(gid, seq), N);
    for (int i = 1; i < N; i++) {
        json_t *m = NULL;
        /* skip the system messages a socket may not have synced */
        for (int k = 0; k < 4; k++) {
            m = next_of(ws[i], "msg");
            assert_non_null(m);
            if (tj_int(m, "seq") == seq) break;
            json_decref(m);
            m = NULL;
        }
        assert_non_null(m);
        assert_string_equal(tj_str(m, "body.text"), "hello, everyone");
        json_decref(m);
    }
    for (int i = 0; i < N; i++) tws_free(ws[i]);
    free(ws);
    free(u);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_group_fanout_every_device),
        cmocka_unit_test(test_group_removal_and_roles),
        cmocka_unit_test(test_group_of_1000),
    };
    return cmocka_run_group_tests_name("groups", tests, setup, teardown);
}
