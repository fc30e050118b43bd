/* ws_client_handshake: the client side of the RFC 6455 opening handshake,
 * pure (no I/O, no allocation, no globals):
 *   - ws_url_parse(): ws:// and wss:// URLs (RFC 6455 section 3) into host,
 *     port, TLS and request target;
 *   - ws_client_key_encode() / ws_client_request_write(): the upgrade
 *     request, offering one subprotocol;
 *   - ws_client_response_check(): decides whether the server's answer is a
 *     valid 101 for that request (section 4.1, "the client MUST validate"):
 *     status 101, "Upgrade: websocket", "Connection" with the "upgrade" token,
 *     Sec-WebSocket-Accept equal to base64(SHA-1(key + GUID)), no extension
 *     (we offer none), and a Sec-WebSocket-Protocol that is absent or the one
 *     we offered. Bytes after the response head (frames the server sent right
 *     away) are left alone: response_len says where the head ends.
 */
#ifndef NEBULA_WS_CLIENT_HANDSHAKE_H
#define NEBULA_WS_CLIENT_HANDSHAKE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define WS_URL_MAX_HOST 256        /* bytes of a host name, NUL included */
#define WS_URL_MAX_TARGET 2048     /* bytes of path + query, NUL included */
#define WS_CLIENT_KEY_LEN 24       /* base64 of 16 bytes */
#define WS_CLIENT_MAX_RESPONSE 8192  /* bytes of response head we accept */

typedef struct ws_url {
    bool tls;                       /* wss:// */
    char host[WS_URL_MAX_HOST];     /* without IPv6 brackets: what we connect to */
    bool host_is_ip;                /* an IPv4 or IPv6 literal: no SNI, IP SAN check */
    bool host_is_ipv6;              /* the Host header needs brackets */
    uint16_t port;                  /* explicit, or 80 / 443 */
    bool port_is_default;           /* the Host header may omit it */
    char target[WS_URL_MAX_TARGET]; /* path and query: "/v1/sync?x=1" */
} ws_url;

/* Parses url. default_target replaces an empty path or a bare "/" (so
 * "ws://host:8080" and "ws://host:8080/" both reach the endpoint); a query
 * string is kept after it. On failure
 * returns false with *error set to a static reason. Rejects: other schemes,
 * user info, fragments, empty or malformed hosts (only letters, digits and
 * "-._~" in names; IPv6 literals in brackets, without zone ids), ports
 * outside 1..65535, and non-printable or space characters anywhere. */
bool ws_url_parse(const char *url, const char *default_target, ws_url *out,
                  const char **error);

/* Sec-WebSocket-Key: base64 of 16 random bytes the caller provides. */
void ws_client_key_encode(const uint8_t raw[16], char out[WS_CLIENT_KEY_LEN + 1]);

/* Writes the GET upgrade request (NUL-terminated) offering subprotocol
 * (NULL: none); user_agent may be NULL. Returns the length, or 0 if it does
 * not fit cap (4096 bytes always suffice for URLs that ws_url_parse accepts
 * with a user agent under 256 bytes). */
size_t ws_client_request_write(char *buf, size_t cap, const ws_url *url,
                               const char key[WS_CLIENT_KEY_LEN + 1],
                               const char *subprotocol, const char *user_agent);

typedef enum ws_client_response_state {
    WS_CLIENT_RESPONSE_INCOMPLETE,   /* need more bytes */
    WS_CLIENT_RESPONSE_ACCEPTED,     /* a valid 101 */
    WS_CLIENT_RESPONSE_REJECTED,     /* not a 101, or an invalid one: see error */
} ws_client_response_state;

typedef struct ws_client_response {
    ws_client_response_state state;
    int http_status;            /* the status code, once the status line parsed; else 0 */
    const char *error;          /* static reason when REJECTED */
    size_t response_len;        /* head length, up to and including the blank line */
    bool subprotocol_selected;  /* the server named our subprotocol */
} ws_client_response;

/* Examines the response bytes received so far (need not be NUL-terminated)
 * for the request that used key. subprotocol: the one offered, or NULL. */
void ws_client_response_check(const char *data, size_t len,
                              const char key[WS_CLIENT_KEY_LEN + 1],
                              const char *subprotocol, ws_client_response *out);

#ifdef __cplusplus
}
#endif

#endif
