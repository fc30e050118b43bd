/* sync_load: the client side of nebula-sync-bench's load scenarios (fanout,
 * tenants, catchup): threads, connections, publishers and subscribers.
 *
 * A scenario fills a sync_load_config and drives the run through phases and
 * commands; this module does everything per connection. Each client thread
 * (--threads) has a libevent event_base and owns its connections outright;
 * the scenario's thread (the main thread) only sets the phase, posts
 * commands (event_active, thread-safe after evthread_use_pthreads()) and
 * reads the threads' relaxed atomic counters.
 *
 * Per connection it does what a real client does: TCP from a 127.0.X.Y
 * source (loopback targets), TLS for wss://, the GET /v1/sync upgrade
 * offering nebula-sync.v1 with its 101 and Sec-WebSocket-Accept checked,
 * Hello (the stream's token) and Welcome. Server frames go through ws_reader
 * (client role), ServerMessages are unpacked by protobuf-c into a per-thread
 * arena reset after each message, client frames are masked with a fresh key
 * per frame, pings answered, and the end is a Close handshake.
 *
 * Streams. A stream is a collection as one token sees it (tenants: the same
 * collection name under T tokens is T streams). Subscriber i and publisher
 * p use stream i % nstreams and p % nstreams unless the scenario moves them
 * (sync_load_subscribe, sync_load_set_publish).
 *
 * Subscribers. During setup, subscribers 0 .. setup_subscribers-1 send
 * Subscribe (no cursor) and are ready after the last Snapshot page; the
 * others are ready at Welcome and subscribe when told (sync_load_subscribe,
 * with a cursor for a replay or without for a snapshot). Every delivered
 * seq is checked (seq_check.h): in order from the subscription's start, a
 * jump counts as lost, a repeat as duplicated. Events published inside the
 * window (sync_load_set_window) are timed publish -> deliver (each document
 * starts with its publish time, event_format.h).
 *
 * Publishers. In phase SYNC_LOAD_RUN each keeps --inflight Pushes of
 * --batch events in flight, as fast as PushResults come back or paced to
 * --rate events/s over all publishers, up to a number of events when the
 * scenario says so; event ids and documents are event_format.h's.
 *
 * Targets. With a fanout_target (fanout --target socketio|ws-broadcast) the
 * target's module speaks its protocol instead of nebula-sync.v1
 * (fanout_target.h: the fanout_conn_* functions are this module's); one
 * stream, every subscriber subscribed during setup.
 *
 * Failures: a connection that fails is counted (during setup or during the
 * run) with the first reason of each kind, and closed; the scenario decides
 * what that means for the run. Functions that say "exits" call bench_die().
 */
#ifndef NEBULA_BENCH_SYNC_LOAD_H
#define NEBULA_BENCH_SYNC_LOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "bench_common.h"
#include "fanout_target.h"
#include "nebula_sync.pb-c.h"
#include "sync_bench_hist.h"

#define SYNC_LOAD_PROGRAM "nebula-sync-bench"
#define SYNC_LOAD_DEFAULT_URL "ws://127.0.0.1:8080/v1/sync"
#define SYNC_LOAD_EPOCH_MAX 64            /* bytes of a cursor's epoch we keep, NUL included */
#define SYNC_LOAD_SETUP_TIMEOUT_S 60      /* everyone connected (and subscribed) within this */
#define SYNC_LOAD_MAX_SIZE (512 * 1024)   /* largest --size */

struct sync_load_stream {
    const char *collection;
    const char *token;                    /* Hello.auth_token; NULL: none */
};

/* Hooks, called on the thread that owns the connection, after the module
 * has checked and counted what the message carries. */
typedef void (*sync_load_events_hook)(struct fanout_conn *c, const Nebula__Sync__V1__Events *ev,
                                      uint64_t now);
typedef void (*sync_load_snapshot_hook)(struct fanout_conn *c, const Nebula__Sync__V1__Snapshot *s,
                                        uint64_t now);

struct sync_load_config {
    const struct fanout_target *target;   /* NULL: nebula-syncd */
    const char *url;
    struct bench_endpoint ep;             /* the URL, parsed (and for a target, its path) */
    struct bench_endpoint publish_ep;     /* where publishers connect (another broker); unset: ep */
    long subscribers, publishers;
    long batch;                           /* events per Push, 1..1000 */
    long size;                            /* bytes of each document */
    long inflight;                        /* Pushes in flight per publisher */
    double rate;                          /* events/s over all publishers; 0: as fast as answered */
    int threads;                          /* at most subscribers + publishers */
    uint64_t run_id;                      /* random: in every event id (bench_random_u64) */
    const struct sync_load_stream *streams;   /* nstreams of them, kept by the caller */
    long nstreams;
    long setup_subscribers;               /* subscribers that subscribe during setup */
    sync_load_events_hook on_events;      /* each Events message a subscriber received */
    sync_load_snapshot_hook on_snapshot;  /* each Snapshot page */
};

enum sync_load_phase {
    SYNC_LOAD_SETUP,      /* connecting, Hello, the setup subscriptions */
    SYNC_LOAD_RUN,        /* publishers push */
    SYNC_LOAD_STOP,       /* publishers send nothing more; answers and deliveries drain */
    SYNC_LOAD_CLOSE,      /* every connection closes, then the threads exit */
};

