// test_daemon: nebula-syncd's command-line contract: --help/--version, usage
// errors (exit 2, exactly one "nebula-syncd: " line, nothing listening),
// options from flags, NEBULA_* environment and --config file with their
// precedence, logging switches, and the log line format.
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <regex>
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

// Exit status 2 with exactly one stderr line starting "nebula-syncd: ".
AssertionResult IsUsageError(const RunResult &r) {
  std::vector<std::string> lines = SplitLines(r.err);
  if (!r.status.exited || r.status.code != 2)
    return AssertionFailure() << r.status.Describe() << ", expected exit code 2; stderr:\n" << Tail(r.err);
  if (lines.size() != 1) return AssertionFailure() << "expected one stderr line, got " << lines.size() << ":\n" << r.err;
  if (lines[0].rfind("nebula-syncd: ", 0) != 0)
    return AssertionFailure() << "stderr line does not start with 'nebula-syncd: ': " << lines[0];
  if (lines[0].size() <= 14) return AssertionFailure() << "empty reason: " << lines[0];
  return AssertionSuccess();
}

void WriteFile(const std::string &path, const std::string &text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << text;
}

std::vector<std::string> Ephemeral() { return {"--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"}; }

std::vector<std::string> Concat(std::vector<std::string> a, const std::vector<std::string> &b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// Polls GET /healthz until it answers 200.
bool WaitForHealthz(uint16_t admin_port, int timeout_ms = kTimeoutMs) {
  int64_t deadline = NowMs() + timeout_ms;
  while (NowMs() < deadline) {
    HttpGetResult r = HttpGet(admin_port, "/healthz", 1000);
    if (r.status == 200) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

class DaemonCliTest : public ::testing::Test, public DaemonHarness {
 protected:
  void TearDown() override { StopDaemonAndExpectCleanExit(); }
  TempDir dir_{"nebula-cli"};
};

// ---- --help and --version -----------------------------------------------------------

TEST(DaemonCli, HelpPrintsUsageOnStdoutAndExitsZero) {
  RunResult r = RunDaemon({"--help"});
  EXPECT_TRUE(r.status.clean()) << r.status.Describe() << "\n" << r.err;
  for (const char *opt : {"--listen", "--tls-cert", "--tls-key", "--workers", "--admin-listen", "--max-message-size",
                          "--max-connections", "--idle-timeout", "--handshake-timeout", "--drain-timeout",
                          "--origins", "--log-level", "--log-enabled", "--config", "--help", "--version"}) {
    EXPECT_NE(r.out.find(opt), std::string::npos) << "usage does not mention " << opt << ":\n" << r.out;
  }
  EXPECT_EQ(r.err, "");
}

TEST(DaemonCli, HelpWinsOverOtherOptions) {
  RunResult r = RunDaemon({"--workers", "3", "--help"});
  EXPECT_TRUE(r.status.clean()) << r.status.Describe();
  EXPECT_NE(r.out.find("--listen"), std::string::npos);
}

TEST(DaemonCli, VersionPrintsNameAndVersion) {
  RunResult r = RunDaemon({"--version"});
  EXPECT_TRUE(r.status.clean()) << r.status.Describe() << "\n" << r.err;
  EXPECT_EQ(r.out, "nebula-syncd 0.1.0\n");
  EXPECT_EQ(r.err, "");
}

// ---- usage errors ---------------------------------------------------------------------

TEST(DaemonCli, UnknownFlagIsAUsageError) {
  EXPECT_TRUE(IsUsageError(RunDaemon(Concat(Ephemeral(), {"--frobnicate", "1"}))));
  EXPECT_TRUE(IsUsageError(RunDaemon(Concat(Ephemeral(), {"--frobnicate=1"}))));
}

TEST(DaemonCli, PositionalArgumentIsAUsageError) {
  EXPECT_TRUE(IsUsageError(RunDaemon(Concat(Ephemeral(), {"extra"}))));
}

TEST(DaemonCli, FlagWithoutValueIsAUsageError) {
  EXPECT_TRUE(IsUsageError(RunDaemon(Concat(Ephemeral(), {"--workers"}))));
}

TEST(DaemonCli, BadRedisUrlIsAUsageErrorThatNamesIt) {
  RunResult r = RunDaemon(Concat(Ephemeral(), {"--storage", "redis", "--redis-url", "http://cache:6379"}));
  EXPECT_TRUE(IsUsageError(r));
  EXPECT_NE(r.err.find("--redis-url"), std::string::npos) << r.err;
}

class InvalidValueTest : public ::testing::TestWithParam<std::vector<std::string>> {};

TEST_P(InvalidValueTest, IsAUsageError) {
  EXPECT_TRUE(IsUsageError(RunDaemon(Concat(Ephemeral(), GetParam()))));
}

INSTANTIATE_TEST_SUITE_P(
    Flags, InvalidValueTest,
    ::testing::Values(std::vector<std::string>{"--workers", "0"}, std::vector<std::string>{"--workers", "-1"},
                      std::vector<std::string>{"--workers", "abc"}, std::vector<std::string>{"--workers", "2x"},
                      std::vector<std::string>{"--workers", ""}, std::vector<std::string>{"--listen", "nonsense"},
                      std::vector<std::string>{"--listen", "127.0.0.1"},
                      std::vector<std::string>{"--listen", "127.0.0.1:99999"},
                      std::vector<std::string>{"--listen", "127.0.0.1:-1"},
                      std::vector<std::string>{"--admin-listen", "nonsense"},
                      std::vector<std::string>{"--log-level", "loud"},
                      std::vector<std::string>{"--log-enabled", "maybe"},
                      std::vector<std::string>{"--max-message-size", "-5"},
                      std::vector<std::string>{"--max-message-size", "0"},
                      std::vector<std::string>{"--max-message-size", "lots"},
                      std::vector<std::string>{"--max-connections", "-1"},
                      std::vector<std::string>{"--max-connections", "0"},
                      std::vector<std::string>{"--idle-timeout", "-1"},
                      std::vector<std::string>{"--idle-timeout", "soon"},
                      std::vector<std::string>{"--handshake-timeout", "-2"},
                      std::vector<std::string>{"--drain-timeout", "xyz"}),
    [](const ::testing::TestParamInfo<std::vector<std::string>> &info) {
      // e.g. {"--listen", "127.0.0.1:-1"} -> listen_127_0_0_1_neg1
      std::string name;
      for (const std::string &arg : info.param) {
        std::string part = arg.rfind("--", 0) == 0 ? arg.substr(2) : arg;
        if (part.empty()) part = "empty";
        if (!name.empty()) name += "_";
        for (size_t i = 0; i < part.size(); i++) {
          bool minus = part[i] == '-' && (i == 0 || part[i - 1] == ':');
          name += isalnum(static_cast<unsigned char>(part[i])) ? std::string(1, part[i]) : minus ? "neg" : "_";
        }
      }
      return name;
    });

TEST(DaemonCli, InvalidEnvironmentValueIsAUsageError) {
  EXPECT_TRUE(IsUsageError(RunDaemon(Ephemeral(), {{"NEBULA_WORKERS", "0"}})));
  EXPECT_TRUE(IsUsageError(RunDaemon(Ephemeral(), {{"NEBULA_LOG_LEVEL", "loud"}})));
}

TEST(DaemonCli, CertificateWithoutKeyIsAUsageError) {
  TempDir dir("nebula-cli");
  TestCert cert;
  std::string err;
  ASSERT_TRUE(GenerateSelfSignedCert(dir.path(), "server", KeyType::kEcdsaP256, &cert, &err)) << err;
  EXPECT_TRUE(IsUsageError(RunDaemon(Concat(Ephemeral(), {"--tls-cert", cert.cert_path}))));
  EXPECT_TRUE(IsUsageError(RunDaemon(Concat(Ephemeral(), {"--tls-key", cert.key_path}))));
}

TEST(DaemonCli, UnreadableCertificateIsAUsageError) {
  TempDir dir("nebula-cli");
  TestCert cert;
  std::string err;
  ASSERT_TRUE(GenerateSelfSignedCert(dir.path(), "server", KeyType::kEcdsaP256, &cert, &err)) << err;
  // A missing file, and a directory (unreadable as a file even for root).
  EXPECT_TRUE(IsUsageError(
      RunDaemon(Concat(Ephemeral(), {"--tls-cert", dir.File("missing.crt"), "--tls-key", cert.key_path}))));
  EXPECT_TRUE(IsUsageError(RunDaemon(Concat(Ephemeral(), {"--tls-cert", dir.path(), "--tls-key", cert.key_path}))));
  EXPECT_TRUE(
      IsUsageError(RunDaemon(Concat(Ephemeral(), {"--tls-cert", cert.cert_path, "--tls-key", dir.File("missing.key")}))));
}

TEST(DaemonCli, InvalidCertificateOrKeyContentsAreAUsageError) {
  TempDir dir("nebula-cli");
  TestCert a, b;
  std::string err;
  ASSERT_TRUE(GenerateSelfSignedCert(dir.path(), "a", KeyType::kEcdsaP256, &a, &err)) << err;
  ASSERT_TRUE(GenerateSelfSignedCert(dir.path(), "b", KeyType::kEcdsaP256, &b, &err)) << err;
  WriteFile(dir.File("garbage.pem"), "this is not a certificate\n");
  WriteFile(dir.File("empty.pem"), "");
  struct Case {
    const char *name;
    std::string cert, key;
  };
  for (const Case &c : {Case{"garbage certificate", dir.File("garbage.pem"), a.key_path},
                        Case{"empty certificate", dir.File("empty.pem"), a.key_path},
                        Case{"garbage key", a.cert_path, dir.File("garbage.pem")},
                        Case{"key of another certificate", a.cert_path, b.key_path},
                        Case{"certificate given as key", a.cert_path, a.cert_path}}) {
    SCOPED_TRACE(c.name);
    EXPECT_TRUE(IsUsageError(RunDaemon(Concat(Ephemeral(), {"--tls-cert", c.cert, "--tls-key", c.key}))));
  }
}

TEST(DaemonCli, UsageErrorHappensBeforeListening) {
  uint16_t port = FindFreePort();
  ASSERT_NE(port, 0);
  DaemonProcess d;
  ASSERT_TRUE(d.Start({"--listen", "127.0.0.1:" + std::to_string(port), "--admin-listen", "127.0.0.1:0",
                       "--log-level", "loud"}));
  ExitStatus st = d.WaitExit(kTimeoutMs);
  EXPECT_EQ(st.code, 2) << st.Describe();
  EXPECT_EQ(d.Stderr().find("ready:"), std::string::npos) << d.Stderr();
}

TEST(DaemonCli, MissingConfigFileIsAUsageError) {
  EXPECT_TRUE(IsUsageError(RunDaemon(Concat(Ephemeral(), {"--config", "/nonexistent/nebula.conf"}))));
}

TEST(DaemonCli, BadConfigFileLinesAreUsageErrors) {
  TempDir dir("nebula-cli");
  struct Case {
    const char *name;
    const char *text;
  };
  for (const Case &c : {Case{"unknown setting", "listen = 127.0.0.1:0\nfrobnicate = 1\n"},
                        Case{"invalid value", "workers = 0\n"}, Case{"no equals sign", "workers 2\n"}}) {
    SCOPED_TRACE(c.name);
    WriteFile(dir.File("bad.conf"), c.text);
    EXPECT_TRUE(IsUsageError(RunDaemon(Concat(Ephemeral(), {"--config", dir.File("bad.conf")}))));
  }
}

// ---- options from flags, environment and config file ---------------------------------------

TEST_F(DaemonCliTest, ReadyLineHasTimestampLevelSchemeAndPorts) {
  ASSERT_TRUE(StartDaemon({{"workers", "3"}}));
  std::regex ready(
      R"(^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|\+00:00) info ready: listen=ws://127\.0\.0\.1:(\d+) admin=http://127\.0\.0\.1:(\d+) workers=3$)");
  std::smatch m;
  ASSERT_TRUE(std::regex_match(daemon().ready_line(), m, ready)) << daemon().ready_line();
  EXPECT_NE(daemon().listen_port(), 0);
  EXPECT_NE(daemon().admin_port(), 0);
  EXPECT_NE(daemon().listen_port(), daemon().admin_port());
  WsClient c;
  EXPECT_TRUE(c.OpenSession(Client())) << c.last_error();
}

TEST_F(DaemonCliTest, EveryLogLineHasTimestampAndLevel) {
  ASSERT_TRUE(StartDaemon({{"log-level", "debug"}}));
  {
    WsClient c;
    EXPECT_TRUE(c.OpenSession(Client())) << c.last_error();
    c.SendClose(1000);
    c.WaitForEof();
    WsClient bad;
    ASSERT_TRUE(bad.Connect(Client()));
    bad.SendRaw("GET /nope HTTP/1.1\r\n\r\n");
    bad.WaitForEof();
  }
  StopDaemonAndExpectCleanExit();
  std::regex line(R"(^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|\+00:00) (debug|info|warn|error) \S.*$)");
  for (const std::string &l : daemon().StderrLines()) EXPECT_TRUE(std::regex_match(l, line)) << "log line: " << l;
}

TEST_F(DaemonCliTest, TlsReadyLineSaysWss) {
  TestCert cert;
  std::string err;
  ASSERT_TRUE(GenerateSelfSignedCert(dir_.path(), "server", KeyType::kEcdsaP256, &cert, &err)) << err;
  ASSERT_TRUE(StartDaemon({{"tls-cert", cert.cert_path}, {"tls-key", cert.key_path}}));
  EXPECT_NE(daemon().ready_line().find(" listen=wss://127.0.0.1:"), std::string::npos) << daemon().ready_line();
  WsClient c;
  EXPECT_TRUE(c.OpenSession(Client())) << c.last_error();
}

TEST_F(DaemonCliTest, EqualsFormOfFlagsIsAccepted) {
  DaemonProcess &d = *(daemon_ = std::make_unique<DaemonProcess>());
  ASSERT_TRUE(d.Start({"--listen=127.0.0.1:0", "--admin-listen=127.0.0.1:0", "--workers=3", "--drain-timeout=5"}));
  ASSERT_TRUE(d.WaitForReady()) << d.Stderr();
  EXPECT_EQ(d.workers(), 3) << d.ready_line();
}

TEST_F(DaemonCliTest, DefaultWorkersIsTheNumberOfCores) {
  ASSERT_TRUE(StartDaemon({{"workers", ""}}));
  cpu_set_t set;
  int affinity = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : -1;
  long online = sysconf(_SC_NPROCESSORS_ONLN);
  EXPECT_TRUE(daemon().workers() == affinity || daemon().workers() == online)
      << daemon().ready_line() << " (cores: " << online << " online, " << affinity << " usable)";
}

TEST_F(DaemonCliTest, EnvironmentListenIsHonoured) {
  uint16_t port = FindFreePort();
  ASSERT_NE(port, 0);
  ASSERT_TRUE(StartDaemon({{"listen", ""}}, {{"NEBULA_LISTEN", "127.0.0.1:" + std::to_string(port)}}));
  EXPECT_EQ(daemon().listen_port(), port) << daemon().ready_line();
  WsClient c;
  EXPECT_TRUE(c.OpenSession(Client())) << c.last_error();
}

TEST_F(DaemonCliTest, EnvironmentNamesUseUnderscoresForDashes) {
  ASSERT_TRUE(StartDaemon({}, {{"NEBULA_MAX_MESSAGE_SIZE", "12345"}, {"NEBULA_IDLE_TIMEOUT", "7"}}));
  WsClient c;
  ServerMessagePtr w;
  ASSERT_TRUE(c.OpenSession(Client(), &w)) << c.last_error();
  ASSERT_NE(w->welcome->limits, nullptr);
  EXPECT_EQ(w->welcome->limits->max_message_size, 12345u);
  EXPECT_EQ(w->welcome->heartbeat_interval_ms, 7000u);
}

TEST_F(DaemonCliTest, ConfigFileIsHonoured) {
  uint16_t port = FindFreePort();
  ASSERT_NE(port, 0);
  WriteFile(dir_.File("nebula.conf"), "# nebula-syncd test config\n"
                                      "\n"
                                      "listen = 127.0.0.1:" +
                                          std::to_string(port) +
                                          "\n"
                                          "  workers=3  \n"
                                          "# max-message-size = 1\n"
                                          "max-message-size = 23456\n"
                                          "idle-timeout = 4.5\n");
  ASSERT_TRUE(StartDaemon({{"listen", ""}, {"workers", ""}, {"config", dir_.File("nebula.conf")}}));
  EXPECT_EQ(daemon().listen_port(), port) << daemon().ready_line();
  EXPECT_EQ(daemon().workers(), 3) << daemon().ready_line();
  WsClient c;
  ServerMessagePtr w;
  ASSERT_TRUE(c.OpenSession(Client(), &w)) << c.last_error();
  ASSERT_NE(w->welcome->limits, nullptr);
  EXPECT_EQ(w->welcome->limits->max_message_size, 23456u);
  EXPECT_EQ(w->welcome->heartbeat_interval_ms, 4500u);
}

TEST_F(DaemonCliTest, FlagOverridesConfigFile) {
  WriteFile(dir_.File("nebula.conf"), "workers = 1\nlisten = 127.0.0.1:1\n");
  ASSERT_TRUE(StartDaemon({{"workers", "3"}, {"config", dir_.File("nebula.conf")}}));
  EXPECT_EQ(daemon().workers(), 3) << daemon().ready_line();
  EXPECT_NE(daemon().listen_port(), 1) << "--listen 127.0.0.1:0 must win over the file";
}

TEST_F(DaemonCliTest, EnvironmentOverridesConfigFile) {
  WriteFile(dir_.File("nebula.conf"), "workers = 1\n");
  ASSERT_TRUE(StartDaemon({{"workers", ""}, {"config", dir_.File("nebula.conf")}}, {{"NEBULA_WORKERS", "2"}}));
  EXPECT_EQ(daemon().workers(), 2) << daemon().ready_line();
}

TEST_F(DaemonCliTest, FlagOverridesEnvironmentAndConfigFile) {
  WriteFile(dir_.File("nebula.conf"), "workers = 1\n");
  ASSERT_TRUE(StartDaemon({{"workers", "3"}, {"config", dir_.File("nebula.conf")}}, {{"NEBULA_WORKERS", "2"}}));
  EXPECT_EQ(daemon().workers(), 3) << daemon().ready_line();
}

TEST_F(DaemonCliTest, ConfigFileGivenInEqualsForm) {
  WriteFile(dir_.File("nebula.conf"), "workers = 1\n");
  DaemonProcess &d = *(daemon_ = std::make_unique<DaemonProcess>());
  ASSERT_TRUE(d.Start(Concat(Ephemeral(), {"--config=" + dir_.File("nebula.conf")})));
  ASSERT_TRUE(d.WaitForReady()) << d.Stderr();
  EXPECT_EQ(d.workers(), 1) << d.ready_line();
}

// ---- logging -------------------------------------------------------------------------------

TEST_F(DaemonCliTest, LogEnabledFalseWritesNothingToStderr) {
  std::vector<uint16_t> ports = FindFreePorts(2);
  ASSERT_EQ(ports.size(), 2u);
  uint16_t port = ports[0], admin = ports[1];
  DaemonProcess &d = *(daemon_ = std::make_unique<DaemonProcess>());
  ASSERT_TRUE(d.Start({"--listen", "127.0.0.1:" + std::to_string(port), "--admin-listen",
                       "127.0.0.1:" + std::to_string(admin), "--log-enabled", "false", "--log-level", "debug",
                       "--workers", "2", "--drain-timeout", "5"}));
  ASSERT_TRUE(WaitForHealthz(admin)) << "no /healthz on " << admin << "; stderr:\n" << d.Stderr();
  {
    WsClient c;
    ConnectOptions o;
    o.port = port;
    EXPECT_TRUE(c.OpenSession(o)) << c.last_error();
    c.SendClose(1000);
    c.WaitForEof();
  }
  ASSERT_TRUE(d.Signal(SIGTERM));
  ExitStatus st = d.WaitExit(kTimeoutMs + 5000);
  EXPECT_TRUE(st.clean()) << st.Describe();
  EXPECT_EQ(d.Stderr(), "");
}

TEST_F(DaemonCliTest, LogLevelWarnHidesInfoLines) {
  std::vector<uint16_t> ports = FindFreePorts(2);
  ASSERT_EQ(ports.size(), 2u);
  uint16_t port = ports[0], admin = ports[1];
  DaemonProcess &d = *(daemon_ = std::make_unique<DaemonProcess>());
  ASSERT_TRUE(d.Start({"--listen", "127.0.0.1:" + std::to_string(port), "--admin-listen",
                       "127.0.0.1:" + std::to_string(admin), "--log-level", "warn", "--workers", "2",
                       "--drain-timeout", "5"}));
  ASSERT_TRUE(WaitForHealthz(admin)) << d.Stderr();
  ASSERT_TRUE(d.Signal(SIGTERM));
  ExitStatus st = d.WaitExit(kTimeoutMs + 5000);
  EXPECT_TRUE(st.clean()) << st.Describe();
  for (const std::string &l : d.StderrLines()) {
    EXPECT_EQ(l.find(" info "), std::string::npos) << l;
    EXPECT_EQ(l.find(" debug "), std::string::npos) << l;
  }
}

TEST_F(DaemonCliTest, SigintExitsZero) {
  ASSERT_TRUE(StartDaemon());
  StopDaemonAndExpectCleanExit(SIGINT);
}

TEST_F(DaemonCliTest, SighupWithoutTlsKeepsRunning) {
  ASSERT_TRUE(StartDaemon());
  ASSERT_TRUE(daemon().Signal(SIGHUP));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  WsClient c;
  EXPECT_TRUE(c.OpenSession(Client())) << c.last_error();
  EXPECT_TRUE(daemon().running());
}

}  // namespace
}  // namespace nebula_test
