// Unit tests of nebula-sync-bench's delivery check (bench/seq_check.h): a
// stream sees every number once, in order, and a drop, a double or a
// reordering is counted, never missed.
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

extern "C" {
#include "seq_check.h"
}

namespace {

struct seq_stream Feed(uint64_t start, const std::vector<uint64_t> &seqs) {
  struct seq_stream s;
  seq_stream_start(&s, start);
  for (uint64_t v : seqs) seq_stream_observe(&s, v);
  return s;
}

TEST(SeqStream, InOrderIsClean) {
  struct seq_stream s = Feed(0, {1, 2, 3, 4, 5});
  EXPECT_EQ(s.last, 5u);
  EXPECT_EQ(s.lost, 0u);
  EXPECT_EQ(s.dup, 0u);
  EXPECT_EQ(seq_stream_missing(&s, 5), 0u);
}

TEST(SeqStream, StartsAfterItsPosition) {
  struct seq_stream s;
  seq_stream_start(&s, 41);
  EXPECT_EQ(seq_stream_observe(&s, 42), SEQ_IN_ORDER);
  EXPECT_EQ(seq_stream_observe(&s, 41), SEQ_DUPLICATE);   // the snapshot had it already
}

TEST(SeqStream, ADroppedEventIsLost) {
  struct seq_stream s = Feed(0, {1, 2, 4, 5});
  EXPECT_EQ(s.lost, 1u);
  EXPECT_EQ(s.dup, 0u);
  EXPECT_EQ(s.last, 5u);
}

TEST(SeqStream, AGapCountsEveryNumberSkipped) {
  struct seq_stream s;
  seq_stream_start(&s, 10);
  EXPECT_EQ(seq_stream_observe(&s, 15), SEQ_GAP);
  EXPECT_EQ(s.lost, 4u);
}

TEST(SeqStream, ADoubledEventIsDuplicated) {
  struct seq_stream s = Feed(0, {1, 2, 2, 3});
  EXPECT_EQ(s.dup, 1u);
  EXPECT_EQ(s.lost, 0u);
  EXPECT_EQ(s.last, 3u);
}

TEST(SeqStream, AReorderedPairIsOneLossAndOneDuplicate) {
  // 3 before 2: 2 was skipped when 3 came, and 2 is then behind the stream.
  struct seq_stream s = Feed(0, {1, 3, 2, 4});
  EXPECT_EQ(s.lost, 1u);
  EXPECT_EQ(s.dup, 1u);
}

TEST(SeqStream, TheMissingTailIsCounted) {
  struct seq_stream s = Feed(0, {1, 2, 3});
  EXPECT_EQ(seq_stream_missing(&s, 7), 4u);
  EXPECT_EQ(seq_stream_missing(&s, 3), 0u);
  EXPECT_EQ(seq_stream_missing(&s, 2), 0u);   // never negative
}

TEST(SeqTable, EachSourceIsItsOwnStream) {
  struct seq_table t;
  ASSERT_TRUE(seq_table_init(&t, 3));
  // interleaved sources, each in order: clean
  for (uint64_t n = 1; n <= 4; n++)
    for (size_t src = 0; src < 3; src++) EXPECT_EQ(seq_table_observe(&t, src, n), SEQ_IN_ORDER);
  EXPECT_EQ(t.position, 12u);
  EXPECT_EQ(seq_table_lost(&t), 0u);
  EXPECT_EQ(seq_table_dup(&t), 0u);
  const uint64_t issued[3] = {4, 4, 4};
  EXPECT_EQ(seq_table_missing(&t, issued), 0u);
  seq_table_free(&t);
}

TEST(SeqTable, CatchesADropADoubleAndATailPerSource) {
  struct seq_table t;
  ASSERT_TRUE(seq_table_init(&t, 2));
  for (uint64_t n : {1, 2, 4}) seq_table_observe(&t, 0, n);     // source 0 lost 3
  for (uint64_t n : {1, 1, 2}) seq_table_observe(&t, 1, n);     // source 1 doubled 1
  EXPECT_EQ(seq_table_lost(&t), 1u);
  EXPECT_EQ(seq_table_dup(&t), 1u);
  EXPECT_EQ(t.position, 4u + 2u);
  const uint64_t issued[2] = {5, 2};                            // source 0 also sent 5
  EXPECT_EQ(seq_table_missing(&t, issued), 1u);
  seq_table_free(&t);
  seq_table_free(&t);   // harmless twice
}

}  // namespace
