// Unit tests of the pure parts of the C client library:
//   client/cursor_tracker.c       the per-collection cursor rule (gaps filled
//                                 by own results in any order, duplicates
//                                 dropped, snapshots, epochs, the bound);
//   client/ws_client_handshake.c  ws:// / wss:// URL parsing, the upgrade
//                                 request, and validation of the server's 101.
// The tracker is also checked against a reference model (a std::set of every
// seq seen) over all orders of small sets and over random sequences.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

extern "C" {
#include "cursor_tracker.h"
#include "ws_client_handshake.h"
}

namespace {

// ---- cursor tracker ------------------------------------------------------------

class Tracker {
 public:
  Tracker() { cursor_tracker_init(&t_); }
  cursor_observe_result Observe(uint64_t seq) { return cursor_tracker_observe(&t_, seq); }
  uint64_t seq() const { return t_.seq; }
  std::string epoch() const { return t_.epoch; }
  size_t ranges() const { return t_.n_ranges; }
  uint64_t pending() const { return cursor_tracker_pending_seqs(&t_); }
  bool Seen(uint64_t seq) const { return cursor_tracker_seen(&t_, seq); }
  bool Get(uint64_t *seq, std::string *epoch) const {
    char buf[CURSOR_EPOCH_MAX];
    if (!cursor_tracker_get(&t_, seq, buf)) return false;
    *epoch = buf;
    return true;
  }
  cursor_tracker *operator->() { return &t_; }
  cursor_tracker *get() { return &t_; }

