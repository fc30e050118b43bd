// Unit tests of the RFC 6455 opening handshake (broker/ws_handshake.h): what
// the session relies on when it accepts or refuses an upgrade request.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

extern "C" {
#include "ws_handshake.h"
}

namespace {

constexpr const char *kPath = "/v1/sync";
constexpr const char *kSubprotocol = "nebula-sync.v1";
constexpr const char *kKey = "dGhlIHNhbXBsZSBub25jZQ==";
constexpr const char *kAcceptForKey = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

// A request built from a request line and an ordered list of headers, so
// each test can break exactly one thing.
struct Request {
    std::string request_line = std::string("GET ") + kPath + " HTTP/1.1";
    std::vector<std::pair<std::string, std::string>> headers = {
        {"Host", "sync.example.com"},
        {"Upgrade", "websocket"},
        {"Connection", "Upgrade"},
        {"Sec-WebSocket-Key", kKey},
        {"Sec-WebSocket-Version", "13"},
    };

    Request &set(const std::string &name, const std::string &value)
    {
        for (auto &h : headers) {
            if (h.first == name) {
                h.second = value;
                return *this;
            }
        }
        return add(name, value);
    }
    Request &add(const std::string &name, const std::string &value)
    {
        headers.emplace_back(name, value);
        return *this;
    }
    Request &remove(const std::string &name)
    {
        for (auto it = headers.begin(); it != headers.end(); ++it) {
            if (it->first == name) {
                headers.erase(it);
                break;
            }
        }
        return *this;
    }
    std::string str() const
    {
        std::string s = request_line + "\r\n";
        for (const auto &h : headers)
            s += h.first + ": " + h.second + "\r\n";
        return s + "\r\n";
    }
};

struct Policy {
    std::string path = kPath;
    const char *subprotocol = kSubprotocol;
    std::vector<const char *> origins;

