// Unit tests of the token file of nebula-sync-bench tenants
// (bench/tenant_tokens.h): the lines it writes have the broker's format and
// read back; reading takes the first plain token of each tenant, in order,
// skips comments, blank lines and hashed tokens, and names a bad line.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

extern "C" {
#include "tenant_tokens.h"
}

namespace {

TEST(TenantTokens, WrittenLinesReadBack) {
  std::string file = "# written by a test\n";
  for (long i = 0; i < 3; i++) {
    uint8_t random[TENANT_TOKEN_RANDOM_BYTES];
    for (int k = 0; k < TENANT_TOKEN_RANDOM_BYTES; k++) random[k] = static_cast<uint8_t>(i * 16 + k);
    char line[128];
    ASSERT_GT(tenant_tokens_line(line, sizeof line, i, random), 0u);
    file += line;
  }
  EXPECT_NE(file.find("nsb-000102030405060708090a0b0c0d0e0f bench-t0 read=* write=*\n"), std::string::npos)
      << file;
  std::vector<tenant_token> out(8);
  tenant_tokens_read r;
  ASSERT_TRUE(tenant_tokens_parse(file.c_str(), out.data(), 8, &r)) << r.why;
  ASSERT_EQ(r.tenants, 3);
  EXPECT_STREQ(out[2].tenant, "bench-t2");
  EXPECT_STREQ(out[1].token, "nsb-101112131415161718191a1b1c1d1e1f");
}

TEST(TenantTokens, TakesTheFirstPlainTokenOfEachTenant) {
  const char *file =
      "\n"
      "  # a comment\n"
      "sha256:17bb04d32dd36ee568eac06a88703593db59bd85d71deb53fa9999904885a4ea acme read=*\n"
      "first-token-of-acme-0001\tacme read=* write=todos\n"
      "second-token-of-acme-001 acme read=*\n"
      "globex-token-00000000001 globex\r\n"
      "initech-token-0000000001 initech read=*";
  std::vector<tenant_token> out(2);
  tenant_tokens_read r;
  ASSERT_TRUE(tenant_tokens_parse(file, out.data(), 2, &r)) << r.why;
  EXPECT_EQ(r.tenants, 2);   // at most max
  EXPECT_EQ(r.hashed, 1);
  EXPECT_STREQ(out[0].token, "first-token-of-acme-0001");
  EXPECT_STREQ(out[0].tenant, "acme");
  EXPECT_STREQ(out[1].tenant, "globex");
}

TEST(TenantTokens, NamesABadLine) {
  std::vector<tenant_token> out(4);
  tenant_tokens_read r;
  EXPECT_FALSE(tenant_tokens_parse("good-token-000000001 acme\nlonely-token-0000001\n", out.data(), 4, &r));
  EXPECT_EQ(r.line, 2);
  EXPECT_STRNE(r.why, "");
  EXPECT_FALSE(tenant_tokens_parse("a-token-00000000001 read=*\n", out.data(), 4, &r));
  EXPECT_EQ(r.line, 1);
  std::string long_tenant = "tok-0000000000000001 " + std::string(TENANT_NAME_MAX + 1, 't') + "\n";
  EXPECT_FALSE(tenant_tokens_parse(long_tenant.c_str(), out.data(), 4, &r));
}

}  // namespace
