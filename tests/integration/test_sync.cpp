// test_sync: the nebula-sync.v1 session protocol (docs/PROTOCOL.md, "Session"
// onward) end to end: the real nebula-syncd, real sockets, many clients.
//
// Each test starts its own daemon (ephemeral ports, memory storage) and stops
// it with SIGTERM expecting exit status 0. Clients are the blocking
// SyncClient of tests/support/sync_test_client.h; every subscriber feeds a
// CollectionView, which checks as messages arrive that seqs are strictly
// increasing, never delivered twice, and that replay/snapshot/live come in
// the promised order, and keeps a cursor (the rule of PROTOCOL.md) and a
// replica of the documents. Waits are bounded by generous safety timeouts;
// nothing asserts on speed.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "daemon_process.h"
#include "sync_test_client.h"
#include "test_certs.h"
#include "ws_test_client.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define NEBULA_TEST_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define NEBULA_TEST_SANITIZED 1
#endif
#endif
#ifndef NEBULA_TEST_SANITIZED
#define NEBULA_TEST_SANITIZED 0
#endif

namespace nebula_test {
namespace {

using ::testing::AssertionFailure;
using ::testing::AssertionResult;
using ::testing::AssertionSuccess;

// Overall bound for the big waits (thousands of events); the per-message
// bound is kTimeoutMs.
constexpr int kLongMs = 120000;

std::string Json(const std::string &key, const std::string &value) {
  return "{\"" + key + "\":\"" + value + "\"}";
}

// Events of a collection the fixture expects: (seq -> event id).
using SeqIds = std::map<uint64_t, std::string>;

// A client with one collection view (the common case).
struct Peer {
  explicit Peer(const std::string &client_id, const std::string &collection = "todos")
      : id(client_id), view(collection) {
    view.set_client_id(client_id);
  }
  std::string id;
  SyncClient c;
  CollectionView view;

  // Push and feed our own results into the view.
  AssertionResult Push(const std::vector<SyncEvent> &events, PushResultV *out = nullptr) {
    PushResultV r;
    if (!c.Push(events, &r)) return AssertionFailure() << id << ": " << c.last_error();
    view.HandleOwn(events, r);
    if (out) *out = std::move(r);
    return AssertionSuccess();
  }
  // Reads until the cursor reaches seq.
  AssertionResult CatchUpTo(uint64_t seq, int timeout_ms = kLongMs) {
    AssertionResult r = ReadUntil(c, {&view}, [&] { return view.tracker().seq() >= seq; }, timeout_ms);
    if (!r) return AssertionFailure() << id << " waiting for seq " << seq << " (cursor " << view.tracker().seq()
                                      << "): " << r.message();
    return NoViewErrors();
  }
  AssertionResult NoViewErrors() const {
    if (view.errors().empty()) return AssertionSuccess();
    AssertionResult r = AssertionFailure();
    r << id << " saw protocol violations:";
    for (size_t i = 0; i < view.errors().size() && i < 10; i++) r << "\n  " << view.errors()[i];
    if (view.errors().size() > 10) r << "\n  ... (" << view.errors().size() << " recorded)";
    return r;
  }
};

AssertionResult ExpectStatus(const PushResultV &r, size_t i, int status) {
  if (i >= r.results.size()) return AssertionFailure() << "no result " << i << " in " << r.Describe();
  if (r.results[i].status != status)
    return AssertionFailure() << "result " << i << ": expected " << PushStatusName(status) << ", got "
                              << r.results[i].Describe();
  return AssertionSuccess();
}

AssertionResult AllStatus(const PushResultV &r, int status) {
  for (size_t i = 0; i < r.results.size(); i++) {
    AssertionResult a = ExpectStatus(r, i, status);
    if (!a) return a;
  }
  return AssertionSuccess();
}

// The next message must be an Error with this code.
AssertionResult ExpectError(SyncClient &c, int code, SyncMessage *out = nullptr) {
  SyncMessage m;
  if (!c.Next(&m)) return AssertionFailure() << "expected Error{" << SyncErrorCodeName(code) << "}: " << c.last_error();
  if (!m.is(SyncMessage::kError) || m.error_code != code)
    return AssertionFailure() << "expected Error{" << SyncErrorCodeName(code) << "}, got " << m.Describe();
  if (out) *out = std::move(m);
  return AssertionSuccess();
}

// A snapshot's documents by id; fails on a document listed twice.
AssertionResult DocumentsById(const std::vector<SyncDocument> &docs, std::map<std::string, SyncDocument> *out) {
  out->clear();
  for (const auto &d : docs)
    if (!out->emplace(d.document_id, d).second) return AssertionFailure() << "document listed twice: " << d.Describe();
  return AssertionSuccess();
}

bool SameDocument(const SyncDocument &a, const SyncDocument &b) {
  return a.document_id == b.document_id && a.data == b.data && a.seq == b.seq && a.hlc == b.hlc &&
         a.client_id == b.client_id && a.deleted == b.deleted;
}

// Two document sets are equal (ids, data, seq, hlc, client_id).
AssertionResult SameDocuments(const std::map<std::string, SyncDocument> &got,
                              const std::map<std::string, SyncDocument> &want, const std::string &what) {
  size_t shown = 0;
  AssertionResult r = AssertionFailure();
  r << what << ": " << got.size() << " documents, expected " << want.size();
  bool bad = got.size() != want.size();
  for (const auto &kv : want) {
    auto it = got.find(kv.first);
    if (it == got.end()) {
      bad = true;
      if (shown++ < 5) r << "\n  missing " << kv.second.Describe();
    } else if (!SameDocument(it->second, kv.second)) {
      bad = true;
      if (shown++ < 5) r << "\n  got " << it->second.Describe() << "\n  want " << kv.second.Describe();
    }
  }
  for (const auto &kv : got)
    if (!want.count(kv.first)) {
      bad = true;
      if (shown++ < 5) r << "\n  unexpected " << kv.second.Describe();
    }
  return bad ? r : AssertionSuccess();
}

// ---- fixture -----------------------------------------------------------------------

class SyncTest : public ::testing::Test, public DaemonHarness {
 protected:
  void TearDown() override { StopDaemonAndExpectCleanExit(); }

  AssertionResult Open(SyncClient &c, const std::string &client_id, const std::string &token = "",
                       SyncMessage *welcome = nullptr, int receive_buffer = 0) {
    SyncOpenOptions o;
    o.client_id = client_id;
    o.auth_token = token;
    o.receive_buffer = receive_buffer;
    if (!c.Open(Client(), o, welcome)) return AssertionFailure() << client_id << ": " << c.last_error();
    return AssertionSuccess();
  }
  AssertionResult Open(Peer &p, const std::string &token = "") { return Open(p.c, p.id, token); }

