/* ui.c: parley's interactive mode (ncursesw).
 *
 *   ┌ Parley  alice ─────────────────────────────────────── online ┐
 *   │ conversations      │ bob                                      │
 *   │> bob (2)           │ 12:01 bob: hi                            │
 *   │  carol             │ 12:02 me: hello            ✓✓ delivered  │
 *   │                    │ 12:03 me: still there?     … pending     │
 *   │ status / key help                                             │
 *   │ > the line being written                                      │
 *
 * One thread: a poll(2) loop over the terminal and the client's event descriptor. Every event
 * re-reads what it touches from the store (the store is the truth, events only say "look"), and
 * the whole screen is redrawn; at terminal sizes that is cheap. Known limit: profiles of users
 * met only through messages are fetched (one REST call each) while online, on the UI thread.
 */
#include <curses.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

#include "common/util.h"
#include "tui/tui.h"

enum { MODE_CHAT, MODE_NEWCHAT };

#define TYPING_SEND_MS 3000 /* while composing, "typing on" at most this often */
#define TYPING_SHOW_MS 6000 /* a typing indicator fades without a new "on" */
#define MAX_SEEN       256

typedef struct seen {
    char user[PL_ID_MAX];
    pl_presence presence;
    char typing_conv[PL_ID_MAX]; /* "" when not typing */
    int64_t typing_until;
} seen;

typedef struct ui {
    pl_client *c;
    pl_session me;
    pl_state state;
    pl_conv *convs;
    size_t nconvs;
    int sel;
    char conv[PL_ID_MAX]; /* the open dialog ("" for none) */
    char peer[PL_ID_MAX];
    char title[PL_NAME_MAX * 4];
    pl_msg *msgs;
    size_t nmsgs;
    int scroll; /* dialog lines scrolled back from the newest */
    edit ed;
    int mode;
    char status[1200];
    char tried[64][PL_ID_MAX]; /* users whose profile was asked for already */
    int ntried;
    bool quit;
    seen seen[MAX_SEEN]; /* presence and typing of others, from events (never stored) */
    int nseen;
    int64_t typing_sent_at; /* when "typing on" last went out, 0 when off */
    char typing_conv[PL_ID_MAX];
} ui;

static seen *seen_of(ui *u, const char *user, bool add)
{
    for (int i = 0; i < u->nseen; i++)
        if (strcmp(u->seen[i].user, user) == 0) return &u->seen[i];
    if (!add || u->nseen == MAX_SEEN) return NULL;
    seen *s = &u->seen[u->nseen++];
    memset(s, 0, sizeof *s);
    snprintf(s->user, sizeof s->user, "%s", user);
    return s;
}

/* ------------------------------------------------------------------------------ the data */

/* Asks the server once for the profile of a user the store knows only by id. */
static void fetch_user(ui *u, const char *id)
{
    if (u->state != PL_STATE_ONLINE || !id || strncmp(id, "u_", 2) != 0) return;
    for (int k = 0; k < u->ntried; k++)
        if (strcmp(u->tried[k], id) == 0) return;
    if (u->ntried == 64) return;
    char label[PL_NAME_MAX * 4];
    tui_user_label(u->c, id, label, sizeof label);
    if (strcmp(label, id) != 0) return; /* named already */
    snprintf(u->tried[u->ntried++], PL_ID_MAX, "%s", id);
    pl_user usr;
    pl_user_get(u->c, id, &usr); /* remembered in the store on success */
}

static void fetch_unknown_peers(ui *u)
{
    if (u->state != PL_STATE_ONLINE) return;
    for (size_t i = 0; i < u->nconvs; i++) {
        const char *p = u->convs[i].peer;
        if (!p[0] || strcmp(u->convs[i].title, p) != 0) continue; /* no peer, or named */
        fetch_user(u, p);
    }
}

/* Senders of the open dialog and users named in its system messages. */
static void fetch_unknown_senders(ui *u)
{
    for (size_t i = 0; i < u->nmsgs; i++) {
        if (!u->msgs[i].outgoing) fetch_user(u, u->msgs[i].from);
        if (strcmp(u->msgs[i].kind, "system") != 0 || !u->msgs[i].body) continue;
        /* ids in the body: every "u_..." string */
        const char *b = u->msgs[i].body;
        while ((b = strstr(b, "\"u_")) != NULL) {
            char id[PL_ID_MAX];
            size_t k = 0;
            b++;
            while (b[k] && b[k] != '"' && k < sizeof id - 1) {
                id[k] = b[k];
                k++;
            }
            id[k] = 0;
            b += k;
            fetch_user(u, id);
        }
    }
}

