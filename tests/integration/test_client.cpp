// test_client: the C client library (client/nebula_client.h) over real
// sockets, driven by a libevent loop on the test thread.
//
// Two kinds of peer:
//   - the real nebula-syncd (DaemonHarness), plain and TLS: connect, Welcome,
//     the close handshake both ways, reconnecting, pings, the ways a
//     connection fails (refused, 404, untrusted certificate, limits), and
//     two clients syncing one collection (cursors, own results, replay);
//   - a scripted one-connection server on a thread (blocking sockets), for
//     what the daemon cannot show: fragmented messages with a ping between
//     the fragments, the sync messages and cursor de-duplication end to end,
//     and servers that misbehave.
// Every wait is bounded; nothing asserts on speed.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "daemon_process.h"
#include "nebula_sync.pb-c.h"
#include "test_certs.h"
#include "ws_test_client.h"

extern "C" {
#include "nebula_client.h"
}

namespace nebula_test {
namespace {

using ::testing::AssertionFailure;
using ::testing::AssertionResult;
using ::testing::AssertionSuccess;

// The library writes with write(2), like libevent: a vanished peer must not
// kill the test process.
const bool kSigpipeIgnored = [] {
  signal(SIGPIPE, SIG_IGN);
  return true;
}();

// ---- event loop and recorded callbacks ---------------------------------------------

class Loop {
 public:
  Loop() : base_(event_base_new()) {
    // A ticking timer, so that a wait with nothing happening still returns.
    tick_ = event_new(base_, -1, EV_PERSIST, [](evutil_socket_t, short, void *) {}, nullptr);
    timeval tv{0, 10000};
    event_add(tick_, &tv);
  }
  ~Loop() {
    event_free(tick_);
    event_base_free(base_);
  }
  Loop(const Loop &) = delete;
  Loop &operator=(const Loop &) = delete;

  event_base *base() const { return base_; }
  bool RunUntil(const std::function<bool()> &done, int timeout_ms = kTimeoutMs) {
    int64_t deadline = NowMs() + timeout_ms;
    while (!done()) {
      if (NowMs() > deadline) return false;
      event_base_loop(base_, EVLOOP_ONCE);
    }
    return true;
  }
  void RunFor(int ms) {
    int64_t end = NowMs() + ms;
    RunUntil([&] { return NowMs() >= end; }, ms + 1000);
  }

 private:
  event_base *base_;
  event *tick_;
};

struct Subscribed {
  std::string collection;
  int mode;
  bool has_head;
  uint64_t head_seq;
  std::string head_epoch;
};

struct SnapshotPage {
  std::vector<std::string> doc_ids;
  bool last;
  bool has_cursor;
  uint64_t cursor_seq;
  std::string cursor_epoch;
};

struct PushResultRecord {
  uint64_t request_id;
  std::vector<std::pair<int, uint64_t>> results;  // status, seq
};

// Everything the callbacks saw, plus hooks a test sets to act inside them.
struct Recorder {
  int welcomes = 0;
  std::string session_id, tenant, server_version;
  uint32_t heartbeat_interval_ms = 0, max_message_size = 0;
  std::vector<std::pair<int, std::string>> errors;
  int closed = 0;
  int close_code = 0;
  std::string close_reason;
  std::vector<Subscribed> subscribed;
  std::vector<uint64_t> event_seqs;
  std::vector<size_t> event_data_sizes;
  std::vector<SnapshotPage> snapshots;
  std::vector<PushResultRecord> push_results;

  std::function<void(nebula_client *)> on_welcome, on_events, on_snapshot, on_push_result, on_closed;
  std::function<void(nebula_client *, int)> on_error;

  std::string ErrorsText() const {
    std::string s;
    for (const auto &e : errors) s += "[" + std::to_string(e.first) + " " + e.second + "] ";
    return s.empty() ? "(none)" : s;
  }
  bool HasError(int code) const {
    return std::any_of(errors.begin(), errors.end(), [&](const auto &e) { return e.first == code; });
  }
};

Recorder *Rec(void *user_data) { return static_cast<Recorder *>(user_data); }

void OnWelcome(nebula_client *c, const nebula_client_welcome *w, void *ud) {
  Recorder *r = Rec(ud);
  r->welcomes++;
  r->session_id = w->session_id;
  r->tenant = w->tenant;
  r->server_version = w->server_version;
  r->heartbeat_interval_ms = w->heartbeat_interval_ms;
  r->max_message_size = w->max_message_size;
  if (r->on_welcome) r->on_welcome(c);
}

void OnSubscribed(nebula_client *, const char *collection, nebula_subscribe_mode mode, const nebula_cursor *head,
                  void *ud) {
  Rec(ud)->subscribed.push_back(
      {collection, mode, head != nullptr, head ? head->seq : 0, head ? head->epoch : ""});
}

void OnEvents(nebula_client *c, const char *, const nebula_client_event *events, size_t n, void *ud) {
  Recorder *r = Rec(ud);
  for (size_t i = 0; i < n; i++) {
    r->event_seqs.push_back(events[i].seq);
    r->event_data_sizes.push_back(events[i].data_len);
  }
  if (r->on_events) r->on_events(c);
}

void OnSnapshot(nebula_client *c, const char *, const nebula_client_document *docs, size_t n, bool last,
                const nebula_cursor *cursor, void *ud) {
  Recorder *r = Rec(ud);
  SnapshotPage page{{}, last, cursor != nullptr, cursor ? cursor->seq : 0, cursor ? cursor->epoch : ""};
  for (size_t i = 0; i < n; i++) page.doc_ids.push_back(docs[i].document_id);
  r->snapshots.push_back(page);
  if (r->on_snapshot) r->on_snapshot(c);
}

void OnPushResult(nebula_client *c, uint64_t request_id, const nebula_client_push_result *results, size_t n,
                  void *ud) {
  Recorder *r = Rec(ud);
  PushResultRecord rec{request_id, {}};
  for (size_t i = 0; i < n; i++) rec.results.push_back({results[i].status, results[i].seq});
  r->push_results.push_back(rec);
  if (r->on_push_result) r->on_push_result(c);
}

void OnError(nebula_client *c, int code, const char *message, void *ud) {
  Recorder *r = Rec(ud);
  r->errors.push_back({code, message});
  if (r->on_error) r->on_error(c, code);
}

void OnClosed(nebula_client *c, int close_code, const char *reason, void *ud) {
  Recorder *r = Rec(ud);
  r->closed++;
  r->close_code = close_code;
  r->close_reason = reason;
  if (r->on_closed) r->on_closed(c);
}

// A client handle on a loop, with every callback recorded.
class TestClient {
 public:
  TestClient(Loop &loop, const std::string &url, const std::function<void(nebula_client_options &)> &tweak = {}) {
    nebula_client_options o;
    nebula_client_options_init(&o);
    o.server_url = url.c_str();
    o.client_id = "test-client";
    o.callbacks = {OnWelcome, OnSubscribed, OnEvents, OnSnapshot, OnPushResult, OnError, OnClosed};
    o.user_data = &rec;
    if (tweak) tweak(o);
    create_rc = nebula_client_create(loop.base(), &o, &c);
  }
  ~TestClient() {
    if (!freed) nebula_client_free(c);
  }
  TestClient(const TestClient &) = delete;
  TestClient &operator=(const TestClient &) = delete;

  nebula_client_status Status() const {
    nebula_client_status s;
    nebula_client_get_status(c, &s);
    return s;
  }
  int Cursor(const char *collection, nebula_cursor *out) const { return nebula_client_get_cursor(c, collection, out); }

