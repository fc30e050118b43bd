// Tests of nebula-syncd's configuration: flags, NEBULA_* environment
// variables and the config file, their precedence, and the one-line errors
// users see for bad values.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

extern "C" {
#include "config.h"
}

namespace {

struct Loaded {
    config_outcome outcome;
    std::string error;
};

class ConfigTest : public ::testing::Test {
protected:
    nebula_config cfg{};

    Loaded load(std::vector<std::string> args, std::vector<std::string> env = {}) {
        args.insert(args.begin(), "nebula-syncd");
        std::vector<char *> argv;
        for (auto &a : args)
            argv.push_back(a.data());
        argv.push_back(nullptr);
        std::vector<char *> envp;
        for (auto &e : env)
            envp.push_back(e.data());
        envp.push_back(nullptr);
        char err[1024] = "";
        config_outcome outcome = nebula_config_load(&cfg, (int)args.size(), argv.data(),
                                                    envp.data(), err, sizeof err);
        return {outcome, err};
    }

    std::string writeFile(const std::string &text) {
        char path[] = "/tmp/nebula-config-XXXXXX";
        int fd = mkstemp(path);
        EXPECT_GE(fd, 0);
        FILE *f = fdopen(fd, "w");
        fputs(text.c_str(), f);
        fclose(f);
        files.push_back(path);
        return path;
    }

    void TearDown() override {
        for (auto &f : files)
            std::remove(f.c_str());
    }

