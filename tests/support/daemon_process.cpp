// daemon_process: see daemon_process.h. fork + execve; the child's stdout and
// stderr are pipes drained by one reader thread, so the daemon never blocks
// on a full pipe however much it logs.
#include "daemon_process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>

extern char **environ;

namespace nebula_test {

std::string ExitStatus::Describe() const {
  std::string s;
  if (timed_out) s += "did not exit in time (killed with SIGKILL); ";
  if (exited) return s + "exited with code " + std::to_string(code);
  if (signaled) return s + "killed by signal " + std::to_string(signal) + " (" + strsignal(signal) + ")";
  return s + "not reaped";
}

DaemonProcess::DaemonProcess(std::string binary) : binary_(std::move(binary)) {}

DaemonProcess::~DaemonProcess() {
  if (running()) {
    kill(pid_, SIGKILL);
    int st;
    while (waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
    }
    reaped_ = true;
  }
  if (reader_.joinable()) reader_.join();
}

bool DaemonProcess::Start(const std::vector<std::string> &args, const std::map<std::string, std::string> &env) {
  if (pid_ > 0) return false;
  // Everything the child needs is prepared before fork().
  std::vector<std::string> argv_s;
  argv_s.push_back(binary_);
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<std::string> env_s;
  for (char **e = environ; *e; e++)
    if (strncmp(*e, "NEBULA_", 7) != 0) env_s.emplace_back(*e);
  for (const auto &kv : env) env_s.push_back(kv.first + "=" + kv.second);
  std::vector<char *> argv, envp;
  for (auto &s : argv_s) argv.push_back(&s[0]);
  argv.push_back(nullptr);
  for (auto &s : env_s) envp.push_back(&s[0]);
  envp.push_back(nullptr);

  int out_pipe[2], err_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC) != 0) return false;
  if (pipe2(err_pipe, O_CLOEXEC) != 0) {
    close(out_pipe[0]);
    close(out_pipe[1]);
    return false;
  }
  int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    for (int fd : {out_pipe[0], out_pipe[1], err_pipe[0], err_pipe[1], devnull}) close(fd);
    return false;
  }
  if (pid == 0) {
    // Child: async-signal-safe calls only.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    dup2(devnull, 0);
    dup2(out_pipe[1], 1);
    dup2(err_pipe[1], 2);
    close_range(3, ~0U, 0);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    for (int sig : {SIGPIPE, SIGTERM, SIGINT, SIGHUP}) sigaction(sig, &sa, nullptr);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    execve(binary_.c_str(), argv.data(), envp.data());
    static const char msg[] = "daemon_process: execve failed\n";
    ssize_t ignored = write(2, msg, sizeof msg - 1);
    (void)ignored;
    _exit(127);
  }
  close(out_pipe[1]);
  close(err_pipe[1]);
  close(devnull);
  pid_ = pid;
  reaped_ = false;
  reader_ = std::thread(&DaemonProcess::ReaderLoop, this, out_pipe[0], err_pipe[0]);
  return true;
}

void DaemonProcess::ReaderLoop(int out_fd, int err_fd) {
  struct pollfd fds[2] = {{out_fd, POLLIN, 0}, {err_fd, POLLIN, 0}};
  int open_count = 2;
  char buf[8192];
  while (open_count > 0) {
    int r = poll(fds, 2, 1000);
    if (r < 0 && errno != EINTR) break;
    for (int i = 0; i < 2; i++) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ssize_t n = read(fds[i].fd, buf, sizeof buf);
      if (n > 0) {
        std::lock_guard<std::mutex> lock(mu_);
        (i == 0 ? out_ : err_).append(buf, static_cast<size_t>(n));
        cv_.notify_all();
      } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
        close(fds[i].fd);
        fds[i].fd = -1;
        open_count--;
      }
    }
  }
  for (auto &p : fds)
    if (p.fd >= 0) close(p.fd);
  std::lock_guard<std::mutex> lock(mu_);
  streams_closed_ = true;
  cv_.notify_all();
}

bool DaemonProcess::WaitForStderr(const std::string &needle, int timeout_ms, size_t from) {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms), [&] {
    return (err_.size() > from && err_.find(needle, from) != std::string::npos) || streams_closed_;
  }) && err_.size() > from && err_.find(needle, from) != std::string::npos;
}

