/* test_accounts.c: accounts, sessions, profiles and devices over real sockets (one parleyd per
 * test, so rate limits and device counts never leak from one test into another). */
#include "lib/tassert.h"

#include <stdio.h>
#include <stdlib.h>

#define PW "correct horse battery"

TSRV_FIXTURE(srv)
#define PORT (srv.port)

/* GET with a token; returns the status and sets *resp. */
static int get(const char *path, const char *token, json_t **resp)
{
    int st = 0;
    assert_int_equal(thttp_req(PORT, "GET", path, token, NULL, &st, resp), 0);
    return st;
}

static int del(const char *path, const char *token, json_t **resp)
{
    int st = 0;
    assert_int_equal(thttp_req(PORT, "DELETE", path, token, NULL, &st, resp), 0);
    return st;
}

static void assert_user_public(json_t *u)
{
    assert_true(tj_keys(u, "id,username,display_name,avatar,kind,created_at"));
}

static void assert_user_me(json_t *u)
{
    assert_true(tj_keys(u, "id,username,display_name,avatar,kind,created_at,email,phone,settings"));
    assert_true(json_is_object(tj_get(u, "settings")));
}

static void assert_device(json_t *d)
{
    assert_true(tj_keys(d, "id,name,created_at,last_seen_at,current"));
    assert_true(id_valid(tj_str(d, "id"), "d_"));
    assert_true(tj_int(d, "created_at") > 0);
    assert_true(tj_int(d, "last_seen_at") > 0);
    assert_true(tj_bool(d, "current") >= 0);
}

/* list holds exactly the devices ids[0..n) (given oldest first), oldest first. Devices made in
 * the same millisecond are equally old, so among those any order is accepted. */
static void assert_devices_oldest_first(json_t *list, const char **ids, size_t n)
{
    assert_int_equal(json_array_size(list), n);
    int *at = calloc(n, sizeof(int)); /* at[k]: index of ids[k] in list */
    for (size_t k = 0; k < n; k++) {
        at[k] = -1;
        for (size_t i = 0; i < n; i++)
            if (strcmp(tj_str(json_array_get(list, i), "id"), ids[k]) == 0) at[k] = (int)i;
        if (at[k] < 0) t_note("device %s missing from %s", ids[k], tj_dump(list));
        assert_true(at[k] >= 0);
    }
    for (size_t i = 1; i < n; i++)
        assert_true(tj_int(json_array_get(list, i - 1), "created_at") <=
                    tj_int(json_array_get(list, i), "created_at"));
    for (size_t k = 1; k < n; k++) {
        if (at[k] > at[k - 1]) continue;
        int64_t c1 = tj_int(json_array_get(list, (size_t)at[k - 1]), "created_at");
        int64_t c2 = tj_int(json_array_get(list, (size_t)at[k]), "created_at");
        if (c1 != c2) t_note("device %s listed before the older %s", ids[k], ids[k - 1]);
        assert_int_equal(c1, c2);
    }
    free(at);
}

/* The entry of list with this id. */
static json_t *dev_by_id(json_t *list, const char *id)
{
    for (size_t i = 0; i < json_array_size(list); i++)
        if (strcmp(tj_str(json_array_get(list, i), "id"), id) == 0) return json_array_get(list, i);
    t_note("device %s not in %s", id, tj_dump(list));
    return NULL;
}

T_TEST(test_health)
{
    json_t *r;
    int st = get("/v1/health", NULL, &r);
    assert_http_status(st, r, 200);
    assert_string_equal(tj_str(r, "status"), "ok");
    assert_true(json_is_string(tj_get(r, "version")));
    assert_true(strlen(tj_str(r, "version")) > 0);
    json_decref(r);
}

