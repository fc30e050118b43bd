/* scenario_catchup: `nebula-sync-bench catchup`, how fast a subscriber gets
 * what it does not have yet:
 *
 *  (a) replay: a subscriber comes back after K missed events. The tool's
 *      publisher pushes K events into a fresh collection; then S
 *      subscribers subscribe with the cursor {seq, epoch} the collection
 *      had before (seq 0 for a fresh one), are answered REPLAY, and receive
 *      the K events from storage. Measured: time to the first event, time
 *      to caught up (the last seq), replay events/s, broker CPU per
 *      replayed event. Every replayed seq is checked: once, in order, from
 *      the cursor to the last accepted seq.
 *  (b) snapshot: a new subscriber bootstraps. The publisher pushes D
 *      distinct documents into a second fresh collection; then the S
 *      subscribers subscribe with no cursor and receive Snapshot pages.
 *      Measured: time to the first and to the last page, documents/s,
 *      broker CPU per document. Checked: the snapshot holds each of the D
 *      documents exactly once (doc_tally.h) and its cursor is the last
 *      accepted seq.
 *
 * The collections are <collection>-<run>-replay and -snapshot, so that a
 * broker that served earlier runs still gives exact counts. Subscriber 0 is
 * a live subscriber of the replay collection from the start: its setup
 * snapshot gives the cursor (seq and epoch) the others replay from, and it
 * receives the K events live, seq-checked too. The other S only say Hello
 * until they subscribe. Each step is bounded by --timeout.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "doc_tally.h"
#include "event_format.h"
#include "load_options.h"
#include "sync_load.h"
#include "sync_scenario.h"

#define PROG SYNC_LOAD_PROGRAM
#define STREAM_REPLAY 0
#define STREAM_SNAPSHOT 1
#define LIVE_SUBSCRIBER 0               /* subscriber 0 follows the replay collection live */
#define MAX_EVENTS 10000000L            /* the memory storage keeps at most 1,000,000 events */

enum { O_EVENTS = LOAD_OPTION_END, O_DOCUMENTS, O_TIMEOUT };

static struct load_options opt;
static long replay_events = 100000, snapshot_documents = 10000;
static double step_timeout = 60;
static char collections[2][200];
static struct sync_load_stream streams[2];

/* ------------------------------------------------------------------------ */
/* options                                                                   */

static void usage(FILE *f)
{
    fprintf(f,
        "usage: " PROG " catchup [options]\n"
        "\n"
        "(a) replay: one publisher pushes K events, then S subscribers subscribe from\n"
        "the collection's earlier cursor and replay them from storage: events/s, time\n"
        "to caught up, every seq once and in order. (b) snapshot: it pushes D distinct\n"
        "documents into another collection, then the S subscribers subscribe with no\n"
        "cursor: documents/s, time to the last page, each document exactly once.\n"
        "\n"
        "  --url URL            ws[s]://HOST:PORT/PATH (default " SYNC_LOAD_DEFAULT_URL ")\n"
        "  --events K           events to replay (default 100000; 0: no replay step)\n"
        "  --documents D        documents in the snapshot (default 10000; 0: no\n"
        "                       snapshot step)\n"
        "  --subscribers S      subscribers catching up at once (default 1)\n"
        "  --batch K            events per Push while filling (default 100)\n"
        "  --size B             bytes of each document (default 200, %d..%d)\n"
        "  --inflight W         Pushes in flight while filling (default 4)\n"
        "  --timeout T          seconds each step (fill, replay, snapshot) may take\n"
        "                       (default 60)\n"
        "  --threads N          client threads, one event loop each (default 1)\n"
        "  --broker-pid PID     read the broker's CPU time and VmRSS from /proc/PID\n"
        "  --token T            Hello.auth_token (it must read and write the collections)\n"
        "  --collection NAME    prefix of the collections: NAME-<run>-replay and\n"
        "                       NAME-<run>-snapshot (default nebula-sync-bench)\n"
        "  --json FILE          also write the result as JSON to FILE\n"
        "  -h, --help           this text\n"
        "\n"
        "A progress line per second goes to stderr, the summary to stdout.\n"
        "Exit status: 0 every step completed, no seq lost or duplicated, each snapshot\n"
        "document exactly once; 1 anything else; 2 usage error.\n",
        EVENT_DOC_MIN_SIZE, SYNC_LOAD_MAX_SIZE);
}

static void parse_option(int c, char **argv)
{
    if (load_options_parse(&opt, c, optarg))
        return;
    switch (c) {
    case O_EVENTS: replay_events = bench_option_long("--events", optarg, 0, MAX_EVENTS); break;
    case O_DOCUMENTS: snapshot_documents = bench_option_long("--documents", optarg, 0, MAX_EVENTS); break;
    case O_TIMEOUT: step_timeout = bench_option_double("--timeout", optarg, 1, 86400); break;
    case 'h': usage(stdout); exit(0);
    default: load_options_unknown(argv);
    }
}