    std::vector<std::string> files;
};

TEST_F(ConfigTest, DefaultsMatchTheDocumentation) {
    ASSERT_EQ(load({}).outcome, CONFIG_RUN);
    EXPECT_STREQ(cfg.broker.listen, "127.0.0.1:8080");
    EXPECT_STREQ(cfg.broker.admin_listen, "127.0.0.1:9090");
    EXPECT_EQ(cfg.broker.tls_cert_file, nullptr);
    EXPECT_GE(cfg.broker.workers, 1);
    EXPECT_EQ(cfg.broker.max_message_size, 1048576u);
    EXPECT_EQ(cfg.broker.max_connections, 100000u);
    EXPECT_DOUBLE_EQ(cfg.broker.idle_timeout_s, 60);
    EXPECT_DOUBLE_EQ(cfg.broker.handshake_timeout_s, 10);
    EXPECT_DOUBLE_EQ(cfg.broker.drain_timeout_s, 10);
    EXPECT_TRUE(cfg.broker.logging_enabled);
    EXPECT_EQ(cfg.broker.log_level, NEBULA_LOG_INFO);
    EXPECT_EQ(cfg.broker.allowed_origin_count, 0u);
}

TEST_F(ConfigTest, FlagsInBothSpellingsAreApplied) {
    Loaded r = load({"--listen", "0.0.0.0:9000", "--workers=3", "--max-message-size", "65536",
                     "--idle-timeout", "1.5", "--log-level", "debug", "--log-enabled", "false",
                     "--tls-cert", "/c.pem", "--tls-key", "/k.pem"});
    ASSERT_EQ(r.outcome, CONFIG_RUN) << r.error;
    EXPECT_STREQ(cfg.broker.listen, "0.0.0.0:9000");
    EXPECT_EQ(cfg.broker.workers, 3);
    EXPECT_EQ(cfg.broker.max_message_size, 65536u);
    EXPECT_DOUBLE_EQ(cfg.broker.idle_timeout_s, 1.5);
    EXPECT_EQ(cfg.broker.log_level, NEBULA_LOG_DEBUG);
    EXPECT_FALSE(cfg.broker.logging_enabled);
    EXPECT_STREQ(cfg.broker.tls_cert_file, "/c.pem");
    EXPECT_STREQ(cfg.broker.tls_key_file, "/k.pem");
}

TEST_F(ConfigTest, OriginsAreSplitAndTrimmed) {
    ASSERT_EQ(load({"--origins", "https://a.example, https://b.example,,"}).outcome, CONFIG_RUN);
    ASSERT_EQ(cfg.broker.allowed_origin_count, 2u);
    EXPECT_STREQ(cfg.broker.allowed_origins[0], "https://a.example");
    EXPECT_STREQ(cfg.broker.allowed_origins[1], "https://b.example");
}

TEST_F(ConfigTest, HelpAndVersionWinOverEverythingElse) {
    EXPECT_EQ(load({"--workers", "0", "--help"}).outcome, CONFIG_HELP);
    EXPECT_EQ(load({"--bogus", "--version"}).outcome, CONFIG_VERSION);
}

TEST_F(ConfigTest, BadValuesAreOneLineErrorsNamingTheOption) {
    struct Case {
        std::vector<std::string> args;
        const char *mentions;
    } cases[] = {
        {{"--workers", "0"}, "--workers"},
        {{"--workers", "two"}, "--workers"},
        {{"--listen", "nonsense"}, "--listen"},
        {{"--listen", "127.0.0.1:70000"}, "--listen"},
        {{"--admin-listen", "::1:80"}, "--admin-listen"},
        {{"--max-message-size", "-5"}, "--max-message-size"},
        {{"--max-connections", "0"}, "--max-connections"},
        {{"--idle-timeout", "0"}, "--idle-timeout"},
        {{"--drain-timeout", "soon"}, "--drain-timeout"},
        {{"--log-level", "loud"}, "--log-level"},
        {{"--log-enabled", "maybe"}, "--log-enabled"},
        {{"--frobnicate", "1"}, "--frobnicate"},
        {{"--listen"}, "missing value"},
        {{"stray"}, "stray"},
        {{"--tls-cert", "/c.pem"}, "--tls-key"},
    };
    for (const auto &c : cases) {
        Loaded r = load(c.args);
        EXPECT_EQ(r.outcome, CONFIG_ERROR) << c.args[0];
        EXPECT_NE(r.error.find(c.mentions), std::string::npos) << r.error;
        EXPECT_EQ(r.error.find('\n'), std::string::npos) << r.error;
    }
}

TEST_F(ConfigTest, SyncOptionsAreParsed) {
    Loaded r = load({"--tokens", "/etc/tokens", "--conflict-resolution", "server-wins",
                     "--conflict-rules", "notes-*=client-wins, drafts = last-write-wins",
                     "--slow-consumer", "close", "--max-output-buffer", "65536",
                     "--retention", "86400", "--cleanup-interval", "60"});
    ASSERT_EQ(r.outcome, CONFIG_RUN) << r.error;
    EXPECT_STREQ(cfg.broker.tokens_file, "/etc/tokens");
    EXPECT_EQ(cfg.broker.conflict_strategy, SYNC_SERVER_WINS);
    ASSERT_EQ(cfg.broker.conflict_rule_count, 2u);
    EXPECT_STREQ(cfg.broker.conflict_rules[0].pattern, "notes-*");
    EXPECT_EQ(cfg.broker.conflict_rules[0].strategy, SYNC_CLIENT_WINS);
    EXPECT_STREQ(cfg.broker.conflict_rules[1].pattern, "drafts");
    EXPECT_EQ(cfg.broker.conflict_rules[1].strategy, SYNC_LAST_WRITE_WINS);
    EXPECT_TRUE(cfg.broker.slow_consumer_close);
    EXPECT_EQ(cfg.broker.max_output_buffer, 65536u);
    EXPECT_DOUBLE_EQ(cfg.broker.retention_s, 86400);
    EXPECT_DOUBLE_EQ(cfg.broker.cleanup_interval_s, 60);
}

TEST_F(ConfigTest, StorageOptionsAreParsed) {
    ASSERT_EQ(load({}).outcome, CONFIG_RUN);
    EXPECT_EQ(cfg.broker.storage_kind, NEBULA_STORAGE_MEMORY);
    EXPECT_EQ(cfg.broker.redis_url, nullptr);
    EXPECT_EQ(cfg.broker.redis_max_log, 1000000u);
    Loaded r = load({"--storage", "redis", "--redis-url", "redis://:pw@10.0.0.5:6380/2",
                     "--redis-prefix", "app1:", "--redis-max-log", "0"});
    ASSERT_EQ(r.outcome, CONFIG_RUN) << r.error;
    EXPECT_EQ(cfg.broker.storage_kind, NEBULA_STORAGE_REDIS);
    EXPECT_STREQ(cfg.broker.redis_url, "redis://:pw@10.0.0.5:6380/2");
    EXPECT_STREQ(cfg.broker.redis_prefix, "app1:");
    EXPECT_EQ(cfg.broker.redis_max_log, 0u);
    r = load({}, {"NEBULA_STORAGE=redis"});
    ASSERT_EQ(r.outcome, CONFIG_RUN) << r.error;
    EXPECT_EQ(cfg.broker.storage_kind, NEBULA_STORAGE_REDIS);
    EXPECT_EQ(cfg.broker.redis_url, nullptr) << "the library default applies";
}

TEST_F(ConfigTest, SyncDefaultsAreAnonymousLastWriteWinsAndCatchUp) {
    ASSERT_EQ(load({}).outcome, CONFIG_RUN);
    EXPECT_EQ(cfg.broker.tokens_file, nullptr);
    EXPECT_EQ(cfg.broker.conflict_strategy, SYNC_LAST_WRITE_WINS);
    EXPECT_EQ(cfg.broker.conflict_rule_count, 0u);
    EXPECT_FALSE(cfg.broker.slow_consumer_close);
    EXPECT_EQ(cfg.broker.max_output_buffer, 1048576u);
    EXPECT_DOUBLE_EQ(cfg.broker.retention_s, 7 * 24 * 3600);
    EXPECT_DOUBLE_EQ(cfg.broker.cleanup_interval_s, 3600);
}

TEST_F(ConfigTest, BadSyncOptionsAreOneLineErrors) {
    struct Case {
        std::vector<std::string> args;
        const char *mentions;
    } cases[] = {
        {{"--auth", "tokens"}, "--tokens"},
        {{"--auth", "none", "--tokens", "/t"}, "--auth none"},
        {{"--auth", "maybe"}, "--auth"},
        {{"--conflict-resolution", "newest"}, "--conflict-resolution"},
        {{"--conflict-rules", "notes-*"}, "--conflict-rules"},
        {{"--conflict-rules", "=server-wins"}, "--conflict-rules"},
        {{"--conflict-rules", "a=sometimes"}, "--conflict-rules"},
        {{"--slow-consumer", "drop"}, "--slow-consumer"},
        {{"--max-output-buffer", "10"}, "--max-output-buffer"},
        {{"--retention", "-1"}, "--retention"},
        {{"--cleanup-interval", "0"}, "--cleanup-interval"},
        {{"--storage", "postgres"}, "--storage"},
        {{"--redis-url", "redis://h:1/0"}, "--storage redis"},
        {{"--redis-prefix", "x:"}, "--storage redis"},
        {{"--redis-max-log", "5"}, "--storage redis"},
        {{"--storage", "redis", "--redis-max-log", "-1"}, "--redis-max-log"},
    };
    for (const auto &c : cases) {
        Loaded r = load(c.args);
        EXPECT_EQ(r.outcome, CONFIG_ERROR) << c.args[0];
        EXPECT_NE(r.error.find(c.mentions), std::string::npos) << r.error;
    }
}

TEST_F(ConfigTest, EnvironmentVariablesUseTheSameNames) {
    Loaded r = load({}, {"NEBULA_LISTEN=127.0.0.2:7000", "NEBULA_MAX_MESSAGE_SIZE=4096",
                         "NEBULA_UNRELATED=x", "PATH=/bin"});
    ASSERT_EQ(r.outcome, CONFIG_RUN) << r.error;
    EXPECT_STREQ(cfg.broker.listen, "127.0.0.2:7000");
    EXPECT_EQ(cfg.broker.max_message_size, 4096u);
}

TEST_F(ConfigTest, BadEnvironmentValueNamesTheVariable) {
    Loaded r = load({}, {"NEBULA_WORKERS=lots"});
    ASSERT_EQ(r.outcome, CONFIG_ERROR);
    EXPECT_NE(r.error.find("NEBULA_WORKERS"), std::string::npos) << r.error;
}

TEST_F(ConfigTest, PrecedenceIsFileThenEnvironmentThenFlags) {
    std::string file = writeFile("# settings\nlisten = 127.0.0.3:1111\nworkers = 2\n"
                                 "max-connections = 10  # trailing comment\nlog-level=warn\n");
    Loaded r = load({"--config", file, "--workers", "4"},
                    {"NEBULA_WORKERS=3", "NEBULA_MAX_CONNECTIONS=20"});
    ASSERT_EQ(r.outcome, CONFIG_RUN) << r.error;
    EXPECT_STREQ(cfg.broker.listen, "127.0.0.3:1111");   // file only
    EXPECT_EQ(cfg.broker.max_connections, 20u);           // environment over file
    EXPECT_EQ(cfg.broker.workers, 4);                     // flag over both
    EXPECT_EQ(cfg.broker.log_level, NEBULA_LOG_WARN);
}

TEST_F(ConfigTest, ConfigFileErrorsNameFileAndLine) {
    std::string file = writeFile("listen = 127.0.0.1:1\n\nbogus = 1\n");
    Loaded r = load({"--config=" + file});
    ASSERT_EQ(r.outcome, CONFIG_ERROR);
    EXPECT_NE(r.error.find(file + ":3"), std::string::npos) << r.error;
    EXPECT_NE(r.error.find("bogus"), std::string::npos) << r.error;

    Loaded missing = load({"--config", "/nonexistent/nebula.conf"});
    ASSERT_EQ(missing.outcome, CONFIG_ERROR);
    EXPECT_NE(missing.error.find("/nonexistent/nebula.conf"), std::string::npos);
}

}  // namespace