  // A fresh session subscribing without cursor: the collection's head and
  // its snapshot (documents by id).
  AssertionResult FreshSnapshot(const std::string &collection, SyncCursor *head,
                                std::map<std::string, SyncDocument> *docs, const std::string &token = "") {
    Peer p("fresh-observer", collection);
    AssertionResult r = Open(p, token);
    if (!r) return r;
    r = SubscribeAndSettle(p.c, p.view);
    if (!r) return r;
    if (p.view.mode() != kSnapshot)
      return AssertionFailure() << "subscribe without cursor answered " << SubscribeModeName(p.view.mode());
    if (!(p.view.snapshot_cursor() == p.view.head()))
      return AssertionFailure() << "snapshot cursor " << p.view.snapshot_cursor().Describe() << " != head "
                                << p.view.head().Describe();
    *head = p.view.head();
    return DocumentsById(p.view.snapshot_documents(), docs);
  }
};

// ---- 1. end to end ---------------------------------------------------------------------

// 50 subscribers over 4 workers, 5 of them pushing 200 events each
// concurrently: everyone sees every other client's event exactly once, in
// one order, and each pusher's own results fill exactly its gaps.
TEST_F(SyncTest, FiftySubscribersFivePushersSeeOneOrderExactlyOnce) {
  ASSERT_TRUE(StartDaemon({{"workers", "4"}}));
  constexpr int kClients = 50, kPushers = 5, kPerPusher = 200, kBatch = 10;
  constexpr uint64_t kTotal = kPushers * kPerPusher;

  std::vector<std::unique_ptr<Peer>> peers;
  std::string epoch;
  for (int i = 0; i < kClients; i++) {
    char name[32];
    snprintf(name, sizeof name, "client-%02d", i);
    peers.push_back(std::make_unique<Peer>(name, "shared"));
    Peer &p = *peers.back();
    ASSERT_TRUE(Open(p));
    ASSERT_TRUE(SubscribeAndSettle(p.c, p.view));
    // No cursor: Subscribed SNAPSHOT, then one empty page with last = true.
    ASSERT_EQ(p.view.mode(), kSnapshot) << p.id;
    EXPECT_EQ(p.view.head().seq, 0u) << p.id;
    EXPECT_FALSE(p.view.head().epoch.empty()) << p.id;
    if (i == 0) epoch = p.view.head().epoch;
    EXPECT_EQ(p.view.head().epoch, epoch) << p.id;
    EXPECT_EQ(p.view.snapshot_pages(), 1u) << p.id;
    EXPECT_TRUE(p.view.snapshot_documents().empty()) << p.id;
    EXPECT_EQ(p.view.snapshot_cursor(), (SyncCursor{0, epoch})) << p.id;
  }

  // What each pusher pushed, and its results.
  std::vector<std::vector<SyncEvent>> pushed(kPushers);
  std::vector<std::vector<EventResultV>> results(kPushers);
  std::vector<std::string> failures(kClients);
  std::vector<std::thread> threads;
  for (int i = 0; i < kClients; i++) {
    threads.emplace_back([&, i] {
      Peer &p = *peers[i];
      if (i < kPushers) {
        for (int b = 0; b < kPerPusher / kBatch; b++) {
          std::vector<SyncEvent> batch;
          for (int k = 0; k < kBatch; k++) {
            int n = b * kBatch + k;
            batch.push_back(MakeEvent("shared", p.id + "-doc-" + std::to_string(n),
                                      "{\"pusher\":" + std::to_string(i) + ",\"n\":" + std::to_string(n) + "}",
                                      static_cast<uint64_t>(n + 1)));
          }
          PushResultV r;
          AssertionResult a = p.Push(batch, &r);
          if (!a) {
            failures[i] = a.message();
            return;
          }
          pushed[i].insert(pushed[i].end(), batch.begin(), batch.end());
          results[i].insert(results[i].end(), r.results.begin(), r.results.end());
        }
      }
      AssertionResult a = p.CatchUpTo(kTotal);
      if (!a) failures[i] = a.message();
    });
  }
  for (auto &t : threads) t.join();
  for (int i = 0; i < kClients; i++) ASSERT_EQ(failures[i], "") << peers[i]->id;

  // seq -> event id, as every client saw it; id -> pushed event and pusher.
  std::map<uint64_t, std::string> order;
  std::map<std::string, std::pair<int, SyncEvent>> by_id;
  for (int i = 0; i < kPushers; i++) {
    uint64_t prev = 0;
    for (size_t k = 0; k < pushed[i].size(); k++) {
      const EventResultV &r = results[i][k];
      ASSERT_EQ(r.status, kAccepted) << peers[i]->id << " " << r.Describe();
      ASSERT_GT(r.seq, prev) << "one client's sequential pushes got decreasing seqs";
      prev = r.seq;
      ASSERT_TRUE(order.emplace(r.seq, r.event_id).second) << "seq " << r.seq << " given to two events";
      by_id[pushed[i][k].id] = {i, pushed[i][k]};
    }
  }
  ASSERT_EQ(order.size(), kTotal);
  EXPECT_EQ(order.begin()->first, 1u);
  EXPECT_EQ(order.rbegin()->first, kTotal);

  for (int i = 0; i < kClients; i++) {
    Peer &p = *peers[i];
    ASSERT_TRUE(p.NoViewErrors());
    std::set<uint64_t> got;
    for (const SyncEvent &e : p.view.received()) {
      got.insert(e.seq);
      auto o = order.find(e.seq);
      ASSERT_NE(o, order.end()) << p.id << " received an unknown seq: " << e.Describe();
      ASSERT_EQ(e.id, o->second) << p.id << ": seq " << e.seq << " is another event than for the others";
      const auto &src = by_id.at(e.id);
      EXPECT_EQ(e.client_id, peers[src.first]->id) << "client_id not stamped by the server: " << e.Describe();
      EXPECT_EQ(e.document_id, src.second.document_id);
      EXPECT_EQ(e.data, src.second.data);
      EXPECT_EQ(e.hlc, src.second.hlc);
      EXPECT_EQ(e.type, src.second.type);
      EXPECT_EQ(e.collection, "shared");
      if (i < kPushers) {
        ASSERT_NE(src.first, i) << p.id << " received its own event live: " << e.Describe();
      }
    }
    if (i >= kPushers) {
      EXPECT_EQ(p.view.received().size(), kTotal) << p.id;
      EXPECT_EQ(got.size(), kTotal) << p.id;
    } else {
      // received and own are disjoint and together exactly 1..kTotal.
      std::set<uint64_t> own;
      for (const auto &r : results[i]) own.insert(r.seq);
      for (uint64_t s : own) EXPECT_EQ(got.count(s), 0u) << p.id << " received its own seq " << s;
      EXPECT_EQ(p.view.received().size(), kTotal - kPerPusher) << p.id;
      EXPECT_EQ(got.size() + own.size(), kTotal) << p.id;
      EXPECT_EQ(p.view.own_seen_before(), 0u) << p.id;
    }
    EXPECT_EQ(p.view.tracker().seq(), kTotal) << p.id;
    EXPECT_EQ(p.view.tracker().pending(), 0u) << p.id;
  }

  // Nothing else is on its way: a marker pushed now is everyone's next event.
  Peer &marker_pusher = *peers[kClients - 1];
  SyncEvent marker = MakeEvent("shared", "marker", "{\"marker\":true}", 1);
  PushResultV mr;
  ASSERT_TRUE(marker_pusher.Push({marker}, &mr));
  ASSERT_TRUE(ExpectStatus(mr, 0, kAccepted));
  ASSERT_EQ(mr.results[0].seq, kTotal + 1);
  for (int i = 0; i < kClients - 1; i++) {
    Peer &p = *peers[i];
    size_t before = p.view.received().size();
    ASSERT_TRUE(p.CatchUpTo(kTotal + 1, kTimeoutMs));
    ASSERT_EQ(p.view.received().size(), before + 1) << p.id;
    EXPECT_EQ(p.view.received().back().id, marker.id) << p.id;
  }
}

// Subscribers join (snapshot, replay from 0, replay from mid-stream) and
// re-subscribe while others push: replay/snapshot and live meet with no gap
// and no duplicate, and every snapshot-based replica ends equal to the state.
TEST_F(SyncTest, SubscribersJoiningDuringPushesGetNoGapNoDuplicate) {
  ASSERT_TRUE(StartDaemon({{"workers", "4"}}));
  constexpr int kPushers = 3, kBatch = 25, kJoins = 24;
  constexpr int kPerPusher = 1000, kTotal = kPushers * kPerPusher;
  constexpr int kStep = kTotal / kJoins;

  // Two early subscribers that will re-subscribe mid-stream on their session.
  std::vector<std::unique_ptr<Peer>> resubscribers;
  for (int i = 0; i < 2; i++) {
    resubscribers.push_back(std::make_unique<Peer>("resubscriber-" + std::to_string(i), "stream"));
    ASSERT_TRUE(Open(*resubscribers.back()));
    ASSERT_TRUE(SubscribeAndSettle(resubscribers.back()->c, resubscribers.back()->view));
  }
  const std::string epoch = resubscribers[0]->view.head().epoch;

  std::vector<std::unique_ptr<Peer>> pushers;
  for (int i = 0; i < kPushers; i++) {
    pushers.push_back(std::make_unique<Peer>("pusher-" + std::to_string(i), "stream"));
    ASSERT_TRUE(Open(*pushers.back()));
  }
  // Pushers may push up to `allowed` events in all; the main thread raises it
  // as it joins subscribers, so joins happen all along the stream.
  std::atomic<int> allowed{kStep}, reserved{0};
  std::mutex mu;
  SeqIds ids;
  std::vector<std::string> failures(kPushers);
  std::vector<std::thread> threads;
  for (int i = 0; i < kPushers; i++) {
    threads.emplace_back([&, i] {
      Peer &p = *pushers[i];
      for (int n = 0; n < kPerPusher; n += kBatch) {
        int mine = reserved.fetch_add(kBatch);
        int64_t deadline = NowMs() + kLongMs;
        while (mine + kBatch > allowed.load() && NowMs() < deadline)
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
        std::vector<SyncEvent> batch;
        for (int k = n; k < n + kBatch; k++)
          batch.push_back(MakeEvent("stream", "doc-" + std::to_string(k % 97),
                                    "{\"by\":\"" + p.id + "\",\"k\":" + std::to_string(k) + "}",
                                    static_cast<uint64_t>(k + 1), k < 97 ? kInsert : kUpdate));
        PushResultV r;
        if (!p.c.Push(batch, &r)) {
          failures[i] = p.c.last_error();
          allowed.store(kTotal * 2);
          return;
        }
        std::lock_guard<std::mutex> lock(mu);
        for (const auto &x : r.results) {
          if (x.status != kAccepted && x.status != kConflict) failures[i] = x.Describe();
          if (x.status == kAccepted) ids[x.seq] = x.event_id;
        }
      }
    });
  }

  struct Joiner {
    std::unique_ptr<Peer> peer;
    std::optional<SyncCursor> cursor;  // what it subscribed with
  };
  std::vector<Joiner> joiners;
  struct Resubscribed {
    Peer *peer;
    std::unique_ptr<CollectionView> view;
    SyncCursor cursor;
  };
  std::vector<Resubscribed> resubscribed;
  SyncCursor last_snapshot{0, epoch};
  for (int k = 0; k < kJoins; k++) {
    allowed.fetch_add(kStep);  // pushes run while this one joins
    Joiner j;
    j.peer = std::make_unique<Peer>("joiner-" + std::to_string(k), "stream");
    if (k % 3 == 1) j.cursor = SyncCursor{0, epoch};
    if (k % 3 == 2) j.cursor = last_snapshot;
    ASSERT_TRUE(Open(*j.peer));
    ASSERT_TRUE(SubscribeAndSettle(j.peer->c, j.peer->view, j.cursor));
    EXPECT_EQ(j.peer->view.mode(), j.cursor ? kReplay : kSnapshot) << j.peer->id;
    if (!j.cursor) last_snapshot = j.peer->view.snapshot_cursor();
    joiners.push_back(std::move(j));

    if (k == 8 || k == 16) {
      // Re-subscribe on the same session from the cursor it has now; what
      // was in flight for the old subscription arrives before Subscribed.
      Peer &r = *resubscribers[k / 16];
      SyncMessage m;
      for (int n = 0; n < 5000 && !r.c.QuietFor(5, &m); n++) {
        ASSERT_TRUE(r.c.Next(&m, kTimeoutMs)) << r.c.last_error();
        ASSERT_TRUE(r.view.Handle(m)) << m.Describe();
      }
      ASSERT_TRUE(r.NoViewErrors());
      SyncCursor cursor = r.view.tracker().Get();
      auto fresh = std::make_unique<CollectionView>("stream");
      fresh->tracker().Start(cursor);
      ASSERT_TRUE(r.c.SendSubscribe("stream", cursor));
      for (;;) {
        ASSERT_TRUE(r.c.Next(&m, kTimeoutMs)) << r.c.last_error();
        if (m.is(SyncMessage::kSubscribed)) {
          fresh->Handle(m);
          break;
        }
        ASSERT_TRUE(r.view.Handle(m)) << m.Describe();
      }
      EXPECT_EQ(fresh->mode(), kReplay) << r.id << " re-subscribing from " << cursor.Describe();
      resubscribed.push_back(Resubscribed{&r, std::move(fresh), cursor});
    }
  }
  allowed.store(kTotal * 2);
  for (auto &t : threads) t.join();
  for (const auto &f : failures) ASSERT_EQ(f, "");
  ASSERT_FALSE(ids.empty());
  const uint64_t head = ids.rbegin()->first;
  ASSERT_EQ(ids.size(), head) << "accepted seqs are not 1..head";

  SyncCursor final_head;
  std::map<std::string, SyncDocument> final_docs;
  ASSERT_TRUE(FreshSnapshot("stream", &final_head, &final_docs));
  ASSERT_EQ(final_head.seq, head);

  auto check_stream = [&](const std::string &who, const CollectionView &v, uint64_t from) {
    const auto &got = v.received();
    ASSERT_EQ(got.size(), head - from) << who << " from " << from;
    for (size_t i = 0; i < got.size(); i++) {
      ASSERT_EQ(got[i].seq, from + 1 + i) << who;
      ASSERT_EQ(got[i].id, ids[got[i].seq]) << who;
    }
  };
  for (auto &j : joiners) {
    Peer &p = *j.peer;
    ASSERT_TRUE(p.CatchUpTo(head));
    uint64_t from = j.cursor ? j.cursor->seq : p.view.snapshot_cursor().seq;
    check_stream(p.id, p.view, from);
    if (!j.cursor) {
      EXPECT_TRUE(SameDocuments(p.view.replica().Live(), final_docs, p.id + "'s replica"));
    }
  }
  for (auto &rs : resubscribed) {
    Peer &r = *rs.peer;
    CollectionView &v = *rs.view;
    ASSERT_TRUE(r.NoViewErrors());
    ASSERT_TRUE(ReadUntil(r.c, {&v}, [&] { return v.tracker().seq() >= head; }, kLongMs)) << r.id;
    ASSERT_TRUE(v.errors().empty()) << r.id << ": " << v.errors()[0];
    check_stream(r.id + " (re-subscribed)", v, rs.cursor.seq);
  }
}

// ---- 2. isolation --------------------------------------------------------------------

TEST_F(SyncTest, EventsOfOneCollectionNeverReachSubscribersOfAnother) {
  ASSERT_TRUE(StartDaemon({{"workers", "2"}}));
  Peer a("sub-a", "a"), b("sub-b", "b"), pusher("pusher", "a");
  Peer both("sub-both", "a");
  CollectionView both_b("b");
  ASSERT_TRUE(Open(a));
  ASSERT_TRUE(Open(b));
  ASSERT_TRUE(Open(both));
  ASSERT_TRUE(Open(pusher));
  ASSERT_TRUE(SubscribeAndSettle(a.c, a.view));
  ASSERT_TRUE(SubscribeAndSettle(b.c, b.view));
  ASSERT_TRUE(SubscribeAndSettle(both.c, both.view));
  ASSERT_TRUE(SubscribeAndSettle(both.c, both_b));

  std::vector<SyncEvent> only_a;
  for (int i = 0; i < 5; i++) only_a.push_back(MakeEvent("a", "doc" + std::to_string(i), Json("v", "a")));
  std::vector<SyncEvent> mixed = {MakeEvent("a", "m1", Json("v", "a")), MakeEvent("b", "m1", Json("v", "b")),
                                  MakeEvent("a", "m2", Json("v", "a")), MakeEvent("b", "m2", Json("v", "b"))};
  std::vector<SyncEvent> only_b = {MakeEvent("b", "last", Json("v", "b"))};
  PushResultV r1, r2, r3;
  ASSERT_TRUE(pusher.c.Push(only_a, &r1)) << pusher.c.last_error();
  ASSERT_TRUE(pusher.c.Push(mixed, &r2)) << pusher.c.last_error();
  ASSERT_TRUE(pusher.c.Push(only_b, &r3)) << pusher.c.last_error();
  ASSERT_TRUE(AllStatus(r1, kAccepted));
  ASSERT_TRUE(AllStatus(r2, kAccepted));
  ASSERT_TRUE(AllStatus(r3, kAccepted));
  // One log per collection.
  for (size_t i = 0; i < 5; i++) EXPECT_EQ(r1.results[i].seq, i + 1);
  EXPECT_EQ(r2.results[0].seq, 6u);
  EXPECT_EQ(r2.results[1].seq, 1u);
  EXPECT_EQ(r2.results[2].seq, 7u);
  EXPECT_EQ(r2.results[3].seq, 2u);
  EXPECT_EQ(r3.results[0].seq, 3u);

  ASSERT_TRUE(a.CatchUpTo(7, kTimeoutMs));
  ASSERT_TRUE(b.CatchUpTo(3, kTimeoutMs));
  ASSERT_TRUE(ReadUntil(both.c, {&both.view, &both_b},
                        [&] { return both.view.tracker().seq() >= 7 && both_b.tracker().seq() >= 3; }, kTimeoutMs));
  ASSERT_TRUE(both.NoViewErrors());
  EXPECT_TRUE(both_b.errors().empty()) << both_b.errors()[0];
  // Nothing else arrives (an event of the other collection would be a
  // message ReadUntil/QuietFor sees).
  SyncMessage extra;
  EXPECT_TRUE(a.c.QuietFor(300, &extra)) << "subscriber of 'a' got " << extra.Describe();
  EXPECT_TRUE(b.c.QuietFor(300, &extra)) << "subscriber of 'b' got " << extra.Describe();
  EXPECT_EQ(a.view.received().size(), 7u);
  EXPECT_EQ(b.view.received().size(), 3u);
  for (const auto &e : a.view.received()) EXPECT_EQ(e.collection, "a") << e.Describe();
  for (const auto &e : b.view.received()) EXPECT_EQ(e.collection, "b") << e.Describe();
  EXPECT_EQ(both.view.received().size(), 7u);
  EXPECT_EQ(both_b.received().size(), 3u);
}

TEST_F(SyncTest, TenantsSharingACollectionNameAreIsolated) {
  TempDir dir("nebula-sync-tenants");
  const std::string token_a = "tenant-a-token-0000000001", token_b = "tenant-b-token-0000000002";
  {
    std::ofstream f(dir.File("tokens"));
    f << "# two tenants, both with a 'todos'\n"
      << token_a << " tenant-a read=* write=*\n"
      << token_b << " tenant-b read=* write=*\n";
  }
  ASSERT_TRUE(StartDaemon({{"workers", "2"}, {"tokens", dir.File("tokens")}}));

  Peer a_sub("a-sub"), a_writer("a-writer"), b_sub("b-sub"), b_writer("b-writer");
  SyncMessage welcome;
  ASSERT_TRUE(Open(a_sub.c, a_sub.id, token_a, &welcome));
  EXPECT_EQ(welcome.tenant, "tenant-a");
  ASSERT_TRUE(Open(b_sub.c, b_sub.id, token_b, &welcome));
  EXPECT_EQ(welcome.tenant, "tenant-b");
  ASSERT_TRUE(Open(a_writer, token_a));
  ASSERT_TRUE(Open(b_writer, token_b));
  ASSERT_TRUE(SubscribeAndSettle(a_sub.c, a_sub.view));
  ASSERT_TRUE(SubscribeAndSettle(b_sub.c, b_sub.view));

  std::vector<SyncEvent> a_events;
  for (int i = 0; i < 3; i++) a_events.push_back(MakeEvent("todos", "secret-" + std::to_string(i), Json("owner", "a")));
  PushResultV ra;
  ASSERT_TRUE(a_writer.Push(a_events, &ra));
  ASSERT_TRUE(AllStatus(ra, kAccepted));
  ASSERT_TRUE(a_sub.CatchUpTo(3, kTimeoutMs));

  // Tenant B's "todos" is still empty: head 0, empty snapshot.
  SyncCursor head_b;
  std::map<std::string, SyncDocument> docs_b;
  ASSERT_TRUE(FreshSnapshot("todos", &head_b, &docs_b, token_b));
  EXPECT_EQ(head_b.seq, 0u);
  EXPECT_TRUE(docs_b.empty());
  SyncMessage extra;
  EXPECT_TRUE(b_sub.c.QuietFor(300, &extra)) << "tenant B subscriber got " << extra.Describe();

  // B's writes have their own log (seq 1), reach only B; an event id that
  // tenant A used is no duplicate in B (nothing of A can be discovered).
  SyncEvent reused = MakeEvent("todos", "mine", Json("owner", "b"));
  reused.id = a_events[0].id;
  PushResultV rb;
  ASSERT_TRUE(b_writer.Push({reused, MakeEvent("todos", "mine2", Json("owner", "b"))}, &rb));
  ASSERT_TRUE(ExpectStatus(rb, 0, kAccepted)) << "tenant B's event with an id tenant A used";
  ASSERT_TRUE(ExpectStatus(rb, 1, kAccepted));
  EXPECT_EQ(rb.results[0].seq, 1u);
  EXPECT_EQ(rb.results[1].seq, 2u);
  ASSERT_TRUE(b_sub.CatchUpTo(2, kTimeoutMs));
  ASSERT_EQ(b_sub.view.received().size(), 2u);
  for (const auto &e : b_sub.view.received()) EXPECT_EQ(e.data, Json("owner", "b")) << e.Describe();
  EXPECT_TRUE(a_sub.c.QuietFor(300, &extra)) << "tenant A subscriber got " << extra.Describe();
  EXPECT_EQ(a_sub.view.received().size(), 3u);

  // And A's state is untouched by B.
  SyncCursor head_a;
  std::map<std::string, SyncDocument> docs_a;
  ASSERT_TRUE(FreshSnapshot("todos", &head_a, &docs_a, token_a));
  EXPECT_EQ(head_a.seq, 3u);
  EXPECT_EQ(docs_a.size(), 3u);
  EXPECT_EQ(docs_a.count("mine"), 0u);
}

// ---- 3. catch-up, replay and snapshots -----------------------------------------------

class CatchUpTest : public SyncTest {
 protected:
  // Pushes count events in batches through pusher: documents d0..d(docs-1)
  // written round-robin, the first write of each an INSERT, later ones
  // UPDATEs, the fourth write of every fifth document a DELETE; hlc grows.
  // Records seq -> id and the expected documents.
  AssertionResult Fill(Peer &pusher, int count, int batch, int docs) {
    for (int start = 0; start < count; start += batch) {
      std::vector<SyncEvent> events;
      for (int i = start; i < start + batch && i < count; i++) {
        int g = written_ + i, doc = g % docs, round = g / docs;
        int type = round == 0 ? kInsert : (round % 4 == 3 && doc % 5 == 0) ? kDelete : kUpdate;
        std::string doc_id = "d" + std::to_string(doc);
        events.push_back(MakeEvent("todos", doc_id,
                                   "{\"doc\":\"" + doc_id + "\",\"write\":" + std::to_string(g) + "}",
                                   ++hlc_, type));
      }
      PushResultV r;
      AssertionResult a = pusher.Push(events, &r);
      if (!a) return a;
      for (size_t k = 0; k < events.size(); k++) {
        if (r.results[k].status != kAccepted) return AssertionFailure() << "fill: " << r.results[k].Describe();
        uint64_t seq = r.results[k].seq;
        if (seq != last_seq_ + 1) return AssertionFailure() << "fill: seq " << seq << " after " << last_seq_;
        last_seq_ = seq;
        ids_[seq] = events[k].id;
        SyncDocument d;
        d.collection = "todos";
        d.document_id = events[k].document_id;
        d.data = events[k].data;
        d.seq = seq;
        d.hlc = events[k].hlc;
        d.client_id = pusher.id;
        if (events[k].type == kDelete)
          expected_.erase(d.document_id);
        else
          expected_[d.document_id] = d;
      }
    }
    written_ += count;
    return AssertionSuccess();
  }

