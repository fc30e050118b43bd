/* socketio_codec: see socketio_codec.h. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "socketio_codec.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define MAX_ID_DIGITS 18        /* fits uint64_t with room to spare */

static enum sio_kind socketio_kind(uint8_t type)
{
    switch (type) {
    case '0': return SIO_CONNECT;
    case '1': return SIO_DISCONNECT;
    case '2': return SIO_EVENT;
    case '3': return SIO_ACK;
    case '4': return SIO_CONNECT_ERROR;
    default: return SIO_UNSUPPORTED;
    }
}

/* The Socket.IO packet inside an Engine.IO message packet: type digit,
 * [/namespace,], [ack id], data. */
static bool parse_socketio(const uint8_t *s, size_t len, struct sio_packet *p)
{
    if (len == 0 || s[0] < '0' || s[0] > '6')
        return false;
    p->kind = socketio_kind(s[0]);
    size_t i = 1;
    if (i < len && s[i] == '/') {
        const uint8_t *comma = memchr(s + i, ',', len - i);
        size_t nsp_len = comma ? (size_t)(comma - (s + i)) : len - i;
        /* "/," names the main namespace; a packet may also end right after it */
        p->other_namespace = nsp_len != 1;
        if (!comma && p->kind != SIO_CONNECT && p->kind != SIO_DISCONNECT)
            return false;
        i = comma ? (size_t)(comma - s) + 1 : len;
    }
    size_t digits = 0;
    uint64_t id = 0;
    while (i < len && s[i] >= '0' && s[i] <= '9') {
        if (++digits > MAX_ID_DIGITS)
            return false;
        id = id * 10 + (uint64_t)(s[i] - '0');
        i++;
    }
    p->has_id = digits > 0;
    p->id = id;
    p->data = s + i;
    p->data_len = len - i;
    return true;
}

bool sio_parse(const uint8_t *msg, size_t len, struct sio_packet *p)
{
    memset(p, 0, sizeof *p);
    if (len == 0)
        return false;
    p->data = msg + 1;
    p->data_len = len - 1;
    switch (msg[0]) {
    case '0': p->kind = SIO_OPEN; return true;
    case '1': p->kind = SIO_CLOSE; return true;
    case '2': p->kind = SIO_PING; return true;
    case '3': p->kind = SIO_PONG; return true;
    case '4': return parse_socketio(msg + 1, len - 1, p);
    case '5': p->kind = SIO_UNSUPPORTED; return true;
    case '6': p->kind = SIO_NOOP; return true;
    default: return false;
    }
}

bool sio_event_args(const struct sio_packet *p, const char *name, const uint8_t **args,
                    size_t *args_len)
{
    size_t n = strlen(name);
    const uint8_t *d = p->data;
    /* ["name",  ...  ] */
    if (p->kind != SIO_EVENT || p->data_len < n + 5 || d[0] != '[' || d[1] != '"' ||
        memcmp(d + 2, name, n) != 0 || d[2 + n] != '"' || d[3 + n] != ',' ||
        d[p->data_len - 1] != ']')
        return false;
    *args = d + n + 4;
    *args_len = p->data_len - n - 5;
    return true;
}

uint64_t sio_open_max_payload(const struct sio_packet *p)
{
    static const char key[] = "\"maxPayload\":";
    const uint8_t *k = memmem(p->data, p->data_len, key, sizeof key - 1);
    if (!k)
        return 0;
    const uint8_t *end = p->data + p->data_len;
    uint64_t v = 0;
    for (const uint8_t *q = k + sizeof key - 1; q < end && *q >= '0' && *q <= '9'; q++)
        v = v * 10 + (uint64_t)(*q - '0');
    return v;
}

bool sio_ack_success(const struct sio_packet *p, char *why, size_t cap)
{
    static const char ok[] = "[{\"success\":true";
    static const char err_key[] = "\"error\":\"";
    if (p->data_len >= sizeof ok - 1 && memcmp(p->data, ok, sizeof ok - 1) == 0)
        return true;
    const uint8_t *e = memmem(p->data, p->data_len, err_key, sizeof err_key - 1);
    const uint8_t *text = p->data;
    size_t n = p->data_len;
    if (e) {
        text = e + sizeof err_key - 1;
        const uint8_t *close = memchr(text, '"', (size_t)(p->data + p->data_len - text));
        n = close ? (size_t)(close - text) : (size_t)(p->data + p->data_len - text);
    }
    snprintf(why, cap, "%.*s", (int)(n > 200 ? 200 : n), (const char *)text);
    return false;
}

size_t sio_event_head(char *out, bool with_id, uint64_t id, const char *name)
{
    if (with_id)
        return (size_t)sprintf(out, "42%" PRIu64 "[\"%s\",", id, name);
    return (size_t)sprintf(out, "42[\"%s\",", name);
}
