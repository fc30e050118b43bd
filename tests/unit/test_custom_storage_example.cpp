// Tests of the documentation example docs/examples/custom_storage.c (the
// journal storage): the storage contract suite (tests/storage_contract)
// instantiated for it, with and without a journal, plus what
// custom_storage.h adds: one JSON line per accepted event, in seq order, and
// new epochs for a new instance.
#include <gtest/gtest.h>

#include <jansson.h>

#include <chrono>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

extern "C" {
#include "custom_storage.h"
#include "sync_storage.h"
}

#include "storage_contract.h"

using namespace storage_contract;

namespace {

// Completes every call before it returns: waiting only checks that it did.
class JournalHarness : public Harness {
public:
    JournalHarness(sync_storage *s, FILE *journal) : s_(s), journal_(journal) {}
    ~JournalHarness() override
    {
        sync_storage_destroy(s_);
        if (journal_ != nullptr)
            std::fclose(journal_);
    }
    sync_storage *storage() override { return s_; }
    bool run_until(const std::function<bool()> &done, std::chrono::milliseconds) override
    {
        return done();
    }

private:
    sync_storage *s_;
    FILE *journal_;
};

// No size cap: tests that ask for one are skipped (nullptr).
std::unique_ptr<Harness> make_harness(const Limits &limits, bool with_journal)
{
    if (limits.max_events != 0 || limits.max_bytes != 0)
        return nullptr;
    FILE *journal = with_journal ? std::tmpfile() : nullptr;
    if (with_journal && journal == nullptr)
        return nullptr;
    sync_storage *s = journal_storage_create(journal);
    if (s == nullptr) {
        if (journal != nullptr)
            std::fclose(journal);
        return nullptr;
    }
    return std::make_unique<JournalHarness>(s, journal);
}

}  // namespace

INSTANTIATE_TEST_SUITE_P(
    CustomExample, StorageContract,
    ::testing::Values(
        Backend{"journal", [](const Limits &l) { return make_harness(l, true); }},
        Backend{"no_journal", [](const Limits &l) { return make_harness(l, false); }}),
    BackendName);

namespace {

// A journal storage writing to a temporary file, and that file's lines.
class JournalStorage : public ::testing::Test {
protected:
    void SetUp() override
    {
        file_ = std::tmpfile();
        ASSERT_NE(file_, nullptr);
        sync_storage *s = journal_storage_create(file_);
        ASSERT_NE(s, nullptr);
        harness_ = std::make_unique<JournalHarness>(s, nullptr);
    }
    void TearDown() override
    {
        harness_.reset();
        std::fclose(file_);
    }
    Harness &h() { return *harness_; }

    // Every line written so far, each parsed as JSON (null when it is not).
    std::vector<json_t *> lines()
    {
        std::fflush(file_);
        std::rewind(file_);
        std::string text;
        char buf[4096];
        size_t n;
        while ((n = std::fread(buf, 1, sizeof buf, file_)) > 0)
            text.append(buf, n);
        EXPECT_TRUE(text.empty() || text.back() == '\n') << "every line is complete";
        std::vector<json_t *> out;
        size_t start = 0, end;
        while ((end = text.find('\n', start)) != std::string::npos) {
            std::string line = text.substr(start, end - start);
            json_error_t err;
            json_t *j = json_loads(line.c_str(), 0, &err);
            EXPECT_TRUE(json_is_object(j)) << "not a JSON object: " << line << " (" << err.text << ")";
            out.push_back(j);
            parsed_.push_back(j);
            start = end + 1;
        }
        return out;
    }

    ~JournalStorage() override
    {
        for (json_t *j : parsed_)
            json_decref(j);
    }

    FILE *file_ = nullptr;
    std::unique_ptr<Harness> harness_;
    std::vector<json_t *> parsed_;
};

std::string str(json_t *line, const char *key)
{
    const char *s = json_string_value(json_object_get(line, key));
    return s != nullptr ? s : "<not a string>";
}

uint64_t num(json_t *line, const char *key)
{
    return static_cast<uint64_t>(json_integer_value(json_object_get(line, key)));
}

}  // namespace

