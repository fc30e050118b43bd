// Micro-benchmarks of the fan-out ring (broker/fanout_ring.h) and the shared
// events it carries (broker/shared_event.h).
//
// Single thread: publish with the event's malloc + fill + free included (what
// the broker pays per accepted event) and with recycled events (the ring
// alone); read + unref, one by one and 64 at a time.
//
// Fan-out: 1 producer publishes 65,536 events into a 4096-slot ring while R
// reader threads (1, 2, 4, 8) each read every seq in order, holding their
// last 64 references like pending socket output would.
//   - FreeRunning: the producer never waits; a reader that is overrun skips
//     ahead (the broker catches up from storage instead). Time is the
//     producer's, so items/s is events published per second; counters give
//     the readers' total reads/s and the share of seqs they had to skip.
//   - Paced: the producer stays less than capacity/2 ahead of the slowest
//     reader, so every reader reads every event. Time runs until the last
//     reader is done, so items/s is events delivered to all readers per second.
// With fewer cores than threads, readers and producer share CPUs and the
// numbers say more about the scheduler than about the ring.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "fanout_ring.h"
#include "shared_event.h"

namespace {

const size_t kCapacity = 4096;
const size_t kPayload = 128;
const size_t kHeldRefs = 64;
const uint64_t kFanoutEvents = 1u << 16;

using Clock = std::chrono::steady_clock;

shared_event *new_event(uint64_t seq)
{
    shared_event *ev = shared_event_alloc(seq, 0, kPayload);
    if (!ev)
        std::abort();
    std::memset(ev->bytes, static_cast<int>(seq & 0xff), kPayload);
    return ev;
}

void publish_or_abort(fanout_ring *ring, shared_event *ev)
{
    if (fanout_ring_publish(ring, ev) != RING_PUBLISH_OK)
        std::abort();
}

// ---- single thread ---------------------------------------------------------

void BM_RingPublishWithAlloc(benchmark::State &state)
{
    fanout_ring *ring = fanout_ring_create(kCapacity);
    uint64_t seq = 0;
    for (auto _ : state)
        publish_or_abort(ring, new_event(++seq));
    fanout_ring_free(ring);
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_RingPublishWithAlloc);

// The bench keeps one reference to each of 2 x capacity events and renumbers
// one only when the ring has dropped it (refcount 1: nobody else sees it).
void BM_RingPublishRecycled(benchmark::State &state)
{
    std::vector<shared_event *> pool(2 * kCapacity);
    for (shared_event *&ev : pool)
        ev = new_event(0);
    fanout_ring *ring = fanout_ring_create(kCapacity);
    uint64_t seq = 0;
    for (auto _ : state) {
        shared_event *ev = pool[++seq % pool.size()];
        ev->seq = seq;
        shared_event_ref(ev);
        publish_or_abort(ring, ev);
    }
    fanout_ring_free(ring);
    for (shared_event *ev : pool)
        shared_event_unref(ev);
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_RingPublishRecycled);

fanout_ring *full_ring()
{
    fanout_ring *ring = fanout_ring_create(kCapacity);
    for (uint64_t s = 1; s <= kCapacity; s++)
        publish_or_abort(ring, new_event(s));
    return ring;
}

void BM_RingReadUnref(benchmark::State &state)
{
    fanout_ring *ring = full_ring();
    uint64_t i = 0;
    for (auto _ : state) {
        shared_event *ev;
        if (fanout_ring_read(ring, 1 + i++ % kCapacity, &ev) != RING_READ_OK) {
            state.SkipWithError("read failed");
            break;
        }
        shared_event_unref(ev);
    }
    fanout_ring_free(ring);
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_RingReadUnref);

// One iteration reads (up to) 64 events; items are events.
void BM_RingReadBatch64Unref(benchmark::State &state)
{
    fanout_ring *ring = full_ring();
    shared_event *batch[64];
    uint64_t done = 0;
    for (auto _ : state) {
        size_t got;
        if (fanout_ring_read_batch(ring, 1 + done % kCapacity, batch, 64, &got) != RING_READ_OK) {
            state.SkipWithError("read_batch failed");
            break;
        }
        for (size_t i = 0; i < got; i++)
            shared_event_unref(batch[i]);
        done += got;
    }
    fanout_ring_free(ring);
    state.SetItemsProcessed(static_cast<int64_t>(done));
}
BENCHMARK(BM_RingReadBatch64Unref);

// ---- fan-out: 1 producer, R readers ------------------------------------------

struct Reader {
    // Next seq wanted, read by the paced producer; its own cache line so
    // that readers advancing it do not slow each other down.
    alignas(64) std::atomic<uint64_t> cursor{1};
    uint64_t read = 0;
    uint64_t skipped = 0;
    uint64_t overruns = 0;
    Clock::time_point finished;
};

struct FanoutRun {
    fanout_ring *ring = fanout_ring_create(kCapacity);
    std::atomic<bool> go{false};
    std::unique_ptr<Reader[]> readers;
    int reader_count;