static void parse_args(int argc, char **argv)
{
    opt = (struct load_options){
        .url = SYNC_LOAD_DEFAULT_URL,
        .subscribers = 1,
        .batch = 100,
        .size = 200,
        .inflight = 4,
        .threads = 1,
        .collection = "nebula-sync-bench",
    };
    struct option longopts[20];
    size_t n = load_options_table(LOAD_BIT(LOAD_URL) | LOAD_BIT(LOAD_SUBSCRIBERS) |
                                  LOAD_BIT(LOAD_BATCH) | LOAD_BIT(LOAD_SIZE) | LOAD_BIT(LOAD_INFLIGHT) |
                                  LOAD_BIT(LOAD_THREADS) | LOAD_BIT(LOAD_BROKER_PID) |
                                  LOAD_BIT(LOAD_TOKEN) | LOAD_BIT(LOAD_COLLECTION) | LOAD_BIT(LOAD_JSON),
                                  longopts, 0);
    longopts[n++] = (struct option){"events", required_argument, NULL, O_EVENTS};
    longopts[n++] = (struct option){"documents", required_argument, NULL, O_DOCUMENTS};
    longopts[n++] = (struct option){"timeout", required_argument, NULL, O_TIMEOUT};
    longopts[n++] = (struct option){"help", no_argument, NULL, 'h'};
    longopts[n] = (struct option){NULL, 0, NULL, 0};
    bench_getopt(argc, argv, longopts, parse_option);
    if (!replay_events && !snapshot_documents)
        bench_die_usage("--events 0 and --documents 0: nothing to measure");
    if (opt.batch * (opt.size + 200) > 64L << 20)
        bench_die_usage("--batch x --size: a Push of %ld x %ld bytes is unreasonably large",
                        opt.batch, opt.size);
    bench_parse_url(opt.url, "/v1/sync", &opt.ep);
    opt.publishers = 1;
    if (opt.threads > opt.subscribers + 2)
        opt.threads = (int)opt.subscribers + 2;
}

/* ------------------------------------------------------------------------ */
/* the subscribers' side, on their threads                                  */

enum step { STEP_FILL, STEP_REPLAY, STEP_SNAPSHOT };

/* The step under way and what it waits for; set by the main thread before
 * it sends the subscribers their Subscribe (a mutex hand-off in sync_load). */
static _Atomic int step = STEP_FILL;
static uint64_t replay_target;           /* the last accepted seq of the replay collection */
static uint64_t first_document;          /* the publisher's counter when (b) began */
static _Atomic uint64_t live_position;   /* the live subscriber's last seq */

/* Per catching-up subscriber (index 1..S), written by its thread; the main
 * thread reads it after the release counters below say it is complete. */
struct catchup_sub {
    uint64_t subscribed_ns;               /* its Subscribe of the step was written */
    uint64_t first_event_ns, caught_up_ns;
    uint64_t first_page_ns, last_page_ns, pages;
    uint64_t snapshot_cursor;             /* the last page's cursor seq */
    struct doc_tally docs;
};
static struct catchup_sub *subs;
static atomic_long replays_done, snapshots_done;

static bool catching_up(const struct fanout_conn *c)
{
    return fanout_conn_index(c) != LIVE_SUBSCRIBER;
}

/* Replay: the first event, and the moment the last seq arrives. */
static void on_replayed(struct fanout_conn *c, const Nebula__Sync__V1__Events *ev, uint64_t now)
{
    (void)ev;
    if (!catching_up(c)) {
        atomic_store_explicit(&live_position, sync_conn_position(c), memory_order_relaxed);
        return;
    }
    if (atomic_load_explicit(&step, memory_order_relaxed) != STEP_REPLAY)
        return;
    struct catchup_sub *s = &subs[fanout_conn_index(c)];
    if (!s->first_event_ns) {
        s->first_event_ns = now;
        s->subscribed_ns = sync_conn_subscribe_ns(c);
    }
    if (!s->caught_up_ns && sync_conn_position(c) >= replay_target) {
        s->caught_up_ns = now;
        atomic_fetch_add_explicit(&replays_done, 1, memory_order_release);
    }
}

