// Tests of the Redis storage (storage/redis_storage.c) against a real
// redis-server: the storage contract suite (tests/storage_contract), then
// what only a shared storage does: two storages on one Redis (two brokers)
// see one order and each other's events of watched collections; Redis going
// away answers UNAVAILABLE, never a false ACCEPTED, and the storage recovers
// by itself; scripts flushed behind its back are loaded again.
#include <gtest/gtest.h>

#include <event2/event.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

extern "C" {
#include "redis_storage.h"
#include "sync_storage.h"
}

#include "redis_server.h"
#include "storage_contract.h"

using namespace storage_contract;
using nebula_test::RedisServer;

namespace {

// One Redis for the whole binary; every storage gets a key prefix of its own,
// so each test starts from nothing.
RedisServer *g_redis = nullptr;
std::atomic<int> g_prefix_counter{0};

class RedisEnvironment : public ::testing::Environment {
public:
    void SetUp() override
    {
        server_ = std::make_unique<RedisServer>();
        std::string error;
        if (server_->Start(&error))
            g_redis = server_.get();
        else
            std::fprintf(stderr, "redis tests will fail: %s\n", error.c_str());
    }
    void TearDown() override
    {
        g_redis = nullptr;
        server_.reset();
    }

private:
    std::unique_ptr<RedisServer> server_;
};

const ::testing::Environment *const g_env =
    ::testing::AddGlobalTestEnvironment(new RedisEnvironment);

std::string fresh_prefix()
{
    return "test" + std::to_string(getpid()) + "-" + std::to_string(g_prefix_counter++) + ":";
}

sync_storage *create_storage(const std::string &url, const std::string &prefix,
                             uint64_t max_log = REDIS_STORAGE_DEFAULT_MAX_LOG)
{
    redis_storage_options opts;
    redis_storage_options_init(&opts);
    opts.url = url.c_str();
    opts.prefix = prefix.c_str();
    opts.max_log = max_log;
    char err[256] = "";
    sync_storage *s = redis_storage_create(&opts, err, sizeof err);
    EXPECT_NE(s, nullptr) << err;
    return s;
}

bool storage_available(sync_storage *s)
{
    return s->ops->available(s->ctx);
}

// Each thread that touches a storage gets an event loop and thread_start;
// the loop runs only inside run_until. A thread's loops are stopped when it
// exits (thread_local destructor) or, for the thread that owns the harness,
// when the harness goes.
class RedisHarness;

struct ThreadLoops {
    std::map<RedisHarness *, event_base *> loops;
    ~ThreadLoops();
};
thread_local ThreadLoops t_loops;

class RedisHarness : public Harness {
public:
    explicit RedisHarness(sync_storage *s) : s_(s) {}
    ~RedisHarness() override
    {
        StopThisThread();
        sync_storage_destroy(s_);
    }

    sync_storage *storage() override
    {
        Loop();
        return s_;
    }

    bool run_until(const std::function<bool()> &done, std::chrono::milliseconds timeout) override
    {
        event_base *base = Loop();
        auto deadline = std::chrono::steady_clock::now() + timeout;
        while (!done()) {
            if (std::chrono::steady_clock::now() >= deadline)
                return false;
            timeval tick{0, 2000};
            event_base_loopexit(base, &tick);
            event_base_dispatch(base);
        }
        return true;
    }

    // Runs this thread's loop until the storage reports every connection up.
    bool WaitAvailable(std::chrono::milliseconds timeout = std::chrono::milliseconds(10000))
    {
        return run_until([&] { return storage_available(s_); }, timeout);
    }

    void StopLoop(event_base *base)
    {
        s_->ops->thread_stop(s_->ctx);
        event_base_free(base);
    }

private:
    event_base *Loop()
    {
        auto it = t_loops.loops.find(this);
        if (it != t_loops.loops.end())
            return it->second;
        event_base *base = event_base_new();
        EXPECT_EQ(s_->ops->thread_start(s_->ctx, base), SYNC_STORAGE_OK);
        t_loops.loops[this] = base;
        WaitAvailable();
        return base;
    }

    void StopThisThread()
    {
        auto it = t_loops.loops.find(this);
        if (it == t_loops.loops.end())
            return;
        StopLoop(it->second);
        t_loops.loops.erase(it);
    }