  nebula_client *c = nullptr;
  int create_rc = 0;
  bool freed = false;  // freed by the test itself (e.g. inside a callback)
  Recorder rec;
};

// ---- against the daemon ------------------------------------------------------------

enum class Mode { kPlain, kTls };

std::string ModeName(const ::testing::TestParamInfo<Mode> &info) {
  return info.param == Mode::kPlain ? "Plain" : "Tls";
}

const TestCert &SharedCert() {
  static TempDir dir("nebula-client-cert");
  static TestCert cert = [] {
    TestCert c;
    std::string err;
    if (!GenerateSelfSignedCert(dir.path(), "server", KeyType::kEcdsaP256, &c, &err))
      ADD_FAILURE() << "certificate generation failed: " << err;
    return c;
  }();
  return cert;
}

class ClientDaemonTest : public ::testing::TestWithParam<Mode>, public DaemonHarness {
 protected:
  bool tls() const { return GetParam() == Mode::kTls; }
  AssertionResult Start(DaemonOptions o = {}) {
    if (tls()) {
      o["tls-cert"] = SharedCert().cert_path;
      o["tls-key"] = SharedCert().key_path;
    }
    return StartDaemon(o);
  }
  std::string Url(const std::string &host = "127.0.0.1", const std::string &path = "/v1/sync") const {
    return std::string(tls() ? "wss://" : "ws://") + host + ":" + std::to_string(daemon_->listen_port()) + path;
  }
  // Trusts the test certificate on wss://.
  std::function<void(nebula_client_options &)> Trust() const {
    return [](nebula_client_options &o) { o.tls_ca_file = SharedCert().cert_path.c_str(); };
  }
  AssertionResult ConnectAndWelcome(TestClient &client) {
    if (client.create_rc != 0) return AssertionFailure() << "create: " << nebula_client_strerror(client.create_rc);
    int rc = nebula_client_connect(client.c);
    if (rc != 0) return AssertionFailure() << "connect: " << nebula_client_strerror(rc);
    int before = client.rec.welcomes, closed = client.rec.closed;
    if (!loop_.RunUntil([&] { return client.rec.welcomes > before || client.rec.closed > closed; }))
      return AssertionFailure() << "no Welcome; errors " << client.rec.ErrorsText();
    if (client.rec.welcomes == before)
      return AssertionFailure() << "closed (" << client.rec.close_code << " " << client.rec.close_reason
                                << ") instead of Welcome; errors " << client.rec.ErrorsText();
    return AssertionSuccess();
  }
  AssertionResult CloseAndWait(TestClient &client, int code = 1000) {
    int closed = client.rec.closed;
    int rc = nebula_client_close(client.c, code);
    if (rc != 0) return AssertionFailure() << "close: " << nebula_client_strerror(rc);
    if (!loop_.RunUntil([&] { return client.rec.closed > closed; })) return AssertionFailure() << "no on_closed";
    return AssertionSuccess();
  }
  void TearDown() override { StopDaemonAndExpectCleanExit(); }

