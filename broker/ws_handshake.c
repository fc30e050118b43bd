/* ws_handshake: the server side of the RFC 6455 opening handshake (see
 * ws_handshake.h for the rules).
 *
 * A request is complete once the CRLF CRLF that ends its header block has
 * arrived; only then is it parsed, with http-parser, into a parse context
 * that lives on the caller's stack (fixed-size buffers, no allocation: the
 * header block is at most WS_HANDSHAKE_MAX_REQUEST bytes). Each header is
 * judged as soon as its value is complete, so only one value is ever held.
 *
 * When several rules fail, the answer follows this precedence:
 *   431 header block too large
 *   > 400 malformed HTTP (parser error, request body, bad request target)
 *   > 404 path is not the policy's
 *   > 400 method, HTTP version, Host, Upgrade, Connection, Sec-WebSocket-Key
 *   > 426 Sec-WebSocket-Version
 *   > 403 Origin not allowed.
 * The path comes first among the semantic checks so that a client of some
 * other endpoint learns that it knocked on the wrong door, whatever else is
 * wrong; the version and the origin come last because only a request that
 * is otherwise a valid WebSocket handshake can usefully be told about them.
 */
#include "ws_handshake.h"

#include <http_parser.h>
#include <openssl/evp.h>
#include <string.h>

static const char END_OF_HEADERS[] = "\r\n\r\n";
#define END_OF_HEADERS_LEN 4

static const char WS_GUID[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/* Base64 of a 16-byte key: 22 data characters and "==". */
#define CLIENT_KEY_LEN 24
#define CLIENT_KEY_BYTES 16

/* Longer than every header name we act on ("Sec-WebSocket-Protocol" is 22),
 * so a longer name is simply a header we ignore. */
#define HEADER_NAME_CAP 32

/* ---- small ASCII helpers (locale-independent on purpose: HTTP is ASCII) -- */

static char ascii_lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

static bool equals_ci(const char *a, size_t a_len, const char *b)
{
    size_t b_len = strlen(b);
    if (a_len != b_len)
        return false;
    for (size_t i = 0; i < a_len; i++) {
        if (ascii_lower(a[i]) != ascii_lower(b[i]))
            return false;
    }
    return true;
}

static bool equals_exact(const char *a, size_t a_len, const char *b)
{
    return strlen(b) == a_len && memcmp(a, b, a_len) == 0;
}

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* http-parser drops leading whitespace of a value but keeps trailing
 * whitespace, and folded lines add more: trim both ends ourselves. */
static void trim_ows(const char **s, size_t *len)
{
    while (*len > 0 && is_ows((*s)[0])) {
        (*s)++;
        (*len)--;
    }
    while (*len > 0 && is_ows((*s)[*len - 1]))
        (*len)--;
}

/* Whether the comma-separated list (RFC 7230 #rule) has an element equal to
 * want; empty elements are allowed by the grammar and skipped. */
static bool list_contains(const char *list, size_t len, const char *want, bool case_insensitive)
{
    size_t start = 0;
    while (start <= len) {
        size_t end = start;
        while (end < len && list[end] != ',')
            end++;
        const char *elem = list + start;
        size_t elem_len = end - start;
        trim_ows(&elem, &elem_len);
        bool match = case_insensitive ? equals_ci(elem, elem_len, want)
                                      : equals_exact(elem, elem_len, want);
        if (elem_len > 0 && match)
            return true;
        start = end + 1;
    }
    return false;
}

/* Offset just past the first CRLF CRLF within data[0, len), or 0. */
static size_t find_end_of_headers(const char *data, size_t len)
{
    if (len < END_OF_HEADERS_LEN)
        return 0;
    for (size_t i = 0; i + END_OF_HEADERS_LEN <= len; i++) {
        if (data[i] == '\r' && memcmp(data + i, END_OF_HEADERS, END_OF_HEADERS_LEN) == 0)
            return i + END_OF_HEADERS_LEN;
    }
    return 0;
}

/* ---- header checks ------------------------------------------------------- */

static bool is_base64_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '+' || c == '/';
}