static void load_msgs(ui *u)
{
    pl_msgs_free(u->msgs, u->nmsgs);
    u->msgs = NULL;
    u->nmsgs = 0;
    if (!u->conv[0]) return;
    pl_msgs_history(u->c, u->conv, 0, 500, &u->msgs, &u->nmsgs);
    pl_conv_mark_read(u->c, u->conv);
    int before = u->ntried;
    fetch_unknown_senders(u);
    if (u->ntried != before) { /* names arrived: read again */
        pl_msgs_free(u->msgs, u->nmsgs);
        pl_msgs_history(u->c, u->conv, 0, 500, &u->msgs, &u->nmsgs);
    }
}

static void load_convs(ui *u)
{
    pl_free(u->convs);
    u->convs = NULL;
    u->nconvs = 0;
    pl_convs_list(u->c, &u->convs, &u->nconvs);
    size_t before = u->ntried;
    fetch_unknown_peers(u);
    if ((size_t)u->ntried != before) {
        pl_free(u->convs);
        pl_convs_list(u->c, &u->convs, &u->nconvs);
    }
    /* keep the open conversation selected wherever it moved */
    u->sel = -1;
    for (size_t i = 0; i < u->nconvs; i++)
        if (strcmp(u->convs[i].id, u->conv) == 0) {
            u->sel = (int)i;
            snprintf(u->title, sizeof u->title, "%s", u->convs[i].title);
            if (u->convs[i].group)
                snprintf(u->peer, sizeof u->peer, "%s", u->convs[i].id);
            else if (u->convs[i].peer[0])
                snprintf(u->peer, sizeof u->peer, "%s", u->convs[i].peer);
        }
}

static void open_conv(ui *u, int idx)
{
    if (idx < 0 || (size_t)idx >= u->nconvs) return;
    u->sel = idx;
    snprintf(u->conv, sizeof u->conv, "%s", u->convs[idx].id);
    /* a group's messages go to the group itself */
    snprintf(u->peer, sizeof u->peer, "%s",
             u->convs[idx].group ? u->convs[idx].id : u->convs[idx].peer);
    snprintf(u->title, sizeof u->title, "%s", u->convs[idx].title);
    u->scroll = 0;
    load_msgs(u);
    load_convs(u); /* the unread count went to 0 */
}

/* ---------------------------------------------------------------------------- drawing */

static int wwidth(const wchar_t *s, size_t n)
{
    int w = 0;
    for (size_t i = 0; i < n && s[i]; i++) {
        int k = wcwidth(s[i]);
        w += k < 0 ? 1 : k;
    }
    return w;
}

/* Prints UTF-8 s at (y, x) within `width` columns (cut, never wrapped). */
static void put(int y, int x, int width, const char *s)
{
    if (width <= 0) return;
    wchar_t w[1024];
    mbstate_t st;
    memset(&st, 0, sizeof st);
    const char *src = s;
    size_t n = mbsrtowcs(w, &src, 1023, &st);
    if (n == (size_t)-1) {
        mvaddnstr(y, x, "?", width);
        return;
    }
    w[n] = 0;
    size_t k = 0;
    int used = 0;
    while (k < n) {
        int cw = wcwidth(w[k]);
        if (cw < 0) {
            w[k] = L'?';
            cw = 1;
        }
        if (used + cw > width) break;
        used += cw;
        k++;
    }
    mvaddnwstr(y, x, w, (int)k);
}

/* A dialog line: text of one message cut into rows of `width` columns. */
typedef struct row {
    wchar_t *w;
    size_t n;
    const char *mark; /* on the last row of an outgoing message */
    bool mine;
} row;

static size_t wrap(const wchar_t *w, size_t n, int width, row *rows, size_t cap, size_t nrows)
{
    size_t start = 0;
    do {
        size_t end = start;
        int used = 0;
        while (end < n && w[end] != L'\n') {
            int cw = wcwidth(w[end]);
            if (cw < 0) cw = 1;
            if (used + cw > width) break;
            used += cw;
            end++;
        }
        if (end == start && end < n && w[end] != L'\n') end++; /* a glyph wider than the pane */
        if (nrows < cap) rows[nrows++] = (row){.w = (wchar_t *)w + start, .n = end - start};
        start = end < n && w[end] == L'\n' ? end + 1 : end;
    } while (start < n);
    return nrows;
}

