/* nebula-sync-bench: load scenarios over the nebula-sync.v1 protocol.
 *
 * Scenario `fanout` (the only one so far): S subscribers and P publishers on
 * one collection. Every subscriber connects, sends Hello and Subscribe (no
 * cursor, so the broker answers Subscribed + Snapshot pages) and is "ready"
 * once the last snapshot page has given it its start position. Then the
 * publishers push batches of K events (a B-byte JSON document each) with W
 * Push messages in flight per publisher, either as fast as PushResults come
 * back or paced to a total rate of R events/s. After --warmup seconds the
 * measured window of --duration seconds starts; at its end the publishers
 * stop, the tool waits until every subscriber has every accepted event (or
 * DRAIN_TIMEOUT_S passes), closes everything and prints the result.
 *
 * What is measured:
 *  - publish-to-deliver latency: each event's data starts with
 *    {"ts":"<19 digits>" = CLOCK_MONOTONIC nanoseconds when the Push was
 *    written; the subscriber subtracts it from its clock when the Events
 *    message has been read (same machine, same clock). Events published
 *    inside the window are recorded in a log-linear histogram
 *    (sync_bench_hist.h, < 0.4% error);
 *  - seq checks: per subscriber, every seq must be exactly the previous one
 *    + 1 from its snapshot position: a jump counts the skipped seqs as lost,
 *    a seq <= the previous one as duplicated; seqs still missing at the end
 *    of the drain are lost too;
 *  - rates over the window: Push messages acknowledged, events ACCEPTED,
 *    deliveries (events received, summed over all subscribers);
 *  - with --broker-pid: the broker's utime+stime over the window (CPU per
 *    delivery) and its VmRSS.
 *
 * Targets: nebula-syncd (the default) is spoken to here. --target socketio
 * and --target ws-broadcast run the same scenario against another server in
 * its own protocol (fanout_target.h; peer_socketio.c, peer_wsbroadcast.c):
 * this file keeps the connections, phases, pacing, checks and report, the
 * target module the protocol. Their events carry this tool's ids and
 * documents in JSON (peer_events.h), and every subscriber checks each
 * publisher's counter instead of a seq.
 *
 * Design (as nebula-ws-bench): one libevent event_base per --threads thread,
 * each connection a bufferevent owned by one thread; the main thread sets the
 * phase, wakes the threads with event_active() (thread-safe after
 * evthread_use_pthreads()) and reads relaxed atomic counters once a second.
 * Client sockets are bound to 127.0.X.Y (IP_BIND_ADDRESS_NO_PORT) for
 * loopback targets. Server frames are parsed by ws_reader (client role),
 * ServerMessages decoded by protobuf-c into a per-thread arena that is reset
 * after each message (no malloc/free per field), client frames masked with a
 * fresh key per frame from a xorshift PRNG seeded by RAND_bytes.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <malloc.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#include "bench_common.h"
#include "event_format.h"
#include "fanout_target.h"
#include "nebula_sync.pb-c.h"
#include "peer_events.h"
#include "peer_socketio.h"
#include "peer_wsbroadcast.h"
#include "events_scan.h"
#include "seq_check.h"
#include "sync_bench_hist.h"
#include "ws_frame.h"
#include "ws_handshake.h"

#define PROG "nebula-sync-bench"
#define FD_MARGIN 100                 /* fds kept free for stdio, epoll, /proc reads... */
#define MAX_RESPONSE_HEAD 8192
#define MAX_MESSAGE (64u << 20)       /* largest server message we accept */
#define RAMP_PER_THREAD 256           /* handshakes in flight per thread while connecting */
#define SETUP_TIMEOUT_S 60            /* everyone connected and subscribed within this */
#define HANDSHAKE_TIMEOUT_S 20        /* one connection: TCP connect .. snapshot done */
#define DRAIN_TIMEOUT_S 10            /* after the window: wait this long for the tail */
#define CLOSE_WAIT_S 2
#define STOP_GRACE_S 3
#define MAX_SIZE (512 * 1024)
#define NEBULA_URL "ws://127.0.0.1:8080/v1/sync"
#define MAX_PEER_STREAMS 50000000L    /* subscribers x publishers seq streams (24 B each) */
#define ARENA_BYTES (8u << 20)
#define READ_CHUNK (64 * 1024)        /* bytes per read() once a connection is ready */

/* ------------------------------------------------------------------------ */
/* options                                                                  */

struct options {
    const struct fanout_target *target;   /* NULL: nebula-syncd */
    const char *url;
    struct bench_endpoint ep;       /* the URL, parsed */
    const char *publish_url;        /* publishers connect here instead (another broker) */
    struct bench_endpoint publish_ep;
    long subscribers;
    long publishers;
    long batch;
    long size;
    long inflight;
    double rate;                    /* events/s over all publishers; 0: as fast as acknowledged */
    double duration;
    double warmup;
    int threads;
    pid_t broker_pid;
    const char *token;
    const char *collection;
    const char *json_path;
};

static struct options opt = {
    .subscribers = 100,
    .publishers = 1,
    .batch = 10,
    .size = 200,
    .inflight = 4,
    .rate = 0,
    .duration = 10,
    .warmup = 2,
    .threads = 1,
    .collection = "nebula-sync-bench",
};

static void usage(FILE *f)
{
    fprintf(f,
        "usage: " PROG " fanout [options]\n"
        "\n"
        "Load scenarios for nebula-syncd over the nebula-sync.v1 protocol, and the\n"
        "same scenario against other servers for a side-by-side comparison.\n"
        "\n"
        "fanout: S subscribers and P publishers on one collection. Publishers push\n"
        "batches of K events (a B-byte JSON document each) with W pushes in flight,\n"
        "as fast as acknowledged or at a total rate; subscribers check that every seq\n"
        "arrives exactly once, in order, and measure publish-to-deliver latency.\n"
        "\n"
        "  --target T           the server: nebula (nebula-syncd, the default),\n"
        "                       socketio (the seed's Socket.IO sync server:\n"
        "                       client:info, client:sync with ack, server:sync) or\n"
        "                       ws-broadcast (a WebSocket server that re-sends every\n"
        "                       message to every other connection; no acks: batches\n"
        "                       count once written, paced by --inflight batches of\n"
        "                       output buffer or by --rate). bench/peers/start.sh\n"
        "                       starts the last two. For them, seqs are each\n"
        "                       publisher's own event counter.\n"
        "  --url URL            ws://HOST:PORT/PATH or wss://... (default per target:\n"
        "                       nebula " NEBULA_URL ",\n"
        "                       socketio ws://127.0.0.1:3000/socket.io/ (the query\n"
        "                       ?EIO=4&transport=websocket is added when missing),\n"
        "                       ws-broadcast ws://127.0.0.1:3001/)\n"
        "  --subscribers S      subscriber connections (default 100)\n"
        "  --publishers P       publisher connections (default 1)\n"
        "  --batch K            events per Push (default 10, at most 1000)\n"
        "  --size B             bytes of each event's JSON document (default 200, %d..%d)\n"
        "  --inflight W         Push messages in flight per publisher (default 4)\n"
        "  --rate R             target events/s over all publishers; 0 = as fast as\n"
        "                       acknowledged (default 0)\n"
        "  --duration D         measured seconds (default 10)\n"
        "  --warmup S           seconds of load before the measurement (default 2)\n"
        "  --threads N          client threads, one event loop each (default 1)\n"
        "  --broker-pid PID     read the broker's CPU time and VmRSS from /proc/PID\n"
        "  --token T            Hello.auth_token (for brokers run with --auth tokens);\n"
        "                       socketio: sent as the connect packet's auth.token\n"
        "  --collection NAME    collection to use (default nebula-sync-bench)\n"
        "  --json FILE          also write the result as JSON to FILE\n"
        "  -h, --help           this text\n"
        "\n"
        "A progress line per second goes to stderr, the summary to stdout.\n"
        "Exit status: 0 the run completed with 0 lost and 0 duplicated events;\n"
        "1 anything else (lost or duplicated events, a connection failed or was\n"
        "closed, a setup or drain timeout, nothing accepted, interrupted);\n"
        "2 usage error (including too few file descriptors for S + P).\n",
        EVENT_DOC_MIN_SIZE, MAX_SIZE);
}

static const struct fanout_target *parse_target(const char *name)
{
    if (strcmp(name, "nebula") == 0)
        return NULL;
    if (strcmp(name, peer_socketio_target.name) == 0)
        return &peer_socketio_target;
    if (strcmp(name, peer_wsbroadcast_target.name) == 0)
        return &peer_wsbroadcast_target;
    bench_die_usage("--target: '%s' is not nebula, socketio or ws-broadcast", name);
}

/* A peer's URL: "/" when it has no path, then the target's request path
 * (Socket.IO adds its query). */
static void set_peer_request(const struct fanout_target *t, const char *url, struct bench_endpoint *ep)
{
    bench_parse_url(url, "/", ep);
    char path[sizeof ep->path];
    if (!t->request_path(ep->path, path, sizeof path))
        bench_die_usage("--url: the path of '%s' is too long", url);
    strcpy(ep->path, path);
}

/* Options that only some targets take, and the peer targets' seq tables. */
static void check_target_options(void)
{
    if (!opt.target)
        return;
    if (opt.token && opt.target == &peer_wsbroadcast_target)
        bench_die_usage("--token: the ws-broadcast target has no authentication");
    if (opt.subscribers > MAX_PEER_STREAMS / opt.publishers)
        bench_die_usage("--subscribers x --publishers: %ld x %ld counters to check is more than "
                        "%ld", opt.subscribers, opt.publishers, MAX_PEER_STREAMS);
}

static void parse_args(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            exit(0);
        }
    }
    if (argc < 2 || argv[1][0] == '-')
        bench_die_usage("name a scenario first: " PROG " fanout [options]");
    if (strcmp(argv[1], "fanout") != 0)
        bench_die_usage("unknown scenario '%s' (known: fanout)", argv[1]);

    enum { O_TARGET = 256, O_URL, O_PUBLISH_URL, O_SUBS, O_PUBS, O_BATCH, O_SIZE, O_INFLIGHT, O_RATE, O_DUR,
           O_WARMUP, O_THREADS, O_PID, O_TOKEN, O_COLL, O_JSON };
    static const struct option longopts[] = {
        {"target", required_argument, NULL, O_TARGET},
        {"url", required_argument, NULL, O_URL},
        {"publish-url", required_argument, NULL, O_PUBLISH_URL},
        {"subscribers", required_argument, NULL, O_SUBS},
        {"publishers", required_argument, NULL, O_PUBS},
        {"batch", required_argument, NULL, O_BATCH},
        {"size", required_argument, NULL, O_SIZE},
        {"inflight", required_argument, NULL, O_INFLIGHT},
        {"rate", required_argument, NULL, O_RATE},
        {"duration", required_argument, NULL, O_DUR},
        {"warmup", required_argument, NULL, O_WARMUP},
        {"threads", required_argument, NULL, O_THREADS},
        {"broker-pid", required_argument, NULL, O_PID},
        {"token", required_argument, NULL, O_TOKEN},
        {"collection", required_argument, NULL, O_COLL},
        {"json", required_argument, NULL, O_JSON},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    optind = 2;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case O_TARGET: opt.target = parse_target(optarg); break;
        case O_URL: opt.url = optarg; break;
        case O_PUBLISH_URL: opt.publish_url = optarg; break;
        case O_SUBS: opt.subscribers = bench_option_long("--subscribers", optarg, 1, 1000000); break;
        case O_PUBS: opt.publishers = bench_option_long("--publishers", optarg, 1, 10000); break;
        case O_BATCH: opt.batch = bench_option_long("--batch", optarg, 1, 1000); break;
        case O_SIZE: opt.size = bench_option_long("--size", optarg, EVENT_DOC_MIN_SIZE, MAX_SIZE); break;
        case O_INFLIGHT: opt.inflight = bench_option_long("--inflight", optarg, 1, 1024); break;
        case O_RATE: opt.rate = bench_option_double("--rate", optarg, 0, 1e9); break;
        case O_DUR: opt.duration = bench_option_double("--duration", optarg, 0.1, 86400); break;
        case O_WARMUP: opt.warmup = bench_option_double("--warmup", optarg, 0, 3600); break;
        case O_THREADS: opt.threads = (int)bench_option_long("--threads", optarg, 1, 256); break;
        case O_PID: opt.broker_pid = (pid_t)bench_option_long("--broker-pid", optarg, 1, INT_MAX); break;
        case O_TOKEN:
            if (strlen(optarg) > 4000)
                bench_die_usage("--token: longer than 4000 bytes");
            opt.token = optarg;
            break;
        case O_COLL: {
            size_t n = strlen(optarg);
            if (n == 0 || n > 128)
                bench_die_usage("--collection: 1 to 128 bytes");
            for (size_t i = 0; i < n; i++)
                if ((unsigned char)optarg[i] < 0x20)
                    bench_die_usage("--collection: no control characters");
            opt.collection = optarg;
            break;
        }
        case O_JSON: opt.json_path = optarg; break;
        case '?':
        default:
            if (optopt > 0 && optopt < 256)
                bench_die_usage("option -%c is unknown or needs a value", optopt);
            bench_die_usage("option '%s' is unknown or needs a value", argv[optind - 1]);
        }
    }
    if (optind < argc)
        bench_die_usage("unexpected argument '%s'", argv[optind]);
    if (!opt.url)
        opt.url = opt.target ? opt.target->default_url : NEBULA_URL;
    if (opt.target)
        set_peer_request(opt.target, opt.url, &opt.ep);
    else
        bench_parse_url(opt.url, "/v1/sync", &opt.ep);
    opt.publish_ep = opt.ep;
    if (opt.publish_url) {
        if (opt.target)
            bench_die_usage("--publish-url is for the nebula target only");
        bench_parse_url(opt.publish_url, "/v1/sync", &opt.publish_ep);
        if (opt.publish_ep.tls != opt.ep.tls)
            bench_die_usage("--publish-url must use the same scheme (ws/wss) as --url");
    }
    long conns = opt.subscribers + opt.publishers;
    if (opt.threads > conns)
        opt.threads = (int)conns;
    if (opt.batch * (opt.size + 200) > 64L << 20)
        bench_die_usage("--batch x --size: a Push of %ld x %ld bytes is unreasonably large",
                        opt.batch, opt.size);
    check_target_options();
}

