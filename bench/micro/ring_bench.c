/* ring_bench: micro benchmark of the fan-out ring (broker/fanout_ring.c).
 *
 * Prints, never asserts:
 *   1. ns per publish, single thread: with the event's malloc + fill + free
 *      (what the broker pays per accepted event) and with recycled events
 *      (the ring alone);
 *   2. ns per read, single thread: fanout_ring_read + unref of an event in
 *      the ring, and the same per event through fanout_ring_read_batch;
 *   3. fan-out throughput: 1 producer publishing N events into a 4096 ring
 *      while R reader threads (1, 2, 4, 8) each read every seq in order,
 *      holding the last 64 references like pending socket output:
 *      a. free-running: the producer never waits; readers skip ahead on
 *         OVERRUN (catch up from storage). Prints events/s published,
 *         reads/s, and the share of seqs the readers had to skip;
 *      b. paced: the producer stays less than capacity/2 ahead of the
 *         slowest reader, so every reader reads every event (no overrun);
 *         prints events/s delivered to all readers and ns per event.
 * Numbers depend on the core count: with fewer cores than threads, readers
 * and producer share CPUs and the spread says more about the scheduler.
 *
 * Build (from the repository root):
 *   gcc -std=c11 -O2 -D_GNU_SOURCE -Ibroker bench/micro/ring_bench.c \
 *       broker/fanout_ring.c broker/shared_event.c -pthread -o ring_bench
 * Usage: ring_bench [events]   (default 4,000,000)
 */
#include <pthread.h>
#include <sched.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fanout_ring.h"
#include "shared_event.h"

#define RING_CAPACITY 4096
#define PAYLOAD_LEN 128
#define HELD_REFS 64
#define MAX_READERS 8

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static shared_event *new_event(uint64_t seq)
{
    shared_event *ev = shared_event_alloc(seq, 0, PAYLOAD_LEN);
    if (!ev) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    memset(ev->bytes, (int)(seq & 0xff), PAYLOAD_LEN);
    memcpy(ev->bytes, &seq, sizeof seq);
    return ev;
}

static void publish_or_die(fanout_ring *ring, shared_event *ev)
{
    if (fanout_ring_publish(ring, ev) != RING_PUBLISH_OK) {
        fprintf(stderr, "publish of seq %llu refused\n", (unsigned long long)ev->seq);
        exit(1);
    }
}

/* ---- 1. publish, single thread ------------------------------------------- */

static void bench_publish_with_alloc(uint64_t n)
{
    fanout_ring *ring = fanout_ring_create(RING_CAPACITY);
    double t0 = now_s();
    for (uint64_t s = 1; s <= n; s++)
        publish_or_die(ring, new_event(s));
    double t1 = now_s();
    fanout_ring_free(ring);
    printf("publish, event malloc+fill+free included: %7.1f ns/event\n", (t1 - t0) * 1e9 / (double)n);
}

/* Events are recycled: the bench keeps one reference to each of a pool of
 * 2 * capacity events, and renumbers one only when the ring has dropped it
 * (refcount back to 1, nobody else can see it). */
static void bench_publish_recycled(uint64_t n)
{
    const size_t pool_size = 2 * RING_CAPACITY;
    shared_event **pool = malloc(pool_size * sizeof *pool);
    for (size_t i = 0; i < pool_size; i++)
        pool[i] = new_event(0);
    fanout_ring *ring = fanout_ring_create(RING_CAPACITY);
    double t0 = now_s();
    for (uint64_t s = 1; s <= n; s++) {
        shared_event *ev = pool[s % pool_size];
        ev->seq = s;   /* refcount 1: unshared, so writable */
        shared_event_ref(ev);
        publish_or_die(ring, ev);
    }
    double t1 = now_s();
    fanout_ring_free(ring);
    for (size_t i = 0; i < pool_size; i++)
        shared_event_unref(pool[i]);
    free(pool);
    printf("publish, recycled events (ring only):      %7.1f ns/event\n", (t1 - t0) * 1e9 / (double)n);
}

/* ---- 2. read, single thread ---------------------------------------------- */

static void bench_read(uint64_t n)
{
    fanout_ring *ring = fanout_ring_create(RING_CAPACITY);
    for (uint64_t s = 1; s <= RING_CAPACITY; s++)
        publish_or_die(ring, new_event(s));

    double t0 = now_s();
    for (uint64_t i = 0; i < n; i++) {
        shared_event *ev;
        if (fanout_ring_read(ring, 1 + i % RING_CAPACITY, &ev) != RING_READ_OK)
            exit(1);
        shared_event_unref(ev);
    }
    double t1 = now_s();
    printf("read + unref:                              %7.1f ns/event\n", (t1 - t0) * 1e9 / (double)n);

    shared_event *batch[64];
    uint64_t done = 0;
    t0 = now_s();
    while (done < n) {
        size_t got;
        if (fanout_ring_read_batch(ring, 1 + done % RING_CAPACITY, batch, 64, &got) != RING_READ_OK)
            exit(1);
        for (size_t i = 0; i < got; i++)
            shared_event_unref(batch[i]);
        done += got;
    }
    t1 = now_s();
    printf("read_batch(64) + unref:                    %7.1f ns/event\n", (t1 - t0) * 1e9 / (double)n);
    fanout_ring_free(ring);
}

/* ---- 3. fan-out, 1 producer and R readers -------------------------------- */

typedef struct reader_result reader_result;

