// Unit and stress tests of the fan-out ring (broker/fanout_ring.c) and of the
// shared, reference-counted event buffer it carries (broker/shared_event.c).
//
// The single-thread tests pin down the contract: EMPTY / OK / OVERRUN at
// their exact boundaries, refused publishes, reset, batch reads, and who
// holds which reference (checked with shared_event_refcount; that the last
// unref really frees, and nothing frees early, is what the ASan/LSan build
// checks). The stress tests run one or several producers against 4 reader
// threads that hold references like pending socket output would, and check
// that every seq was either read exactly once, in order, with the right
// payload, or explicitly skipped after an OVERRUN. Under ThreadSanitizer they
// also check that the payload bytes, written by the producer with plain
// stores, reach readers through a happens-before edge, and that no event is
// freed while a reader still uses it.
//
// Stress size: NEBULA_RING_STRESS_N=<events> overrides the default of
// 2,000,000 (300,000 under sanitizers).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include <event2/buffer.h>

extern "C" {
#include "fanout_ring.h"
#include "shared_event.h"
}

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define RING_TEST_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
#define RING_TEST_SANITIZED 1
#endif
#endif
#ifndef RING_TEST_SANITIZED
#define RING_TEST_SANITIZED 0
#endif

namespace {

// ---- payloads that encode their seq ---------------------------------------

// 8 bytes of seq, then 0..56 bytes derived from it: a torn, stale or foreign
// buffer cannot pass payload_matches().
size_t payload_len(uint64_t seq)
{
    return 8 + size_t(seq % 57);
}

uint8_t payload_byte(uint64_t seq, size_t i)
{
    return uint8_t(seq * 31 + i * 7 + 1);
}

uint64_t origin_of(uint64_t seq)
{
    return seq % 5;
}

shared_event *make_event(uint64_t seq)
{
    size_t len = payload_len(seq);
    shared_event *ev = shared_event_alloc(seq, origin_of(seq), len);
    if (!ev)
        return nullptr;
    std::memcpy(ev->bytes, &seq, 8);
    for (size_t i = 8; i < len; i++)
        ev->bytes[i] = payload_byte(seq, i);
    return ev;
}

bool payload_matches(const shared_event *ev, uint64_t seq)
{
    if (!ev || ev->seq != seq || ev->origin != origin_of(seq) || ev->len != payload_len(seq))
        return false;
    uint64_t stored;
    std::memcpy(&stored, ev->bytes, 8);
    if (stored != seq)
        return false;
    for (size_t i = 8; i < ev->len; i++)
        if (ev->bytes[i] != payload_byte(seq, i))
            return false;
    return true;
}

void publish_range(fanout_ring *ring, uint64_t first, uint64_t last)
{
    for (uint64_t s = first; s <= last; s++)
        ASSERT_EQ(fanout_ring_publish(ring, make_event(s)), RING_PUBLISH_OK) << s;
}

// ---- shared_event ----------------------------------------------------------

TEST(SharedEvent, CreateCopiesBytesWithOneReference)
{
    const char text[] = "hello";
    shared_event *ev = shared_event_create(7, 42, text, 5);
    ASSERT_NE(ev, nullptr);
    EXPECT_EQ(ev->seq, 7u);
    EXPECT_EQ(ev->origin, 42u);
    EXPECT_EQ(ev->len, 5u);
    EXPECT_EQ(std::memcmp(ev->bytes, text, 5), 0);
    EXPECT_EQ(shared_event_refcount(ev), 1u);
    shared_event_ref(ev);
    EXPECT_EQ(shared_event_refcount(ev), 2u);
    shared_event_unref(ev);
    EXPECT_EQ(shared_event_refcount(ev), 1u);
    shared_event_unref(ev);   // frees: LSan reports a leak otherwise
}

TEST(SharedEvent, EmptyPayloadAndNullAreFine)
{
    shared_event *ev = shared_event_create(1, 0, nullptr, 0);
    ASSERT_NE(ev, nullptr);
    EXPECT_EQ(ev->len, 0u);
    shared_event_unref(ev);
    shared_event_ref(nullptr);
    shared_event_unref(nullptr);
}

TEST(SharedEvent, AbsurdLengthFailsCleanly)
{
    EXPECT_EQ(shared_event_alloc(1, 0, SIZE_MAX), nullptr);
    EXPECT_EQ(shared_event_alloc(1, 0, SIZE_MAX - sizeof(shared_event) + 1), nullptr);
}

// The real libevent path: each add_reference carries one reference, and the
// evbuffer drops it once the bytes are drained or the buffer is freed.
TEST(SharedEvent, EvbufferCleanupDropsOneReference)
{
    shared_event *ev = make_event(9);
    ASSERT_NE(ev, nullptr);
    evbuffer *a = evbuffer_new();
    evbuffer *b = evbuffer_new();
    ASSERT_TRUE(a && b);
    for (evbuffer *out : {a, b}) {
        shared_event_ref(ev);
        ASSERT_EQ(evbuffer_add_reference(out, ev->bytes, ev->len, shared_event_evbuffer_cleanup, ev), 0);
    }
    EXPECT_EQ(shared_event_refcount(ev), 3u);
    ASSERT_EQ(evbuffer_get_length(a), ev->len);
    EXPECT_EQ(std::memcmp(evbuffer_pullup(a, -1), ev->bytes, ev->len), 0);
    evbuffer_drain(a, ev->len);   // as if written to the socket
    EXPECT_EQ(shared_event_refcount(ev), 2u);
    evbuffer_free(b);             // as if the connection closed
    EXPECT_EQ(shared_event_refcount(ev), 1u);
    evbuffer_free(a);
    shared_event_unref(ev);
}

// ---- fanout_ring: single-thread contract ------------------------------------

TEST(FanoutRing, CapacityMustBeAPowerOfTwo)
{
    for (size_t bad : {size_t(0), size_t(1), size_t(3), size_t(100), size_t(4097), SIZE_MAX})
        EXPECT_EQ(fanout_ring_create(bad), nullptr) << bad;
    for (size_t good : {size_t(2), size_t(64), size_t(4096)}) {
        fanout_ring *ring = fanout_ring_create(good);
        ASSERT_NE(ring, nullptr) << good;
        EXPECT_EQ(fanout_ring_capacity(ring), good);
        EXPECT_EQ(fanout_ring_last_seq(ring), 0u);
        fanout_ring_free(ring);
    }
    fanout_ring_free(nullptr);
}

TEST(FanoutRing, EmptyBeforePublishOkAfter)
{
    fanout_ring *ring = fanout_ring_create(16);
    shared_event *out = make_event(99);   // must be overwritten with NULL
    shared_event *keep = out;
    EXPECT_EQ(fanout_ring_read(ring, 1, &out), RING_READ_EMPTY);
    EXPECT_EQ(out, nullptr);
    shared_event_unref(keep);

    shared_event *ev = make_event(1);
    ASSERT_EQ(fanout_ring_publish(ring, ev), RING_PUBLISH_OK);
    EXPECT_EQ(fanout_ring_last_seq(ring), 1u);
    EXPECT_EQ(shared_event_refcount(ev), 1u);   // the ring's, taken over from us

    ASSERT_EQ(fanout_ring_read(ring, 1, &out), RING_READ_OK);
    EXPECT_EQ(out, ev);   // the same buffer, not a copy
    EXPECT_TRUE(payload_matches(out, 1));
    EXPECT_EQ(shared_event_refcount(ev), 2u);   // ring + reader

    shared_event *again;
    ASSERT_EQ(fanout_ring_read(ring, 1, &again), RING_READ_OK);
    EXPECT_EQ(again, ev);
    EXPECT_EQ(shared_event_refcount(ev), 3u);   // every read is a new reference
    shared_event_unref(again);
    shared_event_unref(out);
    EXPECT_EQ(shared_event_refcount(ev), 1u);

    EXPECT_EQ(fanout_ring_read(ring, 2, &out), RING_READ_EMPTY);
    EXPECT_EQ(fanout_ring_read(ring, UINT64_MAX, &out), RING_READ_EMPTY);
    fanout_ring_free(ring);
}

TEST(FanoutRing, SeqZeroIsNeverInTheRing)
{
    fanout_ring *ring = fanout_ring_create(4);
    shared_event *out;
    EXPECT_EQ(fanout_ring_read(ring, 0, &out), RING_READ_OVERRUN);   // empty slots hold 0
    publish_range(ring, 1, 2);
    EXPECT_EQ(fanout_ring_read(ring, 0, &out), RING_READ_OVERRUN);
    EXPECT_EQ(out, nullptr);
    fanout_ring_free(ring);
}

TEST(FanoutRing, ReaderReferenceOutlivesOverwrite)
{
    fanout_ring *ring = fanout_ring_create(4);
    publish_range(ring, 1, 1);
    shared_event *held;
    ASSERT_EQ(fanout_ring_read(ring, 1, &held), RING_READ_OK);
    EXPECT_EQ(shared_event_refcount(held), 2u);

    publish_range(ring, 2, 5);   // 5 reuses the slot of 1 and drops the ring's reference
    EXPECT_EQ(shared_event_refcount(held), 1u);   // only the reader's is left
    EXPECT_TRUE(payload_matches(held, 1));         // still alive and intact
    shared_event *out;
    EXPECT_EQ(fanout_ring_read(ring, 1, &out), RING_READ_OVERRUN);
    shared_event_unref(held);   // the last reference: frees (ASan: no leak, no UAF)
    fanout_ring_free(ring);
}

TEST(FanoutRing, OverrunAtExactlyCapacityBehind)
{
    const uint64_t cap = 8;
    fanout_ring *ring = fanout_ring_create(cap);
    for (uint64_t last = 1; last <= 4 * cap; last++) {
        publish_range(ring, last, last);
        for (uint64_t r = 1; r <= last + 2; r++) {
            shared_event *out;
            ring_read_status st = fanout_ring_read(ring, r, &out);
            if (r > last) {
                EXPECT_EQ(st, RING_READ_EMPTY) << "last " << last << " r " << r;
            } else if (last - r < cap) {   // the newest `cap` events
                ASSERT_EQ(st, RING_READ_OK) << "last " << last << " r " << r;
                EXPECT_TRUE(payload_matches(out, r));
                shared_event_unref(out);
            } else {                       // r + cap <= last
                EXPECT_EQ(st, RING_READ_OVERRUN) << "last " << last << " r " << r;
                EXPECT_EQ(out, nullptr);
            }
        }
    }
    fanout_ring_free(ring);
}

TEST(FanoutRing, PublishWithWrongSeqIsRefused)
{
    fanout_ring *ring = fanout_ring_create(8);
    EXPECT_EQ(fanout_ring_publish(ring, nullptr), RING_PUBLISH_BAD_SEQ);

    shared_event *two = make_event(2);
    EXPECT_EQ(fanout_ring_publish(ring, two), RING_PUBLISH_BAD_SEQ);   // gap
    EXPECT_EQ(shared_event_refcount(two), 1u);   // still ours
    EXPECT_EQ(fanout_ring_last_seq(ring), 0u);

    shared_event *zero = make_event(0);
    EXPECT_EQ(fanout_ring_publish(ring, zero), RING_PUBLISH_BAD_SEQ);
    shared_event_unref(zero);

    publish_range(ring, 1, 1);
    shared_event *one_again = make_event(1);
    EXPECT_EQ(fanout_ring_publish(ring, one_again), RING_PUBLISH_BAD_SEQ);   // repeat
    shared_event_unref(one_again);
    shared_event *three = make_event(3);
    EXPECT_EQ(fanout_ring_publish(ring, three), RING_PUBLISH_BAD_SEQ);       // gap
    shared_event_unref(three);

    EXPECT_EQ(fanout_ring_publish(ring, two), RING_PUBLISH_OK);   // now it fits
    EXPECT_EQ(fanout_ring_last_seq(ring), 2u);
    fanout_ring_free(ring);
}

TEST(FanoutRing, ResetToStartsAtAnySeqAndDropsHeldEvents)
{
    fanout_ring *ring = fanout_ring_create(8);
    shared_event *out;

    EXPECT_EQ(fanout_ring_reset_to(ring, 0), RING_PUBLISH_BAD_SEQ);
    EXPECT_EQ(fanout_ring_reset_to(ring, UINT64_MAX), RING_PUBLISH_BAD_SEQ);
    EXPECT_EQ(fanout_ring_last_seq(ring), 0u);

    // A ring created for a collection whose log already has 1000 events.
    EXPECT_EQ(fanout_ring_reset_to(ring, 1001), RING_PUBLISH_OK);
    EXPECT_EQ(fanout_ring_last_seq(ring), 1000u);
    EXPECT_EQ(fanout_ring_read(ring, 1000, &out), RING_READ_OVERRUN);   // only in storage
    EXPECT_EQ(fanout_ring_read(ring, 995, &out), RING_READ_OVERRUN);
    EXPECT_EQ(fanout_ring_read(ring, 1001, &out), RING_READ_EMPTY);
    shared_event *early = make_event(1);
    EXPECT_EQ(fanout_ring_publish(ring, early), RING_PUBLISH_BAD_SEQ);
    shared_event_unref(early);
    publish_range(ring, 1001, 1003);
    ASSERT_EQ(fanout_ring_read(ring, 1002, &out), RING_READ_OK);
    EXPECT_TRUE(payload_matches(out, 1002));

    // A reset (new epoch) drops the ring's references; readers keep theirs.
    EXPECT_EQ(fanout_ring_reset_to(ring, 1), RING_PUBLISH_OK);
    EXPECT_EQ(shared_event_refcount(out), 1u);
    EXPECT_TRUE(payload_matches(out, 1002));
    shared_event_unref(out);
    EXPECT_EQ(fanout_ring_last_seq(ring), 0u);
    EXPECT_EQ(fanout_ring_read(ring, 1, &out), RING_READ_EMPTY);
    EXPECT_EQ(fanout_ring_read(ring, 1002, &out), RING_READ_EMPTY);   // old cursor: caller's business
    publish_range(ring, 1, 3);
    ASSERT_EQ(fanout_ring_read(ring, 3, &out), RING_READ_OK);
    EXPECT_TRUE(payload_matches(out, 3));
    shared_event_unref(out);
    fanout_ring_free(ring);
}

TEST(FanoutRing, FreeDropsTheRingsReferences)
{
    fanout_ring *ring = fanout_ring_create(4);
    std::vector<shared_event *> probes;
    for (uint64_t s = 1; s <= 6; s++) {
        shared_event *ev = make_event(s);
        shared_event_ref(ev);   // the test's probe reference
        probes.push_back(ev);
        ASSERT_EQ(fanout_ring_publish(ring, ev), RING_PUBLISH_OK);
    }
    for (uint64_t s = 1; s <= 6; s++)   // 1 and 2 were overwritten, 3..6 held
        EXPECT_EQ(shared_event_refcount(probes[s - 1]), s <= 2 ? 1u : 2u) << s;
    fanout_ring_free(ring);
    for (shared_event *ev : probes) {
        EXPECT_EQ(shared_event_refcount(ev), 1u);
        shared_event_unref(ev);
    }
}

TEST(FanoutRing, BatchReadStopsAtTheEdges)
{
    fanout_ring *ring = fanout_ring_create(8);
    shared_event *out[16];
    size_t n = 99;
    EXPECT_EQ(fanout_ring_read_batch(ring, 1, out, 16, &n), RING_READ_EMPTY);
    EXPECT_EQ(n, 0u);
    publish_range(ring, 1, 10);   // holds 3..10

    EXPECT_EQ(fanout_ring_read_batch(ring, 2, out, 16, &n), RING_READ_OVERRUN);
    EXPECT_EQ(n, 0u);
    ASSERT_EQ(fanout_ring_read_batch(ring, 3, out, 16, &n), RING_READ_OK);
    ASSERT_EQ(n, 8u);   // stops after the newest
    for (size_t i = 0; i < n; i++) {
        EXPECT_TRUE(payload_matches(out[i], 3 + i));
        shared_event_unref(out[i]);
    }
    ASSERT_EQ(fanout_ring_read_batch(ring, 5, out, 2, &n), RING_READ_OK);
    ASSERT_EQ(n, 2u);   // stops at max
    EXPECT_TRUE(payload_matches(out[0], 5));
    EXPECT_TRUE(payload_matches(out[1], 6));
    shared_event_unref(out[0]);
    shared_event_unref(out[1]);
    EXPECT_EQ(fanout_ring_read_batch(ring, 11, out, 16, &n), RING_READ_EMPTY);
    EXPECT_EQ(fanout_ring_read_batch(ring, 3, out, 0, &n), RING_READ_OK);
    EXPECT_EQ(n, 0u);
    fanout_ring_free(ring);
}

// ---- stress ----------------------------------------------------------------

uint64_t stress_events()
{
    if (const char *env = std::getenv("NEBULA_RING_STRESS_N")) {
        uint64_t n = std::strtoull(env, nullptr, 10);
        if (n > 0)
            return n;
    }
    return RING_TEST_SANITIZED ? 300000 : 2000000;
}

constexpr int kReaders = 4;
constexpr size_t kHeld = 64;   // references a reader keeps, like pending socket output

struct StressConfig {
    size_t capacity;
    int producers;
    bool flow_control;   // producers never get more than capacity/2 ahead of the slowest reader
};

// Producers yield the CPU every kPace events, so that on a machine with fewer
// cores than threads the readers still run between a producer's time slices
// and the ring sees concurrent reads, overwrites and overruns, not just one
// thread at a time. Affects only the mix of outcomes, never what is asserted.
constexpr uint64_t kPace = 256;

// What one reader saw, per seq: 0 untouched, 1 read, 2 skipped after OVERRUN.
struct ReaderLog {
    std::vector<uint8_t> seen;
    uint64_t read = 0, skipped = 0, overruns = 0, bad_payloads = 0, out_of_order = 0;
    std::atomic<uint64_t> cursor{1};   // next seq wanted; read by flow-controlled producers
};

struct Stress {
    StressConfig cfg;
    uint64_t n;
    fanout_ring *ring;
    std::mutex order;               // stands in for the storage's per-collection order
    uint64_t next_seq = 1;          // guarded by `order`
    std::atomic<uint64_t> publish_failures{0};
    std::atomic<bool> failed{false};
    ReaderLog logs[kReaders];

