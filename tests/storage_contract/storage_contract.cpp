// storage_contract: the contract tests of sync_storage.h (see the header).
// Each test names the promise it checks and would fail if the storage broke
// it. Policies that belong to one implementation (byte accounting, the exact
// retention rule for unordered timestamps, epochs across instances) are
// tested in that implementation's own file, not here.
#include "storage_contract.h"

#include <algorithm>
#include <cstring>
#include <set>
#include <thread>

namespace storage_contract {

std::string BackendName(const ::testing::TestParamInfo<Backend> &info)
{
    return info.param.name;
}

// ---- owned copies ---------------------------------------------------------

Event insert_event(const std::string &id, const std::string &doc, const std::string &data,
                   uint64_t hlc, const std::string &client)
{
    Event e;
    e.id = id;
    e.type = SYNC_EVENT_INSERT;
    e.document_id = doc;
    e.data = data;
    e.hlc = hlc;
    e.client_id = client;
    return e;
}

Event update_event(const std::string &id, const std::string &doc, const std::string &data,
                   uint64_t hlc, const std::string &client)
{
    Event e = insert_event(id, doc, data, hlc, client);
    e.type = SYNC_EVENT_UPDATE;
    return e;
}

Event delete_event(const std::string &id, const std::string &doc, uint64_t hlc,
                   const std::string &client)
{
    Event e = insert_event(id, doc, "", hlc, client);
    e.type = SYNC_EVENT_DELETE;
    return e;
}

sync_event view(const Event &e)
{
    sync_event v{};
    v.id = e.id.c_str();
    v.type = e.type;
    v.document_id = e.document_id.c_str();
    v.data = e.data.empty() ? nullptr : reinterpret_cast<const uint8_t *>(e.data.data());
    v.data_len = e.data.size();
    v.timestamp_ms = e.timestamp_ms;
    v.hlc = e.hlc;
    v.client_id = e.client_id.c_str();
    v.base_seq = e.base_seq;
    v.seq = e.seq;
    v.origin = e.origin;
    return v;
}

static std::string copy_string(const char *s)
{
    return s != nullptr ? std::string(s) : std::string();
}

static std::string copy_bytes(const uint8_t *data, size_t len)
{
    return data != nullptr ? std::string(reinterpret_cast<const char *>(data), len) : std::string();
}

Event copy_event(const sync_event &e)
{
    Event c;
    c.id = copy_string(e.id);
    c.type = e.type;
    c.document_id = copy_string(e.document_id);
    c.data = copy_bytes(e.data, e.data_len);
    c.timestamp_ms = e.timestamp_ms;
    c.hlc = e.hlc;
    c.client_id = copy_string(e.client_id);
    c.base_seq = e.base_seq;
    c.seq = e.seq;
    c.origin = e.origin;
    return c;
}

static Doc copy_doc(const sync_document &d)
{
    Doc c;
    c.document_id = copy_string(d.document_id);
    c.data = copy_bytes(d.data, d.data_len);
    c.seq = d.seq;
    c.hlc = d.hlc;
    c.client_id = copy_string(d.client_id);
    c.deleted = d.deleted;
    return c;
}

// ---- blocking helpers -----------------------------------------------------

static void wait_for(Harness &h, const std::function<bool()> &done, const char *what)
{
    if (!h.run_until(done, kCallTimeout))
        ADD_FAILURE() << what << " did not complete within " << kCallTimeout.count() << " ms";
}

namespace {
struct SaveCall {
    SaveReply reply;
    std::function<void()> on_done;
};
}  // namespace

static void on_saved(void *user_data, int status, const sync_save_result *results, size_t count)
{
    auto *call = static_cast<SaveCall *>(user_data);
    if (call->on_done)
        call->on_done();
    call->reply.calls++;
    call->reply.status = status;
    call->reply.results.clear();
    for (size_t i = 0; i < count; i++) {
        Result r;
        r.status = results[i].status;
        r.seq = results[i].seq;
        if (r.status == SYNC_SAVE_CONFLICT)
            r.winner = copy_doc(results[i].winner);
        r.reason = copy_string(results[i].reason);
        r.retryable = results[i].retryable;
        call->reply.results.push_back(r);
    }
}

SaveReply save_raw(Harness &h, const char *tenant, const char *collection,
                   sync_conflict_strategy strategy, const std::vector<sync_event> &events,
                   const std::function<void()> &on_done)
{
    SaveCall call;
    call.on_done = on_done;
    sync_storage *s = h.storage();
    s->ops->save_events(s->ctx, tenant, collection, strategy, events.data(), events.size(),
                        on_saved, &call);
    wait_for(h, [&] { return call.reply.calls > 0; }, "save_events");
    EXPECT_EQ(call.reply.calls, 1) << "save_events completed more than once";
    if (call.reply.status == SYNC_STORAGE_OK) {
        EXPECT_EQ(call.reply.results.size(), events.size()) << "one result per event";
    }
    return call.reply;
}

SaveReply save(Harness &h, const std::string &tenant, const std::string &collection,
               sync_conflict_strategy strategy, const std::vector<Event> &events,
               const std::function<void()> &on_done)
{
    std::vector<sync_event> views;
    for (const Event &e : events)
        views.push_back(view(e));
    return save_raw(h, tenant.c_str(), collection.c_str(), strategy, views, on_done);
}

static void on_events(void *user_data, int status, const sync_event *events, size_t count,
                      const sync_head *head, bool complete)
{
    auto *replies = static_cast<std::vector<EventsReply> *>(user_data);
    EventsReply r;
    r.calls = 1;
    r.status = status;
    for (size_t i = 0; i < count; i++)
        r.events.push_back(copy_event(events[i]));
    if (head != nullptr)
        r.head = *head;
    r.complete = complete;
    replies->push_back(r);
}

EventsReply events_after(Harness &h, const std::string &tenant, const std::string &collection,
                         uint64_t after_seq, size_t limit)
{
    std::vector<EventsReply> replies;
    sync_storage *s = h.storage();
    s->ops->events_after(s->ctx, tenant.c_str(), collection.c_str(), after_seq, limit, on_events,
                         &replies);
    wait_for(h, [&] { return !replies.empty(); }, "events_after");
    EXPECT_EQ(replies.size(), 1u) << "events_after completed more than once";
    return replies.empty() ? EventsReply{} : replies.front();
}

std::vector<EventsReply> events_for_client(Harness &h, const std::string &tenant,
                                           const std::string &client_id,
                                           const std::vector<std::string> &collections,
                                           const std::vector<uint64_t> &after_seq, size_t limit)
{
    std::vector<const char *> names;
    for (const std::string &c : collections)
        names.push_back(c.c_str());
    std::vector<EventsReply> replies;
    sync_storage *s = h.storage();
    s->ops->events_for_client(s->ctx, tenant.c_str(), client_id.c_str(), names.data(),
                              after_seq.empty() ? nullptr : after_seq.data(), names.size(), limit,
                              on_events, &replies);
    wait_for(h, [&] { return replies.size() >= collections.size(); }, "events_for_client");
    EXPECT_EQ(replies.size(), collections.size()) << "one completion per collection";
    return replies;
}

static void on_count(void *user_data, int status, uint64_t count)
{
    auto *r = static_cast<CountReply *>(user_data);
    r->calls++;
    r->status = status;
    r->count = count;
}

CountReply clear_events_before(Harness &h, int64_t before_ms)
{
    CountReply r;
    sync_storage *s = h.storage();
    s->ops->clear_events_before(s->ctx, before_ms, on_count, &r);
    wait_for(h, [&] { return r.calls > 0; }, "clear_events_before");
    EXPECT_EQ(r.calls, 1);
    return r;
}

static void on_snapshot(void *user_data, int status, const sync_document *documents, size_t count,
                        const sync_head *head)
{
    auto *r = static_cast<SnapshotReply *>(user_data);
    r->calls++;
    r->status = status;
    r->documents.clear();
    for (size_t i = 0; i < count; i++)
        r->documents.push_back(copy_doc(documents[i]));
    if (head != nullptr)
        r->head = *head;
}

SnapshotReply snapshot(Harness &h, const std::string &tenant, const std::string &collection)
{
    SnapshotReply r;
    sync_storage *s = h.storage();
    s->ops->snapshot(s->ctx, tenant.c_str(), collection.c_str(), on_snapshot, &r);
    wait_for(h, [&] { return r.calls > 0; }, "snapshot");
    EXPECT_EQ(r.calls, 1);
    return r;
}

static void on_head(void *user_data, int status, const sync_head *head)
{
    auto *r = static_cast<HeadReply *>(user_data);
    r->calls++;
    r->status = status;
    if (head != nullptr)
        r->head = *head;
}

HeadReply head(Harness &h, const std::string &tenant, const std::string &collection)
{
    HeadReply r;
    sync_storage *s = h.storage();
    s->ops->head(s->ctx, tenant.c_str(), collection.c_str(), on_head, &r);
    wait_for(h, [&] { return r.calls > 0; }, "head");
    EXPECT_EQ(r.calls, 1);
    return r;
}

std::vector<uint64_t> seqs_of(const std::vector<Event> &events)
{
    std::vector<uint64_t> out;
    for (const Event &e : events)
        out.push_back(e.seq);
    return out;
}

std::vector<uint64_t> seq_range(uint64_t first, uint64_t last)
{
    std::vector<uint64_t> out;
    for (uint64_t s = first; s <= last; s++)
        out.push_back(s);
    return out;
}

// ---- listener recorder ----------------------------------------------------

ListenerRecorder::ListenerRecorder(sync_storage *storage) : storage_(storage)
{
    storage_->ops->set_listener(storage_->ctx, on_events, this);
}

ListenerRecorder::~ListenerRecorder()
{
    storage_->ops->set_listener(storage_->ctx, nullptr, nullptr);
}

void ListenerRecorder::on_events(void *self_ptr, const char *tenant, const char *collection,
                                 const sync_event *events, size_t count)
{
    auto *self = static_cast<ListenerRecorder *>(self_ptr);
    auto key = std::make_pair(copy_string(tenant), copy_string(collection));
    {
        std::lock_guard<std::mutex> lock(self->mu_);
        if (++self->active_[key] > 1)
            self->overlaps_++;
    }
    Call call{key.first, key.second, {}};
    for (size_t i = 0; i < count; i++)
        call.events.push_back(copy_event(events[i]));
    std::this_thread::yield();  // widen the window in which an overlap would show
    std::lock_guard<std::mutex> lock(self->mu_);
    self->calls_.push_back(std::move(call));
    self->active_[key]--;
}

std::vector<ListenerRecorder::Call> ListenerRecorder::calls() const
{
    std::lock_guard<std::mutex> lock(mu_);
    return calls_;
}

std::vector<uint64_t> ListenerRecorder::seqs(const std::string &tenant,
                                             const std::string &collection) const
{
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<uint64_t> out;
    for (const Call &c : calls_)
        if (c.tenant == tenant && c.collection == collection)
            for (const Event &e : c.events)
                out.push_back(e.seq);
    return out;
}

// ---- fixture --------------------------------------------------------------

void StorageContract::SetUp()
{
    harness_ = GetParam().create(Limits{});
    ASSERT_NE(harness_, nullptr) << GetParam().name << " could not create a storage";
}

void StorageContract::TearDown()
{
    harness_.reset();
}

bool StorageContract::reopen(const Limits &limits)
{
    harness_.reset();
    harness_ = GetParam().create(limits);
    return harness_ != nullptr;
}

// ---- the tests --------------------------------------------------------------

namespace {

constexpr sync_conflict_strategy LWW = SYNC_LAST_WRITE_WINS;
constexpr sync_conflict_strategy SERVER = SYNC_SERVER_WINS;
constexpr sync_conflict_strategy CLIENT = SYNC_CLIENT_WINS;

std::string epoch_of(const sync_head &h)
{
    return std::string(h.epoch, strnlen(h.epoch, sizeof h.epoch));
}

// Saves one event and returns its result (ACCEPTED expected by most tests).
Result save_one(Harness &h, const std::string &tenant, const std::string &collection,
                sync_conflict_strategy strategy, const Event &e)
{
    SaveReply r = save(h, tenant, collection, strategy, {e});
    EXPECT_EQ(r.status, SYNC_STORAGE_OK);
    return r.results.empty() ? Result{} : r.results.front();
}

uint64_t accept(Harness &h, const std::string &tenant, const std::string &collection,
                sync_conflict_strategy strategy, const Event &e)
{
    Result r = save_one(h, tenant, collection, strategy, e);
    EXPECT_EQ(r.status, SYNC_SAVE_ACCEPTED) << "event " << e.id << ": " << r.reason;
    return r.seq;
}

// The document with that id, or one with an empty id and data "<missing>".
Doc find_doc(const std::vector<Doc> &docs, const std::string &id)
{
    for (const Doc &d : docs)
        if (d.document_id == id)
            return d;
    Doc missing;
    missing.data = "<missing>";
    return missing;
}

std::set<std::string> doc_ids(const std::vector<Doc> &docs)
{
    std::set<std::string> out;
    for (const Doc &d : docs)
        out.insert(d.document_id);
    return out;
}

}  // namespace

// -- heads and epochs --

TEST_P(StorageContract, NeverWrittenCollectionHasEmptyHeadAndAnEpoch)
{
    HeadReply r = head(h(), "t", "fresh");
    ASSERT_EQ(r.status, SYNC_STORAGE_OK);
    EXPECT_EQ(r.head.first_seq, 1u);
    EXPECT_EQ(r.head.last_seq, 0u);
    size_t len = strnlen(r.head.epoch, sizeof r.head.epoch);
    EXPECT_GT(len, 0u) << "a never-written collection already has an epoch";
    EXPECT_LT(len, sizeof r.head.epoch) << "epoch must be NUL-terminated";

    EventsReply ev = events_after(h(), "t", "fresh", 0);
    EXPECT_EQ(ev.status, SYNC_STORAGE_OK);
    EXPECT_TRUE(ev.events.empty());
    EXPECT_TRUE(ev.complete);
    SnapshotReply snap = snapshot(h(), "t", "fresh");
    EXPECT_EQ(snap.status, SYNC_STORAGE_OK);
    EXPECT_TRUE(snap.documents.empty());
}

TEST_P(StorageContract, EpochIsStableAcrossCallsWritesAndTrims)
{
    std::string epoch = epoch_of(head(h(), "t", "c").head);
    accept(h(), "t", "c", LWW, insert_event("e1", "d1", "{}"));
    EXPECT_EQ(epoch_of(head(h(), "t", "c").head), epoch) << "first write must not change the epoch";
    EXPECT_EQ(epoch_of(events_after(h(), "t", "c", 0).head), epoch);
    EXPECT_EQ(epoch_of(snapshot(h(), "t", "c").head), epoch);
    clear_events_before(h(), INT64_MAX);
    EXPECT_EQ(epoch_of(head(h(), "t", "c").head), epoch) << "retention is not a reset";
}

TEST_P(StorageContract, EpochsDifferBetweenCollectionsAndTenants)
{
    std::set<std::string> epochs = {epoch_of(head(h(), "t1", "c1").head),
                                    epoch_of(head(h(), "t1", "c2").head),
                                    epoch_of(head(h(), "t2", "c1").head)};
    EXPECT_EQ(epochs.size(), 3u);
}

// -- seqs --

TEST_P(StorageContract, SeqsAreContiguousFromOnePerCollection)
{
    SaveReply first = save(h(), "t", "c", LWW,
                           {insert_event("e1", "d1", "{\"n\":1}"), insert_event("e2", "d2", "{}"),
                            insert_event("e3", "d3", "{}")});
    ASSERT_EQ(first.status, SYNC_STORAGE_OK);
    ASSERT_EQ(first.results.size(), 3u);
    for (size_t i = 0; i < 3; i++) {
        EXPECT_EQ(first.results[i].status, SYNC_SAVE_ACCEPTED);
        EXPECT_EQ(first.results[i].seq, i + 1);
    }
    EXPECT_EQ(accept(h(), "t", "c", LWW, insert_event("e4", "d4", "{}")), 4u);
    EXPECT_EQ(accept(h(), "t", "c", LWW, update_event("e5", "d1", "{}", 2)), 5u);

    HeadReply hr = head(h(), "t", "c");
    EXPECT_EQ(hr.head.first_seq, 1u);
    EXPECT_EQ(hr.head.last_seq, 5u);
    EXPECT_EQ(seqs_of(events_after(h(), "t", "c", 0).events), seq_range(1, 5));
}

TEST_P(StorageContract, SeqsAreIndependentPerCollectionAndTenant)
{
    accept(h(), "t1", "c1", LWW, insert_event("a1", "d", "{}"));
    accept(h(), "t1", "c1", LWW, insert_event("a2", "d2", "{}"));
    EXPECT_EQ(accept(h(), "t1", "c2", LWW, insert_event("b1", "d", "{}")), 1u);
    EXPECT_EQ(accept(h(), "t2", "c1", LWW, insert_event("c1", "d", "{}")), 1u);
    EXPECT_EQ(accept(h(), "t1", "c1", LWW, insert_event("a3", "d3", "{}")), 3u);
    EXPECT_EQ(head(h(), "t1", "c2").head.last_seq, 1u);
    EXPECT_EQ(head(h(), "t2", "c1").head.last_seq, 1u);
}

// -- isolation --

TEST_P(StorageContract, TenantsAreIsolated)
{
    // Same collection, same event id, same document id in two tenants.
    EXPECT_EQ(accept(h(), "alpha", "notes", LWW, insert_event("e1", "d1", "{\"t\":\"a\"}")), 1u);
    EXPECT_EQ(accept(h(), "beta", "notes", LWW, insert_event("e1", "d1", "{\"t\":\"b\"}")), 1u)
        << "an id stored in another tenant is not a duplicate";

    EventsReply a = events_after(h(), "alpha", "notes", 0);
    ASSERT_EQ(a.events.size(), 1u);
    EXPECT_EQ(a.events[0].data, "{\"t\":\"a\"}");
    SnapshotReply b = snapshot(h(), "beta", "notes");
    ASSERT_EQ(b.documents.size(), 1u);
    EXPECT_EQ(b.documents[0].data, "{\"t\":\"b\"}");
    EXPECT_NE(epoch_of(a.head), epoch_of(b.head));

    // Deleting in one tenant leaves the other alone.
    accept(h(), "alpha", "notes", LWW, delete_event("e2", "d1", 5));
    EXPECT_TRUE(snapshot(h(), "alpha", "notes").documents.empty());
    EXPECT_EQ(snapshot(h(), "beta", "notes").documents.size(), 1u);
    EXPECT_TRUE(events_after(h(), "gamma", "notes", 0).events.empty());
}

TEST_P(StorageContract, TenantAndCollectionNamesDoNotCollideWhenConcatenated)
{
    const std::vector<std::pair<std::string, std::string>> names = {
        {"a/b", "c"}, {"a", "b/c"}, {"ab", "c"}, {"a", "bc"}, {"a:b", "c"}, {"a", "b:c"}, {"", "abc"},
    };
    for (size_t i = 0; i < names.size(); i++)
        EXPECT_EQ(accept(h(), names[i].first, names[i].second, LWW,
                         insert_event("same-id", "doc-" + std::to_string(i), "{}")),
                  1u)
            << names[i].first << " | " << names[i].second;
    for (size_t i = 0; i < names.size(); i++) {
        SnapshotReply s = snapshot(h(), names[i].first, names[i].second);
        ASSERT_EQ(s.documents.size(), 1u) << names[i].first << " | " << names[i].second;
        EXPECT_EQ(s.documents[0].document_id, "doc-" + std::to_string(i));
    }
}

// -- what is stored --

TEST_P(StorageContract, EventsAreStoredAsCopiesWithEveryField)
{
    Event e = insert_event("id-1", "doc-1", "{\"x\":[1,2,3]}", 77, "client-z");
    e.timestamp_ms = 123456789;
    e.base_seq = 0;
    Event original = e;
    Result r = save_one(h(), "t", "c", LWW, e);
    ASSERT_EQ(r.status, SYNC_SAVE_ACCEPTED);
    // Scribble over the caller's buffers: the storage only borrowed them.
    std::fill(e.id.begin(), e.id.end(), '#');
    std::fill(e.document_id.begin(), e.document_id.end(), '#');
    std::fill(e.data.begin(), e.data.end(), '#');
    std::fill(e.client_id.begin(), e.client_id.end(), '#');

    EventsReply got = events_after(h(), "t", "c", 0);
    ASSERT_EQ(got.events.size(), 1u);
    const Event &s = got.events[0];
    EXPECT_EQ(s.id, original.id);
    EXPECT_EQ(s.type, SYNC_EVENT_INSERT);
    EXPECT_EQ(s.document_id, original.document_id);
    EXPECT_EQ(s.data, original.data);
    EXPECT_EQ(s.timestamp_ms, original.timestamp_ms);
    EXPECT_EQ(s.hlc, original.hlc);
    EXPECT_EQ(s.client_id, original.client_id);
    EXPECT_EQ(s.base_seq, original.base_seq);
    EXPECT_EQ(s.seq, 1u);

    SnapshotReply snap = snapshot(h(), "t", "c");
    ASSERT_EQ(snap.documents.size(), 1u);
    EXPECT_EQ(snap.documents[0].data, original.data);
    EXPECT_EQ(snap.documents[0].client_id, "client-z");
    EXPECT_EQ(snap.documents[0].hlc, 77u);
    EXPECT_EQ(snap.documents[0].seq, 1u);
    EXPECT_FALSE(snap.documents[0].deleted);
}

TEST_P(StorageContract, SeqInSaveCallIsIgnored)
{
    Event e = insert_event("e1", "d1", "{}");
    e.seq = 999;
    EXPECT_EQ(accept(h(), "t", "c", LWW, e), 1u);
}

// -- idempotency --

TEST_P(StorageContract, DuplicateReturnsOriginalSeqAndStoresNothing)
{
    accept(h(), "t", "c", LWW, insert_event("e1", "d1", "{\"v\":1}", 1));
    accept(h(), "t", "c", LWW, insert_event("e2", "d2", "{}", 1));
    HeadReply before = head(h(), "t", "c");

    ListenerRecorder listener(storage());
    // Same id, different content and a winning hlc: still only a duplicate.
    Result r = save_one(h(), "t", "c", LWW, update_event("e1", "d1", "{\"v\":2}", 50));
    EXPECT_EQ(r.status, SYNC_SAVE_DUPLICATE);
    EXPECT_EQ(r.seq, 1u);

    HeadReply after = head(h(), "t", "c");
    EXPECT_EQ(after.head.last_seq, before.head.last_seq);
    EXPECT_EQ(after.head.first_seq, before.head.first_seq);
    EXPECT_EQ(events_after(h(), "t", "c", 0).events.size(), 2u);
    EXPECT_EQ(find_doc(snapshot(h(), "t", "c").documents, "d1").data, "{\"v\":1}");
    EXPECT_TRUE(listener.calls().empty()) << "a duplicate is not announced";
}

TEST_P(StorageContract, DuplicateWithinOneBatch)
{
    SaveReply r = save(h(), "t", "c", LWW,
                       {insert_event("e1", "d1", "{}", 1), insert_event("e2", "d2", "{}", 1),
                        insert_event("e1", "d1", "{}", 9)});
    ASSERT_EQ(r.results.size(), 3u);
    EXPECT_EQ(r.results[0].status, SYNC_SAVE_ACCEPTED);
    EXPECT_EQ(r.results[1].status, SYNC_SAVE_ACCEPTED);
    EXPECT_EQ(r.results[2].status, SYNC_SAVE_DUPLICATE);
    EXPECT_EQ(r.results[2].seq, r.results[0].seq);
    EXPECT_EQ(head(h(), "t", "c").head.last_seq, 2u);
}

TEST_P(StorageContract, IdsOfEventsNotStoredAreNotRemembered)
{
    accept(h(), "t", "c", LWW, insert_event("e1", "d1", "{}", 10));
    Event loser = update_event("e2", "d1", "{}", 5);
    EXPECT_EQ(save_one(h(), "t", "c", LWW, loser).status, SYNC_SAVE_CONFLICT);
    EXPECT_EQ(save_one(h(), "t", "c", LWW, loser).status, SYNC_SAVE_CONFLICT)
        << "a lost event was not stored, so it is no duplicate";
    Event invalid = update_event("e3", "d1", "", 50);
    EXPECT_EQ(save_one(h(), "t", "c", LWW, invalid).status, SYNC_SAVE_REJECTED);
    invalid.data = "{}";
    EXPECT_EQ(accept(h(), "t", "c", LWW, invalid), 2u);
}

// -- conflicts: last-write-wins --

TEST_P(StorageContract, LastWriteWinsHigherHlcWins)
{
    accept(h(), "t", "c", LWW, insert_event("e1", "d1", "{\"v\":1}", 10, "client-b"));
    Result r = save_one(h(), "t", "c", LWW, update_event("e2", "d1", "{\"v\":2}", 11, "client-a"));
    EXPECT_EQ(r.status, SYNC_SAVE_ACCEPTED) << "higher hlc wins whatever the client id";
    EXPECT_EQ(find_doc(snapshot(h(), "t", "c").documents, "d1").data, "{\"v\":2}");
}

TEST_P(StorageContract, LastWriteWinsLowerHlcLosesWithWinner)
{
    accept(h(), "t", "c", LWW, insert_event("e1", "d1", "{\"v\":1}", 10, "client-a"));
    Result r = save_one(h(), "t", "c", LWW, update_event("e2", "d1", "{\"v\":2}", 9, "client-z"));
    ASSERT_EQ(r.status, SYNC_SAVE_CONFLICT);
    EXPECT_EQ(r.winner.document_id, "d1");
    EXPECT_EQ(r.winner.data, "{\"v\":1}");
    EXPECT_EQ(r.winner.seq, 1u);
    EXPECT_EQ(r.winner.hlc, 10u);
    EXPECT_EQ(head(h(), "t", "c").head.last_seq, 1u) << "a loser is not stored";
}

TEST_P(StorageContract, LastWriteWinsEqualHlcIsBrokenByClientIdBytewise)
{
    accept(h(), "t", "c", LWW, insert_event("e1", "d1", "{\"v\":1}", 10, "client-b"));
    EXPECT_EQ(save_one(h(), "t", "c", LWW, update_event("e2", "d1", "{}", 10, "client-a")).status,
              SYNC_SAVE_CONFLICT)
        << "equal hlc, lower client id loses";
    EXPECT_EQ(save_one(h(), "t", "c", LWW, update_event("e3", "d1", "{\"v\":3}", 10, "client-c")).status,
              SYNC_SAVE_ACCEPTED)
        << "equal hlc, higher client id wins";
    // Bytewise: a byte >= 0x80 sorts after every ASCII byte (not signed char).
    EXPECT_EQ(save_one(h(), "t", "c", LWW, update_event("e4", "d1", "{\"v\":4}", 10, "client-\xc3\xa9"))
                  .status,
              SYNC_SAVE_ACCEPTED);
    EXPECT_EQ(save_one(h(), "t", "c", LWW, update_event("e5", "d1", "{}", 10, "client-z")).status,
              SYNC_SAVE_CONFLICT);
    // A prefix sorts first.
    EXPECT_EQ(save_one(h(), "t", "c", LWW, insert_event("e6", "d2", "{}", 3, "ab")).status,
              SYNC_SAVE_ACCEPTED);
    EXPECT_EQ(save_one(h(), "t", "c", LWW, update_event("e7", "d2", "{}", 3, "a")).status,
              SYNC_SAVE_CONFLICT);
    EXPECT_EQ(save_one(h(), "t", "c", LWW, update_event("e8", "d2", "{}", 3, "abc")).status,
              SYNC_SAVE_ACCEPTED);
}

TEST_P(StorageContract, LastWriteWinsExactTieIsAConflict)
{
    accept(h(), "t", "c", LWW, insert_event("e1", "d1", "{\"v\":1}", 10, "client-a"));
    Result r = save_one(h(), "t", "c", LWW, update_event("e2", "d1", "{\"v\":2}", 10, "client-a"));
    EXPECT_EQ(r.status, SYNC_SAVE_CONFLICT);
    EXPECT_EQ(r.winner.data, "{\"v\":1}");
}

TEST_P(StorageContract, LastWriteWinsConvergesWhateverTheArrivalOrder)
{
    const Event w1 = update_event("w1", "doc", "{\"from\":\"x\"}", 20, "client-x");
    const Event w2 = update_event("w2", "doc", "{\"from\":\"y\"}", 20, "client-y");
    const Event w3 = delete_event("w3", "doc2", 7, "client-x");
    const Event w4 = update_event("w4", "doc2", "{\"alive\":1}", 6, "client-y");
    save(h(), "t", "order-1", LWW, {w1, w2, w3, w4});
    save(h(), "t", "order-2", LWW, {w2, w1, w4, w3});
    SnapshotReply a = snapshot(h(), "t", "order-1");
    SnapshotReply b = snapshot(h(), "t", "order-2");
    ASSERT_EQ(a.documents.size(), 1u);
    ASSERT_EQ(b.documents.size(), 1u) << "doc2's delete has the higher hlc in both orders";
    EXPECT_EQ(a.documents[0].data, "{\"from\":\"y\"}");
    EXPECT_EQ(b.documents[0].data, a.documents[0].data);
    EXPECT_EQ(b.documents[0].client_id, a.documents[0].client_id);
    EXPECT_EQ(b.documents[0].hlc, a.documents[0].hlc);
}

TEST_P(StorageContract, LastWriteWinsAppliesToDeletes)
{
    accept(h(), "t", "c", LWW, insert_event("e1", "d1", "{}", 10));
    EXPECT_EQ(save_one(h(), "t", "c", LWW, delete_event("e2", "d1", 9)).status, SYNC_SAVE_CONFLICT);
    EXPECT_EQ(snapshot(h(), "t", "c").documents.size(), 1u);
    EXPECT_EQ(save_one(h(), "t", "c", LWW, delete_event("e3", "d1", 11)).status, SYNC_SAVE_ACCEPTED);
    EXPECT_TRUE(snapshot(h(), "t", "c").documents.empty());
    // A stale write cannot resurrect the document either.
    EXPECT_EQ(save_one(h(), "t", "c", LWW, update_event("e4", "d1", "{}", 10)).status,
              SYNC_SAVE_CONFLICT);
    EXPECT_EQ(save_one(h(), "t", "c", LWW, insert_event("e5", "d1", "{\"again\":1}", 12)).status,
              SYNC_SAVE_ACCEPTED);
    EXPECT_EQ(snapshot(h(), "t", "c").documents.size(), 1u);
}

TEST_P(StorageContract, NeverSeenDocumentPassesLastWriteWinsAndClientWins)
{
    EXPECT_EQ(save_one(h(), "t", "c", LWW, insert_event("e1", "d1", "{}", 0, "")).status,
              SYNC_SAVE_ACCEPTED);
    Event stale_base = update_event("e2", "d2", "{}", 0);
    stale_base.base_seq = 42;
    EXPECT_EQ(save_one(h(), "t", "c", LWW, stale_base).status, SYNC_SAVE_ACCEPTED);
    stale_base.id = "e3";
    stale_base.document_id = "d3";
    EXPECT_EQ(save_one(h(), "t", "c", CLIENT, stale_base).status, SYNC_SAVE_ACCEPTED);
    EXPECT_EQ(save_one(h(), "t", "c", LWW, delete_event("e4", "d4", 1)).status, SYNC_SAVE_ACCEPTED);
    EXPECT_EQ(doc_ids(snapshot(h(), "t", "c").documents),
              (std::set<std::string>{"d1", "d2", "d3"}));
}

// -- conflicts: server-wins --

TEST_P(StorageContract, ServerWinsInsertNeedsBaseZero)
{
    Event e = insert_event("e1", "d1", "{}");
    e.base_seq = 3;
    Result r = save_one(h(), "t", "c", SERVER, e);
    EXPECT_EQ(r.status, SYNC_SAVE_CONFLICT) << "no version 3 of a never-seen document";
    EXPECT_EQ(r.winner.document_id, "d1");
    EXPECT_EQ(r.winner.seq, 0u) << "the winner is 'no document'";
    e.id = "e2";
    e.base_seq = 0;
    EXPECT_EQ(save_one(h(), "t", "c", SERVER, e).status, SYNC_SAVE_ACCEPTED);
    EXPECT_EQ(head(h(), "t", "c").head.last_seq, 1u);
}

TEST_P(StorageContract, ServerWinsUpdateNeedsTheCurrentSeq)
{
    accept(h(), "t", "c", SERVER, insert_event("e1", "other", "{}"));
    uint64_t v1 = accept(h(), "t", "c", SERVER, insert_event("e2", "d1", "{\"v\":1}", 1));
    ASSERT_EQ(v1, 2u);

    Event stale = update_event("e3", "d1", "{\"v\":\"stale\"}", 100, "client-z");
    stale.base_seq = 1;  // the collection's seq 1, not this document's
    Result lost = save_one(h(), "t", "c", SERVER, stale);
    ASSERT_EQ(lost.status, SYNC_SAVE_CONFLICT) << "a higher hlc does not matter under server-wins";
    EXPECT_EQ(lost.winner.seq, 2u);
    EXPECT_EQ(lost.winner.data, "{\"v\":1}");

    Event fresh = update_event("e4", "d1", "{\"v\":2}", 1);
    fresh.base_seq = 2;
    EXPECT_EQ(accept(h(), "t", "c", SERVER, fresh), 3u);
    // Now base 2 is stale in turn.
    fresh.id = "e5";
    Result again = save_one(h(), "t", "c", SERVER, fresh);
    EXPECT_EQ(again.status, SYNC_SAVE_CONFLICT);
    EXPECT_EQ(again.winner.seq, 3u);
}

TEST_P(StorageContract, ServerWinsSecondInsertOfExistingDocumentConflicts)
{
    accept(h(), "t", "c", SERVER, insert_event("e1", "d1", "{\"first\":1}"));
    Result r = save_one(h(), "t", "c", SERVER, insert_event("e2", "d1", "{\"second\":1}", 99));
    EXPECT_EQ(r.status, SYNC_SAVE_CONFLICT);
    EXPECT_EQ(r.winner.data, "{\"first\":1}");
}

TEST_P(StorageContract, ServerWinsDeleteNeedsTheCurrentSeqToo)
{
    accept(h(), "t", "c", SERVER, insert_event("e1", "d1", "{}"));
    Event del = delete_event("e2", "d1");
    EXPECT_EQ(save_one(h(), "t", "c", SERVER, del).status, SYNC_SAVE_CONFLICT);
    del.id = "e3";
    del.base_seq = 1;
    EXPECT_EQ(accept(h(), "t", "c", SERVER, del), 2u);
    Event revive = insert_event("e4", "d1", "{\"back\":1}");
    revive.base_seq = 2;  // the delete is the current version
    EXPECT_EQ(accept(h(), "t", "c", SERVER, revive), 3u);
}

// -- conflicts: client-wins --

TEST_P(StorageContract, ClientWinsAcceptsEveryWriteInArrivalOrder)
{
    accept(h(), "t", "c", CLIENT, insert_event("e1", "d1", "{\"v\":1}", 100, "client-z"));
    Event older = update_event("e2", "d1", "{\"v\":2}", 1, "client-a");
    older.base_seq = 0;  // stale too
    EXPECT_EQ(accept(h(), "t", "c", CLIENT, older), 2u);
    EXPECT_EQ(accept(h(), "t", "c", CLIENT, insert_event("e3", "d1", "{\"v\":3}", 1, "client-a")), 3u);
    Doc d = find_doc(snapshot(h(), "t", "c").documents, "d1");
    EXPECT_EQ(d.data, "{\"v\":3}") << "the last arrival is the document";
    EXPECT_EQ(d.seq, 3u);
}

// -- conflict winners --

TEST_P(StorageContract, ConflictWinnerIsTheWholeCurrentVersion)
{
    accept(h(), "t", "c", LWW, insert_event("e1", "d1", "{\"v\":1}", 5, "client-a"));
    accept(h(), "t", "c", LWW, update_event("e2", "d1", "{\"v\":2}", 8, "client-b"));
    Result r = save_one(h(), "t", "c", LWW, update_event("e3", "d1", "{\"v\":3}", 7, "client-c"));
    ASSERT_EQ(r.status, SYNC_SAVE_CONFLICT);
    EXPECT_EQ(r.winner.document_id, "d1");
    EXPECT_EQ(r.winner.data, "{\"v\":2}");
    EXPECT_EQ(r.winner.seq, 2u);
    EXPECT_EQ(r.winner.hlc, 8u);
    EXPECT_EQ(r.winner.client_id, "client-b");
    EXPECT_FALSE(r.winner.deleted);
}

TEST_P(StorageContract, ConflictWinnerOfDeletedDocumentIsMarkedDeleted)
{
    accept(h(), "t", "c", LWW, insert_event("e1", "d1", "{\"v\":1}", 5));
    accept(h(), "t", "c", LWW, delete_event("e2", "d1", 9, "client-q"));
    Result r = save_one(h(), "t", "c", LWW, update_event("e3", "d1", "{}", 6));
    ASSERT_EQ(r.status, SYNC_SAVE_CONFLICT);
    EXPECT_TRUE(r.winner.deleted);
    EXPECT_TRUE(r.winner.data.empty());
    EXPECT_EQ(r.winner.seq, 2u);
    EXPECT_EQ(r.winner.client_id, "client-q");
}

TEST_P(StorageContract, ConflictWinnerIsTheVersionCurrentWhenTheEventWasChecked)
{
    // Several losers in one batch, and the winner changes inside the batch.
    accept(h(), "t", "c", LWW, insert_event("e1", "d1", "{\"v\":1}", 10));
    SaveReply r = save(h(), "t", "c", LWW,
                       {update_event("e2", "d1", "{}", 9), update_event("e3", "d1", "{\"v\":3}", 20),
                        update_event("e4", "d1", "{}", 19)});
    ASSERT_EQ(r.results.size(), 3u);
    EXPECT_EQ(r.results[0].status, SYNC_SAVE_CONFLICT);
    EXPECT_EQ(r.results[0].winner.data, "{\"v\":1}");
    EXPECT_EQ(r.results[1].status, SYNC_SAVE_ACCEPTED);
    EXPECT_EQ(r.results[2].status, SYNC_SAVE_CONFLICT);
    EXPECT_EQ(r.results[2].winner.data, "{\"v\":3}");
    EXPECT_EQ(r.results[2].winner.seq, 2u);
}

TEST_P(StorageContract, LaterEventsInABatchSeeEarlierOnes)
{
    Event ins = insert_event("e1", "d1", "{\"v\":1}");
    Event upd = update_event("e2", "d1", "{\"v\":2}");
    upd.base_seq = 1;  // the insert of the same batch
    SaveReply r = save(h(), "t", "c", SERVER, {ins, upd});
    ASSERT_EQ(r.results.size(), 2u);
    EXPECT_EQ(r.results[0].status, SYNC_SAVE_ACCEPTED);
    EXPECT_EQ(r.results[1].status, SYNC_SAVE_ACCEPTED);
    EXPECT_EQ(find_doc(snapshot(h(), "t", "c").documents, "d1").data, "{\"v\":2}");
}

// -- snapshots --

TEST_P(StorageContract, DeleteRemovesTheDocumentFromSnapshots)
{
    accept(h(), "t", "c", LWW, insert_event("e1", "d1", "{}", 1));
    accept(h(), "t", "c", LWW, insert_event("e2", "d2", "{}", 1));
    accept(h(), "t", "c", LWW, delete_event("e3", "d1", 2));
    SnapshotReply s = snapshot(h(), "t", "c");
    EXPECT_EQ(doc_ids(s.documents), std::set<std::string>{"d2"});
    EXPECT_EQ(s.head.last_seq, 3u);
    EXPECT_EQ(events_after(h(), "t", "c", 0).events.size(), 3u) << "the delete is in the log";
}

TEST_P(StorageContract, SnapshotHoldsLatestVersionsAndItsHead)
{
    accept(h(), "t", "c", LWW, insert_event("e1", "b", "{\"b\":1}", 1));
    accept(h(), "t", "c", LWW, insert_event("e2", "a", "{\"a\":1}", 1));
    accept(h(), "t", "c", LWW, update_event("e3", "b", "{\"b\":2}", 2));
    SnapshotReply s = snapshot(h(), "t", "c");
    ASSERT_EQ(s.status, SYNC_STORAGE_OK);
    ASSERT_EQ(s.documents.size(), 2u);
    EXPECT_EQ(find_doc(s.documents, "a").seq, 2u);
    EXPECT_EQ(find_doc(s.documents, "b").data, "{\"b\":2}");
    EXPECT_EQ(find_doc(s.documents, "b").seq, 3u);
    EXPECT_EQ(s.head.last_seq, 3u);
    EXPECT_EQ(epoch_of(s.head), epoch_of(head(h(), "t", "c").head));
}

// -- events_after --

TEST_P(StorageContract, EventsAfterACursorInTheMiddle)
{
    for (int i = 1; i <= 6; i++)
        accept(h(), "t", "c", LWW, insert_event("e" + std::to_string(i), "d" + std::to_string(i), "{}"));
    EventsReply r = events_after(h(), "t", "c", 3);
    EXPECT_EQ(r.status, SYNC_STORAGE_OK);
    EXPECT_EQ(seqs_of(r.events), seq_range(4, 6));
    EXPECT_EQ(r.events[0].id, "e4");
    EXPECT_TRUE(r.complete);
    EXPECT_EQ(r.head.first_seq, 1u);
    EXPECT_EQ(r.head.last_seq, 6u);
}

TEST_P(StorageContract, EventsAfterHonoursLimitAndSaysWhenCut)
{
    for (int i = 1; i <= 5; i++)
        accept(h(), "t", "c", LWW, insert_event("e" + std::to_string(i), "d", "{}", i));
    EventsReply cut = events_after(h(), "t", "c", 1, 2);
    EXPECT_EQ(seqs_of(cut.events), (std::vector<uint64_t>{2, 3}));
    EXPECT_FALSE(cut.complete);
    EventsReply exact = events_after(h(), "t", "c", 3, 2);
    EXPECT_EQ(seqs_of(exact.events), (std::vector<uint64_t>{4, 5}));
    EXPECT_TRUE(exact.complete) << "nothing left after the limit";
    EventsReply roomy = events_after(h(), "t", "c", 0, 100);
    EXPECT_EQ(seqs_of(roomy.events), seq_range(1, 5));
    EXPECT_TRUE(roomy.complete);
}

TEST_P(StorageContract, EventsAfterTheHeadIsEmptyAndComplete)
{
    accept(h(), "t", "c", LWW, insert_event("e1", "d1", "{}"));
    for (uint64_t after : {uint64_t{1}, uint64_t{2}, UINT64_MAX}) {
        EventsReply r = events_after(h(), "t", "c", after);
        EXPECT_EQ(r.status, SYNC_STORAGE_OK);
        EXPECT_TRUE(r.events.empty()) << after;
        EXPECT_TRUE(r.complete) << after;
        EXPECT_EQ(r.head.last_seq, 1u);
    }
}

TEST_P(StorageContract, EventsAfterACursorOlderThanTheLogReturnsWhatIsRetained)
{
    for (int i = 1; i <= 5; i++) {
        Event e = insert_event("e" + std::to_string(i), "d" + std::to_string(i), "{}");
        e.timestamp_ms = i * 100;
        accept(h(), "t", "c", LWW, e);
    }
    ASSERT_EQ(clear_events_before(h(), 350).count, 3u);
    EventsReply r = events_after(h(), "t", "c", 1);
    EXPECT_EQ(r.status, SYNC_STORAGE_OK);
    EXPECT_EQ(seqs_of(r.events), seq_range(4, 5));
    EXPECT_EQ(r.head.first_seq, 4u) << "the head shows the gap: seqs 2 and 3 are gone";
    EXPECT_GT(r.head.first_seq, 1u + 1u);
}

// -- events_for_client --

TEST_P(StorageContract, EventsForClientLeavesOutTheClientsOwnEvents)
{
    accept(h(), "t", "c1", LWW, insert_event("a1", "d1", "{}", 1, "me"));
    accept(h(), "t", "c1", LWW, insert_event("b1", "d2", "{}", 1, "other"));
    accept(h(), "t", "c1", LWW, insert_event("a2", "d3", "{}", 1, "me"));
    accept(h(), "t", "c1", LWW, insert_event("b2", "d4", "{}", 1, "other-2"));
    accept(h(), "t", "c2", LWW, insert_event("a3", "d1", "{}", 1, "me"));
    accept(h(), "t", "c3", LWW, insert_event("b3", "d1", "{}", 1, "me-too"));

    std::vector<EventsReply> r = events_for_client(h(), "t", "me", {"c1", "c2", "c3"}, {});
    ASSERT_EQ(r.size(), 3u);
    for (const EventsReply &page : r)
        EXPECT_EQ(page.status, SYNC_STORAGE_OK);
    EXPECT_EQ(seqs_of(r[0].events), (std::vector<uint64_t>{2, 4}));
    EXPECT_EQ(r[0].events[0].client_id, "other");
    EXPECT_TRUE(r[1].events.empty()) << "c2 holds only the client's own event";
    EXPECT_EQ(r[1].head.last_seq, 1u) << "answers come in the order of the collections";
    ASSERT_EQ(r[2].events.size(), 1u) << "a client id that merely starts alike is another client";
    EXPECT_EQ(r[2].events[0].id, "b3");
    for (const EventsReply &page : r)
        EXPECT_TRUE(page.complete);
}

TEST_P(StorageContract, EventsForClientHonoursCursorsAndLimitPerCollection)
{
    for (int i = 1; i <= 6; i++) {
        accept(h(), "t", "c1", LWW,
               insert_event("x" + std::to_string(i), "d" + std::to_string(i), "{}", 1,
                            i % 2 == 0 ? "me" : "other"));
        accept(h(), "t", "c2", LWW,
               insert_event("y" + std::to_string(i), "d" + std::to_string(i), "{}", 1, "other"));
    }
    std::vector<EventsReply> r = events_for_client(h(), "t", "me", {"c1", "c2"}, {2, 4}, 2);
    ASSERT_EQ(r.size(), 2u);
    EXPECT_EQ(seqs_of(r[0].events), (std::vector<uint64_t>{3, 5}));
    EXPECT_TRUE(r[0].complete) << "seq 6 is the client's own: nothing was cut";
    EXPECT_EQ(seqs_of(r[1].events), (std::vector<uint64_t>{5, 6}));
    EXPECT_TRUE(r[1].complete);

    std::vector<EventsReply> cut = events_for_client(h(), "t", "me", {"c2"}, {0}, 3);
    EXPECT_EQ(seqs_of(cut[0].events), seq_range(1, 3));
    EXPECT_FALSE(cut[0].complete);
}

// -- retention --

TEST_P(StorageContract, ClearEventsBeforeTrimsOldEntriesAndMovesFirstSeq)
{
    for (int i = 1; i <= 4; i++) {
        Event e = insert_event("e" + std::to_string(i), "d" + std::to_string(i), "{}");
        e.timestamp_ms = i * 100;
        accept(h(), "t", "c", LWW, e);
    }
    CountReply cleared = clear_events_before(h(), 250);
    EXPECT_EQ(cleared.status, SYNC_STORAGE_OK);
    EXPECT_EQ(cleared.count, 2u);
    HeadReply hr = head(h(), "t", "c");
    EXPECT_EQ(hr.head.first_seq, 3u);
    EXPECT_EQ(hr.head.last_seq, 4u);
    EXPECT_EQ(seqs_of(events_after(h(), "t", "c", 0).events), seq_range(3, 4));
    EXPECT_EQ(snapshot(h(), "t", "c").documents.size(), 4u) << "documents stay";

    EXPECT_EQ(clear_events_before(h(), 250).count, 0u) << "nothing more is that old";
    EXPECT_EQ(clear_events_before(h(), INT64_MAX).count, 2u);
    hr = head(h(), "t", "c");
    EXPECT_EQ(hr.head.first_seq, 5u) << "empty log: first_seq is last_seq + 1";
    EXPECT_EQ(hr.head.last_seq, 4u);
    EXPECT_EQ(accept(h(), "t", "c", LWW, insert_event("e5", "d5", "{}")), 5u)
        << "seqs go on after the log is emptied";
}

TEST_P(StorageContract, ClearEventsBeforeForgetsTheIdsOfClearedEvents)
{
    for (int i = 1; i <= 3; i++) {
        Event e = insert_event("e" + std::to_string(i), "d" + std::to_string(i), "{}", i);
        e.timestamp_ms = i * 100;
        accept(h(), "t", "c", LWW, e);
    }
    ASSERT_EQ(clear_events_before(h(), 150).count, 1u);
    Event again = insert_event("e1", "d1", "{}", 50);
    again.timestamp_ms = 100;
    EXPECT_EQ(accept(h(), "t", "c", LWW, again), 4u) << "a cleared event's id is forgotten";
    Result kept = save_one(h(), "t", "c", LWW, insert_event("e2", "d2", "{}", 50));
    EXPECT_EQ(kept.status, SYNC_SAVE_DUPLICATE) << "retained events are still deduplicated";
    EXPECT_EQ(kept.seq, 2u);
}

TEST_P(StorageContract, ClearEventsBeforeNeverDropsNewerEntries)
{
    // Client clocks: timestamps need not follow seq order.
    const int64_t stamps[] = {100, 900, 200, 300, 800};
    for (int i = 0; i < 5; i++) {
        Event e = insert_event("e" + std::to_string(i), "d" + std::to_string(i), "{}");
        e.timestamp_ms = stamps[i];
        accept(h(), "t", "c", LWW, e);
    }
    CountReply cleared = clear_events_before(h(), 500);
    EventsReply left = events_after(h(), "t", "c", 0);
    // Every retained entry is contiguous from first_seq...
    EXPECT_EQ(seqs_of(left.events), seq_range(left.head.first_seq, 5));
    EXPECT_EQ(cleared.count, left.head.first_seq - 1) << "the count is what was dropped";
    // ...and nothing at or after before_ms went.
    std::set<int64_t> kept;
    for (const Event &e : left.events)
        kept.insert(e.timestamp_ms);
    EXPECT_TRUE(kept.count(900) && kept.count(800));
    EXPECT_GE(cleared.count, 1u) << "the oldest entry heads the log and is old enough";
}

TEST_P(StorageContract, ClearEventsBeforeCountsOverAllCollectionsAndTenants)
{
    int n = 0;
    for (const char *tenant : {"t1", "t2"})
        for (const char *coll : {"c1", "c2"})
            for (int i = 0; i < 3; i++) {
                Event e = insert_event("e" + std::to_string(n++), "d" + std::to_string(i), "{}", 1 + i);
                e.timestamp_ms = i == 2 ? 10000 : 10;
                accept(h(), tenant, coll, LWW, e);
            }
    EXPECT_EQ(clear_events_before(h(), 1000).count, 8u);
    EXPECT_EQ(head(h(), "t2", "c1").head.first_seq, 3u);
}

// -- size caps --

TEST_P(StorageContract, SizeCapTrimsTheOldestEventsOfTheWritingCollection)
{
    if (!reopen(Limits{5, 0}))
        GTEST_SKIP() << GetParam().name << " has no event cap";
    for (int i = 1; i <= 3; i++)
        accept(h(), "t", "a", LWW, insert_event("a" + std::to_string(i), "d" + std::to_string(i), "{}"));
    for (int i = 1; i <= 2; i++)
        accept(h(), "t", "b", LWW, insert_event("b" + std::to_string(i), "d" + std::to_string(i), "{}"));
    // Full: 5 of 5. Writing to b trims b, never a.
    EXPECT_EQ(accept(h(), "t", "b", LWW, insert_event("b3", "d3", "{}")), 3u);
    EXPECT_EQ(head(h(), "t", "b").head.first_seq, 2u);
    EXPECT_EQ(head(h(), "t", "a").head.first_seq, 1u);
    EXPECT_EQ(seqs_of(events_after(h(), "t", "b", 0).events), seq_range(2, 3));
    EXPECT_EQ(seqs_of(events_after(h(), "t", "a", 0).events), seq_range(1, 3));
}

TEST_P(StorageContract, SizeCapNeverDropsDocuments)
{
    if (!reopen(Limits{3, 0}))
        GTEST_SKIP() << GetParam().name << " has no event cap";
    for (int i = 1; i <= 10; i++)
        accept(h(), "t", "c", LWW,
               insert_event("e" + std::to_string(i), "d" + std::to_string(i), "{\"i\":" + std::to_string(i) + "}"));
    HeadReply hr = head(h(), "t", "c");
    EXPECT_EQ(hr.head.last_seq, 10u);
    EXPECT_EQ(hr.head.first_seq, 8u);
    SnapshotReply s = snapshot(h(), "t", "c");
    EXPECT_EQ(s.documents.size(), 10u);
    EXPECT_EQ(find_doc(s.documents, "d1").data, "{\"i\":1}");
}

TEST_P(StorageContract, SizeCapRejectsRetryablyWhenTheCollectionHasNothingToTrim)
{
    if (!reopen(Limits{3, 0}))
        GTEST_SKIP() << GetParam().name << " has no event cap";
    for (int i = 1; i <= 3; i++)
        accept(h(), "t", "full", LWW, insert_event("e" + std::to_string(i), "d", "{}", i));
    ListenerRecorder listener(storage());
    Result r = save_one(h(), "t", "empty", LWW, insert_event("x1", "d", "{}"));
    EXPECT_EQ(r.status, SYNC_SAVE_REJECTED);
    EXPECT_EQ(r.reason, "storage full");
    EXPECT_TRUE(r.retryable);
    EXPECT_EQ(head(h(), "t", "empty").head.last_seq, 0u);
    EXPECT_TRUE(snapshot(h(), "t", "empty").documents.empty()) << "a refused write changes no document";
    EXPECT_EQ(head(h(), "t", "full").head.first_seq, 1u) << "other collections are never trimmed";
    EXPECT_TRUE(listener.calls().empty());
    // Once room is made, the retry succeeds.
    clear_events_before(h(), INT64_MAX);
    EXPECT_EQ(accept(h(), "t", "empty", LWW, insert_event("x1", "d", "{}")), 1u);
}

TEST_P(StorageContract, DeduplicationSurvivesSizeCapTrimming)
{
    if (!reopen(Limits{2, 0}))
        GTEST_SKIP() << GetParam().name << " has no event cap";
    for (int i = 1; i <= 4; i++)
        accept(h(), "t", "c", LWW, insert_event("e" + std::to_string(i), "d" + std::to_string(i), "{}"));
    ASSERT_EQ(head(h(), "t", "c").head.first_seq, 3u);
    Result r = save_one(h(), "t", "c", LWW, insert_event("e1", "d1", "{}", 99));
    EXPECT_EQ(r.status, SYNC_SAVE_DUPLICATE) << "trimmed for space, still remembered";
    EXPECT_EQ(r.seq, 1u);
}

// -- the listener --

TEST_P(StorageContract, ListenerHearsAcceptedEventsInSeqOrderBeforeDone)
{
    ListenerRecorder listener(storage());
    std::vector<uint64_t> heard_at_done;
    std::vector<Event> batch = {insert_event("e1", "d1", "{\"v\":1}", 1),
                                insert_event("e2", "d2", "{}", 1),
                                update_event("e3", "d1", "{\"v\":3}", 2)};
    for (size_t i = 0; i < batch.size(); i++)
        batch[i].origin = 0xfeed0000u + i;  // the pushing session's tag
    SaveReply r = save(h(), "t", "c", LWW, batch,
                       [&] { heard_at_done = listener.seqs("t", "c"); });
    EXPECT_EQ(heard_at_done, seq_range(1, 3)) << "announced before the save completes";
    std::vector<ListenerRecorder::Call> calls = listener.calls();
    ASSERT_EQ(calls.size(), 1u) << "exactly once";
    EXPECT_EQ(calls[0].tenant, "t");
    EXPECT_EQ(calls[0].collection, "c");
    ASSERT_EQ(calls[0].events.size(), 3u);
    EXPECT_EQ(calls[0].events[2].id, "e3");
    EXPECT_EQ(calls[0].events[2].data, "{\"v\":3}");
    EXPECT_EQ(calls[0].events[2].seq, 3u);
    for (size_t i = 0; i < 3; i++)
        EXPECT_EQ(calls[0].events[i].origin, 0xfeed0000u + i) << "origin is handed back unchanged";

    accept(h(), "t", "c", LWW, insert_event("e4", "d4", "{}"));
    accept(h(), "t", "other", LWW, insert_event("e1", "d1", "{}"));
    EXPECT_EQ(listener.seqs("t", "c"), seq_range(1, 4));
    EXPECT_EQ(listener.seqs("t", "other"), seq_range(1, 1));
}

TEST_P(StorageContract, ListenerHearsNothingOfDuplicatesConflictsAndRejections)
{
    accept(h(), "t", "c", LWW, insert_event("e1", "d1", "{}", 10));
    ListenerRecorder listener(storage());
    Event invalid = insert_event("", "d9", "{}");
    SaveReply r = save(h(), "t", "c", LWW,
                       {insert_event("e1", "d1", "{}", 10),     // duplicate
                        update_event("e2", "d1", "{}", 5),      // conflict
                        invalid,                                // rejected
                        insert_event("e3", "d3", "{}", 1),      // accepted
                        update_event("e4", "d1", "{}", 4)});    // conflict
    ASSERT_EQ(r.results.size(), 5u);
    std::vector<ListenerRecorder::Call> calls = listener.calls();
    ASSERT_EQ(calls.size(), 1u);
    ASSERT_EQ(calls[0].events.size(), 1u);
    EXPECT_EQ(calls[0].events[0].id, "e3");
    EXPECT_EQ(calls[0].events[0].seq, 2u);

    save(h(), "t", "c", LWW, {insert_event("e1", "d1", "{}", 10), update_event("e5", "d1", "{}", 1)});
    EXPECT_EQ(listener.calls().size(), 1u) << "a batch with nothing accepted is not announced";
}

TEST_P(StorageContract, RemovedListenerIsNotCalled)
{
    {
        ListenerRecorder listener(storage());
        accept(h(), "t", "c", LWW, insert_event("e1", "d1", "{}"));
        EXPECT_EQ(listener.calls().size(), 1u);
    }  // removed here: a call now would touch a dead recorder (ASan)
    accept(h(), "t", "c", LWW, insert_event("e2", "d2", "{}"));
}

// -- validation --

TEST_P(StorageContract, InvalidEventsAreRejectedWithAReason)
{
    std::vector<Event> bad;
    bad.push_back(insert_event("", "d1", "{}"));                                  // empty id
    bad.push_back(insert_event("e2", "", "{}"));                                  // empty document id
    bad.push_back(insert_event("e5", "d1", ""));                                  // insert without data
    bad.push_back(update_event("e6", "d1", ""));                                  // update without data
    std::vector<sync_event> views;
    for (const Event &e : bad)
        views.push_back(view(e));
    Event base = insert_event("x", "d1", "{}");
    // Types outside 1..3: written as raw ints, since C++ may not even hold
    // them in the enum type (the storage is C and must cope).
    for (int type : {0, 4, -1}) {
        sync_event v = view(base);
        v.id = type == 0 ? "t0" : type == 4 ? "t4" : "t-1";
        std::memcpy(&v.type, &type, sizeof v.type);
        views.push_back(v);
    }
    sync_event null_id = view(base);
    null_id.id = nullptr;
    views.push_back(null_id);
    sync_event null_doc = view(base);
    null_doc.id = "e7";
    null_doc.document_id = nullptr;
    views.push_back(null_doc);
    Event good = insert_event("ok", "d1", "{}");
    views.push_back(view(good));

    ListenerRecorder listener(storage());
    SaveReply r = save_raw(h(), "t", "c", LWW, views);
    ASSERT_EQ(r.status, SYNC_STORAGE_OK);
    ASSERT_EQ(r.results.size(), views.size());
    for (size_t i = 0; i + 1 < views.size(); i++) {
        EXPECT_EQ(r.results[i].status, SYNC_SAVE_REJECTED) << "event " << i;
        EXPECT_EQ(r.results[i].reason.rfind("invalid event", 0), 0u)
            << "event " << i << ": " << r.results[i].reason;
        EXPECT_FALSE(r.results[i].retryable) << "event " << i;
    }
    EXPECT_EQ(r.results.back().status, SYNC_SAVE_ACCEPTED);
    EXPECT_EQ(r.results.back().seq, 1u) << "rejections consume no seq";
    EXPECT_EQ(listener.seqs("t", "c"), seq_range(1, 1));
    EXPECT_EQ(snapshot(h(), "t", "c").documents.size(), 1u);
}

TEST_P(StorageContract, EmptyOrMissingClientIdIsAllowed)
{
    EXPECT_EQ(accept(h(), "t", "c", LWW, insert_event("e1", "d1", "{}", 1, "")), 1u);
    Event e2 = insert_event("e2", "d2", "{}");
    sync_event no_client = view(e2);
    no_client.client_id = nullptr;
    SaveReply r = save_raw(h(), "t", "c", LWW, {no_client});
    ASSERT_EQ(r.results.size(), 1u);
    EXPECT_EQ(r.results[0].status, SYNC_SAVE_ACCEPTED);
    EXPECT_EQ(events_after(h(), "t", "c", 1).events.at(0).client_id, "");
}

TEST_P(StorageContract, DeleteCarriesNoData)
{
    Event del = delete_event("e1", "d1");
    del.data = "{\"ignored\":true}";
    accept(h(), "t", "c", CLIENT, del);
    EXPECT_TRUE(events_after(h(), "t", "c", 0).events.at(0).data.empty());
}

TEST_P(StorageContract, BadCallArgumentsFailTheCall)
{
    Event e = insert_event("e1", "d1", "{}");
    std::vector<sync_event> one = {view(e)};
    EXPECT_EQ(save_raw(h(), nullptr, "c", LWW, one).status, SYNC_STORAGE_INVALID);
    EXPECT_EQ(save_raw(h(), "t", nullptr, LWW, one).status, SYNC_STORAGE_INVALID);
    EXPECT_EQ(save_raw(h(), "t", "c", static_cast<sync_conflict_strategy>(7), one).status,
              SYNC_STORAGE_INVALID);
    SaveReply empty = save_raw(h(), "t", "c", LWW, {});
    EXPECT_EQ(empty.status, SYNC_STORAGE_OK);
    EXPECT_TRUE(empty.results.empty());
    EXPECT_EQ(head(h(), "t", "c").head.last_seq, 0u);
}

// -- concurrency --

TEST_P(StorageContract, ConcurrentSavesToOneCollectionTakeEverySeqOnce)
{
    constexpr int kThreads = 4;
    constexpr int kPerThread = 5000;
    constexpr uint64_t kTotal = uint64_t{kThreads} * kPerThread;
    ListenerRecorder listener(storage());
    std::vector<std::vector<uint64_t>> seqs(kThreads);
    std::vector<std::thread> threads;
    Harness &harness = h();
    for (int t = 0; t < kThreads; t++) {
        threads.emplace_back([&, t] {
            for (int i = 0; i < kPerThread; i++) {
                // Client-wins on shared documents: every write is accepted and
                // document versions are replaced under contention.
                Event e = update_event("t" + std::to_string(t) + "-" + std::to_string(i),
                                       "doc-" + std::to_string(i % 16), "{\"i\":" + std::to_string(i) + "}",
                                       i, "client-" + std::to_string(t));
                SaveReply r = save(harness, "t", "hot", CLIENT, {e});
                if (r.results.size() == 1 && r.results[0].status == SYNC_SAVE_ACCEPTED)
                    seqs[t].push_back(r.results[0].seq);
            }
        });
    }
    for (std::thread &th : threads)
        th.join();

    std::vector<uint64_t> all;
    for (const auto &s : seqs) {
        EXPECT_TRUE(std::is_sorted(s.begin(), s.end())) << "one thread's saves are ordered";
        all.insert(all.end(), s.begin(), s.end());
    }
    std::sort(all.begin(), all.end());
    EXPECT_EQ(all, seq_range(1, kTotal)) << "every seq exactly once";
    EXPECT_EQ(listener.seqs("t", "hot"), seq_range(1, kTotal))
        << "the listener hears every seq once, strictly increasing by one";
    EXPECT_EQ(listener.overlaps(), 0u) << "listener calls for one collection never overlap";
    EXPECT_EQ(head(h(), "t", "hot").head.last_seq, kTotal);
    EXPECT_EQ(snapshot(h(), "t", "hot").documents.size(), 16u);
}

TEST_P(StorageContract, ConcurrentSavesReadsAndClearsKeepEveryInvariant)
{
    constexpr int kWriters = 3;
    constexpr int kPerWriter = 1500;
    const std::vector<std::string> collections = {"c0", "c1", "c2", "c3"};
    ListenerRecorder listener(storage());
    std::atomic<bool> writing{true};
    Harness &harness = h();
    std::vector<std::thread> threads;
    for (int w = 0; w < kWriters; w++) {
        threads.emplace_back([&, w] {
            for (int i = 0; i < kPerWriter; i++) {
                Event e = update_event("w" + std::to_string(w) + "-" + std::to_string(i),
                                       "doc-" + std::to_string(i % 8), "{\"w\":" + std::to_string(w) + "}",
                                       i, "client-" + std::to_string(w));
                e.timestamp_ms = i;
                save(harness, "t", collections[(i + w) % collections.size()], LWW, {e});
            }
        });
    }
    // A reader checks that every answer is self-consistent while the logs
    // grow and shrink underneath.
    threads.emplace_back([&] {
        size_t round = 0;
        while (writing.load()) {
            const std::string &c = collections[round++ % collections.size()];
            EventsReply page = events_after(harness, "t", c, 0, 64);
            if (!page.events.empty()) {
                EXPECT_EQ(page.events.front().seq, page.head.first_seq);
                EXPECT_EQ(page.events.back().seq, page.events.front().seq + page.events.size() - 1);
                EXPECT_LE(page.events.back().seq, page.head.last_seq);
                EXPECT_EQ(page.complete, page.events.back().seq == page.head.last_seq);
            }
            EXPECT_LE(page.head.first_seq, page.head.last_seq + 1);
            SnapshotReply snap = snapshot(harness, "t", c);
            for (const Doc &d : snap.documents)
                EXPECT_LE(d.seq, snap.head.last_seq);
            events_for_client(harness, "t", "client-0", collections, {}, 16);
        }
    });
    threads.emplace_back([&] {
        int64_t before = 0;
        while (writing.load()) {
            clear_events_before(harness, before);
            before = (before + 97) % kPerWriter;
        }
    });
    for (int w = 0; w < kWriters; w++)
        threads[w].join();
    writing = false;
    for (size_t i = kWriters; i < threads.size(); i++)
        threads[i].join();

    EXPECT_EQ(listener.overlaps(), 0u);
    uint64_t total = 0;
    for (const std::string &c : collections) {
        HeadReply hr = head(h(), "t", c);
        EXPECT_EQ(listener.seqs("t", c), seq_range(1, hr.head.last_seq)) << c;
        total += hr.head.last_seq;
        EventsReply rest = events_after(h(), "t", c, 0);
        EXPECT_EQ(seqs_of(rest.events), seq_range(hr.head.first_seq, hr.head.last_seq)) << c;
    }
    EXPECT_GT(total, 0u);
}

GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(StorageContract);

}  // namespace storage_contract