/* Snapshot: every document tallied, the first and the last page timed. */
static void on_snapshot_page(struct fanout_conn *c, const Nebula__Sync__V1__Snapshot *snap,
                             uint64_t now)
{
    if (!catching_up(c) || atomic_load_explicit(&step, memory_order_relaxed) != STEP_SNAPSHOT)
        return;
    struct catchup_sub *s = &subs[fanout_conn_index(c)];
    if (!s->first_page_ns) {
        s->first_page_ns = now;
        s->subscribed_ns = sync_conn_subscribe_ns(c);
    }
    s->pages++;
    for (size_t i = 0; i < snap->n_documents; i++) {
        const char *id = snap->documents[i]->document_id;
        long pub;
        uint64_t number;
        if (id && event_doc_id_parse(id, strlen(id), &pub, &number) && pub == 0)
            doc_tally_observe(&s->docs, number);
        else
            doc_tally_foreign(&s->docs);
    }
    if (snap->last) {
        s->last_page_ns = now;
        s->snapshot_cursor = snap->cursor ? snap->cursor->seq : 0;
        atomic_fetch_add_explicit(&snapshots_done, 1, memory_order_release);
    }
}

/* ------------------------------------------------------------------------ */
/* the steps, from the main thread                                           */

/* What each step found; the summary and the JSON read it. */
struct fill {
    double seconds;
    uint64_t accepted;
};

struct measured_step {
    bool ran, done;
    double broker_cpu;                     /* -1 without --broker-pid */
    uint64_t delivered, lost, dup;         /* during the step */
    double first_ms, last_ms, mean_last_ms;   /* slowest first, slowest and mean last */
};

struct outcome {
    bool completed, pass;
    char why_not[512];
    double setup_s;
    struct sync_load_cursor cursor;        /* the replay's start */
    struct fill fill_replay, fill_snapshot;
    struct measured_step replay, snapshot;
    uint64_t snapshot_seq;                 /* the last accepted seq of the snapshot collection */
    uint64_t docs_seen_min, docs_repeated, docs_unexpected;
    uint64_t pages;                        /* per subscriber, the most */
    struct sync_load_tally tally;
    long rss_before, rss_filled, rss_after;
    struct sync_load_sample first, last;   /* the whole run, for the CPU lines */
    bool host_ok;
    struct bench_host_share host;
    double broker_cpu_all, self_cpu;
};

static void fail(struct outcome *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(struct outcome *r, const char *fmt, ...)
{
    if (!r->completed)
        return;                            /* keep the first reason */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->why_not, sizeof r->why_not, fmt, ap);
    va_end(ap);
    r->completed = false;
}

/* false when the run must stop: a connection lost, a signal. */
static bool still_running(struct outcome *r, const struct sync_load_totals *t)
{
    if (t->failed[SYNC_LOAD_FAIL_RUN]) {
        fail(r, "%ld connection(s) lost during the run; first: %s", t->failed[SYNC_LOAD_FAIL_RUN],
             sync_load_first_error(SYNC_LOAD_FAIL_RUN));
        return false;
    }
    if (bench_got_signal) {
        fail(r, "interrupted");
        return false;
    }
    return true;
}

typedef bool (*step_done_fn)(const struct sync_load_totals *t, char *line, size_t cap);

/* Polls done() until it says so, the run must stop or --timeout passes,
 * with a progress line (what done() wrote) per second. */
static bool wait_step(struct outcome *r, const char *name, step_done_fn done)
{
    uint64_t t0 = bench_mono_ns(), deadline = t0 + (uint64_t)(step_timeout * 1e9);
    uint64_t next_tick = t0 + 1000000000u;
    char line[200];
    struct sync_load_sample prev;
    sync_load_sample(&prev, opt.broker_pid);
    for (;;) {
        struct sync_load_totals t;
        sync_load_sum(&t);
        if (done(&t, line, sizeof line)) {
            fprintf(stderr, "[%6.2fs] %-8s done: %s\n", (double)(bench_mono_ns() - t0) / 1e9, name, line);
            return true;
        }
        if (!still_running(r, &t))
            return false;
        if (bench_mono_ns() >= deadline) {
            fail(r, "%s not done within --timeout %.0f s (%s)", name, step_timeout, line);
            return false;
        }
        bench_sleep_until_ns(bench_mono_ns() + 5000000u);
        if (bench_mono_ns() >= next_tick) {
            struct sync_load_sample s;
            sync_load_sample(&s, opt.broker_pid);
            double dt = (double)(s.t - prev.t) / 1e9;
            fprintf(stderr, "[%6.1fs] %-8s %s  broker CPU %3.0f%%  bench CPU %3.0f%%\n",
                    (double)(s.t - t0) / 1e9, name, line,
                    s.broker_cpu >= 0 ? 100.0 * (s.broker_cpu - prev.broker_cpu) / dt : 0.0,
                    100.0 * (s.self_cpu - prev.self_cpu) / dt);
            prev = s;
            next_tick += 1000000000u;
        }
    }
}

static long broker_rss(void)
{
    return opt.broker_pid ? bench_proc_rss_kib(opt.broker_pid) : -1;
}

/* The fill step: what it waits for. */
static long fill_stream;
static uint64_t fill_goal, answered_before, accepted_before;

