/* main.c: parley's command line: global options, the profile directory, the help text, and
 * the dispatch to a subcommand (cmds.c) or to the interactive mode (ui.c). */
#include <errno.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "tui/tui.h"

static const char help[] =
    "usage: parley [OPTIONS] [COMMAND [ARGS...]]\n"
    "\n"
    "The Parley terminal client. Without a command it opens the interactive mode.\n"
    "\n"
    "Commands:\n"
    "  register USERNAME        create an account (and sign this profile in)\n"
    "  login LOGIN              sign in with a username, email or phone (a new device)\n"
    "  logout                   sign this device out (its messages stay in the profile)\n"
    "  whoami                   the signed-in user and device\n"
    "  send USER TEXT...        send a message to USER (a username or u_ id) or to a group\n"
    "                           (#NAME or g_ id); it goes to the outbox first and waits\n"
    "                           there while no server is reachable\n"
    "  sync                     connect, fetch what is waiting, send the outbox\n"
    "  history USER [-n N]      the conversation with USER (or #GROUP), oldest first\n"
    "  convs                    conversations, most recent first, with unread counts\n"
    "  groups                   the groups of this account\n"
    "  group create NAME USER...  a new group with these members (you are its owner)\n"
    "  group add GROUP USER...  add members (GROUP: its name or g_ id)\n"
    "  group remove GROUP USER...  remove members\n"
    "  group leave GROUP        leave a group\n"
    "  group rename GROUP NAME  rename a group\n"
    "  contacts                 friends and invitations, from the server (--offline: users\n"
    "                           this device has seen)\n"
    "  invite USER              invite USER to be a contact\n"
    "  accept USER              accept USER's invitation\n"
    "  decline USER             decline an invitation (or remove a contact)\n"
    "  block USER, unblock USER block or unblock a user\n"
    "  search QUERY             users whose name starts with QUERY\n"
    "  outbox                   messages still waiting to be sent\n"
    "  verify USER [confirm]    the safety number with USER (end-to-end encryption);\n"
    "                           confirm marks USER verified after comparing it\n"
    "  link-begin               on a new device of this account: show its link code\n"
    "  link-approve CODE DEVICE_ID  on a linked device: give the new one the identity key\n"
    "  link-finish              on the new device: take the key and publish its own keys\n"
    "  devices                  this account's devices\n"
    "  devices rm DEVICE_ID     remove a device\n"
    "  ui                       the interactive mode (the default)\n"
    "\n"
    "Options:\n"
    "  --server URL             a server, http://HOST:PORT (repeat, or separate with commas, for\n"
    "                           a list to fail over through); saved in the profile. Default: the\n"
    "                           profile's list, else http://127.0.0.1:8080\n"
    "  --profile DIR            where the device store and the session live (default:\n"
    "                           $PARLEY_PROFILE, else ~/.parley)\n"
    "  --password PASSWORD      for register and login (else $PARLEY_PASSWORD, else asked)\n"
    "  --name NAME              display name, for register\n"
    "  --timeout SECONDS        how long send, sync and history wait for the server (10)\n"
    "  -n N                     how many messages history prints (50)\n"
    "  --offline                do not connect: read the profile's store only\n"
    "  --no-wait                send: put the message in the outbox and return\n"
    "  -q, --quiet              print less\n"
    "  -h, --help               this text;  --version  the version\n"
    "\n"
    "Interactive mode keys:\n"
    "  Up/Down                  choose a conversation      Ctrl-N   new conversation (by "
    "username)\n"
    "  Enter                    send the line              PgUp/PgDn scroll the dialog\n"
    "  Left/Right, Home/End, Ctrl-A/Ctrl-E   move in the line\n"
    "  Backspace/Delete, Ctrl-U/Ctrl-K/Ctrl-W   delete (char, to start, to end, word)\n"
    "  Ctrl-L redraw            Ctrl-Q, Ctrl-C or F10      quit\n"
    "Commands typed in the dialog:\n"
    "  /group NAME USER...      create a group     /add USER...    add to this group\n"
    "  /remove USER...          remove from it     /leave          leave it\n"
    "  /rename NAME             rename it          /invite USER    invite a contact\n"
    "  /accept USER, /decline USER, /block USER, /unblock USER\n"
    "  /away, /back             presence           /help           this list\n"
    "The list marks contacts online (\xe2\x97\x8f) and away (\xe2\x97\x8b); the dialog shows who "
    "is typing.\n"
    "Marks in the dialog: \xe2\x80\xa6 pending (in the outbox), \xe2\x9c\x93 sent, "
    "\xe2\x9c\x93\xe2\x9c\x93 delivered,\n"
    "\xe2\x9c\x93\xe2\x9c\x93 read, ! failed. The top line shows online / offline.\n"
    "\n"
    "Exit codes: 0 done; 1 the server refused; 2 usage; 3 no server reachable (a message stays\n"
    "queued and goes out with the next run that connects); 4 not logged in or session no longer\n"
    "valid; 5 the profile or its store could not be used.\n";