  Loop loop_;
};

TEST_P(ClientDaemonTest, ConnectsGetsWelcomeAndClosesCleanly) {
  ASSERT_TRUE(Start());
  TestClient client(loop_, Url(), Trust());
  ASSERT_EQ(client.Status().state, NEBULA_CLIENT_IDLE);
  ASSERT_TRUE(ConnectAndWelcome(client));
  EXPECT_FALSE(client.rec.session_id.empty());
  EXPECT_EQ(client.rec.tenant, "default");
  EXPECT_GT(client.rec.max_message_size, 0u);
  EXPECT_GT(client.rec.heartbeat_interval_ms, 0u);
  EXPECT_FALSE(client.rec.server_version.empty());
  nebula_client_status st = client.Status();
  EXPECT_TRUE(st.connected);
  EXPECT_EQ(st.state, NEBULA_CLIENT_READY);
  EXPECT_EQ(st.pending_pushes, 0u);

  ASSERT_TRUE(CloseAndWait(client, 1000));
  EXPECT_EQ(client.rec.close_code, 1000) << "the server echoes our code";
  EXPECT_EQ(client.rec.closed, 1);
  EXPECT_TRUE(client.rec.errors.empty()) << client.rec.ErrorsText();
  EXPECT_EQ(client.Status().state, NEBULA_CLIENT_IDLE);
  EXPECT_FALSE(client.Status().connected);
}

TEST_P(ClientDaemonTest, ReconnectsOnTheSameHandle) {
  ASSERT_TRUE(Start());
  TestClient client(loop_, Url(), Trust());
  ASSERT_TRUE(ConnectAndWelcome(client));
  std::string first = client.rec.session_id;
  ASSERT_TRUE(CloseAndWait(client, 4000));
  EXPECT_EQ(client.rec.close_code, 4000);
  ASSERT_TRUE(ConnectAndWelcome(client));
  EXPECT_NE(client.rec.session_id, first);
  ASSERT_TRUE(CloseAndWait(client));
  EXPECT_EQ(client.rec.closed, 2);
  EXPECT_TRUE(client.rec.errors.empty()) << client.rec.ErrorsText();
}

TEST_P(ClientDaemonTest, ReconnectsFromInsideOnClosed) {
  ASSERT_TRUE(Start());
  TestClient client(loop_, Url(), Trust());
  int reconnects = 0;
  client.rec.on_closed = [&reconnects](nebula_client *c) {
    if (reconnects++ == 0) {
      EXPECT_EQ(nebula_client_connect(c), 0);
    }
  };
  ASSERT_TRUE(ConnectAndWelcome(client));
  ASSERT_EQ(nebula_client_close(client.c, 1000), 0);
  ASSERT_TRUE(loop_.RunUntil([&] { return client.rec.welcomes == 2; })) << client.rec.ErrorsText();
  client.rec.on_closed = nullptr;
  ASSERT_TRUE(CloseAndWait(client));
}

TEST_P(ClientDaemonTest, ServerDrainClosesWith1001AndWeEchoIt) {
  ASSERT_TRUE(Start());
  TestClient client(loop_, Url(), Trust());
  ASSERT_TRUE(ConnectAndWelcome(client));
  ASSERT_TRUE(daemon_->Signal(SIGTERM));
  ASSERT_TRUE(loop_.RunUntil([&] { return client.rec.closed > 0; }));
  EXPECT_EQ(client.rec.close_code, 1001);
  EXPECT_TRUE(client.rec.errors.empty()) << client.rec.ErrorsText();
  // The daemon waits for our CLOSE during drain; it exits well before its
  // drain timeout because we echoed.
  ExitStatus st = daemon_->WaitExit(drain_timeout_ms() + kTimeoutMs);
  EXPECT_TRUE(st.clean()) << st.Describe();
}

TEST_P(ClientDaemonTest, AnswersServerPingsAndStaysConnected) {
  ASSERT_TRUE(Start({{"idle-timeout", "1"}}));
  TestClient client(loop_, Url(), Trust());
  ASSERT_TRUE(ConnectAndWelcome(client));
  EXPECT_EQ(client.rec.heartbeat_interval_ms, 1000u);
  // Silent for several idle periods: the server pings, we answer; a client
  // that did not would be closed with 1001 after two periods.
  loop_.RunFor(3500);
  EXPECT_EQ(client.rec.closed, 0) << client.rec.close_code << " " << client.rec.close_reason;
  EXPECT_TRUE(client.Status().connected);
  ASSERT_TRUE(CloseAndWait(client));
  EXPECT_TRUE(client.rec.errors.empty()) << client.rec.ErrorsText();
}

TEST_P(ClientDaemonTest, ServerMessageOverOurLimitFailsWith1009) {
  ASSERT_TRUE(Start());
  TestClient client(loop_, Url(), [](nebula_client_options &o) {
    o.tls_ca_file = SharedCert().cert_path.c_str();
    o.max_message_size = 8;  // smaller than any Welcome
  });
  ASSERT_EQ(nebula_client_connect(client.c), 0);
  ASSERT_TRUE(loop_.RunUntil([&] { return client.rec.closed > 0; }));
  EXPECT_EQ(client.rec.welcomes, 0);
  EXPECT_EQ(client.rec.close_code, 1009);
  EXPECT_TRUE(client.rec.HasError(NEBULA_CLIENT_E_TOO_BIG)) << client.rec.ErrorsText();
}

TEST_P(ClientDaemonTest, PushOverTheServersLimitIsRefusedLocally) {
  ASSERT_TRUE(Start({{"max-message-size", "65536"}}));
  TestClient client(loop_, Url(), Trust());
  ASSERT_TRUE(ConnectAndWelcome(client));
  EXPECT_EQ(client.rec.max_message_size, 65536u);
  std::string data(70000, 'x');
  nebula_client_event ev = {};
  ev.id = "big-1";
  ev.type = NEBULA_EVENT_INSERT;
  ev.collection = "todos";
  ev.document_id = "d1";
  ev.data = reinterpret_cast<const uint8_t *>(data.data());
  ev.data_len = data.size();
  uint64_t request_id = 0;
  EXPECT_EQ(nebula_client_push(client.c, &ev, 1, &request_id), NEBULA_CLIENT_E_TOO_BIG);
  EXPECT_EQ(client.Status().pending_pushes, 0u);
  EXPECT_TRUE(client.Status().connected) << "nothing was sent: the session is fine";
  ASSERT_TRUE(CloseAndWait(client));
}

TEST_P(ClientDaemonTest, WrongPathIsAHandshakeError) {
  ASSERT_TRUE(Start());
  TestClient client(loop_, Url("127.0.0.1", "/nope"), Trust());
  ASSERT_EQ(nebula_client_connect(client.c), 0);
  ASSERT_TRUE(loop_.RunUntil([&] { return client.rec.closed > 0; }));
  EXPECT_EQ(client.rec.close_code, 1006);
  ASSERT_TRUE(client.rec.HasError(NEBULA_CLIENT_E_HANDSHAKE)) << client.rec.ErrorsText();
  EXPECT_NE(client.rec.errors[0].second.find("404"), std::string::npos) << client.rec.errors[0].second;
  nebula_client_status st = client.Status();
  EXPECT_EQ(st.last_error, NEBULA_CLIENT_E_HANDSHAKE);
}

TEST_P(ClientDaemonTest, FreeInsideOnWelcome) {
  ASSERT_TRUE(Start());
  TestClient client(loop_, Url(), Trust());
  client.rec.on_welcome = [&](nebula_client *c) {
    nebula_client_free(c);
    client.freed = true;
  };
  ASSERT_EQ(nebula_client_connect(client.c), 0);
  ASSERT_TRUE(loop_.RunUntil([&] { return client.freed; }));
  loop_.RunFor(200);  // nothing may call back into the freed handle (ASan would say)
  EXPECT_EQ(client.rec.closed, 0) << "no callback after free";
}

TEST_P(ClientDaemonTest, CloseBeforeOpenReportsLater) {
  ASSERT_TRUE(Start());
  TestClient client(loop_, Url(), Trust());
  ASSERT_EQ(nebula_client_connect(client.c), 0);
  EXPECT_EQ(client.Status().state, NEBULA_CLIENT_CONNECTING);
  ASSERT_EQ(nebula_client_close(client.c, 1000), 0);
  EXPECT_EQ(client.rec.closed, 0) << "never a callback from inside an API call";
  EXPECT_EQ(client.Status().state, NEBULA_CLIENT_CLOSING);
  EXPECT_EQ(nebula_client_connect(client.c), NEBULA_CLIENT_E_STATE);
  ASSERT_TRUE(loop_.RunUntil([&] { return client.rec.closed > 0; }));
  EXPECT_EQ(client.rec.close_code, 1006);
  EXPECT_EQ(client.Status().state, NEBULA_CLIENT_IDLE);
  ASSERT_TRUE(ConnectAndWelcome(client)) << "usable again";
  ASSERT_TRUE(CloseAndWait(client));
}

TEST_P(ClientDaemonTest, CallsOutOfStateAreRefused) {
  ASSERT_TRUE(Start());
  TestClient client(loop_, Url(), Trust());
  nebula_cursor cursor = {};
  nebula_client_event ev = {};
  ev.id = "e";
  ev.collection = "todos";
  EXPECT_EQ(nebula_client_subscribe(client.c, "todos", nullptr), NEBULA_CLIENT_E_STATE);
  EXPECT_EQ(nebula_client_push(client.c, &ev, 1, nullptr), NEBULA_CLIENT_E_STATE);
  EXPECT_EQ(nebula_client_close(client.c, 1000), NEBULA_CLIENT_E_STATE);
  EXPECT_EQ(client.Cursor("todos", &cursor), NEBULA_CLIENT_E_NOT_FOUND);
  ASSERT_TRUE(ConnectAndWelcome(client));
  EXPECT_EQ(nebula_client_connect(client.c), NEBULA_CLIENT_E_STATE);
  EXPECT_EQ(nebula_client_close(client.c, 1005), NEBULA_CLIENT_E_INVALID) << "1005 is never sent";
  EXPECT_EQ(nebula_client_close(client.c, 2000), NEBULA_CLIENT_E_INVALID);
  EXPECT_EQ(nebula_client_subscribe(client.c, "", nullptr), NEBULA_CLIENT_E_INVALID);
  EXPECT_EQ(nebula_client_subscribe(client.c, "tab\there", nullptr), NEBULA_CLIENT_E_INVALID);
  std::string long_name(NEBULA_CLIENT_MAX_COLLECTION + 1, 'c');
  EXPECT_EQ(nebula_client_subscribe(client.c, long_name.c_str(), nullptr), NEBULA_CLIENT_E_INVALID);
  std::vector<nebula_client_event> too_many(NEBULA_CLIENT_MAX_PUSH_EVENTS + 1, ev);
  EXPECT_EQ(nebula_client_push(client.c, too_many.data(), too_many.size(), nullptr), NEBULA_CLIENT_E_TOO_BIG);
  EXPECT_EQ(nebula_client_push(client.c, &ev, 0, nullptr), NEBULA_CLIENT_E_INVALID);
  nebula_client_event no_id = ev;
  no_id.id = nullptr;
  EXPECT_EQ(nebula_client_push(client.c, &no_id, 1, nullptr), NEBULA_CLIENT_E_INVALID);
  EXPECT_EQ(nebula_client_unsubscribe(client.c, "never"), NEBULA_CLIENT_E_NOT_FOUND);
  ASSERT_TRUE(CloseAndWait(client));
  EXPECT_EQ(nebula_client_close(client.c, 1000), NEBULA_CLIENT_E_STATE);
}

// ---- sync against the daemon ----------------------------------------------------------

nebula_client_event MakeEvent(const char *id, const char *document_id, const char *json) {
  nebula_client_event ev = {};
  ev.id = id;
  ev.type = NEBULA_EVENT_UPDATE;
  ev.collection = "todos";
  ev.document_id = document_id;
  ev.data = reinterpret_cast<const uint8_t *>(json);
  ev.data_len = strlen(json);
  ev.timestamp_ms = 1;
  ev.hlc = 1;
  return ev;
}

// Two clients on one collection: each sees the other's events once and
// never its own live; both cursors count every seq (own ones through push
// results); a re-push is a DUPLICATE; resuming from a cursor replays the
// rest, own events included.
TEST_P(ClientDaemonTest, TwoClientsSyncAndCursorsCountOwnResults) {
  ASSERT_TRUE(Start());
  auto with_id = [](const char *id) {
    return [id](nebula_client_options &o) {
      o.tls_ca_file = SharedCert().cert_path.c_str();
      o.client_id = id;
    };
  };
  TestClient a(loop_, Url(), with_id("client-a")), b(loop_, Url(), with_id("client-b"));
  ASSERT_TRUE(ConnectAndWelcome(a));
  ASSERT_TRUE(ConnectAndWelcome(b));
  for (TestClient *c : {&a, &b}) {
    ASSERT_EQ(nebula_client_subscribe(c->c, "todos", nullptr), 0);
    ASSERT_TRUE(loop_.RunUntil([&] { return !c->rec.snapshots.empty() && c->rec.snapshots.back().last; }))
        << c->rec.ErrorsText();
    ASSERT_EQ(c->rec.subscribed.size(), 1u);
    EXPECT_EQ(c->rec.subscribed[0].mode, NEBULA_SUBSCRIBE_SNAPSHOT);
  }
  std::string epoch = a.rec.snapshots.back().cursor_epoch;
  ASSERT_FALSE(epoch.empty());

  nebula_client_event batch[3] = {MakeEvent("b-1", "d1", "{\"n\":1}"), MakeEvent("b-2", "d2", "{\"n\":2}"),
                                  MakeEvent("b-3", "d3", "{\"n\":3}")};
  uint64_t request = 0;
  ASSERT_EQ(nebula_client_push(b.c, batch, 3, &request), 0);
  ASSERT_TRUE(loop_.RunUntil([&] { return !b.rec.push_results.empty() && a.rec.event_seqs.size() >= 3; }))
      << "a: " << a.rec.ErrorsText() << " b: " << b.rec.ErrorsText();
  EXPECT_EQ(b.rec.push_results[0].request_id, request);
  EXPECT_EQ(b.rec.push_results[0].results, (std::vector<std::pair<int, uint64_t>>{
                                               {NEBULA_PUSH_ACCEPTED, 1}, {NEBULA_PUSH_ACCEPTED, 2}, {NEBULA_PUSH_ACCEPTED, 3}}));
  EXPECT_EQ(a.rec.event_seqs, (std::vector<uint64_t>{1, 2, 3}));

  nebula_client_event mine = MakeEvent("a-4", "d1", "{\"n\":4}");
  mine.hlc = 2;
  ASSERT_EQ(nebula_client_push(a.c, &mine, 1, nullptr), 0);
  ASSERT_TRUE(loop_.RunUntil([&] { return !a.rec.push_results.empty() && !b.rec.event_seqs.empty(); }));
  EXPECT_EQ(a.rec.push_results[0].results, (std::vector<std::pair<int, uint64_t>>{{NEBULA_PUSH_ACCEPTED, 4}}));
  EXPECT_EQ(b.rec.event_seqs, (std::vector<uint64_t>{4})) << "b never gets its own 1-3 back";

  // A re-push after a lost result: the original seq, delivered to nobody.
  ASSERT_EQ(nebula_client_push(b.c, &batch[0], 1, nullptr), 0);
  ASSERT_TRUE(loop_.RunUntil([&] { return b.rec.push_results.size() == 2; }));
  EXPECT_EQ(b.rec.push_results[1].results, (std::vector<std::pair<int, uint64_t>>{{NEBULA_PUSH_DUPLICATE, 1}}));
  loop_.RunFor(200);
  EXPECT_EQ(a.rec.event_seqs.size(), 3u);
  EXPECT_EQ(b.rec.event_seqs.size(), 1u);

  for (TestClient *c : {&a, &b}) {
    nebula_cursor cur;
    ASSERT_EQ(c->Cursor("todos", &cur), 0);
    EXPECT_EQ(cur.seq, 4u) << "own results fill the cursor";
    EXPECT_EQ(cur.epoch, epoch);
    EXPECT_TRUE(c->rec.errors.empty()) << c->rec.ErrorsText();
  }
  ASSERT_TRUE(CloseAndWait(b));

  // a resumes from seq 2 on a new connection: 3 (b's) and 4 (its own) replay.
  ASSERT_TRUE(CloseAndWait(a));
  ASSERT_TRUE(ConnectAndWelcome(a));
  nebula_cursor from = {2, ""};
  snprintf(from.epoch, sizeof from.epoch, "%s", epoch.c_str());
  ASSERT_EQ(nebula_client_subscribe(a.c, "todos", &from), 0);
  ASSERT_TRUE(loop_.RunUntil([&] { return a.rec.event_seqs.size() >= 5; })) << a.rec.ErrorsText();
  ASSERT_EQ(a.rec.subscribed.size(), 2u);
  EXPECT_EQ(a.rec.subscribed[1].mode, NEBULA_SUBSCRIBE_REPLAY);
  EXPECT_EQ(a.rec.event_seqs, (std::vector<uint64_t>{1, 2, 3, 3, 4}));
  ASSERT_TRUE(CloseAndWait(a));
}

INSTANTIATE_TEST_SUITE_P(Transports, ClientDaemonTest, ::testing::Values(Mode::kPlain, Mode::kTls), ModeName);

// ---- TLS specifics ------------------------------------------------------------------

class ClientTlsTest : public ::testing::Test, public DaemonHarness {
 protected:
  void SetUp() override {
    ASSERT_TRUE(StartDaemon({{"tls-cert", SharedCert().cert_path}, {"tls-key", SharedCert().key_path}}));
  }
  void TearDown() override { StopDaemonAndExpectCleanExit(); }
  std::string Url(const std::string &host) const {
    return "wss://" + host + ":" + std::to_string(daemon_->listen_port()) + "/v1/sync";
  }
  Loop loop_;
};

TEST_F(ClientTlsTest, UntrustedCertificateFailsVerification) {
  TestClient client(loop_, Url("127.0.0.1"));  // system roots only
  ASSERT_EQ(client.create_rc, 0);
  ASSERT_EQ(nebula_client_connect(client.c), 0);
  ASSERT_TRUE(loop_.RunUntil([&] { return client.rec.closed > 0; }));
  EXPECT_EQ(client.rec.welcomes, 0);
  EXPECT_EQ(client.rec.close_code, 1006);
  ASSERT_TRUE(client.rec.HasError(NEBULA_CLIENT_E_TLS)) << client.rec.ErrorsText();
  EXPECT_NE(client.rec.errors[0].second.find("verif"), std::string::npos) << client.rec.errors[0].second;
}

TEST_F(ClientTlsTest, VerificationOffAcceptsAnyCertificate) {
  TestClient client(loop_, Url("127.0.0.1"), [](nebula_client_options &o) { o.tls_verify = false; });
  ASSERT_EQ(nebula_client_connect(client.c), 0);
  ASSERT_TRUE(loop_.RunUntil([&] { return client.rec.welcomes > 0 || client.rec.closed > 0; }));
  EXPECT_EQ(client.rec.welcomes, 1) << client.rec.ErrorsText();
  ASSERT_EQ(nebula_client_close(client.c, 1000), 0);
  ASSERT_TRUE(loop_.RunUntil([&] { return client.rec.closed > 0; }));
}

TEST_F(ClientTlsTest, HostNameIsVerifiedAgainstTheCertificate) {
  // The certificate names DNS:localhost and IP:127.0.0.1.
  TestClient client(loop_, Url("localhost"),
                [](nebula_client_options &o) { o.tls_ca_file = SharedCert().cert_path.c_str(); });
  ASSERT_EQ(nebula_client_connect(client.c), 0);
  ASSERT_TRUE(loop_.RunUntil([&] { return client.rec.welcomes > 0 || client.rec.closed > 0; }));
  EXPECT_EQ(client.rec.welcomes, 1) << client.rec.ErrorsText();
  ASSERT_EQ(nebula_client_close(client.c, 1000), 0);
  ASSERT_TRUE(loop_.RunUntil([&] { return client.rec.closed > 0; }));

}

// The certificate names 127.0.0.1, not 127.0.0.2: a daemon reached there
// presents a valid, trusted certificate for the wrong address.
TEST(ClientTlsName, AddressNotInTheCertificateFailsVerification) {
  struct Harness : DaemonHarness {
    ~Harness() override { StopDaemonAndExpectCleanExit(); }
  } h;
  ASSERT_TRUE(h.StartDaemon({{"listen", "127.0.0.2:0"},
                             {"tls-cert", SharedCert().cert_path},
                             {"tls-key", SharedCert().key_path}}));
  Loop loop;
  TestClient client(loop, "wss://127.0.0.2:" + std::to_string(h.daemon().listen_port()),
                    [](nebula_client_options &o) { o.tls_ca_file = SharedCert().cert_path.c_str(); });
  ASSERT_EQ(nebula_client_connect(client.c), 0);
  ASSERT_TRUE(loop.RunUntil([&] { return client.rec.closed > 0; }));
  EXPECT_EQ(client.rec.welcomes, 0);
  ASSERT_TRUE(client.rec.HasError(NEBULA_CLIENT_E_TLS)) << client.rec.ErrorsText();
  EXPECT_NE(client.rec.errors[0].second.find("mismatch"), std::string::npos) << client.rec.errors[0].second;
}

TEST_F(ClientTlsTest, MissingCaFileFailsAtCreate) {
  nebula_client_options o;
  nebula_client_options_init(&o);
  std::string url = Url("127.0.0.1");
  o.server_url = url.c_str();
  o.tls_ca_file = "/nonexistent/ca.pem";
  nebula_client *c = reinterpret_cast<nebula_client *>(1);
  EXPECT_EQ(nebula_client_create(loop_.base(), &o, &c), NEBULA_CLIENT_E_TLS);
  EXPECT_EQ(c, nullptr);
}

// ---- without a daemon ----------------------------------------------------------------

TEST(ClientBasics, CreateValidatesOptions) {
  Loop loop;
  nebula_client_options o;
  nebula_client_options_init(&o);
  EXPECT_TRUE(o.tls_verify);
  EXPECT_GT(o.connect_timeout_ms, 0);
  EXPECT_GT(o.max_message_size, 0u);
  nebula_client *c = nullptr;
  EXPECT_EQ(nebula_client_create(loop.base(), &o, &c), NEBULA_CLIENT_E_INVALID) << "no URL";
  o.server_url = "http://127.0.0.1/";
  EXPECT_EQ(nebula_client_create(loop.base(), &o, &c), NEBULA_CLIENT_E_URL);
  o.server_url = "ws://127.0.0.1:1";
  std::string long_id(NEBULA_CLIENT_MAX_CLIENT_ID + 1, 'i');
  o.client_id = long_id.c_str();
  EXPECT_EQ(nebula_client_create(loop.base(), &o, &c), NEBULA_CLIENT_E_INVALID);
  o.client_id = "ok";
  EXPECT_EQ(nebula_client_create(nullptr, &o, &c), NEBULA_CLIENT_E_INVALID);
  EXPECT_EQ(nebula_client_create(loop.base(), &o, nullptr), NEBULA_CLIENT_E_INVALID);
  ASSERT_EQ(nebula_client_create(loop.base(), &o, &c), 0);
  nebula_client_free(c);
  nebula_client_free(nullptr);
  for (int code : {0, -1, -5, -14, 3, 4, 9, 99, -99}) EXPECT_NE(nebula_client_strerror(code), nullptr);
  EXPECT_STREQ(nebula_client_strerror(NEBULA_CLIENT_OK), "success");
}

TEST(ClientBasics, ConnectionRefused) {
  Loop loop;
  uint16_t port = FindFreePort();
  ASSERT_NE(port, 0);
  TestClient client(loop, "ws://127.0.0.1:" + std::to_string(port));
  ASSERT_EQ(nebula_client_connect(client.c), 0);
  ASSERT_TRUE(loop.RunUntil([&] { return client.rec.closed > 0; }));
  EXPECT_EQ(client.rec.close_code, 1006);
  EXPECT_TRUE(client.rec.HasError(NEBULA_CLIENT_E_CONNECT)) << client.rec.ErrorsText();
  EXPECT_EQ(client.rec.closed, 1);
}

TEST(ClientBasics, ConnectTimeout) {
  // A listener that never accepts: TCP completes from the backlog, the
  // upgrade is never answered.
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in a = {};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr *>(&a), sizeof a), 0);
  ASSERT_EQ(listen(fd, 4), 0);
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr *>(&a), &len), 0);
  Loop loop;
  TestClient client(loop, "ws://127.0.0.1:" + std::to_string(ntohs(a.sin_port)),
                [](nebula_client_options &o) { o.connect_timeout_ms = 300; });
  ASSERT_EQ(nebula_client_connect(client.c), 0);
  ASSERT_TRUE(loop.RunUntil([&] { return client.rec.closed > 0; }));
  EXPECT_TRUE(client.rec.HasError(NEBULA_CLIENT_E_TIMEOUT)) << client.rec.ErrorsText();
  EXPECT_EQ(client.rec.close_code, 1006);
  close(fd);
}

