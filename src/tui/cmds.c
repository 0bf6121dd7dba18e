/* cmds.c: parley's subcommands for scripts. Each opens the profile's client, does one thing,
 * prints plain lines on stdout (errors on stderr, prefixed "parley: ") and returns an exit code
 * from tui.h. Commands that need the server connect the engine, wait for what they need (the
 * end of a sync, the ack of a message) up to --timeout, and disconnect. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "common/util.h"
#include "tui/tui.h"

/* The password from --password, $PARLEY_PASSWORD, or asked on the terminal (or read as one line
 * from a non-terminal stdin). */
static const char *get_password(tui_opts *o, char *buf, size_t cap)
{
    if (o->password) return o->password;
    const char *env = getenv("PARLEY_PASSWORD");
    if (env && *env) return env;
    bool tty = isatty(0);
    struct termios old, quiet;
    if (tty) {
        fprintf(stderr, "password: ");
        fflush(stderr);
        tcgetattr(0, &old);
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        tcsetattr(0, TCSAFLUSH, &quiet);
    }
    char *r = fgets(buf, (int)cap, stdin);
    if (tty) {
        tcsetattr(0, TCSAFLUSH, &old);
        fputc('\n', stderr);
    }
    if (!r) return NULL;
    buf[strcspn(buf, "\r\n")] = 0;
    return buf;
}

typedef struct waiter {
    int64_t ack_id; /* wait for the ack (or failure) of this outbox row */
    bool acked, failed;
    bool synced; /* a sync ended */
    bool unauthorized;
    int64_t new_msgs;
    char fail_text[256];
} waiter;

static void on_event(waiter *w, pl_event *ev)
{
    switch (ev->kind) {
    case PL_EV_ACK:
        if (ev->msg.local_id == w->ack_id) w->acked = true;
        break;
    case PL_EV_MSG_FAILED:
        if (ev->msg.local_id == w->ack_id) {
            w->failed = true;
            snprintf(w->fail_text, sizeof w->fail_text, "%s", ev->text ? ev->text : "refused");
        }
        break;
    case PL_EV_SYNCED:
        w->synced = true;
        break;
    case PL_EV_MESSAGE:
        w->new_msgs++;
        break;
    case PL_EV_STATE:
        if (ev->state == PL_STATE_UNAUTHORIZED) w->unauthorized = true;
        break;
    default:
        break;
    }
}

static bool outbox_empty(pl_client *c)
{
    pl_msg *m;
    size_t n = 0;
    if (pl_outbox_list(c, &m, &n) != 0) return true;
    pl_msgs_free(m, n);
    return n == 0;
}

/* Connects and reads events until done(w) or the timeout. 0, PL_ETIMEDOUT or PL_ETOKEN. */
static int run_until(pl_client *c, tui_opts *o, waiter *w, bool (*done)(pl_client *, waiter *))
{
    int err = pl_client_connect(c);
    if (err) return err;
    int64_t deadline = mono_ms() + (int64_t)o->timeout_s * 1000;
    for (;;) {
        pl_event ev;
        while (pl_client_next_event(c, &ev) == 0) {
            on_event(w, &ev);
            pl_event_clear(&ev);
        }
        if (w->unauthorized) return PL_ETOKEN;
        if (done(c, w)) return 0;
        int64_t left = deadline - mono_ms();
        if (left <= 0) return PL_ETIMEDOUT;
        if (pl_client_wait_event(c, &ev, (int)(left > 200 ? 200 : left)) == 0) {
            on_event(w, &ev);
            pl_event_clear(&ev);
        }
    }
}

static bool done_synced(pl_client *c, waiter *w)
{
    return w->synced && outbox_empty(c);
}

static bool done_acked(pl_client *c, waiter *w)
{
    (void)c;
    return w->acked || w->failed;
}

/* Brings the store up to date unless --offline; a failure to reach a server is a warning. */
static int refresh(pl_client *c, tui_opts *o)
{
    if (o->offline) return 0;
    waiter w = {0};
    int err = run_until(c, o, &w, done_synced);
    pl_client_disconnect(c);
    if (err == PL_ETOKEN) return tui_fail(c, "sync", PL_ETOKEN);
    if (err && !o->quiet)
        fprintf(stderr, "parley: no server reachable; showing what this device has\n");
    return 0;
}

static int need_session(pl_client *c, pl_session *s)
{
    if (pl_session_get(c, s) != 0) {
        fprintf(stderr, "parley: not logged in: run `parley register NAME` or "
                        "`parley login NAME` first\n");
        return EXIT_NOLOGIN;
    }
    return 0;
}