    ws_handshake_policy get() const
    {
        ws_handshake_policy p{};
        p.path = path.c_str();
        p.subprotocol = subprotocol;
        p.allowed_origins = origins.empty() ? nullptr : origins.data();
        p.allowed_origin_count = origins.size();
        return p;
    }
};

// ws_handshake_result carries a 4 KiB token buffer: keep it off the stack of
// loops that evaluate thousands of prefixes.
std::unique_ptr<ws_handshake_result> evaluate(const std::string &data, const Policy &policy = {})
{
    auto out = std::make_unique<ws_handshake_result>();
    std::memset(out.get(), 0x5a, sizeof *out); // garbage: evaluate must fill every field
    ws_handshake_policy p = policy.get();
    ws_handshake_evaluate(data.data(), data.size(), &p, out.get());
    return out;
}

std::string response(const ws_handshake_result &r, const char *subprotocol = kSubprotocol)
{
    char buf[1024];
    size_t n = ws_handshake_response_write(&r, subprotocol, buf, sizeof buf);
    return std::string(buf, n);
}

// Bytes of a literal that may hold NULs.
template <size_t N> std::string bytes(const char (&literal)[N])
{
    return std::string(literal, N - 1);
}

std::string reason_of(const ws_handshake_result &r)
{
    return r.reason ? r.reason : "";
}

// A header block of exactly total bytes, valid except for its size.
std::string request_of_size(size_t total)
{
    std::string head = Request().str();
    const std::string pad_prefix = "X-Padding: ";
    size_t overhead = head.size() + pad_prefix.size() + 2; // + CRLF of the pad line
    EXPECT_GT(total, overhead);
    std::string pad_line = pad_prefix + std::string(total - overhead, 'p') + "\r\n";
    return head.substr(0, head.size() - 2) + pad_line + "\r\n";
}

void expect_rejected(const std::string &data, int status, const std::string &reason_part,
                     const Policy &policy = {})
{
    auto r = evaluate(data, policy);
    EXPECT_EQ(r->status, status) << data;
    EXPECT_NE(reason_of(*r).find(reason_part), std::string::npos)
        << "reason: " << reason_of(*r) << "\nrequest:\n"
        << data;
    EXPECT_STREQ(r->accept_key, "");
    EXPECT_FALSE(r->subprotocol_selected);
}

void expect_accepted(const std::string &data, const Policy &policy = {})
{
    auto r = evaluate(data, policy);
    EXPECT_EQ(r->status, 101) << reason_of(*r) << "\nrequest:\n" << data;
    EXPECT_EQ(r->reason, nullptr);
    EXPECT_EQ(r->request_len, data.size());
}

// ---- accept key and the RFC example -----------------------------------

TEST(WsHandshakeAcceptKey, MatchesRfc6455Example)
{
    char out[WS_ACCEPT_KEY_LEN + 1];
    ASSERT_TRUE(ws_handshake_accept_key(kKey, std::strlen(kKey), out));
    EXPECT_STREQ(out, kAcceptForKey);
}

TEST(WsHandshakeAcceptKey, UsesOnlyKeyLenBytes)
{
    const std::string padded = std::string(kKey) + "trailing junk";
    char out[WS_ACCEPT_KEY_LEN + 1];
    ASSERT_TRUE(ws_handshake_accept_key(padded.data(), std::strlen(kKey), out));
    EXPECT_STREQ(out, kAcceptForKey);
}

TEST(WsHandshakeEvaluate, AcceptsRfc6455ExampleRequest)
{
    // RFC 6455 section 1.3, verbatim.
    const std::string req = "GET /chat HTTP/1.1\r\n"
                            "Host: server.example.com\r\n"
                            "Upgrade: websocket\r\n"
                            "Connection: Upgrade\r\n"
                            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                            "Origin: http://example.com\r\n"
                            "Sec-WebSocket-Protocol: chat, superchat\r\n"
                            "Sec-WebSocket-Version: 13\r\n"
                            "\r\n";
    Policy policy;
    policy.path = "/chat";
    policy.subprotocol = "chat";
    policy.origins = {"http://example.com"};
    auto r = evaluate(req, policy);
    ASSERT_EQ(r->status, 101) << reason_of(*r);
    EXPECT_EQ(r->reason, nullptr);
    EXPECT_EQ(r->request_len, req.size());
    EXPECT_STREQ(r->accept_key, kAcceptForKey);
    EXPECT_TRUE(r->subprotocol_selected);
    EXPECT_STREQ(r->bearer_token, "");
}

// ---- completeness and size ---------------------------------------------

TEST(WsHandshakeEvaluate, IncompleteAtEveryPrefixCompleteAtFullLength)
{
    const std::string req = Request().add("Authorization", "Bearer tok").str();
    for (size_t n = 0; n < req.size(); n++) {
        auto r = evaluate(req.substr(0, n));
        ASSERT_EQ(r->status, 0) << "prefix of " << n << " bytes";
        EXPECT_EQ(r->reason, nullptr);
        EXPECT_EQ(r->request_len, 0u);
        EXPECT_STREQ(r->bearer_token, "");
    }
    expect_accepted(req);
}

TEST(WsHandshakeEvaluate, RequestLenExcludesPipelinedFrameBytes)
{
    const std::string req = Request().str();
    // A masked TEXT frame the client sent right behind the request; its
    // payload even holds a CRLF CRLF and an HTTP-looking line.
    const std::string frame = bytes("\x81\x8a\x00\x00\x00\x00\r\n\r\nGET / X\0");
    auto r = evaluate(req + frame);
    ASSERT_EQ(r->status, 101) << reason_of(*r);
    EXPECT_EQ(r->request_len, req.size());
    EXPECT_STREQ(r->accept_key, kAcceptForKey);
}

TEST(WsHandshakeEvaluate, RequestLenOnRejectionToo)
{
    const std::string req = Request().set("Sec-WebSocket-Version", "8").str();
    auto r = evaluate(req + "trailing bytes");
    EXPECT_EQ(r->status, 426);
    EXPECT_EQ(r->request_len, req.size());
}

TEST(WsHandshakeEvaluate, TooLargeOnceMaxBytesArriveWithoutEnd)
{
    std::string partial = Request().str();
    partial.resize(partial.size() - 2); // drop the blank line
    partial += "X-Padding: ";
    partial.resize(WS_HANDSHAKE_MAX_REQUEST, 'p');
    auto r = evaluate(partial.substr(0, WS_HANDSHAKE_MAX_REQUEST - 1));
    EXPECT_EQ(r->status, 0);
    expect_rejected(partial, 431, "too large");
    expect_rejected(partial + "\r\n\r\n", 431, "too large");
}

TEST(WsHandshakeEvaluate, CompleteRequestLargerThanMaxIsTooLarge)
{
    expect_rejected(request_of_size(WS_HANDSHAKE_MAX_REQUEST + 1), 431, "too large");
    expect_rejected(request_of_size(WS_HANDSHAKE_MAX_REQUEST + 500), 431, "too large");
}

TEST(WsHandshakeEvaluate, RequestOfExactlyMaxBytesIsAccepted)
{
    const std::string req = request_of_size(WS_HANDSHAKE_MAX_REQUEST);
    ASSERT_EQ(req.size(), static_cast<size_t>(WS_HANDSHAKE_MAX_REQUEST));
    expect_accepted(req);
    auto r = evaluate(req + "\x88\x80"); // with pipelined bytes
    EXPECT_EQ(r->status, 101);
    EXPECT_EQ(r->request_len, req.size());
}

// ---- malformed HTTP and bodies ---------------------------------------------

TEST(WsHandshakeEvaluate, MalformedHttpIs400)
{
    expect_rejected(bytes("\x16\x03\x01\x02\x00\x01\r\n\r\n"), 400, "malformed HTTP");
    std::string no_colon = Request().str();
    no_colon.insert(no_colon.size() - 2, "This is not a header\r\n");
    expect_rejected(no_colon, 400, "malformed HTTP");
    Request bad_version;
    bad_version.request_line = "GET /v1/sync XTTP/1.1";
    expect_rejected(bad_version.str(), 400, "malformed HTTP");
    bad_version.request_line = "GET /v1/sync HTTP/1.1 ";
    expect_rejected(bad_version.str(), 400, "malformed HTTP");
}

TEST(WsHandshakeEvaluate, WhitespaceInHeaderNameIs400)
{
    // RFC 7230 3.2.4; the Debian http-parser is built lenient and lets it by.
    std::string s = Request().str();
    s.replace(s.find("Host:"), 5, "Host :");
    expect_rejected(s, 400, "malformed HTTP");
    s = Request().add("X-Spaced Name", "v").str();
    expect_rejected(s, 400, "malformed HTTP");
}

TEST(WsHandshakeEvaluate, MalformedBeatsWrongPath)
{
    Request r;
    r.request_line = "GET /elsewhere HTTP/1.1";
    std::string s = r.str();
    s.insert(s.find("Host"), "Bad\x01Header: x\r\n");
    expect_rejected(s, 400, "malformed HTTP");
}

TEST(WsHandshakeEvaluate, HeadersEndingOnBareLineFeedAreMalformed)
{
    // http-parser ends the headers at "\n\n"; what follows up to the CRLF
    // CRLF would be a second request, not part of this one.
    const std::string req = "GET /v1/sync HTTP/1.1\nHost: h\n\n"
                            "Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
    expect_rejected(req, 400, "malformed HTTP");
    // Even when what follows is a well-formed request of its own: the two
    // must not be judged as one.
    const std::string two = "GET /v1/sync HTTP/1.1\nHost: h\n\n" + Request().str();
    expect_rejected(two, 400, "malformed HTTP");
}

TEST(WsHandshakeEvaluate, RequestWithBodyIs400)
{
    expect_rejected(Request().add("Content-Length", "5").str() + "hello", 400, "body");
    expect_rejected(Request().add("Transfer-Encoding", "chunked").str(), 400, "body");
    expect_rejected(Request().add("Transfer-Encoding", "gzip").str(), 400, "body");
    expect_accepted(Request().add("Content-Length", "0").str());
}

// ---- path -------------------------------------------------------------------

TEST(WsHandshakeEvaluate, WrongPathIs404)
{
    for (const char *path : {"/", "/v1/syn", "/v1/sync/", "/v1/sync/more", "/V1/SYNC", "*"}) {
        Request r;
        r.request_line = std::string("GET ") + path + " HTTP/1.1";
        expect_rejected(r.str(), 404, "path");
    }
}

TEST(WsHandshakeEvaluate, QueryStringIsIgnoredForPath)
{
    Request r;
    r.request_line = "GET /v1/sync?room=42&x=%2F HTTP/1.1";
    expect_accepted(r.str());
    r.request_line = "GET /v1/sync? HTTP/1.1";
    expect_accepted(r.str());
}

TEST(WsHandshakeEvaluate, AbsoluteFormTargetUsesItsPath)
{
    Request r;
    r.request_line = "GET http://sync.example.com:8080/v1/sync?a=b HTTP/1.1";
    expect_accepted(r.str());
    r.request_line = "GET http://sync.example.com/other HTTP/1.1";
    expect_rejected(r.str(), 404, "path");
}

TEST(WsHandshakeEvaluate, WrongPathBeatsEveryHeaderRule)
{
    Request r;
    r.request_line = "POST /elsewhere HTTP/1.0";
    r.remove("Host").remove("Upgrade").remove("Sec-WebSocket-Key").set("Sec-WebSocket-Version", "8");
    expect_rejected(r.str(), 404, "path");
}

// ---- request line and required headers (400) -----------------------------

TEST(WsHandshakeEvaluate, MethodMustBeGet)
{
    for (const char *method : {"POST", "PUT", "HEAD", "OPTIONS", "DELETE"}) {
        Request r;
        r.request_line = std::string(method) + " /v1/sync HTTP/1.1";
        expect_rejected(r.str(), 400, "method must be GET");
    }
}

TEST(WsHandshakeEvaluate, HttpVersionMustBeAtLeast11)
{
    Request r;
    r.request_line = "GET /v1/sync HTTP/1.0";
    expect_rejected(r.str(), 400, "HTTP/1.1");
    r.request_line = "GET /v1/sync HTTP/0.9";
    expect_rejected(r.str(), 400, "HTTP/1.1");
    r.request_line = "GET /v1/sync HTTP/1.2";
    expect_accepted(r.str());
}

TEST(WsHandshakeEvaluate, HostIsRequiredOnce)
{
    expect_rejected(Request().remove("Host").str(), 400, "Host");
    expect_rejected(Request().set("Host", "").str(), 400, "Host");
    expect_rejected(Request().add("Host", "other.example.com").str(), 400, "duplicate Host");
}

TEST(WsHandshakeEvaluate, UpgradeMustBeWebsocket)
{
    expect_rejected(Request().remove("Upgrade").str(), 400, "Upgrade");
    expect_rejected(Request().set("Upgrade", "h2c").str(), 400, "Upgrade");
    expect_rejected(Request().set("Upgrade", "websockets").str(), 400, "Upgrade");
    expect_accepted(Request().set("Upgrade", "WebSocket").str());
    expect_accepted(Request().set("Upgrade", "h2c, websocket").str());
}

TEST(WsHandshakeEvaluate, ConnectionTokenListMustIncludeUpgrade)
{
    expect_rejected(Request().remove("Connection").str(), 400, "Connection");
    expect_rejected(Request().set("Connection", "keep-alive").str(), 400, "Connection");
    expect_rejected(Request().set("Connection", "upgraded, keep-alive").str(), 400, "Connection");
    expect_accepted(Request().set("Connection", "keep-alive, Upgrade").str());
    expect_accepted(Request().set("Connection", "UPGRADE").str());
    expect_accepted(Request().set("Connection", "keep-alive,upgrade ,close").str());
    expect_accepted(Request().set("Connection", "keep-alive").add("Connection", "upgrade").str());
}

TEST(WsHandshakeEvaluate, KeyIsRequired)
{
    expect_rejected(Request().remove("Sec-WebSocket-Key").str(), 400, "missing Sec-WebSocket-Key");
}

TEST(WsHandshakeEvaluate, KeyMustBeBase64Of16Bytes)
{
    const char *bad_keys[] = {
        "",
        "dGhlIHNhbXBsZSBub25jZQ",         // padding missing
        "dGhlIHNhbXBsZSBub25jZQ=",        // padding short
        "dGhlIHNhbXBsZSBub25j",           // 15 bytes
        "dGhlIHNhbXBsZSBub25jZSE=",       // 17 bytes
        "dGhlIHNhbXBsZSBub25jZSEh",       // 18 bytes
        "dGhlIHNhbXBsZSBub25jZQ==AAAA",   // 19 bytes
        "dGhlIHNhbXBsZSBub25j=Q==",       // '=' inside
        "dGhlIHNhbXBsZSBub25jZ!==",       // not base64
        "dGhlIHNhbXBsZ SBub25jZQ==",      // space inside
        "dGhlIHNhbXBsZSBub25jZQ-_",       // base64url alphabet
    };
    for (const char *key : bad_keys)
        expect_rejected(Request().set("Sec-WebSocket-Key", key).str(), 400, "Sec-WebSocket-Key");
    auto r = evaluate(Request().set("Sec-WebSocket-Key", "AAAAAAAAAAAAAAAAAAAAAA==").str());
    EXPECT_EQ(r->status, 101);
    r = evaluate(Request().set("Sec-WebSocket-Key", "x3JJHMbDL1EzLkh9GBhXDw==  ").str());
    EXPECT_EQ(r->status, 101);
    EXPECT_STREQ(r->accept_key, "HSmrc0sMlYUkAGmm5OPpG2HaGWk=");
}

TEST(WsHandshakeEvaluate, DuplicateKeyIs400)
{
    expect_rejected(Request().add("Sec-WebSocket-Key", kKey).str(), 400, "duplicate");
    expect_rejected(Request().add("Sec-WebSocket-Key", "AAAAAAAAAAAAAAAAAAAAAA==").str(), 400,
                    "duplicate");
}

// ---- version (426) ------------------------------------------------------------

TEST(WsHandshakeEvaluate, VersionOtherThan13Is426)
{
    expect_rejected(Request().remove("Sec-WebSocket-Version").str(), 426, "13");
    expect_rejected(Request().set("Sec-WebSocket-Version", "8").str(), 426, "13");
    expect_rejected(Request().set("Sec-WebSocket-Version", "13, 8").str(), 426, "13");
    expect_rejected(Request().set("Sec-WebSocket-Version", "130").str(), 426, "13");
    expect_rejected(Request().add("Sec-WebSocket-Version", "13").str(), 426, "13");
}

TEST(WsHandshakeEvaluate, HeaderErrorsBeatVersion)
{
    expect_rejected(Request().set("Sec-WebSocket-Version", "8").remove("Sec-WebSocket-Key").str(),
                    400, "Sec-WebSocket-Key");
}

// ---- origin (403) --------------------------------------------------------------

TEST(WsHandshakeEvaluate, OriginAllowList)
{
    Policy policy;
    policy.origins = {"https://app.example.com", "http://localhost:3000"};
    expect_rejected(Request().str(), 403, "Origin", policy);
    expect_rejected(Request().add("Origin", "https://evil.example.com").str(), 403, "Origin", policy);
    expect_rejected(Request().add("Origin", "https://app.example.com.evil").str(), 403, "Origin",
                    policy);
    expect_rejected(Request().add("Origin", "http://app.example.com").str(), 403, "Origin", policy);
    // Two origins, in either order: which one would the browser have meant?
    expect_rejected(Request()
                        .add("Origin", "https://app.example.com")
                        .add("Origin", "https://evil.example.com")
                        .str(),
                    403, "Origin", policy);
    expect_rejected(Request()
                        .add("Origin", "https://evil.example.com")
                        .add("Origin", "https://app.example.com")
                        .str(),
                    403, "Origin", policy);
    expect_accepted(Request().add("Origin", "https://app.example.com").str(), policy);
    expect_accepted(Request().add("Origin", "http://localhost:3000").str(), policy);
    expect_accepted(Request().add("Origin", "HTTPS://App.Example.COM").str(), policy);
}

TEST(WsHandshakeEvaluate, NoAllowListAcceptsAnyOrigin)
{
    expect_accepted(Request().add("Origin", "https://anything.example").str());
    expect_accepted(Request().str());
}

TEST(WsHandshakeEvaluate, VersionBeatsOrigin)
{
    Policy policy;
    policy.origins = {"https://app.example.com"};
    expect_rejected(Request().set("Sec-WebSocket-Version", "8").str(), 426, "13", policy);
}

// ---- case-insensitivity -------------------------------------------------------

TEST(WsHandshakeEvaluate, HeaderNamesAreCaseInsensitive)
{
    Request lower;
    lower.headers = {{"host", "h"},
                     {"upgrade", "websocket"},
                     {"connection", "upgrade"},
                     {"sec-websocket-key", kKey},
                     {"sec-websocket-version", "13"},
                     {"sec-websocket-protocol", kSubprotocol},
                     {"authorization", "Bearer abc"}};
    auto r = evaluate(lower.str());
    ASSERT_EQ(r->status, 101) << reason_of(*r);
    EXPECT_TRUE(r->subprotocol_selected);
    EXPECT_STREQ(r->bearer_token, "abc");

    Request upper;
    upper.headers = {{"HOST", "h"},
                     {"UPGRADE", "WEBSOCKET"},
                     {"CONNECTION", "UPGRADE"},
                     {"SEC-WEBSOCKET-KEY", kKey},
                     {"SEC-WEBSOCKET-VERSION", "13"}};
    expect_accepted(upper.str());
    // And a duplicate key is caught whatever its spelling.
    expect_rejected(Request().add("SEC-websocket-KEY", kKey).str(), 400, "duplicate");
}

TEST(WsHandshakeEvaluate, HeaderValuesTrimmedAndFolded)
{
    expect_accepted(Request().set("Upgrade", "  websocket \t").set("Sec-WebSocket-Version", "13 ").str());
    // An obsolete folded line continues the previous value (RFC 7230 3.2.4),
    // which http-parser delivers in pieces.
    std::string folded = Request().set("Connection", "Upgrade,").str();
    const std::string line_end = "Upgrade,\r\n";
    folded.replace(folded.find(line_end), line_end.size(), line_end + " keep-alive\r\n");
    expect_accepted(folded);
}

TEST(WsHandshakeEvaluate, UnknownAndLongHeadersAreIgnored)
{
    expect_accepted(Request()
                        .add("X-Sec-WebSocket-Key", "nonsense")
                        .add(std::string(100, 'h'), "v")
                        .add("Sec-WebSocket-Key-Extra", kKey)
                        .add("Empty", "")
                        .str());
}

// ---- subprotocol ----------------------------------------------------------------

TEST(WsHandshakeEvaluate, SubprotocolSelectedFromSeveralHeaders)
{
    auto r = evaluate(Request()
                          .add("Sec-WebSocket-Protocol", "chat, superchat")
                          .add("Sec-WebSocket-Protocol", "mqtt ,  nebula-sync.v1 , other")
                          .str());
    ASSERT_EQ(r->status, 101);
    EXPECT_TRUE(r->subprotocol_selected);
    r = evaluate(Request()
                     .add("Sec-WebSocket-Protocol", kSubprotocol)
                     .add("Sec-WebSocket-Protocol", "chat")
                     .str());
    EXPECT_TRUE(r->subprotocol_selected);
}

TEST(WsHandshakeEvaluate, SubprotocolMustMatchExactly)
{
    for (const char *offer : {"nebula-sync.v2", "nebula-sync", "NEBULA-SYNC.V1", "nebula-sync.v1x",
                              "chat nebula-sync.v1", ""}) {
        auto r = evaluate(Request().add("Sec-WebSocket-Protocol", offer).str());
        ASSERT_EQ(r->status, 101) << offer;
        EXPECT_FALSE(r->subprotocol_selected) << offer;
    }
}

TEST(WsHandshakeEvaluate, NoSubprotocolOfferedIsAcceptedWithout)
{
    auto r = evaluate(Request().str());
    ASSERT_EQ(r->status, 101);
    EXPECT_FALSE(r->subprotocol_selected);
    EXPECT_EQ(response(*r).find("Sec-WebSocket-Protocol"), std::string::npos);
}

TEST(WsHandshakeEvaluate, PolicyWithoutSubprotocolSelectsNothing)
{
    Policy policy;
    policy.subprotocol = nullptr;
    auto r = evaluate(Request().add("Sec-WebSocket-Protocol", kSubprotocol).str(), policy);
    ASSERT_EQ(r->status, 101);
    EXPECT_FALSE(r->subprotocol_selected);
}

// ---- bearer token -------------------------------------------------------------------

TEST(WsHandshakeEvaluate, BearerTokenExtracted)
{
    const char *jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl-_~+/==";
    auto r = evaluate(Request().add("Authorization", std::string("Bearer ") + jwt).str());
    ASSERT_EQ(r->status, 101);
    EXPECT_STREQ(r->bearer_token, jwt);
    r = evaluate(Request().add("Authorization", "bEARER   tok123  ").str());
    EXPECT_STREQ(r->bearer_token, "tok123");
}

TEST(WsHandshakeEvaluate, NoBearerTokenUnlessWellFormed)
{
    for (const char *value : {"Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "Bearertok", "Bearer a b",
                              "Bearer a=b", "Bearer t\xc3\xa9", "Token abc"}) {
        auto r = evaluate(Request().add("Authorization", value).str());
        ASSERT_EQ(r->status, 101) << value;
        EXPECT_STREQ(r->bearer_token, "") << value;
    }
    auto r = evaluate(Request().add("Authorization", "Bearer a").add("Authorization", "Bearer b").str());
    EXPECT_STREQ(r->bearer_token, "");
}

TEST(WsHandshakeEvaluate, BearerTokenLengthLimit)
{
    const std::string fits(WS_HANDSHAKE_MAX_TOKEN - 1, 't');
    auto r = evaluate(Request().add("Authorization", "Bearer " + fits).str());
    ASSERT_EQ(r->status, 101);
    EXPECT_EQ(std::string(r->bearer_token), fits);
    const std::string too_long(WS_HANDSHAKE_MAX_TOKEN, 't');
    r = evaluate(Request().add("Authorization", "Bearer " + too_long).str());
    ASSERT_EQ(r->status, 101);
    EXPECT_STREQ(r->bearer_token, "");
}

TEST(WsHandshakeEvaluate, NoTokenOrSubprotocolOnRejection)
{
    auto r = evaluate(Request()
                          .set("Sec-WebSocket-Version", "8")
                          .add("Authorization", "Bearer secret")
                          .add("Sec-WebSocket-Protocol", kSubprotocol)
                          .str());
    EXPECT_EQ(r->status, 426);
    EXPECT_STREQ(r->bearer_token, "");
    EXPECT_FALSE(r->subprotocol_selected);
}

// ---- response bytes -----------------------------------------------------------------

TEST(WsHandshakeResponse, SwitchingProtocolsExactBytes)
{
    auto r = evaluate(Request().str());
    ASSERT_EQ(r->status, 101);
    EXPECT_EQ(response(*r), "HTTP/1.1 101 Switching Protocols\r\n"
                            "Upgrade: websocket\r\n"
                            "Connection: Upgrade\r\n"
                            "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                            "\r\n");
}

TEST(WsHandshakeResponse, SwitchingProtocolsWithSubprotocolExactBytes)
{
    auto r = evaluate(Request().add("Sec-WebSocket-Protocol", "chat, nebula-sync.v1").str());
    ASSERT_EQ(r->status, 101);
    EXPECT_EQ(response(*r), "HTTP/1.1 101 Switching Protocols\r\n"
                            "Upgrade: websocket\r\n"
                            "Connection: Upgrade\r\n"
                            "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                            "Sec-WebSocket-Protocol: nebula-sync.v1\r\n"
                            "\r\n");
}

TEST(WsHandshakeResponse, UpgradeRequiredExactBytes)
{
    auto r = evaluate(Request().set("Sec-WebSocket-Version", "8").str());
    ASSERT_EQ(r->status, 426);
    const std::string body = "Sec-WebSocket-Version must be 13\n";
    EXPECT_EQ(response(*r), "HTTP/1.1 426 Upgrade Required\r\n"
                            "Content-Type: text/plain\r\n"
                            "Content-Length: " +
                                std::to_string(body.size()) +
                                "\r\n"
                                "Connection: close\r\n"
                                "Sec-WebSocket-Version: 13\r\n"
                                "\r\n" +
                                body);
}

TEST(WsHandshakeResponse, ErrorStatusLinesAndBodies)
{
    Policy policy;
    policy.origins = {"https://app.example.com"};
    Request wrong_path;
    wrong_path.request_line = "GET /nope HTTP/1.1";
    const struct {
        std::string request;
        int status;
        const char *status_line;
    } cases[] = {
        {Request().remove("Host").str(), 400, "HTTP/1.1 400 Bad Request\r\n"},
        {Request().str(), 403, "HTTP/1.1 403 Forbidden\r\n"},
        {wrong_path.str(), 404, "HTTP/1.1 404 Not Found\r\n"},
        {request_of_size(WS_HANDSHAKE_MAX_REQUEST + 1), 431,
         "HTTP/1.1 431 Request Header Fields Too Large\r\n"},
    };
    for (const auto &c : cases) {
        auto r = evaluate(c.request, policy);
        ASSERT_EQ(r->status, c.status);
        const std::string body = reason_of(*r) + "\n";
        EXPECT_EQ(response(*r), std::string(c.status_line) +
                                    "Content-Type: text/plain\r\n"
                                    "Content-Length: " +
                                    std::to_string(body.size()) +
                                    "\r\n"
                                    "Connection: close\r\n"
                                    "\r\n" +
                                    body);
    }
}

TEST(WsHandshakeResponse, NothingWrittenForUndecidedResult)
{
    auto r = evaluate("GET /v1/sync HTTP/1.1\r\n");
    ASSERT_EQ(r->status, 0);
    EXPECT_EQ(response(*r), "");
}

TEST(WsHandshakeResponse, ZeroWhenBufferTooSmall)
{
    auto r = evaluate(Request().add("Sec-WebSocket-Protocol", kSubprotocol).str());
    ASSERT_EQ(r->status, 101);
    const std::string full = response(*r);
    ASSERT_FALSE(full.empty());
    std::vector<char> exact(full.size());
    EXPECT_EQ(ws_handshake_response_write(r.get(), kSubprotocol, exact.data(), exact.size()),
              full.size());
    EXPECT_EQ(std::string(exact.data(), exact.size()), full);
    std::vector<char> small(full.size() - 1);
    EXPECT_EQ(ws_handshake_response_write(r.get(), kSubprotocol, small.data(), small.size()), 0u);

    auto e = evaluate(Request().remove("Upgrade").str());
    std::vector<char> tiny(10);
    EXPECT_EQ(ws_handshake_response_write(e.get(), kSubprotocol, tiny.data(), tiny.size()), 0u);
}

} // namespace