/* ------------------------------------------------------------------------ */
/* randomness                                                               */

static uint64_t rand_u64(void)
{
    uint64_t v = 0;
    if (RAND_bytes((unsigned char *)&v, sizeof v) != 1)
        bench_die(1, "RAND_bytes failed");
    return v;
}

/* xorshift64*: masking keys only need to be unpredictable to a proxy, not
 * cryptographically strong; seeded from RAND_bytes per thread. */
static inline uint64_t xs_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* ------------------------------------------------------------------------ */
/* protobuf-c arena: a ServerMessage is unpacked into it, used, and the arena */
/* is reset, so decoding costs no malloc/free per field.                     */

struct arena {
    uint8_t *buf;
    size_t cap, used;
    void **big;                       /* overflow allocations, freed on reset */
    size_t nbig, capbig;
};

static void *arena_alloc(void *data, size_t size)
{
    struct arena *a = data;
    size_t need = (size + 15) & ~(size_t)15;
    if (need <= a->cap - a->used) {
        void *p = a->buf + a->used;
        a->used += need;
        return p;
    }
    if (a->nbig == a->capbig) {
        size_t cap = a->capbig ? a->capbig * 2 : 16;
        void **grown = realloc(a->big, cap * sizeof *grown);
        if (!grown)
            return NULL;
        a->big = grown;
        a->capbig = cap;
    }
    void *p = malloc(size);
    if (p)
        a->big[a->nbig++] = p;
    return p;
}

static void arena_free(void *data, void *p)
{
    (void)data;
    (void)p;                          /* everything goes at arena_reset */
}

static void arena_reset(struct arena *a)
{
    a->used = 0;
    for (size_t i = 0; i < a->nbig; i++)
        free(a->big[i]);
    a->nbig = 0;
}

/* ------------------------------------------------------------------------ */
/* shared state                                                              */

enum phase {
    PH_SETUP,     /* connecting, Hello, Subscribe + snapshot */
    PH_RUN,       /* publishers push (warm-up, then the window) */
    PH_STOP,      /* publishers send nothing more; results and deliveries drain */
    PH_CLOSE,     /* close every connection, then the threads exit */
};

static _Atomic int phase = PH_SETUP;
static _Atomic uint64_t window_start_ns = UINT64_MAX;   /* publish times in [start, end) */
static _Atomic uint64_t window_end_ns = UINT64_MAX;     /* are recorded in the histograms */

static struct bench_dest dest;        /* the broker; sources 127.0.X.Y if loopback */
static struct bench_dest publish_dest; /* where publishers connect (dest unless --publish-url) */
static SSL_CTX *ssl_ctx;
static uint64_t run_id;               /* random: event and document ids of this run */
static struct fanout_params params;   /* the scenario, for the peer targets */
static _Atomic uint32_t max_message_size;  /* from Welcome.limits; 0 until known */

enum cstate { ST_TCP, ST_TLS, ST_HTTP, ST_WELCOME, ST_SUBSCRIBING, ST_READY, ST_CLOSING, ST_DONE };
enum role { ROLE_SUB, ROLE_PUB };

struct worker;

struct slot {                         /* one Push in flight */
    uint64_t request_id;
    uint64_t sent_ns;
};

struct pub {
    long index;                       /* 0..P-1 */
    uint64_t next_request_id;
    uint64_t counter;                 /* events pushed so far */
    uint64_t hlc;
    long inflight;
    struct slot *slots;               /* opt.inflight entries; request_id 0 = free */
    Nebula__Sync__V1__Event *events;  /* opt.batch, reused for every Push */
    Nebula__Sync__V1__Event **event_ptrs;
    char (*ids)[40];
    char (*doc_ids)[64];
    uint8_t *data;                    /* opt.batch documents of opt.size bytes */
    uint8_t *packbuf;
    size_t packcap;
    size_t batch_bytes;               /* unacked targets: the last batch's frame */
    struct event *timer;              /* --rate pacing */
    uint64_t interval_ns;             /* --rate: between two Pushes of this publisher */
    uint64_t next_due_ns;
};

struct fanout_conn {
    struct worker *w;
    enum role role;
    long index;                       /* subscriber or publisher index */
    int fd;
    struct event *cev;
    struct bufferevent *bev;
    struct event *rev;                /* our own read event once ready (plain TCP) */
    enum cstate state;
    bool live;
    ws_reader rd;
    char accept[WS_ACCEPT_KEY_LEN + 1];
    uint8_t *frag;                    /* a fragmented message being reassembled */
    size_t frag_len, frag_cap;

    /* subscriber */
    bool started;                     /* initial snapshot done: seq is meaningful */
    bool resnapshot;                  /* a later Subscribed: a snapshot is coming */
    struct seq_stream seq;            /* nebula: the collection's seqs */
    struct seq_table table;           /* peer targets: one stream per publisher */
    _Atomic uint64_t last_seq_shared; /* seq.last or table.position, for the drain check */
    uint64_t received, skipped, foreign;
    uint32_t resnapshots;

    /* publisher */
    struct pub *pub;

    void *peer;                       /* the peer target's state for this connection */
};

enum fail_kind { FK_SETUP, FK_RUN, FK_COUNT };

struct worker {
    int id;
    pthread_t thread;
    struct event_base *base;
    struct event *phase_ev;
    struct event *grace_ev;
    struct fanout_conn *conns;        /* this thread's subscribers, then its publishers */
    long nconns, nsubs;
    long launched;                    /* conns started so far */
    long handshaking;
    long live;
    bool closing;
    uint64_t xs;                      /* PRNG state */
    struct arena arena;
    ProtobufCAllocator alloc;
    hist lat;                         /* publish -> deliver, window only */
    hist ack;                         /* Push written -> PushResult read, window only */

    /* written by this thread, read by the main thread while running */
    atomic_long ready_subs, ready_pubs;
    atomic_long failed[FK_COUNT];
    _Atomic uint64_t delivered;       /* events received by subscribers */
    _Atomic uint64_t lost, dup;
    _Atomic uint64_t pushes_sent, pushes_acked;
    _Atomic uint64_t events_accepted, events_not_accepted;
    _Atomic uint64_t max_seq;         /* highest ACCEPTED seq seen */
    atomic_long inflight;             /* Push messages awaiting a result */
    _Atomic uint64_t sched_slips;     /* --rate: a publisher fell > 100 ms behind */
    atomic_bool stopped;              /* PH_STOP seen: its publishers send nothing more */

    /* read after join */
    char first_err[FK_COUNT][256];
    char first_reject[256];
    uint64_t n_duplicate, n_conflict, n_rejected, n_foreign, n_resnapshots, n_skipped;
};

static struct worker *workers;

/* ------------------------------------------------------------------------ */
/* connections: failure, freeing                                             */

static void refill(struct worker *w);
static void pub_pump(struct fanout_conn *c);
static void fast_read_start(struct fanout_conn *c);

static void conn_release(struct fanout_conn *c)
{
    struct worker *w = c->w;
    if (!c->live)
        return;
    if (c->state < ST_READY)
        w->handshaking--;
    c->live = false;
    c->state = ST_DONE;
    if (c->cev) {
        event_free(c->cev);
        c->cev = NULL;
    }
    if (c->rev) {
        event_free(c->rev);
        c->rev = NULL;
    }
    if (c->bev) {
        bufferevent_free(c->bev);
        c->bev = NULL;
    } else if (c->fd >= 0) {
        close(c->fd);
    }
    c->fd = -1;
    free(c->frag);
    c->frag = NULL;
    if (c->pub && c->pub->timer)
        evtimer_del(c->pub->timer);
    if (c->pub && c->pub->inflight) {
        atomic_fetch_sub_explicit(&w->inflight, c->pub->inflight, memory_order_relaxed);
        c->pub->inflight = 0;
    }
    w->live--;
    if (w->closing) {
        if (w->live == 0)
            event_base_loopbreak(w->base);
        return;
    }
    refill(w);
}

/* A connection failed: counted as a setup failure before the run, as a run
 * failure (a subscriber or publisher lost) after; the first error of each
 * kind is kept verbatim. Always returns false (the conn is gone). */