    sync_storage *s_;
};

ThreadLoops::~ThreadLoops()
{
    for (auto &[harness, base] : loops)
        harness->StopLoop(base);
}

std::unique_ptr<Harness> make_redis_harness(const Limits &limits)
{
    if (limits.max_events != 0 || limits.max_bytes != 0)
        return nullptr;   // no size cap: Redis's maxmemory bounds it
    if (!g_redis)
        return nullptr;
    sync_storage *s = create_storage(g_redis->url(), fresh_prefix());
    if (!s)
        return nullptr;
    auto h = std::make_unique<RedisHarness>(s);
    EXPECT_TRUE(h->WaitAvailable()) << "the storage never connected to " << g_redis->url();
    return h;
}

}  // namespace

INSTANTIATE_TEST_SUITE_P(Redis, StorageContract,
                         ::testing::Values(Backend{"redis", make_redis_harness}), BackendName);

// ---- what only a shared storage does --------------------------------------

namespace {

constexpr sync_conflict_strategy LWW = SYNC_LAST_WRITE_WINS;

class RedisStorageTest : public ::testing::Test {
protected:
    void SetUp() override
    {
        ASSERT_NE(g_redis, nullptr) << "redis-server did not start";
        prefix_ = fresh_prefix();
    }
    std::unique_ptr<RedisHarness> Open(const std::string &url,
                                       uint64_t max_log = REDIS_STORAGE_DEFAULT_MAX_LOG)
    {
        sync_storage *s = create_storage(url, prefix_, max_log);
        return s ? std::make_unique<RedisHarness>(s) : nullptr;
    }
    std::unique_ptr<RedisHarness> Open() { return Open(g_redis->url()); }
    std::string prefix_;
};

std::vector<Event> numbered_events(const std::string &tag, int count)
{
    std::vector<Event> out;
    for (int i = 0; i < count; i++)
        out.push_back(insert_event(tag + "-" + std::to_string(i), tag + "-doc-" + std::to_string(i),
                                   "{\"i\":" + std::to_string(i) + "}", 1, "client-" + tag));
    return out;
}

void watch(Harness &h, const std::string &tenant, const std::string &collection, bool on)
{
    sync_storage *s = h.storage();
    s->ops->watch(s->ctx, tenant.c_str(), collection.c_str(), on);
}

}  // namespace

TEST_F(RedisStorageTest, RejectsBadUrlsAndPrefixesWithAReason)
{
    const char *bad_urls[] = {"http://x", "redis://", "redis://host:0", "redis://host:99999",
                              "redis://host:1/x", "redis://us%zzer:pw@host"};
    for (const char *url : bad_urls) {
        redis_storage_options opts;
        redis_storage_options_init(&opts);
        opts.url = url;
        char err[256] = "";
        EXPECT_EQ(redis_storage_create(&opts, err, sizeof err), nullptr) << url;
        EXPECT_NE(std::string(err).find(url), std::string::npos) << err;
    }
    redis_storage_options opts;
    redis_storage_options_init(&opts);
    opts.prefix = "has{brace}";
    char err[256] = "";
    EXPECT_EQ(redis_storage_create(&opts, err, sizeof err), nullptr);
    EXPECT_NE(std::string(err).find("--redis-prefix"), std::string::npos) << err;
}

TEST_F(RedisStorageTest, TwoBrokersShareOneOrderAndOneIdempotencyRecord)
{
    auto a = Open(), b = Open();
    ASSERT_TRUE(a->WaitAvailable());
    ASSERT_TRUE(b->WaitAvailable());
    SaveReply first = save(*a, "t", "c", LWW, numbered_events("a", 3));
    SaveReply second = save(*b, "t", "c", LWW, numbered_events("b", 2));
    ASSERT_EQ(first.status, SYNC_STORAGE_OK);
    ASSERT_EQ(second.status, SYNC_STORAGE_OK);
    EXPECT_EQ(second.results[0].seq, 4u) << "broker b continues broker a's log";
    SaveReply again = save(*b, "t", "c", LWW, {numbered_events("a", 1)});
    ASSERT_EQ(again.results.size(), 1u);
    EXPECT_EQ(again.results[0].status, SYNC_SAVE_DUPLICATE);
    EXPECT_EQ(again.results[0].seq, 1u);
    EventsReply all = events_after(*a, "t", "c", 0);
    EXPECT_EQ(seqs_of(all.events), seq_range(1, 5));
    EXPECT_EQ(all.events[3].id, "b-0");
    EXPECT_EQ(std::string(head(*a, "t", "c").head.epoch), std::string(head(*b, "t", "c").head.epoch));
}