int tui_exit_code(int err)
{
    switch (err) {
    case 0:
        return EXIT_OK;
    case PL_ENET:
    case PL_ETIMEDOUT:
    case PL_ESERVER:
        return EXIT_OFFLINE;
    case PL_ENOSESSION:
    case PL_ETOKEN:
        return EXIT_NOLOGIN;
    case PL_ESTORE:
    case PL_EEXIST:
    case PL_ENOMEM:
        return EXIT_LOCAL;
    default:
        return EXIT_REFUSED;
    }
}

int tui_fail(pl_client *c, const char *what, int err)
{
    const char *msg = c && *pl_client_errmsg(c) ? pl_client_errmsg(c) : pl_strerror(err);
    fprintf(stderr, "parley: %s: %s\n", what, msg);
    return tui_exit_code(err);
}

static int mkdir_p(const char *dir)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s", dir);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = 0;
        if (mkdir(p, 0700) != 0 && errno != EEXIST) return -1;
        *s = '/';
    }
    return mkdir(p, 0700) != 0 && errno != EEXIST ? -1 : 0;
}

/* The profile's server list: DIR/servers, one URL a line. */
static char *saved_servers[TUI_MAX_SERVERS];

static void load_servers(tui_opts *o)
{
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/servers", o->profile);
    FILE *f = fopen(path, "r");
    if (!f) return;
    char line[512];
    while (o->nservers < TUI_MAX_SERVERS && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        if (!line[0] || line[0] == '#') continue;
        saved_servers[o->nservers] = strdup(line);
        if (saved_servers[o->nservers]) {
            o->servers[o->nservers] = saved_servers[o->nservers];
            o->nservers++;
        }
    }
    fclose(f);
}

static void save_servers(const tui_opts *o)
{
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/servers", o->profile);
    FILE *f = fopen(path, "w");
    if (!f) return;
    for (size_t i = 0; i < o->nservers; i++) fprintf(f, "%s\n", o->servers[i]);
    fclose(f);
}

int tui_open(tui_opts *o, pl_client **out)
{
    if (mkdir_p(o->profile) != 0) {
        fprintf(stderr, "parley: cannot create the profile %s: %s\n", o->profile, strerror(errno));
        return EXIT_LOCAL;
    }
    if (o->servers_given)
        save_servers(o);
    else
        load_servers(o);
    if (o->nservers == 0) o->servers[o->nservers++] = "http://127.0.0.1:8080";
    pl_options po = {.servers = o->servers,
                     .nservers = o->nservers,
                     .store_path = o->store,
                     .device_name = "parley terminal",
                     .backoff_max_ms = 10000};
    int err = pl_client_new(out, &po);
    if (err == PL_EINVAL) {
        fprintf(stderr, "parley: a server URL is not of the form http://HOST:PORT\n");
        return EXIT_USAGE;
    }
    if (err) {
        fprintf(stderr, "parley: cannot open the store %s: %s\n", o->store, pl_strerror(err));
        return EXIT_LOCAL;
    }
    return 0;
}

void tui_user_label(pl_client *c, const char *id, char *out, size_t cap)
{
    pl_user *users;
    size_t n;
    snprintf(out, cap, "%s", id);
    pl_session s;
    if (pl_session_get(c, &s) == 0 && strcmp(s.user, id) == 0) {
        snprintf(out, cap, "%s", s.username[0] ? s.username : "me");
        return;
    }
    if (pl_contacts_list(c, &users, &n) != 0) return;
    for (size_t i = 0; i < n; i++)
        if (strcmp(users[i].id, id) == 0) {
            if (users[i].display_name[0])
                snprintf(out, cap, "%s", users[i].display_name);
            else if (users[i].username[0])
                snprintf(out, cap, "%s", users[i].username);
        }
    pl_free(users);
}