static bool conn_fail(struct fanout_conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool conn_fail(struct fanout_conn *c, const char *fmt, ...)
{
    struct worker *w = c->w;
    if (w->closing || c->state == ST_CLOSING) {   /* we are closing it anyway */
        conn_release(c);
        return false;
    }
    enum fail_kind k = atomic_load_explicit(&phase, memory_order_relaxed) == PH_SETUP ? FK_SETUP
                                                                                      : FK_RUN;
    if (atomic_fetch_add_explicit(&w->failed[k], 1, memory_order_relaxed) == 0) {
        char msg[200];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        snprintf(w->first_err[k], sizeof w->first_err[k], "%s %ld: %s",
                 c->role == ROLE_SUB ? "subscriber" : "publisher", c->index, msg);
    }
    conn_release(c);
    return false;
}

/* ------------------------------------------------------------------------ */
/* sending                                                                   */

/* Masks buf[hlen..hlen+len) and writes the header in front of it; then sends
 * the whole frame with one copy into the bufferevent. */
static void send_framed(struct fanout_conn *c, uint8_t opcode, uint8_t *buf, size_t hlen, size_t len)
{
    uint64_t r = xs_next(&c->w->xs);
    uint8_t mask[4];
    memcpy(mask, &r, 4);
    bench_ws_send_masked(c->bev, opcode, buf, hlen, len, mask);
}

static void send_small(struct fanout_conn *c, uint8_t opcode, const uint8_t *payload, size_t len)
{
    uint8_t frame[WS_MAX_HEADER_LEN + WS_MAX_CONTROL_PAYLOAD];
    if (len > WS_MAX_CONTROL_PAYLOAD)
        return;
    size_t hlen = bench_ws_header_len(len);
    memcpy(frame + hlen, payload, len);
    send_framed(c, opcode, frame, hlen, len);
}

/* Packs a ClientMessage and sends it as one masked binary frame. */
static bool send_client_message(struct fanout_conn *c, const Nebula__Sync__V1__ClientMessage *m)
{
    size_t len = nebula__sync__v1__client_message__get_packed_size(m);
    size_t hlen = bench_ws_header_len(len);
    uint8_t stackbuf[8192];
    uint8_t *buf = hlen + len <= sizeof stackbuf ? stackbuf : malloc(hlen + len);
    if (!buf)
        return conn_fail(c, "out of memory");
    nebula__sync__v1__client_message__pack(m, buf + hlen);
    send_framed(c, WS_OP_BINARY, buf, hlen, len);
    if (buf != stackbuf)
        free(buf);
    return true;
}

static void send_hello(struct fanout_conn *c)
{
    char id[FANOUT_CLIENT_ID_MAX];
    fanout_conn_client_id(c, id);
    Nebula__Sync__V1__Hello hello = NEBULA__SYNC__V1__HELLO__INIT;
    hello.client_id = id;
    hello.auth_token = (char *)(opt.token ? opt.token : "");
    hello.client_version = PROG " " NEBULA_VERSION;
    Nebula__Sync__V1__ClientMessage m = NEBULA__SYNC__V1__CLIENT_MESSAGE__INIT;
    m.message_case = NEBULA__SYNC__V1__CLIENT_MESSAGE__MESSAGE_HELLO;
    m.hello = &hello;
    send_client_message(c, &m);
}

static void send_subscribe(struct fanout_conn *c)
{
    Nebula__Sync__V1__CollectionSubscription cs = NEBULA__SYNC__V1__COLLECTION_SUBSCRIPTION__INIT;
    cs.collection = (char *)opt.collection;
    Nebula__Sync__V1__CollectionSubscription *list[1] = {&cs};
    Nebula__Sync__V1__Subscribe sub = NEBULA__SYNC__V1__SUBSCRIBE__INIT;
    sub.n_collections = 1;
    sub.collections = list;
    Nebula__Sync__V1__ClientMessage m = NEBULA__SYNC__V1__CLIENT_MESSAGE__INIT;
    m.message_case = NEBULA__SYNC__V1__CLIENT_MESSAGE__MESSAGE_SUBSCRIBE;
    m.subscribe = &sub;
    send_client_message(c, &m);
}

static void close_politely(struct fanout_conn *c)
{
    uint8_t payload[WS_MAX_CONTROL_PAYLOAD];
    size_t n = ws_close_payload_write(payload, WS_CLOSE_NORMAL, "bench done");
    if (c->state < ST_READY)
        c->w->handshaking--;
    c->state = ST_CLOSING;
    send_small(c, WS_OP_CLOSE, payload, n);
    struct timeval tv = {CLOSE_WAIT_S, 0};
    bufferevent_set_timeouts(c->bev, &tv, &tv);
}

/* ------------------------------------------------------------------------ */
/* publishers                                                                */

static void on_pub_timer(evutil_socket_t fd, short what, void *arg);

/* nebula-syncd: the K protobuf events of a Push, reused for every Push. */
static void pub_prepare_push(struct pub *p)
{
    size_t k = (size_t)opt.batch;
    p->events = calloc(k, sizeof *p->events);
    p->event_ptrs = calloc(k, sizeof *p->event_ptrs);
    p->ids = calloc(k, sizeof *p->ids);
    p->doc_ids = calloc(k, sizeof *p->doc_ids);
    p->data = malloc(k * (size_t)opt.size);
    if (!p->events || !p->event_ptrs || !p->ids || !p->doc_ids || !p->data)
        bench_die(1, "out of memory");
    for (size_t i = 0; i < k; i++) {
        nebula__sync__v1__event__init(&p->events[i]);
        p->event_ptrs[i] = &p->events[i];
        event_doc_fill(p->data + i * (size_t)opt.size, (size_t)opt.size, p->index);
        p->events[i].id = p->ids[i];
        p->events[i].document_id = p->doc_ids[i];
        p->events[i].collection = (char *)opt.collection;
        p->events[i].data.data = p->data + i * (size_t)opt.size;
        p->events[i].data.len = (size_t)opt.size;
        p->events[i].client_id = "";
    }
}

static struct pub *pub_new(struct fanout_conn *c, long index)
{
    struct worker *w = c->w;
    struct pub *p = calloc(1, sizeof *p);
    if (!p)
        bench_die(1, "out of memory");
    p->index = index;
    p->next_request_id = 1;
    p->slots = calloc((size_t)opt.inflight, sizeof *p->slots);
    if (!p->slots)
        bench_die(1, "out of memory");
    if (!opt.target)
        pub_prepare_push(p);          /* a peer target writes its own batches */
    if (opt.rate > 0) {
        double per_pub = opt.rate / (double)opt.publishers;          /* events/s */
        double iv = 1e9 * (double)opt.batch / per_pub;
        p->interval_ns = iv < 1 ? 1 : (uint64_t)iv;
        p->timer = evtimer_new(w->base, on_pub_timer, c);
        if (!p->timer)
            bench_die(1, "evtimer_new failed");
    }
    return p;
}

static void pub_free(struct pub *p)
{
    if (!p)
        return;
    if (p->timer)
        event_free(p->timer);
    free(p->slots);
    free(p->events);
    free(p->event_ptrs);
    free(p->ids);
    free(p->doc_ids);
    free(p->data);
    free(p->packbuf);
    free(p);
}

static struct slot *free_slot(struct pub *p)
{
    for (long i = 0; i < opt.inflight; i++)
        if (p->slots[i].request_id == 0)
            return &p->slots[i];
    return NULL;
}

/* Fills the batch's K events (ids, documents, timestamps) and sends one Push. */
static bool send_push(struct fanout_conn *c)
{
    struct worker *w = c->w;
    struct pub *p = c->pub;
    struct slot *slot = free_slot(p);
    if (!slot)
        return true;                  /* cannot happen: inflight < W */
    uint64_t ts = bench_mono_ns();
    uint64_t wall = bench_wall_ns();
    for (long i = 0; i < opt.batch; i++) {
        Nebula__Sync__V1__Event *e = &p->events[i];
        uint64_t n = p->counter++;
        event_id_write(p->ids[i], run_id, (uint32_t)p->index, n);
        uint64_t d = n % EVENT_DOCS_PER_PUBLISHER;
        snprintf(p->doc_ids[i], sizeof p->doc_ids[i], "bench-p%ld-d%" PRIu64, p->index, d);
        e->type = n < EVENT_DOCS_PER_PUBLISHER ? NEBULA__SYNC__V1__EVENT_TYPE__EVENT_TYPE_INSERT
                                               : NEBULA__SYNC__V1__EVENT_TYPE__EVENT_TYPE_UPDATE;
        event_doc_set_ts(e->data.data, ts);
        e->timestamp = (int64_t)(wall / 1000000u);
        p->hlc = wall > p->hlc ? wall : p->hlc + 1;   /* strictly increasing: LWW accepts */
        e->hlc = p->hlc;
    }
    Nebula__Sync__V1__Push push = NEBULA__SYNC__V1__PUSH__INIT;
    push.request_id = p->next_request_id++;
    push.n_events = (size_t)opt.batch;
    push.events = p->event_ptrs;
    Nebula__Sync__V1__ClientMessage m = NEBULA__SYNC__V1__CLIENT_MESSAGE__INIT;
    m.message_case = NEBULA__SYNC__V1__CLIENT_MESSAGE__MESSAGE_PUSH;
    m.push = &push;
    size_t len = nebula__sync__v1__client_message__get_packed_size(&m);
    uint32_t limit = atomic_load_explicit(&max_message_size, memory_order_relaxed);
    if (limit && len > limit)
        return conn_fail(c, "a Push of %zu bytes exceeds the broker's max_message_size %u: lower "
                         "--batch or --size", len, limit);
    size_t hlen = bench_ws_header_len(len);
    if (hlen + len > p->packcap) {
        uint8_t *grown = realloc(p->packbuf, hlen + len);
        if (!grown)
            return conn_fail(c, "out of memory");
        p->packbuf = grown;
        p->packcap = hlen + len;
    }
    nebula__sync__v1__client_message__pack(&m, p->packbuf + hlen);
    slot->request_id = push.request_id;
    slot->sent_ns = bench_mono_ns();
    send_framed(c, WS_OP_BINARY, p->packbuf, hlen, len);
    p->inflight++;
    atomic_fetch_add_explicit(&w->inflight, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&w->pushes_sent, 1, memory_order_relaxed);
    return true;
}

/* A peer target's batch: the driver numbers it and keeps its slot (acked
 * targets) or counts it done once written (the others). */
static bool send_peer_batch(struct fanout_conn *c)
{
    struct worker *w = c->w;
    struct pub *p = c->pub;
    struct slot *slot = NULL;
    if (opt.target->acked && !(slot = free_slot(p)))
        return true;                  /* cannot happen: inflight < W */
    uint64_t first = p->counter, request_id = p->next_request_id++;
    size_t unsent = fanout_conn_unsent(c);
    p->counter += (uint64_t)opt.batch;
    if (!opt.target->send_batch(c, c->peer, request_id, first, bench_mono_ns()))
        return false;
    atomic_fetch_add_explicit(&w->pushes_sent, 1, memory_order_relaxed);
    if (slot) {
        slot->request_id = request_id;
        slot->sent_ns = bench_mono_ns();
        p->inflight++;
        atomic_fetch_add_explicit(&w->inflight, 1, memory_order_relaxed);
        return true;
    }
    p->batch_bytes = fanout_conn_unsent(c) - unsent;
    atomic_fetch_add_explicit(&w->pushes_acked, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&w->events_accepted, (uint64_t)opt.batch, memory_order_relaxed);
    return true;
}

/* Whether a publisher may send a batch now (the phase and --rate aside):
 * fewer than W unanswered, or for targets that answer nothing, fewer than W
 * batches' bytes still in the tool's output buffer. */
static bool pub_may_send(struct fanout_conn *c)
{
    struct pub *p = c->pub;
    if (!opt.target || opt.target->acked)
        return p->inflight < opt.inflight;
    return fanout_conn_unsent(c) < (size_t)opt.inflight * p->batch_bytes || p->batch_bytes == 0;
}

static void on_pub_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pub_pump(arg);
}

/* Sends Pushes while the phase allows, fewer than W are in flight and (with
 * --rate) one is due. */
static void pub_pump(struct fanout_conn *c)
{
    struct pub *p = c->pub;
    if (!c->live || c->state != ST_READY)
        return;
    while (atomic_load_explicit(&phase, memory_order_relaxed) == PH_RUN && pub_may_send(c)) {
        if (p->interval_ns) {
            uint64_t now = bench_mono_ns();
            if (now < p->next_due_ns) {
                uint64_t d = p->next_due_ns - now;
                struct timeval tv = {(time_t)(d / 1000000000u), (suseconds_t)((d % 1000000000u) / 1000u)};
                evtimer_add(p->timer, &tv);
                return;
            }
            if (now - p->next_due_ns > 100000000u) {   /* > 100 ms behind: do not burst */
                atomic_fetch_add_explicit(&c->w->sched_slips, 1, memory_order_relaxed);
                p->next_due_ns = now;
            }
            p->next_due_ns += p->interval_ns;
        }
        if (!(opt.target ? send_peer_batch(c) : send_push(c)))
            return;
    }
}

static struct slot *find_slot(struct pub *p, uint64_t request_id)
{
    for (long i = 0; i < opt.inflight; i++)
        if (p->slots[i].request_id == request_id && request_id != 0)
            return &p->slots[i];
    return NULL;
}

/* The answer to a batch came: its latency (window only), a free slot. */
static void settle_slot(struct fanout_conn *c, struct slot *slot, uint64_t now)
{
    struct worker *w = c->w;
    uint64_t ws = atomic_load_explicit(&window_start_ns, memory_order_relaxed);
    uint64_t we = atomic_load_explicit(&window_end_ns, memory_order_relaxed);
    if (slot->sent_ns >= ws && slot->sent_ns < we)
        hist_record(&w->ack, now - slot->sent_ns);
    slot->request_id = 0;
    c->pub->inflight--;
    atomic_fetch_sub_explicit(&w->inflight, 1, memory_order_relaxed);
}