T_TEST(test_register)
{
    char name[33], email[64];
    t_name(name, sizeof name, "reg");
    snprintf(email, sizeof email, "%s@example.com", name);
    int64_t t0 = now_ms();
    int st;
    json_t *r;
    assert_int_equal(thttp_reqp(PORT, "POST", "/v1/accounts", NULL, &st, &r,
                                "{s:s, s:s, s:s, s:s, s:s, s:s}", "username", name, "password", PW,
                                "display_name", "Reg User", "email", email, "phone", "+15551234567",
                                "device_name", "laptop"),
                     0);
    int64_t t1 = now_ms();
    assert_http_status(st, r, 201);
    assert_true(tj_keys(r, "user,device,token,expires_at"));
    json_t *u = tj_get(r, "user");
    assert_user_me(u);
    assert_true(id_valid(tj_str(u, "id"), "u_"));
    assert_string_equal(tj_str(u, "username"), name);
    assert_string_equal(tj_str(u, "display_name"), "Reg User");
    assert_string_equal(tj_str(u, "email"), email);
    assert_string_equal(tj_str(u, "phone"), "+15551234567");
    assert_string_equal(tj_str(u, "avatar"), "");
    assert_string_equal(tj_str(u, "kind"), "user");
    assert_int_equal(json_object_size(tj_get(u, "settings")), 0);
    assert_in_range(tj_int(u, "created_at"), t0 - 2000, t1 + 2000);
    json_t *d = tj_get(r, "device");
    assert_device(d);
    assert_string_equal(tj_str(d, "name"), "laptop");
    assert_int_equal(tj_bool(d, "current"), 1);
    assert_in_range(tj_int(d, "created_at"), t0 - 2000, t1 + 2000);

    /* The token: HS256 JWT with sub, dev, iat, exp (30 days), jti. */
    const char *token = tj_str(r, "token");
    json_t *h = tjwt_part(token, 0), *c = tjwt_part(token, 1);
    assert_non_null(h);
    assert_non_null(c);
    assert_string_equal(tj_str(h, "alg"), "HS256");
    assert_string_equal(tj_str(h, "typ"), "JWT");
    assert_true(json_is_string(tj_get(h, "kid")));
    assert_string_equal(tj_str(c, "sub"), tj_str(u, "id"));
    assert_string_equal(tj_str(c, "dev"), tj_str(d, "id"));
    assert_true(json_is_string(tj_get(c, "jti")));
    assert_int_equal(tj_int(c, "exp") - tj_int(c, "iat"), 2592000);
    assert_in_range(tj_int(c, "iat"), t0 / 1000 - 2, t1 / 1000 + 2);
    /* expires_at is in ms (all protocol times are); exp in seconds. */
    int64_t exp_at = tj_int(r, "expires_at");
    assert_in_range(exp_at, tj_int(c, "exp") * 1000 - 999, tj_int(c, "exp") * 1000 + 999);
    assert_in_range(exp_at, t0 + 2592000000LL - 5000, t1 + 2592000000LL + 5000);
    json_decref(h);
    json_decref(c);

    /* The token works, and GET /v1/me answers the same user. */
    json_t *me;
    st = get("/v1/me", token, &me);
    assert_http_status(st, me, 200);
    assert_user_me(me);
    assert_true(json_equal(me, u));
    json_decref(me);
    json_decref(r);

    /* Defaults: display_name is the username, device name "device", email and phone "". A
     * username with capitals is stored lower-case. */
    char upper[33], lower[33];
    t_name(lower, sizeof lower, "caps");
    for (size_t i = 0; i <= strlen(lower); i++)
        upper[i] = (char)(lower[i] >= 'a' && lower[i] <= 'z' ? lower[i] - 32 : lower[i]);
    assert_int_equal(thttp_reqp(PORT, "POST", "/v1/accounts", NULL, &st, &r, "{s:s, s:s}",
                                "username", upper, "password", PW),
                     0);
    assert_http_status(st, r, 201);
    assert_string_equal(tj_str(r, "user.username"), lower);
    assert_string_equal(tj_str(r, "user.display_name"), lower);
    assert_string_equal(tj_str(r, "user.email"), "");
    assert_string_equal(tj_str(r, "user.phone"), "");
    assert_string_equal(tj_str(r, "device.name"), "device");
    json_decref(r);
}

T_TEST(test_register_duplicates)
{
    tuser a, b;
    assert_int_equal(tuser_register(PORT, "dupname", PW, &a), 201);
    int st;
    json_t *r;
    const char *same[] = {"dupname", "DUPNAME", "DupName"};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(thttp_reqp(PORT, "POST", "/v1/accounts", NULL, &st, &r, "{s:s, s:s}",
                                    "username", same[i], "password", PW),
                         0);
        assert_http_error(st, r, 409, "username_taken");
        json_decref(r);
    }
    /* email and phone are unique too. */
    assert_int_equal(thttp_reqp(PORT, "POST", "/v1/accounts", NULL, &st, &r, "{s:s, s:s, s:s, s:s}",
                                "username", "withcontact", "password", PW, "email",
                                "dup@example.com", "phone", "+4912345678"),
                     0);
    assert_http_status(st, r, 201);
    json_decref(r);
    assert_int_equal(thttp_reqp(PORT, "POST", "/v1/accounts", NULL, &st, &r, "{s:s, s:s, s:s}",
                                "username", "other1", "password", PW, "email", "dup@example.com"),
                     0);
    assert_http_error(st, r, 409, "email_taken");
    json_decref(r);
    assert_int_equal(thttp_reqp(PORT, "POST", "/v1/accounts", NULL, &st, &r, "{s:s, s:s, s:s}",
                                "username", "other2", "password", PW, "phone", "+4912345678"),
                     0);
    assert_http_error(st, r, 409, "phone_taken");
    json_decref(r);
    /* None of the refused attempts created anything. */
    assert_int_equal(tuser_register(PORT, "other1", PW, &b), 201);
}