    uint64_t slowest_cursor() const
    {
        uint64_t min = UINT64_MAX;
        for (const ReaderLog &log : logs)
            min = std::min(min, log.cursor.load(std::memory_order_acquire));
        return min;
    }

    // Under flow control, wait until publishing seq keeps every reader less
    // than capacity/2 behind, so that an OVERRUN would be a ring bug.
    void wait_for_room(uint64_t seq)
    {
        while (cfg.flow_control && seq >= slowest_cursor() + cfg.capacity / 2 && !failed)
            std::this_thread::yield();
    }

    void producer()
    {
        for (;;) {
            std::lock_guard<std::mutex> lock(order);
            uint64_t seq = next_seq;
            if (seq > n)
                return;
            wait_for_room(seq);
            shared_event *ev = make_event(seq);
            if (!ev || fanout_ring_publish(ring, ev) != RING_PUBLISH_OK) {
                publish_failures++;
                failed = true;
                shared_event_unref(ev);
                return;
            }
            next_seq = seq + 1;
            if (seq % kPace == 0)
                std::this_thread::yield();
        }
    }

    void reader(ReaderLog &log)
    {
        log.seen.assign(n + 1, 0);
        std::deque<shared_event *> held;
        uint64_t cursor = 1, last_read = 0;
        while (cursor <= n && !failed) {
            shared_event *ev;
            switch (fanout_ring_read(ring, cursor, &ev)) {
            case RING_READ_OK:
                if (!payload_matches(ev, cursor))
                    log.bad_payloads++;
                if (cursor <= last_read || log.seen[cursor] != 0)
                    log.out_of_order++;
                log.seen[cursor] = 1;
                log.read++;
                last_read = cursor++;
                held.push_back(ev);
                if (held.size() > kHeld) {
                    shared_event_unref(held.front());
                    held.pop_front();
                }
                break;
            case RING_READ_EMPTY:
                std::this_thread::yield();
                break;
            case RING_READ_OVERRUN: {
                // Catch up "from storage": jump to half a ring behind the head
                // and account for the gap.
                log.overruns++;
                uint64_t last = fanout_ring_last_seq(ring);
                uint64_t resume = last > cfg.capacity / 2 ? last - cfg.capacity / 2 : 1;
                if (resume <= cursor) {   // OVERRUN means the head is >= cursor + capacity - 1
                    log.out_of_order++;
                    resume = cursor + 1;
                }
                for (uint64_t s = cursor; s < resume; s++) {
                    if (log.seen[s] != 0)
                        log.out_of_order++;
                    log.seen[s] = 2;
                    log.skipped++;
                }
                cursor = resume;
                break;
            }
            }
            log.cursor.store(cursor, std::memory_order_release);
        }
        for (shared_event *ev : held)
            shared_event_unref(ev);
    }

