// Unit tests of catchup's snapshot check (bench/doc_tally.h): every
// expected document once makes it complete; a missing, repeated or
// unexpected one does not, and each is counted.
#include <gtest/gtest.h>

#include <cstdint>

extern "C" {
#include "doc_tally.h"
}

namespace {

TEST(DocTally, EveryExpectedDocumentOnceIsComplete) {
  doc_tally t;
  ASSERT_TRUE(doc_tally_init(&t, 1000, 17));
  for (uint64_t n = 1016; n >= 1000; n--) doc_tally_observe(&t, n);   // any order
  EXPECT_EQ(t.seen, 17u);
  EXPECT_TRUE(doc_tally_complete(&t));
  doc_tally_free(&t);
}

TEST(DocTally, CountsMissingRepeatedAndUnexpected) {
  doc_tally t;
  ASSERT_TRUE(doc_tally_init(&t, 0, 8));
  for (uint64_t n = 0; n < 7; n++) doc_tally_observe(&t, n);   // 7 missing
  EXPECT_FALSE(doc_tally_complete(&t));
  doc_tally_observe(&t, 7);
  EXPECT_TRUE(doc_tally_complete(&t));
  doc_tally_observe(&t, 3);
  doc_tally_observe(&t, 8);
  doc_tally_foreign(&t);
  EXPECT_EQ(t.seen, 8u);
  EXPECT_EQ(t.repeated, 1u);
  EXPECT_EQ(t.unexpected, 2u);
  EXPECT_FALSE(doc_tally_complete(&t));
  doc_tally_free(&t);
}

TEST(DocTally, AnEmptyTallyIsCompleteUntilSomethingComes) {
  doc_tally t;
  ASSERT_TRUE(doc_tally_init(&t, 5, 0));
  EXPECT_TRUE(doc_tally_complete(&t));
  doc_tally_observe(&t, 5);
  EXPECT_FALSE(doc_tally_complete(&t));
  doc_tally_free(&t);
}

}  // namespace
