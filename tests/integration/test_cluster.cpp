// The cluster: a real redis-server (append-only file on), three nebula-syncd
// brokers on --storage redis, and HAProxy with deploy/haproxy/haproxy.cfg in
// front, all on loopback. What users of a cluster rely on:
//  - clients spread over the brokers see every event once, in one order;
//  - a broker killed with SIGKILL mid-stream: its clients reconnect through
//    the proxy to another broker and resume from their cursors, nothing lost
//    or doubled;
//  - Redis killed and restarted: pushes meanwhile are refused retryably,
//    brokers recover by themselves, nothing acknowledged is lost;
//  - two brokers writing one document concurrently converge, under every
//    conflict strategy.
#include <gtest/gtest.h>

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "daemon_process.h"
#include "redis_server.h"
#include "sync_test_client.h"

using namespace nebula_test;
using ::testing::AssertionFailure;
using ::testing::AssertionResult;
using ::testing::AssertionSuccess;

namespace {

constexpr int kBrokers = 3;
constexpr int kLongMs = 60000;

std::string HaproxyBinary() {
  for (const char *path : {"/usr/sbin/haproxy", "/usr/local/sbin/haproxy", "/usr/bin/haproxy"})
    if (access(path, X_OK) == 0) return path;
  return "";
}

bool WaitUntil(const std::function<bool()> &pred, int timeout_ms) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return true;
}

// Redis + three brokers + HAProxy.
class Cluster {
 public:
  AssertionResult Start(const std::string &conflict_rules = "") {
    std::string error;
    if (HaproxyBinary().empty())
      return AssertionFailure() << "haproxy is not installed (bash tools/install-deps.sh installs it)";
    if (!redis_.Start({.append_only = true}, &error)) return AssertionFailure() << error;
    conflict_rules_ = conflict_rules;
    for (int i = 0; i < kBrokers; i++) {
      AssertionResult r = StartBroker(i);
      if (!r) return r;
    }
    return StartProxy();
  }

  AssertionResult StartBroker(int i) {
    std::vector<std::string> args = {"--storage", "redis", "--redis-url", redis_.url(),
                                     "--redis-prefix", "cluster:", "--workers", "2",
                                     "--drain-timeout", "2"};
    args.insert(args.end(), {"--listen", "127.0.0.1:" + std::to_string(listen_port(i)),
                             "--admin-listen", "127.0.0.1:" + std::to_string(admin_port(i))});
    if (!conflict_rules_.empty()) args.insert(args.end(), {"--conflict-rules", conflict_rules_});
    brokers_[i] = std::make_unique<DaemonProcess>();
    if (!brokers_[i]->Start(args) || !brokers_[i]->WaitForReady())
      return AssertionFailure() << "broker " << i << " did not start:\n" << Tail(brokers_[i]->Stderr());
    if (!WaitUntil([&] { return HttpGet(admin_port(i), "/readyz").status == 200; }, kTimeoutMs))
      return AssertionFailure() << "broker " << i << " never became ready (storage unreachable?)";
    return AssertionSuccess();
  }

  void KillBroker(int i) {
    brokers_[i]->Signal(SIGKILL);
    brokers_[i]->WaitExit(kTimeoutMs);
  }

  // Ports are fixed per broker so that a restarted one keeps its address.
  uint16_t listen_port(int i) { return Ports()[2 * i]; }
  uint16_t admin_port(int i) { return Ports()[2 * i + 1]; }
  uint16_t proxy_port() { return Ports()[2 * kBrokers]; }
  uint16_t stats_port() { return Ports()[2 * kBrokers + 1]; }

  ConnectOptions ViaProxy() {
    ConnectOptions o;
    o.port = proxy_port();
    return o;
  }
  ConnectOptions Direct(int i) {
    ConnectOptions o;
    o.port = listen_port(i);
    return o;
  }

