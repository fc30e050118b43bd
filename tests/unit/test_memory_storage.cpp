// Unit tests of the memory storage (storage/memory_storage.c): the storage
// contract suite (tests/storage_contract) instantiated for it, plus what
// memory_storage.h adds to the contract: options and stats, byte accounting,
// the exact retention and size-cap policies, the bounded idempotency window,
// inline completion, and lifetimes of what callbacks and the listener see.
#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

extern "C" {
#include "memory_storage.h"
#include "sync_storage.h"
}

#include "storage_contract.h"

using namespace storage_contract;

namespace {

// Memory storage completes every call before it returns, so waiting is
// only a check that it did.
class MemoryHarness : public Harness {
public:
    explicit MemoryHarness(sync_storage *s) : s_(s) {}
    ~MemoryHarness() override { sync_storage_destroy(s_); }
    sync_storage *storage() override { return s_; }
    bool run_until(const std::function<bool()> &done, std::chrono::milliseconds) override
    {
        return done();
    }

private:
    sync_storage *s_;
};

std::unique_ptr<Harness> make_memory_harness(const Limits &limits)
{
    memory_storage_options opts;
    memory_storage_options_init(&opts);
    if (limits.max_events != 0)
        opts.max_events = limits.max_events;
    if (limits.max_bytes != 0)
        opts.max_bytes = limits.max_bytes;
    sync_storage *s = memory_storage_create(&opts);
    if (s == nullptr)
        return nullptr;
    return std::make_unique<MemoryHarness>(s);
}

}  // namespace

INSTANTIATE_TEST_SUITE_P(Memory, StorageContract,
                         ::testing::Values(Backend{"memory", make_memory_harness}), BackendName);

namespace {

constexpr sync_conflict_strategy LWW = SYNC_LAST_WRITE_WINS;

// What memory_storage.c counts for one retained event (see event_cost()):
// block header + strings + data, log slot, id record header + id.
size_t accounted_cost(const Event &e)
{
    const size_t block_header = alignof(sync_event) + sizeof(sync_event);   // refs (padded) + event
    const size_t id_record_header = 56 + 8 + 8;                          // UT_hash_handle + seq + ts
    size_t data = e.type == SYNC_EVENT_DELETE ? 0 : e.data.size();
    return block_header + e.id.size() + 1 + e.document_id.size() + 1 + e.client_id.size() + 1 +
           data + sizeof(void *) + id_record_header + e.id.size() + 1;
}

memory_storage_stats stats_of(sync_storage *s)
{
    memory_storage_stats st{};
    EXPECT_EQ(memory_storage_stats_get(s, &st), SYNC_STORAGE_OK);
    return st;
}

Result save_one(Harness &h, const std::string &tenant, const std::string &collection,
                const Event &e, sync_conflict_strategy strategy = LWW)
{
    SaveReply r = save(h, tenant, collection, strategy, {e});
    return r.results.empty() ? Result{} : r.results.front();
}

Event stamped(Event e, int64_t timestamp_ms)
{
    e.timestamp_ms = timestamp_ms;
    return e;
}

std::string uuid_like(int i)
{
    char buf[40];
    snprintf(buf, sizeof buf, "%08x-1d2e-4f3a-8b4c-5d6e7f8a9b0c", i);
    return buf;
}

class MemoryStorage : public ::testing::Test {
protected:
    void SetUp() override { open(Limits{}); }
    void open(const Limits &limits)
    {
        harness_.reset();
        harness_ = make_memory_harness(limits);
        ASSERT_NE(harness_, nullptr);
    }
    Harness &h() { return *harness_; }
    sync_storage *storage() { return harness_->storage(); }

    std::unique_ptr<Harness> harness_;
};

}  // namespace

// -- options, creation, handles --

TEST(MemoryStorageOptions, InitSetsTheDocumentedDefaults)
{
    memory_storage_options opts;
    memset(&opts, 0xab, sizeof opts);
    memory_storage_options_init(&opts);
    EXPECT_EQ(opts.max_events, 1000000u);
    EXPECT_EQ(opts.max_bytes, 256u * 1024 * 1024);
}