TEST_F(RedisStorageTest, AWatchingBrokerAnnouncesTheOtherBrokersEventsInOrderWithOriginZero)
{
    auto a = Open(), b = Open();
    ASSERT_TRUE(a->WaitAvailable());
    ASSERT_TRUE(b->WaitAvailable());
    ListenerRecorder heard_by_b(b->storage());
    watch(*b, "t", "live", true);
    // The subscription is asynchronous: write until b announces something.
    bool subscribed = false;
    for (int i = 0; i < 100 && !subscribed; i++) {
        save(*a, "t", "live", LWW, numbered_events("warm" + std::to_string(i), 1));
        subscribed = b->run_until([&] { return !heard_by_b.seqs("t", "live").empty(); },
                                  std::chrono::milliseconds(100));
    }
    ASSERT_TRUE(subscribed) << "broker b never announced an event of broker a";
    size_t before = heard_by_b.seqs("t", "live").size();
    uint64_t start = head(*a, "t", "live").head.last_seq;
    for (int round = 0; round < 20; round++) {
        std::vector<Event> batch = numbered_events("r" + std::to_string(round), 5);
        for (Event &e : batch)
            e.origin = 77;
        ASSERT_EQ(save(*a, "t", "live", LWW, batch).status, SYNC_STORAGE_OK);
    }
    uint64_t last = start + 100;
    ASSERT_TRUE(b->run_until(
        [&] {
            auto seqs = heard_by_b.seqs("t", "live");
            return !seqs.empty() && seqs.back() == last;
        },
        std::chrono::milliseconds(10000)))
        << "broker b never announced seq " << last;
    auto seqs = heard_by_b.seqs("t", "live");
    std::vector<uint64_t> heard(seqs.begin() + static_cast<long>(before), seqs.end());
    ASSERT_FALSE(heard.empty());
    EXPECT_LE(heard.front(), start + 1);
    EXPECT_TRUE(std::is_sorted(seqs.begin(), seqs.end()));
    EXPECT_EQ(std::adjacent_find(seqs.begin(), seqs.end()), seqs.end()) << "no seq twice";
    for (const auto &call : heard_by_b.calls())
        for (const Event &e : call.events)
            EXPECT_EQ(e.origin, 0u) << "another broker's origin tag means nothing here";
    EXPECT_EQ(heard_by_b.overlaps(), 0u);
    watch(*b, "t", "live", false);
}

TEST_F(RedisStorageTest, RedisDownAnswersUnavailableAndTheStorageRecovers)
{
    RedisServer own;
    std::string error;
    ASSERT_TRUE(own.Start({.append_only = true}, &error)) << error;
    auto h = Open(own.url());
    ASSERT_TRUE(h->WaitAvailable());
    ASSERT_EQ(save(*h, "t", "c", LWW, numbered_events("x", 2)).status, SYNC_STORAGE_OK);

    own.Kill();
    ASSERT_TRUE(h->run_until([&] { return !storage_available(h->storage()); },
                             std::chrono::milliseconds(10000)));
    SaveReply refused = save(*h, "t", "c", LWW, numbered_events("y", 1));
    EXPECT_EQ(refused.status, SYNC_STORAGE_UNAVAILABLE) << "never a false ACCEPTED";
    EXPECT_EQ(head(*h, "t", "c").status, SYNC_STORAGE_UNAVAILABLE);

    ASSERT_TRUE(own.Start({.append_only = true}, &error)) << error;
    ASSERT_TRUE(h->WaitAvailable(std::chrono::milliseconds(20000)))
        << "the storage did not reconnect";
    SaveReply after = save(*h, "t", "c", LWW, numbered_events("y", 1));
    ASSERT_EQ(after.status, SYNC_STORAGE_OK);
    EXPECT_EQ(after.results[0].status, SYNC_SAVE_ACCEPTED);
    EXPECT_EQ(after.results[0].seq, 3u) << "the append-only file kept the log";
}

TEST_F(RedisStorageTest, AStuckRedisTimesOutAsUnavailable)
{
    RedisServer own;
    std::string error;
    ASSERT_TRUE(own.Start(&error)) << error;
    auto h = Open(own.url());
    ASSERT_TRUE(h->WaitAvailable());
    own.Pause();
    SaveReply r = save(*h, "t", "c", LWW, numbered_events("p", 1));
    own.Resume();
    EXPECT_EQ(r.status, SYNC_STORAGE_UNAVAILABLE);
    ASSERT_TRUE(h->WaitAvailable(std::chrono::milliseconds(20000)));
    SaveReply retried = save(*h, "t", "c", LWW, numbered_events("p", 1));
    ASSERT_EQ(retried.status, SYNC_STORAGE_OK);
    // The first attempt may or may not have run in Redis: either way the
    // retry is answered with the one seq the event has.
    EXPECT_TRUE(retried.results[0].status == SYNC_SAVE_ACCEPTED ||
                retried.results[0].status == SYNC_SAVE_DUPLICATE);
    EXPECT_EQ(retried.results[0].seq, 1u);
}