  // HAProxy's view of each broker: "UP", "DOWN", ... (from /stats;csv).
  std::map<std::string, std::string> ProxyStates() {
    std::map<std::string, std::string> states;
    HttpGetResult r = HttpGet(stats_port(), "/stats;csv");
    std::istringstream lines(r.body);
    std::string line;
    while (std::getline(lines, line)) {
      std::vector<std::string> cols;
      std::istringstream fields(line);
      std::string f;
      while (std::getline(fields, f, ',')) cols.push_back(f);
      if (cols.size() > 17 && cols[1].rfind("broker", 0) == 0) states[cols[1]] = cols[17];
    }
    return states;
  }
  AssertionResult WaitProxyStates(const std::function<bool(const std::map<std::string, std::string> &)> &pred,
                                  const std::string &what) {
    std::map<std::string, std::string> last;
    if (WaitUntil([&] { return pred(last = ProxyStates()); }, kLongMs)) return AssertionSuccess();
    AssertionResult r = AssertionFailure() << "HAProxy never saw " << what << "; last:";
    for (const auto &kv : last) r << " " << kv.first << "=" << kv.second;
    return r;
  }
  static bool AllUp(const std::map<std::string, std::string> &s) {
    if (s.size() != kBrokers) return false;
    for (const auto &kv : s)
      if (kv.second.rfind("UP", 0) != 0) return false;
    return true;
  }

  double BrokerMetric(int i, const std::string &name) {
    return SumMetric(ParseMetrics(HttpGet(admin_port(i), "/metrics").body), name);
  }

  RedisServer &redis() { return redis_; }
  DaemonProcess &broker(int i) { return *brokers_[i]; }

  // What each broker logged, for a failure's diagnosis.
  void PrintLogs() {
    for (int i = 0; i < kBrokers; i++) {
      if (!brokers_[i]) continue;
      std::fprintf(stderr, "---- broker %d:\n%s\n", i, Tail(brokers_[i]->Stderr(), 30).c_str());
      if (!brokers_[i]->running()) continue;
      for (const char *m : {"nebula_connections_open", "nebula_deliveries_total", "nebula_events_accepted_total",
                            "nebula_ring_overruns_total", "nebula_storage_fetches_total",
                            "nebula_storage_gaps_skipped_total", "nebula_storage_watched_collections"})
        std::fprintf(stderr, "  %s %.0f\n", m, BrokerMetric(i, m));
    }
  }

  // Stops every broker still running with SIGTERM: each must drain and exit
  // 0 (sanitizer builds exit non-zero on a report), and none may have
  // written a sanitizer report, killed ones included.
  AssertionResult StopAndCheck() {
    for (int i = 0; i < kBrokers; i++) {
      if (!brokers_[i]) continue;
      if (brokers_[i]->running()) {
        brokers_[i]->Signal(SIGTERM);
        ExitStatus st = brokers_[i]->WaitExit(kTimeoutMs);
        if (!st.clean())
          return AssertionFailure() << "broker " << i << " stopped " << st.Describe() << ":\n"
                                    << Tail(brokers_[i]->Stderr(), 80);
      }
      if (HasSanitizerReport(brokers_[i]->Stderr()))
        return AssertionFailure() << "broker " << i << ":\n" << Tail(brokers_[i]->Stderr(), 80);
    }
    return AssertionSuccess();
  }

 private:
  const std::vector<uint16_t> &Ports() {
    if (ports_.empty()) ports_ = FindFreePorts(2 * kBrokers + 2);
    return ports_;
  }

  AssertionResult StartProxy() {
    std::map<std::string, std::string> env = {
        {"NEBULA_LB_BIND", "127.0.0.1:" + std::to_string(proxy_port())},
        {"NEBULA_LB_STATS_BIND", "127.0.0.1:" + std::to_string(stats_port())}};
    for (int i = 0; i < kBrokers; i++) {
      std::string n = std::to_string(i + 1);
      env["NEBULA_BROKER" + n] = "127.0.0.1:" + std::to_string(listen_port(i));
      env["NEBULA_BROKER" + n + "_ADMIN_PORT"] = std::to_string(admin_port(i));
    }
    proxy_ = std::make_unique<DaemonProcess>(HaproxyBinary());
    if (!proxy_->Start({"-f", std::string(NEBULA_SOURCE_DIR) + "/deploy/haproxy/haproxy.cfg"}, env))
      return AssertionFailure() << "cannot start haproxy";
    return WaitProxyStates(AllUp, "every broker UP");
  }

