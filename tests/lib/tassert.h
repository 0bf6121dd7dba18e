/* tassert.h: cmocka assertions for Parley answers, printing the whole answer on a mismatch. */
#ifndef T_ASSERT_H
#define T_ASSERT_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "tclient.h"

/* An HTTP error answer: status and error.code, plus a message string. */
#define assert_http_error(status, resp, want_status, want_code)                                    \
    do {                                                                                           \
        if ((status) != (want_status) || strcmp(t_err_code(resp), (want_code)) != 0 ||             \
            !json_is_string(tj_get((resp), "error.message")))                                      \
            t_note("%s:%d: want %d %s, got %d %s", __FILE__, __LINE__, (int)(want_status),         \
                   (want_code), (int)(status), tj_dump(resp));                                     \
        assert_int_equal((status), (want_status));                                                 \
        assert_string_equal(t_err_code(resp), (want_code));                                        \
        assert_true(json_is_string(tj_get((resp), "error.message")));                              \
    } while (0)

/* An HTTP success status, printing the body otherwise. */
#define assert_http_status(status, resp, want_status)                                              \
    do {                                                                                           \
        if ((status) != (want_status))                                                             \
            t_note("%s:%d: want %d, got %d %s", __FILE__, __LINE__, (int)(want_status),            \
                   (int)(status), tj_dump(resp));                                                  \
        assert_int_equal((status), (want_status));                                                 \
    } while (0)

/* A WebSocket error frame with the given id (NULL: any) and code. Consumes and frees it. */
#define assert_ws_error(ws, want_id, want_code)                                                    \
    do {                                                                                           \
        json_t *e_ = tws_expect_type((ws), "error", 0);                                            \
        assert_non_null(e_);                                                                       \
        if (strcmp(tj_str(e_, "code"), (want_code)) != 0 ||                                        \
            ((want_id) && strcmp(tj_str(e_, "id"), (want_id) ? (want_id) : "") != 0))              \
            t_note("%s:%d: want error %s (id %s), got %s", __FILE__, __LINE__, (want_code),        \
                   (want_id) ? (want_id) : "-", tj_dump(e_));                                      \
        assert_string_equal(tj_str(e_, "code"), (want_code));                                      \
        if (want_id) assert_string_equal(tj_str(e_, "id"), (want_id) ? (want_id) : "");            \
        assert_true(json_is_string(tj_get(e_, "message")));                                        \
        json_decref(e_);                                                                           \
    } while (0)

/* ping -> pong with the same id as the next frame: the socket is open and answering. */
#define assert_ws_alive(ws)                                                                        \
    do {                                                                                           \
        char pid_[32];                                                                             \
        t_id(pid_, sizeof pid_, "ping");                                                           \
        assert_int_equal(tws_sendp((ws), "{s:s, s:s}", "type", "ping", "id", pid_), 0);            \
        json_t *p_ = tws_expect_reply((ws), "pong", pid_, 0);                                      \
        assert_non_null(p_);                                                                       \
        json_decref(p_);                                                                           \
    } while (0)

#endif