T_TEST(test_register_invalid)
{
    static const char *bad[] = {
        "{\"password\":\"" PW "\"}",
        "{\"username\":\"ab\",\"password\":\"" PW "\"}",
        "{\"username\":\"abcdefghijklmnopqrstuvwxyz0123456\",\"password\":\"" PW "\"}",
        "{\"username\":\"bad name\",\"password\":\"" PW "\"}",
        "{\"username\":\"bad-name\",\"password\":\"" PW "\"}",
        "{\"username\":\"na\xc3\xafve\",\"password\":\"" PW "\"}",
        "{\"username\":\"\",\"password\":\"" PW "\"}",
        "{\"username\":12345,\"password\":\"" PW "\"}",
        "{\"username\":\"okname1\"}",
        "{\"username\":\"okname2\",\"password\":\"1234567\"}",
        "{\"username\":\"okname3\",\"password\":12345678}",
        "{\"username\":\"okname4\",\"password\":\"" PW "\",\"email\":\"no-at-sign\"}",
        "{\"username\":\"okname5\",\"password\":\"" PW "\",\"email\":\"a@b@example.com\"}",
        "{\"username\":\"okname6\",\"password\":\"" PW "\",\"phone\":\"4912345678\"}",
        "{\"username\":\"okname7\",\"password\":\"" PW "\",\"phone\":\"+12345\"}",
        "{\"username\":\"okname8\",\"password\":\"" PW "\",\"phone\":\"+1234567890123456\"}",
        "{\"username\":\"okname9\",\"password\":\"" PW "\",\"phone\":\"+1234567a\"}",
        "{\"username\":\"okname10\",\"password\":\"" PW "\",\"display_name\":42}",
    };
    int st;
    json_t *r;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(thttp_req(PORT, "POST", "/v1/accounts", NULL, bad[i], &st, &r), 0);
        if (st != 400) t_note("body %zu: %s", i, bad[i]);
        assert_http_error(st, r, 400, "invalid_request");
        json_decref(r);
    }
    /* Lengths just over the limits. */
    char big[1100];
    memset(big, 'p', 1025);
    big[1025] = 0;
    assert_int_equal(thttp_reqp(PORT, "POST", "/v1/accounts", NULL, &st, &r, "{s:s, s:s}",
                                "username", "longpw", "password", big),
                     0);
    assert_http_error(st, r, 400, "invalid_request");
    json_decref(r);
    char dn[200] = "";
    for (int i = 0; i < 65; i++) strcat(dn, "\xc3\xa9"); /* 65 characters, 130 bytes */
    assert_int_equal(thttp_reqp(PORT, "POST", "/v1/accounts", NULL, &st, &r, "{s:s, s:s, s:s}",
                                "username", "longdn", "password", PW, "display_name", dn),
                     0);
    assert_http_error(st, r, 400, "invalid_request");
    json_decref(r);
    char devn[80];
    memset(devn, 'd', 65);
    devn[65] = 0;
    assert_int_equal(thttp_reqp(PORT, "POST", "/v1/accounts", NULL, &st, &r, "{s:s, s:s, s:s}",
                                "username", "longdev", "password", PW, "device_name", devn),
                     0);
    assert_http_error(st, r, 400, "invalid_request");
    json_decref(r);
    char email[300];
    memset(email, 'e', 250);
    memcpy(email + 250, "@x.io", 6); /* 255 bytes */
    assert_int_equal(thttp_reqp(PORT, "POST", "/v1/accounts", NULL, &st, &r, "{s:s, s:s, s:s}",
                                "username", "longmail", "password", PW, "email", email),
                     0);
    assert_http_error(st, r, 400, "invalid_request");
    json_decref(r);

    /* Not a JSON object. */
    assert_int_equal(thttp_req(PORT, "POST", "/v1/accounts", NULL, "[1,2]", &st, &r), 0);
    assert_http_error(st, r, 400, "invalid_json");
    json_decref(r);
    assert_int_equal(thttp_req(PORT, "POST", "/v1/accounts", NULL, "{\"username\":", &st, &r), 0);
    assert_http_error(st, r, 400, "invalid_json");
    json_decref(r);

    /* The boundaries themselves are fine. */
    tuser u;
    assert_int_equal(tuser_register(PORT, "abc", "12345678", &u), 201);
    memset(big, 'p', 1024);
    big[1024] = 0;
    assert_int_equal(tuser_register(PORT, "abcdefghijklmnopqrstuvwxyz012345", big, &u), 201);
    dn[128] = 0; /* 64 characters */
    assert_int_equal(thttp_reqp(PORT, "POST", "/v1/accounts", NULL, &st, &r,
                                "{s:s, s:s, s:s, s:s, s:s}", "username", "x_y.z", "password", PW,
                                "display_name", dn, "phone", "+123456", "device_name",
                                devn + 1 /* 64 bytes */),
                     0);
    assert_http_status(st, r, 201);
    assert_string_equal(tj_str(r, "user.display_name"), dn);
    json_decref(r);
    email[253] = 0; /* 253 bytes: 248 'e' + "@x.io" */
    memcpy(email + 248, "@x.io", 6);
    assert_int_equal(thttp_reqp(PORT, "POST", "/v1/accounts", NULL, &st, &r, "{s:s, s:s, s:s, s:s}",
                                "username", "mailok", "password", PW, "email", email, "phone",
                                "+123456789012345"),
                     0);
    assert_http_status(st, r, 201);
    json_decref(r);
}

