/* fuzz_ws_frame: libFuzzer target for the frame reader (and the UTF-8
 * validator under it).
 *
 * The input is read as the byte stream of one connection, by a server-role
 * and by a client-role reader, each twice: once with all bytes available and
 * once growing the buffer exactly to each reported `need`, as a connection
 * would. Both runs must agree, and every result is checked against the
 * contract of ws_frame.h; any violation aborts.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"
#include "ws_frame.h"

#define MAX_MESSAGE 4096

static void require(bool ok)
{
    if (!ok)
        abort();
}

/* What a run ended with, to compare the two ways of feeding the reader. */
typedef struct run_summary {
    size_t frames;
    size_t consumed;
    ws_read_status last;
    uint16_t close_code;
} run_summary;

/* A plain decoder written from RFC 3629, independent of utf8.c. */
static bool reference_utf8(const uint8_t *s, size_t n)
{
    static const uint32_t min_for_len[5] = {0, 0, 0x80, 0x800, 0x10000};
    size_t i = 0;
    while (i < n) {
        uint8_t b = s[i];
        size_t len = b < 0x80 ? 1 : (b & 0xE0) == 0xC0 ? 2 : (b & 0xF0) == 0xE0 ? 3
                                  : (b & 0xF8) == 0xF0 ? 4 : 0;
        if (len == 0 || n - i < len)
            return false;
        uint32_t cp = len == 1 ? b : (uint32_t)(b & (0x7F >> len));
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
            cp = cp << 6 | (s[i + k] & 0x3Fu);
        }
        if (cp < min_for_len[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += len;
    }
    return true;
}

static void check_utf8(const uint8_t *s, size_t n)
{
    bool whole = utf8_is_valid(s, n);
    require(whole == reference_utf8(s, n));
    utf8_validator v;
    utf8_validator_init(&v);
    bool ok = true;
    for (size_t i = 0; i < n && ok; i++)
        ok = utf8_validator_feed(&v, s + i, 1);
    require(whole == (ok && utf8_validator_complete(&v)));
}

static bool same_state(const ws_reader *a, const ws_reader *b)
{
    return a->role == b->role && a->max_message_size == b->max_message_size &&
           a->in_message == b->in_message && a->message_opcode == b->message_opcode &&
           a->message_len == b->message_len && a->utf8.needed == b->utf8.needed &&
           a->utf8.lower == b->utf8.lower && a->utf8.upper == b->utf8.upper;
}

/* An accepted frame's header is canonical, so the writer must reproduce it
 * byte for byte; and the payload must be the original XOR the key. */
static void check_frame_bytes(ws_role role, const ws_frame *f, const uint8_t *orig)
{
    size_t header_len = f->frame_len - (size_t)f->payload_len;
    require(header_len >= 2 && header_len <= WS_MAX_HEADER_LEN);
    const uint8_t *key = role == WS_ROLE_SERVER ? orig + header_len - 4 : NULL;
    uint8_t header[WS_MAX_HEADER_LEN];
    require(ws_frame_header_write(header, f->opcode, f->fin, f->payload_len, key) == header_len);
    require(memcmp(header, orig, header_len) == 0);
    for (size_t i = 0; i < (size_t)f->payload_len; i++)
        require(f->payload[i] == (orig[header_len + i] ^ (key ? key[i % 4] : 0)));
}

/* The header fields, decoded here independently of ws_frame.c. */
typedef struct raw_header {
    size_t header_len;     /* 2..14 */
    bool length_known;     /* the extended length bytes are present */
    uint64_t payload_len;  /* valid when length_known */
    bool length_canonical; /* minimal form, MSB clear */
} raw_header;

static raw_header decode_raw_header(const uint8_t *p, size_t len)
{
    raw_header h = {2, false, 0, false};
    uint8_t len7 = p[1] & 0x7F;
    size_t ext = len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
    h.header_len = 2 + ext + ((p[1] & 0x80) ? 4 : 0);
    if (len < 2 + ext)
        return h;
    h.length_known = true;
    h.payload_len = ext == 0 ? len7 : 0;
    for (size_t i = 0; i < ext; i++)
        h.payload_len = h.payload_len << 8 | p[2 + i];
    h.length_canonical = ext == 0 || (ext == 2 && h.payload_len > 125) ||
                         (ext == 8 && h.payload_len > 0xFFFF && !(h.payload_len >> 63));
    return h;
}

/* NEED_MORE asks for 2 bytes, then the whole header, then the whole frame. */
static void check_need(const uint8_t *p, size_t len, size_t need)
{
    if (len < 2) {
        require(need == 2);
        return;
    }
    raw_header h = decode_raw_header(p, len);
    if (len < h.header_len)
        require(need == h.header_len);
    else
        require(h.length_known && need == h.header_len + h.payload_len);
}

/* 1009 only for a well-formed length that takes the message past the limit. */
static void check_too_big(const ws_reader *before, const uint8_t *p, size_t len)
{
    require(len >= 2);
    raw_header h = decode_raw_header(p, len);
    require(h.length_known && h.length_canonical);
    uint8_t opcode = p[0] & 0x0F;
    uint64_t so_far = opcode == WS_OP_CONTINUATION ? before->message_len : 0;
    require(opcode <= WS_OP_BINARY && h.payload_len + so_far > MAX_MESSAGE);
}

/* The text of the message being reassembled, to check 1007 as a whole. */
typedef struct message {
    uint8_t bytes[MAX_MESSAGE];
    size_t len;
    uint8_t opcode;
} message;

static void check_accepted(const ws_reader *before, const ws_reader *after, const ws_frame *f,
                           message *m)
{
    if (f->opcode & 0x8) {
        require(f->fin && f->payload_len <= WS_MAX_CONTROL_PAYLOAD);
        require(!f->message_begins && !f->message_ends);
        require(same_state(before, after));
        if (f->opcode == WS_OP_CLOSE) {
            if (f->payload_len == 0) {
                require(f->peer_close_code == WS_CLOSE_NO_STATUS && f->close_reason_len == 0);
            } else {
                require(ws_close_code_is_valid(f->peer_close_code));
                require(f->close_reason == f->payload + 2);
                require(f->close_reason_len == f->payload_len - 2);
                require(utf8_is_valid(f->close_reason, f->close_reason_len));
            }
        } else {
            require(f->opcode == WS_OP_PING || f->opcode == WS_OP_PONG);
        }
        return;
    }
    require(f->message_begins == (f->opcode != WS_OP_CONTINUATION));
    require(f->message_begins == !before->in_message);
    require(f->message_ends == f->fin);
    require(f->message_opcode == WS_OP_TEXT || f->message_opcode == WS_OP_BINARY);
    if (f->message_begins) {
        m->len = 0;
        m->opcode = f->message_opcode;
    }
    require(f->message_opcode == m->opcode);
    require(f->payload_len <= MAX_MESSAGE - m->len);   /* the 1009 rule held */
    memcpy(m->bytes + m->len, f->payload, (size_t)f->payload_len);
    m->len += (size_t)f->payload_len;
    if (f->fin) {
        require(!after->in_message && after->message_len == 0);
        if (m->opcode == WS_OP_TEXT)
            require(utf8_is_valid(m->bytes, m->len));
    } else {
        require(after->in_message && after->message_len == m->len);
        require(after->message_opcode == m->opcode);
    }
}

/* Reads the stream. With by_need, the reader first sees 2 bytes, and after
 * each NEED_MORE exactly `need` bytes (or all that is left, if fewer). */
static run_summary run(ws_role role, const uint8_t *data, size_t size, bool by_need)
{
    run_summary s = {0, 0, WS_READ_NEED_MORE, 0};
    uint8_t *buf = malloc(size ? size : 1);
    message *m = malloc(sizeof *m);
    require(buf && m);
    memcpy(buf, data, size);
    m->len = 0;
    m->opcode = 0;

    ws_reader r;
    ws_reader_init(&r, role, MAX_MESSAGE);
    size_t off = 0;
    size_t avail = by_need ? (size < 2 ? size : 2) : size;
    for (;;) {
        size_t len = avail - off;
        ws_reader before = r;
        ws_frame f;
        ws_read_status st = ws_reader_next(&r, buf + off, len, &f);
        s.last = st;
        if (st == WS_READ_NEED_MORE) {
            require(f.need > len);
            check_need(data + off, len, f.need);
            require(same_state(&before, &r));
            require(memcmp(buf + off, data + off, len) == 0);
            /* More bytes than the stream has: give it the rest, as a
             * connection would before hanging up, then stop. */
            if (!by_need || avail == size)
                break;
            avail = f.need > size - off ? size : off + f.need;
            continue;
        }
        if (st == WS_READ_FAIL) {
            require(f.close_code == WS_CLOSE_PROTOCOL_ERROR ||
                    f.close_code == WS_CLOSE_INVALID_PAYLOAD ||
                    f.close_code == WS_CLOSE_MESSAGE_TOO_BIG);
            require(f.error != NULL && f.error[0] != '\0');
            if (f.close_code == WS_CLOSE_MESSAGE_TOO_BIG)
                check_too_big(&before, data + off, len);
            s.close_code = f.close_code;
            break;
        }
        require(st == WS_READ_FRAME);
        require(f.frame_len >= 2 && f.frame_len <= len);
        require(f.payload_len <= f.frame_len - 2);
        require(f.payload >= buf + off && f.payload + f.payload_len == buf + off + f.frame_len);
        require(memcmp(buf + off + f.frame_len, data + off + f.frame_len, len - f.frame_len) == 0);
        check_frame_bytes(role, &f, data + off);
        check_accepted(&before, &r, &f, m);
        s.frames++;
        off += f.frame_len;
        if (by_need)
            avail = off + (size - off < 2 ? size - off : 2);
    }
    s.consumed = off;
    free(m);
    free(buf);
    return s;
}

static void check_role(ws_role role, const uint8_t *data, size_t size)
{
    run_summary whole = run(role, data, size, false);
    run_summary stream = run(role, data, size, true);
    require(whole.frames == stream.frames && whole.consumed == stream.consumed);
    require(whole.last == stream.last && whole.close_code == stream.close_code);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_role(WS_ROLE_SERVER, data, size);
    check_role(WS_ROLE_CLIENT, data, size);
    check_utf8(data, size);
    return 0;
}