static void draw_dialog(ui *u, int top, int left, int height, int width)
{
    if (!u->conv[0]) {
        put(top + 1, left + 1, width - 2, "No conversation open.");
        put(top + 2, left + 1, width - 2, "Ctrl-N starts one; Up/Down choose from the list.");
        return;
    }
    /* the lock: this direct conversation is end-to-end encrypted */
    char title[sizeof u->title + 8];
    snprintf(title, sizeof title, "%s%s", u->title,
             strncmp(u->peer, "u_", 2) == 0 && pl_e2e_with(u->c, u->peer) ? " \xf0\x9f\x94\x92"
                                                                          : "");
    attron(A_BOLD);
    put(top, left, width, title);
    attroff(A_BOLD);
    /* who is typing here */
    char typing[512] = "";
    int64_t now = mono_ms();
    for (int i = 0; i < u->nseen; i++) {
        seen *s = &u->seen[i];
        if (strcmp(s->typing_conv, u->conv) != 0 || s->typing_until < now) continue;
        char who[PL_NAME_MAX * 4];
        tui_user_label(u->c, s->user, who, sizeof who);
        size_t l = strlen(typing);
        snprintf(typing + l, sizeof typing - l, "%s%s", l ? ", " : "", who);
    }
    if (typing[0]) {
        size_t l = strlen(typing);
        snprintf(typing + l, sizeof typing - l, " is typing\xe2\x80\xa6");
        int tw = (int)strlen(title) + 3;
        if (tw < width) {
            attron(A_DIM);
            put(top, left + tw, width - tw, typing);
            attroff(A_DIM);
        }
    }
    height--;
    top++;
    /* the texts, as wide strings, one per message */
    size_t cap = u->nmsgs * 4 + 64, nrows = 0;
    row *rows = calloc(cap, sizeof *rows);
    wchar_t **texts = calloc(u->nmsgs + 1, sizeof *texts);
    if (!rows || !texts) {
        free(rows);
        free(texts);
        return;
    }
    for (size_t i = 0; i < u->nmsgs; i++) {
        const pl_msg *m = &u->msgs[i];
        char when[24], line[17000];
        tui_time(m->ts, when, sizeof when, false);
        char who[PL_NAME_MAX * 4], sys[512];
        if (m->outgoing)
            snprintf(who, sizeof who, "me");
        else if (strncmp(m->conv, "g_", 2) == 0)
            tui_user_label(u->c, m->from, who, sizeof who);
        else
            snprintf(who, sizeof who, "%s", u->title);
        if (pl_msg_system_text(u->c, m, sys, sizeof sys) == 0)
            snprintf(line, sizeof line, "%s * %s", when, sys);
        else
            snprintf(line, sizeof line, "%s %s: %s", when, who, m->text ? m->text : m->kind);
        size_t len = strlen(line) + 1;
        texts[i] = calloc(len, sizeof(wchar_t));
        if (!texts[i]) continue;
        const char *src = line;
        mbstate_t st;
        memset(&st, 0, sizeof st);
        size_t n = mbsrtowcs(texts[i], &src, len, &st);
        if (n == (size_t)-1) n = 0;
        const char *mark = m->outgoing && strcmp(m->kind, "system") != 0 ? tui_mark(m) : "";
        int markw = *mark ? 16 : 0;
        size_t first = nrows;
        if (cap - nrows < 4 + (size_t)(n / (size_t)(width > 8 ? width - markw : 8))) {
            cap = cap * 2 + n;
            row *p = realloc(rows, cap * sizeof *p);
            if (!p) break;
            rows = p;
        }
        nrows = wrap(texts[i], n, width - markw - 1 > 8 ? width - markw - 1 : 8, rows, cap, nrows);
        for (size_t r = first; r < nrows; r++) rows[r].mine = m->outgoing;
        if (nrows > first) rows[nrows - 1].mark = mark;
    }
    int maxscroll = (int)nrows > height ? (int)nrows - height : 0;
    if (u->scroll > maxscroll) u->scroll = maxscroll;
    int last = (int)nrows - u->scroll; /* rows [last - height, last) are shown */
    int first = last - height > 0 ? last - height : 0;
    for (int r = first, y = top; r < last; r++, y++) {
        mvaddnwstr(y, left, rows[r].w, (int)rows[r].n);
        if (rows[r].mark && *rows[r].mark) {
            int x = left + wwidth(rows[r].w, rows[r].n) + 2;
            if (x < left + width - 14) x = left + width - 14;
            if (x < left + width) {
                attron(A_DIM);
                put(y, x, left + width - x, rows[r].mark);
                attroff(A_DIM);
            }
        }
    }
    for (size_t i = 0; i < u->nmsgs; i++) free(texts[i]);
    free(texts);
    free(rows);
}

