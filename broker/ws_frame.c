/* ws_frame: the RFC 6455 frame codec (section 5), decoding frames in place
 * from a connection's receive buffer and encoding frame headers.
 *
 * The reader validates in the order the bytes arrive: everything decidable
 * from the first two bytes, then the extended length, then (once the whole
 * frame is there) the payload. Reader state is only written when a frame is
 * accepted, so NEED_MORE can be retried with more bytes at no risk.
 */
#include "ws_frame.h"

#include <string.h>

#define FIN_BIT 0x80u
#define RSV_BITS 0x70u   /* RSV1-3: meaningful only with an extension (5.2) */
#define OPCODE_BITS 0x0Fu
#define MASK_BIT 0x80u
#define LEN7_BITS 0x7Fu
#define LEN7_16BIT 126u  /* 5.2: "If 126, the following 2 bytes ..." */
#define LEN7_64BIT 127u  /* 5.2: "If 127, the following 8 bytes ..." */
#define MASK_KEY_LEN 4u
#define CLOSE_CODE_LEN 2u
#define MAX_CLOSE_REASON (WS_MAX_CONTROL_PAYLOAD - CLOSE_CODE_LEN)

/* What the header says about one frame. */
typedef struct frame_header {
    bool fin;
    uint8_t opcode;
    bool masked;
    uint8_t len7;            /* the 7-bit length field as sent */
    size_t ext_len_bytes;    /* 0, 2 or 8 bytes of extended length */
    size_t header_len;       /* 2..14 */
    uint64_t payload_len;
} frame_header;

/* ---- byte order helpers: network order is big-endian (5.2) ---------- */

static uint16_t load_be16(const uint8_t *p)
{
    return (uint16_t)((unsigned)p[0] << 8 | p[1]);
}

static uint64_t load_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static void store_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void store_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

/* ---- results ---------------------------------------------------------- */

static ws_read_status need_more(ws_frame *out, size_t need)
{
    out->need = need;
    return WS_READ_NEED_MORE;
}

static ws_read_status fail(ws_frame *out, uint16_t close_code, const char *why)
{
    out->close_code = close_code;
    out->error = why;
    return WS_READ_FAIL;
}

/* ---- header ------------------------------------------------------------ */

static bool is_control(uint8_t opcode)
{
    return (opcode & 0x8u) != 0;   /* 5.5: control opcodes have the MSB set */
}

static bool is_known_opcode(uint8_t opcode)
{
    switch (opcode) {
    case WS_OP_CONTINUATION:
    case WS_OP_TEXT:
    case WS_OP_BINARY:
    case WS_OP_CLOSE:
    case WS_OP_PING:
    case WS_OP_PONG:
        return true;
    default:
        return false;   /* 3-7 and B-F are reserved (5.2) */
    }
}

static void parse_first_two_bytes(const uint8_t *buf, frame_header *h)
{
    h->fin = (buf[0] & FIN_BIT) != 0;
    h->opcode = buf[0] & OPCODE_BITS;
    h->masked = (buf[1] & MASK_BIT) != 0;
    h->len7 = buf[1] & LEN7_BITS;
    h->ext_len_bytes = h->len7 == LEN7_16BIT ? 2 : h->len7 == LEN7_64BIT ? 8 : 0;
    h->header_len = 2 + h->ext_len_bytes + (h->masked ? MASK_KEY_LEN : 0);
    h->payload_len = h->len7;   /* until the extended length is read */
}

/* Every 1002 decidable from the first two bytes; NULL when none applies. */
static const char *first_two_bytes_error(const ws_reader *r, const frame_header *h,
                                         uint8_t byte0)
{
    if (byte0 & RSV_BITS)
        return "RSV bit set without a negotiated extension";
    if (!is_known_opcode(h->opcode))
        return "reserved opcode";
    /* 5.1: a server closes on an unmasked client frame, a client on a
     * masked server frame. */
    if (r->role == WS_ROLE_SERVER && !h->masked)
        return "unmasked frame from client";
    if (r->role == WS_ROLE_CLIENT && h->masked)
        return "masked frame from server";
    if (is_control(h->opcode)) {
        /* 5.5: control frames are at most 125 bytes and never fragmented;
         * 126/127 in the 7-bit field already means > 125. */
        if (!h->fin)
            return "fragmented control frame";
        if (h->len7 > WS_MAX_CONTROL_PAYLOAD)
            return "control frame payload over 125 bytes";
        return NULL;
    }
    /* 5.4: continuations only inside a message, no message inside one. */
    if (h->opcode == WS_OP_CONTINUATION && !r->in_message)
        return "continuation frame without a message in progress";
    if (h->opcode != WS_OP_CONTINUATION && r->in_message)
        return "new data message while a fragmented message is in progress";
    return NULL;
}

/* Reads the 16/64-bit length; 5.2 requires "the minimal number of bytes"
 * and a 64-bit length with its most significant bit clear. */
