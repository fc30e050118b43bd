/* scenario_fanout: see scenario_fanout.h.
 *
 * Scenario `fanout`: S subscribers and P publishers on one collection. Every
 * subscriber connects, sends Hello and Subscribe (no cursor, so the broker
 * answers Subscribed + Snapshot pages) and is "ready" once the last
 * snapshot page has given it its start position. Then the publishers push
 * batches of K events (a B-byte JSON document each) with W Push messages in
 * flight per publisher, either as fast as PushResults come back or paced to
 * a total rate of R events/s.
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
 * Targets: nebula-syncd (the default) is spoken to by sync_load.c.
 * --target socketio and --target ws-broadcast run the same scenario against
 * another server in its own protocol (fanout_target.h; peer_socketio.c,
 * peer_wsbroadcast.c). Their events carry this tool's ids and documents in
 * JSON (peer_events.h), and every subscriber checks each publisher's
 * counter instead of a seq.
 */
#include "scenario_fanout.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "event_format.h"
#include "peer_socketio.h"
#include "peer_wsbroadcast.h"
#include "sync_bench_hist.h"
#include "sync_scenario.h"

#define PROG SYNC_LOAD_PROGRAM
#define DRAIN_TIMEOUT_S 10            /* after the window: wait this long for the tail */
#define NEBULA_URL SYNC_LOAD_DEFAULT_URL
#define MAX_PEER_STREAMS 50000000L    /* subscribers x publishers seq streams (24 B each) */

static struct load_options opt;
static const char *publish_url;                /* --publish-url; NULL: publishers use --url */
static struct bench_endpoint publish_ep;
static const struct fanout_variant *variant;   /* NULL: plain fanout */
static struct sync_load_stream the_stream;     /* fanout's one stream */