// ---- a scripted server ------------------------------------------------------------------

struct ClientMessageDeleter {
  void operator()(Nebula__Sync__V1__ClientMessage *m) const { nebula__sync__v1__client_message__free_unpacked(m, nullptr); }
};
using ClientMessagePtr = std::unique_ptr<Nebula__Sync__V1__ClientMessage, ClientMessageDeleter>;

std::string Pack(Nebula__Sync__V1__ServerMessage *m) {
  std::string out(nebula__sync__v1__server_message__get_packed_size(m), '\0');
  nebula__sync__v1__server_message__pack(m, reinterpret_cast<uint8_t *>(&out[0]));
  return out;
}

std::string WelcomeBytes(uint32_t heartbeat_ms = 30000) {
  Nebula__Sync__V1__Limits limits;
  nebula__sync__v1__limits__init(&limits);
  limits.max_message_size = 1 << 20;
  Nebula__Sync__V1__Welcome w;
  nebula__sync__v1__welcome__init(&w);
  w.session_id = const_cast<char *>("scripted-session");
  w.tenant = const_cast<char *>("acme");
  w.heartbeat_interval_ms = heartbeat_ms;
  w.limits = &limits;
  w.server_version = const_cast<char *>("scripted");
  Nebula__Sync__V1__ServerMessage m;
  nebula__sync__v1__server_message__init(&m);
  m.message_case = NEBULA__SYNC__V1__SERVER_MESSAGE__MESSAGE_WELCOME;
  m.welcome = &w;
  return Pack(&m);
}