 private:
  cursor_tracker t_;
};

// The rule, stated directly: S is the largest n with 1..n all seen.
uint64_t ModelCursor(const std::set<uint64_t> &seen, uint64_t floor) {
  uint64_t s = floor;
  while (seen.count(s + 1)) s++;
  return s;
}

TEST(CursorTracker, StartsEmptyAndUnresumable) {
  Tracker t;
  EXPECT_EQ(t.seq(), 0u);
  EXPECT_EQ(t.epoch(), "");
  EXPECT_EQ(t.ranges(), 0u);
  uint64_t seq;
  std::string epoch;
  EXPECT_FALSE(t.Get(&seq, &epoch)) << "no epoch yet: not a resumable cursor";
}

TEST(CursorTracker, InOrderEventsAdvanceTheCursor) {
  Tracker t;
  ASSERT_TRUE(cursor_tracker_start(t.get(), 0, "e1"));
  for (uint64_t s = 1; s <= 5; s++) EXPECT_EQ(t.Observe(s), CURSOR_NEW) << s;
  EXPECT_EQ(t.seq(), 5u);
  EXPECT_EQ(t.ranges(), 0u);
  uint64_t seq;
  std::string epoch;
  ASSERT_TRUE(t.Get(&seq, &epoch));
  EXPECT_EQ(seq, 5u);
  EXPECT_EQ(epoch, "e1");
}

TEST(CursorTracker, DuplicatesAtOrBelowTheCursorAreDropped) {
  Tracker t;
  cursor_tracker_start(t.get(), 10, "e");
  EXPECT_EQ(t.Observe(10), CURSOR_DUPLICATE);
  EXPECT_EQ(t.Observe(3), CURSOR_DUPLICATE);
  EXPECT_EQ(t.Observe(11), CURSOR_NEW);
  EXPECT_EQ(t.Observe(11), CURSOR_DUPLICATE);
  EXPECT_EQ(t.seq(), 11u);
}

TEST(CursorTracker, DuplicatesAboveTheCursorAreDropped) {
  Tracker t;
  cursor_tracker_start(t.get(), 5, "e");
  EXPECT_EQ(t.Observe(7), CURSOR_NEW);
  EXPECT_EQ(t.Observe(7), CURSOR_DUPLICATE) << "seen above S, waiting in the pending set";
  EXPECT_EQ(t.seq(), 5u);
  EXPECT_TRUE(t.Seen(7));
  EXPECT_FALSE(t.Seen(6));
  EXPECT_FALSE(t.Seen(8));
}

TEST(CursorTracker, SeqZeroIsInvalid) {
  Tracker t;
  EXPECT_EQ(t.Observe(0), CURSOR_INVALID);
  EXPECT_EQ(t.seq(), 0u);
}

// The motivating case: Events seq 7 arrives before the PushResult for our
// own seq 6 (the server never sends us our own events live).
TEST(CursorTracker, OwnResultFillsTheGapLater) {
  Tracker t;
  cursor_tracker_start(t.get(), 5, "e");
  EXPECT_EQ(t.Observe(7), CURSOR_NEW);
  EXPECT_EQ(t.Observe(8), CURSOR_NEW);
  EXPECT_EQ(t.seq(), 5u);
  EXPECT_EQ(t.ranges(), 1u) << "7 and 8 form one range";
  EXPECT_EQ(t.pending(), 2u);
  EXPECT_EQ(t.Observe(6), CURSOR_NEW);   // our ACCEPTED seq 6
  EXPECT_EQ(t.seq(), 8u);
  EXPECT_EQ(t.ranges(), 0u);
}

TEST(CursorTracker, SeveralGapsFillInAnyOrder) {
  Tracker t;
  cursor_tracker_start(t.get(), 0, "e");
  for (uint64_t s : {2, 4, 6, 8}) EXPECT_EQ(t.Observe(s), CURSOR_NEW);
  EXPECT_EQ(t.ranges(), 4u);
  EXPECT_EQ(t.Observe(5), CURSOR_NEW);   // joins 4 and 6
  EXPECT_EQ(t.ranges(), 3u);
  EXPECT_EQ(t.Observe(7), CURSOR_NEW);   // joins 4-6 and 8
  EXPECT_EQ(t.ranges(), 2u);
  EXPECT_EQ(t.seq(), 0u);
  EXPECT_EQ(t.Observe(3), CURSOR_NEW);   // joins 2 and 4-8
  EXPECT_EQ(t.ranges(), 1u);
  EXPECT_EQ(t.Observe(1), CURSOR_NEW);   // reaches S: everything folds in
  EXPECT_EQ(t.seq(), 8u);
  EXPECT_EQ(t.ranges(), 0u);
}

// Every order of seqs 1..7: each is NEW exactly once, and after every step
// the cursor is what the rule says.
TEST(CursorTracker, EveryOrderOfSevenSeqsAgreesWithTheRule) {
  std::vector<uint64_t> order(7);
  std::iota(order.begin(), order.end(), 1);
  size_t orders = 0;
  do {
    Tracker t;
    cursor_tracker_start(t.get(), 0, "e");
    std::set<uint64_t> seen;
    for (uint64_t s : order) {
      ASSERT_EQ(t.Observe(s), CURSOR_NEW);
      seen.insert(s);
      ASSERT_EQ(t.seq(), ModelCursor(seen, 0));
      ASSERT_EQ(t.Observe(s), CURSOR_DUPLICATE);
    }
    ASSERT_EQ(t.seq(), 7u);
    ASSERT_EQ(t.ranges(), 0u);
    orders++;
  } while (std::next_permutation(order.begin(), order.end()));
  EXPECT_EQ(orders, 5040u);
}

// Random streams with repeats (replays, duplicates, own results) against the
// set model, staying within the range bound so nothing is forgotten.
TEST(CursorTracker, RandomStreamsAgreeWithTheModel) {
  std::mt19937_64 rng(12345);
  for (int round = 0; round < 200; round++) {
    Tracker t;
    cursor_tracker_start(t.get(), 0, "e");
    std::set<uint64_t> seen;
    uint64_t span = 20 + rng() % 100;
    for (int step = 0; step < 400; step++) {
      uint64_t s = 1 + rng() % span;
      bool was_seen = seen.count(s) > 0;
      cursor_observe_result r = t.Observe(s);
      ASSERT_EQ(r, was_seen ? CURSOR_DUPLICATE : CURSOR_NEW) << "seq " << s;
      seen.insert(s);
      ASSERT_EQ(t.seq(), ModelCursor(seen, 0));
      ASSERT_EQ(t.pending(), seen.size() - t.seq());
      ASSERT_EQ(t->forgotten, 0u);
    }
    for (uint64_t s = 1; s <= span + 1; s++) ASSERT_EQ(t.Seen(s), seen.count(s) > 0) << s;
    // Ranges stay sorted, disjoint, non-adjacent and above S + 1.
    for (size_t i = 0; i < t.ranges(); i++) {
      ASSERT_LE(t->ranges[i].lo, t->ranges[i].hi);
      ASSERT_GT(t->ranges[i].lo, t.seq() + 1);
      if (i) {
        ASSERT_GT(t->ranges[i].lo, t->ranges[i - 1].hi + 1);
      }
    }
  }
}

TEST(CursorTracker, SnapshotSetsTheCursorAndKeepsOwnResultsAbove) {
  Tracker t;
  cursor_tracker_begin_snapshot(t.get());
  uint64_t seq;
  std::string epoch;
  EXPECT_FALSE(t.Get(&seq, &epoch));
  EXPECT_EQ(t.Observe(12), CURSOR_NEW);   // own ACCEPTED 12 while the pages arrive
  EXPECT_EQ(t.Observe(3), CURSOR_NEW);    // below the coming snapshot cursor
  ASSERT_TRUE(cursor_tracker_snapshot_done(t.get(), 10, "e1"));
  EXPECT_EQ(t.seq(), 10u);
  EXPECT_EQ(t.ranges(), 1u) << "the range of 3 is covered by the snapshot, 12 stays";
  EXPECT_TRUE(t.Seen(12));
  ASSERT_TRUE(t.Get(&seq, &epoch));
  EXPECT_EQ(seq, 10u);
  EXPECT_EQ(epoch, "e1");
  EXPECT_EQ(t.Observe(11), CURSOR_NEW);   // the first live event
  EXPECT_EQ(t.seq(), 12u);
}

TEST(CursorTracker, SnapshotCursorIsTakenExactlyEvenIfLower) {
  // The application's state is now the snapshot's: events after its cursor
  // must be delivered again, even if they had been seen before.
  Tracker t;
  cursor_tracker_start(t.get(), 20, "e");
  cursor_tracker_begin_snapshot(t.get());
  ASSERT_TRUE(cursor_tracker_snapshot_done(t.get(), 15, "e"));
  EXPECT_EQ(t.seq(), 15u);
  EXPECT_EQ(t.Observe(16), CURSOR_NEW);
}

TEST(CursorTracker, SnapshotFoldsAdjacentKnowledge) {
  Tracker t;
  cursor_tracker_start(t.get(), 0, "e");
  t.Observe(11);
  t.Observe(12);
  t.Observe(20);
  ASSERT_TRUE(cursor_tracker_snapshot_done(t.get(), 10, "e"));
  EXPECT_EQ(t.seq(), 12u) << "11-12 touch the snapshot cursor";
  EXPECT_EQ(t.ranges(), 1u);
}

TEST(CursorTracker, SnapshotNeedsAnEpoch) {
  Tracker t;
  cursor_tracker_begin_snapshot(t.get());
  EXPECT_FALSE(cursor_tracker_snapshot_done(t.get(), 10, ""));
  EXPECT_FALSE(cursor_tracker_snapshot_done(t.get(), 10, nullptr));
  EXPECT_EQ(t.seq(), 0u);
  EXPECT_TRUE(t->snapshot_pending);
}

TEST(CursorTracker, ReplayAnswerMakesTheCursorResumableAgain) {
  Tracker t;
  cursor_tracker_start(t.get(), 4, "e");
  cursor_tracker_begin_snapshot(t.get());
  uint64_t seq;
  std::string epoch;
  EXPECT_FALSE(t.Get(&seq, &epoch));
  cursor_tracker_replay_started(t.get());
  ASSERT_TRUE(t.Get(&seq, &epoch));
  EXPECT_EQ(seq, 4u);
}

TEST(CursorTracker, EpochChangeResets) {
  Tracker t;
  cursor_tracker_start(t.get(), 5, "e1");
  t.Observe(7);
  bool changed = false;
  ASSERT_TRUE(cursor_tracker_set_epoch(t.get(), "e1", &changed));
  EXPECT_FALSE(changed);
  EXPECT_EQ(t.seq(), 5u);
  ASSERT_TRUE(cursor_tracker_set_epoch(t.get(), "e2", &changed));
  EXPECT_TRUE(changed);
  EXPECT_EQ(t.seq(), 0u);
  EXPECT_EQ(t.ranges(), 0u);
  EXPECT_EQ(t.epoch(), "e2");
  EXPECT_EQ(t.Observe(7), CURSOR_NEW) << "seq 7 of the new log is another event";
}

TEST(CursorTracker, LearningTheEpochKeepsWhatWasSeen) {
  // Own results recorded before the server named the epoch came from its
  // current log: they stay.
  Tracker t;
  cursor_tracker_begin_snapshot(t.get());
  t.Observe(9);
  bool changed = true;
  ASSERT_TRUE(cursor_tracker_set_epoch(t.get(), "e1", &changed));
  EXPECT_FALSE(changed);
  EXPECT_TRUE(t.Seen(9));
}

TEST(CursorTracker, SnapshotInAnotherEpochDropsOldKnowledge) {
  Tracker t;
  cursor_tracker_start(t.get(), 5, "old");
  t.Observe(9);
  ASSERT_TRUE(cursor_tracker_snapshot_done(t.get(), 3, "new"));
  EXPECT_EQ(t.seq(), 3u);
  EXPECT_EQ(t.ranges(), 0u);
  EXPECT_EQ(t.epoch(), "new");
}

TEST(CursorTracker, StartFromTheApplicationsCursor) {
  Tracker t;
  cursor_tracker_start(t.get(), 5, "e");
  t.Observe(8);
  t.Observe(20);
  ASSERT_TRUE(cursor_tracker_start(t.get(), 8, "e"));
  EXPECT_EQ(t.seq(), 8u);
  EXPECT_EQ(t.ranges(), 1u) << "same epoch: 20 is still known";
  ASSERT_TRUE(cursor_tracker_start(t.get(), 2, "other"));
  EXPECT_EQ(t.seq(), 2u);
  EXPECT_EQ(t.ranges(), 0u) << "another epoch: nothing carries over";
  EXPECT_EQ(t.epoch(), "other");
}

TEST(CursorTracker, EpochsThatDoNotFitAreRefused) {
  Tracker t;
  std::string longest(CURSOR_EPOCH_MAX - 1, 'x');
  std::string too_long(CURSOR_EPOCH_MAX, 'x');
  EXPECT_TRUE(cursor_tracker_start(t.get(), 1, longest.c_str()));
  EXPECT_EQ(t.epoch(), longest);
  EXPECT_FALSE(cursor_tracker_start(t.get(), 2, too_long.c_str()));
  EXPECT_FALSE(cursor_tracker_set_epoch(t.get(), too_long.c_str(), nullptr));
  EXPECT_FALSE(cursor_tracker_snapshot_done(t.get(), 3, too_long.c_str()));
  EXPECT_EQ(t.seq(), 1u);
  EXPECT_EQ(t.epoch(), longest);
}

// The documented bound: 64 gaps. One more forgets the highest knowledge, and
// the cursor stays correct.
TEST(CursorTracker, PendingSetIsBoundedAndForgetsTheHighest) {
  Tracker t;
  cursor_tracker_start(t.get(), 0, "e");
  for (uint64_t i = 1; i <= CURSOR_TRACKER_MAX_RANGES; i++) t.Observe(2 * i);   // 2, 4, ..., 128
  EXPECT_EQ(t.ranges(), size_t(CURSOR_TRACKER_MAX_RANGES));
  EXPECT_EQ(t->forgotten, 0u);

  EXPECT_EQ(t.Observe(200), CURSOR_NEW) << "still new to the application";
  EXPECT_EQ(t->forgotten, 1u);
  EXPECT_FALSE(t.Seen(200)) << "the highest is not recorded when full";

  EXPECT_EQ(t.Observe(5), CURSOR_NEW);   // joins 4 and 6: frees a slot
  EXPECT_EQ(t.ranges(), size_t(CURSOR_TRACKER_MAX_RANGES) - 1);
  EXPECT_EQ(t.Observe(300), CURSOR_NEW);
  EXPECT_TRUE(t.Seen(300));
  EXPECT_EQ(t.Observe(1), CURSOR_NEW);   // the first gap fills: S reaches 2
  EXPECT_EQ(t.seq(), 2u);

  // Full again with a low isolated seq: the highest range (300) goes.
  Tracker u;
  cursor_tracker_start(u.get(), 0, "e");
  for (uint64_t i = 1; i <= CURSOR_TRACKER_MAX_RANGES; i++) u.Observe(10 * i);
  EXPECT_EQ(u.Observe(5), CURSOR_NEW);
  EXPECT_TRUE(u.Seen(5));
  EXPECT_FALSE(u.Seen(10 * CURSOR_TRACKER_MAX_RANGES));
  EXPECT_EQ(u->forgotten, 1u);
  EXPECT_EQ(u.ranges(), size_t(CURSOR_TRACKER_MAX_RANGES));
  EXPECT_EQ(u.seq(), 0u) << "forgetting never moves S";
}

TEST(CursorTracker, ExtremeSeqs) {
  Tracker t;
  cursor_tracker_start(t.get(), UINT64_MAX - 2, "e");
  EXPECT_EQ(t.Observe(UINT64_MAX), CURSOR_NEW);
  EXPECT_EQ(t.Observe(UINT64_MAX - 1), CURSOR_NEW);
  EXPECT_EQ(t.seq(), UINT64_MAX);
  EXPECT_EQ(t.Observe(UINT64_MAX), CURSOR_DUPLICATE);
  EXPECT_EQ(t.ranges(), 0u);
}

// ---- URLs -----------------------------------------------------------------------

struct Url {
  bool ok;
  ws_url url;
  std::string error;
};

Url Parse(const char *text) {
  Url u{};
  const char *error = nullptr;
  u.ok = ws_url_parse(text, "/v1/sync", &u.url, &error);
  if (!u.ok) u.error = error ? error : "(no reason)";
  return u;
}

TEST(ClientUrl, PlainWithPort) {
  Url u = Parse("ws://127.0.0.1:8080/v1/sync");
  ASSERT_TRUE(u.ok) << u.error;
  EXPECT_FALSE(u.url.tls);
  EXPECT_STREQ(u.url.host, "127.0.0.1");
  EXPECT_TRUE(u.url.host_is_ip);
  EXPECT_FALSE(u.url.host_is_ipv6);
  EXPECT_EQ(u.url.port, 8080);
  EXPECT_FALSE(u.url.port_is_default);
  EXPECT_STREQ(u.url.target, "/v1/sync");
}

TEST(ClientUrl, TlsDefaultsAndDefaultPath) {
  Url u = Parse("WSS://Sync.Example.com");
  ASSERT_TRUE(u.ok) << u.error;
  EXPECT_TRUE(u.url.tls);
  EXPECT_STREQ(u.url.host, "Sync.Example.com");
  EXPECT_FALSE(u.url.host_is_ip);
  EXPECT_EQ(u.url.port, 443);
  EXPECT_TRUE(u.url.port_is_default);
  EXPECT_STREQ(u.url.target, "/v1/sync");
  EXPECT_STREQ(Parse("ws://h/").url.target, "/v1/sync");
  EXPECT_STREQ(Parse("ws://h?a=1").url.target, "/v1/sync?a=1");
  EXPECT_STREQ(Parse("ws://h/other/path?a=1").url.target, "/other/path?a=1");
  EXPECT_EQ(Parse("ws://h:").url.port, 80);
  EXPECT_TRUE(Parse("ws://h:80").url.port_is_default);
  EXPECT_FALSE(Parse("wss://h:80").url.port_is_default);
}

TEST(ClientUrl, Ipv6Literal) {
  Url u = Parse("wss://[::1]:9443/v1/sync?x=1");
  ASSERT_TRUE(u.ok) << u.error;
  EXPECT_STREQ(u.url.host, "::1");
  EXPECT_TRUE(u.url.host_is_ip);
  EXPECT_TRUE(u.url.host_is_ipv6);
  EXPECT_EQ(u.url.port, 9443);
  EXPECT_STREQ(u.url.target, "/v1/sync?x=1");
}

TEST(ClientUrl, Rejections) {
  for (const char *bad : {"http://h/", "ws:/h", "ws://", "ws://:80", "ws://user@h/", "ws://h/#frag",
                          "ws://h:0", "ws://h:65536", "ws://h:123456", "ws://h:8x", "ws://h h/",
                          "ws://h/a b", "ws://[::1", "ws://[]:80", "ws://[fe80::1%25eth0]/",
                          "ws://[not-v6]/", "ws://h\r\nX: y/", "ws://ho\x01st/"}) {
    Url u = Parse(bad);
    EXPECT_FALSE(u.ok) << bad << " parsed as host " << u.url.host;
  }
  const char *error = nullptr;
  ws_url url;
  EXPECT_FALSE(ws_url_parse(nullptr, "/", &url, &error));
  EXPECT_NE(error, nullptr);
}

TEST(ClientUrl, OverlongHostAndPath) {
  std::string host(WS_URL_MAX_HOST, 'a');
  EXPECT_FALSE(Parse(("ws://" + host + "/").c_str()).ok);
  std::string path(WS_URL_MAX_TARGET, 'p');
  EXPECT_FALSE(Parse(("ws://h/" + path).c_str()).ok);
}

// ---- upgrade request ----------------------------------------------------------------

TEST(ClientRequest, NamesHostKeyVersionAndSubprotocol) {
  Url u = Parse("ws://127.0.0.1:8080");
  ASSERT_TRUE(u.ok);
  const uint8_t raw[16] = {0x74, 0x68, 0x65, 0x20, 0x73, 0x61, 0x6d, 0x70,
                           0x6c, 0x65, 0x20, 0x6e, 0x6f, 0x6e, 0x63, 0x65};   // "the sample nonce"
  char key[WS_CLIENT_KEY_LEN + 1];
  ws_client_key_encode(raw, key);
  EXPECT_STREQ(key, "dGhlIHNhbXBsZSBub25jZQ==");   // RFC 6455 section 1.3
  char buf[4096];
  size_t n = ws_client_request_write(buf, sizeof buf, &u.url, key, "nebula-sync.v1", "ua/1");
  ASSERT_GT(n, 0u);
  std::string req(buf, n);
  EXPECT_EQ(req.rfind("GET /v1/sync HTTP/1.1\r\n", 0), 0u) << req;
  EXPECT_NE(req.find("\r\nHost: 127.0.0.1:8080\r\n"), std::string::npos) << req;
  EXPECT_NE(req.find("\r\nUpgrade: websocket\r\n"), std::string::npos);
  EXPECT_NE(req.find("\r\nConnection: Upgrade\r\n"), std::string::npos);
  EXPECT_NE(req.find("\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"), std::string::npos);
  EXPECT_NE(req.find("\r\nSec-WebSocket-Version: 13\r\n"), std::string::npos);
  EXPECT_NE(req.find("\r\nSec-WebSocket-Protocol: nebula-sync.v1\r\n"), std::string::npos);
  EXPECT_NE(req.find("\r\nUser-Agent: ua/1\r\n"), std::string::npos);
  EXPECT_EQ(req.substr(req.size() - 4), "\r\n\r\n");
  EXPECT_EQ(req.find("\r\n\r\n"), req.size() - 4) << "one blank line, at the end";
}

TEST(ClientRequest, HostHeaderForms) {
  char key[] = "dGhlIHNhbXBsZSBub25jZQ==";
  char buf[4096];
  Url v6 = Parse("wss://[::1]/v1/sync");
  ASSERT_GT(ws_client_request_write(buf, sizeof buf, &v6.url, key, nullptr, nullptr), 0u);
  EXPECT_NE(std::string(buf).find("\r\nHost: [::1]\r\n"), std::string::npos) << buf;
  EXPECT_EQ(std::string(buf).find("Sec-WebSocket-Protocol"), std::string::npos);
  EXPECT_EQ(std::string(buf).find("User-Agent"), std::string::npos);
  Url named = Parse("ws://example.com:80/x");
  ASSERT_GT(ws_client_request_write(buf, sizeof buf, &named.url, key, nullptr, nullptr), 0u);
  EXPECT_NE(std::string(buf).find("\r\nHost: example.com\r\n"), std::string::npos) << buf;
  EXPECT_EQ(ws_client_request_write(buf, 40, &named.url, key, nullptr, nullptr), 0u) << "too small";
}

// ---- response validation ---------------------------------------------------------------

const char kKey[] = "dGhlIHNhbXBsZSBub25jZQ==";
const char kAccept[] = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";   // RFC 6455 section 1.3

std::string Response(const std::vector<std::string> &headers, const std::string &status = "HTTP/1.1 101 Switching Protocols") {
  std::string r = status + "\r\n";
  for (const auto &h : headers) r += h + "\r\n";
  return r + "\r\n";
}

std::vector<std::string> GoodHeaders() {
  return {"Upgrade: websocket", "Connection: Upgrade", std::string("Sec-WebSocket-Accept: ") + kAccept,
          "Sec-WebSocket-Protocol: nebula-sync.v1"};
}

ws_client_response Check(const std::string &bytes, const char *subprotocol = "nebula-sync.v1") {
  ws_client_response r;
  ws_client_response_check(bytes.data(), bytes.size(), kKey, subprotocol, &r);
  return r;
}

TEST(ClientResponse, AcceptsAValid101AndLeavesFramesAfterIt) {
  std::string head = Response(GoodHeaders());
  ws_client_response r = Check(head + "\x82\x02hi");
  ASSERT_EQ(r.state, WS_CLIENT_RESPONSE_ACCEPTED) << (r.error ? r.error : "");
  EXPECT_EQ(r.http_status, 101);
  EXPECT_EQ(r.response_len, head.size());
  EXPECT_TRUE(r.subprotocol_selected);
}

TEST(ClientResponse, IncompleteUntilTheBlankLine) {
  std::string head = Response(GoodHeaders());
  for (size_t n = 0; n < head.size(); n++)
    ASSERT_EQ(Check(head.substr(0, n)).state, WS_CLIENT_RESPONSE_INCOMPLETE) << n;
  EXPECT_EQ(Check(head).state, WS_CLIENT_RESPONSE_ACCEPTED);
}

TEST(ClientResponse, CaseAndListsAreHandled) {
  ws_client_response r = Check(Response({"UPGRADE: WebSocket", "connection: keep-alive, upgrade",
                                         std::string("sec-websocket-accept:") + kAccept + "  "}));
  EXPECT_EQ(r.state, WS_CLIENT_RESPONSE_ACCEPTED) << (r.error ? r.error : "");
  EXPECT_FALSE(r.subprotocol_selected) << "no Sec-WebSocket-Protocol: allowed, not selected";
  EXPECT_EQ(Check(Response(GoodHeaders(), "HTTP/1.1 101")).state, WS_CLIENT_RESPONSE_ACCEPTED);
}

TEST(ClientResponse, RefusalsCarryTheStatus) {
  ws_client_response r = Check("HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found");
  EXPECT_EQ(r.state, WS_CLIENT_RESPONSE_REJECTED);
  EXPECT_EQ(r.http_status, 404);
  r = Check("HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\n\r\n");
  EXPECT_EQ(r.http_status, 426);
  EXPECT_EQ(r.state, WS_CLIENT_RESPONSE_REJECTED);
}

TEST(ClientResponse, InvalidUpgrades) {
  struct Case {
    const char *name;
    std::string bytes;
  };
  std::vector<std::string> no_upgrade = GoodHeaders();
  no_upgrade.erase(no_upgrade.begin());
  std::vector<std::string> no_connection = GoodHeaders();
  no_connection.erase(no_connection.begin() + 1);
  std::vector<std::string> no_accept = GoodHeaders();
  no_accept.erase(no_accept.begin() + 2);
  std::vector<std::string> two_accepts = GoodHeaders();
  two_accepts.push_back(std::string("Sec-WebSocket-Accept: ") + kAccept);
  std::vector<std::string> wrong_accept = GoodHeaders();
  wrong_accept[2] = "Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=";
  std::vector<std::string> other_protocol = GoodHeaders();
  other_protocol[3] = "Sec-WebSocket-Protocol: chat";
  std::vector<std::string> extension = GoodHeaders();
  extension.push_back("Sec-WebSocket-Extensions: permessage-deflate");
  std::vector<std::string> upgrade_h2 = GoodHeaders();
  upgrade_h2[0] = "Upgrade: h2c";
  std::vector<std::string> folded = GoodHeaders();
  folded.push_back("X-Long: a");
  folded.push_back(" continued");
  std::vector<std::string> no_colon = GoodHeaders();
  no_colon.push_back("Garbage");
  const Case cases[] = {
      {"no Upgrade", Response(no_upgrade)},
      {"Upgrade not websocket", Response(upgrade_h2)},
      {"no Connection", Response(no_connection)},
      {"no accept", Response(no_accept)},
      {"two accepts", Response(two_accepts)},
      {"wrong accept", Response(wrong_accept)},
      {"other subprotocol", Response(other_protocol)},
      {"extension", Response(extension)},
      {"obs-fold", Response(folded)},
      {"no colon", Response(no_colon)},
      {"bad status line", Response(GoodHeaders(), "HTTP/1.1 1O1 Switching")},
      {"not HTTP", Response(GoodHeaders(), "ICY 101 OK")},
      {"bare LF inside", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\nX: y\r\n\r\n"},
  };
  for (const Case &c : cases) {
    ws_client_response r = Check(c.bytes);
    EXPECT_EQ(r.state, WS_CLIENT_RESPONSE_REJECTED) << c.name;
    EXPECT_NE(r.error, nullptr) << c.name;
  }
  // A subprotocol when we offered none is also invalid.
  EXPECT_EQ(Check(Response(GoodHeaders()), nullptr).state, WS_CLIENT_RESPONSE_REJECTED);
}

TEST(ClientResponse, OversizedHeadIsRejected) {
  std::string big = "HTTP/1.1 101 Switching Protocols\r\nX-Pad: " + std::string(WS_CLIENT_MAX_RESPONSE, 'p');
  ws_client_response r = Check(big);
  EXPECT_EQ(r.state, WS_CLIENT_RESPONSE_REJECTED);
  EXPECT_NE(r.error, nullptr);
}

}  // namespace
