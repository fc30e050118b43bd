// sync_test_client: see sync_test_client.h.
#include "sync_test_client.h"

#include <openssl/rand.h>
#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <sstream>

namespace nebula_test {

using ::testing::AssertionFailure;
using ::testing::AssertionResult;
using ::testing::AssertionSuccess;

namespace {

std::string Str(const char *s) { return s ? std::string(s) : std::string(); }
std::string Bytes(const ProtobufCBinaryData &b) {
  return b.len ? std::string(reinterpret_cast<const char *>(b.data), b.len) : std::string();
}

// Short printable form of bytes for messages.
std::string Printable(const std::string &s, size_t max = 80) {
  std::string out;
  for (size_t i = 0; i < s.size() && i < max; i++) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7F) {
      out.push_back(static_cast<char>(c));
    } else {
      char buf[8];
      snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  if (s.size() > max) out += "...(" + std::to_string(s.size()) + " bytes)";
  return out;
}

SyncCursor FromCursor(const Nebula__Sync__V1__Cursor *c) {
  SyncCursor out;
  if (c) {
    out.seq = c->seq;
    out.epoch = Str(c->epoch);
  }
  return out;
}

SyncDocument FromDocument(const Nebula__Sync__V1__Document *d) {
  SyncDocument out;
  out.collection = Str(d->collection);
  out.document_id = Str(d->document_id);
  out.data = Bytes(d->data);
  out.seq = d->seq;
  out.hlc = d->hlc;
  out.client_id = Str(d->client_id);
  out.deleted = d->deleted;
  return out;
}

SyncEvent FromEvent(const Nebula__Sync__V1__Event *e) {
  SyncEvent out;
  out.id = Str(e->id);
  out.type = e->type;
  out.collection = Str(e->collection);
  out.document_id = Str(e->document_id);
  out.data = Bytes(e->data);
  out.timestamp = e->timestamp;
  out.hlc = e->hlc;
  out.client_id = Str(e->client_id);
  out.base_seq = e->base_seq;
  out.seq = e->seq;
  return out;
}

std::string Pack(const Nebula__Sync__V1__ClientMessage *msg) {
  std::string out(nebula__sync__v1__client_message__get_packed_size(msg), '\0');
  if (!out.empty()) nebula__sync__v1__client_message__pack(msg, reinterpret_cast<uint8_t *>(&out[0]));
  return out;
}

char *C(const std::string &s) { return const_cast<char *>(s.c_str()); }

int64_t WallMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

// ---- names and descriptions ---------------------------------------------------------

const char *PushStatusName(int status) {
  switch (status) {
    case kStatusUnspecified: return "UNSPECIFIED";
    case kAccepted: return "ACCEPTED";
    case kDuplicate: return "DUPLICATE";
    case kConflict: return "CONFLICT";
    case kRejected: return "REJECTED";
  }
  return "unknown-status";
}

const char *SubscribeModeName(int mode) {
  switch (mode) {
    case kModeUnspecified: return "UNSPECIFIED";
    case kReplay: return "REPLAY";
    case kSnapshot: return "SNAPSHOT";
  }
  return "unknown-mode";
}

const char *SyncErrorCodeName(int code) {
  switch (code) {
    case NEBULA__SYNC__V1__ERROR_CODE__ERROR_CODE_UNSPECIFIED: return "UNSPECIFIED";
    case NEBULA__SYNC__V1__ERROR_CODE__ERROR_CODE_INVALID_MESSAGE: return "INVALID_MESSAGE";
    case NEBULA__SYNC__V1__ERROR_CODE__ERROR_CODE_HELLO_REQUIRED: return "HELLO_REQUIRED";
    case NEBULA__SYNC__V1__ERROR_CODE__ERROR_CODE_UNSUPPORTED: return "UNSUPPORTED";
    case NEBULA__SYNC__V1__ERROR_CODE__ERROR_CODE_UNAUTHENTICATED: return "UNAUTHENTICATED";
    case NEBULA__SYNC__V1__ERROR_CODE__ERROR_CODE_ALREADY_HELLO: return "ALREADY_HELLO";
    case NEBULA__SYNC__V1__ERROR_CODE__ERROR_CODE_FORBIDDEN: return "FORBIDDEN";
    case NEBULA__SYNC__V1__ERROR_CODE__ERROR_CODE_INVALID_REQUEST: return "INVALID_REQUEST";
    case NEBULA__SYNC__V1__ERROR_CODE__ERROR_CODE_STORAGE_UNAVAILABLE: return "STORAGE_UNAVAILABLE";
    case NEBULA__SYNC__V1__ERROR_CODE__ERROR_CODE_LIMIT_EXCEEDED: return "LIMIT_EXCEEDED";
  }
  return "unknown-code";
}

std::string SyncCursor::Describe() const { return "{" + std::to_string(seq) + ", '" + epoch + "'}"; }

std::string SyncEvent::Describe() const {
  std::ostringstream o;
  o << "Event{seq=" << seq << " id='" << id << "' type=" << type << " " << collection << "/" << document_id
    << " hlc=" << hlc << " client='" << client_id << "' base=" << base_seq << " data='" << Printable(data, 40)
    << "'}";
  return o.str();
}

std::string SyncDocument::Describe() const {
  std::ostringstream o;
  o << "Document{" << collection << "/" << document_id << " seq=" << seq << " hlc=" << hlc << " client='"
    << client_id << "'" << (deleted ? " deleted" : "") << " data='" << Printable(data, 60) << "'}";
  return o.str();
}

std::string EventResultV::Describe() const {
  std::string s = "{" + event_id + " " + PushStatusName(status) + " seq=" + std::to_string(seq);
  if (winner) s += " winner=" + winner->Describe();
  if (!reason.empty()) s += " reason='" + reason + "'";
  if (status == kRejected) s += retryable ? " retryable" : " final";
  return s + "}";
}

std::string PushResultV::Describe() const {
  std::string s = "PushResult{request_id=" + std::to_string(request_id) + " [";
  for (size_t i = 0; i < results.size() && i < 12; i++) s += (i ? ", " : "") + results[i].Describe();
  if (results.size() > 12) s += ", ...(" + std::to_string(results.size()) + " results)";
  return s + "]}";
}

std::string SyncMessage::Describe() const {
  std::ostringstream o;
  switch (kind) {
    case kNone: return "(no message)";
    case kWelcome:
      o << "Welcome{session='" << session_id << "' tenant='" << tenant << "'}";
      break;
    case kError:
      o << "Error{" << SyncErrorCodeName(error_code) << " '" << error_message << "'}";
      break;
    case kSubscribed:
      o << "Subscribed{" << collection << " " << SubscribeModeName(mode) << " head="
        << (has_head ? head.Describe() : "(none)") << "}";
      break;
    case kEvents:
      o << "Events{" << collection << " n=" << events.size();
      if (!events.empty()) o << " seqs " << events.front().seq << ".." << events.back().seq;
      o << "}";
      break;
    case kSnapshot:
      o << "Snapshot{" << collection << " docs=" << documents.size() << " last=" << last
        << " cursor=" << (has_cursor ? cursor.Describe() : "(none)") << "}";
      break;
    case kPushResult:
      return push_result.Describe();
  }
  return o.str();
}

SyncMessage ToSyncMessage(const Nebula__Sync__V1__ServerMessage *m) {
  SyncMessage out;
  if (!m) return out;
  switch (m->message_case) {
    case NEBULA__SYNC__V1__SERVER_MESSAGE__MESSAGE_WELCOME:
      out.kind = SyncMessage::kWelcome;
      out.session_id = Str(m->welcome->session_id);
      out.tenant = Str(m->welcome->tenant);
      out.server_version = Str(m->welcome->server_version);
      out.server_time_ms = m->welcome->server_time_ms;
      out.heartbeat_interval_ms = m->welcome->heartbeat_interval_ms;
      out.max_message_size = m->welcome->limits ? m->welcome->limits->max_message_size : 0;
      break;
    case NEBULA__SYNC__V1__SERVER_MESSAGE__MESSAGE_ERROR:
      out.kind = SyncMessage::kError;
      out.error_code = m->error->code;
      out.error_message = Str(m->error->message);
      break;
    case NEBULA__SYNC__V1__SERVER_MESSAGE__MESSAGE_SUBSCRIBED:
      out.kind = SyncMessage::kSubscribed;
      out.collection = Str(m->subscribed->collection);
      out.mode = m->subscribed->mode;
      out.has_head = m->subscribed->head != nullptr;
      out.head = FromCursor(m->subscribed->head);
      break;
    case NEBULA__SYNC__V1__SERVER_MESSAGE__MESSAGE_EVENTS:
      out.kind = SyncMessage::kEvents;
      out.collection = Str(m->events->collection);
      out.events.reserve(m->events->n_events);
      for (size_t i = 0; i < m->events->n_events; i++) out.events.push_back(FromEvent(m->events->events[i]));
      break;
    case NEBULA__SYNC__V1__SERVER_MESSAGE__MESSAGE_SNAPSHOT:
      out.kind = SyncMessage::kSnapshot;
      out.collection = Str(m->snapshot->collection);
      for (size_t i = 0; i < m->snapshot->n_documents; i++)
        out.documents.push_back(FromDocument(m->snapshot->documents[i]));
      out.has_cursor = m->snapshot->cursor != nullptr;
      out.cursor = FromCursor(m->snapshot->cursor);
      out.last = m->snapshot->last;
      break;
    case NEBULA__SYNC__V1__SERVER_MESSAGE__MESSAGE_PUSH_RESULT:
      out.kind = SyncMessage::kPushResult;
      out.push_result.request_id = m->push_result->request_id;
      for (size_t i = 0; i < m->push_result->n_results; i++) {
        const auto *r = m->push_result->results[i];
        EventResultV v;
        v.event_id = Str(r->event_id);
        v.status = r->status;
        v.seq = r->seq;
        if (r->winner) v.winner = FromDocument(r->winner);
        v.reason = Str(r->reason);
        v.retryable = r->retryable;
        out.push_result.results.push_back(std::move(v));
      }
      break;
    default:
      break;
  }
  return out;
}

// ---- encoders -------------------------------------------------------------------------

std::string EncodeHelloMessage(const std::string &client_id, const std::string &auth_token,
                               const std::string &client_version) {
  Nebula__Sync__V1__Hello hello = NEBULA__SYNC__V1__HELLO__INIT;
  hello.client_id = C(client_id);
  hello.auth_token = C(auth_token);
  hello.client_version = C(client_version);
  Nebula__Sync__V1__ClientMessage msg = NEBULA__SYNC__V1__CLIENT_MESSAGE__INIT;
  msg.message_case = NEBULA__SYNC__V1__CLIENT_MESSAGE__MESSAGE_HELLO;
  msg.hello = &hello;
  return Pack(&msg);
}

std::string EncodeSubscribe(const std::vector<SubscribeSpec> &collections) {
  size_t n = collections.size();
  std::vector<Nebula__Sync__V1__CollectionSubscription> subs(n);
  std::vector<Nebula__Sync__V1__CollectionSubscription *> ptrs(n);
  std::vector<Nebula__Sync__V1__Cursor> cursors(n);
  for (size_t i = 0; i < n; i++) {
    nebula__sync__v1__collection_subscription__init(&subs[i]);
    subs[i].collection = C(collections[i].collection);
    if (collections[i].cursor) {
      nebula__sync__v1__cursor__init(&cursors[i]);
      cursors[i].seq = collections[i].cursor->seq;
      cursors[i].epoch = C(collections[i].cursor->epoch);
      subs[i].cursor = &cursors[i];
    }
    ptrs[i] = &subs[i];
  }
  Nebula__Sync__V1__Subscribe sub = NEBULA__SYNC__V1__SUBSCRIBE__INIT;
  sub.n_collections = n;
  sub.collections = ptrs.data();
  Nebula__Sync__V1__ClientMessage msg = NEBULA__SYNC__V1__CLIENT_MESSAGE__INIT;
  msg.message_case = NEBULA__SYNC__V1__CLIENT_MESSAGE__MESSAGE_SUBSCRIBE;
  msg.subscribe = &sub;
  return Pack(&msg);
}

std::string EncodeUnsubscribe(const std::vector<std::string> &collections) {
  std::vector<char *> names;
  for (const auto &c : collections) names.push_back(C(c));
  Nebula__Sync__V1__Unsubscribe unsub = NEBULA__SYNC__V1__UNSUBSCRIBE__INIT;
  unsub.n_collections = names.size();
  unsub.collections = names.data();
  Nebula__Sync__V1__ClientMessage msg = NEBULA__SYNC__V1__CLIENT_MESSAGE__INIT;
  msg.message_case = NEBULA__SYNC__V1__CLIENT_MESSAGE__MESSAGE_UNSUBSCRIBE;
  msg.unsubscribe = &unsub;
  return Pack(&msg);
}

std::string EncodePush(uint64_t request_id, const std::vector<SyncEvent> &events) {
  size_t n = events.size();
  std::vector<Nebula__Sync__V1__Event> evs(n);
  std::vector<Nebula__Sync__V1__Event *> ptrs(n);
  for (size_t i = 0; i < n; i++) {
    const SyncEvent &e = events[i];
    nebula__sync__v1__event__init(&evs[i]);
    evs[i].id = C(e.id);
    evs[i].type = static_cast<Nebula__Sync__V1__EventType>(e.type);
    evs[i].collection = C(e.collection);
    evs[i].document_id = C(e.document_id);
    evs[i].data.data = reinterpret_cast<uint8_t *>(const_cast<char *>(e.data.data()));
    evs[i].data.len = e.data.size();
    evs[i].timestamp = e.timestamp;
    evs[i].hlc = e.hlc;
    evs[i].client_id = C(e.client_id);
    evs[i].base_seq = e.base_seq;
    evs[i].seq = e.seq;
    ptrs[i] = &evs[i];
  }
  Nebula__Sync__V1__Push push = NEBULA__SYNC__V1__PUSH__INIT;
  push.request_id = request_id;
  push.n_events = n;
  push.events = ptrs.data();
  Nebula__Sync__V1__ClientMessage msg = NEBULA__SYNC__V1__CLIENT_MESSAGE__INIT;
  msg.message_case = NEBULA__SYNC__V1__CLIENT_MESSAGE__MESSAGE_PUSH;
  msg.push = &push;
  return Pack(&msg);
}

std::string NewUuid() {
  unsigned char b[16];
  if (RAND_bytes(b, sizeof b) != 1) {
    // Never expected; fall back to something unique in this process.
    static std::atomic<uint64_t> counter{0};
    uint64_t v = ++counter;
    memcpy(b, &v, sizeof v);
    int64_t t = NowMs();
    memcpy(b + 8, &t, sizeof t);
  }
  b[6] = static_cast<unsigned char>((b[6] & 0x0F) | 0x40);
  b[8] = static_cast<unsigned char>((b[8] & 0x3F) | 0x80);
  char out[37];
  snprintf(out, sizeof out, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
           b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
  return out;
}

SyncEvent MakeEvent(const std::string &collection, const std::string &document_id, const std::string &json,
                    uint64_t hlc, int type, uint64_t base_seq) {
  SyncEvent e;
  e.id = NewUuid();
  e.type = type;
  e.collection = collection;
  e.document_id = document_id;
  e.data = type == kDelete ? std::string() : json;
  e.timestamp = WallMs();
  e.hlc = hlc;
  e.base_seq = base_seq;
  return e;
}

// ---- cursor tracker ----------------------------------------------------------------

void CursorTracker::Fold() {
  while (!above_.empty() && *above_.begin() <= s_ + 1) {
    if (*above_.begin() == s_ + 1) s_++;
    above_.erase(above_.begin());
  }
}

bool CursorTracker::Observe(uint64_t seq) {
  if (seq == 0 || Seen(seq)) return false;
  above_.insert(seq);
  Fold();
  return true;
}

void CursorTracker::Start(const SyncCursor &c) {
  if (!epoch_.empty() && !c.epoch.empty() && c.epoch != epoch_) above_.clear();
  epoch_ = c.epoch;
  s_ = c.seq;
  above_.erase(above_.begin(), above_.upper_bound(s_));
  Fold();
}

bool CursorTracker::SetEpoch(const std::string &epoch) {
  if (epoch.empty() || epoch == epoch_) return false;
  bool changed = !epoch_.empty();
  if (changed) {
    s_ = 0;
    above_.clear();
  }
  epoch_ = epoch;
  return changed;
}

void CursorTracker::SnapshotDone(const SyncCursor &c) {
  SetEpoch(c.epoch);
  s_ = c.seq;
  above_.erase(above_.begin(), above_.upper_bound(s_));
  Fold();
}

// ---- replica -------------------------------------------------------------------------

void Replica::Apply(const SyncEvent &e) {
  auto it = docs_.find(e.document_id);
  if (it != docs_.end() && it->second.seq >= e.seq) return;
  SyncDocument d;
  d.collection = e.collection;
  d.document_id = e.document_id;
  d.deleted = e.type == kDelete;
  d.data = d.deleted ? std::string() : e.data;
  d.seq = e.seq;
  d.hlc = e.hlc;
  d.client_id = e.client_id;
  docs_[e.document_id] = std::move(d);
}

void Replica::Reset(const std::vector<SyncDocument> &documents) {
  docs_.clear();
  for (const auto &d : documents) docs_[d.document_id] = d;
}

std::map<std::string, SyncDocument> Replica::Live() const {
  std::map<std::string, SyncDocument> out;
  for (const auto &kv : docs_)
    if (!kv.second.deleted) out.emplace(kv);
  return out;
}

// ---- client ----------------------------------------------------------------------------

bool SyncClient::Connect(const ConnectOptions &opts, int receive_buffer) {
  pending_.clear();
  if (!ws_.Connect(opts)) return Fail("connect: " + ws_.last_error());
  if (receive_buffer > 0 &&
      setsockopt(ws_.fd(), SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer) != 0)
    return Fail(std::string("SO_RCVBUF: ") + strerror(errno));
  HttpResponse resp;
  if (!ws_.Upgrade(UpgradeRequest::Standard(opts.host + ":" + std::to_string(opts.port)), &resp))
    return Fail("upgrade: " + ws_.last_error() + " " + resp.status_line);
  return true;
}

bool SyncClient::Open(const ConnectOptions &opts, const SyncOpenOptions &o, SyncMessage *welcome) {
  if (!Connect(opts, o.receive_buffer)) return false;
  if (!SendHello(o.client_id, o.auth_token)) return false;
  SyncMessage m;
  if (!Next(&m)) return Fail("waiting for Welcome: " + error_);
  if (!m.is(SyncMessage::kWelcome)) return Fail("expected Welcome, got " + m.Describe());
  if (welcome) *welcome = std::move(m);
  return true;
}

bool SyncClient::SendBinary(const std::string &bytes) {
  if (!ws_.SendFrame(kOpBinary, bytes)) return Fail("send: " + ws_.last_error());
  return true;
}

bool SyncClient::SendHello(const std::string &client_id, const std::string &auth_token) {
  return SendBinary(EncodeHelloMessage(client_id, auth_token, "sync-test"));
}

bool SyncClient::SendSubscribe(const std::vector<SubscribeSpec> &collections) {
  return SendBinary(EncodeSubscribe(collections));
}

bool SyncClient::SendUnsubscribe(const std::vector<std::string> &collections) {
  return SendBinary(EncodeUnsubscribe(collections));
}

bool SyncClient::SendPush(const std::vector<SyncEvent> &events, uint64_t *request_id, uint64_t id) {
  if (id == 0) id = next_request_id_++;
  if (request_id) *request_id = id;
  return SendBinary(EncodePush(id, events));
}

bool SyncClient::ReadOne(SyncMessage *out, int64_t deadline_ms) {
  for (;;) {
    int64_t left = deadline_ms - NowMs();
    if (left <= 0) return Fail("timed out waiting for a message");
    Frame f;
    ReadResult r = ws_.ReadFrame(&f, static_cast<int>(left));
    if (r == ReadResult::kTimeout) return Fail("timed out waiting for a message");
    if (r != ReadResult::kOk)
      return Fail(std::string("reading: ") + ToString(r) + (r == ReadResult::kError ? " " + ws_.last_error() : ""));
    if (f.opcode == kOpPing) {
      if (!ws_.SendFrame(kOpPong, f.payload)) return Fail("pong: " + ws_.last_error());
      continue;
    }
    if (f.opcode == kOpPong) continue;
    if (f.opcode != kOpBinary || !f.fin || f.masked || f.rsv)
      return Fail("expected a binary message, got " + f.Describe());
    ServerMessagePtr m = DecodeServerMessage(f.payload);
    if (!m) return Fail("undecodable ServerMessage (" + std::to_string(f.payload.size()) + " bytes)");
    *out = ToSyncMessage(m.get());
    if (out->kind == SyncMessage::kNone) return Fail("ServerMessage with no known field set");
    return true;
  }
}

bool SyncClient::Next(SyncMessage *out, int timeout_ms) {
  if (!pending_.empty()) {
    *out = std::move(pending_.front());
    pending_.pop_front();
    return true;
  }
  return ReadOne(out, NowMs() + timeout_ms);
}

bool SyncClient::WaitFor(const std::function<bool(const SyncMessage &)> &pred, SyncMessage *out,
                         int timeout_ms) {
  for (auto it = pending_.begin(); it != pending_.end(); ++it) {
    if (pred(*it)) {
      *out = std::move(*it);
      pending_.erase(it);
      return true;
    }
  }
  int64_t deadline = NowMs() + timeout_ms;
  for (;;) {
    SyncMessage m;
    if (!ReadOne(&m, deadline)) return false;
    if (pred(m)) {
      *out = std::move(m);
      return true;
    }
    pending_.push_back(std::move(m));
  }
}

bool SyncClient::WaitPushResult(uint64_t request_id, PushResultV *out, int timeout_ms) {
  SyncMessage m;
  bool ok = WaitFor(
      [&](const SyncMessage &x) {
        return (x.is(SyncMessage::kPushResult) && x.push_result.request_id == request_id) ||
               x.is(SyncMessage::kError);
      },
      &m, timeout_ms);
  if (!ok) return Fail("waiting for PushResult " + std::to_string(request_id) + ": " + error_);
  if (m.is(SyncMessage::kError)) return Fail("Push " + std::to_string(request_id) + " answered " + m.Describe());
  *out = std::move(m.push_result);
  return true;
}

bool SyncClient::Push(const std::vector<SyncEvent> &events, PushResultV *out, int timeout_ms) {
  uint64_t id = 0;
  if (!SendPush(events, &id)) return false;
  if (!WaitPushResult(id, out, timeout_ms)) return false;
  if (out->results.size() != events.size())
    return Fail("PushResult has " + std::to_string(out->results.size()) + " results for " +
                std::to_string(events.size()) + " events: " + out->Describe());
  for (size_t i = 0; i < events.size(); i++)
    if (out->results[i].event_id != events[i].id)
      return Fail("result " + std::to_string(i) + " names event '" + out->results[i].event_id + "', pushed '" +
                  events[i].id + "'");
  return true;
}

bool SyncClient::QuietFor(int ms, SyncMessage *got) {
  if (!pending_.empty()) {
    if (got) *got = pending_.front();
    return false;
  }
  SyncMessage m;
  if (ReadOne(&m, NowMs() + ms)) {
    if (got) *got = m;
    pending_.push_back(std::move(m));
    return false;
  }
  // A timeout is quiet; EOF or an error is not.
  return error_.rfind("timed out", 0) == 0;
}

// ---- collection view ---------------------------------------------------------------

bool CollectionView::Handle(const SyncMessage &m) {
  if (m.collection != collection_) return false;
  switch (m.kind) {
    case SyncMessage::kSubscribed:
      subscribed_ = true;
      mode_ = m.mode;
      head_ = m.head;
      if (!m.has_head) Error("Subscribed without head");
      received_.clear();
      events_messages_ = 0;
      snapshot_docs_.clear();
      snapshot_pages_ = 0;
      snapshot_done_ = false;
      if (m.mode == kReplay) {
        // The tracker was started from the cursor we sent.
        if (tracker_.SetEpoch(m.head.epoch)) Error("REPLAY with another epoch than our cursor's");
        last_event_seq_ = tracker_.seq();
        if (tracker_.seq() > m.head.seq)
          Error("REPLAY from cursor " + std::to_string(tracker_.seq()) + " beyond head " + m.head.Describe());
      } else if (m.mode == kSnapshot) {
        last_event_seq_ = 0;
      } else {
        Error("Subscribed with mode " + std::string(SubscribeModeName(m.mode)));
      }
      return true;
    case SyncMessage::kSnapshot:
      if (!subscribed_ || mode_ != kSnapshot) Error("Snapshot page without Subscribed SNAPSHOT");
      if (snapshot_done_) Error("Snapshot page after the last one");
      snapshot_pages_++;
      for (const auto &d : m.documents) {
        if (d.collection != collection_) Error("snapshot document of collection '" + d.collection + "'");
        if (d.deleted) Error("snapshot holds a deleted document: " + d.Describe());
        snapshot_docs_.push_back(d);
      }
      if (m.last) {
        if (!m.has_cursor) Error("last Snapshot page without cursor");
        snapshot_done_ = true;
        snapshot_cursor_ = m.cursor;
        tracker_.SnapshotDone(m.cursor);
        replica_.Reset(snapshot_docs_);
        last_event_seq_ = m.cursor.seq;
      }
      return true;
    case SyncMessage::kEvents:
      events_messages_++;
      if (!subscribed_) Error("Events before Subscribed");
      if (mode_ == kSnapshot && !snapshot_done_) Error("Events before the last Snapshot page");
      if (m.events.empty()) Error("empty Events message");
      for (const auto &e : m.events) {
        if (e.collection != collection_)
          Error("event of collection '" + e.collection + "' in Events of " + collection_);
        if (e.seq <= last_event_seq_)
          Error("seq not increasing: " + std::to_string(e.seq) + " after " + std::to_string(last_event_seq_));
        else
          last_event_seq_ = e.seq;
        if (!tracker_.Observe(e.seq)) Error("seq " + std::to_string(e.seq) + " received twice (or covered)");
        replica_.Apply(e);
        received_.push_back(e);
      }
      return true;
    default:
      return false;
  }
}

void CollectionView::HandleOwn(const std::vector<SyncEvent> &pushed, const PushResultV &r) {
  for (size_t i = 0; i < pushed.size() && i < r.results.size(); i++) {
    if (pushed[i].collection != collection_) continue;
    const EventResultV &res = r.results[i];
    if (res.status != kAccepted && res.status != kDuplicate) continue;
    bool fresh = tracker_.Observe(res.seq);
    if (res.status == kAccepted) {
      if (!fresh) own_seen_before_++;
      SyncEvent e = pushed[i];
      e.seq = res.seq;
      e.client_id = client_id_;
      replica_.Apply(e);
    }
  }
}

AssertionResult SubscribeAndSettle(SyncClient &c, CollectionView &view, std::optional<SyncCursor> cursor,
                                   int timeout_ms) {
  if (cursor) view.tracker().Start(*cursor);
  if (!c.SendSubscribe(view.collection(), cursor)) return AssertionFailure() << c.last_error();
  int64_t deadline = NowMs() + timeout_ms;
  SyncMessage m;
  if (!c.WaitFor(
          [&](const SyncMessage &x) {
            return (x.is(SyncMessage::kSubscribed) && x.collection == view.collection()) || x.is(SyncMessage::kError);
          },
          &m, timeout_ms))
    return AssertionFailure() << "no Subscribed for '" << view.collection() << "': " << c.last_error();
  if (m.is(SyncMessage::kError))
    return AssertionFailure() << "Subscribe '" << view.collection() << "': " << m.Describe();
  view.Handle(m);
  if (m.mode == kSnapshot) {
    while (!view.snapshot_done()) {
      int64_t left = deadline - NowMs();
      if (left <= 0) return AssertionFailure() << "snapshot of '" << view.collection() << "' did not complete";
      if (!c.WaitFor(
              [&](const SyncMessage &x) { return x.is(SyncMessage::kSnapshot) && x.collection == view.collection(); },
              &m, static_cast<int>(left)))
        return AssertionFailure() << "snapshot page of '" << view.collection() << "': " << c.last_error();
      view.Handle(m);
    }
  }
  if (!view.errors().empty())
    return AssertionFailure() << "subscribing '" << view.collection() << "': " << view.errors()[0];
  return AssertionSuccess();
}

AssertionResult ReadUntil(SyncClient &c, const std::vector<CollectionView *> &views, const std::function<bool()> &done,
                          int timeout_ms, std::vector<SyncMessage> *others) {
  int64_t deadline = NowMs() + timeout_ms;
  size_t messages = 0;
  while (!done()) {
    int64_t left = deadline - NowMs();
    if (left <= 0)
      return AssertionFailure() << "condition not reached within " << timeout_ms << " ms (" << messages
                                << " messages read)";
    SyncMessage m;
    if (!c.Next(&m, static_cast<int>(left)))
      return AssertionFailure() << "after " << messages << " messages: " << c.last_error();
    messages++;
    bool handled = false;
    if (m.is(SyncMessage::kSubscribed) || m.is(SyncMessage::kEvents) || m.is(SyncMessage::kSnapshot))
      for (CollectionView *v : views)
        if (v->Handle(m)) {
          handled = true;
          break;
        }
    if (handled) continue;
    if (others)
      others->push_back(std::move(m));
    else
      return AssertionFailure() << "unexpected message: " << m.Describe();
  }
  return AssertionSuccess();
}

}  // namespace nebula_test
