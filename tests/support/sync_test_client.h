// sync_test_client: a thin nebula-sync.v1 protocol layer over WsClient for
// integration tests.
//
// Plain C++ value types for the protocol's messages (decoded from, and
// encoded to, the protobuf-c structs of proto/nebula_sync.proto), a blocking
// SyncClient (Hello, Subscribe, Unsubscribe, Push, and "read the next
// ServerMessage", answering pings on the way), a cursor tracker that follows
// the rule of docs/PROTOCOL.md ("Push and results"), and a replica that
// applies events to a document map. The tracker and the replica are written
// here independently of client/cursor_tracker.c, so a bug there cannot hide
// one in the broker. Every wait is bounded.
#ifndef NEBULA_TESTS_SYNC_TEST_CLIENT_H
#define NEBULA_TESTS_SYNC_TEST_CLIENT_H

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "nebula_sync.pb-c.h"
#include "ws_test_client.h"

namespace nebula_test {

// ---- value types ------------------------------------------------------------------

enum EventType : int {
  kUnspecified = NEBULA__SYNC__V1__EVENT_TYPE__EVENT_TYPE_UNSPECIFIED,
  kInsert = NEBULA__SYNC__V1__EVENT_TYPE__EVENT_TYPE_INSERT,
  kUpdate = NEBULA__SYNC__V1__EVENT_TYPE__EVENT_TYPE_UPDATE,
  kDelete = NEBULA__SYNC__V1__EVENT_TYPE__EVENT_TYPE_DELETE,
};

enum PushStatus : int {
  kStatusUnspecified = NEBULA__SYNC__V1__PUSH_STATUS__PUSH_STATUS_UNSPECIFIED,
  kAccepted = NEBULA__SYNC__V1__PUSH_STATUS__PUSH_STATUS_ACCEPTED,
  kDuplicate = NEBULA__SYNC__V1__PUSH_STATUS__PUSH_STATUS_DUPLICATE,
  kConflict = NEBULA__SYNC__V1__PUSH_STATUS__PUSH_STATUS_CONFLICT,
  kRejected = NEBULA__SYNC__V1__PUSH_STATUS__PUSH_STATUS_REJECTED,
};
const char *PushStatusName(int status);

enum SubscribeMode : int {
  kModeUnspecified = NEBULA__SYNC__V1__SUBSCRIBE_MODE__SUBSCRIBE_MODE_UNSPECIFIED,
  kReplay = NEBULA__SYNC__V1__SUBSCRIBE_MODE__SUBSCRIBE_MODE_REPLAY,
  kSnapshot = NEBULA__SYNC__V1__SUBSCRIBE_MODE__SUBSCRIBE_MODE_SNAPSHOT,
};
const char *SubscribeModeName(int mode);
// Every ErrorCode of the proto (ErrorCodeName in ws_test_client.h knows only
// the transport's).
const char *SyncErrorCodeName(int code);

struct SyncCursor {
  uint64_t seq = 0;
  std::string epoch;
  bool operator==(const SyncCursor &o) const { return seq == o.seq && epoch == o.epoch; }
  std::string Describe() const;
};

struct SyncEvent {
  std::string id;
  int type = kInsert;
  std::string collection;
  std::string document_id;
  std::string data;  // bytes: JSON of the document, empty for DELETE
  int64_t timestamp = 0;
  uint64_t hlc = 0;
  std::string client_id;
  uint64_t base_seq = 0;
  uint64_t seq = 0;
  std::string Describe() const;
};

struct SyncDocument {
  std::string collection;
  std::string document_id;
  std::string data;
  uint64_t seq = 0;
  uint64_t hlc = 0;
  std::string client_id;
  bool deleted = false;
  std::string Describe() const;
};

struct EventResultV {
  std::string event_id;
  int status = kStatusUnspecified;
  uint64_t seq = 0;
  std::optional<SyncDocument> winner;
  std::string reason;
  bool retryable = false;
  std::string Describe() const;
};

struct PushResultV {
  uint64_t request_id = 0;
  std::vector<EventResultV> results;
  std::string Describe() const;
};

// One decoded ServerMessage; `kind` says which part is filled.
struct SyncMessage {
  enum Kind { kNone, kWelcome, kError, kSubscribed, kEvents, kSnapshot, kPushResult };
  Kind kind = kNone;
  // Welcome
  std::string session_id, tenant, server_version;
  uint64_t server_time_ms = 0;
  uint32_t heartbeat_interval_ms = 0;
  uint32_t max_message_size = 0;
  // Error
  int error_code = 0;
  std::string error_message;
  // Subscribed / Events / Snapshot
  std::string collection;
  int mode = kModeUnspecified;   // Subscribed
  SyncCursor head;               // Subscribed
  bool has_head = false;
  std::vector<SyncEvent> events;        // Events
  std::vector<SyncDocument> documents;  // Snapshot
  SyncCursor cursor;                    // Snapshot
  bool has_cursor = false;
  bool last = false;                    // Snapshot
  // PushResult
  PushResultV push_result;