bool DaemonProcess::WaitForStdout(const std::string &needle, int timeout_ms) {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms), [&] {
    return out_.find(needle) != std::string::npos || streams_closed_;
  }) && out_.find(needle) != std::string::npos;
}

namespace {
// "...=ws://127.0.0.1:1234 ..." -> 1234 for key "listen=".
bool ParsePortAfter(const std::string &line, const std::string &key, uint16_t *port, std::string *scheme) {
  size_t at = line.find(key);
  if (at == std::string::npos) return false;
  size_t end = line.find(' ', at);
  std::string value = line.substr(at + key.size(), end == std::string::npos ? std::string::npos : end - at - key.size());
  size_t sep = value.find("://");
  size_t colon = value.rfind(':');
  if (sep == std::string::npos || colon == std::string::npos || colon <= sep) return false;
  if (scheme) *scheme = value.substr(0, sep);
  long p = strtol(value.c_str() + colon + 1, nullptr, 10);
  if (p <= 0 || p > 65535) return false;
  *port = static_cast<uint16_t>(p);
  return true;
}
}  // namespace

bool DaemonProcess::WaitForReady(int timeout_ms) {
  if (!WaitForStderr("ready: ", timeout_ms)) return false;
  // Wait for the whole line.
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms), [&] {
    size_t at = err_.find("ready: ");
    return err_.find('\n', at) != std::string::npos || streams_closed_;
  });
  size_t at = err_.find("ready: ");
  size_t begin = err_.rfind('\n', at);
  begin = begin == std::string::npos ? 0 : begin + 1;
  size_t end = err_.find('\n', at);
  ready_line_ = err_.substr(begin, end == std::string::npos ? std::string::npos : end - begin);
  std::string scheme;
  if (!ParsePortAfter(ready_line_, "listen=", &listen_port_, &scheme)) return false;
  tls_ = scheme == "wss";
  if (!ParsePortAfter(ready_line_, "admin=", &admin_port_, nullptr)) return false;
  size_t w = ready_line_.find("workers=");
  workers_ = w == std::string::npos ? 0 : atoi(ready_line_.c_str() + w + 8);
  return true;
}

bool DaemonProcess::Signal(int sig) { return running() && kill(pid_, sig) == 0; }

ExitStatus DaemonProcess::WaitExit(int timeout_ms) {
  if (pid_ <= 0) return status_;
  if (!reaped_) {
    int64_t deadline = NowMs() + timeout_ms;
    int st = 0;
    bool timed_out = false;
    for (;;) {
      pid_t r = waitpid(pid_, &st, WNOHANG);
      if (r == pid_) break;
      if (r < 0 && errno != EINTR) break;
      if (NowMs() >= deadline) {
        timed_out = true;
        kill(pid_, SIGKILL);
        while (waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
        }
        break;
      }
      usleep(5000);
    }
    reaped_ = true;
    status_ = ExitStatus();
    status_.timed_out = timed_out;
    if (WIFEXITED(st)) {
      status_.exited = true;
      status_.code = WEXITSTATUS(st);
    } else if (WIFSIGNALED(st)) {
      status_.signaled = true;
      status_.signal = WTERMSIG(st);
    }
  }
  if (reader_.joinable()) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_for(lock, std::chrono::milliseconds(kTimeoutMs), [&] { return streams_closed_; });
    }
    reader_.join();
  }
  return status_;
}

std::string DaemonProcess::Stdout() const {
  std::lock_guard<std::mutex> lock(mu_);
  return out_;
}

std::string DaemonProcess::Stderr() const {
  std::lock_guard<std::mutex> lock(mu_);
  return err_;
}

std::vector<std::string> DaemonProcess::StderrLines() const { return SplitLines(Stderr()); }

ConnectOptions DaemonProcess::Client() const {
  ConnectOptions o;
  o.host = "127.0.0.1";
  o.port = listen_port_;
  o.tls = tls_;
  return o;
}

RunResult RunDaemon(const std::vector<std::string> &args, const std::map<std::string, std::string> &env,
                    int timeout_ms) {
  RunResult r;
  DaemonProcess d;
  if (!d.Start(args, env)) {
    r.err = "could not start " NEBULA_SYNCD_PATH;
    return r;
  }
  r.status = d.WaitExit(timeout_ms);
  r.out = d.Stdout();
  r.err = d.Stderr();
  return r;
}

