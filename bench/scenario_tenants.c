/* scenario_tenants: `nebula-sync-bench tenants`, fan-out across T tenants x
 * C collections on a broker run with --tokens, and per-tenant isolation.
 *
 * Every tenant has a token (a token file the tool writes with
 * --write-tokens FILE, or any file given with --tokens FILE) and the same C
 * collection names, <collection>-c0 .. -c<C-1>: tenant A's -c0 is not
 * tenant B's. That is T x C streams; subscriber i and publisher p use
 * stream i % (T x C) and p % (T x C), stream s being tenant s / C's
 * collection s % C. The run is fanout's (scenario_fanout.c): setup,
 * warm-up, window, drain, the same aggregate numbers and seq checks per
 * subscriber.
 *
 * Isolation: every delivered event's id names its publisher
 * (event_format.h), so a subscriber knows the stream it came from. An event
 * of another tenant is an isolation violation; one of its own tenant's
 * other collection a cross-collection delivery. Both must be 0. (Against a
 * broker without --tokens every token is the tenant "default": the
 * tenants' collections are one, and the check says so.)
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "event_format.h"
#include "scenario_fanout.h"
#include "sync_scenario.h"
#include "tenant_tokens.h"

#define PROG SYNC_LOAD_PROGRAM
#define MAX_TENANTS 10000
#define MAX_COLLECTIONS 1000
#define MAX_TOKEN_FILE (16 << 20)

/* The options and layout; set before the threads start, then read-only. */
static long ntenants = 4, ncollections = 2;
static const char *tokens_path, *write_tokens_path;
static struct tenant_token *tokens;     /* ntenants */
static char (*collection_names)[160];   /* ncollections */
static struct sync_load_stream *streams;   /* ntenants x ncollections */
static long nstreams, nsubscribers, npublishers;
static uint64_t run_id;

/* Per subscriber, written by the thread that owns it, read after join. */
struct tenant_sub {
    uint64_t delivered, violations, cross, other_runs;
};
static struct tenant_sub *subs;

/* Totals for the progress line (relaxed), and the first violation. */
static _Atomic uint64_t violations_seen, cross_seen;
static pthread_mutex_t first_lock = PTHREAD_MUTEX_INITIALIZER;
static char first_violation[256];

enum { O_TENANTS = FANOUT_VARIANT_OPTION, O_COLLECTIONS, O_TOKENS, O_WRITE_TOKENS };

static const struct option tenants_options[] = {
    {"tenants", required_argument, NULL, O_TENANTS},
    {"collections", required_argument, NULL, O_COLLECTIONS},
    {"tokens", required_argument, NULL, O_TOKENS},
    {"write-tokens", required_argument, NULL, O_WRITE_TOKENS},
    {NULL, 0, NULL, 0},
};

static void usage(FILE *f)
{
    fprintf(f,
        "usage: " PROG " tenants --tenants T --write-tokens FILE\n"
        "       " PROG " tenants --tenants T --tokens FILE [options]\n"
        "\n"
        "Fan-out across T tenants x C collections, against a broker run with\n"
        "--tokens FILE: every tenant has the same collection names, subscribers and\n"
        "publishers are spread over the T x C streams, and every delivery is checked:\n"
        "its seq (lost, duplicated) and its tenant (a subscriber must never receive\n"
        "an event of another tenant). First write a token file, start the broker\n"
        "with it, then run with it.\n"
        "\n"
        "  --tenants T          tenants (default 4, at most %d)\n"
        "  --collections C      collections per tenant, <collection>-c0 .. -c<C-1>\n"
        "                       (default 2)\n"
        "  --write-tokens FILE  write a token file for T tenants (bench-t0 ..,\n"
        "                       random tokens, read=* write=*) and exit\n"
        "  --tokens FILE        the broker's token file: the first plain token of each\n"
        "                       of its first T tenants is used (sha256: lines cannot be)\n"
        "  --subscribers S      subscriber connections (default 10 x T x C)\n"
        "  --publishers P       publisher connections (default T x C)\n"
        "  --collection NAME    prefix of the collections' names (default nebula-sync-bench)\n"
        "\n"
        "and fanout's load options (see " PROG " fanout --help): --url, --batch,\n"
        "--size, --inflight, --rate, --duration, --warmup, --threads, --broker-pid,\n"
        "--json.\n"
        "\n"
        "A progress line per second goes to stderr, the summary to stdout.\n"
        "Exit status: 0 the run completed with 0 lost, 0 duplicated events and no\n"
        "event delivered across tenants or collections; 1 anything else; 2 usage\n"
        "error (and --write-tokens: 0 written, 2 not).\n",
        MAX_TENANTS);
}