std::string ErrorBytes(Nebula__Sync__V1__ErrorCode code, const char *text) {
  Nebula__Sync__V1__Error e;
  nebula__sync__v1__error__init(&e);
  e.code = code;
  e.message = const_cast<char *>(text);
  Nebula__Sync__V1__ServerMessage m;
  nebula__sync__v1__server_message__init(&m);
  m.message_case = NEBULA__SYNC__V1__SERVER_MESSAGE__MESSAGE_ERROR;
  m.error = &e;
  return Pack(&m);
}

std::string SubscribedBytes(const char *collection, Nebula__Sync__V1__SubscribeMode mode, uint64_t seq,
                            const char *epoch) {
  Nebula__Sync__V1__Cursor head;
  nebula__sync__v1__cursor__init(&head);
  head.seq = seq;
  head.epoch = const_cast<char *>(epoch);
  Nebula__Sync__V1__Subscribed s;
  nebula__sync__v1__subscribed__init(&s);
  s.collection = const_cast<char *>(collection);
  s.mode = mode;
  s.head = &head;
  Nebula__Sync__V1__ServerMessage m;
  nebula__sync__v1__server_message__init(&m);
  m.message_case = NEBULA__SYNC__V1__SERVER_MESSAGE__MESSAGE_SUBSCRIBED;
  m.subscribed = &s;
  return Pack(&m);
}

// Events of one collection with these seqs; `data` for every event.
std::string EventsBytes(const char *collection, const std::vector<uint64_t> &seqs, const std::string &data = "{}") {
  std::vector<Nebula__Sync__V1__Event> events(seqs.size());
  std::vector<Nebula__Sync__V1__Event *> ptrs;
  std::vector<std::string> ids;
  for (uint64_t s : seqs) ids.push_back("other-" + std::to_string(s));
  for (size_t i = 0; i < seqs.size(); i++) {
    nebula__sync__v1__event__init(&events[i]);
    events[i].id = const_cast<char *>(ids[i].c_str());
    events[i].type = NEBULA__SYNC__V1__EVENT_TYPE__EVENT_TYPE_UPDATE;
    events[i].collection = const_cast<char *>(collection);
    events[i].document_id = const_cast<char *>("doc");
    events[i].data.data = reinterpret_cast<uint8_t *>(const_cast<char *>(data.data()));
    events[i].data.len = data.size();
    events[i].client_id = const_cast<char *>("someone-else");
    events[i].seq = seqs[i];
    ptrs.push_back(&events[i]);
  }
  Nebula__Sync__V1__Events e;
  nebula__sync__v1__events__init(&e);
  e.collection = const_cast<char *>(collection);
  e.n_events = ptrs.size();
  e.events = ptrs.data();
  Nebula__Sync__V1__ServerMessage m;
  nebula__sync__v1__server_message__init(&m);
  m.message_case = NEBULA__SYNC__V1__SERVER_MESSAGE__MESSAGE_EVENTS;
  m.events = &e;
  return Pack(&m);
}

std::string SnapshotBytes(const char *collection, const std::vector<std::string> &doc_ids, bool last, uint64_t seq,
                          const char *epoch) {
  std::vector<Nebula__Sync__V1__Document> docs(doc_ids.size());
  std::vector<Nebula__Sync__V1__Document *> ptrs;
  for (size_t i = 0; i < doc_ids.size(); i++) {
    nebula__sync__v1__document__init(&docs[i]);
    docs[i].collection = const_cast<char *>(collection);
    docs[i].document_id = const_cast<char *>(doc_ids[i].c_str());
    docs[i].seq = i + 1;
    ptrs.push_back(&docs[i]);
  }
  Nebula__Sync__V1__Cursor cursor;
  nebula__sync__v1__cursor__init(&cursor);
  cursor.seq = seq;
  cursor.epoch = const_cast<char *>(epoch);
  Nebula__Sync__V1__Snapshot s;
  nebula__sync__v1__snapshot__init(&s);
  s.collection = const_cast<char *>(collection);
  s.n_documents = ptrs.size();
  s.documents = ptrs.data();
  s.last = last;
  if (last) s.cursor = &cursor;
  Nebula__Sync__V1__ServerMessage m;
  nebula__sync__v1__server_message__init(&m);
  m.message_case = NEBULA__SYNC__V1__SERVER_MESSAGE__MESSAGE_SNAPSHOT;
  m.snapshot = &s;
  return Pack(&m);
}

std::string PushResultBytes(uint64_t request_id, const char *event_id, Nebula__Sync__V1__PushStatus status,
                            uint64_t seq) {
  Nebula__Sync__V1__EventResult r;
  nebula__sync__v1__event_result__init(&r);
  r.event_id = const_cast<char *>(event_id);
  r.status = status;
  r.seq = seq;
  Nebula__Sync__V1__EventResult *results[1] = {&r};
  Nebula__Sync__V1__PushResult p;
  nebula__sync__v1__push_result__init(&p);
  p.request_id = request_id;
  p.n_results = 1;
  p.results = results;
  Nebula__Sync__V1__ServerMessage m;
  nebula__sync__v1__server_message__init(&m);
  m.message_case = NEBULA__SYNC__V1__SERVER_MESSAGE__MESSAGE_PUSH_RESULT;
  m.push_result = &p;
  return Pack(&m);
}

// One WebSocket connection on 127.0.0.1, served by a script on a thread.
// Script steps never block longer than kTimeoutMs; the first failure is
// recorded and turns every later step into a no-op, and the test reads the
// failures after Join().
class ScriptedServer {
 public:
  ScriptedServer() {
    listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a = {};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (listen_fd_ < 0 || bind(listen_fd_, reinterpret_cast<sockaddr *>(&a), sizeof a) != 0 ||
        listen(listen_fd_, 4) != 0 || getsockname(listen_fd_, reinterpret_cast<sockaddr *>(&a), &len) != 0)
      Fail("cannot listen");
    port_ = ntohs(a.sin_port);
  }
  ~ScriptedServer() {
    Join();
    if (fd_ >= 0) close(fd_);
    if (listen_fd_ >= 0) close(listen_fd_);
  }
  ScriptedServer(const ScriptedServer &) = delete;
  ScriptedServer &operator=(const ScriptedServer &) = delete;