void tui_time(long long ms, char *out, size_t cap, bool full)
{
    time_t t = (time_t)(ms / 1000), now = time(NULL);
    struct tm tm, tn;
    localtime_r(&t, &tm);
    localtime_r(&now, &tn);
    if (!full && tm.tm_year == tn.tm_year && tm.tm_yday == tn.tm_yday)
        strftime(out, cap, "%H:%M", &tm);
    else
        strftime(out, cap, "%Y-%m-%d %H:%M", &tm);
}

const char *tui_mark(const pl_msg *m)
{
    switch (m->status) {
    case PL_MSG_PENDING:
        return "\xe2\x80\xa6 pending";
    case PL_MSG_SENT:
        return "\xe2\x9c\x93 sent";
    case PL_MSG_DELIVERED:
        return "\xe2\x9c\x93\xe2\x9c\x93 delivered";
    case PL_MSG_READ:
        return "\xe2\x9c\x93\xe2\x9c\x93 read";
    case PL_MSG_FAILED:
        return "! failed";
    case PL_MSG_RECEIVED:
        return "";
    }
    return "";
}

static int add_servers(tui_opts *o, const char *arg)
{
    char *copy = strdup(arg), *save = NULL;
    if (!copy) return -1;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (o->nservers == TUI_MAX_SERVERS) {
            free(copy);
            return -1;
        }
        o->servers[o->nservers] = strdup(t);
        saved_servers[o->nservers] = (char *)o->servers[o->nservers];
        o->nservers++;
    }
    free(copy);
    o->servers_given = true;
    return 0;
}

int main(int argc, char **argv)
{
    setlocale(LC_ALL, "");
    tui_opts o = {.timeout_s = 10, .limit = 50};
    const char *profile = getenv("PARLEY_PROFILE");
    char *rest[65];
    int nrest = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool takes = true;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(help, stdout);
            return EXIT_OK;
        } else if (strcmp(a, "--version") == 0) {
            printf("parley %s\n", PL_VERSION);
            return EXIT_OK;
        } else if (strcmp(a, "--offline") == 0) {
            o.offline = true;
            takes = false;
        } else if (strcmp(a, "--no-wait") == 0) {
            o.no_wait = true;
            takes = false;
        } else if (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0) {
            o.quiet = true;
            takes = false;
        } else if (strcmp(a, "--") == 0) {
            while (++i < argc && nrest < 64) rest[nrest++] = argv[i];
            break;
        } else if (strcmp(a, "--server") == 0 || strcmp(a, "--profile") == 0 ||
                   strcmp(a, "--password") == 0 || strcmp(a, "--name") == 0 ||
                   strcmp(a, "--timeout") == 0 || strcmp(a, "-n") == 0) {
            if (!v) {
                fprintf(stderr, "parley: %s needs a value (see parley --help)\n", a);
                return EXIT_USAGE;
            }
            if (strcmp(a, "--server") == 0 && add_servers(&o, v) != 0) {
                fprintf(stderr, "parley: at most %d servers\n", TUI_MAX_SERVERS);
                return EXIT_USAGE;
            }
            if (strcmp(a, "--profile") == 0) profile = v;
            if (strcmp(a, "--password") == 0) o.password = v;
            if (strcmp(a, "--name") == 0) o.name = v;
            if (strcmp(a, "--timeout") == 0) o.timeout_s = atoi(v);
            if (strcmp(a, "-n") == 0) o.limit = atoi(v);
            i++;
        } else if (a[0] == '-' && a[1] && nrest == 0) {
            fprintf(stderr, "parley: unknown option %s (see parley --help)\n", a);
            return EXIT_USAGE;
        } else {
            takes = false;
            if (nrest < 64) rest[nrest++] = argv[i];
        }
        (void)takes;
    }
    if (o.timeout_s <= 0) o.timeout_s = 10;
    if (o.limit <= 0) o.limit = 50;
    if (profile && *profile) {
        snprintf(o.profile, sizeof o.profile, "%s", profile);
    } else {
        const char *home = getenv("HOME");
        snprintf(o.profile, sizeof o.profile, "%s/.parley", home && *home ? home : ".");
    }
    snprintf(o.store, sizeof o.store, "%s/store.db", o.profile);
    rest[nrest] = NULL;
    int rc;
    if (nrest == 0 || strcmp(rest[0], "ui") == 0)
        rc = tui_interactive(&o);
    else
        rc = tui_command(&o, nrest, rest);
    for (int i = 0; i < TUI_MAX_SERVERS; i++) free(saved_servers[i]);
    return rc;
}
