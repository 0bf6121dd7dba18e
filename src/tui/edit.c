/* edit.c: the line editor of the interactive mode, over wide characters so that the cursor
 * moves by character and the display width is known (wcwidth). */
#include <stdlib.h>
#include <string.h>
#include <wctype.h>

#include "tui/tui.h"

void edit_clear(edit *e)
{
    e->len = e->cur = 0;
    e->text[0] = 0;
}

bool edit_insert(edit *e, wchar_t ch)
{
    if (e->len >= EDIT_MAX) return false;
    memmove(&e->text[e->cur + 1], &e->text[e->cur], (e->len - e->cur) * sizeof(wchar_t));
    e->text[e->cur++] = ch;
    e->text[++e->len] = 0;
    return true;
}

static void cut(edit *e, size_t from, size_t to)
{
    memmove(&e->text[from], &e->text[to], (e->len - to) * sizeof(wchar_t));
    e->len -= to - from;
    e->text[e->len] = 0;
    if (e->cur > to)
        e->cur -= to - from;
    else if (e->cur > from)
        e->cur = from;
}

void edit_backspace(edit *e)
{
    if (e->cur > 0) cut(e, e->cur - 1, e->cur);
}

void edit_delete(edit *e)
{
    if (e->cur < e->len) cut(e, e->cur, e->cur + 1);
}

void edit_left(edit *e)
{
    if (e->cur > 0) e->cur--;
}

void edit_right(edit *e)
{
    if (e->cur < e->len) e->cur++;
}

void edit_home(edit *e)
{
    e->cur = 0;
}

void edit_end(edit *e)
{
    e->cur = e->len;
}

void edit_kill_to_end(edit *e)
{
    cut(e, e->cur, e->len);
}

void edit_kill_to_start(edit *e)
{
    cut(e, 0, e->cur);
}

void edit_kill_word(edit *e)
{
    size_t from = e->cur;
    while (from > 0 && iswspace((wint_t)e->text[from - 1])) from--;
    while (from > 0 && !iswspace((wint_t)e->text[from - 1])) from--;
    cut(e, from, e->cur);
}

char *edit_utf8(const edit *e)
{
    size_t cap = e->len * MB_LEN_MAX + 1;
    char *out = malloc(cap);
    if (!out) return NULL;
    const wchar_t *src = e->text;
    mbstate_t st;
    memset(&st, 0, sizeof st);
    size_t n = wcsrtombs(out, &src, cap, &st);
    if (n == (size_t)-1) {
        free(out);
        return NULL;
    }
    return out;
}

static int width_of(wchar_t ch)
{
    int w = wcwidth(ch);
    return w < 0 ? 1 : w;
}

size_t edit_scroll(const edit *e, int width)
{
    /* the largest start such that start..cur fits, keeping the cursor column itself */
    size_t start = e->cur;
    int used = 1;
    while (start > 0 && used + width_of(e->text[start - 1]) <= width) {
        used += width_of(e->text[start - 1]);
        start--;
    }
    return start;
}