static void set_defaults(struct load_options *o)
{
    o->subscribers = 0;               /* 0: derived from T and C */
    o->publishers = 0;
}

static void option(int val, const char *arg)
{
    switch (val) {
    case O_TENANTS: ntenants = bench_option_long("--tenants", arg, 1, MAX_TENANTS); break;
    case O_COLLECTIONS: ncollections = bench_option_long("--collections", arg, 1, MAX_COLLECTIONS); break;
    case O_TOKENS: tokens_path = arg; break;
    case O_WRITE_TOKENS: write_tokens_path = arg; break;
    }
}

/* --write-tokens: one line per tenant, then exit. */
static void write_token_file(void)
{
    FILE *f = fopen(write_tokens_path, "w");
    if (!f)
        bench_die(2, "--write-tokens: cannot write %s: %m", write_tokens_path);
    fprintf(f, "# nebula-sync-bench tenants: %ld tenants (nebula-syncd --tokens %s)\n", ntenants,
            write_tokens_path);
    for (long i = 0; i < ntenants; i++) {
        uint8_t random[TENANT_TOKEN_RANDOM_BYTES];
        char line[128];
        if (RAND_bytes(random, sizeof random) != 1)
            bench_die(2, "RAND_bytes failed");
        size_t n = tenant_tokens_line(line, sizeof line, i, random);
        fwrite(line, 1, n, f);
    }
    if (fclose(f) != 0)
        bench_die(2, "--write-tokens: cannot write %s: %m", write_tokens_path);
    fprintf(stderr, PROG ": wrote tokens for %ld tenants to %s\n", ntenants, write_tokens_path);
    exit(0);
}

static char *read_whole_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        bench_die_usage("--tokens: cannot read %s: %m", path);
    char *text = malloc(MAX_TOKEN_FILE + 1);
    if (!text)
        bench_die(1, "out of memory");
    size_t n = fread(text, 1, MAX_TOKEN_FILE + 1, f);
    fclose(f);
    if (n > MAX_TOKEN_FILE)
        bench_die_usage("--tokens: %s is larger than %d bytes", path, MAX_TOKEN_FILE);
    text[n] = '\0';
    return text;
}

/* --tokens: the first plain token of each of the first T tenants. */
static void read_token_file(void)
{
    char *text = read_whole_file(tokens_path);
    tokens = calloc((size_t)ntenants, sizeof *tokens);
    if (!tokens)
        bench_die(1, "out of memory");
    struct tenant_tokens_read r;
    if (!tenant_tokens_parse(text, tokens, ntenants, &r))
        bench_die_usage("--tokens: %s:%ld: %s", tokens_path, r.line, r.why);
    free(text);
    if (r.tenants < ntenants)
        bench_die_usage("--tokens: %s has a plain token for %ld tenant%s (%ld sha256: line%s "
                        "skipped); --tenants %ld needs %ld: write one with --write-tokens",
                        tokens_path, r.tenants, r.tenants == 1 ? "" : "s", r.hashed,
                        r.hashed == 1 ? "" : "s", ntenants, ntenants);
}

/* <collection>-c<j>, and the T x C streams over them. */
static void lay_out_streams(const char *prefix)
{
    collection_names = calloc((size_t)ncollections, sizeof *collection_names);
    nstreams = ntenants * ncollections;
    streams = calloc((size_t)nstreams, sizeof *streams);
    if (!collection_names || !streams)
        bench_die(1, "out of memory");
    for (long j = 0; j < ncollections; j++) {
        int n = snprintf(collection_names[j], sizeof collection_names[j], "%s-c%ld", prefix, j);
        if (n > 128)
            bench_die_usage("--collection: '%s-c%ld' is longer than 128 bytes", prefix, j);
    }
    for (long s = 0; s < nstreams; s++)
        streams[s] = (struct sync_load_stream){collection_names[s % ncollections],
                                               tokens[s / ncollections].token};
}

