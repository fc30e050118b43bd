/* ws_client_handshake: URL parsing, the upgrade request and the validation
 * of the server's 101. See ws_client_handshake.h for the rules.
 *
 * The response parser is deliberately small: a 101 has no body, so all we
 * need is the status line and a handful of headers up to the blank line.
 * Anything unusual (obsolete line folding, a bare LF, a header without a
 * colon) is rejected rather than guessed at: a server that speaks this
 * protocol never sends it, and a proxy that does is not one to trust.
 */
#include "ws_client_handshake.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/* ---- URL --------------------------------------------------------------- */

static bool fail(const char **error, const char *why)
{
    if (error)
        *error = why;
    return false;
}

static bool is_name_char(char ch)
{
    return isalnum((unsigned char)ch) || ch == '-' || ch == '.' || ch == '_' || ch == '~';
}

/* Request-target characters: printable ASCII except space and '#'. */
static bool is_target_char(char ch)
{
    return ch > 0x20 && ch < 0x7f && ch != '#';
}

/* Parses "[v6]" or a name / IPv4 address from s up to ':' or the end of the
 * authority (len bytes); returns the bytes used, or 0 with *why set. */
static size_t parse_host_part(const char *s, size_t len, ws_url *out, const char **why)
{
    *why = "malformed IPv6 literal";
    if (len > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', len);
        size_t n = close ? (size_t)(close - s - 1) : 0;
        if (!close || n == 0 || n >= sizeof out->host)
            return 0;
        memcpy(out->host, s + 1, n);
        out->host[n] = '\0';
        struct in6_addr a6;
        if (inet_pton(AF_INET6, out->host, &a6) != 1)
            return 0;
        out->host_is_ip = out->host_is_ipv6 = true;
        return n + 2;
    }
    size_t n = 0;
    *why = "invalid character in host";
    while (n < len && s[n] != ':') {
        if (!is_name_char(s[n]))
            return 0;
        n++;
    }
    *why = n == 0 ? "empty host" : "host name too long";
    if (n == 0 || n >= sizeof out->host)
        return 0;
    memcpy(out->host, s, n);
    out->host[n] = '\0';
    struct in_addr a4;
    out->host_is_ip = inet_pton(AF_INET, out->host, &a4) == 1;
    return n;
}

static size_t parse_host(const char *s, size_t len, ws_url *out, const char **error)
{
    const char *why = NULL;
    size_t used = parse_host_part(s, len, out, &why);
    if (used == 0)
        fail(error, why);
    return used;
}

/* Parses the optional ":port" rest of the authority. */
static bool parse_port(const char *s, size_t len, ws_url *out, const char **error)
{
    out->port = out->tls ? 443 : 80;
    out->port_is_default = true;
    if (len == 0)
        return true;
    if (s[0] != ':')
        return fail(error, "unexpected character after host");
    if (len == 1)
        return true;   /* "host:" is allowed by RFC 3986: default port */
    unsigned long port = 0;
    for (size_t i = 1; i < len; i++) {
        if (!isdigit((unsigned char)s[i]) || i > 5)
            return fail(error, "invalid port");
        port = port * 10 + (unsigned long)(s[i] - '0');
    }
    if (port == 0 || port > 65535)
        return fail(error, "port out of range");
    out->port = (uint16_t)port;
    out->port_is_default = port == (out->tls ? 443u : 80u);
    return true;
}

/* Copies the path and query (rest starts at '/' or '?', or is empty). */
static bool parse_target(const char *rest, const char *default_target, ws_url *out,
                         const char **error)
{
    for (const char *p = rest; *p; p++)
        if (!is_target_char(*p))
            return fail(error, *p == '#' ? "fragment not allowed in a WebSocket URL"
                                         : "invalid character in path");
    const char *query = strchr(rest, '?');
    size_t path_len = query ? (size_t)(query - rest) : strlen(rest);
    bool use_default = path_len == 0 || (path_len == 1 && rest[0] == '/');
    const char *path = use_default ? default_target : rest;
    if (use_default)
        path_len = strlen(default_target);
    if (!query)
        query = "";
    int n = snprintf(out->target, sizeof out->target, "%.*s%s", (int)path_len, path, query);
    if (n < 0 || (size_t)n >= sizeof out->target)
        return fail(error, "path too long");
    return true;
}

bool ws_url_parse(const char *url, const char *default_target, ws_url *out,
                  const char **error)
{
    memset(out, 0, sizeof *out);
    if (!url)
        return fail(error, "no URL");
    if (strncasecmp(url, "wss://", 6) == 0) {
        out->tls = true;
        url += 6;
    } else if (strncasecmp(url, "ws://", 5) == 0) {
        url += 5;
    } else {
        return fail(error, "scheme must be ws:// or wss://");
    }
    size_t authority = strcspn(url, "/?#");
    if (memchr(url, '@', authority))
        return fail(error, "user info not allowed in the URL");
    size_t host_len = parse_host(url, authority, out, error);
    if (host_len == 0)
        return false;
    if (!parse_port(url + host_len, authority - host_len, out, error))
        return false;
    return parse_target(url + authority, default_target ? default_target : "/", out, error);
}

