// test_sync_bench: nebula-sync-bench's own correctness, end to end (the
// numbers it prints are never asserted, only what it checks):
//   - fanout against the real nebula-syncd: a short run reports no lost and
//     no duplicated event;
//   - tenants, against a broker run with the token file the tool wrote: no
//     lost or duplicated event and no delivery across tenants; against a
//     broker without tokens (every client one tenant) it counts events of
//     other tenants and fails;
//   - idle: every connection subscribed and still open at the end;
//     connect: handshakes and no failure;
//   - catchup: every replayed seq once and in order, every snapshot
//     document exactly once;
//   - against a relay that drops or doubles one event (lossy_relay.py,
//     python3-websockets), the run fails and counts exactly that;
//   - against the peer servers of bench/peers (Node), started by
//     bench/peers/start.sh on a free port, --target socketio and
//     ws-broadcast complete a clean run. Skipped, with the reason, when node
//     or npm is missing or `npm ci` cannot fetch the packages.
// Runs are a second or two; the waits are generous safety bounds only.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "daemon_process.h"

namespace nebula_test {
namespace {

constexpr int kRunMs = 120000;        // one bench run, setup and drain included
constexpr int kNpmMs = 300000;        // start.sh may run `npm ci` first
constexpr int kStartNoNode = 3;       // start.sh: node or npm not found
constexpr int kStartNoPackages = 4;   // start.sh: npm ci failed

struct BenchResult {
  ExitStatus status;
  std::string out, err, json;
  // A number from the --json output ("lost": 0 -> 0); -1 when absent.
  double Number(const std::string &key) const {
    size_t at = json.find("\"" + key + "\": ");
    if (at == std::string::npos) return -1;
    return strtod(json.c_str() + at + key.size() + 4, nullptr);
  }
  bool Flag(const std::string &key) const { return json.find("\"" + key + "\": true") != std::string::npos; }
  std::string Describe() const {
    return status.Describe() + "\n--- stdout\n" + Tail(out) + "\n--- stderr\n" + Tail(err) + "\n--- json\n" + json;
  }
};

std::string TempJsonPath() {
  char path[] = "/tmp/nebula-sync-bench-test-XXXXXX";
  int fd = mkstemp(path);
  if (fd >= 0) close(fd);
  return path;
}

// Runs nebula-sync-bench with args plus --json to a temporary file.
BenchResult RunTool(std::vector<std::string> args) {
  std::string json_path = TempJsonPath();
  args.insert(args.end(), {"--json", json_path});
  DaemonProcess bench(NEBULA_SYNC_BENCH_PATH);
  BenchResult r;
  if (!bench.Start(args)) {
    r.err = "cannot start " NEBULA_SYNC_BENCH_PATH;
    return r;
  }
  r.status = bench.WaitExit(kRunMs);
  r.out = bench.Stdout();
  r.err = bench.Stderr();
  std::ifstream in(json_path);
  std::stringstream text;
  text << in.rdbuf();
  r.json = text.str();
  unlink(json_path.c_str());
  return r;
}

// Runs nebula-sync-bench fanout with a short scenario plus extra arguments.
BenchResult RunBench(const std::vector<std::string> &extra) {
  std::vector<std::string> args = {"fanout", "--subscribers", "5", "--publishers", "2",
                                   "--batch", "5", "--duration", "1", "--warmup", "0.5"};
  args.insert(args.end(), extra.begin(), extra.end());
  return RunTool(args);
}

void ExpectCleanRun(const BenchResult &r, const std::string &target) {
  EXPECT_TRUE(r.status.clean()) << r.Describe();
  EXPECT_NE(r.json.find("\"target\": \"" + target + "\""), std::string::npos) << r.Describe();
  EXPECT_TRUE(r.Flag("pass")) << r.Describe();
  EXPECT_EQ(r.Number("lost"), 0) << r.Describe();
  EXPECT_EQ(r.Number("duplicated"), 0) << r.Describe();
  EXPECT_GT(r.Number("deliveries"), 0) << r.Describe();
  EXPECT_FALSE(HasSanitizerReport(r.err)) << r.Describe();
}

class SyncBenchNebula : public ::testing::Test, public DaemonHarness {
 protected:
  void TearDown() override { StopDaemonAndExpectCleanExit(); }
};

TEST_F(SyncBenchNebula, AShortRunLosesAndDoublesNothing) {
  ASSERT_TRUE(StartDaemon());
  BenchResult r = RunBench({"--url", "ws://127.0.0.1:" + std::to_string(daemon().listen_port()) + "/v1/sync",
                            "--broker-pid", std::to_string(daemon().pid())});
  ExpectCleanRun(r, "nebula");
  EXPECT_GT(r.Number("broker_cpu_s"), 0) << r.Describe();
  EXPECT_TRUE(r.Flag("acked")) << r.Describe();
}

// The other scenarios, each against a broker of its own.
class SyncBenchScenarios : public ::testing::Test, public DaemonHarness {
 protected:
  void TearDown() override {
    StopDaemonAndExpectCleanExit();
    if (!tokens_.empty()) unlink(tokens_.c_str());
  }
  // Runs the tool against the test's daemon (--url, --broker-pid added).
  BenchResult RunAgainstDaemon(std::vector<std::string> args) {
    args.insert(args.end(), {"--url", "ws://127.0.0.1:" + std::to_string(daemon().listen_port()) + "/v1/sync",
                             "--broker-pid", std::to_string(daemon().pid())});
    return RunTool(args);
  }
  // A short tenants run: 3 tenants x 2 collections, 12 subscribers, 6 publishers.
  BenchResult RunTenants() {
    return RunAgainstDaemon({"tenants", "--tenants", "3", "--collections", "2", "--tokens", tokens_,
                             "--subscribers", "12", "--publishers", "6", "--batch", "5",
                             "--duration", "1", "--warmup", "0.5"});
  }
  // The tool writes a token file for 3 tenants.
  void WriteTokens() {
    tokens_ = TempJsonPath();
    BenchResult w = RunTool({"tenants", "--tenants", "3", "--write-tokens", tokens_});
    ASSERT_TRUE(w.status.clean()) << w.Describe();
  }
  std::string tokens_;
};

TEST_F(SyncBenchScenarios, TenantsDeliverNothingAcrossTenants) {
  WriteTokens();
  ASSERT_TRUE(StartDaemon({{"tokens", tokens_}}));
  BenchResult r = RunTenants();
  ExpectCleanRun(r, "nebula");
  EXPECT_NE(r.json.find("\"scenario\": \"tenants\""), std::string::npos) << r.Describe();
  EXPECT_EQ(r.Number("isolation_violations"), 0) << r.Describe();
  EXPECT_EQ(r.Number("cross_collection"), 0) << r.Describe();
  EXPECT_EQ(r.Number("tenants"), 3) << r.Describe();
}

TEST_F(SyncBenchScenarios, TenantsCountEventsOfAnotherTenant) {
  WriteTokens();
  ASSERT_TRUE(StartDaemon());   // no --tokens: every client is the tenant "default"
  BenchResult r = RunTenants();
  EXPECT_TRUE(r.status.exited && r.status.code == 1) << r.Describe();
  EXPECT_FALSE(r.Flag("pass")) << r.Describe();
  EXPECT_GT(r.Number("isolation_violations"), 0) << r.Describe();
  EXPECT_NE(r.out.find("isolation violation(s)"), std::string::npos) << r.Describe();
  EXPECT_FALSE(HasSanitizerReport(r.err)) << r.Describe();
}

TEST_F(SyncBenchScenarios, IdleConnectionsHoldTheirSubscriptions) {
  ASSERT_TRUE(StartDaemon());
  BenchResult r = RunAgainstDaemon({"idle", "--connections", "40", "--hold", "0.5", "--collection", "idle-test"});
  EXPECT_TRUE(r.status.clean()) << r.Describe();
  EXPECT_TRUE(r.Flag("pass")) << r.Describe();
  EXPECT_EQ(r.Number("open"), 40) << r.Describe();
  EXPECT_EQ(r.Number("failures"), 0) << r.Describe();
  EXPECT_EQ(r.Number("dropped"), 0) << r.Describe();
  EXPECT_NE(r.json.find("\"subscribed_collection\": \"idle-test\""), std::string::npos) << r.Describe();
  EXPECT_FALSE(HasSanitizerReport(r.err)) << r.Describe();
}

TEST_F(SyncBenchScenarios, ConnectCompletesHandshakes) {
  ASSERT_TRUE(StartDaemon());
  BenchResult r = RunAgainstDaemon({"connect", "--connections", "4", "--duration", "1"});
  EXPECT_TRUE(r.status.clean()) << r.Describe();
  EXPECT_TRUE(r.Flag("pass")) << r.Describe();
  EXPECT_GT(r.Number("handshakes"), 0) << r.Describe();
  EXPECT_EQ(r.Number("failures"), 0) << r.Describe();
  EXPECT_FALSE(HasSanitizerReport(r.err)) << r.Describe();
}

TEST_F(SyncBenchScenarios, CatchupReplaysEverySeqAndCountsTheSnapshot) {
  ASSERT_TRUE(StartDaemon());
  BenchResult r = RunAgainstDaemon({"catchup", "--events", "3000", "--documents", "1000", "--subscribers", "2",
                                    "--batch", "50", "--timeout", "30"});
  EXPECT_TRUE(r.status.clean()) << r.Describe();
  EXPECT_TRUE(r.Flag("pass")) << r.Describe();
  EXPECT_EQ(r.Number("replay_cursor_seq"), 0) << r.Describe();
  EXPECT_EQ(r.Number("replay_last_seq"), 3000) << r.Describe();
  EXPECT_EQ(r.Number("replayed"), 6000) << r.Describe();
  EXPECT_EQ(r.Number("replay_lost"), 0) << r.Describe();
  EXPECT_EQ(r.Number("replay_duplicated"), 0) << r.Describe();
  EXPECT_EQ(r.Number("snapshot_documents_seen"), 1000) << r.Describe();
  EXPECT_EQ(r.Number("snapshot_repeated"), 0) << r.Describe();
  EXPECT_EQ(r.Number("snapshot_unexpected"), 0) << r.Describe();
  EXPECT_EQ(r.Number("snapshot_seq"), 1000) << r.Describe();
  EXPECT_EQ(r.Number("lost"), 0) << r.Describe();
  EXPECT_EQ(r.Number("duplicated"), 0) << r.Describe();
  EXPECT_FALSE(HasSanitizerReport(r.err)) << r.Describe();
}

TEST(SyncBenchUsage, UnknownScenarioIsAUsageError) {
  BenchResult r = RunTool({"nosuch"});
  EXPECT_TRUE(r.status.exited && r.status.code == 2) << r.Describe();
  EXPECT_NE(r.err.find("unknown scenario 'nosuch' (known: fanout, tenants, idle, connect, catchup)"),
            std::string::npos) << r.Describe();
}

TEST(SyncBenchUsage, UnknownTargetIsAUsageError) {
  BenchResult r = RunBench({"--target", "nats"});
  EXPECT_TRUE(r.status.exited && r.status.code == 2) << r.Describe();
  EXPECT_NE(r.err.find("--target: 'nats'"), std::string::npos) << r.Describe();
}

// lossy_relay.py on a free port, stopped at the end of the test.
class LossyRelay {
 public:
  explicit LossyRelay(const std::string &mode) : proc_("/usr/bin/python3") {
    started_ = proc_.Start({NEBULA_SOURCE_DIR "/tests/integration/lossy_relay.py", "--mode", mode}) &&
               proc_.WaitForStdout("\n", kTimeoutMs);
    size_t at = proc_.Stdout().find("ready: port ");
    if (started_ && at != std::string::npos) port_ = atoi(proc_.Stdout().c_str() + at + 12);
  }
  ~LossyRelay() {
    if (proc_.running()) {
      proc_.Signal(SIGTERM);
      proc_.WaitExit();
    }
  }
  bool ok() const { return started_ && port_ > 0; }
  std::string url() const { return "ws://127.0.0.1:" + std::to_string(port_) + "/"; }
  std::string output() const { return proc_.Stdout() + proc_.Stderr(); }