typedef struct fanout_run {
    fanout_ring *ring;
    uint64_t n;
    atomic_bool go;
    bool paced;
    int readers;
    reader_result *results;
} fanout_run;

struct reader_result {
    fanout_run *run;
    uint64_t read, skipped, overruns, empty_polls;
    double finished_at;
    /* Next seq wanted, for the paced producer; own cache line so that
     * readers advancing it do not slow each other down. */
    alignas(64) _Atomic uint64_t cursor;
};

static void *reader_main(void *arg)
{
    reader_result *res = arg;
    fanout_run *run = res->run;
    shared_event *held[HELD_REFS] = {0};
    size_t held_next = 0;
    uint64_t cursor = 1;
    while (!atomic_load_explicit(&run->go, memory_order_acquire))
        ;
    while (cursor <= run->n) {
        shared_event *ev;
        switch (fanout_ring_read(run->ring, cursor, &ev)) {
        case RING_READ_OK:
            /* Touch the payload like a socket write would. */
            if (ev->bytes[0] != (uint8_t)cursor)
                abort();
            shared_event_unref(held[held_next]);
            held[held_next] = ev;
            held_next = (held_next + 1) % HELD_REFS;
            res->read++;
            cursor++;
            atomic_store_explicit(&res->cursor, cursor, memory_order_release);
            break;
        case RING_READ_EMPTY:
            /* The broker's workers wait for a notification instead; a yield
             * keeps idle readers from starving the producer of a CPU. */
            res->empty_polls++;
            sched_yield();
            break;
        case RING_READ_OVERRUN: {
            uint64_t last = fanout_ring_last_seq(run->ring);
            uint64_t resume = last - RING_CAPACITY / 2;
            res->overruns++;
            res->skipped += resume - cursor;
            cursor = resume;
            atomic_store_explicit(&res->cursor, cursor, memory_order_release);
            break;
        }
        }
    }
    res->finished_at = now_s();
    for (size_t i = 0; i < HELD_REFS; i++)
        shared_event_unref(held[i]);
    return NULL;
}

static uint64_t slowest_cursor(const fanout_run *run)
{
    uint64_t min = UINT64_MAX;
    for (int r = 0; r < run->readers; r++) {
        uint64_t c = atomic_load_explicit(&run->results[r].cursor, memory_order_acquire);
        if (c < min)
            min = c;
    }
    return min;
}

static void bench_fanout(uint64_t n, int readers, bool paced)
{
    reader_result res[MAX_READERS];
    fanout_run run = {.ring = fanout_ring_create(RING_CAPACITY), .n = n, .paced = paced,
                      .readers = readers, .results = res};
    atomic_init(&run.go, false);
    pthread_t tid[MAX_READERS];
    for (int r = 0; r < readers; r++) {
        res[r] = (reader_result){.run = &run};
        atomic_init(&res[r].cursor, 1);
        pthread_create(&tid[r], NULL, reader_main, &res[r]);
    }
    double t0 = now_s();
    atomic_store_explicit(&run.go, true, memory_order_release);
    uint64_t room = 0;   /* seqs publishable before checking the readers again */
    for (uint64_t s = 1; s <= n; s++) {
        while (paced && room == 0) {
            uint64_t limit = slowest_cursor(&run) + RING_CAPACITY / 2;
            if (limit > s)
                room = limit - s;
            else
                sched_yield();
        }
        room--;
        publish_or_die(run.ring, new_event(s));
    }
    double t_pub = now_s() - t0;
    uint64_t reads = 0, skipped = 0, overruns = 0;
    double t_end = t0;
    for (int r = 0; r < readers; r++) {
        pthread_join(tid[r], NULL);
        reads += res[r].read;
        skipped += res[r].skipped;
        overruns += res[r].overruns;
        if (res[r].finished_at > t_end)
            t_end = res[r].finished_at;
    }
    fanout_ring_free(run.ring);
    if (paced)
        printf("paced, %d reader(s):        %6.2f M events/s to all readers (%6.1f ns/event), "
               "%7.2f M reads/s total, %llu overruns\n",
               readers, (double)n / (t_end - t0) / 1e6, (t_end - t0) * 1e9 / (double)n,
               (double)reads / (t_end - t0) / 1e6, (unsigned long long)overruns);
    else
        printf("free-running, %d reader(s): %6.2f M events/s published (%5.1f ns/publish), "
               "%7.2f M reads/s total, %5.1f%% of seqs skipped (%llu overruns)\n",
               readers, (double)n / t_pub / 1e6, t_pub * 1e9 / (double)n, (double)reads / (t_end - t0) / 1e6,
               100.0 * (double)skipped / ((double)n * readers), (unsigned long long)overruns);
}

int main(int argc, char **argv)
{
    uint64_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 4000000;
    if (n < 2 * RING_CAPACITY)
        n = 2 * RING_CAPACITY;
    printf("fanout_ring micro benchmark: %llu events, capacity %d, %d-byte payloads, %ld online CPUs\n",
           (unsigned long long)n, RING_CAPACITY, PAYLOAD_LEN, sysconf(_SC_NPROCESSORS_ONLN));
    bench_publish_with_alloc(n);
    bench_publish_recycled(n);
    bench_read(n);
    static const int reader_counts[] = {1, 2, 4, 8};
    for (size_t i = 0; i < sizeof reader_counts / sizeof reader_counts[0]; i++)
        bench_fanout(n, reader_counts[i], false);
    for (size_t i = 0; i < sizeof reader_counts / sizeof reader_counts[0]; i++)
        bench_fanout(n, reader_counts[i], true);
    return 0;
}