T_TEST(test_login)
{
    int st;
    json_t *r;
    assert_int_equal(thttp_reqp(PORT, "POST", "/v1/accounts", NULL, &st, &r, "{s:s, s:s, s:s, s:s}",
                                "username", "logme", "password", PW, "email", "logme@example.com",
                                "phone", "+4411122233"),
                     0);
    assert_http_status(st, r, 201);
    char uid[ID_MAX], dev0[ID_MAX];
    snprintf(uid, sizeof uid, "%s", tj_str(r, "user.id"));
    snprintf(dev0, sizeof dev0, "%s", tj_str(r, "device.id"));
    json_decref(r);

    const char *logins[] = {"logme", "LogMe", "logme@example.com", "+4411122233"};
    char devs[4][ID_MAX];
    char last_token[2048] = "";
    for (int i = 0; i < 4; i++) {
        assert_int_equal(thttp_reqp(PORT, "POST", "/v1/sessions", NULL, &st, &r, "{s:s, s:s, s:s}",
                                    "login", logins[i], "password", PW, "device_name", "tablet"),
                         0);
        assert_http_status(st, r, 200);
        assert_true(tj_keys(r, "user,device,token,expires_at"));
        assert_user_me(tj_get(r, "user"));
        assert_string_equal(tj_str(r, "user.id"), uid);
        assert_device(tj_get(r, "device"));
        assert_string_equal(tj_str(r, "device.name"), "tablet");
        assert_int_equal(tj_bool(r, "device.current"), 1);
        snprintf(devs[i], sizeof devs[i], "%s", tj_str(r, "device.id"));
        assert_string_not_equal(devs[i], dev0);
        for (int k = 0; k < i; k++) assert_string_not_equal(devs[i], devs[k]);
        snprintf(last_token, sizeof last_token, "%s", tj_str(r, "token"));
        json_decref(r);
    }
    /* Five devices now, oldest first, the last one current. */
    st = get("/v1/devices", last_token, &r);
    assert_http_status(st, r, 200);
    json_t *list = tj_get(r, "devices");
    const char *want[5] = {dev0, devs[0], devs[1], devs[2], devs[3]};
    assert_devices_oldest_first(list, want, 5);
    for (int i = 0; i < 5; i++)
        assert_int_equal(tj_bool(dev_by_id(list, want[i]), "current"), i == 4);
    json_decref(r);
}

T_TEST(test_login_wrong_password)
{
    tuser u;
    assert_int_equal(tuser_register(PORT, "victim", PW, &u), 201);
    int st;
    json_t *wrong, *unknown;
    assert_int_equal(thttp_reqp(PORT, "POST", "/v1/sessions", NULL, &st, &wrong, "{s:s, s:s}",
                                "login", "victim", "password", "wrong password"),
                     0);
    assert_http_error(st, wrong, 401, "invalid_credentials");
    assert_int_equal(thttp_reqp(PORT, "POST", "/v1/sessions", NULL, &st, &unknown, "{s:s, s:s}",
                                "login", "nobodyhere", "password", "wrong password"),
                     0);
    assert_http_error(st, unknown, 401, "invalid_credentials");
    /* The answer never says which part was wrong: the bodies are identical. */
    if (!json_equal(wrong, unknown)) t_note("%s", tj_dump(wrong));
    if (!json_equal(wrong, unknown)) t_note("vs %s", tj_dump(unknown));
    assert_true(json_equal(wrong, unknown));
    json_decref(wrong);
    json_decref(unknown);
    /* Missing field: invalid_request. */
    json_t *r;
    assert_int_equal(
        thttp_reqp(PORT, "POST", "/v1/sessions", NULL, &st, &r, "{s:s}", "login", "victim"), 0);
    assert_http_error(st, r, 400, "invalid_request");
    json_decref(r);
    /* The right password still works. */
    tuser again;
    assert_int_equal(tuser_login(PORT, "victim", PW, &again), 200);
}