static bool on_push_result(struct fanout_conn *c, const Nebula__Sync__V1__PushResult *r, uint64_t now)
{
    struct worker *w = c->w;
    struct pub *p = c->pub;
    if (c->role != ROLE_PUB)
        return conn_fail(c, "PushResult on a subscriber connection");
    struct slot *slot = find_slot(p, r->request_id);
    if (!slot)
        return conn_fail(c, "PushResult for unknown request_id %" PRIu64, r->request_id);
    if (r->n_results != (size_t)opt.batch)
        return conn_fail(c, "PushResult with %zu results for %ld events", r->n_results, opt.batch);
    settle_slot(c, slot, now);
    uint64_t accepted = 0, maxseq = 0;
    for (size_t i = 0; i < r->n_results; i++) {
        const Nebula__Sync__V1__EventResult *er = r->results[i];
        switch (er->status) {
        case NEBULA__SYNC__V1__PUSH_STATUS__PUSH_STATUS_ACCEPTED:
            accepted++;
            if (er->seq > maxseq)
                maxseq = er->seq;
            continue;
        case NEBULA__SYNC__V1__PUSH_STATUS__PUSH_STATUS_DUPLICATE: w->n_duplicate++; break;
        case NEBULA__SYNC__V1__PUSH_STATUS__PUSH_STATUS_CONFLICT: w->n_conflict++; break;
        default: w->n_rejected++; break;
        }
        if (!w->first_reject[0])
            snprintf(w->first_reject, sizeof w->first_reject, "status %d: %s", (int)er->status,
                     er->reason && *er->reason ? er->reason : "(no reason)");
    }
    atomic_fetch_add_explicit(&w->pushes_acked, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&w->events_accepted, accepted, memory_order_relaxed);
    if (accepted < r->n_results)
        atomic_fetch_add_explicit(&w->events_not_accepted, r->n_results - accepted,
                                  memory_order_relaxed);
    if (maxseq > atomic_load_explicit(&w->max_seq, memory_order_relaxed))
        atomic_store_explicit(&w->max_seq, maxseq, memory_order_relaxed);
    pub_pump(c);
    return c->live;
}

/* ------------------------------------------------------------------------ */
/* subscribers                                                               */

static void sub_set_position(struct fanout_conn *c, uint64_t seq)
{
    c->seq.last = seq;
    atomic_store_explicit(&c->last_seq_shared, seq, memory_order_relaxed);
}

static bool on_subscribed(struct fanout_conn *c, const Nebula__Sync__V1__Subscribed *s)
{
    if (c->role != ROLE_SUB)
        return conn_fail(c, "Subscribed on a publisher connection");
    if (!s->collection || strcmp(s->collection, opt.collection) != 0)
        return conn_fail(c, "Subscribed for collection '%s'", s->collection ? s->collection : "");
    if (s->mode != NEBULA__SYNC__V1__SUBSCRIBE_MODE__SUBSCRIBE_MODE_SNAPSHOT &&
        s->mode != NEBULA__SYNC__V1__SUBSCRIBE_MODE__SUBSCRIBE_MODE_REPLAY)
        return conn_fail(c, "Subscribed with mode %d", (int)s->mode);
    if (!c->started) {
        if (c->state != ST_SUBSCRIBING)
            return conn_fail(c, "unexpected Subscribed");
        if (s->mode != NEBULA__SYNC__V1__SUBSCRIBE_MODE__SUBSCRIBE_MODE_SNAPSHOT)
            return conn_fail(c, "Subscribed in mode %d, expected SNAPSHOT (no cursor was sent)",
                             (int)s->mode);
        return true;                  /* the snapshot's last page starts us */
    }
    /* The broker restarted this subscription (it fell behind what storage
     * retains): a snapshot follows. Seqs it skips count as lost. */
    c->resnapshots++;
    c->resnapshot = true;
    return true;
}

static bool on_snapshot(struct fanout_conn *c, const Nebula__Sync__V1__Snapshot *s)
{
    struct worker *w = c->w;
    if (c->role != ROLE_SUB)
        return conn_fail(c, "Snapshot on a publisher connection");
    if (!s->last)
        return true;
    if (!s->cursor)
        return conn_fail(c, "last Snapshot page without a cursor");
    uint64_t pos = s->cursor->seq;
    if (!c->started) {
        if (c->state != ST_SUBSCRIBING)
            return conn_fail(c, "Snapshot before Subscribed");
        sub_set_position(c, pos);
        return fanout_conn_ready(c);
    }
    c->resnapshot = false;
    if (pos > c->seq.last) {
        c->skipped += pos - c->seq.last;
        atomic_fetch_add_explicit(&w->lost, pos - c->seq.last, memory_order_relaxed);
        sub_set_position(c, pos);
    }
    return true;
}

/* The hot path: every seq checked, every event of the window timed. The
 * message is read by events_scan, not decoded by protobuf-c. */
struct events_delivery {
    struct fanout_conn *c;
    uint64_t now, window_start, window_end;
};

static void on_scanned_event(void *arg, const events_scan_event *e)
{
    struct events_delivery *d = arg;
    struct fanout_conn *c = d->c;
    seq_stream_observe(&c->seq, e->seq);
    uint64_t ts;
    if (event_doc_ts(e->data, e->data_len, &ts)) {
        if (ts >= d->window_start && ts < d->window_end)
            hist_record(&c->w->lat, d->now > ts ? d->now - ts : 0);
    } else {
        c->foreign++;                 /* not written by this tool: no timestamp */
    }
    c->received++;
}

/* Returns EVENTS_SCAN_NOT_EVENTS for any other message (decode it fully). */
static events_scan_result on_events(struct fanout_conn *c, const uint8_t *msg, size_t len,
                                    uint64_t now)
{
    struct worker *w = c->w;
    struct events_delivery d = {
        .c = c,
        .now = now,
        .window_start = atomic_load_explicit(&window_start_ns, memory_order_relaxed),
        .window_end = atomic_load_explicit(&window_end_ns, memory_order_relaxed),
    };
    uint64_t lost0 = c->seq.lost, dup0 = c->seq.dup, received0 = c->received;
    const uint8_t *collection;
    size_t collection_len;
    events_scan_result r = events_scan(msg, len, &collection, &collection_len, on_scanned_event, &d);
    if (r == EVENTS_SCAN_NOT_EVENTS)
        return r;
    if (r == EVENTS_SCAN_MALFORMED) {
        conn_fail(c, "undecodable Events message (%zu bytes)", len);
        return r;
    }
    if (c->role != ROLE_SUB || !c->started)
        conn_fail(c, "Events %s", c->role != ROLE_SUB ? "on a publisher connection"
                                                      : "before the snapshot's last page");
    else if (collection_len != strlen(opt.collection) ||
             memcmp(collection, opt.collection, collection_len) != 0)
        conn_fail(c, "Events of collection '%.*s'", (int)collection_len, (const char *)collection);
    atomic_store_explicit(&c->last_seq_shared, c->seq.last, memory_order_relaxed);
    atomic_fetch_add_explicit(&w->delivered, c->received - received0, memory_order_relaxed);
    if (c->seq.lost != lost0)
        atomic_fetch_add_explicit(&w->lost, c->seq.lost - lost0, memory_order_relaxed);
    if (c->seq.dup != dup0)
        atomic_fetch_add_explicit(&w->dup, c->seq.dup - dup0, memory_order_relaxed);
    return r;
}

/* ------------------------------------------------------------------------ */
/* subscribers of the peer targets: events found in JSON                     */

struct json_delivery {
    struct fanout_conn *c;
    uint64_t now, window_start, window_end;
};

/* One event of this run: its publisher's stream checked, its latency timed. */
static void on_peer_event(void *arg, const struct peer_event *e)
{
    struct json_delivery *d = arg;
    struct fanout_conn *c = d->c;
    struct worker *w = c->w;
    if (e->pub >= (uint64_t)opt.publishers) {
        c->foreign++;                 /* this run's id, yet no such publisher */
        return;
    }
    struct seq_stream *s = &c->table.streams[e->pub];
    uint64_t lost0 = s->lost;
    switch (seq_table_observe(&c->table, e->pub, e->counter + 1)) {
    case SEQ_IN_ORDER:
        break;
    case SEQ_GAP:
        atomic_fetch_add_explicit(&w->lost, s->lost - lost0, memory_order_relaxed);
        break;
    case SEQ_DUPLICATE:
        atomic_fetch_add_explicit(&w->dup, 1, memory_order_relaxed);
        break;
    }
    if (e->has_ts && e->ts_ns >= d->window_start && e->ts_ns < d->window_end)
        hist_record(&w->lat, d->now > e->ts_ns ? d->now - e->ts_ns : 0);
    c->received++;
}

void fanout_sub_events_json(struct fanout_conn *c, const uint8_t *json, size_t len, uint64_t now)
{
    struct json_delivery d = {
        .c = c,
        .now = now,
        .window_start = atomic_load_explicit(&window_start_ns, memory_order_relaxed),
        .window_end = atomic_load_explicit(&window_end_ns, memory_order_relaxed),
    };
    uint64_t before = c->received;
    c->foreign += peer_events_scan(json, len, run_id, on_peer_event, &d);
    atomic_fetch_add_explicit(&c->w->delivered, c->received - before, memory_order_relaxed);
    atomic_store_explicit(&c->last_seq_shared, c->table.position, memory_order_relaxed);
}

/* ------------------------------------------------------------------------ */
/* server messages                                                           */

static bool on_welcome(struct fanout_conn *c, const Nebula__Sync__V1__Welcome *wm)
{
    if (c->state != ST_WELCOME)
        return conn_fail(c, "unexpected Welcome");
    if (wm->limits && wm->limits->max_message_size)   /* same broker, same value */
        atomic_store_explicit(&max_message_size, wm->limits->max_message_size, memory_order_relaxed);
    if (c->role == ROLE_SUB) {
        c->state = ST_SUBSCRIBING;
        send_subscribe(c);
        return c->live;
    }
    return fanout_conn_ready(c);
}

static bool handle_message(struct fanout_conn *c, const uint8_t *p, size_t n)
{
    struct worker *w = c->w;
    uint64_t now = bench_mono_ns();
    if (on_events(c, p, n, now) != EVENTS_SCAN_NOT_EVENTS)
        return c->live;
    Nebula__Sync__V1__ServerMessage *m = nebula__sync__v1__server_message__unpack(&w->alloc, n, p);
    if (!m) {
        arena_reset(&w->arena);
        return conn_fail(c, "undecodable ServerMessage (%zu bytes)", n);
    }
    bool alive = true;
    switch (m->message_case) {
    case NEBULA__SYNC__V1__SERVER_MESSAGE__MESSAGE_PUSH_RESULT:
        alive = on_push_result(c, m->push_result, now);
        break;
    case NEBULA__SYNC__V1__SERVER_MESSAGE__MESSAGE_WELCOME:
        alive = on_welcome(c, m->welcome);
        break;
    case NEBULA__SYNC__V1__SERVER_MESSAGE__MESSAGE_SUBSCRIBED:
        alive = on_subscribed(c, m->subscribed);
        break;
    case NEBULA__SYNC__V1__SERVER_MESSAGE__MESSAGE_SNAPSHOT:
        alive = on_snapshot(c, m->snapshot);
        break;
    case NEBULA__SYNC__V1__SERVER_MESSAGE__MESSAGE_ERROR:
        alive = conn_fail(c, "ServerMessage.error code %d '%s'", (int)m->error->code,
                          m->error->message ? m->error->message : "");
        break;
    default:
        alive = conn_fail(c, "ServerMessage with no known message (case %d)", (int)m->message_case);
        break;
    }
    arena_reset(&w->arena);           /* the message is freed: all of it lives in the arena */
    return alive;
}

/* One whole data message: nebula-syncd's protobuf, or the peer target's. */
static bool handle_data(struct fanout_conn *c, uint8_t *p, size_t n)
{
    if (opt.target)
        return opt.target->on_message(c, c->peer, p, n, bench_mono_ns());
    return handle_message(c, p, n);
}

/* Parses every complete frame in the input. Frames are looked at in place in
 * the first chunk of the evbuffer; only a frame that straddles chunks is
 * pulled up (copied) into one. */
