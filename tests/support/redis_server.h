// redis_server: a real redis-server (Debian's package) for tests, on a free
// loopback port, with its data in a temporary directory. It can be stopped
// (SHUTDOWN NOSAVE or SIGKILL) and started again on the same port and data
// directory, to test what brokers do while Redis is away and after it
// returns.
#ifndef NEBULA_TESTS_REDIS_SERVER_H
#define NEBULA_TESTS_REDIS_SERVER_H

#include <sys/types.h>

#include <cstdint>
#include <string>

namespace nebula_test {

// The redis-server binary, or "" when it is not installed.
std::string RedisServerBinary();

class RedisServer {
public:
    struct Options {
        bool append_only = false;   // appendonly yes, appendfsync always
    };
    RedisServer() = default;
    ~RedisServer();  // kills the server and removes its directory
    RedisServer(const RedisServer &) = delete;
    RedisServer &operator=(const RedisServer &) = delete;

    // Starts on a free port (the same port again after Stop/Kill) and waits
    // until it answers PING. error says why on failure.
    bool Start(const Options &options, std::string *error);
    bool Start(std::string *error) { return Start(Options{}, error); }
    // SIGKILL, as a crash would; waits for the exit.
    void Kill();
    // SIGSTOP / SIGCONT: Redis stops answering without closing connections.
    void Pause();
    void Resume();

    uint16_t port() const { return port_; }
    pid_t pid() const { return pid_; }
    std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_) + "/0"; }
    // Runs one command with redis-cli; its output, trimmed.
    std::string Cli(const std::string &args) const;

private:
    bool WaitForPing(int timeout_ms);
    std::string dir_;
    uint16_t port_ = 0;
    pid_t pid_ = -1;
};

}  // namespace nebula_test

#endif