static void check_options(struct load_options *o)
{
    if (write_tokens_path)
        write_token_file();
    if (!tokens_path)
        bench_die_usage("--tokens FILE is required (write one with --write-tokens FILE and start "
                        "the broker with --tokens FILE)");
    if (o->token)
        bench_die_usage("--token: tenants presents the tokens of --tokens FILE");
    if (ntenants * ncollections > 1000000)
        bench_die_usage("--tenants x --collections: %ld streams is too many", ntenants * ncollections);
    if (o->subscribers == 0)
        o->subscribers = 10 * ntenants * ncollections;
    if (o->publishers == 0)
        o->publishers = ntenants * ncollections > 10000 ? 10000 : ntenants * ncollections;
    read_token_file();
    lay_out_streams(o->collection);
}

/* ------------------------------------------------------------------------ */
/* the isolation check, on the subscribers' threads                          */

static void note_first_violation(const struct fanout_conn *c, long pub, const char *what)
{
    long mine = sync_conn_stream(c), theirs = pub % nstreams;
    pthread_mutex_lock(&first_lock);
    if (!first_violation[0])
        snprintf(first_violation, sizeof first_violation, "subscriber %ld (%s, %s) received an "
                 "event of publisher %ld (%s, %s): %s", fanout_conn_index(c),
                 tokens[mine / ncollections].tenant, streams[mine].collection, pub,
                 tokens[theirs / ncollections].tenant, streams[theirs].collection, what);
    pthread_mutex_unlock(&first_lock);
}

/* Where each event of the message came from, against where c subscribed. */
static void check_isolation(struct fanout_conn *c, const Nebula__Sync__V1__Events *ev, uint64_t now)
{
    (void)now;
    struct tenant_sub *sub = &subs[fanout_conn_index(c)];
    long mine = sync_conn_stream(c);
    sub->delivered += ev->n_events;
    for (size_t i = 0; i < ev->n_events; i++) {
        const char *id = ev->events[i]->id;
        uint32_t pub;
        uint64_t counter;
        if (event_id_parse(id, strlen(id), run_id, &pub, &counter) != EVENT_ID_THIS_RUN ||
            pub >= (uint32_t)npublishers) {
            sub->other_runs++;
            continue;
        }
        long theirs = (long)pub % nstreams;
        if (theirs == mine)
            continue;
        if (theirs / ncollections != mine / ncollections) {
            sub->violations++;
            atomic_fetch_add_explicit(&violations_seen, 1, memory_order_relaxed);
            note_first_violation(c, (long)pub, "another tenant");
        } else {
            sub->cross++;
            atomic_fetch_add_explicit(&cross_seen, 1, memory_order_relaxed);
            note_first_violation(c, (long)pub, "another collection");
        }
    }
}

/* Deliveries an accepted event makes, on average: the subscribers of its
 * publisher's stream (publishers taken as equally fast). */
static double receivers_per_event(void)
{
    double sum = 0;
    for (long p = 0; p < npublishers; p++) {
        long stream = p % nstreams;
        sum += (double)(nsubscribers / nstreams + (stream < nsubscribers % nstreams));
    }
    return sum / (double)npublishers;
}

static void configure(const struct load_options *o, struct sync_load_config *cfg)
{
    subs = calloc((size_t)o->subscribers, sizeof *subs);
    if (!subs)
        bench_die(1, "out of memory");
    run_id = cfg->run_id;
    nsubscribers = o->subscribers;
    npublishers = o->publishers;
    cfg->streams = streams;
    cfg->nstreams = nstreams;
    cfg->on_events = check_isolation;
}

/* ------------------------------------------------------------------------ */
/* report                                                                    */

static const char *scope(void)
{
    static char text[400];
    int n = snprintf(text, sizeof text, "%ld tenant%s x %ld collection%s '%s'", ntenants,
                     ntenants == 1 ? "" : "s", ncollections, ncollections == 1 ? "" : "s",
                     collection_names[0]);
    if (ncollections > 1)
        snprintf(text + n, sizeof text - (size_t)n, " .. '%s'", collection_names[ncollections - 1]);
    return text;
}

static void progress(char *buf, size_t cap)
{
    snprintf(buf, cap, "  isolation violations %" PRIu64 "  cross-collection %" PRIu64,
             atomic_load_explicit(&violations_seen, memory_order_relaxed),
             atomic_load_explicit(&cross_seen, memory_order_relaxed));
}

