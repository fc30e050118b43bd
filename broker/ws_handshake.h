/* ws_handshake: the server side of the RFC 6455 opening handshake, pure.
 *
 * The session collects request bytes; ws_handshake_evaluate() says whether
 * the request is complete yet and, once it is, parses it with http-parser
 * and applies the rules of RFC 6455 section 4.2.1:
 *   - at most WS_HANDSHAKE_MAX_REQUEST bytes up to the end of the headers,
 *     else 431 (said as soon as that many bytes arrive with no end in sight);
 *   - method GET and HTTP/1.1 or later, a Host header, "Upgrade: websocket"
 *     (case-insensitive), a Connection header whose comma-separated tokens
 *     include "Upgrade", a Sec-WebSocket-Key that is base64 of exactly 16
 *     bytes; any failure is 400 with a reason;
 *   - Sec-WebSocket-Version other than 13 (or missing) is 426, answered with
 *     "Sec-WebSocket-Version: 13";
 *   - a path other than the policy's (query string ignored) is 404;
 *   - with an Origin allow-list, a missing or unlisted Origin is 403;
 *   - the policy's subprotocol is selected when the client offers it among
 *     its Sec-WebSocket-Protocol values (several headers and comma lists).
 * The accept key is base64(SHA-1(key + GUID)) computed with OpenSSL.
 * Bytes after the request (frames the client pipelined) are not touched:
 * request_len says where the request ends.
 */
#ifndef NEBULA_WS_HANDSHAKE_H
#define NEBULA_WS_HANDSHAKE_H

#include <stdbool.h>
#include <stddef.h>

#define WS_HANDSHAKE_MAX_REQUEST 8192
#define WS_ACCEPT_KEY_LEN 28           /* base64 of a 20-byte SHA-1 */
#define WS_HANDSHAKE_MAX_TOKEN 4096    /* longest bearer token kept */

typedef struct ws_handshake_policy {
    const char *path;                       /* e.g. "/v1/sync" */
    const char *subprotocol;                /* e.g. "nebula-sync.v1"; NULL: none */
    const char *const *allowed_origins;     /* exact matches; NULL/0: any origin */
    size_t allowed_origin_count;
} ws_handshake_policy;

typedef struct ws_handshake_result {
    int status;              /* 0: incomplete, need more bytes; 101 accepted;
                                400, 403, 404, 426, 431: rejected */
    const char *reason;      /* static text: why rejected (NULL when 101) */
    size_t request_len;      /* bytes up to and including the blank line */
    char accept_key[WS_ACCEPT_KEY_LEN + 1];
    bool subprotocol_selected;
    /* Token from "Authorization: Bearer <token>", NUL-terminated; empty if
     * absent or longer than WS_HANDSHAKE_MAX_TOKEN - 1. */
    char bearer_token[WS_HANDSHAKE_MAX_TOKEN];
} ws_handshake_result;

/* Examines the request bytes received so far (data need not be
 * NUL-terminated). Fills out; out->status == 0 means call again once more
 * bytes have arrived. */
void ws_handshake_evaluate(const char *data, size_t len, const ws_handshake_policy *policy,
                           ws_handshake_result *out);

/* Writes the HTTP response for a decided result: "101 Switching Protocols"
 * with Upgrade, Connection, Sec-WebSocket-Accept and (if selected)
 * Sec-WebSocket-Protocol; or the error status with a text/plain body giving
 * the reason, "Connection: close", and for 426 "Sec-WebSocket-Version: 13".
 * subprotocol is the policy's. Returns the length written, or 0 if cap is too
 * small (1024 bytes always suffice). */
size_t ws_handshake_response_write(const ws_handshake_result *result, const char *subprotocol,
                                   char *buf, size_t cap);

/* base64(SHA-1(client_key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")) into
 * out (NUL-terminated). Returns false only if OpenSSL fails. */
bool ws_handshake_accept_key(const char *client_key, size_t key_len,
                             char out[WS_ACCEPT_KEY_LEN + 1]);

#endif