std::vector<std::string> SplitLines(const std::string &text) {
  std::vector<std::string> lines;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t e = text.find('\n', pos);
    if (e == std::string::npos) e = text.size();
    lines.push_back(text.substr(pos, e - pos));
    pos = e + 1;
  }
  return lines;
}

std::vector<uint16_t> FindFreePorts(size_t n) {
  std::vector<int> fds;
  std::vector<uint16_t> ports;
  for (size_t i = 0; i < n; i++) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) break;
    fds.push_back(fd);
    struct sockaddr_in a = {};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (bind(fd, reinterpret_cast<sockaddr *>(&a), sizeof a) != 0 ||
        getsockname(fd, reinterpret_cast<sockaddr *>(&a), &len) != 0)
      break;
    ports.push_back(ntohs(a.sin_port));
  }
  for (int fd : fds) close(fd);
  return ports;
}

uint16_t FindFreePort() {
  std::vector<uint16_t> p = FindFreePorts(1);
  return p.empty() ? 0 : p[0];
}

HttpGetResult HttpGet(uint16_t port, const std::string &path, int timeout_ms, const std::string &host) {
  HttpGetResult out;
  WsClient c;
  ConnectOptions o;
  o.host = host;
  o.port = port;
  o.timeout_ms = timeout_ms;
  if (!c.Connect(o)) {
    out.error = c.last_error();
    return out;
  }
  std::string req = "GET " + path + " HTTP/1.1\r\nHost: " + host + ":" + std::to_string(port) +
                    "\r\nConnection: close\r\n\r\n";
  if (!c.SendRaw(req)) {
    out.error = c.last_error();
    return out;
  }
  HttpResponse r = c.ReadHttpResponse(timeout_ms);
  if (!r.ok()) {
    out.error = std::string("no response: ") + ToString(r.result) + " " + c.last_error();
    return out;
  }
  out.status = r.status;
  out.body = r.body;
  out.content_type = r.Header("content-type").value_or("");
  return out;
}

std::vector<MetricSample> ParseMetrics(const std::string &text) {
  std::vector<MetricSample> out;
  for (const std::string &raw : SplitLines(text)) {
    std::string line = raw;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || line[0] == '#') continue;
    MetricSample s;
    size_t i = 0;
    while (i < line.size() && line[i] != '{' && line[i] != ' ') i++;
    s.name = line.substr(0, i);
    if (i < line.size() && line[i] == '{') {
      i++;
      while (i < line.size() && line[i] != '}') {
        size_t eq = line.find('=', i);
        if (eq == std::string::npos) break;
        std::string key = line.substr(i, eq - i);
        while (!key.empty() && (key[0] == ' ' || key[0] == ',')) key.erase(0, 1);
        i = eq + 1;
        if (i >= line.size() || line[i] != '"') break;
        i++;
        std::string value;
        while (i < line.size() && line[i] != '"') {
          if (line[i] == '\\' && i + 1 < line.size()) i++;
          value.push_back(line[i++]);
        }
        i++;  // closing quote
        s.labels[key] = value;
        while (i < line.size() && (line[i] == ',' || line[i] == ' ')) i++;
      }
      i++;  // '}'
    }
    while (i < line.size() && line[i] == ' ') i++;
    s.value = strtod(line.c_str() + i, nullptr);
    out.push_back(std::move(s));
  }
  return out;
}

namespace {
bool Matches(const MetricSample &s, const std::string &name, const std::map<std::string, std::string> &filter) {
  if (s.name != name) return false;
  for (const auto &kv : filter) {
    auto it = s.labels.find(kv.first);
    if (it == s.labels.end() || it->second != kv.second) return false;
  }
  return true;
}
}  // namespace

std::string Tail(const std::string &text, size_t max_lines) {
  std::vector<std::string> lines = SplitLines(text);
  size_t from = lines.size() > max_lines ? lines.size() - max_lines : 0;
  std::string out = from ? "[... " + std::to_string(from) + " earlier lines]\n" : "";
  for (size_t i = from; i < lines.size(); i++) out += lines[i] + "\n";
  return out;
}