  std::string Url() const { return "ws://127.0.0.1:" + std::to_string(port_) + "/v1/sync"; }
  // Runs script after accepting and answering the upgrade (with response,
  // if given, instead of a correct 101).
  void Run(std::function<void(ScriptedServer &)> script, std::string response = "") {
    thread_ = std::thread([this, script, response] {
      if (Accept() && Handshake(response)) script(*this);
    });
  }
  void Join() {
    if (thread_.joinable()) thread_.join();
  }
  std::string Failures() {
    std::lock_guard<std::mutex> lock(mu_);
    return failures_;
  }
  bool ok() {
    std::lock_guard<std::mutex> lock(mu_);
    return failures_.empty();
  }
  void Fail(const std::string &why) {
    std::lock_guard<std::mutex> lock(mu_);
    if (failures_.empty()) failures_ = why;
  }

  bool Send(const std::string &bytes) {
    if (!ok()) return false;
    size_t off = 0;
    while (off < bytes.size()) {
      ssize_t n = send(fd_, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
      if (n <= 0) {
        Fail("send failed: " + std::string(strerror(errno)));
        return false;
      }
      off += size_t(n);
    }
    return true;
  }
  bool SendFrame(uint8_t opcode, const std::string &payload, bool fin = true, bool masked = false) {
    FrameSpec spec;
    spec.opcode = opcode;
    spec.payload = payload;
    spec.fin = fin;
    spec.masked = masked;
    return Send(EncodeFrame(spec));
  }
  bool SendMessage(const std::string &packed) { return SendFrame(kOpBinary, packed); }
  bool SendClose(uint16_t code, const std::string &reason = "") { return SendFrame(kOpClose, ClosePayload(code, reason)); }

  // The next client frame; it must be masked (RFC 6455 5.1).
  bool ReadFrame(Frame *f) {
    std::string h;
    if (!ReadExact(2, &h)) return false;
    f->fin = (h[0] & 0x80) != 0;
    f->rsv = uint8_t(h[0] & 0x70);
    f->opcode = uint8_t(h[0] & 0x0F);
    f->masked = (h[1] & 0x80) != 0;
    uint64_t len = uint8_t(h[1]) & 0x7F;
    std::string ext;
    if (len == 126 || len == 127) {
      if (!ReadExact(len == 126 ? 2 : 8, &ext)) return false;
      len = 0;
      for (char ch : ext) len = (len << 8) | uint8_t(ch);
    }
    if (!f->masked) {
      Fail("unmasked client frame");
      return false;
    }
    std::string key;
    if (!ReadExact(4, &key) || !ReadExact(size_t(len), &f->payload)) return false;
    for (size_t i = 0; i < f->payload.size(); i++) f->payload[i] = char(f->payload[i] ^ key[i % 4]);
    masks_.push_back(key);
    return true;
  }
  // The next client frame, which must be a binary ClientMessage of this case.
  ClientMessagePtr ReadMessage(Nebula__Sync__V1__ClientMessage__MessageCase want) {
    Frame f;
    if (!ReadFrame(&f)) return nullptr;
    if (f.opcode != kOpBinary || !f.fin) {
      Fail("expected a binary message, got opcode " + std::to_string(f.opcode));
      return nullptr;
    }
    ClientMessagePtr m(nebula__sync__v1__client_message__unpack(
        nullptr, f.payload.size(), reinterpret_cast<const uint8_t *>(f.payload.data())));
    if (!m || m->message_case != want) {
      Fail("expected ClientMessage case " + std::to_string(want));
      return nullptr;
    }
    return m;
  }
  // The next frame must be a CLOSE with this code.
  bool ExpectClose(uint16_t code) {
    Frame f;
    if (!ReadFrame(&f)) return false;
    if (f.opcode != kOpClose || f.close_code() != code) {
      Fail("expected CLOSE " + std::to_string(code) + ", got " + f.Describe());
      return false;
    }
    return true;
  }
  // Reads until the client closes TCP; false on timeout.
  bool WaitForEof() {
    char buf[4096];
    int64_t deadline = NowMs() + kTimeoutMs;
    for (;;) {
      pollfd p{fd_, POLLIN, 0};
      int left = int(deadline - NowMs());
      if (left <= 0 || poll(&p, 1, left) <= 0) {
        Fail("the client did not close TCP");
        return false;
      }
      ssize_t n = recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) return true;
    }
  }
  void CloseConnection() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }
  const std::vector<std::string> &masks() const { return masks_; }

 private:
  bool Accept() {
    pollfd p{listen_fd_, POLLIN, 0};
    if (!ok() || poll(&p, 1, kTimeoutMs) != 1) {
      Fail("no connection");
      return false;
    }
    fd_ = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd_ < 0) Fail("accept failed");
    return fd_ >= 0;
  }
  bool Handshake(const std::string &response) {
    std::string request;
    while (request.find("\r\n\r\n") == std::string::npos) {
      std::string more;
      if (!ReadExact(1, &more)) return false;
      request += more;
    }
    std::string lower = request;
    std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
    size_t k = lower.find("\r\nsec-websocket-key:");
    if (k == std::string::npos || lower.find("\r\nsec-websocket-protocol: nebula-sync.v1\r\n") == std::string::npos ||
        request.rfind("GET /v1/sync HTTP/1.1\r\n", 0) != 0) {
      Fail("bad upgrade request:\n" + request);
      return false;
    }
    size_t start = request.find_first_not_of(' ', k + 20);
    std::string key = request.substr(start, request.find("\r\n", start) - start);
    return Send(!response.empty() ? response
                                  : "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                    "Connection: Upgrade\r\nSec-WebSocket-Accept: " +
                                        ExpectedAcceptKey(key) + "\r\nSec-WebSocket-Protocol: nebula-sync.v1\r\n\r\n");
  }
  bool ReadExact(size_t n, std::string *out) {
    out->clear();
    int64_t deadline = NowMs() + kTimeoutMs;
    while (out->size() < n) {
      if (!ok()) return false;
      pollfd p{fd_, POLLIN, 0};
      int left = int(deadline - NowMs());
      if (left <= 0 || poll(&p, 1, left) <= 0) {
        Fail("timed out reading from the client");
        return false;
      }
      char buf[65536];
      ssize_t got = recv(fd_, buf, std::min(sizeof buf, n - out->size()), 0);
      if (got <= 0) {
        Fail("the client closed the connection early");
        return false;
      }
      out->append(buf, size_t(got));
    }
    return true;
  }

  int listen_fd_ = -1;
  int fd_ = -1;
  uint16_t port_ = 0;
  std::thread thread_;
  std::mutex mu_;
  std::string failures_;
  std::vector<std::string> masks_;
};

class ClientScriptTest : public ::testing::Test {
 protected:
  void TearDown() override {
    server_.Join();
    EXPECT_TRUE(server_.ok()) << "server script: " << server_.Failures();
  }
  Loop loop_;
  ScriptedServer server_;
};

