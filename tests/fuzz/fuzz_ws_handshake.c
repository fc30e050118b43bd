/* fuzz_ws_handshake: feeds arbitrary bytes to ws_handshake_evaluate() as a
 * received upgrade request, writes the response, and abort()s when a promise
 * of ws_handshake.h is broken: the status set, where request_len points, that
 * bytes after the request change nothing, that the origin list only ever
 * turns a 101 into a 403, and that every decided result has a well-formed
 * response that fits in 1024 bytes (and is refused, not overflowed, by a
 * buffer one byte short). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ws_handshake.h"

#define RESPONSE_CAP 1024

static const char SUBPROTOCOL[] = "nebula-sync.v1";
static const char *const ORIGINS[] = {"https://app.example.com", "http://localhost:3000"};

static void check(int ok)
{
    if (!ok)
        abort();
}

static int is_known_status(int status)
{
    return status == 0 || status == 101 || status == 400 || status == 403 || status == 404 ||
           status == 426 || status == 431;
}

/* Offset just past the first CRLF CRLF in data[0, len), or 0. */
static size_t first_end_of_headers(const uint8_t *data, size_t len)
{
    for (size_t i = 0; i + 4 <= len; i++) {
        if (memcmp(data + i, "\r\n\r\n", 4) == 0)
            return i + 4;
    }
    return 0;
}

static int is_base64_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '+' || c == '/' || c == '=';
}

/* Fields of the result that hold whatever the status is. */
static void check_result_shape(const ws_handshake_result *r, const uint8_t *data, size_t size)
{
    check(is_known_status(r->status));
    check(memchr(r->bearer_token, '\0', sizeof r->bearer_token) != NULL);
    check(memchr(r->accept_key, '\0', sizeof r->accept_key) != NULL);

    size_t end = first_end_of_headers(data, size < WS_HANDSHAKE_MAX_REQUEST ? size
                                                                           : WS_HANDSHAKE_MAX_REQUEST);
    if (r->status == 0) {
        /* Undecided exactly when the end has not arrived and still may. */
        check(end == 0 && size < WS_HANDSHAKE_MAX_REQUEST);
        check(r->reason == NULL && r->request_len == 0);
    } else if (r->status == 431) {
        check(end == 0 && size >= WS_HANDSHAKE_MAX_REQUEST);
    } else {
        /* Decided on a complete header block: request_len ends at its CRLF CRLF. */
        check(end != 0 && r->request_len == end);
    }

    if (r->status == 101) {
        check(r->reason == NULL);
        check(strlen(r->accept_key) == WS_ACCEPT_KEY_LEN);
        for (size_t i = 0; i < WS_ACCEPT_KEY_LEN; i++)
            check(is_base64_char(r->accept_key[i]));
    } else {
        check(r->accept_key[0] == '\0' && !r->subprotocol_selected && r->bearer_token[0] == '\0');
        if (r->status != 0)
            check(r->reason != NULL && r->reason[0] != '\0' && strpbrk(r->reason, "\r\n") == NULL);
    }
}

static void check_same_verdict(const ws_handshake_result *a, const ws_handshake_result *b)
{
    check(a->status == b->status && a->request_len == b->request_len);
    check(a->subprotocol_selected == b->subprotocol_selected);
    check(strcmp(a->accept_key, b->accept_key) == 0);
    check(strcmp(a->bearer_token, b->bearer_token) == 0);
}

/* The response: written for every decided status, into 1024 bytes, starting
 * with the right status line; and refused by a buffer one byte too small. */
static void check_response(const ws_handshake_result *r)
{
    char buf[RESPONSE_CAP + 1];
    size_t n = ws_handshake_response_write(r, SUBPROTOCOL, buf, RESPONSE_CAP);
    if (r->status == 0) {
        check(n == 0);
        return;
    }
    check(n > 0 && n <= RESPONSE_CAP);
    buf[n] = '\0'; /* for the strstr() below, whatever the writer did */
    char code[4] = {(char)('0' + r->status / 100), (char)('0' + r->status / 10 % 10),
                    (char)('0' + r->status % 10), '\0'};
    check(n > 13 && memcmp(buf, "HTTP/1.1 ", 9) == 0 && memcmp(buf + 9, code, 3) == 0);
    if (r->status == 101) {
        check(memcmp(buf + n - 4, "\r\n\r\n", 4) == 0);
        check((strstr(buf, "\r\nSec-WebSocket-Protocol: ") != NULL) == r->subprotocol_selected);
    } else {
        size_t reason_len = strlen(r->reason);
        check(n > reason_len + 5 && memcmp(buf + n - reason_len - 1, r->reason, reason_len) == 0);
        check(memcmp(buf + n - reason_len - 5, "\r\n\r\n", 4) == 0);
        check((strstr(buf, "\r\nSec-WebSocket-Version: 13\r\n") != NULL) == (r->status == 426));
    }

    /* Heap buffer of the exact short size, so ASan sees any overflow. */
    char *short_buf = malloc(n - 1);
    check(short_buf != NULL);
    check(ws_handshake_response_write(r, SUBPROTOCOL, short_buf, n - 1) == 0);
    free(short_buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *request = (const char *)data;
    ws_handshake_policy with_origins = {"/v1/sync", SUBPROTOCOL, ORIGINS,
                                        sizeof ORIGINS / sizeof ORIGINS[0]};
    ws_handshake_policy any_origin = {"/v1/sync", SUBPROTOCOL, NULL, 0};

    /* Static: each result holds a 4 KiB token buffer. */
    static ws_handshake_result r, open_r, prefix_r;
    ws_handshake_evaluate(request, size, &with_origins, &r);
    check_result_shape(&r, data, size);
    check_response(&r);

    /* The origin rule is the last one: without a list the verdict is the
     * same, except that a 403 for the origin may become a 101. */
    ws_handshake_evaluate(request, size, &any_origin, &open_r);
    check_result_shape(&open_r, data, size);
    check_response(&open_r);
    if (r.status == 403)
        check(open_r.status == 101);
    else
        check_same_verdict(&r, &open_r);

    if (r.status != 0 && r.status != 431) {
        /* Bytes after the request (pipelined frames) change nothing... */
        ws_handshake_evaluate(request, r.request_len, &with_origins, &prefix_r);
        check_same_verdict(&r, &prefix_r);
        /* ...and one byte less is not yet a request. */
        ws_handshake_evaluate(request, r.request_len - 1, &with_origins, &prefix_r);
        check(prefix_r.status == 0);
    }
    return 0;
}