static void draw(ui *u)
{
    erase();
    int L = COLS / 3 > 30 ? 30 : COLS / 3;
    /* the top line: who, and whether the server can be reached */
    attron(A_REVERSE);
    mvhline(0, 0, ' ', COLS);
    char top[256];
    snprintf(top, sizeof top, " Parley  %s", u->me.username);
    put(0, 0, COLS, top);
    const char *st = u->state == PL_STATE_ONLINE         ? "online"
                     : u->state == PL_STATE_SYNCING      ? "syncing"
                     : u->state == PL_STATE_CONNECTING   ? "connecting (offline)"
                     : u->state == PL_STATE_UNAUTHORIZED ? "signed out: log in again"
                                                         : "offline";
    char right[64];
    snprintf(right, sizeof right, "[%s] ", st);
    put(0, COLS - (int)strlen(right), (int)strlen(right), right);
    attroff(A_REVERSE);

    /* the conversation list */
    int h = LINES - 3;
    put(1, 1, L - 1, "Conversations");
    for (size_t i = 0; i < u->nconvs && (int)i < h - 1; i++) {
        const pl_conv *cv = &u->convs[i];
        char line[512];
        /* presence of the peer: ● online, ○ away, nothing when offline or unknown */
        const seen *ps = cv->peer[0] ? seen_of(u, cv->peer, false) : NULL;
        const char *pm = cv->group                                  ? "#"
                         : ps && ps->presence == PL_PRESENCE_ONLINE ? "\xe2\x97\x8f"
                         : ps && ps->presence == PL_PRESENCE_AWAY   ? "\xe2\x97\x8b"
                                                                    : " ";
        const char *lock =
            !cv->group && cv->peer[0] && pl_e2e_with(u->c, cv->peer) ? " \xf0\x9f\x94\x92" : "";
        if (cv->unread)
            snprintf(line, sizeof line, "%s%s %s%s (%d)", (int)i == u->sel ? ">" : " ", pm,
                     cv->title, lock, cv->unread);
        else
            snprintf(line, sizeof line, "%s%s %s%s", (int)i == u->sel ? ">" : " ", pm, cv->title,
                     lock);
        if ((int)i == u->sel) attron(A_REVERSE);
        if (cv->unread) attron(A_BOLD);
        put(2 + (int)i, 0, L - 1, line);
        attroff(A_REVERSE | A_BOLD);
    }
    mvvline(1, L, ACS_VLINE, h);
    draw_dialog(u, 1, L + 2, h, COLS - L - 3);

    /* status and input */
    const char *help = u->mode == MODE_NEWCHAT
                           ? "Enter: open the conversation  Esc: cancel"
                           : "Ctrl-N new chat  Up/Down choose  PgUp/PgDn scroll  Ctrl-Q quit";
    attron(A_DIM);
    put(LINES - 2, 0, COLS, u->status[0] ? u->status : help);
    attroff(A_DIM);
    const char *prompt = u->mode == MODE_NEWCHAT ? "To (username): " : "> ";
    put(LINES - 1, 0, COLS, prompt);
    int px = (int)strlen(prompt), width = COLS - px - 1;
    size_t start = edit_scroll(&u->ed, width);
    size_t shown = 0;
    int used = 0;
    while (start + shown < u->ed.len) {
        int cw = wcwidth(u->ed.text[start + shown]);
        if (cw < 0) cw = 1;
        if (used + cw > width) break;
        used += cw;
        shown++;
    }
    mvaddnwstr(LINES - 1, px, u->ed.text + start, (int)shown);
    move(LINES - 1, px + wwidth(u->ed.text + start, u->ed.cur - start));
    refresh();
}

/* ------------------------------------------------------------------------------- input */

static void typing_stop(ui *u)
{
    if (u->typing_sent_at && u->typing_conv[0] && u->state == PL_STATE_ONLINE)
        pl_typing_send(u->c, u->typing_conv, false);
    u->typing_sent_at = 0;
    u->typing_conv[0] = 0;
}