bool HasSanitizerReport(const std::string &text) {
  for (const char *marker : {"ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "WARNING: ThreadSanitizer",
                             "ERROR: ThreadSanitizer", "runtime error:", "ERROR: UndefinedBehaviorSanitizer"})
    if (text.find(marker) != std::string::npos) return true;
  return false;
}

::testing::AssertionResult DaemonHarness::StartDaemon(const DaemonOptions &options,
                                                      const std::map<std::string, std::string> &env) {
  DaemonOptions all = {{"listen", "127.0.0.1:0"},
                       {"admin-listen", "127.0.0.1:0"},
                       {"workers", "2"},
                       {"drain-timeout", "5"}};
  for (const auto &kv : options) all[kv.first] = kv.second;
  std::vector<std::string> args;
  for (const auto &kv : all) {
    if (kv.second.empty()) continue;
    args.push_back("--" + kv.first);
    args.push_back(kv.second);
  }
  auto drain = all.find("drain-timeout");
  drain_timeout_ms_ = drain != all.end() && !drain->second.empty()
                          ? static_cast<int>(strtod(drain->second.c_str(), nullptr) * 1000)
                          : 10000;
  daemon_ = std::make_unique<DaemonProcess>();
  std::string cmd = NEBULA_SYNCD_PATH;
  for (const auto &a : args) cmd += " " + a;
  if (!daemon_->Start(args, env)) return ::testing::AssertionFailure() << "cannot start " << cmd;
  if (!daemon_->WaitForReady()) {
    ExitStatus st = daemon_->WaitExit(1000);  // reaps it, or kills it after 1 s
    return ::testing::AssertionFailure() << "no parsable 'ready:' line from " << cmd << " (" << st.Describe()
                                         << "); stderr:\n"
                                         << Tail(daemon_->Stderr());
  }
  return ::testing::AssertionSuccess();
}

void DaemonHarness::StopDaemonAndExpectCleanExit(int sig) {
  if (!daemon_ || !daemon_->running()) return;
  daemon_->Signal(sig);
  ExitStatus st = daemon_->WaitExit(drain_timeout_ms_ + kTimeoutMs);
  std::string err = daemon_->Stderr();
  EXPECT_TRUE(st.clean()) << "nebula-syncd after signal " << sig << ": " << st.Describe() << "; stderr:\n"
                          << Tail(err);
  EXPECT_FALSE(HasSanitizerReport(err)) << "sanitizer report in stderr:\n" << Tail(err, 80);
}

std::vector<MetricSample> DaemonHarness::Metrics(std::string *text) const {
  HttpGetResult r = HttpGet(daemon_->admin_port(), "/metrics");
  if (text) *text = r.status == 200 ? r.body : "(GET /metrics: status " + std::to_string(r.status) + " " + r.error + ")";
  return r.status == 200 ? ParseMetrics(r.body) : std::vector<MetricSample>();
}

::testing::AssertionResult DaemonHarness::WaitForMetric(const std::string &name,
                                                        const std::map<std::string, std::string> &filter,
                                                        const std::function<bool(double)> &pred,
                                                        const std::string &expectation, int timeout_ms) const {
  int64_t deadline = NowMs() + timeout_ms;
  std::string text;
  double value = 0;
  for (;;) {
    std::vector<MetricSample> samples = Metrics(&text);
    value = SumMetric(samples, name, filter);
    if (CountMetric(samples, name, filter) > 0 && pred(value)) return ::testing::AssertionSuccess();
    if (NowMs() >= deadline) break;
    usleep(50 * 1000);
  }
  std::string f;
  for (const auto &kv : filter) f += (f.empty() ? "" : ",") + kv.first + "=\"" + kv.second + "\"";
  return ::testing::AssertionFailure() << "metric " << name << "{" << f << "} summed to " << value
                                       << ", expected " << expectation << "; last /metrics:\n"
                                       << text;
}

double SumMetric(const std::vector<MetricSample> &samples, const std::string &name,
                 const std::map<std::string, std::string> &filter) {
  double sum = 0;
  for (const auto &s : samples)
    if (Matches(s, name, filter)) sum += s.value;
  return sum;
}

size_t CountMetric(const std::vector<MetricSample> &samples, const std::string &name,
                   const std::map<std::string, std::string> &filter) {
  size_t n = 0;
  for (const auto &s : samples)
    if (Matches(s, name, filter)) n++;
  return n;
}

}  // namespace nebula_test