 private:
  DaemonProcess proc_;
  bool started_ = false;
  int port_ = 0;
};

// The relay damages message 3 (during the warm-up); every one of the 5
// subscribers receives the damaged copy.
BenchResult RunThroughRelay(const std::string &mode) {
  LossyRelay relay(mode);
  if (!relay.ok()) {
    BenchResult r;
    r.err = "lossy_relay.py did not start: " + relay.output();
    return r;
  }
  return RunBench({"--target", "ws-broadcast", "--url", relay.url(), "--publishers", "1", "--rate", "500"});
}

TEST(SyncBenchSeqCheck, AnUndamagedRelayPasses) {
  ExpectCleanRun(RunThroughRelay("pass"), "ws-broadcast");
}

TEST(SyncBenchSeqCheck, ADroppedEventIsCountedLost) {
  BenchResult r = RunThroughRelay("drop");
  EXPECT_TRUE(r.status.exited && r.status.code == 1) << r.Describe();
  EXPECT_FALSE(r.Flag("pass")) << r.Describe();
  EXPECT_EQ(r.Number("lost"), 5) << r.Describe();
  EXPECT_EQ(r.Number("duplicated"), 0) << r.Describe();
  EXPECT_NE(r.out.find("lost                           5  <-- EXPECTED 0"), std::string::npos) << r.Describe();
}

TEST(SyncBenchSeqCheck, ADoubledEventIsCountedDuplicated) {
  BenchResult r = RunThroughRelay("double");
  EXPECT_TRUE(r.status.exited && r.status.code == 1) << r.Describe();
  EXPECT_FALSE(r.Flag("pass")) << r.Describe();
  EXPECT_EQ(r.Number("lost"), 0) << r.Describe();
  EXPECT_EQ(r.Number("duplicated"), 5) << r.Describe();
}

// bench/peers/start.sh TARGET PORT; skips the test when Node or its packages
// cannot be had on this machine.
class PeerServer {
 public:
  explicit PeerServer(const std::string &target) : proc_("/bin/bash") {
    port_ = FindFreePort();
    if (!proc_.Start({NEBULA_SOURCE_DIR "/bench/peers/start.sh", target, std::to_string(port_)})) return;
    ready_ = proc_.WaitForStdout("ready: ", kNpmMs) && proc_.WaitForStdout("\n", kTimeoutMs);
    if (!ready_) exit_ = proc_.WaitExit();
  }
  ~PeerServer() {
    if (proc_.running()) {
      proc_.Signal(SIGTERM);
      proc_.WaitExit();
    }
  }
  bool ready() const { return ready_; }
  // start.sh exited because Node, npm or the npm registry is not available.
  bool unavailable() const {
    return exit_.exited && (exit_.code == kStartNoNode || exit_.code == kStartNoPackages);
  }
  pid_t pid() const { return proc_.pid(); }   // start.sh execs node
  uint16_t port() const { return port_; }
  std::string output() const { return proc_.Stdout() + proc_.Stderr(); }

 private:
  DaemonProcess proc_;
  uint16_t port_ = 0;
  bool ready_ = false;
  ExitStatus exit_;
};

void RunAgainstPeer(const std::string &target, const std::string &path) {
  PeerServer peer(target);
  if (peer.unavailable())
    GTEST_SKIP() << "bench/peers/start.sh " << target << " cannot run here (Node.js, npm or the npm "
                 << "registry is missing):\n" << Tail(peer.output());
  ASSERT_TRUE(peer.ready()) << "bench/peers/start.sh " << target << " did not get ready:\n" << Tail(peer.output());
  BenchResult r = RunBench({"--target", target, "--url",
                            "ws://127.0.0.1:" + std::to_string(peer.port()) + path,
                            "--broker-pid", std::to_string(peer.pid())});
  ExpectCleanRun(r, target);
  EXPECT_GT(r.Number("broker_cpu_s"), 0) << r.Describe();
}

TEST(SyncBenchPeers, SocketIoTargetCompletesARun) {
  RunAgainstPeer("socketio", "/socket.io/");
}

TEST(SyncBenchPeers, WsBroadcastTargetCompletesARun) {
  RunAgainstPeer("ws-broadcast", "/");
}

}  // namespace
}  // namespace nebula_test