// Fragmented Welcome with a ping between the fragments; a REPLAY
// subscription whose events repeat the cursor; our own push whose seq
// arrives (as a PushResult) after later events; a message large enough to
// span buffer chunks; then the server closes with 1001.
TEST_F(ClientScriptTest, ReplayWithOwnPushesDeliversEachEventOnce) {
  uint64_t pushed_request = 0;
  std::vector<uint64_t> cursor_after_events;
  uint64_t cursor_after_push_result = 0;
  server_.Run([&pushed_request](ScriptedServer &s) {
    ClientMessagePtr hello = s.ReadMessage(NEBULA__SYNC__V1__CLIENT_MESSAGE__MESSAGE_HELLO);
    if (!hello) return;
    if (std::string(hello->hello->client_id) != "c1" || std::string(hello->hello->auth_token) != "tok-123" ||
        std::string(hello->hello->client_version).empty())
      s.Fail("unexpected Hello fields");
    std::string welcome = WelcomeBytes();
    s.SendFrame(kOpBinary, welcome.substr(0, 5), false);
    s.SendFrame(kOpPing, "hb");
    s.SendFrame(kOpContinuation, welcome.substr(5, 5), false);
    s.SendFrame(kOpContinuation, welcome.substr(10), true);
    Frame pong;
    if (!s.ReadFrame(&pong)) return;
    if (pong.opcode != kOpPong || pong.payload != "hb") s.Fail("expected PONG hb, got " + pong.Describe());

    ClientMessagePtr sub = s.ReadMessage(NEBULA__SYNC__V1__CLIENT_MESSAGE__MESSAGE_SUBSCRIBE);
    if (!sub) return;
    if (sub->subscribe->n_collections != 1 || std::string(sub->subscribe->collections[0]->collection) != "todos" ||
        !sub->subscribe->collections[0]->cursor || sub->subscribe->collections[0]->cursor->seq != 5 ||
        std::string(sub->subscribe->collections[0]->cursor->epoch) != "e1")
      s.Fail("unexpected Subscribe");
    s.SendMessage(SubscribedBytes("todos", NEBULA__SYNC__V1__SUBSCRIBE_MODE__SUBSCRIBE_MODE_REPLAY, 9, "e1"));
    s.SendMessage(EventsBytes("todos", {5, 6, 7}));  // 5 is the cursor itself

    ClientMessagePtr push = s.ReadMessage(NEBULA__SYNC__V1__CLIENT_MESSAGE__MESSAGE_PUSH);
    if (!push) return;
    if (push->push->n_events != 1 || std::string(push->push->events[0]->id) != "own-8" ||
        std::string(push->push->events[0]->collection) != "todos")
      s.Fail("unexpected Push");
    // Someone else's 9 and 10 overtake the result for our 8.
    s.SendMessage(EventsBytes("todos", {9, 10}));
    s.SendMessage(PushResultBytes(push->push->request_id, "own-8",
                                  NEBULA__SYNC__V1__PUSH_STATUS__PUSH_STATUS_ACCEPTED, 8));
    pushed_request = push->push->request_id;
    s.SendMessage(EventsBytes("todos", {10, 11}));
    s.SendMessage(EventsBytes("todos", {12}, std::string(300000, 'z')));
    s.SendClose(1001, "bye");
    s.ExpectClose(1001);
    s.CloseConnection();
  });

  TestClient client(loop_, server_.Url(), [](nebula_client_options &o) {
    o.client_id = "c1";
    o.auth_token = "tok-123";
  });
  client.rec.on_welcome = [](nebula_client *c) {
    nebula_cursor from = {5, "e1"};
    EXPECT_EQ(nebula_client_subscribe(c, "todos", &from), 0);
  };
  bool pushed = false;
  client.rec.on_events = [&](nebula_client *c) {
    nebula_cursor cur;
    EXPECT_EQ(nebula_client_get_cursor(c, "todos", &cur), 0);
    cursor_after_events.push_back(cur.seq);
    if (pushed) return;
    pushed = true;
    nebula_client_event ev = {};
    ev.id = "own-8";
    ev.type = NEBULA_EVENT_INSERT;
    ev.collection = "todos";
    ev.document_id = "d8";
    ev.data = reinterpret_cast<const uint8_t *>("{}");
    ev.data_len = 2;
    ev.client_id = "c1";
    uint64_t id = 0;
    EXPECT_EQ(nebula_client_push(c, &ev, 1, &id), 0);
    EXPECT_GT(id, 0u);
    nebula_client_status st;
    nebula_client_get_status(c, &st);
    EXPECT_EQ(st.pending_pushes, 1u);
    EXPECT_EQ(st.pending_events, 1u);
  };
  client.rec.on_push_result = [&](nebula_client *c) {
    nebula_cursor cur;
    EXPECT_EQ(nebula_client_get_cursor(c, "todos", &cur), 0);
    cursor_after_push_result = cur.seq;
  };
  ASSERT_EQ(nebula_client_connect(client.c), 0);
  ASSERT_TRUE(loop_.RunUntil([&] { return client.rec.closed > 0; })) << server_.Failures();
  server_.Join();

  EXPECT_EQ(client.rec.welcomes, 1);
  EXPECT_EQ(client.rec.session_id, "scripted-session");
  EXPECT_EQ(client.rec.tenant, "acme");
  ASSERT_EQ(client.rec.subscribed.size(), 1u);
  EXPECT_EQ(client.rec.subscribed[0].mode, NEBULA_SUBSCRIBE_REPLAY);
  EXPECT_EQ(client.rec.subscribed[0].head_seq, 9u);
  EXPECT_EQ(client.rec.subscribed[0].head_epoch, "e1");
  EXPECT_EQ(client.rec.event_seqs, (std::vector<uint64_t>{6, 7, 9, 10, 11, 12}))
      << "5 is the cursor and the second 10 a repeat: dropped; 8 is our own";
  ASSERT_EQ(client.rec.event_data_sizes.size(), 6u);
  EXPECT_EQ(client.rec.event_data_sizes.back(), 300000u);
  EXPECT_EQ(cursor_after_events, (std::vector<uint64_t>{7, 7, 11, 12})) << "the gap at 8 holds the cursor at 7";
  EXPECT_EQ(cursor_after_push_result, 10u) << "our 8 fills the gap: 9 and 10 fold in";
  ASSERT_EQ(client.rec.push_results.size(), 1u);
  EXPECT_EQ(client.rec.push_results[0].request_id, pushed_request);
  EXPECT_EQ(client.rec.push_results[0].results,
            (std::vector<std::pair<int, uint64_t>>{{NEBULA_PUSH_ACCEPTED, 8}}));
  nebula_cursor cur;
  ASSERT_EQ(client.Cursor("todos", &cur), 0) << "cursors outlive the connection";
  EXPECT_EQ(cur.seq, 12u);
  EXPECT_STREQ(cur.epoch, "e1");
  EXPECT_EQ(client.rec.close_code, 1001);
  EXPECT_EQ(client.rec.close_reason, "bye");
  EXPECT_TRUE(client.rec.errors.empty()) << client.rec.ErrorsText();
  EXPECT_EQ(client.Status().pending_pushes, 0u);
  EXPECT_GT(client.Status().last_sync_time_ms, 0);
  // Masks: one per frame, not all the same.
  std::vector<std::string> masks = server_.masks();
  ASSERT_GE(masks.size(), 4u);
  std::sort(masks.begin(), masks.end());
  EXPECT_GT(std::unique(masks.begin(), masks.end()) - masks.begin(), 1);
}

// Snapshot pages, then live events; the client closes from a callback.
TEST_F(ClientScriptTest, SnapshotSetsTheCursorThenLiveEventsFollow) {
  server_.Run([](ScriptedServer &s) {
    if (!s.ReadMessage(NEBULA__SYNC__V1__CLIENT_MESSAGE__MESSAGE_HELLO)) return;
    s.SendMessage(WelcomeBytes());
    ClientMessagePtr sub = s.ReadMessage(NEBULA__SYNC__V1__CLIENT_MESSAGE__MESSAGE_SUBSCRIBE);
    if (!sub) return;
    if (sub->subscribe->collections[0]->cursor) s.Fail("a snapshot subscription carries no cursor");
    s.SendMessage(SubscribedBytes("notes", NEBULA__SYNC__V1__SUBSCRIBE_MODE__SUBSCRIBE_MODE_SNAPSHOT, 3, "e2"));
    s.SendMessage(SnapshotBytes("notes", {"a", "b"}, false, 0, ""));
    s.SendMessage(SnapshotBytes("notes", {"c"}, true, 3, "e2"));
    s.SendMessage(EventsBytes("notes", {3, 4}));
    s.ExpectClose(1000);
    s.SendClose(1000);
    s.CloseConnection();
  });
  TestClient client(loop_, server_.Url());
  std::vector<int> cursor_rc_during_snapshot;
  client.rec.on_welcome = [](nebula_client *c) { EXPECT_EQ(nebula_client_subscribe(c, "notes", nullptr), 0); };
  client.rec.on_snapshot = [&](nebula_client *c) {
    nebula_cursor cur;
    cursor_rc_during_snapshot.push_back(nebula_client_get_cursor(c, "notes", &cur));
  };
  client.rec.on_events = [](nebula_client *c) { EXPECT_EQ(nebula_client_close(c, 1000), 0); };
  ASSERT_EQ(nebula_client_connect(client.c), 0);
  ASSERT_TRUE(loop_.RunUntil([&] { return client.rec.closed > 0; })) << server_.Failures();

  ASSERT_EQ(client.rec.snapshots.size(), 2u);
  EXPECT_EQ(client.rec.snapshots[0].doc_ids, (std::vector<std::string>{"a", "b"}));
  EXPECT_FALSE(client.rec.snapshots[0].last);
  EXPECT_FALSE(client.rec.snapshots[0].has_cursor);
  EXPECT_TRUE(client.rec.snapshots[1].last);
  ASSERT_TRUE(client.rec.snapshots[1].has_cursor);
  EXPECT_EQ(client.rec.snapshots[1].cursor_seq, 3u);
  EXPECT_EQ(client.rec.snapshots[1].cursor_epoch, "e2");
  EXPECT_EQ(cursor_rc_during_snapshot, (std::vector<int>{NEBULA_CLIENT_E_AGAIN, NEBULA_CLIENT_OK}));
  EXPECT_EQ(client.rec.event_seqs, (std::vector<uint64_t>{4})) << "3 is covered by the snapshot";
  nebula_cursor cur;
  ASSERT_EQ(client.Cursor("notes", &cur), 0);
  EXPECT_EQ(cur.seq, 4u);
  EXPECT_STREQ(cur.epoch, "e2");
  EXPECT_EQ(client.rec.close_code, 1000);
  EXPECT_TRUE(client.rec.errors.empty()) << client.rec.ErrorsText();
}

