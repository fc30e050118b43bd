// ws_test_client: a blocking WebSocket client for integration tests.
//
// It sends exactly the bytes a test asks for (raw bytes, frames with any
// opcode/FIN/RSV/mask/length form, upgrade requests with chosen headers) and
// reads HTTP responses and frames with poll-based timeouts, over plain TCP or
// TLS. Frames are encoded and parsed here independently of broker/ws_frame.c,
// so a bug in the codec under test cannot hide itself. Every wait is bounded.
#ifndef NEBULA_TESTS_WS_TEST_CLIENT_H
#define NEBULA_TESTS_WS_TEST_CLIENT_H

#include <openssl/ssl.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "nebula_sync.pb-c.h"

namespace nebula_test {

// Safety timeout for every wait: generous, tests never hang.
inline constexpr int kTimeoutMs = 10000;

inline constexpr const char *kSyncPath = "/v1/sync";
inline constexpr const char *kSubprotocol = "nebula-sync.v1";

enum Opcode : uint8_t {
  kOpContinuation = 0x0,
  kOpText = 0x1,
  kOpBinary = 0x2,
  kOpClose = 0x8,
  kOpPing = 0x9,
  kOpPong = 0xA,
};

// RSV bits as they sit in the first header byte.
inline constexpr uint8_t kRsv1 = 0x40;
inline constexpr uint8_t kRsv2 = 0x20;
inline constexpr uint8_t kRsv3 = 0x10;

// How the payload length is written in a frame header.
enum class LengthForm {
  kMinimal,  // 7-bit, 16-bit or 64-bit as RFC 6455 requires
  k16,       // always the 126 + 16-bit form (non-minimal for < 126)
  k64,       // always the 127 + 64-bit form (non-minimal for < 65536)
};

// Everything about one frame a test wants to send.
struct FrameSpec {
  uint8_t opcode = kOpBinary;
  bool fin = true;
  uint8_t rsv = 0;       // OR of kRsv1/kRsv2/kRsv3
  bool masked = true;    // clients must mask
  std::optional<std::array<uint8_t, 4>> mask_key;  // default: random
  std::string payload;
  LengthForm length_form = LengthForm::kMinimal;
  // When set, the header announces this length whatever the payload size
  // (e.g. only the header of a 10 MB frame, or a 64-bit length with MSB set).
  std::optional<uint64_t> declared_length;
};

// Encodes a frame: header, mask key, masked payload.
std::string EncodeFrame(const FrameSpec &spec);
// A masked client frame with the given opcode and payload.
std::string EncodeFrame(uint8_t opcode, const std::string &payload, bool fin = true);
// CLOSE payload: 2-byte code (big endian) + reason.
std::string ClosePayload(uint16_t code, const std::string &reason = "");

// One frame as the server sent it.
struct Frame {
  bool fin = false;
  uint8_t rsv = 0;       // the raw RSV bits (0x70 mask)
  uint8_t opcode = 0;
  bool masked = false;
  bool minimal_length = true;  // the length used its minimal encoding
  std::string payload;         // unmasked

  bool is_close() const { return opcode == kOpClose; }
  // CLOSE frames: the code, 0 when the payload has none.
  uint16_t close_code() const;
  std::string close_reason() const;
  std::string Describe() const;  // for assertion messages
};

enum class ReadResult {
  kOk,       // got what was asked for
  kEof,      // the peer closed the connection (FIN, RST or TLS close)
  kTimeout,  // nothing complete within the timeout
  kError,    // socket/TLS error or a malformed response (see last_error())
};
const char *ToString(ReadResult r);

struct HttpResponse {
  ReadResult result = ReadResult::kError;
  int status = 0;
  std::string status_line;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
  std::string body;
  std::string raw;  // everything read, for messages

  std::optional<std::string> Header(const std::string &name) const;  // first match
  std::vector<std::string> HeaderValues(const std::string &name) const;
  bool ok() const { return result == ReadResult::kOk; }
};

// An opening-handshake request. Starts as a valid nebula-sync.v1 upgrade;
// tests change, remove or add headers and other parts as they like.
struct UpgradeRequest {
  std::string method = "GET";
  std::string target = kSyncPath;
  std::string version = "HTTP/1.1";
  std::string key;  // the Sec-WebSocket-Key value (also in headers)
  std::vector<std::pair<std::string, std::string>> headers;

  // host_port fills Host; subprotocols: values for Sec-WebSocket-Protocol
  // (one comma-separated header; none when empty).
  static UpgradeRequest Standard(const std::string &host_port,
                                 const std::vector<std::string> &subprotocols = {kSubprotocol});
  void Set(const std::string &name, const std::string &value);  // replace or append
  void Add(const std::string &name, const std::string &value);  // append
  void Remove(const std::string &name);                         // case-insensitive
  std::string Serialize() const;
};

// base64(SHA-1(key + GUID)), computed here independently of the broker.
std::string ExpectedAcceptKey(const std::string &key);
// 16 random bytes, base64.
std::string RandomWebSocketKey();

struct TlsClientOptions {
  int min_version = 0;  // e.g. TLS1_2_VERSION; 0: library default
  int max_version = 0;
  std::vector<std::string> alpn;        // offered protocols, in order
  SSL_SESSION *resume_session = nullptr;  // not owned; offered for resumption
  int security_level = -1;              // e.g. 0 to allow TLS 1.1; -1: default
  std::string cipher_list;              // TLS <= 1.2 ciphers; empty: default
  std::string server_name = "localhost";  // SNI; empty: none
};

struct ConnectOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 0;
  std::string source_ip;  // bind to this address first, e.g. "127.0.3.7"
  bool tls = false;
  TlsClientOptions tls_options;
  int timeout_ms = kTimeoutMs;
};