  RedisServer redis_;
  std::string conflict_rules_;
  std::vector<uint16_t> ports_;
  std::unique_ptr<DaemonProcess> brokers_[kBrokers];
  std::unique_ptr<DaemonProcess> proxy_;
};

// A client following one collection across reconnections: every seq it is
// handed (as Events, or as its own ACCEPTED/DUPLICATE result) is counted.
struct Follower {
  Follower(std::string client_id, std::string collection)
      : id(std::move(client_id)), collection(std::move(collection)) {}
  std::string id, collection;
  std::unique_ptr<SyncClient> c;
  std::unique_ptr<CollectionView> view;
  std::map<uint64_t, int> delivered;        // seq -> times received as Events
  std::map<uint64_t, std::string> ids;      // seq -> event id
  std::set<uint64_t> own;                   // seqs of our own accepted events
  SyncCursor cursor;                        // where to resume
  std::vector<std::string> problems;
  std::vector<std::string> breaks;          // why each connection ended
  std::vector<std::string> connect_failures;
  int reconnects = 0;

  // Connects and subscribes (from the cursor once there is one).
  AssertionResult Connect(const ConnectOptions &where) {
    c = std::make_unique<SyncClient>();
    SyncOpenOptions o;
    o.client_id = id;
    if (!c->Open(where, o)) return AssertionFailure() << id << ": " << c->last_error();
    Absorb();
    view = std::make_unique<CollectionView>(collection);
    view->set_client_id(id);
    std::optional<SyncCursor> from;
    if (!cursor.epoch.empty()) {
      from = cursor;
      view->tracker().Start(cursor);
    }
    AssertionResult r = SubscribeAndSettle(*c, *view, from, kLongMs);
    if (!r) return AssertionFailure() << id << ": " << r.message();
    if (from && view->mode() != kReplay) problems.push_back(id + ": resumed with a snapshot, not a replay");
    return AssertionSuccess();
  }

  // Folds what the current view received into the totals.
  void Absorb() {
    if (!view) return;
    for (const SyncEvent &e : view->received()) {
      delivered[e.seq]++;
      ids[e.seq] = e.id;
    }
    for (const std::string &e : view->errors()) problems.push_back(id + ": " + e);
    cursor = view->tracker().Get();
    view.reset();
  }

  void Own(const std::vector<SyncEvent> &events, const PushResultV &r) {
    view->HandleOwn(events, r);
    for (size_t i = 0; i < r.results.size() && i < events.size(); i++) {
      if (r.results[i].status == kAccepted || r.results[i].status == kDuplicate) {
        own.insert(r.results[i].seq);
        ids[r.results[i].seq] = events[i].id;
      }
    }
  }

  uint64_t seen() const { return view ? view->tracker().seq() : cursor.seq; }

  // Reads until the cursor reaches seq, reconnecting through where when
  // the connection breaks.
  AssertionResult FollowTo(uint64_t seq, const ConnectOptions &where, int timeout_ms = kLongMs) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (seen() < seq) {
      if (std::chrono::steady_clock::now() >= deadline)
        return AssertionFailure() << id << " stuck at seq " << seen() << " waiting for " << seq << " ("
                                  << reconnects << " reconnects; last break: "
                                  << (breaks.empty() ? "none" : breaks.back()) << "; last connect failure: "
                                  << (connect_failures.empty() ? "none" : connect_failures.back()) << "; "
                                  << (view ? view->tracker().pending() : 0) << " seqs seen above it, "
                                  << (view ? view->received().size() : 0) << " events on this connection, mode "
                                  << (view ? view->mode() : -1) << ")";
      if (!view) {
        AssertionResult connected = Connect(where);
        if (!connected) {
          connect_failures.push_back(connected.message());
          std::this_thread::sleep_for(std::chrono::milliseconds(200));
          continue;
        }
        reconnects++;
      }
      AssertionResult r = ReadUntil(*c, {view.get()}, [&] { return view->tracker().seq() >= seq; }, 1000);
      // A read that timed out is still a connection: only an error ends it.
      std::string why = r ? "" : r.message();
      bool waiting = r || why.find("not reached within") != std::string::npos ||
                     why.find("timed out waiting") != std::string::npos;
      if (!waiting) {  // the connection broke: resume elsewhere
        breaks.push_back(why);
        c->Close();
        Absorb();
      }
    }
    return AssertionSuccess();
  }

  // Every seq 1..last handed over exactly once (own results count), with
  // the event ids every other follower saw.
  AssertionResult ExactlyOnce(uint64_t last, const std::map<uint64_t, std::string> &truth) {
    Absorb();
    if (!problems.empty()) return AssertionFailure() << problems.front();
    for (uint64_t s = 1; s <= last; s++) {
      int times = (delivered.count(s) ? delivered.at(s) : 0) + (own.count(s) && !delivered.count(s) ? 1 : 0);
      if (times != 1) return AssertionFailure() << id << ": seq " << s << " handed over " << times << " times";
      auto it = ids.find(s);
      if (it == ids.end() || truth.at(s) != it->second)
        return AssertionFailure() << id << ": seq " << s << " is a different event than elsewhere";
    }
    return AssertionSuccess();
  }
};