TEST(MemoryStorageOptions, CreateRefusesZeroLimits)
{
    memory_storage_options opts;
    memory_storage_options_init(&opts);
    opts.max_events = 0;
    errno = 0;
    EXPECT_EQ(memory_storage_create(&opts), nullptr);
    EXPECT_EQ(errno, EINVAL);
    memory_storage_options_init(&opts);
    opts.max_bytes = 0;
    EXPECT_EQ(memory_storage_create(&opts), nullptr);

    sync_storage *defaults = memory_storage_create(nullptr);
    ASSERT_NE(defaults, nullptr);
    sync_storage_destroy(defaults);
}

TEST(SyncStorage, DestroyAcceptsNullAndStrerrorNamesEveryStatus)
{
    sync_storage_destroy(nullptr);
    for (int status : {SYNC_STORAGE_OK, SYNC_STORAGE_UNAVAILABLE, SYNC_STORAGE_INVALID,
                       SYNC_STORAGE_FULL}) {
        const char *text = sync_storage_strerror(status);
        ASSERT_NE(text, nullptr);
        EXPECT_STRNE(text, sync_storage_strerror(12345)) << status;
    }
    EXPECT_STREQ(sync_storage_strerror(SYNC_STORAGE_OK), "ok");
    EXPECT_NE(std::string(sync_storage_strerror(SYNC_STORAGE_UNAVAILABLE)).find("retry"),
              std::string::npos);
}

TEST_F(MemoryStorage, StatsRefuseAnotherStorage)
{
    memory_storage_stats st;
    sync_storage_ops other_ops{};
    sync_storage other{&other_ops, nullptr};
    EXPECT_EQ(memory_storage_stats_get(&other, &st), SYNC_STORAGE_INVALID);
    EXPECT_EQ(memory_storage_stats_get(nullptr, &st), SYNC_STORAGE_INVALID);
    EXPECT_EQ(memory_storage_stats_get(storage(), nullptr), SYNC_STORAGE_INVALID);
}

// -- inline completion and epochs --

TEST_F(MemoryStorage, EveryCallCompletesBeforeItReturns)
{
    sync_storage *s = storage();
    int calls = 0;
    Event e = insert_event("e1", "d1", "{}");
    sync_event v = view(e);
    s->ops->save_events(s->ctx, "t", "c", LWW, &v, 1,
                        [](void *n, int, const sync_save_result *, size_t) { ++*static_cast<int *>(n); },
                        &calls);
    EXPECT_EQ(calls, 1);
    auto on_events = [](void *n, int, const sync_event *, size_t, const sync_head *, bool) {
        ++*static_cast<int *>(n);
    };
    s->ops->events_after(s->ctx, "t", "c", 0, 10, on_events, &calls);
    EXPECT_EQ(calls, 2);
    const char *colls[] = {"c", "d"};
    s->ops->events_for_client(s->ctx, "t", "x", colls, nullptr, 2, 10, on_events, &calls);
    EXPECT_EQ(calls, 4);
    s->ops->snapshot(s->ctx, "t", "c",
                     [](void *n, int, const sync_document *, size_t, const sync_head *) {
                         ++*static_cast<int *>(n);
                     },
                     &calls);
    EXPECT_EQ(calls, 5);
    s->ops->head(s->ctx, "t", "c", [](void *n, int, const sync_head *) { ++*static_cast<int *>(n); },
                 &calls);
    EXPECT_EQ(calls, 6);
    s->ops->clear_events_before(s->ctx, 0, [](void *n, int, uint64_t) { ++*static_cast<int *>(n); },
                                &calls);
    EXPECT_EQ(calls, 7);
}

TEST_F(MemoryStorage, EpochsAre128BitHexAndDifferBetweenStorages)
{
    std::string first(head(h(), "t", "c").head.epoch);
    EXPECT_EQ(first.size(), 32u);
    EXPECT_EQ(first.find_first_not_of("0123456789abcdef"), std::string::npos) << first;
    std::unique_ptr<Harness> other = make_memory_harness(Limits{});
    std::string second(head(*other, "t", "c").head.epoch);
    EXPECT_NE(first, second) << "a new memory storage has lost the log: new epoch";
}