static void assert_rate_limited(int port, const char *login, const char *password)
{
    char body[256];
    snprintf(body, sizeof body, "{\"login\":\"%s\",\"password\":\"%s\"}", login, password);
    thttp_resp r;
    assert_int_equal(thttp_do(port, "POST", "/v1/sessions", NULL, body, &r), 0);
    assert_http_error(r.status, r.json, 429, "rate_limited");
    char ra[32];
    assert_non_null(thttp_header(&r, "Retry-After", ra, sizeof ra));
    char *end;
    long secs = strtol(ra, &end, 10);
    assert_true(*end == 0 && end != ra);
    assert_in_range(secs, 1, 300);
    assert_int_equal(tj_int(r.json, "error.retry_after"), secs);
    thttp_resp_free(&r);
}

/* "more than 5 failed attempts for this login within 5 minutes": read as attempts 1-5 answer
 * 401 and the 6th is refused with 429. */
T_TEST(test_login_rate_limit_per_login)
{
    tuser u, other;
    assert_int_equal(tuser_register(PORT, "target", PW, &u), 201);
    assert_int_equal(tuser_register(PORT, "bystander", PW, &other), 201);
    for (int i = 0; i < 5; i++) {
        int st;
        json_t *r;
        assert_int_equal(thttp_reqp(PORT, "POST", "/v1/sessions", NULL, &st, &r, "{s:s, s:s}",
                                    "login", "target", "password", "guess guess"),
                         0);
        assert_http_error(st, r, 401, "invalid_credentials");
        json_decref(r);
    }
    assert_rate_limited(PORT, "target", "guess guess");
    /* Locked: even the right password is refused for now. */
    assert_rate_limited(PORT, "target", PW);
    /* Other logins from the same address are not affected (6 failures < 20). */
    tuser t;
    assert_int_equal(tuser_login(PORT, "bystander", PW, &t), 200);
}

/* "or 20 from this address": 20 failures spread over logins (4 each, under the per-login
 * limit) answer 401; the 21st attempt is refused. */
T_TEST(test_login_rate_limit_per_address)
{
    for (int i = 0; i < 20; i++) {
        char login[32];
        snprintf(login, sizeof login, "ghost%d", i / 4);
        int st;
        json_t *r;
        assert_int_equal(thttp_reqp(PORT, "POST", "/v1/sessions", NULL, &st, &r, "{s:s, s:s}",
                                    "login", login, "password", "guess guess"),
                         0);
        assert_http_error(st, r, 401, "invalid_credentials");
        json_decref(r);
    }
    assert_rate_limited(PORT, "ghost9", "guess guess");
}

T_TEST(test_device_cap)
{
    tuser u, d[10];
    assert_int_equal(tuser_register(PORT, "manydev", PW, &u), 201);
    for (int i = 0; i < 9; i++) assert_int_equal(tuser_login(PORT, "manydev", PW, &d[i]), 200);
    int st;
    json_t *r;
    assert_int_equal(thttp_reqp(PORT, "POST", "/v1/sessions", NULL, &st, &r, "{s:s, s:s}", "login",
                                "manydev", "password", PW),
                     0);
    assert_http_error(st, r, 409, "too_many_devices");
    json_t *list = tj_get(r, "error.devices");
    assert_int_equal(json_array_size(list), 10);
    for (size_t i = 0; i < 10; i++) assert_device(json_array_get(list, i));
    const char *want[10] = {u.device};
    for (int i = 0; i < 9; i++) want[i + 1] = d[i].device;
    assert_devices_oldest_first(list, want, 10);
    json_decref(r);
    /* Remove one from another device; then a log-in works again. */
    char path[128];
    snprintf(path, sizeof path, "/v1/devices/%s", d[3].device);
    st = del(path, u.token, &r);
    assert_http_status(st, r, 204);
    json_decref(r);
    assert_int_equal(tuser_login(PORT, "manydev", PW, &d[9]), 200);
    assert_int_equal(tuser_login(PORT, "manydev", PW, &d[3]), 409);
}