std::vector<SyncEvent> Events(const std::string &collection, const std::string &tag, int count) {
  std::vector<SyncEvent> out;
  for (int i = 0; i < count; i++)
    out.push_back(MakeEvent(collection, tag + "-" + std::to_string(i), "{\"n\":" + std::to_string(i) + "}"));
  return out;
}

// Pushes events until they are ACCEPTED or DUPLICATE, reconnecting and
// retrying (same ids) through failures: what a client does during faults.
class Pusher {
 public:
  Pusher(std::string id, ConnectOptions where) : id_(std::move(id)), where_(where) {}
  AssertionResult PushUntilStored(const std::vector<SyncEvent> &events, std::map<uint64_t, std::string> *ids,
                                  int timeout_ms = kLongMs) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (std::chrono::steady_clock::now() < deadline) {
      if (!c_ || !c_->connected()) {
        c_ = std::make_unique<SyncClient>();
        SyncOpenOptions o;
        o.client_id = id_;
        if (!c_->Open(where_, o)) {
          c_.reset();
          std::this_thread::sleep_for(std::chrono::milliseconds(100));
          continue;
        }
      }
      PushResultV r;
      if (!c_->Push(events, &r, 10000)) {
        c_.reset();
        continue;
      }
      bool stored = true;
      for (const auto &x : r.results) {
        if (x.status == kAccepted || x.status == kDuplicate) continue;
        if (x.status == kRejected && x.retryable) {
          retried_++;
          stored = false;
          break;
        }
        return AssertionFailure() << id_ << ": " << x.Describe();
      }
      if (stored) {
        for (size_t i = 0; i < r.results.size(); i++) (*ids)[r.results[i].seq] = events[i].id;
        return AssertionSuccess();
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return AssertionFailure() << id_ << ": events never stored";
  }
  int retried() const { return retried_; }

 private:
  std::string id_;
  ConnectOptions where_;
  std::unique_ptr<SyncClient> c_;
  int retried_ = 0;
};

class ClusterTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (HasFailure()) cluster_.PrintLogs();
    EXPECT_TRUE(cluster_.StopAndCheck());
  }
  Cluster cluster_;
};

TEST_F(ClusterTest, ClientsOnEveryBrokerSeeEveryEventOnceInOneOrder) {
  ASSERT_TRUE(cluster_.Start());
  constexpr int kClients = 30, kPushes = 5;
  std::vector<std::unique_ptr<Follower>> clients;
  for (int i = 0; i < kClients; i++) {
    clients.push_back(std::make_unique<Follower>("client-" + std::to_string(i), "shared"));
    ASSERT_TRUE(clients.back()->Connect(cluster_.ViaProxy()));
  }
  for (int b = 0; b < kBrokers; b++)
    EXPECT_GE(cluster_.BrokerMetric(b, "nebula_connections_open"), 5) << "the proxy spreads clients: broker " << b;

  std::vector<std::thread> threads;
  std::mutex mu;
  std::vector<std::string> failures;
  for (auto &client : clients) {
    threads.emplace_back([&, f = client.get()] {
      for (int k = 0; k < kPushes; k++) {
        std::vector<SyncEvent> events = Events("shared", f->id + "-" + std::to_string(k), 1);
        PushResultV r;
        if (!f->c->Push(events, &r)) {
          std::lock_guard<std::mutex> lock(mu);
          failures.push_back(f->id + ": " + f->c->last_error());
          return;
        }
        f->Own(events, r);
      }
      AssertionResult done = f->FollowTo(kClients * kPushes, cluster_.ViaProxy());
      if (!done) {
        std::lock_guard<std::mutex> lock(mu);
        failures.push_back(done.message());
      }
    });
  }
  for (auto &t : threads) t.join();
  ASSERT_TRUE(failures.empty()) << failures.front();
  for (auto &client : clients) client->Absorb();
  std::map<uint64_t, std::string> truth = clients[0]->ids;
  ASSERT_EQ(truth.size(), static_cast<size_t>(kClients * kPushes));
  for (auto &client : clients) {
    EXPECT_EQ(client->reconnects, 0) << client->id << ": " << (client->breaks.empty() ? "" : client->breaks[0]);
    EXPECT_TRUE(client->ExactlyOnce(kClients * kPushes, truth));
  }
}