static const char *read_extended_length(const uint8_t *buf, frame_header *h)
{
    if (h->ext_len_bytes == 2) {
        h->payload_len = load_be16(buf + 2);
        if (h->payload_len <= WS_MAX_CONTROL_PAYLOAD)
            return "16-bit length not in minimal form";
    } else if (h->ext_len_bytes == 8) {
        h->payload_len = load_be64(buf + 2);
        if (h->payload_len >> 63)
            return "64-bit length with the most significant bit set";
        if (h->payload_len <= 0xFFFF)
            return "64-bit length not in minimal form";
    }
    return NULL;
}

/* The 1009 rule: a data frame may not take its message past the limit.
 * Checked on the header so an oversized payload is never buffered. */
static bool exceeds_message_limit(const ws_reader *r, const frame_header *h)
{
    if (is_control(h->opcode))
        return false;
    uint64_t so_far = h->opcode == WS_OP_CONTINUATION ? r->message_len : 0;
    return so_far > r->max_message_size || h->payload_len > r->max_message_size - so_far;
}

/* ---- payload ------------------------------------------------------------ */

static ws_read_status read_data_frame(ws_reader *r, const frame_header *h, uint8_t *payload,
                                      ws_frame *out)
{
    bool begins = h->opcode != WS_OP_CONTINUATION;
    uint8_t message_opcode = begins ? h->opcode : r->message_opcode;

    /* 8.1: TEXT must be UTF-8 as a whole message, but a fragment may end
     * inside a character; the validator carries the partial sequence. */
    utf8_validator utf8;
    if (message_opcode == WS_OP_TEXT) {
        if (begins)
            utf8_validator_init(&utf8);
        else
            utf8 = r->utf8;
        if (!utf8_validator_feed(&utf8, payload, (size_t)h->payload_len))
            return fail(out, WS_CLOSE_INVALID_PAYLOAD, "invalid UTF-8 in text message");
        if (h->fin && !utf8_validator_complete(&utf8))
            return fail(out, WS_CLOSE_INVALID_PAYLOAD, "text message ends inside a UTF-8 sequence");
    }

    if (h->fin) {
        r->in_message = false;
        r->message_opcode = WS_OP_CONTINUATION;
        r->message_len = 0;
        utf8_validator_init(&r->utf8);
    } else {
        r->message_len = (begins ? 0 : r->message_len) + h->payload_len;
        r->in_message = true;
        r->message_opcode = message_opcode;
        if (message_opcode == WS_OP_TEXT)
            r->utf8 = utf8;
    }
    out->message_opcode = message_opcode;
    out->message_begins = begins;
    out->message_ends = h->fin;
    return WS_READ_FRAME;
}

/* 5.5.1: an empty body, or a 2-byte status code and a UTF-8 reason. */
static ws_read_status read_close_frame(const uint8_t *payload, size_t len, ws_frame *out)
{
    if (len == 0) {
        out->peer_close_code = WS_CLOSE_NO_STATUS;   /* 7.1.5 */
        out->close_reason = payload;
        out->close_reason_len = 0;
        return WS_READ_FRAME;
    }
    if (len < CLOSE_CODE_LEN)
        return fail(out, WS_CLOSE_PROTOCOL_ERROR, "close payload of 1 byte");
    uint16_t code = load_be16(payload);
    if (!ws_close_code_is_valid(code))
        return fail(out, WS_CLOSE_PROTOCOL_ERROR, "invalid close code");
    if (!utf8_is_valid(payload + CLOSE_CODE_LEN, len - CLOSE_CODE_LEN))
        return fail(out, WS_CLOSE_INVALID_PAYLOAD, "close reason is not UTF-8");
    out->peer_close_code = code;
    out->close_reason = payload + CLOSE_CODE_LEN;
    out->close_reason_len = len - CLOSE_CODE_LEN;
    return WS_READ_FRAME;
}

/* ---- public ------------------------------------------------------------- */

void ws_reader_init(ws_reader *r, ws_role role, uint64_t max_message_size)
{
    r->role = role;
    r->max_message_size = max_message_size;
    r->in_message = false;
    r->message_opcode = WS_OP_CONTINUATION;
    r->message_len = 0;
    utf8_validator_init(&r->utf8);
}