T_TEST(test_me)
{
    tuser a, b;
    assert_int_equal(tuser_register(PORT, "meuser", PW, &a), 201);
    assert_int_equal(tuser_register(PORT, "otheruser", PW, &b), 201);
    int st;
    json_t *r;
    st = get("/v1/me", a.token, &r);
    assert_http_status(st, r, 200);
    assert_user_me(r);
    assert_string_equal(tj_str(r, "id"), a.id);
    assert_string_equal(tj_str(r, "username"), "meuser");
    json_decref(r);

    assert_int_equal(thttp_reqp(PORT, "PATCH", "/v1/me", a.token, &st, &r,
                                "{s:s, s:s, s:s, s:{s:s, s:i}}", "display_name", "Me Myself",
                                "email", "me@example.com", "phone", "+3312345678", "settings",
                                "theme", "dark", "size", 3),
                     0);
    assert_http_status(st, r, 200);
    assert_user_me(r);
    assert_string_equal(tj_str(r, "display_name"), "Me Myself");
    assert_string_equal(tj_str(r, "email"), "me@example.com");
    assert_string_equal(tj_str(r, "phone"), "+3312345678");
    assert_string_equal(tj_str(r, "settings.theme"), "dark");
    assert_int_equal(tj_int(r, "settings.size"), 3);
    assert_string_equal(tj_str(r, "username"), "meuser");
    json_t *patched = r;
    st = get("/v1/me", a.token, &r);
    assert_http_status(st, r, 200);
    assert_true(json_equal(r, patched));
    json_decref(r);
    json_decref(patched);

    /* settings replaces; "" clears email; other fields stay. */
    assert_int_equal(thttp_reqp(PORT, "PATCH", "/v1/me", a.token, &st, &r, "{s:s, s:{s:b}}",
                                "email", "", "settings", "mute", 1),
                     0);
    assert_http_status(st, r, 200);
    assert_string_equal(tj_str(r, "email"), "");
    assert_string_equal(tj_str(r, "phone"), "+3312345678");
    assert_string_equal(tj_str(r, "display_name"), "Me Myself");
    assert_int_equal(json_object_size(tj_get(r, "settings")), 1);
    assert_int_equal(tj_bool(r, "settings.mute"), 1);
    json_decref(r);

    /* Errors as for account creation. */
    assert_int_equal(
        thttp_reqp(PORT, "PATCH", "/v1/me", b.token, &st, &r, "{s:s}", "phone", "+3312345678"), 0);
    assert_http_error(st, r, 409, "phone_taken");
    json_decref(r);
    assert_int_equal(thttp_req(PORT, "PATCH", "/v1/me", a.token, "{\"settings\":[1]}", &st, &r), 0);
    assert_http_error(st, r, 400, "invalid_request");
    json_decref(r);
    char big[1200];
    memset(big, 'x', 1100);
    big[1100] = 0;
    assert_int_equal(
        thttp_reqp(PORT, "PATCH", "/v1/me", a.token, &st, &r, "{s:{s:s}}", "settings", "k", big),
        0);
    assert_http_error(st, r, 400, "invalid_request");
    json_decref(r);
    assert_int_equal(
        thttp_reqp(PORT, "PATCH", "/v1/me", a.token, &st, &r, "{s:s}", "email", "not-an-email"), 0);
    assert_http_error(st, r, 400, "invalid_request");
    json_decref(r);
    /* A refused PATCH changed nothing. */
    st = get("/v1/me", a.token, &r);
    assert_string_equal(tj_str(r, "email"), "");
    assert_int_equal(tj_bool(r, "settings.mute"), 1);
    json_decref(r);
    /* Without a token. */
    st = get("/v1/me", NULL, &r);
    assert_http_error(st, r, 401, "unauthenticated");
    json_decref(r);
}

T_TEST(test_user_public_profile)
{
    tuser a, b;
    int st;
    json_t *r;
    assert_int_equal(thttp_reqp(PORT, "POST", "/v1/accounts", NULL, &st, &r, "{s:s, s:s, s:s, s:s}",
                                "username", "private", "password", PW, "email",
                                "private@example.com", "phone", "+4912340000"),
                     0);
    assert_http_status(st, r, 201);
    snprintf(a.id, sizeof a.id, "%s", tj_str(r, "user.id"));
    json_decref(r);
    assert_int_equal(tuser_register(PORT, "looker", PW, &b), 201);
    char path[128];
    snprintf(path, sizeof path, "/v1/users/%s", a.id);
    st = get(path, b.token, &r);
    assert_http_status(st, r, 200);
    assert_user_public(r); /* exactly the public fields: no email, phone or settings */
    assert_string_equal(tj_str(r, "id"), a.id);
    assert_string_equal(tj_str(r, "username"), "private");
    assert_string_equal(tj_str(r, "kind"), "user");
    json_decref(r);
    st = get("/v1/users/u_nosuchuser000000", b.token, &r);
    assert_http_error(st, r, 404, "not_found");
    json_decref(r);
}

