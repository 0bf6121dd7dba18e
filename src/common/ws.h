/* ws.h: a WebSocket endpoint (RFC 6455) over byte buffers, server or client side.
 *
 * Wraps wslay's event API so that the caller owns the socket: bytes read from the network go in
 * through ws_feed(), and bytes to write come out in ws_out(). Whole text messages are delivered
 * to on_text after UTF-8 checking; binary messages close with 1003, invalid UTF-8 with 1007,
 * protocol errors with 1002 and a message over max_msg with 4009. Ping and close frames are
 * answered by wslay. Used by parleyd, libparley and parley-bench alike. Not thread-safe: one
 * owner thread per endpoint.
 */
#ifndef PL_WS_H
#define PL_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

#define WS_CLOSE_NORMAL       1000
#define WS_CLOSE_GOING_AWAY   1001
#define WS_CLOSE_PROTOCOL     1002
#define WS_CLOSE_UNSUPPORTED  1003
#define WS_CLOSE_BAD_DATA     1007
#define WS_CLOSE_UNAUTH       4001
#define WS_CLOSE_POLICY       4008
#define WS_CLOSE_TOO_BIG      4009
#define WS_CLOSE_RATE_LIMITED 4029

typedef struct ws ws_t;

typedef struct ws_handler {
    /* A complete, valid UTF-8 text message. msg is valid only during the call. */
    void (*on_text)(void *ud, const char *msg, size_t len);
} ws_handler;

ws_t *ws_new(bool server, size_t max_msg, const ws_handler *h, void *ud);
void ws_free(ws_t *ws);

/* Feeds bytes read from the peer. Returns the number of bytes taken (less than n once the
 * endpoint stopped reading, e.g. after a close), or -1 on a fatal error. Output may be
 * produced (answers to pings, close frames): check ws_out() afterwards. */
long ws_feed(ws_t *ws, const uint8_t *data, size_t n);
int ws_send_text(ws_t *ws, const char *msg, size_t len);
/* Queues a close frame with code and reason; no more messages are sent after it. */
void ws_close(ws_t *ws, uint16_t code, const char *reason);
/* Bytes ready to be written to the peer; the caller writes them and buf_consume()s or resets. */
buf_t *ws_out(ws_t *ws);
/* True once a close frame was sent or received: the caller should flush and close. */
bool ws_closing(ws_t *ws);
/* The code of the close frame received from the peer, 0 if none. */
uint16_t ws_peer_close_code(ws_t *ws);

/* Sec-WebSocket-Accept for a Sec-WebSocket-Key: base64(SHA-1(key + GUID)). out: 29 bytes. */
void ws_accept_key(char out[29], const char *key, size_t keylen);

#endif