enum sync_load_fail { SYNC_LOAD_FAIL_SETUP, SYNC_LOAD_FAIL_RUN, SYNC_LOAD_FAIL_KINDS };

/* The threads' counters, summed (relaxed reads while they run). */
struct sync_load_totals {
    long ready_subs, ready_pubs, failed[SYNC_LOAD_FAIL_KINDS];
    long started_subs;                    /* subscriptions started (setup and later) */
    uint64_t delivered, lost, dup, pushes_sent, pushes_acked, accepted, not_accepted;
    long inflight;                        /* Pushes unanswered */
    uint64_t slips;                       /* --rate: a publisher fell > 100 ms behind */
    int stopped;                          /* threads that have seen SYNC_LOAD_STOP */
};

/* One reading of everything a progress line or a window needs. */
struct sync_load_sample {
    uint64_t t;                           /* CLOCK_MONOTONIC ns */
    struct sync_load_totals tot;
    double broker_cpu, self_cpu;          /* broker: -1 without a pid */
    struct bench_host_cpu host;
};

/* After the threads are joined: the subscribers' checks and the publishers'
 * results over the whole run. */
struct sync_load_tally {
    uint64_t gaps, dups, skipped, tail_lost, lost;   /* lost = gaps + skipped + tail_lost */
    uint64_t foreign, resnapshots;
    uint64_t last_seq;                    /* highest stream target (targets: events sent); 0 without the tail */
    uint64_t n_duplicate, n_conflict, n_rejected;
    char first_reject[256];
    hist lat, ack;                        /* publish -> deliver, Push -> PushResult (window) */
};

struct sync_load_cursor {
    uint64_t seq;
    char epoch[SYNC_LOAD_EPOCH_MAX];
};

/* What publishers do in the next SYNC_LOAD_RUN. */
struct sync_load_publish {
    long stream;                          /* -1: publisher p's own, p % nstreams */
    uint64_t events;                      /* per publisher from now on; 0: no limit */
    bool distinct_documents;              /* a new document per event (else EVENT_DOCS_PER_PUBLISHER) */
};

/* ---- the run, from the scenario's thread ------------------------------- */

/* Copies cfg, raises RLIMIT_NOFILE (exits 2 when subscribers + publishers do
 * not fit), resolves the target, makes the threads' loops and connections.
 * Exits on failure. */
void sync_load_init(const struct sync_load_config *cfg);

/* Whether client sockets are bound to 127.0.X.Y sources (a loopback
 * target), for the first line a scenario prints. */
bool sync_load_spreads_sources(void);

/* Starts the client threads: they connect and set up. */
void sync_load_start(void);

/* Waits until every connection is ready or setup fails (a connection failed,
 * a signal, SYNC_LOAD_SETUP_TIMEOUT_S), with a progress line per second;
 * false with the reason in why. */
bool sync_load_wait_setup(uint64_t t0, char *why, size_t cap);

void sync_load_set_phase(enum sync_load_phase ph);

/* Latencies are recorded for events published in [start_ns, end_ns). */
void sync_load_set_window(uint64_t start_ns, uint64_t end_ns);

/* Takes effect at the next sync_load_set_phase(SYNC_LOAD_RUN). */
void sync_load_set_publish(const struct sync_load_publish *p);

/* Subscribers setup_subscribers .. subscribers-1 that are ready move to
 * `stream` and send Subscribe: from cursor (a replay is expected) or, when
 * NULL, with none (a snapshot). Their seq check restarts there. */
void sync_load_subscribe(long stream, const struct sync_load_cursor *cursor);

/* Where the first setup subscriber of `stream` started: its snapshot's
 * cursor. false when none has. */
bool sync_load_stream_head(long stream, struct sync_load_cursor *out);

void sync_load_sum(struct sync_load_totals *t);
void sync_load_sample(struct sync_load_sample *s, pid_t broker_pid);

/* The highest ACCEPTED seq of stream (targets: the events sent); only
 * meaningful once nothing is in flight. */
uint64_t sync_load_stream_target(long stream, const struct sync_load_totals *t);

/* The highest of the streams' targets. */
uint64_t sync_load_highest_target(const struct sync_load_totals *t);

/* Subscribers whose position is below their stream's target; *missing
 * (may be NULL) gets the seqs they lack. */
long sync_load_subs_behind(const struct sync_load_totals *t, uint64_t *missing);

/* The first error of that kind, verbatim ("subscriber 3: ..."), or "". */
const char *sync_load_first_error(enum sync_load_fail kind);

/* SYNC_LOAD_CLOSE, then joins the threads. */
void sync_load_close(void);

/* After sync_load_close(). With count_tail, seqs a started subscriber
 * still lacks below its stream's target count as lost (tail_lost) and
 * last_seq is the highest target: pass it only when the run got to a
 * quiescent end (every publisher stopped, nothing in flight). */
void sync_load_tally(struct sync_load_tally *out, bool count_tail);
void sync_load_free(void);

/* ---- a connection, for the hooks ----------------------------------------- */

long sync_conn_stream(const struct fanout_conn *c);
uint64_t sync_conn_position(const struct fanout_conn *c);   /* last seq seen */
uint64_t sync_conn_subscribe_ns(const struct fanout_conn *c);   /* its last Subscribe written */

#endif
