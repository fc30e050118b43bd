// redis_server: see redis_server.h.
#include "redis_server.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

#include "daemon_process.h"

namespace nebula_test {

std::string RedisServerBinary()
{
    for (const char *path : {"/usr/bin/redis-server", "/usr/local/bin/redis-server"})
        if (access(path, X_OK) == 0)
            return path;
    return "";
}

RedisServer::~RedisServer()
{
    Kill();
    if (!dir_.empty())
        std::system(("rm -rf '" + dir_ + "'").c_str());
}

bool RedisServer::Start(const Options &options, std::string *error)
{
    std::string binary = RedisServerBinary();
    if (binary.empty()) {
        *error = "redis-server is not installed (apt-get install redis-server)";
        return false;
    }
    if (dir_.empty()) {
        char tmpl[] = "/tmp/nebula-redis-XXXXXX";
        if (!mkdtemp(tmpl)) {
            *error = "mkdtemp failed";
            return false;
        }
        dir_ = tmpl;
    }
    if (port_ == 0)
        port_ = FindFreePort();
    std::vector<std::string> args = {binary, "--port", std::to_string(port_), "--bind", "127.0.0.1",
                                     "--dir", dir_, "--save", "", "--daemonize", "no",
                                     "--logfile", dir_ + "/redis.log", "--protected-mode", "no"};
    if (options.append_only) {
        args.insert(args.end(), {"--appendonly", "yes", "--appendfsync", "always"});
    }
    pid_t pid = fork();
    if (pid < 0) {
        *error = "fork failed";
        return false;
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        std::vector<char *> argv;
        for (std::string &a : args)
            argv.push_back(a.data());
        argv.push_back(nullptr);
        execv(argv[0], argv.data());
        _exit(127);
    }
    pid_ = pid;
    if (!WaitForPing(10000)) {
        *error = "redis-server did not answer PING on port " + std::to_string(port_);
        Kill();
        return false;
    }
    return true;
}

bool RedisServer::WaitForPing(int timeout_ms)
{
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (std::chrono::steady_clock::now() < deadline) {
        if (Cli("PING") == "PONG")
            return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
}

void RedisServer::Kill()
{
    if (pid_ <= 0)
        return;
    Resume();
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
}

void RedisServer::Pause()
{
    if (pid_ > 0)
        kill(pid_, SIGSTOP);
}

void RedisServer::Resume()
{
    if (pid_ > 0)
        kill(pid_, SIGCONT);
}

std::string RedisServer::Cli(const std::string &args) const
{
    std::string command = "redis-cli -h 127.0.0.1 -p " + std::to_string(port_) + " " + args +
                          " 2>/dev/null";
    FILE *p = popen(command.c_str(), "r");
    if (!p)
        return "";
    std::string out;
    std::array<char, 4096> buf;
    size_t n;
    while ((n = fread(buf.data(), 1, buf.size(), p)) > 0)
        out.append(buf.data(), n);
    pclose(p);
    while (!out.empty() && (out.back() == '\n' || out.back() == '\r'))
        out.pop_back();
    return out;
}

}  // namespace nebula_test