static void print_msg(pl_client *c, const pl_msg *m)
{
    char when[24], who[PL_NAME_MAX * 4];
    tui_time(m->ts, when, sizeof when, true);
    tui_user_label(c, m->from, who, sizeof who);
    const char *mark = tui_mark(m);
    char sys[512];
    if (pl_msg_system_text(c, m, sys, sizeof sys) == 0)
        printf("[%s] * %s\n", when, sys);
    else if (m->text)
        printf("[%s] %s: %s%s%s\n", when, who, m->text, *mark ? "  " : "", mark);
    else
        printf("[%s] %s: [%s] %s%s%s\n", when, who, m->kind, m->body, *mark ? "  " : "", mark);
}

/* ---------------------------------------------------------------------------- commands */

static int find_group(pl_client *c, const char *name, char id[PL_ID_MAX]);

static int cmd_register(pl_client *c, tui_opts *o, int argc, char **argv, bool login)
{
    if (argc != 2) {
        fprintf(stderr, "usage: parley %s %s\n", argv[0], login ? "LOGIN" : "USERNAME");
        return EXIT_USAGE;
    }
    char buf[1100];
    const char *pw = get_password(o, buf, sizeof buf);
    if (!pw) {
        fprintf(stderr, "parley: a password is needed (--password or $PARLEY_PASSWORD)\n");
        return EXIT_USAGE;
    }
    int err =
        login ? pl_session_login(c, argv[1], pw) : pl_account_register(c, argv[1], pw, o->name);
    if (err) return tui_fail(c, argv[0], err);
    pl_session s;
    pl_session_get(c, &s);
    if (!o->quiet) printf("signed in as %s (%s), device %s\n", s.username, s.user, s.device);
    return EXIT_OK;
}

static int cmd_whoami(pl_client *c)
{
    pl_session s;
    int rc = need_session(c, &s);
    if (rc) return rc;
    printf("%s %s %s\n", s.username, s.user, s.device);
    return EXIT_OK;
}

static int cmd_logout(pl_client *c)
{
    pl_session s;
    int rc = need_session(c, &s);
    if (rc) return rc;
    int err = pl_session_logout(c);
    return err ? tui_fail(c, "logout", err) : EXIT_OK;
}

static int cmd_send(pl_client *c, tui_opts *o, int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: parley send USER TEXT...\n");
        return EXIT_USAGE;
    }
    pl_session s;
    int rc = need_session(c, &s);
    if (rc) return rc;
    pl_user u;
    int err = 0;
    if (strncmp(argv[1], "g_", 2) == 0 || argv[1][0] == '#') { /* a group: by id or #name */
        memset(&u, 0, sizeof u);
        if (argv[1][0] == '#' && (rc = find_group(c, argv[1] + 1, u.id)) != 0) return rc;
        if (argv[1][0] != '#') snprintf(u.id, sizeof u.id, "%s", argv[1]);
    } else if ((err = pl_user_resolve(c, argv[1], &u)) != 0) {
        return tui_fail(c, argv[1], err);
    }
    size_t len = 0;
    for (int i = 2; i < argc; i++) len += strlen(argv[i]) + 1;
    char *text = malloc(len + 1);
    if (!text) return EXIT_LOCAL;
    text[0] = 0;
    for (int i = 2; i < argc; i++) {
        if (i > 2) strcat(text, " ");
        strcat(text, argv[i]);
    }
    pl_msg m;
    err = pl_msg_send(c, u.id, text, &m);
    free(text);
    if (err) return tui_fail(c, "send", err);
    int64_t id = m.local_id;
    pl_msg_clear(&m);
    if (o->no_wait) {
        if (!o->quiet) printf("queued\n");
        return EXIT_OK;
    }
    waiter w = {.ack_id = id};
    err = run_until(c, o, &w, done_acked);
    pl_client_disconnect(c);
    if (err == PL_ETOKEN) return tui_fail(c, "send", err);
    if (w.failed) {
        fprintf(stderr, "parley: send: %s\n", w.fail_text);
        return EXIT_REFUSED;
    }
    if (!w.acked) {
        fprintf(stderr, "parley: no server reachable; the message is queued and goes out with "
                        "the next parley run that connects\n");
        return EXIT_OFFLINE;
    }
    if (!o->quiet) printf("sent\n");
    return EXIT_OK;
}