static bool fill_done(const struct sync_load_totals *t, char *line, size_t cap)
{
    uint64_t answered = t->accepted + t->not_accepted - answered_before;
    uint64_t live = atomic_load_explicit(&live_position, memory_order_relaxed);
    snprintf(line, cap, "answered %" PRIu64 "/%" PRIu64 " events, in flight %ld, live subscriber "
             "at seq %" PRIu64, answered, fill_goal, t->inflight, live);
    return answered >= fill_goal && t->inflight == 0 &&
           (fill_stream != STREAM_REPLAY || live >= sync_load_stream_target(STREAM_REPLAY, t));
}

/* The publisher pushes n events into stream (distinct documents or not);
 * the live subscriber of the replay collection receives them. */
static bool fill(struct outcome *r, struct fill *f, long stream, uint64_t n, bool distinct)
{
    struct sync_load_totals t;
    sync_load_sum(&t);
    answered_before = t.accepted + t.not_accepted;
    accepted_before = t.accepted;
    fill_goal = n;
    fill_stream = stream;
    struct sync_load_publish p = {.stream = stream, .events = n, .distinct_documents = distinct};
    sync_load_set_publish(&p);
    uint64_t t0 = bench_mono_ns();
    sync_load_set_phase(SYNC_LOAD_RUN);
    if (!wait_step(r, "fill", fill_done))
        return false;
    f->seconds = (double)(bench_mono_ns() - t0) / 1e9;
    r->rss_filled = broker_rss();
    sync_load_sum(&t);
    f->accepted = t.accepted - accepted_before;
    if (t.not_accepted) {
        fail(r, "%" PRIu64 " pushed event(s) not ACCEPTED while filling", t.not_accepted);
        return false;
    }
    return true;
}

static uint64_t delivered_before;       /* when the replay step began */

static bool replay_done(const struct sync_load_totals *t, char *line, size_t cap)
{
    long done = atomic_load_explicit(&replays_done, memory_order_acquire);
    snprintf(line, cap, "replayed %" PRIu64 " events, caught up %ld/%ld",
             t->delivered - delivered_before, done, opt.subscribers);
    return done == opt.subscribers;
}

static bool snapshot_done(const struct sync_load_totals *t, char *line, size_t cap)
{
    (void)t;
    long done = atomic_load_explicit(&snapshots_done, memory_order_acquire);
    snprintf(line, cap, "last page received %ld/%ld", done, opt.subscribers);
    return done == opt.subscribers;
}

/* The broker's CPU time for a step: its threads' run time in ns where the
 * kernel keeps it, as a step may last a few clock ticks; else utime+stime. */
static double broker_step_cpu(void)
{
    if (!opt.broker_pid)
        return -1;
    double runtime = bench_proc_runtime_s(opt.broker_pid);
    return runtime >= 0 ? runtime : bench_proc_cpu_s(opt.broker_pid);
}

/* Subscribes the catching-up subscribers (from cursor, or for a snapshot)
 * and waits for them; m gets the step's counts and broker CPU. */
static bool measure_step(struct outcome *r, struct measured_step *m, const char *name,
                         enum step which, long stream, const struct sync_load_cursor *cursor,
                         step_done_fn done)
{
    struct sync_load_sample a, b;
    m->ran = true;
    atomic_store(&step, which);
    sync_load_sample(&a, opt.broker_pid);
    double cpu0 = broker_step_cpu();
    delivered_before = a.tot.delivered;
    sync_load_subscribe(stream, cursor);
    m->done = wait_step(r, name, done);
    double cpu1 = broker_step_cpu();
    sync_load_sample(&b, opt.broker_pid);
    m->broker_cpu = cpu0 >= 0 && cpu1 >= 0 ? cpu1 - cpu0 : -1;
    m->delivered = b.tot.delivered - a.tot.delivered;
    m->lost = b.tot.lost - a.tot.lost;
    m->dup = b.tot.dup - a.tot.dup;
    return m->done;
}

/* The catching-up subscribers' times for a step, in ms from each one's
 * Subscribe. */
static void step_times(struct measured_step *m, bool replay)
{
    double sum = 0;
    for (long i = 1; i <= opt.subscribers; i++) {
        const struct catchup_sub *s = &subs[i];
        uint64_t first = replay ? s->first_event_ns : s->first_page_ns;
        uint64_t last = replay ? s->caught_up_ns : s->last_page_ns;
        double f = (double)(first - s->subscribed_ns) / 1e6, l = (double)(last - s->subscribed_ns) / 1e6;
        if (f > m->first_ms)
            m->first_ms = f;
        if (l > m->last_ms)
            m->last_ms = l;
        sum += l;
    }
    m->mean_last_ms = sum / (double)opt.subscribers;
}