TEST_F(ClientScriptTest, UnauthenticatedThen1008) {
  server_.Run([](ScriptedServer &s) {
    if (!s.ReadMessage(NEBULA__SYNC__V1__CLIENT_MESSAGE__MESSAGE_HELLO)) return;
    s.SendMessage(ErrorBytes(NEBULA__SYNC__V1__ERROR_CODE__ERROR_CODE_UNAUTHENTICATED, "bad token"));
    s.SendClose(1008, "unauthenticated");
    s.ExpectClose(1008);
    s.CloseConnection();
  });
  TestClient client(loop_, server_.Url());
  ASSERT_EQ(nebula_client_connect(client.c), 0);
  ASSERT_TRUE(loop_.RunUntil([&] { return client.rec.closed > 0; })) << server_.Failures();
  EXPECT_EQ(client.rec.welcomes, 0);
  ASSERT_EQ(client.rec.errors.size(), 1u) << client.rec.ErrorsText();
  EXPECT_EQ(client.rec.errors[0].first, NEBULA_SERVER_E_UNAUTHENTICATED);
  EXPECT_EQ(client.rec.errors[0].second, "bad token");
  EXPECT_EQ(client.rec.close_code, 1008);
  EXPECT_EQ(client.rec.close_reason, "unauthenticated");
}

// A server that breaks the rules gets our CLOSE with the RFC's code.
struct Violation {
  const char *name;
  std::function<void(ScriptedServer &)> misbehave;
  uint16_t close_code;
  int error;
};

void PrintTo(const Violation &v, std::ostream *os) { *os << v.name; }

class ClientViolationTest : public ClientScriptTest, public ::testing::WithParamInterface<Violation> {};

TEST_P(ClientViolationTest, ClientFailsTheConnection) {
  const Violation &v = GetParam();
  server_.Run([&v](ScriptedServer &s) {
    if (!s.ReadMessage(NEBULA__SYNC__V1__CLIENT_MESSAGE__MESSAGE_HELLO)) return;
    v.misbehave(s);
    s.ExpectClose(v.close_code);
    s.WaitForEof();
    s.CloseConnection();
  });
  TestClient client(loop_, server_.Url(), [](nebula_client_options &o) { o.max_message_size = 4096; });
  ASSERT_EQ(nebula_client_connect(client.c), 0);
  ASSERT_TRUE(loop_.RunUntil([&] { return client.rec.closed > 0; })) << server_.Failures();
  EXPECT_EQ(client.rec.close_code, v.close_code);
  EXPECT_TRUE(client.rec.HasError(v.error)) << client.rec.ErrorsText();
}

INSTANTIATE_TEST_SUITE_P(
    Servers, ClientViolationTest,
    ::testing::Values(
        Violation{"MaskedFrame", [](ScriptedServer &s) { s.SendFrame(kOpBinary, WelcomeBytes(), true, true); },
                  1002, NEBULA_CLIENT_E_PROTOCOL},
        Violation{"NotProtobuf", [](ScriptedServer &s) { s.SendMessage("\xff\xff\xff\xff"); }, 1002,
                  NEBULA_CLIENT_E_PROTOCOL},
        Violation{"EventsBeforeWelcome", [](ScriptedServer &s) { s.SendMessage(EventsBytes("x", {1})); }, 1002,
                  NEBULA_CLIENT_E_PROTOCOL},
        Violation{"TooBig",
                  [](ScriptedServer &s) {
                    FrameSpec spec;
                    spec.masked = false;
                    spec.declared_length = 5000;  // only the header: the client must not wait for the body
                    s.Send(EncodeFrame(spec));
                  },
                  1009, NEBULA_CLIENT_E_TOO_BIG},
        Violation{"TooBigInFragments",
                  [](ScriptedServer &s) {
                    s.SendFrame(kOpBinary, std::string(3000, 'a'), false);
                    s.SendFrame(kOpContinuation, std::string(3000, 'a'), true);
                  },
                  1009, NEBULA_CLIENT_E_TOO_BIG},
        Violation{"ReservedBits",
                  [](ScriptedServer &s) {
                    FrameSpec spec;
                    spec.masked = false;
                    spec.rsv = kRsv1;
                    spec.payload = WelcomeBytes();
                    s.Send(EncodeFrame(spec));
                  },
                  1002, NEBULA_CLIENT_E_PROTOCOL}),
    [](const ::testing::TestParamInfo<Violation> &info) { return std::string(info.param.name); });

TEST_F(ClientScriptTest, BadAcceptKeyIsAHandshakeError) {
  server_.Run([](ScriptedServer &s) { s.WaitForEof(); },
              "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              "Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n");
  TestClient client(loop_, server_.Url());
  ASSERT_EQ(nebula_client_connect(client.c), 0);
  ASSERT_TRUE(loop_.RunUntil([&] { return client.rec.closed > 0; }));
  EXPECT_TRUE(client.rec.HasError(NEBULA_CLIENT_E_HANDSHAKE)) << client.rec.ErrorsText();
  EXPECT_EQ(client.rec.close_code, 1006);
}

// Welcome promises pings every 200 ms of silence; then the server goes
// quiet. The client pings, hears nothing, and gives up.
TEST_F(ClientScriptTest, SilentServerIsDetected) {
  server_.Run([](ScriptedServer &s) {
    if (!s.ReadMessage(NEBULA__SYNC__V1__CLIENT_MESSAGE__MESSAGE_HELLO)) return;
    s.SendMessage(WelcomeBytes(200));
    Frame f;
    if (!s.ReadFrame(&f)) return;
    if (f.opcode != kOpPing) s.Fail("expected the client's PING, got " + f.Describe());
    s.WaitForEof();
    s.CloseConnection();
  });
  TestClient client(loop_, server_.Url());
  ASSERT_EQ(nebula_client_connect(client.c), 0);
  ASSERT_TRUE(loop_.RunUntil([&] { return client.rec.closed > 0; })) << server_.Failures();
  EXPECT_EQ(client.rec.welcomes, 1);
  EXPECT_TRUE(client.rec.HasError(NEBULA_CLIENT_E_TIMEOUT)) << client.rec.ErrorsText();
  EXPECT_EQ(client.rec.close_code, 1006);
}

// Our CLOSE is never echoed: the close deadline ends it.
TEST_F(ClientScriptTest, MissingCloseEchoTimesOut) {
  server_.Run([](ScriptedServer &s) {
    if (!s.ReadMessage(NEBULA__SYNC__V1__CLIENT_MESSAGE__MESSAGE_HELLO)) return;
    s.SendMessage(WelcomeBytes());
    s.ExpectClose(4001);
    s.WaitForEof();
    s.CloseConnection();
  });
  TestClient client(loop_, server_.Url(), [](nebula_client_options &o) { o.close_timeout_ms = 300; });
  client.rec.on_welcome = [](nebula_client *c) { EXPECT_EQ(nebula_client_close(c, 4001), 0); };
  ASSERT_EQ(nebula_client_connect(client.c), 0);
  ASSERT_TRUE(loop_.RunUntil([&] { return client.rec.closed > 0; })) << server_.Failures();
  EXPECT_TRUE(client.rec.HasError(NEBULA_CLIENT_E_TIMEOUT)) << client.rec.ErrorsText();
  EXPECT_EQ(client.rec.close_code, 1006);
}

// Pushes unanswered when the connection drops are forgotten (the
// application re-pushes them), and the status says so.
TEST_F(ClientScriptTest, ConnectionLossDropsPendingPushes) {
  server_.Run([](ScriptedServer &s) {
    if (!s.ReadMessage(NEBULA__SYNC__V1__CLIENT_MESSAGE__MESSAGE_HELLO)) return;
    s.SendMessage(WelcomeBytes());
    if (!s.ReadMessage(NEBULA__SYNC__V1__CLIENT_MESSAGE__MESSAGE_PUSH)) return;
    s.CloseConnection();  // TCP gone, no CLOSE
  });
  TestClient client(loop_, server_.Url());
  size_t pending_seen = 0;
  client.rec.on_welcome = [&](nebula_client *c) {
    nebula_client_event ev[2] = {};
    ev[0].id = "a";
    ev[0].collection = "todos";
    ev[1].id = "b";
    ev[1].collection = "todos";
    EXPECT_EQ(nebula_client_push(c, ev, 2, nullptr), 0);
    nebula_client_status st;
    nebula_client_get_status(c, &st);
    pending_seen = st.pending_events;
  };
  ASSERT_EQ(nebula_client_connect(client.c), 0);
  ASSERT_TRUE(loop_.RunUntil([&] { return client.rec.closed > 0; })) << server_.Failures();
  EXPECT_EQ(pending_seen, 2u);
  EXPECT_EQ(client.rec.close_code, 1006);
  EXPECT_TRUE(client.rec.HasError(NEBULA_CLIENT_E_CLOSED)) << client.rec.ErrorsText();
  EXPECT_EQ(client.Status().pending_pushes, 0u);
  EXPECT_EQ(client.Status().state, NEBULA_CLIENT_IDLE);
}

}  // namespace
}  // namespace nebula_test
