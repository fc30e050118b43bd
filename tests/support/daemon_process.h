// daemon_process: runs nebula-syncd (NEBULA_SYNCD_PATH) for integration
// tests: starts it with chosen args and environment, captures stdout/stderr
// on a reader thread, waits for the "ready:" line and parses its ports, sends
// signals, and waits for the exit with a timeout (SIGKILL after it). Also a
// tiny blocking HTTP GET for the admin endpoints and a Prometheus text parser.
#ifndef NEBULA_TESTS_DAEMON_PROCESS_H
#define NEBULA_TESTS_DAEMON_PROCESS_H

#include <sys/types.h>

#include <gtest/gtest.h>

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "ws_test_client.h"

namespace nebula_test {

struct ExitStatus {
  bool exited = false;    // exit(code)
  int code = -1;
  bool signaled = false;  // killed by signal
  int signal = 0;
  bool timed_out = false;  // did not exit in time: we sent SIGKILL
  bool clean() const { return exited && code == 0 && !timed_out; }
  std::string Describe() const;
};

class DaemonProcess {
 public:
  explicit DaemonProcess(std::string binary = NEBULA_SYNCD_PATH);
  ~DaemonProcess();  // SIGKILLs and reaps a daemon still running
  DaemonProcess(const DaemonProcess &) = delete;
  DaemonProcess &operator=(const DaemonProcess &) = delete;

  // Starts the binary. The environment is ours minus every NEBULA_* variable,
  // plus env. Must be called from the thread that will outlive the daemon
  // (PR_SET_PDEATHSIG is per thread): the test's main thread.
  bool Start(const std::vector<std::string> &args, const std::map<std::string, std::string> &env = {});

  // Waits for the ready line and parses listen/admin ports and workers.
  bool WaitForReady(int timeout_ms = kTimeoutMs);
  // Waits until stderr contains needle (after the first `from` bytes).
  bool WaitForStderr(const std::string &needle, int timeout_ms = kTimeoutMs, size_t from = 0);
  // The same for stdout (false at once when the process closed it).
  bool WaitForStdout(const std::string &needle, int timeout_ms = kTimeoutMs);

  bool Signal(int sig);
  // Waits for the exit; after timeout_ms sends SIGKILL and reports timed_out.
  ExitStatus WaitExit(int timeout_ms = kTimeoutMs);
  bool running() const { return pid_ > 0 && !reaped_; }
  pid_t pid() const { return pid_; }

  std::string Stdout() const;
  std::string Stderr() const;
  std::vector<std::string> StderrLines() const;

  uint16_t listen_port() const { return listen_port_; }
  uint16_t admin_port() const { return admin_port_; }
  int workers() const { return workers_; }
  bool tls() const { return tls_; }
  const std::string &ready_line() const { return ready_line_; }
  // Where clients connect: 127.0.0.1:listen_port, TLS when the daemon says wss.
  ConnectOptions Client() const;

 private:
  void ReaderLoop(int out_fd, int err_fd);

  std::string binary_;
  pid_t pid_ = -1;
  bool reaped_ = false;
  ExitStatus status_;
  std::thread reader_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::string out_, err_;
  bool streams_closed_ = false;

  uint16_t listen_port_ = 0;
  uint16_t admin_port_ = 0;
  int workers_ = 0;
  bool tls_ = false;
  std::string ready_line_;
};

// Runs the daemon to completion (e.g. --help, invalid flags): exit status
// and everything it wrote. SIGKILL after timeout_ms.
struct RunResult {
  ExitStatus status;
  std::string out;
  std::string err;
};
RunResult RunDaemon(const std::vector<std::string> &args, const std::map<std::string, std::string> &env = {},
                    int timeout_ms = kTimeoutMs);

// Splits text into lines (without the newlines; no trailing empty line).
std::vector<std::string> SplitLines(const std::string &text);

// A TCP port on 127.0.0.1 that was free a moment ago (bind port 0, close).
uint16_t FindFreePort();
// n distinct such ports (all bound at once while choosing); fewer on failure.
std::vector<uint16_t> FindFreePorts(size_t n);

// Blocking HTTP/1.1 GET (Connection: close); status 0 and error on failure.
struct HttpGetResult {
  int status = 0;
  std::string body;
  std::string content_type;
  std::string error;
};
HttpGetResult HttpGet(uint16_t port, const std::string &path, int timeout_ms = kTimeoutMs,
                      const std::string &host = "127.0.0.1");

// Prometheus text exposition: one sample per line.
struct MetricSample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};
std::vector<MetricSample> ParseMetrics(const std::string &text);
// Sum of the samples named name whose labels include every pair in filter.
double SumMetric(const std::vector<MetricSample> &samples, const std::string &name,
                 const std::map<std::string, std::string> &filter = {});
// Number of samples named name (matching filter).
size_t CountMetric(const std::vector<MetricSample> &samples, const std::string &name,
                   const std::map<std::string, std::string> &filter = {});

// The last max_lines lines of text, for failure messages.
std::string Tail(const std::string &text, size_t max_lines = 40);
// Whether daemon output holds an ASan/UBSan/TSan/LSan report.
bool HasSanitizerReport(const std::string &text);

// Flag name (without the leading dashes) -> value.
using DaemonOptions = std::map<std::string, std::string>;

// Test-fixture helper: starts nebula-syncd with test defaults and stops it
// with SIGTERM expecting exit status 0 (sanitizer builds exit non-zero on a
// leak or race report, which then fails the test). Mix into a gtest fixture
// and call StopDaemonAndExpectCleanExit() from TearDown().
class DaemonHarness {
 public:
  virtual ~DaemonHarness() = default;

  // Defaults: --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --workers 2
  // --drain-timeout 5; options override them (an empty value drops a
  // default). Waits for the ready line.
  ::testing::AssertionResult StartDaemon(const DaemonOptions &options = {},
                                         const std::map<std::string, std::string> &env = {});
  // SIGTERM (or sig), wait for the exit, EXPECT status 0 and no sanitizer
  // report. No-op when no daemon runs.
  void StopDaemonAndExpectCleanExit(int sig = SIGTERM);

  DaemonProcess &daemon() { return *daemon_; }
  ConnectOptions Client() const { return daemon_->Client(); }
  HttpGetResult Admin(const std::string &path) const { return HttpGet(daemon_->admin_port(), path); }
  // GET /metrics, parsed; text (optional) receives the body.
  std::vector<MetricSample> Metrics(std::string *text = nullptr) const;
  // Polls /metrics until pred(sum of name over samples matching filter)
  // holds; fails after timeout_ms showing the last value.
  ::testing::AssertionResult WaitForMetric(const std::string &name, const std::map<std::string, std::string> &filter,
                                           const std::function<bool(double)> &pred, const std::string &expectation,
                                           int timeout_ms = kTimeoutMs) const;
  int drain_timeout_ms() const { return drain_timeout_ms_; }

 protected:
  std::unique_ptr<DaemonProcess> daemon_;
  int drain_timeout_ms_ = 5000;
};

}  // namespace nebula_test

#endif