TEST_F(ClusterTest, ABrokerKilledMidStreamLosesNothingForItsClients) {
  ASSERT_TRUE(cluster_.Start());
  constexpr int kSubscribers = 12, kBatches = 60, kBatch = 5;
  std::vector<std::unique_ptr<Follower>> subs;
  for (int i = 0; i < kSubscribers; i++) {
    subs.push_back(std::make_unique<Follower>("sub-" + std::to_string(i), "stream"));
    ASSERT_TRUE(subs.back()->Connect(cluster_.ViaProxy()));
  }
  const int victim = 0;
  ASSERT_GE(cluster_.BrokerMetric(victim, "nebula_connections_open"), 1);

  std::map<uint64_t, std::string> truth;
  std::atomic<bool> pushing{true};
  std::atomic<int> batches_done{0};
  std::string push_failure;
  std::thread pusher([&] {
    Pusher p("pusher", cluster_.ViaProxy());
    for (int k = 0; k < kBatches; k++) {
      AssertionResult r = p.PushUntilStored(Events("stream", "b" + std::to_string(k), kBatch), &truth);
      if (!r) {
        push_failure = r.message();
        break;
      }
      batches_done++;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    pushing = false;
  });
  ASSERT_TRUE(WaitUntil([&] { return batches_done >= kBatches / 3 || !pushing; }, kLongMs));
  cluster_.KillBroker(victim);
  pusher.join();
  ASSERT_EQ(push_failure, "");
  const uint64_t last = static_cast<uint64_t>(kBatches * kBatch);
  ASSERT_EQ(truth.size(), last);
  ASSERT_EQ(truth.rbegin()->first, last);

  std::vector<std::thread> readers;
  std::vector<std::string> failures(kSubscribers);
  for (int i = 0; i < kSubscribers; i++) {
    readers.emplace_back([&, i] {
      AssertionResult r = subs[i]->FollowTo(last, cluster_.ViaProxy());
      if (!r) failures[i] = r.message();
    });
  }
  for (auto &t : readers) t.join();
  int moved = 0;
  for (int i = 0; i < kSubscribers; i++) {
    ASSERT_EQ(failures[i], "");
    EXPECT_TRUE(subs[i]->ExactlyOnce(last, truth));
    moved += subs[i]->reconnects;
  }
  EXPECT_GE(moved, 1) << "some clients were on the killed broker and moved";
}

TEST_F(ClusterTest, RedisRestartedWithItsAppendOnlyFileLosesNothingAcknowledged) {
  ASSERT_TRUE(cluster_.Start());
  constexpr int kSubscribers = 6, kBatches = 40, kBatch = 5;
  std::vector<std::unique_ptr<Follower>> subs;
  for (int i = 0; i < kSubscribers; i++) {
    subs.push_back(std::make_unique<Follower>("sub-" + std::to_string(i), "durable"));
    ASSERT_TRUE(subs.back()->Connect(cluster_.Direct(i % kBrokers)));
  }
  std::map<uint64_t, std::string> truth;
  std::atomic<int> batches_done{0};
  std::string push_failure;
  int retried = 0;
  std::thread pusher([&] {
    Pusher p("pusher", cluster_.Direct(1));
    for (int k = 0; k < kBatches; k++) {
      AssertionResult r = p.PushUntilStored(Events("durable", "b" + std::to_string(k), kBatch), &truth);
      if (!r) {
        push_failure = r.message();
        break;
      }
      batches_done++;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    retried = p.retried();
  });
  ASSERT_TRUE(WaitUntil([&] { return batches_done >= kBatches / 4; }, kLongMs));
  cluster_.redis().Kill();
  ASSERT_TRUE(WaitUntil([&] { return HttpGet(cluster_.admin_port(1), "/readyz").status == 503; }, kLongMs))
      << "/readyz stays 200 while Redis is down";
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  std::string error;
  ASSERT_TRUE(cluster_.redis().Start({.append_only = true}, &error)) << error;
  for (int b = 0; b < kBrokers; b++)
    ASSERT_TRUE(WaitUntil([&] { return HttpGet(cluster_.admin_port(b), "/readyz").status == 200; }, kLongMs))
        << "broker " << b << " did not recover";
  pusher.join();
  ASSERT_EQ(push_failure, "");
  EXPECT_GE(retried, 1) << "pushes during the outage were refused retryably";
  const uint64_t last = static_cast<uint64_t>(kBatches * kBatch);
  ASSERT_EQ(truth.size(), last) << "every event stored once, seqs 1..last";
  ASSERT_EQ(truth.rbegin()->first, last);
  for (int b = 0; b < kBrokers; b++) EXPECT_GE(cluster_.BrokerMetric(b, "nebula_storage_disconnects_total"), 1);
  for (int i = 0; i < kSubscribers; i++) {
    ASSERT_TRUE(subs[i]->FollowTo(last, cluster_.Direct(i % kBrokers)));
    EXPECT_TRUE(subs[i]->ExactlyOnce(last, truth));
  }
}

TEST_F(ClusterTest, TwoBrokersWritingOneDocumentConvergeUnderEveryStrategy) {
  ASSERT_TRUE(cluster_.Start("lww-*=last-write-wins,sw-*=server-wins,cw-*=client-wins"));
  for (const char *collection : {"lww-doc", "sw-doc", "cw-doc"}) {
    SCOPED_TRACE(collection);
    Follower a("writer-a", collection), b("writer-b", collection), o("observer", collection);
    ASSERT_TRUE(a.Connect(cluster_.Direct(0)));
    ASSERT_TRUE(b.Connect(cluster_.Direct(1)));
    ASSERT_TRUE(o.Connect(cluster_.Direct(2)));
    constexpr int kWrites = 20;
    auto writer = [&](Follower *f, int parity, std::string *failure) {
      for (int i = 0; i < kWrites; i++) {
        // Server-wins needs the version the writer last saw.
        uint64_t base = 0;
        auto live = f->view->replica().all();
        if (live.count("d")) base = live.at("d").seq;
        SyncEvent e = MakeEvent(collection, "d", "{\"by\":\"" + f->id + "\",\"i\":" + std::to_string(i) + "}",
                                static_cast<uint64_t>(2 * i + parity), base ? kUpdate : kInsert, base);
        PushResultV r;
        if (!f->c->Push({e}, &r)) {
          *failure = f->id + ": " + f->c->last_error();
          return;
        }
        f->Own({e}, r);
      }
    };
    std::string fa, fb;
    std::thread ta(writer, &a, 0, &fa), tb(writer, &b, 1, &fb);
    ta.join();
    tb.join();
    ASSERT_EQ(fa, "");
    ASSERT_EQ(fb, "");

    Follower judge("judge", collection);
    ASSERT_TRUE(judge.Connect(cluster_.Direct(2)));
    ASSERT_EQ(judge.view->snapshot_documents().size(), 1u);
    const SyncDocument truth = judge.view->snapshot_documents()[0];
    uint64_t head = judge.view->snapshot_cursor().seq;
    for (Follower *f : {&a, &b, &o}) {
      ASSERT_TRUE(f->FollowTo(head, cluster_.Direct(0)));
      auto live = f->view->replica().Live();
      ASSERT_EQ(live.count("d"), 1u) << f->id;
      EXPECT_EQ(live.at("d").data, truth.data) << f->id << " converged elsewhere";
      EXPECT_EQ(live.at("d").seq, truth.seq) << f->id;
    }
  }
}

}  // namespace
