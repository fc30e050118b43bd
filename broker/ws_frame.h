/* ws_frame: the RFC 6455 frame codec, pure (no I/O, no allocation, no globals).
 *
 * Reading: ws_reader_next() looks at the bytes a connection has received so
 * far and either asks for more, returns one complete frame (payload unmasked
 * in place, pointing into the caller's buffer: no copy), or fails with the
 * close code RFC 6455 prescribes. Every protocol rule of section 5 is checked
 * here, so that the session code above it only moves bytes:
 *   - masking: required from clients (server role), forbidden from servers
 *     (client role); violation is 1002;
 *   - 7/16/64-bit payload lengths; a length not in its minimal form, or with
 *     the most significant bit set, is 1002;
 *   - RSV1-3 set (no extension is negotiated) is 1002; unknown opcodes 1002;
 *   - fragmentation: a continuation with no message open, or a new TEXT/BINARY
 *     while one is open, is 1002; control frames may come between fragments;
 *   - control frames: payload at most 125 bytes and FIN set, else 1002;
 *   - CLOSE payload: empty, or a 2-byte valid code plus UTF-8 reason; a 1-byte
 *     payload or an invalid code is 1002, an invalid reason 1007;
 *   - TEXT messages must be valid UTF-8, checked incrementally across
 *     fragments (and within a frame as soon as possible): 1007;
 *   - a message whose total size would exceed max_message_size fails with
 *     1009 as soon as the frame header announcing it is seen, before its
 *     payload is buffered.
 * Header errors are reported as soon as the header bytes are present, even
 * when the payload has not arrived yet.
 *
 * Writing: ws_frame_header_write() produces the 2-14 byte header for a payload
 * the caller sends separately (so the payload can be a shared reference).
 */
#ifndef NEBULA_WS_FRAME_H
#define NEBULA_WS_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "utf8.h"

#define WS_MAX_HEADER_LEN 14
#define WS_MAX_CONTROL_PAYLOAD 125

enum ws_opcode {
    WS_OP_CONTINUATION = 0x0,
    WS_OP_TEXT = 0x1,
    WS_OP_BINARY = 0x2,
    WS_OP_CLOSE = 0x8,
    WS_OP_PING = 0x9,
    WS_OP_PONG = 0xA,
};

/* Close codes used by this project (RFC 6455 section 7.4.1). */
enum ws_close_code {
    WS_CLOSE_NORMAL = 1000,
    WS_CLOSE_GOING_AWAY = 1001,
    WS_CLOSE_PROTOCOL_ERROR = 1002,
    WS_CLOSE_UNSUPPORTED_DATA = 1003,
    WS_CLOSE_NO_STATUS = 1005,        /* never sent: "peer gave no code" */
    WS_CLOSE_ABNORMAL = 1006,         /* never sent: "no close frame" */
    WS_CLOSE_INVALID_PAYLOAD = 1007,
    WS_CLOSE_POLICY_VIOLATION = 1008,
    WS_CLOSE_MESSAGE_TOO_BIG = 1009,
    WS_CLOSE_INTERNAL_ERROR = 1011,
};

typedef enum ws_role {
    WS_ROLE_SERVER,   /* reads client frames: they must be masked */
    WS_ROLE_CLIENT,   /* reads server frames: they must not be masked */
} ws_role;

/* Reader state for one connection; owned by whoever owns the connection. */
typedef struct ws_reader {
    ws_role role;
    uint64_t max_message_size;   /* bytes of payload per message, summed over fragments */
    bool in_message;             /* a fragmented message is open */
    uint8_t message_opcode;      /* TEXT or BINARY of the open message */
    uint64_t message_len;        /* payload bytes of the open message so far */
    utf8_validator utf8;         /* state across the fragments of a TEXT message */
} ws_reader;

void ws_reader_init(ws_reader *r, ws_role role, uint64_t max_message_size);

typedef enum ws_read_status {
    WS_READ_NEED_MORE,   /* not enough bytes yet; reader state is unchanged */
    WS_READ_FRAME,       /* one frame decoded; consume frame_len bytes */
    WS_READ_FAIL,        /* protocol violation; send close_code and close */
} ws_read_status;

typedef struct ws_frame {
    /* WS_READ_NEED_MORE: total bytes (from buf) needed before calling again
     * can make progress; always > len. */
    size_t need;

    /* WS_READ_FRAME */
    uint8_t opcode;              /* as on the wire (CONTINUATION for later fragments) */
    bool fin;
    uint8_t *payload;            /* into buf, already unmasked */
    uint64_t payload_len;
    size_t frame_len;            /* header + payload: bytes to consume */
    uint8_t message_opcode;      /* TEXT/BINARY for data frames (also for continuations) */
    bool message_begins;         /* data frame that opens a message */
    bool message_ends;           /* data frame that completes a message */
    uint16_t peer_close_code;    /* CLOSE frames: the code, or WS_CLOSE_NO_STATUS if empty */
    const uint8_t *close_reason; /* CLOSE frames: UTF-8 reason (may be empty) */
    size_t close_reason_len;

    /* WS_READ_FAIL */
    uint16_t close_code;         /* code to send back */
    const char *error;           /* static, human-readable: why */
} ws_frame;

/* Examines buf[0..len), the unconsumed bytes of the connection. On
 * WS_READ_FRAME the payload bytes inside buf are unmasked in place and the
 * reader's message state advances; the caller consumes frame_len bytes. */
ws_read_status ws_reader_next(ws_reader *r, uint8_t *buf, size_t len, ws_frame *out);

/* Writes a frame header into out; returns its length (2..14). mask: the
 * 4-byte masking key (client role), or NULL for an unmasked frame. */
size_t ws_frame_header_write(uint8_t out[WS_MAX_HEADER_LEN], uint8_t opcode, bool fin,
                             uint64_t payload_len, const uint8_t *mask);

/* XORs data with the masking key; key_offset is the position of data[0]
 * within the frame's payload (for payloads processed in pieces). */
void ws_mask_apply(uint8_t *data, size_t len, const uint8_t mask[4], size_t key_offset);

/* Writes a CLOSE payload (code + reason, the reason cut at a UTF-8
 * character boundary to fit 125 bytes); returns its length. */
size_t ws_close_payload_write(uint8_t out[WS_MAX_CONTROL_PAYLOAD], uint16_t code,
                              const char *reason);

/* Whether a peer may send this code in a CLOSE frame (RFC 6455 7.4.1/7.4.2:
 * and the IANA registry: 1000-1003, 1007-1014, 3000-4999; never 1004-1006,
 * 1015, other 1xxx/2xxx codes or anything >= 5000). */
bool ws_close_code_is_valid(uint16_t code);

#endif