static int cmd_sync(pl_client *c, tui_opts *o)
{
    pl_session s;
    int rc = need_session(c, &s);
    if (rc) return rc;
    waiter w = {0};
    int err = run_until(c, o, &w, done_synced);
    pl_client_disconnect(c);
    if (err) return tui_fail(c, "sync", err);
    if (!o->quiet)
        printf("%lld new message%s\n", (long long)w.new_msgs, w.new_msgs == 1 ? "" : "s");
    return EXIT_OK;
}

static int cmd_history(pl_client *c, tui_opts *o, int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: parley history USER [-n N]\n");
        return EXIT_USAGE;
    }
    pl_session s;
    int rc = need_session(c, &s);
    if (rc) return rc;
    if ((rc = refresh(c, o)) != 0) return rc;
    char conv[PL_ID_MAX];
    if (strncmp(argv[1], "p_", 2) == 0 || strncmp(argv[1], "g_", 2) == 0) {
        snprintf(conv, sizeof conv, "%s", argv[1]);
    } else if (argv[1][0] == '#') { /* a group by name */
        if ((rc = find_group(c, argv[1] + 1, conv)) != 0) return rc;
    } else {
        pl_user u;
        int err = pl_user_resolve(c, argv[1], &u);
        if (err) return tui_fail(c, argv[1], err);
        pl_conv_direct(c, u.id, conv);
    }
    pl_msg *msgs;
    size_t n;
    int err = pl_msgs_history(c, conv, 0, o->limit, &msgs, &n);
    if (err) return tui_fail(c, "history", err);
    for (size_t i = 0; i < n; i++) print_msg(c, &msgs[i]);
    pl_msgs_free(msgs, n);
    pl_conv_mark_read(c, conv);
    return EXIT_OK;
}

static int cmd_convs(pl_client *c, tui_opts *o)
{
    pl_session s;
    int rc = need_session(c, &s);
    if (rc) return rc;
    if ((rc = refresh(c, o)) != 0) return rc;
    pl_conv *cv;
    size_t n;
    int err = pl_convs_list(c, &cv, &n);
    if (err) return tui_fail(c, "convs", err);
    for (size_t i = 0; i < n; i++) {
        char when[24] = "";
        if (cv[i].last_ts) tui_time(cv[i].last_ts, when, sizeof when, false);
        bool lock = !cv[i].group && cv[i].peer[0] && pl_e2e_with(c, cv[i].peer);
        printf("%-24s%s %3d unread  %-16s %s\n", cv[i].title, lock ? " \xf0\x9f\x94\x92" : "",
               cv[i].unread, when, cv[i].preview);
    }
    pl_free(cv);
    return EXIT_OK;
}

static void print_users(const pl_user *u, size_t n)
{
    for (size_t i = 0; i < n; i++)
        printf("%-24s %-32s %s\n", u[i].username[0] ? u[i].username : "?", u[i].display_name,
               u[i].id);
}

/* contacts: the server's list (friends, invitations both ways); --offline: users this device
 * has seen. */
static int cmd_contacts(pl_client *c, tui_opts *o)
{
    pl_session s;
    int rc = need_session(c, &s);
    if (rc) return rc;
    if (o->offline) {
        pl_user *u;
        size_t n;
        int err = pl_contacts_list(c, &u, &n);
        if (err) return tui_fail(c, "contacts", err);
        print_users(u, n);
        pl_free(u);
        return EXIT_OK;
    }
    pl_contact *cs;
    size_t n;
    int err = pl_contacts_fetch(c, &cs, &n);
    if (err) return tui_fail(c, "contacts", err);
    static const char *const title[] = {"", "outgoing (invited by you)", "incoming (invitations)",
                                        "friends"};
    for (int st = PL_CONTACT_FRIEND; st >= PL_CONTACT_OUTGOING; st--) {
        bool head = false;
        for (size_t i = 0; i < n; i++) {
            if ((int)cs[i].state != st) continue;
            if (!head) printf("%s:\n", title[st]);
            head = true;
            printf("  %-24s %-32s %s\n", cs[i].user.username, cs[i].user.display_name,
                   cs[i].user.id);
        }
    }
    if (n == 0 && !o->quiet) printf("no contacts\n");
    pl_free(cs);
    return EXIT_OK;
}

/* USER (a username or id) to an id, printing the failure. */
static int resolve(pl_client *c, const char *name, char id[PL_ID_MAX])
{
    pl_user u;
    int err = pl_user_resolve(c, name, &u);
    if (err) return tui_fail(c, name, err);
    snprintf(id, PL_ID_MAX, "%s", u.id);
    return 0;
}