/* ---- request ----------------------------------------------------------- */

void ws_client_key_encode(const uint8_t raw[16], char out[WS_CLIENT_KEY_LEN + 1])
{
    EVP_EncodeBlock((unsigned char *)out, raw, 16);   /* writes 24 chars + NUL */
}

size_t ws_client_request_write(char *buf, size_t cap, const ws_url *url,
                               const char key[WS_CLIENT_KEY_LEN + 1],
                               const char *subprotocol, const char *user_agent)
{
    char port[8] = "";
    if (!url->port_is_default)
        snprintf(port, sizeof port, ":%u", (unsigned)url->port);
    int n = snprintf(buf, cap,
                     "GET %s HTTP/1.1\r\n"
                     "Host: %s%s%s%s\r\n"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n"
                     "%s%s%s"
                     "%s%s%s"
                     "\r\n",
                     url->target, url->host_is_ipv6 ? "[" : "", url->host,
                     url->host_is_ipv6 ? "]" : "", port, key,
                     subprotocol ? "Sec-WebSocket-Protocol: " : "", subprotocol ? subprotocol : "",
                     subprotocol ? "\r\n" : "",
                     user_agent ? "User-Agent: " : "", user_agent ? user_agent : "",
                     user_agent ? "\r\n" : "");
    if (n < 0 || (size_t)n >= cap)
        return 0;
    return (size_t)n;
}

/* ---- response ---------------------------------------------------------- */

/* One "name: value" line, value trimmed of optional whitespace. */
typedef struct header_line {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
} header_line;

/* What the checks need from the headers, collected in one pass. */
typedef struct seen_headers {
    bool upgrade_websocket;
    bool connection_upgrade;
    int accept_count;
    bool accept_matches;
    int protocol_count;
    bool protocol_matches;
    bool extensions;
} seen_headers;

static void reject(ws_client_response *out, const char *why)
{
    out->state = WS_CLIENT_RESPONSE_REJECTED;
    out->error = why;
}

static bool name_is(const header_line *h, const char *name)
{
    return h->name_len == strlen(name) && strncasecmp(h->name, name, h->name_len) == 0;
}

static bool value_is(const char *value, size_t len, const char *want, bool ignore_case)
{
    if (len != strlen(want))
        return false;
    return ignore_case ? strncasecmp(value, want, len) == 0 : memcmp(value, want, len) == 0;
}

static bool is_ows(char ch)
{
    return ch == ' ' || ch == '\t';
}

/* Whether a comma-separated list holds token (case-insensitive). */
static bool list_has_token(const char *value, size_t len, const char *token)
{
    size_t i = 0;
    while (i < len) {
        size_t start = i;
        while (i < len && value[i] != ',')
            i++;
        size_t end = i;
        while (start < end && is_ows(value[start]))
            start++;
        while (end > start && is_ows(value[end - 1]))
            end--;
        if (value_is(value + start, end - start, token, true))
            return true;
        i++;   /* past the comma */
    }
    return false;
}

/* Splits line (no CRLF) into name and trimmed value; false if malformed. */
static bool split_header(const char *line, size_t len, header_line *h)
{
    const char *colon = memchr(line, ':', len);
    if (!colon || colon == line)
        return false;
    for (const char *p = line; p < colon; p++)
        if (!isgraph((unsigned char)*p))   /* also rejects obs-fold's leading space */
            return false;
    const char *v = colon + 1, *end = line + len;
    while (v < end && is_ows(*v))
        v++;
    while (end > v && is_ows(end[-1]))
        end--;
    *h = (header_line){line, (size_t)(colon - line), v, (size_t)(end - v)};
    return true;
}

static void note_header(const header_line *h, const char *expected_accept,
                        const char *subprotocol, seen_headers *seen)
{
    if (name_is(h, "Upgrade")) {
        seen->upgrade_websocket |= value_is(h->value, h->value_len, "websocket", true);
    } else if (name_is(h, "Connection")) {
        seen->connection_upgrade |= list_has_token(h->value, h->value_len, "upgrade");
    } else if (name_is(h, "Sec-WebSocket-Accept")) {
        seen->accept_count++;
        seen->accept_matches = value_is(h->value, h->value_len, expected_accept, false);
    } else if (name_is(h, "Sec-WebSocket-Protocol")) {
        seen->protocol_count++;
        seen->protocol_matches =
            subprotocol && value_is(h->value, h->value_len, subprotocol, false);
    } else if (name_is(h, "Sec-WebSocket-Extensions")) {
        seen->extensions |= h->value_len > 0;
    }
}