static void run_replay(struct outcome *r)
{
    if (!fill(r, &r->fill_replay, STREAM_REPLAY, (uint64_t)replay_events, false))
        return;
    struct sync_load_totals t;
    sync_load_sum(&t);
    replay_target = sync_load_stream_target(STREAM_REPLAY, &t);
    if (!measure_step(r, &r->replay, "replay", STEP_REPLAY, STREAM_REPLAY, &r->cursor, replay_done))
        return;
    step_times(&r->replay, true);
    uint64_t expected = (replay_target - r->cursor.seq) * (uint64_t)opt.subscribers;
    if (r->replay.lost || r->replay.dup)
        fail(r, "replay: %" PRIu64 " seq(s) lost, %" PRIu64 " duplicated", r->replay.lost,
             r->replay.dup);
    else if (r->replay.delivered != expected)
        fail(r, "replay: %" PRIu64 " events received, expected %" PRIu64, r->replay.delivered,
             expected);
}

/* Every subscriber's snapshot: the fewest documents, repeats, strangers. */
static void check_snapshot(struct outcome *r)
{
    r->docs_seen_min = UINT64_MAX;
    for (long i = 1; i <= opt.subscribers; i++) {
        const struct doc_tally *d = &subs[i].docs;
        if (subs[i].snapshot_cursor != r->snapshot_seq)
            fail(r, "snapshot: subscriber %ld's last page has cursor seq %" PRIu64 ", expected %"
                 PRIu64, i, subs[i].snapshot_cursor, r->snapshot_seq);
        if (d->seen < r->docs_seen_min)
            r->docs_seen_min = d->seen;
        r->docs_repeated += d->repeated;
        r->docs_unexpected += d->unexpected;
        if (subs[i].pages > r->pages)
            r->pages = subs[i].pages;
    }
    if (r->docs_seen_min != (uint64_t)snapshot_documents || r->docs_repeated || r->docs_unexpected)
        fail(r, "snapshot: %" PRIu64 " of %ld documents in the poorest one, %" PRIu64 " repeated, %"
             PRIu64 " not written by this run", r->docs_seen_min, snapshot_documents,
             r->docs_repeated, r->docs_unexpected);
}

static void run_snapshot(struct outcome *r)
{
    first_document = (uint64_t)(r->fill_replay.accepted ? replay_events : 0);
    for (long i = 1; i <= opt.subscribers; i++)
        if (!doc_tally_init(&subs[i].docs, first_document, (uint64_t)snapshot_documents))
            bench_die(1, "out of memory");
    if (!fill(r, &r->fill_snapshot, STREAM_SNAPSHOT, (uint64_t)snapshot_documents, true))
        return;
    struct sync_load_totals t;
    sync_load_sum(&t);
    r->snapshot_seq = sync_load_stream_target(STREAM_SNAPSHOT, &t);
    if (!measure_step(r, &r->snapshot, "snapshot", STEP_SNAPSHOT, STREAM_SNAPSHOT, NULL,
                      snapshot_done))
        return;
    step_times(&r->snapshot, false);
    check_snapshot(r);
}

/* ------------------------------------------------------------------------ */
/* summary and JSON                                                          */

static double per_second(uint64_t n, double seconds)
{
    return seconds > 0 ? (double)n / seconds : 0;
}

static double us_per(double cpu_s, uint64_t n)
{
    return cpu_s >= 0 && n ? cpu_s * 1e6 / (double)n : -1;
}

static void print_cpu(const char *label, const struct measured_step *m, uint64_t items,
                      const char *item)
{
    if (m->broker_cpu < 0)
        return;
    printf("  %-30s %.3f s, %.3f us per %s\n", label, m->broker_cpu, us_per(m->broker_cpu, items), item);
}

static void print_replay(const struct outcome *r)
{
    const struct measured_step *m = &r->replay;
    uint64_t k = replay_target - r->cursor.seq;
    printf("  %-30s %" PRIu64 " events accepted in %.2f s (%.0f /s), into '%s'\n", "fill (replay log)",
           r->fill_replay.accepted, r->fill_replay.seconds,
           per_second(r->fill_replay.accepted, r->fill_replay.seconds), collections[STREAM_REPLAY]);
    if (!m->ran)
        return;
    printf("  %-30s from cursor {seq %" PRIu64 ", epoch %s} to seq %" PRIu64 ": %" PRIu64
           " events each\n", "replay", r->cursor.seq, r->cursor.epoch, replay_target, k);
    if (!m->done)
        return;
    printf("  %-30s first event after %.1f ms, caught up after %.1f ms (slowest; mean %.1f ms)\n",
           "replay time", m->first_ms, m->last_ms, m->mean_last_ms);
    printf("  %-30s %.0f events/s per subscriber (slowest), %.0f events/s in all\n", "replay rate",
           per_second(k, m->last_ms / 1e3), per_second(m->delivered, m->last_ms / 1e3));
    printf("  %-30s %" PRIu64 " / %" PRIu64 " of %" PRIu64 " received%s\n", "replay lost / duplicated",
           m->lost, m->dup, m->delivered, m->lost || m->dup ? "  <-- EXPECTED 0 / 0" : "");
    print_cpu("broker CPU during the replay", m, m->delivered, "replayed event");
}