// -- stats and accounting --

TEST_F(MemoryStorage, StatsCountWhatIsHeld)
{
    memory_storage_stats st = stats_of(storage());
    EXPECT_EQ(st.retained_events, 0u);
    EXPECT_EQ(st.retained_bytes, 0u);
    EXPECT_EQ(st.collections, 0u);

    Event a = stamped(insert_event("e1", "d1", "{\"a\":1}"), 100);
    Event b = stamped(update_event("e2", "d1", "{\"a\":2}", 2), 200);
    Event c = stamped(delete_event("e3", "d2", 1, "client-b"), 300);
    save(h(), "t", "c1", LWW, {a, b});
    save(h(), "t", "c2", LWW, {c});
    head(h(), "t", "only-read");  // reads create the collection (it gets its epoch)

    st = stats_of(storage());
    EXPECT_EQ(st.retained_events, 3u);
    EXPECT_EQ(st.retained_bytes, accounted_cost(a) + accounted_cost(b) + accounted_cost(c));
    EXPECT_EQ(st.collections, 3u);
    EXPECT_EQ(st.documents, 2u) << "d1 once, and d2's tombstone";
    EXPECT_EQ(st.remembered_ids, 0u);

    clear_events_before(h(), 250);
    st = stats_of(storage());
    EXPECT_EQ(st.retained_events, 1u);
    EXPECT_EQ(st.retained_bytes, accounted_cost(c));
    EXPECT_EQ(st.documents, 2u) << "documents stay";
}

// The figure quoted in memory_storage.c: a 200-byte event with UUID id and
// client id and a 10-byte document id is accounted as 498 bytes.
TEST_F(MemoryStorage, AccountsA200ByteEventAs498Bytes)
{
    Event e = insert_event(uuid_like(1), "doc-000001", std::string(200, 'x'), 1, uuid_like(2));
    ASSERT_EQ(e.id.size(), 36u);
    save(h(), "t", "c", LWW, {e});
    EXPECT_EQ(stats_of(storage()).retained_bytes, 498u);
    EXPECT_EQ(accounted_cost(e), 498u);
}

// -- size cap --

TEST_F(MemoryStorage, MaxBytesTrimsTheOldestEventsOfTheWritingCollection)
{
    Event shape = insert_event("e0", "d0", std::string(100, 'x'));
    open(Limits{0, 3 * accounted_cost(shape)});
    save(h(), "t", "other", LWW, {insert_event("o1", "d", "{}")});
    for (int i = 1; i <= 6; i++) {
        Event e = insert_event("e" + std::to_string(i), "d" + std::to_string(i), std::string(100, 'x'));
        EXPECT_EQ(save_one(h(), "t", "c", e).status, SYNC_SAVE_ACCEPTED) << i;
    }
    memory_storage_stats st = stats_of(storage());
    EXPECT_LE(st.retained_bytes, 3 * accounted_cost(shape));
    EXPECT_EQ(head(h(), "t", "other").head.first_seq, 1u) << "only the writing collection is trimmed";
    HeadReply hr = head(h(), "t", "c");
    EXPECT_EQ(hr.head.last_seq, 6u);
    EXPECT_EQ(hr.head.first_seq, 5u) << "room for two of these next to 'other'";
    EXPECT_EQ(snapshot(h(), "t", "c").documents.size(), 6u);
}

TEST_F(MemoryStorage, EventLargerThanMaxBytesIsRejectedForGood)
{
    open(Limits{0, 1024});
    save(h(), "t", "c", LWW, {insert_event("e1", "d1", "{}")});
    Result r = save_one(h(), "t", "c", insert_event("big", "d2", std::string(2000, 'x')));
    EXPECT_EQ(r.status, SYNC_SAVE_REJECTED);
    EXPECT_STREQ(r.reason.c_str(), "event larger than the storage size limit");
    EXPECT_FALSE(r.retryable) << "retrying cannot help";
    EXPECT_EQ(head(h(), "t", "c").head.first_seq, 1u) << "nothing was trimmed for it";
}