/* A key changed the line: tell the others, at most every TYPING_SEND_MS. */
static void typing_tick(ui *u)
{
    if (u->mode != MODE_CHAT || !u->conv[0] || u->state != PL_STATE_ONLINE) return;
    if (u->ed.len == 0 || u->ed.text[0] == L'/') {
        typing_stop(u);
        return;
    }
    int64_t now = mono_ms();
    if (strcmp(u->typing_conv, u->conv) != 0) typing_stop(u);
    if (u->typing_sent_at && now - u->typing_sent_at < TYPING_SEND_MS) return;
    if (pl_typing_send(u->c, u->conv, true) == 0) {
        u->typing_sent_at = now;
        snprintf(u->typing_conv, sizeof u->typing_conv, "%s", u->conv);
    }
}

static void open_conv_id(ui *u, const char *conv)
{
    load_convs(u);
    for (size_t i = 0; i < u->nconvs; i++)
        if (strcmp(u->convs[i].id, conv) == 0) open_conv(u, (int)i);
}

/* Resolves the words of argv as users; fills ids and pointers. False (status set) on failure. */
static bool resolve_users(ui *u, char **argv, int n, char (*ids)[PL_ID_MAX], const char **ptrs)
{
    for (int i = 0; i < n; i++) {
        pl_user usr;
        if (pl_user_resolve(u->c, argv[i], &usr) != 0) {
            snprintf(u->status, sizeof u->status, "%s: %s", argv[i], pl_client_errmsg(u->c));
            return false;
        }
        snprintf(ids[i], PL_ID_MAX, "%s", usr.id);
        ptrs[i] = ids[i];
    }
    return true;
}

#define SLASH_MAX_ARGS 32

