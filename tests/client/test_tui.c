/* test_tui.c: the terminal client under tmux, against a real parleyd. A user signs up in the
 * terminal (`parley register`), opens the interactive mode, starts a conversation with a second
 * user (registered over REST, online through libparley), sends a message and sees it marked in
 * the dialog view; the reply shows up on the screen. The screen is read with capture-pane.
 * The parley binary is found next to this test's build directory (or in $PARLEY). */
#include "chelp.h"

#include <sys/wait.h>

static tsrv srv;
static char tmpdir[PATH_MAX];
static char sock[PATH_MAX + 32];
static char parley[PATH_MAX + 16];

static int setup(void **state)
{
    (void)state;
    const char *env = getenv("PARLEY");
    if (env && *env) {
        snprintf(parley, sizeof parley, "%s", env);
    } else {
        /* BUILD/tests/client/test_tui -> BUILD/parley */
        char exe[PATH_MAX];
        ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        if (n <= 0) return -1;
        exe[n] = 0;
        for (int i = 0; i < 3; i++) *strrchr(exe, '/') = 0;
        snprintf(parley, sizeof parley, "%s/parley", exe);
    }
    if (access(parley, X_OK) != 0) {
        t_note("no parley binary at %s (build it, or set PARLEY)", parley);
        return -1;
    }
    if (system("tmux -V >/dev/null 2>&1") != 0) {
        t_note("tmux is not installed");
        return -1;
    }
    const char *tmp = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/pltui.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(tmpdir)) return -1;
    snprintf(sock, sizeof sock, "%s/tmux.sock", tmpdir);
    return tsrv_start(&srv, NULL, "--pwhash", "min") == 0 ? 0 : -1;
}