// protobuf-c message ownership.
struct ServerMessageDeleter {
  void operator()(Nebula__Sync__V1__ServerMessage *m) const;
};
using ServerMessagePtr = std::unique_ptr<Nebula__Sync__V1__ServerMessage, ServerMessageDeleter>;

// ClientMessage{hello{client_id, auth_token}}, packed.
std::string EncodeHello(const std::string &client_id, const std::string &auth_token = "");
// ClientMessage with no field set: zero bytes on the wire.
std::string EncodeEmptyClientMessage();
// nullptr when bytes are not a ServerMessage.
ServerMessagePtr DecodeServerMessage(const std::string &bytes);
const char *ErrorCodeName(int code);
std::string DescribeServerMessage(const Nebula__Sync__V1__ServerMessage *m);

class WsClient {
 public:
  WsClient();
  ~WsClient();
  WsClient(const WsClient &) = delete;
  WsClient &operator=(const WsClient &) = delete;

  // TCP connect (+ TLS handshake when opts.tls). False with last_error().
  bool Connect(const ConnectOptions &opts);
  // Connect, then a standard upgrade offering subprotocols; checks the 101
  // and Sec-WebSocket-Accept. response (optional) receives the 101.
  bool ConnectAndUpgrade(const ConnectOptions &opts,
                         const std::vector<std::string> &subprotocols = {kSubprotocol},
                         HttpResponse *response = nullptr);
  // ConnectAndUpgrade + Hello, then reads the Welcome (optional out).
  bool OpenSession(const ConnectOptions &opts, ServerMessagePtr *welcome = nullptr,
                   const std::string &client_id = "test-client");

  // Sends an upgrade request and reads the response; checks a 101 fully.
  bool Upgrade(const UpgradeRequest &request, HttpResponse *response = nullptr);

  bool SendRaw(const std::string &bytes);
  bool SendFrame(const FrameSpec &spec) { return SendRaw(EncodeFrame(spec)); }
  bool SendFrame(uint8_t opcode, const std::string &payload, bool fin = true) {
    return SendRaw(EncodeFrame(opcode, payload, fin));
  }
  bool SendClose(uint16_t code, const std::string &reason = "") {
    return SendFrame(kOpClose, ClosePayload(code, reason));
  }
  bool SendHello(const std::string &client_id = "test-client") {
    return SendFrame(kOpBinary, EncodeHello(client_id));
  }

  // Reads the HTTP response head; for a status other than 101 also the body
  // (Content-Length, chunked or up to EOF). Bytes after a 101 are kept for
  // ReadFrame.
  HttpResponse ReadHttpResponse(int timeout_ms = kTimeoutMs);
  // Reads the next frame, whatever it is.
  ReadResult ReadFrame(Frame *out, int timeout_ms = kTimeoutMs);
  // Reads the next frame and decodes it as a ServerMessage; nullptr (with
  // last_error() saying what came instead) when it is anything else.
  ServerMessagePtr ReadServerMessage(int timeout_ms = kTimeoutMs);
  // Reads and discards until the peer closes: kEof, or kTimeout/kError.
  // discarded (optional) receives the bytes read.
  ReadResult WaitForEof(int timeout_ms = kTimeoutMs, std::string *discarded = nullptr);

  void Close();  // closes the socket (TLS without close_notify)
  bool connected() const { return fd_ >= 0; }
  int fd() const { return fd_; }
  SSL *ssl() const { return ssl_; }
  bool got_reset() const { return got_reset_; }  // last EOF was an RST
  const std::string &last_error() const { return error_; }
  // The TLS session for later resumption (caller frees), or nullptr.
  SSL_SESSION *GetSession() const;

 private:
  // >0 bytes read, 0 EOF, -1 timeout, -2 error.
  long ReadSome(char *buf, size_t cap, int64_t deadline_ms);
  bool WriteAll(const char *data, size_t len, int64_t deadline_ms);
  // Waits for events on fd_; 1 ready, 0 timeout, -1 error.
  int WaitFd(short events, int64_t deadline_ms);
  // Ensures rbuf_ holds at least n bytes: kOk, kEof, kTimeout, kError.
  ReadResult Fill(size_t n, int64_t deadline_ms);
  bool Fail(const std::string &msg);

  int fd_ = -1;
  SSL_CTX *ctx_ = nullptr;
  SSL *ssl_ = nullptr;
  std::string rbuf_;
  std::string error_;
  std::string host_port_;
  bool got_reset_ = false;
};

int64_t NowMs();  // monotonic milliseconds

}  // namespace nebula_test

#endif