TEST_F(JournalStorage, OneJsonLinePerAcceptedEventOnly)
{
    // A document with every character JSON must escape, newline included.
    const std::string awkward = "{\"q\":\"a\\\"b\",\n\t\"u\":\"\xc3\xa9\"}";
    Event first = insert_event("e1", "d1", awkward, 10, "client-a");
    first.timestamp_ms = 1234;
    Event invalid = insert_event("", "d9", "{}");
    SaveReply r = save(h(), "t", "c", SYNC_LAST_WRITE_WINS,
                       {first,
                        insert_event("e1", "d1", "{}", 50),            // duplicate
                        update_event("e2", "d1", "{}", 5),             // conflict
                        invalid,                                       // rejected
                        delete_event("e3", "d1", 11, "client-b")});    // accepted
    ASSERT_EQ(r.results.size(), 5u);
    save(h(), "t2", "other", SYNC_CLIENT_WINS, {insert_event("x1", "d", "{}")});
    save(h(), "t", "c", SYNC_LAST_WRITE_WINS, {insert_event("e1", "d1", "{}", 99)});  // duplicate

    std::vector<json_t *> got = lines();
    ASSERT_EQ(got.size(), 3u) << "three events were accepted";
    EXPECT_EQ(str(got[0], "tenant"), "t");
    EXPECT_EQ(str(got[0], "collection"), "c");
    EXPECT_EQ(num(got[0], "seq"), 1u);
    EXPECT_EQ(str(got[0], "id"), "e1");
    EXPECT_EQ(str(got[0], "type"), "insert");
    EXPECT_EQ(str(got[0], "document_id"), "d1");
    EXPECT_EQ(str(got[0], "client_id"), "client-a");
    EXPECT_EQ(num(got[0], "hlc"), 10u);
    EXPECT_EQ(num(got[0], "timestamp_ms"), 1234u);
    EXPECT_EQ(str(got[0], "data"), awkward) << "the document, byte for byte";

    EXPECT_EQ(num(got[1], "seq"), 2u);
    EXPECT_EQ(str(got[1], "id"), "e3");
    EXPECT_EQ(str(got[1], "type"), "delete");
    EXPECT_TRUE(json_is_null(json_object_get(got[1], "data")));

    EXPECT_EQ(str(got[2], "tenant"), "t2");
    EXPECT_EQ(str(got[2], "collection"), "other");
    EXPECT_EQ(num(got[2], "seq"), 1u);
}

TEST_F(JournalStorage, ConcurrentSavesJournalEachCollectionInSeqOrder)
{
    constexpr int kThreads = 4;
    constexpr int kPerThread = 500;
    std::vector<std::thread> threads;
    Harness &harness = h();
    for (int t = 0; t < kThreads; t++) {
        threads.emplace_back([&, t] {
            for (int i = 0; i < kPerThread; i++) {
                Event e = update_event("t" + std::to_string(t) + "-" + std::to_string(i),
                                       "doc-" + std::to_string(i % 8), "{}", i,
                                       "client-" + std::to_string(t));
                save(harness, "t", i % 2 == 0 ? "even" : "odd", SYNC_CLIENT_WINS, {e});
            }
        });
    }
    for (std::thread &th : threads)
        th.join();

    std::map<std::string, std::vector<uint64_t>> seqs;
    for (json_t *line : lines())
        seqs[str(line, "collection")].push_back(num(line, "seq"));
    const uint64_t per_collection = kThreads * kPerThread / 2;
    EXPECT_EQ(seqs["even"], seq_range(1, per_collection));
    EXPECT_EQ(seqs["odd"], seq_range(1, per_collection));
}

TEST(JournalStorageInstances, ANewInstanceGivesNewEpochs)
{
    // Nothing survives a restart, so a new instance must not reuse epochs.
    auto epoch_of = [](sync_storage *s) {
        std::string epoch;
        s->ops->head(
            s->ctx, "t", "c",
            [](void *out, int status, const sync_head *head) {
                EXPECT_EQ(status, SYNC_STORAGE_OK);
                *static_cast<std::string *>(out) = head->epoch;
            },
            &epoch);
        return epoch;
    };
    sync_storage *a = journal_storage_create(nullptr);
    sync_storage *b = journal_storage_create(nullptr);
    ASSERT_NE(a, nullptr);
    ASSERT_NE(b, nullptr);
    std::string ea = epoch_of(a);
    EXPECT_FALSE(ea.empty());
    EXPECT_EQ(epoch_of(a), ea) << "stable within one instance";
    EXPECT_NE(epoch_of(b), ea);
    sync_storage_destroy(a);
    sync_storage_destroy(b);
}