T_TEST(test_user_search)
{
    tuser u;
    assert_int_equal(tuser_register(PORT, "srchalice", PW, &u), 201);
    assert_int_equal(tuser_register(PORT, "srchalicia", PW, &u), 201);
    assert_int_equal(tuser_register(PORT, "srchbob", PW, &u), 201);
    int st;
    json_t *r;
    assert_int_equal(thttp_reqp(PORT, "POST", "/v1/accounts", NULL, &st, &r, "{s:s, s:s, s:s}",
                                "username", "aaazed", "password", PW, "display_name",
                                "SrchAli the Second"),
                     0);
    assert_http_status(st, r, 201);
    json_decref(r);
    assert_int_equal(tuser_register(PORT, "searcher", PW, &u), 201);

    st = get("/v1/users?query=SRCHali", u.token, &r);
    assert_http_status(st, r, 200);
    json_t *list = tj_get(r, "users");
    assert_int_equal(json_array_size(list), 3);
    assert_string_equal(tj_str(list, "0.username"), "aaazed"); /* by display name */
    assert_string_equal(tj_str(list, "1.username"), "srchalice");
    assert_string_equal(tj_str(list, "2.username"), "srchalicia");
    for (size_t i = 0; i < 3; i++) assert_user_public(json_array_get(list, i));
    json_decref(r);

    /* At most 20, by username. */
    for (int i = 21; i >= 0; i--) {
        char name[16];
        snprintf(name, sizeof name, "many%02d", i);
        assert_int_equal(tuser_register(PORT, name, PW, &u), 201);
    }
    st = get("/v1/users?query=many", u.token, &r);
    assert_http_status(st, r, 200);
    list = tj_get(r, "users");
    assert_int_equal(json_array_size(list), 20);
    for (int i = 0; i < 20; i++) {
        char p[32], want[32];
        snprintf(p, sizeof p, "%d.username", i);
        snprintf(want, sizeof want, "many%02d", i);
        assert_string_equal(tj_str(list, p), want);
    }
    json_decref(r);
    st = get("/v1/users?query=zzznobody", u.token, &r);
    assert_http_status(st, r, 200);
    assert_int_equal(json_array_size(tj_get(r, "users")), 0);
    assert_true(json_is_array(tj_get(r, "users")));
    json_decref(r);
    st = get("/v1/users?query=", u.token, &r);
    assert_http_error(st, r, 400, "invalid_request");
    json_decref(r);
    char path[128] = "/v1/users?query=";
    memset(path + 16, 'q', 65);
    path[16 + 65] = 0;
    st = get(path, u.token, &r);
    assert_http_error(st, r, 400, "invalid_request");
    json_decref(r);
}

T_TEST(test_devices_list)
{
    int st;
    json_t *r;
    assert_int_equal(thttp_reqp(PORT, "POST", "/v1/accounts", NULL, &st, &r, "{s:s, s:s, s:s}",
                                "username", "devlist", "password", PW, "device_name", "phone"),
                     0);
    assert_http_status(st, r, 201);
    char tok1[2048], dev1[ID_MAX];
    snprintf(tok1, sizeof tok1, "%s", tj_str(r, "token"));
    snprintf(dev1, sizeof dev1, "%s", tj_str(r, "device.id"));
    json_decref(r);
    assert_int_equal(thttp_reqp(PORT, "POST", "/v1/sessions", NULL, &st, &r, "{s:s, s:s, s:s}",
                                "login", "devlist", "password", PW, "device_name", "laptop"),
                     0);
    assert_http_status(st, r, 200);
    char tok2[2048], dev2[ID_MAX];
    snprintf(tok2, sizeof tok2, "%s", tj_str(r, "token"));
    snprintf(dev2, sizeof dev2, "%s", tj_str(r, "device.id"));
    json_decref(r);

    const char *toks[2] = {tok1, tok2};
    for (int k = 0; k < 2; k++) {
        st = get("/v1/devices", toks[k], &r);
        assert_http_status(st, r, 200);
        assert_true(tj_keys(r, "devices"));
        json_t *l = tj_get(r, "devices");
        assert_int_equal(json_array_size(l), 2);
        assert_device(json_array_get(l, 0));
        assert_device(json_array_get(l, 1));
        const char *want[2] = {dev1, dev2};
        assert_devices_oldest_first(l, want, 2);
        assert_string_equal(tj_str(dev_by_id(l, dev1), "name"), "phone");
        assert_string_equal(tj_str(dev_by_id(l, dev2), "name"), "laptop");
        assert_int_equal(tj_bool(dev_by_id(l, dev1), "current"), k == 0);
        assert_int_equal(tj_bool(dev_by_id(l, dev2), "current"), k == 1);
        json_decref(r);
    }
}