/* verify USER [confirm]: the safety number with USER; confirm marks USER verified */
static int cmd_verify(pl_client *c, tui_opts *o, int argc, char **argv)
{
    if (argc < 2 || argc > 3 || (argc == 3 && strcmp(argv[2], "confirm") != 0)) {
        fprintf(stderr, "usage: parley verify USER [confirm]\n");
        return EXIT_USAGE;
    }
    pl_session s;
    int rc = need_session(c, &s);
    if (rc) return rc;
    char id[PL_ID_MAX];
    if ((rc = resolve(c, argv[1], id)) != 0) return rc;
    char sn[PL_SAFETY_NUMBER_LEN + 1];
    int err = pl_safety_number_get(c, id, sn);
    if (err) return tui_fail(c, "verify", err);
    if (argc == 3) {
        err = pl_contact_set_verified(c, id, true);
        if (err) return tui_fail(c, "verify", err);
        if (!o->quiet) printf("%s: verified\n", argv[1]);
        return EXIT_OK;
    }
    bool v = false;
    pl_contact_verified(c, id, &v);
    for (int i = 0; i < PL_SAFETY_NUMBER_LEN; i += 5)
        printf("%.5s%s", sn + i, i + 5 == PL_SAFETY_NUMBER_LEN ? "\n" : (i + 5) % 30 ? " " : "\n");
    if (!o->quiet)
        printf("%s: %s\n", argv[1],
               v ? "verified" : "not verified (compare, then: parley verify USER confirm)");
    return EXIT_OK;
}

/* link-begin | link-approve CODE DEVICE | link-finish: linking a new device of this account */
static int cmd_link(pl_client *c, tui_opts *o, int argc, char **argv)
{
    bool begin = strcmp(argv[0], "link-begin") == 0, approve = strcmp(argv[0], "link-approve") == 0;
    if ((approve && argc != 3) || (!approve && argc != 1)) {
        fprintf(stderr, "usage: parley link-begin | link-approve CODE DEVICE_ID | link-finish\n");
        return EXIT_USAGE;
    }
    pl_session s;
    int rc = need_session(c, &s);
    if (rc) return rc;
    int err;
    if (begin) {
        char *code = NULL;
        err = pl_link_begin(c, &code);
        if (err) return tui_fail(c, "link-begin", err);
        if (o->quiet) {
            printf("%s\n", code);
        } else {
            printf("link code: %s\nthis device: %s\n", code, s.device);
            printf("on a linked device run: parley link-approve %s %s\n"
                   "then here: parley link-finish (within 10 minutes)\n",
                   code, s.device);
        }
        free(code);
        return EXIT_OK;
    }
    if (approve) {
        err = pl_link_approve(c, argv[1], argv[2]);
        if (err) return tui_fail(c, "link-approve", err);
        if (!o->quiet) printf("approved %s: run parley link-finish on it\n", argv[2]);
        return EXIT_OK;
    }
    err = pl_link_finish(c);
    if (err) return tui_fail(c, "link-finish", err);
    if (!o->quiet) printf("this device is linked: end-to-end encryption works here now\n");
    return EXIT_OK;
}

/* invite / accept / decline / block / unblock USER */
static int cmd_contact(pl_client *c, tui_opts *o, int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: parley %s USER\n", argv[0]);
        return EXIT_USAGE;
    }
    pl_session s;
    int rc = need_session(c, &s);
    if (rc) return rc;
    char id[PL_ID_MAX];
    if ((rc = resolve(c, argv[1], id)) != 0) return rc;
    const char *cmd = argv[0];
    int err;
    const char *done;
    if (strcmp(cmd, "invite") == 0) {
        err = pl_contact_invite(c, id);
        done = err == PL_CONTACT_FRIEND ? "friends now (they had invited you)" : "invited";
    } else if (strcmp(cmd, "accept") == 0) {
        err = pl_contact_accept(c, id);
        done = err == PL_CONTACT_FRIEND ? "friends now" : "invited (there was no invitation)";
    } else if (strcmp(cmd, "decline") == 0) {
        err = pl_contact_decline(c, id);
        done = "declined";
    } else if (strcmp(cmd, "block") == 0) {
        err = pl_user_block(c, id);
        done = "blocked";
    } else {
        err = pl_user_unblock(c, id);
        done = "unblocked";
    }
    if (err < 0) return tui_fail(c, cmd, err);
    if (!o->quiet) printf("%s: %s\n", argv[1], done);
    return EXIT_OK;
}