  // The received events are exactly seqs from..to of ids_, in order.
  AssertionResult ReceivedExactly(const std::vector<SyncEvent> &got, uint64_t from, uint64_t to) {
    if (got.size() != to - from + 1)
      return AssertionFailure() << "received " << got.size() << " events, expected " << (to - from + 1) << " (seqs "
                                << from << ".." << to << ")";
    for (size_t k = 0; k < got.size(); k++) {
      uint64_t seq = from + k;
      if (got[k].seq != seq)
        return AssertionFailure() << "event " << k << " has seq " << got[k].seq << ", expected " << seq;
      if (got[k].id != ids_[seq])
        return AssertionFailure() << "seq " << seq << " is event " << got[k].id << ", pushed " << ids_[seq];
    }
    return AssertionSuccess();
  }

  uint64_t hlc_ = 0;
  int written_ = 0;
  uint64_t last_seq_ = 0;
  SeqIds ids_;
  std::map<std::string, SyncDocument> expected_;
};

TEST_F(CatchUpTest, ReconnectWithCursorReplaysExactlyTheMissedEventsThenLive) {
  ASSERT_TRUE(StartDaemon());
  Peer pusher("pusher");
  ASSERT_TRUE(Open(pusher));
  ASSERT_TRUE(Fill(pusher, 5, 5, 5));

  // C subscribes, keeps its cursor, goes away.
  SyncCursor saved;
  {
    Peer c("client-c");
    ASSERT_TRUE(Open(c));
    ASSERT_TRUE(SubscribeAndSettle(c.c, c.view));
    ASSERT_EQ(c.view.mode(), kSnapshot);
    EXPECT_EQ(c.view.head().seq, 5u);
    EXPECT_EQ(c.view.snapshot_cursor(), c.view.head());
    saved = c.view.tracker().Get();
    ASSERT_EQ(saved.seq, 5u);
    c.c.Close();
  }

  constexpr int kMissed = 10000;
  ASSERT_TRUE(Fill(pusher, kMissed, 100, 2500));
  ASSERT_EQ(last_seq_, 5u + kMissed);

  Peer c("client-c");
  ASSERT_TRUE(Open(c));
  ASSERT_TRUE(SubscribeAndSettle(c.c, c.view, saved));
  ASSERT_EQ(c.view.mode(), kReplay);
  EXPECT_EQ(c.view.head(), (SyncCursor{last_seq_, saved.epoch}));
  ASSERT_TRUE(c.CatchUpTo(last_seq_));
  ASSERT_TRUE(ReceivedExactly(c.view.received(), saved.seq + 1, last_seq_));
  EXPECT_GE(c.view.events_messages(), 1u);
  RecordProperty("replay_events_messages", static_cast<int>(c.view.events_messages()));

  // A live event right after the replay: next, no gap, no duplicate.
  ASSERT_TRUE(Fill(pusher, 1, 1, 2500));
  ASSERT_TRUE(c.CatchUpTo(last_seq_, kTimeoutMs));
  ASSERT_TRUE(ReceivedExactly(c.view.received(), saved.seq + 1, last_seq_));
  SyncMessage extra;
  EXPECT_TRUE(c.c.QuietFor(300, &extra)) << "after the live event: " << extra.Describe();
}

TEST_F(CatchUpTest, SubscribeWithoutCursorGetsSnapshotOfCurrentState) {
  ASSERT_TRUE(StartDaemon());
  Peer pusher("pusher");
  ASSERT_TRUE(Open(pusher));
  ASSERT_TRUE(Fill(pusher, 10000, 100, 2500));

  Peer c("snapshotter");
  ASSERT_TRUE(Open(c));
  ASSERT_TRUE(SubscribeAndSettle(c.c, c.view, std::nullopt, kLongMs));
  ASSERT_EQ(c.view.mode(), kSnapshot);
  EXPECT_EQ(c.view.head().seq, last_seq_);
  EXPECT_EQ(c.view.snapshot_cursor(), c.view.head());
  EXPECT_GT(c.view.snapshot_pages(), 1u) << "expected several pages for " << expected_.size() << " documents";
  std::map<std::string, SyncDocument> docs;
  ASSERT_TRUE(DocumentsById(c.view.snapshot_documents(), &docs));
  ASSERT_EQ(expected_.size(), 2000u);  // 2500 documents, 500 deleted
  EXPECT_TRUE(SameDocuments(docs, expected_, "snapshot"));

  // Then live events continue from the snapshot's cursor.
  ASSERT_TRUE(Fill(pusher, 3, 3, 2500));
  ASSERT_TRUE(c.CatchUpTo(last_seq_, kTimeoutMs));
  EXPECT_EQ(c.view.received().size(), 3u);
  EXPECT_TRUE(SameDocuments(c.view.replica().Live(), expected_, "replica after live events"));
}

// A snapshot much larger than a session's output cap (4 MiB) arrives whole:
// its pages go out as the client reads them, and the client is not taken
// for a peer that does not read.
TEST_F(CatchUpTest, SnapshotLargerThanTheOutputCapArrivesWhole) {
  ASSERT_TRUE(StartDaemon());
  Peer pusher("pusher");
  ASSERT_TRUE(Open(pusher));
  constexpr int kDocs = 24000;
  const std::string pad(300, 'x');
  for (int start = 0; start < kDocs; start += 1000) {
    std::vector<SyncEvent> events;
    for (int i = start; i < start + 1000; i++)
      events.push_back(MakeEvent("todos", "d" + std::to_string(i), "{\"pad\":\"" + pad + "\"}"));
    PushResultV r;
    ASSERT_TRUE(pusher.Push(events, &r));
  }
  Peer c("snapshotter");
  ASSERT_TRUE(Open(c));
  ASSERT_TRUE(SubscribeAndSettle(c.c, c.view, std::nullopt, kLongMs)) << c.c.last_error();
  ASSERT_EQ(c.view.mode(), kSnapshot);
  EXPECT_EQ(c.view.snapshot_documents().size(), static_cast<size_t>(kDocs));
  EXPECT_EQ(c.view.snapshot_cursor().seq, static_cast<uint64_t>(kDocs));
  // Still a working session: live events follow.
  std::vector<SyncEvent> one = {MakeEvent("todos", "after", "{\"n\":1}")};
  PushResultV r;
  ASSERT_TRUE(pusher.Push(one, &r));
  ASSERT_TRUE(c.CatchUpTo(kDocs + 1, kTimeoutMs));
}

TEST_F(CatchUpTest, CursorFromAnotherEpochOrBeyondHeadGetsSnapshot) {
  ASSERT_TRUE(StartDaemon());
  Peer pusher("pusher");
  ASSERT_TRUE(Open(pusher));
  ASSERT_TRUE(Fill(pusher, 20, 10, 8));
  SyncCursor head;
  std::map<std::string, SyncDocument> docs;
  ASSERT_TRUE(FreshSnapshot("todos", &head, &docs));
  ASSERT_EQ(head.seq, 20u);

  struct Case {
    const char *name;
    SyncCursor cursor;
  } cases[] = {
      {"another epoch", {5, "bogus"}},
      {"empty epoch", {5, ""}},
      {"beyond the head", {head.seq + 100, head.epoch}},
      {"one past the head", {head.seq + 1, head.epoch}},
  };
  for (const Case &k : cases) {
    SCOPED_TRACE(k.name);
    Peer c(std::string("cursor-") + k.name);
    ASSERT_TRUE(Open(c));
    ASSERT_TRUE(SubscribeAndSettle(c.c, c.view, k.cursor));
    EXPECT_EQ(c.view.mode(), kSnapshot);
    EXPECT_EQ(c.view.head(), head);
    EXPECT_EQ(c.view.snapshot_cursor(), head);
    std::map<std::string, SyncDocument> got;
    ASSERT_TRUE(DocumentsById(c.view.snapshot_documents(), &got));
    EXPECT_TRUE(SameDocuments(got, expected_, "snapshot"));
    EXPECT_EQ(c.view.tracker().Get(), head);
  }

  // Cursors inside the log replay: the head itself (nothing to replay) and 0.
  {
    Peer c("cursor-at-head");
    ASSERT_TRUE(Open(c));
    ASSERT_TRUE(SubscribeAndSettle(c.c, c.view, head));
    EXPECT_EQ(c.view.mode(), kReplay);
    EXPECT_EQ(c.view.head(), head);
    SyncMessage extra;
    EXPECT_TRUE(c.c.QuietFor(300, &extra)) << "replay from the head sent " << extra.Describe();
  }
  {
    Peer c("cursor-zero");
    ASSERT_TRUE(Open(c));
    ASSERT_TRUE(SubscribeAndSettle(c.c, c.view, SyncCursor{0, head.epoch}));
    EXPECT_EQ(c.view.mode(), kReplay);
    ASSERT_TRUE(c.CatchUpTo(head.seq, kTimeoutMs));
    EXPECT_TRUE(ReceivedExactly(c.view.received(), 1, head.seq));
    EXPECT_TRUE(SameDocuments(c.view.replica().Live(), expected_, "replica from a full replay"));
  }
}

// Replay includes the client's own events (it may have missed their results).
TEST_F(CatchUpTest, ReplayIncludesOwnEvents) {
  ASSERT_TRUE(StartDaemon());
  Peer me("me");
  ASSERT_TRUE(Open(me));
  ASSERT_TRUE(SubscribeAndSettle(me.c, me.view));
  SyncCursor start = me.view.tracker().Get();
  ASSERT_TRUE(Fill(me, 4, 4, 4));
  me.c.Close();

  Peer again("me");
  ASSERT_TRUE(Open(again));
  ASSERT_TRUE(SubscribeAndSettle(again.c, again.view, start));
  ASSERT_EQ(again.view.mode(), kReplay);
  ASSERT_TRUE(again.CatchUpTo(4, kTimeoutMs));
  EXPECT_TRUE(ReceivedExactly(again.view.received(), 1, 4));
  for (const auto &e : again.view.received()) EXPECT_EQ(e.client_id, "me");
}

// ---- 4. idempotency ---------------------------------------------------------------------

TEST_F(SyncTest, RePushAfterLostConnectionIsDuplicateAndNotDeliveredTwice) {
  ASSERT_TRUE(StartDaemon());
  Peer watcher("watcher");
  ASSERT_TRUE(Open(watcher));
  ASSERT_TRUE(SubscribeAndSettle(watcher.c, watcher.view));

  auto make_batch = [](const std::string &tag) {
    std::vector<SyncEvent> batch;
    for (int i = 0; i < 10; i++)
      batch.push_back(
          MakeEvent("todos", tag + "-" + std::to_string(i), Json("tag", tag), static_cast<uint64_t>(i + 1)));
    return batch;
  };
  auto seqs_seen_by_watcher = [&](const std::vector<SyncEvent> &batch) {
    std::map<std::string, uint64_t> by_id;
    for (const auto &e : watcher.view.received()) by_id[e.id] = e.seq;
    std::vector<uint64_t> out;
    for (const auto &e : batch) out.push_back(by_id.count(e.id) ? by_id[e.id] : 0);
    return out;
  };

  // (a) The connection drops before the PushResult is read.
  std::vector<SyncEvent> batch1 = make_batch("one");
  {
    SyncClient p;
    ASSERT_TRUE(Open(p, "pusher"));
    ASSERT_TRUE(p.SendPush(batch1)) << p.last_error();
    p.Close();
  }
  // The daemon had the whole Push before the FIN, so it was stored.
  ASSERT_TRUE(watcher.CatchUpTo(10, kTimeoutMs));
  std::vector<uint64_t> seqs1 = seqs_seen_by_watcher(batch1);
  {
    SyncClient p;
    ASSERT_TRUE(Open(p, "pusher"));
    PushResultV r;
    ASSERT_TRUE(p.Push(batch1, &r)) << p.last_error();
    ASSERT_TRUE(AllStatus(r, kDuplicate));
    for (size_t i = 0; i < batch1.size(); i++) EXPECT_EQ(r.results[i].seq, seqs1[i]) << i;
  }

  // (b) The connection drops after the PushResult was read.
  std::vector<SyncEvent> batch2 = make_batch("two");
  std::vector<uint64_t> seqs2;
  {
    SyncClient p;
    ASSERT_TRUE(Open(p, "pusher"));
    PushResultV r;
    ASSERT_TRUE(p.Push(batch2, &r)) << p.last_error();
    ASSERT_TRUE(AllStatus(r, kAccepted));
    for (const auto &x : r.results) seqs2.push_back(x.seq);
  }
  ASSERT_TRUE(watcher.CatchUpTo(20, kTimeoutMs));
  EXPECT_EQ(seqs_seen_by_watcher(batch2), seqs2);
  {
    SyncClient p;
    ASSERT_TRUE(Open(p, "pusher"));
    PushResultV r;
    ASSERT_TRUE(p.Push(batch2, &r)) << p.last_error();
    ASSERT_TRUE(AllStatus(r, kDuplicate));
    for (size_t i = 0; i < batch2.size(); i++) EXPECT_EQ(r.results[i].seq, seqs2[i]) << i;
    // A re-push from a different session of another client is a duplicate too.
    SyncClient q;
    ASSERT_TRUE(Open(q, "someone-else"));
    ASSERT_TRUE(q.Push(batch1, &r)) << q.last_error();
    ASSERT_TRUE(AllStatus(r, kDuplicate));
  }

  // The head did not move, and nobody got anything twice.
  SyncCursor head;
  std::map<std::string, SyncDocument> docs;
  ASSERT_TRUE(FreshSnapshot("todos", &head, &docs));
  EXPECT_EQ(head.seq, 20u);
  EXPECT_EQ(docs.size(), 20u);
  SyncMessage extra;
  EXPECT_TRUE(watcher.c.QuietFor(300, &extra)) << "duplicates delivered: " << extra.Describe();
  EXPECT_EQ(watcher.view.received().size(), 20u);

  // A push mixing old and new ids: old ones DUPLICATE, new ones stored next.
  std::vector<SyncEvent> mixed = {batch1[0], MakeEvent("todos", "new-1", Json("tag", "new")), batch2[9],
                                  MakeEvent("todos", "new-2", Json("tag", "new"))};
  {
    SyncClient p;
    ASSERT_TRUE(Open(p, "pusher"));
    PushResultV r;
    ASSERT_TRUE(p.Push(mixed, &r)) << p.last_error();
    ASSERT_TRUE(ExpectStatus(r, 0, kDuplicate));
    EXPECT_EQ(r.results[0].seq, seqs1[0]);
    ASSERT_TRUE(ExpectStatus(r, 1, kAccepted));
    EXPECT_EQ(r.results[1].seq, 21u);
    ASSERT_TRUE(ExpectStatus(r, 2, kDuplicate));
    EXPECT_EQ(r.results[2].seq, seqs2[9]);
    ASSERT_TRUE(ExpectStatus(r, 3, kAccepted));
    EXPECT_EQ(r.results[3].seq, 22u);
  }
  ASSERT_TRUE(watcher.CatchUpTo(22, kTimeoutMs));
  ASSERT_EQ(watcher.view.received().size(), 22u);
  EXPECT_EQ(watcher.view.received()[20].id, mixed[1].id);
  EXPECT_EQ(watcher.view.received()[21].id, mixed[3].id);

  // The same id twice in one Push: the second sees the first.
  SyncEvent twice = MakeEvent("todos", "twice", Json("tag", "twice"));
  {
    SyncClient p;
    ASSERT_TRUE(Open(p, "pusher"));
    PushResultV r;
    ASSERT_TRUE(p.Push({twice, twice}, &r)) << p.last_error();
    ASSERT_TRUE(ExpectStatus(r, 0, kAccepted));
    ASSERT_TRUE(ExpectStatus(r, 1, kDuplicate));
    EXPECT_EQ(r.results[0].seq, 23u);
    EXPECT_EQ(r.results[1].seq, 23u);
  }
  ASSERT_TRUE(watcher.CatchUpTo(23, kTimeoutMs));
  EXPECT_EQ(watcher.view.received().size(), 23u);
  EXPECT_TRUE(watcher.c.QuietFor(300, &extra)) << "duplicate delivered: " << extra.Describe();
}

// ---- 5. conflicts --------------------------------------------------------------------------

class ConflictTest : public SyncTest {
 protected:
  void TearDown() override {
    for (Peer *p : {&alice_, &bob_, &carol_}) p->c.Close();  // no drain wait
    SyncTest::TearDown();
  }
  void StartWith(const std::string &strategy, const std::string &rules = "") {
    DaemonOptions args = {{"conflict-resolution", strategy}, {"workers", "2"}};
    if (!rules.empty()) args["conflict-rules"] = rules;
    ASSERT_TRUE(StartDaemon(args));
    for (Peer *p : {&alice_, &bob_, &carol_}) {
      ASSERT_TRUE(Open(*p));
      ASSERT_TRUE(SubscribeAndSettle(p->c, p->view));
    }
  }
  // One write; the single result.
  AssertionResult Write(Peer &p, const SyncEvent &e, EventResultV *out) {
    PushResultV r;
    AssertionResult a = p.Push({e}, &r);
    if (!a) return a;
    *out = r.results[0];
    return AssertionSuccess();
  }
  // Every replica (snapshot + received events + own accepted writes) equals
  // a fresh snapshot.
  void ExpectConvergence() {
    SyncCursor head;
    std::map<std::string, SyncDocument> docs;
    ASSERT_TRUE(FreshSnapshot("todos", &head, &docs));
    for (Peer *p : {&alice_, &bob_, &carol_}) {
      ASSERT_TRUE(p->CatchUpTo(head.seq, kTimeoutMs));
      EXPECT_EQ(p->view.tracker().seq(), head.seq) << p->id;
      EXPECT_TRUE(SameDocuments(p->view.replica().Live(), docs, p->id + "'s replica vs snapshot"));
    }
    snapshot_ = docs;
  }
  static SyncDocument Doc(const SyncEvent &e, uint64_t seq, const std::string &client_id) {
    SyncDocument d;
    d.collection = e.collection;
    d.document_id = e.document_id;
    d.data = e.data;
    d.seq = seq;
    d.hlc = e.hlc;
    d.client_id = client_id;
    return d;
  }
  // A CONFLICT result whose winner is exactly want.
  static AssertionResult LostTo(const EventResultV &r, const SyncDocument &want) {
    if (r.status != kConflict) return AssertionFailure() << "expected CONFLICT, got " << r.Describe();
    if (!r.winner) return AssertionFailure() << "CONFLICT without winner";
    SyncDocument w = *r.winner;
    if (w.collection != want.collection || !SameDocument(w, want))
      return AssertionFailure() << "winner " << w.Describe() << ", expected " << want.Describe();
    return AssertionSuccess();
  }