    void run()
    {
        ring = fanout_ring_create(cfg.capacity);
        ASSERT_NE(ring, nullptr);
        std::vector<std::thread> threads;
        for (ReaderLog &log : logs)
            threads.emplace_back([this, &log] { reader(log); });
        for (int p = 0; p < cfg.producers; p++)
            threads.emplace_back([this] { producer(); });
        for (std::thread &t : threads)
            t.join();
        fanout_ring_free(ring);
    }

    void check()
    {
        EXPECT_EQ(publish_failures.load(), 0u);
        EXPECT_EQ(next_seq, n + 1);
        for (int r = 0; r < kReaders; r++) {
            const ReaderLog &log = logs[r];
            EXPECT_EQ(log.bad_payloads, 0u) << "reader " << r;
            EXPECT_EQ(log.out_of_order, 0u) << "reader " << r;
            EXPECT_EQ(log.read + log.skipped, n) << "reader " << r;
            uint64_t untouched = 0;
            for (uint64_t s = 1; s <= n; s++)
                untouched += log.seen[s] == 0;
            EXPECT_EQ(untouched, 0u) << "reader " << r;
            if (cfg.flow_control) {
                EXPECT_EQ(log.overruns, 0u) << "reader " << r;
            }
            std::printf("  reader %d: read %llu, skipped %llu in %llu overruns\n", r,
                        (unsigned long long)log.read, (unsigned long long)log.skipped,
                        (unsigned long long)log.overruns);
        }
    }
};

void run_stress(StressConfig cfg)
{
    Stress stress;
    stress.cfg = cfg;
    stress.n = stress_events();
    std::printf("  %llu events, capacity %zu, %d producer(s), %d readers%s\n",
                (unsigned long long)stress.n, cfg.capacity, cfg.producers, kReaders,
                cfg.flow_control ? ", flow control" : "");
    auto start = std::chrono::steady_clock::now();
    stress.run();
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("  %.2f s, %.0f events/s published\n", secs, double(stress.n) / secs);
    stress.check();
}

TEST(FanoutRingStress, OneProducerFourReadersBigRing)
{
    run_stress({4096, 1, false});
}

TEST(FanoutRingStress, OneProducerFourReadersSmallRingOverruns)
{
    run_stress({64, 1, false});
}

TEST(FanoutRingStress, ReadersKeepingUpNeverOverrun)
{
    run_stress({4096, 1, true});
}

TEST(FanoutRingStress, SeveralSerialisedProducersFourReaders)
{
    run_stress({1024, 3, false});
}

TEST(FanoutRingStress, SeveralSerialisedProducersSmallRing)
{
    run_stress({64, 3, false});
}

// Readers that always ask for a seq at the edge of the ring (just overwritten,
// being overwritten, the oldest held, the newest, the next): the case the
// slot protocol exists for. Every answer must be consistent with last_seq
// observed before and after the read, and an OK must carry the right event.
TEST(FanoutRingStress, ReadersAtTheOverwriteBoundary)
{
    const size_t cap = 4;
    const uint64_t n = stress_events() / 4;
    fanout_ring *ring = fanout_ring_create(cap);
    std::atomic<bool> done{false};
    std::atomic<uint64_t> errors{0}, oks{0}, empties{0}, overruns{0};

    auto reader = [&](unsigned seed) {
        std::mt19937_64 rng(seed);
        shared_event *held = nullptr;
        while (!done.load(std::memory_order_relaxed)) {
            uint64_t before = fanout_ring_last_seq(ring);
            uint64_t r = before + 2 > cap + 1 ? before + 2 - (cap + 1) : 1;
            r += rng() % (cap + 2);   // from before - cap + 1 (about to go) to before + 2
            if (r == 0)
                r = 1;
            shared_event *ev;
            ring_read_status st = fanout_ring_read(ring, r, &ev);
            uint64_t after = fanout_ring_last_seq(ring);
            switch (st) {
            case RING_READ_OK:
                oks++;
                // Published by `after`, and not overwritten before the read started.
                if (r > after || !payload_matches(ev, r) || r + cap <= before)
                    errors++;
                shared_event_unref(held);   // keep one across reads
                held = ev;
                break;
            case RING_READ_EMPTY:
                empties++;
                if (r <= before)   // was published before the read started
                    errors++;
                break;
            case RING_READ_OVERRUN:
                overruns++;
                // The seq that reuses r's slot had at least started by `after`.
                if (r + cap > after + 1)
                    errors++;
                break;
            }
        }
        shared_event_unref(held);
    };

    std::vector<std::thread> readers;
    for (int i = 0; i < kReaders; i++)
        readers.emplace_back(reader, 1234u + unsigned(i));
    for (uint64_t s = 1; s <= n; s++) {
        if (fanout_ring_publish(ring, make_event(s)) != RING_PUBLISH_OK) {
            errors++;
            break;
        }
    }
    done = true;
    for (std::thread &t : readers)
        t.join();
    fanout_ring_free(ring);
    std::printf("  %llu events: %llu OK, %llu EMPTY, %llu OVERRUN\n", (unsigned long long)n,
                (unsigned long long)oks.load(), (unsigned long long)empties.load(),
                (unsigned long long)overruns.load());
    EXPECT_EQ(errors.load(), 0u);
}


// reset_to while readers read: the reset clears every slot with the same
// protocol as publish, so it must be just as memory-safe. Payloads depend
// only on the seq, so an OK from either numbering must still match.
TEST(FanoutRingStress, ResetWhileReading)
{
    const size_t cap = 8;
    const uint64_t n = stress_events() / 8;
    fanout_ring *ring = fanout_ring_create(cap);
    std::atomic<bool> done{false};
    std::atomic<uint64_t> errors{0}, oks{0};

    auto reader = [&](unsigned seed) {
        std::mt19937_64 rng(seed);
        shared_event *held = nullptr;
        while (!done.load(std::memory_order_relaxed)) {
            uint64_t last = fanout_ring_last_seq(ring);
            uint64_t r = (last > cap ? last - cap : 1) + rng() % (cap + 2);
            shared_event *ev;
            if (fanout_ring_read(ring, r, &ev) == RING_READ_OK) {
                oks++;
                if (!payload_matches(ev, r))
                    errors++;
                shared_event_unref(held);
                held = ev;
            }
        }
        shared_event_unref(held);
    };

    std::vector<std::thread> readers;
    for (int i = 0; i < kReaders; i++)
        readers.emplace_back(reader, 99u + unsigned(i));
    std::mt19937_64 rng(7);
    uint64_t seq = 1;
    for (uint64_t i = 0; i < n; i++) {
        if (rng() % 4 == 0) {   // a new epoch: restart low, or jump ahead
            seq = rng() % 2 ? 1 + rng() % 100 : seq + rng() % 1000;
            if (fanout_ring_reset_to(ring, seq) != RING_PUBLISH_OK)
                errors++;
        }
        if (fanout_ring_publish(ring, make_event(seq)) != RING_PUBLISH_OK)
            errors++;
        seq++;
    }
    done = true;
    for (std::thread &t : readers)
        t.join();
    fanout_ring_free(ring);
    std::printf("  %llu publishes with resets: %llu OK reads\n", (unsigned long long)n,
                (unsigned long long)oks.load());
    EXPECT_EQ(errors.load(), 0u);
}

}  // namespace