/* RFC 6455 4.2.1 item 5: base64 that decodes to exactly 16 bytes. The
 * alphabet is checked here because EVP_DecodeBlock tolerates surrounding
 * whitespace and treats '=' anywhere as a zero digit. */
static bool is_valid_client_key(const char *key, size_t len)
{
    if (len != CLIENT_KEY_LEN)
        return false;
    size_t padding = 0;
    while (padding < 2 && key[len - 1 - padding] == '=')
        padding++;
    for (size_t i = 0; i < len - padding; i++) {
        if (!is_base64_char(key[i]))
            return false;
    }
    unsigned char decoded[CLIENT_KEY_LEN / 4 * 3];
    int n = EVP_DecodeBlock(decoded, (const unsigned char *)key, (int)len);
    /* EVP_DecodeBlock counts the padding as decoded zero bytes. */
    return n >= 0 && (size_t)n - padding == CLIENT_KEY_BYTES;
}

static bool is_b64token_char(char c)
{
    return is_base64_char(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

/* RFC 6750 2.1: credentials = "Bearer" 1*SP b64token, where b64token is
 * 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=". Anything
 * else, or a token that does not fit, leaves token empty: the session then
 * treats the client as unauthenticated rather than guessing. */
static void extract_bearer_token(const char *value, size_t len, char token[WS_HANDSHAKE_MAX_TOKEN])
{
    static const char scheme[] = "bearer";
    const size_t scheme_len = sizeof scheme - 1;
    token[0] = '\0';
    if (len <= scheme_len || !equals_ci(value, scheme_len, scheme) || value[scheme_len] != ' ')
        return;
    const char *t = value + scheme_len;
    size_t t_len = len - scheme_len;
    trim_ows(&t, &t_len);
    size_t chars = 0;
    while (chars < t_len && is_b64token_char(t[chars]))
        chars++;
    if (chars == 0)
        return;
    size_t end = chars;
    while (end < t_len && t[end] == '=')
        end++;
    if (end != t_len || t_len > WS_HANDSHAKE_MAX_TOKEN - 1)
        return;
    memcpy(token, t, t_len);
    token[t_len] = '\0';
}

/* Origins are scheme://host[:port], all case-insensitive (RFC 6454). */
static bool origin_is_allowed(const ws_handshake_policy *policy, const char *origin, size_t len)
{
    for (size_t i = 0; i < policy->allowed_origin_count; i++) {
        const char *allowed = policy->allowed_origins[i];
        if (allowed && equals_ci(origin, len, allowed))
            return true;
    }
    return false;
}

static bool policy_has_origin_list(const ws_handshake_policy *policy)
{
    return policy->allowed_origins != NULL && policy->allowed_origin_count > 0;
}

/* ---- parse context and http-parser callbacks ---------------------------- */

enum header_kind {
    HEADER_OTHER,
    HEADER_HOST,
    HEADER_UPGRADE,
    HEADER_CONNECTION,
    HEADER_KEY,
    HEADER_VERSION,
    HEADER_ORIGIN,
    HEADER_PROTOCOL,
    HEADER_AUTHORIZATION,
    HEADER_TRANSFER_ENCODING,
};

static const struct {
    const char *name;
    enum header_kind kind;
} KNOWN_HEADERS[] = {
    {"Host", HEADER_HOST},
    {"Upgrade", HEADER_UPGRADE},
    {"Connection", HEADER_CONNECTION},
    {"Sec-WebSocket-Key", HEADER_KEY},
    {"Sec-WebSocket-Version", HEADER_VERSION},
    {"Origin", HEADER_ORIGIN},
    {"Sec-WebSocket-Protocol", HEADER_PROTOCOL},
    {"Authorization", HEADER_AUTHORIZATION},
    /* Content-Length is judged by http-parser itself (see on_headers_complete);
     * any Transfer-Encoding on a request means a body follows (RFC 7230 3.3). */
    {"Transfer-Encoding", HEADER_TRANSFER_ENCODING},
};

/* Which kind of data the last callback delivered, to see where one header
 * ends and the next begins when names and values arrive in pieces. */
enum piece { PIECE_NONE, PIECE_NAME, PIECE_VALUE };

struct parse_ctx {
    const ws_handshake_policy *policy;
    ws_handshake_result *out; /* bearer_token is written straight into it */

    char url[WS_HANDSHAKE_MAX_REQUEST];
    size_t url_len;

    enum piece last_piece;
    char name[HEADER_NAME_CAP];
    size_t name_len; /* may exceed HEADER_NAME_CAP: then the name is ignored */
    char value[WS_HANDSHAKE_MAX_REQUEST];
    size_t value_len;

    unsigned messages_begun;
    bool space_in_header_name;
    bool headers_complete;
    bool has_content_length_body;

    unsigned host_count, key_count, version_count, origin_count, authorization_count;
    bool host_empty;
    bool has_transfer_encoding;
    bool upgrade_websocket;
    bool connection_upgrade;
    bool key_valid;
    char key[CLIENT_KEY_LEN];
    bool version_13;
    bool origin_allowed;
    bool subprotocol_offered;
};

static enum header_kind classify_header(const struct parse_ctx *c)
{
    if (c->name_len > HEADER_NAME_CAP)
        return HEADER_OTHER;
    for (size_t i = 0; i < sizeof KNOWN_HEADERS / sizeof KNOWN_HEADERS[0]; i++) {
        if (equals_ci(c->name, c->name_len, KNOWN_HEADERS[i].name))
            return KNOWN_HEADERS[i].kind;
    }
    return HEADER_OTHER;
}

/* Judges one complete header. List-valued headers (Upgrade, Connection,
 * Sec-WebSocket-Protocol) may repeat, which RFC 7230 3.2.2 makes equivalent
 * to one comma-joined list, so each occurrence is searched on its own;
 * single-valued ones are counted so that duplicates can be refused. */
static void judge_header(struct parse_ctx *c)
{
    const char *v = c->value;
    size_t len = c->value_len;
    trim_ows(&v, &len);

    switch (classify_header(c)) {
    case HEADER_HOST:
        c->host_count++;
        c->host_empty = c->host_empty || len == 0;
        break;
    case HEADER_UPGRADE:
        c->upgrade_websocket = c->upgrade_websocket || list_contains(v, len, "websocket", true);
        break;
    case HEADER_CONNECTION:
        c->connection_upgrade = c->connection_upgrade || list_contains(v, len, "upgrade", true);
        break;
    case HEADER_KEY:
        c->key_count++;
        c->key_valid = is_valid_client_key(v, len);
        if (c->key_valid)
            memcpy(c->key, v, CLIENT_KEY_LEN);
        break;
    case HEADER_VERSION:
        c->version_count++;
        c->version_13 = equals_exact(v, len, "13");
        break;
    case HEADER_ORIGIN:
        c->origin_count++;
        c->origin_allowed = origin_is_allowed(c->policy, v, len);
        break;
    case HEADER_PROTOCOL:
        if (c->policy->subprotocol)
            c->subprotocol_offered = c->subprotocol_offered ||
                                     list_contains(v, len, c->policy->subprotocol, false);
        break;
    case HEADER_AUTHORIZATION:
        /* Two sets of credentials are no credentials: which one would count? */
        if (++c->authorization_count == 1)
            extract_bearer_token(v, len, c->out->bearer_token);
        else
            c->out->bearer_token[0] = '\0';
        break;
    case HEADER_TRANSFER_ENCODING:
        c->has_transfer_encoding = true;
        break;
    case HEADER_OTHER:
        break;
    }
}

/* Appends a piece; false (which stops the parser) if it cannot fit, which
 * cannot happen for a header block within WS_HANDSHAKE_MAX_REQUEST. */
static bool append_piece(char *buf, size_t cap, size_t *len, const char *at, size_t n)
{
    if (n > cap - *len)
        return false;
    memcpy(buf + *len, at, n);
    *len += n;
    return true;
}

static int on_message_begin(http_parser *p)
{
    struct parse_ctx *c = p->data;
    /* A second message means the headers ended (on a bare LF) before the
     * CRLF CRLF we took as the end: the request is not what it seemed. */
    return ++c->messages_begun > 1;
}

static int on_url(http_parser *p, const char *at, size_t n)
{
    struct parse_ctx *c = p->data;
    return !append_piece(c->url, sizeof c->url, &c->url_len, at, n);
}

static int on_header_field(http_parser *p, const char *at, size_t n)
{
    struct parse_ctx *c = p->data;
    if (c->last_piece == PIECE_VALUE)
        judge_header(c);
    if (c->last_piece != PIECE_NAME)
        c->name_len = 0;
    c->last_piece = PIECE_NAME;
    /* Debian builds http-parser without HTTP_PARSER_STRICT, which lets
     * spaces into names ("Host : x"); RFC 7230 3.2.4 says such a request
     * MUST be refused with 400 (a proxy may have read it differently). */
    for (size_t i = 0; i < n; i++)
        c->space_in_header_name = c->space_in_header_name || is_ows(at[i]);
    /* Only the first HEADER_NAME_CAP bytes are kept; name_len keeps counting
     * so that classify_header() knows the name was longer. */
    if (c->name_len < HEADER_NAME_CAP) {
        size_t room = HEADER_NAME_CAP - c->name_len;
        memcpy(c->name + c->name_len, at, n < room ? n : room);
    }
    c->name_len += n;
    if (c->name_len > HEADER_NAME_CAP)
        c->name_len = HEADER_NAME_CAP + 1;
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t n)
{
    struct parse_ctx *c = p->data;
    if (c->last_piece != PIECE_VALUE)
        c->value_len = 0;
    c->last_piece = PIECE_VALUE;
    return !append_piece(c->value, sizeof c->value, &c->value_len, at, n);
}

static int on_headers_complete(http_parser *p)
{
    struct parse_ctx *c = p->data;
    if (c->last_piece == PIECE_VALUE)
        judge_header(c);
    c->last_piece = PIECE_NONE;
    c->headers_complete = true;
    c->has_content_length_body = (p->flags & F_CONTENTLENGTH) && p->content_length > 0;
    /* 1: no body is expected. A body is refused anyway, and this keeps the
     * parser from reading beyond the header block. */
    return 1;
}

static const http_parser_settings PARSER_SETTINGS = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
};

/* ---- decisions ------------------------------------------------------------ */

static void reject(ws_handshake_result *out, int status, const char *reason)
{
    out->status = status;
    out->reason = reason;
}

/* 400 for anything http-parser could not make a single, bodiless request of. */
static bool reject_malformed(const struct parse_ctx *c, const http_parser *p, size_t parsed,
                             size_t request_len, ws_handshake_result *out)
{
    if (HTTP_PARSER_ERRNO(p) != HPE_OK || parsed != request_len || !c->headers_complete ||
        c->space_in_header_name) {
        reject(out, 400, "malformed HTTP request");
        return true;
    }
    /* The session would take the body for WebSocket frames. Chunked bodies
     * are among those announced by Transfer-Encoding. */
    if (c->has_transfer_encoding || c->has_content_length_body) {
        reject(out, 400, "request must not have a body");
        return true;
    }
    return false;
}

/* 400 if the request target does not parse, 404 if its path (the query
 * string is not part of it) is not the policy's. */
static bool reject_path(const struct parse_ctx *c, ws_handshake_result *out)
{
    struct http_parser_url url;
    http_parser_url_init(&url);
    if (http_parser_parse_url(c->url, c->url_len, 0, &url) != 0) {
        reject(out, 400, "malformed request target");
        return true;
    }
    const char *path = "";
    size_t path_len = 0;
    if (url.field_set & (1u << UF_PATH)) {
        path = c->url + url.field_data[UF_PATH].off;
        path_len = url.field_data[UF_PATH].len;
    }
    /* A policy without a path serves nothing rather than everything. */
    if (!c->policy->path || !equals_exact(path, path_len, c->policy->path)) {
        reject(out, 404, "no WebSocket endpoint at this path");
        return true;
    }
    return false;
}

/* RFC 6455 4.2.1 items 1-5 (all 400). */
static bool reject_request_line_and_headers(const struct parse_ctx *c, const http_parser *p,
                                            ws_handshake_result *out)
{
    const char *reason = NULL;
    if (p->method != HTTP_GET)
        reason = "method must be GET";
    else if (p->http_major < 1 || (p->http_major == 1 && p->http_minor < 1))
        reason = "HTTP/1.1 or later required";
    else if (c->host_count == 0 || c->host_empty)
        reason = "missing Host header";
    else if (c->host_count > 1)
        reason = "duplicate Host header";
    else if (!c->upgrade_websocket)
        reason = "Upgrade header must be websocket";
    else if (!c->connection_upgrade)
        reason = "Connection header must include Upgrade";
    else if (c->key_count == 0)
        reason = "missing Sec-WebSocket-Key";
    else if (c->key_count > 1)
        reason = "duplicate Sec-WebSocket-Key";
    else if (!c->key_valid)
        reason = "Sec-WebSocket-Key must be base64 of 16 bytes";
    if (!reason)
        return false;
    reject(out, 400, reason);
    return true;
}

/* RFC 6455 4.2.2 item 4 / 4.4: a missing, repeated or other version is 426. */
static bool reject_version(const struct parse_ctx *c, ws_handshake_result *out)
{
    if (c->version_count == 1 && c->version_13)
        return false;
    reject(out, 426, "Sec-WebSocket-Version must be 13");
    return true;
}

static bool reject_origin(const struct parse_ctx *c, ws_handshake_result *out)
{
    if (!policy_has_origin_list(c->policy))
        return false;
    if (c->origin_count == 0)
        reject(out, 403, "Origin header required");
    else if (c->origin_count > 1 || !c->origin_allowed)
        reject(out, 403, "Origin not allowed");
    else
        return false;
    return true;
}

static void accept_request(const struct parse_ctx *c, ws_handshake_result *out)
{
    if (!ws_handshake_accept_key(c->key, CLIENT_KEY_LEN, out->accept_key)) {
        /* Only an OpenSSL failure gets here; the status set has no 5xx, and
         * the client must not get a 101 without a valid accept key. */
        reject(out, 400, "could not compute Sec-WebSocket-Accept");
        return;
    }
    out->status = 101;
    out->reason = NULL;
    out->subprotocol_selected = c->subprotocol_offered;
}

/* Parses the complete header block data[0, request_len) and decides. */
static void decide_complete_request(const char *data, size_t request_len,
                                    const ws_handshake_policy *policy, ws_handshake_result *out)
{
    struct parse_ctx ctx = {.policy = policy, .out = out};

    http_parser parser;
    http_parser_init(&parser, HTTP_REQUEST);
    parser.data = &ctx;
    size_t parsed = http_parser_execute(&parser, &PARSER_SETTINGS, data, request_len);

    if (reject_malformed(&ctx, &parser, parsed, request_len, out) || reject_path(&ctx, out) ||
        reject_request_line_and_headers(&ctx, &parser, out) || reject_version(&ctx, out) ||
        reject_origin(&ctx, out))
        return;
    accept_request(&ctx, out);
}

static void reset_result(ws_handshake_result *out)
{
    out->status = 0;
    out->reason = NULL;
    out->request_len = 0;
    out->accept_key[0] = '\0';
    out->subprotocol_selected = false;
    out->bearer_token[0] = '\0';
}

void ws_handshake_evaluate(const char *data, size_t len, const ws_handshake_policy *policy,
                           ws_handshake_result *out)
{
    reset_result(out);
    size_t window = len < WS_HANDSHAKE_MAX_REQUEST ? len : WS_HANDSHAKE_MAX_REQUEST;
    size_t request_len = find_end_of_headers(data, window);
    if (request_len == 0) {
        /* No end within the limit: either wait for more, or it never will fit. */
        if (len >= WS_HANDSHAKE_MAX_REQUEST)
            reject(out, 431, "request header fields too large");
        return;
    }
    out->request_len = request_len;
    decide_complete_request(data, request_len, policy, out);
    if (out->status != 101) {
        /* Credentials of a refused request are of no use to anyone. */
        out->bearer_token[0] = '\0';
        out->subprotocol_selected = false;
    }
}

/* ---- accept key ------------------------------------------------------------ */

bool ws_handshake_accept_key(const char *client_key, size_t key_len,
                             char out[WS_ACCEPT_KEY_LEN + 1])
{
    out[0] = '\0';
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_len = 0;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    bool ok = md != NULL && EVP_DigestInit_ex(md, EVP_sha1(), NULL) == 1 &&
              EVP_DigestUpdate(md, client_key, key_len) == 1 &&
              EVP_DigestUpdate(md, WS_GUID, sizeof WS_GUID - 1) == 1 &&
              EVP_DigestFinal_ex(md, digest, &digest_len) == 1 && digest_len == 20;
    EVP_MD_CTX_free(md);
    if (!ok)
        return false;
    /* 20 bytes encode to exactly 28 characters plus the NUL EVP writes. */
    return EVP_EncodeBlock((unsigned char *)out, digest, (int)digest_len) == WS_ACCEPT_KEY_LEN;
}

/* ---- response ------------------------------------------------------------- */

/* Appends to a fixed buffer, remembering whether anything did not fit. */
struct response_buf {
    char *buf;
    size_t cap;
    size_t len;
    bool overflow;
};

static void put_bytes(struct response_buf *r, const char *s, size_t n)
{
    if (r->overflow || n > r->cap - r->len) {
        r->overflow = true;
        return;
    }
    memcpy(r->buf + r->len, s, n);
    r->len += n;
}

static void put_str(struct response_buf *r, const char *s)
{
    put_bytes(r, s, strlen(s));
}

static void put_uint(struct response_buf *r, size_t v)
{
    char digits[24];
    size_t i = sizeof digits;
    do {
        digits[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0);
    put_bytes(r, digits + i, sizeof digits - i);
}

static const char *status_line(int status)
{
    switch (status) {
    case 101: return "HTTP/1.1 101 Switching Protocols\r\n";
    case 400: return "HTTP/1.1 400 Bad Request\r\n";
    case 403: return "HTTP/1.1 403 Forbidden\r\n";
    case 404: return "HTTP/1.1 404 Not Found\r\n";
    case 426: return "HTTP/1.1 426 Upgrade Required\r\n";
    case 431: return "HTTP/1.1 431 Request Header Fields Too Large\r\n";
    default: return NULL;
    }
}

static void put_switching_protocols(struct response_buf *r, const ws_handshake_result *result,
                                    const char *subprotocol)
{
    put_str(r, status_line(101));
    put_str(r, "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ");
    put_bytes(r, result->accept_key, WS_ACCEPT_KEY_LEN);
    put_str(r, "\r\n");
    if (result->subprotocol_selected && subprotocol && subprotocol[0] != '\0') {
        put_str(r, "Sec-WebSocket-Protocol: ");
        put_str(r, subprotocol);
        put_str(r, "\r\n");
    }
    put_str(r, "\r\n");
}

static void put_error(struct response_buf *r, const ws_handshake_result *result)
{
    const char *reason = result->reason ? result->reason : "";
    size_t reason_len = strlen(reason);
    put_str(r, status_line(result->status));
    put_str(r, "Content-Type: text/plain\r\nContent-Length: ");
    put_uint(r, reason_len + 1);
    put_str(r, "\r\nConnection: close\r\n");
    if (result->status == 426)
        put_str(r, "Sec-WebSocket-Version: 13\r\n");
    put_str(r, "\r\n");
    put_bytes(r, reason, reason_len);
    put_str(r, "\n");
}

static bool has_complete_accept_key(const ws_handshake_result *result)
{
    const char *nul = memchr(result->accept_key, '\0', sizeof result->accept_key);
    return nul == result->accept_key + WS_ACCEPT_KEY_LEN;
}

size_t ws_handshake_response_write(const ws_handshake_result *result, const char *subprotocol,
                                   char *buf, size_t cap)
{
    /* Nothing to say for an undecided result, and never a 101 without a
     * complete accept key. */
    if (!status_line(result->status))
        return 0;
    if (result->status == 101 && !has_complete_accept_key(result))
        return 0;

    struct response_buf r = {.buf = buf, .cap = cap, .len = 0, .overflow = false};
    if (result->status == 101)
        put_switching_protocols(&r, result, subprotocol);
    else
        put_error(&r, result);
    if (r.overflow)
        return 0;
    /* Convenient for logs and tests; not part of the returned length. */
    if (r.len < cap)
        buf[r.len] = '\0';
    return r.len;
}