static void process_frames(struct fanout_conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    for (;;) {
        size_t len = evbuffer_get_length(in);
        if (len == 0)
            return;
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            return;
        uint8_t *buf = v.iov_base;
        size_t avail = v.iov_len;
        ws_frame f;
        ws_read_status st = ws_reader_next(&c->rd, buf, avail, &f);
        while (st == WS_READ_NEED_MORE && f.need <= len) {
            buf = evbuffer_pullup(in, (ev_ssize_t)f.need);
            if (!buf) {
                conn_fail(c, "out of memory");
                return;
            }
            avail = f.need;
            st = ws_reader_next(&c->rd, buf, avail, &f);
        }
        if (st == WS_READ_NEED_MORE)
            return;
        if (st == WS_READ_FAIL) {
            conn_fail(c, "bad frame from the broker: %s (close code %u)", f.error ? f.error : "?",
                      (unsigned)f.close_code);
            return;
        }
        switch (f.opcode) {
        case WS_OP_PING: {
            uint8_t pong[WS_MAX_CONTROL_PAYLOAD];
            size_t n = (size_t)f.payload_len;
            memcpy(pong, f.payload, n);
            evbuffer_drain(in, f.frame_len);
            if (c->state != ST_CLOSING)
                send_small(c, WS_OP_PONG, pong, n);
            continue;
        }
        case WS_OP_PONG:
            evbuffer_drain(in, f.frame_len);
            continue;
        case WS_OP_CLOSE:
            if (c->state == ST_CLOSING) {
                conn_release(c);      /* close handshake complete */
            } else {
                conn_fail(c, "broker sent Close %u '%.*s'", (unsigned)f.peer_close_code,
                          (int)(f.close_reason_len > 100 ? 100 : f.close_reason_len),
                          f.close_reason ? (const char *)f.close_reason : "");
            }
            return;
        default:
            break;
        }
        if (c->state == ST_CLOSING) {
            evbuffer_drain(in, f.frame_len);
            continue;
        }
        if (f.message_opcode != WS_OP_BINARY && !opt.target) {
            conn_fail(c, "text message from the broker (the protocol is binary)");
            return;
        }
        bool alive;
        if (f.message_begins && f.message_ends) {
            alive = handle_data(c, f.payload, (size_t)f.payload_len);
        } else {
            size_t need = c->frag_len + (size_t)f.payload_len;
            if (need > c->frag_cap) {
                size_t cap = c->frag_cap ? c->frag_cap : 4096;
                while (cap < need)
                    cap *= 2;
                uint8_t *grown = realloc(c->frag, cap);
                if (!grown) {
                    conn_fail(c, "out of memory");
                    return;
                }
                c->frag = grown;
                c->frag_cap = cap;
            }
            memcpy(c->frag + c->frag_len, f.payload, (size_t)f.payload_len);
            c->frag_len = need;
            alive = true;
            if (f.message_ends) {
                alive = handle_data(c, c->frag, c->frag_len);
                if (alive)
                    c->frag_len = 0;
            }
        }
        if (!alive)
            return;
        evbuffer_drain(in, f.frame_len);
    }
}

/* ------------------------------------------------------------------------ */
/* connection setup: TCP, TLS, upgrade                                       */

/* Checks the 101 (head ends with CRLFCRLF). false: c failed. */
static bool check_response(struct fanout_conn *c, const char *head, size_t len)
{
    size_t l0;
    const char *p;
    switch (bench_http_status_line(head, len, &l0, &p)) {
    case BENCH_HTTP_MALFORMED:
        return conn_fail(c, "malformed status line '%.*s'", (int)(l0 > 100 ? 100 : l0), head);
    case BENCH_HTTP_NOT_101:
        return conn_fail(c, "expected 101, got '%.*s'", (int)(l0 > 100 ? 100 : l0), head);
    case BENCH_HTTP_101:
        break;
    }
    bool upgrade = false, connection = false, accept = false, proto_ok = true;
    struct bench_http_header h;
    while (bench_http_next_header(&p, head + len, c->accept, &h)) {
        if (h.kind == BENCH_HDR_UPGRADE)
            upgrade = h.as_expected;
        else if (h.kind == BENCH_HDR_CONNECTION)
            connection = h.as_expected;
        else if (h.kind == BENCH_HDR_ACCEPT)
            accept = h.as_expected;
        else if (h.kind == BENCH_HDR_PROTOCOL)
            proto_ok = h.as_expected && !opt.target;
    }
    if (!upgrade || !connection || !accept || !proto_ok)
        return conn_fail(c, "bad 101: %s", !upgrade ? "no 'Upgrade: websocket'"
                         : !connection ? "no 'Connection: Upgrade'"
                         : !accept ? "missing or wrong Sec-WebSocket-Accept"
                         : opt.target ? "a Sec-WebSocket-Protocol, though none was offered"
                         : "a Sec-WebSocket-Protocol other than " BENCH_SUBPROTOCOL);
    return true;
}

static void send_request(struct fanout_conn *c)
{
    char key[32];
    const char *err = bench_ws_new_key(key, c->accept);
    if (err) {
        conn_fail(c, "%s", err);
        return;
    }
    c->state = ST_HTTP;
    bench_ws_write_request(bufferevent_get_output(c->bev),
                           c->role == ROLE_PUB ? &opt.publish_ep : &opt.ep, key,
                           opt.target ? opt.target->subprotocol : BENCH_SUBPROTOCOL, PROG);
}

static void on_read(struct bufferevent *bev, void *arg)
{
    struct fanout_conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    if (c->state == ST_HTTP) {
        size_t hlen;
        const char *head = bench_http_response_head(in, &hlen);
        if (!head) {
            if (evbuffer_get_length(in) > MAX_RESPONSE_HEAD)
                conn_fail(c, "response head longer than %d bytes", MAX_RESPONSE_HEAD);
            return;
        }
        if (!check_response(c, head, hlen))
            return;
        evbuffer_drain(in, hlen);
        c->state = ST_WELCOME;
        if (opt.target) {
            if (!opt.target->on_upgraded(c, c->peer))
                return;
        } else {
            send_hello(c);
        }
        if (!c->live)
            return;
    }
    if (c->state >= ST_WELCOME)
        process_frames(c);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    struct fanout_conn *c = arg;
    if (what & BEV_EVENT_CONNECTED) {             /* TLS handshake done */
        send_request(c);
        return;
    }
    if (c->state == ST_CLOSING) {
        conn_release(c);
        return;
    }
    static const char *const st_name[] = {"tcp connect", "tls", "upgrade", "welcome",
                                          "subscribed/snapshot", "ready", "closing", "done"};
    const char *ph = opt.target && c->state == ST_WELCOME ? "protocol setup" : st_name[c->state];
    if (what & BEV_EVENT_TIMEOUT) {
        conn_fail(c, "no progress for %d s during %s", HANDSHAKE_TIMEOUT_S, ph);
        return;
    }
    if (what & BEV_EVENT_EOF) {
        conn_fail(c, "broker closed the connection (%s)", ph);
        return;
    }
    int err = EVUTIL_SOCKET_ERROR();
    char tls_err[160];
    if (opt.ep.tls && bench_take_tls_error(bev, tls_err, sizeof tls_err)) {
        conn_fail(c, "TLS error (%s): %s", ph, tls_err);
        return;
    }
    conn_fail(c, "connection error (%s): %s", ph, err ? strerror(err) : "unknown");
}

/* libevent 2.1 reads at most 4096 bytes per read callback (EVBUFFER_MAX_READ),
 * which at a few hundred MB/s is one ioctl + readv + epoll round per 4 KiB
 * and shows up as the tool's main kernel cost. So once a plain-TCP
 * subscriber is ready, its bufferevent stops reading and this event reads
 * READ_CHUNK bytes at a time straight into the bufferevent's input buffer;
 * the bufferevent still does all the writing. */
static void on_sock_read(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct fanout_conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(c->bev);
    struct evbuffer_iovec vec[2];
    /* a socket bufferevent keeps the end of its input frozen except while
     * it reads itself; do as it does */
    evbuffer_unfreeze(in, 0);
    int nv = evbuffer_reserve_space(in, READ_CHUNK, vec, 2);
    if (nv < 1) {
        evbuffer_freeze(in, 0);
        conn_fail(c, "out of memory");
        return;
    }
    ssize_t n = readv(fd, (struct iovec *)vec, nv);
    if (n <= 0) {
        int err = errno;
        evbuffer_commit_space(in, vec, 0);
        evbuffer_freeze(in, 0);
        if (n == 0) {
            if (c->state == ST_CLOSING)
                conn_release(c);
            else
                conn_fail(c, "broker closed the connection");
            return;
        }
        errno = err;
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return;
        if (c->state == ST_CLOSING)
            conn_release(c);
        else
            conn_fail(c, "connection error: %s", strerror(errno));
        return;
    }
    size_t left = (size_t)n;
    for (int i = 0; i < nv; i++) {
        size_t take = vec[i].iov_len < left ? vec[i].iov_len : left;
        vec[i].iov_len = take;
        left -= take;
    }
    evbuffer_commit_space(in, vec, nv);
    evbuffer_freeze(in, 0);
    process_frames(c);
}

static void fast_read_start(struct fanout_conn *c)
{
    if (opt.ep.tls || c->rev)
        return;
    evutil_socket_t fd = bufferevent_getfd(c->bev);
    c->rev = event_new(c->w->base, fd, EV_READ | EV_PERSIST, on_sock_read, c);
    if (!c->rev)
        return;                       /* keep the bufferevent's reads */
    bufferevent_disable(c->bev, EV_READ);
    event_add(c->rev, NULL);
}

static void on_output_drained(struct bufferevent *bev, void *arg)
{
    (void)bev;
    pub_pump(arg);
}