static void print_snapshot(const struct outcome *r)
{
    const struct measured_step *m = &r->snapshot;
    printf("  %-30s %" PRIu64 " documents accepted in %.2f s (%.0f /s), into '%s'\n",
           "fill (snapshot documents)", r->fill_snapshot.accepted, r->fill_snapshot.seconds,
           per_second(r->fill_snapshot.accepted, r->fill_snapshot.seconds),
           collections[STREAM_SNAPSHOT]);
    if (!m->done)
        return;
    printf("  %-30s first page after %.1f ms, last page after %.1f ms (slowest; mean %.1f ms), %" PRIu64
           " pages\n", "snapshot time", m->first_ms, m->last_ms, m->mean_last_ms, r->pages);
    printf("  %-30s %.0f documents/s per subscriber (slowest), %.0f documents/s in all\n",
           "snapshot rate", per_second((uint64_t)snapshot_documents, m->last_ms / 1e3),
           per_second((uint64_t)snapshot_documents * (uint64_t)opt.subscribers, m->last_ms / 1e3));
    printf("  %-30s %" PRIu64 " of %ld documents each (fewest), %" PRIu64 " repeated, %" PRIu64
           " unexpected; cursor seq %" PRIu64 "\n", "snapshot check", r->docs_seen_min,
           snapshot_documents, r->docs_repeated, r->docs_unexpected, r->snapshot_seq);
    print_cpu("broker CPU during the snapshot", m,
              (uint64_t)snapshot_documents * (uint64_t)opt.subscribers, "document");
}

static void print_summary(const struct outcome *r)
{
    printf(PROG " catchup  %s  '%s', '%s'\n", opt.url, collections[STREAM_REPLAY],
           collections[STREAM_SNAPSHOT]);
    printf("  %-30s %ld subscriber%s catching up (and 1 live), 1 publisher filling with batches of "
           "%ld x %ld B, %ld in flight\n", "load", opt.subscribers, opt.subscribers == 1 ? "" : "s",
           opt.batch, opt.size, opt.inflight);
    printf("  %-30s setup %.2f s, %d client thread%s, each step within %.0f s\n", "run", r->setup_s,
           opt.threads, opt.threads == 1 ? "" : "s", step_timeout);
    printf("  %-30s %s\n", "------------------------------", "------------------------------");
    if (replay_events)
        print_replay(r);
    if (snapshot_documents)
        print_snapshot(r);
    const struct sync_load_tally *t = &r->tally;
    printf("  %-30s %" PRIu64 " / %" PRIu64 "%s (every subscriber, the whole run)\n",
           "lost / duplicated", t->lost, t->dups, t->lost || t->dups ? "  <-- EXPECTED 0 / 0" : "");
    if (r->rss_before >= 0)
        printf("  %-30s %.1f MiB before setup, %.1f MiB after the fills, %.1f MiB at the end\n",
               "broker RSS", r->rss_before / 1024.0, r->rss_filled / 1024.0, r->rss_after / 1024.0);
    double wall = (double)(r->last.t - r->first.t) / 1e9;
    printf("  %-30s %.2f s (%.0f%% of one core over the run)\n", "bench CPU", r->self_cpu,
           wall > 0 ? 100.0 * r->self_cpu / wall : 0.0);
    if (r->host_ok)
        printf("  %-30s %d cores, %.0f%% busy: broker %.2f, bench %.2f, softirq %.2f, other "
               "processes %.2f cores; hypervisor steal %.2f cores%s\n", "host CPU", r->host.cpus,
               100.0 * r->host.busy / r->host.cpus, r->broker_cpu_all / wall, r->self_cpu / wall,
               r->host.softirq, r->host.other, r->host.steal,
               r->host.other > 0.2 || r->host.steal > 0.05
                   ? "  (the machine was shared: numbers are noisy)" : "");
    printf("  %-30s %s%s%s\n", "result", r->pass ? "PASS" : "FAIL", r->why_not[0] ? ": " : "",
           r->why_not);
    fflush(stdout);
}