static int run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run(const char *fmt, ...)
{
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int teardown(void **state)
{
    (void)state;
    t_after_test();
    run("tmux -S '%s' kill-server >/dev/null 2>&1", sock);
    int rc = tsrv_stop(&srv);
    tsrv_cleanup(&srv);
    if (!getenv("T_KEEP")) run("rm -rf '%s'", tmpdir);
    return rc == 0 ? 0 : -1;
}

/* The visible screen of the tmux pane, into out. */
static void capture(char *out, size_t cap)
{
    char cmd[PATH_MAX + 128];
    snprintf(cmd, sizeof cmd, "tmux -S '%s' capture-pane -p -t t 2>/dev/null", sock);
    FILE *f = popen(cmd, "r");
    size_t n = f ? fread(out, 1, cap - 1, f) : 0;
    out[n] = 0;
    if (f) pclose(f);
}

/* Waits until the screen shows every one of the strings (NULL-terminated); prints the screen
 * when it does not. */
static bool screen_has(int timeout_ms, tcl *pump, ...)
{
    static char screen[65536];
    int64_t deadline = mono_ms() + timeout_ms;
    for (;;) {
        if (pump) tcl_drain(pump);
        capture(screen, sizeof screen);
        va_list ap;
        va_start(ap, pump);
        bool all = true;
        for (const char *s = va_arg(ap, const char *); s; s = va_arg(ap, const char *))
            if (!strstr(screen, s)) all = false;
        va_end(ap);
        if (all) return true;
        if (mono_ms() > deadline) {
            t_note("the screen does not show what was expected:\n%s", screen);
            return false;
        }
        t_sleep_ms(100);
    }
}

/* The screen line holding `needle`, into out ("" if none). */
static void screen_line(const char *needle, char *out, size_t cap)
{
    static char screen[65536];
    capture(screen, sizeof screen);
    out[0] = 0;
    char *p = strstr(screen, needle);
    if (!p) return;
    char *eol = strchr(p, '\n');
    snprintf(out, cap, "%.*s", (int)(eol ? eol - p : (long)strlen(p)), p);
}

static void keys(const char *k)
{
    assert_int_equal(run("tmux -S '%s' send-keys -t t %s", sock, k), 0);
}

static void type(const char *text)
{
    assert_int_equal(run("tmux -S '%s' send-keys -t t -l '%s'", sock, text), 0);
}

static bool got_msg(void *ud)
{
    return ((tcl *)ud)->nmsgs >= 1;
}

T_TEST(test_tui_signup_send_marks)
{
    /* bob: registered over REST, online through the library */
    tuser ub;
    assert_int_equal(tuser_new(srv.port, "bobby", &ub), 201);
    tcl b;
    tcl_open_user(&b, "b", srv.port, &ub);
    assert_int_equal(pl_client_connect(b.c), 0);
    tcl_wait_online(&b, 10000);

    char alice[33], url[64], profile[PATH_MAX + 16], asan[PATH_MAX + 16];
    t_name(alice, sizeof alice, "alice");
    tcl_url(url, sizeof url, srv.port);
    snprintf(profile, sizeof profile, "%s/alice", tmpdir);
    snprintf(asan, sizeof asan, "%s/asan", tmpdir);
    /* sign up in the terminal, then the interactive mode; the shell stays for the exit code */
    assert_int_equal(
        run("tmux -S '%s' -f /dev/null new-session -d -s t -x 110 -y 28 "
            "\"env TERM=screen LANG=C.UTF-8 LC_ALL=C.UTF-8 "
            "ASAN_OPTIONS=detect_leaks=1:log_path=%s PARLEY_PASSWORD='correct horse battery' "
            "%s --server %s --profile %s register %s && "
            "env TERM=screen LANG=C.UTF-8 LC_ALL=C.UTF-8 ASAN_OPTIONS=detect_leaks=1:log_path=%s "
            "%s --profile %s; echo parley-exit=\\$?; sleep 30\"",
            sock, asan, parley, url, profile, alice, asan, parley, profile),
        0);
    assert_true(screen_has(15000, &b, "Parley", alice, "[online]", NULL));

    /* a new conversation with bob, by username */
    keys("C-n");
    assert_true(screen_has(5000, &b, "To (username):", NULL));
    type(ub.username);
    keys("Enter");
    assert_true(screen_has(5000, &b, "\xe2\x94\x82 ", ub.username, NULL)); /* the dialog title */
    type("hello from tmux \xc3\xa9t\xc3\xa9 \xe2\x98\x95");
    keys("Enter");
    /* sent (the ack) or delivered (bob's device holds it, when the server sends receipts) */
    int64_t t0 = mono_ms();
    bool marked = false;
    char line[512] = "";
    while (!marked && mono_ms() - t0 < 10000) {
        tcl_drain(&b);
        screen_line("hello from tmux", line, sizeof line);
        marked = strstr(line, "\xe2\x9c\x93 sent") || strstr(line, "delivered");
        if (!marked) t_sleep_ms(100);
    }
    if (!marked) assert_true(screen_has(0, NULL, "hello from tmux", "\xe2\x9c\x93 sent", NULL));
    t_note("dialog line: %s", line);
    assert_true(strstr(line, "\xc3\xa9t\xc3\xa9 \xe2\x98\x95") != NULL); /* UTF-8 intact */
    tcl *tb[] = {&b};
    assert_true(tcl_wait(tb, 1, got_msg, &b, 5000));
    assert_string_equal(b.msgs[0].text, "hello from tmux \xc3\xa9t\xc3\xa9 \xe2\x98\x95");
    /* if the server speaks receipts, delivered follows */
    if (screen_has(3000, &b, "delivered", NULL))
        t_note("delivered mark seen");
    else
        t_note("no delivered mark (the server sent no receipt)");

    /* line editing: type, move, delete, then send */
    type("helo");
    keys("Left Left");
    type("l");
    keys("End");
    type(" bob");
    keys("C-w");
    type("world");
    keys("Enter");
    assert_true(screen_has(5000, &b, "me: hello world", NULL));

    /* bob answers: it shows up in the dialog */
    char alice_id[PL_ID_MAX];
    snprintf(alice_id, sizeof alice_id, "%s", b.msgs[0].from);
    assert_int_equal(pl_msg_send(b.c, alice_id, "hi alice, got it", NULL), 0);
    assert_true(screen_has(5000, &b, "hi alice, got it", NULL));
    /* bob reads: alice's messages get the read mark */
    char conv[PL_ID_MAX];
    assert_int_equal(pl_conv_direct(b.c, alice_id, conv), 0);
    assert_int_equal(pl_conv_mark_read(b.c, conv), 0);
    assert_true(screen_has(5000, &b, "\xe2\x9c\x93\xe2\x9c\x93 read", NULL));

    /* quit: the program ends cleanly (exit 0, no sanitizer report) */
    keys("C-q");
    assert_true(screen_has(5000, NULL, "parley-exit=0", NULL));
    assert_int_equal(run("ls '%s'.* >/dev/null 2>&1", asan), 2); /* no ASan log written */

    /* the same profile from the command line: history shows the conversation */
    char cmd[PATH_MAX * 4];
    snprintf(cmd, sizeof cmd, "%s --profile %s --offline history %s", parley, profile, ub.username);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    char out[4096];
    size_t n = fread(out, 1, sizeof out - 1, f);
    out[n] = 0;
    assert_int_equal(pclose(f), 0);
    assert_non_null(strstr(out, "hello from tmux"));
    assert_non_null(strstr(out, "hi alice, got it"));
    tcl_close(&b, false);
}

static bool got_group_text(void *ud)
{
    tcl *t = ud;
    for (int i = 0; i < t->nmsgs && i < TCL_MAX_MSGS; i++)
        if (t->msgs[i].text && strstr(t->msgs[i].text, "hello pals")) return true;
    return false;
}

static bool got_system(void *ud)
{
    tcl *t = ud;
    for (int i = 0; i < t->nmsgs && i < TCL_MAX_MSGS; i++)
        if (strcmp(t->msgs[i].kind, "system") == 0) return true;
    return false;
}

/* A group made with a slash command: the system message reads as a sentence, messages flow
 * both ways, typing shows, and the command line lists the group. */
T_TEST(test_tui_group)
{
    run("tmux -S '%s' kill-session -t t >/dev/null 2>&1", sock);
    tuser uc, ud;
    assert_int_equal(tuser_new(srv.port, "carol", &uc), 201);
    assert_int_equal(tuser_new(srv.port, "dave", &ud), 201);
    tcl c;
    tcl_open_user(&c, "c", srv.port, &uc);
    assert_int_equal(pl_client_connect(c.c), 0);
    tcl_wait_online(&c, 10000);

    char erin[33], url[64], profile[PATH_MAX + 16], asan[PATH_MAX + 16];
    t_name(erin, sizeof erin, "erin");
    tcl_url(url, sizeof url, srv.port);
    snprintf(profile, sizeof profile, "%s/erin", tmpdir);
    snprintf(asan, sizeof asan, "%s/asan2", tmpdir);
    assert_int_equal(
        run("tmux -S '%s' -f /dev/null new-session -d -s t -x 120 -y 30 "
            "\"env TERM=screen LANG=C.UTF-8 LC_ALL=C.UTF-8 "
            "ASAN_OPTIONS=detect_leaks=1:log_path=%s PARLEY_PASSWORD='correct horse battery' "
            "%s --server %s --profile %s register %s && "
            "env TERM=screen LANG=C.UTF-8 LC_ALL=C.UTF-8 ASAN_OPTIONS=detect_leaks=1:log_path=%s "
            "%s --profile %s; echo parley-exit=\\$?; sleep 30\"",
            sock, asan, parley, url, profile, erin, asan, parley, profile),
        0);
    assert_true(screen_has(15000, &c, "Parley", erin, "[online]", NULL));

    char cmd[512];
    snprintf(cmd, sizeof cmd, "/group pals %s %s", uc.username, ud.username);
    type(cmd);
    keys("Enter");
    /* the system message, as a sentence with names */
    char want[256];
    snprintf(want, sizeof want, "%s created the group \"pals\" with %s, %s", erin, uc.username,
             ud.username);
    assert_true(screen_has(10000, &c, want, "# pals", NULL));
    tcl *tc[] = {&c};
    assert_true(tcl_wait(tc, 1, got_system, &c, 5000));
    char gid[PL_ID_MAX] = "";
    for (int i = 0; i < c.nmsgs; i++)
        if (strcmp(c.msgs[i].kind, "system") == 0) snprintf(gid, sizeof gid, "%s", c.msgs[i].conv);
    assert_int_equal(strncmp(gid, "g_", 2), 0);

    /* erin writes to the group; carol gets it */
    type("hello pals");
    keys("Enter");
    assert_true(tcl_wait(tc, 1, got_group_text, &c, 10000));
    /* carol types, then writes: the indicator, then her message under her name */
    int64_t t0 = mono_ms();
    bool typing = false;
    while (!typing && mono_ms() - t0 < 8000) {
        pl_typing_send(c.c, gid, true);
        typing = screen_has(500, &c, "is typing", NULL);
    }
    assert_true(typing);
    assert_int_equal(pl_msg_send(c.c, gid, "hi erin from carol", NULL), 0);
    snprintf(want, sizeof want, "%s: hi erin from carol", uc.username);
    assert_true(screen_has(10000, &c, want, NULL));
    /* a member is removed with /remove: the sentence shows */
    snprintf(cmd, sizeof cmd, "/remove %s", ud.username);
    type(cmd);
    keys("Enter");
    snprintf(want, sizeof want, "%s removed %s", erin, ud.username);
    assert_true(screen_has(10000, &c, want, NULL));

    keys("C-q");
    assert_true(screen_has(5000, NULL, "parley-exit=0", NULL));
    assert_int_equal(run("ls '%s'.* >/dev/null 2>&1", asan), 2); /* no ASan log written */

    /* the command line: the group is listed, and history shows the sentences */
    char line[PATH_MAX * 4];
    snprintf(line, sizeof line, "ASAN_OPTIONS=detect_leaks=1 %s --profile %s groups", parley,
             profile);
    FILE *f = popen(line, "r");
    assert_non_null(f);
    char out[8192];
    size_t n = fread(out, 1, sizeof out - 1, f);
    out[n] = 0;
    assert_int_equal(pclose(f), 0);
    assert_non_null(strstr(out, "pals"));
    assert_non_null(strstr(out, gid));
    snprintf(line, sizeof line,
             "ASAN_OPTIONS=detect_leaks=1 %s --profile %s --offline history '#pals'", parley,
             profile);
    f = popen(line, "r");
    assert_non_null(f);
    n = fread(out, 1, sizeof out - 1, f);
    out[n] = 0;
    assert_int_equal(pclose(f), 0);
    assert_non_null(strstr(out, "created the group"));
    assert_non_null(strstr(out, "hi erin from carol"));
    tcl_close(&c, false);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tui_signup_send_marks),
        cmocka_unit_test(test_tui_group),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