TEST_F(MemoryStorage, RefusesWithoutTrimmingWhenTrimmingCannotMakeRoom)
{
    // Every big event below has the same cost.
    Event small = insert_event("s1", "d1", "{}");
    Event big1 = insert_event("b1", "d1", std::string(400, 'x'));
    Event big2 = insert_event("b2", "d2", std::string(400, 'x'));
    open(Limits{0, accounted_cost(small) + accounted_cost(big1) + accounted_cost(big2)});
    save(h(), "t", "a", LWW, {small});
    save(h(), "t", "b", LWW, {big1, big2});
    ASSERT_EQ(head(h(), "t", "b").head.first_seq, 1u) << "exactly full";
    // Trimming a's one small event cannot fit a big one: refused, a intact.
    Result r = save_one(h(), "t", "a", insert_event("a1", "d9", std::string(400, 'x')));
    EXPECT_EQ(r.status, SYNC_SAVE_REJECTED);
    EXPECT_EQ(r.reason, "storage full");
    EXPECT_TRUE(r.retryable);
    EXPECT_EQ(head(h(), "t", "a").head.first_seq, 1u) << "a's log was not trimmed for nothing";
    EXPECT_EQ(events_after(h(), "t", "a", 0).events.size(), 1u);
}

TEST_F(MemoryStorage, RememberedIdsAreBoundedByMaxEvents)
{
    open(Limits{2, 0});
    for (int i = 1; i <= 10; i++)
        save(h(), "t", "c", LWW, {insert_event("e" + std::to_string(i), "d" + std::to_string(i), "{}")});
    memory_storage_stats st = stats_of(storage());
    EXPECT_EQ(st.retained_events, 2u);
    EXPECT_EQ(st.remembered_ids, 2u) << "ids of at most max_events trimmed events";
    // e7, e8 are the most recently trimmed: still remembered.
    EXPECT_EQ(save_one(h(), "t", "c", insert_event("e8", "d8", "{}", 9)).status, SYNC_SAVE_DUPLICATE);
    EXPECT_EQ(save_one(h(), "t", "c", insert_event("e7", "d7", "{}", 9)).status, SYNC_SAVE_DUPLICATE);
    Result old = save_one(h(), "t", "c", insert_event("e1", "d1", "{}", 9));
    EXPECT_EQ(old.status, SYNC_SAVE_ACCEPTED) << "the oldest ids were forgotten";
    EXPECT_EQ(old.seq, 11u);
}

// -- retention --

TEST_F(MemoryStorage, ClearDropsOnlyThePrefixOfOldEntries)
{
    const int64_t stamps[] = {100, 900, 200, 300, 800};
    for (int i = 0; i < 5; i++)
        save(h(), "t", "c", LWW,
             {stamped(insert_event("e" + std::to_string(i), "d" + std::to_string(i), "{}"), stamps[i])});
    EXPECT_EQ(clear_events_before(h(), 500).count, 1u) << "seq 2 (900) shields seqs 3 and 4";
    EXPECT_EQ(head(h(), "t", "c").head.first_seq, 2u);
    EXPECT_EQ(clear_events_before(h(), 901).count, 4u);
    EXPECT_EQ(head(h(), "t", "c").head.first_seq, 6u);
}

TEST_F(MemoryStorage, ClearForgetsRememberedIdsByTheirTimestamp)
{
    open(Limits{2, 0});
    for (int i = 1; i <= 4; i++)
        save(h(), "t", "c", LWW,
             {stamped(insert_event("e" + std::to_string(i), "d" + std::to_string(i), "{}"), i * 100)});
    ASSERT_EQ(stats_of(storage()).remembered_ids, 2u);  // e1, e2 trimmed for space
    EXPECT_EQ(clear_events_before(h(), 150).count, 0u) << "the log itself is younger";
    EXPECT_EQ(stats_of(storage()).remembered_ids, 1u);
    EXPECT_EQ(save_one(h(), "t", "c", insert_event("e2", "d2", "{}", 9)).status, SYNC_SAVE_DUPLICATE);
    EXPECT_EQ(save_one(h(), "t", "c", insert_event("e1", "d1", "{}", 9)).status, SYNC_SAVE_ACCEPTED);
}

