// ws_test_client: see ws_test_client.h. Non-blocking sockets driven by
// poll() so that every read, write and connect has a deadline.
#include "ws_test_client.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <mutex>

namespace nebula_test {
namespace {

constexpr size_t kMaxResponseHead = 64 * 1024;
constexpr uint64_t kMaxFramePayload = 64ull * 1024 * 1024;

void IgnoreSigpipeOnce() {
  static std::once_flag once;
  std::call_once(once, [] { signal(SIGPIPE, SIG_IGN); });
}

std::string Lower(std::string s) {
  for (auto &c : s) c = static_cast<char>(tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string Trim(const std::string &s) {
  size_t b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(" \t\r");
  return s.substr(b, e - b + 1);
}

std::string Base64(const unsigned char *data, size_t len) {
  std::string out(4 * ((len + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char *>(&out[0]), data,
                          static_cast<int>(len));
  out.resize(n > 0 ? static_cast<size_t>(n) : 0);
  return out;
}

std::string OpensslErrors() {
  std::string out;
  unsigned long e;
  char buf[256];
  while ((e = ERR_get_error()) != 0) {
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out;
}

}  // namespace

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

const char *ToString(ReadResult r) {
  switch (r) {
    case ReadResult::kOk: return "ok";
    case ReadResult::kEof: return "eof";
    case ReadResult::kTimeout: return "timeout";
    case ReadResult::kError: return "error";
  }
  return "?";
}

// ---- frames -----------------------------------------------------------------

std::string EncodeFrame(const FrameSpec &spec) {
  std::string out;
  out.push_back(static_cast<char>((spec.fin ? 0x80 : 0) | (spec.rsv & 0x70) | (spec.opcode & 0x0F)));
  uint64_t len = spec.declared_length ? *spec.declared_length : spec.payload.size();
  uint8_t mask_bit = spec.masked ? 0x80 : 0;
  LengthForm form = spec.length_form;
  if (form == LengthForm::kMinimal) form = len < 126 ? LengthForm::kMinimal : len < 65536 ? LengthForm::k16 : LengthForm::k64;
  if (form == LengthForm::kMinimal) {
    out.push_back(static_cast<char>(mask_bit | len));
  } else if (form == LengthForm::k16) {
    out.push_back(static_cast<char>(mask_bit | 126));
    out.push_back(static_cast<char>((len >> 8) & 0xFF));
    out.push_back(static_cast<char>(len & 0xFF));
  } else {
    out.push_back(static_cast<char>(mask_bit | 127));
    for (int shift = 56; shift >= 0; shift -= 8) out.push_back(static_cast<char>((len >> shift) & 0xFF));
  }
  std::string payload = spec.payload;
  if (spec.masked) {
    std::array<uint8_t, 4> key{};
    if (spec.mask_key) {
      key = *spec.mask_key;
    } else {
      RAND_bytes(key.data(), 4);
    }
    for (uint8_t b : key) out.push_back(static_cast<char>(b));
    for (size_t i = 0; i < payload.size(); i++) payload[i] = static_cast<char>(payload[i] ^ key[i % 4]);
  }
  return out + payload;
}

std::string EncodeFrame(uint8_t opcode, const std::string &payload, bool fin) {
  FrameSpec spec;
  spec.opcode = opcode;
  spec.payload = payload;
  spec.fin = fin;
  return EncodeFrame(spec);
}

std::string ClosePayload(uint16_t code, const std::string &reason) {
  std::string p;
  p.push_back(static_cast<char>(code >> 8));
  p.push_back(static_cast<char>(code & 0xFF));
  return p + reason;
}

uint16_t Frame::close_code() const {
  if (payload.size() < 2) return 0;
  return static_cast<uint16_t>((static_cast<uint8_t>(payload[0]) << 8) | static_cast<uint8_t>(payload[1]));
}

std::string Frame::close_reason() const { return payload.size() > 2 ? payload.substr(2) : ""; }

std::string Frame::Describe() const {
  static const char *names[16] = {"CONTINUATION", "TEXT", "BINARY", "op3", "op4", "op5", "op6", "op7",
                                  "CLOSE", "PING", "PONG", "opB", "opC", "opD", "opE", "opF"};
  std::string s = std::string(names[opcode & 0xF]) + (fin ? "" : " (no FIN)");
  if (rsv) s += " rsv=" + std::to_string(rsv);
  if (masked) s += " masked";
  if (opcode == kOpClose) {
    s += " code=" + std::to_string(close_code()) + " reason='" + close_reason() + "'";
  } else {
    s += " len=" + std::to_string(payload.size());
  }
  return s;
}

// ---- HTTP -------------------------------------------------------------------

std::optional<std::string> HttpResponse::Header(const std::string &name) const {
  std::string n = Lower(name);
  for (const auto &h : headers)
    if (h.first == n) return h.second;
  return std::nullopt;
}

std::vector<std::string> HttpResponse::HeaderValues(const std::string &name) const {
  std::vector<std::string> out;
  std::string n = Lower(name);
  for (const auto &h : headers)
    if (h.first == n) out.push_back(h.second);
  return out;
}

std::string RandomWebSocketKey() {
  unsigned char raw[16];
  RAND_bytes(raw, sizeof raw);
  return Base64(raw, sizeof raw);
}

std::string ExpectedAcceptKey(const std::string &key) {
  std::string in = key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int md_len = 0;
  EVP_Digest(in.data(), in.size(), md, &md_len, EVP_sha1(), nullptr);
  return Base64(md, md_len);
}

UpgradeRequest UpgradeRequest::Standard(const std::string &host_port,
                                        const std::vector<std::string> &subprotocols) {
  UpgradeRequest r;
  r.key = RandomWebSocketKey();
  r.headers = {{"Host", host_port},
               {"Upgrade", "websocket"},
               {"Connection", "Upgrade"},
               {"Sec-WebSocket-Key", r.key},
               {"Sec-WebSocket-Version", "13"}};
  if (!subprotocols.empty()) {
    std::string v;
    for (const auto &p : subprotocols) v += (v.empty() ? "" : ", ") + p;
    r.headers.emplace_back("Sec-WebSocket-Protocol", v);
  }
  return r;
}

void UpgradeRequest::Set(const std::string &name, const std::string &value) {
  for (auto &h : headers) {
    if (Lower(h.first) == Lower(name)) {
      h.second = value;
      if (Lower(name) == "sec-websocket-key") key = value;
      return;
    }
  }
  Add(name, value);
}

void UpgradeRequest::Add(const std::string &name, const std::string &value) {
  headers.emplace_back(name, value);
  if (Lower(name) == "sec-websocket-key") key = value;
}

void UpgradeRequest::Remove(const std::string &name) {
  headers.erase(std::remove_if(headers.begin(), headers.end(),
                               [&](const auto &h) { return Lower(h.first) == Lower(name); }),
                headers.end());
}

std::string UpgradeRequest::Serialize() const {
  std::string s = method + " " + target + " " + version + "\r\n";
  for (const auto &h : headers) s += h.first + ": " + h.second + "\r\n";
  return s + "\r\n";
}

// ---- protobuf -----------------------------------------------------------------

void ServerMessageDeleter::operator()(Nebula__Sync__V1__ServerMessage *m) const {
  if (m) nebula__sync__v1__server_message__free_unpacked(m, nullptr);
}

std::string EncodeHello(const std::string &client_id, const std::string &auth_token) {
  Nebula__Sync__V1__Hello hello = NEBULA__SYNC__V1__HELLO__INIT;
  hello.client_id = const_cast<char *>(client_id.c_str());
  hello.auth_token = const_cast<char *>(auth_token.c_str());
  Nebula__Sync__V1__ClientMessage msg = NEBULA__SYNC__V1__CLIENT_MESSAGE__INIT;
  msg.message_case = NEBULA__SYNC__V1__CLIENT_MESSAGE__MESSAGE_HELLO;
  msg.hello = &hello;
  std::string out(nebula__sync__v1__client_message__get_packed_size(&msg), '\0');
  nebula__sync__v1__client_message__pack(&msg, reinterpret_cast<uint8_t *>(&out[0]));
  return out;
}

std::string EncodeEmptyClientMessage() {
  Nebula__Sync__V1__ClientMessage msg = NEBULA__SYNC__V1__CLIENT_MESSAGE__INIT;
  std::string out(nebula__sync__v1__client_message__get_packed_size(&msg), '\0');
  if (!out.empty()) nebula__sync__v1__client_message__pack(&msg, reinterpret_cast<uint8_t *>(&out[0]));
  return out;
}

ServerMessagePtr DecodeServerMessage(const std::string &bytes) {
  return ServerMessagePtr(nebula__sync__v1__server_message__unpack(
      nullptr, bytes.size(), reinterpret_cast<const uint8_t *>(bytes.data())));
}

const char *ErrorCodeName(int code) {
  switch (code) {
    case NEBULA__SYNC__V1__ERROR_CODE__ERROR_CODE_UNSPECIFIED: return "UNSPECIFIED";
    case NEBULA__SYNC__V1__ERROR_CODE__ERROR_CODE_INVALID_MESSAGE: return "INVALID_MESSAGE";
    case NEBULA__SYNC__V1__ERROR_CODE__ERROR_CODE_HELLO_REQUIRED: return "HELLO_REQUIRED";
    case NEBULA__SYNC__V1__ERROR_CODE__ERROR_CODE_UNSUPPORTED: return "UNSUPPORTED";
    case NEBULA__SYNC__V1__ERROR_CODE__ERROR_CODE_UNAUTHENTICATED: return "UNAUTHENTICATED";
    case NEBULA__SYNC__V1__ERROR_CODE__ERROR_CODE_ALREADY_HELLO: return "ALREADY_HELLO";
  }
  return "unknown";
}

std::string DescribeServerMessage(const Nebula__Sync__V1__ServerMessage *m) {
  if (!m) return "(none)";
  switch (m->message_case) {
    case NEBULA__SYNC__V1__SERVER_MESSAGE__MESSAGE_WELCOME: {
      const auto *w = m->welcome;
      return std::string("Welcome{session_id='") + w->session_id + "' tenant='" + w->tenant +
             "' server_time_ms=" + std::to_string(w->server_time_ms) +
             " heartbeat_interval_ms=" + std::to_string(w->heartbeat_interval_ms) +
             " max_message_size=" + (w->limits ? std::to_string(w->limits->max_message_size) : "(no limits)") +
             " server_version='" + w->server_version + "'}";
    }
    case NEBULA__SYNC__V1__SERVER_MESSAGE__MESSAGE_ERROR:
      return std::string("Error{") + ErrorCodeName(m->error->code) + " '" + m->error->message + "'}";
    default:
      return "ServerMessage{no field set}";
  }
}

// ---- client -------------------------------------------------------------------

WsClient::WsClient() { IgnoreSigpipeOnce(); }

WsClient::~WsClient() { Close(); }

void WsClient::Close() {
  if (ssl_) {
    // Closing without close_notify; still keep the session resumable
    // (SSL_free would otherwise mark it "bad").
    if (SSL_is_init_finished(ssl_)) SSL_set_shutdown(ssl_, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    SSL_free(ssl_);
    ssl_ = nullptr;
  }
  if (ctx_) {
    SSL_CTX_free(ctx_);
    ctx_ = nullptr;
  }
  if (fd_ >= 0) {
    close(fd_);
    fd_ = -1;
  }
  rbuf_.clear();
}

bool WsClient::Fail(const std::string &msg) {
  error_ = msg;
  return false;
}

int WsClient::WaitFd(short events, int64_t deadline_ms) {
  for (;;) {
    int64_t left = deadline_ms - NowMs();
    if (left <= 0) return 0;
    struct pollfd p = {fd_, events, 0};
    int r = poll(&p, 1, static_cast<int>(std::min<int64_t>(left, 1000)));
    if (r > 0) return 1;
    if (r < 0 && errno != EINTR) return -1;
  }
}

bool WsClient::Connect(const ConnectOptions &opts) {
  Close();
  got_reset_ = false;
  int64_t deadline = NowMs() + opts.timeout_ms;
  host_port_ = opts.host + ":" + std::to_string(opts.port);
  fd_ = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd_ < 0) return Fail(std::string("socket: ") + strerror(errno));
  int one = 1;
  setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (!opts.source_ip.empty()) {
    // Let connect() pick the port, so one source port serves many peers.
    setsockopt(fd_, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    struct sockaddr_in src = {};
    src.sin_family = AF_INET;
    if (inet_pton(AF_INET, opts.source_ip.c_str(), &src.sin_addr) != 1)
      return Fail("bad source address " + opts.source_ip);
    if (bind(fd_, reinterpret_cast<sockaddr *>(&src), sizeof src) != 0)
      return Fail("bind " + opts.source_ip + ": " + strerror(errno));
  }
  struct sockaddr_in dst = {};
  dst.sin_family = AF_INET;
  dst.sin_port = htons(opts.port);
  if (inet_pton(AF_INET, opts.host.c_str(), &dst.sin_addr) != 1) return Fail("bad host " + opts.host);
  if (connect(fd_, reinterpret_cast<sockaddr *>(&dst), sizeof dst) != 0) {
    if (errno != EINPROGRESS) return Fail("connect " + host_port_ + ": " + strerror(errno));
    int w = WaitFd(POLLOUT, deadline);
    if (w <= 0) return Fail("connect " + host_port_ + ": timed out");
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) return Fail("connect " + host_port_ + ": " + strerror(err));
  }
  if (!opts.tls) return true;

  const TlsClientOptions &t = opts.tls_options;
  ctx_ = SSL_CTX_new(TLS_client_method());
  if (!ctx_) return Fail("SSL_CTX_new: " + OpensslErrors());
  SSL_CTX_set_verify(ctx_, SSL_VERIFY_NONE, nullptr);  // tests compare fingerprints instead
  SSL_CTX_set_options(ctx_, SSL_OP_IGNORE_UNEXPECTED_EOF);
  SSL_CTX_set_session_cache_mode(ctx_, SSL_SESS_CACHE_OFF);  // freeing a cache would spoil its sessions
  if (t.security_level >= 0) SSL_CTX_set_security_level(ctx_, t.security_level);
  if (!t.cipher_list.empty() && SSL_CTX_set_cipher_list(ctx_, t.cipher_list.c_str()) != 1)
    return Fail("cipher list: " + OpensslErrors());
  if (t.min_version && SSL_CTX_set_min_proto_version(ctx_, t.min_version) != 1)
    return Fail("min version: " + OpensslErrors());
  if (t.max_version && SSL_CTX_set_max_proto_version(ctx_, t.max_version) != 1)
    return Fail("max version: " + OpensslErrors());
  ssl_ = SSL_new(ctx_);
  if (!ssl_) return Fail("SSL_new: " + OpensslErrors());
  if (!t.alpn.empty()) {
    std::string wire;
    for (const auto &p : t.alpn) {
      wire.push_back(static_cast<char>(p.size()));
      wire += p;
    }
    SSL_set_alpn_protos(ssl_, reinterpret_cast<const unsigned char *>(wire.data()),
                        static_cast<unsigned>(wire.size()));
  }
  if (!t.server_name.empty()) SSL_set_tlsext_host_name(ssl_, t.server_name.c_str());
  if (t.resume_session) SSL_set_session(ssl_, t.resume_session);
  SSL_set_fd(ssl_, fd_);
  for (;;) {
    ERR_clear_error();
    int r = SSL_connect(ssl_);
    if (r == 1) return true;
    int err = SSL_get_error(ssl_, r);
    int w;
    if (err == SSL_ERROR_WANT_READ) {
      w = WaitFd(POLLIN, deadline);
    } else if (err == SSL_ERROR_WANT_WRITE) {
      w = WaitFd(POLLOUT, deadline);
    } else {
      std::string detail = OpensslErrors();
      if (detail.empty()) detail = err == SSL_ERROR_SYSCALL ? std::string("syscall: ") + strerror(errno) : "error " + std::to_string(err);
      return Fail("TLS handshake failed: " + detail);
    }
    if (w <= 0) return Fail("TLS handshake timed out");
  }
}

SSL_SESSION *WsClient::GetSession() const { return ssl_ ? SSL_get1_session(ssl_) : nullptr; }

long WsClient::ReadSome(char *buf, size_t cap, int64_t deadline_ms) {
  if (fd_ < 0) {
    error_ = "not connected";
    return -2;
  }
  for (;;) {
    if (ssl_) {
      ERR_clear_error();
      errno = 0;
      int n = SSL_read(ssl_, buf, static_cast<int>(std::min<size_t>(cap, 1 << 20)));
      if (n > 0) return n;
      int err = SSL_get_error(ssl_, n);
      int w;
      if (err == SSL_ERROR_WANT_READ) {
        w = WaitFd(POLLIN, deadline_ms);
      } else if (err == SSL_ERROR_WANT_WRITE) {
        w = WaitFd(POLLOUT, deadline_ms);
      } else if (err == SSL_ERROR_ZERO_RETURN) {
        return 0;
      } else if (err == SSL_ERROR_SYSCALL && (errno == ECONNRESET || errno == EPIPE || errno == 0)) {
        got_reset_ = errno != 0;
        return 0;
      } else {
        error_ = "TLS read: " + OpensslErrors() + " (" + strerror(errno) + ")";
        return -2;
      }
      if (w == 0) return -1;
      if (w < 0) {
        error_ = std::string("poll: ") + strerror(errno);
        return -2;
      }
    } else {
      ssize_t n = recv(fd_, buf, cap, 0);
      if (n > 0) return n;
      if (n == 0) return 0;
      if (errno == EINTR) continue;
      if (errno == ECONNRESET) {
        got_reset_ = true;
        return 0;
      }
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        error_ = std::string("recv: ") + strerror(errno);
        return -2;
      }
      int w = WaitFd(POLLIN, deadline_ms);
      if (w == 0) return -1;
      if (w < 0) {
        error_ = std::string("poll: ") + strerror(errno);
        return -2;
      }
    }
  }
}

bool WsClient::WriteAll(const char *data, size_t len, int64_t deadline_ms) {
  if (fd_ < 0) return Fail("not connected");
  size_t off = 0;
  while (off < len) {
    if (ssl_) {
      ERR_clear_error();
      // Retries must repeat the same arguments (no partial writes mode).
      int n = SSL_write(ssl_, data + off, static_cast<int>(std::min<size_t>(len - off, 1 << 20)));
      if (n > 0) {
        off += static_cast<size_t>(n);
        continue;
      }
      int err = SSL_get_error(ssl_, n);
      int w;
      if (err == SSL_ERROR_WANT_WRITE) {
        w = WaitFd(POLLOUT, deadline_ms);
      } else if (err == SSL_ERROR_WANT_READ) {
        w = WaitFd(POLLIN, deadline_ms);
      } else {
        return Fail("TLS write: " + OpensslErrors() + " (" + strerror(errno) + ")");
      }
      if (w <= 0) return Fail("write timed out");
    } else {
      ssize_t n = send(fd_, data + off, len - off, MSG_NOSIGNAL);
      if (n > 0) {
        off += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        if (WaitFd(POLLOUT, deadline_ms) <= 0) return Fail("write timed out");
        continue;
      }
      return Fail(std::string("send: ") + strerror(errno));
    }
  }
  return true;
}

bool WsClient::SendRaw(const std::string &bytes) {
  return WriteAll(bytes.data(), bytes.size(), NowMs() + kTimeoutMs);
}

ReadResult WsClient::Fill(size_t n, int64_t deadline_ms) {
  char buf[16384];
  while (rbuf_.size() < n) {
    long r = ReadSome(buf, sizeof buf, deadline_ms);
    if (r > 0) {
      rbuf_.append(buf, static_cast<size_t>(r));
    } else if (r == 0) {
      return ReadResult::kEof;
    } else if (r == -1) {
      return ReadResult::kTimeout;
    } else {
      return ReadResult::kError;
    }
  }
  return ReadResult::kOk;
}

HttpResponse WsClient::ReadHttpResponse(int timeout_ms) {
  HttpResponse resp;
  int64_t deadline = NowMs() + timeout_ms;
  size_t head_end;
  while ((head_end = rbuf_.find("\r\n\r\n")) == std::string::npos) {
    if (rbuf_.size() > kMaxResponseHead) {
      resp.raw = rbuf_;
      error_ = "response head too long";
      return resp;
    }
    ReadResult r = Fill(rbuf_.size() + 1, deadline);
    if (r != ReadResult::kOk) {
      resp.result = r;
      resp.raw = rbuf_;
      if (r != ReadResult::kError) error_ = std::string("no complete response head: ") + ToString(r);
      return resp;
    }
  }
  std::string head = rbuf_.substr(0, head_end);
  rbuf_.erase(0, head_end + 4);
  resp.raw = head + "\r\n\r\n";
  size_t line_end = head.find("\r\n");
  resp.status_line = head.substr(0, line_end);
  if (resp.status_line.compare(0, 5, "HTTP/") != 0 || resp.status_line.size() < 12) {
    error_ = "bad status line: " + resp.status_line;
    return resp;
  }
  resp.status = atoi(resp.status_line.c_str() + resp.status_line.find(' ') + 1);
  size_t pos = line_end == std::string::npos ? head.size() : line_end + 2;
  while (pos < head.size()) {
    size_t e = head.find("\r\n", pos);
    if (e == std::string::npos) e = head.size();
    std::string line = head.substr(pos, e - pos);
    size_t colon = line.find(':');
    if (colon != std::string::npos)
      resp.headers.emplace_back(Lower(Trim(line.substr(0, colon))), Trim(line.substr(colon + 1)));
    pos = e + 2;
  }
  if (resp.status == 101) {
    resp.result = ReadResult::kOk;
    return resp;
  }
  // Body.
  auto cl = resp.Header("content-length");
  auto te = resp.Header("transfer-encoding");
  if (cl) {
    size_t n = static_cast<size_t>(strtoull(cl->c_str(), nullptr, 10));
    ReadResult r = Fill(n, deadline);
    resp.body = rbuf_.substr(0, std::min(n, rbuf_.size()));
    rbuf_.erase(0, resp.body.size());
    resp.raw += resp.body;
    resp.result = r;
    if (r != ReadResult::kOk) error_ = std::string("body incomplete: ") + ToString(r);
    return resp;
  }
  if (te && Lower(*te).find("chunked") != std::string::npos) {
    for (;;) {
      size_t e;
      while ((e = rbuf_.find("\r\n")) == std::string::npos) {
        ReadResult r = Fill(rbuf_.size() + 1, deadline);
        if (r != ReadResult::kOk) {
          resp.result = r;
          error_ = "chunked body incomplete";
          return resp;
        }
      }
      size_t n = static_cast<size_t>(strtoull(rbuf_.c_str(), nullptr, 16));
      rbuf_.erase(0, e + 2);
      ReadResult r = Fill(n + 2, deadline);
      if (r != ReadResult::kOk) {
        resp.result = r;
        error_ = "chunked body incomplete";
        return resp;
      }
      resp.body += rbuf_.substr(0, n);
      rbuf_.erase(0, n + 2);
      if (n == 0) break;
    }
    resp.raw += resp.body;
    resp.result = ReadResult::kOk;
    return resp;
  }
  // No length: the body runs to EOF.
  char buf[16384];
  for (;;) {
    long r = ReadSome(buf, sizeof buf, deadline);
    if (r > 0) {
      rbuf_.append(buf, static_cast<size_t>(r));
      continue;
    }
    resp.body = rbuf_;
    rbuf_.clear();
    resp.raw += resp.body;
    resp.result = r == 0 ? ReadResult::kOk : r == -1 ? ReadResult::kTimeout : ReadResult::kError;
    return resp;
  }
}

bool WsClient::Upgrade(const UpgradeRequest &request, HttpResponse *response) {
  if (!SendRaw(request.Serialize())) return false;
  HttpResponse resp = ReadHttpResponse();
  if (response) *response = resp;
  if (!resp.ok()) return Fail("upgrade: no response (" + std::string(ToString(resp.result)) + "): " + error_ + " raw='" + resp.raw + "'");
  if (resp.status != 101) return Fail("upgrade: got '" + resp.status_line + "' body='" + resp.body + "'");
  auto upgrade = resp.Header("upgrade");
  if (!upgrade || Lower(*upgrade) != "websocket") return Fail("101 without 'Upgrade: websocket'");
  auto connection = resp.Header("connection");
  if (!connection || Lower(*connection).find("upgrade") == std::string::npos)
    return Fail("101 without 'Connection: Upgrade'");
  auto accept = resp.Header("sec-websocket-accept");
  std::string want = ExpectedAcceptKey(request.key);
  if (!accept || *accept != want)
    return Fail("101 with Sec-WebSocket-Accept '" + accept.value_or("(none)") + "', expected '" + want + "'");
  return true;
}

bool WsClient::ConnectAndUpgrade(const ConnectOptions &opts, const std::vector<std::string> &subprotocols,
                                 HttpResponse *response) {
  if (!Connect(opts)) return false;
  return Upgrade(UpgradeRequest::Standard(host_port_, subprotocols), response);
}

bool WsClient::OpenSession(const ConnectOptions &opts, ServerMessagePtr *welcome, const std::string &client_id) {
  if (!ConnectAndUpgrade(opts)) return false;
  if (!SendHello(client_id)) return false;
  ServerMessagePtr m = ReadServerMessage();
  if (!m) return false;
  if (m->message_case != NEBULA__SYNC__V1__SERVER_MESSAGE__MESSAGE_WELCOME)
    return Fail("expected Welcome, got " + DescribeServerMessage(m.get()));
  if (welcome) *welcome = std::move(m);
  return true;
}

ReadResult WsClient::ReadFrame(Frame *out, int timeout_ms) {
  int64_t deadline = NowMs() + timeout_ms;
  ReadResult r = Fill(2, deadline);
  if (r != ReadResult::kOk) return r;
  const auto *b = reinterpret_cast<const uint8_t *>(rbuf_.data());
  Frame f;
  f.fin = (b[0] & 0x80) != 0;
  f.rsv = b[0] & 0x70;
  f.opcode = b[0] & 0x0F;
  f.masked = (b[1] & 0x80) != 0;
  uint64_t len = b[1] & 0x7F;
  size_t header = 2;
  if (len == 126) {
    header = 4;
    if ((r = Fill(header, deadline)) != ReadResult::kOk) return r;
    b = reinterpret_cast<const uint8_t *>(rbuf_.data());
    len = (static_cast<uint64_t>(b[2]) << 8) | b[3];
    f.minimal_length = len >= 126;
  } else if (len == 127) {
    header = 10;
    if ((r = Fill(header, deadline)) != ReadResult::kOk) return r;
    b = reinterpret_cast<const uint8_t *>(rbuf_.data());
    len = 0;
    for (int i = 2; i < 10; i++) len = (len << 8) | b[i];
    f.minimal_length = len >= 65536;
  }
  if (len > kMaxFramePayload) {
    error_ = "server frame too large: " + std::to_string(len);
    return ReadResult::kError;
  }
  size_t key_at = header;
  if (f.masked) header += 4;
  if ((r = Fill(header + len, deadline)) != ReadResult::kOk) return r;
  f.payload = rbuf_.substr(header, len);
  if (f.masked) {
    const auto *key = reinterpret_cast<const uint8_t *>(rbuf_.data() + key_at);
    for (size_t i = 0; i < f.payload.size(); i++) f.payload[i] = static_cast<char>(f.payload[i] ^ key[i % 4]);
  }
  rbuf_.erase(0, header + len);
  *out = std::move(f);
  return ReadResult::kOk;
}

ServerMessagePtr WsClient::ReadServerMessage(int timeout_ms) {
  Frame f;
  ReadResult r = ReadFrame(&f, timeout_ms);
  if (r != ReadResult::kOk) {
    error_ = std::string("expected a binary message, got ") + ToString(r) + (r == ReadResult::kError ? ": " + error_ : "");
    return nullptr;
  }
  if (f.opcode != kOpBinary || !f.fin || f.masked || f.rsv) {
    error_ = "expected an unmasked, unfragmented binary frame, got " + f.Describe();
    return nullptr;
  }
  ServerMessagePtr m = DecodeServerMessage(f.payload);
  if (!m) error_ = "binary message is not a ServerMessage (" + std::to_string(f.payload.size()) + " bytes)";
  return m;
}

ReadResult WsClient::WaitForEof(int timeout_ms, std::string *discarded) {
  int64_t deadline = NowMs() + timeout_ms;
  if (discarded) *discarded = rbuf_;
  rbuf_.clear();
  char buf[16384];
  for (;;) {
    long r = ReadSome(buf, sizeof buf, deadline);
    if (r > 0) {
      if (discarded) discarded->append(buf, static_cast<size_t>(r));
      continue;
    }
    return r == 0 ? ReadResult::kEof : r == -1 ? ReadResult::kTimeout : ReadResult::kError;
  }
}

}  // namespace nebula_test