TEST_F(RedisStorageTest, FlushedScriptsAreLoadedAgain)
{
    auto h = Open();
    ASSERT_TRUE(h->WaitAvailable());
    ASSERT_EQ(save(*h, "t", "c", LWW, numbered_events("f", 1)).status, SYNC_STORAGE_OK);
    EXPECT_EQ(g_redis->Cli("SCRIPT FLUSH"), "OK");
    SaveReply failed = save(*h, "t", "c", LWW, numbered_events("g", 1));
    EXPECT_EQ(failed.status, SYNC_STORAGE_UNAVAILABLE) << "NOSCRIPT is a retryable failure";
    SaveReply retried = save(*h, "t", "c", LWW, numbered_events("g", 1));
    ASSERT_EQ(retried.status, SYNC_STORAGE_OK);
    EXPECT_EQ(retried.results[0].seq, 2u);
}

TEST_F(RedisStorageTest, KeysOfACollectionShareOneHashTag)
{
    auto h = Open();
    ASSERT_TRUE(h->WaitAvailable());
    save(*h, "ten/ant", "col{x}", LWW, numbered_events("k", 1));
    std::string keys = g_redis->Cli("--scan --pattern '" + prefix_ + "*'");
    EXPECT_NE(keys.find(prefix_ + "{ten%2Fant/col%7Bx%7D}:log"), std::string::npos) << keys;
    EXPECT_NE(keys.find(prefix_ + "{ten%2Fant/col%7Bx%7D}:docs"), std::string::npos) << keys;
    EXPECT_NE(keys.find(prefix_ + "{ten%2Fant/col%7Bx%7D}:meta"), std::string::npos) << keys;
    EXPECT_NE(keys.find(prefix_ + "collections"), std::string::npos) << keys;
}

TEST_F(RedisStorageTest, TheLogIsTrimmedByCountOldestFirst)
{
    auto h = Open(g_redis->url(), 10);
    ASSERT_TRUE(h->WaitAvailable());
    for (int round = 0; round < 5; round++)
        ASSERT_EQ(save(*h, "t", "c", LWW, numbered_events("r" + std::to_string(round), 5)).status,
                  SYNC_STORAGE_OK);
    HeadReply hr = head(*h, "t", "c");
    EXPECT_EQ(hr.head.last_seq, 25u);
    EXPECT_EQ(hr.head.first_seq, 16u) << "10 entries kept";
    EventsReply all = events_after(*h, "t", "c", 0);
    EXPECT_EQ(seqs_of(all.events), seq_range(16, 25));
    EXPECT_EQ(g_redis->Cli("XLEN " + prefix_ + "{t/c}:log"), "10");
    EXPECT_EQ(g_redis->Cli("HLEN " + prefix_ + "{t/c}:ids"), "10") << "trimmed ids are forgotten";
    EXPECT_EQ(snapshot(*h, "t", "c").documents.size(), 25u) << "documents stay";
    SaveReply recent = save(*h, "t", "c", LWW, {numbered_events("r4", 1)});
    EXPECT_EQ(recent.results[0].status, SYNC_SAVE_DUPLICATE) << "retained ids still deduplicate";
}

TEST_F(RedisStorageTest, ReadsKeepOnlyThisBrokersOrigins)
{
    auto a = Open(), b = Open();
    ASSERT_TRUE(a->WaitAvailable());
    ASSERT_TRUE(b->WaitAvailable());
    std::vector<Event> events = numbered_events("o", 2);
    for (Event &e : events)
        e.origin = 77;
    ASSERT_EQ(save(*a, "t", "c", LWW, events).status, SYNC_STORAGE_OK);
    EventsReply from_a = events_after(*a, "t", "c", 0);
    EventsReply from_b = events_after(*b, "t", "c", 0);
    ASSERT_EQ(from_a.events.size(), 2u);
    ASSERT_EQ(from_b.events.size(), 2u);
    EXPECT_EQ(from_a.events[0].origin, 77u) << "the broker that stored it knows its session";
    EXPECT_EQ(from_b.events[0].origin, 0u) << "another broker's tag could name one of its own sessions";
}