  bool is(Kind k) const { return kind == k; }
  std::string Describe() const;  // short, for assertion messages
};

// Converts a decoded protobuf-c message (nullptr: kind kNone).
SyncMessage ToSyncMessage(const Nebula__Sync__V1__ServerMessage *m);

// ---- encoders (ClientMessage bytes) ------------------------------------------------

struct SubscribeSpec {
  std::string collection;
  std::optional<SyncCursor> cursor;  // absent: snapshot
};

std::string EncodeHelloMessage(const std::string &client_id, const std::string &auth_token = "",
                               const std::string &client_version = "");
std::string EncodeSubscribe(const std::vector<SubscribeSpec> &collections);
std::string EncodeUnsubscribe(const std::vector<std::string> &collections);
std::string EncodePush(uint64_t request_id, const std::vector<SyncEvent> &events);

// A random RFC 4122 version-4 UUID string.
std::string NewUuid();

// An event with a fresh UUID id; data is the JSON text given (empty for a
// DELETE), timestamp the wall clock.
SyncEvent MakeEvent(const std::string &collection, const std::string &document_id, const std::string &json,
                    uint64_t hlc = 0, int type = kInsert, uint64_t base_seq = 0);

// ---- cursor tracker ---------------------------------------------------------------------

// The cursor rule of docs/PROTOCOL.md: the stored cursor is the highest seq S
// such that every seq <= S was seen as an Events entry, as one of our own
// ACCEPTED/DUPLICATE results, or covered by a snapshot. Unbounded (a
// std::set of seqs above S): tests want exact answers, not a bounded memory.
class CursorTracker {
 public:
  // Records seq as seen; true when it was not seen before (seq 0: false).
  bool Observe(uint64_t seq);
  bool Seen(uint64_t seq) const { return seq != 0 && (seq <= s_ || above_.count(seq) != 0); }
  // Subscribing from a saved cursor.
  void Start(const SyncCursor &c);
  // The server named the epoch (Subscribed.head): a different known epoch
  // resets S and forgets everything above it. True when it changed.
  bool SetEpoch(const std::string &epoch);
  // The final Snapshot page: S = seq exactly; seqs above stay.
  void SnapshotDone(const SyncCursor &c);
  SyncCursor Get() const { return SyncCursor{s_, epoch_}; }
  uint64_t seq() const { return s_; }
  const std::string &epoch() const { return epoch_; }
  size_t pending() const { return above_.size(); }

 private:
  void Fold();
  uint64_t s_ = 0;
  std::string epoch_;
  std::set<uint64_t> above_;
};

// ---- replica ----------------------------------------------------------------------------

// Documents as a client holds them: per document the version with the
// highest seq (events of one collection are totally ordered by seq).
class Replica {
 public:
  // An event from Events, or one of our own with the seq of its result.
  void Apply(const SyncEvent &e);
  // A snapshot: replaces everything (documents = the pages' documents).
  void Reset(const std::vector<SyncDocument> &documents);
  // Non-deleted documents by id.
  std::map<std::string, SyncDocument> Live() const;
  const std::map<std::string, SyncDocument> &all() const { return docs_; }

 private:
  std::map<std::string, SyncDocument> docs_;  // deleted ones kept as tombstones
};

// ---- client -------------------------------------------------------------------------------

struct SyncOpenOptions {
  std::string client_id = "test-client";
  std::string auth_token;
  // SO_RCVBUF for the socket, set right after connect (0: leave it).
  int receive_buffer = 0;
};

class SyncClient {
 public:
  SyncClient() = default;
  SyncClient(const SyncClient &) = delete;
  SyncClient &operator=(const SyncClient &) = delete;

  // Connect, upgrade, Hello, and read the Welcome (optional out). False with
  // last_error() on anything else (an Error answer is described there).
  bool Open(const ConnectOptions &opts, const SyncOpenOptions &o = {}, SyncMessage *welcome = nullptr);
  // Connect and upgrade only (Hello up to the test).
  bool Connect(const ConnectOptions &opts, int receive_buffer = 0);

  bool SendHello(const std::string &client_id, const std::string &auth_token = "");
  bool SendSubscribe(const std::vector<SubscribeSpec> &collections);
  bool SendSubscribe(const std::string &collection, std::optional<SyncCursor> cursor = std::nullopt) {
    return SendSubscribe({SubscribeSpec{collection, std::move(cursor)}});
  }
  bool SendUnsubscribe(const std::vector<std::string> &collections);
  // Sends a Push; request_id 0 picks the next id (returned in *request_id).
  bool SendPush(const std::vector<SyncEvent> &events, uint64_t *request_id = nullptr, uint64_t id = 0);
  bool SendBinary(const std::string &bytes);