// -- reads --

TEST_F(MemoryStorage, SnapshotIsSortedByDocumentId)
{
    for (const char *id : {"m", "b", "z", "a", "ab", "\xc3\xa9"})
        save(h(), "t", "c", LWW, {insert_event(std::string("e-") + id, id, "{}")});
    std::vector<std::string> ids;
    for (const Doc &d : snapshot(h(), "t", "c").documents)
        ids.push_back(d.document_id);
    EXPECT_EQ(ids, (std::vector<std::string>{"a", "ab", "b", "m", "z", "\xc3\xa9"}));
}

TEST_F(MemoryStorage, LimitZeroReturnsNothingAndSaysWhetherMoreExists)
{
    EventsReply none = events_after(h(), "t", "c", 0, 0);
    EXPECT_TRUE(none.events.empty());
    EXPECT_TRUE(none.complete);
    save(h(), "t", "c", LWW, {insert_event("e1", "d1", "{}")});
    EventsReply some = events_after(h(), "t", "c", 0, 0);
    EXPECT_TRUE(some.events.empty());
    EXPECT_FALSE(some.complete);
}

// -- lifetimes: what callbacks see outlives trims (ASan would catch it) --

TEST_F(MemoryStorage, ConflictWinnerOutlivesItsVersionWithinTheBatch)
{
    open(Limits{1, 0});
    save(h(), "t", "c", LWW, {insert_event("e1", "d1", "{\"winner\":1}", 10)});
    // e2 loses to e1; e3 then replaces e1 as the document and pushes it out
    // of the log: only the call's reference keeps e1 alive for the callback.
    SaveReply r = save(h(), "t", "c", LWW,
                       {update_event("e2", "d1", "{}", 5), update_event("e3", "d1", "{\"new\":1}", 20)});
    ASSERT_EQ(r.results.size(), 2u);
    EXPECT_EQ(r.results[0].status, SYNC_SAVE_CONFLICT);
    EXPECT_EQ(r.results[0].winner.data, "{\"winner\":1}");
    EXPECT_EQ(r.results[1].status, SYNC_SAVE_ACCEPTED);
    EXPECT_EQ(head(h(), "t", "c").head.first_seq, 2u);
}

TEST_F(MemoryStorage, ListenerSeesEventsTrimmedWithinTheSameBatch)
{
    open(Limits{1, 0});
    ListenerRecorder listener(storage());
    save(h(), "t", "c", LWW,
         {update_event("e1", "d1", "{\"first\":1}", 1), update_event("e2", "d1", "{\"second\":1}", 2)});
    std::vector<ListenerRecorder::Call> calls = listener.calls();
    ASSERT_EQ(calls.size(), 1u);
    ASSERT_EQ(calls[0].events.size(), 2u);
    EXPECT_EQ(calls[0].events[0].data, "{\"first\":1}") << "announced though no longer retained";
    EXPECT_EQ(head(h(), "t", "c").head.first_seq, 2u);
}

namespace {
struct Pager {
    sync_storage *s;
    std::vector<uint64_t> seqs;
    int pages = 0;
};

void next_page(void *user_data, int status, const sync_event *events, size_t count,
               const sync_head *, bool complete)
{
    auto *p = static_cast<Pager *>(user_data);
    ASSERT_EQ(status, SYNC_STORAGE_OK);
    p->pages++;
    for (size_t i = 0; i < count; i++)
        p->seqs.push_back(events[i].seq);
    if (!complete)  // no lock is held during callbacks: the storage may be called again
        p->s->ops->events_after(p->s->ctx, "t", "c", events[count - 1].seq, 3, next_page, p);
}
}  // namespace

