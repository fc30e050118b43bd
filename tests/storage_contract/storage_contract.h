// storage_contract: the promises of storage/sync_storage.h as one GoogleTest
// suite that runs against every storage implementation.
//
// The tests use the sync_storage interface only. An implementation joins by
// describing itself as a Backend (a factory of fresh, empty storages) and
// instantiating the suite in its own test file:
//
//     INSTANTIATE_TEST_SUITE_P(Memory, StorageContract,
//                              ::testing::Values(memory_backend()), BackendName);
//
// Completion may come before a call returns (memory) or later from the
// calling thread's event loop (Redis): every helper below waits through
// Harness::run_until, which the backend implements for its own machinery.
#ifndef NEBULA_STORAGE_CONTRACT_H
#define NEBULA_STORAGE_CONTRACT_H

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

extern "C" {
#include "sync_storage.h"
}

namespace storage_contract {

// Size caps a test asks for; 0 leaves the backend's default.
struct Limits {
    size_t max_events = 0;
    size_t max_bytes = 0;
};

// One storage under test and the way to wait for its completions.
class Harness {
public:
    virtual ~Harness() = default;
    virtual sync_storage *storage() = 0;
    // Delivers completions due to the calling thread (runs its event loop)
    // until done() holds or timeout passes; returns done(). Called from any
    // thread that made storage calls, concurrently. For a storage that
    // completes inline it only checks done().
    virtual bool run_until(const std::function<bool()> &done, std::chrono::milliseconds timeout) = 0;
};

struct Backend {
    const char *name;
    // A fresh storage holding no data (every test starts from nothing), or
    // nullptr when the backend cannot honour the limits: those tests skip.
    std::function<std::unique_ptr<Harness>(const Limits &)> create;
};

inline void PrintTo(const Backend &b, std::ostream *os) { *os << b.name; }
std::string BackendName(const ::testing::TestParamInfo<Backend> &info);

constexpr std::chrono::milliseconds kCallTimeout{10000};

// ---- owned copies of what goes in and comes out ---------------------------

struct Event {
    std::string id;
    sync_event_type type = SYNC_EVENT_INSERT;
    std::string document_id;
    std::string data;           // empty: data NULL
    int64_t timestamp_ms = 1000;
    uint64_t hlc = 1;
    std::string client_id = "client-a";
    uint64_t base_seq = 0;
    uint64_t seq = 0;
    uint64_t origin = 0;
};

Event insert_event(const std::string &id, const std::string &doc, const std::string &data,
                   uint64_t hlc = 1, const std::string &client = "client-a");
Event update_event(const std::string &id, const std::string &doc, const std::string &data,
                   uint64_t hlc = 1, const std::string &client = "client-a");
Event delete_event(const std::string &id, const std::string &doc, uint64_t hlc = 1,
                   const std::string &client = "client-a");
// A borrowed view of e, valid while e lives.
sync_event view(const Event &e);
Event copy_event(const sync_event &e);

struct Doc {
    std::string document_id;
    std::string data;
    uint64_t seq = 0;
    uint64_t hlc = 0;
    std::string client_id;
    bool deleted = false;
};

struct Result {
    sync_save_status status = SYNC_SAVE_REJECTED;
    uint64_t seq = 0;
    Doc winner;
    std::string reason;
    bool retryable = false;
};

struct SaveReply {
    int calls = 0;
    int status = 1;             // not a sync_storage_status until the callback ran
    std::vector<Result> results;
};

struct EventsReply {
    int calls = 0;
    int status = 1;
    std::vector<Event> events;
    sync_head head{};
    bool complete = false;
};

struct SnapshotReply {
    int calls = 0;
    int status = 1;
    std::vector<Doc> documents;
    sync_head head{};
};

struct HeadReply {
    int calls = 0;
    int status = 1;
    sync_head head{};
};

struct CountReply {
    int calls = 0;
    int status = 1;
    uint64_t count = 0;
};

// ---- blocking helpers: one storage call each, waited for via run_until ----
// A call that does not complete in kCallTimeout is a test failure.

// on_done runs inside the completion callback, before its results are read
// (to observe what happened before completion, e.g. listener calls).
SaveReply save(Harness &h, const std::string &tenant, const std::string &collection,
               sync_conflict_strategy strategy, const std::vector<Event> &events,
               const std::function<void()> &on_done = {});
SaveReply save_raw(Harness &h, const char *tenant, const char *collection,
                   sync_conflict_strategy strategy, const std::vector<sync_event> &events,
                   const std::function<void()> &on_done = {});
EventsReply events_after(Harness &h, const std::string &tenant, const std::string &collection,
                         uint64_t after_seq, size_t limit = SIZE_MAX);
// after_seq empty: NULL (0 for every collection).
std::vector<EventsReply> events_for_client(Harness &h, const std::string &tenant,
                                           const std::string &client_id,
                                           const std::vector<std::string> &collections,
                                           const std::vector<uint64_t> &after_seq,
                                           size_t limit = SIZE_MAX);
CountReply clear_events_before(Harness &h, int64_t before_ms);
SnapshotReply snapshot(Harness &h, const std::string &tenant, const std::string &collection);
HeadReply head(Harness &h, const std::string &tenant, const std::string &collection);

std::vector<uint64_t> seqs_of(const std::vector<Event> &events);
std::vector<uint64_t> seq_range(uint64_t first, uint64_t last);

// Installs itself as the storage's listener for its lifetime and records
// every call (copied), per collection, and whether two calls for one
// collection ever overlapped.
class ListenerRecorder {
public:
    explicit ListenerRecorder(sync_storage *storage);
    ~ListenerRecorder();
    ListenerRecorder(const ListenerRecorder &) = delete;
    ListenerRecorder &operator=(const ListenerRecorder &) = delete;

    struct Call {
        std::string tenant;
        std::string collection;
        std::vector<Event> events;
    };
    std::vector<Call> calls() const;
    // Every announced seq of one collection, in announcement order.
    std::vector<uint64_t> seqs(const std::string &tenant, const std::string &collection) const;
    size_t overlaps() const { return overlaps_.load(); }

private:
    static void on_events(void *self, const char *tenant, const char *collection,
                          const sync_event *events, size_t count);
    sync_storage *storage_;
    mutable std::mutex mu_;
    std::vector<Call> calls_;
    std::map<std::pair<std::string, std::string>, int> active_;
    std::atomic<size_t> overlaps_{0};
};

class StorageContract : public ::testing::TestWithParam<Backend> {
protected:
    void SetUp() override;
    void TearDown() override;
    // Replaces the storage with a fresh one under limits; false when the
    // backend cannot honour them (then GTEST_SKIP).
    bool reopen(const Limits &limits);
    Harness &h() { return *harness_; }
    sync_storage *storage() { return harness_->storage(); }

    std::unique_ptr<Harness> harness_;
};

}  // namespace storage_contract

#endif