static void on_tcp_connected(evutil_socket_t fd, short what, void *arg)
{
    struct fanout_conn *c = arg;
    event_free(c->cev);
    c->cev = NULL;
    if (what & EV_TIMEOUT) {
        conn_fail(c, "TCP connect took longer than %d s", HANDSHAKE_TIMEOUT_S);
        return;
    }
    int err = 0;
    socklen_t el = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
        err = errno;
    if (err) {
        conn_fail(c, "connect to %s:%s: %s", opt.ep.host, opt.ep.port, strerror(err));
        return;
    }
    struct worker *w = c->w;
    const char *why;
    c->bev = bench_bufferevent_new(w->base, fd, opt.ep.tls ? ssl_ctx : NULL, opt.ep.sni, &why);
    if (!c->bev) {
        conn_fail(c, "%s", why);
        return;
    }
    if (opt.ep.tls)
        c->state = ST_TLS;
    c->fd = -1;
    struct timeval tv = {HANDSHAKE_TIMEOUT_S, 0};
    bufferevent_set_timeouts(c->bev, &tv, &tv);
    /* publishers that get no answers send more once their output drained */
    bool pace_by_output = opt.target && !opt.target->acked && c->role == ROLE_PUB;
    bufferevent_setcb(c->bev, on_read, pace_by_output ? on_output_drained : NULL, on_event, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    if (!opt.ep.tls)
        send_request(c);
}

static bool launch(struct fanout_conn *c)
{
    struct worker *w = c->w;
    c->fd = -1;
    c->state = ST_TCP;
    c->live = true;
    ws_reader_init(&c->rd, WS_ROLE_CLIENT, MAX_MESSAGE);
    w->live++;
    w->handshaking++;
    const char *what;
    int fd = bench_connect_start(c->role == ROLE_PUB ? &publish_dest : &dest, &what);
    if (fd < 0)
        goto fail;
    c->fd = fd;
    what = "event_new";
    c->cev = event_new(w->base, fd, EV_WRITE, on_tcp_connected, c);
    if (!c->cev)
        goto fail;
    struct timeval tv = {HANDSHAKE_TIMEOUT_S, 0};
    event_add(c->cev, &tv);
    return true;
fail:;
    int err = errno;
    conn_fail(c, "%s: %s%s", what, strerror(err), err == EMFILE ? " (out of file descriptors)" : "");
    return false;
}

/* Starts connections until all are launched, RAMP_PER_THREAD at a time. */
static void refill(struct worker *w)
{
    if (w->closing)
        return;
    while (w->launched < w->nconns && w->handshaking < RAMP_PER_THREAD) {
        if (atomic_load_explicit(&w->failed[FK_SETUP], memory_order_relaxed))
            return;                   /* the run is off: the main thread will close */
        struct fanout_conn *c = &w->conns[w->launched++];
        if (!launch(c))
            return;
    }
}

/* ------------------------------------------------------------------------ */
/* the driver's side of fanout_target.h                                      */

const struct fanout_params *fanout_params(void)
{
    return &params;
}

enum fanout_role fanout_conn_role(const struct fanout_conn *c)
{
    return c->role == ROLE_SUB ? FANOUT_SUBSCRIBER : FANOUT_PUBLISHER;
}

long fanout_conn_index(const struct fanout_conn *c)
{
    return c->index;
}

void fanout_conn_client_id(const struct fanout_conn *c, char *out)
{
    snprintf(out, FANOUT_CLIENT_ID_MAX, PROG "-%016" PRIx64 "-%c%ld", run_id,
             c->role == ROLE_SUB ? 's' : 'p', c->index);
}

void fanout_conn_send(struct fanout_conn *c, uint8_t opcode, uint8_t *buf, size_t hlen, size_t len)
{
    send_framed(c, opcode, buf, hlen, len);
}

size_t fanout_conn_unsent(const struct fanout_conn *c)
{
    return evbuffer_get_length(bufferevent_get_output(c->bev));
}

bool fanout_conn_fail(struct fanout_conn *c, const char *fmt, ...)
{
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return conn_fail(c, "%s", msg);
}

bool fanout_conn_ready(struct fanout_conn *c)
{
    struct worker *w = c->w;
    c->state = ST_READY;
    w->handshaking--;
    bufferevent_set_timeouts(c->bev, NULL, NULL);
    if (c->role == ROLE_SUB) {
        c->started = true;
        fast_read_start(c);
        atomic_fetch_add_explicit(&w->ready_subs, 1, memory_order_relaxed);
        refill(w);
        return c->live;
    }
    atomic_fetch_add_explicit(&w->ready_pubs, 1, memory_order_relaxed);
    refill(w);
    if (atomic_load_explicit(&phase, memory_order_relaxed) == PH_RUN)
        pub_pump(c);
    return c->live;
}

bool fanout_pub_settled(struct fanout_conn *c, uint64_t request_id, bool accepted, const char *why,
                        uint64_t now)
{
    struct worker *w = c->w;
    struct slot *slot = find_slot(c->pub, request_id);
    if (!slot)
        return conn_fail(c, "an answer to unknown batch %" PRIu64, request_id);
    settle_slot(c, slot, now);
    atomic_fetch_add_explicit(&w->pushes_acked, 1, memory_order_relaxed);
    if (accepted) {
        atomic_fetch_add_explicit(&w->events_accepted, (uint64_t)opt.batch, memory_order_relaxed);
    } else {
        w->n_rejected += (uint64_t)opt.batch;
        atomic_fetch_add_explicit(&w->events_not_accepted, (uint64_t)opt.batch,
                                  memory_order_relaxed);
        if (!w->first_reject[0])
            snprintf(w->first_reject, sizeof w->first_reject, "%s", why ? why : "(no reason)");
    }
    pub_pump(c);
    return c->live;
}

/* ------------------------------------------------------------------------ */
/* phases                                                                    */

static void on_grace(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct worker *w = arg;
    for (long i = 0; i < w->nconns; i++)
        conn_release(&w->conns[i]);
    event_base_loopbreak(w->base);
}

static void on_phase(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct worker *w = arg;
    int ph = atomic_load(&phase);
    if (ph == PH_RUN) {
        for (long i = w->nsubs; i < w->nconns; i++) {
            struct fanout_conn *c = &w->conns[i];
            if (c->pub && c->pub->interval_ns) {
                /* spread the publishers' schedules over one interval */
                c->pub->next_due_ns = bench_mono_ns() +
                    c->pub->interval_ns * (uint64_t)c->pub->index / (uint64_t)opt.publishers;
            }
            pub_pump(c);
        }
    } else if (ph == PH_STOP) {
        atomic_store(&w->stopped, true);
        for (long i = w->nsubs; i < w->nconns; i++)
            if (w->conns[i].pub && w->conns[i].pub->timer)
                evtimer_del(w->conns[i].pub->timer);
    } else if (ph == PH_CLOSE) {
        w->closing = true;
        for (long i = 0; i < w->nconns; i++) {
            struct fanout_conn *c = &w->conns[i];
            if (!c->live || c->state == ST_CLOSING)
                continue;
            if (c->state >= ST_WELCOME && c->bev)
                close_politely(c);
            else
                conn_release(c);
        }
        if (w->live == 0) {
            event_base_loopbreak(w->base);
            return;
        }
        struct timeval tv = {STOP_GRACE_S, 0};
        evtimer_add(w->grace_ev, &tv);
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    refill(w);
    event_base_dispatch(w->base);
    return NULL;
}

static void set_phase(int ph)
{
    atomic_store(&phase, ph);
    for (int i = 0; i < opt.threads; i++)
        event_active(workers[i].phase_ev, EV_READ, 0);
}

/* ------------------------------------------------------------------------ */
/* main                                                                      */

static void peer_conn_new(struct fanout_conn *c)
{
    if (opt.target && !(c->peer = opt.target->conn_new(c)))
        bench_die(1, "out of memory");
}

static void raise_nofile(void)
{
    unsigned long long limit = bench_raise_nofile();
    long conns = opt.subscribers + opt.publishers;
    unsigned long long need = (unsigned long long)conns + FD_MARGIN;
    if (limit != RLIM_INFINITY && need > limit) {
        fprintf(stderr,
                PROG ": NOT ENOUGH FILE DESCRIPTORS: %ld subscribers + %ld publishers need about "
                "%llu descriptors (%d spare), but this process may open at most %llu (the "
                "RLIMIT_NOFILE hard limit; the soft limit was raised to it). Use at most %lld "
                "connections in all, or raise the hard limit (ulimit -Hn, as root). The broker "
                "has the same kind of limit on its side.\n",
                opt.subscribers, opt.publishers, need, FD_MARGIN, limit, (long long)limit - FD_MARGIN);
        exit(2);
    }
}

struct totals {
    long ready_subs, ready_pubs, failed[FK_COUNT];
    uint64_t delivered, lost, dup, pushes_sent, pushes_acked, accepted, not_accepted, max_seq;
    long inflight;
    uint64_t slips;
    int stopped;                      /* threads that have seen PH_STOP */
};

static void sum_live(struct totals *t)
{
    memset(t, 0, sizeof *t);
    for (int i = 0; i < opt.threads; i++) {
        struct worker *w = &workers[i];
        t->ready_subs += atomic_load_explicit(&w->ready_subs, memory_order_relaxed);
        t->ready_pubs += atomic_load_explicit(&w->ready_pubs, memory_order_relaxed);
        for (int k = 0; k < FK_COUNT; k++)
            t->failed[k] += atomic_load_explicit(&w->failed[k], memory_order_relaxed);
        t->delivered += atomic_load_explicit(&w->delivered, memory_order_relaxed);
        t->lost += atomic_load_explicit(&w->lost, memory_order_relaxed);
        t->dup += atomic_load_explicit(&w->dup, memory_order_relaxed);
        t->pushes_sent += atomic_load_explicit(&w->pushes_sent, memory_order_relaxed);
        t->pushes_acked += atomic_load_explicit(&w->pushes_acked, memory_order_relaxed);
        t->accepted += atomic_load_explicit(&w->events_accepted, memory_order_relaxed);
        t->not_accepted += atomic_load_explicit(&w->events_not_accepted, memory_order_relaxed);
        uint64_t m = atomic_load_explicit(&w->max_seq, memory_order_relaxed);
        if (m > t->max_seq)
            t->max_seq = m;
        t->inflight += atomic_load_explicit(&w->inflight, memory_order_relaxed);
        t->slips += atomic_load_explicit(&w->sched_slips, memory_order_relaxed);
        t->stopped += atomic_load(&w->stopped);
    }
}

/* Where every subscriber's position must get to once nothing is in flight:
 * the highest accepted seq on nebula-syncd; for the peer targets, whose
 * positions add up each publisher's counter, every event published. */
static uint64_t drain_target(const struct totals *t)
{
    return opt.target ? t->accepted : t->max_seq;
}

/* Subscribers (alive and started) whose position is below target. */
static long subs_behind(uint64_t target, uint64_t *missing)
{
    long n = 0;
    uint64_t miss = 0;
    for (int i = 0; i < opt.threads; i++) {
        struct worker *w = &workers[i];
        for (long k = 0; k < w->nsubs; k++) {
            uint64_t pos = atomic_load_explicit(&w->conns[k].last_seq_shared, memory_order_relaxed);
            if (pos < target) {
                n++;
                miss += target - pos;
            }
        }
    }
    if (missing)
        *missing = miss;
    return n;
}

/* After the threads are joined: how many events each publisher sent. */
static uint64_t *published_per_publisher(void)
{
    uint64_t *n = calloc((size_t)opt.publishers, sizeof *n);
    if (!n)
        bench_die(1, "out of memory");
    for (int i = 0; i < opt.threads; i++)
        for (long k = workers[i].nsubs; k < workers[i].nconns; k++)
            n[workers[i].conns[k].index] = workers[i].conns[k].pub->counter;
    return n;
}

static const char *first_error(enum fail_kind k)
{
    for (int i = 0; i < opt.threads; i++)
        if (workers[i].first_err[k][0])
            return workers[i].first_err[k];
    return "";
}

struct sample {
    uint64_t t;
    struct totals tot;
    double broker_cpu, self_cpu;
    struct bench_host_cpu host;
};

static void take_sample(struct sample *s)
{
    s->t = bench_mono_ns();
    sum_live(&s->tot);
    s->broker_cpu = opt.broker_pid ? bench_proc_cpu_s(opt.broker_pid) : -1;
    s->self_cpu = bench_self_cpu_s();
    s->host = bench_host_cpu_read();
}

static void progress(const char *label, uint64_t t0, struct sample *prev)
{
    struct sample s;
    take_sample(&s);
    double dt = (double)(s.t - prev->t) / 1e9;
    if (dt <= 0)
        dt = 1e-9;
    double el = (double)(s.t - t0) / 1e9;
    char cpu[64] = "", steal[48] = "";
    if (opt.broker_pid && s.broker_cpu >= 0 && prev->broker_cpu >= 0)
        snprintf(cpu, sizeof cpu, "  broker CPU %3.0f%%", 100.0 * (s.broker_cpu - prev->broker_cpu) / dt);
    if (s.host.ok && prev->host.ok && s.host.steal - prev->host.steal > 0.01 * dt)
        snprintf(steal, sizeof steal, "  steal %.2f cores", (s.host.steal - prev->host.steal) / dt);
    bool acked = !opt.target || opt.target->acked;
    fprintf(stderr, "[%6.1fs] %-7s %s %8.0f ev/s (%6.0f %s/s)  delivered %9.0f/s  "
            "lost %" PRIu64 "  dup %" PRIu64 "  in flight %ld%s  bench CPU %3.0f%%%s%s\n",
            el, label, acked ? "accepted" : "sent", (double)(s.tot.accepted - prev->tot.accepted) / dt,
            (double)(s.tot.pushes_acked - prev->tot.pushes_acked) / dt, opt.target ? "batches" : "pushes",
            (double)(s.tot.delivered - prev->tot.delivered) / dt, s.tot.lost, s.tot.dup,
            s.tot.inflight, cpu, 100.0 * (s.self_cpu - prev->self_cpu) / dt, steal,
            s.tot.failed[FK_RUN] ? "  CONNECTIONS LOST" : "");
    *prev = s;
}

static const char *target_name(void)
{
    return opt.target ? opt.target->name : "nebula";
}

/* What the summary calls the publishers' counters: only nebula-syncd has
 * Push and PushResult; ws-broadcast answers nothing (no ack latency). */
struct summary_labels {
    const char *acked, *accepted, *ack_latency, *not_accepted, *foreign;
};

static struct summary_labels summary_labels(void)
{
    if (!opt.target)
        return (struct summary_labels){"pushes acknowledged", "events accepted",
                                       "latency push->PushResult", "push results not ACCEPTED",
                                       "events not written by this run's tool format; seq-checked, "
                                       "not timed"};
    return (struct summary_labels){
        opt.target->acked ? "batches acknowledged" : "batches sent (no acks)",
        opt.target->acked ? "events acknowledged" : "events sent",
        opt.target->acked ? "latency batch->ack" : NULL,
        "batches not acknowledged as success",
        "events this run did not write: counted, not checked"};
}

static void json_str(FILE *j, const char *s)
{
    fputc('"', j);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(j, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(j, "\\u%04x", ch);
        else
            fputc(ch, j);
    }
    fputc('"', j);
}

static void json_hist(FILE *j, const char *name, const hist *h, bool last)
{
    fprintf(j, "  \"%s\": {\"samples\": %" PRIu64, name, h->count);
    if (h->count)
        fprintf(j, ", \"p50\": %.1f, \"p90\": %.1f, \"p99\": %.1f, \"p999\": %.1f, \"max\": %.1f, "
                   "\"mean\": %.1f", hist_quantile(h, 0.50) / 1e3, hist_quantile(h, 0.90) / 1e3,
                hist_quantile(h, 0.99) / 1e3, hist_quantile(h, 0.999) / 1e3, h->max / 1e3,
                (double)h->sum / (double)h->count / 1e3);
    fprintf(j, "}%s\n", last ? "" : ",");
}

static void print_hist(const char *name, const hist *h)
{
    if (!h->count) {
        printf("  %-30s no samples\n", name);
        return;
    }
    printf("  %-30s p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f us  (mean %.1f us, %" PRIu64
           " samples)\n", name, hist_quantile(h, 0.50) / 1e3, hist_quantile(h, 0.90) / 1e3,
           hist_quantile(h, 0.99) / 1e3, hist_quantile(h, 0.999) / 1e3, h->max / 1e3,
           (double)h->sum / (double)h->count / 1e3, h->count);
}

int main(int argc, char **argv)
{
    bench_set_program(PROG, "(try " PROG " --help)");
    parse_args(argc, argv);
    /* Input chains come and go at a high rate: keep freed memory in the heap
     * instead of trimming it and faulting fresh pages back in. */
    mallopt(M_TRIM_THRESHOLD, 512 << 20);
    mallopt(M_MMAP_THRESHOLD, 4 << 20);
    raise_nofile();
    bench_resolve(&opt.ep, &dest);
    bench_resolve(&opt.publish_ep, &publish_dest);
    run_id = rand_u64();
    params = (struct fanout_params){
        .collection = opt.collection,
        .subscribers = opt.subscribers,
        .publishers = opt.publishers,
        .batch = opt.batch,
        .size = opt.size,
        .run_id = run_id,
        .token = opt.token,
    };

    long rss_before = -1, rss_after = -1;
    if (opt.broker_pid) {
        rss_before = bench_proc_rss_kib(opt.broker_pid);
        if (rss_before < 0 || bench_proc_cpu_s(opt.broker_pid) < 0)
            bench_die(2, "--broker-pid %d: cannot read /proc/%d/status and /proc/%d/stat (no such "
                      "process?)", (int)opt.broker_pid, (int)opt.broker_pid, (int)opt.broker_pid);
    }
    if (evthread_use_pthreads() < 0)
        bench_die(1, "evthread_use_pthreads failed");
    if (opt.ep.tls)
        ssl_ctx = bench_tls_client_ctx(1);
    bench_catch_signals();

    /* connections: subscribers and publishers dealt round-robin to threads */
    workers = calloc((size_t)opt.threads, sizeof *workers);
    if (!workers)
        bench_die(1, "out of memory");
    for (int i = 0; i < opt.threads; i++) {
        struct worker *w = &workers[i];
        w->id = i;
        long ns = opt.subscribers / opt.threads + (i < opt.subscribers % opt.threads);
        long np = opt.publishers / opt.threads + (i < opt.publishers % opt.threads);
        w->nsubs = ns;
        w->nconns = ns + np;
        w->conns = calloc((size_t)(w->nconns ? w->nconns : 1), sizeof *w->conns);
        struct event_config *cfg = event_config_new();
        if (!cfg || !w->conns)
            bench_die(1, "out of memory");
        if (opt.rate > 0)
            event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER);
        w->base = event_base_new_with_config(cfg);
        event_config_free(cfg);
        if (!w->base)
            bench_die(1, "event_base_new failed");
        w->phase_ev = event_new(w->base, -1, 0, on_phase, w);
        w->grace_ev = evtimer_new(w->base, on_grace, w);
        if (!w->phase_ev || !w->grace_ev)
            bench_die(1, "event_new failed");
        w->xs = rand_u64() | 1;
        w->arena.buf = malloc(ARENA_BYTES);
        w->arena.cap = ARENA_BYTES;
        if (!w->arena.buf)
            bench_die(1, "out of memory");
        w->alloc.alloc = arena_alloc;
        w->alloc.free = arena_free;
        w->alloc.allocator_data = &w->arena;
        hist_init(&w->lat);
        hist_init(&w->ack);
        for (long k = 0; k < ns; k++) {
            struct fanout_conn *c = &w->conns[k];
            c->w = w;
            c->role = ROLE_SUB;
            c->index = i + k * opt.threads;
            c->fd = -1;
            if (opt.target && !seq_table_init(&c->table, (size_t)opt.publishers))
                bench_die(1, "out of memory");
            peer_conn_new(c);
        }
        for (long k = 0; k < np; k++) {
            struct fanout_conn *c = &w->conns[ns + k];
            c->w = w;
            c->role = ROLE_PUB;
            c->index = i + k * opt.threads;
            c->fd = -1;
            c->pub = pub_new(c, c->index);
            peer_conn_new(c);
        }
    }

    char rate_txt[64];
    if (opt.rate > 0)
        snprintf(rate_txt, sizeof rate_txt, "%.0f events/s in all", opt.rate);
    else
        snprintf(rate_txt, sizeof rate_txt, "as fast as acknowledged");
    fprintf(stderr, PROG " fanout: %s %s collection '%s': %ld subscribers, %ld publisher%s, batch %ld x "
            "%ld B, %ld in flight, %s; warm-up %.1f s, window %.1f s, %d thread%s%s\n",
            target_name(), opt.url, opt.collection, opt.subscribers, opt.publishers,
            opt.publishers == 1 ? "" : "s", opt.batch, opt.size, opt.inflight, rate_txt, opt.warmup, opt.duration, opt.threads,
            opt.threads == 1 ? "" : "s", dest.spread_src ? ", sources 127.0.X.Y" : "");

    uint64_t t0 = bench_mono_ns();
    for (int i = 0; i < opt.threads; i++)
        if (!bench_thread_start(&workers[i].thread, worker_main, &workers[i]))
            bench_die(1, "pthread_create failed");

    /* 1. setup: every subscriber subscribed, every publisher welcomed */
    bool completed = true;
    char why_not[512] = "";
    struct totals t;
    uint64_t setup_deadline = t0 + (uint64_t)SETUP_TIMEOUT_S * 1000000000u;
    uint64_t next_tick = t0 + 1000000000u;
    for (;;) {
        sum_live(&t);
        if (t.ready_subs == opt.subscribers && t.ready_pubs == opt.publishers)
            break;
        if (t.failed[FK_SETUP] || bench_got_signal || bench_mono_ns() >= setup_deadline) {
            completed = false;
            if (t.failed[FK_SETUP])
                snprintf(why_not, sizeof why_not, "%ld connection(s) failed during setup; first: %s",
                         t.failed[FK_SETUP], first_error(FK_SETUP));
            else if (bench_got_signal)
                snprintf(why_not, sizeof why_not, "interrupted during setup");
            else
                snprintf(why_not, sizeof why_not, "setup not done within %d s (%ld/%ld subscribers, "
                         "%ld/%ld publishers ready)", SETUP_TIMEOUT_S, t.ready_subs,
                         opt.subscribers, t.ready_pubs, opt.publishers);
            break;
        }
        bench_sleep_until_ns(bench_mono_ns() + 20000000u);
        if (bench_mono_ns() >= next_tick) {
            fprintf(stderr, "[%6.1fs] setup   subscribers ready %ld/%ld, publishers ready %ld/%ld\n",
                    (double)(bench_mono_ns() - t0) / 1e9, t.ready_subs, opt.subscribers, t.ready_pubs,
                    opt.publishers);
            next_tick += 1000000000u;
        }
    }
    double setup_s = (double)(bench_mono_ns() - t0) / 1e9;

    struct sample a = {0}, b = {0}, prev;
    uint64_t run_t0 = bench_mono_ns(), drain_s_ns = 0;
    uint64_t target = 0, tail_missing = 0;
    long behind = 0;
    bool drained = false;
    if (completed) {
        fprintf(stderr, PROG ": setup done in %.2f s (%ld subscribers subscribed, %ld publisher%s "
                "welcomed); pushing\n", setup_s, opt.subscribers, opt.publishers,
                opt.publishers == 1 ? "" : "s");
        uint64_t ws = run_t0 + (uint64_t)(opt.warmup * 1e9);
        uint64_t we = ws + (uint64_t)(opt.duration * 1e9);
        atomic_store(&window_start_ns, ws);
        atomic_store(&window_end_ns, we);
        set_phase(PH_RUN);

        /* 2. warm-up, then the window */
        take_sample(&prev);
        next_tick = run_t0 + 1000000000u;
        bool window_open = false;
        while (!bench_got_signal) {
            uint64_t now = bench_mono_ns();
            if (!window_open && now >= ws) {
                take_sample(&a);
                window_open = true;
            }
            if (now >= we)
                break;
            uint64_t wake = next_tick;
            if (!window_open && ws < wake)
                wake = ws;
            if (we < wake)
                wake = we;
            bench_sleep_until_ns(wake);
            if (bench_mono_ns() >= next_tick) {
                progress(bench_mono_ns() < ws ? "warm-up" : "measure", run_t0, &prev);
                next_tick += 1000000000u;
            }
        }
        if (!window_open)
            take_sample(&a);
        take_sample(&b);
        if (opt.broker_pid)
            rss_after = bench_proc_rss_kib(opt.broker_pid);
        set_phase(PH_STOP);
        if (bench_got_signal) {
            completed = false;
            snprintf(why_not, sizeof why_not, "interrupted");
        }

        /* 3. drain: every Push answered, every subscriber up to the last seq.
         * A publisher may be sending its last Push while the phase changes:
         * what was sent is known once every thread has seen PH_STOP. */
        uint64_t d0 = bench_mono_ns(), ddl = d0 + (uint64_t)DRAIN_TIMEOUT_S * 1000000000u;
        next_tick = d0 + 1000000000u;
        while (!bench_got_signal) {
            sum_live(&t);
            if (t.stopped == opt.threads && t.inflight == 0) {
                target = drain_target(&t);
                behind = subs_behind(target, &tail_missing);
                if (behind == 0) {
                    drained = true;
                    break;
                }
            }
            if (bench_mono_ns() >= ddl)
                break;
            bench_sleep_until_ns(bench_mono_ns() + 5000000u);
            if (bench_mono_ns() >= next_tick) {
                progress("drain", run_t0, &prev);
                next_tick += 1000000000u;
            }
        }
        drain_s_ns = bench_mono_ns() - d0;
        sum_live(&t);
        if (t.stopped == opt.threads && t.inflight == 0) {
            target = drain_target(&t);
            behind = subs_behind(target, &tail_missing);
        }
        if (!drained && completed) {
            completed = false;
            if (t.inflight)
                snprintf(why_not, sizeof why_not, "%ld Push message(s) still unanswered %d s after "
                         "the window", t.inflight, DRAIN_TIMEOUT_S);
            else
                snprintf(why_not, sizeof why_not, "%ld subscriber(s) still behind %s %" PRIu64
                         " %d s after the window", behind,
                         opt.target ? "the events published, " : "seq", target, DRAIN_TIMEOUT_S);
        }
    }

    /* 4. close */
    set_phase(PH_CLOSE);
    for (int i = 0; i < opt.threads; i++)
        pthread_join(workers[i].thread, NULL);

    /* totals */
    sum_live(&t);
    if (t.failed[FK_RUN] && (completed || !bench_got_signal)) {
        /* the root cause: say it even when the drain then timed out */
        completed = false;
        snprintf(why_not, sizeof why_not, "%ld connection(s) lost during the run; first: %s",
                 t.failed[FK_RUN], first_error(FK_RUN));
    }
    hist lat, ack;
    hist_init(&lat);
    hist_init(&ack);
    uint64_t gaps = 0, dups = 0, skipped = 0, foreign = 0, resnaps = 0, tail_lost = 0;
    uint64_t n_dup_push = 0, n_conflict = 0, n_rejected = 0;
    const char *first_reject = "";
    uint64_t *issued = opt.target ? published_per_publisher() : NULL;
    for (int i = 0; i < opt.threads; i++) {
        struct worker *w = &workers[i];
        hist_merge(&lat, &w->lat);
        hist_merge(&ack, &w->ack);
        n_dup_push += w->n_duplicate;
        n_conflict += w->n_conflict;
        n_rejected += w->n_rejected;
        if (!*first_reject && w->first_reject[0])
            first_reject = w->first_reject;
        for (long k = 0; k < w->nsubs; k++) {
            struct fanout_conn *c = &w->conns[k];
            skipped += c->skipped;
            foreign += c->foreign;
            resnaps += c->resnapshots;
            if (opt.target) {
                gaps += seq_table_lost(&c->table);
                dups += seq_table_dup(&c->table);
                if (c->started)
                    tail_lost += seq_table_missing(&c->table, issued);
                continue;
            }
            gaps += c->seq.lost;
            dups += c->seq.dup;
            if (c->started && c->seq.last < target)
                tail_lost += target - c->seq.last;
        }
    }
    free(issued);
    uint64_t lost = gaps + skipped + tail_lost;

    double win = (double)(b.t - a.t) / 1e9;
    if (win <= 0)
        win = 1e-9;
    uint64_t w_acked = b.tot.pushes_acked - a.tot.pushes_acked;
    uint64_t w_accepted = b.tot.accepted - a.tot.accepted;
    uint64_t w_delivered = b.tot.delivered - a.tot.delivered;
    double acked_ps = (double)w_acked / win, accepted_ps = (double)w_accepted / win;
    double delivered_ps = (double)w_delivered / win;
    double broker_cpu = (opt.broker_pid && a.t && a.broker_cpu >= 0 && b.broker_cpu >= 0)
                            ? b.broker_cpu - a.broker_cpu : -1;
    double self_cpu = b.self_cpu - a.self_cpu;
    double us_per_delivery = broker_cpu >= 0 && w_delivered ? broker_cpu * 1e6 / (double)w_delivered : -1;
    double us_per_accepted = broker_cpu >= 0 && w_accepted ? broker_cpu * 1e6 / (double)w_accepted : -1;
    double other_cores = -1, host_busy = -1, softirq = -1, steal = -1;
    int cpus = 0;
    if (a.host.ok && b.host.ok && b.host.cpus > 0 && a.t) {
        cpus = b.host.cpus;
        host_busy = (b.host.busy - a.host.busy) / win;
        softirq = (b.host.softirq - a.host.softirq) / win;
        steal = (b.host.steal - a.host.steal) / win;
        double other = host_busy - softirq - (broker_cpu > 0 ? broker_cpu / win : 0) - self_cpu / win;
        other_cores = other > 0 ? other : 0;
    }
    if (completed && w_accepted == 0) {
        completed = false;
        snprintf(why_not, sizeof why_not, "no event was accepted in the window");
    }
    bool pass = completed && lost == 0 && dups == 0;

    /* summary */
    struct summary_labels lb = summary_labels();
    printf(PROG " fanout  %s  %s  collection '%s'\n", target_name(), opt.url, opt.collection);
    if (opt.publish_url)
        printf("  %-30s %s\n", "publishers on", opt.publish_url);
    printf("  %-30s %ld subscribers, %ld publisher%s, batch %ld x %ld B, %ld in flight, %s\n", "load",
           opt.subscribers, opt.publishers, opt.publishers == 1 ? "" : "s", opt.batch, opt.size,
           opt.inflight, rate_txt);
    printf("  %-30s %.2f s after %.1f s warm-up (setup %.2f s, drain %.2f s), %d client thread%s\n",
           "window", a.t ? win : 0.0, opt.warmup, setup_s, (double)drain_s_ns / 1e9, opt.threads,
           opt.threads == 1 ? "" : "s");
    printf("  %-30s %s\n", "------------------------------", "------------------------------");
    if (!a.t)
        goto verdict;                 /* setup failed: nothing was measured */
    printf("  %-30s %.0f /s  (%" PRIu64 " in the window)\n", lb.acked, acked_ps, w_acked);
    printf("  %-30s %.0f /s  (%" PRIu64 ")\n", lb.accepted, accepted_ps, w_accepted);
    printf("  %-30s %.0f /s  (%" PRIu64 "; %.1f%% of accepted x subscribers)\n", "deliveries",
           delivered_ps, w_delivered,
           w_accepted ? 100.0 * (double)w_delivered / ((double)w_accepted * (double)opt.subscribers) : 0.0);
    print_hist("latency publish->deliver", &lat);
    if (lb.ack_latency)
        print_hist(lb.ack_latency, &ack);
    printf("  %-30s %" PRIu64 "%s\n", "lost", lost,
           lost ? "  <-- EXPECTED 0" : "");
    if (lost)
        printf("  %-30s gaps %" PRIu64 ", skipped by %" PRIu64 " re-snapshot(s) %" PRIu64
               ", missing at the end %" PRIu64 " (%s %" PRIu64 ")\n", "  of which", gaps,
               resnaps, skipped, tail_lost, opt.target ? "events published" : "last seq", target);
    printf("  %-30s %" PRIu64 "%s\n", "duplicated", dups, dups ? "  <-- EXPECTED 0" : "");
    if (n_dup_push || n_conflict || n_rejected)
        printf("  %-30s DUPLICATE %" PRIu64 ", CONFLICT %" PRIu64 ", REJECTED %" PRIu64
               "; first: %s\n", lb.not_accepted, n_dup_push, n_conflict, n_rejected,
               first_reject);
    if (foreign)
        printf("  %-30s %" PRIu64 " (%s)\n", "foreign events", foreign, lb.foreign);
    if (opt.rate > 0)
        printf("  %-30s %.0f events/s asked, %.1f%% reached%s\n", "target rate", opt.rate,
               100.0 * accepted_ps / opt.rate,
               accepted_ps < 0.98 * opt.rate ? "  <-- NOT REACHED (broker, tool or --inflight too "
                                               "low): latencies are not at this rate" : "");
    if (b.tot.slips)
        printf("  %-30s %" PRIu64 " times a publisher fell > 100 ms behind --rate\n", "rate slips",
               b.tot.slips);
    if (broker_cpu >= 0) {
        printf("  %-30s %.2f s (%.0f%% of one core)\n", "broker CPU (utime+stime)", broker_cpu,
               100.0 * broker_cpu / win);
        printf("  %-30s %.3f us per delivery = %.3f CPU-s per million deliveries; %.2f us per "
               "accepted event\n", "broker CPU per delivery", us_per_delivery, us_per_delivery,
               us_per_accepted);
    }
    if (rss_before >= 0)
        printf("  %-30s %.1f MiB before setup, %.1f MiB at the end of the window\n", "broker RSS",
               rss_before / 1024.0, rss_after / 1024.0);
    printf("  %-30s %.2f s (%.0f%% of one core)%s\n", "bench CPU", self_cpu, 100.0 * self_cpu / win,
           self_cpu / win > 0.9 * opt.threads ? "  (the tool may be the bottleneck)" : "");
    if (other_cores >= 0)
        printf("  %-30s %d cores, %.0f%% busy: broker %.2f, bench %.2f, softirq %.2f, other "
               "processes %.2f cores; hypervisor steal %.2f cores%s\n", "host CPU", cpus,
               100.0 * host_busy / cpus, broker_cpu > 0 ? broker_cpu / win : 0.0, self_cpu / win,
               softirq, other_cores, steal,
               other_cores > 0.2 || steal > 0.05 ? "  (the machine was shared: numbers are noisy)"
                                                 : "");
verdict:
    printf("  %-30s %s%s%s\n", "result", pass ? "PASS" : "FAIL", why_not[0] ? ": " : "",
           why_not[0] ? why_not : (!pass ? "lost or duplicated events" : ""));
    fflush(stdout);

    if (opt.json_path) {
        FILE *j = fopen(opt.json_path, "w");
        if (!j) {
            fprintf(stderr, PROG ": cannot write %s: %s\n", opt.json_path, strerror(errno));
        } else {
            fprintf(j, "{\n  \"scenario\": \"fanout\",\n  \"target\": \"%s\",\n  \"acked\": %s,\n"
                       "  \"url\": ", target_name(), !opt.target || opt.target->acked ? "true" : "false");
            json_str(j, opt.url);
            fprintf(j, ",\n  \"publish_url\": ");
            json_str(j, opt.publish_url ? opt.publish_url : opt.url);
            fprintf(j, ",\n  \"collection\": ");
            json_str(j, opt.collection);
            fprintf(j, ",\n  \"subscribers\": %ld,\n  \"publishers\": %ld,\n  \"batch\": %ld,\n"
                       "  \"size\": %ld,\n  \"inflight\": %ld,\n  \"rate\": %.1f,\n"
                       "  \"threads\": %d,\n  \"warmup_s\": %.3f,\n  \"window_s\": %.3f,\n"
                       "  \"setup_s\": %.3f,\n  \"drain_s\": %.3f,\n",
                    opt.subscribers, opt.publishers, opt.batch, opt.size, opt.inflight, opt.rate,
                    opt.threads, opt.warmup, a.t ? win : 0.0, setup_s, (double)drain_s_ns / 1e9);
            fprintf(j, "  \"pushes_acked\": %" PRIu64 ",\n  \"pushes_acked_per_s\": %.1f,\n"
                       "  \"events_accepted\": %" PRIu64 ",\n  \"events_accepted_per_s\": %.1f,\n"
                       "  \"deliveries\": %" PRIu64 ",\n  \"deliveries_per_s\": %.1f,\n",
                    w_acked, acked_ps, w_accepted, accepted_ps, w_delivered, delivered_ps);
            json_hist(j, "latency_us", &lat, false);
            json_hist(j, "push_ack_latency_us", &ack, false);
            fprintf(j, "  \"lost\": %" PRIu64 ",\n  \"lost_gaps\": %" PRIu64 ",\n"
                       "  \"lost_resnapshot\": %" PRIu64 ",\n  \"lost_tail\": %" PRIu64 ",\n"
                       "  \"duplicated\": %" PRIu64 ",\n  \"resnapshots\": %" PRIu64 ",\n"
                       "  \"foreign_events\": %" PRIu64 ",\n  \"last_seq\": %" PRIu64 ",\n"
                       "  \"results_duplicate\": %" PRIu64 ",\n  \"results_conflict\": %" PRIu64
                       ",\n  \"results_rejected\": %" PRIu64 ",\n  \"rate_slips\": %" PRIu64 ",\n",
                    lost, gaps, skipped, tail_lost, dups, resnaps, foreign, target, n_dup_push,
                    n_conflict, n_rejected, b.tot.slips);
            if (broker_cpu >= 0)
                fprintf(j, "  \"broker_cpu_s\": %.3f,\n  \"broker_cpu_us_per_delivery\": %.4f,\n"
                           "  \"broker_cpu_s_per_million_deliveries\": %.4f,\n"
                           "  \"broker_cpu_us_per_accepted_event\": %.3f,\n",
                        broker_cpu, us_per_delivery, us_per_delivery, us_per_accepted);
            if (rss_before >= 0)
                fprintf(j, "  \"broker_rss_before_kib\": %ld,\n  \"broker_rss_after_kib\": %ld,\n",
                        rss_before, rss_after);
            if (other_cores >= 0)
                fprintf(j, "  \"host_cpus\": %d,\n  \"softirq_cores\": %.3f,\n"
                           "  \"other_processes_cores\": %.3f,\n  \"steal_cores\": %.3f,\n",
                        cpus, softirq, other_cores, steal);
            fprintf(j, "  \"bench_cpu_s\": %.3f,\n  \"completed\": %s,\n  \"error\": ", self_cpu,
                    completed ? "true" : "false");
            json_str(j, why_not);
            fprintf(j, ",\n  \"pass\": %s\n}\n", pass ? "true" : "false");
            fclose(j);
        }
    }

    for (int i = 0; i < opt.threads; i++) {
        struct worker *w = &workers[i];
        for (long k = 0; k < w->nconns; k++) {
            pub_free(w->conns[k].pub);
            seq_table_free(&w->conns[k].table);
            if (opt.target)
                opt.target->conn_free(w->conns[k].peer);
        }
        event_free(w->phase_ev);
        event_free(w->grace_ev);
        event_base_free(w->base);
        arena_reset(&w->arena);
        free(w->arena.buf);
        free(w->arena.big);
        free(w->conns);
    }
    free(workers);
    SSL_CTX_free(ssl_ctx);
    return pass ? 0 : 1;
}