struct tenants_tally {
    uint64_t violations, cross, other_runs;
    uint64_t *per_tenant;             /* deliveries over the whole run, ntenants */
    long low, high;                   /* the tenants with the fewest and the most */
};

/* After join: the subscribers' counts, per tenant (subscriber i used
 * stream i % nstreams all along). */
static void tally(struct tenants_tally *t)
{
    memset(t, 0, sizeof *t);
    t->per_tenant = calloc((size_t)ntenants, sizeof *t->per_tenant);
    if (!t->per_tenant)
        bench_die(1, "out of memory");
    for (long i = 0; i < nsubscribers; i++) {
        t->violations += subs[i].violations;
        t->cross += subs[i].cross;
        t->other_runs += subs[i].other_runs;
        t->per_tenant[(i % nstreams) / ncollections] += subs[i].delivered;
    }
    for (long k = 1; k < ntenants; k++) {
        if (t->per_tenant[k] < t->per_tenant[t->low])
            t->low = k;
        if (t->per_tenant[k] > t->per_tenant[t->high])
            t->high = k;
    }
}

static void summary(void)
{
    struct tenants_tally t;
    tally(&t);
    printf("  %-30s %ld x %ld = %ld streams, tokens from %s\n", "tenants x collections", ntenants,
           ncollections, nstreams, tokens_path);
    printf("  %-30s %" PRIu64 "%s\n", "isolation violations", t.violations,
           t.violations ? "  <-- EXPECTED 0: events of another tenant delivered" : "");
    printf("  %-30s %" PRIu64 "%s\n", "cross-collection deliveries", t.cross,
           t.cross ? "  <-- EXPECTED 0: events of another collection delivered" : "");
    if (first_violation[0])
        printf("  %-30s %s\n", "  first", first_violation);
    if (t.other_runs)
        printf("  %-30s %" PRIu64 " (not written by this run: not checked)\n", "events of other runs",
               t.other_runs);
    printf("  %-30s min %" PRIu64 " (%s), max %" PRIu64 " (%s), over the whole run\n",
           "deliveries per tenant", t.per_tenant[t.low], tokens[t.low].tenant,
           t.per_tenant[t.high], tokens[t.high].tenant);
    free(t.per_tenant);
}

static void json(FILE *j)
{
    struct tenants_tally t;
    tally(&t);
    fprintf(j, "  \"tenants\": %ld,\n  \"collections\": %ld,\n  \"tokens_file\": ", ntenants,
            ncollections);
    bench_json_str(j, tokens_path);
    fprintf(j, ",\n  \"isolation_violations\": %" PRIu64 ",\n  \"cross_collection\": %" PRIu64
               ",\n  \"other_run_events\": %" PRIu64 ",\n  \"first_violation\": ",
            t.violations, t.cross, t.other_runs);
    bench_json_str(j, first_violation);
    fprintf(j, ",\n  \"deliveries_per_tenant\": [");
    for (long k = 0; k < ntenants; k++)
        fprintf(j, "%s%" PRIu64, k ? ", " : "", t.per_tenant[k]);
    fprintf(j, "],\n");
    free(t.per_tenant);
}

static bool passed(char *why, size_t cap)
{
    struct tenants_tally t;
    tally(&t);
    free(t.per_tenant);
    if (!t.violations && !t.cross)
        return true;
    snprintf(why, cap, "%" PRIu64 " isolation violation(s), %" PRIu64 " cross-collection "
             "deliveries; first: %s", t.violations, t.cross, first_violation);
    return false;
}

static const struct fanout_variant tenants = {
    .name = "tenants",
    .usage = usage,
    .options = tenants_options,
    .set_defaults = set_defaults,
    .option = option,
    .check_options = check_options,
    .configure = configure,
    .scope = scope,
    .receivers_per_event = receivers_per_event,
    .progress = progress,
    .summary = summary,
    .json = json,
    .passed = passed,
};

static int run_tenants(int argc, char **argv)
{
    int status = fanout_run(&tenants, argc, argv);
    free(subs);
    free(streams);
    free(collection_names);
    free(tokens);
    return status;
}

const struct sync_scenario scenario_tenants = {
    .name = "tenants",
    .summary = "fan-out over T tenants x C collections (--tokens), checking isolation",
    .run = run_tenants,
};