/* A line starting with "/": a command. */
static void slash(ui *u, char *line)
{
    char *argv[SLASH_MAX_ARGS + 1], *save = NULL;
    int argc = 0;
    for (char *t = strtok_r(line + 1, " \t", &save); t && argc < SLASH_MAX_ARGS;
         t = strtok_r(NULL, " \t", &save))
        argv[argc++] = t;
    argv[argc] = NULL;
    if (argc == 0) return;
    const char *cmd = argv[0];
    char ids[SLASH_MAX_ARGS][PL_ID_MAX];
    const char *ptrs[SLASH_MAX_ARGS];
    bool in_group = strncmp(u->conv, "g_", 2) == 0;
    int err = 0;
    u->status[0] = 0;
    if (strcmp(cmd, "group") == 0) {
        if (argc < 2) {
            snprintf(u->status, sizeof u->status, "usage: /group NAME USER...");
            return;
        }
        if (!resolve_users(u, argv + 2, argc - 2, ids, ptrs)) return;
        pl_group g;
        err = pl_group_create(u->c, argv[1], ptrs, (size_t)(argc - 2), &g);
        if (!err) {
            snprintf(u->status, sizeof u->status, "group %s created", g.name);
            char id[PL_ID_MAX];
            snprintf(id, sizeof id, "%s", g.id);
            pl_group_clear(&g);
            open_conv_id(u, id);
            if (strcmp(u->conv, id) != 0) { /* not listed yet: open it anyway */
                snprintf(u->conv, sizeof u->conv, "%s", id);
                snprintf(u->peer, sizeof u->peer, "%s", id);
                snprintf(u->title, sizeof u->title, "%s", argv[1]);
                load_msgs(u);
            }
        }
    } else if (strcmp(cmd, "add") == 0 || strcmp(cmd, "remove") == 0 || strcmp(cmd, "leave") == 0 ||
               strcmp(cmd, "rename") == 0) {
        if (!in_group) {
            snprintf(u->status, sizeof u->status, "/%s works in a group's dialog", cmd);
            return;
        }
        if (strcmp(cmd, "leave") == 0) {
            err = pl_group_leave(u->c, u->conv);
            if (!err) snprintf(u->status, sizeof u->status, "you left %s", u->title);
        } else if (strcmp(cmd, "rename") == 0) {
            if (argc < 2) {
                snprintf(u->status, sizeof u->status, "usage: /rename NAME");
                return;
            }
            char name[256] = "";
            for (int i = 1; i < argc; i++) {
                size_t l = strlen(name);
                snprintf(name + l, sizeof name - l, "%s%s", i > 1 ? " " : "", argv[i]);
            }
            err = pl_group_rename(u->c, u->conv, name);
        } else {
            if (argc < 2) {
                snprintf(u->status, sizeof u->status, "usage: /%s USER...", cmd);
                return;
            }
            if (!resolve_users(u, argv + 1, argc - 1, ids, ptrs)) return;
            if (strcmp(cmd, "add") == 0) {
                err = pl_group_add(u->c, u->conv, ptrs, (size_t)(argc - 1));
                if (err >= 0) snprintf(u->status, sizeof u->status, "added %d", err);
            } else {
                for (int i = 0; i < argc - 1 && err == 0; i++)
                    err = pl_group_remove(u->c, u->conv, ptrs[i]);
            }
        }
    } else if (strcmp(cmd, "invite") == 0 || strcmp(cmd, "accept") == 0 ||
               strcmp(cmd, "decline") == 0 || strcmp(cmd, "block") == 0 ||
               strcmp(cmd, "unblock") == 0) {
        if (argc != 2) {
            snprintf(u->status, sizeof u->status, "usage: /%s USER", cmd);
            return;
        }
        if (!resolve_users(u, argv + 1, 1, ids, ptrs)) return;
        if (strcmp(cmd, "invite") == 0 || strcmp(cmd, "accept") == 0)
            err = pl_contact_invite(u->c, ids[0]);
        else if (strcmp(cmd, "decline") == 0)
            err = pl_contact_decline(u->c, ids[0]);
        else if (strcmp(cmd, "block") == 0)
            err = pl_user_block(u->c, ids[0]);
        else
            err = pl_user_unblock(u->c, ids[0]);
        if (err >= 0)
            snprintf(u->status, sizeof u->status, "%s: %s", argv[1],
                     err == PL_CONTACT_FRIEND      ? "friends now"
                     : err == PL_CONTACT_OUTGOING  ? "invited"
                     : strcmp(cmd, "decline") == 0 ? "declined"
                     : strcmp(cmd, "block") == 0   ? "blocked"
                                                   : "unblocked");
    } else if (strcmp(cmd, "away") == 0 || strcmp(cmd, "back") == 0) {
        err = pl_presence_set(u->c, cmd[0] == 'a' ? PL_PRESENCE_AWAY : PL_PRESENCE_ONLINE);
        if (!err)
            snprintf(u->status, sizeof u->status, "you are %s", cmd[0] == 'a' ? "away" : "online");
    } else if (strcmp(cmd, "encrypt") == 0) {
        if (strncmp(u->peer, "g_", 2) != 0) {
            snprintf(u->status, sizeof u->status, "/encrypt works in a group");
            return;
        }
        err = pl_group_set_encrypted(u->c, u->peer);
        if (!err)
            snprintf(u->status, sizeof u->status, "%s is end-to-end encrypted now (for good)",
                     u->title);
    } else if (strcmp(cmd, "verify") == 0) {
        if (strncmp(u->peer, "u_", 2) != 0) {
            snprintf(u->status, sizeof u->status, "/verify works in a direct conversation");
            return;
        }
        char sn[PL_SAFETY_NUMBER_LEN + 1];
        err = pl_safety_number_get(u->c, u->peer, sn);
        if (!err && argc > 1 && strcmp(argv[1], "confirm") == 0) {
            err = pl_contact_set_verified(u->c, u->peer, true);
            if (!err) snprintf(u->status, sizeof u->status, "%s is verified now", u->title);
        } else if (!err) {
            bool v = false;
            pl_contact_verified(u->c, u->peer, &v);
            char grouped[PL_SAFETY_NUMBER_LEN * 2];
            size_t k = 0;
            for (int i = 0; i < PL_SAFETY_NUMBER_LEN; i++) {
                if (i && i % 5 == 0) grouped[k++] = ' ';
                grouped[k++] = sn[i];
            }
            grouped[k] = 0;
            snprintf(u->status, sizeof u->status, "safety number%s: %s  (compare; /verify confirm)",
                     v ? " (verified)" : "", grouped);
        }
    } else if (strcmp(cmd, "help") == 0) {
        snprintf(
            u->status, sizeof u->status,
            "/group NAME USER.. /add USER.. /remove USER.. /leave /rename NAME "
            "/invite /accept /decline /block /unblock USER /away /back /verify [confirm] /encrypt");
    } else {
        snprintf(u->status, sizeof u->status, "unknown command /%s (/help lists them)", cmd);
        return;
    }
    if (err < 0) snprintf(u->status, sizeof u->status, "/%s: %s", cmd, pl_client_errmsg(u->c));
    load_convs(u);
    load_msgs(u);
}

