// Unit tests of the RFC 6455 frame codec (broker/ws_frame.c). Frames are
// built here byte by byte, independently of ws_frame_header_write, so that
// the reader and the writer are each checked against the RFC, not each other
// (the round-trip test then checks them together).
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

extern "C" {
#include "ws_frame.h"
}

namespace {

using Bytes = std::vector<uint8_t>;

constexpr uint8_t FIN = 0x80, RSV1 = 0x40, RSV2 = 0x20, RSV3 = 0x10;
constexpr uint8_t TEXT = WS_OP_TEXT, BINARY = WS_OP_BINARY, CONT = WS_OP_CONTINUATION;
constexpr uint8_t CLOSE = WS_OP_CLOSE, PING = WS_OP_PING, PONG = WS_OP_PONG;
const uint8_t kKey[4] = {0x37, 0xfa, 0x21, 0x3d};   // the key of RFC 6455 5.7
constexpr uint64_t kMax = 1 << 20;

const char kKosme[] = "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5";   // "κόσμε"

std::string string_of(const uint8_t *p, uint64_t n)
{
    return std::string(reinterpret_cast<const char *>(p), size_t(n));
}

enum class Len { Minimal, Force16, Force64 };

// Encodes a frame from first principles (RFC 6455 5.2). `first` is the whole
// first byte (FIN, RSV, opcode); a key masks the payload (5.3).
Bytes wire(uint8_t first, const std::string &payload, const uint8_t *key,
           Len form = Len::Minimal, uint64_t announced = UINT64_MAX)
{
    uint64_t n = announced == UINT64_MAX ? payload.size() : announced;
    Bytes f{first};
    uint8_t mask_bit = key ? 0x80 : 0;
    if (form == Len::Minimal && n <= 125) {
        f.push_back(uint8_t(mask_bit | n));
    } else if (form == Len::Force16 || (form == Len::Minimal && n <= 0xFFFF)) {
        f.push_back(mask_bit | 126);
        f.push_back(uint8_t(n >> 8));
        f.push_back(uint8_t(n));
    } else {
        f.push_back(mask_bit | 127);
        for (int shift = 56; shift >= 0; shift -= 8)
            f.push_back(uint8_t(n >> shift));
    }
    if (key)
        f.insert(f.end(), key, key + 4);
    for (size_t i = 0; i < payload.size(); i++)
        f.push_back(uint8_t(payload[i]) ^ (key ? key[i % 4] : 0));
    return f;
}

// A frame as a client sends it (masked) or a server sends it (unmasked).
Bytes from_client(uint8_t first, const std::string &payload, Len form = Len::Minimal)
{
    return wire(first, payload, kKey, form);
}

Bytes from_server(uint8_t first, const std::string &payload, Len form = Len::Minimal)
{
    return wire(first, payload, nullptr, form);
}

// Header length as 5.2 defines it, for the frames built by wire().
size_t header_len_of(const Bytes &f)
{
    size_t ext = (f[1] & 0x7f) == 126 ? 2 : (f[1] & 0x7f) == 127 ? 8 : 0;
    return 2 + ext + ((f[1] & 0x80) ? 4 : 0);
}

ws_reader make_reader(ws_role role, uint64_t max = kMax)
{
    ws_reader r;
    ws_reader_init(&r, role, max);
    return r;
}

void expect_same_state(const ws_reader &a, const ws_reader &b)
{
    EXPECT_EQ(a.role, b.role);
    EXPECT_EQ(a.max_message_size, b.max_message_size);
    EXPECT_EQ(a.in_message, b.in_message);
    EXPECT_EQ(a.message_opcode, b.message_opcode);
    EXPECT_EQ(a.message_len, b.message_len);
    EXPECT_EQ(a.utf8.needed, b.utf8.needed);
    EXPECT_EQ(a.utf8.lower, b.utf8.lower);
    EXPECT_EQ(a.utf8.upper, b.utf8.upper);
}

// Reads exactly one whole frame that must be accepted.
ws_frame read_ok(ws_reader &r, Bytes &buf)
{
    ws_frame f;
    ws_read_status st = ws_reader_next(&r, buf.data(), buf.size(), &f);
    EXPECT_EQ(st, WS_READ_FRAME) << (st == WS_READ_FAIL ? f.error : "need more");
    if (st == WS_READ_FRAME) {
        EXPECT_EQ(f.frame_len, buf.size());
    }
    return f;
}

// The bytes must be rejected with `code`; returns the frame for details.
ws_frame read_fail(ws_reader &r, Bytes buf, uint16_t code)
{
    ws_frame f;
    ws_read_status st = ws_reader_next(&r, buf.data(), buf.size(), &f);
    EXPECT_EQ(st, WS_READ_FAIL);
    if (st == WS_READ_FAIL) {
        EXPECT_EQ(f.close_code, code) << f.error;
        EXPECT_NE(f.error, nullptr);
        if (f.error) {
            EXPECT_GT(std::strlen(f.error), 0u);
        }
    }
    return f;
}

// The bytes must fail with `code` already when only the first `keep` bytes
// (the header, or part of it) have arrived: fail-fast, no buffering.
void expect_fail_from_prefix(ws_role role, const Bytes &frame, size_t keep, uint16_t code,
                             uint64_t max = kMax)
{
    ws_reader r = make_reader(role, max);
    read_fail(r, Bytes(frame.begin(), frame.begin() + long(keep)), code);
    ws_reader r2 = make_reader(role, max);
    read_fail(r2, frame, code);
}

// ---- ws_frame_header_write ----------------------------------------------

Bytes header(uint8_t opcode, bool fin, uint64_t len, const uint8_t *mask = nullptr)
{
    uint8_t out[WS_MAX_HEADER_LEN];
    std::memset(out, 0xCC, sizeof out);
    size_t n = ws_frame_header_write(out, opcode, fin, len, mask);
    EXPECT_GE(n, 2u);
    EXPECT_LE(n, size_t(WS_MAX_HEADER_LEN));
    return Bytes(out, out + n);
}

TEST(WsHeaderWrite, SevenBitLengths)
{
    EXPECT_EQ(header(TEXT, true, 0), (Bytes{0x81, 0x00}));
    EXPECT_EQ(header(TEXT, true, 5), (Bytes{0x81, 0x05}));
    EXPECT_EQ(header(BINARY, true, 125), (Bytes{0x82, 0x7d}));
}

TEST(WsHeaderWrite, SixteenBitLengths)
{
    EXPECT_EQ(header(BINARY, true, 126), (Bytes{0x82, 0x7e, 0x00, 0x7e}));
    EXPECT_EQ(header(BINARY, true, 256), (Bytes{0x82, 0x7e, 0x01, 0x00}));   // RFC 5.7
    EXPECT_EQ(header(BINARY, true, 65535), (Bytes{0x82, 0x7e, 0xff, 0xff}));
}

TEST(WsHeaderWrite, SixtyFourBitLengths)
{
    EXPECT_EQ(header(BINARY, true, 65536),
              (Bytes{0x82, 0x7f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00}));   // RFC 5.7
    EXPECT_EQ(header(BINARY, true, 0x0102030405060708ull),
              (Bytes{0x82, 0x7f, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08}));
    EXPECT_EQ(header(BINARY, true, 0x7fffffffffffffffull),
              (Bytes{0x82, 0x7f, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}));
}

TEST(WsHeaderWrite, FinAndOpcode)
{
    EXPECT_EQ(header(TEXT, false, 3), (Bytes{0x01, 0x03}));
    EXPECT_EQ(header(CONT, false, 3), (Bytes{0x00, 0x03}));
    EXPECT_EQ(header(CONT, true, 3), (Bytes{0x80, 0x03}));
    EXPECT_EQ(header(CLOSE, true, 2), (Bytes{0x88, 0x02}));
    EXPECT_EQ(header(PING, true, 0), (Bytes{0x89, 0x00}));
    EXPECT_EQ(header(PONG, true, 0), (Bytes{0x8a, 0x00}));
}

TEST(WsHeaderWrite, MaskBitAndKey)
{
    EXPECT_EQ(header(TEXT, true, 5, kKey), (Bytes{0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d}));
    EXPECT_EQ(header(BINARY, true, 300, kKey), (Bytes{0x82, 0xfe, 0x01, 0x2c, 0x37, 0xfa, 0x21, 0x3d}));
    EXPECT_EQ(header(BINARY, false, 65536, kKey),
              (Bytes{0x02, 0xff, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x37, 0xfa, 0x21, 0x3d}));
}

// ---- ws_reader_next: the examples of RFC 6455 section 5.7 ---------------

TEST(WsReader, InitialState)
{
    ws_reader r = make_reader(WS_ROLE_SERVER, 4096);
    EXPECT_EQ(r.role, WS_ROLE_SERVER);
    EXPECT_EQ(r.max_message_size, 4096u);
    EXPECT_FALSE(r.in_message);
    EXPECT_EQ(r.message_len, 0u);
    EXPECT_TRUE(utf8_validator_complete(&r.utf8));
}

TEST(WsReader, Rfc57UnmaskedTextFromServer)
{
    ws_reader r = make_reader(WS_ROLE_CLIENT);
    Bytes buf{0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f};
    ws_frame f = read_ok(r, buf);
    EXPECT_EQ(f.opcode, TEXT);
    EXPECT_TRUE(f.fin);
    EXPECT_EQ(f.payload, buf.data() + 2);
    EXPECT_EQ(string_of(f.payload, f.payload_len), "Hello");
    EXPECT_EQ(f.frame_len, 7u);
    EXPECT_EQ(f.message_opcode, TEXT);
    EXPECT_TRUE(f.message_begins);
    EXPECT_TRUE(f.message_ends);
    EXPECT_FALSE(r.in_message);
}

TEST(WsReader, Rfc57MaskedTextFromClientIsUnmaskedInPlace)
{
    ws_reader r = make_reader(WS_ROLE_SERVER);
    Bytes buf{0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
    ws_frame f = read_ok(r, buf);
    EXPECT_EQ(f.opcode, TEXT);
    EXPECT_EQ(f.payload, buf.data() + 6);
    EXPECT_EQ(f.payload_len, 5u);
    EXPECT_EQ(f.frame_len, 11u);
    EXPECT_EQ(string_of(buf.data() + 6, 5), "Hello");
}

TEST(WsReader, Rfc57FragmentedUnmaskedText)
{
    ws_reader r = make_reader(WS_ROLE_CLIENT);
    Bytes first{0x01, 0x03, 0x48, 0x65, 0x6c};
    ws_frame f = read_ok(r, first);
    EXPECT_EQ(f.opcode, TEXT);
    EXPECT_FALSE(f.fin);
    EXPECT_EQ(string_of(f.payload, f.payload_len), "Hel");
    EXPECT_TRUE(f.message_begins);
    EXPECT_FALSE(f.message_ends);
    EXPECT_TRUE(r.in_message);
    EXPECT_EQ(r.message_opcode, TEXT);
    EXPECT_EQ(r.message_len, 3u);

    Bytes second{0x80, 0x02, 0x6c, 0x6f};
    f = read_ok(r, second);
    EXPECT_EQ(f.opcode, CONT);
    EXPECT_TRUE(f.fin);
    EXPECT_EQ(string_of(f.payload, f.payload_len), "lo");
    EXPECT_EQ(f.message_opcode, TEXT);
    EXPECT_FALSE(f.message_begins);
    EXPECT_TRUE(f.message_ends);
    EXPECT_FALSE(r.in_message);
    EXPECT_EQ(r.message_len, 0u);
}

TEST(WsReader, Rfc57PingAndMaskedPong)
{
    ws_reader client = make_reader(WS_ROLE_CLIENT);
    Bytes ping{0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f};
    ws_frame f = read_ok(client, ping);
    EXPECT_EQ(f.opcode, PING);
    EXPECT_EQ(string_of(f.payload, f.payload_len), "Hello");
    EXPECT_FALSE(f.message_begins);
    EXPECT_FALSE(f.message_ends);

    ws_reader server = make_reader(WS_ROLE_SERVER);
    Bytes pong{0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
    f = read_ok(server, pong);
    EXPECT_EQ(f.opcode, PONG);
    EXPECT_EQ(string_of(f.payload, f.payload_len), "Hello");
}

TEST(WsReader, Rfc57BinaryWith16And64BitLengths)
{
    ws_reader r = make_reader(WS_ROLE_CLIENT);
    Bytes b256{0x82, 0x7e, 0x01, 0x00};
    b256.resize(4 + 256, 0xab);
    ws_frame f = read_ok(r, b256);
    EXPECT_EQ(f.opcode, BINARY);
    EXPECT_EQ(f.payload, b256.data() + 4);
    EXPECT_EQ(f.payload_len, 256u);

    Bytes b64k{0x82, 0x7f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00};
    b64k.resize(10 + 65536, 0xcd);
    f = read_ok(r, b64k);
    EXPECT_EQ(f.payload, b64k.data() + 10);
    EXPECT_EQ(f.payload_len, 65536u);
    EXPECT_EQ(f.frame_len, 65546u);
}

// ---- masking rule (5.1, 5.3) ---------------------------------------------

TEST(WsReader, ServerRejectsUnmaskedFramesWith1002)
{
    for (uint8_t op : {TEXT, BINARY, CLOSE, PING, PONG}) {
        Bytes f = from_server(FIN | op, "");
        expect_fail_from_prefix(WS_ROLE_SERVER, f, 2, WS_CLOSE_PROTOCOL_ERROR);
    }
}

TEST(WsReader, ClientRejectsMaskedFramesWith1002)
{
    for (uint8_t op : {TEXT, BINARY, CLOSE, PING, PONG}) {
        Bytes f = from_client(FIN | op, "");
        expect_fail_from_prefix(WS_ROLE_CLIENT, f, 2, WS_CLOSE_PROTOCOL_ERROR);
    }
}

TEST(WsReader, MaskKeyAppliesModuloFour)
{
    std::string payload;
    for (int i = 0; i < 77; i++)
        payload.push_back(char(i * 7));
    const uint8_t key[4] = {0x01, 0x80, 0xff, 0x5a};
    Bytes buf = wire(FIN | BINARY, payload, key);
    ws_reader r = make_reader(WS_ROLE_SERVER);
    ws_frame f = read_ok(r, buf);
    EXPECT_EQ(string_of(f.payload, f.payload_len), payload);
}

// ---- reserved bits and opcodes (5.2) ---------------------------------------

TEST(WsReader, RsvBitsAre1002)
{
    for (uint8_t rsv : {RSV1, RSV2, RSV3, uint8_t(RSV1 | RSV2 | RSV3)}) {
        expect_fail_from_prefix(WS_ROLE_SERVER, from_client(FIN | rsv | TEXT, "x"), 2,
                                WS_CLOSE_PROTOCOL_ERROR);
        expect_fail_from_prefix(WS_ROLE_CLIENT, from_server(FIN | rsv | PING, ""), 2,
                                WS_CLOSE_PROTOCOL_ERROR);
    }
}

TEST(WsReader, ReservedOpcodesAre1002)
{
    for (uint8_t op : {3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf}) {
        expect_fail_from_prefix(WS_ROLE_SERVER, from_client(uint8_t(FIN | op), "ab"), 2,
                                WS_CLOSE_PROTOCOL_ERROR);
        expect_fail_from_prefix(WS_ROLE_CLIENT, from_server(uint8_t(op), "ab"), 2,
                                WS_CLOSE_PROTOCOL_ERROR);
    }
}

// ---- payload length forms (5.2) ------------------------------------------

TEST(WsReader, EveryLengthFormAtItsBoundaries)
{
    struct Case {
        size_t len;
        size_t unmasked_header;
    };
    for (const Case &c : {Case{0, 2}, Case{1, 2}, Case{125, 2}, Case{126, 4}, Case{127, 4},
                   Case{65535, 4}, Case{65536, 10}, Case{70000, 10}}) {
        std::string payload(c.len, '\0');
        for (size_t i = 0; i < c.len; i++)
            payload[i] = char('a' + i % 26);

        Bytes s = from_server(FIN | TEXT, payload);
        ASSERT_EQ(s.size(), c.unmasked_header + c.len);
        ws_reader client = make_reader(WS_ROLE_CLIENT);
        ws_frame f = read_ok(client, s);
        EXPECT_EQ(f.payload, s.data() + c.unmasked_header) << c.len;
        EXPECT_EQ(f.payload_len, c.len);
        EXPECT_EQ(string_of(f.payload, f.payload_len), payload);

        Bytes m = from_client(FIN | TEXT, payload);
        ASSERT_EQ(m.size(), c.unmasked_header + 4 + c.len);
        ws_reader server = make_reader(WS_ROLE_SERVER);
        f = read_ok(server, m);
        EXPECT_EQ(f.payload, m.data() + c.unmasked_header + 4) << c.len;
        EXPECT_EQ(f.frame_len, m.size());
        EXPECT_EQ(string_of(f.payload, f.payload_len), payload);
    }
}

TEST(WsReader, NonMinimal16BitLengthIs1002BeforeThePayload)
{
    for (size_t n : {0, 1, 125}) {
        std::string payload(n, 'x');
        expect_fail_from_prefix(WS_ROLE_CLIENT, from_server(FIN | BINARY, payload, Len::Force16), 4,
                                WS_CLOSE_PROTOCOL_ERROR);
        // Server role: fails before the masking key has arrived, too.
        expect_fail_from_prefix(WS_ROLE_SERVER, from_client(FIN | BINARY, payload, Len::Force16), 4,
                                WS_CLOSE_PROTOCOL_ERROR);
    }
    // 126 is the smallest length the 16-bit form may carry.
    Bytes ok = from_server(FIN | BINARY, std::string(126, 'x'), Len::Force16);
    ws_reader r = make_reader(WS_ROLE_CLIENT);
    read_ok(r, ok);
}

TEST(WsReader, NonMinimal64BitLengthIs1002BeforeThePayload)
{
    for (size_t n : {0, 5, 125, 126, 65535}) {
        std::string payload(n, 'y');
        expect_fail_from_prefix(WS_ROLE_CLIENT, from_server(FIN | BINARY, payload, Len::Force64), 10,
                                WS_CLOSE_PROTOCOL_ERROR);
        expect_fail_from_prefix(WS_ROLE_SERVER, from_client(FIN | BINARY, payload, Len::Force64), 10,
                                WS_CLOSE_PROTOCOL_ERROR);
    }
    Bytes ok = from_server(FIN | BINARY, std::string(65536, 'y'), Len::Force64);
    ws_reader r = make_reader(WS_ROLE_CLIENT);
    read_ok(r, ok);
}

TEST(WsReader, SixtyFourBitLengthWithMsbSetIs1002)
{
    for (uint64_t n : {0x8000000000000000ull, 0x8000000000010000ull, 0xffffffffffffffffull}) {
        Bytes h = wire(FIN | BINARY, "", nullptr, Len::Force64, n);
        ASSERT_EQ(h.size(), 10u);
        // No size limit could turn this into 1009: the MSB rule alone applies.
        expect_fail_from_prefix(WS_ROLE_CLIENT, h, 10, WS_CLOSE_PROTOCOL_ERROR, UINT64_MAX);
        expect_fail_from_prefix(WS_ROLE_CLIENT, h, 10, WS_CLOSE_PROTOCOL_ERROR, 4096);
    }
    // The largest legal length is only a NEED_MORE for an unlimited reader.
    Bytes h = wire(FIN | BINARY, "", nullptr, Len::Force64, 0x7fffffffffffffffull);
    ws_reader r = make_reader(WS_ROLE_CLIENT, UINT64_MAX);
    ws_frame f;
    ASSERT_EQ(ws_reader_next(&r, h.data(), h.size(), &f), WS_READ_NEED_MORE);
    EXPECT_GT(f.need, h.size());
}

// ---- control frames (5.5) --------------------------------------------------

TEST(WsReader, ControlFramesUpTo125BytesAreAccepted)
{
    std::string p125(125, 'p');
    for (uint8_t op : {PING, PONG}) {
        Bytes buf = from_client(FIN | op, p125);
        ws_reader r = make_reader(WS_ROLE_SERVER);
        ws_frame f = read_ok(r, buf);
        EXPECT_EQ(f.payload_len, 125u);
    }
    Bytes close = from_client(FIN | CLOSE, std::string("\x03\xe8", 2) + std::string(123, 'r'));
    ws_reader r = make_reader(WS_ROLE_SERVER);
    ws_frame f = read_ok(r, close);
    EXPECT_EQ(f.peer_close_code, 1000);
    EXPECT_EQ(f.close_reason_len, 123u);
}

TEST(WsReader, ControlFrameOver125BytesIs1002)
{
    for (uint8_t op : {CLOSE, PING, PONG}) {
        expect_fail_from_prefix(WS_ROLE_SERVER, from_client(FIN | op, std::string(126, 'p')), 2,
                                WS_CLOSE_PROTOCOL_ERROR);
        expect_fail_from_prefix(WS_ROLE_CLIENT, from_server(FIN | op, std::string(200, 'p')), 2,
                                WS_CLOSE_PROTOCOL_ERROR);
        expect_fail_from_prefix(WS_ROLE_CLIENT, from_server(FIN | op, std::string(70000, 'p')), 2,
                                WS_CLOSE_PROTOCOL_ERROR);
    }
}

TEST(WsReader, FragmentedControlFrameIs1002)
{
    for (uint8_t op : {CLOSE, PING, PONG}) {
        expect_fail_from_prefix(WS_ROLE_SERVER, from_client(op, "ab"), 2, WS_CLOSE_PROTOCOL_ERROR);
        expect_fail_from_prefix(WS_ROLE_CLIENT, from_server(op, ""), 2, WS_CLOSE_PROTOCOL_ERROR);
    }
}

TEST(WsReader, PingAndPongPayloadsAreReturnedAsIs)
{
    std::string binary("\x00\xff\xc0\xaf\xed\xa0\x80 not utf-8", 17);
    for (uint8_t op : {PING, PONG}) {
        Bytes buf = from_client(FIN | op, binary);
        ws_reader r = make_reader(WS_ROLE_SERVER);
        ws_frame f = read_ok(r, buf);
        EXPECT_EQ(f.opcode, op);
        EXPECT_EQ(string_of(f.payload, f.payload_len), binary);

        Bytes empty = from_server(FIN | op, "");
        ws_reader c = make_reader(WS_ROLE_CLIENT);
        f = read_ok(c, empty);
        EXPECT_EQ(f.payload_len, 0u);
        EXPECT_EQ(f.frame_len, 2u);
    }
}

// ---- CLOSE payload (5.5.1, 7.4) ----------------------------------------------

TEST(WsReader, EmptyCloseMeansNoStatus)
{
    Bytes buf = from_client(FIN | CLOSE, "");
    ws_reader r = make_reader(WS_ROLE_SERVER);
    ws_frame f = read_ok(r, buf);
    EXPECT_EQ(f.opcode, CLOSE);
    EXPECT_EQ(f.peer_close_code, WS_CLOSE_NO_STATUS);
    EXPECT_EQ(f.close_reason_len, 0u);
}

TEST(WsReader, CloseWithCodeAndReason)
{
    Bytes buf = from_client(FIN | CLOSE, std::string("\x0f\xa0", 2) + kKosme);   // 4000
    ws_reader r = make_reader(WS_ROLE_SERVER);
    ws_frame f = read_ok(r, buf);
    EXPECT_EQ(f.peer_close_code, 4000);
    EXPECT_EQ(f.close_reason, f.payload + 2);
    EXPECT_EQ(string_of(f.close_reason, f.close_reason_len), kKosme);

    Bytes code_only = from_server(FIN | CLOSE, std::string("\x03\xe9", 2));
    ws_reader c = make_reader(WS_ROLE_CLIENT);
    f = read_ok(c, code_only);
    EXPECT_EQ(f.peer_close_code, 1001);
    EXPECT_EQ(f.close_reason_len, 0u);
}

TEST(WsReader, OneByteCloseIs1002)
{
    ws_reader r = make_reader(WS_ROLE_SERVER);
    read_fail(r, from_client(FIN | CLOSE, "\x03"), WS_CLOSE_PROTOCOL_ERROR);
    // Even when the byte after the frame would complete a valid code (1000).
    ws_reader c = make_reader(WS_ROLE_CLIENT);
    Bytes buf = from_server(FIN | CLOSE, "\x03");
    buf.push_back(0xe8);
    read_fail(c, buf, WS_CLOSE_PROTOCOL_ERROR);
}

TEST(WsReader, InvalidCloseCodesAre1002)
{
    for (unsigned code : {0u, 999u, 1004u, 1005u, 1006u, 1015u, 1016u, 1100u, 2000u, 2999u, 5000u,
                          65535u}) {
        std::string p{char(code >> 8), char(code & 0xff)};
        ws_reader r = make_reader(WS_ROLE_SERVER);
        read_fail(r, from_client(FIN | CLOSE, p + "why"), WS_CLOSE_PROTOCOL_ERROR);
    }
    for (unsigned code : {1000u, 1001u, 1002u, 1003u, 1007u, 1008u, 1009u, 1010u, 1011u, 1012u,
                          1013u, 1014u, 3000u, 3999u, 4000u, 4999u}) {
        std::string p{char(code >> 8), char(code & 0xff)};
        Bytes buf = from_client(FIN | CLOSE, p);
        ws_reader r = make_reader(WS_ROLE_SERVER);
        ws_frame f = read_ok(r, buf);
        EXPECT_EQ(f.peer_close_code, code);
    }
}

TEST(WsReader, CloseReasonMustBeUtf8With1007)
{
    for (std::string bad : {"\xed\xa0\x80", "\xf4\x90\x80\x80", "\xc0\xaf", "ok\xce"}) {
        ws_reader r = make_reader(WS_ROLE_SERVER);
        read_fail(r, from_client(FIN | CLOSE, std::string("\x03\xe8", 2) + bad),
                  WS_CLOSE_INVALID_PAYLOAD);
    }
}

TEST(WsReader, CloseIsAllowedBetweenFragments)
{
    ws_reader r = make_reader(WS_ROLE_SERVER);
    Bytes a = from_client(TEXT, "ab");
    read_ok(r, a);
    Bytes c = from_client(FIN | CLOSE, std::string("\x03\xe8", 2));
    ws_frame f = read_ok(r, c);
    EXPECT_EQ(f.peer_close_code, 1000);
    EXPECT_TRUE(r.in_message);
    EXPECT_EQ(r.message_len, 2u);
}

// ---- fragmentation (5.4) -----------------------------------------------------

TEST(WsReader, ContinuationWithoutMessageIs1002)
{
    expect_fail_from_prefix(WS_ROLE_SERVER, from_client(FIN | CONT, "x"), 2, WS_CLOSE_PROTOCOL_ERROR);
    expect_fail_from_prefix(WS_ROLE_SERVER, from_client(CONT, "x"), 2, WS_CLOSE_PROTOCOL_ERROR);
    expect_fail_from_prefix(WS_ROLE_CLIENT, from_server(FIN | CONT, ""), 2, WS_CLOSE_PROTOCOL_ERROR);

    // ... also after a message has been completed.
    ws_reader r = make_reader(WS_ROLE_SERVER);
    Bytes a = from_client(TEXT, "a"), b = from_client(FIN | CONT, "b");
    read_ok(r, a);
    read_ok(r, b);
    read_fail(r, from_client(FIN | CONT, "c"), WS_CLOSE_PROTOCOL_ERROR);
}

TEST(WsReader, NewDataMessageInsideAMessageIs1002)
{
    for (uint8_t first : {TEXT, BINARY}) {
        for (uint8_t second : {TEXT, BINARY}) {
            for (uint8_t fin : {uint8_t(0), FIN}) {
                ws_reader r = make_reader(WS_ROLE_SERVER);
                Bytes a = from_client(first, "a");
                read_ok(r, a);
                Bytes b = from_client(uint8_t(fin | second), "b");
                read_fail(r, Bytes(b.begin(), b.begin() + 2), WS_CLOSE_PROTOCOL_ERROR);
                read_fail(r, b, WS_CLOSE_PROTOCOL_ERROR);
            }
        }
    }
}

TEST(WsReader, FragmentsWithInterleavedControlFrames)
{
    ws_reader r = make_reader(WS_ROLE_SERVER);
    struct Step {
        Bytes frame;
        uint8_t opcode;
        std::string payload;
        uint8_t message_opcode;   // 0 for control frames
        bool begins, ends;
        uint8_t open_after;       // opcode of the message still open, or 0
        uint64_t message_len_after;
    };
    const std::vector<Step> steps = {
        {from_client(BINARY, "one"), BINARY, "one", BINARY, true, false, BINARY, 3},
        {from_client(FIN | PING, "p1"), PING, "p1", 0, false, false, BINARY, 3},
        {from_client(CONT, ""), CONT, "", BINARY, false, false, BINARY, 3},
        {from_client(CONT, "two"), CONT, "two", BINARY, false, false, BINARY, 6},
        {from_client(FIN | PONG, "p2"), PONG, "p2", 0, false, false, BINARY, 6},
        {from_client(FIN | CONT, "three"), CONT, "three", BINARY, false, true, 0, 0},
        {from_client(FIN | TEXT, "single"), TEXT, "single", TEXT, true, true, 0, 0},
        {from_client(TEXT, kKosme), TEXT, kKosme, TEXT, true, false, TEXT, 11},
        {from_client(FIN | PING, ""), PING, "", 0, false, false, TEXT, 11},
        {from_client(FIN | CONT, "!"), CONT, "!", TEXT, false, true, 0, 0},
    };
    for (size_t i = 0; i < steps.size(); i++) {
        SCOPED_TRACE("step " + std::to_string(i));
        const Step &s = steps[i];
        Bytes buf = s.frame;
        ws_frame f = read_ok(r, buf);
        EXPECT_EQ(f.opcode, s.opcode);
        EXPECT_EQ(string_of(f.payload, f.payload_len), s.payload);
        if (s.message_opcode) {
            EXPECT_EQ(f.message_opcode, s.message_opcode);
        }
        EXPECT_EQ(f.message_begins, s.begins);
        EXPECT_EQ(f.message_ends, s.ends);
        EXPECT_EQ(r.in_message, s.open_after != 0);
        if (s.open_after) {
            EXPECT_EQ(r.message_opcode, s.open_after);
        }
        EXPECT_EQ(r.message_len, s.message_len_after);
    }
}

TEST(WsReader, SeveralFramesInOneBuffer)
{
    Bytes buf;
    for (const Bytes &f : {from_client(TEXT, "He"), from_client(FIN | PING, "x"),
                           from_client(FIN | CONT, "llo"), from_client(FIN | BINARY, "\x01\x02")})
        buf.insert(buf.end(), f.begin(), f.end());
    Bytes partial = from_client(FIN | TEXT, "tail");
    buf.insert(buf.end(), partial.begin(), partial.end() - 1);

    ws_reader r = make_reader(WS_ROLE_SERVER);
    std::vector<std::string> got;
    size_t off = 0;
    ws_frame f;
    ws_read_status st;
    while ((st = ws_reader_next(&r, buf.data() + off, buf.size() - off, &f)) == WS_READ_FRAME) {
        got.push_back(string_of(f.payload, f.payload_len));
        off += f.frame_len;
    }
    EXPECT_EQ(st, WS_READ_NEED_MORE);
    EXPECT_EQ(f.need, partial.size());
    EXPECT_EQ(got, (std::vector<std::string>{"He", "x", "llo", "\x01\x02"}));
    EXPECT_EQ(buf.size() - off, partial.size() - 1);
}

// ---- message size limit (1009) -------------------------------------------------

TEST(WsReader, MessageAtTheLimitIsAccepted)
{
    ws_reader r = make_reader(WS_ROLE_SERVER, 100);
    Bytes a = from_client(FIN | BINARY, std::string(100, 'm'));
    read_ok(r, a);
    Bytes b = from_client(TEXT, std::string(60, 'm')), c = from_client(FIN | CONT, std::string(40, 'm'));
    read_ok(r, b);
    read_ok(r, c);
    // The count restarts with every message.
    Bytes d = from_client(FIN | TEXT, std::string(100, 'm'));
    read_ok(r, d);
}

TEST(WsReader, SingleFrameOverTheLimitIs1009FromItsHeader)
{
    expect_fail_from_prefix(WS_ROLE_SERVER, from_client(FIN | BINARY, std::string(101, 'm')), 4,
                            WS_CLOSE_MESSAGE_TOO_BIG, 100);
    expect_fail_from_prefix(WS_ROLE_SERVER, from_client(FIN | TEXT, std::string(11, 'm')), 2,
                            WS_CLOSE_MESSAGE_TOO_BIG, 10);
    // A 64-bit length is judged from its 10 header bytes; the payload never comes.
    Bytes huge = wire(FIN | BINARY, "", nullptr, Len::Minimal, 1ull << 40);
    ASSERT_EQ(huge.size(), 10u);
    expect_fail_from_prefix(WS_ROLE_CLIENT, huge, 10, WS_CLOSE_MESSAGE_TOO_BIG, 4096);
}

TEST(WsReader, FragmentsAddingUpOverTheLimitAre1009)
{
    ws_reader r = make_reader(WS_ROLE_SERVER, 100);
    Bytes a = from_client(BINARY, std::string(60, 'm'));
    read_ok(r, a);
    Bytes ping = from_client(FIN | PING, std::string(125, 'p'));   // control frames don't count
    read_ok(r, ping);
    Bytes b = from_client(CONT, std::string(40, 'm'));
    read_ok(r, b);
    EXPECT_EQ(r.message_len, 100u);
    Bytes c = from_client(FIN | CONT, "m");
    read_fail(r, Bytes(c.begin(), c.begin() + 2), WS_CLOSE_MESSAGE_TOO_BIG);

    ws_reader r2 = make_reader(WS_ROLE_SERVER, 100);
    Bytes d = from_client(TEXT, std::string(60, 'm'));
    read_ok(r2, d);
    read_fail(r2, from_client(FIN | CONT, std::string(41, 'm')), WS_CLOSE_MESSAGE_TOO_BIG);
    // An empty final fragment at the limit is fine.
    ws_reader r3 = make_reader(WS_ROLE_SERVER, 60);
    Bytes e = from_client(TEXT, std::string(60, 'm')), g = from_client(FIN | CONT, "");
    read_ok(r3, e);
    read_ok(r3, g);
}

// ---- UTF-8 in TEXT messages (8.1, 1007) ------------------------------------------

const std::vector<std::string> kBadUtf8 = {
    "\xed\xa0\x80",                                  // surrogate
    "\xed\xbf\xbf",                                  // surrogate
    "\xf4\x90\x80\x80",                              // > U+10FFFF
    "\xc0\xaf",                                      // overlong
    "\xe0\x80\xaf",                                  // overlong
    "\xf0\x80\x80\xaf",                              // overlong
    "\x80",                                          // lone continuation
    "\xfe",
    std::string(kKosme) + "\xed\xa0\x80" + "edited",  // Autobahn 6.3.1
};

TEST(WsReader, InvalidUtf8InATextFrameIs1007)
{
    for (const auto &bad : kBadUtf8) {
        SCOPED_TRACE(testing::PrintToString(bad));
        ws_reader r = make_reader(WS_ROLE_SERVER);
        read_fail(r, from_client(FIN | TEXT, bad), WS_CLOSE_INVALID_PAYLOAD);
        ws_reader c = make_reader(WS_ROLE_CLIENT);
        read_fail(c, from_server(FIN | TEXT, "ok " + bad), WS_CLOSE_INVALID_PAYLOAD);
        // As a non-final fragment, and inside a later continuation.
        ws_reader r2 = make_reader(WS_ROLE_SERVER);
        read_fail(r2, from_client(TEXT, bad), WS_CLOSE_INVALID_PAYLOAD);
        ws_reader r3 = make_reader(WS_ROLE_SERVER);
        Bytes first = from_client(TEXT, "fine");
        read_ok(r3, first);
        read_fail(r3, from_client(CONT, bad), WS_CLOSE_INVALID_PAYLOAD);
    }
}

TEST(WsReader, BinaryMessagesAreNotUtf8Checked)
{
    for (const auto &bad : kBadUtf8) {
        ws_reader r = make_reader(WS_ROLE_SERVER);
        Bytes a = from_client(BINARY, bad), b = from_client(FIN | CONT, "\xce");
        read_ok(r, a);
        read_ok(r, b);
    }
}

TEST(WsReader, ValidUtf8TextIsAccepted)
{
    ws_reader r = make_reader(WS_ROLE_SERVER);
    Bytes a = from_client(FIN | TEXT, kKosme);
    ws_frame f = read_ok(r, a);
    EXPECT_EQ(string_of(f.payload, f.payload_len), kKosme);
    Bytes b = from_client(FIN | TEXT, "");
    read_ok(r, b);
}

// Sends `text` as fragments cut at the given offsets.
std::vector<Bytes> fragments(const std::string &text, std::vector<size_t> cuts)
{
    std::vector<Bytes> out;
    cuts.insert(cuts.begin(), 0);
    cuts.push_back(text.size());
    for (size_t i = 0; i + 1 < cuts.size(); i++) {
        uint8_t op = i == 0 ? TEXT : CONT;
        uint8_t fin = i + 2 == cuts.size() ? FIN : 0;
        out.push_back(from_client(uint8_t(fin | op), text.substr(cuts[i], cuts[i + 1] - cuts[i])));
    }
    return out;
}

TEST(WsReader, Utf8SplitAcrossFragmentsAtEveryPoint)
{
    for (const std::string &text : {std::string("a\xf0\x9f\x98\x80z"), std::string(kKosme),
                                   std::string("\xf4\x8f\xbf\xbf")}) {
        for (size_t i = 0; i <= text.size(); i++) {
            for (size_t j = i; j <= text.size(); j++) {
                SCOPED_TRACE(testing::PrintToString(text) + " cut at " + std::to_string(i) + "," +
                             std::to_string(j));
                ws_reader r = make_reader(WS_ROLE_SERVER);
                std::string got;
                for (Bytes &f : fragments(text, {i, j})) {
                    ws_frame fr = read_ok(r, f);
                    got += string_of(fr.payload, fr.payload_len);
                }
                EXPECT_EQ(got, text);
                EXPECT_FALSE(r.in_message);
            }
        }
    }
}

TEST(WsReader, InvalidUtf8SplitAcrossFragmentsFailsInTheFragmentWithTheBadByte)
{
    struct Case {
        std::string text;
        size_t offending;   // first byte no valid text could contain
    };
    for (const Case &c : {Case{"\xf4\x90\x80\x80", 1}, Case{"\xed\xa0\x80", 1},
                          Case{"\xf0\x80\x80\xaf", 1}, Case{"ab\xc0\xaf", 2}}) {
        for (size_t i = 0; i <= c.text.size(); i++) {
            SCOPED_TRACE(testing::PrintToString(c.text) + " cut at " + std::to_string(i));
            std::vector<Bytes> fr = fragments(c.text, {i});
            size_t bad_fragment = c.offending < i ? 0 : 1;
            ws_reader r = make_reader(WS_ROLE_SERVER);
            for (size_t k = 0; k < bad_fragment; k++)
                read_ok(r, fr[k]);
            read_fail(r, fr[bad_fragment], WS_CLOSE_INVALID_PAYLOAD);
        }
    }
}

TEST(WsReader, TextEndingInsideACharacterIs1007)
{
    // A single frame.
    ws_reader r = make_reader(WS_ROLE_SERVER);
    read_fail(r, from_client(FIN | TEXT, "abc\xf0\x9f\x98"), WS_CLOSE_INVALID_PAYLOAD);
    // The final fragment, even though each prefix was fine.
    for (size_t cut = 1; cut < 4; cut++) {
        ws_reader r2 = make_reader(WS_ROLE_SERVER);
        std::string emoji = "\xf0\x9f\x98\x80";
        Bytes a = from_client(TEXT, "x"), b = from_client(CONT, emoji.substr(0, cut));
        read_ok(r2, a);
        read_ok(r2, b);   // a non-final fragment may end inside a character
        read_fail(r2, from_client(FIN | CONT, ""), WS_CLOSE_INVALID_PAYLOAD);
    }
}

// ---- NEED_MORE (all prefixes) ---------------------------------------------------

// The `need` a correct reader reports for the first `have` bytes of `frame`.
size_t expected_need(const Bytes &frame, size_t have)
{
    if (have < 2)
        return 2;
    size_t h = header_len_of(frame);
    return have < h ? h : frame.size();
}

void check_every_prefix(ws_reader r, const Bytes &frame, size_t stride_after = 1)
{
    ws_reader before = r;
    size_t h = header_len_of(frame);
    for (size_t have = 0; have < frame.size(); have += (have < h + 8 ? 1 : stride_after)) {
        SCOPED_TRACE("prefix of " + std::to_string(have) + " bytes");
        Bytes prefix(frame.begin(), frame.begin() + long(have));   // exact size: ASan sees overreads
        ws_frame f;
        ASSERT_EQ(ws_reader_next(&r, prefix.data(), prefix.size(), &f), WS_READ_NEED_MORE);
        EXPECT_EQ(f.need, expected_need(frame, have));
        EXPECT_GT(f.need, have);
        expect_same_state(r, before);
        EXPECT_TRUE(std::equal(prefix.begin(), prefix.end(), frame.begin())) << "buffer modified";
    }
    Bytes last(frame.begin(), frame.end() - 1);
    ws_frame f;
    ASSERT_EQ(ws_reader_next(&r, last.data(), last.size(), &f), WS_READ_NEED_MORE);
    EXPECT_EQ(f.need, frame.size());
    expect_same_state(r, before);

    Bytes whole = frame;
    ASSERT_EQ(ws_reader_next(&r, whole.data(), whole.size(), &f), WS_READ_FRAME);
    EXPECT_EQ(f.frame_len, frame.size());
}

TEST(WsReader, NeedMoreAtEveryPrefixLeavesStateAndBufferAlone)
{
    check_every_prefix(make_reader(WS_ROLE_SERVER), from_client(FIN | TEXT, "Hello"));
    check_every_prefix(make_reader(WS_ROLE_CLIENT), from_server(FIN | TEXT, "Hello"));
    check_every_prefix(make_reader(WS_ROLE_SERVER), from_client(FIN | TEXT, ""));
    check_every_prefix(make_reader(WS_ROLE_SERVER), from_client(BINARY, std::string(126, 'b')));
    check_every_prefix(make_reader(WS_ROLE_CLIENT), from_server(BINARY, std::string(300, 'b')));
    check_every_prefix(make_reader(WS_ROLE_SERVER), from_client(FIN | CLOSE, "\x03\xe8" "bye"));
    check_every_prefix(make_reader(WS_ROLE_SERVER), from_client(FIN | PING, std::string(125, 'p')));
    check_every_prefix(make_reader(WS_ROLE_SERVER), from_client(FIN | BINARY, std::string(65536, 'z')),
                       4099);
    check_every_prefix(make_reader(WS_ROLE_CLIENT), from_server(FIN | BINARY, std::string(65536, 'z')),
                       4099);
}

TEST(WsReader, NeedMoreInsideATextMessageKeepsItsUtf8State)
{
    ws_reader r = make_reader(WS_ROLE_SERVER);
    Bytes a = from_client(TEXT, "\xf0\x9f");   // half a character
    read_ok(r, a);
    ASSERT_TRUE(r.in_message);
    ASSERT_FALSE(utf8_validator_complete(&r.utf8));
    check_every_prefix(r, from_client(FIN | CONT, "\x98\x80 done"));
    check_every_prefix(r, from_client(FIN | PING, "between"));
}

// ---- round trip: ws_frame_header_write -> ws_reader_next -------------------------

TEST(WsRoundTrip, HeaderWriteThenRead)
{
    const uint8_t key[4] = {0xde, 0xad, 0xbe, 0xef};
    for (size_t len : {0, 1, 7, 125, 126, 1000, 65535, 65536, 100000}) {
        for (bool masked : {false, true}) {
            for (uint8_t op : {TEXT, BINARY, PING, PONG}) {
                if ((op == PING || op == PONG) && len > 125)
                    continue;
                SCOPED_TRACE(std::to_string(len) + (masked ? " masked" : " unmasked") + " op " +
                             std::to_string(op));
                std::string payload(len, '\0');
                for (size_t i = 0; i < len; i++)
                    payload[i] = char(0x20 + i % 90);
                uint8_t hdr[WS_MAX_HEADER_LEN];
                size_t n = ws_frame_header_write(hdr, op, true, len, masked ? key : nullptr);
                Bytes buf(hdr, hdr + n);
                buf.insert(buf.end(), payload.begin(), payload.end());
                if (masked)
                    ws_mask_apply(buf.data() + n, len, key, 0);
                EXPECT_EQ(buf, masked ? wire(FIN | op, payload, key) : from_server(FIN | op, payload));

                ws_reader r = make_reader(masked ? WS_ROLE_SERVER : WS_ROLE_CLIENT);
                ws_frame f = read_ok(r, buf);
                EXPECT_EQ(f.opcode, op);
                EXPECT_TRUE(f.fin);
                EXPECT_EQ(f.payload, buf.data() + n);
                EXPECT_EQ(string_of(f.payload, f.payload_len), payload);
            }
        }
    }
}

TEST(WsRoundTrip, FragmentedMessageFromWrittenHeaders)
{
    ws_reader r = make_reader(WS_ROLE_CLIENT);
    const char *parts[] = {"\xce\xba\xe1", "\xbd\xb9\xcf\x83", "\xce\xbc\xce\xb5"};
    for (int i = 0; i < 3; i++) {
        uint8_t hdr[WS_MAX_HEADER_LEN];
        size_t n = ws_frame_header_write(hdr, i == 0 ? TEXT : CONT, i == 2, std::strlen(parts[i]),
                                         nullptr);
        Bytes buf(hdr, hdr + n);
        buf.insert(buf.end(), parts[i], parts[i] + std::strlen(parts[i]));
        ws_frame f = read_ok(r, buf);
        EXPECT_EQ(f.message_opcode, TEXT);
        EXPECT_EQ(f.message_begins, i == 0);
        EXPECT_EQ(f.message_ends, i == 2);
    }
}

// ---- ws_mask_apply ----------------------------------------------------------------

TEST(WsMask, MatchesTheDefinitionAtEveryLengthOffsetAndAlignment)
{
    const uint8_t key[4] = {0x12, 0x34, 0x56, 0x78};
    for (size_t align = 0; align < 8; align++) {
        for (size_t len = 0; len <= 70; len++) {
            for (size_t off = 0; off < 9; off++) {
                Bytes storage(align + len);
                for (size_t i = 0; i < storage.size(); i++)
                    storage[i] = uint8_t(i * 31 + 7);
                Bytes expect = storage;
                for (size_t i = 0; i < len; i++)
                    expect[align + i] ^= key[(off + i) % 4];
                ws_mask_apply(storage.data() + align, len, key, off);
                ASSERT_EQ(storage, expect) << "align " << align << " len " << len << " off " << off;
            }
        }
    }
}

TEST(WsMask, PiecewiseEqualsWholeAndTwiceIsIdentity)
{
    const uint8_t key[4] = {0xa1, 0xb2, 0xc3, 0xd4};
    Bytes orig(1000);
    for (size_t i = 0; i < orig.size(); i++)
        orig[i] = uint8_t(i ^ (i >> 3));
    Bytes whole = orig;
    ws_mask_apply(whole.data(), whole.size(), key, 0);
    for (size_t cut1 = 0; cut1 < 40; cut1 += 3) {
        for (size_t cut2 : {cut1, cut1 + 1, cut1 + 17, size_t(999)}) {
            Bytes pieces = orig;
            ws_mask_apply(pieces.data(), cut1, key, 0);
            ws_mask_apply(pieces.data() + cut1, cut2 - cut1, key, cut1);
            ws_mask_apply(pieces.data() + cut2, pieces.size() - cut2, key, cut2);
            ASSERT_EQ(pieces, whole) << cut1 << " " << cut2;
        }
    }
    ws_mask_apply(whole.data(), whole.size(), key, 0);
    EXPECT_EQ(whole, orig);
}

// ---- ws_close_payload_write -----------------------------------------------------

std::string close_payload(uint16_t code, const char *reason)
{
    uint8_t out[WS_MAX_CONTROL_PAYLOAD + 8];
    std::memset(out, 0xEE, sizeof out);
    size_t n = ws_close_payload_write(out, code, reason);
    EXPECT_LE(n, size_t(WS_MAX_CONTROL_PAYLOAD));
    EXPECT_EQ(out[WS_MAX_CONTROL_PAYLOAD], 0xEE) << "wrote past 125 bytes";
    return std::string(reinterpret_cast<char *>(out), n);
}

TEST(WsClosePayload, CodeIsBigEndianAndReasonFollows)
{
    EXPECT_EQ(close_payload(1000, nullptr), std::string("\x03\xe8", 2));
    EXPECT_EQ(close_payload(1001, ""), std::string("\x03\xe9", 2));
    EXPECT_EQ(close_payload(4999, "bye"), std::string("\x13\x87" "bye", 5));
    EXPECT_EQ(close_payload(1009, kKosme), std::string("\x03\xf1", 2) + kKosme);
}

TEST(WsClosePayload, ReasonIsCutTo123Bytes)
{
    std::string r123(123, 'r');
    EXPECT_EQ(close_payload(1000, r123.c_str()), std::string("\x03\xe8", 2) + r123);
    std::string r124(124, 'r');
    EXPECT_EQ(close_payload(1000, r124.c_str()), std::string("\x03\xe8", 2) + r123);
    std::string r1000(1000, 'r');
    EXPECT_EQ(close_payload(1000, r1000.c_str()).size(), 125u);
}

TEST(WsClosePayload, ReasonIsCutAtACharacterBoundary)
{
    struct Case {
        size_t ascii;
        std::string ch;
        size_t kept;   // reason bytes written
    };
    for (const Case &c : {Case{121, "\xc3\xa9", 123}, Case{122, "\xc3\xa9", 122},
                          Case{120, "\xe2\x82\xac", 123}, Case{121, "\xe2\x82\xac", 121},
                          Case{122, "\xe2\x82\xac", 122}, Case{119, "\xf0\x9f\x98\x80", 123},
                          Case{120, "\xf0\x9f\x98\x80", 120}, Case{121, "\xf0\x9f\x98\x80", 121},
                          Case{122, "\xf0\x9f\x98\x80", 122}}) {
        std::string reason = std::string(c.ascii, 'a') + c.ch + "tail";
        std::string p = close_payload(1000, reason.c_str());
        EXPECT_EQ(p.size(), 2 + c.kept) << c.ascii << " + " << c.ch.size() << "-byte char";
        EXPECT_EQ(p.substr(2), reason.substr(0, c.kept));
        EXPECT_TRUE(utf8_is_valid(reinterpret_cast<const uint8_t *>(p.data()) + 2, p.size() - 2));

        // What we write, our reader accepts.
        Bytes buf = from_client(FIN | CLOSE, p);
        ws_reader r = make_reader(WS_ROLE_SERVER);
        ws_frame f = read_ok(r, buf);
        EXPECT_EQ(f.peer_close_code, 1000);
        EXPECT_EQ(f.close_reason_len, c.kept);
    }
    std::string kosmes;
    for (int i = 0; i < 20; i++)
        kosmes += kKosme;   // 220 bytes of 2- and 3-byte characters
    std::string p = close_payload(1000, kosmes.c_str());
    EXPECT_LE(p.size(), 125u);
    EXPECT_GE(p.size(), 122u);
    EXPECT_TRUE(utf8_is_valid(reinterpret_cast<const uint8_t *>(p.data()) + 2, p.size() - 2));
}

// ---- ws_close_code_is_valid -------------------------------------------------------

TEST(WsCloseCode, ValidRangesExactly)
{
    for (uint32_t code = 0; code <= 0xffff; code++) {
        bool expect = (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
                      (code >= 3000 && code <= 4999);
        ASSERT_EQ(ws_close_code_is_valid(uint16_t(code)), expect) << code;
    }
    EXPECT_FALSE(ws_close_code_is_valid(WS_CLOSE_NO_STATUS));
    EXPECT_FALSE(ws_close_code_is_valid(WS_CLOSE_ABNORMAL));
    EXPECT_FALSE(ws_close_code_is_valid(1004));
    EXPECT_FALSE(ws_close_code_is_valid(1015));
    EXPECT_TRUE(ws_close_code_is_valid(WS_CLOSE_MESSAGE_TOO_BIG));
}

}  // namespace
