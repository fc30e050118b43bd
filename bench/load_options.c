/* load_options: see load_options.h. */
#include "load_options.h"

#include <limits.h>

#include "event_format.h"
#include "sync_load.h"

static const struct option shared[] = {
    {"url", required_argument, NULL, LOAD_URL},
    {"subscribers", required_argument, NULL, LOAD_SUBSCRIBERS},
    {"publishers", required_argument, NULL, LOAD_PUBLISHERS},
    {"batch", required_argument, NULL, LOAD_BATCH},
    {"size", required_argument, NULL, LOAD_SIZE},
    {"inflight", required_argument, NULL, LOAD_INFLIGHT},
    {"rate", required_argument, NULL, LOAD_RATE},
    {"duration", required_argument, NULL, LOAD_DURATION},
    {"warmup", required_argument, NULL, LOAD_WARMUP},
    {"threads", required_argument, NULL, LOAD_THREADS},
    {"broker-pid", required_argument, NULL, LOAD_BROKER_PID},
    {"token", required_argument, NULL, LOAD_TOKEN},
    {"collection", required_argument, NULL, LOAD_COLLECTION},
    {"json", required_argument, NULL, LOAD_JSON},
};

size_t load_options_table(unsigned which, struct option *out, size_t n)
{
    for (size_t i = 0; i < sizeof shared / sizeof shared[0]; i++)
        if (which & LOAD_BIT(shared[i].val))
            out[n++] = shared[i];
    return n;
}

bool load_options_parse(struct load_options *o, int c, const char *arg)
{
    switch (c) {
    case LOAD_URL: o->url = arg; break;
    case LOAD_SUBSCRIBERS: o->subscribers = bench_option_long("--subscribers", arg, 1, 1000000); break;
    case LOAD_PUBLISHERS: o->publishers = bench_option_long("--publishers", arg, 1, 10000); break;
    case LOAD_BATCH: o->batch = bench_option_long("--batch", arg, 1, 1000); break;
    case LOAD_SIZE: o->size = bench_option_long("--size", arg, EVENT_DOC_MIN_SIZE, SYNC_LOAD_MAX_SIZE); break;
    case LOAD_INFLIGHT: o->inflight = bench_option_long("--inflight", arg, 1, 1024); break;
    case LOAD_RATE: o->rate = bench_option_double("--rate", arg, 0, 1e9); break;
    case LOAD_DURATION: o->duration = bench_option_double("--duration", arg, 0.1, 86400); break;
    case LOAD_WARMUP: o->warmup = bench_option_double("--warmup", arg, 0, 3600); break;
    case LOAD_THREADS: o->threads = (int)bench_option_long("--threads", arg, 1, 256); break;
    case LOAD_BROKER_PID: o->broker_pid = (pid_t)bench_option_long("--broker-pid", arg, 1, INT_MAX); break;
    case LOAD_TOKEN: o->token = bench_option_token(arg); break;
    case LOAD_COLLECTION: o->collection = bench_option_collection(arg); break;
    case LOAD_JSON: o->json_path = arg; break;
    default: return false;
    }
    return true;
}

void load_options_unknown(char **argv)
{
    if (optopt > 0 && optopt < 256)
        bench_die_usage("option -%c is unknown or needs a value", optopt);
    bench_die_usage("option '%s' is unknown or needs a value", argv[optind - 1]);
}
