// Tests of token authentication: loading token files, looking tokens up
// (plain and sha256: entries), grant pattern matching, the one-line errors
// operators see for bad files, and concurrent lookups on a shared table.
#include <gtest/gtest.h>

#include <openssl/sha.h>
#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "auth.h"

namespace {

const char kAcmeToken[] = "s3cr3t-token-for-acme-app-0001";
const char kGlobexToken[] = "globex-public-reader-0002";   // stored hashed below
const char kGlobexHash[] = "17bb04d32dd36ee568eac06a88703593db59bd85d71deb53fa9999904885a4ea";

std::string sha256_hex(const std::string &s) {
    unsigned char d[SHA256_DIGEST_LENGTH];
    SHA256(reinterpret_cast<const unsigned char *>(s.data()), s.size(), d);
    std::string hex;
    char byte[3];
    for (unsigned char c : d) {
        snprintf(byte, sizeof byte, "%02x", c);
        hex += byte;
    }
    return hex;
}

bool lookup(const token_table *t, const std::string &token, auth_grant *g = nullptr) {
    return token_table_lookup(t, token.data(), token.size(), g);
}

class AuthTest : public ::testing::Test {
protected:
    std::vector<std::string> paths;
    std::vector<token_table *> tables;

    void TearDown() override {
        for (token_table *t : tables)
            token_table_free(t);
        for (const std::string &p : paths)
            unlink(p.c_str());
    }

    std::string write_file(const std::string &content) {
        const char *dir = getenv("TMPDIR");
        std::string tmpl = std::string(dir != nullptr && *dir != '\0' ? dir : "/tmp") +
                           "/test_auth_XXXXXX";
        std::vector<char> name(tmpl.begin(), tmpl.end());
        name.push_back('\0');
        int fd = mkstemp(name.data());
        EXPECT_GE(fd, 0);
        EXPECT_EQ(write(fd, content.data(), content.size()), (ssize_t)content.size());
        close(fd);
        paths.emplace_back(name.data());
        return paths.back();
    }

    // Loads content; the table is freed at TearDown.
    token_table *load(const std::string &content, std::string *error = nullptr) {
        std::string path = write_file(content);
        char err[512] = "";
        token_table *t = token_table_load(path.c_str(), err, sizeof err);
        if (t != nullptr)
            tables.push_back(t);
        if (error != nullptr)
            *error = err;
        return t;
    }

    // Loads content that must be rejected at the given line for a reason
    // containing `reason`; the message must be one line.
    void expect_error(const std::string &content, unsigned line, const std::string &reason) {
        std::string error;
        EXPECT_EQ(load(content, &error), nullptr) << content;
        std::string where = paths.back() + ":" + std::to_string(line) + ": ";
        EXPECT_EQ(error.rfind(where, 0), 0u) << error;
        EXPECT_NE(error.find(reason), std::string::npos) << error;
        EXPECT_EQ(error.find('\n'), std::string::npos) << error;
    }