TEST_F(MemoryStorage, CallbacksMayCallTheStorageAgain)
{
    for (int i = 1; i <= 10; i++)
        save(h(), "t", "c", LWW, {insert_event("e" + std::to_string(i), "d", "{}", i)});
    Pager pager{storage(), {}, 0};
    storage()->ops->events_after(storage()->ctx, "t", "c", 0, 3, next_page, &pager);
    EXPECT_EQ(pager.seqs, seq_range(1, 10));
    EXPECT_EQ(pager.pages, 4);

    // A save from inside a save's completion, same collection.
    SaveReply outer = save(h(), "t", "c", LWW, {insert_event("x1", "d", "{}", 100)}, [&] {
        SaveReply inner = save(h(), "t", "c", LWW, {insert_event("x2", "d", "{}", 200)});
        EXPECT_EQ(inner.results.at(0).seq, 12u);
    });
    EXPECT_EQ(outer.results.at(0).seq, 11u);
}

TEST_F(MemoryStorage, SetListenerWaitsForTheListenerInProgress)
{
    struct Slow {
        std::atomic<bool> inside{false};
        std::atomic<int> calls{0};
    } slow;
    sync_storage *s = storage();
    s->ops->set_listener(
        s->ctx,
        [](void *p, const char *, const char *, const sync_event *, size_t) {
            auto *sl = static_cast<Slow *>(p);
            sl->inside = true;
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
            sl->calls++;
            sl->inside = false;
        },
        &slow);
    std::thread writer([&] { save(h(), "t", "c", LWW, {insert_event("e1", "d1", "{}")}); });
    while (!slow.inside.load())
        std::this_thread::yield();
    s->ops->set_listener(s->ctx, nullptr, nullptr);
    EXPECT_FALSE(slow.inside.load()) << "set_listener returned while the old listener ran";
    EXPECT_EQ(slow.calls.load(), 1);
    writer.join();
    save(h(), "t", "c", LWW, {insert_event("e2", "d2", "{}")});
    EXPECT_EQ(slow.calls.load(), 1);
}

// -- concurrency under the size cap (trims race with reads and writes) --

TEST_F(MemoryStorage, ConcurrentSavesUnderSizeCapPressure)
{
    constexpr size_t kCap = 200;
    open(Limits{kCap, 0});
    ListenerRecorder listener(storage());
    const std::vector<std::string> collections = {"c0", "c1", "c2", "c3"};
    std::atomic<bool> writing{true};
    Harness &harness = h();
    std::vector<std::thread> writers;
    for (int w = 0; w < 4; w++) {
        writers.emplace_back([&, w] {
            for (int i = 0; i < 2000; i++) {
                Event e = update_event("w" + std::to_string(w) + "-" + std::to_string(i),
                                       "doc-" + std::to_string(i % 8), std::string(64, 'a' + w), i,
                                       "client-" + std::to_string(w));
                SaveReply r = save(harness, "t", collections[(i + w) % 4], SYNC_CLIENT_WINS, {e});
                EXPECT_EQ(r.results.at(0).status, SYNC_SAVE_ACCEPTED) << r.results.at(0).reason;
            }
        });
    }
    std::thread reader([&] {
        size_t round = 0;
        while (writing.load()) {
            const std::string &c = collections[round++ % 4];
            EventsReply page = events_after(harness, "t", c, 0, 32);
            if (!page.events.empty()) {
                EXPECT_EQ(page.events.front().seq, page.head.first_seq);
            }
            for (const Doc &d : snapshot(harness, "t", c).documents)
                EXPECT_EQ(d.data.size(), 64u);
            memory_storage_stats st = stats_of(harness.storage());
            EXPECT_LE(st.retained_events, kCap);
            EXPECT_LE(st.remembered_ids, kCap);
        }
    });
    for (std::thread &t : writers)
        t.join();
    writing = false;
    reader.join();

    memory_storage_stats st = stats_of(storage());
    EXPECT_LE(st.retained_events, kCap);
    uint64_t total = 0;
    for (const std::string &c : collections) {
        HeadReply hr = head(h(), "t", c);
        total += hr.head.last_seq;
        EXPECT_EQ(listener.seqs("t", c), seq_range(1, hr.head.last_seq)) << c;
    }
    EXPECT_EQ(total, 8000u);
    EXPECT_EQ(listener.overlaps(), 0u);
}