  Peer alice_{"alice"}, bob_{"bob"}, carol_{"carol"};
  std::map<std::string, SyncDocument> snapshot_;
};

TEST_F(ConflictTest, LastWriteWinsHigherHlcThenHigherClientId) {
  ASSERT_NO_FATAL_FAILURE(StartWith("last-write-wins"));
  EventResultV r1, r2;

  // hlc 5 then 7: both stored, 7 is the state.
  SyncEvent a5 = MakeEvent("todos", "x1", Json("by", "alice-5"), 5, kInsert);
  SyncEvent b7 = MakeEvent("todos", "x1", Json("by", "bob-7"), 7, kUpdate);
  ASSERT_TRUE(Write(alice_, a5, &r1));
  ASSERT_TRUE(Write(bob_, b7, &r2));
  EXPECT_EQ(r1.status, kAccepted) << r1.Describe();
  EXPECT_EQ(r2.status, kAccepted) << r2.Describe();
  SyncDocument x1 = Doc(b7, r2.seq, "bob");

  // hlc 7 then 5: the late, older write loses to 7.
  SyncEvent b7b = MakeEvent("todos", "x2", Json("by", "bob-7"), 7, kInsert);
  SyncEvent a5b = MakeEvent("todos", "x2", Json("by", "alice-5"), 5, kUpdate);
  ASSERT_TRUE(Write(bob_, b7b, &r1));
  ASSERT_TRUE(Write(alice_, a5b, &r2));
  EXPECT_EQ(r1.status, kAccepted) << r1.Describe();
  SyncDocument x2 = Doc(b7b, r1.seq, "bob");
  EXPECT_TRUE(LostTo(r2, x2));

  // Equal hlc: the bytewise higher client_id ("bob" > "alice") wins, in
  // both orders; the event's own client_id field cannot change that.
  SyncEvent a10 = MakeEvent("todos", "x3", Json("by", "alice-10"), 10, kInsert);
  SyncEvent b10 = MakeEvent("todos", "x3", Json("by", "bob-10"), 10, kUpdate);
  ASSERT_TRUE(Write(alice_, a10, &r1));
  ASSERT_TRUE(Write(bob_, b10, &r2));
  EXPECT_EQ(r1.status, kAccepted) << r1.Describe();
  EXPECT_EQ(r2.status, kAccepted) << r2.Describe();
  SyncDocument x3 = Doc(b10, r2.seq, "bob");

  SyncEvent b10b = MakeEvent("todos", "x4", Json("by", "bob-10"), 10, kInsert);
  SyncEvent a10b = MakeEvent("todos", "x4", Json("by", "alice-10"), 10, kUpdate);
  a10b.client_id = "zzzz-spoofed";  // ignored: the server stamps "alice"
  ASSERT_TRUE(Write(bob_, b10b, &r1));
  ASSERT_TRUE(Write(alice_, a10b, &r2));
  EXPECT_EQ(r1.status, kAccepted) << r1.Describe();
  SyncDocument x4 = Doc(b10b, r1.seq, "bob");
  EXPECT_TRUE(LostTo(r2, x4));

  // A newer delete wins too; an older write after it loses to the deletion.
  SyncEvent c1 = MakeEvent("todos", "x5", Json("by", "carol-1"), 1, kInsert);
  SyncEvent a20 = MakeEvent("todos", "x5", "", 20, kDelete);
  SyncEvent b15 = MakeEvent("todos", "x5", Json("by", "bob-15"), 15, kUpdate);
  ASSERT_TRUE(Write(carol_, c1, &r1));
  EXPECT_EQ(r1.status, kAccepted) << r1.Describe();
  ASSERT_TRUE(Write(alice_, a20, &r1));
  EXPECT_EQ(r1.status, kAccepted) << r1.Describe();
  ASSERT_TRUE(Write(bob_, b15, &r2));
  EXPECT_EQ(r2.status, kConflict) << r2.Describe();
  if (r2.winner) {
    EXPECT_TRUE(r2.winner->deleted) << r2.winner->Describe();
    EXPECT_EQ(r2.winner->seq, r1.seq);
  }

  // Within one Push the later event sees the earlier one.
  SyncEvent q5 = MakeEvent("todos", "q1", Json("by", "carol-5"), 5, kInsert);
  SyncEvent q3 = MakeEvent("todos", "q1", Json("by", "carol-3"), 3, kUpdate);
  PushResultV pr;
  ASSERT_TRUE(carol_.Push({q5, q3}, &pr));
  ASSERT_TRUE(ExpectStatus(pr, 0, kAccepted));
  EXPECT_TRUE(LostTo(pr.results[1], Doc(q5, pr.results[0].seq, "carol")));

  ASSERT_NO_FATAL_FAILURE(ExpectConvergence());
  ASSERT_EQ(snapshot_.count("x1"), 1u);
  EXPECT_TRUE(SameDocument(snapshot_["x1"], x1)) << snapshot_["x1"].Describe();
  EXPECT_TRUE(SameDocument(snapshot_["x2"], x2)) << snapshot_["x2"].Describe();
  EXPECT_TRUE(SameDocument(snapshot_["x3"], x3)) << snapshot_["x3"].Describe();
  EXPECT_TRUE(SameDocument(snapshot_["x4"], x4)) << snapshot_["x4"].Describe();
  EXPECT_EQ(snapshot_.count("x5"), 0u);
}

TEST_F(ConflictTest, PerCollectionRulesOverrideTheDefaultStrategy) {
  ASSERT_NO_FATAL_FAILURE(StartWith("last-write-wins", "notes-*=server-wins"));
  EventResultV ra, rb;
  // notes-a matches the rule: server-wins, so the second writer with the
  // same (stale) base loses even with a higher hlc.
  SyncEvent a1 = MakeEvent("notes-a", "n1", Json("by", "alice"), 1, kInsert, 0);
  SyncEvent b1 = MakeEvent("notes-a", "n1", Json("by", "bob"), 99, kInsert, 0);
  ASSERT_TRUE(Write(alice_, a1, &ra));
  ASSERT_TRUE(Write(bob_, b1, &rb));
  ASSERT_EQ(ra.status, kAccepted) << ra.Describe();
  EXPECT_TRUE(LostTo(rb, Doc(a1, ra.seq, "alice")));
  // todos matches no rule: the default last-write-wins lets the higher hlc win.
  SyncEvent a2 = MakeEvent("todos", "t1", Json("by", "alice"), 1, kInsert, 0);
  SyncEvent b2 = MakeEvent("todos", "t1", Json("by", "bob"), 99, kInsert, 0);
  ASSERT_TRUE(Write(alice_, a2, &ra));
  ASSERT_TRUE(Write(bob_, b2, &rb));
  EXPECT_EQ(ra.status, kAccepted) << ra.Describe();
  EXPECT_EQ(rb.status, kAccepted) << rb.Describe();
  ASSERT_NO_FATAL_FAILURE(ExpectConvergence());
  EXPECT_EQ(snapshot_["t1"].data, b2.data);
}

TEST_F(ConflictTest, ServerWinsRejectsStaleBaseSeq) {
  ASSERT_NO_FATAL_FAILURE(StartWith("server-wins"));
  EventResultV ra, rb, r;

  // Within one Push the later event sees the earlier one: an insert (base 0,
  // seq 1) and an update based on it are both accepted; a third with the
  // stale base 0 loses to the update.
  SyncEvent p1 = MakeEvent("todos", "p1", Json("v", "1"), 1, kInsert, 0);
  SyncEvent p2 = MakeEvent("todos", "p1", Json("v", "2"), 2, kUpdate, 1);
  SyncEvent p3 = MakeEvent("todos", "p1", Json("v", "3"), 3, kUpdate, 0);
  PushResultV pr;
  ASSERT_TRUE(carol_.Push({p1, p2, p3}, &pr));
  ASSERT_TRUE(ExpectStatus(pr, 0, kAccepted));
  ASSERT_EQ(pr.results[0].seq, 1u);
  ASSERT_TRUE(ExpectStatus(pr, 1, kAccepted));
  EXPECT_TRUE(LostTo(pr.results[2], Doc(p2, pr.results[1].seq, "carol")));

  // Both writers saw nothing (base 0): the first arrival wins.
  SyncEvent a1 = MakeEvent("todos", "s1", Json("by", "alice-1"), 1, kInsert, 0);
  SyncEvent b1 = MakeEvent("todos", "s1", Json("by", "bob-1"), 99, kInsert, 0);
  ASSERT_TRUE(Write(alice_, a1, &ra));
  ASSERT_TRUE(Write(bob_, b1, &rb));
  ASSERT_EQ(ra.status, kAccepted) << ra.Describe();
  SyncDocument v1 = Doc(a1, ra.seq, "alice");
  EXPECT_TRUE(LostTo(rb, v1)) << "a higher hlc does not matter under server-wins";

  // Both now base their write on v1: again the first wins.
  SyncEvent b2 = MakeEvent("todos", "s1", Json("by", "bob-2"), 2, kUpdate, v1.seq);
  SyncEvent a2 = MakeEvent("todos", "s1", Json("by", "alice-2"), 50, kUpdate, v1.seq);
  ASSERT_TRUE(Write(bob_, b2, &rb));
  ASSERT_TRUE(Write(alice_, a2, &ra));
  ASSERT_EQ(rb.status, kAccepted) << rb.Describe();
  SyncDocument v2 = Doc(b2, rb.seq, "bob");
  EXPECT_TRUE(LostTo(ra, v2));

  // A writer with the current base_seq is accepted.
  SyncEvent a3 = MakeEvent("todos", "s1", Json("by", "alice-3"), 3, kUpdate, v2.seq);
  ASSERT_TRUE(Write(alice_, a3, &r));
  ASSERT_EQ(r.status, kAccepted) << r.Describe();
  SyncDocument v3 = Doc(a3, r.seq, "alice");

  // A base_seq for a document that does not exist loses to "absent".
  SyncEvent c1 = MakeEvent("todos", "s2", Json("by", "carol"), 1, kUpdate, 12345);
  ASSERT_TRUE(Write(carol_, c1, &r));
  EXPECT_EQ(r.status, kConflict) << r.Describe();

  ASSERT_NO_FATAL_FAILURE(ExpectConvergence());
  ASSERT_EQ(snapshot_.count("s1"), 1u);
  EXPECT_TRUE(SameDocument(snapshot_["s1"], v3)) << snapshot_["s1"].Describe();
  EXPECT_EQ(snapshot_.count("s2"), 0u);
}

TEST_F(ConflictTest, ClientWinsAcceptsEveryWriteInArrivalOrder) {
  ASSERT_NO_FATAL_FAILURE(StartWith("client-wins"));
  EventResultV r1, r2, r3;
  SyncEvent a7 = MakeEvent("todos", "c1", Json("by", "alice-7"), 7, kInsert, 0);
  SyncEvent b5 = MakeEvent("todos", "c1", Json("by", "bob-5"), 5, kInsert, 0);
  ASSERT_TRUE(Write(alice_, a7, &r1));
  ASSERT_TRUE(Write(bob_, b5, &r2));
  EXPECT_EQ(r1.status, kAccepted) << r1.Describe();
  EXPECT_EQ(r2.status, kAccepted) << r2.Describe();
  SyncEvent c1 = MakeEvent("todos", "c2", Json("by", "carol-9"), 9, kInsert, 0);
  SyncEvent a1 = MakeEvent("todos", "c2", Json("by", "alice-1"), 1, kUpdate, 0);
  ASSERT_TRUE(Write(carol_, c1, &r3));
  ASSERT_TRUE(Write(alice_, a1, &r1));
  EXPECT_EQ(r3.status, kAccepted) << r3.Describe();
  EXPECT_EQ(r1.status, kAccepted) << r1.Describe();

  ASSERT_NO_FATAL_FAILURE(ExpectConvergence());
  EXPECT_TRUE(SameDocument(snapshot_["c1"], Doc(b5, r2.seq, "bob"))) << snapshot_["c1"].Describe();
  EXPECT_TRUE(SameDocument(snapshot_["c2"], Doc(a1, r1.seq, "alice"))) << snapshot_["c2"].Describe();
}

// Many writers racing on a few documents under last-write-wins: whatever the
// arrival order, every replica ends equal to the snapshot, which holds per
// document the highest (hlc, client_id).
TEST_F(ConflictTest, LastWriteWinsConcurrentWritersConverge) {
  ASSERT_NO_FATAL_FAILURE(StartWith("last-write-wins"));
  std::vector<Peer *> writers = {&alice_, &bob_, &carol_};
  std::vector<std::string> failures(writers.size());
  std::vector<std::thread> threads;
  for (size_t w = 0; w < writers.size(); w++) {
    threads.emplace_back([&, w] {
      Peer &p = *writers[w];
      for (int round = 0; round < 30; round++) {
        std::vector<SyncEvent> batch;
        for (int d = 0; d < 4; d++)
          batch.push_back(MakeEvent("todos", "race-" + std::to_string(d),
                                    "{\"by\":\"" + p.id + "\",\"round\":" + std::to_string(round) + "}",
                                    static_cast<uint64_t>((round * 7 + w * 3 + d) % 40), kUpdate));
        PushResultV r;
        AssertionResult a = p.Push(batch, &r);
        if (!a) {
          failures[w] = a.message();
          return;
        }
        for (const auto &x : r.results)
          if (x.status != kAccepted && x.status != kConflict) {
            failures[w] = "unexpected " + x.Describe();
            return;
          }
      }
    });
  }
  for (auto &t : threads) t.join();
  for (size_t w = 0; w < writers.size(); w++) ASSERT_EQ(failures[w], "") << writers[w]->id;
  ASSERT_NO_FATAL_FAILURE(ExpectConvergence());
  // The maximum (hlc, client_id) per document, computed here.
  for (int d = 0; d < 4; d++) {
    std::pair<uint64_t, std::string> best{0, ""};
    for (size_t w = 0; w < writers.size(); w++)
      for (int round = 0; round < 30; round++)
        best = std::max(best, std::make_pair(static_cast<uint64_t>((round * 7 + w * 3 + d) % 40), writers[w]->id));
    const SyncDocument &doc = snapshot_["race-" + std::to_string(d)];
    EXPECT_EQ(doc.hlc, best.first) << doc.Describe();
    EXPECT_EQ(doc.client_id, best.second) << doc.Describe();
  }
}

// ---- 6. bad input ------------------------------------------------------------------------

TEST_F(SyncTest, MessagesBeforeHelloGetHelloRequiredAndSessionContinues) {
  ASSERT_TRUE(StartDaemon());
  SyncClient c;
  ASSERT_TRUE(c.Connect(Client())) << c.last_error();
  ASSERT_TRUE(c.SendSubscribe("todos"));
  EXPECT_TRUE(ExpectError(c, NEBULA__SYNC__V1__ERROR_CODE__ERROR_CODE_HELLO_REQUIRED));
  ASSERT_TRUE(c.SendPush({MakeEvent("todos", "d", Json("a", "b"))}));
  EXPECT_TRUE(ExpectError(c, NEBULA__SYNC__V1__ERROR_CODE__ERROR_CODE_HELLO_REQUIRED));
  ASSERT_TRUE(c.SendUnsubscribe({"todos"}));
  EXPECT_TRUE(ExpectError(c, NEBULA__SYNC__V1__ERROR_CODE__ERROR_CODE_HELLO_REQUIRED));

  ASSERT_TRUE(c.SendHello("late-hello"));
  SyncMessage m;
  ASSERT_TRUE(c.Next(&m)) << c.last_error();
  ASSERT_TRUE(m.is(SyncMessage::kWelcome)) << m.Describe();
  EXPECT_EQ(m.tenant, "default");
  // A second Hello: ALREADY_HELLO, the session goes on.
  ASSERT_TRUE(c.SendHello("late-hello"));
  EXPECT_TRUE(ExpectError(c, NEBULA__SYNC__V1__ERROR_CODE__ERROR_CODE_ALREADY_HELLO));

  CollectionView v("todos");
  ASSERT_TRUE(SubscribeAndSettle(c, v));
  EXPECT_EQ(v.head().seq, 0u) << "the Push before Hello must not have been stored";
  PushResultV r;
  ASSERT_TRUE(c.Push({MakeEvent("todos", "d", Json("a", "b"))}, &r)) << c.last_error();
  EXPECT_TRUE(AllStatus(r, kAccepted));
}

TEST_F(SyncTest, InvalidProtobufAfterHelloGetsInvalidMessageAndSessionContinues) {
  ASSERT_TRUE(StartDaemon());
  SyncClient c;
  ASSERT_TRUE(Open(c, "garbage"));
  const std::string bad[] = {
      std::string("\xff\xff\xff\xff", 4),                 // a key that is no valid field
      std::string("\x22\x05\x08", 3),                     // push field shorter than its length
      std::string("\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 12),  // overlong varint
  };
  for (const auto &b : bad) {
    ASSERT_TRUE(c.SendBinary(b));
    EXPECT_TRUE(ExpectError(c, NEBULA__SYNC__V1__ERROR_CODE__ERROR_CODE_INVALID_MESSAGE));
  }
  CollectionView v("todos");
  ASSERT_TRUE(SubscribeAndSettle(c, v));
  PushResultV r;
  ASSERT_TRUE(c.Push({MakeEvent("todos", "d", Json("a", "b"))}, &r)) << c.last_error();
  EXPECT_TRUE(AllStatus(r, kAccepted));
}

class TokenTest : public SyncTest {
 protected:
  void SetUp() override {
    std::ofstream f(dir_.File("tokens"));
    f << restricted_ << " acme read=todos,public-* write=todos\n"
      << admin_ << " acme read=* write=*\n";
    f.close();
    ASSERT_TRUE(StartDaemon({{"tokens", dir_.File("tokens")}}));
  }
  TempDir dir_{"nebula-sync-tokens"};
  const std::string restricted_ = "restricted-token-000000001";
  const std::string admin_ = "admin-token-00000000000002";
};

TEST_F(TokenTest, PushToCollectionNotWritableIsRejectedAndNothingStored) {
  SyncClient c;
  SyncMessage welcome;
  ASSERT_TRUE(Open(c, "restricted", restricted_, &welcome));
  EXPECT_EQ(welcome.tenant, "acme");
  std::vector<SyncEvent> events = {MakeEvent("todos", "ok-1", Json("a", "1")),
                                   MakeEvent("secret", "nope", Json("a", "2")),
                                   MakeEvent("public-news", "nope", Json("a", "3")),
                                   MakeEvent("todos", "ok-2", Json("a", "4"))};
  PushResultV r;
  ASSERT_TRUE(c.Push(events, &r)) << c.last_error();
  ASSERT_TRUE(ExpectStatus(r, 0, kAccepted));
  EXPECT_EQ(r.results[0].seq, 1u);
  for (size_t i : {1, 2}) {
    ASSERT_TRUE(ExpectStatus(r, i, kRejected));
    EXPECT_FALSE(r.results[i].retryable) << r.results[i].Describe();
    EXPECT_NE(r.results[i].reason.find("forbidden"), std::string::npos) << r.results[i].Describe();
    EXPECT_EQ(r.results[i].seq, 0u);
  }
  ASSERT_TRUE(ExpectStatus(r, 3, kAccepted));
  EXPECT_EQ(r.results[3].seq, 2u);

  for (const char *name : {"secret", "public-news"}) {
    SyncCursor head;
    std::map<std::string, SyncDocument> docs;
    ASSERT_TRUE(FreshSnapshot(name, &head, &docs, admin_));
    EXPECT_EQ(head.seq, 0u) << name;
    EXPECT_TRUE(docs.empty()) << name;
  }
}

TEST_F(TokenTest, SubscribeToCollectionNotReadableIsForbidden) {
  SyncClient c;
  ASSERT_TRUE(Open(c, "restricted", restricted_));
  ASSERT_TRUE(c.SendSubscribe("secret"));
  EXPECT_TRUE(ExpectError(c, NEBULA__SYNC__V1__ERROR_CODE__ERROR_CODE_FORBIDDEN));
  // Readable ones work on the same session, including read-only ones; in one
  // Subscribe, the forbidden collection gets its Error and the others their
  // Subscribed (in any order).
  CollectionView todos("todos"), news("public-news");
  ASSERT_TRUE(c.SendSubscribe({{"todos", std::nullopt}, {"secret", std::nullopt}, {"public-news", std::nullopt}}));
  int errors = 0;
  for (int n = 0; n < 20 && !(todos.snapshot_done() && news.snapshot_done() && errors == 1); n++) {
    SyncMessage m;
    ASSERT_TRUE(c.Next(&m)) << c.last_error();
    if (m.is(SyncMessage::kError)) {
      EXPECT_EQ(m.error_code, NEBULA__SYNC__V1__ERROR_CODE__ERROR_CODE_FORBIDDEN) << m.Describe();
      errors++;
      continue;
    }
    ASSERT_TRUE(todos.Handle(m) || news.Handle(m)) << m.Describe();
  }
  EXPECT_EQ(errors, 1);
  ASSERT_TRUE(todos.snapshot_done());
  ASSERT_TRUE(news.snapshot_done());
  EXPECT_TRUE(todos.errors().empty());
  EXPECT_TRUE(news.errors().empty());
  // Nothing of "secret" arrives when it is written.
  SyncClient admin;
  ASSERT_TRUE(Open(admin, "admin", admin_));
  PushResultV r;
  ASSERT_TRUE(admin.Push({MakeEvent("secret", "s", Json("a", "b"))}, &r)) << admin.last_error();
  ASSERT_TRUE(AllStatus(r, kAccepted));
  SyncMessage extra;
  EXPECT_TRUE(c.QuietFor(300, &extra)) << extra.Describe();
}

TEST_F(TokenTest, BadOrMissingTokenIsUnauthenticatedThenClose1008) {
  for (const std::string &token : {std::string("wrong-token-000000000000"), std::string()}) {
    SCOPED_TRACE(token.empty() ? "no token" : "unknown token");
    SyncClient c;
    ASSERT_TRUE(c.Connect(Client())) << c.last_error();
    ASSERT_TRUE(c.SendHello("intruder", token));
    EXPECT_TRUE(ExpectError(c, NEBULA__SYNC__V1__ERROR_CODE__ERROR_CODE_UNAUTHENTICATED));
    Frame f;
    ASSERT_EQ(c.ws().ReadFrame(&f), ReadResult::kOk) << c.ws().last_error();
    EXPECT_TRUE(f.is_close()) << f.Describe();
    EXPECT_EQ(f.close_code(), 1008) << f.Describe();
    EXPECT_EQ(c.ws().WaitForEof(), ReadResult::kEof);
  }
}

TEST_F(SyncTest, PushWithZeroOrOverThousandEventsIsLimitExceeded) {
  ASSERT_TRUE(StartDaemon());
  SyncClient c;
  ASSERT_TRUE(Open(c, "limits"));
  ASSERT_TRUE(c.SendPush({}));
  EXPECT_TRUE(ExpectError(c, NEBULA__SYNC__V1__ERROR_CODE__ERROR_CODE_LIMIT_EXCEEDED));
  std::vector<SyncEvent> many;
  for (int i = 0; i < 1001; i++) many.push_back(MakeEvent("todos", "d" + std::to_string(i), "{}"));
  ASSERT_TRUE(c.SendPush(many));
  EXPECT_TRUE(ExpectError(c, NEBULA__SYNC__V1__ERROR_CODE__ERROR_CODE_LIMIT_EXCEEDED));
  // Nothing of them was stored; 1000 is fine.
  many.pop_back();
  PushResultV r;
  ASSERT_TRUE(c.Push(many, &r)) << c.last_error();
  ASSERT_TRUE(AllStatus(r, kAccepted));
  EXPECT_EQ(r.results.front().seq, 1u);
  EXPECT_EQ(r.results.back().seq, 1000u);
}

TEST_F(SyncTest, InvalidEventsAreRejectedWithReasonOthersUnaffected) {
  ASSERT_TRUE(StartDaemon());
  Peer watcher("watcher");
  ASSERT_TRUE(Open(watcher));
  ASSERT_TRUE(SubscribeAndSettle(watcher.c, watcher.view));
  SyncClient c;
  ASSERT_TRUE(Open(c, "sloppy"));

  struct Case {
    const char *what;
    SyncEvent event;
    bool valid;
  };
  std::vector<Case> cases;
  cases.push_back({"valid insert", MakeEvent("todos", "good-1", Json("a", "1")), true});
  cases.push_back({"data not JSON", MakeEvent("todos", "bad", "{not json"), false});
  cases.push_back({"data a JSON array", MakeEvent("todos", "bad", "[1,2,3]"), false});
  cases.push_back({"data a JSON string", MakeEvent("todos", "bad", "\"text\""), false});
  cases.push_back({"data empty for an insert", MakeEvent("todos", "bad", ""), false});
  SyncEvent no_id = MakeEvent("todos", "bad", Json("a", "1"));
  no_id.id = "";
  cases.push_back({"missing id", no_id, false});
  cases.push_back({"missing document_id", MakeEvent("todos", "", Json("a", "1")), false});
  cases.push_back({"type UNSPECIFIED", MakeEvent("todos", "bad", Json("a", "1"), 0, kUnspecified), false});
  cases.push_back({"type 7", MakeEvent("todos", "bad", Json("a", "1"), 0, 7), false});
  cases.push_back({"valid update", MakeEvent("todos", "good-1", Json("a", "2"), 5, kUpdate), true});
  cases.push_back({"valid delete without data", MakeEvent("todos", "good-1", "", 6, kDelete), true});
  cases.push_back({"valid insert after the bad ones", MakeEvent("todos", "good-2", "{}"), true});

  std::vector<SyncEvent> events;
  for (const auto &k : cases) events.push_back(k.event);
  PushResultV r;
  ASSERT_TRUE(c.Push(events, &r)) << c.last_error();
  uint64_t next_seq = 1;
  std::vector<std::string> accepted_ids;
  for (size_t i = 0; i < cases.size(); i++) {
    SCOPED_TRACE(cases[i].what);
    if (cases[i].valid) {
      ASSERT_TRUE(ExpectStatus(r, i, kAccepted));
      EXPECT_EQ(r.results[i].seq, next_seq++);
      accepted_ids.push_back(events[i].id);
    } else {
      ASSERT_TRUE(ExpectStatus(r, i, kRejected));
      EXPECT_FALSE(r.results[i].retryable);
      EXPECT_FALSE(r.results[i].reason.empty());
      EXPECT_EQ(r.results[i].seq, 0u);
    }
  }
  // The subscriber gets exactly the accepted ones.
  ASSERT_TRUE(watcher.CatchUpTo(accepted_ids.size(), kTimeoutMs));
  ASSERT_EQ(watcher.view.received().size(), accepted_ids.size());
  for (size_t i = 0; i < accepted_ids.size(); i++) EXPECT_EQ(watcher.view.received()[i].id, accepted_ids[i]);
  SyncMessage extra;
  EXPECT_TRUE(watcher.c.QuietFor(300, &extra)) << extra.Describe();
  SyncCursor head;
  std::map<std::string, SyncDocument> docs;
  ASSERT_TRUE(FreshSnapshot("todos", &head, &docs));
  EXPECT_EQ(head.seq, accepted_ids.size());
  EXPECT_EQ(docs.size(), 1u);  // good-1 deleted, good-2 remains
  EXPECT_EQ(docs.count("good-2"), 1u);
}

TEST_F(SyncTest, SubscribeWithInvalidCollectionNameIsInvalidRequest) {
  ASSERT_TRUE(StartDaemon());
  SyncClient c;
  ASSERT_TRUE(Open(c, "names"));
  for (const std::string &name : {std::string(), std::string(129, 'x'), std::string("bad\x01name"),
                                 std::string("tab\tname")}) {
    SCOPED_TRACE("collection name of " + std::to_string(name.size()) + " bytes");
    ASSERT_TRUE(c.SendSubscribe(name));
    EXPECT_TRUE(ExpectError(c, NEBULA__SYNC__V1__ERROR_CODE__ERROR_CODE_INVALID_REQUEST));
  }
  // 128 bytes is fine.
  CollectionView v(std::string(128, 'x'));
  ASSERT_TRUE(SubscribeAndSettle(c, v));
  EXPECT_EQ(v.mode(), kSnapshot);
}

// ---- 7. slow consumer -------------------------------------------------------------------

// A subscriber that stops reading while others push a lot is not dropped: the
// broker stops feeding it live, and once it reads again it gets every event
// exactly once, in order (from storage), then live events.
TEST_F(SyncTest, SlowConsumerIsNotDroppedAndCatchesUpExactlyOnce) {
  // The idle timeout also bounds how long a socket may accept no bytes; this
  // test's pause must stay below it, also on slow (sanitizer) builds.
  ASSERT_TRUE(StartDaemon({{"workers", "2"}, {"idle-timeout", "120"}}));
  constexpr int kTotal = NEBULA_TEST_SANITIZED ? 10000 : 20000;
  constexpr int kPushers = 2, kBatch = 100;
  const std::string pad(1000, 'p');
  // Small, so that the server's output backs up early, but not below the
  // 64 KiB window the SYN already advertised (the buffer can only be set
  // after connect here): a smaller one makes the kernel drop in-flight
  // segments, and the sender's retransmission backoff then stalls the
  // connection for many seconds once the client reads again.
  constexpr int kSlowReceiveBuffer = 64 * 1024;

  Peer slow("slow");
  SyncMessage welcome;
  ASSERT_TRUE(Open(slow.c, slow.id, "", &welcome, kSlowReceiveBuffer));
  ASSERT_TRUE(SubscribeAndSettle(slow.c, slow.view));
  Peer live("live-reader");
  ASSERT_TRUE(Open(live));
  ASSERT_TRUE(SubscribeAndSettle(live.c, live.view));

  std::vector<std::unique_ptr<Peer>> pushers;
  for (int i = 0; i < kPushers; i++) {
    pushers.push_back(std::make_unique<Peer>("pusher-" + std::to_string(i)));
    ASSERT_TRUE(Open(*pushers.back()));
  }
  std::mutex mu;
  SeqIds ids;
  std::vector<std::string> failures(kPushers + 1);
  std::vector<std::thread> threads;
  for (int i = 0; i < kPushers; i++) {
    threads.emplace_back([&, i] {
      Peer &p = *pushers[i];
      for (int start = 0; start < kTotal / kPushers; start += kBatch) {
        std::vector<SyncEvent> batch;
        for (int k = start; k < start + kBatch; k++)
          batch.push_back(MakeEvent("todos", p.id + "-" + std::to_string(k),
                                    "{\"n\":" + std::to_string(k) + ",\"pad\":\"" + pad + "\"}",
                                    static_cast<uint64_t>(k + 1)));
        PushResultV r;
        if (!p.c.Push(batch, &r)) {
          failures[i] = p.c.last_error();
          return;
        }
        std::lock_guard<std::mutex> lock(mu);
        for (const auto &x : r.results) {
          if (x.status != kAccepted) {
            failures[i] = x.Describe();
            return;
          }
          ids[x.seq] = x.event_id;
        }
      }
    });
  }
  // Another subscriber keeps reading meanwhile, so live fan-out goes on.
  threads.emplace_back([&] {
    AssertionResult a = live.CatchUpTo(kTotal, kLongMs);
    if (!a) failures[kPushers] = a.message();
  });
  for (auto &t : threads) t.join();
  for (const auto &f : failures) ASSERT_EQ(f, "");
  ASSERT_EQ(ids.size(), static_cast<size_t>(kTotal));

  // Now the slow one reads (with a normal buffer again, so reading is not
  // slowed by a tiny TCP window): still connected, everything once, in order.
  int normal = 1 << 20;
  ASSERT_EQ(setsockopt(slow.c.ws().fd(), SOL_SOCKET, SO_RCVBUF, &normal, sizeof normal), 0);
  ASSERT_TRUE(slow.CatchUpTo(kTotal, kLongMs));
  ASSERT_EQ(slow.view.received().size(), static_cast<size_t>(kTotal));
  for (size_t k = 0; k < slow.view.received().size(); k++) {
    const SyncEvent &e = slow.view.received()[k];
    ASSERT_EQ(e.seq, k + 1);
    ASSERT_EQ(e.id, ids[e.seq]) << "seq " << e.seq;
  }
  RecordProperty("slow_events_messages", static_cast<int>(slow.view.events_messages()));
  // And it is live again.
  PushResultV r;
  SyncEvent last = MakeEvent("todos", "after", "{}");
  ASSERT_TRUE(pushers[0]->c.Push({last}, &r)) << pushers[0]->c.last_error();
  ASSERT_TRUE(AllStatus(r, kAccepted));
  ASSERT_TRUE(slow.CatchUpTo(kTotal + 1, kTimeoutMs));
  EXPECT_EQ(slow.view.received().back().id, last.id);
  ASSERT_TRUE(live.CatchUpTo(kTotal + 1, kTimeoutMs));
  EXPECT_EQ(live.view.received().size(), static_cast<size_t>(kTotal + 1));
}

// With --slow-consumer close, a subscriber that stops reading is closed with
// 1008 once its unsent output passes --max-output-buffer; readers are not.
TEST_F(SyncTest, SlowConsumerIsClosedWith1008WhenSoConfigured) {
  ASSERT_TRUE(StartDaemon({{"workers", "2"},
                           {"idle-timeout", "120"},
                           {"slow-consumer", "close"},
                           {"max-output-buffer", "65536"}}));
  Peer slow("slow");
  SyncMessage welcome;
  ASSERT_TRUE(Open(slow.c, slow.id, "", &welcome, 64 * 1024));
  ASSERT_TRUE(SubscribeAndSettle(slow.c, slow.view));
  Peer live("live-reader");
  ASSERT_TRUE(Open(live));
  ASSERT_TRUE(SubscribeAndSettle(live.c, live.view));
  Peer pusher("pusher");
  ASSERT_TRUE(Open(pusher));
  const std::string pad(1000, 'p');
  constexpr int kTotal = 4000;   // 4 MB: far past both socket buffers and the cap
  for (int start = 0; start < kTotal; start += 100) {
    std::vector<SyncEvent> batch;
    for (int k = start; k < start + 100; k++)
      batch.push_back(MakeEvent("todos", "e" + std::to_string(k),
                                "{\"pad\":\"" + pad + "\"}", static_cast<uint64_t>(k + 1)));
    PushResultV r;
    ASSERT_TRUE(pusher.c.Push(batch, &r)) << pusher.c.last_error();
    ASSERT_TRUE(AllStatus(r, kAccepted));
    ASSERT_TRUE(live.CatchUpTo(static_cast<uint64_t>(start + 100), kLongMs));
  }
  // The slow one now reads what was queued for it, then the close.
  int normal = 1 << 20;
  ASSERT_EQ(setsockopt(slow.c.ws().fd(), SOL_SOCKET, SO_RCVBUF, &normal, sizeof normal), 0);
  bool closed = false;
  for (int frames = 0; frames < 100000 && !closed; frames++) {
    Frame f;
    ReadResult rr = slow.c.ws().ReadFrame(&f);
    ASSERT_EQ(rr, ReadResult::kOk) << slow.c.ws().last_error();
    if (f.is_close()) {
      EXPECT_EQ(f.close_code(), 1008) << f.Describe();
      closed = true;
    }
  }
  EXPECT_TRUE(closed) << "the slow subscriber was never closed";
  EXPECT_EQ(live.view.received().size(), static_cast<size_t>(kTotal));
}

// /metrics counts what operators watch for the sync path: accepted and
// rejected pushed events, deliveries to subscribers.
TEST_F(SyncTest, MetricsCountAcceptedRejectedAndDeliveredEvents) {
  ASSERT_TRUE(StartDaemon({{"workers", "2"}}));
  Peer a("reader-a"), b("reader-b"), pusher("pusher");
  for (Peer *p : {&a, &b, &pusher}) ASSERT_TRUE(Open(*p));
  ASSERT_TRUE(SubscribeAndSettle(a.c, a.view));
  ASSERT_TRUE(SubscribeAndSettle(b.c, b.view));
  std::vector<SyncEvent> batch;
  for (int k = 0; k < 10; k++) batch.push_back(MakeEvent("todos", "m" + std::to_string(k), "{}"));
  batch.push_back(MakeEvent("todos", "bad", "not json"));
  PushResultV r;
  ASSERT_TRUE(pusher.c.Push(batch, &r)) << pusher.c.last_error();
  ASSERT_TRUE(a.CatchUpTo(10, kTimeoutMs));
  ASSERT_TRUE(b.CatchUpTo(10, kTimeoutMs));
  HttpGetResult m = Admin("/metrics");
  ASSERT_EQ(m.status, 200) << m.error;
  std::vector<MetricSample> samples = ParseMetrics(m.body);
  EXPECT_EQ(SumMetric(samples, "nebula_events_accepted_total"), 10);
  EXPECT_EQ(SumMetric(samples, "nebula_events_rejected_total"), 1);
  EXPECT_EQ(SumMetric(samples, "nebula_deliveries_total"), 20) << "10 events to each of 2 readers";
  EXPECT_EQ(SumMetric(samples, "nebula_ring_overruns_total"), 0);
  EXPECT_EQ(CountMetric(samples, "nebula_slow_consumers_total"), 2u) << "one sample per worker";
}

// ---- 8. unsubscribe --------------------------------------------------------------------

TEST_F(SyncTest, UnsubscribeStopsDeliveryAndResubscribeReplaysTheGap) {
  ASSERT_TRUE(StartDaemon());
  Peer s("subscriber", "a");
  CollectionView b("b"), sync_point("sync-point");
  Peer pusher("pusher");
  ASSERT_TRUE(Open(s));
  ASSERT_TRUE(Open(pusher));
  ASSERT_TRUE(SubscribeAndSettle(s.c, s.view));
  ASSERT_TRUE(SubscribeAndSettle(s.c, b));

  PushResultV r;
  ASSERT_TRUE(pusher.c.Push({MakeEvent("a", "1", "{}"), MakeEvent("a", "2", "{}")}, &r)) << pusher.c.last_error();
  ASSERT_TRUE(s.CatchUpTo(2, kTimeoutMs));
  SyncCursor cursor = s.view.tracker().Get();

  ASSERT_TRUE(s.c.SendUnsubscribe({"a"}));
  // Unsubscribe has no answer; a later Subscribe's answer shows it was handled.
  ASSERT_TRUE(SubscribeAndSettle(s.c, sync_point));

  ASSERT_TRUE(pusher.c.Push({MakeEvent("a", "3", "{}"), MakeEvent("a", "4", "{}"), MakeEvent("a", "5", "{}")}, &r))
      << pusher.c.last_error();
  ASSERT_TRUE(AllStatus(r, kAccepted));
  ASSERT_TRUE(pusher.c.Push({MakeEvent("b", "1", "{}")}, &r)) << pusher.c.last_error();
  ASSERT_TRUE(ReadUntil(s.c, {&s.view, &b}, [&] { return b.tracker().seq() >= 1; }, kTimeoutMs));
  SyncMessage extra;
  EXPECT_TRUE(s.c.QuietFor(500, &extra)) << "after Unsubscribe: " << extra.Describe();
  EXPECT_EQ(s.view.received().size(), 2u);

  // Subscribing again from the saved cursor replays what was missed.
  ASSERT_TRUE(SubscribeAndSettle(s.c, s.view, cursor));
  EXPECT_EQ(s.view.mode(), kReplay);
  ASSERT_TRUE(s.CatchUpTo(5, kTimeoutMs));
  ASSERT_EQ(s.view.received().size(), 3u);
  EXPECT_EQ(s.view.received()[0].seq, 3u);
}

}  // namespace
}  // namespace nebula_test
