// Unit tests of the incremental UTF-8 validator (broker/utf8.c): the RFC 3629
// well-formedness rules, fail-fast at the first offending byte, state kept
// across arbitrary split points, and the ASCII fast path at every alignment.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

extern "C" {
#include "utf8.h"
}

namespace {

const uint8_t *bytes(const std::string &s)
{
    return reinterpret_cast<const uint8_t *>(s.data());
}

bool valid(const std::string &s)
{
    return utf8_is_valid(bytes(s), s.size());
}

// A straightforward decoder written from RFC 3629 (decode, then reject
// overlongs, surrogates and > U+10FFFF), to compare the state machine with.
bool reference_valid(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t b = s[i];
        uint32_t cp;
        size_t len;
        if (b < 0x80) {
            i++;
            continue;
        } else if ((b & 0xE0) == 0xC0) {
            len = 2;
            cp = b & 0x1F;
        } else if ((b & 0xF0) == 0xE0) {
            len = 3;
            cp = b & 0x0F;
        } else if ((b & 0xF8) == 0xF0) {
            len = 4;
            cp = b & 0x07;
        } else {
            return false;
        }
        if (n - i < len)
            return false;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        static const uint32_t min_for_len[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min_for_len[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += len;
    }
    return true;
}

// Feeds s in two pieces split at `at`; the result must not depend on it.
bool valid_split(const std::string &s, size_t at)
{
    utf8_validator v;
    utf8_validator_init(&v);
    return utf8_validator_feed(&v, bytes(s), at) &&
           utf8_validator_feed(&v, bytes(s) + at, s.size() - at) && utf8_validator_complete(&v);
}

bool valid_bytewise(const std::string &s)
{
    utf8_validator v;
    utf8_validator_init(&v);
    for (size_t i = 0; i < s.size(); i++)
        if (!utf8_validator_feed(&v, bytes(s) + i, 1))
            return false;
    return utf8_validator_complete(&v);
}

const char kKosme[] = "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5";   // "κόσμε"

const std::vector<std::string> kValid = {
    "",
    "Hello-\xc2\xb5@\xc3\x9f\xc3\xb6\xc3\xa4\xc3\xbc\xc3\xa0\xc3\xa1-UTF-8!!",
    kKosme,
    std::string("\x00", 1),   // U+0000 is valid UTF-8
    "\x7f",                   // U+007F, last 1-byte
    "\xc2\x80",               // U+0080, first 2-byte
    "\xdf\xbf",               // U+07FF, last 2-byte
    "\xe0\xa0\x80",           // U+0800, first 3-byte
    "\xed\x9f\xbf",           // U+D7FF, just below the surrogates
    "\xee\x80\x80",           // U+E000, just above the surrogates
    "\xef\xbf\xbd",           // U+FFFD
    "\xef\xbf\xbf",           // U+FFFF, last 3-byte
    "\xf0\x90\x80\x80",       // U+10000, first 4-byte
    "\xf4\x8f\xbf\xbf",       // U+10FFFF, last code point
    "\xf0\x9f\x98\x80 smile", // U+1F600
};

// Each invalid sample with the index of the byte at which a fail-fast
// validator must give up (the first byte that no valid text could have).
struct Invalid {
    std::string s;
    size_t offending;
};

const std::vector<Invalid> kInvalid = {
    {"\x80", 0},                      // lone continuation byte
    {"\xbf", 0},
    {"a\x80", 1},
    {"\xc0\xaf", 0},                  // overlong '/'
    {"\xc1\xbf", 0},                  // overlong U+007F
    {"\xe0\x80\xaf", 1},              // overlong '/' in 3 bytes
    {"\xe0\x9f\xbf", 1},              // overlong U+07FF
    {"\xf0\x80\x80\xaf", 1},          // overlong '/' in 4 bytes
    {"\xf0\x8f\xbf\xbf", 1},          // overlong U+FFFF
    {"\xed\xa0\x80", 1},              // U+D800, first high surrogate
    {"\xed\xad\xbf", 1},              // U+DB7F
    {"\xed\xbf\xbf", 1},              // U+DFFF, last low surrogate
    {"\xed\xa0\x80\xed\xb0\x80", 1},  // surrogate pair encoded as CESU-8
    {"\xf4\x90\x80\x80", 1},          // U+110000
    {"\xf5\x80\x80\x80", 0},          // lead bytes past F4
    {"\xf7\xbf\xbf\xbf", 0},
    {"\xf8\x88\x80\x80\x80", 0},      // 5-byte form
    {"\xfc\x84\x80\x80\x80\x80", 0},  // 6-byte form
    {"\xfe", 0},
    {"\xff", 0},
    {"\xc2\x41", 1},                  // lead byte followed by ASCII
    {"\xe1\x80\x41", 2},              // 3-byte form cut by ASCII
    {"\xf1\x80\x80\xc0", 3},          // 4-byte form cut by a lead byte
    {"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64", 12},
};

TEST(Utf8, AcceptsWellFormedText)
{
    for (const auto &s : kValid) {
        EXPECT_TRUE(valid(s)) << testing::PrintToString(s);
        EXPECT_TRUE(valid_bytewise(s)) << testing::PrintToString(s);
    }
}

TEST(Utf8, RejectsOverlongSurrogatesAndOutOfRange)
{
    for (const auto &c : kInvalid) {
        EXPECT_FALSE(valid(c.s)) << testing::PrintToString(c.s);
        EXPECT_FALSE(valid_bytewise(c.s)) << testing::PrintToString(c.s);
    }
}

TEST(Utf8, FailsAtTheFirstOffendingByte)
{
    for (const auto &c : kInvalid) {
        utf8_validator v;
        utf8_validator_init(&v);
        EXPECT_TRUE(utf8_validator_feed(&v, bytes(c.s), c.offending)) << testing::PrintToString(c.s);
        utf8_validator_init(&v);
        EXPECT_FALSE(utf8_validator_feed(&v, bytes(c.s), c.offending + 1))
            << testing::PrintToString(c.s);
    }
}

TEST(Utf8, FailsFastOnOneByteFeeds)
{
    // The Autobahn 6.4.x pattern: the offending byte arrives on its own.
    utf8_validator v;
    utf8_validator_init(&v);
    EXPECT_TRUE(utf8_validator_feed(&v, bytes(kKosme), 11));
    EXPECT_TRUE(utf8_validator_feed(&v, bytes("\xf4"), 1));
    EXPECT_FALSE(utf8_validator_feed(&v, bytes("\x90"), 1));
}

TEST(Utf8, ReinitialisingAfterAFailureStartsAfresh)
{
    utf8_validator v;
    utf8_validator_init(&v);
    EXPECT_TRUE(utf8_validator_feed(&v, bytes("\xe2\x82"), 2));
    EXPECT_FALSE(utf8_validator_feed(&v, bytes("\xc0"), 1));
    utf8_validator_init(&v);
    EXPECT_TRUE(utf8_validator_complete(&v));
    EXPECT_TRUE(utf8_validator_feed(&v, bytes("a"), 1));
    EXPECT_TRUE(utf8_validator_complete(&v));
}

TEST(Utf8, IncompleteSequenceIsAPrefixButNotComplete)
{
    for (const std::string s : {"\xc2", "\xe0\xa0", "\xe1", "\xf0\x90\x80", "\xf4\x8f", "ab\xf3"}) {
        utf8_validator v;
        utf8_validator_init(&v);
        EXPECT_TRUE(utf8_validator_feed(&v, bytes(s), s.size())) << testing::PrintToString(s);
        EXPECT_FALSE(utf8_validator_complete(&v)) << testing::PrintToString(s);
        EXPECT_FALSE(valid(s)) << testing::PrintToString(s);
    }
}

TEST(Utf8, EmptyFeedChangesNothing)
{
    utf8_validator v;
    utf8_validator_init(&v);
    EXPECT_TRUE(utf8_validator_complete(&v));
    EXPECT_TRUE(utf8_validator_feed(&v, bytes("\xe2"), 1));
    EXPECT_TRUE(utf8_validator_feed(&v, nullptr, 0));
    EXPECT_FALSE(utf8_validator_complete(&v));
    EXPECT_TRUE(utf8_validator_feed(&v, bytes("\x82\xac"), 2));   // U+20AC
    EXPECT_TRUE(utf8_validator_complete(&v));
}

TEST(Utf8, SplitAtEveryPointGivesTheSameAnswer)
{
    for (const auto &s : kValid)
        for (size_t at = 0; at <= s.size(); at++)
            EXPECT_TRUE(valid_split(s, at)) << testing::PrintToString(s) << " split at " << at;
    for (const auto &c : kInvalid)
        for (size_t at = 0; at <= c.s.size(); at++)
            EXPECT_FALSE(valid_split(c.s, at)) << testing::PrintToString(c.s) << " split at " << at;
}

// The fast path reads 8/16 bytes at a time: a non-ASCII byte must be seen
// at every position relative to those words, and at both ends of a buffer.
TEST(Utf8, AsciiFastPathSeesNonAsciiAtEveryPosition)
{
    for (size_t len = 1; len <= 48; len++) {
        for (size_t pos = 0; pos < len; pos++) {
            std::string s(len, 'x');
            s[pos] = '\x80';
            EXPECT_FALSE(valid(s)) << "len " << len << " pos " << pos;
            s[pos] = '\xc3';   // lead byte followed by ASCII, or cut off at the end
            EXPECT_FALSE(valid(s)) << "len " << len << " pos " << pos;
            s[pos] = 'x';
            EXPECT_TRUE(valid(s)) << "len " << len << " pos " << pos;
        }
    }
}

TEST(Utf8, MultiByteCharactersStraddlingWordBoundaries)
{
    const std::string chars[] = {"\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80"};
    for (const auto &ch : chars) {
        for (size_t prefix = 0; prefix <= 40; prefix++) {
            std::string s = std::string(prefix, 'a') + ch + std::string(20, 'b');
            EXPECT_TRUE(valid(s)) << "prefix " << prefix;
            std::string cut = std::string(prefix, 'a') + ch.substr(0, ch.size() - 1);
            EXPECT_FALSE(valid(cut)) << "prefix " << prefix;
            std::string broken = cut + std::string(20, 'b');
            EXPECT_FALSE(valid(broken)) << "prefix " << prefix;
        }
    }
}

TEST(Utf8, LongAsciiAndMixedText)
{
    std::string ascii(4096, 'z');
    EXPECT_TRUE(valid(ascii));
    std::string mixed;
    for (int i = 0; i < 200; i++)
        mixed += std::string("ab") + kKosme + "0123456789";
    EXPECT_TRUE(valid(mixed));
    mixed[mixed.size() - 1] = '\xff';
    EXPECT_FALSE(valid(mixed));
}

TEST(Utf8, EveryOneAndTwoByteInputMatchesTheReference)
{
    for (unsigned a = 0; a < 256; a++) {
        uint8_t one[1] = {uint8_t(a)};
        ASSERT_EQ(utf8_is_valid(one, 1), reference_valid(one, 1)) << a;
        for (unsigned b = 0; b < 256; b++) {
            uint8_t two[2] = {uint8_t(a), uint8_t(b)};
            ASSERT_EQ(utf8_is_valid(two, 2), reference_valid(two, 2)) << a << " " << b;
        }
    }
}

TEST(Utf8, EveryThreeByteFormMatchesTheReference)
{
    for (unsigned a = 0xE0; a <= 0xEF; a++)
        for (unsigned b = 0; b < 256; b++)
            for (unsigned c = 0; c < 256; c++) {
                uint8_t s[3] = {uint8_t(a), uint8_t(b), uint8_t(c)};
                ASSERT_EQ(utf8_is_valid(s, 3), reference_valid(s, 3)) << a << " " << b << " " << c;
            }
}

TEST(Utf8, FourByteFormsMatchTheReference)
{
    const unsigned lasts[] = {0x00, 0x7f, 0x80, 0x9f, 0xa0, 0xbf, 0xc0, 0xff};
    for (unsigned a = 0xF0; a <= 0xFF; a++)
        for (unsigned b = 0; b < 256; b++)
            for (unsigned c = 0x70; c < 0xD0; c++)
                for (unsigned d : lasts) {
                    uint8_t s[4] = {uint8_t(a), uint8_t(b), uint8_t(c), uint8_t(d)};
                    ASSERT_EQ(utf8_is_valid(s, 4), reference_valid(s, 4))
                        << a << " " << b << " " << c << " " << d;
                }
}

TEST(Utf8, EveryCodePointEncodesToValidUtf8)
{
    for (uint32_t cp = 0; cp <= 0x10FFFF; cp++) {
        uint8_t s[4];
        size_t n;
        if (cp < 0x80) {
            s[0] = uint8_t(cp);
            n = 1;
        } else if (cp < 0x800) {
            s[0] = uint8_t(0xC0 | cp >> 6);
            s[1] = uint8_t(0x80 | (cp & 0x3F));
            n = 2;
        } else if (cp < 0x10000) {
            s[0] = uint8_t(0xE0 | cp >> 12);
            s[1] = uint8_t(0x80 | (cp >> 6 & 0x3F));
            s[2] = uint8_t(0x80 | (cp & 0x3F));
            n = 3;
        } else {
            s[0] = uint8_t(0xF0 | cp >> 18);
            s[1] = uint8_t(0x80 | (cp >> 12 & 0x3F));
            s[2] = uint8_t(0x80 | (cp >> 6 & 0x3F));
            s[3] = uint8_t(0x80 | (cp & 0x3F));
            n = 4;
        }
        bool surrogate = cp >= 0xD800 && cp <= 0xDFFF;
        ASSERT_EQ(utf8_is_valid(s, n), !surrogate) << std::hex << cp;
    }
}

}  // namespace