/* A group by id ("g_...") or by name among this device's conversations. */
static int find_group(pl_client *c, const char *name, char id[PL_ID_MAX])
{
    if (strncmp(name, "g_", 2) == 0) {
        snprintf(id, PL_ID_MAX, "%s", name);
        return 0;
    }
    pl_conv *cv;
    size_t n;
    if (pl_convs_list(c, &cv, &n) != 0) return tui_fail(c, "groups", PL_ESTORE);
    int found = 0;
    for (size_t i = 0; i < n; i++)
        if (cv[i].group && strcmp(cv[i].title, name) == 0) {
            if (!found) snprintf(id, PL_ID_MAX, "%s", cv[i].id);
            found++;
        }
    pl_free(cv);
    if (found == 1) return 0;
    fprintf(stderr, "parley: %s: %s\n", name,
            found ? "several groups have that name: use its id (parley groups)"
                  : "no such group on this device (parley groups lists them)");
    return EXIT_REFUSED;
}

static int cmd_groups(pl_client *c, tui_opts *o)
{
    pl_session s;
    int rc = need_session(c, &s);
    if (rc) return rc;
    if (!o->offline && pl_convs_sync(c) < 0 && !o->quiet)
        fprintf(stderr, "parley: no server reachable; showing what this device has\n");
    pl_conv *cv;
    size_t n;
    int err = pl_convs_list(c, &cv, &n);
    if (err) return tui_fail(c, "groups", err);
    for (size_t i = 0; i < n; i++)
        if (cv[i].group) printf("%-24s %3d unread  %s\n", cv[i].title, cv[i].unread, cv[i].id);
    pl_free(cv);
    return EXIT_OK;
}

static int cmd_group(pl_client *c, tui_opts *o, int argc, char **argv)
{
    const char *sub = argc > 1 ? argv[1] : "";
    bool create = strcmp(sub, "create") == 0, add = strcmp(sub, "add") == 0,
         remove = strcmp(sub, "remove") == 0, leave = strcmp(sub, "leave") == 0,
         rename = strcmp(sub, "rename") == 0;
    if (!((create && argc >= 3) || ((add || remove) && argc >= 4) || (leave && argc == 3) ||
          (rename && argc == 4))) {
        fprintf(stderr, "usage: parley group create NAME [USER...] | add GROUP USER... |\n"
                        "       remove GROUP USER... | leave GROUP | rename GROUP NAME\n");
        return EXIT_USAGE;
    }
    pl_session s;
    int rc = need_session(c, &s);
    if (rc) return rc;
    char gid[PL_ID_MAX];
    if (!create && (rc = find_group(c, argv[2], gid)) != 0) return rc;
    int first = 3, nusers = argc - first;
    if (leave || rename) nusers = 0;
    char(*ids)[PL_ID_MAX] = calloc((size_t)nusers + 1, PL_ID_MAX);
    const char **ptrs = calloc((size_t)nusers + 1, sizeof *ptrs);
    if (!ids || !ptrs) {
        free(ids);
        free(ptrs);
        return EXIT_LOCAL;
    }
    for (int i = 0; i < nusers && rc == 0; i++) {
        rc = resolve(c, argv[first + i], ids[i]);
        ptrs[i] = ids[i];
    }
    int err = 0;
    if (rc == 0) {
        if (create) {
            pl_group g;
            err = pl_group_create(c, argv[2], ptrs, (size_t)nusers, &g);
            if (!err && !o->quiet) printf("created %s (%s)\n", g.name, g.id);
            pl_group_clear(&g);
        } else if (add) {
            err = pl_group_add(c, gid, ptrs, (size_t)nusers);
            if (err >= 0 && !o->quiet) printf("added %d\n", err);
        } else if (remove) {
            for (int i = 0; i < nusers && err == 0; i++) err = pl_group_remove(c, gid, ptrs[i]);
            if (!err && !o->quiet) printf("removed\n");
        } else if (leave) {
            err = pl_group_leave(c, gid);
            if (!err && !o->quiet) printf("left\n");
        } else {
            err = pl_group_rename(c, gid, argv[3]);
            if (!err && !o->quiet) printf("renamed\n");
        }
        if (err < 0) rc = tui_fail(c, "group", err);
    }
    free(ids);
    free(ptrs);
    return rc;
}