    token_table *load_example() {
        return load(std::string("# Nebula Sync tokens\n"
                                "\n"
                                "s3cr3t-token-for-acme-app-0001  acme  read=*  write=todos,notes-*\n"
                                "   # indented comment\n"
                                "sha256:") +
                    kGlobexHash +
                    "  globex  read=public-* write=\n"
                    "\tinitech-readonly-token-0003\tinitech\tread=users,posts-?\r\n"
                    "initech-no-rights-token-0004 initech");   // no final newline
    }
};

// ---- loading and lookup ---------------------------------------------------

TEST_F(AuthTest, LoadsValidFileWithCount) {
    token_table *t = load_example();
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(token_table_count(t), 4u);
}

TEST_F(AuthTest, EmptyFileLoadsAndFindsNothing) {
    token_table *t = load("# nothing yet\n\n");
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(token_table_count(t), 0u);
    EXPECT_FALSE(lookup(t, kAcmeToken));
}

TEST_F(AuthTest, LookupFillsGrant) {
    token_table *t = load_example();
    ASSERT_NE(t, nullptr);
    auth_grant g;
    ASSERT_TRUE(lookup(t, kAcmeToken, &g));
    EXPECT_STREQ(g.tenant, "acme");
    EXPECT_STREQ(g.read_patterns, "*");
    EXPECT_STREQ(g.write_patterns, "todos,notes-*");

    ASSERT_TRUE(lookup(t, "initech-readonly-token-0003", &g));
    EXPECT_STREQ(g.tenant, "initech");
    EXPECT_STREQ(g.read_patterns, "users,posts-?");   // CR of the CRLF line dropped
    EXPECT_STREQ(g.write_patterns, "");

    ASSERT_TRUE(lookup(t, "initech-no-rights-token-0004", &g));
    EXPECT_STREQ(g.read_patterns, "");
    EXPECT_STREQ(g.write_patterns, "");

    EXPECT_TRUE(lookup(t, kAcmeToken));   // grant may be NULL
}

TEST_F(AuthTest, LookupTakesLengthNotNulTerminator) {
    token_table *t = load_example();
    ASSERT_NE(t, nullptr);
    std::string longer = std::string(kAcmeToken) + "XYZ";
    EXPECT_TRUE(token_table_lookup(t, longer.data(), strlen(kAcmeToken), nullptr));
}

TEST_F(AuthTest, WrongTokensAreNotFound) {
    token_table *t = load_example();
    ASSERT_NE(t, nullptr);
    std::string acme = kAcmeToken;
    auth_grant g;
    EXPECT_FALSE(lookup(t, "s3cr3t-token-for-acme-app-0002", &g));   // wrong
    EXPECT_FALSE(lookup(t, acme.substr(0, acme.size() - 1)));         // prefix
    EXPECT_FALSE(lookup(t, acme.substr(0, 16)));                       // short prefix
    EXPECT_FALSE(lookup(t, acme + "x"));                               // extra char
    EXPECT_FALSE(lookup(t, "x" + acme));
    EXPECT_FALSE(lookup(t, ""));
    EXPECT_FALSE(lookup(t, std::string("sha256:") + kGlobexHash));     // the hash is no token
    EXPECT_FALSE(token_table_lookup(t, nullptr, 0, &g));
    EXPECT_FALSE(token_table_lookup(nullptr, kAcmeToken, strlen(kAcmeToken), &g));
}

TEST_F(AuthTest, Sha256EntriesMatchThePlainToken) {
    token_table *t = load_example();
    ASSERT_NE(t, nullptr);
    ASSERT_EQ(sha256_hex(kGlobexToken), kGlobexHash);
    auth_grant g;
    ASSERT_TRUE(lookup(t, kGlobexToken, &g));
    EXPECT_STREQ(g.tenant, "globex");
    EXPECT_STREQ(g.read_patterns, "public-*");
    EXPECT_STREQ(g.write_patterns, "");
    EXPECT_FALSE(lookup(t, std::string(kGlobexToken) + "!"));
}

TEST_F(AuthTest, Sha256HexMayBeUpperCase) {
    std::string hex = sha256_hex("an-uppercase-hashed-token");
    for (char &c : hex)
        c = (char)toupper((unsigned char)c);
    token_table *t = load("sha256:" + hex + " acme read=*\n");
    ASSERT_NE(t, nullptr);
    EXPECT_TRUE(lookup(t, "an-uppercase-hashed-token"));
}

TEST_F(AuthTest, HashedShortTokenIsNeverFound) {
    // The file cannot check what is behind a hash, so lookups refuse tokens
    // the file would refuse in plain form.
    token_table *t = load("sha256:" + sha256_hex("test") + " acme read=*\n");
    ASSERT_NE(t, nullptr);
    EXPECT_FALSE(lookup(t, "test"));
}

TEST_F(AuthTest, TokenLengthLimitsAreInclusive) {
    std::string min(16, 'a'), max(512, 'b');
    token_table *t = load(min + " acme read=*\n" + max + " acme read=*\n");
    ASSERT_NE(t, nullptr);
    EXPECT_TRUE(lookup(t, min));
    EXPECT_TRUE(lookup(t, max));
}

// ---- grants -----------------------------------------------------------------

auth_grant grant(const char *read, const char *write) {
    auth_grant g{};
    snprintf(g.tenant, sizeof g.tenant, "acme");
    snprintf(g.read_patterns, sizeof g.read_patterns, "%s", read);
    snprintf(g.write_patterns, sizeof g.write_patterns, "%s", write);
    return g;
}

TEST(AuthGrant, PatternMatching) {
    auth_grant g = grant("users,posts-*,log-?,v[12],*.archive", "");
    EXPECT_TRUE(auth_grant_can_read(&g, "users"));                 // exact
    EXPECT_FALSE(auth_grant_can_read(&g, "users2"));               // exact means whole name
    EXPECT_FALSE(auth_grant_can_read(&g, "user"));
    EXPECT_TRUE(auth_grant_can_read(&g, "posts-"));                // prefix-*
    EXPECT_TRUE(auth_grant_can_read(&g, "posts-2024.jan"));
    EXPECT_FALSE(auth_grant_can_read(&g, "posts"));
    EXPECT_TRUE(auth_grant_can_read(&g, "log-a"));                 // ?
    EXPECT_FALSE(auth_grant_can_read(&g, "log-ab"));
    EXPECT_FALSE(auth_grant_can_read(&g, "log-"));
    EXPECT_TRUE(auth_grant_can_read(&g, "v2"));                    // [class]
    EXPECT_FALSE(auth_grant_can_read(&g, "v3"));
    EXPECT_TRUE(auth_grant_can_read(&g, ".archive"));              // no FNM_PERIOD
    EXPECT_TRUE(auth_grant_can_read(&g, "a/b.archive"));           // no FNM_PATHNAME
    EXPECT_FALSE(auth_grant_can_read(&g, "todos"));                // no match
}

TEST(AuthGrant, StarMatchesAnyNonEmptyName) {
    auth_grant g = grant("*", "*");
    EXPECT_TRUE(auth_grant_can_read(&g, "x"));
    EXPECT_TRUE(auth_grant_can_write(&g, "anything-at.all"));
    EXPECT_FALSE(auth_grant_can_read(&g, ""));
    EXPECT_FALSE(auth_grant_can_write(&g, ""));
    EXPECT_FALSE(auth_grant_can_read(&g, nullptr));
    EXPECT_FALSE(auth_grant_can_read(nullptr, "x"));
}

TEST(AuthGrant, ReadAndWriteAreSeparate) {
    auth_grant g = grant("public-*", "drafts");
    EXPECT_TRUE(auth_grant_can_read(&g, "public-news"));
    EXPECT_FALSE(auth_grant_can_write(&g, "public-news"));
    EXPECT_TRUE(auth_grant_can_write(&g, "drafts"));
    EXPECT_FALSE(auth_grant_can_read(&g, "drafts"));
}

TEST(AuthGrant, EmptyListAllowsNothing) {
    auth_grant g = grant("", "");
    EXPECT_FALSE(auth_grant_can_read(&g, "users"));
    EXPECT_FALSE(auth_grant_can_write(&g, "users"));
}

TEST(AuthGrant, OverlongPatternInHandMadeGrantAllowsNothing) {
    std::string huge(200, '*');
    auth_grant g = grant(huge.c_str(), "");
    EXPECT_FALSE(auth_grant_can_read(&g, "users"));
}

TEST(AuthGrant, AllowAllGrantsEverythingInDefaultTenant) {
    auth_grant g;
    memset(&g, 0x55, sizeof g);
    auth_grant_allow_all(&g, nullptr);
    EXPECT_STREQ(g.tenant, "default");
    for (const char *c : {"users", "posts-1", "x", ".hidden"}) {
        EXPECT_TRUE(auth_grant_can_read(&g, c)) << c;
        EXPECT_TRUE(auth_grant_can_write(&g, c)) << c;
    }
    EXPECT_FALSE(auth_grant_can_read(&g, ""));
    auth_grant_allow_all(&g, "default");
    EXPECT_STREQ(g.tenant, "default");
}

TEST_F(AuthTest, MissingWriteMeansNoWrites) {
    token_table *t = load("reader-only-token-000001 acme read=*\n");
    ASSERT_NE(t, nullptr);
    auth_grant g;
    ASSERT_TRUE(lookup(t, "reader-only-token-000001", &g));
    EXPECT_TRUE(auth_grant_can_read(&g, "todos"));
    EXPECT_FALSE(auth_grant_can_write(&g, "todos"));
}

TEST_F(AuthTest, KeysMayComeInEitherOrder) {
    token_table *t = load("writer-first-token-00001 acme write=a read=b\n");
    ASSERT_NE(t, nullptr);
    auth_grant g;
    ASSERT_TRUE(lookup(t, "writer-first-token-00001", &g));
    EXPECT_TRUE(auth_grant_can_write(&g, "a"));
    EXPECT_FALSE(auth_grant_can_write(&g, "b"));
    EXPECT_TRUE(auth_grant_can_read(&g, "b"));
}

// ---- errors -------------------------------------------------------------------

const std::string kOk = "valid-token-for-line-one acme read=*\n";

TEST_F(AuthTest, TooShortToken) {
    expect_error(kOk + "short-token-15c acme read=*\n", 2, "token too short (min 16)");
}

TEST_F(AuthTest, TooLongToken) {
    expect_error(std::string(513, 't') + " acme\n", 1, "token too long (max 512)");
}

TEST_F(AuthTest, NonPrintableToken) {
    expect_error("token-with-\x01-control-char acme\n", 1, "not printable ASCII");
    expect_error("token-with-\xc3\xa9-utf8-chars acme\n", 1, "not printable ASCII");
}

TEST_F(AuthTest, BadSha256) {
    expect_error("sha256:abcd acme\n", 1, "64 hex digits");
    std::string bad = sha256_hex("x");
    bad[10] = 'g';
    expect_error("sha256:" + bad + " acme\n", 1, "64 hex digits");
    expect_error("sha256:" + sha256_hex("x") + "0 acme\n", 1, "64 hex digits");
}

TEST_F(AuthTest, BadTenantChars) {
    expect_error(kOk + "valid-token-for-line-two ac/me read=*\n", 2,
                 "bad character '/' in tenant");
    expect_error("valid-token-for-line-one acme!\n", 1, "bad character '!' in tenant");
    expect_error("valid-token-for-line-one " + std::string(65, 'a') + "\n", 1,
                 "tenant too long (max 64)");
    expect_error("valid-token-for-line-one ..\n", 1, "tenant may not be");
}

TEST_F(AuthTest, TenantLengthLimitIsInclusive) {
    std::string tenant(64, 'a');
    token_table *t = load("valid-token-for-line-one " + tenant + " read=*\n");
    ASSERT_NE(t, nullptr);
    auth_grant g;
    ASSERT_TRUE(lookup(t, "valid-token-for-line-one", &g));
    EXPECT_EQ(std::string(g.tenant), tenant);
}

TEST_F(AuthTest, MissingTenant) {
    expect_error(kOk + "valid-token-for-line-two\n", 2, "missing tenant");
    expect_error("valid-token-for-line-one   \t\n", 1, "missing tenant");
    expect_error("valid-token-for-line-one read=*\n", 1, "missing tenant");
}

TEST_F(AuthTest, BadPatternChars) {
    expect_error("valid-token-for-line-one acme read=users,po/sts\n", 1,
                 "bad character '/' in read= pattern");
    expect_error("valid-token-for-line-one acme write=!x\n", 1,
                 "bad character '!' in write= pattern");
    expect_error("valid-token-for-line-one acme read=a,,b\n", 1, "empty pattern in read= list");
    expect_error("valid-token-for-line-one acme read=a,\n", 1, "empty pattern in read= list");
    expect_error("valid-token-for-line-one acme read=" + std::string(129, 'p') + "\n", 1,
                 "read= pattern too long (max 128)");
    std::string list;
    for (int i = 0; i < 120; i++)
        list += "abcdefgh,";
    list += "z";
    expect_error("valid-token-for-line-one acme write=" + list + "\n", 1,
                 "write= list too long (max 1024 characters)");
}

TEST_F(AuthTest, UnknownKey) {
    expect_error(kOk + "valid-token-for-line-two acme read=* admin=yes\n", 2,
                 "unknown key 'admin'");
    expect_error("valid-token-for-line-one acme Read=*\n", 1, "unknown key 'Read'");
}

TEST_F(AuthTest, NotKeyValueAndRepeatedKey) {
    expect_error("valid-token-for-line-one acme read=* extra\n", 1, "field 4 is not key=value");
    expect_error("valid-token-for-line-one acme read = *\n", 1, "field 3 is not key=value");
    expect_error("valid-token-for-line-one acme read=a read=b\n", 1, "read= given twice");
}

TEST_F(AuthTest, DuplicateTokenNamesBothLines) {
    expect_error(kOk + "# comment\n" + kOk, 3, "duplicate token (first defined on line 1)");
    // Plain and hashed forms of one token are the same token.
    expect_error(kOk + "sha256:" + sha256_hex("valid-token-for-line-one") + " other\n", 2,
                 "duplicate token (first defined on line 1)");
}

TEST_F(AuthTest, LineLimits) {
    std::string just_fits = "valid-token-for-line-one acme read=*" + std::string(4096 - 36, ' ');
    ASSERT_EQ(just_fits.size(), 4096u);
    EXPECT_NE(load(just_fits + "\r\n"), nullptr);
    expect_error(kOk + just_fits + " \n", 2, "line too long (max 4096 bytes)");
    expect_error(kOk + std::string("valid-token-for-line-two\0acme\n", 30), 2, "NUL byte");
}

TEST_F(AuthTest, FileLineLimit) {
    std::string lines;
    for (int i = 0; i < 100000; i++)
        lines += "#\n";
    EXPECT_NE(load(lines), nullptr);
    expect_error(lines + "\n", 100001, "too many lines (max 100000)");
}

TEST_F(AuthTest, ErrorsNeverQuoteTheToken) {
    std::string error;
    ASSERT_EQ(load("my-very-secret-token-value ac/me\n", &error), nullptr);
    EXPECT_EQ(error.find("secret"), std::string::npos) << error;
    ASSERT_EQ(load("my-very-secret-token-value\n", &error), nullptr);
    EXPECT_EQ(error.find("secret"), std::string::npos) << error;
}

TEST_F(AuthTest, MissingFileNamesThePath) {
    char err[256];
    EXPECT_EQ(token_table_load("/nonexistent/tokens.txt", err, sizeof err), nullptr);
    EXPECT_STREQ(err, "/nonexistent/tokens.txt: cannot open: No such file or directory");
}

TEST_F(AuthTest, DirectoryIsAReadError) {
    char err[256];
    EXPECT_EQ(token_table_load("/", err, sizeof err), nullptr);
    EXPECT_NE(std::string(err).find("/: read error"), std::string::npos) << err;
}

TEST_F(AuthTest, ControlCharactersInPathKeepErrorOnOneLine) {
    char err[256];
    EXPECT_EQ(token_table_load("/nonexistent/to\nkens", err, sizeof err), nullptr);
    EXPECT_EQ(std::string(err).find('\n'), std::string::npos) << err;
    EXPECT_EQ(token_table_load("/nonexistent/x", nullptr, 0), nullptr);   // err optional
}

TEST_F(AuthTest, SmallErrorBufferIsTruncatedNotOverrun) {
    std::string path = write_file("short acme\n");
    char err[8];
    memset(err, 'z', sizeof err);
    EXPECT_EQ(token_table_load(path.c_str(), err, sizeof err), nullptr);
    EXPECT_EQ(strlen(err), sizeof err - 1);
}

// ---- threads ------------------------------------------------------------------

TEST_F(AuthTest, ConcurrentLookupsOnSharedTable) {
    std::string content;
    for (int i = 0; i < 200; i++)
        content += "concurrent-token-" + std::to_string(i) + " tenant" + std::to_string(i) +
                   " read=c" + std::to_string(i) + "\n";
    token_table *t = load(content);
    ASSERT_NE(t, nullptr);
    ASSERT_EQ(token_table_count(t), 200u);

    std::vector<int> failures(4, 0);
    std::vector<std::thread> threads;
    for (int k = 0; k < 4; k++) {
        threads.emplace_back([t, k, &failures] {
            for (int round = 0; round < 5; round++) {
                for (int i = 0; i < 200; i++) {
                    auth_grant g;
                    std::string token = "concurrent-token-" + std::to_string(i);
                    bool ok = lookup(t, token, &g) &&
                              std::string(g.tenant) == "tenant" + std::to_string(i) &&
                              auth_grant_can_read(&g, ("c" + std::to_string(i)).c_str()) &&
                              !lookup(t, token + "-" + std::to_string(k)) &&
                              token_table_count(t) == 200;
                    if (!ok)
                        failures[k]++;
                }
            }
        });
    }
    for (std::thread &th : threads)
        th.join();
    for (int k = 0; k < 4; k++)
        EXPECT_EQ(failures[k], 0) << "thread " << k;
}

}  // namespace