static void set_default_options(void)
{
    opt = (struct load_options){
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
}

static void usage(FILE *f)
{
    fprintf(f,
        "usage: " PROG " fanout [options]\n"
        "\n"
        "S subscribers and P publishers on one collection. Publishers push batches\n"
        "of K events (a B-byte JSON document each) with W pushes in flight, as fast\n"
        "as acknowledged or at a total rate; subscribers check that every seq\n"
        "arrives exactly once, in order, and measure publish-to-deliver latency.\n"
        "The same scenario runs against other servers for a side-by-side comparison.\n"
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
        "  --publish-url URL    publishers connect here instead of --url (nebula target;\n"
        "                       e.g. another broker of a cluster: publish-to-deliver\n"
        "                       latency across brokers); same scheme as --url\n"
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
        EVENT_DOC_MIN_SIZE, SYNC_LOAD_MAX_SIZE);
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
    if (variant)
        bench_die_usage("--target: %s runs against nebula-syncd only", variant->name);
    if (opt.token && opt.target == &peer_wsbroadcast_target)
        bench_die_usage("--token: the ws-broadcast target has no authentication");
    if (opt.subscribers > MAX_PEER_STREAMS / opt.publishers)
        bench_die_usage("--subscribers x --publishers: %ld x %ld counters to check is more than "
                        "%ld", opt.subscribers, opt.publishers, MAX_PEER_STREAMS);
}

#define O_TARGET LOAD_OPTION_END
#define O_PUBLISH_URL (LOAD_OPTION_END + 1)
#define MAX_OPTIONS 40

/* fanout's options (the shared ones, --target, --help), then the
 * variant's, then the terminator. */
static void all_options(struct option *out)
{
    size_t n = load_options_table(LOAD_ALL, out, 0);
    out[n++] = (struct option){"target", required_argument, NULL, O_TARGET};
    if (!variant)
        out[n++] = (struct option){"publish-url", required_argument, NULL, O_PUBLISH_URL};
    out[n++] = (struct option){"help", no_argument, NULL, 'h'};
    for (const struct option *o = variant ? variant->options : NULL; o && o->name; o++) {
        if (n == MAX_OPTIONS)
            bench_die(2, "too many options in scenario %s", variant->name);
        out[n++] = *o;
    }
    out[n] = (struct option){NULL, 0, NULL, 0};
}

static void parse_option(int c, char **argv)
{
    if (load_options_parse(&opt, c, optarg))
        return;
    if (c == O_TARGET)
        opt.target = parse_target(optarg);
    else if (c == O_PUBLISH_URL)
        publish_url = optarg;
    else if (variant && c >= FANOUT_VARIANT_OPTION)
        variant->option(c, optarg);
    else
        load_options_unknown(argv);
}

static void parse_args(int argc, char **argv)
{
    void (*print_usage)(FILE *) = variant ? variant->usage : usage;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            print_usage(stdout);
            exit(0);
        }
    }
    struct option longopts[MAX_OPTIONS + 1];
    all_options(longopts);
    bench_getopt(argc, argv, longopts, parse_option);
    if (variant)
        variant->check_options(&opt);
    if (!opt.url)
        opt.url = opt.target ? opt.target->default_url : NEBULA_URL;
    if (opt.target)
        set_peer_request(opt.target, opt.url, &opt.ep);
    else
        bench_parse_url(opt.url, "/v1/sync", &opt.ep);
    publish_ep = opt.ep;
    if (publish_url) {
        if (opt.target)
            bench_die_usage("--publish-url is for the nebula target only");
        bench_parse_url(publish_url, "/v1/sync", &publish_ep);
        if (publish_ep.tls != opt.ep.tls)
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
/* progress and summary                                                      */

static const char *target_name(void)
{
    return opt.target ? opt.target->name : "nebula";
}

static const char *scenario_name(void)
{
    return variant ? variant->name : "fanout";
}

/* "collection 'x'", or what the variant covers. */
static const char *scope(void)
{
    static char text[200];
    if (variant)
        return variant->scope();
    snprintf(text, sizeof text, "collection '%s'", opt.collection);
    return text;
}

static void progress(const char *label, uint64_t t0, struct sync_load_sample *prev)
{
    struct sync_load_sample s;
    sync_load_sample(&s, opt.broker_pid);
    double dt = (double)(s.t - prev->t) / 1e9;
    if (dt <= 0)
        dt = 1e-9;
    double el = (double)(s.t - t0) / 1e9;
    char cpu[64] = "", steal[48] = "", extra[96] = "";
    if (opt.broker_pid && s.broker_cpu >= 0 && prev->broker_cpu >= 0)
        snprintf(cpu, sizeof cpu, "  broker CPU %3.0f%%", 100.0 * (s.broker_cpu - prev->broker_cpu) / dt);
    if (s.host.ok && prev->host.ok && s.host.steal - prev->host.steal > 0.01 * dt)
        snprintf(steal, sizeof steal, "  steal %.2f cores", (s.host.steal - prev->host.steal) / dt);
    if (variant)
        variant->progress(extra, sizeof extra);
    bool acked = !opt.target || opt.target->acked;
    fprintf(stderr, "[%6.1fs] %-7s %s %8.0f ev/s (%6.0f %s/s)  delivered %9.0f/s  "
            "lost %" PRIu64 "  dup %" PRIu64 "  in flight %ld%s  bench CPU %3.0f%%%s%s%s\n",
            el, label, acked ? "accepted" : "sent", (double)(s.tot.accepted - prev->tot.accepted) / dt,
            (double)(s.tot.pushes_acked - prev->tot.pushes_acked) / dt, opt.target ? "batches" : "pushes",
            (double)(s.tot.delivered - prev->tot.delivered) / dt, s.tot.lost, s.tot.dup,
            s.tot.inflight, cpu, 100.0 * (s.self_cpu - prev->self_cpu) / dt, steal, extra,
            s.tot.failed[SYNC_LOAD_FAIL_RUN] ? "  CONNECTIONS LOST" : "");
    *prev = s;
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

/* Everything the summary and the JSON say, worked out once. */
struct outcome {
    bool completed, pass;
    char why_not[512];
    double setup_s, drain_s, win;
    bool measured;                    /* the window opened: setup succeeded */
    uint64_t w_acked, w_accepted, w_delivered;
    double acked_ps, accepted_ps, delivered_ps;
    double broker_cpu, self_cpu, us_per_delivery, us_per_accepted;
    bool host_ok;
    struct bench_host_share host;
    long rss_before, rss_after;
    uint64_t slips;
    struct sync_load_tally tally;
    char rate_txt[64];
};

static void print_load_lines(const struct outcome *r)
{
    printf(PROG " %s  %s  %s  %s\n", scenario_name(), target_name(), opt.url, scope());
    if (publish_url)
        printf("  %-30s %s\n", "publishers on", publish_url);
    printf("  %-30s %ld subscribers, %ld publisher%s, batch %ld x %ld B, %ld in flight, %s\n", "load",
           opt.subscribers, opt.publishers, opt.publishers == 1 ? "" : "s", opt.batch, opt.size,
           opt.inflight, r->rate_txt);
    printf("  %-30s %.2f s after %.1f s warm-up (setup %.2f s, drain %.2f s), %d client thread%s\n",
           "window", r->measured ? r->win : 0.0, opt.warmup, r->setup_s, r->drain_s, opt.threads,
           opt.threads == 1 ? "" : "s");
    printf("  %-30s %s\n", "------------------------------", "------------------------------");
}

static void print_delivery_lines(const struct outcome *r, const struct summary_labels *lb)
{
    const struct sync_load_tally *t = &r->tally;
    printf("  %-30s %.0f /s  (%" PRIu64 " in the window)\n", lb->acked, r->acked_ps, r->w_acked);
    printf("  %-30s %.0f /s  (%" PRIu64 ")\n", lb->accepted, r->accepted_ps, r->w_accepted);
    double receivers = variant ? variant->receivers_per_event() : (double)opt.subscribers;
    printf("  %-30s %.0f /s  (%" PRIu64 "; %.1f%% of accepted x %s)\n", "deliveries",
           r->delivered_ps, r->w_delivered,
           r->w_accepted ? 100.0 * (double)r->w_delivered / ((double)r->w_accepted * receivers) : 0.0,
           variant ? "the subscribers of its stream" : "subscribers");
    hist_print("latency publish->deliver", &t->lat);
    if (lb->ack_latency)
        hist_print(lb->ack_latency, &t->ack);
    printf("  %-30s %" PRIu64 "%s\n", "lost", t->lost, t->lost ? "  <-- EXPECTED 0" : "");
    if (t->lost)
        printf("  %-30s gaps %" PRIu64 ", skipped by %" PRIu64 " re-snapshot(s) %" PRIu64
               ", missing at the end %" PRIu64 " (%s %" PRIu64 ")\n", "  of which", t->gaps,
               t->resnapshots, t->skipped, t->tail_lost, opt.target ? "events published" : "last seq",
               t->last_seq);
    printf("  %-30s %" PRIu64 "%s\n", "duplicated", t->dups, t->dups ? "  <-- EXPECTED 0" : "");
    if (t->n_duplicate || t->n_conflict || t->n_rejected)
        printf("  %-30s DUPLICATE %" PRIu64 ", CONFLICT %" PRIu64 ", REJECTED %" PRIu64
               "; first: %s\n", lb->not_accepted, t->n_duplicate, t->n_conflict, t->n_rejected,
               t->first_reject);
    if (t->foreign)
        printf("  %-30s %" PRIu64 " (%s)\n", "foreign events", t->foreign, lb->foreign);
}

static void print_rate_and_cpu_lines(const struct outcome *r)
{
    if (opt.rate > 0)
        printf("  %-30s %.0f events/s asked, %.1f%% reached%s\n", "target rate", opt.rate,
               100.0 * r->accepted_ps / opt.rate,
               r->accepted_ps < 0.98 * opt.rate ? "  <-- NOT REACHED (broker, tool or --inflight too "
                                                  "low): latencies are not at this rate" : "");
    if (r->slips)
        printf("  %-30s %" PRIu64 " times a publisher fell > 100 ms behind --rate\n", "rate slips",
               r->slips);
    if (r->broker_cpu >= 0) {
        printf("  %-30s %.2f s (%.0f%% of one core)\n", "broker CPU (utime+stime)", r->broker_cpu,
               100.0 * r->broker_cpu / r->win);
        printf("  %-30s %.3f us per delivery = %.3f CPU-s per million deliveries; %.2f us per "
               "accepted event\n", "broker CPU per delivery", r->us_per_delivery, r->us_per_delivery,
               r->us_per_accepted);
    }
    if (r->rss_before >= 0)
        printf("  %-30s %.1f MiB before setup, %.1f MiB at the end of the window\n", "broker RSS",
               r->rss_before / 1024.0, r->rss_after / 1024.0);
    printf("  %-30s %.2f s (%.0f%% of one core)%s\n", "bench CPU", r->self_cpu, 100.0 * r->self_cpu / r->win,
           r->self_cpu / r->win > 0.9 * opt.threads ? "  (the tool may be the bottleneck)" : "");
    if (r->host_ok)
        printf("  %-30s %d cores, %.0f%% busy: broker %.2f, bench %.2f, softirq %.2f, other "
               "processes %.2f cores; hypervisor steal %.2f cores%s\n", "host CPU", r->host.cpus,
               100.0 * r->host.busy / r->host.cpus, r->broker_cpu > 0 ? r->broker_cpu / r->win : 0.0,
               r->self_cpu / r->win, r->host.softirq, r->host.other, r->host.steal,
               r->host.other > 0.2 || r->host.steal > 0.05
                   ? "  (the machine was shared: numbers are noisy)" : "");
}

static void print_summary(const struct outcome *r)
{
    struct summary_labels lb = summary_labels();
    print_load_lines(r);
    if (r->measured) {                /* else setup failed: nothing was measured */
        print_delivery_lines(r, &lb);
        if (variant)
            variant->summary();
        print_rate_and_cpu_lines(r);
    }
    const char *why = r->why_not[0] ? r->why_not : !r->pass ? "lost or duplicated events" : "";
    printf("  %-30s %s%s%s\n", "result", r->pass ? "PASS" : "FAIL", why[0] ? ": " : "", why);
    fflush(stdout);
}

static void write_json_body(FILE *j, const void *arg)
{
    const struct outcome *r = arg;
    const struct sync_load_tally *t = &r->tally;
    fprintf(j, "{\n  \"scenario\": \"%s\",\n  \"target\": \"%s\",\n  \"acked\": %s,\n"
               "  \"url\": ", scenario_name(), target_name(),
            !opt.target || opt.target->acked ? "true" : "false");
    bench_json_str(j, opt.url);
    fprintf(j, ",\n  \"publish_url\": ");
    bench_json_str(j, publish_url ? publish_url : opt.url);
    fprintf(j, ",\n  \"collection\": ");
    bench_json_str(j, opt.collection);
    fprintf(j, ",\n  \"subscribers\": %ld,\n  \"publishers\": %ld,\n  \"batch\": %ld,\n"
               "  \"size\": %ld,\n  \"inflight\": %ld,\n  \"rate\": %.1f,\n"
               "  \"threads\": %d,\n  \"warmup_s\": %.3f,\n  \"window_s\": %.3f,\n"
               "  \"setup_s\": %.3f,\n  \"drain_s\": %.3f,\n",
            opt.subscribers, opt.publishers, opt.batch, opt.size, opt.inflight, opt.rate,
            opt.threads, opt.warmup, r->measured ? r->win : 0.0, r->setup_s, r->drain_s);
    fprintf(j, "  \"pushes_acked\": %" PRIu64 ",\n  \"pushes_acked_per_s\": %.1f,\n"
               "  \"events_accepted\": %" PRIu64 ",\n  \"events_accepted_per_s\": %.1f,\n"
               "  \"deliveries\": %" PRIu64 ",\n  \"deliveries_per_s\": %.1f,\n",
            r->w_acked, r->acked_ps, r->w_accepted, r->accepted_ps, r->w_delivered, r->delivered_ps);
    hist_json(j, "latency_us", &t->lat, false);
    hist_json(j, "push_ack_latency_us", &t->ack, false);
    fprintf(j, "  \"lost\": %" PRIu64 ",\n  \"lost_gaps\": %" PRIu64 ",\n"
               "  \"lost_resnapshot\": %" PRIu64 ",\n  \"lost_tail\": %" PRIu64 ",\n"
               "  \"duplicated\": %" PRIu64 ",\n  \"resnapshots\": %" PRIu64 ",\n"
               "  \"foreign_events\": %" PRIu64 ",\n  \"last_seq\": %" PRIu64 ",\n"
               "  \"results_duplicate\": %" PRIu64 ",\n  \"results_conflict\": %" PRIu64
               ",\n  \"results_rejected\": %" PRIu64 ",\n  \"rate_slips\": %" PRIu64 ",\n",
            t->lost, t->gaps, t->skipped, t->tail_lost, t->dups, t->resnapshots, t->foreign,
            t->last_seq, t->n_duplicate, t->n_conflict, t->n_rejected, r->slips);
    if (r->broker_cpu >= 0)
        fprintf(j, "  \"broker_cpu_s\": %.3f,\n  \"broker_cpu_us_per_delivery\": %.4f,\n"
                   "  \"broker_cpu_s_per_million_deliveries\": %.4f,\n"
                   "  \"broker_cpu_us_per_accepted_event\": %.3f,\n",
                r->broker_cpu, r->us_per_delivery, r->us_per_delivery, r->us_per_accepted);
    if (r->rss_before >= 0)
        fprintf(j, "  \"broker_rss_before_kib\": %ld,\n  \"broker_rss_after_kib\": %ld,\n",
                r->rss_before, r->rss_after);
    if (r->host_ok)
        fprintf(j, "  \"host_cpus\": %d,\n  \"softirq_cores\": %.3f,\n"
                   "  \"other_processes_cores\": %.3f,\n  \"steal_cores\": %.3f,\n",
                r->host.cpus, r->host.softirq, r->host.other, r->host.steal);
    if (variant)
        variant->json(j);
    fprintf(j, "  \"bench_cpu_s\": %.3f,\n  \"completed\": %s,\n  \"error\": ", r->self_cpu,
            r->completed ? "true" : "false");
    bench_json_str(j, r->why_not);
    fprintf(j, ",\n  \"pass\": %s\n}\n", r->pass ? "true" : "false");
}

/* ------------------------------------------------------------------------ */
/* the run                                                                   */

static void fail(struct outcome *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(struct outcome *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->why_not, sizeof r->why_not, fmt, ap);
    va_end(ap);
    r->completed = false;
}

/* Warm-up, then the window, with a progress line per second; a and b are
 * the samples at the window's start and end. */
static void run_window(uint64_t run_t0, struct sync_load_sample *a, struct sync_load_sample *b)
{
    uint64_t ws = run_t0 + (uint64_t)(opt.warmup * 1e9);
    uint64_t we = ws + (uint64_t)(opt.duration * 1e9);
    sync_load_set_window(ws, we);
    sync_load_set_phase(SYNC_LOAD_RUN);
    struct sync_load_sample prev;
    sync_load_sample(&prev, opt.broker_pid);
    uint64_t next_tick = run_t0 + 1000000000u;
    bool window_open = false;
    while (!bench_got_signal) {
        uint64_t now = bench_mono_ns();
        if (!window_open && now >= ws) {
            sync_load_sample(a, opt.broker_pid);
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
        sync_load_sample(a, opt.broker_pid);
    sync_load_sample(b, opt.broker_pid);
}

/* Every Push answered, every subscriber up to its stream's last seq. A
 * publisher may be sending its last Push while the phase changes: what was
 * sent is known once every thread has seen SYNC_LOAD_STOP. Returns whether
 * the end was quiescent (the tail can be counted). */
static bool drain(struct outcome *r, uint64_t run_t0)
{
    struct sync_load_sample prev;
    sync_load_sample(&prev, opt.broker_pid);
    struct sync_load_totals t;
    uint64_t d0 = bench_mono_ns(), ddl = d0 + (uint64_t)DRAIN_TIMEOUT_S * 1000000000u;
    uint64_t next_tick = d0 + 1000000000u;
    bool drained = false;
    while (!bench_got_signal) {
        sync_load_sum(&t);
        if (t.stopped == opt.threads && t.inflight == 0 && sync_load_subs_behind(&t, NULL) == 0) {
            drained = true;
            break;
        }
        if (bench_mono_ns() >= ddl)
            break;
        bench_sleep_until_ns(bench_mono_ns() + 5000000u);
        if (bench_mono_ns() >= next_tick) {
            progress("drain", run_t0, &prev);
            next_tick += 1000000000u;
        }
    }
    r->drain_s = (double)(bench_mono_ns() - d0) / 1e9;
    sync_load_sum(&t);
    bool quiescent = t.stopped == opt.threads && t.inflight == 0;
    if (!drained && r->completed) {
        if (t.inflight)
            fail(r, "%ld Push message(s) still unanswered %d s after the window", t.inflight,
                 DRAIN_TIMEOUT_S);
        else
            fail(r, "%ld subscriber(s) still behind %s %" PRIu64 " %d s after the window",
                 sync_load_subs_behind(&t, NULL), opt.target ? "the events published, " : "seq",
                 sync_load_highest_target(&t), DRAIN_TIMEOUT_S);
    }
    return quiescent;
}

/* The window's rates and CPU shares from its two samples. */
static void measure(struct outcome *r, const struct sync_load_sample *a, const struct sync_load_sample *b)
{
    r->win = (double)(b->t - a->t) / 1e9;
    if (r->win <= 0)
        r->win = 1e-9;
    r->w_acked = b->tot.pushes_acked - a->tot.pushes_acked;
    r->w_accepted = b->tot.accepted - a->tot.accepted;
    r->w_delivered = b->tot.delivered - a->tot.delivered;
    r->acked_ps = (double)r->w_acked / r->win;
    r->accepted_ps = (double)r->w_accepted / r->win;
    r->delivered_ps = (double)r->w_delivered / r->win;
    r->broker_cpu = opt.broker_pid && a->broker_cpu >= 0 && b->broker_cpu >= 0
                        ? b->broker_cpu - a->broker_cpu : -1;
    r->self_cpu = b->self_cpu - a->self_cpu;
    r->us_per_delivery = r->broker_cpu >= 0 && r->w_delivered
                             ? r->broker_cpu * 1e6 / (double)r->w_delivered : -1;
    r->us_per_accepted = r->broker_cpu >= 0 && r->w_accepted
                             ? r->broker_cpu * 1e6 / (double)r->w_accepted : -1;
    r->host_ok = bench_host_share(&a->host, &b->host, r->win,
                                  (r->broker_cpu > 0 ? r->broker_cpu : 0) + r->self_cpu, &r->host);
    r->slips = b->tot.slips;
}

static void configure_load(struct sync_load_config *cfg)
{
    the_stream = (struct sync_load_stream){opt.collection, opt.token};
    *cfg = (struct sync_load_config){
        .target = opt.target,
        .url = opt.url,
        .ep = opt.ep,
        .publish_ep = publish_ep,   /* opt.ep without --publish-url */
        .subscribers = opt.subscribers,
        .publishers = opt.publishers,
        .batch = opt.batch,
        .size = opt.size,
        .inflight = opt.inflight,
        .rate = opt.rate,
        .threads = opt.threads,
        .run_id = bench_random_u64(),
        .streams = &the_stream,
        .nstreams = 1,
        .setup_subscribers = opt.subscribers,
    };
    if (variant)
        variant->configure(&opt, cfg);
}

static void announce(const struct outcome *r)
{
    fprintf(stderr, PROG " %s: %s %s %s: %ld subscribers, %ld publisher%s, batch %ld x %ld B, %ld "
            "in flight, %s; warm-up %.1f s, window %.1f s, %d thread%s%s\n", scenario_name(),
            target_name(), opt.url, scope(), opt.subscribers, opt.publishers,
            opt.publishers == 1 ? "" : "s", opt.batch, opt.size, opt.inflight, r->rate_txt,
            opt.warmup, opt.duration, opt.threads, opt.threads == 1 ? "" : "s",
            sync_load_spreads_sources() ? ", sources 127.0.X.Y" : "");
}

int fanout_run(const struct fanout_variant *v, int argc, char **argv)
{
    variant = v;
    set_default_options();
    if (variant)
        variant->set_defaults(&opt);
    char hint[96];
    snprintf(hint, sizeof hint, "(try " PROG " %s --help)", scenario_name());
    bench_set_program(PROG, hint);
    parse_args(argc, argv);

    static struct outcome r;
    r = (struct outcome){.completed = true, .rss_before = -1, .rss_after = -1, .broker_cpu = -1,
                         .us_per_delivery = -1, .us_per_accepted = -1};
    struct sync_load_config cfg;
    configure_load(&cfg);
    sync_load_init(&cfg);
    if (opt.broker_pid)
        r.rss_before = bench_broker_rss_before(opt.broker_pid);
    if (opt.rate > 0)
        snprintf(r.rate_txt, sizeof r.rate_txt, "%.0f events/s in all", opt.rate);
    else
        snprintf(r.rate_txt, sizeof r.rate_txt, "as fast as acknowledged");
    announce(&r);

    uint64_t t0 = bench_mono_ns();
    sync_load_start();
    r.completed = sync_load_wait_setup(t0, r.why_not, sizeof r.why_not);
    r.setup_s = (double)(bench_mono_ns() - t0) / 1e9;
    bool quiescent = false;
    struct sync_load_sample a = {0}, b = {0};
    if (r.completed) {
        fprintf(stderr, PROG ": setup done in %.2f s (%ld subscribers subscribed, %ld publisher%s "
                "welcomed); pushing\n", r.setup_s, opt.subscribers, opt.publishers,
                opt.publishers == 1 ? "" : "s");
        uint64_t run_t0 = bench_mono_ns();
        run_window(run_t0, &a, &b);
        r.measured = true;
        if (opt.broker_pid)
            r.rss_after = bench_proc_rss_kib(opt.broker_pid);
        sync_load_set_phase(SYNC_LOAD_STOP);
        if (bench_got_signal)
            fail(&r, "interrupted");
        quiescent = drain(&r, run_t0);
    }
    sync_load_close();

    struct sync_load_totals t;
    sync_load_sum(&t);
    if (t.failed[SYNC_LOAD_FAIL_RUN] && (r.completed || !bench_got_signal)) {
        /* the root cause: say it even when the drain then timed out */
        fail(&r, "%ld connection(s) lost during the run; first: %s", t.failed[SYNC_LOAD_FAIL_RUN],
             sync_load_first_error(SYNC_LOAD_FAIL_RUN));
    }
    sync_load_tally(&r.tally, quiescent);
    if (r.measured)
        measure(&r, &a, &b);
    if (r.completed && r.w_accepted == 0)
        fail(&r, "no event was accepted in the window");
    r.pass = r.completed && r.tally.lost == 0 && r.tally.dups == 0;
    if (r.pass && variant && !variant->passed(r.why_not, sizeof r.why_not))
        r.pass = false;
    print_summary(&r);
    bench_write_json(opt.json_path, write_json_body, &r);
    sync_load_free();
    return r.pass ? 0 : 1;
}

static int run_fanout(int argc, char **argv)
{
    return fanout_run(NULL, argc, argv);
}

const struct sync_scenario scenario_fanout = {
    .name = "fanout",
    .summary = "S subscribers, P publishers, one collection (also --target socketio|ws-broadcast)",
    .run = run_fanout,
};