/* "HTTP/1.x NNN reason": the status code, or 0 if malformed. */
static int parse_status_line(const char *line, size_t len)
{
    if (len < 12 || memcmp(line, "HTTP/1.", 7) != 0 || !isdigit((unsigned char)line[7]) ||
        line[8] != ' ')
        return 0;
    if (!isdigit((unsigned char)line[9]) || !isdigit((unsigned char)line[10]) ||
        !isdigit((unsigned char)line[11]) || (len > 12 && line[12] != ' '))
        return 0;
    return (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
}

static bool expected_accept_key(const char key[WS_CLIENT_KEY_LEN + 1], char out[29])
{
    char input[WS_CLIENT_KEY_LEN + sizeof WS_GUID];
    int n = snprintf(input, sizeof input, "%s%s", key, WS_GUID);
    if (n < 0 || (size_t)n >= sizeof input)
        return false;
    unsigned char digest[SHA_DIGEST_LENGTH];
    if (!EVP_Digest(input, (size_t)n, digest, NULL, EVP_sha1(), NULL))
        return false;
    EVP_EncodeBlock((unsigned char *)out, digest, SHA_DIGEST_LENGTH);
    return true;
}

/* Final verdict on a complete 101 head whose headers are in seen: NULL
 * when valid, else why not. */
static const char *judge(const seen_headers *seen, const char *subprotocol)
{
    if (!seen->upgrade_websocket)
        return "101 without \"Upgrade: websocket\"";
    if (!seen->connection_upgrade)
        return "101 without \"Connection: Upgrade\"";
    if (seen->accept_count != 1)
        return "101 without exactly one Sec-WebSocket-Accept";
    if (!seen->accept_matches)
        return "Sec-WebSocket-Accept does not match our key";
    if (seen->extensions)
        return "server selected an extension we did not offer";
    if (seen->protocol_count > 1 || (seen->protocol_count == 1 && !seen->protocol_matches))
        return subprotocol ? "server selected a subprotocol we did not offer"
                           : "server selected a subprotocol but we offered none";
    return NULL;
}

/* Finds the blank line ending the head: returns its end offset, or 0. */
static size_t find_head_end(const char *data, size_t len)
{
    for (size_t i = 3; i < len; i++)
        if (data[i] == '\n' && data[i - 1] == '\r' && data[i - 2] == '\n' && data[i - 3] == '\r')
            return i + 1;
    return 0;
}

/* Checks the header lines of a 101 head; NULL when valid, else why not. */
static const char *check_headers(const char *p, const char *end,
                                 const char key[WS_CLIENT_KEY_LEN + 1],
                                 const char *subprotocol, seen_headers *seen)
{
    char accept[29];
    if (!expected_accept_key(key, accept))
        return "cannot compute the expected accept key";
    while (p < end) {
        const char *cr = memchr(p, '\r', (size_t)(end - p));
        header_line h;
        if (!cr || cr[1] != '\n' || memchr(p, '\n', (size_t)(cr - p)) ||
            !split_header(p, (size_t)(cr - p), &h))
            return "malformed header line";
        note_header(&h, accept, subprotocol, seen);
        p = cr + 2;
    }
    return judge(seen, subprotocol);
}

void ws_client_response_check(const char *data, size_t len,
                              const char key[WS_CLIENT_KEY_LEN + 1],
                              const char *subprotocol, ws_client_response *out)
{
    memset(out, 0, sizeof *out);
    size_t head = find_head_end(data, len < WS_CLIENT_MAX_RESPONSE ? len : WS_CLIENT_MAX_RESPONSE);
    if (head == 0) {
        out->state = WS_CLIENT_RESPONSE_INCOMPLETE;
        if (len >= WS_CLIENT_MAX_RESPONSE)
            reject(out, "response head too large");
        return;
    }
    out->response_len = head;
    const char *eol = memchr(data, '\r', head);   /* found: head ends in CRLFCRLF */
    out->http_status = parse_status_line(data, (size_t)(eol - data));
    if (out->http_status == 0) {
        reject(out, "malformed HTTP status line");
        return;
    }
    if (out->http_status != 101) {
        reject(out, "server did not switch protocols");
        return;
    }
    seen_headers seen = {0};
    /* Header lines lie between the status line's CRLF and the final CRLF. */
    const char *why = check_headers(eol + 2, data + head - 2, key, subprotocol, &seen);
    if (why) {
        reject(out, why);
        return;
    }
    out->subprotocol_selected = seen.protocol_count == 1;
    out->state = WS_CLIENT_RESPONSE_ACCEPTED;
}
