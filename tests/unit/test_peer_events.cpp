// Unit tests of how nebula-sync-bench writes its events and finds them again
// (bench/event_format.h, bench/peer_events.h): ids carry run, publisher and
// counter; document ids carry publisher and number; documents are exactly
// --size bytes and carry the publish time; a
// JSON batch scans back to the same events, also after a server re-encodes
// it; other runs' and other writers' events are counted, not taken; and a
// dropped or doubled event in what a server relays shows in the seq check.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

extern "C" {
#include "event_format.h"
#include "peer_events.h"
#include "seq_check.h"
}

namespace {

constexpr uint64_t kRun = 0x0123456789abcdefULL;

TEST(EventId, RoundTrips) {
  for (uint32_t pub : {0u, 1u, 4095u, 4096u, EVENT_PUB_MAX}) {
    for (uint64_t counter : {uint64_t{0}, uint64_t{63}, uint64_t{1} << 40}) {
      char id[EVENT_ID_LEN + 1];
      event_id_write(id, kRun, pub, counter);
      EXPECT_EQ(strlen(id), size_t{EVENT_ID_LEN});
      uint32_t p = 99;
      uint64_t c = 99;
      ASSERT_EQ(event_id_parse(id, EVENT_ID_LEN, kRun, &p, &c), EVENT_ID_THIS_RUN) << id;
      EXPECT_EQ(p, pub);
      EXPECT_EQ(c, counter);
    }
  }
}

TEST(EventId, IsAVersion4Uuid) {
  char id[EVENT_ID_LEN + 1];
  event_id_write(id, kRun, 5, 7);
  EXPECT_STREQ(id, "01234567-89ab-4005-8000-000000000007");
}

TEST(EventId, TellsOtherRunsAndOtherWriters) {
  char id[EVENT_ID_LEN + 1];
  event_id_write(id, kRun, 1, 2);
  uint32_t p;
  uint64_t c;
  EXPECT_EQ(event_id_parse(id, EVENT_ID_LEN, kRun ^ (uint64_t{1} << 40), &p, &c), EVENT_ID_OTHER_RUN);
  EXPECT_EQ(event_id_parse(id, EVENT_ID_LEN - 1, kRun, &p, &c), EVENT_ID_FOREIGN);
  const char *uuid = "6f1c2a9e-3b7d-4e21-cf00-1a2b3c4d5e6f";   // variant 110x: not ours
  EXPECT_EQ(event_id_parse(uuid, strlen(uuid), kRun, &p, &c), EVENT_ID_FOREIGN);
  const char *upper = "01234567-89AB-4005-8000-000000000007";
  EXPECT_EQ(event_id_parse(upper, strlen(upper), kRun, &p, &c), EVENT_ID_FOREIGN);
}

TEST(EventDoc, IsExactlySizeBytesAndCarriesItsTime) {
  for (size_t size : {size_t{EVENT_DOC_MIN_SIZE}, size_t{200}, size_t{4096}}) {
    std::vector<uint8_t> doc(size);
    event_doc_fill(doc.data(), size, 9999);
    std::string text(doc.begin(), doc.end());
    EXPECT_EQ(text.rfind("{\"ts\":\"0000000000000000000\",\"pub\":9999,\"pad\":\"x", 0), 0u) << text;
    EXPECT_EQ(text.substr(size - 3), "x\"}");
    event_doc_set_ts(doc.data(), 1234567890123456789ULL);
    uint64_t ts = 0;
    ASSERT_TRUE(event_doc_ts(doc.data(), size, &ts));
    EXPECT_EQ(ts, 1234567890123456789ULL);
  }
  uint64_t ts;
  const char other[] = "{\"name\":\"alice\",\"ts\":\"0000000000000000001\"}";
  EXPECT_FALSE(event_doc_ts(reinterpret_cast<const uint8_t *>(other), sizeof other - 1, &ts));
}

TEST(EventDocId, RoundTrips) {
  for (long pub : {0L, 7L, 123456L}) {
    for (uint64_t n : {uint64_t{0}, uint64_t{63}, UINT64_MAX}) {
      char id[EVENT_DOC_ID_MAX];
      event_doc_id_write(id, pub, n);
      long p = -1;
      uint64_t d = 99;
      ASSERT_TRUE(event_doc_id_parse(id, strlen(id), &p, &d)) << id;
      EXPECT_EQ(p, pub);
      EXPECT_EQ(d, n);
    }
  }
  char id[EVENT_DOC_ID_MAX];
  event_doc_id_write(id, 3, 42);
  EXPECT_STREQ(id, "bench-p3-d42");
}

TEST(EventDocId, RefusesOtherIds) {
  long p;
  uint64_t d;
  for (const char *other : {"", "bench-p", "bench-p1", "bench-p1-d", "bench-p1-d2x", "bench-p01-d2",
                            "bench-p1-d02", "bench-p-1-d2", "todo-1", "bench-p1-d99999999999999999999"})
    EXPECT_FALSE(event_doc_id_parse(other, strlen(other), &p, &d)) << other;
}

TEST(PeerJson, EscapesStrings) {
  char out[64];
  EXPECT_EQ(peer_json_string(out, sizeof out, "a\"b\\c\n"), 15u);
  EXPECT_STREQ(out, "\"a\\\"b\\\\c\\u000a\"");
  EXPECT_EQ(peer_json_string(nullptr, 0, "abc"), 5u);   // the length it needs
}

struct Scanned {
  std::vector<peer_event> events;
  uint64_t others = 0;
};

void Collect(void *arg, const peer_event *e) { static_cast<Scanned *>(arg)->events.push_back(*e); }

Scanned Scan(const std::string &json, uint64_t run = kRun) {
  Scanned s;
  s.others = peer_events_scan(reinterpret_cast<const uint8_t *>(json.data()), json.size(), run,
                              Collect, &s);
  return s;
}

class PeerBatch : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(peer_batch_init(&b_, 3, 200, kRun, 7, "notes \"x\"", "bench-p7")); }
  void TearDown() override { peer_batch_free(&b_); }
  std::string Write(uint64_t first, uint64_t ts_ns = 1000, uint64_t wall_ms = 1700000000000ULL) {
    std::string out(peer_batch_max_len(&b_), '\0');
    out.resize(peer_batch_write(&b_, &out[0], first, ts_ns, wall_ms));
    return out;
  }
  peer_batch b_;
};