  // The next ServerMessage: first those set aside by WaitFor, then from the
  // socket. Pings are answered with pongs and pongs ignored on the way; any
  // other frame (close, text, fragments) or an undecodable message is a
  // failure (false, last_error()).
  bool Next(SyncMessage *out, int timeout_ms = kTimeoutMs);
  // Reads until a message satisfying pred arrives; the others are set aside
  // in order for Next. False on timeout/EOF/error.
  bool WaitFor(const std::function<bool(const SyncMessage &)> &pred, SyncMessage *out,
               int timeout_ms = kTimeoutMs);
  // The PushResult of request_id (other messages set aside).
  bool WaitPushResult(uint64_t request_id, PushResultV *out, int timeout_ms = kTimeoutMs);
  // SendPush + WaitPushResult; checks one result per event, ids in order.
  bool Push(const std::vector<SyncEvent> &events, PushResultV *out, int timeout_ms = kTimeoutMs);

  // The messages set aside by WaitFor, oldest first.
  std::deque<SyncMessage> &pending() { return pending_; }
  // True when nothing (no message, no EOF) arrives for ms (set-aside
  // messages count as arrived). *got receives what came instead.
  bool QuietFor(int ms, SyncMessage *got = nullptr);

  void Close() { ws_.Close(); }
  bool connected() const { return ws_.connected(); }
  WsClient &ws() { return ws_; }
  const std::string &last_error() const { return error_; }

 private:
  bool Fail(const std::string &msg) {
    error_ = msg;
    return false;
  }
  bool ReadOne(SyncMessage *out, int64_t deadline_ms);

  WsClient ws_;
  std::deque<SyncMessage> pending_;
  std::string error_;
  uint64_t next_request_id_ = 1;
};

// ---- a subscriber's view of one collection -----------------------------------------

// Follows one collection for one client: Subscribed, snapshot pages, Events,
// and the client's own push results; feeds a CursorTracker and a Replica and
// checks the protocol's ordering promises as messages arrive. Violations are
// collected as text (errors()), never thrown, so threads can use it.
class CollectionView {
 public:
  explicit CollectionView(std::string collection) : collection_(std::move(collection)) {}

  // Handles a message of this collection (others are ignored; returns false
  // for them). Subscribed resets the state; Snapshot pages accumulate until
  // the last one.
  bool Handle(const SyncMessage &m);
  // Our own push: each ACCEPTED/DUPLICATE result (of this collection's
  // events) is seen, and ACCEPTED ones are applied to the replica.
  // ACCEPTED seqs that had already been received as Events count in
  // own_seen_before() (possible only while catching up from storage, which
  // includes one's own events).
  void HandleOwn(const std::vector<SyncEvent> &pushed, const PushResultV &r);
  // The client_id the server stamps on our own events (for the replica).
  void set_client_id(std::string id) { client_id_ = std::move(id); }
  size_t own_seen_before() const { return own_seen_before_; }

  const std::string &collection() const { return collection_; }
  bool subscribed() const { return subscribed_; }
  int mode() const { return mode_; }
  const SyncCursor &head() const { return head_; }
  bool snapshot_done() const { return snapshot_done_; }
  const std::vector<SyncDocument> &snapshot_documents() const { return snapshot_docs_; }
  const SyncCursor &snapshot_cursor() const { return snapshot_cursor_; }
  size_t snapshot_pages() const { return snapshot_pages_; }
  // Events entries in arrival order (since the last Subscribed).
  const std::vector<SyncEvent> &received() const { return received_; }
  size_t events_messages() const { return events_messages_; }
  CursorTracker &tracker() { return tracker_; }
  const CursorTracker &tracker() const { return tracker_; }
  Replica &replica() { return replica_; }
  const std::vector<std::string> &errors() const { return errors_; }

 private:
  void Error(const std::string &e) {
    if (errors_.size() < 50) errors_.push_back(e);
  }

  std::string collection_;
  std::string client_id_;
  size_t own_seen_before_ = 0;
  bool subscribed_ = false;
  int mode_ = kModeUnspecified;
  SyncCursor head_;
  bool snapshot_done_ = false;
  std::vector<SyncDocument> snapshot_docs_;
  size_t snapshot_pages_ = 0;
  SyncCursor snapshot_cursor_;
  std::vector<SyncEvent> received_;
  size_t events_messages_ = 0;
  uint64_t last_event_seq_ = 0;
  CursorTracker tracker_;
  Replica replica_;
  std::vector<std::string> errors_;
};

// Subscribes (without cursor unless given) and reads until the subscription
// is established: Subscribed, then for SNAPSHOT every page up to last=true.
// Other messages are set aside. The view receives them.
::testing::AssertionResult SubscribeAndSettle(SyncClient &c, CollectionView &view,
                                              std::optional<SyncCursor> cursor = std::nullopt,
                                              int timeout_ms = kTimeoutMs);

// Reads messages into the views until done() holds (checked after every
// message and before the first read). Messages of no view are kept in
// *others when given, else they fail. Bounded by timeout_ms overall.
::testing::AssertionResult ReadUntil(SyncClient &c, const std::vector<CollectionView *> &views,
                                     const std::function<bool()> &done, int timeout_ms,
                                     std::vector<SyncMessage> *others = nullptr);

}  // namespace nebula_test

#endif