static void submit(ui *u)
{
    char *text = edit_utf8(&u->ed);
    if (!text) {
        snprintf(u->status, sizeof u->status, "that line cannot be encoded as UTF-8");
        return;
    }
    if (u->mode == MODE_NEWCHAT) {
        pl_user usr;
        int err = text[0] ? pl_user_resolve(u->c, text, &usr) : PL_EINVAL;
        if (err) {
            snprintf(u->status, sizeof u->status, "%s: %s", text, pl_client_errmsg(u->c));
        } else {
            u->mode = MODE_CHAT;
            pl_conv_direct(u->c, usr.id, u->conv);
            snprintf(u->peer, sizeof u->peer, "%s", usr.id);
            snprintf(u->title, sizeof u->title, "%s",
                     usr.display_name[0] ? usr.display_name
                     : usr.username[0]   ? usr.username
                                         : usr.id);
            u->status[0] = 0;
            u->scroll = 0;
            load_msgs(u);
            load_convs(u);
            edit_clear(&u->ed);
        }
        free(text);
        return;
    }
    if (!text[0]) {
        free(text);
        return;
    }
    typing_stop(u);
    if (text[0] == '/' && text[1] != '/') {
        edit_clear(&u->ed);
        slash(u, text);
        free(text);
        return;
    }
    if (text[0] == '/') memmove(text, text + 1, strlen(text)); /* "//x" sends "/x" */
    if (!u->peer[0]) {
        snprintf(u->status, sizeof u->status,
                 u->conv[0] ? "the other user of this conversation is not known yet"
                            : "open a conversation first (Ctrl-N)");
    } else {
        int err = pl_msg_send(u->c, u->peer, text, NULL);
        if (err)
            snprintf(u->status, sizeof u->status, "not sent: %s", pl_client_errmsg(u->c));
        else {
            u->status[0] = 0;
            edit_clear(&u->ed);
            u->scroll = 0;
            load_msgs(u);
            load_convs(u);
        }
    }
    free(text);
}

static void on_key(ui *u, int kind, wint_t ch)
{
    if (kind == KEY_CODE_YES) {
        switch (ch) {
        case KEY_UP:
            if (u->mode == MODE_CHAT) open_conv(u, u->sel > 0 ? u->sel - 1 : 0);
            break;
        case KEY_DOWN:
            if (u->mode == MODE_CHAT) open_conv(u, u->sel + 1);
            break;
        case KEY_PPAGE:
            u->scroll += LINES / 2;
            break;
        case KEY_NPAGE:
            u->scroll = u->scroll > LINES / 2 ? u->scroll - LINES / 2 : 0;
            break;
        case KEY_LEFT:
            edit_left(&u->ed);
            break;
        case KEY_RIGHT:
            edit_right(&u->ed);
            break;
        case KEY_HOME:
            edit_home(&u->ed);
            break;
        case KEY_END:
            edit_end(&u->ed);
            break;
        case KEY_BACKSPACE:
            edit_backspace(&u->ed);
            break;
        case KEY_DC:
            edit_delete(&u->ed);
            break;
        case KEY_ENTER:
            submit(u);
            break;
        case KEY_F(10):
            u->quit = true;
            break;
        case KEY_RESIZE:
            break;
        }
        return;
    }
    switch (ch) {
    case L'\r':
    case L'\n':
        submit(u);
        break;
    case 1: /* Ctrl-A */
        edit_home(&u->ed);
        break;
    case 5: /* Ctrl-E */
        edit_end(&u->ed);
        break;
    case 11: /* Ctrl-K */
        edit_kill_to_end(&u->ed);
        break;
    case 21: /* Ctrl-U */
        edit_kill_to_start(&u->ed);
        break;
    case 23: /* Ctrl-W */
        edit_kill_word(&u->ed);
        break;
    case 8:
    case 127:
        edit_backspace(&u->ed);
        break;
    case 12: /* Ctrl-L */
        clearok(curscr, TRUE);
        break;
    case 14: /* Ctrl-N */
        u->mode = MODE_NEWCHAT;
        u->status[0] = 0;
        edit_clear(&u->ed);
        break;
    case 27: /* Esc */
        if (u->mode == MODE_NEWCHAT) {
            u->mode = MODE_CHAT;
            edit_clear(&u->ed);
        }
        u->status[0] = 0;
        break;
    case 3:  /* Ctrl-C */
    case 17: /* Ctrl-Q */
        u->quit = true;
        break;
    default:
        if (ch >= 32 && ch != 127) {
            edit_insert(&u->ed, (wchar_t)ch);
            typing_tick(u);
        }
    }
}