static void json_step(FILE *j, const char *name, const struct measured_step *m, uint64_t items)
{
    fprintf(j, "  \"%s_done\": %s,\n  \"%s_first_ms\": %.3f,\n  \"%s_last_ms\": %.3f,\n"
               "  \"%s_mean_last_ms\": %.3f,\n  \"%s_lost\": %" PRIu64 ",\n"
               "  \"%s_duplicated\": %" PRIu64 ",\n",
            name, m->done ? "true" : "false", name, m->first_ms, name, m->last_ms, name,
            m->mean_last_ms, name, m->lost, name, m->dup);
    if (m->broker_cpu >= 0)
        fprintf(j, "  \"%s_broker_cpu_s\": %.4f,\n  \"%s_broker_cpu_us_per_item\": %.4f,\n", name,
                m->broker_cpu, name, us_per(m->broker_cpu, items));
}

static void write_json_body(FILE *j, const void *arg)
{
    const struct outcome *r = arg;
    uint64_t k = replay_target - r->cursor.seq;
    fprintf(j, "{\n  \"scenario\": \"catchup\",\n  \"url\": ");
    bench_json_str(j, opt.url);
    fprintf(j, ",\n  \"collection_replay\": ");
    bench_json_str(j, collections[STREAM_REPLAY]);
    fprintf(j, ",\n  \"collection_snapshot\": ");
    bench_json_str(j, collections[STREAM_SNAPSHOT]);
    fprintf(j, ",\n  \"subscribers\": %ld,\n  \"batch\": %ld,\n  \"size\": %ld,\n"
               "  \"inflight\": %ld,\n  \"threads\": %d,\n  \"setup_s\": %.3f,\n",
            opt.subscribers, opt.batch, opt.size, opt.inflight, opt.threads, r->setup_s);
    fprintf(j, "  \"replay_events\": %ld,\n  \"fill_replay_s\": %.3f,\n"
               "  \"replay_cursor_seq\": %" PRIu64 ",\n  \"replay_last_seq\": %" PRIu64 ",\n"
               "  \"replayed\": %" PRIu64 ",\n  \"replay_events_per_s\": %.1f,\n"
               "  \"replay_events_per_s_all\": %.1f,\n",
            replay_events, r->fill_replay.seconds, r->cursor.seq, replay_target, r->replay.delivered,
            per_second(k, r->replay.last_ms / 1e3), per_second(r->replay.delivered, r->replay.last_ms / 1e3));
    json_step(j, "replay", &r->replay, r->replay.delivered);
    uint64_t docs_all = (uint64_t)snapshot_documents * (uint64_t)opt.subscribers;
    fprintf(j, "  \"snapshot_documents\": %ld,\n  \"fill_snapshot_s\": %.3f,\n"
               "  \"snapshot_seq\": %" PRIu64 ",\n  \"snapshot_documents_seen\": %" PRIu64 ",\n"
               "  \"snapshot_repeated\": %" PRIu64 ",\n  \"snapshot_unexpected\": %" PRIu64 ",\n"
               "  \"snapshot_pages\": %" PRIu64 ",\n  \"snapshot_documents_per_s\": %.1f,\n"
               "  \"snapshot_documents_per_s_all\": %.1f,\n",
            snapshot_documents, r->fill_snapshot.seconds, r->snapshot_seq,
            r->snapshot.done ? r->docs_seen_min : 0, r->docs_repeated, r->docs_unexpected, r->pages,
            per_second((uint64_t)snapshot_documents, r->snapshot.last_ms / 1e3),
            per_second(docs_all, r->snapshot.last_ms / 1e3));
    json_step(j, "snapshot", &r->snapshot, docs_all);
    fprintf(j, "  \"lost\": %" PRIu64 ",\n  \"duplicated\": %" PRIu64 ",\n", r->tally.lost,
            r->tally.dups);
    if (r->rss_before >= 0)
        fprintf(j, "  \"broker_rss_before_kib\": %ld,\n  \"broker_rss_filled_kib\": %ld,\n"
                   "  \"broker_rss_after_kib\": %ld,\n", r->rss_before, r->rss_filled, r->rss_after);
    if (r->host_ok)
        fprintf(j, "  \"other_processes_cores\": %.3f,\n  \"steal_cores\": %.3f,\n", r->host.other,
                r->host.steal);
    fprintf(j, "  \"bench_cpu_s\": %.3f,\n  \"completed\": %s,\n  \"error\": ", r->self_cpu,
            r->completed ? "true" : "false");
    bench_json_str(j, r->why_not);
    fprintf(j, ",\n  \"pass\": %s\n}\n", r->pass ? "true" : "false");
}

/* ------------------------------------------------------------------------ */
/* the run                                                                   */