    explicit FanoutRun(int n) : readers(new Reader[n]), reader_count(n) {}
    ~FanoutRun() { fanout_ring_free(ring); }

    uint64_t slowest_cursor() const
    {
        uint64_t min = UINT64_MAX;
        for (int r = 0; r < reader_count; r++)
            min = std::min(min, readers[r].cursor.load(std::memory_order_acquire));
        return min;
    }
};

// Keeps the last kHeldRefs references, as unsent socket output would.
struct HeldRefs {
    shared_event *refs[kHeldRefs] = {};
    size_t next = 0;
    void hold(shared_event *ev)
    {
        shared_event_unref(refs[next]);
        refs[next] = ev;
        next = (next + 1) % kHeldRefs;
    }
    ~HeldRefs()
    {
        for (shared_event *ev : refs)
            shared_event_unref(ev);
    }
};

void read_all(FanoutRun &run, Reader &me)
{
    HeldRefs held;
    uint64_t cursor = 1;
    while (!run.go.load(std::memory_order_acquire))
        std::this_thread::yield();
    while (cursor <= kFanoutEvents) {
        shared_event *ev;
        switch (fanout_ring_read(run.ring, cursor, &ev)) {
        case RING_READ_OK:
            if (ev->bytes[0] != static_cast<uint8_t>(cursor))   // touch it like a write would
                std::abort();
            held.hold(ev);
            me.read++;
            me.cursor.store(++cursor, std::memory_order_release);
            break;
        case RING_READ_EMPTY:
            // The broker's workers wait for a notification instead; yielding
            // keeps idle readers from starving the producer of a CPU.
            std::this_thread::yield();
            break;
        case RING_READ_OVERRUN: {
            uint64_t resume = fanout_ring_last_seq(run.ring) - kCapacity / 2;
            me.overruns++;
            me.skipped += resume - cursor;
            cursor = resume;
            me.cursor.store(cursor, std::memory_order_release);
            break;
        }
        }
    }
    me.finished = Clock::now();
}

void produce(FanoutRun &run, bool paced)
{
    uint64_t room = 0;   // seqs publishable before looking at the readers again
    for (uint64_t s = 1; s <= kFanoutEvents; s++) {
        while (paced && room == 0) {
            uint64_t limit = run.slowest_cursor() + kCapacity / 2;
            if (limit > s)
                room = limit - s;
            else
                std::this_thread::yield();
        }
        room--;
        publish_or_abort(run.ring, new_event(s));
    }
}

struct FanoutTotals {
    double reader_s = 0;   // sum over runs of go -> last reader done
    uint64_t reads = 0, skipped = 0, overruns = 0;
};

// One run; returns the seconds that count as the iteration's time.
double fanout_once(int readers, bool paced, FanoutTotals &tot)
{
    FanoutRun run(readers);
    std::vector<std::thread> threads;
    for (int r = 0; r < readers; r++)
        threads.emplace_back(read_all, std::ref(run), std::ref(run.readers[r]));
    Clock::time_point t0 = Clock::now();
    run.go.store(true, std::memory_order_release);
    produce(run, paced);
    Clock::time_point published = Clock::now();
    Clock::time_point end = t0;
    for (int r = 0; r < readers; r++) {
        threads[r].join();
        end = std::max(end, run.readers[r].finished);
        tot.reads += run.readers[r].read;
        tot.skipped += run.readers[r].skipped;
        tot.overruns += run.readers[r].overruns;
    }
    double reader_s = std::chrono::duration<double>(end - t0).count();
    tot.reader_s += reader_s;
    return paced ? reader_s : std::chrono::duration<double>(published - t0).count();
}

void run_fanout(benchmark::State &state, bool paced)
{
    int readers = static_cast<int>(state.range(0));
    FanoutTotals tot;
    for (auto _ : state)
        state.SetIterationTime(fanout_once(readers, paced, tot));
    state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(kFanoutEvents));
    state.counters["reads_per_s"] = static_cast<double>(tot.reads) / tot.reader_s;
    state.counters["overruns"] = static_cast<double>(tot.overruns);
    if (!paced)
        state.counters["skipped_pct"] = 100.0 * static_cast<double>(tot.skipped) /
                                        (static_cast<double>(kFanoutEvents) * readers *
                                         static_cast<double>(state.iterations()));
}

void BM_RingFanoutFreeRunning(benchmark::State &state) { run_fanout(state, false); }
void BM_RingFanoutPaced(benchmark::State &state) { run_fanout(state, true); }
BENCHMARK(BM_RingFanoutFreeRunning)->ArgName("readers")->RangeMultiplier(2)->Range(1, 8)->UseManualTime();
BENCHMARK(BM_RingFanoutPaced)->ArgName("readers")->RangeMultiplier(2)->Range(1, 8)->UseManualTime();

}  // namespace