static void on_event(ui *u, pl_event *ev)
{
    switch (ev->kind) {
    case PL_EV_STATE:
        u->state = ev->state;
        if (ev->state == PL_STATE_ONLINE) load_convs(u);
        break;
    case PL_EV_ERROR:
        if (ev->error == PL_ETOKEN)
            snprintf(u->status, sizeof u->status, "%s", ev->text ? ev->text : "signed out");
        break;
    case PL_EV_MSG_FAILED:
        snprintf(u->status, sizeof u->status, "a message was refused: %s",
                 ev->text ? ev->text : "");
        break;
    case PL_EV_PRESENCE: {
        seen *s = seen_of(u, ev->user, true);
        if (s) s->presence = ev->presence;
        break;
    }
    case PL_EV_TYPING: {
        seen *s = seen_of(u, ev->user, true);
        if (!s) break;
        snprintf(s->typing_conv, sizeof s->typing_conv, "%s", ev->typing ? ev->conv : "");
        s->typing_until = ev->typing ? mono_ms() + TYPING_SHOW_MS : 0;
        break;
    }
    case PL_EV_MESSAGE: { /* a message ends its sender's typing */
        seen *s = seen_of(u, ev->msg.from, false);
        if (s) s->typing_conv[0] = 0;
        break;
    }
    case PL_EV_IDENTITY_CHANGED: {
        char who[PL_NAME_MAX * 4];
        tui_user_label(u->c, ev->user, who, sizeof who);
        snprintf(u->status, sizeof u->status,
                 "the safety number with %s changed: compare it again (/verify)", who);
        break;
    }
    case PL_EV_CONTACT: {
        fetch_user(u, ev->user);
        char who[PL_NAME_MAX * 4];
        tui_user_label(u->c, ev->user, who, sizeof who);
        if (ev->contact == PL_CONTACT_INCOMING)
            snprintf(u->status, sizeof u->status, "%s invites you: /accept %s or /decline %s", who,
                     who, who);
        else if (ev->contact == PL_CONTACT_FRIEND)
            snprintf(u->status, sizeof u->status, "%s accepted: you are friends", who);
        break;
    }
    default:
        break;
    }
}

int tui_interactive(tui_opts *o)
{
    pl_client *c;
    int rc = tui_open(o, &c);
    if (rc) return rc;
    ui *u = calloc(1, sizeof *u);
    if (!u) {
        pl_client_free(c);
        return EXIT_LOCAL;
    }
    u->c = c;
    if (pl_session_get(c, &u->me) != 0) {
        fprintf(stderr, "parley: not logged in: run `parley register NAME` or "
                        "`parley login NAME` first (with the same --profile)\n");
        pl_client_free(c);
        free(u);
        return EXIT_NOLOGIN;
    }
    u->sel = -1;
    if (!o->offline) pl_client_connect(c);
    u->state = pl_client_state(c);
    load_convs(u);
    if (u->nconvs > 0) open_conv(u, 0);

    initscr();
    raw();
    noecho();
    keypad(stdscr, TRUE);
    nodelay(stdscr, TRUE);
    set_escdelay(50);
    draw(u);
    while (!u->quit) {
        struct pollfd p[2] = {{.fd = 0, .events = POLLIN},
                              {.fd = pl_client_fd(c), .events = POLLIN}};
        if (poll(p, 2, 1000) < 0 && errno != EINTR) break;
        bool reload = false;
        pl_event ev;
        while (pl_client_next_event(c, &ev) == 0) {
            on_event(u, &ev);
            if (ev.kind != PL_EV_ERROR && ev.kind != PL_EV_TYPING && ev.kind != PL_EV_PRESENCE)
                reload = true;
            pl_event_clear(&ev);
        }
        wint_t ch;
        int kind;
        while ((kind = get_wch(&ch)) != ERR && !u->quit) on_key(u, kind, ch);
        if (reload) {
            load_convs(u);
            load_msgs(u);
        }
        if (!u->quit) draw(u);
    }
    endwin();
    typing_stop(u);
    pl_client_disconnect(c);
    pl_msgs_free(u->msgs, u->nmsgs);
    pl_free(u->convs);
    free(u);
    pl_client_free(c);
    return EXIT_OK;
}