static int cmd_search(pl_client *c, int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: parley search QUERY\n");
        return EXIT_USAGE;
    }
    pl_user *u;
    size_t n;
    int err = pl_users_search(c, argv[1], &u, &n);
    if (err) return tui_fail(c, "search", err);
    print_users(u, n);
    pl_free(u);
    return EXIT_OK;
}

static int cmd_outbox(pl_client *c)
{
    pl_msg *m;
    size_t n;
    int err = pl_outbox_list(c, &m, &n);
    if (err) return tui_fail(c, "outbox", err);
    for (size_t i = 0; i < n; i++) {
        char to[PL_NAME_MAX * 4];
        tui_user_label(c, m[i].to, to, sizeof to);
        printf("to %s: %s\n", to, m[i].text ? m[i].text : m[i].body);
    }
    pl_msgs_free(m, n);
    return EXIT_OK;
}

static int cmd_devices(pl_client *c, int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "rm") == 0) {
        int err = pl_device_remove(c, argv[2]);
        return err ? tui_fail(c, "devices rm", err) : EXIT_OK;
    }
    if (argc != 1) {
        fprintf(stderr, "usage: parley devices [rm DEVICE_ID]\n");
        return EXIT_USAGE;
    }
    pl_device *d;
    size_t n;
    int err = pl_devices_list(c, &d, &n);
    if (err) return tui_fail(c, "devices", err);
    for (size_t i = 0; i < n; i++) {
        char seen[24];
        tui_time(d[i].last_seen_at, seen, sizeof seen, true);
        printf("%s %-24s last seen %s%s\n", d[i].id, d[i].name, seen,
               d[i].current ? "  (this one)" : "");
    }
    pl_free(d);
    return EXIT_OK;
}

int tui_command(tui_opts *o, int argc, char **argv)
{
    static const char *const known[] = {
        "register", "login",  "logout",     "whoami",       "send",       "sync",
        "history",  "convs",  "contacts",   "search",       "outbox",     "devices",
        "group",    "groups", "invite",     "accept",       "decline",    "block",
        "unblock",  "verify", "link-begin", "link-approve", "link-finish"};
    bool ok = false;
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcmp(argv[0], known[i]) == 0) ok = true;
    if (!ok) {
        fprintf(stderr, "parley: unknown command %s (see parley --help)\n", argv[0]);
        return EXIT_USAGE;
    }
    pl_client *c;
    int rc = tui_open(o, &c);
    if (rc) return rc;
    const char *cmd = argv[0];
    if (strcmp(cmd, "register") == 0)
        rc = cmd_register(c, o, argc, argv, false);
    else if (strcmp(cmd, "login") == 0)
        rc = cmd_register(c, o, argc, argv, true);
    else if (strcmp(cmd, "logout") == 0)
        rc = cmd_logout(c);
    else if (strcmp(cmd, "whoami") == 0)
        rc = cmd_whoami(c);
    else if (strcmp(cmd, "send") == 0)
        rc = cmd_send(c, o, argc, argv);
    else if (strcmp(cmd, "sync") == 0)
        rc = cmd_sync(c, o);
    else if (strcmp(cmd, "history") == 0)
        rc = cmd_history(c, o, argc, argv);
    else if (strcmp(cmd, "convs") == 0)
        rc = cmd_convs(c, o);
    else if (strcmp(cmd, "contacts") == 0)
        rc = cmd_contacts(c, o);
    else if (strcmp(cmd, "group") == 0)
        rc = cmd_group(c, o, argc, argv);
    else if (strcmp(cmd, "groups") == 0)
        rc = cmd_groups(c, o);
    else if (strcmp(cmd, "invite") == 0 || strcmp(cmd, "accept") == 0 ||
             strcmp(cmd, "decline") == 0 || strcmp(cmd, "block") == 0 ||
             strcmp(cmd, "unblock") == 0)
        rc = cmd_contact(c, o, argc, argv);
    else if (strcmp(cmd, "search") == 0)
        rc = cmd_search(c, argc, argv);
    else if (strcmp(cmd, "outbox") == 0)
        rc = cmd_outbox(c);
    else if (strcmp(cmd, "verify") == 0)
        rc = cmd_verify(c, o, argc, argv);
    else if (strncmp(cmd, "link-", 5) == 0)
        rc = cmd_link(c, o, argc, argv);
    else
        rc = cmd_devices(c, argc, argv);
    pl_client_free(c);
    return rc;
}