ws_read_status ws_reader_next(ws_reader *r, uint8_t *buf, size_t len, ws_frame *out)
{
    *out = (ws_frame){.need = 0};
    if (len < 2)
        return need_more(out, 2);

    frame_header h;
    parse_first_two_bytes(buf, &h);
    const char *why = first_two_bytes_error(r, &h, buf[0]);
    if (why)
        return fail(out, WS_CLOSE_PROTOCOL_ERROR, why);

    if (len < 2 + h.ext_len_bytes)
        return need_more(out, h.header_len);
    why = read_extended_length(buf, &h);
    if (why)
        return fail(out, WS_CLOSE_PROTOCOL_ERROR, why);
    if (exceeds_message_limit(r, &h))
        return fail(out, WS_CLOSE_MESSAGE_TOO_BIG, "message exceeds the size limit");
    if (h.payload_len > SIZE_MAX - h.header_len)   /* only possible with 32-bit size_t */
        return fail(out, WS_CLOSE_MESSAGE_TOO_BIG, "frame larger than the address space");

    size_t frame_len = h.header_len + (size_t)h.payload_len;
    if (len < frame_len)
        return need_more(out, len < h.header_len ? h.header_len : frame_len);

    uint8_t *payload = buf + h.header_len;
    size_t payload_len = (size_t)h.payload_len;
    if (h.masked) {
        uint8_t key[MASK_KEY_LEN];
        memcpy(key, payload - MASK_KEY_LEN, MASK_KEY_LEN);
        ws_mask_apply(payload, payload_len, key, 0);
    }

    out->opcode = h.opcode;
    out->fin = h.fin;
    out->payload = payload;
    out->payload_len = h.payload_len;
    out->frame_len = frame_len;
    switch (h.opcode) {
    case WS_OP_CLOSE:
        return read_close_frame(payload, payload_len, out);
    case WS_OP_PING:
    case WS_OP_PONG:
        return WS_READ_FRAME;   /* 5.5.2/5.5.3: application data, any bytes */
    default:
        return read_data_frame(r, &h, payload, out);
    }
}

size_t ws_frame_header_write(uint8_t out[WS_MAX_HEADER_LEN], uint8_t opcode, bool fin,
                             uint64_t payload_len, const uint8_t *mask)
{
    uint8_t mask_bit = mask ? MASK_BIT : 0;
    size_t n = 0;
    out[n++] = (uint8_t)((fin ? FIN_BIT : 0) | (opcode & OPCODE_BITS));
    /* 5.2: the minimal length encoding is the only valid one. */
    if (payload_len <= WS_MAX_CONTROL_PAYLOAD) {
        out[n++] = (uint8_t)(mask_bit | payload_len);
    } else if (payload_len <= 0xFFFF) {
        out[n++] = (uint8_t)(mask_bit | LEN7_16BIT);
        store_be16(out + n, (uint16_t)payload_len);
        n += 2;
    } else {
        out[n++] = (uint8_t)(mask_bit | LEN7_64BIT);
        store_be64(out + n, payload_len);
        n += 8;
    }
    if (mask) {
        memcpy(out + n, mask, MASK_KEY_LEN);
        n += MASK_KEY_LEN;
    }
    return n;
}

/* 5.3: octet i of the payload is XORed with key[i % 4]. The key is spread
 * over a 64-bit word (already rotated by key_offset) so that the bulk runs a
 * word at a time; memcpy keeps the loads alignment-safe and endian-neutral. */
void ws_mask_apply(uint8_t *data, size_t len, const uint8_t mask[4], size_t key_offset)
{
    uint8_t key_bytes[8];
    for (size_t i = 0; i < sizeof key_bytes; i++)
        key_bytes[i] = mask[(key_offset + i) & 3];
    uint64_t key;
    memcpy(&key, key_bytes, sizeof key);

    size_t i = 0;
    for (; len - i >= 32; i += 32) {
        uint64_t w[4];
        memcpy(w, data + i, sizeof w);
        w[0] ^= key;
        w[1] ^= key;
        w[2] ^= key;
        w[3] ^= key;
        memcpy(data + i, w, sizeof w);
    }
    for (; len - i >= 8; i += 8) {
        uint64_t w;
        memcpy(&w, data + i, sizeof w);
        w ^= key;
        memcpy(data + i, &w, sizeof w);
    }
    for (; i < len; i++)
        data[i] ^= key_bytes[i & 7];   /* i is a multiple of 8 on entry */
}

/* Length of s, but stops counting at limit (s need not be that long). */
static size_t bounded_strlen(const char *s, size_t limit)
{
    size_t n = 0;
    while (n < limit && s[n] != '\0')
        n++;
    return n;
}

size_t ws_close_payload_write(uint8_t out[WS_MAX_CONTROL_PAYLOAD], uint16_t code,
                              const char *reason)
{
    store_be16(out, code);
    if (!reason)
        return CLOSE_CODE_LEN;
    size_t n = bounded_strlen(reason, MAX_CLOSE_REASON + 1);
    if (n > MAX_CLOSE_REASON) {
        /* Cut before the character that straddles the limit: reason[n] is
         * where the next character would start, never a continuation byte
         * (10xxxxxx), so the reason stays valid UTF-8 (5.5.1). */
        n = MAX_CLOSE_REASON;
        while (n > 0 && ((uint8_t)reason[n] & 0xC0u) == 0x80u)
            n--;
    }
    memcpy(out + CLOSE_CODE_LEN, reason, n);
    return CLOSE_CODE_LEN + n;
}

bool ws_close_code_is_valid(uint16_t code)
{
    /* 7.4.1 and the IANA registry: 1004-1006 and 1015 are reserved or
     * must never appear on the wire; 3000-4999 are for libraries and apps. */
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
           (code >= 3000 && code <= 4999);
}