TEST_F(PeerBatch, WritesTheSeedsSyncEvents) {
  std::string json = Write(0);
  EXPECT_EQ(json.front(), '[');
  EXPECT_EQ(json.back(), ']');
  EXPECT_EQ(json.rfind("[{\"id\":\"01234567-89ab-4007-8000-000000000000\",\"collection\":"
                       "\"notes \\\"x\\\"\",\"type\":\"insert\",\"documentId\":\"bench-p7-d0\","
                       "\"data\":{\"ts\":\"0000000000000001000\",\"pub\":7,\"pad\":\"xx", 0), 0u)
      << json;
  EXPECT_NE(json.find(",\"timestamp\":1700000000000,\"clientId\":\"bench-p7\"}"), std::string::npos);
  EXPECT_LE(json.size(), peer_batch_max_len(&b_));
  EXPECT_NE(Write(64).find("\"type\":\"update\",\"documentId\":\"bench-p7-d0\""), std::string::npos);
}

TEST_F(PeerBatch, ScansBackToTheSameEvents) {
  Scanned s = Scan(Write(5, 123456789));
  ASSERT_EQ(s.events.size(), 3u);
  EXPECT_EQ(s.others, 0u);
  for (size_t i = 0; i < 3; i++) {
    EXPECT_EQ(s.events[i].pub, 7u);
    EXPECT_EQ(s.events[i].counter, 5 + i);
    EXPECT_TRUE(s.events[i].has_ts);
    EXPECT_EQ(s.events[i].ts_ns, 123456789u);
  }
}

TEST_F(PeerBatch, ScansWhatSocketIoRelays) {
  // The seed server stores the parsed events and emits them again: the same
  // JSON (JSON.stringify keeps key order), inside a Socket.IO event packet.
  std::string packet = "42[\"server:sync\"," + Write(0) + "]";
  EXPECT_EQ(Scan(packet).events.size(), 3u);
}

TEST_F(PeerBatch, CountsOtherRunsAndOtherWriters) {
  std::string mixed = "[" + Write(0).substr(1, std::string::npos);
  mixed.pop_back();
  mixed += ",{\"id\":\"someone-else\",\"data\":{}}]";
  Scanned s = Scan(mixed);
  EXPECT_EQ(s.events.size(), 3u);
  EXPECT_EQ(s.others, 1u);
  Scanned other_run = Scan(Write(0), kRun ^ (uint64_t{1} << 50));
  EXPECT_EQ(other_run.events.size(), 0u);
  EXPECT_EQ(other_run.others, 3u);
}

TEST_F(PeerBatch, AnEventWithoutOurDocumentIsStillCheckedButNotTimed) {
  Scanned s = Scan("[{\"id\":\"01234567-89ab-4007-8000-000000000000\",\"data\":{\"a\":1}}]");
  ASSERT_EQ(s.events.size(), 1u);
  EXPECT_FALSE(s.events[0].has_ts);
}

// A relay that drops or doubles one event: the subscriber's seq check (as the
// tool runs it: per publisher, counter + 1) must notice.
struct Checked {
  seq_table table;
};

void Check(void *arg, const peer_event *e) {
  seq_table_observe(&static_cast<Checked *>(arg)->table, e->pub, e->counter + 1);
}

uint64_t ScanChecked(const std::vector<std::string> &messages, uint64_t *lost, uint64_t *dup) {
  Checked c;
  EXPECT_TRUE(seq_table_init(&c.table, 8));
  for (const std::string &m : messages)
    peer_events_scan(reinterpret_cast<const uint8_t *>(m.data()), m.size(), kRun, Check, &c);
  *lost = seq_table_lost(&c.table);
  *dup = seq_table_dup(&c.table);
  uint64_t position = c.table.position;
  seq_table_free(&c.table);
  return position;
}

TEST_F(PeerBatch, ADroppedOrDoubledEventIsCaught) {
  std::string b0 = Write(0), b1 = Write(3), b2 = Write(6);
  uint64_t lost, dup;
  EXPECT_EQ(ScanChecked({b0, b1, b2}, &lost, &dup), 9u);
  EXPECT_EQ(lost, 0u);
  EXPECT_EQ(dup, 0u);

  // drop the second event of b1 (counter 4)
  size_t second = b1.find("{\"id\":", 1), third = b1.find("{\"id\":", second + 1);
  std::string dropped = b1.substr(0, second) + b1.substr(third);
  ScanChecked({b0, dropped, b2}, &lost, &dup);
  EXPECT_EQ(lost, 1u);
  EXPECT_EQ(dup, 0u);

  // b1 delivered twice
  ScanChecked({b0, b1, b1, b2}, &lost, &dup);
  EXPECT_EQ(lost, 0u);
  EXPECT_EQ(dup, 3u);
}

}  // namespace
