/* ws.h: a WebSocket endpoint (RFC 6455) over byte buffers, server or client side.
 *
 * The caller owns the socket: bytes read from the network go in through ws_feed(), and bytes to
 * write come out in ws_out(). Whole text messages are delivered to on_text after UTF-8 checking;
 * binary messages close with 1003, invalid UTF-8 with 1007, protocol errors with 1002 and a
 * message over max_msg with 4009 (as soon as a frame header announces it). Pings are answered
 * with pongs and a peer's close with the echo of its code. The framing is Parley's own (ws.c);
 * an endpoint between messages is about 250 bytes and holds no buffer. Used by parleyd,
 * libparley and parley-bench alike. Not thread-safe: one owner thread per endpoint.
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

/* Feeds bytes read from the peer. Every byte is taken (a frame split across reads is kept until
 * it is complete) until the endpoint stops reading: the return is then less than n (the bytes up
 * to the peer's close frame or the frame that failed the connection), or -1 after a protocol
 * error (closed with 1002). Output may be produced (pongs, close frames): check ws_out()
 * afterwards. on_text may call ws_send_text() and ws_close(). */
long ws_feed(ws_t *ws, const uint8_t *data, size_t n);
int ws_send_text(ws_t *ws, const char *msg, size_t len);
/* Queues a close frame with code and reason (cut to 123 bytes); no more messages are sent or
 * delivered after it. Only the first close is sent. */
void ws_close(ws_t *ws, uint16_t code, const char *reason);
/* Bytes ready to be written to the peer; the caller writes them and buf_consume()s or resets. */
buf_t *ws_out(ws_t *ws);
/* True once a close frame was sent or received: the caller should flush and close. */
bool ws_closing(ws_t *ws);
/* The code of the close frame received from the peer, 1005 if it had none, 0 if none came. */
uint16_t ws_peer_close_code(ws_t *ws);

/* Sec-WebSocket-Accept for a Sec-WebSocket-Key: base64(SHA-1(key + GUID)). out: 29 bytes. */
void ws_accept_key(char out[29], const char *key, size_t keylen);

#endif