static void configure(struct sync_load_config *cfg)
{
    uint64_t run_id = bench_random_u64();
    const char *suffix[2] = {"replay", "snapshot"};
    for (int i = 0; i < 2; i++) {
        int n = snprintf(collections[i], sizeof collections[i], "%s-%016" PRIx64 "-%s", opt.collection,
                         run_id, suffix[i]);
        if (n > 128)
            bench_die_usage("--collection: '%s' makes collection names longer than 128 bytes",
                            opt.collection);
        streams[i] = (struct sync_load_stream){collections[i], opt.token};
    }
    subs = calloc((size_t)opt.subscribers + 1, sizeof *subs);
    if (!subs)
        bench_die(1, "out of memory");
    *cfg = (struct sync_load_config){
        .url = opt.url,
        .ep = opt.ep,
        .subscribers = opt.subscribers + 1,     /* and the live one */
        .publishers = 1,
        .batch = opt.batch,
        .size = opt.size,
        .inflight = opt.inflight,
        .threads = opt.threads,
        .run_id = run_id,
        .streams = streams,
        .nstreams = 2,
        .setup_subscribers = 1,                 /* the live one: subscriber 0, stream 0 */
        .on_events = on_replayed,
        .on_snapshot = on_snapshot_page,
    };
}


/* Setup, then the two steps; the outcome's checks and times. */
static void run_steps(struct outcome *r)
{
    uint64_t t0 = bench_mono_ns();
    sync_load_start();
    r->completed = sync_load_wait_setup(t0, r->why_not, sizeof r->why_not);
    r->setup_s = (double)(bench_mono_ns() - t0) / 1e9;
    if (!r->completed)
        return;
    if (!sync_load_stream_head(STREAM_REPLAY, &r->cursor)) {
        fail(r, "the live subscriber's snapshot gave no cursor");
        return;
    }
    fprintf(stderr, PROG ": setup done in %.2f s; the replay starts after cursor {seq %" PRIu64
            ", epoch %s}\n", r->setup_s, r->cursor.seq, r->cursor.epoch);
    sync_load_sample(&r->first, opt.broker_pid);
    if (replay_events)
        run_replay(r);
    if (snapshot_documents && r->completed)
        run_snapshot(r);
    sync_load_sample(&r->last, opt.broker_pid);
}

static void finish(struct outcome *r)
{
    sync_load_close();
    struct sync_load_totals t;
    sync_load_sum(&t);
    if (t.failed[SYNC_LOAD_FAIL_RUN])
        fail(r, "%ld connection(s) lost during the run; first: %s", t.failed[SYNC_LOAD_FAIL_RUN],
             sync_load_first_error(SYNC_LOAD_FAIL_RUN));
    sync_load_tally(&r->tally, r->completed);
    if (!r->last.t)
        sync_load_sample(&r->last, opt.broker_pid);
    if (!r->first.t)
        r->first = r->last;
    double wall = (double)(r->last.t - r->first.t) / 1e9;
    r->broker_cpu_all = r->last.broker_cpu >= 0 && r->first.broker_cpu >= 0
                            ? r->last.broker_cpu - r->first.broker_cpu : 0;
    r->self_cpu = r->last.self_cpu - r->first.self_cpu;
    r->host_ok = bench_host_share(&r->first.host, &r->last.host, wall, r->broker_cpu_all + r->self_cpu,
                                  &r->host);
    r->pass = r->completed && r->tally.lost == 0 && r->tally.dups == 0;
    if (r->completed && !r->pass)
        snprintf(r->why_not, sizeof r->why_not, "lost or duplicated events");
}

static int run_catchup(int argc, char **argv)
{
    bench_set_program(PROG, "(try " PROG " catchup --help)");
    parse_args(argc, argv);
    static struct outcome r;
    r = (struct outcome){.completed = true, .rss_before = -1, .rss_filled = -1, .rss_after = -1,
                         .replay = {.broker_cpu = -1}, .snapshot = {.broker_cpu = -1}};
    struct sync_load_config cfg;
    configure(&cfg);
    sync_load_init(&cfg);
    if (opt.broker_pid)
        r.rss_before = bench_broker_rss_before(opt.broker_pid);
    fprintf(stderr, PROG " catchup: %s: replay %ld events, snapshot %ld documents, %ld subscriber%s, "
            "batch %ld x %ld B, %ld in flight, %d thread%s%s\n", opt.url, replay_events,
            snapshot_documents, opt.subscribers, opt.subscribers == 1 ? "" : "s", opt.batch, opt.size,
            opt.inflight, opt.threads, opt.threads == 1 ? "" : "s",
            sync_load_spreads_sources() ? ", sources 127.0.X.Y" : "");
    run_steps(&r);
    r.rss_after = broker_rss();
    finish(&r);
    print_summary(&r);
    bench_write_json(opt.json_path, write_json_body, &r);
    sync_load_free();
    for (long i = 0; i <= opt.subscribers; i++)
        doc_tally_free(&subs[i].docs);
    free(subs);
    return r.pass ? 0 : 1;
}

const struct sync_scenario scenario_catchup = {
    .name = "catchup",
    .summary = "replay after K missed events, snapshot of D documents: rate, time, checks",
    .run = run_catchup,
};