T_TEST(test_device_delete_own)
{
    tuser a1, a2;
    assert_int_equal(tuser_register(PORT, "deldev", PW, &a1), 201);
    assert_int_equal(tuser_login(PORT, "deldev", PW, &a2), 200);
    tws *ws1 = tws_live(PORT, &a1, "a1");
    tws *ws2 = tws_live(PORT, &a2, "a2");
    assert_non_null(ws1);
    assert_non_null(ws2);
    char path[128];
    snprintf(path, sizeof path, "/v1/devices/%s", a1.device);
    json_t *r;
    int st = del(path, a2.token, &r);
    assert_http_status(st, r, 204);
    assert_null(r);
    /* Its open socket is closed with 4001; the other device's socket stays. */
    assert_int_equal(tws_wait_close(ws1, 0), 4001);
    tws_free(ws1);
    assert_ws_alive(ws2);
    /* Its token is refused, on REST and on a new socket. */
    st = get("/v1/me", a1.token, &r);
    assert_http_error(st, r, 401, "device_revoked");
    json_decref(r);
    tws *ws = tws_open(PORT);
    assert_non_null(ws);
    assert_int_equal(tws_sendp(ws, "{s:s, s:s}", "type", "auth", "token", a1.token), 0);
    assert_int_equal(tws_wait_close(ws, 0), 4001);
    tws_free(ws);
    /* The list shrank; deleting again is 404. */
    st = get("/v1/devices", a2.token, &r);
    assert_http_status(st, r, 200);
    assert_int_equal(json_array_size(tj_get(r, "devices")), 1);
    assert_string_equal(tj_str(r, "devices.0.id"), a2.device);
    json_decref(r);
    st = del(path, a2.token, &r);
    assert_http_error(st, r, 404, "not_found");
    json_decref(r);
    tws_free(ws2);
}

T_TEST(test_device_delete_other_user)
{
    tuser a, b;
    assert_int_equal(tuser_register(PORT, "ownera", PW, &a), 201);
    assert_int_equal(tuser_register(PORT, "ownerb", PW, &b), 201);
    tws *wb = tws_live(PORT, &b, "b");
    assert_non_null(wb);
    char path[128];
    snprintf(path, sizeof path, "/v1/devices/%s", b.device);
    json_t *r;
    int st = del(path, a.token, &r);
    assert_http_error(st, r, 404, "not_found");
    json_decref(r);
    st = del("/v1/devices/d_doesnotexist00000", a.token, &r);
    assert_http_error(st, r, 404, "not_found");
    json_decref(r);
    /* b is untouched. */
    st = get("/v1/me", b.token, &r);
    assert_http_status(st, r, 200);
    json_decref(r);
    assert_ws_alive(wb);
    tws_free(wb);
}

T_TEST(test_session_logout)
{
    tuser a1, a2;
    assert_int_equal(tuser_register(PORT, "leaver", PW, &a1), 201);
    assert_int_equal(tuser_login(PORT, "leaver", PW, &a2), 200);
    tws *ws1 = tws_live(PORT, &a1, "a1");
    assert_non_null(ws1);
    json_t *r;
    int st = del("/v1/sessions/current", a1.token, &r);
    assert_http_status(st, r, 204);
    assert_null(r);
    assert_int_equal(tws_wait_close(ws1, 0), 4001);
    tws_free(ws1);
    st = get("/v1/me", a1.token, &r);
    assert_http_error(st, r, 401, "device_revoked");
    json_decref(r);
    st = del("/v1/sessions/current", a1.token, &r);
    assert_http_error(st, r, 401, "device_revoked");
    json_decref(r);
    st = get("/v1/devices", a2.token, &r);
    assert_http_status(st, r, 200);
    assert_int_equal(json_array_size(tj_get(r, "devices")), 1);
    assert_string_equal(tj_str(r, "devices.0.id"), a2.device);
    json_decref(r);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    /* Presence and typing are not what this file tests; they may come any time. */
    tws_default_ignore = "presence,typing";
    const struct CMUnitTest tests[] = {
        T(test_health),
        T(test_register),
        T(test_register_duplicates),
        T(test_register_invalid),
        T(test_login),
        T(test_login_wrong_password),
        T(test_login_rate_limit_per_login),
        T(test_login_rate_limit_per_address),
        T(test_device_cap),
        T(test_me),
        T(test_user_public_profile),
        T(test_user_search),
        T(test_devices_list),
        T(test_device_delete_own),
        T(test_device_delete_other_user),
        T(test_session_logout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
