// test_transport: nebula-syncd's WebSocket transport over real sockets.
//
// Each test starts its own daemon (ephemeral ports), talks to it with the
// byte-exact test client, and stops it with SIGTERM expecting exit status 0.
// Most tests run twice, over plain TCP and over TLS. Waits are bounded by
// generous safety timeouts; nothing asserts on speed.
#include <gtest/gtest.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <functional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "daemon_process.h"
#include "test_certs.h"
#include "ws_test_client.h"

namespace nebula_test {
namespace {

using ::testing::AssertionFailure;
using ::testing::AssertionResult;
using ::testing::AssertionSuccess;

enum class Mode { kPlain, kTls };

std::string ModeName(const ::testing::TestParamInfo<Mode> &info) {
  return info.param == Mode::kPlain ? "Plain" : "Tls";
}

// One ECDSA certificate for every TLS test of this process.
const TestCert &SharedCert() {
  static TempDir dir("nebula-transport-cert");
  static TestCert cert = [] {
    TestCert c;
    std::string err;
    if (!GenerateSelfSignedCert(dir.path(), "server", KeyType::kEcdsaP256, &c, &err))
      ADD_FAILURE() << "certificate generation failed: " << err;
    return c;
  }();
  return cert;
}

DaemonOptions WithTls(DaemonOptions o, const TestCert &cert) {
  o["tls-cert"] = cert.cert_path;
  o["tls-key"] = cert.key_path;
  return o;
}

std::string HostPort(const ConnectOptions &o) { return o.host + ":" + std::to_string(o.port); }

// The next frame must be a CLOSE with this code, with a 2-byte code (plus an
// optional short UTF-8 reason), unmasked; then the server closes TCP.
AssertionResult ReadCloseThenEof(WsClient &c, uint16_t code) {
  Frame f;
  ReadResult r = c.ReadFrame(&f);
  if (r != ReadResult::kOk)
    return AssertionFailure() << "expected CLOSE " << code << ", got " << ToString(r) << " "
                              << (r == ReadResult::kError ? c.last_error() : "");
  if (!f.is_close()) return AssertionFailure() << "expected CLOSE " << code << ", got " << f.Describe();
  if (f.close_code() != code) return AssertionFailure() << "expected CLOSE " << code << ", got " << f.Describe();
  if (f.masked || !f.fin || f.rsv) return AssertionFailure() << "malformed server CLOSE: " << f.Describe();
  if (f.payload.size() > 125) return AssertionFailure() << "server CLOSE payload over 125 bytes";
  ReadResult e = c.WaitForEof();
  if (e != ReadResult::kEof)
    return AssertionFailure() << "server sent CLOSE " << code << " but did not close TCP: " << ToString(e) << " "
                              << c.last_error();
  return AssertionSuccess();
}

// The next message must be a ServerMessage.error with this code.
AssertionResult ReadError(WsClient &c, Nebula__Sync__V1__ErrorCode code) {
  ServerMessagePtr m = c.ReadServerMessage();
  if (!m) return AssertionFailure() << "expected Error{" << ErrorCodeName(code) << "}: " << c.last_error();
  if (m->message_case != NEBULA__SYNC__V1__SERVER_MESSAGE__MESSAGE_ERROR || m->error->code != code)
    return AssertionFailure() << "expected Error{" << ErrorCodeName(code) << "}, got "
                              << DescribeServerMessage(m.get());
  return AssertionSuccess();
}

// The next message must be a Welcome.
AssertionResult ReadWelcome(WsClient &c, ServerMessagePtr *out = nullptr) {
  ServerMessagePtr m = c.ReadServerMessage();
  if (!m) return AssertionFailure() << "expected Welcome: " << c.last_error();
  if (m->message_case != NEBULA__SYNC__V1__SERVER_MESSAGE__MESSAGE_WELCOME)
    return AssertionFailure() << "expected Welcome, got " << DescribeServerMessage(m.get());
  if (out) *out = std::move(m);
  return AssertionSuccess();
}

AssertionResult HelloGetsWelcome(WsClient &c, ServerMessagePtr *out = nullptr) {
  if (!c.SendHello()) return AssertionFailure() << "send Hello: " << c.last_error();
  return ReadWelcome(c, out);
}

// The next frame must be exactly this one.
AssertionResult ReadFrameExpect(WsClient &c, uint8_t opcode, const std::string &payload) {
  Frame f;
  ReadResult r = c.ReadFrame(&f);
  if (r != ReadResult::kOk) return AssertionFailure() << "expected a frame, got " << ToString(r);
  if (f.opcode != opcode || f.payload != payload || !f.fin || f.masked || f.rsv)
    return AssertionFailure() << "expected opcode " << int(opcode) << " with " << payload.size()
                              << " payload bytes, got " << f.Describe();
  return AssertionSuccess();
}

// A silent client must be left alone for this long (no frame, no EOF).
AssertionResult NothingArrivesFor(WsClient &c, int ms) {
  Frame f;
  ReadResult r = c.ReadFrame(&f, ms);
  if (r == ReadResult::kTimeout) return AssertionSuccess();
  if (r == ReadResult::kOk) return AssertionFailure() << "unexpected frame: " << f.Describe();
  return AssertionFailure() << "unexpected " << ToString(r) << " " << c.last_error();
}

// ---- fixtures -------------------------------------------------------------------

class TransportTest : public ::testing::TestWithParam<Mode>, public DaemonHarness {
 protected:
  bool tls() const { return GetParam() == Mode::kTls; }
  AssertionResult Start(DaemonOptions o = {}) {
    AssertionResult r = StartDaemon(tls() ? WithTls(o, SharedCert()) : o);
    if (r && daemon_->tls() != tls()) return AssertionFailure() << "ready line: " << daemon_->ready_line();
    return r;
  }
  void TearDown() override { StopDaemonAndExpectCleanExit(); }
};

class PlainTest : public ::testing::Test, public DaemonHarness {
 protected:
  void TearDown() override { StopDaemonAndExpectCleanExit(); }
};

class TlsTest : public ::testing::Test, public DaemonHarness {
 protected:
  AssertionResult Start(DaemonOptions o = {}) { return StartDaemon(WithTls(o, SharedCert())); }
  ConnectOptions TlsClient(int min_version = 0, int max_version = 0) {
    ConnectOptions o = Client();
    o.tls_options.min_version = min_version;
    o.tls_options.max_version = max_version;
    return o;
  }
  void TearDown() override { StopDaemonAndExpectCleanExit(); }
};

#define ASSERT_UPGRADED(client) ASSERT_TRUE((client).ConnectAndUpgrade(Client())) << (client).last_error()

// ---- handshake ----------------------------------------------------------------------

TEST_P(TransportTest, UpgradeReturns101WithAcceptKeyAndSubprotocol) {
  ASSERT_TRUE(Start());
  WsClient c;
  HttpResponse resp;
  ASSERT_TRUE(c.ConnectAndUpgrade(Client(), {kSubprotocol}, &resp)) << c.last_error();
  EXPECT_EQ(resp.status_line.substr(0, 12), "HTTP/1.1 101");
  EXPECT_EQ(resp.Header("sec-websocket-protocol").value_or("(none)"), kSubprotocol);
  EXPECT_EQ(resp.HeaderValues("sec-websocket-protocol").size(), 1u);
}

TEST_P(TransportTest, HelloReceivesWelcomeWithConfiguredValues) {
  ASSERT_TRUE(Start({{"idle-timeout", "2.5"}, {"max-message-size", "200000"}}));
  WsClient c;
  ASSERT_UPGRADED(c);
  ServerMessagePtr m;
  ASSERT_TRUE(HelloGetsWelcome(c, &m));
  const auto *w = m->welcome;
  EXPECT_STRNE(w->session_id, "");
  EXPECT_STREQ(w->tenant, "default");
  int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  EXPECT_LT(std::llabs(static_cast<long long>(w->server_time_ms) - now_ms), 60000LL)
      << "server_time_ms " << w->server_time_ms << " vs now " << now_ms;
  EXPECT_EQ(w->heartbeat_interval_ms, 2500u);
  ASSERT_NE(w->limits, nullptr);
  EXPECT_EQ(w->limits->max_message_size, 200000u);
  EXPECT_STREQ(w->server_version, "0.1.0");
}

TEST_P(TransportTest, WelcomeIsOneUnmaskedFinalBinaryFrame) {
  ASSERT_TRUE(Start());
  WsClient c;
  ASSERT_UPGRADED(c);
  ASSERT_TRUE(c.SendHello());
  Frame f;
  ASSERT_EQ(c.ReadFrame(&f), ReadResult::kOk) << c.last_error();
  EXPECT_EQ(f.opcode, kOpBinary);
  EXPECT_TRUE(f.fin);
  EXPECT_FALSE(f.masked);
  EXPECT_EQ(f.rsv, 0);
  EXPECT_TRUE(f.minimal_length);
  ServerMessagePtr m = DecodeServerMessage(f.payload);
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(m->message_case, NEBULA__SYNC__V1__SERVER_MESSAGE__MESSAGE_WELCOME);
}

TEST_P(TransportTest, SessionIdsDifferBetweenConnections) {
  ASSERT_TRUE(Start());
  WsClient a, b;
  ServerMessagePtr wa, wb;
  ASSERT_TRUE(a.OpenSession(Client(), &wa)) << a.last_error();
  ASSERT_TRUE(b.OpenSession(Client(), &wb)) << b.last_error();
  EXPECT_STRNE(wa->welcome->session_id, wb->welcome->session_id);
}

TEST_P(TransportTest, SubprotocolIsSelectedAmongSeveralOffered) {
  ASSERT_TRUE(Start());
  WsClient c;
  HttpResponse resp;
  ASSERT_TRUE(c.ConnectAndUpgrade(Client(), {"chat", kSubprotocol, "other.v2"}, &resp)) << c.last_error();
  EXPECT_EQ(resp.Header("sec-websocket-protocol").value_or("(none)"), kSubprotocol);
}

TEST_P(TransportTest, SubprotocolIsSelectedFromRepeatedHeaders) {
  ASSERT_TRUE(Start());
  WsClient c;
  ASSERT_TRUE(c.Connect(Client())) << c.last_error();
  UpgradeRequest req = UpgradeRequest::Standard(HostPort(Client()), {"chat"});
  req.Add("Sec-WebSocket-Protocol", kSubprotocol);
  HttpResponse resp;
  ASSERT_TRUE(c.Upgrade(req, &resp)) << c.last_error();
  EXPECT_EQ(resp.Header("sec-websocket-protocol").value_or("(none)"), kSubprotocol);
}

TEST_P(TransportTest, NoSubprotocolHeaderWhenNotOffered) {
  ASSERT_TRUE(Start());
  for (const auto &offer : std::vector<std::vector<std::string>>{{}, {"chat", "superchat"}}) {
    WsClient c;
    HttpResponse resp;
    ASSERT_TRUE(c.ConnectAndUpgrade(Client(), offer, &resp)) << c.last_error();
    EXPECT_FALSE(resp.Header("sec-websocket-protocol").has_value())
        << "offered " << offer.size() << " other protocols; got " << resp.raw;
    EXPECT_TRUE(HelloGetsWelcome(c)) << "session without subprotocol";
  }
}

TEST_P(TransportTest, UpgradeHeadersAreCaseInsensitiveAndTokenized) {
  ASSERT_TRUE(Start());
  WsClient c;
  ASSERT_TRUE(c.Connect(Client())) << c.last_error();
  UpgradeRequest req = UpgradeRequest::Standard(HostPort(Client()));
  req.Remove("Upgrade");
  req.Remove("Connection");
  req.Add("upgrade", "WebSocket");
  req.Add("CONNECTION", "keep-alive, Upgrade");
  ASSERT_TRUE(c.Upgrade(req)) << c.last_error();
  EXPECT_TRUE(HelloGetsWelcome(c));
}

TEST_P(TransportTest, QueryStringIsIgnoredInPath) {
  ASSERT_TRUE(Start());
  WsClient c;
  ASSERT_TRUE(c.Connect(Client())) << c.last_error();
  UpgradeRequest req = UpgradeRequest::Standard(HostPort(Client()));
  req.target = std::string(kSyncPath) + "?client=42";
  ASSERT_TRUE(c.Upgrade(req)) << c.last_error();
}

TEST_P(TransportTest, UpgradeRequestArrivingInPiecesIsAccepted) {
  ASSERT_TRUE(Start());
  WsClient c;
  ASSERT_TRUE(c.Connect(Client())) << c.last_error();
  UpgradeRequest req = UpgradeRequest::Standard(HostPort(Client()));
  std::string bytes = req.Serialize();
  for (size_t off = 0; off < bytes.size(); off += 37) {
    ASSERT_TRUE(c.SendRaw(bytes.substr(off, 37))) << c.last_error();
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  HttpResponse resp = c.ReadHttpResponse();
  ASSERT_TRUE(resp.ok()) << c.last_error();
  ASSERT_EQ(resp.status, 101) << resp.raw;
  EXPECT_EQ(resp.Header("sec-websocket-accept").value_or(""), ExpectedAcceptKey(req.key));
  EXPECT_TRUE(HelloGetsWelcome(c));
}

TEST_P(TransportTest, HelloSentRightBehindUpgradeRequestIsAnswered) {
  ASSERT_TRUE(Start());
  WsClient c;
  ASSERT_TRUE(c.Connect(Client())) << c.last_error();
  UpgradeRequest req = UpgradeRequest::Standard(HostPort(Client()));
  ASSERT_TRUE(c.SendRaw(req.Serialize() + EncodeFrame(kOpBinary, EncodeHello("eager"))));
  HttpResponse resp = c.ReadHttpResponse();
  ASSERT_EQ(resp.status, 101) << resp.raw;
  EXPECT_TRUE(ReadWelcome(c));
}

// ---- handshake rejections ---------------------------------------------------------------

struct Rejection {
  const char *name;
  std::function<std::string(const std::string &host_port)> request;
  int status;
  const char *reason;  // nebula_handshake_failures_total label
};

void PrintTo(const Rejection &r, std::ostream *os) { *os << r.name; }

std::string Modified(const std::string &host_port, const std::function<void(UpgradeRequest &)> &change) {
  UpgradeRequest r = UpgradeRequest::Standard(host_port);
  change(r);
  return r.Serialize();
}

const Rejection kRejections[] = {
    {"WrongPath", [](const std::string &h) { return Modified(h, [](UpgradeRequest &r) { r.target = "/v1/other"; }); },
     404, "not_found"},
    {"RootPath", [](const std::string &h) { return Modified(h, [](UpgradeRequest &r) { r.target = "/"; }); }, 404,
     "not_found"},
    {"MissingHost", [](const std::string &h) { return Modified(h, [](UpgradeRequest &r) { r.Remove("Host"); }); },
     400, "bad_request"},
    {"MissingUpgrade",
     [](const std::string &h) { return Modified(h, [](UpgradeRequest &r) { r.Remove("Upgrade"); }); }, 400,
     "bad_request"},
    {"UpgradeNotWebsocket",
     [](const std::string &h) { return Modified(h, [](UpgradeRequest &r) { r.Set("Upgrade", "h2c"); }); }, 400,
     "bad_request"},
    {"MissingConnection",
     [](const std::string &h) { return Modified(h, [](UpgradeRequest &r) { r.Remove("Connection"); }); }, 400,
     "bad_request"},
    {"ConnectionWithoutUpgradeToken",
     [](const std::string &h) { return Modified(h, [](UpgradeRequest &r) { r.Set("Connection", "keep-alive"); }); },
     400, "bad_request"},
    {"MissingKey",
     [](const std::string &h) { return Modified(h, [](UpgradeRequest &r) { r.Remove("Sec-WebSocket-Key"); }); },
     400, "bad_request"},
    {"KeyNotSixteenBytes",
     [](const std::string &h) {
       return Modified(h, [](UpgradeRequest &r) { r.Set("Sec-WebSocket-Key", "c2hvcnQ="); });
     },
     400, "bad_request"},
    {"KeyNotBase64",
     [](const std::string &h) {
       return Modified(h, [](UpgradeRequest &r) { r.Set("Sec-WebSocket-Key", "!!!!!!!!!!!!!!!!!!!!!!=="); });
     },
     400, "bad_request"},
    {"PostMethod", [](const std::string &h) { return Modified(h, [](UpgradeRequest &r) { r.method = "POST"; }); },
     400, "bad_request"},
    {"Http10", [](const std::string &h) { return Modified(h, [](UpgradeRequest &r) { r.version = "HTTP/1.0"; }); },
     400, "bad_request"},
    {"GarbageRequestLine", [](const std::string &) { return std::string("NONSENSE\r\n\r\n"); }, 400, "bad_request"},
    {"Version8",
     [](const std::string &h) { return Modified(h, [](UpgradeRequest &r) { r.Set("Sec-WebSocket-Version", "8"); }); },
     426, "version"},
    {"VersionMissing",
     [](const std::string &h) { return Modified(h, [](UpgradeRequest &r) { r.Remove("Sec-WebSocket-Version"); }); },
     426, "version"},
    // 8300 bytes of headers and no end in sight: answered without waiting for more.
    {"HeadersOver8192Bytes",
     [](const std::string &h) {
       std::string req = Modified(h, [](UpgradeRequest &) {});
       req.resize(req.size() - 2);  // drop the blank line
       while (req.size() < 8300) req += "X-Padding: " + std::string(100, 'p') + "\r\n";
       return req;
     },
     431, "too_large"},
};

class HandshakeRejectionTest : public ::testing::TestWithParam<std::tuple<Mode, Rejection>>, public DaemonHarness {
 protected:
  void TearDown() override { StopDaemonAndExpectCleanExit(); }
};

TEST_P(HandshakeRejectionTest, IsAnsweredWithStatusAndReasonThenClosed) {
  const bool tls = std::get<0>(GetParam()) == Mode::kTls;
  const Rejection &rej = std::get<1>(GetParam());
  ASSERT_TRUE(StartDaemon(tls ? WithTls({}, SharedCert()) : DaemonOptions{}));
  WsClient c;
  ASSERT_TRUE(c.Connect(Client())) << c.last_error();
  c.SendRaw(rej.request(HostPort(Client())));
  HttpResponse resp = c.ReadHttpResponse();
  ASSERT_TRUE(resp.ok()) << "no complete response (" << ToString(resp.result) << "): " << c.last_error()
                         << "; got: " << resp.raw;
  EXPECT_EQ(resp.status, rej.status) << resp.raw;
  EXPECT_FALSE(resp.body.empty()) << "error responses carry a text reason";
  if (rej.status == 426) {
    EXPECT_EQ(resp.Header("sec-websocket-version").value_or("(none)"), "13") << resp.raw;
  }
  EXPECT_EQ(c.WaitForEof(), ReadResult::kEof) << "connection not closed after " << rej.status;
  EXPECT_TRUE(WaitForMetric("nebula_handshake_failures_total", {{"reason", rej.reason}},
                            [](double v) { return v >= 1; }, ">= 1"));
}

INSTANTIATE_TEST_SUITE_P(All, HandshakeRejectionTest,
                         ::testing::Combine(::testing::Values(Mode::kPlain, Mode::kTls),
                                            ::testing::ValuesIn(kRejections)),
                         [](const ::testing::TestParamInfo<std::tuple<Mode, Rejection>> &info) {
                           return std::string(std::get<0>(info.param) == Mode::kPlain ? "Plain" : "Tls") + "_" +
                                  std::get<1>(info.param).name;
                         });

TEST_P(TransportTest, OriginOutsideAllowListIs403AndListedOriginIsAccepted) {
  ASSERT_TRUE(Start({{"origins", "https://app.example,https://admin.example"}}));
  struct Case {
    const char *origin;  // nullptr: no Origin header
    int status;
  };
  for (const Case &k : {Case{"https://evil.example", 403}, Case{"https://app.example.evil", 403},
                        Case{nullptr, 403}, Case{"https://admin.example", 101}, Case{"https://app.example", 101}}) {
    SCOPED_TRACE(k.origin ? k.origin : "(no Origin)");
    WsClient c;
    ASSERT_TRUE(c.Connect(Client())) << c.last_error();
    UpgradeRequest req = UpgradeRequest::Standard(HostPort(Client()));
    if (k.origin) req.Set("Origin", k.origin);
    ASSERT_TRUE(c.SendRaw(req.Serialize()));
    HttpResponse resp = c.ReadHttpResponse();
    ASSERT_TRUE(resp.ok()) << c.last_error();
    EXPECT_EQ(resp.status, k.status) << resp.raw;
    if (k.status == 403) {
      EXPECT_FALSE(resp.body.empty());
      EXPECT_EQ(c.WaitForEof(), ReadResult::kEof);
    } else {
      EXPECT_TRUE(HelloGetsWelcome(c));
    }
  }
  EXPECT_TRUE(WaitForMetric("nebula_handshake_failures_total", {{"reason", "origin"}},
                            [](double v) { return v >= 3; }, ">= 3"));
}

// ---- frame rules ------------------------------------------------------------------

struct BadFrames {
  const char *name;
  std::function<std::string()> bytes;
  uint16_t close_code;
};

void PrintTo(const BadFrames &b, std::ostream *os) { *os << b.name; }

std::string Spec(std::function<void(FrameSpec &)> change) {
  FrameSpec s;
  s.payload = "payload";
  change(s);
  return EncodeFrame(s);
}

std::string Fragment(uint8_t opcode, const std::string &payload, bool fin) { return EncodeFrame(opcode, payload, fin); }

std::string CloseWithCode(uint16_t code) { return EncodeFrame(kOpClose, ClosePayload(code, "x")); }

// Every case runs against a daemon started with --max-message-size 65536.
const BadFrames kBadFrames[] = {
    {"UnmaskedClientFrame", [] { return Spec([](FrameSpec &s) { s.masked = false; }); }, 1002},
    {"UnmaskedPing", [] { return Spec([](FrameSpec &s) { s.masked = false; s.opcode = kOpPing; }); }, 1002},
    {"Rsv1", [] { return Spec([](FrameSpec &s) { s.rsv = kRsv1; }); }, 1002},
    {"Rsv2", [] { return Spec([](FrameSpec &s) { s.rsv = kRsv2; }); }, 1002},
    {"Rsv3", [] { return Spec([](FrameSpec &s) { s.rsv = kRsv3; }); }, 1002},
    {"RsvOnPing", [] { return Spec([](FrameSpec &s) { s.rsv = kRsv1; s.opcode = kOpPing; }); }, 1002},
    {"Opcode3", [] { return Spec([](FrameSpec &s) { s.opcode = 0x3; }); }, 1002},
    {"Opcode7", [] { return Spec([](FrameSpec &s) { s.opcode = 0x7; }); }, 1002},
    {"OpcodeB", [] { return Spec([](FrameSpec &s) { s.opcode = 0xB; }); }, 1002},
    {"OpcodeF", [] { return Spec([](FrameSpec &s) { s.opcode = 0xF; }); }, 1002},
    {"NonMinimal16BitLength", [] { return Spec([](FrameSpec &s) { s.length_form = LengthForm::k16; }); }, 1002},
    {"NonMinimal64BitLength",
     [] {
       return Spec([](FrameSpec &s) {
         s.payload = std::string(200, 'a');
         s.length_form = LengthForm::k64;
       });
     },
     1002},
    {"NonMinimal64BitLengthHeaderOnly",
     [] {
       return Spec([](FrameSpec &s) {
         s.payload.clear();
         s.declared_length = 1000;
         s.length_form = LengthForm::k64;
       });
     },
     1002},
    {"Length64WithMostSignificantBitSet",
     [] {
       return Spec([](FrameSpec &s) {
         s.payload.clear();
         s.declared_length = 0x8000000000000010ull;
         s.length_form = LengthForm::k64;
       });
     },
     1002},
    {"PingOver125Bytes",
     [] {
       return Spec([](FrameSpec &s) {
         s.opcode = kOpPing;
         s.payload = std::string(126, 'p');
       });
     },
     1002},
    {"CloseOver125Bytes", [] { return EncodeFrame(kOpClose, ClosePayload(1000, std::string(124, 'r'))); }, 1002},
    {"FragmentedPing", [] { return Spec([](FrameSpec &s) { s.opcode = kOpPing; s.fin = false; }); }, 1002},
    {"ContinuationWithoutMessage", [] { return Fragment(kOpContinuation, "orphan", true); }, 1002},
    {"TextInsideFragmentedBinary",
     [] { return Fragment(kOpBinary, "ab", false) + Fragment(kOpText, "cd", true); }, 1002},
    {"BinaryInsideFragmentedText",
     [] { return Fragment(kOpText, "ab", false) + Fragment(kOpBinary, "cd", true); }, 1002},
    {"CloseWithOneBytePayload", [] { return EncodeFrame(kOpClose, std::string(1, '\x03')); }, 1002},
    {"CloseCode0", [] { return CloseWithCode(0); }, 1002},
    {"CloseCode999", [] { return CloseWithCode(999); }, 1002},
    {"CloseCode1004", [] { return CloseWithCode(1004); }, 1002},
    {"CloseCode1005", [] { return CloseWithCode(1005); }, 1002},
    {"CloseCode1006", [] { return CloseWithCode(1006); }, 1002},
    {"CloseCode1015", [] { return CloseWithCode(1015); }, 1002},
    {"CloseCode1016", [] { return CloseWithCode(1016); }, 1002},
    {"CloseCode2999", [] { return CloseWithCode(2999); }, 1002},
    {"CloseCode5000", [] { return CloseWithCode(5000); }, 1002},
    {"CloseCode65535", [] { return CloseWithCode(65535); }, 1002},
    {"CloseReasonInvalidUtf8", [] { return EncodeFrame(kOpClose, ClosePayload(1000, "bad\xff")); }, 1007},
    {"TextInvalidUtf8", [] { return Fragment(kOpText, "abc\xff", true); }, 1007},
    {"TextOverlongUtf8", [] { return Fragment(kOpText, "\xc0\xaf", true); }, 1007},
    {"TextUtf16Surrogate", [] { return Fragment(kOpText, "\xed\xa0\x80", true); }, 1007},
    {"TextAboveU10FFFF", [] { return Fragment(kOpText, "\xf4\x90\x80\x80", true); }, 1007},
    {"TextTruncatedAtMessageEnd", [] { return Fragment(kOpText, "euro \xe2\x82", true); }, 1007},
    {"TextInvalidAcrossFragments",
     [] { return Fragment(kOpText, "caf\xc3", false) + Fragment(kOpContinuation, "\x28", true); }, 1007},
    {"TextInvalidInLaterFragment",
     [] {
       return Fragment(kOpText, "hello ", false) + Fragment(kOpContinuation, "wor", false) +
              Fragment(kOpContinuation, "ld\xff", true);
     },
     1007},
    {"TextTruncatedAcrossFragments",
     [] { return Fragment(kOpText, "x\xf0\x9f", false) + Fragment(kOpContinuation, "\x98", true); }, 1007},
    // Only the header of a 10 MB frame: the close must come without the payload.
    {"HeaderAnnouncingTenMegabytes",
     [] {
       return Spec([](FrameSpec &s) {
         s.payload.clear();
         s.declared_length = 10 * 1024 * 1024;
       });
     },
     1009},
    {"BinaryOneByteOverLimit", [] { return Fragment(kOpBinary, std::string(65537, '\0'), true); }, 1009},
    {"TextOneByteOverLimit", [] { return Fragment(kOpText, std::string(65537, 'a'), true); }, 1009},
    {"FragmentsSummingOverLimit",
     [] {
       return Fragment(kOpBinary, std::string(40000, 'a'), false) + Spec([](FrameSpec &s) {
                s.opcode = kOpContinuation;
                s.payload.clear();
                s.declared_length = 40000;
              });
     },
     1009},
};

class FrameRuleTest : public ::testing::TestWithParam<std::tuple<Mode, BadFrames>>, public DaemonHarness {
 protected:
  void TearDown() override { StopDaemonAndExpectCleanExit(); }
};

TEST_P(FrameRuleTest, ViolationIsClosedWithCodeThenTcpClosed) {
  const bool tls = std::get<0>(GetParam()) == Mode::kTls;
  const BadFrames &bad = std::get<1>(GetParam());
  DaemonOptions o = {{"max-message-size", "65536"}};
  ASSERT_TRUE(StartDaemon(tls ? WithTls(o, SharedCert()) : o));
  WsClient c;
  ASSERT_UPGRADED(c);
  c.SendRaw(bad.bytes());  // the server may close before reading everything
  EXPECT_TRUE(ReadCloseThenEof(c, bad.close_code));
}

INSTANTIATE_TEST_SUITE_P(All, FrameRuleTest,
                         ::testing::Combine(::testing::Values(Mode::kPlain, Mode::kTls),
                                            ::testing::ValuesIn(kBadFrames)),
                         [](const ::testing::TestParamInfo<std::tuple<Mode, BadFrames>> &info) {
                           return std::string(std::get<0>(info.param) == Mode::kPlain ? "Plain" : "Tls") + "_" +
                                  std::get<1>(info.param).name;
                         });

TEST_P(TransportTest, ProtocolErrorAfterWelcomeAlsoCloses1002) {
  ASSERT_TRUE(Start());
  WsClient c;
  ASSERT_UPGRADED(c);
  ASSERT_TRUE(HelloGetsWelcome(c));
  FrameSpec s;
  s.masked = false;
  s.payload = EncodeHello("again");
  c.SendFrame(s);
  EXPECT_TRUE(ReadCloseThenEof(c, 1002));
}

// ---- control frames and close handshake ----------------------------------------------

TEST_P(TransportTest, PingIsAnsweredWithPongCarryingSamePayload) {
  ASSERT_TRUE(Start());
  WsClient c;
  ASSERT_UPGRADED(c);
  for (const std::string &payload : {std::string(), std::string("hello"), std::string(125, '\x7f'),
                                     std::string("\x00\xff\x10", 3)}) {
    ASSERT_TRUE(c.SendFrame(kOpPing, payload));
    EXPECT_TRUE(ReadFrameExpect(c, kOpPong, payload)) << "ping of " << payload.size() << " bytes";
  }
  EXPECT_TRUE(HelloGetsWelcome(c));
}

TEST_P(TransportTest, UnsolicitedPongIsIgnored) {
  ASSERT_TRUE(Start());
  WsClient c;
  ASSERT_UPGRADED(c);
  ASSERT_TRUE(c.SendFrame(kOpPong, "unsolicited"));
  ASSERT_TRUE(c.SendFrame(kOpPong, ""));
  EXPECT_TRUE(HelloGetsWelcome(c)) << "the next frame after two pongs must be the Welcome";
}

TEST_P(TransportTest, CloseIsEchoedWithSameCodeThenTcpClosed) {
  ASSERT_TRUE(Start());
  for (uint16_t code : {1000, 1001, 1003, 1007, 1011, 3000, 4999}) {
    SCOPED_TRACE("code " + std::to_string(code));
    WsClient c;
    ASSERT_UPGRADED(c);
    ASSERT_TRUE(HelloGetsWelcome(c));
    ASSERT_TRUE(c.SendClose(code, "bye"));
    EXPECT_TRUE(ReadCloseThenEof(c, code));
  }
}

TEST_P(TransportTest, CloseBeforeHelloIsEchoed) {
  ASSERT_TRUE(Start());
  WsClient c;
  ASSERT_UPGRADED(c);
  ASSERT_TRUE(c.SendClose(1000));
  EXPECT_TRUE(ReadCloseThenEof(c, 1000));
}

TEST_P(TransportTest, EmptyCloseIsAnsweredThenTcpClosed) {
  ASSERT_TRUE(Start());
  WsClient c;
  ASSERT_UPGRADED(c);
  ASSERT_TRUE(c.SendFrame(kOpClose, ""));
  Frame f;
  ASSERT_EQ(c.ReadFrame(&f), ReadResult::kOk) << c.last_error();
  EXPECT_TRUE(f.is_close()) << f.Describe();
  EXPECT_TRUE(f.payload.empty() || f.close_code() == 1000) << f.Describe();
  EXPECT_EQ(c.WaitForEof(), ReadResult::kEof);
}

TEST_P(TransportTest, MessagesAfterCloseAreNotAnswered) {
  ASSERT_TRUE(Start());
  WsClient c;
  ASSERT_UPGRADED(c);
  ASSERT_TRUE(c.SendRaw(EncodeFrame(kOpClose, ClosePayload(1000)) + EncodeFrame(kOpBinary, EncodeHello("late"))));
  EXPECT_TRUE(ReadCloseThenEof(c, 1000)) << "no Welcome may follow the close reply";
}

// ---- messages -------------------------------------------------------------------

TEST_P(TransportTest, SecondHelloIsAnsweredWithAlreadyHello) {
  ASSERT_TRUE(Start());
  WsClient c;
  ASSERT_UPGRADED(c);
  ASSERT_TRUE(HelloGetsWelcome(c));
  ASSERT_TRUE(c.SendHello("again"));
  EXPECT_TRUE(ReadError(c, NEBULA__SYNC__V1__ERROR_CODE__ERROR_CODE_ALREADY_HELLO));
  EXPECT_TRUE(NothingArrivesFor(c, 200)) << "the session stays open";
}

TEST_P(TransportTest, UndecodableBinaryIsInvalidMessageAndSessionStaysOpen) {
  ASSERT_TRUE(Start());
  WsClient c;
  ASSERT_UPGRADED(c);
  for (const std::string &junk : {std::string("\xff\xff\xff", 3), std::string("\x0a\x10" "ab", 4),
                                  std::string("\x0a\x02\x0a\x7f", 4)}) {
    ASSERT_TRUE(c.SendFrame(kOpBinary, junk));
    EXPECT_TRUE(ReadError(c, NEBULA__SYNC__V1__ERROR_CODE__ERROR_CODE_INVALID_MESSAGE));
  }
  EXPECT_TRUE(HelloGetsWelcome(c)) << "a Hello after invalid messages still works";
}

TEST_P(TransportTest, ClientMessageWithNoFieldIsUnsupported) {
  ASSERT_TRUE(Start());
  WsClient c;
  ASSERT_UPGRADED(c);
  ASSERT_TRUE(c.SendFrame(kOpBinary, EncodeEmptyClientMessage()));
  EXPECT_TRUE(ReadError(c, NEBULA__SYNC__V1__ERROR_CODE__ERROR_CODE_UNSUPPORTED)) << "empty ClientMessage";
  // Only an unknown field (field 9, varint 1): decodes, but no oneof case.
  ASSERT_TRUE(c.SendFrame(kOpBinary, std::string("\x48\x01", 2)));
  EXPECT_TRUE(ReadError(c, NEBULA__SYNC__V1__ERROR_CODE__ERROR_CODE_UNSUPPORTED)) << "unknown field only";
  EXPECT_TRUE(HelloGetsWelcome(c));
}

TEST_P(TransportTest, TextMessageIsUnsupportedAndSessionStaysOpen) {
  ASSERT_TRUE(Start());
  WsClient c;
  ASSERT_UPGRADED(c);
  ASSERT_TRUE(c.SendFrame(kOpText, "hello \xe2\x82\xac"));
  EXPECT_TRUE(ReadError(c, NEBULA__SYNC__V1__ERROR_CODE__ERROR_CODE_UNSUPPORTED));
  ASSERT_TRUE(c.SendFrame(kOpText, ""));
  EXPECT_TRUE(ReadError(c, NEBULA__SYNC__V1__ERROR_CODE__ERROR_CODE_UNSUPPORTED)) << "empty text message";
  EXPECT_TRUE(HelloGetsWelcome(c));
}

TEST_P(TransportTest, FragmentedTextWithCharacterSplitAcrossFramesIsUnsupported) {
  ASSERT_TRUE(Start());
  WsClient c;
  ASSERT_UPGRADED(c);
  // U+1F600 (F0 9F 98 80) split over three fragments, a ping in between.
  ASSERT_TRUE(c.SendRaw(Fragment(kOpText, "smile \xf0", false) + Fragment(kOpContinuation, "\x9f\x98", false) +
                        EncodeFrame(kOpPing, "mid") + Fragment(kOpContinuation, "\x80!", true)));
  EXPECT_TRUE(ReadFrameExpect(c, kOpPong, "mid"));
  EXPECT_TRUE(ReadError(c, NEBULA__SYNC__V1__ERROR_CODE__ERROR_CODE_UNSUPPORTED));
  EXPECT_TRUE(HelloGetsWelcome(c));
}

TEST_P(TransportTest, FragmentedHelloWithInterleavedPingIsReassembled) {
  ASSERT_TRUE(Start());
  WsClient c;
  ASSERT_UPGRADED(c);
  std::string hello = EncodeHello("fragmented-client-with-a-longer-id");
  size_t third = hello.size() / 3;
  ASSERT_TRUE(c.SendFrame(kOpBinary, hello.substr(0, third), false));
  ASSERT_TRUE(c.SendFrame(kOpContinuation, hello.substr(third, third), false));
  ASSERT_TRUE(c.SendFrame(kOpPing, "between"));
  EXPECT_TRUE(ReadFrameExpect(c, kOpPong, "between")) << "pong comes before the message is complete";
  ASSERT_TRUE(c.SendFrame(kOpContinuation, hello.substr(2 * third), true));
  EXPECT_TRUE(ReadWelcome(c));
}

TEST_P(TransportTest, FragmentedMessageWithEmptyFragmentsAndPongIsReassembled) {
  ASSERT_TRUE(Start());
  WsClient c;
  ASSERT_UPGRADED(c);
  std::string hello = EncodeHello("x");
  ASSERT_TRUE(c.SendRaw(Fragment(kOpBinary, "", false) + Fragment(kOpContinuation, hello.substr(0, 2), false) +
                        EncodeFrame(kOpPong, "ignored") + Fragment(kOpContinuation, "", false) +
                        Fragment(kOpContinuation, hello.substr(2), true)));
  EXPECT_TRUE(ReadWelcome(c));
}

TEST_P(TransportTest, HelloTrickledByteByByteIsAnswered) {
  ASSERT_TRUE(Start());
  WsClient c;
  ASSERT_UPGRADED(c);
  std::string frame = EncodeFrame(kOpBinary, EncodeHello("trickle"));
  for (char b : frame) {
    ASSERT_TRUE(c.SendRaw(std::string(1, b)));
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  EXPECT_TRUE(ReadWelcome(c));
}

TEST_P(TransportTest, ManyFramesInOneWriteAreAllAnswered) {
  ASSERT_TRUE(Start());
  WsClient c;
  ASSERT_UPGRADED(c);
  std::string batch;
  for (int i = 0; i < 50; i++) batch += EncodeFrame(kOpPing, "p" + std::to_string(i));
  batch += EncodeFrame(kOpBinary, EncodeHello("batch"));
  ASSERT_TRUE(c.SendRaw(batch));
  for (int i = 0; i < 50; i++) ASSERT_TRUE(ReadFrameExpect(c, kOpPong, "p" + std::to_string(i)));
  EXPECT_TRUE(ReadWelcome(c));
}

TEST_P(TransportTest, HelloWith16And64BitLengthsIsAnswered) {
  ASSERT_TRUE(Start());
  // Padded through the token, which anonymous mode (the default) ignores.
  for (size_t token_len : {300u, 70000u}) {
    SCOPED_TRACE("auth_token of " + std::to_string(token_len) + " bytes");
    WsClient c;
    ASSERT_UPGRADED(c);
    ASSERT_TRUE(c.SendFrame(kOpBinary, EncodeHello("big", std::string(token_len, 't'))));
    EXPECT_TRUE(ReadWelcome(c));
  }
}

TEST_P(TransportTest, MessageOfExactlyMaxMessageSizeIsAccepted) {
  ASSERT_TRUE(Start({{"max-message-size", "65536"}}));
  // A Hello whose encoding is exactly 65536 bytes, in two fragments.
  size_t n = 65536 - 8;
  while (EncodeHello("c", std::string(n, 'a')).size() > 65536) n--;
  while (EncodeHello("c", std::string(n, 'a')).size() < 65536) n++;
  std::string hello = EncodeHello("c", std::string(n, 'a'));
  ASSERT_EQ(hello.size(), 65536u);
  WsClient c;
  ASSERT_UPGRADED(c);
  ASSERT_TRUE(c.SendRaw(Fragment(kOpBinary, hello.substr(0, 30000), false) +
                        Fragment(kOpContinuation, hello.substr(30000), true)));
  EXPECT_TRUE(ReadWelcome(c));
}

// ---- idle and handshake timeouts ---------------------------------------------------------

TEST_P(TransportTest, IdleClientIsPingedAndAnsweringPongKeepsItOpen) {
  ASSERT_TRUE(Start({{"idle-timeout", "1"}}));
  WsClient c;
  ASSERT_UPGRADED(c);
  ASSERT_TRUE(HelloGetsWelcome(c));
  int64_t silent_since = NowMs();
  int pings = 0;
  // For 2.5 s (past the 2 s after which a silent client is closed) answer
  // every ping with a pong.
  while (NowMs() - silent_since < 2500) {
    Frame f;
    ReadResult r = c.ReadFrame(&f, 500);
    if (r == ReadResult::kTimeout) continue;
    ASSERT_EQ(r, ReadResult::kOk) << c.last_error();
    ASSERT_EQ(f.opcode, kOpPing) << "expected only pings, got " << f.Describe();
    if (pings == 0) {
      EXPECT_GE(NowMs() - silent_since, 500) << "pinged long before the 1 s idle timeout";
    }
    pings++;
    ASSERT_TRUE(c.SendFrame(kOpPong, f.payload));
  }
  EXPECT_GE(pings, 1) << "no ping after 2.5 s of silence with --idle-timeout 1";
  ASSERT_TRUE(c.SendFrame(kOpPing, "still-here"));
  Frame f;
  ReadResult r;
  // Skip server pings racing with the answer.
  while ((r = c.ReadFrame(&f)) == ReadResult::kOk && f.opcode == kOpPing) {
  }
  ASSERT_EQ(r, ReadResult::kOk) << "connection closed although every ping was answered";
  EXPECT_EQ(f.opcode, kOpPong) << f.Describe();
  EXPECT_EQ(f.payload, "still-here");
}

TEST_P(TransportTest, SilentClientIsPingedThenClosedWith1001) {
  ASSERT_TRUE(Start({{"idle-timeout", "1"}}));
  WsClient c;
  ASSERT_UPGRADED(c);
  ASSERT_TRUE(HelloGetsWelcome(c));
  int64_t start = NowMs();
  Frame f;
  ASSERT_EQ(c.ReadFrame(&f), ReadResult::kOk) << "no ping within 10 s of silence: " << c.last_error();
  EXPECT_EQ(f.opcode, kOpPing) << f.Describe();
  EXPECT_TRUE(ReadCloseThenEof(c, 1001)) << "the ping was never answered";
  EXPECT_GE(NowMs() - start, 1000) << "closed before two idle periods";
}

TEST_P(TransportTest, ClientThatKeepsSendingIsNeverPinged) {
  ASSERT_TRUE(Start({{"idle-timeout", "1"}}));
  WsClient c;
  ASSERT_UPGRADED(c);
  ASSERT_TRUE(HelloGetsWelcome(c));
  int64_t start = NowMs();
  int i = 0;
  // 2.5 idle periods of traffic every 100 ms: only pongs may come back.
  while (NowMs() - start < 2500) {
    std::string p = "keepalive" + std::to_string(i++);
    ASSERT_TRUE(c.SendFrame(kOpPing, p));
    ASSERT_TRUE(ReadFrameExpect(c, kOpPong, p)) << "a busy client got something else than its pong";
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

TEST_P(TransportTest, IdleTimeoutAlsoAppliesBeforeHello) {
  ASSERT_TRUE(Start({{"idle-timeout", "1"}}));
  WsClient c;
  ASSERT_UPGRADED(c);
  Frame f;
  ASSERT_EQ(c.ReadFrame(&f), ReadResult::kOk) << c.last_error();
  EXPECT_EQ(f.opcode, kOpPing) << f.Describe();
  EXPECT_TRUE(ReadCloseThenEof(c, 1001));
}

TEST_P(TransportTest, HalfSentUpgradeRequestIsClosedAfterHandshakeTimeout) {
  ASSERT_TRUE(Start({{"handshake-timeout", "1"}}));
  WsClient c;
  ASSERT_TRUE(c.Connect(Client())) << c.last_error();
  std::string req = UpgradeRequest::Standard(HostPort(Client())).Serialize();
  ASSERT_TRUE(c.SendRaw(req.substr(0, req.size() / 2)));
  std::string got;
  EXPECT_EQ(c.WaitForEof(kTimeoutMs, &got), ReadResult::kEof) << "slowloris client still connected";
  EXPECT_EQ(got.find("101"), std::string::npos) << got;
  EXPECT_TRUE(WaitForMetric("nebula_handshake_failures_total", {{"reason", "timeout"}},
                            [](double v) { return v >= 1; }, ">= 1"));
}

TEST_P(TransportTest, SilentTcpConnectionIsClosedAfterHandshakeTimeout) {
  ASSERT_TRUE(Start({{"handshake-timeout", "1"}}));
  WsClient c;
  ConnectOptions raw = Client();
  raw.tls = false;  // not even a TLS ClientHello
  ASSERT_TRUE(c.Connect(raw)) << c.last_error();
  EXPECT_EQ(c.WaitForEof(), ReadResult::kEof) << "silent connection still open";
  EXPECT_TRUE(WaitForMetric("nebula_handshake_failures_total", {}, [](double v) { return v >= 1; }, ">= 1"));
}

TEST_P(TransportTest, CompletedHandshakeIsNotSubjectToHandshakeTimeout) {
  ASSERT_TRUE(Start({{"handshake-timeout", "1"}}));
  WsClient c;
  ASSERT_UPGRADED(c);
  EXPECT_TRUE(NothingArrivesFor(c, 2000));
  EXPECT_TRUE(HelloGetsWelcome(c));
}

// ---- connection limits and workers ----------------------------------------------------

TEST_P(TransportTest, ConnectionBeyondMaxConnectionsIsRejectedAndCounted) {
  ASSERT_TRUE(Start({{"max-connections", "3"}}));
  std::vector<std::unique_ptr<WsClient>> sessions;
  for (int i = 0; i < 3; i++) {
    sessions.push_back(std::make_unique<WsClient>());
    ASSERT_TRUE(sessions.back()->OpenSession(Client())) << "session " << i << ": " << sessions.back()->last_error();
  }
  {
    WsClient extra;
    if (extra.Connect(Client())) {
      extra.SendRaw(UpgradeRequest::Standard(HostPort(Client())).Serialize());
      HttpResponse resp = extra.ReadHttpResponse();
      if (resp.ok()) {
        EXPECT_EQ(resp.status_line.substr(0, 12), "HTTP/1.1 503") << resp.raw;
      } else {
        EXPECT_EQ(resp.result, ReadResult::kEof) << "4th connection neither rejected nor closed: "
                                                 << extra.last_error() << " " << resp.raw;
      }
    }  // A TLS connection may also be refused during its handshake.
  }
  EXPECT_TRUE(WaitForMetric("nebula_connections_rejected_total", {}, [](double v) { return v >= 1; }, ">= 1"));
  // The three sessions still work; once one leaves, a new one fits.
  for (auto &s : sessions) {
    ASSERT_TRUE(s->SendFrame(kOpPing, "ok"));
    EXPECT_TRUE(ReadFrameExpect(*s, kOpPong, "ok"));
  }
  sessions.back()->SendClose(1000);
  EXPECT_TRUE(ReadCloseThenEof(*sessions.back(), 1000));
  sessions.pop_back();
  bool admitted = false;
  for (int attempt = 0; attempt < 100 && !admitted; attempt++) {
    WsClient again;
    admitted = again.OpenSession(Client());
    if (!admitted) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(admitted) << "no new session after one of the three closed";
}

TEST_F(PlainTest, TwoThousandConcurrentSessionsAreSpreadOverFourWorkers) {
  ASSERT_TRUE(StartDaemon({{"workers", "4"}}));
  constexpr int kSessions = 2000;
  std::vector<std::unique_ptr<WsClient>> clients;
  clients.reserve(kSessions);
  for (int i = 0; i < kSessions; i++) {
    ConnectOptions o = Client();
    o.source_ip = "127.0." + std::to_string(1 + i / 200) + "." + std::to_string(1 + i % 200);
    clients.push_back(std::make_unique<WsClient>());
    ASSERT_TRUE(clients.back()->OpenSession(o, nullptr, "client-" + std::to_string(i)))
        << "session " << i << " from " << o.source_ip << ": " << clients.back()->last_error();
  }
  EXPECT_TRUE(WaitForMetric("nebula_connections_open", {}, [](double v) { return v == kSessions; }, "== 2000"));
  std::string text;
  std::vector<MetricSample> samples = Metrics(&text);
  for (int w = 0; w < 4; w++) {
    EXPECT_GT(SumMetric(samples, "nebula_connections_accepted_total", {{"worker", std::to_string(w)}}), 0)
        << "worker " << w << " got no connection:\n"
        << text;
  }
  // All sessions are still alive.
  for (int i = 0; i < kSessions; i += 97) {
    ASSERT_TRUE(clients[i]->SendFrame(kOpPing, "alive"));
    EXPECT_TRUE(ReadFrameExpect(*clients[i], kOpPong, "alive")) << "session " << i;
  }
  clients.clear();
  EXPECT_TRUE(WaitForMetric("nebula_connections_open", {}, [](double v) { return v == 0; }, "== 0 after closing"));
}

// ---- admin endpoints ------------------------------------------------------------------

TEST_F(PlainTest, HealthzAndReadyzAnswerOk) {
  ASSERT_TRUE(StartDaemon());
  HttpGetResult h = Admin("/healthz");
  EXPECT_EQ(h.status, 200) << h.error;
  EXPECT_EQ(h.body, "ok\n");
  HttpGetResult r = Admin("/readyz");
  EXPECT_EQ(r.status, 200) << r.error;
  EXPECT_EQ(r.body, "ready\n");
}

TEST_F(PlainTest, UnknownAdminPathIs404) {
  ASSERT_TRUE(StartDaemon());
  for (const char *path : {"/", "/nope", "/metricsx", "/v1/sync"}) {
    HttpGetResult r = Admin(path);
    EXPECT_EQ(r.status, 404) << path << " " << r.error;
  }
}

TEST_F(PlainTest, MetricsListEverySeriesForEveryWorker) {
  ASSERT_TRUE(StartDaemon({{"workers", "3"}}));
  HttpGetResult r = Admin("/metrics");
  ASSERT_EQ(r.status, 200) << r.error;
  std::vector<MetricSample> samples = ParseMetrics(r.body);
  for (const char *name :
       {"nebula_connections_open", "nebula_connections_accepted_total", "nebula_connections_rejected_total",
        "nebula_bytes_in_total", "nebula_bytes_out_total", "nebula_frames_in_total", "nebula_frames_out_total",
        "nebula_tls_handshakes_total"}) {
    for (int w = 0; w < 3; w++) {
      EXPECT_EQ(CountMetric(samples, name, {{"worker", std::to_string(w)}}), 1u)
          << name << "{worker=\"" << w << "\"}\n"
          << r.body;
    }
    EXPECT_EQ(CountMetric(samples, name, {{"worker", "3"}}), 0u) << name << " for a 4th worker";
  }
  // Handshake failures are labelled by reason; every reason may appear.
  std::set<std::string> reasons = {"bad_request", "not_found", "version", "origin", "too_large", "timeout", "tls"};
  for (const auto &s : samples) {
    if (s.name != "nebula_handshake_failures_total") continue;
    EXPECT_EQ(s.labels.count("worker"), 1u) << "nebula_handshake_failures_total without worker label";
    EXPECT_EQ(reasons.count(s.labels.count("reason") ? s.labels.at("reason") : ""), 1u)
        << "unexpected reason label in\n"
        << r.body;
  }
}

TEST_P(TransportTest, MetricsCountConnectionsBytesAndFrames) {
  ASSERT_TRUE(Start());
  auto before = Metrics();
  {
    WsClient c;
    ASSERT_TRUE(c.OpenSession(Client())) << c.last_error();
    EXPECT_TRUE(WaitForMetric("nebula_connections_open", {}, [](double v) { return v == 1; }, "== 1"));
    EXPECT_TRUE(WaitForMetric("nebula_connections_accepted_total", {}, [](double v) { return v >= 1; }, ">= 1"));
    EXPECT_TRUE(WaitForMetric("nebula_frames_in_total", {}, [](double v) { return v >= 1; }, ">= 1 (the Hello)"));
    EXPECT_TRUE(WaitForMetric("nebula_frames_out_total", {}, [](double v) { return v >= 1; }, ">= 1 (the Welcome)"));
    // At least the upgrade request and the Hello frame came in.
    EXPECT_TRUE(WaitForMetric("nebula_bytes_in_total", {}, [](double v) { return v >= 100; }, ">= 100"));
    EXPECT_TRUE(WaitForMetric("nebula_bytes_out_total", {}, [](double v) { return v >= 100; }, ">= 100"));
    if (tls()) {
      EXPECT_TRUE(WaitForMetric("nebula_tls_handshakes_total", {}, [](double v) { return v >= 1; }, ">= 1"));
    }
  }
  EXPECT_TRUE(WaitForMetric("nebula_connections_open", {}, [](double v) { return v == 0; }, "== 0 after close"));
  EXPECT_EQ(SumMetric(before, "nebula_connections_open"), 0);
}

// ---- TLS ------------------------------------------------------------------------------

TEST_F(TlsTest, ServerPresentsTheConfiguredCertificate) {
  ASSERT_TRUE(Start());
  WsClient c;
  ASSERT_TRUE(c.ConnectAndUpgrade(TlsClient())) << c.last_error();
  EXPECT_EQ(PeerCertFingerprint(c.ssl()), SharedCert().fingerprint);
  EXPECT_EQ(CertFileFingerprint(SharedCert().cert_path), SharedCert().fingerprint);
}

TEST_F(TlsTest, Tls12AndTls13ClientsAreAccepted) {
  ASSERT_TRUE(Start());
  for (int version : {TLS1_2_VERSION, TLS1_3_VERSION}) {
    WsClient c;
    ASSERT_TRUE(c.Connect(TlsClient(version, version))) << c.last_error();
    EXPECT_EQ(SSL_version(c.ssl()), version);
    ASSERT_TRUE(c.Upgrade(UpgradeRequest::Standard(HostPort(Client())))) << c.last_error();
    EXPECT_TRUE(HelloGetsWelcome(c));
  }
}

TEST_F(TlsTest, Tls11OnlyClientIsRefused) {
  ASSERT_TRUE(Start());
  ConnectOptions o = TlsClient(TLS1_1_VERSION, TLS1_1_VERSION);
  // Let our client offer TLS 1.1 at all (OpenSSL 3 disables it by default),
  // so that the refusal comes from the server.
  o.tls_options.security_level = 0;
  o.tls_options.cipher_list = "DEFAULT:@SECLEVEL=0";
  WsClient c;
  bool connected = c.Connect(o);
  EXPECT_FALSE(connected) << "TLS 1.1 handshake succeeded with " << (c.ssl() ? SSL_get_version(c.ssl()) : "?");
  EXPECT_EQ(c.last_error().find("no protocols available"), std::string::npos)
      << "the client could not offer TLS 1.1: " << c.last_error();
  EXPECT_TRUE(WaitForMetric("nebula_handshake_failures_total", {{"reason", "tls"}}, [](double v) { return v >= 1; },
                            ">= 1"));
}

TEST_F(TlsTest, AlpnSelectsHttp11) {
  ASSERT_TRUE(Start());
  ConnectOptions o = TlsClient();
  o.tls_options.alpn = {"h2", "http/1.1"};
  WsClient c;
  ASSERT_TRUE(c.Connect(o)) << c.last_error();
  const unsigned char *proto = nullptr;
  unsigned len = 0;
  SSL_get0_alpn_selected(c.ssl(), &proto, &len);
  EXPECT_EQ(std::string(reinterpret_cast<const char *>(proto ? proto : reinterpret_cast<const unsigned char *>("")), len),
            "http/1.1");
  ASSERT_TRUE(c.Upgrade(UpgradeRequest::Standard(HostPort(Client())))) << c.last_error();
  EXPECT_TRUE(HelloGetsWelcome(c));
}

TEST_F(TlsTest, SessionsAreResumedOnTls12AndTls13) {
  ASSERT_TRUE(Start());
  for (int version : {TLS1_2_VERSION, TLS1_3_VERSION}) {
    SCOPED_TRACE(version == TLS1_2_VERSION ? "TLS 1.2" : "TLS 1.3");
    SSL_SESSION *session = nullptr;
    {
      WsClient first;
      ASSERT_TRUE(first.OpenSession(TlsClient(version, version))) << first.last_error();  // reads the tickets
      session = first.GetSession();
    }
    ASSERT_NE(session, nullptr);
    EXPECT_TRUE(SSL_SESSION_is_resumable(session)) << "server issued no resumable session/ticket";
    ConnectOptions o = TlsClient(version, version);
    o.tls_options.resume_session = session;
    WsClient second;
    bool ok = second.ConnectAndUpgrade(o);
    EXPECT_TRUE(ok) << second.last_error();
    if (ok) {
      EXPECT_TRUE(SSL_session_reused(second.ssl())) << "full handshake instead of resumption";
      EXPECT_TRUE(HelloGetsWelcome(second));
    }
    SSL_SESSION_free(session);
  }
}

TEST_F(TlsTest, RsaCertificateWorks) {
  TempDir dir("nebula-rsa");
  TestCert rsa;
  std::string err;
  ASSERT_TRUE(GenerateSelfSignedCert(dir.path(), "rsa", KeyType::kRsa2048, &rsa, &err)) << err;
  ASSERT_TRUE(StartDaemon(WithTls({}, rsa)));
  WsClient c;
  ASSERT_TRUE(c.OpenSession(TlsClient())) << c.last_error();
  EXPECT_EQ(PeerCertFingerprint(c.ssl()), rsa.fingerprint);
}

TEST_F(TlsTest, PlainHttpOnTlsListenerIsNotUpgraded) {
  ASSERT_TRUE(Start());
  ConnectOptions o = Client();
  o.tls = false;
  WsClient c;
  ASSERT_TRUE(c.Connect(o)) << c.last_error();
  c.SendRaw(UpgradeRequest::Standard(HostPort(o)).Serialize());
  std::string got;
  EXPECT_EQ(c.WaitForEof(kTimeoutMs, &got), ReadResult::kEof) << "plain-text client not disconnected";
  EXPECT_EQ(got.find("HTTP/1.1 101"), std::string::npos) << "the TLS listener spoke plain HTTP";
  EXPECT_TRUE(WaitForMetric("nebula_handshake_failures_total", {{"reason", "tls"}}, [](double v) { return v >= 1; },
                            ">= 1"));
}

TEST_F(TlsTest, SighupReloadsCertificateKeepingOpenConnections) {
  TempDir dir("nebula-reload");
  TestCert a, b;
  std::string err;
  ASSERT_TRUE(GenerateSelfSignedCert(dir.path(), "a", KeyType::kEcdsaP256, &a, &err)) << err;
  ASSERT_TRUE(GenerateSelfSignedCert(dir.path(), "b", KeyType::kEcdsaP256, &b, &err)) << err;
  ASSERT_NE(a.fingerprint, b.fingerprint);
  TestCert live{dir.File("live.crt"), dir.File("live.key"), a.fingerprint};
  ASSERT_EQ(rename(a.cert_path.c_str(), live.cert_path.c_str()), 0);
  ASSERT_EQ(rename(a.key_path.c_str(), live.key_path.c_str()), 0);
  ASSERT_TRUE(StartDaemon(WithTls({}, live)));

  WsClient before;
  ASSERT_TRUE(before.ConnectAndUpgrade(TlsClient())) << before.last_error();
  EXPECT_EQ(PeerCertFingerprint(before.ssl()), a.fingerprint);

  ASSERT_EQ(rename(b.cert_path.c_str(), live.cert_path.c_str()), 0);
  ASSERT_EQ(rename(b.key_path.c_str(), live.key_path.c_str()), 0);
  size_t log_mark = daemon().Stderr().size();
  ASSERT_TRUE(daemon().Signal(SIGHUP));
  EXPECT_TRUE(daemon().WaitForStderr("reloaded", kTimeoutMs, log_mark))
      << "no 'reloaded' log line after SIGHUP:\n"
      << Tail(daemon().Stderr());

  EXPECT_TRUE(HelloGetsWelcome(before)) << "connection opened before the reload";
  WsClient after;
  ASSERT_TRUE(after.ConnectAndUpgrade(TlsClient())) << after.last_error();
  EXPECT_EQ(PeerCertFingerprint(after.ssl()), b.fingerprint) << "new connections must see the new certificate";
  EXPECT_TRUE(HelloGetsWelcome(after));
}

// ---- graceful shutdown -------------------------------------------------------------------

// Opens n sessions, sends sig, checks every session gets CLOSE 1001, that
// /readyz says 503 and the listener is closed while draining, answers the
// closes, and expects exit status 0.
void DrainWithSessions(DaemonHarness &h, int sig, int n) {
  std::vector<std::unique_ptr<WsClient>> sessions;
  for (int i = 0; i < n; i++) {
    sessions.push_back(std::make_unique<WsClient>());
    ASSERT_TRUE(sessions.back()->OpenSession(h.Client())) << sessions.back()->last_error();
  }
  ASSERT_TRUE(h.daemon().Signal(sig));
  std::vector<Frame> closes(sessions.size());
  for (size_t i = 0; i < sessions.size(); i++) {
    ASSERT_EQ(sessions[i]->ReadFrame(&closes[i]), ReadResult::kOk)
        << "session " << i << " got no close frame: " << sessions[i]->last_error();
    EXPECT_TRUE(closes[i].is_close()) << closes[i].Describe();
    EXPECT_EQ(closes[i].close_code(), 1001) << closes[i].Describe();
  }
  // Still draining (nobody answered yet).
  HttpGetResult ready = HttpGet(h.daemon().admin_port(), "/readyz");
  EXPECT_EQ(ready.status, 503) << "readyz while draining: " << ready.error << " " << ready.body;
  {
    WsClient late;
    EXPECT_FALSE(late.ConnectAndUpgrade(h.Client())) << "the listener still accepts sessions while draining";
  }
  for (auto &s : sessions) {
    s->SendClose(1001);
    EXPECT_EQ(s->WaitForEof(), ReadResult::kEof) << "server kept TCP open after the close handshake";
  }
  ExitStatus st = h.daemon().WaitExit(h.drain_timeout_ms() + kTimeoutMs);
  EXPECT_TRUE(st.clean()) << st.Describe() << "\n" << Tail(h.daemon().Stderr());
  EXPECT_FALSE(HasSanitizerReport(h.daemon().Stderr())) << Tail(h.daemon().Stderr(), 80);
}

TEST_P(TransportTest, SigtermSendsGoingAwayToEverySessionAndExitsZero) {
  ASSERT_TRUE(Start({{"drain-timeout", "10"}}));
  DrainWithSessions(*this, SIGTERM, 3);
}

TEST_P(TransportTest, SigintDrainsLikeSigterm) {
  ASSERT_TRUE(Start({{"drain-timeout", "10"}}));
  DrainWithSessions(*this, SIGINT, 1);
}

TEST_P(TransportTest, DrainTimeoutEndsSessionsThatNeverAnswer) {
  ASSERT_TRUE(Start({{"drain-timeout", "1"}}));
  WsClient c;
  ASSERT_TRUE(c.OpenSession(Client())) << c.last_error();
  ASSERT_TRUE(daemon().Signal(SIGTERM));
  Frame f;
  ASSERT_EQ(c.ReadFrame(&f), ReadResult::kOk) << c.last_error();
  EXPECT_EQ(f.close_code(), 1001) << f.Describe();
  // Never answer: the daemon must give up after --drain-timeout and exit 0.
  ExitStatus st = daemon().WaitExit(kTimeoutMs);
  EXPECT_TRUE(st.clean()) << st.Describe() << "\n" << Tail(daemon().Stderr());
  EXPECT_EQ(c.WaitForEof(), ReadResult::kEof);
}

TEST_P(TransportTest, SigtermClosesConnectionsStillInHandshake) {
  ASSERT_TRUE(Start({{"drain-timeout", "10"}}));
  WsClient c;
  ASSERT_TRUE(c.Connect(Client())) << c.last_error();
  ASSERT_TRUE(c.SendRaw("GET /v1/sync HTTP/1.1\r\n"));
  ASSERT_TRUE(daemon().Signal(SIGTERM));
  ExitStatus st = daemon().WaitExit(kTimeoutMs + 10000);
  EXPECT_TRUE(st.clean()) << st.Describe() << "\n" << Tail(daemon().Stderr());
  EXPECT_EQ(c.WaitForEof(), ReadResult::kEof);
}

INSTANTIATE_TEST_SUITE_P(, TransportTest, ::testing::Values(Mode::kPlain, Mode::kTls), ModeName);

}  // namespace
}  // namespace nebula_test
