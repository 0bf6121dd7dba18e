/* tui.h: what the files of `parley` share: the profile, the command line, exit codes.
 *
 * parley is the terminal client: subcommands for scripts (cmds.c) and an interactive ncursesw
 * interface (ui.c), both on the same libparley engine and the same device store. main.c reads
 * the command line and the profile; edit.c is the line editor of the interactive mode.
 */
#ifndef PL_TUI_H
#define PL_TUI_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <wchar.h>

#include "client/parley.h"

/* Exit codes, documented in `parley --help` and docs/client.md. */
enum {
    EXIT_OK = 0,
    EXIT_REFUSED = 1, /* the server refused (wrong password, name taken, no such user...) */
    EXIT_USAGE = 2,   /* bad command line */
    EXIT_OFFLINE = 3, /* no server reachable in time (a message stays queued) */
    EXIT_NOLOGIN = 4, /* not logged in, or the session is no longer valid */
    EXIT_LOCAL = 5,   /* the profile or its store could not be used */
};

#define TUI_MAX_SERVERS 8

typedef struct tui_opts {
    char profile[PATH_MAX];
    char store[PATH_MAX + 16];
    const char *servers[TUI_MAX_SERVERS];
    size_t nservers;
    bool servers_given;   /* --server on the command line (then saved to the profile) */
    const char *password; /* --password */
    const char *name;     /* --name (display name at registration) */
    int timeout_s;        /* --timeout */
    int limit;            /* -n */
    bool offline;         /* --offline: do not connect, read the store only */
    bool no_wait;         /* --no-wait: queue and return */
    bool quiet;
} tui_opts;

/* Opens the client of the profile (creating the directory and store). Prints and returns an
 * exit code on failure, 0 on success. */
int tui_open(tui_opts *o, pl_client **out);
/* Maps a PL_E... code to an exit code. */
int tui_exit_code(int err);
/* Prints "parley: what: the client's error sentence" and returns tui_exit_code(err). */
int tui_fail(pl_client *c, const char *what, int err);

/* cmds.c: runs the subcommand argv[0] with its arguments. */
int tui_command(tui_opts *o, int argc, char **argv);
/* ui.c: the interactive mode. */
int tui_interactive(tui_opts *o);

/* Best display name of a user id: the store's display name or username, else the id.
 * out: PL_NAME_MAX * 4 bytes. */
void tui_user_label(pl_client *c, const char *id, char *out, size_t cap);
/* "HH:MM" for today, "YYYY-MM-DD HH:MM" else; out: 20 bytes. */
void tui_time(long long ms, char *out, size_t cap, bool full);
/* The mark of an outgoing message in the dialog view ("…", "✓ sent", "✓✓ delivered"...). */
const char *tui_mark(const pl_msg *m);

/* edit.c: a one-line editor over wide characters. */
#define EDIT_MAX 4096
typedef struct edit {
    wchar_t text[EDIT_MAX + 1];
    size_t len;
    size_t cur;
} edit;
void edit_clear(edit *e);
bool edit_insert(edit *e, wchar_t ch);
void edit_backspace(edit *e);
void edit_delete(edit *e);
void edit_left(edit *e);
void edit_right(edit *e);
void edit_home(edit *e);
void edit_end(edit *e);
void edit_kill_to_end(edit *e);
void edit_kill_to_start(edit *e);
void edit_kill_word(edit *e);
/* The text as UTF-8 (caller frees), NULL if it cannot be converted. */
char *edit_utf8(const edit *e);
/* The first visible character so that the cursor fits in `width` columns. */
size_t edit_scroll(const edit *e, int width);

#endif
